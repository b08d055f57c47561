//! `rarakoon-bin --config FILE --node NAME`: run one node until SIGTERM/SIGINT.

use std::path::Path;

use anyhow::Context;
use rarakoon_node::{ClusterConfig, Node};

use crate::signals::StopSignals;

/// Loads the config, starts the node, and stops it cleanly on a signal.
pub async fn run(config_file: &Path, node_name: &str) -> anyhow::Result<()> {
    let mut signals = StopSignals::install().context("cannot install signal handlers")?;
    let config = ClusterConfig::load(config_file)?;
    let mut node = Node::start(&config, node_name, config_file).await?;
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
