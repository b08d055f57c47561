//! A small closed-loop load generator: N clients, each sending its next request as soon as the
//! previous one is answered, for a fixed time; prints ops/s and latency percentiles.
//!
//! ```sh
//! rarakoon-bin local &                       # a 3-node cluster on 127.0.0.1
//! cargo run --release -p rarakoon-bin --example load -- --clients 1 --op set
//! cargo run --release -p rarakoon-bin --example load -- --clients 1 --op get
//! cargo run --release -p rarakoon-bin --example load -- --clients 64 --op set
//! ```
//! Options: `--clients N` (1), `--seconds S` (10), `--op set|get` (set), `--value-size B` (100; keys are 16 B, the brief's workload),
//! `--config FILE` (default: the `local` cluster's config), `--keys K` (10000).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rarakoon_client::{Client, ClientConfig};
use rarakoon_node::ClusterConfig;

struct Options {
    clients: usize,
    seconds: f64,
    op: String,
    value_size: usize,
    config: PathBuf,
    keys: usize,
}

fn options() -> Options {
    let mut o = Options {
        clients: 1,
        seconds: 10.0,
        op: "set".into(),
        value_size: 100,
        config: default_config(),
        keys: 10_000,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < args.len() {
        let v = &args[i + 1];
        match args[i].as_str() {
            "--clients" => o.clients = v.parse().expect("--clients N"),
            "--seconds" => o.seconds = v.parse().expect("--seconds S"),
            "--op" => o.op = v.clone(),
            "--value-size" => o.value_size = v.parse().expect("--value-size B"),
            "--config" => o.config = PathBuf::from(v),
            "--keys" => o.keys = v.parse().expect("--keys K"),
            other => panic!("unknown option {other}"),
        }
        i += 2;
    }
    o
}

fn default_config() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(|x| PathBuf::from(x).join("rarakoon/local"))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share/rarakoon/local"))
        })
        .unwrap_or_else(|| PathBuf::from(".rarakoon-local"));
    base.join("cluster.toml")
}

fn client(config: &ClusterConfig) -> Client {
    let mut c = ClientConfig::new(config.cluster.id.clone());
    for n in &config.nodes {
        c = c.node(n.name.clone(), n.client_socket_address());
    }
    c.max_attempts = 20;
    Client::new(c).unwrap()
}

#[tokio::main]
async fn main() {
    let o = options();
    let config = ClusterConfig::load(&o.config).expect("cluster config");
    let value = vec![b'v'; o.value_size];
    // Make sure the keys a `get` run reads exist.
    let warm = client(&config);
    if o.op == "get" {
        for k in 0..o.keys.min(1000) {
            warm.set(format!("bench/{k:010}"), value.clone())
                .await
                .unwrap();
        }
    }
    warm.set("bench/warmup", "x").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs_f64(o.seconds);
    let mut tasks = Vec::new();
    for c in 0..o.clients {
        let client = client(&config);
        let op = o.op.clone();
        let value = value.clone();
        let keys = if op == "get" {
            o.keys.min(1000)
        } else {
            o.keys
        };
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let mut i = c;
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let key = format!("bench/{:010}", i % keys);
                i += 7919;
                let start = Instant::now();
                let ok = if op == "get" {
                    client.get(key).await.is_ok()
                } else {
                    client.set(key, value.clone()).await.is_ok()
                };
                let us = start.elapsed().as_micros() as u64;
                if ok {
                    hist.record(us.max(1)).unwrap();
                } else {
                    errors += 1;
                }
            }
            (hist, errors)
        }));
    }
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    let mut errors = 0;
    for t in tasks {
        let (h, e) = t.await.unwrap();
        total.add(h).unwrap();
        errors += e;
    }
    let ops = total.len() as f64 / o.seconds;
    println!(
        "{} clients, {} {}-byte {}s for {} s: {:.0} ops/s, p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms, {} errors",
        o.clients,
        total.len(),
        o.value_size,
        o.op,
        o.seconds,
        ops,
        total.value_at_quantile(0.5) as f64 / 1000.0,
        total.value_at_quantile(0.99) as f64 / 1000.0,
        total.value_at_quantile(0.999) as f64 / 1000.0,
        total.max() as f64 / 1000.0,
        errors
    );
}
