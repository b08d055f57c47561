//! Store throughput on 1 million keys (16-byte keys, 100-byte values): set (overwrite and
//! insert), a 64-update batch as one Paxos value carries, a 10-update sequence, get (hit and
//! miss), a 100-entry range, loading / visiting a whole 1M-pair snapshot, the O(1) view a
//! collapse takes and a write while a view is alive, and the measured bytes per key (printed).
//! Keys are visited
//! in a scrambled order so that lookups are not cache-friendly sequential walks.
//!
//! Run: `cargo bench -p kv-store -- --measurement-time 3 --warm-up-time 1`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kv_store::{KeyRange, SnapshotLoader, Store, Update, UserFunctionRegistry};

const KEYS: u64 = 1_000_000;
const VALUE_LEN: usize = 100;
/// How many distinct prepared updates or keys each benchmark cycles through.
const WORKING_SET: usize = 1 << 16;

/// The 16-byte key number `i`: fixed width, so key order is numeric order.
fn key(i: u64) -> [u8; 16] {
    let mut key = *b"key:000000000000";
    let digits = format!("{i:012}");
    key[4..].copy_from_slice(digits.as_bytes());
    key
}

/// A scrambled sequence of key numbers below `bound` (a multiplicative hash; no RNG needed).
fn scrambled(count: usize, bound: u64) -> Vec<u64> {
    (0..count as u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) % bound)
        .collect()
}

fn value(i: u64) -> Bytes {
    let mut value = vec![b'v'; VALUE_LEN];
    value[..8].copy_from_slice(&i.to_le_bytes());
    Bytes::from(value)
}

/// A store with keys `0..KEYS` (even numbers only when `even_only`, leaving room for inserts and
/// misses), loaded as a snapshot at index 0.
fn loaded_store(even_only: bool) -> Store {
    let mut loader = SnapshotLoader::new(0);
    let step = if even_only { 2 } else { 1 };
    for i in (0..KEYS * step).step_by(step as usize) {
        loader.push(&key(i), &value(i)).unwrap();
    }
    loader.finish(Arc::new(UserFunctionRegistry::new()))
}

fn set(i: u64) -> Update {
    Update::Set {
        key: Bytes::copy_from_slice(&key(i)),
        value: value(i),
    }
}

fn bench_writes(c: &mut Criterion) {
    let mut group = c.benchmark_group("write_1M_keys");

    let mut store = loaded_store(true);
    let overwrites: Vec<Update> = scrambled(WORKING_SET, KEYS)
        .into_iter()
        .map(|i| set(i * 2))
        .collect();
    let mut index = 0u64;
    group.throughput(Throughput::Elements(1));
    group.bench_function("set_overwrite", |b| {
        b.iter(|| {
            index += 1;
            let update = &overwrites[index as usize % WORKING_SET];
            black_box(store.apply(index, update).unwrap().unwrap());
        });
    });

    // New keys between the existing even ones; the store grows while measured.
    let inserts: Vec<u64> = scrambled(WORKING_SET, KEYS)
        .into_iter()
        .map(|i| i * 2 + 1)
        .collect();
    let mut next = 0usize;
    group.bench_function("set_insert", |b| {
        b.iter(|| {
            index += 1;
            let n = inserts[next % WORKING_SET] + (next / WORKING_SET) as u64 * 2 * KEYS;
            next += 1;
            black_box(store.apply(index, &set(n)).unwrap().unwrap());
        });
    });

    let batches: Vec<Vec<Update>> = overwrites.chunks(64).map(<[Update]>::to_vec).collect();
    group.throughput(Throughput::Elements(64));
    group.bench_function("apply_batch_64_sets", |b| {
        b.iter(|| {
            index += 1;
            let batch = &batches[index as usize % batches.len()];
            black_box(store.apply_batch(index, batch).unwrap());
        });
    });

    let sequences: Vec<Update> = overwrites
        .chunks(10)
        .map(|parts| Update::Sequence(parts.to_vec()))
        .collect();
    group.throughput(Throughput::Elements(10));
    group.bench_function("sequence_10_sets", |b| {
        b.iter(|| {
            index += 1;
            let sequence = &sequences[index as usize % sequences.len()];
            black_box(store.apply(index, sequence).unwrap().unwrap());
        });
    });
    group.finish();
}

fn bench_reads(c: &mut Criterion) {
    let mut group = c.benchmark_group("read_1M_keys");
    let store = loaded_store(true);
    let hits: Vec<[u8; 16]> = scrambled(WORKING_SET, KEYS)
        .into_iter()
        .map(|i| key(i * 2))
        .collect();
    let misses: Vec<[u8; 16]> = scrambled(WORKING_SET, KEYS)
        .into_iter()
        .map(|i| key(i * 2 + 1))
        .collect();
    let mut n = 0usize;
    group.throughput(Throughput::Elements(1));
    group.bench_function("get_hit", |b| {
        b.iter(|| {
            n += 1;
            black_box(store.get(&hits[n % WORKING_SET]).unwrap());
        });
    });
    group.bench_function("get_miss", |b| {
        b.iter(|| {
            n += 1;
            assert!(black_box(store.get(&misses[n % WORKING_SET])).is_none());
        });
    });
    group.throughput(Throughput::Elements(100));
    group.bench_function("range_entries_100", |b| {
        b.iter(|| {
            n += 1;
            let first = hits[n % WORKING_SET];
            let range = KeyRange {
                first: Some(&first),
                first_inclusive: true,
                last: None,
                last_inclusive: false,
            };
            black_box(store.range_entries(&range, 100));
        });
    });
    group.finish();
}

fn bench_snapshots(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot_1M_keys");
    group.sample_size(10);
    group.throughput(Throughput::Elements(KEYS));
    let pairs: Vec<([u8; 16], Bytes)> = (0..KEYS).map(|i| (key(i), value(i))).collect();
    group.bench_function("load", |b| {
        b.iter(|| {
            let mut loader = SnapshotLoader::new(0);
            for (key, value) in &pairs {
                loader.push(key, value).unwrap();
            }
            black_box(loader.finish(Arc::new(UserFunctionRegistry::new())));
        });
    });
    let store = loaded_store(false);
    group.bench_function("for_each_pair", |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            store
                .for_each_pair(|key, value| -> Result<(), ()> {
                    bytes += key.len() + value.len();
                    Ok(())
                })
                .unwrap();
            black_box(bytes);
        });
    });
    group.finish();
}

/// RSS of this process (Linux; 0 elsewhere).
/// The point-in-time view a collapse takes (ADR 0186), and a write while one is alive (it
/// copies the leaf it changes, ADR 0185). Bytes per key are measured in a fresh process by
/// `cargo bench -p rarakoon-bin --bench store_figures` (here the RSS growth over a
/// load would hide in memory the earlier groups freed).
fn bench_views(c: &mut Criterion) {
    let mut store = loaded_store(false);
    let mut group = c.benchmark_group("view_1M_keys");
    group.throughput(Throughput::Elements(1));
    group.bench_function("view", |b| b.iter(|| black_box(store.view())));
    let updates: Vec<Update> = scrambled(WORKING_SET, KEYS).into_iter().map(set).collect();
    let mut index = 1u64;
    let mut n = 0usize;
    let mut view = store.view();
    group.bench_function("set_overwrite_with_a_live_view", |b| {
        b.iter(|| {
            // A view is always alive, a fresh one every 64 writes: scrambled keys, so almost
            // every write copies its path first.
            if n.is_multiple_of(64) {
                view = store.view();
            }
            black_box(
                store
                    .apply(index, &updates[n % WORKING_SET])
                    .unwrap()
                    .unwrap(),
            );
            index += 1;
            n += 1;
        });
    });
    drop(view);
    group.finish();
}

criterion_group!(
    benches,
    bench_writes,
    bench_reads,
    bench_snapshots,
    bench_views
);
criterion_main!(benches);
