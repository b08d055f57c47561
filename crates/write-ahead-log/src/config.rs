//! Configuration of the log, with the limits that bound every allocation.

use crate::error::{Result, WalError};
use crate::record;

/// How completed segments are archived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compressor {
    /// Keep completed segments raw.
    None,
    /// Compress completed segments with zstd into `*.wal.zst`.
    #[default]
    Zstd,
}

/// Settings of a [`crate::Wal`].
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// Largest entry accepted by `append` and by the decoder (checked before allocating).
    pub max_entry_bytes: u32,
    /// A new segment is started when the active one would grow beyond this.
    pub segment_target_bytes: u64,
    /// Largest segment the reader accepts (bounds archive decompression).
    pub max_segment_bytes: u64,
    /// Archive completed segments with zstd, or keep them raw.
    pub compressor: Compressor,
    /// zstd compression level for archives.
    pub zstd_level: i32,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            max_entry_bytes: 32 << 20,
            segment_target_bytes: 64 << 20,
            max_segment_bytes: 1 << 30,
            compressor: Compressor::Zstd,
            zstd_level: 3,
        }
    }
}

impl WalConfig {
    /// Checks that the limits are consistent.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field, reason: String| Err(WalError::Config { field, reason });
        if self.max_entry_bytes == 0 || self.max_entry_bytes > 1 << 30 {
            return invalid(
                "max_entry_bytes",
                format!("{} is outside 1..=1 GiB", self.max_entry_bytes),
            );
        }
        if self.segment_target_bytes == 0 || self.segment_target_bytes > 1 << 31 {
            return invalid(
                "segment_target_bytes",
                format!("{} is outside 1..=2 GiB", self.segment_target_bytes),
            );
        }
        let needed =
            self.segment_target_bytes + record::record_len(self.max_entry_bytes as usize) as u64;
        if self.max_segment_bytes < needed || self.max_segment_bytes > u64::from(u32::MAX) {
            return invalid(
                "max_segment_bytes",
                format!(
                    "{} must be at least segment_target_bytes + one largest record ({needed}) and below 4 GiB",
                    self.max_segment_bytes
                ),
            );
        }
        Ok(())
    }
}
