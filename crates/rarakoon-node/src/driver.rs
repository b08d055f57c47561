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
//! - The view the client handler reads (role, master, lease) is refreshed after every step.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use kv_store::{Store, UpdateOutcome};
use paxos_core::{
    Core, Effect, Event, Index, NodeId, NodeRole, ProposalId, RecoveredState, Reply, Time, Value,
};
use tokio::sync::{mpsc, oneshot};

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
    /// The node is stopping.
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
    },
    /// Give up the master role (admin drop_master).
    DropMaster,
    /// Collapse now (admin), answering on `reply`.
    Collapse {
        /// Where the result goes.
        reply: oneshot::Sender<Result<storage::CollapseReport, String>>,
    },
    /// Stop: refuse new writes, give those in flight a grace period (about one lease period)
    /// to finish, fail the rest with `E_GOING_DOWN`, and return.
    Shutdown,
}

/// What the client handler may read about the node's role without asking the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// Role in the protocol.
    pub role: NodeRole,
    /// Known master.
    pub master: Option<NodeId>,
    /// Local monotonic time until which this node holds the lease (master only).
    pub lease_expires: Option<Time>,
    /// Committed index.
    pub committed: Index,
    /// Highest index in the log.
    pub last_index: Index,
    /// Local time a message from the known master last arrived (slaves: the master is named
    /// only while this is younger than the slave's lease wait, as Arakoon does).
    pub master_heard_at: Option<Time>,
}

/// State shared between the driver and the client handler.
#[derive(Debug)]
pub struct Shared {
    /// The store (written by the driver and the storage thread, read by client tasks).
    pub store: Arc<RwLock<Store>>,
    /// The role view.
    pub view: Mutex<View>,
    /// The zero of the node's monotonic clock.
    pub clock_start: Instant,
    /// How long a slave keeps naming a master it no longer hears from.
    pub master_silence: Duration,
}

impl Shared {
    /// Monotonic time in nanoseconds since the node started.
    pub fn now(&self) -> Time {
        u64::try_from(self.clock_start.elapsed().as_nanos()).unwrap_or(u64::MAX)
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
        view.role == NodeRole::Master && view.lease_expires.is_some_and(|t| self.now() < t)
    }
}

struct PendingWrite {
    reply: oneshot::Sender<WriteOutcome>,
    committed_at: Option<Index>,
}

/// The driver task's state.
pub struct Driver {
    core: Core,
    shared: Arc<Shared>,
    transport: Arc<dyn Transport>,
    jobs: SyncSender<Job>,
    pending: BTreeMap<u64, PendingWrite>,
    /// Outcomes applied in the current step whose `Reply::Committed` has not come yet.
    applied: BTreeMap<(Index, u64), UpdateOutcome>,
    next_proposal: u64,
    effects: Vec<Effect>,
    entropy: RandomState,
    entropy_counter: u64,
    tick: Duration,
    node_name: String,
    master_heard_at: Option<Time>,
    /// Set by `Input::Shutdown`: the time by which in-flight writes must have finished.
    draining: Option<tokio::time::Instant>,
    drain_grace: Duration,
    /// The peer whose head snapshot is being fetched. Snapshot chunks from anyone else (or
    /// when no fetch runs) are dropped here, so a peer cannot fill the storage queue with
    /// megabyte chunks nobody asked for.
    fetching_from: Option<NodeId>,
}

async fn sleep_until_or_forever(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

impl Driver {
    /// A driver around a constructed (not yet started) core.
    pub fn new(
        core: Core,
        shared: Arc<Shared>,
        transport: Arc<dyn Transport>,
        jobs: SyncSender<Job>,
        tick: Duration,
        node_name: String,
    ) -> Self {
        Driver {
            core,
            shared,
            transport,
            jobs,
            pending: BTreeMap::new(),
            applied: BTreeMap::new(),
            next_proposal: 1,
            effects: Vec::new(),
            entropy: RandomState::new(),
            entropy_counter: 0,
            tick,
            node_name,
            master_heard_at: None,
            draining: None,
            drain_grace: tick.saturating_mul(40),
            fetching_from: None,
        }
    }

    /// Runs until [`Input::Shutdown`], the inputs close, or storage fails. Returns the storage
    /// failure, if that was the reason.
    pub async fn run(
        mut self,
        recovered: RecoveredState,
        mut inputs: mpsc::Receiver<Input>,
        mut storage_events: mpsc::UnboundedReceiver<StorageEvent>,
    ) -> Result<(), String> {
        self.step(Event::Start(recovered));
        let mut ticker = tokio::time::interval(self.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result = loop {
            let drain_deadline = self.draining;
            tokio::select! {
                biased;
                event = storage_events.recv() => match event {
                    Some(StorageEvent::Failed(e)) => break Err(e),
                    Some(event) => self.on_storage(event),
                    None => break Err("the storage thread stopped".to_owned()),
                },
                input = inputs.recv() => match input {
                    None => break Ok(()),
                    Some(input) => self.on_input(input),
                },
                _ = ticker.tick() => self.step(Event::Tick),
                () = sleep_until_or_forever(drain_deadline) => {
                    tracing::warn!(
                        pending = self.pending.len(),
                        "writes still in flight at the end of the shutdown grace period fail with E_GOING_DOWN"
                    );
                    break Ok(());
                }
            }
            // Take whatever else is already queued before publishing the view.
            for _ in 0..256 {
                match inputs.try_recv() {
                    Ok(input) => self.on_input(input),
                    Err(_) => break,
                }
            }
            self.publish_view();
            if self.draining.is_some() && self.pending.is_empty() {
                break Ok(());
            }
        };
        self.finish(result)
    }

    fn finish(mut self, result: Result<(), String>) -> Result<(), String> {
        for (_, p) in std::mem::take(&mut self.pending) {
            let _ = p.reply.send(WriteOutcome::GoingDown);
        }
        result
    }

    fn on_input(&mut self, input: Input) {
        match input {
            Input::Propose { reply, .. } if self.draining.is_some() => {
                let _ = reply.send(WriteOutcome::GoingDown);
            }
            Input::Propose { payload, reply } => {
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
            Input::Peer { from, msg } => self.on_peer(from, msg),
            Input::DropMaster => self.step(Event::DropMaster),
            Input::Collapse { reply } => self.submit(Job::Collapse {
                force: true,
                reply: Some(reply),
            }),
            Input::Shutdown => {
                if self.draining.is_none() {
                    // New writes are refused from now on; those in flight get a grace period to
                    // commit so their clients learn the real outcome.
                    self.draining = Some(tokio::time::Instant::now() + self.drain_grace);
                }
            }
        }
    }

    fn on_peer(&mut self, from: NodeId, msg: PeerMessage) {
        match msg {
            PeerMessage::Paxos(msg) => {
                self.step(Event::Message { from, msg });
                if self.core.known_master() == Some(from) {
                    self.master_heard_at = Some(self.shared.now());
                }
            }
            PeerMessage::SnapshotRequest { offset, len } => self.submit(Job::ServeSnapshot {
                peer: from,
                offset,
                len,
            }),
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
                self.step(Event::SnapshotInstalled { index });
            }
            StorageEvent::Failed(_) => {}
        }
    }

    fn submit(&mut self, job: Job) {
        // The storage thread's queue is bounded; blocking here is the back-pressure that keeps
        // the driver from running ahead of the disk.
        if self.jobs.send(job).is_err() {
            tracing::error!("the storage thread is gone; the job is dropped");
        }
    }

    fn step(&mut self, event: Event) {
        let now = self.shared.now();
        self.entropy_counter += 1;
        let entropy = self.entropy.hash_one(self.entropy_counter);
        let mut effects = std::mem::take(&mut self.effects);
        if let Err(e) = self.core.step(now, entropy, event, &mut effects) {
            tracing::error!("consensus core refused an event: {e}");
        }
        for effect in effects.drain(..) {
            self.execute(effect);
        }
        self.effects = effects;
        self.applied.clear();
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
                tracing::info!(node = %self.node_name, "stopped being master");
            }
            Effect::ServeCatchUp { peer, from, up_to } => {
                self.submit(Job::CatchUp { peer, from, up_to });
            }
            Effect::FetchSnapshot { peer } => {
                self.fetching_from = Some(peer);
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
        let updates = storage::batch_updates(index, value);
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

    fn publish_view(&self) {
        let status = self.core.status();
        let view = View {
            role: status.role,
            master: status.master,
            lease_expires: self.core.lease_expires(),
            committed: status.committed,
            last_index: status.last_index,
            master_heard_at: self.master_heard_at,
        };
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

    fn driver() -> (Driver, std::sync::mpsc::Receiver<Job>) {
        let config = paxos_core::Config::new(NodeId(0), vec![Role::Voter; 3], 1_000_000_000);
        let core = Core::new(config).unwrap();
        let shared = Arc::new(Shared {
            store: Arc::new(RwLock::new(Store::new(Arc::new(
                UserFunctionRegistry::new(),
            )))),
            view: Mutex::new(View {
                role: NodeRole::Starting,
                master: None,
                lease_expires: None,
                committed: 0,
                last_index: 0,
                master_heard_at: None,
            }),
            clock_start: Instant::now(),
            master_silence: Duration::from_secs(1),
        });
        let (jobs, jobs_rx) = std::sync::mpsc::sync_channel(16);
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
        let (mut driver, jobs) = driver();
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
