//! The Collapser keeps the log short: snapshot the store, archive, prune. Also start-up.
//!
//! `run_once` does nothing until the log has grown more than `threshold_entries` past the last
//! head snapshot. Then, in this order, each step durable before the next starts:
//! 1. write a new head snapshot of the store (temp, fsync, rename, fsync dir);
//! 2. archive completed segments (zstd, each atomically, then the raw one removed);
//! 3. prune the oldest segments wholly covered by the snapshot, one durable removal at a time,
//!    keeping at least `segments_to_keep`.
//!
//! A crash between any two steps (or inside one) leaves either the old snapshot with the full
//! log, or the new snapshot with a log that still reaches past it; [`recover`] starts from
//! either. Running it again simply continues the work.

use std::path::Path;
use std::sync::Arc;

use crate::config::WalConfig;
use crate::error::{Result, WalError};
use crate::fs::FileSystem;
use crate::snapshot::{
    self, PairSink, SnapshotConfig, SnapshotInfo, SnapshotReader, SnapshotSource,
};
use crate::wal::Wal;

/// When to collapse and what to keep.
#[derive(Debug, Clone)]
pub struct CollapserConfig {
    /// Collapse when the log holds more than this many entries past the last snapshot.
    pub threshold_entries: u64,
    /// Never prune below this many segments (at least one is always kept).
    pub segments_to_keep: usize,
    /// Snapshot chunk sizes and limits.
    pub snapshot: SnapshotConfig,
}

impl Default for CollapserConfig {
    fn default() -> Self {
        CollapserConfig {
            threshold_entries: 100_000,
            segments_to_keep: 4,
            snapshot: SnapshotConfig::default(),
        }
    }
}

/// What one `run_once` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CollapseOutcome {
    /// Below the threshold (or the store has not advanced): nothing was written.
    NotNeeded {
        /// Entries in the log past the last snapshot.
        entries_since_snapshot: u64,
    },
    /// A new head snapshot was written, then segments archived and pruned.
    Collapsed {
        /// The new snapshot.
        snapshot: SnapshotInfo,
        /// Segments compressed into archives.
        archived: usize,
        /// Segments removed.
        pruned: usize,
    },
}

/// Writes head snapshots and archives/prunes segments. See the module documentation.
#[derive(Debug, Clone)]
pub struct Collapser {
    config: CollapserConfig,
}

impl Collapser {
    /// A collapser with these settings.
    pub fn new(config: CollapserConfig) -> Self {
        Collapser { config }
    }

    /// Checks the threshold and, if crossed, snapshots `store`, archives and prunes `wal`.
    /// `store.applied_index()` must be a committed index whose entries are durable in `wal`.
    pub fn run_once(
        &mut self,
        wal: &mut Wal,
        store: &dyn SnapshotSource,
    ) -> Result<CollapseOutcome> {
        self.run(wal, store, false)
    }

    /// Collapses now regardless of the threshold (Arakoon's admin "collapse tlogs"), as long
    /// as the store is ahead of the last snapshot.
    pub fn force(&mut self, wal: &mut Wal, store: &dyn SnapshotSource) -> Result<CollapseOutcome> {
        self.run(wal, store, true)
    }

    /// How many entries the log holds past the last head snapshot, and whether a collapse is
    /// due for a store at `applied_index` (past the threshold, or `force`, and the store ahead of
    /// the snapshot). Cheap: reads only the snapshot header. Lets the node write the snapshot
    /// off the log's thread and then call [`Collapser::finish_after_snapshot`].
    pub fn check(&self, wal: &Wal, applied_index: u64, force: bool) -> Result<(u64, bool)> {
        let path = snapshot::head_snapshot_path(wal.dir());
        let last_snapshot = snapshot::read_snapshot_index(wal.fs().as_ref(), &path)?;
        let Some(last) = wal.last_index() else {
            return Ok((0, false));
        };
        let covered = match (last_snapshot, wal.first_index()) {
            (Some(snapshot), _) => snapshot,
            (None, Some(first)) => first - 1,
            (None, None) => 0,
        };
        let entries_since_snapshot = last.saturating_sub(covered);
        let store_advanced = last_snapshot.is_none_or(|snapshot| applied_index > snapshot);
        let due =
            store_advanced && (force || entries_since_snapshot > self.config.threshold_entries);
        Ok((entries_since_snapshot, due))
    }

    /// Steps 2 and 3 of a collapse, after the head snapshot `snapshot` is durable: archive the
    /// completed segments it covers and prune the oldest, keeping `segments_to_keep`.
    pub fn finish_after_snapshot(
        &mut self,
        wal: &mut Wal,
        snapshot: SnapshotInfo,
    ) -> Result<CollapseOutcome> {
        let archived = wal.archive_completed_segments(snapshot.index)?;
        let pruned = wal.prune(snapshot.index, self.config.segments_to_keep)?;
        tracing::info!(
            index = snapshot.index,
            archived,
            pruned,
            "collapsed write-ahead log"
        );
        Ok(CollapseOutcome::Collapsed {
            snapshot,
            archived,
            pruned,
        })
    }

    /// How many segments a prune keeps.
    pub fn segments_to_keep(&self) -> usize {
        self.config.segments_to_keep
    }

    /// The snapshot settings, for a node that writes the snapshot itself.
    pub fn snapshot_config(&self) -> &SnapshotConfig {
        &self.config.snapshot
    }

    fn run(
        &mut self,
        wal: &mut Wal,
        store: &dyn SnapshotSource,
        force: bool,
    ) -> Result<CollapseOutcome> {
        let (entries_since_snapshot, due) = self.check(wal, store.applied_index(), force)?;
        if !due {
            return Ok(CollapseOutcome::NotNeeded {
                entries_since_snapshot,
            });
        }
        let snapshot =
            snapshot::write_snapshot(wal.fs().as_ref(), wal.dir(), store, &self.config.snapshot)?;
        self.finish_after_snapshot(wal, snapshot)
    }
}

/// What [`recover`] found.
#[derive(Debug)]
pub struct Recovered {
    /// The opened log; replay `snapshot index + 1 ..= wal.last_index()` into the store.
    pub wal: Wal,
    /// The head snapshot that was loaded, if any.
    pub snapshot: Option<SnapshotInfo>,
}

/// Start-up: loads the head snapshot (if any) into `sink`, opens the log, and makes the two
/// agree. The caller then replays the log entries after the snapshot index. See
/// [`recover_with`] to learn the snapshot's index before its pairs arrive.
pub fn recover(
    fs: Arc<dyn FileSystem>,
    dir: &Path,
    wal_config: WalConfig,
    snapshot_config: &SnapshotConfig,
    sink: &mut PairSink<'_>,
) -> Result<Recovered> {
    recover_with(fs, dir, wal_config, snapshot_config, &mut |reader| {
        reader.read_pairs(sink)
    })
}

/// Start-up, handing the opened snapshot to `load` (which can look at
/// [`SnapshotReader::index`] before calling [`SnapshotReader::read_pairs`]), then opening the
/// log and making the two agree.
///
/// If the log ends before the snapshot (a snapshot received from a peer was installed but the
/// log not yet reset when the node stopped), the log is reset to restart after the snapshot.
/// If the log starts after `snapshot + 1`, entries are missing and that is an error.
pub fn recover_with(
    fs: Arc<dyn FileSystem>,
    dir: &Path,
    wal_config: WalConfig,
    snapshot_config: &SnapshotConfig,
    load: &mut dyn FnMut(SnapshotReader) -> Result<SnapshotInfo>,
) -> Result<Recovered> {
    // Open the log first: it also removes a half-written snapshot temp file.
    let mut wal = Wal::open(Arc::clone(&fs), dir, wal_config)?;
    let path = snapshot::head_snapshot_path(dir);
    let snapshot = if fs.exists(&path).map_err(WalError::io("check", &path))? {
        Some(load(SnapshotReader::open(
            fs.as_ref(),
            &path,
            snapshot_config,
        )?)?)
    } else {
        None
    };
    match (crate::restart::read_marker(fs.as_ref(), dir)?, snapshot) {
        (Some(marker), Some(info)) if marker == info.index => {
            finish_interrupted_install(&mut wal, marker)?;
        }
        (Some(marker), _) => {
            // The received snapshot never got renamed into place: the log stays as it is.
            tracing::info!(
                index = marker,
                "dropping the restart marker of a received snapshot that was not installed"
            );
            crate::restart::remove_marker(fs.as_ref(), dir)?;
        }
        (None, _) => {}
    }
    if let Some(info) = snapshot {
        match wal.next_index() {
            Some(next) if next > info.index => {
                let start = wal
                    .segment_starts()
                    .first()
                    .map_or(next, |&(first, _)| first);
                if start > info.index + 1 {
                    return Err(WalError::Gap {
                        path: wal.dir().to_path_buf(),
                        expected: info.index + 1,
                        found: start,
                    });
                }
            }
            _ => wal.reset_after_snapshot(info.index)?,
        }
    }
    Ok(Recovered { wal, snapshot })
}

/// A received snapshot at `index` was installed but the node stopped before the log was reset:
/// drop the entries at or below `index` (they may be accepted values that were never chosen)
/// and keep the accepted entries above it, as the node's install does.
fn finish_interrupted_install(wal: &mut Wal, index: u64) -> Result<()> {
    let keep = match (wal.first_index(), wal.last_index()) {
        (Some(first), Some(last)) if last > index && first <= index.saturating_add(1) => {
            wal.read(index + 1, last, usize::MAX)?
        }
        _ => Vec::new(),
    };
    tracing::warn!(
        index,
        kept_entries = keep.len(),
        "finishing the install of a received snapshot interrupted by a stop: restarting the log after it"
    );
    wal.reset_after_snapshot(index)?;
    wal.append(keep.iter().map(|e| (e.index, e.bytes.as_ref())))?;
    wal.sync()
}
