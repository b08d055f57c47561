//! The store: the ordered map, the index of the last applied log entry, and the user
//! functions updates may call.
//!
//! Invariants:
//! - The applied index only grows: applying at an index at or below it is refused as a whole
//!   ([`StaleIndex`]) before anything changes, so a log entry is never applied twice.
//! - The index and the data change together (one `&mut self` call), and a snapshot reads both
//!   from the same state, so a snapshot can never pair data with the wrong index.
//! - Each update is atomic: on error the map is exactly as before that update; the updates
//!   before it in the same batch keep their effects (a sequence is one update).

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::apply::{execute, needs_undo};
use crate::query::{self, KeyRange, ReadLimits, ReadTooLarge};
use crate::transaction::{Data, Transaction, Undo};
use crate::update::{Update, UpdateOutcome};
use crate::user_function::UserFunctionRegistry;
use crate::{StaleIndex, StoreError};

/// Figures the node reports (statistics, `get_key_count`, `get_txid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Number of keys.
    pub key_count: u64,
    /// Index of the last applied log entry (`None`: nothing applied yet; Arakoon reports 0).
    pub applied_index: Option<u64>,
    /// Sum of the lengths of all keys and values.
    pub payload_bytes: u64,
}

/// Rarakoon's in-memory ordered key-value store.
pub struct Store {
    pub(crate) data: Data,
    pub(crate) applied_index: Option<u64>,
    user_functions: Arc<UserFunctionRegistry>,
    /// Scratch undo log, reused by every transaction so that recording stays allocation-free
    /// once warm. Empty between updates.
    undo: Vec<Undo>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new(Arc::new(UserFunctionRegistry::new()))
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("stats", &self.stats())
            .field("user_functions", &self.user_functions)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// An empty store that has applied nothing, with these user functions.
    #[must_use]
    pub fn new(user_functions: Arc<UserFunctionRegistry>) -> Self {
        Self {
            data: Data::default(),
            applied_index: None,
            user_functions,
            undo: Vec::new(),
        }
    }

    pub(crate) fn from_parts(
        data: Data,
        applied_index: u64,
        user_functions: Arc<UserFunctionRegistry>,
    ) -> Self {
        Self {
            data,
            applied_index: Some(applied_index),
            user_functions,
            undo: Vec::new(),
        }
    }

    /// Replaces the user functions (e.g. after loading a snapshot).
    pub fn set_user_functions(&mut self, user_functions: Arc<UserFunctionRegistry>) {
        self.user_functions = user_functions;
    }

    // ----- applying log entries -------------------------------------------------------------

    /// Index of the last applied log entry; `None` when nothing was applied (the store of a
    /// fresh node; Arakoon's `get_txid` reports 0 then).
    #[must_use]
    pub fn applied_index(&self) -> Option<u64> {
        self.applied_index
    }

    /// Checks that `index` is after the applied index. Indices may skip (a log entry that
    /// carries no updates for the store need not be applied), never repeat or go back.
    ///
    /// # Errors
    /// [`StaleIndex`] when `index` is at or below the applied index.
    pub fn check_index(&self, index: u64) -> Result<(), StaleIndex> {
        match self.applied_index {
            Some(applied) if index <= applied => Err(StaleIndex { index, applied }),
            _ => Ok(()),
        }
    }

    /// Applies the batch of updates that the log entry `index` carries (one Paxos value), in
    /// order, and sets the applied index to `index`. Returns one outcome per update: each
    /// update is atomic on its own, and a failing one does not stop the ones after it (as in
    /// Arakoon, where each client update in a value succeeds or fails alone). An empty batch
    /// just advances the applied index.
    ///
    /// # Errors
    /// [`StaleIndex`] when `index` is at or below the applied index; nothing changes then.
    pub fn apply_batch<I>(
        &mut self,
        index: u64,
        updates: I,
    ) -> Result<Vec<UpdateOutcome>, StaleIndex>
    where
        I: IntoIterator,
        I::Item: Borrow<Update>,
    {
        self.check_index(index)?;
        let outcomes = updates
            .into_iter()
            .map(|update| self.apply_one(update.borrow()))
            .collect();
        self.applied_index = Some(index);
        Ok(outcomes)
    }

    /// Applies a log entry that carries a single update: [`Store::apply_batch`] of one.
    ///
    /// # Errors
    /// [`StaleIndex`] when `index` is at or below the applied index; nothing changes then.
    pub fn apply(&mut self, index: u64, update: &Update) -> Result<UpdateOutcome, StaleIndex> {
        self.check_index(index)?;
        let outcome = self.apply_one(update);
        self.applied_index = Some(index);
        Ok(outcome)
    }

    fn apply_one(&mut self, update: &Update) -> UpdateOutcome {
        let mut tx = Transaction::new(&mut self.data, &mut self.undo, needs_undo(update));
        let outcome = execute(&mut tx, update, &self.user_functions, 0);
        if outcome.is_ok() {
            tx.commit();
        }
        // On error `tx` is dropped here uncommitted, which rolls it back.
        outcome
    }

    // ----- reads ----------------------------------------------------------------------------

    /// The value of `key` (a copy: the store keeps key and value in one block of its own).
    #[must_use]
    pub fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.data.map.get(key).map(crate::tree::Entry::value_bytes)
    }

    /// The value of `key`, or Arakoon's GET error (0x05 `Not_found`).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when the key is absent.
    pub fn get_or_not_found(&self, key: &[u8]) -> Result<Bytes, StoreError> {
        self.get(key).ok_or(StoreError::NotFound)
    }

    /// Whether `key` exists.
    #[must_use]
    pub fn exists(&self, key: &[u8]) -> bool {
        self.data.map.contains_key(key)
    }

    /// The ASSERT read (0x16): `None` requires `key` to be absent, `Some(v)` its value to be `v`.
    ///
    /// # Errors
    /// [`StoreError::AssertionFailed`] (0x07 + key) otherwise.
    pub fn assert(&self, key: &[u8], expected: Option<&[u8]>) -> Result<(), StoreError> {
        if self.data.map.get(key).map(crate::tree::Entry::value) == expected {
            Ok(())
        } else {
            Err(StoreError::AssertionFailed {
                key: Bytes::copy_from_slice(key),
            })
        }
    }

    /// The ASSERT_EXISTS read (0x29).
    ///
    /// # Errors
    /// [`StoreError::AssertionFailed`] (0x07 + key) when `key` is absent.
    pub fn assert_exists(&self, key: &[u8]) -> Result<(), StoreError> {
        if self.exists(key) {
            Ok(())
        } else {
            Err(StoreError::AssertionFailed {
                key: Bytes::copy_from_slice(key),
            })
        }
    }

    /// MULTI_GET: `values[i]` is the value of `keys[i]` (same order as given). Pass the keys in
    /// wire order; the codec then writes the values reversed (docs/protocol.md §8.2).
    ///
    /// # Errors
    /// [`StoreError::KeyNotFound`] with the **last** missing key in the given order (for keys
    /// in wire order that is the one Arakoon reports).
    pub fn multi_get<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<Bytes>, StoreError> {
        query::multi_get(&self.data.map, keys)
    }

    /// MULTI_GET_OPTION: `values[i]` is the value of `keys[i]` or `None`, same order as given
    /// (which is also the wire order of the answer).
    #[must_use]
    pub fn multi_get_option<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Option<Bytes>> {
        query::multi_get_option(&self.data.map, keys)
    }

    /// RANGE: the keys in `range`, **ascending**, the smallest `max` of them (`max < 0`: all).
    /// The wire order is descending: the codec reverses.
    #[must_use]
    pub fn range(&self, range: &KeyRange<'_>, max: i32) -> Vec<Bytes> {
        query::range(&self.data.map, range, max)
    }

    /// RANGE_ENTRIES: the pairs in `range`, **ascending**, the smallest `max` of them. The wire
    /// order is descending: the codec reverses.
    #[must_use]
    pub fn range_entries(&self, range: &KeyRange<'_>, max: i32) -> Vec<(Bytes, Bytes)> {
        query::range_entries(&self.data.map, range, max)
    }

    /// REV_RANGE_ENTRIES: here `range.first` is the **high** bound and `range.last` the **low**
    /// bound, as on the wire (`last = None`: down to the empty key, included iff
    /// `last_inclusive`). Returns the largest `max` pairs, **descending**. The wire order is
    /// ascending: the codec reverses.
    #[must_use]
    pub fn rev_range_entries(&self, range: &KeyRange<'_>, max: i32) -> Vec<(Bytes, Bytes)> {
        query::rev_range_entries(&self.data.map, range, max)
    }

    /// PREFIX_KEYS: the keys that start with `prefix` (`""`: all), **ascending**, the smallest
    /// `max` of them. The wire order is descending: the codec reverses.
    #[must_use]
    pub fn prefix_keys(&self, prefix: &[u8], max: i32) -> Vec<Bytes> {
        query::prefix_keys(&self.data.map, prefix, max)
    }

    /// [`Store::range`] within `limits`: the same answer, or [`ReadTooLarge`] (without
    /// scanning further) when it would exceed them.
    ///
    /// # Errors
    /// [`ReadTooLarge`] naming the limit.
    pub fn range_limited(
        &self,
        range: &KeyRange<'_>,
        max: i32,
        limits: ReadLimits,
    ) -> Result<Vec<Bytes>, ReadTooLarge> {
        query::range_bounded(&self.data.map, range, max, limits)
    }

    /// [`Store::range_entries`] within `limits`.
    ///
    /// # Errors
    /// [`ReadTooLarge`] naming the limit.
    pub fn range_entries_limited(
        &self,
        range: &KeyRange<'_>,
        max: i32,
        limits: ReadLimits,
    ) -> Result<Vec<(Bytes, Bytes)>, ReadTooLarge> {
        query::range_entries_bounded(&self.data.map, range, max, limits)
    }

    /// [`Store::rev_range_entries`] within `limits`.
    ///
    /// # Errors
    /// [`ReadTooLarge`] naming the limit.
    pub fn rev_range_entries_limited(
        &self,
        range: &KeyRange<'_>,
        max: i32,
        limits: ReadLimits,
    ) -> Result<Vec<(Bytes, Bytes)>, ReadTooLarge> {
        query::rev_range_entries_bounded(&self.data.map, range, max, limits)
    }

    /// [`Store::prefix_keys`] within `limits`.
    ///
    /// # Errors
    /// [`ReadTooLarge`] naming the limit.
    pub fn prefix_keys_limited(
        &self,
        prefix: &[u8],
        max: i32,
        limits: ReadLimits,
    ) -> Result<Vec<Bytes>, ReadTooLarge> {
        query::prefix_keys_bounded(&self.data.map, prefix, max, limits)
    }

    /// GET_KEY_COUNT: the number of keys.
    #[must_use]
    pub fn key_count(&self) -> u64 {
        self.data.map.len() as u64
    }

    /// Key count, applied index and payload size.
    #[must_use]
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            key_count: self.key_count(),
            applied_index: self.applied_index,
            payload_bytes: self.data.payload_bytes,
        }
    }

    /// All pairs in ascending key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.data.map.iter().map(|e| (e.key(), e.value()))
    }

    /// A point-in-time view of the data and the applied index, in O(1): the tree's nodes are
    /// shared, and the store's later writes copy the nodes they change instead of changing
    /// them (ADR 0185). The view is `Send + 'static`, so a snapshot can be written from it on
    /// another thread without holding the store's lock.
    #[must_use]
    pub fn view(&self) -> StoreView {
        StoreView {
            data: self.data.clone(),
            applied_index: self.applied_index,
        }
    }
}

/// A point-in-time view of a [`Store`] ([`Store::view`]): what it held when the view was
/// taken, whatever the store does later.
#[derive(Clone)]
pub struct StoreView {
    data: Data,
    applied_index: Option<u64>,
}

impl fmt::Debug for StoreView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreView")
            .field("key_count", &self.key_count())
            .field("applied_index", &self.applied_index)
            .finish_non_exhaustive()
    }
}

impl StoreView {
    /// The applied index of the store when the view was taken.
    #[must_use]
    pub fn applied_index(&self) -> Option<u64> {
        self.applied_index
    }

    /// Number of keys.
    #[must_use]
    pub fn key_count(&self) -> u64 {
        self.data.map.len() as u64
    }

    /// Sum of the lengths of all keys and values.
    #[must_use]
    pub fn payload_bytes(&self) -> u64 {
        self.data.payload_bytes
    }

    /// All pairs in ascending key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.data.map.iter().map(|e| (e.key(), e.value()))
    }

    /// Calls `visit` with every pair in ascending key order, stopping at its first error.
    ///
    /// # Errors
    /// The first error `visit` returns.
    pub fn for_each_pair<E>(
        &self,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        self.iter().try_for_each(|(key, value)| visit(key, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shareable<T: Send + Sync>() {}

    #[test]
    fn the_store_can_be_shared_between_threads() {
        // The node keeps it behind a lock that tasks on several threads take.
        shareable::<Store>();
        shareable::<Update>();
        shareable::<StoreError>();
        fn movable<T: Send + Sync + 'static>() {}
        movable::<StoreView>();
    }

    #[test]
    fn debug_shows_stats_not_data() {
        let store = Store::default();
        let shown = format!("{store:?}");
        assert!(shown.contains("key_count: 0"), "{shown}");
    }
}
