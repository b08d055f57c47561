//! End-to-end tests over 127.0.0.1: the Rust client (and raw sockets speaking the bytes of
//! docs/protocol.md) against the listener serving the in-memory handler.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use rarakoon_client::listener::{ConnectionInfo, Handler, Listener, ListenerConfig, Outcome};
use rarakoon_client::memory::{MemoryConfig, MemoryHandler, Role};
use rarakoon_client::{
    Client, ClientCfg, ClientConfig, Consistency, Error, ErrorCode, ErrorReply, Interval, Limits,
    NodeAddress, Request, Response, Routing, Sequence, Value,
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

async fn start() -> (Listener, Arc<MemoryHandler>, Client) {
    let handler = Arc::new(MemoryHandler::master(CLUSTER, "node_0"));
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

fn bs(items: &[&str]) -> Vec<Bytes> {
    items.iter().map(|s| b(s)).collect()
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

#[tokio::test]
async fn basic_reads_and_writes() {
    let (listener, _h, c) = start().await;
    assert_eq!(c.ping().await.unwrap(), "Arakoon 1.9.25");
    assert_eq!(c.who_master().await.unwrap(), Some(b("node_0")));
    c.set("k", "v").await.unwrap();
    assert_eq!(c.get("k").await.unwrap(), "v");
    assert!(c.exists("k").await.unwrap());
    assert!(!c.exists("x").await.unwrap());
    assert_eq!(c.get_option("x").await.unwrap(), None);
    c.confirm("k", "v").await.unwrap();
    c.confirm("k2", "v2").await.unwrap();
    assert_eq!(c.get("k2").await.unwrap(), "v2");
    c.delete("k2").await.unwrap();
    assert_eq!(c.get_key_count().await.unwrap(), 1);
    listener.shutdown().await;
}

#[tokio::test]
async fn missing_keys_and_failed_assertions_keep_the_connection() {
    let (listener, _h, c) = start().await;
    match c.get("nope").await {
        Err(Error::NotFound(m)) => assert_eq!(m.0, "Not_found"),
        other => panic!("{other:?}"),
    }
    match c.delete("nope").await {
        Err(Error::NotFound(m)) => assert_eq!(m.0, "nope"),
        other => panic!("{other:?}"),
    }
    c.set("k", "v").await.unwrap();
    match c.assert("k", Some("w")).await {
        Err(Error::AssertionFailed(m)) => assert_eq!(m.0, "k"),
        other => panic!("{other:?}"),
    }
    c.assert("k", Some("v")).await.unwrap();
    c.assert("absent", None::<Bytes>).await.unwrap();
    c.assert_exists("k").await.unwrap();
    assert!(matches!(
        c.assert_exists("absent").await,
        Err(Error::AssertionFailed(_))
    ));
    match c.multi_get(["k", "m1", "m2"]).await {
        // The reference names the missing key that comes last in wire order.
        Err(Error::NotFound(m)) => assert_eq!(m.0, "m2"),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.get("k").await.unwrap(), "v");
    listener.shutdown().await;
}

#[tokio::test]
async fn range_queries_in_logical_order() {
    let (listener, _h, c) = start().await;
    for k in ["", "a", "b", "c", "d"] {
        c.set(k, format!("v{k}")).await.unwrap();
    }
    // first = None uses "" as bound with first_inclusive (§8.2).
    assert_eq!(
        c.range(None::<Bytes>, false, None::<Bytes>, false, -1)
            .await
            .unwrap(),
        bs(&["a", "b", "c", "d"])
    );
    assert_eq!(
        c.range(None::<Bytes>, true, None::<Bytes>, false, -1)
            .await
            .unwrap(),
        bs(&["", "a", "b", "c", "d"])
    );
    assert_eq!(
        c.range(Some("a"), false, Some("c"), true, -1)
            .await
            .unwrap(),
        bs(&["b", "c"])
    );
    assert_eq!(
        c.range(Some("a"), true, None::<Bytes>, false, 2)
            .await
            .unwrap(),
        bs(&["a", "b"])
    );
    assert!(
        c.range(Some("c"), false, Some("a"), false, -1)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        c.range_entries(Some("b"), true, Some("c"), true, -1)
            .await
            .unwrap(),
        vec![(b("b"), b("vb")), (b("c"), b("vc"))]
    );
    // rev_range: first is the high bound; the largest `max` entries, descending.
    assert_eq!(
        c.rev_range_entries(Some("d"), false, Some("a"), true, 2)
            .await
            .unwrap(),
        vec![(b("c"), b("vc")), (b("b"), b("vb"))]
    );
    assert_eq!(
        c.rev_range_entries(None::<Bytes>, true, None::<Bytes>, false, -1)
            .await
            .unwrap()
            .len(),
        4
    );
    c.set("ab", "x").await.unwrap();
    assert_eq!(c.prefix_keys("a", -1).await.unwrap(), bs(&["a", "ab"]));
    assert_eq!(c.prefix_keys("a", 1).await.unwrap(), bs(&["a"]));
    assert_eq!(
        c.multi_get(["c", "a"]).await.unwrap(),
        vec![b("vc"), b("va")]
    );
    assert_eq!(
        c.multi_get_option(["c", "zz", "a"]).await.unwrap(),
        vec![Some(b("vc")), None, Some(b("va"))]
    );
    listener.shutdown().await;
}

#[tokio::test]
async fn compare_and_swap_family() {
    let (listener, _h, c) = start().await;
    // test_and_set returns the value before the call, whether or not it wrote.
    assert_eq!(
        c.test_and_set("k", None::<Bytes>, Some("1")).await.unwrap(),
        None
    );
    assert_eq!(
        c.test_and_set("k", Some("x"), Some("2")).await.unwrap(),
        Some(b("1"))
    );
    assert_eq!(c.get("k").await.unwrap(), "1");
    assert_eq!(
        c.test_and_set("k", Some("1"), None::<Bytes>).await.unwrap(),
        Some(b("1"))
    );
    assert!(!c.exists("k").await.unwrap());
    assert_eq!(c.replace("r", Some("a")).await.unwrap(), None);
    assert_eq!(c.replace("r", None::<Bytes>).await.unwrap(), Some(b("a")));
    for k in ["p1", "p2", "q"] {
        c.set(k, "x").await.unwrap();
    }
    assert_eq!(c.delete_prefix("p").await.unwrap(), 2);
    assert_eq!(c.prefix_keys("", -1).await.unwrap(), bs(&["q"]));
    listener.shutdown().await;
}

#[tokio::test]
async fn sequences_are_atomic() {
    let (listener, h, c) = start().await;
    c.set("a", "1").await.unwrap();
    let ok = Sequence::new()
        .assert("a", Some(b("1")))
        .set("b", "2")
        .push(rarakoon_client::Update::Sequence(vec![
            rarakoon_client::Update::Set {
                key: b("c"),
                value: b("3"),
            },
        ]))
        .replace("d", Some(b("4")))
        .test_and_set("d", Some(b("4")), Some(b("5")))
        .assert_exists("b")
        .assert_range_contains_exactly("", bs(&["a", "b", "c", "d"]));
    c.sequence(ok).await.unwrap();
    assert_eq!(c.get("d").await.unwrap(), "5");
    assert_eq!(c.get("c").await.unwrap(), "3");

    // A failing member undoes everything before it.
    let failing = Sequence::new()
        .set("x", "1")
        .delete_prefix("")
        .delete("missing");
    match c.synced_sequence(failing).await {
        Err(Error::NotFound(m)) => assert_eq!(m.0, "missing"),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.len(), 4);
    assert_eq!(h.value(b"x"), None);

    let failing = Sequence::new().set("y", "1").assert_exists("nope");
    assert!(matches!(
        c.sequence(failing).await,
        Err(Error::AssertionFailed(_))
    ));
    let wrong_range = Sequence::new().assert_range_contains_exactly("", bs(&["a"]));
    match c.sequence(wrong_range).await {
        Err(Error::AssertionFailed(m)) => {
            assert!(String::from_utf8_lossy(&m.0).starts_with("ContainsExactly"))
        }
        other => panic!("{other:?}"),
    }
    // No plugins: user functions are unknown (0x26), inside a sequence too.
    assert!(matches!(
        c.sequence(Sequence::new().user_function("f", None)).await,
        Err(Error::BadInput(_))
    ));
    c.sequence(Sequence::new()).await.unwrap();
    assert_eq!(h.value(b"y"), None);
    listener.shutdown().await;
}

#[tokio::test]
async fn admin_and_informational_operations() {
    let (listener, _h, c) = start().await;
    assert!(!c.expect_progress_possible().await.unwrap());
    c.set("k", "v").await.unwrap();
    assert!(c.expect_progress_possible().await.unwrap());
    c.nop().await.unwrap();
    assert_eq!(c.get_txid().await.unwrap(), Consistency::AtLeast(2));
    let v = c.version().await.unwrap();
    assert_eq!((v.major, v.minor, v.patch), (1, 9, 25));
    assert_eq!(c.current_state().await.unwrap(), "Stable_master");
    let stats = c.statistics().await.unwrap();
    assert_eq!(&stats.name[..], b"arakoon_stats");
    let Value::List(children) = &stats.value else {
        panic!()
    };
    assert_eq!(children.len(), 30);
    assert_eq!(&children[29].name[..], b"node_is");
    assert_eq!(
        stats.get("node_is").unwrap().get("node_0").unwrap().value,
        Value::Int64(2)
    );
    assert_eq!(c.collapse_tlogs(3).await.unwrap(), Vec::<i64>::new());
    assert!(matches!(
        c.collapse_tlogs(0).await,
        Err(Error::UnknownFailure(_))
    ));
    c.flush_store().await.unwrap();
    // Admin operations refused on a master (0x20).
    assert!(matches!(c.get_db().await, Err(Error::NotSupported(_))));
    assert!(matches!(c.optimize_db().await, Err(Error::NotSupported(_))));
    assert!(matches!(c.defrag_db().await, Err(Error::NotSupported(_))));
    assert!(matches!(
        c.copy_db_to_head(2).await,
        Err(Error::NotSupported(_))
    ));
    assert!(matches!(c.drop_master().await, Err(Error::NotSupported(_))));
    match c.user_function("f", Some("x")).await {
        Err(Error::BadInput(m)) => assert_eq!(m.0, "User function \"f\" could not be found"),
        other => panic!("{other:?}"),
    }
    match c.user_hook("h").await {
        Err(Error::UserHookNotFound(m)) => assert_eq!(m.0, "h"),
        other => panic!("{other:?}"),
    }
    for request in [
        Request::LastEntries { start_i: 0 },
        Request::LastEntries2 { start_i: 0 },
        Request::LastEntries3 { start_i: 0 },
    ] {
        assert!(matches!(
            c.request(request).await,
            Err(Error::NotSupported(_))
        ));
    }
    // Everything still works after the connection-closing errors above.
    assert_eq!(c.get("k").await.unwrap(), "v");
    listener.shutdown().await;
}

#[tokio::test]
async fn nursery_operations() {
    let (listener, _h, c) = start().await;
    assert_eq!(c.get_interval().await.unwrap(), Interval::default());
    let interval = Interval {
        public_begin: Some(b("a")),
        ..Interval::default()
    };
    c.set_interval(interval.clone()).await.unwrap();
    assert_eq!(c.get_interval().await.unwrap(), interval);
    assert!(matches!(c.get_routing().await, Err(Error::NotFound(_))));
    let routing = Routing::Branch {
        left: Box::new(Routing::Cluster(b("left"))),
        separator: b("m"),
        right: Box::new(Routing::Cluster(b("right"))),
    };
    c.set_routing(routing.clone()).await.unwrap();
    assert_eq!(c.get_routing().await.unwrap(), routing);
    let cfg = ClientCfg {
        nodes: vec![NodeAddress {
            name: b("n0"),
            ips: bs(&["127.0.0.1"]),
            client_port: 4000,
        }],
    };
    c.set_nursery_cfg("left", cfg.clone()).await.unwrap();
    let nursery = c.get_nursery_cfg().await.unwrap();
    assert_eq!(nursery.routing, routing);
    assert_eq!(nursery.clusters, vec![(b("left"), cfg)]);
    assert!(matches!(
        c.set_routing_delta("a", "m", "b").await,
        Err(Error::NotSupported(_))
    ));
    c.migrate_range(Interval::default(), Sequence::new().set("z", "1"))
        .await
        .unwrap();
    c.set("a", "1").await.unwrap();
    assert_eq!(
        c.get_fringe(Some("b"), 0).await.unwrap(),
        vec![(b("a"), b("1"))]
    );
    assert_eq!(
        c.get_fringe(Some("b"), 1).await.unwrap(),
        vec![(b("z"), b("1"))]
    );
    listener.shutdown().await;
}

#[tokio::test]
async fn read_consistency_levels() {
    let (listener, _h, c) = start().await;
    c.set("k", "v").await.unwrap();
    let fresh = c.with_consistency(Consistency::AtLeast(1));
    assert_eq!(fresh.get("k").await.unwrap(), "v");
    let too_fresh = c.with_consistency(Consistency::AtLeast(100));
    match too_fresh.get("k").await {
        Err(Error::InconsistentRead(m)) => assert_eq!(m.0, "store not fresh enough"),
        other => panic!("{other:?}"),
    }
    let dirty = c.with_consistency(Consistency::NoGuarantees);
    assert_eq!(dirty.get("k").await.unwrap(), "v");
    listener.shutdown().await;
}

#[tokio::test]
async fn client_finds_the_master_through_a_slave() {
    let master = Arc::new(MemoryHandler::master(CLUSTER, "node_1"));
    let mut slave_cfg = MemoryConfig::master(CLUSTER, "node_0");
    slave_cfg.role = Role::Slave {
        master: Some(b("node_1")),
    };
    let slave = Arc::new(MemoryHandler::new(slave_cfg));
    let l0 = start_with(slave.clone(), ListenerConfig::new(CLUSTER)).await;
    let l1 = start_with(master.clone(), ListenerConfig::new(CLUSTER)).await;
    let c = client_for(&[("node_0", l0.local_addr()), ("node_1", l1.local_addr())]);
    c.set("k", "v").await.unwrap();
    assert_eq!(master.value(b"k"), Some(b("v")));
    assert_eq!(slave.value(b"k"), None);
    l0.shutdown().await;
    l1.shutdown().await;
}

/// A node that plays master until `moved` is set, then names `other` as master and refuses.
struct Movable {
    inner: MemoryHandler,
    other: Bytes,
    moved: Arc<AtomicBool>,
}

impl Handler for Movable {
    async fn handle(&self, _c: &ConnectionInfo, request: Request) -> Outcome {
        if !self.moved.load(Ordering::SeqCst) {
            return Outcome::new(self.inner.execute(request));
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
        inner: MemoryHandler::master(CLUSTER, "node_0"),
        other: b("node_1"),
        moved: moved.clone(),
    });
    let b_handler = Arc::new(MemoryHandler::master(CLUSTER, "node_1"));
    let la = start_with(a.clone(), ListenerConfig::new(CLUSTER)).await;
    let lb = start_with(b_handler.clone(), ListenerConfig::new(CLUSTER)).await;
    let c = client_for(&[("node_0", la.local_addr()), ("node_1", lb.local_addr())]);
    c.set("before", "1").await.unwrap();
    assert_eq!(a.inner.value(b"before"), Some(b("1")));
    moved.store(true, Ordering::SeqCst);
    // node_0 answers NotMaster (refused before proposing): safe to retry on node_1.
    c.set("after", "2").await.unwrap();
    assert_eq!(b_handler.value(b"after"), Some(b("2")));
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
    let handler = Arc::new(MemoryHandler::master(CLUSTER, "node_0"));
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
    assert!(handler.is_empty());

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
    assert!(h.is_empty());
    listener.shutdown().await;
}

#[tokio::test]
async fn the_connection_over_the_limit_gets_too_many_clients() {
    let handler = Arc::new(MemoryHandler::master(CLUSTER, "node_0"));
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
async fn ping_with_another_cluster_is_refused() {
    let (listener, _h, _c) = start().await;
    let mut s = TcpStream::connect(listener.local_addr()).await.unwrap();
    let mut bytes = PROLOGUE.to_vec();
    bytes.extend_from_slice(&[
        0x01, 0x00, 0xff, 0xb1, 0x01, 0, 0, 0, b'c', 0x01, 0, 0, 0, b'x',
    ]);
    s.write_all(&bytes).await.unwrap();
    assert_eq!(read_to_close(&mut s).await, frame(0x06, b"Wrong cluster"));
    listener.shutdown().await;
}

/// Sends requests on one raw connection with the client codec and returns the replies.
async fn raw_calls(addr: SocketAddr, requests: &[Request]) -> Vec<rarakoon_client::Reply> {
    use bytes::BytesMut;
    use rarakoon_client::{ClientCodec, Prologue};
    use tokio_util::codec::{Decoder, Encoder};
    let mut codec = ClientCodec::new(Limits::default());
    let mut out = BytesMut::new();
    codec
        .encode(
            &Prologue {
                cluster_id: b(CLUSTER),
            },
            &mut out,
        )
        .unwrap();
    for r in requests {
        codec.encode(r, &mut out).unwrap();
    }
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&out).await.unwrap();
    let mut input = BytesMut::new();
    let mut replies = Vec::new();
    while replies.len() < requests.len() {
        if let Some((_, reply)) = codec.decode(&mut input).unwrap() {
            replies.push(reply);
            continue;
        }
        assert!(s.read_buf(&mut input).await.unwrap() > 0, "closed early");
    }
    replies
}

#[tokio::test]
async fn a_slave_gates_writes_and_consistent_reads_but_serves_admin_and_dirty_reads() {
    let mut cfg = MemoryConfig::master(CLUSTER, "node_0");
    cfg.role = Role::Slave {
        master: Some(b("node_1")),
    };
    let listener = start_with(
        Arc::new(MemoryHandler::new(cfg)),
        ListenerConfig::new(CLUSTER),
    )
    .await;
    let addr = listener.local_addr();
    let not_master = Err(ErrorReply::new(ErrorCode::NotMaster, b("node_1")));
    // Admin operations meant for slaves succeed, pipelined on one connection.
    let replies = raw_calls(
        addr,
        &[
            Request::OptimizeDb,
            Request::DefragDb,
            Request::CopyDbToHead { tlogs_to_keep: 1 },
            Request::WhoMaster,
            Request::Get {
                consistency: Consistency::NoGuarantees,
                key: b("k"),
            },
            Request::CurrentState,
        ],
    )
    .await;
    assert_eq!(
        replies,
        vec![
            Ok(Response::OptimizeDb),
            Ok(Response::DefragDb),
            Ok(Response::CopyDbToHead),
            Ok(Response::WhoMaster(Some(b("node_1")))),
            Err(ErrorReply::not_found()),
            Ok(Response::CurrentState(b("Slave_steady_state"))),
        ]
    );
    // A write, then (new connection, since NotMaster closes) a consistent read.
    assert_eq!(
        raw_calls(
            addr,
            &[Request::Set {
                key: b("k"),
                value: b("v")
            }]
        )
        .await,
        vec![not_master.clone()]
    );
    assert_eq!(
        raw_calls(
            addr,
            &[Request::Get {
                consistency: Consistency::Consistent,
                key: b("k"),
            }]
        )
        .await,
        vec![not_master]
    );
    listener.shutdown().await;
}

#[tokio::test]
async fn a_write_after_the_node_restarted_is_not_indeterminate() {
    let handler = Arc::new(MemoryHandler::master(CLUSTER, "node_0"));
    let listener = start_with(handler, ListenerConfig::new(CLUSTER)).await;
    let addr = listener.local_addr();
    let c = client_for(&[("node_0", addr)]);
    c.set("k", "v").await.unwrap();
    // The node goes away (closing the idle connection) and comes back on the same port.
    listener.shutdown().await;
    let handler = Arc::new(MemoryHandler::master(CLUSTER, "node_0"));
    let listener = Listener::bind(addr, ListenerConfig::new(CLUSTER), handler.clone())
        .await
        .unwrap();
    // The client notices the closed connection before sending: the write is simply redone
    // on a new connection.
    c.set("k2", "v2").await.unwrap();
    assert_eq!(handler.value(b"k2"), Some(b("v2")));
    listener.shutdown().await;
}

/// Applies writes to a memory handler; the first one also starts the listener's shutdown.
struct ShutdownDuringFirstWrite {
    store: MemoryHandler,
    shutdown: std::sync::OnceLock<rarakoon_client::listener::ShutdownHandle>,
}

impl Handler for ShutdownDuringFirstWrite {
    async fn handle(&self, _c: &ConnectionInfo, request: Request) -> Outcome {
        if let Some(handle) = self.shutdown.get() {
            handle.shutdown();
        }
        Outcome::new(self.store.execute(request))
    }
}

#[tokio::test]
async fn replies_to_requests_handled_before_a_shutdown_are_still_sent() {
    // Two pipelined sets; the first is applied while the listener starts shutting down. The
    // second is not answered (as in Arakoon), but the first one's reply must reach the client:
    // it was applied, and losing its reply would make a known outcome look unknown.
    let handler = Arc::new(ShutdownDuringFirstWrite {
        store: MemoryHandler::master(CLUSTER, "node_0"),
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
    assert_eq!(handler.store.value(b"a"), Some(b("v")));
    assert_eq!(received, [0, 0, 0, 0], "the applied set's reply");
    listener.wait().await;
}
