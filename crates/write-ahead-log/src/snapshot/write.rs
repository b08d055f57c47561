//! Writing a head snapshot: stream the store's pairs into CRC'd chunks of a temp file, then
//! fsync, rename into place and fsync the directory. At most one chunk is held in memory.

use std::io;
use std::path::Path;

use super::{
    HEADER_LEN, MAGIC, PAIR_HEADER_LEN, SnapshotConfig, SnapshotInfo, SnapshotSource, TAG_CHUNK,
    TAG_TRAILER, VERSION, head_snapshot_path,
};
use crate::error::{Result, WalError};
use crate::fs::{FileSystem, WritableFile};
use crate::segment::tmp_path;

struct FrameWriter<'a> {
    file: &'a mut dyn WritableFile,
    path: &'a Path,
    crc: u32,
    written: u64,
    body: Vec<u8>,
    chunk_pairs: u32,
    total_pairs: u64,
    prev_key: Vec<u8>,
    config: &'a SnapshotConfig,
}

impl FrameWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.written += bytes.len() as u64;
        self.file
            .write_all(bytes)
            .map_err(WalError::io("write", self.path))
    }

    fn push(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let pair_len = PAIR_HEADER_LEN + key.len() + value.len();
        if pair_len > self.config.max_chunk_bytes as usize {
            return Err(WalError::PairTooLarge {
                key_len: key.len(),
                value_len: value.len(),
                max: self.config.max_chunk_bytes,
            });
        }
        if self.total_pairs > 0 && key <= self.prev_key.as_slice() {
            return Err(WalError::KeysOutOfOrder {
                previous_len: self.prev_key.len(),
            });
        }
        self.prev_key.clear();
        self.prev_key.extend_from_slice(key);
        if !self.body.is_empty()
            && self.body.len() + pair_len > self.config.max_chunk_bytes as usize
        {
            self.flush_chunk()?;
        }
        // Both lengths are below max_chunk_bytes, a u32.
        self.body
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.body
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.body.extend_from_slice(key);
        self.body.extend_from_slice(value);
        self.chunk_pairs += 1;
        self.total_pairs += 1;
        if self.body.len() >= self.config.chunk_target_bytes {
            self.flush_chunk()?;
        }
        Ok(())
    }

    fn flush_chunk(&mut self) -> Result<()> {
        if self.chunk_pairs == 0 {
            return Ok(());
        }
        let mut header = [0u8; 13];
        header[0] = TAG_CHUNK;
        header[1..5].copy_from_slice(&self.chunk_pairs.to_le_bytes());
        header[5..9].copy_from_slice(&(self.body.len() as u32).to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&header[1..9]), &self.body);
        header[9..13].copy_from_slice(&crc.to_le_bytes());
        self.write(&header)?;
        let body = std::mem::take(&mut self.body);
        let result = self.write(&body);
        self.body = body;
        self.body.clear();
        self.chunk_pairs = 0;
        result
    }

    fn finish(&mut self) -> Result<()> {
        self.flush_chunk()?;
        let mut trailer = [0u8; 9];
        trailer[0] = TAG_TRAILER;
        trailer[1..].copy_from_slice(&self.total_pairs.to_le_bytes());
        self.write(&trailer)?;
        let crc = self.crc;
        self.write(&crc.to_le_bytes())
    }
}

/// Writes the head snapshot of `source` into `dir` atomically (temp file, fsync, rename,
/// directory fsync), streaming pairs chunk by chunk.
pub fn write_snapshot(
    fs: &dyn FileSystem,
    dir: &Path,
    source: &dyn SnapshotSource,
    config: &SnapshotConfig,
) -> Result<SnapshotInfo> {
    let path = head_snapshot_path(dir);
    let tmp = tmp_path(&path);
    let index = source.applied_index();
    let mut file = fs.create(&tmp).map_err(WalError::io("create", &tmp))?;
    let mut writer = FrameWriter {
        file: file.as_mut(),
        path: &tmp,
        crc: 0,
        written: 0,
        body: Vec::with_capacity(
            config
                .chunk_target_bytes
                .min(config.max_chunk_bytes as usize)
                + 1024,
        ),
        chunk_pairs: 0,
        total_pairs: 0,
        prev_key: Vec::new(),
        config,
    };
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..20].copy_from_slice(&index.to_le_bytes());
    let header_crc = crc32c::crc32c(&header[..20]);
    header[20..].copy_from_slice(&header_crc.to_le_bytes());
    writer.write(&header)?;

    let mut failure = None;
    let fed = source.for_each_pair(&mut |key, value| {
        writer.push(key, value).map_err(|error| {
            failure = Some(error);
            io::Error::other("snapshot writer failed")
        })
    });
    if let Some(error) = failure {
        return Err(error);
    }
    fed.map_err(WalError::Source)?;
    writer.finish()?;
    let info = SnapshotInfo {
        index,
        pairs: writer.total_pairs,
        bytes: writer.written,
    };
    file.sync_data().map_err(WalError::io("fsync", &tmp))?;
    drop(file);
    fs.rename(&tmp, &path)
        .map_err(WalError::io("rename into place", &path))?;
    fs.sync_dir(dir)
        .map_err(WalError::io("fsync directory", dir))?;
    tracing::info!(file = %path.display(), index, pairs = info.pairs, bytes = info.bytes, "wrote head snapshot");
    Ok(info)
}
