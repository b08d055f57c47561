//! One client connection: reading with read-ahead, admitting requests into the pipeline,
//! writing replies in order, and the timeouts that close a connection a client misuses.
//!
//! The loop, each turn:
//! 1. decode what is buffered and start every request the pipeline admits (each polled once
//!    as it starts; the first one that may not start yet waits, decoded, and holds back the
//!    rest);
//! 2. encode the finished outcomes at the front of the pipeline, in order, while fewer than
//!    [`ListenerConfig::max_queued_reply_bytes`] are queued;
//! 3. wait for the first of: a handler future finishing, the socket taking queued replies,
//!    the socket giving request bytes (if reading is allowed and the budget has room), the
//!    budget granting permits, shutdown, a deadline.
//!
//! Invariants:
//! - reading stops while the pipeline is full ([`ListenerConfig::max_in_flight`]), while the
//!   requests in flight and the bytes read ahead reach [`ListenerConfig::max_read_ahead_bytes`],
//!   and while replies are queued up to their bound: a client that does not read its replies
//!   stops being read, and the write timeout then closes it;
//! - every byte read was covered by the ledger before the read (`Ledger::try_reserve`);
//! - the input buffer is allocated here, explicitly, so its size is known: it grows by
//!   doubling only while a frame larger than it is arriving, and shrinks back before the next
//!   read once the large frame is gone;
//! - the connection ends only with nothing left to write: after an outcome that closes it,
//!   a protocol error, shutdown or end of input, the requests still in flight before that
//!   point are answered first (shutdown: those already started; end of input: every complete
//!   request received).

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, watch};
use tokio::time::Instant;
use tokio_util::codec::Decoder;
use tracing::{debug, info};

use super::budget::Ledger;
use super::pipeline::{HandlerFuture, Pipeline, Progress};
use super::stats::ListenerStats;
use super::{Admission, ConnectionInfo, Handler, ListenerConfig, Shared};
use crate::codec::{CodecError, ServerCodec, ServerFrame};
use crate::request::Request;
use crate::response::encode_reply;
use crate::wire::{Limits, ProtocolError};

/// The largest partial frame the codec keeps before it reports the frame too large.
pub(super) fn max_partial_frame(limits: Limits) -> usize {
    limits.max_frame_bytes.saturating_add(16)
}

/// A limit whose timeout closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    Prologue,
    Frame,
    Idle,
    Write,
}

/// Why a connection ended (for the log).
enum End {
    PeerClosed,
    Shutdown,
    WrongCluster(Bytes),
    Protocol(String),
    HandlerClosed,
    Io(std::io::Error),
    Timeout(Limit, Duration),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::PeerClosed => f.write_str("client closed the connection"),
            End::Shutdown => f.write_str("listener shutting down"),
            End::WrongCluster(id) => write!(
                f,
                "prologue names cluster {:?}, not ours",
                String::from_utf8_lossy(id)
            ),
            End::Protocol(e) => write!(f, "protocol error: {e}"),
            End::HandlerClosed => f.write_str("closed after the reply, as the handler asked"),
            End::Io(e) => write!(f, "i/o error: {e}"),
            End::Timeout(Limit::Prologue, t) => write!(f, "no prologue within {t:?}"),
            End::Timeout(Limit::Frame, t) => {
                write!(f, "a request did not arrive completely within {t:?}")
            }
            End::Timeout(Limit::Idle, t) => write!(f, "idle for {t:?}"),
            End::Timeout(Limit::Write, t) => {
                write!(f, "client did not read its replies for {t:?}")
            }
        }
    }
}

/// The log text for a protocol error; a prologue that is really the start of a TLS handshake
/// (a record of type 0x16, version 3.x) says so, since that is a client configured for TLS
/// talking to a port that serves plain TCP.
fn describe_protocol_error(e: &crate::ProtocolError) -> String {
    match e {
        crate::ProtocolError::BadPrologue { magic, .. } if magic & 0xffff == 0x0316 => {
            format!(
                "{e}: the bytes are a TLS handshake, but this client port serves plain TCP \
                 (the client uses TLS; set `service = true` in [cluster.tls] to serve TLS here)"
            )
        }
        _ => e.to_string(),
    }
}

/// Serves one accepted connection until it ends, then closes it.
pub(super) async fn serve<S, H>(
    mut stream: S,
    info: ConnectionInfo,
    shared: &Shared,
    handler: &H,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    H: Handler,
{
    let _open = Open::new(&shared.stats);
    let end = Connection::new(&info, shared, handler)
        .run(&mut stream, &mut shutdown)
        .await;
    let stats = &shared.stats;
    match &end {
        End::PeerClosed | End::Shutdown | End::HandlerClosed => {
            debug!(peer = %info.peer, id = info.id, reason = %end, "client connection closed")
        }
        End::Timeout(limit, _) => {
            ListenerStats::count(match limit {
                Limit::Prologue => &stats.closed_prologue_timeout,
                Limit::Frame => &stats.closed_frame_timeout,
                Limit::Idle => &stats.closed_idle_timeout,
                Limit::Write => &stats.closed_write_timeout,
            });
            info!(peer = %info.peer, id = info.id, reason = %end, "client connection closed")
        }
        _ => info!(peer = %info.peer, id = info.id, reason = %end, "client connection closed"),
    }
    let config = &shared.config;
    match end {
        End::PeerClosed | End::Shutdown | End::Io(_) | End::Timeout(..) => {
            let _ = tokio::time::timeout(config.write_timeout, stream.shutdown()).await;
        }
        End::WrongCluster(_) | End::Protocol(_) | End::HandlerClosed => {
            tokio::select! {
                _ = linger(&mut stream, config.limits.max_frame_bytes, config.linger) => {}
                _ = shutdown.wait_for(|stop| *stop) => {}
            }
        }
    }
}

/// Counts an open connection in the listener's gauge while it lives.
struct Open<'a>(&'a ListenerStats);

impl<'a> Open<'a> {
    fn new(stats: &'a ListenerStats) -> Self {
        stats
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Open(stats)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0
            .connections
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Closes our side after the last reply, then reads and discards what the client still
/// sends (bounded in bytes and time). Closing a socket with unread input makes the kernel
/// send a reset, which can destroy the reply before the client reads it.
pub(super) async fn linger<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    max_bytes: usize,
    timeout: Duration,
) {
    let _ = tokio::time::timeout(timeout, async {
        stream.shutdown().await?;
        let mut scratch = [0u8; 4096];
        let mut total = 0usize;
        while total < max_bytes {
            match stream.read(&mut scratch).await? {
                0 => break,
                n => total += n,
            }
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// What woke the connection up.
enum Event {
    /// Handler futures finished (already accounted).
    Progress,
    /// Queued replies were written.
    Wrote,
    /// Request bytes were read.
    Read,
    /// The client closed its side.
    Eof,
    Failed(std::io::Error),
    /// Reading needs this many more permits from the budget than are free.
    NeedBudget(usize),
    Budget(Result<OwnedSemaphorePermit, AcquireError>),
    Shutdown,
    Timer,
}

/// A request decoded but not admitted yet.
struct Blocked {
    request: Request,
    bytes: usize,
    admission: Admission,
}

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

struct Connection<'a, H> {
    info: &'a ConnectionInfo,
    shared: &'a Shared,
    handler: &'a H,
    codec: ServerCodec,
    prologue_seen: bool,
    input: BytesMut,
    /// Bytes allocated for `input` (this module allocates it, see the module docs).
    input_alloc: usize,
    output: BytesMut,
    /// Most bytes `output` held since it was last replaced.
    output_high: usize,
    /// Bytes were written since the last completed flush: a TLS stream may still hold them
    /// in its session (plain TCP flushes at once), so they must be flushed before the
    /// connection can count as done writing.
    unflushed: bool,
    pipeline: Pipeline<'a>,
    blocked: Option<Blocked>,
    ledger: Ledger<'a>,
    /// Requests may still be decoded and started.
    admitting: bool,
    /// The socket may still be read.
    reading: bool,
    eof: bool,
    /// The last decode found no complete frame in the input (reset by every read).
    input_exhausted: bool,
    shutting_down: bool,
    waiting_budget: bool,
    protocol_error: Option<ProtocolError>,
    /// Decided: the connection ends once `output` is written.
    stop: Option<End>,
    accepted: Instant,
    frame_since: Option<Instant>,
    idle_since: Option<Instant>,
    write_since: Option<Instant>,
    /// The streamed reply being written (it is the connection's last).
    streaming: Option<tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>>,
}

impl<'a, H: Handler> Connection<'a, H> {
    fn new(info: &'a ConnectionInfo, shared: &'a Shared, handler: &'a H) -> Self {
        Connection {
            info,
            shared,
            handler,
            codec: ServerCodec::new(shared.config.limits),
            prologue_seen: false,
            input: BytesMut::new(),
            input_alloc: 0,
            output: BytesMut::new(),
            output_high: 0,
            unflushed: false,
            pipeline: Pipeline::default(),
            blocked: None,
            ledger: Ledger::new(&shared.budget, &shared.stats),
            admitting: true,
            reading: true,
            eof: false,
            input_exhausted: false,
            shutting_down: false,
            waiting_budget: false,
            protocol_error: None,
            stop: None,
            accepted: Instant::now(),
            frame_since: None,
            idle_since: None,
            write_since: None,
            streaming: None,
        }
    }

    fn config(&self) -> &'a ListenerConfig {
        &self.shared.config
    }

    async fn run<S>(&mut self, stream: &mut S, shutdown: &mut watch::Receiver<bool>) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let mut acquire: Option<Acquire> = None;
        let mut timer = pin!(tokio::time::sleep_until(self.accepted));
        let mut armed: Option<Instant> = None;
        loop {
            if let Err(end) = self.admit(shutdown).await {
                return end;
            }
            self.queue_replies();
            if let Some(end) = self.finished() {
                return end;
            }
            if !self.can_read() {
                // Not reading: a pending wait for budget would only hold permits back.
                acquire = None;
                self.waiting_budget = false;
            }
            let now = Instant::now();
            self.update_clocks(now);
            let deadline = self.deadline();
            if let Some((at, _)) = deadline
                && armed.is_none_or(|a| a > at)
            {
                timer.as_mut().reset(at);
                armed = Some(at);
            }
            let timed = deadline.is_some();
            let listening = !self.shutting_down;
            let event = tokio::select! {
                biased;
                event = poll_fn(|cx| self.poll_io(stream, cx)) => event,
                permit = async {
                    match acquire.as_mut() {
                        Some(wait) => wait.await,
                        None => std::future::pending().await,
                    }
                }, if acquire.is_some() => Event::Budget(permit),
                _ = shutdown.wait_for(|stop| *stop), if listening => Event::Shutdown,
                () = timer.as_mut(), if timed => Event::Timer,
            };
            match event {
                Event::Progress | Event::Wrote | Event::Read => {}
                Event::Eof => {
                    // Whatever partial request is buffered is dropped, never applied; the
                    // complete ones are still served.
                    self.eof = true;
                    self.reading = false;
                }
                Event::Failed(e) => return End::Io(e),
                Event::NeedBudget(permits) => {
                    ListenerStats::count(&self.shared.stats.budget_waits);
                    let permits = u32::try_from(permits).unwrap_or(u32::MAX);
                    let semaphore = self.shared.budget.semaphore();
                    acquire = Some(Box::pin(semaphore.acquire_many_owned(permits)));
                    self.waiting_budget = true;
                }
                Event::Budget(permit) => {
                    acquire = None;
                    self.waiting_budget = false;
                    if let Ok(permit) = permit {
                        let n = permit.num_permits();
                        permit.forget();
                        self.ledger.add_charged(n);
                    }
                }
                Event::Shutdown => self.begin_shutdown(),
                Event::Timer => {
                    armed = None;
                    if let Some((at, limit)) = self.deadline()
                        && Instant::now() >= at
                    {
                        return End::Timeout(limit, self.timeout_of(limit));
                    }
                }
            }
        }
    }

    /// Decodes and starts requests while the pipeline admits them.
    async fn admit(&mut self, shutdown: &watch::Receiver<bool>) -> Result<(), End> {
        while self.admitting {
            if *shutdown.borrow() {
                // As the reference: a request not started when the listener stops is not
                // answered; the replies of those started are.
                self.begin_shutdown();
                break;
            }
            let next = match self.blocked.take() {
                Some(blocked) => blocked,
                None => {
                    if self.pipeline.len() >= self.config().max_in_flight {
                        break;
                    }
                    match self.decode()? {
                        Some(request) => request,
                        None => break,
                    }
                }
            };
            if !self.pipeline.admits(next.admission) {
                self.blocked = Some(next);
                break;
            }
            let handler = self.handler;
            let info = self.info;
            let mut future: Option<HandlerFuture<'a>> =
                Some(Box::pin(handler.handle(info, next.request)));
            self.ledger.started();
            let progress = poll_fn(|cx| {
                Poll::Ready(
                    future
                        .take()
                        .map(|future| self.pipeline.start(future, next.admission, next.bytes, cx)),
                )
            })
            .await;
            if let Some(progress) = progress {
                self.account(progress);
            }
        }
        Ok(())
    }

    /// Decodes the next request from the input, if a whole one is there.
    fn decode(&mut self) -> Result<Option<Blocked>, End> {
        loop {
            let before = self.input.len();
            let frame = self.codec.decode(&mut self.input);
            let used = before - self.input.len();
            match frame {
                Ok(None) => {
                    self.input_exhausted = true;
                    return Ok(None);
                }
                Ok(Some(ServerFrame::Prologue(prologue))) => {
                    self.ledger.release(used);
                    self.ledger.trim();
                    if prologue.cluster_id != self.config().cluster_id {
                        // Arakoon closes silently on another cluster's id (§1.1).
                        return Err(End::WrongCluster(prologue.cluster_id));
                    }
                    self.prologue_seen = true;
                }
                Ok(Some(ServerFrame::Request(request))) => {
                    // The next frame starts now.
                    self.frame_since = None;
                    let admission = self.handler.admission(&request);
                    return Ok(Some(Blocked {
                        request,
                        bytes: used,
                        admission,
                    }));
                }
                Err(CodecError::Protocol(e)) => {
                    self.protocol_error = Some(e);
                    self.admitting = false;
                    self.reading = false;
                    return Ok(None);
                }
                Err(CodecError::Io(e)) => return Err(End::Io(e)),
            }
        }
    }

    /// Books what finished in the pipeline.
    fn account(&mut self, progress: Progress) {
        self.ledger.release(progress.freed_bytes);
        self.ledger.finished(progress.finished);
        if self.pipeline.closing() {
            // An outcome closes the connection: nothing after it is started.
            self.admitting = false;
            self.reading = false;
            self.drop_blocked();
        }
        self.ledger.trim();
    }

    fn drop_blocked(&mut self) {
        if let Some(blocked) = self.blocked.take() {
            self.ledger.release(blocked.bytes);
        }
    }

    fn begin_shutdown(&mut self) {
        if self.streaming.take().is_some() {
            // A streamed reply is cut short: the client sees fewer bytes than announced.
            self.stop = Some(End::Shutdown);
        }
        self.shutting_down = true;
        self.admitting = false;
        self.reading = false;
        self.drop_blocked();
        self.ledger.trim();
    }

    /// Encodes the finished outcomes at the front, in order, within the reply bound.
    fn queue_replies(&mut self) {
        while self.stop.is_none() && self.output.len() < self.config().max_queued_reply_bytes {
            let Some(outcome) = self.pipeline.pop_done() else {
                break;
            };
            match outcome.stream.as_ref().map(super::ReplyStream::take) {
                Some(stream) => {
                    // Its bytes follow in `poll_io`; the connection closes after them.
                    self.streaming = stream;
                    assert!(
                        self.pipeline.is_empty(),
                        "requests kept behind a streamed reply"
                    );
                    if self.streaming.is_none() {
                        self.stop = Some(End::HandlerClosed);
                    }
                    break;
                }
                None => encode_reply(&outcome.reply, &mut self.output),
            }
            if outcome.close {
                assert!(
                    self.pipeline.is_empty(),
                    "requests kept behind an outcome that closes the connection"
                );
                self.stop = Some(End::HandlerClosed);
            }
        }
        self.output_high = self.output_high.max(self.output.len());
        self.ledger.set_queued_reply(self.output.len());
    }

    /// Whether the connection is done (everything it owes written); decides how it ends.
    fn finished(&mut self) -> Option<End> {
        if self.streaming.is_some() {
            return None;
        }
        if self.stop.is_none() && self.pipeline.is_empty() && self.blocked.is_none() {
            if let Some(e) = self.protocol_error.take() {
                if let Some(reply) = e.server_reply() {
                    reply.encode(&mut self.output);
                    self.ledger.set_queued_reply(self.output.len());
                }
                self.stop = Some(End::Protocol(describe_protocol_error(&e)));
            } else if self.shutting_down {
                self.stop = Some(End::Shutdown);
            } else if self.eof && self.input_exhausted {
                // Every complete request received was served; a partial one is dropped.
                self.stop = Some(End::PeerClosed);
            }
        }
        if self.stop.is_some() {
            self.admitting = false;
            self.reading = false;
            if !self.writing() {
                return self.stop.take();
            }
        }
        None
    }

    /// Replies are queued or written but not yet flushed.
    fn writing(&self) -> bool {
        !self.output.is_empty() || self.unflushed
    }

    fn can_read(&self) -> bool {
        let config = self.config();
        let in_flight = self.pipeline.len() + usize::from(self.blocked.is_some());
        self.reading
            && self.stop.is_none()
            && in_flight < config.max_in_flight
            && (in_flight == 0 || self.ledger.held() < config.max_read_ahead_bytes)
            && self.output.len() < config.max_queued_reply_bytes
    }

    fn update_clocks(&mut self, now: Instant) {
        // A request is arriving: input buffered that the codec could not complete yet (not
        // complete requests waiting for the pipeline), while the client is being read.
        let arriving = self.prologue_seen
            && !self.input.is_empty()
            && self.blocked.is_none()
            && self.pipeline.len() < self.config().max_in_flight
            && self.can_read();
        self.frame_since = if arriving {
            Some(self.frame_since.unwrap_or(now))
        } else {
            None
        };
        let idle = self.prologue_seen
            && self.reading
            && self.input.is_empty()
            && self.pipeline.is_empty()
            && self.blocked.is_none()
            && !self.writing()
            && self.streaming.is_none();
        self.idle_since = if idle {
            Some(self.idle_since.unwrap_or(now))
        } else {
            None
        };
        if !self.writing() {
            self.write_since = None;
        } else if self.write_since.is_none() {
            self.write_since = Some(now);
        }
    }

    fn timeout_of(&self, limit: Limit) -> Duration {
        let config = self.config();
        match limit {
            Limit::Prologue => config.prologue_timeout,
            Limit::Frame => config.frame_timeout,
            Limit::Idle => config.idle_timeout,
            Limit::Write => config.write_timeout,
        }
    }

    /// The earliest deadline that applies now.
    fn deadline(&self) -> Option<(Instant, Limit)> {
        let mut earliest: Option<(Instant, Limit)> = None;
        let mut consider = |since: Option<Instant>, limit: Limit| {
            if let Some(since) = since {
                let at = since + self.timeout_of(limit);
                if earliest.is_none_or(|(e, _)| at < e) {
                    earliest = Some((at, limit));
                }
            }
        };
        if !self.prologue_seen && self.reading && self.stop.is_none() {
            consider(Some(self.accepted), Limit::Prologue);
        }
        consider(self.frame_since, Limit::Frame);
        consider(self.idle_since, Limit::Idle);
        consider(self.write_since, Limit::Write);
        earliest
    }

    /// Makes room in the input buffer for a read of `n` bytes, allocating a new buffer when
    /// the current one is too small (doubling) or much too large (after a large frame).
    fn make_room(&mut self, n: usize) {
        let len = self.input.len();
        let needed = len.saturating_add(n);
        let chunk = self.config().read_chunk;
        let spare = self.input.capacity() - len;
        let oversized = self.input_alloc > needed.max(chunk).saturating_mul(4);
        if spare >= n && !oversized {
            return;
        }
        let capacity = if needed <= self.input_alloc && !oversized {
            // Room enough in the allocation, behind consumed bytes: compact.
            self.input_alloc
        } else if oversized {
            needed.max(chunk)
        } else {
            let ceiling = max_partial_frame(self.config().limits).saturating_add(chunk);
            needed.max(self.input_alloc.saturating_mul(2).min(ceiling))
        };
        let mut fresh = BytesMut::with_capacity(capacity);
        fresh.extend_from_slice(&self.input);
        self.input = fresh;
        self.input_alloc = capacity;
        self.ledger.set_input_buffer(capacity);
    }

    /// Polls the pipeline, the socket's write side (if replies are queued) and its read side
    /// (if reading is allowed), in that order; Ready with the first thing that happened.
    fn poll_io<S>(&mut self, stream: &mut S, cx: &mut Context<'_>) -> Poll<Event>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if let Poll::Ready(progress) = self.pipeline.poll_progress(cx) {
            self.account(progress);
            return Poll::Ready(Event::Progress);
        }
        if !self.output.is_empty() {
            let written = pin!(stream.write_buf(&mut self.output)).poll(cx);
            match written {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Event::Failed(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(_)) => {
                    self.unflushed = true;
                    self.write_since = Some(Instant::now());
                    if self.output.is_empty()
                        && self.output_high > 2 * self.config().max_queued_reply_bytes
                    {
                        // A large reply went out: give its buffer back.
                        self.output = BytesMut::new();
                        self.output_high = 0;
                    }
                    self.ledger.set_queued_reply(self.output.len());
                    return Poll::Ready(Event::Wrote);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Event::Failed(e)),
                Poll::Pending => {}
            }
        }
        if self.output.is_empty() && self.unflushed {
            match pin!(stream.flush()).poll(cx) {
                Poll::Ready(Ok(())) => {
                    self.unflushed = false;
                    return Poll::Ready(Event::Wrote);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Event::Failed(e)),
                Poll::Pending => {}
            }
        }
        if self.output.len() < self.config().max_queued_reply_bytes
            && let Some(stream) = self.streaming.as_mut()
            && let Poll::Ready(chunk) = stream.poll_recv(cx)
        {
            match chunk {
                Some(Ok(bytes)) => {
                    self.output.extend_from_slice(&bytes);
                    self.output_high = self.output_high.max(self.output.len());
                    self.ledger.set_queued_reply(self.output.len());
                }
                Some(Err(e)) => {
                    debug!(connection = self.info.id, "streamed reply failed: {e}");
                    self.streaming = None;
                    self.stop = Some(End::HandlerClosed);
                }
                None => {
                    self.streaming = None;
                    self.stop = Some(End::HandlerClosed);
                }
            }
            return Poll::Ready(Event::Progress);
        }
        if self.can_read() && !self.waiting_budget {
            let n = self.config().read_chunk;
            if !self.ledger.try_reserve(n) {
                return Poll::Ready(Event::NeedBudget(self.ledger.shortfall(n)));
            }
            self.make_room(n);
            let mut room = (&mut self.input).limit(n);
            let read = pin!(stream.read_buf(&mut room)).poll(cx);
            match read {
                Poll::Ready(Ok(0)) => return Poll::Ready(Event::Eof),
                Poll::Ready(Ok(got)) => {
                    self.input_exhausted = false;
                    self.ledger.hold(got);
                    self.ledger.trim();
                    return Poll::Ready(Event::Read);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Event::Failed(e)),
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tls_hint_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::describe_protocol_error;
    use crate::{CodecError, Limits, ServerCodec};
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;

    fn error_for(first_bytes: &[u8]) -> String {
        let mut codec = ServerCodec::new(Limits::default());
        let mut input = BytesMut::from(first_bytes);
        match codec.decode(&mut input) {
            Err(CodecError::Protocol(e)) => describe_protocol_error(&e),
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }

    #[test]
    fn a_tls_client_hello_on_a_plain_port_is_named_as_such() {
        // The first bytes of a TLS ClientHello record (OpenSSL, rustls and Python all start
        // with a handshake record, type 0x16, legacy version 3.1), then the record length.
        let hello = [
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0, 0, 0,
        ];
        let e = error_for(&hello);
        assert!(e.contains("TLS handshake"), "{e}");
        assert!(e.contains("[cluster.tls]"), "{e}");
        // Any other bad prologue is reported as before.
        let e = error_for(&[0xde, 0xad, 0xbe, 0xef, 1, 0, 0, 0, 0, 0, 0, 0]);
        assert!(e.contains("bad prologue"), "{e}");
        assert!(!e.contains("TLS"), "{e}");
    }
}
