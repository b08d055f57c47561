//! The client handler: Arakoon's requests answered from this node's store and role.
//!
//! - Reads are served right here, from the shared store: `Consistent` only while this node is
//!   master with a valid lease, `No_guarantees` always, `At_least i` once the store has applied
//!   `i` (docs/protocol.md §5, §6). A read-only cluster serves every read.
//! - One read never makes the node scan or hold more than [`HandlerConfig::read_limits`]
//!   (results and bytes, default [`ReadLimits::DEFAULT`]): a range, prefix or multi-get whose
//!   answer would exceed them is refused with `E_BAD_INPUT` naming the limit, after scanning
//!   at most one result past it, so the store's read lock (which the driver's applies wait
//!   for) is held for a bounded time. `max = -1` ("all") works on every answer within them.
//! - Writes are checked (value size, role, update size), encoded once, and proposed through
//!   the driver; the answer comes after the update committed and was applied. A write whose
//!   outcome is unknown (the master role was lost, or the node stopped, while it was in
//!   flight) is answered `E_NO_LONGER_MASTER`, as Arakoon does for "may or may not have
//!   happened"; one refused before it was proposed (the node is stopping) `E_GOING_DOWN`.
//! - Admin operations: statistics, version, current state, collapse, drop master, flush store,
//!   optimize/defrag (no-ops for an in-memory store, refused on the master like Arakoon),
//!   copy_db_to_head (a forced collapse), get_db (a consistent image of the store streamed from
//!   a blocking thread in bounded pieces, refused on the master like Arakoon; `crate::backup`).
//!   Nursery and node catch-up opcodes are answered with `E_NOT_SUPPORTED`: Rarakoon does not
//!   shard and its nodes catch up over their own protocol.
//! - A witness holds no data: every read and write (and get_txid, get_db, optimize/defrag,
//!   copy_db_to_head) is refused with `E_NOT_SUPPORTED` saying the node is a witness and naming
//!   the master; admin requests are answered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kv_store::{KeyRange, ReadLimits, ReadTooLarge, Store, StoreError};
use paxos_core::{NodeId, NodeRole};
use rarakoon_client::listener::{ConnectionInfo, Handler, Outcome};
use rarakoon_client::{Consistency, ErrorCode, ErrorReply, RangeQuery, Request, Response};
use tokio::sync::mpsc;

use crate::config::MasterMode;
use crate::driver::{Input, Shared};
use crate::stats::{Op, Stats};

mod admin;
mod reads;
mod writes;

use admin::version;
pub use writes::to_store_update;

/// Static facts the handler needs.
#[derive(Debug, Clone)]
pub struct HandlerConfig {
    /// This node's name.
    pub node_name: String,
    /// Cluster id (for PING).
    pub cluster_id: Bytes,
    /// All node names, indexed by `NodeId`.
    pub node_names: Vec<String>,
    /// Master mode.
    pub master_mode: MasterMode,
    /// A value must be strictly smaller.
    pub max_value_size: u64,
    /// Largest encoded update.
    pub max_request_size: u64,
    /// What one read may scan and return.
    pub read_limits: ReadLimits,
    /// This node is a witness: it votes and keeps the log but holds no data, so every read
    /// and write is refused with `E_NOT_SUPPORTED` saying so (admin requests are answered).
    pub witness: bool,
}

/// The node's [`Handler`].
#[derive(Debug)]
pub struct NodeHandler {
    config: HandlerConfig,
    shared: Arc<Shared>,
    inputs: mpsc::Sender<Input>,
    started_unix: f64,
    requests: AtomicU64,
    stats: Stats,
}

type Answer = Result<Response, ErrorReply>;

fn err(code: ErrorCode, message: impl Into<Bytes>) -> ErrorReply {
    ErrorReply::new(code, message)
}

fn store_error(e: &StoreError) -> ErrorReply {
    let code = i32::try_from(e.arakoon_code()).unwrap_or(0xFF);
    ErrorReply::new(
        ErrorCode::from_code(code),
        Bytes::copy_from_slice(&e.wire_message()),
    )
}

fn too_large(e: &ReadTooLarge) -> ErrorReply {
    err(ErrorCode::BadInput, format!("read refused: {e}"))
}

/// The answer to a write whose outcome is unknown (Arakoon's code for it).
fn indeterminate(why: &str) -> ErrorReply {
    err(ErrorCode::NoLongerMaster, why.to_owned())
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn key_range(q: &RangeQuery) -> KeyRange<'_> {
    KeyRange {
        first: q.first.as_deref(),
        first_inclusive: q.first_inclusive,
        last: q.last.as_deref(),
        last_inclusive: q.last_inclusive,
    }
}

impl NodeHandler {
    /// A handler for this node.
    pub fn new(config: HandlerConfig, shared: Arc<Shared>, inputs: mpsc::Sender<Input>) -> Self {
        NodeHandler {
            config,
            shared,
            inputs,
            started_unix: unix_now(),
            requests: AtomicU64::new(0),
            stats: Stats::default(),
        }
    }

    fn name_of(&self, node: NodeId) -> Bytes {
        self.config
            .node_names
            .get(node.index())
            .map_or_else(|| Bytes::from(node.to_string()), |n| Bytes::from(n.clone()))
    }

    fn readonly(&self) -> bool {
        self.config.master_mode == MasterMode::Readonly
    }

    /// The master this node would name: itself while it holds the lease, else the known one.
    fn master_name(&self) -> Option<Bytes> {
        if self.readonly() {
            return Some(Bytes::from(self.config.node_name.clone()));
        }
        if self.shared.holds_lease() {
            return Some(Bytes::from(self.config.node_name.clone()));
        }
        if self.shared.view().role == NodeRole::Master {
            // Established but the lease lapsed: no master is valid right now.
            return None;
        }
        self.shared.live_master().map(|m| self.name_of(m))
    }

    fn not_master(&self) -> ErrorReply {
        let name = self
            .master_name()
            .unwrap_or_else(|| Bytes::from_static(b"None"));
        err(ErrorCode::NotMaster, name)
    }

    /// The refusal of a data request on a witness, naming the master to ask instead.
    fn witness_refusal(&self) -> ErrorReply {
        let master = self.master_name().map_or_else(
            || "none known".to_owned(),
            |m| String::from_utf8_lossy(&m).into_owned(),
        );
        err(
            ErrorCode::NotSupported,
            format!(
                "node {} is a witness: it votes and keeps the log but holds no data, so it \
                 serves no reads or writes; ask the master (currently {master}) or a slave",
                self.config.node_name
            ),
        )
    }

    fn check_read(&self, consistency: Consistency) -> Result<(), ErrorReply> {
        if self.config.witness {
            return Err(self.witness_refusal());
        }
        if self.readonly() {
            return Ok(());
        }
        match consistency {
            Consistency::Consistent => {
                if self.shared.holds_lease() {
                    Ok(())
                } else {
                    Err(self.not_master())
                }
            }
            Consistency::NoGuarantees => Ok(()),
            Consistency::AtLeast(i) => {
                let applied = self.store().applied_index().unwrap_or(0);
                if u64::try_from(i).is_ok_and(|i| applied < i) {
                    Err(err(ErrorCode::InconsistentRead, "store not fresh enough"))
                } else {
                    Ok(())
                }
            }
        }
    }

    fn store(&self) -> std::sync::RwLockReadGuard<'_, Store> {
        self.shared
            .store
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A multi-get of more keys than a read may return is refused before the store is read.
    fn check_key_count(&self, keys: usize) -> Result<(), ErrorReply> {
        let max_results = self.config.read_limits.max_results;
        if keys > max_results {
            return Err(too_large(&ReadTooLarge {
                limit: kv_store::ReadLimit::Results(max_results),
            }));
        }
        Ok(())
    }

    /// Values are shared with the store (no copy under the lock); their total is checked after.
    fn check_bytes(&self, sizes: impl Iterator<Item = usize>) -> Result<(), ErrorReply> {
        let max_bytes = self.config.read_limits.max_bytes;
        if sizes.fold(0usize, usize::saturating_add) > max_bytes {
            return Err(too_large(&ReadTooLarge {
                limit: kv_store::ReadLimit::Bytes(max_bytes),
            }));
        }
        Ok(())
    }

    fn check_value(&self, value: &[u8]) -> Result<(), ErrorReply> {
        if value.len() as u64 >= self.config.max_value_size {
            return Err(err(
                ErrorCode::UnknownFailure,
                format!(
                    "value of {} bytes is not below max_value_size {}",
                    value.len(),
                    self.config.max_value_size
                ),
            ));
        }
        Ok(())
    }

    fn check_writable(&self) -> Result<(), ErrorReply> {
        if self.config.witness {
            return Err(self.witness_refusal());
        }
        if self.readonly() {
            return Err(err(
                ErrorCode::ReadOnly,
                Bytes::from(self.config.node_name.clone()),
            ));
        }
        if self.shared.view().role != NodeRole::Master {
            return Err(self.not_master());
        }
        Ok(())
    }

    fn check_not_witness(&self) -> Result<(), ErrorReply> {
        if self.config.witness {
            return Err(self.witness_refusal());
        }
        Ok(())
    }

    fn check_not_master(&self) -> Result<(), ErrorReply> {
        if self.shared.view().role == NodeRole::Master {
            return Err(err(
                ErrorCode::NotSupported,
                "Operation cannot be performed on master node",
            ));
        }
        Ok(())
    }

    /// Answers one request (what [`Handler::handle`] calls), timing it for STATISTICS.
    pub async fn execute(&self, request: Request) -> Answer {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let timed = timed_op(&request);
        let opcode = request.opcode().name();
        let started = std::time::Instant::now();
        let answer = self.answer(request).await;
        self.shared
            .metrics
            .request(opcode, answer.is_ok(), started.elapsed().as_secs_f64());
        if let (Some((op, request_size)), Ok(response)) = (timed, &answer) {
            let size = request_size.or_else(|| response_size(response));
            self.stats.record(op, started.elapsed().as_secs_f64(), size);
        }
        answer
    }

    /// The opcode table: one line per request, each answered by a small function of its
    /// group ([`reads`], [`writes`], [`admin`]).
    async fn answer(&self, request: Request) -> Answer {
        match request {
            // Reads and questions about the cluster.
            Request::Ping { cluster_id, .. } => self.ping(&cluster_id),
            Request::WhoMaster => Ok(Response::WhoMaster(self.master_name())),
            Request::Exists { consistency, key } => self.exists(consistency, &key),
            Request::Get { consistency, key } => self.get(consistency, &key),
            Request::Range(q) => self.range(&q),
            Request::RangeEntries(q) => self.range_entries(&q),
            Request::RevRangeEntries(q) => self.rev_range_entries(&q),
            Request::PrefixKeys {
                consistency,
                prefix,
                max,
            } => self.prefix_keys(consistency, &prefix, max),
            Request::MultiGet { consistency, keys } => self.multi_get(consistency, &keys),
            Request::MultiGetOption { consistency, keys } => {
                self.multi_get_option(consistency, &keys)
            }
            Request::Assert {
                consistency,
                key,
                expected,
            } => self.assert(consistency, &key, expected.as_deref()),
            Request::AssertExists { consistency, key } => self.assert_exists(consistency, &key),
            Request::GetKeyCount => self.key_count(),
            Request::GetTxid => self.get_txid(),
            Request::UserHook { consistency, name } => self.user_hook(consistency, name),
            Request::GetInterval => self.get_interval(),
            // Writes: proposed through the driver, answered once applied.
            Request::Set { key, value } => self.set(key, value).await,
            Request::Confirm { key, value } => self.confirm(key, value).await,
            Request::Delete { key } => self.delete(key).await,
            Request::TestAndSet {
                key,
                expected,
                wanted,
            } => self.test_and_set(key, expected, wanted).await,
            Request::Replace { key, wanted } => self.replace(key, wanted).await,
            Request::Sequence(updates) => self.sequence(updates, Response::Sequence).await,
            Request::SyncedSequence(updates) => {
                self.sequence(updates, Response::SyncedSequence).await
            }
            Request::DeletePrefix { prefix } => self.delete_prefix(prefix).await,
            Request::UserFunction { name, arg } => self.user_function(name, arg).await,
            Request::Nop => self.unit_write(kv_store::Update::Nop, Response::Nop).await,
            // Admin.
            Request::ExpectProgressPossible => Ok(self.expect_progress_possible()),
            Request::Statistics => Ok(Response::Statistics(self.statistics().await)),
            Request::Version => Ok(version()),
            Request::CurrentState => Ok(Response::CurrentState(Bytes::from_static(
                self.current_state(),
            ))),
            Request::FlushStore => Ok(Response::FlushStore),
            Request::CollapseTlogs { tlogs_to_keep } => self.collapse_tlogs(tlogs_to_keep).await,
            Request::CopyDbToHead { tlogs_to_keep } => self.copy_db_to_head(tlogs_to_keep).await,
            Request::OptimizeDb => self.optimize_db(Response::OptimizeDb),
            Request::DefragDb => self.optimize_db(Response::DefragDb),
            Request::DropMaster => self.drop_master().await,
            // Streamed by `handle` (`get_db`); reached only through `execute`, which cannot stream.
            Request::GetDb => {
                self.check_get_db()?;
                Err(err(
                    ErrorCode::NotSupported,
                    "get_db streams its answer; it is served through the client listener",
                ))
            }
            // Not served (docs/protocol.md §8.7): sharding, and Arakoon's node catch-up
            // over the client port (ADR 0175).
            Request::GetRouting => Err(ErrorReply::not_found()),
            Request::SetInterval(_)
            | Request::SetRouting(_)
            | Request::SetRoutingDelta { .. }
            | Request::SetNurseryCfg { .. }
            | Request::GetNurseryCfg
            | Request::MigrateRange { .. }
            | Request::GetFringe { .. } => Err(err(
                ErrorCode::NotSupported,
                "nursery (sharding) operations are not supported by Rarakoon",
            )),
            Request::LastEntries { .. }
            | Request::LastEntries2 { .. }
            | Request::LastEntries3 { .. } => Err(err(
                ErrorCode::NotSupported,
                "node catch-up over the client port is not supported; Rarakoon nodes use their \
                 own protocol",
            )),
        }
    }
}

/// The statistics kind of a request, and its size when the request carries it.
fn timed_op(request: &Request) -> Option<(Op, Option<u64>)> {
    Some(match request {
        Request::Set { value, .. } | Request::Confirm { value, .. } => {
            (Op::Set, Some(value.len() as u64))
        }
        Request::Get { .. } => (Op::Get, None),
        Request::Delete { .. } => (Op::Delete, None),
        Request::Sequence(_) | Request::SyncedSequence(_) => (Op::Sequence, None),
        Request::MultiGet { .. } => (Op::MultiGet, None),
        Request::MultiGetOption { .. } => (Op::MultiGetOption, None),
        Request::TestAndSet { .. } => (Op::TestAndSet, None),
        Request::Replace { .. } => (Op::Replace, None),
        Request::Range(_) => (Op::Range, None),
        Request::RangeEntries(_) => (Op::RangeEntries, None),
        Request::RevRangeEntries(_) => (Op::RevRangeEntries, None),
        Request::PrefixKeys { .. } => (Op::Prefix, None),
        Request::DeletePrefix { .. } => (Op::DeletePrefix, None),
        _ => return None,
    })
}

/// The size Arakoon averages for a response (value bytes, or number of results).
fn response_size(response: &Response) -> Option<u64> {
    Some(match response {
        Response::Get(v) => v.len() as u64,
        Response::Range(keys) | Response::PrefixKeys(keys) => keys.len() as u64,
        Response::RangeEntries(e) | Response::RevRangeEntries(e) => e.len() as u64,
        Response::DeletePrefix(n) => u64::try_from(*n).unwrap_or(0),
        _ => return None,
    })
}

impl Handler for NodeHandler {
    async fn handle(&self, _connection: &ConnectionInfo, request: Request) -> Outcome {
        if matches!(request, Request::GetDb) {
            return self.get_db();
        }
        Outcome::new(self.execute(request).await)
    }
}
