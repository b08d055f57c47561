//! The Rust client against a real single node over loopback (the node's own WAL, fsync and
//! store, in a temp dir):
//! - `get_round_trip/{1,64}_clients`: GETs per second with 1 and 64 concurrent clients, each
//!   with its own connection, waiting for each reply;
//! - `set_pipelined/...`: SETs per second with 64 requests in flight in total, as 16
//!   connections with 4 pipelined on each, or 64 connections with one each; and 16
//!   connections with one each, for the difference pipelining makes at the same connection
//!   count;
//! - first, before those, the floor report (`floor:` lines): the single-client durable set's
//!   round trip against a raw baseline measured in the same run, interleaved sample by sample
//!   so both see the same machine load: a raw fsync loop (a 128-byte append + fdatasync to a
//!   file in the nodes' temp dir) and a raw TCP echo on loopback (TCP_NODELAY, 32-byte
//!   frames). It prints the p50/p99 of each and the ratios of the set's p50 to its floor:
//!   fdatasync + 1 RTT for the single node, fdatasync + 2 RTT for a 3-node cluster (client to
//!   master, master to a slave; the master's own fsync runs in parallel with the slave's). No
//!   assertion: it is a report (`FLOOR_ROUNDS` sets the sample count, default 2000).
//!
//! `cargo bench -p rarakoon-node --bench client_round_trip -- --measurement-time 5 --warm-up-time 1`
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group};
use rarakoon_client::{Client, ClientCodec, Limits, Prologue, Request};
use rarakoon_node::Node;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Decoder, Encoder};

/// One connection keeping `window` sets in flight until it has had `count` answers.
async fn drive(addr: std::net::SocketAddr, cluster: Bytes, window: usize, count: u64, id: usize) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut codec = ClientCodec::new(Limits::default());
    let mut out = BytesMut::new();
    codec
        .encode(
            &Prologue {
                cluster_id: cluster,
            },
            &mut out,
        )
        .unwrap();
    let set = |i: u64| Request::Set {
        key: Bytes::from(format!("c{id:03}k{:012}", i % 1000)),
        value: Bytes::from(vec![b'v'; 100]),
    };
    let mut sent = 0u64;
    while sent < count.min(window as u64) {
        codec.encode(&set(sent), &mut out).unwrap();
        sent += 1;
    }
    stream.write_all(&out).await.unwrap();
    out.clear();
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut answered = 0u64;
    while answered < count {
        while let Some((_, reply)) = codec.decode(&mut input).unwrap() {
            assert!(reply.is_ok(), "{reply:?}");
            answered += 1;
            if sent < count {
                codec.encode(&set(sent), &mut out).unwrap();
                sent += 1;
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await.unwrap();
            out.clear();
        }
        if answered < count {
            assert!(stream.read_buf(&mut input).await.unwrap() > 0);
        }
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = support::config(dir.path(), 1);
    let file = dir.path().join("c.toml");
    let node = runtime.block_on(async {
        let node = Node::start(&cfg, "n0", &file).await.unwrap();
        support::client(&cfg)
            .set("key", vec![b'v'; 64])
            .await
            .unwrap();
        node
    });
    let addr = node.client_addr();
    let cluster = Bytes::from(cfg.cluster.id.clone());

    let mut group = c.benchmark_group("get_round_trip");
    for clients in [1usize, 64] {
        let pool: Vec<Client> = (0..clients).map(|_| support::client(&cfg)).collect();
        // Connect every client before measuring.
        runtime.block_on(async {
            for client in &pool {
                client.get("key").await.unwrap();
            }
        });
        let pool = Arc::new(pool);
        group.throughput(Throughput::Elements(clients as u64));
        group.bench_function(format!("{clients}_clients"), |b| {
            b.iter_custom(|iters| {
                let pool = pool.clone();
                runtime.block_on(async move {
                    let start = Instant::now();
                    let mut tasks = Vec::with_capacity(pool.len());
                    for i in 0..pool.len() {
                        let pool = pool.clone();
                        tasks.push(tokio::spawn(async move {
                            for _ in 0..iters {
                                pool[i].get("key").await.unwrap();
                            }
                        }));
                    }
                    for t in tasks {
                        t.await.unwrap();
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("set_pipelined");
    for (name, connections, window) in [
        ("16_connections_x4", 16usize, 4usize),
        ("16_connections_x1", 16, 1),
        ("64_connections_x1", 64, 1),
    ] {
        group.throughput(Throughput::Elements((connections * window) as u64));
        let cluster = cluster.clone();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let cluster = cluster.clone();
                runtime.block_on(async move {
                    // `iters` rounds of `window` writes on every connection.
                    let per_connection = iters * window as u64;
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..connections)
                        .map(|id| {
                            tokio::spawn(drive(addr, cluster.clone(), window, per_connection, id))
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
    runtime.block_on(node.stop()).unwrap();
}

/// A loopback echo server of fixed-size frames (the raw TCP baseline).
async fn echo_server(frame: usize) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            s.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let mut buf = vec![0u8; frame];
                while s.read_exact(&mut buf).await.is_ok() {
                    if s.write_all(&buf).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    let rank = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The floor report (see the module docs): raw fdatasync, raw TCP echo, and the single-client
/// set on one node and on three, interleaved round by round.
fn floor_report() {
    let rounds = std::env::var("FLOOR_ROUNDS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(2000)
        .max(10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("one")).unwrap();
    std::fs::create_dir_all(dir.path().join("three")).unwrap();
    let one = support::config(&dir.path().join("one"), 1);
    let three = support::config(&dir.path().join("three"), 3);
    let (single, cluster, echo) = runtime.block_on(async {
        let single = Node::start(&one, "n0", &dir.path().join("one.toml"))
            .await
            .unwrap();
        let mut cluster = Vec::new();
        for n in &three.nodes {
            cluster.push(
                Node::start(&three, &n.name, &dir.path().join("three.toml"))
                    .await
                    .unwrap(),
            );
        }
        (single, cluster, echo_server(32).await)
    });
    let one_client = support::client(&one);
    let three_client = support::client(&three);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("raw-fsync.log"))
        .unwrap();
    let record = [0x5Au8; 128];
    let (mut fsync, mut rtt, mut set1, mut set3) = (vec![], vec![], vec![], vec![]);
    runtime.block_on(async {
        // Masters elected and connections open before any sample.
        one_client.set("warm", "up").await.unwrap();
        support::set_retrying(&three_client, "warm", "up").await;
        let mut echo = TcpStream::connect(echo).await.unwrap();
        echo.set_nodelay(true).unwrap();
        let mut frame = [7u8; 32];
        let value = vec![b'v'; 100];
        for i in 0..rounds {
            // The raw fsync runs on a blocking thread, as the node's storage thread does.
            let (f, took) = tokio::task::spawn_blocking(move || {
                let start = Instant::now();
                file.write_all(&record).unwrap();
                file.sync_data().unwrap();
                (file, start.elapsed())
            })
            .await
            .unwrap();
            file = f;
            fsync.push(took);
            let start = Instant::now();
            echo.write_all(&frame).await.unwrap();
            echo.read_exact(&mut frame).await.unwrap();
            rtt.push(start.elapsed());
            let key = format!("floor{:011}", i % 1000);
            let start = Instant::now();
            one_client.set(key.clone(), value.clone()).await.unwrap();
            set1.push(start.elapsed());
            let start = Instant::now();
            match three_client.set(key, value.clone()).await {
                Ok(()) => set3.push(start.elapsed()),
                // A lease lapse on a loaded machine: not a sample of the steady state.
                Err(rarakoon_client::Error::Indeterminate { .. }) => {}
                Err(e) => panic!("3-node set: {e}"),
            }
        }
    });
    let p = |v: &mut Vec<Duration>| (percentile(v, 0.5), percentile(v, 0.99));
    let ((f50, f99), (r50, r99), (s1_50, s1_99), (s3_50, s3_99)) =
        (p(&mut fsync), p(&mut rtt), p(&mut set1), p(&mut set3));
    println!("floor: {rounds} interleaved rounds (p50 / p99, microseconds)");
    println!(
        "floor: raw fdatasync of a 128-byte append  {:8.1} / {:8.1}",
        micros(f50),
        micros(f99)
    );
    println!(
        "floor: raw loopback TCP echo (RTT)         {:8.1} / {:8.1}",
        micros(r50),
        micros(r99)
    );
    let floor1 = micros(f50) + micros(r50);
    let floor3 = micros(f50) + 2.0 * micros(r50);
    println!(
        "floor: set, 1 client, 1 node               {:8.1} / {:8.1}   p50 / (fdatasync + 1 RTT) = {:.2}",
        micros(s1_50),
        micros(s1_99),
        micros(s1_50) / floor1
    );
    println!(
        "floor: set, 1 client, 3 nodes              {:8.1} / {:8.1}   p50 / (fdatasync + 2 RTT) = {:.2}",
        micros(s3_50),
        micros(s3_99),
        micros(s3_50) / floor3
    );
    runtime.block_on(async {
        single.stop().await.unwrap();
        for node in cluster {
            node.stop().await.unwrap();
        }
    });
}

criterion_group!(benches, bench);

fn main() {
    floor_report();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
