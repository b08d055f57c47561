//! The global budget of request bytes, and each connection's ledger of what it holds.
//!
//! A connection holds request bytes from the moment they are read until the handler finished
//! the request they belong to (partial frames, complete frames not yet started, requests in
//! flight). The first [`ListenerConfig::connection_allowance`] bytes a connection holds are
//! free; beyond that, every byte, and the room for the read about to happen, is a permit
//! drawn from one semaphore the size of [`ListenerConfig::memory_budget`], shared by all
//! connections. A connection that cannot get the permits it needs waits for them (tokio's
//! semaphore serves waiters first come, first served) and reads nothing meanwhile: TCP
//! back-pressure then stops its client.
//!
//! Invariants (checked with `assert!` where a violation would let memory grow unbounded):
//! - `held + reserved <= allowance + charged`, where `reserved` is the room of the read in
//!   progress; so the bytes all connections hold stay within
//!   `connections x allowance + budget`;
//! - `charged` permits are given back as soon as they are not needed, and all of them when
//!   the ledger is dropped (a connection ending or its task aborted).
//!
//! [`ListenerConfig::connection_allowance`]: super::ListenerConfig::connection_allowance
//! [`ListenerConfig::memory_budget`]: super::ListenerConfig::memory_budget

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::stats::ListenerStats;

/// The budget shared by a listener's connections.
#[derive(Debug)]
pub(super) struct Budget {
    permits: Arc<Semaphore>,
    allowance: usize,
}

impl Budget {
    pub(super) fn new(bytes: usize, allowance: usize) -> Self {
        Budget {
            permits: Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))),
            allowance,
        }
    }

    /// The semaphore, for a connection that must wait for permits.
    pub(super) fn semaphore(&self) -> Arc<Semaphore> {
        self.permits.clone()
    }
}

/// What one connection holds, mirrored into the listener's gauges; gives it all back on drop.
#[derive(Debug)]
pub(super) struct Ledger<'a> {
    budget: &'a Budget,
    stats: &'a ListenerStats,
    /// Request bytes held (see the module docs).
    held: usize,
    /// Permits drawn from the global budget.
    charged: usize,
    input_buffer: usize,
    queued_reply: usize,
    in_flight: usize,
}

impl<'a> Ledger<'a> {
    pub(super) fn new(budget: &'a Budget, stats: &'a ListenerStats) -> Self {
        Ledger {
            budget,
            stats,
            held: 0,
            charged: 0,
            input_buffer: 0,
            queued_reply: 0,
            in_flight: 0,
        }
    }

    /// Request bytes this connection holds.
    pub(super) fn held(&self) -> usize {
        self.held
    }

    /// Permits still missing before `extra` more bytes may be held.
    pub(super) fn shortfall(&self, extra: usize) -> usize {
        self.held
            .saturating_add(extra)
            .saturating_sub(self.budget.allowance)
            .saturating_sub(self.charged)
    }

    /// Takes the permits needed to hold `extra` more bytes if they are free right now.
    pub(super) fn try_reserve(&mut self, extra: usize) -> bool {
        let missing = self.shortfall(extra);
        if missing == 0 {
            return true;
        }
        let Ok(n) = u32::try_from(missing) else {
            return false;
        };
        match self.budget.permits.try_acquire_many(n) {
            Ok(permit) => {
                permit.forget();
                self.add_charged(missing);
                true
            }
            Err(_) => false,
        }
    }

    /// Permits a connection waited for (already forgotten by the caller).
    pub(super) fn add_charged(&mut self, n: usize) {
        self.charged += n;
        self.stats.budget_bytes.add(n);
    }

    /// `n` more bytes are held; their permits must have been reserved.
    pub(super) fn hold(&mut self, n: usize) {
        self.held += n;
        self.stats.request_bytes.add(n);
        assert!(
            self.held <= self.budget.allowance.saturating_add(self.charged),
            "a connection holds {} request bytes with {} permits and an allowance of {}",
            self.held,
            self.charged,
            self.budget.allowance
        );
    }

    /// `n` bytes are no longer held.
    pub(super) fn release(&mut self, n: usize) {
        assert!(n <= self.held, "releasing {n} of {} bytes held", self.held);
        self.held -= n;
        self.stats.request_bytes.sub(n);
    }

    /// Gives back the permits the bytes held no longer need.
    pub(super) fn trim(&mut self) {
        let needed = self.held.saturating_sub(self.budget.allowance);
        if self.charged > needed {
            let surplus = self.charged - needed;
            self.charged = needed;
            self.stats.budget_bytes.sub(surplus);
            self.budget.permits.add_permits(surplus);
        }
    }

    pub(super) fn set_input_buffer(&mut self, bytes: usize) {
        self.stats.input_buffer_bytes.sub(self.input_buffer);
        self.stats.input_buffer_bytes.add(bytes);
        self.input_buffer = bytes;
    }

    pub(super) fn set_queued_reply(&mut self, bytes: usize) {
        if bytes > self.queued_reply {
            self.stats.queued_reply_bytes.add(bytes - self.queued_reply);
        } else {
            self.stats.queued_reply_bytes.sub(self.queued_reply - bytes);
        }
        self.queued_reply = bytes;
    }

    pub(super) fn started(&mut self) {
        self.in_flight += 1;
        self.stats.requests_in_flight.add(1);
    }

    pub(super) fn finished(&mut self, n: usize) {
        assert!(
            n <= self.in_flight,
            "{n} of {} requests finished",
            self.in_flight
        );
        self.in_flight -= n;
        self.stats.requests_in_flight.sub(n);
    }
}

impl Drop for Ledger<'_> {
    fn drop(&mut self) {
        let held = self.held;
        self.release(held);
        self.trim();
        self.set_input_buffer(0);
        self.set_queued_reply(0);
        let in_flight = self.in_flight;
        self.finished(in_flight);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowance_is_free_and_permits_beyond_it_come_from_the_budget() {
        let stats = ListenerStats::default();
        let budget = Budget::new(100, 10);
        let mut a = Ledger::new(&budget, &stats);
        let mut b = Ledger::new(&budget, &stats);
        assert_eq!(a.shortfall(10), 0);
        assert!(a.try_reserve(60));
        a.hold(60);
        assert_eq!(stats.snapshot().budget_bytes, 50);
        // b gets its allowance and the 50 permits left, not one more.
        assert!(b.try_reserve(60));
        b.hold(60);
        assert!(!b.try_reserve(1));
        assert_eq!(b.shortfall(1), 1);
        assert_eq!(budget.permits.available_permits(), 0);
        a.release(60);
        a.trim();
        assert_eq!(budget.permits.available_permits(), 50);
        drop(b);
        assert_eq!(budget.permits.available_permits(), 100);
        let s = stats.snapshot();
        assert_eq!((s.request_bytes, s.budget_bytes), (0, 0));
        assert_eq!(s.budget_bytes_peak, 100);
        assert_eq!(s.request_bytes_peak, 120);
    }

    #[test]
    #[should_panic(expected = "request bytes with")]
    fn holding_more_than_was_reserved_is_refused() {
        let stats = ListenerStats::default();
        let budget = Budget::new(100, 10);
        let mut a = Ledger::new(&budget, &stats);
        a.hold(11);
    }
}
