//! The acceptor: answers prepares and accepts, persisting before answering, and keeps
//! Arakoon's lease rule — it refuses to promise to another candidate while the lease it saw last
//! (or its own start-up wait) is still running.
//!
//! Invariants: `promised` never decreases; an entry is accepted only in a ballot at least the
//! promise; entries are accepted in index order (no gaps) so the log stays contiguous; every
//! answer leaves only after the persist it depends on is durable; at most one value is held per
//! (ballot, index): an accept for a held (ballot, index) with another value breaks the
//! proposer's side of that rule, so it is refused (never answered `Accepted`, never persisted,
//! its commit not learnt) and logged as an error. A lease is forgotten on `LeaseReleased` only
//! when its holder (the ballot's own node) sends it.

use super::{Core, Deferred, LeaseSeen, Phase, Slot};
use crate::config::{MasterMode, Role};
use crate::io::Effect;
use crate::message::{Message, PrepareRefusal};
use crate::types::{Ballot, Index, LogEntry, NodeId, Value};

impl Core {
    /// Why this acceptor would not promise to `candidate` right now, if it would not.
    pub(crate) fn lease_refusal(&self, candidate: NodeId) -> Option<PrepareRefusal> {
        if self.is_forced_other(candidate) {
            return Some(PrepareRefusal::LeaseActive {
                holder: match self.cfg.mode {
                    MasterMode::Forced(f) => Some(f),
                    _ => None,
                },
            });
        }
        if matches!(self.cfg.mode, MasterMode::Forced(_)) {
            // The forced master is the only candidate: no lease to protect from others.
            return None;
        }
        if self.now < self.quiet_until {
            return Some(PrepareRefusal::LeaseActive { holder: None });
        }
        match self.lease_seen {
            Some(seen)
                if seen.ballot.node != candidate
                    && self.now < seen.at.saturating_add(self.cfg.slave_wait()) =>
            {
                Some(PrepareRefusal::LeaseActive {
                    holder: Some(seen.ballot.node),
                })
            }
            _ => None,
        }
    }

    /// Records an accept of `ballot` seen now as lease evidence, unless a lease of a higher
    /// ballot is still running (found by the simulator, seed 2221: a paused old master's
    /// retransmitted accepts displaced the live master's lease and let the old master be
    /// re-elected under it). Returns whether it was recorded.
    pub(crate) fn observe_lease(&mut self, ballot: Ballot) -> bool {
        let keep_current = self.lease_seen.is_some_and(|seen| {
            ballot < seen.ballot && self.now < seen.at.saturating_add(self.cfg.slave_wait())
        });
        if !keep_current {
            self.lease_seen = Some(LeaseSeen {
                ballot,
                at: self.now,
            });
        }
        !keep_current
    }

    pub(crate) fn on_prepare(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        candidate_committed: Index,
        out: &mut Vec<Effect>,
    ) {
        if self.my_role() == Role::Learner {
            return;
        }
        if ballot.node != from || self.cfg.role(from) != Some(Role::Voter) {
            tracing::warn!(me = %self.cfg.me, peer = %from, %ballot, "prepare from a node that may not stand ignored");
            return;
        }
        if ballot.round == 0
            || !self.ballot_in_range(ballot)
            || candidate_committed > super::MAX_INDEX
        {
            tracing::warn!(me = %self.cfg.me, peer = %from, %ballot, max_round = self.max_round, "prepare with a ballot out of range ignored");
            return;
        }
        self.max_round = self.max_round.max(ballot.round);
        let refuse = |reason| Message::PrepareRefused { ballot, reason };
        if ballot < self.promised {
            out.push(Effect::Send {
                to: from,
                msg: refuse(PrepareRefusal::Promised(self.promised)),
            });
            return;
        }
        if let Some(reason) = self.lease_refusal(from) {
            out.push(Effect::Send {
                to: from,
                msg: refuse(reason),
            });
            return;
        }
        if candidate_committed < self.committed {
            out.push(Effect::Send {
                to: from,
                msg: refuse(PrepareRefusal::Behind {
                    committed: self.committed,
                }),
            });
            return;
        }
        let ticket = if ballot > self.promised {
            self.promised = ballot;
            self.leave_office_for(ballot, out);
            self.persist(Some(ballot), Vec::new(), out)
        } else {
            // A retransmitted prepare for the ballot already promised: promise again.
            self.last_ticket()
        };
        let entries = self
            .log
            .iter()
            .enumerate()
            .map(|(i, s)| LogEntry {
                index: self.committed + 1 + i as u64,
                ballot: s.ballot,
                value: s.value.clone(),
            })
            .filter(|e| e.index > candidate_committed)
            .collect();
        self.after_durable(
            ticket,
            Deferred::Send(from, Message::Promise { ballot, entries }),
            out,
        );
    }

    /// A higher ballot was promised or accepted: a candidate or master of a lower one steps down.
    pub(crate) fn leave_office_for(&mut self, ballot: Ballot, out: &mut Vec<Effect>) {
        let lower = match &self.phase {
            Phase::Follower => false,
            Phase::Candidate(c) => c.ballot < ballot,
            Phase::Master(m) => m.ballot < ballot,
        };
        if lower {
            self.step_down(out);
        }
    }

    pub(crate) fn on_accept(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        index: Index,
        value: Value,
        master_committed: Index,
        out: &mut Vec<Effect>,
    ) {
        // A master only sends accepts for indexes above its committed index.
        if ballot.node != from
            || self.cfg.role(from) != Some(Role::Voter)
            || index == 0
            || index > super::MAX_INDEX
            || master_committed >= index
            || ballot.round == 0
            || !self.ballot_in_range(ballot)
        {
            tracing::warn!(me = %self.cfg.me, peer = %from, %ballot, index, master_committed, "malformed accept ignored");
            return;
        }
        if !self.value_within_bounds(&value) {
            tracing::warn!(me = %self.cfg.me, peer = %from, index, "accept with a value outside the batch bounds ignored");
            return;
        }
        self.witness(from, index);
        self.max_round = self.max_round.max(ballot.round);
        let learner = self.my_role() == Role::Learner;
        // Any accept, even one we must refuse, shows its owner believes it is master: honour
        // its lease too, so we do not stand against a live master. (Only a lease we helped
        // build needs honouring for safety; `observe_lease` never lets a stale, lower ballot
        // displace one that is still running.)
        if self.observe_lease(ballot) {
            self.next_stand_at = self.now + self.cfg.slave_wait() + self.stand_delay();
            if ballot.node != self.cfg.me {
                self.known_master = Some(ballot.node);
            }
        }
        if ballot < self.promised {
            if !learner {
                out.push(Effect::Send {
                    to: from,
                    msg: Message::AcceptRefused {
                        ballot,
                        promised: self.promised,
                    },
                });
            }
            return;
        }
        if index > self.last_index() + 1
            || self.log.len() >= self.log_bound() && index > self.last_index()
        {
            // A gap (we missed entries) or too far ahead: fetch committed entries first.
            self.note_commit_hint(from, master_committed);
            self.request_catch_up(from, out);
            return;
        }
        let raised = ballot > self.promised;
        if raised {
            self.promised = ballot;
            self.leave_office_for(ballot, out);
        }
        let ticket = if index <= self.committed {
            // Already chosen here; the master re-proposes the same chosen value.
            self.last_ticket()
        } else if let Some(slot) = self.slot(index).filter(|s| s.ballot == ballot) {
            if slot.value != value {
                // The proposer sent two values for one (ballot, index): answering would let two
                // values be chosen at one index. Refuse it, and do not learn its commit either.
                tracing::error!(me = %self.cfg.me, peer = %from, %ballot, index, "protocol violation: a second, different value for an index already accepted in this ballot; refused");
                return;
            }
            slot.ticket
        } else {
            let mut entries = vec![LogEntry {
                index,
                ballot,
                value: value.clone(),
            }];
            // Overwriting inside the log: rewrite the tail too, so a driver whose log can only
            // truncate-and-append keeps every accepted entry above `index` (see Persist).
            entries.extend(self.entries_above(index));
            let ticket = self.persist(raised.then_some(ballot), entries, out);
            let slot = Slot {
                ballot,
                value,
                ticket,
                mine: false,
                acks: 0,
                first_sent: 0,
                last_sent: 0,
            };
            if let Some(existing) = self.slot_mut(index) {
                *existing = slot;
            } else {
                self.log.push_back(slot);
            }
            self.retag_above(index, ticket);
            ticket
        };
        if !learner {
            self.after_durable(
                ticket,
                Deferred::Send(from, Message::Accepted { ballot, index }),
                out,
            );
        }
        self.learn_commit(from, ballot, master_committed, out);
    }

    /// A peer says the master of `ballot` gave up its lease: only that master may say so.
    pub(crate) fn on_lease_released(&mut self, from: NodeId, ballot: Ballot) {
        if ballot.node != from {
            tracing::warn!(me = %self.cfg.me, peer = %from, %ballot, "lease release for a ballot the sender does not own ignored");
            return;
        }
        self.forget_lease(ballot);
    }

    /// Forgets the lease of `ballot` if it is the one honoured.
    pub(crate) fn forget_lease(&mut self, ballot: Ballot) {
        if self.lease_seen.is_some_and(|seen| seen.ballot == ballot) {
            self.lease_seen = None;
            self.next_stand_at = self.now + self.stand_delay();
            if self.known_master == Some(ballot.node) {
                self.known_master = None;
            }
        }
    }
}
