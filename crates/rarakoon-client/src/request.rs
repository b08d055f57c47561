//! Requests (client → server): one variant per opcode, its encoder and its bounded decoder
//! (docs/protocol.md §3 and §8). Lists inside requests are kept in wire order.

use bytes::{BufMut, Bytes, BytesMut};

use crate::opcode::{MAGIC_MASK, Opcode};
use crate::types::{ClientCfg, Consistency, Interval, RangeQuery, Routing};
use crate::update::{Update, put_sequence_body, read_sequence_body};
use crate::wire::{
    ProtocolError, ReadResult, Reader, put_bytes, put_consistency, put_len, put_nested,
    put_opt_bytes,
};

/// One request, as it travels after the command word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// 0x01: check the connection; the node answers its version string.
    Ping {
        /// Free text identifying the client (logged only).
        client_id: Bytes,
        /// The cluster the client believes it talks to.
        cluster_id: Bytes,
    },
    /// 0x02: who is the master?
    WhoMaster,
    /// 0x07: does the key exist?
    Exists {
        /// Read consistency.
        consistency: Consistency,
        /// Key.
        key: Bytes,
    },
    /// 0x08: the value of a key.
    Get {
        /// Read consistency.
        consistency: Consistency,
        /// Key.
        key: Bytes,
    },
    /// 0x09: store a value.
    Set {
        /// Key.
        key: Bytes,
        /// Value.
        value: Bytes,
    },
    /// 0x0A: delete a key.
    Delete {
        /// Key.
        key: Bytes,
    },
    /// 0x0B: keys in a range.
    Range(RangeQuery),
    /// 0x0C: keys with a prefix.
    PrefixKeys {
        /// Read consistency.
        consistency: Consistency,
        /// Prefix.
        prefix: Bytes,
        /// At most this many keys; negative = no limit.
        max: i32,
    },
    /// 0x0D: compare and swap; answers the value before the call.
    TestAndSet {
        /// Key.
        key: Bytes,
        /// Expected value (None = absent).
        expected: Option<Bytes>,
        /// New value (None = delete).
        wanted: Option<Bytes>,
    },
    /// 0x0E: deprecated node catch-up.
    LastEntries {
        /// First index wanted.
        start_i: i64,
    },
    /// 0x0F: entries in a range.
    RangeEntries(RangeQuery),
    /// 0x10: an atomic sequence of updates.
    Sequence(Vec<Update>),
    /// 0x11: several values; fails if one key is missing.
    MultiGet {
        /// Read consistency.
        consistency: Consistency,
        /// Keys, in wire order.
        keys: Vec<Bytes>,
    },
    /// 0x12: can the cluster make progress?
    ExpectProgressPossible,
    /// 0x13: node statistics.
    Statistics,
    /// 0x14: collapse the log, keeping this many log files.
    CollapseTlogs {
        /// Log files to keep.
        tlogs_to_keep: i32,
    },
    /// 0x15: run a server-side user function.
    UserFunction {
        /// Function name.
        name: Bytes,
        /// Argument.
        arg: Option<Bytes>,
    },
    /// 0x16: assert a key's value (None = absent).
    Assert {
        /// Read consistency.
        consistency: Consistency,
        /// Key.
        key: Bytes,
        /// Expected value.
        expected: Option<Bytes>,
    },
    /// 0x17: nursery: set the interval.
    SetInterval(Interval),
    /// 0x18: nursery: get the routing.
    GetRouting,
    /// 0x19: nursery: set the routing.
    SetRouting(Routing),
    /// 0x1A: number of user keys.
    GetKeyCount,
    /// 0x1B: download the store image.
    GetDb,
    /// 0x1C: set unless the value is already there.
    Confirm {
        /// Key.
        key: Bytes,
        /// Value.
        value: Bytes,
    },
    /// 0x1D: nursery: entries beyond a boundary.
    GetFringe {
        /// Boundary key.
        boundary: Option<Bytes>,
        /// 0 = keys below the boundary, anything else = keys at or above it.
        direction: i32,
    },
    /// 0x1E: nursery: get the interval.
    GetInterval,
    /// 0x1F: nursery: set a cluster's configuration.
    SetNurseryCfg {
        /// Cluster id.
        cluster_id: Bytes,
        /// Its configuration.
        cfg: ClientCfg,
    },
    /// 0x20: nursery: get the nursery configuration.
    GetNurseryCfg,
    /// 0x21: nursery: change the routing.
    SetRoutingDelta {
        /// Left cluster.
        left: Bytes,
        /// Separator.
        separator: Bytes,
        /// Right cluster.
        right: Bytes,
    },
    /// 0x22: nursery: set an interval and apply updates.
    MigrateRange {
        /// New interval.
        interval: Interval,
        /// Updates, in execution order.
        updates: Vec<Update>,
    },
    /// 0x23: entries in a range, scanning downwards.
    RevRangeEntries(RangeQuery),
    /// 0x24: a sequence whose log is fsynced before the answer.
    SyncedSequence(Vec<Update>),
    /// 0x25: optimise the store (non-master only).
    OptimizeDb,
    /// 0x26: defragment the store (non-master only).
    DefragDb,
    /// 0x27: delete every key with a prefix; answers the count.
    DeletePrefix {
        /// Prefix.
        prefix: Bytes,
    },
    /// 0x28: the node's version.
    Version,
    /// 0x29: assert a key exists.
    AssertExists {
        /// Read consistency.
        consistency: Consistency,
        /// Key.
        key: Bytes,
    },
    /// 0x30: the master steps down.
    DropMaster,
    /// 0x31: several optional values.
    MultiGetOption {
        /// Read consistency.
        consistency: Consistency,
        /// Keys, in wire order.
        keys: Vec<Bytes>,
    },
    /// 0x32: the node's consensus state, as text.
    CurrentState,
    /// 0x33: store unconditionally; answers the previous value.
    Replace {
        /// Key.
        key: Bytes,
        /// New value (None = delete).
        wanted: Option<Bytes>,
    },
    /// 0x40: node catch-up stream.
    LastEntries2 {
        /// First index wanted.
        start_i: i64,
    },
    /// 0x41: commit a no-op.
    Nop,
    /// 0x42: flush pending store writes.
    FlushStore,
    /// 0x43: the index of the last applied update.
    GetTxid,
    /// 0x44: write a head snapshot and prune the log.
    CopyDbToHead {
        /// Log files to keep.
        tlogs_to_keep: i32,
    },
    /// 0x45: hand the connection to a named server-side hook.
    UserHook {
        /// Read consistency.
        consistency: Consistency,
        /// Hook name.
        name: Bytes,
    },
    /// 0x46: node catch-up stream (1.9).
    LastEntries3 {
        /// First index wanted.
        start_i: i64,
    },
}

impl Request {
    /// The opcode of this request.
    pub fn opcode(&self) -> Opcode {
        match self {
            Request::Ping { .. } => Opcode::Ping,
            Request::WhoMaster => Opcode::WhoMaster,
            Request::Exists { .. } => Opcode::Exists,
            Request::Get { .. } => Opcode::Get,
            Request::Set { .. } => Opcode::Set,
            Request::Delete { .. } => Opcode::Delete,
            Request::Range(_) => Opcode::Range,
            Request::PrefixKeys { .. } => Opcode::PrefixKeys,
            Request::TestAndSet { .. } => Opcode::TestAndSet,
            Request::LastEntries { .. } => Opcode::LastEntries,
            Request::RangeEntries(_) => Opcode::RangeEntries,
            Request::Sequence(_) => Opcode::Sequence,
            Request::MultiGet { .. } => Opcode::MultiGet,
            Request::ExpectProgressPossible => Opcode::ExpectProgressPossible,
            Request::Statistics => Opcode::Statistics,
            Request::CollapseTlogs { .. } => Opcode::CollapseTlogs,
            Request::UserFunction { .. } => Opcode::UserFunction,
            Request::Assert { .. } => Opcode::Assert,
            Request::SetInterval(_) => Opcode::SetInterval,
            Request::GetRouting => Opcode::GetRouting,
            Request::SetRouting(_) => Opcode::SetRouting,
            Request::GetKeyCount => Opcode::GetKeyCount,
            Request::GetDb => Opcode::GetDb,
            Request::Confirm { .. } => Opcode::Confirm,
            Request::GetFringe { .. } => Opcode::GetFringe,
            Request::GetInterval => Opcode::GetInterval,
            Request::SetNurseryCfg { .. } => Opcode::SetNurseryCfg,
            Request::GetNurseryCfg => Opcode::GetNurseryCfg,
            Request::SetRoutingDelta { .. } => Opcode::SetRoutingDelta,
            Request::MigrateRange { .. } => Opcode::MigrateRange,
            Request::RevRangeEntries(_) => Opcode::RevRangeEntries,
            Request::SyncedSequence(_) => Opcode::SyncedSequence,
            Request::OptimizeDb => Opcode::OptimizeDb,
            Request::DefragDb => Opcode::DefragDb,
            Request::DeletePrefix { .. } => Opcode::DeletePrefix,
            Request::Version => Opcode::Version,
            Request::AssertExists { .. } => Opcode::AssertExists,
            Request::DropMaster => Opcode::DropMaster,
            Request::MultiGetOption { .. } => Opcode::MultiGetOption,
            Request::CurrentState => Opcode::CurrentState,
            Request::Replace { .. } => Opcode::Replace,
            Request::LastEntries2 { .. } => Opcode::LastEntries2,
            Request::Nop => Opcode::Nop,
            Request::FlushStore => Opcode::FlushStore,
            Request::GetTxid => Opcode::GetTxid,
            Request::CopyDbToHead { .. } => Opcode::CopyDbToHead,
            Request::UserHook { .. } => Opcode::UserHook,
            Request::LastEntries3 { .. } => Opcode::LastEntries3,
        }
    }

    /// The read consistency the request carries, if it is a read with a `cons` flag.
    pub fn consistency(&self) -> Option<Consistency> {
        match self {
            Request::Exists { consistency, .. }
            | Request::Get { consistency, .. }
            | Request::PrefixKeys { consistency, .. }
            | Request::MultiGet { consistency, .. }
            | Request::Assert { consistency, .. }
            | Request::AssertExists { consistency, .. }
            | Request::MultiGetOption { consistency, .. }
            | Request::UserHook { consistency, .. } => Some(*consistency),
            Request::Range(q) | Request::RangeEntries(q) | Request::RevRangeEntries(q) => {
                Some(q.consistency)
            }
            _ => None,
        }
    }

    /// Appends the command word and fields.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u32_le(self.opcode().command_word());
        match self {
            Request::Ping {
                client_id,
                cluster_id,
            } => {
                put_bytes(out, client_id);
                put_bytes(out, cluster_id);
            }
            Request::WhoMaster
            | Request::ExpectProgressPossible
            | Request::Statistics
            | Request::GetRouting
            | Request::GetKeyCount
            | Request::GetDb
            | Request::GetInterval
            | Request::GetNurseryCfg
            | Request::OptimizeDb
            | Request::DefragDb
            | Request::Version
            | Request::DropMaster
            | Request::CurrentState
            | Request::Nop
            | Request::FlushStore
            | Request::GetTxid => {}
            Request::Exists { consistency, key }
            | Request::Get { consistency, key }
            | Request::AssertExists { consistency, key }
            | Request::UserHook {
                consistency,
                name: key,
            } => {
                put_consistency(out, *consistency);
                put_bytes(out, key);
            }
            Request::Set { key, value } | Request::Confirm { key, value } => {
                put_bytes(out, key);
                put_bytes(out, value);
            }
            Request::Delete { key } | Request::DeletePrefix { prefix: key } => put_bytes(out, key),
            Request::Range(q) | Request::RangeEntries(q) | Request::RevRangeEntries(q) => {
                q.encode(out)
            }
            Request::PrefixKeys {
                consistency,
                prefix,
                max,
            } => {
                put_consistency(out, *consistency);
                put_bytes(out, prefix);
                out.put_i32_le(*max);
            }
            Request::TestAndSet {
                key,
                expected,
                wanted,
            } => {
                put_bytes(out, key);
                put_opt_bytes(out, expected.as_ref());
                put_opt_bytes(out, wanted.as_ref());
            }
            Request::LastEntries { start_i }
            | Request::LastEntries2 { start_i }
            | Request::LastEntries3 { start_i } => out.put_i64_le(*start_i),
            Request::Sequence(updates) | Request::SyncedSequence(updates) => {
                put_sequence_body(out, updates)
            }
            Request::MultiGet { consistency, keys }
            | Request::MultiGetOption { consistency, keys } => {
                put_consistency(out, *consistency);
                put_len(out, keys.len());
                for k in keys {
                    put_bytes(out, k);
                }
            }
            Request::CollapseTlogs { tlogs_to_keep } | Request::CopyDbToHead { tlogs_to_keep } => {
                out.put_i32_le(*tlogs_to_keep)
            }
            Request::UserFunction { name, arg } => {
                put_bytes(out, name);
                put_opt_bytes(out, arg.as_ref());
            }
            Request::Assert {
                consistency,
                key,
                expected,
            } => {
                put_consistency(out, *consistency);
                put_bytes(out, key);
                put_opt_bytes(out, expected.as_ref());
            }
            Request::SetInterval(interval) => interval.encode(out),
            Request::SetRouting(routing) => put_nested(out, |out| routing.encode(out)),
            Request::GetFringe {
                boundary,
                direction,
            } => {
                put_opt_bytes(out, boundary.as_ref());
                out.put_i32_le(*direction);
            }
            Request::SetNurseryCfg { cluster_id, cfg } => {
                put_bytes(out, cluster_id);
                cfg.encode(out);
            }
            Request::SetRoutingDelta {
                left,
                separator,
                right,
            } => {
                put_bytes(out, left);
                put_bytes(out, separator);
                put_bytes(out, right);
            }
            Request::MigrateRange { interval, updates } => {
                interval.encode(out);
                put_sequence_body(out, updates);
            }
            Request::Replace { key, wanted } => {
                put_bytes(out, key);
                put_opt_bytes(out, wanted.as_ref());
            }
        }
    }

    /// Reads the command word: `Ok(opcode)`, or the reference's error for bad magic or an
    /// unknown opcode.
    pub(crate) fn decode_command_word(r: &mut Reader<'_>) -> ReadResult<Opcode> {
        let word = r.u32()?;
        if word & MAGIC_MASK != MAGIC_MASK {
            return Err(ProtocolError::BadMagic { word }.into());
        }
        let code = (word & 0xFFFF) as u16;
        Opcode::from_code(code).ok_or_else(|| ProtocolError::UnknownOpcode { opcode: code }.into())
    }

    /// Decodes one whole request (command word included).
    pub(crate) fn decode(r: &mut Reader<'_>) -> ReadResult<Request> {
        let opcode = Self::decode_command_word(r)?;
        Self::decode_fields(opcode, r)
    }

    fn decode_fields(opcode: Opcode, r: &mut Reader<'_>) -> ReadResult<Request> {
        Ok(match opcode {
            Opcode::Ping => Request::Ping {
                client_id: r.bytes("ping client_id")?,
                cluster_id: r.bytes("ping cluster_id")?,
            },
            Opcode::WhoMaster => Request::WhoMaster,
            Opcode::Exists => Request::Exists {
                consistency: r.consistency()?,
                key: r.bytes("exists key")?,
            },
            Opcode::Get => Request::Get {
                consistency: r.consistency()?,
                key: r.bytes("get key")?,
            },
            Opcode::Set => Request::Set {
                key: r.bytes("set key")?,
                value: r.bytes("set value")?,
            },
            Opcode::Delete => Request::Delete {
                key: r.bytes("delete key")?,
            },
            Opcode::Range => Request::Range(RangeQuery::decode(r)?),
            Opcode::PrefixKeys => Request::PrefixKeys {
                consistency: r.consistency()?,
                prefix: r.bytes("prefix_keys prefix")?,
                max: r.i32()?,
            },
            Opcode::TestAndSet => Request::TestAndSet {
                key: r.bytes("test_and_set key")?,
                expected: r.opt_bytes("test_and_set expected")?,
                wanted: r.opt_bytes("test_and_set wanted")?,
            },
            Opcode::LastEntries => Request::LastEntries { start_i: r.i64()? },
            Opcode::RangeEntries => Request::RangeEntries(RangeQuery::decode(r)?),
            Opcode::Sequence => Request::Sequence(read_sequence_body(r)?),
            Opcode::MultiGet => Request::MultiGet {
                consistency: r.consistency()?,
                keys: r.list("multi_get keys", 4, |r| r.bytes("multi_get key"))?,
            },
            Opcode::ExpectProgressPossible => Request::ExpectProgressPossible,
            Opcode::Statistics => Request::Statistics,
            Opcode::CollapseTlogs => Request::CollapseTlogs {
                tlogs_to_keep: r.i32()?,
            },
            Opcode::UserFunction => Request::UserFunction {
                name: r.bytes("user_function name")?,
                arg: r.opt_bytes("user_function arg")?,
            },
            Opcode::Assert => Request::Assert {
                consistency: r.consistency()?,
                key: r.bytes("assert key")?,
                expected: r.opt_bytes("assert expected")?,
            },
            Opcode::SetInterval => Request::SetInterval(Interval::decode(r)?),
            Opcode::GetRouting => Request::GetRouting,
            Opcode::SetRouting => Request::SetRouting(r.nested("set_routing", Routing::decode)?),
            Opcode::GetKeyCount => Request::GetKeyCount,
            Opcode::GetDb => Request::GetDb,
            Opcode::Confirm => Request::Confirm {
                key: r.bytes("confirm key")?,
                value: r.bytes("confirm value")?,
            },
            Opcode::GetFringe => Request::GetFringe {
                boundary: r.opt_bytes("get_fringe boundary")?,
                direction: r.i32()?,
            },
            Opcode::GetInterval => Request::GetInterval,
            Opcode::SetNurseryCfg => Request::SetNurseryCfg {
                cluster_id: r.bytes("set_nursery_cfg cluster_id")?,
                cfg: ClientCfg::decode(r)?,
            },
            Opcode::GetNurseryCfg => Request::GetNurseryCfg,
            Opcode::SetRoutingDelta => Request::SetRoutingDelta {
                left: r.bytes("routing delta left")?,
                separator: r.bytes("routing delta separator")?,
                right: r.bytes("routing delta right")?,
            },
            Opcode::MigrateRange => Request::MigrateRange {
                interval: Interval::decode(r)?,
                updates: read_sequence_body(r)?,
            },
            Opcode::RevRangeEntries => Request::RevRangeEntries(RangeQuery::decode(r)?),
            Opcode::SyncedSequence => Request::SyncedSequence(read_sequence_body(r)?),
            Opcode::OptimizeDb => Request::OptimizeDb,
            Opcode::DefragDb => Request::DefragDb,
            Opcode::DeletePrefix => Request::DeletePrefix {
                prefix: r.bytes("delete_prefix prefix")?,
            },
            Opcode::Version => Request::Version,
            Opcode::AssertExists => Request::AssertExists {
                consistency: r.consistency()?,
                key: r.bytes("assert_exists key")?,
            },
            Opcode::DropMaster => Request::DropMaster,
            Opcode::MultiGetOption => Request::MultiGetOption {
                consistency: r.consistency()?,
                keys: r.list("multi_get_option keys", 4, |r| {
                    r.bytes("multi_get_option key")
                })?,
            },
            Opcode::CurrentState => Request::CurrentState,
            Opcode::Replace => Request::Replace {
                key: r.bytes("replace key")?,
                wanted: r.opt_bytes("replace wanted")?,
            },
            Opcode::LastEntries2 => Request::LastEntries2 { start_i: r.i64()? },
            Opcode::Nop => Request::Nop,
            Opcode::FlushStore => Request::FlushStore,
            Opcode::GetTxid => Request::GetTxid,
            Opcode::CopyDbToHead => Request::CopyDbToHead {
                tlogs_to_keep: r.i32()?,
            },
            Opcode::UserHook => Request::UserHook {
                consistency: r.consistency()?,
                name: r.bytes("user_hook name")?,
            },
            Opcode::LastEntries3 => Request::LastEntries3 { start_i: r.i64()? },
        })
    }
}

/// The connection prologue (docs/protocol.md §1.1): magic, version 1, cluster id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prologue {
    /// The cluster id the client expects.
    pub cluster_id: Bytes,
}

impl Prologue {
    /// Appends the 12 + n prologue bytes.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u32_le(crate::opcode::MAGIC);
        out.put_i32_le(crate::opcode::VERSION);
        put_bytes(out, &self.cluster_id);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> ReadResult<Prologue> {
        let magic = r.u32()?;
        let version = r.i32()?;
        if magic != crate::opcode::MAGIC || version != crate::opcode::VERSION {
            return Err(ProtocolError::BadPrologue { magic, version }.into());
        }
        Ok(Prologue {
            cluster_id: r.bytes("prologue cluster_id")?,
        })
    }
}
