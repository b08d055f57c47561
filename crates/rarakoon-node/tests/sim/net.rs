//! The simulated network: every `PeerMessage` is encoded with the real wire codec, travels
//! through a per-link model of loss, delay, reordering, duplication, partitions and resets,
//! and is decoded again (and checked, like the messenger does) before it reaches the driver
//! as `Input::Peer`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use paxos_core::NodeId;
use rarakoon_node::driver::Input;
use rarakoon_node::transport::Transport;
use rarakoon_node::wire::{self, PeerMessage};
use tokio::sync::mpsc;
use wire_codec::rkyv::util::AlignedVec;

use crate::rng::{Rng, Trace};

/// The network faults of a run (swarm: each is on or off for the whole run).
#[derive(Debug, Clone, Copy)]
pub struct NetFaults {
    pub loss: f64,
    pub duplicate: f64,
    /// Probability that a message takes an extra delay (which reorders it).
    pub reorder: f64,
    pub max_extra_delay: Duration,
}

impl NetFaults {
    pub const CLEAN: NetFaults = NetFaults {
        loss: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        max_extra_delay: Duration::ZERO,
    };
}

#[derive(Debug)]
struct State {
    rng: Rng,
    faults: NetFaults,
    inboxes: Vec<Option<mpsc::Sender<Input>>>,
    /// `cut[from][to]`: messages from `from` to `to` are dropped.
    cut: Vec<Vec<bool>>,
    /// Bumped by a link reset: messages in flight on the link are dropped.
    generation: Vec<Vec<u64>>,
    pub trace: Trace,
    sent: u64,
    delivered: u64,
    /// Per link: (sent, dropped on the way, delivered).
    links: Vec<Vec<(u64, u64, u64)>>,
}

/// The network shared by all nodes of a run.
#[derive(Debug, Clone)]
pub struct Net {
    state: Arc<Mutex<State>>,
    n: usize,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Net {
    pub fn new(n: usize, rng: Rng, faults: NetFaults) -> Net {
        Net {
            state: Arc::new(Mutex::new(State {
                rng,
                faults,
                inboxes: vec![None; n],
                cut: vec![vec![false; n]; n],
                generation: vec![vec![0; n]; n],
                trace: Trace::default(),
                sent: 0,
                delivered: 0,
                links: vec![vec![(0, 0, 0); n]; n],
            })),
            n,
        }
    }

    pub fn transport(&self, me: usize) -> Arc<dyn Transport> {
        Arc::new(SimTransport {
            net: self.clone(),
            me,
        })
    }

    /// Connects node `id`'s current incarnation (`None`: it is down).
    pub fn attach(&self, id: usize, inbox: Option<mpsc::Sender<Input>>) {
        let mut st = lock(&self.state);
        st.inboxes[id] = inbox;
        // Whatever was in flight to the old incarnation is gone with it.
        for from in 0..self.n {
            st.generation[from][id] += 1;
        }
    }

    pub fn set_faults(&self, faults: NetFaults) {
        lock(&self.state).faults = faults;
    }

    pub fn cut(&self, from: usize, to: usize, cut: bool) {
        lock(&self.state).cut[from][to] = cut;
    }

    pub fn heal_all(&self) {
        let mut st = lock(&self.state);
        for row in &mut st.cut {
            row.fill(false);
        }
    }

    /// Drops every message in flight between `a` and `b` (both ways): a TCP reset.
    pub fn reset_link(&self, a: usize, b: usize) {
        let mut st = lock(&self.state);
        st.generation[a][b] += 1;
        st.generation[b][a] += 1;
    }

    pub fn trace(&self) -> Trace {
        lock(&self.state).trace
    }

    pub fn links(&self) -> Vec<Vec<(u64, u64, u64)>> {
        lock(&self.state).links.clone()
    }

    pub fn counts(&self) -> (u64, u64) {
        let st = lock(&self.state);
        (st.sent, st.delivered)
    }

    fn send(&self, from: usize, to: usize, msg: &PeerMessage) {
        if to >= self.n || to == from {
            return;
        }
        // The real codec: what a peer would receive.
        let Ok(frame) = wire_codec::Frame::encode(msg, u32::MAX) else {
            return;
        };
        let payload = frame.payload().to_vec();
        let mut delays = Vec::new();
        {
            let mut st = lock(&self.state);
            st.sent += 1;
            st.links[from][to].0 += 1;
            let faults = st.faults;
            if st.cut[from][to] || st.rng.chance(faults.loss) {
                return;
            }
            let copies = if st.rng.chance(faults.duplicate) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let mut delay = Duration::from_micros(st.rng.range(50, 1_000));
                if st.rng.chance(faults.reorder) {
                    let extra = faults.max_extra_delay.as_micros() as u64;
                    delay += Duration::from_micros(st.rng.below(extra + 1));
                }
                delays.push(delay);
            }
            let generation = st.generation[from][to];
            for delay in delays {
                let net = self.clone();
                let payload = payload.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    net.deliver(from, to, generation, &payload);
                });
            }
        }
    }

    fn deliver(&self, from: usize, to: usize, generation: u64, payload: &[u8]) {
        let mut st = lock(&self.state);
        if st.generation[from][to] != generation || st.cut[from][to] {
            st.links[from][to].1 += 1;
            return;
        }
        let Some(inbox) = st.inboxes[to].clone() else {
            st.links[from][to].1 += 1;
            return;
        };
        let msg: PeerMessage = match wire_codec::decode_payload(payload, &mut AlignedVec::new()) {
            Ok(msg) => msg,
            Err(_) => return,
        };
        if wire::check_nodes(&msg, self.n).is_err() {
            return;
        }
        if let Ok(watch) = std::env::var("SIM_DEBUG_NET")
            && (watch == format!("{to}") || watch == format!("{from}"))
        {
            let text = format!("{msg:?}");
            eprintln!("net {from}->{to}: {}", &text[..text.len().min(300)]);
        }
        st.delivered += 1;
        st.links[from][to].2 += 1;
        let mut t = st.trace;
        t.add((from as u64) << 8 | to as u64);
        t.add_bytes(payload);
        st.trace = t;
        drop(st);
        let _ = inbox.try_send(Input::Peer {
            from: NodeId(from as u8),
            msg,
            held: tcp_messenger::InboxBytes::default(),
        });
    }
}

/// One node's side of the network.
struct SimTransport {
    net: Net,
    me: usize,
}

impl Transport for SimTransport {
    fn send(&self, to: NodeId, msg: PeerMessage) {
        self.net.send(self.me, to.index(), &msg);
    }

    fn broadcast(&self, msg: PeerMessage) {
        for to in 0..self.net.n {
            if to != self.me {
                self.net.send(self.me, to, &msg);
            }
        }
    }
}
