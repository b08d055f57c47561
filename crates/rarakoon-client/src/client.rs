//! The async Rust client.
//!
//! A [`Client`] is configured with the cluster id and the nodes' addresses. It finds the master
//! (asking each node `who_master`, then checking that the named node calls itself master, as
//! the Python client does), remembers it, and follows `NotMaster` answers and broken
//! connections by finding the master again.
//!
//! A `Client` is meant to be shared: clones and every task using one share a pool of
//! connections per node, at most [`ClientConfig::max_connections_per_node`] of them, each
//! carrying one request at a time. Reads whose consistency allows it may go to slaves
//! ([`ClientConfig::read_from_slaves`]); everything else goes to the master.
//!
//! Retry rule (the invariant this module keeps): a request is retried only when it cannot have
//! been applied twice: reads always; writes only when the node answered `NotMaster` (it refused
//! before proposing) or when the request never fully left this process. A write whose request
//! was sent and whose reply never came is reported as [`Error::Indeterminate`], never retried.
//! A connection goes back to its pool only after a success or an error reply every server
//! keeps the connection for, so a request never starts on a connection the server may have
//! closed after an error.
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use rarakoon_client::{Client, ClientConfig, Consistency, Sequence};
//!
//! // A three-node cluster "arakoon" (for one to try against: `rarakoon-bin local`).
//! let client = Client::new(
//!     ClientConfig::new("arakoon")
//!         .node("node_0", "127.0.0.1:4000".parse()?)
//!         .node("node_1", "127.0.0.1:4001".parse()?)
//!         .node("node_2", "127.0.0.1:4002".parse()?),
//! )?;
//! client.set("user/1", "alice").await?;
//! assert_eq!(client.get("user/1").await?, "alice");
//!
//! client
//!     .sequence(Sequence::new().assert_exists("user/1").set("user/2", "bob").delete("user/1"))
//!     .await?;
//! assert_eq!(client.prefix_keys("user/", -1).await?, vec!["user/2"]);
//!
//! // Reads at another consistency level share the connections.
//! let dirty = client.with_consistency(Consistency::NoGuarantees);
//! assert!(dirty.exists("user/2").await?);
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::stream::ClientStream as Stream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::codec::{Decoder, Encoder};
use tracing::debug;

use crate::codec::ClientCodec;
use crate::error::Error;
use crate::error_code::ErrorCode;
use crate::opcode::Opcode;
use crate::request::{Prologue, Request};
use crate::response::{Entry, Reply, Response};
use crate::types::{
    ClientCfg, Consistency, Interval, NamedValue, NurseryCfg, RangeQuery, Routing, VersionInfo,
};
use crate::update::{RangeAssertion, Update};
use crate::wire::{Limits, ProtocolError};

/// Client settings. Every field is public; [`ClientConfig::new`] gives the defaults and
/// [`ClientConfig::node`] adds nodes.
///
/// ```
/// use std::time::Duration;
/// use rarakoon_client::{ClientConfig, Consistency};
/// let mut config = ClientConfig::new("arakoon")
///     .node("node_0", "127.0.0.1:4000".parse().unwrap())
///     .node("node_1", "127.0.0.1:4001".parse().unwrap());
/// config.request_timeout = Duration::from_secs(5);
/// config.max_attempts = 10;
/// config.max_connections_per_node = 8;
/// config.consistency = Consistency::NoGuarantees;
/// config.read_from_slaves = true;
/// assert_eq!(config.nodes.len(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The cluster id sent in the prologue; a node of another cluster closes the connection.
    pub cluster_id: Bytes,
    /// The nodes: name → client address. The names must be the nodes' names in the cluster
    /// config: the master is recognised by the name `who_master` answers.
    pub nodes: BTreeMap<String, SocketAddr>,
    /// Free text sent with PING. Default `"rarakoon-client"`.
    pub client_id: Bytes,
    /// Time allowed to open a connection (TCP, and the TLS handshake with TLS). Default 5 s.
    /// A node that does not connect in time counts as unreachable for that attempt.
    pub connect_timeout: Duration,
    /// Time allowed for one request: writing it and reading its reply (and, when every
    /// connection to the node is busy, waiting for one to come free). Default 30 s. A read
    /// that times out is retried; a write whose request left is [`Error::Indeterminate`].
    pub request_timeout: Duration,
    /// How often a request is tried in all, at least 1. Default 3. An attempt that fails in a
    /// way that is safe to retry (see the module documentation: any read, a write the node
    /// refused before proposing or that never left this process) is followed by another
    /// one, after finding the master again, until this many were made; then the call fails
    /// with [`Error::NoMaster`] naming the last failure.
    pub max_attempts: usize,
    /// Pause before each attempt after the first (except the master's attempt right after a
    /// read a slave could not answer, which follows at once). Default 200 ms. Give an
    /// election time:
    /// `max_attempts × retry_delay` should exceed the cluster's lease period.
    pub retry_delay: Duration,
    /// The most connections this client (with all its clones) keeps open to any one node,
    /// at least 1. Default 4. Each connection carries one request at a time, so this many
    /// requests run at once per node; more wait (within `request_timeout`) for a free
    /// connection. Idle connections stay open for the next request.
    pub max_connections_per_node: usize,
    /// Bounds on replies (a `range_entries` of a big store can be large). Default: Arakoon's
    /// limits with frames up to 256 MiB.
    pub limits: Limits,
    /// Consistency of reads made through [`Client`] (see [`Client::with_consistency`]).
    /// Default [`Consistency::Consistent`].
    pub consistency: Consistency,
    /// Whether reads that do not need the master (`NoGuarantees` and `AtLeast`) go to a slave,
    /// as Arakoon's clients do with `allow_dirty`. Default `false`: every request goes to
    /// the master. When `true`, such a read is first sent to one node other than the known
    /// master (the configured nodes in turn, spreading the reads); a missing key or a failed
    /// assertion there is the answer, and any other failure (the slave is unreachable, slow,
    /// not yet at the index `AtLeast` asks for, or refuses, as a witness does) sends the read
    /// on to the master. Writes and `Consistent` reads always go to the master. Per client
    /// handle: [`Client::with_read_from_slaves`].
    pub read_from_slaves: bool,
    /// TLS to every node (plain TCP when `None`).
    pub tls: Option<ClientTls>,
}

/// TLS settings of a client (for nodes with Arakoon's `tls_service`).
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// The cluster CA: a node is accepted only with a certificate that chains to it and
    /// names the node (CN or DNS SAN) the client meant to reach.
    pub roots: Arc<rarakoon_tls::rustls::RootCertStore>,
    /// The client certificate and key, for nodes that require one
    /// (`tls_service_validate_peer`); its names decide whether admin operations are allowed.
    pub identity: Option<rarakoon_tls::Identity>,
    /// The oldest TLS version accepted.
    pub version: rarakoon_tls::TlsVersion,
}

impl ClientConfig {
    /// Defaults: 5 s connect, 30 s per request, 3 attempts 200 ms apart, 4 connections per
    /// node, replies up to 256 MiB, consistent reads from the master, plain TCP. Add nodes
    /// with [`ClientConfig::node`].
    ///
    /// ```
    /// let config = rarakoon_client::ClientConfig::new("arakoon");
    /// assert_eq!(config.max_attempts, 3);
    /// assert!(!config.read_from_slaves);
    /// ```
    pub fn new(cluster_id: impl Into<Bytes>) -> Self {
        ClientConfig {
            cluster_id: cluster_id.into(),
            nodes: BTreeMap::new(),
            client_id: Bytes::from_static(b"rarakoon-client"),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_attempts: 3,
            retry_delay: Duration::from_millis(200),
            max_connections_per_node: 4,
            limits: Limits {
                max_frame_bytes: 256 * 1024 * 1024,
                ..Limits::default()
            },
            consistency: Consistency::Consistent,
            read_from_slaves: false,
            tls: None,
        }
    }

    /// Adds a node (its name as in the cluster config, and its client address).
    ///
    /// ```
    /// let config = rarakoon_client::ClientConfig::new("arakoon")
    ///     .node("node_0", "127.0.0.1:4000".parse().unwrap());
    /// assert!(config.nodes.contains_key("node_0"));
    /// ```
    pub fn node(mut self, name: impl Into<String>, addr: SocketAddr) -> Self {
        self.nodes.insert(name.into(), addr);
        self
    }
}

/// A builder for the updates of a sequence (SEQUENCE / SYNCED_SEQUENCE), run atomically: if
/// one update fails, none is applied and the call fails with that update's error.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use rarakoon_client::{Client, ClientConfig, Error, Sequence};
/// let client = Client::new(ClientConfig::new("arakoon").node("node_0", "127.0.0.1:4000".parse()?))?;
/// client.set("counter", "1").await?;
/// // Compare-and-swap of two keys at once.
/// let bump = Sequence::new()
///     .assert("counter", Some("1".into()))
///     .set("counter", "2")
///     .set("log/2", "bumped");
/// client.sequence(bump).await?;
///
/// // A failing assertion applies nothing.
/// let stale = Sequence::new().assert("counter", Some("1".into())).set("log/3", "lost");
/// assert!(matches!(client.sequence(stale).await, Err(Error::AssertionFailed(_))));
/// assert!(!client.exists("log/3").await?);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sequence {
    updates: Vec<Update>,
}

impl Sequence {
    /// An empty sequence (valid: it succeeds and changes nothing).
    pub fn new() -> Self {
        Sequence::default()
    }

    /// Stores a value.
    pub fn set(self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Self {
        self.push(Update::Set {
            key: key.into(),
            value: value.into(),
        })
    }

    /// Deletes a key; a missing key fails the whole sequence with `NotFound`.
    pub fn delete(self, key: impl Into<Bytes>) -> Self {
        self.push(Update::Delete { key: key.into() })
    }

    /// Requires `key` to hold `expected` (`None` = to be absent).
    pub fn assert(self, key: impl Into<Bytes>, expected: Option<Bytes>) -> Self {
        self.push(Update::Assert {
            key: key.into(),
            expected,
        })
    }

    /// Requires `key` to exist.
    pub fn assert_exists(self, key: impl Into<Bytes>) -> Self {
        self.push(Update::AssertExists { key: key.into() })
    }

    /// Stores `wanted` unconditionally (`None` deletes).
    pub fn replace(self, key: impl Into<Bytes>, wanted: Option<Bytes>) -> Self {
        self.push(Update::Replace {
            key: key.into(),
            wanted,
        })
    }

    /// Compare-and-swap inside the sequence (its result is discarded).
    pub fn test_and_set(
        self,
        key: impl Into<Bytes>,
        expected: Option<Bytes>,
        wanted: Option<Bytes>,
    ) -> Self {
        self.push(Update::TestAndSet {
            key: key.into(),
            expected,
            wanted,
        })
    }

    /// Deletes every key that starts with `prefix`.
    pub fn delete_prefix(self, prefix: impl Into<Bytes>) -> Self {
        self.push(Update::DeletePrefix {
            prefix: prefix.into(),
        })
    }

    /// Runs a server-side user function.
    pub fn user_function(self, name: impl Into<Bytes>, arg: Option<Bytes>) -> Self {
        self.push(Update::UserFunction {
            name: name.into(),
            arg,
        })
    }

    /// Requires the keys under `prefix` to be exactly `keys_ascending`. They are written
    /// reversed, as the OCaml client does, which is the order Arakoon's check expects (§7.2).
    pub fn assert_range_contains_exactly(
        self,
        prefix: impl Into<Bytes>,
        keys_ascending: impl IntoIterator<Item = Bytes>,
    ) -> Self {
        let mut keys: Vec<Bytes> = keys_ascending.into_iter().collect();
        keys.reverse();
        self.push(Update::AssertRange {
            prefix: prefix.into(),
            assertion: RangeAssertion::ContainsExactly(keys),
        })
    }

    /// Appends any update (including a nested sequence).
    pub fn push(mut self, update: Update) -> Self {
        self.updates.push(update);
        self
    }

    /// The updates, in execution order.
    pub fn updates(&self) -> &[Update] {
        &self.updates
    }

    /// Takes the updates.
    pub fn into_updates(self) -> Vec<Update> {
        self.updates
    }
}

/// One connection to one node.
struct Connection {
    node: String,
    stream: Stream,
    codec: ClientCodec,
    input: BytesMut,
    output: BytesMut,
}

/// How a call on a connection failed.
enum CallFailure {
    /// The request did not fully leave: the server cannot have applied it.
    NotSent(Error),
    /// The request left; the reply did not come.
    Sent(Error),
}

impl Connection {
    async fn open(
        node: &str,
        addr: SocketAddr,
        config: &ClientConfig,
        tls: Option<&Arc<rarakoon_tls::rustls::ClientConfig>>,
    ) -> Result<Connection, Error> {
        let connect = Stream::connect(addr, tls);
        let stream = match tokio::time::timeout(config.connect_timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => {
                return Err(Error::Connect {
                    node: node.to_owned(),
                    addr,
                    source,
                });
            }
            Err(_) => {
                return Err(Error::Connect {
                    node: node.to_owned(),
                    addr,
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no connection within {:?}", config.connect_timeout),
                    ),
                });
            }
        };
        let mut connection = Connection {
            node: node.to_owned(),
            stream,
            codec: ClientCodec::new(config.limits),
            input: BytesMut::with_capacity(8 * 1024),
            output: BytesMut::with_capacity(1024),
        };
        // The prologue is sent with the first request (no reply comes to it).
        let prologue = Prologue {
            cluster_id: config.cluster_id.clone(),
        };
        connection
            .codec
            .encode(&prologue, &mut connection.output)
            .map_err(|e| Error::from_codec(node, e))?;
        Ok(connection)
    }

    async fn call(&mut self, request: &Request, timeout: Duration) -> Result<Reply, CallFailure> {
        let deadline = Instant::now() + timeout;
        let opcode = request.opcode();
        self.check_idle_connection().map_err(CallFailure::NotSent)?;
        self.codec
            .encode(request, &mut self.output)
            .map_err(|e| CallFailure::NotSent(Error::from_codec(&self.node, e)))?;
        let written = async {
            self.stream.write_all(&self.output).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout_at(deadline, written).await {
            Ok(Ok(())) => self.output.clear(),
            Ok(Err(source)) => {
                return Err(CallFailure::NotSent(Error::Io {
                    node: self.node.clone(),
                    source,
                }));
            }
            Err(_) => return Err(CallFailure::NotSent(Error::Timeout { opcode, timeout })),
        }
        let node = &self.node;
        let read = async {
            loop {
                if let Some((answered, reply)) = self
                    .codec
                    .decode(&mut self.input)
                    .map_err(|e| Error::from_codec(node, e))?
                {
                    if answered != opcode {
                        return Err(Error::UnexpectedResponse {
                            expected: opcode,
                            got: answered,
                        });
                    }
                    return Ok(reply);
                }
                self.input.reserve(16 * 1024);
                let n = self
                    .stream
                    .read_buf(&mut self.input)
                    .await
                    .map_err(|source| Error::Io {
                        node: node.clone(),
                        source,
                    })?;
                if n == 0 {
                    return Err(Error::Closed { node: node.clone() });
                }
            }
        };
        match tokio::time::timeout_at(deadline, read).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(CallFailure::Sent(e)),
            Err(_) => Err(CallFailure::Sent(Error::Timeout { opcode, timeout })),
        }
    }

    /// Between requests nothing may arrive. A node that closed the connection meanwhile
    /// (restart, shutdown) shows here as EOF; finding that out before sending keeps a write's
    /// outcome known instead of indeterminate.
    fn check_idle_connection(&mut self) -> Result<(), Error> {
        self.input.reserve(1);
        match self.stream.try_read_buf(&mut self.input) {
            Ok(0) => Err(Error::Closed {
                node: self.node.clone(),
            }),
            Ok(_) => Err(Error::Protocol {
                node: self.node.clone(),
                source: ProtocolError::UnexpectedResponse {
                    len: self.input.len(),
                },
            }),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
            Err(source) => Err(Error::Io {
                node: self.node.clone(),
                source,
            }),
        }
    }

    /// Asks this node who the master is.
    async fn who_master(&mut self, timeout: Duration) -> Result<Option<Bytes>, Error> {
        match self.call(&Request::WhoMaster, timeout).await {
            Ok(Ok(Response::WhoMaster(master))) => Ok(master),
            Ok(Ok(other)) => Err(Error::UnexpectedResponse {
                expected: Opcode::WhoMaster,
                got: other.opcode(),
            }),
            Ok(Err(reply)) => Err(reply.into()),
            Err(CallFailure::NotSent(e) | CallFailure::Sent(e)) => Err(e),
        }
    }
}

/// A node's connections: the idle ones, and the permits that bound how many are open.
struct NodePool {
    idle: std::sync::Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

/// A connection taken from a node's pool, with the permit it holds. Dropped, it closes the
/// connection and frees the permit; [`Inner::give_back`] returns a healthy one instead.
struct Lease {
    connection: Connection,
    _permit: OwnedSemaphorePermit,
}

struct Inner {
    config: ClientConfig,
    /// With TLS, one configuration per node (its verifier expects that node's name).
    tls: BTreeMap<String, Arc<rarakoon_tls::rustls::ClientConfig>>,
    /// One pool per configured node (same keys as `config.nodes`).
    pools: BTreeMap<String, NodePool>,
    /// The node last confirmed as master, if any.
    master: std::sync::Mutex<Option<String>>,
    /// Turns through the nodes for reads sent to slaves.
    next_read_node: AtomicUsize,
}

impl Inner {
    /// A connection to `node`: an idle one, or a new one once fewer than
    /// `max_connections_per_node` are open. Waits for a free one at most `request_timeout`.
    async fn lease(&self, node: &str, opcode: Opcode) -> Result<Lease, Error> {
        let (Some(pool), Some(addr)) = (self.pools.get(node), self.config.nodes.get(node)) else {
            return Err(Error::Config(format!("node {node:?} is not configured")));
        };
        let timeout = self.config.request_timeout;
        let permit = match tokio::time::timeout(timeout, Arc::clone(&pool.permits).acquire_owned())
            .await
        {
            Ok(Ok(permit)) => permit,
            Ok(Err(_closed)) => return Err(Error::Config("the client's pool was closed".into())),
            Err(_) => return Err(Error::Timeout { opcode, timeout }),
        };
        let idle = lock(&pool.idle).pop();
        let connection = match idle {
            Some(c) => c,
            None => Connection::open(node, *addr, &self.config, self.tls.get(node)).await?,
        };
        Ok(Lease {
            connection,
            _permit: permit,
        })
    }

    /// Returns a connection that is fit for the next request to its node's pool.
    fn give_back(&self, lease: Lease) {
        let Lease {
            connection,
            _permit,
        } = lease;
        if let Some(pool) = self.pools.get(&connection.node) {
            lock(&pool.idle).push(connection);
        }
        // The permit is released after the connection is idle again: a waiter finds it.
    }

    fn master(&self) -> Option<String> {
        lock(&self.master).clone()
    }

    fn set_master(&self, master: Option<String>) {
        *lock(&self.master) = master;
    }
}

/// Locks a std mutex that guards plain data; a panic while holding it cannot leave the data
/// half-changed (every critical section is one push, pop or assignment), so poisoning is
/// ignored.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The consistency a read carries, for the reads that carry one.
fn read_consistency(request: &Request) -> Option<Consistency> {
    match request {
        Request::Exists { consistency, .. }
        | Request::Get { consistency, .. }
        | Request::PrefixKeys { consistency, .. }
        | Request::MultiGet { consistency, .. }
        | Request::MultiGetOption { consistency, .. }
        | Request::Assert { consistency, .. }
        | Request::AssertExists { consistency, .. } => Some(*consistency),
        Request::Range(q) | Request::RangeEntries(q) | Request::RevRangeEntries(q) => {
            Some(q.consistency)
        }
        _ => None,
    }
}

/// An Arakoon client. Cheap to clone, and meant to be shared: clones (and every task using
/// one) share the connection pools, so many tasks can use one `Client` at once.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    consistency: Consistency,
    read_from_slaves: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("cluster_id", &self.inner.config.cluster_id)
            .field("nodes", &self.inner.config.nodes)
            .field("consistency", &self.consistency)
            .field("read_from_slaves", &self.read_from_slaves)
            .finish()
    }
}

macro_rules! expect {
    ($self:ident, $request:expr, $pattern:pat => $value:expr) => {{
        let request = $request;
        let opcode = request.opcode();
        match $self.request(request).await? {
            $pattern => Ok($value),
            other => Err(Error::UnexpectedResponse {
                expected: opcode,
                got: other.opcode(),
            }),
        }
    }};
}

fn opt(value: Option<impl Into<Bytes>>) -> Option<Bytes> {
    value.map(Into::into)
}

/// Whether a slave's error answer to a read is the read's answer (a missing key, a failed
/// assertion: what the slave's store says), rather than a reason to ask the master.
fn slave_answer_is_final(e: &Error) -> bool {
    matches!(e, Error::NotFound(_) | Error::AssertionFailed(_))
}

/// What one attempt of a request came to.
enum Attempt {
    /// The final answer (success or an error reply to return as is).
    Done(Result<Response, Error>),
    /// Failed in a way that is safe to retry.
    Retry(Error),
}

impl Client {
    /// A client for the configured cluster. Connects lazily, on the first request.
    ///
    /// ```
    /// use rarakoon_client::{Client, ClientConfig};
    /// let client = Client::new(
    ///     ClientConfig::new("arakoon").node("node_0", "127.0.0.1:4000".parse().unwrap()),
    /// )
    /// .unwrap();
    /// assert_eq!(client.consistency(), rarakoon_client::Consistency::Consistent);
    /// // No node configured, or max_attempts / max_connections_per_node of 0: refused.
    /// assert!(Client::new(ClientConfig::new("arakoon")).is_err());
    /// ```
    pub fn new(config: ClientConfig) -> Result<Client, Error> {
        if config.nodes.is_empty() {
            return Err(Error::Config("no nodes configured".into()));
        }
        if config.max_attempts == 0 {
            return Err(Error::Config("max_attempts must be at least 1".into()));
        }
        if config.max_connections_per_node == 0 {
            return Err(Error::Config(
                "max_connections_per_node must be at least 1".into(),
            ));
        }
        let consistency = config.consistency;
        let read_from_slaves = config.read_from_slaves;
        let mut tls = BTreeMap::new();
        if let Some(settings) = &config.tls {
            for name in config.nodes.keys() {
                let node_config = rarakoon_tls::client_config(
                    Arc::clone(&settings.roots),
                    Some(name),
                    settings.identity.as_ref(),
                    settings.version,
                )
                .map_err(|e| Error::Config(e.to_string()))?;
                tls.insert(name.clone(), node_config);
            }
        }
        let pools = config
            .nodes
            .keys()
            .map(|name| {
                let pool = NodePool {
                    idle: std::sync::Mutex::new(Vec::new()),
                    permits: Arc::new(Semaphore::new(config.max_connections_per_node)),
                };
                (name.clone(), pool)
            })
            .collect();
        Ok(Client {
            inner: Arc::new(Inner {
                config,
                tls,
                pools,
                master: std::sync::Mutex::new(None),
                next_read_node: AtomicUsize::new(0),
            }),
            consistency,
            read_from_slaves,
        })
    }

    /// A client sharing this one's connections whose reads use `consistency`.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// use rarakoon_client::Consistency;
    /// // Reads that accept any state of a store at least as new as index 42.
    /// let recent = client.with_consistency(Consistency::AtLeast(42));
    /// let value = recent.get("k").await?;
    /// # Ok(()) }
    /// ```
    pub fn with_consistency(&self, consistency: Consistency) -> Client {
        Client {
            consistency,
            ..self.clone()
        }
    }

    /// A client sharing this one's connections whose `NoGuarantees` and `AtLeast` reads go to
    /// slaves (`true`) or to the master (`false`); see [`ClientConfig::read_from_slaves`].
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// use rarakoon_client::Consistency;
    /// let dirty = client
    ///     .with_consistency(Consistency::NoGuarantees)
    ///     .with_read_from_slaves(true);
    /// let maybe_stale = dirty.get_option("k").await?;
    /// # Ok(()) }
    /// ```
    pub fn with_read_from_slaves(&self, read_from_slaves: bool) -> Client {
        Client {
            read_from_slaves,
            ..self.clone()
        }
    }

    /// The consistency this client's reads use.
    pub fn consistency(&self) -> Consistency {
        self.consistency
    }

    /// Whether this client's `NoGuarantees` and `AtLeast` reads go to slaves.
    pub fn reads_from_slaves(&self) -> bool {
        self.read_from_slaves
    }

    /// A connection to the master: to the node last confirmed as master if one is known (it
    /// answers NotMaster if it no longer is, and the request is retried after finding the
    /// master again); otherwise found by asking each node and confirming with the named
    /// master itself.
    async fn lease_master(&self, opcode: Opcode) -> Result<Lease, Error> {
        if let Some(master) = self.inner.master() {
            return self.inner.lease(&master, opcode).await;
        }
        let config = &self.inner.config;
        let mut last_error = String::from("no node answered");
        for name in config.nodes.keys() {
            let mut lease = match self.inner.lease(name, Opcode::WhoMaster).await {
                Ok(c) => c,
                Err(e) => {
                    last_error = e.to_string();
                    continue;
                }
            };
            let master = match lease.connection.who_master(config.request_timeout).await {
                Ok(Some(master)) => master,
                Ok(None) => {
                    self.inner.give_back(lease);
                    last_error = format!("node {name} knows no master");
                    continue;
                }
                Err(e) => {
                    last_error = e.to_string();
                    continue;
                }
            };
            if master == name.as_bytes() {
                debug!(node = %name, "connected to master");
                self.inner.set_master(Some(name.clone()));
                return Ok(lease);
            }
            // A healthy connection to a slave: kept for reads sent to slaves.
            self.inner.give_back(lease);
            let master_name = String::from_utf8_lossy(&master).into_owned();
            if !config.nodes.contains_key(&master_name) {
                last_error = format!("node {name} names master {master_name:?}, not configured");
                continue;
            }
            match self.inner.lease(&master_name, Opcode::WhoMaster).await {
                Ok(mut lease) => match lease.connection.who_master(config.request_timeout).await {
                    Ok(Some(m)) if m == master => {
                        debug!(node = %master_name, "connected to master");
                        self.inner.set_master(Some(master_name));
                        return Ok(lease);
                    }
                    Ok(_) => {
                        self.inner.give_back(lease);
                        last_error = format!("{master_name} does not confirm it is master");
                    }
                    Err(e) => last_error = e.to_string(),
                },
                Err(e) => last_error = e.to_string(),
            }
        }
        Err(Error::NoMaster {
            nodes: config.nodes.len(),
            last_error,
        })
    }

    /// The node a read sent to slaves tries: the configured nodes in turn, skipping the
    /// master when it is known and another node is configured.
    fn slave_for_read(&self) -> String {
        let nodes: Vec<&String> = self.inner.config.nodes.keys().collect();
        let master = self.inner.master();
        let candidates: Vec<&String> = nodes
            .iter()
            .copied()
            .filter(|n| Some(n.as_str()) != master.as_deref())
            .collect();
        let candidates = if candidates.is_empty() {
            nodes
        } else {
            candidates
        };
        let turn = self
            .inner
            .next_read_node
            .fetch_add(1, AtomicOrdering::Relaxed);
        candidates[turn % candidates.len()].clone()
    }

    /// Sends any request and returns its success answer; error frames become [`Error`]
    /// variants. Requests go to the master, except `NoGuarantees` and `AtLeast` reads of a
    /// client that reads from slaves ([`ClientConfig::read_from_slaves`]): their first
    /// attempt goes to a slave, and if that slave can't answer (unreachable, too slow, not
    /// fresh enough for `AtLeast`, or refusing) the next attempts go to the master. This is
    /// the one place the retry rule of the module documentation is applied.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// use rarakoon_client::{Request, Response};
    /// let response = client.request(Request::GetKeyCount).await?;
    /// assert!(matches!(response, Response::GetKeyCount(_)));
    /// # Ok(()) }
    /// ```
    pub async fn request(&self, request: Request) -> Result<Response, Error> {
        let config = &self.inner.config;
        let opcode = request.opcode();
        let mut to_slave = self.read_from_slaves
            && read_consistency(&request).is_some_and(|c| c != Consistency::Consistent);
        let mut last: Option<Error> = None;
        // After a read a slave could not answer, the master is asked at once.
        let mut pause = false;
        for _attempt in 1..=config.max_attempts {
            if pause {
                tokio::time::sleep(config.retry_delay).await;
            }
            pause = !to_slave;
            let outcome = if to_slave {
                // One try on a slave; whatever stops it, the read goes on to the master.
                to_slave = false;
                let node = self.slave_for_read();
                let lease = self.inner.lease(&node, opcode).await;
                match self.attempt(&request, lease).await {
                    Attempt::Done(Err(e)) if !slave_answer_is_final(&e) => {
                        debug!(node = %node, error = %e, "read on a slave failed; asking the master");
                        Attempt::Retry(e)
                    }
                    Attempt::Retry(e) => {
                        debug!(node = %node, error = %e, "read on a slave failed; asking the master");
                        Attempt::Retry(e)
                    }
                    done => done,
                }
            } else {
                let lease = self.lease_master(opcode).await;
                self.attempt(&request, lease).await
            };
            match outcome {
                Attempt::Done(result) => return result,
                Attempt::Retry(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e @ Error::NoMaster { .. }) => e,
            Some(e) => Error::NoMaster {
                nodes: config.nodes.len(),
                last_error: e.to_string(),
            },
            None => Error::NoMaster {
                nodes: config.nodes.len(),
                last_error: "no attempt made".into(),
            },
        })
    }

    /// One attempt of `request` on `lease`, applying the retry rule.
    async fn attempt(&self, request: &Request, lease: Result<Lease, Error>) -> Attempt {
        let config = &self.inner.config;
        let opcode = request.opcode();
        let is_write = opcode.is_write();
        let mut lease = match lease {
            Ok(lease) => lease,
            Err(e) => return Attempt::Retry(e),
        };
        let node = lease.connection.node.clone();
        match lease.connection.call(request, config.request_timeout).await {
            Ok(Ok(response)) => {
                if !matches!(
                    opcode,
                    Opcode::UserHook
                        | Opcode::LastEntries
                        | Opcode::LastEntries2
                        | Opcode::LastEntries3
                ) {
                    self.inner.give_back(lease);
                }
                // Otherwise the connection now carries a stream this client does not speak:
                // dropping the lease closes it.
                Attempt::Done(Ok(response))
            }
            Ok(Err(reply)) => {
                // Keep the connection only after the errors every server keeps it for; after
                // any other error the server may have closed it (an oversized request, for
                // one), and a dead connection would make the next write's outcome look
                // unknown.
                if matches!(
                    reply.code,
                    ErrorCode::NotFound | ErrorCode::AssertionFailed | ErrorCode::InconsistentRead
                ) {
                    self.inner.give_back(lease);
                }
                match reply.code {
                    // Refused before proposing: safe to retry anywhere.
                    ErrorCode::NotMaster => {
                        if self.inner.master().as_deref() == Some(node.as_str()) {
                            self.inner.set_master(None);
                        }
                        Attempt::Retry(reply.into())
                    }
                    ErrorCode::NoLongerMaster if is_write => {
                        self.inner.set_master(None);
                        Attempt::Done(Err(Error::Indeterminate {
                            opcode,
                            cause: Error::from(reply).to_string(),
                        }))
                    }
                    _ => Attempt::Done(Err(reply.into())),
                }
            }
            Err(CallFailure::NotSent(e)) => {
                self.forget_master_on(&node);
                Attempt::Retry(e)
            }
            Err(CallFailure::Sent(e)) => {
                self.forget_master_on(&node);
                if is_write {
                    return Attempt::Done(Err(Error::Indeterminate {
                        opcode,
                        cause: e.to_string(),
                    }));
                }
                Attempt::Retry(e)
            }
        }
    }

    /// After a broken connection to the master, the next attempt finds the master again.
    fn forget_master_on(&self, node: &str) {
        if self.inner.master().as_deref() == Some(node) {
            self.inner.set_master(None);
        }
    }

    // ---- client operations ---------------------------------------------------------------

    /// PING: the node's version string (`"Arakoon 1.9.25"`).
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// let version = client.ping().await?; // e.g. "Arakoon 1.9.0"
    /// # Ok(()) }
    /// ```
    pub async fn ping(&self) -> Result<Bytes, Error> {
        let config = &self.inner.config;
        expect!(self, Request::Ping {
            client_id: config.client_id.clone(),
            cluster_id: config.cluster_id.clone(),
        }, Response::Ping(v) => v)
    }

    /// WHO_MASTER, as the current connection's node sees it.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// if let Some(master) = client.who_master().await? {
    ///     println!("master: {}", String::from_utf8_lossy(&master));
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn who_master(&self) -> Result<Option<Bytes>, Error> {
        expect!(self, Request::WhoMaster, Response::WhoMaster(m) => m)
    }

    /// EXISTS.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// let present: bool = client.exists("k").await?;
    /// # Ok(()) }
    /// ```
    pub async fn exists(&self, key: impl Into<Bytes>) -> Result<bool, Error> {
        expect!(self, Request::Exists { consistency: self.consistency, key: key.into() },
            Response::Exists(b) => b)
    }

    /// GET; a missing key is [`Error::NotFound`].
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// match client.get("k").await {
    ///     Ok(value) => println!("{value:?}"),
    ///     Err(rarakoon_client::Error::NotFound(_)) => println!("no such key"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, key: impl Into<Bytes>) -> Result<Bytes, Error> {
        expect!(self, Request::Get { consistency: self.consistency, key: key.into() },
            Response::Get(v) => v)
    }

    /// GET, with a missing key as `None`.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// let value: Option<bytes::Bytes> = client.get_option("k").await?;
    /// # Ok(()) }
    /// ```
    pub async fn get_option(&self, key: impl Into<Bytes>) -> Result<Option<Bytes>, Error> {
        match self.get(key).await {
            Ok(v) => Ok(Some(v)),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// SET.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// client.set("k", "v").await?;
    /// # Ok(()) }
    /// ```
    pub async fn set(&self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<(), Error> {
        expect!(self, Request::Set { key: key.into(), value: value.into() }, Response::Set => ())
    }

    /// DELETE; a missing key is [`Error::NotFound`] with the key as message.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// client.delete("k").await?; // NotFound if it was not there
    /// # Ok(()) }
    /// ```
    pub async fn delete(&self, key: impl Into<Bytes>) -> Result<(), Error> {
        expect!(self, Request::Delete { key: key.into() }, Response::Delete => ())
    }

    /// CONFIRM: set unless the value is already there.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// client.confirm("k", "v").await?; // no write if "k" already holds "v"
    /// # Ok(()) }
    /// ```
    pub async fn confirm(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<(), Error> {
        expect!(self, Request::Confirm { key: key.into(), value: value.into() },
            Response::Confirm => ())
    }

    fn range_query(
        &self,
        first: Option<impl Into<Bytes>>,
        first_inclusive: bool,
        last: Option<impl Into<Bytes>>,
        last_inclusive: bool,
        max: i32,
    ) -> RangeQuery {
        RangeQuery {
            consistency: self.consistency,
            first: opt(first),
            first_inclusive,
            last: opt(last),
            last_inclusive,
            max,
        }
    }

    /// RANGE: keys between `first` and `last`, ascending, the smallest `max` of them
    /// (`max < 0` = no limit).
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// // Keys from "a" (inclusive) to "m" (exclusive), at most 100.
    /// let keys = client.range(Some("a"), true, Some("m"), false, 100).await?;
    /// # Ok(()) }
    /// ```
    pub async fn range(
        &self,
        first: Option<impl Into<Bytes>>,
        first_inclusive: bool,
        last: Option<impl Into<Bytes>>,
        last_inclusive: bool,
        max: i32,
    ) -> Result<Vec<Bytes>, Error> {
        let q = self.range_query(first, first_inclusive, last, last_inclusive, max);
        expect!(self, Request::Range(q), Response::Range(keys) => keys)
    }

    /// RANGE_ENTRIES: entries between `first` and `last`, ascending.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// // Every entry from "a" on, ascending.
    /// let entries = client.range_entries(Some("a"), true, None::<&str>, false, -1).await?;
    /// for (key, value) in entries {
    ///     println!("{key:?} = {value:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn range_entries(
        &self,
        first: Option<impl Into<Bytes>>,
        first_inclusive: bool,
        last: Option<impl Into<Bytes>>,
        last_inclusive: bool,
        max: i32,
    ) -> Result<Vec<Entry>, Error> {
        let q = self.range_query(first, first_inclusive, last, last_inclusive, max);
        expect!(self, Request::RangeEntries(q), Response::RangeEntries(e) => e)
    }

    /// REV_RANGE_ENTRIES: entries from `high` down to `low`, descending, the largest `max`.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// // The 10 largest keys below "m", descending.
    /// let newest = client.rev_range_entries(Some("m"), false, None::<&str>, false, 10).await?;
    /// # Ok(()) }
    /// ```
    pub async fn rev_range_entries(
        &self,
        high: Option<impl Into<Bytes>>,
        high_inclusive: bool,
        low: Option<impl Into<Bytes>>,
        low_inclusive: bool,
        max: i32,
    ) -> Result<Vec<Entry>, Error> {
        let q = self.range_query(high, high_inclusive, low, low_inclusive, max);
        expect!(self, Request::RevRangeEntries(q), Response::RevRangeEntries(e) => e)
    }

    /// PREFIX_KEYS: keys starting with `prefix`, ascending, the smallest `max`.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// let users = client.prefix_keys("user/", -1).await?;
    /// # Ok(()) }
    /// ```
    pub async fn prefix_keys(
        &self,
        prefix: impl Into<Bytes>,
        max: i32,
    ) -> Result<Vec<Bytes>, Error> {
        expect!(self, Request::PrefixKeys {
            consistency: self.consistency,
            prefix: prefix.into(),
            max,
        }, Response::PrefixKeys(keys) => keys)
    }

    /// TEST_AND_SET: stores `wanted` if the value is `expected`; returns the value before.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// // Set "lock" to "me" only if it is absent; the answer is the value before.
    /// let before = client.test_and_set("lock", None::<&str>, Some("me")).await?;
    /// let acquired = before.is_none();
    /// # Ok(()) }
    /// ```
    pub async fn test_and_set(
        &self,
        key: impl Into<Bytes>,
        expected: Option<impl Into<Bytes>>,
        wanted: Option<impl Into<Bytes>>,
    ) -> Result<Option<Bytes>, Error> {
        expect!(self, Request::TestAndSet {
            key: key.into(),
            expected: opt(expected),
            wanted: opt(wanted),
        }, Response::TestAndSet(v) => v)
    }

    /// REPLACE: stores `wanted` (None deletes); returns the previous value.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// let previous = client.replace("k", Some("new")).await?;
    /// let removed = client.replace("k", None::<&str>).await?; // deletes
    /// # Ok(()) }
    /// ```
    pub async fn replace(
        &self,
        key: impl Into<Bytes>,
        wanted: Option<impl Into<Bytes>>,
    ) -> Result<Option<Bytes>, Error> {
        expect!(self, Request::Replace { key: key.into(), wanted: opt(wanted) },
            Response::Replace(v) => v)
    }

    /// SEQUENCE: runs the updates atomically.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// use rarakoon_client::Sequence;
    /// client.sequence(Sequence::new().set("a", "1").delete_prefix("tmp/")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn sequence(&self, sequence: Sequence) -> Result<(), Error> {
        expect!(self, Request::Sequence(sequence.into_updates()), Response::Sequence => ())
    }

    /// SYNCED_SEQUENCE: as [`Client::sequence`], with the log synced before the answer.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// use rarakoon_client::Sequence;
    /// client.synced_sequence(Sequence::new().set("a", "1").set("b", "2")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn synced_sequence(&self, sequence: Sequence) -> Result<(), Error> {
        expect!(self, Request::SyncedSequence(sequence.into_updates()),
            Response::SyncedSequence => ())
    }

    /// MULTI_GET: the values of `keys`, in the same order; a missing key fails the call.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// let values = client.multi_get(["a", "b"]).await?; // NotFound if one is missing
    /// # Ok(()) }
    /// ```
    pub async fn multi_get(
        &self,
        keys: impl IntoIterator<Item = impl Into<Bytes>>,
    ) -> Result<Vec<Bytes>, Error> {
        let keys = keys.into_iter().map(Into::into).collect();
        expect!(self, Request::MultiGet { consistency: self.consistency, keys },
            Response::MultiGet(v) => v)
    }

    /// MULTI_GET_OPTION: the values of `keys` (None if absent), in the same order.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// let values = client.multi_get_option(["a", "b"]).await?;
    /// assert_eq!(values.len(), 2);
    /// # Ok(()) }
    /// ```
    pub async fn multi_get_option(
        &self,
        keys: impl IntoIterator<Item = impl Into<Bytes>>,
    ) -> Result<Vec<Option<Bytes>>, Error> {
        let keys = keys.into_iter().map(Into::into).collect();
        expect!(self, Request::MultiGetOption { consistency: self.consistency, keys },
            Response::MultiGetOption(v) => v)
    }

    /// ASSERT: `key` holds `expected` (None = is absent), else [`Error::AssertionFailed`].
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// // Fails with Error::AssertionFailed unless "k" holds "v".
    /// client.assert("k", Some("v")).await?;
    /// client.assert("gone", None::<&str>).await?; // "gone" must be absent
    /// # Ok(()) }
    /// ```
    pub async fn assert(
        &self,
        key: impl Into<Bytes>,
        expected: Option<impl Into<Bytes>>,
    ) -> Result<(), Error> {
        expect!(self, Request::Assert {
            consistency: self.consistency,
            key: key.into(),
            expected: opt(expected),
        }, Response::Assert => ())
    }

    /// ASSERT_EXISTS.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// client.assert_exists("k").await?;
    /// # Ok(()) }
    /// ```
    pub async fn assert_exists(&self, key: impl Into<Bytes>) -> Result<(), Error> {
        expect!(self, Request::AssertExists { consistency: self.consistency, key: key.into() },
            Response::AssertExists => ())
    }

    /// DELETE_PREFIX: returns how many keys were deleted.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// let deleted: i32 = client.delete_prefix("tmp/").await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete_prefix(&self, prefix: impl Into<Bytes>) -> Result<i32, Error> {
        expect!(self, Request::DeletePrefix { prefix: prefix.into() },
            Response::DeletePrefix(n) => n)
    }

    /// USER_FUNCTION.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// let answer = client.user_function("increment", Some("counter")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn user_function(
        &self,
        name: impl Into<Bytes>,
        arg: Option<impl Into<Bytes>>,
    ) -> Result<Option<Bytes>, Error> {
        expect!(self, Request::UserFunction { name: name.into(), arg: opt(arg) },
            Response::UserFunction(v) => v)
    }

    /// USER_HOOK. On success the hook owns the connection with its own protocol, which this
    /// client does not speak: the connection is then dropped and `Ok(())` returned.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// client.user_hook("my_hook").await?;
    /// # Ok(()) }
    /// ```
    pub async fn user_hook(&self, name: impl Into<Bytes>) -> Result<(), Error> {
        expect!(self, Request::UserHook { consistency: self.consistency, name: name.into() },
            Response::UserHook => ())
    }

    /// EXPECT_PROGRESS_POSSIBLE.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// let can_write = client.expect_progress_possible().await?;
    /// # Ok(()) }
    /// ```
    pub async fn expect_progress_possible(&self) -> Result<bool, Error> {
        expect!(self, Request::ExpectProgressPossible, Response::ExpectProgressPossible(b) => b)
    }

    /// STATISTICS: the `arakoon_stats` tree.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// let stats = client.statistics().await?;
    /// if let Some(node_is) = stats.get("node_is") {
    ///     println!("{node_is:?}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn statistics(&self) -> Result<NamedValue, Error> {
        expect!(self, Request::Statistics, Response::Statistics(s) => s)
    }

    /// GET_KEY_COUNT.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// let keys: i64 = client.get_key_count().await?;
    /// # Ok(()) }
    /// ```
    pub async fn get_key_count(&self) -> Result<i64, Error> {
        expect!(self, Request::GetKeyCount, Response::GetKeyCount(n) => n)
    }

    /// VERSION.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// let v = client.version().await?;
    /// println!("{}.{}.{}", v.major, v.minor, v.patch);
    /// # Ok(()) }
    /// ```
    pub async fn version(&self) -> Result<VersionInfo, Error> {
        expect!(self, Request::Version, Response::Version(v) => v)
    }

    /// CURRENT_STATE: the node's consensus state, as text.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// let state = client.current_state().await?; // e.g. "Stable_master"
    /// # Ok(()) }
    /// ```
    pub async fn current_state(&self) -> Result<Bytes, Error> {
        expect!(self, Request::CurrentState, Response::CurrentState(s) => s)
    }

    /// NOP: commits a no-op.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// client.nop().await?;
    /// # Ok(()) }
    /// ```
    pub async fn nop(&self) -> Result<(), Error> {
        expect!(self, Request::Nop, Response::Nop => ())
    }

    /// GET_TXID: the node's last applied index, as a consistency to pass to later reads.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// // Read-your-writes on a slave: ask for a store at least this recent.
    /// client.set("k", "v").await?;
    /// let at_least = client.get_txid().await?;
    /// let v = client.with_consistency(at_least).with_read_from_slaves(true).get("k").await?;
    /// # Ok(()) }
    /// ```
    pub async fn get_txid(&self) -> Result<Consistency, Error> {
        expect!(self, Request::GetTxid, Response::GetTxid(c) => c)
    }

    // ---- admin operations ------------------------------------------------------------------

    /// COLLAPSE_TLOGS: returns one opaque progress value per step.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// let progress = client.collapse_tlogs(5).await?;
    /// # Ok(()) }
    /// ```
    pub async fn collapse_tlogs(&self, tlogs_to_keep: i32) -> Result<Vec<i64>, Error> {
        expect!(self, Request::CollapseTlogs { tlogs_to_keep }, Response::CollapseTlogs(s) => s)
    }

    /// GET_DB: the store image (refused by a master).
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// // Refused by a master: use a client configured with one slave only.
    /// let image = client.get_db().await?;
    /// # Ok(()) }
    /// ```
    pub async fn get_db(&self) -> Result<Bytes, Error> {
        expect!(self, Request::GetDb, Response::GetDb(image) => image)
    }

    /// OPT_DB.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// client.optimize_db().await?;
    /// # Ok(()) }
    /// ```
    pub async fn optimize_db(&self) -> Result<(), Error> {
        expect!(self, Request::OptimizeDb, Response::OptimizeDb => ())
    }

    /// DEFRAG_DB.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// client.defrag_db().await?;
    /// # Ok(()) }
    /// ```
    pub async fn defrag_db(&self) -> Result<(), Error> {
        expect!(self, Request::DefragDb, Response::DefragDb => ())
    }

    /// DROP_MASTER.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// client.drop_master().await?;
    /// # Ok(()) }
    /// ```
    pub async fn drop_master(&self) -> Result<(), Error> {
        expect!(self, Request::DropMaster, Response::DropMaster => ())
    }

    /// FLUSH_STORE.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// client.flush_store().await?;
    /// # Ok(()) }
    /// ```
    pub async fn flush_store(&self) -> Result<(), Error> {
        expect!(self, Request::FlushStore, Response::FlushStore => ())
    }

    /// COPY_DB_TO_HEAD.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// client.copy_db_to_head(1).await?;
    /// # Ok(()) }
    /// ```
    pub async fn copy_db_to_head(&self, tlogs_to_keep: i32) -> Result<(), Error> {
        expect!(self, Request::CopyDbToHead { tlogs_to_keep }, Response::CopyDbToHead => ())
    }

    // ---- nursery (legacy sharding) -------------------------------------------------------

    /// SET_INTERVAL.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// use rarakoon_client::Interval;
    /// client.set_interval(Interval::default()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_interval(&self, interval: Interval) -> Result<(), Error> {
        expect!(self, Request::SetInterval(interval), Response::SetInterval => ())
    }

    /// GET_INTERVAL.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// let interval = client.get_interval().await?;
    /// # Ok(()) }
    /// ```
    pub async fn get_interval(&self) -> Result<Interval, Error> {
        expect!(self, Request::GetInterval, Response::GetInterval(i) => i)
    }

    /// SET_ROUTING.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// use rarakoon_client::Routing;
    /// client.set_routing(Routing::Cluster("left".into())).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_routing(&self, routing: Routing) -> Result<(), Error> {
        expect!(self, Request::SetRouting(routing), Response::SetRouting => ())
    }

    /// GET_ROUTING.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// let routing = client.get_routing().await?;
    /// # Ok(()) }
    /// ```
    pub async fn get_routing(&self) -> Result<Routing, Error> {
        expect!(self, Request::GetRouting, Response::GetRouting(r) => r)
    }

    /// SET_ROUTING_DELTA.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// client.set_routing_delta("left", "m", "right").await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_routing_delta(
        &self,
        left: impl Into<Bytes>,
        separator: impl Into<Bytes>,
        right: impl Into<Bytes>,
    ) -> Result<(), Error> {
        expect!(self, Request::SetRoutingDelta {
            left: left.into(),
            separator: separator.into(),
            right: right.into(),
        }, Response::SetRoutingDelta => ())
    }

    /// SET_NURSERY_CFG.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// use rarakoon_client::ClientCfg;
    /// client.set_nursery_cfg("left", ClientCfg { nodes: vec![] }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_nursery_cfg(
        &self,
        cluster_id: impl Into<Bytes>,
        cfg: ClientCfg,
    ) -> Result<(), Error> {
        expect!(self, Request::SetNurseryCfg { cluster_id: cluster_id.into(), cfg },
            Response::SetNurseryCfg => ())
    }

    /// GET_NURSERY_CFG.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// let nursery = client.get_nursery_cfg().await?;
    /// # Ok(()) }
    /// ```
    pub async fn get_nursery_cfg(&self) -> Result<NurseryCfg, Error> {
        expect!(self, Request::GetNurseryCfg, Response::GetNurseryCfg(c) => c)
    }

    /// GET_FRINGE.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// let fringe = client.get_fringe(Some("m"), 0).await?;
    /// # Ok(()) }
    /// ```
    pub async fn get_fringe(
        &self,
        boundary: Option<impl Into<Bytes>>,
        direction: i32,
    ) -> Result<Vec<Entry>, Error> {
        expect!(self, Request::GetFringe { boundary: opt(boundary), direction },
            Response::GetFringe(e) => e)
    }

    /// MIGRATE_RANGE.
    ///
    /// ```no_run
    /// # async fn f(client: rarakoon_client::Client) -> Result<(), rarakoon_client::Error> {
    /// use rarakoon_client::{Interval, Sequence};
    /// client.migrate_range(Interval::default(), Sequence::new().set("k", "v")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn migrate_range(&self, interval: Interval, sequence: Sequence) -> Result<(), Error> {
        expect!(self, Request::MigrateRange { interval, updates: sequence.into_updates() },
            Response::MigrateRange => ())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::error_code::ErrorReply;
    use crate::listener::{ConnectionInfo, Handler, Listener, ListenerConfig, Outcome};

    /// A master that answers a set as a node does for a write in flight when it stopped, and
    /// a delete as one that refused it before proposing (it was stopping).
    struct Stopping;

    impl Handler for Stopping {
        async fn handle(&self, _c: &ConnectionInfo, request: Request) -> Outcome {
            Outcome::new(match request {
                Request::WhoMaster => Ok(Response::WhoMaster(Some(Bytes::from_static(b"n0")))),
                Request::Set { .. } => Err(ErrorReply::new(
                    ErrorCode::NoLongerMaster,
                    "the node stopped while the write was in flight",
                )),
                _ => Err(ErrorReply::going_down()),
            })
        }
    }

    #[tokio::test]
    async fn a_write_that_may_have_happened_is_indeterminate_and_one_refused_is_not() {
        let listener = Listener::bind(
            "127.0.0.1:0".parse().unwrap(),
            ListenerConfig::new("t"),
            Arc::new(Stopping),
        )
        .await
        .unwrap();
        let mut config = ClientConfig::new("t").node("n0", listener.local_addr());
        config.retry_delay = Duration::from_millis(1);
        let client = Client::new(config).unwrap();

        let e = client.set("k", "v").await.unwrap_err();
        assert!(
            matches!(&e, Error::Indeterminate { opcode: Opcode::Set, cause } if cause.contains("in flight")),
            "{e:?}"
        );
        assert!(e.is_indeterminate());

        let e = client.delete("k").await.unwrap_err();
        assert!(matches!(e, Error::GoingDown(_)), "{e:?}");
        assert!(!e.is_indeterminate());
        listener.shutdown().await;
    }
}
