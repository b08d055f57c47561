#![allow(clippy::unwrap_used, clippy::expect_used)]
mod sim;
use sim::world::{MS, SimOptions, World};
#[test]
fn debug_seed() {
    let Some(seed) = std::env::var("DEBUG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    else {
        return;
    };
    let from: u64 = std::env::var("DEBUG_FROM")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap();
    let to: u64 = std::env::var("DEBUG_TO")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap();
    let opts = SimOptions::swarm(seed);
    let n = opts.voters + usize::from(opts.learner);
    let mut w = World::new(opts);
    let mut t = from;
    w.run_until(from * MS);
    while t < to {
        t += 100;
        w.run_until(t * MS);
        eprintln!("t={t} master={:?}", w.master());
        for i in 0..n {
            eprintln!("   {i}: {:?}", w.core(i).map(|c| c.status()));
        }
    }
    eprintln!("{:?}\n{:?}", w.became_master_log, w.stopped_master_log);
}
