//! The byte stream between a client and a node: plain TCP or TLS ([`ClientStream`]).
//!
//! Writers must flush after writing: a TLS stream may hold written bytes in its session
//! until flushed (for plain TCP the flush does nothing).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A plain or TLS connection to a node's client port.
pub enum ClientStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<rarakoon_tls::tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl ClientStream {
    /// Connects to `addr` (TCP_NODELAY set) and, with `tls`, completes the TLS handshake.
    /// A TLS failure (the node's certificate is not the expected one, the node wants a client
    /// certificate, the port is plain TCP) is an I/O error saying so.
    pub async fn connect(
        addr: SocketAddr,
        tls: Option<&Arc<rarakoon_tls::rustls::ClientConfig>>,
    ) -> std::io::Result<ClientStream> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        match tls {
            None => Ok(ClientStream::Plain(stream)),
            Some(tls) => {
                let connector = rarakoon_tls::tokio_rustls::TlsConnector::from(Arc::clone(tls));
                let tls = connector
                    .connect(rarakoon_tls::server_name(), stream)
                    .await
                    .map_err(|e| std::io::Error::new(e.kind(), format!("TLS handshake: {e}")))?;
                Ok(ClientStream::Tls(Box::new(tls)))
            }
        }
    }

    /// Reads what is there without waiting: `WouldBlock` when nothing is. For TLS, records
    /// that carry no application data (a TLS 1.3 session ticket) are consumed and read as
    /// nothing.
    pub fn try_read_buf(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        match self {
            ClientStream::Plain(s) => s.try_read_buf(buf),
            ClientStream::Tls(s) => {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let mut chunk = [0u8; 4096];
                let mut read = ReadBuf::new(&mut chunk);
                match Pin::new(s.as_mut()).poll_read(&mut cx, &mut read) {
                    Poll::Ready(Ok(())) => {
                        buf.extend_from_slice(read.filled());
                        Ok(read.filled().len())
                    }
                    Poll::Ready(Err(e)) => Err(e),
                    Poll::Pending => Err(std::io::ErrorKind::WouldBlock.into()),
                }
            }
        }
    }
}
