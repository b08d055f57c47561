//! Black-box fault tests of real `rarakoon-bin` processes on 127.0.0.1.
//!
//! Every node-to-node link runs through a fault proxy ([`proxy::Proxy`], one per directed
//! link: each node gets its own config file in which its peers' addresses are the proxies in
//! front of them). Concurrent clients record a history of get / set / test_and_set / delete on
//! a few keys ([`history`]) while faults are injected from outside: `kill -9` with restarts,
//! `SIGSTOP` past the lease and `SIGCONT`, two-way and one-way partitions (isolating the
//! master, isolating a follower, cutting the followers' answers to the master), and link
//! resets. The history is then checked for linearizability, every node must converge to the
//! same data after the heal, and every killed node must come back with no manual repair.
//!
//! Every wait is on an event (a master elected, writes acknowledged, values converged), with a
//! generous bound for a loaded 2-core machine; no step sleeps for a fixed time.
//!
//! The fault schedule repeats for about two minutes (`FAULT_SECONDS`, default 120, and at
//! least two rounds); `FAULT_ROUNDS=n` runs exactly n rounds instead, for a longer soak.
//!
//! Crashes lose unsynced data: every node runs with `--test-volatile-writes`, which keeps the
//! bytes it has written but not fsync'd in its own memory ([`write_ahead_log::VolatileFs`]),
//! so `kill -9` loses them as a power cut would, instead of leaving them to the kernel's page
//! cache. The schedule kills every node at once (a whole-cluster crash); a node that
//! acknowledged before its fsync then loses acknowledged writes, and
//! `acknowledging_before_fsync_is_caught` shows that the suite sees it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../support/mod.rs"]
mod support;

mod history;
mod proxy;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use paxos_core::linearizability::{self, Verdict};
use support::{ClusterSpec, TestCluster, wait_for};

use history::{Reads, Recorder};
use proxy::Proxy;

const ELECTION: Duration = Duration::from_secs(60);
const PROGRESS: Duration = Duration::from_secs(60);
const CONVERGE: Duration = Duration::from_secs(90);
/// Search steps per key for the linearizability checker.
const STEP_LIMIT: u64 = 20_000_000;

/// A cluster whose node-to-node links all run through fault proxies.
struct FaultCluster {
    cluster: TestCluster,
    names: Vec<String>,
    /// `(from, to)` -> the proxy `from` dials to reach `to`.
    links: BTreeMap<(String, String), Proxy>,
}

/// Every node keeps its unsynced writes in its own memory (see the module docs).
const VOLATILE: &str = "--test-volatile-writes";

impl FaultCluster {
    fn new(nodes: usize) -> FaultCluster {
        let mut spec = ClusterSpec::new(nodes);
        spec.node_args.push(VOLATILE.to_owned());
        FaultCluster::with_spec(&spec)
    }

    fn with_spec(spec: &ClusterSpec) -> FaultCluster {
        let mut cluster = TestCluster::new(spec);
        let names: Vec<String> = cluster.nodes.iter().map(|n| n.name.clone()).collect();
        let shared = std::fs::read_to_string(cluster.config_file()).unwrap();
        let mut links = BTreeMap::new();
        for from in cluster.nodes.clone() {
            let mut text = shared.clone();
            for to in &cluster.nodes {
                if to.name == from.name {
                    continue;
                }
                let real = SocketAddr::from(([127, 0, 0, 1], to.messaging_port));
                let proxy = Proxy::start(real);
                let old = format!("addresses = [\"{real}\"]");
                assert!(text.contains(&old), "config has no {old}");
                text = text.replace(&old, &format!("addresses = [\"{}\"]", proxy.addr()));
                links.insert((from.name.clone(), to.name.clone()), proxy);
            }
            let file = cluster.dir.path().join(format!("{}.toml", from.name));
            std::fs::write(&file, text).unwrap();
            cluster.use_node_config(&from.name.clone(), file);
        }
        FaultCluster {
            cluster,
            names,
            links,
        }
    }

    fn names(&self) -> Vec<&str> {
        self.names.iter().map(String::as_str).collect()
    }

    fn others(&self, node: &str) -> Vec<&str> {
        self.names().into_iter().filter(|n| *n != node).collect()
    }

    fn link(&self, from: &str, to: &str) -> &Proxy {
        &self.links[&(from.to_owned(), to.to_owned())]
    }

    /// Cuts `node` off in both directions.
    fn isolate(&self, node: &str) {
        for other in self.others(node) {
            self.link(node, other).block();
            self.link(other, node).block();
        }
    }

    fn heal(&self) {
        for p in self.links.values() {
            p.pass();
        }
    }

    fn reset_links(&self) {
        for p in self.links.values() {
            p.reset();
        }
    }

    fn wait_master(&self, among: &[&str]) -> String {
        self.cluster.wait_master(among, ELECTION)
    }

    /// Waits until `n` more writes than now have been acknowledged.
    fn wait_progress(&self, recorder: &Recorder, n: u64, what: &str) {
        let target = recorder.acked_writes.load(Ordering::SeqCst) + n;
        wait_for(&format!("{n} writes acknowledged {what}"), PROGRESS, || {
            (recorder.acked_writes.load(Ordering::SeqCst) >= target).then_some(())
        });
    }

    /// Waits until every node holds the same value for every key as the master serves.
    fn wait_converged(&self, keys: &[Bytes]) {
        let all = self.names();
        wait_for("every node to converge", CONVERGE, || {
            let master = self.cluster.wait_master(&all, ELECTION);
            let expected: Vec<Option<Bytes>> = keys
                .iter()
                .map(|k| {
                    self.cluster
                        .dirty_get(&master, std::str::from_utf8(k).unwrap())
                })
                .collect();
            all.iter()
                .all(|n| {
                    keys.iter().zip(&expected).all(|(k, e)| {
                        self.cluster.dirty_get(n, std::str::from_utf8(k).unwrap()) == *e
                    })
                })
                .then_some(())
        });
    }
}

fn keys() -> Vec<Bytes> {
    (0..5).map(|i| Bytes::from(format!("key{i}"))).collect()
}

/// Starts `clients` client tasks on their own runtime thread; returns the thread to join after
/// setting `recorder.stop`.
fn start_clients(
    fc: &FaultCluster,
    recorder: &Arc<Recorder>,
    clients: usize,
    reads: Reads,
) -> std::thread::JoinHandle<()> {
    let all = fc.names();
    let handles: Vec<_> = (0..clients).map(|_| fc.cluster.client(&all)).collect();
    let recorder = recorder.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut set = tokio::task::JoinSet::new();
            for (id, client) in handles.into_iter().enumerate() {
                set.spawn(history::run_client(
                    id,
                    client,
                    keys(),
                    recorder.clone(),
                    reads.clone(),
                ));
            }
            while set.join_next().await.is_some() {}
        });
    })
}

fn check_history(recorder: &Recorder) {
    let history = recorder.history();
    let answered = history.iter().filter(|o| o.completed.is_some()).count();
    eprintln!(
        "history: {} operations ({} answered, {} indeterminate)",
        history.len(),
        answered,
        history.len() - answered
    );
    match linearizability::check(&history, STEP_LIMIT) {
        Verdict::Linearizable => {}
        Verdict::NotLinearizable { key, ops } => {
            for op in &ops {
                eprintln!("{op:?}");
            }
            panic!(
                "history of key {:?} is not linearizable ({} operations above)",
                String::from_utf8_lossy(&key),
                ops.len()
            );
        }
        Verdict::Unknown { key } => panic!(
            "the checker hit its step limit on key {:?}: no verdict",
            String::from_utf8_lossy(&key)
        ),
    }
}

/// How many times the fault schedule runs: `FAULT_ROUNDS=n` rounds exactly, or else rounds
/// until `FAULT_SECONDS` (default 120) have passed, and at least [`Schedule::MIN_ROUNDS`].
/// The time only decides how much evidence a run gathers, never whether it passes.
struct Schedule {
    rounds: Option<usize>,
    budget: Duration,
}

impl Schedule {
    const MIN_ROUNDS: usize = 2;

    fn from_env() -> Schedule {
        let var = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
        Schedule {
            rounds: var("FAULT_ROUNDS").map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            budget: Duration::from_secs(var("FAULT_SECONDS").unwrap_or(120)),
        }
    }

    fn another_round(&self, done: usize, elapsed: Duration) -> bool {
        match self.rounds {
            Some(n) => done < n,
            None => done < Self::MIN_ROUNDS || elapsed < self.budget,
        }
    }
}

/// The whole fault schedule against a 3-node cluster under a concurrent client load.
#[test]
fn faults_from_outside_keep_the_history_linearizable() {
    let schedule = Schedule::from_env();
    let mut fc = FaultCluster::new(3);
    fc.cluster.start_all();
    let all: Vec<String> = fc.names.clone();
    let all_refs: Vec<&str> = all.iter().map(String::as_str).collect();
    fc.wait_master(&all_refs);
    let recorder = Recorder::new();
    let clients = start_clients(&fc, &recorder, 4, Reads::Consistent);
    fc.wait_progress(&recorder, 20, "before any fault");

    let started = std::time::Instant::now();
    for round in 0.. {
        if !schedule.another_round(round, started.elapsed()) {
            eprintln!("{round} fault rounds in {:?}", started.elapsed());
            break;
        }
        eprintln!("fault round {round}");

        // kill -9 the master, then restart it.
        let master = fc.wait_master(&all_refs);
        eprintln!("kill -9 master {master}");
        fc.cluster.kill9(&master);
        let others = fc.others(&master);
        fc.wait_master(&others);
        fc.wait_progress(&recorder, 20, "after the master was killed");
        fc.cluster.start(&master);
        fc.cluster.wait_locked(&master);

        // SIGSTOP the master past its lease, then SIGCONT.
        let master = fc.wait_master(&all_refs);
        eprintln!("SIGSTOP master {master}");
        fc.cluster.signal(&master, "STOP");
        let others = fc.others(&master);
        let successor = fc.wait_master(&others);
        fc.wait_progress(&recorder, 20, "while the old master is stopped");
        fc.cluster.signal(&master, "CONT");
        eprintln!("SIGCONT {master} (master now {successor})");
        fc.wait_progress(&recorder, 20, "after the old master resumed");

        // Isolate the master (two-way), then heal.
        let master = fc.wait_master(&all_refs);
        eprintln!("isolate master {master}");
        fc.isolate(&master);
        let others = fc.others(&master);
        fc.wait_master(&others);
        fc.wait_progress(&recorder, 20, "with the old master isolated");
        fc.heal();

        // One-way: the followers' answers never reach the master.
        let master = fc.wait_master(&all_refs);
        eprintln!("cut followers -> master {master}");
        for f in fc.others(&master) {
            fc.link(f, &master).block();
        }
        fc.wait_progress(
            &recorder,
            20,
            "with the followers' answers to the master cut",
        );
        fc.heal();

        // Isolate a follower, then heal.
        let master = fc.wait_master(&all_refs);
        let follower = fc.others(&master)[round % 2].to_owned();
        eprintln!("isolate follower {follower}");
        fc.isolate(&follower);
        fc.wait_progress(&recorder, 20, "with a follower isolated");
        fc.heal();

        // kill -9 a follower, restart it.
        let master = fc.wait_master(&all_refs);
        let follower = fc.others(&master)[(round + 1) % 2].to_owned();
        eprintln!("kill -9 follower {follower}");
        fc.cluster.kill9(&follower);
        fc.wait_progress(&recorder, 20, "with a follower killed");
        fc.cluster.start(&follower);
        fc.cluster.wait_locked(&follower);

        // Reset every link at once.
        eprintln!("reset all links");
        fc.reset_links();
        fc.wait_progress(&recorder, 20, "after every link was reset");

        // kill -9 every node at once: what they had not fsync'd is gone.
        eprintln!("kill -9 every node");
        for n in &all {
            fc.cluster.kill9(n);
        }
        for n in &all {
            fc.cluster.start(n);
        }
        for n in &all {
            fc.cluster.wait_locked(n);
        }
        fc.wait_master(&all_refs);
        fc.wait_progress(&recorder, 20, "after every node was killed");
    }

    // Healed: writes must commit again (liveness), then stop the load.
    fc.heal();
    fc.wait_progress(&recorder, 20, "after the heal");
    recorder.stop.store(true, Ordering::SeqCst);
    clients.join().unwrap();
    for n in &all {
        assert!(fc.cluster.is_running(n), "{n} is not running");
    }
    fc.wait_converged(&keys());
    check_history(&recorder);
}

/// The suite is not blind: with reads served by any node from its local store (what a node
/// that serves consistent reads without holding the lease would answer), recorded as if
/// consistent, a follower cut off from the master serves stale values and the history check
/// fails.
#[test]
fn reads_served_without_the_lease_are_caught() {
    let mut fc = FaultCluster::new(3);
    fc.cluster.start_all();
    let all = fc.names.clone();
    let all_refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let master = fc.wait_master(&all_refs);
    let reads = Reads::AnyNode {
        cluster_id: fc.cluster.cluster_id.clone(),
        nodes: all_refs.iter().map(|n| fc.cluster.client_addr(n)).collect(),
    };
    let recorder = Recorder::new();
    let clients = start_clients(&fc, &recorder, 4, reads);
    fc.wait_progress(&recorder, 20, "before the cut");
    // The follower keeps hearing nothing from the master: it still serves what it had.
    let follower = fc.others(&master)[0].to_owned();
    fc.link(&master, &follower).block();
    // Stop as soon as the history is caught (every read has a 1 in 3 chance to hit the
    // follower, so this takes a few dozen writes); the bound only ends a blind run.
    let mut caught = false;
    for _ in 0..40 {
        fc.wait_progress(&recorder, 10, "with the follower cut off");
        if matches!(
            linearizability::check(&recorder.history(), STEP_LIMIT),
            Verdict::NotLinearizable { .. }
        ) {
            caught = true;
            break;
        }
    }
    recorder.stop.store(true, Ordering::SeqCst);
    fc.heal();
    clients.join().unwrap();
    assert!(
        caught,
        "stale reads from a cut-off follower were not caught by the history check"
    );
}

/// Sets `count` keys one after another (each acknowledged), kills every node with `kill -9`,
/// restarts them and returns the keys whose acknowledged value is gone.
fn writes_lost_by_a_whole_cluster_crash(fsync: bool, count: usize) -> Vec<String> {
    let mut spec = ClusterSpec::new(3);
    spec.node_args.push(VOLATILE.to_owned());
    if !fsync {
        spec.extra_node_lines.push("fsync = false".to_owned());
    }
    let mut fc = FaultCluster::with_spec(&spec);
    fc.cluster.start_all();
    let all = fc.names.clone();
    let all_refs: Vec<&str> = all.iter().map(String::as_str).collect();
    fc.wait_master(&all_refs);
    let rt = support::runtime();
    let client = fc.cluster.client(&all_refs);
    rt.block_on(async {
        for i in 0..count {
            client
                .set(format!("crash{i}"), format!("v{i}"))
                .await
                .unwrap();
        }
    });
    for n in &all {
        fc.cluster.kill9(n);
    }
    for n in &all {
        fc.cluster.start(n);
    }
    fc.wait_master(&all_refs);
    let client = fc.cluster.client(&all_refs);
    rt.block_on(async {
        let mut lost = Vec::new();
        for i in 0..count {
            let key = format!("crash{i}");
            match client.get(key.clone()).await {
                Ok(v) if v == format!("v{i}").as_bytes() => {}
                Ok(_) | Err(rarakoon_client::Error::NotFound(_)) => lost.push(key),
                Err(e) => panic!("reading {key} after the restart failed: {e}"),
            }
        }
        lost
    })
}

/// With fsync on, a crash of every node at once loses no acknowledged write.
#[test]
fn a_whole_cluster_crash_loses_no_acknowledged_write() {
    let lost = writes_lost_by_a_whole_cluster_crash(true, 40);
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
}

/// The suite is not blind to a missing fsync: nodes that acknowledge before their data is on
/// disk (`fsync = false`) lose acknowledged writes when every node is killed at once, because
/// `--test-volatile-writes` drops what the page cache would have saved.
#[test]
fn acknowledging_before_fsync_is_caught() {
    let lost = writes_lost_by_a_whole_cluster_crash(false, 40);
    assert!(
        !lost.is_empty(),
        "nodes that never fsync lost nothing in a whole-cluster kill -9: the crash is not \
         losing unsynced data"
    );
    eprintln!("{} of 40 acknowledged writes lost, as expected", lost.len());
}
