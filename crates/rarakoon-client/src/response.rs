//! Responses (server → client): one variant per opcode holding the success payload, the
//! error frame, and their encoder and bounded decoder (docs/protocol.md §4 and §8).
//!
//! Lists are held in **logical order** and the §2.1 wire-order convention is applied here and
//! only here: range, range_entries, prefix_keys, multi_get and get_fringe travel reversed;
//! rev_range_entries travels reversed too (logical descending, wire ascending);
//! multi_get_option travels as is.
//!
//! A response's shape depends on the request, so decoding needs the opcode being answered.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error_code::{ErrorCode, ErrorReply};
use crate::opcode::Opcode;
use crate::types::{Consistency, Interval, NamedValue, NurseryCfg, Routing, VersionInfo};
use crate::wire::{
    ReadResult, Reader, put_bool, put_bytes, put_consistency, put_len, put_nested, put_opt_bytes,
};

/// A key/value pair.
pub type Entry = (Bytes, Bytes);

/// A success answer; one variant per opcode.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// 0x01: `"Arakoon <maj>.<min>.<patch>"`.
    Ping(Bytes),
    /// 0x02: the master's name, if known.
    WhoMaster(Option<Bytes>),
    /// 0x07.
    Exists(bool),
    /// 0x08: the value.
    Get(Bytes),
    /// 0x09.
    Set,
    /// 0x0A.
    Delete,
    /// 0x0B: keys, ascending.
    Range(Vec<Bytes>),
    /// 0x0C: keys, ascending.
    PrefixKeys(Vec<Bytes>),
    /// 0x0D: the value before the call.
    TestAndSet(Option<Bytes>),
    /// 0x0E: the stream header (`i32 0`) was sent; the stream itself is not modelled.
    LastEntries,
    /// 0x0F: entries, ascending.
    RangeEntries(Vec<Entry>),
    /// 0x10.
    Sequence,
    /// 0x11: values, `values[i]` = value of request key `i` (wire order).
    MultiGet(Vec<Bytes>),
    /// 0x12.
    ExpectProgressPossible(bool),
    /// 0x13: the `arakoon_stats` tree.
    Statistics(NamedValue),
    /// 0x14: one opaque progress value per announced step (may be empty).
    CollapseTlogs(Vec<i64>),
    /// 0x15: the function's result.
    UserFunction(Option<Bytes>),
    /// 0x16.
    Assert,
    /// 0x17.
    SetInterval,
    /// 0x18.
    GetRouting(Routing),
    /// 0x19.
    SetRouting,
    /// 0x1A.
    GetKeyCount(i64),
    /// 0x1B: the store image.
    GetDb(Bytes),
    /// 0x1C.
    Confirm,
    /// 0x1D: entries in scan order.
    GetFringe(Vec<Entry>),
    /// 0x1E.
    GetInterval(Interval),
    /// 0x1F.
    SetNurseryCfg,
    /// 0x20.
    GetNurseryCfg(NurseryCfg),
    /// 0x21.
    SetRoutingDelta,
    /// 0x22.
    MigrateRange,
    /// 0x23: entries, descending.
    RevRangeEntries(Vec<Entry>),
    /// 0x24.
    SyncedSequence,
    /// 0x25.
    OptimizeDb,
    /// 0x26.
    DefragDb,
    /// 0x27: number of keys deleted.
    DeletePrefix(i32),
    /// 0x28.
    Version(VersionInfo),
    /// 0x29.
    AssertExists,
    /// 0x30.
    DropMaster,
    /// 0x31: `values[i]` = value of request key `i` (wire order), None if absent.
    MultiGetOption(Vec<Option<Bytes>>),
    /// 0x32: free text.
    CurrentState(Bytes),
    /// 0x33: the previous value.
    Replace(Option<Bytes>),
    /// 0x40: stream header sent; the stream itself is not modelled.
    LastEntries2,
    /// 0x41.
    Nop,
    /// 0x42.
    FlushStore,
    /// 0x43: always [`Consistency::AtLeast`] with the last applied index.
    GetTxid(Consistency),
    /// 0x44.
    CopyDbToHead,
    /// 0x45: the hook took the connection over; nothing is written for it.
    UserHook,
    /// 0x46: stream header sent; the stream itself is not modelled.
    LastEntries3,
}

/// One answer frame: success or an error frame.
pub type Reply = Result<Response, ErrorReply>;

fn put_keys_reversed(out: &mut BytesMut, keys: &[Bytes]) {
    put_len(out, keys.len());
    for k in keys.iter().rev() {
        put_bytes(out, k);
    }
}

fn put_entries_reversed(out: &mut BytesMut, entries: &[Entry]) {
    put_len(out, entries.len());
    for (k, v) in entries.iter().rev() {
        put_bytes(out, k);
        put_bytes(out, v);
    }
}

fn read_keys_reversed(r: &mut Reader<'_>, field: &'static str) -> ReadResult<Vec<Bytes>> {
    let mut keys = r.list(field, 4, |r| r.bytes(field))?;
    keys.reverse();
    Ok(keys)
}

fn read_entries_reversed(r: &mut Reader<'_>, field: &'static str) -> ReadResult<Vec<Entry>> {
    let mut entries = r.list(field, 8, |r| Ok((r.bytes(field)?, r.bytes(field)?)))?;
    entries.reverse();
    Ok(entries)
}

impl Response {
    /// The opcode this response answers.
    pub fn opcode(&self) -> Opcode {
        match self {
            Response::Ping(_) => Opcode::Ping,
            Response::WhoMaster(_) => Opcode::WhoMaster,
            Response::Exists(_) => Opcode::Exists,
            Response::Get(_) => Opcode::Get,
            Response::Set => Opcode::Set,
            Response::Delete => Opcode::Delete,
            Response::Range(_) => Opcode::Range,
            Response::PrefixKeys(_) => Opcode::PrefixKeys,
            Response::TestAndSet(_) => Opcode::TestAndSet,
            Response::LastEntries => Opcode::LastEntries,
            Response::RangeEntries(_) => Opcode::RangeEntries,
            Response::Sequence => Opcode::Sequence,
            Response::MultiGet(_) => Opcode::MultiGet,
            Response::ExpectProgressPossible(_) => Opcode::ExpectProgressPossible,
            Response::Statistics(_) => Opcode::Statistics,
            Response::CollapseTlogs(_) => Opcode::CollapseTlogs,
            Response::UserFunction(_) => Opcode::UserFunction,
            Response::Assert => Opcode::Assert,
            Response::SetInterval => Opcode::SetInterval,
            Response::GetRouting(_) => Opcode::GetRouting,
            Response::SetRouting => Opcode::SetRouting,
            Response::GetKeyCount(_) => Opcode::GetKeyCount,
            Response::GetDb(_) => Opcode::GetDb,
            Response::Confirm => Opcode::Confirm,
            Response::GetFringe(_) => Opcode::GetFringe,
            Response::GetInterval(_) => Opcode::GetInterval,
            Response::SetNurseryCfg => Opcode::SetNurseryCfg,
            Response::GetNurseryCfg(_) => Opcode::GetNurseryCfg,
            Response::SetRoutingDelta => Opcode::SetRoutingDelta,
            Response::MigrateRange => Opcode::MigrateRange,
            Response::RevRangeEntries(_) => Opcode::RevRangeEntries,
            Response::SyncedSequence => Opcode::SyncedSequence,
            Response::OptimizeDb => Opcode::OptimizeDb,
            Response::DefragDb => Opcode::DefragDb,
            Response::DeletePrefix(_) => Opcode::DeletePrefix,
            Response::Version(_) => Opcode::Version,
            Response::AssertExists => Opcode::AssertExists,
            Response::DropMaster => Opcode::DropMaster,
            Response::MultiGetOption(_) => Opcode::MultiGetOption,
            Response::CurrentState(_) => Opcode::CurrentState,
            Response::Replace(_) => Opcode::Replace,
            Response::LastEntries2 => Opcode::LastEntries2,
            Response::Nop => Opcode::Nop,
            Response::FlushStore => Opcode::FlushStore,
            Response::GetTxid(_) => Opcode::GetTxid,
            Response::CopyDbToHead => Opcode::CopyDbToHead,
            Response::UserHook => Opcode::UserHook,
            Response::LastEntries3 => Opcode::LastEntries3,
        }
    }

    /// Appends the success frame(s): `i32 0` + payload in wire order.
    pub fn encode(&self, out: &mut BytesMut) {
        if matches!(self, Response::UserHook) {
            // The hook speaks its own protocol; the server writes nothing of its own.
            return;
        }
        out.put_i32_le(0);
        match self {
            Response::Set
            | Response::Delete
            | Response::LastEntries
            | Response::Sequence
            | Response::Assert
            | Response::SetInterval
            | Response::SetRouting
            | Response::Confirm
            | Response::SetNurseryCfg
            | Response::SetRoutingDelta
            | Response::MigrateRange
            | Response::SyncedSequence
            | Response::OptimizeDb
            | Response::DefragDb
            | Response::AssertExists
            | Response::DropMaster
            | Response::LastEntries2
            | Response::Nop
            | Response::FlushStore
            | Response::CopyDbToHead
            | Response::UserHook
            | Response::LastEntries3 => {}
            Response::Ping(s) | Response::Get(s) | Response::CurrentState(s) => put_bytes(out, s),
            Response::WhoMaster(o)
            | Response::TestAndSet(o)
            | Response::UserFunction(o)
            | Response::Replace(o) => put_opt_bytes(out, o.as_ref()),
            Response::Exists(b) | Response::ExpectProgressPossible(b) => put_bool(out, *b),
            Response::Range(keys) | Response::PrefixKeys(keys) | Response::MultiGet(keys) => {
                put_keys_reversed(out, keys)
            }
            Response::RangeEntries(e) | Response::RevRangeEntries(e) | Response::GetFringe(e) => {
                put_entries_reversed(out, e)
            }
            Response::Statistics(stats) => stats.encode_nested(out),
            Response::CollapseTlogs(steps) => {
                put_len(out, steps.len());
                for step in steps {
                    out.put_i32_le(0);
                    out.put_i64_le(*step);
                }
            }
            Response::GetRouting(routing) => put_nested(out, |out| routing.encode(out)),
            Response::GetKeyCount(n) => out.put_i64_le(*n),
            Response::GetDb(image) => {
                out.put_i64_le(image.len() as i64);
                out.put_slice(image);
            }
            Response::GetInterval(interval) => interval.encode(out),
            Response::GetNurseryCfg(cfg) => put_nested(out, |out| cfg.encode(out)),
            Response::DeletePrefix(n) => out.put_i32_le(*n),
            Response::Version(v) => {
                out.put_i32_le(v.major);
                out.put_i32_le(v.minor);
                out.put_i32_le(v.patch);
                put_bytes(out, &v.info);
            }
            Response::MultiGetOption(values) => {
                put_len(out, values.len());
                for v in values {
                    put_opt_bytes(out, v.as_ref());
                }
            }
            Response::GetTxid(c) => put_consistency(out, *c),
        }
    }

    /// Decodes one answer to a request with `opcode`.
    pub(crate) fn decode(opcode: Opcode, r: &mut Reader<'_>) -> ReadResult<Reply> {
        let rc = r.i32()?;
        if rc != 0 {
            return decode_error_body(rc, r).map(Err);
        }
        let response = match opcode {
            Opcode::Ping => Response::Ping(r.bytes("ping answer")?),
            Opcode::WhoMaster => Response::WhoMaster(r.opt_bytes("master name")?),
            Opcode::Exists => Response::Exists(r.bool("exists answer")?),
            Opcode::Get => Response::Get(r.bytes("value")?),
            Opcode::Set => Response::Set,
            Opcode::Delete => Response::Delete,
            Opcode::Range => Response::Range(read_keys_reversed(r, "range keys")?),
            Opcode::PrefixKeys => Response::PrefixKeys(read_keys_reversed(r, "prefix keys")?),
            Opcode::TestAndSet => Response::TestAndSet(r.opt_bytes("test_and_set answer")?),
            Opcode::LastEntries => Response::LastEntries,
            Opcode::RangeEntries => {
                Response::RangeEntries(read_entries_reversed(r, "range entries")?)
            }
            Opcode::Sequence => Response::Sequence,
            Opcode::MultiGet => Response::MultiGet(read_keys_reversed(r, "multi_get values")?),
            Opcode::ExpectProgressPossible => {
                Response::ExpectProgressPossible(r.bool("expect_progress_possible answer")?)
            }
            Opcode::Statistics => Response::Statistics(r.nested("statistics", NamedValue::decode)?),
            Opcode::CollapseTlogs => {
                let n = r.count("collapse steps", 12)?;
                let mut steps = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    let rc = r.i32()?;
                    if rc != 0 {
                        return decode_error_body(rc, r).map(Err);
                    }
                    steps.push(r.i64()?);
                }
                Response::CollapseTlogs(steps)
            }
            Opcode::UserFunction => Response::UserFunction(r.opt_bytes("user_function answer")?),
            Opcode::Assert => Response::Assert,
            Opcode::SetInterval => Response::SetInterval,
            Opcode::GetRouting => Response::GetRouting(r.nested("routing", Routing::decode)?),
            Opcode::SetRouting => Response::SetRouting,
            Opcode::GetKeyCount => Response::GetKeyCount(r.i64()?),
            Opcode::GetDb => {
                let len = r.length64("get_db image")?;
                Response::GetDb(r.raw(len)?)
            }
            Opcode::Confirm => Response::Confirm,
            Opcode::GetFringe => Response::GetFringe(read_entries_reversed(r, "fringe")?),
            Opcode::GetInterval => Response::GetInterval(Interval::decode(r)?),
            Opcode::SetNurseryCfg => Response::SetNurseryCfg,
            Opcode::GetNurseryCfg => {
                Response::GetNurseryCfg(r.nested("nursery cfg", NurseryCfg::decode)?)
            }
            Opcode::SetRoutingDelta => Response::SetRoutingDelta,
            Opcode::MigrateRange => Response::MigrateRange,
            Opcode::RevRangeEntries => {
                Response::RevRangeEntries(read_entries_reversed(r, "rev_range entries")?)
            }
            Opcode::SyncedSequence => Response::SyncedSequence,
            Opcode::OptimizeDb => Response::OptimizeDb,
            Opcode::DefragDb => Response::DefragDb,
            Opcode::DeletePrefix => Response::DeletePrefix(r.i32()?),
            Opcode::Version => Response::Version(VersionInfo {
                major: r.i32()?,
                minor: r.i32()?,
                patch: r.i32()?,
                info: r.bytes("version info")?,
            }),
            Opcode::AssertExists => Response::AssertExists,
            Opcode::DropMaster => Response::DropMaster,
            Opcode::MultiGetOption => {
                Response::MultiGetOption(r.list("multi_get_option values", 1, |r| {
                    r.opt_bytes("multi_get_option value")
                })?)
            }
            Opcode::CurrentState => Response::CurrentState(r.bytes("current state")?),
            Opcode::Replace => Response::Replace(r.opt_bytes("replace answer")?),
            Opcode::LastEntries2 => Response::LastEntries2,
            Opcode::Nop => Response::Nop,
            Opcode::FlushStore => Response::FlushStore,
            Opcode::GetTxid => Response::GetTxid(r.consistency()?),
            Opcode::CopyDbToHead => Response::CopyDbToHead,
            // Only reached when the caller decided a zero rc means the hook took over.
            Opcode::UserHook => Response::UserHook,
            Opcode::LastEntries3 => Response::LastEntries3,
        };
        Ok(Ok(response))
    }
}

fn decode_error_body(rc: i32, r: &mut Reader<'_>) -> ReadResult<ErrorReply> {
    let code = ErrorCode::from_code(rc);
    let message = if code == ErrorCode::NoMagic {
        // E_NO_MAGIC travels without a message (docs/protocol.md §3).
        Bytes::new()
    } else {
        r.bytes("error message")?
    };
    Ok(ErrorReply { code, message })
}

impl ErrorReply {
    /// Appends the error frame: `i32 rc` + `str message` (E_NO_MAGIC: the rc alone).
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_i32_le(self.code.code());
        if self.code != ErrorCode::NoMagic {
            put_bytes(out, &self.message);
        }
    }
}

/// Appends a whole reply.
pub fn encode_reply(reply: &Reply, out: &mut BytesMut) {
    match reply {
        Ok(response) => response.encode(out),
        Err(error) => error.encode(out),
    }
}
