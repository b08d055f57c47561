//! Swarm simulation runs: the CI seed set, determinism, and the breaking switches.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sim;

use sim::world::{MS, SimOptions, World, run_seed, seeds};

fn assert_ok(report: &sim::world::SimReport) {
    assert!(
        report.ok(),
        "simulation found violations:\n{}",
        report.describe()
    );
}

#[test]
fn quiet_three_voters_elect_and_commit() {
    let report = World::new(SimOptions::quiet(1, 3)).run();
    eprintln!("{}", report.describe());
    assert_ok(&report);
    assert!(report.completed_ops > 100, "{}", report.describe());
}

#[test]
fn swarm_ci_seeds() {
    let mut total_virtual = 0;
    for seed in seeds(0..24) {
        let report = run_seed(seed, |_| {});
        total_virtual += report.virtual_time;
        eprintln!(
            "seed {seed}: events {} ops {} committed {} masters {} lin {}",
            report.events,
            report.completed_ops,
            report.committed,
            report.masters_elected,
            report.linearizability
        );
        assert_ok(&report);
    }
    eprintln!("virtual time simulated: {} s", total_virtual / (1000 * MS));
}

#[test]
fn debug_seed() {
    let Some(seed) = std::env::var("DEBUG_SEED").ok().and_then(|s| s.parse().ok()) else {
        return;
    };
    let from: u64 = std::env::var("DEBUG_FROM").ok().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
    let opts = SimOptions::swarm(seed);
    eprintln!("{opts:?}");
    let mut w = World::new(opts);
    let mut last = 0;
    for step in 0..200 {
        if step * 100 >= from {
            w.verbose = true;
        }
        w.run_until(step * 100 * MS);
        eprintln!("t={} master={:?} events +{}", w.now / MS, w.master(), w.events - last);
        last = w.events;
        if step * 100 > from.saturating_add(100) {
            break;
        }
    }
}
