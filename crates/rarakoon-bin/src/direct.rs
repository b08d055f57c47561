//! A single request to one specific node (admin commands address a node, not the master).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::BytesMut;
use rarakoon_client::{ClientCodec, ClientStream, Limits, Prologue, Reply, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::{Decoder, Encoder};

/// TLS configuration of one direct call (see `crate::tls::config_for`).
pub type Tls = Option<Arc<rarakoon_tls::rustls::ClientConfig>>;

/// Sends `request` to the node at `addr` (over TLS with `tls`) and returns its reply.
pub async fn call(
    cluster_id: &str,
    addr: SocketAddr,
    request: &Request,
    timeout: Duration,
    tls: Tls,
) -> anyhow::Result<Reply> {
    tokio::time::timeout(timeout, call_inner(cluster_id, addr, request, tls))
        .await
        .with_context(|| format!("no answer from {addr} within {timeout:?}"))?
}

async fn call_inner(
    cluster_id: &str,
    addr: SocketAddr,
    request: &Request,
    tls: Tls,
) -> anyhow::Result<Reply> {
    let mut stream = ClientStream::connect(addr, tls.as_ref())
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    let mut codec = ClientCodec::new(Limits {
        max_frame_bytes: 256 * 1024 * 1024,
        ..Limits::default()
    });
    let mut out = BytesMut::new();
    let prologue = Prologue {
        cluster_id: bytes::Bytes::from(cluster_id.to_owned()),
    };
    codec.encode(&prologue, &mut out)?;
    codec.encode(request, &mut out)?;
    stream.write_all(&out).await?;
    stream.flush().await?;
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        if let Some((_, reply)) = codec.decode(&mut buf)? {
            return Ok(reply);
        }
        if stream.read_buf(&mut buf).await? == 0 {
            bail!("{addr} closed the connection without answering (wrong cluster id?)");
        }
    }
}
