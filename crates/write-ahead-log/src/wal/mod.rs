//! The segmented write-ahead log: append with group commit, read ranges, replace the tail.
//!
//! Invariants kept by [`Wal`] (the submodules hold its operations):
//! - `segments` is sorted and contiguous: each segment starts where its predecessor ends, and
//!   only the newest may be empty; only the newest is written to.
//! - Only the newest segment can hold unsynced bytes: a roll syncs the old segment first.
//! - Directory changes that remove segments are made durable one by one (remove, fsync dir) so
//!   a crash never leaves a hole in the middle of the log.
//! - After a failed write or fsync the handle is dead: every call returns [`WalError::Failed`]
//!   naming the original failure. Linux may drop dirty pages on a failed fsync, so retrying and
//!   carrying on could silently lose entries that were reported written.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

mod append;
mod maintenance;
mod open;
mod read;

use bytes::Bytes;

use crate::config::WalConfig;
use crate::error::{Result, WalError};
use crate::fs::{FileSystem, WritableFile};

/// One log entry as read back: its index and its (opaque) bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The log index.
    pub index: u64,
    /// The entry's bytes, sharing one buffer with the other entries of the same read.
    pub bytes: Bytes,
}

/// A torn or damaged record cut off the newest segment when opening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub path: PathBuf,
    /// Offset of the first dropped byte (the new file length).
    pub offset: u64,
    /// How many bytes were dropped.
    pub dropped_bytes: u64,
    /// What was wrong with the first dropped record.
    pub reason: String,
}

/// What opening had to repair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The torn tail that was cut off, if any.
    pub torn_tail: Option<TornTail>,
    /// Temporary files (interrupted archives or snapshots) that were removed.
    pub removed_temp_files: Vec<PathBuf>,
    /// Raw segments removed because a complete archive of them existed.
    pub removed_archived_raw: Vec<PathBuf>,
}

#[derive(Debug)]
enum Storage {
    Raw { offsets: Vec<u32>, len: u64 },
    Archived,
}

#[derive(Debug)]
struct Segment {
    first_index: u64,
    entries: u64,
    path: PathBuf,
    storage: Storage,
}

impl Segment {
    fn next_index(&self) -> u64 {
        self.first_index + self.entries
    }
}

/// The write-ahead log of one node: a directory of segments named by their first index.
pub struct Wal {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    config: WalConfig,
    segments: Vec<Segment>,
    /// Open on the newest segment when that segment is raw.
    writer: Option<Box<dyn WritableFile>>,
    /// Reused for every batch so appending does not allocate.
    encode_buf: Vec<u8>,
    unsynced: bool,
    /// The index after the last durable entry (meaningful only when the log has segments).
    synced_next: u64,
    failure: Option<Arc<str>>,
    recovery: RecoveryReport,
    /// The last archive decompressed by `read` (first index, records), so a peer catching up
    /// through an archive in many small reads decompresses it once.
    archive_cache: Mutex<Option<(u64, Bytes)>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("first_index", &self.first_index())
            .field("last_index", &self.last_index())
            .field("segments", &self.segments.len())
            .field("failure", &self.failure)
            .finish()
    }
}

impl Wal {
    /// What opening repaired.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file system the log uses.
    pub fn fs(&self) -> &Arc<dyn FileSystem> {
        &self.fs
    }

    /// The configuration the log was opened with.
    pub fn config(&self) -> &WalConfig {
        &self.config
    }

    /// The index the next appended entry must have; `None` for a brand-new log, which accepts
    /// any first index.
    pub fn next_index(&self) -> Option<u64> {
        self.segments.last().map(Segment::next_index)
    }

    /// The first index held, `None` if the log holds no entries.
    pub fn first_index(&self) -> Option<u64> {
        let first = self.segments.first()?.first_index;
        (self.next_index()? > first).then_some(first)
    }

    /// The last index held (synced or not), `None` if the log holds no entries.
    pub fn last_index(&self) -> Option<u64> {
        self.first_index()?;
        Some(self.next_index()? - 1)
    }

    /// The index up to which everything handed to this log is durable (entries before the
    /// log's first index count as durable: they were pruned after a snapshot, or the log was
    /// reset after one). `None` for a brand-new log with nothing synced.
    pub fn durable_index(&self) -> Option<u64> {
        self.segments.last()?;
        self.synced_next.checked_sub(1)
    }

    /// First indexes of the segments, oldest first, and whether each is archived.
    pub fn segment_starts(&self) -> Vec<(u64, bool)> {
        self.segments
            .iter()
            .map(|s| (s.first_index, matches!(s.storage, Storage::Archived)))
            .collect()
    }

    fn check_usable(&self) -> Result<()> {
        match &self.failure {
            Some(failure) => Err(WalError::Failed(Arc::clone(failure))),
            None => Ok(()),
        }
    }

    /// Marks the handle dead because of `error`, and returns it.
    fn fail(&mut self, error: WalError) -> WalError {
        tracing::error!(dir = %self.dir.display(), %error, "write-ahead log failed; refusing further work");
        self.failure = Some(error.to_string().into());
        error
    }
}
