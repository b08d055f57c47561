//! COLLAPSE_TLOGS on the storage thread: `keep` completed segments stay besides the open one
//! (overriding the configured `segments_to_keep`), a smaller `keep` on a store that has not
//! advanced still prunes behind the existing head snapshot, a `keep` larger than the log
//! removes nothing, and the configured `segments_to_keep` counts completed segments too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use kv_store::{Store, Update, UserFunctionRegistry};
use paxos_core::{Ballot, LogEntry, NodeId, Persist, Proposal, ProposalId, Value};
use rarakoon_node::config::{Compressor, NodeConfig};
use rarakoon_node::payload;
use rarakoon_node::storage::{
    self, CollapseReport, Job, SegmentsToKeep, StorageConfig, StorageEvent, StorageThread,
};
use tokio::sync::mpsc::{Receiver, Sender, UnboundedReceiver};

fn config(home: &Path, segments_to_keep: u32) -> StorageConfig {
    let mut node = NodeConfig::new("n0", "127.0.0.1:1".parse().unwrap(), 2, home.to_path_buf());
    node.segment_size_bytes = 4096;
    node.compressor = Compressor::None;
    node.collapse_threshold_entries = 1_000_000;
    node.segments_to_keep = segments_to_keep;
    storage::storage_config(&node, 1 << 20, Arc::new(write_ahead_log::StdFs))
}

/// The first indexes of the segment files, oldest first.
fn segments(cfg: &StorageConfig) -> Vec<u64> {
    let mut firsts: Vec<u64> = std::fs::read_dir(cfg.wal_dir())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".wal").map(|f| f.parse().unwrap())
        })
        .collect();
    firsts.sort_unstable();
    firsts
}

struct Running {
    store: Arc<RwLock<Store>>,
    jobs: Sender<Job>,
    events: UnboundedReceiver<StorageEvent>,
    thread: std::thread::JoinHandle<()>,
}

fn start(cfg: &StorageConfig) -> Running {
    let functions = Arc::new(UserFunctionRegistry::new());
    let recovered = storage::recover(cfg, Arc::clone(&functions)).unwrap();
    let store = Arc::new(RwLock::new(recovered.store));
    let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
    let (jobs, jobs_rx): (Sender<Job>, Receiver<Job>) = tokio::sync::mpsc::channel(64);
    let thread = StorageThread::new(
        cfg.clone(),
        recovered.wal,
        Arc::clone(&store),
        functions,
        events_tx,
    );
    let thread = std::thread::spawn(move || thread.run(jobs_rx));
    Running {
        store,
        jobs,
        events,
        thread,
    }
}

impl Running {
    /// Persists entries `from..=to` (committed, 500-byte values) and applies them to the store.
    fn write(&mut self, from: u64, to: u64) {
        for index in from..=to {
            let update = Update::Set {
                key: Bytes::from(format!("k{index:05}")),
                value: Bytes::from(vec![b'v'; 500]),
            };
            let value = Value::Batch(vec![Proposal {
                id: ProposalId(index),
                payload: payload::encode(&update),
            }]);
            self.jobs
                .blocking_send(Job::Persist(Persist {
                    ticket: index,
                    promise: None,
                    entries: vec![LogEntry {
                        index,
                        ballot: Ballot {
                            round: 1,
                            node: NodeId(0),
                        },
                        value,
                    }],
                    committed: index,
                }))
                .unwrap();
            loop {
                match self.events.blocking_recv().unwrap() {
                    StorageEvent::Durable(t) if t >= index => break,
                    StorageEvent::Failed(e) => panic!("storage failed: {e}"),
                    _ => {}
                }
            }
            self.store
                .write()
                .unwrap()
                .apply_batch(index, &[update])
                .unwrap();
        }
    }

    fn collapse_tlogs(&self, keep: u32) -> CollapseReport {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .blocking_send(Job::CollapseTlogs {
                keep: SegmentsToKeep::new(keep).unwrap(),
                reply,
            })
            .unwrap();
        answer.blocking_recv().unwrap().unwrap()
    }

    fn collapse(&self) -> CollapseReport {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .blocking_send(Job::Collapse {
                force: true,
                reply: Some(reply),
            })
            .unwrap();
        answer.blocking_recv().unwrap().unwrap()
    }

    fn stop(self) {
        drop(self.jobs);
        self.thread.join().unwrap();
    }
}

#[test]
fn collapse_tlogs_keeps_n_completed_segments_besides_the_open_one() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), 4);
    let mut node = start(&cfg);
    node.write(1, 200);
    let before = segments(&cfg);
    assert!(before.len() >= 12, "{before:?}");

    // keep 5: the five newest completed segments and the open one stay.
    let report = node.collapse_tlogs(5);
    assert_eq!(segments(&cfg), before[before.len() - 6..]);
    assert_eq!(report.snapshot_index, Some(200));
    assert_eq!(report.removed_segments, before[..before.len() - 6]);
    let steps = report.steps();
    assert_eq!(steps.len(), before.len() - 6 + 1);
    assert_eq!(steps.last(), Some(&200));

    // keep 2 with nothing applied since: nothing new to snapshot, but the segments the
    // existing head snapshot covers are pruned down to 2 at once.
    let report = node.collapse_tlogs(2);
    assert_eq!(segments(&cfg), before[before.len() - 3..]);
    assert_eq!(report.snapshot_index, Some(200));
    assert_eq!(
        report.removed_segments,
        before[before.len() - 6..before.len() - 3]
    );
    assert_eq!(report.steps().len(), 4);

    // More than the log holds: nothing removed, nothing to announce.
    let report = node.collapse_tlogs(1000);
    assert_eq!(segments(&cfg), before[before.len() - 3..]);
    assert_eq!(report.snapshot_index, None);
    assert!(report.steps().is_empty());

    // keep 1000 after new writes: a head snapshot is written, no segment removed: one step.
    node.write(201, 210);
    let grown = segments(&cfg);
    let report = node.collapse_tlogs(1000);
    assert_eq!(segments(&cfg), grown);
    assert_eq!(report.steps(), vec![210]);
    node.stop();

    // What was kept recovers: every key is there.
    let recovered = storage::recover(&cfg, Arc::new(UserFunctionRegistry::new())).unwrap();
    assert_eq!(recovered.store.key_count(), 210);
}

#[test]
fn the_configured_segments_to_keep_counts_completed_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), 4);
    let mut node = start(&cfg);
    node.write(1, 200);
    let before = segments(&cfg);
    assert!(before.len() >= 12, "{before:?}");
    // A forced collapse with the configured segments_to_keep = 4: four completed segments
    // and the open one.
    let report = node.collapse();
    assert_eq!(report.snapshot_index, Some(200));
    assert_eq!(segments(&cfg), before[before.len() - 5..]);
    node.stop();
}
