//! The command line: every subcommand and option of `rarakoon-bin`, declared with clap.
//!
//! Without a subcommand the binary runs one node (`--config FILE --node NAME`), as Arakoon's
//! `arakoon --node NAME -config FILE` did. Client and admin commands default to the cluster
//! started by `rarakoon-bin local` in its default directory.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::logging::LogFormat;

/// Rarakoon: a consistent distributed key-value store speaking Arakoon's client protocol.
#[derive(Debug, Parser)]
#[command(
    name = "rarakoon-bin",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// The cluster config file (TOML) of the node to run.
    #[arg(long, value_name = "FILE", requires = "node")]
    pub config: Option<PathBuf>,
    /// The name of the node to run (one of the config's `[[nodes]]`).
    #[arg(long, value_name = "NAME", requires = "config")]
    pub node: Option<String>,
    /// TESTS ONLY: keep every byte the node writes and has not fsync'd in the process's memory,
    /// so that `kill -9` loses it as a power cut would (the kernel's page cache would otherwise
    /// save it). Crash tests of real processes use it to see a missing fsync.
    #[arg(long, hide = true, requires = "node")]
    pub test_volatile_writes: bool,
    /// Log output format.
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,
    /// What to do; without a command, run the node given by --config and --node.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a cluster on 127.0.0.1 with no config at all (data is kept for the next start).
    Local(LocalArgs),
    /// Client operations against a cluster.
    Client(ClientArgs),
    /// Administrative operations against one node.
    Admin(AdminArgs),
    /// Validate a config file without starting anything.
    CheckConfig {
        /// The config file.
        file: PathBuf,
    },
    /// Load generator: closed or open loop, HDR latency percentiles, a table or JSON.
    Bench(BenchArgs),
    /// Offline write-ahead-log tools (run them on a stopped node).
    Wal {
        #[command(subcommand)]
        command: WalCommand,
    },
    /// Offline head-snapshot tools.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Install a backup (from `admin backup`) as a node's data before its first start.
    Restore(RestoreArgs),
}

/// `restore --config FILE --node NAME BACKUP`
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The cluster config file of the node to restore.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The node whose home directory receives the backup.
    #[arg(long, value_name = "NAME")]
    pub node: String,
    /// Move a non-empty home directory aside (to `<home>.before-restore-<seconds>`) instead
    /// of refusing.
    #[arg(long)]
    pub force: bool,
    /// The backup file.
    pub file: PathBuf,
}

/// Options of `local`.
#[derive(Debug, Args)]
pub struct LocalArgs {
    /// Number of nodes (used when the directory holds no cluster yet).
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Directory for the generated config, the nodes' data and their logs.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Generate a throwaway CA and certificates under `<DIR>/tls` and run the cluster with
    /// TLS everywhere (used when the directory holds no cluster yet).
    #[arg(long)]
    pub tls: bool,
}

/// How client and admin commands find the cluster.
#[derive(Debug, Args)]
pub struct Target {
    /// A cluster config file naming the nodes (default: the `local` cluster's config).
    #[arg(long, value_name = "FILE", global = true)]
    pub cluster_config: Option<PathBuf>,
    /// The directory of a `local` cluster (default: the standard one).
    #[arg(
        long,
        value_name = "DIR",
        global = true,
        conflicts_with = "cluster_config"
    )]
    pub dir: Option<PathBuf>,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 10.0, global = true)]
    pub timeout_secs: f64,
    /// Connect with TLS, checking the nodes' certificates against this CA certificate (PEM).
    /// Default: the cluster config's `[cluster.tls] ca_cert` when its `service` is on.
    #[arg(long, value_name = "FILE", global = true)]
    pub tls_ca: Option<PathBuf>,
    /// The client certificate (PEM) to present (with --tls-key). Default with a config's CA:
    /// `client.pem` next to the CA certificate, if there is one.
    #[arg(long, value_name = "FILE", global = true)]
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", global = true)]
    pub tls_key: Option<PathBuf>,
}

/// `client ...`
#[derive(Debug, Args)]
pub struct ClientArgs {
    #[command(flatten)]
    pub target: Target,
    /// Read consistency: `consistent` (master only), `any` (any node, possibly stale).
    #[arg(long, value_enum, default_value_t = ReadConsistency::Consistent, global = true)]
    pub consistency: ReadConsistency,
    #[command(subcommand)]
    pub command: ClientCommand,
}

/// The consistency of client reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReadConsistency {
    /// Served by the master under its lease.
    Consistent,
    /// Served by any node from its local store (a "dirty read").
    Any,
}

/// Client operations.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Store a value.
    Set { key: String, value: String },
    /// Print a value (exit code 1 if the key is absent).
    Get { key: String },
    /// Delete a key (exit code 1 if it was absent).
    Delete { key: String },
    /// Print whether a key exists (exit code 1 if not).
    Exists { key: String },
    /// Set `key` to `wanted` if it currently holds `expected`; prints the value before.
    TestAndSet {
        key: String,
        /// The expected current value (omit: the key must be absent).
        #[arg(long)]
        expected: Option<String>,
        /// The new value (omit: delete the key).
        #[arg(long)]
        wanted: Option<String>,
    },
    /// Print the keys in a range.
    Range(RangeArgs),
    /// Print the key/value pairs in a range.
    RangeEntries(RangeArgs),
    /// Print the keys that start with a prefix.
    Prefix {
        prefix: String,
        /// At most this many keys (negative: all).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        max: i32,
    },
    /// Print the values of several keys (exit code 1 if any is absent).
    MultiGet { keys: Vec<String> },
    /// Delete every key that starts with a prefix; prints the count.
    DeletePrefix { prefix: String },
    /// Print the current master's name.
    WhoMaster,
    /// Print a node's statistics.
    Statistics,
    /// Print a node's version.
    Version,
    /// Print the number of keys.
    KeyCount,
}

/// The bounds of `range` and `range-entries`.
#[derive(Debug, Args)]
pub struct RangeArgs {
    /// Lower bound (omit: from the first key).
    #[arg(long)]
    pub first: Option<String>,
    /// Exclude the lower bound itself.
    #[arg(long)]
    pub first_exclusive: bool,
    /// Upper bound (omit: to the last key).
    #[arg(long)]
    pub last: Option<String>,
    /// Exclude the upper bound itself.
    #[arg(long)]
    pub last_exclusive: bool,
    /// At most this many results (negative: all).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub max: i32,
}

/// `bench ...`: see `bench/mod.rs` for the measurement rules and the JSON schema.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub target: Target,
    /// Start a throwaway cluster (temporary directory, OS-chosen ports) and bench it; it is
    /// stopped and its directory deleted at the end.
    #[arg(long, conflicts_with_all = ["cluster_config", "dir"])]
    pub local: bool,
    /// Run the `--local` cluster with TLS everywhere (throwaway certificates).
    #[arg(long, requires = "local")]
    pub tls: bool,
    /// Nodes of the `--local` cluster.
    #[arg(long, default_value_t = 3, requires = "local",
          value_parser = clap::value_parser!(u16).range(1..=9))]
    pub local_nodes: u16,
    /// What each request does.
    #[arg(long, visible_alias = "op", value_enum, default_value_t = Workload::Set)]
    pub workload: Workload,
    /// Consistency of the reads (get, mixed, range, prefix). `at-least` uses the master's
    /// applied index read after the prefill.
    #[arg(long, value_enum, default_value_t = BenchConsistency::Consistent)]
    pub consistency: BenchConsistency,
    /// Measured time, after the warm-up (`500ms`, `10s`, `2m`; a bare number is seconds).
    #[arg(long, default_value = "10s", value_parser = crate::bench::parse_duration)]
    pub duration: std::time::Duration,
    /// Load before the measured time whose results are discarded (`0s`: none).
    #[arg(long, default_value = "1s", value_parser = crate::bench::parse_duration)]
    pub warmup: std::time::Duration,
    /// Concurrent clients, each with at most one request in flight.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub clients: u32,
    /// TCP connections the clients share (client i uses connection i mod C; requests of the
    /// clients on one connection are pipelined). Default: one per client.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connections: Option<u32>,
    /// Open loop: this many requests per second in all, spread evenly over the clients, with
    /// latency measured from each request's intended send time. Default: closed loop.
    #[arg(long, value_name = "OPS_PER_SEC")]
    pub rate: Option<f64>,
    /// Bytes per key (`bench/` and a zero-padded number).
    #[arg(long, default_value_t = 16)]
    pub key_size: usize,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    pub value_size: usize,
    /// Key space: keys are drawn uniformly from this many.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// `mixed`: the fraction of requests that are gets (the rest are sets).
    #[arg(long, default_value_t = 0.9)]
    pub read_ratio: f64,
    /// `sequence`: updates (sets) per sequence.
    #[arg(long, default_value_t = 10)]
    pub sequence_size: u32,
    /// `range` and `prefix`: at most this many keys per answer.
    #[arg(long, default_value_t = 10)]
    pub range_size: u32,
    /// Send every request to this node instead of the master (e.g. `any` reads on a slave).
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Seed of the key choice (runs with the same seed send the same keys).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the result as one JSON object (schema `rarakoon-bench/1`) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The bench workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// SET of a random key.
    Set,
    /// GET of a random (prefilled) key.
    Get,
    /// GETs and SETs, `--read-ratio` of them gets.
    Mixed,
    /// TEST_AND_SET of a random key from its prefilled value to the same value.
    TestAndSet,
    /// SEQUENCE of `--sequence-size` SETs of random keys.
    Sequence,
    /// RANGE: up to `--range-size` keys from a random key on.
    Range,
    /// PREFIX_KEYS: up to `--range-size` keys under a random key's prefix (it minus its last
    /// two characters: up to 100 keys).
    Prefix,
    /// Connection setup: each request opens a new connection (TCP, the TLS handshake when
    /// TLS is on, the prologue), sends one PING, reads the reply and closes. `--connections`
    /// does not apply.
    Connect,
}

/// The consistency of bench reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchConsistency {
    /// Served by the master under its lease.
    Consistent,
    /// Served by any node from its local store (no guarantees).
    Any,
    /// Served by a node that applied at least a given index.
    AtLeast,
}

/// `admin ...`
#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(flatten)]
    pub target: Target,
    /// The node to address (default: the first node of the config).
    #[arg(long, global = true)]
    pub node: Option<String>,
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// Administrative operations on one node.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Write a head snapshot and prune the write-ahead log.
    Collapse {
        /// Completed WAL segments to keep besides the one being written (at least 1; Arakoon's
        /// `tlogs_to_keep`). Overrides the node's `segments_to_keep` for this collapse.
        #[arg(long, default_value_t = 1)]
        keep: i32,
    },
    /// Make the node give up the master role.
    DropMaster,
    /// Print the node's Paxos state.
    CurrentState,
    /// Compact the node's store (Arakoon's OPTIMIZE_DB; a no-op for the in-memory store).
    /// Refused by the master.
    OptimizeDb,
    /// Defragment the node's store (Arakoon's DEFRAG_DB; a no-op). Refused by the master.
    DefragDb,
    /// Make the node's store durable (Arakoon's FLUSH_STORE; every write already is).
    FlushStore,
    /// Write the node's store as its head snapshot (Arakoon's COPY_DB_TO_HEAD). Refused by the
    /// master.
    CopyDbToHead {
        /// WAL segments to keep (at least 1; the node keeps its `segments_to_keep`).
        #[arg(long, default_value_t = 1)]
        keep: i32,
    },
    /// Print the node's statistics (Arakoon's STATISTICS, of this node only).
    Statistics,
    /// Print the node's version.
    Version,
    /// Print the master this node knows of.
    WhoMaster,
    /// Print whether the node expects progress to be possible (true only on a master with a
    /// lease and a store; exit code 1 when false).
    ExpectProgressPossible,
    /// Stream a consistent copy of the node's store into FILE (GET_DB; refused by the master,
    /// so name a slave). The file is written atomically and verified.
    Backup {
        /// The backup file to write (replaced atomically if it exists).
        file: PathBuf,
    },
}

/// `wal ...`
#[derive(Debug, Subcommand)]
pub enum WalCommand {
    /// Print every entry (index, size, CRC status) of a WAL directory.
    Dump {
        /// The WAL directory (a node's home directory).
        dir: PathBuf,
    },
    /// Check every record's CRC; exit code 1 if anything is corrupt.
    Verify {
        /// The WAL directory (a node's home directory).
        dir: PathBuf,
    },
}

/// `snapshot ...`
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Print a head snapshot's index, entry count and checksum status.
    Inspect {
        /// The snapshot file.
        file: PathBuf,
    },
}
