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
        /// WAL segments to keep.
        #[arg(long, default_value_t = 1)]
        keep: i32,
    },
    /// Make the node give up the master role.
    DropMaster,
    /// Print the node's Paxos state.
    CurrentState,
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
