//! Which cluster a client or admin command talks to: a config file, or a `local` cluster's
//! directory (the default one when nothing is given).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use rarakoon_client::{Client, ClientConfig, ClientTls};
use rarakoon_node::ClusterConfig;

use crate::cli::Target;
use crate::local;

/// The cluster id and the client address of every node.
#[derive(Debug, Clone)]
pub struct ClusterTarget {
    /// The cluster id.
    pub cluster_id: String,
    /// `(name, client address)` in config order.
    pub nodes: Vec<(String, SocketAddr)>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// How long the client keeps looking for a master: two lease periods, so a command typed
    /// during an election (or right after `local` started) waits for it instead of failing.
    pub find_master_for: Duration,
    /// TLS settings (see `crate::tls`), `None` for plain TCP.
    pub tls: Option<ClientTls>,
}

/// Pause between attempts to find the master.
const RETRY_DELAY: Duration = Duration::from_millis(250);

impl ClusterTarget {
    /// Resolves `target` to a cluster.
    pub fn resolve(target: &Target) -> anyhow::Result<ClusterTarget> {
        let file: PathBuf = match (&target.cluster_config, &target.dir) {
            (Some(file), _) => file.clone(),
            (None, dir) => local::config_path(dir.as_deref()),
        };
        let config = ClusterConfig::load(&file).with_context(|| {
            if target.cluster_config.is_none() {
                format!(
                    "no cluster to talk to: start one with `rarakoon-bin local` (or pass \
                     --cluster-config FILE); looked for {}",
                    file.display()
                )
            } else {
                format!("cannot use {}", file.display())
            }
        })?;
        if !(target.timeout_secs > 0.0 && target.timeout_secs.is_finite()) {
            anyhow::bail!("--timeout-secs must be positive");
        }
        let tls = crate::tls::client_settings(target, &config)?;
        Ok(ClusterTarget {
            tls,
            cluster_id: config.cluster.id.clone(),
            nodes: config
                .nodes
                .iter()
                .map(|n| (n.name.clone(), n.client_socket_address()))
                .collect(),
            timeout: Duration::from_secs_f64(target.timeout_secs),
            find_master_for: config.lease_period().saturating_mul(2),
        })
    }

    /// A client for the whole cluster (it finds the master).
    pub fn client(&self) -> anyhow::Result<Client> {
        let mut config = ClientConfig::new(self.cluster_id.clone());
        for (name, addr) in &self.nodes {
            config = config.node(name.clone(), *addr);
        }
        config.request_timeout = self.timeout;
        config.tls = self.tls.clone();
        config.connect_timeout = self.timeout.min(Duration::from_secs(5));
        // Only requests refused before they were sent or proposed are retried (the client never
        // repeats a write whose outcome is unknown), so retrying longer is always safe.
        config.retry_delay = RETRY_DELAY;
        config.max_attempts =
            usize::try_from(self.find_master_for.as_millis() / RETRY_DELAY.as_millis())
                .unwrap_or(usize::MAX)
                .clamp(3, 1000);
        Ok(Client::new(config)?)
    }

    /// The TLS configuration for a direct call to node `name` (`None`: plain TCP).
    pub fn direct_tls(&self, name: &str) -> anyhow::Result<crate::direct::Tls> {
        self.tls
            .as_ref()
            .map(|tls| crate::tls::config_for(tls, name))
            .transpose()
    }

    /// The client address of node `name` (default: the first node).
    pub fn node(&self, name: Option<&str>) -> anyhow::Result<(String, SocketAddr)> {
        match name {
            None => self
                .nodes
                .first()
                .cloned()
                .context("the config has no nodes"),
            Some(name) => self
                .nodes
                .iter()
                .find(|(n, _)| n == name)
                .cloned()
                .with_context(|| {
                    let known: Vec<&str> = self.nodes.iter().map(|(n, _)| n.as_str()).collect();
                    format!("no node named `{name}` (nodes: {})", known.join(", "))
                }),
        }
    }
}
