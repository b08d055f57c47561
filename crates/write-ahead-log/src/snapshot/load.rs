//! Loading a head snapshot: check the header, then each chunk's CRC before handing out its
//! pairs (keys strictly ascending), then the trailer's pair count and whole-file CRC. Every
//! length is checked against `max_chunk_bytes` before anything is allocated.

use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use super::{
    HEADER_LEN, MAGIC, PAIR_HEADER_LEN, PairSink, SnapshotConfig, SnapshotInfo, TAG_CHUNK,
    TAG_TRAILER, VERSION,
};
use crate::error::{Result, WalError};
use crate::fs::{FileSystem, ReadableFile};

/// Reads the index a snapshot covers from its header; `None` if the file does not exist.
pub fn read_snapshot_index(fs: &dyn FileSystem, path: &Path) -> Result<Option<u64>> {
    if !fs.exists(path).map_err(WalError::io("check", path))? {
        return Ok(None);
    }
    let mut file = fs.open_read(path).map_err(WalError::io("open", path))?;
    read_header(&mut file, path).map(Some)
}

fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> WalError {
    WalError::CorruptSnapshot {
        path: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
}

fn read_exact_at(
    reader: &mut impl Read,
    buf: &mut [u8],
    path: &Path,
    offset: u64,
    what: &str,
) -> Result<()> {
    reader.read_exact(buf).map_err(|error| {
        if error.kind() == io::ErrorKind::UnexpectedEof {
            corrupt(path, offset, format!("file ends inside the {what}"))
        } else {
            WalError::Io {
                op: "read",
                path: path.to_path_buf(),
                source: error,
            }
        }
    })
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

pub(super) fn read_header(reader: &mut impl Read, path: &Path) -> Result<u64> {
    let mut header = [0u8; HEADER_LEN];
    read_exact_at(reader, &mut header, path, 0, "header")?;
    if &header[..8] != MAGIC {
        return Err(corrupt(path, 0, "not a Rarakoon snapshot (bad magic)"));
    }
    if crc32c::crc32c(&header[..20]) != u32_at(&header, 20) {
        return Err(corrupt(path, 0, "header CRC mismatch"));
    }
    let version = u32_at(&header, 8);
    if version != VERSION {
        return Err(corrupt(
            path,
            8,
            format!("unsupported snapshot version {version}"),
        ));
    }
    let index = u64_at(&header, 12);
    if index == u64::MAX {
        // The log restarts at `index + 1`: no room for that (a damaged or hostile header).
        return Err(corrupt(
            path,
            12,
            "snapshot index u64::MAX leaves no room for a following log entry",
        ));
    }
    Ok(index)
}

/// Loads the snapshot at `path`, feeding its pairs in ascending key order to `sink`, checking
/// every chunk's CRC before its pairs are handed out and the trailer's whole-file CRC at the
/// end. On an error the sink may already have received some pairs: discard what it built.
pub fn load_snapshot(
    fs: &dyn FileSystem,
    path: &Path,
    config: &SnapshotConfig,
    sink: &mut PairSink<'_>,
) -> Result<SnapshotInfo> {
    SnapshotReader::open(fs, path, config)?.read_pairs(sink)
}

/// A snapshot opened for loading: its header is checked and its index known before any pair
/// is read, so the caller can set up its store for that index first.
pub struct SnapshotReader {
    reader: CrcReader<BufReader<Box<dyn ReadableFile>>>,
    path: PathBuf,
    index: u64,
    max_chunk_bytes: u32,
}

impl std::fmt::Debug for SnapshotReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotReader")
            .field("path", &self.path)
            .field("index", &self.index)
            .finish()
    }
}

impl SnapshotReader {
    /// Opens `path` and checks its header.
    pub fn open(fs: &dyn FileSystem, path: &Path, config: &SnapshotConfig) -> Result<Self> {
        let file = fs.open_read(path).map_err(WalError::io("open", path))?;
        let mut reader = CrcReader {
            inner: BufReader::with_capacity(256 << 10, file),
            crc: 0,
        };
        let index = read_header(&mut reader, path)?;
        Ok(SnapshotReader {
            reader,
            path: path.to_path_buf(),
            index,
            max_chunk_bytes: config.max_chunk_bytes,
        })
    }

    /// The index the snapshot covers.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Streams every pair to `sink` in ascending key order, checking each chunk's CRC before
    /// its pairs are handed out and the whole-file CRC at the end. On an error the sink may
    /// already have received some pairs: discard what it built.
    pub fn read_pairs(self, sink: &mut PairSink<'_>) -> Result<SnapshotInfo> {
        let SnapshotReader {
            mut reader,
            path,
            index,
            max_chunk_bytes,
        } = self;
        let path = path.as_path();
        let mut offset = HEADER_LEN as u64;
        let mut body = Vec::new();
        let mut prev_key: Vec<u8> = Vec::new();
        let mut total_pairs = 0u64;
        loop {
            let mut tag = [0u8; 1];
            read_exact_at(
                &mut reader,
                &mut tag,
                path,
                offset,
                "frame tag (trailer missing)",
            )?;
            match tag[0] {
                TAG_CHUNK => {
                    let mut head = [0u8; 12];
                    read_exact_at(&mut reader, &mut head, path, offset, "chunk header")?;
                    let pair_count = u32_at(&head, 0);
                    let body_len = u32_at(&head, 4);
                    if body_len > max_chunk_bytes {
                        return Err(corrupt(
                            path,
                            offset,
                            format!(
                                "chunk declares {body_len} B, more than max_chunk_bytes = {}",
                                max_chunk_bytes
                            ),
                        ));
                    }
                    body.resize(body_len as usize, 0);
                    read_exact_at(&mut reader, &mut body, path, offset, "chunk body")?;
                    let crc = crc32c::crc32c_append(crc32c::crc32c(&head[..8]), &body);
                    if crc != u32_at(&head, 8) {
                        return Err(corrupt(path, offset, "chunk CRC mismatch"));
                    }
                    let mut at = 0usize;
                    let mut prev_in_chunk: Option<(usize, usize)> = None;
                    for _ in 0..pair_count {
                        let bad =
                            || corrupt(path, offset, "chunk body does not match its pair count");
                        let lens = body.get(at..at + PAIR_HEADER_LEN).ok_or_else(bad)?;
                        let key_len = u32_at(lens, 0) as usize;
                        let value_len = u32_at(lens, 4) as usize;
                        let key_start = at + PAIR_HEADER_LEN;
                        let value_start = key_start.checked_add(key_len).ok_or_else(bad)?;
                        let end = value_start.checked_add(value_len).ok_or_else(bad)?;
                        if end > body.len() {
                            return Err(bad());
                        }
                        let key = &body[key_start..value_start];
                        let previous = match prev_in_chunk {
                            Some((start, end)) => Some(&body[start..end]),
                            None => (total_pairs > 0).then_some(prev_key.as_slice()),
                        };
                        if previous.is_some_and(|previous| key <= previous) {
                            return Err(corrupt(path, offset, "keys are not strictly ascending"));
                        }
                        sink(key, &body[value_start..end]).map_err(|source| WalError::Sink {
                            path: path.to_path_buf(),
                            source,
                        })?;
                        prev_in_chunk = Some((key_start, value_start));
                        total_pairs += 1;
                        at = end;
                    }
                    if at != body.len() {
                        return Err(corrupt(
                            path,
                            offset,
                            "chunk body has bytes after its last pair",
                        ));
                    }
                    if let Some((start, end)) = prev_in_chunk {
                        prev_key.clear();
                        prev_key.extend_from_slice(&body[start..end]);
                    }
                    offset += 13 + u64::from(body_len);
                }
                TAG_TRAILER => {
                    let mut count = [0u8; 8];
                    read_exact_at(&mut reader, &mut count, path, offset, "trailer")?;
                    let expected_crc = reader.crc;
                    let mut crc = [0u8; 4];
                    read_exact_at(&mut reader, &mut crc, path, offset, "trailer")?;
                    if u64::from_le_bytes(count) != total_pairs {
                        return Err(corrupt(
                            path,
                            offset,
                            "trailer pair count does not match the chunks",
                        ));
                    }
                    if u32::from_le_bytes(crc) != expected_crc {
                        return Err(corrupt(path, offset, "whole-file CRC mismatch"));
                    }
                    let mut extra = [0u8; 1];
                    let more = reader
                        .read(&mut extra)
                        .map_err(WalError::io("read", path))?;
                    if more != 0 {
                        return Err(corrupt(path, offset + 13, "bytes after the trailer"));
                    }
                    return Ok(SnapshotInfo {
                        index,
                        pairs: total_pairs,
                        bytes: offset + 13,
                    });
                }
                other => return Err(corrupt(path, offset, format!("unknown frame tag {other}"))),
            }
        }
    }
}

/// Computes the CRC of everything read through it.
struct CrcReader<R> {
    inner: R,
    crc: u32,
}

impl<R: Read> Read for CrcReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..n]);
        Ok(n)
    }
}
