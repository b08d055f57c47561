//! End-to-end tests over 127.0.0.1 of the client's connection handling and the listener's
//! framing: the Rust client (and raw sockets speaking the bytes of docs/protocol.md) against
//! the listener serving handlers that do no store semantics (the write recorder of
//! `common`, and handlers that move the master, stay silent or shut down mid-request). The
//! store's semantics are tested against a real node, in rarakoon-node's
//! `tests/client_end_to_end.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::Recorder;
use rarakoon_client::listener::{ConnectionInfo, Handler, Listener, ListenerConfig, Outcome};
use rarakoon_client::{
    Client, ClientConfig, Error, ErrorCode, ErrorReply, Limits, Request, Response,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLUSTER: &str = "arakoon";
const PROLOGUE: [u8; 19] = [
    0x00, 0x00, 0xff, 0xb1, 0x01, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, b'a', b'r', b'a', b'k',
    b'o', b'o', b'n',
];

async fn start_with<H: Handler>(handler: Arc<H>, config: ListenerConfig) -> Listener {
    Listener::bind("127.0.0.1:0".parse().unwrap(), config, handler)
        .await
        .unwrap()
}

async fn start() -> (Listener, Arc<Recorder>, Client) {
    let handler = Arc::new(Recorder::new("node_0"));
    let listener = start_with(handler.clone(), ListenerConfig::new(CLUSTER)).await;
    let client = client_for(&[("node_0", listener.local_addr())]);
    (listener, handler, client)
}

fn client_for(nodes: &[(&str, SocketAddr)]) -> Client {
    let mut config = ClientConfig::new(CLUSTER);
    config.retry_delay = Duration::from_millis(1);
    for (name, addr) in nodes {
        config = config.node(*name, *addr);
    }
    Client::new(config).unwrap()
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Reads until EOF (the server closed), returning everything received.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    out
}

fn frame(rc: u8, msg: &[u8]) -> Vec<u8> {
    let mut out = vec![rc, 0, 0, 0];
    out.extend_from_slice(&(msg.len() as u32).to_le_bytes());
    out.extend_from_slice(msg);
    out
}

/// A node that plays master until `moved` is set, then names `other` as master and refuses.
struct Movable {
    inner: Recorder,
    other: Bytes,
    moved: Arc<AtomicBool>,
}

impl Handler for Movable {
    async fn handle(&self, _c: &ConnectionInfo, request: Request) -> Outcome {
        if !self.moved.load(Ordering::SeqCst) {
            return Outcome::new(self.inner.answer(request));
        }
        match request {
            Request::WhoMaster => Response::WhoMaster(Some(self.other.clone())).into(),
            _ => ErrorReply::new(ErrorCode::NotMaster, self.other.clone()).into(),
        }
    }
}

#[tokio::test]
async fn client_follows_not_master_and_retries_the_refused_write() {
    let moved = Arc::new(AtomicBool::new(false));
    let a = Arc::new(Movable {
        inner: Recorder::new("node_0"),
        other: b("node_1"),
        moved: moved.clone(),
    });
    let b_handler = Arc::new(Recorder::new("node_1"));
    let la = start_with(a.clone(), ListenerConfig::new(CLUSTER)).await;
    let lb = start_with(b_handler.clone(), ListenerConfig::new(CLUSTER)).await;
    let c = client_for(&[("node_0", la.local_addr()), ("node_1", lb.local_addr())]);
    c.set("before", "1").await.unwrap();
    assert_eq!(a.inner.last_write(b"before"), Some(b("1")));
    moved.store(true, Ordering::SeqCst);
    // node_0 answers NotMaster (refused before proposing): safe to retry on node_1.
    c.set("after", "2").await.unwrap();
    assert_eq!(b_handler.last_write(b"after"), Some(b("2")));
    assert_eq!(c.who_master().await.unwrap(), Some(b("node_1")));
    la.shutdown().await;
    lb.shutdown().await;
}

/// Answers who_master, then never answers anything else.
struct Silent;

impl Handler for Silent {
    async fn handle(&self, _c: &ConnectionInfo, request: Request) -> Outcome {
        match request {
            Request::WhoMaster => Response::WhoMaster(Some(b("node_0"))).into(),
            _ => std::future::pending().await,
        }
    }
}

#[tokio::test]
async fn a_write_without_reply_is_indeterminate_and_not_retried() {
    let listener = start_with(Arc::new(Silent), ListenerConfig::new(CLUSTER)).await;
    let mut config = ClientConfig::new(CLUSTER).node("node_0", listener.local_addr());
    // The timeout also bounds who_master, which the handler answers: generous enough that a
    // loaded machine does not turn the expected Indeterminate into NoMaster.
    config.request_timeout = Duration::from_secs(1);
    config.retry_delay = Duration::from_millis(1);
    config.max_attempts = 2;
    let c = Client::new(config).unwrap();
    match c.set("k", "v").await {
        Err(Error::Indeterminate { opcode, .. }) => {
            assert_eq!(opcode, rarakoon_client::Opcode::Set)
        }
        other => panic!("{other:?}"),
    }
    // A read is retried (max_attempts times), then reported as no master reachable.
    match c.get("k").await {
        Err(Error::NoMaster { last_error, .. }) => assert!(last_error.contains("timed out")),
        other => panic!("{other:?}"),
    }
    // Not shut down: its connections are stuck in the silent handler by design; the
    // runtime drops them when the test ends.
    drop(listener);
}

#[tokio::test]
async fn wrong_cluster_id_is_closed_silently() {
    let (listener, _h, _c) = start().await;
    let mut s = TcpStream::connect(listener.local_addr()).await.unwrap();
    let mut bytes = vec![
        0x00, 0x00, 0xff, 0xb1, 0x01, 0x00, 0x00, 0x00, 0x05, 0, 0, 0,
    ];
    bytes.extend_from_slice(b"other");
    bytes.extend_from_slice(&[0x02, 0x00, 0xff, 0xb1]); // who_master
    s.write_all(&bytes).await.unwrap();
    assert_eq!(read_to_close(&mut s).await, Vec::<u8>::new());

    let mut config = ClientConfig::new("other").node("node_0", listener.local_addr());
    config.retry_delay = Duration::from_millis(1);
    let c = Client::new(config).unwrap();
    assert!(matches!(c.get("k").await, Err(Error::NoMaster { .. })));
    listener.shutdown().await;
}

#[tokio::test]
async fn bad_prologue_version_is_closed_silently() {
    let (listener, _h, _c) = start().await;
    let mut s = TcpStream::connect(listener.local_addr()).await.unwrap();
    let mut bytes = PROLOGUE.to_vec();
    bytes[4] = 2;
    s.write_all(&bytes).await.unwrap();
    assert_eq!(read_to_close(&mut s).await, Vec::<u8>::new());
    listener.shutdown().await;
}

#[tokio::test]
async fn raw_bytes_of_section_11() {
    let (listener, _h, _c) = start().await;
    let mut s = TcpStream::connect(listener.local_addr()).await.unwrap();
    let mut bytes = PROLOGUE.to_vec();
    // Pipelined: get "k" (missing), set "k" "v", get "k", who_master.
    bytes.extend_from_slice(&[0x08, 0x00, 0xff, 0xb1, 0x00, 0x01, 0, 0, 0, b'k']);
    bytes.extend_from_slice(&[
        0x09, 0x00, 0xff, 0xb1, 0x01, 0, 0, 0, b'k', 0x01, 0, 0, 0, b'v',
    ]);
    bytes.extend_from_slice(&[0x08, 0x00, 0xff, 0xb1, 0x00, 0x01, 0, 0, 0, b'k']);
    bytes.extend_from_slice(&[0x02, 0x00, 0xff, 0xb1]);
    s.write_all(&bytes).await.unwrap();
    let mut expected = frame(0x05, b"Not_found");
    expected.extend_from_slice(&[0, 0, 0, 0]);
    expected.extend_from_slice(&[0, 0, 0, 0, 1, 0, 0, 0, b'v']);
    expected.extend_from_slice(&[0, 0, 0, 0, 1, 6, 0, 0, 0]);
    expected.extend_from_slice(b"node_0");
    let mut got = vec![0u8; expected.len()];
    s.read_exact(&mut got).await.unwrap();
    assert_eq!(got, expected);
    listener.shutdown().await;
}

#[tokio::test]
async fn garbage_after_a_valid_prologue() {
    let (listener, _h, _c) = start().await;
    // Bad magic bits: rc 1 alone, then close.
    let mut s = TcpStream::connect(listener.local_addr()).await.unwrap();
    let mut bytes = PROLOGUE.to_vec();
    bytes.extend_from_slice(b"hello, this is not arakoon");
    s.write_all(&bytes).await.unwrap();
    assert_eq!(read_to_close(&mut s).await, vec![1, 0, 0, 0]);

    // Magic right, opcode unknown: 05 "<hex>: command not found", then close.
    let mut s = TcpStream::connect(listener.local_addr()).await.unwrap();
    let mut bytes = PROLOGUE.to_vec();
    bytes.extend_from_slice(&[0x99, 0x00, 0xff, 0xb1]);
    s.write_all(&bytes).await.unwrap();
    assert_eq!(
        read_to_close(&mut s).await,
        frame(0x05, b"99: command not found")
    );

    // A bad consistency byte: 0xFF with a message naming it, then close.
    let mut s = TcpStream::connect(listener.local_addr()).await.unwrap();
    let mut bytes = PROLOGUE.to_vec();
    bytes.extend_from_slice(&[0x08, 0x00, 0xff, 0xb1, 0x07, 0x01, 0, 0, 0, b'k']);
    s.write_all(&bytes).await.unwrap();
    let got = read_to_close(&mut s).await;
    assert_eq!(&got[..4], &[0xff, 0, 0, 0]);
    assert!(String::from_utf8_lossy(&got[8..]).contains("consistency"));
    listener.shutdown().await;
}

#[tokio::test]
async fn oversized_request_gets_bad_input_and_close() {
    let handler = Arc::new(Recorder::new("node_0"));
    let mut config = ListenerConfig::new(CLUSTER);
    config.limits = Limits {
        max_frame_bytes: 1024,
        ..Limits::default()
    };
    let listener = start_with(handler.clone(), config).await;
    let mut s = TcpStream::connect(listener.local_addr()).await.unwrap();
    let mut bytes = PROLOGUE.to_vec();
    // set "k" with a value announced as 4096 bytes: refused from its length alone.
    bytes.extend_from_slice(&[
        0x09, 0x00, 0xff, 0xb1, 0x01, 0, 0, 0, b'k', 0x00, 0x10, 0, 0,
    ]);
    s.write_all(&bytes).await.unwrap();
    let got = read_to_close(&mut s).await;
    assert_eq!(&got[..4], &[0x26, 0, 0, 0]);
    assert!(String::from_utf8_lossy(&got[8..]).contains("exceeds the limit"));
    assert!(handler.writes().is_empty());

    let c = client_for(&[("node_0", listener.local_addr())]);
    assert!(matches!(
        c.set("k", vec![0u8; 4096]).await,
        Err(Error::BadInput(_))
    ));
    c.set("k", "small").await.unwrap();
    listener.shutdown().await;
}

#[tokio::test]
async fn a_client_that_disconnects_mid_request_applies_nothing() {
    let (listener, h, c) = start().await;
    let mut s = TcpStream::connect(listener.local_addr()).await.unwrap();
    let mut bytes = PROLOGUE.to_vec();
    // A sequence of two sets, cut off before its last byte.
    bytes.extend_from_slice(&[
        0x10, 0x00, 0xff, 0xb1, 0x24, 0, 0, 0, 0x05, 0, 0, 0, 0x02, 0, 0, 0, 0x01, 0, 0, 0, 0x01,
        0, 0, 0, b'a', 0x01, 0, 0, 0, b'1', 0x01, 0, 0, 0, 0x01, 0, 0, 0, b'b', 0x01, 0, 0, 0,
    ]);
    s.write_all(&bytes).await.unwrap();
    s.shutdown().await.unwrap();
    assert_eq!(read_to_close(&mut s).await, Vec::<u8>::new());
    drop(s);
    // The listener saw the EOF and dropped the partial request; nothing was applied.
    assert!(!c.exists("a").await.unwrap());
    assert!(h.writes().is_empty());
    listener.shutdown().await;
}

#[tokio::test]
async fn the_connection_over_the_limit_gets_too_many_clients() {
    let handler = Arc::new(Recorder::new("node_0"));
    let mut config = ListenerConfig::new(CLUSTER);
    config.max_connections = 1;
    let listener = start_with(handler, config).await;
    let c = client_for(&[("node_0", listener.local_addr())]);
    c.set("k", "v").await.unwrap(); // holds the only slot
    let mut s = TcpStream::connect(listener.local_addr()).await.unwrap();
    assert_eq!(
        read_to_close(&mut s).await,
        frame(0xfe, b"too many clients")
    );
    // The first client is not disturbed.
    assert_eq!(c.get("k").await.unwrap(), "v");
    listener.shutdown().await;
}

#[tokio::test]
async fn a_slow_client_does_not_delay_others() {
    let (listener, _h, c) = start().await;
    // A client that sends half a request and then nothing.
    let mut slow = TcpStream::connect(listener.local_addr()).await.unwrap();
    let mut bytes = PROLOGUE.to_vec();
    bytes.extend_from_slice(&[0x09, 0x00, 0xff, 0xb1, 0x01, 0, 0]);
    slow.write_all(&bytes).await.unwrap();
    for i in 0..50 {
        c.set(format!("k{i}"), "v").await.unwrap();
    }
    assert_eq!(c.get_key_count().await.unwrap(), 50);
    drop(slow);
    listener.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_accepting_and_closes_idle_connections() {
    let (listener, _h, c) = start().await;
    c.set("k", "v").await.unwrap();
    let addr = listener.local_addr();
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let mut bytes = PROLOGUE.to_vec();
    bytes.extend_from_slice(&[0x12, 0x00, 0xff, 0xb1]); // expect_progress_possible
    idle.write_all(&bytes).await.unwrap();
    let mut reply = [0u8; 5];
    idle.read_exact(&mut reply).await.unwrap();
    assert_eq!(reply, [0, 0, 0, 0, 1]);
    listener.shutdown().await;
    assert_eq!(read_to_close(&mut idle).await, Vec::<u8>::new());
    assert!(TcpStream::connect(addr).await.is_err());
    assert!(c.get("k").await.is_err());
}

#[tokio::test]
async fn a_write_after_the_node_restarted_is_not_indeterminate() {
    let handler = Arc::new(Recorder::new("node_0"));
    let listener = start_with(handler, ListenerConfig::new(CLUSTER)).await;
    let addr = listener.local_addr();
    let c = client_for(&[("node_0", addr)]);
    c.set("k", "v").await.unwrap();
    // The node goes away (closing the idle connection) and comes back on the same port.
    listener.shutdown().await;
    let handler = Arc::new(Recorder::new("node_0"));
    let listener = Listener::bind(addr, ListenerConfig::new(CLUSTER), handler.clone())
        .await
        .unwrap();
    // The client notices the closed connection before sending: the write is simply redone
    // on a new connection.
    c.set("k2", "v2").await.unwrap();
    assert_eq!(handler.last_write(b"k2"), Some(b("v2")));
    listener.shutdown().await;
}

/// Records writes (see `common`); the first one also starts the listener's shutdown.
struct ShutdownDuringFirstWrite {
    store: Recorder,
    shutdown: std::sync::OnceLock<rarakoon_client::listener::ShutdownHandle>,
}

impl Handler for ShutdownDuringFirstWrite {
    async fn handle(&self, _c: &ConnectionInfo, request: Request) -> Outcome {
        if let Some(handle) = self.shutdown.get() {
            handle.shutdown();
        }
        Outcome::new(self.store.answer(request))
    }
}

#[tokio::test]
async fn replies_to_requests_handled_before_a_shutdown_are_still_sent() {
    // Two pipelined sets; the first is applied while the listener starts shutting down. The
    // second is not answered (as in Arakoon), but the first one's reply must reach the client:
    // it was applied, and losing its reply would make a known outcome look unknown.
    let handler = Arc::new(ShutdownDuringFirstWrite {
        store: Recorder::new("node_0"),
        shutdown: std::sync::OnceLock::new(),
    });
    let listener = start_with(handler.clone(), ListenerConfig::new(CLUSTER)).await;
    handler
        .shutdown
        .set(listener.shutdown_handle())
        .map_err(|_| "set once")
        .unwrap();
    let mut s = TcpStream::connect(listener.local_addr()).await.unwrap();
    let mut bytes = PROLOGUE.to_vec();
    for key in [b'a', b'b'] {
        bytes.extend_from_slice(&[
            0x09, 0x00, 0xff, 0xb1, 0x01, 0, 0, 0, key, 0x01, 0, 0, 0, b'v',
        ]);
    }
    s.write_all(&bytes).await.unwrap();
    let received = read_to_close(&mut s).await;
    assert_eq!(handler.store.last_write(b"a"), Some(b("v")));
    assert_eq!(received, [0, 0, 0, 0], "the applied set's reply");
    listener.wait().await;
}
