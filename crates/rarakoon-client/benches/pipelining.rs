//! Writes per second through the listener when several clients share a connection and
//! pipeline (issue 13: 64 clients on 16 connections), against the sequential listener in the
//! same run. The handler models the node's group commit: a write is queued when it starts;
//! a committer thread takes everything queued, "syncs" for 100 µs, applies the batch and
//! answers it. With one request at a time per connection a batch holds at most one write per
//! connection; with pipelining it holds every write in flight. The handler does no store
//! semantics (it answers every `set` with success and refuses anything else): what is
//! measured is the listener. The same workloads against a real node are rarakoon-node's
//! `client_round_trip` bench.
//!
//! `cargo bench -p rarakoon-client --bench pipelining -- --measurement-time 5 --warm-up-time 1`
//! Variants (all with 64 requests in flight in total):
//! - `16_connections_x4/pipelined`: 16 connections, 4 requests in flight on each;
//! - `16_connections_x4/sequential`: the same clients, the handler asking for one request at
//!   a time per connection (every request `Admission::Exclusive`: the listener before
//!   pipelining);
//! - `64_connections_x1/pipelined`: 64 connections, one request in flight on each.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rarakoon_client::listener::{
    Admission, ConnectionInfo, Handler, Listener, ListenerConfig, Outcome,
};
use rarakoon_client::{
    ClientCodec, ErrorCode, ErrorReply, Limits, Prologue, Reply, Request, Response,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_util::codec::{Decoder, Encoder};

type Queued = (Request, oneshot::Sender<Outcome>);

/// The bench sends only `set`s: each is answered with success, nothing is stored.
fn answer(request: &Request) -> Reply {
    match request {
        Request::Set { .. } => Ok(Response::Set),
        other => Err(ErrorReply::new(
            ErrorCode::UnknownFailure,
            format!("the bench does not answer {}", other.opcode().name()),
        )),
    }
}

struct GroupCommit {
    queue: mpsc::Sender<Queued>,
    sequential: bool,
}

impl GroupCommit {
    fn new(sequential: bool) -> Self {
        let (queue, rx) = mpsc::channel::<Queued>();
        std::thread::spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                batch.extend(rx.try_iter());
                std::thread::sleep(Duration::from_micros(100));
                for (request, reply) in batch {
                    let _ = reply.send(Outcome::new(answer(&request)));
                }
            }
        });
        GroupCommit { queue, sequential }
    }
}

impl Handler for GroupCommit {
    async fn handle(&self, _c: &ConnectionInfo, request: Request) -> Outcome {
        if Admission::of(&request) != Admission::Write {
            return Outcome::new(answer(&request));
        }
        let (tx, rx) = oneshot::channel();
        if self.queue.send((request, tx)).is_err() {
            return Outcome::new(Err(rarakoon_client::ErrorReply::going_down()));
        }
        rx.await
            .unwrap_or_else(|_| Outcome::new(Err(rarakoon_client::ErrorReply::going_down())))
    }

    fn admission(&self, request: &Request) -> Admission {
        if self.sequential {
            Admission::Exclusive
        } else {
            Admission::of(request)
        }
    }
}

/// One connection keeping `window` sets in flight until it has had `count` answers.
async fn drive(addr: std::net::SocketAddr, window: usize, count: u64, id: usize) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let mut codec = ClientCodec::new(Limits::default());
    let mut out = BytesMut::new();
    codec
        .encode(
            &Prologue {
                cluster_id: Bytes::from_static(b"arakoon"),
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
    let mut group = c.benchmark_group("set_group_commit");
    for (name, connections, window, sequential) in [
        ("16_connections_x4/pipelined", 16usize, 4usize, false),
        ("16_connections_x4/sequential", 16, 4, true),
        ("64_connections_x1/pipelined", 64, 1, false),
    ] {
        let listener = runtime.block_on(async {
            Listener::bind(
                "127.0.0.1:0".parse().unwrap(),
                ListenerConfig::new("arakoon"),
                Arc::new(GroupCommit::new(sequential)),
            )
            .await
            .unwrap()
        });
        let addr = listener.local_addr();
        group.throughput(Throughput::Elements((connections * window) as u64));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async move {
                    // `iters` rounds of `window` writes on every connection.
                    let per_connection = iters * window as u64;
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..connections)
                        .map(|id| tokio::spawn(drive(addr, window, per_connection, id)))
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                    start.elapsed()
                })
            })
        });
        runtime.block_on(listener.shutdown());
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
