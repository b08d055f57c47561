//! The listening side: accept connections, judge each handshake, then read, validate and
//! deliver frames to the inbox tagged with the peer's name.
//!
//! Invariants: a connection delivers nothing before its handshake was accepted; every refusal
//! (stranger, wrong cluster or version, bad or oversized frame) closes only that connection,
//! is counted, and is logged with the remote address and whatever name it gave; a
//! connection's read buffer grows only with bytes that arrived (a declared length reserves
//! nothing) and stays within about one maximum frame plus one read chunk, twice that at worst
//! while it doubles, and is released once empty if it grew past [`KEEP_READ_BUFFER`]; at most
//! `max_inbound_connections` connections are open at once (the rest are closed on accept); no
//! connection stays open without sending: the handshake must complete within
//! `handshake_timeout`, and after it every gap between reads is at most `idle_timeout` (the
//! peer's link sends a keepalive frame, length 0, when it has nothing else to say); a
//! delivered message holds its frame's bytes of the inbox budget until the application drops
//! its [`InboxBytes`](crate::InboxBytes), and a reader waits for budget before delivering.
//! With TLS, nothing is read outside a TLS session whose client certificate chains to the
//! cluster CA, and a hello is accepted only when the node name it claims is one of that
//! certificate's names; the TLS handshake and the hello share one `handshake_timeout`.

use crate::counters::{Gauge, InboundCounters, bump};
use crate::handshake::{Hello, HelloReply, MAX_HANDSHAKE_FRAME, check_identity, read_frame};
use crate::messenger::{InboxBytes, Incoming};
use bytes::{Buf, BytesMut};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::{Instant, timeout_at};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};
use wire_codec::{DecodeError, Frame, FrameCodec, LENGTH_PREFIX, WireMessage};

/// Read buffer grown in steps of this size.
const READ_CHUNK: usize = 64 * 1024;
/// A read buffer that grew past this for a large frame is released once it is empty again.
const KEEP_READ_BUFFER: usize = 1024 * 1024;
/// A frame whose declared length is 0: sent by an idle link, skipped by the reader.
const KEEPALIVE: [u8; LENGTH_PREFIX] = [0; LENGTH_PREFIX];

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
    /// Longest silence allowed on an established link.
    pub idle_timeout: Duration,
    pub dead_peer_timeout: Duration,
    /// The inbox byte budget: one permit per byte (`inbox_limit` in all).
    pub inbox_budget: Arc<Semaphore>,
    pub inbox_limit: u32,
    pub inbox: mpsc::Sender<Incoming<T>>,
    pub counters: Arc<InboundCounters>,
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    /// Mutual TLS: every connection must complete a TLS handshake with a certificate signed
    /// by the cluster CA first.
    pub tls: Option<rarakoon_tls::tokio_rustls::TlsAcceptor>,
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

async fn serve<T: WireMessage>(stream: TcpStream, addr: SocketAddr, ctx: &InboundContext<T>) {
    crate::socket::tune(&stream, ctx.dead_peer_timeout);
    // One deadline for the TLS handshake and the hello together.
    let deadline = Instant::now() + ctx.handshake_timeout;
    let Some(acceptor) = &ctx.tls else {
        return shake_and_read(stream, addr, None, deadline, ctx).await;
    };
    match timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            let names = rarakoon_tls::peer_names(tls.get_ref().1);
            shake_and_read(tls, addr, Some(names), deadline, ctx).await;
        }
        Ok(Err(e)) => {
            warn!(
                %addr,
                error = %e,
                "refused connection: TLS handshake failed (TLS is required on this port, with a \
                 certificate signed by the cluster CA; plain TCP, no certificate, an expired one \
                 or another CA's are refused)"
            );
            bump(&ctx.counters.refused_handshakes, 1);
        }
        Err(_elapsed) => {
            warn!(%addr, timeout = ?ctx.handshake_timeout, "refused connection: no TLS handshake in time");
            bump(&ctx.counters.refused_handshakes, 1);
        }
    }
}

/// The messaging handshake on an open (plain or TLS) stream, then the messages. `names` are
/// the names of the peer's certificate when the stream is TLS.
async fn shake_and_read<S, T>(
    mut stream: S,
    addr: SocketAddr,
    names: Option<Vec<String>>,
    deadline: Instant,
    ctx: &InboundContext<T>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    T: WireMessage,
{
    let hello = match timeout_at(
        deadline,
        read_frame::<Hello>(&mut stream, MAX_HANDSHAKE_FRAME),
    )
    .await
    {
        Ok(Ok(hello)) => hello,
        Ok(Err(DecodeError::FrameTooLarge { len, .. }))
            if names.is_none() && rarakoon_tls::looks_like_tls(&len.to_le_bytes()) =>
        {
            warn!(
                %addr,
                "refused connection: the peer opened a TLS session, but TLS is not configured \
                 on this node's messaging port (configure [cluster.tls] on every node, or on none)"
            );
            bump(&ctx.counters.refused_handshakes, 1);
            return;
        }
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
    // The certificate is checked first: a peer that is not who it claims learns nothing
    // else (not even our membership view) from the refusal.
    let verdict = match &names {
        Some(names) => check_identity(&hello.node_name, names),
        None => Ok(()),
    }
    .and_then(|()| {
        hello.judge(
            &ctx.node_name,
            &ctx.cluster_id,
            ctx.protocol_version,
            &ctx.peers,
            &ctx.membership,
        )
    })
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
                certificate_names = ?names,
                %reason,
                "refused connection"
            );
            bump(&ctx.counters.refused_handshakes, 1);
            // Best effort: tell the other side why, so its log says it too.
            let reply = HelloReply::Refused { reason };
            if let Ok(frame) = Frame::encode(&reply, MAX_HANDSHAKE_FRAME) {
                let _ = tokio::time::timeout(ctx.handshake_timeout, async {
                    stream.write_all(frame.as_bytes()).await?;
                    stream.flush().await
                })
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
    let written = async {
        stream.write_all(frame.as_bytes()).await?;
        stream.flush().await
    };
    if let Err(e) = written.await {
        debug!(peer = %from, %addr, error = %e, "link from peer closed during handshake");
        return;
    }
    info!(peer = %from, %addr, tls = names.is_some(), "link from peer up");
    read_messages(stream, addr, from, ctx).await;
}

/// Decode frames until EOF, an error, a silence past the idle timeout, or the inbox is gone.
async fn read_messages<S: AsyncRead + Unpin, T: WireMessage>(
    mut stream: S,
    addr: SocketAddr,
    from: Arc<str>,
    ctx: &InboundContext<T>,
) {
    let mut codec = FrameCodec::<T>::new(ctx.max_frame);
    let mut buf = BytesMut::new();
    let mut held = Gauge::new(Arc::clone(&ctx.counters.buffered_bytes));
    let mut unaccounted = 0u64;
    loop {
        while let Some(&prefix) = buf.first_chunk::<LENGTH_PREFIX>() {
            if prefix == KEEPALIVE {
                buf.advance(LENGTH_PREFIX);
                continue;
            }
            let frame_len = u64::from(u32::from_le_bytes(prefix)) + LENGTH_PREFIX as u64;
            match codec.decode(&mut buf) {
                Ok(Some(msg)) => {
                    let Some(budget) = InboxBytes::acquire(
                        &ctx.inbox_budget,
                        ctx.inbox_limit,
                        frame_len,
                        &ctx.counters.inbox_bytes,
                    )
                    .await
                    else {
                        return;
                    };
                    let incoming = Incoming {
                        from: Arc::clone(&from),
                        msg,
                        held: budget,
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
        held.set(buf.capacity() as u64);
        // Counted once the bytes were decoded and the buffer measured, so a reader of the
        // counters who saw the bytes arrive also sees what they cost.
        bump(
            &ctx.counters.received_bytes,
            std::mem::take(&mut unaccounted),
        );
        if buf.is_empty() && buf.capacity() > KEEP_READ_BUFFER {
            buf = BytesMut::new();
        }
        // Grow by one chunk at a time, only as bytes arrive (never to a declared length).
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        held.set(buf.capacity() as u64);
        let read = tokio::time::timeout(ctx.idle_timeout, stream.read_buf(&mut buf)).await;
        held.set(buf.capacity() as u64);
        match read {
            Ok(Ok(0)) => {
                if !buf.is_empty() {
                    debug!(peer = %from, %addr, bytes = buf.len(), "link closed mid-frame");
                }
                info!(peer = %from, %addr, "link from peer closed");
                return;
            }
            Ok(Ok(n)) => unaccounted = n as u64,
            Ok(Err(e)) => {
                info!(peer = %from, %addr, error = %e, "link from peer broke");
                return;
            }
            Err(_elapsed) => {
                warn!(
                    peer = %from,
                    %addr,
                    timeout = ?ctx.idle_timeout,
                    partial_frame_bytes = buf.len(),
                    "closing link from peer: silent past the idle timeout"
                );
                bump(&ctx.counters.closed_idle, 1);
                return;
            }
        }
    }
}
