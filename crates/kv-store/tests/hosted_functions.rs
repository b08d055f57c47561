//! Hosted user functions (code the node loads at start-up, e.g. WebAssembly): they run in the
//! update's transaction like native ones, and the registry's fingerprint names their code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use kv_store::{
    HostedFunction, StoreError, Transaction, UpdateResult, UserFunctionError, UserFunctionRegistry,
    samples,
};

/// Appends its argument to the value of `log`; fails after writing when the argument is "fail".
#[derive(Debug)]
struct Appender {
    identity: String,
}

impl HostedFunction for Appender {
    fn call(
        &self,
        tx: &mut Transaction<'_>,
        argument: Option<&[u8]>,
    ) -> Result<Option<Bytes>, UserFunctionError> {
        let argument = argument.unwrap_or_default();
        let mut value = tx.get(b"log").map(|v| v.to_vec()).unwrap_or_default();
        value.extend_from_slice(argument);
        tx.set(b"log", &value);
        tx.set(b"touched", b"yes");
        if argument == b"fail" {
            return Err(UserFunctionError::Failed("asked to fail".into()));
        }
        Ok(Some(Bytes::from(value)))
    }

    fn identity(&self) -> String {
        self.identity.clone()
    }
}

fn registry() -> Arc<UserFunctionRegistry> {
    let mut registry = UserFunctionRegistry::new();
    samples::register_all(&mut registry);
    registry.register_hosted(
        "append",
        Arc::new(Appender {
            identity: "test-sha256:abc".into(),
        }),
    );
    Arc::new(registry)
}

#[test]
fn a_hosted_function_runs_in_the_transaction_and_returns_its_result() {
    let mut store = store_with(&[("log", "a")]);
    store.set_user_functions(registry());
    let outcome = apply(&mut store, user_function("append", Some("b")));
    assert_eq!(outcome, Ok(UpdateResult::UserFunction(Some(b("ab")))));
    assert_eq!(
        contents(&store),
        vec![
            ("log".into(), "ab".into()),
            ("touched".into(), "yes".into())
        ]
    );
}

#[test]
fn a_failing_hosted_function_is_0x81_and_rolls_back_alone_and_in_a_sequence() {
    let mut store = store_with(&[("log", "a")]);
    store.set_user_functions(registry());
    let error = apply(&mut store, user_function("append", Some("fail"))).unwrap_err();
    assert_eq!(
        error,
        StoreError::UserFunctionFailed {
            name: b("append"),
            message: "asked to fail".into()
        }
    );
    assert_eq!(error.arakoon_code(), 0x81);
    assert_eq!(contents(&store), vec![("log".into(), "a".into())]);
    // A later part of a sequence failing undoes the function's writes too.
    let failing = seq(vec![
        set("x", "1"),
        user_function("append", Some("b")),
        delete("missing"),
    ]);
    assert_eq!(
        apply(&mut store, failing),
        Err(StoreError::KeyNotFound { key: b("missing") })
    );
    assert_eq!(contents(&store), vec![("log".into(), "a".into())]);
}

#[test]
fn the_fingerprint_names_every_function_and_its_code() {
    assert_eq!(UserFunctionRegistry::new().fingerprint(), "");
    assert!(UserFunctionRegistry::new().is_empty());
    let registry = registry();
    assert_eq!(
        registry.fingerprint(),
        "append=test-sha256:abc rarakoon.increment=native rarakoon.rename=native"
    );
    assert!(registry.contains(b"append"));
    assert_eq!(
        registry
            .lookup(b"append")
            .map(kv_store::RegisteredFunction::identity),
        Some("test-sha256:abc".to_owned())
    );
    // Replacing the code under a name changes the fingerprint.
    let mut changed = (*registry).clone();
    changed.register_hosted(
        "append",
        Arc::new(Appender {
            identity: "test-sha256:def".into(),
        }),
    );
    assert_ne!(changed.fingerprint(), registry.fingerprint());
}
