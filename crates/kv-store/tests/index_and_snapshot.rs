//! The applied index (never double-apply) and snapshots (index saved with the data).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use kv_store::{
    SnapshotError, SnapshotLoader, StaleIndex, Store, StoreError, UpdateResult,
    UserFunctionRegistry,
};

#[test]
fn a_fresh_store_has_applied_nothing() {
    let store = Store::default();
    assert_eq!(store.applied_index(), None);
    assert_eq!(store.stats().applied_index, None);
    assert_eq!(store.key_count(), 0);
    assert_eq!(store.check_index(0), Ok(()));
}

#[test]
fn applying_at_or_below_the_applied_index_is_refused_and_changes_nothing() {
    let mut store = store();
    store.apply(5, &set("a", "1")).unwrap().unwrap();
    assert_eq!(store.applied_index(), Some(5));
    for stale in [0, 4, 5] {
        assert_eq!(
            store.apply(stale, &set("a", "2")),
            Err(StaleIndex {
                index: stale,
                applied: 5
            })
        );
        assert_eq!(
            store.apply_batch(stale, &[set("b", "2")]),
            Err(StaleIndex {
                index: stale,
                applied: 5
            })
        );
    }
    assert_eq!(store.get(b"a"), Some(b("1")));
    assert!(!store.exists(b"b"));
    assert_eq!(store.applied_index(), Some(5));
    // Indices may skip forward.
    store.apply(9, &set("a", "3")).unwrap().unwrap();
    assert_eq!(store.applied_index(), Some(9));
}

#[test]
fn a_batch_gets_one_result_per_update_and_failures_are_per_update() {
    let mut store = store_with(&[("k", "v")]);
    let batch = vec![
        set("a", "1"),
        delete("missing"),
        tas("k", Some("v"), Some("w")),
        seq(vec![set("s", "1"), assert("k", Some("nope"))]),
        delete_prefix("a"),
        user_function("unknown", None),
        replace("r", Some("x")),
    ];
    let outcomes = store.apply_batch(1, &batch).unwrap();
    assert_eq!(
        outcomes,
        vec![
            Ok(UpdateResult::Unit),
            Err(StoreError::KeyNotFound { key: b("missing") }),
            Ok(UpdateResult::OldValue(Some(b("v")))),
            Err(StoreError::AssertionFailed { key: b("k") }),
            Ok(UpdateResult::Count(1)),
            Err(StoreError::UserFunctionNotFound { name: b("unknown") }),
            Ok(UpdateResult::OldValue(None)),
        ]
    );
    assert_eq!(
        contents(&store),
        vec![("k".into(), "w".into()), ("r".into(), "x".into())]
    );
    assert_eq!(store.applied_index(), Some(1));
}

#[test]
fn an_empty_batch_advances_the_index() {
    let mut store = store_with(&[("k", "v")]);
    assert_eq!(
        store.apply_batch(3, Vec::<kv_store::Update>::new()),
        Ok(vec![])
    );
    assert_eq!(store.applied_index(), Some(3));
    assert_eq!(store.key_count(), 1);
}

#[test]
fn batches_accept_owned_updates_too() {
    let mut store = store();
    let outcomes = store
        .apply_batch(0, vec![set("a", "1"), set("b", "2")])
        .unwrap();
    assert_eq!(outcomes.len(), 2);
    assert_eq!(store.key_count(), 2);
}

#[test]
fn snapshot_carries_the_index_and_all_pairs_in_key_order() {
    let mut store = store_with(&[("b", "2"), ("a", "1"), ("", "e"), ("\u{ff}", "x")]);
    store.apply(7, &set("c", "3")).unwrap().unwrap();
    let mut visited = Vec::new();
    store
        .for_each_pair(|key, value| -> std::io::Result<()> {
            visited.push((key.to_vec(), value.to_vec()));
            Ok(())
        })
        .unwrap();
    let keys: Vec<&[u8]> = visited.iter().map(|(k, _)| k.as_slice()).collect();
    assert_eq!(keys, vec![&b""[..], b"a", b"b", b"c", "\u{ff}".as_bytes()]);

    let pairs = visited
        .into_iter()
        .map(|(k, v)| (Bytes::from(k), Bytes::from(v)));
    let loaded = Store::from_snapshot(
        store.applied_index().unwrap(),
        pairs,
        Arc::new(UserFunctionRegistry::new()),
    )
    .unwrap();
    assert_eq!(loaded.applied_index(), Some(7));
    assert_eq!(contents(&loaded), contents(&store));
    assert_eq!(loaded.stats(), store.stats());
}

#[test]
fn a_loaded_store_refuses_indices_the_snapshot_covers() {
    let mut loaded = Store::from_snapshot(
        10,
        [(b("k"), b("v"))],
        Arc::new(UserFunctionRegistry::new()),
    )
    .unwrap();
    assert_eq!(
        loaded.apply(10, &delete("k")),
        Err(StaleIndex {
            index: 10,
            applied: 10
        })
    );
    assert_eq!(loaded.apply(11, &delete("k")), Ok(Ok(UpdateResult::Unit)));
}

#[test]
fn visiting_stops_at_the_first_error() {
    let store = store_with(&[("a", "1"), ("b", "2"), ("c", "3")]);
    let mut seen = 0;
    let result = store.for_each_pair(|key, _| {
        seen += 1;
        if key == b"b" {
            Err("disk full")
        } else {
            Ok(())
        }
    });
    assert_eq!(result, Err("disk full"));
    assert_eq!(seen, 2);
}

#[test]
fn a_snapshot_out_of_key_order_is_refused_with_its_position() {
    let registry = Arc::new(UserFunctionRegistry::new());
    let error = Store::from_snapshot(
        1,
        [(b("a"), b("")), (b("c"), b("")), (b("b"), b(""))],
        registry.clone(),
    )
    .unwrap_err();
    assert_eq!(
        error,
        SnapshotError::KeysOutOfOrder {
            position: 2,
            key: "b".into(),
            previous: "c".into()
        }
    );
    assert!(error.to_string().contains("pair #2"));
    let duplicate =
        Store::from_snapshot(1, [(b("a"), b("1")), (b("a"), b("2"))], registry).unwrap_err();
    assert!(matches!(
        duplicate,
        SnapshotError::KeysOutOfOrder { position: 1, .. }
    ));
}

#[test]
fn the_loader_takes_pairs_one_at_a_time() {
    let mut loader = SnapshotLoader::new(3);
    loader.push(b"", b"empty").unwrap();
    loader.push(b"a", b"1").unwrap();
    assert!(loader.push(b"a", b"again").is_err());
    loader.push(b"b\xff", b"").unwrap();
    let store = loader.finish(Arc::new(UserFunctionRegistry::new()));
    assert_eq!(store.applied_index(), Some(3));
    assert_eq!(store.key_count(), 3);
    assert_eq!(store.stats().payload_bytes, 5 + 2 + 2);
}
