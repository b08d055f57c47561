//! End-to-end tests of the cluster options on real `rarakoon-bin` processes: a witness votes
//! and keeps the log but serves no data, a 2-voter + 1-witness cluster survives the loss of any
//! one node (kill -9), and the master settles on the first reachable preferred master.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use rarakoon_client::{Consistency, ErrorCode, Request};
use support::{ClusterSpec, TestCluster, runtime, set_retry, wait_for};

const ELECTION: Duration = Duration::from_secs(60);
const CONVERGE: Duration = Duration::from_secs(60);

/// Writes `count` keys `<batch>-<i>` through a client of the voters.
fn write_batch(cluster: &TestCluster, voters: &[&str], batch: &str, count: usize) {
    let rt = runtime();
    let client = cluster.client(voters);
    rt.block_on(async {
        for i in 0..count {
            set_retry(&client, format!("{batch}-{i}"), format!("{batch}:{i}")).await;
        }
    });
}

/// A consistent read of every key of `batch` at the master, through a client of `voters`.
fn assert_batch(cluster: &TestCluster, voters: &[&str], batch: &str, count: usize) {
    let rt = runtime();
    let client = cluster.client(voters);
    rt.block_on(async {
        for i in 0..count {
            let key = format!("{batch}-{i}");
            let value = client.get(key.clone()).await.unwrap_or_else(|e| {
                panic!("{key}: {e}");
            });
            assert_eq!(value, format!("{batch}:{i}").as_bytes(), "{key}");
        }
    });
}

fn assert_refused_as_witness(cluster: &TestCluster, witness: &str, request: &Request) {
    let reply = cluster
        .ask(witness, request)
        .unwrap_or_else(|| panic!("{witness} did not answer {request:?}"));
    let err = reply.expect_err("a witness must refuse data requests");
    assert_eq!(err.code, ErrorCode::NotSupported, "{request:?}");
    let message = String::from_utf8_lossy(&err.message).into_owned();
    assert!(
        message.contains("is a witness") && message.contains(witness),
        "{request:?}: {message}"
    );
}

#[test]
fn a_witness_votes_and_keeps_the_log_and_two_voters_and_a_witness_survive_any_one_loss() {
    let mut spec = ClusterSpec::new(3);
    spec.extra_cluster_lines = vec!["witnesses = [\"n2\"]".into()];
    spec.metrics = true;
    let mut cluster = TestCluster::new(&spec);
    cluster.start_all();
    let voters = ["n0", "n1"];
    let first = cluster.wait_master(&voters, ELECTION);
    // The witness knows the master, but it never is one, and it serves no data.
    wait_for("the witness to name the master", ELECTION, || {
        (cluster.who_master_at("n2").as_deref() == Some(first.as_str())).then_some(())
    });
    write_batch(&cluster, &voters, "a", 20);
    // The witness learns every commit but applies none of them.
    let metrics_port = cluster.node("n2").metrics_port.unwrap();
    let witness_gauge = |name: &str| -> Option<f64> {
        let (_, body) = support::http_get(([127, 0, 0, 1], metrics_port).into(), "/metrics")?;
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    };
    wait_for("the witness to learn batch a", CONVERGE, || {
        witness_gauge("rarakoon_committed_index").filter(|c| *c >= 20.0)
    });
    assert_eq!(witness_gauge("rarakoon_applied_index"), Some(0.0));
    let key = Bytes::from_static(b"a-1");
    for consistency in [
        Consistency::NoGuarantees,
        Consistency::Consistent,
        Consistency::AtLeast(0),
    ] {
        assert_refused_as_witness(
            &cluster,
            "n2",
            &Request::Get {
                consistency,
                key: key.clone(),
            },
        );
    }
    assert_refused_as_witness(
        &cluster,
        "n2",
        &Request::Set {
            key: key.clone(),
            value: Bytes::from_static(b"x"),
        },
    );
    assert_refused_as_witness(&cluster, "n2", &Request::GetTxid);
    assert_refused_as_witness(&cluster, "n2", &Request::GetDb);

    // Losing the witness: the two voters are a quorum.
    cluster.kill9("n2");
    write_batch(&cluster, &voters, "b", 20);
    cluster.start("n2");

    // Losing the master: the other voter and the witness are a quorum.
    let survivor = *voters.iter().find(|n| **n != first).unwrap();
    cluster.kill9(&first);
    let second = cluster.wait_master(&voters, ELECTION);
    assert_eq!(second, survivor);
    write_batch(&cluster, &voters, "c", 20);

    // Now the survivor goes too, and the first master comes back: batch c lives only on the
    // killed survivor and the witness, so the restarted node can only learn it from the
    // witness's log.
    cluster.kill9(survivor);
    cluster.start(&first);
    let third = cluster.wait_master(&voters, ELECTION);
    assert_eq!(third, first);
    assert_batch(&cluster, &voters, "c", 20);
    write_batch(&cluster, &voters, "d", 20);

    // Everyone back: the survivor catches up, and every batch is on both voters.
    cluster.start(survivor);
    for batch in ["a", "b", "c", "d"] {
        assert_batch(&cluster, &voters, batch, 20);
        for voter in voters {
            cluster.wait_value(
                voter,
                &format!("{batch}-19"),
                &format!("{batch}:19"),
                CONVERGE,
            );
        }
    }
    // The witness never took the master role.
    assert!(
        !cluster.log("n2").contains("became master"),
        "the witness became master"
    );
}

#[test]
fn the_master_settles_on_the_first_reachable_preferred_master() {
    let mut spec = ClusterSpec::new(3);
    spec.extra_cluster_lines = vec!["preferred_masters = [\"n2\", \"n1\"]".into()];
    let mut cluster = TestCluster::new(&spec);
    cluster.start_all();
    let all = ["n0", "n1", "n2"];
    wait_for("n2 (first preferred) to be master", ELECTION, || {
        (cluster.wait_master(&all, ELECTION) == "n2").then_some(())
    });
    write_batch(&cluster, &all, "a", 5);
    cluster.kill9("n2");
    let up = ["n0", "n1"];
    wait_for("n1 (second preferred) to be master", ELECTION, || {
        (cluster.wait_master(&up, ELECTION) == "n1").then_some(())
    });
    write_batch(&cluster, &up, "b", 5);
    cluster.start("n2");
    wait_for("n2 to take the role back", ELECTION, || {
        (cluster.wait_master(&all, ELECTION) == "n2").then_some(())
    });
    assert_batch(&cluster, &all, "b", 5);
}

#[test]
fn check_config_shows_witnesses_quorum_and_preferred_masters_and_names_bad_ones() {
    let mut spec = ClusterSpec::new(3);
    spec.extra_cluster_lines = vec![
        "witnesses = [\"n2\"]".into(),
        "quorum = 2".into(),
        "preferred_masters = [\"n1\", \"n0\"]".into(),
    ];
    let cluster = TestCluster::new(&spec);
    let config = cluster.config_file().to_str().unwrap().to_owned();
    let (code, out, err) = cluster.cli(&["check-config", &config]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("n2 (witness)"), "{out}");
    assert!(out.contains("quorum 2 (override)"), "{out}");
    assert!(out.contains("preferred masters, in order: n1, n0"), "{out}");
    let text = std::fs::read_to_string(cluster.config_file()).unwrap();
    for (bad, field) in [
        ("quorum = 2", "cluster.quorum", "quorum = 4"),
        (
            "witnesses = [\"n2\"]",
            "cluster.witnesses[0]",
            "witnesses = [\"n5\"]",
        ),
    ]
    .map(|(good, field, bad)| (text.replace(good, bad), field))
    {
        let file = cluster.dir.path().join("bad.toml");
        std::fs::write(&file, bad).unwrap();
        let (code, _, err) = cluster.cli(&["check-config", file.to_str().unwrap()]);
        assert_ne!(code, 0);
        assert!(err.contains(field), "{field}: {err}");
    }
}

#[test]
fn every_admin_opcode_has_a_command_answered_per_node() {
    let mut cluster = TestCluster::new(&ClusterSpec::new(3));
    cluster.start_all();
    let all = ["n0", "n1", "n2"];
    let master = cluster.wait_master(&all, ELECTION);
    write_batch(&cluster, &all, "a", 3);
    let slave = *all.iter().find(|n| **n != master).unwrap();
    let config = cluster.config_file().to_str().unwrap().to_owned();
    let admin = |node: &str, args: &[&str]| {
        let mut full = vec!["admin", "--cluster-config", config.as_str(), "--node", node];
        full.extend_from_slice(args);
        cluster.cli(&full)
    };
    // Refused on the master, as Arakoon does; done on a slave.
    for command in [
        &["optimize-db"][..],
        &["defrag-db"],
        &["copy-db-to-head", "--keep", "2"],
    ] {
        let (code, out, err) = admin(&master, command);
        assert_eq!(code, 2, "{command:?} on the master: {out}{err}");
        assert!(err.contains("master"), "{command:?}: {err}");
        let (code, out, err) = admin(slave, command);
        assert_eq!(code, 0, "{command:?} on a slave: {out}{err}");
        assert_eq!(out.trim(), format!("{slave}: done"));
    }
    let (code, out, _) = admin(slave, &["flush-store"]);
    assert_eq!((code, out.trim()), (0, format!("{slave}: done").as_str()));
    let (code, out, _) = admin(slave, &["who-master"]);
    assert_eq!(
        (code, out.trim()),
        (0, format!("{slave}: {master}").as_str())
    );
    let (code, out, _) = admin(&master, &["expect-progress-possible"]);
    assert_eq!((code, out.trim()), (0, format!("{master}: true").as_str()));
    let (code, out, _) = admin(slave, &["expect-progress-possible"]);
    assert_eq!((code, out.trim()), (1, format!("{slave}: false").as_str()));
    let (code, out, _) = admin(slave, &["version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with(&format!("{slave}: 1.9.0")), "{out}");
    let (code, out, _) = admin(slave, &["statistics"]);
    assert_eq!(code, 0);
    assert!(out.contains("node_is") && out.contains(slave), "{out}");
    // node_is on the master names every node with the index it holds, as Arakoon's does: the
    // master's own applied index, and each slave's last acknowledgement (they catch up to it).
    wait_for(
        "the master's node_is to show every node at its index",
        CONVERGE,
        || {
            let (code, out, _) = admin(&master, &["statistics"]);
            assert_eq!(code, 0, "{out}");
            let node_is = node_is(&out);
            let own = node_is.iter().find(|(n, _)| n == &master)?.1;
            (node_is.len() == 3 && own >= 4 && node_is.iter().all(|(_, i)| *i == own)).then_some(())
        },
    );
    // A slave names itself and its master.
    let (_, out, _) = admin(slave, &["statistics"]);
    let names: Vec<String> = node_is(&out).into_iter().map(|(n, _)| n).collect();
    assert!(
        names.contains(&slave.to_owned()) && names.contains(&master),
        "{out}"
    );
}

/// The `node_is` entries of `admin statistics` output: (name, index) per line under it.
fn node_is(out: &str) -> Vec<(String, u64)> {
    let mut lines = out.lines().skip_while(|l| l.trim() != "node_is:");
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let depth = header.len() - header.trim_start().len();
    lines
        .take_while(|l| l.len() - l.trim_start().len() > depth)
        .filter_map(|l| {
            let (name, index) = l.trim().split_once(": ")?;
            Some((name.to_owned(), index.parse().ok()?))
        })
        .collect()
}
