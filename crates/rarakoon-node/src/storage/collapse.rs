//! Collapse: writing a snapshot of the store and pruning the log behind it.
//!
//! The Collapser runs when enough entries accumulated since the last snapshot (checked every
//! `threshold_entries / 16` entries persisted) or when an operator forces it. The store is
//! copied under its read lock ([`StoreCopy`]) and the snapshot written from the copy, so the
//! driver's applies and the client reads never wait for the snapshot's disk writes (ADR 0080).
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
//! - Persists queued meanwhile wait: the storage thread is the log's only writer.

use std::sync::PoisonError;

use bytes::Bytes;
use kv_store::Store;
use paxos_core::Index;
use rarakoon_client::{ErrorCode, ErrorReply, Response};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use write_ahead_log::{Collapser, CollapserConfig, SnapshotSource};

use super::{StorageError, StorageThread};
use crate::driver::Input;

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

    /// Runs the Collapser when due (or `force`). The store is copied under its read lock and
    /// the snapshot written from the copy, so the driver's applies and the client reads never
    /// wait for the snapshot's disk writes (ADR 0080). Persists queued meanwhile wait: this
    /// thread is the log's only writer.
    pub(super) fn collapse(&mut self, force: bool) -> Result<CollapseReport, StorageError> {
        let mut collapser = self.collapser.clone();
        self.collapse_with(&mut collapser, force)
    }

    /// COLLAPSE_TLOGS: a forced collapse keeping `keep` completed segments (instead of the
    /// configured `segments_to_keep`). When the store has not advanced past the head snapshot
    /// (nothing new to write), the segments that snapshot covers are still pruned down to
    /// `keep`, so a smaller N than the last collapse's takes effect at once.
    pub(super) fn collapse_tlogs(
        &mut self,
        keep: SegmentsToKeep,
    ) -> Result<CollapseReport, StorageError> {
        let mut collapser = Collapser::new(CollapserConfig {
            segments_to_keep: keep.with_open_segment(),
            ..self.config.collapser.clone()
        });
        let report = self.collapse_with(&mut collapser, true)?;
        if report.snapshot_index.is_some() {
            return Ok(report);
        }
        let head = write_ahead_log::head_snapshot_path(self.wal.dir());
        let Some(index) = write_ahead_log::read_snapshot_index(self.wal.fs().as_ref(), &head)?
        else {
            return Ok(report);
        };
        let started = Instant::now();
        let starts = self.wal.segment_starts();
        let archived = self.wal.archive_completed_segments(index)?;
        let pruned = self.wal.prune(index, keep.with_open_segment())?;
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
        collapser: &mut Collapser,
        force: bool,
    ) -> Result<CollapseReport, StorageError> {
        let applied = self
            .store
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .applied_index();
        let Some(applied) = applied else {
            return Ok(CollapseReport::nothing());
        };
        let (_, due) = collapser.check(&self.wal, applied, force)?;
        if !due {
            return Ok(CollapseReport::nothing());
        }
        let started = Instant::now();
        let copy = StoreCopy::of(&self.store.read().unwrap_or_else(PoisonError::into_inner));
        let snapshot = write_ahead_log::write_snapshot(
            self.wal.fs().as_ref(),
            self.wal.dir(),
            &copy,
            collapser.snapshot_config(),
        )?;
        drop(copy);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::Arc;

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
