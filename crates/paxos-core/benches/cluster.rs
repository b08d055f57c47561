//! A 3-node cluster in memory with no I/O (like openraft's cluster benchmark): messages are
//! delivered at once and every persist is durable at once, so this measures the core itself.
//! Reports commits/s for 1 and 64 concurrent proposers, and simulator events/s.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/sim/mod.rs"]
mod sim;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use paxos_core::{Config, Core, Effect, Event, NodeId, ProposalId, RecoveredState, Reply, Role};

const LEASE: u64 = 10_000_000_000;

struct Cluster {
    cores: Vec<Core>,
    queue: VecDeque<(usize, Event)>,
    now: u64,
    out: Vec<Effect>,
    committed_replies: u64,
    next_id: u64,
    master: usize,
}

impl Cluster {
    fn new(max_in_flight: usize) -> Cluster {
        let cores = (0..3)
            .map(|i| {
                let mut cfg = Config::new(NodeId(i), vec![Role::Voter; 3], LEASE);
                cfg.max_in_flight = max_in_flight;
                cfg.max_batch_count = 64;
                Core::new(cfg).unwrap()
            })
            .collect();
        let mut c = Cluster {
            cores,
            queue: VecDeque::new(),
            now: 0,
            out: Vec::new(),
            committed_replies: 0,
            next_id: 0,
            master: 0,
        };
        for n in 0..3 {
            c.queue
                .push_back((n, Event::Start(RecoveredState::default())));
        }
        c.drain();
        while !c.cores.iter().any(Core::is_master) {
            c.now += LEASE / 20;
            for n in 0..3 {
                c.queue.push_back((n, Event::Tick));
            }
            c.drain();
        }
        c.master = (0..3).find(|&n| c.cores[n].is_master()).unwrap();
        c
    }

    fn propose(&mut self) {
        self.next_id += 1;
        let id = ProposalId(self.next_id);
        self.queue.push_back((
            self.master,
            Event::Propose {
                id,
                payload: vec![7; 64],
            },
        ));
    }

    /// Delivers everything queued; every committed reply issues a new proposal until
    /// `refill_until` replies were seen.
    fn drain_with(&mut self, refill_until: u64) {
        while let Some((n, event)) = self.queue.pop_front() {
            self.now += 1_000;
            let mut out = std::mem::take(&mut self.out);
            self.cores[n]
                .step(self.now, self.now, event, &mut out)
                .unwrap();
            for effect in out.drain(..) {
                match effect {
                    Effect::Persist(p) => self
                        .queue
                        .push_back((n, Event::Durable { ticket: p.ticket })),
                    Effect::Send { to, msg } => self.queue.push_back((
                        to.index(),
                        Event::Message {
                            from: NodeId(n as u8),
                            msg,
                        },
                    )),
                    Effect::Broadcast(msg) => {
                        for to in (0..3).filter(|&t| t != n) {
                            self.queue.push_back((
                                to,
                                Event::Message {
                                    from: NodeId(n as u8),
                                    msg: msg.clone(),
                                },
                            ));
                        }
                    }
                    Effect::Reply {
                        reply: Reply::Committed { .. },
                        ..
                    } => {
                        self.committed_replies += 1;
                        if self.committed_replies < refill_until {
                            self.propose();
                        }
                    }
                    _ => {}
                }
            }
            self.out = out;
        }
    }

    fn drain(&mut self) {
        self.drain_with(0);
    }

    /// Runs until `commits` more proposals committed with `proposers` always outstanding.
    fn run(&mut self, proposers: usize, commits: u64) -> Duration {
        let target = self.committed_replies + commits;
        let start = Instant::now();
        for _ in 0..proposers {
            self.propose();
        }
        let refill_until = target.saturating_sub(proposers as u64);
        while self.committed_replies < target {
            self.drain_with(refill_until);
            if self.queue.is_empty() && self.committed_replies < target {
                self.propose();
            }
        }
        start.elapsed()
    }
}

fn bench_commits(c: &mut Criterion) {
    let mut group = c.benchmark_group("three_node_in_memory");
    for (proposers, in_flight) in [(1usize, 8usize), (64, 8)] {
        let commits = 10_000u64;
        group.throughput(Throughput::Elements(commits));
        group.bench_function(format!("commits_{proposers}_proposers"), |b| {
            let mut cluster = Cluster::new(in_flight);
            b.iter_custom(|iters| (0..iters).map(|_| cluster.run(proposers, commits)).sum());
        });
    }
    group.finish();
}

fn bench_simulator(c: &mut Criterion) {
    let mut group = c.benchmark_group("simulator");
    let events = sim::world::run_seed(3, |_| {}).events;
    group.throughput(Throughput::Elements(events));
    group.bench_function("swarm_seed_3_events", |b| {
        b.iter(|| sim::world::run_seed(3, |_| {}))
    });
    group.finish();
}

criterion_group!(benches, bench_commits, bench_simulator);
criterion_main!(benches);
