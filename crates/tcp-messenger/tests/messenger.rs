//! Messengers on 127.0.0.1 talking to each other: ordering per link, broadcast, peer restart,
//! strangers and bad frames refused while the messenger keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::BufMut;
use common::{CLUSTER, TestMsg, bind_free, cluster, config, eventually};
use std::collections::BTreeMap;
use tcp_messenger::{
    Frame, Hello, HelloReply, Messenger, PROTOCOL_VERSION, SendError, WireMessage,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PER_LINK: u64 = 3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_messengers_exchange_many_messages_in_order() {
    let names = ["a", "b", "c"];
    let (nodes, _) = cluster(&names).await;
    let mut inboxes = Vec::new();
    let mut messengers = Vec::new();
    for (m, inbox) in nodes {
        messengers.push(m);
        inboxes.push(inbox);
    }
    for (i, m) in messengers.iter().enumerate() {
        for n in 0..PER_LINK {
            for peer in names.iter().filter(|p| **p != names[i]) {
                let msg = TestMsg::Seq {
                    from: names[i].to_owned(),
                    n,
                };
                m.send(peer, &msg).unwrap();
            }
        }
    }
    for (i, inbox) in inboxes.iter_mut().enumerate() {
        let mut next: BTreeMap<String, u64> = BTreeMap::new();
        let expected = PER_LINK * (names.len() as u64 - 1);
        let mut got = 0;
        while got < expected {
            let incoming = inbox.recv().await.unwrap();
            let TestMsg::Seq { from, n } = incoming.msg else {
                panic!("unexpected message")
            };
            assert_eq!(&*incoming.from, from, "sender name tags the message");
            let want = next.entry(from.clone()).or_insert(0);
            assert_eq!(n, *want, "link {from} -> {} out of order", names[i]);
            *want += 1;
            got += 1;
        }
    }
    for m in &messengers {
        eventually("sent and received counters", || {
            let c = m.counters();
            c.sent() == PER_LINK * 2 && c.received == PER_LINK * 2
        })
        .await;
        let c = m.counters();
        assert_eq!(c.sent(), PER_LINK * 2);
        assert_eq!(c.dropped(), 0);
        assert_eq!(c.received, PER_LINK * 2);
        assert_eq!(c.refused(), 0);
    }
    for m in &messengers {
        m.shutdown().await;
    }
}

#[tokio::test]
async fn broadcast_encodes_once_and_reaches_every_peer() {
    let (mut nodes, _) = cluster(&["a", "b", "c"]).await;
    let (a, _) = nodes.remove(0);
    let msg = TestMsg::Blob(vec![1, 2, 3]);
    assert_eq!(a.broadcast(&msg).unwrap(), 2);
    for (_, inbox) in &mut nodes {
        let got = inbox.recv().await.unwrap();
        assert_eq!(&*got.from, "a");
        assert_eq!(got.msg, msg);
    }
    let frame = a.encode(&msg).unwrap();
    assert_eq!(a.broadcast_frame(&frame), 2);
    assert!(matches!(
        a.send("nobody", &msg),
        Err(SendError::UnknownPeer(p)) if p == "nobody"
    ));
    a.shutdown().await;
    assert!(matches!(a.send("b", &msg), Err(SendError::Closed)));
}

#[tokio::test]
async fn oversized_message_is_refused_at_send() {
    let (nodes, _) = cluster(&["a", "b"]).await;
    let a = &nodes[0].0;
    let big = TestMsg::Blob(vec![0; 128 * 1024]);
    assert!(matches!(a.send("b", &big), Err(SendError::Encode(_))));
    a.shutdown().await;
}

#[tokio::test]
async fn full_queue_drops_newest_and_counts() {
    // b's address has no listener, so nothing drains a's queue to b.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addrs: BTreeMap<String, _> = [
        ("a".to_owned(), listener.local_addr().unwrap()),
        ("b".to_owned(), dead_addr),
    ]
    .into_iter()
    .collect();
    let mut cfg = config("a", addrs["a"], &addrs);
    cfg.queue_capacity = 3;
    let (a, _inbox) = Messenger::<TestMsg>::start_with_listener(cfg, listener).unwrap();
    let msg = TestMsg::Blob(vec![]);
    for _ in 0..3 {
        a.send("b", &msg).unwrap();
    }
    assert!(matches!(a.send("b", &msg), Err(SendError::QueueFull(p)) if p == "b"));
    assert!(matches!(a.send("b", &msg), Err(SendError::QueueFull(_))));
    let c = a.counters().peers["b"];
    assert_eq!((c.dropped, c.queued, c.sent), (2, 3, 0));
    a.shutdown().await;
}

#[tokio::test]
async fn queue_bytes_bound_drops_newest() {
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addrs: BTreeMap<String, _> = [
        ("a".to_owned(), listener.local_addr().unwrap()),
        ("b".to_owned(), dead_addr),
    ]
    .into_iter()
    .collect();
    let mut cfg = config("a", addrs["a"], &addrs);
    cfg.queue_bytes = 10_000;
    let (a, _inbox) = Messenger::<TestMsg>::start_with_listener(cfg, listener).unwrap();
    let frame = a.encode(&TestMsg::Blob(vec![0; 3000])).unwrap();
    for _ in 0..3 {
        a.send_frame("b", frame.clone()).unwrap();
    }
    assert!(matches!(
        a.send_frame("b", frame.clone()),
        Err(SendError::QueueFull(_))
    ));
    let c = a.counters().peers["b"];
    assert_eq!((c.queued, c.dropped), (3, 1));
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_restart_link_comes_back() {
    let (mut nodes, addrs) = cluster(&["a", "b"]).await;
    let (b, mut b_inbox) = nodes.pop().unwrap();
    let (a, _a_inbox) = nodes.pop().unwrap();
    a.send("b", &TestMsg::Blob(vec![1])).unwrap();
    assert_eq!(b_inbox.recv().await.unwrap().msg, TestMsg::Blob(vec![1]));
    a.wait_established("b", 1).await.unwrap();

    b.shutdown().await;
    drop(b);
    // The old inbox ends once b's tasks are gone.
    while b_inbox.recv().await.is_some() {}

    // Restart b on the same address.
    let listener = TcpListener::bind(addrs["b"]).await.unwrap();
    let (b2, mut b2_inbox) =
        Messenger::<TestMsg>::start_with_listener(config("b", addrs["b"], &addrs), listener)
            .unwrap();
    a.wait_established("b", 2).await.unwrap();
    a.send("b", &TestMsg::Blob(vec![2])).unwrap();
    let got = b2_inbox.recv().await.unwrap();
    assert_eq!(&*got.from, "a");
    assert_eq!(got.msg, TestMsg::Blob(vec![2]));
    let c = a.counters().peers["b"];
    assert_eq!(c.connects, 2);
    assert_eq!(c.reconnects, 1);
    a.shutdown().await;
    b2.shutdown().await;
}

/// Connect by hand and send a hello; return the stream and the reply.
async fn raw_hello(addr: std::net::SocketAddr, hello: &Hello) -> (TcpStream, HelloReply) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(Frame::encode(hello, 4096).unwrap().as_bytes())
        .await
        .unwrap();
    let mut prefix = [0u8; 4];
    s.read_exact(&mut prefix).await.unwrap();
    let mut payload = vec![0u8; u32::from_le_bytes(prefix) as usize];
    s.read_exact(&mut payload).await.unwrap();
    let reply =
        wire_codec::decode_payload::<HelloReply>(&payload, &mut rkyv::util::AlignedVec::new())
            .unwrap();
    (s, reply)
}

fn hello(version: u32, cluster: &str, name: &str) -> Hello {
    Hello {
        protocol_version: version,
        cluster_id: cluster.into(),
        node_name: name.into(),
        membership: String::new(),
    }
}

/// Wait until the server closes the connection (EOF or reset).
async fn closed_by_server(mut s: TcpStream) {
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[tokio::test]
async fn strangers_wrong_cluster_and_wrong_version_are_refused() {
    let (mut nodes, _) = cluster(&["a", "b"]).await;
    let (b, _b_inbox) = nodes.pop().unwrap();
    let (a, mut a_inbox) = nodes.pop().unwrap();
    let addr = a.local_addr();
    let cases = [
        (hello(PROTOCOL_VERSION, CLUSTER, "mallory"), "mallory"),
        (
            hello(PROTOCOL_VERSION, "other-cluster", "b"),
            "other-cluster",
        ),
        (hello(PROTOCOL_VERSION + 1, CLUSTER, "b"), "version"),
    ];
    for (i, (h, needle)) in cases.iter().enumerate() {
        let (s, reply) = raw_hello(addr, h).await;
        match reply {
            HelloReply::Refused { reason } => assert!(reason.contains(needle), "{reason}"),
            other => panic!("expected refusal, got {other:?}"),
        }
        closed_by_server(s).await;
        assert_eq!(a.counters().refused_handshakes, i as u64 + 1);
    }
    // Garbage instead of a hello is refused too.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[3, 0, 0, 0, 0xff, 0xfe, 0xfd]).await.unwrap();
    closed_by_server(s).await;
    assert_eq!(a.counters().refused_handshakes, 4);

    // a keeps serving its real peer.
    b.send("a", &TestMsg::Blob(vec![9])).unwrap();
    let got = a_inbox.recv().await.unwrap();
    assert_eq!((&*got.from, got.msg), ("b", TestMsg::Blob(vec![9])));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn oversized_and_invalid_frames_close_only_that_connection() {
    let (mut nodes, _) = cluster(&["a", "b"]).await;
    let (b, _b_inbox) = nodes.pop().unwrap();
    let (a, mut a_inbox) = nodes.pop().unwrap();
    let addr = a.local_addr();

    // A valid handshake as "b", then a frame announcing more than max_frame.
    let (mut s, reply) = raw_hello(addr, &hello(PROTOCOL_VERSION, CLUSTER, "b")).await;
    assert_eq!(
        reply,
        HelloReply::Accepted {
            node_name: "a".into(),
            membership: String::new(),
        }
    );
    let mut frame = Vec::new();
    frame.put_u32_le(64 * 1024 + 1);
    s.write_all(&frame).await.unwrap();
    closed_by_server(s).await;
    assert_eq!(a.counters().refused_frames, 1);

    // A frame that fails the semantic check, after a valid one that gets through.
    let (mut s, _) = raw_hello(addr, &hello(PROTOCOL_VERSION, CLUSTER, "b")).await;
    let good = Frame::encode(&TestMsg::Blob(vec![5]), 1024).unwrap();
    let poison = Frame::encode(&TestMsg::Poison, 1024).unwrap();
    s.write_all(good.as_bytes()).await.unwrap();
    s.write_all(poison.as_bytes()).await.unwrap();
    closed_by_server(s).await;
    assert_eq!(a.counters().refused_frames, 2);
    assert_eq!(a_inbox.recv().await.unwrap().msg, TestMsg::Blob(vec![5]));
    assert!(TestMsg::Poison.check().is_err());

    // The real peer still gets through.
    b.send("a", &TestMsg::Blob(vec![6])).unwrap();
    assert_eq!(a_inbox.recv().await.unwrap().msg, TestMsg::Blob(vec![6]));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn refused_by_peer_is_counted_on_the_connecting_side() {
    // c thinks it is in "other-cluster"; a refuses it, c counts the refusal and backs off.
    let a_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let c_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addrs: BTreeMap<String, _> = [
        ("a".to_owned(), a_listener.local_addr().unwrap()),
        ("c".to_owned(), c_listener.local_addr().unwrap()),
    ]
    .into_iter()
    .collect();
    let (a, _ai) =
        Messenger::<TestMsg>::start_with_listener(config("a", addrs["a"], &addrs), a_listener)
            .unwrap();
    let mut c_cfg = config("c", addrs["c"], &addrs);
    c_cfg.cluster_id = "other-cluster".into();
    let (c, _ci) = Messenger::<TestMsg>::start_with_listener(c_cfg, c_listener).unwrap();
    eventually("a refusing c", || a.counters().refused_handshakes > 0).await;
    eventually("c seeing the refusal", || {
        c.counters().peers["a"].refused_by_peer > 0
    })
    .await;
    assert_eq!(c.counters().peers["a"].connects, 0);
    a.shutdown().await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_never_blocks_the_sender() {
    // b never reads its inbox (capacity 1): TCP pushes back, a's queue fills, and a's sends
    // keep returning at once, dropping (and counting) the newest messages.
    let la = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lb = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addrs: BTreeMap<String, _> = [
        ("a".to_owned(), la.local_addr().unwrap()),
        ("b".to_owned(), lb.local_addr().unwrap()),
    ]
    .into_iter()
    .collect();
    let mut a_cfg = config("a", addrs["a"], &addrs);
    a_cfg.queue_capacity = 1000;
    let mut b_cfg = config("b", addrs["b"], &addrs);
    b_cfg.inbox_capacity = 1;
    let (a, _ai) = Messenger::<TestMsg>::start_with_listener(a_cfg, la).unwrap();
    let (b, _bi) = Messenger::<TestMsg>::start_with_listener(b_cfg, lb).unwrap();
    a.wait_established("b", 1).await.unwrap();
    let frame = a.encode(&TestMsg::Blob(vec![0xab; 1024])).unwrap();
    let total = 100_000u64;
    let mut refused = 0u64;
    for _ in 0..total {
        match a.send_frame("b", frame.clone()) {
            Ok(()) => {}
            Err(SendError::QueueFull(_)) => refused += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    let c = a.counters().peers["b"];
    assert!(refused > 0, "100 MB cannot fit in queue and socket buffers");
    assert_eq!(c.dropped, refused);
    assert!(c.sent + c.queued + c.dropped <= total);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn second_address_is_tried_when_the_first_is_dead() {
    let (mut nodes, addrs) = cluster(&["a", "b"]).await;
    let (b, _bi) = nodes.pop().unwrap();
    let (a0, _) = nodes.pop().unwrap();
    a0.shutdown().await;
    drop(a0);
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let listener = TcpListener::bind(addrs["a"]).await.unwrap();
    let mut cfg = config("a", addrs["a"], &addrs);
    cfg.peers.insert("b".into(), vec![dead_addr, addrs["b"]]);
    let (a, _ai) = Messenger::<TestMsg>::start_with_listener(cfg, listener).unwrap();
    a.wait_established("b", 1).await.unwrap();
    assert!(a.counters().peers["b"].failed_attempts >= 1);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_node_answering_under_another_name_is_not_used() {
    // a believes "b" lives at c's address; c accepts a but answers as "c", so a refuses it.
    let (nodes, addrs) = cluster(&["a", "b", "c"]).await;
    for (m, _) in &nodes {
        m.shutdown().await;
    }
    drop(nodes);
    let la = TcpListener::bind(addrs["a"]).await.unwrap();
    let lc = TcpListener::bind(addrs["c"]).await.unwrap();
    let mut a_cfg = config("a", addrs["a"], &addrs);
    a_cfg.peers.insert("b".into(), vec![addrs["c"]]);
    let (a, _ai) = Messenger::<TestMsg>::start_with_listener(a_cfg, la).unwrap();
    let (c, _ci) =
        Messenger::<TestMsg>::start_with_listener(config("c", addrs["c"], &addrs), lc).unwrap();
    eventually("a refusing the impostor", || {
        a.counters().peers["b"].refused_by_peer > 0
    })
    .await;
    assert_eq!(a.counters().peers["b"].connects, 0);
    a.shutdown().await;
    c.shutdown().await;
}

#[tokio::test]
async fn start_errors_name_the_problem() {
    let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let addrs: BTreeMap<String, _> = [("a".to_owned(), addr), ("b".to_owned(), addr)]
        .into_iter()
        .collect();
    let err = Messenger::<TestMsg>::start(config("a", addr, &addrs))
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&addr.to_string()), "{err}");

    let mut cfg = config("a", addr, &addrs);
    cfg.peers.insert("c".into(), vec![]);
    let err = Messenger::<TestMsg>::start_with_listener(cfg, bind_free().await).unwrap_err();
    assert!(err.to_string().contains("\"c\" has no address"), "{err}");

    let mut cfg = config("a", addr, &addrs);
    cfg.queue_capacity = 0;
    let err = Messenger::<TestMsg>::start_with_listener(cfg, bind_free().await).unwrap_err();
    assert!(err.to_string().contains("queue_capacity"), "{err}");
}

#[tokio::test]
async fn an_address_hosting_another_node_is_skipped_for_the_next() {
    // a's first address for "b" is c's: c accepts a (a is c's peer) but answers as "c", which a
    // refuses; a then tries the second address, b's.
    let (nodes, addrs) = cluster(&["a", "b", "c"]).await;
    let mut nodes = nodes.into_iter();
    let (a0, _) = nodes.next().unwrap();
    a0.shutdown().await;
    drop(a0);
    let (b, mut b_inbox) = nodes.next().unwrap();
    let (c, _ci) = nodes.next().unwrap();
    let la = TcpListener::bind(addrs["a"]).await.unwrap();
    let mut a_cfg = config("a", addrs["a"], &addrs);
    a_cfg.peers.insert("b".into(), vec![addrs["c"], addrs["b"]]);
    let (a, _ai) = Messenger::<TestMsg>::start_with_listener(a_cfg, la).unwrap();
    a.wait_established("b", 1).await.unwrap();
    assert!(a.counters().peers["b"].refused_by_peer >= 1);
    a.send("b", &TestMsg::Blob(vec![4])).unwrap();
    let got = b_inbox.recv().await.unwrap();
    assert_eq!((&*got.from, got.msg), ("a", TestMsg::Blob(vec![4])));
    for m in [a, b, c] {
        m.shutdown().await;
    }
}

#[tokio::test]
async fn inbound_connections_beyond_the_limit_are_closed_and_the_peer_keeps_its_link() {
    let la = bind_free().await;
    let lb = bind_free().await;
    let addrs: BTreeMap<String, _> = [
        ("a".to_owned(), la.local_addr().unwrap()),
        ("b".to_owned(), lb.local_addr().unwrap()),
    ]
    .into_iter()
    .collect();
    let mut a_cfg = config("a", addrs["a"], &addrs);
    a_cfg.max_inbound_connections = 3;
    // Strangers that say nothing keep their connection (and slot) until the test drops them.
    a_cfg.backoff.handshake_timeout = std::time::Duration::from_secs(600);
    let (a, mut a_inbox) = Messenger::<TestMsg>::start_with_listener(a_cfg, la).unwrap();
    let (b, _b_inbox) =
        Messenger::<TestMsg>::start_with_listener(config("b", addrs["b"], &addrs), lb).unwrap();
    // b's link into a takes one of a's three slots.
    b.wait_established("a", 1).await.unwrap();

    // Two strangers connect and say nothing: they take the other two slots.
    let idle1 = TcpStream::connect(addrs["a"]).await.unwrap();
    let idle2 = TcpStream::connect(addrs["a"]).await.unwrap();
    // A third is closed at once and counted.
    let third = TcpStream::connect(addrs["a"]).await.unwrap();
    // The guard only turns a missing limit into a failure instead of a long hang.
    tokio::time::timeout(std::time::Duration::from_secs(120), closed_by_server(third))
        .await
        .expect("a connection beyond the limit is closed at once");
    assert_eq!(a.counters().refused_handshakes, 1);

    // The peer's link keeps working.
    b.send("a", &TestMsg::Blob(vec![7])).unwrap();
    let got = a_inbox.recv().await.unwrap();
    assert_eq!((&*got.from, got.msg), ("b", TestMsg::Blob(vec![7])));

    // When the strangers leave, their slots are free again.
    drop(idle1);
    drop(idle2);
    eventually("both strangers' connections to end", || {
        a.counters().refused_handshakes == 3
    })
    .await;
    let (_s, reply) = raw_hello(addrs["a"], &hello(PROTOCOL_VERSION, CLUSTER, "b")).await;
    assert_eq!(
        reply,
        HelloReply::Accepted {
            node_name: "a".into(),
            membership: String::new(),
        }
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn zero_inbound_connections_is_a_config_error() {
    let l = bind_free().await;
    let addrs: BTreeMap<String, _> = [("a".to_owned(), l.local_addr().unwrap())]
        .into_iter()
        .collect();
    let mut cfg = config("a", addrs["a"], &addrs);
    cfg.max_inbound_connections = 0;
    let err = Messenger::<TestMsg>::start_with_listener(cfg, l).unwrap_err();
    assert!(err.to_string().contains("max_inbound_connections"), "{err}");
}

const VIEW_A: &str = "0=a:voter 1=b:voter";
const VIEW_B: &str = "0=b:voter 1=a:voter";

#[tokio::test]
async fn differing_membership_views_refuse_each_other_naming_both() {
    let la = bind_free().await;
    let lb = bind_free().await;
    let addrs: BTreeMap<String, _> = [
        ("a".to_owned(), la.local_addr().unwrap()),
        ("b".to_owned(), lb.local_addr().unwrap()),
    ]
    .into_iter()
    .collect();
    let mut a_cfg = config("a", addrs["a"], &addrs);
    a_cfg.membership = VIEW_A.into();
    let mut b_cfg = config("b", addrs["b"], &addrs);
    b_cfg.membership = VIEW_B.into();
    let (a, _ai) = Messenger::<TestMsg>::start_with_listener(a_cfg, la).unwrap();
    let (b, _bi) = Messenger::<TestMsg>::start_with_listener(b_cfg, lb).unwrap();
    // Each side refuses the other's hello, and each sees its own hello refused.
    eventually("both refusing and being refused", || {
        let (ca, cb) = (a.counters(), b.counters());
        ca.refused_handshakes > 0
            && cb.refused_handshakes > 0
            && ca.peers["b"].refused_by_peer > 0
            && cb.peers["a"].refused_by_peer > 0
    })
    .await;
    assert_eq!(a.counters().peers["b"].connects, 0);
    assert_eq!(b.counters().peers["a"].connects, 0);
    assert!(
        b.send("a", &TestMsg::Blob(vec![1])).is_ok(),
        "queued, never delivered"
    );
    assert_eq!(a.counters().received, 0);

    // The reason the listener gives names both views and both nodes.
    let mut h = hello(PROTOCOL_VERSION, CLUSTER, "b");
    h.membership = VIEW_B.into();
    let (s, reply) = raw_hello(addrs["a"], &h).await;
    match reply {
        HelloReply::Refused { reason } => {
            assert!(
                reason.contains(VIEW_A) && reason.contains(VIEW_B),
                "{reason}"
            );
            assert!(
                reason.contains("\"a\"") && reason.contains("\"b\""),
                "{reason}"
            );
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    closed_by_server(s).await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn equal_membership_views_link_up() {
    let la = bind_free().await;
    let lb = bind_free().await;
    let addrs: BTreeMap<String, _> = [
        ("a".to_owned(), la.local_addr().unwrap()),
        ("b".to_owned(), lb.local_addr().unwrap()),
    ]
    .into_iter()
    .collect();
    let mut a_cfg = config("a", addrs["a"], &addrs);
    a_cfg.membership = VIEW_A.into();
    let mut b_cfg = config("b", addrs["b"], &addrs);
    b_cfg.membership = VIEW_A.into();
    let (a, mut ai) = Messenger::<TestMsg>::start_with_listener(a_cfg, la).unwrap();
    let (b, _bi) = Messenger::<TestMsg>::start_with_listener(b_cfg, lb).unwrap();
    b.wait_established("a", 1).await.unwrap();
    b.send("a", &TestMsg::Blob(vec![7])).unwrap();
    assert_eq!(ai.recv().await.unwrap().msg, TestMsg::Blob(vec![7]));
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn an_acceptance_with_another_view_is_refused_by_the_connecting_side() {
    // A fake "b" accepts a's hello but answers with another view: a must not use the link.
    let la = bind_free().await;
    let fake = bind_free().await;
    let addrs: BTreeMap<String, _> = [
        ("a".to_owned(), la.local_addr().unwrap()),
        ("b".to_owned(), fake.local_addr().unwrap()),
    ]
    .into_iter()
    .collect();
    let mut a_cfg = config("a", addrs["a"], &addrs);
    a_cfg.membership = VIEW_A.into();
    let (a, _ai) = Messenger::<TestMsg>::start_with_listener(a_cfg, la).unwrap();
    let (mut s, _) = fake.accept().await.unwrap();
    let mut prefix = [0u8; 4];
    s.read_exact(&mut prefix).await.unwrap();
    let mut payload = vec![0u8; u32::from_le_bytes(prefix) as usize];
    s.read_exact(&mut payload).await.unwrap();
    let got: Hello =
        wire_codec::decode_payload(&payload, &mut rkyv::util::AlignedVec::new()).unwrap();
    assert_eq!(got.membership, VIEW_A);
    let reply = HelloReply::Accepted {
        node_name: "b".into(),
        membership: VIEW_B.into(),
    };
    s.write_all(Frame::encode(&reply, 4096).unwrap().as_bytes())
        .await
        .unwrap();
    eventually("a refusing the other view", || {
        a.counters().peers["b"].refused_by_peer > 0
    })
    .await;
    assert_eq!(a.counters().peers["b"].connects, 0);
    a.shutdown().await;
}

#[tokio::test]
async fn an_overlong_membership_view_is_a_configuration_error() {
    let l = bind_free().await;
    let addrs: BTreeMap<String, _> = [("a".to_owned(), l.local_addr().unwrap())]
        .into_iter()
        .collect();
    let mut cfg = config("a", addrs["a"], &addrs);
    cfg.membership = "x".repeat(tcp_messenger::MAX_MEMBERSHIP_LEN + 1);
    let err = Messenger::<TestMsg>::start_with_listener(cfg, l).unwrap_err();
    assert!(err.to_string().contains("membership"), "{err}");
}
