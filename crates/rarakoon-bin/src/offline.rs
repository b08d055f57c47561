//! Offline tools for an operator: `wal dump`, `wal verify` and `snapshot inspect`.
//!
//! They never modify a node's files: opening a WAL repairs a torn tail, so the WAL tools work
//! on a private copy of the directory in a temporary location. Run them on a stopped node (on a
//! running node the copy may catch a half-written tail, which they then report as torn).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use paxos_core::Value;
use wire_codec::rkyv::util::AlignedVec;
use write_ahead_log::{FileSystem, SnapshotConfig, StdFs, Wal, WalConfig};

use crate::client_cmd::printable;
use crate::exit;

/// Largest entry the tools accept (the node's own bound is at most 1 GiB).
const MAX_ENTRY_BYTES: u32 = 1 << 30;

fn wal_dir(dir: &Path) -> PathBuf {
    let nested = dir.join(rarakoon_node::storage::WAL_DIR);
    if nested.is_dir() {
        nested
    } else {
        dir.to_path_buf()
    }
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))
                .with_context(|| format!("cannot copy {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// `wal dump` (print every entry) or `wal verify` (check only); returns the exit code.
pub fn wal(dir: &Path, dump: bool) -> anyhow::Result<u8> {
    let source = wal_dir(dir);
    if !source.is_dir() {
        anyhow::bail!("{} is not a directory", source.display());
    }
    let copy = tempfile::tempdir().context("cannot create a temporary directory")?;
    copy_dir(&source, copy.path())?;
    let fs: Arc<dyn FileSystem> = Arc::new(StdFs);
    let config = WalConfig {
        max_entry_bytes: MAX_ENTRY_BYTES,
        max_segment_bytes: u64::from(u32::MAX),
        ..WalConfig::default()
    };
    let wal = match Wal::open(fs, copy.path(), config) {
        Ok(w) => w,
        Err(e) => {
            println!("CORRUPT: {e}");
            println!(
                "(file names refer to the copy; the same file name in {})",
                source.display()
            );
            return Ok(exit::NOT_FOUND);
        }
    };
    let mut problems = 0;
    if let Some(torn) = &wal.recovery_report().torn_tail {
        println!(
            "torn tail: {} bytes at offset {} of {} ({}) would be cut off at the next start",
            torn.dropped_bytes,
            torn.offset,
            torn.path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            torn.reason
        );
    }
    let head = write_ahead_log::head_snapshot_path(copy.path());
    if let Some(index) = write_ahead_log::read_snapshot_index(wal.fs().as_ref(), &head)? {
        println!("head snapshot at index {index}");
    }
    let (Some(first), Some(last)) = (wal.first_index(), wal.last_index()) else {
        println!("{}: empty log", source.display());
        return Ok(exit::OK);
    };
    let mut scratch = AlignedVec::new();
    let mut next = first;
    let mut count = 0u64;
    while next <= last {
        let entries = match wal.read(next, last, 16 << 20) {
            Ok(e) => e,
            Err(e) => {
                println!("CORRUPT at index {next}: {e}");
                problems += 1;
                break;
            }
        };
        if entries.is_empty() {
            break;
        }
        for entry in entries {
            next = entry.index + 1;
            count += 1;
            match rarakoon_node::storage::decode_entry(&entry.bytes, &mut scratch) {
                Ok(stored) if dump => {
                    let what = match &stored.value {
                        Value::Master { node } => format!("master {}", node.0),
                        Value::Batch(items) => {
                            let mut text = format!("batch of {}", items.len());
                            for p in items.iter().take(3) {
                                let update = rarakoon_node::payload::decode(
                                    bytes::Bytes::copy_from_slice(&p.payload),
                                );
                                match update {
                                    Ok(u) => text.push_str(&format!(
                                        "; {}",
                                        printable(format!("{u:?}").as_bytes())
                                    )),
                                    Err(e) => text.push_str(&format!("; <bad update: {e}>")),
                                }
                            }
                            text
                        }
                    };
                    println!(
                        "{:>10}  crc ok  {:>7} B  ballot {}  committed {:>10}  {}",
                        entry.index,
                        entry.bytes.len(),
                        stored.ballot,
                        stored.committed,
                        what
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    println!("entry {}: crc ok but cannot be decoded: {e}", entry.index);
                    problems += 1;
                }
            }
        }
    }
    println!(
        "{}: entries {first}..={last} ({count} read), {}",
        source.display(),
        if problems == 0 {
            "all CRCs ok"
        } else {
            "PROBLEMS FOUND"
        }
    );
    Ok(if problems == 0 {
        exit::OK
    } else {
        exit::NOT_FOUND
    })
}

/// `snapshot inspect FILE`; returns the exit code.
pub fn inspect_snapshot(file: &Path) -> anyhow::Result<u8> {
    let fs = StdFs;
    let config = SnapshotConfig {
        max_chunk_bytes: MAX_ENTRY_BYTES,
        ..SnapshotConfig::default()
    };
    let mut pairs = 0u64;
    let mut payload = 0u64;
    let result = write_ahead_log::load_snapshot(&fs, file, &config, &mut |k, v| {
        pairs += 1;
        payload += (k.len() + v.len()) as u64;
        Ok(())
    });
    match result {
        Ok(info) => {
            println!(
                "{}: index {}, {} pairs, {} bytes of keys and values, file {} bytes, all CRCs ok",
                file.display(),
                info.index,
                info.pairs,
                payload,
                info.bytes
            );
            Ok(exit::OK)
        }
        // A file that cannot be read at all (missing, a directory, no permission) is an
        // operator's failure to report, not corruption found in the file.
        Err(e @ write_ahead_log::WalError::Io { .. }) if pairs == 0 => Err(e.into()),
        Err(e) => {
            println!("CORRUPT: {e} (after {pairs} good pairs)");
            Ok(exit::NOT_FOUND)
        }
    }
}
