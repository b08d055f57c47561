//! Counters a listener keeps about the memory its clients make it hold and the connections
//! its limits closed, so tests and operators measure the limits instead of guessing them
//! from RSS or timing.
//!
//! Invariants:
//! - Every gauge (`*_bytes`, `connections`, `requests_in_flight`) is the sum of what the live
//!   connections hold: each connection adds and subtracts its own share through a
//!   [`Ledger`](super::budget::Ledger), which gives everything back when the connection ends
//!   (also when its task is aborted), so a gauge returns to 0 when the listener is idle.
//! - A `*_peak` is the largest value its gauge ever had (updated with `fetch_max` right after
//!   each increase).
//! - `budget_bytes` never exceeds the configured budget: the permits come from one semaphore
//!   of that size.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Live counters of one listener (shared with its connections; read with [`snapshot`]).
///
/// [`snapshot`]: ListenerStats::snapshot
#[derive(Debug, Default)]
pub struct ListenerStats {
    pub(super) connections: AtomicUsize,
    pub(super) request_bytes: Gauge,
    pub(super) budget_bytes: Gauge,
    pub(super) input_buffer_bytes: Gauge,
    pub(super) queued_reply_bytes: Gauge,
    pub(super) requests_in_flight: Gauge,
    pub(super) budget_waits: AtomicU64,
    pub(super) closed_prologue_timeout: AtomicU64,
    pub(super) closed_frame_timeout: AtomicU64,
    pub(super) closed_idle_timeout: AtomicU64,
    pub(super) closed_write_timeout: AtomicU64,
    pub(super) refused_too_many: AtomicU64,
    pub(super) refused_tls: AtomicU64,
    pub(super) refused_admin: AtomicU64,
}

/// A gauge and its high-water mark.
#[derive(Debug, Default)]
pub(super) struct Gauge {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Gauge {
    pub(super) fn add(&self, n: usize) {
        if n > 0 {
            let now = self.now.fetch_add(n, Ordering::Relaxed) + n;
            self.peak.fetch_max(now, Ordering::Relaxed);
        }
    }

    pub(super) fn sub(&self, n: usize) {
        if n > 0 {
            self.now.fetch_sub(n, Ordering::Relaxed);
        }
    }

    fn get(&self) -> (usize, usize) {
        (
            self.now.load(Ordering::Relaxed),
            self.peak.load(Ordering::Relaxed),
        )
    }
}

/// A copy of a listener's counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    /// Client connections being served (refused ones not included).
    pub connections: usize,
    /// Request bytes held: received but not yet decoded (partial frames), plus decoded
    /// requests whose handler has not finished.
    pub request_bytes: usize,
    /// Highest `request_bytes` so far.
    pub request_bytes_peak: usize,
    /// Of `request_bytes` (plus room reserved for the read in progress), what connections drew
    /// from the global budget (beyond each connection's allowance). Never above the budget.
    pub budget_bytes: usize,
    /// Highest `budget_bytes` so far.
    pub budget_bytes_peak: usize,
    /// Bytes allocated for connections' input buffers (their capacity).
    pub input_buffer_bytes: usize,
    /// Highest `input_buffer_bytes` so far.
    pub input_buffer_bytes_peak: usize,
    /// Encoded replies waiting to be written to their clients.
    pub queued_reply_bytes: usize,
    /// Highest `queued_reply_bytes` so far.
    pub queued_reply_bytes_peak: usize,
    /// Requests handed to the handler whose outcome is not known yet.
    pub requests_in_flight: usize,
    /// Highest `requests_in_flight` so far (across all connections).
    pub requests_in_flight_peak: usize,
    /// Times a connection had to wait for the global budget before reading more.
    pub budget_waits: u64,
    /// Connections closed because their prologue did not arrive in time.
    pub closed_prologue_timeout: u64,
    /// Connections closed because a request did not arrive completely in time.
    pub closed_frame_timeout: u64,
    /// Connections closed after being idle too long.
    pub closed_idle_timeout: u64,
    /// Connections closed because the client did not read its replies in time.
    pub closed_write_timeout: u64,
    /// Connections refused with `0xFE "too many clients"`.
    pub refused_too_many: u64,
    /// Connections whose TLS handshake failed or timed out (plain TCP on a TLS port, no
    /// client certificate where one is required, an expired or foreign one).
    pub refused_tls: u64,
    /// Admin requests refused because the client's certificate carries no admin name.
    pub refused_admin: u64,
}

impl ListenerStats {
    /// The counters now (each read on its own; the set is not one atomic snapshot).
    pub fn snapshot(&self) -> StatsSnapshot {
        let (request_bytes, request_bytes_peak) = self.request_bytes.get();
        let (budget_bytes, budget_bytes_peak) = self.budget_bytes.get();
        let (input_buffer_bytes, input_buffer_bytes_peak) = self.input_buffer_bytes.get();
        let (queued_reply_bytes, queued_reply_bytes_peak) = self.queued_reply_bytes.get();
        let (requests_in_flight, requests_in_flight_peak) = self.requests_in_flight.get();
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            connections: self.connections.load(Ordering::Relaxed),
            request_bytes,
            request_bytes_peak,
            budget_bytes,
            budget_bytes_peak,
            input_buffer_bytes,
            input_buffer_bytes_peak,
            queued_reply_bytes,
            queued_reply_bytes_peak,
            requests_in_flight,
            requests_in_flight_peak,
            budget_waits: count(&self.budget_waits),
            closed_prologue_timeout: count(&self.closed_prologue_timeout),
            closed_frame_timeout: count(&self.closed_frame_timeout),
            closed_idle_timeout: count(&self.closed_idle_timeout),
            closed_write_timeout: count(&self.closed_write_timeout),
            refused_too_many: count(&self.refused_too_many),
            refused_tls: count(&self.refused_tls),
            refused_admin: count(&self.refused_admin),
        }
    }

    pub(super) fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
