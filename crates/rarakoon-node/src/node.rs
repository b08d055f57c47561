//! A running node: start-up in the documented order, and a clean stop.
//!
//! [`Node::start`]: lock the home directory, recover the store and log from disk, start the
//! storage thread, the messenger, the driver and finally the client listener. [`Node::stop`]:
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

use crate::config::{ClusterConfig, MasterMode, NodeConfig};
use crate::driver::{Clock, Driver, Input, Shared};
use crate::handler::{HandlerConfig, NodeHandler};
use crate::home_lock::{HomeLock, HomeLockError};
use crate::messaging::{TcpTransport, pump_inbox};
use crate::metrics::http::{Endpoint, Limits as MetricsLimits, MetricsServer};
use crate::storage::{self, StorageError, StorageThread};
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
    if let Some(p) = &config.cluster.preferred_master {
        cfg.preferred_masters = id_of(p).into_iter().collect();
    }
    cfg.max_batch_count = config.cluster.max_batch_updates as usize;
    cfg.max_batch_bytes = bounds.batch_bytes;
    cfg.validate()
        .map_err(|e| NodeError::Paxos(e.to_string()))?;
    Ok(cfg)
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
        let node: NodeConfig = config.node(name, config_file)?.clone();
        let tls = crate::tls::load(config, name, config_file)?;
        let lock = HomeLock::acquire(&node.home_dir)?;
        // Warnings name fields by their place in the file, so take them before rearranging.
        let warnings = config.warnings();
        // A node's number comes from its name, as recorded in its home (ADR 0115): from here
        // on `config.nodes` is in NodeId order, whatever the order in the file.
        let membership = crate::membership::check_home(&node.home_dir, config)?;
        let config = &membership
            .arrange(config)
            .ok_or_else(|| NodeError::Paxos("membership does not match the config".into()))?;
        let me = membership
            .id_of(name)
            .ok_or_else(|| NodeError::Paxos(format!("node {name} has no usable id")))?;
        let names = membership.names();
        for warning in warnings {
            tracing::warn!("config {}: {warning}", config_file.display());
        }

        let bounds = Bounds::new(config);
        let paxos = paxos_config(config, me, bounds)?;
        let tick = Duration::from_nanos((paxos.retransmit_interval / 2).max(1_000_000));
        let core = Core::new(paxos).map_err(|e| NodeError::Paxos(e.to_string()))?;

        let storage_config = storage::storage_config(&node, bounds.wal_entry_bytes);
        let user_functions = Arc::new(UserFunctionRegistry::new());
        let recovered = {
            let config = storage_config.clone();
            let functions = Arc::clone(&user_functions);
            tokio::task::spawn_blocking(move || storage::recover(&config, functions))
                .await
                .map_err(|e| NodeError::Failed(format!("recovery task failed: {e}")))?
        }
        .map_err(|cause| NodeError::Storage {
            repair: repair_hint(&cause, &node.home_dir, config_file, name),
            home: node.home_dir.clone(),
            cause,
        })?;
        let store = Arc::new(RwLock::new(recovered.store));
        let shared = Arc::new(Shared::new(
            Arc::clone(&store),
            recovered.state.committed,
            Clock::boot(),
            config.lease_period().mul_f64(1.2),
        ));

        let (storage_tx, storage_rx) = mpsc::unbounded_channel();
        let (jobs_tx, jobs_rx) = mpsc::channel(STORAGE_QUEUE);
        let storage_thread = StorageThread::new(
            storage_config,
            recovered.wal,
            Arc::clone(&store),
            user_functions,
            storage_tx,
        )
        .with_metrics(Arc::clone(&shared.metrics));
        let storage = std::thread::Builder::new()
            .name(format!("storage-{name}"))
            .spawn(move || storage_thread.run(jobs_rx))
            .map_err(NodeError::Thread)?;

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
        messenger_config.max_frame = bounds.max_frame;
        messenger_config.tls = tls.messenger;
        messenger_config.membership = membership.view();
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

        let (inputs_tx, inputs_rx) = mpsc::channel(16 * 1024);
        let request_limits = crate::messaging::RequestLimits {
            per_sec: peer_limits.requests_per_sec,
            burst: f64::from(peer_limits.request_burst),
        };
        tokio::spawn(pump_inbox(
            inbox,
            names.clone(),
            inputs_tx.clone(),
            request_limits,
            Arc::default(),
        ));
        let transport = Arc::new(TcpTransport::new(messenger.clone(), names.clone()));
        let mut driver = Driver::new(
            core,
            Arc::clone(&shared),
            transport,
            jobs_tx,
            tick,
            name.to_owned(),
        );
        if let Err(cause) = driver.start(recovered.state) {
            tracing::error!(node = name, "{cause}");
            // Undo what already runs: without the driver's job sender the storage thread exits.
            drop(driver);
            let _ = tokio::task::spawn_blocking(move || storage.join()).await;
            messenger.shutdown().await;
            return Err(NodeError::Start {
                home: node.home_dir.clone(),
                cause,
            });
        }
        let driver = tokio::spawn(driver.run(inputs_rx, storage_rx));

        let names_for_metrics = names.clone();
        let handler = NodeHandler::new(
            HandlerConfig {
                node_name: name.to_owned(),
                cluster_id: bytes::Bytes::from(config.cluster.id.clone()),
                node_names: names,
                master_mode: config.cluster.master_mode,
                max_value_size: node.max_value_size,
                max_request_size: node.max_request_size,
                read_limits: kv_store::ReadLimits::DEFAULT,
            },
            Arc::clone(&shared),
            inputs_tx.clone(),
        );
        let mut listener_config = ListenerConfig::new(config.cluster.id.clone());
        listener_config.tls = tls.listener;
        listener_config.max_connections = node.max_client_connections as usize;
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
