//! Concurrent clients that record a history of get / set / test_and_set / delete on a few keys,
//! with invoke and complete times and indeterminate outcomes, for the linearizability checker.
//!
//! Outcome rules (what the history may claim):
//! - a read that failed is left out: it had no effect;
//! - a write refused before it was proposed (`NotMaster`, no master found) is left out;
//! - any other failed write is recorded with no completion: it may or may not have taken
//!   effect, at any time after its invocation (the checker tries both);
//! - every answered operation is recorded with its answer.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use paxos_core::linearizability::{HistoryOp, KvOp, KvResult};
use std::net::SocketAddr;

use rarakoon_client::{Client, Consistency, Error, Request, Response};

/// The shared recorder.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    ops: Mutex<Vec<HistoryOp>>,
    /// Writes acknowledged (counted to wait for progress).
    pub acked_writes: AtomicU64,
    /// Operations whose outcome is unknown.
    pub indeterminate: AtomicU64,
    pub stop: AtomicBool,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
            acked_writes: AtomicU64::new(0),
            indeterminate: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap()
    }

    pub fn history(&self) -> Vec<HistoryOp> {
        self.ops.lock().unwrap().clone()
    }

    fn record(&self, op: HistoryOp) {
        self.ops.lock().unwrap().push(op);
    }
}

fn definitely_not_applied(e: &Error) -> bool {
    matches!(e, Error::NotMaster(_) | Error::NoMaster { .. })
}

/// A small deterministic-per-client random source (std only).
struct Dice(u64, RandomState);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 += 1;
        self.1.hash_one(self.0)
    }
}

/// Where a client's reads go.
#[derive(Debug, Clone)]
pub enum Reads {
    /// Consistent reads through the client (served by the master under its lease).
    Consistent,
    /// Broken on purpose: each read goes to a random node and is served from its local store,
    /// as a node that serves "consistent" reads without holding the lease would. Recorded as if
    /// consistent, so the checker must catch it.
    AnyNode {
        /// The cluster id for the prologue.
        cluster_id: String,
        /// Every node's client address.
        nodes: Vec<SocketAddr>,
    },
}

/// One client's loop: random operations on `keys` until `recorder.stop`.
pub async fn run_client(
    id: usize,
    client: Client,
    keys: Vec<Bytes>,
    recorder: Arc<Recorder>,
    reads: Reads,
) {
    let reader = client.with_consistency(Consistency::Consistent);
    let mut dice = Dice(0, RandomState::new());
    let mut seq = 0u64;
    let mut last_seen: Vec<Option<Bytes>> = vec![None; keys.len()];
    while !recorder.stop.load(Ordering::SeqCst) {
        let k = (dice.next() % keys.len() as u64) as usize;
        let key = keys[k].clone();
        seq += 1;
        let value = Bytes::from(format!("c{id}-{seq}"));
        let roll = dice.next() % 100;
        let invoked = recorder.now();
        let mut op = HistoryOp {
            key: key.to_vec(),
            op: KvOp::Get,
            invoked,
            completed: None,
        };
        if roll < 40 {
            let read = match &reads {
                Reads::Consistent => reader.get_option(key.clone()).await.ok(),
                Reads::AnyNode { cluster_id, nodes } => {
                    let addr = nodes[(dice.next() % nodes.len() as u64) as usize];
                    dirty_get(cluster_id.clone(), addr, key.clone()).await
                }
            };
            match read.ok_or(()) {
                Ok(v) => {
                    last_seen[k] = v.clone();
                    op.completed = Some((
                        recorder.now(),
                        match v {
                            Some(v) => KvResult::Value(Some(v.to_vec())),
                            None => KvResult::NotFound,
                        },
                    ));
                }
                Err(_) => continue,
            }
        } else {
            let result = if roll < 70 {
                op.op = KvOp::Set(value.to_vec());
                client
                    .set(key.clone(), value.clone())
                    .await
                    .map(|()| KvResult::Ok)
            } else if roll < 85 {
                let expected = last_seen[k].clone();
                op.op = KvOp::TestAndSet {
                    expected: expected.as_ref().map(|b| b.to_vec()),
                    new: Some(value.to_vec()),
                };
                client
                    .test_and_set(key.clone(), expected, Some(value.clone()))
                    .await
                    .map(|old| KvResult::Value(old.map(|b| b.to_vec())))
            } else {
                op.op = KvOp::Delete;
                match client.delete(key.clone()).await {
                    Ok(()) => Ok(KvResult::Ok),
                    Err(Error::NotFound(_)) => Ok(KvResult::NotFound),
                    Err(e) => Err(e),
                }
            };
            match result {
                Ok(r) => {
                    recorder.acked_writes.fetch_add(1, Ordering::SeqCst);
                    op.completed = Some((recorder.now(), r));
                }
                Err(e) if definitely_not_applied(&e) => continue,
                Err(_) => {
                    recorder.indeterminate.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        recorder.record(op);
    }
}

/// A `NoGuarantees` get straight to one node's local store; `None` if it did not answer.
async fn dirty_get(cluster_id: String, addr: SocketAddr, key: Bytes) -> Option<Option<Bytes>> {
    tokio::task::spawn_blocking(move || {
        let request = Request::Get {
            consistency: Consistency::NoGuarantees,
            key,
        };
        match crate::support::ask_addr(&cluster_id, addr, &request)? {
            Ok(Response::Get(v)) => Some(Some(v)),
            Err(e) if e.code == rarakoon_client::ErrorCode::NotFound => Some(None),
            _ => None,
        }
    })
    .await
    .ok()
    .flatten()
}
