//! The segmented write-ahead log: append with group commit, read ranges, replace the tail.
//!
//! Invariants kept by [`Wal`]:
//! - `segments` is sorted and contiguous: each segment starts where its predecessor ends, and
//!   only the newest may be empty; only the newest is written to.
//! - Only the newest segment can hold unsynced bytes: a roll syncs the old segment first.
//! - Directory changes that remove segments are made durable one by one (remove, fsync dir) so
//!   a crash never leaves a hole in the middle of the log.
//! - After a failed write or fsync the handle is dead: every call returns [`WalError::Failed`]
//!   naming the original failure. Linux may drop dirty pages on a failed fsync, so retrying and
//!   carrying on could silently lose entries that were reported written.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::config::{Compressor, WalConfig};
use crate::error::{Result, WalError};
use crate::fs::{FileSystem, WritableFile};
use crate::record;
use crate::segment::{self, SegmentName, TailPolicy};

/// One log entry as read back: its index and its (opaque) bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The log index.
    pub index: u64,
    /// The entry's bytes, sharing one buffer with the other entries of the same read.
    pub bytes: Bytes,
}

/// A torn or damaged record cut off the newest segment when opening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub path: PathBuf,
    /// Offset of the first dropped byte (the new file length).
    pub offset: u64,
    /// How many bytes were dropped.
    pub dropped_bytes: u64,
    /// What was wrong with the first dropped record.
    pub reason: String,
}

/// What opening had to repair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The torn tail that was cut off, if any.
    pub torn_tail: Option<TornTail>,
    /// Temporary files (interrupted archives or snapshots) that were removed.
    pub removed_temp_files: Vec<PathBuf>,
    /// Raw segments removed because a complete archive of them existed.
    pub removed_archived_raw: Vec<PathBuf>,
}

#[derive(Debug)]
enum Storage {
    Raw { offsets: Vec<u32>, len: u64 },
    Archived,
}

#[derive(Debug)]
struct Segment {
    first_index: u64,
    entries: u64,
    path: PathBuf,
    storage: Storage,
}

impl Segment {
    fn next_index(&self) -> u64 {
        self.first_index + self.entries
    }
}

/// The write-ahead log of one node: a directory of segments named by their first index.
pub struct Wal {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    config: WalConfig,
    segments: Vec<Segment>,
    /// Open on the newest segment when that segment is raw.
    writer: Option<Box<dyn WritableFile>>,
    /// Reused for every batch so appending does not allocate.
    encode_buf: Vec<u8>,
    unsynced: bool,
    /// The index after the last durable entry (meaningful only when the log has segments).
    synced_next: u64,
    failure: Option<Arc<str>>,
    recovery: RecoveryReport,
    /// The last archive decompressed by `read` (first index, records), so a peer catching up
    /// through an archive in many small reads decompresses it once.
    archive_cache: Mutex<Option<(u64, Bytes)>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("first_index", &self.first_index())
            .field("last_index", &self.last_index())
            .field("segments", &self.segments.len())
            .field("failure", &self.failure)
            .finish()
    }
}

impl Wal {
    /// Opens (or creates) the log in `dir`: removes temp files, finishes interrupted archiving,
    /// checks every record, and cuts a torn tail off the newest segment (logged as a warning
    /// and reported by [`Wal::recovery_report`]). Damage anywhere else is an error naming the
    /// file and offset.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: impl Into<PathBuf>,
        config: WalConfig,
    ) -> Result<Wal> {
        config.validate()?;
        let dir = dir.into();
        fs.create_dir_all(&dir)
            .map_err(WalError::io("create directory", &dir))?;
        let mut recovery = RecoveryReport::default();
        let names = fs
            .list_dir(&dir)
            .map_err(WalError::io("list directory", &dir))?;

        let mut found: std::collections::BTreeMap<u64, (bool, bool)> = Default::default();
        for name in &names {
            if name.ends_with(segment::TMP_SUFFIX) {
                let path = dir.join(name);
                fs.remove_file(&path)
                    .map_err(WalError::io("remove temp file", &path))?;
                recovery.removed_temp_files.push(path);
                continue;
            }
            match segment::parse_name(name) {
                Some(SegmentName::Raw(first)) => found.entry(first).or_default().0 = true,
                Some(SegmentName::Archived(first)) => found.entry(first).or_default().1 = true,
                None => {}
            }
        }
        for (&first, (raw, archived)) in &mut found {
            if *raw && *archived {
                // The archive was renamed into place only after it was complete and synced.
                let path = dir.join(segment::raw_name(first));
                fs.remove_file(&path)
                    .map_err(WalError::io("remove archived raw segment", &path))?;
                recovery.removed_archived_raw.push(path);
                *raw = false;
            }
        }
        if !recovery.removed_temp_files.is_empty() || !recovery.removed_archived_raw.is_empty() {
            fs.sync_dir(&dir)
                .map_err(WalError::io("fsync directory", &dir))?;
        }

        let mut segments: Vec<Segment> = Vec::with_capacity(found.len());
        let newest = found.keys().next_back().copied();
        for (&first, &(_, archived)) in &found {
            let is_newest = Some(first) == newest;
            let (path, data) = if archived {
                let path = dir.join(segment::archive_name(first));
                let data = segment::read_archive(fs.as_ref(), &path, config.max_segment_bytes)?;
                (path, data)
            } else {
                let path = dir.join(segment::raw_name(first));
                let data = segment::read_raw(fs.as_ref(), &path)?;
                (path, data)
            };
            let policy = if is_newest && !archived {
                TailPolicy::CutTornTail
            } else {
                TailPolicy::Strict
            };
            let scan = segment::scan(&path, &data, first, config.max_entry_bytes, policy)?;
            if let Some(previous) = segments.last()
                && previous.next_index() != first
            {
                return Err(WalError::Gap {
                    path,
                    expected: previous.next_index(),
                    found: first,
                });
            }
            if scan.offsets.is_empty() && !is_newest {
                return Err(WalError::CorruptSegment {
                    path,
                    offset: 0,
                    reason: "segment holds no entries but is not the newest".to_owned(),
                });
            }
            if let Some(reason) = scan.cut_reason {
                let dropped_bytes = data.len() as u64 - scan.valid_len;
                tracing::warn!(
                    file = %path.display(),
                    offset = scan.valid_len,
                    dropped_bytes,
                    %reason,
                    "cutting torn tail off the newest write-ahead log segment"
                );
                let mut file = fs.open_append(&path).map_err(WalError::io("open", &path))?;
                file.truncate(scan.valid_len)
                    .map_err(WalError::io("truncate torn tail of", &path))?;
                file.sync_data().map_err(WalError::io("fsync", &path))?;
                recovery.torn_tail = Some(TornTail {
                    path: path.clone(),
                    offset: scan.valid_len,
                    dropped_bytes,
                    reason,
                });
            }
            let storage = if archived {
                Storage::Archived
            } else {
                Storage::Raw {
                    offsets: scan.offsets.clone(),
                    len: scan.valid_len,
                }
            };
            segments.push(Segment {
                first_index: first,
                entries: scan.offsets.len() as u64,
                path,
                storage,
            });
        }

        let synced_next = segments.last().map_or(0, Segment::next_index);
        let mut writer = match segments.last() {
            Some(newest) if matches!(newest.storage, Storage::Raw { .. }) => Some(
                fs.open_append(&newest.path)
                    .map_err(WalError::io("open for appending", &newest.path))?,
            ),
            _ => None,
        };
        // What we just read may still be only in the page cache, written by a process that
        // died before syncing (the machine kept running). Make it durable before building on
        // it, or a later crash could lose entries under ones we acknowledge.
        if let (Some(writer), Some(newest)) = (&mut writer, segments.last()) {
            writer
                .sync_data()
                .map_err(WalError::io("fsync", &newest.path))?;
        }
        fs.sync_dir(&dir)
            .map_err(WalError::io("fsync directory", &dir))?;
        Ok(Wal {
            fs,
            dir,
            config,
            segments,
            writer,
            encode_buf: Vec::new(),
            unsynced: false,
            synced_next,
            failure: None,
            recovery,
            archive_cache: Mutex::new(None),
        })
    }

    /// What opening repaired.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file system the log uses.
    pub fn fs(&self) -> &Arc<dyn FileSystem> {
        &self.fs
    }

    /// The configuration the log was opened with.
    pub fn config(&self) -> &WalConfig {
        &self.config
    }

    /// The index the next appended entry must have; `None` for a brand-new log, which accepts
    /// any first index.
    pub fn next_index(&self) -> Option<u64> {
        self.segments.last().map(Segment::next_index)
    }

    /// The first index held, `None` if the log holds no entries.
    pub fn first_index(&self) -> Option<u64> {
        let first = self.segments.first()?.first_index;
        (self.next_index()? > first).then_some(first)
    }

    /// The last index held (synced or not), `None` if the log holds no entries.
    pub fn last_index(&self) -> Option<u64> {
        self.first_index()?;
        Some(self.next_index()? - 1)
    }

    /// The index up to which everything handed to this log is durable (entries before the
    /// log's first index count as durable: they were pruned after a snapshot, or the log was
    /// reset after one). `None` for a brand-new log with nothing synced.
    pub fn durable_index(&self) -> Option<u64> {
        self.segments.last()?;
        self.synced_next.checked_sub(1)
    }

    /// First indexes of the segments, oldest first, and whether each is archived.
    pub fn segment_starts(&self) -> Vec<(u64, bool)> {
        self.segments
            .iter()
            .map(|s| (s.first_index, matches!(s.storage, Storage::Archived)))
            .collect()
    }

    fn check_usable(&self) -> Result<()> {
        match &self.failure {
            Some(failure) => Err(WalError::Failed(Arc::clone(failure))),
            None => Ok(()),
        }
    }

    /// Marks the handle dead because of `error`, and returns it.
    fn fail(&mut self, error: WalError) -> WalError {
        tracing::error!(dir = %self.dir.display(), %error, "write-ahead log failed; refusing further work");
        self.failure = Some(error.to_string().into());
        error
    }

    /// Encodes `entries` and writes them to the newest segment (starting new segments as
    /// needed), without syncing. Indexes must follow on from [`Wal::next_index`]. If an entry is
    /// refused (wrong index, too large), the entries before it are appended and the error
    /// returned. Pair with [`Wal::sync`]: many appends can share one sync (group commit).
    pub fn append<I, B>(&mut self, entries: I) -> Result<()>
    where
        I: IntoIterator<Item = (u64, B)>,
        B: AsRef<[u8]>,
    {
        self.check_usable()?;
        let mut buf = std::mem::take(&mut self.encode_buf);
        buf.clear();
        let result = self.append_into(entries, &mut buf);
        // After a failed write the handle is dead: never write the leftover buffer after it.
        let flushed = if buf.is_empty() || self.failure.is_some() {
            Ok(())
        } else {
            self.flush(&mut buf)
        };
        self.encode_buf = buf;
        result.and(flushed)
    }

    fn append_into<I, B>(&mut self, entries: I, buf: &mut Vec<u8>) -> Result<()>
    where
        I: IntoIterator<Item = (u64, B)>,
        B: AsRef<[u8]>,
    {
        for (index, bytes) in entries {
            let bytes = bytes.as_ref();
            if let Some(expected) = self.next_index()
                && index != expected
            {
                return Err(WalError::NonContiguous {
                    expected,
                    got: index,
                });
            }
            if bytes.len() > self.config.max_entry_bytes as usize {
                return Err(WalError::EntryTooLarge {
                    index,
                    len: bytes.len(),
                    max: self.config.max_entry_bytes,
                });
            }
            let record_len = record::record_len(bytes.len()) as u64;
            if self.must_roll(buf.len() as u64 + record_len) {
                if !buf.is_empty() {
                    self.flush(buf)?;
                }
                self.roll(index)?;
            }
            let Some(Segment {
                entries: count,
                storage: Storage::Raw { offsets, len },
                ..
            }) = self.segments.last_mut()
            else {
                return Err(WalError::Failed(
                    "internal: no raw segment to append to".into(),
                ));
            };
            // A segment never exceeds max_segment_bytes (< 4 GiB, checked by the config).
            offsets.push((*len + buf.len() as u64) as u32);
            *count += 1;
            record::encode_into(buf, index, bytes);
        }
        Ok(())
    }

    /// Whether a record of `pending` more bytes needs a new segment first.
    fn must_roll(&self, pending: u64) -> bool {
        match self.segments.last() {
            Some(Segment {
                entries,
                storage: Storage::Raw { len, .. },
                ..
            }) => *entries > 0 && len + pending > self.config.segment_target_bytes,
            _ => true,
        }
    }

    fn flush(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        self.check_usable()?;
        let Some(writer) = self.writer.as_mut() else {
            return Err(self.fail(WalError::Failed("internal: no open segment".into())));
        };
        if let Err(source) = writer.write_all(buf) {
            let path = self
                .segments
                .last()
                .map(|s| s.path.clone())
                .unwrap_or_default();
            self.cut_unsynced_tail();
            return Err(self.fail(WalError::Io {
                op: "write",
                path,
                source,
            }));
        }
        if let Some(Segment {
            storage: Storage::Raw { len, .. },
            ..
        }) = self.segments.last_mut()
        {
            *len += buf.len() as u64;
        }
        buf.clear();
        self.unsynced = true;
        Ok(())
    }

    /// Starts a new segment whose first entry will be `first_index`, after syncing the old one.
    fn roll(&mut self, first_index: u64) -> Result<()> {
        self.sync()?;
        let path = self.dir.join(segment::raw_name(first_index));
        let writer = match self.fs.create(&path) {
            Ok(writer) => writer,
            Err(source) => {
                return Err(self.fail(WalError::Io {
                    op: "create segment",
                    path,
                    source,
                }));
            }
        };
        self.writer = Some(writer);
        if let Err(source) = self.fs.sync_dir(&self.dir) {
            let dir = self.dir.clone();
            return Err(self.fail(WalError::Io {
                op: "fsync directory",
                path: dir,
                source,
            }));
        }
        tracing::debug!(file = %path.display(), "started write-ahead log segment");
        self.segments.push(Segment {
            first_index,
            entries: 0,
            path,
            storage: Storage::Raw {
                offsets: Vec::new(),
                len: 0,
            },
        });
        Ok(())
    }

    /// Makes everything appended so far durable with one `fdatasync`. A failure is fatal to
    /// the handle.
    pub fn sync(&mut self) -> Result<()> {
        self.check_usable()?;
        if !self.unsynced {
            return Ok(());
        }
        if let Some(writer) = self.writer.as_mut()
            && let Err(source) = writer.sync_data()
        {
            let path = self
                .segments
                .last()
                .map(|s| s.path.clone())
                .unwrap_or_default();
            self.cut_unsynced_tail();
            return Err(self.fail(WalError::Io {
                op: "fsync",
                path,
                source,
            }));
        }
        self.unsynced = false;
        self.synced_next = self.next_index().unwrap_or(0);
        Ok(())
    }

    /// After a failed write or fsync: best effort, cut the newest segment back to its last
    /// synced length. Linux may have dropped the dirty pages while the page cache still shows
    /// them, so without this a reopen (without a reboot) would read entries that never reach
    /// the disk and later find a hole of zeroes in the middle of the log.
    fn cut_unsynced_tail(&mut self) {
        let Some(Segment {
            first_index,
            storage: Storage::Raw { offsets, len },
            path,
            ..
        }) = self.segments.last()
        else {
            return;
        };
        let synced_entries = self.synced_next.saturating_sub(*first_index) as usize;
        let keep = offsets
            .get(synced_entries)
            .map_or(*len, |&offset| u64::from(offset));
        let Some(writer) = self.writer.as_mut() else {
            return;
        };
        match writer.truncate(keep).and_then(|()| writer.sync_data()) {
            Ok(()) => {
                tracing::warn!(file = %path.display(), length = keep, "cut unsynced bytes after a failed write or fsync")
            }
            Err(error) => {
                tracing::error!(file = %path.display(), %error, "could not cut unsynced bytes after a failed write or fsync")
            }
        }
    }

    /// [`Wal::append`] then [`Wal::sync`]: the batch is durable when this returns `Ok`.
    pub fn append_and_sync<I, B>(&mut self, entries: I) -> Result<()>
    where
        I: IntoIterator<Item = (u64, B)>,
        B: AsRef<[u8]>,
    {
        self.append(entries)?;
        self.sync()
    }

    /// Reads entries `from..=to` (clamped to the last index), stopping early once `max_bytes`
    /// of entry bytes are collected; at least one entry is returned when `from` is held.
    /// CRCs are checked again, so damage after opening is reported, not returned.
    pub fn read(&self, from: u64, to: u64, max_bytes: usize) -> Result<Vec<Entry>> {
        self.check_usable()?;
        let out_of_range = || WalError::OutOfRange {
            index: from,
            first: self.first_index(),
            last: self.last_index(),
        };
        let (Some(first), Some(last)) = (self.first_index(), self.last_index()) else {
            return Err(out_of_range());
        };
        if from < first || from > last {
            return Err(out_of_range());
        }
        let to = to.min(last);
        let mut out = Vec::new();
        let mut collected = 0usize;
        let mut next = from;
        while next <= to && (out.is_empty() || collected < max_bytes) {
            let k = self.segments.partition_point(|s| s.first_index <= next) - 1;
            let budget = max_bytes.saturating_sub(collected);
            let before = out.len();
            self.read_segment(&self.segments[k], next, to, budget, &mut out)?;
            collected += out[before..].iter().map(|e| e.bytes.len()).sum::<usize>();
            match out.last() {
                Some(entry) if out.len() > before => next = entry.index + 1,
                _ => return Err(out_of_range()),
            }
        }
        Ok(out)
    }

    /// Appends entries `from..=min(to, end of segment)` to `out`, at least one and otherwise
    /// about `budget` bytes' worth.
    fn read_segment(
        &self,
        segment: &Segment,
        from: u64,
        to: u64,
        budget: usize,
        out: &mut Vec<Entry>,
    ) -> Result<()> {
        let last_here = to.min(segment.next_index().saturating_sub(1));
        if from > last_here {
            return Ok(());
        }
        let path = &segment.path;
        let (data, base) = match &segment.storage {
            Storage::Raw { offsets, len } => {
                let start_pos = (from - segment.first_index) as usize;
                let end_pos = (last_here - segment.first_index) as usize + 1;
                let start = u64::from(offsets[start_pos]);
                // Read only about `budget` bytes: whole records, at least one.
                let within_budget = offsets[start_pos + 1..end_pos]
                    .partition_point(|&o| u64::from(o) - start < budget as u64);
                let end_pos = start_pos + 1 + within_budget;
                let end = offsets.get(end_pos).map_or(*len, |&o| u64::from(o));
                let mut data = vec![0u8; (end - start) as usize];
                let mut file = self
                    .fs
                    .open_read(path)
                    .map_err(WalError::io("open", path))?;
                file.seek(SeekFrom::Start(start))
                    .and_then(|_| file.read_exact(&mut data))
                    .map_err(WalError::io("read", path))?;
                (Bytes::from(data), start)
            }
            Storage::Archived => (self.read_archive_cached(segment)?, 0),
        };
        let mut offset = 0usize;
        let mut taken = 0usize;
        while offset < data.len() {
            let decoded =
                record::decode_at(&data, offset, self.config.max_entry_bytes).map_err(|e| {
                    WalError::CorruptSegment {
                        path: path.clone(),
                        offset: base + offset as u64,
                        reason: e.reason(),
                    }
                })?;
            offset = decoded.end;
            if decoded.index < from {
                continue;
            }
            if decoded.index > last_here || (taken > 0 && taken >= budget) {
                break;
            }
            taken += decoded.end - decoded.entry_start;
            out.push(Entry {
                index: decoded.index,
                bytes: data.slice(decoded.entry_start..decoded.end),
            });
        }
        Ok(())
    }

    fn forget_cached_archive(&mut self) {
        *self
            .archive_cache
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }

    fn read_archive_cached(&self, segment: &Segment) -> Result<Bytes> {
        // The cache only ever holds a copy of immutable archive contents, so a poisoned lock
        // (a panic elsewhere) cannot leave it inconsistent.
        let mut cache = self
            .archive_cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((first, data)) = cache.as_ref()
            && *first == segment.first_index
        {
            return Ok(data.clone());
        }
        let data = Bytes::from(segment::read_archive(
            self.fs.as_ref(),
            &segment.path,
            self.config.max_segment_bytes,
        )?);
        *cache = Some((segment.first_index, data.clone()));
        Ok(data)
    }

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
        self.forget_cached_archive();
        self.writer = None;
        while let Some(newest) = self.segments.pop() {
            self.remove_durably(&newest.path)?;
        }
        self.unsynced = false;
        self.roll(snapshot_index + 1)?;
        self.synced_next = snapshot_index + 1;
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
