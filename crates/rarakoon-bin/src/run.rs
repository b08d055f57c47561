//! `rarakoon-bin --config FILE --node NAME`: run one node until SIGTERM/SIGINT.

use std::path::Path;

use anyhow::Context;
use rarakoon_node::{ClusterConfig, HomeLock};

use crate::signals;

/// Loads the config, locks the home directory, runs the node, and stops it on a signal.
pub async fn run(config_file: &Path, node_name: &str) -> anyhow::Result<()> {
    let config = ClusterConfig::load(config_file)?;
    let node = config.node(node_name, config_file)?.clone();
    for warning in config.warnings() {
        tracing::warn!(config = %config_file.display(), "{warning}");
    }
    let lock = HomeLock::acquire(&node.home_dir)?;
    tracing::info!(
        cluster = %config.cluster.id,
        node = %node.name,
        home = %lock.dir().display(),
        client = %node.client_socket_address(),
        messaging = %node.messaging_address(),
        "node starting"
    );
    let signal = signals::stop_requested()
        .await
        .context("cannot install signal handlers")?;
    tracing::info!(node = %node.name, signal, "stop requested; shutting down");
    drop(lock);
    tracing::info!(node = %node.name, "stopped cleanly");
    Ok(())
}
