//! Disk: start-up recovery, and the storage thread that owns the write-ahead log.
//!
//! Start-up ([`recover`]): load the head snapshot into a fresh store, replay the WAL after it
//! (applying every entry up to the highest committed index recorded), and hand the accepted
//! entries above that index, with the durable promise, to paxos-core.
//!
//! The storage thread ([`StorageThread`]) is the only code that touches the WAL. It takes
//! [`Job`]s from the driver and works in rounds: it drains every job queued while the previous
//! round's fsync ran, writes all their entries, issues ONE fsync, and only then reports the
//! highest persist ticket durable (group commit). It also serves catch-up reads and snapshot
//! chunks, receives a peer's snapshot, and runs the Collapser when enough entries accumulated.
//! Its loop is an async fn ([`StorageThread::serve`]); production runs it on its own OS thread
//! ([`StorageThread::run`]), the deterministic simulator as a task (ADR 0140). An embedder's
//! [`DiskDelay`] is awaited between a round's writes and its fsync (production: none).
//!
//! This module holds the public API (the types the driver and the node exchange with the
//! thread, [`recover`], [`storage_config`]); the thread's work is split by job:
//! - `persist`: the loop, its rounds and group commit, and appending to the log;
//! - `catch_up`: reading committed values for a peer;
//! - `snapshot`: serving the head snapshot to a peer, fetching and installing a peer's;
//! - `collapse`: writing a snapshot of the store and pruning the log behind it;
//! - `replay`: the start-up replay of the log into the store (reading and decoding on a
//!   second thread while the caller applies).
//!
//! Invariants:
//! - A ticket is reported durable only after the fsync that covers its entries (or, with
//!   `fsync = false`, after the write).
//! - Entries are appended contiguously; an entry at an index the log already holds replaces
//!   that entry and everything after it (Paxos may overwrite an uncommitted tail).
//! - Installing a received snapshot replaces the store only if the store is behind it, under the
//!   store's write lock, so an apply running at the same time is never lost.
//! - Any WAL error is fatal: the thread reports it and stops; the node shuts down rather than
//!   acknowledge anything it might not have written.
//! - A committed entry that cannot be decoded is fatal too (at recovery and when the driver
//!   applies it, [`UndecodableEntry`]): applying it as a no-op would make the stores diverge.
//! - The job queue is a bounded tokio channel: the driver never blocks on it (it keeps a
//!   backlog when the queue is full); only the storage loop waits on it.
//! - Before a tail overwrite writes its redo file, the log is synced (see `crate::overwrite`).
//! - The thread is the log's only writer: every job runs to its end before the next starts.

mod catch_up;
mod collapse;
mod persist;
mod replay;
mod snapshot;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use kv_store::{SnapshotLoader, Store, Update, UserFunctionRegistry};
use paxos_core::{CatchUpRead, Index, NodeId, Persist, RecoveredState, Value};
use tokio::sync::mpsc::UnboundedSender;
use wire_codec::rkyv::util::AlignedVec;
use write_ahead_log::{
    Collapser, CollapserConfig, FileSystem, SnapshotConfig, SnapshotStream, Wal, WalConfig,
    WalError,
};

pub use collapse::{
    BadTlogsToKeep, CollapseReport, SegmentsToKeep, StoreCopy, answer_collapse_tlogs,
};
pub use snapshot::open_snapshot_at;

use crate::payload;
use crate::promise;
use crate::wire::{PeerMessage, StoredEntry};

/// The directory of the WAL (and head snapshot) inside a node's home directory.
pub const WAL_DIR: &str = "wal";
/// Most entry bytes read for one catch-up answer (at least one entry is always read).
const CATCH_UP_READ_BYTES: usize = 8 * 1024 * 1024;

/// A storage failure: start-up cannot proceed, or the WAL failed while running.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The WAL or snapshot failed (the message names the file and offset).
    #[error(transparent)]
    Wal(#[from] WalError),
    /// The promise file failed.
    #[error(transparent)]
    Promise(#[from] promise::PromiseError),
    /// A WAL record could not be decoded.
    #[error(
        "write-ahead log {} entry {index} cannot be decoded ({reason}); run \
         `rarakoon-bin wal verify {}` to see the damage",
        dir.display(),
        dir.display()
    )]
    BadEntry {
        /// The WAL directory.
        dir: PathBuf,
        /// The entry's index.
        index: Index,
        /// Why.
        reason: String,
    },
    /// The snapshot could not be loaded into the store.
    #[error("head snapshot in {} cannot be loaded: {reason}", dir.display())]
    BadSnapshot {
        /// The WAL directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// A committed entry cannot be decoded: this node cannot apply it.
    #[error(transparent)]
    Undecodable(#[from] UndecodableEntry),
    /// Replacing the log's uncommitted tail failed (see [`crate::overwrite`]).
    #[error(transparent)]
    Overwrite(#[from] crate::overwrite::RedoError),
    /// Entries to persist do not follow the log (a bug; refusing protects the log).
    #[error("cannot persist entry {index}: the write-ahead log expects {expected}")]
    Gap {
        /// Index offered.
        index: Index,
        /// Index expected.
        expected: Index,
    },
}

/// Settings the storage needs, derived from the node's config.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// The node's home directory.
    pub home: PathBuf,
    /// WAL settings.
    pub wal: WalConfig,
    /// Collapser settings.
    pub collapser: CollapserConfig,
    /// fsync before reporting durable.
    pub fsync: bool,
    /// Every file of the home (WAL, snapshots, promise, redo file) is read and written through
    /// this: [`write_ahead_log::StdFs`] in production, a `SimFs` in the deterministic simulator.
    pub fs: Arc<dyn FileSystem>,
    /// Broken-on-purpose switches (only settable with the `test-support` feature).
    pub sabotage: crate::sabotage::Sabotage,
}

impl StorageConfig {
    /// The WAL directory.
    pub fn wal_dir(&self) -> PathBuf {
        self.home.join(WAL_DIR)
    }
}

/// What start-up recovered.
#[derive(Debug)]
pub struct Recovered {
    /// The store, with every committed entry applied.
    pub store: Store,
    /// The state for paxos-core.
    pub state: RecoveredState,
    /// The opened WAL.
    pub wal: Wal,
    /// Index of the loaded head snapshot, if any.
    pub snapshot_index: Option<Index>,
}

/// Decodes a WAL record.
pub fn decode_entry(
    bytes: &[u8],
    scratch: &mut AlignedVec,
) -> Result<StoredEntry, wire_codec::DecodeError> {
    wire_codec::decode_payload(bytes, scratch)
}

/// A committed value whose updates this node cannot decode.
///
/// Every node must apply every committed value; skipping one would make this node's store
/// differ from the others' for ever after. So it is fatal: the node stops, naming the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "committed entry {index} cannot be applied: update #{position} of its batch (proposal \
     {proposal}) cannot be decoded ({reason}). Every node must apply every committed entry, so \
     this node stops instead of skipping it and diverging. The entry was most likely written by \
     a newer Rarakoon version: upgrade this node to the version the other nodes run, then \
     restart it"
)]
pub struct UndecodableEntry {
    /// The entry's index.
    pub index: Index,
    /// Position of the update in the entry's batch.
    pub position: usize,
    /// The proposal id of that update.
    pub proposal: u64,
    /// What the decoder said.
    pub reason: String,
}

/// Decodes the client updates of a committed value (a `Master` value has none). All of them
/// are decoded before any is applied, so an undecodable one leaves the store untouched.
pub fn batch_updates(index: Index, value: &Value) -> Result<Vec<Update>, UndecodableEntry> {
    match value {
        Value::Master { .. } => Ok(Vec::new()),
        Value::Batch(items) => items
            .iter()
            .enumerate()
            .map(|(position, p)| {
                payload::decode(Bytes::copy_from_slice(&p.payload)).map_err(|e| UndecodableEntry {
                    index,
                    position,
                    proposal: p.id.0,
                    reason: e.to_string(),
                })
            })
            .collect(),
    }
}

/// Loads the head snapshot and replays the WAL after it. See the module documentation.
pub fn recover(
    config: &StorageConfig,
    user_functions: Arc<UserFunctionRegistry>,
) -> Result<Recovered, StorageError> {
    let fs = Arc::clone(&config.fs);
    let dir = config.wal_dir();
    fs.create_dir_all(&dir).map_err(|source| WalError::Io {
        op: "create directory",
        path: dir.clone(),
        source,
    })?;
    let head = write_ahead_log::head_snapshot_path(&dir);
    let snapshot_index = write_ahead_log::read_snapshot_index(fs.as_ref(), &head)?;
    let mut loader = SnapshotLoader::new(snapshot_index.unwrap_or(0));
    let mut load_error = None;
    let recovered = write_ahead_log::recover(
        Arc::clone(&fs),
        &dir,
        config.wal.clone(),
        &config.collapser.snapshot,
        &mut |k, v| {
            loader.push(k, v).map_err(|e| {
                let msg = e.to_string();
                load_error = Some(msg.clone());
                std::io::Error::other(msg)
            })
        },
    );
    if let Some(reason) = load_error {
        return Err(StorageError::BadSnapshot { dir, reason });
    }
    let write_ahead_log::Recovered { mut wal, snapshot } = recovered?;
    if let Some(rewritten) = crate::overwrite::finish_interrupted(&config.home, &mut wal)? {
        tracing::warn!(
            entries = rewritten,
            "finished replacing the uncommitted end of the write-ahead log, which the last stop \
             interrupted"
        );
    }
    if let Some(torn) = &wal.recovery_report().torn_tail {
        if config.sabotage.refuse_torn_tail() {
            return Err(StorageError::Wal(WalError::CorruptSegment {
                path: torn.path.clone(),
                offset: torn.offset,
                reason: "sabotage: a torn tail is treated as damage".into(),
            }));
        }
        tracing::warn!(
            file = %torn.path.display(),
            offset = torn.offset,
            dropped_bytes = torn.dropped_bytes,
            reason = %torn.reason,
            "repaired a torn write at the end of the write-ahead log (an unfinished write from \
             before the last stop; nothing acknowledged is lost)"
        );
    }
    let snapshot_index = snapshot.map(|s| s.index);
    let mut store = if snapshot_index.is_some() {
        loader.finish(Arc::clone(&user_functions))
    } else {
        Store::new(user_functions)
    };

    let base = snapshot_index.unwrap_or(0);
    let last = wal.last_index().unwrap_or(base);
    let mut next = base + 1;
    if let Some(first) = wal.first_index() {
        next = next.max(first);
    }
    // Read and decode on a second thread while this one applies (ADR 0191).
    let (wal, replayed) = replay::replay(wal, &dir, next, last, base, &mut store);
    let replay::Replayed { committed, pending } = replayed?;
    let promised = promise::load(fs.as_ref(), &config.home)?;
    tracing::info!(
        snapshot = ?snapshot_index,
        committed,
        uncommitted = pending.len(),
        keys = store.key_count(),
        "recovered from disk"
    );
    Ok(Recovered {
        store,
        state: RecoveredState {
            promised,
            committed,
            entries: pending,
        },
        wal,
        snapshot_index,
    })
}

/// Work for the storage thread.
#[derive(Debug)]
pub enum Job {
    /// Write, then report the ticket durable.
    Persist(Persist),
    /// Read committed values for a peer.
    CatchUp {
        /// The peer.
        peer: NodeId,
        /// First index.
        from: Index,
        /// Last index.
        up_to: Index,
    },
    /// Run the Collapser (forced: regardless of the threshold); answer on `reply`.
    Collapse {
        /// Ignore the threshold.
        force: bool,
        /// Where to send a summary.
        reply: Option<tokio::sync::oneshot::Sender<Result<CollapseReport, String>>>,
    },
    /// Arakoon's COLLAPSE_TLOGS: a forced collapse keeping `keep` completed segments instead
    /// of the configured `segments_to_keep`; answer on `reply`.
    CollapseTlogs {
        /// Completed segments kept besides the open one.
        keep: SegmentsToKeep,
        /// Where to send a summary.
        reply: tokio::sync::oneshot::Sender<Result<CollapseReport, String>>,
    },
    /// A peer asks for a snapshot chunk.
    ServeSnapshot {
        /// The peer.
        peer: NodeId,
        /// Offset.
        offset: u64,
        /// Length wanted.
        len: u32,
    },
    /// Fetch and install `peer`'s head snapshot.
    FetchSnapshot {
        /// The peer.
        peer: NodeId,
    },
    /// A chunk of the snapshot being fetched.
    SnapshotChunk {
        /// Sender.
        peer: NodeId,
        /// Snapshot index.
        index: Index,
        /// File size.
        total: u64,
        /// Offset.
        offset: u64,
        /// Bytes.
        data: Vec<u8>,
    },
    /// The peer asked has no snapshot.
    NoSnapshot {
        /// The peer.
        peer: NodeId,
    },
}

/// What the storage thread tells the driver.
#[derive(Debug)]
pub enum StorageEvent {
    /// Every persist up to this ticket is durable.
    Durable(u64),
    /// A catch-up read for a peer.
    CatchUpRead {
        /// The peer.
        peer: NodeId,
        /// First index asked.
        from: Index,
        /// What was read.
        read: CatchUpRead,
    },
    /// A message to send to a peer (snapshot transfer).
    Send(NodeId, PeerMessage),
    /// A fetched snapshot is installed; the store reflects `index`.
    SnapshotInstalled(Index),
    /// The WAL failed; the node must stop.
    Failed(String),
}

/// The storage thread's state.
pub struct StorageThread {
    config: StorageConfig,
    wal: Wal,
    store: Arc<RwLock<Store>>,
    user_functions: Arc<UserFunctionRegistry>,
    collapser: Collapser,
    events: UnboundedSender<StorageEvent>,
    scratch: AlignedVec,
    record: bytes::BytesMut,
    entries_since_collapse_check: u64,
    serving: Vec<(NodeId, SnapshotStream, u64)>,
    fetch: Option<snapshot::Fetch>,
    metrics: Arc<crate::metrics::NodeMetrics>,
    disk_delay: Option<DiskDelay>,
    /// The head snapshot being written on its own thread (`collapse`, ADR 0186).
    collapsing: Option<collapse::InFlight>,
    /// Notified by the snapshot thread when it is done.
    collapse_done: Arc<tokio::sync::Notify>,
    /// Write snapshots on a thread of their own (`run`); inline when the loop is a task.
    background_snapshots: bool,
}

/// How long the disk takes before a round's fsync, given the round's entry count: an input of
/// the storage loop that the embedder supplies (the simulator's slow disk). Production has
/// none.
#[derive(Clone)]
pub struct DiskDelay(pub Arc<dyn Fn(u64) -> Duration + Send + Sync>);

impl std::fmt::Debug for DiskDelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DiskDelay(..)")
    }
}

impl StorageThread {
    /// Prepares the thread's state (run it with [`StorageThread::run`] on its own thread).
    pub fn new(
        config: StorageConfig,
        wal: Wal,
        store: Arc<RwLock<Store>>,
        user_functions: Arc<UserFunctionRegistry>,
        events: UnboundedSender<StorageEvent>,
    ) -> Self {
        let collapser = Collapser::new(config.collapser.clone());
        StorageThread {
            config,
            wal,
            store,
            user_functions,
            collapser,
            events,
            scratch: AlignedVec::new(),
            record: bytes::BytesMut::new(),
            entries_since_collapse_check: 0,
            serving: Vec::new(),
            fetch: None,
            metrics: Arc::new(crate::metrics::NodeMetrics::new()),
            disk_delay: None,
            collapsing: None,
            collapse_done: Arc::new(tokio::sync::Notify::new()),
            background_snapshots: false,
        }
    }

    /// Records fsyncs and collapses in `metrics` (by default in metrics of its own).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::NodeMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Waits `delay` between writing a round's entries and its fsync (see [`DiskDelay`]);
    /// production has none.
    #[must_use]
    pub fn with_disk_delay(mut self, delay: Option<DiskDelay>) -> Self {
        self.disk_delay = delay;
        self
    }
}

/// Builds the storage config of a node, whose files go through `fs`.
pub fn storage_config(
    node: &crate::config::NodeConfig,
    max_entry_bytes: u32,
    fs: Arc<dyn FileSystem>,
) -> StorageConfig {
    let compressor = match node.compressor {
        crate::config::Compressor::Zstd => write_ahead_log::Compressor::Zstd,
        crate::config::Compressor::None => write_ahead_log::Compressor::None,
    };
    let segment = node.segment_size_bytes.min(1 << 31);
    let wal = WalConfig {
        max_entry_bytes,
        segment_target_bytes: segment,
        max_segment_bytes: (segment + u64::from(max_entry_bytes) + (1 << 20))
            .min(u64::from(u32::MAX)),
        compressor,
        ..WalConfig::default()
    };
    let snapshot = SnapshotConfig {
        max_chunk_bytes: (node.max_request_size as u32)
            .saturating_mul(2)
            .max(64 << 20),
        max_snapshot_bytes: node.max_snapshot_bytes,
        ..SnapshotConfig::default()
    };
    StorageConfig {
        home: node.home_dir.clone(),
        wal,
        collapser: CollapserConfig {
            threshold_entries: node.collapse_threshold_entries,
            // The config counts completed segments; the log's prune counts the open one too.
            segments_to_keep: SegmentsToKeep::new(node.segments_to_keep)
                .map_or(1, SegmentsToKeep::with_open_segment),
            snapshot,
        },
        fsync: node.fsync,
        fs,
        sabotage: crate::sabotage::Sabotage::default(),
    }
}

/// The path of a node's WAL directory.
pub fn wal_dir(home: &Path) -> PathBuf {
    home.join(WAL_DIR)
}
