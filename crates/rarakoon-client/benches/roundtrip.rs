//! Round trips per second of GET against the in-memory listener over loopback, with 1 and 64
//! concurrent clients (each client has its own connection and waits for each reply).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rarakoon_client::listener::{Listener, ListenerConfig};
use rarakoon_client::memory::MemoryHandler;
use rarakoon_client::{Client, ClientConfig};

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime.block_on(async {
        let handler = Arc::new(MemoryHandler::master("arakoon", "node_0"));
        Listener::bind(
            "127.0.0.1:0".parse().unwrap(),
            ListenerConfig::new("arakoon"),
            handler,
        )
        .await
        .unwrap()
    });
    let addr = listener.local_addr();
    let config = ClientConfig::new("arakoon").node("node_0", addr);
    runtime.block_on(async {
        let client = Client::new(config.clone()).unwrap();
        client.set("key", vec![b'v'; 64]).await.unwrap();
    });

    let mut group = c.benchmark_group("get_round_trip");
    for clients in [1usize, 64] {
        let pool: Vec<Client> = (0..clients)
            .map(|_| Client::new(config.clone()).unwrap())
            .collect();
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
    runtime.block_on(listener.shutdown());
}

criterion_group!(benches, bench);
criterion_main!(benches);
