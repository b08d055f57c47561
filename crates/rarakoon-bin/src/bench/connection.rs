//! One pipelined client connection shared by several bench clients.
//!
//! Arakoon's protocol answers the requests of one connection in the order they were sent, so a
//! connection can carry several requests at once: each client sends its request through a
//! [`Connection`] handle and a single task per connection writes the requests as they come and
//! hands each reply to the oldest waiting caller. The node may still serve them one by one;
//! the bench measures whatever it does.
//!
//! Invariants:
//! - `pending` (callers waiting, oldest first) and the codec's queue of awaited opcodes have
//!   the same length and order: one entry is pushed to each per encoded request, one popped
//!   from each per decoded reply. A reply is therefore always handed to the caller whose
//!   request it answers (checked on every reply, release builds too: a mismatch closes the
//!   connection instead of answering the wrong caller).
//! - Every caller gets exactly one answer: its reply, or a [`Failure`] when the request timed
//!   out, the connection broke, or no connection could be opened.
//! - A request is never re-sent: after a broken connection its caller gets a failure and the
//!   client decides what to do next (the bench counts it and sends its next request).
//! - Once a reply says the node refuses service on this connection (`E_NOT_MASTER` or a code
//!   after which Arakoon closes the connection), no new request is written on it; the
//!   requests already sent get their answers, then the task finds the master again.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rarakoon_client::{
    ClientCodec, ClientStream, ErrorCode, Limits, Prologue, Reply, Request, Response,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::codec::{Decoder, Encoder};

/// Pause before opening a connection again after a failed attempt.
const RECONNECT_DELAY: Duration = Duration::from_millis(100);
/// Encoded requests buffered before the task stops taking more until the socket drains.
const MAX_BUFFERED_OUTPUT: usize = 4 * 1024 * 1024;

/// Why a request got no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No reply within the request timeout (the connection is then closed and reopened).
    Timeout,
    /// The connection broke (or was closed after another request's timeout) before the reply.
    ConnectionLost(String),
    /// No connection could be opened (no master found, or the node refused the connection).
    Connect(String),
}

impl Failure {
    /// The error kind the report counts it under.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::ConnectionLost(_) => "connection_lost",
            Failure::Connect(_) => "connect_failed",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout => write!(f, "no reply within the request timeout"),
            Failure::ConnectionLost(why) => write!(f, "connection lost: {why}"),
            Failure::Connect(why) => write!(f, "cannot connect: {why}"),
        }
    }
}

/// Where a connection goes.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// The master, found by asking the nodes (again after every broken connection).
    Master,
    /// This one node, whatever its role.
    Node(String, SocketAddr),
}

/// What every connection of a run shares.
#[derive(Debug)]
pub struct Settings {
    /// The cluster id sent in the prologue.
    pub cluster_id: String,
    /// `(name, client address)` of every node, for finding the master.
    pub nodes: Vec<(String, SocketAddr)>,
    /// Time allowed for one request's reply (and for opening a connection).
    pub timeout: Duration,
    /// Per node name, its TLS configuration (`None` or absent: plain TCP).
    pub tls: BTreeMap<String, crate::direct::Tls>,
}

impl Settings {
    fn tls(&self, name: &str) -> crate::direct::Tls {
        self.tls.get(name).cloned().flatten()
    }
}

struct Job {
    request: Request,
    reply: oneshot::Sender<Result<Reply, Failure>>,
}

/// A handle on one pipelined connection; cheap to clone. The connection task ends when every
/// handle is dropped.
#[derive(Clone)]
pub struct Connection {
    jobs: mpsc::Sender<Job>,
}

impl Connection {
    /// Starts the task of a connection to `endpoint`; it connects on its first request.
    /// `callers` bounds the requests waiting to be written (the clients sharing it).
    pub fn spawn(settings: Arc<Settings>, endpoint: Endpoint, callers: usize) -> Connection {
        let (jobs, rx) = mpsc::channel(callers.max(1));
        tokio::spawn(run(settings, endpoint, rx));
        Connection { jobs }
    }

    /// Sends `request` and waits for its reply.
    pub async fn call(&self, request: Request) -> Result<Reply, Failure> {
        let (reply, answer) = oneshot::channel();
        if self.jobs.send(Job { request, reply }).await.is_err() {
            return Err(Failure::ConnectionLost("the connection task ended".into()));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(Failure::ConnectionLost("the connection task ended".into())))
    }
}

/// How a served connection ended.
enum Ended {
    /// Every handle was dropped: the run is over.
    Done,
    /// The node refused service on this connection; find the master again.
    Redirect,
    /// The connection broke; the oldest waiting caller gets `first`, the others `rest`.
    Broken { first: Failure, rest: Failure },
}

async fn run(settings: Arc<Settings>, endpoint: Endpoint, mut jobs: mpsc::Receiver<Job>) {
    // Connect lazily: wait for the first request, then keep it until a connection exists.
    let mut waiting: Option<Job> = None;
    loop {
        if waiting.is_none() {
            match jobs.recv().await {
                Some(job) => waiting = Some(job),
                None => return,
            }
        }
        let stream = match open(&settings, &endpoint).await {
            Ok(stream) => stream,
            Err(failure) => {
                // Answer everyone waiting now instead of letting them wait for a connection
                // that may never come; the next request tries again after a pause.
                if let Some(job) = waiting.take() {
                    let _ = job.reply.send(Err(failure.clone()));
                }
                while let Ok(job) = jobs.try_recv() {
                    let _ = job.reply.send(Err(failure.clone()));
                }
                tokio::time::sleep(RECONNECT_DELAY).await;
                continue;
            }
        };
        match serve(&settings, stream, waiting.take(), &mut jobs).await {
            Ended::Done => return,
            Ended::Redirect | Ended::Broken { .. } => continue,
        }
    }
}

/// Opens a connection to the endpoint (the master found anew) and sends the prologue.
async fn open(settings: &Settings, endpoint: &Endpoint) -> Result<ClientStream, Failure> {
    let (name, addr) = match endpoint {
        Endpoint::Node(name, addr) => (name.clone(), *addr),
        Endpoint::Master => find_master(settings)
            .await
            .map_err(|why| Failure::Connect(format!("no master: {why}")))?,
    };
    let mut prologue = BytesMut::new();
    // Encoding a prologue cannot fail; the codec only appends bytes.
    let _ = ClientCodec::new(Limits::default()).encode(
        &Prologue {
            cluster_id: Bytes::from(settings.cluster_id.clone()),
        },
        &mut prologue,
    );
    let tls = settings.tls(&name);
    let connect = async {
        let mut stream = ClientStream::connect(addr, tls.as_ref()).await?;
        stream.write_all(&prologue).await?;
        stream.flush().await?;
        Ok::<_, std::io::Error>(stream)
    };
    match tokio::time::timeout(settings.timeout, connect).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(Failure::Connect(format!("{name} ({addr}): {e}"))),
        Err(_) => Err(Failure::Connect(format!(
            "{name} ({addr}): no connection within {:?}",
            settings.timeout
        ))),
    }
}

/// Opens a new connection to `endpoint`, sends `request`, reads its reply and closes: the
/// `connect` workload, which measures connection setup (TCP, TLS, prologue) plus one round
/// trip.
pub async fn call_fresh(
    settings: &Settings,
    endpoint: &Endpoint,
    request: Request,
) -> Result<Reply, Failure> {
    // A PING names the cluster (a node answers another cluster's id with E_WRONG_CLUSTER).
    let request = match request {
        Request::Ping { client_id, .. } => Request::Ping {
            client_id,
            cluster_id: Bytes::from(settings.cluster_id.clone()),
        },
        other => other,
    };
    let exchange = async {
        let mut stream = open(settings, endpoint).await?;
        let mut codec = ClientCodec::new(Limits::default());
        let mut out = BytesMut::new();
        codec
            .encode(&request, &mut out)
            .map_err(|e| Failure::ConnectionLost(format!("cannot encode: {e}")))?;
        let lost = |e: std::io::Error| Failure::ConnectionLost(e.to_string());
        stream.write_all(&out).await.map_err(lost)?;
        stream.flush().await.map_err(lost)?;
        let mut input = BytesMut::with_capacity(1024);
        loop {
            match codec.decode(&mut input) {
                Ok(Some((_, reply))) => {
                    let _ = stream.shutdown().await;
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(e) => return Err(Failure::ConnectionLost(format!("bad reply: {e}"))),
            }
            if stream.read_buf(&mut input).await.map_err(lost)? == 0 {
                return Err(Failure::ConnectionLost("closed by the node".into()));
            }
        }
    };
    tokio::time::timeout(settings.timeout, exchange)
        .await
        .unwrap_or(Err(Failure::Timeout))
}

/// The master's name and client address: a node names it and it confirms, as the Rust
/// client checks it.
pub async fn find_master(settings: &Settings) -> Result<(String, SocketAddr), String> {
    let ask = |name: &str, addr| {
        crate::direct::call(
            &settings.cluster_id,
            addr,
            &Request::WhoMaster,
            settings.timeout,
            settings.tls(name),
        )
    };
    let mut last = String::from("no node answered");
    for (name, addr) in &settings.nodes {
        match ask(name, *addr).await {
            Ok(Ok(Response::WhoMaster(Some(master)))) => {
                let Some((master_name, master_addr)) =
                    settings.nodes.iter().find(|(n, _)| n.as_bytes() == master)
                else {
                    last = format!(
                        "{name} names master {:?}, which is not in the config",
                        String::from_utf8_lossy(&master)
                    );
                    continue;
                };
                match ask(master_name, *master_addr).await {
                    Ok(Ok(Response::WhoMaster(Some(again)))) if again == master => {
                        return Ok((master_name.clone(), *master_addr));
                    }
                    Ok(_) => last = format!("{master_name} does not confirm it is master"),
                    Err(e) => last = format!("{master_name}: {e:#}"),
                }
            }
            Ok(Ok(_)) => last = format!("{name} knows no master"),
            Ok(Err(e)) => last = format!("{name}: {}", e.code),
            Err(e) => last = format!("{name}: {e:#}"),
        }
    }
    Err(last)
}

/// Serves one open connection until it breaks, is redirected, or the run ends.
async fn serve(
    settings: &Settings,
    stream: ClientStream,
    first: Option<Job>,
    jobs: &mut mpsc::Receiver<Job>,
) -> Ended {
    let mut codec = ClientCodec::new(Limits {
        max_frame_bytes: 256 * 1024 * 1024,
        ..Limits::default()
    });
    let mut pending: VecDeque<(Instant, oneshot::Sender<Result<Reply, Failure>>)> = VecDeque::new();
    let mut output = BytesMut::with_capacity(16 * 1024);
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut refused = false;
    // Written since the last completed flush (a TLS stream may hold the bytes until then).
    let mut unflushed = false;
    let enqueue =
        |job: Job, codec: &mut ClientCodec, output: &mut BytesMut, pending: &mut VecDeque<_>| {
            match codec.encode(&job.request, output) {
                Ok(()) => pending.push_back((Instant::now() + settings.timeout, job.reply)),
                Err(e) => {
                    let _ = job
                        .reply
                        .send(Err(Failure::ConnectionLost(format!("cannot encode: {e}"))));
                }
            }
        };
    if let Some(job) = first {
        enqueue(job, &mut codec, &mut output, &mut pending);
    }
    let (mut reader, mut writer) = tokio::io::split(stream);
    let ended = loop {
        if refused && pending.is_empty() {
            break Ended::Redirect;
        }
        let oldest = pending.front().map(|(deadline, _)| *deadline);
        tokio::select! {
            biased;
            read = reader.read_buf(&mut input) => match read {
                Ok(0) => break broken("closed by the node"),
                Ok(_) => loop {
                    match codec.decode(&mut input) {
                        Ok(Some((_, reply))) => {
                            let Some((_, caller)) = pending.pop_front() else {
                                // Cannot happen while the invariant holds: the codec decodes
                                // only replies it awaits. Never guess whose reply it is.
                                break;
                            };
                            if let Err(e) = &reply
                                && (e.code == ErrorCode::NotMaster || e.code.closes_connection())
                            {
                                refused = true;
                            }
                            let _ = caller.send(Ok(reply));
                        }
                        Ok(None) => break,
                        Err(e) => {
                            pending_mismatch_guard(&codec, &pending);
                            return fail_all(pending, broken(&format!("bad reply: {e}")));
                        }
                    }
                },
                Err(e) => break broken(&e.to_string()),
            },
            written = async {
                if !output.is_empty() {
                    writer.write_buf(&mut output).await?;
                }
                // A TLS stream may hold what it took until flushed; a flush cut short by
                // another branch is taken up again on the next turn (`unflushed`).
                writer.flush().await?;
                Ok::<_, std::io::Error>(output.is_empty())
            }, if !output.is_empty() || unflushed => {
                match written {
                    Ok(all_out) => unflushed = !all_out,
                    Err(e) => break broken(&e.to_string()),
                }
            }
            job = jobs.recv(), if !refused && output.len() < MAX_BUFFERED_OUTPUT => match job {
                Some(job) => {
                    unflushed = true;
                    enqueue(job, &mut codec, &mut output, &mut pending);
                    while output.len() < MAX_BUFFERED_OUTPUT
                        && let Ok(job) = jobs.try_recv()
                    {
                        enqueue(job, &mut codec, &mut output, &mut pending);
                    }
                }
                None if pending.is_empty() => break Ended::Done,
                // No more requests will come; answer those in flight first.
                None => refused = true,
            },
            () = sleep_until_or_forever(oldest) => break Ended::Broken {
                first: Failure::Timeout,
                rest: Failure::ConnectionLost(
                    "closed after an earlier request on it timed out".into(),
                ),
            },
        }
        if codec.awaiting() != pending.len() {
            pending_mismatch_guard(&codec, &pending);
            break broken("replies and callers out of step");
        }
    };
    fail_all(pending, ended)
}

fn broken(why: &str) -> Ended {
    let failure = Failure::ConnectionLost(why.to_owned());
    Ended::Broken {
        first: failure.clone(),
        rest: failure,
    }
}

/// Logs a broken pairing of replies and callers (the connection is closed after it).
fn pending_mismatch_guard<T>(codec: &ClientCodec, pending: &VecDeque<T>) {
    if codec.awaiting() != pending.len() {
        tracing::error!(
            awaited = codec.awaiting(),
            callers = pending.len(),
            "bench connection: replies and callers out of step; closing it"
        );
    }
}

/// Answers every caller still waiting when a connection ends.
fn fail_all(
    pending: VecDeque<(Instant, oneshot::Sender<Result<Reply, Failure>>)>,
    ended: Ended,
) -> Ended {
    if let Ended::Broken { first, rest } = &ended {
        for (i, (_, caller)) in pending.into_iter().enumerate() {
            let failure = if i == 0 { first.clone() } else { rest.clone() };
            let _ = caller.send(Err(failure));
        }
    } else {
        for (_, caller) in pending {
            let _ = caller.send(Err(Failure::ConnectionLost(
                "the connection was closed".into(),
            )));
        }
    }
    ended
}

async fn sleep_until_or_forever(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::net::Ipv4Addr;

    use rarakoon_client::{ServerCodec, ServerFrame};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A fake node: answers every SET with success, but only once `batch` requests are
    /// waiting on the connection, so callers that do not pipeline would never be answered.
    async fn batching_node(batch: usize) -> (SocketAddr, tokio::task::JoinHandle<usize>) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut codec = ServerCodec::new(Limits::default());
            let mut input = BytesMut::new();
            let mut waiting = 0usize;
            let mut answered = 0usize;
            loop {
                while let Some(frame) = codec.decode(&mut input).unwrap() {
                    if let ServerFrame::Request(_) = frame {
                        waiting += 1;
                    }
                }
                if waiting >= batch {
                    let mut out = BytesMut::new();
                    for _ in 0..waiting {
                        codec.encode(&Ok(Response::Set), &mut out).unwrap();
                    }
                    stream.write_all(&out).await.unwrap();
                    answered += waiting;
                    waiting = 0;
                }
                if stream.read_buf(&mut input).await.unwrap() == 0 {
                    return answered;
                }
            }
        });
        (addr, task)
    }

    fn settings(addr: SocketAddr, timeout: Duration) -> Arc<Settings> {
        Arc::new(Settings {
            cluster_id: "c".into(),
            nodes: vec![("n0".into(), addr)],
            timeout,
            tls: BTreeMap::new(),
        })
    }

    fn set(i: usize) -> Request {
        Request::Set {
            key: Bytes::from(format!("k{i}")),
            value: Bytes::from_static(b"v"),
        }
    }

    #[tokio::test]
    async fn clients_sharing_a_connection_have_their_requests_in_flight_together() {
        let callers = 8;
        let (addr, node) = batching_node(callers).await;
        let conn = Connection::spawn(
            settings(addr, Duration::from_secs(60)),
            Endpoint::Node("n0".into(), addr),
            callers,
        );
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..callers {
            let conn = conn.clone();
            calls.spawn(async move { conn.call(set(i)).await });
        }
        while let Some(result) = calls.join_next().await {
            assert_eq!(result.unwrap(), Ok(Ok(Response::Set)));
        }
        drop(conn);
        assert_eq!(node.await.unwrap(), callers);
    }

    #[tokio::test]
    async fn a_silent_node_times_out_the_oldest_request_and_the_others_are_cut_off() {
        // Needs 3 requests before answering; only 2 ever come.
        let (addr, _node) = batching_node(3).await;
        let conn = Connection::spawn(
            settings(addr, Duration::from_millis(200)),
            Endpoint::Node("n0".into(), addr),
            2,
        );
        let first = {
            let conn = conn.clone();
            tokio::spawn(async move { conn.call(set(0)).await })
        };
        let second = {
            let conn = conn.clone();
            tokio::spawn(async move { conn.call(set(1)).await })
        };
        let mut failures = vec![
            first.await.unwrap().unwrap_err().kind(),
            second.await.unwrap().unwrap_err().kind(),
        ];
        failures.sort_unstable();
        assert_eq!(failures, vec!["connection_lost", "timeout"]);
    }

    /// Reads the prologue and one request from a fresh connection.
    async fn read_one_request(stream: &mut TcpStream) {
        let mut codec = ServerCodec::new(Limits::default());
        let mut input = BytesMut::new();
        loop {
            assert!(stream.read_buf(&mut input).await.unwrap() > 0);
            while let Some(frame) = codec.decode(&mut input).unwrap() {
                if let ServerFrame::Request(_) = frame {
                    return;
                }
            }
        }
    }

    #[tokio::test]
    async fn a_closed_connection_fails_its_request_and_the_next_one_reconnects() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let node = tokio::spawn(async move {
            // First connection: read one request, close without answering.
            let (mut stream, _) = listener.accept().await.unwrap();
            read_one_request(&mut stream).await;
            drop(stream);
            // Second connection: answer one request.
            let (mut stream, _) = listener.accept().await.unwrap();
            read_one_request(&mut stream).await;
            let mut out = BytesMut::new();
            ServerCodec::new(Limits::default())
                .encode(&Ok(Response::Set), &mut out)
                .unwrap();
            stream.write_all(&out).await.unwrap();
        });
        let conn = Connection::spawn(
            settings(addr, Duration::from_secs(60)),
            Endpoint::Node("n0".into(), addr),
            1,
        );
        let lost = conn.call(set(0)).await.unwrap_err();
        assert_eq!(lost.kind(), "connection_lost", "{lost}");
        assert_eq!(conn.call(set(1)).await, Ok(Ok(Response::Set)));
        node.await.unwrap();
    }

    #[tokio::test]
    async fn no_node_to_connect_to_is_a_connect_failure_not_a_hang() {
        // A port nobody listens on: bind one, note it, close it.
        let addr = {
            let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            l.local_addr().unwrap()
        };
        let conn = Connection::spawn(settings(addr, Duration::from_secs(5)), Endpoint::Master, 1);
        let failure = conn.call(set(0)).await.unwrap_err();
        assert_eq!(failure.kind(), "connect_failed", "{failure}");
        assert!(failure.to_string().contains("no master"), "{failure}");
    }
}
