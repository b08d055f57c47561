//! Every update kind with Arakoon's semantics (docs/protocol.md §7.2, §8.1).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::*;
use kv_store::{MAX_SEQUENCE_DEPTH, StoreError, Update, UpdateResult};

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn set_stores_and_overwrites() {
    let mut store = store();
    assert_eq!(apply(&mut store, set("k", "v")), Ok(UpdateResult::Unit));
    assert_eq!(apply(&mut store, set("k", "w")), Ok(UpdateResult::Unit));
    assert_eq!(store.get(b"k"), Some(b("w")));
    assert_eq!(store.key_count(), 1);
}

#[test]
fn binary_and_empty_keys_and_values_are_ordinary() {
    let mut store = store();
    let key = Bytes::from_static(b"\x00\xff");
    apply(
        &mut store,
        Update::Set {
            key: key.clone(),
            value: Bytes::new(),
        },
    )
    .unwrap();
    apply(
        &mut store,
        Update::Set {
            key: Bytes::new(),
            value: Bytes::from_static(b"\x00"),
        },
    )
    .unwrap();
    assert_eq!(store.get(&key), Some(Bytes::new()));
    assert_eq!(store.get(b""), Some(Bytes::from_static(b"\x00")));
    assert_eq!(store.key_count(), 2);
}

#[test]
fn delete_of_a_missing_key_is_not_found_with_the_key() {
    let mut store = store_with(&[("a", "1")]);
    assert_eq!(apply(&mut store, delete("a")), Ok(UpdateResult::Unit));
    let error = apply(&mut store, delete("a")).unwrap_err();
    assert_eq!(error, StoreError::KeyNotFound { key: b("a") });
    assert_eq!(error.arakoon_code(), 0x05);
    assert_eq!(&*error.wire_message(), b"a");
    assert_eq!(store.key_count(), 0);
}

#[test]
fn test_and_set_returns_the_value_before_and_writes_only_on_a_match() {
    let mut store = store();
    // None == None: absent key, expected absent -> written.
    assert_eq!(
        apply(&mut store, tas("k", None, Some("1"))),
        Ok(UpdateResult::OldValue(None))
    );
    assert_eq!(store.get(b"k"), Some(b("1")));
    // Mismatch: not written, old value returned, never an error.
    assert_eq!(
        apply(&mut store, tas("k", Some("x"), Some("2"))),
        Ok(UpdateResult::OldValue(ob(Some("1"))))
    );
    assert_eq!(store.get(b"k"), Some(b("1")));
    assert_eq!(
        apply(&mut store, tas("k", None, Some("2"))),
        Ok(UpdateResult::OldValue(ob(Some("1"))))
    );
    assert_eq!(store.get(b"k"), Some(b("1")));
    // Match: written.
    assert_eq!(
        apply(&mut store, tas("k", Some("1"), Some("2"))),
        Ok(UpdateResult::OldValue(ob(Some("1"))))
    );
    assert_eq!(store.get(b"k"), Some(b("2")));
    // wanted = None deletes.
    assert_eq!(
        apply(&mut store, tas("k", Some("2"), None)),
        Ok(UpdateResult::OldValue(ob(Some("2"))))
    );
    assert!(!store.exists(b"k"));
    // Absent key, expected something: nothing happens.
    assert_eq!(
        apply(&mut store, tas("k", Some("2"), Some("3"))),
        Ok(UpdateResult::OldValue(None))
    );
    assert!(!store.exists(b"k"));
}

#[test]
fn replace_writes_unconditionally_and_returns_the_previous_value() {
    let mut store = store();
    assert_eq!(
        apply(&mut store, replace("k", Some("1"))),
        Ok(UpdateResult::OldValue(None))
    );
    assert_eq!(
        apply(&mut store, replace("k", Some("2"))),
        Ok(UpdateResult::OldValue(ob(Some("1"))))
    );
    assert_eq!(
        apply(&mut store, replace("k", None)),
        Ok(UpdateResult::OldValue(ob(Some("2"))))
    );
    assert!(!store.exists(b"k"));
    assert_eq!(
        apply(&mut store, replace("k", None)),
        Ok(UpdateResult::OldValue(None))
    );
}

#[test]
fn asserts_check_without_writing() {
    let mut store = store_with(&[("k", "v")]);
    assert_eq!(
        apply(&mut store, assert("k", Some("v"))),
        Ok(UpdateResult::Unit)
    );
    assert_eq!(
        apply(&mut store, assert("absent", None)),
        Ok(UpdateResult::Unit)
    );
    assert_eq!(
        apply(&mut store, assert_exists("k")),
        Ok(UpdateResult::Unit)
    );
    for failing in [
        assert("k", Some("w")),
        assert("k", None),
        assert("absent", Some("v")),
    ] {
        let error = apply(&mut store, failing).unwrap_err();
        assert_eq!(error.arakoon_code(), 0x07);
    }
    let error = apply(&mut store, assert_exists("absent")).unwrap_err();
    assert_eq!(error, StoreError::AssertionFailed { key: b("absent") });
    assert_eq!(&*error.wire_message(), b"absent");
    // The read-only forms (opcodes 0x16, 0x29) agree.
    assert_eq!(store.assert(b"k", Some(b"v")), Ok(()));
    assert_eq!(
        store.assert(b"k", None),
        Err(StoreError::AssertionFailed { key: b("k") })
    );
    assert_eq!(
        store.assert_exists(b"absent"),
        Err(StoreError::AssertionFailed { key: b("absent") })
    );
    assert_eq!(contents(&store), pairs(&[("k", "v")]));
}

#[test]
fn delete_prefix_returns_the_count() {
    let mut store = store_with(&[("a", "1"), ("ab", "2"), ("abc", "3"), ("b", "4")]);
    assert_eq!(
        apply(&mut store, delete_prefix("ab")),
        Ok(UpdateResult::Count(2))
    );
    assert_eq!(contents(&store), pairs(&[("a", "1"), ("b", "4")]));
    assert_eq!(
        apply(&mut store, delete_prefix("zz")),
        Ok(UpdateResult::Count(0))
    );
    assert_eq!(
        apply(&mut store, delete_prefix("")),
        Ok(UpdateResult::Count(2))
    );
    assert_eq!(store.key_count(), 0);
}

#[test]
fn nop_changes_nothing_but_the_index() {
    let mut store = store_with(&[("a", "1")]);
    assert_eq!(apply(&mut store, Update::Nop), Ok(UpdateResult::Unit));
    assert_eq!(store.applied_index(), Some(1));
    assert_eq!(contents(&store), pairs(&[("a", "1")]));
}

#[test]
fn assert_range_passes_only_for_the_descending_wire_list() {
    let mut store = store_with(&[("p1", ""), ("p2", ""), ("p3", ""), ("q", "")]);
    assert_eq!(
        apply(&mut store, assert_range("p", &["p3", "p2", "p1"])),
        Ok(UpdateResult::Unit)
    );
    // The ascending list fails, as it does in Arakoon.
    let error = apply(&mut store, assert_range("p", &["p1", "p2", "p3"])).unwrap_err();
    assert_eq!(error.arakoon_code(), 0x07);
    assert_eq!(
        error.to_string(),
        "ContainsExactly [ \"p3; p2; p1\" ] actual: p1,p2,p3"
    );
    // Missing and extra keys fail.
    let error = apply(&mut store, assert_range("p", &["p2", "p1"])).unwrap_err();
    assert_eq!(
        error.to_string(),
        "ContainsExactly [ \"p1; p2\" ] actual: p1,p2,p3"
    );
    assert!(apply(&mut store, assert_range("p", &["p4", "p3", "p2", "p1"])).is_err());
    // An empty prefix range.
    assert_eq!(
        apply(&mut store, assert_range("z", &[])),
        Ok(UpdateResult::Unit)
    );
    assert!(apply(&mut store, assert_range("q", &[])).is_err());
}

#[test]
fn a_sequence_applies_in_order_and_each_part_sees_the_earlier_ones() {
    let mut store = store_with(&[("b", "old")]);
    let sequence = seq(vec![
        set("a", "1"),
        assert("a", Some("1")),
        delete("b"),
        assert("b", None),
        tas("a", Some("1"), Some("2")),
        replace("c", Some("3")),
        Update::Nop,
        assert_range("", &["c", "a"]),
        delete_prefix("c"),
        seq(vec![set("d", "4"), assert_exists("d")]),
    ]);
    assert_eq!(apply(&mut store, sequence), Ok(UpdateResult::Unit));
    assert_eq!(contents(&store), pairs(&[("a", "2"), ("d", "4")]));
    assert_eq!(apply(&mut store, seq(vec![])), Ok(UpdateResult::Unit));
}

#[test]
fn a_failing_sequence_leaves_the_store_unchanged() {
    let start = [("a", "1"), ("b", "2"), ("pre1", "x"), ("pre2", "y")];
    let cases: Vec<(Update, StoreError)> = vec![
        (
            seq(vec![
                set("a", "changed"),
                set("new", "n"),
                delete("missing"),
                set("z", "never"),
            ]),
            StoreError::KeyNotFound { key: b("missing") },
        ),
        (
            seq(vec![
                delete("a"),
                delete_prefix("pre"),
                replace("b", None),
                assert("b", Some("2")),
            ]),
            StoreError::AssertionFailed { key: b("b") },
        ),
        (
            seq(vec![
                tas("a", Some("1"), Some("t")),
                seq(vec![set("in", "1"), assert_exists("nope")]),
            ]),
            StoreError::AssertionFailed { key: b("nope") },
        ),
        (
            seq(vec![
                set("pre3", "z"),
                assert_range("pre", &["pre2", "pre1"]),
            ]),
            StoreError::AssertRangeFailed {
                expected: vec![b("pre1"), b("pre2")],
                actual: vec![b("pre1"), b("pre2"), b("pre3")],
            },
        ),
        (
            seq(vec![set("c", "3"), user_function("no.such.function", None)]),
            StoreError::UserFunctionNotFound {
                name: b("no.such.function"),
            },
        ),
    ];
    for (update, expected_error) in cases {
        let mut store = store_with(&start);
        let before = store.stats();
        let outcome = apply(&mut store, update.clone());
        assert_eq!(outcome, Err(expected_error), "{update:?}");
        assert_eq!(contents(&store), pairs(&start), "{update:?}");
        assert_eq!(store.stats().payload_bytes, before.payload_bytes);
        // The failed update still consumed its log index.
        assert_eq!(store.applied_index(), Some(1));
    }
}

#[test]
fn too_deep_nesting_is_refused_not_a_stack_overflow() {
    let mut store = store();
    let mut update = set("deep", "1");
    for _ in 0..MAX_SEQUENCE_DEPTH {
        update = seq(vec![update]);
    }
    assert_eq!(apply(&mut store, update.clone()), Ok(UpdateResult::Unit));
    let too_deep = seq(vec![set("first", "1"), update]);
    let error = apply(&mut store, too_deep).unwrap_err();
    assert_eq!(
        error,
        StoreError::SequenceTooDeep {
            limit: MAX_SEQUENCE_DEPTH
        }
    );
    assert_eq!(error.arakoon_code(), 0x26);
    assert!(!store.exists(b"first"));
}
