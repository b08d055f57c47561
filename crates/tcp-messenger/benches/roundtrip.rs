//! Round-trip latency (p50/p99) and one-way messages/s between two messengers on loopback,
//! next to a raw TCP baseline in the same run (length-prefixed 64-byte frames, TCP_NODELAY).
//!
//! Run: `cargo bench -p tcp-messenger --bench roundtrip` (ROUNDS / MESSAGES env vars override
//! the sample sizes). Prints both and the ratios.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hdrhistogram::Histogram;
use rkyv::{Archive, Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tcp_messenger::{BackoffConfig, Messenger, MessengerConfig, WireMessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};

const PAYLOAD: usize = 64;

#[derive(Archive, Serialize, Deserialize, Debug, Clone)]
struct Ping {
    seq: u64,
    data: Vec<u8>,
}
impl WireMessage for Ping {}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn read_frame(s: &mut (impl AsyncReadExt + Unpin), buf: &mut Vec<u8>) -> bool {
    let mut prefix = [0u8; 4];
    if s.read_exact(&mut prefix).await.is_err() {
        return false;
    }
    buf.resize(u32::from_le_bytes(prefix) as usize, 0);
    s.read_exact(buf).await.is_ok()
}

fn raw_frame() -> Vec<u8> {
    let mut f = (PAYLOAD as u32).to_le_bytes().to_vec();
    f.extend_from_slice(&[7u8; PAYLOAD]);
    f
}

async fn raw_echo_server() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            s.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut out = Vec::new();
                while read_frame(&mut s, &mut buf).await {
                    out.clear();
                    out.extend_from_slice(&(buf.len() as u32).to_le_bytes());
                    out.extend_from_slice(&buf);
                    if s.write_all(&out).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

async fn raw_rtt(rounds: u64) -> Histogram<u64> {
    let addr = raw_echo_server().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let frame = raw_frame();
    let mut buf = Vec::new();
    let mut h = Histogram::new(3).unwrap();
    for i in 0..rounds + rounds / 10 {
        let t = Instant::now();
        s.write_all(&frame).await.unwrap();
        assert!(read_frame(&mut s, &mut buf).await);
        if i >= rounds / 10 {
            h.record(t.elapsed().as_nanos() as u64).unwrap();
        }
    }
    h
}

async fn raw_throughput(messages: u64) -> f64 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut s = tokio::io::BufReader::with_capacity(64 * 1024, s);
        let mut buf = Vec::new();
        let mut n = 0;
        while n < messages && read_frame(&mut s, &mut buf).await {
            n += 1;
        }
        n
    });
    let t = Instant::now();
    let s = TcpStream::connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    let mut w = BufWriter::with_capacity(64 * 1024, s);
    let frame = raw_frame();
    for _ in 0..messages {
        w.write_all(&frame).await.unwrap();
    }
    w.flush().await.unwrap();
    assert_eq!(server.await.unwrap(), messages);
    messages as f64 / t.elapsed().as_secs_f64()
}

async fn pair(
    queue: usize,
) -> (
    Messenger<Ping>,
    tcp_messenger::Inbox<Ping>,
    Messenger<Ping>,
    tcp_messenger::Inbox<Ping>,
) {
    let la = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lb = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addrs: BTreeMap<String, _> = [
        ("a".to_owned(), la.local_addr().unwrap()),
        ("b".to_owned(), lb.local_addr().unwrap()),
    ]
    .into_iter()
    .collect();
    let cfg = |me: &str| {
        let peers = addrs
            .iter()
            .filter(|(n, _)| n.as_str() != me)
            .map(|(n, a)| (n.clone(), vec![*a]))
            .collect();
        let mut c = MessengerConfig::new(me, "bench", addrs[me], peers);
        c.queue_capacity = queue;
        c.backoff = BackoffConfig {
            initial: Duration::from_millis(1),
            ..BackoffConfig::default()
        };
        c
    };
    let (a, ai) = Messenger::start_with_listener(cfg("a"), la).unwrap();
    let (b, bi) = Messenger::start_with_listener(cfg("b"), lb).unwrap();
    a.wait_established("b", 1).await.unwrap();
    b.wait_established("a", 1).await.unwrap();
    (a, ai, b, bi)
}

async fn messenger_rtt(rounds: u64) -> Histogram<u64> {
    let (a, mut ai, b, mut bi) = pair(4096).await;
    let echo = tokio::spawn(async move {
        while let Some(m) = bi.recv().await {
            let _ = b.send(&m.from, &m.msg);
        }
    });
    let mut h = Histogram::new(3).unwrap();
    let ping = Ping {
        seq: 0,
        data: vec![7; PAYLOAD],
    };
    for i in 0..rounds + rounds / 10 {
        let t = Instant::now();
        a.send(
            "b",
            &Ping {
                seq: i,
                ..ping.clone()
            },
        )
        .unwrap();
        let back = ai.recv().await.unwrap();
        assert_eq!(back.msg.seq, i);
        if i >= rounds / 10 {
            h.record(t.elapsed().as_nanos() as u64).unwrap();
        }
    }
    a.shutdown().await;
    echo.abort();
    h
}

async fn messenger_throughput(messages: u64) -> (f64, u64) {
    let (a, _ai, b, mut bi) = pair(messages as usize).await;
    let counter = tokio::spawn(async move {
        let mut n = 0;
        let mut buf = Vec::with_capacity(1024);
        while n < messages {
            buf.clear();
            n += bi.recv_many(&mut buf, 1024).await as u64;
        }
        n
    });
    let ping = Ping {
        seq: 0,
        data: vec![7; PAYLOAD],
    };
    let t = Instant::now();
    for i in 0..messages {
        a.send(
            "b",
            &Ping {
                seq: i,
                ..ping.clone()
            },
        )
        .unwrap();
        if i % 1024 == 0 {
            // Let the writer run: a real core does other work between sends.
            tokio::task::yield_now().await;
        }
    }
    assert_eq!(counter.await.unwrap(), messages);
    let rate = messages as f64 / t.elapsed().as_secs_f64();
    let dropped = a.counters().dropped();
    a.shutdown().await;
    b.shutdown().await;
    (rate, dropped)
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn main() {
    let rounds = env("ROUNDS", 20_000);
    let messages = env("MESSAGES", 200_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let raw = raw_rtt(rounds).await;
        let msg = messenger_rtt(rounds).await;
        let raw_tp = raw_throughput(messages).await;
        let (msg_tp, dropped) = messenger_throughput(messages).await;
        println!("round trip, {PAYLOAD}-byte payload, {rounds} rounds (µs):");
        println!(
            "  raw tcp echo : p50 {:>7.1}  p99 {:>7.1}",
            us(raw.value_at_quantile(0.5)),
            us(raw.value_at_quantile(0.99))
        );
        println!(
            "  messenger    : p50 {:>7.1}  p99 {:>7.1}",
            us(msg.value_at_quantile(0.5)),
            us(msg.value_at_quantile(0.99))
        );
        println!(
            "  ratio        : p50 {:>7.2}x p99 {:>7.2}x",
            msg.value_at_quantile(0.5) as f64 / raw.value_at_quantile(0.5) as f64,
            msg.value_at_quantile(0.99) as f64 / raw.value_at_quantile(0.99) as f64
        );
        println!("one-way throughput, {messages} messages:");
        println!("  raw tcp      : {raw_tp:>12.0} msg/s");
        println!("  messenger    : {msg_tp:>12.0} msg/s (dropped {dropped})");
        println!("  ratio        : {:>12.2}x", msg_tp / raw_tp);
    });
}
