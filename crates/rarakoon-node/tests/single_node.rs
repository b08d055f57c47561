//! In-process tests of a node: start real nodes on free ports in temp dirs and talk to them
//! through the Rust client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rarakoon_node::Node;

use support::{client, config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_writes_reads_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1);
    let file = dir.path().join("c.toml");
    let node = Node::start(&cfg, "n0", &file).await.unwrap();
    let c = client(&cfg);
    c.set("k", "v").await.unwrap();
    assert_eq!(c.get("k").await.unwrap(), "v");
    node.stop().await.unwrap();

    let node = Node::start(&cfg, "n0", &file).await.unwrap();
    let c = client(&cfg);
    assert_eq!(c.get("k").await.unwrap(), "v");
    c.set("k2", "v2").await.unwrap();
    node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_client_port_fails_start_cleanly_and_releases_everything() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1);
    let file = dir.path().join("c.toml");
    let blocker = std::net::TcpListener::bind(cfg.nodes[0].client_socket_address()).unwrap();
    let err = Node::start(&cfg, "n0", &file).await.unwrap_err();
    assert!(
        matches!(
            err,
            rarakoon_node::NodeError::Bind {
                what: "clients",
                ..
            }
        ),
        "{err}"
    );
    drop(blocker);
    // The lock, the messaging port and the storage thread were released: start again.
    let node = Node::start(&cfg, "n0", &file).await.unwrap();
    client(&cfg).set("k", "v").await.unwrap();
    node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_on_the_same_home_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1);
    let file = dir.path().join("c.toml");
    let node = Node::start(&cfg, "n0", &file).await.unwrap();
    let err = Node::start(&cfg, "n0", &file).await.unwrap_err();
    assert!(matches!(err, rarakoon_node::NodeError::Lock(_)), "{err}");
    node.stop().await.unwrap();
}
