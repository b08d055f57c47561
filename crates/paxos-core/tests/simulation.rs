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
fn debug_quiet() {
    let Some(seed) = std::env::var("DEBUG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    else {
        return;
    };
    let opts = SimOptions::swarm(seed);
    let heal = opts.fault_time;
    let mut w = World::new(opts);
    w.run_until(heal - 1000 * MS);
    for step in 0..40 {
        w.run_until(heal - 1000 * MS + step * 200 * MS);
        eprintln!("t={} master={:?}", w.now / MS, w.master());
        for n in 0..w.opts.voters + usize::from(w.opts.learner) {
            eprintln!("   {n}: {:?}", w.core(n).map(|c| c.status()));
        }
    }
    eprintln!("{:?}\n{:?}", w.became_master_log, w.stopped_master_log);
}
