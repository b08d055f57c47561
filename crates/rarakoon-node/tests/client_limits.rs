//! `[cluster.clients]` reaches the node's client listener: a configured prologue timeout far
//! below the default (0.5 s against 10 s) closes a silent connection long before the default
//! would. The listener's own timeout logic is tested in virtual time in rarakoon-client; here
//! the point is that the config key is wired through to it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use rarakoon_node::{ClusterConfig, Node};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_prologue_timeout_closes_a_silent_client() {
    let dir = tempfile::tempdir().unwrap();
    let base = support::config(dir.path(), 1);
    let mut text = toml::to_string(&base).unwrap();
    text.push_str("\n[cluster.clients]\nprologue_timeout_secs = 0.5\n");
    let file = dir.path().join("c.toml");
    let cfg = ClusterConfig::from_toml_str(&text, &file, dir.path()).unwrap();
    assert_eq!(cfg.cluster.clients.prologue_timeout_secs, 0.5);
    let node = Node::start(&cfg, "n0", &file).await.unwrap();

    let mut silent = TcpStream::connect(node.client_addr()).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    // The listener closes the connection (EOF, or a reset) once the prologue timeout passes;
    // the bound only ends a run where the key is ignored and the 10 s default applies.
    let closed = tokio::time::timeout(Duration::from_secs(60), silent.read(&mut buf)).await;
    let waited = started.elapsed();
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "the silent connection was not closed: {closed:?}"
    );
    assert!(
        waited < Duration::from_secs(5),
        "closed after {waited:?}: the default prologue timeout (10 s) applied, not the \
         configured 0.5 s"
    );
    // A client that speaks is served as ever.
    support::client(&cfg).set("k", "v").await.unwrap();
    node.stop().await.unwrap();
}
