//! The end-to-end test harness: real `rarakoon-bin` processes on 127.0.0.1.
//!
//! A [`TestCluster`] writes a config with free ports and a temporary directory, starts nodes as
//! child processes of the binary under test, and kills every process it started when it is
//! dropped (also when a test fails). Tests synchronise on events (a lock file holding the
//! child's pid, a port accepting, a client answering) through [`wait_for`], which polls with a
//! bounded deadline; no test sleeps for a fixed time to "let things settle".
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rarakoon_client::{
    Client, ClientCodec, ClientConfig, Consistency, Limits, Prologue, Reply, Request, Response,
};
use tokio_util::codec::{Decoder, Encoder};

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_rarakoon-bin")
}

/// A port that is free now, chosen below Linux's ephemeral range (32768..) so that no
/// outgoing connection of another test can take it between this check and the node's bind.
/// Ports are handed out from a per-process counter starting at a pid-derived offset, so
/// parallel tests and test binaries rarely even try the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let base = std::process::id().wrapping_mul(7919) % SPAN;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (base + n) % SPAN) as u16;
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
        assert!(
            n < SPAN,
            "no free port between {FIRST} and {}",
            FIRST + SPAN
        );
    }
}

/// `GET path` over HTTP/1.1 from `addr`: the status and the body, or `None` when the
/// connection fails or the answer is not HTTP (bounded by a 10 s timeout).
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = Vec::new();
    stream.take(16 << 20).read_to_end(&mut answer).ok()?;
    let text = String::from_utf8(answer).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        // Bounded back-off between polls; the condition, not the pause, ends the wait.
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Options for a generated cluster config.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub nodes: usize,
    pub lease_secs: f64,
    pub extra_cluster_lines: Vec<String>,
    pub extra_node_lines: Vec<String>,
    /// Give every node a `metrics_address` on a free port ([`NodeInfo::metrics_port`]).
    pub metrics: bool,
    /// Extra arguments for every node process (for example `--test-volatile-writes`).
    pub node_args: Vec<String>,
}

impl ClusterSpec {
    pub fn new(nodes: usize) -> Self {
        ClusterSpec {
            nodes,
            lease_secs: 1.0,
            extra_cluster_lines: Vec::new(),
            extra_node_lines: Vec::new(),
            metrics: false,
            node_args: Vec::new(),
        }
    }
}

/// One node's endpoints.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub client_port: u16,
    pub messaging_port: u16,
    pub home: PathBuf,
    /// The port of the node's metrics endpoint, when [`ClusterSpec::metrics`] is set.
    pub metrics_port: Option<u16>,
}

/// A cluster of real processes; every process is killed on drop.
pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub config_file: PathBuf,
    pub cluster_id: String,
    pub nodes: Vec<NodeInfo>,
    running: BTreeMap<String, Child>,
    /// Per-node config files that replace `config_file` for that node (see
    /// [`TestCluster::use_node_config`]).
    node_configs: BTreeMap<String, PathBuf>,
    /// [`ClusterSpec::node_args`].
    node_args: Vec<String>,
}

impl TestCluster {
    /// Writes the config for `spec` (nothing is started yet).
    pub fn new(spec: &ClusterSpec) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cluster_id = "e2e".to_owned();
        let mut text = format!(
            "[cluster]\nid = \"{cluster_id}\"\nlease_period_secs = {}\n",
            spec.lease_secs
        );
        for line in &spec.extra_cluster_lines {
            text.push_str(line);
            text.push('\n');
        }
        let mut nodes = Vec::new();
        for i in 0..spec.nodes {
            let info = NodeInfo {
                name: format!("n{i}"),
                client_port: free_port(),
                messaging_port: free_port(),
                home: dir.path().join(format!("n{i}")),
                metrics_port: spec.metrics.then(free_port),
            };
            text.push_str(&format!(
                "\n[[nodes]]\nname = \"{}\"\naddresses = [\"127.0.0.1:{}\"]\nclient_port = {}\n\
                 home_dir = \"{}\"\nsegment_size_bytes = 65536\n",
                info.name,
                info.messaging_port,
                info.client_port,
                info.home.display()
            ));
            if let Some(port) = info.metrics_port {
                text.push_str(&format!("metrics_address = \"127.0.0.1:{port}\"\n"));
            }
            for line in &spec.extra_node_lines {
                text.push_str(line);
                text.push('\n');
            }
            nodes.push(info);
        }
        let config_file = dir.path().join("cluster.toml");
        std::fs::write(&config_file, text).unwrap();
        TestCluster {
            dir,
            config_file,
            cluster_id,
            nodes,
            running: BTreeMap::new(),
            node_configs: BTreeMap::new(),
            node_args: spec.node_args.clone(),
        }
    }

    pub fn node(&self, name: &str) -> &NodeInfo {
        self.nodes.iter().find(|n| n.name == name).unwrap()
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    /// Starts node `name` from its own config file from now on (for example one whose peer
    /// addresses point at fault proxies); clients keep using the shared `config_file`.
    pub fn use_node_config(&mut self, name: &str, file: PathBuf) {
        self.node_configs.insert(name.to_owned(), file);
    }

    /// The command that runs node `name` (for tests that want to watch it themselves).
    pub fn node_command(&self, name: &str) -> Command {
        let mut cmd = Command::new(binary());
        cmd.arg("--config")
            .arg(self.node_configs.get(name).unwrap_or(&self.config_file))
            .arg("--node")
            .arg(name)
            .args(&self.node_args)
            .stdin(Stdio::null());
        cmd
    }

    /// Starts node `name`, its output appended to `<dir>/<name>.log`.
    pub fn start(&mut self, name: &str) {
        assert!(!self.running.contains_key(name), "{name} already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(name))
            .unwrap();
        let child = self
            .node_command(name)
            .env(
                "RUST_LOG",
                std::env::var("E2E_NODE_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.running.insert(name.to_owned(), child);
    }

    pub fn start_all(&mut self) {
        let names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        for name in names {
            self.start(&name);
        }
    }

    pub fn pid(&self, name: &str) -> u32 {
        self.running[name].id()
    }

    /// Waits until node `name` holds its home-directory lock (its pid is in `LOCK`).
    pub fn wait_locked(&self, name: &str) {
        let pid = self.pid(name).to_string();
        let lock = self.node(name).home.join("LOCK");
        wait_for(
            &format!("{name} to lock its home directory"),
            Duration::from_secs(60),
            || {
                std::fs::read_to_string(&lock)
                    .ok()
                    .filter(|t| t.trim() == pid)
            },
        );
    }

    /// Whether node `name` was started and not stopped by the harness.
    pub fn is_running(&self, name: &str) -> bool {
        self.running.contains_key(name)
    }

    /// Sends `signal` (for example `STOP` or `CONT`) to node `name`.
    pub fn signal(&self, name: &str, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid(name).to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {name} failed");
    }

    /// `kill -9`: no chance to clean up.
    pub fn kill9(&mut self, name: &str) {
        let mut child = self.running.remove(name).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, then wait for the exit status.
    pub fn terminate(&mut self, name: &str) -> ExitStatus {
        let mut child = self.running.remove(name).unwrap();
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        wait_for(
            &format!("{name} to exit after SIGTERM"),
            Duration::from_secs(60),
            || child.try_wait().unwrap(),
        )
    }

    /// The node's log so far (for assertion messages).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    /// Runs the CLI with `args` against this cluster; returns (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = output_bounded(Command::new(binary()).args(args), Duration::from_secs(120));
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn config_file(&self) -> &Path {
        &self.config_file
    }

    pub fn client_addr(&self, name: &str) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.node(name).client_port))
    }

    /// One request straight to node `name` (no master lookup); `None` if the node does not
    /// answer (down, or it closed the connection).
    pub fn ask(&self, name: &str, request: &Request) -> Option<Reply> {
        ask_addr(&self.cluster_id, self.client_addr(name), request)
    }

    /// Who node `name` says is master.
    pub fn who_master_at(&self, name: &str) -> Option<String> {
        match self.ask(name, &Request::WhoMaster) {
            Some(Ok(Response::WhoMaster(Some(m)))) => {
                Some(String::from_utf8_lossy(&m).into_owned())
            }
            _ => None,
        }
    }

    /// Waits until one running node is master and confirms it; returns its name.
    pub fn wait_master(&self, among: &[&str], timeout: Duration) -> String {
        wait_for("a master to be elected", timeout, || {
            among.iter().find_map(|n| {
                let m = self.who_master_at(n)?;
                (among.contains(&m.as_str())
                    && self.who_master_at(&m).as_deref() == Some(m.as_str()))
                .then_some(m)
            })
        })
    }

    /// A dirty read of `key` at node `name`.
    pub fn dirty_get(&self, name: &str, key: &str) -> Option<Bytes> {
        match self.ask(
            name,
            &Request::Get {
                consistency: Consistency::NoGuarantees,
                key: Bytes::from(key.to_owned()),
            },
        ) {
            Some(Ok(Response::Get(v))) => Some(v),
            _ => None,
        }
    }

    /// Waits until node `name` has `key` = `value` (dirty read).
    pub fn wait_value(&self, name: &str, key: &str, value: &str, timeout: Duration) {
        wait_for(&format!("{name} to have {key}={value}"), timeout, || {
            (self.dirty_get(name, key).as_deref() == Some(value.as_bytes())).then_some(())
        });
    }

    /// A Rust client for the nodes in `names`.
    pub fn client(&self, names: &[&str]) -> Client {
        let mut config = ClientConfig::new(self.cluster_id.clone());
        for n in names {
            config = config.node(n.to_string(), self.client_addr(n));
        }
        config.request_timeout = Duration::from_secs(10);
        config.max_attempts = 40;
        config.retry_delay = Duration::from_millis(100);
        Client::new(config).unwrap()
    }
}

/// One request to a node's client port over a fresh connection.
pub fn ask_addr(cluster_id: &str, addr: SocketAddr, request: &Request) -> Option<Reply> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut codec = ClientCodec::new(Limits::default());
    let mut out = BytesMut::new();
    codec
        .encode(
            &Prologue {
                cluster_id: Bytes::from(cluster_id.to_owned()),
            },
            &mut out,
        )
        .ok()?;
    codec.encode(request, &mut out).ok()?;
    stream.write_all(&out).ok()?;
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Ok(Some((_, reply))) = codec.decode(&mut buf) {
            return Some(reply);
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A current-thread runtime for the async client.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for child in self.running.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            // Show what the nodes said: the test's own message rarely explains a cluster.
            for node in &self.nodes {
                let log = self.log(&node.name);
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("---- last lines of {} ----", node.name);
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

/// `set` that retries when the outcome is unknown or no master is reachable (a leadership
/// change on a loaded machine). Safe in tests because setting the same value twice is
/// idempotent; any other error fails the test.
pub async fn set_retry(client: &Client, key: impl Into<Bytes>, value: impl Into<Bytes>) {
    let key = key.into();
    let value = value.into();
    let mut last = None;
    for _ in 0..20 {
        match client.set(key.clone(), value.clone()).await {
            Ok(()) => return,
            Err(
                e @ (rarakoon_client::Error::Indeterminate { .. }
                | rarakoon_client::Error::NoMaster { .. }
                | rarakoon_client::Error::NoLongerMaster(_)
                | rarakoon_client::Error::GoingDown(_)),
            ) => last = Some(e),
            Err(e) => panic!("set {key:?} failed: {e}"),
        }
    }
    panic!("set {key:?} kept failing: {last:?}");
}

/// `delete` that survives a leadership change: an unknown outcome is retried, and `NotFound`
/// on a retry means an earlier attempt deleted the key. Any other error fails the test.
pub async fn delete_retry(client: &Client, key: impl Into<Bytes>) {
    let key = key.into();
    let mut last = None;
    for attempt in 0..20 {
        match client.delete(key.clone()).await {
            Ok(()) => return,
            Err(rarakoon_client::Error::NotFound(_)) if attempt > 0 => return,
            Err(
                e @ (rarakoon_client::Error::Indeterminate { .. }
                | rarakoon_client::Error::NoMaster { .. }
                | rarakoon_client::Error::NoLongerMaster(_)
                | rarakoon_client::Error::GoingDown(_)),
            ) => last = Some(e),
            Err(e) => panic!("delete {key:?} failed: {e}"),
        }
    }
    panic!("delete {key:?} kept failing: {last:?}");
}

/// A child process that is stopped when the guard is dropped (also when a test panics), so no
/// test leaves a process behind: SIGTERM first (a `local` parent then stops its own nodes),
/// SIGKILL if it has not exited within a bounded time.
pub struct StopOnDrop(pub Child);

impl std::ops::Deref for StopOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for StopOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if !matches!(self.0.try_wait(), Ok(None)) {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if !matches!(self.0.try_wait(), Ok(None)) {
                return;
            }
            // Polling for the exit; the exit, not the pause, ends the wait.
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Like `Command::output`, but a process that has not exited within `timeout` is killed and the
/// test fails: a command expected to exit (a refused start, a CLI call) must never hang CI.
pub fn output_bounded(cmd: &mut Command, timeout: Duration) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not exit within {timeout:?}");
        }
        // Polling for the exit; the exit, not the pause, ends the wait.
        std::thread::sleep(Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}
