//! Executes one [`Update`] inside a [`Transaction`], with Arakoon's semantics (docs/protocol.md
//! §7.2). The caller opens the transaction and commits it on success; on an error the
//! transaction rolls back whatever the update wrote.
//!
//! Invariant: an update kind that runs without an undo log (see [`needs_undo`]) checks
//! everything before its first write, so an error from it means nothing was written.

use bytes::Bytes;

use crate::update::{RangeAssertion, Update, UpdateResult};
use crate::user_function::UserFunctionRegistry;
use crate::{MAX_SEQUENCE_DEPTH, StoreError, Transaction};

/// Whether `update` can fail after it has written, so that its writes must be recorded.
pub(crate) fn needs_undo(update: &Update) -> bool {
    matches!(update, Update::Sequence(_) | Update::UserFunction { .. })
}

/// Applies `update` at sequence nesting `depth` (0 for a top-level update).
pub(crate) fn execute(
    tx: &mut Transaction<'_>,
    update: &Update,
    registry: &UserFunctionRegistry,
    depth: usize,
) -> Result<UpdateResult, StoreError> {
    match update {
        Update::Set { key, value } => {
            tx.set(key, value);
            Ok(UpdateResult::Unit)
        }
        Update::Delete { key } => tx.delete(key).map(|_| UpdateResult::Unit),
        Update::TestAndSet {
            key,
            expected,
            wanted,
        } => {
            let current = tx.get(key);
            if current.as_deref() == expected.as_deref() {
                tx.put(key, wanted.as_deref());
            }
            Ok(UpdateResult::OldValue(current))
        }
        Update::Replace { key, wanted } => {
            Ok(UpdateResult::OldValue(tx.put(key, wanted.as_deref())))
        }
        Update::Sequence(updates) => {
            if depth >= MAX_SEQUENCE_DEPTH {
                return Err(StoreError::SequenceTooDeep {
                    limit: MAX_SEQUENCE_DEPTH,
                });
            }
            for part in updates {
                // A part's result is discarded; its error fails the whole sequence, and the
                // caller's rollback undoes the parts before it.
                execute(tx, part, registry, depth + 1)?;
            }
            Ok(UpdateResult::Unit)
        }
        Update::Nop => Ok(UpdateResult::Unit),
        Update::UserFunction { name, argument } => {
            let function = registry
                .lookup(name)
                .ok_or_else(|| StoreError::UserFunctionNotFound { name: name.clone() })?;
            function
                .call(tx, argument.as_deref())
                .map(UpdateResult::UserFunction)
                .map_err(|error| error.into_store_error(name))
        }
        Update::Assert { key, expected } => {
            if tx.value_is(key, expected.as_deref()) {
                Ok(UpdateResult::Unit)
            } else {
                Err(StoreError::AssertionFailed { key: key.clone() })
            }
        }
        Update::AssertExists { key } => {
            if tx.exists(key) {
                Ok(UpdateResult::Unit)
            } else {
                Err(StoreError::AssertionFailed { key: key.clone() })
            }
        }
        Update::DeletePrefix { prefix } => Ok(UpdateResult::Count(tx.delete_prefix(prefix))),
        Update::AssertRange {
            prefix,
            assertion: RangeAssertion::ContainsExactly(wire_keys),
        } => {
            // Arakoon reverses the decoded list and compares it with the ascending actual
            // keys: it passes only when the wire list is descending (docs/protocol.md §7.2). The
            // comparison walks the map and stops at the first difference; only a failure
            // collects the keys (for the message).
            let matches = tx
                .keys_with_prefix(prefix)
                .eq(wire_keys.iter().rev().map(AsRef::as_ref));
            if matches {
                Ok(UpdateResult::Unit)
            } else {
                let expected: Vec<Bytes> = wire_keys.iter().rev().cloned().collect();
                let actual = tx.prefix_keys(prefix, -1);
                Err(StoreError::AssertRangeFailed { expected, actual })
            }
        }
    }
}
