//! The async Rust client.
//!
//! A [`Client`] is configured with the cluster id and the nodes' addresses. It finds the master
//! (asking each node `who_master`, then checking that the named node calls itself master, as
//! the Python client does), keeps one connection to it, and follows `NotMaster` answers and
//! broken connections by finding the master again.
//!
//! Retry rule (the invariant this module keeps): a request is retried only when it cannot have
//! been applied twice: reads always; writes only when the node answered `NotMaster` (it refused
//! before proposing) or when the request never fully left this process. A write whose request
//! was sent and whose reply never came is reported as [`Error::Indeterminate`], never retried.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use rarakoon_client::listener::{Listener, ListenerConfig};
//! use rarakoon_client::memory::MemoryHandler;
//! use rarakoon_client::{Client, ClientConfig, Consistency, Sequence};
//!
//! // An in-memory node on a free loopback port.
//! let handler = Arc::new(MemoryHandler::master("arakoon", "node_0"));
//! let listener =
//!     Listener::bind("127.0.0.1:0".parse()?, ListenerConfig::new("arakoon"), handler).await?;
//!
//! let client = Client::new(ClientConfig::new("arakoon").node("node_0", listener.local_addr()))?;
//! client.set("user/1", "alice").await?;
//! assert_eq!(client.get("user/1").await?, "alice");
//!
//! client
//!     .sequence(Sequence::new().assert_exists("user/1").set("user/2", "bob").delete("user/1"))
//!     .await?;
//! assert_eq!(client.prefix_keys("user/", -1).await?, vec!["user/2"]);
//!
//! // Reads at another consistency level share the connection.
//! let dirty = client.with_consistency(Consistency::NoGuarantees);
//! assert!(dirty.exists("user/2").await?);
//!
//! listener.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::stream::ClientStream as Stream;
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

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The cluster id sent in the prologue.
    pub cluster_id: Bytes,
    /// The nodes: name → client address.
    pub nodes: BTreeMap<String, SocketAddr>,
    /// Free text sent with PING.
    pub client_id: Bytes,
    /// Time allowed to open a connection (and send the prologue).
    pub connect_timeout: Duration,
    /// Time allowed for one request and its reply.
    pub request_timeout: Duration,
    /// How often a request is tried in all (finding the master counts per attempt).
    pub max_attempts: usize,
    /// Pause between attempts when no master could be found.
    pub retry_delay: Duration,
    /// Bounds on replies (a `range_entries` of a big store can be large).
    pub limits: Limits,
    /// Consistency of reads made through [`Client`] (see [`Client::with_consistency`]).
    pub consistency: Consistency,
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
    /// Defaults: 5 s connect, 30 s per request, 3 attempts 200 ms apart, replies up to
    /// 256 MiB, consistent reads. Add nodes with [`ClientConfig::node`].
    pub fn new(cluster_id: impl Into<Bytes>) -> Self {
        ClientConfig {
            cluster_id: cluster_id.into(),
            nodes: BTreeMap::new(),
            client_id: Bytes::from_static(b"rarakoon-client"),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_attempts: 3,
            retry_delay: Duration::from_millis(200),
            limits: Limits {
                max_frame_bytes: 256 * 1024 * 1024,
                ..Limits::default()
            },
            consistency: Consistency::Consistent,
            tls: None,
        }
    }

    /// Adds a node.
    pub fn node(mut self, name: impl Into<String>, addr: SocketAddr) -> Self {
        self.nodes.insert(name.into(), addr);
        self
    }
}

/// A builder for the updates of a sequence (SEQUENCE / SYNCED_SEQUENCE), run atomically: if
/// one update fails, none is applied and the call fails with that update's error.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use std::sync::Arc;
/// # use rarakoon_client::listener::{Listener, ListenerConfig};
/// # use rarakoon_client::memory::MemoryHandler;
/// use rarakoon_client::{Client, ClientConfig, Error, Sequence};
/// # let handler = Arc::new(MemoryHandler::master("arakoon", "node_0"));
/// # let listener =
/// #     Listener::bind("127.0.0.1:0".parse()?, ListenerConfig::new("arakoon"), handler).await?;
/// # let client = Client::new(ClientConfig::new("arakoon").node("node_0", listener.local_addr()))?;
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
/// # listener.shutdown().await;
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

struct Inner {
    config: ClientConfig,
    /// With TLS, one configuration per node (its verifier expects that node's name).
    tls: BTreeMap<String, Arc<rarakoon_tls::rustls::ClientConfig>>,
    /// The connection to the master, if one is open. One request at a time uses it.
    master: tokio::sync::Mutex<Option<Connection>>,
}

/// An Arakoon client. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    consistency: Consistency,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("cluster_id", &self.inner.config.cluster_id)
            .field("nodes", &self.inner.config.nodes)
            .field("consistency", &self.consistency)
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

impl Client {
    /// A client for the configured cluster. Connects lazily, on the first request.
    pub fn new(config: ClientConfig) -> Result<Client, Error> {
        if config.nodes.is_empty() {
            return Err(Error::Config("no nodes configured".into()));
        }
        if config.max_attempts == 0 {
            return Err(Error::Config("max_attempts must be at least 1".into()));
        }
        let consistency = config.consistency;
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
        Ok(Client {
            inner: Arc::new(Inner {
                config,
                tls,
                master: tokio::sync::Mutex::new(None),
            }),
            consistency,
        })
    }

    /// A client sharing this one's connection whose reads use `consistency`.
    pub fn with_consistency(&self, consistency: Consistency) -> Client {
        Client {
            inner: self.inner.clone(),
            consistency,
        }
    }

    /// The consistency this client's reads use.
    pub fn consistency(&self) -> Consistency {
        self.consistency
    }

    /// Finds the master: asks each node, then confirms with the named master itself.
    async fn connect_master(&self) -> Result<Connection, Error> {
        let config = &self.inner.config;
        let mut last_error = String::from("no node answered");
        for (name, addr) in &config.nodes {
            let tls = self.inner.tls.get(name);
            let mut connection = match Connection::open(name, *addr, config, tls).await {
                Ok(c) => c,
                Err(e) => {
                    last_error = e.to_string();
                    continue;
                }
            };
            let master = match connection.who_master(config.request_timeout).await {
                Ok(Some(master)) => master,
                Ok(None) => {
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
                return Ok(connection);
            }
            let master_name = String::from_utf8_lossy(&master).into_owned();
            let Some(master_addr) = config.nodes.get(&master_name) else {
                last_error = format!("node {name} names master {master_name:?}, not configured");
                continue;
            };
            let tls = self.inner.tls.get(&master_name);
            match Connection::open(&master_name, *master_addr, config, tls).await {
                Ok(mut c) => match c.who_master(config.request_timeout).await {
                    Ok(Some(m)) if m == master => {
                        debug!(node = %master_name, "connected to master");
                        return Ok(c);
                    }
                    Ok(_) => last_error = format!("{master_name} does not confirm it is master"),
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

    /// Sends any request to the master and returns its success answer; error frames become
    /// [`Error`] variants. This is the one place the retry rule is applied.
    pub async fn request(&self, request: Request) -> Result<Response, Error> {
        let config = &self.inner.config;
        let opcode = request.opcode();
        let is_write = opcode.is_write();
        let mut last: Option<Error> = None;
        for attempt in 1..=config.max_attempts {
            if attempt > 1 {
                tokio::time::sleep(config.retry_delay).await;
            }
            let mut guard = self.inner.master.lock().await;
            if guard.is_none() {
                match self.connect_master().await {
                    Ok(c) => *guard = Some(c),
                    Err(e) => {
                        last = Some(e);
                        continue;
                    }
                }
            }
            let Some(connection) = guard.as_mut() else {
                continue;
            };
            match connection.call(&request, config.request_timeout).await {
                Ok(Ok(response)) => {
                    if matches!(
                        opcode,
                        Opcode::UserHook
                            | Opcode::LastEntries
                            | Opcode::LastEntries2
                            | Opcode::LastEntries3
                    ) {
                        // The connection now carries a stream this client does not speak.
                        *guard = None;
                    }
                    return Ok(response);
                }
                Ok(Err(reply)) => {
                    // Keep the connection only after the errors every server keeps it for;
                    // after any other error the server may have closed it (an oversized
                    // request, for one), and a dead connection would make the next write's
                    // outcome look unknown.
                    if !matches!(
                        reply.code,
                        ErrorCode::NotFound
                            | ErrorCode::AssertionFailed
                            | ErrorCode::InconsistentRead
                    ) {
                        *guard = None;
                    }
                    match reply.code {
                        // Refused before proposing: safe to retry anywhere.
                        ErrorCode::NotMaster => {
                            *guard = None;
                            last = Some(reply.into());
                        }
                        ErrorCode::NoLongerMaster if is_write => {
                            return Err(Error::Indeterminate {
                                opcode,
                                cause: Error::from(reply).to_string(),
                            });
                        }
                        _ => return Err(reply.into()),
                    }
                }
                Err(CallFailure::NotSent(e)) => {
                    *guard = None;
                    last = Some(e);
                }
                Err(CallFailure::Sent(e)) => {
                    *guard = None;
                    if is_write {
                        return Err(Error::Indeterminate {
                            opcode,
                            cause: e.to_string(),
                        });
                    }
                    last = Some(e);
                }
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

    // ---- client operations ---------------------------------------------------------------

    /// PING: the node's version string (`"Arakoon 1.9.25"`).
    pub async fn ping(&self) -> Result<Bytes, Error> {
        let config = &self.inner.config;
        expect!(self, Request::Ping {
            client_id: config.client_id.clone(),
            cluster_id: config.cluster_id.clone(),
        }, Response::Ping(v) => v)
    }

    /// WHO_MASTER, as the current connection's node sees it.
    pub async fn who_master(&self) -> Result<Option<Bytes>, Error> {
        expect!(self, Request::WhoMaster, Response::WhoMaster(m) => m)
    }

    /// EXISTS.
    pub async fn exists(&self, key: impl Into<Bytes>) -> Result<bool, Error> {
        expect!(self, Request::Exists { consistency: self.consistency, key: key.into() },
            Response::Exists(b) => b)
    }

    /// GET; a missing key is [`Error::NotFound`].
    pub async fn get(&self, key: impl Into<Bytes>) -> Result<Bytes, Error> {
        expect!(self, Request::Get { consistency: self.consistency, key: key.into() },
            Response::Get(v) => v)
    }

    /// GET, with a missing key as `None`.
    pub async fn get_option(&self, key: impl Into<Bytes>) -> Result<Option<Bytes>, Error> {
        match self.get(key).await {
            Ok(v) => Ok(Some(v)),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// SET.
    pub async fn set(&self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<(), Error> {
        expect!(self, Request::Set { key: key.into(), value: value.into() }, Response::Set => ())
    }

    /// DELETE; a missing key is [`Error::NotFound`] with the key as message.
    pub async fn delete(&self, key: impl Into<Bytes>) -> Result<(), Error> {
        expect!(self, Request::Delete { key: key.into() }, Response::Delete => ())
    }

    /// CONFIRM: set unless the value is already there.
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
    pub async fn replace(
        &self,
        key: impl Into<Bytes>,
        wanted: Option<impl Into<Bytes>>,
    ) -> Result<Option<Bytes>, Error> {
        expect!(self, Request::Replace { key: key.into(), wanted: opt(wanted) },
            Response::Replace(v) => v)
    }

    /// SEQUENCE: runs the updates atomically.
    pub async fn sequence(&self, sequence: Sequence) -> Result<(), Error> {
        expect!(self, Request::Sequence(sequence.into_updates()), Response::Sequence => ())
    }

    /// SYNCED_SEQUENCE: as [`Client::sequence`], with the log synced before the answer.
    pub async fn synced_sequence(&self, sequence: Sequence) -> Result<(), Error> {
        expect!(self, Request::SyncedSequence(sequence.into_updates()),
            Response::SyncedSequence => ())
    }

    /// MULTI_GET: the values of `keys`, in the same order; a missing key fails the call.
    pub async fn multi_get(
        &self,
        keys: impl IntoIterator<Item = impl Into<Bytes>>,
    ) -> Result<Vec<Bytes>, Error> {
        let keys = keys.into_iter().map(Into::into).collect();
        expect!(self, Request::MultiGet { consistency: self.consistency, keys },
            Response::MultiGet(v) => v)
    }

    /// MULTI_GET_OPTION: the values of `keys` (None if absent), in the same order.
    pub async fn multi_get_option(
        &self,
        keys: impl IntoIterator<Item = impl Into<Bytes>>,
    ) -> Result<Vec<Option<Bytes>>, Error> {
        let keys = keys.into_iter().map(Into::into).collect();
        expect!(self, Request::MultiGetOption { consistency: self.consistency, keys },
            Response::MultiGetOption(v) => v)
    }

    /// ASSERT: `key` holds `expected` (None = is absent), else [`Error::AssertionFailed`].
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
    pub async fn assert_exists(&self, key: impl Into<Bytes>) -> Result<(), Error> {
        expect!(self, Request::AssertExists { consistency: self.consistency, key: key.into() },
            Response::AssertExists => ())
    }

    /// DELETE_PREFIX: returns how many keys were deleted.
    pub async fn delete_prefix(&self, prefix: impl Into<Bytes>) -> Result<i32, Error> {
        expect!(self, Request::DeletePrefix { prefix: prefix.into() },
            Response::DeletePrefix(n) => n)
    }

    /// USER_FUNCTION.
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
    pub async fn user_hook(&self, name: impl Into<Bytes>) -> Result<(), Error> {
        expect!(self, Request::UserHook { consistency: self.consistency, name: name.into() },
            Response::UserHook => ())
    }

    /// EXPECT_PROGRESS_POSSIBLE.
    pub async fn expect_progress_possible(&self) -> Result<bool, Error> {
        expect!(self, Request::ExpectProgressPossible, Response::ExpectProgressPossible(b) => b)
    }

    /// STATISTICS: the `arakoon_stats` tree.
    pub async fn statistics(&self) -> Result<NamedValue, Error> {
        expect!(self, Request::Statistics, Response::Statistics(s) => s)
    }

    /// GET_KEY_COUNT.
    pub async fn get_key_count(&self) -> Result<i64, Error> {
        expect!(self, Request::GetKeyCount, Response::GetKeyCount(n) => n)
    }

    /// VERSION.
    pub async fn version(&self) -> Result<VersionInfo, Error> {
        expect!(self, Request::Version, Response::Version(v) => v)
    }

    /// CURRENT_STATE: the node's consensus state, as text.
    pub async fn current_state(&self) -> Result<Bytes, Error> {
        expect!(self, Request::CurrentState, Response::CurrentState(s) => s)
    }

    /// NOP: commits a no-op.
    pub async fn nop(&self) -> Result<(), Error> {
        expect!(self, Request::Nop, Response::Nop => ())
    }

    /// GET_TXID: the node's last applied index, as a consistency to pass to later reads.
    pub async fn get_txid(&self) -> Result<Consistency, Error> {
        expect!(self, Request::GetTxid, Response::GetTxid(c) => c)
    }

    // ---- admin operations ------------------------------------------------------------------

    /// COLLAPSE_TLOGS: returns one opaque progress value per step.
    pub async fn collapse_tlogs(&self, tlogs_to_keep: i32) -> Result<Vec<i64>, Error> {
        expect!(self, Request::CollapseTlogs { tlogs_to_keep }, Response::CollapseTlogs(s) => s)
    }

    /// GET_DB: the store image (refused by a master).
    pub async fn get_db(&self) -> Result<Bytes, Error> {
        expect!(self, Request::GetDb, Response::GetDb(image) => image)
    }

    /// OPT_DB.
    pub async fn optimize_db(&self) -> Result<(), Error> {
        expect!(self, Request::OptimizeDb, Response::OptimizeDb => ())
    }

    /// DEFRAG_DB.
    pub async fn defrag_db(&self) -> Result<(), Error> {
        expect!(self, Request::DefragDb, Response::DefragDb => ())
    }

    /// DROP_MASTER.
    pub async fn drop_master(&self) -> Result<(), Error> {
        expect!(self, Request::DropMaster, Response::DropMaster => ())
    }

    /// FLUSH_STORE.
    pub async fn flush_store(&self) -> Result<(), Error> {
        expect!(self, Request::FlushStore, Response::FlushStore => ())
    }

    /// COPY_DB_TO_HEAD.
    pub async fn copy_db_to_head(&self, tlogs_to_keep: i32) -> Result<(), Error> {
        expect!(self, Request::CopyDbToHead { tlogs_to_keep }, Response::CopyDbToHead => ())
    }

    // ---- nursery (legacy sharding) -------------------------------------------------------

    /// SET_INTERVAL.
    pub async fn set_interval(&self, interval: Interval) -> Result<(), Error> {
        expect!(self, Request::SetInterval(interval), Response::SetInterval => ())
    }

    /// GET_INTERVAL.
    pub async fn get_interval(&self) -> Result<Interval, Error> {
        expect!(self, Request::GetInterval, Response::GetInterval(i) => i)
    }

    /// SET_ROUTING.
    pub async fn set_routing(&self, routing: Routing) -> Result<(), Error> {
        expect!(self, Request::SetRouting(routing), Response::SetRouting => ())
    }

    /// GET_ROUTING.
    pub async fn get_routing(&self) -> Result<Routing, Error> {
        expect!(self, Request::GetRouting, Response::GetRouting(r) => r)
    }

    /// SET_ROUTING_DELTA.
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
    pub async fn set_nursery_cfg(
        &self,
        cluster_id: impl Into<Bytes>,
        cfg: ClientCfg,
    ) -> Result<(), Error> {
        expect!(self, Request::SetNurseryCfg { cluster_id: cluster_id.into(), cfg },
            Response::SetNurseryCfg => ())
    }

    /// GET_NURSERY_CFG.
    pub async fn get_nursery_cfg(&self) -> Result<NurseryCfg, Error> {
        expect!(self, Request::GetNurseryCfg, Response::GetNurseryCfg(c) => c)
    }

    /// GET_FRINGE.
    pub async fn get_fringe(
        &self,
        boundary: Option<impl Into<Bytes>>,
        direction: i32,
    ) -> Result<Vec<Entry>, Error> {
        expect!(self, Request::GetFringe { boundary: opt(boundary), direction },
            Response::GetFringe(e) => e)
    }

    /// MIGRATE_RANGE.
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
