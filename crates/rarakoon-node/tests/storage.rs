//! The storage thread and recovery together: what was persisted (and reported durable) is what
//! start-up recovers, including an overwritten uncommitted tail and the promise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, RwLock};

use bytes::Bytes;
use kv_store::{Store, Update, UserFunctionRegistry};
use paxos_core::{Ballot, LogEntry, NodeId, Persist, Proposal, ProposalId, Value};
use rarakoon_node::config::NodeConfig;
use rarakoon_node::payload;
use rarakoon_node::storage::{self, Job, StorageConfig, StorageEvent, StorageThread};

fn ballot(round: u64) -> Ballot {
    Ballot {
        round,
        node: NodeId(0),
    }
}

fn set(key: &str, value: &str) -> Value {
    Value::Batch(vec![Proposal {
        id: ProposalId(1),
        payload: payload::encode(&Update::Set {
            key: Bytes::from(key.to_owned()),
            value: Bytes::from(value.to_owned()),
        }),
    }])
}

fn entry(index: u64, round: u64, value: Value) -> LogEntry {
    LogEntry {
        index,
        ballot: ballot(round),
        value,
    }
}

fn config(home: &std::path::Path) -> StorageConfig {
    let node = NodeConfig::new("n0", "127.0.0.1:1".parse().unwrap(), 2, home.to_path_buf());
    storage::storage_config(&node, 1 << 20, Arc::new(write_ahead_log::StdFs))
}

/// Runs the storage thread over `persists`, waiting until each is reported durable.
fn persist_all(cfg: &StorageConfig, persists: Vec<Persist>) {
    let functions = Arc::new(UserFunctionRegistry::new());
    let recovered = storage::recover(cfg, Arc::clone(&functions)).unwrap();
    let store = Arc::new(RwLock::new(recovered.store));
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let (jobs_tx, jobs_rx) = tokio::sync::mpsc::channel(64);
    let thread = StorageThread::new(cfg.clone(), recovered.wal, store, functions, events_tx);
    let handle = std::thread::spawn(move || thread.run(jobs_rx));
    for p in persists {
        let ticket = p.ticket;
        jobs_tx.blocking_send(Job::Persist(p)).unwrap();
        loop {
            match events.blocking_recv().unwrap() {
                StorageEvent::Durable(t) if t >= ticket => break,
                StorageEvent::Failed(e) => panic!("storage failed: {e}"),
                _ => {}
            }
        }
    }
    drop(jobs_tx);
    handle.join().unwrap();
}

#[test]
fn recovery_applies_committed_entries_and_returns_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    persist_all(
        &cfg,
        vec![
            Persist {
                ticket: 1,
                promise: Some(ballot(3)),
                entries: vec![entry(1, 3, Value::Master { node: NodeId(0) })],
                committed: 0,
            },
            Persist {
                ticket: 2,
                promise: None,
                entries: vec![entry(2, 3, set("a", "1")), entry(3, 3, set("b", "2"))],
                committed: 2,
            },
            Persist {
                ticket: 3,
                promise: None,
                entries: vec![entry(4, 3, set("c", "3"))],
                committed: 3,
            },
        ],
    );
    let r = storage::recover(&cfg, Arc::new(UserFunctionRegistry::new())).unwrap();
    assert_eq!(r.state.promised, ballot(3));
    assert_eq!(r.state.committed, 3);
    assert_eq!(r.store.applied_index(), Some(3));
    assert_eq!(r.store.get(b"a").unwrap().as_ref(), b"1");
    assert_eq!(r.store.get(b"b").unwrap().as_ref(), b"2");
    assert!(r.store.get(b"c").is_none(), "entry 4 is not committed yet");
    assert_eq!(r.state.entries, vec![entry(4, 3, set("c", "3"))]);
}

#[test]
fn an_overwritten_tail_is_replaced_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    persist_all(
        &cfg,
        vec![
            Persist {
                ticket: 1,
                promise: None,
                entries: vec![
                    entry(1, 1, set("a", "1")),
                    entry(2, 1, set("x", "old")),
                    entry(3, 1, set("y", "old")),
                ],
                committed: 1,
            },
            // A new master overwrites the uncommitted index 2 (and with it 3).
            Persist {
                ticket: 2,
                promise: Some(ballot(2)),
                entries: vec![entry(2, 2, set("x", "new"))],
                committed: 1,
            },
        ],
    );
    let r = storage::recover(&cfg, Arc::new(UserFunctionRegistry::new())).unwrap();
    assert_eq!(r.state.committed, 1);
    assert_eq!(r.state.entries, vec![entry(2, 2, set("x", "new"))]);
    assert_eq!(r.state.promised, ballot(2));
}

#[test]
fn a_fresh_home_recovers_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let r = storage::recover(&config(tmp.path()), Arc::new(UserFunctionRegistry::new())).unwrap();
    assert_eq!(r.state.committed, 0);
    assert!(r.state.entries.is_empty());
    assert_eq!(r.store.applied_index(), None::<u64>);
    let _: &Store = &r.store;
}

#[test]
fn a_catch_up_request_the_log_cannot_serve_does_not_stop_the_storage_thread() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    let functions = Arc::new(UserFunctionRegistry::new());
    let recovered = storage::recover(&cfg, Arc::clone(&functions)).unwrap();
    let store = Arc::new(RwLock::new(recovered.store));
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let (jobs_tx, jobs_rx) = tokio::sync::mpsc::channel(64);
    let thread = StorageThread::new(cfg.clone(), recovered.wal, store, functions, events_tx);
    let handle = std::thread::spawn(move || thread.run(jobs_rx));
    jobs_tx
        .blocking_send(Job::Persist(Persist {
            ticket: 1,
            promise: None,
            entries: vec![entry(1, 3, set("a", "1")), entry(2, 3, set("b", "2"))],
            committed: 2,
        }))
        .unwrap();
    // Index 0 is below the log's first entry and no snapshot covers it: a peer's odd request
    // gets an empty answer, and the node keeps working.
    jobs_tx
        .blocking_send(Job::CatchUp {
            peer: NodeId(1),
            from: 0,
            up_to: 2,
        })
        .unwrap();
    jobs_tx
        .blocking_send(Job::CatchUp {
            peer: NodeId(1),
            from: 1,
            up_to: 2,
        })
        .unwrap();
    let mut answers = Vec::new();
    while answers.len() < 2 {
        match events.blocking_recv().unwrap() {
            StorageEvent::CatchUpRead { from, read, .. } => answers.push((from, read)),
            StorageEvent::Failed(e) => panic!("storage failed: {e}"),
            _ => {}
        }
    }
    assert_eq!(answers[0], (0, paxos_core::CatchUpRead::Values(Vec::new())));
    assert!(
        matches!(&answers[1], (1, paxos_core::CatchUpRead::Values(v)) if v.len() == 2),
        "{:?}",
        answers[1]
    );
    drop(jobs_tx);
    handle.join().unwrap();
}

#[test]
fn an_undecodable_committed_entry_stops_recovery_naming_its_index() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    let garbage = Value::Batch(vec![Proposal {
        id: ProposalId(9),
        payload: vec![0xFF, 0x00, 0x13],
    }]);
    persist_all(
        &cfg,
        vec![Persist {
            ticket: 1,
            promise: None,
            entries: vec![entry(1, 3, set("a", "1")), entry(2, 3, garbage)],
            committed: 2,
        }],
    );
    let error = storage::recover(&cfg, Arc::new(UserFunctionRegistry::new())).unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(
            &error,
            storage::StorageError::Undecodable(e) if e.index == 2 && e.proposal == 9
        ),
        "{text}"
    );
    assert!(
        text.contains("committed entry 2 cannot be applied"),
        "{text}"
    );
    assert!(text.contains("upgrade this node"), "{text}");
}

/// The replay crosses several 8 MiB reads (the reader thread hands them over one by one):
/// every committed entry is applied once and in order, and an uncommitted entry whose updates
/// cannot be decoded is handed to paxos-core as it is, not treated as damage.
#[test]
fn a_replay_over_many_reads_applies_in_order_and_keeps_an_undecodable_uncommitted_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    let big = "v".repeat(600 * 1024);
    let entries = 40u64;
    let value = |i: u64| {
        Value::Batch(vec![
            Proposal {
                id: ProposalId(i),
                payload: payload::encode(&Update::Set {
                    key: Bytes::from(format!("k{i}")),
                    value: Bytes::from(big.clone()),
                }),
            },
            Proposal {
                id: ProposalId(i),
                payload: payload::encode(&Update::Set {
                    key: Bytes::from_static(b"order"),
                    value: Bytes::from(i.to_string()),
                }),
            },
        ])
    };
    let mut persists: Vec<Persist> = (1..=entries)
        .map(|i| Persist {
            ticket: i,
            promise: None,
            entries: vec![entry(i, 3, value(i))],
            committed: i - 1,
        })
        .collect();
    let garbage = Value::Batch(vec![Proposal {
        id: ProposalId(99),
        payload: vec![0xFF, 0x00, 0x13],
    }]);
    persists.push(Persist {
        ticket: entries + 1,
        promise: None,
        entries: vec![entry(entries + 1, 3, garbage.clone())],
        committed: entries,
    });
    persist_all(&cfg, persists);
    let r = storage::recover(&cfg, Arc::new(UserFunctionRegistry::new())).unwrap();
    assert_eq!(r.state.committed, entries);
    assert_eq!(r.store.applied_index(), Some(entries));
    assert_eq!(r.store.key_count(), entries + 1);
    assert_eq!(
        r.store.get(b"order").unwrap().as_ref(),
        entries.to_string().as_bytes()
    );
    for i in 1..=entries {
        assert_eq!(
            r.store.get(format!("k{i}").as_bytes()).unwrap().len(),
            big.len()
        );
    }
    assert_eq!(r.state.entries, vec![entry(entries + 1, 3, garbage)]);
}
