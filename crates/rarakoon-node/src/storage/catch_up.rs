//! Catch-up serving: reading committed values from the log for a peer that is behind.
//!
//! Invariants:
//! - A read never returns more than about `CATCH_UP_READ_BYTES` of entries (at least one).
//! - When the values asked were pruned and the head snapshot covers them, the answer is
//!   [`CatchUpRead::Pruned`] (the peer then fetches the snapshot); values are never invented.
//! - A range this log does not hold is the peer's problem: an empty answer, not a failure.
//!   Damage found while reading (an undecodable record) stops the node.

use paxos_core::{CatchUpRead, Index};
use write_ahead_log::WalError;

use super::{CATCH_UP_READ_BYTES, StorageError, StorageThread, decode_entry};

impl StorageThread {
    /// Reads the committed values `from..=up_to` for a peer (see the module documentation).
    pub(super) fn catch_up_read(
        &mut self,
        from: Index,
        up_to: Index,
    ) -> Result<CatchUpRead, StorageError> {
        if self.config.sabotage.no_catch_up() {
            return Ok(CatchUpRead::Values(Vec::new()));
        }
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
}
