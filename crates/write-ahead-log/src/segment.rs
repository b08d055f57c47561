//! Segment files: their names, scanning them on open, and zstd archives.
//!
//! A segment is named by the index of its first entry, zero-padded so names sort by index:
//! `00000000000000000001.wal`, archived as `00000000000000000001.wal.zst`. A scan checks every
//! record's CRCs and that indexes run on without gaps from the name's index. Only the newest
//! segment may end in a torn or damaged record; that decision is taken here ([`TailPolicy`]).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Result, WalError};
use crate::fs::{FileSystem, WritableFile};
use crate::record::{self, DecodeError};

/// Suffix of a raw segment.
pub const RAW_SUFFIX: &str = ".wal";
/// Suffix of an archived (zstd) segment.
pub const ARCHIVE_SUFFIX: &str = ".wal.zst";
/// Suffix of every temporary file; such files are removed on open.
pub const TMP_SUFFIX: &str = ".tmp";

/// File name of the raw segment starting at `first_index`.
pub fn raw_name(first_index: u64) -> String {
    format!("{first_index:020}{RAW_SUFFIX}")
}

/// File name of the archived segment starting at `first_index`.
pub fn archive_name(first_index: u64) -> String {
    format!("{first_index:020}{ARCHIVE_SUFFIX}")
}

/// What a directory entry is, judged by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentName {
    /// A raw segment starting at this index.
    Raw(u64),
    /// An archived segment starting at this index.
    Archived(u64),
}

/// Parses a segment file name; anything else (snapshots, temp files, strangers) is `None`.
pub fn parse_name(name: &str) -> Option<SegmentName> {
    let (digits, archived) = if let Some(digits) = name.strip_suffix(ARCHIVE_SUFFIX) {
        (digits, true)
    } else {
        (name.strip_suffix(RAW_SUFFIX)?, false)
    };
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let index = digits.parse().ok()?;
    Some(if archived {
        SegmentName::Archived(index)
    } else {
        SegmentName::Raw(index)
    })
}

/// How damage at the end of a segment is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TailPolicy {
    /// Newest segment: a torn or damaged last record is cut off.
    CutTornTail,
    /// Any other segment: every defect is corruption.
    Strict,
}

/// The outcome of scanning one segment's bytes.
#[derive(Debug, Default)]
pub struct Scan {
    /// Byte offset of each entry's record, in index order.
    pub offsets: Vec<u32>,
    /// Bytes of valid records; anything after it was cut off.
    pub valid_len: u64,
    /// Why the tail was cut, if it was.
    pub cut_reason: Option<String>,
}

/// Scans `data` (the whole segment), checking CRCs and that indexes run from `first_index`.
pub fn scan(
    path: &Path,
    data: &[u8],
    first_index: u64,
    max_entry_bytes: u32,
    policy: TailPolicy,
) -> Result<Scan> {
    let corrupt = |offset: usize, reason: String| WalError::CorruptSegment {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    if u32::try_from(data.len()).is_err() {
        return Err(corrupt(
            0,
            format!("segment is {} B, larger than 4 GiB", data.len()),
        ));
    }
    let mut scan = Scan::default();
    let mut offset = 0usize;
    let mut expected = first_index;
    while offset < data.len() {
        match record::decode_at(data, offset, max_entry_bytes) {
            Ok(decoded) => {
                if decoded.index != expected {
                    return Err(corrupt(
                        offset,
                        format!(
                            "record holds index {} where {expected} was expected",
                            decoded.index
                        ),
                    ));
                }
                // Checked above: the whole segment is smaller than 4 GiB.
                scan.offsets.push(offset as u32);
                // u64::MAX is never a valid index: the log's next index must fit in a u64.
                expected = expected.checked_add(1).ok_or_else(|| {
                    corrupt(
                        offset,
                        format!(
                            "record holds index {}, which leaves no next index",
                            decoded.index
                        ),
                    )
                })?;
                offset = decoded.end;
            }
            Err(error) => {
                if policy == TailPolicy::Strict || !is_tail_damage(data, offset, &error) {
                    return Err(corrupt(offset, error.reason()));
                }
                scan.cut_reason = Some(error.reason());
                break;
            }
        }
    }
    scan.valid_len = offset.min(data.len()) as u64;
    Ok(scan)
}

/// Whether a decode failure at `offset` is a torn or damaged final record (which may be cut)
/// rather than damage followed by more data (which must stop opening).
fn is_tail_damage(data: &[u8], offset: usize, error: &DecodeError) -> bool {
    let rest = &data[offset..];
    match error {
        // The header is intact and says the record runs past the end: a torn write.
        DecodeError::ShortHeader | DecodeError::ShortPayload => true,
        // An intact header with a bad payload is the tail only if it is the last record.
        DecodeError::BadPayload => {
            let declared = record::HEADER_LEN
                + u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            rest.get(declared..)
                .is_none_or(|after| after.iter().all(|&b| b == 0))
        }
        // A damaged header: the tail only when nothing but zeroes follow (blocks allocated by
        // the file system but never written before the crash).
        DecodeError::BadHeader | DecodeError::BadLength { .. } => rest.iter().all(|&b| b == 0),
    }
}

/// Reads a whole raw segment into `data` (cleared first), refusing one longer than
/// `max_bytes` before reading it (a damaged or foreign file must not make the open allocate
/// without bound). Opening reuses one buffer for every segment, so its pages are faulted in
/// once instead of once per segment.
pub fn read_raw_into(
    fs: &dyn FileSystem,
    path: &Path,
    max_bytes: u64,
    data: &mut Vec<u8>,
) -> Result<()> {
    data.clear();
    let len = fs
        .file_len(path)
        .map_err(WalError::io("stat segment", path))?;
    let too_long = |len: u64| WalError::CorruptSegment {
        path: path.to_path_buf(),
        offset: max_bytes,
        reason: format!("segment is {len} B, longer than max_segment_bytes = {max_bytes}"),
    };
    if len > max_bytes {
        return Err(too_long(len));
    }
    // Sized once from the length checked above (a growing Vec would copy the segment about
    // twice over and fault its pages in again); bounded by `max_bytes`.
    data.reserve(usize::try_from(len).unwrap_or(0));
    fs.open_read(path)
        // `take`: the file may have grown since it was measured.
        .and_then(|file| file.take(max_bytes.saturating_add(1)).read_to_end(data))
        .map_err(WalError::io("read segment", path))?;
    if data.len() as u64 > max_bytes {
        return Err(too_long(data.len() as u64));
    }
    Ok(())
}

/// Reads and decompresses an archive, refusing to produce more than `max_bytes`.
pub fn read_archive(fs: &dyn FileSystem, path: &Path, max_bytes: u64) -> Result<Vec<u8>> {
    let file = fs
        .open_read(path)
        .map_err(WalError::io("open archive", path))?;
    let decoder =
        zstd::stream::read::Decoder::new(file).map_err(WalError::io("open archive", path))?;
    let mut data = Vec::new();
    decoder
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|source| WalError::CorruptSegment {
            path: path.to_path_buf(),
            offset: 0,
            reason: format!("archive does not decompress: {source}"),
        })?;
    if data.len() as u64 > max_bytes {
        return Err(WalError::CorruptSegment {
            path: path.to_path_buf(),
            offset: 0,
            reason: format!("archive decompresses to more than max_segment_bytes = {max_bytes}"),
        });
    }
    Ok(data)
}

/// Adapts a [`WritableFile`] to `io::Write` so encoders can stream into it.
struct WriteAdapter<'a>(&'a mut dyn WritableFile);

impl Write for WriteAdapter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Compresses the first `len` bytes of the raw segment `raw` into the archive `archive`,
/// atomically: temp file, fsync, rename, directory fsync. The raw segment is left in place.
pub fn write_archive(
    fs: &dyn FileSystem,
    dir: &Path,
    raw: &Path,
    archive: &Path,
    len: u64,
    level: i32,
) -> Result<()> {
    let tmp = tmp_path(archive);
    let mut out = fs.create(&tmp).map_err(WalError::io("create", &tmp))?;
    {
        let input = fs.open_read(raw).map_err(WalError::io("open", raw))?;
        let mut encoder = zstd::stream::write::Encoder::new(WriteAdapter(out.as_mut()), level)
            .map_err(WalError::io("start compressing into", &tmp))?;
        encoder
            .include_checksum(true)
            .map_err(WalError::io("configure compression for", &tmp))?;
        std::io::copy(&mut input.take(len), &mut encoder)
            .map_err(WalError::io("compress into", &tmp))?;
        encoder
            .finish()
            .map_err(WalError::io("finish compressing", &tmp))?;
    }
    out.sync_data().map_err(WalError::io("fsync", &tmp))?;
    drop(out);
    fs.rename(&tmp, archive)
        .map_err(WalError::io("rename into place", archive))?;
    fs.sync_dir(dir)
        .map_err(WalError::io("fsync directory", dir))?;
    Ok(())
}

/// The temporary name used while writing `path`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(TMP_SUFFIX);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn names_round_trip_and_sort() {
        assert_eq!(raw_name(1), "00000000000000000001.wal");
        assert_eq!(parse_name(&raw_name(42)), Some(SegmentName::Raw(42)));
        assert_eq!(
            parse_name(&archive_name(u64::MAX)),
            Some(SegmentName::Archived(u64::MAX))
        );
        assert_eq!(parse_name("head.snap"), None);
        assert_eq!(parse_name("00000000000000000001.wal.zst.tmp"), None);
        assert_eq!(parse_name("0000000000000000001x.wal"), None);
        assert!(raw_name(9) < raw_name(10));
    }

    fn three_records() -> Vec<u8> {
        let mut data = Vec::new();
        for index in 5..8 {
            record::encode_into(&mut data, index, b"abcdef");
        }
        data
    }

    #[test]
    fn torn_tail_is_cut_only_in_the_newest_segment() {
        let data = three_records();
        let torn = &data[..data.len() - 3];
        let scan = scan(Path::new("s"), torn, 5, 64, TailPolicy::CutTornTail).unwrap();
        assert_eq!(scan.offsets.len(), 2);
        assert!(scan.cut_reason.is_some());
        let err = super::scan(Path::new("s"), torn, 5, 64, TailPolicy::Strict).unwrap_err();
        assert!(matches!(err, WalError::CorruptSegment { offset, .. } if offset == scan.valid_len));
    }

    #[test]
    fn damage_before_the_last_record_is_corruption_even_in_the_newest_segment() {
        let mut data = three_records();
        data[record::HEADER_LEN + 9] ^= 1;
        let err = scan(Path::new("s"), &data, 5, 64, TailPolicy::CutTornTail).unwrap_err();
        assert!(matches!(err, WalError::CorruptSegment { offset: 0, .. }));
    }

    #[test]
    fn zero_filled_tail_is_cut() {
        let mut data = three_records();
        data.extend_from_slice(&[0u8; 100]);
        let scan = scan(Path::new("s"), &data, 5, 64, TailPolicy::CutTornTail).unwrap();
        assert_eq!(scan.offsets.len(), 3);
    }

    #[test]
    fn wrong_first_index_is_corruption() {
        let data = three_records();
        let err = scan(Path::new("s"), &data, 4, 64, TailPolicy::CutTornTail).unwrap_err();
        assert!(
            err.to_string().contains("index 5 where 4 was expected"),
            "{err}"
        );
    }
}
