//! `rarakoon-bin local`: a working cluster on 127.0.0.1 with no configuration at all.
//!
//! The first start generates `cluster.toml` in the directory (default
//! `$XDG_DATA_HOME/rarakoon/local`, else `~/.local/share/rarakoon/local`): the standard ports
//! (client 4000+i, messaging 4010+i) when they are free, otherwise ports the OS hands out. Later
//! starts reuse that config and the data next to it. Each node runs as a child process of this
//! same binary with its log in `<dir>/node_i.log`, and serves `/metrics` and `/health` over
//! HTTP on a port the OS handed out when the config was generated (printed at start). Ctrl-C
//! (or SIGTERM) stops them all with SIGTERM, waits for each to exit, and kills only those that
//! do not stop in time.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use rarakoon_node::config::{ClusterConfig, ClusterSection, NodeConfig};
use tokio::process::{Child, Command};
use tokio::task::JoinSet;

use crate::logging::LogFormat;
use crate::signals;

/// The cluster id of generated local clusters.
pub const LOCAL_CLUSTER_ID: &str = "rarakoon-local";
/// The config file name inside a local cluster's directory.
pub const CONFIG_FILE_NAME: &str = "cluster.toml";
/// Nodes started when nothing else is asked for.
pub const DEFAULT_NODES: usize = 3;
/// Standard first client port (Arakoon's examples use 4000).
const FIRST_CLIENT_PORT: u16 = 4000;
/// Standard first messaging port.
const FIRST_MESSAGING_PORT: u16 = 4010;
/// The lease of a local cluster: short, so a demo elects its master within seconds.
const LOCAL_LEASE_SECS: f64 = 3.0;
/// How long a node may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// The standard directory of the local cluster.
pub fn default_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("rarakoon/local");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/share/rarakoon/local");
    }
    PathBuf::from(".rarakoon-local")
}

/// The config file of the local cluster in `dir` (or the default directory).
pub fn config_path(dir: Option<&Path>) -> PathBuf {
    dir.map_or_else(default_dir, Path::to_path_buf)
        .join(CONFIG_FILE_NAME)
}

/// Generates the config for `nodes` nodes on 127.0.0.1 (not yet written anywhere).
pub fn generate_config(nodes: usize) -> anyhow::Result<ClusterConfig> {
    if nodes == 0 || nodes > 9 {
        bail!("--nodes must be between 1 and 9 for a local cluster, not {nodes}");
    }
    let standard: Vec<(u16, u16)> = (0..nodes as u16)
        .map(|i| (FIRST_CLIENT_PORT + i, FIRST_MESSAGING_PORT + i))
        .collect();
    let all_free = standard
        .iter()
        .all(|&(c, m)| port_is_free(c) && port_is_free(m));
    let ports = if all_free {
        standard
    } else {
        eprintln!(
            "note: the standard ports {FIRST_CLIENT_PORT}.. / {FIRST_MESSAGING_PORT}.. are busy; \
             using ports chosen by the OS (recorded in the config for the next start)"
        );
        os_ports(nodes)?
    };
    let mut config = config_on_ports(&ports);
    with_metrics_on_free_ports(&mut config)?;
    Ok(config)
}

/// Turns the metrics endpoint on for every node of `config`, each on a free port the OS hands
/// out (different from the config's other ports).
fn with_metrics_on_free_ports(config: &mut ClusterConfig) -> anyhow::Result<()> {
    let taken: Vec<u16> = config
        .nodes
        .iter()
        .flat_map(|n| {
            n.addresses
                .iter()
                .map(SocketAddr::port)
                .chain([n.client_port])
        })
        .collect();
    let mut held = Vec::new();
    for node in &mut config.nodes {
        let port = loop {
            let (port, listener) = os_port()?;
            held.push(listener);
            if !taken.contains(&port) {
                break port;
            }
        };
        node.metrics_address = Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    Ok(())
}

/// A config for nodes on ports the OS hands out, never the standard ones (a throwaway cluster,
/// such as `bench --local`'s, must not take the ports a `local` cluster may want).
pub(crate) fn generate_config_on_os_ports(nodes: usize) -> anyhow::Result<ClusterConfig> {
    if nodes == 0 || nodes > 9 {
        bail!("a local cluster has between 1 and 9 nodes, not {nodes}");
    }
    Ok(config_on_ports(&os_ports(nodes)?))
}

/// `(client, messaging)` ports for `nodes` nodes, all different, handed out by the OS.
fn os_ports(nodes: usize) -> anyhow::Result<Vec<(u16, u16)>> {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..nodes {
        let (c, lc) = os_port()?;
        let (m, lm) = os_port()?;
        held.push(lc);
        held.push(lm);
        ports.push((c, m));
    }
    Ok(ports)
}

/// The local cluster's config for nodes on `(client, messaging)` ports.
fn config_on_ports(ports: &[(u16, u16)]) -> ClusterConfig {
    let mut cluster = ClusterSection::new(LOCAL_CLUSTER_ID);
    cluster.lease_period_secs = LOCAL_LEASE_SECS;
    let nodes = ports
        .iter()
        .enumerate()
        .map(|(i, &(client, messaging))| {
            let name = format!("node_{i}");
            NodeConfig::new(
                &name,
                SocketAddr::from((Ipv4Addr::LOCALHOST, messaging)),
                client,
                PathBuf::from(&name),
            )
        })
        .collect();
    ClusterConfig { cluster, nodes }
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// A port the OS hands out, with its listener kept open so the next call gets another one.
fn os_port() -> anyhow::Result<(u16, TcpListener)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("cannot bind a free port on 127.0.0.1")?;
    Ok((listener.local_addr()?.port(), listener))
}

/// Loads the local cluster's config from `dir`, generating and writing it on the first start.
pub fn load_or_create(
    dir: &Path,
    nodes: Option<usize>,
    tls: bool,
) -> anyhow::Result<(PathBuf, ClusterConfig)> {
    let path = dir.join(CONFIG_FILE_NAME);
    if path.exists() {
        let config = ClusterConfig::load(&path)?;
        if tls && config.cluster.tls.is_none() {
            bail!(
                "{} already holds a cluster without TLS; use another --dir for a TLS cluster \
                 (or delete that directory to start over)",
                dir.display()
            );
        }
        if let Some(n) = nodes
            && n != config.nodes.len()
        {
            bail!(
                "{} already holds a {}-node cluster; use another --dir for a {n}-node cluster \
                 (or delete that directory to start over)",
                dir.display(),
                config.nodes.len()
            );
        }
        return Ok((path, config));
    }
    let mut generated = generate_config(nodes.unwrap_or(DEFAULT_NODES))?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if tls {
        crate::tls::generate_local(&mut generated, dir)?;
    }
    let text = format!(
        "# Generated by `rarakoon-bin local`; edit freely, it is reused on the next start.\n{}",
        generated.to_toml_string()?
    );
    write_atomically(&path, text.as_bytes())?;
    // Load it back: this resolves the relative home directories and validates once more.
    let config = ClusterConfig::load(&path)?;
    Ok((path, config))
}

/// Writes a file by temp-file, fsync, rename, fsync of the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let tmp = path.with_extension("toml.tmp");
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// The running child nodes: each child is owned by a task that waits for its exit, so the
/// first exit is seen at once; aborting a task drops its `Child`, which kills the process.
pub(crate) struct Children {
    waits: JoinSet<(String, String)>,
    pids: Vec<(String, u32)>,
}

impl Children {
    fn new() -> Self {
        Children {
            waits: JoinSet::new(),
            pids: Vec::new(),
        }
    }

    fn add(&mut self, name: String, mut child: Child) {
        if let Some(pid) = child.id() {
            self.pids.push((name.clone(), pid));
        }
        self.waits.spawn(async move {
            let status = match child.wait().await {
                Ok(s) => s.to_string(),
                Err(e) => format!("wait failed: {e}"),
            };
            (name, status)
        });
    }

    /// Resolves when any child exits, with its name and status.
    pub(crate) async fn first_exit(&mut self) -> (String, String) {
        match self.waits.join_next().await {
            Some(Ok(exit)) => exit,
            Some(Err(e)) => ("?".to_owned(), format!("waiting task failed: {e}")),
            None => std::future::pending().await,
        }
    }

    /// SIGTERM to every child, then wait; kill those still running after the grace period.
    async fn stop_all(self) {
        self.stop_all_reporting(|line| println!("{line}")).await;
    }

    /// [`Children::stop_all`], handing each progress line to `say` instead of stdout.
    pub(crate) async fn stop_all_reporting(mut self, say: impl Fn(String)) {
        for (_, pid) in &self.pids {
            send_sigterm(*pid).await;
        }
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        loop {
            match tokio::time::timeout_at(deadline, self.waits.join_next()).await {
                Ok(Some(Ok((name, status)))) => say(format!("  {name} stopped ({status})")),
                Ok(Some(Err(e))) => say(format!("  a waiting task failed: {e}")),
                Ok(None) => break,
                Err(_) => {
                    say(format!(
                        "  {} node(s) did not stop within {} s; killing them",
                        self.waits.len(),
                        STOP_GRACE.as_secs()
                    ));
                    // Dropping the tasks drops their `Child`ren, which kills them.
                    self.waits.shutdown().await;
                    break;
                }
            }
        }
    }
}

/// Runs `local` until Ctrl-C/SIGTERM or until a node exits on its own.
pub async fn run(
    dir: Option<PathBuf>,
    nodes: Option<usize>,
    tls: bool,
    log_format: LogFormat,
) -> anyhow::Result<()> {
    let is_default_dir = dir.is_none();
    let dir = dir.unwrap_or_else(default_dir);
    let (config_file, config) = load_or_create(&dir, nodes, tls)?;
    let exe = std::env::current_exe().context("cannot find this program's own path")?;
    let mut signals = signals::StopSignals::install().context("cannot install signal handlers")?;
    let mut children = spawn_nodes(&exe, &config_file, &config, &dir, log_format).await?;

    println!("Rarakoon local cluster `{}` is starting", config.cluster.id);
    println!("  directory: {}", dir.display());
    for node in &config.nodes {
        let metrics = node
            .metrics_address
            .map(|a| format!("  metrics http://{a}/metrics"))
            .unwrap_or_default();
        println!(
            "  {}: client {}{metrics}  (log {})",
            node.name,
            node.client_socket_address(),
            dir.join(format!("{}.log", node.name)).display()
        );
    }
    let dir_arg = if is_default_dir {
        String::new()
    } else {
        format!(" --dir {}", dir.display())
    };
    println!("Try:  rarakoon-bin client{dir_arg} set hello world");
    println!("      rarakoon-bin client{dir_arg} get hello");
    if config.cluster.tls.is_some() {
        let tls_dir = dir.join(crate::tls::TLS_DIR);
        println!(
            "TLS:  every port needs TLS; the CLI uses {} and the admin certificate {} by itself.",
            tls_dir.join("ca.pem").display(),
            tls_dir.join("client.pem").display()
        );
        println!(
            "      Another client certificate (not an admin): --tls-ca {0}/ca.pem \
             --tls-cert {0}/app.pem --tls-key {0}/app.key",
            tls_dir.display()
        );
    }
    println!("Press Ctrl-C to stop every node.");

    let outcome = tokio::select! {
        master = wait_for_master(&config) => {
            match master {
                Some(m) => println!("Ready: {m} is master."),
                None => println!("No master yet after {} s; see the node logs.", READY_WAIT.as_secs()),
            }
            wait_until_stopped(&mut children, &mut signals, &dir).await
        }
        outcome = wait_until_stopped(&mut children, &mut signals, &dir) => outcome,
    };
    children.stop_all().await;
    outcome
}

/// Starts every node of `config` as a child process of `exe`, logs in `<dir>/<node>.log`; on a
/// failure the nodes already started are stopped again.
pub(crate) async fn spawn_nodes(
    exe: &Path,
    config_file: &Path,
    config: &ClusterConfig,
    dir: &Path,
    log_format: LogFormat,
) -> anyhow::Result<Children> {
    let mut children = Children::new();
    for node in &config.nodes {
        let log_path = dir.join(format!("{}.log", node.name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open log file {}", log_path.display()))?;
        let spawned = Command::new(exe)
            .arg("--config")
            .arg(config_file)
            .arg("--node")
            .arg(&node.name)
            .arg("--log-format")
            .arg(log_format.as_arg())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn();
        match spawned {
            Ok(child) => children.add(node.name.clone(), child),
            Err(e) => {
                children.stop_all().await;
                return Err(e).with_context(|| format!("cannot start {}", node.name));
            }
        }
    }
    Ok(children)
}

/// How long `local` waits for a master before saying so.
const READY_WAIT: Duration = Duration::from_secs(60);

/// Asks the nodes who is master until one confirms it (bounded by [`READY_WAIT`]).
pub(crate) async fn wait_for_master(config: &ClusterConfig) -> Option<String> {
    let deadline = tokio::time::Instant::now() + READY_WAIT;
    let tls = match crate::tls::config_settings(config) {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("cannot load the cluster's TLS files: {e:#}");
            return None;
        }
    };
    let ask = |node: &rarakoon_node::NodeConfig| {
        let tls = tls
            .as_ref()
            .and_then(|tls| crate::tls::config_for(tls, &node.name).ok());
        crate::direct::call(
            &config.cluster.id,
            node.client_socket_address(),
            &rarakoon_client::Request::WhoMaster,
            Duration::from_secs(2),
            tls,
        )
    };
    while tokio::time::Instant::now() < deadline {
        for node in &config.nodes {
            if let Ok(Ok(rarakoon_client::Response::WhoMaster(Some(m)))) = ask(node).await
                && let Some(master) = config.nodes.iter().find(|n| n.name.as_bytes() == m)
                && let Ok(Ok(rarakoon_client::Response::WhoMaster(Some(again)))) = ask(master).await
                && again == m
            {
                return Some(master.name.clone());
            }
        }
        // Polling pause between rounds of questions; the answer, not the pause, ends the wait.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// Resolves on Ctrl-C/SIGTERM (Ok) or when a node exits on its own (Err).
async fn wait_until_stopped(
    children: &mut Children,
    signals: &mut signals::StopSignals,
    dir: &Path,
) -> anyhow::Result<()> {
    tokio::select! {
        signal = signals.recv() => {
            println!("{signal} received: stopping every node");
            Ok(())
        }
        (name, status) = children.first_exit() => {
            Err(anyhow::anyhow!(
                "node {name} exited on its own ({status}); see {}; stopping the others",
                dir.join(format!("{name}.log")).display()
            ))
        }
    }
}

/// Sends SIGTERM through `kill(1)`: the workspace forbids `unsafe`, which `libc::kill` needs.
pub async fn send_sigterm(pid: u32) {
    let result = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if let Err(e) = result {
        tracing::warn!(pid, "cannot run kill -TERM: {e}");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn generated_config_is_valid_and_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let (path, first) = load_or_create(tmp.path(), Some(3), false).unwrap();
        assert_eq!(first.nodes.len(), 3);
        assert_eq!(first.cluster.id, LOCAL_CLUSTER_ID);
        assert_eq!(first.nodes[1].home_dir, tmp.path().join("node_1"));
        let (path2, second) = load_or_create(tmp.path(), None, false).unwrap();
        assert_eq!(path, path2);
        assert_eq!(first, second);
        assert!(
            first.nodes.iter().all(|n| n.metrics_address.is_some()),
            "local turns the metrics endpoint on"
        );
        let err = load_or_create(tmp.path(), Some(5), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("3-node"), "{err}");
    }

    #[test]
    fn node_count_is_bounded() {
        assert!(generate_config(0).is_err());
        assert!(generate_config(10).is_err());
    }
}
