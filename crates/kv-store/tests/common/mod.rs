//! Shorthands for building updates and stores in tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use kv_store::{RangeAssertion, Store, Update, UpdateOutcome, UserFunctionRegistry, samples};

pub fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

pub fn ob(text: Option<&str>) -> Option<Bytes> {
    text.map(b)
}

pub fn set(key: &str, value: &str) -> Update {
    Update::Set {
        key: b(key),
        value: b(value),
    }
}

pub fn delete(key: &str) -> Update {
    Update::Delete { key: b(key) }
}

pub fn tas(key: &str, expected: Option<&str>, wanted: Option<&str>) -> Update {
    Update::TestAndSet {
        key: b(key),
        expected: ob(expected),
        wanted: ob(wanted),
    }
}

pub fn replace(key: &str, wanted: Option<&str>) -> Update {
    Update::Replace {
        key: b(key),
        wanted: ob(wanted),
    }
}

pub fn assert(key: &str, expected: Option<&str>) -> Update {
    Update::Assert {
        key: b(key),
        expected: ob(expected),
    }
}

pub fn assert_exists(key: &str) -> Update {
    Update::AssertExists { key: b(key) }
}

pub fn delete_prefix(prefix: &str) -> Update {
    Update::DeletePrefix { prefix: b(prefix) }
}

pub fn assert_range(prefix: &str, wire_keys: &[&str]) -> Update {
    Update::AssertRange {
        prefix: b(prefix),
        assertion: RangeAssertion::ContainsExactly(wire_keys.iter().map(|k| b(k)).collect()),
    }
}

pub fn user_function(name: &str, argument: Option<&str>) -> Update {
    Update::UserFunction {
        name: b(name),
        argument: ob(argument),
    }
}

pub fn seq(updates: Vec<Update>) -> Update {
    Update::Sequence(updates)
}

/// A store with the sample user functions registered.
pub fn store() -> Store {
    let mut registry = UserFunctionRegistry::new();
    samples::register_all(&mut registry);
    Store::new(Arc::new(registry))
}

/// Applies `update` as the next log entry.
pub fn apply(store: &mut Store, update: Update) -> UpdateOutcome {
    let index = store.applied_index().map_or(0, |i| i + 1);
    store.apply(index, &update).unwrap()
}

/// A store holding these pairs (applied through one batch at index 0).
pub fn store_with(pairs: &[(&str, &str)]) -> Store {
    let mut store = store();
    let updates: Vec<Update> = pairs.iter().map(|(k, v)| set(k, v)).collect();
    for outcome in store.apply_batch(0, &updates).unwrap() {
        outcome.unwrap();
    }
    store
}

/// All pairs as strings, ascending.
pub fn contents(store: &Store) -> Vec<(String, String)> {
    store
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

pub fn strings(list: &[Bytes]) -> Vec<String> {
    list.iter()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect()
}
