//! The durable Paxos promise: the highest ballot this node promised, in `<home>/promise`.
//!
//! Promises change only at elections, so each one is written as a small text file replaced
//! atomically (temp file, fsync, rename, fsync directory): a crash leaves either the old or
//! the new promise, never a torn one. The file is text so an operator can read it:
//! `round=<n> node=<n> crc32c=<8 hex digits>`, the checksum covering the text before it, so a
//! flipped bit (which could lower the promised round without making the text unreadable, and
//! with it let this node accept a ballot it promised to refuse) stops the start instead. A file
//! without the checksum (written by an earlier version) is still read. It is read with a size
//! bound and parsed strictly; that the node number it names exists is checked against the
//! membership at start-up (`crate::membership::check_home`).

use std::path::{Path, PathBuf};

use crate::durable_file::{self, Contents};

use paxos_core::{Ballot, NodeId};
use write_ahead_log::FileSystem;

/// File name of the promise inside the home directory.
pub const PROMISE_FILE: &str = "promise";
/// Largest promise file accepted (`round=<u64> node=<u8>` takes under 40 bytes).
pub const MAX_PROMISE_BYTES: u64 = 256;

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
        "promise file {} is corrupt ({problem}); it holds the last Paxos promise of this node, \
         which must not be forgotten or lowered: do not edit or delete it",
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
pub fn load(fs: &dyn FileSystem, home: &Path) -> Result<Ballot, PromiseError> {
    let path = home.join(PROMISE_FILE);
    let bytes = match durable_file::read_bounded(fs, &path, MAX_PROMISE_BYTES) {
        Ok(Contents::Bytes(b)) => b,
        Ok(Contents::Missing) => return Ok(Ballot::ZERO),
        Ok(Contents::TooLarge(len)) => {
            return Err(PromiseError::Corrupt {
                path,
                problem: format!("{len} bytes, more than the {MAX_PROMISE_BYTES} a promise takes"),
            });
        }
        Err(source) => {
            return Err(PromiseError::Io {
                path,
                op: "read",
                source,
            });
        }
    };
    let text = String::from_utf8_lossy(&bytes);
    parse(&text).map_err(|problem| PromiseError::Corrupt { path, problem })
}

/// The text of a promise, without its checksum.
fn body(ballot: Ballot) -> String {
    format!("round={} node={}", ballot.round, ballot.node.0)
}

fn parse(text: &str) -> Result<Ballot, String> {
    let malformed = || {
        format!(
            "expected `round=<n> node=<n> crc32c=<checksum>`, found {:?}",
            text.trim()
        )
    };
    let mut parts = text.split_whitespace();
    let mut field = |name: &str| parts.next().and_then(|p| p.strip_prefix(name));
    let round = field("round=").and_then(|r| r.parse().ok());
    let node = field("node=").and_then(|n| n.parse().ok());
    let (Some(round), Some(node)) = (round, node) else {
        return Err(malformed());
    };
    let crc = match parts.next() {
        None => None,
        Some(token) => Some(token.strip_prefix("crc32c=").ok_or_else(malformed)?),
    };
    if parts.next().is_some() {
        return Err(malformed());
    }
    let ballot = Ballot {
        round,
        node: NodeId(node),
    };
    if let Some(crc) = crc {
        // Exactly what `store` writes, byte for byte: `round=01` parses as 1, and an upper-case
        // or padded checksum reads the same number, but neither is what was written.
        if text != canonical(ballot) {
            return Err(format!(
                "checksum or format mismatch: recorded {crc}, the content {:?} has {:08x}",
                body(ballot),
                crc32c::crc32c(body(ballot).as_bytes())
            ));
        }
    }
    Ok(ballot)
}

/// The promise file's exact contents for `ballot`.
fn canonical(ballot: Ballot) -> String {
    let body = body(ballot);
    format!("{body} crc32c={:08x}\n", crc32c::crc32c(body.as_bytes()))
}

/// Replaces the promise in `home` durably.
pub fn store(fs: &dyn FileSystem, home: &Path, ballot: Ballot) -> Result<(), PromiseError> {
    let text = canonical(ballot);
    durable_file::replace(fs, home, PROMISE_FILE, text.as_bytes()).map_err(|(op, source)| {
        PromiseError::Io {
            path: home.join(PROMISE_FILE),
            op,
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use write_ahead_log::StdFs;

    #[test]
    fn round_trips_and_defaults_to_zero() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(load(&StdFs, tmp.path()).unwrap(), Ballot::ZERO);
        let b = Ballot {
            round: 12,
            node: NodeId(2),
        };
        store(&StdFs, tmp.path(), b).unwrap();
        assert_eq!(load(&StdFs, tmp.path()).unwrap(), b);
    }

    #[test]
    fn corruption_names_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(PROMISE_FILE), "garbage").unwrap();
        let err = load(&StdFs, tmp.path()).unwrap_err().to_string();
        assert!(err.contains("promise"), "{err}");
        assert!(err.contains("corrupt"), "{err}");
    }

    #[test]
    fn an_oversized_or_odd_promise_file_is_corrupt_not_read_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(PROMISE_FILE);
        std::fs::write(&path, "round=1 node=0\n".repeat(1000)).unwrap();
        let err = load(&StdFs, tmp.path()).unwrap_err().to_string();
        assert!(err.contains("more than the 256"), "{err}");
        for bad in [
            "round=1 node=256",
            "round=18446744073709551616 node=0",
            "round=-1 node=0",
            "node=0 round=1",
            "round=1 node=0 extra",
            "\u{0}\u{ff}",
        ] {
            std::fs::write(&path, bad).unwrap();
            assert!(load(&StdFs, tmp.path()).is_err(), "{bad:?}");
        }
        // Written by an earlier version: no checksum.
        std::fs::write(&path, format!("round={} node=255\n", u64::MAX)).unwrap();
        assert_eq!(
            load(&StdFs, tmp.path()).unwrap(),
            Ballot {
                round: u64::MAX,
                node: NodeId(255)
            }
        );
    }

    /// A flipped bit anywhere in a promise file is refused: it could otherwise lower the
    /// promised round and let the node accept a ballot it promised to refuse.
    #[test]
    fn every_single_bit_flip_of_a_promise_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(PROMISE_FILE);
        for ballot in [
            Ballot::ZERO,
            Ballot {
                round: 1,
                node: NodeId(0),
            },
            Ballot {
                round: 1234,
                node: NodeId(2),
            },
            Ballot {
                round: u64::MAX,
                node: NodeId(255),
            },
        ] {
            store(&StdFs, tmp.path(), ballot).unwrap();
            let good = std::fs::read(&path).unwrap();
            assert_eq!(load(&StdFs, tmp.path()).unwrap(), ballot);
            for offset in 0..good.len() {
                for bit in 0..8 {
                    let mut bad = good.clone();
                    bad[offset] ^= 1 << bit;
                    std::fs::write(&path, &bad).unwrap();
                    match load(&StdFs, tmp.path()) {
                        Err(PromiseError::Corrupt { .. }) => {}
                        other => panic!(
                            "{:?} (bit {bit} of byte {offset} flipped) read as {other:?}",
                            String::from_utf8_lossy(&bad)
                        ),
                    }
                }
            }
        }
    }
}
