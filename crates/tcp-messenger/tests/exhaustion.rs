//! A stranger (or a misbehaving peer) must not be able to exhaust the messaging listener:
//! slowloris on the handshake and mid-frame, many idle connections, huge declared lengths, and
//! a flood that outruns the application. Memory is measured through the messenger's own
//! budget counters (`buffered_bytes`, `inbox_bytes`), never through RSS. Where time matters the
//! clock is Tokio's paused one; no assertion depends on real time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::BufMut;
use common::{CLUSTER, TestMsg, bind_free, config, eventually};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tcp_messenger::{
    Frame, Hello, HelloReply, Inbox, Messenger, MessengerConfig, PROTOCOL_VERSION,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous guard for waits in virtual time: a bug turns into a failure, not a hang.
const GUARD: Duration = Duration::from_secs(3600);

fn hello_as(name: &str) -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        cluster_id: CLUSTER.into(),
        node_name: name.into(),
        membership: String::new(),
    }
}

/// Wait in virtual time until `cond` holds: each miss sleeps 10 ms, so the paused clock moves
/// on and the guard can fire (a `yield_now` loop would keep the runtime busy and time still).
async fn settle(what: &str, mut cond: impl FnMut() -> bool) {
    let wait = async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(GUARD, wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// Connect by hand and complete a handshake as `name`.
async fn handshaken(addr: SocketAddr, name: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(Frame::encode(&hello_as(name), 4096).unwrap().as_bytes())
        .await
        .unwrap();
    let mut prefix = [0u8; 4];
    s.read_exact(&mut prefix).await.unwrap();
    let mut payload = vec![0u8; u32::from_le_bytes(prefix) as usize];
    s.read_exact(&mut payload).await.unwrap();
    let reply =
        wire_codec::decode_payload::<HelloReply>(&payload, &mut rkyv::util::AlignedVec::new())
            .unwrap();
    assert!(
        matches!(reply, HelloReply::Accepted { .. }),
        "handshake as {name}: {reply:?}"
    );
    s
}

/// Wait (within the virtual-time guard) until the server closes `s`.
async fn closed_by_server(s: &mut TcpStream, what: &str) {
    let wait = async {
        let mut buf = [0u8; 64];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(GUARD, wait)
        .await
        .unwrap_or_else(|_| panic!("{what}: the listener never closed the connection"));
}

/// Messengers "a" and "b" knowing each other, `tweak` applied to a's configuration.
async fn pair(
    tweak: impl FnOnce(&mut MessengerConfig),
) -> (
    (Messenger<TestMsg>, Inbox<TestMsg>),
    (Messenger<TestMsg>, Inbox<TestMsg>),
) {
    let la = bind_free().await;
    let lb = bind_free().await;
    let addrs: BTreeMap<String, SocketAddr> = [
        ("a".to_owned(), la.local_addr().unwrap()),
        ("b".to_owned(), lb.local_addr().unwrap()),
    ]
    .into_iter()
    .collect();
    let mut ca = config("a", addrs["a"], &addrs);
    tweak(&mut ca);
    let a = Messenger::start_with_listener(ca, la).unwrap();
    let b = Messenger::start_with_listener(config("b", addrs["b"], &addrs), lb).unwrap();
    a.0.wait_established("b", 1).await.unwrap();
    b.0.wait_established("a", 1).await.unwrap();
    (a, b)
}

/// b still reaches a: the legitimate peer is served throughout.
async fn b_still_reaches_a(b: &Messenger<TestMsg>, a_inbox: &mut Inbox<TestMsg>, n: u8) {
    b.send("a", &TestMsg::Blob(vec![n])).unwrap();
    let got = tokio::time::timeout(GUARD, a_inbox.recv())
        .await
        .expect("b's message never arrived")
        .unwrap();
    assert_eq!((&*got.from, got.msg), ("b", TestMsg::Blob(vec![n])));
}

#[tokio::test(start_paused = true)]
async fn a_hello_sent_one_byte_at_a_time_is_cut_off_at_the_handshake_timeout() {
    let ((a, mut a_inbox), (b, _b_inbox)) = pair(|_| {}).await;
    let hello = Frame::encode(&hello_as("b"), 4096).unwrap();
    let bytes = hello.as_bytes().to_vec();
    // One byte per second: the whole hello would take longer than the handshake timeout.
    assert!(
        Duration::from_secs(bytes.len() as u64) > common::fast_backoff().handshake_timeout,
        "the test needs a hello longer than the timeout in seconds"
    );
    let s = TcpStream::connect(a.local_addr()).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let sent = Arc::new(AtomicUsize::new(0));
    let sent2 = Arc::clone(&sent);
    let writer = tokio::spawn(async move {
        for b in bytes {
            if wr.write_all(&[b]).await.is_err() {
                return;
            }
            sent2.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(GUARD, rd.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "expected the listener to close, got {closed:?}"
    );
    assert!(
        sent.load(Ordering::SeqCst) < hello.len(),
        "closed only after the whole hello ({} of {} bytes)",
        sent.load(Ordering::SeqCst),
        hello.len()
    );
    writer.abort();
    eventually("the refusal is counted", || {
        a.counters().refused_handshakes == 1
    })
    .await;
    b_still_reaches_a(&b, &mut a_inbox, 1).await;
    assert_eq!(a.counters().closed_idle, 0);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_stops_mid_frame_is_closed_after_the_idle_timeout() {
    let ((a, mut a_inbox), (b, _b_inbox)) = pair(|_| {}).await;
    let mut s = handshaken(a.local_addr(), "b").await;
    let mut partial = Vec::new();
    partial.put_u32_le(1000);
    partial.extend_from_slice(&[7; 10]);
    s.write_all(&partial).await.unwrap();
    closed_by_server(&mut s, "a peer that stopped mid-frame").await;
    assert_eq!(a.counters().closed_idle, 1);
    assert_eq!(a.counters().refused_frames, 0);
    // The real link from b, idle all that time, was kept up by its keepalives.
    assert_eq!(b.counters().peers["a"].connects, 1);
    b_still_reaches_a(&b, &mut a_inbox, 2).await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_healthy_link_is_kept_alive_and_never_closed() {
    let ((a, mut a_inbox), (b, mut b_inbox)) = pair(|_| {}).await;
    // Ten idle timeouts of nothing to say, in virtual time.
    let idle = MessengerConfig::new("x", "y", "127.0.0.1:1".parse().unwrap(), BTreeMap::new())
        .idle_timeout;
    tokio::time::sleep(idle * 10).await;
    for m in [&a, &b] {
        let c = m.counters();
        assert_eq!(c.closed_idle, 0, "an idle peer link was cut: {c:?}");
        assert_eq!(c.refused(), 0, "{c:?}");
        assert!(c.peers.values().all(|p| p.connects == 1), "{c:?}");
    }
    assert!(a.counters().received_bytes > 0, "keepalives were read");
    assert!(
        a_inbox.try_recv().is_none(),
        "keepalives are never delivered"
    );
    b_still_reaches_a(&b, &mut a_inbox, 3).await;
    a.send("b", &TestMsg::Blob(vec![4])).unwrap();
    assert_eq!(b_inbox.recv().await.unwrap().msg, TestMsg::Blob(vec![4]));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn many_idle_connections_are_closed_and_their_slots_freed() {
    // b's real link takes one slot; strangers posing as b take the other three.
    let ((a, mut a_inbox), (b, _b_inbox)) = pair(|c| c.max_inbound_connections = 4).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(handshaken(a.local_addr(), "b").await);
    }
    // Full: one more is closed at once.
    let mut extra = TcpStream::connect(a.local_addr()).await.unwrap();
    closed_by_server(&mut extra, "a connection beyond the limit").await;
    assert_eq!(a.counters().refused_handshakes, 1);
    for s in &mut idle {
        closed_by_server(s, "an idle connection").await;
    }
    settle("idle closures counted", || a.counters().closed_idle >= 3).await;
    assert_eq!(
        a.counters().closed_idle,
        3,
        "only the silent strangers were closed"
    );
    // Their slots are free again: a newcomer gets through the handshake.
    let _fresh = handshaken(a.local_addr(), "b").await;
    assert_eq!(
        b.counters().peers["a"].connects,
        1,
        "b's own link stayed up"
    );
    b_still_reaches_a(&b, &mut a_inbox, 5).await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn huge_declared_lengths_cost_only_the_bytes_that_arrived() {
    const CONNECTIONS: usize = 8;
    const DECLARED: u32 = 32 * 1024 * 1024;
    let ((a, mut a_inbox), (b, _b_inbox)) = pair(|c| c.max_frame = DECLARED).await;
    let before = a.counters();
    let mut held = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut s = handshaken(a.local_addr(), "b").await;
        let mut claim = Vec::new();
        claim.put_u32_le(DECLARED);
        claim.put_u8(1);
        s.write_all(&claim).await.unwrap();
        held.push(s);
    }
    let want = before.received_bytes + 5 * CONNECTIONS as u64;
    eventually("every claim read", || a.counters().received_bytes >= want).await;
    let c = a.counters();
    // Each connection holds a read chunk or two, not the 32 MiB it announced.
    let bound = (CONNECTIONS as u64 + 1) * 256 * 1024;
    assert!(
        c.buffered_bytes <= bound,
        "{} bytes held in read buffers for {CONNECTIONS} claims of {DECLARED} B with 1 B each \
         (bound {bound})",
        c.buffered_bytes
    );
    b_still_reaches_a(&b, &mut a_inbox, 6).await;
    drop(held);
    a.shutdown().await;
    assert_eq!(
        a.counters().buffered_bytes,
        0,
        "closed connections give it all back"
    );
    b.shutdown().await;
}

#[tokio::test]
async fn the_inbox_holds_at_most_its_byte_budget_and_readers_wait() {
    const BUDGET: usize = 256 * 1024;
    const MESSAGES: usize = 40;
    let ((a, mut a_inbox), (b, _b_inbox)) = pair(|c| {
        c.inbox_bytes = BUDGET;
        c.inbox_capacity = 4096;
    })
    .await;
    let blob = |i: usize| TestMsg::Blob(vec![u8::try_from(i % 251).unwrap(); 32 * 1024]);
    for i in 0..MESSAGES {
        b.send("a", &blob(i)).unwrap();
    }
    // The application reads nothing yet: the budget fills, then the reader waits.
    eventually("the inbox budget fills", || {
        a.counters().inbox_bytes as usize > BUDGET - 40 * 1024
    })
    .await;
    for _ in 0..2000 {
        tokio::task::yield_now().await;
        let c = a.counters();
        assert!(
            c.inbox_bytes as usize <= BUDGET,
            "{} bytes in the inbox, over the budget of {BUDGET}",
            c.inbox_bytes
        );
        assert!(c.received < MESSAGES as u64, "everything delivered at once");
    }
    // Reading (and dropping) messages frees budget; all arrive, in order.
    for i in 0..MESSAGES {
        let got = a_inbox.recv().await.unwrap();
        assert!(got.held.bytes() > 32 * 1024, "holds its frame's bytes");
        assert_eq!(got.msg, blob(i));
    }
    eventually("budget released", || a.counters().inbox_bytes == 0).await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn keepalive_and_idle_timeout_must_leave_room() {
    let l = bind_free().await;
    let mut cfg = config("a", l.local_addr().unwrap(), &BTreeMap::new());
    cfg.idle_timeout = cfg.keepalive_interval;
    let err = Messenger::<TestMsg>::start_with_listener(cfg, l).unwrap_err();
    assert!(err.to_string().contains("idle_timeout"), "{err}");
}
