//! Changing the log's extent: replace the tail, restart after a snapshot, archive, prune.
//!
//! Every removal of a segment is made durable before the next step, so a crash leaves the log
//! contiguous: newest-first when cutting the tail, oldest-first when pruning.

use std::path::Path;

use super::{Storage, Wal};
use crate::config::Compressor;
use crate::error::{Result, WalError};
use crate::segment;

impl Wal {
    /// Drops every entry after `index` (durably) so that Multi-Paxos can overwrite an accepted
    /// but uncommitted tail; the next append must be `index + 1`. Works across segment
    /// boundaries. Refuses to cut into an archived segment (those hold committed entries).
    pub fn truncate_after(&mut self, index: u64) -> Result<()> {
        self.check_usable()?;
        let Some(next) = self.next_index() else {
            return Ok(());
        };
        if index.saturating_add(1) >= next {
            return Ok(());
        }
        let first_dropped = index + 1;
        let log_first = self.segments[0].first_index;
        if first_dropped < log_first {
            return Err(WalError::OutOfRange {
                index,
                first: self.first_index(),
                last: self.last_index(),
            });
        }
        let k = self
            .segments
            .partition_point(|s| s.first_index <= first_dropped)
            - 1;
        if let Some(archived) = self.segments[k..]
            .iter()
            .find(|s| matches!(s.storage, Storage::Archived))
        {
            return Err(WalError::TruncateArchived {
                index,
                path: archived.path.clone(),
            });
        }
        self.writer = None;
        while self.segments.len() > k + 1 {
            if let Some(newest) = self.segments.pop() {
                self.remove_durably(&newest.path)?;
            }
        }
        let segment = &mut self.segments[k];
        let Storage::Raw { offsets, len } = &mut segment.storage else {
            return Err(WalError::Failed("internal: truncating an archive".into()));
        };
        let keep = (first_dropped - segment.first_index) as usize;
        let cut_at = u64::from(offsets[keep]);
        offsets.truncate(keep);
        *len = cut_at;
        segment.entries = keep as u64;
        let path = segment.path.clone();
        let writer = match self.fs.open_append(&path) {
            Ok(writer) => self.writer.insert(writer),
            Err(source) => {
                return Err(self.fail(WalError::Io {
                    op: "open for truncating",
                    path,
                    source,
                }));
            }
        };
        if let Err(source) = writer.truncate(cut_at).and_then(|()| writer.sync_data()) {
            self.cut_unsynced_tail();
            return Err(self.fail(WalError::Io {
                op: "truncate",
                path,
                source,
            }));
        }
        self.unsynced = false;
        self.synced_next = first_dropped;
        tracing::info!(after = index, "truncated write-ahead log tail");
        Ok(())
    }

    /// Removes a file and makes the removal durable before anything else happens, so a crash
    /// can never leave a hole in the middle of the log.
    fn remove_durably(&mut self, path: &Path) -> Result<()> {
        let result = self
            .fs
            .remove_file(path)
            .map_err(WalError::io("remove", path))
            .and_then(|()| {
                self.fs
                    .sync_dir(&self.dir)
                    .map_err(WalError::io("fsync directory", &self.dir))
            });
        result.map_err(|e| self.fail(e))
    }

    /// After a snapshot at `snapshot_index` was installed: drops every entry and restarts the
    /// log empty at `snapshot_index + 1` (an empty segment with that name records it durably).
    pub fn reset_after_snapshot(&mut self, snapshot_index: u64) -> Result<()> {
        self.check_usable()?;
        let Some(restart) = snapshot_index.checked_add(1) else {
            return Err(WalError::OutOfRange {
                index: snapshot_index,
                first: self.first_index(),
                last: self.last_index(),
            });
        };
        self.forget_cached_archive();
        self.writer = None;
        while let Some(newest) = self.segments.pop() {
            self.remove_durably(&newest.path)?;
        }
        self.unsynced = false;
        self.roll(restart)?;
        self.synced_next = restart;
        // The restart is durable: a received snapshot's marker has done its job.
        if let Err(error) = crate::restart::remove_marker(self.fs.as_ref(), &self.dir) {
            return Err(self.fail(error));
        }
        tracing::info!(snapshot_index, "write-ahead log restarted after snapshot");
        Ok(())
    }

    /// Compresses every completed (non-newest) raw segment whose entries are all `<= up_to`
    /// (committed, so never truncated again) into a zstd archive when the compressor is zstd;
    /// returns how many were archived. Each archive is written to a temp file, synced and
    /// renamed before the raw segment is removed.
    pub fn archive_completed_segments(&mut self, up_to: u64) -> Result<usize> {
        self.check_usable()?;
        if self.config.compressor == Compressor::None {
            return Ok(0);
        }
        let mut archived = 0;
        for k in 0..self.segments.len().saturating_sub(1) {
            let segment = &self.segments[k];
            let Storage::Raw { len, .. } = segment.storage else {
                continue;
            };
            if segment.next_index() - 1 > up_to {
                break;
            }
            let archive = self.dir.join(segment::archive_name(segment.first_index));
            let raw = segment.path.clone();
            segment::write_archive(
                self.fs.as_ref(),
                &self.dir,
                &raw,
                &archive,
                len,
                self.config.zstd_level,
            )?;
            self.segments[k].storage = Storage::Archived;
            self.segments[k].path = archive;
            self.remove_durably(&raw)?;
            archived += 1;
        }
        Ok(archived)
    }

    /// Removes the oldest segments whose entries are all `<= up_to` (covered by a snapshot),
    /// oldest first, always keeping at least `segments_to_keep` (and never fewer than one).
    pub fn prune(&mut self, up_to: u64, segments_to_keep: usize) -> Result<usize> {
        self.check_usable()?;
        let keep = segments_to_keep.max(1);
        self.forget_cached_archive();
        let mut removed = 0;
        while self.segments.len() > keep {
            let oldest = &self.segments[0];
            if oldest.entries == 0 || oldest.next_index() - 1 > up_to {
                break;
            }
            let path = oldest.path.clone();
            self.remove_durably(&path)?;
            self.segments.remove(0);
            removed += 1;
        }
        Ok(removed)
    }
}
