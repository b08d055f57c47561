//! Rarakoon's in-memory ordered key-value store, with Arakoon's update and read semantics.
//!
//! - [`Store`] holds the data (an ordered map of byte keys to byte values) together with the
//!   index of the last applied log entry: both change in one call and are saved in one
//!   snapshot, so they cannot get out of step.
//! - [`Update`] models Arakoon's update kinds (PROTOCOL.md §7); [`Store::apply_batch`] applies
//!   the batch one Paxos value carries and returns one [`UpdateOutcome`] per update. Every update
//!   is atomic (a sequence rolls back through an undo log when a part fails).
//! - Reads ([`Store::get`], [`Store::range`], …) return lists in their **logical order**
//!   (ascending, or descending for [`Store::rev_range_entries`]); the client codec reverses each
//!   list for the wire (PROTOCOL.md §2.1).
//! - [`StoreError`] is what clients see: [`StoreError::arakoon_code`] and
//!   [`StoreError::wire_message`] are the rc and message Arakoon sends.
//! - User functions are plain functions registered by name in a [`UserFunctionRegistry`].
//! - Snapshots: [`Store::for_each_pair`] + [`Store::applied_index`] out,
//!   [`Store::from_snapshot`] / [`SnapshotLoader`] in.
//!
//! The crate is pure: no I/O, no clock, no threads. It knows nothing of the wire or the WAL.

mod apply;
mod error;
mod query;
mod snapshot;
mod store;
mod transaction;
mod update;
mod user_function;

pub use error::{SnapshotError, StaleIndex, StoreError, codes};
pub use query::KeyRange;
pub use snapshot::SnapshotLoader;
pub use store::{Store, StoreStats};
pub use transaction::Transaction;
pub use update::{RangeAssertion, Update, UpdateOutcome, UpdateResult};
pub use user_function::{UserFunction, UserFunctionError, UserFunctionRegistry, samples};

/// The deepest nesting of sequences inside sequences the store accepts (a top-level sequence
/// is depth 1). Deeper sequences fail with [`StoreError::SequenceTooDeep`] (0x26) instead of
/// risking the stack. The client codec should refuse deeper nesting while decoding already.
pub const MAX_SEQUENCE_DEPTH: usize = 32;
