//! Shared test helpers: a test message type and a way to start a small cluster of messengers
//! on 127.0.0.1 with free ports.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use rkyv::{Archive, Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tcp_messenger::{BackoffConfig, Inbox, Messenger, MessengerConfig, WireMessage};
use tokio::net::TcpListener;

pub const CLUSTER: &str = "test-cluster";

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum TestMsg {
    Seq {
        from: String,
        n: u64,
    },
    Blob(Vec<u8>),
    /// Refused by the semantic check.
    Poison,
}

impl WireMessage for TestMsg {
    fn check(&self) -> Result<(), String> {
        match self {
            TestMsg::Poison => Err("poison message".into()),
            _ => Ok(()),
        }
    }
}

pub fn fast_backoff() -> BackoffConfig {
    BackoffConfig {
        initial: Duration::from_millis(5),
        cap: Duration::from_millis(100),
        jitter_per_mille: 500,
        connect_timeout: Duration::from_secs(10),
        handshake_timeout: Duration::from_secs(10),
    }
}

pub async fn bind_free() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

pub fn config(
    name: &str,
    listen: SocketAddr,
    all: &BTreeMap<String, SocketAddr>,
) -> MessengerConfig {
    let peers = all
        .iter()
        .filter(|(n, _)| n.as_str() != name)
        .map(|(n, a)| (n.clone(), vec![*a]))
        .collect();
    let mut cfg = MessengerConfig::new(name, CLUSTER, listen, peers);
    cfg.backoff = fast_backoff();
    cfg.queue_capacity = 100_000;
    cfg.max_frame = 64 * 1024;
    cfg
}

/// Start messengers named `names`, all knowing each other.
pub async fn cluster(
    names: &[&str],
) -> (
    Vec<(Messenger<TestMsg>, Inbox<TestMsg>)>,
    BTreeMap<String, SocketAddr>,
) {
    let mut listeners = Vec::new();
    let mut addrs = BTreeMap::new();
    for name in names {
        let l = bind_free().await;
        addrs.insert((*name).to_owned(), l.local_addr().unwrap());
        listeners.push(l);
    }
    let mut nodes = Vec::new();
    for (name, listener) in names.iter().zip(listeners) {
        let cfg = config(name, addrs[*name], &addrs);
        nodes.push(Messenger::start_with_listener(cfg, listener).unwrap());
    }
    (nodes, addrs)
}

/// Wait, yielding to the runtime, until `cond` holds (counters are bumped just after the event
/// they count, so a test that saw the event may need to wait a moment for the counter). The
/// 60 s guard only turns a bug into a failure instead of a hang; passing never depends on it.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let wait = async {
        while !cond() {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}
