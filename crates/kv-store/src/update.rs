//! The store's model of Arakoon's updates (docs/protocol.md §7.1) and their results.
//!
//! [`Update`] mirrors the update kinds a client may send, minus Arakoon's internal tags (4
//! MasterSet, 9 AdminSet, 10-13 nursery and SyncedSequence), which the node refuses before
//! anything reaches the store. It is not a wire format: the client codec owns that, and the
//! node converts between the two (ADR 0001).
//!
//! Lists inside updates keep the order the client sent them in: a sequence's updates run in
//! that order, and [`RangeAssertion::ContainsExactly`] keeps the wire order because Arakoon's
//! comparison depends on it (§7.2).

use bytes::Bytes;

/// One Arakoon update. Applying it is atomic: it either takes full effect or, when it fails,
/// none at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Tag 1: store `value` under `key`. Never fails.
    Set {
        /// The key.
        key: Bytes,
        /// The new value.
        value: Bytes,
    },
    /// Tag 2: remove `key`. Fails with 0x05 + key when the key is absent.
    Delete {
        /// The key.
        key: Bytes,
    },
    /// Tag 3: when the current value equals `expected` (absent == `None`), store `wanted`
    /// (`None` deletes). Result: the value *before* the call. Never fails.
    TestAndSet {
        /// The key.
        key: Bytes,
        /// The value the key must hold (`None`: must be absent) for the write to happen.
        expected: Option<Bytes>,
        /// The value to store; `None` deletes the key.
        wanted: Option<Bytes>,
    },
    /// Tag 5: the updates, in execution order, as one atomic update. An empty sequence
    /// succeeds. The first failing part fails the whole sequence with that part's error and
    /// leaves the store unchanged. Results of the parts are discarded.
    Sequence(Vec<Update>),
    /// Tag 6: does nothing. Result: unit.
    Nop,
    /// Tag 7: run the registered user function `name` with `argument`.
    UserFunction {
        /// The name the function is registered under.
        name: Bytes,
        /// Its argument.
        argument: Option<Bytes>,
    },
    /// Tag 8: `expected = None` requires the key to be absent, `Some(v)` requires its value to
    /// be `v`. Fails with 0x07 + key. Never writes.
    Assert {
        /// The key.
        key: Bytes,
        /// The required value, or `None` for "absent".
        expected: Option<Bytes>,
    },
    /// Tag 14: delete every key that starts with `prefix` (`""`: every key). Result: the
    /// number of keys deleted. Never fails.
    DeletePrefix {
        /// The prefix.
        prefix: Bytes,
    },
    /// Tag 15: fails with 0x07 + key when the key is absent. Never writes.
    AssertExists {
        /// The key.
        key: Bytes,
    },
    /// Tag 16: store `wanted` unconditionally (`None` deletes). Result: the previous value.
    Replace {
        /// The key.
        key: Bytes,
        /// The value to store; `None` deletes the key.
        wanted: Option<Bytes>,
    },
    /// Tag 17: check the set of keys that start with `prefix`. Fails with 0x07. Never writes.
    AssertRange {
        /// The prefix.
        prefix: Bytes,
        /// What must hold for those keys.
        assertion: RangeAssertion,
    },
}

/// The check of an [`Update::AssertRange`] (Arakoon's `Range_assertion`; kind 1 is the only
/// kind Arakoon defines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeAssertion {
    /// Kind 1: the keys that start with the prefix must be exactly these.
    ///
    /// The keys are in **wire order**, as the client sent them. Like Arakoon, the store reverses
    /// that list and compares it with the ascending list of actual keys, so the check passes
    /// only when the wire list is the actual keys in **descending** order (docs/protocol.md §7.2).
    /// Callers that pass today keep passing; a list in any other order fails, as it does in
    /// Arakoon.
    ContainsExactly(Vec<Bytes>),
}

/// What a successful update returns. The node turns it into the reply of the request that
/// carried the update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateResult {
    /// Set, delete, sequence, nop and the asserts: the reply has no payload.
    Unit,
    /// Test-and-set and replace: the value the key held before the update.
    OldValue(Option<Bytes>),
    /// Delete-prefix: the number of keys deleted. (The wire carries an `i32`.)
    Count(u64),
    /// A user function's result.
    UserFunction(Option<Bytes>),
}

/// The outcome of applying one update: its result, or the Arakoon error it failed with.
pub type UpdateOutcome = Result<UpdateResult, crate::StoreError>;
