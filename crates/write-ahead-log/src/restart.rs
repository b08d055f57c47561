//! The restart marker: makes "a received snapshot replaces the log" survive a crash.
//!
//! A snapshot received from a peer covers index N with values that may differ from this node's
//! log at or below N (there it may hold accepted values that were never chosen). Once the
//! snapshot is in place the log must restart at N + 1, or those stale entries would sit below
//! the node's committed index and could be served to peers as committed. Renaming the snapshot
//! and resetting the log are two steps, so [`crate::SnapshotReceiver`] first makes a marker
//! naming N durable (temp, fsync, rename, directory fsync), then renames the snapshot;
//! [`crate::Wal::reset_after_snapshot`] removes the marker once the log restarts. On start-up,
//! [`crate::recover`] finds a marker whose N equals the head snapshot's index and finishes the
//! reset (keeping the accepted entries above N), or drops a marker whose snapshot never arrived.
//!
//! Format: `u64 index | u32 crc32c(index bytes)`, little-endian.

use std::path::{Path, PathBuf};

use crate::error::{Result, WalError};
use crate::fs::FileSystem;
use crate::segment::tmp_path;

/// File name of the marker inside the log directory.
pub const RESTART_MARKER: &str = "restart.pending";

/// Where the marker of `dir` lives.
pub fn marker_path(dir: &Path) -> PathBuf {
    dir.join(RESTART_MARKER)
}

/// Durably records that the log of `dir` must restart after `index`.
pub fn write_marker(fs: &dyn FileSystem, dir: &Path, index: u64) -> Result<()> {
    let path = marker_path(dir);
    let tmp = tmp_path(&path);
    let mut bytes = [0u8; 12];
    bytes[..8].copy_from_slice(&index.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..8]);
    bytes[8..].copy_from_slice(&crc.to_le_bytes());
    let mut file = fs.create(&tmp).map_err(WalError::io("create", &tmp))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_data())
        .map_err(WalError::io("write", &tmp))?;
    drop(file);
    fs.rename(&tmp, &path)
        .map_err(WalError::io("rename into place", &path))?;
    fs.sync_dir(dir)
        .map_err(WalError::io("fsync directory", dir))
}

/// The index recorded by the marker of `dir`, if there is one.
pub fn read_marker(fs: &dyn FileSystem, dir: &Path) -> Result<Option<u64>> {
    let path = marker_path(dir);
    if !fs.exists(&path).map_err(WalError::io("check", &path))? {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(
            fs.open_read(&path).map_err(WalError::io("open", &path))?,
            13,
        ),
        &mut bytes,
    )
    .map_err(WalError::io("read", &path))?;
    let corrupt = |reason: &str| WalError::CorruptSnapshot {
        path: path.clone(),
        offset: 0,
        reason: format!("restart marker {reason}"),
    };
    let Ok(bytes) = <[u8; 12]>::try_from(bytes.as_slice()) else {
        return Err(corrupt("is not 12 bytes long"));
    };
    let mut index = [0u8; 8];
    index.copy_from_slice(&bytes[..8]);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[8..]);
    if crc32c::crc32c(&index) != u32::from_le_bytes(crc) {
        return Err(corrupt("CRC mismatch"));
    }
    Ok(Some(u64::from_le_bytes(index)))
}

/// Removes the marker of `dir` durably, if there is one.
pub fn remove_marker(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    let path = marker_path(dir);
    if !fs.exists(&path).map_err(WalError::io("check", &path))? {
        return Ok(());
    }
    fs.remove_file(&path)
        .map_err(WalError::io("remove", &path))?;
    fs.sync_dir(dir)
        .map_err(WalError::io("fsync directory", dir))
}
