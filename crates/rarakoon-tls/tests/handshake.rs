//! Handshakes over an in-memory pipe: which certificates each configuration accepts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use rarakoon_tls::testca::{Leaf, TestCa};
use rarakoon_tls::tokio_rustls::{TlsAcceptor, TlsConnector};
use rarakoon_tls::{Identity, TlsVersion, client_config, peer_names, server_config};
use rustls::RootCertStore;

fn roots(ca: &TestCa) -> Arc<RootCertStore> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap())
        .unwrap();
    Arc::new(roots)
}

fn id(ca: &TestCa, leaf: Leaf) -> Identity {
    ca.issue(&leaf).unwrap().identity().unwrap()
}

/// Runs one handshake; returns the client's and the server's result (the server's with the
/// names of the client certificate).
async fn shake(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
) -> (Result<(), String>, Result<Vec<String>, String>) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let accept = async move {
        TlsAcceptor::from(server)
            .accept(b)
            .await
            .map(|s| peer_names(s.get_ref().1))
            .map_err(|e| e.to_string())
    };
    let connect = async move {
        TlsConnector::from(client)
            .connect(rarakoon_tls::server_name(), a)
            .await
            .map_err(|e| e.to_string())
    };
    // The client's stream lives until the server is done (it writes session tickets).
    let (c, s) = tokio::join!(connect, accept);
    (c.map(drop), s)
}

#[tokio::test]
async fn mutual_tls_accepts_the_named_node_and_refuses_everything_else() {
    let ca = TestCa::new("cluster-ca").unwrap();
    let stranger_ca = TestCa::new("stranger-ca").unwrap();
    let v = TlsVersion::Tls12;
    let node0 = id(&ca, Leaf::node("node_0"));
    let server = server_config(&node0, Some(roots(&ca)), v).unwrap();

    // node_1 dials node_0 and expects node_0: accepted, node_0 sees node_1's name.
    let node1 = id(&ca, Leaf::node("node_1"));
    let dial = client_config(roots(&ca), Some("node_0"), Some(&node1), v).unwrap();
    let (c, s) = shake(server.clone(), dial).await;
    assert_eq!(c, Ok(()));
    assert_eq!(s, Ok(vec!["node_1".to_owned()]));

    // Expecting node_2 at an address where node_0 answers: refused by the dialler.
    let dial = client_config(roots(&ca), Some("node_2"), Some(&node1), v).unwrap();
    let (c, _) = shake(server.clone(), dial).await;
    let e = c.unwrap_err();
    assert!(e.contains("node_2") && e.contains("node_0"), "{e}");

    // No client certificate: refused by the server.
    let dial = client_config(roots(&ca), Some("node_0"), None, v).unwrap();
    let (_, s) = shake(server.clone(), dial).await;
    assert!(s.is_err(), "{s:?}");

    // A certificate from another CA: refused by the server.
    let foreign = id(&stranger_ca, Leaf::node("node_1"));
    let dial = client_config(roots(&ca), Some("node_0"), Some(&foreign), v).unwrap();
    let (_, s) = shake(server.clone(), dial).await;
    let e = s.unwrap_err();
    assert!(
        e.contains("UnknownIssuer") || e.contains("unknown issuer"),
        "{e}"
    );

    // An expired certificate: refused by the server.
    let expired = id(
        &ca,
        Leaf {
            expired: true,
            ..Leaf::node("node_1")
        },
    );
    let dial = client_config(roots(&ca), Some("node_0"), Some(&expired), v).unwrap();
    let (_, s) = shake(server.clone(), dial).await;
    let e = s.unwrap_err();
    assert!(e.to_lowercase().contains("expired"), "{e}");

    // A server from another CA: refused by the dialler.
    let foreign_server =
        server_config(&id(&stranger_ca, Leaf::node("node_0")), Some(roots(&ca)), v).unwrap();
    let dial = client_config(roots(&ca), Some("node_0"), Some(&node1), v).unwrap();
    let (c, _) = shake(foreign_server, dial).await;
    assert!(c.is_err(), "{c:?}");

    // A client-only certificate cannot serve as a node (no serverAuth usage).
    let client_as_server =
        server_config(&id(&ca, Leaf::client("node_0")), Some(roots(&ca)), v).unwrap();
    let dial = client_config(roots(&ca), Some("node_0"), Some(&node1), v).unwrap();
    let (c, _) = shake(client_as_server, dial).await;
    assert!(c.is_err(), "{c:?}");
}

#[tokio::test]
async fn a_cn_only_certificate_names_its_node() {
    let ca = TestCa::new("cluster-ca").unwrap();
    let v = TlsVersion::Tls13;
    let cn_only = id(
        &ca,
        Leaf {
            san: false,
            ..Leaf::node("node_0")
        },
    );
    let server = server_config(&cn_only, None, v).unwrap();
    let dial = client_config(roots(&ca), Some("node_0"), None, v).unwrap();
    let (c, s) = shake(server, dial).await;
    assert_eq!(c, Ok(()));
    assert_eq!(s, Ok(vec![]));
}

#[tokio::test]
async fn a_tls13_only_server_refuses_a_tls12_only_client() {
    let ca = TestCa::new("cluster-ca").unwrap();
    let node0 = id(&ca, Leaf::node("node_0"));
    let server = server_config(&node0, None, TlsVersion::Tls13).unwrap();
    let provider = rarakoon_tls::provider();
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots(&ca))
        .with_no_client_auth();
    client.enable_sni = false;
    let (c, s) = shake(server, Arc::new(client)).await;
    assert!(c.is_err() && s.is_err(), "{c:?} {s:?}");
}
