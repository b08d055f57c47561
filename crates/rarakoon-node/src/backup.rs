//! Backup and restore (ADR 0150): Arakoon's `GET_DB` streams a consistent copy of the store from
//! a slave, and a backup file is installed as a new node's head snapshot (Arakoon's
//! inject-as-head).
//!
//! A backup file *is* a head snapshot (the format of `wal/head.snap`, see the write-ahead-log
//! crate): the whole store at one applied index, CRC-checked chunk by chunk and as a whole.
//!
//! Invariants:
//! - the image is one point in time: an O(1) view of the store is taken under its read lock
//!   ([`StoreCopy::of`], ADR 0186), and the image is written from the view,
//!   so applies wait only for the copy, never for the network;
//! - memory is bounded: the image is produced in [`CHUNK_BYTES`] pieces into a channel of
//!   [`QUEUE_CHUNKS`] pieces that the connection drains as the client reads; nothing holds the
//!   whole image;
//! - the announced length is exact: the image is produced twice from the same copy (once only
//!   counted, once sent), and a second pass of another length ends the stream with an error
//!   instead of sending a wrong image;
//! - all of it runs on a blocking thread, never on the async runtime;
//! - [`restore`] installs a file only after it verified completely, only into an empty home
//!   (or after moving the old one aside), under the home lock, through the same receive path
//!   (and restart marker, ADR 0090) as a snapshot fetched from a peer.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use bytes::{Bytes, BytesMut};
use kv_store::Store;
use tokio::sync::mpsc;
use write_ahead_log::{
    FileSystem, ReadableFile, SnapshotConfig, SnapshotInfo, SnapshotReader, SnapshotReceiver,
    StdFs, WalError, WritableFile,
};

use crate::home_lock::{HomeLock, HomeLockError};
use crate::storage::StoreCopy;

/// Bytes per piece of a streamed image.
pub const CHUNK_BYTES: usize = 256 * 1024;
/// Pieces queued between the producer and the connection.
pub const QUEUE_CHUNKS: usize = 8;

/// The snapshot settings of a node whose largest request is `max_request_size` (the same bound
/// on a pair as the node's own head snapshots, so a backup loads wherever the node's own
/// snapshot would).
pub fn snapshot_config(max_request_size: u64, max_snapshot_bytes: u64) -> SnapshotConfig {
    SnapshotConfig {
        max_chunk_bytes: u32::try_from(max_request_size)
            .unwrap_or(u32::MAX)
            .saturating_mul(2)
            .max(64 << 20),
        max_snapshot_bytes,
        ..SnapshotConfig::default()
    }
}

/// Where the snapshot writer's bytes go: counted only, or sent on in pieces.
#[derive(Debug)]
enum Sink {
    Count,
    Send(mpsc::Sender<io::Result<Bytes>>),
}

/// A [`FileSystem`] whose only file is the image being produced: the snapshot writer's
/// create/sync/rename steps become no-ops, and its bytes go to the [`Sink`].
#[derive(Debug)]
struct StreamFs {
    sink: std::sync::Mutex<Option<Sink>>,
    written: Arc<std::sync::atomic::AtomicU64>,
}

#[derive(Debug)]
struct StreamFile {
    sink: Sink,
    piece: BytesMut,
    written: Arc<std::sync::atomic::AtomicU64>,
}

impl StreamFile {
    fn flush(&mut self) -> io::Result<()> {
        if self.piece.is_empty() {
            return Ok(());
        }
        let piece = self.piece.split().freeze();
        match &self.sink {
            Sink::Count => Ok(()),
            // The client went away (the connection dropped the receiver): stop producing.
            Sink::Send(tx) => tx
                .blocking_send(Ok(piece))
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the reader went away")),
        }
    }
}

impl WritableFile for StreamFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.written
            .fetch_add(buf.len() as u64, std::sync::atomic::Ordering::Relaxed);
        if matches!(self.sink, Sink::Count) {
            return Ok(());
        }
        let mut rest = buf;
        while !rest.is_empty() {
            let room = CHUNK_BYTES - self.piece.len();
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.piece.extend_from_slice(now);
            rest = later;
            if self.piece.len() >= CHUNK_BYTES {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.flush()
    }

    fn truncate(&mut self, _len: u64) -> io::Result<()> {
        Err(io::Error::other("a streamed image cannot be truncated"))
    }
}

fn unsupported<T>() -> io::Result<T> {
    Err(io::Error::other("not supported while streaming an image"))
}

impl FileSystem for StreamFs {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
    fn list_dir(&self, _dir: &Path) -> io::Result<Vec<String>> {
        Ok(Vec::new())
    }
    fn create(&self, _path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let sink = self
            .sink
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| io::Error::other("the image is written once"))?;
        Ok(Box::new(StreamFile {
            sink,
            piece: BytesMut::with_capacity(CHUNK_BYTES),
            written: Arc::clone(&self.written),
        }))
    }
    fn open_append(&self, _path: &Path) -> io::Result<Box<dyn WritableFile>> {
        unsupported()
    }
    fn open_read(&self, _path: &Path) -> io::Result<Box<dyn ReadableFile>> {
        unsupported()
    }
    fn file_len(&self, _path: &Path) -> io::Result<u64> {
        unsupported()
    }
    fn exists(&self, _path: &Path) -> io::Result<bool> {
        Ok(false)
    }
    fn rename(&self, _from: &Path, _to: &Path) -> io::Result<()> {
        Ok(())
    }
    fn remove_file(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
}

/// Writes the image of `copy` to `sink`; returns its info and the bytes produced.
fn produce(
    copy: &StoreCopy,
    sink: Sink,
    config: &SnapshotConfig,
) -> Result<(SnapshotInfo, u64), WalError> {
    let fs = StreamFs {
        sink: std::sync::Mutex::new(Some(sink)),
        written: Arc::default(),
    };
    let info = write_ahead_log::write_snapshot(&fs, Path::new("get_db"), copy, config)?;
    Ok((info, fs.written.load(std::sync::atomic::Ordering::Relaxed)))
}

/// Produces the GET_DB answer for `store` on `tx`: Arakoon's success word and `i64` length
/// (encoded as `header` gives them, with the length filled in), then the image. Blocking: run
/// it on a blocking thread. Returns the image's info (or why it stopped; the error was also
/// sent, which ends the stream).
pub fn stream_image(
    store: &RwLock<Store>,
    header: BytesMut,
    config: &SnapshotConfig,
    tx: &mpsc::Sender<io::Result<Bytes>>,
) -> Result<SnapshotInfo, String> {
    let copy = StoreCopy::of(&store.read().unwrap_or_else(PoisonError::into_inner));
    let result = (|| {
        let (_, length) = produce(&copy, Sink::Count, config).map_err(|e| e.to_string())?;
        let mut header = header;
        let at = header
            .len()
            .checked_sub(8)
            .ok_or_else(|| "the GET_DB header has no length field".to_owned())?;
        let length_field = i64::try_from(length).map_err(|_| "the image is too large")?;
        header[at..].copy_from_slice(&length_field.to_le_bytes());
        tx.blocking_send(Ok(header.freeze()))
            .map_err(|_| "the reader went away".to_owned())?;
        let (info, sent) =
            produce(&copy, Sink::Send(tx.clone()), config).map_err(|e| e.to_string())?;
        if sent != length {
            return Err(format!(
                "the image came out {sent} bytes long the second time, not {length}"
            ));
        }
        Ok(info)
    })();
    if let Err(e) = &result {
        let _ = tx.blocking_send(Err(io::Error::other(e.clone())));
    }
    result
}

/// Checks every byte of a backup file (header, each chunk's CRC, key order, trailer and the
/// whole-file CRC) without keeping its pairs.
pub fn verify(file: &Path, config: &SnapshotConfig) -> Result<SnapshotInfo, WalError> {
    SnapshotReader::open(&StdFs, file, config)?.read_pairs(&mut |_, _| Ok(()))
}

/// Why a restore did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The home holds data and the caller did not allow moving it aside.
    #[error(
        "home directory {} is not empty; restoring replaces a node's data, so stop the node and \
         pass --force to move the old home aside to {}",
        home.display(), aside.display()
    )]
    NotEmpty {
        /// The home directory.
        home: PathBuf,
        /// Where `--force` would move it.
        aside: PathBuf,
    },
    /// The home is in use (the node runs).
    #[error(transparent)]
    Lock(#[from] HomeLockError),
    /// The backup file is damaged or not a backup.
    #[error("backup file {}: {source}", file.display())]
    Backup {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        source: WalError,
    },
    /// Reading the file or writing the home failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Installing the snapshot failed.
    #[error("cannot install the backup into {}: {source}", dir.display())]
    Install {
        /// The log directory.
        dir: PathBuf,
        /// The error.
        source: WalError,
    },
}

/// What [`restore`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The installed image.
    pub info: SnapshotInfo,
    /// Where the old home was moved, if it was not empty.
    pub moved_aside: Option<PathBuf>,
}

fn is_empty_dir(dir: &Path) -> Result<bool, RestoreError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(source) => Err(RestoreError::Io {
            what: "cannot read",
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Installs backup `file` as the head snapshot of a node whose home is `home`, before the
/// node's first start: the node then starts at the backup's index, with an empty log, and
/// catches up from its peers. A home that is not empty is refused unless `force`, which moves
/// it aside (to `<home>.before-restore-<unix seconds>`) first. The file is verified completely
/// before anything is changed.
pub fn restore(
    home: &Path,
    file: &Path,
    config: &SnapshotConfig,
    force: bool,
) -> Result<Restored, RestoreError> {
    let backup = |source| RestoreError::Backup {
        file: file.to_path_buf(),
        source,
    };
    let info = verify(file, config).map_err(backup)?;
    let mut moved_aside = None;
    if !is_empty_dir(home)? {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut aside = home.as_os_str().to_owned();
        aside.push(format!(".before-restore-{stamp}"));
        let aside = PathBuf::from(aside);
        if !force {
            return Err(RestoreError::NotEmpty {
                home: home.to_path_buf(),
                aside,
            });
        }
        // Refuses while the node runs (it holds the lock), before anything moves.
        drop(HomeLock::acquire(home)?);
        std::fs::rename(home, &aside).map_err(|source| RestoreError::Io {
            what: "cannot move aside",
            path: home.to_path_buf(),
            source,
        })?;
        moved_aside = Some(aside);
    }
    let _lock = HomeLock::acquire(home)?;
    let dir = crate::storage::wal_dir(home);
    let install = |source| RestoreError::Install {
        dir: dir.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(|source| RestoreError::Io {
        what: "cannot create",
        path: dir.clone(),
        source,
    })?;
    let fs: Arc<dyn FileSystem> = Arc::new(StdFs);
    let mut receiver = SnapshotReceiver::begin(fs, &dir, config.clone()).map_err(install)?;
    let mut input = std::fs::File::open(file).map_err(|source| RestoreError::Io {
        what: "cannot open",
        path: file.to_path_buf(),
        source,
    })?;
    let mut piece = vec![0u8; CHUNK_BYTES];
    loop {
        let n = io::Read::read(&mut input, &mut piece).map_err(|source| RestoreError::Io {
            what: "cannot read",
            path: file.to_path_buf(),
            source,
        })?;
        if n == 0 {
            break;
        }
        receiver.push(&piece[..n]).map_err(install)?;
    }
    // Verifies again as it installs (the file could have changed since), writes the restart
    // marker, renames the snapshot into place; the node's start-up finishes the log's restart.
    let installed = receiver.finish().map_err(install)?;
    if installed != info {
        tracing::warn!(
            ?info,
            ?installed,
            "the backup file changed while it was restored"
        );
    }
    Ok(Restored {
        info: installed,
        moved_aside,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use kv_store::{Update, UserFunctionRegistry};

    fn store_with(pairs: usize, value_len: usize) -> RwLock<Store> {
        let mut store = Store::new(Arc::new(UserFunctionRegistry::new()));
        let updates: Vec<Update> = (0..pairs)
            .map(|i| Update::Set {
                key: Bytes::from(format!("key{i:06}")),
                value: Bytes::from(vec![b'v'; value_len]),
            })
            .collect();
        store.apply_batch(7, &updates).unwrap();
        RwLock::new(store)
    }

    fn header() -> BytesMut {
        let mut h = BytesMut::new();
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&0i64.to_le_bytes());
        h
    }

    /// Streams the image of `store` through a channel drained by this thread.
    fn stream(store: RwLock<Store>) -> (Vec<Bytes>, Result<SnapshotInfo, String>) {
        let (tx, mut rx) = mpsc::channel(QUEUE_CHUNKS);
        let producer = std::thread::spawn(move || {
            stream_image(&store, header(), &snapshot_config(1 << 20, 1 << 40), &tx)
        });
        let mut pieces = Vec::new();
        while let Some(piece) = rx.blocking_recv() {
            pieces.push(piece.unwrap());
        }
        (pieces, producer.join().unwrap())
    }

    #[test]
    fn the_image_is_a_head_snapshot_of_the_announced_length_in_bounded_pieces() {
        let (pieces, info) = stream(store_with(3000, 500));
        let info = info.unwrap();
        assert_eq!((info.index, info.pairs), (7, 3000));
        let header = &pieces[0];
        assert_eq!(header.len(), 12);
        let length = i64::from_le_bytes(header[4..12].try_into().unwrap());
        let image: Vec<u8> = pieces[1..].iter().flat_map(|p| p.iter().copied()).collect();
        assert_eq!(image.len() as i64, length);
        assert_eq!(image.len() as u64, info.bytes);
        assert!(pieces[1..].iter().all(|p| p.len() <= CHUNK_BYTES));
        assert!(pieces.len() > 3, "1.5 MB must come in several pieces");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("backup");
        std::fs::write(&file, &image).unwrap();
        let checked = verify(&file, &snapshot_config(1 << 20, 1 << 40)).unwrap();
        assert_eq!(checked, info);
    }

    #[test]
    fn an_empty_store_streams_an_empty_image() {
        let store = RwLock::new(Store::new(Arc::new(UserFunctionRegistry::new())));
        let (pieces, info) = stream(store);
        let info = info.unwrap();
        assert_eq!(info.pairs, 0);
        let length = i64::from_le_bytes(pieces[0][4..12].try_into().unwrap());
        assert_eq!(length as u64, info.bytes);
    }

    #[test]
    fn a_reader_that_goes_away_stops_the_producer() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let err = stream_image(
            &store_with(10, 10),
            header(),
            &snapshot_config(1 << 20, 1 << 40),
            &tx,
        )
        .unwrap_err();
        assert!(err.contains("went away"), "{err}");
    }

    #[test]
    fn restore_refuses_a_damaged_file_and_a_non_empty_home_unless_forced() {
        let config = snapshot_config(1 << 20, 1 << 40);
        let (pieces, _) = stream(store_with(100, 10));
        let image: Vec<u8> = pieces[1..].iter().flat_map(|p| p.iter().copied()).collect();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("backup");
        let mut damaged = image.clone();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 1;
        std::fs::write(&file, &damaged).unwrap();
        let home = dir.path().join("home");
        assert!(matches!(
            restore(&home, &file, &config, false),
            Err(RestoreError::Backup { .. })
        ));
        assert!(!home.exists(), "a damaged backup must change nothing");
        std::fs::write(&file, &image).unwrap();
        let restored = restore(&home, &file, &config, false).unwrap();
        assert_eq!((restored.info.index, restored.info.pairs), (7, 100));
        assert_eq!(restored.moved_aside, None);
        let head = write_ahead_log::head_snapshot_path(&crate::storage::wal_dir(&home));
        assert_eq!(verify(&head, &config).unwrap(), restored.info);
        let err = restore(&home, &file, &config, false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not empty") && err.contains("--force"),
            "{err}"
        );
        let again = restore(&home, &file, &config, true).unwrap();
        let aside = again.moved_aside.unwrap();
        assert!(aside.join("wal").exists(), "the old home is kept aside");
        assert!(head.exists());
    }
}
