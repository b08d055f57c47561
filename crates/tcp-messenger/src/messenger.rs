//! The public face: start a messenger, send and broadcast without blocking, receive from the
//! inbox, read counters, shut down.
//!
//! Invariants: `send`/`broadcast` only encode and push onto leaky queues (no await, no lock held
//! across I/O); every task the messenger starts is tracked and stopped by `shutdown` (or when
//! the last `Messenger` handle is dropped); the inbox byte gauge is the sum of the live
//! [`InboxBytes`] (each takes its share back when dropped), and never exceeds `inbox_bytes`.

use crate::config::MessengerConfig;
use crate::counters::{Counters, InboundCounters, LinkCounters, PeerCounters, read};
use crate::handshake::{Hello, MAX_HANDSHAKE_FRAME, MAX_MEMBERSHIP_LEN, MAX_NAME_LEN};
use crate::incoming::{InboundContext, run_listener};
use crate::outgoing::{LinkContext, run_link};
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wire_codec::{EncodeError, Frame, WireMessage};

/// A message from a peer.
#[derive(Debug)]
pub struct Incoming<T> {
    /// The sender's node name, as accepted in its handshake.
    pub from: Arc<str>,
    /// The validated message.
    pub msg: T,
    /// The message's share of the inbox byte budget; keep it with the message while it waits
    /// in the application's own queues, drop it once the message is handled.
    pub held: InboxBytes,
}

/// Bytes of the inbox budget ([`MessengerConfig::inbox_bytes`]) held by one delivered
/// message: the size of the frame it came in (capped at the budget). Dropping it releases
/// them, which lets a waiting reader deliver more.
#[derive(Debug, Default)]
pub struct InboxBytes {
    bytes: u64,
    permit: Option<OwnedSemaphorePermit>,
    gauge: Option<Arc<AtomicU64>>,
}

impl InboxBytes {
    /// Take `bytes` of `budget` (waiting until they are free) and count them in `gauge`.
    pub(crate) async fn acquire(
        budget: &Arc<Semaphore>,
        limit: u32,
        bytes: u64,
        gauge: &Arc<AtomicU64>,
    ) -> Option<InboxBytes> {
        // A frame larger than the whole budget takes all of it.
        let weight = u32::try_from(bytes).unwrap_or(u32::MAX).clamp(1, limit);
        let permit = Arc::clone(budget).acquire_many_owned(weight).await.ok()?;
        gauge.fetch_add(u64::from(weight), Ordering::Relaxed);
        Some(InboxBytes {
            bytes: u64::from(weight),
            permit: Some(permit),
            gauge: Some(Arc::clone(gauge)),
        })
    }

    /// The bytes held (0 for a default, empty one).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for InboxBytes {
    fn drop(&mut self) {
        if let Some(gauge) = &self.gauge {
            gauge.fetch_sub(self.bytes, Ordering::Relaxed);
        }
        // The permit (if any) goes back to the budget right after.
        drop(self.permit.take());
    }
}

/// Why the messenger did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen for peers on {addr}: {source}")]
    Bind {
        /// The configured listen address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The configuration is unusable.
    #[error("invalid messenger configuration: {0}")]
    Config(String),
}

/// Why a message was not queued.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No such peer in the configuration.
    #[error("unknown peer {0:?}")]
    UnknownPeer(String),
    /// The peer's queue is full: the message was dropped (and counted).
    #[error("queue to peer {0:?} is full: message dropped")]
    QueueFull(String),
    /// The messenger is shut down.
    #[error("messenger is shut down")]
    Closed,
    /// The message could not be encoded (e.g. larger than the maximum frame).
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

struct Link {
    queue: leaky_buffer::Sender<Frame>,
    counters: Arc<LinkCounters>,
    established: watch::Receiver<u64>,
}

struct Inner {
    max_frame: u32,
    local_addr: SocketAddr,
    links: BTreeMap<String, Link>,
    inbound: Arc<InboundCounters>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: stop every task (they hold no reference to `Inner`).
        self.shutdown.cancel();
    }
}

/// Handle to a running messenger; cheap to clone. Generic over the message type `T`.
pub struct Messenger<T> {
    inner: Arc<Inner>,
    _message: PhantomData<fn(T)>,
}

impl<T> Clone for Messenger<T> {
    fn clone(&self) -> Self {
        Messenger {
            inner: Arc::clone(&self.inner),
            _message: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Messenger<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Messenger")
            .field("local_addr", &self.inner.local_addr)
            .field("peers", &self.inner.links.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Where messages from all peers arrive, in per-link order.
#[derive(Debug)]
pub struct Inbox<T> {
    rx: mpsc::Receiver<Incoming<T>>,
}

impl<T> Inbox<T> {
    /// The next message; `None` after the messenger shut down and everything was received.
    pub async fn recv(&mut self) -> Option<Incoming<T>> {
        self.rx.recv().await
    }

    /// Wait for at least one message, then move up to `limit` into `buf`; 0 means closed.
    pub async fn recv_many(&mut self, buf: &mut Vec<Incoming<T>>, limit: usize) -> usize {
        self.rx.recv_many(buf, limit).await
    }

    /// A message if one is waiting.
    pub fn try_recv(&mut self) -> Option<Incoming<T>> {
        self.rx.try_recv().ok()
    }
}

impl<T: WireMessage + Send + 'static> Messenger<T> {
    /// Bind `config.listen` and start: one link task per peer and the listener.
    pub async fn start(config: MessengerConfig) -> Result<(Self, Inbox<T>), StartError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        Self::start_with_listener(config, listener)
    }

    /// Start with an already bound listener (`config.listen` is ignored). Must be called
    /// within a Tokio runtime.
    pub fn start_with_listener(
        config: MessengerConfig,
        listener: TcpListener,
    ) -> Result<(Self, Inbox<T>), StartError> {
        validate(&config)?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let hello = Hello {
            protocol_version: config.protocol_version,
            cluster_id: config.cluster_id.clone(),
            node_name: config.node_name.clone(),
            membership: config.membership.clone(),
        };
        let hello = Frame::encode(&hello, MAX_HANDSHAKE_FRAME)
            .map_err(|e| StartError::Config(format!("cannot encode our handshake: {e}")))?;
        let tls = config.tls.as_ref();
        let acceptor = tls
            .map(|tls| {
                rarakoon_tls::server_config(
                    &tls.identity,
                    Some(Arc::clone(&tls.roots)),
                    tls.version,
                )
                .map(rarakoon_tls::tokio_rustls::TlsAcceptor::from)
            })
            .transpose()
            .map_err(|e| StartError::Config(e.to_string()))?;
        if let Some(tls) = tls {
            // Our peers check that our certificate names us; better to say so at start.
            let names = tls.identity.names();
            if !names.contains(&config.node_name) {
                return Err(StartError::Config(format!(
                    "this node's certificate names {names:?}, not {:?}: peers would refuse it \
                     (a node's certificate must carry its node name as CN or DNS SAN)",
                    config.node_name
                )));
            }
        }
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let mut links = BTreeMap::new();
        for (peer, addrs) in &config.peers {
            if *peer == config.node_name {
                continue;
            }
            let (queue, rx) = leaky_buffer::channel_weighted(
                config.queue_capacity,
                config.queue_bytes,
                Frame::len,
            );
            let connector = tls
                .map(|tls| {
                    rarakoon_tls::client_config(
                        Arc::clone(&tls.roots),
                        Some(peer),
                        Some(&tls.identity),
                        tls.version,
                    )
                    .map(rarakoon_tls::tokio_rustls::TlsConnector::from)
                })
                .transpose()
                .map_err(|e| StartError::Config(e.to_string()))?;
            let counters = Arc::new(LinkCounters::default());
            let (established_tx, established) = watch::channel(0);
            let ctx = LinkContext {
                peer: peer.clone(),
                addrs: addrs.clone(),
                node_name: config.node_name.clone(),
                membership: config.membership.clone(),
                hello: hello.clone(),
                backoff: config.backoff,
                batch_limit: config.batch_limit,
                dead_peer_timeout: config.dead_peer_timeout,
                keepalive_interval: config.keepalive_interval,
                counters: Arc::clone(&counters),
                established: established_tx,
                shutdown: shutdown.clone(),
                tls: connector,
            };
            tracker.spawn(run_link(ctx, rx));
            links.insert(
                peer.clone(),
                Link {
                    queue,
                    counters,
                    established,
                },
            );
        }
        let (inbox_tx, inbox_rx) = mpsc::channel(config.inbox_capacity);
        // Permits are acquired in u32 steps; a budget beyond 4 GiB is 4 GiB.
        let inbox_limit = u32::try_from(config.inbox_bytes)
            .unwrap_or(u32::MAX)
            .min(u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        let inbound = Arc::new(InboundCounters::default());
        let ctx = Arc::new(InboundContext {
            peers: config
                .peers
                .keys()
                .filter(|name| **name != config.node_name)
                .map(|name| (name.clone(), Arc::from(name.as_str())))
                .collect(),
            node_name: config.node_name,
            cluster_id: config.cluster_id,
            membership: config.membership,
            protocol_version: config.protocol_version,
            max_frame: config.max_frame,
            connection_slots: Arc::new(tokio::sync::Semaphore::new(
                config
                    .max_inbound_connections
                    .min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
            max_inbound_connections: config.max_inbound_connections,
            handshake_timeout: config.backoff.handshake_timeout,
            idle_timeout: config.idle_timeout,
            dead_peer_timeout: config.dead_peer_timeout,
            inbox_budget: Arc::new(Semaphore::new(inbox_limit as usize)),
            inbox_limit,
            inbox: inbox_tx,
            counters: Arc::clone(&inbound),
            shutdown: shutdown.clone(),
            tracker: tracker.clone(),
            tls: acceptor,
        });
        tracker.spawn(run_listener(listener, ctx));
        let inner = Inner {
            max_frame: config.max_frame,
            local_addr,
            links,
            inbound,
            shutdown,
            tracker,
        };
        Ok((
            Messenger {
                inner: Arc::new(inner),
                _message: PhantomData,
            },
            Inbox { rx: inbox_rx },
        ))
    }

    /// Encode `msg` once into a frame (to send the same bytes to several peers). A message
    /// that encodes to zero bytes is refused: a frame of length 0 is the keepalive.
    pub fn encode(&self, msg: &T) -> Result<Frame, EncodeError> {
        let frame = Frame::encode(msg, self.inner.max_frame)?;
        if frame.payload().is_empty() {
            return Err(EncodeError::Serialize {
                type_name: std::any::type_name::<T>(),
                reason: "encodes to zero bytes, which is the keepalive frame".into(),
            });
        }
        Ok(frame)
    }

    /// Queue `msg` for `peer`. Never blocks or awaits; a full queue drops the message (counted).
    pub fn send(&self, peer: &str, msg: &T) -> Result<(), SendError> {
        let link = self.link(peer)?;
        let frame = self.encode(msg)?;
        push(peer, link, frame)
    }

    /// Queue an already encoded frame for `peer`.
    pub fn send_frame(&self, peer: &str, frame: Frame) -> Result<(), SendError> {
        push(peer, self.link(peer)?, frame)
    }

    /// Queue `msg` for every peer, encoding it once. Returns how many queues took it (the
    /// others dropped it and counted the drop).
    pub fn broadcast(&self, msg: &T) -> Result<usize, SendError> {
        let frame = self.encode(msg)?;
        Ok(self.broadcast_frame(&frame))
    }

    /// Queue an already encoded frame for every peer; returns how many queues took it.
    pub fn broadcast_frame(&self, frame: &Frame) -> usize {
        self.inner
            .links
            .values()
            .filter(|link| link.queue.send(frame.clone()).is_ok())
            .count()
    }
}

impl<T> Messenger<T> {
    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The names of the peers we have links to.
    pub fn peers(&self) -> impl Iterator<Item = &str> {
        self.inner.links.keys().map(String::as_str)
    }

    /// A snapshot of all counters.
    pub fn counters(&self) -> Counters {
        let peers = self
            .inner
            .links
            .iter()
            .map(|(name, link)| {
                let c = &link.counters;
                let connects = read(&c.connects);
                let counters = PeerCounters {
                    sent: read(&c.sent),
                    dropped: link.queue.dropped(),
                    lost_on_disconnect: read(&c.lost_on_disconnect),
                    queued: link.queue.len() as u64,
                    connects,
                    reconnects: connects.saturating_sub(1),
                    failed_attempts: read(&c.failed_attempts),
                    refused_by_peer: read(&c.refused_by_peer),
                };
                (name.clone(), counters)
            })
            .collect();
        let inbound = &self.inner.inbound;
        Counters {
            peers,
            received: read(&inbound.received),
            refused_handshakes: read(&inbound.refused_handshakes),
            refused_frames: read(&inbound.refused_frames),
            closed_idle: read(&inbound.closed_idle),
            received_bytes: read(&inbound.received_bytes),
            buffered_bytes: read(&inbound.buffered_bytes),
            inbox_bytes: read(&inbound.inbox_bytes),
        }
    }

    /// Wait until the link to `peer` has been established at least `times` times in total
    /// (1 = up once; 2 = came back after one break). For readiness checks and tests.
    pub async fn wait_established(&self, peer: &str, times: u64) -> Result<(), SendError> {
        let mut established = self.link(peer)?.established.clone();
        established
            .wait_for(|n| *n >= times)
            .await
            .map(|_| ())
            .map_err(|_| SendError::Closed)
    }

    /// Stop every task (links, listener, connections) and wait for them to finish. Queued
    /// messages are dropped; the inbox drains and then returns `None`.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    fn link(&self, peer: &str) -> Result<&Link, SendError> {
        self.inner
            .links
            .get(peer)
            .ok_or_else(|| SendError::UnknownPeer(peer.to_owned()))
    }
}

fn push(peer: &str, link: &Link, frame: Frame) -> Result<(), SendError> {
    link.queue.send(frame).map_err(|e| match e {
        leaky_buffer::SendError::Full(_) => SendError::QueueFull(peer.to_owned()),
        leaky_buffer::SendError::Closed(_) => SendError::Closed,
    })
}

fn validate(config: &MessengerConfig) -> Result<(), StartError> {
    let bad = |what: String| Err(StartError::Config(what));
    if config.node_name.is_empty() || config.node_name.len() > MAX_NAME_LEN {
        return bad(format!(
            "node_name must be 1 to {MAX_NAME_LEN} bytes, got {:?}",
            config.node_name
        ));
    }
    if config.cluster_id.is_empty() || config.cluster_id.len() > MAX_NAME_LEN {
        return bad(format!(
            "cluster_id must be 1 to {MAX_NAME_LEN} bytes, got {:?}",
            config.cluster_id
        ));
    }
    if config.membership.len() > MAX_MEMBERSHIP_LEN {
        return bad(format!(
            "membership must be at most {MAX_MEMBERSHIP_LEN} bytes, got {}",
            config.membership.len()
        ));
    }
    for (peer, addrs) in &config.peers {
        if peer.is_empty() || peer.len() > MAX_NAME_LEN {
            return bad(format!(
                "peer name must be 1 to {MAX_NAME_LEN} bytes, got {peer:?}"
            ));
        }
        if addrs.is_empty() && *peer != config.node_name {
            return bad(format!("peer {peer:?} has no address"));
        }
    }
    if config.max_inbound_connections == 0 {
        return bad("max_inbound_connections must be at least 1".into());
    }
    if config.queue_capacity == 0
        || config.queue_bytes == 0
        || config.inbox_capacity == 0
        || config.batch_limit == 0
    {
        return bad(
            "queue_capacity, queue_bytes, inbox_capacity and batch_limit must be at least 1".into(),
        );
    }
    if config.max_frame == 0 {
        return bad("max_frame must be at least 1 byte".into());
    }
    if config.inbox_bytes == 0 {
        return bad("inbox_bytes must be at least 1".into());
    }
    if config.keepalive_interval.is_zero()
        || config.idle_timeout < config.keepalive_interval.saturating_mul(2)
    {
        return bad(format!(
            "idle_timeout ({:?}) must be at least twice keepalive_interval ({:?}), and \
             keepalive_interval above zero, or idle peers would be cut off",
            config.idle_timeout, config.keepalive_interval
        ));
    }
    Ok(())
}
