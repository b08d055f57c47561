//! Mutual TLS between messengers: links come up and carry messages; impersonation (a valid
//! certificate of one node claiming another name, a client certificate, a stranger knowing
//! only the cluster id), foreign, expired and missing certificates, plain TCP to a TLS port
//! and TLS to a plain port are refused and counted, and the legitimate links keep working.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{CLUSTER, TestMsg, bind_free, config, eventually};
use rarakoon_tls::testca::{Leaf, TestCa};
use rarakoon_tls::tokio_rustls::TlsConnector;
use rarakoon_tls::{Identity, TlsVersion};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tcp_messenger::{
    Frame, Hello, HelloReply, Inbox, Messenger, MessengerTls, PROTOCOL_VERSION, StartError,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

struct Pki {
    ca: TestCa,
    roots: Arc<rustls::RootCertStore>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let ca = TestCa::new(name).unwrap();
        let roots = ca.roots().unwrap();
        Pki { ca, roots }
    }

    fn identity(&self, leaf: Leaf) -> Identity {
        self.ca.issue(&leaf).unwrap().identity().unwrap()
    }

    fn tls(&self, name: &str) -> MessengerTls {
        MessengerTls {
            roots: Arc::clone(&self.roots),
            identity: self.identity(Leaf::node(name)),
            version: TlsVersion::Tls12,
        }
    }
}

/// Messengers `names` with TLS (from `pki`) where `tls` says so.
async fn cluster(
    pki: &Pki,
    names: &[(&str, bool)],
) -> (
    Vec<(Messenger<TestMsg>, Inbox<TestMsg>)>,
    BTreeMap<String, SocketAddr>,
) {
    let mut listeners = Vec::new();
    let mut addrs = BTreeMap::new();
    for (name, _) in names {
        let l = bind_free().await;
        addrs.insert((*name).to_owned(), l.local_addr().unwrap());
        listeners.push(l);
    }
    let mut nodes = Vec::new();
    for ((name, tls), listener) in names.iter().zip(listeners) {
        let mut cfg = config(name, addrs[*name], &addrs);
        if *tls {
            cfg.tls = Some(pki.tls(name));
        }
        nodes.push(Messenger::start_with_listener(cfg, listener).unwrap());
    }
    (nodes, addrs)
}

fn hello_as(name: &str) -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        cluster_id: CLUSTER.into(),
        node_name: name.into(),
        membership: String::new(),
    }
}

/// Sends a hello as `name` on `s` and reads the reply (None: the connection ended first).
async fn say_hello<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, name: &str) -> Option<HelloReply> {
    s.write_all(Frame::encode(&hello_as(name), 4096).unwrap().as_bytes())
        .await
        .ok()?;
    s.flush().await.ok()?;
    let mut prefix = [0u8; 4];
    s.read_exact(&mut prefix).await.ok()?;
    let mut payload = vec![0u8; u32::from_le_bytes(prefix) as usize];
    s.read_exact(&mut payload).await.ok()?;
    Some(
        wire_codec::decode_payload::<HelloReply>(&payload, &mut rkyv::util::AlignedVec::new())
            .unwrap(),
    )
}

/// Dials `addr` with TLS, presenting `identity` (expecting the listener to be `expect`), and
/// says hello as `claim`. Err: the TLS handshake or the read failed.
async fn tls_hello(
    pki: &Pki,
    addr: SocketAddr,
    expect: &str,
    identity: Option<&Identity>,
    claim: &str,
) -> Option<HelloReply> {
    let config = rarakoon_tls::client_config(
        Arc::clone(&pki.roots),
        Some(expect),
        identity,
        TlsVersion::Tls12,
    )
    .unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = TlsConnector::from(config)
        .connect(rarakoon_tls::server_name(), tcp)
        .await
        .ok()?;
    say_hello(&mut tls, claim).await
}

async fn roundtrip(
    nodes: &mut [(Messenger<TestMsg>, Inbox<TestMsg>)],
    from: usize,
    to: usize,
    to_name: &str,
    n: u64,
) {
    let from_name = format!("node_{from}");
    nodes[from]
        .0
        .send(
            to_name,
            &TestMsg::Seq {
                from: from_name.clone(),
                n,
            },
        )
        .unwrap();
    let got = nodes[to].1.recv().await.unwrap();
    assert_eq!(&*got.from, from_name);
    assert_eq!(got.msg, TestMsg::Seq { from: from_name, n });
}

fn refused(m: &Messenger<TestMsg>) -> u64 {
    m.counters().refused_handshakes
}

#[tokio::test]
async fn tls_links_carry_messages_and_impostors_are_refused() {
    let pki = Pki::new("cluster-ca");
    let (mut nodes, addrs) = cluster(
        &pki,
        &[("node_0", true), ("node_1", true), ("node_2", true)],
    )
    .await;
    for (i, (m, _)) in nodes.iter().enumerate() {
        for peer in addrs.keys().filter(|p| **p != format!("node_{i}")) {
            m.wait_established(peer, 1).await.unwrap();
        }
    }
    roundtrip(&mut nodes, 1, 0, "node_0", 1).await;
    roundtrip(&mut nodes, 0, 2, "node_2", 2).await;
    let node0 = addrs["node_0"];
    let before = refused(&nodes[0].0);

    // node_1's valid certificate claiming node_2.
    let node1_cert = pki.identity(Leaf::node("node_1"));
    match tls_hello(&pki, node0, "node_0", Some(&node1_cert), "node_2").await {
        Some(HelloReply::Refused { reason }) => {
            assert!(
                reason.contains("node_2") && reason.contains("node_1"),
                "{reason}"
            )
        }
        other => panic!("impostor not refused: {other:?}"),
    }
    // A client certificate (signed by the same CA) on the messaging port.
    let client_cert = pki.identity(Leaf::client("admin"));
    match tls_hello(&pki, node0, "node_0", Some(&client_cert), "node_1").await {
        Some(HelloReply::Refused { reason }) => assert!(reason.contains("admin"), "{reason}"),
        other => panic!("client certificate not refused: {other:?}"),
    }
    // A stranger who knows the cluster id but has no certificate: no TLS session.
    assert_eq!(tls_hello(&pki, node0, "node_0", None, "node_1").await, None);
    // The same stranger over plain TCP: the TLS handshake fails on its hello.
    let mut plain = TcpStream::connect(node0).await.unwrap();
    assert_eq!(say_hello(&mut plain, "node_1").await, None);
    // A certificate from another CA, and an expired one.
    let foreign = Pki::new("stranger-ca").identity(Leaf::node("node_1"));
    assert_eq!(
        tls_hello(&pki, node0, "node_0", Some(&foreign), "node_1").await,
        None
    );
    let expired = pki.identity(Leaf {
        expired: true,
        ..Leaf::node("node_1")
    });
    assert_eq!(
        tls_hello(&pki, node0, "node_0", Some(&expired), "node_1").await,
        None
    );

    eventually("six refusals counted", || {
        refused(&nodes[0].0) >= before + 6
    })
    .await;
    // The legitimate links still work, both ways.
    roundtrip(&mut nodes, 1, 0, "node_0", 3).await;
    roundtrip(&mut nodes, 0, 1, "node_1", 4).await;
    roundtrip(&mut nodes, 2, 0, "node_0", 5).await;
    for (m, _) in &nodes {
        m.shutdown().await;
    }
}

#[tokio::test]
async fn a_dialler_refuses_a_listener_whose_certificate_names_another_node() {
    let pki = Pki::new("cluster-ca");
    // node_0 believes node_2 lives where node_1 listens.
    let l0 = bind_free().await;
    let l1 = bind_free().await;
    let a0 = l0.local_addr().unwrap();
    let a1 = l1.local_addr().unwrap();
    let view0: BTreeMap<String, SocketAddr> =
        [("node_0".to_owned(), a0), ("node_2".to_owned(), a1)].into();
    let view1: BTreeMap<String, SocketAddr> = [("node_1".to_owned(), a1)].into();
    let mut c0 = config("node_0", a0, &view0);
    c0.tls = Some(pki.tls("node_0"));
    let mut c1 = config("node_1", a1, &view1);
    c1.tls = Some(pki.tls("node_1"));
    let (m0, _i0) = Messenger::<TestMsg>::start_with_listener(c0, l0).unwrap();
    let (m1, _i1) = Messenger::<TestMsg>::start_with_listener(c1, l1).unwrap();
    eventually("node_0 failed to reach \"node_2\" twice", || {
        m0.counters().peers["node_2"].failed_attempts >= 2
    })
    .await;
    assert_eq!(m0.counters().peers["node_2"].connects, 0);
    m0.shutdown().await;
    m1.shutdown().await;
}

#[tokio::test]
async fn tls_and_plain_nodes_do_not_link_and_say_why() {
    let pki = Pki::new("cluster-ca");
    let (nodes, addrs) = cluster(&pki, &[("node_0", false), ("node_1", true)]).await;
    // node_1 (TLS) dials node_0 (plain): node_0 refuses a TLS ClientHello as its hello.
    eventually("plain node refused the TLS peer", || {
        refused(&nodes[0].0) >= 1
    })
    .await;
    // node_0 (plain) dials node_1 (TLS): node_1's TLS handshake fails.
    eventually("TLS node refused the plain peer", || {
        refused(&nodes[1].0) >= 1
    })
    .await;
    assert_eq!(nodes[0].0.counters().peers["node_1"].connects, 0);
    assert_eq!(nodes[1].0.counters().peers["node_0"].connects, 0);
    // Both listeners still serve: a plain hello as node_1 is accepted by node_0.
    let mut plain = TcpStream::connect(addrs["node_0"]).await.unwrap();
    assert!(matches!(
        say_hello(&mut plain, "node_1").await,
        Some(HelloReply::Accepted { .. })
    ));
    for (m, _) in &nodes {
        m.shutdown().await;
    }
}

#[tokio::test]
async fn a_node_whose_certificate_names_another_node_does_not_start() {
    let pki = Pki::new("cluster-ca");
    let l = bind_free().await;
    let a = l.local_addr().unwrap();
    let mut c = config("node_0", a, &[("node_0".to_owned(), a)].into());
    c.tls = Some(pki.tls("node_1"));
    match Messenger::<TestMsg>::start_with_listener(c, l) {
        Err(StartError::Config(reason)) => {
            assert!(
                reason.contains("node_1") && reason.contains("node_0"),
                "{reason}"
            )
        }
        other => panic!(
            "started with another node's certificate: {:?}",
            other.map(|_| ())
        ),
    }
}
