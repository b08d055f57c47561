//! A handler for the listener's and the client's own tests that does no store semantics.
//!
//! The store's semantics live in one place, the node (kv-store and its handler); the client's
//! semantic end-to-end tests run against a real node (rarakoon-node's
//! `tests/client_end_to_end.rs`). What the tests in this crate check is framing, limits,
//! pipelining, TLS and the client's connection handling, and for that the handler only has
//! to answer each request with something the test can tell apart. [`Recorder`] keeps a log
//! of the writes it was handed, in the order it ran them, and answers from that log alone:
//! a read of a key echoes the value of the last write of that key it recorded (a `set`
//! records a value, a `delete` records none), a key count counts recorded writes. There
//! are no ranges, prefixes, assertions, sequences, conditional writes or consistency
//! levels; any other request is answered `E_UNKNOWN_FAILURE` naming it.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::sync::Mutex;

use bytes::Bytes;
use rarakoon_client::listener::{ConnectionInfo, Handler, Outcome};
use rarakoon_client::{ErrorCode, ErrorReply, Reply, Request, Response};

/// Records writes in the order it runs them and echoes them back (see the module docs).
pub struct Recorder {
    node: Bytes,
    writes: Mutex<Vec<(Bytes, Option<Bytes>)>>,
}

impl Recorder {
    /// A recorder that names itself `node` as master.
    pub fn new(node: &str) -> Recorder {
        Recorder {
            node: Bytes::copy_from_slice(node.as_bytes()),
            writes: Mutex::new(Vec::new()),
        }
    }

    /// The writes recorded so far, in the order they ran: key, and value (`None`: a delete).
    pub fn writes(&self) -> Vec<(Bytes, Option<Bytes>)> {
        self.writes.lock().unwrap().clone()
    }

    /// The keys written so far, in order.
    pub fn written_keys(&self) -> Vec<Bytes> {
        self.writes().into_iter().map(|(k, _)| k).collect()
    }

    /// The value of the last recorded write of `key`.
    pub fn last_write(&self, key: &[u8]) -> Option<Bytes> {
        let writes = self.writes.lock().unwrap();
        writes
            .iter()
            .rev()
            .find(|(k, _)| &k[..] == key)
            .and_then(|(_, v)| v.clone())
    }

    fn record(&self, key: Bytes, value: Option<Bytes>) {
        self.writes.lock().unwrap().push((key, value));
    }

    /// Answers `request` (synchronously; the `Handler` impl wraps this).
    pub fn answer(&self, request: Request) -> Reply {
        match request {
            Request::WhoMaster => Ok(Response::WhoMaster(Some(self.node.clone()))),
            Request::Ping { .. } => Ok(Response::Ping(Bytes::from_static(b"Arakoon 1.9.25"))),
            Request::ExpectProgressPossible => Ok(Response::ExpectProgressPossible(true)),
            Request::Nop => Ok(Response::Nop),
            Request::FlushStore => Ok(Response::FlushStore),
            Request::OptimizeDb => Ok(Response::OptimizeDb),
            Request::DefragDb => Ok(Response::DefragDb),
            Request::Set { key, value } => {
                self.record(key, Some(value));
                Ok(Response::Set)
            }
            Request::Delete { key } => {
                self.record(key, None);
                Ok(Response::Delete)
            }
            Request::Replace { key, wanted } => {
                let before = self.last_write(&key);
                self.record(key, wanted);
                Ok(Response::Replace(before))
            }
            Request::Get { key, .. } => self
                .last_write(&key)
                .map(Response::Get)
                .ok_or_else(ErrorReply::not_found),
            Request::Exists { key, .. } => Ok(Response::Exists(self.last_write(&key).is_some())),
            Request::MultiGet { keys, .. } => keys
                .iter()
                .map(|k| self.last_write(k).ok_or_else(ErrorReply::not_found))
                .collect::<Result<Vec<_>, _>>()
                .map(Response::MultiGet),
            Request::GetKeyCount => Ok(Response::GetKeyCount(
                self.writes.lock().unwrap().len() as i64
            )),
            other => Err(ErrorReply::new(
                ErrorCode::UnknownFailure,
                format!(
                    "the test recorder does not answer {}",
                    other.opcode().name()
                ),
            )),
        }
    }
}

impl Handler for Recorder {
    async fn handle(&self, _c: &ConnectionInfo, request: Request) -> Outcome {
        Outcome::new(self.answer(request))
    }
}
