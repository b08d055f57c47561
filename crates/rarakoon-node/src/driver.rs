//! The driver: the one task that owns paxos-core and executes its effects in order.
//!
//! Inputs arrive on channels (client proposals, peer messages, storage events, admin requests,
//! a timer tick); each becomes one [`Event`] for [`Core::step`], and the resulting effects are
//! executed at once, in order: persists go to the storage thread (which reports them durable
//! after its group fsync), messages to the transport, committed values are applied to the
//! store, and client writes are answered.
//!
//! Invariants:
//! - A client write is answered only after its value committed AND was applied: paxos-core
//!   emits `Reply::Committed { index }` and `Apply { index }` in the same step (in either
//!   order); whichever comes second sends the store's outcome. Outcomes waiting for their
//!   `Reply` live only until the end of the step, so nothing accumulates.
//! - Nothing is sent that depends on a persist before it is durable: paxos-core defers such
//!   messages itself until it receives `Event::Durable`.
//! - The view the client handler reads (role, master, lease) is refreshed after every step,
//!   and, when a step took permissions away (the node left the master role or its lease
//!   shrank), BEFORE the first effect of that step runs: no message that gives up the lease
//!   (`LeaseReleased`) leaves while the view still allows consistent reads or new writes.
//!   `Effect::StoppedBeingMaster` publishes the view again, at once. Permissions a step grants
//!   are published only after all its effects ran (its applies are in the store by then).
//! - Ticks fire on time under any input load: each turn of the loop first steps a due tick,
//!   then takes one input, so a saturated input channel delays a tick by at most one turn.
//! - Peer messages read from the messenger's inbox by the driver itself
//!   ([`Driver::with_peers`]: one task hand-off less per message than a pump task feeding the
//!   input channel) pass the same [`PeerFilter`] as [`crate::messaging::pump_inbox`] and keep
//!   their inbox budget until handled. Neither source starves the other: the inbox is polled
//!   before the input channel (at most [`PEER_MESSAGES_PER_TURN`] a turn), and every turn
//!   then drains up to [`INPUTS_PER_TURN`] inputs.
//! - The driver never blocks its runtime thread on the disk: jobs go to the storage thread
//!   through a bounded tokio channel with `try_send`; when it is full they wait, in order, in
//!   a backlog, and the driver stops taking new inputs (back-pressure to clients and peers)
//!   until the storage thread took them, while ticks and storage events go on.
//! - A client write that was proposed and is still in flight when the driver stops is answered
//!   [`WriteOutcome::Unfinished`] (it may still commit); one refused before being proposed
//!   (draining, or still queued in the input channel) is answered [`WriteOutcome::GoingDown`].
//! - The node's clock ([`Clock`]) is CLOCK_BOOTTIME on Linux: it counts time the machine was
//!   suspended, so a master resumed from suspend sees its lease expired. The same clock feeds
//!   the core and judges the lease in the view.
//! - Anything the node cannot do safely is fatal: a core that refuses its recovered state, a
//!   committed value that cannot be decoded, a storage thread that failed or stopped.

use std::collections::{BTreeMap, VecDeque};
use std::hash::{BuildHasher, RandomState};

use crate::sabotage::Sabotage;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use kv_store::{Store, UpdateOutcome};
use paxos_core::{
    Core, Effect, Event, Index, NodeId, NodeRole, ProposalId, RecoveredState, Reply, Time, Value,
};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, watch};

use crate::messaging::PeerFilter;
use crate::storage::{self, Job, StorageEvent};
use crate::transport::Transport;
use crate::wire::PeerMessage;

/// How a client write ended.
#[derive(Debug)]
pub enum WriteOutcome {
    /// Committed and applied; the store's outcome.
    Applied(UpdateOutcome),
    /// This node is not master (the master it knows of, if any).
    NotMaster(Option<NodeId>),
    /// The cluster is read-only.
    ReadOnly,
    /// Refused: too many queued proposals or too large.
    Overloaded,
    /// Mastership was lost while in flight: it may or may not have been applied.
    Indeterminate,
    /// The node stopped (or failed) while the write was in flight: it may or may not have been
    /// applied (its value may still commit on the other nodes).
    Unfinished,
    /// The node is stopping and did not propose the write: it was not applied.
    GoingDown,
}

/// Requests for the driver.
#[derive(Debug)]
pub enum Input {
    /// Propose one encoded update.
    Propose {
        /// The encoded update.
        payload: Vec<u8>,
        /// Where the outcome goes.
        reply: oneshot::Sender<WriteOutcome>,
    },
    /// A message from a peer.
    Peer {
        /// The sender.
        from: NodeId,
        /// The message.
        msg: PeerMessage,
        /// Its share of the messenger's inbox byte budget, released once the driver has
        /// handled it: peer bytes waiting in the inbox and in this queue stay within the budget.
        held: tcp_messenger::InboxBytes,
    },
    /// Give up the master role (admin drop_master).
    DropMaster,
    /// The log index each other node was last seen to hold (STATISTICS' `node_is`,
    /// [`paxos_core::Core::witnessed`]), answered on `reply`.
    Witnessed {
        /// Where the answer goes.
        reply: oneshot::Sender<Vec<(NodeId, Index)>>,
    },
    /// Collapse now (admin), answering on `reply`.
    Collapse {
        /// Where the result goes.
        reply: oneshot::Sender<Result<storage::CollapseReport, String>>,
    },
    /// COLLAPSE_TLOGS (admin): collapse now keeping `keep` completed segments, answering on
    /// `reply`.
    CollapseTlogs {
        /// Completed segments kept besides the open one.
        keep: storage::SegmentsToKeep,
        /// Where the result goes.
        reply: oneshot::Sender<Result<storage::CollapseReport, String>>,
    },
    /// Stop: refuse new writes (`E_GOING_DOWN`), give those in flight a grace period (about
    /// one lease period) to finish, answer the rest as unfinished (`E_NO_LONGER_MASTER`: they
    /// may still commit), and return.
    Shutdown,
}

/// The clock of a node: nanoseconds since the node started, never going backwards.
///
/// [`Clock::boot`] (production) reads CLOCK_BOOTTIME on Linux and Android, which, unlike
/// CLOCK_MONOTONIC (`std::time::Instant`), keeps counting while the machine is suspended: a
/// master whose machine slept past its lease sees the lease expired as soon as it runs again.
/// Elsewhere it falls back to `std::time::Instant`. [`Clock::tokio`] follows tokio's clock,
/// which a test can pause and advance; it is for tests and simulations.
#[derive(Debug, Clone)]
pub enum Clock {
    /// CLOCK_BOOTTIME, counted from `zero` (a raw reading of it).
    Boot {
        /// The raw reading at the node's start.
        zero: u64,
    },
    /// tokio's clock, counted from `zero`.
    Tokio {
        /// The instant of the node's start.
        zero: tokio::time::Instant,
    },
    /// tokio's clock running fast or slow by `rate_ppm` parts per million, counted from
    /// `zero`: the deterministic simulator's clock drift. Keep `|rate_ppm|` within the
    /// configured `max_clock_drift_ppm`, or the lease is not safe (that is the bound's job).
    Drifting {
        /// The instant of the node's start.
        zero: tokio::time::Instant,
        /// Rate error: the clock counts `1 + rate_ppm / 1e6` nanoseconds per true nanosecond.
        rate_ppm: i32,
    },
}

impl Clock {
    /// The production clock (CLOCK_BOOTTIME on Linux), starting now.
    pub fn boot() -> Clock {
        Clock::Boot { zero: boot_nanos() }
    }

    /// tokio's clock (pausable in tests), starting now.
    pub fn tokio() -> Clock {
        Clock::Tokio {
            zero: tokio::time::Instant::now(),
        }
    }

    /// tokio's clock drifting by `rate_ppm` (see [`Clock::Drifting`]), starting now.
    pub fn drifting(rate_ppm: i32) -> Clock {
        Clock::Drifting {
            zero: tokio::time::Instant::now(),
            rate_ppm,
        }
    }

    /// Nanoseconds since the clock was made.
    pub fn now(&self) -> Time {
        match self {
            Clock::Boot { zero } => boot_nanos().saturating_sub(*zero),
            Clock::Tokio { zero } => u64::try_from(zero.elapsed().as_nanos()).unwrap_or(u64::MAX),
            Clock::Drifting { zero, rate_ppm } => {
                let true_ns = i128::try_from(zero.elapsed().as_nanos()).unwrap_or(i128::MAX / 2);
                let skew = true_ns.saturating_mul(i128::from(*rate_ppm)) / 1_000_000;
                // A rate above -100% keeps the clock monotonic; clamp anyway.
                u64::try_from(true_ns.saturating_add(skew).max(0)).unwrap_or(u64::MAX)
            }
        }
    }
}

/// A raw reading of CLOCK_BOOTTIME in nanoseconds (Linux, Android).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn boot_nanos() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    let secs = u64::try_from(t.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(t.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// A raw reading of the monotonic clock in nanoseconds (systems without CLOCK_BOOTTIME).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn boot_nanos() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let origin = ORIGIN.get_or_init(std::time::Instant::now);
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// What the client handler may read about the node's role without asking the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// Role in the protocol.
    pub role: NodeRole,
    /// Known master.
    pub master: Option<NodeId>,
    /// Time of the node's [`Clock`] until which this node holds the lease (master only).
    pub lease_expires: Option<Time>,
    /// Committed index.
    pub committed: Index,
    /// Highest index in the log.
    pub last_index: Index,
    /// Local time a message from the known master last arrived (slaves: the master is named
    /// only while this is younger than the slave's lease wait, as Arakoon does).
    pub master_heard_at: Option<Time>,
    /// Highest ballot this node promised (a master's own ballot while it is master).
    pub promised: paxos_core::Ballot,
}

impl View {
    /// The view of a node that has not started its core yet.
    pub fn starting(committed: Index) -> View {
        View {
            role: NodeRole::Starting,
            master: None,
            lease_expires: None,
            committed,
            last_index: committed,
            master_heard_at: None,
            promised: paxos_core::Ballot::ZERO,
        }
    }
}

/// Counters of the driver's work, observable while it runs (tests wait on them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Ticks stepped.
    pub ticks: u64,
    /// Jobs waiting for room in the storage thread's full queue.
    pub jobs_waiting: usize,
}

/// State shared between the driver and the client handler.
#[derive(Debug)]
pub struct Shared {
    /// The store (written by the driver and the storage thread, read by client tasks).
    pub store: Arc<RwLock<Store>>,
    /// The role view.
    pub view: Mutex<View>,
    /// The node's clock (the core's time and the lease's).
    pub clock: Clock,
    /// How long a slave keeps naming a master it no longer hears from.
    pub master_silence: Duration,
    /// The driver's counters.
    pub progress: watch::Sender<Progress>,
    /// The node's metrics (recorded by the driver, the handler and the storage thread).
    pub metrics: Arc<crate::metrics::NodeMetrics>,
    /// Broken-on-purpose switches (only settable with the `test-support` feature).
    pub sabotage: Sabotage,
}

impl Shared {
    /// Shared state around `store`, with a starting view.
    pub fn new(
        store: Arc<RwLock<Store>>,
        committed: Index,
        clock: Clock,
        master_silence: Duration,
    ) -> Shared {
        Shared {
            store,
            view: Mutex::new(View::starting(committed)),
            clock,
            master_silence,
            progress: watch::Sender::new(Progress::default()),
            metrics: Arc::new(crate::metrics::NodeMetrics::new()),
            sabotage: Sabotage::default(),
        }
    }

    /// The node's time in nanoseconds since it started ([`Clock::now`]).
    pub fn now(&self) -> Time {
        self.clock.now()
    }

    /// A copy of the current view.
    pub fn view(&self) -> View {
        self.view
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The master a slave may name now: the known master if it was heard from recently.
    pub fn live_master(&self) -> Option<NodeId> {
        let view = self.view();
        let heard = view.master_heard_at?;
        let silence = u64::try_from(self.master_silence.as_nanos()).unwrap_or(u64::MAX);
        (self.now() < heard.saturating_add(silence))
            .then_some(view.master)
            .flatten()
    }

    /// Whether this node may serve a consistent read now.
    pub fn holds_lease(&self) -> bool {
        let view = self.view();
        if self.sabotage.reads_past_lease() {
            // Broken on purpose: the lease's expiry is ignored.
            return view.role == NodeRole::Master && view.lease_expires.is_some();
        }
        view.role == NodeRole::Master && view.lease_expires.is_some_and(|t| self.now() < t)
    }
}

/// The messenger's inbox, read by the driver itself ([`Driver::with_peers`]).
struct PeerSource {
    inbox: tcp_messenger::Inbox<PeerMessage>,
    filter: PeerFilter,
    batch: Vec<tcp_messenger::Incoming<PeerMessage>>,
}

/// Waits for peer messages in `source`'s batch; 0 when the inbox closed. Without a source,
/// never returns.
async fn recv_peers(source: &mut Option<PeerSource>) -> usize {
    match source {
        Some(s) => {
            s.batch.clear();
            s.inbox
                .recv_many(&mut s.batch, PEER_MESSAGES_PER_TURN)
                .await
        }
        None => std::future::pending().await,
    }
}

struct PendingWrite {
    reply: oneshot::Sender<WriteOutcome>,
    committed_at: Option<Index>,
}

/// The driver task's state.
pub struct Driver {
    core: Core,
    started: bool,
    shared: Arc<Shared>,
    transport: Arc<dyn Transport>,
    jobs: mpsc::Sender<Job>,
    /// Jobs the full storage queue could not take yet, in order.
    backlog: VecDeque<Job>,
    pending: BTreeMap<u64, PendingWrite>,
    /// Outcomes applied in the current step whose `Reply::Committed` has not come yet.
    applied: BTreeMap<(Index, u64), UpdateOutcome>,
    next_proposal: u64,
    effects: Vec<Effect>,
    /// Seed of the entropy given to the core (random in production, the simulator's seed
    /// there): with it, the core's election jitter is a pure function of its inputs.
    entropy_seed: u64,
    entropy_counter: u64,
    tick: Duration,
    next_tick: tokio::time::Instant,
    node_name: String,
    master_heard_at: Option<Time>,
    /// Set by `Input::Shutdown`: the time by which in-flight writes must have finished.
    draining: Option<tokio::time::Instant>,
    drain_grace: Duration,
    /// The peer whose head snapshot is being fetched. Snapshot chunks from anyone else (or
    /// when no fetch runs) are dropped here, so a peer cannot fill the storage queue with
    /// megabyte chunks nobody asked for.
    fetching_from: Option<NodeId>,
    /// When the running snapshot fetch was asked for (for its duration metric).
    fetch_started: Option<tokio::time::Instant>,
    /// Why the driver must stop (checked after every step).
    fatal: Option<String>,
    /// The messenger's inbox when the driver reads it itself.
    peers: Option<PeerSource>,
}

async fn sleep_until_or_forever(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// One step of splitmix64: a well-mixed 64-bit value from `x`.
fn splitmix64(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Most inputs taken in one turn of the loop after the first (they share one view update).
const INPUTS_PER_TURN: usize = 256;

/// Most peer messages taken from the messenger's inbox in one turn of the loop.
const PEER_MESSAGES_PER_TURN: usize = 64;

impl Driver {
    /// A driver around a constructed (not yet started) core; `jobs` is the storage thread's
    /// queue (bounded: its bound is the disk's back-pressure).
    pub fn new(
        core: Core,
        shared: Arc<Shared>,
        transport: Arc<dyn Transport>,
        jobs: mpsc::Sender<Job>,
        tick: Duration,
        node_name: String,
    ) -> Self {
        Driver {
            core,
            started: false,
            shared,
            transport,
            jobs,
            backlog: VecDeque::new(),
            pending: BTreeMap::new(),
            applied: BTreeMap::new(),
            next_proposal: 1,
            effects: Vec::new(),
            entropy_seed: RandomState::new().hash_one(0x5EED_u64),
            entropy_counter: 0,
            tick,
            next_tick: tokio::time::Instant::now(),
            node_name,
            master_heard_at: None,
            draining: None,
            drain_grace: tick.saturating_mul(40),
            fetching_from: None,
            fetch_started: None,
            fatal: None,
            peers: None,
        }
    }

    /// Reads peer messages straight from the messenger's `inbox` (through `filter`, the rules
    /// of [`crate::messaging::pump_inbox`]) instead of only through [`Input::Peer`]: one task
    /// hand-off less per message on the commit path. [`Input::Peer`] keeps working.
    #[must_use]
    pub fn with_peers(
        mut self,
        inbox: tcp_messenger::Inbox<PeerMessage>,
        filter: PeerFilter,
    ) -> Self {
        self.peers = Some(PeerSource {
            inbox,
            filter,
            batch: Vec::with_capacity(PEER_MESSAGES_PER_TURN),
        });
        self
    }

    /// Takes the core's entropy from `seed` instead of a random one (deterministic runs).
    #[must_use]
    pub fn with_entropy_seed(mut self, seed: u64) -> Self {
        self.entropy_seed = seed;
        self
    }

    /// How long writes in flight may take to finish after [`Input::Shutdown`] (default: 40
    /// ticks, about one lease period).
    #[must_use]
    pub fn with_drain_grace(mut self, grace: Duration) -> Self {
        self.drain_grace = grace;
        self
    }

    /// Starts the core from the recovered state. An error (the core refuses the state) is
    /// fatal: the node must not run.
    pub fn start(&mut self, recovered: RecoveredState) -> Result<(), String> {
        if self.started {
            return Err("the driver was already started".to_owned());
        }
        self.step(Event::Start(recovered));
        if let Some(e) = self.fatal.take() {
            return Err(format!(
                "the consensus core cannot start from the recovered state: {e}"
            ));
        }
        self.started = true;
        self.publish_view();
        Ok(())
    }

    /// Runs until [`Input::Shutdown`] (and the grace period), the inputs close, or something
    /// fatal happens (storage failed, an undecodable committed value, ...), whose message it
    /// returns. Call [`Driver::start`] first.
    pub async fn run(
        mut self,
        mut inputs: mpsc::Receiver<Input>,
        mut storage_events: mpsc::UnboundedReceiver<StorageEvent>,
    ) -> Result<(), String> {
        if !self.started {
            return self.finish(
                Err("the driver ran before it was started".to_owned()),
                inputs,
            );
        }
        let jobs = self.jobs.clone();
        let mut peers = self.peers.take();
        self.next_tick = tokio::time::Instant::now() + self.tick;
        let result = loop {
            if let Some(e) = self.fatal.take() {
                tracing::error!(node = %self.node_name, "stopping: {e}");
                break Err(e);
            }
            if self.draining.is_some() && self.pending.is_empty() {
                break Ok(());
            }
            // A due tick goes first, whatever else is queued.
            if tokio::time::Instant::now() >= self.next_tick {
                self.on_tick();
                self.publish_view();
                continue;
            }
            let blocked = !self.backlog.is_empty();
            let next_tick = self.next_tick;
            let drain_deadline = self.draining;
            tokio::select! {
                biased;
                event = storage_events.recv() => match event {
                    Some(StorageEvent::Failed(e)) => break Err(e),
                    Some(event) => self.on_storage(event),
                    None => break Err("the storage thread stopped".to_owned()),
                },
                permit = jobs.reserve(), if blocked => match permit {
                    Ok(permit) => {
                        if let Some(job) = self.backlog.pop_front() {
                            permit.send(job);
                        }
                        self.flush_backlog();
                    }
                    Err(_) => break Err("the storage thread stopped".to_owned()),
                },
                // Before the input channel, which the end of every turn drains anyway: a
                // flood of client writes cannot hold back the acceptances that commit them.
                n = recv_peers(&mut peers), if !blocked => match (n, peers.as_mut()) {
                    (0, _) | (_, None) => {
                        tracing::debug!(node = %self.node_name, "the messenger's inbox closed");
                        peers = None;
                    }
                    (_, Some(source)) => self.on_peer_batch(source),
                },
                input = inputs.recv(), if !blocked => match input {
                    None => break Ok(()),
                    Some(input) => self.on_input(input),
                },
                () = tokio::time::sleep_until(next_tick) => self.on_tick(),
                () = sleep_until_or_forever(drain_deadline) => {
                    tracing::warn!(
                        pending = self.pending.len(),
                        "writes still in flight at the end of the shutdown grace period are \
                         answered E_NO_LONGER_MASTER (they may still commit)"
                    );
                    break Ok(());
                }
            }
            // Take whatever else is already queued before publishing the view, unless the
            // disk is behind, a tick is due or the driver must stop.
            for _ in 0..INPUTS_PER_TURN {
                if !self.backlog.is_empty()
                    || self.fatal.is_some()
                    || tokio::time::Instant::now() >= self.next_tick
                {
                    break;
                }
                match inputs.try_recv() {
                    Ok(input) => self.on_input(input),
                    Err(_) => break,
                }
            }
            self.publish_view();
        };
        self.finish(result, inputs)
    }

    fn finish(
        mut self,
        result: Result<(), String>,
        mut inputs: mpsc::Receiver<Input>,
    ) -> Result<(), String> {
        // Proposed and not answered: the value may still commit (here before the stop, or on
        // the other nodes), so the outcome is unknown.
        for (_, p) in std::mem::take(&mut self.pending) {
            let _ = p.reply.send(WriteOutcome::Unfinished);
        }
        // Still in the input channel: never proposed.
        inputs.close();
        while let Ok(input) = inputs.try_recv() {
            if let Input::Propose { reply, .. } = input {
                let _ = reply.send(WriteOutcome::GoingDown);
            }
        }
        self.publish_stopped();
        result
    }

    fn on_tick(&mut self) {
        self.step(Event::Tick);
        self.next_tick = tokio::time::Instant::now() + self.tick;
        self.shared.progress.send_modify(|p| p.ticks += 1);
    }

    fn on_input(&mut self, input: Input) {
        match input {
            Input::Propose { reply, .. } if self.draining.is_some() => {
                let _ = reply.send(WriteOutcome::GoingDown);
            }
            Input::Propose { payload, reply } => {
                if self.shared.sabotage.drop_proposals() {
                    drop((payload, reply));
                    return;
                }
                let id = self.next_proposal;
                self.next_proposal += 1;
                self.pending.insert(
                    id,
                    PendingWrite {
                        reply,
                        committed_at: None,
                    },
                );
                self.step(Event::Propose {
                    id: ProposalId(id),
                    payload,
                });
            }
            Input::Peer { from, msg, held } => {
                self.on_peer(from, msg);
                drop(held);
            }
            Input::DropMaster => self.step(Event::DropMaster),
            Input::Witnessed { reply } => {
                let _ = reply.send(self.core.witnessed().collect());
            }
            Input::Collapse { reply } => self.submit(Job::Collapse {
                force: true,
                reply: Some(reply),
            }),
            Input::CollapseTlogs { keep, reply } => {
                self.submit(Job::CollapseTlogs { keep, reply });
            }
            Input::Shutdown => {
                if self.draining.is_none() {
                    // New writes are refused from now on; those in flight get a grace period to
                    // commit so their clients learn the real outcome.
                    self.draining = Some(tokio::time::Instant::now() + self.drain_grace);
                }
            }
        }
    }
    /// The peer messages `recv_peers` took, each through the filter, handled in order.
    fn on_peer_batch(&mut self, source: &mut PeerSource) {
        for incoming in source.batch.drain(..) {
            if let Some((from, msg, held)) = source.filter.admit(incoming) {
                self.on_peer(from, msg);
                drop(held);
            }
        }
    }

    fn on_peer(&mut self, from: NodeId, msg: PeerMessage) {
        match msg {
            PeerMessage::Paxos(msg) => {
                self.step(Event::Message { from, msg });
                let now = self.shared.now();
                if self.core.known_master() == Some(from) {
                    self.master_heard_at = Some(now);
                }
                self.shared.metrics.heard_from(from.0, now);
            }
            PeerMessage::SnapshotRequest { offset, len } => {
                self.shared.metrics.snapshot_request_served();
                self.submit(Job::ServeSnapshot {
                    peer: from,
                    offset,
                    len,
                });
            }
            PeerMessage::SnapshotChunk { .. } | PeerMessage::NoSnapshot
                if self.fetching_from != Some(from) =>
            {
                tracing::debug!(peer = %from, "snapshot message nobody asked for dropped");
            }
            PeerMessage::SnapshotChunk {
                index,
                total,
                offset,
                data,
            } => self.submit(Job::SnapshotChunk {
                peer: from,
                index,
                total,
                offset,
                data,
            }),
            PeerMessage::NoSnapshot => self.submit(Job::NoSnapshot { peer: from }),
        }
    }

    fn on_storage(&mut self, event: StorageEvent) {
        match event {
            StorageEvent::Durable(ticket) => self.step(Event::Durable { ticket }),
            StorageEvent::CatchUpRead { peer, from, read } => {
                self.step(Event::CatchUpRead { peer, from, read });
            }
            StorageEvent::Send(to, msg) => self.transport.send(to, msg),
            StorageEvent::SnapshotInstalled(index) => {
                self.fetching_from = None;
                let took = self.fetch_started.take().map(|t| t.elapsed());
                self.shared
                    .metrics
                    .snapshot_installed(took.map_or(0.0, |t| t.as_secs_f64()));
                self.step(Event::SnapshotInstalled { index });
            }
            StorageEvent::Failed(_) => {}
        }
    }

    /// Queues `job` for the storage thread without ever blocking: when its queue is full the
    /// job waits in the backlog (in order), and the loop stops taking inputs until the storage
    /// thread made room.
    fn submit(&mut self, job: Job) {
        if self.backlog.is_empty() {
            match self.jobs.try_send(job) {
                Ok(()) => return,
                Err(TrySendError::Full(job)) => self.backlog.push_back(job),
                Err(TrySendError::Closed(_)) => {
                    self.fatal
                        .get_or_insert_with(|| "the storage thread stopped".to_owned());
                    return;
                }
            }
        } else {
            self.backlog.push_back(job);
        }
        self.note_backlog();
    }

    /// Moves backlog jobs to the storage queue while it has room.
    fn flush_backlog(&mut self) {
        while let Some(job) = self.backlog.pop_front() {
            match self.jobs.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(job)) => {
                    self.backlog.push_front(job);
                    break;
                }
                Err(TrySendError::Closed(_)) => {
                    self.fatal
                        .get_or_insert_with(|| "the storage thread stopped".to_owned());
                    break;
                }
            }
        }
        self.note_backlog();
    }

    fn note_backlog(&self) {
        let waiting = self.backlog.len();
        self.shared.progress.send_if_modified(|p| {
            let changed = p.jobs_waiting != waiting;
            p.jobs_waiting = waiting;
            changed
        });
    }

    fn step(&mut self, event: Event) {
        if self.fatal.is_some() {
            return;
        }
        let now = self.shared.now();
        self.entropy_counter += 1;
        let entropy = splitmix64(
            self.entropy_seed
                .wrapping_add(self.entropy_counter.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        );
        let mut effects = std::mem::take(&mut self.effects);
        if let Err(e) = self.core.step(now, entropy, event, &mut effects) {
            self.fatal = Some(format!("the consensus core refused an event: {e}"));
            effects.clear();
        }
        // Permissions this step took away are withdrawn before any of its effects (a
        // `LeaseReleased` among them) leaves the node.
        self.publish_if_narrowed();
        for effect in effects.drain(..) {
            // After a fatal error nothing more is applied, answered or sent.
            if self.fatal.is_none() {
                self.execute(effect);
            }
        }
        self.effects = effects;
        self.applied.clear();
        if self.fatal.is_some() {
            self.publish_stopped();
        }
    }

    /// Publishes the view now if the core's state allows less than the published view does:
    /// it left the master role, or its lease ends earlier (or is gone).
    fn publish_if_narrowed(&self) {
        let published = self.shared.view();
        let role = self.core.status().role;
        let lease = self.core.lease_expires();
        let left_office = published.role == NodeRole::Master && role != NodeRole::Master;
        let lease_shrank = match (published.lease_expires, lease) {
            (Some(_), None) => true,
            (Some(old), Some(new)) => new < old,
            (None, _) => false,
        };
        if left_office || lease_shrank {
            self.publish_view();
        }
    }

    fn execute(&mut self, effect: Effect) {
        match effect {
            Effect::Persist(p) => self.submit(Job::Persist(p)),
            Effect::Send { to, msg } => self.transport.send(to, PeerMessage::Paxos(msg)),
            Effect::Broadcast(msg) => self.transport.broadcast(PeerMessage::Paxos(msg)),
            Effect::Apply { index, value } => self.apply(index, &value),
            Effect::Reply { id, reply } => self.reply(id.0, reply),
            Effect::BecameMaster => {
                tracing::info!(node = %self.node_name, "became master");
            }
            Effect::StoppedBeingMaster => {
                // Before any later effect (a `LeaseReleased`): no more consistent reads or
                // new writes from here on.
                self.publish_view();
                tracing::info!(node = %self.node_name, "stopped being master");
            }
            Effect::ServeCatchUp { peer, from, up_to } => {
                self.submit(Job::CatchUp { peer, from, up_to });
            }
            Effect::FetchSnapshot { peer } => {
                self.fetching_from = Some(peer);
                self.fetch_started = Some(tokio::time::Instant::now());
                self.submit(Job::FetchSnapshot { peer });
            }
        }
    }

    fn reply(&mut self, id: u64, reply: Reply) {
        let outcome = match reply {
            Reply::Committed { index } => {
                if let Some(outcome) = self.applied.remove(&(index, id)) {
                    if let Some(p) = self.pending.remove(&id) {
                        let _ = p.reply.send(WriteOutcome::Applied(outcome));
                    }
                } else if let Some(p) = self.pending.get_mut(&id) {
                    p.committed_at = Some(index);
                }
                return;
            }
            Reply::NotMaster { master } => WriteOutcome::NotMaster(master),
            Reply::ReadOnly => WriteOutcome::ReadOnly,
            Reply::Overloaded => WriteOutcome::Overloaded,
            Reply::Indeterminate => WriteOutcome::Indeterminate,
        };
        if let Some(p) = self.pending.remove(&id) {
            let _ = p.reply.send(outcome);
        }
    }

    fn apply(&mut self, index: Index, value: &Value) {
        let updates = match storage::batch_updates(index, value) {
            Ok(updates) => updates,
            Err(e) => {
                // Skipping it would make this node diverge from those that applied it.
                self.fatal = Some(e.to_string());
                return;
            }
        };
        self.shared.metrics.committed_batch(updates.len());
        let outcomes = {
            let mut store = self
                .shared
                .store
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            store.apply_batch(index, &updates)
        };
        let outcomes = match outcomes {
            Ok(o) => o,
            Err(stale) => {
                // Only after a snapshot install raced ahead of the core; the snapshot has it.
                tracing::debug!("{stale}");
                return;
            }
        };
        if let Value::Batch(items) = value {
            for (proposal, outcome) in items.iter().zip(outcomes) {
                let id = proposal.id.0;
                match self.pending.get(&id).map(|p| p.committed_at) {
                    Some(Some(at)) if at == index => {
                        if let Some(p) = self.pending.remove(&id) {
                            let _ = p.reply.send(WriteOutcome::Applied(outcome));
                        }
                    }
                    Some(None) => {
                        self.applied.insert((index, id), outcome);
                    }
                    _ => {}
                }
            }
        }
    }

    /// The view of a node that serves nothing any more (stopped, or stopping on an error):
    /// no consistent reads (its store may miss committed values), no writes.
    fn publish_stopped(&self) {
        let status = self.core.status();
        let mut view = View::starting(status.committed);
        view.last_index = status.last_index;
        *self
            .shared
            .view
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = view;
    }

    fn publish_view(&self) {
        let status = self.core.status();
        let view = View {
            role: status.role,
            master: status.master,
            lease_expires: self.core.lease_expires(),
            committed: status.committed,
            last_index: status.last_index,
            master_heard_at: self.master_heard_at,
            promised: status.promised,
        };
        self.shared
            .metrics
            .set_proposals_pending(self.pending.len());
        *self
            .shared
            .view
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = view;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use kv_store::UserFunctionRegistry;
    use paxos_core::Role;

    struct Mute;

    impl Transport for Mute {
        fn send(&self, _: NodeId, _: PeerMessage) {}
        fn broadcast(&self, _: PeerMessage) {}
    }

    fn driver() -> (Driver, mpsc::Receiver<Job>) {
        let config = paxos_core::Config::new(NodeId(0), vec![Role::Voter; 3], 1_000_000_000);
        let core = Core::new(config).unwrap();
        let shared = Arc::new(Shared::new(
            Arc::new(RwLock::new(Store::new(Arc::new(
                UserFunctionRegistry::new(),
            )))),
            0,
            Clock::boot(),
            Duration::from_secs(1),
        ));
        let (jobs, jobs_rx) = mpsc::channel(16);
        let driver = Driver::new(
            core,
            shared,
            Arc::new(Mute),
            jobs,
            Duration::from_millis(10),
            "n0".to_owned(),
        );
        (driver, jobs_rx)
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn raw_boottime() -> u64 {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        u64::try_from(t.tv_sec).unwrap() * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap()
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn the_boot_clock_reads_clock_boottime_and_never_goes_back() {
        let before = raw_boottime();
        let clock = Clock::boot();
        let after = raw_boottime();
        let Clock::Boot { zero } = clock else {
            panic!("not the boot clock")
        };
        // The node's zero is a CLOCK_BOOTTIME reading (CLOCK_MONOTONIC lags it by the time the
        // machine spent suspended, so a monotonic reading would fall outside after a suspend).
        assert!(before <= zero && zero <= after, "{before} {zero} {after}");
        let mut last = clock.now();
        for _ in 0..10_000 {
            let now = clock.now();
            assert!(now >= last);
            last = now;
        }
        let outer_before = raw_boottime();
        let t = clock.now();
        let outer_after = raw_boottime();
        assert!(outer_before - zero <= t && t <= outer_after - zero);
    }

    #[tokio::test(start_paused = true)]
    async fn the_view_judges_the_lease_by_the_clock_the_core_is_given() {
        let (driver, _jobs) = driver();
        let shared = Arc::new(Shared::new(
            Arc::clone(&driver.shared.store),
            0,
            Clock::tokio(),
            Duration::from_secs(1),
        ));
        let lease = 100_000_000;
        {
            let mut view = shared.view.lock().unwrap();
            view.role = NodeRole::Master;
            view.lease_expires = Some(shared.now() + lease);
        }
        assert!(shared.holds_lease());
        tokio::time::advance(Duration::from_nanos(lease - 1)).await;
        assert!(shared.holds_lease());
        tokio::time::advance(Duration::from_nanos(1)).await;
        assert!(!shared.holds_lease(), "the lease outlived the clock");
    }

    fn chunk() -> PeerMessage {
        PeerMessage::SnapshotChunk {
            index: 5,
            total: 3,
            offset: 0,
            data: vec![1, 2, 3],
        }
    }

    #[test]
    fn snapshot_chunks_nobody_asked_for_are_dropped_before_the_storage_queue() {
        let (mut driver, mut jobs) = driver();
        driver.on_peer(NodeId(1), chunk());
        driver.on_peer(NodeId(1), PeerMessage::NoSnapshot);
        assert!(jobs.try_recv().is_err(), "an unsolicited chunk was queued");

        driver.execute(Effect::FetchSnapshot { peer: NodeId(1) });
        assert!(matches!(
            jobs.try_recv(),
            Ok(Job::FetchSnapshot { peer: NodeId(1) })
        ));
        driver.on_peer(NodeId(2), chunk());
        assert!(
            jobs.try_recv().is_err(),
            "a chunk from another peer was queued"
        );
        driver.on_peer(NodeId(1), chunk());
        assert!(matches!(
            jobs.try_recv(),
            Ok(Job::SnapshotChunk {
                peer: NodeId(1),
                ..
            })
        ));

        driver.on_storage(StorageEvent::SnapshotInstalled(5));
        driver.on_peer(NodeId(1), chunk());
        assert!(
            !matches!(jobs.try_recv(), Ok(Job::SnapshotChunk { .. })),
            "a chunk after the install was queued"
        );
    }
}
