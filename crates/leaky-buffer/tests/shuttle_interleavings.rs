//! Concurrency tests under shuttle: random schedules of several producer threads and the async
//! consumer. A lost wakeup shows up as a shuttle deadlock report; lost or reordered items as a
//! failed assertion. (The queue's state is behind one std mutex with no shuttle yield point
//! inside, so each operation is one atomic step; shuttle explores how those steps interleave.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use leaky_buffer::{SendError, channel};
use shuttle::future::block_on;
use shuttle::thread;

const ITERATIONS: usize = 2_000;

#[test]
fn producers_and_consumer_fifo_and_accounting() {
    shuttle::check_random(
        || {
            let (tx, mut rx) = channel::<(usize, u32)>(3);
            let handles: Vec<_> = (0..3)
                .map(|p| {
                    let tx = tx.clone();
                    thread::spawn(move || {
                        let mut full = 0u64;
                        for i in 0..4 {
                            match tx.send((p, i)) {
                                Ok(()) => {}
                                Err(SendError::Full(_)) => full += 1,
                                Err(SendError::Closed(_)) => panic!("closed while receiver alive"),
                            }
                            thread::yield_now();
                        }
                        full
                    })
                })
                .collect();
            drop(tx);
            let mut last = [None::<u32>; 3];
            let mut received = 0u64;
            block_on(async {
                while let Some((p, i)) = rx.recv().await {
                    assert!(last[p].is_none_or(|prev| prev < i));
                    last[p] = Some(i);
                    received += 1;
                }
            });
            let full: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
            assert_eq!(received + full, 12);
            assert_eq!(rx.dropped(), full);
        },
        ITERATIONS,
    );
}

#[test]
fn close_races_with_senders_and_nothing_accepted_is_lost() {
    shuttle::check_random(
        || {
            let (tx, mut rx) = channel::<u32>(8);
            let handles: Vec<_> = (0..2)
                .map(|p| {
                    let tx = tx.clone();
                    thread::spawn(move || {
                        let mut accepted = 0u64;
                        let mut saw_closed = false;
                        for i in 0..4 {
                            match tx.send(p * 100 + i) {
                                Ok(()) => {
                                    assert!(!saw_closed, "accepted after a Closed");
                                    accepted += 1;
                                }
                                Err(SendError::Full(_)) => {}
                                Err(SendError::Closed(_)) => saw_closed = true,
                            }
                            thread::yield_now();
                        }
                        accepted
                    })
                })
                .collect();
            drop(tx);
            let mut received = 0u64;
            block_on(async {
                if rx.recv().await.is_some() {
                    received += 1;
                }
                rx.close();
                while rx.recv().await.is_some() {
                    received += 1;
                }
            });
            let accepted: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
            assert_eq!(received, accepted);
        },
        ITERATIONS,
    );
}

#[test]
fn recv_many_under_contention() {
    shuttle::check_random(
        || {
            let (tx, mut rx) = channel::<u32>(2);
            let tx2 = tx.clone();
            let a = thread::spawn(move || (0..3).filter(|i| tx.send(*i).is_ok()).count());
            let b = thread::spawn(move || (10..13).filter(|i| tx2.send(*i).is_ok()).count());
            let mut got = Vec::new();
            block_on(async {
                while rx.recv_many(&mut got, 2).await > 0 {
                    thread::yield_now();
                }
            });
            let sent = a.join().unwrap() + b.join().unwrap();
            assert_eq!(got.len(), sent);
        },
        ITERATIONS,
    );
}
