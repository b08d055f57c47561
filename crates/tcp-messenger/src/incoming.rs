//! The listening side: accept connections, judge each handshake, then read, validate and
//! deliver frames to the inbox tagged with the peer's name.
//!
//! Invariants: a connection delivers nothing before its handshake was accepted; every refusal
//! (stranger, wrong cluster or version, bad or oversized frame) closes only that connection,
//! is counted, and is logged with the remote address and whatever name it gave; a
//! connection's read buffer stays within about one maximum frame plus one read chunk; at most
//! `max_inbound_connections` connections are open at once (the rest are closed on accept).

use crate::counters::{InboundCounters, bump};
use crate::handshake::{Hello, HelloReply, MAX_HANDSHAKE_FRAME, read_frame};
use crate::messenger::Incoming;
use bytes::BytesMut;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};
use wire_codec::{Frame, FrameCodec, WireMessage};

/// Read buffer grown in steps of this size.
const READ_CHUNK: usize = 64 * 1024;

/// What the listener and its connection tasks share.
pub(crate) struct InboundContext<T> {
    pub node_name: String,
    pub cluster_id: String,
    pub membership: String,
    pub protocol_version: u32,
    /// Known peer names, each with the shared name attached to its messages.
    pub peers: BTreeMap<String, Arc<str>>,
    pub max_frame: u32,
    /// One permit per open inbound connection (`max_inbound_connections` in all).
    pub connection_slots: Arc<Semaphore>,
    pub max_inbound_connections: usize,
    pub handshake_timeout: Duration,
    pub dead_peer_timeout: Duration,
    pub inbox: mpsc::Sender<Incoming<T>>,
    pub counters: Arc<InboundCounters>,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
}

/// Accept connections until shutdown.
pub(crate) async fn run_listener<T: WireMessage + Send + 'static>(
    listener: TcpListener,
    ctx: Arc<InboundContext<T>>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            () = ctx.shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, addr)) => {
                let Ok(slot) = Arc::clone(&ctx.connection_slots).try_acquire_owned() else {
                    warn!(
                        %addr,
                        limit = ctx.max_inbound_connections,
                        "refused connection: too many inbound connections open"
                    );
                    bump(&ctx.counters.refused_handshakes, 1);
                    drop(stream);
                    continue;
                };
                let ctx2 = Arc::clone(&ctx);
                ctx.tracker.spawn(async move {
                    // Held until the connection is over.
                    let _slot = slot;
                    tokio::select! {
                        biased;
                        () = ctx2.shutdown.cancelled() => {}
                        () = serve(stream, addr, &ctx2) => {}
                    }
                });
            }
            Err(e) => {
                // Typically out of file descriptors: pause briefly instead of spinning.
                warn!(error = %e, "accepting a peer connection failed");
                tokio::select! {
                    biased;
                    () = ctx.shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
            }
        }
    }
    debug!("listener stopped");
}

async fn serve<T: WireMessage>(mut stream: TcpStream, addr: SocketAddr, ctx: &InboundContext<T>) {
    crate::socket::tune(&stream, ctx.dead_peer_timeout);
    let hello = match tokio::time::timeout(
        ctx.handshake_timeout,
        read_frame::<Hello>(&mut stream, MAX_HANDSHAKE_FRAME),
    )
    .await
    {
        Ok(Ok(hello)) => hello,
        Ok(Err(e)) => {
            warn!(%addr, error = %e, "refused connection: bad handshake");
            bump(&ctx.counters.refused_handshakes, 1);
            return;
        }
        Err(_elapsed) => {
            warn!(%addr, timeout = ?ctx.handshake_timeout, "refused connection: no handshake in time");
            bump(&ctx.counters.refused_handshakes, 1);
            return;
        }
    };
    let verdict = hello
        .judge(
            &ctx.node_name,
            &ctx.cluster_id,
            ctx.protocol_version,
            &ctx.peers,
            &ctx.membership,
        )
        .and_then(|()| {
            ctx.peers
                .get(&hello.node_name)
                .cloned()
                .ok_or_else(|| format!("node name {:?} is not a peer", hello.node_name))
        });
    let from = match verdict {
        Ok(from) => from,
        Err(reason) => {
            warn!(
                %addr,
                // Debug-quoted: these strings come from a stranger and may hold newlines or
                // control characters that would forge log lines if printed raw.
                node = ?hello.node_name,
                cluster = ?hello.cluster_id,
                version = hello.protocol_version,
                %reason,
                "refused connection"
            );
            bump(&ctx.counters.refused_handshakes, 1);
            // Best effort: tell the other side why, so its log says it too.
            let reply = HelloReply::Refused { reason };
            if let Ok(frame) = Frame::encode(&reply, MAX_HANDSHAKE_FRAME) {
                let _ =
                    tokio::time::timeout(ctx.handshake_timeout, stream.write_all(frame.as_bytes()))
                        .await;
            }
            return;
        }
    };
    let accepted = HelloReply::Accepted {
        node_name: ctx.node_name.clone(),
        membership: ctx.membership.clone(),
    };
    let frame = match Frame::encode(&accepted, MAX_HANDSHAKE_FRAME) {
        Ok(frame) => frame,
        Err(e) => {
            warn!(error = %e, "could not encode our handshake reply");
            return;
        }
    };
    if let Err(e) = stream.write_all(frame.as_bytes()).await {
        debug!(peer = %from, %addr, error = %e, "link from peer closed during handshake");
        return;
    }
    info!(peer = %from, %addr, "link from peer up");
    read_messages(stream, addr, from, ctx).await;
}

/// Decode frames until EOF, an error, or the inbox is gone.
async fn read_messages<T: WireMessage>(
    mut stream: TcpStream,
    addr: SocketAddr,
    from: Arc<str>,
    ctx: &InboundContext<T>,
) {
    let mut codec = FrameCodec::<T>::new(ctx.max_frame);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(msg)) => {
                    let incoming = Incoming {
                        from: Arc::clone(&from),
                        msg,
                    };
                    if ctx.inbox.send(incoming).await.is_err() {
                        return;
                    }
                    bump(&ctx.counters.received, 1);
                }
                Ok(None) => break,
                Err(e) => {
                    warn!(peer = %from, %addr, error = %e, "closing link from peer: bad frame");
                    bump(&ctx.counters.refused_frames, 1);
                    return;
                }
            }
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) => {
                if !buf.is_empty() {
                    debug!(peer = %from, %addr, bytes = buf.len(), "link closed mid-frame");
                }
                info!(peer = %from, %addr, "link from peer closed");
                return;
            }
            Ok(_) => {}
            Err(e) => {
                info!(peer = %from, %addr, error = %e, "link from peer broke");
                return;
            }
        }
    }
}
