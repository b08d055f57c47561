//! The client port over TLS: the Rust client against the listener serving a write recorder
//! (tests/common, no store semantics), with and without client certificates, admin names,
//! and the bad inputs (plain TCP to a TLS port, TLS to a plain port, no / expired / foreign
//! client certificate, a node certificate that names another node), each refused while
//! other clients are served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use common::Recorder;
use rarakoon_client::listener::{Listener, ListenerConfig, ListenerTls};
use rarakoon_client::{Client, ClientConfig, ClientTls, Error};
use rarakoon_tls::testca::{Leaf, TestCa};
use rarakoon_tls::{Identity, TlsVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLUSTER: &str = "arakoon";
const PROLOGUE: [u8; 19] = [
    0x00, 0x00, 0xff, 0xb1, 0x01, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, b'a', b'r', b'a', b'k',
    b'o', b'o', b'n',
];
/// WHO_MASTER (0xB1FF0002).
const WHO_MASTER: [u8; 4] = [0x02, 0x00, 0xff, 0xb1];

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
}

/// A TLS listener for node_0; client certificates required when `validate_peer`.
async fn start(pki: &Pki, validate_peer: bool, admins: Option<&[&str]>) -> Listener {
    let node = pki.identity(Leaf::node("node_0"));
    let roots = validate_peer.then(|| Arc::clone(&pki.roots));
    let mut config = ListenerConfig::new(CLUSTER);
    config.tls = Some(ListenerTls {
        config: rarakoon_tls::server_config(&node, roots, TlsVersion::Tls12).unwrap(),
        admin_names: admins.map(|a| a.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>()),
    });
    let handler = Arc::new(Recorder::new("node_0"));
    Listener::bind("127.0.0.1:0".parse().unwrap(), config, handler)
        .await
        .unwrap()
}

fn client(pki: &Pki, name: &str, addr: SocketAddr, identity: Option<Identity>) -> Client {
    let mut config = ClientConfig::new(CLUSTER).node(name, addr);
    config.max_attempts = 1;
    config.tls = Some(ClientTls {
        roots: Arc::clone(&pki.roots),
        identity,
        version: TlsVersion::Tls12,
    });
    Client::new(config).unwrap()
}

fn plain_client(addr: SocketAddr) -> Client {
    let mut config = ClientConfig::new(CLUSTER).node("node_0", addr);
    config.max_attempts = 1;
    Client::new(config).unwrap()
}

#[tokio::test]
async fn tls_service_serves_clients_and_refuses_plain_tcp() {
    let pki = Pki::new("cluster-ca");
    let listener = start(&pki, false, None).await;
    let addr = listener.local_addr();
    let good = client(&pki, "node_0", addr, None);
    good.set("k", "v").await.unwrap();
    assert_eq!(good.get("k").await.unwrap(), "v");

    // Plain TCP speaking the protocol: the TLS handshake fails, the connection is closed.
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(&PROLOGUE).await.unwrap();
    raw.write_all(&WHO_MASTER).await.unwrap();
    let mut buf = Vec::new();
    let _ = raw.read_to_end(&mut buf).await;
    assert!(
        !buf.starts_with(&[0, 0, 0, 0]),
        "a plain client got a reply: {buf:?}"
    );
    assert!(plain_client(addr).get("k").await.is_err());
    assert!(listener.stats().snapshot().refused_tls >= 2);

    // A node certificate that names another node than the client dialled.
    let wrong = client(&pki, "node_1", addr, None);
    match wrong.get("k").await {
        Err(Error::NoMaster { last_error, .. }) => {
            assert!(last_error.contains("node_1"), "{last_error}")
        }
        other => panic!("a node answering under another name was accepted: {other:?}"),
    }
    // A client that trusts another CA.
    let stranger = Pki::new("other-ca");
    assert!(
        client(&stranger, "node_0", addr, None)
            .get("k")
            .await
            .is_err()
    );

    // The good client was served throughout (on its open connection and on a new one).
    assert_eq!(good.get("k").await.unwrap(), "v");
    assert_eq!(
        client(&pki, "node_0", addr, None).get("k").await.unwrap(),
        "v"
    );
    listener.shutdown().await;
}

#[tokio::test]
async fn validate_peer_requires_a_client_certificate_from_the_cluster_ca() {
    let pki = Pki::new("cluster-ca");
    let listener = start(&pki, true, None).await;
    let addr = listener.local_addr();
    let with_cert = client(
        &pki,
        "node_0",
        addr,
        Some(pki.identity(Leaf::client("app"))),
    );
    with_cert.set("k", "v").await.unwrap();

    let refused_before = listener.stats().snapshot().refused_tls;
    assert!(client(&pki, "node_0", addr, None).get("k").await.is_err());
    let expired = pki.identity(Leaf {
        expired: true,
        ..Leaf::client("app")
    });
    assert!(
        client(&pki, "node_0", addr, Some(expired))
            .get("k")
            .await
            .is_err()
    );
    let foreign = Pki::new("other-ca").identity(Leaf::client("app"));
    assert!(
        client(&pki, "node_0", addr, Some(foreign))
            .get("k")
            .await
            .is_err()
    );
    // In TLS 1.3 the client finishes its handshake before the server checked its
    // certificate; the refusal is counted once the server did.
    wait_for(|| listener.stats().snapshot().refused_tls >= refused_before + 3).await;

    assert_eq!(with_cert.get("k").await.unwrap(), "v");
    listener.shutdown().await;
}

#[tokio::test]
async fn admin_operations_need_an_admin_name() {
    let pki = Pki::new("cluster-ca");
    let listener = start(&pki, true, Some(&["ops"])).await;
    let addr = listener.local_addr();
    let app = client(
        &pki,
        "node_0",
        addr,
        Some(pki.identity(Leaf::client("app"))),
    );
    app.set("k", "v").await.unwrap();
    match app.flush_store().await {
        Err(Error::NotSupported(message)) => {
            let text = format!("{message:?}");
            assert!(
                text.contains("flush_store") && text.contains("app"),
                "{text}"
            )
        }
        other => panic!("a non-admin ran flush_store: {other:?}"),
    }
    assert!(matches!(
        app.drop_master().await,
        Err(Error::NotSupported(_))
    ));
    assert_eq!(listener.stats().snapshot().refused_admin, 2);
    // Ordinary requests still work for the same client (on a new connection: the refusal
    // closed the old one, like every E_NOT_SUPPORTED).
    assert_eq!(app.get("k").await.unwrap(), "v");

    let ops = client(
        &pki,
        "node_0",
        addr,
        Some(pki.identity(Leaf::client("ops"))),
    );
    ops.flush_store().await.unwrap();
    assert_eq!(listener.stats().snapshot().refused_admin, 2);
    listener.shutdown().await;
}

#[tokio::test]
async fn tls_to_a_plain_port_fails_and_the_port_keeps_serving() {
    let pki = Pki::new("cluster-ca");
    let handler = Arc::new(Recorder::new("node_0"));
    let listener = Listener::bind(
        "127.0.0.1:0".parse().unwrap(),
        ListenerConfig::new(CLUSTER),
        handler,
    )
    .await
    .unwrap();
    let addr = listener.local_addr();
    assert!(client(&pki, "node_0", addr, None).get("k").await.is_err());
    let plain = plain_client(addr);
    plain.set("k", "v").await.unwrap();
    assert_eq!(plain.get("k").await.unwrap(), "v");
    listener.shutdown().await;
}

/// Waits (yielding) until `cond` holds; the guard turns a bug into a failure, not a hang.
async fn wait_for(mut cond: impl FnMut() -> bool) {
    let wait = async {
        while !cond() {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), wait)
        .await
        .expect("condition not reached");
}

#[tokio::test]
async fn a_large_reply_to_a_slow_reader_arrives_whole_over_tls() {
    // The client sends a GET of a value larger than the sockets can buffer and reads nothing
    // until the listener has handed the whole reply to the TLS stream. The last TLS records
    // then wait in the session for the socket to drain: the listener must flush them once
    // the client reads, or the client waits for the tail of its reply for ever.
    let pki = Pki::new("cluster-ca");
    let listener = start(&pki, false, None).await;
    let addr = listener.local_addr();
    // Ten values just under max_value_size: a MULTI_GET reply of about 70 MiB, more than
    // the kernel buffers on both sides hold (Linux autotunes a loopback receive buffer up to
    // tcp_rmem's maximum, 32 MiB by default).
    let value = vec![b'x'; 7 * 1024 * 1024];
    let keys: Vec<String> = (0..10).map(|i| format!("big{i}")).collect();
    let setter = client(&pki, "node_0", addr, None);
    for key in &keys {
        setter.set(key.clone(), value.clone()).await.unwrap();
    }

    let config = rarakoon_tls::client_config(
        Arc::clone(&pki.roots),
        Some("node_0"),
        None,
        TlsVersion::Tls12,
    )
    .unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = rarakoon_tls::tokio_rustls::TlsConnector::from(config)
        .connect(rarakoon_tls::server_name(), tcp)
        .await
        .unwrap();
    let mut request = PROLOGUE.to_vec();
    request.extend_from_slice(&[0x11, 0x00, 0xff, 0xb1, 0x00]); // MULTI_GET, consistent
    request.extend_from_slice(&(keys.len() as u32).to_le_bytes());
    for key in &keys {
        request.extend_from_slice(&(key.len() as u32).to_le_bytes());
        request.extend_from_slice(key.as_bytes());
    }
    tls.write_all(&request).await.unwrap();
    tls.flush().await.unwrap();
    // Read slowly, one small chunk per look at the listener's counters, until the whole
    // reply has left the listener's queue: the sockets are then nearly full and the last TLS
    // records may still sit in the session. Stop reading for a moment (the listener sees a
    // full socket), then read the rest.
    let reply_len = 8 + keys.len() * (4 + value.len());
    let stats = listener.stats();
    let mut reply = vec![0u8; reply_len];
    let mut got = 0;
    while got < reply_len {
        let s = stats.snapshot();
        if s.requests_in_flight == 0 && s.queued_reply_bytes == 0 {
            break;
        }
        let n = tls
            .read(&mut reply[got..(got + 16 * 1024).min(reply_len)])
            .await
            .unwrap();
        assert!(n > 0, "closed after {got} bytes");
        got += n;
    }
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tls.read_exact(&mut reply[got..]),
    )
    .await
    .expect("the tail of the reply never arrived")
    .unwrap();
    assert_eq!(&reply[..4], &[0, 0, 0, 0]);
    assert_eq!(&reply[4..8], &(keys.len() as u32).to_le_bytes());
    for i in 0..keys.len() {
        let at = 8 + i * (4 + value.len());
        assert_eq!(&reply[at..at + 4], &(value.len() as u32).to_le_bytes());
        assert!(reply[at + 4..at + 4 + value.len()] == value[..]);
    }
    listener.shutdown().await;
}
