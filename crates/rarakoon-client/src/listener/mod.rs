//! The client listener: the server side of Arakoon's client protocol, which a node mounts on
//! its client port.
//!
//! It accepts TCP connections, refuses the one too many with `0xFE "too many clients"`, checks
//! each connection's prologue (a bad one, or another cluster's id, is closed silently, as
//! Arakoon does), decodes requests and hands them to a [`Handler`], and writes the replies in
//! request order. A client may send many requests before reading the answers (pipelining):
//! the listener reads ahead and starts them as they arrive, within bounds.
//!
//! Modules: `connection` (one connection's loop: reading, admission, replies, timeouts),
//! `pipeline` (a connection's requests in flight, in order), `budget` (the global budget of
//! request bytes and each connection's ledger), `stats` ([`ListenerStats`]).
//!
//! Invariants:
//! - A request reaches the handler only once all its bytes arrived and were validated, so a
//!   client that disconnects mid-request leaves nothing half-applied.
//! - Replies leave in request order. A request the handler classifies
//!   [`Admission::Exclusive`] (reads, admin) starts only once every earlier request of its
//!   connection finished, and holds back every later one, so a read sees its connection's
//!   earlier writes and none of its later ones. [`Admission::Write`] requests may overlap
//!   earlier writes. After an outcome that closes the connection, nothing later is started
//!   or answered.
//! - Memory is bounded per connection (at most [`ListenerConfig::max_in_flight`] requests, read
//!   ahead stops at [`ListenerConfig::max_read_ahead_bytes`], one partial request of at most
//!   [`Limits::max_frame_bytes`], queued replies stop the reading at
//!   [`ListenerConfig::max_queued_reply_bytes`]) and across connections (request bytes beyond
//!   each connection's [`ListenerConfig::connection_allowance`] come from one
//!   [`ListenerConfig::memory_budget`]; a connection that needs more waits). Buffers grow as
//!   bytes arrive, never to a length a client declared.
//! - Every connection runs in its own task. A client that does not send its prologue in time,
//!   dribbles a request, stays idle too long or stops reading its replies is closed by a
//!   timeout (prologue, frame, idle, write), counted in [`ListenerStats`]; it delays only itself.
//! - With [`ListenerConfig::tls`], nothing is read from a connection outside a TLS session
//!   (the handshake must complete within the prologue timeout; a failed one is logged and
//!   counted in [`StatsSnapshot::refused_tls`]), and when [`ListenerTls::admin_names`] is set,
//!   an admin request ([`crate::OpClass::Admin`]: `drop_master`,
//!   `collapse_tlogs`, `copy_db_to_head`, `flush_store`, `optimize_db`, `defrag_db`, `get_db`)
//!   reaches the handler only from a client whose certificate carries one of those names;
//!   others get `E_NOT_SUPPORTED` and the connection is closed. Written replies are flushed
//!   (a TLS session may hold records until then) before a connection counts as done writing.
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

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::error_code::{ErrorCode, ErrorReply};
use crate::opcode::{OpClass, Opcode};
use crate::request::Request;
use crate::response::{Reply, Response};
use crate::wire::Limits;

mod budget;
mod connection;
mod pipeline;
mod stats;

pub use stats::{ListenerStats, StatsSnapshot};

/// Who a request comes from.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// A number unique within this listener.
    pub id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// With TLS, the names (CN and DNS SANs) of the certificate the client presented (empty
    /// when it presented none); `None` on a plain TCP connection.
    pub tls_names: Option<Arc<[String]>>,
}

impl ConnectionInfo {
    /// Whether the client's certificate carries one of `names`.
    pub fn has_name_in(&self, names: &BTreeSet<String>) -> bool {
        self.tls_names
            .as_deref()
            .is_some_and(|own| own.iter().any(|n| names.contains(n)))
    }
}

/// What the handler answers to one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The reply to write.
    pub reply: Reply,
    /// Close the connection once the reply is written.
    pub close: bool,
    /// A reply too large to hold in memory (GET_DB): when set, `reply` is not written; the
    /// stream's bytes are, as they arrive, and the connection closes after its end.
    pub stream: Option<ReplyStream>,
}

/// The bytes of a streamed reply, already encoded by the handler, from a bounded channel: the
/// producer waits while the connection's queued replies are at their bound, so a streamed reply
/// holds at most the channel's capacity plus [`ListenerConfig::max_queued_reply_bytes`] in
/// memory. An `Err` item, or the producer ending, ends the stream; the connection then closes
/// (a client that counted on more bytes sees the end and knows the reply is incomplete).
#[derive(Clone)]
pub struct ReplyStream(
    Arc<std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>>>>,
);

impl ReplyStream {
    /// A stream of the chunks sent on `chunks`' sender.
    pub fn new(chunks: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>) -> Self {
        ReplyStream(Arc::new(std::sync::Mutex::new(Some(chunks))))
    }

    /// The receiver (once: the connection that writes the reply takes it).
    fn take(&self) -> Option<tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

impl std::fmt::Debug for ReplyStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplyStream")
    }
}

impl PartialEq for ReplyStream {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Outcome {
    /// A reply; the connection is closed after an error whose code Arakoon closes after
    /// (docs/protocol.md §4.1), and kept otherwise.
    pub fn new(reply: Reply) -> Self {
        let close = matches!(&reply, Err(e) if e.code.closes_connection());
        Outcome {
            reply,
            close,
            stream: None,
        }
    }

    /// A streamed reply (see [`ReplyStream`]); `reply` names what it answers (for the
    /// handler's own bookkeeping) and is not written. The connection closes after it.
    pub fn streamed(reply: Reply, stream: ReplyStream) -> Self {
        Outcome {
            reply,
            close: true,
            stream: Some(stream),
        }
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

/// How a request may overlap the other requests of its connection (see [`Handler::admission`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Starts once every earlier request of the connection finished; no later request starts
    /// before it finished. Reads, admin operations, anything that looks at the store when it
    /// runs.
    Exclusive,
    /// A write whose effect is decided when it is applied, in the order the handler queued it
    /// (a Paxos proposal): it may start while earlier writes of its connection are still
    /// running, so that one connection's writes reach the same proposal batch.
    ///
    /// The listener polls a connection's requests front to back, and polls each new request
    /// once before it decodes the next; the handler must therefore fix a write's place in
    /// the order of writes at the await point where it queues the write (the node sends it on
    /// a bounded tokio channel, which serves senders first come, first served), and must not
    /// await anything else before that point that could let a later write pass it.
    Write,
}

impl Admission {
    /// The default classification: the writes decided when applied (`set`, `delete`,
    /// `test_and_set`, `replace`, `sequence`, `synced_sequence`, `delete_prefix`,
    /// `user_function`, `nop`) are [`Admission::Write`]; everything else, `confirm` included
    /// (it reads the store to decide whether to write), is exclusive.
    pub fn of(request: &Request) -> Admission {
        match request.opcode() {
            Opcode::Set
            | Opcode::Delete
            | Opcode::TestAndSet
            | Opcode::Replace
            | Opcode::Sequence
            | Opcode::SyncedSequence
            | Opcode::DeletePrefix
            | Opcode::UserFunction
            | Opcode::Nop => Admission::Write,
            _ => Admission::Exclusive,
        }
    }
}

/// Serves decoded requests. The node implements it: it can answer reads at once and writes
/// only after they are committed and applied. The listener waits for each future; what may
/// run at the same time on one connection is decided by [`Handler::admission`], so that a
/// connection's reads see its earlier writes, as in Arakoon.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request.
    ///
    /// The future may be dropped before it finishes (an earlier outcome closed the connection,
    /// or the shutdown grace period ran out); it must leave nothing half-done when dropped.
    fn handle(
        &self,
        connection: &ConnectionInfo,
        request: Request,
    ) -> impl Future<Output = Outcome> + Send;

    /// How `request` may overlap the other requests of its connection. The default is
    /// [`Admission::of`]; return [`Admission::Exclusive`] for everything to handle a
    /// connection's requests strictly one at a time.
    fn admission(&self, request: &Request) -> Admission {
        Admission::of(request)
    }
}

/// Listener settings. [`ListenerConfig::new`] gives defaults for a cluster; every field can be
/// changed before the listener starts.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// The cluster id the prologue must name (exact byte comparison).
    pub cluster_id: Bytes,
    /// Request bounds (the largest request accepted, nesting depth).
    pub limits: Limits,
    /// Maximum number of simultaneous client connections; the next gets `0xFE`.
    pub max_connections: usize,
    /// Bytes read from a socket at a time (the input buffer grows beyond this only while a
    /// large request is arriving, up to about `limits.max_frame_bytes`).
    pub read_chunk: usize,
    /// Replies are queued up to about this many bytes (one reply may exceed it); while more
    /// are queued, no further reply is encoded and nothing more is read from the client.
    pub max_queued_reply_bytes: usize,
    /// Requests of one connection handed to the handler and not yet answered, at most.
    pub max_in_flight: usize,
    /// While requests of a connection are in flight, it reads ahead only until it holds this
    /// many request bytes (a connection with nothing in flight reads up to one whole request).
    pub max_read_ahead_bytes: usize,
    /// Request bytes held by all connections together beyond their allowances (partial frames,
    /// requests read ahead, requests in flight). A connection that needs more waits, reading
    /// nothing, until others give some back. Raised to fit one largest request if smaller.
    pub memory_budget: usize,
    /// Request bytes each connection may hold without drawing on `memory_budget`, so that
    /// clients sending ordinary requests are never held up by others' large ones.
    pub connection_allowance: usize,
    /// The prologue must have arrived this long after the connection was accepted.
    pub prologue_timeout: Duration,
    /// Once the first byte of a request arrived, the whole request must arrive within this
    /// (counted again from when the listener resumes reading after pausing for back-pressure).
    pub frame_timeout: Duration,
    /// A connection with nothing in flight, nothing to write and no partial request is closed
    /// after this long.
    pub idle_timeout: Duration,
    /// Replies pending that the client does not take for this long (no byte written) close
    /// the connection.
    pub write_timeout: Duration,
    /// After an error that closes a connection, how long to keep reading (and discarding)
    /// what the client still sends, so the error frame is not destroyed by a TCP reset.
    pub linger: Duration,
    /// On shutdown, how long connections may take to finish the requests in hand before
    /// they are aborted.
    pub shutdown_grace: Duration,
    /// TLS on the client port (plain TCP when `None`).
    pub tls: Option<ListenerTls>,
}

/// TLS on the client port (Arakoon's `tls_service`).
#[derive(Debug, Clone)]
pub struct ListenerTls {
    /// The server configuration (see `rarakoon_tls::server_config`): the node's certificate,
    /// and client certificates required when it was built with client roots (Arakoon's
    /// `tls_service_validate_peer`).
    pub config: Arc<rarakoon_tls::rustls::ServerConfig>,
    /// When set, admin operations are served only to clients whose certificate carries one
    /// of these names (requires client certificates, or nobody could run them).
    pub admin_names: Option<BTreeSet<String>>,
}

impl ListenerConfig {
    /// Defaults for a cluster: 32 MiB requests, 1024 connections, 64 requests in flight and
    /// 1 MiB of read-ahead per connection, a 256 MiB budget beyond 64 KiB per connection
    /// (so at most 1024 x 64 KiB + 256 MiB = 320 MiB of request bytes in all), 10 s for the
    /// prologue, 60 s per request, 1 h idle, 30 s to take pending replies.
    ///
    /// The idle timeout only reclaims connections whose clients vanished: Arakoon's clients
    /// keep one connection per node open for as long as they live, often idle for minutes
    /// between bursts; Arakoon itself never closes an idle client. An hour keeps such clients
    /// on one connection through ordinary pauses while still returning the slot of a client
    /// whose host disappeared without a FIN. A stranger cannot hold a slot without sending a
    /// valid prologue within 10 s.
    pub fn new(cluster_id: impl Into<Bytes>) -> Self {
        ListenerConfig {
            cluster_id: cluster_id.into(),
            limits: Limits::default(),
            max_connections: 1024,
            read_chunk: 16 * 1024,
            max_queued_reply_bytes: 256 * 1024,
            max_in_flight: 64,
            max_read_ahead_bytes: 1024 * 1024,
            memory_budget: 256 * 1024 * 1024,
            connection_allowance: 64 * 1024,
            prologue_timeout: Duration::from_secs(10),
            frame_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(3600),
            write_timeout: Duration::from_secs(30),
            linger: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(5),
            tls: None,
        }
    }

    /// The settings as the listener uses them: sizes at least 1, the read chunk at most
    /// 1 MiB, and the budget large enough for one largest request to arrive.
    fn normalized(mut self) -> Self {
        self.read_chunk = self.read_chunk.clamp(1, 1024 * 1024);
        self.max_in_flight = self.max_in_flight.max(1);
        self.max_queued_reply_bytes = self.max_queued_reply_bytes.max(1);
        let one_request = connection::max_partial_frame(self.limits)
            .saturating_add(self.read_chunk)
            .saturating_sub(self.connection_allowance)
            .max(self.read_chunk);
        if self.memory_budget < one_request {
            warn!(
                memory_budget = self.memory_budget,
                raised_to = one_request,
                "client listener memory budget cannot hold one largest request; raising it"
            );
            self.memory_budget = one_request;
        }
        self
    }
}

/// What a listener's connections share.
#[derive(Debug)]
struct Shared {
    config: ListenerConfig,
    tls: Option<Arc<rarakoon_tls::rustls::ServerConfig>>,
    budget: budget::Budget,
    stats: Arc<ListenerStats>,
}

/// Signals a running [`Listener`] to stop; cloneable, so the node can keep one in its signal
/// handler.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    tx: Arc<watch::Sender<bool>>,
}

impl ShutdownHandle {
    /// Stops accepting connections and closes every connection once the requests it has in
    /// flight are answered. Returns at once; [`Listener::shutdown`] also waits.
    pub fn shutdown(&self) {
        self.tx.send_replace(true);
    }
}

/// A running listener.
#[derive(Debug)]
pub struct Listener {
    local_addr: SocketAddr,
    shutdown: ShutdownHandle,
    stats: Arc<ListenerStats>,
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
        let config = config.normalized();
        let stats = Arc::new(ListenerStats::default());
        let tls = config.tls.as_ref().map(|tls| Arc::clone(&tls.config));
        let admin_names = config.tls.as_ref().and_then(|tls| tls.admin_names.clone());
        let handler = Arc::new(AdminGuard {
            inner: handler,
            admin_names,
            stats: stats.clone(),
        });
        let shared = Arc::new(Shared {
            tls,
            budget: budget::Budget::new(config.memory_budget, config.connection_allowance),
            config,
            stats: stats.clone(),
        });
        let (tx, rx) = watch::channel(false);
        info!(%local_addr, tls = shared.tls.is_some(), "client listener started");
        let task = tokio::spawn(accept_loop(socket, shared, handler, rx));
        Ok(Listener {
            local_addr,
            shutdown: ShutdownHandle { tx: Arc::new(tx) },
            stats,
            task,
        })
    }

    /// The address actually bound (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The listener's counters (memory held for clients, connections closed by each limit).
    pub fn stats(&self) -> Arc<ListenerStats> {
        self.stats.clone()
    }

    /// A handle that can stop the listener from elsewhere.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Stops accepting, lets each connection finish the requests it has in flight (for at
    /// most [`ListenerConfig::shutdown_grace`]), closes them all and waits until they are gone.
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
    shared: Arc<Shared>,
    handler: Arc<H>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(shared.config.max_connections));
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
                let handler = handler.clone();
                let shared = shared.clone();
                let shutdown = shutdown.clone();
                connections.spawn(async move {
                    match &shared.tls {
                        None => {
                            let info = ConnectionInfo {
                                id,
                                peer,
                                tls_names: None,
                            };
                            connection::serve(stream, info, &shared, &*handler, shutdown).await;
                        }
                        Some(acceptor) => {
                            if let Some(tls) = accept_tls(acceptor, stream, peer, &shared).await {
                                let names = rarakoon_tls::peer_names(tls.get_ref().1);
                                let info = ConnectionInfo {
                                    id,
                                    peer,
                                    tls_names: Some(names.into()),
                                };
                                connection::serve(tls, info, &shared, &*handler, shutdown).await;
                            }
                        }
                    }
                    drop(permit);
                });
            }
            Err(_) => {
                debug!(%peer, "refusing connection: too many clients");
                ListenerStats::count(&shared.stats.refused_too_many);
                let shared = shared.clone();
                let shutdown = shutdown.clone();
                connections.spawn(async move {
                    let reply = ErrorReply::too_many_clients();
                    match &shared.tls {
                        None => refuse(stream, reply, &shared, shutdown).await,
                        Some(acceptor) => {
                            if let Some(tls) = accept_tls(acceptor, stream, peer, &shared).await {
                                refuse(tls, reply, &shared, shutdown).await;
                            }
                        }
                    }
                });
            }
        }
    }
    drop(socket);
    info!("client listener stopped accepting; closing connections");
    let drained = tokio::time::timeout(shared.config.shutdown_grace, async {
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

/// The TLS handshake of a client connection, within the prologue timeout; `None` (logged and
/// counted) when it fails.
async fn accept_tls(
    config: &Arc<rarakoon_tls::rustls::ServerConfig>,
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
) -> Option<rarakoon_tls::tokio_rustls::server::TlsStream<TcpStream>> {
    let timeout = shared.config.prologue_timeout;
    let acceptor = rarakoon_tls::tokio_rustls::TlsAcceptor::from(Arc::clone(config));
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            warn!(
                %peer,
                error = %e,
                "refused client connection: TLS handshake failed (this port requires TLS; plain \
                 TCP, a missing client certificate where one is required, an expired one or \
                 another CA's are refused)"
            );
            ListenerStats::count(&shared.stats.refused_tls);
            None
        }
        Err(_) => {
            warn!(%peer, ?timeout, "refused client connection: no TLS handshake in time");
            ListenerStats::count(&shared.stats.refused_tls);
            None
        }
    }
}

/// Serves admin requests only to clients with an admin name, when admin names are set.
struct AdminGuard<H> {
    inner: Arc<H>,
    admin_names: Option<BTreeSet<String>>,
    stats: Arc<ListenerStats>,
}

impl<H: Handler> Handler for AdminGuard<H> {
    async fn handle(&self, connection: &ConnectionInfo, request: Request) -> Outcome {
        if let Some(admins) = &self.admin_names
            && request.opcode().class() == OpClass::Admin
            && !connection.has_name_in(admins)
        {
            let names = connection.tls_names.as_deref().unwrap_or_default();
            warn!(
                peer = %connection.peer,
                id = connection.id,
                request = request.opcode().name(),
                certificate_names = ?names,
                "refused admin request: the client certificate carries no admin name"
            );
            ListenerStats::count(&self.stats.refused_admin);
            return ErrorReply::new(
                ErrorCode::NotSupported,
                format!(
                    "{} refused: the client certificate names {names:?}, none of which is an \
                     admin name of this cluster",
                    request.opcode().name()
                ),
            )
            .into();
        }
        self.inner.handle(connection, request).await
    }

    fn admission(&self, request: &Request) -> Admission {
        self.inner.admission(request)
    }
}

async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    reply: ErrorReply,
    shared: &Shared,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut out = BytesMut::new();
    reply.encode(&mut out);
    let config = &shared.config;
    let written = async {
        stream.write_all(&out).await?;
        stream.flush().await
    };
    if let Ok(Ok(())) = tokio::time::timeout(config.write_timeout, written).await {
        // The client sends its prologue at once: a small budget avoids a reset.
        tokio::select! {
            _ = connection::linger(&mut stream, 64 * 1024, config.linger) => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    }
}
