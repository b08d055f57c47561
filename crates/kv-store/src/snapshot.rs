//! Snapshots without the WAL crate: the store hands out its applied index and all its pairs
//! in key order, and is rebuilt from the same.
//!
//! The node adapts [`Store::applied_index`] + [`Store::for_each_pair`] to the WAL's
//! `SnapshotSource` trait. Because both are read from one `&Store`, the index always belongs
//! to the data it is saved with. A store that has applied nothing (`applied_index() == None`)
//! has nothing worth a snapshot; the node should not write one for it.
//!
//! Loading checks that keys come strictly ascending (that is how they are written); anything
//! else is a corrupt snapshot and is refused with the position of the first bad pair.

use std::sync::Arc;

use bytes::Bytes;

use crate::error::escaped;
use crate::transaction::Data;
use crate::tree::{Entry, Tree};
use crate::user_function::UserFunctionRegistry;
use crate::{SnapshotError, Store};

impl Store {
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

    /// Builds a store from a snapshot: the index it covers and its pairs in strictly
    /// ascending key order.
    ///
    /// # Errors
    /// [`SnapshotError::KeysOutOfOrder`] when a key does not sort after the one before it.
    pub fn from_snapshot<I>(
        applied_index: u64,
        pairs: I,
        user_functions: Arc<UserFunctionRegistry>,
    ) -> Result<Store, SnapshotError>
    where
        I: IntoIterator<Item = (Bytes, Bytes)>,
    {
        let mut loader = SnapshotLoader::new(applied_index);
        for (key, value) in pairs {
            loader.push(&key, &value)?;
        }
        Ok(loader.finish(user_functions))
    }
}

/// Builds a store from snapshot pairs pushed one at a time (for readers that call back rather
/// than iterate). Pairs must come in strictly ascending key order.
#[derive(Debug)]
pub struct SnapshotLoader {
    applied_index: u64,
    /// The entries so far, ascending (checked on push).
    entries: Vec<Entry>,
    payload_bytes: u64,
}

impl SnapshotLoader {
    /// A loader for a snapshot that covers `applied_index`.
    #[must_use]
    pub fn new(applied_index: u64) -> Self {
        Self {
            applied_index,
            entries: Vec::new(),
            payload_bytes: 0,
        }
    }

    /// Adds the next pair (copied).
    ///
    /// # Errors
    /// [`SnapshotError::KeysOutOfOrder`] when `key` does not sort after the previous key.
    pub fn push(&mut self, key: &[u8], value: &[u8]) -> Result<(), SnapshotError> {
        if let Some(previous) = self.entries.last()
            && key <= previous.key()
        {
            return Err(SnapshotError::KeysOutOfOrder {
                position: self.entries.len() as u64,
                key: escaped(key),
                previous: escaped(previous.key()),
            });
        }
        self.payload_bytes += (key.len() + value.len()) as u64;
        // One allocation per pair, key and value together: the block the tree keeps.
        self.entries.push(Entry::new(key, value));
        Ok(())
    }

    /// The store, with the applied index the snapshot covers.
    #[must_use]
    pub fn finish(self, user_functions: Arc<UserFunctionRegistry>) -> Store {
        // The sorted entries build the tree bottom-up with full nodes: faster and smaller than
        // inserting one by one. The entries move into the leaves (no copy of keys or values).
        let map = Tree::from_sorted(self.entries);
        let data = Data {
            map,
            payload_bytes: self.payload_bytes,
        };
        Store::from_parts(data, self.applied_index, user_functions)
    }
}
