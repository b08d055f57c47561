//! `rarakoon-bin admin collapse --keep N` on real processes: N (Arakoon's `tlogs_to_keep`) is
//! the number of completed write-ahead log segments a node keeps besides the one being
//! written, overriding the configured `segments_to_keep` for that collapse; 0 is refused, a
//! value larger than the log simply removes nothing; and a wiped node still catches up (through
//! a snapshot) after the others collapsed. Every wait is on an event, bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use rarakoon_client::{ErrorCode, Request, Response};
use support::{ClusterSpec, TestCluster, runtime, set_retry};

const ELECTION: Duration = Duration::from_secs(60);
const CONVERGE: Duration = Duration::from_secs(60);

/// The first indexes of the segment files in a node's WAL directory, oldest first.
fn segments(home: &Path) -> Vec<u64> {
    let mut firsts: Vec<u64> = std::fs::read_dir(home.join("wal"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let first = name
                .strip_suffix(".wal.zst")
                .or_else(|| name.strip_suffix(".wal"))?;
            Some(first.parse().unwrap())
        })
        .collect();
    firsts.sort_unstable();
    firsts
}

#[test]
fn collapse_keep_n_leaves_n_completed_segments_and_a_wiped_node_still_catches_up() {
    let mut spec = ClusterSpec::new(3);
    // 64 KiB segments (the harness's), no automatic collapse, the default of 4 segments kept,
    // and raw segment files.
    spec.extra_node_lines = vec![
        "collapse_threshold_entries = 1000000".into(),
        "segments_to_keep = 4".into(),
        "compressor = \"none\"".into(),
    ];
    let mut cluster = TestCluster::new(&spec);
    cluster.start_all();
    let all = ["n0", "n1", "n2"];
    let master = cluster.wait_master(&all, ELECTION);
    let slaves: Vec<&str> = all.iter().copied().filter(|n| *n != master).collect();
    let (node, victim) = (slaves[0], slaves[1]);
    let rt = runtime();
    let client = cluster.client(&all);
    let value = "x".repeat(4000);
    rt.block_on(async {
        for i in 0..200 {
            set_retry(&client, format!("big{i:04}"), value.clone()).await;
        }
    });
    // `node` has applied everything (so its store is at the log's end).
    cluster.wait_value(node, "big0199", &value, CONVERGE);
    let home = cluster.node(node).home.clone();
    let before = segments(&home);
    assert!(
        before.len() >= 9,
        "800 KB in 64 KiB segments should fill many: {before:?}"
    );
    let config = cluster.config_file().to_str().unwrap().to_owned();
    let collapse = |n: &str, keep: &str| {
        cluster.cli(&[
            "admin",
            "--cluster-config",
            &config,
            "--node",
            n,
            "collapse",
            "--keep",
            keep,
        ])
    };

    // keep 5: five completed segments and the open one; the answer has one step per segment
    // removed and one for the head snapshot.
    let reply = cluster.ask(node, &Request::CollapseTlogs { tlogs_to_keep: 5 });
    let Some(Ok(Response::CollapseTlogs(steps))) = reply else {
        panic!("collapse --keep 5: {reply:?}");
    };
    let after = segments(&home);
    assert_eq!(after, before[before.len() - 6..], "keep 5");
    let removed = before.len() - 6;
    assert_eq!(steps.len(), removed + 1, "{steps:?}");
    let removed_firsts: Vec<u64> = steps[..removed].iter().map(|s| *s as u64).collect();
    assert_eq!(
        removed_firsts,
        before[..removed],
        "steps name the segments removed"
    );
    let head = *steps.last().unwrap() as u64;
    assert!(head >= 200, "the head snapshot covers every write: {head}");

    // keep 2: a smaller N than the last collapse's takes effect at once.
    let (code, out, err) = collapse(node, "2");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("collapsed"), "{out}");
    assert_eq!(segments(&home), before[before.len() - 3..], "keep 2");

    // More than the log holds: no segment removed, not an error (the master's lease renewals
    // advance the store, so a head snapshot may be written: at most that one step).
    let reply = cluster.ask(
        node,
        &Request::CollapseTlogs {
            tlogs_to_keep: 1000,
        },
    );
    let Some(Ok(Response::CollapseTlogs(steps))) = reply else {
        panic!("collapse --keep 1000: {reply:?}");
    };
    assert!(steps.len() <= 1, "{steps:?}");
    let (code, out, err) = collapse(node, "1000");
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(segments(&home), before[before.len() - 3..], "keep 1000");

    // 0 (and below) is refused with Arakoon's E_UNKNOWN_FAILURE, the log untouched.
    let (code, out, err) = collapse(node, "0");
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("0 is not acceptable"), "{out}{err}");
    let reply = cluster.ask(node, &Request::CollapseTlogs { tlogs_to_keep: -3 });
    match reply {
        Some(Err(e)) => {
            assert_eq!(e.code, ErrorCode::UnknownFailure);
            assert!(
                String::from_utf8_lossy(&e.message).starts_with("-3 is not acceptable"),
                "{e:?}"
            );
        }
        other => panic!("collapse -3: {other:?}"),
    }
    assert_eq!(segments(&home), before[before.len() - 3..], "keep 0");

    // keep 1 on the master too: every live node pruned the early entries, so a wiped node
    // catches up through a head snapshot.
    let master_home = cluster.node(&master).home.clone();
    let (code, out, err) = collapse(&master, "1");
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = collapse(node, "1");
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(segments(&master_home).len(), 2, "master keep 1");
    assert_eq!(segments(&home).len(), 2, "keep 1");
    assert!(segments(&home)[0] > 1, "{:?}", segments(&home));
    cluster.terminate(victim);
    std::fs::remove_dir_all(&cluster.node(victim).home).unwrap();
    cluster.start(victim);
    cluster.wait_value(victim, "big0000", &value, CONVERGE);
    cluster.wait_value(victim, "big0199", &value, CONVERGE);
    rt.block_on(async { set_retry(&client, "later", "yes").await });
    cluster.wait_value(victim, "later", "yes", CONVERGE);
    assert!(
        cluster
            .log(victim)
            .contains("installed a peer's head snapshot"),
        "the wiped node should have caught up through a snapshot; log:\n{}",
        cluster.log(victim)
    );
}
