//! The cluster configuration: one TOML file shared by every node of a cluster.
//!
//! The file carries Arakoon's options over (cluster id, master mode, preferred masters, lease
//! period, learners, witnesses, the quorum override, and per node its addresses, home
//! directory, log and size limits). Parsing
//! is strict: unknown fields are refused (`deny_unknown_fields`), and every error names the
//! file, the field and what is wrong, so an operator can fix it without reading code.
//!
//! Invariants kept by [`ClusterConfig::from_toml_str`] (nothing else builds a validated config):
//! - node names are unique and non-empty; messaging addresses and client endpoints are unique;
//! - learners, witnesses, the preferred masters and the forced master name configured nodes;
//!   no node is both a learner and a witness; no master (forced or preferred) is a learner or
//!   a witness; at least one node votes and holds data (neither learner nor witness);
//! - `quorum`, when set, lies between 1 and the number of voting nodes (voters and witnesses);
//! - `preferred_master` (one name) and `preferred_masters` (a list) are not both set;
//! - `max_value_size < max_request_size`, and every size and period lies in a sane range.
//!
//! - with `[cluster.tls]`, every node has its `tls` certificate and key (mutual TLS between
//!   nodes is all or nothing), `version` is "1.2" or "1.3", client certificates are required
//!   for `admin_names`, and without it no node has one (see [`TlsSection`]).
//!
//! - `[[cluster.user_functions]]`: at most 16, names unique and printable, `sha256` 64 hex
//!   digits, fuel and memory pages within their bounds (the module file itself is read and
//!   checked at start-up, `crate::wasm_functions`).
//!
//! Relative `home_dir` paths (and TLS file paths, and user-function modules) are resolved
//! against the directory of the config file, so a generated config (see `rarakoon-bin local`)
//! can be moved together with its data.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use crate::client_limits::ClientLimits;

/// Defaults, chosen for a production database (and repeated in `config/example.toml`).
pub mod defaults {
    /// Arakoon's default lease period.
    pub const LEASE_PERIOD_SECS: f64 = 10.0;
    /// Upper bound of client updates batched into one Paxos value.
    pub const MAX_BATCH_UPDATES: u32 = 1024;
    /// Upper bound of the encoded bytes batched into one Paxos value.
    pub const MAX_BATCH_BYTES: u64 = 4 * 1024 * 1024;
    /// A WAL segment is closed (and archived) once it grows past this size.
    pub const SEGMENT_SIZE_BYTES: u64 = 64 * 1024 * 1024;
    /// The Collapser writes a new head snapshot once this many entries follow the last one.
    pub const COLLAPSE_THRESHOLD_ENTRIES: u64 = 500_000;
    /// Completed WAL segments kept after a collapse besides the open one (for peers that catch
    /// up).
    pub const SEGMENTS_TO_KEEP: u32 = 4;
    /// Arakoon's `max_value_size` (a value must be strictly smaller).
    pub const MAX_VALUE_SIZE: u64 = 8 * 1024 * 1024;
    /// Arakoon's `max_buffer_size`: the largest request or update accepted.
    pub const MAX_REQUEST_SIZE: u64 = 32 * 1024 * 1024;
    /// Client connections accepted at once; more are refused with `E_MAX_CONNECTIONS`.
    pub const MAX_CLIENT_CONNECTIONS: u32 = 1024;
    /// Largest head snapshot accepted from a peer (the transfer is refused beyond it).
    pub const MAX_SNAPSHOT_BYTES: u64 = 64 * 1024 * 1024 * 1024;
    /// Fuel one user-function call may burn (about 10 ms of interpretation).
    pub const USER_FUNCTION_FUEL: u64 = 10_000_000;
    /// Linear memory of one user-function call, in 64 KiB pages (1 MiB).
    pub const USER_FUNCTION_MEMORY_PAGES: u32 = 16;
}

/// Bounds used by validation (outside them a config is refused, not silently clamped).
pub(crate) mod limits {
    pub const MIN_LEASE_SECS: f64 = 0.2;
    pub const MAX_LEASE_SECS: f64 = 600.0;
    pub const MIN_SEGMENT_SIZE: u64 = 64 * 1024;
    pub const MAX_SEGMENT_SIZE: u64 = 4 * 1024 * 1024 * 1024;
    pub const MAX_REQUEST_SIZE: u64 = 1024 * 1024 * 1024;
    pub const MAX_BATCH_BYTES: u64 = 1024 * 1024 * 1024;
    pub const MAX_NAME_LEN: usize = 128;
    pub const MIN_SNAPSHOT_BYTES: u64 = 1024 * 1024;
    pub const MAX_SNAPSHOT_BYTES: u64 = 16 * 1024 * 1024 * 1024 * 1024;
    pub const MAX_NODES: usize = 16;
    /// Keeps the handshake's membership view (names and identities) within its 8 KiB bound.
    pub const MAX_USER_FUNCTIONS: usize = 16;
    pub const MAX_USER_FUNCTION_FUEL: u64 = 1_000_000_000_000;
    /// 1 GiB.
    pub const MAX_USER_FUNCTION_MEMORY_PAGES: u32 = 16 * 1024;
}

/// A config error; every variant names the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read config file {}: {source}", file.display())]
    Read {
        /// The config file.
        file: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a field has the wrong type, or a field is unknown.
    #[error("config file {}: {message}", file.display())]
    Parse {
        /// The config file.
        file: PathBuf,
        /// The TOML parser's message (it names the line, column and field).
        message: String,
    },
    /// The file parsed, but a field's value is not acceptable.
    #[error("config file {}: field `{field}` {problem}", file.display())]
    Invalid {
        /// The config file.
        file: PathBuf,
        /// The field, as a TOML path (e.g. `nodes[1].client_port`).
        field: String,
        /// What is wrong and what would be accepted.
        problem: String,
    },
    /// `--node NAME` names no node of the config.
    #[error("config file {} has no node named `{name}` (its nodes are: {known})", file.display())]
    UnknownNode {
        /// The config file.
        file: PathBuf,
        /// The name asked for.
        name: String,
        /// The configured names, comma separated.
        known: String,
    },
}

/// How the master is chosen (Arakoon's `master` / `readonly` options).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MasterMode {
    /// The nodes elect a master through Paxos (the default).
    #[default]
    Elected,
    /// No master is elected; every write is refused with Arakoon's `E_READ_ONLY`.
    Readonly,
    /// `cluster.forced_master` is always the master (Arakoon's `master = name`).
    Forced,
}

impl fmt::Display for MasterMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MasterMode::Elected => "elected",
            MasterMode::Readonly => "readonly",
            MasterMode::Forced => "forced",
        })
    }
}

/// How completed WAL segments are archived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compressor {
    /// zstd-compress completed segments (the default).
    #[default]
    Zstd,
    /// Keep completed segments as they are.
    None,
}

/// The `[cluster]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// The cluster id; clients must name it in their prologue.
    pub id: String,
    /// How the master is chosen.
    #[serde(default)]
    pub master_mode: MasterMode,
    /// The master when `master_mode = "forced"` (required then, refused otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced_master: Option<String>,
    /// A node that takes the master role whenever it is up (Arakoon's `preferred_master`);
    /// the same as a one-name `preferred_masters`, and refused together with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_master: Option<String>,
    /// Nodes that take the master role whenever one is up, the first reachable one winning
    /// (Arakoon's `preferred_masters`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferred_masters: Vec<String>,
    /// Nodes that vote and keep the log but never apply it, serve clients or become master.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub witnesses: Vec<String>,
    /// Promises or accepts needed to decide (Arakoon's `quorum`); default a majority of the
    /// voters and witnesses. Below a majority two disjoint groups may both decide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<u32>,
    /// The master lease period in seconds (fractions allowed, e.g. `0.5`).
    #[serde(default = "default_lease")]
    pub lease_period_secs: f64,
    /// Bounds on what peers may make this node hold or do (`[cluster.messaging]`).
    #[serde(default, skip_serializing_if = "MessagingLimits::is_default")]
    pub messaging: MessagingLimits,
    /// Timeouts and memory bounds of the client listener (`[cluster.clients]`).
    #[serde(default, skip_serializing_if = "ClientLimits::is_default")]
    pub clients: ClientLimits,
    /// Names of non-voting nodes: they receive the log but never vote or become master.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub learners: Vec<String>,
    /// Most client updates batched into one Paxos value.
    #[serde(default = "default_batch_updates")]
    pub max_batch_updates: u32,
    /// Most encoded bytes batched into one Paxos value.
    #[serde(default = "default_batch_bytes")]
    pub max_batch_bytes: u64,
    /// TLS (`[cluster.tls]`); plain TCP when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSection>,
    /// WebAssembly user functions loaded at start-up (`[[cluster.user_functions]]`, ADR 0170).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_functions: Vec<UserFunctionConfig>,
}

/// One `[[cluster.user_functions]]` entry: a WebAssembly module every node loads at start-up
/// and serves under `name` (ADR 0170, `crate::wasm_functions`). The file's SHA-256 must equal
/// `sha256` (checked at start-up), and nodes whose functions differ refuse each other.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserFunctionConfig {
    /// The name clients call (printable ASCII without spaces or `=`).
    pub name: String,
    /// The `.wasm` file (relative paths are resolved against the config file's directory).
    pub module: PathBuf,
    /// The file's SHA-256, 64 hex digits (`sha256sum FILE`).
    pub sha256: String,
    /// Fuel one call may burn (about one unit per instruction, plus host calls); beyond it
    /// the call fails.
    #[serde(default = "default_user_function_fuel")]
    pub fuel: u64,
    /// Linear memory one call may use, in 64 KiB WebAssembly pages; growing beyond it fails
    /// the call, and a module that starts with more is refused at start-up.
    #[serde(default = "default_user_function_memory_pages")]
    pub memory_pages: u32,
}

fn default_user_function_fuel() -> u64 {
    defaults::USER_FUNCTION_FUEL
}
fn default_user_function_memory_pages() -> u32 {
    defaults::USER_FUNCTION_MEMORY_PAGES
}

impl UserFunctionConfig {
    /// `Err((field, problem))` for an unusable entry (the file itself is read at start-up).
    fn validate(&self) -> Result<(), (&'static str, String)> {
        let name = &self.name;
        if name.is_empty() || name.len() > limits::MAX_NAME_LEN {
            return Err((
                "name",
                format!("must be 1 to {} bytes long", limits::MAX_NAME_LEN),
            ));
        }
        if !name.bytes().all(|b| b.is_ascii_graphic() && b != b'=') {
            return Err((
                "name",
                format!("`{name}` may hold only printable ASCII without spaces or `=`"),
            ));
        }
        if self.module.as_os_str().is_empty() {
            return Err(("module", "is empty; give the path of a .wasm file".into()));
        }
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err((
                "sha256",
                format!(
                    "is `{}`; give the module's SHA-256 as 64 hex digits (`sha256sum {}`)",
                    self.sha256,
                    self.module.display()
                ),
            ));
        }
        if !(1..=limits::MAX_USER_FUNCTION_FUEL).contains(&self.fuel) {
            return Err((
                "fuel",
                format!(
                    "is {}; it must lie between 1 and {}",
                    self.fuel,
                    limits::MAX_USER_FUNCTION_FUEL
                ),
            ));
        }
        if !(1..=limits::MAX_USER_FUNCTION_MEMORY_PAGES).contains(&self.memory_pages) {
            return Err((
                "memory_pages",
                format!(
                    "is {}; it must lie between 1 and {} pages of 64 KiB",
                    self.memory_pages,
                    limits::MAX_USER_FUNCTION_MEMORY_PAGES
                ),
            ));
        }
        Ok(())
    }
}

/// `[cluster.tls]`: Arakoon's TLS settings (`tls_ca_cert`, `tls_service`,
/// `tls_service_validate_peer`, `tls_version`), plus admin names. Present means: every link
/// between nodes is mutual TLS, each node presenting the certificate of its `[nodes.tls]`,
/// which must name it (CN or DNS SAN) and be signed by `ca_cert` (ADR 0145).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// The cluster CA certificate (PEM) that signs every node's and client's certificate
    /// (Arakoon's `tls_ca_cert`).
    pub ca_cert: PathBuf,
    /// TLS on the client port as well (Arakoon's `tls_service`).
    #[serde(default)]
    pub service: bool,
    /// Clients must present a certificate signed by `ca_cert` (Arakoon's
    /// `tls_service_validate_peer`; needs `service`).
    #[serde(default)]
    pub service_validate_peer: bool,
    /// The oldest TLS version accepted: "1.2" (1.2 and 1.3, the default) or "1.3"
    /// (Arakoon's `tls_version`; its "1.0" and "1.1" are refused).
    #[serde(default = "default_tls_version")]
    pub version: String,
    /// When non-empty, admin operations (drop_master, collapse, copy_db_to_head, flush_store,
    /// optimize_db, defrag_db, get_db) are served only to clients whose certificate carries
    /// one of these names (needs `service_validate_peer`). Beyond Arakoon.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admin_names: Vec<String>,
}

fn default_tls_version() -> String {
    "1.2".to_owned()
}

/// A node's `tls` entry (Arakoon's per-node `tls_cert` and `tls_key`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeTls {
    /// The node's certificate chain (PEM); the certificate must name the node.
    pub cert: PathBuf,
    /// The certificate's private key (PEM).
    pub key: PathBuf,
}

/// `[cluster.messaging]`: bounds on the node-to-node listener, the same on every node (a
/// link's keepalive interval is derived from the idle timeout, so both ends must agree).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagingLimits {
    /// An established peer link that sends nothing for this long is closed and logged. Every
    /// link sends a keepalive after a sixth of it without traffic (5 s by default), besides the
    /// master's lease renewals every half lease period and retransmissions (at most every
    /// 50 ms) on the links that carry them, so a healthy idle cluster never trips it; only a
    /// link whose keepalives stop for six intervals in a row (a stalled or vanished peer, or
    /// a stranger) does. The dead-peer timeout (10 s) usually notices a vanished host first.
    #[serde(default = "default_peer_idle_timeout")]
    pub idle_timeout_secs: f64,
    /// Bytes of peer messages held at once between the socket and the driver (the messenger's
    /// inbox plus the driver's queue); readers wait beyond it, pushing back through TCP.
    #[serde(default = "default_peer_inbox_bytes")]
    pub inbox_bytes: u64,
    /// Catch-up and snapshot requests served per second and peer (each kind its own bucket);
    /// more are dropped and counted. A catching-up peer asks once per answer, far below it.
    #[serde(default = "default_peer_requests_per_sec")]
    pub requests_per_sec: f64,
    /// Requests a peer may send at once after a quiet spell (the token bucket's size).
    #[serde(default = "default_peer_request_burst")]
    pub request_burst: u32,
}

fn default_peer_idle_timeout() -> f64 {
    30.0
}
fn default_peer_inbox_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_peer_requests_per_sec() -> f64 {
    1000.0
}
fn default_peer_request_burst() -> u32 {
    64
}

impl Default for MessagingLimits {
    fn default() -> Self {
        MessagingLimits {
            idle_timeout_secs: default_peer_idle_timeout(),
            inbox_bytes: default_peer_inbox_bytes(),
            requests_per_sec: default_peer_requests_per_sec(),
            request_burst: default_peer_request_burst(),
        }
    }
}

impl MessagingLimits {
    fn is_default(&self) -> bool {
        *self == MessagingLimits::default()
    }

    /// The idle timeout as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.idle_timeout_secs)
    }

    /// The keepalive interval every link uses: a sixth of the idle timeout.
    pub fn keepalive_interval(&self) -> Duration {
        self.idle_timeout() / 6
    }

    /// `Err((field, problem))` for a value outside its range.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(1.0..=3600.0).contains(&self.idle_timeout_secs) {
            return Err((
                "idle_timeout_secs",
                format!(
                    "is {}; it must lie between 1 and 3600 seconds",
                    self.idle_timeout_secs
                ),
            ));
        }
        if !(1024 * 1024..=4 * 1024 * 1024 * 1024).contains(&self.inbox_bytes) {
            return Err((
                "inbox_bytes",
                format!(
                    "is {}; it must lie between 1 MiB and 4 GiB",
                    self.inbox_bytes
                ),
            ));
        }
        if !(1.0..=1_000_000.0).contains(&self.requests_per_sec) {
            return Err((
                "requests_per_sec",
                format!(
                    "is {}; it must lie between 1 and 1000000",
                    self.requests_per_sec
                ),
            ));
        }
        if !(1..=1_000_000).contains(&self.request_burst) {
            return Err((
                "request_burst",
                format!(
                    "is {}; it must lie between 1 and 1000000",
                    self.request_burst
                ),
            ));
        }
        Ok(())
    }
}

/// One `[[nodes]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's name, unique in the cluster.
    pub name: String,
    /// Messaging (node-to-node) addresses; the first is the one listened on and dialled.
    pub addresses: Vec<SocketAddr>,
    /// The IP address of the client listener (default: the first messaging address's IP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_address: Option<IpAddr>,
    /// The port of the Arakoon client protocol listener.
    pub client_port: u16,
    /// The node's data directory (WAL, head snapshot, lock file).
    pub home_dir: PathBuf,
    /// How completed WAL segments are archived.
    #[serde(default)]
    pub compressor: Compressor,
    /// Size at which a WAL segment is closed.
    #[serde(default = "default_segment_size")]
    pub segment_size_bytes: u64,
    /// WAL entries past the head snapshot that trigger the Collapser.
    #[serde(default = "default_collapse_threshold")]
    pub collapse_threshold_entries: u64,
    /// Completed segments the Collapser always keeps besides the open one being written
    /// (`admin collapse --keep N` overrides it for one collapse; ADR 0165).
    #[serde(default = "default_segments_to_keep")]
    pub segments_to_keep: u32,
    /// A value must be strictly smaller than this (Arakoon's `max_value_size`).
    #[serde(default = "default_max_value_size")]
    pub max_value_size: u64,
    /// The largest request or update accepted (Arakoon's `max_buffer_size`).
    #[serde(default = "default_max_request_size")]
    pub max_request_size: u64,
    /// Client connections accepted at once.
    #[serde(default = "default_max_client_connections")]
    pub max_client_connections: u32,
    /// Largest head snapshot this node accepts from a peer when it catches up past pruned log
    /// entries; a peer announcing or sending more is refused (and asked again later).
    #[serde(default = "default_max_snapshot_bytes")]
    pub max_snapshot_bytes: u64,
    /// fsync the WAL before acknowledging. Off only for throw-away data: a crash then loses
    /// acknowledged writes, and the node logs a loud warning at start.
    #[serde(default = "default_fsync")]
    pub fsync: bool,
    // --- metrics endpoint ---
    /// Where the node serves `GET /metrics` and `GET /health` over HTTP (off when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_address: Option<SocketAddr>,
    // --- TLS ---
    /// The node's certificate and key, required with `[cluster.tls]` (`[nodes.tls]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<NodeTls>,
}

fn default_lease() -> f64 {
    defaults::LEASE_PERIOD_SECS
}
fn default_batch_updates() -> u32 {
    defaults::MAX_BATCH_UPDATES
}
fn default_batch_bytes() -> u64 {
    defaults::MAX_BATCH_BYTES
}
fn default_segment_size() -> u64 {
    defaults::SEGMENT_SIZE_BYTES
}
fn default_collapse_threshold() -> u64 {
    defaults::COLLAPSE_THRESHOLD_ENTRIES
}
fn default_segments_to_keep() -> u32 {
    defaults::SEGMENTS_TO_KEEP
}
fn default_max_value_size() -> u64 {
    defaults::MAX_VALUE_SIZE
}
fn default_max_request_size() -> u64 {
    defaults::MAX_REQUEST_SIZE
}
fn default_max_client_connections() -> u32 {
    defaults::MAX_CLIENT_CONNECTIONS
}
fn default_max_snapshot_bytes() -> u64 {
    defaults::MAX_SNAPSHOT_BYTES
}
fn default_fsync() -> bool {
    true
}

impl NodeConfig {
    /// A node with production defaults for everything but its identity and endpoints.
    pub fn new(name: &str, address: SocketAddr, client_port: u16, home_dir: PathBuf) -> Self {
        NodeConfig {
            name: name.to_owned(),
            addresses: vec![address],
            client_address: None,
            client_port,
            home_dir,
            compressor: Compressor::default(),
            segment_size_bytes: defaults::SEGMENT_SIZE_BYTES,
            collapse_threshold_entries: defaults::COLLAPSE_THRESHOLD_ENTRIES,
            segments_to_keep: defaults::SEGMENTS_TO_KEEP,
            max_value_size: defaults::MAX_VALUE_SIZE,
            max_request_size: defaults::MAX_REQUEST_SIZE,
            max_client_connections: defaults::MAX_CLIENT_CONNECTIONS,
            max_snapshot_bytes: defaults::MAX_SNAPSHOT_BYTES,
            fsync: true,
            metrics_address: None,
            tls: None,
        }
    }

    /// The messaging address this node listens on (the first configured one).
    pub fn messaging_address(&self) -> SocketAddr {
        // Validation guarantees at least one address; the fallback is never used.
        self.addresses
            .first()
            .copied()
            .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))
    }

    /// The address of the client listener.
    pub fn client_socket_address(&self) -> SocketAddr {
        let ip = self
            .client_address
            .unwrap_or_else(|| self.messaging_address().ip());
        SocketAddr::new(ip, self.client_port)
    }
}

impl ClusterSection {
    /// A cluster section with production defaults.
    pub fn new(id: &str) -> Self {
        ClusterSection {
            id: id.to_owned(),
            master_mode: MasterMode::Elected,
            forced_master: None,
            preferred_master: None,
            preferred_masters: Vec::new(),
            witnesses: Vec::new(),
            quorum: None,
            lease_period_secs: defaults::LEASE_PERIOD_SECS,
            messaging: MessagingLimits::default(),
            clients: ClientLimits::default(),
            learners: Vec::new(),
            max_batch_updates: defaults::MAX_BATCH_UPDATES,
            max_batch_bytes: defaults::MAX_BATCH_BYTES,
            tls: None,
            user_functions: Vec::new(),
        }
    }
}

/// The whole file: one `[cluster]` section and the `[[nodes]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Cluster-wide settings.
    pub cluster: ClusterSection,
    /// Every node, voters and learners.
    pub nodes: Vec<NodeConfig>,
}

/// Things that are allowed but deserve a loud warning (e.g. `fsync = false`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The field, as a TOML path.
    pub field: String,
    /// Why this is dangerous.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.message)
    }
}

impl ClusterConfig {
    /// `[[cluster.user_functions]]`: each entry valid, at most
    /// [`limits::MAX_USER_FUNCTIONS`], names unique.
    fn validate_user_functions(&self, file: &Path) -> Result<(), ConfigError> {
        let invalid = |field: String, problem: String| ConfigError::Invalid {
            file: file.to_path_buf(),
            field,
            problem,
        };
        let functions = &self.cluster.user_functions;
        if functions.len() > limits::MAX_USER_FUNCTIONS {
            return Err(invalid(
                "cluster.user_functions".into(),
                format!(
                    "has {} entries; at most {} are supported",
                    functions.len(),
                    limits::MAX_USER_FUNCTIONS
                ),
            ));
        }
        let mut names = BTreeSet::new();
        for (i, function) in functions.iter().enumerate() {
            function.validate().map_err(|(field, problem)| {
                invalid(format!("cluster.user_functions[{i}].{field}"), problem)
            })?;
            if !names.insert(function.name.as_str()) {
                return Err(invalid(
                    format!("cluster.user_functions[{i}].name"),
                    format!("`{}` is used by more than one user function", function.name),
                ));
            }
        }
        Ok(())
    }

    /// Reads, parses and validates a config file.
    pub fn load(file: &Path) -> Result<ClusterConfig, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        let base = file.parent().unwrap_or_else(|| Path::new("."));
        Self::from_toml_str(&text, file, base)
    }

    /// Parses and validates config text. `file` is only used in error messages; relative home
    /// directories are resolved against `base_dir`.
    pub fn from_toml_str(
        text: &str,
        file: &Path,
        base_dir: &Path,
    ) -> Result<ClusterConfig, ConfigError> {
        let mut config: ClusterConfig =
            toml::from_str(text).map_err(|e: toml::de::Error| ConfigError::Parse {
                file: file.to_path_buf(),
                message: e.to_string().trim_end().to_owned(),
            })?;
        for node in &mut config.nodes {
            if node.home_dir.is_relative() {
                node.home_dir = base_dir.join(&node.home_dir);
            }
        }
        config.resolve_tls_paths(base_dir);
        for function in &mut config.cluster.user_functions {
            if function.module.is_relative() {
                function.module = base_dir.join(&function.module);
            }
        }
        config.validate(file)?;
        Ok(config)
    }

    /// Renders the config as TOML (used to write generated configs).
    pub fn to_toml_string(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }

    /// The node called `name`.
    pub fn node(&self, name: &str, file: &Path) -> Result<&NodeConfig, ConfigError> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| ConfigError::UnknownNode {
                file: file.to_path_buf(),
                name: name.to_owned(),
                known: self.node_names().collect::<Vec<_>>().join(", "),
            })
    }

    /// Node names in config order.
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|n| n.name.as_str())
    }

    /// Whether `name` is a learner (non-voting node).
    pub fn is_learner(&self, name: &str) -> bool {
        self.cluster.learners.iter().any(|l| l == name)
    }

    /// Whether `name` is a witness (votes, keeps the log, holds no data).
    pub fn is_witness(&self, name: &str) -> bool {
        self.cluster.witnesses.iter().any(|w| w == name)
    }

    /// Names of the voting nodes (voters and witnesses), in config order.
    pub fn voters(&self) -> impl Iterator<Item = &str> {
        self.node_names().filter(|n| !self.is_learner(n))
    }

    /// The preferred masters in order of preference: `preferred_masters`, or the single
    /// `preferred_master` (validation refuses both at once).
    pub fn preferred_masters(&self) -> Vec<&str> {
        match &self.cluster.preferred_master {
            Some(p) => vec![p.as_str()],
            None => self
                .cluster
                .preferred_masters
                .iter()
                .map(String::as_str)
                .collect(),
        }
    }

    /// Promises or accepts needed to decide: the override, or a majority of the voting nodes.
    pub fn quorum_size(&self) -> usize {
        self.cluster
            .quorum
            .map_or(self.voters().count() / 2 + 1, |q| q as usize)
    }

    /// The lease period as a duration.
    pub fn lease_period(&self) -> Duration {
        Duration::from_secs_f64(self.cluster.lease_period_secs)
    }

    /// Allowed-but-dangerous settings, for the node to log loudly at start.
    pub fn warnings(&self) -> Vec<ConfigWarning> {
        let mut out = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if !node.fsync {
                out.push(ConfigWarning {
                    field: format!("nodes[{i}].fsync"),
                    message: format!(
                        "is false: node `{}` acknowledges writes before they are on disk; \
                         a crash or power loss LOSES acknowledged writes",
                        node.name
                    ),
                });
            }
        }
        let voting = self.voters().count();
        if self
            .cluster
            .quorum
            .is_some_and(|q| (q as usize) <= voting / 2)
        {
            out.push(ConfigWarning {
                field: "cluster.quorum".to_owned(),
                message: format!(
                    "is {} of {voting} voting nodes, not a majority: two disjoint groups of \
                     nodes may both decide, and acknowledged writes may be LOST (split brain)",
                    self.quorum_size()
                ),
            });
        }
        out.extend(self.tls_warnings());
        if self.voters().count().is_multiple_of(2) {
            out.push(ConfigWarning {
                field: "nodes".to_owned(),
                message: format!(
                    "there are {} voting nodes; an even number tolerates no more failures than \
                     one node fewer",
                    self.voters().count()
                ),
            });
        }
        out
    }

    fn validate(&self, file: &Path) -> Result<(), ConfigError> {
        let invalid = |field: String, problem: String| ConfigError::Invalid {
            file: file.to_path_buf(),
            field,
            problem,
        };
        let c = &self.cluster;
        check_name(&c.id).map_err(|p| invalid("cluster.id".into(), p))?;
        let lease = c.lease_period_secs;
        if !(limits::MIN_LEASE_SECS..=limits::MAX_LEASE_SECS).contains(&lease) {
            return Err(invalid(
                "cluster.lease_period_secs".into(),
                format!(
                    "is {lease}; it must lie between {} and {} seconds",
                    limits::MIN_LEASE_SECS,
                    limits::MAX_LEASE_SECS
                ),
            ));
        }
        c.messaging
            .validate()
            .map_err(|(field, problem)| invalid(format!("cluster.messaging.{field}"), problem))?;
        c.clients
            .validate()
            .map_err(|(field, problem)| invalid(format!("cluster.clients.{field}"), problem))?;
        self.validate_user_functions(file)?;
        if c.max_batch_updates == 0 {
            return Err(invalid(
                "cluster.max_batch_updates".into(),
                "is 0; it must be at least 1".into(),
            ));
        }
        if c.max_batch_bytes == 0 || c.max_batch_bytes > limits::MAX_BATCH_BYTES {
            return Err(invalid(
                "cluster.max_batch_bytes".into(),
                format!(
                    "is {}; it must lie between 1 and {} bytes",
                    c.max_batch_bytes,
                    limits::MAX_BATCH_BYTES
                ),
            ));
        }
        if self.nodes.is_empty() {
            return Err(invalid(
                "nodes".into(),
                "is empty; configure at least one [[nodes]] entry".into(),
            ));
        }
        if self.nodes.len() > limits::MAX_NODES {
            return Err(invalid(
                "nodes".into(),
                format!(
                    "has {} entries; at most {} are supported",
                    self.nodes.len(),
                    limits::MAX_NODES
                ),
            ));
        }
        let mut names = BTreeSet::new();
        let mut addresses = BTreeSet::new();
        let mut client_endpoints = BTreeSet::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let field = |f: &str| format!("nodes[{i}].{f}");
            check_name(&node.name).map_err(|p| invalid(field("name"), p))?;
            if !names.insert(node.name.as_str()) {
                return Err(invalid(
                    field("name"),
                    format!("`{}` is used by more than one node", node.name),
                ));
            }
            if node.addresses.is_empty() {
                return Err(invalid(
                    field("addresses"),
                    "is empty; give at least one messaging address such as \"10.0.0.1:4010\""
                        .into(),
                ));
            }
            for a in &node.addresses {
                if a.port() == 0 {
                    return Err(invalid(field("addresses"), format!("`{a}` has port 0")));
                }
                if !addresses.insert(*a) {
                    return Err(invalid(
                        field("addresses"),
                        format!("`{a}` is used by more than one node"),
                    ));
                }
            }
            if node.client_port == 0 {
                return Err(invalid(field("client_port"), "is 0".into()));
            }
            let client = node.client_socket_address();
            if !client_endpoints.insert(client) || addresses.contains(&client) {
                return Err(invalid(
                    field("client_port"),
                    format!("client endpoint `{client}` is already used by another listener"),
                ));
            }
            if node.home_dir.as_os_str().is_empty() {
                return Err(invalid(field("home_dir"), "is empty".into()));
            }
            if !(limits::MIN_SEGMENT_SIZE..=limits::MAX_SEGMENT_SIZE)
                .contains(&node.segment_size_bytes)
            {
                return Err(invalid(
                    field("segment_size_bytes"),
                    format!(
                        "is {}; it must lie between {} and {}",
                        node.segment_size_bytes,
                        limits::MIN_SEGMENT_SIZE,
                        limits::MAX_SEGMENT_SIZE
                    ),
                ));
            }
            if node.collapse_threshold_entries == 0 {
                return Err(invalid(
                    field("collapse_threshold_entries"),
                    "is 0; it must be at least 1".into(),
                ));
            }
            if node.segments_to_keep == 0 {
                return Err(invalid(
                    field("segments_to_keep"),
                    "is 0; at least 1 segment must be kept for peers that catch up".into(),
                ));
            }
            if node.max_request_size == 0 || node.max_request_size > limits::MAX_REQUEST_SIZE {
                return Err(invalid(
                    field("max_request_size"),
                    format!(
                        "is {}; it must lie between 1 and {}",
                        node.max_request_size,
                        limits::MAX_REQUEST_SIZE
                    ),
                ));
            }
            if node.max_value_size == 0 || node.max_value_size >= node.max_request_size {
                return Err(invalid(
                    field("max_value_size"),
                    format!(
                        "is {}; it must be at least 1 and smaller than max_request_size ({})",
                        node.max_value_size, node.max_request_size
                    ),
                ));
            }
            if !(limits::MIN_SNAPSHOT_BYTES..=limits::MAX_SNAPSHOT_BYTES)
                .contains(&node.max_snapshot_bytes)
            {
                return Err(invalid(
                    field("max_snapshot_bytes"),
                    format!(
                        "is {}; it must lie between {} and {} bytes",
                        node.max_snapshot_bytes,
                        limits::MIN_SNAPSHOT_BYTES,
                        limits::MAX_SNAPSHOT_BYTES
                    ),
                ));
            }
            if node.max_client_connections == 0 {
                return Err(invalid(
                    field("max_client_connections"),
                    "is 0; no client could connect".into(),
                ));
            }
        }
        // --- metrics endpoint ---
        // Checked once every other listener is known (a later node's listener counts too).
        let mut metrics_endpoints = BTreeSet::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let Some(metrics) = node.metrics_address else {
                continue;
            };
            let field = format!("nodes[{i}].metrics_address");
            if metrics.port() == 0 {
                return Err(invalid(field, format!("`{metrics}` has port 0")));
            }
            if addresses.contains(&metrics) || client_endpoints.contains(&metrics) {
                return Err(invalid(
                    field,
                    format!("`{metrics}` is already used by another listener"),
                ));
            }
            if !metrics_endpoints.insert(metrics) {
                return Err(invalid(
                    field,
                    format!("`{metrics}` is used by more than one node"),
                ));
            }
        }
        for (i, learner) in c.learners.iter().enumerate() {
            if !names.contains(learner.as_str()) {
                return Err(invalid(
                    format!("cluster.learners[{i}]"),
                    format!("names `{learner}`, which is not a configured node"),
                ));
            }
        }
        if self.voters().next().is_none() {
            return Err(invalid(
                "cluster.learners".into(),
                "lists every node; at least one node must vote".into(),
            ));
        }
        let check_master = |field: &str, name: &str| {
            if !names.contains(name) {
                Err(invalid(
                    field.into(),
                    format!("names `{name}`, which is not a configured node"),
                ))
            } else if self.is_learner(name) {
                Err(invalid(
                    field.into(),
                    format!("names `{name}`, which is a learner and can never be master"),
                ))
            } else {
                Ok(())
            }
        };
        if let Some(p) = &c.preferred_master {
            check_master("cluster.preferred_master", p)?;
        }
        self.validate_roles(file)?;
        match (c.master_mode, &c.forced_master) {
            (MasterMode::Forced, Some(m)) => check_master("cluster.forced_master", m)?,
            (MasterMode::Forced, None) => {
                return Err(invalid(
                    "cluster.forced_master".into(),
                    "is missing; master_mode = \"forced\" needs the name of the master".into(),
                ));
            }
            (mode, Some(_)) => {
                return Err(invalid(
                    "cluster.forced_master".into(),
                    format!("is set, but master_mode is \"{mode}\"; use master_mode = \"forced\""),
                ));
            }
            (_, None) => {}
        }
        self.validate_tls()
            .map_err(|(field, problem)| invalid(field, problem))?;
        Ok(())
    }

    /// Relative TLS file paths are taken relative to the config file's directory.
    fn resolve_tls_paths(&mut self, base_dir: &Path) {
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base_dir.join(&*path);
            }
        };
        if let Some(tls) = &mut self.cluster.tls {
            resolve(&mut tls.ca_cert);
        }
        for tls in self.nodes.iter_mut().filter_map(|n| n.tls.as_mut()) {
            resolve(&mut tls.cert);
            resolve(&mut tls.key);
        }
    }

    /// The TLS settings hang together (the files are read when the node starts, and by
    /// `check-config`).
    fn validate_tls(&self) -> Result<(), (String, String)> {
        let Some(tls) = &self.cluster.tls else {
            if let Some(i) = self.nodes.iter().position(|n| n.tls.is_some()) {
                return Err((
                    format!("nodes[{i}].tls"),
                    "is set, but [cluster.tls] is not; TLS is configured for the whole \
                     cluster (add [cluster.tls] with ca_cert) or for none of it"
                        .into(),
                ));
            }
            return Ok(());
        };
        if tls.ca_cert.as_os_str().is_empty() {
            return Err(("cluster.tls.ca_cert".into(), "is empty".into()));
        }
        tls.version
            .parse::<rarakoon_tls::TlsVersion>()
            .map_err(|p| ("cluster.tls.version".to_owned(), p))?;
        if tls.service_validate_peer && !tls.service {
            return Err((
                "cluster.tls.service_validate_peer".into(),
                "is true, but service is false; client certificates are checked only on a \
                 TLS client port (set service = true)"
                    .into(),
            ));
        }
        if !tls.admin_names.is_empty() && !tls.service_validate_peer {
            return Err((
                "cluster.tls.admin_names".into(),
                "is set, but service_validate_peer is false; admin names are read from client \
                 certificates, so clients must present one (set service = true and \
                 service_validate_peer = true)"
                    .into(),
            ));
        }
        for (i, name) in tls.admin_names.iter().enumerate() {
            if name.is_empty() {
                return Err((format!("cluster.tls.admin_names[{i}]"), "is empty".into()));
            }
        }
        for (i, node) in self.nodes.iter().enumerate() {
            match &node.tls {
                None => {
                    return Err((
                        format!("nodes[{i}].tls"),
                        format!(
                            "is missing; with [cluster.tls] every node needs its certificate \
                             and key: tls = {{ cert = \"{0}.pem\", key = \"{0}.key\" }}",
                            node.name
                        ),
                    ));
                }
                Some(t) if t.cert.as_os_str().is_empty() || t.key.as_os_str().is_empty() => {
                    return Err((
                        format!("nodes[{i}].tls"),
                        "needs both cert and key paths".into(),
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

impl ClusterConfig {
    /// Ports reachable from other hosts without TLS: anyone who reaches them can pose as a
    /// node or run admin operations, so they must be firewalled.
    fn tls_warnings(&self) -> Vec<ConfigWarning> {
        let mut out = Vec::new();
        let service = self.cluster.tls.as_ref().is_some_and(|t| t.service);
        for (i, node) in self.nodes.iter().enumerate() {
            if self.cluster.tls.is_none()
                && let Some(a) = node.addresses.iter().find(|a| !a.ip().is_loopback())
            {
                out.push(ConfigWarning {
                    field: format!("nodes[{i}].addresses"),
                    message: format!(
                        "node `{}` listens for peers on {a}, which is not a loopback address, \
                         without TLS: anyone who can reach it can pose as a node (configure \
                         [cluster.tls], or firewall the port)",
                        node.name
                    ),
                });
            }
            let client = node.client_socket_address();
            if !service && !client.ip().is_loopback() {
                out.push(ConfigWarning {
                    field: format!("nodes[{i}].client_port"),
                    message: format!(
                        "node `{}` serves clients on {client}, which is not a loopback address, \
                         without TLS: anyone who can reach it can read, write and run admin \
                         operations (set service = true in [cluster.tls], or firewall the port)",
                        node.name
                    ),
                });
            }
        }
        out
    }
}

impl ClusterConfig {
    /// Witnesses, the quorum override and the preferred-master list (the learners and the
    /// single preferred and forced master are checked by [`ClusterConfig::validate`]).
    fn validate_roles(&self, file: &Path) -> Result<(), ConfigError> {
        let invalid = |field: String, problem: String| ConfigError::Invalid {
            file: file.to_path_buf(),
            field,
            problem,
        };
        let c = &self.cluster;
        let mut seen = BTreeSet::new();
        for (i, w) in c.witnesses.iter().enumerate() {
            let field = format!("cluster.witnesses[{i}]");
            if !self.node_names().any(|n| n == w) {
                return Err(invalid(
                    field,
                    format!("names `{w}`, which is not a configured node"),
                ));
            }
            if self.is_learner(w) {
                return Err(invalid(
                    field,
                    format!("names `{w}`, which is a learner; a node is a witness or a learner"),
                ));
            }
            if !seen.insert(w.as_str()) {
                return Err(invalid(field, format!("names `{w}` twice")));
            }
        }
        if !self.voters().any(|n| !self.is_witness(n)) {
            return Err(invalid(
                "cluster.witnesses".into(),
                "leaves no voter that holds data; at least one node must be neither a learner \
                 nor a witness (only such a node can be master)"
                    .into(),
            ));
        }
        let voting = self.voters().count();
        if let Some(q) = c.quorum
            && (q == 0 || q as usize > voting)
        {
            return Err(invalid(
                "cluster.quorum".into(),
                format!(
                    "is {q}; it must lie between 1 and the {voting} voting nodes (voters and \
                     witnesses)"
                ),
            ));
        }
        if c.preferred_master.is_some() && !c.preferred_masters.is_empty() {
            return Err(invalid(
                "cluster.preferred_master".into(),
                "is set together with preferred_masters; list every preferred node in \
                 preferred_masters only"
                    .into(),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, p) in c.preferred_masters.iter().enumerate() {
            let field = format!("cluster.preferred_masters[{i}]");
            if !self.node_names().any(|n| n == p) {
                return Err(invalid(
                    field,
                    format!("names `{p}`, which is not a configured node"),
                ));
            }
            if self.is_learner(p) || self.is_witness(p) {
                return Err(invalid(
                    field,
                    format!("names `{p}`, which is a learner or a witness and can never be master"),
                ));
            }
            if !seen.insert(p.as_str()) {
                return Err(invalid(field, format!("names `{p}` twice")));
            }
        }
        for (field, name) in [
            ("cluster.preferred_master", c.preferred_master.as_deref()),
            ("cluster.forced_master", c.forced_master.as_deref()),
        ] {
            if let Some(name) = name
                && self.is_witness(name)
            {
                return Err(invalid(
                    field.into(),
                    format!("names `{name}`, which is a witness and can never be master"),
                ));
            }
        }
        Ok(())
    }
}

/// Names (cluster id, node names) are printable ASCII without spaces, so they log and travel
/// in handshakes and Arakoon messages unambiguously.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.len() > limits::MAX_NAME_LEN {
        return Err(format!(
            "is {} bytes long; at most {} are allowed",
            name.len(),
            limits::MAX_NAME_LEN
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|ch| !(ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.')))
    {
        return Err(format!(
            "`{name}` contains {bad:?}; use letters, digits, '_', '-' and '.'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const GOOD: &str = r#"
[cluster]
id = "ricky"
lease_period_secs = 2

[[nodes]]
name = "n0"
addresses = ["127.0.0.1:4010"]
client_port = 4000
home_dir = "/tmp/n0"

[[nodes]]
name = "n1"
addresses = ["127.0.0.1:4011"]
client_port = 4001
home_dir = "n1"
fsync = false
"#;

    fn parse(text: &str) -> Result<ClusterConfig, ConfigError> {
        ClusterConfig::from_toml_str(text, Path::new("/etc/c.toml"), Path::new("/base"))
    }

    fn invalid_field(text: &str) -> String {
        match parse(text) {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    // --- TLS ---
    fn with_tls(cluster_tls: &str, n0: &str, n1: &str) -> String {
        format!(
            r#"
[cluster]
id = "ricky"
{cluster_tls}

[[nodes]]
name = "n0"
addresses = ["127.0.0.1:4010"]
client_port = 4000
home_dir = "/tmp/n0"
{n0}

[[nodes]]
name = "n1"
addresses = ["127.0.0.1:4011"]
client_port = 4001
home_dir = "n1"
{n1}
"#
        )
    }

    const TLS_ON: &str = "[cluster.tls]\nca_cert = \"ca.pem\"";
    const N0: &str = "tls = { cert = \"n0.pem\", key = \"n0.key\" }";
    const N1: &str = "tls = { cert = \"/abs/n1.pem\", key = \"n1.key\" }";

    #[test]
    fn tls_is_off_by_default_and_paths_resolve_against_the_config_dir() {
        assert_eq!(parse(GOOD).unwrap().cluster.tls, None);
        let c = parse(&with_tls(TLS_ON, N0, N1)).unwrap();
        let tls = c.cluster.tls.as_ref().unwrap();
        assert_eq!(tls.ca_cert, Path::new("/base/ca.pem"));
        assert!(!tls.service && !tls.service_validate_peer && tls.admin_names.is_empty());
        assert_eq!(tls.version, "1.2");
        let n0 = c.nodes[0].tls.as_ref().unwrap();
        assert_eq!(n0.cert, Path::new("/base/n0.pem"));
        let n1 = c.nodes[1].tls.as_ref().unwrap();
        assert_eq!(n1.cert, Path::new("/abs/n1.pem"));
        assert_eq!(n1.key, Path::new("/base/n1.key"));
        // Written out and read back, nothing changes.
        let again = parse(&c.to_toml_string().unwrap()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn tls_settings_must_hang_together() {
        // A node without a certificate, or a certificate without [cluster.tls].
        assert_eq!(invalid_field(&with_tls(TLS_ON, N0, "")), "nodes[1].tls");
        assert_eq!(invalid_field(&with_tls("", N0, N1)), "nodes[0].tls");
        assert_eq!(invalid_field(&with_tls("", "", N1)), "nodes[1].tls");
        // Versions: 1.2 and 1.3 only.
        let v = |ver: &str| with_tls(&format!("{TLS_ON}\nversion = \"{ver}\""), N0, N1);
        assert!(parse(&v("1.3")).is_ok());
        assert_eq!(invalid_field(&v("1.0")), "cluster.tls.version");
        assert_eq!(invalid_field(&v("1.1")), "cluster.tls.version");
        assert_eq!(invalid_field(&v("")), "cluster.tls.version");
        // Client certificates need the TLS client port; admin names need client certificates.
        let extra = |e: &str| with_tls(&format!("{TLS_ON}\n{e}"), N0, N1);
        assert_eq!(
            invalid_field(&extra("service_validate_peer = true")),
            "cluster.tls.service_validate_peer"
        );
        assert_eq!(
            invalid_field(&extra("service = true\nadmin_names = [\"ops\"]")),
            "cluster.tls.admin_names"
        );
        assert_eq!(
            invalid_field(&extra(
                "service = true\nservice_validate_peer = true\nadmin_names = [\"\"]"
            )),
            "cluster.tls.admin_names[0]"
        );
        assert!(
            parse(&extra(
                "service = true\nservice_validate_peer = true\nadmin_names = [\"ops\"]"
            ))
            .is_ok()
        );
        // Unknown keys are refused, as everywhere.
        assert!(matches!(
            parse(&extra("tls_ca_cert = \"x\"")),
            Err(ConfigError::Parse { .. })
        ));
        assert!(matches!(
            parse(&with_tls(
                TLS_ON,
                "tls = { cert = \"a\", key = \"b\", pass = \"c\" }",
                N1
            )),
            Err(ConfigError::Parse { .. })
        ));
    }

    // --- [cluster.clients] ---
    #[test]
    fn client_listener_limits_are_read_and_checked() {
        let c = parse(GOOD).unwrap();
        assert!(c.cluster.clients.is_default());
        let with =
            |section: &str| GOOD.replacen("[[nodes]]", &format!("{section}\n\n[[nodes]]"), 1);
        let c = parse(&with(
            "[cluster.clients]\nprologue_timeout_secs = 2\nmax_in_flight = 8",
        ))
        .unwrap();
        assert_eq!(c.cluster.clients.prologue_timeout_secs, 2.0);
        assert_eq!(c.cluster.clients.max_in_flight, 8);
        assert_eq!(c.cluster.clients.idle_timeout_secs, 3600.0);
        assert_eq!(
            invalid_field(&with("[cluster.clients]\nmemory_budget_bytes = 0")),
            "cluster.clients.memory_budget_bytes"
        );
        assert!(matches!(
            parse(&with("[cluster.clients]\nprologue_timeout = 2")),
            Err(ConfigError::Parse { .. })
        ));
    }

    #[test]
    fn non_loopback_listeners_without_tls_are_warned_about() {
        let open = GOOD.replace("127.0.0.1:4010", "10.0.0.1:4010").replace(
            "home_dir = \"/tmp/n0\"",
            "home_dir = \"/tmp/n0\"\nclient_address = \"0.0.0.0\"",
        );
        let warnings = parse(&open).unwrap().warnings();
        let fields: Vec<&str> = warnings.iter().map(|w| w.field.as_str()).collect();
        assert!(fields.contains(&"nodes[0].addresses"), "{warnings:?}");
        assert!(fields.contains(&"nodes[0].client_port"), "{warnings:?}");
        assert!(
            !fields.iter().any(|f| f.starts_with("nodes[1].a")),
            "{warnings:?}"
        );
        // Loopback only: no TLS warning.
        let quiet = parse(GOOD).unwrap().warnings();
        assert!(
            !quiet.iter().any(|w| w.message.contains("TLS")),
            "{quiet:?}"
        );
        // Messaging TLS but a plain client port: only the client port is warned about.
        let tls = with_tls(TLS_ON, N0, N1).replace("127.0.0.1:4010", "10.0.0.1:4010");
        let warnings = parse(&tls).unwrap().warnings();
        let fields: Vec<&str> = warnings.iter().map(|w| w.field.as_str()).collect();
        assert!(fields.contains(&"nodes[0].client_port"), "{warnings:?}");
        assert!(!fields.contains(&"nodes[0].addresses"), "{warnings:?}");
        let tls = tls.replace(
            "ca_cert = \"ca.pem\"",
            "ca_cert = \"ca.pem\"\nservice = true",
        );
        assert!(
            !parse(&tls)
                .unwrap()
                .warnings()
                .iter()
                .any(|w| w.message.contains("TLS"))
        );
    }

    // --- metrics endpoint ---
    #[test]
    fn metrics_address_is_off_by_default_and_checked_against_the_other_listeners() {
        let c = parse(GOOD).unwrap();
        assert!(c.nodes.iter().all(|n| n.metrics_address.is_none()));
        let with = |line: &str| {
            parse(&GOOD.replacen(
                "client_port = 4000",
                &format!("client_port = 4000\nmetrics_address = \"{line}\""),
                1,
            ))
        };
        let c = with("127.0.0.1:4020").unwrap();
        assert_eq!(
            c.nodes[0].metrics_address,
            Some("127.0.0.1:4020".parse().unwrap())
        );
        // It survives a round trip through the TOML writer (`local` writes its config).
        let again = parse(&c.to_toml_string().unwrap()).unwrap();
        assert_eq!(again.nodes[0].metrics_address, c.nodes[0].metrics_address);
        for (bad, why) in [
            ("127.0.0.1:0", "port 0"),
            ("127.0.0.1:4011", "already used"),
            ("127.0.0.1:4001", "already used"),
        ] {
            let err = with(bad).unwrap_err().to_string();
            assert!(err.contains("nodes[0].metrics_address"), "{bad}: {err}");
            assert!(err.contains(why), "{bad}: {err}");
        }
        let err = parse(
            &GOOD
                .replace(
                    "client_port = 4000",
                    "client_port = 4000\nmetrics_address = \"127.0.0.1:4020\"",
                )
                .replace(
                    "client_port = 4001",
                    "client_port = 4001\nmetrics_address = \"127.0.0.1:4020\"",
                ),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("nodes[1].metrics_address"), "{err}");
    }

    #[test]
    fn parses_with_defaults_and_resolves_relative_home() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.cluster.master_mode, MasterMode::Elected);
        assert_eq!(c.lease_period(), Duration::from_secs(2));
        assert_eq!(c.nodes[0].max_value_size, defaults::MAX_VALUE_SIZE);
        assert_eq!(c.nodes[0].compressor, Compressor::Zstd);
        assert!(c.nodes[0].fsync);
        assert_eq!(c.nodes[1].home_dir, PathBuf::from("/base/n1"));
        assert_eq!(
            c.nodes[1].client_socket_address(),
            "127.0.0.1:4001".parse::<SocketAddr>().unwrap()
        );
        let warnings = c.warnings();
        assert!(warnings.iter().any(|w| w.field == "nodes[1].fsync"));
    }

    #[test]
    fn fractional_lease_is_accepted() {
        let c = parse(&GOOD.replace("lease_period_secs = 2", "lease_period_secs = 0.5")).unwrap();
        assert_eq!(c.lease_period(), Duration::from_millis(500));
    }

    #[test]
    fn unknown_field_names_file_and_field() {
        let err = parse(&GOOD.replace("client_port = 4000", "client_port = 4000\ncolour = 1"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/etc/c.toml"), "{err}");
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn wrong_type_names_field() {
        let err = parse(&GOOD.replace("client_port = 4000", "client_port = \"x\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("client_port"), "{err}");
    }

    #[test]
    fn duplicate_names_and_ports_are_refused() {
        assert_eq!(
            invalid_field(&GOOD.replace("name = \"n1\"", "name = \"n0\"")),
            "nodes[1].name"
        );
        assert_eq!(
            invalid_field(&GOOD.replace("4011", "4010")),
            "nodes[1].addresses"
        );
        assert_eq!(
            invalid_field(&GOOD.replace("4001", "4000")),
            "nodes[1].client_port"
        );
    }

    #[test]
    fn master_options_are_checked() {
        let forced_without_name = GOOD.replace("lease_period_secs = 2", "master_mode = \"forced\"");
        assert_eq!(invalid_field(&forced_without_name), "cluster.forced_master");
        let forced_unknown = GOOD.replace(
            "lease_period_secs = 2",
            "master_mode = \"forced\"\nforced_master = \"zz\"",
        );
        assert_eq!(invalid_field(&forced_unknown), "cluster.forced_master");
        let name_without_forced = GOOD.replace("lease_period_secs = 2", "forced_master = \"n0\"");
        assert_eq!(invalid_field(&name_without_forced), "cluster.forced_master");
        let learner_preferred = GOOD.replace(
            "lease_period_secs = 2",
            "learners = [\"n1\"]\npreferred_master = \"n1\"",
        );
        assert_eq!(
            invalid_field(&learner_preferred),
            "cluster.preferred_master"
        );
        let all_learners = GOOD.replace("lease_period_secs = 2", "learners = [\"n0\", \"n1\"]");
        assert_eq!(invalid_field(&all_learners), "cluster.learners");
        let ok = parse(&GOOD.replace(
            "lease_period_secs = 2",
            "master_mode = \"forced\"\nforced_master = \"n1\"\nlearners = [\"n0\"]",
        ))
        .unwrap();
        assert_eq!(ok.voters().collect::<Vec<_>>(), vec!["n1"]);
    }

    // --- witnesses, quorum, preferred masters ---
    const THREE: &str = r#"
[cluster]
id = "ricky"

[[nodes]]
name = "n0"
addresses = ["127.0.0.1:4010"]
client_port = 4000
home_dir = "n0"

[[nodes]]
name = "n1"
addresses = ["127.0.0.1:4011"]
client_port = 4001
home_dir = "n1"

[[nodes]]
name = "n2"
addresses = ["127.0.0.1:4012"]
client_port = 4002
home_dir = "n2"
"#;

    fn three_with(lines: &str) -> Result<ClusterConfig, ConfigError> {
        parse(&THREE.replace("id = \"ricky\"", &format!("id = \"ricky\"\n{lines}")))
    }

    fn refusal(lines: &str) -> (String, String) {
        match three_with(lines) {
            Err(ConfigError::Invalid { field, problem, .. }) => (field, problem),
            other => panic!("{lines}: expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn witnesses_and_quorum_are_parsed_and_round_trip() {
        let c = three_with("witnesses = [\"n2\"]\nquorum = 2").unwrap();
        assert!(c.is_witness("n2") && !c.is_witness("n0"));
        assert_eq!(c.voters().count(), 3, "a witness votes");
        assert_eq!(c.quorum_size(), 2);
        let again = parse(&c.to_toml_string().unwrap()).unwrap();
        assert_eq!(again, c);
        let plain = three_with("").unwrap();
        assert_eq!(plain.quorum_size(), 2, "default: a majority of 3");
        assert!(plain.cluster.witnesses.is_empty());
    }

    #[test]
    fn witness_and_quorum_mistakes_are_refused_with_the_field() {
        for (lines, field, why) in [
            (
                "witnesses = [\"n9\"]",
                "cluster.witnesses[0]",
                "not a configured node",
            ),
            (
                "witnesses = [\"n1\"]\nlearners = [\"n1\"]",
                "cluster.witnesses[0]",
                "learner",
            ),
            (
                "witnesses = [\"n1\", \"n1\"]",
                "cluster.witnesses[1]",
                "twice",
            ),
            (
                "witnesses = [\"n0\", \"n1\", \"n2\"]",
                "cluster.witnesses",
                "neither a learner nor a witness",
            ),
            (
                "witnesses = [\"n0\", \"n1\"]\nlearners = [\"n2\"]",
                "cluster.witnesses",
                "no voter",
            ),
            ("quorum = 0", "cluster.quorum", "between 1 and the 3"),
            ("quorum = 4", "cluster.quorum", "between 1 and the 3"),
            (
                "quorum = 3\nlearners = [\"n2\"]",
                "cluster.quorum",
                "between 1 and the 2",
            ),
            (
                "witnesses = [\"n2\"]\npreferred_master = \"n2\"",
                "cluster.preferred_master",
                "witness",
            ),
            (
                "witnesses = [\"n2\"]\nmaster_mode = \"forced\"\nforced_master = \"n2\"",
                "cluster.forced_master",
                "witness",
            ),
        ] {
            let (f, problem) = refusal(lines);
            assert_eq!(f, field, "{lines}: {problem}");
            assert!(problem.contains(why), "{lines}: {problem}");
        }
        assert!(three_with("quorum = 4294967295").is_err());
        assert!(three_with("quorum = -1").is_err());
    }

    #[test]
    fn a_quorum_below_a_majority_is_accepted_with_a_loud_warning() {
        let c = three_with("quorum = 1").unwrap();
        let warning = c
            .warnings()
            .into_iter()
            .find(|w| w.field == "cluster.quorum")
            .expect("warning");
        assert!(warning.message.contains("split brain"), "{warning}");
        for q in ["2", "3"] {
            let c = three_with(&format!("quorum = {q}")).unwrap();
            assert!(
                c.warnings().iter().all(|w| w.field != "cluster.quorum"),
                "{q}"
            );
        }
    }

    #[test]
    fn preferred_masters_list_and_the_single_form() {
        let c = three_with("preferred_masters = [\"n2\", \"n0\"]").unwrap();
        assert_eq!(c.preferred_masters(), vec!["n2", "n0"]);
        assert_eq!(parse(&c.to_toml_string().unwrap()).unwrap(), c);
        let single = three_with("preferred_master = \"n1\"").unwrap();
        assert_eq!(single.preferred_masters(), vec!["n1"]);
        assert!(three_with("").unwrap().preferred_masters().is_empty());
        for (lines, field, why) in [
            (
                "preferred_master = \"n1\"\npreferred_masters = [\"n0\"]",
                "cluster.preferred_master",
                "preferred_masters only",
            ),
            (
                "preferred_masters = [\"n7\"]",
                "cluster.preferred_masters[0]",
                "not a configured",
            ),
            (
                "preferred_masters = [\"n0\", \"n0\"]",
                "cluster.preferred_masters[1]",
                "twice",
            ),
            (
                "preferred_masters = [\"n0\", \"n2\"]\nlearners = [\"n2\"]",
                "cluster.preferred_masters[1]",
                "learner or a witness",
            ),
            (
                "preferred_masters = [\"n1\"]\nwitnesses = [\"n1\"]",
                "cluster.preferred_masters[0]",
                "learner or a witness",
            ),
        ] {
            let (f, problem) = refusal(lines);
            assert_eq!(f, field, "{lines}: {problem}");
            assert!(problem.contains(why), "{lines}: {problem}");
        }
    }

    #[test]
    fn limits_are_checked() {
        assert_eq!(
            invalid_field(&GOOD.replace("lease_period_secs = 2", "lease_period_secs = 0")),
            "cluster.lease_period_secs"
        );
        assert_eq!(
            invalid_field(&GOOD.replace(
                "client_port = 4000",
                "client_port = 4000\nmax_value_size = 40000000"
            )),
            "nodes[0].max_value_size"
        );
        assert_eq!(
            invalid_field(&GOOD.replace("name = \"n0\"", "name = \"n 0\"")),
            "nodes[0].name"
        );
        for bad in ["0", "1048575", "18446744073709551615"] {
            assert_eq!(
                invalid_field(&GOOD.replace(
                    "client_port = 4000",
                    &format!("client_port = 4000\nmax_snapshot_bytes = {bad}")
                )),
                "nodes[0].max_snapshot_bytes",
                "{bad}"
            );
        }
    }

    #[test]
    fn batch_bytes_out_of_range_names_the_field() {
        for bad in ["0", "18446744073709551615", "1073741825"] {
            let text = GOOD.replace(
                "lease_period_secs = 2",
                &format!("lease_period_secs = 2\nmax_batch_bytes = {bad}"),
            );
            assert_eq!(invalid_field(&text), "cluster.max_batch_bytes", "{bad}");
        }
        let ok = GOOD.replace(
            "lease_period_secs = 2",
            "lease_period_secs = 2\nmax_batch_bytes = 1073741824",
        );
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn unknown_node_lists_known_names() {
        let c = parse(GOOD).unwrap();
        let err = c
            .node("n9", Path::new("/etc/c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("n0, n1"), "{err}");
    }

    #[test]
    fn round_trips_through_toml() {
        let c = parse(GOOD).unwrap();
        let text = c.to_toml_string().unwrap();
        let again = parse(&text).unwrap();
        assert_eq!(c, again);
    }

    #[test]
    fn example_config_in_repo_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/example.toml");
        let c = ClusterConfig::load(&path).unwrap();
        assert_eq!(c.nodes.len(), 3);
    }
}
