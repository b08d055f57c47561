//! End-to-end tests of the binary's process-level behaviour: config checking, the home lock,
//! and clean shutdown on SIGTERM. Real processes, free ports, temp dirs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{ClusterSpec, TestCluster};

#[test]
fn check_config_accepts_the_example_and_names_bad_fields() {
    let cluster = TestCluster::new(&ClusterSpec::new(3));
    let config = cluster.config_file().to_str().unwrap().to_owned();
    let (code, out, err) = cluster.cli(&["check-config", &config]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("valid"), "{out}");
    assert!(out.contains("n2 (voter)"), "{out}");

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/example.toml");
    let (code, out, err) = cluster.cli(&["check-config", example]);
    assert_eq!(code, 0, "{out}{err}");

    let bad = cluster.dir.path().join("bad.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &bad,
        text.replace("lease_period_secs", "lease_periode_secs"),
    )
    .unwrap();
    let (code, _, err) = cluster.cli(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("bad.toml"), "{err}");
    assert!(err.contains("lease_periode_secs"), "{err}");

    std::fs::write(&bad, text.replace("name = \"n2\"", "name = \"n1\"")).unwrap();
    let (code, _, err) = cluster.cli(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("nodes[2].name"), "{err}");
}

#[test]
fn a_missing_config_file_is_named_once_with_its_cause() {
    let cluster = TestCluster::new(&ClusterSpec::new(1));
    let missing = cluster.dir.path().join("missing.toml");
    let (code, _, err) = cluster.cli(&["check-config", missing.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("missing.toml"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}

#[test]
fn snapshot_inspect_tells_an_unreadable_file_from_a_corrupt_one() {
    let cluster = TestCluster::new(&ClusterSpec::new(1));
    let missing = cluster.dir.path().join("head.snap");
    let (code, out, err) = cluster.cli(&["snapshot", "inspect", missing.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(!out.contains("CORRUPT"), "{out}");
    assert!(err.contains("head.snap"), "{err}");

    std::fs::write(&missing, b"not a snapshot at all").unwrap();
    let (code, out, _) = cluster.cli(&["snapshot", "inspect", missing.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("CORRUPT"), "{out}");
}

#[test]
fn unknown_node_is_refused_with_the_known_names() {
    let cluster = TestCluster::new(&ClusterSpec::new(2));
    let config = cluster.config_file().to_str().unwrap().to_owned();
    let (code, _, err) = cluster.cli(&["--config", &config, "--node", "nope"]);
    assert_eq!(code, 2);
    assert!(err.contains("no node named `nope`"), "{err}");
    assert!(err.contains("n0, n1"), "{err}");
}

#[test]
fn second_process_on_the_same_home_is_refused_and_sigterm_exits_cleanly() {
    let mut cluster = TestCluster::new(&ClusterSpec::new(1));
    cluster.start("n0");
    cluster.wait_locked("n0");
    let pid = cluster.pid("n0");

    let second = support::output_bounded(
        &mut cluster.node_command("n0"),
        std::time::Duration::from_secs(120),
    );
    assert_eq!(second.status.code(), Some(2));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("in use by another process"), "{err}");
    assert!(err.contains(&format!("pid {pid}")), "{err}");

    let status = cluster.terminate("n0");
    assert!(
        status.success(),
        "exit {status}; log:\n{}",
        cluster.log("n0")
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let mut cluster = TestCluster::new(&ClusterSpec::new(1));
    let log = std::fs::File::create(cluster.log_path("n0")).unwrap();
    let mut child = support::StopOnDrop(
        cluster
            .node_command("n0")
            .args(["--log-format", "json"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    support::wait_for(
        "the node to log that it started",
        std::time::Duration::from_secs(60),
        || cluster.log("n0").contains("node started").then_some(()),
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let text = cluster.log("n0");
    for line in text.lines().filter(|l| !l.is_empty()) {
        assert!(
            line.starts_with('{') && line.ends_with('}'),
            "not JSON: {line}"
        );
    }
    assert!(text.contains("\"node started\""), "{text}");
    let _ = &mut cluster;
}
