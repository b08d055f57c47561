//! Restart after a crash needs no manual file surgery: a torn tail is repaired and reported;
//! real corruption stops start-up with a message naming the file, the offset and the repair
//! command; the offline tools see the same.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rarakoon_client::{Request, Response};
use support::{ClusterSpec, TestCluster, runtime, set_retry};

const ELECTION: Duration = Duration::from_secs(60);
const CONVERGE: Duration = Duration::from_secs(60);

fn newest_segment(home: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(home.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segments.sort();
    segments.pop().unwrap()
}

#[test]
fn torn_tail_is_repaired_and_corruption_is_reported_with_the_repair_command() {
    let mut cluster = TestCluster::new(&ClusterSpec::new(3));
    cluster.start_all();
    let all = ["n0", "n1", "n2"];
    let master = cluster.wait_master(&all, ELECTION);
    let victim = all.iter().copied().find(|n| *n != master).unwrap();
    let rt = runtime();
    let client = cluster.client(&all);
    rt.block_on(async {
        for i in 0..20 {
            set_retry(&client, format!("t{i}"), "v").await;
        }
    });
    cluster.wait_value(victim, "t19", "v", CONVERGE);

    // A crash in the middle of a write: half a record at the end of the newest segment.
    cluster.kill9(victim);
    let home = cluster.node(victim).home.clone();
    let segment = newest_segment(&home);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap()
        .write_all(&[0x17, 0, 0, 0, 0xde, 0xad])
        .unwrap();
    let config = cluster.config_file().to_str().unwrap().to_owned();
    let (code, out, _) = cluster.cli(&["wal", "verify", home.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("torn tail"), "{out}");
    cluster.start(victim);
    rt.block_on(async { set_retry(&client, "after-crash", "ok").await });
    cluster.wait_value(victim, "after-crash", "ok", CONVERGE);
    assert!(
        cluster.log(victim).contains("repaired a torn write"),
        "{}",
        cluster.log(victim)
    );

    // Real corruption in the middle of the log stops start-up with the repair command.
    let status = cluster.terminate(victim);
    assert!(status.success());
    let segment = newest_segment(&home);
    let mut bytes = std::fs::read(&segment).unwrap();
    assert!(bytes.len() > 100);
    bytes[40] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();
    let (code, out, _) = cluster.cli(&["wal", "verify", home.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("CORRUPT"), "{out}");
    let (code, _, err) = cluster.cli(&["--config", &config, "--node", victim]);
    assert_eq!(code, 2);
    let file_name = segment.file_name().unwrap().to_str().unwrap();
    assert!(err.contains(file_name), "{err}");
    assert!(err.contains("offset"), "{err}");
    assert!(err.contains(&format!("mv {}", home.display())), "{err}");

    // The documented repair works: move the data aside, restart, catch up.
    std::fs::rename(&home, home.with_extension("damaged")).unwrap();
    cluster.start(victim);
    cluster.wait_value(victim, "after-crash", "ok", CONVERGE);
}

#[test]
fn collapse_writes_a_snapshot_that_inspect_reads() {
    let mut cluster = TestCluster::new(&ClusterSpec::new(1));
    cluster.start_all();
    cluster.wait_master(&["n0"], ELECTION);
    let rt = runtime();
    let client = cluster.client(&["n0"]);
    rt.block_on(async {
        for i in 0..10 {
            set_retry(&client, format!("s{i}"), "v").await;
        }
    });
    let config = cluster.config_file().to_str().unwrap().to_owned();
    let (code, out, err) = cluster.cli(&["admin", "--cluster-config", &config, "collapse"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("head snapshot at index"), "{out}");
    let snap = cluster.node("n0").home.join("wal").join("head.snap");
    let (code, out, _) = cluster.cli(&["snapshot", "inspect", snap.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("10 pairs"), "{out}");
    let reply = cluster.ask("n0", &Request::WhoMaster).unwrap();
    assert_eq!(
        reply.unwrap(),
        Response::WhoMaster(Some(bytes::Bytes::from_static(b"n0")))
    );
}

#[test]
fn client_cli_prints_values_and_distinguishes_not_found() {
    let mut cluster = TestCluster::new(&ClusterSpec::new(1));
    cluster.start_all();
    cluster.wait_master(&["n0"], ELECTION);
    let config = cluster.config_file().to_str().unwrap().to_owned();
    let c = |args: &[&str]| {
        let mut all = vec!["client", "--cluster-config", config.as_str()];
        all.extend_from_slice(args);
        cluster.cli(&all)
    };
    assert_eq!(c(&["set", "greeting", "hello"]).0, 0);
    let (code, out, _) = c(&["get", "greeting"]);
    assert_eq!((code, out.as_str()), (0, "hello\n"));
    assert_eq!(c(&["set", "bin", "a\tb\u{1}"]).0, 0);
    assert_eq!(c(&["get", "bin"]).1, "a\\tb\\x01\n");
    assert_eq!(c(&["get", "missing"]).0, 1);
    assert_eq!(c(&["exists", "missing"]).0, 1);
    assert_eq!(c(&["exists", "greeting"]).0, 0);
    assert_eq!(c(&["delete", "missing"]).0, 1);
    assert_eq!(c(&["who-master"]).1, "n0\n");
    assert_eq!(c(&["key-count"]).1, "2\n");
    assert_eq!(c(&["prefix", "gr"]).1, "greeting\n");
    assert_eq!(c(&["range", "--first", "a", "--last", "c"]).1, "bin\n");
    assert_eq!(
        c(&[
            "test-and-set",
            "greeting",
            "--expected",
            "hello",
            "--wanted",
            "bye"
        ])
        .1,
        "hello\n"
    );
    assert_eq!(c(&["multi-get", "greeting", "bin"]).1, "bye\na\\tb\\x01\n");
    assert_eq!(c(&["delete-prefix", "b"]).1, "1\n");
    assert_eq!(c(&["range-entries"]).1, "greeting\tbye\n");
    assert!(c(&["version"]).1.starts_with("1.9.0\n"));
    let stats = c(&["statistics"]).1;
    assert!(stats.contains("node_is"), "{stats}");
    // Two sets so far were timed (the node counts its own requests).
    assert!(stats.contains("set_info:\n    n: 2\n"), "{stats}");
    let (code, out, _) = cluster.cli(&["admin", "--cluster-config", &config, "current-state"]);
    assert_eq!((code, out.as_str()), (0, "n0: Stable_master\n"));
}
