//! A transaction: writes go straight into the map, and, when the transaction may still fail
//! after a write (a sequence, a user function), each write is recorded in an undo log that
//! rolls it back in reverse order.
//!
//! Invariants:
//! - `payload_bytes` is always the sum of key and value lengths of the map, through every
//!   write and every rollback (all changes go through [`Transaction::insert`] and
//!   [`Transaction::remove`], or the same accounting in [`Transaction::roll_back`]).
//! - A transaction that is dropped without [`Transaction::commit`] is rolled back, so an early
//!   return can never leave half an update in the store.
//! - A transaction that does not record undo (a single update that checks before it writes)
//!   must never fail after its first write: that is the caller's contract.
//! - The store keeps copies of keys and values, never the caller's buffers, so a value never
//!   pins a larger buffer (e.g. a whole network frame) in memory.

use bytes::Bytes;

use crate::query::{self, Map};
use crate::tree::Entry;
use crate::{KeyRange, StoreError};

/// The data a transaction works on: the map and its byte count.
#[derive(Debug, Default, Clone)]
pub(crate) struct Data {
    pub(crate) map: Map,
    pub(crate) payload_bytes: u64,
}

/// One step back: what to do to undo one write.
#[derive(Debug)]
pub(crate) enum Undo {
    /// The key held this entry before: put it back.
    Restore { entry: Entry },
    /// The key was absent before: remove it.
    Remove { key: Box<[u8]> },
}

/// An open transaction on the store. User functions receive one; whatever they write is
/// undone when they, or the sequence they run in, fail.
pub struct Transaction<'s> {
    data: &'s mut Data,
    undo: &'s mut Vec<Undo>,
    recording: bool,
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("recording", &self.recording)
            .field("undo_steps", &self.undo.len())
            .finish_non_exhaustive()
    }
}

impl<'s> Transaction<'s> {
    /// Opens a transaction. `undo` must be empty; it is a scratch buffer the store reuses so
    /// that recording needs no allocation once warm.
    pub(crate) fn new(data: &'s mut Data, undo: &'s mut Vec<Undo>, recording: bool) -> Self {
        debug_assert!(
            undo.is_empty(),
            "a transaction starts with an empty undo log"
        );
        undo.clear();
        Self {
            data,
            undo,
            recording,
        }
    }

    /// The value of `key`, as this transaction sees it (its own writes included): a copy.
    #[must_use]
    pub fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.data.map.get(key).map(Entry::value_bytes)
    }

    /// Whether the value of `key` is `expected` (`None`: absent), without copying it.
    pub(crate) fn value_is(&self, key: &[u8], expected: Option<&[u8]>) -> bool {
        self.data.map.get(key).map(Entry::value) == expected
    }

    /// Whether `key` exists, as this transaction sees it.
    #[must_use]
    pub fn exists(&self, key: &[u8]) -> bool {
        self.data.map.contains_key(key)
    }

    /// The keys that start with `prefix`, ascending, at most `max` of them (negative: all).
    #[must_use]
    pub fn prefix_keys(&self, prefix: &[u8], max: i32) -> Vec<Bytes> {
        query::prefix_keys(&self.data.map, prefix, max)
    }

    /// The keys that start with `prefix`, ascending, borrowed from the map.
    pub(crate) fn keys_with_prefix<'k>(
        &'k self,
        prefix: &'k [u8],
    ) -> impl Iterator<Item = &'k [u8]> + 'k {
        query::prefix_scan(&self.data.map, prefix).map(|(key, _)| key)
    }

    /// The pairs in `range`, ascending, at most `max` (negative: all); see
    /// [`crate::Store::range_entries`].
    #[must_use]
    pub fn range_entries(&self, range: &KeyRange<'_>, max: i32) -> Vec<(Bytes, Bytes)> {
        query::range_entries(&self.data.map, range, max)
    }

    /// The pairs from `range.first` (high) down to `range.last` (low), descending, at most
    /// `max`; see [`crate::Store::rev_range_entries`].
    #[must_use]
    pub fn rev_range_entries(&self, range: &KeyRange<'_>, max: i32) -> Vec<(Bytes, Bytes)> {
        query::rev_range_entries(&self.data.map, range, max)
    }

    /// Stores `value` under `key`; returns the previous value.
    pub fn set(&mut self, key: &[u8], value: &[u8]) -> Option<Bytes> {
        self.insert(key, value)
    }

    /// Stores `value` under `key`, or deletes `key` when `value` is `None` (Arakoon's `put`).
    /// Returns the previous value.
    pub fn put(&mut self, key: &[u8], value: Option<&[u8]>) -> Option<Bytes> {
        match value {
            Some(value) => self.insert(key, value),
            None => self.remove(key),
        }
    }

    /// Deletes `key`; a missing key is Arakoon's 0x05 with the key as message.
    ///
    /// # Errors
    /// [`StoreError::KeyNotFound`] when the key is absent (nothing is changed).
    pub fn delete(&mut self, key: &[u8]) -> Result<Bytes, StoreError> {
        self.remove(key).ok_or_else(|| StoreError::KeyNotFound {
            key: Bytes::copy_from_slice(key),
        })
    }

    /// Deletes every key that starts with `prefix`; returns how many.
    pub fn delete_prefix(&mut self, prefix: &[u8]) -> u64 {
        let doomed: Vec<Box<[u8]>> = query::prefix_scan(&self.data.map, prefix)
            .map(|(key, _)| key.into())
            .collect();
        for key in &doomed {
            self.remove(key);
        }
        doomed.len() as u64
    }

    /// The one way a value enters the map.
    fn insert(&mut self, key: &[u8], value: &[u8]) -> Option<Bytes> {
        let entry = Entry::new(key, value);
        self.data.payload_bytes += entry.payload_len();
        let old = self.data.map.insert(entry);
        if let Some(old) = &old {
            self.data.payload_bytes -= old.payload_len();
        }
        match old {
            Some(old) if self.recording => {
                let value = old.value_bytes();
                self.undo.push(Undo::Restore { entry: old });
                Some(value)
            }
            Some(old) => Some(old.into_value()),
            None => {
                if self.recording {
                    self.undo.push(Undo::Remove { key: key.into() });
                }
                None
            }
        }
    }

    /// The one way a key leaves the map.
    fn remove(&mut self, key: &[u8]) -> Option<Bytes> {
        let old = self.data.map.remove(key)?;
        self.data.payload_bytes -= old.payload_len();
        if self.recording {
            let value = old.value_bytes();
            self.undo.push(Undo::Restore { entry: old });
            Some(value)
        } else {
            Some(old.into_value())
        }
    }

    /// Keeps every write. The transaction is over.
    pub(crate) fn commit(self) {
        self.undo.clear();
    }

    /// Undoes every recorded write, newest first.
    fn roll_back(&mut self) {
        let data = &mut *self.data;
        for step in self.undo.drain(..).rev() {
            match step {
                Undo::Restore { entry } => {
                    data.payload_bytes += entry.payload_len();
                    if let Some(replaced) = data.map.insert(entry) {
                        data.payload_bytes -= replaced.payload_len();
                    }
                }
                Undo::Remove { key } => {
                    if let Some(removed) = data.map.remove(&key) {
                        data.payload_bytes -= removed.payload_len();
                    }
                }
            }
        }
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        // Not committed: undo. After commit the log is empty and this does nothing.
        self.roll_back();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn payload(data: &Data) -> u64 {
        data.map
            .iter()
            .map(|e| (e.key().len() + e.value().len()) as u64)
            .sum()
    }

    #[test]
    fn dropping_an_uncommitted_transaction_rolls_back_in_reverse() {
        let mut data = Data::default();
        let mut undo = Vec::new();
        {
            let mut tx = Transaction::new(&mut data, &mut undo, false);
            tx.set(b"keep", b"1");
            tx.set(b"gone", b"x");
            tx.commit();
        }
        let before = data.map.clone();
        {
            let mut tx = Transaction::new(&mut data, &mut undo, true);
            tx.set(b"new", b"a");
            tx.set(b"new", b"bb");
            tx.set(b"keep", b"2");
            tx.delete(b"gone").unwrap();
            tx.set(b"gone", b"again");
            assert_eq!(tx.delete_prefix(b""), 3);
            tx.set(b"keep", b"3");
        }
        assert!(data.map == before);
        assert_eq!(data.payload_bytes, payload(&data));
        assert!(undo.is_empty());
    }

    #[test]
    fn committed_writes_stay_and_bytes_are_counted() {
        let mut data = Data::default();
        let mut undo = Vec::new();
        let mut tx = Transaction::new(&mut data, &mut undo, true);
        assert_eq!(tx.set(b"k", b"v1"), None);
        assert_eq!(tx.set(b"k", b"value2").as_deref(), Some(&b"v1"[..]));
        assert_eq!(tx.put(b"j", None), None);
        assert_eq!(tx.put(b"j", Some(b"w")), None);
        assert_eq!(
            tx.delete(b"missing"),
            Err(StoreError::KeyNotFound {
                key: Bytes::from_static(b"missing")
            })
        );
        tx.commit();
        assert!(undo.is_empty());
        assert_eq!(data.map.len(), 2);
        assert_eq!(data.payload_bytes, payload(&data));
        assert_eq!(data.payload_bytes, 1 + 6 + 1 + 1);
    }

    #[test]
    fn stored_values_do_not_pin_the_callers_buffer() {
        let mut data = Data::default();
        let mut undo = Vec::new();
        let frame = Bytes::from(vec![7u8; 4096]);
        let mut tx = Transaction::new(&mut data, &mut undo, false);
        tx.set(&frame[..4], &frame[4..8]);
        tx.commit();
        let entry = data.map.iter().next().unwrap();
        // The store holds its own copies: a 4-byte slice, not a view into the 4 KiB frame.
        assert_ne!(entry.key().as_ptr(), frame.as_ptr());
        assert_ne!(entry.value().as_ptr(), frame[4..].as_ptr());
    }
}
