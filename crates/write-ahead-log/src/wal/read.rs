//! Reading ranges of entries through the in-memory offset index, re-checking CRCs.
//!
//! Raw segments are read from the first wanted record for about the byte budget; archives are
//! decompressed (bounded by `max_segment_bytes`) and the last one is cached for the next read.

use std::io::{Read, Seek, SeekFrom};

use bytes::Bytes;

use super::{Entry, Segment, Storage, Wal};
use crate::error::{Result, WalError};
use crate::record;
use crate::segment;

impl Wal {
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

    pub(super) fn forget_cached_archive(&mut self) {
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
}
