//! Shipping a head snapshot to a peer that fell behind: the sender reads the file as raw byte
//! chunks; the receiver writes them to a temp file (bounded by `max_snapshot_bytes`), and only
//! after verifying the whole file installs it atomically as `head.snap`.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::load::read_header;
use super::{
    HEADER_LEN, RECEIVE_NAME, SnapshotConfig, SnapshotInfo, head_snapshot_path, load_snapshot,
};
use crate::error::{Result, WalError};
use crate::fs::{FileSystem, ReadableFile, WritableFile};
use crate::segment::tmp_path;

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

    /// Bytes handed out so far (the offset of the next chunk).
    pub fn position(&self) -> u64 {
        self.sent
    }

    /// Continues from byte `offset` (e.g. a peer asks again after a lost chunk).
    pub fn seek(&mut self, offset: u64) -> Result<()> {
        if offset > self.total_len {
            return Err(WalError::CorruptSnapshot {
                path: self.path.clone(),
                offset,
                reason: format!("seek past the end of a {} B snapshot", self.total_len),
            });
        }
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(WalError::io("seek", &self.path))?;
        self.sent = offset;
        Ok(())
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
    /// The first bytes received, until the header can be checked.
    header: Vec<u8>,
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
            header: Vec::with_capacity(HEADER_LEN),
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
        // Check the header as soon as it is complete, so a stranger's bytes are refused at once
        // rather than after the whole transfer.
        if self.header.len() < HEADER_LEN {
            let wanted = (HEADER_LEN - self.header.len()).min(chunk.len());
            self.header.extend_from_slice(&chunk[..wanted]);
            if self.header.len() == HEADER_LEN {
                read_header(&mut self.header.as_slice(), &self.tmp)?;
            }
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
        // The log must restart after this snapshot's index once it is in place: record that
        // durably first, so a crash before the log is reset cannot leave stale entries at or
        // below the index beside the snapshot (see `crate::restart`).
        crate::restart::write_marker(self.fs.as_ref(), &self.dir, info.index)?;
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
