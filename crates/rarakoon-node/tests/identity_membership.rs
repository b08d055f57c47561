//! A node's identity is its name (ADR 0115): reordering `[[nodes]]` keeps history, nodes
//! given different orders still form one cluster, and a config whose membership differs from
//! the home's record refuses to start, naming the difference.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kv_store::UserFunctionRegistry;
use paxos_core::{NodeId, Value};
use rarakoon_client::{Client, ClientConfig};
use rarakoon_node::membership::{self, MEMBERSHIP_FILE, Membership};
use rarakoon_node::{ClusterConfig, Node, NodeError, promise, storage};
use support::{free_port, set_retrying};

mod support;

/// A node entry: (name, messaging port, client port).
type Entry = (String, u16, u16);

fn entries(names: &[&str]) -> Vec<Entry> {
    names
        .iter()
        .map(|n| ((*n).to_owned(), free_port(), free_port()))
        .collect()
}

/// The config text with the nodes in the order given.
fn config(dir: &Path, id: &str, nodes: &[&Entry], learners: &[&str]) -> ClusterConfig {
    let learners = learners
        .iter()
        .map(|l| format!("\"{l}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut text =
        format!("[cluster]\nid = \"{id}\"\nlease_period_secs = 1\nlearners = [{learners}]\n");
    for (name, port, client) in nodes {
        text.push_str(&format!(
            "[[nodes]]\nname = \"{name}\"\naddresses = [\"127.0.0.1:{port}\"]\n\
             client_port = {client}\nhome_dir = \"{name}\"\n"
        ));
    }
    ClusterConfig::from_toml_str(&text, &dir.join("c.toml"), dir).unwrap()
}

fn client(config: &ClusterConfig, voters: &[&str]) -> Client {
    let mut c = ClientConfig::new(config.cluster.id.clone());
    for n in config
        .nodes
        .iter()
        .filter(|n| voters.contains(&n.name.as_str()))
    {
        c = c.node(n.name.clone(), n.client_socket_address());
    }
    c.request_timeout = Duration::from_secs(5);
    c.max_attempts = 50;
    Client::new(c).unwrap()
}

/// Every ballot and `Master` value in the node's log, and its promise (node stopped).
fn history(config: &ClusterConfig, name: &str) -> (Vec<NodeId>, Vec<NodeId>, NodeId) {
    let node = config.node(name, Path::new("c.toml")).unwrap();
    let cfg = storage::storage_config(node, 1 << 26, Arc::new(write_ahead_log::StdFs));
    let recovered = storage::recover(&cfg, Arc::new(UserFunctionRegistry::new())).unwrap();
    let wal = recovered.wal;
    let mut ballots = Vec::new();
    let mut masters = Vec::new();
    let mut scratch = wire_codec::rkyv::util::AlignedVec::new();
    if let (Some(first), Some(last)) = (wal.first_index(), wal.last_index()) {
        for e in wal.read(first, last, usize::MAX).unwrap() {
            let stored = storage::decode_entry(&e.bytes, &mut scratch).unwrap();
            ballots.push(stored.ballot.node);
            if let Value::Master { node } = stored.value {
                masters.push(node);
            }
        }
    }
    (
        ballots,
        masters,
        promise::load(&write_ahead_log::StdFs, &node.home_dir)
            .unwrap()
            .node,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reordered_config_keeps_the_history_of_each_node() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    let e = entries(&["zed", "abe"]);
    // "zed" is listed first: by position it would be node 0, by name it is node 1.
    let first = config(dir.path(), "t", &[&e[0], &e[1]], &["abe"]);
    let node = Node::start(&first, "zed", &file).await.unwrap();
    let c = client(&first, &["zed"]);
    set_retrying(&c, "k", "v").await;
    assert_eq!(c.who_master().await.unwrap().as_deref(), Some(&b"zed"[..]));
    node.stop().await.unwrap();
    let (ballots, masters, promised) = history(&first, "zed");
    assert!(!masters.is_empty(), "a master was committed");
    let zed = NodeId(1);
    assert!(
        ballots.iter().chain(&masters).all(|n| *n == zed),
        "{ballots:?} {masters:?}"
    );
    assert_eq!(promised, zed);
    let record = membership::load(&write_ahead_log::StdFs, &first.nodes[0].home_dir)
        .unwrap()
        .unwrap();
    assert_eq!(record.view(), "0=abe:learner 1=zed:voter");

    // The same nodes, listed the other way round: zed is still node 1, its promise and master
    // records still name it, and it serves the data and becomes master again.
    let second = config(dir.path(), "t", &[&e[1], &e[0]], &["abe"]);
    let node = Node::start(&second, "zed", &file).await.unwrap();
    let c = client(&second, &["zed"]);
    assert_eq!(c.get("k").await.unwrap(), "v");
    set_retrying(&c, "k2", "v2").await;
    assert_eq!(c.who_master().await.unwrap().as_deref(), Some(&b"zed"[..]));
    node.stop().await.unwrap();
    let (ballots, masters, promised) = history(&second, "zed");
    assert!(
        ballots.iter().chain(&masters).all(|n| *n == zed),
        "{ballots:?} {masters:?}"
    );
    assert_eq!(promised, zed);
    assert_eq!(
        membership::load(&write_ahead_log::StdFs, &first.nodes[0].home_dir)
            .unwrap()
            .unwrap(),
        record,
        "the record is not rewritten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_given_different_orders_form_one_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    let e = entries(&["a", "b", "c"]);
    let orders: [[usize; 3]; 3] = [[0, 1, 2], [2, 1, 0], [1, 2, 0]];
    let mut nodes = Vec::new();
    let mut configs = Vec::new();
    for (i, order) in orders.iter().enumerate() {
        let cfg = config(dir.path(), "t", &order.map(|j| &e[j]), &[]);
        nodes.push(Node::start(&cfg, &e[i].0, &file).await.unwrap());
        configs.push(cfg);
    }
    let c = client(&configs[0], &["a", "b", "c"]);
    for i in 0..20 {
        set_retrying(&c, &format!("k{i}"), &format!("v{i}")).await;
    }
    let master = c.who_master().await.unwrap().unwrap();
    for n in nodes {
        n.stop().await.unwrap();
    }
    // Every node recorded the same numbering, and every log names the same master number.
    let expected = NodeId(
        u8::try_from(
            ["a", "b", "c"]
                .iter()
                .position(|n| n.as_bytes() == master)
                .unwrap(),
        )
        .unwrap(),
    );
    for (i, cfg) in configs.iter().enumerate() {
        let record = membership::load(
            &write_ahead_log::StdFs,
            &cfg.node(&e[i].0, &file).unwrap().home_dir,
        )
        .unwrap()
        .unwrap();
        assert_eq!(record.view(), "0=a:voter 1=b:voter 2=c:voter");
        let (_, masters, _) = history(cfg, &e[i].0);
        assert!(masters.contains(&expected), "node {i}: {masters:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_membership_refuses_to_start_naming_the_difference() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    let e = entries(&["n0", "n1", "n2"]);
    let original = config(dir.path(), "t", &[&e[0], &e[1]], &["n1"]);
    let node = Node::start(&original, "n0", &file).await.unwrap();
    set_retrying(&client(&original, &["n0"]), "k", "v").await;
    node.stop().await.unwrap();
    let home = original.nodes[0].home_dir.clone();
    let record = std::fs::read(home.join(MEMBERSHIP_FILE)).unwrap();
    let promise_before = std::fs::read(home.join(promise::PROMISE_FILE)).unwrap();

    let cases: Vec<(ClusterConfig, Vec<&str>)> = vec![
        // n1 replaced by n2.
        (
            config(dir.path(), "t", &[&e[0], &e[2]], &["n2"]),
            vec![
                "`n1` (learner) is in the history but not in the config",
                "`n2` (learner) is in the config but not in the history",
            ],
        ),
        // n1 became a voter.
        (
            config(dir.path(), "t", &[&e[0], &e[1]], &[]),
            vec!["`n1` is a learner in the history but a voter in the config"],
        ),
        // A node added.
        (
            config(dir.path(), "t", &[&e[0], &e[1], &e[2]], &["n1"]),
            vec!["`n2` (voter) is in the config but not in the history"],
        ),
        // Another cluster id.
        (
            config(dir.path(), "other", &[&e[0], &e[1]], &["n1"]),
            vec!["belongs to cluster `t` but the config is for cluster `other`"],
        ),
    ];
    for (changed, needles) in cases {
        let err = Node::start(&changed, "n0", &file).await.unwrap_err();
        assert!(matches!(err, NodeError::Membership(_)), "{err}");
        let msg = err.to_string();
        for needle in needles {
            assert!(msg.contains(needle), "missing {needle:?} in: {msg}");
        }
        assert!(msg.contains("0=n0:voter 1=n1:learner"), "{msg}");
        assert!(msg.contains("To fix"), "{msg}");
        // Refused before anything was written.
        assert_eq!(std::fs::read(home.join(MEMBERSHIP_FILE)).unwrap(), record);
        assert_eq!(
            std::fs::read(home.join(promise::PROMISE_FILE)).unwrap(),
            promise_before
        );
    }
    // The original membership, in another order, still starts.
    let reordered = config(dir.path(), "t", &[&e[1], &e[0]], &["n1"]);
    let node = Node::start(&reordered, "n0", &file).await.unwrap();
    assert_eq!(client(&reordered, &["n0"]).get("k").await.unwrap(), "v");
    node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_home_from_before_the_record_adopts_the_config_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    let e = entries(&["zed", "abe"]);
    let cfg = config(dir.path(), "t", &[&e[0], &e[1]], &["abe"]);
    let home = cfg.nodes[0].home_dir.clone();
    // An old home: its promise says node 0, which meant "zed" (first in [[nodes]]).
    std::fs::create_dir_all(&home).unwrap();
    promise::store(
        &write_ahead_log::StdFs,
        &home,
        paxos_core::Ballot {
            round: 3,
            node: NodeId(0),
        },
    )
    .unwrap();
    let node = Node::start(&cfg, "zed", &file).await.unwrap();
    set_retrying(&client(&cfg, &["zed"]), "k", "v").await;
    node.stop().await.unwrap();
    let record = membership::load(&write_ahead_log::StdFs, &home)
        .unwrap()
        .unwrap();
    assert_eq!(record.view(), "0=zed:voter 1=abe:learner");
    let (ballots, masters, promised) = history(&cfg, "zed");
    assert!(
        ballots.iter().chain(&masters).all(|n| *n == NodeId(0)),
        "{ballots:?} {masters:?}"
    );
    assert_eq!(promised, NodeId(0));
    assert_ne!(record, Membership::canonical(&cfg));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_or_promise_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    let e = entries(&["n0"]);
    let cfg = config(dir.path(), "t", &[&e[0]], &[]);
    let home = cfg.nodes[0].home_dir.clone();
    let node = Node::start(&cfg, "n0", &file).await.unwrap();
    node.stop().await.unwrap();

    let path = home.join(MEMBERSHIP_FILE);
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x20;
    std::fs::write(&path, &bad).unwrap();
    let msg = Node::start(&cfg, "n0", &file)
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("damaged") && msg.contains("checksum"), "{msg}");
    std::fs::write(&path, vec![b'#'; 1 << 20]).unwrap();
    let msg = Node::start(&cfg, "n0", &file)
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("more than the 65536"), "{msg}");
    std::fs::write(&path, &good).unwrap();

    std::fs::write(home.join(promise::PROMISE_FILE), "round=9 node=7\n").unwrap();
    let msg = Node::start(&cfg, "n0", &file)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("node number 7") && msg.contains("only 1 nodes"),
        "{msg}"
    );
}
