//! Backup and restore end to end on real `rarakoon-bin` processes: `admin backup` of a slave
//! under write load (refused on the master and on a witness), `restore` into every node of a
//! fresh cluster and into a wiped node of the running one, and every key compared.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use support::{ClusterSpec, TestCluster, runtime, set_retry, wait_for};

const ELECTION: Duration = Duration::from_secs(60);
const CONVERGE: Duration = Duration::from_secs(60);
const INITIAL: usize = 300;

/// Every key and value, read consistently at the master of `cluster`.
fn all_entries(cluster: &TestCluster, names: &[&str]) -> BTreeMap<Bytes, Bytes> {
    let rt = runtime();
    let client = cluster.client(names);
    rt.block_on(async {
        let entries = client
            .range_entries(None::<Bytes>, true, None::<Bytes>, true, -1)
            .await
            .unwrap();
        entries.into_iter().collect()
    })
}

fn load_key(i: usize) -> String {
    format!("load-{i:06}")
}

#[test]
fn a_backup_taken_under_write_load_restores_a_fresh_cluster_and_a_wiped_node() {
    let mut source = TestCluster::new(&ClusterSpec::new(3));
    source.start_all();
    let all = ["n0", "n1", "n2"];
    let master = source.wait_master(&all, ELECTION);
    let rt = runtime();
    let client = source.client(&all);
    rt.block_on(async {
        for i in 0..INITIAL {
            set_retry(
                &client,
                format!("init-{i:04}"),
                format!("value {i} {}", "x".repeat(i)),
            )
            .await;
        }
    });

    // One writer, one key after the other, so any point-in-time copy holds a prefix of them.
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let client = source.client(&all);
        let acknowledged = Arc::clone(&acknowledged);
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            runtime().block_on(async {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    set_retry(&client, load_key(i), format!("load value {i}")).await;
                    i += 1;
                    acknowledged.store(i, Ordering::Relaxed);
                }
            });
        })
    };
    wait_for("writes under way", CONVERGE, || {
        (acknowledged.load(Ordering::Relaxed) >= 50).then_some(())
    });
    let config = source.config_file().to_str().unwrap().to_owned();
    let file = source.dir.path().join("backup.db");
    let file_arg = file.to_str().unwrap().to_owned();

    // The master refuses, as Arakoon's does; nothing is left behind.
    let (code, out, err) = source.cli(&[
        "admin",
        "--cluster-config",
        &config,
        "--node",
        &master,
        "backup",
        &file_arg,
    ]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("master"), "{err}");
    assert!(!file.exists());

    let slave = *all.iter().find(|n| **n != master).unwrap();
    let before = acknowledged.load(Ordering::Relaxed);
    let (code, out, err) = source.cli(&[
        "admin",
        "--cluster-config",
        &config,
        "--node",
        slave,
        "backup",
        &file_arg,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("verified"), "{out}");
    wait_for("more writes after the backup", CONVERGE, || {
        (acknowledged.load(Ordering::Relaxed) >= before + 50).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let written = acknowledged.load(Ordering::Relaxed);
    let source_entries = all_entries(&source, &all);
    assert_eq!(source_entries.len(), INITIAL + written);
    let dir_entries: Vec<_> = std::fs::read_dir(source.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("backup.db.tmp"))
        .collect();
    assert!(dir_entries.is_empty(), "temp files left: {dir_entries:?}");

    // A fresh cluster, every node restored from the file before its first start.
    let mut fresh = TestCluster::new(&ClusterSpec::new(3));
    let fresh_config = fresh.config_file().to_str().unwrap().to_owned();
    for n in all {
        let (code, out, err) =
            fresh.cli(&["restore", "--config", &fresh_config, "--node", n, &file_arg]);
        assert_eq!(code, 0, "{n}: {out}{err}");
        assert!(out.contains("restored"), "{out}");
    }
    // A home that holds data is refused unless --force.
    let (code, _, err) = fresh.cli(&[
        "restore",
        "--config",
        &fresh_config,
        "--node",
        "n0",
        &file_arg,
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("not empty") && err.contains("--force"),
        "{err}"
    );
    fresh.start_all();
    fresh.wait_master(&all, ELECTION);
    let restored = all_entries(&fresh, &all);
    // The copy is one point in time: every initial key, a gap-free prefix of the load, and
    // each value as the source has it.
    for (key, value) in &restored {
        assert_eq!(source_entries.get(key), Some(value), "{key:?}");
    }
    let loads = restored.keys().filter(|k| k.starts_with(b"load-")).count();
    assert_eq!(restored.len(), INITIAL + loads);
    for i in 0..loads {
        assert!(
            restored.contains_key(load_key(i).as_bytes()),
            "gap at {i} of {loads}"
        );
    }
    assert!(
        loads >= before && loads < written,
        "the backup holds {loads} load keys; {before} were acknowledged before it started, \
         {written} in all"
    );
    // The restored cluster takes writes, and every node has the whole copy.
    rt.block_on(async { set_retry(&fresh.client(&all), "after-restore", "yes").await });
    for n in all {
        fresh.wait_value(n, "after-restore", "yes", CONVERGE);
        fresh.wait_value(
            n,
            &load_key(loads - 1),
            &format!("load value {}", loads - 1),
            CONVERGE,
        );
    }

    // A wiped node of the source cluster, restored from the (older) backup, catches up.
    source.kill9(slave);
    std::fs::remove_dir_all(&source.node(slave).home).unwrap();
    let (code, out, err) =
        source.cli(&["restore", "--config", &config, "--node", slave, &file_arg]);
    assert_eq!(code, 0, "{out}{err}");
    source.start(slave);
    source.wait_value(
        slave,
        &load_key(written - 1),
        &format!("load value {}", written - 1),
        CONVERGE,
    );
    source.wait_value(
        slave,
        "init-0299",
        &format!("value 299 {}", "x".repeat(299)),
        CONVERGE,
    );
}

#[test]
fn a_damaged_or_truncated_backup_is_never_installed() {
    let cluster = TestCluster::new(&ClusterSpec::new(1));
    let config = cluster.config_file().to_str().unwrap().to_owned();
    let file = cluster.dir.path().join("not-a-backup");
    std::fs::write(&file, b"RRKNSNAP but not really a snapshot").unwrap();
    let (code, _, err) = cluster.cli(&[
        "restore",
        "--config",
        &config,
        "--node",
        "n0",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("not-a-backup"), "{err}");
    assert!(!cluster.node("n0").home.exists(), "nothing may be written");
}
