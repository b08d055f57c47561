//! The node's metrics (Prometheus text format) and its health verdict, served over HTTP by
//! [`http`] on the node's `metrics_address`.
//!
//! Two kinds of figures:
//! - **Recorded** where the work happens, through the handles of [`NodeMetrics`]: request
//!   counts and latencies (the client handler), WAL fsync latency and group size, collapse
//!   counts and durations (the storage thread), committed batch sizes, snapshot installs and
//!   the time a peer was last heard from (the driver). Recording is a few relaxed atomic
//!   operations (a histogram takes one short uncontended lock); it never waits on I/O.
//! - **Read at scrape time** from the state the node already keeps ([`Scrape`]): role, master,
//!   lease, indexes, store size (the store's O(1) `stats()` under its read lock), the driver's
//!   pending proposals and the messenger's per-peer counters.
//!
//! Invariants:
//! - Every metric is registered once, in [`NodeMetrics::new`], under the `rarakoon_` prefix;
//!   the names, types and labels are documented in the node README and docs/operations.md.
//! - Counters copied from the messenger are only ever raised to the messenger's value (its
//!   counters are monotonic), so they stay Prometheus counters.
//! - Scrapes are serialised (one [`std::sync::Mutex`]), so refreshing the scrape-time gauges
//!   and encoding them is one consistent step; no lock of the node is held while encoding.

pub mod http;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use paxos_core::{NodeRole, Time};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tcp_messenger::Counters;

use crate::driver::Shared;

/// Labels of a request metric: the opcode's name and (for counts) how it ended.
type OpLabels = [(&'static str, &'static str); 2];
/// Labels of a request-latency metric: the opcode's name.
type OpcodeLabel = [(&'static str, &'static str); 1];
/// Labels of a per-peer metric: the peer's node name.
type PeerLabel = [(&'static str, String); 1];

/// A gauge holding a float.
type FloatGauge = Gauge<f64, AtomicU64>;

fn latency_histogram() -> Histogram {
    // 50 µs .. ~105 s, doubling.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 22))
}

fn size_histogram() -> Histogram {
    // 1 .. 65536, doubling.
    Histogram::new(exponential_buckets(1.0, 2.0, 17))
}

/// Roles as the `role` label of `rarakoon_role` names them.
const ROLES: [(NodeRole, &str); 5] = [
    (NodeRole::Starting, "starting"),
    (NodeRole::Follower, "slave"),
    (NodeRole::Candidate, "candidate"),
    (NodeRole::MasterElect, "master_elect"),
    (NodeRole::Master, "master"),
];

/// The name a role goes by in metrics and in `/health`.
pub fn role_name(role: NodeRole) -> &'static str {
    ROLES
        .iter()
        .find(|(r, _)| *r == role)
        .map_or("unknown", |(_, name)| name)
}

/// Peers are numbered by `NodeId` (a `u8`): one "last heard" slot each.
const PEER_SLOTS: usize = 256;
/// A slot value meaning "never heard from".
const NEVER: u64 = u64::MAX;

/// The metric handles of one node, and the registry they are encoded from.
pub struct NodeMetrics {
    registry: Registry,
    scrape: Mutex<()>,

    requests: Family<OpLabels, Counter>,
    request_seconds: Family<OpcodeLabel, Histogram, fn() -> Histogram>,
    fsync_seconds: Histogram,
    fsync_batch_entries: Histogram,
    commit_batch_updates: Histogram,
    collapses: Counter,
    collapse_seconds: Histogram,
    snapshots_installed: Counter,
    snapshot_install_seconds: Histogram,
    snapshot_requests_served: Counter,
    /// Node time (ns) a message from peer `i` last arrived, [`NEVER`] if none did.
    peer_heard: Box<[AtomicU64]>,

    // Scrape-time figures.
    role: Family<[(&'static str, &'static str); 1], Gauge>,
    master_known: Gauge,
    master: Family<[(&'static str, String); 1], Gauge>,
    lease_remaining: FloatGauge,
    committed_index: Gauge,
    applied_index: Gauge,
    last_index: Gauge,
    proposals_pending: Gauge,
    storage_jobs_waiting: Gauge,
    store_keys: Gauge,
    store_bytes: Gauge,
    client_connections: Gauge,
    client_request_bytes: Gauge,
    client_requests_in_flight: Gauge,
    peer_sent: Family<PeerLabel, Counter>,
    peer_dropped: Family<PeerLabel, Counter>,
    peer_lost: Family<PeerLabel, Counter>,
    peer_queued: Family<PeerLabel, Gauge>,
    peer_connects: Family<PeerLabel, Counter>,
    peer_connect_failures: Family<PeerLabel, Counter>,
    peer_last_heard: Family<PeerLabel, FloatGauge>,
    messages_received: Counter,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMetrics").finish_non_exhaustive()
    }
}

impl Default for NodeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// What a scrape reads besides the recorded metrics.
#[derive(Debug)]
pub struct Scrape<'a> {
    /// The node's shared state (view, store, clock, driver progress).
    pub shared: &'a Shared,
    /// The messenger's counters, by peer name.
    pub peers: &'a Counters,
    /// Peer names by `NodeId` (index), this node included.
    pub names: &'a [String],
    /// The client listener's counters (absent before the listener runs).
    pub clients: Option<rarakoon_client::listener::StatsSnapshot>,
}

impl NodeMetrics {
    /// Fresh metrics, every one registered.
    pub fn new() -> NodeMetrics {
        let mut r = Registry::with_prefix("rarakoon");
        let m = NodeMetrics {
            registry: Registry::default(),
            scrape: Mutex::new(()),
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            fsync_seconds: latency_histogram(),
            fsync_batch_entries: size_histogram(),
            commit_batch_updates: size_histogram(),
            collapses: Counter::default(),
            collapse_seconds: latency_histogram(),
            snapshots_installed: Counter::default(),
            snapshot_install_seconds: latency_histogram(),
            snapshot_requests_served: Counter::default(),
            peer_heard: (0..PEER_SLOTS).map(|_| AtomicU64::new(NEVER)).collect(),
            role: Family::default(),
            master_known: Gauge::default(),
            master: Family::default(),
            lease_remaining: FloatGauge::default(),
            committed_index: Gauge::default(),
            applied_index: Gauge::default(),
            last_index: Gauge::default(),
            proposals_pending: Gauge::default(),
            storage_jobs_waiting: Gauge::default(),
            store_keys: Gauge::default(),
            store_bytes: Gauge::default(),
            client_connections: Gauge::default(),
            client_request_bytes: Gauge::default(),
            client_requests_in_flight: Gauge::default(),
            peer_sent: Family::default(),
            peer_dropped: Family::default(),
            peer_lost: Family::default(),
            peer_queued: Family::default(),
            peer_connects: Family::default(),
            peer_connect_failures: Family::default(),
            peer_last_heard: Family::default(),
            messages_received: Counter::default(),
        };
        r.register(
            "role",
            "1 for the node's current role (starting, slave, candidate, master_elect, master), 0 for the others",
            m.role.clone(),
        );
        r.register(
            "master_known",
            "1 while the node knows a live master (itself included), else 0",
            m.master_known.clone(),
        );
        r.register(
            "master",
            "1, labelled with the name of the master the node knows (absent when none)",
            m.master.clone(),
        );
        r.register(
            "lease_remaining_seconds",
            "Seconds left on the master lease this node holds (0 when it holds none)",
            m.lease_remaining.clone(),
        );
        r.register(
            "committed_index",
            "Highest log index known committed",
            m.committed_index.clone(),
        );
        r.register(
            "applied_index",
            "Highest log index applied to the store",
            m.applied_index.clone(),
        );
        r.register(
            "last_index",
            "Highest log index held in the log",
            m.last_index.clone(),
        );
        r.register(
            "requests",
            "Client requests answered, by opcode and result (ok or error)",
            m.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Time to answer a client request, by opcode",
            m.request_seconds.clone(),
        );
        r.register(
            "wal_fsync_duration_seconds",
            "Duration of one write-ahead log fsync (one group commit)",
            m.fsync_seconds.clone(),
        );
        r.register(
            "wal_fsync_batch_entries",
            "Log entries written in one group commit (covered by one fsync)",
            m.fsync_batch_entries.clone(),
        );
        r.register(
            "commit_batch_updates",
            "Client updates in one committed Paxos value",
            m.commit_batch_updates.clone(),
        );
        r.register(
            "proposals_pending",
            "Client writes handed to consensus and not answered yet",
            m.proposals_pending.clone(),
        );
        r.register(
            "storage_jobs_waiting",
            "Storage jobs waiting for room in the storage thread's full queue (disk back-pressure)",
            m.storage_jobs_waiting.clone(),
        );
        r.register(
            "collapses",
            "Collapses run (head snapshot written, old log segments archived)",
            m.collapses.clone(),
        );
        r.register(
            "collapse_duration_seconds",
            "Duration of one collapse",
            m.collapse_seconds.clone(),
        );
        r.register(
            "snapshots_installed",
            "Head snapshots received from a peer and installed",
            m.snapshots_installed.clone(),
        );
        r.register(
            "snapshot_install_duration_seconds",
            "Time from asking a peer for its head snapshot to having installed it",
            m.snapshot_install_seconds.clone(),
        );
        r.register(
            "snapshot_requests_served",
            "Snapshot chunk requests from peers handed to the storage thread",
            m.snapshot_requests_served.clone(),
        );
        r.register("store_keys", "Keys in the store", m.store_keys.clone());
        r.register(
            "client_connections",
            "Client connections being served",
            m.client_connections.clone(),
        );
        r.register(
            "client_request_bytes",
            "Request bytes the client listener holds (partial, read ahead or in flight)",
            m.client_request_bytes.clone(),
        );
        r.register(
            "client_requests_in_flight",
            "Client requests handed to the node and not yet answered",
            m.client_requests_in_flight.clone(),
        );
        r.register(
            "store_bytes",
            "Sum of the lengths of all keys and values in the store",
            m.store_bytes.clone(),
        );
        r.register(
            "peer_messages_sent",
            "Messages written to the link to a peer",
            m.peer_sent.clone(),
        );
        r.register(
            "peer_messages_dropped",
            "Messages to a peer dropped because its (leaky) queue was full",
            m.peer_dropped.clone(),
        );
        r.register(
            "peer_messages_lost",
            "Messages to a peer lost because the link broke while writing them",
            m.peer_lost.clone(),
        );
        r.register(
            "peer_queue_messages",
            "Messages waiting in the queue to a peer",
            m.peer_queued.clone(),
        );
        r.register(
            "peer_connects",
            "Links to a peer established (handshake accepted)",
            m.peer_connects.clone(),
        );
        r.register(
            "peer_connect_failures",
            "Connection attempts to a peer that failed (connect, handshake or timeout)",
            m.peer_connect_failures.clone(),
        );
        r.register(
            "peer_last_heard_seconds",
            "Seconds since a consensus message from a peer last arrived (absent: never)",
            m.peer_last_heard.clone(),
        );
        r.register(
            "peer_messages_received",
            "Messages received from peers (all peers)",
            m.messages_received.clone(),
        );
        NodeMetrics { registry: r, ..m }
    }

    /// Records one answered client request.
    pub fn request(&self, opcode: &'static str, ok: bool, seconds: f64) {
        let result = if ok { "ok" } else { "error" };
        self.requests
            .get_or_create(&[("opcode", opcode), ("result", result)])
            .inc();
        self.request_seconds
            .get_or_create(&[("opcode", opcode)])
            .observe(seconds);
    }

    /// Records one WAL fsync covering `entries` entries.
    pub fn fsync(&self, seconds: f64, entries: u64) {
        self.fsync_seconds.observe(seconds);
        self.fsync_batch_entries.observe(entries as f64);
    }

    /// Records one committed value of `updates` client updates.
    pub fn committed_batch(&self, updates: usize) {
        self.commit_batch_updates.observe(updates as f64);
    }

    /// Records one collapse that took `seconds`.
    pub fn collapsed(&self, seconds: f64) {
        self.collapses.inc();
        self.collapse_seconds.observe(seconds);
    }

    /// Records one installed snapshot, `seconds` after it was asked for.
    pub fn snapshot_installed(&self, seconds: f64) {
        self.snapshots_installed.inc();
        self.snapshot_install_seconds.observe(seconds);
    }

    /// Records one snapshot chunk request from a peer.
    pub fn snapshot_request_served(&self) {
        self.snapshot_requests_served.inc();
    }

    /// Records that a consensus message from peer `peer` arrived at node time `now`.
    pub fn heard_from(&self, peer: u8, now: Time) {
        if let Some(slot) = self.peer_heard.get(usize::from(peer)) {
            slot.store(now, Ordering::Relaxed);
        }
    }

    /// Sets the number of client writes in flight in the driver.
    pub fn set_proposals_pending(&self, pending: usize) {
        self.proposals_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    /// Refreshes the scrape-time figures from `scrape` and encodes everything in the
    /// Prometheus text format.
    pub fn encode(&self, scrape: &Scrape<'_>) -> Result<String, std::fmt::Error> {
        let _one_at_a_time = self.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        self.refresh(scrape);
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }

    fn refresh(&self, scrape: &Scrape<'_>) {
        let shared = scrape.shared;
        let view = shared.view();
        let now = shared.now();
        for (role, name) in ROLES {
            self.role
                .get_or_create(&[("role", name)])
                .set(i64::from(role == view.role));
        }
        let health = crate::metrics::http::Health::of(shared, scrape.names);
        self.master.clear();
        if let Some(master) = &health.master {
            self.master
                .get_or_create(&[("node", master.clone())])
                .set(1);
        }
        self.master_known.set(i64::from(health.master.is_some()));
        let remaining = match view.lease_expires {
            Some(t) if view.role == NodeRole::Master => t.saturating_sub(now),
            _ => 0,
        };
        self.lease_remaining.set(remaining as f64 / 1e9);
        self.committed_index.set(to_i64(view.committed));
        self.last_index.set(to_i64(view.last_index));
        let stats = shared
            .store
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .stats();
        self.applied_index
            .set(to_i64(stats.applied_index.unwrap_or(0)));
        self.store_keys.set(to_i64(stats.key_count));
        if let Some(clients) = scrape.clients {
            let gauge = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
            self.client_connections.set(gauge(clients.connections));
            self.client_request_bytes.set(gauge(clients.request_bytes));
            self.client_requests_in_flight
                .set(gauge(clients.requests_in_flight));
        }
        self.store_bytes.set(to_i64(stats.payload_bytes));
        let waiting = shared.progress.borrow().jobs_waiting;
        self.storage_jobs_waiting
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));

        for (peer, c) in &scrape.peers.peers {
            let label = [("peer", peer.clone())];
            raise(&self.peer_sent.get_or_create(&label), c.sent);
            raise(&self.peer_dropped.get_or_create(&label), c.dropped);
            raise(&self.peer_lost.get_or_create(&label), c.lost_on_disconnect);
            raise(&self.peer_connects.get_or_create(&label), c.connects);
            raise(
                &self.peer_connect_failures.get_or_create(&label),
                c.failed_attempts,
            );
            self.peer_queued.get_or_create(&label).set(to_i64(c.queued));
        }
        raise(&self.messages_received, scrape.peers.received);
        for (id, name) in scrape.names.iter().enumerate() {
            let heard = self
                .peer_heard
                .get(id)
                .map_or(NEVER, |slot| slot.load(Ordering::Relaxed));
            if heard != NEVER {
                self.peer_last_heard
                    .get_or_create(&[("peer", name.clone())])
                    .set(now.saturating_sub(heard) as f64 / 1e9);
            }
        }
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Raises `counter` to `value` (a monotonic source; a lower value is ignored).
fn raise(counter: &Counter, value: u64) {
    let current = counter.get();
    if value > current {
        counter.inc_by(value - current);
    }
}

/// Metrics shared by the parts of one node.
pub type SharedMetrics = Arc<NodeMetrics>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_copied_counter_only_rises() {
        let c = Counter::default();
        raise(&c, 5);
        assert_eq!(c.get(), 5);
        raise(&c, 3);
        assert_eq!(c.get(), 5);
        raise(&c, u64::MAX);
        assert_eq!(c.get(), u64::MAX);
    }

    #[test]
    fn every_role_has_a_name() {
        for role in [
            NodeRole::Starting,
            NodeRole::Follower,
            NodeRole::Candidate,
            NodeRole::MasterElect,
            NodeRole::Master,
        ] {
            assert_ne!(role_name(role), "unknown");
        }
    }

    #[test]
    fn every_peer_id_has_a_slot() {
        let m = NodeMetrics::new();
        m.heard_from(u8::MAX, 7);
        assert_eq!(m.peer_heard[255].load(Ordering::Relaxed), 7);
        assert_eq!(m.peer_heard.len(), PEER_SLOTS);
    }
}
