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

use bytes::{Bytes, BytesMut};
use kv_store::{KeyRange, ReadLimits, ReadTooLarge, Store, StoreError, UpdateResult};
use paxos_core::{NodeId, NodeRole};
use rarakoon_client::listener::{ConnectionInfo, Handler, Outcome};
use rarakoon_client::{
    Consistency, ErrorCode, ErrorReply, NamedValue, RangeQuery, Request, Response, Update,
    Value as StatValue, VersionInfo,
};
use tokio::sync::{mpsc, oneshot};

use crate::config::MasterMode;
use crate::driver::{Input, Shared, WriteOutcome};
use crate::payload;
use crate::stats::{Op, SIZE_NAMES, Series, Stats, TIMING_NAMES};

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

/// Converts a client update into the store's model; internal tags are refused (§7.2).
pub fn to_store_update(update: Update) -> Result<kv_store::Update, ErrorReply> {
    use kv_store::Update as S;
    Ok(match update {
        Update::Set { key, value } => S::Set { key, value },
        Update::Delete { key } => S::Delete { key },
        Update::TestAndSet {
            key,
            expected,
            wanted,
        } => S::TestAndSet {
            key,
            expected,
            wanted,
        },
        Update::Sequence(members) => S::Sequence(
            members
                .into_iter()
                .map(to_store_update)
                .collect::<Result<_, _>>()?,
        ),
        Update::Nop => S::Nop,
        Update::UserFunction { name, arg } => S::UserFunction {
            name,
            argument: arg,
        },
        Update::Assert { key, expected } => S::Assert { key, expected },
        Update::DeletePrefix { prefix } => S::DeletePrefix { prefix },
        Update::AssertExists { key } => S::AssertExists { key },
        Update::Replace { key, wanted } => S::Replace { key, wanted },
        Update::AssertRange { prefix, assertion } => {
            let rarakoon_client::RangeAssertion::ContainsExactly(keys) = assertion;
            S::AssertRange {
                prefix,
                assertion: kv_store::RangeAssertion::ContainsExactly(keys),
            }
        }
        other => {
            return Err(err(
                ErrorCode::BadInput,
                format!(
                    "update tag {} is internal to the node and not accepted from clients",
                    other.tag()
                ),
            ));
        }
    })
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

    /// Proposes one update and waits until it is committed and applied.
    async fn write(&self, update: kv_store::Update) -> Result<UpdateResult, ErrorReply> {
        self.check_writable()?;
        let mut buf = BytesMut::new();
        payload::encode_into(&update, &mut buf);
        if buf.len() as u64 > self.config.max_request_size {
            return Err(err(
                ErrorCode::BadInput,
                format!(
                    "update has size {} > {}",
                    buf.len(),
                    self.config.max_request_size
                ),
            ));
        }
        let (tx, rx) = oneshot::channel();
        let input = Input::Propose {
            payload: buf.to_vec(),
            reply: tx,
        };
        if self.inputs.send(input).await.is_err() {
            return Err(ErrorReply::going_down());
        }
        match rx.await {
            Ok(WriteOutcome::Applied(Ok(result))) => Ok(result),
            Ok(WriteOutcome::Applied(Err(e))) => Err(store_error(&e)),
            Ok(WriteOutcome::NotMaster(_)) => Err(self.not_master()),
            Ok(WriteOutcome::ReadOnly) => Err(err(
                ErrorCode::ReadOnly,
                Bytes::from(self.config.node_name.clone()),
            )),
            Ok(WriteOutcome::Overloaded) => Err(err(
                ErrorCode::UnknownFailure,
                "the node is overloaded (too many writes queued, or the update is larger than a \
                 Paxos value may be); retry later",
            )),
            Ok(WriteOutcome::Indeterminate) => Err(indeterminate(
                "lost master role during wait_for_accepteds while handling client request",
            )),
            Ok(WriteOutcome::Unfinished) => Err(indeterminate(
                "the node stopped while the write was in flight: it may or may not have been \
                 applied",
            )),
            Ok(WriteOutcome::GoingDown) => Err(ErrorReply::going_down()),
            // The driver took the write and ended without answering it.
            Err(_) => Err(indeterminate(
                "the node failed while the write was in flight: it may or may not have been \
                 applied",
            )),
        }
    }

    async fn unit_write(&self, update: kv_store::Update, response: Response) -> Answer {
        self.write(update).await.map(|_| response)
    }

    fn old_value(result: UpdateResult) -> Option<Bytes> {
        match result {
            UpdateResult::OldValue(v) | UpdateResult::UserFunction(v) => v,
            _ => None,
        }
    }

    fn statistics(&self) -> NamedValue {
        let float = |name: &'static str, v: f64| NamedValue::new(name, StatValue::Float(v));
        let int = |name: &'static str| NamedValue::new(name, StatValue::Int(0));
        let series = |name: &'static str, s: &Series| {
            NamedValue::new(
                name,
                StatValue::List(vec![
                    NamedValue::new("n", StatValue::Int(i32::try_from(s.n).unwrap_or(i32::MAX))),
                    NamedValue::new("min", StatValue::Float(s.min)),
                    NamedValue::new("max", StatValue::Float(s.max)),
                    NamedValue::new("m2", StatValue::Float(s.m2)),
                    NamedValue::new("avg", StatValue::Float(s.mean)),
                    NamedValue::new("var", StatValue::Float(s.variance())),
                ]),
            )
        };
        let snapshot = self.stats.snapshot();
        let mut children = vec![float("start", self.started_unix), float("last", unix_now())];
        for (name, value) in SIZE_NAMES.iter().zip(snapshot.sizes) {
            children.push(float(name, value));
        }
        children.push(series("harvest_stats", &Series::default()));
        for (name, s) in TIMING_NAMES.iter().zip(snapshot.timings.iter()) {
            children.push(series(name, s));
        }
        children.push(series("op_info", &snapshot.all));
        let payload_kib = self.store().stats().payload_bytes as f64 / 1024.0;
        children.push(float("mem_allocated", payload_kib));
        for name in [
            "mem_maxrss",
            "mem_minor_collections",
            "mem_major_collections",
            "mem_compactions",
        ] {
            children.push(int(name));
        }
        let applied = self.store().applied_index().unwrap_or(0);
        children.push(NamedValue::new(
            "node_is",
            StatValue::List(vec![NamedValue::new(
                Bytes::from(self.config.node_name.clone()),
                StatValue::Int64(i64::try_from(applied).unwrap_or(i64::MAX)),
            )]),
        ));
        NamedValue::new("arakoon_stats", StatValue::List(children))
    }

    fn current_state(&self) -> &'static [u8] {
        match self.shared.view().role {
            NodeRole::Starting => b"Starting",
            NodeRole::Follower => b"Slave_steady_state",
            NodeRole::Candidate => b"Wait_for_promises",
            NodeRole::MasterElect => b"Wait_for_accepteds",
            NodeRole::Master => b"Stable_master",
        }
    }

    async fn collapse(&self) -> Result<crate::storage::CollapseReport, ErrorReply> {
        let (tx, rx) = oneshot::channel();
        if self
            .inputs
            .send(Input::Collapse { reply: tx })
            .await
            .is_err()
        {
            return Err(ErrorReply::going_down());
        }
        match rx.await {
            Ok(Ok(report)) => Ok(report),
            Ok(Err(e)) => Err(err(ErrorCode::UnknownFailure, e)),
            Err(_) => Err(ErrorReply::going_down()),
        }
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

    async fn answer(&self, request: Request) -> Answer {
        match request {
            Request::Ping { cluster_id, .. } => {
                if cluster_id != self.config.cluster_id {
                    return Err(err(ErrorCode::WrongCluster, "Wrong cluster"));
                }
                Ok(Response::Ping(Bytes::from_static(b"Arakoon 1.9.0")))
            }
            Request::WhoMaster => Ok(Response::WhoMaster(self.master_name())),
            Request::Exists { consistency, key } => {
                self.check_read(consistency)?;
                Ok(Response::Exists(self.store().exists(&key)))
            }
            Request::Get { consistency, key } => {
                self.check_read(consistency)?;
                let store = self.store();
                let value = store.get_or_not_found(&key).map_err(|e| store_error(&e))?;
                Ok(Response::Get(value.clone()))
            }
            Request::Range(q) => {
                self.check_read(q.consistency)?;
                let limits = self.config.read_limits;
                let keys = self.store().range_limited(&key_range(&q), q.max, limits);
                Ok(Response::Range(keys.map_err(|e| too_large(&e))?))
            }
            Request::RangeEntries(q) => {
                self.check_read(q.consistency)?;
                let limits = self.config.read_limits;
                let pairs = self
                    .store()
                    .range_entries_limited(&key_range(&q), q.max, limits);
                Ok(Response::RangeEntries(pairs.map_err(|e| too_large(&e))?))
            }
            Request::RevRangeEntries(q) => {
                self.check_read(q.consistency)?;
                let limits = self.config.read_limits;
                let pairs = self
                    .store()
                    .rev_range_entries_limited(&key_range(&q), q.max, limits);
                Ok(Response::RevRangeEntries(pairs.map_err(|e| too_large(&e))?))
            }
            Request::PrefixKeys {
                consistency,
                prefix,
                max,
            } => {
                self.check_read(consistency)?;
                let limits = self.config.read_limits;
                let keys = self.store().prefix_keys_limited(&prefix, max, limits);
                Ok(Response::PrefixKeys(keys.map_err(|e| too_large(&e))?))
            }
            Request::MultiGet { consistency, keys } => {
                self.check_read(consistency)?;
                self.check_key_count(keys.len())?;
                let values = self.store().multi_get(&keys).map_err(|e| store_error(&e))?;
                self.check_bytes(values.iter().map(Bytes::len))?;
                Ok(Response::MultiGet(values))
            }
            Request::MultiGetOption { consistency, keys } => {
                self.check_read(consistency)?;
                self.check_key_count(keys.len())?;
                let values = self.store().multi_get_option(&keys);
                self.check_bytes(values.iter().flatten().map(Bytes::len))?;
                Ok(Response::MultiGetOption(values))
            }
            Request::Assert {
                consistency,
                key,
                expected,
            } => {
                self.check_read(consistency)?;
                self.store()
                    .assert(&key, expected.as_deref())
                    .map_err(|e| store_error(&e))?;
                Ok(Response::Assert)
            }
            Request::AssertExists { consistency, key } => {
                self.check_read(consistency)?;
                self.store()
                    .assert_exists(&key)
                    .map_err(|e| store_error(&e))?;
                Ok(Response::AssertExists)
            }
            Request::GetKeyCount => {
                self.check_read(Consistency::Consistent)?;
                let count = self.store().key_count();
                Ok(Response::GetKeyCount(
                    i64::try_from(count).unwrap_or(i64::MAX),
                ))
            }
            Request::Set { key, value } => {
                self.check_value(&value)?;
                self.unit_write(kv_store::Update::Set { key, value }, Response::Set)
                    .await
            }
            Request::Confirm { key, value } => {
                self.check_value(&value)?;
                if self.shared.holds_lease() && self.store().get(&key).is_some_and(|v| *v == value)
                {
                    return Ok(Response::Confirm);
                }
                self.unit_write(kv_store::Update::Set { key, value }, Response::Confirm)
                    .await
            }
            Request::Delete { key } => {
                self.unit_write(kv_store::Update::Delete { key }, Response::Delete)
                    .await
            }
            Request::TestAndSet {
                key,
                expected,
                wanted,
            } => {
                if let Some(w) = &wanted {
                    self.check_value(w)?;
                }
                let result = self
                    .write(kv_store::Update::TestAndSet {
                        key,
                        expected,
                        wanted,
                    })
                    .await?;
                Ok(Response::TestAndSet(Self::old_value(result)))
            }
            Request::Replace { key, wanted } => {
                if let Some(w) = &wanted {
                    self.check_value(w)?;
                }
                let result = self
                    .write(kv_store::Update::Replace { key, wanted })
                    .await?;
                Ok(Response::Replace(Self::old_value(result)))
            }
            Request::Sequence(updates) => {
                let update = to_store_update(Update::Sequence(updates))?;
                self.unit_write(update, Response::Sequence).await
            }
            Request::SyncedSequence(updates) => {
                let update = to_store_update(Update::Sequence(updates))?;
                self.unit_write(update, Response::SyncedSequence).await
            }
            Request::DeletePrefix { prefix } => {
                let result = self
                    .write(kv_store::Update::DeletePrefix { prefix })
                    .await?;
                let count = match result {
                    UpdateResult::Count(n) => i32::try_from(n).unwrap_or(i32::MAX),
                    _ => 0,
                };
                Ok(Response::DeletePrefix(count))
            }
            Request::UserFunction { name, arg } => {
                let result = self
                    .write(kv_store::Update::UserFunction {
                        name,
                        argument: arg,
                    })
                    .await?;
                Ok(Response::UserFunction(Self::old_value(result)))
            }
            Request::Nop => self.unit_write(kv_store::Update::Nop, Response::Nop).await,
            Request::ExpectProgressPossible => Ok(Response::ExpectProgressPossible(
                self.shared.holds_lease() && self.store().applied_index().is_some(),
            )),
            Request::Statistics => Ok(Response::Statistics(self.statistics())),
            Request::Version => Ok(Response::Version(VersionInfo {
                major: 1,
                minor: 9,
                patch: 0,
                info: Bytes::from(format!(
                    "rarakoon {} (Arakoon 1.9 client protocol)\n",
                    env!("CARGO_PKG_VERSION")
                )),
            })),
            Request::CurrentState => Ok(Response::CurrentState(Bytes::from_static(
                self.current_state(),
            ))),
            Request::GetTxid => {
                if self.config.witness {
                    return Err(self.witness_refusal());
                }
                let applied = self.store().applied_index().unwrap_or(0);
                Ok(Response::GetTxid(Consistency::AtLeast(
                    i64::try_from(applied).unwrap_or(i64::MAX),
                )))
            }
            Request::FlushStore => Ok(Response::FlushStore),
            Request::CollapseTlogs { tlogs_to_keep } => {
                crate::storage::answer_collapse_tlogs(&self.inputs, tlogs_to_keep).await
            }
            Request::CopyDbToHead { tlogs_to_keep } => {
                if tlogs_to_keep < 1 {
                    return Err(err(
                        ErrorCode::UnknownFailure,
                        format!("tlogs_to_keep={tlogs_to_keep} is not acceptable"),
                    ));
                }
                self.check_not_witness()?;
                self.check_not_master()?;
                self.collapse().await?;
                Ok(Response::CopyDbToHead)
            }
            Request::OptimizeDb => {
                self.check_not_witness()?;
                self.check_not_master()?;
                Ok(Response::OptimizeDb)
            }
            Request::DefragDb => {
                self.check_not_witness()?;
                self.check_not_master()?;
                Ok(Response::DefragDb)
            }
            Request::DropMaster => {
                if self.config.node_names.len() == 1 {
                    return Err(err(
                        ErrorCode::NotSupported,
                        "drop master not supported for singletons",
                    ));
                }
                if self.inputs.send(Input::DropMaster).await.is_err() {
                    return Err(ErrorReply::going_down());
                }
                Ok(Response::DropMaster)
            }
            // Streamed by `handle` (`get_db`); reached only through `execute`, which cannot stream.
            Request::GetDb => {
                self.check_get_db()?;
                Err(err(
                    ErrorCode::NotSupported,
                    "get_db streams its answer; it is served through the client listener",
                ))
            }
            Request::UserHook { consistency, name } => {
                self.check_read(consistency)?;
                Err(err(ErrorCode::UserHookNotFound, name))
            }
            Request::GetInterval => {
                self.check_read(Consistency::Consistent)?;
                Ok(Response::GetInterval(rarakoon_client::Interval::default()))
            }
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

impl NodeHandler {
    /// GET_DB is refused on a witness (no data) and on the master (as Arakoon does: the copy's
    /// work belongs on a slave, away from the node serving writes).
    fn check_get_db(&self) -> Result<(), ErrorReply> {
        self.check_not_witness()?;
        self.check_not_master()
    }

    /// GET_DB: a consistent image of the store, streamed (see [`crate::backup`]): Arakoon's
    /// `i64` length, then the image, a head snapshot. The connection closes after it.
    fn get_db(&self) -> Outcome {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        if let Err(e) = self.check_get_db() {
            self.shared
                .metrics
                .request("get_db", false, started.elapsed().as_secs_f64());
            return Outcome::new(Err(e));
        }
        let mut header = BytesMut::new();
        rarakoon_client::encode_reply(&Ok(Response::GetDb(Bytes::new())), &mut header);
        let config = crate::backup::snapshot_config(self.config.max_request_size, u64::MAX);
        let (tx, rx) = mpsc::channel(crate::backup::QUEUE_CHUNKS);
        let shared = Arc::clone(&self.shared);
        let node = self.config.node_name.clone();
        tokio::task::spawn_blocking(move || {
            let result = crate::backup::stream_image(&shared.store, header, &config, &tx);
            match &result {
                Ok(info) => tracing::info!(
                    node,
                    index = info.index,
                    pairs = info.pairs,
                    bytes = info.bytes,
                    "get_db: streamed a copy of the store"
                ),
                Err(e) => tracing::warn!(node, "get_db: stopped: {e}"),
            }
            shared
                .metrics
                .request("get_db", result.is_ok(), started.elapsed().as_secs_f64());
        });
        Outcome::streamed(
            Ok(Response::GetDb(Bytes::new())),
            rarakoon_client::listener::ReplyStream::new(rx),
        )
    }
}

impl Handler for NodeHandler {
    async fn handle(&self, _connection: &ConnectionInfo, request: Request) -> Outcome {
        if matches!(request, Request::GetDb) {
            return self.get_db();
        }
        Outcome::new(self.execute(request).await)
    }
}
