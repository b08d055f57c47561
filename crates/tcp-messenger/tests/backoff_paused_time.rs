//! Reconnection timing under Tokio's paused clock: the exponential schedule, the cap, and the
//! reset after a successful handshake, asserted in virtual time (no real sleeping).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestMsg, config};
use std::collections::BTreeMap;
use std::time::Duration;
use tcp_messenger::{BackoffConfig, Messenger};
use tokio::net::TcpListener;
use tokio::time::{Instant, sleep_until};

#[tokio::test(start_paused = true)]
async fn backoff_doubles_caps_and_resets_after_handshake() {
    let a_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    // Reserve b's port, then free it so connects are refused until b starts.
    let b_probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addrs: BTreeMap<String, _> = [
        ("a".to_owned(), a_listener.local_addr().unwrap()),
        ("b".to_owned(), b_probe.local_addr().unwrap()),
    ]
    .into_iter()
    .collect();
    drop(b_probe);

    let mut cfg = config("a", addrs["a"], &addrs);
    cfg.backoff = BackoffConfig {
        initial: Duration::from_secs(1),
        cap: Duration::from_secs(4),
        jitter_per_mille: 0,
        connect_timeout: Duration::from_secs(3600),
        handshake_timeout: Duration::from_secs(3600),
    };
    let t0 = Instant::now();
    let (a, _a_inbox) = Messenger::<TestMsg>::start_with_listener(cfg, a_listener).unwrap();
    let failed = || a.counters().peers["b"].failed_attempts;

    // Attempts at t = 0, 1, 3, 7, 11, 15 (delays 1, 2, 4, then capped at 4).
    for (at_ms, want) in [
        (500, 1),
        (1500, 2),
        (3500, 3),
        (7500, 4),
        (11500, 5),
        (15500, 6),
    ] {
        sleep_until(t0 + Duration::from_millis(at_ms)).await;
        assert_eq!(failed(), want, "failed attempts at t={at_ms}ms");
    }

    // b comes up; a's next attempt (t = 19) succeeds.
    let b_listener = TcpListener::bind(addrs["b"]).await.unwrap();
    let (b, mut b_inbox) =
        Messenger::<TestMsg>::start_with_listener(config("b", addrs["b"], &addrs), b_listener)
            .unwrap();
    a.wait_established("b", 1).await.unwrap();
    assert_eq!(Instant::now() - t0, Duration::from_secs(19));
    assert_eq!(failed(), 6);
    a.send("b", &TestMsg::Blob(vec![1])).unwrap();
    assert_eq!(b_inbox.recv().await.unwrap().msg, TestMsg::Blob(vec![1]));

    // b goes away: after the reset, a retries after the initial 1 s, not the 4 s cap.
    b.shutdown().await;
    drop(b);
    let down = Instant::now();
    sleep_until(down + Duration::from_millis(1500)).await;
    assert_eq!(
        failed(),
        7,
        "first retry after a reset comes after `initial`"
    );
    sleep_until(down + Duration::from_millis(2500)).await;
    assert_eq!(failed(), 7, "second retry waits 2 s");
    sleep_until(down + Duration::from_millis(3500)).await;
    assert_eq!(failed(), 8);
    a.shutdown().await;
}
