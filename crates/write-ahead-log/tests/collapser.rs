//! The Collapser: threshold, archiving, pruning, idempotence, and crashes between its steps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use write_ahead_log::*;

fn collapser(threshold: u64, keep: usize) -> Collapser {
    Collapser::new(CollapserConfig {
        threshold_entries: threshold,
        segments_to_keep: keep,
        snapshot: snap_config(),
    })
}

/// A log of entries 1..=n, all synced, and the store with `committed` of them applied.
fn setup(seed: u64, n: u64, committed: u64, compressor: Compressor) -> (SimFs, Wal, TestStore) {
    let fs = SimFs::new(seed);
    let mut wal = open_sim(&fs, small_config(compressor)).unwrap();
    append_range(&mut wal, 1, n);
    let payloads: Vec<Vec<u8>> = (1..=n).map(payload).collect();
    (fs, wal, TestStore::from_log(&payloads, committed))
}

#[test]
fn collapser_triggers_on_threshold() {
    let (fs, mut wal, store) = setup(1, 20, 20, Compressor::Zstd);
    let outcome = collapser(10, 2).run_once(&mut wal, &store).unwrap();
    let CollapseOutcome::Collapsed { snapshot, .. } = outcome else {
        panic!("expected a collapse, got {outcome:?}");
    };
    assert_eq!((snapshot.index, snapshot.pairs), (20, 7));
    assert_eq!(
        read_snapshot_index(&fs, &head_snapshot_path(&dir())).unwrap(),
        Some(20)
    );
    drop(wal);
    fs.crash();
    let (wal, recovered) = recover_store(&fs, small_config(Compressor::Zstd)).unwrap();
    assert_eq!(recovered, store);
    assert_eq!(wal.last_index(), Some(20));
}

#[test]
fn collapser_no_op_below_threshold() {
    let (fs, mut wal, store) = setup(2, 10, 10, Compressor::Zstd);
    let before = file_names(&fs);
    let outcome = collapser(10, 1).run_once(&mut wal, &store).unwrap();
    assert_eq!(
        outcome,
        CollapseOutcome::NotNeeded {
            entries_since_snapshot: 10
        }
    );
    assert_eq!(
        file_names(&fs),
        before,
        "nothing written, archived or pruned"
    );
    // One more entry crosses the threshold.
    append_range(&mut wal, 11, 11);
    let payloads: Vec<Vec<u8>> = (1..=11).map(payload).collect();
    let store = TestStore::from_log(&payloads, 11);
    assert!(matches!(
        collapser(10, 1).run_once(&mut wal, &store).unwrap(),
        CollapseOutcome::Collapsed { .. }
    ));
}

#[test]
fn collapser_archives_old_segments() {
    let (fs, mut wal, store) = setup(3, 20, 20, Compressor::Zstd);
    let segments = wal.segment_starts().len();
    let outcome = collapser(5, 100).run_once(&mut wal, &store).unwrap();
    assert!(
        matches!(outcome, CollapseOutcome::Collapsed { archived, pruned: 0, .. } if archived == segments - 1),
        "{outcome:?}"
    );
    let names = file_names(&fs);
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".wal.zst")).count(),
        segments - 1,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".wal")).count(),
        1,
        "the newest stays raw"
    );
    assert_eq!(
        all_entries(&wal),
        (1..=20).map(|i| (i, payload(i))).collect::<Vec<_>>()
    );

    // With compressor = none nothing is archived.
    let (fs, mut wal, store) = setup(3, 20, 20, Compressor::None);
    let outcome = collapser(5, 100).run_once(&mut wal, &store).unwrap();
    assert!(matches!(
        outcome,
        CollapseOutcome::Collapsed { archived: 0, .. }
    ));
    assert!(file_names(&fs).iter().all(|n| !n.ends_with(".zst")));
}

#[test]
fn collapser_respects_segments_to_keep() {
    let (fs, mut wal, store) = setup(4, 24, 24, Compressor::Zstd);
    assert!(wal.segment_starts().len() > 3);
    let outcome = collapser(5, 3).run_once(&mut wal, &store).unwrap();
    assert!(matches!(outcome, CollapseOutcome::Collapsed { pruned, .. } if pruned > 0));
    assert_eq!(wal.segment_starts().len(), 3);
    assert_eq!(
        file_names(&fs)
            .iter()
            .filter(|n| n.contains(".wal"))
            .count(),
        3
    );

    // Zero to keep still keeps the newest segment.
    let (_fs, mut wal, store) = setup(4, 24, 24, Compressor::Zstd);
    collapser(5, 0).run_once(&mut wal, &store).unwrap();
    assert_eq!(wal.segment_starts().len(), 1);
    assert_eq!(wal.last_index(), Some(24));

    // Segments holding entries past the snapshot are never pruned, whatever the setting.
    let (_fs, mut wal, store) = setup(4, 24, 6, Compressor::Zstd);
    collapser(5, 1).run_once(&mut wal, &store).unwrap();
    assert!(
        wal.first_index().unwrap() <= 7,
        "entries after the snapshot stay: {:?}",
        wal.first_index()
    );
    assert_eq!(wal.last_index(), Some(24));
}

#[test]
fn collapser_idempotent() {
    let (fs, mut wal, store) = setup(5, 20, 20, Compressor::Zstd);
    let mut collapser = collapser(5, 2);
    assert!(matches!(
        collapser.run_once(&mut wal, &store).unwrap(),
        CollapseOutcome::Collapsed { .. }
    ));
    let names = file_names(&fs);
    let snapshot = fs.contents(&head_snapshot_path(&dir())).unwrap();
    let outcome = collapser.run_once(&mut wal, &store).unwrap();
    assert!(
        matches!(outcome, CollapseOutcome::NotNeeded { .. }),
        "{outcome:?}"
    );
    assert_eq!(file_names(&fs), names);
    assert_eq!(fs.contents(&head_snapshot_path(&dir())).unwrap(), snapshot);
    // A fresh Collapser (after a restart) agrees.
    let outcome = collapser.clone().run_once(&mut wal, &store).unwrap();
    assert!(matches!(outcome, CollapseOutcome::NotNeeded { .. }));
}

#[test]
fn collapser_force_ignores_threshold() {
    let (_fs, mut wal, store) = setup(6, 8, 8, Compressor::Zstd);
    let outcome = collapser(1000, 1).force(&mut wal, &store).unwrap();
    assert!(matches!(outcome, CollapseOutcome::Collapsed { .. }));
}

/// Crash at every mutating file-system call of a collapse (so between each pair of its steps
/// and inside them), with every torn-tail variant the seed produces: start-up always yields the
/// full store and a log that continues after it.
#[test]
fn collapser_crash_between_any_two_steps_recovers() {
    for compressor in [Compressor::Zstd, Compressor::None] {
        for steps in 0u64.. {
            let (fs, mut wal, store) = setup(7 + steps, 24, 20, compressor);
            // An earlier snapshot, so a crash can leave either the old or the new one.
            let payloads: Vec<Vec<u8>> = (1..=24).map(payload).collect();
            let old = TestStore::from_log(&payloads, 8);
            write_snapshot(&fs, &dir(), &old, &snap_config()).unwrap();
            fs.halt_after(steps);
            let result = collapser(3, 1).run_once(&mut wal, &store);
            let finished = result.is_ok() && !fs.halted();
            drop(wal);
            fs.crash();
            let (mut wal, recovered) = recover_store(&fs, small_config(compressor)).unwrap();
            assert_eq!(
                recovered,
                TestStore::from_log(&payloads, 24),
                "steps {steps}"
            );
            // The log still goes on.
            append_range(&mut wal, 25, 26);
            if finished {
                assert!(steps > 5, "the collapse has several steps");
                break;
            }
        }
    }
}

#[test]
fn collapse_in_two_halves_for_a_node_that_snapshots_off_thread() {
    let (fs, mut wal, store) = setup(8, 20, 20, Compressor::Zstd);
    let mut collapser = collapser(5, 1);
    assert_eq!(
        collapser.check(&wal, store.applied, false).unwrap(),
        (20, true)
    );
    assert_eq!(
        collapser.check(&wal, store.applied, true).unwrap(),
        (20, true)
    );
    // The snapshot is written without the log (e.g. on another thread).
    let snapshot = write_snapshot(&fs, &dir(), &store, collapser.snapshot_config()).unwrap();
    let outcome = collapser.finish_after_snapshot(&mut wal, snapshot).unwrap();
    assert!(matches!(outcome, CollapseOutcome::Collapsed { pruned, .. } if pruned > 0));
    assert_eq!(
        collapser.check(&wal, store.applied, false).unwrap(),
        (0, false)
    );
    assert!(
        !collapser.check(&wal, store.applied, true).unwrap().1,
        "store not ahead"
    );
    drop(wal);
    fs.crash();
    let (_wal, recovered) = recover_store(&fs, small_config(Compressor::Zstd)).unwrap();
    assert_eq!(recovered, store);
}
