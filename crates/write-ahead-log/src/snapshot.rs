//! Head snapshots: the whole store at one committed index, streamed to and from a file.
//!
//! ```text
//! header  : magic "RRKNSNAP" | u32 version (1) | u64 index | u32 crc32c(previous 20 bytes)
//! chunk   : u8 tag 1 | u32 pair_count | u32 body_len | u32 crc32c(pair_count, body_len, body) | body
//!           body = pair_count times (u32 key_len | u32 value_len | key | value)
//! trailer : u8 tag 2 | u64 total_pairs | u32 crc32c(every byte of the file before this field)
//! ```
//! All integers are little-endian. Keys are strictly ascending across the whole file. Chunk
//! bodies are bounded by `max_chunk_bytes`, checked before allocating. Writing goes to
//! `head.snap.tmp`, which is fsync'd, renamed to `head.snap`, and the directory fsync'd.
//! Neither writing nor loading holds more than one chunk in memory.
//!
//! For a peer that fell behind, [`SnapshotStream`] reads the file as raw byte chunks and
//! [`SnapshotReceiver`] takes them into a temp file, verifies the whole format and CRCs, and
//! only then installs it atomically.

use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Result, WalError};
use crate::fs::{FileSystem, ReadableFile, WritableFile};
use crate::segment::tmp_path;

/// File name of the head snapshot inside the log directory.
pub const HEAD_SNAPSHOT: &str = "head.snap";
const RECEIVE_NAME: &str = "head.snap.recv";
const MAGIC: &[u8; 8] = b"RRKNSNAP";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 24;
const TAG_CHUNK: u8 = 1;
const TAG_TRAILER: u8 = 2;
const PAIR_HEADER_LEN: usize = 8;

/// A callback that receives key/value pairs in ascending key order.
pub type PairSink<'a> = dyn FnMut(&[u8], &[u8]) -> io::Result<()> + 'a;

/// What the snapshot writer needs from the store: a consistent view of all pairs at one
/// applied index.
pub trait SnapshotSource {
    /// The index the pairs reflect.
    fn applied_index(&self) -> u64;
    /// Feeds every `(key, value)` in ascending key order to `sink`; stops on the sink's error.
    fn for_each_pair(&self, sink: &mut PairSink<'_>) -> io::Result<()>;
}

/// Limits and sizes for snapshots.
#[derive(Debug, Clone)]
pub struct SnapshotConfig {
    /// A chunk is written once its body reaches this size.
    pub chunk_target_bytes: usize,
    /// Largest chunk body accepted (bounds the largest key + value).
    pub max_chunk_bytes: u32,
    /// Largest snapshot a [`SnapshotReceiver`] accepts.
    pub max_snapshot_bytes: u64,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            chunk_target_bytes: 256 << 10,
            max_chunk_bytes: 64 << 20,
            max_snapshot_bytes: 64 << 30,
        }
    }
}

/// What a written, loaded or received snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The log index the snapshot covers.
    pub index: u64,
    /// Number of key/value pairs.
    pub pairs: u64,
    /// File size in bytes.
    pub bytes: u64,
}

/// Path of the head snapshot in `dir`.
pub fn head_snapshot_path(dir: &Path) -> PathBuf {
    dir.join(HEAD_SNAPSHOT)
}

struct FrameWriter<'a> {
    file: &'a mut dyn WritableFile,
    path: &'a Path,
    crc: u32,
    written: u64,
    body: Vec<u8>,
    chunk_pairs: u32,
    total_pairs: u64,
    prev_key: Vec<u8>,
    config: &'a SnapshotConfig,
}

impl FrameWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.written += bytes.len() as u64;
        self.file
            .write_all(bytes)
            .map_err(WalError::io("write", self.path))
    }

    fn push(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let pair_len = PAIR_HEADER_LEN + key.len() + value.len();
        if pair_len > self.config.max_chunk_bytes as usize {
            return Err(WalError::PairTooLarge {
                key_len: key.len(),
                value_len: value.len(),
                max: self.config.max_chunk_bytes,
            });
        }
        if self.total_pairs > 0 && key <= self.prev_key.as_slice() {
            return Err(WalError::KeysOutOfOrder {
                previous_len: self.prev_key.len(),
            });
        }
        self.prev_key.clear();
        self.prev_key.extend_from_slice(key);
        if !self.body.is_empty()
            && self.body.len() + pair_len > self.config.max_chunk_bytes as usize
        {
            self.flush_chunk()?;
        }
        // Both lengths are below max_chunk_bytes, a u32.
        self.body
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.body
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.body.extend_from_slice(key);
        self.body.extend_from_slice(value);
        self.chunk_pairs += 1;
        self.total_pairs += 1;
        if self.body.len() >= self.config.chunk_target_bytes {
            self.flush_chunk()?;
        }
        Ok(())
    }

    fn flush_chunk(&mut self) -> Result<()> {
        if self.chunk_pairs == 0 {
            return Ok(());
        }
        let mut header = [0u8; 13];
        header[0] = TAG_CHUNK;
        header[1..5].copy_from_slice(&self.chunk_pairs.to_le_bytes());
        header[5..9].copy_from_slice(&(self.body.len() as u32).to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&header[1..9]), &self.body);
        header[9..13].copy_from_slice(&crc.to_le_bytes());
        self.write(&header)?;
        let body = std::mem::take(&mut self.body);
        let result = self.write(&body);
        self.body = body;
        self.body.clear();
        self.chunk_pairs = 0;
        result
    }

    fn finish(&mut self) -> Result<()> {
        self.flush_chunk()?;
        let mut trailer = [0u8; 9];
        trailer[0] = TAG_TRAILER;
        trailer[1..].copy_from_slice(&self.total_pairs.to_le_bytes());
        self.write(&trailer)?;
        let crc = self.crc;
        self.write(&crc.to_le_bytes())
    }
}

/// Writes the head snapshot of `source` into `dir` atomically (temp file, fsync, rename,
/// directory fsync), streaming pairs chunk by chunk.
pub fn write_snapshot(
    fs: &dyn FileSystem,
    dir: &Path,
    source: &dyn SnapshotSource,
    config: &SnapshotConfig,
) -> Result<SnapshotInfo> {
    let path = head_snapshot_path(dir);
    let tmp = tmp_path(&path);
    let index = source.applied_index();
    let mut file = fs.create(&tmp).map_err(WalError::io("create", &tmp))?;
    let mut writer = FrameWriter {
        file: file.as_mut(),
        path: &tmp,
        crc: 0,
        written: 0,
        body: Vec::with_capacity(
            config
                .chunk_target_bytes
                .min(config.max_chunk_bytes as usize)
                + 1024,
        ),
        chunk_pairs: 0,
        total_pairs: 0,
        prev_key: Vec::new(),
        config,
    };
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..20].copy_from_slice(&index.to_le_bytes());
    let header_crc = crc32c::crc32c(&header[..20]);
    header[20..].copy_from_slice(&header_crc.to_le_bytes());
    writer.write(&header)?;

    let mut failure = None;
    let fed = source.for_each_pair(&mut |key, value| {
        writer.push(key, value).map_err(|error| {
            failure = Some(error);
            io::Error::other("snapshot writer failed")
        })
    });
    if let Some(error) = failure {
        return Err(error);
    }
    fed.map_err(WalError::Source)?;
    writer.finish()?;
    let info = SnapshotInfo {
        index,
        pairs: writer.total_pairs,
        bytes: writer.written,
    };
    file.sync_data().map_err(WalError::io("fsync", &tmp))?;
    drop(file);
    fs.rename(&tmp, &path)
        .map_err(WalError::io("rename into place", &path))?;
    fs.sync_dir(dir)
        .map_err(WalError::io("fsync directory", dir))?;
    tracing::info!(file = %path.display(), index, pairs = info.pairs, bytes = info.bytes, "wrote head snapshot");
    Ok(info)
}

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

fn read_header(reader: &mut impl Read, path: &Path) -> Result<u64> {
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
    Ok(u64_at(&header, 12))
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

/// The head snapshot as a stream of raw byte chunks, for shipping to a peer.
pub struct SnapshotStream {
    file: Box<dyn ReadableFile>,
    path: PathBuf,
    index: u64,
    total_len: u64,
    sent: u64,
}

impl std::fmt::Debug for SnapshotStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotStream")
            .field("path", &self.path)
            .field("index", &self.index)
            .field("sent", &self.sent)
            .finish()
    }
}

impl SnapshotStream {
    /// Opens the head snapshot of `dir`; `None` if there is none.
    pub fn open(fs: &dyn FileSystem, dir: &Path) -> Result<Option<SnapshotStream>> {
        let path = head_snapshot_path(dir);
        if !fs.exists(&path).map_err(WalError::io("check", &path))? {
            return Ok(None);
        }
        let total_len = fs.file_len(&path).map_err(WalError::io("stat", &path))?;
        // Keep one handle: on a real file system it still reads this snapshot even if a newer
        // one is renamed over it meanwhile.
        let mut file = fs.open_read(&path).map_err(WalError::io("open", &path))?;
        let index = read_header(&mut file, &path)?;
        file.seek(SeekFrom::Start(0))
            .map_err(WalError::io("seek", &path))?;
        Ok(Some(SnapshotStream {
            file,
            path,
            index,
            total_len,
            sent: 0,
        }))
    }

    /// The index the snapshot covers.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Size of the whole file.
    pub fn total_len(&self) -> u64 {
        self.total_len
    }

    /// The next up to `max_len` bytes, or `None` at the end.
    pub fn next_chunk(&mut self, max_len: usize) -> Result<Option<Vec<u8>>> {
        let left = self.total_len - self.sent;
        if left == 0 {
            return Ok(None);
        }
        let len = left.min(max_len.max(1) as u64) as usize;
        let mut chunk = vec![0u8; len];
        self.file
            .read_exact(&mut chunk)
            .map_err(WalError::io("read", &self.path))?;
        self.sent += len as u64;
        Ok(Some(chunk))
    }
}

/// Takes a snapshot shipped by a peer, chunk by chunk, and installs it as the head snapshot
/// once it is complete and verified.
pub struct SnapshotReceiver {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    tmp: PathBuf,
    file: Box<dyn WritableFile>,
    received: u64,
    config: SnapshotConfig,
}

impl std::fmt::Debug for SnapshotReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotReceiver")
            .field("tmp", &self.tmp)
            .field("received", &self.received)
            .finish()
    }
}

impl SnapshotReceiver {
    /// Starts receiving into a temp file in `dir`.
    pub fn begin(fs: Arc<dyn FileSystem>, dir: &Path, config: SnapshotConfig) -> Result<Self> {
        let tmp = tmp_path(&dir.join(RECEIVE_NAME));
        let file = fs.create(&tmp).map_err(WalError::io("create", &tmp))?;
        Ok(SnapshotReceiver {
            fs,
            dir: dir.to_path_buf(),
            tmp,
            file,
            received: 0,
            config,
        })
    }

    /// Appends the next chunk, refusing to grow past `max_snapshot_bytes`.
    pub fn push(&mut self, chunk: &[u8]) -> Result<()> {
        let total = self.received.saturating_add(chunk.len() as u64);
        if total > self.config.max_snapshot_bytes {
            return Err(WalError::SnapshotTooLarge {
                max: self.config.max_snapshot_bytes,
            });
        }
        self.file
            .write_all(chunk)
            .map_err(WalError::io("write", &self.tmp))?;
        self.received = total;
        Ok(())
    }

    /// Syncs, verifies the whole snapshot (format, CRCs, key order) and installs it as
    /// `head.snap` atomically. On failure the temp file is removed and nothing is installed.
    pub fn finish(mut self) -> Result<SnapshotInfo> {
        let result = self.install();
        if result.is_err() {
            // Best effort: a leftover temp file is removed on the next open anyway.
            let _ = self.fs.remove_file(&self.tmp);
        }
        result
    }

    fn install(&mut self) -> Result<SnapshotInfo> {
        self.file
            .sync_data()
            .map_err(WalError::io("fsync", &self.tmp))?;
        let info = load_snapshot(
            self.fs.as_ref(),
            &self.tmp,
            &self.config,
            &mut |_, _| Ok(()),
        )?;
        let path = head_snapshot_path(&self.dir);
        self.fs
            .rename(&self.tmp, &path)
            .map_err(WalError::io("rename into place", &path))?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(WalError::io("fsync directory", &self.dir))?;
        tracing::info!(file = %path.display(), index = info.index, pairs = info.pairs, "installed received snapshot");
        Ok(info)
    }
}
