//! `rarakoon-bin --config FILE --node NAME`: run one node until SIGTERM/SIGINT.

use std::path::Path;

use std::sync::Arc;

use anyhow::Context;
use rarakoon_node::{ClusterConfig, Node, NodeOptions};

use crate::signals::StopSignals;

/// Loads the config, starts the node, and stops it cleanly on a signal. With
/// `volatile_writes` (tests only) the node's unsynced writes live in this process's memory
/// ([`write_ahead_log::VolatileFs`]), so `kill -9` loses them.
pub async fn run(config_file: &Path, node_name: &str, volatile_writes: bool) -> anyhow::Result<()> {
    let mut signals = StopSignals::install().context("cannot install signal handlers")?;
    let config = ClusterConfig::load(config_file)?;
    let mut options = NodeOptions::default();
    if volatile_writes {
        tracing::warn!(
            node = node_name,
            "--test-volatile-writes: unsynced writes are kept in this process only (a test \
             mode: kill -9 loses them as a power cut would)"
        );
        options.fs = Arc::new(write_ahead_log::VolatileFs::new());
    }
    let mut node = Node::start_with(&config, node_name, config_file, options).await?;
    let outcome = tokio::select! {
        signal = signals.recv() => {
            tracing::info!(node = node_name, signal, "stop requested; shutting down");
            Ok(())
        }
        error = node.failed() => Err(error),
    };
    let stopped = node.stop().await;
    outcome?;
    stopped?;
    tracing::info!(node = node_name, "stopped cleanly");
    Ok(())
}
