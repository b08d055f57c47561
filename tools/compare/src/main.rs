//! `rarakoon-compare`: one closed-loop load generator for Rarakoon, etcd v3 and ZooKeeper.
//!
//! The same code drives all three systems: N clients, each with one request in flight, over C
//! connections (client i uses connection i mod C), a warm-up, then a fixed measured window.
//! Latency is taken from just before the request is handed to the system's client library to
//! just after its answer came back, into one HDR histogram per client (ns, 3 significant
//! digits), merged at the end. Only requests that started and finished inside the window count.
//!
//! What each system is asked (decision and caveats in docs/adr/0180-comparison-load-generator.md):
//! - `set`: Rarakoon SET to the master; etcd Put; ZooKeeper setData (version -1) of a znode
//!   created in the prefill. All three acknowledge only after a quorum has the write on disk.
//! - `get` (the consistent read): Rarakoon GET with consistency `Consistent` (the master
//!   answers from its store while its lease holds); etcd Range with its default linearizable
//!   consistency (ReadIndex: a heartbeat round to a quorum, then the local store); ZooKeeper
//!   `sync` followed by getData on the same session (two requests; see the ADR: not strictly
//!   linearizable).
//! - `get-local`: a read from the connected server's own store, no agreement step: Rarakoon
//!   `NoGuarantees`, etcd serializable Range, ZooKeeper plain getData (sequentially consistent
//!   per session, may be stale).
//!
//! Connections: Rarakoon's protocol serves clients only on the master, so every connection goes
//! to the master; Arakoon answers requests on one connection in order, so the clients sharing a
//! connection pipeline their requests over it (a task per connection, replies matched in order
//! through `rarakoon_client::ClientCodec`). etcd's client multiplexes a connection over HTTP/2
//! and ZooKeeper's pipelines requests on a session, so the C client objects are shared the same
//! way. etcd and ZooKeeper connection i goes to member (leader + i) mod 3: one client talks to
//! the leader, many clients are spread over every member, as their users' clients do.
//!
//! Output: one JSON object per run on stdout (`--json`), or a line of text; `table FILE...`
//! prints the markdown table of such JSON lines, with ratios of Rarakoon to the others.

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bytes::{Bytes, BytesMut};
use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use rarakoon_client::{
    ClientCodec, ClientConfig, Consistency, Limits, Prologue, Reply, Request, Response,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::codec::{Decoder, Encoder};

#[derive(Parser)]
#[command(about = "Closed-loop load generator for Rarakoon, etcd v3 and ZooKeeper")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one workload against one system.
    Run(RunArgs),
    /// Print the markdown table of the JSON lines in the given files.
    Table {
        /// Files of JSON lines written by `run --json`.
        files: Vec<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum System {
    Rarakoon,
    Etcd,
    Zookeeper,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Rarakoon => "rarakoon",
            System::Etcd => "etcd",
            System::Zookeeper => "zookeeper",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    Set,
    Get,
    GetLocal,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Set => "set",
            Workload::Get => "get",
            Workload::GetLocal => "get-local",
        }
    }
}

#[derive(Parser)]
struct RunArgs {
    #[arg(long, value_enum)]
    system: System,
    /// Client addresses of the three servers, host:port, comma separated. For Rarakoon as
    /// name=host:port.
    #[arg(long, value_delimiter = ',', required = true)]
    endpoints: Vec<String>,
    /// Rarakoon's cluster id.
    #[arg(long, default_value = "rarakoon-local")]
    cluster_id: String,
    #[arg(long, value_enum, default_value = "set")]
    workload: Workload,
    /// Clients, each with one request in flight.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Connections (client objects); client i uses connection i mod C.
    #[arg(long)]
    connections: Option<usize>,
    /// Size of the key space.
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    #[arg(long, default_value_t = 16)]
    key_size: usize,
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Seconds of warm-up (requests run, not measured).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds measured.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Skip writing every key before the run (the keys must exist for `get` and ZooKeeper).
    #[arg(long)]
    no_prefill: bool,
    /// One JSON object on stdout instead of text.
    #[arg(long)]
    json: bool,
}

/// One connection of whichever system, shared by the clients mapped to it.
#[derive(Clone)]
enum Conn {
    Rarakoon(ArakoonConn),
    Etcd(Box<etcd_client::KvClient>),
    Zk(zookeeper_client::Client),
}

/// Requests fail for reasons the run counts, by kind.
type OpResult = Result<(), String>;

impl Conn {
    async fn set(&mut self, key: &Bytes, value: &Bytes) -> OpResult {
        match self {
            Conn::Rarakoon(c) => match c
                .call(Request::Set {
                    key: key.clone(),
                    value: value.clone(),
                })
                .await?
            {
                Ok(Response::Set) => Ok(()),
                Ok(other) => Err(format!("unexpected answer {:?}", other.opcode())),
                Err(e) => Err(format!("{:?}", e.code)),
            },
            Conn::Etcd(kv) => kv
                .put(key.to_vec(), value.to_vec(), None)
                .await
                .map(|_| ())
                .map_err(|e| format!("etcd put: {e}")),
            Conn::Zk(zk) => zk
                .set_data(&zk_path(key), value, None)
                .await
                .map(|_| ())
                .map_err(|e| format!("zk setData: {e}")),
        }
    }

    async fn get(&mut self, key: &Bytes, workload: Workload, value_size: usize) -> OpResult {
        let len = match self {
            Conn::Rarakoon(c) => {
                let consistency = if workload == Workload::Get {
                    Consistency::Consistent
                } else {
                    Consistency::NoGuarantees
                };
                match c
                    .call(Request::Get {
                        consistency,
                        key: key.clone(),
                    })
                    .await?
                {
                    Ok(Response::Get(value)) => value.len(),
                    Ok(other) => return Err(format!("unexpected answer {:?}", other.opcode())),
                    Err(e) => return Err(format!("{:?}", e.code)),
                }
            }
            Conn::Etcd(kv) => {
                let options = if workload == Workload::Get {
                    None
                } else {
                    Some(etcd_client::GetOptions::new().with_serializable())
                };
                let resp = kv
                    .get(key.to_vec(), options)
                    .await
                    .map_err(|e| format!("etcd range: {e}"))?;
                match resp.kvs() {
                    [kv] => kv.value().len(),
                    other => return Err(format!("etcd range: {} keys", other.len())),
                }
            }
            Conn::Zk(zk) => {
                let path = zk_path(key);
                if workload == Workload::Get {
                    zk.sync(&path).await.map_err(|e| format!("zk sync: {e}"))?;
                }
                let (data, _) = zk
                    .get_data(&path)
                    .await
                    .map_err(|e| format!("zk getData: {e}"))?;
                data.len()
            }
        };
        if len == value_size {
            Ok(())
        } else {
            Err(format!("value of {len} bytes, not {value_size}"))
        }
    }
}

fn zk_path(key: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(key))
}

// ---- Rarakoon: a pipelined connection to the master ----------------------------------------

type Waiter = oneshot::Sender<Reply>;

/// A handle to one connection's task. Requests are written in the order they arrive and each
/// reply goes to the oldest waiter (Arakoon answers a connection's requests in order); the
/// codec checks each reply against the opcode it expects.
#[derive(Clone)]
struct ArakoonConn {
    requests: mpsc::Sender<(Request, Waiter)>,
}

impl ArakoonConn {
    async fn open(addr: SocketAddr, cluster_id: &str) -> anyhow::Result<ArakoonConn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (tx, rx) = mpsc::channel(1024);
        let prologue = Prologue {
            cluster_id: Bytes::from(cluster_id.to_owned()),
        };
        tokio::spawn(arakoon_task(stream, prologue, rx));
        Ok(ArakoonConn { requests: tx })
    }

    async fn call(&self, request: Request) -> Result<Reply, String> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send((request, tx))
            .await
            .map_err(|_| "connection closed".to_owned())?;
        rx.await.map_err(|_| "connection lost".to_owned())
    }
}

async fn arakoon_task(
    stream: TcpStream,
    prologue: Prologue,
    mut requests: mpsc::Receiver<(Request, Waiter)>,
) {
    let (mut reader, mut writer) = stream.into_split();
    let mut codec = ClientCodec::new(Limits::default());
    let mut output = BytesMut::with_capacity(16 * 1024);
    let mut input = BytesMut::with_capacity(64 * 1024);
    let mut waiting: VecDeque<Waiter> = VecDeque::new();
    if codec.encode(&prologue, &mut output).is_err() {
        return;
    }
    loop {
        tokio::select! {
            next = requests.recv() => {
                let Some((request, waiter)) = next else { return };
                if codec.encode(&request, &mut output).is_err() {
                    return;
                }
                waiting.push_back(waiter);
                // Everything already queued goes out in the same write.
                while let Ok((request, waiter)) = requests.try_recv() {
                    if codec.encode(&request, &mut output).is_err() {
                        return;
                    }
                    waiting.push_back(waiter);
                }
                if writer.write_all(&output).await.is_err() {
                    return;
                }
                output.clear();
            }
            read = reader.read_buf(&mut input) => {
                match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                loop {
                    match codec.decode(&mut input) {
                        Ok(Some((_, reply))) => {
                            let Some(waiter) = waiting.pop_front() else { return };
                            // The client may have given up; nothing to do then.
                            let _ = waiter.send(reply);
                        }
                        Ok(None) => break,
                        Err(_) => return,
                    }
                }
                input.reserve(16 * 1024);
            }
        }
    }
}

// ---- connecting ----------------------------------------------------------------------------

/// The connections, C of them, opened the way the module docs describe.
async fn connect(args: &RunArgs, connections: usize) -> anyhow::Result<Vec<Conn>> {
    let mut conns = Vec::with_capacity(connections);
    match args.system {
        System::Rarakoon => {
            let mut nodes = BTreeMap::new();
            for endpoint in &args.endpoints {
                let (name, addr) = endpoint
                    .split_once('=')
                    .ok_or_else(|| anyhow!("Rarakoon endpoints are name=host:port: {endpoint}"))?;
                let addr: SocketAddr = addr.parse().with_context(|| endpoint.clone())?;
                nodes.insert(name.to_owned(), addr);
            }
            let mut config = ClientConfig::new(args.cluster_id.clone());
            config.nodes = nodes.clone();
            config.max_attempts = 20;
            config.retry_delay = Duration::from_millis(500);
            let client = rarakoon_client::Client::new(config)?;
            let master = client
                .who_master()
                .await?
                .ok_or_else(|| anyhow!("no master known"))?;
            let master = String::from_utf8_lossy(&master).into_owned();
            let addr = *nodes
                .get(&master)
                .ok_or_else(|| anyhow!("master {master} not among the endpoints"))?;
            for _ in 0..connections {
                conns.push(Conn::Rarakoon(
                    ArakoonConn::open(addr, &args.cluster_id).await?,
                ));
            }
        }
        System::Etcd => {
            let leader = etcd_leader(&args.endpoints).await?;
            for i in 0..connections {
                let endpoint = &args.endpoints[(leader + i) % args.endpoints.len()];
                let client = etcd_client::Client::connect([format!("http://{endpoint}")], None)
                    .await
                    .with_context(|| format!("connecting to etcd at {endpoint}"))?;
                conns.push(Conn::Etcd(Box::new(client.kv_client())));
            }
        }
        System::Zookeeper => {
            let leader = zk_leader(&args.endpoints).await?;
            for i in 0..connections {
                let endpoint = &args.endpoints[(leader + i) % args.endpoints.len()];
                let client = zookeeper_client::Client::connect(endpoint)
                    .await
                    .with_context(|| format!("connecting to ZooKeeper at {endpoint}"))?;
                conns.push(Conn::Zk(client));
            }
        }
    }
    Ok(conns)
}

/// Index of the endpoint whose member is the Raft leader (0 when none of them is).
async fn etcd_leader(endpoints: &[String]) -> anyhow::Result<usize> {
    for (i, endpoint) in endpoints.iter().enumerate() {
        let mut client = etcd_client::Client::connect([format!("http://{endpoint}")], None).await?;
        let status = client.status().await?;
        let member = status
            .header()
            .map(|h| h.member_id())
            .ok_or_else(|| anyhow!("etcd status without header"))?;
        if member == status.leader() {
            return Ok(i);
        }
    }
    // The leader is not among the endpoints given: start with the first.
    Ok(0)
}

/// Index of the endpoint whose server is the leader (ZooKeeper's `srvr` command; 0 when none
/// of them is).
async fn zk_leader(endpoints: &[String]) -> anyhow::Result<usize> {
    for (i, endpoint) in endpoints.iter().enumerate() {
        let mut stream = TcpStream::connect(endpoint.as_str()).await?;
        stream.write_all(b"srvr").await?;
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
            .await
            .context("ZooKeeper srvr timed out")??;
        if String::from_utf8_lossy(&answer).contains("Mode: leader") {
            return Ok(i);
        }
    }
    // The leader is not among the endpoints given: start with the first.
    Ok(0)
}

// ---- the run --------------------------------------------------------------------------------

/// Key number `n` as `k` + zero-padded digits, `size` bytes (a valid znode name).
fn key(n: usize, size: usize) -> Bytes {
    let digits = size.saturating_sub(1).max(1);
    Bytes::from(format!("k{n:0digits$}"))
}

/// xorshift64*: a small, seeded, per-client choice of keys.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
    }
}

async fn prefill(
    system: System,
    conn: &mut Conn,
    keys: &[Bytes],
    value: &Bytes,
) -> anyhow::Result<()> {
    if let (System::Zookeeper, Conn::Zk(zk)) = (system, &*conn) {
        let options = zookeeper_client::CreateMode::Persistent
            .with_acls(zookeeper_client::Acls::anyone_all());
        for k in keys {
            match zk.create(&zk_path(k), value, &options).await {
                Ok(_) | Err(zookeeper_client::Error::NodeExists) => {}
                Err(e) => bail!("creating {}: {e}", zk_path(k)),
            }
        }
        return Ok(());
    }
    for k in keys {
        conn.set(k, value)
            .await
            .map_err(|e| anyhow!("prefill of {k:?}: {e}"))?;
    }
    Ok(())
}

struct ClientResult {
    histogram: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.clients == 0 || args.keys == 0 {
        bail!("--clients and --keys must be at least 1");
    }
    let connections = args
        .connections
        .unwrap_or(args.clients)
        .clamp(1, args.clients);
    let mut conns = connect(&args, connections).await?;
    let keys: Arc<Vec<Bytes>> = Arc::new((0..args.keys).map(|n| key(n, args.key_size)).collect());
    let value = Bytes::from(vec![b'v'; args.value_size]);
    if !args.no_prefill {
        prefill(args.system, &mut conns[0], &keys, &value).await?;
    }

    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let measure_until = measure_from + Duration::from_secs_f64(args.duration);
    let workload = args.workload;
    let value_size = args.value_size;
    let mut tasks = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let mut conn = conns[i % connections].clone();
        let keys = Arc::clone(&keys);
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
                .map_err(|e| anyhow!("histogram: {e}"))?;
            let mut errors = BTreeMap::new();
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((i as u64 + 1) * 0x1000_0001));
            loop {
                let k = &keys[rng.below(keys.len())];
                let sent = Instant::now();
                if sent >= measure_until {
                    break;
                }
                let outcome = match workload {
                    Workload::Set => conn.set(k, &value).await,
                    Workload::Get | Workload::GetLocal => conn.get(k, workload, value_size).await,
                };
                let done = Instant::now();
                if sent < measure_from || done > measure_until {
                    continue;
                }
                match outcome {
                    Ok(()) => {
                        let ns = (done - sent).as_nanos().min(60_000_000_000) as u64;
                        histogram.saturating_record(ns.max(1));
                    }
                    Err(e) => *errors.entry(e).or_insert(0) += 1,
                }
            }
            anyhow::Ok(ClientResult { histogram, errors })
        }));
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)
        .map_err(|e| anyhow!("histogram: {e}"))?;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for task in tasks {
        let result = task.await??;
        histogram
            .add(&result.histogram)
            .map_err(|e| anyhow!("merging histograms: {e}"))?;
        for (kind, n) in result.errors {
            *errors.entry(kind).or_insert(0) += n;
        }
    }
    let ops = histogram.len();
    let us = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    let report = serde_json::json!({
        "system": args.system.name(),
        "workload": workload.name(),
        "clients": args.clients,
        "connections": connections,
        "keys": args.keys,
        "key_size": args.key_size,
        "value_size": args.value_size,
        "duration_s": args.duration,
        "ops": ops,
        "ops_per_sec": ops as f64 / args.duration,
        "p50_us": us(0.5),
        "p99_us": us(0.99),
        "max_us": histogram.max() as f64 / 1000.0,
        "errors": errors,
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "{} {} clients={} connections={}: {:.0} ops/s, p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, errors {:?}",
            args.system.name(),
            workload.name(),
            args.clients,
            connections,
            ops as f64 / args.duration,
            us(0.5) / 1000.0,
            us(0.99) / 1000.0,
            histogram.max() as f64 / 1e6,
            errors
        );
    }
    Ok(())
}

// ---- the table ------------------------------------------------------------------------------

fn table(files: &[PathBuf]) -> anyhow::Result<()> {
    // (workload, clients, connections) -> system -> report
    let mut rows: BTreeMap<(String, u64, u64), BTreeMap<String, serde_json::Value>> =
        BTreeMap::new();
    let mut order: Vec<(String, u64, u64)> = Vec::new();
    for file in files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        // A stream of JSON objects: one per line from `run --json`, pretty-printed from
        // `rarakoon-bin bench --json`.
        for v in serde_json::Deserializer::from_str(&text).into_iter::<serde_json::Value>() {
            let v = normalize_bench(v.with_context(|| format!("parsing {}", file.display()))?);
            let field = |name: &str| v.get(name).cloned().unwrap_or(serde_json::Value::Null);
            let row = (
                field("workload").as_str().unwrap_or("?").to_owned(),
                field("clients").as_u64().unwrap_or(0),
                field("connections").as_u64().unwrap_or(0),
            );
            if !order.contains(&row) {
                order.push(row.clone());
            }
            let system = field("system").as_str().unwrap_or("?").to_owned();
            rows.entry(row).or_default().insert(system, v);
        }
    }
    fn label(w: &str) -> &str {
        match w {
            "set" => "durable set",
            "get" => "consistent get",
            "get-local" => "local get (not linearizable)",
            other => other,
        }
    }
    let cell = |v: Option<&serde_json::Value>| -> String {
        let Some(v) = v else { return String::new() };
        let ops = v.get("ops_per_sec").and_then(|x| x.as_f64()).unwrap_or(0.0);
        let p50 = v.get("p50_us").and_then(|x| x.as_f64()).unwrap_or(0.0) / 1000.0;
        let p99 = v.get("p99_us").and_then(|x| x.as_f64()).unwrap_or(0.0) / 1000.0;
        let errors: u64 = v
            .get("errors")
            .and_then(|e| e.as_object())
            .map(|m| m.values().filter_map(|n| n.as_u64()).sum())
            .unwrap_or(0);
        let mut s = format!("{} /s, p50 {p50:.3} ms, p99 {p99:.3} ms", thousands(ops));
        if errors > 0 {
            s.push_str(&format!(", {errors} errors"));
        }
        s
    };
    let ratio = |a: Option<&serde_json::Value>, b: Option<&serde_json::Value>| -> String {
        let ops = |v: Option<&serde_json::Value>| {
            v.and_then(|v| v.get("ops_per_sec"))
                .and_then(|x| x.as_f64())
        };
        match (ops(a), ops(b)) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.1}x", a / b),
            _ => String::new(),
        }
    };
    println!(
        "| workload | Rarakoon (`compare`) | Rarakoon (`rarakoon-bin bench`) | etcd | ZooKeeper | Rarakoon / etcd | Rarakoon / ZooKeeper |"
    );
    println!("|---|---|---|---|---|---|---|");
    for row in &order {
        let by = &rows[row];
        let r = by.get("rarakoon");
        println!(
            "| {}, {} client{}{} | {} | {} | {} | {} | {} | {} |",
            label(&row.0),
            row.1,
            if row.1 == 1 { "" } else { "s" },
            if row.2 != row.1 {
                format!(" on {} connections", row.2)
            } else {
                String::new()
            },
            cell(r),
            cell(by.get("rarakoon-bench")),
            cell(by.get("etcd")),
            cell(by.get("zookeeper")),
            ratio(r, by.get("etcd")),
            ratio(r, by.get("zookeeper")),
        );
    }
    Ok(())
}

/// `rarakoon-bin bench --json` output (schema `rarakoon-bench/1`) in this tool's fields, as
/// system `rarakoon-bench`; anything else unchanged.
fn normalize_bench(v: serde_json::Value) -> serde_json::Value {
    if v.get("schema").and_then(|s| s.as_str()) != Some("rarakoon-bench/1") {
        return v;
    }
    let workload = match (
        v.get("workload").and_then(|w| w.as_str()),
        v.get("consistency").and_then(|c| c.as_str()),
    ) {
        (Some("get"), Some("consistent")) => "get",
        (Some("get"), _) => "get-local",
        (Some(other), _) => other,
        (None, _) => "?",
    };
    let latency = |q: &str| {
        v.get("latency_us")
            .and_then(|l| l.get(q))
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    };
    let errors = v.get("errors").and_then(|e| e.as_u64()).unwrap_or(0);
    serde_json::json!({
        "system": "rarakoon-bench",
        "workload": workload,
        "clients": v.get("clients").cloned().unwrap_or_default(),
        "connections": v.get("connections").cloned().unwrap_or_default(),
        "ops_per_sec": v.get("ops_per_sec").cloned().unwrap_or_default(),
        "p50_us": latency("p50"),
        "p99_us": latency("p99"),
        "max_us": latency("max"),
        "errors": { "all": errors },
    })
}

fn thousands(x: f64) -> String {
    let n = x.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(args) => run(args).await,
        Command::Table { files } => table(&files),
    }
}
