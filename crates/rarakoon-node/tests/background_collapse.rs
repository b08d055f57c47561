//! The collapse writes its head snapshot on a thread of its own (ADR 0186): while the snapshot
//! file is held open (its write blocked by the test's file system), the storage thread keeps
//! persisting entries and reporting them durable, and the collapse's answer comes only after
//! the snapshot is written and the log pruned behind it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use kv_store::{Update, UserFunctionRegistry};
use paxos_core::{Ballot, LogEntry, NodeId, Persist, Proposal, ProposalId, Value};
use rarakoon_node::config::NodeConfig;
use rarakoon_node::payload;
use rarakoon_node::storage::{self, Job, StorageEvent, StorageThread};
use write_ahead_log::{FileSystem, ReadableFile, StdFs, WritableFile};

/// `StdFs`, except that creating the snapshot's temp file on the snapshot thread waits for the
/// test's go-ahead (after telling it `Ok`); on any other thread it tells the thread's name.
#[derive(Debug)]
struct GateFs {
    blocked: Mutex<std_mpsc::Sender<Result<(), String>>>,
    release: Mutex<std_mpsc::Receiver<()>>,
}

impl FileSystem for GateFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        StdFs.create_dir_all(dir)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        StdFs.list_dir(dir)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        if path.to_string_lossy().ends_with("head.snap.tmp") {
            let thread = std::thread::current();
            let blocked = self.blocked.lock().unwrap().clone();
            if thread.name() == Some("rarakoon-snapshot") {
                blocked.send(Ok(())).unwrap();
                self.release.lock().unwrap().recv().unwrap();
            } else {
                let _ = blocked.send(Err(thread.name().unwrap_or("unnamed").to_owned()));
            }
        }
        StdFs.create(path)
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        StdFs.open_append(path)
    }
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadableFile>> {
        StdFs.open_read(path)
    }
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        StdFs.file_len(path)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        StdFs.exists(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdFs.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        StdFs.sync_dir(dir)
    }
}

fn entry(index: u64, key: &str) -> LogEntry {
    LogEntry {
        index,
        ballot: Ballot {
            round: 1,
            node: NodeId(0),
        },
        value: Value::Batch(vec![Proposal {
            id: ProposalId(index),
            payload: payload::encode(&Update::Set {
                key: Bytes::from(key.to_owned()),
                value: Bytes::from_static(b"value"),
            }),
        }]),
    }
}

fn durable(events: &mut tokio::sync::mpsc::UnboundedReceiver<StorageEvent>) -> u64 {
    loop {
        match events.blocking_recv() {
            Some(StorageEvent::Durable(ticket)) => return ticket,
            Some(StorageEvent::Failed(why)) => panic!("the storage thread failed: {why}"),
            Some(_) => {}
            None => panic!("the storage thread stopped"),
        }
    }
}

#[test]
fn persists_are_durable_while_the_collapse_writes_its_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let (blocked_tx, blocked) = std_mpsc::channel();
    let (release, release_rx) = std_mpsc::channel();
    let fs = Arc::new(GateFs {
        blocked: Mutex::new(blocked_tx),
        release: Mutex::new(release_rx),
    });
    let node = NodeConfig::new("n0", "127.0.0.1:1".parse().unwrap(), 1, tmp.path().into());
    let cfg = storage::storage_config(&node, 1 << 20, Arc::clone(&fs) as Arc<dyn FileSystem>);
    let functions = Arc::new(UserFunctionRegistry::new());
    let recovered = storage::recover(&cfg, Arc::clone(&functions)).unwrap();
    let store = Arc::new(RwLock::new(recovered.store));
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let (jobs, jobs_rx) = tokio::sync::mpsc::channel(64);
    let thread = StorageThread::new(cfg, recovered.wal, Arc::clone(&store), functions, events_tx);
    let handle = std::thread::Builder::new()
        .name("storage".into())
        .spawn(move || thread.run(jobs_rx))
        .unwrap();

    let persist = |ticket: u64, index: u64| {
        Job::Persist(Persist {
            ticket,
            promise: None,
            entries: vec![entry(index, &format!("k{index}"))],
            committed: index,
        })
    };
    for index in 1..=3 {
        jobs.blocking_send(persist(index, index)).unwrap();
        assert_eq!(durable(&mut events), index);
        let updates =
            storage::batch_updates(index, &entry(index, &format!("k{index}")).value).unwrap();
        store.write().unwrap().apply_batch(index, &updates).unwrap();
    }

    let (reply_tx, mut reply) = tokio::sync::oneshot::channel();
    jobs.blocking_send(Job::Collapse {
        force: true,
        reply: Some(reply_tx),
    })
    .unwrap();
    // A snapshot written on the storage thread itself is not held (the test would wait for
    // ever for the persists below): the file system names the thread instead.
    let on = blocked.recv().unwrap();
    assert_eq!(
        on,
        Ok(()),
        "the head snapshot was written on another thread than a snapshot thread of its own"
    );
    // The snapshot thread is held inside the write: the log still takes entries.
    for index in 4..=6 {
        jobs.blocking_send(persist(index, index)).unwrap();
        assert_eq!(durable(&mut events), index);
    }
    assert!(
        reply.try_recv().is_err(),
        "the collapse answered before its snapshot was written"
    );
    release.send(()).unwrap();
    let report = reply.blocking_recv().unwrap().unwrap();
    // The snapshot covers the store's applied index when the collapse began.
    assert_eq!(report.snapshot_index, Some(3));
    let head = write_ahead_log::head_snapshot_path(&tmp.path().join(storage::WAL_DIR));
    assert_eq!(
        write_ahead_log::read_snapshot_index(&StdFs, &head).unwrap(),
        Some(3)
    );
    drop(jobs);
    handle.join().unwrap();
    // Everything persisted meanwhile is recovered on top of the snapshot.
    let again = storage::recover(
        &storage::storage_config(&node, 1 << 20, Arc::new(StdFs)),
        Arc::new(UserFunctionRegistry::new()),
    )
    .unwrap();
    assert_eq!(again.snapshot_index, Some(3));
    assert_eq!(again.state.committed, 6);
    assert!(again.store.get(b"k6").is_some());
}
