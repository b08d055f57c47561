//! One outgoing link: connect, handshake, then write queued frames in batches until the link
//! breaks; reconnect as the connection state machine says.
//!
//! Invariants: frames leave in queue order; one write call per batch of queued frames (the
//! "flush"); a broken link is noticed by a pending read (the peer never writes after its
//! handshake reply, so EOF or any byte means the link is over) as well as by write errors; the
//! task never touches the queue's senders, so `send` never waits for it; an established link
//! never stays silent longer than `keepalive_interval` (it writes a keepalive frame, a
//! length prefix of 0, when there was nothing else), so the peer's idle timeout only closes
//! links that are really dead or were never a peer's. With TLS, the TLS handshake (which
//! checks that the listener's certificate names the peer we dialled) and the hello share the
//! handshake deadline.

use crate::counters::{LinkCounters, bump};
use crate::handshake::{HelloReply, MAX_HANDSHAKE_FRAME, read_frame};
use bytes::BytesMut;
use connection_fsm::{Action, BackoffConfig, ConnectionFsm, Event, State};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until, timeout_at};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use wire_codec::{DecodeError, Frame};

/// Largest write buffer kept between batches; a bigger one (after a burst) is released.
const KEEP_WRITE_BUFFER: usize = 1 << 20;
/// The keepalive frame: a length prefix of 0, which no message encodes to (the listener skips
/// it; see `incoming`).
const KEEPALIVE: [u8; wire_codec::LENGTH_PREFIX] = [0; wire_codec::LENGTH_PREFIX];

/// What one link task needs.
pub(crate) struct LinkContext {
    pub peer: String,
    pub addrs: Vec<SocketAddr>,
    /// Our node name and membership view (the listener's acceptance must carry the same view).
    pub node_name: String,
    pub membership: String,
    /// Our hello, encoded once.
    pub hello: Frame,
    pub backoff: BackoffConfig,
    pub batch_limit: usize,
    pub dead_peer_timeout: std::time::Duration,
    /// Longest silence before a keepalive frame is written.
    pub keepalive_interval: std::time::Duration,
    pub counters: Arc<LinkCounters>,
    /// Number of links established so far.
    pub established: watch::Sender<u64>,
    pub shutdown: CancellationToken,
    /// Mutual TLS: a connector whose verifier expects the peer's name.
    pub tls: Option<rarakoon_tls::tokio_rustls::TlsConnector>,
}

enum HandshakeFailure {
    Refused(String),
    Failed(String),
    Tls(String),
}

enum LinkEnd {
    QueueClosed,
    Broken(String),
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// A fresh random u32 for backoff jitter: std's per-instance random hash keys are enough for
/// spreading reconnects, and need no RNG dependency.
fn jitter() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    // Truncation intended: any 32 bits of the hash are uniformly random.
    RandomState::new().hash_one(0u8) as u32
}

/// Run the link until shutdown or until the queue's senders are all gone.
pub(crate) async fn run_link(ctx: LinkContext, mut queue: leaky_buffer::Receiver<Frame>) {
    let mut fsm = ConnectionFsm::new(ctx.backoff);
    let mut next_addr = 0usize;
    let mut action = fsm.step(now(), Event::Start, jitter());
    loop {
        action = match action {
            Action::Connect { deadline } => {
                let Some(&addr) = ctx.addrs.get(next_addr % ctx.addrs.len().max(1)) else {
                    warn!(peer = %ctx.peer, "no address configured for peer; link not started");
                    break;
                };
                let connected = tokio::select! {
                    biased;
                    () = ctx.shutdown.cancelled() => break,
                    r = timeout_at(Instant::from_std(deadline), TcpStream::connect(addr)) => r,
                };
                match connected {
                    Ok(Ok(stream)) => {
                        let established = fsm.established();
                        let next = attempt(&ctx, &mut fsm, stream, addr, &mut queue).await;
                        if fsm.established() == established {
                            // Handshake refused or failed here: try the next address first.
                            next_addr = next_addr.wrapping_add(1);
                        }
                        match next {
                            Some(next) => next,
                            None => break,
                        }
                    }
                    Ok(Err(e)) => {
                        debug!(peer = %ctx.peer, %addr, error = %e, "connect to peer failed");
                        next_addr = next_addr.wrapping_add(1);
                        bump(&ctx.counters.failed_attempts, 1);
                        fsm.step(now(), Event::ConnectFailed, jitter())
                    }
                    Err(_elapsed) => {
                        debug!(peer = %ctx.peer, %addr, "connect to peer timed out");
                        next_addr = next_addr.wrapping_add(1);
                        bump(&ctx.counters.failed_attempts, 1);
                        fsm.step(now(), Event::DeadlineReached, jitter())
                    }
                }
            }
            Action::Backoff { until, failures } => {
                debug!(peer = %ctx.peer, failures, "backing off before reconnecting");
                tokio::select! {
                    biased;
                    () = ctx.shutdown.cancelled() => break,
                    () = sleep_until(Instant::from_std(until)) => {}
                }
                fsm.step(now(), Event::DeadlineReached, jitter())
            }
            Action::None => match fsm.state() {
                // A deadline reported a hair early: wait again.
                State::BackingOff { until } => Action::Backoff {
                    until,
                    failures: fsm.failures(),
                },
                _ => break,
            },
            Action::Shutdown => break,
            unexpected @ (Action::Ready | Action::Handshake { .. }) => {
                // `attempt` consumes these; reaching here would be a bug in this loop.
                warn!(peer = %ctx.peer, ?unexpected, "link stopped on an unexpected action");
                break;
            }
        };
    }
    fsm.step(now(), Event::Close, 0);
    debug!(peer = %ctx.peer, "link task stopped");
}

/// Handshake on a fresh connection and, if accepted, carry messages until the link breaks.
/// Returns the machine's next action, or `None` to stop the task.
async fn attempt(
    ctx: &LinkContext,
    fsm: &mut ConnectionFsm,
    stream: TcpStream,
    addr: SocketAddr,
    queue: &mut leaky_buffer::Receiver<Frame>,
) -> Option<Action> {
    crate::socket::tune(&stream, ctx.dead_peer_timeout);
    let Action::Handshake { deadline } = fsm.step(now(), Event::Connected, jitter()) else {
        return None;
    };
    let deadline = Instant::from_std(deadline);
    match &ctx.tls {
        None => carry(ctx, fsm, stream, addr, queue, deadline).await,
        Some(connector) => {
            let connected = tokio::select! {
                biased;
                () = ctx.shutdown.cancelled() => return None,
                r = timeout_at(deadline, connector.connect(rarakoon_tls::server_name(), stream)) => r,
            };
            let failure = match connected {
                Ok(Ok(tls)) => return carry(ctx, fsm, tls, addr, queue, deadline).await,
                Ok(Err(e)) => {
                    warn!(peer = %ctx.peer, %addr, error = %e, "TLS handshake with peer failed");
                    Event::HandshakeFailed
                }
                Err(_elapsed) => {
                    debug!(peer = %ctx.peer, %addr, "TLS handshake with peer timed out");
                    Event::DeadlineReached
                }
            };
            bump(&ctx.counters.failed_attempts, 1);
            Some(fsm.step(now(), failure, jitter()))
        }
    }
}

/// The messaging handshake on an open (plain or TLS) stream and, if accepted, the messages.
async fn carry<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &LinkContext,
    fsm: &mut ConnectionFsm,
    mut stream: S,
    addr: SocketAddr,
    queue: &mut leaky_buffer::Receiver<Frame>,
    deadline: Instant,
) -> Option<Action> {
    let shaken = tokio::select! {
        biased;
        () = ctx.shutdown.cancelled() => return None,
        r = timeout_at(deadline, handshake(ctx, &mut stream)) => r,
    };
    let event = match shaken {
        Ok(Ok(())) => Event::HandshakeAccepted,
        Ok(Err(HandshakeFailure::Refused(reason))) => {
            // Debug-quoted: the reason is the remote side's text.
            warn!(peer = %ctx.peer, %addr, ?reason, "peer refused our handshake");
            bump(&ctx.counters.refused_by_peer, 1);
            Event::HandshakeFailed
        }
        Ok(Err(HandshakeFailure::Tls(reason))) => {
            warn!(peer = %ctx.peer, %addr, %reason, "TLS session with peer failed");
            Event::HandshakeFailed
        }
        Ok(Err(HandshakeFailure::Failed(reason))) => {
            debug!(peer = %ctx.peer, %addr, %reason, "handshake with peer failed");
            Event::HandshakeFailed
        }
        Err(_elapsed) => {
            debug!(peer = %ctx.peer, %addr, "handshake with peer timed out");
            Event::DeadlineReached
        }
    };
    if event != Event::HandshakeAccepted {
        bump(&ctx.counters.failed_attempts, 1);
        return Some(fsm.step(now(), event, jitter()));
    }
    if fsm.step(now(), event, jitter()) != Action::Ready {
        return None;
    }
    bump(&ctx.counters.connects, 1);
    ctx.established.send_replace(fsm.established());
    info!(peer = %ctx.peer, %addr, established = fsm.established(), "link to peer up");
    let end = tokio::select! {
        biased;
        () = ctx.shutdown.cancelled() => return None,
        end = pump(ctx, stream, queue) => end,
    };
    match end {
        LinkEnd::QueueClosed => None,
        LinkEnd::Broken(reason) => {
            info!(peer = %ctx.peer, %addr, %reason, "link to peer broke; reconnecting");
            Some(fsm.step(now(), Event::Disconnected, jitter()))
        }
    }
}

async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &LinkContext,
    stream: &mut S,
) -> Result<(), HandshakeFailure> {
    let failed = |e: std::io::Error| {
        // A TLS alert from the listener (it refused our certificate) arrives as an I/O error
        // of kind InvalidData on the first read.
        if ctx.tls.is_some() && e.kind() == std::io::ErrorKind::InvalidData {
            HandshakeFailure::Tls(e.to_string())
        } else {
            HandshakeFailure::Failed(e.to_string())
        }
    };
    stream
        .write_all(ctx.hello.as_bytes())
        .await
        .map_err(failed)?;
    stream.flush().await.map_err(failed)?;
    match read_frame::<HelloReply>(stream, MAX_HANDSHAKE_FRAME).await {
        Ok(HelloReply::Accepted {
            node_name,
            membership,
        }) if node_name == ctx.peer && membership == ctx.membership => Ok(()),
        Ok(HelloReply::Accepted {
            node_name,
            membership,
        }) if node_name == ctx.peer => Err(HandshakeFailure::Refused(
            crate::handshake::membership_mismatch(
                &ctx.node_name,
                &ctx.membership,
                &node_name,
                &membership,
            ),
        )),
        Ok(HelloReply::Accepted { node_name, .. }) => Err(HandshakeFailure::Refused(format!(
            "the node at this address is {node_name:?}, not {:?}",
            ctx.peer
        ))),
        Ok(HelloReply::Refused { reason }) => Err(HandshakeFailure::Refused(reason)),
        Err(DecodeError::Io(e)) => Err(failed(e)),
        Err(e) => Err(HandshakeFailure::Refused(format!(
            "bad handshake reply: {e}"
        ))),
    }
}

/// Write queued frames in batches until the queue closes or the link breaks.
async fn pump<S: AsyncRead + AsyncWrite + Unpin>(
    ctx: &LinkContext,
    stream: S,
    queue: &mut leaky_buffer::Receiver<Frame>,
) -> LinkEnd {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut batch: Vec<Frame> = Vec::with_capacity(ctx.batch_limit);
    let mut out = BytesMut::new();
    let mut probe = [0u8; 1];
    let mut quiet_since = Instant::now();
    loop {
        tokio::select! {
            () = sleep_until(quiet_since + ctx.keepalive_interval) => {
                if let Err(e) = write_flushed(&mut writer, &KEEPALIVE).await {
                    return LinkEnd::Broken(format!("keepalive write failed: {e}"));
                }
                quiet_since = Instant::now();
            }
            n = queue.recv_many(&mut batch, ctx.batch_limit) => {
                if n == 0 {
                    return LinkEnd::QueueClosed;
                }
                // One write per batch; a lone frame is written from its own buffer, uncopied.
                let written = if let [only] = batch.as_slice() {
                    write_flushed(&mut writer, only.as_bytes()).await
                } else {
                    out.clear();
                    for frame in &batch {
                        out.extend_from_slice(frame.as_bytes());
                    }
                    write_flushed(&mut writer, &out).await
                };
                let count = batch.len() as u64;
                batch.clear();
                if out.capacity() > KEEP_WRITE_BUFFER {
                    out = BytesMut::new();
                }
                quiet_since = Instant::now();
                match written {
                    Ok(()) => bump(&ctx.counters.sent, count),
                    Err(e) => {
                        bump(&ctx.counters.lost_on_disconnect, count);
                        return LinkEnd::Broken(format!("write failed: {e}"));
                    }
                }
            }
            read = reader.read(&mut probe) => {
                return LinkEnd::Broken(match read {
                    Ok(0) => "peer closed the connection".to_owned(),
                    Ok(_) => "peer sent bytes after the handshake".to_owned(),
                    Err(e) => format!("read failed: {e}"),
                });
            }
        }
    }
}

/// Write all of `bytes` and flush: a TLS stream holds written bytes in its session until
/// flushed (for a plain TCP stream the flush does nothing).
async fn write_flushed<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}
