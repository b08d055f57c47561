//! Reads with Arakoon's exact semantics (docs/protocol.md §8.2). Lists come back in logical order:
//! ascending, except `rev_range_entries`, which is descending.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use kv_store::{KeyRange, StoreError};

fn range<'a>(
    first: Option<&'a str>,
    finc: bool,
    last: Option<&'a str>,
    linc: bool,
) -> KeyRange<'a> {
    KeyRange {
        first: first.map(str::as_bytes),
        first_inclusive: finc,
        last: last.map(str::as_bytes),
        last_inclusive: linc,
    }
}

#[test]
fn get_and_exists() {
    let store = store_with(&[("k", "v")]);
    assert_eq!(store.get(b"k"), Some(b("v")));
    assert_eq!(store.get(b"x"), None);
    assert_eq!(store.get_or_not_found(b"x"), Err(StoreError::NotFound));
    assert_eq!(
        store
            .get_or_not_found(b"x")
            .unwrap_err()
            .wire_message()
            .as_ref(),
        b"Not_found"
    );
    assert!(store.exists(b"k"));
    assert!(!store.exists(b"x"));
}

#[test]
fn range_bounds_and_inclusivity() {
    let store = store_with(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]);
    let keys = |r: KeyRange<'_>, max| strings(&store.range(&r, max));
    assert_eq!(
        keys(range(Some("b"), true, Some("d"), true), -1),
        ["b", "c", "d"]
    );
    assert_eq!(
        keys(range(Some("b"), false, Some("d"), true), -1),
        ["c", "d"]
    );
    assert_eq!(
        keys(range(Some("b"), true, Some("d"), false), -1),
        ["b", "c"]
    );
    assert_eq!(keys(range(Some("b"), false, Some("d"), false), -1), ["c"]);
    assert_eq!(keys(range(Some("bb"), true, Some("cc"), true), -1), ["c"]);
    assert_eq!(keys(range(None, true, Some("b"), true), -1), ["a", "b"]);
    assert_eq!(keys(range(Some("c"), true, None, false), -1), ["c", "d"]);
    assert_eq!(
        keys(range(None, true, None, true), -1),
        ["a", "b", "c", "d"]
    );
    // Inverted and empty ranges are empty, never a panic.
    assert!(keys(range(Some("d"), true, Some("a"), true), -1).is_empty());
    assert!(keys(range(Some("b"), false, Some("b"), false), -1).is_empty());
    assert_eq!(keys(range(Some("b"), true, Some("b"), true), -1), ["b"]);
}

#[test]
fn max_keeps_the_smallest_keys_and_negative_means_all() {
    let store = store_with(&[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]);
    let all = range(None, true, None, true);
    assert_eq!(strings(&store.range(&all, 2)), ["a", "b"]);
    assert!(store.range(&all, 0).is_empty());
    assert_eq!(store.range(&all, -1).len(), 4);
    assert_eq!(store.range(&all, -7).len(), 4);
    assert_eq!(store.range(&all, 100).len(), 4);
    let entries = store.range_entries(&all, 3);
    assert_eq!(
        entries,
        vec![(b("a"), b("1")), (b("b"), b("2")), (b("c"), b("3"))]
    );
}

#[test]
fn a_missing_first_bound_is_the_empty_key_with_its_inclusivity() {
    let store = store_with(&[("", "empty"), ("a", "1")]);
    assert_eq!(
        strings(&store.range(&range(None, true, None, true), -1)),
        ["", "a"]
    );
    assert_eq!(
        strings(&store.range(&range(None, false, None, true), -1)),
        ["a"]
    );
    let entries = store.range_entries(&range(None, false, Some("a"), true), -1);
    assert_eq!(entries, vec![(b("a"), b("1"))]);
}

#[test]
fn range_entries_example_from_the_protocol() {
    // §11: range_entries None true None true -1 on {a:1, b:2, c:3}; the wire shows c, b, a,
    // which is the reverse of what the store returns.
    let store = store_with(&[("a", "1"), ("b", "2"), ("c", "3")]);
    let entries = store.range_entries(&range(None, true, None, true), -1);
    assert_eq!(
        entries,
        vec![(b("a"), b("1")), (b("b"), b("2")), (b("c"), b("3"))]
    );
}

#[test]
fn rev_range_entries_scans_down_and_keeps_the_largest() {
    // §8.2: keys xey000..xey099, first = xey100, last = xey009, max = 3 -> the wire shows
    // [xey097, xey098, xey099]; the store returns the scan order xey099, xey098, xey097.
    let names: Vec<String> = (0..100).map(|i| format!("xey{i:03}")).collect();
    let pairs: Vec<(&str, &str)> = names.iter().map(|k| (k.as_str(), "v")).collect();
    let store = store_with(&pairs);
    let entries = store.rev_range_entries(&range(Some("xey100"), true, Some("xey009"), true), 3);
    let keys: Vec<_> = entries.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(strings(&keys), ["xey099", "xey098", "xey097"]);

    let down_to = |r: KeyRange<'_>| {
        let entries = store.rev_range_entries(&r, -1);
        strings(&entries.into_iter().map(|(k, _)| k).collect::<Vec<_>>())
    };
    assert_eq!(
        down_to(range(Some("xey003"), true, Some("xey001"), true)),
        ["xey003", "xey002", "xey001"]
    );
    assert_eq!(
        down_to(range(Some("xey003"), false, Some("xey001"), false)),
        ["xey002"]
    );
    assert_eq!(
        down_to(range(Some("xey002"), true, None, true)),
        ["xey002", "xey001", "xey000"]
    );
    assert_eq!(
        down_to(range(None, true, Some("xey098"), true)),
        ["xey099", "xey098"]
    );
    assert!(down_to(range(Some("xey001"), true, Some("xey003"), true)).is_empty());
}

#[test]
fn rev_range_down_to_the_empty_key_follows_its_inclusivity() {
    let store = store_with(&[("", "e"), ("a", "1")]);
    let entries = store.rev_range_entries(&range(None, true, None, true), -1);
    assert_eq!(entries, vec![(b("a"), b("1")), (b(""), b("e"))]);
    let entries = store.rev_range_entries(&range(None, true, None, false), -1);
    assert_eq!(entries, vec![(b("a"), b("1"))]);
}

#[test]
fn prefix_keys_ascending_with_max() {
    let store = store_with(&[
        ("a", ""),
        ("ab", ""),
        ("abc", ""),
        ("abd", ""),
        ("ac", ""),
        ("b", ""),
    ]);
    assert_eq!(strings(&store.prefix_keys(b"ab", -1)), ["ab", "abc", "abd"]);
    assert_eq!(strings(&store.prefix_keys(b"ab", 2)), ["ab", "abc"]);
    assert_eq!(store.prefix_keys(b"", -1).len(), 6);
    assert!(store.prefix_keys(b"zz", -1).is_empty());
    assert!(store.prefix_keys(b"a", 0).is_empty());
}

#[test]
fn prefix_keys_with_0xff_bytes() {
    let mut store = store();
    for key in [&b"\xff"[..], b"\xff\xff", b"\xff\x00", b"\xfe\xff"] {
        apply(
            &mut store,
            kv_store::Update::Set {
                key: key.to_vec().into(),
                value: b(""),
            },
        )
        .unwrap();
    }
    let keys = store.prefix_keys(b"\xff", -1);
    assert_eq!(
        keys,
        vec![b"\xff".to_vec(), b"\xff\x00".to_vec(), b"\xff\xff".to_vec()]
    );
}

#[test]
fn multi_get_keeps_the_given_order_and_reports_the_last_missing_key() {
    let store = store_with(&[("a", "1"), ("b", "2"), ("c", "3")]);
    assert_eq!(
        store.multi_get(&["c", "a", "b"]),
        Ok(vec![b("3"), b("1"), b("2")])
    );
    assert_eq!(store.multi_get::<&str>(&[]), Ok(vec![]));
    let error = store.multi_get(&["x", "a", "y", "b"]).unwrap_err();
    assert_eq!(error, StoreError::KeyNotFound { key: b("y") });
    assert_eq!(error.arakoon_code(), 0x05);
    assert_eq!(
        store.multi_get_option(&["c", "x", "a"]),
        vec![Some(b("3")), None, Some(b("1"))]
    );
}

#[test]
fn key_count_and_stats() {
    let mut store = store_with(&[("ab", "123"), ("c", "")]);
    let stats = store.stats();
    assert_eq!(stats.key_count, 2);
    assert_eq!(stats.applied_index, Some(0));
    assert_eq!(stats.payload_bytes, 2 + 3 + 1);
    apply(&mut store, delete("ab")).unwrap();
    assert_eq!(store.stats().payload_bytes, 1);
    assert_eq!(store.key_count(), 1);
}
