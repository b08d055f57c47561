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

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use kv_store::{SnapshotLoader, Store, Update, UserFunctionRegistry};
use paxos_core::{CatchUpRead, Index, LogEntry, NodeId, Persist, RecoveredState, Value};
use tokio::sync::mpsc::{Receiver, UnboundedSender};
use wire_codec::rkyv::util::AlignedVec;
use write_ahead_log::{
    Collapser, CollapserConfig, FileSystem, SnapshotConfig, SnapshotReceiver, SnapshotSource,
    SnapshotStream, Wal, WalConfig, WalError,
};

use crate::payload;
use crate::promise;
use crate::wire::{PeerMessage, SNAPSHOT_CHUNK_BYTES, StoredEntry};

/// The directory of the WAL (and head snapshot) inside a node's home directory.
pub const WAL_DIR: &str = "wal";
/// Most entry bytes read for one catch-up answer (at least one entry is always read).
const CATCH_UP_READ_BYTES: usize = 8 * 1024 * 1024;
/// Most jobs handled in one round (bounds the latency of the round's fsync).
const MAX_JOBS_PER_ROUND: usize = 4096;
/// A snapshot chunk not received within this time is asked for again.
const SNAPSHOT_RETRY: Duration = Duration::from_secs(2);

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
    let mut committed = base;
    let mut pending: Vec<LogEntry> = Vec::new();
    let mut scratch = AlignedVec::new();
    let mut next = base + 1;
    if let Some(first) = wal.first_index() {
        next = next.max(first);
    }
    while next <= last {
        let entries = wal.read(next, last, CATCH_UP_READ_BYTES)?;
        if entries.is_empty() {
            break;
        }
        for entry in entries {
            let stored =
                decode_entry(&entry.bytes, &mut scratch).map_err(|e| StorageError::BadEntry {
                    dir: dir.clone(),
                    index: entry.index,
                    reason: e.to_string(),
                })?;
            committed = committed.max(stored.committed.min(last));
            pending.push(stored.into_log_entry(entry.index));
            next = entry.index + 1;
            apply_up_to(&mut store, &mut pending, committed)?;
        }
    }
    apply_up_to(&mut store, &mut pending, committed)?;
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

/// Applies (and removes) the entries of `pending` up to `committed`; an undecodable committed
/// entry stops the recovery.
fn apply_up_to(
    store: &mut Store,
    pending: &mut Vec<LogEntry>,
    committed: Index,
) -> Result<(), UndecodableEntry> {
    let n = pending.iter().take_while(|e| e.index <= committed).count();
    for entry in pending.drain(..n) {
        let updates = batch_updates(entry.index, &entry.value)?;
        if let Err(stale) = store.apply_batch(entry.index, &updates) {
            tracing::debug!("replay skipped an entry the snapshot covers: {stale}");
        }
    }
    Ok(())
}

/// A point-in-time copy of the store for the Collapser: keys copied into one buffer, values
/// shared (reference-counted), so taking it holds the store's read lock only for a walk over
/// memory, never for the snapshot's compression and disk writes.
#[derive(Debug, Default)]
pub struct StoreCopy {
    applied: u64,
    keys: Vec<u8>,
    /// `(end of the key in keys, value)`; a key starts where the previous one ended.
    pairs: Vec<(usize, Bytes)>,
}

impl StoreCopy {
    /// Copies `store` (the caller holds its read lock for the duration of this call only).
    pub fn of(store: &Store) -> StoreCopy {
        let mut copy = StoreCopy {
            applied: store.applied_index().unwrap_or(0),
            keys: Vec::new(),
            pairs: Vec::with_capacity(usize::try_from(store.key_count()).unwrap_or(0)),
        };
        for (key, value) in store.iter() {
            copy.keys.extend_from_slice(key);
            copy.pairs.push((copy.keys.len(), value.clone()));
        }
        copy
    }
}

impl SnapshotSource for StoreCopy {
    fn applied_index(&self) -> u64 {
        self.applied
    }

    fn for_each_pair(
        &self,
        sink: &mut (dyn FnMut(&[u8], &[u8]) -> std::io::Result<()> + '_),
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (end, value) in &self.pairs {
            let key = self.keys.get(start..*end).unwrap_or_default();
            sink(key, value)?;
            start = *end;
        }
        Ok(())
    }
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

/// What a collapse did, for the admin command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollapseReport {
    /// The new snapshot's index, if one was written.
    pub snapshot_index: Option<Index>,
    /// Segments archived.
    pub archived: usize,
    /// Segments removed.
    pub pruned: usize,
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

/// A snapshot transfer in progress. Invariants: only chunks from `peer`, at exactly
/// `next_offset`, of at most `asked_len` bytes, for the same `index` and `total` as the first
/// chunk, within `max_snapshot_bytes`, are written; anything else a peer sends is refused
/// (logged) and never stops the node. Only local disk errors are fatal.
struct Fetch {
    peer: NodeId,
    receiver: Option<SnapshotReceiver>,
    index: Option<Index>,
    total: Option<u64>,
    next_offset: u64,
    asked_len: u32,
    asked_at: Instant,
}

impl Fetch {
    fn new(peer: NodeId) -> Fetch {
        Fetch {
            peer,
            receiver: None,
            index: None,
            total: None,
            next_offset: 0,
            asked_len: SNAPSHOT_CHUNK_BYTES,
            asked_at: Instant::now(),
        }
    }
}

/// Why a chunk was refused.
enum ChunkVerdict {
    /// Stale or duplicate (another offset than asked): ignore it, keep the transfer.
    Ignore(String),
    /// The transfer cannot go on with this peer's data: start over later.
    Abandon(String),
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
    fetch: Option<Fetch>,
    metrics: Arc<crate::metrics::NodeMetrics>,
    disk_delay: Option<DiskDelay>,
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

    /// Works until the job channel closes or the WAL fails, on the calling OS thread (the
    /// production way: blocking disk I/O stays off the node's runtime). The loop itself is
    /// [`StorageThread::serve`], driven here by a current-thread runtime of its own.
    pub fn run(self, jobs: Receiver<Job>) {
        // A minimal runtime (a timer, no threads) to wait for a job with a timeout.
        let waiter = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(waiter) => waiter,
            Err(e) => {
                let msg = format!("cannot start the storage thread's timer: {e}");
                tracing::error!("{msg}");
                let _ = self.events.send(StorageEvent::Failed(msg));
                return;
            }
        };
        waiter.block_on(self.serve(jobs));
    }

    /// The storage loop (see the module documentation). Production runs it on its own OS
    /// thread ([`StorageThread::run`]); the deterministic simulator spawns it as a task on its
    /// single-threaded runtime (its file system is in memory, so nothing blocks for long).
    /// Time is tokio's, so a paused (virtual) clock applies to the snapshot retries and the
    /// disk delay.
    pub async fn serve(mut self, mut jobs: Receiver<Job>) {
        loop {
            let first = match tokio::time::timeout(SNAPSHOT_RETRY / 2, jobs.recv()).await {
                Ok(Some(job)) => job,
                Err(_elapsed) => {
                    self.retry_fetch();
                    continue;
                }
                Ok(None) => break,
            };
            let mut round = vec![first];
            while round.len() < MAX_JOBS_PER_ROUND {
                match jobs.try_recv() {
                    Ok(job) => round.push(job),
                    Err(_) => break,
                }
            }
            if let Err(e) = self.round(round).await {
                tracing::error!("storage failed: {e}");
                let _ = self.events.send(StorageEvent::Failed(e.to_string()));
                return;
            }
            self.retry_fetch();
        }
        if let Err(e) = self.wal.sync() {
            tracing::error!("final write-ahead log sync failed: {e}");
        }
    }

    async fn round(&mut self, jobs: Vec<Job>) -> Result<(), StorageError> {
        let mut durable = None;
        let mut persisted = 0u64;
        for job in jobs {
            match job {
                Job::Persist(p) => {
                    persisted += p.entries.len() as u64;
                    self.persist(&p)?;
                    durable = Some(p.ticket);
                }
                Job::CatchUp { peer, from, up_to } => {
                    let read = self.catch_up_read(from, up_to)?;
                    let _ = self
                        .events
                        .send(StorageEvent::CatchUpRead { peer, from, read });
                }
                Job::Collapse { force, reply } => {
                    let result = self.collapse(force);
                    match (reply, result) {
                        (Some(reply), Ok(report)) => {
                            let _ = reply.send(Ok(report));
                        }
                        (Some(reply), Err(e)) => {
                            let msg = e.to_string();
                            let _ = reply.send(Err(msg));
                            return Err(e);
                        }
                        (None, Ok(_)) => {}
                        (None, Err(e)) => return Err(e),
                    }
                }
                Job::ServeSnapshot { peer, offset, len } => self.serve_snapshot(peer, offset, len),
                Job::FetchSnapshot { peer } => self.start_fetch(peer),
                Job::SnapshotChunk {
                    peer,
                    index,
                    total,
                    offset,
                    data,
                } => self.on_chunk(peer, index, total, offset, &data)?,
                Job::NoSnapshot { peer } => {
                    if self.fetch.as_ref().is_some_and(|f| f.peer == peer) {
                        self.abandon_fetch("the peer has no snapshot to send; will ask again");
                    }
                }
            }
        }
        if let Some(ticket) = durable {
            let early = self.config.sabotage.ack_before_fsync();
            if early {
                // Broken on purpose: acknowledged before the fsync below.
                let _ = self.events.send(StorageEvent::Durable(ticket));
            }
            if let Some(delay) = &self.disk_delay {
                // The embedder's slow disk: the round's writes sit unsynced meanwhile, so a
                // crash now loses them.
                let wait = (delay.0)(persisted);
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }
            if self.config.fsync {
                let started = Instant::now();
                self.wal.sync()?;
                self.metrics
                    .fsync(started.elapsed().as_secs_f64(), persisted);
            }
            if !early {
                let _ = self.events.send(StorageEvent::Durable(ticket));
            }
        }
        if self.entries_since_collapse_check >= self.check_every() {
            self.entries_since_collapse_check = 0;
            self.collapse(false)?;
        }
        Ok(())
    }

    fn check_every(&self) -> u64 {
        (self.config.collapser.threshold_entries / 16).max(1)
    }

    fn persist(&mut self, p: &Persist) -> Result<(), StorageError> {
        if let Some(ballot) = p.promise
            && !self.config.sabotage.forget_promise()
        {
            promise::store(self.config.fs.as_ref(), &self.config.home, ballot)?;
        }
        // Entries a received snapshot already covers (at or below the log's floor) are not
        // written again.
        let floor = self.wal.first_index().map_or(0, |f| f.saturating_sub(1));
        let mut entries = p.entries.iter().skip_while(|e| e.index <= floor).peekable();
        let Some(first) = entries.peek().map(|e| e.index) else {
            return Ok(());
        };
        if let Some(next) = self.wal.next_index() {
            if first < next {
                // Paxos overwrites an uncommitted tail. Cutting it and appending are two steps;
                // a crash between them must not lose what this node accepted, so the
                // replacement goes through a redo file (see `overwrite`).
                let mut replacement = Vec::new();
                for entry in entries {
                    let bytes = self.encode_stored(entry, p.committed)?.to_vec();
                    replacement.push((entry.index, bytes));
                }
                if self.config.sabotage.skip_redo() {
                    // Broken on purpose: cut and append with no redo file and no sync of
                    // their own (the round's fsync comes later).
                    self.wal.truncate_after(first.saturating_sub(1))?;
                    self.wal
                        .append(replacement.iter().map(|(i, b)| (*i, b.as_slice())))?;
                } else {
                    crate::overwrite::replace_tail(&self.config.home, &mut self.wal, &replacement)?;
                }
                self.entries_since_collapse_check += replacement.len() as u64;
                return Ok(());
            } else if first > next {
                return Err(StorageError::Gap {
                    index: first,
                    expected: next,
                });
            }
        }
        for entry in entries {
            self.encode_stored(entry, p.committed)?;
            let bytes = &self.record[wire_codec::LENGTH_PREFIX..];
            self.wal.append([(entry.index, bytes)])?;
            self.entries_since_collapse_check += 1;
        }
        Ok(())
    }

    /// Encodes `entry` as a WAL record payload into `self.record` and returns the payload.
    fn encode_stored(&mut self, entry: &LogEntry, committed: Index) -> Result<&[u8], StorageError> {
        let stored = StoredEntry {
            ballot: entry.ballot,
            committed,
            value: entry.value.clone(),
        };
        self.record.clear();
        wire_codec::encode_payload_into(&stored, &mut self.scratch, &mut self.record, u32::MAX)
            .map_err(|e| StorageError::BadEntry {
                dir: self.config.wal_dir(),
                index: entry.index,
                reason: e.to_string(),
            })?;
        Ok(&self.record[wire_codec::LENGTH_PREFIX..])
    }

    fn catch_up_read(&mut self, from: Index, up_to: Index) -> Result<CatchUpRead, StorageError> {
        let first = self.wal.first_index();
        if first.is_none_or(|f| from < f) {
            let head = write_ahead_log::head_snapshot_path(&self.config.wal_dir());
            if let Some(snapshot_index) =
                write_ahead_log::read_snapshot_index(self.wal.fs().as_ref(), &head)?
                && snapshot_index >= from
            {
                return Ok(CatchUpRead::Pruned { snapshot_index });
            }
            if first.is_none() {
                return Ok(CatchUpRead::Values(Vec::new()));
            }
        }
        let last = self.wal.last_index().unwrap_or(0);
        if from > last {
            return Ok(CatchUpRead::Values(Vec::new()));
        }
        let entries = match self.wal.read(from, up_to.min(last), CATCH_UP_READ_BYTES) {
            Ok(entries) => entries,
            // A range this log does not hold is the peer's problem, not a reason to stop this
            // node: it gets an empty answer and asks again (or someone else). Damage found
            // while reading still stops the node.
            Err(e @ WalError::OutOfRange { .. }) => {
                tracing::warn!(from, up_to, "cannot serve a catch-up read: {e}");
                return Ok(CatchUpRead::Values(Vec::new()));
            }
            Err(e) => return Err(e.into()),
        };
        let mut values = Vec::with_capacity(entries.len());
        for entry in entries {
            let stored = decode_entry(&entry.bytes, &mut self.scratch).map_err(|e| {
                StorageError::BadEntry {
                    dir: self.config.wal_dir(),
                    index: entry.index,
                    reason: e.to_string(),
                }
            })?;
            values.push(stored.value);
        }
        Ok(CatchUpRead::Values(values))
    }

    /// Runs the Collapser when due (or `force`). The store is copied under its read lock and
    /// the snapshot written from the copy, so the driver's applies and the client reads never
    /// wait for the snapshot's disk writes (ADR 0080). Persists queued meanwhile wait: this
    /// thread is the log's only writer.
    fn collapse(&mut self, force: bool) -> Result<CollapseReport, StorageError> {
        let not_needed = CollapseReport {
            snapshot_index: None,
            archived: 0,
            pruned: 0,
        };
        let applied = self
            .store
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .applied_index();
        let Some(applied) = applied else {
            return Ok(not_needed);
        };
        let (_, due) = self.collapser.check(&self.wal, applied, force)?;
        if !due {
            return Ok(not_needed);
        }
        let started = Instant::now();
        let copy = StoreCopy::of(&self.store.read().unwrap_or_else(PoisonError::into_inner));
        let snapshot = write_ahead_log::write_snapshot(
            self.wal.fs().as_ref(),
            self.wal.dir(),
            &copy,
            self.collapser.snapshot_config(),
        )?;
        drop(copy);
        Ok(
            match self
                .collapser
                .finish_after_snapshot(&mut self.wal, snapshot)?
            {
                write_ahead_log::CollapseOutcome::NotNeeded { .. } => not_needed,
                write_ahead_log::CollapseOutcome::Collapsed {
                    snapshot,
                    archived,
                    pruned,
                } => {
                    self.metrics.collapsed(started.elapsed().as_secs_f64());
                    CollapseReport {
                        snapshot_index: Some(snapshot.index),
                        archived,
                        pruned,
                    }
                }
            },
        )
    }

    /// Answers a peer's `SnapshotRequest{offset, len}`. Offset 0 (re)starts a transfer from the
    /// newest head snapshot; any other offset continues the peer's open stream, or opens the
    /// head snapshot, and seeks there: a retry after a lost chunk or a peer asking from the
    /// middle costs one seek, never a re-read of the bytes before `offset`.
    fn serve_snapshot(&mut self, peer: NodeId, offset: u64, len: u32) {
        let len = len.clamp(1, SNAPSHOT_CHUNK_BYTES) as usize;
        let existing = self.serving.iter().position(|(p, _, _)| *p == peer);
        let slot = match existing {
            Some(i) if offset != 0 => {
                let (_, stream, sent) = &mut self.serving[i];
                if *sent != offset {
                    if let Err(e) = stream.seek(offset) {
                        tracing::warn!(%peer, offset, "cannot serve a peer's snapshot request: {e}");
                        self.serving.retain(|(p, _, _)| *p != peer);
                        return;
                    }
                    *sent = offset;
                }
                i
            }
            _ => {
                self.serving.retain(|(p, _, _)| *p != peer);
                match open_snapshot_at(self.wal.fs().as_ref(), &self.config.wal_dir(), offset) {
                    Ok(Some(stream)) => {
                        self.serving.push((peer, stream, offset));
                        self.serving.len() - 1
                    }
                    Ok(None) => {
                        let _ = self
                            .events
                            .send(StorageEvent::Send(peer, PeerMessage::NoSnapshot));
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(%peer, offset, "cannot open head snapshot for a peer: {e}");
                        return;
                    }
                }
            }
        };
        let (_, stream, sent) = &mut self.serving[slot];
        let index = stream.index();
        let total = stream.total_len();
        match stream.next_chunk(len) {
            Ok(chunk) => {
                let data = chunk.unwrap_or_default();
                *sent += data.len() as u64;
                let done = *sent >= total;
                let _ = self.events.send(StorageEvent::Send(
                    peer,
                    PeerMessage::SnapshotChunk {
                        index,
                        total,
                        offset,
                        data,
                    },
                ));
                if done {
                    self.serving.retain(|(p, _, _)| *p != peer);
                }
            }
            Err(e) => {
                tracing::warn!(%peer, "cannot read head snapshot for a peer: {e}");
                self.serving.retain(|(p, _, _)| *p != peer);
            }
        }
    }

    fn start_fetch(&mut self, peer: NodeId) {
        tracing::info!(%peer, "fetching the head snapshot of a peer (the log entries needed were pruned there)");
        self.fetch = Some(Fetch::new(peer));
        self.ask(peer, 0);
    }

    fn ask(&self, peer: NodeId, offset: u64) {
        let _ = self.events.send(StorageEvent::Send(
            peer,
            PeerMessage::SnapshotRequest {
                offset,
                len: SNAPSHOT_CHUNK_BYTES,
            },
        ));
    }

    fn retry_fetch(&mut self) {
        if let Some(f) = &mut self.fetch
            && f.asked_at.elapsed() >= SNAPSHOT_RETRY
        {
            f.asked_at = Instant::now();
            let (peer, offset) = (f.peer, f.next_offset);
            self.ask(peer, offset);
        }
    }

    /// Drops what was received from the peer and starts over from offset 0 at the next retry
    /// (not at once, so a peer that keeps sending bad data costs one request per retry period).
    fn abandon_fetch(&mut self, why: &str) {
        if let Some(f) = &mut self.fetch {
            tracing::warn!(peer = %f.peer, "snapshot transfer restarted: {why}");
            *f = Fetch::new(f.peer);
        }
    }

    /// Checks a chunk against what was asked (see [`Fetch`]).
    fn judge_chunk(
        fetch: &Fetch,
        max_snapshot: u64,
        index: Index,
        total: u64,
        offset: u64,
        len: usize,
    ) -> Result<(), ChunkVerdict> {
        if offset != fetch.next_offset {
            return Err(ChunkVerdict::Ignore(format!(
                "chunk at offset {offset}, but {} was asked",
                fetch.next_offset
            )));
        }
        if fetch.index.is_some_and(|i| i != index) {
            return Err(ChunkVerdict::Abandon(format!(
                "the peer's snapshot changed from index {:?} to {index}",
                fetch.index
            )));
        }
        if fetch.total.is_some_and(|t| t != total) {
            return Err(ChunkVerdict::Abandon(format!(
                "the snapshot's size changed from {:?} to {total} bytes",
                fetch.total
            )));
        }
        if total > max_snapshot {
            return Err(ChunkVerdict::Abandon(format!(
                "the peer's snapshot has {total} bytes, more than max_snapshot_bytes = \
                 {max_snapshot} (raise it in the config if the store really is that large)"
            )));
        }
        if len > fetch.asked_len as usize {
            return Err(ChunkVerdict::Abandon(format!(
                "chunk of {len} bytes, but at most {} were asked",
                fetch.asked_len
            )));
        }
        let end = offset.checked_add(len as u64);
        if end.is_none_or(|e| e > total) {
            return Err(ChunkVerdict::Abandon(format!(
                "chunk at {offset}+{len} runs past the snapshot's {total} bytes"
            )));
        }
        if len == 0 {
            return Err(ChunkVerdict::Abandon(format!(
                "empty chunk at {offset} of a {total}-byte snapshot"
            )));
        }
        Ok(())
    }

    fn on_chunk(
        &mut self,
        peer: NodeId,
        index: Index,
        total: u64,
        offset: u64,
        data: &[u8],
    ) -> Result<(), StorageError> {
        let max_snapshot = self.config.collapser.snapshot.max_snapshot_bytes;
        let Some(fetch) = &mut self.fetch else {
            return Ok(());
        };
        if fetch.peer != peer {
            tracing::debug!(%peer, "snapshot chunk from a peer not asked dropped");
            return Ok(());
        }
        match Self::judge_chunk(fetch, max_snapshot, index, total, offset, data.len()) {
            Ok(()) => {}
            Err(ChunkVerdict::Ignore(why)) => {
                tracing::debug!(%peer, "snapshot chunk ignored: {why}");
                return Ok(());
            }
            Err(ChunkVerdict::Abandon(why)) => {
                self.abandon_fetch(&why);
                return Ok(());
            }
        }
        if fetch.receiver.is_none() {
            fetch.receiver = Some(SnapshotReceiver::begin(
                Arc::clone(self.wal.fs()),
                &self.config.wal_dir(),
                self.config.collapser.snapshot.clone(),
            )?);
            fetch.index = Some(index);
            fetch.total = Some(total);
        }
        if let Some(receiver) = &mut fetch.receiver {
            match receiver.push(data) {
                Ok(()) => {}
                // The local disk failed: fatal, like every WAL error.
                Err(e @ WalError::Io { .. }) => return Err(e.into()),
                // The peer's bytes are not a snapshot (bad header, too large).
                Err(e) => {
                    self.abandon_fetch(&format!("the peer's data is refused: {e}"));
                    return Ok(());
                }
            }
        }
        fetch.next_offset += data.len() as u64;
        fetch.asked_at = Instant::now();
        if fetch.next_offset < total {
            let next = fetch.next_offset;
            self.ask(peer, next);
            return Ok(());
        }
        let Some(receiver) = self.fetch.as_mut().and_then(|f| f.receiver.take()) else {
            return Ok(());
        };
        match receiver.finish() {
            Ok(info) => {
                // `finish` verified the whole file and made it head.snap: its own index is
                // the truth (the chunks' `index` only detects a changed snapshot).
                if info.index != index {
                    tracing::warn!(
                        %peer,
                        file_index = info.index,
                        chunk_index = index,
                        "received snapshot covers another index than its chunks said"
                    );
                }
                self.fetch = None;
                self.install(info.index)
            }
            Err(e @ WalError::Io { .. }) => Err(e.into()),
            Err(e) => {
                self.abandon_fetch(&format!("the received snapshot is invalid: {e}"));
                Ok(())
            }
        }
    }

    /// Loads the just-received head snapshot into the store (if the store is behind it) and
    /// restarts the log after it, keeping any accepted entries above it.
    fn install(&mut self, index: Index) -> Result<(), StorageError> {
        let dir = self.config.wal_dir();
        let mut loader = SnapshotLoader::new(index);
        let mut load_error = None;
        let head = write_ahead_log::head_snapshot_path(&dir);
        write_ahead_log::load_snapshot(
            self.wal.fs().as_ref(),
            &head,
            &self.config.collapser.snapshot,
            &mut |k, v| {
                loader.push(k, v).map_err(|e| {
                    load_error = Some(e.to_string());
                    std::io::Error::other("bad pair")
                })
            },
        )?;
        if let Some(reason) = load_error {
            return Err(StorageError::BadSnapshot { dir, reason });
        }
        let fresh = loader.finish(Arc::clone(&self.user_functions));
        {
            let mut store = self.store.write().unwrap_or_else(PoisonError::into_inner);
            if store.applied_index().is_none_or(|a| a < index) {
                *store = fresh;
            }
        }
        let keep: crate::overwrite::Entries = match self.wal.last_index() {
            Some(last)
                if last > index && self.wal.first_index().is_some_and(|f| f <= index + 1) =>
            {
                self.wal
                    .read(index + 1, last, usize::MAX)?
                    .into_iter()
                    .map(|e| (e.index, e.bytes.to_vec()))
                    .collect()
            }
            _ => Vec::new(),
        };
        // The entries above the snapshot are values this node accepted: they survive a crash
        // between the reset and their re-append (see `overwrite`).
        crate::overwrite::reset_keeping(&self.config.home, &mut self.wal, index, &keep)?;
        tracing::info!(index, "installed a peer's head snapshot");
        let _ = self.events.send(StorageEvent::SnapshotInstalled(index));
        Ok(())
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
            segments_to_keep: node.segments_to_keep as usize,
            snapshot,
        },
        fsync: node.fsync,
        fs,
        sabotage: crate::sabotage::Sabotage::default(),
    }
}

/// Opens the head snapshot in `wal_dir` positioned at byte `offset`, with one seek (the bytes
/// before `offset` are not read). `Ok(None)` if there is no head snapshot; an offset past its
/// end is an error (a peer's request, so the caller logs and drops it).
pub fn open_snapshot_at(
    fs: &dyn FileSystem,
    wal_dir: &Path,
    offset: u64,
) -> Result<Option<SnapshotStream>, WalError> {
    let Some(mut stream) = SnapshotStream::open(fs, wal_dir)? else {
        return Ok(None);
    };
    if offset != 0 {
        stream.seek(offset)?;
    }
    Ok(Some(stream))
}

/// The path of a node's WAL directory.
pub fn wal_dir(home: &Path) -> PathBuf {
    home.join(WAL_DIR)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn set(key: &str, value: &str) -> Update {
        Update::Set {
            key: Bytes::from(key.to_owned()),
            value: Bytes::from(value.to_owned()),
        }
    }

    #[test]
    fn a_store_copy_is_a_point_in_time_view() {
        let mut store = Store::new(Arc::new(UserFunctionRegistry::new()));
        store
            .apply_batch(1, &[set("b", "2"), set("a", "1"), set("ccc", "")])
            .unwrap();
        let copy = StoreCopy::of(&store);
        store
            .apply_batch(2, &[set("a", "changed"), set("d", "4")])
            .unwrap();
        let mut seen = Vec::new();
        copy.for_each_pair(&mut |k, v| {
            seen.push((k.to_vec(), v.to_vec()));
            Ok(())
        })
        .unwrap();
        assert_eq!(copy.applied_index(), 1);
        assert_eq!(
            seen,
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), b"2".to_vec()),
                (b"ccc".to_vec(), b"".to_vec()),
            ]
        );
    }
}
