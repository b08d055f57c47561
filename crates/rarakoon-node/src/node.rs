//! A running node: start-up in the documented order, and a clean stop.
//!
//! [`Node::start`]: lock the home directory, recover the store and log from disk ([`prepare`]),
//! start the messenger, assemble the node ([`Prepared::assemble`]: storage loop, driver,
//! handler), start the storage thread and the driver, and finally the client listener. The
//! deterministic simulator uses the same [`prepare`] and [`Prepared::assemble`] (ADR 0140). [`Node::stop`]:
//! stop accepting clients (in-flight requests finish or fail with `E_GOING_DOWN`), stop the
//! driver, let the storage thread sync and exit, stop the messenger, and release the lock.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kv_store::UserFunctionRegistry;
use paxos_core::{Core, NodeId, Role};
use rarakoon_client::Limits;
use rarakoon_client::listener::{Listener, ListenerConfig};
use tcp_messenger::{Messenger, MessengerConfig};
use tokio::sync::mpsc;
use write_ahead_log::{FileSystem, StdFs};

use crate::config::{ClusterConfig, MasterMode, NodeConfig};
use crate::driver::{Clock, Driver, Input, Shared};
use crate::handler::{HandlerConfig, NodeHandler};
use crate::home_lock::{HomeLock, HomeLockError};
use crate::messaging::{PeerFilter, TcpTransport};
use crate::metrics::http::{Endpoint, Limits as MetricsLimits, MetricsServer};
use crate::sabotage::Sabotage;
use crate::storage::{self, DiskDelay, StorageError, StorageThread};
use crate::transport::Transport;
use crate::wire::PeerMessage;

/// Why a node did not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The config does not name this node.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The home directory is locked or cannot be created.
    #[error(transparent)]
    Lock(#[from] HomeLockError),
    /// The config's nodes do not match the home's membership record (or it is damaged).
    #[error(transparent)]
    Membership(#[from] crate::membership::MembershipError),
    /// Recovery from disk failed.
    #[error("cannot start from the data in {}: {cause}{repair}", home.display())]
    Storage {
        /// The home directory.
        home: PathBuf,
        /// The problem.
        cause: StorageError,
        /// What the operator can do about it (empty when nothing specific applies).
        repair: String,
    },
    /// The consensus core refused the recovered state.
    #[error("cannot start from the data in {}: {cause}", home.display())]
    Start {
        /// The home directory.
        home: PathBuf,
        /// The core's reason.
        cause: String,
    },
    /// The consensus configuration is not usable.
    #[error("consensus configuration: {0}")]
    Paxos(String),
    /// A configured user function could not be loaded (unreadable, wrong hash, refused).
    #[error(transparent)]
    UserFunction(#[from] crate::wasm_functions::LoadError),
    /// A socket could not be bound.
    #[error("cannot listen on {addr} ({what}): {message}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        message: String,
    },
    /// A thread could not be started.
    #[error("cannot start the storage thread: {0}")]
    Thread(std::io::Error),
    /// The node failed while running (the WAL failed).
    #[error("node failed: {0}")]
    Failed(String),
}

/// Jobs the storage thread's queue holds; beyond it the driver keeps a backlog and stops
/// taking inputs (back-pressure from the disk).
const STORAGE_QUEUE: usize = 16 * 1024;

/// Sizes derived from the config that several parts must agree on.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Largest payload bytes in one Paxos value.
    pub batch_bytes: usize,
    /// Largest WAL entry.
    pub wal_entry_bytes: u32,
    /// Largest peer frame.
    pub max_frame: u32,
}

impl Bounds {
    /// Bounds for `config`: a value must hold at least one update of the largest request.
    pub fn new(config: &ClusterConfig) -> Bounds {
        let largest_request = config
            .nodes
            .iter()
            .map(|n| n.max_request_size)
            .max()
            .unwrap_or(crate::config::defaults::MAX_REQUEST_SIZE);
        // Clamped so that a WAL entry (a batch plus 1 MiB of headroom) stays within 1 GiB even
        // for out-of-range numbers: a batch larger than a WAL entry would fail the WAL.
        const MAX_ENTRY: u64 = 1 << 30;
        const HEADROOM: u64 = 1024 * 1024;
        let batch = config
            .cluster
            .max_batch_bytes
            .max(largest_request.saturating_add(64 * 1024))
            .min(MAX_ENTRY - HEADROOM);
        let batch_bytes = usize::try_from(batch).unwrap_or(usize::MAX);
        let entry = batch + HEADROOM;
        let wal_entry_bytes = u32::try_from(entry).unwrap_or(1 << 30);
        let max_frame = wal_entry_bytes.saturating_add(9 * 1024 * 1024);
        Bounds {
            batch_bytes,
            wal_entry_bytes,
            max_frame,
        }
    }
}

/// The exact commands that repair damaged data, for the start-up error message.
fn repair_hint(
    error: &StorageError,
    home: &std::path::Path,
    config_file: &std::path::Path,
    name: &str,
) -> String {
    let damaged = matches!(
        error,
        StorageError::BadEntry { .. }
            | StorageError::BadSnapshot { .. }
            | StorageError::Promise(_)
            | StorageError::Overwrite(crate::overwrite::RedoError::Corrupt { .. })
            | StorageError::Wal(
                write_ahead_log::WalError::CorruptSegment { .. }
                    | write_ahead_log::WalError::CorruptSnapshot { .. }
                    | write_ahead_log::WalError::Gap { .. }
            )
    );
    if !damaged {
        return String::new();
    }
    let home = home.display();
    let config_file = config_file.display();
    format!(
        ". This node's data is damaged beyond a torn tail. To inspect it: `rarakoon-bin wal \
         verify {home}`. To repair it while the other nodes are healthy, move the data aside \
         and restart the node; it then catches up from its peers (a snapshot first, then the \
         log): `mv {home} {home}.damaged && rarakoon-bin --config {config_file} --node {name}`"
    )
}

/// The paxos-core configuration for `me`.
pub fn paxos_config(
    config: &ClusterConfig,
    me: NodeId,
    bounds: Bounds,
) -> Result<paxos_core::Config, NodeError> {
    let roles = config
        .nodes
        .iter()
        .map(|n| {
            if config.is_learner(&n.name) {
                Role::Learner
            } else if config.is_witness(&n.name) {
                Role::Witness
            } else {
                Role::Voter
            }
        })
        .collect();
    let lease = u64::try_from(config.lease_period().as_nanos()).unwrap_or(u64::MAX);
    let mut cfg = paxos_core::Config::new(me, roles, lease);
    let id_of = |name: &str| {
        config
            .nodes
            .iter()
            .position(|n| n.name == name)
            .and_then(|i| u8::try_from(i).ok())
            .map(NodeId)
    };
    cfg.mode = match config.cluster.master_mode {
        MasterMode::Elected => paxos_core::MasterMode::Elected,
        MasterMode::Readonly => paxos_core::MasterMode::ReadOnly,
        MasterMode::Forced => {
            let name = config.cluster.forced_master.as_deref().unwrap_or_default();
            paxos_core::MasterMode::Forced(
                id_of(name)
                    .ok_or_else(|| NodeError::Paxos(format!("unknown forced master {name}")))?,
            )
        }
    };
    cfg.preferred_masters = config
        .preferred_masters()
        .into_iter()
        .map(|p| id_of(p).ok_or_else(|| NodeError::Paxos(format!("unknown preferred master {p}"))))
        .collect::<Result<_, _>>()?;
    cfg.quorum = config.cluster.quorum.map(|q| q as usize);
    cfg.max_batch_count = config.cluster.max_batch_updates as usize;
    cfg.max_batch_bytes = bounds.batch_bytes;
    cfg.validate()
        .map_err(|e| NodeError::Paxos(e.to_string()))?;
    Ok(cfg)
}

/// What the messaging handshake compares: the membership view, followed by the user
/// functions and their code's identity when there are any (ADR 0170). Nodes whose functions
/// differ refuse each other, so no node applies an update with other code than its peers.
fn handshake_view(
    membership: &crate::membership::Membership,
    functions: &UserFunctionRegistry,
) -> String {
    let view = membership.view();
    if functions.is_empty() {
        view
    } else {
        format!("{view} user_functions[{}]", functions.fingerprint())
    }
}

/// How a node is embedded: what [`Node::start`] takes by default, and what a test or the
/// deterministic simulator replaces.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The file system every file in the home goes through (the home lock excepted: it is a
    /// process-level guard on the real file system, not data).
    pub fs: Arc<dyn FileSystem>,
    /// The node's clock; `None`: the production clock ([`Clock::boot`]), read at start-up.
    pub clock: Option<Clock>,
    /// Seed of the core's entropy (election jitter); `None`: random.
    pub entropy_seed: Option<u64>,
    /// A delay before each fsync round (the simulator's slow disk); `None` in production.
    pub disk_delay: Option<DiskDelay>,
    /// Broken-on-purpose switches (settable only with the `test-support` feature).
    pub sabotage: Sabotage,
    /// Native user functions of the embedder; the config's WebAssembly functions
    /// (`[[cluster.user_functions]]`) are added to them at start-up, and a name in both is
    /// refused.
    pub user_functions: UserFunctionRegistry,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            fs: Arc::new(StdFs),
            clock: None,
            entropy_seed: None,
            disk_delay: None,
            sabotage: Sabotage::default(),
            user_functions: UserFunctionRegistry::new(),
        }
    }
}

/// A node recovered from its home, not yet running: the first half of the assembly shared by
/// [`Node::start_with`] and the deterministic simulator. Built by [`prepare`] (synchronous:
/// only the file system is touched), finished by [`Prepared::assemble`].
#[derive(Debug)]
pub struct Prepared {
    /// This node's config.
    pub node: NodeConfig,
    /// The cluster config with `[[nodes]]` in `NodeId` order.
    pub config: ClusterConfig,
    /// The membership the node runs with.
    pub membership: crate::membership::Membership,
    /// This node's id.
    pub me: NodeId,
    /// Node names in `NodeId` order.
    pub names: Vec<String>,
    /// The sizes derived from the config.
    pub bounds: Bounds,
    /// State shared by the driver, the storage and the handler.
    pub shared: Arc<Shared>,
    /// The driver's input queue (peer messages, client proposals, admin).
    pub inputs: mpsc::Sender<Input>,
    inputs_rx: mpsc::Receiver<Input>,
    core: Core,
    tick: Duration,
    state: paxos_core::RecoveredState,
    wal: write_ahead_log::Wal,
    storage_config: storage::StorageConfig,
    user_functions: Arc<UserFunctionRegistry>,
    options: NodeOptions,
}

/// The assembled node: its parts ready to run. The embedder runs [`StorageTask`] and
/// [`DriverTask`] (production: an OS thread and a tokio task; the simulator: two tasks it can
/// pause and abort) and serves clients through `handler`.
#[derive(Debug)]
pub struct Assembled {
    /// State shared by the driver, the storage and the handler.
    pub shared: Arc<Shared>,
    /// The driver's input queue.
    pub inputs: mpsc::Sender<Input>,
    /// The client handler.
    pub handler: NodeHandler,
    /// The storage loop.
    pub storage: StorageTask,
    /// The driver, started.
    pub driver: DriverTask,
}

/// The storage loop of an assembled node, not yet running.
pub struct StorageTask {
    thread: StorageThread,
    jobs: mpsc::Receiver<storage::Job>,
}

impl StorageTask {
    /// Runs it on the calling OS thread (production).
    pub fn run(self) {
        self.thread.run(self.jobs);
    }

    /// The loop as a future (the simulator spawns it on its runtime).
    pub async fn serve(self) {
        self.thread.serve(self.jobs).await;
    }
}

impl std::fmt::Debug for StorageTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StorageTask(..)")
    }
}

/// The driver of an assembled node, started, not yet running.
pub struct DriverTask {
    driver: Driver,
    inputs: mpsc::Receiver<Input>,
    events: mpsc::UnboundedReceiver<storage::StorageEvent>,
}

impl std::fmt::Debug for DriverTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DriverTask(..)")
    }
}

impl DriverTask {
    /// The driver reading peer messages straight from the messenger's `inbox`
    /// ([`Driver::with_peers`]).
    #[must_use]
    pub fn with_peers(
        mut self,
        inbox: tcp_messenger::Inbox<PeerMessage>,
        filter: PeerFilter,
    ) -> Self {
        self.driver = self.driver.with_peers(inbox, filter);
        self
    }

    /// Runs the driver until it stops ([`Driver::run`]).
    pub async fn run(self) -> Result<(), String> {
        self.driver.run(self.inputs, self.events).await
    }
}

/// Checks the home's membership and recovers node `name` from its home through
/// `options.fs` (see the module documentation). Synchronous: production calls it on a
/// blocking thread, the simulator inline. The home must be locked by the caller when that
/// matters (production).
pub fn prepare(
    config: &ClusterConfig,
    name: &str,
    config_file: &std::path::Path,
    options: NodeOptions,
) -> Result<Prepared, NodeError> {
    let node: NodeConfig = config.node(name, config_file)?.clone();
    // Warnings name fields by their place in the file, so take them before rearranging.
    let warnings = config.warnings();
    // A node's number comes from its name, as recorded in its home (ADR 0115): from here
    // on `config.nodes` is in NodeId order, whatever the order in the file.
    let membership = crate::membership::check_home(options.fs.as_ref(), &node.home_dir, config)
        .map_err(|e| match e {
            // The promise is read here first: damage to it gets the same repair as damage
            // found by the recovery.
            crate::membership::MembershipError::Promise(p) => {
                let cause = StorageError::Promise(p);
                NodeError::Storage {
                    repair: repair_hint(&cause, &node.home_dir, config_file, name),
                    home: node.home_dir.clone(),
                    cause,
                }
            }
            other => NodeError::Membership(other),
        })?;
    let config = membership
        .arrange(config)
        .ok_or_else(|| NodeError::Paxos("membership does not match the config".into()))?;
    let me = membership
        .id_of(name)
        .ok_or_else(|| NodeError::Paxos(format!("node {name} has no usable id")))?;
    let names = membership.names();
    for warning in warnings {
        tracing::warn!("config {}: {warning}", config_file.display());
    }

    let bounds = Bounds::new(&config);
    #[allow(unused_mut)]
    let mut paxos = paxos_config(&config, me, bounds)?;
    #[cfg(feature = "test-support")]
    {
        paxos.sabotage = options.sabotage.paxos;
    }
    let tick = Duration::from_nanos((paxos.retransmit_interval / 2).max(1_000_000));
    let core = Core::new(paxos).map_err(|e| NodeError::Paxos(e.to_string()))?;

    let mut storage_config =
        storage::storage_config(&node, bounds.wal_entry_bytes, Arc::clone(&options.fs));
    storage_config.sabotage = options.sabotage;
    let mut user_functions = options.user_functions.clone();
    crate::wasm_functions::register_configured(
        &mut user_functions,
        &config.cluster.user_functions,
    )?;
    let user_functions = Arc::new(user_functions);
    let recovered =
        storage::recover(&storage_config, Arc::clone(&user_functions)).map_err(|cause| {
            NodeError::Storage {
                repair: repair_hint(&cause, &node.home_dir, config_file, name),
                home: node.home_dir.clone(),
                cause,
            }
        })?;
    let storage::Recovered {
        store, state, wal, ..
    } = recovered;
    let store = Arc::new(RwLock::new(store));
    let clock = options.clock.clone().unwrap_or_else(Clock::boot);
    let mut shared = Shared::new(
        store,
        state.committed,
        clock,
        config.lease_period().mul_f64(1.2),
    );
    shared.sabotage = options.sabotage;
    let (inputs, inputs_rx) = mpsc::channel(16 * 1024);
    Ok(Prepared {
        node,
        config,
        membership,
        me,
        names,
        bounds,
        shared: Arc::new(shared),
        inputs,
        inputs_rx,
        core,
        tick,
        state,
        wal,
        storage_config,
        user_functions,
        options,
    })
}

impl Prepared {
    /// Builds the storage loop, the driver (started from the recovered state) and the client
    /// handler around `transport`. Nothing runs yet: see [`Assembled`].
    pub fn assemble(self, transport: Arc<dyn Transport>) -> Result<Assembled, NodeError> {
        let Prepared {
            node,
            config,
            names,
            shared,
            inputs,
            inputs_rx,
            core,
            tick,
            state,
            wal,
            storage_config,
            user_functions,
            options,
            ..
        } = self;
        let name = node.name.clone();
        let (storage_tx, storage_rx) = mpsc::unbounded_channel();
        let (jobs_tx, jobs_rx) = mpsc::channel(STORAGE_QUEUE);
        let thread = StorageThread::new(
            storage_config,
            wal,
            Arc::clone(&shared.store),
            user_functions,
            storage_tx,
        )
        .with_metrics(Arc::clone(&shared.metrics))
        .with_disk_delay(options.disk_delay.clone());
        let mut driver = Driver::new(
            core,
            Arc::clone(&shared),
            transport,
            jobs_tx,
            tick,
            name.clone(),
        );
        if let Some(seed) = options.entropy_seed {
            driver = driver.with_entropy_seed(seed);
        }
        if let Err(cause) = driver.start(state) {
            return Err(NodeError::Start {
                home: node.home_dir.clone(),
                cause,
            });
        }
        let handler = NodeHandler::new(
            HandlerConfig {
                node_name: name,
                cluster_id: bytes::Bytes::from(config.cluster.id.clone()),
                node_names: names,
                master_mode: config.cluster.master_mode,
                max_value_size: node.max_value_size,
                max_request_size: node.max_request_size,
                read_limits: kv_store::ReadLimits::DEFAULT,
                witness: config.is_witness(&node.name),
            },
            Arc::clone(&shared),
            inputs.clone(),
        );
        Ok(Assembled {
            shared,
            inputs,
            handler,
            storage: StorageTask {
                thread,
                jobs: jobs_rx,
            },
            driver: DriverTask {
                driver,
                inputs: inputs_rx,
                events: storage_rx,
            },
        })
    }
}

/// A running node.
#[derive(Debug)]
pub struct Node {
    name: String,
    client_addr: SocketAddr,
    messaging_addr: SocketAddr,
    shared: Arc<Shared>,
    inputs: mpsc::Sender<Input>,
    listener: Option<Listener>,
    metrics_server: Option<MetricsServer>,
    messenger: Messenger<PeerMessage>,
    driver: tokio::task::JoinHandle<Result<(), String>>,
    storage: Option<std::thread::JoinHandle<()>>,
    _lock: HomeLock,
}

impl Node {
    /// Starts node `name` of `config` (see the module documentation for the order).
    pub async fn start(
        config: &ClusterConfig,
        name: &str,
        config_file: &std::path::Path,
    ) -> Result<Node, NodeError> {
        Node::start_with(config, name, config_file, NodeOptions::default()).await
    }

    /// [`Node::start`] with the embedding `options` (file system, clock, entropy, disk delay).
    /// The node is built by [`prepare`] and [`Prepared::assemble`], the same functions the
    /// deterministic simulator uses; this adds the home lock, the TCP messenger, the storage
    /// thread, the client listener and the metrics endpoint.
    pub async fn start_with(
        config: &ClusterConfig,
        name: &str,
        config_file: &std::path::Path,
        options: NodeOptions,
    ) -> Result<Node, NodeError> {
        let node: NodeConfig = config.node(name, config_file)?.clone();
        let tls = crate::tls::load(config, name, config_file)?;
        let lock = HomeLock::acquire(&node.home_dir)?;
        let prepared = {
            let (config, name, file) = (config.clone(), name.to_owned(), config_file.to_owned());
            tokio::task::spawn_blocking(move || prepare(&config, &name, &file, options))
                .await
                .map_err(|e| NodeError::Failed(format!("recovery task failed: {e}")))??
        };
        let config = prepared.config.clone();
        let config = &config;
        let names = prepared.names.clone();

        let peers: BTreeMap<String, Vec<SocketAddr>> = config
            .nodes
            .iter()
            .filter(|n| n.name != name)
            .map(|n| (n.name.clone(), n.addresses.clone()))
            .collect();
        let mut messenger_config = MessengerConfig::new(
            name,
            config.cluster.id.clone(),
            node.messaging_address(),
            peers,
        );
        messenger_config.max_frame = prepared.bounds.max_frame;
        messenger_config.tls = tls.messenger;
        messenger_config.membership =
            handshake_view(&prepared.membership, &prepared.user_functions);
        if messenger_config.membership.len() > tcp_messenger::MAX_MEMBERSHIP_LEN {
            return Err(NodeError::Paxos(format!(
                "the membership and user functions take {} bytes in the handshake; at most {} fit",
                messenger_config.membership.len(),
                tcp_messenger::MAX_MEMBERSHIP_LEN
            )));
        }
        let peer_limits = &config.cluster.messaging;
        messenger_config.idle_timeout = peer_limits.idle_timeout();
        messenger_config.keepalive_interval = peer_limits.keepalive_interval();
        messenger_config.inbox_bytes =
            usize::try_from(peer_limits.inbox_bytes).unwrap_or(usize::MAX);
        let (messenger, inbox) = Messenger::<PeerMessage>::start(messenger_config)
            .await
            .map_err(|e| NodeError::Bind {
                what: "messaging",
                addr: node.messaging_address(),
                message: e.to_string(),
            })?;
        let messaging_addr = messenger.local_addr();

        let request_limits = crate::messaging::RequestLimits {
            per_sec: peer_limits.requests_per_sec,
            burst: f64::from(peer_limits.request_burst),
        };
        let transport = Arc::new(TcpTransport::new(messenger.clone(), names.clone()));
        let assembled = match prepared.assemble(transport) {
            Ok(assembled) => assembled,
            Err(e) => {
                tracing::error!(node = name, "{e}");
                messenger.shutdown().await;
                return Err(e);
            }
        };
        let Assembled {
            shared,
            inputs: inputs_tx,
            handler,
            storage: storage_task,
            driver,
            ..
        } = assembled;
        // The driver reads the inbox itself (no pump task between them).
        let driver = driver.with_peers(
            inbox,
            PeerFilter::new(&names, request_limits, Arc::default()),
        );
        let storage = match std::thread::Builder::new()
            .name(format!("storage-{name}"))
            .spawn(move || storage_task.run())
        {
            Ok(storage) => storage,
            Err(e) => {
                messenger.shutdown().await;
                return Err(NodeError::Thread(e));
            }
        };
        let driver = tokio::spawn(driver.run());

        let names_for_metrics = names.clone();
        let mut listener_config = ListenerConfig::new(config.cluster.id.clone());
        listener_config.tls = tls.listener;
        listener_config.max_connections = node.max_client_connections as usize;
        config.cluster.clients.apply(&mut listener_config);
        listener_config.limits = Limits {
            max_frame_bytes: usize::try_from(node.max_request_size).unwrap_or(usize::MAX),
            ..Limits::default()
        };
        let client_addr = node.client_socket_address();
        let listener = match Listener::bind(client_addr, listener_config, Arc::new(handler)).await {
            Ok(listener) => listener,
            Err(e) => {
                // Undo what already runs, so a caller that carries on leaks nothing.
                let _ = inputs_tx.send(Input::Shutdown).await;
                let _ = driver.await;
                let _ = tokio::task::spawn_blocking(move || storage.join()).await;
                messenger.shutdown().await;
                return Err(NodeError::Bind {
                    what: "clients",
                    addr: client_addr,
                    message: e.to_string(),
                });
            }
        };
        let client_addr = listener.local_addr();
        let metrics_server = match node.metrics_address {
            None => None,
            Some(addr) => {
                let endpoint = Endpoint {
                    metrics: Arc::clone(&shared.metrics),
                    shared: Arc::clone(&shared),
                    names: names_for_metrics,
                    node: name.to_owned(),
                    peer_counters: {
                        let messenger = messenger.clone();
                        Box::new(move || messenger.counters())
                    },
                    client_stats: {
                        let stats = listener.stats();
                        Box::new(move || Some(stats.snapshot()))
                    },
                };
                match MetricsServer::start(addr, endpoint, MetricsLimits::default()).await {
                    Ok(server) => Some(server),
                    Err(e) => {
                        // Undo what already runs, as for the client listener.
                        listener.shutdown_handle().shutdown();
                        let _ = inputs_tx.send(Input::Shutdown).await;
                        let _ = driver.await;
                        let _ = tokio::task::spawn_blocking(move || storage.join()).await;
                        listener.wait().await;
                        messenger.shutdown().await;
                        return Err(NodeError::Bind {
                            what: "metrics",
                            addr,
                            message: e.to_string(),
                        });
                    }
                }
            }
        };
        let metrics_addr = metrics_server.as_ref().map(MetricsServer::local_addr);
        tracing::info!(
            node = name,
            cluster = %config.cluster.id,
            %client_addr,
            %messaging_addr,
            metrics_addr = %metrics_addr.map_or_else(|| "off".to_owned(), |a| a.to_string()),
            home = %node.home_dir.display(),
            "node started"
        );
        Ok(Node {
            name: name.to_owned(),
            client_addr,
            messaging_addr,
            shared,
            inputs: inputs_tx,
            listener: Some(listener),
            metrics_server,
            messenger,
            driver,
            storage: Some(storage),
            _lock: lock,
        })
    }

    /// The client listener's address.
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// The messaging listener's address.
    pub fn messaging_addr(&self) -> SocketAddr {
        self.messaging_addr
    }

    /// The metrics endpoint's address, when `metrics_address` is configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_server.as_ref().map(MetricsServer::local_addr)
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Arc<crate::metrics::NodeMetrics> {
        &self.shared.metrics
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the node is master with a valid lease right now.
    pub fn is_master(&self) -> bool {
        self.shared.holds_lease()
    }

    /// Resolves if the node fails on its own (its storage failed); use in a `select!` with the
    /// stop signal.
    pub async fn failed(&mut self) -> NodeError {
        match (&mut self.driver).await {
            Ok(Ok(())) => NodeError::Failed("the driver stopped".to_owned()),
            Ok(Err(e)) => NodeError::Failed(e),
            Err(e) => NodeError::Failed(format!("the driver task failed: {e}")),
        }
    }

    /// Stops the node cleanly (see the module documentation).
    pub async fn stop(mut self) -> Result<(), NodeError> {
        // Stop accepting first; then stop the driver, which fails the writes still in flight
        // with E_GOING_DOWN, so the connections waiting on them can finish and close.
        let listener = self.listener.take();
        if let Some(listener) = &listener {
            listener.shutdown_handle().shutdown();
        }
        let _ = self.inputs.send(Input::Shutdown).await;
        let driver_result = if self.driver.is_finished() {
            Ok(())
        } else {
            match (&mut self.driver).await {
                Ok(r) => r,
                Err(e) => Err(format!("the driver task failed: {e}")),
            }
        };
        // The driver owned the only job sender: the storage thread now syncs and exits.
        if let Some(storage) = self.storage.take() {
            let _ = tokio::task::spawn_blocking(move || storage.join()).await;
        }
        if let Some(listener) = listener {
            listener.wait().await;
        }
        if let Some(server) = self.metrics_server.take() {
            server.stop().await;
        }
        self.messenger.shutdown().await;
        tracing::info!(node = %self.name, "node stopped");
        driver_result.map_err(NodeError::Failed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_handshake_view_carries_the_user_functions_only_when_there_are_some() {
        let config = crate::config::ClusterConfig {
            cluster: crate::config::ClusterSection::new("c"),
            nodes: vec![NodeConfig::new(
                "n0",
                "127.0.0.1:4010".parse().unwrap(),
                4000,
                PathBuf::from("/tmp/n0"),
            )],
        };
        let membership = crate::membership::Membership::canonical(&config);
        let mut functions = UserFunctionRegistry::new();
        // Unchanged without functions, so such clusters interoperate as before.
        assert_eq!(handshake_view(&membership, &functions), membership.view());
        kv_store::samples::register_all(&mut functions);
        assert_eq!(
            handshake_view(&membership, &functions),
            format!(
                "{} user_functions[rarakoon.increment=native rarakoon.rename=native]",
                membership.view()
            )
        );
    }

    #[test]
    fn bounds_do_not_overflow_at_the_config_limits() {
        let mut config = crate::config::ClusterConfig {
            cluster: crate::config::ClusterSection::new("c"),
            nodes: vec![NodeConfig::new(
                "n0",
                "127.0.0.1:4010".parse().unwrap(),
                4000,
                PathBuf::from("/tmp/n0"),
            )],
        };
        config.cluster.max_batch_bytes = u64::MAX;
        config.nodes[0].max_request_size = u64::MAX;
        let b = Bounds::new(&config);
        // A WAL entry must always hold a whole batch, or a full batch would fail the WAL.
        assert!(u64::from(b.wal_entry_bytes) >= b.batch_bytes as u64);
        assert!(b.max_frame >= b.wal_entry_bytes);
    }
}
