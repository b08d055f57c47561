//! The Rust client against real nodes: every client operation's semantics as a node serves
//! them (one node, started in-process), the bytes of docs/protocol.md §11 on a raw socket, a
//! client that finds the master through a slave and what a slave refuses and serves (three
//! nodes), and a write after the node restarted. These used to run against an in-memory copy
//! of the semantics in rarakoon-client; now there is one implementation, the node's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;

use bytes::Bytes;
use rarakoon_client::{
    Client, ClientCfg, Consistency, Error, ErrorCode, ErrorReply, Interval, NodeAddress, Request,
    Response, Routing, Sequence, Value,
};
use rarakoon_node::Node;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::{SingleNode, b, bs, raw_calls};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_reads_and_writes() {
    let n = SingleNode::start().await;
    let c = &n.client;
    assert_eq!(c.ping().await.unwrap(), "Arakoon 1.9.0");
    assert_eq!(c.who_master().await.unwrap(), Some(b("n0")));
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
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_keys_and_failed_assertions_keep_the_connection() {
    let n = SingleNode::start().await;
    let c = &n.client;
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
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_queries_in_logical_order() {
    let n = SingleNode::start().await;
    let c = &n.client;
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
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_swap_family() {
    let n = SingleNode::start().await;
    let c = &n.client;
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
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequences_are_atomic() {
    let n = SingleNode::start().await;
    let c = &n.client;
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
    assert_eq!(c.get_key_count().await.unwrap(), 4);
    assert!(!c.exists("x").await.unwrap());
    assert_eq!(
        c.prefix_keys("", -1).await.unwrap(),
        bs(&["a", "b", "c", "d"])
    );

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
    // No user function registered: unknown (0x26), inside a sequence too.
    assert!(matches!(
        c.sequence(Sequence::new().user_function("f", None)).await,
        Err(Error::BadInput(_))
    ));
    c.sequence(Sequence::new()).await.unwrap();
    assert!(!c.exists("y").await.unwrap());
    assert_eq!(c.get_key_count().await.unwrap(), 4);
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_and_informational_operations() {
    let n = SingleNode::start().await;
    let c = &n.client;
    c.set("k", "v").await.unwrap();
    assert!(c.expect_progress_possible().await.unwrap());
    let Consistency::AtLeast(before) = c.get_txid().await.unwrap() else {
        panic!("get_txid answers an index")
    };
    c.nop().await.unwrap();
    let Consistency::AtLeast(after) = c.get_txid().await.unwrap() else {
        panic!("get_txid answers an index")
    };
    assert!(after > before, "a nop commits: {before} then {after}");
    let v = c.version().await.unwrap();
    assert_eq!((v.major, v.minor, v.patch), (1, 9, 0));
    assert_eq!(c.current_state().await.unwrap(), "Stable_master");
    let stats = c.statistics().await.unwrap();
    assert_eq!(&stats.name[..], b"arakoon_stats");
    let Value::List(children) = &stats.value else {
        panic!()
    };
    assert_eq!(&children[children.len() - 1].name[..], b"node_is");
    let Value::Int64(node_is) = stats.get("node_is").unwrap().get("n0").unwrap().value else {
        panic!("node_is names n0's last index")
    };
    assert!(node_is >= after, "node_is {node_is}, txid {after}");
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
    // Everything still works after the connection-closing errors above.
    assert_eq!(c.get("k").await.unwrap(), "v");
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nursery_operations_are_refused_except_the_two_reads() {
    // Rarakoon has no nursery (Arakoon's legacy sharding): the interval reads as the
    // default, there is no routing, and every other nursery request is E_NOT_SUPPORTED.
    let n = SingleNode::start().await;
    let c = &n.client;
    assert_eq!(c.get_interval().await.unwrap(), Interval::default());
    assert!(matches!(c.get_routing().await, Err(Error::NotFound(_))));
    let interval = Interval {
        public_begin: Some(b("a")),
        ..Interval::default()
    };
    let routing = Routing::Cluster(b("left"));
    let cfg = ClientCfg {
        nodes: vec![NodeAddress {
            name: b("n0"),
            ips: bs(&["127.0.0.1"]),
            client_port: 4000,
        }],
    };
    let refused = [
        c.set_interval(interval).await,
        c.set_routing(routing).await,
        c.set_routing_delta("a", "m", "b").await,
        c.set_nursery_cfg("left", cfg).await,
        c.get_nursery_cfg().await.map(|_| ()),
        c.migrate_range(Interval::default(), Sequence::new().set("z", "1"))
            .await,
        c.get_fringe(Some("b"), 0).await.map(|_| ()),
    ];
    for (i, result) in refused.into_iter().enumerate() {
        assert!(
            matches!(result, Err(Error::NotSupported(_))),
            "request {i}: {result:?}"
        );
    }
    // Nothing was written, and the client goes on after the refusals.
    assert!(!c.exists("z").await.unwrap());
    assert_eq!(c.get_interval().await.unwrap(), Interval::default());
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_consistency_levels() {
    let n = SingleNode::start().await;
    let c = &n.client;
    c.set("k", "v").await.unwrap();
    let fresh = c.with_consistency(Consistency::AtLeast(1));
    assert_eq!(fresh.get("k").await.unwrap(), "v");
    let too_fresh = c.with_consistency(Consistency::AtLeast(1_000_000));
    match too_fresh.get("k").await {
        Err(Error::InconsistentRead(m)) => assert_eq!(m.0, "store not fresh enough"),
        other => panic!("{other:?}"),
    }
    let dirty = c.with_consistency(Consistency::NoGuarantees);
    assert_eq!(dirty.get("k").await.unwrap(), "v");
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_bytes_of_section_11() {
    let n = SingleNode::start().await;
    // Wait for the master, so the pipelined set below is not refused.
    n.client.set("warm", "up").await.unwrap();
    let mut s = TcpStream::connect(n.node.client_addr()).await.unwrap();
    let mut bytes = support::prologue_bytes("t");
    // Pipelined: get "k" (missing), set "k" "v", get "k", who_master.
    bytes.extend_from_slice(&[0x08, 0x00, 0xff, 0xb1, 0x00, 0x01, 0, 0, 0, b'k']);
    bytes.extend_from_slice(&[
        0x09, 0x00, 0xff, 0xb1, 0x01, 0, 0, 0, b'k', 0x01, 0, 0, 0, b'v',
    ]);
    bytes.extend_from_slice(&[0x08, 0x00, 0xff, 0xb1, 0x00, 0x01, 0, 0, 0, b'k']);
    bytes.extend_from_slice(&[0x02, 0x00, 0xff, 0xb1]);
    s.write_all(&bytes).await.unwrap();
    let mut expected = support::frame(0x05, b"Not_found");
    expected.extend_from_slice(&[0, 0, 0, 0]);
    expected.extend_from_slice(&[0, 0, 0, 0, 1, 0, 0, 0, b'v']);
    expected.extend_from_slice(&[0, 0, 0, 0, 1, 2, 0, 0, 0]);
    expected.extend_from_slice(b"n0");
    let mut got = vec![0u8; expected.len()];
    s.read_exact(&mut got).await.unwrap();
    assert_eq!(got, expected);
    drop(s);
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_request_applies_nothing() {
    let n = SingleNode::start().await;
    n.client.set("warm", "up").await.unwrap();
    let mut s = TcpStream::connect(n.node.client_addr()).await.unwrap();
    let mut bytes = support::prologue_bytes("t");
    // A sequence of two sets, cut off before its last byte.
    bytes.extend_from_slice(&[
        0x10, 0x00, 0xff, 0xb1, 0x24, 0, 0, 0, 0x05, 0, 0, 0, 0x02, 0, 0, 0, 0x01, 0, 0, 0, 0x01,
        0, 0, 0, b'a', 0x01, 0, 0, 0, b'1', 0x01, 0, 0, 0, 0x01, 0, 0, 0, b'b', 0x01, 0, 0, 0,
    ]);
    s.write_all(&bytes).await.unwrap();
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, Vec::<u8>::new());
    drop(s);
    // The listener saw the EOF and dropped the partial request; nothing was applied.
    assert!(!n.client.exists("a").await.unwrap());
    assert!(!n.client.exists("b").await.unwrap());
    assert_eq!(n.client.get_key_count().await.unwrap(), 1);
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_after_the_node_restarted_is_not_indeterminate() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = support::config(dir.path(), 1);
    let file = dir.path().join("c.toml");
    let node = Node::start(&cfg, "n0", &file).await.unwrap();
    let c = support::client(&cfg);
    c.set("k", "v").await.unwrap();
    // The node goes away (closing the idle connection) and comes back on the same port.
    node.stop().await.unwrap();
    let node = Node::start(&cfg, "n0", &file).await.unwrap();
    // The client notices the closed connection before sending: the write is simply redone
    // on a new connection, never reported as indeterminate.
    match c.set("k2", "v2").await {
        Ok(()) => {}
        Err(e) => panic!("the write after the restart failed: {e:?}"),
    }
    assert_eq!(c.get("k2").await.unwrap(), "v2");
    assert_eq!(c.get("k").await.unwrap(), "v");
    node.stop().await.unwrap();
}

/// Three nodes; returns them, the config and a client for all of them, once a master is known.
async fn three_nodes(dir: &std::path::Path) -> (Vec<Node>, rarakoon_node::ClusterConfig, Client) {
    let cfg = support::config(dir, 3);
    let file = dir.join("c.toml");
    let mut nodes = Vec::new();
    for n in &cfg.nodes {
        nodes.push(Node::start(&cfg, &n.name, &file).await.unwrap());
    }
    let c = support::client(&cfg);
    support::set_retrying(&c, "warm", "up").await;
    (nodes, cfg, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_finds_the_master_through_a_slave() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, cfg, c) = three_nodes(dir.path()).await;
    let master = c.who_master().await.unwrap().unwrap();
    // A client that knows only a slave first (the BTreeMap order puts it first) still
    // reaches the master.
    let slave = cfg
        .nodes
        .iter()
        .find(|n| n.name.as_bytes() != &master[..])
        .unwrap();
    let master_cfg = cfg
        .nodes
        .iter()
        .find(|n| n.name.as_bytes() == &master[..])
        .unwrap();
    let mut config = rarakoon_client::ClientConfig::new(cfg.cluster.id.clone())
        .node(format!("0{}", slave.name), slave.client_socket_address());
    config = config.node(master_cfg.name.clone(), master_cfg.client_socket_address());
    config.request_timeout = std::time::Duration::from_secs(5);
    config.max_attempts = 50;
    let via_slave = Client::new(config).unwrap();
    // The slave's name is spelled differently, so the client only learns the master from
    // the slave's answer and must connect to the named node itself.
    support::set_retrying(&via_slave, "k", "v").await;
    assert_eq!(c.get("k").await.unwrap(), "v");
    for node in nodes {
        node.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slave_gates_writes_and_consistent_reads_but_serves_admin_and_dirty_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, _cfg, c) = three_nodes(dir.path()).await;
    let master = c.who_master().await.unwrap().unwrap();
    let slave = nodes
        .iter()
        .find(|n| n.name().as_bytes() != &master[..])
        .unwrap();
    let addr: SocketAddr = slave.client_addr();
    let not_master = Err(ErrorReply::new(ErrorCode::NotMaster, master.clone()));
    // Admin operations meant for slaves succeed, pipelined on one connection.
    let replies = raw_calls(
        addr,
        "t",
        &[
            Request::OptimizeDb,
            Request::DefragDb,
            Request::WhoMaster,
            Request::Get {
                consistency: Consistency::NoGuarantees,
                key: b("never-written"),
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
            Ok(Response::WhoMaster(Some(master.clone()))),
            Err(ErrorReply::not_found()),
            Ok(Response::CurrentState(b("Slave_steady_state"))),
        ]
    );
    // A write, then (new connection, since NotMaster closes) a consistent read.
    assert_eq!(
        raw_calls(
            addr,
            "t",
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
            "t",
            &[Request::Get {
                consistency: Consistency::Consistent,
                key: b("k"),
            }]
        )
        .await,
        vec![not_master]
    );
    assert!(!c.exists("k").await.unwrap(), "the slave applied nothing");
    for node in nodes {
        node.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_with_another_cluster_is_refused() {
    let n = SingleNode::start().await;
    let mut s = TcpStream::connect(n.node.client_addr()).await.unwrap();
    let mut bytes = support::prologue_bytes("t");
    bytes.extend_from_slice(&[
        0x01, 0x00, 0xff, 0xb1, 0x01, 0, 0, 0, b'c', 0x01, 0, 0, 0, b'x',
    ]);
    s.write_all(&bytes).await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, support::frame(0x06, b"Wrong cluster"));
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assert_range_failure_message_is_the_references() {
    let n = SingleNode::start().await;
    let c = &n.client;
    for key in ["pa", "pc", "q"] {
        c.set(key, "v").await.unwrap();
    }
    // Wire list [pb, pa]: the reference reverses it to [pa, pb] and shows it as one
    // %S-quoted string.
    let update = rarakoon_client::Update::AssertRange {
        prefix: b("p"),
        assertion: rarakoon_client::RangeAssertion::ContainsExactly(vec![b("pb"), b("pa")]),
    };
    match c.sequence(Sequence::new().push(update)).await {
        Err(Error::AssertionFailed(m)) => {
            assert_eq!(&m.0[..], b"ContainsExactly [ \"pa; pb\" ] actual: pa,pc")
        }
        other => panic!("{other:?}"),
    }
    n.stop().await;
}

/// Arakoon's node catch-up over the client port is not served (ADR 0175): each of the three
/// requests is read whole and answered E_NOT_SUPPORTED naming the reason, and the client goes
/// on working after the connection-closing refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_entries_requests_are_refused_with_the_reason() {
    let n = SingleNode::start().await;
    let c = &n.client;
    c.set("k", "v").await.unwrap();
    for start_i in [0, 1, i64::MAX, -1] {
        for request in [
            Request::LastEntries { start_i },
            Request::LastEntries2 { start_i },
            Request::LastEntries3 { start_i },
        ] {
            match c.request(request.clone()).await {
                Err(Error::NotSupported(m)) => assert!(
                    String::from_utf8_lossy(&m.0).contains("catch-up over the client port"),
                    "{request:?}: {m:?}"
                ),
                other => panic!("{request:?}: {other:?}"),
            }
        }
    }
    assert_eq!(c.get("k").await.unwrap(), "v");
    n.stop().await;
}

/// One connection to the master of three nodes, every request written at once: writes to one
/// key and to others run pipelined (several in one Paxos batch or in values in flight
/// together), and each consistent read sees exactly the last write before it on the
/// connection, never a later one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_read_sees_the_writes_before_it_on_its_connection_and_no_later_one() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, cfg, c) = three_nodes(dir.path()).await;
    let rounds = 40;
    // A loaded machine can let the 1 s lease lapse under a write (answered E_NO_LONGER_MASTER
    // or E_NOT_MASTER, see `support::set_retrying`): such an attempt is repeated on fresh keys.
    for attempt in 0..10 {
        let master = c.who_master().await.unwrap().unwrap();
        let addr = cfg
            .nodes
            .iter()
            .find(|n| n.name.as_bytes() == &master[..])
            .unwrap()
            .client_socket_address();
        if pipelined_round_trip(addr, attempt, rounds).await {
            for node in nodes {
                node.stop().await.unwrap();
            }
            return;
        }
    }
    panic!("the master lost its lease in every attempt");
}

/// The requests of [`a_pipelined_read_sees_the_writes_before_it_on_its_connection_and_no_later_one`]
/// on keys of `attempt`; false if the master lost its role meanwhile (nothing checked then).
async fn pipelined_round_trip(addr: SocketAddr, attempt: u32, rounds: usize) -> bool {
    let k = b(&format!("k{attempt}"));
    let mut requests = Vec::new();
    for i in 0..rounds {
        // Several writes in flight before each read: the read must wait for all of them.
        for j in 0..3 {
            requests.push(Request::Set {
                key: b(&format!("other{attempt}-{i}-{j}")),
                value: b("x"),
            });
        }
        requests.push(Request::Set {
            key: k.clone(),
            value: b(&format!("v{i}")),
        });
        requests.push(Request::Get {
            consistency: Consistency::Consistent,
            key: k.clone(),
        });
        requests.push(Request::Exists {
            consistency: Consistency::Consistent,
            key: b(&format!("other{attempt}-{i}-2")),
        });
        // The next round's write of "k" is already written on the socket behind this read.
    }
    let replies = raw_calls(addr, "t", &requests).await;
    assert_eq!(replies.len(), requests.len());
    let lapsed = |r: &rarakoon_client::Reply| matches!(r, Err(e) if matches!(e.code, ErrorCode::NotMaster | ErrorCode::NoLongerMaster));
    if replies.iter().any(lapsed) {
        return false;
    }
    for (i, round) in replies.chunks(6).enumerate() {
        for set in &round[..4] {
            assert_eq!(set, &Ok(Response::Set), "round {i}");
        }
        assert_eq!(
            round[4],
            Ok(Response::Get(b(&format!("v{i}")))),
            "round {i}: the read did not see exactly its connection's last write before it"
        );
        assert_eq!(round[5], Ok(Response::Exists(true)), "round {i}");
    }
    true
}
