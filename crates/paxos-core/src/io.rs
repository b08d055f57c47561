//! What goes into the core ([`Event`]) and what comes out ([`Effect`]).
//!
//! Contract with the driver (the node): execute effects in the order given. `Persist` effects
//! carry increasing tickets and must reach disk in ticket order; report them with
//! [`Event::Durable`] only once they are on disk; tickets belong to one `Core` instance (a
//! restarted core starts again at 1, so never feed it a durable report from before the
//! restart), and a restarted core must be given, in [`RecoveredState`], everything that was
//! reported durable. The core never emits a message or reply that depends on a persist before
//! that persist is durable — a candidate's `Prepare` included: it leaves only once the promise
//! of its ballot is durable, which is what keeps a ballot from being used twice across a crash.
//! Catch-up is served by the driver reading its own log: the core emits
//! [`Effect::ServeCatchUp`] and the driver answers with [`Event::CatchUpRead`].
//!
//! Giving up mastership: in one effects list, [`Effect::StoppedBeingMaster`] comes before any
//! `Send`/`Broadcast` that gives the lease up ([`crate::Message::LeaseReleased`] on drop master
//! and preferred-master hand-over; a promise to a higher ballot leaves even later, once
//! durable). By the time the core returns that list it has already left office:
//! [`crate::Core::can_serve_consistent_read`] is false and proposals are refused. A driver that
//! keeps a client-facing view of the role refreshes it when it executes `StoppedBeingMaster`, so
//! the view stops serving before the release can leave the node.

use crate::message::Message;
use crate::types::{Ballot, Index, LogEntry, NodeId, ProposalId, Time, Value};

/// Durable state recovered at start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveredState {
    /// Highest ballot promised (the last persisted promise).
    pub promised: Ballot,
    /// Highest committed index recorded (a `Persist::committed` value or a snapshot index). The
    /// driver has applied everything up to it to its store.
    pub committed: Index,
    /// Every persisted entry above `committed`, contiguous from `committed + 1`.
    pub entries: Vec<LogEntry>,
}

/// What the driver read from its log for a [`Effect::ServeCatchUp`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatchUpRead {
    /// The committed values from `from` on, in order (possibly fewer than asked).
    Values(Vec<Value>),
    /// The entries were pruned; the head snapshot covers `snapshot_index`.
    Pruned {
        /// Index covered by the head snapshot.
        snapshot_index: Index,
    },
}

/// An input to [`crate::Core::step`].
#[derive(Debug, Clone)]
pub enum Event {
    /// Start with the recovered durable state. Must be the first event.
    Start(RecoveredState),
    /// Timer tick: the driver calls it regularly (e.g. every `retransmit_interval / 2`).
    Tick,
    /// A client update to replicate.
    Propose {
        /// Caller-chosen id, echoed in the reply.
        id: ProposalId,
        /// The update, opaque.
        payload: Vec<u8>,
    },
    /// A message from a peer (already decoded by the driver).
    Message {
        /// Sender.
        from: NodeId,
        /// The message.
        msg: Message,
    },
    /// Every persist with a ticket up to and including this one is on disk.
    Durable {
        /// Highest durable ticket.
        ticket: u64,
    },
    /// The driver's answer to [`Effect::ServeCatchUp`].
    CatchUpRead {
        /// Who asked.
        peer: NodeId,
        /// Index asked from.
        from: Index,
        /// What was read.
        read: CatchUpRead,
    },
    /// The driver installed a head snapshot (after [`Effect::FetchSnapshot`]); the store now
    /// reflects everything up to `index`. Install only a snapshot ahead of what was applied;
    /// the core adopts it whatever its role (a candidate or master steps down first).
    SnapshotInstalled {
        /// Index the snapshot covers.
        index: Index,
    },
    /// Arakoon's "drop master": if master, step down and do not stand for one lease period.
    DropMaster,
}

/// Outcome of a client proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Committed (a quorum has it durably) at this log index; applied with that value.
    Committed {
        /// Index of the value holding the proposal.
        index: Index,
    },
    /// This node is not master; `master` is the master it knows of, if any. Never proposed.
    NotMaster {
        /// Known master.
        master: Option<NodeId>,
    },
    /// The cluster is read-only (Arakoon's `ReadOnly`). Never proposed.
    ReadOnly,
    /// Refused before proposing: queue full or payload above `max_batch_bytes`.
    Overloaded,
    /// Mastership was lost while the proposal was in flight: it may or may not commit.
    Indeterminate,
}

/// A persist request: write these, in order, then report the ticket durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persist {
    /// Ticket to report in [`Event::Durable`].
    pub ticket: u64,
    /// New promise to record, if any.
    pub promise: Option<Ballot>,
    /// Entries to write, contiguous and in index order; an entry replaces any earlier one at
    /// the same index. When not empty, the run always extends to the core's last held index,
    /// so a driver may implement the write as "truncate the log at the first entry, append
    /// them all" — provided the whole persist reaches disk atomically (a crash must not leave
    /// the log truncated without the rewritten tail). Entries at or below `committed` that are
    /// not in the run must never be dropped.
    pub entries: Vec<LogEntry>,
    /// Committed index to record (monotonic; entries up to it are chosen).
    pub committed: Index,
}

/// An output of [`crate::Core::step`], to be executed in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Write to disk, then report [`Event::Durable`].
    Persist(Persist),
    /// Send to one peer.
    Send {
        /// Recipient.
        to: NodeId,
        /// Message.
        msg: Message,
    },
    /// Send to every other configured node.
    Broadcast(Message),
    /// Apply the committed value at `index` (effects come in index order, without gaps except
    /// after a snapshot install).
    Apply {
        /// Index.
        index: Index,
        /// Value.
        value: Value,
    },
    /// Answer a client proposal.
    Reply {
        /// The proposal.
        id: ProposalId,
        /// Outcome.
        reply: Reply,
    },
    /// This node is now master (its own `Master` value committed; lease held).
    BecameMaster,
    /// This node stopped being master. It precedes, in the same effects, any message that gives
    /// the lease up; the core has already left office (no consistent reads, no proposals).
    StoppedBeingMaster,
    /// Read committed values `[from, up_to]` from the log and answer with
    /// [`Event::CatchUpRead`] for `peer`.
    ServeCatchUp {
        /// Who asked.
        peer: NodeId,
        /// First index.
        from: Index,
        /// Last index.
        up_to: Index,
    },
    /// Fetch and install `peer`'s head snapshot, then send [`Event::SnapshotInstalled`].
    FetchSnapshot {
        /// The peer to fetch from.
        peer: NodeId,
    },
}

/// The state Arakoon's admin commands report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// This node's role right now.
    pub role: NodeRole,
    /// The master this node knows of.
    pub master: Option<NodeId>,
    /// Highest ballot promised.
    pub promised: Ballot,
    /// Committed (and emitted for apply) index.
    pub committed: Index,
    /// Highest index held in the log.
    pub last_index: Index,
    /// Local time until which this node holds a master lease, if master.
    pub lease_expires: Option<Time>,
}

/// A node's current role in the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    /// Not started yet.
    Starting,
    /// Following (slave, learner or witness).
    Follower,
    /// Standing for election.
    Candidate,
    /// Elected in phase 1, establishing its term (own master value not committed yet).
    MasterElect,
    /// Master.
    Master,
}
