//! End-to-end scenarios on real `rarakoon-bin` processes: election, failover with kill -9,
//! restart, a wiped node catching up through a snapshot, learners, read-only and forced
//! master, drop master, and garbage on the ports. Every wait is on an event, bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use rarakoon_client::{Consistency, Error, Request, Response};
use support::{ClusterSpec, TestCluster, runtime, set_retry, wait_for};

// Generous bounds: on a loaded 2-core CI machine an election or a catch-up can take many
// lease periods. The waits end on the event, so a healthy run never waits this long.
const ELECTION: Duration = Duration::from_secs(60);
const CONVERGE: Duration = Duration::from_secs(60);

#[test]
fn three_nodes_elect_one_master_and_converge() {
    let mut cluster = TestCluster::new(&ClusterSpec::new(3));
    cluster.start_all();
    let all = ["n0", "n1", "n2"];
    let master = cluster.wait_master(&all, ELECTION);
    // Every node agrees on the master.
    for n in all {
        wait_for("all nodes to name the master", ELECTION, || {
            (cluster.who_master_at(n).as_deref() == Some(master.as_str())).then_some(())
        });
    }
    let rt = runtime();
    let client = cluster.client(&all);
    rt.block_on(async {
        for i in 0..50 {
            set_retry(&client, format!("key{i:02}"), format!("value{i}")).await;
        }
        assert_eq!(client.get("key07").await.unwrap(), "value7");
        assert_eq!(
            client.prefix_keys("key0", -1).await.unwrap().len(),
            10,
            "prefix keys"
        );
        assert!(matches!(client.get("nope").await, Err(Error::NotFound(_))));
        support::delete_retry(&client, "key49").await;
        assert!(!client.exists("key49").await.unwrap());
    });
    for n in all {
        cluster.wait_value(n, "key48", "value48", CONVERGE);
        assert_eq!(cluster.dirty_get(n, "key49"), None);
    }
    // A slave refuses consistent reads and writes with NotMaster naming the master. Under
    // load a 1 s lease can lapse and the mastership move between the two questions; the
    // check is retried only when the master seen before and after the ask differ.
    let mut attempts = 0;
    loop {
        let before = cluster.wait_master(&all, ELECTION);
        let slave = all.iter().find(|n| **n != before).unwrap();
        let reply = cluster
            .ask(
                slave,
                &Request::Set {
                    key: Bytes::from_static(b"x"),
                    value: Bytes::from_static(b"y"),
                },
            )
            .unwrap();
        let err = reply.unwrap_err();
        let after = cluster.wait_master(&all, ELECTION);
        if before != after && attempts < 5 {
            attempts += 1;
            continue;
        }
        assert_eq!(err.code, rarakoon_client::ErrorCode::NotMaster);
        assert_eq!(err.message, before.as_bytes());
        break;
    }
}

#[test]
fn killing_the_master_elects_another_and_keeps_every_acknowledged_write() {
    let mut cluster = TestCluster::new(&ClusterSpec::new(3));
    cluster.start_all();
    let all = ["n0", "n1", "n2"];
    let old = cluster.wait_master(&all, ELECTION);
    let rt = runtime();
    let client = cluster.client(&all);
    rt.block_on(async {
        for i in 0..100 {
            set_retry(&client, format!("k{i}"), format!("v{i}")).await;
        }
    });
    cluster.kill9(&old);
    let rest: Vec<&str> = all.iter().copied().filter(|n| *n != old).collect();
    let new = cluster.wait_master(&rest, ELECTION);
    assert_ne!(new, old);
    let client = cluster.client(&rest);
    rt.block_on(async {
        for i in 0..100 {
            assert_eq!(
                client.get(format!("k{i}")).await.unwrap(),
                format!("v{i}"),
                "acknowledged write k{i} lost"
            );
        }
        set_retry(&client, "after", "failover").await;
    });
    // The old master restarts and catches up.
    cluster.start(&old);
    cluster.wait_value(&old, "after", "failover", CONVERGE);
    cluster.wait_value(&old, "k99", "v99", CONVERGE);
}

#[test]
fn a_wiped_node_catches_up_through_a_snapshot_after_the_others_pruned() {
    let mut spec = ClusterSpec::new(3);
    spec.extra_node_lines = vec![
        "collapse_threshold_entries = 50".into(),
        "segments_to_keep = 1".into(),
        "compressor = \"none\"".into(),
    ];
    let mut cluster = TestCluster::new(&spec);
    cluster.start_all();
    let all = ["n0", "n1", "n2"];
    let master = cluster.wait_master(&all, ELECTION);
    let victim = all.iter().copied().find(|n| *n != master).unwrap();
    let rt = runtime();
    let client = cluster.client(&all);
    cluster.terminate(victim);
    std::fs::remove_dir_all(&cluster.node(victim).home).unwrap();
    let value = "x".repeat(2000);
    rt.block_on(async {
        for i in 0..400 {
            set_retry(&client, format!("big{i:04}"), value.clone()).await;
        }
    });
    // Collapse on the survivors so the early entries are gone from their logs.
    for n in all.iter().filter(|n| **n != victim) {
        let reply = cluster.ask(n, &Request::CollapseTlogs { tlogs_to_keep: 1 });
        assert!(
            matches!(reply, Some(Ok(Response::CollapseTlogs(_)))),
            "{reply:?}"
        );
    }
    cluster.start(victim);
    cluster.wait_value(victim, "big0000", &value, CONVERGE);
    cluster.wait_value(victim, "big0399", &value, CONVERGE);
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

#[test]
fn five_nodes_survive_two_failures_and_a_learner_follows_without_voting() {
    let mut spec = ClusterSpec::new(6);
    spec.extra_cluster_lines = vec!["learners = [\"n5\"]".into()];
    let mut cluster = TestCluster::new(&spec);
    cluster.start_all();
    let voters = ["n0", "n1", "n2", "n3", "n4"];
    let master = cluster.wait_master(&voters, ELECTION);
    assert_ne!(master, "n5");
    let rt = runtime();
    // Kill two voters that are not the master.
    let victims: Vec<&str> = voters
        .iter()
        .copied()
        .filter(|n| *n != master)
        .take(2)
        .collect();
    for v in &victims {
        cluster.kill9(v);
    }
    let alive: Vec<&str> = voters
        .iter()
        .copied()
        .filter(|n| !victims.contains(n))
        .collect();
    let client = cluster.client(&alive);
    rt.block_on(async {
        for i in 0..20 {
            set_retry(&client, format!("f{i}"), "ok").await;
        }
    });
    cluster.wait_value("n5", "f19", "ok", CONVERGE);
    // The learner never names itself master and refuses writes.
    assert_ne!(cluster.who_master_at("n5").as_deref(), Some("n5"));
    let err = cluster
        .ask(
            "n5",
            &Request::Set {
                key: Bytes::from_static(b"l"),
                value: Bytes::from_static(b"x"),
            },
        )
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code, rarakoon_client::ErrorCode::NotMaster);
}

#[test]
fn readonly_cluster_refuses_writes_and_serves_reads() {
    let mut spec = ClusterSpec::new(3);
    spec.extra_cluster_lines = vec!["master_mode = \"readonly\"".into()];
    let mut cluster = TestCluster::new(&spec);
    cluster.start_all();
    for n in ["n0", "n1", "n2"] {
        let reply = wait_for("node to answer", ELECTION, || {
            cluster.ask(
                n,
                &Request::Set {
                    key: Bytes::from_static(b"k"),
                    value: Bytes::from_static(b"v"),
                },
            )
        });
        let err = reply.unwrap_err();
        assert_eq!(err.code, rarakoon_client::ErrorCode::ReadOnly, "{n}");
        let reply = cluster
            .ask(
                n,
                &Request::Exists {
                    consistency: Consistency::Consistent,
                    key: Bytes::from_static(b"k"),
                },
            )
            .unwrap();
        assert_eq!(reply.unwrap(), Response::Exists(false));
    }
}

#[test]
fn forced_master_is_master_and_drop_master_hands_over() {
    let mut spec = ClusterSpec::new(3);
    spec.extra_cluster_lines = vec![
        "master_mode = \"forced\"".into(),
        "forced_master = \"n1\"".into(),
    ];
    let mut cluster = TestCluster::new(&spec);
    cluster.start_all();
    let master = cluster.wait_master(&["n0", "n1", "n2"], ELECTION);
    assert_eq!(master, "n1");
    let rt = runtime();
    let client = cluster.client(&["n0", "n1", "n2"]);
    rt.block_on(async { set_retry(&client, "forced", "yes").await });

    // An elected cluster: drop master makes another node take over.
    let mut elected = TestCluster::new(&ClusterSpec::new(3));
    elected.start_all();
    let all = ["n0", "n1", "n2"];
    let first = elected.wait_master(&all, ELECTION);
    let reply = elected.ask(&first, &Request::DropMaster).unwrap();
    assert_eq!(reply.unwrap(), Response::DropMaster);
    // The dropping node stays out of elections for one lease period; on a loaded machine the
    // others may not have stood by then and it can win again. Dropping again until another
    // node holds the role tests the hand-over without depending on that race.
    let next = wait_for("another master after drop_master", ELECTION, || {
        let m = elected.wait_master(&all, ELECTION);
        if m == first {
            let _ = elected.ask(&first, &Request::DropMaster);
            return None;
        }
        Some(m)
    });
    assert_ne!(next, first);
}

#[test]
fn garbage_on_the_ports_does_not_disturb_the_cluster() {
    let mut cluster = TestCluster::new(&ClusterSpec::new(3));
    cluster.start_all();
    let all = ["n0", "n1", "n2"];
    cluster.wait_master(&all, ELECTION);
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for n in all {
        let info = cluster.node(n).clone();
        for port in [info.client_port, info.messaging_port] {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.write_all(&garbage);
                let _ = s.write_all(&[0xff; 64]);
            }
        }
    }
    let rt = runtime();
    let client = cluster.client(&all);
    rt.block_on(async {
        set_retry(&client, "still", "fine").await;
        assert_eq!(client.get("still").await.unwrap(), "fine");
    });
    for n in all {
        cluster.wait_value(n, "still", "fine", CONVERGE);
    }
}

#[test]
fn restart_of_the_whole_cluster_keeps_the_data() {
    let mut cluster = TestCluster::new(&ClusterSpec::new(3));
    cluster.start_all();
    let all = ["n0", "n1", "n2"];
    cluster.wait_master(&all, ELECTION);
    let rt = runtime();
    let client = cluster.client(&all);
    rt.block_on(async {
        for i in 0..30 {
            set_retry(&client, format!("r{i}"), format!("{i}")).await;
        }
    });
    for n in all {
        let status = cluster.terminate(n);
        assert!(
            status.success(),
            "{n} exit {status}; log:\n{}",
            cluster.log(n)
        );
    }
    cluster.start_all();
    cluster.wait_master(&all, ELECTION);
    let client = cluster.client(&all);
    rt.block_on(async {
        for i in 0..30 {
            assert_eq!(client.get(format!("r{i}")).await.unwrap(), format!("{i}"));
        }
    });
}

#[test]
fn a_wiped_node_catches_up_while_the_cluster_is_under_write_load() {
    let mut spec = ClusterSpec::new(3);
    spec.extra_node_lines = vec![
        "collapse_threshold_entries = 100".into(),
        "segments_to_keep = 1".into(),
    ];
    let mut cluster = TestCluster::new(&spec);
    cluster.start_all();
    let all = ["n0", "n1", "n2"];
    let master = cluster.wait_master(&all, ELECTION);
    let victim = all.iter().copied().find(|n| *n != master).unwrap();
    cluster.terminate(victim);
    std::fs::remove_dir_all(&cluster.node(victim).home).unwrap();

    // Writers keep going while the wiped node starts and catches up.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let written = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer = {
        let client = cluster.client(&all);
        let stop = stop.clone();
        let written = written.clone();
        std::thread::spawn(move || {
            let rt = runtime();
            rt.block_on(async {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    set_retry(&client, format!("load{i:06}"), "x".repeat(500)).await;
                    i += 1;
                    written.store(i, std::sync::atomic::Ordering::Relaxed);
                }
            });
        })
    };
    wait_for("some writes before the restart", CONVERGE, || {
        (written.load(std::sync::atomic::Ordering::Relaxed) >= 300).then_some(())
    });
    cluster.start(victim);
    // The wiped node reaches a key written after it restarted, while the load continues.
    let target = written.load(std::sync::atomic::Ordering::Relaxed) + 200;
    wait_for("writes after the restart", CONVERGE, || {
        (written.load(std::sync::atomic::Ordering::Relaxed) > target).then_some(())
    });
    cluster.wait_value(
        victim,
        &format!("load{target:06}"),
        &"x".repeat(500),
        CONVERGE,
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    let rt = runtime();
    rt.block_on(async { set_retry(&cluster.client(&all), "final", "done").await });
    cluster.wait_value(victim, "final", "done", CONVERGE);
    cluster.wait_value(victim, "load000000", &"x".repeat(500), CONVERGE);
}

#[test]
fn the_preferred_master_takes_the_role() {
    let mut spec = ClusterSpec::new(3);
    spec.extra_cluster_lines = vec!["preferred_master = \"n2\"".into()];
    let mut cluster = TestCluster::new(&spec);
    cluster.start_all();
    let all = ["n0", "n1", "n2"];
    wait_for("n2 (preferred) to be master", ELECTION, || {
        (cluster.wait_master(&all, ELECTION) == "n2").then_some(())
    });
}

#[test]
fn kill_9_of_the_master_under_write_load_loses_no_acknowledged_write() {
    let mut cluster = TestCluster::new(&ClusterSpec::new(3));
    cluster.start_all();
    let all = ["n0", "n1", "n2"];
    let master = cluster.wait_master(&all, ELECTION);
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let client = cluster.client(&all);
            let acknowledged = acknowledged.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let rt = runtime();
                rt.block_on(async {
                    let mut i = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let key = format!("w{w}-{i}");
                        i += 1;
                        // Failures during the failover are fine; only acknowledged writes count.
                        if client.set(key.clone(), "v").await.is_ok() {
                            acknowledged.lock().unwrap().push(key);
                        }
                    }
                });
            })
        })
        .collect();
    wait_for("writes before the kill", CONVERGE, || {
        (acknowledged.lock().unwrap().len() >= 200).then_some(())
    });
    cluster.kill9(&master);
    let before_kill = acknowledged.lock().unwrap().len();
    let rest: Vec<&str> = all.iter().copied().filter(|n| *n != master).collect();
    cluster.wait_master(&rest, ELECTION);
    wait_for("writes after the failover", CONVERGE, || {
        (acknowledged.lock().unwrap().len() >= before_kill + 200).then_some(())
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let keys = acknowledged.lock().unwrap().clone();
    let rt = runtime();
    let client = cluster.client(&rest);
    rt.block_on(async {
        for key in &keys {
            assert_eq!(
                client.get(key.clone()).await.unwrap(),
                "v",
                "acknowledged {key} lost"
            );
        }
    });
}

#[test]
fn a_learner_does_not_count_toward_a_quorum() {
    let mut spec = ClusterSpec::new(4);
    spec.extra_cluster_lines = vec!["learners = [\"n3\"]".into()];
    let mut cluster = TestCluster::new(&spec);
    cluster.start_all();
    let voters = ["n0", "n1", "n2"];
    let master = cluster.wait_master(&voters, ELECTION);
    let rt = runtime();
    rt.block_on(async { set_retry(&cluster.client(&voters), "before", "ok").await });
    cluster.wait_value("n3", "before", "ok", CONVERGE);
    // Two of three voters die: one voter plus the learner are no majority, so no write may
    // commit, however long we try.
    for v in voters.iter().filter(|v| **v != master).take(2) {
        cluster.kill9(v);
    }
    let survivors: Vec<&str> = ["n0", "n1", "n2", "n3"]
        .into_iter()
        .filter(|n| *n == master || *n == "n3")
        .collect();
    let mut config = rarakoon_client::ClientConfig::new(cluster.cluster_id.clone());
    for n in &survivors {
        config = config.node(n.to_string(), cluster.client_addr(n));
    }
    config.request_timeout = Duration::from_secs(3);
    config.max_attempts = 3;
    let client = rarakoon_client::Client::new(config).unwrap();
    let result = rt.block_on(client.set("after", "must-not-commit"));
    assert!(
        result.is_err(),
        "a write committed without a voting majority"
    );
    assert_eq!(cluster.dirty_get("n3", "after"), None);
    assert_eq!(cluster.dirty_get(&master, "after"), None);
}
