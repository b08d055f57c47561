//! The Rust client's cluster features against real nodes: reads that may be dirty served by
//! a slave (`ClientConfig::read_from_slaves`), and one `Client` shared by many tasks over a
//! bounded pool of connections (`ClientConfig::max_connections_per_node`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use rarakoon_client::{Client, ClientConfig, Consistency, Error};
use rarakoon_node::Node;

use support::{b, config};

/// A client of `cfg`'s nodes named in `only` (all when empty), patient for elections.
fn client_of(cfg: &rarakoon_node::ClusterConfig, only: &[&str]) -> ClientConfig {
    let mut c = ClientConfig::new(cfg.cluster.id.clone());
    for n in &cfg.nodes {
        if only.is_empty() || only.contains(&n.name.as_str()) {
            c = c.node(n.name.clone(), n.client_socket_address());
        }
    }
    c.request_timeout = Duration::from_secs(5);
    c
}

/// Repeats `read` (each a round trip to a node) until it yields `Some`; the bound turns a
/// slave that never catches up into a failure instead of a hang.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    mut read: impl FnMut() -> F,
) -> T {
    let wait = async {
        loop {
            if let Some(v) = read().await {
                return v;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .expect("the condition never held")
}

async fn three_nodes(dir: &std::path::Path) -> (Vec<Node>, rarakoon_node::ClusterConfig, Client) {
    let cfg = config(dir, 3);
    let file = dir.join("c.toml");
    let mut nodes = Vec::new();
    for n in &cfg.nodes {
        nodes.push(Node::start(&cfg, &n.name, &file).await.unwrap());
    }
    let c = support::client(&cfg);
    support::set_retrying(&c, "k", "v").await;
    (nodes, cfg, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dirty_read_is_served_by_a_slave_that_the_client_alone_knows() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, cfg, c) = three_nodes(dir.path()).await;
    let master = String::from_utf8(c.who_master().await.unwrap().unwrap().to_vec()).unwrap();
    let slave = cfg
        .nodes
        .iter()
        .find(|n| n.name != master)
        .unwrap()
        .name
        .clone();

    // A client that knows only the slave: every request it makes goes to the slave.
    let mut only_slave = client_of(&cfg, &[&slave]);
    only_slave.consistency = Consistency::NoGuarantees;
    only_slave.max_attempts = 1;
    only_slave.read_from_slaves = true;
    let dirty = Client::new(only_slave.clone()).unwrap();
    // The slave applies what the master committed; its dirty reads see it once it has.
    let value = eventually(|| async { dirty.get_option("k").await.unwrap() }).await;
    assert_eq!(value, "v");
    assert_eq!(dirty.get_option("never").await.unwrap(), None);
    assert_eq!(dirty.prefix_keys("", -1).await.unwrap(), vec![b("k")]);

    // The same client without read_from_slaves sends the read to the master, which it
    // cannot reach (the slave names a node it does not know): refused, not served.
    only_slave.read_from_slaves = false;
    let to_master = Client::new(only_slave).unwrap();
    match to_master.get("k").await {
        Err(Error::NoMaster { last_error, .. }) => {
            assert!(last_error.contains("not configured"), "{last_error}")
        }
        other => panic!("a read for the master was answered: {other:?}"),
    }
    // Per handle, too.
    assert_eq!(
        to_master
            .with_read_from_slaves(true)
            .get("k")
            .await
            .unwrap(),
        "v"
    );
    // Writes never go to a slave.
    assert!(matches!(
        dirty.set("k", "w").await,
        Err(Error::NoMaster { .. })
    ));
    for node in nodes {
        node.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dirty_reads_go_on_being_served_by_slaves_when_the_master_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (mut nodes, cfg, c) = three_nodes(dir.path()).await;
    let master = String::from_utf8(c.who_master().await.unwrap().unwrap().to_vec()).unwrap();
    let mut config = client_of(&cfg, &[]);
    config.consistency = Consistency::NoGuarantees;
    config.read_from_slaves = true;
    config.max_attempts = 1;
    let dirty = Client::new(config).unwrap();
    // Learn who the master is (a consistent read goes to it), so dirty reads avoid it.
    assert_eq!(
        dirty
            .with_consistency(Consistency::Consistent)
            .get("k")
            .await
            .unwrap(),
        "v"
    );
    // Both slaves have applied "k": dirty reads ask them in turn, so two reads in a row
    // ask both.
    eventually(|| async {
        let first = dirty.get_option("k").await.ok().flatten();
        let second = dirty.get_option("k").await.ok().flatten();
        (first.is_some() && second.is_some()).then_some(())
    })
    .await;
    let at = nodes.iter().position(|n| n.name() == master).unwrap();
    nodes.remove(at).stop().await.unwrap();
    // One attempt, the master stopped: only a slave can have answered these.
    for _ in 0..4 {
        assert_eq!(dirty.get("k").await.unwrap(), "v");
        assert_eq!(dirty.get_option("never").await.unwrap(), None);
    }
    for node in nodes {
        node.stop().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_share_one_client_within_the_node_connection_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 1);
    // Room for the shared client's connections and the warm-up client's one; a client
    // opening more would be refused ("too many clients") and, with one attempt, fail.
    const POOL: usize = 3;
    cfg.nodes[0].max_client_connections = POOL as u32 + 1;
    let file = dir.path().join("c.toml");
    let node = Node::start(&cfg, "n0", &file).await.unwrap();
    let warm = support::client(&cfg);
    support::set_retrying(&warm, "warm", "up").await;

    let mut config = client_of(&cfg, &[]);
    config.max_connections_per_node = POOL;
    config.max_attempts = 1;
    let shared = Client::new(config).unwrap();
    const TASKS: usize = 64;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let c = shared.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..5 {
                let key = format!("t{t}/{i}");
                let value = Bytes::from(format!("v{t}.{i}"));
                c.set(key.clone(), value.clone()).await.unwrap();
                assert_eq!(c.get(key).await.unwrap(), value);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(shared.prefix_keys("t", -1).await.unwrap().len(), TASKS * 5);
    assert_eq!(shared.get("warm").await.unwrap(), "up");
    node.stop().await.unwrap();
}
