//! Property tests: the store against a naive model (a sorted `Vec` of pairs with linear scans,
//! and sequences applied to a copy that is kept only on success), for every update kind and
//! every read, including sequences that fail halfway.
//!
//! Case counts are moderate; raise them with `PROPTEST_CASES`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use kv_store::{
    KeyRange, RangeAssertion, StaleIndex, Store, StoreError, Transaction, Update, UpdateOutcome,
    UpdateResult, UserFunctionError, UserFunctionRegistry,
};
use proptest::prelude::*;

// ----- the model ----------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
struct Model {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Model {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    fn put(&mut self, key: &[u8], value: Option<&[u8]>) {
        self.pairs.retain(|(k, _)| k != key);
        if let Some(value) = value {
            self.pairs.push((key.to_vec(), value.to_vec()));
            self.pairs.sort();
        }
    }

    fn keys_with_prefix(&self, prefix: &[u8]) -> Vec<Vec<u8>> {
        self.pairs
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn apply(&mut self, update: &Update, depth: usize) -> Result<UpdateResult, StoreError> {
        let bytes = |b: &Option<Bytes>| b.as_ref().map(|b| b.to_vec());
        match update {
            Update::Set { key, value } => {
                self.put(key, Some(value));
                Ok(UpdateResult::Unit)
            }
            Update::Delete { key } => {
                if self.get(key).is_none() {
                    return Err(StoreError::KeyNotFound { key: key.clone() });
                }
                self.put(key, None);
                Ok(UpdateResult::Unit)
            }
            Update::TestAndSet {
                key,
                expected,
                wanted,
            } => {
                let current = self.get(key);
                if current == bytes(expected) {
                    self.put(key, wanted.as_deref());
                }
                Ok(UpdateResult::OldValue(current.map(Bytes::from)))
            }
            Update::Replace { key, wanted } => {
                let current = self.get(key);
                self.put(key, wanted.as_deref());
                Ok(UpdateResult::OldValue(current.map(Bytes::from)))
            }
            Update::Sequence(parts) => {
                if depth >= kv_store::MAX_SEQUENCE_DEPTH {
                    return Err(StoreError::SequenceTooDeep {
                        limit: kv_store::MAX_SEQUENCE_DEPTH,
                    });
                }
                let mut copy = self.clone();
                for part in parts {
                    copy.apply(part, depth + 1)?;
                }
                *self = copy;
                Ok(UpdateResult::Unit)
            }
            Update::Nop => Ok(UpdateResult::Unit),
            Update::UserFunction { name, argument } => {
                let mut copy = self.clone();
                let result = match &name[..] {
                    b"put_then_check" => copy.put_then_check(argument.as_deref()),
                    _ => Err(StoreError::UserFunctionNotFound { name: name.clone() }),
                }?;
                *self = copy;
                Ok(result)
            }
            Update::Assert { key, expected } => {
                if self.get(key) == bytes(expected) {
                    Ok(UpdateResult::Unit)
                } else {
                    Err(StoreError::AssertionFailed { key: key.clone() })
                }
            }
            Update::AssertExists { key } => {
                if self.get(key).is_some() {
                    Ok(UpdateResult::Unit)
                } else {
                    Err(StoreError::AssertionFailed { key: key.clone() })
                }
            }
            Update::DeletePrefix { prefix } => {
                let before = self.pairs.len();
                self.pairs.retain(|(k, _)| !k.starts_with(prefix));
                Ok(UpdateResult::Count((before - self.pairs.len()) as u64))
            }
            Update::AssertRange {
                prefix,
                assertion: RangeAssertion::ContainsExactly(wire),
            } => {
                let actual = self.keys_with_prefix(prefix);
                let mut expected: Vec<Vec<u8>> = wire.iter().map(|k| k.to_vec()).collect();
                expected.reverse();
                if expected == actual {
                    Ok(UpdateResult::Unit)
                } else {
                    Err(StoreError::AssertRangeFailed {
                        expected: expected.into_iter().map(Bytes::from).collect(),
                        actual: actual.into_iter().map(Bytes::from).collect(),
                    })
                }
            }
        }
    }

    /// The model of [`put_then_check`].
    fn put_then_check(&mut self, argument: Option<&[u8]>) -> Result<UpdateResult, StoreError> {
        let key = argument.unwrap_or(b"");
        self.put(key, Some(b"written"));
        if key.first() == Some(&b'a') {
            return Err(StoreError::UserFunctionFailed {
                name: Bytes::from_static(b"put_then_check"),
                message: "refused".into(),
            });
        }
        Ok(UpdateResult::UserFunction(Some(Bytes::from_static(b"ok"))))
    }

    fn in_range(key: &[u8], r: &KeyRange<'_>) -> bool {
        let low = r.first.unwrap_or(b"");
        let above = if r.first_inclusive {
            key >= low
        } else {
            key > low
        };
        let below = match r.last {
            None => true,
            Some(high) => {
                if r.last_inclusive {
                    key <= high
                } else {
                    key < high
                }
            }
        };
        above && below
    }

    fn take(max: i32) -> usize {
        if max < 0 { usize::MAX } else { max as usize }
    }

    fn range_entries(&self, r: &KeyRange<'_>, max: i32) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.pairs
            .iter()
            .filter(|(k, _)| Self::in_range(k, r))
            .take(Self::take(max))
            .cloned()
            .collect()
    }

    fn rev_range_entries(&self, r: &KeyRange<'_>, max: i32) -> Vec<(Vec<u8>, Vec<u8>)> {
        // first is the high bound, last the low bound.
        let ascending = KeyRange {
            first: r.last,
            first_inclusive: r.last_inclusive,
            last: r.first,
            last_inclusive: r.first_inclusive,
        };
        self.pairs
            .iter()
            .rev()
            .filter(|(k, _)| Self::in_range(k, &ascending))
            .take(Self::take(max))
            .cloned()
            .collect()
    }
}

/// A user function that writes first and may fail afterwards: its write must be rolled back.
fn put_then_check(
    tx: &mut Transaction<'_>,
    argument: Option<&[u8]>,
) -> Result<Option<Bytes>, UserFunctionError> {
    let key = argument.unwrap_or(b"");
    tx.set(key, b"written");
    if key.first() == Some(&b'a') {
        return Err(UserFunctionError::Failed("refused".into()));
    }
    Ok(Some(Bytes::from_static(b"ok")))
}

fn new_store() -> Store {
    let mut registry = UserFunctionRegistry::new();
    registry.register("put_then_check", put_then_check);
    Store::new(Arc::new(registry))
}

fn pairs_of(store: &Store) -> Vec<(Vec<u8>, Vec<u8>)> {
    store
        .iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

fn to_pairs(entries: Vec<(Bytes, Bytes)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    entries
        .into_iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

// ----- generators ---------------------------------------------------------------------------

/// Short keys over a tiny alphabet, so that keys collide, share prefixes and include the
/// empty key and the extreme bytes; some are stretched past the store's 24 inline bytes (with
/// the short key as their prefix) so that both key representations are exercised.
fn key() -> impl Strategy<Value = Bytes> {
    (
        prop::collection::vec(prop::sample::select(vec![0x00u8, b'a', b'b', 0xff]), 0..3),
        prop::sample::select(vec![0usize, 0, 0, 23, 24, 30]),
    )
        .prop_map(|(mut key, stretch)| {
            key.resize(key.len() + stretch, b'L');
            Bytes::from(key)
        })
}

fn value() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(prop::sample::select(vec![b'1', b'2', 0x00]), 0..2).prop_map(Bytes::from)
}

fn leaf_update() -> impl Strategy<Value = Update> {
    prop_oneof![
        4 => (key(), value()).prop_map(|(key, value)| Update::Set { key, value }),
        3 => key().prop_map(|key| Update::Delete { key }),
        2 => (key(), prop::option::of(value()), prop::option::of(value()))
            .prop_map(|(key, expected, wanted)| Update::TestAndSet { key, expected, wanted }),
        1 => (key(), prop::option::of(value())).prop_map(|(key, wanted)| Update::Replace { key, wanted }),
        2 => (key(), prop::option::of(value())).prop_map(|(key, expected)| Update::Assert { key, expected }),
        1 => key().prop_map(|key| Update::AssertExists { key }),
        1 => key().prop_map(|prefix| Update::DeletePrefix { prefix }),
        1 => (key(), prop::collection::vec(key(), 0..3)).prop_map(|(prefix, keys)| Update::AssertRange {
            prefix,
            assertion: RangeAssertion::ContainsExactly(keys),
        }),
        1 => Just(Update::Nop),
        1 => (prop::sample::select(vec!["put_then_check", "missing_fn"]), prop::option::of(key()))
            .prop_map(|(name, argument)| Update::UserFunction { name: Bytes::from_static(name.as_bytes()), argument }),
    ]
}

fn update() -> impl Strategy<Value = Update> {
    leaf_update().prop_recursive(3, 24, 6, |inner| {
        prop::collection::vec(inner, 0..6).prop_map(Update::Sequence)
    })
}

#[derive(Debug, Clone)]
struct Query {
    first: Option<Vec<u8>>,
    first_inclusive: bool,
    last: Option<Vec<u8>>,
    last_inclusive: bool,
    max: i32,
}

fn query() -> impl Strategy<Value = Query> {
    (
        prop::option::of(key().prop_map(|k| k.to_vec())),
        any::<bool>(),
        prop::option::of(key().prop_map(|k| k.to_vec())),
        any::<bool>(),
        prop_oneof![Just(-1), Just(0), 1..4i32, Just(i32::MIN)],
    )
        .prop_map(
            |(first, first_inclusive, last, last_inclusive, max)| Query {
                first,
                first_inclusive,
                last,
                last_inclusive,
                max,
            },
        )
}

impl Query {
    fn range(&self) -> KeyRange<'_> {
        KeyRange {
            first: self.first.as_deref(),
            first_inclusive: self.first_inclusive,
            last: self.last.as_deref(),
            last_inclusive: self.last_inclusive,
        }
    }
}

fn check_reads(store: &Store, model: &Model, q: &Query, keys: &[Bytes]) {
    let r = q.range();
    let expected = model.range_entries(&r, q.max);
    assert_eq!(to_pairs(store.range_entries(&r, q.max)), expected);
    let expected_keys: Vec<Vec<u8>> = expected.iter().map(|(k, _)| k.clone()).collect();
    let keys_only: Vec<Vec<u8>> = store.range(&r, q.max).iter().map(|k| k.to_vec()).collect();
    assert_eq!(keys_only, expected_keys);
    assert_eq!(
        to_pairs(store.rev_range_entries(&r, q.max)),
        model.rev_range_entries(&r, q.max)
    );
    let prefix = q.first.clone().unwrap_or_default();
    let expected_prefix: Vec<Vec<u8>> = model
        .keys_with_prefix(&prefix)
        .into_iter()
        .take(Model::take(q.max))
        .collect();
    let prefix_keys: Vec<Vec<u8>> = store
        .prefix_keys(&prefix, q.max)
        .iter()
        .map(|k| k.to_vec())
        .collect();
    assert_eq!(prefix_keys, expected_prefix);

    let options: Vec<Option<Vec<u8>>> = keys.iter().map(|k| model.get(k)).collect();
    let got: Vec<Option<Vec<u8>>> = store
        .multi_get_option(keys)
        .into_iter()
        .map(|v| v.map(|v| v.to_vec()))
        .collect();
    assert_eq!(got, options);
    let expected_multi = match keys.iter().rev().find(|k| model.get(k).is_none()) {
        Some(missing) => Err(StoreError::KeyNotFound {
            key: missing.clone(),
        }),
        None => Ok(options
            .into_iter()
            .map(|v| Bytes::from(v.unwrap_or_default()))
            .collect::<Vec<_>>()),
    };
    assert_eq!(store.multi_get(keys), expected_multi);
    for key in keys {
        assert_eq!(store.get(key).map(|v| v.to_vec()), model.get(key));
        assert_eq!(store.exists(key), model.get(key).is_some());
    }
    assert_eq!(store.key_count(), model.pairs.len() as u64);
    let payload: usize = model.pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert_eq!(store.stats().payload_bytes, payload as u64);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(1024)
    ))]

    /// Batches of updates, applied to store and model: same outcomes, same contents, same
    /// reads after every batch.
    #[test]
    fn store_matches_the_model(
        batches in prop::collection::vec((0..12u64, prop::collection::vec(update(), 0..6)), 1..8),
        queries in prop::collection::vec(query(), 1..4),
        probe_keys in prop::collection::vec(key(), 0..4),
    ) {
        let mut store = new_store();
        let mut model = Model::default();
        let mut applied: Option<u64> = None;
        for (index, batch) in &batches {
            let result = store.apply_batch(*index, batch);
            match applied {
                // At or below the applied index: refused whole, nothing changes.
                Some(last) if *index <= last => {
                    prop_assert_eq!(result, Err(StaleIndex { index: *index, applied: last }));
                }
                _ => {
                    let expected: Vec<UpdateOutcome> = batch.iter().map(|u| model.apply(u, 0)).collect();
                    prop_assert_eq!(result, Ok(expected));
                    applied = Some(*index);
                }
            }
            prop_assert_eq!(pairs_of(&store), model.pairs.clone());
            prop_assert_eq!(store.applied_index(), applied);
            for q in &queries {
                check_reads(&store, &model, q, &probe_keys);
            }
        }
    }

    /// A sequence that fails at any point leaves the store exactly as it was.
    #[test]
    fn a_sequence_failing_halfway_changes_nothing(
        setup in prop::collection::vec((key(), value()), 0..8),
        prefix_parts in prop::collection::vec(update(), 0..6),
        missing in key(),
    ) {
        let mut store = new_store();
        let setup: Vec<Update> = setup.into_iter().map(|(key, value)| Update::Set { key, value }).collect();
        store.apply_batch(0, &setup).unwrap();
        let before = pairs_of(&store);
        let before_stats = store.stats();
        // Make the last part fail for sure: assert a key absent, then delete it.
        let mut parts = prefix_parts;
        parts.push(Update::Assert { key: missing.clone(), expected: None });
        parts.push(Update::Delete { key: missing.clone() });
        let outcome = store.apply(1, &Update::Sequence(parts)).unwrap();
        prop_assert!(outcome.is_err());
        prop_assert_eq!(pairs_of(&store), before);
        prop_assert_eq!(store.stats().payload_bytes, before_stats.payload_bytes);
        prop_assert_eq!(store.applied_index(), Some(1));
    }

    /// ContainsExactly passes for exactly one order of the actual keys: descending. Any other
    /// order, a missing key or an extra key fails, with the same error as the model.
    #[test]
    fn assert_range_accepts_only_the_descending_list(
        setup in prop::collection::btree_set(key(), 0..8),
        prefix in key(),
        shuffle_seed in prop::collection::vec(any::<prop::sample::Index>(), 8),
        edit in 0..3u8,
        extra in key(),
    ) {
        let mut store = new_store();
        let mut model = Model::default();
        let setup: Vec<Update> = setup.into_iter().map(|key| Update::Set { key, value: Bytes::new() }).collect();
        for update in &setup {
            model.apply(update, 0).unwrap();
        }
        store.apply_batch(0, &setup).unwrap();
        let descending: Vec<Bytes> = model.keys_with_prefix(&prefix).into_iter().rev().map(Bytes::from).collect();
        let mut wire = descending.clone();
        match edit {
            0 => {
                // A permutation: swap positions chosen by the seed.
                for (i, index) in shuffle_seed.iter().enumerate() {
                    if !wire.is_empty() {
                        let len = wire.len();
                        wire.swap(i % len, index.index(len));
                    }
                }
            }
            1 => { wire.pop(); }
            _ => wire.insert(0, extra),
        }
        let update = Update::AssertRange { prefix, assertion: RangeAssertion::ContainsExactly(wire.clone()) };
        let outcome = store.apply(1, &update).unwrap();
        prop_assert_eq!(outcome.clone(), model.apply(&update, 0));
        prop_assert_eq!(outcome.is_ok(), wire == descending);
    }

    /// A snapshot taken from a store loads into an equal store.
    #[test]
    fn snapshot_round_trip(updates in prop::collection::vec(update(), 0..20)) {
        let mut store = new_store();
        store.apply_batch(41, &updates).unwrap();
        let mut pairs = Vec::new();
        store.for_each_pair(|k, v| -> Result<(), std::convert::Infallible> {
            pairs.push((Bytes::copy_from_slice(k), Bytes::copy_from_slice(v)));
            Ok(())
        }).unwrap();
        let loaded = Store::from_snapshot(store.applied_index().unwrap(), pairs, Arc::new(UserFunctionRegistry::new())).unwrap();
        prop_assert_eq!(pairs_of(&loaded), pairs_of(&store));
        prop_assert_eq!(loaded.stats(), store.stats());
    }
}
