//! Collapse: writing a snapshot of the store and pruning the log behind it.
//!
//! The Collapser runs when enough entries accumulated since the last snapshot (checked every
//! `threshold_entries / 16` entries persisted) or when an operator forces it. The store is
//! copied under its read lock ([`StoreCopy`]) and the snapshot written from the copy, so the
//! driver's applies and the client reads never wait for the snapshot's disk writes (ADR 0080).
//!
//! Invariants:
//! - A snapshot covers exactly the store's applied index at the moment of the copy; only
//!   segments whose every entry is at or below it are archived or pruned, and the newest
//!   `segments_to_keep` sealed segments always stay.
//! - Persists queued meanwhile wait: the storage thread is the log's only writer.

use std::sync::PoisonError;

use bytes::Bytes;
use kv_store::Store;
use paxos_core::Index;
use tokio::time::Instant;
use write_ahead_log::SnapshotSource;

use super::{StorageError, StorageThread};

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
    /// The new snapshot's index, if one was written.
    pub snapshot_index: Option<Index>,
    /// Segments archived.
    pub archived: usize,
    /// Segments removed.
    pub pruned: usize,
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
}
