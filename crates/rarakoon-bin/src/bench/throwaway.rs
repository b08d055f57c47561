//! `bench --local`: a throwaway cluster in a temporary directory.
//!
//! The nodes are child processes of this binary, started and stopped the way `local` does it
//! (`local::spawn_nodes`, SIGTERM then a bounded wait, then a kill). The config takes ports
//! the OS hands out, never `local`'s standard ones. [`Throwaway::stop`] stops every node before
//! the directory is deleted, so nothing is left behind; if the bench process itself dies, the
//! nodes are killed with it (`kill_on_drop`) except on SIGKILL, which leaves them running.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use rarakoon_node::ClusterConfig;

use crate::local::{self, Children};
use crate::logging::LogFormat;
use crate::signals::StopSignals;

/// A running throwaway cluster.
pub struct Throwaway {
    /// Its config (node addresses, cluster id, lease).
    pub config: ClusterConfig,
    children: Children,
    dir: tempfile::TempDir,
}

/// Lines of a node's log shown when the cluster does not come up.
const LOG_TAIL_LINES: usize = 20;

impl Throwaway {
    /// Starts `nodes` nodes and waits until one of them is confirmed master. A stop signal or
    /// a node exiting meanwhile stops the others and fails.
    pub async fn start(
        nodes: u16,
        tls: bool,
        log_format: LogFormat,
        signals: &mut StopSignals,
    ) -> anyhow::Result<Throwaway> {
        let dir = tempfile::Builder::new()
            .prefix("rarakoon-bench-")
            .tempdir()
            .context("cannot create a temporary directory for the --local cluster")?;
        let mut generated = local::generate_config_on_os_ports(usize::from(nodes))?;
        if tls {
            crate::tls::generate_local(&mut generated, dir.path())?;
        }
        let config_file = dir.path().join(local::CONFIG_FILE_NAME);
        std::fs::write(&config_file, generated.to_toml_string()?)
            .with_context(|| format!("cannot write {}", config_file.display()))?;
        // Loading resolves the nodes' home directories relative to the config.
        let config = ClusterConfig::load(&config_file)?;
        let exe = std::env::current_exe().context("cannot find this program's own path")?;
        let mut children =
            local::spawn_nodes(&exe, &config_file, &config, dir.path(), log_format).await?;
        let outcome = tokio::select! {
            master = local::wait_for_master(&config) => match master {
                Some(_) => Ok(()),
                None => Err(anyhow::anyhow!("the --local cluster elected no master")),
            },
            (name, status) = children.first_exit() => {
                Err(anyhow::anyhow!("node {name} of the --local cluster exited ({status})"))
            }
            signal = signals.recv() => Err(anyhow::anyhow!("{signal} received while the --local cluster started")),
        };
        let cluster = Throwaway {
            config,
            children,
            dir,
        };
        match outcome {
            Ok(()) => Ok(cluster),
            Err(e) => {
                let logs = cluster.log_tails();
                cluster.stop().await;
                Err(anyhow::anyhow!("{e:#}; {logs}"))
            }
        }
    }

    /// The last lines of every node's log, for an error message.
    fn log_tails(&self) -> String {
        let mut out = String::from("the node logs end with:");
        for node in &self.config.nodes {
            let path: PathBuf = self.dir.path().join(format!("{}.log", node.name));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(LOG_TAIL_LINES);
            out.push_str(&format!(
                "\n--- {} ---\n{}",
                node.name,
                lines[start..].join("\n")
            ));
        }
        out
    }

    /// Stops every node (SIGTERM, bounded wait, kill), then deletes the directory.
    pub async fn stop(self) {
        let Throwaway { children, dir, .. } = self;
        children
            .stop_all_reporting(|line| tracing::debug!("--local cluster: {}", line.trim()))
            .await;
        let path = dir.path().to_path_buf();
        if let Err(e) = dir.close() {
            eprintln!(
                "warning: cannot delete the --local cluster's directory {}: {e}",
                path.display()
            );
        }
    }

    /// How long clients should keep looking for a master (two lease periods).
    pub fn find_master_for(&self) -> Duration {
        self.config.lease_period().saturating_mul(2)
    }
}
