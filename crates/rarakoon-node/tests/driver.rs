//! The driver in-process: a real paxos-core behind the real driver, with a transport that
//! records what leaves (and what the node's view allowed at that moment) and a stand-in for
//! the storage thread. Time is tokio's paused clock (`start_paused`), so nothing here depends
//! on how fast the machine is; one test needs real time and runs it on its own runtime with a
//! generous watchdog that only detects a blocked runtime.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kv_store::{ReadLimits, Store, UserFunctionRegistry};
use paxos_core::{Ballot, Core, LogEntry, Message, NodeId, NodeRole, RecoveredState, Role, Value};
use rarakoon_client::{Consistency, ErrorCode, RangeQuery, Request, Response};
use rarakoon_node::config::MasterMode;
use rarakoon_node::driver::{Clock, Driver, Input, Shared, WriteOutcome};
use rarakoon_node::handler::{HandlerConfig, NodeHandler};
use rarakoon_node::storage::{Job, StorageEvent};
use rarakoon_node::transport::Transport;
use rarakoon_node::wire::PeerMessage;
use tokio::sync::{mpsc, oneshot, watch};

const LEASE: u64 = 1_000_000_000;

/// One message handed to the transport, with what the view allowed at that moment.
#[derive(Debug, Clone)]
struct Sent {
    #[allow(dead_code)]
    to: Option<NodeId>,
    msg: PeerMessage,
    holds_lease: bool,
    role: NodeRole,
    inputs_queued: usize,
}

struct Recorder {
    shared: Arc<Shared>,
    sent: Mutex<Vec<Sent>>,
    count: watch::Sender<usize>,
    /// The driver's input channel (to see how much input was queued at each send).
    inputs: Mutex<Option<mpsc::Sender<Input>>>,
    /// When set, every refused prepare puts a new stale prepare into the input channel: a
    /// stream that keeps the channel non-empty whenever the driver looks.
    refill: AtomicBool,
    /// Prepare refusals sent (not kept in `sent`).
    refused: AtomicUsize,
}

fn stale_prepare() -> Input {
    Input::Peer {
        from: NodeId(1),
        msg: PeerMessage::Paxos(Message::Prepare {
            ballot: Ballot {
                round: 1,
                node: NodeId(1),
            },
            committed: 0,
        }),
        held: Default::default(),
    }
}

impl Recorder {
    fn new(shared: Arc<Shared>) -> Arc<Recorder> {
        Arc::new(Recorder {
            shared,
            sent: Mutex::new(Vec::new()),
            count: watch::Sender::new(0),
            inputs: Mutex::new(None),
            refill: AtomicBool::new(false),
            refused: AtomicUsize::new(0),
        })
    }

    fn record(&self, to: Option<NodeId>, msg: PeerMessage) {
        let view = self.shared.view();
        let inputs = self.inputs.lock().unwrap().clone();
        let inputs_queued = inputs
            .as_ref()
            .map_or(0, |tx| tx.max_capacity() - tx.capacity());
        if self.refill.load(Ordering::SeqCst)
            && matches!(msg, PeerMessage::Paxos(Message::PrepareRefused { .. }))
            && let Some(tx) = &inputs
        {
            let _ = tx.try_send(stale_prepare());
        }
        if matches!(msg, PeerMessage::Paxos(Message::PrepareRefused { .. })) {
            // The saturating stream's answers: counted, not kept.
            self.refused.fetch_add(1, Ordering::SeqCst);
            return;
        }
        self.sent.lock().unwrap().push(Sent {
            to,
            msg,
            holds_lease: self.shared.holds_lease(),
            role: view.role,
            inputs_queued,
        });
        self.count.send_modify(|c| *c += 1);
    }

    fn find(&self, pick: impl Fn(&Sent) -> bool) -> Option<Sent> {
        self.sent.lock().unwrap().iter().find(|s| pick(s)).cloned()
    }
}

impl Transport for Recorder {
    fn send(&self, to: NodeId, msg: PeerMessage) {
        self.record(Some(to), msg);
    }

    fn broadcast(&self, msg: PeerMessage) {
        self.record(None, msg);
    }
}

fn is_lease_released(s: &Sent) -> bool {
    matches!(s.msg, PeerMessage::Paxos(Message::LeaseReleased { .. }))
}

fn is_my_prepare(s: &Sent) -> bool {
    matches!(
        s.msg,
        PeerMessage::Paxos(Message::Prepare { ballot, .. }) if ballot.node == NodeId(0)
    )
}

/// How the storage stand-in behaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Disk {
    /// Reports every persist durable at once (while `hold` is off).
    Durable,
    /// Takes nothing from its queue.
    Stuck,
}

struct TestNode {
    shared: Arc<Shared>,
    recorder: Arc<Recorder>,
    inputs: mpsc::Sender<Input>,
    /// While set, the durable disk keeps persists to itself (writes stay in flight).
    hold: Arc<AtomicBool>,
    /// Persists the disk took (a write is in flight once its persist got here).
    persists: watch::Receiver<u64>,
    tick: Duration,
    driver: Option<Driver>,
    inputs_rx: Option<mpsc::Receiver<Input>>,
    storage_rx: Option<mpsc::UnboundedReceiver<StorageEvent>>,
    _storage_tx: mpsc::UnboundedSender<StorageEvent>,
    _stuck_jobs: Option<mpsc::Receiver<Job>>,
}

fn shared(clock: Clock) -> Arc<Shared> {
    Arc::new(Shared::new(
        Arc::new(RwLock::new(Store::new(Arc::new(
            UserFunctionRegistry::new(),
        )))),
        0,
        clock,
        Duration::from_secs(1),
    ))
}

fn fresh() -> RecoveredState {
    RecoveredState {
        promised: Ballot::ZERO,
        committed: 0,
        entries: Vec::new(),
    }
}

/// A started (not yet running) driver for node 0 of `voters` voters.
fn test_node(
    voters: usize,
    recovered: RecoveredState,
    input_capacity: usize,
    jobs_capacity: usize,
    disk: Disk,
    clock: Clock,
) -> TestNode {
    let cfg = paxos_core::Config::new(NodeId(0), vec![Role::Voter; voters], LEASE);
    let tick = Duration::from_nanos((cfg.retransmit_interval / 2).max(1_000_000));
    let core = Core::new(cfg).unwrap();
    let shared = shared(clock);
    let recorder = Recorder::new(Arc::clone(&shared));
    let (inputs, inputs_rx) = mpsc::channel(input_capacity);
    *recorder.inputs.lock().unwrap() = Some(inputs.clone());
    let (storage_tx, storage_rx) = mpsc::unbounded_channel();
    let (jobs_tx, mut jobs_rx) = mpsc::channel(jobs_capacity);
    let hold = Arc::new(AtomicBool::new(false));
    let (persists_tx, persists) = watch::channel(0u64);
    let mut stuck = None;
    match disk {
        Disk::Durable => {
            let events = storage_tx.clone();
            let hold = Arc::clone(&hold);
            tokio::spawn(async move {
                while let Some(job) = jobs_rx.recv().await {
                    if let Job::Persist(p) = job {
                        persists_tx.send_modify(|n| *n += 1);
                        if !hold.load(Ordering::SeqCst) {
                            let _ = events.send(StorageEvent::Durable(p.ticket));
                        }
                    }
                }
            });
        }
        Disk::Stuck => stuck = Some(jobs_rx),
    }
    let transport: Arc<dyn Transport> = recorder.clone();
    // A grace period well inside the lease: a write can still be in flight at its end.
    let mut driver = Driver::new(
        core,
        Arc::clone(&shared),
        transport,
        jobs_tx,
        tick,
        "n0".to_owned(),
    )
    .with_drain_grace(tick * 10);
    driver.start(recovered).unwrap();
    TestNode {
        shared,
        recorder,
        inputs,
        hold,
        persists,
        tick,
        driver: Some(driver),
        inputs_rx: Some(inputs_rx),
        storage_rx: Some(storage_rx),
        _storage_tx: storage_tx,
        _stuck_jobs: stuck,
    }
}

impl TestNode {
    fn spawn(&mut self) -> tokio::task::JoinHandle<Result<(), String>> {
        let driver = self.driver.take().unwrap();
        let inputs = self.inputs_rx.take().unwrap();
        let storage = self.storage_rx.take().unwrap();
        tokio::spawn(driver.run(inputs, storage))
    }

    /// Waits (in virtual time) until the node is master with a valid lease.
    async fn wait_master(&self) {
        let mut progress = self.shared.progress.subscribe();
        for _ in 0..10_000 {
            if self.shared.holds_lease() {
                return;
            }
            progress.changed().await.unwrap();
        }
        panic!("node 0 never became master: {:?}", self.shared.view());
    }

    fn handler(&self, read_limits: ReadLimits) -> NodeHandler {
        NodeHandler::new(
            HandlerConfig {
                node_name: "n0".to_owned(),
                cluster_id: Bytes::from_static(b"t"),
                node_names: vec!["n0".to_owned()],
                master_mode: MasterMode::Elected,
                max_value_size: 1 << 20,
                max_request_size: 1 << 20,
                read_limits,
                witness: false,
            },
            Arc::clone(&self.shared),
            self.inputs.clone(),
        )
    }

    async fn propose_raw(&self, payload: Vec<u8>) -> oneshot::Receiver<WriteOutcome> {
        let (reply, rx) = oneshot::channel();
        self.inputs
            .send(Input::Propose { payload, reply })
            .await
            .unwrap();
        rx
    }
}

#[tokio::test(start_paused = true)]
async fn the_view_refuses_consistent_reads_before_lease_released_leaves() {
    let mut node = test_node(1, fresh(), 1024, 1024, Disk::Durable, Clock::tokio());
    let driver = node.spawn();
    node.wait_master().await;
    assert!(node.recorder.find(is_lease_released).is_none());

    let mut count = node.recorder.count.subscribe();
    node.inputs.send(Input::DropMaster).await.unwrap();
    let released = loop {
        if let Some(s) = node.recorder.find(is_lease_released) {
            break s;
        }
        count.changed().await.unwrap();
    };
    assert!(
        !released.holds_lease,
        "LeaseReleased was handed to the transport while the view still served consistent reads"
    );
    assert_ne!(
        released.role,
        NodeRole::Master,
        "LeaseReleased left while the view still accepted writes"
    );
    assert!(!node.shared.holds_lease());

    node.inputs.send(Input::Shutdown).await.unwrap();
    driver.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn ticks_fire_under_a_saturating_input_stream() {
    // Node 0 of three; its peers never answer. It must stand (a tick-driven election) although
    // its input channel never runs dry: each stale prepare it refuses puts another one back.
    let recovered = RecoveredState {
        promised: Ballot {
            round: 5,
            node: NodeId(2),
        },
        committed: 0,
        entries: Vec::new(),
    };
    let mut node = test_node(3, recovered, 64, 1024, Disk::Durable, Clock::tokio());
    for _ in 0..64 {
        node.inputs.try_send(stale_prepare()).unwrap();
    }
    node.recorder.refill.store(true, Ordering::SeqCst);
    let driver = node.spawn();
    let ticks_wanted = 400;
    for _ in 0..ticks_wanted {
        tokio::time::advance(node.tick).await;
        tokio::task::yield_now().await;
        if node.recorder.find(is_my_prepare).is_some() {
            break;
        }
    }
    let refused = node.recorder.refused.load(Ordering::SeqCst);
    let ticks = node.shared.progress.borrow().ticks;
    let prepare = node.recorder.find(is_my_prepare);
    driver.abort();
    assert!(
        refused > 1000,
        "the input stream was not saturating ({refused} inputs)"
    );
    let prepare = prepare.unwrap_or_else(|| {
        panic!("no election after {ticks_wanted} tick periods of input load ({ticks} ticks ran)")
    });
    assert!(
        prepare.inputs_queued > 0,
        "the election ran only once the inputs were drained"
    );
    assert!(ticks > 0);
}

#[test]
fn a_full_storage_queue_stalls_neither_ticks_nor_the_client_listener() {
    // Real time on a single-threaded runtime: a driver that blocked its thread on the full
    // storage queue would stop everything on it. The watchdog only detects such a stall.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut node = test_node(3, fresh(), 1024, 1, Disk::Stuck, Clock::boot());
            let handler = Arc::new(node.handler(ReadLimits::DEFAULT));
            let listener = rarakoon_client::listener::Listener::bind(
                "127.0.0.1:0".parse().unwrap(),
                rarakoon_client::listener::ListenerConfig::new("t"),
                handler,
            )
            .await
            .unwrap();
            let driver = node.spawn();
            // Each snapshot request is a storage job; the queue holds one.
            for _ in 0..8 {
                node.inputs
                    .send(Input::Peer {
                        from: NodeId(1),
                        msg: PeerMessage::SnapshotRequest { offset: 0, len: 1 },
                        held: Default::default(),
                    })
                    .await
                    .unwrap();
            }
            let mut progress = node.shared.progress.subscribe();
            progress.wait_for(|p| p.jobs_waiting > 0).await.unwrap();
            let ticks = progress.borrow().ticks;
            progress.wait_for(|p| p.ticks >= ticks + 3).await.unwrap();

            // The client listener answers.
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = tokio::net::TcpStream::connect(listener.local_addr())
                .await
                .unwrap();
            let mut bytes = BytesMut::new();
            rarakoon_client::Prologue {
                cluster_id: Bytes::from_static(b"t"),
            }
            .encode(&mut bytes);
            Request::WhoMaster.encode(&mut bytes);
            stream.write_all(&bytes).await.unwrap();
            let mut rc = [0u8; 4];
            stream.read_exact(&mut rc).await.unwrap();
            assert_eq!(rc, [0, 0, 0, 0], "who_master failed");
            assert!(node.shared.progress.borrow().jobs_waiting > 0);
            driver.abort();
            listener.shutdown().await;
        });
        let _ = done_tx.send(());
    });
    done_rx.recv_timeout(Duration::from_secs(120)).expect(
        "the runtime stalled: ticks or the client listener stopped with the storage queue full",
    );
}

#[tokio::test(start_paused = true)]
async fn a_write_in_flight_at_shutdown_is_indeterminate_and_a_later_one_going_down() {
    let mut node = test_node(1, fresh(), 1024, 1024, Disk::Durable, Clock::tokio());
    let driver = node.spawn();
    node.wait_master().await;
    let handler = Arc::new(node.handler(ReadLimits::DEFAULT));
    // Start right after a lease renewal, so that the lease outlasts the shutdown grace period
    // (a quarter of it) and the write is still in flight at its end.
    let lease = node.shared.view().lease_expires;
    let mut progress = node.shared.progress.subscribe();
    while node.shared.view().lease_expires <= lease {
        progress.changed().await.unwrap();
    }

    // A write whose persist never becomes durable: in flight.
    node.hold.store(true, Ordering::SeqCst);
    let mut persists = node.persists.clone();
    let before = *persists.borrow();
    let first = tokio::spawn({
        let handler = Arc::clone(&handler);
        async move {
            handler
                .execute(Request::Set {
                    key: Bytes::from_static(b"k"),
                    value: Bytes::from_static(b"v"),
                })
                .await
        }
    });
    persists.wait_for(|n| *n > before).await.unwrap();

    node.inputs.send(Input::Shutdown).await.unwrap();
    // Refused before being proposed: a definite failure.
    let second = handler
        .execute(Request::Set {
            key: Bytes::from_static(b"k2"),
            value: Bytes::from_static(b"v2"),
        })
        .await
        .unwrap_err();
    assert_eq!(second.code, ErrorCode::GoingDown, "{second}");

    driver.await.unwrap().unwrap();
    let first = first.await.unwrap().unwrap_err();
    assert_eq!(
        first.code,
        ErrorCode::NoLongerMaster,
        "a write that may still commit must be answered as indeterminate: {first}"
    );
    assert!(first.message_lossy().contains("may or may not"), "{first}");
}

#[tokio::test(start_paused = true)]
async fn an_undecodable_committed_value_halts_the_node_naming_its_index() {
    let mut node = test_node(1, fresh(), 1024, 1024, Disk::Durable, Clock::tokio());
    let driver = node.spawn();
    node.wait_master().await;
    let applied_before = node.shared.store.read().unwrap().applied_index();
    let reply = node.propose_raw(vec![0xFF, 0xFE, 0xFD]).await;
    // Virtual time: a minute of it passes in an instant once the node idles.
    let error = tokio::time::timeout(Duration::from_secs(60), driver)
        .await
        .expect("the node went on after a committed value it could not decode")
        .unwrap()
        .unwrap_err();
    assert!(error.contains("committed entry"), "{error}");
    assert!(error.contains("cannot be decoded"), "{error}");
    assert!(error.contains("upgrade this node"), "{error}");
    let index: u64 = error
        .split("committed entry ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no index named: {error}"));
    assert!(Some(index) > applied_before, "{error}");
    assert!(matches!(reply.await, Ok(WriteOutcome::Unfinished)));
    // Nothing of it was applied, and the node serves nothing any more.
    let applied = node.shared.store.read().unwrap().applied_index();
    assert!(applied < Some(index), "{applied:?}");
    assert!(!node.shared.holds_lease());
    assert_ne!(node.shared.view().role, NodeRole::Master);
}

#[tokio::test(start_paused = true)]
async fn a_core_that_refuses_its_recovered_state_is_fatal() {
    let cfg = paxos_core::Config::new(NodeId(0), vec![Role::Voter; 3], LEASE);
    let core = Core::new(cfg).unwrap();
    let shared = shared(Clock::tokio());
    let (jobs, _jobs_rx) = mpsc::channel(16);
    let mut driver = Driver::new(
        core,
        Arc::clone(&shared),
        Recorder::new(Arc::clone(&shared)),
        jobs,
        Duration::from_millis(25),
        "n0".to_owned(),
    );
    // Entries must follow the committed index without a gap.
    let gap = RecoveredState {
        promised: Ballot::ZERO,
        committed: 3,
        entries: vec![LogEntry {
            index: 7,
            ballot: Ballot {
                round: 1,
                node: NodeId(0),
            },
            value: Value::Master { node: NodeId(0) },
        }],
    };
    let error = driver.start(gap).unwrap_err();
    assert!(error.contains("cannot start"), "{error}");
    assert!(error.contains("index 7, expected 4"), "{error}");
    // It does not run as a zombie either.
    let (_inputs, inputs_rx) = mpsc::channel(16);
    let (_events, events_rx) = mpsc::unbounded_channel();
    let error = driver.run(inputs_rx, events_rx).await.unwrap_err();
    assert!(error.contains("before it was started"), "{error}");
}

#[tokio::test(start_paused = true)]
async fn reads_are_bounded_by_the_read_limits_and_small_answers_still_work() {
    let mut node = test_node(1, fresh(), 1024, 1024, Disk::Durable, Clock::tokio());
    let driver = node.spawn();
    node.wait_master().await;
    let limits = ReadLimits {
        max_results: 10,
        max_bytes: 1 << 20,
    };
    let handler = node.handler(limits);
    for i in 0..10 {
        handler
            .execute(Request::Set {
                key: Bytes::from(format!("k{i:02}")),
                value: Bytes::from_static(b"v"),
            })
            .await
            .unwrap();
    }
    let all = |max| {
        Request::Range(RangeQuery {
            consistency: Consistency::Consistent,
            first: None,
            first_inclusive: true,
            last: None,
            last_inclusive: true,
            max,
        })
    };
    // max = -1 ("all", what Arakoon clients send) on a store within the limits.
    match handler.execute(all(-1)).await.unwrap() {
        Response::Range(keys) => assert_eq!(keys.len(), 10),
        other => panic!("{other:?}"),
    }
    handler
        .execute(Request::Set {
            key: Bytes::from_static(b"k10"),
            value: Bytes::from_static(b"v"),
        })
        .await
        .unwrap();
    let e = handler.execute(all(-1)).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::BadInput, "{e}");
    assert!(e.message_lossy().contains("max_results = 10"), "{e}");
    let e = handler
        .execute(Request::PrefixKeys {
            consistency: Consistency::Consistent,
            prefix: Bytes::from_static(b"k"),
            max: -1,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::BadInput, "{e}");
    // A bounded max within the limits is answered.
    match handler.execute(all(3)).await.unwrap() {
        Response::Range(keys) => assert_eq!(keys.len(), 3),
        other => panic!("{other:?}"),
    }
    // Bytes: two one-byte values fit in two bytes, three do not.
    let tight = node.handler(ReadLimits {
        max_results: 100,
        max_bytes: 2,
    });
    let keys = |n: usize| (0..n).map(|i| Bytes::from(format!("k{i:02}"))).collect();
    tight
        .execute(Request::MultiGet {
            consistency: Consistency::Consistent,
            keys: keys(2),
        })
        .await
        .unwrap();
    let e = tight
        .execute(Request::MultiGetOption {
            consistency: Consistency::Consistent,
            keys: keys(3),
        })
        .await
        .unwrap_err();
    assert!(e.message_lossy().contains("max_bytes = 2"), "{e}");
    node.inputs.send(Input::Shutdown).await.unwrap();
    driver.await.unwrap().unwrap();
}
