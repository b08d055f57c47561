//! Named scenarios from Arakoon's lease-bug history, scripted on top of the simulator. Each
//! takes the sabotage switches so the same script proves both that the protocol survives it
//! and that the checkers catch the bug it is about.

use paxos_core::{Ballot, MasterMode, Message, NodeId, NodeRole, Sabotage};

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

/// Issue 9, part 1: a ballot must never be used twice, across any crash. A forced master `A`
/// whose disk is 500x slower than its peers' (50 ms fsyncs against 0.1 ms) crashes, again and
/// again, while its own promise persist is outstanding, as in the reproduction of ADR 0100:
///
/// 1. `A`'s accepts are cut off from `B` and `C`; a client value `X` reaches `A`'s disk only;
///    `A` crashes.
/// 2. `A` restarts and stands. Once `C` has promised `A`'s new ballot, `A → C` is cut, so
///    whatever `A` sends under that ballot reaches only `B`. `A` crashes before its promise is
///    durable, losing every outstanding persist.
/// 3. `A` restarts and stands again, then re-proposes `X`.
///
/// If `A` took office in step 2 on `B`'s and `C`'s promises before its own was durable, it sent
/// `Master{A}` under ballot `b` to `B`; in step 3 it stands with the same `b` (the promise was
/// lost), ignores `B`'s promise (its entry carries `b`), takes office on `{A, C}` and
/// re-proposes `X` under `b`; `B` answers `Accepted` but keeps `Master{A}`: the checker reports
/// "agreement broken". Runs `rounds` such cycles (stopping at the first violation) and returns
/// the report, how many rounds crashed `A` with its promise persist outstanding, and how many
/// of those caught `A` already in office.
pub fn slow_master_disk_crashes_between_persist_and_durable(
    rounds: usize,
) -> (SimReport, usize, usize) {
    let mut o = SimOptions::quiet(241, 3);
    o.mode = MasterMode::Forced(NodeId(0));
    o.disk = (MS / 10, MS / 10);
    o.delay = (MS / 10, MS / 5);
    let mut w = World::new(o);
    let a = settle_master(&mut w);
    assert_eq!(a, 0, "the forced master");
    let (b, c) = (1, 2);
    w.script(
        w.now,
        Script::SlowDisk {
            node: a,
            factor: 500,
        },
    );
    let (mut crashed_in_window, mut in_office_early) = (0, 0);
    for _ in 0..rounds {
        // Back in office (with a lease), then step 1: X reaches A's disk only.
        let t = w.now + 5 * LEASE;
        if !w.run_until_true(t, |w| w.master() == Some(a)) {
            break;
        }
        w.script(w.now, Script::Block { from: a, to: b });
        w.script(w.now, Script::Block { from: a, to: c });
        let t = w.now + 2 * LEASE;
        let reached = |w: &World| {
            let others_hold = [b, c]
                .iter()
                .filter_map(|&n| w.core(n).map(|core| core.status().last_index))
                .max()
                .unwrap_or(0);
            w.last_durable_index(a) > others_hold
        };
        if !w.run_until_true(t, reached) {
            break;
        }
        w.script(w.now, Script::CrashLosingAll(a));
        w.script(w.now, Script::Unblock { from: a, to: b });
        w.script(w.now, Script::Unblock { from: a, to: c });
        w.script(w.now + MS, Script::Restart(a));
        // Step 2: A stands (after its start-up wait); crash it before its promise is durable,
        // with what it sends under the new ballot reaching B only.
        let t = w.now + 3 * LEASE;
        if !w.run_until_true(t, |w| w.promise_pending(a)) {
            break;
        }
        let ballot = w.core(a).map(|core| core.status().promised);
        let due = w.fsync_due(a).unwrap_or(w.now);
        let c_promised = |w: &World| {
            w.core(c).map(|core| core.status().promised) == ballot || !w.promise_pending(a)
        };
        w.run_until_true(due.saturating_sub(5 * MS), c_promised);
        w.script(w.now, Script::Block { from: a, to: c });
        // Long enough for B to accept what A sent in office, before A's promise is durable.
        let t = (w.now + 5 * MS).min(due.saturating_sub(MS));
        w.run_until(t);
        if !w.promise_pending(a) {
            break; // durable already: this round did not test the window
        }
        if w.core(a).is_some_and(|core| {
            matches!(core.status().role, NodeRole::MasterElect | NodeRole::Master)
        }) {
            in_office_early += 1;
        }
        crashed_in_window += 1;
        w.script(w.now, Script::CrashLosingAll(a));
        w.script(w.now, Script::Unblock { from: a, to: c });
        w.script(w.now + MS, Script::Restart(a));
        // Step 3: A stands again and re-proposes X.
        let t = w.now + 3 * LEASE;
        w.run_until(t);
        if !w.violations.is_empty() {
            break;
        }
    }
    w.set_heal_at(w.now);
    w.run_until(w.now + 2 * LEASE);
    (w.finish(), crashed_in_window, in_office_early)
}

/// Issue 9, part 3: only the lease's holder may release it. Followers `F1`, `F2` of master `M`
/// are cut off one way (their messages no longer reach `M`, so `M` hears of no new ballot and
/// keeps believing its lease until its window ends), and a relayed `LeaseReleased` carrying
/// `M`'s ballot reaches each follower from the *other* follower every 10 ms for a lease.
///
/// Honest cores only release their own ballot, so the relay models a stale copy forwarded by a
/// buggy or hostile peer (the node cannot tell such a message from a genuine one by its
/// content: only the sender's identity, which the link authenticates, says whose lease it is).
/// A core that accepts the release from a non-holder forgets `M`'s lease, elects a new master
/// under it, and the checker reports "lease safety broken". Returns the report and the number
/// of masters other than `M` elected while `M` still believed in its lease.
pub fn lease_released_by_a_non_holder() -> (SimReport, usize) {
    let mut o = SimOptions::quiet(349, 3);
    o.election_jitter = Some(5 * MS);
    let mut w = World::new(o);
    let m = settle_master(&mut w);
    let ballot: Ballot = w
        .core(m)
        .map(|core| core.status().promised)
        .unwrap_or_default();
    let f = others(3, m);
    let t0 = w.now + 100 * MS;
    for &x in &f {
        w.script(t0, Script::Block { from: x, to: m });
    }
    for k in 0..(LEASE / (10 * MS)) {
        for (from, to) in [(f[0], f[1]), (f[1], f[0])] {
            w.script(
                t0 + k * 10 * MS,
                Script::Inject {
                    from,
                    to,
                    msg: Message::LeaseReleased { ballot },
                },
            );
        }
    }
    w.run_until(t0 + LEASE + LEASE / 2);
    let lease_end = w
        .stopped_master_log
        .iter()
        .find(|(t, n)| *t >= t0 && *n == m)
        .map_or(w.now, |(t, _)| *t);
    let usurpers = w
        .became_master_log
        .iter()
        .filter(|(t, n)| *t >= t0 && *t < lease_end && *n != m)
        .count();
    let heal = w.now;
    w.script(heal, Script::HealAll);
    w.set_heal_at(heal);
    w.run_until(heal + 4 * LEASE);
    (w.finish(), usurpers)
}
