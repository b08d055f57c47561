//! End to end on real `rarakoon-bin` processes: a 3-node cluster loads WebAssembly user
//! functions from its config (ADR 0170); a client calls them; every node ends with the same
//! store; a failing call (out of fuel after writing) answers 0x81 and changes nothing; and a
//! node whose module file differs from the configured hash refuses to start, naming the file
//! and both hashes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use rarakoon_client::{Consistency, Entry, RangeQuery, Request, Response};
use rarakoon_node::wasm_functions::sha256_hex;
use support::{ClusterSpec, TestCluster, binary, output_bounded, runtime, wait_for};

const ELECTION: Duration = Duration::from_secs(60);
const CONVERGE: Duration = Duration::from_secs(60);

/// The counter of docs/operations.md: a little-endian u64 under the key given as argument,
/// incremented; the result is the new value.
const COUNTER: &str = include_str!("../../../docs/examples/counter.wat");

/// Writes `spun` = `1`, then loops until its fuel runs out.
const SPIN: &str = r#"(module
  (import "rarakoon" "set" (func $set (param i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "spun1")
  (func (export "call") (result i32)
    (call $set (i32.const 0) (i32.const 4) (i32.const 4) (i32.const 1))
    (loop $forever (br $forever))
    (i32.const 0)))"#;

/// The modules by name, file, text and fuel per call.
const MODULES: [(&str, &str, &str, u64); 2] = [
    ("counter", "counter.wasm", COUNTER, 1_000_000),
    ("spin", "spin.wasm", SPIN, 100_000),
];

/// A 3-node cluster whose config names the modules by paths relative to the config file,
/// with the module files written beside it.
fn cluster() -> TestCluster {
    let mut spec = ClusterSpec::new(3);
    let mut files = Vec::new();
    for (name, file, wat, fuel) in MODULES {
        let wasm = wat::parse_str(wat).unwrap();
        spec.extra_cluster_lines.push(format!(
            "[[cluster.user_functions]]\nname = \"{name}\"\nmodule = \"{file}\"\n\
             sha256 = \"{}\"\nfuel = {fuel}\n",
            sha256_hex(&wasm)
        ));
        files.push((file, wasm));
    }
    let cluster = TestCluster::new(&spec);
    for (file, wasm) in files {
        std::fs::write(cluster.dir.path().join(file), wasm).unwrap();
    }
    cluster
}

/// Every pair node `name` holds (a dirty read of the whole key space).
fn all_entries(cluster: &TestCluster, name: &str) -> Option<Vec<Entry>> {
    let query = RangeQuery {
        consistency: Consistency::NoGuarantees,
        first: None,
        first_inclusive: true,
        last: None,
        last_inclusive: true,
        max: -1,
    };
    match cluster.ask(name, &Request::RangeEntries(query)) {
        Some(Ok(Response::RangeEntries(entries))) => Some(entries),
        _ => None,
    }
}

#[test]
fn a_cluster_runs_wasm_functions_from_its_config_alike_on_every_node() {
    let mut cluster = cluster();
    cluster.start_all();
    let all = ["n0", "n1", "n2"];
    cluster.wait_master(&all, ELECTION);
    let rt = runtime();
    let client = cluster.client(&all);

    // Three increments; each answers the new value. A call whose outcome is unknown (a
    // leadership change) is not repeated blindly: the counter's value is read back instead.
    let mut last = 0u64;
    rt.block_on(async {
        while last < 3 {
            match client.user_function("counter", Some("hits")).await {
                Ok(Some(value)) => {
                    let value = u64::from_le_bytes(value.as_ref().try_into().unwrap());
                    assert!(value > last, "{value} after {last}");
                    last = value;
                }
                Err(rarakoon_client::Error::Indeterminate { .. }) => {
                    last = match client.get("hits").await {
                        Ok(v) => u64::from_le_bytes(v.as_ref().try_into().unwrap()),
                        Err(rarakoon_client::Error::NotFound(_)) => 0,
                        Err(e) => panic!("reading the counter back: {e}"),
                    };
                }
                other => panic!("counter call: {other:?}"),
            }
        }
    });
    let hits = Bytes::copy_from_slice(&last.to_le_bytes());

    // A call that writes, then runs out of fuel: 0x81, and nothing is written anywhere.
    let error = rt
        .block_on(client.user_function("spin", None::<Bytes>))
        .unwrap_err();
    assert!(
        matches!(error, rarakoon_client::Error::UserFunctionFailure(_)),
        "{error:?}"
    );
    assert!(error.to_string().contains("ran out of fuel"), "{error}");
    // A counter whose value is not 8 bytes: the function's own message.
    rt.block_on(support::set_retry(&client, "bad", "abc"));
    let error = rt
        .block_on(client.user_function("counter", Some("bad")))
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("the counter is not 8 bytes long"),
        "{error}"
    );
    // A name no node has is Arakoon's "not found" (bad input).
    let error = rt
        .block_on(client.user_function("nope", None::<Bytes>))
        .unwrap_err();
    assert!(error.to_string().contains("could not be found"), "{error}");

    // A marker written after the failures: once a node has it, it applied everything before.
    rt.block_on(support::set_retry(&client, "zz-marker", "done"));
    let expected: Vec<Entry> = vec![
        (Bytes::from_static(b"bad"), Bytes::from_static(b"abc")),
        (Bytes::from_static(b"hits"), hits),
        (
            Bytes::from_static(b"zz-marker"),
            Bytes::from_static(b"done"),
        ),
    ];
    for name in all {
        cluster.wait_value(name, "zz-marker", "done", CONVERGE);
        let entries = wait_for(&format!("{name} to answer a range read"), CONVERGE, || {
            all_entries(&cluster, name)
        });
        assert_eq!(entries, expected, "store of {name}");
    }
}

#[test]
fn a_node_whose_module_differs_from_the_configured_hash_refuses_to_start() {
    let cluster = cluster();
    let module = cluster.dir.path().join("counter.wasm");
    let configured = sha256_hex(&std::fs::read(&module).unwrap());
    // check-config loads the module and prints its hash while it matches...
    let (code, out, err) = cluster.cli(&["check-config", cluster.config_file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("user function `counter`") && out.contains(&configured),
        "{out}"
    );
    // Another valid module under the same name.
    let other =
        wat::parse_str(r#"(module (func (export "call") (result i32) (i32.const 0)))"#).unwrap();
    std::fs::write(&module, &other).unwrap();
    let output = output_bounded(
        Command::new(binary())
            .arg("--config")
            .arg(&cluster.config_file)
            .arg("--node")
            .arg("n0"),
        Duration::from_secs(60),
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("counter.wasm"), "{stderr}");
    assert!(stderr.contains(&configured), "{stderr}");
    assert!(stderr.contains(&sha256_hex(&other)), "{stderr}");
    // ...and refuses the config once it does not, naming the file and both hashes.
    let (code, _, err) = cluster.cli(&["check-config", cluster.config_file.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        err.contains("counter.wasm")
            && err.contains(&configured)
            && err.contains(&sha256_hex(&other)),
        "{err}"
    );
}

#[test]
fn nodes_with_other_functions_refuse_each_other() {
    let mut cluster = cluster();
    // n2's config gives the counter other limits: other results are possible, so its peers
    // must not take it in (the functions are part of the handshake's membership view).
    let text = std::fs::read_to_string(&cluster.config_file).unwrap();
    let other = text.replacen("fuel = 1000000", "fuel = 2000000", 1);
    assert_ne!(other, text);
    let n2_config = cluster.dir.path().join("n2.toml");
    std::fs::write(&n2_config, other).unwrap();
    cluster.use_node_config("n2", n2_config);
    cluster.start_all();
    cluster.wait_master(&["n0", "n1"], ELECTION);
    for name in ["n0", "n1", "n2"] {
        wait_for(&format!("{name} to log the refused link"), CONVERGE, || {
            let log = cluster.log(name);
            (log.contains("membership views differ") && log.contains("fuel:2000000")).then_some(())
        });
    }
    // The two alike still serve the function.
    let rt = runtime();
    let client = cluster.client(&["n0", "n1"]);
    let value = rt
        .block_on(client.user_function("counter", Some("hits")))
        .unwrap();
    assert_eq!(value, Some(Bytes::copy_from_slice(&1u64.to_le_bytes())));
}
