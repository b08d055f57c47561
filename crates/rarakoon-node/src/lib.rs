//! rarakoon-node: the driver that joins the pure Paxos core to disks, network and clients.
//!
//! - [`config`]: the cluster configuration (strict TOML) and [`home_lock`]: one process per
//!   data directory; [`membership`]: a node's number comes from its name, recorded in the
//!   home and checked in the messaging handshake (ADR 0115).
//! - [`node`]: [`Node::start`] / [`Node::stop`], the start-up order and a clean stop.
//! - [`driver`]: the task that owns paxos-core and executes its effects in order.
//! - [`storage`]: recovery at start-up and the storage thread (WAL group commit, catch-up
//!   reads, snapshot transfer, Collapser).
//! - [`handler`]: Arakoon's client requests answered from the store and the node's role.
//! - [`metrics`]: the node's Prometheus metrics and `/health`, served over HTTP on
//!   `metrics_address` when one is configured.
//! - [`messaging`] / [`transport`]: node-to-node messages over tcp-messenger; [`tls`]: the
//!   TLS files of `[cluster.tls]` turned into the messenger's and listener's settings.
//! - [`payload`], [`wire`], [`promise`]: what goes into Paxos values, WAL records, peer
//!   messages and the promise file; [`overwrite`]: crash-safe replacement of the log's
//!   uncommitted tail; [`durable_file`]: atomic, size-bounded small files in the home.
//! - [`wasm_functions`]: user functions an operator deploys as WebAssembly modules named in the
//!   config, run by the wasmi interpreter with bounded fuel and memory (ADR 0170).
//! - [`sabotage`]: broken-on-purpose switches for the simulator (feature `test-support`).

pub mod backup;
pub mod client_limits;
pub mod config;
pub mod driver;
pub mod durable_file;
pub mod handler;
pub mod home_lock;
pub mod membership;
pub mod messaging;
pub mod metrics;
pub mod node;
pub mod overwrite;
pub mod payload;
pub mod promise;
pub mod sabotage;
pub mod stats;
pub mod storage;
pub mod tls;
pub mod transport;
pub mod wasm_functions;
pub mod wire;

pub use config::{ClusterConfig, ConfigError, MasterMode, NodeConfig};
pub use home_lock::{HomeLock, HomeLockError};
pub use node::{Node, NodeError, NodeOptions};
