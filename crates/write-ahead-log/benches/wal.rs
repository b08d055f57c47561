//! Benchmarks: WAL append + fsync (group commit) next to a raw write + fsync loop on the same
//! directory, head snapshot write/load of one million 16 B / 100 B pairs, and replay: opening a
//! log of 256 MiB (scan, CRCs) and reading it all back in 8 MiB reads (as start-up recovery and
//! catch-up do), next to a raw sequential read of the same files in 8 MiB reads.
//!
//! Files go under `$WAL_BENCH_DIR` (default: the system temp directory); point it at the disk
//! you care about.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::OpenOptions;
use std::hint::black_box;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use write_ahead_log::*;

const ENTRY_BYTES: usize = 128;

fn bench_root() -> PathBuf {
    std::env::var_os("WAL_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from)
}

fn append_fsync(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_fsync_128B");
    group.sample_size(20);
    let payload = vec![0x5a_u8; ENTRY_BYTES];
    for batch in [1usize, 16, 256] {
        group.throughput(Throughput::Elements(batch as u64));
        let dir = tempfile::tempdir_in(bench_root()).unwrap();
        let fs: Arc<dyn FileSystem> = Arc::new(StdFs);
        let config = WalConfig {
            compressor: Compressor::None,
            ..WalConfig::default()
        };
        let mut wal = Wal::open(fs, dir.path().join("wal"), config).unwrap();
        let mut next = 1u64;
        group.bench_function(BenchmarkId::new("wal", batch), |b| {
            b.iter(|| {
                let first = next;
                next += batch as u64;
                wal.append_and_sync((first..next).map(|index| (index, payload.as_slice())))
                    .unwrap();
            });
        });
        // The same bytes (record framing included) with plain write + fdatasync.
        let raw_path = dir.path().join("raw.log");
        let mut raw = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&raw_path)
            .unwrap();
        let frame = vec![0x5a_u8; batch * (ENTRY_BYTES + 20)];
        group.bench_function(BenchmarkId::new("raw_write_fdatasync", batch), |b| {
            b.iter(|| {
                raw.write_all(black_box(&frame)).unwrap();
                raw.sync_data().unwrap();
            });
        });
    }
    group.finish();
}

struct BenchStore {
    pairs: Vec<([u8; 16], [u8; 100])>,
}

impl SnapshotSource for BenchStore {
    fn applied_index(&self) -> u64 {
        1_000_000
    }

    fn for_each_pair(&self, sink: &mut PairSink<'_>) -> std::io::Result<()> {
        for (key, value) in &self.pairs {
            sink(key, value)?;
        }
        Ok(())
    }
}

fn snapshots(c: &mut Criterion) {
    const PAIRS: u64 = 1_000_000;
    let store = BenchStore {
        pairs: (0..PAIRS)
            .map(|i| {
                let mut key = [0u8; 16];
                key[8..].copy_from_slice(&i.to_be_bytes());
                let mut value = [0u8; 100];
                value[..8].copy_from_slice(&i.to_le_bytes());
                (key, value)
            })
            .collect(),
    };
    let dir = tempfile::tempdir_in(bench_root()).unwrap();
    let fs = StdFs;
    let config = SnapshotConfig::default();
    let info = write_snapshot(&fs, dir.path(), &store, &config).unwrap();

    let mut group = c.benchmark_group("head_snapshot_1M_pairs_16B_100B");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(info.bytes));
    group.bench_function("write", |b| {
        b.iter(|| write_snapshot(&fs, dir.path(), &store, &config).unwrap());
    });
    let path = head_snapshot_path(dir.path());
    group.bench_function("load", |b| {
        b.iter(|| {
            let mut count = 0u64;
            load_snapshot(&fs, &path, &config, &mut |key, value| {
                count += (key.len() + value.len()) as u64;
                Ok(())
            })
            .unwrap();
            black_box(count)
        });
    });
    group.finish();
}

fn replay(c: &mut Criterion) {
    const ENTRY: usize = 4096;
    const ENTRIES: u64 = 65_536;
    const READ_BYTES: usize = 8 << 20;
    let dir = tempfile::tempdir_in(bench_root()).unwrap();
    let wal_dir = dir.path().join("wal");
    let fs: Arc<dyn FileSystem> = Arc::new(StdFs);
    let config = WalConfig {
        compressor: Compressor::None,
        ..WalConfig::default()
    };
    {
        let mut wal = Wal::open(Arc::clone(&fs), &wal_dir, config.clone()).unwrap();
        let mut entry = vec![0u8; ENTRY];
        for batch in 0..ENTRIES / 256 {
            let first = 1 + batch * 256;
            let entries: Vec<(u64, Vec<u8>)> = (first..first + 256)
                .map(|index| {
                    entry[..8].copy_from_slice(&index.to_le_bytes());
                    (index, entry.clone())
                })
                .collect();
            wal.append_and_sync(entries.iter().map(|(i, e)| (*i, e.as_slice())))
                .unwrap();
        }
    }
    let files: Vec<PathBuf> = {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&wal_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wal"))
            .collect();
        files.sort();
        files
    };
    let bytes: u64 = files.iter().map(|f| f.metadata().unwrap().len()).sum();
    let mut group = c.benchmark_group("replay_256MiB_4KiB_entries");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("raw_sequential_read_8MiB", |b| {
        let mut buf = vec![0u8; READ_BYTES];
        b.iter(|| {
            let mut total = 0usize;
            for path in &files {
                let mut file = std::fs::File::open(path).unwrap();
                loop {
                    let n = file.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    total += n;
                }
            }
            black_box(total)
        });
    });
    group.bench_function("wal_open", |b| {
        b.iter(|| black_box(Wal::open(Arc::clone(&fs), &wal_dir, config.clone()).unwrap()));
    });
    let wal = Wal::open(Arc::clone(&fs), &wal_dir, config.clone()).unwrap();
    group.bench_function("wal_read_all_8MiB", |b| {
        b.iter(|| {
            let mut next = 1u64;
            let mut total = 0usize;
            while next <= ENTRIES {
                let entries = wal.read(next, ENTRIES, READ_BYTES).unwrap();
                next = entries.last().unwrap().index + 1;
                total += entries.iter().map(|e| e.bytes.len()).sum::<usize>();
            }
            black_box(total)
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = append_fsync, snapshots, replay
}
criterion_main!(benches);
