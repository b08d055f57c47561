//! A fault-injecting in-memory file system that models the page cache.
//!
//! Each file has the bytes a reader sees now (`current`) and the bytes that would survive a
//! power cut (`durable`); `sync_data` copies the one to the other. Directory entries are kept
//! twice the same way: creates, renames and removes become durable only on `sync_dir`.
//! [`SimFs::crash`] throws away everything unsynced, except that a file's unsynced tail may
//! survive torn at any byte (chosen by a seeded generator, so runs are reproducible).
//!
//! Faults: the n-th next write or fsync can fail with ENOSPC or EIO ([`SimFs::fail_write`],
//! [`SimFs::fail_sync`]); [`SimFs::halt_after`] makes every mutating call after the next n fail,
//! which models the process dying at that point; [`SimFs::flip_bit`] damages durable bytes.
//! A failed fsync models Linux: the dirty pages are dropped (marked clean but never written), so
//! a later "successful" fsync does not bring them back.
//!
//! Handles opened before a crash refuse all further use.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::fs::{FileSystem, ReadableFile, WritableFile};

/// The kind of error an injected fault produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimFault {
    /// The disk is full (ENOSPC).
    NoSpace,
    /// A device error (EIO).
    Io,
}

impl SimFault {
    fn to_error(self, what: &str) -> io::Error {
        match self {
            SimFault::NoSpace => io::Error::new(
                io::ErrorKind::StorageFull,
                format!("simulated ENOSPC during {what}"),
            ),
            SimFault::Io => io::Error::other(format!("simulated EIO during {what}")),
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Inode {
    current: Vec<u8>,
    durable: Vec<u8>,
    /// Lowest offset changed since the last sync; `current[..dirty_from]` equals what a sync
    /// already made durable.
    dirty_from: usize,
}

#[derive(Debug, Default, Clone)]
struct State {
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    current: BTreeMap<PathBuf, u64>,
    durable: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    generation: u64,
    rng: u64,
    write_fault: Option<(u64, SimFault)>,
    sync_fault: Option<(u64, SimFault)>,
    halt_after: Option<u64>,
    mutating_ops: u64,
}

impl State {
    fn next_random(&mut self) -> u64 {
        // splitmix64: tiny, seeded, good enough to pick torn lengths.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Counts a mutating call; fails if the simulated process has halted.
    fn mutate(&mut self, what: &str) -> io::Result<()> {
        if let Some(limit) = self.halt_after
            && self.mutating_ops >= limit
        {
            return Err(io::Error::other(format!(
                "simulated crash: process halted before {what}"
            )));
        }
        self.mutating_ops += 1;
        Ok(())
    }

    fn check_fault(slot: &mut Option<(u64, SimFault)>, what: &str) -> io::Result<()> {
        if let Some((countdown, fault)) = slot {
            if *countdown == 0 {
                let fault = *fault;
                *slot = None;
                return Err(fault.to_error(what));
            }
            *countdown -= 1;
        }
        Ok(())
    }

    fn lookup(&self, path: &Path) -> io::Result<u64> {
        self.current.get(path).copied().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} does not exist", path.display()),
            )
        })
    }

    fn new_inode(&mut self) -> u64 {
        let id = self.next_inode;
        self.next_inode += 1;
        self.inodes.insert(id, Inode::default());
        id
    }
}

/// The in-memory, fault-injecting file system. Cloning yields another handle to the same one.
#[derive(Debug, Clone)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock can only come from a test assertion; the state itself is
    // always consistent between statements, so carrying on is fine.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SimFs {
    /// An empty file system whose crash behaviour is driven by `seed`.
    pub fn new(seed: u64) -> Self {
        let state = State {
            rng: seed,
            ..State::default()
        };
        SimFs {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// An independent copy of this file system as it is now (files, durable and unsynced
    /// bytes, pending faults): changes to either no longer reach the other.
    pub fn fork(&self) -> SimFs {
        SimFs {
            state: Arc::new(Mutex::new(lock(&self.state).clone())),
        }
    }

    /// Simulates a power cut and restart: unsynced directory changes are lost, each file keeps
    /// its durable bytes and possibly a torn prefix of its unsynced tail, and all open handles
    /// become invalid. Clears the halt and pending faults.
    pub fn crash(&self) {
        let mut st = lock(&self.state);
        st.generation += 1;
        st.halt_after = None;
        st.write_fault = None;
        st.sync_fault = None;
        st.current = st.durable.clone();
        let live: BTreeSet<u64> = st.durable.values().copied().collect();
        let ids: Vec<u64> = st.inodes.keys().copied().collect();
        for id in ids {
            if !live.contains(&id) {
                st.inodes.remove(&id);
                continue;
            }
            let keep_torn_tail = st.next_random().is_multiple_of(2);
            let random = st.next_random();
            let Some(inode) = st.inodes.get_mut(&id) else {
                continue;
            };
            let mut survived = inode.durable.clone();
            if keep_torn_tail && inode.dirty_from <= inode.current.len() {
                survived.resize(inode.dirty_from, 0);
                let unsynced = inode.current.len() - inode.dirty_from;
                let kept = usize::try_from(random % (unsynced as u64 + 1)).unwrap_or(0);
                survived.extend_from_slice(&inode.current[inode.dirty_from..][..kept]);
            }
            inode.durable = survived.clone();
            inode.current = survived;
            inode.dirty_from = inode.current.len();
        }
    }

    /// Simulates the process dying and starting again while the machine keeps running: the
    /// page cache (unsynced bytes, unsynced directory entries) survives, open handles become
    /// invalid, and the halt and pending faults are cleared.
    pub fn restart_process(&self) {
        let mut st = lock(&self.state);
        st.generation += 1;
        st.halt_after = None;
        st.write_fault = None;
        st.sync_fault = None;
    }

    /// The `after`-th next write (0 = the very next one) fails with `fault`; nothing is written.
    pub fn fail_write(&self, after: u64, fault: SimFault) {
        lock(&self.state).write_fault = Some((after, fault));
    }

    /// The `after`-th next fsync (file or directory) fails with `fault`, dropping the dirty data.
    pub fn fail_sync(&self, after: u64, fault: SimFault) {
        lock(&self.state).sync_fault = Some((after, fault));
    }

    /// After `ops` more mutating calls (write, sync, truncate, create, rename, remove), every
    /// mutating call fails: the process is considered dead until [`SimFs::crash`].
    pub fn halt_after(&self, ops: u64) {
        let mut st = lock(&self.state);
        st.halt_after = Some(st.mutating_ops + ops);
    }

    /// Whether a halt set by [`SimFs::halt_after`] has been reached.
    pub fn halted(&self) -> bool {
        let st = lock(&self.state);
        st.halt_after.is_some_and(|limit| st.mutating_ops >= limit)
    }

    /// Number of mutating calls so far.
    pub fn mutating_ops(&self) -> u64 {
        lock(&self.state).mutating_ops
    }

    /// Flips bit `bit` (0..8) of byte `offset` of `path`, in both the durable and current bytes.
    pub fn flip_bit(&self, path: &Path, offset: usize, bit: u8) -> io::Result<()> {
        let mut st = lock(&self.state);
        let id = st.lookup(path)?;
        let inode = st
            .inodes
            .get_mut(&id)
            .ok_or_else(|| io::Error::other("dangling inode"))?;
        let mask = 1u8 << (bit % 8);
        for bytes in [&mut inode.durable, &mut inode.current] {
            if let Some(byte) = bytes.get_mut(offset) {
                *byte ^= mask;
            }
        }
        Ok(())
    }

    /// The bytes a reader sees now.
    pub fn contents(&self, path: &Path) -> io::Result<Vec<u8>> {
        let st = lock(&self.state);
        let id = st.lookup(path)?;
        Ok(st
            .inodes
            .get(&id)
            .map(|inode| inode.current.clone())
            .unwrap_or_default())
    }

    fn open_handle(&self, path: &Path, truncate: bool) -> io::Result<Box<dyn WritableFile>> {
        let mut st = lock(&self.state);
        st.mutate("create")?;
        let id = match st.current.get(path).copied() {
            Some(id) => id,
            None => {
                let id = st.new_inode();
                st.current.insert(path.to_path_buf(), id);
                id
            }
        };
        if truncate && let Some(inode) = st.inodes.get_mut(&id) {
            inode.current.clear();
            inode.dirty_from = 0;
        }
        Ok(Box::new(SimFile {
            state: Arc::clone(&self.state),
            inode: id,
            generation: st.generation,
        }))
    }
}

#[derive(Debug)]
struct SimFile {
    state: Arc<Mutex<State>>,
    inode: u64,
    generation: u64,
}

impl SimFile {
    fn with_inode<T>(
        &self,
        what: &str,
        f: impl FnOnce(&mut State) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut st = lock(&self.state);
        if st.generation != self.generation {
            return Err(io::Error::other(format!(
                "{what} on a file handle opened before a simulated crash"
            )));
        }
        st.mutate(what)?;
        f(&mut st)
    }
}

impl WritableFile for SimFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let id = self.inode;
        self.with_inode("write", |st| {
            State::check_fault(&mut st.write_fault, "write")?;
            let inode = st
                .inodes
                .get_mut(&id)
                .ok_or_else(|| io::Error::other("write to a removed inode"))?;
            inode.current.extend_from_slice(buf);
            Ok(())
        })
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let id = self.inode;
        self.with_inode("fsync", |st| {
            let fault = State::check_fault(&mut st.sync_fault, "fsync");
            let inode = st
                .inodes
                .get_mut(&id)
                .ok_or_else(|| io::Error::other("fsync of a removed inode"))?;
            if let Err(error) = fault {
                // Linux marks the dirty pages clean without writing them: they are lost.
                inode.dirty_from = inode.current.len();
                return Err(error);
            }
            let from = inode.dirty_from;
            inode.durable.resize(from, 0);
            inode.durable.extend_from_slice(&inode.current[from..]);
            inode.dirty_from = inode.current.len();
            Ok(())
        })
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let id = self.inode;
        self.with_inode("truncate", |st| {
            let inode = st
                .inodes
                .get_mut(&id)
                .ok_or_else(|| io::Error::other("truncate of a removed inode"))?;
            let len = usize::try_from(len).map_err(io::Error::other)?;
            inode.current.resize(len, 0);
            inode.dirty_from = inode.dirty_from.min(len);
            Ok(())
        })
    }
}

impl FileSystem for SimFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        lock(&self.state).dirs.insert(dir.to_path_buf());
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = lock(&self.state);
        Ok(st
            .current
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        self.open_handle(path, true)
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        self.open_handle(path, false)
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn ReadableFile>> {
        let bytes = self.contents(path)?;
        Ok(Box::new(Cursor::new(bytes)))
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        let st = lock(&self.state);
        let id = st.lookup(path)?;
        Ok(st
            .inodes
            .get(&id)
            .map_or(0, |inode| inode.current.len() as u64))
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        Ok(lock(&self.state).current.contains_key(path))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = lock(&self.state);
        st.mutate("rename")?;
        let id = st.lookup(from)?;
        st.current.remove(from);
        st.current.insert(to.to_path_buf(), id);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = lock(&self.state);
        st.mutate("remove")?;
        st.lookup(path)?;
        st.current.remove(path);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = lock(&self.state);
        st.mutate("directory fsync")?;
        State::check_fault(&mut st.sync_fault, "directory fsync")?;
        let in_dir = |path: &PathBuf| path.parent() == Some(dir);
        st.durable.retain(|path, _| !in_dir(path));
        let entries: Vec<(PathBuf, u64)> = st
            .current
            .iter()
            .filter(|(path, _)| in_dir(path))
            .map(|(path, id)| (path.clone(), *id))
            .collect();
        st.durable.extend(entries);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn p(name: &str) -> PathBuf {
        PathBuf::from("/d").join(name)
    }

    #[test]
    fn unsynced_bytes_and_directory_entries_are_lost_on_crash() {
        let fs = SimFs::new(1);
        let mut file = fs.create(&p("a")).unwrap();
        file.write_all(b"hello").unwrap();
        file.sync_data().unwrap();
        // The file's data is durable but its directory entry is not.
        fs.crash();
        assert!(!fs.exists(&p("a")).unwrap());

        let mut file = fs.create(&p("a")).unwrap();
        file.write_all(b"hello").unwrap();
        file.sync_data().unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        file.write_all(b" world").unwrap();
        fs.crash();
        let survived = fs.contents(&p("a")).unwrap();
        assert!(
            b"hello world".starts_with(&survived) && survived.len() >= 5,
            "{survived:?}"
        );
        assert!(
            file.write_all(b"x").is_err(),
            "old handles die with the crash"
        );
    }

    #[test]
    fn torn_tails_cover_every_length() {
        let mut seen = BTreeSet::new();
        for seed in 0..200 {
            let fs = SimFs::new(seed);
            let mut file = fs.create(&p("a")).unwrap();
            fs.sync_dir(Path::new("/d")).unwrap();
            file.write_all(b"0123").unwrap();
            fs.crash();
            seen.insert(fs.contents(&p("a")).unwrap().len());
        }
        assert_eq!(seen, (0..=4).collect());
    }

    #[test]
    fn rename_is_lost_unless_the_directory_is_synced() {
        let fs = SimFs::new(2);
        for (name, data) in [("old", b"1"), ("tmp", b"2")] {
            let mut file = fs.create(&p(name)).unwrap();
            file.write_all(data).unwrap();
            file.sync_data().unwrap();
        }
        fs.sync_dir(Path::new("/d")).unwrap();
        fs.rename(&p("tmp"), &p("old")).unwrap();
        fs.crash();
        assert_eq!(fs.contents(&p("old")).unwrap(), b"1");
        fs.rename(&p("tmp"), &p("old")).unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        fs.crash();
        assert_eq!(fs.contents(&p("old")).unwrap(), b"2");
        assert!(!fs.exists(&p("tmp")).unwrap());
    }

    #[test]
    fn failed_fsync_drops_the_dirty_pages_for_good() {
        let fs = SimFs::new(3);
        let mut file = fs.create(&p("a")).unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        file.write_all(b"lost").unwrap();
        fs.fail_sync(0, SimFault::Io);
        assert!(file.sync_data().is_err());
        file.write_all(b"kept").unwrap();
        file.sync_data().unwrap();
        fs.crash();
        assert_eq!(fs.contents(&p("a")).unwrap(), b"\0\0\0\0kept");
    }

    #[test]
    fn write_faults_and_halts() {
        let fs = SimFs::new(4);
        let mut file = fs.create(&p("a")).unwrap();
        fs.fail_write(1, SimFault::NoSpace);
        file.write_all(b"a").unwrap();
        let err = file.write_all(b"b").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        file.write_all(b"c").unwrap();
        assert_eq!(fs.contents(&p("a")).unwrap(), b"ac");
        fs.halt_after(1);
        file.write_all(b"d").unwrap();
        assert!(fs.halted());
        assert!(file.sync_data().is_err());
        assert!(fs.remove_file(&p("a")).is_err());
    }

    #[test]
    fn bit_flips_hit_durable_bytes() {
        let fs = SimFs::new(5);
        let mut file = fs.create(&p("a")).unwrap();
        file.write_all(&[0u8; 4]).unwrap();
        file.sync_data().unwrap();
        fs.sync_dir(Path::new("/d")).unwrap();
        fs.flip_bit(&p("a"), 2, 1).unwrap();
        fs.crash();
        assert_eq!(fs.contents(&p("a")).unwrap(), [0, 0, 2, 0]);
    }
}
