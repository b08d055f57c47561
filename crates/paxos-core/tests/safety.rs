//! Safety across crashes, driven message by message with real cores (ADR 0100): a
//! ballot is never used twice, so no two values are ever accepted under one (ballot, index),
//! and a peer that breaks that rule is refused, not answered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::{Cluster, Wire};
use paxos_core::{
    Ballot, Config, Effect, Event, LogEntry, MasterMode, Message, NodeId, Proposal, ProposalId,
    Role, Value,
};

const LEASE: u64 = 1_000_000_000;
const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

fn forced_a() -> Vec<Config> {
    (0..3)
        .map(|i| {
            let mut c = Config::new(NodeId(i), vec![Role::Voter; 3], LEASE);
            c.mode = MasterMode::Forced(NodeId(0));
            c
        })
        .collect()
}

fn x() -> Value {
    Value::Batch(vec![Proposal {
        id: ProposalId(1),
        payload: b"X".to_vec(),
    }])
}

/// The scenario of ADR 0100 (3 voters, forced master A):
/// 1. A commits `Master{A}` at index 1, proposes X at index 2; X reaches only A's disk; A
///    crashes.
/// 2. A restarts and stands; whatever it sends reaches B and C, except that its accepts reach
///    only B; A's own writes never become durable; A crashes again.
/// 3. A restarts and stands again; from now on everything is delivered and made durable.
///
/// Before the fix, A took office in step 2 on B's and C's promises while its own promise
/// (2, A) was not durable, so in step 3 it stood with (2, A) again, re-proposed X at index 2,
/// and B (which held `Master{A}` at index 2 in (2, A)) answered `Accepted` but applied its own
/// value: index 2 was X on A and C and `Master{A}` on B.
#[test]
fn a_ballot_is_never_reused_after_a_crash() {
    let mut cl = Cluster::new(forced_a());

    // 1. A takes office and commits its master value everywhere.
    cl.tick(2 * LEASE, &[A]);
    cl.run(|_| true, |_| true);
    assert!(cl.nodes[A].core.is_master(), "A did not take office");
    for n in [A, B, C] {
        assert_eq!(
            cl.nodes[n].applied.get(&1),
            Some(&Value::Master { node: NodeId(0) })
        );
    }
    // X at index 2: only A's disk gets it.
    cl.propose(A, 1, b"X");
    cl.net.clear();
    assert!(cl.make_durable(A));
    assert_eq!(
        cl.nodes[A].disk.entries.get(&2).map(|e| &e.value),
        Some(&x())
    );
    cl.net.clear();
    cl.crash(A);

    // 2. A stands again; nothing of A's becomes durable; its accepts reach B only.
    cl.now += 1;
    cl.restart(A);
    let first_ballot = cl.nodes[A].core.status().promised;
    cl.tick(2 * LEASE, &[A]);
    let second = cl.nodes[A].core.status().promised;
    assert!(second > first_ballot, "A did not stand");
    cl.run(
        |w: &Wire| !(w.to == C && matches!(w.msg, Message::Accept { .. })),
        |n| n != A,
    );
    cl.crash(A);

    // 3. A stands once more; from now on every message and write goes through.
    cl.now += 1;
    cl.restart(A);
    cl.tick(2 * LEASE, &[A]);
    let third = cl.nodes[A].core.status().promised;
    cl.run(|_| true, |_| true);
    for _ in 0..4 {
        cl.tick(LEASE / 4, &[A, B, C]);
        cl.run(|_| true, |_| true);
    }

    assert!(cl.violations.is_empty(), "{:#?}", cl.violations);
    assert!(cl.nodes[A].core.is_master(), "A did not take office again");
    let at2: Vec<Option<&Value>> = [A, B, C]
        .iter()
        .map(|n| cl.nodes[*n].applied.get(&2))
        .collect();
    assert!(
        at2.iter().all(|v| v.is_some() && *v == at2[0]),
        "agreement broken: index 2 differs: {at2:?}"
    );
    // Every ballot A used for accepts was durably promised by A before it left the node.
    for w in &cl.traffic {
        if let Message::Accept { ballot, .. } = &w.msg {
            assert!(ballot.node == NodeId(0));
        }
    }
    assert!(
        third > first_ballot,
        "A's third ballot {third} is not above its first {first_ballot}"
    );
}

/// Whether A's candidacy sends anything in its ballot before its own promise is durable: it must
/// not (a crash would let it reuse the ballot).
#[test]
fn a_candidate_sends_nothing_in_its_ballot_before_its_promise_is_durable() {
    let mut cl = Cluster::new(forced_a());
    cl.tick(2 * LEASE, &[A]);
    let ballot = cl.nodes[A].core.status().promised;
    assert_eq!(ballot.node, NodeId(0));
    assert!(
        cl.net.is_empty(),
        "prepare sent before the promise was durable: {:?}",
        cl.net
    );
    // Retransmission timers do not leak it either.
    for _ in 0..5 {
        cl.tick(LEASE / 20, &[A]);
    }
    assert!(cl.net.is_empty(), "{:?}", cl.net);
    assert!(cl.make_durable(A));
    assert!(
        cl.net
            .iter()
            .all(|w| matches!(w.msg, Message::Prepare { ballot: b, .. } if b == ballot)),
        "{:?}",
        cl.net
    );
    assert_eq!(cl.net.len(), 2);
}

/// An `Accept` for an index the acceptor holds in the same ballot but with another value is a
/// protocol violation by the sender: it is neither persisted nor answered (nor committed on).
#[test]
fn an_acceptor_refuses_a_second_value_for_the_same_ballot_and_index() {
    let mut cl = Cluster::new(forced_a());
    cl.tick(2 * LEASE, &[A]);
    cl.run(|_| true, |_| true);
    let ballot = cl.nodes[A].core.status().promised;
    // B accepts Y at index 2 in A's ballot.
    let y = Value::Batch(vec![Proposal {
        id: ProposalId(7),
        payload: b"Y".to_vec(),
    }]);
    let accept = |value: Value| Event::Message {
        from: NodeId(0),
        msg: Message::Accept {
            ballot,
            index: 2,
            value,
            committed: 1,
        },
    };
    cl.step(B, accept(y.clone()));
    assert!(cl.make_durable(B));
    assert!(
        cl.net
            .iter()
            .any(|w| w.to == A && w.msg == Message::Accepted { ballot, index: 2 })
    );
    cl.net.clear();
    // A second, different value at the same (ballot, index): refused.
    let out = cl.step(B, accept(x()));
    assert!(
        !out.iter().any(|e| matches!(e, Effect::Persist(_))),
        "conflicting value persisted: {out:?}"
    );
    cl.make_durable(B);
    assert!(
        !cl.net
            .iter()
            .any(|w| matches!(w.msg, Message::Accepted { .. })),
        "conflicting accept answered: {:?}",
        cl.net
    );
    // The same value again (a retransmit) is still answered.
    cl.net.clear();
    cl.step(B, accept(y.clone()));
    cl.make_durable(B);
    assert!(
        cl.net
            .iter()
            .any(|w| matches!(w.msg, Message::Accepted { index: 2, .. })),
        "{:?}",
        cl.net
    );
    assert_eq!(
        cl.nodes[B].disk.entries.get(&2),
        Some(&LogEntry {
            index: 2,
            ballot,
            value: y
        })
    );
}

fn elected(preferred: &[u8]) -> Cluster {
    let cfgs = (0..3)
        .map(|i| {
            let mut c = Config::new(NodeId(i), vec![Role::Voter; 3], LEASE);
            c.preferred_masters = preferred.iter().map(|p| NodeId(*p)).collect();
            c
        })
        .collect();
    let mut cl = Cluster::new(cfgs);
    cl.tick(2 * LEASE, &[A]);
    cl.run(|_| true, |_| true);
    assert!(cl.nodes[A].core.is_master(), "A was not elected");
    cl
}

fn prepare_from_c(cl: &Cluster) -> Event {
    let round = cl.nodes[B].core.status().promised.round + 1;
    Event::Message {
        from: NodeId(2),
        msg: Message::Prepare {
            ballot: Ballot {
                round,
                node: NodeId(2),
            },
            committed: cl.nodes[C].core.committed(),
        },
    }
}

/// Issue 9, part 3: any node could send `LeaseReleased` for the master's ballot, and followers
/// forgot the lease and promised to another candidate while the master still served.
#[test]
fn a_lease_is_released_only_by_its_holder() {
    let mut cl = elected(&[]);
    let ballot = cl.nodes[A].core.status().promised;
    cl.now += 1;
    // C (not the holder) claims A released its lease: B ignores it...
    let out = cl.step(
        B,
        Event::Message {
            from: NodeId(2),
            msg: Message::LeaseReleased { ballot },
        },
    );
    assert!(out.is_empty(), "{out:?}");
    // ...and still refuses to promise to C.
    let event = prepare_from_c(&cl);
    let out = cl.step(B, event);
    assert!(
        out.iter().any(|e| matches!(
            e,
            Effect::Send {
                msg: Message::PrepareRefused {
                    reason: paxos_core::PrepareRefusal::LeaseActive {
                        holder: Some(NodeId(0))
                    },
                    ..
                },
                ..
            }
        )),
        "B promised to C under A's lease: {out:?}"
    );
    assert!(
        !out.iter().any(|e| matches!(e, Effect::Persist(_))),
        "{out:?}"
    );
    // From A itself, the release is honoured: B promises to C at once.
    cl.step(
        B,
        Event::Message {
            from: NodeId(0),
            msg: Message::LeaseReleased { ballot },
        },
    );
    let event = prepare_from_c(&cl);
    let out = cl.step(B, event);
    assert!(
        out.iter().any(
            |e| matches!(e, Effect::Persist(p) if p.promise.is_some_and(|b| b.node == NodeId(2)))
        ),
        "B did not promise to C after A released its lease: {out:?}"
    );
}

/// `StoppedBeingMaster` (and the role change) come before the `LeaseReleased` that gives the
/// lease up, in the same effects; from then on the node serves no consistent read and takes no
/// proposal.
fn assert_stops_before_releasing(cl: &mut Cluster, out: &[Effect]) {
    let stopped = out
        .iter()
        .position(|e| *e == Effect::StoppedBeingMaster)
        .unwrap_or_else(|| panic!("no StoppedBeingMaster: {out:?}"));
    let released = out
        .iter()
        .position(|e| matches!(e, Effect::Broadcast(Message::LeaseReleased { .. })))
        .unwrap_or_else(|| panic!("no LeaseReleased: {out:?}"));
    assert!(
        stopped < released,
        "the lease was released before the master stopped: {out:?}"
    );
    let now = cl.now;
    assert!(!cl.nodes[A].core.can_serve_consistent_read(now));
    assert!(!cl.nodes[A].core.is_master());
    let out = cl.propose(A, 99, b"late");
    assert!(
        matches!(
            out.as_slice(),
            [Effect::Reply {
                reply: paxos_core::Reply::NotMaster { .. },
                ..
            }]
        ),
        "{out:?}"
    );
}

#[test]
fn drop_master_stops_serving_before_it_releases_the_lease() {
    let mut cl = elected(&[]);
    cl.now += 1;
    assert!(cl.nodes[A].core.can_serve_consistent_read(cl.now));
    let out = cl.step(A, Event::DropMaster);
    assert_stops_before_releasing(&mut cl, &out);
}

#[test]
fn preferred_hand_over_stops_serving_before_it_releases_the_lease() {
    // B is preferred; A, elected because only it stood, hands over once B is close (at once).
    let mut cl = elected(&[1]);
    cl.now += 1;
    assert!(cl.nodes[A].core.can_serve_consistent_read(cl.now));
    let out = cl.step(A, Event::Tick);
    assert_stops_before_releasing(&mut cl, &out);
}
