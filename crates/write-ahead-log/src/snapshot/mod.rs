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

use std::io;
use std::path::{Path, PathBuf};

mod load;
mod ship;
mod write;

pub use load::{SnapshotReader, load_snapshot, read_snapshot_index};
pub use ship::{SnapshotReceiver, SnapshotStream};
pub use write::write_snapshot;

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
