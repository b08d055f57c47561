//! The master: batches queued proposals into values, keeps a bounded pipeline of accepts in
//! flight, counts durable acceptances, renews its lease, steps down, and hands over.
//!
//! Invariants: at most `max_in_flight` values are uncommitted; the master counts itself toward
//! a quorum only once its own persist is durable; a client hears `Committed` only after a
//! quorum holds the value durably; the lease runs from the *send* time of an accept a quorum
//! accepted, so every slave's refusal window (which starts at its accept) outlasts it; every
//! accept is sent in a ballot this node durably promised (asserted: see `core` on ballot
//! reuse); when the master gives up its lease (drop master, preferred hand-over) it leaves
//! office first — `StoppedBeingMaster` and the role change precede, in the same effects, the
//! `LeaseReleased` broadcast — so it neither serves consistent reads nor takes proposals once
//! the message can be out.

use super::{Core, Deferred, Mastership, Phase, Slot};
use crate::io::{Effect, Reply};
use crate::message::Message;
use crate::types::{Ballot, Index, LogEntry, NodeId, Proposal, Value};

impl Core {
    pub(crate) fn propose(&mut self, proposal: Proposal, out: &mut Vec<Effect>) {
        let reply = match &self.phase {
            _ if self.cfg.mode == crate::config::MasterMode::ReadOnly => Some(Reply::ReadOnly),
            Phase::Master(_) => {
                if proposal.payload.len() > self.cfg.max_batch_bytes
                    || self.queue.len() >= self.cfg.max_queued_proposals
                {
                    Some(Reply::Overloaded)
                } else {
                    None
                }
            }
            _ => Some(Reply::NotMaster {
                master: self.known_master.filter(|m| *m != self.cfg.me),
            }),
        };
        match reply {
            Some(reply) => out.push(Effect::Reply {
                id: proposal.id,
                reply,
            }),
            None => self.queue.push_back(proposal),
        }
    }

    /// Turns queued proposals into values while the pipeline has room.
    pub(crate) fn pump(&mut self, out: &mut Vec<Effect>) {
        loop {
            let Phase::Master(m) = &self.phase else {
                return;
            };
            if !m.established || self.queue.is_empty() || self.log.len() >= self.cfg.max_in_flight {
                return;
            }
            let mut bytes = 0;
            let mut count = 0;
            for p in &self.queue {
                if count == self.cfg.max_batch_count
                    || (count > 0 && bytes + p.payload.len() > self.cfg.max_batch_bytes)
                {
                    break;
                }
                bytes += p.payload.len();
                count += 1;
            }
            let batch: Vec<Proposal> = self.queue.drain(..count).collect();
            self.append_value(Value::Batch(batch), true, out);
        }
    }

    /// Appends `value` in our ballot: persist, send, and count ourselves once durable.
    fn append_value(&mut self, value: Value, mine: bool, out: &mut Vec<Effect>) {
        let Phase::Master(m) = &mut self.phase else {
            return;
        };
        let ballot = m.ballot;
        m.last_proposed = self.now;
        let index = self.last_index() + 1;
        let ticket = self.persist(
            None,
            vec![LogEntry {
                index,
                ballot,
                value: value.clone(),
            }],
            out,
        );
        self.log.push_back(Slot {
            ballot,
            value,
            ticket,
            mine,
            acks: 0,
            first_sent: self.now,
            last_sent: self.now,
        });
        self.send_accept(index, out);
        self.self_accept_after(ticket, ballot, index, out);
    }

    pub(crate) fn send_accept(&mut self, index: Index, out: &mut Vec<Effect>) {
        let committed = self.committed;
        let now = self.now;
        let durable_promise = self.durable_promise;
        if let Some(slot) = self.slot_mut(index) {
            slot.last_sent = now;
            let ballot = slot.ballot;
            assert!(
                ballot <= durable_promise,
                "paxos core invariant: accept in {ballot} before its promise is durable ({durable_promise})"
            );
            // As an acceptor, the master honours its own lease: it refuses other candidates.
            self.observe_lease(ballot);
            let Some(slot) = self.slot(index) else {
                return;
            };
            out.push(Effect::Broadcast(Message::Accept {
                ballot: slot.ballot,
                index,
                value: slot.value.clone(),
                committed,
            }));
        }
    }

    pub(crate) fn self_accept_after(
        &mut self,
        ticket: u64,
        ballot: Ballot,
        index: Index,
        out: &mut Vec<Effect>,
    ) {
        if self.cfg.sabotage().count_self_before_durable {
            let me = self.cfg.me;
            self.record_accepted(me, ballot, index, out);
        } else {
            self.after_durable(ticket, Deferred::SelfAccepted { ballot, index }, out);
        }
    }

    pub(crate) fn on_accepted(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        index: Index,
        out: &mut Vec<Effect>,
    ) {
        // We only ever sent accepts up to our last index.
        if !self.votes(from) || index == 0 || index > self.last_index() {
            return;
        }
        if matches!(&self.phase, Phase::Master(m) if m.ballot == ballot) {
            self.witness(from, index);
        }
        self.record_accepted(from, ballot, index, out);
    }

    /// Counts a durable acceptance; renews the lease and commits on a quorum.
    pub(crate) fn record_accepted(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        index: Index,
        out: &mut Vec<Effect>,
    ) {
        let quorum = self.quorum;
        let voter_mask = self.voter_mask;
        let committed = self.committed;
        let Phase::Master(m) = &mut self.phase else {
            return;
        };
        if m.ballot != ballot {
            return;
        }
        if let Some(mi) = m.match_index.get_mut(from.index()) {
            *mi = (*mi).max(index);
        }
        let Some(offset) = index.checked_sub(committed + 1) else {
            return;
        };
        let Some(slot) = usize::try_from(offset)
            .ok()
            .and_then(|o| self.log.get_mut(o))
        else {
            return;
        };
        if slot.ballot != ballot {
            return;
        }
        slot.acks |= 1 << from.index();
        if (slot.acks & voter_mask).count_ones() as usize >= quorum {
            m.lease_start = Some(
                m.lease_start
                    .map_or(slot.first_sent, |s| s.max(slot.first_sent)),
            );
            self.advance_master_commit(out);
        }
    }

    fn advance_master_commit(&mut self, out: &mut Vec<Effect>) {
        loop {
            let Phase::Master(m) = &self.phase else {
                return;
            };
            let ready = self.log.front().is_some_and(|s| {
                s.ballot == m.ballot
                    && (s.acks & self.voter_mask).count_ones() as usize >= self.quorum
            });
            if !ready {
                return;
            }
            self.commit_front(out);
            self.commit_dirty = true;
            let index = self.committed;
            if let Phase::Master(m) = &mut self.phase
                && !m.established
                && index >= m.establishing_index
            {
                m.established = true;
                self.known_master = Some(self.cfg.me);
                tracing::info!(me = %self.cfg.me, ballot = %m.ballot, index, "became master");
                out.push(Effect::BecameMaster);
            }
        }
    }

    pub(crate) fn on_accept_refused(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        promised: Ballot,
        out: &mut Vec<Effect>,
    ) {
        if !self.votes(from) || !self.ballot_in_range(promised) {
            tracing::warn!(me = %self.cfg.me, peer = %from, %promised, "accept refusal with a ballot out of range ignored");
            return;
        }
        self.max_round = self.max_round.max(promised.round);
        if let Phase::Master(m) = &self.phase
            && m.ballot == ballot
            && promised > ballot
        {
            tracing::info!(me = %self.cfg.me, %ballot, %promised, "a higher ballot was promised: stepping down");
            self.step_down(out);
            // Still the lease holder in the acceptors' eyes: stand again at once, higher.
            self.next_stand_at = self.now;
        }
    }

    pub(crate) fn master_tick(&mut self, out: &mut Vec<Effect>) {
        let Phase::Master(m) = &self.phase else {
            return;
        };
        let expired = if m.established {
            !self.lease_valid(m, self.now)
        } else {
            self.now >= m.elected_at.saturating_add(self.cfg.slave_wait())
        };
        if expired {
            tracing::info!(me = %self.cfg.me, ballot = %m.ballot, "lease lost: stepping down");
            self.step_down(out);
            self.next_stand_at = self.now + self.stand_delay();
            return;
        }
        if m.established && self.now >= m.last_proposed.saturating_add(self.cfg.renew_after()) {
            self.append_value(Value::Master { node: self.cfg.me }, false, out);
        }
        let resend: Vec<Index> = self
            .log
            .iter()
            .enumerate()
            .filter(|(_, s)| self.now >= s.last_sent.saturating_add(self.cfg.retransmit_interval))
            .map(|(i, _)| self.committed + 1 + i as u64)
            .collect();
        for index in resend {
            self.send_accept(index, out);
        }
        self.maybe_hand_over(out);
    }

    /// Preferred masters, in order: a master hands over once a voter listed before it (any
    /// listed voter, for a master not in the list) is close.
    fn maybe_hand_over(&mut self, out: &mut Vec<Effect>) {
        let Phase::Master(m) = &self.phase else {
            return;
        };
        let rank = self.preferred_rank(self.cfg.me);
        if !m.established || rank == 0 {
            return;
        }
        let close = self.cfg.preferred_masters[..rank].iter().any(|p| {
            m.match_index.get(p.index()).is_some_and(|mi| {
                mi.saturating_add(self.cfg.preferred_handover_gap) >= self.last_index()
            })
        });
        if close {
            tracing::info!(me = %self.cfg.me, "handing over to a preferred master");
            self.drop_master(out);
        }
    }

    /// Arakoon's drop master: step down, release the lease, do not stand for one lease period.
    pub(crate) fn drop_master(&mut self, out: &mut Vec<Effect>) {
        let Phase::Master(m) = &self.phase else {
            return;
        };
        let ballot = m.ballot;
        // Leave office first (`StoppedBeingMaster`, role change): nothing that gives up the
        // lease may leave while this node still serves as master.
        self.step_down(out);
        assert!(
            !matches!(self.phase, Phase::Master(_)),
            "paxos core invariant: releasing the lease while still master"
        );
        // We no longer believe in our lease, so acceptors may forget it.
        out.push(Effect::Broadcast(Message::LeaseReleased { ballot }));
        self.forget_lease(ballot);
        self.no_stand_until = self.now.saturating_add(self.cfg.lease_period);
    }

    /// Leaves candidacy or office. In-flight proposals of ours get `Indeterminate`, queued ones
    /// (never proposed) `NotMaster`.
    pub(crate) fn step_down(&mut self, out: &mut Vec<Effect>) {
        let old = std::mem::replace(&mut self.phase, Phase::Follower);
        if let Phase::Master(Mastership { established, .. }) = old {
            if established {
                out.push(Effect::StoppedBeingMaster);
            }
            if self.known_master == Some(self.cfg.me) {
                self.known_master = None;
            }
            for slot in &mut self.log {
                if std::mem::take(&mut slot.mine)
                    && let Value::Batch(items) = &slot.value
                {
                    for p in items {
                        out.push(Effect::Reply {
                            id: p.id,
                            reply: Reply::Indeterminate,
                        });
                    }
                }
                slot.acks = 0;
            }
            for p in self.queue.drain(..) {
                out.push(Effect::Reply {
                    id: p.id,
                    reply: Reply::NotMaster { master: None },
                });
            }
        }
    }
}
