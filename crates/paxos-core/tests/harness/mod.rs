//! A hand-driven cluster of real [`Core`]s for message-by-message tests (`safety`, `hostile`).
//!
//! Nothing happens on its own: the test decides which message is delivered, which node's
//! writes become durable, and when a node crashes. The disk is modelled exactly as the
//! contract in `io.rs` asks: a `Persist` reaches the disk only when the test reports it durable
//! (then `Event::Durable` is fed); a crash loses every write not yet durable, and the restarted
//! core is rebuilt from what the disk holds. Every `Apply` is checked against what any node
//! applied at that index before (agreement), and per node for order.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::{BTreeMap, VecDeque};

use paxos_core::{
    Ballot, CatchUpRead, Config, Core, Effect, Event, Index, LogEntry, Message, NodeId, Persist,
    ProposalId, RecoveredState, Reply, Time, Value,
};

/// What a node's disk holds (only durable writes).
#[derive(Debug, Clone, Default)]
pub struct Disk {
    pub promised: Ballot,
    pub committed: Index,
    pub entries: BTreeMap<Index, LogEntry>,
}

impl Disk {
    /// Applies one persist the way the strictest driver does: truncate at the first entry, then
    /// append (atomically).
    pub fn write(&mut self, p: &Persist) {
        if let Some(b) = p.promise {
            self.promised = self.promised.max(b);
        }
        if let Some(first) = p.entries.first() {
            let _dropped = self.entries.split_off(&first.index);
        }
        for e in &p.entries {
            self.entries.insert(e.index, e.clone());
        }
        self.committed = self.committed.max(p.committed);
    }

    /// What a restarted node recovers.
    pub fn recovered(&self) -> RecoveredState {
        let mut entries = Vec::new();
        let mut next = self.committed + 1;
        while let Some(e) = self.entries.get(&next) {
            entries.push(e.clone());
            next += 1;
        }
        RecoveredState {
            promised: self.promised,
            committed: self.committed,
            entries,
        }
    }
}

pub struct Node {
    pub cfg: Config,
    pub core: Core,
    pub disk: Disk,
    /// Persists issued and not yet durable, in ticket order.
    pub pending: Vec<Persist>,
    /// Everything this node applied, by index (kept across crashes: the store survives).
    pub applied: BTreeMap<Index, Value>,
    pub last_applied: Index,
    /// Every effect of the current incarnation, in order.
    pub effects: Vec<Effect>,
    pub replies: Vec<(ProposalId, Reply)>,
}

/// A message on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Wire {
    pub from: usize,
    pub to: usize,
    pub msg: Message,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    pub net: VecDeque<Wire>,
    pub now: Time,
    /// Every message ever sent, in order (for replay and mutation).
    pub traffic: Vec<Wire>,
    pub violations: Vec<String>,
}

impl Cluster {
    /// Builds and starts one core per config (with empty disks) at time 0.
    pub fn new(cfgs: Vec<Config>) -> Cluster {
        let nodes = cfgs
            .into_iter()
            .map(|cfg| Node {
                core: Core::new(cfg.clone()).unwrap(),
                cfg,
                disk: Disk::default(),
                pending: Vec::new(),
                applied: BTreeMap::new(),
                last_applied: 0,
                effects: Vec::new(),
                replies: Vec::new(),
            })
            .collect();
        let mut c = Cluster {
            nodes,
            net: VecDeque::new(),
            now: 0,
            traffic: Vec::new(),
            violations: Vec::new(),
        };
        for n in 0..c.nodes.len() {
            c.step(n, Event::Start(RecoveredState::default()));
        }
        c
    }

    /// Feeds one event to node `n` at the cluster's time and executes the effects.
    pub fn step(&mut self, n: usize, event: Event) -> Vec<Effect> {
        let mut out = Vec::new();
        self.nodes[n]
            .core
            .step(self.now, 0, event, &mut out)
            .unwrap();
        let mut local = Vec::new();
        for e in &out {
            self.nodes[n].effects.push(e.clone());
            match e {
                Effect::Persist(p) => self.nodes[n].pending.push(p.clone()),
                Effect::Send { to, msg } => self.send(n, to.index(), msg.clone()),
                Effect::Broadcast(msg) => {
                    for to in 0..self.nodes.len() {
                        if to != n {
                            self.send(n, to, msg.clone());
                        }
                    }
                }
                Effect::Apply { index, value } => self.apply(n, *index, value.clone()),
                Effect::Reply { id, reply } => self.nodes[n].replies.push((*id, reply.clone())),
                Effect::ServeCatchUp { peer, from, up_to } => {
                    local.push(Event::CatchUpRead {
                        peer: *peer,
                        from: *from,
                        read: CatchUpRead::Values(self.read_log(n, *from, *up_to)),
                    });
                }
                _ => {}
            }
        }
        for ev in local {
            self.step(n, ev);
        }
        out
    }

    fn send(&mut self, from: usize, to: usize, msg: Message) {
        let w = Wire { from, to, msg };
        self.traffic.push(w.clone());
        self.net.push_back(w);
    }

    /// Committed values `[from, up_to]` as written by node `n` (durable or not: the driver
    /// reads its own log).
    fn read_log(&self, n: usize, from: Index, up_to: Index) -> Vec<Value> {
        let mut view = self.nodes[n].disk.clone();
        for p in &self.nodes[n].pending {
            view.write(p);
        }
        (from..=up_to)
            .map_while(|i| view.entries.get(&i).map(|e| e.value.clone()))
            .collect()
    }

    fn apply(&mut self, n: usize, index: Index, value: Value) {
        let node = &mut self.nodes[n];
        if index != node.last_applied + 1 {
            self.violations.push(format!(
                "node {n} applied index {index} after {}",
                node.last_applied
            ));
        }
        if let Some(old) = node.applied.get(&index)
            && *old != value
        {
            // Re-applied after a crash (above the durable committed marker): same value only.
            self.violations.push(format!(
                "node {n} applied index {index} twice, with different values"
            ));
        }
        node.last_applied = index;
        node.applied.insert(index, value.clone());
        for (m, other) in self.nodes.iter().enumerate() {
            if m != n
                && let Some(v) = other.applied.get(&index)
                && *v != value
            {
                self.violations.push(format!(
                    "agreement broken: index {index} differs on node {n} ({value:?}) and node {m} ({v:?})"
                ));
            }
        }
    }

    /// Makes every pending write of node `n` durable and reports it.
    pub fn make_durable(&mut self, n: usize) -> bool {
        let pending = std::mem::take(&mut self.nodes[n].pending);
        let Some(top) = pending.last().map(|p| p.ticket) else {
            return false;
        };
        for p in &pending {
            self.nodes[n].disk.write(p);
        }
        self.step(n, Event::Durable { ticket: top });
        true
    }

    /// Crash: every write not yet durable is lost, and so are messages in flight to or from it.
    pub fn crash(&mut self, n: usize) {
        self.nodes[n].pending.clear();
        self.net.retain(|w| w.to != n && w.from != n);
    }

    /// Restarts node `n` from its disk (after [`Cluster::crash`]).
    pub fn restart(&mut self, n: usize) {
        let node = &mut self.nodes[n];
        node.core = Core::new(node.cfg.clone()).unwrap();
        node.effects.clear();
        let recovered = node.disk.recovered();
        // The store already holds everything up to the committed marker.
        node.last_applied = recovered.committed;
        self.step(n, Event::Start(recovered));
    }

    /// Delivers one message.
    pub fn deliver(&mut self, w: Wire) {
        let from = NodeId(u8::try_from(w.from).unwrap());
        self.step(w.to, Event::Message { from, msg: w.msg });
    }

    /// Runs until quiet: delivers every message `deliver` allows (the others are lost) and makes
    /// every node `durable` allows durable, until nothing moves.
    pub fn run(
        &mut self,
        mut deliver: impl FnMut(&Wire) -> bool,
        mut durable: impl FnMut(usize) -> bool,
    ) {
        for _ in 0..10_000 {
            let mut moved = false;
            while let Some(w) = self.net.pop_front() {
                moved = true;
                if deliver(&w) {
                    self.deliver(w);
                }
            }
            for n in 0..self.nodes.len() {
                if durable(n) && self.make_durable(n) {
                    moved = true;
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the cluster did not settle");
    }

    /// Advances time by `dt` and ticks every node in `which`.
    pub fn tick(&mut self, dt: Time, which: &[usize]) {
        self.now += dt;
        for &n in which {
            self.step(n, Event::Tick);
        }
    }

    pub fn propose(&mut self, n: usize, id: u64, payload: &[u8]) -> Vec<Effect> {
        self.step(
            n,
            Event::Propose {
                id: ProposalId(id),
                payload: payload.to_vec(),
            },
        )
    }
}
