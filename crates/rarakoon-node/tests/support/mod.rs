//! Shared harness for the in-process node tests: free loopback ports, a generated cluster
//! config in a temp dir, and a Rust client for it.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::time::Duration;

use rarakoon_client::{Client, ClientConfig};
use rarakoon_node::ClusterConfig;

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
