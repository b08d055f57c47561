//! Encode and decode cost of a typical consensus-sized message (a 64-byte value batch of 16).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rkyv::{Archive, Deserialize, Serialize};
use std::hint::black_box;
use tokio_util::codec::{Decoder, Encoder};
use wire_codec::{Frame, FrameCodec, WireMessage};

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Accept {
    round: u64,
    slot: u64,
    from: String,
    values: Vec<Vec<u8>>,
}
impl WireMessage for Accept {}

fn bench(c: &mut Criterion) {
    let msg = Accept {
        round: 12,
        slot: 123_456,
        from: "node_0".into(),
        values: vec![vec![7u8; 64]; 16],
    };
    let max = wire_codec::DEFAULT_MAX_FRAME;
    let frame = Frame::encode(&msg, max).unwrap();
    let mut group = c.benchmark_group("accept_16x64B");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("frame_encode", |b| {
        b.iter(|| Frame::encode(black_box(&msg), max).unwrap())
    });
    let mut codec = FrameCodec::<Accept>::new(max);
    let mut dst = BytesMut::with_capacity(4096);
    group.bench_function("codec_encode_reuse", |b| {
        b.iter(|| {
            dst.clear();
            codec.encode(black_box(&msg), &mut dst).unwrap();
        })
    });
    group.bench_function("codec_decode_validate", |b| {
        b.iter(|| {
            let mut src = BytesMut::from(&frame.as_bytes()[..]);
            codec.decode(&mut src).unwrap().unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
