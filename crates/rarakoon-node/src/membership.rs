//! A node's identity is its name: the membership record that fixes each node's number.
//!
//! paxos-core numbers nodes (`NodeId`), and ballots, `Master{node}` values and the promise
//! file store those numbers. The numbering must therefore be the same on every node and for
//! the whole life of a home directory. It is **not** the position in `[[nodes]]` (ADR 0115):
//!
//! - The canonical order is by node name (byte-wise ascending); `NodeId(i)` is the `i`-th
//!   name in it. A fresh home takes this numbering, so the order of `[[nodes]]` in the file
//!   does not matter and nodes whose files list the nodes differently still agree.
//! - The numbering is recorded in `<home>/membership` (names, roles and cluster id, with a
//!   CRC-32C) before anything else is written, and every later start numbers the nodes from
//!   that record, not from the config. A config whose names, roles or cluster id differ from
//!   the record refuses to start ([`MembershipError::Mismatch`] names every difference and the
//!   fix); one that merely lists the same nodes in another order starts normally.
//! - A home from before this record existed (it has a promise or a WAL, but no record) was
//!   numbered by `[[nodes]]` position, so it adopts the config's order as written, records it
//!   and logs that it did.
//! - The messaging handshake carries [`Membership::view`]: nodes whose numbering differs
//!   refuse each other, with both views in the error on both sides.
//!
//! Invariants: the record is replaced only atomically (temp file, fsync, rename, fsync
//! directory); it is read with a size bound and accepted only if its checksum, format, node
//! numbers (0, 1, 2, ... in order), names and roles are all valid; a started node's
//! `NodeId`s, peer names and paxos roles all come from one [`Membership`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use paxos_core::NodeId;

use write_ahead_log::FileSystem;

use crate::config::ClusterConfig;
use crate::durable_file::{self, Contents};

/// File name of the membership record inside the home directory.
pub const MEMBERSHIP_FILE: &str = "membership";
/// Largest record accepted (16 names of at most 128 bytes fit many times over).
pub const MAX_RECORD_BYTES: u64 = 64 * 1024;
/// Version of the record's format.
const FORMAT: u32 = 1;

/// Whether a node votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MemberRole {
    /// Votes and may become master.
    Voter,
    /// Receives the log, never votes.
    Learner,
}

impl MemberRole {
    fn as_str(self) -> &'static str {
        match self {
            MemberRole::Voter => "voter",
            MemberRole::Learner => "learner",
        }
    }

    fn parse(text: &str) -> Option<MemberRole> {
        match text {
            "voter" => Some(MemberRole::Voter),
            "learner" => Some(MemberRole::Learner),
            _ => None,
        }
    }
}

impl fmt::Display for MemberRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One node of the membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The node's name.
    pub name: String,
    /// Its role.
    pub role: MemberRole,
}

/// The cluster's nodes in `NodeId` order, with the cluster id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    cluster: String,
    members: Vec<Member>,
}

/// Why the membership record cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// I/O failed.
    #[error("membership record {}: cannot {op}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The record is damaged.
    #[error(
        "membership record {} is damaged ({problem}). It fixes the number of each node in this \
         home's history. Every node of the cluster holds the same record: copy `membership` \
         from the home of another node of this cluster into {}, then start again",
        path.display(),
        home.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The home directory.
        home: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The config describes other nodes, roles or cluster than the home's history.
    #[error(
        "the config does not match the history in {}: {}. The history (recorded in {}) numbers \
         the nodes [{recorded}]; the config describes [{configured}]. Starting would hand this \
         home's ballots and master records to other nodes. To fix: make `[[nodes]]` names, \
         `cluster.learners` and `cluster.id` match the recorded membership again (the order of \
         `[[nodes]]` does not matter). Changing a cluster's membership in place is not \
         supported; a node that should really belong to the new membership must start from an \
         empty home_dir (move {} aside) and then catches up from peers that run it",
        home.display(),
        differences.join("; "),
        file.display(),
        home.display()
    )]
    Mismatch {
        /// The home directory.
        home: PathBuf,
        /// The record.
        file: PathBuf,
        /// The recorded membership ([`Membership::view`]).
        recorded: String,
        /// The configured membership, in canonical order.
        configured: String,
        /// Each difference, readable.
        differences: Vec<String>,
    },
    /// The promise file names a node the membership does not have.
    #[error(
        "promise file in {} names node number {node}, but the membership [{view}] has only \
         {count} nodes; the promise file is damaged (see `rarakoon-bin wal verify`)",
        home.display()
    )]
    PromiseOutOfRange {
        /// The home directory.
        home: PathBuf,
        /// The number found.
        node: u8,
        /// How many nodes there are.
        count: usize,
        /// The membership.
        view: String,
    },
    /// The promise file could not be read.
    #[error(transparent)]
    Promise(#[from] crate::promise::PromiseError),
}

impl Membership {
    /// The membership `config` describes, in canonical order (by name).
    pub fn canonical(config: &ClusterConfig) -> Membership {
        let mut m = Membership::in_config_order(config);
        m.members.sort_by(|a, b| a.name.cmp(&b.name));
        m
    }

    /// The membership in the order of `[[nodes]]` (how homes from before the record numbered
    /// nodes).
    pub fn in_config_order(config: &ClusterConfig) -> Membership {
        Membership {
            cluster: config.cluster.id.clone(),
            members: config
                .nodes
                .iter()
                .map(|n| Member {
                    name: n.name.clone(),
                    role: if config.is_learner(&n.name) {
                        MemberRole::Learner
                    } else {
                        MemberRole::Voter
                    },
                })
                .collect(),
        }
    }

    /// The members in `NodeId` order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The cluster id.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The id of node `name`.
    pub fn id_of(&self, name: &str) -> Option<NodeId> {
        self.members
            .iter()
            .position(|m| m.name == name)
            .and_then(|i| u8::try_from(i).ok())
            .map(NodeId)
    }

    /// Node names in `NodeId` order.
    pub fn names(&self) -> Vec<String> {
        self.members.iter().map(|m| m.name.clone()).collect()
    }

    /// The readable view exchanged in the handshake: `0=a:voter 1=b:learner ...`.
    pub fn view(&self) -> String {
        self.members
            .iter()
            .enumerate()
            .map(|(i, m)| format!("{i}={}:{}", m.name, m.role))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `config` with its `[[nodes]]` in this membership's `NodeId` order, so that every
    /// position-based lookup in the node agrees with the record. `None` if the config does
    /// not have exactly these nodes.
    pub fn arrange(&self, config: &ClusterConfig) -> Option<ClusterConfig> {
        if config.nodes.len() != self.members.len() {
            return None;
        }
        let mut arranged = config.clone();
        arranged.nodes.clear();
        for m in &self.members {
            arranged
                .nodes
                .push(config.nodes.iter().find(|n| n.name == m.name)?.clone());
        }
        Some(arranged)
    }

    /// What differs between `self` (the record) and `other` (the config), readable; empty
    /// when both have the same cluster, names and roles (in any order).
    pub fn differences(&self, other: &Membership) -> Vec<String> {
        let mut out = Vec::new();
        if self.cluster != other.cluster {
            out.push(format!(
                "the history belongs to cluster `{}` but the config is for cluster `{}`",
                self.cluster, other.cluster
            ));
        }
        let roles = |m: &Membership| -> BTreeMap<String, MemberRole> {
            m.members.iter().map(|x| (x.name.clone(), x.role)).collect()
        };
        let (recorded, configured) = (roles(self), roles(other));
        for (name, role) in &recorded {
            match configured.get(name) {
                None => out.push(format!(
                    "node `{name}` ({role}) is in the history but not in the config"
                )),
                Some(r) if r != role => out.push(format!(
                    "node `{name}` is a {role} in the history but a {r} in the config"
                )),
                Some(_) => {}
            }
        }
        for (name, role) in &configured {
            if !recorded.contains_key(name) {
                out.push(format!(
                    "node `{name}` ({role}) is in the config but not in the history"
                ));
            }
        }
        out
    }

    /// The record's text.
    pub fn encode(&self) -> String {
        let mut text = String::from(
            "# Rarakoon membership record: the number (NodeId) of each node in this home's\n\
             # history. Ballots, master records and the promise file use these numbers.\n\
             # Written at the first start and checked at every start. Do not edit.\n",
        );
        text.push_str(&format!("format={FORMAT}\ncluster={}\n", self.cluster));
        for (i, m) in self.members.iter().enumerate() {
            text.push_str(&format!("node={i} name={} role={}\n", m.name, m.role));
        }
        let crc = crc32c::crc32c(text.as_bytes());
        text.push_str(&format!("crc32c={crc:08x}\n"));
        text
    }

    /// Parses a record, checking everything; `Err` says what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<Membership, String> {
        let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
        let body_end = text
            .rfind("crc32c=")
            .ok_or_else(|| "no `crc32c=` line".to_owned())?;
        let (body, crc_line) = text.split_at(body_end);
        if !(body.is_empty() || body.ends_with('\n')) {
            return Err("the `crc32c=` line does not start a line".into());
        }
        let stored = crc_line
            .strip_prefix("crc32c=")
            .and_then(|s| s.strip_suffix('\n'))
            .filter(|s| s.len() == 8)
            .and_then(|s| u32::from_str_radix(s, 16).ok())
            .ok_or_else(|| format!("bad checksum line {:?}", crc_line.trim_end()))?;
        let actual = crc32c::crc32c(body.as_bytes());
        if stored != actual {
            return Err(format!(
                "checksum mismatch: recorded {stored:08x}, content has {actual:08x}"
            ));
        }
        let mut lines = body.lines().filter(|l| !l.starts_with('#'));
        let format = lines
            .next()
            .and_then(|l| l.strip_prefix("format="))
            .ok_or_else(|| "no `format=` line".to_owned())?;
        if format != FORMAT.to_string() {
            return Err(format!(
                "format {format:?} is not {FORMAT} (written by another version?)"
            ));
        }
        let cluster = lines
            .next()
            .and_then(|l| l.strip_prefix("cluster="))
            .ok_or_else(|| "no `cluster=` line".to_owned())?;
        crate::config::check_name(cluster).map_err(|p| format!("cluster id {p}"))?;
        let mut members = Vec::new();
        let mut seen = BTreeSet::new();
        for line in lines {
            if members.len() >= crate::config::limits::MAX_NODES {
                return Err(format!(
                    "more than {} nodes",
                    crate::config::limits::MAX_NODES
                ));
            }
            let bad = || format!("bad node line {line:?}");
            let mut parts = line.split(' ');
            let number: usize = parts
                .next()
                .and_then(|p| p.strip_prefix("node="))
                .and_then(|p| p.parse().ok())
                .ok_or_else(bad)?;
            let name = parts
                .next()
                .and_then(|p| p.strip_prefix("name="))
                .ok_or_else(bad)?;
            let role = parts
                .next()
                .and_then(|p| p.strip_prefix("role="))
                .and_then(MemberRole::parse)
                .ok_or_else(bad)?;
            if parts.next().is_some() {
                return Err(bad());
            }
            if number != members.len() {
                return Err(format!(
                    "node number {number} where {} was expected",
                    members.len()
                ));
            }
            crate::config::check_name(name).map_err(|p| format!("node name {p}"))?;
            if !seen.insert(name.to_owned()) {
                return Err(format!("node `{name}` appears twice"));
            }
            members.push(Member {
                name: name.to_owned(),
                role,
            });
        }
        if members.is_empty() {
            return Err("no nodes".into());
        }
        if !members.iter().any(|m| m.role == MemberRole::Voter) {
            return Err("no voting node".into());
        }
        Ok(Membership {
            cluster: cluster.to_owned(),
            members,
        })
    }
}

/// Whether `home` holds data from an earlier start (a promise or a non-empty WAL directory).
fn has_history(fs: &dyn FileSystem, home: &Path) -> Result<bool, MembershipError> {
    let io =
        |op: &'static str, path: PathBuf| move |source| MembershipError::Io { path, op, source };
    let promise = home.join(crate::promise::PROMISE_FILE);
    if fs
        .exists(&promise)
        .map_err(io("look for the promise file", promise.clone()))?
    {
        return Ok(true);
    }
    let wal = crate::storage::wal_dir(home);
    match fs.list_dir(&wal) {
        Ok(entries) => Ok(!entries.is_empty()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(MembershipError::Io {
            path: wal,
            op: "list the write-ahead log directory",
            source,
        }),
    }
}

/// Reads the record in `home`, if there is one.
pub fn load(fs: &dyn FileSystem, home: &Path) -> Result<Option<Membership>, MembershipError> {
    let path = home.join(MEMBERSHIP_FILE);
    let corrupt = |problem: String| MembershipError::Corrupt {
        path: path.clone(),
        home: home.to_path_buf(),
        problem,
    };
    match durable_file::read_bounded(fs, &path, MAX_RECORD_BYTES) {
        Ok(Contents::Missing) => Ok(None),
        Ok(Contents::TooLarge(len)) => Err(corrupt(format!(
            "{len} bytes, more than the {MAX_RECORD_BYTES} a record can have"
        ))),
        Ok(Contents::Bytes(bytes)) => Membership::decode(&bytes).map(Some).map_err(corrupt),
        Err(source) => Err(MembershipError::Io {
            path: path.clone(),
            op: "read",
            source,
        }),
    }
}

/// Writes the record in `home` durably.
pub fn store(
    fs: &dyn FileSystem,
    home: &Path,
    membership: &Membership,
) -> Result<(), MembershipError> {
    durable_file::replace(fs, home, MEMBERSHIP_FILE, membership.encode().as_bytes()).map_err(
        |(op, source)| MembershipError::Io {
            path: home.join(MEMBERSHIP_FILE),
            op,
            source,
        },
    )
}

/// The start-up check (see the module documentation): the membership this node must run
/// with, after recording it if the home had no record. Call with the home locked, before
/// anything else reads or writes it.
pub fn check_home(
    fs: &dyn FileSystem,
    home: &Path,
    config: &ClusterConfig,
) -> Result<Membership, MembershipError> {
    let configured = Membership::canonical(config);
    // The home itself may not exist yet on a fresh start (the record is its first file).
    fs.create_dir_all(home)
        .map_err(|source| MembershipError::Io {
            path: home.to_path_buf(),
            op: "create the home directory",
            source,
        })?;
    let membership = match load(fs, home)? {
        Some(recorded) => {
            let differences = recorded.differences(&configured);
            if !differences.is_empty() {
                return Err(MembershipError::Mismatch {
                    home: home.to_path_buf(),
                    file: home.join(MEMBERSHIP_FILE),
                    recorded: recorded.view(),
                    configured: configured.view(),
                    differences,
                });
            }
            recorded
        }
        None if has_history(fs, home)? => {
            let adopted = Membership::in_config_order(config);
            store(fs, home, &adopted)?;
            tracing::warn!(
                home = %home.display(),
                membership = %adopted.view(),
                "this home predates membership records: adopted the order of [[nodes]] in the \
                 config (how its history numbered the nodes) and recorded it; from now on the \
                 order of [[nodes]] does not matter"
            );
            if adopted != configured {
                tracing::warn!(
                    canonical = %configured.view(),
                    "the adopted numbering is not the by-name order a fresh home takes: a node \
                     started later from an empty home must first get a copy of this `membership` \
                     file from another node, or the handshake refuses it"
                );
            }
            adopted
        }
        None => {
            store(fs, home, &configured)?;
            tracing::info!(
                home = %home.display(),
                membership = %configured.view(),
                "fresh home: recorded the membership (nodes numbered by name)"
            );
            configured
        }
    };
    let promised = crate::promise::load(fs, home)?;
    if promised.node.index() >= membership.members.len() {
        return Err(MembershipError::PromiseOutOfRange {
            home: home.to_path_buf(),
            node: promised.node.0,
            count: membership.members.len(),
            view: membership.view(),
        });
    }
    Ok(membership)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;
    use std::path::Path;

    fn config(names: &[&str], learners: &[&str]) -> ClusterConfig {
        let mut text = format!(
            "[cluster]\nid = \"c\"\nlearners = [{}]\n",
            learners
                .iter()
                .map(|l| format!("\"{l}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (i, n) in names.iter().enumerate() {
            text.push_str(&format!(
                "[[nodes]]\nname = \"{n}\"\naddresses = [\"127.0.0.1:{}\"]\nclient_port = {}\n\
                 home_dir = \"{n}\"\n",
                5000 + i,
                6000 + i
            ));
        }
        ClusterConfig::from_toml_str(&text, Path::new("/c.toml"), Path::new("/")).unwrap()
    }

    #[test]
    fn canonical_order_is_by_name_and_ignores_the_file_order() {
        let a = Membership::canonical(&config(&["b", "c", "a"], &["c"]));
        let b = Membership::canonical(&config(&["c", "a", "b"], &["c"]));
        assert_eq!(a, b);
        assert_eq!(a.view(), "0=a:voter 1=b:voter 2=c:learner");
        assert_eq!(a.id_of("c"), Some(NodeId(2)));
        let arranged = a.arrange(&config(&["c", "b", "a"], &["c"])).unwrap();
        assert_eq!(
            arranged.node_names().collect::<Vec<_>>(),
            vec!["a", "b", "c"]
        );
    }

    #[test]
    fn the_record_round_trips_and_damage_is_detected() {
        let m = Membership::in_config_order(&config(&["z", "a"], &[]));
        let text = m.encode();
        assert_eq!(Membership::decode(text.as_bytes()).unwrap(), m);
        // Any single-byte change is refused, never accepted as another membership.
        for i in 0..text.len() {
            let mut bytes = text.clone().into_bytes();
            bytes[i] ^= 0x01;
            assert!(Membership::decode(&bytes).is_err(), "byte {i}");
        }
        for cut in 0..text.len() {
            assert!(
                Membership::decode(&text.as_bytes()[..cut]).is_err(),
                "cut {cut}"
            );
        }
    }

    proptest! {
        #[test]
        fn decoding_garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Membership::decode(&data);
        }

        #[test]
        fn decoding_mutated_records_never_panics(
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let text = Membership::canonical(&config(&["n1", "n0", "n2"], &["n2"])).encode();
            let mut bytes = text.into_bytes();
            let i = at.index(bytes.len());
            bytes[i] = byte;
            let keep = cut.index(bytes.len() + 1);
            let _ = Membership::decode(&bytes[..keep]);
        }
    }

    #[test]
    fn differences_name_each_node_and_role() {
        let recorded = Membership::canonical(&config(&["a", "b", "c"], &["c"]));
        let configured = Membership::canonical(&config(&["a", "b", "d"], &["b"]));
        let d = recorded.differences(&configured);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(
            d[0].contains("`b` is a voter in the history but a learner"),
            "{d:?}"
        );
        assert!(
            d[1].contains("`c` (learner) is in the history but not"),
            "{d:?}"
        );
        assert!(
            d[2].contains("`d` (voter) is in the config but not"),
            "{d:?}"
        );
    }
}
