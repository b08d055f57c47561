//! Items per second through leaky-buffer next to tokio::sync::mpsc, in the same run:
//! one producer task and one consumer, and the consumer draining in batches (recv_many).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

const ITEMS: u64 = 100_000;
const CAPACITY: usize = 1024;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let mut group = c.benchmark_group("spsc_100k_items");
    group.throughput(Throughput::Elements(ITEMS));

    group.bench_function("leaky_buffer_recv", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (tx, mut rx) = leaky_buffer::channel::<u64>(CAPACITY);
                let producer = tokio::spawn(async move {
                    for i in 0..ITEMS {
                        // Keep every item (a lossless comparison with mpsc): yield when full.
                        let mut item = i;
                        while let Err(e) = tx.send(item) {
                            item = e.into_inner();
                            tokio::task::yield_now().await;
                        }
                    }
                });
                let mut sum = 0u64;
                while let Some(v) = rx.recv().await {
                    sum += v;
                }
                producer.await.unwrap();
                black_box(sum)
            })
        })
    });

    group.bench_function("leaky_buffer_recv_many", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (tx, mut rx) = leaky_buffer::channel::<u64>(CAPACITY);
                let producer = tokio::spawn(async move {
                    for i in 0..ITEMS {
                        let mut item = i;
                        while let Err(e) = tx.send(item) {
                            item = e.into_inner();
                            tokio::task::yield_now().await;
                        }
                    }
                });
                let mut sum = 0u64;
                let mut buf = Vec::with_capacity(256);
                while rx.recv_many(&mut buf, 256).await > 0 {
                    sum += buf.drain(..).sum::<u64>();
                }
                producer.await.unwrap();
                black_box(sum)
            })
        })
    });

    group.bench_function("tokio_mpsc_recv", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(CAPACITY);
                let producer = tokio::spawn(async move {
                    for i in 0..ITEMS {
                        tx.send(i).await.unwrap();
                    }
                });
                let mut sum = 0u64;
                while let Some(v) = rx.recv().await {
                    sum += v;
                }
                producer.await.unwrap();
                black_box(sum)
            })
        })
    });

    group.bench_function("tokio_mpsc_recv_many", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(CAPACITY);
                let producer = tokio::spawn(async move {
                    for i in 0..ITEMS {
                        tx.send(i).await.unwrap();
                    }
                });
                let mut sum = 0u64;
                let mut buf = Vec::with_capacity(256);
                while rx.recv_many(&mut buf, 256).await > 0 {
                    sum += buf.drain(..).sum::<u64>();
                }
                producer.await.unwrap();
                black_box(sum)
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
