//! Small files in a node's home that must survive crashes whole: the promise and the
//! membership record.
//!
//! [`replace`] writes a temp file, fsyncs it, renames it over the old one and fsyncs the
//! directory, so a crash leaves either the old or the new content, never a torn one.
//! [`read_bounded`] refuses a file larger than the caller's bound before reading it, so a
//! damaged or foreign file can never make start-up allocate without limit.

use std::io::{Read, Write};
use std::path::Path;

/// What [`read_bounded`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Contents {
    /// There is no such file.
    Missing,
    /// The file is larger than the bound (its size in bytes, or more).
    TooLarge(u64),
    /// The whole file.
    Bytes(Vec<u8>),
}

/// Reads `path` whole if it holds at most `max` bytes.
pub fn read_bounded(path: &Path, max: u64) -> std::io::Result<Contents> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Contents::Missing),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len > max {
        return Ok(Contents::TooLarge(len));
    }
    // The file may grow between the size check and the read: read at most max + 1 bytes.
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    let read = bytes.len() as u64;
    if read > max {
        return Ok(Contents::TooLarge(read));
    }
    Ok(Contents::Bytes(bytes))
}

/// Replaces `dir/name` with `contents` durably; on failure returns the step that failed.
pub fn replace(
    dir: &Path,
    name: &str,
    contents: &[u8],
) -> Result<(), (&'static str, std::io::Error)> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = std::fs::File::create(&tmp).map_err(|e| ("create temp file", e))?;
    file.write_all(contents).map_err(|e| ("write", e))?;
    file.sync_all().map_err(|e| ("fsync", e))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(|e| ("rename", e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ("fsync directory", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn bounded_reads_refuse_large_files_and_report_missing_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        assert_eq!(read_bounded(&path, 10).unwrap(), Contents::Missing);
        replace(tmp.path(), "f", b"0123456789").unwrap();
        assert_eq!(
            read_bounded(&path, 10).unwrap(),
            Contents::Bytes(b"0123456789".to_vec())
        );
        assert_eq!(read_bounded(&path, 9).unwrap(), Contents::TooLarge(10));
        assert!(!tmp.path().join("f.tmp").exists());
    }
}
