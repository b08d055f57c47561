//! A linearizability checker for histories of Arakoon-style key-value operations (a register
//! per key with get / set / delete / test-and-set), reusable by black-box tests of the node.
//!
//! Histories are split per key (operations on different keys commute, so the history is
//! linearizable iff every per-key sub-history is). Each sub-history is searched depth-first in
//! the style of Wing & Gong / Lowe / Porcupine: at each point, any pending operation whose
//! invocation precedes the earliest outstanding response may be linearized next; states already
//! explored (set of linearized operations plus register value) are cached. Operations whose
//! outcome is unknown (the client timed out, or the master stepped down) have no response time:
//! they may take effect at any point after their invocation, or never. The search stops after a
//! step limit and then reports [`Verdict::Unknown`] rather than guessing.
//!
//! Pure code: no clock, no I/O, deterministic (no `HashMap` iteration decides anything).

use std::collections::{BTreeMap, BTreeSet, HashSet};

/// An operation on one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KvOp {
    /// Read the value.
    Get,
    /// Write a value.
    Set(Vec<u8>),
    /// Remove the key (Arakoon: fails with `NotFound` when absent).
    Delete,
    /// Arakoon's `test_and_set`: if the current value equals `expected` (`None`: absent), set it
    /// to `new` (`None`: delete). Always returns the value found before.
    TestAndSet {
        /// Value expected.
        expected: Option<Vec<u8>>,
        /// Value to store.
        new: Option<Vec<u8>>,
    },
}

/// The outcome a client observed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KvResult {
    /// `Set` succeeded, or `Delete` removed an existing key.
    Ok,
    /// `Get` or `Delete` found no value.
    NotFound,
    /// `Get` found this value, or `TestAndSet` found this (possibly absent) value.
    Value(Option<Vec<u8>>),
}

/// One operation of a history, with real-time bounds (any monotonic unit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryOp {
    /// The key.
    pub key: Vec<u8>,
    /// What was asked.
    pub op: KvOp,
    /// When it was invoked.
    pub invoked: u64,
    /// When the answer arrived and what it was; `None` when unknown (may or may not have
    /// taken effect).
    pub completed: Option<(u64, KvResult)>,
}

/// The checker's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's history is linearizable.
    Linearizable,
    /// This key's history is not: no order of its operations explains the results.
    NotLinearizable {
        /// The key.
        key: Vec<u8>,
        /// Its operations, for the report.
        ops: Vec<HistoryOp>,
    },
    /// The step limit was reached for this key before a verdict.
    Unknown {
        /// The key.
        key: Vec<u8>,
    },
}

/// Applies `op` to a register holding `state`; returns the new state and the result.
#[must_use]
pub fn apply(state: &Option<Vec<u8>>, op: &KvOp) -> (Option<Vec<u8>>, KvResult) {
    match op {
        KvOp::Get => (
            state.clone(),
            match state {
                Some(v) => KvResult::Value(Some(v.clone())),
                None => KvResult::NotFound,
            },
        ),
        KvOp::Set(v) => (Some(v.clone()), KvResult::Ok),
        KvOp::Delete => match state {
            Some(_) => (None, KvResult::Ok),
            None => (None, KvResult::NotFound),
        },
        KvOp::TestAndSet { expected, new } => {
            let found = state.clone();
            let next = if *state == *expected {
                new.clone()
            } else {
                state.clone()
            };
            (next, KvResult::Value(found))
        }
    }
}

/// Checks `history` (all keys start absent), spending at most `step_limit` search steps per key.
#[must_use]
pub fn check(history: &[HistoryOp], step_limit: u64) -> Verdict {
    let mut per_key: BTreeMap<&[u8], Vec<&HistoryOp>> = BTreeMap::new();
    for op in history {
        per_key.entry(&op.key).or_default().push(op);
    }
    for (key, ops) in per_key {
        match check_key(&ops, step_limit) {
            Some(true) => {}
            Some(false) => {
                return Verdict::NotLinearizable {
                    key: key.to_vec(),
                    ops: ops.into_iter().cloned().collect(),
                };
            }
            None => return Verdict::Unknown { key: key.to_vec() },
        }
    }
    Verdict::Linearizable
}

/// Per-operation keys of the Zobrist hash of a set of linearized operations.
fn zobrist_key(i: usize) -> u64 {
    let mut z = (i as u64)
        .wrapping_add(1)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Search state. Operations not yet linearized form a doubly linked list in invocation order
/// (Lowe's "dancing links"), so finding candidates costs only the operations concurrent with
/// the earliest pending response; the stack is explicit (histories can hold tens of thousands
/// of operations per key). Explored configurations are cached as (Zobrist hash of the
/// linearized set, register value): a 64-bit hash collision could only make the checker
/// report a violation that is not there, never hide one.
struct Search<'a> {
    ops: Vec<&'a HistoryOp>,
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Completed operations not yet linearized, by response time.
    open: BTreeSet<(u64, usize)>,
    seen: HashSet<(u64, Option<Vec<u8>>)>,
    steps: u64,
    limit: u64,
}

struct Frame {
    /// The operation linearized to reach this frame.
    via: Option<usize>,
    state: Option<Vec<u8>>,
    hash: u64,
    /// Next operation (in list order) to try from here.
    cursor: usize,
}

/// `Some(true)`: linearizable; `Some(false)`: not; `None`: step limit hit.
fn check_key(ops: &[&HistoryOp], limit: u64) -> Option<bool> {
    let mut sorted: Vec<&HistoryOp> = ops.to_vec();
    sorted.sort_by_key(|o| o.invoked);
    let n = sorted.len();
    let head = n;
    let mut search = Search {
        next: (0..=n).map(|i| if i == head { 0 } else { i + 1 }).collect(),
        prev: (0..=n).map(|i| if i == 0 { head } else { i - 1 }).collect(),
        open: sorted
            .iter()
            .enumerate()
            .filter_map(|(i, o)| o.completed.as_ref().map(|(t, _)| (*t, i)))
            .collect(),
        ops: sorted,
        seen: HashSet::new(),
        steps: 0,
        limit,
    };
    if n == 0 {
        return Some(true);
    }
    search.run()
}

impl Search<'_> {
    fn head(&self) -> usize {
        self.ops.len()
    }

    fn unlink(&mut self, i: usize) {
        let (p, n) = (self.prev[i], self.next[i]);
        self.next[p] = n;
        self.prev[n] = p;
        if let Some((t, _)) = &self.ops[i].completed {
            self.open.remove(&(*t, i));
        }
    }

    fn relink(&mut self, i: usize) {
        let (p, n) = (self.prev[i], self.next[i]);
        self.next[p] = i;
        self.prev[n] = i;
        if let Some((t, _)) = &self.ops[i].completed {
            self.open.insert((*t, i));
        }
    }

    fn run(&mut self) -> Option<bool> {
        let head = self.head();
        if self.open.is_empty() {
            return Some(true);
        }
        self.seen.insert((0, None));
        let mut stack = vec![Frame {
            via: None,
            state: None,
            hash: 0,
            cursor: self.next[head],
        }];
        while let Some(top) = stack.last_mut() {
            let Some(&(horizon, _)) = self.open.first() else {
                return Some(true);
            };
            // The next operation that may be linearized here and explains its result.
            let mut found = None;
            let mut c = top.cursor;
            while c != head && self.ops[c].invoked <= horizon {
                let (next_state, result) = apply(&top.state, &self.ops[c].op);
                let explains = self.ops[c]
                    .completed
                    .as_ref()
                    .is_none_or(|(_, observed)| *observed == result);
                if explains {
                    found = Some((c, next_state));
                    break;
                }
                c = self.next[c];
            }
            let Some((c, next_state)) = found else {
                if let Some(via) = top.via {
                    self.relink(via);
                }
                stack.pop();
                continue;
            };
            top.cursor = self.next[c];
            let hash = top.hash ^ zobrist_key(c);
            self.steps += 1;
            if self.steps > self.limit {
                return None;
            }
            self.unlink(c);
            if self.open.is_empty() {
                return Some(true);
            }
            if !self.seen.insert((hash, next_state.clone())) {
                self.relink(c);
                continue;
            }
            stack.push(Frame {
                via: Some(c),
                state: next_state,
                hash,
                cursor: self.next[head],
            });
        }
        Some(false)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn op(key: &str, op: KvOp, invoked: u64, completed: Option<(u64, KvResult)>) -> HistoryOp {
        HistoryOp {
            key: key.as_bytes().to_vec(),
            op,
            invoked,
            completed,
        }
    }

    fn v(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = vec![
            op("a", KvOp::Set(v("1")), 0, Some((1, KvResult::Ok))),
            op("a", KvOp::Get, 2, Some((3, KvResult::Value(Some(v("1")))))),
            op("a", KvOp::Delete, 4, Some((5, KvResult::Ok))),
            op("a", KvOp::Delete, 6, Some((7, KvResult::NotFound))),
        ];
        assert_eq!(check(&h, 10_000), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_after_completed_write_is_not_linearizable() {
        let h = vec![
            op("a", KvOp::Set(v("1")), 0, Some((1, KvResult::Ok))),
            op("a", KvOp::Set(v("2")), 2, Some((3, KvResult::Ok))),
            op("a", KvOp::Get, 4, Some((5, KvResult::Value(Some(v("1")))))),
        ];
        assert!(matches!(check(&h, 10_000), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn concurrent_operations_may_take_either_order() {
        let h = vec![
            op("a", KvOp::Set(v("1")), 0, Some((10, KvResult::Ok))),
            op("a", KvOp::Get, 1, Some((2, KvResult::NotFound))),
            op(
                "a",
                KvOp::Get,
                11,
                Some((12, KvResult::Value(Some(v("1"))))),
            ),
        ];
        assert_eq!(check(&h, 10_000), Verdict::Linearizable);
    }

    #[test]
    fn unknown_outcome_may_apply_or_not() {
        let applied = vec![
            op("k", KvOp::Set(v("x")), 0, None),
            op("k", KvOp::Get, 5, Some((6, KvResult::Value(Some(v("x")))))),
        ];
        assert_eq!(check(&applied, 10_000), Verdict::Linearizable);
        let not_applied = vec![
            op("k", KvOp::Set(v("x")), 0, None),
            op("k", KvOp::Get, 5, Some((6, KvResult::NotFound))),
        ];
        assert_eq!(check(&not_applied, 10_000), Verdict::Linearizable);
    }

    #[test]
    fn test_and_set_semantics_are_checked() {
        let h = vec![
            op(
                "k",
                KvOp::TestAndSet {
                    expected: None,
                    new: Some(v("1")),
                },
                0,
                Some((1, KvResult::Value(None))),
            ),
            op(
                "k",
                KvOp::TestAndSet {
                    expected: None,
                    new: Some(v("2")),
                },
                2,
                // Wrong: the value was "1", so it must report "1" and not set.
                Some((3, KvResult::Value(None))),
            ),
        ];
        assert!(matches!(check(&h, 10_000), Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn long_sequential_history_is_checked_without_deep_recursion() {
        let mut h = Vec::new();
        for i in 0..60_000u64 {
            let t = 4 * i;
            if i % 2 == 0 {
                h.push(op(
                    "k",
                    KvOp::Set(vec![(i % 7) as u8]),
                    t,
                    Some((t + 1, KvResult::Ok)),
                ));
            } else {
                let last = ((i - 1) % 7) as u8;
                h.push(op(
                    "k",
                    KvOp::Get,
                    t,
                    Some((t + 1, KvResult::Value(Some(vec![last])))),
                ));
            }
        }
        assert_eq!(check(&h, 1_000_000), Verdict::Linearizable);
        h.push(op(
            "k",
            KvOp::Get,
            1_000_000,
            Some((1_000_001, KvResult::NotFound)),
        ));
        assert!(matches!(
            check(&h, 1_000_000),
            Verdict::NotLinearizable { .. }
        ));
    }

    #[test]
    fn keys_are_checked_independently_and_step_limit_reports_unknown() {
        let mut h = Vec::new();
        for i in 0..12u64 {
            h.push(op(
                "a",
                KvOp::Set(vec![i as u8]),
                0,
                Some((100, KvResult::Ok)),
            ));
        }
        h.push(op(
            "a",
            KvOp::Get,
            101,
            Some((102, KvResult::Value(Some(vec![99])))),
        ));
        assert!(matches!(check(&h, 50), Verdict::Unknown { .. }));
        assert!(matches!(
            check(&h, 10_000_000),
            Verdict::NotLinearizable { .. }
        ));
    }
}
