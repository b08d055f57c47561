//! A real-disk file system that keeps every unsynced byte in the process's own memory.
//!
//! `kill -9` of a process leaves the kernel's page cache intact: bytes written but never
//! fsync'd still reach the disk, so a crash test of real processes cannot see a missing
//! fsync. [`VolatileFs`] closes that gap for tests. Appended bytes stay in a buffer inside the
//! process until `sync_data`, which writes them to the real file and fdatasyncs it. A process
//! killed by `kill -9` therefore loses exactly what a power cut would have been allowed to
//! lose: every byte appended since the file's last sync.
//!
//! Invariants:
//! - A file's content as this process sees it is the real file's bytes followed by the
//!   buffered (unsynced) bytes; reads, lengths and truncation all use that view.
//! - Nothing buffered is ever written to the real file except by `sync_data`, which writes
//!   all of the file's buffered bytes and then syncs: what reaches the disk is always a prefix
//!   of what was appended, ending at a sync.
//! - The buffer belongs to the file (all handles to it share one), and follows it through a
//!   rename; removing the file drops it.
//!
//! Limits: directory entries (create, rename, remove) go to the real file system at once,
//! as they would on a kernel that wrote them back immediately, so this layer does not show
//! a missing directory fsync; the whole-node simulator's in-memory file system does. A
//! truncation below the synced length also goes to the real file at once. Buffers are bounded
//! only by what the process writes between two syncs. It is a test layer: production uses
//! [`crate::StdFs`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::fs::{FileSystem, ReadableFile, StdFs, WritableFile};

/// Bytes appended to one file since its last sync.
type Buffer = Arc<Mutex<Vec<u8>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the data consistent; a panic inside one can only be a
    // test assertion, so carrying on with the data is fine.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The real disk, with unsynced appends held in this process's memory. See the module docs.
#[derive(Debug, Default, Clone)]
pub struct VolatileFs {
    buffers: Arc<Mutex<BTreeMap<PathBuf, Buffer>>>,
}

impl VolatileFs {
    /// A layer over the real disk with no buffered bytes.
    pub fn new() -> Self {
        VolatileFs::default()
    }

    /// Bytes appended to `path` and not yet synced.
    pub fn unsynced_len(&self, path: &Path) -> usize {
        lock(&self.buffers)
            .get(path)
            .map_or(0, |buffer| lock(buffer).len())
    }

    fn buffer(&self, path: &Path, fresh: bool) -> Buffer {
        let mut buffers = lock(&self.buffers);
        if fresh {
            let buffer = Buffer::default();
            buffers.insert(path.to_path_buf(), Arc::clone(&buffer));
            return buffer;
        }
        Arc::clone(buffers.entry(path.to_path_buf()).or_default())
    }

    fn open(&self, path: &Path, fresh: bool) -> io::Result<Box<dyn WritableFile>> {
        let real = if fresh {
            StdFs.create(path)?
        } else {
            StdFs.open_append(path)?
        };
        let synced = std::fs::metadata(path)?.len();
        Ok(Box::new(VolatileFile {
            real,
            synced,
            buffer: self.buffer(path, fresh),
        }))
    }
}

#[derive(Debug)]
struct VolatileFile {
    /// The real file, opened for appending.
    real: Box<dyn WritableFile>,
    /// Length of the real file (everything before the buffer).
    synced: u64,
    buffer: Buffer,
}

impl WritableFile for VolatileFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        lock(&self.buffer).extend_from_slice(buf);
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let mut buffer = lock(&self.buffer);
        if !buffer.is_empty() {
            self.real.write_all(&buffer)?;
            self.synced += buffer.len() as u64;
            buffer.clear();
        }
        self.real.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let mut buffer = lock(&self.buffer);
        if len >= self.synced {
            let keep = usize::try_from(len - self.synced).map_err(io::Error::other)?;
            buffer.resize(keep, 0);
        } else {
            buffer.clear();
            self.real.truncate(len)?;
            self.synced = len;
        }
        Ok(())
    }
}

/// A reader over the real file followed by a copy of the buffered bytes.
struct VolatileReader {
    real: File,
    real_len: u64,
    tail: Vec<u8>,
    pos: u64,
}

impl Read for VolatileReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.real_len {
            self.real.seek(SeekFrom::Start(self.pos))?;
            let room = usize::try_from(self.real_len - self.pos).unwrap_or(usize::MAX);
            let want = out.len().min(room);
            let n = self.real.read(&mut out[..want])?;
            self.pos += n as u64;
            return Ok(n);
        }
        let at = usize::try_from(self.pos - self.real_len).unwrap_or(usize::MAX);
        let rest = self.tail.get(at..).unwrap_or_default();
        let n = rest.len().min(out.len());
        out[..n].copy_from_slice(&rest[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for VolatileReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let len = self.real_len + self.tail.len() as u64;
        let target = match to {
            SeekFrom::Start(at) => Some(at),
            SeekFrom::End(delta) => len.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
        };
        let target = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of a file",
            )
        })?;
        self.pos = target;
        Ok(target)
    }
}

impl FileSystem for VolatileFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        StdFs.create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        StdFs.list_dir(dir)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        self.open(path, true)
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        self.open(path, false)
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadableFile>> {
        let real = File::open(path)?;
        let real_len = real.metadata()?.len();
        let tail = lock(&self.buffers)
            .get(path)
            .map(|buffer| lock(buffer).clone())
            .unwrap_or_default();
        Ok(Box::new(VolatileReader {
            real,
            real_len,
            tail,
            pos: 0,
        }))
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        let real = std::fs::metadata(path)?.len();
        Ok(real + self.unsynced_len(path) as u64)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        StdFs.exists(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFs.rename(from, to)?;
        let mut buffers = lock(&self.buffers);
        match buffers.remove(from) {
            Some(buffer) => {
                buffers.insert(to.to_path_buf(), buffer);
            }
            None => {
                buffers.remove(to);
            }
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdFs.remove_file(path)?;
        lock(&self.buffers).remove(path);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        StdFs.sync_dir(dir)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn read_all(fs: &dyn FileSystem, path: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        fs.open_read(path).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn unsynced_appends_are_seen_by_the_process_but_never_reach_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let fs = VolatileFs::new();
        let mut f = fs.create(&path).unwrap();
        f.write_all(b"durable ").unwrap();
        f.sync_data().unwrap();
        f.write_all(b"volatile").unwrap();
        assert_eq!(read_all(&fs, &path), b"durable volatile");
        assert_eq!(fs.file_len(&path).unwrap(), 16);
        // What a process that died now leaves behind, and what a new process sees:
        assert_eq!(std::fs::read(&path).unwrap(), b"durable ");
        drop(f);
        drop(fs);
        assert_eq!(read_all(&VolatileFs::new(), &path), b"durable ");
    }

    #[test]
    fn a_sync_writes_every_buffered_byte_of_the_file_whichever_handle_wrote_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let fs = VolatileFs::new();
        let mut a = fs.create(&path).unwrap();
        let mut b = fs.open_append(&path).unwrap();
        a.write_all(b"one ").unwrap();
        b.write_all(b"two").unwrap();
        b.sync_data().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one two");
        assert_eq!(fs.unsynced_len(&path), 0);
    }

    #[test]
    fn truncation_cuts_the_buffer_or_the_real_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let fs = VolatileFs::new();
        let mut f = fs.create(&path).unwrap();
        f.write_all(b"0123456789").unwrap();
        f.sync_data().unwrap();
        f.write_all(b"abcdef").unwrap();
        f.truncate(12).unwrap();
        assert_eq!(read_all(&fs, &path), b"0123456789ab");
        f.truncate(4).unwrap();
        assert_eq!(read_all(&fs, &path), b"0123");
        assert_eq!(std::fs::read(&path).unwrap(), b"0123");
        f.write_all(b"xy").unwrap();
        f.sync_data().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"0123xy");
    }

    #[test]
    fn the_buffer_follows_a_rename_and_dies_with_a_remove() {
        let dir = tempfile::tempdir().unwrap();
        let (tmp, fin) = (dir.path().join("f.tmp"), dir.path().join("f"));
        let fs = VolatileFs::new();
        let mut f = fs.create(&tmp).unwrap();
        f.write_all(b"late").unwrap();
        fs.rename(&tmp, &fin).unwrap();
        assert_eq!(read_all(&fs, &fin), b"late");
        assert_eq!(std::fs::read(&fin).unwrap(), b"");
        f.sync_data().unwrap();
        assert_eq!(std::fs::read(&fin).unwrap(), b"late");
        let mut g = fs.open_append(&fin).unwrap();
        g.write_all(b" more").unwrap();
        fs.remove_file(&fin).unwrap();
        assert_eq!(fs.unsynced_len(&fin), 0);
    }

    #[test]
    fn reads_seek_across_the_synced_and_buffered_parts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let fs = VolatileFs::new();
        let mut f = fs.create(&path).unwrap();
        f.write_all(b"hello ").unwrap();
        f.sync_data().unwrap();
        f.write_all(b"world").unwrap();
        let mut r = fs.open_read(&path).unwrap();
        r.seek(SeekFrom::Start(4)).unwrap();
        let mut four = [0u8; 4];
        r.read_exact(&mut four).unwrap();
        assert_eq!(&four, b"o wo");
        r.seek(SeekFrom::End(-2)).unwrap();
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"ld");
        assert!(r.seek(SeekFrom::Current(-100)).is_err());
    }

    /// The write-ahead log itself on this layer: entries appended but not synced are gone for
    /// the next process; synced ones survive.
    #[test]
    fn a_wal_on_it_loses_exactly_the_unsynced_entries() {
        use crate::{SnapshotConfig, WalConfig, recover};
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().join("wal");
        let open = || {
            let fs: Arc<dyn FileSystem> = Arc::new(VolatileFs::new());
            recover(
                fs,
                &wal_dir,
                WalConfig::default(),
                &SnapshotConfig::default(),
                &mut |_, _| Ok(()),
            )
            .unwrap()
            .wal
        };
        let mut wal = open();
        wal.append([(1, b"one".as_slice())]).unwrap();
        wal.sync().unwrap();
        wal.append([(2, b"two".as_slice())]).unwrap();
        assert_eq!(wal.last_index(), Some(2));
        drop(wal); // the process dies: nothing syncs the buffer
        let wal = open();
        assert_eq!(wal.last_index(), Some(1));
    }
}
