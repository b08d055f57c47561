//! `admin backup --node N FILE` and `restore --config C --node N FILE` (ADR 0150).
//!
//! Backup sends Arakoon's GET_DB to one node (a slave: the master refuses) and streams the
//! answer, a head snapshot of the node's store, into `FILE.tmp-<pid>` beside `FILE`: the
//! announced length is checked, the file fsync'd, verified completely (every CRC), renamed to
//! `FILE`, and the directory fsync'd. An interrupted or damaged transfer never leaves `FILE`
//! behind (nor replaces an older one).
//!
//! Restore verifies the file and installs it as the node's head snapshot in an empty home (see
//! `rarakoon_node::backup::restore`); the node then starts at the backup's index.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::BytesMut;
use rarakoon_client::{ClientCodec, Limits, Prologue, Request};
use rarakoon_node::ClusterConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Encoder;

use crate::cli::{RestoreArgs, Target};
use crate::exit;
use crate::target::ClusterTarget;

/// The longest error message read from a node that refuses.
const MAX_ERROR_MESSAGE: u32 = 64 * 1024;

/// Reads exactly `buf.len()` bytes, each read within `timeout`.
async fn read_exact(
    stream: &mut TcpStream,
    buf: &mut [u8],
    timeout: Duration,
    what: &str,
) -> anyhow::Result<()> {
    tokio::time::timeout(timeout, stream.read_exact(buf))
        .await
        .with_context(|| format!("no {what} within {timeout:?}"))?
        .with_context(|| format!("the connection ended before the {what}"))?;
    Ok(())
}

/// The temp file beside `file`.
fn temp_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(format!(".tmp-{}", std::process::id()));
    PathBuf::from(name)
}

/// `admin backup`: see the module documentation.
pub async fn backup(
    target_args: &Target,
    target: &ClusterTarget,
    name: &str,
    addr: SocketAddr,
    file: &Path,
) -> anyhow::Result<u8> {
    let config_file = match (&target_args.cluster_config, &target_args.dir) {
        (Some(file), _) => file.clone(),
        (None, dir) => crate::local::config_path(dir.as_deref()),
    };
    let config = ClusterConfig::load(&config_file)?;
    let node = config.node(name, &config_file)?;
    let snapshot = rarakoon_node::backup::snapshot_config(node.max_request_size, u64::MAX);
    let timeout = target.timeout;
    let mut stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .with_context(|| format!("cannot connect to {name} at {addr} within {timeout:?}"))?
        .with_context(|| format!("cannot connect to {name} at {addr}"))?;
    let mut out = BytesMut::new();
    let mut codec = ClientCodec::new(Limits::default());
    codec.encode(
        &Prologue {
            cluster_id: bytes::Bytes::from(target.cluster_id.clone()),
        },
        &mut out,
    )?;
    codec.encode(&Request::GetDb, &mut out)?;
    stream.write_all(&out).await?;

    let mut word = [0u8; 4];
    read_exact(&mut stream, &mut word, timeout, "answer").await?;
    let code = u32::from_le_bytes(word);
    if code != 0 {
        read_exact(&mut stream, &mut word, timeout, "error message").await?;
        let len = u32::from_le_bytes(word).min(MAX_ERROR_MESSAGE) as usize;
        let mut message = vec![0u8; len];
        read_exact(&mut stream, &mut message, timeout, "error message").await?;
        let code = rarakoon_client::ErrorCode::from_code(i32::from_le_bytes(code.to_le_bytes()));
        eprintln!(
            "{name}: backup refused: {code:?}: {}",
            String::from_utf8_lossy(&message)
        );
        return Ok(exit::FAILURE);
    }
    let mut length = [0u8; 8];
    read_exact(&mut stream, &mut length, timeout, "length").await?;
    let length = i64::from_le_bytes(length);
    let Ok(length) = u64::try_from(length) else {
        bail!("{name} announced a backup of negative length {length}");
    };

    let tmp = temp_path(file);
    let result = receive(&mut stream, &tmp, length, timeout).await;
    let result = match result {
        Ok(()) => {
            let verify_tmp = tmp.clone();
            tokio::task::spawn_blocking(move || {
                rarakoon_node::backup::verify(&verify_tmp, &snapshot)
            })
            .await
            .context("the verification task failed")?
            .with_context(|| format!("the backup received from {name} is damaged"))
        }
        Err(e) => Err(e),
    };
    let info = match result {
        Ok(info) => info,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    tokio::fs::rename(&tmp, file)
        .await
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), file.display()))?;
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
        .await
        .context("the fsync task failed")?
        .context("cannot fsync the backup's directory")?;
    println!(
        "{name}: backup written to {}: index {}, {} keys, {} bytes (verified)",
        file.display(),
        info.index,
        info.pairs,
        info.bytes
    );
    Ok(exit::OK)
}

/// Copies `length` bytes from `stream` into a new file `tmp` and fsyncs it.
async fn receive(
    stream: &mut TcpStream,
    tmp: &Path,
    length: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut out = tokio::fs::File::create(tmp)
        .await
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = length;
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        let n = tokio::time::timeout(timeout, stream.read(&mut buf[..want]))
            .await
            .with_context(|| format!("the backup stalled for {timeout:?}"))??;
        if n == 0 {
            bail!(
                "the node ended the backup after {} of {length} bytes",
                length - left
            );
        }
        out.write_all(&buf[..n])
            .await
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        left -= n as u64;
    }
    out.sync_all()
        .await
        .with_context(|| format!("cannot fsync {}", tmp.display()))?;
    Ok(())
}

/// `restore`: see the module documentation.
pub async fn restore(args: RestoreArgs) -> anyhow::Result<u8> {
    let config = ClusterConfig::load(&args.config)?;
    let node = config.node(&args.node, &args.config)?.clone();
    let snapshot =
        rarakoon_node::backup::snapshot_config(node.max_request_size, node.max_snapshot_bytes);
    let home = node.home_dir.clone();
    let file = args.file.clone();
    let force = args.force;
    let restored = tokio::task::spawn_blocking(move || {
        rarakoon_node::backup::restore(&home, &file, &snapshot, force)
    })
    .await
    .context("the restore task failed")??;
    if let Some(aside) = &restored.moved_aside {
        println!(
            "{}: the old home directory was moved to {}",
            args.node,
            aside.display()
        );
    }
    println!(
        "{}: restored {} into {}: index {}, {} keys. Start the node with `rarakoon-bin \
         --config {} --node {}`",
        args.node,
        args.file.display(),
        node.home_dir.display(),
        restored.info.index,
        restored.info.pairs,
        args.config.display(),
        args.node
    );
    Ok(exit::OK)
}
