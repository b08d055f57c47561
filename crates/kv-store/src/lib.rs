//! Rarakoon's in-memory ordered key-value store, with Arakoon's update and read semantics.
//!
//! - [`Store`] holds the data (an ordered map of byte keys to byte values) together with the
//!   index of the last applied log entry: both change in one call and are saved in one
//!   snapshot, so they cannot get out of step.
//! - [`Update`] models Arakoon's update kinds (docs/protocol.md §7); [`Store::apply_batch`] applies
//!   the batch one Paxos value carries and returns one [`UpdateOutcome`] per update. Every update
//!   is atomic (a sequence rolls back through an undo log when a part fails).
//! - Reads ([`Store::get`], [`Store::range`], …) return lists in their **logical order**
//!   (ascending, or descending for [`Store::rev_range_entries`]); the client codec reverses each
//!   list for the wire (docs/protocol.md §2.1).
//! - [`StoreError`] is what clients see: [`StoreError::arakoon_code`] and
//!   [`StoreError::wire_message`] are the rc and message Arakoon sends.
//! - User functions are registered by name in a [`UserFunctionRegistry`]: plain Rust functions,
//!   or [`HostedFunction`]s such as WebAssembly modules the node loads from its config.
//! - Snapshots: [`Store::for_each_pair`] + [`Store::applied_index`] out,
//!   [`Store::from_snapshot`] / [`SnapshotLoader`] in. [`Store::view`] is an O(1) point-in-time
//!   view (`Send + 'static`) to write a snapshot from without holding the store's lock.
//!
//! The crate is pure: no I/O, no clock, no threads. It knows nothing of the wire or the WAL.
//!
//! ```
//! use bytes::Bytes;
//! use kv_store::{KeyRange, Store, StoreError, Update, UpdateResult};
//!
//! let mut store = Store::default();
//! let set = |k: &'static str, v: &'static str| Update::Set {
//!     key: Bytes::from_static(k.as_bytes()),
//!     value: Bytes::from_static(v.as_bytes()),
//! };
//! // Log entry 0 carries a batch of two updates; the second fails on its own.
//! let outcomes = store
//!     .apply_batch(0, [set("b", "2"), Update::Delete { key: Bytes::from_static(b"x") }])
//!     .unwrap();
//! assert_eq!(outcomes[0], Ok(UpdateResult::Unit));
//! assert_eq!(outcomes[1].as_ref().unwrap_err().arakoon_code(), 0x05);
//! // A sequence is all or nothing.
//! let failing = Update::Sequence(vec![set("a", "1"), Update::Delete { key: Bytes::from_static(b"x") }]);
//! assert_eq!(
//!     store.apply(1, &failing).unwrap(),
//!     Err(StoreError::KeyNotFound { key: Bytes::from_static(b"x") })
//! );
//! assert!(!store.exists(b"a"));
//! assert_eq!(store.applied_index(), Some(1));
//! // Index 1 again would double-apply: refused.
//! assert!(store.apply(1, &set("a", "1")).is_err());
//! // Reads return logical order (ascending here); the codec reverses for the wire.
//! store.apply(2, &set("a", "1")).unwrap().unwrap();
//! assert_eq!(store.range(&KeyRange::all(), -1), vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
//! ```

mod apply;
mod error;
mod query;
mod snapshot;
mod store;
mod transaction;
mod tree;
mod update;
mod user_function;

pub use error::{SnapshotError, StaleIndex, StoreError, codes};
pub use query::{KeyRange, ReadLimit, ReadLimits, ReadTooLarge};
pub use snapshot::SnapshotLoader;
pub use store::{Store, StoreStats, StoreView};
pub use transaction::Transaction;
pub use update::{RangeAssertion, Update, UpdateOutcome, UpdateResult};
pub use user_function::{
    HostedFunction, RegisteredFunction, UserFunction, UserFunctionError, UserFunctionRegistry,
    samples,
};

/// The deepest nesting of sequences inside sequences the store accepts (a top-level sequence
/// is depth 1). Deeper sequences fail with [`StoreError::SequenceTooDeep`] (0x26) instead of
/// risking the stack. The client codec should refuse deeper nesting while decoding already.
pub const MAX_SEQUENCE_DEPTH: usize = 32;
