//! Hot-path encodings of the node: a client update into its Paxos payload and back, and a
//! committed value into its WAL record and back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, criterion_group, criterion_main};
use kv_store::Update;
use paxos_core::{Ballot, NodeId, Proposal, ProposalId, Value};
use rarakoon_node::payload;
use rarakoon_node::wire::StoredEntry;
use wire_codec::rkyv::util::AlignedVec;

fn set(i: usize) -> Update {
    Update::Set {
        key: Bytes::from(format!("bench/key/{i:08}")),
        value: Bytes::from(vec![b'v'; 64]),
    }
}

fn benches(c: &mut Criterion) {
    let update = set(1);
    c.bench_function("payload encode set 64B", |b| {
        let mut out = BytesMut::with_capacity(256);
        b.iter(|| {
            out.clear();
            payload::encode_into(std::hint::black_box(&update), &mut out);
        });
    });
    let encoded = Bytes::from(payload::encode(&update));
    c.bench_function("payload decode set 64B", |b| {
        b.iter(|| payload::decode(std::hint::black_box(encoded.clone())).unwrap());
    });

    let batch = StoredEntry {
        ballot: Ballot {
            round: 7,
            node: NodeId(1),
        },
        committed: 1000,
        value: Value::Batch(
            (0..64)
                .map(|i| Proposal {
                    id: ProposalId(i as u64),
                    payload: payload::encode(&set(i)),
                })
                .collect(),
        ),
    };
    c.bench_function("wal record encode batch of 64 sets", |b| {
        let mut scratch = AlignedVec::new();
        let mut out = BytesMut::new();
        b.iter(|| {
            out.clear();
            wire_codec::encode_payload_into(&batch, &mut scratch, &mut out, u32::MAX).unwrap();
        });
    });
    let mut scratch = AlignedVec::new();
    let mut out = BytesMut::new();
    wire_codec::encode_payload_into(&batch, &mut scratch, &mut out, u32::MAX).unwrap();
    let record = out[wire_codec::LENGTH_PREFIX..].to_vec();
    c.bench_function("wal record decode batch of 64 sets", |b| {
        let mut scratch = AlignedVec::new();
        b.iter(|| rarakoon_node::storage::decode_entry(&record, &mut scratch).unwrap());
    });
}

criterion_group!(node, benches);
criterion_main!(node);
