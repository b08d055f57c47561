//! Pipelined requests on one connection: the listener reads ahead, lets writes overlap,
//! starts a read only once every earlier request finished, answers strictly in order, and
//! stops at an outcome that closes the connection. Handlers here finish requests when the
//! test says so (gates), or after random delays, so the order of completion differs from
//! the order of arrival.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use common::Recorder;
use proptest::prelude::*;
use rarakoon_client::listener::{
    Admission, ConnectionInfo, Handler, Listener, ListenerConfig, Outcome,
};
use rarakoon_client::{
    ClientCodec, Consistency, ErrorCode, ErrorReply, Limits, Prologue, Reply, Request, Response,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore};
use tokio_util::codec::{Decoder, Encoder};

const CLUSTER: &str = "arakoon";
/// Turns a hang into a failure; never reached when the listener works.
const SAFETY: std::time::Duration = std::time::Duration::from_secs(30);

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// A raw client connection speaking the protocol with the client codec.
struct Raw {
    stream: TcpStream,
    codec: ClientCodec,
    input: BytesMut,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        let mut raw = Raw {
            stream: TcpStream::connect(addr).await.unwrap(),
            codec: ClientCodec::new(Limits::default()),
            input: BytesMut::new(),
        };
        let mut out = BytesMut::new();
        raw.codec
            .encode(
                &Prologue {
                    cluster_id: b(CLUSTER),
                },
                &mut out,
            )
            .unwrap();
        raw.stream.write_all(&out).await.unwrap();
        raw
    }

    /// Sends all requests in one write (the listener sees them together).
    async fn send(&mut self, requests: &[Request]) {
        let mut out = BytesMut::new();
        for r in requests {
            self.codec.encode(r, &mut out).unwrap();
        }
        self.stream.write_all(&out).await.unwrap();
    }

    /// The next reply, or None once the server closed the connection.
    async fn reply(&mut self) -> Option<Reply> {
        tokio::time::timeout(SAFETY, self.next_reply())
            .await
            .expect("no reply and no close")
    }

    async fn next_reply(&mut self) -> Option<Reply> {
        loop {
            if let Some((_, reply)) = self.codec.decode(&mut self.input).unwrap() {
                return Some(reply);
            }
            if self.stream.read_buf(&mut self.input).await.unwrap_or(0) == 0 {
                return None;
            }
        }
    }

    async fn replies(&mut self, n: usize) -> Vec<Reply> {
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(self.reply().await.expect("a reply before the close"));
        }
        out
    }

    /// Asserts the server closes the connection without sending anything more.
    async fn assert_closed(&mut self) {
        let mut rest = Vec::new();
        let _ = self.stream.read_to_end(&mut rest).await;
        self.input.extend_from_slice(&rest);
        assert!(
            self.input.is_empty(),
            "unexpected bytes before the close: {:?}",
            &self.input[..]
        );
    }
}

/// A handler that logs each request's start and finish (numbered in the order the handler
/// first sees them), holds the requests `gated` selects until the test opens their gate,
/// answers from a write recorder (no store semantics, see `common`) when they finish, and
/// refuses key `refuse` with NotMaster.
struct Gated {
    store: Recorder,
    gated: fn(&Request) -> bool,
    next: AtomicU64,
    gates: Mutex<HashMap<u64, Arc<Semaphore>>>,
    log: Mutex<Vec<String>>,
    changed: Notify,
}

impl Gated {
    fn new(gated: fn(&Request) -> bool) -> Arc<Gated> {
        Arc::new(Gated {
            store: Recorder::new("node_0"),
            gated,
            next: AtomicU64::new(0),
            gates: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
            changed: Notify::new(),
        })
    }

    fn gate(&self, i: u64) -> Arc<Semaphore> {
        self.gates
            .lock()
            .unwrap()
            .entry(i)
            .or_insert_with(|| Arc::new(Semaphore::new(0)))
            .clone()
    }

    fn open(&self, i: u64) {
        self.gate(i).add_permits(1);
    }

    fn record(&self, event: String) {
        self.log.lock().unwrap().push(event);
        self.changed.notify_waiters();
    }

    fn events(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until `event` was logged (failing, not hanging, if it never is).
    async fn wait_for(&self, event: &str) {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                if self.events().iter().any(|e| e == event) {
                    return;
                }
                changed.await;
            }
        };
        if tokio::time::timeout(SAFETY, wait).await.is_err() {
            panic!("{event:?} never happened; events: {:?}", self.events());
        }
    }
}

struct DropGuard<'a> {
    handler: &'a Gated,
    i: u64,
    done: bool,
}

impl Drop for DropGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.handler.record(format!("dropped {}", self.i));
        }
    }
}

fn key_of(request: &Request) -> Option<&Bytes> {
    match request {
        Request::Set { key, .. }
        | Request::Get { key, .. }
        | Request::Replace { key, .. }
        | Request::Delete { key } => Some(key),
        _ => None,
    }
}

impl Handler for Gated {
    async fn handle(&self, _c: &ConnectionInfo, request: Request) -> Outcome {
        let i = self.next.fetch_add(1, Ordering::SeqCst);
        self.record(format!("start {i} {}", request.opcode().name()));
        let mut guard = DropGuard {
            handler: self,
            i,
            done: false,
        };
        if (self.gated)(&request) {
            self.gate(i).acquire().await.unwrap().forget();
        }
        let outcome = if key_of(&request).is_some_and(|k| &k[..] == b"refuse") {
            ErrorReply::new(ErrorCode::NotMaster, "node_1").into()
        } else {
            Outcome::new(self.store.answer(request))
        };
        guard.done = true;
        self.record(format!("finish {i}"));
        outcome
    }
}

async fn start<H: Handler>(handler: Arc<H>, config: ListenerConfig) -> Listener {
    Listener::bind("127.0.0.1:0".parse().unwrap(), config, handler)
        .await
        .unwrap()
}

fn is_write(r: &Request) -> bool {
    Admission::of(r) == Admission::Write
}

#[tokio::test]
async fn pipelined_writes_overlap_finish_out_of_order_and_a_later_read_sees_them_all() {
    let handler = Gated::new(is_write);
    for i in 0..8 {
        assert_eq!(
            handler.store.answer(Request::Set {
                key: b(&format!("k{i}")),
                value: b(&format!("old{i}")),
            }),
            Ok(Response::Set)
        );
    }
    let listener = start(handler.clone(), ListenerConfig::new(CLUSTER)).await;
    let mut raw = Raw::connect(listener.local_addr()).await;
    // Eight replaces (each answers its key's old value, so the replies tell which request
    // they answer), then reads of every key, all in one write.
    let mut requests: Vec<Request> = (0..8)
        .map(|i| Request::Replace {
            key: b(&format!("k{i}")),
            wanted: Some(b(&format!("new{i}"))),
        })
        .collect();
    requests.push(Request::MultiGet {
        consistency: Consistency::Consistent,
        keys: (0..8).map(|i| b(&format!("k{i}"))).collect(),
    });
    requests.push(Request::Get {
        consistency: Consistency::Consistent,
        key: b("k7"),
    });
    raw.send(&requests).await;
    // All eight writes start before any finished: they overlap.
    handler.wait_for("start 7 replace").await;
    assert_eq!(
        handler.events(),
        (0..8)
            .map(|i| format!("start {i} replace"))
            .collect::<Vec<_>>(),
        "the writes start in arrival order, and the read waits"
    );
    // They finish in reverse order; the read starts only after the last of them.
    for i in (1..8).rev() {
        handler.open(i);
        handler.wait_for(&format!("finish {i}")).await;
        assert!(
            !handler.events().iter().any(|e| e.contains("multi_get")),
            "the read started while write 0 was running"
        );
    }
    handler.open(0);
    let replies = raw.replies(10).await;
    for (i, reply) in replies[..8].iter().enumerate() {
        assert_eq!(
            reply,
            &Ok(Response::Replace(Some(b(&format!("old{i}"))))),
            "reply {i} answers request {i}"
        );
    }
    assert_eq!(
        replies[8],
        Ok(Response::MultiGet(
            (0..8).map(|i| b(&format!("new{i}"))).collect()
        ))
    );
    assert_eq!(replies[9], Ok(Response::Get(b("new7"))));
    let events = handler.events();
    let read_start = events
        .iter()
        .position(|e| e == "start 8 multi_get")
        .unwrap();
    assert!(
        (0..8).all(|i| events[..read_start].contains(&format!("finish {i}"))),
        "{events:?}"
    );
    assert!(listener.stats().snapshot().requests_in_flight_peak >= 8);
    listener.shutdown().await;
}

#[tokio::test]
async fn a_write_after_a_read_waits_for_the_read_and_a_read_waits_for_every_earlier_write() {
    // Everything is gated: R0 W1 W2 R3 W4.
    let handler = Gated::new(|_| true);
    let listener = start(handler.clone(), ListenerConfig::new(CLUSTER)).await;
    let mut raw = Raw::connect(listener.local_addr()).await;
    let get = |k: &str| Request::Get {
        consistency: Consistency::Consistent,
        key: b(k),
    };
    let set = |k: &str, v: &str| Request::Set {
        key: b(k),
        value: b(v),
    };
    raw.send(&[
        get("a"),
        set("a", "1"),
        set("b", "2"),
        get("a"),
        set("a", "3"),
    ])
    .await;
    handler.wait_for("start 0 get").await;
    handler.open(0);
    // Once the read finished, both writes start (overlapping), the read behind them waits.
    handler.wait_for("start 2 set").await;
    handler.open(2);
    handler.wait_for("finish 2").await;
    assert!(!handler.events().iter().any(|e| e.starts_with("start 3")));
    handler.open(1);
    handler.wait_for("start 3 get").await;
    // The write after the read waits for it.
    assert!(!handler.events().iter().any(|e| e.starts_with("start 4")));
    handler.open(3);
    handler.wait_for("start 4 set").await;
    handler.open(4);
    let replies = raw.replies(5).await;
    assert_eq!(
        replies,
        vec![
            Err(ErrorReply::new(ErrorCode::NotFound, "Not_found")),
            Ok(Response::Set),
            Ok(Response::Set),
            Ok(Response::Get(b("1"))),
            Ok(Response::Set),
        ]
    );
    assert_eq!(
        handler.events(),
        [
            "start 0 get",
            "finish 0",
            "start 1 set",
            "start 2 set",
            "finish 2",
            "finish 1",
            "start 3 get",
            "finish 3",
            "start 4 set",
            "finish 4"
        ]
    );
    listener.shutdown().await;
}

#[tokio::test]
async fn requests_in_flight_per_connection_are_bounded() {
    let handler = Gated::new(is_write);
    let mut config = ListenerConfig::new(CLUSTER);
    config.max_in_flight = 8;
    let listener = start(handler.clone(), config).await;
    let mut raw = Raw::connect(listener.local_addr()).await;
    let requests: Vec<Request> = (0..100)
        .map(|i| Request::Set {
            key: b(&format!("k{i:03}")),
            value: b("v"),
        })
        .collect();
    raw.send(&requests).await;
    handler.wait_for("start 7 set").await;
    // Each finished write lets exactly one more in.
    for i in 0..100 {
        handler.open(i);
        if i + 8 < 100 {
            handler.wait_for(&format!("start {} set", i + 8)).await;
        }
        let started = handler
            .events()
            .iter()
            .filter(|e| e.starts_with("start"))
            .count() as u64;
        assert!(started <= (i + 1) + 8, "{started} started after {i} opened");
    }
    let replies = raw.replies(100).await;
    assert!(replies.iter().all(|r| *r == Ok(Response::Set)));
    assert_eq!(handler.store.last_write(b"k099"), Some(b("v")));
    let stats = listener.stats().snapshot();
    assert_eq!(stats.requests_in_flight_peak, 8);
    assert_eq!(stats.requests_in_flight, 0);
    listener.shutdown().await;
}

#[tokio::test]
async fn an_exclusive_request_that_closes_the_connection_stops_everything_after_it() {
    let handler = Gated::new(|_| false);
    let listener = start(handler.clone(), ListenerConfig::new(CLUSTER)).await;
    let mut raw = Raw::connect(listener.local_addr()).await;
    raw.send(&[
        Request::Get {
            consistency: Consistency::Consistent,
            key: b("refuse"),
        },
        Request::Set {
            key: b("after"),
            value: b("v"),
        },
        Request::Get {
            consistency: Consistency::Consistent,
            key: b("after"),
        },
    ])
    .await;
    assert_eq!(
        raw.reply().await,
        Some(Err(ErrorReply::new(ErrorCode::NotMaster, "node_1")))
    );
    raw.assert_closed().await;
    assert_eq!(handler.events(), ["start 0 get", "finish 0"]);
    assert_eq!(handler.store.last_write(b"after"), None);
    listener.shutdown().await;
}

#[tokio::test]
async fn a_write_that_closes_the_connection_drops_the_overlapping_writes_and_starts_nothing_more() {
    let handler = Gated::new(is_write);
    let listener = start(handler.clone(), ListenerConfig::new(CLUSTER)).await;
    let mut raw = Raw::connect(listener.local_addr()).await;
    raw.send(&[
        Request::Set {
            key: b("first"),
            value: b("v"),
        },
        Request::Set {
            key: b("refuse"),
            value: b("v"),
        },
        Request::Set {
            key: b("overlapping"),
            value: b("v"),
        },
        Request::Get {
            consistency: Consistency::Consistent,
            key: b("first"),
        },
        Request::Set {
            key: b("later"),
            value: b("v"),
        },
    ])
    .await;
    handler.wait_for("start 2 set").await;
    // The refusal is known before the write ahead of it finished: that one is still
    // answered, the overlapping one behind is cancelled, nothing else starts.
    handler.open(1);
    handler.wait_for("dropped 2").await;
    handler.open(0);
    assert_eq!(raw.reply().await, Some(Ok(Response::Set)));
    assert_eq!(
        raw.reply().await,
        Some(Err(ErrorReply::new(ErrorCode::NotMaster, "node_1")))
    );
    raw.assert_closed().await;
    assert_eq!(
        handler.events(),
        [
            "start 0 set",
            "start 1 set",
            "start 2 set",
            "finish 1",
            "dropped 2",
            "finish 0"
        ]
    );
    assert_eq!(handler.store.last_write(b"first"), Some(b("v")));
    assert_eq!(handler.store.last_write(b"overlapping"), None);
    assert_eq!(handler.store.last_write(b"later"), None);
    let stats = listener.stats().snapshot();
    assert_eq!((stats.requests_in_flight, stats.request_bytes), (0, 0));
    listener.shutdown().await;
}

#[tokio::test]
async fn a_client_that_half_closes_after_pipelining_gets_every_reply() {
    let handler = Gated::new(|_| false);
    let listener = start(handler.clone(), ListenerConfig::new(CLUSTER)).await;
    let mut raw = Raw::connect(listener.local_addr()).await;
    // More requests than may be in flight at once: those still buffered at the end of input
    // are served too.
    let mut requests: Vec<Request> = (0..200)
        .map(|i| Request::Set {
            key: b(&format!("k{i}")),
            value: b(&format!("v{i}")),
        })
        .collect();
    requests.push(Request::GetKeyCount);
    raw.send(&requests).await;
    raw.stream.shutdown().await.unwrap();
    let replies = raw.replies(201).await;
    assert!(replies[..200].iter().all(|r| *r == Ok(Response::Set)));
    assert_eq!(replies[200], Ok(Response::GetKeyCount(200)));
    raw.assert_closed().await;
    listener.shutdown().await;
}

#[tokio::test]
async fn requests_buffered_behind_a_full_pipeline_at_the_end_of_input_are_still_served() {
    // The first write is held; the read behind it waits, and the client half-closes: the
    // listener has read everything and the end of input before the pipeline drains. Then
    // more requests are buffered than may be in flight at once.
    let handler = Gated::new(|r| matches!(r, Request::Set { key, .. } if &key[..] == b"slow"));
    let listener = start(handler.clone(), ListenerConfig::new(CLUSTER)).await;
    let mut raw = Raw::connect(listener.local_addr()).await;
    let mut requests = vec![
        Request::Set {
            key: b("slow"),
            value: b("v"),
        },
        Request::Get {
            consistency: Consistency::Consistent,
            key: b("slow"),
        },
    ];
    requests.extend((0..200).map(|i| Request::Set {
        key: b(&format!("k{i}")),
        value: b("v"),
    }));
    requests.push(Request::GetKeyCount);
    raw.send(&requests).await;
    raw.stream.shutdown().await.unwrap();
    handler.wait_for("start 0 set").await;
    // Let the listener take in everything, the end of input included, before the write
    // finishes (scheduler turns, no clock).
    for _ in 0..1000 {
        tokio::task::yield_now().await;
    }
    handler.open(0);
    let replies = raw.replies(requests.len()).await;
    assert_eq!(replies[1], Ok(Response::Get(b("v"))));
    assert_eq!(replies[requests.len() - 1], Ok(Response::GetKeyCount(201)));
    raw.assert_closed().await;
    listener.shutdown().await;
}

/// A handler shaped like the node: a write is queued in a log when it starts and applied,
/// in log order, when it "commits" (after a delay); it answers after another delay. A read
/// answers from what is applied when it runs, after its own delays. Delays are numbers of
/// yields, drawn per request by the test.
struct Logged {
    store: Recorder,
    delays: Mutex<VecDeque<(u8, u8)>>,
    log: Mutex<LogState>,
}

#[derive(Default)]
struct LogState {
    next: u64,
    queued: VecDeque<(u64, Request)>,
    results: HashMap<u64, Reply>,
}

impl Logged {
    fn apply_through(&self, seq: u64) {
        let mut log = self.log.lock().unwrap();
        while log.queued.front().is_some_and(|(s, _)| *s <= seq) {
            let (s, request) = log.queued.pop_front().unwrap();
            let result = self.store.answer(request);
            log.results.insert(s, result);
        }
    }
}

async fn yields(n: u8) {
    for _ in 0..n {
        tokio::task::yield_now().await;
    }
}

impl Handler for Logged {
    async fn handle(&self, _c: &ConnectionInfo, request: Request) -> Outcome {
        let (before, after) = self.delays.lock().unwrap().pop_front().unwrap_or((0, 0));
        if Admission::of(&request) == Admission::Write {
            let seq = {
                let mut log = self.log.lock().unwrap();
                let seq = log.next;
                log.next += 1;
                log.queued.push_back((seq, request));
                seq
            };
            yields(before).await;
            self.apply_through(seq);
            yields(after).await;
            let result = self.log.lock().unwrap().results.remove(&seq).unwrap();
            Outcome::new(result)
        } else {
            yields(before).await;
            let result = self.store.answer(request);
            yields(after).await;
            Outcome::new(result)
        }
    }
}

fn key() -> impl Strategy<Value = Bytes> {
    prop_oneof![Just(b("a")), Just(b("b")), Just(b("ab"))]
}

fn value() -> impl Strategy<Value = Bytes> {
    prop_oneof![Just(b("")), Just(b("1")), Just(b("2"))]
}

fn request() -> impl Strategy<Value = Request> {
    let c = Consistency::Consistent;
    prop_oneof![
        (key(), value()).prop_map(|(key, value)| Request::Set { key, value }),
        key().prop_map(|key| Request::Delete { key }),
        key().prop_map(move |key| Request::Get {
            consistency: c,
            key
        }),
        key().prop_map(move |key| Request::Exists {
            consistency: c,
            key
        }),
        (key(), prop::option::of(value()))
            .prop_map(|(key, wanted)| Request::Replace { key, wanted }),
        Just(Request::MultiGet {
            consistency: c,
            keys: vec![b("a"), b("b"), b("ab")],
        }),
        Just(Request::GetKeyCount),
        Just(Request::Nop),
    ]
}

proptest! {
    /// Whatever the mix of requests and the order in which the handler finishes them, the
    /// replies of one pipelined connection and the order the writes ran in are those of running the
    /// requests one at a time, in order.
    #[test]
    fn pipelined_requests_answer_as_if_run_one_at_a_time(
        cases in prop::collection::vec((request(), 0u8..4, 0u8..4), 1..40)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let requests: Vec<Request> = cases.iter().map(|(r, _, _)| r.clone()).collect();
        let model = Recorder::new("node_0");
        let mut expected = Vec::new();
        for r in &requests {
            let outcome = Outcome::new(model.answer(r.clone()));
            let close = outcome.close;
            expected.push(outcome.reply);
            if close {
                break;
            }
        }
        let handler = Arc::new(Logged {
            store: Recorder::new("node_0"),
            delays: Mutex::new(cases.iter().map(|(_, a, b)| (*a, *b)).collect()),
            log: Mutex::new(LogState::default()),
        });
        let got = runtime.block_on(async {
            let listener = start(handler.clone(), ListenerConfig::new(CLUSTER)).await;
            let mut raw = Raw::connect(listener.local_addr()).await;
            raw.send(&requests).await;
            let got = raw.replies(expected.len()).await;
            listener.shutdown().await;
            got
        });
        prop_assert_eq!(got, expected);
        // The handler ran the writes in the order a one-at-a-time run does.
        prop_assert_eq!(handler.store.writes(), model.writes());
    }
}
