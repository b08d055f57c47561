//! Shared harness for the in-process node tests: free loopback ports, a generated cluster
//! config in a temp dir, and a Rust client for it.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::time::Duration;

use rarakoon_client::{Client, ClientConfig};
use rarakoon_node::ClusterConfig;

/// A loopback port that is free now, chosen below Linux's ephemeral range (32768..) so
/// that no outgoing connection of another test can take it between this check and the
/// node's bind. Ports come from a per-process counter starting at a pid-derived offset, so
/// one config never names the same port twice (binding port 0 twice in a row can hand
/// back the same port: CI saw `client endpoint ... is already used by another listener`).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    // A different offset from rarakoon-bin's harness, so the two binaries rarely meet.
    let base = std::process::id().wrapping_mul(104_729) % SPAN;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (base + n) % SPAN) as u16;
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
        assert!(
            n < SPAN,
            "no free port between {FIRST} and {}",
            FIRST + SPAN
        );
    }
}

/// `set` retried while the outcome is indeterminate. A set is idempotent, so retrying it
/// is what an application would do; on a loaded 2-core machine a 1 s lease can lapse
/// under a write (CI saw "lost master role during wait_for_accepteds").
pub async fn set_retrying(c: &Client, key: &str, value: &str) {
    for _ in 0..20 {
        match c.set(key.to_owned(), value.to_owned()).await {
            Ok(()) => return,
            Err(rarakoon_client::Error::Indeterminate { .. }) => continue,
            Err(e) => panic!("set {key}: {e}"),
        }
    }
    panic!("set {key}: indeterminate 20 times");
}

/// A cluster `t` of `nodes` nodes `n0..` on free ports, homes under `dir`, lease 1 s.
pub fn config(dir: &Path, nodes: usize) -> ClusterConfig {
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

/// A client for every node of `config`, patient enough for an election on a loaded machine.
pub fn client(config: &ClusterConfig) -> Client {
    let mut c = ClientConfig::new(config.cluster.id.clone());
    for n in &config.nodes {
        c = c.node(n.name.clone(), n.client_socket_address());
    }
    c.request_timeout = Duration::from_secs(5);
    c.max_attempts = 50;
    Client::new(c).unwrap()
}

/// One node `n0` of cluster `t` in its own temp dir, and a client for it.
pub struct SingleNode {
    pub dir: tempfile::TempDir,
    pub config: ClusterConfig,
    pub node: rarakoon_node::Node,
    pub client: Client,
}

impl SingleNode {
    /// Starts the node; its first request waits (through the client's retries) for the
    /// node to become master.
    pub async fn start() -> SingleNode {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), 1);
        let file = dir.path().join("c.toml");
        let node = rarakoon_node::Node::start(&config, "n0", &file)
            .await
            .unwrap();
        let client = client(&config);
        SingleNode {
            dir,
            config,
            node,
            client,
        }
    }

    pub async fn stop(self) {
        self.node.stop().await.unwrap();
    }
}

pub fn b(s: &str) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(s.as_bytes())
}

pub fn bs(items: &[&str]) -> Vec<bytes::Bytes> {
    items.iter().map(|s| b(s)).collect()
}

/// The prologue's bytes for `cluster` (docs/protocol.md §3).
pub fn prologue_bytes(cluster: &str) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    rarakoon_client::Prologue {
        cluster_id: b(cluster),
    }
    .encode(&mut out);
    out.to_vec()
}

/// An error frame: return code, then the message as a length-prefixed string.
pub fn frame(rc: u8, msg: &[u8]) -> Vec<u8> {
    let mut out = vec![rc, 0, 0, 0];
    out.extend_from_slice(&(msg.len() as u32).to_le_bytes());
    out.extend_from_slice(msg);
    out
}

/// Sends `requests` pipelined on one raw connection to `addr` and returns their replies.
pub async fn raw_calls(
    addr: std::net::SocketAddr,
    cluster: &str,
    requests: &[rarakoon_client::Request],
) -> Vec<rarakoon_client::Reply> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_util::codec::{Decoder, Encoder};
    let mut codec = rarakoon_client::ClientCodec::new(rarakoon_client::Limits::default());
    let mut out = bytes::BytesMut::new();
    codec
        .encode(
            &rarakoon_client::Prologue {
                cluster_id: b(cluster),
            },
            &mut out,
        )
        .unwrap();
    for r in requests {
        codec.encode(r, &mut out).unwrap();
    }
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(&out).await.unwrap();
    let mut input = bytes::BytesMut::new();
    let mut replies = Vec::new();
    while replies.len() < requests.len() {
        if let Some((_, reply)) = codec.decode(&mut input).unwrap() {
            replies.push(reply);
            continue;
        }
        assert!(s.read_buf(&mut input).await.unwrap() > 0, "closed early");
    }
    replies
}
