//! The file-system seam: every byte the crate reads or writes goes through [`FileSystem`].
//!
//! Two implementations exist: [`StdFs`] (the real disk: `std::fs`, `fdatasync` on files and
//! `fsync` on directories) and [`crate::SimFs`] (an in-memory page-cache model that loses
//! unsynced bytes on a simulated crash and injects faults). The seam is deliberately tiny and
//! append-only for writes: the log, archives and snapshots never rewrite bytes in place, which
//! keeps both implementations honest and simple.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::Path;

/// A file opened for reading. Any `Read + Seek + Send` type qualifies.
pub trait ReadableFile: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadableFile for T {}

/// A file opened for appending.
pub trait WritableFile: Send + fmt::Debug {
    /// Appends all of `buf` at the end of the file (not yet durable).
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Makes the file's data and size durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Cuts the file to `len` bytes; later writes append after it. Not durable until synced.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

/// The operations the crate needs from a file system. Paths are full paths.
pub trait FileSystem: Send + Sync + fmt::Debug {
    /// Creates a directory and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names (not paths) of the files in `dir`; names that are not UTF-8 are skipped.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates `path`, or truncates it if it exists, for appending.
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;
    /// Opens `path` for appending, creating it empty if it does not exist.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;
    /// Opens `path` for reading.
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadableFile>>;
    /// Current length of `path` in bytes.
    fn file_len(&self, path: &Path) -> io::Result<u64>;
    /// Whether `path` exists.
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// Renames `from` to `to`, replacing `to`. Durable only after `sync_dir` of the directory.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes `path`. Durable only after `sync_dir` of the directory.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creates, renames, removes) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

#[derive(Debug)]
struct StdFile {
    file: File,
}

impl WritableFile for StdFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        // A handle from `create` is not in append mode: without this its next write would land
        // at the old position and leave a hole of zeroes after the cut.
        self.file.seek(io::SeekFrom::End(0))?;
        Ok(())
    }
}

impl FileSystem for StdFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(StdFile { file }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let file = OpenOptions::new().append(true).create(true).open(path)?;
        Ok(Box::new(StdFile { file }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadableFile>> {
        Ok(Box::new(File::open(path)?))
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn writes_after_a_truncate_follow_the_cut_on_every_kind_of_handle() {
        let dir = tempfile::tempdir().unwrap();
        for (name, created) in [("created", true), ("appended", false)] {
            let path = dir.path().join(name);
            let mut f = if created {
                StdFs.create(&path).unwrap()
            } else {
                StdFs.open_append(&path).unwrap()
            };
            f.write_all(b"0123456789").unwrap();
            f.truncate(4).unwrap();
            f.write_all(b"xy").unwrap();
            f.sync_data().unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), b"0123xy", "{name} handle");
        }
    }
}
