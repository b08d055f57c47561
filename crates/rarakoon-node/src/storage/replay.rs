//! Start-up replay of the WAL into the store, on two threads (ADR 0191).
//!
//! A reader thread reads the log in chunks of about `CATCH_UP_READ_BYTES`, decodes each record
//! ([`decode_entry`]) and the client updates of its value ([`batch_updates`]), and hands whole
//! chunks to the calling thread through a bounded channel; the calling thread only applies. The
//! profile of a 3 M key replay showed the store's insert path taking about three quarters of
//! the time, so the reading and decoding run beside it instead of before it.
//!
//! Invariants (the same as the single-threaded replay it replaces):
//! - Entries reach the store strictly in index order, each once, and only up to the highest
//!   committed index recorded so far (clamped to the last index held); the rest are returned
//!   as accepted entries for paxos-core.
//! - A record that cannot be read or decoded stops the replay with its error; a committed
//!   entry whose updates cannot be decoded stops it with [`UndecodableEntry`] (an uncommitted
//!   one is handed to paxos-core as it is, as before).
//! - At most `CHUNKS_IN_FLIGHT` decoded chunks wait between the threads, so memory stays
//!   bounded whatever the log's size. The log is only read here; it goes back to the caller.

use std::path::Path;
use std::sync::mpsc::sync_channel;

use kv_store::{Store, Update};
use paxos_core::{Index, LogEntry};
use write_ahead_log::Wal;

use super::{CATCH_UP_READ_BYTES, StorageError, UndecodableEntry, batch_updates, decode_entry};
use wire_codec::rkyv::util::AlignedVec;

/// Decoded chunks waiting for the applying thread.
const CHUNKS_IN_FLIGHT: usize = 2;

/// One decoded log entry.
struct Decoded {
    /// The committed index recorded with it.
    committed: Index,
    entry: LogEntry,
    updates: Result<Vec<Update>, UndecodableEntry>,
}

/// What the replay leaves: the committed index reached and the accepted entries above it.
pub(super) struct Replayed {
    /// Highest committed index recorded (at least the `committed` passed in).
    pub committed: Index,
    /// Entries above `committed`, in index order.
    pub pending: Vec<LogEntry>,
}

/// Replays entries `next..=last` of `wal` into `store` (see the module documentation);
/// `committed` is what the store already reflects (the head snapshot's index).
pub(super) fn replay(
    wal: Wal,
    dir: &Path,
    next: Index,
    last: Index,
    committed: Index,
    store: &mut Store,
) -> (Wal, Result<Replayed, StorageError>) {
    let (tx, rx) = sync_channel::<Result<Vec<Decoded>, StorageError>>(CHUNKS_IN_FLIGHT);
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || {
            let mut scratch = AlignedVec::new();
            let mut next = next;
            while next <= last {
                let chunk = read_chunk(&wal, dir, next, last, &mut scratch);
                let (stop, advanced) = match &chunk {
                    Ok(decoded) => (
                        decoded.is_empty(),
                        decoded.last().map(|d| d.entry.index + 1),
                    ),
                    Err(_) => (true, None),
                };
                // The applying side stops listening when it fails: nothing more to do.
                if tx.send(chunk).is_err() || stop {
                    break;
                }
                next = advanced.unwrap_or(next);
            }
            wal
        });
        let applied = apply_chunks(rx.iter(), last, committed, store);
        // `rx` is gone once `apply_chunks` returns, so a reader blocked on a full channel
        // wakes up with an error and ends.
        let wal = match reader.join() {
            Ok(wal) => wal,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        (wal, applied)
    })
}

/// Reads and decodes one chunk starting at `next` (empty when the log holds nothing there).
fn read_chunk(
    wal: &Wal,
    dir: &Path,
    next: Index,
    last: Index,
    scratch: &mut AlignedVec,
) -> Result<Vec<Decoded>, StorageError> {
    let entries = wal.read(next, last, CATCH_UP_READ_BYTES)?;
    let mut decoded = Vec::with_capacity(entries.len());
    for entry in entries {
        let stored = decode_entry(&entry.bytes, scratch).map_err(|e| StorageError::BadEntry {
            dir: dir.to_path_buf(),
            index: entry.index,
            reason: e.to_string(),
        })?;
        let committed = stored.committed;
        let entry = stored.into_log_entry(entry.index);
        let updates = batch_updates(entry.index, &entry.value);
        decoded.push(Decoded {
            committed,
            entry,
            updates,
        });
    }
    Ok(decoded)
}

/// Applies the chunks in order, each entry as soon as a recorded committed index covers it.
fn apply_chunks(
    chunks: impl Iterator<Item = Result<Vec<Decoded>, StorageError>>,
    last: Index,
    mut committed: Index,
    store: &mut Store,
) -> Result<Replayed, StorageError> {
    let mut pending: std::collections::VecDeque<Decoded> = Default::default();
    let mut expected: Option<Index> = None;
    for chunk in chunks {
        for decoded in chunk? {
            let index = decoded.entry.index;
            // Release builds too: applying out of order would corrupt the store silently.
            assert!(
                expected.is_none_or(|e| e == index),
                "replay invariant: entry {index} read where {expected:?} was expected"
            );
            expected = Some(index + 1);
            committed = committed.max(decoded.committed.min(last));
            pending.push_back(decoded);
            while pending.front().is_some_and(|d| d.entry.index <= committed) {
                let Some(front) = pending.pop_front() else {
                    break;
                };
                apply(store, front)?;
            }
        }
    }
    Ok(Replayed {
        committed,
        pending: pending.into_iter().map(|d| d.entry).collect(),
    })
}

fn apply(store: &mut Store, decoded: Decoded) -> Result<(), UndecodableEntry> {
    let updates = decoded.updates?;
    if let Err(stale) = store.apply_batch(decoded.entry.index, &updates) {
        tracing::debug!("replay skipped an entry the snapshot covers: {stale}");
    }
    Ok(())
}
