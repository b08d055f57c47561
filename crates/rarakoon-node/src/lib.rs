//! rarakoon-node: the driver that joins the pure Paxos core to disks, network and clients.
//!
//! Phase 1 provides the configuration ([`config`]) and the home-directory lock
//! ([`home_lock`]); the runtime is built on top of them.

pub mod config;
pub mod home_lock;

pub use config::{ClusterConfig, ConfigError, MasterMode, NodeConfig};
pub use home_lock::{HomeLock, HomeLockError};
