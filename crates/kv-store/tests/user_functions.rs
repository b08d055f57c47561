//! User functions: lookup, results, failures, and rollback of their writes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use kv_store::{
    Store, StoreError, Transaction, UpdateResult, UserFunctionError, UserFunctionRegistry, samples,
};

#[test]
fn an_unknown_function_is_bad_input_with_arakoons_message() {
    let mut store = Store::default();
    let error = apply(&mut store, user_function("rarakoon.increment", Some("c"))).unwrap_err();
    assert_eq!(error.arakoon_code(), 0x26);
    assert_eq!(
        error.to_string(),
        "User function \"rarakoon.increment\" could not be found"
    );
}

#[test]
fn increment_counts_and_returns_the_new_value() {
    let mut store = store();
    for expected in ["1", "2", "3"] {
        let outcome = apply(
            &mut store,
            user_function(samples::INCREMENT, Some("counter")),
        );
        assert_eq!(outcome, Ok(UpdateResult::UserFunction(Some(b(expected)))));
    }
    assert_eq!(store.get(b"counter"), Some(b("3")));
}

#[test]
fn a_failing_function_is_0x81_with_its_message_and_changes_nothing() {
    let mut store = store_with(&[("counter", "not a number")]);
    let error = apply(
        &mut store,
        user_function(samples::INCREMENT, Some("counter")),
    )
    .unwrap_err();
    assert_eq!(error.arakoon_code(), 0x81);
    assert!(error.to_string().contains("not a decimal u64"), "{error}");
    assert_eq!(store.get(b"counter"), Some(b("not a number")));
    let error = apply(&mut store, user_function(samples::INCREMENT, None)).unwrap_err();
    assert_eq!(error.arakoon_code(), 0x81);
}

#[test]
fn rename_moves_a_value_and_reports_not_found() {
    let mut store = store_with(&[("from", "v")]);
    let outcome = apply(&mut store, user_function(samples::RENAME, Some("from\0to")));
    assert_eq!(outcome, Ok(UpdateResult::UserFunction(Some(b("v")))));
    assert_eq!(contents(&store), vec![("to".into(), "v".into())]);
    let error = apply(&mut store, user_function(samples::RENAME, Some("from\0to"))).unwrap_err();
    assert_eq!(error, StoreError::NotFound);
    assert_eq!(error.arakoon_code(), 0x05);
    assert_eq!(&*error.wire_message(), b"Not_found");
}

fn write_then_fail(
    tx: &mut Transaction<'_>,
    argument: Option<&[u8]>,
) -> Result<Option<Bytes>, UserFunctionError> {
    tx.set(b"scratch", b"1");
    tx.put(b"keep", None);
    tx.delete_prefix(b"p");
    match argument {
        Some(b"store-error") => Err(tx.delete(b"does not exist").unwrap_err().into()),
        Some(b"not-found") => Err(UserFunctionError::NotFound),
        _ => Err(UserFunctionError::Failed("gave up after writing".into())),
    }
}

fn registry() -> Arc<UserFunctionRegistry> {
    let mut registry = UserFunctionRegistry::new();
    samples::register_all(&mut registry);
    registry.register("write_then_fail", write_then_fail);
    Arc::new(registry)
}

#[test]
fn writes_of_a_failing_function_are_rolled_back() {
    let start = [("keep", "k"), ("p1", "x"), ("p2", "y")];
    for (argument, expected) in [
        (
            None,
            StoreError::UserFunctionFailed {
                name: b("write_then_fail"),
                message: "gave up after writing".into(),
            },
        ),
        (
            Some("store-error"),
            StoreError::KeyNotFound {
                key: b("does not exist"),
            },
        ),
        (Some("not-found"), StoreError::NotFound),
    ] {
        let mut store = store_with(&start);
        store.set_user_functions(registry());
        let before = store.stats();
        let error = apply(&mut store, user_function("write_then_fail", argument)).unwrap_err();
        assert_eq!(error, expected);
        assert_eq!(
            contents(&store),
            vec![
                ("keep".into(), "k".into()),
                ("p1".into(), "x".into()),
                ("p2".into(), "y".into())
            ]
        );
        assert_eq!(store.stats().payload_bytes, before.payload_bytes);
    }
}

#[test]
fn a_function_inside_a_sequence_shares_its_transaction() {
    let mut store = store_with(&[("c", "5")]);
    store.set_user_functions(registry());
    // The function sees the sequence's earlier write, and a later failure undoes its write.
    let failing = seq(vec![
        set("c", "41"),
        user_function(samples::INCREMENT, Some("c")),
        assert("c", Some("42")),
        delete("missing"),
    ]);
    assert_eq!(
        apply(&mut store, failing),
        Err(StoreError::KeyNotFound { key: b("missing") })
    );
    assert_eq!(store.get(b"c"), Some(b("5")));
    // A failing function aborts the sequence with its own error.
    let aborted = seq(vec![
        set("x", "1"),
        user_function("write_then_fail", None),
        set("y", "2"),
    ]);
    let error = apply(&mut store, aborted).unwrap_err();
    assert_eq!(error.arakoon_code(), 0x81);
    assert_eq!(contents(&store), vec![("c".into(), "5".into())]);
    // And a successful one commits with the rest; the sequence's result is unit.
    let ok = seq(vec![
        set("c", "41"),
        user_function(samples::INCREMENT, Some("c")),
    ]);
    assert_eq!(apply(&mut store, ok), Ok(UpdateResult::Unit));
    assert_eq!(store.get(b"c"), Some(b("42")));
}

#[test]
fn the_registry_lists_and_replaces_names() {
    let registry = registry();
    let names: Vec<&[u8]> = registry.names().collect();
    assert_eq!(
        names,
        vec![
            &b"rarakoon.increment"[..],
            b"rarakoon.rename",
            b"write_then_fail"
        ]
    );
    assert!(registry.lookup(b"nope").is_none());
    let mut replaced = (*registry).clone();
    replaced.register(samples::RENAME, write_then_fail);
    assert_eq!(replaced.names().count(), 3);
}

/// Reads inside a transaction see the transaction's own writes: writes a marker, then returns
/// the keys of the first two entries up and the first one down, joined by commas.
fn scan_after_write(
    tx: &mut Transaction<'_>,
    _: Option<&[u8]>,
) -> Result<Option<Bytes>, UserFunctionError> {
    tx.set(b"m", b"marker");
    let all = kv_store::KeyRange::all();
    let up: Vec<Bytes> = tx
        .range_entries(&all, 2)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let down: Vec<Bytes> = tx
        .rev_range_entries(&all, 1)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let keys: Vec<&[u8]> = up.iter().chain(down.iter()).map(AsRef::as_ref).collect();
    Ok(Some(Bytes::from(keys.join(&b","[..]))))
}

#[test]
fn functions_can_scan_and_see_their_own_writes() {
    let mut registry = UserFunctionRegistry::new();
    registry.register("scan_after_write", scan_after_write);
    let mut store = store_with(&[("a", "1"), ("z", "2")]);
    store.set_user_functions(Arc::new(registry));
    let outcome = apply(&mut store, user_function("scan_after_write", None));
    assert_eq!(outcome, Ok(UpdateResult::UserFunction(Some(b("a,m,z")))));
    assert_eq!(store.get(b"m"), Some(b("marker")));
}
