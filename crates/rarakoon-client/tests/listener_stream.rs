//! Streamed replies (`Outcome::streamed`, what GET_DB uses): the handler's pieces reach the
//! client in order, the connection closes after the stream ends, an error cuts it short, and
//! nothing sent after the streamed request is answered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rarakoon_client::listener::{
    ConnectionInfo, Handler, Listener, ListenerConfig, Outcome, ReplyStream,
};
use rarakoon_client::{ClientCodec, Limits, Prologue, Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::Encoder;

const CLUSTER: &str = "arakoon";
const SAFETY: Duration = Duration::from_secs(30);

/// Answers GET_DB with a stream whose sender the test takes from `senders`.
struct Streamer {
    senders: Mutex<Vec<mpsc::Sender<std::io::Result<Bytes>>>>,
    capacity: usize,
}

impl Handler for Streamer {
    async fn handle(&self, _c: &ConnectionInfo, request: Request) -> Outcome {
        match request {
            Request::GetDb => {
                let (tx, rx) = mpsc::channel(self.capacity);
                self.senders.lock().unwrap().push(tx);
                Outcome::streamed(Ok(Response::GetDb(Bytes::new())), ReplyStream::new(rx))
            }
            _ => Response::Nop.into(),
        }
    }
}

async fn setup(capacity: usize, config: ListenerConfig) -> (Listener, Arc<Streamer>, TcpStream) {
    let handler = Arc::new(Streamer {
        senders: Mutex::new(Vec::new()),
        capacity,
    });
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), config, Arc::clone(&handler))
        .await
        .unwrap();
    let mut stream = TcpStream::connect(listener.local_addr()).await.unwrap();
    let mut codec = ClientCodec::new(Limits::default());
    let mut out = BytesMut::new();
    codec
        .encode(
            &Prologue {
                cluster_id: Bytes::from_static(CLUSTER.as_bytes()),
            },
            &mut out,
        )
        .unwrap();
    codec.encode(&Request::GetDb, &mut out).unwrap();
    // Sent behind the streamed request: never answered (the connection closes after it).
    codec.encode(&Request::Nop, &mut out).unwrap();
    stream.write_all(&out).await.unwrap();
    (listener, handler, stream)
}

async fn sender(handler: &Streamer) -> mpsc::Sender<std::io::Result<Bytes>> {
    tokio::time::timeout(SAFETY, async {
        loop {
            if let Some(tx) = handler.senders.lock().unwrap().pop() {
                return tx;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap()
}

async fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    tokio::time::timeout(SAFETY, stream.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    all
}

#[tokio::test]
async fn pieces_arrive_in_order_and_the_connection_closes_after_the_stream() {
    let (listener, handler, mut stream) = setup(2, ListenerConfig::new(CLUSTER)).await;
    let tx = sender(&handler).await;
    let mut expected = Vec::new();
    for i in 0..50u32 {
        let piece = Bytes::from(vec![(i % 251) as u8; 1000 + i as usize]);
        expected.extend_from_slice(&piece);
        tx.send(Ok(piece)).await.unwrap();
    }
    drop(tx);
    // Exactly the pieces, and nothing for the NOP sent after the streamed request.
    assert_eq!(read_to_end(&mut stream).await, expected);
    listener.shutdown().await;
}

#[tokio::test]
async fn an_error_cuts_the_stream_short_and_closes_the_connection() {
    let (listener, handler, mut stream) = setup(2, ListenerConfig::new(CLUSTER)).await;
    let tx = sender(&handler).await;
    tx.send(Ok(Bytes::from_static(b"first"))).await.unwrap();
    tx.send(Err(std::io::Error::other("disk on fire")))
        .await
        .unwrap();
    assert_eq!(read_to_end(&mut stream).await, b"first");
    // The producer learns that nobody reads any more.
    tokio::time::timeout(SAFETY, tx.closed()).await.unwrap();
    listener.shutdown().await;
}
