//! Learning what is chosen: committing and applying in index order, and catching up from a
//! peer (entries, or its head snapshot when it pruned them).
//!
//! Invariants: `committed` only grows; a follower commits its own entry at index `i` only when
//! the master of the entry's very ballot says `i` is committed (that ballot proposed exactly
//! one value at `i`); anything else is fetched as committed values from a peer. Catch-up
//! answers are served from the driver's log (`Effect::ServeCatchUp`), never from memory.
//! Values are applied strictly in index order (asserted), except for the jump to an installed
//! snapshot. A catch-up answer (`CatchUpEntries`, `CatchUpPruned`) is taken only from the peer
//! the outstanding request went to, and entries only from the index asked (an unprompted or
//! stale answer is ignored: otherwise any node, a learner too, could make a follower apply
//! values of its choosing). The one exception is the answer to the last request that timed
//! out, from the peer it went to and while it still starts at `committed + 1`: a peer slower
//! than the retransmit interval (a slow disk) must still be heard.

use super::Core;
use crate::config::Role;
use crate::io::{CatchUpRead, Effect, Reply};
use crate::message::Message;
use crate::types::{Ballot, Index, LogEntry, NodeId, ProposalId, Value};

impl Core {
    /// Commits the front slot and emits its apply and replies.
    pub(crate) fn commit_front(&mut self, out: &mut Vec<Effect>) {
        let Some(slot) = self.log.pop_front() else {
            return;
        };
        self.committed += 1;
        self.emit_committed(self.committed, slot.value, slot.mine, out);
    }

    fn emit_committed(&mut self, index: Index, value: Value, mine: bool, out: &mut Vec<Effect>) {
        let replies: Vec<ProposalId> = match &value {
            Value::Batch(items) if mine => items.iter().map(|p| p.id).collect(),
            _ => Vec::new(),
        };
        if let Value::Master { node } = value {
            self.known_master = Some(node);
        }
        assert!(
            index == self.applied + 1,
            "paxos core invariant: applying index {index} after {}",
            self.applied
        );
        self.applied = index;
        // Apply first: the driver answers a client from the store the value was applied to.
        if self.my_role() != Role::Witness {
            out.push(Effect::Apply { index, value });
        }
        for id in replies {
            out.push(Effect::Reply {
                id,
                reply: Reply::Committed { index },
            });
        }
    }

    /// Remembers the highest committed index a peer reported and who reported it; when the
    /// source was dropped (it did not answer a catch-up request), any peer reporting at least
    /// as much takes its place.
    pub(crate) fn note_commit_hint(&mut self, from: NodeId, committed: Index) {
        if committed > self.commit_hint.0
            || (self.commit_hint.1.is_none() && committed >= self.commit_hint.0)
        {
            self.commit_hint = (committed, Some(from));
        }
    }

    /// A `Commit` message: checked, then learnt.
    pub(crate) fn on_commit(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        committed: Index,
        out: &mut Vec<Effect>,
    ) {
        if self.cfg.role(from) != Some(Role::Voter)
            || ballot.node != from
            || !self.ballot_in_range(ballot)
            || committed > super::MAX_INDEX
        {
            tracing::warn!(me = %self.cfg.me, peer = %from, %ballot, committed, "malformed commit ignored");
            return;
        }
        self.learn_commit(from, ballot, committed, out);
    }

    /// A master (of `ballot`) says everything up to `master_committed` is chosen.
    pub(crate) fn learn_commit(
        &mut self,
        from: NodeId,
        ballot: Ballot,
        master_committed: Index,
        out: &mut Vec<Effect>,
    ) {
        if ballot.node != from {
            return;
        }
        self.note_commit_hint(from, master_committed);
        while self.committed < master_committed {
            match self.log.front() {
                Some(slot) if slot.ballot == ballot => self.commit_front(out),
                _ => break,
            }
        }
        if self.committed < master_committed {
            self.request_catch_up(from, out);
        }
    }

    /// Asks `peer` for committed entries after ours, unless a request is outstanding.
    pub(crate) fn request_catch_up(&mut self, peer: NodeId, out: &mut Vec<Effect>) {
        if self.catch_up.is_some() || self.snapshot_pending {
            return;
        }
        self.catch_up = Some((peer, self.now, self.committed + 1));
        out.push(Effect::Send {
            to: peer,
            msg: Message::CatchUpRequest {
                from: self.committed + 1,
            },
        });
    }

    pub(crate) fn on_catch_up_request(&mut self, peer: NodeId, from: Index, out: &mut Vec<Effect>) {
        if from == 0 || from > self.committed {
            return;
        }
        let up_to = self
            .committed
            .min(from.saturating_add(self.cfg.max_catch_up_entries - 1));
        out.push(Effect::ServeCatchUp { peer, from, up_to });
    }

    pub(crate) fn on_catch_up_read(
        &mut self,
        peer: NodeId,
        from: Index,
        read: CatchUpRead,
        out: &mut Vec<Effect>,
    ) {
        let msg = match read {
            CatchUpRead::Values(mut values) => {
                values
                    .truncate(usize::try_from(self.cfg.max_catch_up_entries).unwrap_or(usize::MAX));
                Message::CatchUpEntries {
                    first: from,
                    values,
                    committed: self.committed,
                }
            }
            CatchUpRead::Pruned { snapshot_index } => Message::CatchUpPruned { snapshot_index },
        };
        out.push(Effect::Send { to: peer, msg });
    }

    pub(crate) fn on_catch_up_entries(
        &mut self,
        from: NodeId,
        first: Index,
        values: Vec<Value>,
        peer_committed: Index,
        out: &mut Vec<Effect>,
    ) {
        // Only the answer to the outstanding request is taken: from the peer asked, from the
        // index asked. Duplicates, stale and unprompted answers are ignored (they would let any
        // node feed us values, and re-trigger requests: seed 241's storm).
        // A late answer to the last request that timed out is taken too, while it still
        // starts where we need it: otherwise a peer slower than the retransmit interval (a
        // slow disk) is asked again and again and never heard (whole-node simulator seed 365).
        let answers_request = self
            .catch_up
            .is_some_and(|(p, _, asked)| p == from && asked == first)
            || (self.catch_up_late == Some((from, first)) && first == self.committed + 1);
        if !answers_request {
            tracing::debug!(me = %self.cfg.me, peer = %from, first, "catch-up entries not asked for ignored");
            return;
        }
        let count = values.len() as u64;
        if first == 0
            || count > self.cfg.max_catch_up_entries
            || peer_committed > super::MAX_INDEX
            || first.saturating_add(count).saturating_sub(1) > peer_committed
            || !values.iter().all(|v| self.value_within_bounds(v))
        {
            tracing::warn!(me = %self.cfg.me, peer = %from, first, count, "invalid catch-up answer ignored");
            return;
        }
        self.catch_up = None;
        self.catch_up_late = None;
        if matches!(self.phase, super::Phase::Master(_)) {
            // A master is never behind a quorum; it does not take entries from elsewhere.
            return;
        }
        self.note_commit_hint(from, peer_committed);
        let mut fresh = Vec::new();
        for (i, value) in values.into_iter().enumerate() {
            // `first` was `committed + 1` when asked; we may have learnt some since.
            let index = first.saturating_add(i as u64);
            if index != self.committed + 1 {
                continue;
            }
            self.log.pop_front();
            self.committed = index;
            fresh.push(LogEntry {
                index,
                ballot: Ballot::ZERO,
                value,
            });
        }
        let progressed = !fresh.is_empty();
        // Ask for the next range before the applies: the driver executes effects in order and
        // applying a large answer takes a while, so the peer reads and sends the next answer
        // while this node applies this one (ADR 0190). Only `committed` decides what is asked,
        // and it is final here; the answer is an event, handled after these effects.
        if progressed
            && self.committed < self.commit_hint.0
            && let Some(peer) = self.commit_hint.1
        {
            self.request_catch_up(peer, out);
        }
        for entry in &fresh {
            self.emit_committed(entry.index, entry.value.clone(), false, out);
        }
        if progressed {
            // Keep the contiguous-to-the-end contract of Persist: rewrite what we still hold.
            let committed = self.committed;
            fresh.extend(self.entries_above(committed));
            let ticket = self.persist(None, fresh, out);
            self.retag_above(committed, ticket);
        }
    }

    pub(crate) fn on_catch_up_pruned(
        &mut self,
        from: NodeId,
        snapshot_index: Index,
        out: &mut Vec<Effect>,
    ) {
        // Only the peer asked may send us to its snapshot.
        if self.catch_up.is_none_or(|(p, _, _)| p != from) {
            tracing::debug!(me = %self.cfg.me, peer = %from, snapshot_index, "catch-up pruned answer not asked for ignored");
            return;
        }
        if snapshot_index > super::MAX_INDEX {
            tracing::warn!(me = %self.cfg.me, peer = %from, snapshot_index, "catch-up pruned answer out of range ignored");
            return;
        }
        self.catch_up = None;
        if snapshot_index > self.committed
            && !self.snapshot_pending
            && !matches!(self.phase, super::Phase::Master(_))
        {
            self.snapshot_pending = true;
            out.push(Effect::FetchSnapshot { peer: from });
        }
    }

    pub(crate) fn on_snapshot_installed(&mut self, index: Index, out: &mut Vec<Effect>) {
        self.snapshot_pending = false;
        if index > super::MAX_INDEX {
            tracing::error!(me = %self.cfg.me, index, "installed snapshot index out of range; not adopted");
            return;
        }
        if index <= self.committed {
            tracing::warn!(me = %self.cfg.me, index, committed = self.committed, "installed snapshot is not ahead of the committed index; nothing to adopt");
            return;
        }
        // The driver's store already reflects `index`: follow it whatever our role. A
        // candidate or master-elect that was behind steps down first (seed 3190: a
        // master-elect ignored the install and then applied entries the snapshot held).
        if !matches!(self.phase, super::Phase::Follower) {
            self.step_down(out);
            self.next_stand_at = self.now + self.stand_delay();
        }
        let drop = usize::try_from(index - self.committed).unwrap_or(usize::MAX);
        self.log.drain(..drop.min(self.log.len()));
        self.committed = index;
        self.applied = index;
        self.persist(None, Vec::new(), out);
        if self.committed < self.commit_hint.0
            && let Some(peer) = self.commit_hint.1
        {
            self.request_catch_up(peer, out);
        }
    }
}
