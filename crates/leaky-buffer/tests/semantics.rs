//! Async behaviour of the leaky queue: waiting, waking, closing, batching, and a model-based
//! proptest of every operation sequence against a plain `VecDeque`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use leaky_buffer::{SendError, TryRecvError, channel, channel_weighted};
use proptest::prelude::*;
use std::collections::VecDeque;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

#[tokio::test]
async fn recv_waits_for_a_send() {
    let (tx, mut rx) = channel::<u32>(4);
    let task = tokio::spawn(async move { rx.recv().await });
    tokio::task::yield_now().await;
    tx.send(7).unwrap();
    assert_eq!(task.await.unwrap(), Some(7));
}

#[tokio::test]
async fn recv_sees_none_when_last_sender_drops_while_waiting() {
    let (tx, mut rx) = channel::<u32>(4);
    let tx2 = tx.clone();
    let task = tokio::spawn(async move { rx.recv().await });
    tokio::task::yield_now().await;
    drop(tx);
    drop(tx2);
    assert_eq!(task.await.unwrap(), None);
}

#[tokio::test]
async fn recv_many_batches_up_to_limit() {
    let (tx, mut rx) = channel::<u32>(16);
    for i in 0..10 {
        tx.send(i).unwrap();
    }
    let mut buf = Vec::new();
    assert_eq!(rx.recv_many(&mut buf, 4).await, 4);
    assert_eq!(rx.recv_many(&mut buf, 100).await, 6);
    assert_eq!(buf, (0..10).collect::<Vec<_>>());
    drop(tx);
    assert_eq!(rx.recv_many(&mut buf, 100).await, 0);
    assert_eq!(rx.recv_many(&mut buf, 0).await, 0);
}

#[tokio::test]
async fn recv_many_waits_then_wakes() {
    let (tx, mut rx) = channel::<u32>(16);
    let task = tokio::spawn(async move {
        let mut buf = Vec::new();
        let n = rx.recv_many(&mut buf, 8).await;
        (n, buf)
    });
    tokio::task::yield_now().await;
    tx.send(1).unwrap();
    let (n, buf) = task.await.unwrap();
    assert!(n >= 1);
    assert_eq!(buf[0], 1);
}

#[tokio::test]
async fn close_then_drain_then_none() {
    let (tx, mut rx) = channel::<u32>(4);
    tx.send(1).unwrap();
    rx.close();
    assert!(tx.is_closed());
    assert!(matches!(tx.send(2), Err(SendError::Closed(2))));
    assert_eq!(rx.recv().await, Some(1));
    assert_eq!(rx.recv().await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_producers_threads_lose_nothing_but_counted_drops() {
    const PRODUCERS: u64 = 4;
    const PER_PRODUCER: u64 = 20_000;
    let (tx, mut rx) = channel::<(u64, u64)>(64);
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let tx = tx.clone();
        producers.push(std::thread::spawn(move || {
            let mut full = 0u64;
            for i in 0..PER_PRODUCER {
                match tx.send((p, i)) {
                    Ok(()) => {}
                    Err(SendError::Full(_)) => full += 1,
                    Err(SendError::Closed(_)) => panic!("closed while receiver alive"),
                }
            }
            full
        }));
    }
    drop(tx);
    let mut last = vec![None::<u64>; PRODUCERS as usize];
    let mut received = 0u64;
    while let Some((p, i)) = rx.recv().await {
        let slot = &mut last[p as usize];
        assert!(slot.is_none_or(|prev| prev < i), "per-producer FIFO broken");
        *slot = Some(i);
        received += 1;
    }
    let full: u64 = producers.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(received + full, PRODUCERS * PER_PRODUCER);
    assert_eq!(rx.dropped(), full);
    assert_eq!(rx.accepted(), received);
}

#[derive(Debug, Clone)]
enum Op {
    Send(u8),
    Recv,
    RecvMany(usize),
    CloneSender,
    DropSender,
    Close,
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => any::<u8>().prop_map(Op::Send),
        4 => Just(Op::Recv),
        2 => (1usize..4).prop_map(Op::RecvMany),
        1 => Just(Op::CloneSender),
        1 => Just(Op::DropSender),
        1 => Just(Op::Close),
        1 => Just(Op::Clear),
    ]
}

proptest! {
    /// Any interleaving of operations by several senders and the receiver behaves like the
    /// model: a FIFO bounded in items and in weight (an item weighs its value) that refuses
    /// (and counts) the newest item when full, except that an empty queue takes any item.
    #[test]
    fn behaves_like_the_model(
        capacity in 1usize..6,
        max_weight in 1usize..600,
        ops in proptest::collection::vec(op(), 0..200),
    ) {
        let (tx, mut rx) = channel_weighted::<u8>(capacity, max_weight, |v| usize::from(*v));
        let mut senders = vec![tx];
        let mut model: VecDeque<u8> = VecDeque::new();
        let mut closed = false;
        let mut dropped = 0u64;
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Op::Send(v) => {
                    let Some(tx) = senders.get(step % senders.len().max(1)) else { continue };
                    let got = tx.send(v);
                    if closed {
                        prop_assert_eq!(got, Err(SendError::Closed(v)));
                    } else if model.len() == capacity
                        || (!model.is_empty()
                            && model.iter().map(|v| usize::from(*v)).sum::<usize>() + usize::from(v)
                                > max_weight)
                    {
                        prop_assert_eq!(got, Err(SendError::Full(v)));
                        dropped += 1;
                    } else {
                        prop_assert_eq!(got, Ok(()));
                        model.push_back(v);
                    }
                }
                Op::Recv => {
                    let want = match model.pop_front() {
                        Some(v) => Ok(v),
                        None if closed || senders.is_empty() => Err(TryRecvError::Closed),
                        None => Err(TryRecvError::Empty),
                    };
                    prop_assert_eq!(rx.try_recv(), want);
                }
                Op::RecvMany(limit) => {
                    let mut got = Vec::new();
                    let polled = {
                        let fut = pin!(rx.recv_many(&mut got, limit));
                        fut.poll(&mut Context::from_waker(Waker::noop()))
                    };
                    let n = model.len().min(limit);
                    let want: Vec<u8> = model.drain(..n).collect();
                    match polled {
                        Poll::Ready(k) => {
                            prop_assert_eq!(k, n);
                            prop_assert_eq!(got, want);
                            if n == 0 {
                                prop_assert!(closed || senders.is_empty());
                            }
                        }
                        Poll::Pending => {
                            prop_assert_eq!(n, 0);
                            prop_assert!(!closed && !senders.is_empty());
                        }
                    }
                }
                Op::CloneSender => {
                    if let Some(tx) = senders.first() {
                        senders.push(tx.clone());
                    }
                }
                Op::DropSender => {
                    senders.pop();
                }
                Op::Close => {
                    rx.close();
                    closed = true;
                }
                Op::Clear => {
                    prop_assert_eq!(rx.clear(), model.len());
                    model.clear();
                }
            }
            prop_assert_eq!(rx.len(), model.len());
            prop_assert_eq!(rx.weight(), model.iter().map(|v| usize::from(*v)).sum::<usize>());
            prop_assert_eq!(rx.dropped(), dropped);
        }
    }
}
