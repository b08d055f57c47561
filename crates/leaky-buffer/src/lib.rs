//! A bounded, asynchronous, multi-producer single-consumer queue that never blocks a sender.
//!
//! When the queue is full, [`Sender::send`] drops the *newest* item (the one being sent), counts
//! it, and returns at once with [`SendError::Full`]: a slow consumer can never stall a producer.
//! This is the outgoing queue of a peer link in `tcp-messenger`: the consensus core pushes
//! messages and goes on; Paxos retransmits whatever matters if it is dropped.
//!
//! Invariants kept (all state lives under one mutex, so every operation is atomic):
//! - the queue never holds more than `capacity` items, nor (for a weighted queue) more than
//!   `max_weight` in total unless it holds a single item;
//! - items are received in the order they were accepted (FIFO);
//! - `accepted == received + queued + discarded_on_receiver_drop`, and every refused item is
//!   either counted in [`Sender::dropped`] (queue full) or returned as [`SendError::Closed`];
//! - closing: once the receiver is gone or [`Receiver::close`] was called, sends fail with
//!   `Closed`; the receiver still drains what was queued, then sees `None`. When every sender is
//!   gone the receiver likewise drains and then sees `None`.
//!
//! Waiting is implemented with a single waker slot (there is one consumer), checked and
//! registered under the same lock as the queue, so a wakeup cannot be lost.

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// Create a leaky queue holding at most `capacity` items (a capacity of 0 is raised to 1).
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    channel_weighted(capacity, usize::MAX, |_| 0)
}

/// Create a leaky queue bounded both by `capacity` items and by `max_weight`, the sum of
/// `weigh(item)` over queued items (typically bytes). An item that would push the total over
/// `max_weight` is dropped like one that finds the queue full, except that an empty queue always
/// takes one item (so a single heavy item is never refused forever).
pub fn channel_weighted<T>(
    capacity: usize,
    max_weight: usize,
    weigh: fn(&T) -> usize,
) -> (Sender<T>, Receiver<T>) {
    let capacity = capacity.max(1);
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            // Pre-allocate moderately: a large capacity is a bound, not an expected size.
            queue: VecDeque::with_capacity(capacity.min(1024)),
            weight: 0,
            senders: 1,
            receiver_alive: true,
            closed: false,
            rx_waker: None,
        }),
        capacity,
        max_weight,
        weigh,
        dropped: AtomicU64::new(0),
        accepted: AtomicU64::new(0),
    });
    (
        Sender {
            shared: Arc::clone(&shared),
        },
        Receiver { shared },
    )
}

struct Shared<T> {
    state: Mutex<State<T>>,
    capacity: usize,
    max_weight: usize,
    weigh: fn(&T) -> usize,
    /// Items refused because the queue was full.
    dropped: AtomicU64,
    /// Items accepted into the queue.
    accepted: AtomicU64,
}

struct State<T> {
    queue: VecDeque<T>,
    /// Sum of `weigh` over `queue`.
    weight: usize,
    senders: usize,
    receiver_alive: bool,
    /// Set by [`Receiver::close`]: no more items are accepted.
    closed: bool,
    rx_waker: Option<Waker>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // No code path panics while holding the lock, and the state stays consistent even if
        // one did (every mutation is a single VecDeque/flag update), so poisoning is ignored.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why an item was not queued. The item is handed back.
#[derive(PartialEq, Eq, thiserror::Error)]
pub enum SendError<T> {
    /// The queue was full: the item was dropped and counted in [`Sender::dropped`].
    #[error("leaky queue full: newest item dropped")]
    Full(T),
    /// The receiver is gone or closed the queue.
    #[error("leaky queue closed: receiver gone or closed")]
    Closed(T),
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full(_) => f.write_str("Full(..)"),
            SendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> SendError<T> {
    /// The item that was not queued.
    pub fn into_inner(self) -> T {
        match self {
            SendError::Full(item) | SendError::Closed(item) => item,
        }
    }
}

/// Why [`Receiver::try_recv`] returned no item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// Nothing queued right now, but senders may still send.
    #[error("leaky queue empty")]
    Empty,
    /// Nothing queued and nothing will ever be: all senders are gone or the queue was closed.
    #[error("leaky queue closed and drained")]
    Closed,
}

/// The sending half; cheap to clone. Never blocks, never awaits.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Queue `item`, or drop it at once if the queue is full (counted) or closed.
    pub fn send(&self, item: T) -> Result<(), SendError<T>> {
        let waker = {
            let mut state = self.shared.lock();
            if !state.receiver_alive || state.closed {
                return Err(SendError::Closed(item));
            }
            let weight = (self.shared.weigh)(&item);
            let too_heavy = !state.queue.is_empty()
                && state.weight.saturating_add(weight) > self.shared.max_weight;
            if state.queue.len() >= self.shared.capacity || too_heavy {
                drop(state);
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                return Err(SendError::Full(item));
            }
            state.weight = state.weight.saturating_add(weight);
            state.queue.push_back(item);
            self.shared.accepted.fetch_add(1, Ordering::Relaxed);
            state.rx_waker.take()
        };
        // Wake outside the lock so the consumer does not immediately contend on it.
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Items dropped so far because the queue was full (shared by all clones).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Items accepted into the queue so far (shared by all clones).
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// True once the receiver is gone or closed the queue: every further send fails.
    pub fn is_closed(&self) -> bool {
        let state = self.shared.lock();
        !state.receiver_alive || state.closed
    }

    /// Items queued right now.
    pub fn len(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// True if nothing is queued right now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bound on queued items.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Sender {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.shared.lock();
            state.senders -= 1;
            if state.senders == 0 {
                state.rx_waker.take()
            } else {
                None
            }
        };
        // The last sender leaving ends the stream: wake the receiver so it can see `None`.
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("leaky_buffer::Sender")
            .field("capacity", &self.shared.capacity)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

/// The receiving half (one consumer).
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// Wait for the next item; `None` once the queue is drained and all senders are gone or
    /// [`close`](Self::close) was called. Cancel-safe: dropping the future loses no item.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Poll form of [`recv`](Self::recv).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.shared.lock();
        if let Some(item) = self.pop(&mut state) {
            return Poll::Ready(Some(item));
        }
        if state.senders == 0 || state.closed {
            return Poll::Ready(None);
        }
        register(&mut state.rx_waker, cx);
        Poll::Pending
    }

    /// Wait until at least one item is queued, then move up to `limit` queued items into `buf`
    /// under one lock. Returns how many were moved; 0 means the queue is closed and drained
    /// (or `limit` was 0). Cancel-safe. This is how a writer batches frames.
    pub async fn recv_many(&mut self, buf: &mut Vec<T>, limit: usize) -> usize {
        if limit == 0 {
            return 0;
        }
        poll_fn(|cx| {
            let mut state = self.shared.lock();
            if !state.queue.is_empty() {
                let n = state.queue.len().min(limit);
                let weigh = self.shared.weigh;
                let mut removed = 0usize;
                buf.extend(state.queue.drain(..n).inspect(|item| {
                    removed = removed.saturating_add(weigh(item));
                }));
                state.weight = state.weight.saturating_sub(removed);
                return Poll::Ready(n);
            }
            if state.senders == 0 || state.closed {
                return Poll::Ready(0);
            }
            register(&mut state.rx_waker, cx);
            Poll::Pending
        })
        .await
    }

    /// Take the next item if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        let mut state = self.shared.lock();
        match self.pop(&mut state) {
            Some(item) => Ok(item),
            None if state.senders == 0 || state.closed => Err(TryRecvError::Closed),
            None => Err(TryRecvError::Empty),
        }
    }

    /// Refuse further sends; items already queued can still be received.
    pub fn close(&mut self) {
        self.shared.lock().closed = true;
    }

    /// Drop every queued item; returns how many were discarded.
    pub fn clear(&mut self) -> usize {
        let mut state = self.shared.lock();
        let n = state.queue.len();
        state.queue.clear();
        state.weight = 0;
        n
    }

    /// Total weight of the queued items (0 for an unweighted queue).
    pub fn weight(&self) -> usize {
        self.shared.lock().weight
    }

    fn pop(&self, state: &mut State<T>) -> Option<T> {
        let item = state.queue.pop_front()?;
        state.weight = state.weight.saturating_sub((self.shared.weigh)(&item));
        Some(item)
    }

    /// Items queued right now.
    pub fn len(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// True if nothing is queued right now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Items dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Items accepted into the queue so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// The bound on queued items.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }
}

fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // Take the items out under the lock but drop them after releasing it: an item's own
        // Drop must not run while we hold the queue's mutex.
        let discarded = {
            let mut state = self.shared.lock();
            state.receiver_alive = false;
            state.rx_waker = None;
            std::mem::take(&mut state.queue)
        };
        drop(discarded);
    }
}

impl<T> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("leaky_buffer::Receiver")
            .field("capacity", &self.shared.capacity)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn overflow_drops_newest_and_counts() {
        let (tx, mut rx) = channel(2);
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        assert_eq!(tx.send(3), Err(SendError::Full(3)));
        assert_eq!(tx.send(4), Err(SendError::Full(4)));
        assert_eq!(tx.dropped(), 2);
        assert_eq!(rx.try_recv(), Ok(1));
        tx.send(5).unwrap();
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Ok(5));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(rx.accepted(), 3);
    }

    #[test]
    fn weight_bound_drops_heavy_items_but_never_starves_an_empty_queue() {
        let (tx, mut rx) = channel_weighted::<Vec<u8>>(10, 100, Vec::len);
        tx.send(vec![0; 60]).unwrap();
        assert!(matches!(tx.send(vec![0; 50]), Err(SendError::Full(_))));
        tx.send(vec![0; 40]).unwrap();
        assert_eq!(rx.weight(), 100);
        assert_eq!(rx.try_recv().unwrap().len(), 60);
        assert_eq!(rx.weight(), 40);
        assert_eq!(rx.try_recv().unwrap().len(), 40);
        // An empty queue takes one item heavier than the bound.
        tx.send(vec![0; 500]).unwrap();
        assert!(matches!(tx.send(vec![0; 1]), Err(SendError::Full(_))));
        assert_eq!(tx.dropped(), 2);
        assert_eq!(rx.clear(), 1);
        assert_eq!(rx.weight(), 0);
    }

    #[test]
    fn zero_capacity_is_one() {
        let (tx, _rx) = channel(0);
        assert_eq!(tx.capacity(), 1);
        tx.send(()).unwrap();
        assert!(matches!(tx.send(()), Err(SendError::Full(()))));
    }

    #[test]
    fn receiver_drop_closes_senders() {
        let (tx, rx) = channel(4);
        tx.send(1).unwrap();
        drop(rx);
        assert!(tx.is_closed());
        assert_eq!(tx.send(2), Err(SendError::Closed(2)));
        assert_eq!(tx.dropped(), 0);
    }

    #[test]
    fn close_refuses_sends_but_drains() {
        let (tx, mut rx) = channel(4);
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        rx.close();
        assert_eq!(tx.send(3), Err(SendError::Closed(3)));
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
    }

    #[test]
    fn last_sender_gone_drains_then_closed() {
        let (tx, mut rx) = channel(4);
        let tx2 = tx.clone();
        tx.send(1).unwrap();
        drop(tx);
        assert_eq!(rx.try_recv(), Ok(1));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        tx2.send(2).unwrap();
        drop(tx2);
        assert_eq!(rx.try_recv(), Ok(2));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Closed));
    }

    #[test]
    fn clear_discards_queued() {
        let (tx, mut rx) = channel(4);
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        assert_eq!(rx.clear(), 2);
        assert!(rx.is_empty());
        assert!(tx.is_empty());
    }
}
