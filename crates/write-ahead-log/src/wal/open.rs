//! Opening the log: clean up after interrupted work, check every record, cut a torn tail.
//!
//! Temp files are removed, a raw segment that also has a complete archive is removed, every
//! segment is scanned (CRCs, indexes running on without gaps), and only the newest raw segment
//! may lose a torn or damaged last record. What was read is synced before it is built upon.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::{RecoveryReport, Segment, Storage, TornTail, Wal};
use crate::config::WalConfig;
use crate::error::{Result, WalError};
use crate::fs::FileSystem;
use crate::segment::{self, SegmentName, TailPolicy};

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
        let existed = fs.exists(&dir).map_err(WalError::io("check", &dir))?;
        fs.create_dir_all(&dir)
            .map_err(WalError::io("create directory", &dir))?;
        if !existed && let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            // A new directory's own entry must be durable too, or a crash could lose it with
            // every segment inside.
            fs.sync_dir(parent)
                .map_err(WalError::io("fsync directory", parent))?;
        }
        let mut recovery = RecoveryReport::default();
        let names = fs
            .list_dir(&dir)
            .map_err(WalError::io("list directory", &dir))?;

        let mut found: BTreeMap<u64, (bool, bool)> = Default::default();
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
        // One buffer for every raw segment: its pages are faulted in once, not per segment.
        let mut raw = Vec::new();
        for (&first, &(_, archived)) in &found {
            let is_newest = Some(first) == newest;
            let (path, unpacked) = if archived {
                let path = dir.join(segment::archive_name(first));
                let data = segment::read_archive(fs.as_ref(), &path, config.max_segment_bytes)?;
                (path, Some(data))
            } else {
                let path = dir.join(segment::raw_name(first));
                segment::read_raw_into(fs.as_ref(), &path, config.max_segment_bytes, &mut raw)?;
                (path, None)
            };
            let data: &[u8] = unpacked.as_deref().unwrap_or(&raw);
            let policy = if is_newest && !archived {
                TailPolicy::CutTornTail
            } else {
                TailPolicy::Strict
            };
            let scan = segment::scan(&path, data, first, config.max_entry_bytes, policy)?;
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
        let wal = Wal {
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
        };
        tracing::info!(
            dir = %wal.dir.display(),
            segments = wal.segments.len(),
            first_index = ?wal.first_index(),
            last_index = ?wal.last_index(),
            "opened write-ahead log"
        );
        Ok(wal)
    }
}
