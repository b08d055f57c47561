//! Messenger configuration: who we are, who our peers are, and the bounds on queues and frames.

use connection_fsm::BackoffConfig;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rarakoon_tls::rustls::RootCertStore;
use rarakoon_tls::{Identity, TlsVersion};

/// The node-to-node protocol version spoken by this build. Bump it whenever the handshake, the
/// framing, or the rkyv format (see wire-codec's golden test) changes. Version 3 added the
/// keepalive frame (a frame of length 0), which version 2 listeners refuse as invalid.
pub const PROTOCOL_VERSION: u32 = 3;

/// Everything a [`Messenger`](crate::Messenger) needs.
#[derive(Debug, Clone)]
pub struct MessengerConfig {
    /// Our node name, sent in every handshake.
    pub node_name: String,
    /// Our membership view, sent in every handshake; a peer with another view is refused
    /// (both ways), with both views in the reason. Opaque to the messenger; at most
    /// [`MAX_MEMBERSHIP_LEN`](crate::MAX_MEMBERSHIP_LEN) bytes. Empty by default.
    pub membership: String,
    /// The cluster id; a peer from another cluster is refused.
    pub cluster_id: String,
    /// Where to listen for peers (ignored by `start_with_listener`).
    pub listen: SocketAddr,
    /// Peer name -> addresses to try in turn. Our own name, if present, is ignored.
    pub peers: BTreeMap<String, Vec<SocketAddr>>,
    /// Bound of each outgoing queue (messages); the newest message is dropped beyond it.
    pub queue_capacity: usize,
    /// Bound of each outgoing queue in bytes of encoded frames (an empty queue still takes one
    /// frame of any size up to `max_frame`).
    pub queue_bytes: usize,
    /// Bound of the inbox (messages); readers wait (TCP pushes back) when it is full.
    pub inbox_capacity: usize,
    /// Bound of the inbox in bytes (of the frames the messages came in): a delivered message
    /// holds its bytes of this budget until the application drops its
    /// [`InboxBytes`](crate::InboxBytes), so the budget also covers the application's own
    /// queues as long as it keeps the permit with the message. Readers wait (TCP pushes back)
    /// when it is spent. A frame larger than the whole budget takes all of it (it waits for an
    /// empty budget), so any frame up to `max_frame` still gets through.
    pub inbox_bytes: usize,
    /// Largest accepted frame payload, in bytes, both ways.
    pub max_frame: u32,
    /// Most queued messages written in one batch (one write call per batch).
    pub batch_limit: usize,
    /// Reconnection backoff and connect/handshake timeouts.
    pub backoff: BackoffConfig,
    /// How long an unresponsive peer may keep a link open before it counts as dead (TCP
    /// keepalive and, on Linux, TCP_USER_TIMEOUT). Zero leaves the kernel defaults.
    pub dead_peer_timeout: Duration,
    /// Protocol version to announce and require (normally [`PROTOCOL_VERSION`]).
    pub protocol_version: u32,
    /// How long an established inbound link may stay silent (no frame, no keepalive) before it
    /// is closed and logged. The handshake has its own bound (`backoff.handshake_timeout`).
    /// Must exceed `keepalive_interval` by a wide margin (at least twice; the default is six
    /// times), so a healthy idle link, which sends a keepalive every `keepalive_interval`,
    /// never trips it.
    pub idle_timeout: Duration,
    /// An outgoing link that wrote nothing for this long writes a keepalive frame (4 bytes),
    /// so the peer's `idle_timeout` tells a silent stranger from an idle peer: between two
    /// followers of an idle cluster no Paxos message travels at all.
    pub keepalive_interval: Duration,
    /// Most inbound connections open at once (handshaking or carrying messages); a connection
    /// beyond it is closed at once, counted as refused and logged. Bounds the memory and file
    /// descriptors strangers can take: each connection holds at most about one `max_frame`.
    pub max_inbound_connections: usize,
    /// Mutual TLS on every link (off when `None`). With it, every link is a TLS session in
    /// which both sides present a certificate signed by `roots`; the listener accepts a
    /// hello only when the claimed node name is one of the names of the certificate the
    /// peer presented, and the connecting side accepts a listener only when its certificate
    /// names the peer it dialled (see rarakoon-tls).
    pub tls: Option<MessengerTls>,
}

/// The TLS material of a messenger: every node of a cluster presents its own certificate,
/// signed by the cluster CA, and checks its peers' against the same CA.
#[derive(Debug, Clone)]
pub struct MessengerTls {
    /// The cluster CA.
    pub roots: Arc<RootCertStore>,
    /// This node's certificate chain and key; the certificate must name this node.
    pub identity: Identity,
    /// The oldest TLS version accepted.
    pub version: TlsVersion,
}

impl MessengerConfig {
    /// A configuration with default bounds: queues of 4096 messages and 64 MiB, an inbox of
    /// 4096 messages and 64 MiB, 16 MiB frames, batches of up to 256 messages, default
    /// backoff, a 10 s dead-peer timeout, a 30 s idle timeout with a keepalive every 5 s, at
    /// most 64 inbound connections, no TLS.
    pub fn new(
        node_name: impl Into<String>,
        cluster_id: impl Into<String>,
        listen: SocketAddr,
        peers: BTreeMap<String, Vec<SocketAddr>>,
    ) -> Self {
        MessengerConfig {
            node_name: node_name.into(),
            membership: String::new(),
            cluster_id: cluster_id.into(),
            listen,
            peers,
            queue_capacity: 4096,
            queue_bytes: 64 * 1024 * 1024,
            inbox_capacity: 4096,
            inbox_bytes: 64 * 1024 * 1024,
            max_frame: wire_codec::DEFAULT_MAX_FRAME,
            batch_limit: 256,
            backoff: BackoffConfig::default(),
            dead_peer_timeout: Duration::from_secs(10),
            protocol_version: PROTOCOL_VERSION,
            idle_timeout: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(5),
            max_inbound_connections: 64,
            tls: None,
        }
    }
}
