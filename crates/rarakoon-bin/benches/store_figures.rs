//! The store's memory and collapse figures, in one process (issue 13 §4, ADR 0185/0186):
//!
//! 1. bytes per key: RSS growth while a snapshot of N pairs (16-byte keys, 100-byte values) is
//!    loaded into a store the way recovery loads it (`SnapshotLoader`), divided by N;
//! 2. snapshot load speed: a head snapshot of that store written to a temp directory, then
//!    loaded back through `load_snapshot` + `SnapshotLoader` (page cache warm), in MB/s of file;
//! 3. the collapse's hold of the store lock: how long `StoreCopy::of` takes under the read
//!    lock, and, while a collapse (copy + snapshot write) runs on another thread, the max and
//!    p99 latency of single applies taking the write lock, against the same without a collapse;
//!    plus the RSS peak during the collapse against the RSS before it.
//!
//! It uses only APIs that exist before and after the change, so the same file runs on both.
//!
//! No assertion: it is a report. Run:
//! `STORE_FIGURES_KEYS=3000000 cargo bench -p rarakoon-bin --bench store_figures` (default 1 M keys).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kv_store::{SnapshotLoader, Store, Update, UserFunctionRegistry};
use rarakoon_node::storage::StoreCopy;
use write_ahead_log::{SnapshotConfig, StdFs};

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn key(i: u64) -> [u8; 16] {
    let mut key = *b"key:000000000000";
    key[4..].copy_from_slice(format!("{i:012}").as_bytes());
    key
}

fn value(i: u64) -> [u8; 100] {
    let mut value = [b'v'; 100];
    value[..8].copy_from_slice(&i.to_le_bytes());
    value
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

/// Applies single sets of scrambled existing keys for `for_how_long`, one at a time under
/// the write lock; returns the latencies.
fn apply_load(store: &RwLock<Store>, n: u64, start_index: u64, stop: &AtomicBool) -> Vec<Duration> {
    let mut latencies = Vec::new();
    let mut index = start_index;
    while !stop.load(Ordering::Relaxed) {
        let i = index.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) % n;
        let update = Update::Set {
            key: Bytes::copy_from_slice(&key(i)),
            value: Bytes::copy_from_slice(&value(index)),
        };
        let t = Instant::now();
        store
            .write()
            .unwrap()
            .apply(index, &update)
            .unwrap()
            .unwrap();
        latencies.push(t.elapsed());
        index += 1;
        // About 20 000 applies a second, like a busy node.
        std::thread::sleep(Duration::from_micros(50));
    }
    latencies
}

fn summary(mut latencies: Vec<Duration>) -> String {
    latencies.sort();
    format!(
        "{} applies, p99 {:?}, max {:?}",
        latencies.len(),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    )
}

fn main() {
    // `cargo bench` passes its own arguments (`--bench`), so the size comes from the environment.
    let n: u64 = std::env::var("STORE_FIGURES_KEYS")
        .ok()
        .map_or(1_000_000, |a| {
            a.parse().expect("STORE_FIGURES_KEYS: a number of keys")
        });
    let functions = Arc::new(UserFunctionRegistry::new());
    let rss_start = rss_bytes();
    let mut loader = SnapshotLoader::new(1);
    for i in 0..n {
        loader.push(&key(i), &value(i)).unwrap();
    }
    let store = loader.finish(Arc::clone(&functions));
    let rss_loaded = rss_bytes();
    let per_key = (rss_loaded - rss_start) as f64 / n as f64;
    println!(
        "keys {n}: RSS +{} MiB, {per_key:.1} B/key ({:.2}x the 116 B of key and value)",
        (rss_loaded - rss_start) >> 20,
        per_key / 116.0
    );

    // Snapshot write and load speed.
    let dir = std::env::temp_dir().join(format!("store_figures.{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fs = StdFs;
    let config = SnapshotConfig::default();
    let info = write_ahead_log::write_snapshot(&fs, &dir, &StoreCopy::of(&store), &config).unwrap();
    let head = write_ahead_log::head_snapshot_path(&dir);
    let mut speeds = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let mut loader = SnapshotLoader::new(info.index);
        write_ahead_log::load_snapshot(&fs, &head, &config, &mut |k, v| {
            loader.push(k, v).map_err(std::io::Error::other)
        })
        .unwrap();
        let loaded = loader.finish(Arc::clone(&functions));
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(loaded.key_count(), n);
        drop(loaded);
        speeds.push(info.bytes as f64 / secs / 1e6);
    }
    speeds.sort_by(f64::total_cmp);
    println!(
        "snapshot {} MB: load {:.0} MB/s (median of 3; min {:.0}, max {:.0})",
        info.bytes / 1_000_000,
        speeds[1],
        speeds[0],
        speeds[2]
    );

    // The collapse against single applies.
    let store = Arc::new(RwLock::new(store));
    let t = Instant::now();
    let copy = StoreCopy::of(&store.read().unwrap());
    let copy_time = t.elapsed();
    drop(copy);
    println!("StoreCopy::of under the read lock: {copy_time:?}");
    let stop = Arc::new(AtomicBool::new(false));
    let steady = {
        let (store, stop2) = (Arc::clone(&store), Arc::clone(&stop));
        let load = std::thread::spawn(move || apply_load(&store, n, 10, &stop2));
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::Relaxed);
        load.join().unwrap()
    };
    println!("steady:          {}", summary(steady));
    stop.store(false, Ordering::Relaxed);
    let rss_before = rss_bytes();
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(rss_before));
    let (during, collapse_time) = {
        let (store2, stop2) = (Arc::clone(&store), Arc::clone(&stop));
        let load = std::thread::spawn(move || apply_load(&store2, n, 100_000_000, &stop2));
        let sampler = {
            let (peak, stop) = (Arc::clone(&peak), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        std::thread::sleep(Duration::from_millis(500));
        let t = Instant::now();
        let copy = StoreCopy::of(&store.read().unwrap());
        let dir2 = dir.join("collapse");
        std::fs::create_dir_all(&dir2).unwrap();
        write_ahead_log::write_snapshot(&fs, &dir2, &copy, &config).unwrap();
        drop(copy);
        let collapse_time = t.elapsed();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        sampler.join().unwrap();
        (load.join().unwrap(), collapse_time)
    };
    println!(
        "during collapse: {} (collapse took {collapse_time:?})",
        summary(during)
    );
    let peak = peak.load(Ordering::Relaxed);
    println!(
        "RSS before the collapse {} MiB, peak during it {} MiB (+{:.1} %)",
        rss_before >> 20,
        peak >> 20,
        (peak as f64 / rss_before as f64 - 1.0) * 100.0
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
