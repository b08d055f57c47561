//! The Rust client against a real single node over loopback (the node's own WAL, fsync and
//! store, in a temp dir):
//! - `get_round_trip/{1,64}_clients`: GETs per second with 1 and 64 concurrent clients, each
//!   with its own connection, waiting for each reply;
//! - `set_pipelined/...`: SETs per second with 64 requests in flight in total, as 16
//!   connections with 4 pipelined on each, or 64 connections with one each; and 16
//!   connections with one each, for the difference pipelining makes at the same connection
//!   count.
//!
//! `cargo bench -p rarakoon-node --bench client_round_trip -- --measurement-time 5 --warm-up-time 1`
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rarakoon_client::{Client, ClientCodec, Limits, Prologue, Request};
use rarakoon_node::Node;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
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

criterion_group!(benches, bench);
criterion_main!(benches);
