//! The hot path: append a batch into one reused buffer and one write, sync with one fdatasync.
//!
//! Segments roll when the active one would pass `segment_target_bytes`: the old segment is
//! synced and the new file's directory entry made durable before anything is written into it.
//! A failed write or fsync marks the handle dead and cuts unsynced bytes off the newest segment.

use super::{Segment, Storage, Wal};
use crate::error::{Result, WalError};
use crate::record;
use crate::segment;

impl Wal {
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
            if index == u64::MAX {
                // Reserved: the next index after it would not fit in a u64.
                return Err(WalError::OutOfRange {
                    index,
                    first: self.first_index(),
                    last: self.last_index(),
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

    pub(super) fn flush(&mut self, buf: &mut Vec<u8>) -> Result<()> {
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
    pub(super) fn roll(&mut self, first_index: u64) -> Result<()> {
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
    pub(super) fn cut_unsynced_tail(&mut self) {
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
}
