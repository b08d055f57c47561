//! Crash-safe replacement of the log's uncommitted tail.
//!
//! Multi-Paxos may replace accepted-but-uncommitted entries at the end of the log with the
//! values of a higher ballot. With a truncate-and-append log that is two steps: cut the old
//! entries, then write the new ones. A crash between the two would leave the node with neither,
//! although it has already told a proposer that it accepted the old ones. A later proposer whose
//! quorum includes this node could then miss a value that was chosen, and choose another one:
//! a Paxos safety violation.
//!
//! So a replacement goes through a small redo file in the node's home directory:
//! 0. the log is synced first, so everything below the replacement is durable (otherwise a
//!    crash could leave a log that ends below the redo file's first entry, which recovery
//!    could not append to: found by the whole-node simulator, seed 119 of a sabotaged run);
//! 1. the replacement entries are written to `overwrite.redo` atomically (temp file, fsync,
//!    rename, fsync the directory);
//! 2. the log is truncated, the entries appended, and the log synced;
//! 3. the redo file is removed, and the directory synced.
//!
//! A crash before step 1 completes leaves the old tail intact; after it, recovery finds the redo
//! file and performs steps 2 and 3 again (they are idempotent). The redo file is removed
//! durably before the replacement is reported durable, so a stale redo file can never cut
//! entries written after it. Overwrites happen only after a change of master, so the extra
//! fsyncs are off the hot path.
//!
//! Every file operation goes through the WAL's [`FileSystem`] (`Wal::fs`), so the simulator's
//! crashes hit the redo file exactly as they hit the log.
//!
//! File format: magic `RKREDO1\n`, `u32` entry count, then per entry `u64` index, `u32` length,
//! bytes; then a `u32` CRC32C of everything before it. All integers little-endian.

use std::io::Read;
use std::path::{Path, PathBuf};

use write_ahead_log::{FileSystem, Wal, WalError};

/// File name of the redo file inside the home directory.
pub const REDO_FILE: &str = "overwrite.redo";
/// Replacement log entries: consecutive `(index, record payload)` pairs.
pub type Entries = Vec<(u64, Vec<u8>)>;

const MAGIC: &[u8; 8] = b"RKREDO1\n";
/// A redo file larger than this is refused before it is read (a tail overwrite is bounded by
/// the Paxos pipeline window, far below this).
const MAX_REDO_BYTES: u64 = 1 << 30;

/// A redo file that cannot be written, read or applied.
#[derive(Debug, thiserror::Error)]
pub enum RedoError {
    /// I/O failed.
    #[error("log-overwrite redo file {}: cannot {op}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The file is damaged. It is only ever installed whole (by rename), so damage means the
    /// disk changed it.
    #[error(
        "log-overwrite redo file {} is corrupt ({problem}); it holds log entries that replace \
         the uncommitted end of this node's write-ahead log. Move the node's home directory \
         aside and restart the node empty so it catches up from its peers",
        path.display()
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The log refused the replacement.
    #[error(transparent)]
    Wal(#[from] WalError),
}

/// Replaces the log's entries from `entries[0].0` on with `entries` (consecutive indexes),
/// crash-safely as the module documentation describes. The log is synced on return.
pub fn replace_tail(
    home: &Path,
    wal: &mut Wal,
    entries: &[(u64, Vec<u8>)],
) -> Result<(), RedoError> {
    let Some(&(first, _)) = entries.first() else {
        return Ok(());
    };
    let fs = std::sync::Arc::clone(wal.fs());
    // The entries below `first` may have been appended in this storage round and not synced
    // yet: make them durable before the redo file, so recovery always finds the log reaching
    // at least `first - 1` when it finds the redo file.
    wal.sync()?;
    write(fs.as_ref(), home, entries)?;
    apply(wal, first, entries)?;
    remove(fs.as_ref(), home)
}

/// Restarts the log after a peer's head snapshot at `index` was installed, keeping the
/// entries above `index` (`keep`, consecutive from `index + 1`): they are values this node
/// accepted, which it must not forget. The kept entries go through the redo file, so a crash
/// between the reset and their re-append loses nothing. The log is synced on return.
pub fn reset_keeping(
    home: &Path,
    wal: &mut Wal,
    index: u64,
    keep: &[(u64, Vec<u8>)],
) -> Result<(), RedoError> {
    let Some(&(first, _)) = keep.first() else {
        wal.reset_after_snapshot(index)?;
        wal.sync()?;
        return Ok(());
    };
    let fs = std::sync::Arc::clone(wal.fs());
    write(fs.as_ref(), home, keep)?;
    wal.reset_after_snapshot(index)?;
    apply(wal, first, keep)?;
    remove(fs.as_ref(), home)
}

/// Finishes a replacement that a crash interrupted, if a redo file is present. Returns how many
/// entries it rewrote.
pub fn finish_interrupted(home: &Path, wal: &mut Wal) -> Result<Option<usize>, RedoError> {
    let fs = std::sync::Arc::clone(wal.fs());
    let Some(entries) = load(fs.as_ref(), home)? else {
        return Ok(None);
    };
    if let Some(&(first, _)) = entries.first() {
        let next = wal.next_index().unwrap_or(first);
        if first > next {
            // Written by a version that did not sync the log before the redo file: the log
            // lost entries below `first` that were appended in the same storage round, so
            // nothing of that round (the redo entries included) was ever reported durable.
            // Dropping the redo file loses nothing acknowledged; appending it would leave a
            // gap in the log.
            tracing::warn!(
                first,
                next,
                "dropped a log-overwrite redo file that starts above the end of the log (its                  entries were never acknowledged)"
            );
            remove(fs.as_ref(), home)?;
            return Ok(Some(0));
        }
        apply(wal, first, &entries)?;
    }
    remove(fs.as_ref(), home)?;
    Ok(Some(entries.len()))
}

fn apply(wal: &mut Wal, first: u64, entries: &[(u64, Vec<u8>)]) -> Result<(), RedoError> {
    wal.truncate_after(first.saturating_sub(1))?;
    wal.append(entries.iter().map(|(i, b)| (*i, b.as_slice())))?;
    wal.sync()?;
    Ok(())
}

fn encode(entries: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let body: usize = entries.iter().map(|(_, b)| 12 + b.len()).sum();
    let mut out = Vec::with_capacity(MAGIC.len() + 4 + body + 4);
    out.extend_from_slice(MAGIC);
    // Entry counts and lengths are bounded by the Paxos batch limits (u32 fits).
    out.extend_from_slice(
        &u32::try_from(entries.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    for (index, bytes) in entries {
        out.extend_from_slice(&index.to_le_bytes());
        out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn decode(path: &Path, data: &[u8]) -> Result<Entries, RedoError> {
    let corrupt = |problem: &str| RedoError::Corrupt {
        path: path.to_path_buf(),
        problem: problem.to_string(),
    };
    if data.len() < MAGIC.len() + 8 || &data[..MAGIC.len()] != MAGIC {
        return Err(corrupt("bad magic or too short"));
    }
    let (body, crc_bytes) = data.split_at(data.len() - 4);
    let stored_crc = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    if crc32c::crc32c(body) != stored_crc {
        return Err(corrupt("CRC mismatch"));
    }
    let mut rest = &body[MAGIC.len()..];
    let mut take = |n: usize| -> Result<&[u8], RedoError> {
        if rest.len() < n {
            return Err(corrupt("truncated entry"));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let count = u32::from_le_bytes(take(4)?.try_into().map_err(|_| corrupt("count"))?);
    let mut entries = Vec::new();
    for _ in 0..count {
        let index = u64::from_le_bytes(take(8)?.try_into().map_err(|_| corrupt("index"))?);
        let len = u32::from_le_bytes(take(4)?.try_into().map_err(|_| corrupt("length"))?);
        let bytes = take(len as usize)?.to_vec();
        if let Some(&(prev, _)) = entries.last()
            && index != prev + 1
        {
            return Err(corrupt("entry indexes are not consecutive"));
        }
        entries.push((index, bytes));
    }
    Ok(entries)
}

fn write(fs: &dyn FileSystem, home: &Path, entries: &[(u64, Vec<u8>)]) -> Result<(), RedoError> {
    let path = home.join(REDO_FILE);
    let tmp = home.join(format!("{REDO_FILE}.tmp"));
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| RedoError::Io { path, op, source }
    };
    let mut file = fs.create(&tmp).map_err(io("create", &tmp))?;
    file.write_all(&encode(entries))
        .map_err(io("write", &tmp))?;
    file.sync_data().map_err(io("fsync", &tmp))?;
    drop(file);
    fs.rename(&tmp, &path)
        .map_err(io("rename into place", &path))?;
    sync_dir(fs, home)
}

fn load(fs: &dyn FileSystem, home: &Path) -> Result<Option<Entries>, RedoError> {
    let path = home.join(REDO_FILE);
    let io = |op: &'static str| {
        let path = path.clone();
        move |source| RedoError::Io { path, op, source }
    };
    let len = match fs.file_len(&path) {
        Ok(len) => len,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io("stat")(source)),
    };
    if len > MAX_REDO_BYTES {
        return Err(RedoError::Corrupt {
            path,
            problem: format!("{len} bytes, more than the {MAX_REDO_BYTES} a redo file can hold"),
        });
    }
    let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    fs.open_read(&path)
        .and_then(|f| f.take(MAX_REDO_BYTES + 1).read_to_end(&mut data))
        .map_err(io("read"))?;
    if data.len() as u64 > MAX_REDO_BYTES {
        return Err(RedoError::Corrupt {
            path,
            problem: format!("more than the {MAX_REDO_BYTES} bytes a redo file can hold"),
        });
    }
    decode(&path, &data).map(Some)
}

fn remove(fs: &dyn FileSystem, home: &Path) -> Result<(), RedoError> {
    let path = home.join(REDO_FILE);
    match fs.remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(RedoError::Io {
                path,
                op: "remove",
                source,
            });
        }
    }
    sync_dir(fs, home)
}

fn sync_dir(fs: &dyn FileSystem, dir: &Path) -> Result<(), RedoError> {
    fs.sync_dir(dir).map_err(|source| RedoError::Io {
        path: dir.to_path_buf(),
        op: "fsync directory",
        source,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use write_ahead_log::{SnapshotConfig, StdFs, WalConfig};

    use super::*;

    fn open(dir: &Path) -> Wal {
        write_ahead_log::recover(
            Arc::new(StdFs),
            dir,
            WalConfig::default(),
            &SnapshotConfig::default(),
            &mut |_, _| Ok(()),
        )
        .unwrap()
        .wal
    }

    fn contents(wal: &Wal) -> Entries {
        let (Some(first), Some(last)) = (wal.first_index(), wal.last_index()) else {
            return Vec::new();
        };
        wal.read(first, last, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|e| (e.index, e.bytes.to_vec()))
            .collect()
    }

    fn entries(range: std::ops::RangeInclusive<u64>, tag: &str) -> Entries {
        range
            .map(|i| (i, format!("{tag}{i}").into_bytes()))
            .collect()
    }

    #[test]
    fn encoding_round_trips_and_damage_is_reported() {
        let home = tempfile::tempdir().unwrap();
        let e = entries(3..=5, "new");
        write(&StdFs, home.path(), &e).unwrap();
        assert_eq!(load(&StdFs, home.path()).unwrap(), Some(e));

        let path = home.path().join(REDO_FILE);
        let mut data = std::fs::read(&path).unwrap();
        data[12] ^= 0x40;
        std::fs::write(&path, &data).unwrap();
        let err = load(&StdFs, home.path()).unwrap_err();
        assert!(matches!(err, RedoError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains(REDO_FILE), "{err}");
    }

    #[test]
    fn replace_tail_rewrites_the_end_and_leaves_no_redo_file() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("wal");
        let mut wal = open(&dir);
        wal.append_and_sync(entries(1..=5, "old")).unwrap();
        replace_tail(home.path(), &mut wal, &entries(3..=4, "new")).unwrap();
        let mut expected = entries(1..=2, "old");
        expected.extend(entries(3..=4, "new"));
        assert_eq!(contents(&wal), expected);
        assert!(!home.path().join(REDO_FILE).exists());
        drop(wal);
        assert_eq!(contents(&open(&dir)), expected);
    }

    #[test]
    fn a_crash_after_the_truncation_is_finished_on_restart() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("wal");
        let mut wal = open(&dir);
        wal.append_and_sync(entries(1..=5, "old")).unwrap();
        let replacement = entries(3..=4, "new");
        // The crash window: the redo file is durable, the log was cut, nothing appended yet.
        write(&StdFs, home.path(), &replacement).unwrap();
        wal.truncate_after(2).unwrap();
        drop(wal);

        let mut wal = open(&dir);
        assert_eq!(contents(&wal), entries(1..=2, "old"));
        assert_eq!(finish_interrupted(home.path(), &mut wal).unwrap(), Some(2));
        let mut expected = entries(1..=2, "old");
        expected.extend(replacement);
        assert_eq!(contents(&wal), expected);
        assert!(!home.path().join(REDO_FILE).exists());
        // Idempotent: nothing more to finish.
        assert_eq!(finish_interrupted(home.path(), &mut wal).unwrap(), None);
    }

    #[test]
    fn reset_keeping_keeps_the_entries_above_the_snapshot() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("wal");
        let mut wal = open(&dir);
        wal.append_and_sync(entries(1..=5, "old")).unwrap();
        reset_keeping(home.path(), &mut wal, 3, &entries(4..=5, "old")).unwrap();
        assert_eq!(contents(&wal), entries(4..=5, "old"));
        assert!(!home.path().join(REDO_FILE).exists());
    }

    #[test]
    fn a_crash_between_the_reset_and_the_re_append_is_finished_on_restart() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("wal");
        let mut wal = open(&dir);
        wal.append_and_sync(entries(1..=5, "old")).unwrap();
        // The crash window: the kept entries are in the redo file, the log was reset.
        write(&StdFs, home.path(), &entries(4..=5, "old")).unwrap();
        wal.reset_after_snapshot(3).unwrap();
        drop(wal);

        let mut wal = open(&dir);
        assert_eq!(contents(&wal), Vec::new());
        assert_eq!(finish_interrupted(home.path(), &mut wal).unwrap(), Some(2));
        assert_eq!(contents(&wal), entries(4..=5, "old"));
    }

    #[test]
    fn a_crash_anywhere_in_a_replacement_over_unsynced_entries_restarts() {
        use write_ahead_log::{FileSystem, SimFs};
        let home = Path::new("/home");
        let dir = home.join("wal");
        let open_sim = |fs: &SimFs| {
            write_ahead_log::recover(
                Arc::new(fs.clone()),
                &dir,
                WalConfig::default(),
                &SnapshotConfig::default(),
                &mut |_, _| Ok(()),
            )
            .unwrap()
            .wal
        };
        for halt in 0..40 {
            let fs = SimFs::new(halt);
            fs.create_dir_all(&dir).unwrap();
            let mut wal = open_sim(&fs);
            wal.append_and_sync(entries(1..=5, "old")).unwrap();
            // Appended in the same storage round as the replacement: not synced yet.
            wal.append(
                entries(6..=7, "old")
                    .iter()
                    .map(|(i, b)| (*i, b.as_slice())),
            )
            .unwrap();
            fs.halt_after(halt);
            let done = replace_tail(home, &mut wal, &entries(7..=8, "new")).is_ok();
            drop(wal);
            fs.crash();
            let mut wal = open_sim(&fs);
            finish_interrupted(home, &mut wal)
                .unwrap_or_else(|e| panic!("halt after {halt} ops: restart fails: {e}"));
            let got = contents(&wal);
            assert!(
                got.starts_with(&entries(1..=5, "old")),
                "halt {halt}: {got:?}"
            );
            if done {
                let mut expected = entries(1..=6, "old");
                expected.extend(entries(7..=8, "new"));
                assert_eq!(got, expected, "halt {halt}");
            }
        }
    }

    #[test]
    fn a_redo_file_above_the_end_of_the_log_is_dropped_not_fatal() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("wal");
        let mut wal = open(&dir);
        wal.append_and_sync(entries(1..=5, "old")).unwrap();
        // What an older version could leave: entry 6 unsynced and lost, the redo from 7.
        write(&StdFs, home.path(), &entries(7..=8, "new")).unwrap();
        assert_eq!(finish_interrupted(home.path(), &mut wal).unwrap(), Some(0));
        assert_eq!(contents(&wal), entries(1..=5, "old"));
        assert!(!home.path().join(REDO_FILE).exists());
    }

    #[test]
    fn a_crash_before_the_truncation_is_finished_on_restart() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("wal");
        let mut wal = open(&dir);
        wal.append_and_sync(entries(1..=5, "old")).unwrap();
        write(&StdFs, home.path(), &entries(2..=3, "new")).unwrap();
        drop(wal);

        let mut wal = open(&dir);
        finish_interrupted(home.path(), &mut wal).unwrap();
        let mut expected = entries(1..=1, "old");
        expected.extend(entries(2..=3, "new"));
        assert_eq!(contents(&wal), expected);
    }
}
