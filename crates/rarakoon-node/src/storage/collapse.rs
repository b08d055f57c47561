//! Collapse: writing a snapshot of the store and pruning the log behind it.
//!
//! The Collapser runs when enough entries accumulated since the last snapshot (checked every
//! `threshold_entries / 16` entries persisted) or when an operator forces it. An O(1)
//! point-in-time view of the store is taken under its read lock ([`StoreCopy`], ADR 0186) and
//! the snapshot written from it on a thread of its own, so neither the driver's applies, the
//! client reads, nor the log's appends wait for the snapshot's walk, compression and disk
//! writes; the archive and prune run on the storage thread once the snapshot is durable.
//!
//! Arakoon's COLLAPSE_TLOGS (`rarakoon-bin admin collapse --keep N`, [`answer_collapse_tlogs`])
//! runs the same steps at once, keeping the request's N completed segments instead of the
//! configured `segments_to_keep` (ADR 0165): a tlog of Arakoon is a segment of this log.
//!
//! Invariants:
//! - A snapshot covers exactly the store's applied index at the moment of the copy; only
//!   segments whose every entry is at or below it are archived or pruned, and the newest
//!   `segments_to_keep` completed segments (N for COLLAPSE_TLOGS, always at least 1) stay,
//!   besides the open segment being written, which is never removed.
//! - The storage thread stays the log's only writer: the snapshot thread writes only the
//!   snapshot's temp file and renames it to `head.snap`. At most one snapshot is in flight; none
//!   starts while a peer's snapshot is received, and a receive begins only after the one in
//!   flight is finished, so the two never race for `head.snap`.
//! - The simulator runs the loop as a task (`serve`): there the snapshot is written inline, so
//!   runs stay deterministic.

use std::sync::{Arc, PoisonError};

use kv_store::{Store, StoreView};
use paxos_core::Index;
use rarakoon_client::{ErrorCode, ErrorReply, Response};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use write_ahead_log::{Collapser, CollapserConfig, SnapshotSource, WalError};

use super::{StorageError, StorageThread};
use crate::driver::Input;

/// A point-in-time view of the store for the Collapser and GET_DB: taken in O(1) under the
/// store's read lock ([`Store::view`]: the tree's nodes are shared, later writes copy the ones
/// they change), so neither the walk over the pairs nor the snapshot's compression and disk
/// writes hold the lock (ADR 0186). `Send + 'static`: the snapshot is written from it on a
/// thread of its own.
#[derive(Debug, Clone)]
pub struct StoreCopy {
    view: StoreView,
}

impl StoreCopy {
    /// A view of `store` (the caller holds its read lock for this O(1) call only).
    pub fn of(store: &Store) -> StoreCopy {
        StoreCopy { view: store.view() }
    }
}

impl SnapshotSource for StoreCopy {
    fn applied_index(&self) -> u64 {
        self.view.applied_index().unwrap_or(0)
    }

    fn for_each_pair(
        &self,
        sink: &mut (dyn FnMut(&[u8], &[u8]) -> std::io::Result<()> + '_),
    ) -> std::io::Result<()> {
        self.view.for_each_pair(|key, value| sink(key, value))
    }
}

/// Who waits for a collapse's answer.
#[derive(Debug)]
pub(super) enum Waiter {
    /// The periodic check or a `Job::Collapse` (answered with the report, if it asked).
    Collapse(Option<Reply>),
    /// COLLAPSE_TLOGS keeping this many completed segments.
    Tlogs(Reply),
}

type Reply = oneshot::Sender<Result<CollapseReport, String>>;

/// A head snapshot being written on a thread of its own (ADR 0186). Invariants: at most one
/// at a time; none starts while a peer's snapshot is being received, and a receive begins only
/// after the one in flight is finished ([`StorageThread::finish_collapse`]), so the two never
/// both rename over `head.snap`; the log's archive and prune run on the storage thread, after
/// the snapshot is durable.
#[derive(Debug)]
pub(super) struct InFlight {
    writer: std::thread::JoinHandle<Result<write_ahead_log::SnapshotInfo, WalError>>,
    collapser: Collapser,
    started: Instant,
    waiter: Waiter,
}

impl InFlight {
    fn is_finished(&self) -> bool {
        self.writer.is_finished()
    }
}

/// What a collapse did, for the admin command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollapseReport {
    /// The head snapshot the collapse pruned behind: the one it wrote, or (COLLAPSE_TLOGS on
    /// a store that had not advanced) the existing one, when it removed segments. `None`:
    /// nothing was done.
    pub snapshot_index: Option<Index>,
    /// Segments archived.
    pub archived: usize,
    /// Segments removed.
    pub pruned: usize,
    /// The first index of each segment removed, oldest first (`pruned` of them).
    pub removed_segments: Vec<Index>,
}

impl CollapseReport {
    fn nothing() -> CollapseReport {
        CollapseReport {
            snapshot_index: None,
            archived: 0,
            pruned: 0,
            removed_segments: Vec::new(),
        }
    }

    /// The steps of the COLLAPSE_TLOGS answer (ADR 0165): none when nothing was done;
    /// otherwise one per segment removed (its first index), then a last one (the head
    /// snapshot's index). Arakoon announces "tlogs collapsed + 1" steps the same way; its step
    /// values are durations that its clients only count.
    pub fn steps(&self) -> Vec<i64> {
        let Some(head) = self.snapshot_index else {
            return Vec::new();
        };
        self.removed_segments
            .iter()
            .chain(std::iter::once(&head))
            .map(|i| i64::try_from(*i).unwrap_or(i64::MAX))
            .collect()
    }
}

/// How many completed write-ahead log segments a collapse keeps besides the open one being
/// written: Arakoon's `tlogs_to_keep` (a tlog of Arakoon is a segment here). At least 1, so a
/// peer a little behind still catches up from the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentsToKeep(u32);

impl SegmentsToKeep {
    /// `n` completed segments; `None` for 0.
    pub fn new(n: u32) -> Option<SegmentsToKeep> {
        (n >= 1).then_some(SegmentsToKeep(n))
    }

    /// The `tlogs_to_keep` of a COLLAPSE_TLOGS request: 1 up to `i32::MAX` (more than the log
    /// holds simply removes nothing, as in Arakoon); 0 and negative values are refused.
    pub fn from_request(tlogs_to_keep: i32) -> Result<SegmentsToKeep, BadTlogsToKeep> {
        u32::try_from(tlogs_to_keep)
            .ok()
            .and_then(SegmentsToKeep::new)
            .ok_or(BadTlogsToKeep(tlogs_to_keep))
    }

    /// The number of completed segments.
    pub fn get(self) -> u32 {
        self.0
    }

    /// What the log's prune counts: these completed segments and the open one.
    pub(crate) fn with_open_segment(self) -> usize {
        usize::try_from(self.0)
            .unwrap_or(usize::MAX)
            .saturating_add(1)
    }
}

/// A COLLAPSE_TLOGS request's `tlogs_to_keep` below 1 (Arakoon: "N is not acceptable").
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0} is not acceptable: tlogs_to_keep is the number of completed write-ahead log segments \
     kept besides the one being written, and must be at least 1"
)]
pub struct BadTlogsToKeep(pub i32);

/// Answers COLLAPSE_TLOGS(`tlogs_to_keep`): validates it, has the storage thread collapse
/// keeping that many completed segments (through the driver), and returns the steps
/// ([`CollapseReport::steps`]). Any node answers, master included.
pub async fn answer_collapse_tlogs(
    inputs: &mpsc::Sender<Input>,
    tlogs_to_keep: i32,
) -> Result<Response, ErrorReply> {
    let keep = SegmentsToKeep::from_request(tlogs_to_keep)
        .map_err(|e| ErrorReply::new(ErrorCode::UnknownFailure, e.to_string()))?;
    let (reply, answer) = oneshot::channel();
    if inputs
        .send(Input::CollapseTlogs { keep, reply })
        .await
        .is_err()
    {
        return Err(ErrorReply::going_down());
    }
    match answer.await {
        Ok(Ok(report)) => Ok(Response::CollapseTlogs(report.steps())),
        Ok(Err(e)) => Err(ErrorReply::new(ErrorCode::UnknownFailure, e)),
        Err(_) => Err(ErrorReply::going_down()),
    }
}

impl StorageThread {
    /// How many persisted entries between two checks whether a collapse is due.
    pub(super) fn check_every(&self) -> u64 {
        (self.config.collapser.threshold_entries / 16).max(1)
    }

    /// Runs the Collapser when due (or `force`); `reply` gets the report once the collapse is
    /// done. Production writes the snapshot on a thread of its own from an O(1) view of the
    /// store, so neither the store's lock nor the log's appends wait for it (ADR 0186); the
    /// simulator (`serve` as a task) writes it here, deterministically.
    pub(super) fn collapse(
        &mut self,
        force: bool,
        reply: Option<Reply>,
    ) -> Result<(), StorageError> {
        if !force && reply.is_none() && self.collapsing.is_some() {
            // The periodic check: one is already being written.
            return Ok(());
        }
        let collapser = self.collapser.clone();
        self.collapse_with(collapser, force, Waiter::Collapse(reply))
    }

    /// COLLAPSE_TLOGS: a forced collapse keeping `keep` completed segments (instead of the
    /// configured `segments_to_keep`). When the store has not advanced past the head snapshot
    /// (nothing new to write), the segments that snapshot covers are still pruned down to
    /// `keep`, so a smaller N than the last collapse's takes effect at once.
    pub(super) fn collapse_tlogs(
        &mut self,
        keep: SegmentsToKeep,
        reply: Reply,
    ) -> Result<(), StorageError> {
        let collapser = Collapser::new(CollapserConfig {
            segments_to_keep: keep.with_open_segment(),
            ..self.config.collapser.clone()
        });
        self.collapse_with(collapser, true, Waiter::Tlogs(reply))
    }

    /// Prunes behind the existing head snapshot down to `keep` (COLLAPSE_TLOGS when there is
    /// nothing new to snapshot).
    fn prune_behind_head(&mut self, keep: usize) -> Result<CollapseReport, StorageError> {
        let report = CollapseReport::nothing();
        let head = write_ahead_log::head_snapshot_path(self.wal.dir());
        let Some(index) = write_ahead_log::read_snapshot_index(self.wal.fs().as_ref(), &head)?
        else {
            return Ok(report);
        };
        let started = Instant::now();
        let starts = self.wal.segment_starts();
        let archived = self.wal.archive_completed_segments(index)?;
        let pruned = self.wal.prune(index, keep)?;
        if archived == 0 && pruned == 0 {
            return Ok(report);
        }
        self.metrics.collapsed(started.elapsed().as_secs_f64());
        tracing::info!(
            index,
            archived,
            pruned,
            "collapsed write-ahead log behind the existing head snapshot"
        );
        Ok(CollapseReport {
            snapshot_index: (pruned > 0).then_some(index),
            archived,
            pruned,
            removed_segments: starts
                .iter()
                .take(pruned)
                .map(|(first, _)| *first)
                .collect(),
        })
    }

    fn collapse_with(
        &mut self,
        collapser: Collapser,
        force: bool,
        waiter: Waiter,
    ) -> Result<(), StorageError> {
        // One at a time: an explicit request after one in flight waits for it (rare).
        self.finish_collapse()?;
        let receiving = self.fetch.as_ref().is_some_and(|f| f.receiving());
        let applied = self
            .store
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .applied_index();
        let due = match applied {
            Some(applied) if !receiving => collapser.check(&self.wal, applied, force)?.1,
            _ => false,
        };
        if !due {
            let report = match &waiter {
                Waiter::Tlogs(_) if !receiving => {
                    self.prune_behind_head(collapser.segments_to_keep())
                }
                _ => Ok(CollapseReport::nothing()),
            };
            return answer(waiter, report);
        }
        let started = Instant::now();
        let copy = StoreCopy::of(&self.store.read().unwrap_or_else(PoisonError::into_inner));
        let fs = Arc::clone(self.wal.fs());
        let dir = self.wal.dir().to_path_buf();
        let config = collapser.snapshot_config().clone();
        let write = move || write_ahead_log::write_snapshot(fs.as_ref(), &dir, &copy, &config);
        if !self.background_snapshots {
            let snapshot = write();
            let done = snapshot
                .map_err(StorageError::from)
                .and_then(|snapshot| self.finish_after_snapshot(collapser, started, snapshot));
            return answer(waiter, done);
        }
        let writer = std::thread::Builder::new()
            .name("rarakoon-snapshot".into())
            .spawn({
                let done = Arc::clone(&self.collapse_done);
                move || {
                    let result = write();
                    done.notify_one();
                    result
                }
            })
            .map_err(|source| WalError::Io {
                op: "start the snapshot writer thread",
                path: self.wal.dir().to_path_buf(),
                source,
            })?;
        self.collapsing = Some(InFlight {
            writer,
            collapser,
            started,
            waiter,
        });
        Ok(())
    }

    /// Finishes the collapse in flight if its snapshot is written (the loop calls this when
    /// woken and after every round).
    pub(super) fn poll_collapse(&mut self) -> Result<(), StorageError> {
        if self.collapsing.as_ref().is_some_and(InFlight::is_finished) {
            self.finish_collapse()?;
        }
        Ok(())
    }

    /// Waits for the snapshot in flight (if any) and finishes its collapse: archive, prune,
    /// answer. Before a peer's snapshot is received, and at the end of the loop.
    pub(super) fn finish_collapse(&mut self) -> Result<(), StorageError> {
        let Some(InFlight {
            writer,
            collapser,
            started,
            waiter,
        }) = self.collapsing.take()
        else {
            return Ok(());
        };
        let written = match writer.join() {
            Ok(written) => written.map_err(StorageError::from),
            Err(_) => Err(StorageError::Wal(WalError::Io {
                op: "write the head snapshot (the writer thread panicked)",
                path: self.wal.dir().to_path_buf(),
                source: std::io::Error::other("snapshot writer panicked"),
            })),
        };
        let done =
            written.and_then(|snapshot| self.finish_after_snapshot(collapser, started, snapshot));
        answer(waiter, done)
    }

    /// Steps 2 and 3 of a collapse, after its head snapshot is durable.
    fn finish_after_snapshot(
        &mut self,
        mut collapser: Collapser,
        started: Instant,
        snapshot: write_ahead_log::SnapshotInfo,
    ) -> Result<CollapseReport, StorageError> {
        // Archiving keeps every segment's first index, so the removed ones are the oldest.
        let starts = self.wal.segment_starts();
        Ok(
            match collapser.finish_after_snapshot(&mut self.wal, snapshot)? {
                write_ahead_log::CollapseOutcome::NotNeeded { .. } => CollapseReport::nothing(),
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
                        removed_segments: starts
                            .iter()
                            .take(pruned)
                            .map(|(first, _)| *first)
                            .collect(),
                    }
                }
            },
        )
    }
}

/// Sends `result` to whoever waits; a failure is also returned (it is fatal for the loop).
fn answer(
    waiter: Waiter,
    result: Result<CollapseReport, StorageError>,
) -> Result<(), StorageError> {
    let reply = match waiter {
        Waiter::Collapse(reply) => reply,
        Waiter::Tlogs(reply) => Some(reply),
    };
    match result {
        Ok(report) => {
            if let Some(reply) = reply {
                let _ = reply.send(Ok(report));
            }
            Ok(())
        }
        Err(e) => {
            if let Some(reply) = reply {
                let _ = reply.send(Err(e.to_string()));
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::Arc;

    use bytes::Bytes;
    use kv_store::{Update, UserFunctionRegistry};

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

    #[test]
    fn tlogs_to_keep_below_one_is_refused_and_every_positive_value_is_taken() {
        for bad in [0, -1, i32::MIN] {
            let e = SegmentsToKeep::from_request(bad).unwrap_err();
            assert_eq!(e, BadTlogsToKeep(bad));
            assert!(
                e.to_string()
                    .starts_with(&format!("{bad} is not acceptable"))
            );
        }
        for good in [1, 2, 7, i32::MAX] {
            let keep = SegmentsToKeep::from_request(good).unwrap();
            assert_eq!(i64::from(keep.get()), i64::from(good));
            assert_eq!(keep.with_open_segment() as i64, i64::from(good) + 1);
        }
        assert_eq!(SegmentsToKeep::new(0), None);
    }

    #[test]
    fn collapse_steps_are_one_per_removed_segment_then_the_head() {
        assert_eq!(CollapseReport::nothing().steps(), Vec::<i64>::new());
        let only_snapshot = CollapseReport {
            snapshot_index: Some(40),
            archived: 2,
            pruned: 0,
            removed_segments: Vec::new(),
        };
        assert_eq!(only_snapshot.steps(), vec![40]);
        let pruned = CollapseReport {
            snapshot_index: Some(u64::MAX),
            archived: 0,
            pruned: 2,
            removed_segments: vec![1, 33],
        };
        assert_eq!(pruned.steps(), vec![1, 33, i64::MAX]);
    }
}
