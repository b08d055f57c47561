//! The home-directory lock: at most one process works on a node's data directory.
//!
//! Two processes appending to the same WAL would corrupt it silently, so start-up takes an
//! exclusive advisory lock on `<home>/LOCK` before touching anything else and keeps it for the
//! life of the process. The OS drops the lock when the process dies (even by `kill -9`), so a
//! crash never leaves a stale lock that needs manual removal. The file records the holder's pid
//! for the error message of the process that is refused.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The name of the lock file inside a home directory.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// Failure to take the home-directory lock.
#[derive(Debug, thiserror::Error)]
pub enum HomeLockError {
    /// Another process holds the lock.
    #[error(
        "home directory {} is in use by another process{holder}; stop that process first \
         (two processes on one directory would corrupt its write-ahead log)",
        dir.display()
    )]
    InUse {
        /// The home directory.
        dir: PathBuf,
        /// " (pid N)" when the holder recorded its pid, else empty.
        holder: String,
    },
    /// The directory or lock file could not be created or locked.
    #[error("cannot lock home directory {}: {source}", dir.display())]
    Io {
        /// The home directory.
        dir: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
}

/// An exclusive lock on a home directory, held until dropped.
#[derive(Debug)]
pub struct HomeLock {
    dir: PathBuf,
    _file: File,
}

impl HomeLock {
    /// Creates `dir` if needed and locks it, or says who holds it.
    pub fn acquire(dir: &Path) -> Result<HomeLock, HomeLockError> {
        let io = |source| HomeLockError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let path = dir.join(LOCK_FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => {
                let mut text = String::new();
                // The pid is only a hint for the message; a read failure leaves it out.
                let _ = (&file).take(32).read_to_string(&mut text);
                let pid = text.trim();
                let holder = if pid.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {pid})")
                };
                return Err(HomeLockError::InUse {
                    dir: dir.to_path_buf(),
                    holder,
                });
            }
            Err(fs4::TryLockError::Error(source)) => return Err(io(source)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(HomeLock {
            dir: dir.to_path_buf(),
            _file: file,
        })
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn second_lock_is_refused_until_first_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("node");
        let first = HomeLock::acquire(&home).unwrap();
        assert_eq!(first.dir(), home.as_path());
        let err = HomeLock::acquire(&home).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, HomeLockError::InUse { .. }), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        HomeLock::acquire(&home).unwrap();
    }
}
