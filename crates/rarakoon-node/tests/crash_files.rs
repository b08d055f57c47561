//! Crash-consistency of every file the node writes: a power cut at every write and fsync
//! boundary of the storage thread, then a restart.
//!
//! The real storage thread ([`StorageThread`]) runs a script of jobs on the fault-injecting
//! in-memory file system ([`SimFs`]), which models the page cache: for every `k`, the process
//! "dies" at its k-th mutating file operation (every later one fails), then [`SimFs::crash`]
//! keeps only what was synced (a file's unsynced tail may survive torn at any byte), and the
//! node recovers with the real [`storage::recover`]. The scripts touch every artifact: the WAL
//! segments (appends, rolls, group fsync), the archive and pruning of the Collapser, the head
//! snapshot, a snapshot received from a peer (with its restart marker), the promise file and
//! the redo file of a tail overwrite. The home lock is an OS lock (flock), released by the
//! kernel when the process dies: `home_lock`'s own tests cover it.
//!
//! After every crash the restart must succeed, and:
//! - every persist reported durable before the crash is on disk (its promise, its entries,
//!   unless a later persist replaced them);
//! - the log has no gap and holds, at each index, a value some persist wrote there;
//! - the store is exactly the committed prefix of that log applied in order.
//!
//! Damage that a crash cannot cause (a flipped bit in synced data) must instead stop the start
//! with a message naming the file, the offset where the WAL can tell, and the repair command:
//! `damaged_synced_files_refuse_to_start_naming_the_file_and_the_repair`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use kv_store::{Store, Update, UserFunctionRegistry};
use paxos_core::{Ballot, Index, LogEntry, NodeId, Persist, Proposal, ProposalId, Value};
use rarakoon_node::config::NodeConfig;
use rarakoon_node::payload;
use rarakoon_node::storage::{self, Job, StorageConfig, StorageEvent, StorageThread};
use write_ahead_log::{FileSystem, SimFs};

/// Tear patterns tried at every crash point (each seed tears unsynced tails differently).
const TEAR_SEEDS: u64 = 3;

fn ballot(round: u64, node: u8) -> Ballot {
    Ballot {
        round,
        node: NodeId(node),
    }
}

fn key(index: Index) -> Bytes {
    Bytes::from(format!("k{index}"))
}

/// The value a script writes at `index` in `version`: sets `k{index}` = `v{version}.{index}`.
fn value(version: u32, index: Index) -> Value {
    Value::Batch(vec![Proposal {
        id: ProposalId(index),
        payload: payload::encode(&Update::Set {
            key: key(index),
            value: Bytes::from(format!("v{version}.{index}")),
        }),
    }])
}

fn entries(version: u32, round: u64, indexes: std::ops::RangeInclusive<Index>) -> Vec<LogEntry> {
    indexes
        .map(|index| LogEntry {
            index,
            ballot: ballot(round, 0),
            value: value(version, index),
        })
        .collect()
}

/// One step of a script.
#[derive(Clone)]
enum Step {
    /// A persist, waited for until reported durable.
    Persist(Persist),
    /// Persists queued back to back, so the storage thread takes them in one round (one
    /// fsync), then waited for until the last is reported durable.
    Round(Vec<Persist>),
    /// What the driver does after a commit: apply the log's entries up to here to the store.
    Apply(Index),
    /// A forced collapse (head snapshot, archive, prune).
    Collapse,
    /// Fetch and install a peer's (node 1) head snapshot: its index and its file's bytes.
    Receive(Index, Vec<u8>),
}

fn home() -> PathBuf {
    PathBuf::from("/sim/n0")
}

fn config(fs: &SimFs) -> StorageConfig {
    let node = NodeConfig::new("n0", "127.0.0.1:1".parse().unwrap(), 2, home());
    let mut cfg = storage::storage_config(&node, 1 << 20, Arc::new(fs.clone()));
    // Tiny segments: the scripts roll, archive and prune several of them.
    cfg.wal.segment_target_bytes = 300;
    cfg.collapser.segments_to_keep = 3;
    cfg.collapser.threshold_entries = 1_000_000;
    cfg
}

/// What a run of a script reported before it stopped.
#[derive(Default, Debug)]
struct Acked {
    /// Index of the last persist reported durable (into the script's persists).
    durable: Vec<Persist>,
    /// A received snapshot reported installed.
    installed: Option<Index>,
    /// The script ran to its end.
    finished: bool,
}

/// Runs `script` on the real storage thread over `fs`; with `halt = Some(k)` every mutating
/// file operation after the next k fails (the process is dead from there on).
fn run(fs: &SimFs, script: &[Step], halt: Option<u64>) -> Acked {
    run_with(&config(fs), fs, script, halt)
}

fn run_with(cfg: &StorageConfig, fs: &SimFs, script: &[Step], halt: Option<u64>) -> Acked {
    let functions = Arc::new(UserFunctionRegistry::new());
    let recovered = storage::recover(cfg, Arc::clone(&functions)).unwrap();
    let store = Arc::new(RwLock::new(recovered.store));
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let (jobs_tx, jobs_rx) = tokio::sync::mpsc::channel(64);
    let thread = StorageThread::new(
        cfg.clone(),
        recovered.wal,
        Arc::clone(&store),
        functions,
        events_tx,
    );
    let handle = std::thread::spawn(move || thread.run(jobs_rx));
    if let Some(k) = halt {
        fs.halt_after(k);
    }
    let mut acked = Acked::default();
    // The log as the script wrote it, for the applies.
    let mut log: BTreeMap<Index, Value> = BTreeMap::new();
    let mut failed = false;
    'script: for step in script {
        match step {
            Step::Persist(p) => {
                write_into(&mut log, p);
                if jobs_tx.blocking_send(Job::Persist(p.clone())).is_err() {
                    failed = true;
                    break;
                }
                loop {
                    match events.blocking_recv() {
                        Some(StorageEvent::Durable(t)) if t >= p.ticket => break,
                        Some(StorageEvent::Failed(_)) | None => {
                            failed = true;
                            break 'script;
                        }
                        Some(_) => {}
                    }
                }
                acked.durable.push(p.clone());
            }
            Step::Round(persists) => {
                for p in persists {
                    write_into(&mut log, p);
                    if jobs_tx.blocking_send(Job::Persist(p.clone())).is_err() {
                        failed = true;
                        break 'script;
                    }
                }
                let Some(last) = persists.last().map(|p| p.ticket) else {
                    continue;
                };
                let mut reported = 0;
                while reported < last {
                    match events.blocking_recv() {
                        Some(StorageEvent::Durable(t)) => reported = t,
                        Some(StorageEvent::Failed(_)) | None => {
                            failed = true;
                            break 'script;
                        }
                        Some(_) => {}
                    }
                }
                acked.durable.extend(persists.iter().cloned());
            }
            Step::Apply(up_to) => {
                let mut store = store.write().unwrap();
                let from = store.applied_index().map_or(1, |a| a + 1);
                for index in from..=*up_to {
                    let updates = storage::batch_updates(index, &log[&index]).unwrap();
                    store.apply_batch(index, &updates).unwrap();
                }
            }
            Step::Collapse => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let job = Job::Collapse {
                    force: true,
                    reply: Some(tx),
                };
                if jobs_tx.blocking_send(job).is_err() || !matches!(rx.blocking_recv(), Ok(Ok(_))) {
                    failed = true;
                    break;
                }
            }
            Step::Receive(index, snapshot) => {
                let index = *index;
                let peer = NodeId(1);
                if jobs_tx.blocking_send(Job::FetchSnapshot { peer }).is_err() {
                    failed = true;
                    break;
                }
                loop {
                    match events.blocking_recv() {
                        Some(StorageEvent::Send(
                            to,
                            rarakoon_node::wire::PeerMessage::SnapshotRequest { offset, len },
                        )) if to == peer => {
                            let start = usize::try_from(offset).unwrap().min(snapshot.len());
                            let end = (start + len as usize).min(snapshot.len());
                            let chunk = Job::SnapshotChunk {
                                peer,
                                index,
                                total: snapshot.len() as u64,
                                offset,
                                data: snapshot[start..end].to_vec(),
                            };
                            if jobs_tx.blocking_send(chunk).is_err() {
                                failed = true;
                                break 'script;
                            }
                        }
                        Some(StorageEvent::SnapshotInstalled(i)) => {
                            acked.installed = Some(i);
                            log.clear();
                            break;
                        }
                        Some(StorageEvent::Failed(_)) | None => {
                            failed = true;
                            break 'script;
                        }
                        Some(_) => {}
                    }
                }
            }
        }
    }
    acked.finished = !failed;
    drop(jobs_tx);
    handle.join().unwrap();
    acked
}

/// Applies persist `p` to a model of the log: its entries replace everything from the first.
fn write_into(log: &mut BTreeMap<Index, Value>, p: &Persist) {
    if let Some(first) = p.entries.first() {
        log.split_off(&first.index);
    }
    for e in &p.entries {
        log.insert(e.index, e.value.clone());
    }
}

/// Every value `script` writes at each index (any of them may be on disk after a crash).
fn written(script: &[Step]) -> BTreeMap<Index, Vec<Value>> {
    let mut out: BTreeMap<Index, Vec<Value>> = BTreeMap::new();
    for step in script {
        let persists = match step {
            Step::Persist(p) => std::slice::from_ref(p),
            Step::Round(ps) => ps.as_slice(),
            _ => &[],
        };
        for p in persists {
            for e in &p.entries {
                out.entry(e.index).or_default().push(e.value.clone());
            }
        }
    }
    out
}

/// The recovered log above the snapshot (committed entries read back from the WAL, then the
/// uncommitted ones recovery hands to paxos-core).
fn recovered_log(r: &storage::Recovered) -> BTreeMap<Index, Value> {
    let mut log = BTreeMap::new();
    let base = r.snapshot_index.unwrap_or(0);
    if r.state.committed > base {
        let mut scratch = wire_codec::rkyv::util::AlignedVec::new();
        for e in r.wal.read(base + 1, r.state.committed, usize::MAX).unwrap() {
            let stored = storage::decode_entry(&e.bytes, &mut scratch).unwrap();
            log.insert(e.index, stored.value);
        }
    }
    for e in &r.state.entries {
        log.insert(e.index, e.value.clone());
    }
    log
}

/// Recovers from `fs` after a crash and checks everything the module docs promise.
fn check_after_crash(fs: &SimFs, script: &[Step], acked: &Acked, what: &str) {
    let cfg = config(fs);
    let r = match storage::recover(&cfg, Arc::new(UserFunctionRegistry::new())) {
        Ok(r) => r,
        Err(e) => panic!("{what}: the node does not restart after a crash: {e}"),
    };
    let written = written(script);
    let log = recovered_log(&r);
    let base = r.snapshot_index.unwrap_or(0);
    // No gap, and every value is one the script wrote there.
    for (expect, (index, v)) in (base + 1..).zip(log.iter()) {
        assert_eq!(
            *index, expect,
            "{what}: gap in the recovered log before {index}"
        );
        assert!(
            written.get(index).is_some_and(|vs| vs.contains(v)),
            "{what}: index {index} holds a value no persist wrote there"
        );
    }
    // Durable persists survived: their promise and their entries (unless replaced later).
    if let Some(max) = acked.durable.iter().filter_map(|p| p.promise).max() {
        assert!(
            r.state.promised >= max,
            "{what}: promise {max:?} was reported durable but {:?} was recovered",
            r.state.promised
        );
    }
    let mut durable_log: BTreeMap<Index, Value> = BTreeMap::new();
    for p in &acked.durable {
        write_into(&mut durable_log, p);
    }
    if let Some(installed) = acked.installed {
        assert!(
            base >= installed,
            "{what}: the snapshot at {installed} was reported installed but the node restarted \
             from {base}"
        );
    }
    for (index, v) in &durable_log {
        if *index <= base {
            continue;
        }
        let got = log.get(index);
        let replaced_later = got.is_some_and(|g| g != v && written[index].contains(g));
        assert!(
            got == Some(v) || replaced_later,
            "{what}: entry {index}, reported durable, is {} after the crash",
            if got.is_some() { "different" } else { "gone" }
        );
    }
    // The store holds what the snapshot covers and the committed prefix above it, applied.
    for index in 1..=base {
        assert!(
            r.store.get(&key(index)).is_some(),
            "{what}: key {index}, covered by the snapshot at {base}, is not in the store"
        );
    }
    for index in (base + 1)..=r.state.committed {
        let Some(Value::Batch(items)) = log.get(&index) else {
            panic!("{what}: committed entry {index} missing");
        };
        let Update::Set { key: k, value: v } =
            payload::decode(Bytes::from(items[0].payload.clone())).unwrap()
        else {
            panic!("unexpected update");
        };
        assert_eq!(
            r.store.get(&k),
            Some(v),
            "{what}: committed entry {index} is not in the store"
        );
    }
    assert_eq!(
        r.store.get(&key(r.state.committed + 1)),
        None,
        "{what}: an uncommitted entry was applied"
    );
}

/// Runs `script` once to count its mutating operations, then crashes it at every one of them
/// (and after the last), each with several tear patterns.
fn crash_everywhere(script: &[Step]) -> u64 {
    let probe = SimFs::new(0);
    let start = probe.mutating_ops();
    let full = run(&probe, script, None);
    assert!(full.finished, "the script does not run without faults");
    let total = probe.mutating_ops() - start;
    probe.crash();
    check_after_crash(&probe, script, &full, "power cut after the script");
    let mut cases = 0;
    for k in 0..=total {
        for seed in 0..TEAR_SEEDS {
            let fs = SimFs::new(k * TEAR_SEEDS + seed);
            let acked = run(&fs, script, Some(k));
            fs.crash();
            check_after_crash(
                &fs,
                script,
                &acked,
                &format!("crash at mutating operation {k} of {total} (tear seed {seed})"),
            );
            cases += 1;
        }
    }
    cases
}

fn persist(ticket: u64, promise: Option<Ballot>, entries: Vec<LogEntry>, committed: Index) -> Step {
    Step::Persist(Persist {
        ticket,
        promise,
        entries,
        committed,
    })
}

/// Appends, segment rolls, promise changes, a tail overwrite through the redo file, a collapse
/// (head snapshot, archives, pruning) and more appends after it.
#[test]
fn a_crash_at_any_file_operation_of_the_log_promise_redo_and_collapse_restarts_correctly() {
    let script = vec![
        persist(1, Some(ballot(1, 0)), entries(1, 1, 1..=4), 0),
        persist(2, None, entries(1, 1, 5..=8), 4),
        Step::Apply(4),
        // A new ballot overwrites the uncommitted 7 and 8 (and adds 9): the redo file.
        persist(3, Some(ballot(2, 1)), entries(2, 2, 7..=9), 6),
        Step::Apply(6),
        Step::Collapse,
        persist(4, None, entries(2, 2, 10..=12), 9),
        Step::Apply(9),
        persist(5, Some(ballot(3, 2)), entries(3, 3, 12..=13), 11),
    ];
    let cases = crash_everywhere(&script);
    eprintln!("{cases} crash cases");
    assert!(
        cases > 100,
        "only {cases} crash points: the script touches too little"
    );
}

/// Persists that the storage thread takes in one round (one fsync for all): appends followed
/// by a tail overwrite of entries appended in that same round, not yet synced.
#[test]
fn a_crash_at_any_file_operation_of_a_round_that_overwrites_its_own_unsynced_entries_restarts_correctly()
 {
    let with = |ticket: u64, promise: Option<Ballot>, entries: Vec<LogEntry>, committed| Persist {
        ticket,
        promise,
        entries,
        committed,
    };
    let script = vec![
        persist(1, Some(ballot(1, 0)), entries(1, 1, 1..=3), 1),
        Step::Round(vec![
            with(2, None, entries(1, 1, 4..=6), 2),
            // A new master replaces 5 and 6, which the same round just appended.
            with(3, Some(ballot(2, 1)), entries(2, 2, 5..=7), 3),
            with(4, None, entries(2, 2, 8..=8), 4),
        ]),
    ];
    let cases = crash_everywhere(&script);
    eprintln!("{cases} crash cases");
}

/// A head snapshot received from a peer (chunks, restart marker, install) after a few entries
/// of the node's own.
#[test]
fn a_crash_at_any_file_operation_while_installing_a_received_snapshot_restarts_correctly() {
    // The peer's snapshot: a store with 30 keys at index 40, written by the real writer.
    let peer_fs = SimFs::new(99);
    let mut peer = Store::new(Arc::new(UserFunctionRegistry::new()));
    for index in 1..=40 {
        let updates = storage::batch_updates(index, &value(9, index)).unwrap();
        peer.apply_batch(index, &updates).unwrap();
    }
    let dir = Path::new("/peer/wal");
    peer_fs.create_dir_all(dir).unwrap();
    write_ahead_log::write_snapshot(
        &peer_fs,
        dir,
        &storage::StoreCopy::of(&peer),
        &write_ahead_log::SnapshotConfig::default(),
    )
    .unwrap();
    let snapshot = peer_fs
        .contents(&write_ahead_log::head_snapshot_path(dir))
        .unwrap();
    let script = vec![
        persist(1, Some(ballot(1, 1)), entries(1, 1, 1..=3), 2),
        Step::Apply(2),
        Step::Receive(40, snapshot),
        persist(2, None, entries(9, 1, 41..=42), 41),
    ];
    let cases = crash_everywhere(&script);
    eprintln!("{cases} crash cases");
}

/// Runs the collapse script on `fs` for node `n0` of a one-node cluster whose home is under
/// `dir`, crashing at mutating operation `halt` if given.
fn node_home_on(fs: &SimFs, cfg_home: &Path, script: &[Step], halt: Option<u64>) {
    let node = NodeConfig::new(
        "n0",
        "127.0.0.1:1".parse().unwrap(),
        2,
        cfg_home.to_path_buf(),
    );
    let mut cfg = storage::storage_config(&node, 1 << 20, Arc::new(fs.clone()));
    cfg.wal.segment_target_bytes = 300;
    cfg.collapser.segments_to_keep = 3;
    cfg.collapser.threshold_entries = 1_000_000;
    let _ = run_with(&cfg, fs, script, halt);
}

/// A flipped bit in any synced file stops the start with an error naming the file (and the
/// byte offset for the log and snapshots) and the command that repairs the node, instead of
/// starting from wrong data.
#[test]
#[allow(clippy::field_reassign_with_default)] // NodeOptions may grow; only `fs` matters here
fn damaged_synced_files_refuse_to_start_naming_the_file_and_the_repair() {
    let script = vec![
        persist(1, Some(ballot(1, 0)), entries(1, 1, 1..=6), 4),
        Step::Apply(4),
        Step::Collapse,
        persist(2, None, entries(1, 1, 7..=12), 10),
        Step::Apply(10),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let config = support::config(tmp.path(), 1);
    let home = config.nodes[0].home_dir.clone();
    let wal = home.join(storage::WAL_DIR);
    let built = SimFs::new(7);
    // What a first start writes (the membership record), then the script's files.
    rarakoon_node::membership::check_home(&built, &home, &config).unwrap();
    node_home_on(&built, &home, &script, None);
    let mut files: Vec<PathBuf> = built
        .list_dir(&wal)
        .unwrap()
        .into_iter()
        .map(|name| wal.join(name))
        .collect();
    files.push(home.join(rarakoon_node::promise::PROMISE_FILE));
    files.push(home.join(rarakoon_node::membership::MEMBERSHIP_FILE));
    files.sort();
    // A redo file exists only while a tail overwrite is under way: crash inside one.
    let redo = home.join(rarakoon_node::overwrite::REDO_FILE);
    let overwrite = vec![
        persist(1, Some(ballot(1, 0)), entries(1, 1, 1..=6), 2),
        persist(2, Some(ballot(2, 0)), entries(2, 2, 4..=7), 2),
    ];
    let with_redo = (0..200)
        .find_map(|k| {
            let fs = SimFs::new(k);
            rarakoon_node::membership::check_home(&fs, &home, &config).unwrap();
            node_home_on(&fs, &home, &overwrite, Some(k));
            fs.crash();
            fs.exists(&redo).unwrap().then_some(fs)
        })
        .expect("no crash point leaves a redo file");
    assert!(
        files.len() >= 4,
        "expected segments, an archive, a head snapshot and the promise: {files:?}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let newest_segment = files
        .iter()
        .filter(|f| f.extension().is_none_or(|e| e != "zst" && e != "snap"))
        .filter(|f| f.parent() == Some(wal.as_path()))
        .max()
        .cloned();
    let snapshot_index =
        write_ahead_log::read_snapshot_index(&built, &write_ahead_log::head_snapshot_path(&wal))
            .unwrap()
            .unwrap();
    // `<first index>.wal.zst`, covered when the next segment starts at or below snapshot + 1.
    let firsts: Vec<u64> = files
        .iter()
        .filter_map(|f| f.file_name()?.to_str()?.split('.').next()?.parse().ok())
        .collect();
    let covered_archive = |f: &Path| {
        let name = f.file_name().unwrap().to_string_lossy();
        let Some(first) = name
            .strip_suffix(".wal.zst")
            .and_then(|n| n.parse::<u64>().ok())
        else {
            return false;
        };
        firsts
            .iter()
            .filter(|&&n| n > first)
            .min()
            .is_some_and(|&next| next <= snapshot_index + 1)
    };
    let mut refused = 0;
    let mut started_anyway = 0;
    let homes = files
        .iter()
        .map(|f| (f, &built))
        .chain(std::iter::once((&redo, &with_redo)));
    for (file, built) in homes {
        let len = built.contents(file).unwrap().len();
        // Small files: every byte. Large ones: 16 places spread over the file. In the newest
        // segment only its first half: its last record could pass for a write torn by a
        // crash, which recovery is right to cut.
        let span = if Some(file) == newest_segment.as_ref() {
            len / 2
        } else {
            len
        };
        let offsets: Vec<usize> = if span <= 64 {
            (0..span).collect()
        } else {
            (0..16).map(|i| i * span / 16).collect()
        };
        for offset in offsets {
            for bit in [0u8, 2, 5] {
                let fs = built.fork();
                fs.flip_bit(file, offset, bit).unwrap();
                let mut options = rarakoon_node::NodeOptions::default();
                options.fs = Arc::new(fs.clone());
                let started = rt.block_on(rarakoon_node::Node::start_with(
                    &config,
                    "n0",
                    &tmp.path().join("c.toml"),
                    options,
                ));
                let error = match started {
                    // An archive the head snapshot covers is not read at start-up (only to
                    // serve a peer's catch-up): starting is right.
                    Ok(node) if covered_archive(file) => {
                        rt.block_on(node.stop()).unwrap();
                        started_anyway += 1;
                        continue;
                    }
                    Ok(node) => {
                        rt.block_on(node.stop()).unwrap();
                        panic!(
                            "the node started with bit {bit} of byte {offset} of {} flipped",
                            file.display()
                        );
                    }
                    Err(e) => e.to_string(),
                };
                let name = file.file_name().unwrap().to_string_lossy().into_owned();
                assert!(
                    error.contains(&name),
                    "the error for damage in {} does not name the file: {error}",
                    file.display()
                );
                // The membership record is the same on every node: its repair is a copy.
                assert!(
                    error.contains("rarakoon-bin") || error.contains("copy `membership` from"),
                    "the error for damage in {} gives no repair command: {error}",
                    file.display()
                );
                refused += 1;
            }
        }
    }
    eprintln!(
        "{refused} damaged homes refused, {started_anyway} with damage only in archives the \
         snapshot covers started; files damaged: {files:?} and {}",
        redo.display()
    );
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().ends_with(".wal.zst")),
        "the script left no archive to damage"
    );
}
