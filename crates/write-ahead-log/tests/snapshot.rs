//! Head snapshots: round trip, validation of every byte, streaming to a peer, atomic install.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use common::*;
use proptest::prelude::*;
use write_ahead_log::*;

fn store_of(n: usize, value_len: usize) -> TestStore {
    let mut store = TestStore::default();
    for i in 0..n {
        store.pairs.insert(
            format!("key-{i:06}").into_bytes(),
            vec![(i % 251) as u8; value_len],
        );
    }
    store.applied = 42;
    store
}

type Pairs = BTreeMap<Vec<u8>, Vec<u8>>;

fn load(fs: &SimFs) -> Result<(SnapshotInfo, Pairs), WalError> {
    let mut pairs = BTreeMap::new();
    let info = load_snapshot(
        fs,
        &head_snapshot_path(&dir()),
        &snap_config(),
        &mut |k, v| {
            pairs.insert(k.to_vec(), v.to_vec());
            Ok(())
        },
    )?;
    Ok((info, pairs))
}

#[test]
fn write_then_load_round_trips() {
    let fs = SimFs::new(1);
    let store = store_of(100, 30);
    let info = write_snapshot(&fs, &dir(), &store, &snap_config()).unwrap();
    assert_eq!((info.index, info.pairs), (42, 100));
    assert_eq!(
        info.bytes,
        fs.contents(&head_snapshot_path(&dir())).unwrap().len() as u64
    );
    assert_eq!(
        read_snapshot_index(&fs, &head_snapshot_path(&dir())).unwrap(),
        Some(42)
    );
    let (loaded, pairs) = load(&fs).unwrap();
    assert_eq!(loaded, info);
    assert_eq!(pairs, store.pairs);
}

#[test]
fn empty_store_snapshot() {
    let fs = SimFs::new(2);
    let store = TestStore {
        applied: 7,
        ..TestStore::default()
    };
    write_snapshot(&fs, &dir(), &store, &snap_config()).unwrap();
    let (info, pairs) = load(&fs).unwrap();
    assert_eq!((info.index, info.pairs, pairs.len()), (7, 0, 0));
}

#[test]
fn every_single_bit_flip_is_detected() {
    let fs = SimFs::new(3);
    write_snapshot(&fs, &dir(), &store_of(20, 10), &snap_config()).unwrap();
    let path = head_snapshot_path(&dir());
    let len = fs.contents(&path).unwrap().len();
    for offset in 0..len {
        fs.flip_bit(&path, offset, (offset % 8) as u8).unwrap();
        let err = load(&fs).unwrap_err();
        assert!(
            matches!(&err, WalError::CorruptSnapshot { path: p, .. } if p == &path),
            "offset {offset}: {err}"
        );
        fs.flip_bit(&path, offset, (offset % 8) as u8).unwrap();
    }
    load(&fs).unwrap();
}

#[test]
fn every_truncation_is_detected() {
    let fs = SimFs::new(4);
    write_snapshot(&fs, &dir(), &store_of(20, 10), &snap_config()).unwrap();
    let full = fs.contents(&head_snapshot_path(&dir())).unwrap();
    for cut in 0..full.len() {
        let other = SimFs::new(4);
        let mut file = other.create(&head_snapshot_path(&dir())).unwrap();
        file.write_all(&full[..cut]).unwrap();
        drop(file);
        assert!(
            matches!(load(&other), Err(WalError::CorruptSnapshot { .. })),
            "cut {cut}"
        );
    }
}

#[test]
fn oversized_chunk_length_is_refused_before_allocating() {
    let fs = SimFs::new(5);
    write_snapshot(&fs, &dir(), &store_of(3, 10), &snap_config()).unwrap();
    let path = head_snapshot_path(&dir());
    // The first chunk's body_len field sits at 24 (header) + 1 (tag) + 4 (pair count).
    fs.flip_bit(&path, 24 + 1 + 4 + 3, 7).unwrap();
    let err = load(&fs).unwrap_err();
    assert!(
        err.to_string().contains("more than max_chunk_bytes"),
        "{err}"
    );
}

#[test]
fn writer_refuses_unordered_keys_and_huge_pairs() {
    struct Unordered;
    impl SnapshotSource for Unordered {
        fn applied_index(&self) -> u64 {
            1
        }
        fn for_each_pair(&self, sink: &mut PairSink<'_>) -> io::Result<()> {
            sink(b"b", b"1")?;
            sink(b"a", b"2")
        }
    }
    let fs = SimFs::new(6);
    let err = write_snapshot(&fs, &dir(), &Unordered, &snap_config()).unwrap_err();
    assert!(matches!(err, WalError::KeysOutOfOrder { .. }), "{err}");
    let big = store_of(1, 5000);
    let err = write_snapshot(&fs, &dir(), &big, &snap_config()).unwrap_err();
    assert!(
        matches!(err, WalError::PairTooLarge { max: 4096, .. }),
        "{err}"
    );
    assert!(
        !fs.exists(&head_snapshot_path(&dir())).unwrap(),
        "no snapshot was installed"
    );
}

#[test]
fn crash_while_writing_keeps_the_previous_snapshot() {
    let first = store_of(10, 8);
    let mut second = store_of(30, 8);
    second.applied = 99;
    for steps in 0.. {
        let fs = SimFs::new(7);
        write_snapshot(&fs, &dir(), &first, &snap_config()).unwrap();
        fs.halt_after(steps);
        let done = write_snapshot(&fs, &dir(), &second, &snap_config()).is_ok();
        fs.crash();
        let (info, pairs) = load(&fs).unwrap();
        if info.index == 42 {
            assert_eq!(pairs, first.pairs);
        } else {
            assert_eq!((info.index, pairs), (99, second.pairs.clone()));
        }
        if done {
            assert_eq!(info.index, 99, "a finished write is durable");
            break;
        }
    }
}

#[test]
fn stream_to_a_peer_and_install() {
    let source = SimFs::new(8);
    let store = store_of(200, 40);
    let written = write_snapshot(&source, &dir(), &store, &snap_config()).unwrap();
    let mut stream = SnapshotStream::open(&source, &dir()).unwrap().unwrap();
    assert_eq!(stream.index(), 42);
    assert_eq!(stream.total_len(), written.bytes);

    let target = SimFs::new(9);
    let target_arc: Arc<dyn FileSystem> = Arc::new(target.clone());
    let peer_dir = std::path::PathBuf::from("/peer/wal");
    let mut receiver =
        SnapshotReceiver::begin(Arc::clone(&target_arc), &peer_dir, snap_config()).unwrap();
    let mut chunks = 0;
    while let Some(chunk) = stream.next_chunk(1000).unwrap() {
        assert!(chunk.len() <= 1000);
        receiver.push(&chunk).unwrap();
        chunks += 1;
    }
    assert!(chunks > 5);
    let info = receiver.finish().unwrap();
    assert_eq!(info, written);
    target.crash();
    let mut pairs = BTreeMap::new();
    load_snapshot(
        &target,
        &head_snapshot_path(&peer_dir),
        &snap_config(),
        &mut |k, v| {
            pairs.insert(k.to_vec(), v.to_vec());
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(pairs, store.pairs);
    // The log restarts after the snapshot.
    let mut wal = Wal::open(target_arc, &peer_dir, small_config(Compressor::Zstd)).unwrap();
    wal.reset_after_snapshot(info.index).unwrap();
    assert_eq!(wal.next_index(), Some(43));
}

#[test]
fn receiver_refuses_damaged_or_oversized_snapshots() {
    let source = SimFs::new(10);
    write_snapshot(&source, &dir(), &store_of(50, 20), &snap_config()).unwrap();
    let mut bytes = source.contents(&head_snapshot_path(&dir())).unwrap();
    let target = SimFs::new(11);
    let target_arc: Arc<dyn FileSystem> = Arc::new(target.clone());
    // A previous, good snapshot stays in place.
    write_snapshot(&target, &dir(), &store_of(1, 1), &snap_config()).unwrap();

    bytes[500] ^= 0x10;
    let mut receiver =
        SnapshotReceiver::begin(Arc::clone(&target_arc), &dir(), snap_config()).unwrap();
    receiver.push(&bytes).unwrap();
    let err = receiver.finish().unwrap_err();
    assert!(matches!(err, WalError::CorruptSnapshot { .. }), "{err}");
    assert_eq!(load(&target).unwrap().0.pairs, 1);
    assert_eq!(file_names(&target), vec![HEAD_SNAPSHOT.to_owned()]);

    let small = SnapshotConfig {
        max_snapshot_bytes: 100,
        ..snap_config()
    };
    let mut receiver = SnapshotReceiver::begin(target_arc, &dir(), small).unwrap();
    let err = receiver.push(&bytes).unwrap_err();
    assert!(matches!(err, WalError::SnapshotTooLarge { max: 100 }));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn any_store_round_trips(
        pairs in proptest::collection::btree_map(
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::collection::vec(any::<u8>(), 0..300),
            0..60,
        ),
        index in any::<u64>(),
    ) {
        let fs = SimFs::new(12);
        let store = TestStore { pairs, applied: index };
        write_snapshot(&fs, &dir(), &store, &snap_config()).unwrap();
        let (info, loaded) = load(&fs).unwrap();
        prop_assert_eq!(info.index, index);
        prop_assert_eq!(loaded, store.pairs);
    }
}

#[test]
fn reader_knows_the_index_before_the_pairs() {
    let fs = SimFs::new(13);
    let store = store_of(10, 5);
    write_snapshot(&fs, &dir(), &store, &snap_config()).unwrap();
    let reader = SnapshotReader::open(&fs, &head_snapshot_path(&dir()), &snap_config()).unwrap();
    assert_eq!(reader.index(), 42);
    let mut count = 0;
    let info = reader
        .read_pairs(&mut |_, _| {
            count += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!((info.pairs, count), (10, 10));

    // recover_with hands the same reader to the node.
    let fs_arc: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let mut seen_index = None;
    let recovered = recover_with(
        fs_arc,
        &dir(),
        small_config(Compressor::Zstd),
        &snap_config(),
        &mut |reader| {
            seen_index = Some(reader.index());
            reader.read_pairs(&mut |_, _| Ok(()))
        },
    )
    .unwrap();
    assert_eq!(seen_index, Some(42));
    assert_eq!(
        recovered.wal.next_index(),
        Some(43),
        "the log restarts after the snapshot"
    );
}

#[test]
fn sink_errors_stop_loading_and_name_the_file() {
    let fs = SimFs::new(14);
    write_snapshot(&fs, &dir(), &store_of(10, 5), &snap_config()).unwrap();
    let err = load_snapshot(
        &fs,
        &head_snapshot_path(&dir()),
        &snap_config(),
        &mut |_, _| Err(io::Error::other("store is full")),
    )
    .unwrap_err();
    assert!(matches!(&err, WalError::Sink { path, .. } if path == &head_snapshot_path(&dir())));
    assert!(err.to_string().contains("store is full"), "{err}");
}

#[test]
fn crash_while_installing_a_received_snapshot_keeps_one_valid_snapshot() {
    let source = SimFs::new(15);
    let mut newer = store_of(40, 12);
    newer.applied = 77;
    write_snapshot(&source, &dir(), &newer, &snap_config()).unwrap();
    let bytes = source.contents(&head_snapshot_path(&dir())).unwrap();
    let older = store_of(5, 3);
    for steps in 0u64.. {
        let target = SimFs::new(16 + steps);
        write_snapshot(&target, &dir(), &older, &snap_config()).unwrap();
        let target_arc: Arc<dyn FileSystem> = Arc::new(target.clone());
        target.halt_after(steps);
        let finished = SnapshotReceiver::begin(target_arc, &dir(), snap_config())
            .and_then(|mut receiver| {
                for chunk in bytes.chunks(100) {
                    receiver.push(chunk)?;
                }
                receiver.finish()
            })
            .is_ok();
        target.crash();
        let (info, pairs) = load(&target).unwrap();
        match info.index {
            42 => assert_eq!(pairs, older.pairs),
            77 => assert_eq!(pairs, newer.pairs),
            other => panic!("unexpected snapshot index {other}"),
        }
        if finished {
            assert_eq!(info.index, 77, "an installed snapshot is durable");
            // Opening the log cleans up nothing but temp files; the restart marker stays until
            // the log restarts after the snapshot.
            let target_arc: Arc<dyn FileSystem> = Arc::new(target.clone());
            let mut wal = Wal::open(target_arc, dir(), small_config(Compressor::Zstd)).unwrap();
            assert_eq!(
                file_names(&target),
                vec![HEAD_SNAPSHOT.to_owned(), RESTART_MARKER.to_owned()]
            );
            wal.reset_after_snapshot(77).unwrap();
            assert_eq!(
                file_names(&target),
                vec![raw_name(78), HEAD_SNAPSHOT.to_owned()]
            );
            break;
        }
    }
}

#[test]
fn receiver_refuses_a_bad_header_at_once_and_stream_can_seek() {
    let source = SimFs::new(17);
    write_snapshot(&source, &dir(), &store_of(30, 20), &snap_config()).unwrap();
    let bytes = source.contents(&head_snapshot_path(&dir())).unwrap();

    let target: Arc<dyn FileSystem> = Arc::new(SimFs::new(18));
    let mut receiver = SnapshotReceiver::begin(target, &dir(), snap_config()).unwrap();
    receiver.push(b"NOT A SNAPSHOT").unwrap(); // header not complete yet
    let err = receiver.push(&[0u8; 20]).unwrap_err();
    assert!(err.to_string().contains("bad magic"), "{err}");

    let mut stream = SnapshotStream::open(&source, &dir()).unwrap().unwrap();
    stream.seek(100).unwrap();
    assert_eq!(stream.position(), 100);
    let chunk = stream.next_chunk(50).unwrap().unwrap();
    assert_eq!(chunk, bytes[100..150]);
    assert_eq!(stream.position(), 150);
    assert!(stream.seek(bytes.len() as u64 + 1).is_err());
    stream.seek(bytes.len() as u64).unwrap();
    assert_eq!(stream.next_chunk(10).unwrap(), None);
}
