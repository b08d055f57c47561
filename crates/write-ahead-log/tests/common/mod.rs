//! Shared test helpers: a BTreeMap-backed store, entry payloads that set one key, and small
//! configurations so a handful of entries spans several segments.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use write_ahead_log::*;

/// The directory every SimFs test uses.
pub fn dir() -> PathBuf {
    PathBuf::from("/node/wal")
}

/// Small segments (about four 40-byte entries each), zstd archives.
pub fn small_config(compressor: Compressor) -> WalConfig {
    WalConfig {
        max_entry_bytes: 1024,
        segment_target_bytes: 160,
        max_segment_bytes: 64 << 10,
        compressor,
        zstd_level: 1,
    }
}

pub fn snap_config() -> SnapshotConfig {
    SnapshotConfig {
        chunk_target_bytes: 64,
        max_chunk_bytes: 4096,
        max_snapshot_bytes: 1 << 20,
    }
}

/// The payload of entry `index`: sets key `k{index % 7}` to a value naming the index.
pub fn payload(index: u64) -> Vec<u8> {
    let key = format!("k{}", index % 7);
    let value = format!("value-of-{index}-{}", "x".repeat((index % 5) as usize));
    let mut out = vec![key.len() as u8];
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(value.as_bytes());
    out
}

/// The simple store the Collapser snapshots in tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TestStore {
    pub pairs: BTreeMap<Vec<u8>, Vec<u8>>,
    pub applied: u64,
}

impl TestStore {
    pub fn apply(&mut self, index: u64, bytes: &[u8]) {
        assert_eq!(index, self.applied + 1, "store applies in order");
        let key_len = bytes[0] as usize;
        self.pairs.insert(
            bytes[1..1 + key_len].to_vec(),
            bytes[1 + key_len..].to_vec(),
        );
        self.applied = index;
    }

    /// The store after applying entries `1..=upto` of `payloads` (payloads[0] is index 1).
    pub fn from_log(payloads: &[Vec<u8>], upto: u64) -> TestStore {
        let mut store = TestStore::default();
        for (i, bytes) in payloads.iter().take(upto as usize).enumerate() {
            store.apply(i as u64 + 1, bytes);
        }
        store
    }
}

impl SnapshotSource for TestStore {
    fn applied_index(&self) -> u64 {
        self.applied
    }

    fn for_each_pair(&self, sink: &mut PairSink<'_>) -> io::Result<()> {
        for (key, value) in &self.pairs {
            sink(key, value)?;
        }
        Ok(())
    }
}

/// Appends and syncs entries `from..=to` with [`payload`] bytes.
pub fn append_range(wal: &mut Wal, from: u64, to: u64) {
    let batch: Vec<(u64, Vec<u8>)> = (from..=to).map(|i| (i, payload(i))).collect();
    wal.append_and_sync(batch).unwrap();
}

/// Every entry in the log.
pub fn all_entries(wal: &Wal) -> Vec<(u64, Vec<u8>)> {
    match (wal.first_index(), wal.last_index()) {
        (Some(first), Some(last)) => wal
            .read(first, last, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|e| (e.index, e.bytes.to_vec()))
            .collect(),
        _ => Vec::new(),
    }
}

/// Start-up as the node does it: load the snapshot, open the log, replay.
pub fn recover_store(fs: &SimFs, config: WalConfig) -> Result<(Wal, TestStore), WalError> {
    let fs: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let mut store = TestStore::default();
    let mut pairs = BTreeMap::new();
    let Recovered { wal, snapshot } = recover(fs, &dir(), config, &snap_config(), &mut |k, v| {
        pairs.insert(k.to_vec(), v.to_vec());
        Ok(())
    })?;
    store.pairs = pairs;
    store.applied = snapshot.map_or(0, |s| s.index);
    if let Some(last) = wal.last_index()
        && last > store.applied
    {
        for entry in wal.read(store.applied + 1, last, usize::MAX)? {
            store.apply(entry.index, &entry.bytes);
        }
    }
    Ok((wal, store))
}

pub fn open_sim(fs: &SimFs, config: WalConfig) -> Result<Wal, WalError> {
    Wal::open(Arc::new(fs.clone()), dir(), config)
}

pub fn file_names(fs: &SimFs) -> Vec<String> {
    let mut names = fs.list_dir(Path::new(&dir())).unwrap();
    names.sort();
    names
}
