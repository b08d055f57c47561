//! Socket options for peer links: TCP_NODELAY (a consensus message must not wait for Nagle),
//! and dead-peer detection (keepalive, and on Linux TCP_USER_TIMEOUT) so a peer host that
//! vanished without closing its sockets is noticed in about `dead_peer_timeout`, not after the
//! kernel's default retransmission timeout of many minutes.

use socket2::{SockRef, TcpKeepalive};
use std::time::Duration;
use tokio::net::TcpStream;
use tracing::debug;

/// Apply the link socket options; failures are logged and otherwise ignored (the link works
/// without them, only slower to notice a dead peer).
pub(crate) fn tune(stream: &TcpStream, dead_peer_timeout: Duration) {
    if let Err(e) = stream.set_nodelay(true) {
        debug!(error = %e, "could not set TCP_NODELAY");
    }
    if dead_peer_timeout.is_zero() {
        return;
    }
    let sock = SockRef::from(stream);
    let idle = (dead_peer_timeout / 2).max(Duration::from_secs(1));
    let interval = (dead_peer_timeout / 10).max(Duration::from_secs(1));
    let keepalive = TcpKeepalive::new().with_time(idle).with_interval(interval);
    #[cfg(target_os = "linux")]
    let keepalive = keepalive.with_retries(5);
    if let Err(e) = sock.set_tcp_keepalive(&keepalive) {
        debug!(error = %e, "could not enable TCP keepalive");
    }
    #[cfg(target_os = "linux")]
    if let Err(e) = sock.set_tcp_user_timeout(Some(dead_peer_timeout)) {
        debug!(error = %e, "could not set TCP_USER_TIMEOUT");
    }
}
