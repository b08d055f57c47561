//! Counters the node exports: per peer (sent, dropped, reconnects, ...) and for the listener
//! (received, refused). Updated with relaxed atomics: they are statistics, not synchronisation.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of one outgoing link's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerCounters {
    /// Messages written to the socket.
    pub sent: u64,
    /// Messages dropped because the queue was full.
    pub dropped: u64,
    /// Messages dropped because the link broke while they were being written.
    pub lost_on_disconnect: u64,
    /// Messages queued right now.
    pub queued: u64,
    /// Handshakes accepted by the peer (link established).
    pub connects: u64,
    /// Links re-established after a previous one broke (`connects - 1`, at least 0).
    pub reconnects: u64,
    /// Connection attempts that failed (connect, handshake or timeout).
    pub failed_attempts: u64,
    /// Handshakes the peer refused (wrong cluster, version, or it does not know us).
    pub refused_by_peer: u64,
}

/// A snapshot of all counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Per outgoing link, by peer name.
    pub peers: BTreeMap<String, PeerCounters>,
    /// Messages received and delivered to the inbox.
    pub received: u64,
    /// Incoming connections refused at the handshake (stranger, wrong cluster/version, bad
    /// handshake frame, timeout).
    pub refused_handshakes: u64,
    /// Incoming connections closed because of a bad frame (oversized, invalid, failed check).
    pub refused_frames: u64,
    /// Established incoming links closed because they stayed silent past the idle timeout.
    pub closed_idle: u64,
    /// Bytes read from established incoming links (frames and keepalives).
    pub received_bytes: u64,
    /// Bytes of read buffers (capacity) held by incoming connections right now: partial
    /// frames and read-ahead. A declared length costs nothing until its bytes arrive.
    pub buffered_bytes: u64,
    /// Bytes of the inbox budget held right now by delivered messages not yet released.
    pub inbox_bytes: u64,
}

impl Counters {
    /// Everything refused on the incoming side.
    pub fn refused(&self) -> u64 {
        self.refused_handshakes + self.refused_frames
    }

    /// Sum of `sent` over all peers.
    pub fn sent(&self) -> u64 {
        self.peers.values().map(|p| p.sent).sum()
    }

    /// Sum of `dropped` over all peers.
    pub fn dropped(&self) -> u64 {
        self.peers.values().map(|p| p.dropped).sum()
    }

    /// Sum of `reconnects` over all peers.
    pub fn reconnects(&self) -> u64 {
        self.peers.values().map(|p| p.reconnects).sum()
    }
}

/// Live counters of one link.
#[derive(Debug, Default)]
pub(crate) struct LinkCounters {
    pub sent: AtomicU64,
    pub lost_on_disconnect: AtomicU64,
    pub connects: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub refused_by_peer: AtomicU64,
}

/// Live counters of the incoming side.
#[derive(Debug, Default)]
pub(crate) struct InboundCounters {
    pub received: AtomicU64,
    pub refused_handshakes: AtomicU64,
    pub refused_frames: AtomicU64,
    pub closed_idle: AtomicU64,
    pub received_bytes: AtomicU64,
    /// A gauge: raised and lowered by [`Gauge`] holders.
    pub buffered_bytes: Arc<AtomicU64>,
    /// A gauge: raised on delivery, lowered when an [`InboxBytes`](crate::InboxBytes) drops.
    pub inbox_bytes: Arc<AtomicU64>,
}

pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

pub(crate) fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// One holder's share of a gauge: `set` moves the gauge by the difference, drop takes the
/// share back out, so the gauge is always the sum of the live holders' values.
#[derive(Debug)]
pub(crate) struct Gauge {
    gauge: Arc<AtomicU64>,
    mine: u64,
}

impl Gauge {
    pub(crate) fn new(gauge: Arc<AtomicU64>) -> Self {
        Gauge { gauge, mine: 0 }
    }

    pub(crate) fn set(&mut self, value: u64) {
        if value > self.mine {
            self.gauge.fetch_add(value - self.mine, Ordering::Relaxed);
        } else {
            self.gauge.fetch_sub(self.mine - value, Ordering::Relaxed);
        }
        self.mine = value;
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        self.set(0);
    }
}
