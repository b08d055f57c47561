//! `rarakoon-bin local` as a new user runs it: start, wait for "Ready", use the client with the
//! same `--dir`, stop with SIGINT, start again on the same data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::{StopOnDrop, binary};

fn start_local(dir: &str) -> (StopOnDrop, mpsc::Receiver<String>) {
    let mut child = Command::new(binary())
        .args(["local", "--nodes", "3", "--dir", dir])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Stopped (with its nodes) even if the test fails half-way.
    let child = StopOnDrop(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn wait_line(rx: &mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no line containing {needle:?}; saw {seen:#?}"));
        let done = line.contains(needle);
        seen.push(line);
        if done {
            return seen;
        }
    }
}

fn sigint(child: &std::process::Child) {
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn local_cluster_starts_serves_the_cli_stops_and_keeps_its_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap().to_owned();
    let (mut child, rx) = start_local(&dir);
    let lines = wait_line(&rx, "Ready:");
    assert!(
        lines.iter().any(|l| l.contains("rarakoon-local")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("client 127.0.0.1:")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("rarakoon-bin client --dir")),
        "{lines:#?}"
    );
    let cli = |args: &[&str]| {
        let out = Command::new(binary())
            .args(["client", "--dir", &dir])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert_eq!(cli(&["set", "hello", "world"]).0, Some(0));
    assert_eq!(cli(&["get", "hello"]), (Some(0), "world\n".to_owned()));
    sigint(&child);
    wait_line(&rx, "node_2 stopped");
    assert!(child.wait().unwrap().success());

    // The next start reuses the config and the data.
    let (mut child, rx) = start_local(&dir);
    wait_line(&rx, "Ready:");
    assert_eq!(cli(&["get", "hello"]), (Some(0), "world\n".to_owned()));
    sigint(&child);
    assert!(child.wait().unwrap().success());
}
