//! In-process tests of a node: start real nodes on free ports in temp dirs and talk to them
//! through the Rust client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::time::Duration;

use rarakoon_client::{Client, ClientConfig};
use rarakoon_node::{ClusterConfig, Node};

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(dir: &Path, nodes: usize) -> ClusterConfig {
    let mut text = String::from("[cluster]\nid = \"t\"\nlease_period_secs = 1\n");
    for i in 0..nodes {
        text.push_str(&format!(
            "[[nodes]]\nname = \"n{i}\"\naddresses = [\"127.0.0.1:{}\"]\nclient_port = {}\nhome_dir = \"n{i}\"\n",
            free_port(),
            free_port()
        ));
    }
    ClusterConfig::from_toml_str(&text, &dir.join("c.toml"), dir).unwrap()
}

fn client(config: &ClusterConfig) -> Client {
    let mut c = ClientConfig::new(config.cluster.id.clone());
    for n in &config.nodes {
        c = c.node(n.name.clone(), n.client_socket_address());
    }
    c.request_timeout = Duration::from_secs(5);
    c.max_attempts = 50;
    Client::new(c).unwrap()
}

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
