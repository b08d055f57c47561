//! Rarakoon's write-ahead log: segment files of CRC32C-framed entries with group commit,
//! zstd archives of completed segments, head snapshots of the store, and the Collapser that
//! keeps the log short.
//!
//! The log stores opaque entries `(index, bytes)`; it knows nothing of keys or Paxos. The store
//! plugs into snapshots through [`SnapshotSource`] (writing) and a pair callback (loading).
//! Every file operation goes through the [`FileSystem`] seam: [`StdFs`] for the real disk,
//! [`SimFs`] for crash and fault simulation in tests, [`VolatileFs`] for crash tests of real
//! processes (unsynced bytes live in the process, so `kill -9` loses them).
//!
//! Typical start-up and use:
//! ```no_run
//! # use std::sync::Arc;
//! # use write_ahead_log::*;
//! # fn main() -> Result<(), WalError> {
//! let fs: Arc<dyn FileSystem> = Arc::new(StdFs);
//! let dir = std::path::Path::new("/var/lib/rarakoon/node_0/wal");
//! let mut pairs = Vec::new();
//! let Recovered { mut wal, snapshot } =
//!     recover(fs, dir, WalConfig::default(), &SnapshotConfig::default(), &mut |k, v| {
//!         pairs.push((k.to_vec(), v.to_vec()));
//!         Ok(())
//!     })?;
//! let replay_from = snapshot.map_or(1, |s| s.index + 1);
//! # let _ = replay_from;
//! let next = wal.next_index().unwrap_or(1);
//! wal.append([(next, b"entry".as_slice())])?;
//! wal.sync()?; // one fdatasync for everything appended since the last sync
//! # Ok(()) }
//! ```

mod collapser;
mod config;
mod error;
mod fs;
mod record;
mod restart;
mod segment;
mod sim_fs;
mod snapshot;
mod volatile_fs;
mod wal;

pub use collapser::{
    CollapseOutcome, Collapser, CollapserConfig, Recovered, recover, recover_with,
};
pub use config::{Compressor, WalConfig};
pub use error::{Result, WalError};
pub use fs::{FileSystem, ReadableFile, StdFs, WritableFile};
pub use restart::RESTART_MARKER;
pub use segment::{archive_name, raw_name};
pub use sim_fs::{SimFault, SimFs};
pub use snapshot::{
    HEAD_SNAPSHOT, PairSink, SnapshotConfig, SnapshotInfo, SnapshotReader, SnapshotReceiver,
    SnapshotSource, SnapshotStream, head_snapshot_path, load_snapshot, read_snapshot_index,
    write_snapshot,
};
pub use volatile_fs::VolatileFs;
pub use wal::{Entry, RecoveryReport, TornTail, Wal};
