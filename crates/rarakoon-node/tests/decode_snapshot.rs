//! Snapshot transfer, receiving side: whatever the peer asked sends (garbage, chunks at other
//! offsets, changed sizes, totals beyond `max_snapshot_bytes`, mutated real chunks), the
//! storage thread never fails and never installs anything but the real snapshot.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, RwLock};
use tokio::sync::mpsc::Sender;

use bytes::Bytes;
use kv_store::{Store, Update, UserFunctionRegistry};
use paxos_core::NodeId;
use proptest::prelude::*;
use rarakoon_node::config::NodeConfig;
use rarakoon_node::storage::{self, Job, StorageEvent, StorageThread, StoreCopy};
use rarakoon_node::wire::PeerMessage;
use tokio::sync::mpsc::UnboundedReceiver;

const PEER: NodeId = NodeId(1);
const OTHER: NodeId = NodeId(2);

/// The real snapshot a peer would send: (index, file bytes, the store's pairs).
struct Source {
    index: u64,
    bytes: Vec<u8>,
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn pairs_of(store: &Store) -> Vec<(Vec<u8>, Vec<u8>)> {
    store
        .iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

fn source() -> Source {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Store::new(Arc::new(UserFunctionRegistry::new()));
    for i in 1..=5u64 {
        let updates: Vec<Update> = (0..20)
            .map(|k| Update::Set {
                key: Bytes::from(format!("key-{i}-{k}")),
                value: Bytes::from(vec![b'v'; (k * 7) as usize]),
            })
            .collect();
        store.apply_batch(i, &updates).unwrap();
    }
    let node = NodeConfig::new("src", "127.0.0.1:1".parse().unwrap(), 2, tmp.path().into());
    let cfg = storage::storage_config(&node, 1 << 20, Arc::new(write_ahead_log::StdFs));
    let dir = cfg.wal_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let info = write_ahead_log::write_snapshot(
        &write_ahead_log::StdFs,
        &dir,
        &StoreCopy::of(&store),
        &cfg.collapser.snapshot,
    )
    .unwrap();
    let bytes = std::fs::read(write_ahead_log::head_snapshot_path(&dir)).unwrap();
    Source {
        index: info.index,
        bytes,
        pairs: pairs_of(&store),
    }
}

/// The honest chunks of `src`, `size` bytes each.
fn honest(src: &Source, size: usize) -> Vec<(u64, u64, u64, Vec<u8>)> {
    let total = src.bytes.len() as u64;
    src.bytes
        .chunks(size)
        .enumerate()
        .map(|(i, c)| (src.index, total, (i * size) as u64, c.to_vec()))
        .collect()
}

struct Receiver {
    jobs: Sender<Job>,
    events: UnboundedReceiver<StorageEvent>,
    store: Arc<RwLock<Store>>,
    handle: Option<std::thread::JoinHandle<()>>,
    _tmp: tempfile::TempDir,
}

impl Receiver {
    fn new(max_snapshot_bytes: Option<u64>) -> Receiver {
        let tmp = tempfile::tempdir().unwrap();
        let mut node = NodeConfig::new("dst", "127.0.0.1:1".parse().unwrap(), 2, tmp.path().into());
        if let Some(max) = max_snapshot_bytes {
            node.max_snapshot_bytes = max;
        }
        let cfg = storage::storage_config(&node, 1 << 20, Arc::new(write_ahead_log::StdFs));
        let functions = Arc::new(UserFunctionRegistry::new());
        let recovered = storage::recover(&cfg, Arc::clone(&functions)).unwrap();
        let store = Arc::new(RwLock::new(recovered.store));
        let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
        let (jobs, jobs_rx) = tokio::sync::mpsc::channel(1024);
        let thread =
            StorageThread::new(cfg, recovered.wal, Arc::clone(&store), functions, events_tx);
        let handle = std::thread::spawn(move || thread.run(jobs_rx));
        Receiver {
            jobs,
            events,
            store,
            handle: Some(handle),
            _tmp: tmp,
        }
    }

    fn fetch(&self) {
        self.jobs
            .blocking_send(Job::FetchSnapshot { peer: PEER })
            .unwrap();
    }

    fn chunk(&self, peer: NodeId, (index, total, offset, data): (u64, u64, u64, Vec<u8>)) {
        self.jobs
            .blocking_send(Job::SnapshotChunk {
                peer,
                index,
                total,
                offset,
                data,
            })
            .unwrap();
    }

    /// Waits until every job sent so far was handled; returns the events they produced.
    /// Panics if the storage thread failed.
    fn settle(&mut self) -> Vec<StorageEvent> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = self.jobs.blocking_send(Job::Collapse {
            force: false,
            reply: Some(tx),
        });
        let replied = sent.is_ok() && matches!(rx.blocking_recv(), Ok(Ok(_)));
        let mut events = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            if let StorageEvent::Failed(why) = &e {
                panic!("the storage thread failed: {why}");
            }
            events.push(e);
        }
        assert!(replied, "the storage thread stopped: {events:?}");
        events
    }

    fn pairs(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        pairs_of(&self.store.read().unwrap())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let (jobs, _) = tokio::sync::mpsc::channel(1);
        drop(std::mem::replace(&mut self.jobs, jobs));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn installed(events: &[StorageEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            StorageEvent::SnapshotInstalled(i) => Some(*i),
            _ => None,
        })
        .collect()
}

fn asked(events: &[StorageEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            StorageEvent::Send(PEER, PeerMessage::SnapshotRequest { offset, .. }) => Some(*offset),
            _ => None,
        })
        .collect()
}

#[test]
fn garbage_from_the_peer_asked_does_not_stop_the_storage_thread() {
    let mut r = Receiver::new(None);
    r.fetch();
    r.chunk(PEER, (5, 100, 0, vec![0xab; 100]));
    let events = r.settle();
    assert!(installed(&events).is_empty());
    // The transfer starts over: a real snapshot is still taken afterwards.
    let src = source();
    r.fetch();
    for c in honest(&src, 700) {
        r.chunk(PEER, c);
    }
    assert_eq!(installed(&r.settle()), vec![src.index]);
    assert_eq!(r.pairs(), src.pairs);
}

#[test]
fn a_real_snapshot_is_installed_and_strays_are_ignored() {
    let src = source();
    let chunks = honest(&src, 512);
    assert!(chunks.len() > 3);
    let mut r = Receiver::new(None);
    r.fetch();
    for (i, c) in chunks.iter().enumerate() {
        // Before each real chunk: the same chunk from another peer, a chunk at an offset not
        // asked, and (after the first) a duplicate of the previous one.
        r.chunk(OTHER, (c.0, c.1, c.2, vec![0; c.3.len()]));
        r.chunk(PEER, (c.0, c.1, c.2 + 1, c.3.clone()));
        if i > 0 {
            r.chunk(PEER, chunks[i - 1].clone());
        }
        r.chunk(PEER, c.clone());
    }
    let events = r.settle();
    assert_eq!(installed(&events), vec![src.index]);
    let expected: Vec<u64> = std::iter::once(0)
        .chain(chunks[1..].iter().map(|c| c.2))
        .collect();
    assert_eq!(asked(&events), expected, "asked once per offset, in order");
    assert_eq!(r.pairs(), src.pairs);
}

#[test]
fn a_snapshot_beyond_max_snapshot_bytes_is_refused_and_the_node_keeps_working() {
    let mut r = Receiver::new(Some(1 << 20));
    for total in [(1 << 20) + 1, u64::MAX - 1, u64::MAX] {
        r.fetch();
        r.chunk(PEER, (7, total, 0, vec![0; 64]));
        let events = r.settle();
        assert!(installed(&events).is_empty(), "{total}");
        // Nothing more is asked of the peer until the retry period starts over.
        assert_eq!(asked(&events), vec![0], "{total}");
    }
    // A size that changes mid-transfer abandons it too.
    let src = source();
    let chunks = honest(&src, 300);
    r.fetch();
    r.chunk(PEER, chunks[0].clone());
    let (i, t, o, d) = chunks[1].clone();
    r.chunk(PEER, (i, t + 1, o, d));
    r.chunk(PEER, chunks[1].clone());
    assert!(installed(&r.settle()).is_empty());
}

/// A numeric field drawn from the whole domain, with weight on the edges and on `near`.
fn numeric(near: u64) -> impl Strategy<Value = u64> {
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

#[derive(Debug, Clone)]
enum Op {
    /// The i-th honest chunk, unchanged.
    Honest(usize),
    /// The i-th honest chunk with fields replaced and its data mutated.
    Mutated {
        i: usize,
        index: Option<u64>,
        total: Option<u64>,
        offset: Option<u64>,
        flip: Option<(usize, u8)>,
        cut: Option<usize>,
        extra: usize,
    },
    /// Arbitrary bytes in an arbitrary frame.
    Garbage(u64, u64, u64, Vec<u8>),
    /// Another peer sends the i-th chunk.
    Stranger(usize),
    NoSnapshot,
    Restart,
}

fn op(n: usize, index: u64, total: u64) -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..n).prop_map(Op::Honest),
        3 => (
            0..n,
            proptest::option::of(numeric(index)),
            proptest::option::of(numeric(total)),
            proptest::option::of(numeric(total / 2)),
            proptest::option::of((any::<usize>(), 1u8..=255)),
            proptest::option::of(any::<usize>()),
            0usize..4,
        )
            .prop_map(|(i, index, total, offset, flip, cut, extra)| Op::Mutated {
                i,
                index,
                total,
                offset,
                flip,
                cut,
                extra,
            }),
        1 => (
            numeric(index),
            numeric(total),
            numeric(0),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(a, b, c, d)| Op::Garbage(a, b, c, d)),
        1 => (0..n).prop_map(Op::Stranger),
        1 => Just(Op::NoSnapshot),
        1 => Just(Op::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn hostile_chunks_never_stop_the_node_or_install_other_data(
        ops in proptest::collection::vec(op(6, 5, 3000), 1..24)
    ) {
        let src = source();
        let chunks = honest(&src, src.bytes.len().div_ceil(6));
        prop_assert_eq!(chunks.len(), 6);
        let mut r = Receiver::new(None);
        r.fetch();
        for op in ops {
            match op {
                Op::Honest(i) => r.chunk(PEER, chunks[i].clone()),
                Op::Mutated { i, index, total, offset, flip, cut, extra } => {
                    let (mut x, mut t, mut o, mut d) = chunks[i].clone();
                    x = index.unwrap_or(x);
                    t = total.unwrap_or(t);
                    o = offset.unwrap_or(o);
                    if let Some((at, mask)) = flip && !d.is_empty() {
                        let at = at % d.len();
                        d[at] ^= mask;
                    }
                    if let Some(cut) = cut {
                        d.truncate(cut % (d.len() + 1));
                    }
                    d.extend(std::iter::repeat_n(0x5a, extra));
                    r.chunk(PEER, (x, t, o, d));
                }
                Op::Garbage(x, t, o, d) => r.chunk(PEER, (x, t, o, d)),
                Op::Stranger(i) => r.chunk(OTHER, chunks[i].clone()),
                Op::NoSnapshot => r.jobs.blocking_send(Job::NoSnapshot { peer: PEER }).unwrap(),
                Op::Restart => r.fetch(),
            }
        }
        let events = r.settle();
        if !installed(&events).is_empty() {
            // Only the real snapshot can get through.
            prop_assert_eq!(installed(&events), vec![src.index; installed(&events).len()]);
            prop_assert_eq!(r.pairs(), src.pairs.clone());
        } else {
            prop_assert!(r.pairs().is_empty());
        }
        // And the honest transfer still works afterwards.
        r.fetch();
        for c in &chunks {
            r.chunk(PEER, c.clone());
        }
        prop_assert_eq!(installed(&r.settle()), vec![src.index]);
        prop_assert_eq!(r.pairs(), src.pairs);
    }
}
