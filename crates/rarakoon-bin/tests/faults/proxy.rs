//! A fault proxy for one directed node-to-node link.
//!
//! Peer links are one-directional (node A's messages to B travel on the connection A opened to
//! B), so a proxy that A dials instead of B carries exactly the traffic A -> B (plus B's
//! handshake reply). Blocking it is a one-way partition; blocking both directions of a pair is
//! a two-way one.
//!
//! - `Pass`: bytes are forwarded as they arrive, both ways.
//! - `Block`: nothing is read any more, on existing or new connections, so nothing is lost
//!   either: like a network that drops every packet, TCP's buffers fill, the sender's
//!   keepalive or user timeout may give up, and after a heal whatever is still queued
//!   arrives. New connections are accepted but not forwarded until the heal.
//! - [`Proxy::reset`] closes every connection at once (a link reset); new ones are forwarded.
//!
//! Invariant: a byte is forwarded only in `Pass` and in the order it arrived on its
//! connection; a proxy never invents or reorders bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pass,
    Block,
}

#[derive(Debug)]
struct State {
    mode: Mode,
    /// Bumped by `reset`: connections of an older epoch close themselves.
    epoch: u64,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stopped: AtomicBool,
    forwarded: AtomicU64,
    conns: Mutex<Vec<TcpStream>>,
}

/// One proxy: listens on `addr()` and forwards to `target`.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

/// How long a pump waits in a blocking read before it looks at the mode again.
const POLL: Duration = Duration::from_millis(50);

impl Proxy {
    /// Starts a proxy on a free loopback port in front of `target`.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                mode: Mode::Pass,
                epoch: 0,
            }),
            changed: Condvar::new(),
            stopped: AtomicBool::new(false),
            forwarded: AtomicU64::new(0),
            conns: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        thread::spawn(move || {
            for incoming in listener.incoming() {
                if s.stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = incoming else { continue };
                let s = s.clone();
                thread::spawn(move || serve(client, target, s));
            }
        });
        Proxy { addr, shared }
    }

    /// The address to give the node that should reach `target` through this proxy.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops forwarding (a partition of this direction).
    pub fn block(&self) {
        self.set(Mode::Block);
    }

    /// Forwards again (heals the partition).
    pub fn pass(&self) {
        self.set(Mode::Pass);
    }

    /// Closes every open connection (a link reset); new connections are served.
    pub fn reset(&self) {
        self.shared.state.lock().unwrap().epoch += 1;
        for c in self.shared.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        self.shared.changed.notify_all();
    }

    /// Bytes forwarded so far, both directions.
    pub fn forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::SeqCst)
    }

    fn set(&self, mode: Mode) {
        self.shared.state.lock().unwrap().mode = mode;
        self.shared.changed.notify_all();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.reset();
        // Wake the accept loop so it sees `stopped`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// Waits while the proxy is blocked; returns false once the connection's epoch is over or the
/// proxy stopped.
fn wait_pass(shared: &Shared, epoch: u64) -> bool {
    let mut state = shared.state.lock().unwrap();
    loop {
        if state.epoch != epoch || shared.stopped.load(Ordering::SeqCst) {
            return false;
        }
        if state.mode == Mode::Pass {
            return true;
        }
        state = shared.changed.wait_timeout(state, POLL).unwrap().0;
    }
}

fn serve(client: TcpStream, target: SocketAddr, shared: Arc<Shared>) {
    let epoch = shared.state.lock().unwrap().epoch;
    // A connection that arrives during a partition is held, unanswered, until the heal.
    if !wait_pass(&shared, epoch) {
        return;
    }
    let Ok(upstream) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    {
        let mut conns = shared.conns.lock().unwrap();
        conns.push(client.try_clone().unwrap());
        conns.push(upstream.try_clone().unwrap());
    }
    let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
    let s2 = shared.clone();
    let back = thread::spawn(move || pump(u2, c2, &s2, epoch));
    pump(client, upstream, &shared, epoch);
    let _ = back.join();
}

/// Copies `from` to `to` while the proxy passes; stops at EOF, an error or the epoch's end.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared, epoch: u64) {
    let _ = from.set_read_timeout(Some(POLL));
    let mut buf = [0u8; 16 * 1024];
    loop {
        if !wait_pass(shared, epoch) {
            break;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                // Blocked between the read and the write: hold the bytes until the heal.
                if !wait_pass(shared, epoch) || to.write_all(&buf[..n]).is_err() {
                    break;
                }
                shared.forwarded.fetch_add(n as u64, Ordering::SeqCst);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
