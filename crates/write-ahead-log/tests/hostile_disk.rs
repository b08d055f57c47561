//! Disk contents nobody wrote through this crate (damage, foreign files, extreme values) are
//! refused with a typed error naming the file, never a panic or an unbounded allocation; and
//! the Collapser never archives a segment the log may still have to replace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use write_ahead_log::*;

/// Writes `bytes` durably as `name` in the log directory, bypassing the log.
fn plant(fs: &SimFs, name: &str, bytes: &[u8]) {
    fs.create_dir_all(&dir()).unwrap();
    let path = dir().join(name);
    let mut file = fs.create(&path).unwrap();
    file.write_all(bytes).unwrap();
    file.sync_data().unwrap();
    drop(file);
    fs.sync_dir(&dir()).unwrap();
}

/// One record in the log's format (length, payload CRC, header CRC, index, bytes).
fn record(index: u64, bytes: &[u8]) -> Vec<u8> {
    let mut payload = index.to_le_bytes().to_vec();
    payload.extend_from_slice(bytes);
    let mut out = Vec::new();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    let header_crc = crc32c::crc32c(&out);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

#[test]
fn raw_segment_longer_than_max_segment_bytes_is_refused_before_reading() {
    let fs = SimFs::new(90);
    let config = small_config(Compressor::None);
    let too_long = vec![0u8; config.max_segment_bytes as usize + 1];
    plant(&fs, &raw_name(1), &too_long);
    let err = open_sim(&fs, config).unwrap_err();
    match &err {
        WalError::CorruptSegment { path, reason, .. } => {
            assert!(path.ends_with(raw_name(1)), "{err}");
            assert!(reason.contains("max_segment_bytes"), "{err}");
        }
        other => panic!("expected CorruptSegment, got {other:?}"),
    }
}

#[test]
fn record_at_index_u64_max_is_corruption_not_an_overflow() {
    let fs = SimFs::new(91);
    plant(&fs, &raw_name(u64::MAX), &record(u64::MAX, b"x"));
    let err = open_sim(&fs, small_config(Compressor::None)).unwrap_err();
    match &err {
        WalError::CorruptSegment { path, offset, .. } => {
            assert!(path.ends_with(raw_name(u64::MAX)), "{err}");
            assert_eq!(*offset, 0);
        }
        other => panic!("expected CorruptSegment, got {other:?}"),
    }
}

#[test]
fn append_at_index_u64_max_is_refused() {
    let fs = SimFs::new(92);
    // An empty segment named u64::MAX makes that the next index.
    plant(&fs, &raw_name(u64::MAX), &[]);
    let mut wal = open_sim(&fs, small_config(Compressor::None)).unwrap();
    assert_eq!(wal.next_index(), Some(u64::MAX));
    let err = wal
        .append_and_sync([(u64::MAX, b"x".as_slice())])
        .unwrap_err();
    assert!(
        matches!(
            err,
            WalError::OutOfRange {
                index: u64::MAX,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn snapshot_at_index_u64_max_is_refused_and_reset_cannot_overflow() {
    let fs = SimFs::new(93);
    let mut wal = open_sim(&fs, small_config(Compressor::None)).unwrap();
    append_range(&mut wal, 1, 3);
    let store = TestStore {
        applied: u64::MAX,
        ..TestStore::default()
    };
    write_snapshot(&fs, &dir(), &store, &snap_config()).unwrap();
    let head = head_snapshot_path(&dir());
    let err = read_snapshot_index(&fs, &head).unwrap_err();
    assert!(
        matches!(&err, WalError::CorruptSnapshot { path, offset: 12, .. } if path == &head),
        "{err:?}"
    );
    let err = load_snapshot(&fs, &head, &snap_config(), &mut |_, _| Ok(())).unwrap_err();
    assert!(matches!(err, WalError::CorruptSnapshot { .. }), "{err:?}");
    // The log refuses a restart it could not represent, and keeps its entries.
    let err = wal.reset_after_snapshot(u64::MAX).unwrap_err();
    assert!(matches!(err, WalError::OutOfRange { .. }), "{err:?}");
    assert_eq!(wal.last_index(), Some(3));
    drop(wal);
    // Start-up reports the bad snapshot instead of panicking.
    assert!(matches!(
        recover_store(&fs, small_config(Compressor::None)),
        Err(WalError::CorruptSnapshot { .. })
    ));
}

/// The node's concern: if the Collapser archived a segment holding entries past the snapshot
/// (possibly uncommitted), Paxos overwriting them would fail with `TruncateArchived`. It only
/// archives segments wholly at or below the snapshot index, so the tail stays replaceable.
#[test]
fn collapser_never_archives_past_the_snapshot_so_the_tail_stays_replaceable() {
    let fs = SimFs::new(94);
    let mut wal = open_sim(&fs, small_config(Compressor::Zstd)).unwrap();
    append_range(&mut wal, 1, 30);
    let payloads: Vec<Vec<u8>> = (1..=30).map(payload).collect();
    let starts = wal.segment_starts();
    assert!(starts.len() >= 6, "{starts:?}");
    // Commit up to the middle of a segment: that segment must stay raw.
    let (mid_first, _) = starts[starts.len() / 2];
    let committed = mid_first + 1;
    let store = TestStore::from_log(&payloads, committed);
    let outcome = Collapser::new(CollapserConfig {
        threshold_entries: 1,
        segments_to_keep: 100,
        snapshot: snap_config(),
    })
    .force(&mut wal, &store)
    .unwrap();
    let CollapseOutcome::Collapsed { archived, .. } = outcome else {
        panic!("expected a collapse, got {outcome:?}");
    };
    assert!(
        archived > 0,
        "some segments below the snapshot are archived"
    );
    let starts = wal.segment_starts();
    let next_starts: Vec<u64> = starts.iter().skip(1).map(|&(f, _)| f).collect();
    for (&(first, is_archived), next) in starts
        .iter()
        .zip(next_starts.iter().map(Some).chain([None]))
    {
        let last_here = next.map_or(30, |n| n - 1);
        if is_archived {
            assert!(
                last_here <= committed,
                "segment {first}..={last_here} archived past the snapshot at {committed}"
            );
        }
    }
    // Paxos overwrites everything after the committed index.
    wal.truncate_after(committed).unwrap();
    let replacement: Vec<(u64, Vec<u8>)> = (committed + 1..=committed + 3)
        .map(|i| (i, payload(i + 100)))
        .collect();
    wal.append_and_sync(replacement).unwrap();
    assert_eq!(wal.last_index(), Some(committed + 3));
    // Cutting into the archived, committed part is still refused.
    assert!(matches!(
        wal.truncate_after(1),
        Err(WalError::TruncateArchived { .. })
    ));
    drop(wal);
    fs.crash();
    let (wal, recovered) = recover_store(&fs, small_config(Compressor::Zstd))
        .unwrap_or_else(|e| panic!("reopen after the overwrite: {e}"));
    assert_eq!(wal.last_index(), Some(committed + 3));
    assert_eq!(recovered.applied, committed + 3);
}
