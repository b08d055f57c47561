//! Catch-up of a wiped node over the log, next to raw baselines measured in the same run.
//!
//! Two nodes of a 3-node cluster (in-process, real WAL, fsync and store in a temp dir) take
//! `CATCH_UP_ENTRIES` log entries (default 300), each a sequence of 1,000 sets of 16-byte keys
//! and 100-byte values, the shape of `rarakoon-bin bench`'s prefill (about 128 KB an entry).
//! Then the third node starts with an empty home and catches up over the log; the report
//! gives the time from its start until its applied index (GET_TXID on its client port) reaches
//! the others', and the rate in MB/s of the master's log bytes. The baselines, on the same
//! bytes in the same run: a raw sequential read of the master's log files, and a raw loopback
//! TCP transfer in 8 MiB writes. No assertion: it is a report.
//!
//! `cargo bench -p rarakoon-node --bench catch_up` (`CATCH_UP_ENTRIES=3000` for 3 M keys).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use rarakoon_client::{Consistency, Request, Response, Sequence};
use rarakoon_node::Node;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The node's applied index, from GET_TXID on its client port.
async fn applied(addr: std::net::SocketAddr, cluster: &str) -> u64 {
    let replies = support::raw_calls(addr, cluster, &[Request::GetTxid]).await;
    match replies.first() {
        Some(Ok(Response::GetTxid(Consistency::AtLeast(i)))) => u64::try_from(*i).unwrap_or(0),
        other => panic!("GET_TXID answered {other:?}"),
    }
}

/// Bytes of the log files (`*.wal`) under `home`.
fn log_files(home: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(home.join("wal"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    files.sort();
    files
}

/// Seconds to send `bytes` over a loopback TCP connection in 8 MiB writes.
async fn raw_tcp(bytes: u64) -> Duration {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sink = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0u64;
        while got < bytes {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early");
            got += n as u64;
        }
        s.write_all(b"k").await.unwrap();
    });
    let chunk = vec![0x5Au8; 8 << 20];
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut sent = 0u64;
    while sent < bytes {
        let n = usize::try_from((bytes - sent).min(chunk.len() as u64)).unwrap();
        s.write_all(&chunk[..n]).await.unwrap();
        sent += n as u64;
    }
    let mut ack = [0u8; 1];
    s.read_exact(&mut ack).await.unwrap();
    let took = start.elapsed();
    sink.await.unwrap();
    took
}

fn mb_per_sec(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / took.as_secs_f64() / 1e6
}

fn main() {
    let entries: u64 = std::env::var("CATCH_UP_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = support::config(dir.path(), 3);
    let file = dir.path().join("c.toml");
    let cluster = cfg.cluster.id.clone();
    let addr = |i: usize| cfg.nodes[i].client_socket_address();
    runtime.block_on(async {
        let mut nodes = Vec::new();
        for n in &cfg.nodes[..2] {
            nodes.push(Node::start(&cfg, &n.name, &file).await.unwrap());
        }
        let client = support::client(&cfg);
        support::set_retrying(&client, "warm", "up").await;
        let value = vec![b'v'; 100];
        for e in 0..entries {
            let mut seq = Sequence::new();
            for j in 0..1000 {
                seq = seq.set(format!("k{:015}", e * 1000 + j), value.clone());
            }
            client.sequence(seq).await.unwrap();
        }
        let target = applied(addr(0), &cluster)
            .await
            .max(applied(addr(1), &cluster).await);
        let files = log_files(&dir.path().join("n0"));
        let bytes: u64 = files
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum();

        let start = Instant::now();
        nodes.push(Node::start(&cfg, &cfg.nodes[2].name, &file).await.unwrap());
        while applied(addr(2), &cluster).await < target {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let catch_up = start.elapsed();

        let start = Instant::now();
        let mut read = 0u64;
        for f in &files {
            read += std::fs::read(f).unwrap().len() as u64;
        }
        let raw_read = start.elapsed();
        let raw_net = raw_tcp(bytes).await;

        println!(
            "catch_up: {entries} entries of 1,000 sets (16 B keys, 100 B values), {:.1} MB of log, index {target}",
            bytes as f64 / 1e6
        );
        println!(
            "catch_up: wiped node over the log   {:8.3} s  {:8.1} MB/s",
            catch_up.as_secs_f64(),
            mb_per_sec(bytes, catch_up)
        );
        println!(
            "catch_up: raw read of the log files {:8.3} s  {:8.1} MB/s  (catch-up at {:.3}x)",
            raw_read.as_secs_f64(),
            mb_per_sec(read, raw_read),
            raw_read.as_secs_f64() / catch_up.as_secs_f64()
        );
        println!(
            "catch_up: raw loopback TCP transfer {:8.3} s  {:8.1} MB/s  (catch-up at {:.3}x)",
            raw_net.as_secs_f64(),
            mb_per_sec(bytes, raw_net),
            raw_net.as_secs_f64() / catch_up.as_secs_f64()
        );
        for node in nodes {
            node.stop().await.unwrap();
        }
    });
}
