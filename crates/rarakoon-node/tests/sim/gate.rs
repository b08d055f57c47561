//! Pausing a node: every task of a node runs behind its [`Gate`]; a closed gate stops polling
//! them (a GC stall, SIGSTOP) while time and the other nodes go on.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

#[derive(Debug, Default)]
pub struct Gate {
    state: Mutex<(bool, Vec<Waker>)>,
}

impl Gate {
    pub fn pause(&self) {
        self.lock().0 = true;
    }

    pub fn resume(&self) {
        self.resume_shuffled(0);
    }

    /// Opens the gate, waking the node's tasks in an order drawn from `seed` (which of a
    /// resumed process's threads runs first is up to the OS scheduler).
    pub fn resume_shuffled(&self, seed: u64) {
        let mut wakers = {
            let mut st = self.lock();
            st.0 = false;
            std::mem::take(&mut st.1)
        };
        let mut rng = crate::rng::Rng::new(seed);
        for i in (1..wakers.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            wakers.swap(i, j);
        }
        for w in wakers {
            w.wake();
        }
    }

    pub fn paused(&self) -> bool {
        self.lock().0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (bool, Vec<Waker>)> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A future that only makes progress while its gate is open.
pub struct Gated<F> {
    pub gate: Arc<Gate>,
    pub inner: Pin<Box<F>>,
}

impl<F: Future> Future for Gated<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        {
            let mut st = self.gate.lock();
            if st.0 {
                // One entry per task, so the resume order is a fair shuffle of the tasks.
                if !st.1.iter().any(|w| w.will_wake(cx.waker())) {
                    st.1.push(cx.waker().clone());
                }
                return Poll::Pending;
            }
        }
        self.inner.as_mut().poll(cx)
    }
}
