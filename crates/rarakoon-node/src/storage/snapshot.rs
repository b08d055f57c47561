//! Snapshot transfer: serving the head snapshot to a peer in chunks, and fetching and
//! installing a peer's when the entries this node needs were pruned there.
//!
//! Invariants:
//! - Serving: a peer's request at offset 0 (re)starts from the newest head snapshot; any other
//!   offset continues the peer's open stream or opens the head snapshot and seeks there (one
//!   seek, never a re-read of the bytes before it). Nothing a peer asks stops this node.
//! - Fetching: only chunks from the peer asked, at exactly the next offset, of at most the
//!   length asked, for the same index and size as the first chunk, within
//!   `max_snapshot_bytes`, are written (see [`Fetch`]); anything else is refused (logged).
//!   Only local disk errors are fatal.
//! - A chunk not received within [`SNAPSHOT_RETRY`] is asked for again; a refused transfer
//!   starts over from offset 0 at the next retry, not at once.
//! - Installing replaces the store only if the store is behind the snapshot, under the
//!   store's write lock, so an apply running at the same time is never lost; the accepted
//!   entries above the snapshot survive a crash during the log's reset (`crate::overwrite`).

use std::path::Path;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use kv_store::SnapshotLoader;
use paxos_core::{Index, NodeId};
use tokio::time::Instant;
use write_ahead_log::{FileSystem, SnapshotReceiver, SnapshotStream, WalError};

use super::{StorageError, StorageEvent, StorageThread};
use crate::wire::{PeerMessage, SNAPSHOT_CHUNK_BYTES};

/// A snapshot chunk not received within this time is asked for again.
pub(super) const SNAPSHOT_RETRY: Duration = Duration::from_secs(2);

/// A snapshot transfer in progress. Invariants: only chunks from `peer`, at exactly
/// `next_offset`, of at most `asked_len` bytes, for the same `index` and `total` as the first
/// chunk, within `max_snapshot_bytes`, are written; anything else a peer sends is refused
/// (logged) and never stops the node. Only local disk errors are fatal.
pub(super) struct Fetch {
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

impl Fetch {
    /// Whether a receive is open (its temp file exists and will be renamed to `head.snap`).
    pub(super) fn receiving(&self) -> bool {
        self.receiver.is_some()
    }
}

/// Why a chunk was refused.
enum ChunkVerdict {
    /// Stale or duplicate (another offset than asked): ignore it, keep the transfer.
    Ignore(String),
    /// The transfer cannot go on with this peer's data: start over later.
    Abandon(String),
}

impl StorageThread {
    /// Answers a peer's `SnapshotRequest{offset, len}`. Offset 0 (re)starts a transfer from the
    /// newest head snapshot; any other offset continues the peer's open stream, or opens the
    /// head snapshot, and seeks there: a retry after a lost chunk or a peer asking from the
    /// middle costs one seek, never a re-read of the bytes before `offset`.
    pub(super) fn serve_snapshot(&mut self, peer: NodeId, offset: u64, len: u32) {
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

    /// Starts fetching `peer`'s head snapshot (replacing any transfer in progress).
    pub(super) fn start_fetch(&mut self, peer: NodeId) {
        tracing::info!(%peer, "fetching the head snapshot of a peer (the log entries needed were pruned there)");
        self.fetch = Some(Fetch::new(peer));
        self.ask(peer, 0);
    }

    /// Asks `peer` for the chunk at `offset`.
    fn ask(&self, peer: NodeId, offset: u64) {
        let _ = self.events.send(StorageEvent::Send(
            peer,
            PeerMessage::SnapshotRequest {
                offset,
                len: SNAPSHOT_CHUNK_BYTES,
            },
        ));
    }

    /// Asks again for the chunk awaited, if it is overdue.
    pub(super) fn retry_fetch(&mut self) {
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

    /// Writes a chunk of the snapshot being fetched, and installs the snapshot after its last.
    pub(super) fn on_chunk(
        &mut self,
        peer: NodeId,
        index: Index,
        total: u64,
        offset: u64,
        data: &[u8],
    ) -> Result<(), StorageError> {
        let max_snapshot = self.config.collapser.snapshot.max_snapshot_bytes;
        if self
            .fetch
            .as_ref()
            .is_some_and(|f| f.peer == peer && !f.receiving())
        {
            // A receive begins only after the collapse in flight is finished: both rename
            // over head.snap (ADR 0186).
            self.finish_collapse()?;
        }
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

    /// The peer asked has no snapshot: the transfer starts over at the next retry.
    pub(super) fn on_no_snapshot(&mut self, peer: NodeId) {
        if self.fetch.as_ref().is_some_and(|f| f.peer == peer) {
            self.abandon_fetch("the peer has no snapshot to send; will ask again");
        }
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
