//! A pure state machine for one outgoing connection: idle, connecting, handshaking, connected,
//! backing off, closed.
//!
//! The driver (tcp-messenger) feeds [`Event`]s in together with the current time and a random
//! jitter value, and gets back an [`Action`] to carry out (open a socket, send the handshake,
//! start using the link, wait until a deadline, close the socket). The machine owns no socket,
//! reads no clock and draws no random numbers, so every path is tested with plain values.
//!
//! Invariants kept:
//! - the retry delay after `n` consecutive failures is `min(cap, initial * 2^(n-1))`, shrunk by
//!   the jitter into `[delay * (1 - jitter_fraction), delay]` and never below zero or above cap;
//! - the failure count resets to zero only when a handshake succeeds (a TCP connect alone does
//!   not prove the peer healthy);
//! - every waiting state carries a deadline, so the driver always knows when to wake up;
//! - `Closed` is final: every event after [`Event::Close`] yields [`Action::None`].

use std::time::{Duration, Instant};

/// Backoff and timeout parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Upper bound of the delay.
    pub cap: Duration,
    /// How much of the delay the jitter may remove, in per mille (0 = no jitter, 500 = up to
    /// half the delay, 1000 = anywhere between 0 and the full delay).
    pub jitter_per_mille: u16,
    /// Longest a TCP connect may take before it counts as failed.
    pub connect_timeout: Duration,
    /// Longest the handshake may take before it counts as failed.
    pub handshake_timeout: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial: Duration::from_millis(50),
            cap: Duration::from_secs(5),
            jitter_per_mille: 500,
            connect_timeout: Duration::from_secs(2),
            handshake_timeout: Duration::from_secs(2),
        }
    }
}

impl BackoffConfig {
    /// The delay after `failures` consecutive failures (at least 1), before jitter.
    pub fn base_delay(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(31);
        let delay = self.initial.saturating_mul(1u32 << shift);
        delay.min(self.cap)
    }

    /// The delay after `failures` consecutive failures, with `jitter` (any u32, a uniformly
    /// random value in the driver) removing up to `jitter_per_mille` of it.
    pub fn delay(&self, failures: u32, jitter: u32) -> Duration {
        let base = self.base_delay(failures);
        let per_mille = u128::from(self.jitter_per_mille.min(1000));
        // fraction removed = jitter / 2^32 * per_mille / 1000, computed in integers (nanos).
        let base_nanos = base.as_nanos();
        let removed = ((base_nanos * per_mille / 1000) * u128::from(jitter)) >> 32;
        let nanos = base_nanos.saturating_sub(removed);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// The state of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not started.
    Idle,
    /// A TCP connect is in flight; it fails if not done by `deadline`.
    Connecting {
        /// When the attempt times out.
        deadline: Instant,
    },
    /// Connected; the handshake is in flight and fails if not done by `deadline`.
    Handshaking {
        /// When the handshake times out.
        deadline: Instant,
    },
    /// The link is up and carrying messages.
    Connected,
    /// Waiting before the next attempt.
    BackingOff {
        /// When to try again.
        until: Instant,
    },
    /// Shut down for good.
    Closed,
}

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Start connecting (from `Idle`).
    Start,
    /// The TCP connect succeeded.
    Connected,
    /// The TCP connect failed (refused, unreachable, ...).
    ConnectFailed,
    /// The peer accepted our handshake.
    HandshakeAccepted,
    /// The peer refused our handshake, or it failed on the wire.
    HandshakeFailed,
    /// An established link broke (read/write error, peer closed).
    Disconnected,
    /// The deadline the machine last asked for has passed (timeout or end of backoff).
    DeadlineReached,
    /// Shut down for good.
    Close,
}

/// What the driver must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing (the event did not apply to the current state).
    None,
    /// Open a TCP connection; report [`Event::Connected`] or [`Event::ConnectFailed`], or
    /// [`Event::DeadlineReached`] at `deadline`.
    Connect {
        /// When the attempt times out.
        deadline: Instant,
    },
    /// Send the handshake and wait for the answer; report [`Event::HandshakeAccepted`] or
    /// [`Event::HandshakeFailed`], or [`Event::DeadlineReached`] at `deadline`.
    Handshake {
        /// When the handshake times out.
        deadline: Instant,
    },
    /// The link is usable: start writing queued messages.
    Ready,
    /// Drop the socket (if any) and report [`Event::DeadlineReached`] at `until`.
    Backoff {
        /// When to try again.
        until: Instant,
        /// Consecutive failures so far.
        failures: u32,
    },
    /// Drop the socket (if any) and stop.
    Shutdown,
}

/// One outgoing connection's state machine.
#[derive(Debug, Clone)]
pub struct ConnectionFsm {
    config: BackoffConfig,
    state: State,
    /// Consecutive failed attempts since the last accepted handshake.
    failures: u32,
    /// Times a link was established (handshake accepted).
    established: u64,
}

impl ConnectionFsm {
    /// A machine in [`State::Idle`].
    pub fn new(config: BackoffConfig) -> Self {
        ConnectionFsm {
            config,
            state: State::Idle,
            failures: 0,
            established: 0,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Consecutive failed attempts since the last accepted handshake.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// How many times a link was established (handshake accepted).
    pub fn established(&self) -> u64 {
        self.established
    }

    /// The configuration.
    pub fn config(&self) -> &BackoffConfig {
        &self.config
    }

    /// The deadline the driver must wake up at, if the current state has one.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Connecting { deadline } | State::Handshaking { deadline } => Some(deadline),
            State::BackingOff { until } => Some(until),
            State::Idle | State::Connected | State::Closed => None,
        }
    }

    /// Apply `event` at time `now`; `jitter` is a fresh random u32 (used only when a failure
    /// starts a backoff). Returns what the driver must do.
    pub fn step(&mut self, now: Instant, event: Event, jitter: u32) -> Action {
        use Event as E;
        use State as S;
        match (self.state, event) {
            (S::Closed, _) => Action::None,
            (_, E::Close) => {
                self.state = S::Closed;
                Action::Shutdown
            }
            (S::Idle, E::Start) => self.start_connect(now),
            (S::Connecting { .. }, E::Connected) => {
                let deadline = later(now, self.config.handshake_timeout);
                self.state = S::Handshaking { deadline };
                Action::Handshake { deadline }
            }
            (S::Connecting { .. }, E::ConnectFailed) => self.fail(now, jitter),
            (S::Connecting { deadline }, E::DeadlineReached) if now >= deadline => {
                self.fail(now, jitter)
            }
            (S::Handshaking { .. }, E::HandshakeAccepted) => {
                self.failures = 0;
                self.established += 1;
                self.state = S::Connected;
                Action::Ready
            }
            (S::Handshaking { .. }, E::HandshakeFailed | E::Disconnected) => self.fail(now, jitter),
            (S::Handshaking { deadline }, E::DeadlineReached) if now >= deadline => {
                self.fail(now, jitter)
            }
            (S::Connected, E::Disconnected) => self.fail(now, jitter),
            (S::BackingOff { until }, E::DeadlineReached) if now >= until => {
                self.start_connect(now)
            }
            // Anything else is stale (e.g. a deadline that fired early, or a duplicate report)
            // and changes nothing.
            _ => Action::None,
        }
    }

    fn start_connect(&mut self, now: Instant) -> Action {
        let deadline = later(now, self.config.connect_timeout);
        self.state = State::Connecting { deadline };
        Action::Connect { deadline }
    }

    fn fail(&mut self, now: Instant, jitter: u32) -> Action {
        self.failures = self.failures.saturating_add(1);
        let until = later(now, self.config.delay(self.failures, jitter));
        self.state = State::BackingOff { until };
        Action::Backoff {
            until,
            failures: self.failures,
        }
    }
}

/// `now + wait`, saturating instead of panicking when a configured duration is so large that
/// the instant would overflow (such a deadline means "practically never" either way).
fn later(now: Instant, wait: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(wait)
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn cfg() -> BackoffConfig {
        BackoffConfig {
            initial: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            jitter_per_mille: 0,
            connect_timeout: Duration::from_millis(500),
            handshake_timeout: Duration::from_millis(300),
        }
    }

    #[test]
    fn huge_configured_durations_saturate_instead_of_panicking() {
        let t0 = Instant::now();
        let mut fsm = ConnectionFsm::new(BackoffConfig {
            initial: Duration::MAX,
            cap: Duration::MAX,
            jitter_per_mille: 0,
            connect_timeout: Duration::MAX,
            handshake_timeout: Duration::MAX,
        });
        let Action::Connect { deadline } = fsm.step(t0, Event::Start, 0) else {
            panic!("expected a connect");
        };
        assert!(deadline > t0);
        assert!(matches!(
            fsm.step(t0, Event::Connected, 0),
            Action::Handshake { deadline } if deadline > t0
        ));
        assert!(matches!(
            fsm.step(t0, Event::HandshakeFailed, 0),
            Action::Backoff { until, failures: 1 } if until > t0
        ));
    }

    #[test]
    fn happy_path() {
        let t0 = Instant::now();
        let mut fsm = ConnectionFsm::new(cfg());
        assert_eq!(fsm.state(), State::Idle);
        assert_eq!(
            fsm.step(t0, Event::Start, 0),
            Action::Connect {
                deadline: t0 + Duration::from_millis(500)
            }
        );
        assert_eq!(
            fsm.step(t0, Event::Connected, 0),
            Action::Handshake {
                deadline: t0 + Duration::from_millis(300)
            }
        );
        assert_eq!(fsm.step(t0, Event::HandshakeAccepted, 0), Action::Ready);
        assert_eq!(fsm.state(), State::Connected);
        assert_eq!(fsm.established(), 1);
        assert_eq!(fsm.deadline(), None);
    }

    #[test]
    fn exponential_backoff_capped_and_reset_after_handshake() {
        let t0 = Instant::now();
        let mut fsm = ConnectionFsm::new(cfg());
        fsm.step(t0, Event::Start, 0);
        let mut now = t0;
        let mut delays = Vec::new();
        for _ in 0..6 {
            match fsm.step(now, Event::ConnectFailed, 0) {
                Action::Backoff { until, .. } => {
                    delays.push(until - now);
                    now = until;
                }
                other => panic!("expected backoff, got {other:?}"),
            }
            assert!(matches!(
                fsm.step(now, Event::DeadlineReached, 0),
                Action::Connect { .. }
            ));
        }
        let ms: Vec<u128> = delays.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, vec![100, 200, 400, 800, 1000, 1000]);
        fsm.step(now, Event::Connected, 0);
        assert_eq!(
            fsm.failures(),
            6,
            "a TCP connect alone does not reset backoff"
        );
        fsm.step(now, Event::HandshakeAccepted, 0);
        assert_eq!(fsm.failures(), 0);
        match fsm.step(now, Event::Disconnected, 0) {
            Action::Backoff { until, failures } => {
                assert_eq!(failures, 1);
                assert_eq!(until - now, Duration::from_millis(100));
            }
            other => panic!("expected backoff, got {other:?}"),
        }
    }

    #[test]
    fn early_deadline_is_ignored() {
        let t0 = Instant::now();
        let mut fsm = ConnectionFsm::new(cfg());
        fsm.step(t0, Event::Start, 0);
        fsm.step(t0, Event::ConnectFailed, 0);
        let early = t0 + Duration::from_millis(50);
        assert_eq!(fsm.step(early, Event::DeadlineReached, 0), Action::None);
        assert!(matches!(fsm.state(), State::BackingOff { .. }));
    }

    #[test]
    fn timeouts_fail_the_attempt() {
        let t0 = Instant::now();
        let mut fsm = ConnectionFsm::new(cfg());
        fsm.step(t0, Event::Start, 0);
        let t1 = t0 + Duration::from_millis(500);
        assert!(matches!(
            fsm.step(t1, Event::DeadlineReached, 0),
            Action::Backoff { failures: 1, .. }
        ));
        let t2 = t1 + Duration::from_millis(100);
        fsm.step(t2, Event::DeadlineReached, 0);
        fsm.step(t2, Event::Connected, 0);
        let t3 = t2 + Duration::from_millis(300);
        assert!(matches!(
            fsm.step(t3, Event::DeadlineReached, 0),
            Action::Backoff { failures: 2, .. }
        ));
    }

    #[test]
    fn handshake_refused_backs_off() {
        let t0 = Instant::now();
        let mut fsm = ConnectionFsm::new(cfg());
        fsm.step(t0, Event::Start, 0);
        fsm.step(t0, Event::Connected, 0);
        assert!(matches!(
            fsm.step(t0, Event::HandshakeFailed, 0),
            Action::Backoff { failures: 1, .. }
        ));
    }

    #[test]
    fn close_is_final() {
        let t0 = Instant::now();
        let mut fsm = ConnectionFsm::new(cfg());
        fsm.step(t0, Event::Start, 0);
        assert_eq!(fsm.step(t0, Event::Close, 0), Action::Shutdown);
        for event in [
            Event::Start,
            Event::Connected,
            Event::DeadlineReached,
            Event::Close,
        ] {
            assert_eq!(fsm.step(t0, event, 0), Action::None);
        }
        assert_eq!(fsm.state(), State::Closed);
    }

    #[test]
    fn jitter_shrinks_delay_within_bounds() {
        let mut c = cfg();
        c.jitter_per_mille = 500;
        assert_eq!(c.delay(1, 0), Duration::from_millis(100));
        assert_eq!(c.delay(1, u32::MAX), Duration::from_nanos(50_000_001));
        assert_eq!(c.delay(1, 1 << 31), Duration::from_millis(75));
        c.jitter_per_mille = 1000;
        assert!(c.delay(3, u32::MAX) < Duration::from_millis(1));
    }

    #[test]
    fn huge_failure_counts_saturate_at_cap() {
        let c = cfg();
        assert_eq!(c.base_delay(u32::MAX), Duration::from_secs(1));
        assert_eq!(c.base_delay(0), Duration::from_millis(100));
    }
}
