//! Updates: the body of SEQUENCE, SYNCED_SEQUENCE and MIGRATE_RANGE (docs/protocol.md §7).
//!
//! An update is `i32 tag` + fields. Sequences hold their members in **execution order** (not
//! reversed, unlike most lists). The assert_range key list is kept exactly in wire order; its
//! meaning (the reference reverses it before comparing) is the server's business.

use bytes::{BufMut, Bytes, BytesMut};

use crate::types::{Interval, Routing};
use crate::wire::{
    ProtocolError, ReadResult, Reader, opt_len, put_bytes, put_len, put_nested, put_opt_bytes,
    str_len,
};

/// One Arakoon update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// Tag 1: store a value.
    Set {
        /// Key.
        key: Bytes,
        /// Value.
        value: Bytes,
    },
    /// Tag 2: delete a key; a missing key fails the sequence with `05` + key.
    Delete {
        /// Key.
        key: Bytes,
    },
    /// Tag 3: store `wanted` if the current value equals `expected`.
    TestAndSet {
        /// Key.
        key: Bytes,
        /// Expected current value (None = absent).
        expected: Option<Bytes>,
        /// New value (None = delete).
        wanted: Option<Bytes>,
    },
    /// Tag 4: internal master lease record.
    MasterSet {
        /// Master node name.
        node: Bytes,
        /// Lease start (written as 0).
        lease: i64,
    },
    /// Tag 5: an atomic sequence, members in execution order.
    Sequence(Vec<Update>),
    /// Tag 6: nothing.
    Nop,
    /// Tag 7: run a server-side user function.
    UserFunction {
        /// Function name.
        name: Bytes,
        /// Argument.
        arg: Option<Bytes>,
    },
    /// Tag 8: Some(v) = value must equal v; None = key must be absent.
    Assert {
        /// Key.
        key: Bytes,
        /// Expected value.
        expected: Option<Bytes>,
    },
    /// Tag 9: internal admin key.
    AdminSet {
        /// Key.
        key: Bytes,
        /// Value (None = delete).
        value: Option<Bytes>,
    },
    /// Tag 10: internal nursery interval.
    SetInterval(Interval),
    /// Tag 11: internal nursery routing.
    SetRouting(Routing),
    /// Tag 12: internal nursery routing delta.
    SetRoutingDelta {
        /// Left cluster.
        left: Bytes,
        /// Separator.
        separator: Bytes,
        /// Right cluster.
        right: Bytes,
    },
    /// Tag 13: internal synced sequence.
    SyncedSequence(Vec<Update>),
    /// Tag 14: delete every key with this prefix.
    DeletePrefix {
        /// Prefix.
        prefix: Bytes,
    },
    /// Tag 15: the key must exist.
    AssertExists {
        /// Key.
        key: Bytes,
    },
    /// Tag 16: store `wanted` unconditionally (None = delete).
    Replace {
        /// Key.
        key: Bytes,
        /// New value.
        wanted: Option<Bytes>,
    },
    /// Tag 17: assert the set of keys under a prefix.
    AssertRange {
        /// Prefix.
        prefix: Bytes,
        /// The assertion.
        assertion: RangeAssertion,
    },
}

/// The assertion of an assert_range update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeAssertion {
    /// Kind 1: the keys under the prefix are exactly these. The list is kept in **wire
    /// order**: the reference reverses it and compares with the ascending actual keys, so it
    /// passes when the wire list is descending (docs/protocol.md §7.2).
    ContainsExactly(Vec<Bytes>),
}

impl Update {
    /// The wire tag.
    pub fn tag(&self) -> i32 {
        match self {
            Update::Set { .. } => 1,
            Update::Delete { .. } => 2,
            Update::TestAndSet { .. } => 3,
            Update::MasterSet { .. } => 4,
            Update::Sequence(_) => 5,
            Update::Nop => 6,
            Update::UserFunction { .. } => 7,
            Update::Assert { .. } => 8,
            Update::AdminSet { .. } => 9,
            Update::SetInterval(_) => 10,
            Update::SetRouting(_) => 11,
            Update::SetRoutingDelta { .. } => 12,
            Update::SyncedSequence(_) => 13,
            Update::DeletePrefix { .. } => 14,
            Update::AssertExists { .. } => 15,
            Update::Replace { .. } => 16,
            Update::AssertRange { .. } => 17,
        }
    }

    /// Whether a client may send this update inside a sequence. Tags 4 and 9–13 are
    /// node-internal; docs/protocol.md §7.2 recommends refusing them with `0x26`.
    pub fn is_client_update(&self) -> bool {
        match self {
            Update::MasterSet { .. }
            | Update::AdminSet { .. }
            | Update::SetInterval(_)
            | Update::SetRouting(_)
            | Update::SetRoutingDelta { .. }
            | Update::SyncedSequence(_) => false,
            Update::Sequence(members) => members.iter().all(Update::is_client_update),
            _ => true,
        }
    }

    /// The encoded size in bytes (the reference's update-size check, §7.2), computed without
    /// encoding (a server checks it for every sequence it receives).
    pub fn encoded_len(&self) -> usize {
        const TAG: usize = 4;
        let fields = match self {
            Update::Set { key, value } => str_len(key) + str_len(value),
            Update::Delete { key }
            | Update::AssertExists { key }
            | Update::DeletePrefix { prefix: key } => str_len(key),
            Update::TestAndSet {
                key,
                expected,
                wanted,
            } => str_len(key) + opt_len(expected.as_ref()) + opt_len(wanted.as_ref()),
            Update::MasterSet { node, .. } => str_len(node) + 8,
            Update::Sequence(members) | Update::SyncedSequence(members) => {
                4 + members.iter().map(Update::encoded_len).sum::<usize>()
            }
            Update::Nop => 0,
            Update::UserFunction {
                name: key,
                arg: value,
            }
            | Update::Assert {
                key,
                expected: value,
            }
            | Update::AdminSet { key, value }
            | Update::Replace { key, wanted: value } => str_len(key) + opt_len(value.as_ref()),
            Update::SetInterval(interval) => interval.encoded_len(),
            Update::SetRouting(routing) => routing.encoded_len(),
            Update::SetRoutingDelta {
                left,
                separator,
                right,
            } => str_len(left) + str_len(separator) + str_len(right),
            Update::AssertRange { prefix, assertion } => {
                let RangeAssertion::ContainsExactly(keys) = assertion;
                str_len(prefix) + 4 + 4 + keys.iter().map(|k| str_len(k)).sum::<usize>()
            }
        };
        TAG + fields
    }

    /// Appends the wire encoding.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_i32_le(self.tag());
        match self {
            Update::Set { key, value } => {
                put_bytes(out, key);
                put_bytes(out, value);
            }
            Update::Delete { key }
            | Update::AssertExists { key }
            | Update::DeletePrefix { prefix: key } => put_bytes(out, key),
            Update::TestAndSet {
                key,
                expected,
                wanted,
            } => {
                put_bytes(out, key);
                put_opt_bytes(out, expected.as_ref());
                put_opt_bytes(out, wanted.as_ref());
            }
            Update::MasterSet { node, lease } => {
                put_bytes(out, node);
                out.put_i64_le(*lease);
            }
            Update::Sequence(members) | Update::SyncedSequence(members) => {
                put_len(out, members.len());
                for m in members {
                    m.encode(out);
                }
            }
            Update::Nop => {}
            Update::UserFunction { name, arg } => {
                put_bytes(out, name);
                put_opt_bytes(out, arg.as_ref());
            }
            Update::Assert { key, expected } => {
                put_bytes(out, key);
                put_opt_bytes(out, expected.as_ref());
            }
            Update::AdminSet { key, value } => {
                put_bytes(out, key);
                put_opt_bytes(out, value.as_ref());
            }
            Update::SetInterval(interval) => interval.encode(out),
            Update::SetRouting(routing) => routing.encode(out),
            Update::SetRoutingDelta {
                left,
                separator,
                right,
            } => {
                put_bytes(out, left);
                put_bytes(out, separator);
                put_bytes(out, right);
            }
            Update::Replace { key, wanted } => {
                put_bytes(out, key);
                put_opt_bytes(out, wanted.as_ref());
            }
            Update::AssertRange { prefix, assertion } => {
                put_bytes(out, prefix);
                match assertion {
                    RangeAssertion::ContainsExactly(keys) => {
                        out.put_i32_le(1);
                        put_len(out, keys.len());
                        for k in keys {
                            put_bytes(out, k);
                        }
                    }
                }
            }
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> ReadResult<Update> {
        r.deeper("update", |r| {
            let offset = r.current_offset();
            let tag = r.i32()?;
            Ok(match tag {
                1 => Update::Set {
                    key: r.bytes("set key")?,
                    value: r.bytes("set value")?,
                },
                2 => Update::Delete {
                    key: r.bytes("delete key")?,
                },
                3 => Update::TestAndSet {
                    key: r.bytes("test_and_set key")?,
                    expected: r.opt_bytes("test_and_set expected")?,
                    wanted: r.opt_bytes("test_and_set wanted")?,
                },
                4 => Update::MasterSet {
                    node: r.bytes("master_set node")?,
                    lease: r.i64()?,
                },
                5 => Update::Sequence(r.list("sequence updates", 4, Update::decode)?),
                6 => Update::Nop,
                7 => Update::UserFunction {
                    name: r.bytes("user_function name")?,
                    arg: r.opt_bytes("user_function arg")?,
                },
                8 => Update::Assert {
                    key: r.bytes("assert key")?,
                    expected: r.opt_bytes("assert expected")?,
                },
                9 => Update::AdminSet {
                    key: r.bytes("admin_set key")?,
                    value: r.opt_bytes("admin_set value")?,
                },
                10 => Update::SetInterval(Interval::decode(r)?),
                11 => Update::SetRouting(Routing::decode(r)?),
                12 => Update::SetRoutingDelta {
                    left: r.bytes("routing delta left")?,
                    separator: r.bytes("routing delta separator")?,
                    right: r.bytes("routing delta right")?,
                },
                13 => {
                    Update::SyncedSequence(r.list("synced sequence updates", 4, Update::decode)?)
                }
                14 => Update::DeletePrefix {
                    prefix: r.bytes("delete_prefix prefix")?,
                },
                15 => Update::AssertExists {
                    key: r.bytes("assert_exists key")?,
                },
                16 => Update::Replace {
                    key: r.bytes("replace key")?,
                    wanted: r.opt_bytes("replace wanted")?,
                },
                17 => {
                    let prefix = r.bytes("assert_range prefix")?;
                    let kind_offset = r.current_offset();
                    match r.i32()? {
                        1 => Update::AssertRange {
                            prefix,
                            assertion: RangeAssertion::ContainsExactly(r.list(
                                "assert_range keys",
                                4,
                                |r| r.bytes("assert_range key"),
                            )?),
                        },
                        kind => {
                            return Err(ProtocolError::UnknownRangeAssertion {
                                offset: kind_offset,
                                kind,
                            }
                            .into());
                        }
                    }
                }
                tag => return Err(ProtocolError::UnknownUpdateTag { offset, tag }.into()),
            })
        })
    }
}

/// Encodes a sequence body: a `str` holding one tag-5 update (the framing of SEQUENCE,
/// SYNCED_SEQUENCE and MIGRATE_RANGE).
pub(crate) fn put_sequence_body(out: &mut BytesMut, updates: &[Update]) {
    put_nested(out, |out| {
        out.put_i32_le(5);
        put_len(out, updates.len());
        for u in updates {
            u.encode(out);
        }
    });
}

/// Decodes a sequence body. A complete body whose outer update is not tag 5 is
/// [`ProtocolError::NotASequence`]; bytes after the update inside the string are ignored, as in
/// the reference.
pub(crate) fn read_sequence_body(r: &mut Reader<'_>) -> ReadResult<Vec<Update>> {
    r.nested("sequence body", |r| match Update::decode(r)? {
        Update::Sequence(updates) => Ok(updates),
        other => Err(ProtocolError::NotASequence { tag: other.tag() }.into()),
    })
}
