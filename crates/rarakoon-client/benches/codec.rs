//! Encode/decode throughput of SET and GET requests (server side decoding, client side
//! encoding) and of the GET reply (client side decoding).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rarakoon_client::{
    ClientCodec, Consistency, Limits, Prologue, Request, Response, ServerCodec, encode_reply,
};
use std::hint::black_box;
use tokio_util::codec::{Decoder, Encoder};

const BATCH: usize = 1000;

fn requests(value_len: usize) -> (Vec<Request>, Vec<Request>) {
    let value = Bytes::from(vec![b'v'; value_len]);
    let sets = (0..BATCH)
        .map(|i| Request::Set {
            key: Bytes::from(format!("key_{i:08}")),
            value: value.clone(),
        })
        .collect();
    let gets = (0..BATCH)
        .map(|i| Request::Get {
            consistency: Consistency::Consistent,
            key: Bytes::from(format!("key_{i:08}")),
        })
        .collect();
    (sets, gets)
}

fn encoded(requests: &[Request]) -> BytesMut {
    let mut out = BytesMut::new();
    Prologue {
        cluster_id: Bytes::from_static(b"arakoon"),
    }
    .encode(&mut out);
    for r in requests {
        r.encode(&mut out);
    }
    out
}

fn bench(c: &mut Criterion) {
    for value_len in [64usize, 1024] {
        let (sets, gets) = requests(value_len);
        for (name, batch) in [("set", &sets), ("get", &gets)] {
            if name == "get" && value_len != 64 {
                continue;
            }
            let label = if name == "set" {
                format!("{name}/{value_len}B")
            } else {
                name.to_owned()
            };
            let mut group = c.benchmark_group(format!("request_{label}"));
            group.throughput(Throughput::Elements(BATCH as u64));
            group.bench_function("encode", |b| {
                let mut out = BytesMut::with_capacity(BATCH * (value_len + 64));
                b.iter(|| {
                    out.clear();
                    for r in batch.iter() {
                        r.encode(&mut out);
                    }
                    black_box(out.len())
                })
            });
            let wire = encoded(batch);
            group.bench_function("decode", |b| {
                b.iter(|| {
                    let mut codec = ServerCodec::new(Limits::default());
                    let mut buf = wire.clone();
                    let mut n = 0;
                    while let Some(frame) = codec.decode(&mut buf).unwrap() {
                        black_box(&frame);
                        n += 1;
                    }
                    assert_eq!(n, BATCH + 1);
                })
            });
            group.finish();
        }
    }

    // The client side of GET: encode the request, decode a 64-byte value reply.
    let (_, gets) = requests(64);
    let mut replies = BytesMut::new();
    for _ in 0..BATCH {
        encode_reply(
            &Ok(Response::Get(Bytes::from(vec![b'v'; 64]))),
            &mut replies,
        );
    }
    let mut group = c.benchmark_group("reply_get");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("client_encode_request_and_decode_reply", |b| {
        b.iter(|| {
            let mut codec = ClientCodec::new(Limits::default());
            let mut out = BytesMut::with_capacity(BATCH * 32);
            for r in &gets {
                codec.encode(r, &mut out).unwrap();
            }
            let mut buf = replies.clone();
            let mut n = 0;
            while let Some(reply) = codec.decode(&mut buf).unwrap() {
                black_box(&reply);
                n += 1;
            }
            assert_eq!(n, BATCH);
        })
    });
    group.finish();

    // A large frame of many small elements arriving in 16 KiB reads: a MULTI_GET of 100 000
    // 12-byte keys (1.6 MB). Linear in the frame size since ADR 0070 (it was quadratic).
    let keys: Vec<Bytes> = (0..100_000)
        .map(|i| Bytes::from(format!("key_{i:08}")))
        .collect();
    let wire = encoded(&[Request::MultiGet {
        consistency: Consistency::Consistent,
        keys,
    }]);
    let mut group = c.benchmark_group("request_multi_get_100k_keys");
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("decode_in_16KiB_chunks", |b| {
        b.iter(|| {
            let mut codec = ServerCodec::new(Limits::default());
            let mut buf = BytesMut::new();
            let mut n = 0;
            for chunk in wire.chunks(16 * 1024) {
                buf.extend_from_slice(chunk);
                while let Some(frame) = codec.decode(&mut buf).unwrap() {
                    black_box(&frame);
                    n += 1;
                }
            }
            assert_eq!(n, 2);
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
