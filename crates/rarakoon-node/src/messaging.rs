//! Node-to-node messaging over `tcp-messenger`: the [`Transport`] the driver sends through, and
//! the task that feeds received messages to the driver.
//!
//! The messenger names peers; paxos-core numbers them. This module maps between the two with
//! the membership's `NodeId` order (`crate::membership`), drops (with a log line) anything from
//! a name it does not know, and drops any message naming a node number outside the membership
//! ([`crate::wire::check_nodes`]) before the driver sees it.
//!
//! Requests that make this node read from disk on a peer's behalf (`CatchUpRequest`,
//! `SnapshotRequest`) pass a token bucket per peer and kind ([`RequestLimits`]) before they
//! reach the driver; beyond it they are dropped, counted in [`MessagingCounters`] and logged at
//! debug level. A peer flooding them can then neither fill the driver's queue nor the storage
//! thread's backlog (each snapshot request is a storage job, and a full job queue stops the
//! driver taking inputs). Every message keeps its share of the messenger's inbox byte budget
//! ([`tcp_messenger::InboxBytes`]) while it waits in the driver's queue, so peer bytes waiting
//! in the inbox and the driver queue together stay within `MessengerConfig::inbox_bytes`.
//!
//! Why the default bucket (1000 requests a second, bursts of 64, per peer and kind) never slows
//! a legitimate peer: catching up is self-clocked. paxos-core keeps one catch-up request
//! outstanding and sends the next when the answer arrives, before applying it (an unanswered
//! one is repeated once per retransmit interval, at most every 50 ms); the snapshot fetcher
//! asks for the next chunk when the previous one arrived. So a real peer asks at most once per
//! round trip plus serving time, and 1000 a second is 16 million log entries (16384 per
//! answer) or 8 GB (8 MiB per answer) of log, or 1 GiB of snapshot (1 MiB chunks) a second:
//! more than one storage thread serves or a 10 Gb/s link carries. The burst absorbs
//! retransmissions that bunch up after a stall. Only a peer asking faster than its answers can
//! come back ever hits the limit.
//!
//! Catch-up answers received are counted ([`CatchUpProgress`]): while a node catches up it logs
//! at info level, at most once a second, the entries and bytes received so far and the rate,
//! and once more when an answer reaches the serving peer's committed index (ADR 0190).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use paxos_core::{Message, NodeId};
use tcp_messenger::{Inbox, Messenger};
use tokio::sync::mpsc;
use tokio::time::{Duration, Instant};

use crate::driver::Input;
use crate::transport::Transport;
use crate::wire::PeerMessage;

/// Sends through a running messenger.
#[derive(Debug)]
pub struct TcpTransport {
    messenger: Messenger<PeerMessage>,
    names: Vec<String>,
}

impl TcpTransport {
    /// A transport over `messenger`; `names[i]` is the node with id `i`.
    pub fn new(messenger: Messenger<PeerMessage>, names: Vec<String>) -> Self {
        TcpTransport { messenger, names }
    }
}

impl Transport for TcpTransport {
    fn send(&self, to: NodeId, msg: PeerMessage) {
        let Some(name) = self.names.get(to.index()) else {
            tracing::warn!(%to, "no such peer; message dropped");
            return;
        };
        if let Err(e) = self.messenger.send(name, &msg) {
            tracing::debug!(peer = %name, "message not sent: {e}");
        }
    }

    fn broadcast(&self, msg: PeerMessage) {
        if let Err(e) = self.messenger.broadcast(&msg) {
            tracing::debug!("broadcast not sent: {e}");
        }
    }
}

/// The token bucket applied per peer, separately to catch-up and to snapshot requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestLimits {
    /// Sustained requests per second (tokens added per second).
    pub per_sec: f64,
    /// Requests taken at once after a quiet spell (the bucket's size).
    pub burst: f64,
}

impl Default for RequestLimits {
    /// 1000 a second, bursts of 64 (see the module documentation for why).
    fn default() -> Self {
        RequestLimits {
            per_sec: 1000.0,
            burst: 64.0,
        }
    }
}

/// What the pump dropped, for the node's statistics.
#[derive(Debug, Default)]
pub struct MessagingCounters {
    /// Catch-up requests dropped by the rate limit.
    pub dropped_catch_up_requests: AtomicU64,
    /// Snapshot requests dropped by the rate limit.
    pub dropped_snapshot_requests: AtomicU64,
    /// Messages from an unknown name or naming nodes outside the membership.
    pub dropped_invalid: AtomicU64,
    /// Messages handed to the driver.
    pub delivered: AtomicU64,
}

impl MessagingCounters {
    /// Catch-up plus snapshot requests dropped by the rate limit.
    pub fn dropped_requests(&self) -> u64 {
        self.dropped_catch_up_requests.load(Ordering::Relaxed)
            + self.dropped_snapshot_requests.load(Ordering::Relaxed)
    }
}

/// A token bucket on tokio's clock (so paused-clock tests drive it).
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(limits: RequestLimits, now: Instant) -> Self {
        Bucket {
            tokens: limits.burst,
            at: now,
        }
    }

    /// Take one token if there is one.
    fn take(&mut self, limits: RequestLimits, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at);
        self.at = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * limits.per_sec).min(limits.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Which bucket a message draws from, if any.
fn request_kind(msg: &PeerMessage) -> Option<usize> {
    match msg {
        PeerMessage::Paxos(Message::CatchUpRequest { .. }) => Some(0),
        PeerMessage::SnapshotRequest { .. } => Some(1),
        _ => None,
    }
}

/// How often a catch-up in progress is logged.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// An answer after this long without one starts a new catch-up in the log lines.
const PROGRESS_GAP: Duration = Duration::from_secs(10);
/// A catch-up that ends before its first progress line is logged at info level only when it
/// moved at least this many bytes (a follower a few entries behind is routine, not news).
const PROGRESS_QUIET_BYTES: u64 = 1 << 20;

/// Counts the catch-up answers this node receives, to log how a catch-up progresses.
///
/// Invariant: the counters describe one run of answers without a gap of [`PROGRESS_GAP`]; a
/// run ends when an answer reaches the serving peer's committed index.
#[derive(Debug, Default)]
pub struct CatchUpProgress {
    run: Option<ProgressRun>,
}

#[derive(Debug, Clone, Copy)]
struct ProgressRun {
    started: Instant,
    last_answer: Instant,
    last_log: Instant,
    logged: bool,
    entries: u64,
    bytes: u64,
}

/// One line to log about a catch-up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProgressLine {
    /// Entries received in this run.
    pub entries: u64,
    /// Frame bytes received in this run.
    pub bytes: u64,
    /// Seconds since the run's first answer was received.
    pub secs: f64,
    /// The last index received.
    pub index: u64,
    /// The serving peer's committed index, as its answer said.
    pub peer_committed: u64,
    /// The answer reached the peer's committed index: the run ended.
    pub reached: bool,
    /// Log at info level (else debug).
    pub loud: bool,
}

impl ProgressLine {
    /// Megabytes (10^6 B) per second over the run.
    pub fn mb_per_sec(&self) -> f64 {
        if self.secs > 0.0 {
            self.bytes as f64 / self.secs / 1e6
        } else {
            0.0
        }
    }
}

impl CatchUpProgress {
    /// Counts an answer of `entries` entries ending at `index` that came in a frame of
    /// `bytes`; returns a line to log, if one is due.
    pub fn on_answer(
        &mut self,
        now: Instant,
        entries: u64,
        bytes: u64,
        index: u64,
        peer_committed: u64,
    ) -> Option<ProgressLine> {
        let run = match &mut self.run {
            Some(run) if now.saturating_duration_since(run.last_answer) < PROGRESS_GAP => run,
            slot => slot.insert(ProgressRun {
                started: now,
                last_answer: now,
                last_log: now,
                logged: false,
                entries: 0,
                bytes: 0,
            }),
        };
        run.last_answer = now;
        run.entries = run.entries.saturating_add(entries);
        run.bytes = run.bytes.saturating_add(bytes);
        let reached = entries > 0 && index >= peer_committed;
        let due = now.saturating_duration_since(run.last_log) >= PROGRESS_EVERY;
        if !reached && !due {
            return None;
        }
        let line = ProgressLine {
            entries: run.entries,
            bytes: run.bytes,
            secs: now.saturating_duration_since(run.started).as_secs_f64(),
            index,
            peer_committed,
            reached,
            loud: !reached || run.logged || run.bytes >= PROGRESS_QUIET_BYTES,
        };
        run.last_log = now;
        run.logged = true;
        if reached {
            self.run = None;
        }
        Some(line)
    }
}

fn log_progress(peer: &str, line: &ProgressLine) {
    let mib = line.bytes as f64 / f64::from(1u32 << 20);
    let rate = line.mb_per_sec();
    match (line.reached, line.loud) {
        (false, _) => tracing::info!(
            %peer,
            entries = line.entries,
            bytes = line.bytes,
            index = line.index,
            peer_committed = line.peer_committed,
            secs = line.secs,
            mb_per_sec = rate,
            "catching up: {} entries, {mib:.1} MiB received so far, {rate:.1} MB/s",
            line.entries
        ),
        (true, true) => tracing::info!(
            %peer,
            entries = line.entries,
            bytes = line.bytes,
            index = line.index,
            secs = line.secs,
            mb_per_sec = rate,
            "caught up with the peer's committed index: {} entries, {mib:.1} MiB in {:.2} s, \
             {rate:.1} MB/s",
            line.entries,
            line.secs
        ),
        (true, false) => tracing::debug!(
            %peer,
            entries = line.entries,
            bytes = line.bytes,
            index = line.index,
            "caught up with the peer's committed index"
        ),
    }
}

/// What the driver accepts from the messenger's inbox: the sender mapped to its `NodeId`,
/// messages from unknown names or naming nodes outside the membership dropped, catch-up and
/// snapshot requests beyond [`RequestLimits`] (per peer and kind) dropped, all counted in
/// [`MessagingCounters`]; catch-up answers feed the progress log lines ([`CatchUpProgress`]).
/// Used by [`pump_inbox`] and by the driver reading the inbox itself
/// ([`crate::driver::Driver::with_peers`]), so both apply the same rules.
#[derive(Debug)]
pub struct PeerFilter {
    ids: BTreeMap<Arc<str>, NodeId>,
    members: usize,
    limits: RequestLimits,
    buckets: Vec<[Bucket; 2]>,
    counters: Arc<MessagingCounters>,
    progress: CatchUpProgress,
}

impl PeerFilter {
    /// A filter for the membership `names` (`names[i]` is node `i`).
    pub fn new(names: &[String], limits: RequestLimits, counters: Arc<MessagingCounters>) -> Self {
        let ids = names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                u8::try_from(i)
                    .ok()
                    .map(|i| (Arc::from(n.as_str()), NodeId(i)))
            })
            .collect();
        let start = Instant::now();
        PeerFilter {
            ids,
            members: names.len(),
            limits,
            buckets: vec![[Bucket::full(limits, start), Bucket::full(limits, start)]; names.len()],
            counters,
            progress: CatchUpProgress::default(),
        }
    }

    /// The message as the driver takes it, or `None` when it is dropped (counted, logged).
    pub fn admit(
        &mut self,
        incoming: tcp_messenger::Incoming<PeerMessage>,
    ) -> Option<(NodeId, PeerMessage, tcp_messenger::InboxBytes)> {
        let counters = &self.counters;
        let Some(&from) = self.ids.get(&incoming.from) else {
            tracing::warn!(peer = %incoming.from, "message from an unknown node dropped");
            counters.dropped_invalid.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        if let Err(problem) = crate::wire::check_nodes(&incoming.msg, self.members) {
            tracing::warn!(peer = %incoming.from, "invalid message dropped: {problem}");
            counters.dropped_invalid.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if let Some(kind) = request_kind(&incoming.msg) {
            let limits = self.limits;
            let bucket = self
                .buckets
                .get_mut(from.index())
                .and_then(|b| b.get_mut(kind));
            if !bucket.is_some_and(|b| b.take(limits, Instant::now())) {
                let (counter, what) = if kind == 0 {
                    (&counters.dropped_catch_up_requests, "catch-up")
                } else {
                    (&counters.dropped_snapshot_requests, "snapshot")
                };
                let dropped = counter.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::debug!(
                    peer = %incoming.from,
                    dropped,
                    "{what} request over the rate limit dropped"
                );
                return None;
            }
        }
        if let PeerMessage::Paxos(Message::CatchUpEntries {
            first,
            values,
            committed,
        }) = &incoming.msg
            && let Some(line) = self.progress.on_answer(
                Instant::now(),
                values.len() as u64,
                incoming.held.bytes(),
                first.saturating_add(values.len() as u64).saturating_sub(1),
                *committed,
            )
        {
            log_progress(&incoming.from, &line);
        }
        counters.delivered.fetch_add(1, Ordering::Relaxed);
        Some((from, incoming.msg, incoming.held))
    }
}

/// Moves messages from the messenger's inbox to the driver until either side closes, dropping
/// catch-up and snapshot requests beyond `limits` (per peer and kind) and counting in
/// `counters` ([`PeerFilter`]). A node reads its inbox from the driver itself
/// ([`crate::driver::Driver::with_peers`], one task hand-off less per message); this task is
/// for drivers fed only through their input channel.
pub async fn pump_inbox(
    mut inbox: Inbox<PeerMessage>,
    names: Vec<String>,
    driver: mpsc::Sender<Input>,
    limits: RequestLimits,
    counters: Arc<MessagingCounters>,
) {
    let mut filter = PeerFilter::new(&names, limits, counters);
    let mut batch = Vec::with_capacity(64);
    loop {
        batch.clear();
        if inbox.recv_many(&mut batch, 64).await == 0 {
            return;
        }
        for incoming in batch.drain(..) {
            let Some((from, msg, held)) = filter.admit(incoming) else {
                continue;
            };
            if driver.send(Input::Peer { from, msg, held }).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn progress_is_logged_once_a_second_with_the_totals_of_the_run() {
        let t0 = Instant::now();
        let mut progress = CatchUpProgress::default();
        assert_eq!(progress.on_answer(t0, 100, 1_000_000, 100, 10_000), None);
        let half = t0 + Duration::from_millis(500);
        assert_eq!(progress.on_answer(half, 100, 1_000_000, 200, 10_000), None);
        let second = t0 + Duration::from_secs(1);
        let line = progress
            .on_answer(second, 100, 1_000_000, 300, 10_000)
            .expect("a line is due after a second");
        assert_eq!(
            (line.entries, line.bytes, line.index),
            (300, 3_000_000, 300)
        );
        assert!(!line.reached && line.loud);
        assert!((line.mb_per_sec() - 3.0).abs() < 1e-9, "{line:?}");
        // The next line is due a second after the last one, not after the first answer.
        let soon = second + Duration::from_millis(999);
        assert_eq!(progress.on_answer(soon, 1, 10, 301, 10_000), None);
    }

    #[test]
    fn reaching_the_peers_committed_index_ends_the_run() {
        let t0 = Instant::now();
        let mut progress = CatchUpProgress::default();
        // A small catch-up that ends at once is routine: logged quietly.
        let line = progress
            .on_answer(t0, 3, 500, 3, 3)
            .expect("the end is logged");
        assert!(line.reached && !line.loud, "{line:?}");
        // A large one is worth an info line even when it ends before the first second.
        let line = progress
            .on_answer(t0, 10, 2 << 20, 13, 13)
            .expect("the end is logged");
        assert!(line.reached && line.loud, "{line:?}");
        assert_eq!(
            line.entries, 10,
            "a new run starts after the end of the last one"
        );
        // An empty answer (nothing to serve) does not count as reaching the end.
        assert_eq!(progress.on_answer(t0, 0, 100, 13, 13), None);
    }

    #[test]
    fn a_quiet_spell_starts_a_new_run() {
        let t0 = Instant::now();
        let mut progress = CatchUpProgress::default();
        assert_eq!(progress.on_answer(t0, 5, 5_000, 5, 100), None);
        let later = t0 + PROGRESS_GAP;
        assert_eq!(progress.on_answer(later, 5, 5_000, 10, 100), None);
        let line = progress
            .on_answer(later + PROGRESS_EVERY, 5, 5_000, 15, 100)
            .expect("due");
        assert_eq!(
            line.entries, 10,
            "the answer before the gap is not counted: {line:?}"
        );
        assert!((line.secs - 1.0).abs() < 1e-9, "{line:?}");
    }
}
