//! The consensus state machine: one [`Core`] per node, driven by [`Core::step`].
//!
//! Submodules split the roles: `acceptor` (promises, accepts, lease refusals), `election`
//! (timers, standing, phase 1 as candidate), `master` (proposing, pipelining, commit counting,
//! lease renewal, hand-over) and `learn` (committing, applying, catch-up).
//!
//! Invariants kept here (asserted where noted; `check_invariants` checks the rest after every
//! step in debug builds):
//! - `log` holds exactly the entries `committed + 1 ..= last_index()`, contiguous (by
//!   construction); every persist's entries are contiguous (asserted).
//! - Nothing that depends on a persist leaves the core before that persist is durable: such
//!   sends wait in `deferred`, keyed by ticket, until [`Event::Durable`] covers them.
//! - **At most one value per (ballot, index), across crashes.** A node uses a ballot of its
//!   own only once its promise of that ballot is durable: a candidate broadcasts `Prepare`
//!   (and so can be promised, take office and send accepts) only after its own promise persist
//!   is durable, and every accept it sends is in a ballot at or below `durable_promise`
//!   (asserted). After a crash it recovers that promise, so its next ballot is higher. Within one
//!   incarnation a master assigns each index of its ballot once (`take_office` fills the indexes
//!   above `committed`, `append_value` only appends). An acceptor that is sent a second, other
//!   value for a (ballot, index) it holds refuses it and logs an error (a peer's violation).
//! - `promised` never decreases and `committed` only grows (asserted on every step); values are
//!   applied in index order, one by one, except for a jump to an installed snapshot (asserted).
//! - Time never goes backwards inside the core (an older `now` is clamped).
//! - Every field of every peer message is range-checked before it is used, allocated for or
//!   looped over: ballots name a configured node and keep rounds at most 2^32 above any seen and
//!   at most [`Ballot::MAX_ROUND`]; indexes stay at most `MAX_INDEX`; entry lists are contiguous,
//!   bounded by the log bound and start where they must. Catch-up answers are taken only from the
//!   peer asked, for the index asked. A bad message is logged and ignored, never a panic.

mod acceptor;
mod election;
mod learn;
mod master;

use std::collections::VecDeque;

use crate::config::{Config, ConfigError, MasterMode, Role};
use crate::io::{Effect, Event, NodeRole, Persist, RecoveredState, Reply, Status};
use crate::message::Message;
use crate::types::{Ballot, Index, LogEntry, NodeId, Proposal, Time, Value};

/// Recovered state that cannot be trusted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StartError {
    /// [`Event::Start`] came twice.
    #[error("the core was already started")]
    AlreadyStarted,
    /// Another event came before [`Event::Start`].
    #[error("event before start-up: send Event::Start with the recovered state first")]
    NotStarted,
    /// Recovered entries are not contiguous from `committed + 1`.
    #[error("recovered entry #{position} has index {found}, expected {expected}")]
    Gap {
        /// Position in `RecoveredState::entries`.
        position: usize,
        /// Index found.
        found: Index,
        /// Index expected.
        expected: Index,
    },
    /// Recovered state has more uncommitted entries than the core can hold.
    #[error("recovered {count} uncommitted entries, more than the bound {max}")]
    TooManyEntries {
        /// Entries recovered.
        count: usize,
        /// Bound.
        max: usize,
    },
    /// A recovered number is outside what the core can work with (a corrupt disk).
    #[error("recovered {what} {value} is out of range (at most {max})")]
    OutOfRange {
        /// Which number.
        what: &'static str,
        /// Its value.
        value: u64,
        /// The bound.
        max: u64,
    },
    /// A recovered value breaks the batch bounds.
    #[error("recovered entry at index {index} exceeds the batch bounds")]
    OversizedValue {
        /// Index of the entry.
        index: Index,
    },
}

/// One uncommitted log entry held in memory.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub(crate) ballot: Ballot,
    pub(crate) value: Value,
    /// Ticket of the persist that wrote it.
    pub(crate) ticket: u64,
    /// Proposed by this core as master in this incarnation: reply to its proposals on commit.
    pub(crate) mine: bool,
    /// Master bookkeeping: voters (bit per node id) that durably accepted it in `ballot`.
    pub(crate) acks: u64,
    /// Master bookkeeping: when the accept was first and last sent.
    pub(crate) first_sent: Time,
    pub(crate) last_sent: Time,
}

/// Something released once a persist ticket is durable.
#[derive(Debug, Clone)]
pub(crate) enum Deferred {
    Send(NodeId, Message),
    SelfAccepted { ballot: Ballot, index: Index },
    SelfPromised { ballot: Ballot },
}

/// What this node honours as the current lease.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LeaseSeen {
    pub(crate) ballot: Ballot,
    /// Local time of the last accept seen in `ballot`.
    pub(crate) at: Time,
}

#[derive(Debug, Clone)]
pub(crate) struct Candidacy {
    pub(crate) ballot: Ballot,
    pub(crate) promises: u64,
    /// Highest-ballot entry reported per index above `base`.
    pub(crate) base: Index,
    pub(crate) found: Vec<Option<(Ballot, Value)>>,
    /// Own promise of `ballot` durable: the prepare went out (nothing in `ballot` leaves the
    /// node before).
    pub(crate) reserved: bool,
    pub(crate) started: Time,
    pub(crate) last_sent: Time,
}

#[derive(Debug, Clone)]
pub(crate) struct Mastership {
    pub(crate) ballot: Ballot,
    /// Own `Master` value committed: serving.
    pub(crate) established: bool,
    pub(crate) elected_at: Time,
    /// Index of the master value that establishes the term.
    pub(crate) establishing_index: Index,
    /// Local time the lease was last renewed from (send time of a quorum-accepted accept).
    pub(crate) lease_start: Option<Time>,
    /// When the last value was proposed (for idle renewals).
    pub(crate) last_proposed: Time,
    /// Highest index each node is known to have accepted in this ballot.
    pub(crate) match_index: Vec<Index>,
}

#[derive(Debug, Clone)]
pub(crate) enum Phase {
    Follower,
    Candidate(Candidacy),
    Master(Mastership),
}

/// The Multi-Paxos core of one node. See the crate docs and `README.md`.
#[derive(Debug)]
pub struct Core {
    pub(crate) cfg: Config,
    pub(crate) quorum: usize,
    pub(crate) voter_mask: u64,
    pub(crate) started: bool,
    pub(crate) now: Time,
    pub(crate) entropy: u64,
    pub(crate) promised: Ballot,
    /// Highest promise known to be on disk (what a crash would recover at least).
    pub(crate) durable_promise: Ballot,
    /// Promises issued in persists not yet durable, by ticket.
    pub(crate) pending_promises: VecDeque<(u64, Ballot)>,
    pub(crate) max_round: u64,
    pub(crate) committed: Index,
    pub(crate) log: VecDeque<Slot>,
    pub(crate) next_ticket: u64,
    pub(crate) durable_ticket: u64,
    pub(crate) deferred: VecDeque<(u64, Deferred)>,
    pub(crate) lease_seen: Option<LeaseSeen>,
    pub(crate) quiet_until: Time,
    pub(crate) no_stand_until: Time,
    pub(crate) next_stand_at: Time,
    pub(crate) phase: Phase,
    pub(crate) known_master: Option<NodeId>,
    /// Highest committed index any peer told us about, and who.
    pub(crate) commit_hint: (Index, Option<NodeId>),
    /// Outstanding catch-up request: (peer, sent at, first index asked).
    pub(crate) catch_up: Option<(NodeId, Time, Index)>,
    /// The last catch-up request that timed out: (peer, first index asked). Its answer is
    /// still taken if it arrives late (a peer whose disk is slower than the retransmit
    /// interval would otherwise never get its answers in: whole-node simulator seed 365).
    pub(crate) catch_up_late: Option<(NodeId, Index)>,
    pub(crate) snapshot_pending: bool,
    pub(crate) queue: VecDeque<Proposal>,
    pub(crate) commit_dirty: bool,
    /// Highest index emitted as `Apply` (or covered by an installed snapshot / the recovered
    /// committed index): applies come strictly in order after it.
    pub(crate) applied: Index,
    /// The log index each other node was last seen to hold (Arakoon's `node_is`), by
    /// `NodeId`: from the accepts a master sends us and the acknowledgements we receive as
    /// master, each recorded only after the message passed its checks. Statistics only: no
    /// decision reads it.
    pub(crate) witnessed: Vec<Option<Index>>,
}

/// Highest log index the core accepts from a peer or the driver: far beyond any real log, and
/// far enough from `u64::MAX` that index arithmetic (`committed + count`) cannot overflow.
pub(crate) const MAX_INDEX: Index = u64::MAX / 2;

/// How far above every round seen a peer's round may be.
pub(crate) const MAX_ROUND_STEP: u64 = 1 << 32;

impl Core {
    /// A core for `cfg`, not yet started: send [`Event::Start`] first.
    pub fn new(cfg: Config) -> Result<Core, ConfigError> {
        cfg.validate()?;
        let mut voter_mask = 0u64;
        for (i, role) in cfg.nodes.iter().enumerate() {
            if *role != Role::Learner {
                voter_mask |= 1 << i;
            }
        }
        let witnessed = vec![None; cfg.nodes.len()];
        Ok(Core {
            witnessed,
            quorum: cfg.quorum_size(),
            voter_mask,
            cfg,
            started: false,
            now: 0,
            entropy: 0,
            promised: Ballot::ZERO,
            durable_promise: Ballot::ZERO,
            pending_promises: VecDeque::new(),
            max_round: 0,
            committed: 0,
            log: VecDeque::new(),
            next_ticket: 1,
            durable_ticket: 0,
            deferred: VecDeque::new(),
            lease_seen: None,
            quiet_until: 0,
            no_stand_until: 0,
            next_stand_at: 0,
            phase: Phase::Follower,
            known_master: None,
            commit_hint: (0, None),
            catch_up: None,
            catch_up_late: None,
            snapshot_pending: false,
            queue: VecDeque::new(),
            commit_dirty: false,
            applied: 0,
        })
    }

    /// Feeds one event at local monotonic time `now` with a fresh random word `entropy`,
    /// appending the resulting effects to `out`. Only start-up problems are errors; a bad
    /// message is logged and ignored.
    pub fn step(
        &mut self,
        now: Time,
        entropy: u64,
        event: Event,
        out: &mut Vec<Effect>,
    ) -> Result<(), StartError> {
        self.now = self.now.max(now);
        self.entropy = entropy;
        let (committed_before, promised_before) = (self.committed, self.promised);
        match event {
            Event::Start(recovered) => return self.start(recovered),
            Event::Propose { id, payload } => {
                if !self.started {
                    out.push(Effect::Reply {
                        id,
                        reply: Reply::NotMaster { master: None },
                    });
                    return Ok(());
                }
                self.propose(Proposal { id, payload }, out);
            }
            _ if !self.started => return Err(StartError::NotStarted),
            Event::Tick => self.tick(out),
            Event::Message { from, msg } => self.on_message(from, msg, out),
            Event::Durable { ticket } => self.on_durable(ticket, out),
            Event::CatchUpRead { peer, from, read } => self.on_catch_up_read(peer, from, read, out),
            Event::SnapshotInstalled { index } => self.on_snapshot_installed(index, out),
            Event::DropMaster => self.drop_master(out),
        }
        self.after_event(out);
        assert!(
            self.committed >= committed_before,
            "paxos core invariant: committed went back from {committed_before} to {}",
            self.committed
        );
        assert!(
            self.promised >= promised_before,
            "paxos core invariant: promise went back from {promised_before} to {}",
            self.promised
        );
        #[cfg(debug_assertions)]
        self.check_invariants();
        Ok(())
    }

    /// The invariants that are too costly to assert on every hot path, checked after every step
    /// in debug builds (tests, the simulator).
    #[cfg(debug_assertions)]
    fn check_invariants(&self) {
        assert!(self.durable_ticket < self.next_ticket);
        assert!(self.durable_promise <= self.promised);
        assert_eq!(self.applied, self.committed, "applied and committed differ");
        assert!(
            self.log.len() <= self.log_bound() + 1,
            "log of {} entries above the bound {}",
            self.log.len(),
            self.log_bound()
        );
        assert!(self.last_index() <= MAX_INDEX + self.log_bound() as u64);
        let mut previous = 0;
        for &(ticket, _) in &self.deferred {
            assert!(ticket >= previous, "deferred actions out of ticket order");
            assert!(ticket < self.next_ticket);
            previous = ticket;
        }
        for slot in &self.log {
            assert!(
                slot.ballot <= self.promised,
                "an entry accepted in {} above the promise {}",
                slot.ballot,
                self.promised
            );
            assert!(slot.ticket < self.next_ticket);
        }
        match &self.phase {
            Phase::Follower => {}
            Phase::Candidate(c) => {
                assert_eq!(c.ballot, self.promised, "a candidate below its promise");
                assert!(!c.reserved || c.ballot <= self.durable_promise);
            }
            Phase::Master(m) => {
                assert_eq!(m.ballot, self.promised, "a master below its promise");
                assert!(m.ballot <= self.durable_promise);
                assert!(self.log.iter().all(|s| s.ballot == m.ballot));
            }
        }
    }

    fn start(&mut self, rec: RecoveredState) -> Result<(), StartError> {
        if self.started {
            return Err(StartError::AlreadyStarted);
        }
        let max = self.log_bound();
        if rec.entries.len() > max {
            return Err(StartError::TooManyEntries {
                count: rec.entries.len(),
                max,
            });
        }
        let out_of_range = |what, value: u64, max: u64| {
            if value > max {
                Err(StartError::OutOfRange { what, value, max })
            } else {
                Ok(())
            }
        };
        out_of_range("committed index", rec.committed, MAX_INDEX)?;
        out_of_range("promised round", rec.promised.round, Ballot::MAX_ROUND)?;
        let mut promised = rec.promised;
        for (position, entry) in rec.entries.iter().enumerate() {
            out_of_range("entry ballot round", entry.ballot.round, Ballot::MAX_ROUND)?;
            let expected = rec.committed + 1 + position as u64;
            if entry.index != expected {
                return Err(StartError::Gap {
                    position,
                    found: entry.index,
                    expected,
                });
            }
            if !self.value_within_bounds(&entry.value) {
                return Err(StartError::OversizedValue { index: entry.index });
            }
            // Promise and entry may be written separately; an accepted ballot implies a promise.
            promised = promised.max(entry.ballot);
        }
        self.started = true;
        self.promised = promised;
        self.durable_promise = promised;
        self.max_round = promised.round;
        self.committed = rec.committed;
        self.applied = rec.committed;
        self.log = rec
            .entries
            .into_iter()
            .map(|e| Slot {
                ballot: e.ballot,
                value: e.value,
                ticket: 0,
                mine: false,
                acks: 0,
                first_sent: 0,
                last_sent: 0,
            })
            .collect();
        // It may have promised or accepted before it crashed: honour an unknown lease first.
        self.quiet_until = if self.cfg.sabotage().skip_startup_wait {
            self.now
        } else {
            self.now + self.cfg.slave_wait()
        };
        self.next_stand_at = self.quiet_until + self.stand_delay();
        tracing::debug!(me = %self.cfg.me, committed = self.committed, last = self.last_index(), "paxos core started");
        Ok(())
    }

    /// Work done after every event: flush queued proposals, announce commits.
    fn after_event(&mut self, out: &mut Vec<Effect>) {
        self.pump(out);
        if self.commit_dirty {
            self.commit_dirty = false;
            if let Phase::Master(m) = &self.phase {
                out.push(Effect::Broadcast(Message::Commit {
                    ballot: m.ballot,
                    committed: self.committed,
                }));
            }
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Message, out: &mut Vec<Effect>) {
        if from == self.cfg.me || self.cfg.role(from).is_none() {
            tracing::warn!(me = %self.cfg.me, peer = %from, "message from an unknown node ignored");
            return;
        }
        match msg {
            Message::Prepare { ballot, committed } => self.on_prepare(from, ballot, committed, out),
            Message::Promise { ballot, entries } => self.on_promise(from, ballot, entries, out),
            Message::PrepareRefused { ballot, reason } => {
                self.on_prepare_refused(from, ballot, reason, out);
            }
            Message::Accept {
                ballot,
                index,
                value,
                committed,
            } => self.on_accept(from, ballot, index, value, committed, out),
            Message::Accepted { ballot, index } => self.on_accepted(from, ballot, index, out),
            Message::AcceptRefused { ballot, promised } => {
                self.on_accept_refused(from, ballot, promised, out);
            }
            Message::Commit { ballot, committed } => self.on_commit(from, ballot, committed, out),
            Message::LeaseReleased { ballot } => self.on_lease_released(from, ballot),
            Message::CatchUpRequest { from: first } => self.on_catch_up_request(from, first, out),
            Message::CatchUpEntries {
                first,
                values,
                committed,
            } => self.on_catch_up_entries(from, first, values, committed, out),
            Message::CatchUpPruned { snapshot_index } => {
                self.on_catch_up_pruned(from, snapshot_index, out);
            }
        }
    }

    fn on_durable(&mut self, ticket: u64, out: &mut Vec<Effect>) {
        if ticket >= self.next_ticket {
            tracing::warn!(me = %self.cfg.me, ticket, "durable report for a ticket never issued ignored");
            return;
        }
        self.durable_ticket = self.durable_ticket.max(ticket);
        while let Some(&(t, ballot)) = self.pending_promises.front()
            && t <= self.durable_ticket
        {
            self.pending_promises.pop_front();
            self.durable_promise = self.durable_promise.max(ballot);
        }
        while self
            .deferred
            .front()
            .is_some_and(|(t, _)| *t <= self.durable_ticket)
        {
            if let Some((_, action)) = self.deferred.pop_front() {
                self.run_deferred(action, out);
            }
        }
    }

    fn run_deferred(&mut self, action: Deferred, out: &mut Vec<Effect>) {
        match action {
            Deferred::Send(to, msg) => out.push(Effect::Send { to, msg }),
            Deferred::SelfAccepted { ballot, index } => {
                let me = self.cfg.me;
                self.record_accepted(me, ballot, index, out);
            }
            Deferred::SelfPromised { ballot } => self.on_own_promise_durable(ballot, out),
        }
    }

    /// Issues a persist and returns its ticket.
    pub(crate) fn persist(
        &mut self,
        promise: Option<Ballot>,
        entries: Vec<LogEntry>,
        out: &mut Vec<Effect>,
    ) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        if let Some(b) = promise {
            assert!(
                b >= self.durable_promise,
                "paxos core invariant: persisting promise {b} below the durable {}",
                self.durable_promise
            );
            self.pending_promises.push_back((ticket, b));
        }
        assert!(
            entries.windows(2).all(|w| w[0].index + 1 == w[1].index),
            "paxos core invariant: a persist with non-contiguous entries"
        );
        out.push(Effect::Persist(Persist {
            ticket,
            promise,
            entries,
            committed: self.committed,
        }));
        ticket
    }

    /// Highest ticket issued so far (0: none).
    pub(crate) fn last_ticket(&self) -> u64 {
        self.next_ticket - 1
    }

    /// Runs `action` once `ticket` is durable (at once if it already is and nothing waits
    /// before it; otherwise in order behind what waits).
    pub(crate) fn after_durable(&mut self, ticket: u64, action: Deferred, out: &mut Vec<Effect>) {
        if ticket <= self.durable_ticket && self.deferred.is_empty() {
            self.run_deferred(action, out);
        } else {
            self.deferred
                .push_back((ticket.max(self.deferred.back().map_or(0, |b| b.0)), action));
        }
    }

    /// Bound on uncommitted entries held (log memory bound).
    pub(crate) fn log_bound(&self) -> usize {
        self.cfg.max_in_flight * 4 + 64
    }

    pub(crate) fn value_within_bounds(&self, value: &Value) -> bool {
        match value {
            Value::Master { node } => self.cfg.role(*node) == Some(Role::Voter),
            Value::Batch(items) => {
                !items.is_empty()
                    && items.len() <= self.cfg.max_batch_count
                    && value.payload_bytes() <= self.cfg.max_batch_bytes
            }
        }
    }

    /// Whether a ballot received from a peer is one the core can work with: it names a
    /// configured node and its round is at most [`Ballot::MAX_ROUND`] and at most
    /// `MAX_ROUND_STEP` above every round seen (so no peer drives rounds to the end of the
    /// range).
    pub(crate) fn ballot_in_range(&self, ballot: Ballot) -> bool {
        self.cfg.role(ballot.node).is_some()
            && ballot.round <= Ballot::MAX_ROUND
            && ballot.round <= self.max_round.saturating_add(MAX_ROUND_STEP)
    }

    /// Whether `node` votes (voter or witness).
    pub(crate) fn votes(&self, node: NodeId) -> bool {
        matches!(self.cfg.role(node), Some(Role::Voter | Role::Witness))
    }

    /// Highest index held.
    pub(crate) fn last_index(&self) -> Index {
        self.committed + self.log.len() as u64
    }

    pub(crate) fn slot(&self, index: Index) -> Option<&Slot> {
        let offset = index.checked_sub(self.committed + 1)?;
        self.log.get(usize::try_from(offset).ok()?)
    }

    pub(crate) fn slot_mut(&mut self, index: Index) -> Option<&mut Slot> {
        let offset = index.checked_sub(self.committed + 1)?;
        self.log.get_mut(usize::try_from(offset).ok()?)
    }

    /// Copies of the held entries above `index`, in order.
    pub(crate) fn entries_above(&self, index: Index) -> Vec<LogEntry> {
        let first = self.committed + 1;
        self.log
            .iter()
            .enumerate()
            .map(|(i, s)| (first + i as u64, s))
            .filter(|(i, _)| *i > index)
            .map(|(i, s)| LogEntry {
                index: i,
                ballot: s.ballot,
                value: s.value.clone(),
            })
            .collect()
    }

    /// The entries above `index` were rewritten by persist `ticket`: answers about them wait
    /// for it.
    pub(crate) fn retag_above(&mut self, index: Index, ticket: u64) {
        let first = self.committed + 1;
        for (i, slot) in self.log.iter_mut().enumerate() {
            if first + i as u64 > index {
                slot.ticket = ticket;
            }
        }
    }

    pub(crate) fn my_role(&self) -> Role {
        self.cfg.role(self.cfg.me).unwrap_or(Role::Learner)
    }

    /// Where `node` stands in the preferred-master order: its position in the list, the list's
    /// length for a node not in it (0 for everyone when no preference is configured).
    pub(crate) fn preferred_rank(&self, node: NodeId) -> usize {
        let preferred = &self.cfg.preferred_masters;
        preferred
            .iter()
            .position(|p| *p == node)
            .unwrap_or(preferred.len())
    }

    /// A fresh random delay before standing: jitter, plus a handicap that grows with the
    /// node's place in the preferred-master order (so the first preferred node that is up wins).
    pub(crate) fn stand_delay(&self) -> Time {
        let jitter = if self.cfg.election_jitter == 0 {
            0
        } else {
            self.entropy % self.cfg.election_jitter
        };
        let step = self.cfg.election_jitter + 2 * self.cfg.retransmit_interval;
        let rank = self.preferred_rank(self.cfg.me) as u64;
        jitter.saturating_add(step.saturating_mul(rank))
    }

    /// True while this node may answer consistent reads: it is the established master and its
    /// lease is valid by its own clock with the drift margin applied.
    #[must_use]
    pub fn can_serve_consistent_read(&self, now: Time) -> bool {
        match &self.phase {
            Phase::Master(m) if m.established => self.lease_valid(m, now),
            _ => false,
        }
    }

    pub(crate) fn lease_valid(&self, m: &Mastership, now: Time) -> bool {
        m.lease_start
            .is_some_and(|s| now < s.saturating_add(self.cfg.master_lease_window()))
    }

    /// Local time until which this node holds the master lease, if it is the established master.
    #[must_use]
    pub fn lease_expires(&self) -> Option<Time> {
        match &self.phase {
            Phase::Master(m) if m.established => m
                .lease_start
                .map(|s| s.saturating_add(self.cfg.master_lease_window())),
            _ => None,
        }
    }

    /// Whether this node is the established master (its lease may still have lapsed: use
    /// [`Core::can_serve_consistent_read`] for reads).
    #[must_use]
    pub fn is_master(&self) -> bool {
        matches!(&self.phase, Phase::Master(m) if m.established)
    }

    /// The master this node knows of.
    #[must_use]
    pub fn known_master(&self) -> Option<NodeId> {
        self.known_master
    }

    /// Committed index (everything up to it has been emitted as `Apply`).
    #[must_use]
    pub fn committed(&self) -> Index {
        self.committed
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The log index each other node was last seen to hold (Arakoon's `node_is`): from the
    /// accepts of the master we follow, or the acknowledgements of the nodes we lead. Nodes
    /// not heard from since start are left out; this node's own entry is the caller's (its
    /// store's applied index).
    pub fn witnessed(&self) -> impl Iterator<Item = (NodeId, Index)> + '_ {
        self.witnessed
            .iter()
            .enumerate()
            .filter_map(|(i, w)| Some((NodeId(u8::try_from(i).ok()?), (*w)?)))
    }

    /// Records that `node` holds index `index` (see [`Core::witnessed`]).
    pub(crate) fn witness(&mut self, node: NodeId, index: Index) {
        debug_assert!(
            index <= MAX_INDEX,
            "witnessed index {index} not range-checked"
        );
        if let Some(w) = self.witnessed.get_mut(node.index()) {
            *w = Some(index);
        }
    }

    /// What Arakoon's admin commands report.
    #[must_use]
    pub fn status(&self) -> Status {
        let role = if !self.started {
            NodeRole::Starting
        } else {
            match &self.phase {
                Phase::Follower => NodeRole::Follower,
                Phase::Candidate(_) => NodeRole::Candidate,
                Phase::Master(m) if m.established => NodeRole::Master,
                Phase::Master(_) => NodeRole::MasterElect,
            }
        };
        Status {
            role,
            master: self.known_master,
            promised: self.promised,
            committed: self.committed,
            last_index: self.last_index(),
            lease_expires: self.lease_expires(),
        }
    }

    pub(crate) fn is_forced_other(&self, node: NodeId) -> bool {
        matches!(self.cfg.mode, MasterMode::Forced(f) if f != node)
    }
}
