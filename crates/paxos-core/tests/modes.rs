//! Cluster modes and node roles, driven through the simulator: learners, witnesses, quorum
//! override, read-only, forced master, preferred master, drop master; and reproducibility.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sim;

use paxos_core::{MasterMode, NodeId, NodeRole};
use sim::scenarios::{LEASE, settle_master};
use sim::world::{MS, Script, SimOptions, SimReport, World, run_seed};

fn assert_ok(report: &SimReport) {
    assert!(report.ok(), "violations:\n{}", report.describe());
}

#[test]
fn same_seed_same_trace() {
    let a = run_seed(42, |_| {});
    let b = run_seed(42, |_| {});
    assert_eq!(a.trace_hash, b.trace_hash, "seed 42 is not deterministic");
    assert_eq!(a.events, b.events);
    let c = run_seed(43, |_| {});
    assert_ne!(
        a.trace_hash, c.trace_hash,
        "different seeds gave the same trace"
    );
}

#[test]
fn learner_applies_everything_but_never_votes_or_leads() {
    let mut o = SimOptions::quiet(5, 3);
    o.learner = true;
    let mut w = World::new(o);
    let m = settle_master(&mut w);
    // Crash one voter: the master still has a quorum of voters; the learner must not count.
    let voter = (0..3).find(|&n| n != m).unwrap();
    w.script(w.now + 10 * MS, Script::Crash(voter));
    let t = w.now + 3 * LEASE;
    w.run_until(t);
    let master_committed = w.core(m).unwrap().committed();
    assert!(
        w.applied(3) + 2 >= master_committed,
        "learner applied {} of {master_committed}",
        w.applied(3)
    );
    assert!(w.became_master_log.iter().all(|(_, n)| *n != 3));
    assert_eq!(w.core(3).unwrap().status().role, NodeRole::Follower);
    w.script(w.now, Script::Restart(voter));
    assert_ok(&w.finish());
}

#[test]
fn learner_does_not_make_a_quorum() {
    let mut o = SimOptions::quiet(6, 3);
    o.learner = true;
    let mut w = World::new(o);
    let m = settle_master(&mut w);
    let before = w.core(m).unwrap().committed();
    // Two of three voters down: the master and the learner are not a quorum.
    for n in (0..3).filter(|&n| n != m) {
        w.script(w.now + MS, Script::Crash(n));
    }
    let t = w.now + 3 * LEASE;
    w.run_until(t);
    let after = (0..4)
        .filter_map(|n| w.core(n).map(|c| c.committed()))
        .max()
        .unwrap();
    assert!(
        after <= before + 8,
        "committed {after} (from {before}) without a voter quorum"
    );
    assert!(w.master().is_none(), "a master without a voter quorum");
}

#[test]
fn witness_votes_and_keeps_the_log_but_never_applies_or_leads() {
    let mut o = SimOptions::quiet(8, 3);
    o.witness = true; // node 2
    let mut w = World::new(o);
    let m = settle_master(&mut w);
    assert_ne!(m, 2, "the witness became master");
    let other_voter = (0..2).find(|&n| n != m).unwrap();
    w.script(w.now + MS, Script::Crash(other_voter));
    let t = w.now + 2 * LEASE;
    w.run_until(t);
    // The master commits with the witness alone.
    let witness_committed = w.core(2).unwrap().committed();
    assert!(
        witness_committed > 20,
        "witness committed only {witness_committed}"
    );
    assert_eq!(w.applied(2), 0, "the witness applied values");
    assert!(w.became_master_log.iter().all(|(_, n)| *n != 2));
    w.script(w.now, Script::Restart(other_voter));
    assert_ok(&w.finish());
}

#[test]
fn quorum_override_commits_with_fewer_nodes() {
    let mut o = SimOptions::quiet(12, 5);
    o.quorum = Some(2);
    let mut w = World::new(o);
    let m = settle_master(&mut w);
    let down: Vec<usize> = (0..5).filter(|&n| n != m).take(3).collect();
    for &n in &down {
        w.script(w.now + MS, Script::Crash(n));
    }
    let before = w.core(m).unwrap().committed();
    let t = w.now + 2 * LEASE;
    w.run_until(t);
    assert_eq!(w.master(), Some(m));
    assert!(w.core(m).unwrap().committed() > before + 20);
    for &n in &down {
        w.script(w.now, Script::Restart(n));
    }
    assert_ok(&w.finish());
}

#[test]
fn read_only_cluster_elects_nobody_and_refuses_writes() {
    let mut o = SimOptions::quiet(13, 3);
    o.mode = MasterMode::ReadOnly;
    let mut w = World::new(o);
    w.run_until(4 * LEASE);
    assert!(w.master().is_none());
    assert!(w.became_master_log.is_empty());
    assert!((0..3).all(|n| w.core(n).unwrap().committed() == 0));
    let report = w.finish_without_liveness();
    assert!(report.ok(), "{}", report.describe());
    assert_eq!(report.completed_ops, 0);
}

#[test]
fn forced_master_is_the_only_master() {
    let mut o = SimOptions::quiet(14, 3);
    o.mode = MasterMode::Forced(NodeId(1));
    let mut w = World::new(o);
    let m = settle_master(&mut w);
    assert_eq!(m, 1);
    // Even when it is cut off for a while, nobody else stands.
    w.script(w.now + MS, Script::Isolate(1));
    w.run_until(w.now + 3 * LEASE);
    w.script(w.now, Script::HealAll);
    w.set_heal_at(w.now);
    w.run_until(w.now + 3 * LEASE);
    assert!(
        w.became_master_log.iter().all(|(_, n)| *n == 1),
        "{:?}",
        w.became_master_log
    );
    assert_ok(&w.finish());
}

#[test]
fn preferred_master_takes_office_and_takes_it_back() {
    let mut o = SimOptions::quiet(15, 3);
    o.preferred = vec![NodeId(2)];
    let mut w = World::new(o);
    let m = settle_master(&mut w);
    assert_eq!(m, 2, "the preferred node did not win the first election");
    w.script(w.now + MS, Script::Crash(2));
    w.run_until(w.now + 3 * LEASE);
    let interim = w.master();
    assert!(interim.is_some_and(|n| n != 2), "no interim master");
    w.script(w.now, Script::Restart(2));
    w.set_heal_at(w.now);
    w.run_until(w.now + 5 * LEASE);
    assert_eq!(
        w.master(),
        Some(2),
        "the preferred node did not take office back"
    );
    assert_ok(&w.finish());
}

#[test]
fn preferred_masters_in_order_the_first_one_up_holds_office() {
    let mut o = SimOptions::quiet(17, 3);
    o.preferred = vec![NodeId(2), NodeId(1)];
    let mut w = World::new(o);
    let m = settle_master(&mut w);
    assert_eq!(
        m, 2,
        "the first preferred node did not win the first election"
    );
    // The first preferred node is down: the second one, not the unlisted node, takes office.
    w.script(w.now + MS, Script::Crash(2));
    w.run_until(w.now + 4 * LEASE);
    assert_eq!(
        w.master(),
        Some(1),
        "the second preferred node did not take office"
    );
    // The first preferred node is back: the second one hands office back to it.
    w.script(w.now, Script::Restart(2));
    w.set_heal_at(w.now);
    w.run_until(w.now + 6 * LEASE);
    assert_eq!(
        w.master(),
        Some(2),
        "the first preferred node did not take office back from the second"
    );
    assert_ok(&w.finish());
}

#[test]
fn drop_master_hands_office_to_another_node() {
    let mut o = SimOptions::quiet(16, 3);
    o.election_jitter = Some(50 * MS);
    let mut w = World::new(o);
    let m = settle_master(&mut w);
    let t0 = w.now + MS;
    w.script(t0, Script::DropMaster(m));
    w.run_until(t0 + LEASE / 2);
    let next = w.master();
    assert!(
        next.is_some_and(|n| n != m),
        "no other master half a lease after drop master: {next:?}"
    );
    assert!(
        w.became_master_log.iter().all(|(t, n)| *t < t0 || *n != m),
        "the dropped master stood again within one lease"
    );
    w.set_heal_at(t0);
    assert_ok(&w.finish());
}
