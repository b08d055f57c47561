//! A three-node cluster keeps serving clients while strangers sit on one node's messaging
//! port: silent connections, hellos that trickle in a byte at a time, and connections that
//! declare a huge frame instead of a hello. The timeouts themselves are tested in virtual
//! time in tcp-messenger (`tests/exhaustion.rs`); here the point is the node as a whole.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rarakoon_node::Node;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use support::{client, config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_on_a_messaging_port_do_not_stop_the_cluster_serving_clients() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 3);
    let file = dir.path().join("c.toml");
    let mut nodes = Vec::new();
    for n in &cfg.nodes {
        nodes.push(Node::start(&cfg, &n.name, &file).await.unwrap());
    }
    let c = client(&cfg);
    c.set("before", "1").await.unwrap();

    let target = nodes[0].messaging_addr();
    let mut strangers = Vec::new();
    for i in 0..30u32 {
        let mut s = TcpStream::connect(target).await.unwrap();
        match i % 3 {
            // Silent.
            0 => {}
            // The first bytes of a hello, the rest never comes.
            1 => s.write_all(&[40, 0, 0]).await.unwrap(),
            // A frame declaring 32 MiB (past the handshake bound) and one byte of it.
            _ => {
                let mut claim = (32u32 << 20).to_le_bytes().to_vec();
                claim.push(0);
                // The listener may already have closed it: that is the point.
                let _ = s.write_all(&claim).await;
            }
        }
        strangers.push(s);
    }
    // The cluster commits and answers throughout (writes go through the master, which needs
    // its peers' links).
    for i in 0..20 {
        c.set(format!("k{i}"), format!("v{i}")).await.unwrap();
    }
    for i in 0..20 {
        assert_eq!(
            c.get(format!("k{i}")).await.unwrap(),
            format!("v{i}").as_bytes()
        );
    }
    assert_eq!(c.get("before").await.unwrap(), "1");
    drop(strangers);
    for node in nodes {
        node.stop().await.unwrap();
    }
}
