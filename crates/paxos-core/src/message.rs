//! Messages between cores. They derive rkyv `Archive`/`Serialize`/`Deserialize` so the node can
//! send them in `wire-codec` frames unchanged; the core validates every field on receipt
//! (see `crate::core`): ballots must name a configured node with a round at most
//! [`crate::Ballot::MAX_ROUND`] and at most 2^32 above any round seen, indexes stay at most
//! `u64::MAX / 2`, promise entries must be the contiguous run above the candidate's committed
//! index within the log bound, accepts carry a committed index below their own index, and
//! catch-up answers are taken only from the peer asked, for the index asked. A malformed, stale
//! or unprompted message is logged and ignored, never trusted, and never a panic.

use rkyv::{Archive, Deserialize, Serialize};

use crate::types::{Ballot, Index, LogEntry, NodeId, Value};

/// Why a prepare was refused.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum PrepareRefusal {
    /// The acceptor already promised this higher (or equal) ballot.
    Promised(Ballot),
    /// The acceptor still honours the lease of `holder` (or its start-up wait, `None`).
    LeaseActive {
        /// The master whose lease is running, if known.
        holder: Option<NodeId>,
    },
    /// The acceptor has committed more than the candidate: the candidate must catch up first.
    Behind {
        /// The acceptor's committed index.
        committed: Index,
    },
}

/// A message from one core to another.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Phase 1a: a candidate asks for a promise not to accept lower ballots.
    Prepare {
        /// The candidate's ballot.
        ballot: Ballot,
        /// The candidate's committed index; entries above it are reported in the promise.
        committed: Index,
    },
    /// Phase 1b: the promise, with every entry the acceptor accepted above the candidate's
    /// committed index.
    Promise {
        /// The ballot promised.
        ballot: Ballot,
        /// Accepted entries above the candidate's committed index, in index order.
        entries: Vec<LogEntry>,
    },
    /// Phase 1 refusal.
    PrepareRefused {
        /// The ballot refused.
        ballot: Ballot,
        /// Why.
        reason: PrepareRefusal,
    },
    /// Phase 2a: the master asks to accept `value` at `index`.
    Accept {
        /// The master's ballot.
        ballot: Ballot,
        /// Log position.
        index: Index,
        /// The value.
        value: Value,
        /// The master's committed index (commit piggy-backs on accepts).
        committed: Index,
    },
    /// Phase 2b: the acceptor durably accepted `index` in `ballot`.
    Accepted {
        /// The ballot.
        ballot: Ballot,
        /// Log position.
        index: Index,
    },
    /// Phase 2 refusal: the acceptor promised a higher ballot.
    AcceptRefused {
        /// The ballot refused.
        ballot: Ballot,
        /// The acceptor's promise.
        promised: Ballot,
    },
    /// The master's committed index, when no accept carries it.
    Commit {
        /// The master's ballot; entries accepted in it up to `committed` are chosen.
        ballot: Ballot,
        /// Committed index.
        committed: Index,
    },
    /// The master of `ballot` gave up its lease (drop master, hand-over): acceptors may promise
    /// to others at once. Ignored unless it comes from `ballot.node` itself and names the ballot
    /// whose lease the acceptor honours.
    LeaseReleased {
        /// The master's ballot.
        ballot: Ballot,
    },
    /// Ask for committed entries starting at `from`.
    CatchUpRequest {
        /// First index wanted.
        from: Index,
    },
    /// Committed values `first`, `first + 1`, ... Taken only as the answer to the receiver's
    /// outstanding request: from the peer asked, with `first` the index asked.
    CatchUpEntries {
        /// Index of the first value.
        first: Index,
        /// The values, in order.
        values: Vec<Value>,
        /// The sender's committed index (more may follow).
        committed: Index,
    },
    /// The sender pruned the entries asked for: fetch its head snapshot first. Taken only from
    /// the peer the outstanding request went to.
    CatchUpPruned {
        /// The index the sender's head snapshot covers.
        snapshot_index: Index,
    },
}
