//! Property tests of the codecs: every request and response round-trips through encode and
//! the incremental decoder (fed in random-sized pieces), and random or mutated bytes never
//! panic either decoder nor make it hold more than its frame budget.
//! Case counts follow PROPTEST_CASES (proptest's default: 256).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use rarakoon_client::{
    ClientCfg, ClientCodec, Consistency, Entry, ErrorCode, ErrorReply, Interval, Limits,
    NamedValue, NodeAddress, NurseryCfg, Opcode, Prologue, RangeAssertion, RangeQuery, Reply,
    Request, Response, Routing, ServerCodec, ServerFrame, Update, Value, VersionInfo, encode_reply,
};
use tokio_util::codec::{Decoder, Encoder};

fn bytes() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..12).prop_map(Bytes::from)
}

fn opt_bytes() -> impl Strategy<Value = Option<Bytes>> {
    prop::option::of(bytes())
}

fn keys() -> impl Strategy<Value = Vec<Bytes>> {
    prop::collection::vec(bytes(), 0..5)
}

fn consistency() -> impl Strategy<Value = Consistency> {
    prop_oneof![
        Just(Consistency::Consistent),
        Just(Consistency::NoGuarantees),
        any::<i64>().prop_map(Consistency::AtLeast),
    ]
}

fn interval() -> impl Strategy<Value = Interval> {
    (opt_bytes(), opt_bytes(), opt_bytes(), opt_bytes()).prop_map(|(a, b, c, d)| Interval {
        public_begin: a,
        public_end: b,
        private_begin: c,
        private_end: d,
    })
}

fn routing() -> impl Strategy<Value = Routing> {
    bytes()
        .prop_map(Routing::Cluster)
        .prop_recursive(4, 16, 2, |inner| {
            (inner.clone(), bytes(), inner).prop_map(|(l, s, r)| Routing::Branch {
                left: Box::new(l),
                separator: s,
                right: Box::new(r),
            })
        })
}

fn client_cfg() -> impl Strategy<Value = ClientCfg> {
    prop::collection::vec(
        (bytes(), keys(), any::<i32>()).prop_map(|(name, ips, client_port)| NodeAddress {
            name,
            ips,
            client_port,
        }),
        0..3,
    )
    .prop_map(|nodes| ClientCfg { nodes })
}

fn update() -> impl Strategy<Value = Update> {
    let leaf = prop_oneof![
        (bytes(), bytes()).prop_map(|(key, value)| Update::Set { key, value }),
        bytes().prop_map(|key| Update::Delete { key }),
        (bytes(), opt_bytes(), opt_bytes()).prop_map(|(key, expected, wanted)| {
            Update::TestAndSet {
                key,
                expected,
                wanted,
            }
        }),
        (bytes(), any::<i64>()).prop_map(|(node, lease)| Update::MasterSet { node, lease }),
        Just(Update::Nop),
        (bytes(), opt_bytes()).prop_map(|(name, arg)| Update::UserFunction { name, arg }),
        (bytes(), opt_bytes()).prop_map(|(key, expected)| Update::Assert { key, expected }),
        (bytes(), opt_bytes()).prop_map(|(key, value)| Update::AdminSet { key, value }),
        interval().prop_map(Update::SetInterval),
        routing().prop_map(Update::SetRouting),
    ];
    let leaf = prop_oneof![
        leaf,
        (bytes(), bytes(), bytes()).prop_map(|(left, separator, right)| {
            Update::SetRoutingDelta {
                left,
                separator,
                right,
            }
        }),
        bytes().prop_map(|prefix| Update::DeletePrefix { prefix }),
        bytes().prop_map(|key| Update::AssertExists { key }),
        (bytes(), opt_bytes()).prop_map(|(key, wanted)| Update::Replace { key, wanted }),
        (bytes(), keys()).prop_map(|(prefix, keys)| Update::AssertRange {
            prefix,
            assertion: RangeAssertion::ContainsExactly(keys),
        }),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Update::Sequence),
            prop::collection::vec(inner, 0..4).prop_map(Update::SyncedSequence),
        ]
    })
}

fn updates() -> impl Strategy<Value = Vec<Update>> {
    prop::collection::vec(update(), 0..4)
}

fn named_value() -> impl Strategy<Value = NamedValue> {
    let leaf = prop_oneof![
        any::<i32>().prop_map(Value::Int),
        any::<i64>().prop_map(Value::Int64),
        // NaN is excluded only because it is not equal to itself.
        any::<f64>()
            .prop_filter("not NaN", |f| !f.is_nan())
            .prop_map(Value::Float),
        bytes().prop_map(Value::Str),
    ];
    let value = leaf.prop_recursive(3, 16, 4, |inner| {
        prop::collection::vec((bytes(), inner), 0..4).prop_map(|children| {
            Value::List(
                children
                    .into_iter()
                    .map(|(name, value)| NamedValue { name, value })
                    .collect(),
            )
        })
    });
    (bytes(), value).prop_map(|(name, value)| NamedValue { name, value })
}

/// A pool of field values from which a request or response of any opcode is built.
#[derive(Debug, Clone)]
struct Fields {
    key: Bytes,
    value: Bytes,
    opt1: Option<Bytes>,
    opt2: Option<Bytes>,
    consistency: Consistency,
    flags: (bool, bool),
    n32: i32,
    n64: i64,
    keys: Vec<Bytes>,
    updates: Vec<Update>,
    interval: Interval,
    routing: Routing,
    cfg: ClientCfg,
    entries: Vec<Entry>,
    opts: Vec<Option<Bytes>>,
    named: NamedValue,
    steps: Vec<i64>,
}

fn fields() -> impl Strategy<Value = Fields> {
    (
        (
            bytes(),
            bytes(),
            opt_bytes(),
            opt_bytes(),
            consistency(),
            any::<(bool, bool)>(),
            any::<i32>(),
            any::<i64>(),
            keys(),
        ),
        (
            updates(),
            interval(),
            routing(),
            client_cfg(),
            prop::collection::vec((bytes(), bytes()), 0..4),
            prop::collection::vec(opt_bytes(), 0..4),
            named_value(),
            prop::collection::vec(any::<i64>(), 0..4),
        ),
    )
        .prop_map(
            |(
                (key, value, opt1, opt2, consistency, flags, n32, n64, keys),
                (updates, interval, routing, cfg, entries, opts, named, steps),
            )| Fields {
                key,
                value,
                opt1,
                opt2,
                consistency,
                flags,
                n32,
                n64,
                keys,
                updates,
                interval,
                routing,
                cfg,
                entries,
                opts,
                named,
                steps,
            },
        )
}

fn range_query(f: &Fields) -> RangeQuery {
    RangeQuery {
        consistency: f.consistency,
        first: f.opt1.clone(),
        first_inclusive: f.flags.0,
        last: f.opt2.clone(),
        last_inclusive: f.flags.1,
        max: f.n32,
    }
}

fn request(opcode: Opcode, f: Fields) -> Request {
    let c = f.consistency;
    match opcode {
        Opcode::Ping => Request::Ping {
            client_id: f.key,
            cluster_id: f.value,
        },
        Opcode::WhoMaster => Request::WhoMaster,
        Opcode::Exists => Request::Exists {
            consistency: c,
            key: f.key,
        },
        Opcode::Get => Request::Get {
            consistency: c,
            key: f.key,
        },
        Opcode::Set => Request::Set {
            key: f.key,
            value: f.value,
        },
        Opcode::Delete => Request::Delete { key: f.key },
        Opcode::Range => Request::Range(range_query(&f)),
        Opcode::PrefixKeys => Request::PrefixKeys {
            consistency: c,
            prefix: f.key,
            max: f.n32,
        },
        Opcode::TestAndSet => Request::TestAndSet {
            key: f.key,
            expected: f.opt1,
            wanted: f.opt2,
        },
        Opcode::LastEntries => Request::LastEntries { start_i: f.n64 },
        Opcode::RangeEntries => Request::RangeEntries(range_query(&f)),
        Opcode::Sequence => Request::Sequence(f.updates),
        Opcode::MultiGet => Request::MultiGet {
            consistency: c,
            keys: f.keys,
        },
        Opcode::ExpectProgressPossible => Request::ExpectProgressPossible,
        Opcode::Statistics => Request::Statistics,
        Opcode::CollapseTlogs => Request::CollapseTlogs {
            tlogs_to_keep: f.n32,
        },
        Opcode::UserFunction => Request::UserFunction {
            name: f.key,
            arg: f.opt1,
        },
        Opcode::Assert => Request::Assert {
            consistency: c,
            key: f.key,
            expected: f.opt1,
        },
        Opcode::SetInterval => Request::SetInterval(f.interval),
        Opcode::GetRouting => Request::GetRouting,
        Opcode::SetRouting => Request::SetRouting(f.routing),
        Opcode::GetKeyCount => Request::GetKeyCount,
        Opcode::GetDb => Request::GetDb,
        Opcode::Confirm => Request::Confirm {
            key: f.key,
            value: f.value,
        },
        Opcode::GetFringe => Request::GetFringe {
            boundary: f.opt1,
            direction: f.n32,
        },
        Opcode::GetInterval => Request::GetInterval,
        Opcode::SetNurseryCfg => Request::SetNurseryCfg {
            cluster_id: f.key,
            cfg: f.cfg,
        },
        Opcode::GetNurseryCfg => Request::GetNurseryCfg,
        Opcode::SetRoutingDelta => Request::SetRoutingDelta {
            left: f.key,
            separator: f.value,
            right: f.opt1.unwrap_or_default(),
        },
        Opcode::MigrateRange => Request::MigrateRange {
            interval: f.interval,
            updates: f.updates,
        },
        Opcode::RevRangeEntries => Request::RevRangeEntries(range_query(&f)),
        Opcode::SyncedSequence => Request::SyncedSequence(f.updates),
        Opcode::OptimizeDb => Request::OptimizeDb,
        Opcode::DefragDb => Request::DefragDb,
        Opcode::DeletePrefix => Request::DeletePrefix { prefix: f.key },
        Opcode::Version => Request::Version,
        Opcode::AssertExists => Request::AssertExists {
            consistency: c,
            key: f.key,
        },
        Opcode::DropMaster => Request::DropMaster,
        Opcode::MultiGetOption => Request::MultiGetOption {
            consistency: c,
            keys: f.keys,
        },
        Opcode::CurrentState => Request::CurrentState,
        Opcode::Replace => Request::Replace {
            key: f.key,
            wanted: f.opt1,
        },
        Opcode::LastEntries2 => Request::LastEntries2 { start_i: f.n64 },
        Opcode::Nop => Request::Nop,
        Opcode::FlushStore => Request::FlushStore,
        Opcode::GetTxid => Request::GetTxid,
        Opcode::CopyDbToHead => Request::CopyDbToHead {
            tlogs_to_keep: f.n32,
        },
        Opcode::UserHook => Request::UserHook {
            consistency: c,
            name: f.key,
        },
        Opcode::LastEntries3 => Request::LastEntries3 { start_i: f.n64 },
    }
}

fn response(opcode: Opcode, f: Fields) -> Response {
    match opcode {
        Opcode::Ping => Response::Ping(f.value),
        Opcode::WhoMaster => Response::WhoMaster(f.opt1),
        Opcode::Exists => Response::Exists(f.flags.0),
        Opcode::Get => Response::Get(f.value),
        Opcode::Set => Response::Set,
        Opcode::Delete => Response::Delete,
        Opcode::Range => Response::Range(f.keys),
        Opcode::PrefixKeys => Response::PrefixKeys(f.keys),
        Opcode::TestAndSet => Response::TestAndSet(f.opt1),
        Opcode::LastEntries => Response::LastEntries,
        Opcode::RangeEntries => Response::RangeEntries(f.entries),
        Opcode::Sequence => Response::Sequence,
        Opcode::MultiGet => Response::MultiGet(f.keys),
        Opcode::ExpectProgressPossible => Response::ExpectProgressPossible(f.flags.1),
        Opcode::Statistics => Response::Statistics(f.named),
        Opcode::CollapseTlogs => Response::CollapseTlogs(f.steps),
        Opcode::UserFunction => Response::UserFunction(f.opt1),
        Opcode::Assert => Response::Assert,
        Opcode::SetInterval => Response::SetInterval,
        Opcode::GetRouting => Response::GetRouting(f.routing),
        Opcode::SetRouting => Response::SetRouting,
        Opcode::GetKeyCount => Response::GetKeyCount(f.n64),
        Opcode::GetDb => Response::GetDb(f.value),
        Opcode::Confirm => Response::Confirm,
        Opcode::GetFringe => Response::GetFringe(f.entries),
        Opcode::GetInterval => Response::GetInterval(f.interval),
        Opcode::SetNurseryCfg => Response::SetNurseryCfg,
        Opcode::GetNurseryCfg => Response::GetNurseryCfg(NurseryCfg {
            routing: f.routing,
            clusters: vec![(f.key, f.cfg)],
        }),
        Opcode::SetRoutingDelta => Response::SetRoutingDelta,
        Opcode::MigrateRange => Response::MigrateRange,
        Opcode::RevRangeEntries => Response::RevRangeEntries(f.entries),
        Opcode::SyncedSequence => Response::SyncedSequence,
        Opcode::OptimizeDb => Response::OptimizeDb,
        Opcode::DefragDb => Response::DefragDb,
        Opcode::DeletePrefix => Response::DeletePrefix(f.n32),
        Opcode::Version => Response::Version(VersionInfo {
            major: f.n32,
            minor: f.n32.wrapping_add(1),
            patch: f.n32.wrapping_sub(1),
            info: f.value,
        }),
        Opcode::AssertExists => Response::AssertExists,
        Opcode::DropMaster => Response::DropMaster,
        Opcode::MultiGetOption => Response::MultiGetOption(f.opts),
        Opcode::CurrentState => Response::CurrentState(f.value),
        Opcode::Replace => Response::Replace(f.opt2),
        Opcode::LastEntries2 => Response::LastEntries2,
        Opcode::Nop => Response::Nop,
        Opcode::FlushStore => Response::FlushStore,
        Opcode::GetTxid => Response::GetTxid(f.consistency),
        Opcode::CopyDbToHead => Response::CopyDbToHead,
        Opcode::UserHook => Response::UserHook,
        Opcode::LastEntries3 => Response::LastEntries3,
    }
}

fn opcode() -> impl Strategy<Value = Opcode> {
    prop::sample::select(Opcode::ALL.to_vec())
}

fn error_reply() -> impl Strategy<Value = ErrorReply> {
    (
        prop_oneof![
            prop::sample::select(ErrorCode::ALL.to_vec()),
            (2i32..0x1000).prop_map(ErrorCode::from_code)
        ],
        bytes(),
    )
        .prop_map(|(code, message)| {
            // E_NO_MAGIC travels without a message.
            let message = if code == ErrorCode::NoMagic {
                Bytes::new()
            } else {
                message
            };
            ErrorReply { code, message }
        })
}

/// Feeds `wire` to `decode` in pieces of the given sizes, collecting items.
fn feed<T, D: Decoder<Item = T>>(codec: &mut D, wire: &[u8], pieces: &[usize]) -> Vec<T>
where
    D::Error: std::fmt::Debug,
{
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    let mut at = 0;
    let mut sizes = pieces.iter().cycle();
    while at < wire.len() {
        let n = (*sizes.next().unwrap()).max(1).min(wire.len() - at);
        buf.extend_from_slice(&wire[at..at + n]);
        at += n;
        while let Some(item) = codec.decode(&mut buf).unwrap() {
            items.push(item);
        }
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    items
}

proptest! {
    #[test]
    fn update_encoded_len_is_the_length_of_its_encoding(update in update()) {
        let mut out = BytesMut::new();
        update.encode(&mut out);
        prop_assert_eq!(update.encoded_len(), out.len());
    }

    #[test]
    fn requests_round_trip(
        batch in prop::collection::vec((opcode(), fields()), 1..4),
        pieces in prop::collection::vec(1usize..40, 1..6),
    ) {
        let requests: Vec<Request> = batch.into_iter().map(|(op, f)| request(op, f)).collect();
        let mut wire = BytesMut::new();
        let mut client = ClientCodec::new(Limits::default());
        client.encode(&Prologue { cluster_id: Bytes::from_static(b"c") }, &mut wire).unwrap();
        for r in &requests {
            prop_assert_eq!(r.opcode(), r.opcode());
            client.encode(r, &mut wire).unwrap();
        }
        let mut server = ServerCodec::new(Limits::default());
        let items = feed(&mut server, &wire, &pieces);
        prop_assert_eq!(items.len(), requests.len() + 1);
        prop_assert!(matches!(&items[0], ServerFrame::Prologue(p) if &p.cluster_id[..] == b"c"));
        for (item, r) in items[1..].iter().zip(&requests) {
            prop_assert_eq!(item, &ServerFrame::Request(r.clone()));
        }
    }

    #[test]
    fn replies_round_trip(
        batch in prop::collection::vec((opcode(), fields(), prop::option::of(error_reply())), 1..4),
        pieces in prop::collection::vec(1usize..40, 1..6),
    ) {
        let mut client = ClientCodec::new(Limits::default());
        let mut sink = BytesMut::new();
        let mut wire = BytesMut::new();
        let mut expected = Vec::new();
        for (op, f, error) in batch {
            // A user hook that exists writes nothing: only its error frame is a reply.
            let reply: Reply = match error {
                Some(e) => Err(e),
                None if op == Opcode::UserHook => continue,
                None => Ok(response(op, f.clone())),
            };
            client.encode(&request(op, f), &mut sink).unwrap();
            encode_reply(&reply, &mut wire);
            expected.push((op, reply));
        }
        if expected.is_empty() {
            return Ok(());
        }
        let items = feed(&mut client, &wire, &pieces);
        prop_assert_eq!(items, expected);
    }

    #[test]
    fn server_decoder_survives_random_bytes(
        junk in prop::collection::vec(any::<u8>(), 0..256),
        with_prologue in any::<bool>(),
    ) {
        let limits = Limits { max_frame_bytes: 1024, max_nesting: 8 };
        let mut codec = ServerCodec::new(limits);
        let mut buf = BytesMut::new();
        if with_prologue {
            Prologue { cluster_id: Bytes::from_static(b"c") }.encode(&mut buf);
        }
        buf.extend_from_slice(&junk);
        drain_server(&mut codec, &mut buf, limits);
    }

    #[test]
    fn server_decoder_survives_mutated_requests(
        op in opcode(),
        f in fields(),
        mutations in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let limits = Limits { max_frame_bytes: 2048, max_nesting: 8 };
        let mut wire = BytesMut::new();
        Prologue { cluster_id: Bytes::from_static(b"c") }.encode(&mut wire);
        request(op, f).encode(&mut wire);
        let mut wire = wire.to_vec();
        for (at, byte) in mutations {
            let i = at.index(wire.len());
            wire[i] = byte;
        }
        wire.truncate(cut.index(wire.len() + 1));
        let mut codec = ServerCodec::new(limits);
        let mut buf = BytesMut::from(&wire[..]);
        drain_server(&mut codec, &mut buf, limits);
    }

    #[test]
    fn client_decoder_survives_mutated_replies(
        op in opcode(),
        f in fields(),
        mutations in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        junk in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let limits = Limits { max_frame_bytes: 2048, max_nesting: 8 };
        let mut wire = BytesMut::new();
        encode_reply(&Ok(response(op, f.clone())), &mut wire);
        let mut wire = wire.to_vec();
        if !wire.is_empty() {
            for (at, byte) in mutations {
                let i = at.index(wire.len());
                wire[i] = byte;
            }
        }
        wire.extend_from_slice(&junk);
        let mut codec = ClientCodec::new(limits);
        let mut sink = BytesMut::new();
        for _ in 0..4 {
            codec.encode(&request(op, f.clone()), &mut sink).unwrap();
        }
        let mut buf = BytesMut::from(&wire[..]);
        loop {
            let before = buf.len();
            match codec.decode(&mut buf) {
                Ok(Some(_)) => prop_assert!(buf.len() < before || op == Opcode::UserHook),
                Ok(None) => {
                    prop_assert!(buf.len() <= limits.max_frame_bytes + 16);
                    break;
                }
                Err(_) => break,
            }
            if op == Opcode::UserHook && buf.len() == before {
                break;
            }
        }
    }
}

/// Decodes until the buffer is exhausted or an error, checking the budget holds.
fn drain_server(codec: &mut ServerCodec, buf: &mut BytesMut, limits: Limits) {
    loop {
        let before = buf.len();
        match codec.decode(buf) {
            Ok(Some(_)) => {
                let used = before - buf.len();
                assert!(used > 0, "an item consumed no bytes");
                assert!(used <= limits.max_frame_bytes + 16, "frame of {used} bytes");
            }
            Ok(None) => {
                assert!(buf.len() <= limits.max_frame_bytes + 16);
                break;
            }
            Err(_) => break,
        }
    }
}

#[test]
fn hostile_lengths_are_refused_without_allocating() {
    // A SET whose key claims 2 GiB, and a MULTI_GET claiming 2^31-1 keys: both are refused
    // from their first 4 bytes of length, long before the bytes could arrive.
    for wire in [
        &[0x09, 0x00, 0xff, 0xb1, 0xff, 0xff, 0xff, 0x7f][..],
        &[0x11, 0x00, 0xff, 0xb1, 0x00, 0xff, 0xff, 0xff, 0x7f][..],
        &[
            0x10, 0x00, 0xff, 0xb1, 0x08, 0x00, 0x00, 0x00, 0x05, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f,
        ][..],
    ] {
        let mut codec = ServerCodec::new(Limits::default());
        let mut buf = BytesMut::new();
        Prologue {
            cluster_id: Bytes::from_static(b"c"),
        }
        .encode(&mut buf);
        buf.extend_from_slice(wire);
        codec.decode(&mut buf).unwrap();
        let e = codec.decode(&mut buf).unwrap_err();
        assert!(e.to_string().contains("exceeds the limit"), "{e}");
    }
}

#[test]
fn deep_nesting_is_refused() {
    // 100 nested sequences: refused at the nesting limit instead of recursing on.
    let mut update = Update::Nop;
    for _ in 0..100 {
        update = Update::Sequence(vec![update]);
    }
    let mut buf = BytesMut::new();
    Prologue {
        cluster_id: Bytes::from_static(b"c"),
    }
    .encode(&mut buf);
    Request::Sequence(vec![update]).encode(&mut buf);
    let mut codec = ServerCodec::new(Limits::default());
    codec.decode(&mut buf).unwrap();
    let e = codec.decode(&mut buf).unwrap_err();
    assert!(e.to_string().contains("nested deeper"), "{e}");
}
