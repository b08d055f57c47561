//! An in-memory [`Handler`]: one node's store in a `BTreeMap`, with Arakoon's semantics for
//! every opcode (docs/protocol.md §6–§8), enough for tests, documentation examples and benchmarks.
//!
//! It is a single node: no Paxos, no durability. It can play a master (serves everything) or a
//! slave that names another master (refuses writes and consistent reads with `0x04`), which is
//! what the client's master-following tests need. Sequences are atomic: their effects are
//! undone if any member fails.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;

use bytes::Bytes;

use crate::error_code::{ErrorCode, ErrorReply};
use crate::listener::{ConnectionInfo, Handler, Outcome};
use crate::request::Request;
use crate::response::{Entry, Response};
use crate::types::{
    ClientCfg, Consistency, Interval, NamedValue, NurseryCfg, RangeQuery, Routing, Value,
    VersionInfo,
};
use crate::update::{RangeAssertion, Update};

/// The role the in-memory node plays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// It is the master: serves reads and writes.
    Master,
    /// It is a slave; `master` is the name it reports (None = no master known).
    Slave {
        /// The master's name.
        master: Option<Bytes>,
    },
}

/// Settings of a [`MemoryHandler`].
#[derive(Debug, Clone)]
pub struct MemoryConfig {
    /// The cluster id (checked by PING).
    pub cluster_id: Bytes,
    /// This node's name.
    pub node_name: Bytes,
    /// Master or slave.
    pub role: Role,
    /// Values must be strictly smaller (Arakoon's `max_value_size`, 8 MiB).
    pub max_value_size: usize,
    /// Updates must not be larger (Arakoon's `max_buffer_size`, 32 MiB).
    pub max_update_size: usize,
    /// The version VERSION and PING report.
    pub version: (i32, i32, i32),
}

impl MemoryConfig {
    /// A master node with Arakoon's default limits.
    pub fn master(cluster_id: impl Into<Bytes>, node_name: impl Into<Bytes>) -> Self {
        MemoryConfig {
            cluster_id: cluster_id.into(),
            node_name: node_name.into(),
            role: Role::Master,
            max_value_size: 8 * 1024 * 1024,
            max_update_size: 32 * 1024 * 1024,
            version: (1, 9, 25),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    store: BTreeMap<Bytes, Bytes>,
    /// Index of the last applied update (0 = empty store).
    applied: i64,
    interval: Interval,
    routing: Option<Routing>,
    nursery: Vec<(Bytes, ClientCfg)>,
}

/// The in-memory handler. Share it with `Arc` and hand it to a [`crate::listener::Listener`].
#[derive(Debug)]
pub struct MemoryHandler {
    config: MemoryConfig,
    state: Mutex<State>,
}

/// Result of one operation.
type OpResult = Result<Response, ErrorReply>;

fn err(code: ErrorCode, message: impl Into<Bytes>) -> ErrorReply {
    ErrorReply::new(code, message)
}

fn not_found_key(key: &Bytes) -> ErrorReply {
    err(ErrorCode::NotFound, key.clone())
}

fn assertion_failed(key: &Bytes) -> ErrorReply {
    err(ErrorCode::AssertionFailed, key.clone())
}

fn user_function_not_found(name: &[u8]) -> ErrorReply {
    let mut message = b"User function ".to_vec();
    push_ocaml_quoted(&mut message, name);
    message.extend_from_slice(b" could not be found");
    err(ErrorCode::BadInput, message)
}

/// Appends `bytes` as OCaml's `%S` prints them (the reference formats its messages so): in
/// double quotes, `"` and `\` escaped, `\n \t \r \b` as such, other bytes outside printable
/// ASCII as `\ddd` (decimal).
fn push_ocaml_quoted(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    for &byte in bytes {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0x08 => out.extend_from_slice(b"\\b"),
            b' '..=b'~' => out.push(byte),
            other => out.extend_from_slice(format!("\\{other:03}").as_bytes()),
        }
    }
    out.push(b'"');
}

/// The reference's assert_range failure message: `ContainsExactly [ %S ]` of the expected
/// keys joined by `"; "` (one quoted string), then ` actual: ` and the actual keys joined by
/// `,`, raw.
fn contains_exactly_failed(expected: &[&Bytes], actual: &[&Bytes]) -> Vec<u8> {
    let joined = |keys: &[&Bytes], separator: &[u8]| {
        let mut out = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(separator);
            }
            out.extend_from_slice(key);
        }
        out
    };
    let mut message = b"ContainsExactly [ ".to_vec();
    push_ocaml_quoted(&mut message, &joined(expected, b"; "));
    message.extend_from_slice(b" ] actual: ");
    message.extend_from_slice(&joined(actual, b","));
    message
}

/// `Some(n)` for a non-negative `max`, `None` (no limit) for a negative one.
fn limit(max: i32) -> usize {
    usize::try_from(max).unwrap_or(usize::MAX)
}

/// Entries between two bounds, ascending. Empty (instead of BTreeMap's panic) when the bounds
/// cross or meet with an exclusive end.
fn between<'a>(
    store: &'a BTreeMap<Bytes, Bytes>,
    lower: Bound<&'a [u8]>,
    upper: Bound<&'a [u8]>,
) -> Box<dyn DoubleEndedIterator<Item = (&'a Bytes, &'a Bytes)> + 'a> {
    let value = |b: &Bound<&'a [u8]>| match b {
        Bound::Included(k) | Bound::Excluded(k) => Some(*k),
        Bound::Unbounded => None,
    };
    if let (Some(lo), Some(hi)) = (value(&lower), value(&upper)) {
        let both_inclusive = matches!((&lower, &upper), (Bound::Included(_), Bound::Included(_)));
        if lo > hi || (lo == hi && !both_inclusive) {
            return Box::new(std::iter::empty());
        }
    }
    Box::new(store.range::<[u8], _>((lower, upper)))
}

fn inclusive(key: &[u8], inclusive: bool) -> Bound<&[u8]> {
    if inclusive {
        Bound::Included(key)
    } else {
        Bound::Excluded(key)
    }
}

impl State {
    fn range<'a>(&'a self, q: &'a RangeQuery) -> impl Iterator<Item = (&'a Bytes, &'a Bytes)> {
        // first = None means the empty key as bound, with `first_inclusive` (§8.2).
        let lower = inclusive(q.first.as_deref().unwrap_or(b""), q.first_inclusive);
        let upper = match q.last.as_deref() {
            Some(last) => inclusive(last, q.last_inclusive),
            None => Bound::Unbounded,
        };
        between(&self.store, lower, upper).take(limit(q.max))
    }

    fn rev_range<'a>(&'a self, q: &'a RangeQuery) -> impl Iterator<Item = (&'a Bytes, &'a Bytes)> {
        let upper = match q.first.as_deref() {
            Some(first) => inclusive(first, q.first_inclusive),
            None => Bound::Unbounded,
        };
        let lower = inclusive(q.last.as_deref().unwrap_or(b""), q.last_inclusive);
        between(&self.store, lower, upper).rev().take(limit(q.max))
    }

    fn prefixed<'a>(&'a self, prefix: &'a [u8]) -> impl Iterator<Item = (&'a Bytes, &'a Bytes)> {
        self.store
            .range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
    }

    fn write(&mut self, key: Bytes, value: Option<Bytes>, undo: &mut Vec<(Bytes, Option<Bytes>)>) {
        let old = match value {
            Some(v) => self.store.insert(key.clone(), v),
            None => self.store.remove(&key),
        };
        undo.push((key, old));
    }

    fn rollback(&mut self, undo: Vec<(Bytes, Option<Bytes>)>) {
        for (key, old) in undo.into_iter().rev() {
            match old {
                Some(v) => self.store.insert(key, v),
                None => self.store.remove(&key),
            };
        }
    }

    /// Applies one update inside a transaction, recording how to undo it.
    fn apply(
        &mut self,
        update: &Update,
        undo: &mut Vec<(Bytes, Option<Bytes>)>,
    ) -> Result<(), ErrorReply> {
        match update {
            Update::Set { key, value } => self.write(key.clone(), Some(value.clone()), undo),
            Update::Delete { key } => {
                if !self.store.contains_key(key) {
                    return Err(not_found_key(key));
                }
                self.write(key.clone(), None, undo);
            }
            Update::TestAndSet {
                key,
                expected,
                wanted,
            } => {
                if self.store.get(key) == expected.as_ref() {
                    self.write(key.clone(), wanted.clone(), undo);
                }
            }
            Update::Replace { key, wanted } => self.write(key.clone(), wanted.clone(), undo),
            Update::Sequence(members) => {
                for member in members {
                    self.apply(member, undo)?;
                }
            }
            Update::Nop => {}
            Update::UserFunction { name, .. } => return Err(user_function_not_found(name)),
            Update::Assert { key, expected } => {
                if self.store.get(key) != expected.as_ref() {
                    return Err(assertion_failed(key));
                }
            }
            Update::AssertExists { key } => {
                if !self.store.contains_key(key) {
                    return Err(assertion_failed(key));
                }
            }
            Update::DeletePrefix { prefix } => {
                let keys: Vec<Bytes> = self.prefixed(prefix).map(|(k, _)| k.clone()).collect();
                for key in keys {
                    self.write(key, None, undo);
                }
            }
            Update::AssertRange {
                prefix,
                assertion: RangeAssertion::ContainsExactly(wire_keys),
            } => {
                // The reference reverses the decoded list and compares it with the ascending
                // actual keys (§7.2).
                let expected: Vec<&Bytes> = wire_keys.iter().rev().collect();
                let actual: Vec<&Bytes> = self.prefixed(prefix).map(|(k, _)| k).collect();
                if expected != actual {
                    return Err(err(
                        ErrorCode::AssertionFailed,
                        contains_exactly_failed(&expected, &actual),
                    ));
                }
            }
            Update::MasterSet { .. }
            | Update::AdminSet { .. }
            | Update::SetInterval(_)
            | Update::SetRouting(_)
            | Update::SetRoutingDelta { .. }
            | Update::SyncedSequence(_) => {
                return Err(err(
                    ErrorCode::BadInput,
                    format!(
                        "update tag {} is node-internal and not accepted from clients",
                        update.tag()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Applies updates atomically: all or nothing.
    fn transaction(&mut self, updates: &[Update]) -> Result<(), ErrorReply> {
        let mut undo = Vec::new();
        for update in updates {
            if let Err(e) = self.apply(update, &mut undo) {
                self.rollback(undo);
                return Err(e);
            }
        }
        self.applied += 1;
        Ok(())
    }
}

impl MemoryHandler {
    /// A handler with the given settings and an empty store.
    pub fn new(config: MemoryConfig) -> Self {
        MemoryHandler {
            config,
            state: Mutex::new(State::default()),
        }
    }

    /// A master node of `cluster_id` called `node_name`.
    pub fn master(cluster_id: impl Into<Bytes>, node_name: impl Into<Bytes>) -> Self {
        MemoryHandler::new(MemoryConfig::master(cluster_id, node_name))
    }

    /// Number of keys stored (for tests).
    pub fn len(&self) -> usize {
        self.lock().store.len()
    }

    /// Whether the store is empty (for tests).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of one value (for tests).
    pub fn value(&self, key: &[u8]) -> Option<Bytes> {
        self.lock().store.get(key).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the map half-updated in a way that
        // matters for a test store; keep serving.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn is_master(&self) -> bool {
        self.config.role == Role::Master
    }

    fn not_master(&self) -> ErrorReply {
        let name = match &self.config.role {
            Role::Slave {
                master: Some(master),
            } => master.clone(),
            _ => Bytes::from_static(b"None"),
        };
        err(ErrorCode::NotMaster, name)
    }

    /// The §5/§6 gate for a read with a consistency flag.
    fn check_read(&self, state: &State, consistency: Consistency) -> Result<(), ErrorReply> {
        match consistency {
            Consistency::Consistent if !self.is_master() => Err(self.not_master()),
            Consistency::AtLeast(i) if state.applied < i => {
                Err(err(ErrorCode::InconsistentRead, "store not fresh enough"))
            }
            _ => Ok(()),
        }
    }

    fn check_master(&self) -> Result<(), ErrorReply> {
        if self.is_master() {
            Ok(())
        } else {
            Err(self.not_master())
        }
    }

    fn check_value(&self, value: &[u8]) -> Result<(), ErrorReply> {
        if value.len() >= self.config.max_value_size {
            return Err(err(
                ErrorCode::BadInput,
                format!(
                    "value of {} bytes is not below max_value_size {}",
                    value.len(),
                    self.config.max_value_size
                ),
            ));
        }
        Ok(())
    }

    fn check_update_size(&self, update: &Update) -> Result<(), ErrorReply> {
        let size = update.encoded_len();
        if size > self.config.max_update_size {
            return Err(err(
                ErrorCode::BadInput,
                format!("update has size {size} > {}", self.config.max_update_size),
            ));
        }
        Ok(())
    }

    fn not_on_master(&self) -> Result<(), ErrorReply> {
        if self.is_master() {
            Err(err(
                ErrorCode::NotSupported,
                "Operation cannot be performed on master node",
            ))
        } else {
            Ok(())
        }
    }

    fn sequence(&self, state: &mut State, updates: Vec<Update>) -> OpResult {
        self.check_master()?;
        let update = Update::Sequence(updates);
        self.check_update_size(&update)?;
        state.transaction(std::slice::from_ref(&update))?;
        Ok(Response::Sequence)
    }

    fn statistics(&self, state: &State) -> NamedValue {
        let float = |name: &'static str| NamedValue::new(name, Value::Float(0.0));
        let int = |name: &'static str| NamedValue::new(name, Value::Int(0));
        let stat = |name: &'static str| {
            NamedValue::new(
                name,
                Value::List(vec![
                    NamedValue::new("n", Value::Int(0)),
                    NamedValue::new("min", Value::Float(f64::MAX)),
                    NamedValue::new("max", Value::Float(0.0)),
                    NamedValue::new("m2", Value::Float(0.0)),
                    NamedValue::new("avg", Value::Float(0.0)),
                    NamedValue::new("var", Value::Float(0.0)),
                ]),
            )
        };
        let mut children = vec![float("start"), float("last")];
        children.extend(crate::STATISTICS_SIZE_NAMES.into_iter().map(float));
        children.push(stat("harvest_stats"));
        children.extend(crate::STATISTICS_TIMING_NAMES.into_iter().map(stat));
        children.push(stat("op_info"));
        children.push(float("mem_allocated"));
        for name in [
            "mem_maxrss",
            "mem_minor_collections",
            "mem_major_collections",
            "mem_compactions",
        ] {
            children.push(int(name));
        }
        children.push(NamedValue::new(
            "node_is",
            Value::List(vec![NamedValue::new(
                self.config.node_name.clone(),
                Value::Int64(state.applied),
            )]),
        ));
        NamedValue::new("arakoon_stats", Value::List(children))
    }

    /// Answers one request against the store (what [`Handler::handle`] calls).
    pub fn execute(&self, request: Request) -> OpResult {
        let mut guard = self.lock();
        let state = &mut *guard;
        match request {
            Request::Ping {
                client_id: _,
                cluster_id,
            } => {
                if cluster_id != self.config.cluster_id {
                    // The reference meant E_WRONG_CLUSTER here (§8.1).
                    return Err(err(ErrorCode::WrongCluster, "Wrong cluster"));
                }
                let (maj, min, patch) = self.config.version;
                Ok(Response::Ping(Bytes::from(format!(
                    "Arakoon {maj}.{min}.{patch}"
                ))))
            }
            Request::WhoMaster => Ok(Response::WhoMaster(match &self.config.role {
                Role::Master => Some(self.config.node_name.clone()),
                Role::Slave { master } => master.clone(),
            })),
            Request::Exists { consistency, key } => {
                self.check_read(state, consistency)?;
                Ok(Response::Exists(state.store.contains_key(&key)))
            }
            Request::Get { consistency, key } => {
                self.check_read(state, consistency)?;
                match state.store.get(&key) {
                    Some(v) => Ok(Response::Get(v.clone())),
                    None => Err(ErrorReply::not_found()),
                }
            }
            Request::Set { key, value } => {
                self.check_value(&value)?;
                self.check_master()?;
                state.store.insert(key, value);
                state.applied += 1;
                Ok(Response::Set)
            }
            Request::Delete { key } => {
                self.check_master()?;
                if state.store.remove(&key).is_none() {
                    return Err(not_found_key(&key));
                }
                state.applied += 1;
                Ok(Response::Delete)
            }
            Request::Range(q) => {
                self.check_read(state, q.consistency)?;
                Ok(Response::Range(
                    state.range(&q).map(|(k, _)| k.clone()).collect(),
                ))
            }
            Request::RangeEntries(q) => {
                self.check_read(state, q.consistency)?;
                Ok(Response::RangeEntries(
                    state
                        .range(&q)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ))
            }
            Request::RevRangeEntries(q) => {
                self.check_read(state, q.consistency)?;
                Ok(Response::RevRangeEntries(
                    state
                        .rev_range(&q)
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ))
            }
            Request::PrefixKeys {
                consistency,
                prefix,
                max,
            } => {
                self.check_read(state, consistency)?;
                Ok(Response::PrefixKeys(
                    state
                        .prefixed(&prefix)
                        .take(limit(max))
                        .map(|(k, _)| k.clone())
                        .collect(),
                ))
            }
            Request::TestAndSet {
                key,
                expected,
                wanted,
            } => {
                if let Some(w) = &wanted {
                    self.check_value(w)?;
                }
                self.check_master()?;
                let current = state.store.get(&key).cloned();
                if current == expected {
                    match wanted {
                        Some(w) => state.store.insert(key, w),
                        None => state.store.remove(&key),
                    };
                }
                state.applied += 1;
                Ok(Response::TestAndSet(current))
            }
            Request::Replace { key, wanted } => {
                if let Some(w) = &wanted {
                    self.check_value(w)?;
                }
                self.check_master()?;
                let previous = match wanted {
                    Some(w) => state.store.insert(key, w),
                    None => state.store.remove(&key),
                };
                state.applied += 1;
                Ok(Response::Replace(previous))
            }
            Request::Sequence(updates) => self.sequence(state, updates),
            Request::SyncedSequence(updates) => self
                .sequence(state, updates)
                .map(|_| Response::SyncedSequence),
            Request::MultiGet { consistency, keys } => {
                self.check_read(state, consistency)?;
                // The reference reports the missing key that comes last in wire order.
                if let Some(missing) = keys.iter().rev().find(|k| !state.store.contains_key(*k)) {
                    return Err(not_found_key(missing));
                }
                Ok(Response::MultiGet(
                    keys.iter()
                        .filter_map(|k| state.store.get(k).cloned())
                        .collect(),
                ))
            }
            Request::MultiGetOption { consistency, keys } => {
                self.check_read(state, consistency)?;
                Ok(Response::MultiGetOption(
                    keys.iter().map(|k| state.store.get(k).cloned()).collect(),
                ))
            }
            Request::ExpectProgressPossible => Ok(Response::ExpectProgressPossible(
                self.is_master() && state.applied > 0,
            )),
            Request::Statistics => Ok(Response::Statistics(self.statistics(state))),
            Request::CollapseTlogs { tlogs_to_keep } => {
                if tlogs_to_keep < 1 {
                    return Err(err(
                        ErrorCode::UnknownFailure,
                        format!("{tlogs_to_keep} is not acceptable"),
                    ));
                }
                // Nothing is logged in memory: zero steps to announce.
                Ok(Response::CollapseTlogs(Vec::new()))
            }
            Request::UserFunction { name, .. } => {
                self.check_master()?;
                Err(user_function_not_found(&name))
            }
            Request::Assert {
                consistency,
                key,
                expected,
            } => {
                self.check_read(state, consistency)?;
                if state.store.get(&key) != expected.as_ref() {
                    return Err(assertion_failed(&key));
                }
                Ok(Response::Assert)
            }
            Request::AssertExists { consistency, key } => {
                self.check_read(state, consistency)?;
                if !state.store.contains_key(&key) {
                    return Err(assertion_failed(&key));
                }
                Ok(Response::AssertExists)
            }
            Request::SetInterval(interval) => {
                self.check_master()?;
                state.interval = interval;
                state.applied += 1;
                Ok(Response::SetInterval)
            }
            Request::GetInterval => {
                self.check_master()?;
                Ok(Response::GetInterval(state.interval.clone()))
            }
            Request::GetRouting => {
                self.check_master()?;
                state
                    .routing
                    .clone()
                    .map(Response::GetRouting)
                    .ok_or_else(ErrorReply::not_found)
            }
            Request::SetRouting(routing) => {
                self.check_master()?;
                state.routing = Some(routing);
                state.applied += 1;
                Ok(Response::SetRouting)
            }
            Request::SetRoutingDelta { .. } => Err(err(
                ErrorCode::NotSupported,
                "set_routing_delta is not supported: Rarakoon does not shard",
            )),
            Request::SetNurseryCfg { cluster_id, cfg } => {
                self.check_master()?;
                match state.nursery.iter_mut().find(|(id, _)| *id == cluster_id) {
                    Some((_, existing)) => *existing = cfg,
                    None => state.nursery.push((cluster_id, cfg)),
                }
                state.applied += 1;
                Ok(Response::SetNurseryCfg)
            }
            Request::GetNurseryCfg => {
                self.check_master()?;
                let routing = state.routing.clone().ok_or_else(ErrorReply::not_found)?;
                Ok(Response::GetNurseryCfg(NurseryCfg {
                    routing,
                    clusters: state.nursery.clone(),
                }))
            }
            Request::MigrateRange { interval, updates } => {
                self.check_master()?;
                state.transaction(&updates)?;
                state.interval = interval;
                Ok(Response::MigrateRange)
            }
            Request::GetFringe {
                boundary,
                direction,
            } => {
                let boundary = boundary.unwrap_or_default();
                let entries: Vec<Entry> = if direction == 0 {
                    // Keys below the boundary.
                    between(
                        &state.store,
                        Bound::Unbounded,
                        Bound::Excluded(&boundary[..]),
                    )
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
                } else {
                    between(
                        &state.store,
                        Bound::Included(&boundary[..]),
                        Bound::Unbounded,
                    )
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
                };
                Ok(Response::GetFringe(entries))
            }
            Request::GetKeyCount => {
                self.check_master()?;
                Ok(Response::GetKeyCount(state.store.len() as i64))
            }
            Request::Confirm { key, value } => {
                self.check_value(&value)?;
                self.check_master()?;
                if state.store.get(&key) != Some(&value) {
                    state.store.insert(key, value);
                    state.applied += 1;
                }
                Ok(Response::Confirm)
            }
            Request::DeletePrefix { prefix } => {
                self.check_master()?;
                let keys: Vec<Bytes> = state.prefixed(&prefix).map(|(k, _)| k.clone()).collect();
                for k in &keys {
                    state.store.remove(k);
                }
                state.applied += 1;
                Ok(Response::DeletePrefix(
                    i32::try_from(keys.len()).unwrap_or(i32::MAX),
                ))
            }
            Request::Version => {
                let (major, minor, patch) = self.config.version;
                Ok(Response::Version(VersionInfo {
                    major,
                    minor,
                    patch,
                    info: Bytes::from_static(b"rarakoon-client in-memory handler\n"),
                }))
            }
            Request::CurrentState => Ok(Response::CurrentState(Bytes::from_static(
                if self.is_master() {
                    b"Stable_master"
                } else {
                    b"Slave_steady_state"
                },
            ))),
            Request::Nop => {
                self.check_master()?;
                state.applied += 1;
                Ok(Response::Nop)
            }
            Request::FlushStore => Ok(Response::FlushStore),
            Request::GetTxid => Ok(Response::GetTxid(Consistency::AtLeast(state.applied))),
            Request::DropMaster => Err(err(
                ErrorCode::NotSupported,
                "drop master not supported for singletons",
            )),
            Request::GetDb => {
                self.not_on_master()?;
                Err(err(
                    ErrorCode::NotSupported,
                    "get_db: the in-memory node has no store file",
                ))
            }
            Request::OptimizeDb => {
                self.not_on_master()?;
                Ok(Response::OptimizeDb)
            }
            Request::DefragDb => {
                self.not_on_master()?;
                Ok(Response::DefragDb)
            }
            Request::CopyDbToHead { tlogs_to_keep } => {
                if tlogs_to_keep < 1 {
                    return Err(err(
                        ErrorCode::UnknownFailure,
                        format!("tlogs_to_keep={tlogs_to_keep} is not acceptable"),
                    ));
                }
                self.not_on_master()?;
                Ok(Response::CopyDbToHead)
            }
            Request::UserHook { consistency, name } => {
                self.check_read(state, consistency)?;
                Err(err(ErrorCode::UserHookNotFound, name))
            }
            Request::LastEntries { .. }
            | Request::LastEntries2 { .. }
            | Request::LastEntries3 { .. } => Err(err(
                ErrorCode::NotSupported,
                "node catch-up over the client port is not supported; Rarakoon nodes use their own protocol",
            )),
        }
    }
}

impl Handler for MemoryHandler {
    async fn handle(&self, _connection: &ConnectionInfo, request: Request) -> Outcome {
        Outcome::new(self.execute(request))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn assert_range_failure_message_is_the_references() {
        let handler = MemoryHandler::master("c", "n");
        for key in ["pa", "pc", "q"] {
            handler
                .execute(Request::Set {
                    key: b(key),
                    value: b("v"),
                })
                .unwrap();
        }
        // Wire list [pb, pa]: the reference reverses it to [pa, pb] and shows it as one
        // %S-quoted string.
        let update = Update::AssertRange {
            prefix: b("p"),
            assertion: RangeAssertion::ContainsExactly(vec![b("pb"), b("pa")]),
        };
        let error = handler
            .execute(Request::Sequence(vec![update]))
            .unwrap_err();
        assert_eq!(error.code, ErrorCode::AssertionFailed);
        assert_eq!(
            &error.message[..],
            b"ContainsExactly [ \"pa; pb\" ] actual: pa,pc"
        );
    }

    #[test]
    fn unknown_user_function_name_is_quoted_as_ocaml_does() {
        let handler = MemoryHandler::master("c", "n");
        let error = handler
            .execute(Request::UserFunction {
                name: Bytes::from_static(b"f\"\xe9\n"),
                arg: None,
            })
            .unwrap_err();
        assert_eq!(error.code, ErrorCode::BadInput);
        assert_eq!(
            &error.message[..],
            b"User function \"f\\\"\\233\\n\" could not be found"
        );
    }
}
