//! The cluster options that shape consensus (witnesses, the quorum override, preferred
//! masters) reach the consensus core as configured: roles by node, the quorum size, and the
//! preferred masters in the order the file lists them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use paxos_core::{NodeId, Role};
use rarakoon_node::ClusterConfig;
use rarakoon_node::node::{Bounds, paxos_config};

fn config(cluster_lines: &str) -> ClusterConfig {
    let mut text = format!("[cluster]\nid = \"c\"\n{cluster_lines}\n");
    for i in 0..4 {
        text.push_str(&format!(
            "[[nodes]]\nname = \"n{i}\"\naddresses = [\"127.0.0.1:{}\"]\nclient_port = {}\n\
             home_dir = \"n{i}\"\n",
            5010 + i,
            5000 + i
        ));
    }
    ClusterConfig::from_toml_str(&text, Path::new("/c.toml"), Path::new("/base")).unwrap()
}

fn core_config(c: &ClusterConfig, me: u8) -> paxos_core::Config {
    paxos_config(c, NodeId(me), Bounds::new(c)).unwrap()
}

#[test]
fn witnesses_learners_and_voters_get_their_roles() {
    let c = config("witnesses = [\"n3\"]\nlearners = [\"n2\"]");
    let p = core_config(&c, 3);
    assert_eq!(
        p.nodes,
        vec![Role::Voter, Role::Voter, Role::Learner, Role::Witness]
    );
    assert_eq!(p.voter_count(), 3);
    assert_eq!(p.quorum_size(), 2);
    assert_eq!(p.quorum, None);
}

#[test]
fn the_quorum_override_reaches_the_core() {
    let c = config("quorum = 3");
    assert_eq!(core_config(&c, 0).quorum_size(), 3);
    let c = config("quorum = 1");
    assert_eq!(core_config(&c, 0).quorum, Some(1));
    // Without an override: a majority of four voting nodes.
    assert_eq!(core_config(&config(""), 0).quorum_size(), 3);
}

#[test]
fn preferred_masters_keep_their_order() {
    let c = config("preferred_masters = [\"n2\", \"n0\", \"n3\"]");
    assert_eq!(
        core_config(&c, 1).preferred_masters,
        vec![NodeId(2), NodeId(0), NodeId(3)]
    );
    let c = config("preferred_master = \"n1\"");
    assert_eq!(core_config(&c, 0).preferred_masters, vec![NodeId(1)]);
    assert!(core_config(&config(""), 0).preferred_masters.is_empty());
}
