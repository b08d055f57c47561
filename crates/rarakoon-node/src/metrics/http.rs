//! The metrics endpoint: `GET /metrics` (Prometheus/OpenMetrics text) and `GET /health`
//! (200 when the node is up and knows a live master, 503 otherwise; a JSON body either way).
//!
//! An HTTP/1.1 server on hyper, bounded so that it cannot hurt the node:
//! - at most [`Limits::max_connections`] connections at once; one more is closed at once;
//! - request heads larger than [`Limits::max_head_bytes`] are refused by hyper, and request
//!   bodies are never read (nothing here takes input beyond the path);
//! - a request head must arrive within [`Limits::head_timeout`], and a connection lives at most
//!   [`Limits::connection_lifetime`] (keep-alive included), so idle or slow clients go away;
//! - answering runs on the runtime but never waits: the store's O(1) statistics under its read
//!   lock, the view's mutex and the messenger's atomic counters are all it reads.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use paxos_core::NodeRole;
use serde::Serialize;
use tcp_messenger::Counters;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::{NodeMetrics, Scrape, role_name};
use crate::driver::Shared;

/// Bounds of the metrics server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Largest request head (request line and headers) accepted.
    pub max_head_bytes: usize,
    /// Time a client has to send a request head.
    pub head_timeout: Duration,
    /// Longest a connection stays open.
    pub connection_lifetime: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 16,
            // hyper's smallest allowed read buffer.
            max_head_bytes: 8192,
            head_timeout: Duration::from_secs(5),
            connection_lifetime: Duration::from_secs(60),
        }
    }
}

/// What `/health` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    /// Up and knows a live master (the HTTP status is 200 exactly when this is true).
    pub healthy: bool,
    /// This node's name.
    pub node: String,
    /// Its role: starting, slave, candidate, master_elect or master.
    pub role: &'static str,
    /// The live master it knows of (itself when it is master with a valid lease).
    pub master: Option<String>,
    /// Seconds left on the lease this node holds as master (0 otherwise).
    pub lease_remaining_secs: f64,
    /// Committed index.
    pub committed_index: u64,
    /// Highest index in the log.
    pub last_index: u64,
}

impl Health {
    /// The health of the node whose shared state is `shared`; `names` are the node names by
    /// `NodeId`.
    pub fn of(shared: &Shared, names: &[String]) -> Health {
        Self::named(shared, names, "")
    }

    fn named(shared: &Shared, names: &[String], node: &str) -> Health {
        let view = shared.view();
        let now = shared.now();
        let master = if view.role == NodeRole::Master {
            // A master names itself only while its lease holds.
            view.lease_expires
                .is_some_and(|t| now < t)
                .then_some(view.master)
                .flatten()
        } else if view.role == NodeRole::Starting {
            None
        } else {
            shared.live_master()
        };
        let master = master.and_then(|id| names.get(usize::from(id.0)).cloned());
        let lease_remaining = match view.lease_expires {
            Some(t) if view.role == NodeRole::Master => t.saturating_sub(now),
            _ => 0,
        };
        Health {
            healthy: master.is_some(),
            node: node.to_owned(),
            role: role_name(view.role),
            master,
            lease_remaining_secs: lease_remaining as f64 / 1e9,
            committed_index: view.committed,
            last_index: view.last_index,
        }
    }
}

/// Everything the endpoint reads.
pub struct Endpoint {
    /// The node's metrics.
    pub metrics: Arc<NodeMetrics>,
    /// The node's shared state.
    pub shared: Arc<Shared>,
    /// Node names by `NodeId`.
    pub names: Vec<String>,
    /// This node's name.
    pub node: String,
    /// Reads the messenger's counters.
    pub peer_counters: Box<dyn Fn() -> Counters + Send + Sync>,
    /// The client listener's counters now.
    pub client_stats:
        Box<dyn Fn() -> Option<rarakoon_client::listener::StatsSnapshot> + Send + Sync>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// The `/health` verdict now.
    pub fn health(&self) -> Health {
        Health::named(&self.shared, &self.names, &self.node)
    }

    /// The `/metrics` text now.
    pub fn metrics_text(&self) -> Result<String, std::fmt::Error> {
        let peers = (self.peer_counters)();
        self.metrics.encode(&Scrape {
            shared: &self.shared,
            peers: &peers,
            names: &self.names,
            clients: (self.client_stats)(),
        })
    }

    fn answer(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        if method != Method::GET && method != Method::HEAD {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET is served\n".into(),
            );
        }
        match path {
            "/metrics" => match self.metrics_text() {
                Ok(body) => {
                    let mut response = text(StatusCode::OK, body);
                    response.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static(
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        ),
                    );
                    response
                }
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot encode the metrics: {e}\n"),
                ),
            },
            "/health" => {
                let health = self.health();
                let status = if health.healthy {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                let body = serde_json::to_string(&health).unwrap_or_else(|_| "{}".to_owned());
                let mut response = text(status, body);
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                response
            }
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: try /metrics or /health\n".into(),
            ),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A running metrics server.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// Binds `addr` and serves `endpoint` within `limits`.
    pub async fn start(
        addr: SocketAddr,
        endpoint: Endpoint,
        limits: Limits,
    ) -> std::io::Result<MetricsServer> {
        let socket = TcpListener::bind(addr).await?;
        let addr = socket.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(socket, Arc::new(endpoint), limits, stopped));
        Ok(MetricsServer { addr, stop, task })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and closes every connection.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn accept_loop(
    socket: TcpListener,
    endpoint: Arc<Endpoint>,
    limits: Limits,
    mut stopped: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            _ = stopped.wait_for(|s| *s) => break,
            accepted = socket.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Typically out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::debug!(%peer, "metrics endpoint: too many connections; closing one");
            drop(stream);
            continue;
        };
        let endpoint = Arc::clone(&endpoint);
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let response = endpoint.answer(request.method(), request.uri().path());
                async move { Ok::<_, Infallible>(response) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.head_timeout)
                .max_buf_size(limits.max_head_bytes.max(8192))
                .keep_alive(true);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(limits.connection_lifetime, connection).await {
                Ok(Ok(())) | Err(_) => {}
                Ok(Err(e)) => tracing::debug!(%peer, "metrics connection: {e}"),
            }
            drop(permit);
        });
    }
    connections.shutdown().await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::driver::Clock;
    use kv_store::{Store, UserFunctionRegistry};
    use paxos_core::NodeId;
    use std::sync::RwLock;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn shared() -> Arc<Shared> {
        Arc::new(Shared::new(
            Arc::new(RwLock::new(Store::new(Arc::new(
                UserFunctionRegistry::new(),
            )))),
            0,
            Clock::tokio(),
            Duration::from_secs(1),
        ))
    }

    fn endpoint(shared: &Arc<Shared>) -> Endpoint {
        Endpoint {
            metrics: Arc::clone(&shared.metrics),
            shared: Arc::clone(shared),
            names: vec!["n0".into(), "n1".into()],
            node: "n0".into(),
            peer_counters: Box::new(Counters::default),
            client_stats: Box::new(|| {
                Some(rarakoon_client::listener::StatsSnapshot {
                    connections: 3,
                    requests_in_flight: 2,
                    ..Default::default()
                })
            }),
        }
    }

    async fn get(addr: SocketAddr, request: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8(out).unwrap();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    fn request(method: &str, path: &str) -> String {
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    }

    #[tokio::test]
    async fn health_follows_the_view_and_metrics_parse() {
        let shared = shared();
        let server = MetricsServer::start(
            "127.0.0.1:0".parse().unwrap(),
            endpoint(&shared),
            Limits::default(),
        )
        .await
        .unwrap();
        let addr = server.local_addr();

        let (status, body) = get(addr, &request("GET", "/health")).await;
        assert_eq!(status, 503, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["role"], "starting");
        assert_eq!(json["master"], serde_json::Value::Null);
        assert_eq!(json["node"], "n0");

        {
            let mut view = shared.view.lock().unwrap();
            view.role = NodeRole::Master;
            view.master = Some(NodeId(0));
            view.lease_expires = Some(shared.now() + 10_000_000_000);
            view.committed = 7;
            view.last_index = 8;
        }
        let (status, body) = get(addr, &request("GET", "/health")).await;
        assert_eq!(status, 200, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["master"], "n0");
        assert_eq!(json["role"], "master");
        assert_eq!(json["committed_index"], 7);
        assert_eq!(json["last_index"], 8);
        assert!(json["lease_remaining_secs"].as_f64().unwrap() > 0.0);

        // A master whose lease ran out names no master.
        shared.view.lock().unwrap().lease_expires = Some(0);
        let (status, _) = get(addr, &request("GET", "/health")).await;
        assert_eq!(status, 503);

        shared.metrics.request("set", true, 0.001);
        let (status, body) = get(addr, &request("GET", "/metrics")).await;
        assert_eq!(status, 200);
        let scrape =
            prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
        let committed = scrape
            .samples
            .iter()
            .find(|s| s.metric == "rarakoon_committed_index")
            .expect("committed index");
        assert!(matches!(committed.value, prometheus_parse::Value::Gauge(v) if v == 7.0));
        let role = scrape
            .samples
            .iter()
            .find(|s| s.metric == "rarakoon_role" && s.labels.get("role") == Some("master"))
            .expect("role");
        assert!(matches!(role.value, prometheus_parse::Value::Gauge(v) if v == 1.0));
        assert!(scrape.samples.iter().any(
            |s| s.metric == "rarakoon_requests_total" && s.labels.get("opcode") == Some("set")
        ));
        let gauge = |name: &str| {
            scrape
                .samples
                .iter()
                .find(|s| s.metric == name)
                .map(|s| s.value.clone())
        };
        assert!(matches!(
            gauge("rarakoon_client_connections"),
            Some(prometheus_parse::Value::Gauge(v)) if v == 3.0
        ));
        assert!(matches!(
            gauge("rarakoon_client_requests_in_flight"),
            Some(prometheus_parse::Value::Gauge(v)) if v == 2.0
        ));

        assert_eq!(get(addr, &request("GET", "/nope")).await.0, 404);
        assert_eq!(get(addr, &request("POST", "/metrics")).await.0, 405);
        server.stop().await;
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_are_closed_and_oversized_heads_refused() {
        let shared = shared();
        let limits = Limits {
            max_connections: 1,
            ..Limits::default()
        };
        let server =
            MetricsServer::start("127.0.0.1:0".parse().unwrap(), endpoint(&shared), limits)
                .await
                .unwrap();
        let addr = server.local_addr();
        // The first connection holds the only slot (it sent nothing yet).
        let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
        // The next one is closed without an answer.
        let (status, _) = get(addr, &request("GET", "/health")).await;
        assert_eq!(status, 0, "a connection beyond the limit was served");
        // The first one is still served.
        first
            .write_all(request("GET", "/health").as_bytes())
            .await
            .unwrap();
        let mut out = Vec::new();
        first.read_to_end(&mut out).await.unwrap();
        assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 503"));
        drop(first);

        // A request head larger than the bound is refused, not buffered. The slot of the
        // first connection is freed once its task ends: wait for a connection to be served.
        let huge = format!(
            "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(64 * 1024)
        );
        loop {
            let (status, _) = get(addr, &request("GET", "/health")).await;
            if status != 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = stream.write_all(huge.as_bytes()).await;
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out).await;
        let answer = String::from_utf8_lossy(&out);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
            "an oversized head was answered: {answer}"
        );
        server.stop().await;
    }
}
