//! The durable Paxos promise: the highest ballot this node promised, in `<home>/promise`.
//!
//! Promises change only at elections, so each one is written as a small text file replaced
//! atomically (temp file, fsync, rename, fsync directory): a crash leaves either the old or
//! the new promise, never a torn one. The file is text so an operator can read it.

use std::io::Write;
use std::path::{Path, PathBuf};

use paxos_core::{Ballot, NodeId};

/// File name of the promise inside the home directory.
pub const PROMISE_FILE: &str = "promise";

/// A promise file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum PromiseError {
    /// I/O failed.
    #[error("promise file {}: cannot {op}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The content is not a promise.
    #[error(
        "promise file {} is corrupt ({problem}); it holds the last Paxos promise of this node. \
         If the node's data is otherwise intact, delete the file and the node restarts with \
         no promise (safe only if this node was not the only one to promise that ballot)",
        path.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// Reads the promise in `home`, `Ballot::ZERO` when there is none yet.
pub fn load(home: &Path) -> Result<Ballot, PromiseError> {
    let path = home.join(PROMISE_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ballot::ZERO),
        Err(source) => {
            return Err(PromiseError::Io {
                path,
                op: "read",
                source,
            });
        }
    };
    parse(&text).ok_or_else(|| PromiseError::Corrupt {
        path,
        problem: format!("expected `round=<n> node=<n>`, found {:?}", text.trim()),
    })
}

fn parse(text: &str) -> Option<Ballot> {
    let mut parts = text.split_whitespace();
    let round = parts.next()?.strip_prefix("round=")?.parse().ok()?;
    let node = parts.next()?.strip_prefix("node=")?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some(Ballot {
        round,
        node: NodeId(node),
    })
}

/// Replaces the promise in `home` durably.
pub fn store(home: &Path, ballot: Ballot) -> Result<(), PromiseError> {
    let path = home.join(PROMISE_FILE);
    let tmp = home.join(format!("{PROMISE_FILE}.tmp"));
    let io = |op: &'static str| {
        let path = path.clone();
        move |source| PromiseError::Io { path, op, source }
    };
    let mut file = std::fs::File::create(&tmp).map_err(io("create temp file"))?;
    writeln!(file, "round={} node={}", ballot.round, ballot.node.0).map_err(io("write"))?;
    file.sync_all().map_err(io("fsync"))?;
    std::fs::rename(&tmp, &path).map_err(io("rename"))?;
    std::fs::File::open(home)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync directory"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn round_trips_and_defaults_to_zero() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(load(tmp.path()).unwrap(), Ballot::ZERO);
        let b = Ballot {
            round: 12,
            node: NodeId(2),
        };
        store(tmp.path(), b).unwrap();
        assert_eq!(load(tmp.path()).unwrap(), b);
    }

    #[test]
    fn corruption_names_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(PROMISE_FILE), "garbage").unwrap();
        let err = load(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("promise"), "{err}");
        assert!(err.contains("corrupt"), "{err}");
    }
}
