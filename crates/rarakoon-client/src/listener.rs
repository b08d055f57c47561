//! The client listener: the server side of Arakoon's client protocol, which a node mounts on
//! its client port.
//!
//! It accepts TCP connections, refuses the one too many with `0xFE "too many clients"`, checks
//! each connection's prologue (a bad one, or another cluster's id, is closed silently, as
//! Arakoon does), decodes requests and hands them to a [`Handler`], one at a time per
//! connection, and writes the replies in request order.
//!
//! Invariants:
//! - A request reaches the handler only once all its bytes arrived and were validated, so a
//!   client that disconnects mid-request leaves nothing half-applied.
//! - Memory per connection is bounded: the read buffer holds at most one incomplete request
//!   (at most [`Limits::max_frame_bytes`]) plus one read chunk; replies are flushed before
//!   more input is read.
//! - Each connection runs in its own task and every write has a timeout, so a slow or
//!   misbehaving client delays only itself.
//! - After a protocol error the reference's answer is written (if it has one) and the
//!   connection is closed; after an error reply the connection is closed when the handler's
//!   [`Outcome`] says so (by default: Arakoon's "closed after" column, §4.1).
//!
//! A node implements [`Handler`]; this one answers reads from a fixed value and refuses
//! writes the way a slave does (closing the connection, as Arakoon does after NotMaster):
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use rarakoon_client::listener::{ConnectionInfo, Handler, Listener, ListenerConfig, Outcome};
//! use rarakoon_client::{Client, ClientConfig, Consistency, Error, ErrorCode, ErrorReply};
//! use rarakoon_client::{Request, Response};
//!
//! struct ReadOnlySlave;
//!
//! impl Handler for ReadOnlySlave {
//!     async fn handle(&self, _conn: &ConnectionInfo, request: Request) -> Outcome {
//!         match request {
//!             Request::WhoMaster => Response::WhoMaster(Some("node_0".into())).into(),
//!             Request::Get { .. } => Response::Get("42".into()).into(),
//!             _ => ErrorReply::new(ErrorCode::NotMaster, "None").into(),
//!         }
//!     }
//! }
//!
//! let listener =
//!     Listener::bind("127.0.0.1:0".parse()?, ListenerConfig::new("demo"), Arc::new(ReadOnlySlave))
//!         .await?;
//! let mut config = ClientConfig::new("demo").node("node_0", listener.local_addr());
//! config.max_attempts = 1;
//! let client = Client::new(config)?.with_consistency(Consistency::NoGuarantees);
//! assert_eq!(client.get("anything").await?, "42");
//! assert!(matches!(client.set("k", "v").await, Err(Error::NoMaster { .. })));
//! listener.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_util::codec::Decoder;
use tracing::{debug, info, warn};

use crate::codec::{CodecError, ServerCodec, ServerFrame};
use crate::error_code::ErrorReply;
use crate::request::Request;
use crate::response::{Reply, Response, encode_reply};
use crate::wire::Limits;

/// Who a request comes from.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// A number unique within this listener.
    pub id: u64,
    /// The client's address.
    pub peer: SocketAddr,
}

/// What the handler answers to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The reply to write.
    pub reply: Reply,
    /// Close the connection once the reply is written.
    pub close: bool,
}

impl Outcome {
    /// A reply; the connection is closed after an error whose code Arakoon closes after
    /// (PROTOCOL.md §4.1), and kept otherwise.
    pub fn new(reply: Reply) -> Self {
        let close = matches!(&reply, Err(e) if e.code.closes_connection());
        Outcome { reply, close }
    }

    /// Forces the connection closed after this reply.
    pub fn close_after(mut self) -> Self {
        self.close = true;
        self
    }

    /// Keeps the connection open after this reply.
    pub fn keep_open(mut self) -> Self {
        self.close = false;
        self
    }
}

impl From<Reply> for Outcome {
    fn from(reply: Reply) -> Self {
        Outcome::new(reply)
    }
}

impl From<Response> for Outcome {
    fn from(response: Response) -> Self {
        Outcome::new(Ok(response))
    }
}

impl From<ErrorReply> for Outcome {
    fn from(error: ErrorReply) -> Self {
        Outcome::new(Err(error))
    }
}

/// Serves decoded requests. The node implements it: it can answer reads at once and writes
/// only after they are committed and applied (the listener waits for the future; requests of
/// one connection are handled one at a time, in order, so a connection's reads see its earlier
/// writes, as in Arakoon).
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    fn handle(
        &self,
        connection: &ConnectionInfo,
        request: Request,
    ) -> impl Future<Output = Outcome> + Send;
}

/// Listener settings.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// The cluster id the prologue must name (exact byte comparison).
    pub cluster_id: Bytes,
    /// Request bounds (the largest request accepted, nesting depth).
    pub limits: Limits,
    /// Maximum number of simultaneous client connections; the next gets `0xFE`.
    pub max_connections: usize,
    /// Bytes read from a socket at a time (the read buffer grows beyond this only while a
    /// large request is arriving, up to `limits.max_frame_bytes`).
    pub read_chunk: usize,
    /// Replies are flushed once this many bytes are pending, and always before waiting for
    /// more input.
    pub flush_threshold: usize,
    /// A write to a client that takes longer than this closes the connection.
    pub write_timeout: Duration,
    /// After an error that closes a connection, how long to keep reading (and discarding)
    /// what the client still sends, so the error frame is not destroyed by a TCP reset.
    pub linger: Duration,
    /// On shutdown, how long connections may take to finish the request in hand before
    /// they are aborted.
    pub shutdown_grace: Duration,
}

impl ListenerConfig {
    /// Defaults for a cluster: 32 MiB requests, 1024 connections, 30 s write timeout.
    pub fn new(cluster_id: impl Into<Bytes>) -> Self {
        ListenerConfig {
            cluster_id: cluster_id.into(),
            limits: Limits::default(),
            max_connections: 1024,
            read_chunk: 16 * 1024,
            flush_threshold: 64 * 1024,
            write_timeout: Duration::from_secs(30),
            linger: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Signals a running [`Listener`] to stop; cloneable, so the node can keep one in its signal
/// handler.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    tx: Arc<watch::Sender<bool>>,
}

impl ShutdownHandle {
    /// Stops accepting connections and closes every connection once its current request is
    /// answered. Returns at once; [`Listener::shutdown`] also waits.
    pub fn shutdown(&self) {
        self.tx.send_replace(true);
    }
}

/// A running listener.
#[derive(Debug)]
pub struct Listener {
    local_addr: SocketAddr,
    shutdown: ShutdownHandle,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// Binds `addr` and starts serving with `handler`.
    pub async fn bind<H: Handler>(
        addr: SocketAddr,
        config: ListenerConfig,
        handler: Arc<H>,
    ) -> std::io::Result<Listener> {
        let socket = TcpListener::bind(addr).await?;
        Listener::serve(socket, config, handler)
    }

    /// Starts serving on an already bound socket.
    pub fn serve<H: Handler>(
        socket: TcpListener,
        config: ListenerConfig,
        handler: Arc<H>,
    ) -> std::io::Result<Listener> {
        let local_addr = socket.local_addr()?;
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(socket, Arc::new(config), handler, rx));
        info!(%local_addr, "client listener started");
        Ok(Listener {
            local_addr,
            shutdown: ShutdownHandle { tx: Arc::new(tx) },
            task,
        })
    }

    /// The address actually bound (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that can stop the listener from elsewhere.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Stops accepting, lets each connection finish the request it is handling (for at most
    /// [`ListenerConfig::shutdown_grace`]), closes them all and waits until they are gone.
    pub async fn shutdown(self) {
        self.shutdown.shutdown();
        self.wait().await;
    }

    /// Waits until the listener stopped (after a shutdown signal from any handle).
    pub async fn wait(self) {
        if let Err(e) = self.task.await {
            warn!(error = %e, "client listener task failed");
        }
    }
}

async fn accept_loop<H: Handler>(
    socket: TcpListener,
    config: Arc<ListenerConfig>,
    handler: Arc<H>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let next_id = AtomicU64::new(0);
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            accepted = socket.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Typically out of file descriptors: back off instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let info = ConnectionInfo { id, peer };
                let handler = handler.clone();
                let config = config.clone();
                let shutdown = shutdown.clone();
                connections.spawn(async move {
                    serve_connection(stream, info, &config, &*handler, shutdown).await;
                    drop(permit);
                });
            }
            Err(_) => {
                debug!(%peer, "refusing connection: too many clients");
                connections.spawn(refuse(
                    stream,
                    ErrorReply::too_many_clients(),
                    config.clone(),
                    shutdown.clone(),
                ));
            }
        }
    }
    drop(socket);
    info!("client listener stopped accepting; closing connections");
    let drained = tokio::time::timeout(config.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            remaining = connections.len(),
            "client connections still busy after the shutdown grace period; aborting them"
        );
        connections.shutdown().await;
    }
}

async fn refuse(
    mut stream: TcpStream,
    reply: ErrorReply,
    config: Arc<ListenerConfig>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut out = BytesMut::new();
    reply.encode(&mut out);
    if let Ok(Ok(())) = tokio::time::timeout(config.write_timeout, stream.write_all(&out)).await {
        // The client sends its prologue at once: a small budget avoids a reset.
        tokio::select! {
            _ = linger(&mut stream, 64 * 1024, config.linger) => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    }
}

/// Why a connection ended (for the log).
enum End {
    PeerClosed,
    Shutdown,
    WrongCluster(Bytes),
    Protocol(String),
    HandlerClosed,
    Io(std::io::Error),
    WriteTimeout,
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::PeerClosed => f.write_str("client closed the connection"),
            End::Shutdown => f.write_str("listener shutting down"),
            End::WrongCluster(id) => write!(
                f,
                "prologue names cluster {:?}, not ours",
                String::from_utf8_lossy(id)
            ),
            End::Protocol(e) => write!(f, "protocol error: {e}"),
            End::HandlerClosed => f.write_str("closed after the reply, as the handler asked"),
            End::Io(e) => write!(f, "i/o error: {e}"),
            End::WriteTimeout => f.write_str("client did not read its replies in time"),
        }
    }
}

async fn serve_connection<H: Handler>(
    mut stream: TcpStream,
    info: ConnectionInfo,
    config: &ListenerConfig,
    handler: &H,
    mut shutdown: watch::Receiver<bool>,
) {
    let end = run_connection(&mut stream, &info, config, handler, &mut shutdown).await;
    match &end {
        End::PeerClosed | End::Shutdown | End::HandlerClosed => {
            debug!(peer = %info.peer, id = info.id, reason = %end, "client connection closed")
        }
        _ => info!(peer = %info.peer, id = info.id, reason = %end, "client connection closed"),
    }
    match end {
        End::PeerClosed | End::Shutdown | End::Io(_) | End::WriteTimeout => {
            let _ = tokio::time::timeout(config.write_timeout, stream.shutdown()).await;
        }
        End::WrongCluster(_) | End::Protocol(_) | End::HandlerClosed => {
            tokio::select! {
                _ = linger(&mut stream, config.limits.max_frame_bytes, config.linger) => {}
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
        }
    }
}

/// Closes our side after the last reply, then reads and discards what the client still
/// sends (bounded in bytes and time). Closing a socket with unread input makes the kernel
/// send a reset, which can destroy the reply before the client reads it.
async fn linger(stream: &mut TcpStream, max_bytes: usize, timeout: Duration) {
    let _ = tokio::time::timeout(timeout, async {
        stream.shutdown().await?;
        let mut scratch = [0u8; 4096];
        let mut total = 0usize;
        while total < max_bytes {
            match stream.read(&mut scratch).await? {
                0 => break,
                n => total += n,
            }
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
}

async fn write_all(
    stream: &mut TcpStream,
    out: &mut BytesMut,
    timeout: Duration,
) -> Result<(), End> {
    if out.is_empty() {
        return Ok(());
    }
    match tokio::time::timeout(timeout, stream.write_all(out)).await {
        Ok(Ok(())) => {
            out.clear();
            Ok(())
        }
        Ok(Err(e)) => Err(End::Io(e)),
        Err(_) => Err(End::WriteTimeout),
    }
}

async fn run_connection<H: Handler>(
    stream: &mut TcpStream,
    info: &ConnectionInfo,
    config: &ListenerConfig,
    handler: &H,
    shutdown: &mut watch::Receiver<bool>,
) -> End {
    let mut codec = ServerCodec::new(config.limits);
    let mut input = BytesMut::with_capacity(config.read_chunk.min(8 * 1024));
    let mut output = BytesMut::with_capacity(8 * 1024);
    loop {
        // Serve every complete request already buffered (pipelining), then flush.
        loop {
            match codec.decode(&mut input) {
                Ok(None) => break,
                Ok(Some(ServerFrame::Prologue(prologue))) => {
                    if prologue.cluster_id != config.cluster_id {
                        // Arakoon closes silently on another cluster's id (§1.1).
                        return End::WrongCluster(prologue.cluster_id);
                    }
                }
                Ok(Some(ServerFrame::Request(request))) => {
                    if *shutdown.borrow() {
                        // As the reference: a request arriving while stopping is not answered.
                        // The replies to the requests before it are (the reference flushes
                        // after every reply): those requests were applied.
                        return match write_all(stream, &mut output, config.write_timeout).await {
                            Ok(()) => End::Shutdown,
                            Err(end) => end,
                        };
                    }
                    let outcome = handler.handle(info, request).await;
                    encode_reply(&outcome.reply, &mut output);
                    if outcome.close {
                        return match write_all(stream, &mut output, config.write_timeout).await {
                            Ok(()) => End::HandlerClosed,
                            Err(end) => end,
                        };
                    }
                    if output.len() >= config.flush_threshold
                        && let Err(end) = write_all(stream, &mut output, config.write_timeout).await
                    {
                        return end;
                    }
                }
                Err(CodecError::Protocol(e)) => {
                    if let Some(reply) = e.server_reply() {
                        reply.encode(&mut output);
                    }
                    if let Err(end) = write_all(stream, &mut output, config.write_timeout).await {
                        return end;
                    }
                    return End::Protocol(e.to_string());
                }
                Err(CodecError::Io(e)) => return End::Io(e),
            }
        }
        if let Err(end) = write_all(stream, &mut output, config.write_timeout).await {
            return end;
        }
        input.reserve(config.read_chunk);
        let read = tokio::select! {
            read = stream.read_buf(&mut input) => read,
            _ = shutdown.wait_for(|stop| *stop) => return End::Shutdown,
        };
        match read {
            // EOF: whatever partial request is buffered is dropped, never applied.
            Ok(0) => return End::PeerClosed,
            Ok(_) => {}
            Err(e) => return End::Io(e),
        }
    }
}
