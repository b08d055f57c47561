//! The storage loop and its persist rounds (group commit).
//!
//! A round drains every job queued while the previous round's fsync ran (at most
//! [`MAX_JOBS_PER_ROUND`]), handles them in order, then issues ONE fsync for all the entries
//! written and only after it reports the highest persist ticket of the round durable.
//!
//! Invariants:
//! - A ticket is reported durable only after the fsync covering its entries (or, with
//!   `fsync = false`, after the write); the `ack_before_fsync` sabotage is the only exception.
//! - Entries are appended contiguously: an entry below the log's next index replaces the
//!   uncommitted tail through a redo file (`crate::overwrite`), one above it is a gap and fatal.
//! - Entries at or below the log's floor (covered by an installed snapshot) are not rewritten.
//! - Any error from a job ends the loop: the driver is told ([`StorageEvent::Failed`]).

use paxos_core::{Index, LogEntry, Persist};
use tokio::sync::mpsc::Receiver;
use tokio::time::Instant;

use super::snapshot::SNAPSHOT_RETRY;
use super::{Job, StorageError, StorageEvent, StorageThread};
use crate::promise;
use crate::wire::StoredEntry;

/// Most jobs handled in one round (bounds the latency of the round's fsync).
const MAX_JOBS_PER_ROUND: usize = 4096;

impl StorageThread {
    /// Works until the job channel closes or the WAL fails, on the calling OS thread (the
    /// production way: blocking disk I/O stays off the node's runtime). The loop itself is
    /// [`StorageThread::serve`], driven here by a current-thread runtime of its own.
    pub fn run(mut self, jobs: Receiver<Job>) {
        // On an OS thread of its own, head snapshots are written on another (ADR 0186).
        self.background_snapshots = true;
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
            let done = std::sync::Arc::clone(&self.collapse_done);
            let waited = tokio::select! {
                job = tokio::time::timeout(SNAPSHOT_RETRY / 2, jobs.recv()) => Some(job),
                () = done.notified() => None,
            };
            let first = match waited {
                Some(Ok(Some(job))) => job,
                Some(Err(_elapsed)) => {
                    self.retry_fetch();
                    if let Err(e) = self.poll_collapse() {
                        tracing::error!("storage failed: {e}");
                        let _ = self.events.send(StorageEvent::Failed(e.to_string()));
                        return;
                    }
                    continue;
                }
                Some(Ok(None)) => break,
                // The snapshot thread has written its snapshot (it may still be returning:
                // join it rather than poll, or the wake-up would be lost).
                None => {
                    if let Err(e) = self.finish_collapse() {
                        tracing::error!("storage failed: {e}");
                        let _ = self.events.send(StorageEvent::Failed(e.to_string()));
                        return;
                    }
                    continue;
                }
            };
            let mut round = vec![first];
            while round.len() < MAX_JOBS_PER_ROUND {
                match jobs.try_recv() {
                    Ok(job) => round.push(job),
                    Err(_) => break,
                }
            }
            if let Err(e) = match self.round(round).await {
                Ok(()) => self.poll_collapse(),
                Err(e) => Err(e),
            } {
                tracing::error!("storage failed: {e}");
                let _ = self.events.send(StorageEvent::Failed(e.to_string()));
                return;
            }
            self.retry_fetch();
        }
        if let Err(e) = self.finish_collapse() {
            tracing::error!("the last collapse failed: {e}");
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
                // Answered when the collapse is done (its snapshot may be written on a thread
                // of its own meanwhile); an error is fatal.
                Job::Collapse { force, reply } => self.collapse(force, reply)?,
                Job::CollapseTlogs { keep, reply } => self.collapse_tlogs(keep, reply)?,
                Job::ServeSnapshot { peer, offset, len } => self.serve_snapshot(peer, offset, len),
                Job::FetchSnapshot { peer } => self.start_fetch(peer),
                Job::SnapshotChunk {
                    peer,
                    index,
                    total,
                    offset,
                    data,
                } => self.on_chunk(peer, index, total, offset, &data)?,
                Job::NoSnapshot { peer } => self.on_no_snapshot(peer),
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
            self.collapse(false, None)?;
        }
        Ok(())
    }

    /// Writes the entries of `p` (and its promise) to the log, without syncing.
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
}
