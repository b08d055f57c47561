//! What the node writes to its WAL and sends to its peers, as rkyv archives.
//!
//! - [`StoredEntry`]: one WAL record: the Paxos log entry (ballot and value) plus the committed
//!   index known when it was written. Start-up takes the highest recorded committed index as
//!   the point up to which entries are applied; a lower value than the truth is safe (the
//!   entries above it are handed to paxos-core as accepted, and it learns their commit again).
//! - [`PeerMessage`]: everything nodes say to each other: Paxos messages, and the head-snapshot
//!   transfer for a peer that must catch up past pruned log entries (pull-based, one chunk per
//!   request, so a dropped message only costs a retry and memory stays bounded).
//!
//! Both travel through `wire-codec`'s validated decoding (rkyv bytecheck: every length and
//! offset in the archive is checked against the frame before it is followed). On top of it,
//! `check` (run by the decoder, before the message exists for anyone) bounds what a peer or a
//! WAL record controls without knowing the receiver: every node number is below the largest
//! cluster (`config::limits::MAX_NODES`), promise entries are in strictly ascending index
//! order, a catch-up answer's index range does not overflow, snapshot requests and chunks stay
//! within [`SNAPSHOT_CHUNK_BYTES`] and their totals. [`check_nodes`] then checks node numbers
//! against the receiver's own membership (messaging runs it on every message from a peer).
//! What needs the receiver's log state (indexes against its committed index, answers against
//! what was asked) is checked by paxos-core and, for snapshots, by the storage thread.

use paxos_core::{Ballot, Index, LogEntry, Message, NodeId, PrepareRefusal, Value};
use wire_codec::WireMessage;
use wire_codec::rkyv::{Archive, Deserialize, Serialize};

/// Largest snapshot chunk asked for or accepted in one message.
pub const SNAPSHOT_CHUNK_BYTES: u32 = 1024 * 1024;

/// One WAL record.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(crate = wire_codec::rkyv)]
pub struct StoredEntry {
    /// Ballot the value was accepted in (zero for values learned through catch-up).
    pub ballot: Ballot,
    /// Committed index known when the record was written.
    pub committed: Index,
    /// The value.
    pub value: Value,
}

impl WireMessage for StoredEntry {
    fn check(&self) -> Result<(), String> {
        check_ballot(&self.ballot, MAX_NODE_IDS)?;
        check_value(&self.value, MAX_NODE_IDS)
    }
}

/// Node numbers a message may carry without knowing the cluster (the largest one allowed).
const MAX_NODE_IDS: usize = crate::config::limits::MAX_NODES;

fn check_node(node: NodeId, nodes: usize, what: &str) -> Result<(), String> {
    if node.index() >= nodes {
        return Err(format!(
            "{what} names node number {}, but there are only {nodes} nodes",
            node.0
        ));
    }
    Ok(())
}

fn check_ballot(ballot: &Ballot, nodes: usize) -> Result<(), String> {
    // Ballot::ZERO (round 0) names node 0, which every cluster has.
    check_node(ballot.node, nodes, "ballot")
}

fn check_value(value: &Value, nodes: usize) -> Result<(), String> {
    match value {
        Value::Master { node } => check_node(*node, nodes, "master value"),
        Value::Batch(_) => Ok(()),
    }
}

/// Every node number in `msg` is below `nodes`, and the structure is sane (see the module
/// documentation).
fn check_paxos(msg: &Message, nodes: usize) -> Result<(), String> {
    match msg {
        Message::Prepare { ballot, .. }
        | Message::Accepted { ballot, .. }
        | Message::Commit { ballot, .. }
        | Message::LeaseReleased { ballot } => check_ballot(ballot, nodes),
        Message::Promise { ballot, entries } => {
            check_ballot(ballot, nodes)?;
            let mut previous: Option<Index> = None;
            for e in entries {
                if previous.is_some_and(|p| e.index <= p) {
                    return Err(format!(
                        "promise entries out of order: index {} after {previous:?}",
                        e.index
                    ));
                }
                previous = Some(e.index);
                check_ballot(&e.ballot, nodes)?;
                check_value(&e.value, nodes)?;
            }
            Ok(())
        }
        Message::PrepareRefused { ballot, reason } => {
            check_ballot(ballot, nodes)?;
            match reason {
                PrepareRefusal::Promised(b) => check_ballot(b, nodes),
                PrepareRefusal::LeaseActive { holder: Some(h) } => {
                    check_node(*h, nodes, "lease holder")
                }
                PrepareRefusal::LeaseActive { holder: None } | PrepareRefusal::Behind { .. } => {
                    Ok(())
                }
            }
        }
        Message::Accept { ballot, value, .. } => {
            check_ballot(ballot, nodes)?;
            check_value(value, nodes)
        }
        Message::AcceptRefused { ballot, promised } => {
            check_ballot(ballot, nodes)?;
            check_ballot(promised, nodes)
        }
        Message::CatchUpEntries { first, values, .. } => {
            if first.checked_add(values.len() as u64).is_none() {
                return Err(format!(
                    "catch-up entries from {first} ({} values) overflow the index space",
                    values.len()
                ));
            }
            values.iter().try_for_each(|v| check_value(v, nodes))
        }
        Message::CatchUpRequest { .. } | Message::CatchUpPruned { .. } => Ok(()),
    }
}

/// Checks the node numbers in a peer's message against the receiver's membership of `nodes`
/// nodes (a number outside it would name no node, or the wrong one).
pub fn check_nodes(msg: &PeerMessage, nodes: usize) -> Result<(), String> {
    match msg {
        PeerMessage::Paxos(m) => check_paxos(m, nodes),
        _ => Ok(()),
    }
}

impl StoredEntry {
    /// The Paxos log entry at `index`.
    pub fn into_log_entry(self, index: Index) -> LogEntry {
        LogEntry {
            index,
            ballot: self.ballot,
            value: self.value,
        }
    }
}

/// A message between two nodes.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[rkyv(crate = wire_codec::rkyv)]
pub enum PeerMessage {
    /// A Paxos message, for the core.
    Paxos(Message),
    /// "Send me `len` bytes of your head snapshot from `offset`" (offset 0 starts a transfer).
    SnapshotRequest {
        /// Byte offset in the snapshot file.
        offset: u64,
        /// Bytes wanted (at most [`SNAPSHOT_CHUNK_BYTES`]).
        len: u32,
    },
    /// A part of the sender's head snapshot.
    SnapshotChunk {
        /// The index the snapshot covers (a transfer restarts if this changes).
        index: Index,
        /// Size of the whole snapshot file.
        total: u64,
        /// Offset of `data` in the file.
        offset: u64,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The sender has no head snapshot to give.
    NoSnapshot,
}

impl WireMessage for PeerMessage {
    fn check(&self) -> Result<(), String> {
        match self {
            PeerMessage::Paxos(m) => check_paxos(m, MAX_NODE_IDS),
            PeerMessage::SnapshotRequest { len, .. } if *len > SNAPSHOT_CHUNK_BYTES => Err(
                format!("snapshot request for {len} bytes exceeds {SNAPSHOT_CHUNK_BYTES}"),
            ),
            PeerMessage::SnapshotChunk {
                total,
                offset,
                data,
                ..
            } => {
                if data.len() > SNAPSHOT_CHUNK_BYTES as usize {
                    return Err(format!(
                        "snapshot chunk of {} bytes is too large",
                        data.len()
                    ));
                }
                if offset
                    .checked_add(data.len() as u64)
                    .is_none_or(|end| end > *total)
                {
                    return Err(format!(
                        "snapshot chunk at {offset}+{} runs past the total {total}",
                        data.len()
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use paxos_core::{NodeId, Proposal, ProposalId};
    use wire_codec::rkyv::util::AlignedVec;

    #[test]
    fn stored_entry_round_trips() {
        let entry = StoredEntry {
            ballot: Ballot {
                round: 3,
                node: NodeId(1),
            },
            committed: 41,
            value: Value::Batch(vec![Proposal {
                id: ProposalId(7),
                payload: b"xyz".to_vec(),
            }]),
        };
        let mut scratch = AlignedVec::new();
        let mut out = bytes::BytesMut::new();
        wire_codec::encode_payload_into(&entry, &mut scratch, &mut out, u32::MAX).unwrap();
        let payload = &out[wire_codec::LENGTH_PREFIX..];
        let back: StoredEntry = wire_codec::decode_payload(payload, &mut scratch).unwrap();
        assert_eq!(back, entry);
    }

    #[test]
    fn oversized_chunks_fail_the_check() {
        let bad = PeerMessage::SnapshotChunk {
            index: 1,
            total: 10,
            offset: 8,
            data: vec![0; 4],
        };
        assert!(bad.check().is_err());
        let req = PeerMessage::SnapshotRequest {
            offset: 0,
            len: SNAPSHOT_CHUNK_BYTES + 1,
        };
        assert!(req.check().is_err());
    }
}
