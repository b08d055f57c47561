//! The metrics endpoint of real nodes: `/metrics` parsed with a Prometheus text parser, its
//! figures moving with the work done, and `/health` following whether a master is known.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use prometheus_parse::{Sample, Scrape, Value};
use support::{
    ClusterSpec, StopOnDrop, TestCluster, binary, http_get, runtime, set_retry, wait_for,
};

const WAIT: Duration = Duration::from_secs(60);

/// Every metric the node documents (counters and histograms by their sample names).
const DOCUMENTED: &[&str] = &[
    "rarakoon_role",
    "rarakoon_master_known",
    "rarakoon_master",
    "rarakoon_lease_remaining_seconds",
    "rarakoon_committed_index",
    "rarakoon_applied_index",
    "rarakoon_last_index",
    "rarakoon_requests_total",
    "rarakoon_request_duration_seconds",
    "rarakoon_wal_fsync_duration_seconds",
    "rarakoon_wal_fsync_batch_entries",
    "rarakoon_commit_batch_updates",
    "rarakoon_proposals_pending",
    "rarakoon_storage_jobs_waiting",
    "rarakoon_collapses_total",
    "rarakoon_collapse_duration_seconds",
    "rarakoon_snapshots_installed_total",
    "rarakoon_snapshot_install_duration_seconds",
    "rarakoon_snapshot_requests_served_total",
    "rarakoon_store_keys",
    "rarakoon_store_bytes",
    "rarakoon_client_connections",
    "rarakoon_client_request_bytes",
    "rarakoon_client_requests_in_flight",
    "rarakoon_peer_messages_sent_total",
    "rarakoon_peer_messages_dropped_total",
    "rarakoon_peer_messages_lost_total",
    "rarakoon_peer_queue_messages",
    "rarakoon_peer_connects_total",
    "rarakoon_peer_connect_failures_total",
    "rarakoon_peer_last_heard_seconds",
    "rarakoon_peer_messages_received_total",
];

fn metrics_addr(cluster: &TestCluster, name: &str) -> SocketAddr {
    let port = cluster.node(name).metrics_port.expect("metrics port");
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn scrape(addr: SocketAddr) -> Scrape {
    let (status, body) = http_get(addr, "/metrics").expect("metrics answer");
    assert_eq!(status, 200, "{body}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text")
}

/// The plain value of a counter, gauge or untyped sample (the parser reads the OpenMetrics
/// `_total` samples as untyped).
fn number(sample: &Sample) -> f64 {
    match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        Value::Histogram(_) | Value::Summary(_) => panic!("{} is not a number", sample.metric),
    }
}

/// The sum of `metric` over the samples whose labels include `labels`.
fn sum(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .map(number)
        .sum()
}

/// The observation count of histogram `metric` with `labels`.
fn histogram_count(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match &s.value {
            // The +Inf bucket holds every observation.
            Value::Histogram(buckets) => buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map_or(0.0, |b| b.count),
            _ => panic!("{} is not a histogram", s.metric),
        })
        .sum()
}

fn health(addr: SocketAddr) -> (u16, serde_json::Value) {
    let (status, body) = http_get(addr, "/health").expect("health answer");
    (status, serde_json::from_str(&body).expect("health is JSON"))
}

#[test]
fn a_running_cluster_serves_metrics_that_move_with_its_work() {
    let mut spec = ClusterSpec::new(3);
    spec.metrics = true;
    let mut cluster = TestCluster::new(&spec);
    cluster.start_all();
    let master = cluster.wait_master(&["n0", "n1", "n2"], WAIT);
    let addr = metrics_addr(&cluster, &master);

    let before = scrape(addr);
    let names: Vec<&str> = before.samples.iter().map(|s| s.metric.as_str()).collect();
    // A master has heard from a peer, and serves no snapshots or collapses yet: still, every
    // documented family but the per-label ones that need traffic is there.
    for metric in DOCUMENTED {
        let needs_traffic = matches!(
            *metric,
            "rarakoon_requests_total" | "rarakoon_request_duration_seconds"
        );
        assert!(
            needs_traffic || names.contains(metric),
            "{metric} missing from /metrics: {names:?}"
        );
    }
    assert_eq!(sum(&before, "rarakoon_role", &[("role", "master")]), 1.0);
    assert_eq!(sum(&before, "rarakoon_master", &[("node", &master)]), 1.0);
    assert_eq!(sum(&before, "rarakoon_master_known", &[]), 1.0);
    let committed_before = sum(&before, "rarakoon_committed_index", &[]);
    let sets_before = sum(&before, "rarakoon_requests_total", &[("opcode", "set")]);
    let fsyncs_before = histogram_count(&before, "rarakoon_wal_fsync_duration_seconds", &[]);

    const WRITES: usize = 20;
    let client = cluster.client(&["n0", "n1", "n2"]);
    runtime().block_on(async {
        for i in 0..WRITES {
            set_retry(&client, format!("key{i}"), format!("value{i}")).await;
        }
    });

    let after = wait_for("the master's committed index to grow", WAIT, || {
        let s = scrape(addr);
        (sum(&s, "rarakoon_committed_index", &[]) >= committed_before + WRITES as f64).then_some(s)
    });
    let ok_sets = sum(&after, "rarakoon_requests_total", &[("opcode", "set")]);
    assert!(
        ok_sets >= sets_before + WRITES as f64,
        "set count {sets_before} -> {ok_sets}"
    );
    assert!(
        histogram_count(
            &after,
            "rarakoon_request_duration_seconds",
            &[("opcode", "set")]
        ) >= WRITES as f64
    );
    assert!(
        histogram_count(&after, "rarakoon_wal_fsync_duration_seconds", &[]) > fsyncs_before,
        "no fsync was recorded"
    );
    assert!(histogram_count(&after, "rarakoon_commit_batch_updates", &[]) >= 1.0);
    assert!(sum(&after, "rarakoon_store_keys", &[]) >= WRITES as f64);
    assert!(sum(&after, "rarakoon_store_bytes", &[]) > 0.0);
    assert!(sum(&after, "rarakoon_applied_index", &[]) >= committed_before + WRITES as f64);
    assert!(sum(&after, "rarakoon_lease_remaining_seconds", &[]) >= 0.0);
    let peer = ["n0", "n1", "n2"]
        .into_iter()
        .find(|n| *n != master)
        .unwrap();
    assert!(
        sum(
            &after,
            "rarakoon_peer_messages_sent_total",
            &[("peer", peer)]
        ) > 0.0
    );
    assert!(sum(&after, "rarakoon_peer_connects_total", &[("peer", peer)]) >= 1.0);

    // Health: the master and, once it heard from the master, a slave are healthy.
    let (status, json) = health(addr);
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["role"], "master");
    assert_eq!(json["master"], master.as_str());
    assert!(json["committed_index"].as_u64().unwrap() >= WRITES as u64);
    let slave = metrics_addr(&cluster, peer);
    let json = wait_for("a slave to report the master", WAIT, || {
        let (status, json) = health(slave);
        (status == 200).then_some(json)
    });
    assert_eq!(json["role"], "slave");
    assert_eq!(json["master"], master.as_str());
    assert_eq!(json["node"], peer);
}

#[test]
fn a_node_without_a_quorum_is_unhealthy() {
    let mut spec = ClusterSpec::new(3);
    spec.metrics = true;
    let mut cluster = TestCluster::new(&spec);
    cluster.start("n0");
    let addr = metrics_addr(&cluster, "n0");
    let (status, json) = wait_for("n0's metrics endpoint", WAIT, || {
        http_get(addr, "/health")
            .map(|(status, body)| (status, serde_json::from_str::<serde_json::Value>(&body)))
    });
    assert_eq!(status, 503);
    let json = json.expect("health is JSON");
    assert_eq!(json["master"], serde_json::Value::Null);
    assert_ne!(json["role"], "master");
    assert_eq!(json["lease_remaining_secs"], 0.0);
    let metrics = scrape(addr);
    assert_eq!(sum(&metrics, "rarakoon_master_known", &[]), 0.0);
    assert_eq!(sum(&metrics, "rarakoon_role", &[("role", "master")]), 0.0);
    // The peers it cannot reach show up as failed connection attempts, never as connects.
    let failures = wait_for("failed connection attempts to show", WAIT, || {
        let s = scrape(addr);
        let f = sum(
            &s,
            "rarakoon_peer_connect_failures_total",
            &[("peer", "n1")],
        );
        (f > 0.0).then_some(s)
    });
    assert_eq!(
        sum(&failures, "rarakoon_peer_connects_total", &[("peer", "n1")]),
        0.0
    );
}

#[test]
fn local_prints_metrics_urls_that_answer() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary())
        .args(["local", "--nodes", "3", "--dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Stopped (with its nodes) even if the test fails half-way.
    let _child = StopOnDrop(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut urls = Vec::new();
    loop {
        let line = rx.recv_timeout(WAIT).expect("local's start-up lines");
        if let Some(rest) = line.split("metrics http://").nth(1) {
            let addr = rest.split('/').next().unwrap();
            urls.push(addr.parse::<SocketAddr>().unwrap());
        }
        if line.starts_with("Ready") {
            break;
        }
    }
    assert_eq!(urls.len(), 3, "one metrics URL per node");
    // Some node is master and says so.
    wait_for("a local node to report itself healthy master", WAIT, || {
        urls.iter().find_map(|&addr| {
            // A node may still be binding its endpoint: ask again.
            let (status, body) = http_get(addr, "/health")?;
            let json: serde_json::Value = serde_json::from_str(&body).ok()?;
            (status == 200 && json["role"] == "master").then_some(())
        })
    });
}
