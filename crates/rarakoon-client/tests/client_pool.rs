//! One `Client` shared by many tasks: requests run at once over up to
//! `max_connections_per_node` connections, never more, each answered correctly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::Recorder;
use rarakoon_client::listener::{ConnectionInfo, Handler, Listener, ListenerConfig, Outcome};
use rarakoon_client::{Client, ClientConfig, Request};
use tokio::sync::Barrier;

const CLUSTER: &str = "arakoon";

/// The recorder, plus: which connections requests came on, how many ran at once, and a
/// barrier the first `hold` requests wait at together (so they must run at once).
struct Watched {
    store: Recorder,
    connections: Mutex<BTreeSet<u64>>,
    running: AtomicUsize,
    peak: AtomicUsize,
    barrier: Barrier,
    to_hold: AtomicUsize,
}

impl Watched {
    fn new(hold: usize) -> Arc<Watched> {
        Arc::new(Watched {
            store: Recorder::new("node_0"),
            connections: Mutex::new(BTreeSet::new()),
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            barrier: Barrier::new(hold.max(1)),
            to_hold: AtomicUsize::new(hold),
        })
    }
}

impl Handler for Watched {
    async fn handle(&self, c: &ConnectionInfo, request: Request) -> Outcome {
        self.connections.lock().unwrap().insert(c.id);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let held = !matches!(request, Request::WhoMaster)
            && self
                .to_hold
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if held {
            // Bounded, so that a client that never runs them at once fails the peak check
            // below instead of hanging the test.
            let _ = tokio::time::timeout(Duration::from_secs(5), self.barrier.wait()).await;
        }
        let outcome = Outcome::new(self.store.answer(request));
        self.running.fetch_sub(1, Ordering::SeqCst);
        outcome
    }
}

async fn start(handler: Arc<Watched>) -> Listener {
    Listener::bind(
        "127.0.0.1:0".parse().unwrap(),
        ListenerConfig::new(CLUSTER),
        handler,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_on_one_client_run_at_once_over_at_most_the_configured_connections() {
    const POOL: usize = 3;
    // The first three requests are held until all three are in the handler together: with
    // fewer connections than that (one request at a time each) the test would time out.
    let handler = Watched::new(POOL);
    let listener = start(handler.clone()).await;
    let mut config = ClientConfig::new(CLUSTER).node("node_0", listener.local_addr());
    config.max_connections_per_node = POOL;
    config.request_timeout = Duration::from_secs(30);
    config.max_attempts = 1;
    let client = Client::new(config).unwrap();
    let mut tasks = Vec::new();
    for t in 0..64 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                let key = format!("t{t}/{i}");
                let value = Bytes::from(format!("{t}.{i}"));
                c.set(key.clone(), value.clone()).await.unwrap();
                assert_eq!(c.get(key).await.unwrap(), value);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(handler.store.writes().len(), 640);
    let used = handler.connections.lock().unwrap().len();
    assert!(used <= POOL, "{used} connections for a pool of {POOL}");
    assert_eq!(handler.peak.load(Ordering::SeqCst), POOL);
    // Idle connections stay open for later requests: the listener still serves them all.
    assert_eq!(listener.stats().snapshot().connections, used);
    listener.shutdown().await;
}
