//! `rarakoon-bin bench` end to end: real processes, the JSON report parsed and checked for
//! what must hold whatever the machine's speed (no throughput is asserted).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::{ClusterSpec, TestCluster, binary, output_bounded};

/// Runs `bench` with `args`; returns (exit code, stdout, stderr). `TMPDIR` points at `tmp`, so
/// a `--local` cluster's directory is created there.
fn bench(tmp: &Path, args: &[&str]) -> (i32, String, String) {
    let out = output_bounded(
        Command::new(binary())
            .arg("bench")
            .args(args)
            .env("TMPDIR", tmp)
            .env("RUST_LOG", "warn"),
        Duration::from_secs(180),
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Checks what every successful report must satisfy; returns it.
fn check_report(stdout: &str, workload: &str, ops_kinds: &[&str]) -> Value {
    let r: Value = serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(r["schema"], "rarakoon-bench/1", "{r:#}");
    assert_eq!(r["workload"], workload, "{r:#}");
    let ops = r["ops"].as_u64().unwrap();
    assert!(ops > 0, "{r:#}");
    assert!(r["ops_per_sec"].as_f64().unwrap() > 0.0, "{r:#}");
    assert!(r["elapsed_secs"].as_f64().unwrap() > 0.0, "{r:#}");
    assert_eq!(r["interrupted"], false, "{r:#}");
    let ordered = |l: &Value| {
        let f = |k: &str| l[k].as_f64().unwrap_or_else(|| panic!("{k} in {l:#}"));
        assert!(f("min") > 0.0, "{l:#}");
        assert!(f("min") <= f("p50"), "{l:#}");
        assert!(f("p50") <= f("p90"), "{l:#}");
        assert!(f("p90") <= f("p99"), "{l:#}");
        assert!(f("p99") <= f("p999"), "{l:#}");
        assert!(f("p999") <= f("max"), "{l:#}");
        assert!(f("min") <= f("mean") && f("mean") <= f("max"), "{l:#}");
    };
    ordered(&r["latency_us"]);
    let by_op = r["by_op"].as_object().unwrap();
    let mut kinds: Vec<&str> = by_op.keys().map(String::as_str).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ops_kinds, "{r:#}");
    let mut sum = 0;
    for op in by_op.values() {
        let n = op["ops"].as_u64().unwrap();
        assert!(n > 0, "{r:#}");
        sum += n;
        ordered(&op["latency_us"]);
    }
    assert_eq!(sum, ops, "{r:#}");
    let errors: u64 = r["errors_by_kind"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(errors, r["errors"].as_u64().unwrap(), "{r:#}");
    r
}

/// Nothing of a `--local` run is left: its directory is gone and no process still names it.
fn assert_no_leftovers(tmp: &Path) {
    let left: Vec<_> = std::fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let needle = tmp.to_str().unwrap().as_bytes();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        assert!(
            !cmdline.windows(needle.len()).any(|w| w == needle),
            "process {:?} still runs: {}",
            entry.file_name(),
            String::from_utf8_lossy(&cmdline).replace('\0', " ")
        );
    }
}

#[test]
fn local_set_on_shared_connections_reports_ops_and_ordered_percentiles() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, out, err) = bench(
        tmp.path(),
        &[
            "--local",
            "--duration",
            "2s",
            "--warmup",
            "500ms",
            "--clients",
            "8",
            "--connections",
            "2",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let r = check_report(&out, "set", &["set"]);
    assert_eq!(r["mode"], "closed");
    assert_eq!(r["latency_from"], "send");
    assert_eq!(r["clients"], 8);
    assert_eq!(r["connections"], 2);
    assert_eq!(r["local_nodes"], 3);
    assert_eq!(r["key_size"], 16);
    assert_eq!(r["value_size"], 100);
    assert!(r["open_loop"].is_null());
    assert_no_leftovers(tmp.path());
}

#[test]
fn local_mixed_open_loop_with_at_least_reads_reports_both_kinds() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, out, err) = bench(
        tmp.path(),
        &[
            "--local",
            "--workload",
            "mixed",
            "--read-ratio",
            "0.5",
            "--consistency",
            "at-least",
            "--keys",
            "500",
            "--rate",
            "200",
            "--clients",
            "4",
            "--duration",
            "2s",
            "--warmup",
            "500ms",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let r = check_report(&out, "mixed", &["get", "set"]);
    assert_eq!(r["mode"], "open");
    assert_eq!(r["latency_from"], "intended_send");
    assert_eq!(r["read_ratio"], 0.5);
    assert_eq!(r["consistency"], "at-least");
    // The prefill committed at least one entry, so the index read after it is positive.
    assert!(r["at_least_index"].as_i64().unwrap() > 0, "{r:#}");
    let open = &r["open_loop"];
    assert_eq!(open["target_rate"], 200.0);
    let (intended, sent) = (
        open["intended"].as_u64().unwrap(),
        open["sent"].as_u64().unwrap(),
    );
    // 200/s for 2 s, give or take a slot per client at the window's edges.
    assert!((396..=404).contains(&intended), "{r:#}");
    assert!(sent <= intended, "{r:#}");
    assert_eq!(
        sent,
        r["ops"].as_u64().unwrap() + r["errors"].as_u64().unwrap(),
        "{r:#}"
    );
    assert_no_leftovers(tmp.path());
}

#[test]
fn a_cluster_config_is_benched_like_the_other_client_commands_target_it() {
    let mut cluster = TestCluster::new(&ClusterSpec::new(3));
    cluster.start_all();
    cluster.wait_master(&["n0", "n1", "n2"], Duration::from_secs(60));
    let config = cluster.config_file().to_str().unwrap().to_owned();
    for (workload, kind) in [("range", "range"), ("test-and-set", "test_and_set")] {
        let (code, out, err) = bench(
            cluster.dir.path(),
            &[
                "--cluster-config",
                &config,
                "--workload",
                workload,
                "--keys",
                "200",
                "--duration",
                "1s",
                "--warmup",
                "0s",
                "--json",
            ],
        );
        assert_eq!(code, 0, "{out}{err}");
        let r = check_report(&out, workload, &[kind]);
        assert!(r["local_nodes"].is_null());
    }
    // The prefill wrote the whole key space (test-and-set swaps each value for itself).
    let (code, out, _) = cluster.cli(&["client", "--cluster-config", &config, "key-count"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "200");
    // The table, for people.
    let (code, out, err) = bench(
        cluster.dir.path(),
        &[
            "--cluster-config",
            &config,
            "--duration",
            "500ms",
            "--warmup",
            "0s",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("p99.9 ms"), "{out}");
    assert!(out.contains("errors: "), "{out}");
}

#[test]
fn bad_options_are_clear_errors_with_exit_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    for (args, named) in [
        (&["--clients", "0"][..], "--clients"),
        (
            &["--clients", "2", "--connections", "3"][..],
            "--connections",
        ),
        (&["--read-ratio", "1.5"][..], "--read-ratio"),
        (&["--duration", "2x"][..], "--duration"),
        (&["--duration", "0s"][..], "--duration"),
        (&["--rate", "0"][..], "--rate"),
        (&["--rate", "1e-300"][..], "--rate"),
        (&["--key-size", "8"][..], "--key-size"),
        (&["--workload", "nope"][..], "--workload"),
        (&["--local", "--cluster-config", "x.toml"][..], "--local"),
        (&["--no-such-option"][..], "--no-such-option"),
    ] {
        let (code, out, err) = bench(tmp.path(), args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(err.contains("error"), "{args:?}: {err}");
        assert!(err.contains(named), "{args:?}: {err}");
    }
    assert_no_leftovers(tmp.path());
}

#[test]
fn a_cluster_that_does_not_answer_is_a_clear_error_with_exit_code_2() {
    // Nodes configured, none started.
    let cluster = TestCluster::new(&ClusterSpec::new(2));
    let config = cluster.config_file().to_str().unwrap().to_owned();
    let (code, out, err) = bench(
        cluster.dir.path(),
        &["--cluster-config", &config, "--duration", "1s"],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("no master found"), "{err}");
    assert!(err.contains("n1"), "{err}");
}

#[test]
fn local_tls_connect_measures_connection_setup_without_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, out, err) = bench(
        tmp.path(),
        &[
            "--local",
            "--tls",
            "--workload",
            "connect",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let r = check_report(&out, "connect", &["connect"]);
    assert_eq!(r["errors"], 0, "{r:#}");
    assert_no_leftovers(tmp.path());
}
