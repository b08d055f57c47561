//! One simulated run: a cluster of real nodes (prepare + assemble, the production assembly)
//! on SimFs disks, a simulated network, concurrent clients through the real `NodeHandler`,
//! a nemesis injecting the faults the seed switched on, then a heal phase and the checkers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use paxos_core::linearizability::{HistoryOp, KvOp, KvResult, Verdict};
use paxos_core::{Ballot, NodeRole};
use rarakoon_client::{Consistency, ErrorCode, ErrorReply, Request, Response, Update};
use rarakoon_node::driver::{Clock, Shared};
use rarakoon_node::handler::NodeHandler;
use rarakoon_node::node::{NodeOptions, prepare};
use rarakoon_node::sabotage::Sabotage;
use rarakoon_node::storage::DiskDelay;
use rarakoon_node::{ClusterConfig, NodeError};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use write_ahead_log::{FileSystem, SimFault, SimFs};

use crate::gate::{Gate, Gated};
use crate::net::{Net, NetFaults};
use crate::rng::{Rng, Trace, mix};

/// Lease period of the simulated clusters.
const LEASE: Duration = Duration::from_secs(1);
/// The clock-drift bound paxos-core is configured with (its default).
const MAX_DRIFT_PPM: i32 = 10_000;
/// After every fault healed, a write must commit within this much virtual time.
const LIVENESS_BOUND: Duration = Duration::from_secs(30);
/// ... and all stores must agree within this much more.
const CONVERGENCE_BOUND: Duration = Duration::from_secs(30);
/// A client gives up on an answer after this long (the outcome of a write is then unknown).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(1);
const KEYS: u64 = 4;
const CLIENTS: usize = 3;
/// Search budget of the linearizability checker, per key.
const LINEARIZABILITY_STEPS: u64 = 5_000_000;

/// The faults a seed switched on, and their parameters (swarm testing: each fault kind is on
/// or off for a whole run, so some runs hammer one kind and others combine them).
#[derive(Debug, Clone)]
pub struct Plan {
    pub nodes: usize,
    pub learner: bool,
    pub net: NetFaults,
    pub partitions: bool,
    pub link_resets: bool,
    pub crashes: bool,
    pub disk_errors: bool,
    pub corruption: bool,
    pub pauses: bool,
    pub slow_disk: Vec<f64>,
    pub drift_ppm: Vec<i32>,
    pub fault_time: Duration,
    /// Probability that a node crashes during a given fsync (when crashes are on).
    pub fsync_crash: f64,
    /// Mean time between nemesis actions.
    pub nemesis_every: Duration,
}

impl Plan {
    pub fn draw(rng: &mut Rng) -> Plan {
        let nodes = match rng.below(10) {
            0..=5 => 3,
            6..=7 => 4, // 3 voters + a learner
            _ => 5,
        };
        let learner = nodes == 4;
        let on = |rng: &mut Rng| rng.chance(0.5);
        let net = NetFaults {
            loss: if on(rng) { rng.unit() * 0.2 } else { 0.0 },
            duplicate: if on(rng) { rng.unit() * 0.1 } else { 0.0 },
            reorder: if on(rng) { rng.unit() * 0.3 } else { 0.0 },
            max_extra_delay: Duration::from_millis(rng.range(1, 300)),
        };
        let slow = on(rng);
        let drift = on(rng);
        Plan {
            nodes,
            learner,
            net,
            partitions: on(rng),
            link_resets: on(rng),
            crashes: on(rng),
            disk_errors: on(rng),
            corruption: on(rng),
            pauses: on(rng),
            // Log-uniform 1x..1000x.
            slow_disk: (0..nodes)
                .map(|_| if slow { 1000f64.powf(rng.unit()) } else { 1.0 })
                .collect(),
            drift_ppm: (0..nodes)
                .map(|_| {
                    if drift {
                        rng.range(0, 2 * MAX_DRIFT_PPM as u64) as i32 - MAX_DRIFT_PPM
                    } else {
                        0
                    }
                })
                .collect(),
            fault_time: Duration::from_secs(rng.range(8, 16)),
            fsync_crash: if on(rng) { rng.unit() * 0.05 } else { 0.0 },
            nemesis_every: Duration::from_millis(rng.range(30, 400)),
        }
    }
}

/// What a checker found.
#[derive(Debug, Clone)]
pub struct Violation {
    pub checker: &'static str,
    pub detail: String,
}

/// The result of one run.
#[derive(Debug)]
pub struct Outcome {
    pub seed: u64,
    pub plan: Plan,
    pub violations: Vec<Violation>,
    pub trace: u64,
    pub virtual_time: Duration,
    pub stats: BTreeMap<&'static str, u64>,
}

/// A consistent read a node served.
#[derive(Debug, Clone, Copy)]
struct LeaseRead {
    /// Served although the node's own view says its lease had ended.
    past_lease: bool,
    node: usize,
    ballot: Ballot,
    at: u64,
}

struct Up {
    shared: Arc<Shared>,
    handler: Arc<NodeHandler>,
    failed: Arc<Mutex<Option<String>>>,
}

struct Slot {
    fs: SimFs,
    gate: Arc<Gate>,
    tasks: Vec<AbortHandle>,
    up: Option<Up>,
    incarnation: u64,
    /// When a down node is started again.
    restart_at: Option<Instant>,
    /// A corrupted file this node must name when it refuses to start.
    corrupted: Option<PathBuf>,
    /// When this node was last given an empty home.
    wiped_at: Option<Instant>,
    /// After an empty home: the applied index it must reach before the others may lose data
    /// again (the repair is only safe while the others are healthy).
    catching_up_to: Option<u64>,
}

struct World {
    seed: u64,
    start: Instant,
    plan: Plan,
    config: ClusterConfig,
    names: Vec<String>,
    net: Net,
    sabotage: Sabotage,
    slots: Mutex<Vec<Slot>>,
    /// Consistent reads served (recorded by the serving node, whether or not the client still
    /// waited for the answer).
    reads: Arc<Mutex<Vec<LeaseRead>>>,
    history: Mutex<Vec<HistoryOp>>,
    violations: Mutex<Vec<Violation>>,
    stats: Mutex<BTreeMap<&'static str, u64>>,
    trace: Mutex<Trace>,
    /// Randomness for faults injected from inside a node's I/O (crash at an fsync).
    io_rng: Mutex<Rng>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn home(i: usize) -> PathBuf {
    PathBuf::from(format!("/sim/n{i}"))
}

fn cluster_config(plan: &Plan) -> ClusterConfig {
    let mut text = format!(
        "[cluster]\nid = \"sim\"\nlease_period_secs = {}\n",
        LEASE.as_secs_f64()
    );
    if plan.learner {
        text.push_str(&format!("learners = [\"n{}\"]\n", plan.nodes - 1));
    }
    for i in 0..plan.nodes {
        text.push_str(&format!(
            "[[nodes]]\nname = \"n{i}\"\naddresses = [\"127.0.0.1:{}\"]\nclient_port = {}\n\
             home_dir = \"n{i}\"\nsegment_size_bytes = 65536\ncollapse_threshold_entries = 200\n\
             segments_to_keep = 1\n",
            20000 + i,
            21000 + i
        ));
    }
    match ClusterConfig::from_toml_str(&text, Path::new("/sim/cluster.toml"), Path::new("/sim")) {
        Ok(c) => c,
        Err(e) => panic!("the simulator's cluster config is invalid: {e}"),
    }
}

impl World {
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn count(&self, what: &'static str) {
        *lock(&self.stats).entry(what).or_default() += 1;
    }

    fn violation(&self, checker: &'static str, detail: String) {
        lock(&self.violations).push(Violation { checker, detail });
    }

    fn note(&self, x: u64) {
        lock(&self.trace).add(x);
    }

    /// Starts node `i` from its disk.
    fn start_node(self: &Arc<Self>, i: usize) -> Result<(), Box<NodeError>> {
        let mut slots = lock(&self.slots);
        let slot = &mut slots[i];
        slot.incarnation += 1;
        let slow = self.plan.slow_disk[i];
        // A fast disk syncs in 100 us; a slow one up to 1000x that.
        let fsync = Duration::from_nanos((100_000.0 * slow) as u64);
        // A crash while a round's writes wait for their fsync (when the plan has crashes).
        let weak = Arc::downgrade(self);
        let incarnation = slot.incarnation;
        let crash_at_fsync = if self.plan.crashes {
            self.plan.fsync_crash
        } else {
            0.0
        };
        let delay = move |_entries: u64| {
            if let Some(world) = weak.upgrade()
                && lock(&world.io_rng).chance(crash_at_fsync)
                && !world.repair_in_progress()
            {
                let at = fsync / 2;
                tokio::spawn(async move {
                    tokio::time::sleep(at).await;
                    if lock(&world.slots)[i].incarnation == incarnation && world.up(i) {
                        world.count("crashes at an fsync");
                        world.kill(i, true);
                        let back = Duration::from_millis(lock(&world.io_rng).range(100, 2000));
                        lock(&world.slots)[i].restart_at = Some(Instant::now() + back);
                    }
                });
            }
            fsync
        };
        let options = NodeOptions {
            fs: Arc::new(slot.fs.clone()),
            clock: Some(Clock::drifting(self.plan.drift_ppm[i])),
            entropy_seed: Some(mix(self.seed ^ ((i as u64) << 40) ^ slot.incarnation)),
            disk_delay: Some(DiskDelay(Arc::new(delay))),
            sabotage: self.sabotage,
            ..NodeOptions::default()
        };
        let prepared = prepare(
            &self.config,
            &self.names[i],
            Path::new("/sim/cluster.toml"),
            options,
        )
        .map_err(Box::new)?;
        let assembled = prepared.assemble(self.net.transport(i)).map_err(Box::new)?;
        slot.gate.resume();
        let gate = Arc::clone(&slot.gate);
        let storage = tokio::spawn(Gated {
            gate: Arc::clone(&gate),
            inner: Box::pin(assembled.storage.serve()),
        });
        let failed = Arc::new(Mutex::new(None));
        let driver = {
            let failed = Arc::clone(&failed);
            let run = assembled.driver;
            tokio::spawn(Gated {
                gate,
                inner: Box::pin(async move {
                    let why = match run.run().await {
                        Ok(()) => "the driver stopped".to_owned(),
                        Err(e) => e,
                    };
                    *lock(&failed) = Some(why);
                }),
            })
        };
        slot.tasks = vec![storage.abort_handle(), driver.abort_handle()];
        self.net.attach(i, Some(assembled.inputs.clone()));
        slot.up = Some(Up {
            shared: assembled.shared,
            handler: Arc::new(assembled.handler),
            failed,
        });
        slot.restart_at = None;
        Ok(())
    }

    /// Stops node `i`'s process at once (its tasks never run again). `power_loss`: the
    /// machine loses its page cache too (unsynced writes are lost, the last may be torn).
    fn kill(&self, i: usize, power_loss: bool) {
        let mut slots = lock(&self.slots);
        let slot = &mut slots[i];
        for t in slot.tasks.drain(..) {
            t.abort();
        }
        slot.up = None;
        slot.gate.resume();
        self.net.attach(i, None);
        if power_loss {
            slot.fs.crash();
        } else {
            slot.fs.restart_process();
        }
    }

    /// Tries to start node `i` again; a node that refuses because of the corruption the sim
    /// put on its disk must name the file, and then gets the documented repair (an empty home,
    /// caught up from the peers).
    fn restart(self: &Arc<Self>, i: usize) {
        let corrupted = lock(&self.slots)[i].corrupted.take();
        match self.start_node(i) {
            Ok(()) => {
                self.count("restarts");
                if corrupted.is_some() {
                    self.count("corruptions not noticed at start-up");
                }
            }
            Err(e) => {
                let message = e.to_string();
                match &corrupted {
                    Some(path) => {
                        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                        if !message.contains(name) {
                            self.violation(
                                "corruption",
                                format!(
                                    "n{i} refused to start after {} was corrupted, without naming \
                                     it: {message}",
                                    path.display()
                                ),
                            );
                        }
                        self.count("corruptions refused at start-up");
                        if std::env::var_os("SIM_DEBUG").is_some() {
                            eprintln!("t={:?} n{i} wiped after: {message}", self.start.elapsed());
                        }
                        // The repair: move the home aside (here: a new, empty disk).
                        {
                            let mut slots = lock(&self.slots);
                            let target = slots
                                .iter()
                                .filter_map(|s| s.up.as_ref().map(|u| digest(&u.shared).0))
                                .max()
                                .unwrap_or(0);
                            slots[i].fs = SimFs::new(mix(self.seed ^ 0xD15C ^ i as u64));
                            slots[i].wiped_at = Some(Instant::now());
                            slots[i].catching_up_to = Some(target);
                        }
                        if let Err(e) = self.start_node(i) {
                            self.violation("restart", format!("n{i} with an empty home: {e}"));
                        }
                    }
                    None => self.violation(
                        "restart",
                        format!("n{i} did not come back after a crash: {message}"),
                    ),
                }
            }
        }
    }

    /// Whether every node but `i` is up, has committed everything `i` held (`i`'s last log
    /// index before it went down), and no node was given an empty home in the last 10 s: the
    /// precondition of the corruption repair. (An empty home forgets what the node accepted; if
    /// it was one of the only two nodes holding a chosen value, a quorum without that value
    /// can then form: the repair is only safe when the others already have everything.)
    fn others_healthy(&self, i: usize, last_index: u64) -> bool {
        let slots = lock(&self.slots);
        if slots.iter().any(|s| {
            s.wiped_at
                .is_some_and(|t| t.elapsed() < Duration::from_secs(10))
        }) {
            return false;
        }
        slots.iter().enumerate().all(|(j, slot)| {
            j == i
                || slot
                    .up
                    .as_ref()
                    .is_some_and(|u| u.shared.view().committed >= last_index)
        })
    }

    /// Whether a node given an empty home has not caught up yet: until it has, no other node
    /// may lose data (crash, disk fault), as the repair's precondition says.
    fn repair_in_progress(&self) -> bool {
        let mut slots = lock(&self.slots);
        let mut busy = false;
        for slot in slots.iter_mut() {
            if let Some(target) = slot.catching_up_to {
                let applied = slot.up.as_ref().map_or(0, |u| digest(&u.shared).0);
                if applied >= target {
                    slot.catching_up_to = None;
                } else {
                    busy = true;
                }
            }
        }
        busy
    }

    fn up(&self, i: usize) -> bool {
        lock(&self.slots)[i].up.is_some()
    }

    /// Sends `request` to node `i`'s handler as a task of that node (so a paused or crashed
    /// node does not answer). `None`: no answer (timed out, or the node died meanwhile);
    /// `Some(Err(refused))` when the node is down (nothing was sent).
    async fn rpc(&self, i: usize, request: Request) -> Rpc {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = 'send: {
            let mut slots = lock(&self.slots);
            let slot = &mut slots[i];
            let Some(up) = &slot.up else {
                break 'send false;
            };
            let handler = Arc::clone(&up.handler);
            let shared = Arc::clone(&up.shared);
            let consistent_get = matches!(
                request,
                Request::Get {
                    consistency: Consistency::Consistent,
                    ..
                }
            );
            let start = self.start;
            let reads = Arc::clone(&self.reads);
            let task = tokio::spawn(Gated {
                gate: Arc::clone(&slot.gate),
                inner: Box::pin(async move {
                    tokio::time::sleep(Duration::from_micros(200)).await;
                    let before = shared.view();
                    let answer = handler.execute(request).await;
                    if std::env::var_os("SIM_DEBUG").is_some() && consistent_get {
                        eprintln!(
                            "t={:?} n{i} read role={:?} lease={:?} now={} ok={}",
                            start.elapsed(),
                            before.role,
                            before.lease_expires,
                            shared.now(),
                            answer.is_ok()
                        );
                    }
                    if consistent_get && answer.is_ok() {
                        let view = shared.view();
                        let past = view.lease_expires.is_none_or(|t| t <= shared.now());
                        lock(&reads).push(LeaseRead {
                            past_lease: past,
                            node: i,
                            ballot: view.promised,
                            at: u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX),
                        });
                    }
                    let _ = tx.send(answer);
                }),
            });
            slot.tasks.retain(|t| !t.is_finished());
            slot.tasks.push(task.abort_handle());
            true
        };
        if !sent {
            tokio::time::sleep(Duration::from_millis(1)).await;
            return Rpc::Refused;
        }
        match tokio::time::timeout(CLIENT_TIMEOUT, rx).await {
            Ok(Ok(answer)) => Rpc::Answer(answer),
            _ => Rpc::NoAnswer,
        }
    }
}

enum Rpc {
    Answer(Result<Response, ErrorReply>),
    Refused,
    NoAnswer,
}

/// What a client asks, and how it appears in the history.
fn client_op(
    rng: &mut Rng,
    client: usize,
    seq: u64,
    last_seen: &BTreeMap<u64, Option<Bytes>>,
) -> (u64, Request, KvOp) {
    let k = rng.below(KEYS);
    let key = Bytes::from(format!("k{k}"));
    let value = Bytes::from(format!("c{client}-{seq}"));
    match rng.below(100) {
        0..=34 => (
            k,
            Request::Get {
                consistency: Consistency::Consistent,
                key,
            },
            KvOp::Get,
        ),
        35..=64 => (
            k,
            Request::Set {
                key,
                value: value.clone(),
            },
            KvOp::Set(value.to_vec()),
        ),
        65..=79 => {
            let expected = if rng.chance(0.8) {
                last_seen.get(&k).cloned().flatten()
            } else {
                None
            };
            let wanted = if rng.chance(0.9) { Some(value) } else { None };
            (
                k,
                Request::TestAndSet {
                    key,
                    expected: expected.clone(),
                    wanted: wanted.clone(),
                },
                KvOp::TestAndSet {
                    expected: expected.map(|b| b.to_vec()),
                    new: wanted.map(|b| b.to_vec()),
                },
            )
        }
        80..=89 => (k, Request::Delete { key }, KvOp::Delete),
        _ => {
            let first = Bytes::from(format!("c{client}-{seq}-a"));
            (
                k,
                Request::Sequence(vec![
                    Update::Set {
                        key: key.clone(),
                        value: first,
                    },
                    Update::Set {
                        key,
                        value: value.clone(),
                    },
                ]),
                KvOp::Set(value.to_vec()),
            )
        }
    }
}

/// How an answer appears in the history: `Some(Some(result))` completed, `Some(None)` unknown
/// outcome, `None` certainly without effect (left out).
fn judge(op: &KvOp, rpc: &Rpc) -> Option<Option<KvResult>> {
    let write = !matches!(op, KvOp::Get);
    match rpc {
        Rpc::Refused => None,
        Rpc::NoAnswer => write.then_some(None),
        Rpc::Answer(Ok(response)) => Some(Some(match (op, response) {
            (KvOp::Get, Response::Get(v)) => KvResult::Value(Some(v.to_vec())),
            (KvOp::TestAndSet { .. }, Response::TestAndSet(found)) => {
                KvResult::Value(found.as_ref().map(|b| b.to_vec()))
            }
            _ => KvResult::Ok,
        })),
        Rpc::Answer(Err(e)) => match e.code {
            ErrorCode::NotFound if matches!(op, KvOp::Get | KvOp::Delete) => {
                Some(Some(KvResult::NotFound))
            }
            // Refused before being proposed: no effect.
            ErrorCode::NotMaster | ErrorCode::GoingDown | ErrorCode::ReadOnly => None,
            _ if !write => None,
            // E_NO_LONGER_MASTER and anything unexpected: may or may not have happened.
            _ => Some(None),
        },
    }
}

fn parse_master(rpc: &Rpc, n: usize) -> Option<usize> {
    if let Rpc::Answer(Ok(Response::WhoMaster(Some(name)))) = rpc {
        let i: usize = std::str::from_utf8(name)
            .ok()?
            .strip_prefix('n')?
            .parse()
            .ok()?;
        return (i < n).then_some(i);
    }
    None
}

async fn client(world: Arc<World>, id: usize, mut rng: Rng, stop: Arc<AtomicBool>) {
    let n = world.plan.nodes;
    let mut master: Option<usize> = None;
    let mut last_seen: BTreeMap<u64, Option<Bytes>> = BTreeMap::new();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        // Mostly the master it believes in; sometimes any node (a client that reconnected).
        let target = match master {
            Some(m) if !rng.chance(0.15) => m,
            _ => rng.below(n as u64) as usize,
        };
        let (k, request, op) = client_op(&mut rng, id, seq, &last_seen);
        let invoked = world.now();
        let rpc = world.rpc(target, request).await;
        let completed_at = world.now();
        if let Rpc::Answer(Ok(Response::Get(v))) = &rpc {
            last_seen.insert(k, Some(v.clone()));
        }
        if let Rpc::Answer(Ok(Response::TestAndSet(found))) = &rpc {
            last_seen.insert(k, found.clone());
        }
        let lost_master = match &rpc {
            Rpc::Answer(Err(e)) => matches!(
                e.code,
                ErrorCode::NotMaster | ErrorCode::NoLongerMaster | ErrorCode::GoingDown
            ),
            Rpc::Answer(Ok(_)) => false,
            _ => true,
        };
        if let Some(completed) = judge(&op, &rpc) {
            let mut t = lock(&world.trace);
            t.add(invoked ^ (k << 56));
            t.add(completed_at);
            drop(t);
            lock(&world.history).push(HistoryOp {
                key: format!("k{k}").into_bytes(),
                op,
                invoked,
                completed: completed.map(|r| (completed_at, r)),
            });
        }
        if lost_master {
            let ask = rng.below(n as u64) as usize;
            master = parse_master(&world.rpc(ask, Request::WhoMaster).await, n);
        } else {
            master = Some(target);
        }
        tokio::time::sleep(Duration::from_millis(rng.range(1, 40))).await;
    }
}

/// A digest of node `i`'s store: (applied index, contents hash).
fn digest(shared: &Shared) -> (u64, u64) {
    let store = shared
        .store
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut t = Trace::default();
    for (k, v) in store.iter() {
        t.add_bytes(k);
        t.add_bytes(v);
    }
    (store.applied_index().unwrap_or(0), t.0)
}

fn sample_agreement(world: &World, seen: &mut BTreeMap<u64, (u64, usize)>) {
    let slots = lock(&world.slots);
    for (i, slot) in slots.iter().enumerate() {
        if let Some(up) = &slot.up {
            let (index, hash) = digest(&up.shared);
            if index == 0 {
                continue;
            }
            match seen.get(&index) {
                Some(&(h, other)) if h != hash => world.violation(
                    "agreement",
                    format!("n{i} and n{other} hold different stores at applied index {index}"),
                ),
                Some(_) => {}
                None => {
                    seen.insert(index, (hash, i));
                }
            }
        }
    }
}

/// One nemesis action.
fn nemesis(world: &Arc<World>, rng: &mut Rng) {
    let plan = &world.plan;
    let n = plan.nodes;
    let i = rng.below(n as u64) as usize;
    match rng.below(6) {
        0 if plan.crashes && world.up(i) && !world.repair_in_progress() => {
            {
                let last_index = lock(&world.slots)[i]
                    .up
                    .as_ref()
                    .map_or(u64::MAX, |u| u.shared.view().last_index);
                world.count("crashes");
                if std::env::var_os("SIM_DEBUG").is_some() {
                    eprintln!("t={:?} n{i} crash", world.start.elapsed());
                }
                world.note(0xC0 ^ i as u64);
                world.kill(i, true);
                // Corrupt a synced block of the crashed node's disk, but only while the others
                // are healthy: its repair (an empty home, caught up from the peers) relies on
                // them, as the operations guide says. Healthy here: up, at the same applied
                // index, and no other repair within the last 10 s.
                if plan.corruption && rng.chance(0.3) && world.others_healthy(i, last_index) {
                    corrupt(world, i, rng);
                }
                lock(&world.slots)[i].restart_at =
                    Some(Instant::now() + Duration::from_millis(rng.range(100, 3000)));
            }
        }
        1 if plan.partitions => {
            world.count("partitions");
            let j = (i + 1 + rng.below(n as u64 - 1) as usize) % n;
            let both = rng.chance(0.5);
            world.net.cut(i, j, true);
            if both {
                world.net.cut(j, i, true);
            }
            if rng.chance(0.3) {
                // Isolate i completely.
                for j in 0..n {
                    if j != i {
                        world.net.cut(i, j, true);
                        world.net.cut(j, i, true);
                    }
                }
            }
        }
        2 if plan.partitions => world.net.heal_all(),
        3 if plan.link_resets => {
            world.count("link resets");
            let j = (i + 1) % n;
            world.net.reset_link(i, j);
        }
        4 if plan.pauses => {
            // Mostly the master the clients use (the last to serve a consistent read): a
            // stalled master past its lease, with reads waiting, is the dangerous case.
            let master = lock(&world.reads)
                .last()
                .map(|r| r.node)
                .filter(|&j| world.up(j));
            let i = match master {
                Some(m) if rng.chance(0.9) => m,
                _ => i,
            };
            let gate = Arc::clone(&lock(&world.slots)[i].gate);
            if !gate.paused() && world.up(i) {
                world.count("pauses");
                gate.pause();
                if std::env::var_os("SIM_DEBUG").is_some() {
                    eprintln!("t={:?} pause n{i} master={master:?}", world.start.elapsed());
                }
                let resume_in = LEASE.mul_f64(1.0 + 4.0 * rng.unit());
                let order = rng.next_u64();
                tokio::spawn(async move {
                    tokio::time::sleep(resume_in).await;
                    gate.resume_shuffled(order);
                    if std::env::var_os("SIM_DEBUG").is_some() {
                        eprintln!("resume");
                    }
                });
            }
        }
        5 if plan.disk_errors && !world.repair_in_progress() => {
            let slots = lock(&world.slots);
            if slots[i].up.is_some() {
                world.count("disk faults armed");
                let fault = if rng.chance(0.5) {
                    SimFault::NoSpace
                } else {
                    SimFault::Io
                };
                if rng.chance(0.5) {
                    slots[i].fs.fail_sync(rng.below(4), fault);
                } else {
                    slots[i].fs.fail_write(rng.below(8), fault);
                }
            }
        }
        _ => {}
    }
}

/// Flips one bit of one durable file of (crashed) node `i`.
fn corrupt(world: &World, i: usize, rng: &mut Rng) {
    let mut slots = lock(&world.slots);
    let slot = &mut slots[i];
    let mut files = Vec::new();
    for dir in [home(i), home(i).join("wal")] {
        for name in slot.fs.list_dir(&dir).unwrap_or_default() {
            let path = dir.join(&name);
            let len = slot.fs.contents(&path).map(|c| c.len()).unwrap_or(0);
            if len > 0 {
                files.push((path, len));
            }
        }
    }
    if files.is_empty() {
        return;
    }
    let (path, len) = files[rng.below(files.len() as u64) as usize].clone();
    let offset = rng.below(len as u64) as usize;
    if slot.fs.flip_bit(&path, offset, rng.below(8) as u8).is_ok() {
        slot.corrupted = Some(path);
        world.count("corruptions");
    }
}

/// Restarts failed (fail-stopped) and due nodes.
fn supervise(world: &Arc<World>, rng: &mut Rng) {
    let n = world.plan.nodes;
    for i in 0..n {
        let (failed, due) = {
            let slots = lock(&world.slots);
            let slot = &slots[i];
            let failed = slot.up.as_ref().and_then(|u| lock(&u.failed).clone());
            let due = slot.up.is_none() && slot.restart_at.is_some_and(|t| Instant::now() >= t);
            (failed, due)
        };
        if let Some(why) = failed {
            // The node stopped itself (a disk error): the process exits, and the machine is
            // taken down with it (after a failed fsync the page cache cannot be trusted).
            world.count("fail-stops");
            if std::env::var_os("SIM_DEBUG").is_some() {
                eprintln!("t={:?} n{i} fail-stop: {why}", world.start.elapsed());
            }
            world.kill(i, true);
            lock(&world.slots)[i].restart_at =
                Some(Instant::now() + Duration::from_millis(rng.range(100, 1000)));
        } else if due {
            world.restart(i);
        }
    }
}

fn check_leases(world: &World) {
    let reads = lock(&world.reads);
    // Per (node, ballot): the interval of true time over which it served consistent reads.
    let mut spans: BTreeMap<(usize, Ballot), (u64, u64)> = BTreeMap::new();
    for r in reads.iter() {
        let e = spans.entry((r.node, r.ballot)).or_insert((r.at, r.at));
        e.0 = e.0.min(r.at);
        e.1 = e.1.max(r.at);
    }
    let spans: Vec<_> = spans.into_iter().collect();
    for (a, &((na, ba), (fa, la))) in spans.iter().enumerate() {
        for &((nb, bb), (fb, lb)) in &spans[a + 1..] {
            if na != nb && fa <= lb && fb <= la {
                world.violation(
                    "lease",
                    format!(
                        "n{na} (ballot {}.{}) served consistent reads over [{fa}, {la}] ns and \
                         n{nb} (ballot {}.{}) over [{fb}, {lb}] ns: two nodes held the lease at \
                         once",
                        ba.round, ba.node.0, bb.round, bb.node.0
                    ),
                );
                return;
            }
        }
    }
}

/// Runs seed `seed` (with the node broken as `sabotage` says) and checks it.
pub async fn run(seed: u64, sabotage: Sabotage) -> Outcome {
    let mut rng = Rng::new(seed);
    let plan = Plan::draw(&mut rng);
    let config = cluster_config(&plan);
    let names: Vec<String> = (0..plan.nodes).map(|i| format!("n{i}")).collect();
    let net = Net::new(plan.nodes, rng.fork(), plan.net);
    let world = Arc::new(World {
        seed,
        start: Instant::now(),
        config,
        names,
        net,
        sabotage,
        slots: Mutex::new(
            (0..plan.nodes)
                .map(|i| Slot {
                    fs: SimFs::new(mix(seed ^ 0xF5 ^ i as u64)),
                    gate: Arc::default(),
                    tasks: Vec::new(),
                    up: None,
                    incarnation: 0,
                    restart_at: None,
                    corrupted: None,
                    wiped_at: None,
                    catching_up_to: None,
                })
                .collect(),
        ),
        plan,
        reads: Arc::default(),
        history: Mutex::new(Vec::new()),
        violations: Mutex::new(Vec::new()),
        stats: Mutex::new(BTreeMap::new()),
        trace: Mutex::new(Trace::default()),
        io_rng: Mutex::new(rng.fork()),
    });
    for i in 0..world.plan.nodes {
        if let Err(e) = world.start_node(i) {
            world.violation(
                "restart",
                format!("n{i} did not start on an empty disk: {e}"),
            );
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| tokio::spawn(client(Arc::clone(&world), c, rng.fork(), Arc::clone(&stop))))
        .collect();

    // Fault phase.
    let mut agreement = BTreeMap::new();
    let fault_end = Instant::now() + world.plan.fault_time;
    while Instant::now() < fault_end {
        let every = world.plan.nemesis_every.as_millis() as u64;
        tokio::time::sleep(Duration::from_millis(rng.range(every / 2, every * 3 / 2))).await;
        nemesis(&world, &mut rng);
        supervise(&world, &mut rng);
        sample_agreement(&world, &mut agreement);
    }

    // Heal: no more faults; every node up and running.
    world.net.set_faults(NetFaults::CLEAN);
    world.net.heal_all();
    for i in 0..world.plan.nodes {
        let slots = lock(&world.slots);
        slots[i].gate.resume();
        drop(slots);
    }
    let healed = Instant::now();
    loop {
        {
            let mut slots = lock(&world.slots);
            for slot in slots.iter_mut() {
                // Disarm pending disk faults (a countdown that never ends replaces them).
                slot.fs.fail_sync(u64::MAX, SimFault::Io);
                slot.fs.fail_write(u64::MAX, SimFault::Io);
                if slot.up.is_none() {
                    slot.restart_at.get_or_insert_with(Instant::now);
                }
            }
        }
        supervise(&world, &mut rng);
        if (0..world.plan.nodes).all(|i| world.up(i)) || healed.elapsed() > LIVENESS_BOUND {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Liveness: a write commits within the bound.
    let mut live = false;
    let mut target = 0;
    while healed.elapsed() < LIVENESS_BOUND {
        supervise(&world, &mut rng);
        let invoked = world.now();
        let value = Bytes::from_static(b"live");
        let rpc = world
            .rpc(
                target,
                Request::Set {
                    key: Bytes::from_static(b"live"),
                    value: value.clone(),
                },
            )
            .await;
        let op = KvOp::Set(value.to_vec());
        if let Some(completed) = judge(&op, &rpc) {
            let ok = completed.is_some();
            lock(&world.history).push(HistoryOp {
                key: b"live".to_vec(),
                op,
                invoked,
                completed: completed.map(|r| (world.now(), r)),
            });
            if ok {
                live = true;
                break;
            }
        }
        target = parse_master(
            &world.rpc(target, Request::WhoMaster).await,
            world.plan.nodes,
        )
        .unwrap_or((target + 1) % world.plan.nodes);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let liveness_took = healed.elapsed();
    if !live {
        world.violation(
            "liveness",
            format!("no write committed within {LIVENESS_BOUND:?} after the faults healed"),
        );
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }

    // Durability: read every key back from the master (checked with the history).
    if live {
        for k in 0..KEYS {
            let key = format!("k{k}");
            for _attempt in 0..20 {
                let invoked = world.now();
                let rpc = world
                    .rpc(
                        target,
                        Request::Get {
                            consistency: Consistency::Consistent,
                            key: Bytes::from(key.clone()),
                        },
                    )
                    .await;
                if let Some(Some(result)) = judge(&KvOp::Get, &rpc) {
                    lock(&world.history).push(HistoryOp {
                        key: key.clone().into_bytes(),
                        op: KvOp::Get,
                        invoked,
                        completed: Some((world.now(), result)),
                    });
                    break;
                }
                target = parse_master(
                    &world.rpc(target, Request::WhoMaster).await,
                    world.plan.nodes,
                )
                .unwrap_or((target + 1) % world.plan.nodes);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    // Convergence: every node ends with the same store.
    let converge_start = Instant::now();
    let mut converged = false;
    while converge_start.elapsed() < CONVERGENCE_BOUND {
        supervise(&world, &mut rng);
        sample_agreement(&world, &mut agreement);
        let digests: Vec<Option<(u64, u64)>> = lock(&world.slots)
            .iter()
            .map(|s| s.up.as_ref().map(|u| digest(&u.shared)))
            .collect();
        if digests.iter().all(|d| d.is_some() && *d == digests[0]) {
            converged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if !converged {
        let digests: Vec<Option<(u64, String)>> =
            lock(&world.slots)
                .iter()
                .map(|s| {
                    s.up.as_ref().map(|u| {
                    let v = u.shared.view();
                    (
                        digest(&u.shared).0,
                        format!(
                            "{:?} master {:?} committed {} last {} promised {}.{} {:?} paused {}",
                            v.role, v.master, v.committed, v.last_index, v.promised.round,
                            v.promised.node.0, *u.shared.progress.borrow(), s.gate.paused()
                        ),
                    )
                })
                })
                .collect();
        if std::env::var_os("SIM_DEBUG").is_some() {
            eprintln!("links (sent, dropped, delivered): {:?}", world.net.links());
        }
        world.violation(
            "convergence",
            format!("the stores did not converge within {CONVERGENCE_BOUND:?}: applied indexes {digests:?}"),
        );
    }

    // Linearizability of everything the clients saw.
    let history = lock(&world.history).clone();
    match paxos_core::linearizability::check(&history, LINEARIZABILITY_STEPS) {
        Verdict::Linearizable => {}
        Verdict::NotLinearizable { key, ops } => {
            let mut detail = format!(
                "key {}: no order explains these {} operations:\n",
                String::from_utf8_lossy(&key),
                ops.len()
            );
            for op in ops.iter().rev().take(40).rev() {
                detail.push_str(&format!("  {op:?}\n"));
            }
            world.violation("linearizability", detail);
        }
        Verdict::Unknown { key } => {
            world.count("linearizability undecided");
            let _ = key;
        }
    }
    check_leases(&world);

    // Masters seen (for the report) and a clean end.
    let masters = lock(&world.slots)
        .iter()
        .filter(|s| {
            s.up.as_ref()
                .is_some_and(|u| u.shared.view().role == NodeRole::Master)
        })
        .count();
    let _ = masters;
    let virtual_time = world.start.elapsed();
    for i in 0..world.plan.nodes {
        world.kill(i, false);
    }
    let mut stats = lock(&world.stats).clone();
    stats.insert("history ops", history.len() as u64);
    stats.insert("consistent reads", lock(&world.reads).len() as u64);
    let past = lock(&world.reads).iter().filter(|r| r.past_lease).count() as u64;
    if past > 0 {
        stats.insert("consistent reads past the lease", past);
    }
    let (sent, delivered) = world.net.counts();
    stats.insert("messages sent", sent);
    stats.insert("messages delivered", delivered);
    stats.insert("liveness ms", liveness_took.as_millis() as u64);
    let mut trace = *lock(&world.trace);
    trace.add(world.net.trace().0);
    for op in &history {
        trace.add_bytes(format!("{op:?}").as_bytes());
    }
    if let Some(reuse) = world.net.ballot_reuses().first() {
        world.violation("ballot", reuse.clone());
    }
    let violations = lock(&world.violations).clone();
    Outcome {
        seed,
        plan: world.plan.clone(),
        violations,
        trace: trace.0,
        virtual_time,
        stats,
    }
}
