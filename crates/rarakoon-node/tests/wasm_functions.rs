//! WebAssembly user functions (ADR 0170): every host call, the fuel and memory limits, the
//! refusal of foreign imports and of a module whose hash differs from the config, and the
//! rollback of whatever a failing call wrote. Modules are written in WAT here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use kv_store::{Store, StoreError, Update, UpdateResult, UserFunctionRegistry, samples};
use rarakoon_node::ClusterConfig;
use rarakoon_node::config::UserFunctionConfig;
use rarakoon_node::wasm_functions::{
    HOST_CALL_FUEL, Limits, LoadError, WasmFunction, register_configured, sha256_hex,
};

/// Every host import, for the modules below.
const IMPORTS: &str = r#"
  (import "rarakoon" "argument" (func $argument (param i32 i32) (result i32)))
  (import "rarakoon" "get" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "rarakoon" "exists" (func $exists (param i32 i32) (result i32)))
  (import "rarakoon" "set" (func $set (param i32 i32 i32 i32)))
  (import "rarakoon" "delete" (func $delete (param i32 i32) (result i32)))
  (import "rarakoon" "next_key" (func $next_key (param i32 i32 i32 i32) (result i32)))
  (import "rarakoon" "set_result" (func $set_result (param i32 i32)))
  (import "rarakoon" "fail" (func $fail (param i32 i32)))
"#;

/// The example of docs/operations.md: a counter kept as a little-endian u64 under the key
/// given as argument; returns the new value. Fails with code 1 without a key and with a
/// message when the value is not 8 bytes long.
pub const COUNTER: &str = include_str!("../../../docs/examples/counter.wat");

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn wasm(wat: &str) -> Vec<u8> {
    wat::parse_str(wat).unwrap()
}

/// A module with every import, a page of memory holding `data` at 0, and `body` as `call`.
fn module(data: &str, body: &str) -> String {
    format!(
        "(module {IMPORTS} (memory (export \"memory\") 1) (data (i32.const 0) \"{data}\")\n\
         (func (export \"call\") (result i32) {body}))"
    )
}

fn load(wat: &str, limits: Limits) -> WasmFunction {
    WasmFunction::from_bytes("f", &wasm(wat), limits).unwrap()
}

fn refused(wat: &str, limits: Limits) -> String {
    WasmFunction::from_bytes("f", &wasm(wat), limits).unwrap_err()
}

/// A store holding `pairs` with `function` registered as "f" (and the native samples).
fn store(function: WasmFunction, pairs: &[(&str, &str)]) -> Store {
    let mut registry = UserFunctionRegistry::new();
    samples::register_all(&mut registry);
    registry.register_hosted("f", Arc::new(function));
    let mut store = Store::new(Arc::new(registry));
    let updates: Vec<Update> = pairs
        .iter()
        .map(|(k, v)| Update::Set {
            key: b(k),
            value: b(v),
        })
        .collect();
    for outcome in store.apply_batch(0, &updates).unwrap() {
        outcome.unwrap();
    }
    store
}

fn call(store: &mut Store, argument: Option<&[u8]>) -> Result<UpdateResult, StoreError> {
    let update = Update::UserFunction {
        name: b("f"),
        argument: argument.map(Bytes::copy_from_slice),
    };
    let index = store.applied_index().map_or(0, |i| i + 1);
    store.apply(index, &update).unwrap()
}

fn contents(store: &Store) -> Vec<(Vec<u8>, Vec<u8>)> {
    store
        .iter()
        .map(|(k, v)| (k.to_vec(), v.to_vec()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    list.iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

fn failure(outcome: Result<UpdateResult, StoreError>) -> String {
    match outcome {
        Err(error @ StoreError::UserFunctionFailed { .. }) => {
            assert_eq!(error.arakoon_code(), 0x81);
            error.to_string()
        }
        other => panic!("expected a user-function failure, got {other:?}"),
    }
}

#[test]
fn the_counter_example_counts_and_fails_cleanly() {
    let mut store = store(load(COUNTER, Limits::default()), &[("bad", "abc")]);
    for n in 1u64..=3 {
        let outcome = call(&mut store, Some(b"hits"));
        let expected = Bytes::copy_from_slice(&n.to_le_bytes());
        assert_eq!(
            outcome,
            Ok(UpdateResult::UserFunction(Some(expected.clone())))
        );
        assert_eq!(store.get(b"hits"), Some(expected));
    }
    let before = contents(&store);
    let message = failure(call(&mut store, None));
    assert_eq!(message, "user function `f` returned error code 1");
    let message = failure(call(&mut store, Some(b"bad")));
    assert_eq!(message, "the counter is not 8 bytes long");
    assert_eq!(contents(&store), before);
}

#[test]
fn argument_and_get_copy_only_what_fits_and_say_minus_one_when_absent() {
    // Result: the lengths argument() and get() report with a 3-byte buffer, then what fit.
    let body = r#"
      (i32.store (i32.const 100) (call $argument (i32.const 200) (i32.const 3)))
      (i32.store (i32.const 104) (call $get (i32.const 0) (i32.const 1) (i32.const 300) (i32.const 3)))
      (i32.store (i32.const 108) (call $get (i32.const 1) (i32.const 1) (i32.const 400) (i32.const 3)))
      (call $set_result (i32.const 100) (i32.const 12))
      (call $set (i32.const 2) (i32.const 3) (i32.const 200) (i32.const 3))
      (call $set (i32.const 5) (i32.const 3) (i32.const 300) (i32.const 3))
      (i32.const 0)"#;
    let wat = module("kaxoutout2", body);
    let run = |argument: Option<&[u8]>| {
        let mut store = store(
            load(&wat, Limits::default()),
            &[("k", "abc"), ("a", "long")],
        );
        let outcome = call(&mut store, argument);
        (outcome, store)
    };
    let lengths = |argument: i32, k: i32, a: i32| {
        let mut out = Vec::new();
        for n in [argument, k, a] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        Ok(UpdateResult::UserFunction(Some(Bytes::from(out))))
    };
    // An argument that fits, `k` (3 bytes) fits, `a` (4 bytes) does not and copies nothing.
    let (outcome, after) = run(Some(b"xyz"));
    assert_eq!(outcome, lengths(3, 3, 4));
    assert_eq!(after.get(b"xou"), Some(b("xyz")));
    assert_eq!(after.get(b"tou"), Some(b("abc")));
    // No argument: -1; an argument longer than the buffer: its length, nothing copied.
    let (outcome, after) = run(None);
    assert_eq!(outcome, lengths(-1, 3, 4));
    assert_eq!(after.get(b"xou"), Some(Bytes::from_static(&[0, 0, 0])));
    let (outcome, _) = run(Some(b"four"));
    assert_eq!(outcome, lengths(4, 3, 4));
    // A missing key ("z") is -1.
    let missing = module(
        "kz",
        r#"
      (i32.store (i32.const 100) (call $get (i32.const 1) (i32.const 1) (i32.const 300) (i32.const 3)))
      (call $set_result (i32.const 100) (i32.const 4)) (i32.const 0)"#,
    );
    let mut store = store(load(&missing, Limits::default()), &[("k", "v")]);
    assert_eq!(
        call(&mut store, None),
        Ok(UpdateResult::UserFunction(Some(Bytes::copy_from_slice(
            &(-1i32).to_le_bytes()
        ))))
    );
}

#[test]
fn exists_and_delete_answer_whether_the_key_was_there() {
    // Result: exists(k), delete(k), exists(k), delete(k) as four bytes.
    let body = r#"
      (i32.store8 (i32.const 100) (call $exists (i32.const 0) (i32.const 1)))
      (i32.store8 (i32.const 101) (call $delete (i32.const 0) (i32.const 1)))
      (i32.store8 (i32.const 102) (call $exists (i32.const 0) (i32.const 1)))
      (i32.store8 (i32.const 103) (call $delete (i32.const 0) (i32.const 1)))
      (call $set_result (i32.const 100) (i32.const 4))
      (i32.const 0)"#;
    let mut store = store(
        load(&module("k", body), Limits::default()),
        &[("k", "v"), ("l", "w")],
    );
    assert_eq!(
        call(&mut store, None),
        Ok(UpdateResult::UserFunction(Some(Bytes::from_static(&[
            1, 1, 0, 0
        ]))))
    );
    assert_eq!(contents(&store), pairs(&[("l", "w")]));
}

#[test]
fn next_key_walks_the_keys_in_order_from_the_given_one() {
    // From the argument, lists every key followed by ',' into the result (the cursor is the
    // last key with 0x00 appended).
    let body = r#"
      (local $cur_len i32) (local $len i32) (local $out i32)
      (local.set $out (i32.const 2048))
      (local.set $cur_len (call $argument (i32.const 4096) (i32.const 256)))
      (if (i32.lt_s (local.get $cur_len) (i32.const 0)) (then (local.set $cur_len (i32.const 0))))
      (block $done (loop $next
        (local.set $len (call $next_key (i32.const 4096) (local.get $cur_len) (i32.const 1024) (i32.const 256)))
        (br_if $done (i32.eq (local.get $len) (i32.const -1)))
        (memory.copy (local.get $out) (i32.const 1024) (local.get $len))
        (local.set $out (i32.add (local.get $out) (local.get $len)))
        (i32.store8 (local.get $out) (i32.const 44))
        (local.set $out (i32.add (local.get $out) (i32.const 1)))
        (memory.copy (i32.const 4096) (i32.const 1024) (local.get $len))
        (i32.store8 (i32.add (i32.const 4096) (local.get $len)) (i32.const 0))
        (local.set $cur_len (i32.add (local.get $len) (i32.const 1)))
        (br $next)))
      (call $set_result (i32.const 2048) (i32.sub (local.get $out) (i32.const 2048)))
      (i32.const 0)"#;
    let function = load(&module("", body), Limits::default());
    let mut store = store(
        function,
        &[("", "e"), ("a", "1"), ("a\0", "2"), ("b", "3"), ("ba", "4")],
    );
    let list = |outcome: Result<UpdateResult, StoreError>| match outcome {
        Ok(UpdateResult::UserFunction(Some(bytes))) => bytes.to_vec(),
        other => panic!("{other:?}"),
    };
    assert_eq!(list(call(&mut store, None)), b",a,a\0,b,ba,".to_vec());
    assert_eq!(list(call(&mut store, Some(b"a\x01"))), b"b,ba,".to_vec());
    assert_eq!(list(call(&mut store, Some(b"c"))), b"".to_vec());
}

#[test]
fn a_call_sees_its_own_writes_and_no_result_means_none() {
    let body = r#"
      (call $set (i32.const 0) (i32.const 1) (i32.const 1) (i32.const 2))
      (i32.store (i32.const 100) (call $get (i32.const 0) (i32.const 1) (i32.const 200) (i32.const 8)))
      (call $set (i32.const 3) (i32.const 4) (i32.const 200) (i32.const 2))
      (i32.const 0)"#;
    let mut store = store(load(&module("kvvcopy", body), Limits::default()), &[]);
    assert_eq!(call(&mut store, None), Ok(UpdateResult::UserFunction(None)));
    assert_eq!(contents(&store), pairs(&[("copy", "vv"), ("k", "vv")]));
}

#[test]
fn a_trap_after_writing_fails_the_call_and_leaves_the_store_untouched() {
    let body = r#"
      (call $set (i32.const 0) (i32.const 1) (i32.const 1) (i32.const 1))
      (drop (call $delete (i32.const 2) (i32.const 1)))
      unreachable"#;
    let mut store = store(
        load(&module("kvd", body), Limits::default()),
        &[("d", "x"), ("k", "old")],
    );
    let before = contents(&store);
    let message = failure(call(&mut store, None));
    assert!(
        message.starts_with("user function `f` trapped:"),
        "{message}"
    );
    assert!(message.contains("unreachable"), "{message}");
    assert_eq!(contents(&store), before);
    // Inside a sequence the whole sequence rolls back.
    let sequence = Update::Sequence(vec![
        Update::Set {
            key: b("s"),
            value: b("1"),
        },
        Update::UserFunction {
            name: b("f"),
            argument: None,
        },
    ]);
    let index = store.applied_index().map_or(0, |i| i + 1);
    let outcome = store.apply(index, &sequence).unwrap();
    assert_eq!(outcome.unwrap_err().arakoon_code(), 0x81);
    assert_eq!(contents(&store), before);
}

#[test]
fn fail_and_a_non_zero_return_are_failures_with_their_message() {
    let failing = module(
        "kno such thing",
        r#"(call $set (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1))
           (call $fail (i32.const 1) (i32.const 13)) (i32.const 0)"#,
    );
    let mut s = store(load(&failing, Limits::default()), &[]);
    assert_eq!(failure(call(&mut s, None)), "no such thing");
    assert!(contents(&s).is_empty());
    let returning = module(
        "k",
        r#"(call $set (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1)) (i32.const -7)"#,
    );
    let mut s = store(load(&returning, Limits::default()), &[]);
    assert_eq!(
        failure(call(&mut s, None)),
        "user function `f` returned error code -7"
    );
    assert!(contents(&s).is_empty());
}

#[test]
fn a_pointer_outside_the_memory_fails_the_call() {
    for (ptr, len) in [("65535", "2"), ("-1", "1"), ("0", "-1"), ("65537", "0")] {
        let body = format!(
            "(call $set (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1))\n\
             (call $set (i32.const {ptr}) (i32.const {len}) (i32.const 0) (i32.const 1)) (i32.const 0)"
        );
        let mut s = store(load(&module("k", &body), Limits::default()), &[]);
        let message = failure(call(&mut s, None));
        assert!(
            message.contains("outside its 65536 bytes"),
            "{ptr} {len}: {message}"
        );
        assert!(contents(&s).is_empty());
    }
    // An output buffer beyond the memory too.
    let body = "(drop (call $get (i32.const 0) (i32.const 1) (i32.const 65534) (i32.const 8))) (i32.const 0)";
    let mut s = store(
        load(&module("k", body), Limits::default()),
        &[("k", "value")],
    );
    assert!(failure(call(&mut s, None)).contains("outside"));
}

#[test]
fn running_out_of_fuel_fails_the_call_and_rolls_back() {
    let spin = module(
        "k",
        r#"(call $set (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1))
           (loop $forever (br $forever)) (i32.const 0)"#,
    );
    let limits = Limits {
        fuel: 10_000,
        memory_pages: 1,
    };
    let mut s = store(load(&spin, limits), &[]);
    assert_eq!(
        failure(call(&mut s, None)),
        "user function `f` ran out of fuel (limit 10000 per call)"
    );
    assert!(contents(&s).is_empty());
    // Host calls are charged too: a call with less fuel than one host call fails in it.
    let one_call = module(
        "k",
        "(call $set (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1)) (i32.const 0)",
    );
    let starved = Limits {
        fuel: HOST_CALL_FUEL,
        memory_pages: 1,
    };
    let mut s = store(load(&one_call, starved), &[]);
    assert!(failure(call(&mut s, None)).contains("ran out of fuel"));
    let fed = Limits {
        fuel: HOST_CALL_FUEL * 10,
        memory_pages: 1,
    };
    let mut s = store(load(&one_call, fed), &[]);
    assert_eq!(call(&mut s, None), Ok(UpdateResult::UserFunction(None)));
}

#[test]
fn memory_beyond_the_limit_fails_the_call_or_refuses_the_module() {
    let limits = Limits {
        fuel: 1_000_000,
        memory_pages: 2,
    };
    // Growing within the limit works; beyond it the call fails and its writes roll back.
    let grow = |pages: u32| {
        module(
            "k",
            &format!(
                "(call $set (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1))\n\
                 (drop (memory.grow (i32.const {pages}))) (i32.const 0)"
            ),
        )
    };
    let mut s = store(load(&grow(1), limits), &[]);
    assert_eq!(call(&mut s, None), Ok(UpdateResult::UserFunction(None)));
    let mut s = store(load(&grow(2), limits), &[]);
    let message = failure(call(&mut s, None));
    assert!(message.contains("trapped"), "{message}");
    assert!(contents(&s).is_empty());
    // A module that starts with more memory than allowed is refused at load.
    let big = r#"(module (memory (export "memory") 3) (func (export "call") (result i32) (i32.const 0)))"#;
    let problem = refused(big, limits);
    assert!(problem.contains("within the limits"), "{problem}");
    assert!(
        load(
            big,
            Limits {
                fuel: 1,
                memory_pages: 3
            }
        )
        .sha256()
        .len()
            == 64
    );
}

#[test]
fn imports_other_than_the_host_api_are_refused() {
    let with_import = |import: &str| {
        format!(
            "(module {import} (memory (export \"memory\") 1) (func (export \"call\") (result i32) (i32.const 0)))"
        )
    };
    for (import, expected) in [
        (
            r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
            "`wasi_snapshot_preview1`.`fd_write`, which is not the host API",
        ),
        (
            r#"(import "rarakoon" "clock" (func (result i64)))"#,
            "`rarakoon`.`clock`, which the host API does not have",
        ),
        (
            r#"(import "rarakoon" "get" (func (param i32 i32) (result i32)))"#,
            "`rarakoon`.`get`, with type",
        ),
        (
            r#"(import "rarakoon" "table" (table 1 funcref))"#,
            "`rarakoon`.`table`, which the host API does not have",
        ),
        (
            r#"(import "env" "g" (global i32))"#,
            "`env`.`g`, which is not the host API",
        ),
    ] {
        let problem = refused(&with_import(import), Limits::default());
        assert!(problem.contains(expected), "{import}: {problem}");
        assert!(problem.contains("no WASI"), "{problem}");
    }
}

#[test]
fn a_module_without_the_entry_point_or_with_a_start_function_is_refused() {
    let cases = [
        (
            r#"(module (memory (export "memory") 1))"#,
            "does not export `call`",
        ),
        (
            r#"(module (func (export "call") (param i32) (result i32) (i32.const 0)))"#,
            "must be a function () -> i32",
        ),
        (
            r#"(module (func $s) (start $s) (func (export "call") (result i32) (i32.const 0)))"#,
            "not valid",
        ),
        (
            r#"(module (import "rarakoon" "fail" (func (param i32 i32))) (func (export "call") (result i32) (i32.const 0)))"#,
            "does not export its `memory`",
        ),
    ];
    for (wat, expected) in cases {
        let problem = refused(wat, Limits::default());
        assert!(problem.contains(expected), "{wat}: {problem}");
    }
    let garbage = WasmFunction::from_bytes("f", b"\0asm but not really", Limits::default());
    assert!(garbage.unwrap_err().contains("not valid"));
}

#[test]
fn no_state_survives_a_call() {
    // A mutable global and memory incremented by every call: each call starts afresh.
    let body = r#"
      (global.set $g (i32.add (global.get $g) (i32.const 1)))
      (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (global.get $g)))
      (call $set_result (i32.const 0) (i32.const 4))
      (i32.const 0)"#;
    let wat = format!(
        "(module {IMPORTS} (memory (export \"memory\") 1) (global $g (mut i32) (i32.const 0))\n\
         (func (export \"call\") (result i32) {body}))"
    );
    let mut s = store(load(&wat, Limits::default()), &[]);
    for _ in 0..3 {
        assert_eq!(
            call(&mut s, None),
            Ok(UpdateResult::UserFunction(Some(Bytes::copy_from_slice(
                &1i32.to_le_bytes()
            ))))
        );
    }
}

#[test]
fn nans_are_canonical() {
    // 0/0 and a NaN with payload pushed through arithmetic give the canonical quiet NaN bits.
    let body = r#"
      (f32.store (i32.const 0) (f32.div (f32.const 0) (f32.const 0)))
      (f64.store (i32.const 4) (f64.add (f64.const nan:0x4) (f64.const 1)))
      (call $set_result (i32.const 0) (i32.const 12))
      (i32.const 0)"#;
    let mut s = store(load(&module("", body), Limits::default()), &[]);
    let mut expected = 0x7fc0_0000u32.to_le_bytes().to_vec();
    expected.extend_from_slice(&0x7ff8_0000_0000_0000u64.to_le_bytes());
    assert_eq!(
        call(&mut s, None),
        Ok(UpdateResult::UserFunction(Some(Bytes::from(expected))))
    );
}

fn entry(dir: &Path, file: &str, sha256: &str) -> UserFunctionConfig {
    UserFunctionConfig {
        name: "counter".into(),
        module: dir.join(file),
        sha256: sha256.into(),
        fuel: 1_000_000,
        memory_pages: 4,
    }
}

#[test]
fn a_module_whose_hash_differs_from_the_config_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = wasm(COUNTER);
    std::fs::write(dir.path().join("counter.wasm"), &bytes).unwrap();
    let actual = sha256_hex(&bytes);
    let wrong = "ab".repeat(32);
    let mut registry = UserFunctionRegistry::new();
    let error = register_configured(&mut registry, &[entry(dir.path(), "counter.wasm", &wrong)])
        .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, LoadError::HashMismatch { .. }), "{error:?}");
    assert!(message.contains("counter.wasm"), "{message}");
    assert!(message.contains(&wrong), "{message}");
    assert!(message.contains(&actual), "{message}");
    assert!(registry.is_empty());
    // The right hash (in any case) loads, and the identity names hash and limits.
    let upper = actual.to_ascii_uppercase();
    register_configured(&mut registry, &[entry(dir.path(), "counter.wasm", &upper)]).unwrap();
    assert_eq!(
        registry.fingerprint(),
        format!("counter=wasm:sha256:{actual}:fuel:1000000:pages:4")
    );
    // A missing file names the file; a name the embedder took is refused.
    let error = register_configured(
        &mut UserFunctionRegistry::new(),
        &[entry(dir.path(), "missing.wasm", &actual)],
    )
    .unwrap_err();
    assert!(matches!(error, LoadError::Read { .. }));
    assert!(error.to_string().contains("missing.wasm"));
    let mut native = UserFunctionRegistry::new();
    native.register("counter", samples::increment);
    let error = register_configured(&mut native, &[entry(dir.path(), "counter.wasm", &actual)])
        .unwrap_err();
    assert!(matches!(error, LoadError::Duplicate { .. }), "{error:?}");
}

#[test]
fn a_refused_module_names_function_file_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = wasm(
        r#"(module (import "wasi_snapshot_preview1" "proc_exit" (func (param i32))) (func (export "call") (result i32) (i32.const 0)))"#,
    );
    std::fs::write(dir.path().join("wasi.wasm"), &bytes).unwrap();
    let error = register_configured(
        &mut UserFunctionRegistry::new(),
        &[entry(dir.path(), "wasi.wasm", &sha256_hex(&bytes))],
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("user function `counter`: module "),
        "{message}"
    );
    assert!(message.contains("wasi.wasm is refused"), "{message}");
    assert!(message.contains("proc_exit"), "{message}");
}

fn config_with(functions: &str) -> Result<ClusterConfig, rarakoon_node::ConfigError> {
    let text = format!(
        "[cluster]\nid = \"c\"\n{functions}\n[[nodes]]\nname = \"n0\"\n\
         addresses = [\"127.0.0.1:5010\"]\nclient_port = 5000\nhome_dir = \"n0\"\n"
    );
    ClusterConfig::from_toml_str(&text, Path::new("/etc/c.toml"), Path::new("/etc"))
}

#[test]
fn the_config_section_resolves_paths_and_defaults_and_refuses_bad_entries() {
    let hash = "0".repeat(64);
    let config = config_with(&format!(
        "[[cluster.user_functions]]\nname = \"counter\"\nmodule = \"fns/counter.wasm\"\n\
         sha256 = \"{hash}\"\n[[cluster.user_functions]]\nname = \"abs\"\n\
         module = \"/opt/abs.wasm\"\nsha256 = \"{hash}\"\nfuel = 5\nmemory_pages = 2\n"
    ))
    .unwrap();
    let functions = &config.cluster.user_functions;
    assert_eq!(functions[0].module, Path::new("/etc/fns/counter.wasm"));
    assert_eq!(functions[0].fuel, 10_000_000);
    assert_eq!(functions[0].memory_pages, 16);
    assert_eq!(functions[1].module, Path::new("/opt/abs.wasm"));
    assert_eq!((functions[1].fuel, functions[1].memory_pages), (5, 2));
    assert!(config_with("").unwrap().cluster.user_functions.is_empty());

    let entry = |extra: &str| {
        format!("[[cluster.user_functions]]\nname = \"f\"\nmodule = \"f.wasm\"\n{extra}\n")
    };
    for (text, expected) in [
        (
            entry("sha256 = \"abc\""),
            "field `cluster.user_functions[0].sha256` is `abc`; give the module's SHA-256 as 64 hex digits",
        ),
        (
            entry(&format!("sha256 = \"{hash}\"\nfuel = 0")),
            "`cluster.user_functions[0].fuel` is 0",
        ),
        (
            entry(&format!("sha256 = \"{hash}\"\nmemory_pages = 0")),
            "`cluster.user_functions[0].memory_pages` is 0",
        ),
        (
            entry(&format!("sha256 = \"{hash}\"\nmemory_pages = 16385")),
            "`cluster.user_functions[0].memory_pages` is 16385",
        ),
        (
            entry(&format!("sha256 = \"{hash}\"\nexport = \"main\"")),
            "unknown field `export`",
        ),
        (entry(""), "missing field `sha256`"),
        (
            format!(
                "{}{}",
                entry(&format!("sha256 = \"{hash}\"")),
                entry(&format!("sha256 = \"{hash}\""))
            ),
            "`cluster.user_functions[1].name` `f` is used by more than one user function",
        ),
        (
            format!(
                "[[cluster.user_functions]]\nname = \"a b\"\nmodule = \"f.wasm\"\nsha256 = \"{hash}\"\n"
            ),
            "`cluster.user_functions[0].name` `a b` may hold only printable ASCII",
        ),
    ] {
        let message = config_with(&text).unwrap_err().to_string();
        assert!(message.contains(expected), "{text}\n=> {message}");
        assert!(message.contains("/etc/c.toml"), "{message}");
    }
    let many: String = (0..17)
        .map(|i| {
            format!(
                "[[cluster.user_functions]]\nname = \"f{i}\"\nmodule = \"f.wasm\"\nsha256 = \"{hash}\"\n"
            )
        })
        .collect();
    let message = config_with(&many).unwrap_err().to_string();
    assert!(message.contains("has 17 entries; at most 16"), "{message}");
}

#[test]
fn a_call_needs_little_native_stack() {
    // The node applies updates on async runtime threads with default-sized stacks; a call
    // must fit in a small one however long it runs (wasmi's tail-call dispatch grew the native
    // stack with every loop iteration and overflowed a node's stack: the portable dispatch
    // does not).
    let body = r#"
      (local $i i32)
      (loop $again
        (call $set (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $again (i32.lt_u (local.get $i) (i32.const 1000))))
      (i32.const 0)"#;
    let wat = module("k", body);
    let spin = module("", "(loop $forever (br $forever)) (i32.const 0)");
    let handle = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            let mut counter = store(load(COUNTER, Limits::default()), &[]);
            let first = call(&mut counter, Some(b"hits"));
            let mut looping = store(load(&wat, Limits::default()), &[]);
            let looped = call(&mut looping, None);
            // Millions of loop iterations until the fuel runs out.
            let mut spinning = store(load(&spin, Limits::default()), &[]);
            (first, looped, call(&mut spinning, None))
        })
        .unwrap();
    let (first, looped, spun) = handle.join().unwrap();
    assert!(failure(spun).contains("ran out of fuel"));
    assert_eq!(
        first,
        Ok(UpdateResult::UserFunction(Some(Bytes::copy_from_slice(
            &1u64.to_le_bytes()
        ))))
    );
    assert_eq!(looped, Ok(UpdateResult::UserFunction(None)));
}
