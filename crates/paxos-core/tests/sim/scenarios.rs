//! Named scenarios from Arakoon's lease-bug history, scripted on top of the simulator. Each
//! takes the sabotage switches so the same script proves both that the protocol survives it
//! and that the checkers catch the bug it is about.

use paxos_core::Sabotage;

use super::world::{MS, Script, SimOptions, SimReport, World};

/// Lease period of the scenarios.
pub const LEASE: u64 = 1_000 * MS;

/// Runs until some node is the established master; returns it.
pub fn settle_master(w: &mut World) -> usize {
    for _ in 0..200 {
        if let Some(m) = w.master() {
            return m;
        }
        let t = w.now + 50 * MS;
        w.run_until(t);
    }
    panic!("no master elected in a quiet cluster");
}

fn others(total: usize, m: usize) -> Vec<usize> {
    (0..total).filter(|&n| n != m).collect()
}

/// arakoon#483, restart amnesia: both slaves crash and restart at once while the master is cut
/// off. Having forgotten the lease they saw, they must wait a full lease before electing.
pub fn restart_amnesia(sabotage: Sabotage) -> SimReport {
    let mut o = SimOptions::quiet(483, 3);
    o.sabotage = sabotage;
    o.election_jitter = Some(20 * MS);
    let mut w = World::new(o);
    let m = settle_master(&mut w);
    let t0 = w.now + 200 * MS;
    w.script(t0, Script::Isolate(m));
    for s in others(3, m) {
        w.script(t0, Script::Crash(s));
        w.script(t0 + MS, Script::Restart(s));
    }
    let heal = t0 + 3 * LEASE;
    w.script(heal, Script::HealAll);
    w.set_heal_at(heal);
    w.run_until(heal + 4 * LEASE);
    w.finish()
}

/// A master whose own disk is slow must not count itself before its persist is durable: it
/// commits with one slave, then crashes losing unsynced writes while that slave is down; the
/// survivors elect a master that never saw the "committed" values.
pub fn master_counted_before_durable(sabotage: Sabotage) -> SimReport {
    let mut o = SimOptions::quiet(7, 3);
    o.sabotage = sabotage;
    o.disk = (MS / 10, MS / 5);
    o.delay = (MS / 20, MS / 10);
    let mut w = World::new(o);
    let m = settle_master(&mut w);
    let rest = others(3, m);
    let (a, b) = (rest[0], rest[1]);
    let t0 = w.now + 100 * MS;
    w.script(
        t0,
        Script::SlowDisk {
            node: m,
            factor: 100,
        },
    );
    w.script(t0, Script::Block { from: m, to: b });
    w.script(t0 + 300 * MS, Script::CrashLosingAll(m));
    w.script(t0 + 300 * MS, Script::Crash(a));
    w.script(t0 + 301 * MS, Script::Restart(m));
    w.script(t0 + 301 * MS, Script::Unblock { from: m, to: b });
    let heal = t0 + 301 * MS + 3 * LEASE;
    w.script(heal, Script::HealAll);
    w.script(heal, Script::Restart(a));
    w.set_heal_at(heal);
    w.run_until(heal + 4 * LEASE);
    w.finish()
}

/// Clock drift: the master's clock runs slow and the slaves' fast, by the configured bound;
/// the master is then cut off. Its lease window must end before the slaves' wait does.
pub fn drifting_isolated_master(sabotage: Sabotage) -> SimReport {
    let mut o = SimOptions::quiet(11, 3);
    o.sabotage = sabotage;
    o.election_jitter = Some(10 * MS);
    let drift = o.cfg_drift_ppm as i64;
    let mut w = World::new(o);
    let m = settle_master(&mut w);
    let t = w.now + 10 * MS;
    w.script(
        t,
        Script::SetClockRate {
            node: m,
            ppm: -drift,
        },
    );
    for s in others(3, m) {
        w.script(
            t,
            Script::SetClockRate {
                node: s,
                ppm: drift,
            },
        );
    }
    let t0 = t + 500 * MS;
    w.script(t0, Script::Isolate(m));
    let heal = t0 + 3 * LEASE;
    w.script(heal, Script::HealAll);
    w.set_heal_at(heal);
    w.run_until(heal + 4 * LEASE);
    w.finish()
}

/// arakoon#117: a slave cut off from the master (but not from the other slave) must not get a
/// new master elected under the live one. Returns the report, how many other nodes became
/// master while the slave was cut off, and 1 if the master kept office all that time.
pub fn no_election_under_live_master() -> (SimReport, usize, usize) {
    let mut o = SimOptions::quiet(117, 3);
    o.election_jitter = Some(20 * MS);
    let mut w = World::new(o);
    let m = settle_master(&mut w);
    let s = others(3, m)[0];
    let t0 = w.now + 100 * MS;
    w.script(t0, Script::Block { from: m, to: s });
    w.script(t0, Script::Block { from: s, to: m });
    w.run_until(t0 + 6 * LEASE);
    let others_elected = w
        .became_master_log
        .iter()
        .filter(|(t, n)| *t >= t0 && *n != m)
        .count();
    let m_kept = w.master() == Some(m) && !w.stopped_master_log.iter().any(|(t, _)| *t >= t0);
    w.script(w.now, Script::HealAll);
    w.set_heal_at(w.now);
    w.run_until(t0 + 8 * LEASE);
    (w.finish(), others_elected, usize::from(m_kept))
}

/// arakoon#224/#237/#349: stale lease messages. The master drops its lease; after a new master
/// is elected, the old "lease released" messages arrive again (late, duplicated) and must be
/// ignored. Returns the report, the old master, and the new one if it kept office.
pub fn stale_lease_messages() -> (SimReport, usize, Option<usize>) {
    let mut o = SimOptions::quiet(224, 3);
    o.election_jitter = Some(20 * MS);
    let mut w = World::new(o);
    let m = settle_master(&mut w);
    let t0 = w.now + 100 * MS;
    w.script(t0, Script::DropMaster(m));
    w.run_until(t0 + 3 * LEASE / 2);
    let new_master = w.master();
    let stale = w.released.clone();
    for delay in [0, LEASE / 3, LEASE] {
        for (from, msg) in &stale {
            for to in others(3, *from) {
                w.script(
                    w.now + delay,
                    Script::Inject {
                        from: *from,
                        to,
                        msg: msg.clone(),
                    },
                );
            }
        }
    }
    w.set_heal_at(t0);
    w.run_until(t0 + 5 * LEASE);
    let kept = new_master
        .filter(|n| w.master() == Some(*n) && !w.stopped_master_log.iter().any(|(_, x)| x == n));
    (w.finish(), m, kept)
}

/// arakoon#215: lease-expiry storms. A stable master under slow, lossy links must keep office.
pub fn stable_master_under_lossy_links() -> SimReport {
    let mut o = SimOptions::quiet(215, 5);
    o.delay = (MS / 10, 20 * MS);
    o.drop_permille = 50;
    o.dup_permille = 20;
    o.fault_time = 20 * LEASE;
    World::new(o).run()
}

/// A paused old master must not answer consistent reads when it resumes. Returns the report,
/// whether another node became master during the pause, and whether the old one could serve
/// a read at the instant it resumed.
pub fn paused_master_resumes() -> (SimReport, bool, bool) {
    let mut o = SimOptions::quiet(9, 3);
    o.election_jitter = Some(20 * MS);
    let mut w = World::new(o);
    let m = settle_master(&mut w);
    let t0 = w.now + 50 * MS;
    let pause = 5 * LEASE / 2;
    w.script(
        t0,
        Script::Pause {
            node: m,
            duration: pause,
        },
    );
    w.run_until(t0 + pause - MS);
    let other_master = others(3, m)
        .into_iter()
        .any(|n| w.core(n).is_some_and(|c| c.is_master()));
    w.run_until(t0 + pause);
    let serves = w.serve_read(m);
    w.set_heal_at(t0 + pause);
    w.run_until(t0 + pause + 4 * LEASE);
    (w.finish(), other_master, serves)
}
