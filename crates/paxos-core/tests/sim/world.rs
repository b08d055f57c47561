//! The simulated world: nodes running the real core, a faulty network, disks that lose unsynced
//! writes on crash, drifting clocks, pauses, clients, and the checkers run after every event.
//!
//! Everything is driven from one seeded RNG and one event queue ordered by (time, sequence), so
//! a seed replays exactly. Time here is "true" time; each node sees its own drifting clock.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::hash::{Hash, Hasher};

use paxos_core::linearizability::{HistoryOp, KvOp, KvResult, Verdict, check};
use paxos_core::{
    CatchUpRead, Config, Core, Effect, Event, Index, LogEntry, MasterMode, Message, NodeId,
    Persist, ProposalId, RecoveredState, Reply, Role, Sabotage, Time, Value,
};

use super::kv::{Store, encode};

/// Milliseconds in nanoseconds.
pub const MS: Time = 1_000_000;

/// SplitMix64: the one RNG of a run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[lo, hi]`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.next() % (hi - lo + 1)
        }
    }
    pub fn chance(&mut self, permille: u64) -> bool {
        self.next() % 1000 < permille
    }
    /// Roughly log-uniform in `[lo, hi]`: a uniform octave, then uniform inside it. Integers
    /// only, so a seed replays the same on every platform.
    pub fn log_uniform(&mut self, lo: u64, hi: u64) -> u64 {
        let lo = lo.max(1);
        if hi <= lo {
            return lo;
        }
        let octaves = u64::from(63 - (hi / lo).leading_zeros());
        let a = lo << self.range(0, octaves);
        self.range(a, a.saturating_mul(2).saturating_sub(1).min(hi))
    }
}

/// The fault and cluster options of one run ("swarm": chosen per seed).
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub seed: u64,
    pub voters: usize,
    pub witness: bool,
    pub learner: bool,
    pub lease: Time,
    pub delay: (Time, Time),
    pub drop_permille: u64,
    pub dup_permille: u64,
    /// Links deliver out of order (otherwise FIFO per link, like TCP).
    pub reorder: bool,
    /// Base fsync latency range (each fsync draws uniformly from it).
    pub disk: (Time, Time),
    /// Per-node fsync latency factor while faults are on (empty: all 1). The swarm draws each
    /// node's factor log-uniformly from 1x to 1000x; after the heal every disk is back to its
    /// base latency (a disk slower than the lease is a fault, like a slow link).
    pub disk_factors: Vec<u64>,
    /// Fsync jitter while faults are on: each fsync, with this chance, takes 2x..100x (log-
    /// uniform) longer than drawn.
    pub fsync_stall_permille: u64,
    /// Crashes aimed between a `Persist` and its `Durable`, only while faults are on: with
    /// this chance per persist that carries a promise, or a twentieth of it per entries-only
    /// persist, the node crashes at a random instant before that persist's fsync completes,
    /// losing every outstanding persist or (torn) keeping a prefix of those before it in ticket
    /// order; it restarts soon (within a tenth of a lease). One such crash is aimed at a time,
    /// and none for a quarter to two leases after one happened.
    pub persist_crash_permille: u64,
    pub partitions: bool,
    pub crashes: bool,
    pub pauses: bool,
    pub collapses: bool,
    /// Several nodes lose power at once (unsynced writes lost) and come back quickly.
    pub power_failures: bool,
    /// Actual clock-rate deviation bound of the simulated clocks (ppm, each clock +-).
    pub drift_ppm: u64,
    /// Drift bound given to the cores' configuration.
    pub cfg_drift_ppm: u64,
    pub fault_time: Time,
    pub settle_time: Time,
    pub clients: usize,
    pub max_in_flight: usize,
    pub sabotage: Sabotage,
    pub mode: MasterMode,
    pub preferred: Vec<NodeId>,
    pub quorum: Option<usize>,
    pub election_jitter: Option<Time>,
}

impl SimOptions {
    /// Quiet defaults: no faults, 3 voters.
    pub fn quiet(seed: u64, voters: usize) -> SimOptions {
        SimOptions {
            seed,
            voters,
            witness: false,
            learner: false,
            lease: 1_000 * MS,
            delay: (MS / 10, MS),
            drop_permille: 0,
            dup_permille: 0,
            reorder: false,
            disk: (MS / 20, MS / 2),
            disk_factors: Vec::new(),
            fsync_stall_permille: 0,
            persist_crash_permille: 0,
            partitions: false,
            crashes: false,
            pauses: false,
            collapses: false,
            power_failures: false,
            drift_ppm: 0,
            cfg_drift_ppm: 50_000,
            fault_time: 0,
            settle_time: 6_000 * MS,
            clients: 3,
            max_in_flight: 4,
            sabotage: Sabotage::default(),
            mode: MasterMode::Elected,
            preferred: Vec::new(),
            quorum: None,
            election_jitter: None,
        }
    }

    /// Options chosen from the seed: every fault kind on or off, parameters random.
    pub fn swarm(seed: u64) -> SimOptions {
        let mut r = Rng::new(seed.wrapping_mul(31).wrapping_add(7));
        let voters = if r.chance(500) { 3 } else { 5 };
        let mut o = SimOptions::quiet(seed, voters);
        o.learner = r.chance(400);
        o.witness = voters == 5 && r.chance(250);
        let max_delay = r.range(MS / 2, 20 * MS);
        o.delay = (r.range(0, MS / 2), max_delay);
        o.drop_permille = if r.chance(500) { r.range(1, 150) } else { 0 };
        o.dup_permille = if r.chance(400) { r.range(1, 100) } else { 0 };
        o.reorder = r.chance(300);
        o.disk = (r.range(MS / 50, MS), r.range(MS, 10 * MS));
        o.partitions = r.chance(600);
        o.crashes = r.chance(600);
        o.pauses = r.chance(400);
        o.collapses = r.chance(400);
        o.drift_ppm = if r.chance(500) {
            r.range(0, o.cfg_drift_ppm)
        } else {
            0
        };
        o.fault_time = r.range(4_000, 12_000) * MS;
        o.clients = r.range(1, 5) as usize;
        o.max_in_flight = r.range(1, 8) as usize;
        // Drawn last so that adding it kept every earlier seed's other options unchanged.
        o.power_failures = r.chance(300);
        // Disk latency and crashes between persist and durable (ADR 0106), drawn after
        // everything above for the same reason.
        let total = voters + usize::from(o.learner);
        if r.chance(400) {
            o.disk_factors = (0..total).map(|_| r.log_uniform(1, 1000)).collect();
        }
        o.fsync_stall_permille = if r.chance(300) { r.range(1, 200) } else { 0 };
        o.persist_crash_permille = if r.chance(400) { r.range(50, 1000) } else { 0 };
        // Arakoon's forced master (node 0, always a voter): after a crash the same node stands
        // again, with whatever round it recovered.
        if r.chance(150) {
            o.mode = MasterMode::Forced(NodeId(0));
        }
        o
    }

    /// The options without the disk-latency and persist-aimed crash faults and in elected mode
    /// (seeds found before those joined the swarm replay as they were found).
    pub fn without_disk_faults(mut self) -> SimOptions {
        self.disk_factors.clear();
        self.fsync_stall_permille = 0;
        self.persist_crash_permille = 0;
        self.mode = MasterMode::Elected;
        self
    }
}

#[derive(Debug, Clone)]
enum Ev {
    Deliver {
        to: usize,
        from: usize,
        incarnation: u32,
        msg: Message,
    },
    Tick {
        node: usize,
        incarnation: u32,
    },
    Fsync {
        node: usize,
        incarnation: u32,
        /// Superseded when the node's fsync is rescheduled (at the heal).
        generation: u64,
    },
    /// Crash aimed between persist `ticket` and its `Durable`.
    PersistCrash {
        node: usize,
        incarnation: u32,
        ticket: u64,
    },
    Local {
        node: usize,
        incarnation: u32,
        event: Event,
    },
    SnapshotArrive {
        node: usize,
        incarnation: u32,
        peer: usize,
    },
    Crash {
        node: usize,
    },
    Restart {
        node: usize,
    },
    Pause {
        node: Option<usize>,
        duration: Time,
    },
    Partition,
    Collapse {
        node: usize,
    },
    PowerFailure,
    Heal,
    ClientGo {
        client: usize,
    },
    ClientTimeout {
        client: usize,
        seq: u64,
    },
    /// Scripted action for named scenarios.
    Script(Script),
}

/// Actions a scenario can schedule.
#[derive(Debug, Clone)]
pub enum Script {
    Crash(usize),
    Restart(usize),
    Block {
        from: usize,
        to: usize,
    },
    Unblock {
        from: usize,
        to: usize,
    },
    Isolate(usize),
    HealAll,
    Pause {
        node: usize,
        duration: Time,
    },
    DropMaster(usize),
    /// Crash losing every unsynced write.
    CrashLosingAll(usize),
    /// Change a node's clock rate (continuously: local time does not jump).
    SetClockRate {
        node: usize,
        ppm: i64,
    },
    /// Multiply a node's disk latency.
    SlowDisk {
        node: usize,
        factor: u64,
    },
    Inject {
        from: usize,
        to: usize,
        msg: Message,
    },
}

struct Queued {
    at: Time,
    seq: u64,
    ev: Ev,
}
impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

#[derive(Debug, Clone, Default)]
struct Disk {
    promised: paxos_core::Ballot,
    committed: Index,
    entries: BTreeMap<Index, LogEntry>,
    snap_index: Index,
    snap_store: Store,
}

struct SimNode {
    role: Role,
    core: Option<Core>,
    incarnation: u32,
    disk: Disk,
    unsynced: Vec<Persist>,
    fsync_pending: bool,
    /// When the pending fsync completes, and its generation.
    fsync_due: Time,
    fsync_generation: u64,
    base: Index,
    log: Vec<Value>,
    store: Store,
    rate_ppm: i64,
    offset: i128,
    /// Disk latency multiplier (scenarios make one node's disk slow).
    disk_factor: u64,
    paused_until: Time,
}

impl SimNode {
    fn local(&self, t: Time) -> Time {
        let t = i128::from(t);
        (self.offset + t + t * i128::from(self.rate_ppm) / 1_000_000) as Time
    }
    fn to_true(&self, local: Time) -> Time {
        let l = i128::from(local) - self.offset;
        (l * 1_000_000 / (1_000_000 + i128::from(self.rate_ppm))).max(0) as Time
    }
    fn applied(&self) -> Index {
        self.base + self.log.len() as Index
    }
}

struct Pending {
    seq: u64,
    node: usize,
    id: ProposalId,
    history: usize,
    result: Option<KvResult>,
}

struct Client {
    target: usize,
    seq: u64,
    pending: Option<Pending>,
    completed: u64,
    last_completion: Time,
}

/// Summary of a run.
#[derive(Debug, Clone)]
pub struct SimReport {
    pub seed: u64,
    pub options: String,
    pub violations: Vec<String>,
    pub trace_hash: u64,
    pub events: u64,
    pub virtual_time: Time,
    pub committed: Index,
    pub completed_ops: u64,
    pub masters_elected: u64,
    pub linearizability: String,
    /// Time from the heal to the first master elected after it (if one was needed).
    pub election_after_heal: Option<Time>,
    /// Crashes aimed between a persist and its `Durable`.
    pub persist_crashes: u64,
}

impl SimReport {
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
    pub fn describe(&self) -> String {
        format!(
            "seed {} (replay a swarm seed: SIM_SEED={} cargo test -p paxos-core --test simulation -- --nocapture) options {}\nviolations: {:#?}\nevents {} virtual {} ms committed {} ops {} masters {} persist-aimed crashes {} lin {}",
            self.seed,
            self.seed,
            self.options,
            self.violations,
            self.events,
            self.virtual_time / MS,
            self.committed,
            self.completed_ops,
            self.masters_elected,
            self.persist_crashes,
            self.linearizability
        )
    }
}

/// The simulated world.
pub struct World {
    pub opts: SimOptions,
    rng: Rng,
    pub now: Time,
    seq: u64,
    queue: BinaryHeap<Reverse<Queued>>,
    nodes: Vec<SimNode>,
    blocked: Vec<Vec<bool>>,
    link_clock: Vec<Vec<Time>>,
    clients: Vec<Client>,
    pending_ids: BTreeMap<ProposalId, usize>,
    chosen: Vec<Option<u64>>,
    /// Hash of the value each (ballot, index) was proposed with.
    proposed: BTreeMap<(paxos_core::Ballot, Index), u64>,
    claims: Vec<Vec<(Time, Time)>>,
    pub history: Vec<HistoryOp>,
    acked: Vec<(Index, ProposalId)>,
    pub violations: Vec<String>,
    trace: u64,
    pub events: u64,
    faults_on: bool,
    heal_at: Time,
    first_master_after_heal: Option<Time>,
    pub masters_elected: u64,
    pub became_master_log: Vec<(Time, usize)>,
    pub stopped_master_log: Vec<(Time, usize)>,
    pub reads_served: Vec<(Time, usize)>,
    pub released: Vec<(usize, Message)>,
    out: Vec<Effect>,
    tick_interval: Time,
    clients_active: bool,
    pub verbose: bool,
    clients_stopped_at: Option<Time>,
    replied: std::collections::BTreeSet<ProposalId>,
    /// No new persist-aimed crash before this time.
    persist_crash_quiet_until: Time,
    /// A persist-aimed crash is scheduled.
    persist_crash_armed: bool,
    /// Persist-aimed crashes done.
    pub persist_crashes: u64,
}

fn hash_of<T: Hash>(t: &T) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    t.hash(&mut h);
    h.finish()
}

impl World {
    pub fn new(opts: SimOptions) -> World {
        let mut rng = Rng::new(opts.seed);
        let total = opts.voters + usize::from(opts.learner);
        let mut nodes = Vec::with_capacity(total);
        for i in 0..total {
            let role = if i >= opts.voters {
                Role::Learner
            } else if opts.witness && i == opts.voters - 1 {
                Role::Witness
            } else {
                Role::Voter
            };
            let drift = opts.drift_ppm as i64;
            let rate_ppm = if drift == 0 {
                0
            } else {
                rng.range(0, 2 * drift as u64) as i64 - drift
            };
            nodes.push(SimNode {
                role,
                core: None,
                incarnation: 0,
                disk: Disk::default(),
                unsynced: Vec::new(),
                fsync_pending: false,
                fsync_due: 0,
                fsync_generation: 0,
                base: 0,
                log: Vec::new(),
                store: Store::default(),
                rate_ppm,
                offset: i128::from(rng.range(1_000 * MS, 1_000_000 * MS)),
                disk_factor: 1,
                paused_until: 0,
            });
        }
        let lease = opts.lease;
        let clients = (0..opts.clients)
            .map(|i| Client {
                target: i % opts.voters,
                seq: 0,
                pending: None,
                completed: 0,
                last_completion: 0,
            })
            .collect();
        let mut w = World {
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            blocked: vec![vec![false; total]; total],
            link_clock: vec![vec![0; total]; total],
            clients,
            pending_ids: BTreeMap::new(),
            chosen: Vec::new(),
            proposed: BTreeMap::new(),
            claims: vec![Vec::new(); total],
            history: Vec::new(),
            acked: Vec::new(),
            violations: Vec::new(),
            trace: 0,
            events: 0,
            faults_on: opts.fault_time > 0,
            heal_at: opts.fault_time,
            first_master_after_heal: None,
            masters_elected: 0,
            became_master_log: Vec::new(),
            stopped_master_log: Vec::new(),
            reads_served: Vec::new(),
            released: Vec::new(),
            out: Vec::new(),
            tick_interval: lease / 40,
            clients_active: true,
            verbose: false,
            clients_stopped_at: None,
            replied: std::collections::BTreeSet::new(),
            persist_crash_quiet_until: 0,
            persist_crash_armed: false,
            persist_crashes: 0,
            nodes,
            opts,
        };
        for n in 0..total {
            w.restart(n);
        }
        for c in 0..w.clients.len() {
            let at = w.rng.range(0, 10 * MS);
            w.schedule(at, Ev::ClientGo { client: c });
        }
        w.plan_faults();
        w
    }

    fn total(&self) -> usize {
        self.nodes.len()
    }

    fn schedule(&mut self, at: Time, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            at: at.max(self.now),
            seq: self.seq,
            ev,
        }));
    }

    /// Schedules a scripted action.
    pub fn script(&mut self, at: Time, s: Script) {
        self.schedule(at, Ev::Script(s));
    }

    fn config_for(&self, n: usize) -> Config {
        let roles: Vec<Role> = self.nodes.iter().map(|x| x.role).collect();
        let mut cfg = Config::new(NodeId(n as u8), roles, self.opts.lease);
        cfg.max_clock_drift_ppm = self.opts.cfg_drift_ppm;
        cfg.max_in_flight = self.opts.max_in_flight;
        cfg.max_batch_count = 16;
        cfg.max_catch_up_entries = 16;
        cfg.sabotage = self.opts.sabotage;
        cfg.mode = self.opts.mode.clone();
        cfg.preferred_masters = self.opts.preferred.clone();
        cfg.quorum = self.opts.quorum;
        if let Some(j) = self.opts.election_jitter {
            cfg.election_jitter = j;
        }
        cfg
    }

    fn plan_faults(&mut self) {
        let end = self.opts.fault_time;
        if end == 0 {
            return;
        }
        let lease = self.opts.lease;
        if self.opts.partitions {
            let mut t = self.rng.range(0, lease);
            while t < end {
                self.schedule(t, Ev::Partition);
                t += self.rng.range(lease / 2, 3 * lease);
            }
        }
        if self.opts.crashes {
            let mut t = self.rng.range(lease, 3 * lease);
            while t < end {
                let node = self.rng.range(0, self.total() as u64 - 1) as usize;
                self.schedule(t, Ev::Crash { node });
                let back = t + self.rng.range(lease / 10, 3 * lease);
                self.schedule(back.min(end), Ev::Restart { node });
                t += self.rng.range(lease / 2, 4 * lease);
            }
        }
        if self.opts.pauses {
            let mut t = self.rng.range(lease, 4 * lease);
            while t < end {
                let node = if self.rng.chance(500) {
                    None
                } else {
                    Some(self.rng.range(0, self.total() as u64 - 1) as usize)
                };
                let duration = self.rng.range(lease + lease / 5, 3 * lease);
                self.schedule(t, Ev::Pause { node, duration });
                t += self.rng.range(2 * lease, 6 * lease);
            }
        }
        if self.opts.power_failures {
            let mut t = self.rng.range(lease, 3 * lease);
            while t < end {
                self.schedule(t, Ev::PowerFailure);
                t += self.rng.range(lease, 4 * lease);
            }
        }
        if self.opts.collapses {
            let mut t = self.rng.range(lease, 3 * lease);
            while t < end {
                let node = self.rng.range(0, self.total() as u64 - 1) as usize;
                self.schedule(t, Ev::Collapse { node });
                t += self.rng.range(lease / 2, 3 * lease);
            }
        }
        self.schedule(end, Ev::Heal);
    }

    /// Runs the whole scenario: faults, heal, settle, final checks.
    pub fn run(mut self) -> SimReport {
        let end = self.opts.fault_time + self.opts.settle_time;
        let stop_clients = end.saturating_sub(self.opts.lease * 2);
        self.run_until(stop_clients);
        self.clients_active = false;
        self.clients_stopped_at = Some(self.now);
        self.run_until(end);
        self.final_checks();
        self.report()
    }

    pub fn run_until(&mut self, until: Time) {
        while self.step_before(until) {}
        self.now = self.now.max(until);
    }

    /// Handles the next event if it is due at or before `until`; false if there is none (or
    /// too many violations were found to go on).
    fn step_before(&mut self, until: Time) -> bool {
        if self.violations.len() > 20 {
            return false;
        }
        match self.queue.peek() {
            Some(Reverse(q)) if q.at <= until => {}
            _ => return false,
        }
        let Some(Reverse(q)) = self.queue.pop() else {
            return false;
        };
        self.now = q.at;
        self.events += 1;
        self.handle(q.ev);
        true
    }

    /// Runs event by event until `pred` holds (checked before each event) or `until` passes;
    /// returns whether `pred` held. Lets scenarios act at the exact step something happens.
    pub fn run_until_true(&mut self, until: Time, mut pred: impl FnMut(&World) -> bool) -> bool {
        loop {
            if pred(self) {
                return true;
            }
            if !self.step_before(until) {
                self.now = self.now.max(until);
                return pred(self);
            }
        }
    }

    fn alive(&self, n: usize, incarnation: u32) -> bool {
        self.nodes[n].core.is_some() && self.nodes[n].incarnation == incarnation
    }

    /// Requeues the event if the node is paused; returns true if it was.
    fn deferred_by_pause(&mut self, n: usize, ev: &Ev) -> bool {
        if self.nodes[n].paused_until > self.now {
            let at = self.nodes[n].paused_until;
            self.schedule(at, ev.clone());
            true
        } else {
            false
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver {
                to,
                from,
                incarnation,
                ref msg,
            } => {
                if !self.alive(to, incarnation) || self.deferred_by_pause(to, &ev) {
                    return;
                }
                let msg = msg.clone();
                self.feed(
                    to,
                    Event::Message {
                        from: NodeId(from as u8),
                        msg,
                    },
                );
            }
            Ev::Tick { node, incarnation } => {
                if !self.alive(node, incarnation) || self.deferred_by_pause(node, &ev) {
                    return;
                }
                self.feed(node, Event::Tick);
                let next = self.now + self.tick_interval;
                self.schedule(next, Ev::Tick { node, incarnation });
            }
            Ev::Fsync {
                node,
                incarnation,
                generation,
            } => {
                if !self.alive(node, incarnation)
                    || generation != self.nodes[node].fsync_generation
                    || self.deferred_by_pause(node, &ev)
                {
                    return;
                }
                let writes = std::mem::take(&mut self.nodes[node].unsynced);
                self.nodes[node].fsync_pending = false;
                let mut top = 0;
                for p in writes {
                    top = top.max(p.ticket);
                    write_disk(&mut self.nodes[node].disk, p);
                }
                if top > 0 {
                    self.feed(node, Event::Durable { ticket: top });
                }
            }
            Ev::Local {
                node,
                incarnation,
                ref event,
            } => {
                if !self.alive(node, incarnation) || self.deferred_by_pause(node, &ev) {
                    return;
                }
                let event = event.clone();
                self.feed(node, event);
            }
            Ev::SnapshotArrive {
                node,
                incarnation,
                peer,
            } => {
                if !self.alive(node, incarnation) || self.deferred_by_pause(node, &ev) {
                    return;
                }
                self.install_snapshot(node, peer);
            }
            Ev::PersistCrash {
                node,
                incarnation,
                ticket,
            } => self.persist_crash(node, incarnation, ticket),
            Ev::Crash { node } => self.crash(node),
            Ev::Restart { node } => {
                if self.nodes[node].core.is_none() {
                    self.restart(node);
                }
            }
            Ev::Pause { node, duration } => {
                let n = node.or_else(|| self.current_master()).unwrap_or(0);
                let until = (self.now + duration).min(self.heal_at.max(self.now));
                self.nodes[n].paused_until = until;
            }
            Ev::Partition => self.random_partition(),
            Ev::Collapse { node } => self.collapse(node),
            Ev::PowerFailure => self.power_failure(),
            Ev::Heal => self.heal(),
            Ev::ClientGo { client } => self.client_go(client),
            Ev::ClientTimeout { client, seq } => self.client_timeout(client, seq),
            Ev::Script(s) => self.run_script(s),
        }
    }

    fn run_script(&mut self, s: Script) {
        match s {
            Script::Crash(n) => self.crash(n),
            Script::Restart(n) => {
                if self.nodes[n].core.is_none() {
                    self.restart(n);
                }
            }
            Script::Block { from, to } => self.blocked[from][to] = true,
            Script::Unblock { from, to } => self.blocked[from][to] = false,
            Script::Isolate(n) => {
                for m in 0..self.total() {
                    if m != n {
                        self.blocked[n][m] = true;
                        self.blocked[m][n] = true;
                    }
                }
            }
            Script::HealAll => {
                for row in &mut self.blocked {
                    row.fill(false);
                }
            }
            Script::Pause { node, duration } => self.nodes[node].paused_until = self.now + duration,
            Script::DropMaster(n) => {
                if self.nodes[n].core.is_some() {
                    self.feed(n, Event::DropMaster);
                }
            }
            Script::CrashLosingAll(n) => self.crash_keeping(n, false),
            Script::SetClockRate { node, ppm } => {
                let now = self.now;
                let x = &mut self.nodes[node];
                let local = i128::from(x.local(now));
                let t = i128::from(now);
                x.rate_ppm = ppm;
                x.offset = local - t - t * i128::from(ppm) / 1_000_000;
            }
            Script::SlowDisk { node, factor } => self.nodes[node].disk_factor = factor,
            Script::Inject { from, to, msg } => {
                let inc = self.nodes[to].incarnation;
                self.schedule(
                    self.now,
                    Ev::Deliver {
                        to,
                        from,
                        incarnation: inc,
                        msg,
                    },
                );
            }
        }
    }

    /// Feeds one event to node `n`'s core and executes the effects.
    fn feed(&mut self, n: usize, event: Event) {
        let local = self.nodes[n].local(self.now);
        let entropy = self.rng.next();
        let kind = event_kind(&event);
        if self.verbose {
            eprintln!("{:>9}us n{n} <- {event:?}", self.now / 1000);
        }
        let mut out = std::mem::take(&mut self.out);
        let Some(core) = self.nodes[n].core.as_mut() else {
            return;
        };
        if let Err(e) = core.step(local, entropy, event, &mut out) {
            self.violations.push(format!(
                "t={} node {n}: core refused an event: {e}",
                self.now
            ));
        }
        self.trace = hash_of(&(self.trace, self.now, n, kind, out.len(), core.committed()));
        for effect in out.drain(..) {
            if self.verbose {
                eprintln!("{:>9}us n{n} -> {effect:?}", self.now / 1000);
            }
            self.execute(n, effect);
        }
        self.out = out;
        self.check_lease(n);
    }

    fn execute(&mut self, n: usize, effect: Effect) {
        let inc = self.nodes[n].incarnation;
        match effect {
            Effect::Persist(p) => {
                let (ticket, promise) = (p.ticket, p.promise.is_some());
                self.nodes[n].unsynced.push(p);
                if !self.nodes[n].fsync_pending {
                    let at = self.now + self.fsync_latency(n);
                    self.schedule_fsync(n, at);
                }
                self.maybe_aim_crash(n, ticket, promise);
            }
            Effect::Send { to, msg } => {
                self.check_one_value_per_ballot(n, &msg);
                self.send(n, to.index(), msg);
            }
            Effect::Broadcast(msg) => {
                self.check_one_value_per_ballot(n, &msg);
                if let Message::LeaseReleased { .. } = msg {
                    self.released.push((n, msg.clone()));
                }
                for to in 0..self.total() {
                    if to != n {
                        self.send(n, to, msg.clone());
                    }
                }
            }
            Effect::Apply { index, value } => self.apply(n, index, value),
            Effect::Reply { id, reply } => self.on_reply(n, id, reply),
            Effect::BecameMaster => {
                self.masters_elected += 1;
                self.became_master_log.push((self.now, n));
            }
            Effect::StoppedBeingMaster => self.stopped_master_log.push((self.now, n)),
            Effect::ServeCatchUp { peer, from, up_to } => {
                let read = self.read_log(n, from, up_to);
                self.schedule(
                    self.now,
                    Ev::Local {
                        node: n,
                        incarnation: inc,
                        event: Event::CatchUpRead { peer, from, read },
                    },
                );
            }
            Effect::FetchSnapshot { peer } => {
                let at = self.now + self.rng.range(self.opts.delay.0, self.opts.delay.1) * 4;
                self.schedule(
                    at,
                    Ev::SnapshotArrive {
                        node: n,
                        incarnation: inc,
                        peer: peer.index(),
                    },
                );
            }
        }
    }

    /// How long an fsync started now on node `n` takes: the base latency times the script's
    /// factor, and while faults are on the node's swarm factor and maybe a stall.
    fn fsync_latency(&mut self, n: usize) -> Time {
        let base = self.rng.range(self.opts.disk.0, self.opts.disk.1);
        let mut factor = self.nodes[n].disk_factor;
        if self.faults_on {
            factor = factor.saturating_mul(self.opts.disk_factors.get(n).copied().unwrap_or(1));
            if self.opts.fsync_stall_permille > 0 && self.rng.chance(self.opts.fsync_stall_permille)
            {
                factor = factor.saturating_mul(self.rng.log_uniform(2, 100));
            }
        }
        base.saturating_mul(factor)
    }

    /// (Re)schedules node `n`'s one pending fsync; it writes everything unsynced by then.
    fn schedule_fsync(&mut self, n: usize, at: Time) {
        let node = &mut self.nodes[n];
        node.fsync_pending = true;
        node.fsync_due = at;
        node.fsync_generation += 1;
        let ev = Ev::Fsync {
            node: n,
            incarnation: node.incarnation,
            generation: node.fsync_generation,
        };
        self.schedule(at, ev);
    }

    /// The persist-aimed crash fault: maybe crash node `n` before persist `ticket` is durable.
    fn maybe_aim_crash(&mut self, n: usize, ticket: u64, promise: bool) {
        let permille = self.opts.persist_crash_permille;
        if !self.faults_on
            || permille == 0
            || self.persist_crash_armed
            || self.now < self.persist_crash_quiet_until
        {
            return;
        }
        let permille = if promise { permille } else { permille / 20 };
        if !self.rng.chance(permille) {
            return;
        }
        let due = self.nodes[n].fsync_due;
        if due <= self.now + 1 {
            return;
        }
        let at = self.rng.range(self.now, due - 1);
        self.persist_crash_armed = true;
        let incarnation = self.nodes[n].incarnation;
        self.schedule(
            at,
            Ev::PersistCrash {
                node: n,
                incarnation,
                ticket,
            },
        );
    }

    /// Crashes node `n` if persist `ticket` is still outstanding: all outstanding persists are
    /// lost, or (torn write) a prefix of those before `ticket` reached the disk.
    fn persist_crash(&mut self, n: usize, incarnation: u32, ticket: u64) {
        self.persist_crash_armed = false;
        if !self.alive(n, incarnation) || !self.faults_on {
            return;
        }
        let Some(position) = self.nodes[n]
            .unsynced
            .iter()
            .position(|p| p.ticket == ticket)
        else {
            return; // durable already
        };
        let keep = if self.rng.chance(500) {
            0
        } else {
            self.rng.range(0, position as u64) as usize
        };
        if self.verbose {
            eprintln!(
                "{:>9}us n{n} crashes before persist {ticket} is durable (keeps {keep} of {})",
                self.now / 1000,
                self.nodes[n].unsynced.len()
            );
        }
        self.persist_crashes += 1;
        self.crash_keeping_prefix(n, keep);
        let lease = self.opts.lease;
        let back = self.now + self.rng.range(MS, lease / 10);
        self.schedule(
            back.min(self.heal_at.max(self.now)),
            Ev::Restart { node: n },
        );
        self.persist_crash_quiet_until = self.now + self.rng.range(lease / 4, 2 * lease);
    }

    /// What node `n`'s driver reads from its log for a catch-up: applied values, or for a
    /// witness (which keeps the log but applies nothing) its written entries, including writes
    /// not yet synced (they are in the page cache).
    fn read_log(&self, n: usize, from: Index, up_to: Index) -> CatchUpRead {
        let node = &self.nodes[n];
        if node.role != Role::Witness {
            if from <= node.base {
                return CatchUpRead::Pruned {
                    snapshot_index: node.base,
                };
            }
            let lo = (from - node.base - 1) as usize;
            let hi = ((up_to - node.base) as usize).min(node.log.len());
            return CatchUpRead::Values(
                node.log
                    .get(lo..hi)
                    .map(<[Value]>::to_vec)
                    .unwrap_or_default(),
            );
        }
        let mut written = node.disk.clone();
        for p in &node.unsynced {
            write_disk(&mut written, p.clone());
        }
        if from <= written.snap_index {
            return CatchUpRead::Pruned {
                snapshot_index: written.snap_index,
            };
        }
        let values = (from..=up_to)
            .map_while(|i| written.entries.get(&i).map(|e| e.value.clone()))
            .collect();
        CatchUpRead::Values(values)
    }

    fn send(&mut self, from: usize, to: usize, msg: Message) {
        if self.blocked[from][to] {
            return;
        }
        if self.faults_on && self.rng.chance(self.opts.drop_permille) {
            return;
        }
        let inc = self.nodes[to].incarnation;
        let copies = if self.faults_on && self.rng.chance(self.opts.dup_permille) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let (lo, hi) = if self.faults_on {
                self.opts.delay
            } else {
                (self.opts.delay.0.min(MS / 2), self.opts.delay.1.min(MS))
            };
            let mut at = self.now + self.rng.range(lo, hi);
            if !(self.faults_on && self.opts.reorder) {
                at = at.max(self.link_clock[from][to]);
                self.link_clock[from][to] = at;
            }
            self.schedule(
                at,
                Ev::Deliver {
                    to,
                    from,
                    incarnation: inc,
                    msg: msg.clone(),
                },
            );
        }
    }

    fn apply(&mut self, n: usize, index: Index, value: Value) {
        let node = &mut self.nodes[n];
        if index != node.applied() + 1 {
            self.violations.push(format!(
                "t={} node {n}: monotonic commit broken: applied {} then got index {index}",
                self.now,
                node.applied()
            ));
            return;
        }
        let h = hash_of(&value);
        let slot = index as usize - 1;
        if self.chosen.len() <= slot {
            self.chosen.resize(slot + 1, None);
        }
        match self.chosen[slot] {
            Some(c) if c != h => self.violations.push(format!(
                "t={} node {n}: agreement broken at index {index}: {value:?} differs from the value committed before",
                self.now
            )),
            Some(_) => {}
            None => self.chosen[slot] = Some(h),
        }
        if let Value::Batch(items) = &value {
            for p in items {
                let result = node.store.apply(&p.payload);
                if let Some(&c) = self.pending_ids.get(&p.id)
                    && let Some(pending) = self.clients[c].pending.as_mut()
                    && pending.id == p.id
                    && pending.node == n
                {
                    pending.result = Some(result);
                }
            }
        }
        node.log.push(value);
    }

    /// Paxos's own invariant, checked on every accept sent: a ballot proposes at most one value
    /// per index, across every incarnation of its node. (A ballot reused after a crash that
    /// re-proposes differently breaks it before agreement visibly breaks.)
    fn check_one_value_per_ballot(&mut self, n: usize, msg: &Message) {
        let Message::Accept {
            ballot,
            index,
            value,
            ..
        } = msg
        else {
            return;
        };
        let h = hash_of(value);
        match self.proposed.insert((*ballot, *index), h) {
            Some(before) if before != h => self.violations.push(format!(
                "t={} node {n}: one value per ballot broken: ballot {ballot} proposed a second value at index {index}: {value:?}",
                self.now
            )),
            _ => {}
        }
    }

    fn check_lease(&mut self, n: usize) {
        let now = self.now;
        let node = &self.nodes[n];
        let claim = node.core.as_ref().and_then(|c| {
            if c.can_serve_consistent_read(node.local(now)) {
                c.lease_expires().map(|e| node.to_true(e))
            } else {
                None
            }
        });
        match claim {
            Some(end) if end > now => {
                for m in 0..self.total() {
                    if m == n {
                        continue;
                    }
                    if let Some(&(s, e)) =
                        self.claims[m].iter().find(|(s, e)| *e > now && *s <= now)
                    {
                        self.violations.push(format!(
                            "t={now} lease safety broken: node {n} believes it holds the lease until {end} while node {m} believes so in [{s}, {e})"
                        ));
                    }
                }
                let claims = &mut self.claims[n];
                match claims.last_mut() {
                    Some(last) if last.1 >= now => last.1 = end,
                    _ => claims.push((now, end)),
                }
                if claims.len() > 64 {
                    claims.remove(0);
                }
            }
            _ => self.truncate_claim(n),
        }
    }

    fn truncate_claim(&mut self, n: usize) {
        let now = self.now;
        if let Some(last) = self.claims[n].last_mut()
            && last.1 > now
        {
            last.1 = now;
        }
    }

    fn crash(&mut self, n: usize) {
        self.crash_keeping(n, true);
    }

    fn crash_keeping(&mut self, n: usize, keep_some: bool) {
        if self.nodes[n].core.is_none() {
            return;
        }
        // Some unsynced writes may have reached the disk: keep a random prefix.
        let keep = if keep_some {
            self.rng.range(0, self.nodes[n].unsynced.len() as u64) as usize
        } else {
            0
        };
        self.crash_keeping_prefix(n, keep);
    }

    /// Crashes node `n`: the first `keep` unsynced persists (in ticket order) reach the disk,
    /// the rest are lost.
    fn crash_keeping_prefix(&mut self, n: usize, keep: usize) {
        if self.nodes[n].core.is_none() {
            return;
        }
        let node = &mut self.nodes[n];
        node.core = None;
        node.incarnation += 1;
        node.fsync_pending = false;
        node.paused_until = 0;
        let unsynced = std::mem::take(&mut node.unsynced);
        for p in unsynced.into_iter().take(keep) {
            write_disk(&mut self.nodes[n].disk, p);
        }
        self.truncate_claim(n);
    }

    fn restart(&mut self, n: usize) {
        let cfg = self.config_for(n);
        let node = &mut self.nodes[n];
        let committed = node.disk.committed.max(node.disk.snap_index);
        // Rebuild the store: snapshot, then the log up to the committed marker.
        node.store = node.disk.snap_store.clone();
        node.base = node.disk.snap_index;
        node.log.clear();
        let mut replay = Vec::new();
        for i in node.base + 1..=committed {
            match node.disk.entries.get(&i) {
                Some(e) => replay.push(e.value.clone()),
                None => {
                    self.violations.push(format!(
                        "node {n}: committed marker {committed} but entry {i} is not on disk"
                    ));
                    return;
                }
            }
        }
        let mut entries = Vec::new();
        let mut next = committed + 1;
        while let Some(e) = node.disk.entries.get(&next) {
            entries.push(e.clone());
            next += 1;
        }
        let recovered = RecoveredState {
            promised: node.disk.promised,
            committed: 0,
            entries: Vec::new(),
        };
        let base = node.base;
        for (i, v) in replay.into_iter().enumerate() {
            self.apply(n, base + 1 + i as Index, v);
        }
        let node = &mut self.nodes[n];
        let core = match Core::new(cfg) {
            Ok(c) => c,
            Err(e) => {
                self.violations
                    .push(format!("node {n}: config refused: {e}"));
                return;
            }
        };
        node.core = Some(core);
        let inc = node.incarnation;
        let recovered = RecoveredState {
            committed,
            entries,
            ..recovered
        };
        self.feed(n, Event::Start(recovered));
        let at = self.now + self.rng.range(0, self.tick_interval);
        self.schedule(
            at,
            Ev::Tick {
                node: n,
                incarnation: inc,
            },
        );
    }

    fn install_snapshot(&mut self, n: usize, peer: usize) {
        let index = if self.nodes[peer].core.is_some()
            && self.nodes[peer].applied() > self.nodes[n].applied()
        {
            let store = self.nodes[peer].store.clone();
            let index = self.nodes[peer].applied();
            let node = &mut self.nodes[n];
            node.store = store.clone();
            node.base = index;
            node.log.clear();
            node.disk.snap_index = index;
            node.disk.snap_store = store;
            index
        } else {
            self.nodes[n].applied()
        };
        self.feed(n, Event::SnapshotInstalled { index });
    }

    fn collapse(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        if node.core.is_none() {
            return;
        }
        let index = node.applied();
        node.disk.snap_index = index;
        node.disk.snap_store = node.store.clone();
        node.disk.entries = node.disk.entries.split_off(&(index + 1));
        node.base = index;
        node.log.clear();
    }

    /// A random group of at least two nodes (often including the master) loses power at once
    /// and restarts within a third of a lease.
    fn power_failure(&mut self) {
        let total = self.total();
        let mut hit: Vec<usize> = (0..total).filter(|_| self.rng.chance(500)).collect();
        if let Some(m) = self.current_master()
            && self.rng.chance(500)
            && !hit.contains(&m)
        {
            hit.push(m);
        }
        while hit.len() < 2 {
            let n = self.rng.range(0, total as u64 - 1) as usize;
            if !hit.contains(&n) {
                hit.push(n);
            }
        }
        for n in hit {
            let keep_some = self.rng.chance(500);
            self.crash_keeping(n, keep_some);
            let back = self.now + self.rng.range(MS, self.opts.lease / 3);
            self.schedule(
                back.min(self.heal_at.max(self.now)),
                Ev::Restart { node: n },
            );
        }
    }

    fn current_master(&self) -> Option<usize> {
        (0..self.total()).find(|&n| self.nodes[n].core.as_ref().is_some_and(Core::is_master))
    }

    fn random_partition(&mut self) {
        let total = self.total();
        for row in &mut self.blocked {
            row.fill(false);
        }
        match self.rng.range(0, 4) {
            0 => {}
            1 => {
                // Symmetric split into two random groups.
                let mask = self.rng.next();
                for a in 0..total {
                    for b in 0..total {
                        if (mask >> a) & 1 != (mask >> b) & 1 {
                            self.blocked[a][b] = true;
                        }
                    }
                }
            }
            2 => {
                // One-way: some directed links cut.
                for a in 0..total {
                    for b in 0..total {
                        if a != b && self.rng.chance(300) {
                            self.blocked[a][b] = true;
                        }
                    }
                }
            }
            3 => {
                if let Some(m) = self.current_master() {
                    for b in 0..total {
                        if b != m {
                            self.blocked[m][b] = true;
                            self.blocked[b][m] = true;
                        }
                    }
                }
            }
            _ => {
                // Majorities ring: each node reaches only its ring neighbours.
                for a in 0..total {
                    for b in 0..total {
                        let d = (a + total - b) % total;
                        if d > 1 && d < total - 1 {
                            self.blocked[a][b] = true;
                        }
                    }
                }
            }
        }
    }

    fn heal(&mut self) {
        self.faults_on = false;
        for row in &mut self.blocked {
            row.fill(false);
        }
        // Disks are back to their base latency: a slow fsync still pending completes as a
        // healthy one would from now.
        for n in 0..self.total() {
            let node = &self.nodes[n];
            if node.core.is_some()
                && node.fsync_pending
                && node.fsync_due > self.now + self.opts.disk.1 * node.disk_factor
            {
                let at = self.now + self.fsync_latency(n);
                self.schedule_fsync(n, at);
            }
        }
        for n in 0..self.total() {
            if self.nodes[n].core.is_none() {
                self.restart(n);
            }
            self.nodes[n].paused_until = self.nodes[n].paused_until.min(self.now);
        }
        self.heal_at = self.now;
    }

    // ---- clients ----

    fn client_go(&mut self, c: usize) {
        if !self.clients_active || self.clients[c].pending.is_some() {
            return;
        }
        let n = self.clients[c].target;
        if self.nodes[n].core.is_none() || self.nodes[n].paused_until > self.now {
            self.retarget(c, None);
            return;
        }
        let key = self.rng.range(0, 2) as u8;
        let choice = self.rng.range(0, 9);
        let value = vec![self.rng.range(0, 5) as u8];
        let op = match choice {
            0..=2 => KvOp::Get,
            3..=5 => KvOp::Set(value),
            6 => KvOp::Delete,
            _ => {
                let expected = if self.rng.chance(300) {
                    None
                } else {
                    Some(vec![self.rng.range(0, 5) as u8])
                };
                let new = if self.rng.chance(200) {
                    None
                } else {
                    Some(value)
                };
                KvOp::TestAndSet { expected, new }
            }
        };
        if op == KvOp::Get {
            let node = &self.nodes[n];
            let serve = node
                .core
                .as_ref()
                .is_some_and(|core| core.can_serve_consistent_read(node.local(self.now)));
            if serve {
                let result = node.store.get(key);
                self.reads_served.push((self.now, n));
                self.history.push(HistoryOp {
                    key: vec![key],
                    op,
                    invoked: self.now,
                    completed: Some((self.now + 1, result)),
                });
                self.complete(c);
            } else {
                let hint = node
                    .core
                    .as_ref()
                    .and_then(Core::known_master)
                    .map(NodeId::index);
                self.retarget(c, hint);
            }
            return;
        }
        let client = &mut self.clients[c];
        client.seq += 1;
        let seq = client.seq;
        let id = ProposalId(((c as u64) << 40) | seq);
        self.history.push(HistoryOp {
            key: vec![key],
            op: op.clone(),
            invoked: self.now,
            completed: None,
        });
        self.clients[c].pending = Some(Pending {
            seq,
            node: n,
            id,
            history: self.history.len() - 1,
            result: None,
        });
        self.pending_ids.insert(id, c);
        let at = self.now + 3 * self.opts.lease;
        self.schedule(at, Ev::ClientTimeout { client: c, seq });
        self.feed(
            n,
            Event::Propose {
                id,
                payload: encode(key, &op),
            },
        );
    }

    fn complete(&mut self, c: usize) {
        let client = &mut self.clients[c];
        client.completed += 1;
        client.last_completion = self.now;
        let at = self.now + self.rng.range(0, 2 * MS);
        self.schedule(at, Ev::ClientGo { client: c });
    }

    fn retarget(&mut self, c: usize, hint: Option<usize>) {
        let target =
            hint.unwrap_or_else(|| self.rng.range(0, self.opts.voters as u64 - 1) as usize);
        self.clients[c].target = target;
        let at = self.now + self.rng.range(MS, 20 * MS);
        self.schedule(at, Ev::ClientGo { client: c });
    }

    fn on_reply(&mut self, n: usize, id: ProposalId, reply: Reply) {
        let (c, seq) = ((id.0 >> 40) as usize, id.0 & ((1 << 40) - 1));
        if c >= self.clients.len() || seq > self.clients[c].seq || !self.replied.insert(id) {
            self.violations.push(format!(
                "t={} node {n}: reply {reply:?} for a proposal never made or already answered: {id:?}",
                self.now
            ));
            return;
        }
        let Some(pending) = self.clients[c]
            .pending
            .take_if(|p| p.id == id && p.node == n)
        else {
            return;
        };
        self.pending_ids.remove(&id);
        match reply {
            Reply::Committed { index } => {
                let Some(result) = pending.result else {
                    self.violations.push(format!("t={} node {n}: proposal {id:?} acknowledged at {index} but never applied there", self.now));
                    return;
                };
                self.acked.push((index, id));
                self.history[pending.history].completed = Some((self.now, result));
                self.complete(c);
            }
            Reply::NotMaster { master } => {
                // Never proposed: it had no effect.
                self.history[pending.history].op = KvOp::Get;
                self.history[pending.history].completed = None;
                self.retarget(c, master.map(NodeId::index));
            }
            Reply::ReadOnly | Reply::Overloaded => {
                self.history[pending.history].op = KvOp::Get;
                self.retarget(c, None);
            }
            Reply::Indeterminate => self.retarget(c, None),
        }
    }

    fn client_timeout(&mut self, c: usize, seq: u64) {
        if self.clients[c]
            .pending
            .as_ref()
            .is_some_and(|p| p.seq == seq)
        {
            if let Some(p) = self.clients[c].pending.take() {
                self.pending_ids.remove(&p.id);
            }
            self.retarget(c, None);
        }
    }

    // ---- end of run ----

    fn final_checks(&mut self) {
        let lease = self.opts.lease;
        // Liveness: a master soon after the heal.
        // "A master within about two lease periods" of the faults stopping.
        let deadline = self.heal_at + 2 * lease;
        let first = self
            .became_master_log
            .iter()
            .map(|(t, _)| *t)
            .find(|t| *t >= self.heal_at);
        let master_now = self.current_master();
        let lives_on = master_now.is_some()
            && self
                .stopped_master_log
                .iter()
                .all(|(t, _)| *t < self.heal_at + 3 * lease);
        match (first, master_now) {
            (Some(t), _) if t <= deadline => {}
            (None, Some(_)) if lives_on => {} // the master from before the heal kept office
            _ => self.violations.push(format!(
                "liveness: no master within {} ms of the heal at {} ms (first after heal: {:?}, master now: {master_now:?})",
                (deadline - self.heal_at) / MS,
                self.heal_at / MS,
                first.map(|t| t / MS)
            )),
        }
        self.first_master_after_heal = first;
        // Every proposal issued well after the heal committed: no client stuck.
        for (c, client) in self.clients.iter().enumerate() {
            if let Some(p) = &client.pending {
                let invoked = self.history[p.history].invoked;
                self.violations.push(format!(
                    "liveness: client {c}'s proposal invoked at {} ms never answered",
                    invoked / MS
                ));
            }
            if let Some(stop) = self.clients_stopped_at
                && client.last_completion + lease < stop
            {
                self.violations.push(format!(
                    "liveness: client {c} made no progress after the heal (last completion {} ms)",
                    client.last_completion / MS
                ));
            }
        }
        // Convergence: every live node applied everything the master committed a while ago.
        if let Some(m) = master_now {
            let target = self.nodes[m].core.as_ref().map_or(0, Core::committed);
            for (n, node) in self.nodes.iter().enumerate() {
                let done = match &node.core {
                    Some(core) if node.role == Role::Witness => core.committed(),
                    Some(_) => node.applied(),
                    None => continue,
                };
                if done + 2 < target {
                    self.violations.push(format!(
                        "liveness: node {n} applied {done} of the master's {target}"
                    ));
                }
            }
        }
        // Durability: every acknowledged proposal is in the committed log at its index.
        for (index, id) in self.acked.clone() {
            let found = self.nodes.iter().any(|node| {
                index > node.base
                    && node.log.get((index - node.base - 1) as usize).is_some_and(
                        |v| matches!(v, Value::Batch(items) if items.iter().any(|p| p.id == id)),
                    )
            });
            let covered = self
                .nodes
                .iter()
                .all(|node| node.base >= index || node.applied() < index);
            if !found && !covered {
                self.violations.push(format!(
                    "durability: acknowledged {id:?} at index {index} is not in the committed log"
                ));
            }
        }
    }

    fn report(mut self) -> SimReport {
        let history: Vec<HistoryOp> = self
            .history
            .iter()
            .filter(|h| !(h.op == KvOp::Get && h.completed.is_none()))
            .cloned()
            .collect();
        let lin = match check(&history, 2_000_000) {
            Verdict::Linearizable => "linearizable".to_string(),
            Verdict::Unknown { key } => format!("unknown (step limit) for key {key:?}"),
            Verdict::NotLinearizable { key, ops } => {
                self.violations.push(format!(
                    "linearizability: key {key:?} history is not linearizable: {ops:#?}"
                ));
                "NOT linearizable".to_string()
            }
        };
        let committed = self.nodes.iter().map(SimNode::applied).max().unwrap_or(0);
        SimReport {
            seed: self.opts.seed,
            options: format!("{:?}", self.opts),
            violations: self.violations,
            trace_hash: self.trace,
            events: self.events,
            virtual_time: self.now,
            committed,
            completed_ops: self.clients.iter().map(|c| c.completed).sum(),
            masters_elected: self.masters_elected,
            linearizability: lin,
            election_after_heal: self.first_master_after_heal.map(|t| t - self.heal_at),
            persist_crashes: self.persist_crashes,
        }
    }

    // ---- scenario helpers ----

    pub fn master(&self) -> Option<usize> {
        self.current_master()
    }

    /// Index up to which node `n` applied committed values to its store.
    pub fn applied(&self, n: usize) -> Index {
        self.nodes[n].applied()
    }

    /// The trace hash so far (determinism checks).
    pub fn trace_hash(&self) -> u64 {
        self.trace
    }

    pub fn core(&self, n: usize) -> Option<&Core> {
        self.nodes[n].core.as_ref()
    }

    /// Whether node `n` has a persist carrying a promise written but not yet durable.
    pub fn promise_pending(&self, n: usize) -> bool {
        self.nodes[n].unsynced.iter().any(|p| p.promise.is_some())
    }

    /// When node `n`'s pending fsync completes, if one is pending.
    pub fn fsync_due(&self, n: usize) -> Option<Time> {
        let node = &self.nodes[n];
        (node.core.is_some() && node.fsync_pending).then_some(node.fsync_due)
    }

    /// Highest index of an entry on node `n`'s disk (durable), or 0.
    pub fn last_durable_index(&self, n: usize) -> Index {
        let disk = &self.nodes[n].disk;
        disk.entries
            .last_key_value()
            .map_or(disk.snap_index, |(i, _)| *i)
    }

    /// Stops the clients, lets in-flight work drain for two leases, then runs the final checks.
    pub fn finish(mut self) -> SimReport {
        self.clients_active = false;
        self.clients_stopped_at = Some(self.now);
        let end = self.now + 2 * self.opts.lease;
        self.run_until(end);
        self.final_checks();
        self.report()
    }

    pub fn finish_without_liveness(self) -> SimReport {
        self.report()
    }

    pub fn set_clients_active(&mut self, on: bool) {
        self.clients_active = on;
        if on {
            for c in 0..self.clients.len() {
                self.schedule(self.now, Ev::ClientGo { client: c });
            }
        }
    }

    pub fn set_heal_at(&mut self, t: Time) {
        self.heal_at = t;
    }

    pub fn serve_read(&mut self, n: usize) -> bool {
        let node = &self.nodes[n];
        node.core
            .as_ref()
            .is_some_and(|core| core.can_serve_consistent_read(node.local(self.now)))
    }
}

fn write_disk(disk: &mut Disk, p: Persist) {
    if let Some(b) = p.promise {
        disk.promised = disk.promised.max(b);
    }
    // Model the strictest driver: truncate at the first entry, then append (atomically).
    if let Some(first) = p.entries.first() {
        let _dropped = disk.entries.split_off(&first.index);
    }
    for e in p.entries {
        disk.entries.insert(e.index, e);
    }
    disk.committed = disk.committed.max(p.committed);
}

fn event_kind(e: &Event) -> u8 {
    match e {
        Event::Start(_) => 0,
        Event::Tick => 1,
        Event::Propose { .. } => 2,
        Event::Message { .. } => 3,
        Event::Durable { .. } => 4,
        Event::CatchUpRead { .. } => 5,
        Event::SnapshotInstalled { .. } => 6,
        Event::DropMaster => 7,
    }
}

/// Runs one seed with its swarm options (optionally modified).
pub fn run_seed(seed: u64, tweak: impl FnOnce(&mut SimOptions)) -> SimReport {
    let mut opts = SimOptions::swarm(seed);
    tweak(&mut opts);
    World::new(opts).run()
}

/// Seeds to run: `SIM_SEED=n` replays one, `SIM_SEEDS=n` runs `0..n` (`SIM_SEEDS=a..b` runs
/// `a..b`), else `default`.
pub fn seeds(default: std::ops::Range<u64>) -> Vec<u64> {
    if let Some(s) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![s];
    }
    if let Some((a, b)) = std::env::var("SIM_SEEDS").ok().and_then(|s| {
        let (a, b) = s.split_once("..")?;
        Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?))
    }) {
        return (a..b).collect();
    }
    if let Some(n) = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        return (0..n).collect();
    }
    default.collect()
}
