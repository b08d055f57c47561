//! The crate's one error type.
//!
//! Every variant names what a person needs to act on: the file, the byte offset, the field or
//! the index involved. I/O errors always carry the path and the operation that failed.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Result alias used throughout the crate.
pub type Result<T, E = WalError> = std::result::Result<T, E>;

/// Everything that can go wrong in the write-ahead log, head snapshots and the Collapser.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A file-system call failed.
    #[error("{op} {path} failed: {source}")]
    Io {
        /// What we were doing, e.g. "fsync" or "rename to head.snap".
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A segment holds a record that is damaged somewhere other than the tail of the newest
    /// segment, so opening stops rather than silently dropping acknowledged entries.
    #[error("corrupt write-ahead log: {path} at byte offset {offset}: {reason}")]
    CorruptSegment {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the damaged record (in the decompressed stream for archives).
        offset: u64,
        /// What exactly is wrong.
        reason: String,
    },
    /// The segments do not form one contiguous run of indexes.
    #[error(
        "write-ahead log has a gap: {path} starts at index {found} but index {expected} was expected"
    )]
    Gap {
        /// The segment that does not follow its predecessor.
        path: PathBuf,
        /// The index the previous segment implies.
        expected: u64,
        /// The index this segment starts with.
        found: u64,
    },
    /// A head snapshot (or a received one) failed validation.
    #[error("corrupt snapshot {path} at byte offset {offset}: {reason}")]
    CorruptSnapshot {
        /// The snapshot file.
        path: PathBuf,
        /// Byte offset of the damaged part.
        offset: u64,
        /// What exactly is wrong.
        reason: String,
    },
    /// An entry handed to `append` is larger than `WalConfig::max_entry_bytes`.
    #[error("entry {index} has {len} bytes, more than max_entry_bytes = {max}")]
    EntryTooLarge {
        /// Index of the offending entry.
        index: u64,
        /// Its size.
        len: usize,
        /// The configured maximum.
        max: u32,
    },
    /// A key/value pair handed to the snapshot writer cannot fit in one snapshot chunk.
    #[error(
        "snapshot pair with a {key_len} B key and {value_len} B value exceeds max_chunk_bytes = {max}"
    )]
    PairTooLarge {
        /// Key size.
        key_len: usize,
        /// Value size.
        value_len: usize,
        /// The configured maximum chunk size.
        max: u32,
    },
    /// A snapshot source yielded keys out of ascending order.
    #[error(
        "snapshot source yielded keys out of order (after {previous_len} B key came a key that is not larger)"
    )]
    KeysOutOfOrder {
        /// Length of the key before the offending one.
        previous_len: usize,
    },
    /// `append` was given an index that does not follow the last one.
    #[error("append out of order: expected index {expected}, got {got}")]
    NonContiguous {
        /// The index the log expects next.
        expected: u64,
        /// The index that was given.
        got: u64,
    },
    /// The requested index is not (or no longer) in the log.
    #[error("index {index} is not in the write-ahead log (it holds {first:?}..={last:?})")]
    OutOfRange {
        /// The index asked for.
        index: u64,
        /// The first index held, if any.
        first: Option<u64>,
        /// The last index held, if any.
        last: Option<u64>,
    },
    /// Truncating would cut into an archived (committed, compressed) segment.
    #[error(
        "cannot truncate after index {index}: that part of the log is archived in {path} and is committed"
    )]
    TruncateArchived {
        /// The truncation point.
        index: u64,
        /// The archive that holds it.
        path: PathBuf,
    },
    /// A received snapshot is larger than `SnapshotConfig::max_snapshot_bytes`.
    #[error("received snapshot exceeds max_snapshot_bytes = {max}")]
    SnapshotTooLarge {
        /// The configured maximum.
        max: u64,
    },
    /// A configuration value is out of range.
    #[error("invalid write-ahead log configuration: {field}: {reason}")]
    Config {
        /// The field name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The snapshot source failed while being read.
    #[error("snapshot source failed: {0}")]
    Source(#[source] io::Error),
    /// The snapshot loader's sink refused a pair.
    #[error("snapshot sink failed while loading {path}: {source}")]
    Sink {
        /// The snapshot file being loaded.
        path: PathBuf,
        /// The sink's error.
        #[source]
        source: io::Error,
    },
    /// An earlier write or fsync failed; the handle refuses all further work because the kernel
    /// may have dropped the dirty pages, so carrying on could lose acknowledged data.
    #[error("write-ahead log is unusable after an earlier failure ({0}); reopen it to recover")]
    Failed(Arc<str>),
}

impl WalError {
    /// Builds a closure that wraps an `io::Error` with the operation and path.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| WalError::Io { op, path, source }
    }
}
