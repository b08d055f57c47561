//! Integration tests of the log itself: append, read, roll, truncate, reset, recovery after a
//! crash, corruption reports and fatal fsync errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use write_ahead_log::*;

fn cfg() -> WalConfig {
    small_config(Compressor::Zstd)
}

#[test]
fn append_sync_read_and_reopen() {
    let fs = SimFs::new(1);
    let mut wal = open_sim(&fs, cfg()).unwrap();
    assert_eq!(
        (wal.first_index(), wal.last_index(), wal.next_index()),
        (None, None, None)
    );
    append_range(&mut wal, 1, 20);
    assert_eq!((wal.first_index(), wal.last_index()), (Some(1), Some(20)));
    assert!(
        wal.segment_starts().len() >= 4,
        "small segments roll: {:?}",
        wal.segment_starts()
    );
    let read = wal.read(3, 9, usize::MAX).unwrap();
    assert_eq!(
        read.iter().map(|e| e.index).collect::<Vec<_>>(),
        (3..=9).collect::<Vec<_>>()
    );
    for e in &read {
        assert_eq!(e.bytes.as_ref(), payload(e.index).as_slice());
    }
    drop(wal);
    fs.crash();
    let wal = open_sim(&fs, cfg()).unwrap();
    assert_eq!(
        all_entries(&wal),
        (1..=20).map(|i| (i, payload(i))).collect::<Vec<_>>()
    );
    assert_eq!(wal.recovery_report(), &RecoveryReport::default());
}

#[test]
fn read_respects_byte_budget_but_returns_at_least_one() {
    let fs = SimFs::new(2);
    let mut wal = open_sim(&fs, cfg()).unwrap();
    append_range(&mut wal, 1, 20);
    let one = wal.read(5, 20, 1).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].index, 5);
    let some = wal.read(5, 20, 60).unwrap();
    assert!(some.len() >= 2 && some.len() < 16, "{}", some.len());
    let total: usize = some[..some.len() - 1].iter().map(|e| e.bytes.len()).sum();
    assert!(total < 60);
    assert!(matches!(
        wal.read(21, 30, 100),
        Err(WalError::OutOfRange { index: 21, .. })
    ));
    assert!(matches!(
        wal.read(0, 3, 100),
        Err(WalError::OutOfRange { .. })
    ));
}

#[test]
fn unsynced_entries_are_lost_on_crash_but_synced_ones_survive() {
    let fs = SimFs::new(3);
    let mut wal = open_sim(&fs, cfg()).unwrap();
    append_range(&mut wal, 1, 6);
    let batch: Vec<(u64, Vec<u8>)> = (7..=8).map(|i| (i, payload(i))).collect();
    wal.append(batch).unwrap();
    assert_eq!(wal.durable_index(), Some(6));
    assert_eq!(wal.last_index(), Some(8));
    fs.crash();
    let wal = open_sim(&fs, cfg()).unwrap();
    let last = wal.last_index().unwrap();
    assert!((6..=8).contains(&last), "{last}");
    assert_eq!(
        all_entries(&wal),
        (1..=last).map(|i| (i, payload(i))).collect::<Vec<_>>()
    );
}

#[test]
fn refuses_gaps_and_oversized_entries() {
    let fs = SimFs::new(4);
    let mut wal = open_sim(&fs, cfg()).unwrap();
    append_range(&mut wal, 10, 12);
    let err = wal.append([(14u64, b"x".to_vec())]).unwrap_err();
    assert!(
        matches!(
            err,
            WalError::NonContiguous {
                expected: 13,
                got: 14
            }
        ),
        "{err}"
    );
    let err = wal.append([(13u64, vec![0u8; 2000])]).unwrap_err();
    assert!(matches!(
        err,
        WalError::EntryTooLarge {
            index: 13,
            len: 2000,
            max: 1024
        }
    ));
    // A refused entry in the middle of a batch keeps the ones before it.
    let err = wal
        .append([(13u64, b"a".to_vec()), (15, b"b".to_vec())])
        .unwrap_err();
    assert!(matches!(
        err,
        WalError::NonContiguous {
            expected: 14,
            got: 15
        }
    ));
    assert_eq!(wal.last_index(), Some(13));
    wal.sync().unwrap();
    // The handle is still usable after a refused entry.
    append_range(&mut wal, 14, 14);
}

#[test]
fn torn_tail_is_cut_and_reported() {
    let fs = SimFs::new(5);
    let mut wal = open_sim(&fs, cfg()).unwrap();
    append_range(&mut wal, 1, 10);
    let newest = wal.segment_starts().last().unwrap().0;
    drop(wal);
    let path = dir().join(raw_name(newest));
    let len = fs.contents(&path).unwrap().len() as u64;
    let last_record = 20 + payload(10).len() as u64;
    // A torn write: the last record lost its final 5 bytes.
    let mut file = fs.open_append(&path).unwrap();
    file.truncate(len - 5).unwrap();
    file.sync_data().unwrap();
    drop(file);
    let mut wal = open_sim(&fs, cfg()).unwrap();
    let torn = wal.recovery_report().torn_tail.clone().unwrap();
    assert_eq!(torn.path, path);
    assert_eq!(torn.offset, len - last_record);
    assert_eq!(torn.dropped_bytes, last_record - 5);
    assert_eq!(wal.last_index(), Some(9));
    append_range(&mut wal, 10, 12);
    drop(wal);
    let wal = open_sim(&fs, cfg()).unwrap();
    assert_eq!(
        all_entries(&wal),
        (1..=12).map(|i| (i, payload(i))).collect::<Vec<_>>()
    );
    assert_eq!(wal.recovery_report().torn_tail, None);
}

#[test]
fn corruption_in_an_older_segment_names_file_and_offset() {
    let fs = SimFs::new(6);
    let mut wal = open_sim(&fs, small_config(Compressor::None)).unwrap();
    append_range(&mut wal, 1, 20);
    let starts = wal.segment_starts();
    drop(wal);
    let path = dir().join(raw_name(starts[1].0));
    let data = fs.contents(&path).unwrap();
    // Damage the payload of the second record of the second segment.
    let second = 12 + u32::from_le_bytes(data[..4].try_into().unwrap()) as usize;
    fs.flip_bit(&path, second + 15, 3).unwrap();
    let err = open_sim(&fs, small_config(Compressor::None)).unwrap_err();
    match &err {
        WalError::CorruptSegment {
            path: p, offset, ..
        } => {
            assert_eq!(p, &path);
            assert_eq!(*offset, second as u64);
        }
        other => panic!("unexpected {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&raw_name(starts[1].0)) && text.contains(&second.to_string()),
        "{text}"
    );
}

#[test]
fn corruption_before_the_last_record_of_the_newest_segment_is_an_error() {
    let fs = SimFs::new(7);
    let mut wal = open_sim(&fs, cfg()).unwrap();
    append_range(&mut wal, 1, 3);
    drop(wal);
    let path = dir().join(raw_name(1));
    fs.flip_bit(&path, 2, 0).unwrap(); // the length field of the first record
    let err = open_sim(&fs, cfg()).unwrap_err();
    assert!(
        matches!(err, WalError::CorruptSegment { offset: 0, .. }),
        "{err}"
    );
}

#[test]
fn missing_segment_is_a_gap() {
    let fs = SimFs::new(8);
    let mut wal = open_sim(&fs, small_config(Compressor::None)).unwrap();
    append_range(&mut wal, 1, 20);
    let starts = wal.segment_starts();
    drop(wal);
    fs.remove_file(&dir().join(raw_name(starts[1].0))).unwrap();
    let err = open_sim(&fs, small_config(Compressor::None)).unwrap_err();
    assert!(
        matches!(err, WalError::Gap { expected, found, .. } if expected == starts[1].0 && found == starts[2].0),
        "{err}"
    );
}

#[test]
fn truncate_after_replaces_the_tail_across_segments_and_survives_crash() {
    let fs = SimFs::new(9);
    let mut wal = open_sim(&fs, cfg()).unwrap();
    append_range(&mut wal, 1, 20);
    let starts_before = wal.segment_starts().len();
    wal.truncate_after(6).unwrap();
    assert_eq!(wal.last_index(), Some(6));
    assert!(wal.segment_starts().len() < starts_before);
    let replaced: Vec<(u64, Vec<u8>)> = (7..=9)
        .map(|i| (i, format!("new-{i}").into_bytes()))
        .collect();
    wal.append_and_sync(replaced.clone()).unwrap();
    fs.crash();
    let wal = open_sim(&fs, cfg()).unwrap();
    let mut expected: Vec<(u64, Vec<u8>)> = (1..=6).map(|i| (i, payload(i))).collect();
    expected.extend(replaced);
    assert_eq!(all_entries(&wal), expected);
}

#[test]
fn truncate_everything_and_at_segment_boundaries() {
    let fs = SimFs::new(10);
    let mut wal = open_sim(&fs, cfg()).unwrap();
    append_range(&mut wal, 5, 24);
    let starts = wal.segment_starts();
    // Exactly at a boundary: keep the whole first segment.
    wal.truncate_after(starts[1].0 - 1).unwrap();
    assert_eq!(
        wal.segment_starts().len(),
        2,
        "an empty newest segment stays"
    );
    assert_eq!(wal.last_index(), Some(starts[1].0 - 1));
    // Drop every entry: the log remembers where it starts.
    wal.truncate_after(4).unwrap();
    assert_eq!(
        (wal.first_index(), wal.last_index(), wal.next_index()),
        (None, None, Some(5))
    );
    assert!(
        matches!(wal.truncate_after(9), Ok(())),
        "nothing after 9 is held: no-op"
    );
    let err = wal.truncate_after(2).unwrap_err();
    assert!(
        matches!(err, WalError::OutOfRange { index: 2, .. }),
        "the log starts at 5: {err}"
    );
    fs.crash();
    let mut wal = open_sim(&fs, cfg()).unwrap();
    assert_eq!(wal.next_index(), Some(5));
    append_range(&mut wal, 5, 6);
    assert_eq!(all_entries(&wal).len(), 2);
}

#[test]
fn truncate_refuses_archived_segments() {
    let fs = SimFs::new(11);
    let mut wal = open_sim(&fs, cfg()).unwrap();
    append_range(&mut wal, 1, 20);
    assert!(wal.archive_completed_segments(u64::MAX).unwrap() > 0);
    let err = wal.truncate_after(2).unwrap_err();
    assert!(
        matches!(err, WalError::TruncateArchived { index: 2, .. }),
        "{err}"
    );
    assert_eq!(wal.last_index(), Some(20), "nothing was removed");
}

#[test]
fn archives_are_read_back_transparently() {
    let fs = SimFs::new(12);
    let mut wal = open_sim(&fs, cfg()).unwrap();
    append_range(&mut wal, 1, 20);
    let archived = wal.archive_completed_segments(u64::MAX).unwrap();
    assert_eq!(archived, wal.segment_starts().len() - 1);
    let names = file_names(&fs);
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".wal.zst")).count(),
        archived
    );
    assert_eq!(names.iter().filter(|n| n.ends_with(".wal")).count(), 1);
    assert_eq!(
        all_entries(&wal),
        (1..=20).map(|i| (i, payload(i))).collect::<Vec<_>>()
    );
    drop(wal);
    fs.crash();
    let mut wal = open_sim(&fs, cfg()).unwrap();
    assert_eq!(
        all_entries(&wal),
        (1..=20).map(|i| (i, payload(i))).collect::<Vec<_>>()
    );
    assert_eq!(
        wal.read(2, 2, 1).unwrap()[0].bytes.as_ref(),
        payload(2).as_slice()
    );
    append_range(&mut wal, 21, 22);
}

#[test]
fn compressor_none_keeps_segments_raw() {
    let fs = SimFs::new(13);
    let mut wal = open_sim(&fs, small_config(Compressor::None)).unwrap();
    append_range(&mut wal, 1, 20);
    assert_eq!(wal.archive_completed_segments(u64::MAX).unwrap(), 0);
    assert!(file_names(&fs).iter().all(|n| n.ends_with(".wal")));
}

#[test]
fn damaged_archive_is_reported_with_its_file() {
    let fs = SimFs::new(14);
    let mut wal = open_sim(&fs, cfg()).unwrap();
    append_range(&mut wal, 1, 20);
    wal.archive_completed_segments(u64::MAX).unwrap();
    drop(wal);
    let path = dir().join(archive_name(1));
    let len = fs.contents(&path).unwrap().len();
    fs.flip_bit(&path, len / 2, 1).unwrap();
    let err = open_sim(&fs, cfg()).unwrap_err();
    assert!(
        matches!(&err, WalError::CorruptSegment { path: p, .. } if p == &path),
        "{err}"
    );
}

#[test]
fn interrupted_archiving_is_finished_on_open() {
    let fs = SimFs::new(15);
    let mut wal = open_sim(&fs, cfg()).unwrap();
    append_range(&mut wal, 1, 20);
    // Crash at every mutating step of archiving; reopening always gives the full log.
    for steps in 0.. {
        let fs_run = SimFs::new(15);
        let mut wal = open_sim(&fs_run, cfg()).unwrap();
        append_range(&mut wal, 1, 20);
        fs_run.halt_after(steps);
        let done = wal.archive_completed_segments(u64::MAX).is_ok() && !fs_run.halted();
        drop(wal);
        fs_run.crash();
        let wal = open_sim(&fs_run, cfg()).unwrap();
        assert_eq!(
            all_entries(&wal),
            (1..=20).map(|i| (i, payload(i))).collect::<Vec<_>>(),
            "steps {steps}"
        );
        let names = file_names(&fs_run);
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
        if done {
            break;
        }
    }
    drop(wal);
}

#[test]
fn reset_after_snapshot_restarts_the_log() {
    let fs = SimFs::new(16);
    let mut wal = open_sim(&fs, cfg()).unwrap();
    append_range(&mut wal, 1, 20);
    wal.archive_completed_segments(u64::MAX).unwrap();
    wal.reset_after_snapshot(100).unwrap();
    assert_eq!(
        (wal.first_index(), wal.last_index(), wal.next_index()),
        (None, None, Some(101))
    );
    assert_eq!(file_names(&fs), vec![raw_name(101)]);
    fs.crash();
    let mut wal = open_sim(&fs, cfg()).unwrap();
    assert_eq!(wal.next_index(), Some(101));
    let err = wal.append([(100u64, b"x".to_vec())]).unwrap_err();
    assert!(matches!(
        err,
        WalError::NonContiguous {
            expected: 101,
            got: 100
        }
    ));
    append_range(&mut wal, 101, 103);
    assert_eq!(wal.first_index(), Some(101));
}

#[test]
fn fsync_failure_is_fatal_to_the_handle() {
    let fs = SimFs::new(17);
    let mut wal = open_sim(&fs, cfg()).unwrap();
    append_range(&mut wal, 1, 2);
    wal.append([(3u64, payload(3))]).unwrap();
    fs.fail_sync(0, SimFault::Io);
    let err = wal.sync().unwrap_err();
    assert!(matches!(err, WalError::Io { op: "fsync", .. }), "{err}");
    for result in [
        wal.sync(),
        wal.append([(4u64, payload(4))]),
        wal.read(1, 2, 10).map(|_| ()),
        wal.truncate_after(1),
        wal.archive_completed_segments(u64::MAX).map(|_| ()),
    ] {
        let err = result.unwrap_err();
        assert!(
            matches!(&err, WalError::Failed(original) if original.contains("EIO")),
            "{err}"
        );
    }
    // Reopening recovers what was durable; entry 3's pages were dropped by the failed fsync.
    drop(wal);
    fs.crash();
    let wal = open_sim(&fs, cfg()).unwrap();
    assert_eq!(wal.last_index(), Some(2));
}

#[test]
fn write_failure_with_enospc_is_fatal_too() {
    let fs = SimFs::new(18);
    let mut wal = open_sim(&fs, cfg()).unwrap();
    append_range(&mut wal, 1, 2);
    fs.fail_write(0, SimFault::NoSpace);
    let err = wal.append([(3u64, payload(3))]).unwrap_err();
    match &err {
        WalError::Io { source, .. } => assert_eq!(source.kind(), std::io::ErrorKind::StorageFull),
        other => panic!("unexpected {other}"),
    }
    assert!(matches!(wal.sync(), Err(WalError::Failed(_))));
    drop(wal);
    let wal = open_sim(&fs, cfg()).unwrap();
    assert_eq!(wal.last_index(), Some(2));
}

#[test]
fn lost_directory_entry_of_a_new_segment_is_handled() {
    // A roll creates the file and fsyncs the directory before writing into it, so a crash
    // right after a roll leaves at most an empty newest segment.
    let fs = SimFs::new(19);
    let mut wal = open_sim(&fs, cfg()).unwrap();
    append_range(&mut wal, 1, 4);
    let ops = fs.mutating_ops();
    for steps in 0..6 {
        let fs_run = SimFs::new(19);
        let mut wal = open_sim(&fs_run, cfg()).unwrap();
        append_range(&mut wal, 1, 4);
        assert_eq!(fs_run.mutating_ops(), ops);
        fs_run.halt_after(steps);
        let _ = wal.append_and_sync((5..=8).map(|i| (i, payload(i))));
        drop(wal);
        fs_run.crash();
        let mut wal = open_sim(&fs_run, cfg()).unwrap();
        let last = wal.last_index().unwrap();
        assert!(last >= 4);
        assert_eq!(
            all_entries(&wal),
            (1..=last).map(|i| (i, payload(i))).collect::<Vec<_>>()
        );
        append_range(&mut wal, last + 1, last + 3);
    }
}

#[test]
fn real_file_system_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let fs: Arc<dyn FileSystem> = Arc::new(StdFs);
    let mut wal = Wal::open(Arc::clone(&fs), tmp.path(), cfg()).unwrap();
    append_range(&mut wal, 1, 30);
    wal.truncate_after(25).unwrap();
    append_range(&mut wal, 26, 27);
    wal.archive_completed_segments(u64::MAX).unwrap();
    drop(wal);
    let wal = Wal::open(fs, tmp.path(), cfg()).unwrap();
    assert_eq!(
        all_entries(&wal),
        (1..=27).map(|i| (i, payload(i))).collect::<Vec<_>>()
    );
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().any(|n| n.ends_with(".wal.zst")), "{names:?}");
}

#[test]
fn torn_tail_warning_names_file_offset_and_bytes() {
    use std::sync::Mutex;
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let fs = SimFs::new(20);
    let mut wal = open_sim(&fs, cfg()).unwrap();
    append_range(&mut wal, 1, 2);
    drop(wal);
    let path = dir().join(raw_name(1));
    let len = fs.contents(&path).unwrap().len() as u64;
    let mut file = fs.open_append(&path).unwrap();
    file.truncate(len - 3).unwrap();
    file.sync_data().unwrap();
    drop(file);

    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let wal = tracing::subscriber::with_default(subscriber, || open_sim(&fs, cfg()).unwrap());
    let torn = wal.recovery_report().torn_tail.clone().unwrap();
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("WARN"), "{log}");
    assert!(log.contains(&path.display().to_string()), "{log}");
    assert!(log.contains(&format!("offset={}", torn.offset)), "{log}");
    assert!(
        log.contains(&format!("dropped_bytes={}", torn.dropped_bytes)),
        "{log}"
    );
}

#[test]
fn many_small_reads_through_an_archive() {
    let fs = SimFs::new(21);
    let mut wal = open_sim(&fs, cfg()).unwrap();
    append_range(&mut wal, 1, 30);
    wal.archive_completed_segments(20).unwrap();
    assert!(
        wal.segment_starts()
            .iter()
            .filter(|(_, archived)| *archived)
            .count()
            >= 3
    );
    let mut next = 1;
    let mut seen = Vec::new();
    while next <= 30 {
        let batch = wal.read(next, 30, 1).unwrap();
        assert_eq!(batch.len(), 1);
        seen.extend(batch.iter().map(|e| (e.index, e.bytes.to_vec())));
        next = batch[0].index + 1;
    }
    assert_eq!(seen, (1..=30).map(|i| (i, payload(i))).collect::<Vec<_>>());
    wal.prune(20, 1).unwrap();
    assert!(wal.first_index().unwrap() > 1);
    let first = wal.first_index().unwrap();
    assert_eq!(
        wal.read(first, first, 1).unwrap()[0].bytes.as_ref(),
        payload(first).as_slice()
    );
}

#[test]
fn reopen_after_failed_fsync_without_a_reboot_does_not_see_lost_pages() {
    let fs = SimFs::new(22);
    let mut wal = open_sim(&fs, cfg()).unwrap();
    append_range(&mut wal, 1, 2);
    wal.append([(3u64, payload(3))]).unwrap();
    fs.fail_sync(0, SimFault::Io);
    assert!(wal.sync().is_err());
    drop(wal);
    // The process restarts but the machine does not: the page cache is still there.
    let mut wal = open_sim(&fs, cfg()).unwrap();
    assert_eq!(wal.last_index(), Some(2), "entry 3 was never durable");
    let replacement = b"three, again".to_vec();
    wal.append_and_sync([(3u64, replacement.clone())]).unwrap();
    append_range(&mut wal, 4, 5);
    drop(wal);
    fs.crash();
    let wal = open_sim(&fs, cfg()).unwrap();
    let mut expected = vec![(1, payload(1)), (2, payload(2)), (3, replacement)];
    expected.extend((4..=5).map(|i| (i, payload(i))));
    assert_eq!(all_entries(&wal), expected);
}
