//! Timers and elections: when a follower may stand, phase 1 as a candidate, and taking office.
//!
//! Invariants: a node stands only as a voter in elected mode (or as the forced master), never
//! during its start-up wait, its drop-master pause, or while the lease it saw last runs; a new
//! ballot is always above every round seen, including every round this node promised durably,
//! so above every ballot it used before any crash; taking office re-proposes, in the new ballot,
//! the highest-ballot value reported for every index above the candidate's committed index,
//! then the candidate's own `Master` value.
//!
//! A ballot is never used twice, across any crash: `stand` persists the promise of the new
//! ballot and sends nothing; only once that persist is durable does the candidate broadcast
//! `Prepare` (and retransmit it), so no peer can promise it, it cannot take office, and no
//! accept in that ballot can exist, before a restart would recover the ballot and pick a higher
//! one. (Before this rule a candidate took office on the others' promises while its own promise
//! was still in flight; a crash then let it stand again with the same ballot and propose a
//! different value at an index an acceptor already held in that ballot — the ballot-reuse-after-crash bug, ADR 0100.) Promises are
//! counted only for the candidacy's ballot once its prepare went out, and only if their entries
//! are exactly the contiguous run from the candidacy's base up, within the log bound.

use super::{Candidacy, Core, Deferred, Mastership, Phase, Slot};
use crate::config::{MasterMode, Role};
use crate::io::Effect;
use crate::message::{Message, PrepareRefusal};
use crate::types::{Ballot, Index, LogEntry, NodeId, Value};

impl Core {
    pub(crate) fn tick(&mut self, out: &mut Vec<Effect>) {
        if let Some((peer, sent, asked)) = self.catch_up
            && self.now >= sent.saturating_add(self.cfg.retransmit_interval)
        {
            self.catch_up = None;
            self.catch_up_late = Some((peer, asked));
            // No answer: the peer may not hear us (a one-way partition). Stop asking it by
            // default; the next node that shows it is at least as far ahead (an accept, a
            // commit, a refusal) becomes the source, which may be that peer again.
            if self.commit_hint.1 == Some(peer) {
                self.commit_hint.1 = None;
            }
        }
        if self.commit_hint.0 > self.committed
            && let Some(peer) = self.commit_hint.1
        {
            self.request_catch_up(peer, out);
        }
        match &self.phase {
            Phase::Follower => {
                if self.may_stand() {
                    self.stand(out);
                }
            }
            Phase::Candidate(_) => self.candidate_tick(out),
            Phase::Master(_) => self.master_tick(out),
        }
    }

    fn may_stand(&self) -> bool {
        let eligible = match self.cfg.mode {
            MasterMode::Elected => self.my_role() == Role::Voter,
            MasterMode::ReadOnly => false,
            MasterMode::Forced(f) => f == self.cfg.me,
        };
        let lease_over = matches!(self.cfg.mode, MasterMode::Forced(_))
            || self.lease_seen.is_none_or(|s| {
                s.ballot.node == self.cfg.me
                    || self.now >= s.at.saturating_add(self.cfg.slave_wait())
            });
        eligible
            && lease_over
            && !self.snapshot_pending
            && self.now >= self.quiet_until
            && self.now >= self.no_stand_until
            && self.now >= self.next_stand_at
    }

    /// Starts phase 1 with a ballot above every round seen. Only the promise persist leaves the
    /// core now; the prepare follows once it is durable (`on_own_promise_durable`).
    fn stand(&mut self, out: &mut Vec<Effect>) {
        let Some(round) = self
            .max_round
            .max(self.promised.round)
            .checked_add(1)
            .filter(|r| *r <= Ballot::MAX_ROUND)
        else {
            tracing::error!(me = %self.cfg.me, max_round = self.max_round, "ballot rounds exhausted: cannot stand");
            self.next_stand_at = self.now.saturating_add(self.cfg.slave_wait());
            return;
        };
        self.max_round = round;
        let ballot = Ballot {
            round,
            node: self.cfg.me,
        };
        tracing::debug!(me = %self.cfg.me, %ballot, committed = self.committed, "standing for master");
        self.promised = ballot;
        self.phase = Phase::Candidate(Candidacy {
            ballot,
            promises: 0,
            base: self.committed,
            found: Vec::new(),
            reserved: false,
            started: self.now,
            last_sent: self.now,
        });
        let ticket = self.persist(Some(ballot), Vec::new(), out);
        self.after_durable(ticket, Deferred::SelfPromised { ballot }, out);
    }

    /// The candidate's own promise is durable: a crash now recovers it, so the ballot is
    /// reserved for this candidacy. Only now does anything in it leave the node.
    pub(crate) fn on_own_promise_durable(&mut self, ballot: Ballot, out: &mut Vec<Effect>) {
        assert!(
            self.durable_promise >= ballot,
            "paxos core invariant: own promise {ballot} reported durable but the durable promise is {}",
            self.durable_promise
        );
        let now = self.now;
        let Phase::Candidate(c) = &mut self.phase else {
            return;
        };
        if c.ballot != ballot {
            return;
        }
        c.reserved = true;
        // The election runs from now: a slow disk must not eat the candidacy's time.
        c.started = now;
        c.last_sent = now;
        let base = c.base;
        out.push(Effect::Broadcast(Message::Prepare {
            ballot,
            committed: base,
        }));
        let me = self.cfg.me;
        self.record_promise(me, ballot, Vec::new(), out);
    }

    fn candidate_tick(&mut self, out: &mut Vec<Effect>) {
        let Phase::Candidate(c) = &mut self.phase else {
            return;
        };
        if self.now >= c.started.saturating_add(self.cfg.slave_wait()) {
            tracing::debug!(me = %self.cfg.me, ballot = %c.ballot, "election timed out");
            self.phase = Phase::Follower;
            self.next_stand_at = self.now + self.stand_delay();
            return;
        }
        if c.base < self.committed && self.catch_up.is_none() && !self.snapshot_pending {
            // Caught up while standing: every acceptor ahead of `base` answers this candidacy's
            // prepare with `Behind`, so waiting for its timeout only delays the election (in
            // forced mode nobody else may stand: simulator seed 107). Stand again, from the
            // committed index we have now.
            tracing::debug!(me = %self.cfg.me, ballot = %c.ballot, base = c.base, committed = self.committed, "caught up while standing: standing again");
            self.phase = Phase::Follower;
            self.next_stand_at = self.now;
            if self.may_stand() {
                self.stand(out);
            }
            return;
        }
        if c.reserved && self.now >= c.last_sent.saturating_add(self.cfg.retransmit_interval) {
            c.last_sent = self.now;
            out.push(Effect::Broadcast(Message::Prepare {
                ballot: c.ballot,
                committed: c.base,
            }));
        }
    }

    pub(crate) fn on_promise(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        entries: Vec<LogEntry>,
        out: &mut Vec<Effect>,
    ) {
        if !self.votes(from) {
            return;
        }
        // Only a promise for our current candidacy, once its prepare went out, counts: the
        // entries are checked against that candidacy's base.
        let Phase::Candidate(c) = &self.phase else {
            return;
        };
        if c.ballot != ballot || !c.reserved {
            return;
        }
        if entries.len() > self.log_bound() {
            tracing::warn!(me = %self.cfg.me, peer = %from, count = entries.len(), "promise with too many entries ignored");
            return;
        }
        // An acceptor reports its entries above our committed index, contiguous: exactly
        // `base + 1, base + 2, ...`.
        let mut expected = c.base.saturating_add(1);
        for e in &entries {
            if e.index != expected
                || e.ballot >= ballot
                || !self.ballot_in_range(e.ballot)
                || !self.value_within_bounds(&e.value)
            {
                tracing::warn!(me = %self.cfg.me, peer = %from, index = e.index, expected, "promise with an invalid entry ignored");
                return;
            }
            expected = expected.saturating_add(1);
        }
        self.record_promise(from, ballot, entries, out);
    }

    /// Counts a promise (own ones arrive here once durable; peers' ones validated by
    /// `on_promise`) and takes office on a quorum.
    pub(crate) fn record_promise(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        entries: Vec<LogEntry>,
        out: &mut Vec<Effect>,
    ) {
        let catching_up = matches!(&self.phase, Phase::Candidate(c) if c.base != self.committed);
        let bound = self.log_bound();
        // Own entries count only while we are where we stood: once catch-up committed more,
        // `take_office` stands again anyway.
        let own_entries: Vec<(Index, Ballot, Value)> = if from == self.cfg.me && !catching_up {
            self.log
                .iter()
                .enumerate()
                .map(|(i, s)| (self.committed + 1 + i as u64, s.ballot, s.value.clone()))
                .collect()
        } else {
            Vec::new()
        };
        let Phase::Candidate(c) = &mut self.phase else {
            return;
        };
        if c.ballot != ballot || c.promises & (1 << from.index()) != 0 {
            return;
        }
        c.promises |= 1 << from.index();
        let reported = own_entries
            .into_iter()
            .chain(entries.into_iter().map(|e| (e.index, e.ballot, e.value)));
        for (index, b, value) in reported {
            // Validated upstream (peers) or our own contiguous log: always within the bound.
            let Some(offset) = index
                .checked_sub(c.base.saturating_add(1))
                .and_then(|o| usize::try_from(o).ok())
                .filter(|o| *o <= bound)
            else {
                tracing::error!(me = %self.cfg.me, index, "promise entry outside the candidacy's range skipped");
                continue;
            };
            if c.found.len() <= offset {
                c.found.resize(offset + 1, None);
            }
            let keep = c.found[offset].as_ref().is_none_or(|(old, _)| b > *old);
            if keep {
                c.found[offset] = Some((b, value));
            }
        }
        if (c.promises & self.voter_mask).count_ones() as usize >= self.quorum {
            self.take_office(out);
        }
    }

    /// Phase 1 succeeded: re-propose what may have been chosen, then our own `Master` value.
    fn take_office(&mut self, out: &mut Vec<Effect>) {
        let Phase::Candidate(c) = std::mem::replace(&mut self.phase, Phase::Follower) else {
            return;
        };
        if c.base != self.committed || self.snapshot_pending {
            // Committed more (catch-up) while standing, or a snapshot is on its way: stand
            // again once up to date.
            self.next_stand_at = self.now + self.cfg.retransmit_interval;
            return;
        }
        let ballot = c.ballot;
        assert!(
            c.reserved && ballot <= self.durable_promise,
            "paxos core invariant: taking office in {ballot} before its promise is durable (durable: {})",
            self.durable_promise
        );
        let mut values: Vec<Value> = Vec::with_capacity(c.found.len() + 1);
        for found in c.found {
            match found {
                Some((_, v)) => values.push(v),
                // Cannot happen (acceptor logs are contiguous); stop before a hole to stay safe.
                None => break,
            }
        }
        values.push(Value::Master { node: self.cfg.me });
        tracing::debug!(me = %self.cfg.me, %ballot, reproposed = values.len() - 1, "elected, establishing term");
        let first = self.committed + 1;
        let entries: Vec<LogEntry> = values
            .iter()
            .enumerate()
            .map(|(i, v)| LogEntry {
                index: first + i as u64,
                ballot,
                value: v.clone(),
            })
            .collect();
        let establishing_index = first + values.len() as u64 - 1;
        let ticket = self.persist(None, entries, out);
        self.log.clear();
        for value in values {
            self.log.push_back(Slot {
                ballot,
                value,
                ticket,
                mine: false,
                acks: 0,
                first_sent: self.now,
                last_sent: self.now,
            });
        }
        self.phase = Phase::Master(Mastership {
            ballot,
            established: false,
            elected_at: self.now,
            establishing_index,
            lease_start: None,
            last_proposed: self.now,
            match_index: vec![0; self.cfg.nodes.len()],
        });
        for index in first..=establishing_index {
            self.send_accept(index, out);
            self.self_accept_after(ticket, ballot, index, out);
        }
    }

    pub(crate) fn on_prepare_refused(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        reason: PrepareRefusal,
        out: &mut Vec<Effect>,
    ) {
        if !self.votes(from) {
            return;
        }
        let Phase::Candidate(c) = &self.phase else {
            return;
        };
        if c.ballot != ballot || !c.reserved {
            return;
        }
        match reason {
            PrepareRefusal::Promised(higher) => {
                if !self.ballot_in_range(higher) {
                    tracing::warn!(me = %self.cfg.me, peer = %from, %higher, "prepare refusal with a ballot out of range ignored");
                    return;
                }
                if higher > ballot {
                    self.max_round = self.max_round.max(higher.round);
                    self.phase = Phase::Follower;
                    self.next_stand_at = self.now + self.stand_delay();
                }
            }
            PrepareRefusal::LeaseActive { .. } => {
                // Others may still promise; the candidacy times out otherwise.
            }
            PrepareRefusal::Behind { committed } if committed > super::MAX_INDEX => {
                tracing::warn!(me = %self.cfg.me, peer = %from, committed, "prepare refusal with an index out of range ignored");
            }
            PrepareRefusal::Behind { committed } => {
                // Fetch what we miss but keep standing: the others may still promise, and if
                // catch-up commits more, taking office starts over with a fresh candidacy.
                // (Abandoning and restanding at once made several lagging candidates pre-empt
                // each other for ever: seed 858, behind a witness that was ahead of them all.)
                if committed > self.committed {
                    self.note_commit_hint(from, committed);
                    self.request_catch_up(from, out);
                }
            }
        }
    }
}
