//! Value types that appear inside requests and responses: the consistency flag (§5), range
//! bounds (§8.2), nursery structures (§8.5), statistics named values (§9) and version info.
//! Each type owns its encoder and (bounded) decoder so requests and responses share them.

use bytes::{BufMut, Bytes, BytesMut};

use crate::wire::{
    ProtocolError, ReadResult, Reader, opt_len, put_bool, put_bytes, put_len, put_nested,
    put_opt_bytes, str_len,
};

/// Read consistency (the `cons` flag, docs/protocol.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Consistency {
    /// Served only by the master with a valid lease (`00`).
    #[default]
    Consistent,
    /// Any node, from its local store: a "dirty read" (`01`).
    NoGuarantees,
    /// Any node whose store has applied at least this index (`02` + `i64`).
    AtLeast(i64),
}

/// The bounds of RANGE, RANGE_ENTRIES and REV_RANGE_ENTRIES (docs/protocol.md §8.2).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RangeQuery {
    /// Read consistency.
    pub consistency: Consistency,
    /// First bound (low for range, high for rev_range); `None` = open.
    pub first: Option<Bytes>,
    /// Whether `first` itself is included.
    pub first_inclusive: bool,
    /// Last bound (high for range, low for rev_range); `None` = open.
    pub last: Option<Bytes>,
    /// Whether `last` itself is included.
    pub last_inclusive: bool,
    /// At most this many results; negative = no limit.
    pub max: i32,
}

impl RangeQuery {
    pub(crate) fn encode(&self, out: &mut BytesMut) {
        crate::wire::put_consistency(out, self.consistency);
        put_opt_bytes(out, self.first.as_ref());
        put_bool(out, self.first_inclusive);
        put_opt_bytes(out, self.last.as_ref());
        put_bool(out, self.last_inclusive);
        out.put_i32_le(self.max);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> ReadResult<Self> {
        Ok(RangeQuery {
            consistency: r.consistency()?,
            first: r.opt_bytes("range first")?,
            first_inclusive: r.bool("range first_inclusive")?,
            last: r.opt_bytes("range last")?,
            last_inclusive: r.bool("range last_inclusive")?,
            max: r.i32()?,
        })
    }
}

/// A nursery interval: four optional bounds (docs/protocol.md §8.5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Interval {
    /// Public begin (inclusive).
    pub public_begin: Option<Bytes>,
    /// Public end (exclusive).
    pub public_end: Option<Bytes>,
    /// Private begin.
    pub private_begin: Option<Bytes>,
    /// Private end.
    pub private_end: Option<Bytes>,
}

impl Interval {
    /// Whether `key` lies in the public interval (`begin <= key < end`, None = open).
    pub fn contains(&self, key: &[u8]) -> bool {
        self.public_begin.as_deref().is_none_or(|b| b <= key)
            && self.public_end.as_deref().is_none_or(|e| key < e)
    }

    /// Encoded size in bytes.
    pub(crate) fn encoded_len(&self) -> usize {
        [
            &self.public_begin,
            &self.public_end,
            &self.private_begin,
            &self.private_end,
        ]
        .into_iter()
        .map(|bound| opt_len(bound.as_ref()))
        .sum()
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        put_opt_bytes(out, self.public_begin.as_ref());
        put_opt_bytes(out, self.public_end.as_ref());
        put_opt_bytes(out, self.private_begin.as_ref());
        put_opt_bytes(out, self.private_end.as_ref());
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> ReadResult<Self> {
        Ok(Interval {
            public_begin: r.opt_bytes("interval public begin")?,
            public_end: r.opt_bytes("interval public end")?,
            private_begin: r.opt_bytes("interval private begin")?,
            private_end: r.opt_bytes("interval private end")?,
        })
    }
}

/// A nursery routing tree (docs/protocol.md §8.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routing {
    /// A leaf: every key goes to this cluster.
    Cluster(Bytes),
    /// Keys below `separator` go left, the others right.
    Branch {
        /// Routing for keys < separator.
        left: Box<Routing>,
        /// The separator key.
        separator: Bytes,
        /// Routing for keys >= separator.
        right: Box<Routing>,
    },
}

impl Routing {
    /// Encoded size in bytes (unframed).
    pub(crate) fn encoded_len(&self) -> usize {
        match self {
            Routing::Cluster(id) => 1 + str_len(id),
            Routing::Branch {
                left,
                separator,
                right,
            } => 1 + str_len(separator) + left.encoded_len() + right.encoded_len(),
        }
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        match self {
            Routing::Cluster(id) => {
                put_bool(out, true);
                put_bytes(out, id);
            }
            Routing::Branch {
                left,
                separator,
                right,
            } => {
                put_bool(out, false);
                put_bytes(out, separator);
                left.encode(out);
                right.encode(out);
            }
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> ReadResult<Self> {
        r.deeper("routing", |r| {
            if r.bool("routing leaf flag")? {
                Ok(Routing::Cluster(r.bytes("routing cluster id")?))
            } else {
                let separator = r.bytes("routing separator")?;
                let left = Box::new(Routing::decode(r)?);
                let right = Box::new(Routing::decode(r)?);
                Ok(Routing::Branch {
                    left,
                    separator,
                    right,
                })
            }
        })
    }
}

/// One node of a nursery client configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddress {
    /// Node name.
    pub name: Bytes,
    /// IP addresses, as the wire carries them.
    pub ips: Vec<Bytes>,
    /// Client port.
    pub client_port: i32,
}

/// A client configuration of one cluster: its nodes (docs/protocol.md §8.5 "client cfg").
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientCfg {
    /// The nodes, in wire order.
    pub nodes: Vec<NodeAddress>,
}

impl ClientCfg {
    pub(crate) fn encode(&self, out: &mut BytesMut) {
        put_len(out, self.nodes.len());
        for node in &self.nodes {
            put_bytes(out, &node.name);
            put_len(out, node.ips.len());
            for ip in &node.ips {
                put_bytes(out, ip);
            }
            out.put_i32_le(node.client_port);
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> ReadResult<Self> {
        let nodes = r.list("client cfg nodes", 12, |r| {
            Ok(NodeAddress {
                name: r.bytes("client cfg node name")?,
                ips: r.list("client cfg ips", 4, |r| r.bytes("client cfg ip"))?,
                client_port: r.i32()?,
            })
        })?;
        Ok(ClientCfg { nodes })
    }
}

/// The nursery configuration: routing plus each cluster's client configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NurseryCfg {
    /// The routing tree.
    pub routing: Routing,
    /// Cluster id and configuration of each cluster.
    pub clusters: Vec<(Bytes, ClientCfg)>,
}

impl NurseryCfg {
    pub(crate) fn encode(&self, out: &mut BytesMut) {
        self.routing.encode(out);
        put_len(out, self.clusters.len());
        for (id, cfg) in &self.clusters {
            put_bytes(out, id);
            cfg.encode(out);
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> ReadResult<Self> {
        let routing = Routing::decode(r)?;
        let clusters = r.list("nursery clusters", 8, |r| {
            Ok((r.bytes("nursery cluster id")?, ClientCfg::decode(r)?))
        })?;
        Ok(NurseryCfg { routing, clusters })
    }
}

/// Arakoon's names for the per-operation timing records of the statistics payload
/// (docs/protocol.md §9), in wire order; they stand between `harvest_stats` and `op_info`.
pub const STATISTICS_TIMING_NAMES: [&str; 13] = [
    "set_info",
    "get_info",
    "del_info",
    "seq_info",
    "mget_info",
    "mget_option_info",
    "tas_info",
    "replace_info",
    "range_info",
    "range_entries_info",
    "rev_range_entries_info",
    "prefix_info",
    "delete_prefix_info",
];

/// Arakoon's names for the size averages of the statistics payload (docs/protocol.md §9), in wire
/// order; they follow `start` and `last`.
pub const STATISTICS_SIZE_NAMES: [&str; 7] = [
    "avg_set_size",
    "avg_get_size",
    "avg_range_size",
    "avg_range_entries_size",
    "avg_rev_range_entries_size",
    "avg_prefix_size",
    "avg_del_prefix_size",
];

/// A statistics named value (docs/protocol.md §9).
#[derive(Debug, Clone, PartialEq)]
pub struct NamedValue {
    /// Its name.
    pub name: Bytes,
    /// Its value.
    pub value: Value,
}

/// The value of a [`NamedValue`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Type 1: `i32`.
    Int(i32),
    /// Type 2: `i64`.
    Int64(i64),
    /// Type 3: `f64`.
    Float(f64),
    /// Type 4: `str`.
    Str(Bytes),
    /// Type 5: a list of named values, in logical order (not reversed).
    List(Vec<NamedValue>),
}

impl NamedValue {
    /// A named value.
    pub fn new(name: impl Into<Bytes>, value: Value) -> Self {
        NamedValue {
            name: name.into(),
            value,
        }
    }

    /// The child called `name`, if this is a list.
    pub fn get(&self, name: &str) -> Option<&NamedValue> {
        match &self.value {
            Value::List(children) => children.iter().find(|c| c.name == name.as_bytes()),
            _ => None,
        }
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        let tag = match &self.value {
            Value::Int(_) => 1,
            Value::Int64(_) => 2,
            Value::Float(_) => 3,
            Value::Str(_) => 4,
            Value::List(_) => 5,
        };
        out.put_i32_le(tag);
        put_bytes(out, &self.name);
        match &self.value {
            Value::Int(v) => out.put_i32_le(*v),
            Value::Int64(v) => out.put_i64_le(*v),
            Value::Float(v) => out.put_u64_le(v.to_bits()),
            Value::Str(s) => put_bytes(out, s),
            Value::List(children) => {
                put_len(out, children.len());
                for c in children {
                    c.encode(out);
                }
            }
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> ReadResult<Self> {
        r.deeper("statistics", |r| {
            let offset = r.current_offset();
            let kind = r.i32()?;
            let name = r.bytes("statistics name")?;
            let value = match kind {
                1 => Value::Int(r.i32()?),
                2 => Value::Int64(r.i64()?),
                3 => Value::Float(r.f64()?),
                4 => Value::Str(r.bytes("statistics string")?),
                5 => Value::List(r.list("statistics list", 8, NamedValue::decode)?),
                kind => return Err(ProtocolError::UnknownNamedValue { offset, kind }.into()),
            };
            Ok(NamedValue { name, value })
        })
    }

    pub(crate) fn encode_nested(&self, out: &mut BytesMut) {
        put_nested(out, |out| self.encode(out));
    }
}

/// The VERSION (0x28) answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// Major version.
    pub major: i32,
    /// Minor version.
    pub minor: i32,
    /// Patch version.
    pub patch: i32,
    /// Free text (the reference: revision, compile date, machine).
    pub info: Bytes,
}
