//! `rarakoon-bin bench`: a load generator for a Rarakoon (or Arakoon) cluster.
//!
//! # What it does
//! 1. Finds the cluster (`--cluster-config`, `--dir`, the default `local` cluster, or a
//!    throwaway cluster of its own with `--local`) and waits for a master (two lease periods).
//! 2. Prefills the whole key space for the workloads that read existing keys (get, mixed,
//!    test-and-set, range, prefix), in sequences of up to 1,000 sets; `at-least` reads then
//!    ask for the master's applied index read right after it.
//! 3. Opens `--connections` connections (to the master, or to `--node`) and runs `--clients`
//!    clients on them for `--warmup` plus `--duration`; client `i` uses connection
//!    `i mod connections`. The requests of the clients sharing a connection are pipelined
//!    (see `connection.rs`).
//! 4. Prints a table, or one JSON object with `--json`, and stops the throwaway cluster.
//!
//! # Measurement rules
//! - Closed loop (no `--rate`): each client sends its next request as soon as the previous one
//!   is answered. Latency runs from the moment the request is handed to its connection to the
//!   reply. This is *not* corrected for coordinated omission: while the cluster stalls, the
//!   clients stop sending, so the stall shows as a few slow requests, not as many.
//! - Open loop (`--rate R`): client `c` of `N` is scheduled to send at
//!   `start + (c/N + k) * N/R` for `k = 0, 1, ...` (the clients together send `R` per
//!   second, evenly staggered). A client still waiting for a reply at its next slot sends as
//!   soon as the reply comes, and its latency runs from the *intended* send time, so the time
//!   the cluster kept it waiting behind the previous request counts (corrected for
//!   coordinated omission, as wrk2 does). A client idle at its slot sleeps until it and counts
//!   from the actual send: Tokio's timer wakes up to about 1 ms late, and that lateness is
//!   the generator's, not the cluster's. Keep each client's rate well below 1,000/s (add
//!   clients for more), or the timer itself keeps the clients behind. Slots that come due
//!   after the end while a client is behind are not sent: `open_loop.intended` against
//!   `open_loop.sent` shows how far behind the run fell.
//! - Only requests whose (actual or intended) send time falls after the warm-up are counted;
//!   the measured time runs from the end of the warm-up to the last reply.
//! - Latencies go into HDR histograms (nanoseconds, 3 significant digits), one per client and
//!   kind of request, merged at the end.
//! - A failed request (error reply, timeout, broken connection, no master) is counted by kind
//!   and the client goes on; a run in which no request succeeded fails (exit code 2). SIGINT
//!   or SIGTERM ends the run early and reports what was measured (`interrupted: true`).
//!
//! # The JSON object (schema `rarakoon-bench/1`)
//! Fields (see [`report::Report`]; new fields may be added, none renamed or removed without a
//! new schema name): `schema`, `workload`, `mode` (`closed`/`open`), `latency_from`
//! (`send`/`intended_send`), `consistency`, `at_least_index`, `target` (`master` or a node
//! name), `local_nodes`, `clients`, `connections`, `key_size`, `value_size`, `keys`,
//! `read_ratio`, `sequence_size`, `range_size` (null unless the workload uses them),
//! `warmup_secs`, `duration_secs`, `elapsed_secs`, `interrupted`, `ops`, `ops_per_sec`,
//! `latency_us` (`min`, `mean`, `p50`, `p90`, `p99`, `p999`, `max`, microseconds; null when
//! nothing succeeded), `by_op` (per request kind: `ops`, `ops_per_sec`, `latency_us`),
//! `errors`, `errors_by_kind` (`E_NOT_MASTER`, ... for error replies; `timeout`,
//! `connection_lost`, `connect_failed`), `open_loop` (`target_rate`, `intended`, `sent`; null
//! in closed loop).

mod connection;
mod report;
mod throwaway;
mod workload;

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use rarakoon_client::{Consistency, Request, Sequence};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::cli::{BenchArgs, BenchConsistency, Workload};
use crate::exit;
use crate::logging::LogFormat;
use crate::signals::StopSignals;
use crate::target::ClusterTarget;
use connection::{Connection, Endpoint};
use report::{Report, RunFacts, Tally};
use throwaway::Throwaway;
use workload::{KeySpace, Rng, Shape};

/// Sets per prefill sequence.
const PREFILL_BATCH: u64 = 1000;
/// The largest key space the bench prefills.
const MAX_PREFILL_KEYS: u64 = 10_000_000;
/// The largest value the bench sends.
const MAX_VALUE_SIZE: usize = 64 * 1024 * 1024;

/// Parses `500ms`, `10s`, `1.5s`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (try 500ms, 10s, 2m)"))?;
    let secs = value * scale;
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("`{text}` is not a duration between 0 and 24 hours"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("`{text}`: {e}"))
}

/// The checked settings of a run.
#[derive(Debug)]
struct Plan {
    shape: Shape,
    clients: u32,
    connections: u32,
    rate: Option<f64>,
    warmup: Duration,
    duration: Duration,
    seed: u64,
    json: bool,
}

impl Plan {
    fn from_args(args: &BenchArgs) -> anyhow::Result<Plan> {
        let clients = args.clients;
        let connections = args.connections.unwrap_or(clients);
        if connections > clients {
            bail!("--connections {connections} is more than --clients {clients}");
        }
        if args.duration.is_zero() {
            bail!("--duration must be more than 0");
        }
        if let Some(rate) = args.rate
            && !(rate.is_finite() && (0.001..=1e9).contains(&rate))
        {
            bail!("--rate must be between 0.001 and 1e9 requests per second, not {rate}");
        }
        if !(0.0..=1.0).contains(&args.read_ratio) {
            bail!(
                "--read-ratio must be between 0 and 1, not {}",
                args.read_ratio
            );
        }
        if args.value_size > MAX_VALUE_SIZE {
            bail!("--value-size must be at most {MAX_VALUE_SIZE}");
        }
        if args.sequence_size == 0 || args.sequence_size > 100_000 {
            bail!("--sequence-size must be between 1 and 100000");
        }
        if args.range_size == 0 || args.range_size > i32::MAX as u32 {
            bail!("--range-size must be between 1 and {}", i32::MAX);
        }
        let keys = KeySpace::new(args.keys, args.key_size).map_err(anyhow::Error::msg)?;
        let shape = Shape {
            workload: args.workload,
            keys,
            value: workload::value(args.value_size, args.seed),
            consistency: match args.consistency {
                BenchConsistency::Consistent => Consistency::Consistent,
                BenchConsistency::Any => Consistency::NoGuarantees,
                // Replaced by the master's index after the prefill.
                BenchConsistency::AtLeast => Consistency::AtLeast(0),
            },
            read_ratio: args.read_ratio,
            sequence_size: args.sequence_size,
            range_size: args.range_size,
        };
        if shape.needs_prefill() && keys.count() > MAX_PREFILL_KEYS {
            bail!(
                "--keys {} is too many to prefill for the {} workload (at most {MAX_PREFILL_KEYS})",
                keys.count(),
                workload_name(args.workload)
            );
        }
        Ok(Plan {
            shape,
            clients,
            connections,
            rate: args.rate,
            warmup: args.warmup,
            duration: args.duration,
            seed: args.seed,
            json: args.json,
        })
    }
}

fn workload_name(w: Workload) -> &'static str {
    match w {
        Workload::Set => "set",
        Workload::Get => "get",
        Workload::Mixed => "mixed",
        Workload::TestAndSet => "test-and-set",
        Workload::Sequence => "sequence",
        Workload::Range => "range",
        Workload::Prefix => "prefix",
        Workload::Connect => "connect",
    }
}

fn consistency_name(c: BenchConsistency) -> &'static str {
    match c {
        BenchConsistency::Consistent => "consistent",
        BenchConsistency::Any => "any",
        BenchConsistency::AtLeast => "at-least",
    }
}

/// Runs `bench`; returns the exit code.
pub async fn run(args: BenchArgs, log_format: LogFormat) -> anyhow::Result<u8> {
    let mut plan = Plan::from_args(&args)?;
    if !(args.target.timeout_secs > 0.0 && args.target.timeout_secs.is_finite()) {
        bail!("--timeout-secs must be positive");
    }
    let mut signals = StopSignals::install().context("cannot install signal handlers")?;
    let (target, cluster) = if args.local {
        progress_note(&format!(
            "starting a throwaway {}-node cluster",
            args.local_nodes
        ));
        let cluster =
            Throwaway::start(args.local_nodes, args.tls, log_format, &mut signals).await?;
        let target = ClusterTarget {
            cluster_id: cluster.config.cluster.id.clone(),
            nodes: cluster
                .config
                .nodes
                .iter()
                .map(|n| (n.name.clone(), n.client_socket_address()))
                .collect(),
            timeout: Duration::from_secs_f64(args.target.timeout_secs),
            find_master_for: cluster.find_master_for(),
            tls: crate::tls::config_settings(&cluster.config)?,
        };
        (target, Some(cluster))
    } else {
        (ClusterTarget::resolve(&args.target)?, None)
    };
    let facts = RunFacts {
        workload: workload_name(args.workload).to_owned(),
        consistency: consistency_name(args.consistency).to_owned(),
        at_least_index: None,
        target: args.node.clone().unwrap_or_else(|| "master".to_owned()),
        local_nodes: args.local.then_some(args.local_nodes),
        clients: plan.clients,
        connections: plan.connections,
        key_size: args.key_size,
        value_size: args.value_size,
        keys: args.keys,
        read_ratio: (args.workload == Workload::Mixed).then_some(args.read_ratio),
        sequence_size: (args.workload == Workload::Sequence).then_some(args.sequence_size),
        range_size: matches!(args.workload, Workload::Range | Workload::Prefix)
            .then_some(args.range_size),
        warmup: plan.warmup,
        duration: plan.duration,
        rate: plan.rate,
    };
    let outcome = measure(
        &mut plan,
        facts,
        &target,
        args.node.as_deref(),
        &mut signals,
    )
    .await;
    if let Some(cluster) = cluster {
        cluster.stop().await;
    }
    let report = outcome?;
    if let Some(open) = &report.open_loop
        && report.ops == 0
        && report.errors == 0
        && open.sent == 0
    {
        bail!(
            "the clients never caught up with --rate {}: none of the {} requests scheduled \
             after the warm-up was sent before the end; lower --rate or add --clients",
            open.target_rate,
            open.intended
        );
    }
    if report.ops == 0 {
        let kinds: Vec<String> = report
            .errors_by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        bail!(
            "no request succeeded in {:.2} s ({} failed: {})",
            report.elapsed_secs,
            report.errors,
            if kinds.is_empty() {
                "none was answered".to_owned()
            } else {
                kinds.join(", ")
            }
        );
    }
    if plan.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(exit::OK)
}

/// A line on stderr, only for a person watching a terminal.
fn progress_note(text: &str) {
    if std::io::stderr().is_terminal() {
        eprintln!("{text}");
    }
}

/// Everything after the cluster is there: wait for a master, prefill, load, report.
async fn measure(
    plan: &mut Plan,
    mut facts: RunFacts,
    target: &ClusterTarget,
    node: Option<&str>,
    signals: &mut StopSignals,
) -> anyhow::Result<Report> {
    let settings = Arc::new(connection::Settings {
        cluster_id: target.cluster_id.clone(),
        nodes: target.nodes.clone(),
        timeout: target.timeout,
        tls: target
            .nodes
            .iter()
            .map(|(name, _)| Ok((name.clone(), target.direct_tls(name)?)))
            .collect::<anyhow::Result<_>>()?,
    });
    let endpoint = match node {
        Some(name) => {
            let (name, addr) = target.node(Some(name))?;
            Endpoint::Node(name, addr)
        }
        None => Endpoint::Master,
    };
    if matches!(endpoint, Endpoint::Master) || plan.shape.needs_prefill() {
        tokio::select! {
            found = wait_for_master(&settings, target.find_master_for) => { found?; }
            signal = signals.recv() => bail!("{signal} received while looking for the master"),
        }
    }
    if plan.shape.needs_prefill() {
        let client = target.client()?;
        progress_note(&format!("prefilling {} keys", plan.shape.keys.count()));
        tokio::select! {
            done = prefill(&client, &plan.shape) => done?,
            signal = signals.recv() => bail!("{signal} received during the prefill"),
        }
        if let Consistency::AtLeast(_) = plan.shape.consistency {
            let index = match client
                .get_txid()
                .await
                .context("cannot read the master's index")?
            {
                Consistency::AtLeast(i) => i,
                _ => 0,
            };
            plan.shape.consistency = Consistency::AtLeast(index);
            facts.at_least_index = Some(index);
        }
    } else if let Consistency::AtLeast(_) = plan.shape.consistency {
        // Nothing was prefilled: any node that applied anything qualifies.
        facts.at_least_index = Some(0);
    }

    // Connection setup is measured against one node, found once: a master lookup per
    // connection would add its own round trips.
    let fresh = if plan.shape.workload == crate::cli::Workload::Connect {
        let endpoint = match &endpoint {
            Endpoint::Master => {
                let (name, addr) = connection::find_master(&settings)
                    .await
                    .map_err(|why| anyhow::anyhow!("no master: {why}"))?;
                Endpoint::Node(name, addr)
            }
            node => node.clone(),
        };
        Some((settings.clone(), endpoint))
    } else {
        None
    };
    let per_connection = plan.clients.div_ceil(plan.connections) as usize;
    let connections: Vec<Connection> = (0..plan.connections)
        .map(|_| Connection::spawn(settings.clone(), endpoint.clone(), per_connection))
        .collect();
    // Open every connection before the clock starts, so no latency includes a connect.
    let mut opening = JoinSet::new();
    for (i, c) in connections.iter().enumerate() {
        let c = c.clone();
        opening.spawn(async move { (i, c.call(Request::WhoMaster).await) });
    }
    while let Some(opened) = opening.join_next().await {
        let (i, result) = opened.context("a connection check failed")?;
        if let Err(failure) = result {
            bail!("cannot open connection {i}: {failure}");
        }
    }

    let completed = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let start = Instant::now();
    let clock = Clock {
        measure_from: start + plan.warmup,
        end: start + plan.warmup + plan.duration,
    };
    let shape = Arc::new(plan.shape.clone());
    let mut clients = JoinSet::new();
    for c in 0..plan.clients {
        let client = Client {
            conn: connections[(c % plan.connections) as usize].clone(),
            fresh: fresh.clone(),
            shape: shape.clone(),
            rng: Rng::new(plan.seed, u64::from(c)),
            clock,
            stop: stop_rx.clone(),
            completed: completed.clone(),
        };
        match plan.rate {
            None => clients.spawn(client.closed_loop()),
            Some(rate) => {
                let interval = f64::from(plan.clients) / rate;
                let first = start
                    + Duration::from_secs_f64(interval * f64::from(c) / f64::from(plan.clients));
                clients.spawn(client.open_loop(first, interval))
            }
        };
    }
    drop(connections);
    let bar = Progress::start(plan.warmup, plan.duration, completed.clone());

    let mut interrupted_at = None;
    let mut outcomes = Vec::new();
    loop {
        tokio::select! {
            joined = clients.join_next() => match joined {
                Some(outcome) => outcomes.push(outcome.context("a bench client failed")?),
                None => break,
            },
            _ = signals.recv(), if interrupted_at.is_none() => {
                interrupted_at = Some(Instant::now());
                let _ = stop_tx.send(true);
            }
        }
    }
    bar.finish();

    let mut tally = Tally::new();
    let mut last_reply = clock.measure_from;
    let mut sent = 0;
    for outcome in outcomes {
        tally.merge(outcome.tally)?;
        last_reply = last_reply.max(outcome.finished);
        sent += outcome.sent;
    }
    let elapsed = last_reply.saturating_duration_since(clock.measure_from);
    let open_loop = plan.rate.map(|rate| {
        let window_end = interrupted_at.map_or(clock.end, |t| t.min(clock.end));
        let interval = f64::from(plan.clients) / rate;
        let intended = (0..plan.clients)
            .map(|c| {
                let offset = interval * f64::from(c) / f64::from(plan.clients);
                scheduled(
                    offset,
                    interval,
                    plan.warmup.as_secs_f64(),
                    window_end.saturating_duration_since(start).as_secs_f64(),
                )
            })
            .sum();
        (intended, sent)
    });
    Ok(Report::new(
        &facts,
        &tally,
        elapsed,
        interrupted_at.is_some(),
        open_loop,
    ))
}

/// How many `offset + k * interval` (k = 0, 1, ...) fall in `[from, to)` (seconds).
fn scheduled(offset: f64, interval: f64, from: f64, to: f64) -> u64 {
    if to <= from || interval <= 0.0 {
        return 0;
    }
    // The first k with offset + k*interval >= x.
    let first_at_or_after = |x: f64| ((x - offset) / interval).ceil().max(0.0);
    (first_at_or_after(to) - first_at_or_after(from)).max(0.0) as u64
}

/// Waits until a master is confirmed, for at most `patience` (at least a second).
async fn wait_for_master(
    settings: &connection::Settings,
    patience: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + patience.max(Duration::from_secs(1));
    loop {
        match connection::find_master(settings).await {
            Ok(_) => return Ok(()),
            Err(why) if Instant::now() >= deadline => {
                bail!(
                    "no master found within {:.1} s: {why}",
                    patience.as_secs_f64()
                )
            }
            // Polling pause between rounds of questions; the answer, not the pause, ends it.
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Writes every key of the key space with the workload's value.
async fn prefill(client: &rarakoon_client::Client, shape: &Shape) -> anyhow::Result<()> {
    let count = shape.keys.count();
    let mut from = 0;
    while from < count {
        let to = (from + PREFILL_BATCH).min(count);
        let mut attempt = 0;
        loop {
            let mut sequence = Sequence::new();
            for n in from..to {
                sequence = sequence.set(shape.keys.key(n), shape.value.clone());
            }
            // Setting the same values again is harmless, so any failure is retried a few times
            // (an election on a loaded machine); a lasting one fails the run.
            match client.sequence(sequence).await {
                Ok(()) => break,
                Err(e) if attempt >= 5 => {
                    return Err(e).context(format!("cannot prefill keys {from}..{to}"));
                }
                Err(e) => {
                    tracing::debug!("prefill of keys {from}..{to} failed ({e}); retrying");
                    attempt += 1;
                }
            }
        }
        from = to;
    }
    Ok(())
}

/// The run's time line.
#[derive(Debug, Clone, Copy)]
struct Clock {
    /// The end of the warm-up.
    measure_from: Instant,
    /// No request is sent (closed loop) or scheduled (open loop) from here on.
    end: Instant,
}

/// One bench client: one request in flight at a time.
struct Client {
    conn: Connection,
    /// The `connect` workload: every request on a new connection to this endpoint.
    fresh: Option<(Arc<connection::Settings>, Endpoint)>,
    shape: Arc<Shape>,
    rng: Rng,
    clock: Clock,
    stop: watch::Receiver<bool>,
    completed: Arc<AtomicU64>,
}

/// What a client measured.
struct ClientOutcome {
    tally: Tally,
    /// Requests sent whose send time (intended, in open loop) was in the measured window.
    sent: u64,
    /// When its last reply came.
    finished: Instant,
}

impl Client {
    async fn call(&self, request: Request) -> Result<rarakoon_client::Reply, connection::Failure> {
        match &self.fresh {
            Some((settings, endpoint)) => connection::call_fresh(settings, endpoint, request).await,
            None => self.conn.call(request).await,
        }
    }

    async fn closed_loop(mut self) -> ClientOutcome {
        let mut tally = Tally::new();
        let mut sent = 0;
        let mut finished = Instant::now();
        while !*self.stop.borrow() && Instant::now() < self.clock.end {
            let (op, request) = self.shape.next(&mut self.rng);
            let started = Instant::now();
            let result = self.call(request).await;
            finished = Instant::now();
            if started >= self.clock.measure_from {
                sent += 1;
                record(&mut tally, op, finished - started, result);
            }
            self.completed.fetch_add(1, Ordering::Relaxed);
        }
        ClientOutcome {
            tally,
            sent,
            finished,
        }
    }

    async fn open_loop(mut self, first: Instant, interval_secs: f64) -> ClientOutcome {
        let mut tally = Tally::new();
        let mut sent = 0;
        let mut finished = Instant::now();
        for k in 0u64.. {
            let intended = first + Duration::from_secs_f64(interval_secs * k as f64);
            if intended >= self.clock.end || *self.stop.borrow() {
                break;
            }
            let now = Instant::now();
            // Idle at the slot: wait for it, and count from the actual send, so the timer's
            // lateness (the generator's, not the cluster's) is not counted. Still busy with
            // the previous request at the slot: send at once and count from the slot, so the
            // time the cluster kept this request waiting is counted.
            let counted_from = if intended > now {
                tokio::select! {
                    () = tokio::time::sleep_until(intended) => {}
                    _ = self.stop.changed() => break,
                }
                Instant::now()
            } else if now >= self.clock.end {
                // Behind schedule at the end: the remaining slots are not sent.
                break;
            } else {
                intended
            };
            let (op, request) = self.shape.next(&mut self.rng);
            let result = self.call(request).await;
            finished = Instant::now();
            if intended >= self.clock.measure_from {
                sent += 1;
                record(&mut tally, op, finished - counted_from, result);
            }
            self.completed.fetch_add(1, Ordering::Relaxed);
        }
        ClientOutcome {
            tally,
            sent,
            finished,
        }
    }
}

fn record(
    tally: &mut Tally,
    op: workload::OpKind,
    latency: Duration,
    result: Result<rarakoon_client::Reply, connection::Failure>,
) {
    match result {
        Ok(Ok(_)) => tally.success(op, latency),
        Ok(Err(reply)) => tally.error(reply.code.name()),
        Err(failure) => tally.error(failure.kind()),
    }
}

/// The progress bar on stderr (only when stderr is a terminal).
struct Progress {
    bar: indicatif::ProgressBar,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    fn start(warmup: Duration, duration: Duration, completed: Arc<AtomicU64>) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress {
                bar: indicatif::ProgressBar::hidden(),
                ticker: None,
            };
        }
        let total = warmup + duration;
        let bar = indicatif::ProgressBar::new(total.as_millis() as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{bar:30}] {elapsed:>4} / {len_secs} {msg}",
        ) {
            let len_secs = format!("{:.0}s", total.as_secs_f64());
            bar.set_style(
                style
                    .with_key(
                        "len_secs",
                        move |_: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                            let _ = w.write_str(&len_secs);
                        },
                    )
                    .progress_chars("=> "),
            );
        }
        let ticking = bar.clone();
        let ticker = tokio::spawn(async move {
            let start = Instant::now();
            let mut last = (start, 0u64);
            let mut every = tokio::time::interval(Duration::from_millis(250));
            loop {
                every.tick().await;
                let now = Instant::now();
                let done = completed.load(Ordering::Relaxed);
                let rate = (done - last.1) as f64 / (now - last.0).as_secs_f64().max(1e-3);
                last = (now, done);
                let since = now - start;
                let phase = if since < warmup {
                    "warm-up"
                } else {
                    "measuring"
                };
                ticking.set_position(since.min(total).as_millis() as u64);
                ticking.set_message(format!("{phase}: {done} requests, {rate:.0}/s"));
            }
        });
        Progress {
            bar,
            ticker: Some(ticker),
        }
    }

    fn finish(self) {
        if let Some(t) = self.ticker {
            t.abort();
        }
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn durations_parse_in_every_unit_and_bad_ones_are_named() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("-0s"), Ok(Duration::ZERO));
        for bad in ["", "s", "2x", "-1s", "NaNs", "infs", "1e9s", "2 h"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains(bad.trim()), "{bad}: {err}");
        }
    }

    #[test]
    fn the_schedule_count_matches_a_walk_of_the_schedule() {
        for (offset, interval, from, to) in [
            (0.0, 0.1, 0.0, 1.0),
            (0.05, 0.1, 1.0, 3.0),
            (0.0, 1.0, 0.5, 0.6),
            (0.3, 0.25, 0.0, 0.3),
            (0.0, 0.001, 1.0, 3.0),
            (2.0, 0.5, 0.0, 1.0),
        ] {
            let walked = (0..100_000u64)
                .map(|k| offset + k as f64 * interval)
                .filter(|t| (from..to).contains(t))
                .count() as u64;
            let counted = scheduled(offset, interval, from, to);
            assert!(
                counted.abs_diff(walked) <= 1,
                "{offset} {interval} {from} {to}: {counted} vs {walked}"
            );
        }
        assert_eq!(scheduled(0.0, 0.1, 1.0, 1.0), 0);
        assert_eq!(scheduled(0.0, 0.0, 0.0, 1.0), 0);
    }
}
