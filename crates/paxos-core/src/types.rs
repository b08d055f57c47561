//! The vocabulary of the core: node identities, ballots, log indexes, proposals and values.
//!
//! Invariants: a [`NodeId`] is an index into the configured node list (names live only at the
//! edges, in the node's configuration); [`Ballot`]s are totally ordered by (round, node), so two
//! candidates never share one, and one node never uses a ballot twice, across crashes (its
//! promise of the ballot is durable before anything in that ballot leaves it); a [`Value`] is
//! what one Paxos instance (one log index) agrees on, and at most one value is ever proposed
//! per (ballot, index). Rounds stay at or below [`Ballot::MAX_ROUND`].

use rkyv::{Archive, Deserialize, Serialize};

/// A node, as its position in [`crate::Config::nodes`]. The node maps names to ids at the edges.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
)]
pub struct NodeId(pub u8);

impl NodeId {
    /// This id as an index into the node list.
    #[must_use]
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node#{}", self.0)
    }
}

/// A log position. Index 0 is "nothing yet"; the first value lives at index 1.
pub type Index = u64;

/// Monotonic local time in nanoseconds, as passed in by the caller with every event.
pub type Time = u64;

/// A Paxos ballot (proposal number). Ordered by round first, then by the proposing node, so
/// ballots of different nodes never tie.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
)]
pub struct Ballot {
    /// Election round; a candidate picks one higher than any it has seen.
    pub round: u64,
    /// The node that owns this ballot (the candidate / master).
    pub node: NodeId,
}

impl Ballot {
    /// The ballot below every real one (nothing promised yet).
    pub const ZERO: Ballot = Ballot {
        round: 0,
        node: NodeId(0),
    };

    /// The highest round a core accepts from a peer or stands with. Half the domain: no real
    /// cluster gets there (one round per election), and a peer cannot drive a core's rounds to
    /// the end of the `u64` range, where `round + 1` would overflow. A peer's round is also
    /// refused when it is more than 2^32 above every round the receiver has seen.
    pub const MAX_ROUND: u64 = u64::MAX / 2;
}

impl std::fmt::Display for Ballot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.round, self.node.0)
    }
}

/// A caller-chosen identifier of one client proposal, echoed back in [`crate::Reply`].
#[derive(
    Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub struct ProposalId(pub u64);

/// One client update inside a batch: an opaque payload and the id its proposer chose.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]
pub struct Proposal {
    /// Id chosen by the node that received the client's request.
    pub id: ProposalId,
    /// The update, opaque to the core.
    pub payload: Vec<u8>,
}

/// The value one log index agrees on.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// "`node` is master": committed when a master takes office and to renew its lease when idle.
    Master {
        /// The master.
        node: NodeId,
    },
    /// A batch of client updates, applied in order.
    Batch(Vec<Proposal>),
}

impl Value {
    /// Payload bytes carried (for batch bounds), 0 for internal values.
    #[must_use]
    pub fn payload_bytes(&self) -> usize {
        match self {
            Value::Master { .. } => 0,
            Value::Batch(items) => items.iter().map(|p| p.payload.len()).sum(),
        }
    }
}

/// A log entry as persisted and exchanged in promises: the value accepted at `index` in `ballot`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Log position.
    pub index: Index,
    /// Ballot in which the value was accepted (for committed entries received through
    /// catch-up, the ballot of the peer that served them).
    pub ballot: Ballot,
    /// The value.
    pub value: Value,
}
