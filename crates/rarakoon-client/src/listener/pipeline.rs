//! The requests of one connection that were handed to the handler, in arrival order.
//!
//! Each slot is a handler future still running, or its outcome waiting to be written. The
//! listener starts a request only when [`Pipeline::admits`] says so:
//! - an [`Admission::Exclusive`] request starts once every earlier request finished, and no
//!   later request starts before it finished (so a read sees every earlier write of its
//!   connection, and no later one);
//! - an [`Admission::Write`] request may start while earlier writes are still running (never
//!   while an exclusive request runs).
//!
//! Invariants (asserted, release builds too: breaking them would let a read overtake a
//! write):
//! - an exclusive request runs alone: `running_exclusive <= 1`, and `running == 1` while it is 1;
//! - outcomes leave in arrival order: only the front slot is ever taken out;
//! - after an outcome that closes the connection nothing later is kept: the slots behind it
//!   are dropped (their futures cancelled, their replies never written) the moment it is
//!   known, and nothing is admitted any more.
//!
//! Running futures are polled front to back, every time the connection task wakes. A newly
//! started request is polled once at once, before the next request is even decoded; so
//! handlers see their requests' first polls in arrival order (see [`Admission::Write`] for
//! why that matters).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::{Admission, Outcome};

/// A handler future, boxed so that slots can move.
pub(super) type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

enum State<'a> {
    Running(HandlerFuture<'a>),
    Done(Outcome),
}

struct Slot<'a> {
    state: State<'a>,
    admission: Admission,
    /// Request bytes this slot holds until its future finishes.
    bytes: usize,
}

/// What a poll of the running futures changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Progress {
    /// Requests whose future finished (or was dropped).
    pub(super) finished: usize,
    /// Request bytes those requests no longer hold.
    pub(super) freed_bytes: usize,
}

/// One connection's requests in flight (see the module docs).
#[derive(Default)]
pub(super) struct Pipeline<'a> {
    slots: VecDeque<Slot<'a>>,
    running: usize,
    running_exclusive: usize,
    /// An outcome that closes the connection is in the pipeline: nothing more is admitted.
    closing: bool,
}

impl<'a> Pipeline<'a> {
    /// Slots in the pipeline (running or done, not yet taken out).
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether an outcome in the pipeline closes the connection.
    pub(super) fn closing(&self) -> bool {
        self.closing
    }

    /// Whether a request of this kind may start now.
    pub(super) fn admits(&self, admission: Admission) -> bool {
        !self.closing
            && match admission {
                Admission::Exclusive => self.running == 0,
                Admission::Write => self.running_exclusive == 0,
            }
    }

    /// Starts a request and polls it once.
    pub(super) fn start(
        &mut self,
        future: HandlerFuture<'a>,
        admission: Admission,
        bytes: usize,
        cx: &mut Context<'_>,
    ) -> Progress {
        assert!(
            self.admits(admission),
            "a {admission:?} request started while {} requests ({} exclusive) run",
            self.running,
            self.running_exclusive
        );
        self.running += 1;
        if admission == Admission::Exclusive {
            self.running_exclusive += 1;
        }
        self.slots.push_back(Slot {
            state: State::Running(future),
            admission,
            bytes,
        });
        let last = self.slots.len() - 1;
        let mut progress = Progress::default();
        self.poll_slot(last, cx, &mut progress);
        self.check();
        progress
    }

    /// Polls every running future, front to back. Ready when at least one finished.
    pub(super) fn poll_progress(&mut self, cx: &mut Context<'_>) -> Poll<Progress> {
        let mut progress = Progress::default();
        let mut i = 0;
        while i < self.slots.len() {
            self.poll_slot(i, cx, &mut progress);
            i += 1;
        }
        self.check();
        if progress.finished > 0 {
            Poll::Ready(progress)
        } else {
            Poll::Pending
        }
    }

    /// Takes the front outcome out, if it is known.
    pub(super) fn pop_done(&mut self) -> Option<Outcome> {
        if !matches!(self.slots.front()?.state, State::Done(_)) {
            return None;
        }
        let slot = self.slots.pop_front()?;
        match slot.state {
            State::Done(outcome) => Some(outcome),
            State::Running(_) => None,
        }
    }

    fn poll_slot(&mut self, i: usize, cx: &mut Context<'_>, progress: &mut Progress) {
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        let State::Running(future) = &mut slot.state else {
            return;
        };
        let Poll::Ready(outcome) = future.as_mut().poll(cx) else {
            return;
        };
        let close = outcome.close;
        slot.state = State::Done(outcome);
        progress.finished += 1;
        progress.freed_bytes += std::mem::take(&mut slot.bytes);
        self.running -= 1;
        if slot.admission == Admission::Exclusive {
            self.running_exclusive -= 1;
        }
        if close {
            self.closing = true;
            self.drop_after(i, progress);
        }
    }

    /// Drops every slot behind `i`: an outcome that closes the connection ends it there.
    fn drop_after(&mut self, i: usize, progress: &mut Progress) {
        for slot in self.slots.drain(i + 1..) {
            if let State::Running(_) = slot.state {
                progress.finished += 1;
                progress.freed_bytes += slot.bytes;
                self.running -= 1;
                if slot.admission == Admission::Exclusive {
                    self.running_exclusive -= 1;
                }
            }
        }
    }

    fn check(&self) {
        assert!(
            self.running_exclusive <= 1 && (self.running_exclusive == 0 || self.running == 1),
            "an exclusive request does not run alone: {} running, {} exclusive",
            self.running,
            self.running_exclusive
        );
        assert!(self.running <= self.slots.len());
    }

    /// Requests still running (their futures not finished).
    #[cfg(test)]
    fn running(&self) -> usize {
        self.running
    }

    /// Request bytes the running slots hold.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.slots.iter().map(|s| s.bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::Waker;

    use super::*;
    use crate::response::Response;

    fn ready(response: Response) -> HandlerFuture<'static> {
        Box::pin(std::future::ready(Outcome::from(response)))
    }

    /// A future that finishes once its flag is set.
    fn gated(flag: Arc<AtomicBool>, outcome: Outcome) -> HandlerFuture<'static> {
        Box::pin(std::future::poll_fn(move |_| {
            if flag.load(Ordering::SeqCst) {
                Poll::Ready(outcome.clone())
            } else {
                Poll::Pending
            }
        }))
    }

    #[test]
    fn an_exclusive_request_waits_for_running_writes_and_holds_back_later_ones() {
        let mut cx = Context::from_waker(Waker::noop());
        let mut p = Pipeline::default();
        let w1 = Arc::new(AtomicBool::new(false));
        let w2 = Arc::new(AtomicBool::new(false));
        p.start(
            gated(w1.clone(), Response::Set.into()),
            Admission::Write,
            10,
            &mut cx,
        );
        assert!(p.admits(Admission::Write));
        p.start(
            gated(w2.clone(), Response::Delete.into()),
            Admission::Write,
            20,
            &mut cx,
        );
        assert!(!p.admits(Admission::Exclusive));
        // The second write finishes first: its outcome waits behind the first.
        w2.store(true, Ordering::SeqCst);
        let progress = p.poll_progress(&mut cx);
        assert_eq!(
            progress,
            Poll::Ready(Progress {
                finished: 1,
                freed_bytes: 20
            })
        );
        assert_eq!(p.pop_done(), None);
        assert!(!p.admits(Admission::Exclusive));
        w1.store(true, Ordering::SeqCst);
        assert!(p.poll_progress(&mut cx).is_ready());
        assert!(p.admits(Admission::Exclusive));
        assert_eq!(p.pop_done(), Some(Response::Set.into()));
        assert_eq!(p.pop_done(), Some(Response::Delete.into()));
        // An exclusive request runs alone.
        let r = Arc::new(AtomicBool::new(false));
        p.start(
            gated(r.clone(), Response::Nop.into()),
            Admission::Exclusive,
            1,
            &mut cx,
        );
        assert!(!p.admits(Admission::Write));
        assert!(!p.admits(Admission::Exclusive));
        r.store(true, Ordering::SeqCst);
        assert!(p.poll_progress(&mut cx).is_ready());
        assert!(p.admits(Admission::Write));
    }

    #[test]
    fn a_closing_outcome_drops_everything_behind_it() {
        let mut cx = Context::from_waker(Waker::noop());
        let mut p = Pipeline::default();
        let w1 = Arc::new(AtomicBool::new(false));
        let w2 = Arc::new(AtomicBool::new(false));
        let w3 = Arc::new(AtomicBool::new(false));
        p.start(
            gated(w1.clone(), Response::Set.into()),
            Admission::Write,
            1,
            &mut cx,
        );
        let refused = Outcome::new(Err(crate::ErrorReply::new(
            crate::ErrorCode::NotMaster,
            "node_1",
        )));
        assert!(refused.close);
        p.start(
            gated(w2.clone(), refused.clone()),
            Admission::Write,
            2,
            &mut cx,
        );
        p.start(
            gated(w3, Response::Set.into()),
            Admission::Write,
            4,
            &mut cx,
        );
        w2.store(true, Ordering::SeqCst);
        assert_eq!(
            p.poll_progress(&mut cx),
            Poll::Ready(Progress {
                finished: 2,
                freed_bytes: 6
            })
        );
        assert!(p.closing());
        assert!(!p.admits(Admission::Write));
        assert_eq!(p.len(), 2);
        w1.store(true, Ordering::SeqCst);
        assert!(p.poll_progress(&mut cx).is_ready());
        assert_eq!(p.pop_done(), Some(Response::Set.into()));
        assert_eq!(p.pop_done(), Some(refused));
        assert!(p.is_empty());
        assert_eq!(p.running(), 0);
    }

    #[test]
    fn a_request_that_finishes_at_its_first_poll_is_done_at_once() {
        let mut cx = Context::from_waker(Waker::noop());
        let mut p = Pipeline::default();
        let progress = p.start(ready(Response::Nop), Admission::Exclusive, 7, &mut cx);
        assert_eq!(
            progress,
            Progress {
                finished: 1,
                freed_bytes: 7
            }
        );
        assert_eq!(p.bytes(), 0);
        assert_eq!(p.pop_done(), Some(Response::Nop.into()));
    }
}
