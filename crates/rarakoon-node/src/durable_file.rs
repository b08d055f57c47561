//! Small files in a node's home that must survive crashes whole: the promise and the
//! membership record.
//!
//! [`replace`] writes a temp file, fsyncs it, renames it over the old one and fsyncs the
//! directory, so a crash leaves either the old or the new content, never a torn one.
//! [`read_bounded`] refuses a file larger than the caller's bound before reading it, so a
//! damaged or foreign file can never make start-up allocate without limit.
//!
//! Both go through [`FileSystem`], so the deterministic simulator can crash the node between
//! any two steps (the real node passes [`write_ahead_log::StdFs`]).

use std::io::Read;
use std::path::Path;

use write_ahead_log::FileSystem;

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
pub fn read_bounded(fs: &dyn FileSystem, path: &Path, max: u64) -> std::io::Result<Contents> {
    let file = match fs.open_read(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Contents::Missing),
        Err(e) => return Err(e),
    };
    let len = match fs.file_len(path) {
        Ok(len) => len,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Contents::Missing),
        Err(e) => return Err(e),
    };
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
    fs: &dyn FileSystem,
    dir: &Path,
    name: &str,
    contents: &[u8],
) -> Result<(), (&'static str, std::io::Error)> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = fs.create(&tmp).map_err(|e| ("create temp file", e))?;
    file.write_all(contents).map_err(|e| ("write", e))?;
    file.sync_data().map_err(|e| ("fsync", e))?;
    drop(file);
    fs.rename(&tmp, &path).map_err(|e| ("rename", e))?;
    fs.sync_dir(dir).map_err(|e| ("fsync directory", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    use write_ahead_log::{SimFs, StdFs};

    #[test]
    fn bounded_reads_refuse_large_files_and_report_missing_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        assert_eq!(read_bounded(&StdFs, &path, 10).unwrap(), Contents::Missing);
        replace(&StdFs, tmp.path(), "f", b"0123456789").unwrap();
        assert_eq!(
            read_bounded(&StdFs, &path, 10).unwrap(),
            Contents::Bytes(b"0123456789".to_vec())
        );
        assert_eq!(
            read_bounded(&StdFs, &path, 9).unwrap(),
            Contents::TooLarge(10)
        );
        assert!(!tmp.path().join("f.tmp").exists());
    }

    #[test]
    fn a_replacement_survives_a_crash_whole_or_not_at_all() {
        let dir = Path::new("/home");
        let path = dir.join("f");
        for halt in 0..8 {
            let fs = SimFs::new(halt);
            replace(&fs, dir, "f", b"old").unwrap();
            fs.halt_after(halt);
            let finished = replace(&fs, dir, "f", b"new contents").is_ok();
            fs.crash();
            let after = read_bounded(&fs, &path, 100).unwrap();
            if finished {
                assert_eq!(
                    after,
                    Contents::Bytes(b"new contents".to_vec()),
                    "halt {halt}"
                );
            } else {
                assert!(
                    after == Contents::Bytes(b"old".to_vec())
                        || after == Contents::Bytes(b"new contents".to_vec()),
                    "halt {halt}: {after:?}"
                );
            }
        }
    }
}
