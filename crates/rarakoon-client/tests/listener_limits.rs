//! Listeners a stranger can't exhaust: slowloris on the prologue and on a request, many idle
//! connections, huge declared lengths, many connections holding large partial requests
//! against a small budget, and a client that never reads its replies. Memory is measured
//! through the listener's counters ([`ListenerStats`]), time with tokio's paused clock, so
//! nothing depends on the wall clock or RSS; a legitimate client is served throughout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::Recorder;
use rarakoon_client::listener::{Listener, ListenerConfig, ListenerStats, StatsSnapshot};
use rarakoon_client::{
    ClientCodec, Consistency, Limits, Prologue, Reply, Request, Response, encode_reply,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::codec::{Decoder, Encoder};

const CLUSTER: &str = "arakoon";
/// Turns a hang into a failure; never reached when the listener works.
const SAFETY: Duration = Duration::from_secs(30);

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn prologue() -> Vec<u8> {
    let mut out = BytesMut::new();
    Prologue {
        cluster_id: b(CLUSTER),
    }
    .encode(&mut out);
    out.to_vec()
}

/// A `set` frame's first bytes, declaring a value of `len` bytes.
fn set_header(key: &[u8], len: u32) -> Vec<u8> {
    let mut out = vec![0x09, 0x00, 0xff, 0xb1];
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&len.to_le_bytes());
    out
}

async fn start(config: ListenerConfig) -> (Listener, Arc<Recorder>) {
    let handler = Arc::new(Recorder::new("node_0"));
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), config, handler.clone())
        .await
        .unwrap();
    (listener, handler)
}

/// A client that sends one request at a time and waits for its reply.
struct Legit {
    stream: TcpStream,
    codec: ClientCodec,
    input: BytesMut,
}

impl Legit {
    async fn connect(addr: SocketAddr) -> Legit {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(&prologue()).await.unwrap();
        Legit {
            stream,
            codec: ClientCodec::new(Limits::default()),
            input: BytesMut::new(),
        }
    }

    async fn call(&mut self, request: Request) -> Reply {
        let mut out = BytesMut::new();
        self.codec.encode(&request, &mut out).unwrap();
        self.stream.write_all(&out).await.unwrap();
        loop {
            if let Some((_, reply)) = self.codec.decode(&mut self.input).unwrap() {
                return reply;
            }
            assert!(
                read_some(&self.stream, &mut self.input).await.unwrap() > 0,
                "the legitimate client was closed"
            );
        }
    }

    /// A write and a read back, checked.
    async fn served(&mut self, i: usize) {
        let key = b(&format!("legit{i}"));
        assert_eq!(
            self.call(Request::Set {
                key: key.clone(),
                value: b("v"),
            })
            .await,
            Ok(Response::Set)
        );
        assert_eq!(
            self.call(Request::Get {
                consistency: Consistency::Consistent,
                key,
            })
            .await,
            Ok(Response::Get(b("v")))
        );
    }
}

/// Waits, yielding to the listener, until `cond` holds on the counters. (The safety net is
/// wall-clock time, as the tests that freeze tokio's clock could otherwise hang.)
async fn until(stats: &ListenerStats, what: &str, cond: impl Fn(&StatsSnapshot) -> bool) {
    let started = std::time::Instant::now();
    while !cond(&stats.snapshot()) {
        assert!(
            started.elapsed() < SAFETY,
            "never: {what}; stats {:?}",
            stats.snapshot()
        );
        tokio::task::yield_now().await;
    }
}

/// Keeps tokio's paused clock from jumping to the next timer whenever the runtime waits for
/// I/O (a blocking task in flight inhibits auto-advance): time then moves only when the test
/// calls `advance`, and I/O on loopback completes in zero virtual time.
struct Frozen(#[allow(dead_code)] std::sync::mpsc::Sender<()>);

fn freeze() -> Frozen {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    tokio::task::spawn_blocking(move || {
        let _ = rx.recv();
    });
    Frozen(tx)
}

/// Moves the paused clock and lets the listener act on what expired.
async fn advance(by: Duration) {
    tokio::time::advance(by).await;
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
}

/// Reads what is there, waiting (yielding) until something is; 0 at end of stream. The
/// safety net is wall-clock time: with tokio's clock frozen a plain read could hang.
async fn read_some(stream: &TcpStream, buf: &mut BytesMut) -> std::io::Result<usize> {
    let started = std::time::Instant::now();
    loop {
        buf.reserve(64 << 10);
        match stream.try_read_buf(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(started.elapsed() < SAFETY, "nothing to read, no close");
                tokio::task::yield_now().await;
            }
            other => return other,
        }
    }
}

/// Reads until the server closes; returns what it sent.
async fn closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = BytesMut::new();
    while let Ok(n) = read_some(stream, &mut out).await {
        if n == 0 {
            break;
        }
    }
    out.to_vec()
}

#[tokio::test(start_paused = true)]
async fn a_prologue_sent_one_byte_at_a_time_is_closed_by_the_prologue_timeout() {
    let _frozen = freeze();
    let (listener, _h) = start(ListenerConfig::new(CLUSTER)).await;
    let addr = listener.local_addr();
    let stats = listener.stats();
    let mut legit = Legit::connect(addr).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    until(&stats, "both connected", |s| s.connections == 2).await;
    let started = Instant::now();
    let bytes = prologue();
    let mut closed_after = None;
    // One byte a second, never the last one; the legitimate client works in between.
    for (i, byte) in bytes[..bytes.len() - 1].iter().enumerate() {
        if slow.write_all(&[*byte]).await.is_err() {
            break;
        }
        legit.served(i).await;
        advance(Duration::from_secs(1)).await;
        if stats.snapshot().closed_prologue_timeout == 1 {
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let closed_after = closed_after.expect("the slow prologue was never closed");
    assert!(
        closed_after >= Duration::from_secs(10) && closed_after <= Duration::from_secs(11),
        "closed after {closed_after:?}"
    );
    assert_eq!(closed(&mut slow).await, Vec::<u8>::new());
    legit.served(100).await;
    let s = stats.snapshot();
    assert_eq!((s.connections, s.closed_prologue_timeout), (1, 1));
    listener.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_request_sent_one_byte_at_a_time_is_closed_by_the_frame_timeout() {
    let _frozen = freeze();
    let (listener, handler) = start(ListenerConfig::new(CLUSTER)).await;
    let addr = listener.local_addr();
    let stats = listener.stats();
    let mut legit = Legit::connect(addr).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(&prologue()).await.unwrap();
    until(&stats, "both connected", |s| s.connections == 2).await;
    let frame = {
        let mut f = set_header(b"slow", 100);
        f.extend_from_slice(&[b'x'; 100]);
        f
    };
    let started = Instant::now();
    let mut closed_after = None;
    for (i, byte) in frame[..frame.len() - 1].iter().enumerate() {
        if slow.write_all(&[*byte]).await.is_err() {
            break;
        }
        if i % 10 == 0 {
            legit.served(i).await;
        }
        advance(Duration::from_secs(1)).await;
        if stats.snapshot().closed_frame_timeout == 1 {
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let closed_after = closed_after.expect("the slow request was never closed");
    assert!(
        closed_after >= Duration::from_secs(60) && closed_after <= Duration::from_secs(61),
        "closed after {closed_after:?}"
    );
    assert_eq!(closed(&mut slow).await, Vec::<u8>::new());
    assert_eq!(handler.last_write(b"slow"), None);
    legit.served(1000).await;
    let s = stats.snapshot();
    assert_eq!((s.connections, s.closed_frame_timeout), (1, 1));
    assert_eq!(s.request_bytes, 0, "{s:?}");
    listener.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn strangers_cannot_hold_connection_slots_and_idle_clients_hold_little() {
    let _frozen = freeze();
    let mut config = ListenerConfig::new(CLUSTER);
    config.max_connections = 150;
    let read_chunk = config.read_chunk;
    let idle_timeout = config.idle_timeout;
    let (listener, _h) = start(config).await;
    let addr = listener.local_addr();
    let stats = listener.stats();
    // 100 clients that did one request and now idle; 50 strangers that send nothing.
    let mut idle = Vec::new();
    for i in 0..100 {
        let mut c = Legit::connect(addr).await;
        c.served(i).await;
        idle.push(c);
    }
    let mut strangers = Vec::new();
    for _ in 0..50 {
        strangers.push(TcpStream::connect(addr).await.unwrap());
    }
    until(&stats, "150 connections", |s| s.connections == 150).await;
    // The slots are full: the next client is refused.
    let mut refused = TcpStream::connect(addr).await.unwrap();
    assert_eq!(closed(&mut refused).await[..4], [0xfe, 0, 0, 0]);
    let s = stats.snapshot();
    assert_eq!(
        (s.request_bytes, s.budget_bytes, s.queued_reply_bytes),
        (0, 0, 0)
    );
    assert!(
        s.input_buffer_bytes <= 150 * read_chunk,
        "idle connections hold {} bytes of input buffer",
        s.input_buffer_bytes
    );
    // Ten seconds later the strangers are gone and a new client gets in.
    advance(Duration::from_secs(9)).await;
    assert_eq!(stats.snapshot().closed_prologue_timeout, 0);
    advance(Duration::from_secs(2)).await;
    for s in &mut strangers {
        assert_eq!(closed(s).await, Vec::<u8>::new());
    }
    until(&stats, "strangers closed", |s| {
        s.closed_prologue_timeout == 50 && s.connections == 100
    })
    .await;
    let mut newcomer = Legit::connect(addr).await;
    newcomer.served(1000).await;
    // Idle clients are closed after the idle timeout, not before.
    advance(idle_timeout - Duration::from_secs(60)).await;
    assert_eq!(stats.snapshot().closed_idle_timeout, 0);
    idle[0].served(2000).await;
    advance(Duration::from_secs(120)).await;
    // The 99 idle since the start and the newcomer; not the one that just worked.
    until(&stats, "idle clients closed", |s| {
        s.closed_idle_timeout == 100
    })
    .await;
    idle[0].served(3000).await;
    for c in &mut idle[1..] {
        assert_eq!(closed(&mut c.stream).await, Vec::<u8>::new());
    }
    let s = stats.snapshot();
    assert_eq!(s.refused_too_many, 1);
    listener.shutdown().await;
}

#[tokio::test]
async fn a_huge_declared_length_allocates_nothing_near_it() {
    let config = ListenerConfig::new(CLUSTER);
    let read_chunk = config.read_chunk;
    let (listener, _h) = start(config).await;
    let addr = listener.local_addr();
    let stats = listener.stats();
    // 30 MiB declared (within the 32 MiB limit), 1000 bytes sent.
    let mut big = TcpStream::connect(addr).await.unwrap();
    let mut bytes = prologue();
    bytes.extend_from_slice(&set_header(b"k", 30 << 20));
    bytes.extend_from_slice(&[b'x'; 1000]);
    big.write_all(&bytes).await.unwrap();
    let held = bytes.len() - prologue().len();
    until(&stats, "the partial request held", |s| {
        s.request_bytes == held
    })
    .await;
    let s = stats.snapshot();
    assert!(
        s.input_buffer_bytes_peak <= 2 * read_chunk,
        "input buffers reached {} bytes for a {held}-byte partial frame",
        s.input_buffer_bytes_peak
    );
    // Beyond the limit (and i32::MAX, a negative length): answered and closed at once.
    for len in [33u32 << 20, i32::MAX as u32, u32::MAX] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut bytes = prologue();
        bytes.extend_from_slice(&set_header(b"k", len));
        s.write_all(&bytes).await.unwrap();
        let reply = closed(&mut s).await;
        assert!(reply[0] == 0x26 || reply[0] == 0xff, "{len}: {reply:?}");
    }
    let s = stats.snapshot();
    assert!(s.input_buffer_bytes_peak <= 3 * read_chunk, "{s:?}");
    let mut legit = Legit::connect(addr).await;
    legit.served(0).await;
    drop(big);
    until(&stats, "everything given back", |s| {
        s.connections == 1 && s.request_bytes == 0
    })
    .await;
    listener.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn large_partial_requests_against_a_small_budget_wait_and_others_are_served() {
    let _frozen = freeze();
    let mut config = ListenerConfig::new(CLUSTER);
    config.limits.max_frame_bytes = 1 << 20;
    config.memory_budget = 2 << 20;
    config.connection_allowance = 64 << 10;
    let (budget, allowance, chunk) = (
        config.memory_budget,
        config.connection_allowance,
        config.read_chunk,
    );
    let frame_timeout = config.frame_timeout;
    let (listener, handler) = start(config).await;
    let addr = listener.local_addr();
    let stats = listener.stats();
    // 16 clients each declaring a 900 KiB value and sending 600 KiB of it, never the rest:
    // 9.6 MB wanted, against a 2 MiB budget plus 16 x 64 KiB of allowances.
    const ATTACKERS: usize = 16;
    let mut writers = Vec::new();
    for i in 0..ATTACKERS {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        writers.push(tokio::spawn(async move {
            let mut bytes = prologue();
            bytes.extend_from_slice(&set_header(format!("big{i}").as_bytes(), 900 << 10));
            bytes.extend_from_slice(&vec![b'x'; 600 << 10]);
            // Blocks once the listener stops reading; fails once it closed the connection.
            let _ = stream.write_all(&bytes).await;
            closed(&mut stream).await
        }));
    }
    until(&stats, "the budget used up, connections waiting", |s| {
        s.budget_waits > 0 && s.budget_bytes + chunk > budget
    })
    .await;
    // A client with ordinary requests is served while the budget is exhausted.
    let mut legit = Legit::connect(addr).await;
    for i in 0..100 {
        legit.served(i).await;
    }
    // Half a frame timeout later, a complete large request from another client arrives; it
    // waits for budget too.
    advance(frame_timeout / 2).await;
    let waits = stats.snapshot().budget_waits;
    let mut large = TcpStream::connect(addr).await.unwrap();
    let mut bytes = prologue();
    bytes.extend_from_slice(&set_header(b"large", 500 << 10));
    bytes.extend_from_slice(&vec![b'y'; 500 << 10]);
    let sender = tokio::spawn(async move {
        large.write_all(&bytes).await.unwrap();
        let mut reply = BytesMut::new();
        while reply.len() < 4 {
            assert!(read_some(&large, &mut reply).await.unwrap() > 0, "closed");
        }
        reply.to_vec()
    });
    until(&stats, "the large request waiting", |s| {
        s.connections == ATTACKERS + 2 && s.budget_waits > waits
    })
    .await;
    assert_eq!(stats.snapshot().closed_frame_timeout, 0);
    legit.served(200).await;
    // The attackers' requests time out, their budget goes to the large request.
    advance(frame_timeout / 2 + Duration::from_secs(1)).await;
    for w in writers {
        assert_eq!(w.await.unwrap(), Vec::<u8>::new());
    }
    let reply = sender.await.unwrap();
    assert_eq!(reply, [0, 0, 0, 0]);
    assert_eq!(
        handler.last_write(b"large").map(|v| v.len()),
        Some(500 << 10)
    );
    for i in 0..ATTACKERS {
        assert_eq!(handler.last_write(format!("big{i}").as_bytes()), None);
    }
    until(&stats, "everything given back", |s| {
        s.connections == 1 && s.request_bytes == 0 && s.budget_bytes == 0
    })
    .await;
    let s = stats.snapshot();
    assert_eq!(s.closed_frame_timeout, ATTACKERS as u64);
    assert!(s.budget_bytes_peak <= budget, "{s:?}");
    assert!(
        s.request_bytes_peak <= budget + (ATTACKERS + 2) * allowance,
        "{s:?}"
    );
    assert!(
        s.request_bytes_peak > budget,
        "the attackers did fill the budget: {s:?}"
    );
    legit.served(1000).await;
    listener.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_reads_holds_bounded_replies_and_is_closed_by_the_write_timeout() {
    let _frozen = freeze();
    let config = ListenerConfig::new(CLUSTER);
    let (max_queued, max_in_flight) = (config.max_queued_reply_bytes, config.max_in_flight);
    let (listener, handler) = start(config).await;
    let addr = listener.local_addr();
    let stats = listener.stats();
    let value = Bytes::from(vec![b'v'; 256 << 10]);
    assert_eq!(
        handler.answer(Request::Set {
            key: b("big"),
            value: value.clone(),
        }),
        Ok(Response::Set)
    );
    let reply_len = {
        let mut out = BytesMut::new();
        encode_reply(&Ok(Response::Get(value)), &mut out);
        out.len()
    };
    // 1000 gets of a 256 KiB value (256 MB of replies), never read.
    let mut greedy = TcpStream::connect(addr).await.unwrap();
    let mut bytes = prologue();
    let mut codec = ClientCodec::new(Limits::default());
    let mut out = BytesMut::new();
    for _ in 0..1000 {
        codec
            .encode(
                &Request::Get {
                    consistency: Consistency::Consistent,
                    key: b("big"),
                },
                &mut out,
            )
            .unwrap();
    }
    bytes.extend_from_slice(&out);
    greedy.write_all(&bytes).await.unwrap();
    let mut legit = Legit::connect(addr).await;
    let mut waited = 0;
    while stats.snapshot().closed_write_timeout == 0 {
        legit.served(waited).await;
        advance(Duration::from_secs(1)).await;
        waited += 1;
        assert!(waited < 120, "the greedy client was never closed");
    }
    assert!((30..=31).contains(&waited), "closed after about {waited} s");
    let s = stats.snapshot();
    assert!(
        s.queued_reply_bytes_peak <= max_queued + reply_len + 1024,
        "{} bytes of replies queued",
        s.queued_reply_bytes_peak
    );
    assert!(s.requests_in_flight_peak <= max_in_flight);
    assert!(s.request_bytes_peak <= 64 << 10, "{s:?}");
    // What the greedy client can still read is what the kernel buffers held, not 256 MB.
    let drained = closed(&mut greedy).await.len();
    assert!(drained < 64 << 20, "{drained} bytes were sent");
    legit.served(1000).await;
    listener.shutdown().await;
}
