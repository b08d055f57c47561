//! The whole-node deterministic simulator (ADR 0140).
//!
//! Real nodes (the production assembly: `node::prepare` + `Prepared::assemble`, with the real
//! driver, storage loop, WAL, promise and redo files, kv-store and client handler) run in one
//! process on a tokio current-thread runtime with paused time, on `SimFs` disks, over a
//! simulated network that encodes every message with the real wire codec. A seed fixes
//! everything: the faults switched on (swarm), the schedule, the clients' operations.
//!
//! - `cargo test -p rarakoon-node --test sim`: the CI seed set (bounded wall time).
//! - `SIM_SEED=n`: replays seed `n` alone (printed on failure).
//! - `SIM_SEEDS=a..b`: a soak over seeds `a..b`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gate;
mod net;
mod rng;
mod sim;

use std::time::Duration;

use rarakoon_node::sabotage::Sabotage;

/// Seeds run on every CI run.
const CI_SEEDS: std::ops::Range<u64> = 0..400;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

fn run_one(seed: u64, sabotage: Sabotage) -> sim::Outcome {
    // `SIM_LOG=<filter>` shows the nodes' logs (e.g. `SIM_LOG=paxos_core=debug`).
    if let Ok(filter) = std::env::var("SIM_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
    runtime().block_on(sim::run(seed, sabotage))
}

fn seeds_from_env() -> Option<Vec<u64>> {
    if let Ok(one) = std::env::var("SIM_SEED") {
        return Some(vec![one.trim().parse().expect("SIM_SEED=<u64>")]);
    }
    if let Ok(range) = std::env::var("SIM_SEEDS") {
        let (a, b) = range.split_once("..").expect("SIM_SEEDS=a..b");
        let (a, b): (u64, u64) = (a.trim().parse().unwrap(), b.trim().parse().unwrap());
        return Some((a..b).collect());
    }
    None
}

fn describe(o: &sim::Outcome) -> String {
    format!(
        "seed {} ({:?} virtual): plan {:?}\n  stats {:?}",
        o.seed, o.virtual_time, o.plan, o.stats
    )
}

#[test]
fn simulated_clusters_stay_correct_under_faults() {
    let seeds = seeds_from_env().unwrap_or_else(|| CI_SEEDS.collect());
    let started = std::time::Instant::now();
    let mut virtual_total = Duration::ZERO;
    let mut failures = Vec::new();
    for &seed in &seeds {
        let outcome = run_one(seed, Sabotage::default());
        virtual_total += outcome.virtual_time;
        if std::env::var_os("SIM_VERBOSE").is_some() {
            eprintln!("{}", describe(&outcome));
        }
        if !outcome.violations.is_empty() {
            for v in &outcome.violations {
                eprintln!("VIOLATION [{}] {}", v.checker, v.detail);
            }
            eprintln!(
                "{}\n  replay: SIM_SEED={seed} cargo test -p rarakoon-node --test sim simulated_clusters_stay_correct_under_faults -- --nocapture",
                describe(&outcome),
            );
            failures.push(seed);
        }
    }
    eprintln!(
        "simulated {} seeds, {:?} of virtual time, in {:?} of wall time",
        seeds.len(),
        virtual_total,
        started.elapsed()
    );
    assert!(failures.is_empty(), "seeds with violations: {failures:?}");
}

#[test]
fn one_seed_replays_exactly() {
    for seed in [3, 7] {
        let a = run_one(seed, Sabotage::default());
        let b = run_one(seed, Sabotage::default());
        assert_eq!(
            (a.trace, a.virtual_time, &a.stats),
            (b.trace, b.virtual_time, &b.stats),
            "seed {seed} ran differently twice"
        );
    }
    let other = run_one(4, Sabotage::default());
    assert_ne!(
        other.trace,
        run_one(3, Sabotage::default()).trace,
        "the trace hash does not depend on the run"
    );
}

/// Runs `seeds` with the node broken as `sabotage` says until `checker` reports a violation;
/// panics (naming the checkers that did fire) if it never does.
fn assert_caught(what: &str, sabotage: Sabotage, seeds: std::ops::Range<u64>, checker: &str) {
    let mut fired = std::collections::BTreeSet::new();
    for seed in seeds.clone() {
        let outcome = run_one(seed, sabotage);
        if let Some(v) = outcome.violations.iter().find(|v| v.checker == checker) {
            eprintln!(
                "{what}: seed {seed} caught by the {checker} checker: {}",
                v.detail.lines().next().unwrap_or("")
            );
            return;
        }
        fired.extend(outcome.violations.iter().map(|v| v.checker));
    }
    panic!(
        "{what}: the {checker} checker noticed nothing in seeds {seeds:?} (others fired: {fired:?})"
    );
}

#[test]
fn acknowledging_before_fsync_is_caught_by_agreement() {
    let sabotage = Sabotage {
        ack_before_fsync: true,
        ..Sabotage::default()
    };
    assert_caught("ack before fsync", sabotage, 0..150, "agreement");
}

#[test]
fn counting_the_master_before_its_fsync_is_caught_by_linearizability() {
    let sabotage = Sabotage {
        paxos: paxos_core::Sabotage {
            count_self_before_durable: true,
            ..paxos_core::Sabotage::default()
        },
        ..Sabotage::default()
    };
    assert_caught(
        "paxos-core counts itself before durable",
        sabotage,
        0..250,
        "linearizability",
    );
}

#[test]
fn reads_past_the_lease_are_caught_by_the_lease_checker() {
    let sabotage = Sabotage {
        reads_past_lease: true,
        ..Sabotage::default()
    };
    assert_caught("reads past the lease", sabotage, 0..300, "lease");
}

#[test]
fn skipping_the_redo_file_is_caught_by_agreement() {
    // Losing the replaced tail needs a crash inside the round's fsync after a tail overwrite,
    // and then a quorum that relies on this node: rare. A soak over seeds 0..3000 found the
    // first such run at seed 1423 (agreement and convergence; linearizability at 1637), so
    // this test scans a small set around it rather than every seed from 0.
    let sabotage = Sabotage {
        skip_redo: true,
        ..Sabotage::default()
    };
    assert_caught("skip the redo file", sabotage, 1400..1500, "agreement");
}

/// A node that forgets its promise across a restart (with no promise file it stands again
/// with a ballot it already used) proposes a second value under one ballot: the ballot checker
/// sees it on the wire before agreement visibly breaks.
#[test]
fn reusing_a_ballot_is_caught_by_the_ballot_checker() {
    let sabotage = Sabotage {
        forget_promise: true,
        ..Sabotage::default()
    };
    assert_caught("forget the promise", sabotage, 0..300, "ballot");
}

/// A node that never serves catch-up reads leaves a peer that fell behind behind for good:
/// the convergence checker sees the stores differ after the heal.
#[test]
fn refusing_catch_up_is_caught_by_convergence() {
    let sabotage = Sabotage {
        no_catch_up: true,
        ..Sabotage::default()
    };
    assert_caught("no catch-up", sabotage, 0..100, "convergence");
}

/// A master that takes client writes and never proposes them commits nothing: the liveness
/// checker sees no write commit after the heal.
#[test]
fn never_proposing_is_caught_by_liveness() {
    let sabotage = Sabotage {
        drop_proposals: true,
        ..Sabotage::default()
    };
    assert_caught("drop proposals", sabotage, 0..20, "liveness");
}

/// A node that treats a torn last write as damage does not come back after a crash that tore
/// one: the restart checker sees it.
#[test]
fn refusing_a_torn_tail_is_caught_by_restart() {
    let sabotage = Sabotage {
        refuse_torn_tail: true,
        ..Sabotage::default()
    };
    assert_caught("refuse a torn tail", sabotage, 0..100, "restart");
}
