//! Property tests: random event sequences, times and jitter keep the machine's invariants.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use connection_fsm::{Action, BackoffConfig, ConnectionFsm, Event, State};
use proptest::prelude::*;
use std::time::{Duration, Instant};

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        2 => Just(Event::Start),
        2 => Just(Event::Connected),
        2 => Just(Event::ConnectFailed),
        2 => Just(Event::HandshakeAccepted),
        2 => Just(Event::HandshakeFailed),
        2 => Just(Event::Disconnected),
        5 => Just(Event::DeadlineReached),
        1 => Just(Event::Close),
    ]
}

fn config() -> impl Strategy<Value = BackoffConfig> {
    (
        1u64..1000,
        1u64..100_000,
        0u16..=1200,
        1u64..5000,
        1u64..5000,
    )
        .prop_map(|(initial, cap, jitter, connect, handshake)| BackoffConfig {
            initial: Duration::from_millis(initial),
            cap: Duration::from_millis(cap),
            jitter_per_mille: jitter,
            connect_timeout: Duration::from_millis(connect),
            handshake_timeout: Duration::from_millis(handshake),
        })
}

proptest! {
    #[test]
    fn invariants_hold(
        cfg in config(),
        steps in proptest::collection::vec((event(), 0u64..3000, any::<u32>()), 0..300),
    ) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut fsm = ConnectionFsm::new(cfg);
        let mut closed = false;
        for (event, advance_ms, jitter) in steps {
            now += Duration::from_millis(advance_ms);
            let before = fsm.state();
            let failures_before = fsm.failures();
            let action = fsm.step(now, event, jitter);
            if closed {
                prop_assert_eq!(action, Action::None);
                prop_assert_eq!(fsm.state(), State::Closed);
                continue;
            }
            match action {
                Action::Backoff { until, failures } => {
                    prop_assert_eq!(failures, failures_before + 1);
                    prop_assert_eq!(fsm.failures(), failures);
                    let base = cfg.base_delay(failures);
                    let delay = until - now;
                    prop_assert!(delay <= base && base <= cfg.cap.max(cfg.initial.min(cfg.cap)));
                    let max_removed = base.as_nanos() * u128::from(cfg.jitter_per_mille.min(1000)) / 1000;
                    prop_assert!(base.as_nanos() - delay.as_nanos() <= max_removed);
                    prop_assert_eq!(fsm.state(), State::BackingOff { until });
                }
                Action::Ready => {
                    let was_handshaking = matches!(before, State::Handshaking { .. });
                    prop_assert!(was_handshaking);
                    prop_assert_eq!(fsm.failures(), 0);
                    prop_assert_eq!(fsm.state(), State::Connected);
                }
                Action::Connect { deadline } => {
                    prop_assert_eq!(deadline, now + cfg.connect_timeout);
                    prop_assert_eq!(fsm.state(), State::Connecting { deadline });
                    prop_assert_eq!(fsm.failures(), failures_before);
                }
                Action::Handshake { deadline } => {
                    let was_connecting = matches!(before, State::Connecting { .. });
                    prop_assert!(was_connecting);
                    prop_assert_eq!(deadline, now + cfg.handshake_timeout);
                }
                Action::Shutdown => {
                    prop_assert_eq!(event, Event::Close);
                    closed = true;
                }
                Action::None => {
                    prop_assert_eq!(fsm.state(), before, "a no-op must not change state");
                }
            }
            // Every waiting state exposes its deadline, and only those.
            let has_deadline = matches!(
                fsm.state(),
                State::Connecting { .. } | State::Handshaking { .. } | State::BackingOff { .. }
            );
            prop_assert_eq!(fsm.deadline().is_some(), has_deadline);
        }
    }

    /// Without jitter, the delays of consecutive failures double until the cap.
    #[test]
    fn delays_are_monotonic_until_cap(cfg in config(), n in 1u32..64) {
        let cfg = BackoffConfig { jitter_per_mille: 0, ..cfg };
        prop_assert!(cfg.delay(n + 1, 0) >= cfg.delay(n, 0));
        prop_assert!(cfg.delay(n, 0) <= cfg.cap);
        if cfg.initial.saturating_mul(2) <= cfg.cap && n == 1 {
            prop_assert_eq!(cfg.delay(2, 0), cfg.initial * 2);
        }
    }

    /// Jitter removes at most the configured share of the delay.
    #[test]
    fn jitter_is_bounded(cfg in config(), n in 1u32..64, jitter in any::<u32>()) {
        let base = cfg.base_delay(n);
        let d = cfg.delay(n, jitter);
        prop_assert!(d <= base);
        let floor = base.as_nanos() - base.as_nanos() * u128::from(cfg.jitter_per_mille.min(1000)) / 1000;
        prop_assert!(d.as_nanos() >= floor);
    }
}
