//! Peer frames and WAL records from hostile bytes: every numeric field drawn from its whole
//! domain, and real encoded frames mutated (bit flips, truncations, length-prefix edits).
//! Decoding never panics, and whatever decodes has passed every check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use paxos_core::{Ballot, LogEntry, Message, NodeId, PrepareRefusal, Proposal, ProposalId, Value};
use proptest::prelude::*;
use rarakoon_node::wire::{PeerMessage, StoredEntry, check_nodes};
use wire_codec::WireMessage;
use wire_codec::rkyv::util::AlignedVec;

/// Frame decoding as the messenger's codec does it: prefix, bound, then the payload (`None`
/// while incomplete).
fn decode_frame(buf: &[u8], max: u32) -> Option<Result<PeerMessage, String>> {
    let prefix = buf.first_chunk::<{ wire_codec::LENGTH_PREFIX }>()?;
    let len = u32::from_le_bytes(*prefix);
    if len > max {
        return Some(Err(format!("frame of {len} bytes")));
    }
    let payload = buf.get(wire_codec::LENGTH_PREFIX..wire_codec::LENGTH_PREFIX + len as usize)?;
    Some(
        wire_codec::decode_payload::<PeerMessage>(payload, &mut AlignedVec::new())
            .map_err(|e| e.to_string()),
    )
}

fn u64_full(near: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(near),
        Just(near.wrapping_add(1)),
        Just(near.wrapping_sub(1)),
        any::<u64>(),
    ]
}

fn node() -> impl Strategy<Value = NodeId> {
    prop_oneof![
        Just(0u8),
        Just(1),
        Just(2),
        Just(15),
        Just(16),
        Just(u8::MAX),
        any::<u8>()
    ]
    .prop_map(NodeId)
}

fn ballot() -> impl Strategy<Value = Ballot> {
    (u64_full(7), node()).prop_map(|(round, node)| Ballot { round, node })
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        node().prop_map(|node| Value::Master { node }),
        proptest::collection::vec(
            (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..24)).prop_map(
                |(id, payload)| Proposal {
                    id: ProposalId(id),
                    payload
                }
            ),
            0..3
        )
        .prop_map(Value::Batch),
    ]
}

fn entry() -> impl Strategy<Value = LogEntry> {
    (u64_full(100), ballot(), value()).prop_map(|(index, ballot, value)| LogEntry {
        index,
        ballot,
        value,
    })
}

fn paxos() -> impl Strategy<Value = Message> {
    let idx = || u64_full(100);
    prop_oneof![
        (ballot(), idx()).prop_map(|(ballot, committed)| Message::Prepare { ballot, committed }),
        (ballot(), proptest::collection::vec(entry(), 0..4))
            .prop_map(|(ballot, entries)| Message::Promise { ballot, entries }),
        (
            ballot(),
            prop_oneof![
                ballot().prop_map(PrepareRefusal::Promised),
                proptest::option::of(node())
                    .prop_map(|holder| PrepareRefusal::LeaseActive { holder }),
                idx().prop_map(|committed| PrepareRefusal::Behind { committed }),
            ]
        )
            .prop_map(|(ballot, reason)| Message::PrepareRefused { ballot, reason }),
        (ballot(), idx(), value(), idx()).prop_map(|(ballot, index, value, committed)| {
            Message::Accept {
                ballot,
                index,
                value,
                committed,
            }
        }),
        (ballot(), idx()).prop_map(|(ballot, index)| Message::Accepted { ballot, index }),
        (ballot(), ballot())
            .prop_map(|(ballot, promised)| Message::AcceptRefused { ballot, promised }),
        (ballot(), idx()).prop_map(|(ballot, committed)| Message::Commit { ballot, committed }),
        ballot().prop_map(|ballot| Message::LeaseReleased { ballot }),
        idx().prop_map(|from| Message::CatchUpRequest { from }),
        (idx(), proptest::collection::vec(value(), 0..4), idx()).prop_map(
            |(first, values, committed)| Message::CatchUpEntries {
                first,
                values,
                committed,
            }
        ),
        idx().prop_map(|snapshot_index| Message::CatchUpPruned { snapshot_index }),
    ]
}

fn peer_message() -> impl Strategy<Value = PeerMessage> {
    prop_oneof![
        4 => paxos().prop_map(PeerMessage::Paxos),
        1 => (u64_full(1 << 20), prop_oneof![Just(0u32), Just(1), Just(1 << 20), Just((1 << 20) + 1), Just(u32::MAX), any::<u32>()])
            .prop_map(|(offset, len)| PeerMessage::SnapshotRequest { offset, len }),
        1 => (u64_full(5), u64_full(100), u64_full(90), proptest::collection::vec(any::<u8>(), 0..16))
            .prop_map(|(index, total, offset, data)| PeerMessage::SnapshotChunk { index, total, offset, data }),
        1 => Just(PeerMessage::NoSnapshot),
    ]
}

fn encode(msg: &PeerMessage) -> Vec<u8> {
    let mut out = BytesMut::new();
    wire_codec::encode_payload_into(msg, &mut AlignedVec::new(), &mut out, u32::MAX).unwrap();
    out.to_vec()
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Prefix(u32),
    Splice(usize, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip(at, mask)),
        any::<usize>().prop_map(Mutation::Truncate),
        prop_oneof![Just(0u32), Just(1), Just(u32::MAX), any::<u32>()].prop_map(Mutation::Prefix),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..9))
            .prop_map(|(at, bytes)| Mutation::Splice(at, bytes)),
    ]
}

fn mutate(frame: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::Flip(at, mask) => {
            let at = at % frame.len();
            frame[at] ^= mask;
        }
        Mutation::Truncate(at) => frame.truncate(at % (frame.len() + 1)),
        Mutation::Prefix(len) => frame[..4].copy_from_slice(&len.to_le_bytes()),
        Mutation::Splice(at, bytes) => {
            let at = at % frame.len();
            for (i, b) in bytes.iter().enumerate() {
                if let Some(x) = frame.get_mut(at + i) {
                    *x = *b;
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// A message decodes back exactly when it passes the checks, whatever its numbers.
    #[test]
    fn full_domain_messages_decode_exactly_when_valid(msg in peer_message()) {
        let frame = encode(&msg);
        let decoded = decode_frame(&frame, u32::MAX).unwrap();
        match msg.check() {
            Ok(()) => prop_assert_eq!(decoded, Ok(msg.clone())),
            Err(_) => prop_assert!(decoded.is_err()),
        }
        // A message valid for a 3-node membership is valid for the largest cluster too,
        // unless its structure is wrong.
        if check_nodes(&msg, 3).is_ok() && msg.check().is_err() {
            prop_assert!(structurally_wrong(&msg), "{:?}", msg);
        }
    }

    /// Mutated real frames never panic the decoder; what decodes passes every check.
    #[test]
    fn mutated_frames_never_panic(
        msg in peer_message(),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let mut frame = encode(&msg);
        for m in &mutations {
            if frame.len() < 4 {
                break;
            }
            mutate(&mut frame, m);
        }
        if let Some(Ok(decoded)) = decode_frame(&frame, 1 << 20) {
            prop_assert!(decoded.check().is_ok());
            let _ = check_nodes(&decoded, 3);
        }
    }

    /// The same for WAL records (what start-up and catch-up reads decode).
    #[test]
    fn mutated_wal_records_never_panic(
        e in entry(),
        committed in u64_full(100),
        mutations in proptest::collection::vec(mutation(), 1..4),
    ) {
        let stored = StoredEntry { ballot: e.ballot, committed, value: e.value };
        let mut out = BytesMut::new();
        wire_codec::encode_payload_into(&stored, &mut AlignedVec::new(), &mut out, u32::MAX)
            .unwrap();
        let mut frame = out.to_vec();
        for m in &mutations {
            if frame.len() < 4 {
                break;
            }
            mutate(&mut frame, m);
        }
        let payload = frame.get(4..).unwrap_or_default();
        if let Ok(decoded) = rarakoon_node::storage::decode_entry(payload, &mut AlignedVec::new()) {
            prop_assert!(decoded.check().is_ok());
        }
    }
}

/// Structural problems (out-of-order promise entries, overflowing catch-up ranges) fail the
/// global check even when every node number is small.
fn structurally_wrong(msg: &PeerMessage) -> bool {
    match msg {
        PeerMessage::Paxos(Message::Promise { entries, .. }) => {
            entries.windows(2).any(|w| w[1].index <= w[0].index)
        }
        PeerMessage::Paxos(Message::CatchUpEntries { first, values, .. }) => {
            first.checked_add(values.len() as u64).is_none()
        }
        PeerMessage::SnapshotRequest { len, .. } => *len > 1 << 20,
        PeerMessage::SnapshotChunk {
            total,
            offset,
            data,
            ..
        } => offset
            .checked_add(data.len() as u64)
            .is_none_or(|end| end > *total),
        _ => false,
    }
}

#[test]
fn node_numbers_outside_the_membership_are_refused() {
    let b = |n| Ballot {
        round: 1,
        node: NodeId(n),
    };
    let ok = PeerMessage::Paxos(Message::Prepare {
        ballot: b(2),
        committed: 0,
    });
    assert!(check_nodes(&ok, 3).is_ok());
    for bad in [
        Message::Prepare {
            ballot: b(3),
            committed: 0,
        },
        Message::Accept {
            ballot: b(0),
            index: 1,
            value: Value::Master { node: NodeId(200) },
            committed: 0,
        },
        Message::PrepareRefused {
            ballot: b(0),
            reason: PrepareRefusal::LeaseActive {
                holder: Some(NodeId(3)),
            },
        },
        Message::Promise {
            ballot: b(0),
            entries: vec![LogEntry {
                index: 1,
                ballot: b(9),
                value: Value::Batch(Vec::new()),
            }],
        },
    ] {
        let msg = PeerMessage::Paxos(bad);
        let err = check_nodes(&msg, 3).unwrap_err();
        assert!(err.contains("only 3 nodes"), "{err}");
    }
    // Out-of-order promise entries and an overflowing catch-up range fail the frame check.
    let unordered = PeerMessage::Paxos(Message::Promise {
        ballot: b(0),
        entries: vec![
            LogEntry {
                index: 5,
                ballot: b(0),
                value: Value::Batch(Vec::new()),
            },
            LogEntry {
                index: 5,
                ballot: b(0),
                value: Value::Batch(Vec::new()),
            },
        ],
    });
    assert!(unordered.check().unwrap_err().contains("out of order"));
    let overflow = PeerMessage::Paxos(Message::CatchUpEntries {
        first: u64::MAX,
        values: vec![Value::Batch(Vec::new())],
        committed: 0,
    });
    assert!(overflow.check().unwrap_err().contains("overflow"));
}
