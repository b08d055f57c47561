//! Golden-byte tests: every hex literal here was written by hand from docs/protocol.md (the worked
//! examples of §11 and the field tables of §2, §7, §8, §9), not produced by our encoder. Each
//! case checks both directions: encode == bytes, and decode(bytes) == value.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{Bytes, BytesMut};
use rarakoon_client::{
    ClientCfg, ClientCodec, Consistency, ErrorCode, ErrorReply, Interval, Limits, NamedValue,
    NodeAddress, NurseryCfg, Opcode, Prologue, ProtocolError, RangeAssertion, RangeQuery, Reply,
    Request, Response, Routing, ServerCodec, ServerFrame, Update, Value, VersionInfo, encode_reply,
};
use tokio_util::codec::{Decoder, Encoder};

fn hex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

const PROLOGUE: &str = "00 00 ff b1 01 00 00 00 07 00 00 00 61 72 61 6b 6f 6f 6e";

/// Checks a request both ways (the server decodes it after a prologue).
fn check_request(request: &Request, wire: &str) {
    let wire = hex(wire);
    let mut out = BytesMut::new();
    request.encode(&mut out);
    assert_eq!(&out[..], &wire[..], "encoding {request:?}");

    let mut codec = ServerCodec::new(Limits::default());
    let mut buf = BytesMut::from(&hex(PROLOGUE)[..]);
    buf.extend_from_slice(&wire);
    assert!(matches!(
        codec.decode(&mut buf).unwrap(),
        Some(ServerFrame::Prologue(_))
    ));
    assert_eq!(
        codec.decode(&mut buf).unwrap(),
        Some(ServerFrame::Request(request.clone())),
        "decoding {request:?}"
    );
    assert!(buf.is_empty());
}

/// Checks a reply both ways (the client decodes it as the answer to `opcode`).
fn check_reply(opcode: Opcode, reply: &Reply, wire: &str) {
    let wire = hex(wire);
    let mut out = BytesMut::new();
    encode_reply(reply, &mut out);
    assert_eq!(&out[..], &wire[..], "encoding {reply:?}");

    let mut codec = ClientCodec::new(Limits::default());
    let mut sink = BytesMut::new();
    codec.encode(&placeholder(opcode), &mut sink).unwrap();
    let mut buf = BytesMut::from(&wire[..]);
    let (answered, decoded) = codec.decode(&mut buf).unwrap().expect("a whole reply");
    assert_eq!(answered, opcode);
    assert_eq!(&decoded, reply, "decoding {opcode:?}");
    assert!(buf.is_empty());
}

/// A request with the given opcode (its fields do not matter for reply decoding).
fn placeholder(opcode: Opcode) -> Request {
    let mut wire = BytesMut::new();
    wire.extend_from_slice(&(0xB1FF_0000u32 | u32::from(opcode.code())).to_le_bytes());
    // Enough zero bytes to make a valid request of any opcode's shape: zero-length strings,
    // None options, consistent flags, empty lists. A sequence needs a real tag-5 body.
    match opcode {
        Opcode::Sequence | Opcode::SyncedSequence => {
            wire.extend_from_slice(&hex("08 00 00 00 05 00 00 00 00 00 00 00"))
        }
        Opcode::MigrateRange => {
            wire.extend_from_slice(&hex("00 00 00 00 08 00 00 00 05 00 00 00 00 00 00 00"))
        }
        Opcode::SetRouting => wire.extend_from_slice(&hex("06 00 00 00 01 01 00 00 00 63")),
        _ => wire.extend_from_slice(&[0u8; 32]),
    }
    let mut codec = ServerCodec::new(Limits::default());
    let mut buf = BytesMut::from(&hex(PROLOGUE)[..]);
    buf.extend_from_slice(&wire);
    codec.decode(&mut buf).unwrap();
    match codec.decode(&mut buf).unwrap() {
        Some(ServerFrame::Request(r)) => r,
        other => panic!("no placeholder for {opcode:?}: {other:?}"),
    }
}

fn err(code: ErrorCode, msg: &str) -> Reply {
    Err(ErrorReply::new(code, b(msg)))
}

#[test]
fn prologue_example() {
    let mut out = BytesMut::new();
    Prologue {
        cluster_id: b("arakoon"),
    }
    .encode(&mut out);
    assert_eq!(&out[..], &hex(PROLOGUE)[..]);
    let mut codec = ServerCodec::new(Limits::default());
    let mut buf = BytesMut::from(&hex(PROLOGUE)[..]);
    assert_eq!(
        codec.decode(&mut buf).unwrap(),
        Some(ServerFrame::Prologue(Prologue {
            cluster_id: b("arakoon")
        }))
    );
}

#[test]
fn bad_prologue_is_refused_after_eight_bytes() {
    let mut codec = ServerCodec::new(Limits::default());
    let mut buf = BytesMut::from(&hex("00 00 ff b1 02 00 00 00")[..]);
    let e = codec.decode(&mut buf).unwrap_err();
    assert!(e.to_string().contains("bad prologue"), "{e}");
}

#[test]
fn section_11_set() {
    check_request(
        &Request::Set {
            key: b("k"),
            value: b("v"),
        },
        "09 00 ff b1 01 00 00 00 6b 01 00 00 00 76",
    );
    check_reply(Opcode::Set, &Ok(Response::Set), "00 00 00 00");
}

#[test]
fn section_11_get() {
    let get = Request::Get {
        consistency: Consistency::Consistent,
        key: b("k"),
    };
    check_request(&get, "08 00 ff b1 00 01 00 00 00 6b");
    check_reply(
        Opcode::Get,
        &err(ErrorCode::NotFound, "Not_found"),
        "05 00 00 00 09 00 00 00 4e 6f 74 5f 66 6f 75 6e 64",
    );
    check_reply(
        Opcode::Get,
        &Ok(Response::Get(b("v"))),
        "00 00 00 00 01 00 00 00 76",
    );
}

#[test]
fn section_11_delete_missing() {
    check_request(
        &Request::Delete { key: b("k") },
        "0a 00 ff b1 01 00 00 00 6b",
    );
    check_reply(
        Opcode::Delete,
        &err(ErrorCode::NotFound, "k"),
        "05 00 00 00 01 00 00 00 6b",
    );
}

#[test]
fn section_11_who_master() {
    check_request(&Request::WhoMaster, "02 00 ff b1");
    check_reply(
        Opcode::WhoMaster,
        &Ok(Response::WhoMaster(Some(b("node_0")))),
        "00 00 00 00 01 06 00 00 00 6e 6f 64 65 5f 30",
    );
    check_reply(
        Opcode::WhoMaster,
        &Ok(Response::WhoMaster(None)),
        "00 00 00 00 00",
    );
}

#[test]
fn section_11_sequence() {
    check_request(
        &Request::Sequence(vec![
            Update::Set {
                key: b("a"),
                value: b("1"),
            },
            Update::Delete { key: b("b") },
        ]),
        "10 00 ff b1 1f 00 00 00 05 00 00 00 02 00 00 00
         01 00 00 00 01 00 00 00 61 01 00 00 00 31
         02 00 00 00 01 00 00 00 62",
    );
    check_reply(Opcode::Sequence, &Ok(Response::Sequence), "00 00 00 00");
}

#[test]
fn section_11_range_entries_descending_on_the_wire() {
    check_request(
        &Request::RangeEntries(RangeQuery {
            consistency: Consistency::Consistent,
            first: None,
            first_inclusive: true,
            last: None,
            last_inclusive: true,
            max: -1,
        }),
        "0f 00 ff b1 00 00 01 00 01 ff ff ff ff",
    );
    check_reply(
        Opcode::RangeEntries,
        &Ok(Response::RangeEntries(vec![
            (b("a"), b("1")),
            (b("b"), b("2")),
            (b("c"), b("3")),
        ])),
        "00 00 00 00 03 00 00 00 01 00 00 00 63 01 00 00 00 33 01 00 00 00 62 01 00 00 00 32
         01 00 00 00 61 01 00 00 00 31",
    );
}

#[test]
fn section_11_unknown_opcode() {
    let mut codec = ServerCodec::new(Limits::default());
    let mut buf = BytesMut::from(&hex(PROLOGUE)[..]);
    buf.extend_from_slice(&hex("99 00 ff b1"));
    codec.decode(&mut buf).unwrap();
    let e = codec.decode(&mut buf).unwrap_err();
    let rarakoon_client::CodecError::Protocol(e) = e else {
        panic!("{e}")
    };
    assert_eq!(e, ProtocolError::UnknownOpcode { opcode: 0x99 });
    let mut out = BytesMut::new();
    e.server_reply().unwrap().encode(&mut out);
    let mut expected = hex("05 00 00 00 15 00 00 00");
    expected.extend_from_slice(b"99: command not found");
    assert_eq!(&out[..], &expected[..]);
}

#[test]
fn bad_magic_gets_rc_1_without_message() {
    let mut codec = ServerCodec::new(Limits::default());
    let mut buf = BytesMut::from(&hex(PROLOGUE)[..]);
    buf.extend_from_slice(&hex("08 00 00 00"));
    codec.decode(&mut buf).unwrap();
    let rarakoon_client::CodecError::Protocol(e) = codec.decode(&mut buf).unwrap_err() else {
        panic!()
    };
    let mut out = BytesMut::new();
    e.server_reply().unwrap().encode(&mut out);
    assert_eq!(&out[..], &hex("01 00 00 00")[..]);
    check_reply(
        Opcode::Get,
        &Err(ErrorReply::new(ErrorCode::NoMagic, Bytes::new())),
        "01 00 00 00",
    );
}

#[test]
fn ping() {
    check_request(
        &Request::Ping {
            client_id: b("c"),
            cluster_id: b("arakoon"),
        },
        "01 00 ff b1 01 00 00 00 63 07 00 00 00 61 72 61 6b 6f 6f 6e",
    );
    check_reply(
        Opcode::Ping,
        &Ok(Response::Ping(b("Arakoon 1.9.25"))),
        "00 00 00 00 0e 00 00 00 41 72 61 6b 6f 6f 6e 20 31 2e 39 2e 32 35",
    );
}

#[test]
fn exists_no_guarantees() {
    check_request(
        &Request::Exists {
            consistency: Consistency::NoGuarantees,
            key: b("k"),
        },
        "07 00 ff b1 01 01 00 00 00 6b",
    );
    check_reply(
        Opcode::Exists,
        &Ok(Response::Exists(true)),
        "00 00 00 00 01",
    );
}

#[test]
fn range_keys_descending_on_the_wire() {
    check_request(
        &Request::Range(RangeQuery {
            consistency: Consistency::Consistent,
            first: Some(b("a")),
            first_inclusive: true,
            last: None,
            last_inclusive: false,
            max: -1,
        }),
        "0b 00 ff b1 00 01 01 00 00 00 61 01 00 00 ff ff ff ff",
    );
    check_reply(
        Opcode::Range,
        &Ok(Response::Range(vec![b("a"), b("b")])),
        "00 00 00 00 02 00 00 00 01 00 00 00 62 01 00 00 00 61",
    );
}

#[test]
fn prefix_keys_at_least() {
    check_request(
        &Request::PrefixKeys {
            consistency: Consistency::AtLeast(5),
            prefix: b("a"),
            max: 10,
        },
        "0c 00 ff b1 02 05 00 00 00 00 00 00 00 01 00 00 00 61 0a 00 00 00",
    );
    check_reply(
        Opcode::PrefixKeys,
        &Ok(Response::PrefixKeys(vec![b("a"), b("ab")])),
        "00 00 00 00 02 00 00 00 02 00 00 00 61 62 01 00 00 00 61",
    );
}

#[test]
fn test_and_set() {
    check_request(
        &Request::TestAndSet {
            key: b("k"),
            expected: None,
            wanted: Some(b("v")),
        },
        "0d 00 ff b1 01 00 00 00 6b 00 01 01 00 00 00 76",
    );
    check_reply(
        Opcode::TestAndSet,
        &Ok(Response::TestAndSet(None)),
        "00 00 00 00 00",
    );
}

#[test]
fn last_entries() {
    check_request(
        &Request::LastEntries { start_i: 42 },
        "0e 00 ff b1 2a 00 00 00 00 00 00 00",
    );
    check_reply(
        Opcode::LastEntries,
        &Ok(Response::LastEntries),
        "00 00 00 00",
    );
}

#[test]
fn multi_get_values_reverse_the_request_order() {
    check_request(
        &Request::MultiGet {
            consistency: Consistency::Consistent,
            keys: vec![b("a"), b("b")],
        },
        "11 00 ff b1 00 02 00 00 00 01 00 00 00 61 01 00 00 00 62",
    );
    // value(a) = "1", value(b) = "2": the wire carries value(w[n-1-i]) at i.
    check_reply(
        Opcode::MultiGet,
        &Ok(Response::MultiGet(vec![b("1"), b("2")])),
        "00 00 00 00 02 00 00 00 01 00 00 00 32 01 00 00 00 31",
    );
}

#[test]
fn expect_progress_possible() {
    check_request(&Request::ExpectProgressPossible, "12 00 ff b1");
    check_reply(
        Opcode::ExpectProgressPossible,
        &Ok(Response::ExpectProgressPossible(true)),
        "00 00 00 00 01",
    );
}

#[test]
fn statistics() {
    check_request(&Request::Statistics, "13 00 ff b1");
    check_reply(
        Opcode::Statistics,
        &Ok(Response::Statistics(NamedValue::new(
            "s",
            Value::List(vec![NamedValue::new("n", Value::Int(7))]),
        ))),
        "00 00 00 00 1a 00 00 00 05 00 00 00 01 00 00 00 73 01 00 00 00
         01 00 00 00 01 00 00 00 6e 07 00 00 00",
    );
    check_reply(
        Opcode::Statistics,
        &Ok(Response::Statistics(NamedValue::new(
            "f",
            Value::Float(1.5),
        ))),
        "00 00 00 00 11 00 00 00 03 00 00 00 01 00 00 00 66 00 00 00 00 00 00 f8 3f",
    );
}

#[test]
fn collapse_tlogs_multi_frame() {
    check_request(
        &Request::CollapseTlogs { tlogs_to_keep: 3 },
        "14 00 ff b1 03 00 00 00",
    );
    check_reply(
        Opcode::CollapseTlogs,
        &Ok(Response::CollapseTlogs(vec![7, 8])),
        "00 00 00 00 02 00 00 00 00 00 00 00 07 00 00 00 00 00 00 00
         00 00 00 00 08 00 00 00 00 00 00 00",
    );
    check_reply(
        Opcode::CollapseTlogs,
        &Ok(Response::CollapseTlogs(vec![])),
        "00 00 00 00 00 00 00 00",
    );
}

#[test]
fn user_function() {
    check_request(
        &Request::UserFunction {
            name: b("f"),
            arg: Some(b("x")),
        },
        "15 00 ff b1 01 00 00 00 66 01 01 00 00 00 78",
    );
    check_reply(
        Opcode::UserFunction,
        &Ok(Response::UserFunction(Some(b("y")))),
        "00 00 00 00 01 01 00 00 00 79",
    );
}

#[test]
fn assert_failed() {
    check_request(
        &Request::Assert {
            consistency: Consistency::Consistent,
            key: b("k"),
            expected: Some(b("v")),
        },
        "16 00 ff b1 00 01 00 00 00 6b 01 01 00 00 00 76",
    );
    check_reply(
        Opcode::Assert,
        &err(ErrorCode::AssertionFailed, "k"),
        "07 00 00 00 01 00 00 00 6b",
    );
}

#[test]
fn set_interval() {
    check_request(
        &Request::SetInterval(Interval {
            public_begin: Some(b("a")),
            ..Interval::default()
        }),
        "17 00 ff b1 01 01 00 00 00 61 00 00 00",
    );
    check_reply(
        Opcode::SetInterval,
        &Ok(Response::SetInterval),
        "00 00 00 00",
    );
}

#[test]
fn get_routing() {
    check_request(&Request::GetRouting, "18 00 ff b1");
    check_reply(
        Opcode::GetRouting,
        &Ok(Response::GetRouting(Routing::Cluster(b("c1")))),
        "00 00 00 00 07 00 00 00 01 02 00 00 00 63 31",
    );
}

#[test]
fn set_routing() {
    check_request(
        &Request::SetRouting(Routing::Branch {
            left: Box::new(Routing::Cluster(b("a"))),
            separator: b("m"),
            right: Box::new(Routing::Cluster(b("b"))),
        }),
        "19 00 ff b1 12 00 00 00 00 01 00 00 00 6d 01 01 00 00 00 61 01 01 00 00 00 62",
    );
    check_reply(Opcode::SetRouting, &Ok(Response::SetRouting), "00 00 00 00");
}

#[test]
fn get_key_count() {
    check_request(&Request::GetKeyCount, "1a 00 ff b1");
    check_reply(
        Opcode::GetKeyCount,
        &Ok(Response::GetKeyCount(3)),
        "00 00 00 00 03 00 00 00 00 00 00 00",
    );
}

#[test]
fn get_db() {
    check_request(&Request::GetDb, "1b 00 ff b1");
    check_reply(
        Opcode::GetDb,
        &Ok(Response::GetDb(Bytes::from_static(&[0xab, 0xcd]))),
        "00 00 00 00 02 00 00 00 00 00 00 00 ab cd",
    );
}

#[test]
fn confirm() {
    check_request(
        &Request::Confirm {
            key: b("k"),
            value: b("v"),
        },
        "1c 00 ff b1 01 00 00 00 6b 01 00 00 00 76",
    );
    check_reply(Opcode::Confirm, &Ok(Response::Confirm), "00 00 00 00");
}

#[test]
fn get_fringe() {
    check_request(
        &Request::GetFringe {
            boundary: None,
            direction: 0,
        },
        "1d 00 ff b1 00 00 00 00 00",
    );
    check_reply(
        Opcode::GetFringe,
        &Ok(Response::GetFringe(vec![
            (b("a"), b("1")),
            (b("b"), b("2")),
        ])),
        "00 00 00 00 02 00 00 00 01 00 00 00 62 01 00 00 00 32 01 00 00 00 61 01 00 00 00 31",
    );
}

#[test]
fn get_interval() {
    check_request(&Request::GetInterval, "1e 00 ff b1");
    check_reply(
        Opcode::GetInterval,
        &Ok(Response::GetInterval(Interval::default())),
        "00 00 00 00 00 00 00 00",
    );
}

#[test]
fn set_nursery_cfg() {
    check_request(
        &Request::SetNurseryCfg {
            cluster_id: b("c"),
            cfg: ClientCfg {
                nodes: vec![NodeAddress {
                    name: b("n"),
                    ips: vec![b("1.2")],
                    client_port: 7,
                }],
            },
        },
        "1f 00 ff b1 01 00 00 00 63 01 00 00 00 01 00 00 00 6e 01 00 00 00 03 00 00 00 31 2e 32
         07 00 00 00",
    );
    check_reply(
        Opcode::SetNurseryCfg,
        &Ok(Response::SetNurseryCfg),
        "00 00 00 00",
    );
}

#[test]
fn get_nursery_cfg() {
    check_request(&Request::GetNurseryCfg, "20 00 ff b1");
    check_reply(
        Opcode::GetNurseryCfg,
        &Ok(Response::GetNurseryCfg(NurseryCfg {
            routing: Routing::Cluster(b("c")),
            clusters: vec![],
        })),
        "00 00 00 00 0a 00 00 00 01 01 00 00 00 63 00 00 00 00",
    );
}

#[test]
fn set_routing_delta() {
    check_request(
        &Request::SetRoutingDelta {
            left: b("a"),
            separator: b("m"),
            right: b("b"),
        },
        "21 00 ff b1 01 00 00 00 61 01 00 00 00 6d 01 00 00 00 62",
    );
    check_reply(
        Opcode::SetRoutingDelta,
        &err(ErrorCode::NotSupported, "no"),
        "20 00 00 00 02 00 00 00 6e 6f",
    );
}

#[test]
fn migrate_range() {
    check_request(
        &Request::MigrateRange {
            interval: Interval::default(),
            updates: vec![Update::Nop],
        },
        "22 00 ff b1 00 00 00 00 0c 00 00 00 05 00 00 00 01 00 00 00 06 00 00 00",
    );
    check_reply(
        Opcode::MigrateRange,
        &Ok(Response::MigrateRange),
        "00 00 00 00",
    );
}

#[test]
fn rev_range_entries_ascending_on_the_wire() {
    check_request(
        &Request::RevRangeEntries(RangeQuery {
            consistency: Consistency::NoGuarantees,
            first: None,
            first_inclusive: true,
            last: None,
            last_inclusive: true,
            max: 2,
        }),
        "23 00 ff b1 01 00 01 00 01 02 00 00 00",
    );
    check_reply(
        Opcode::RevRangeEntries,
        &Ok(Response::RevRangeEntries(vec![
            (b("c"), b("3")),
            (b("b"), b("2")),
        ])),
        "00 00 00 00 02 00 00 00 01 00 00 00 62 01 00 00 00 32 01 00 00 00 63 01 00 00 00 33",
    );
}

#[test]
fn synced_sequence() {
    check_request(
        &Request::SyncedSequence(vec![Update::Set {
            key: b("k"),
            value: b("v"),
        }]),
        "24 00 ff b1 16 00 00 00 05 00 00 00 01 00 00 00 01 00 00 00 01 00 00 00 6b
         01 00 00 00 76",
    );
    check_reply(
        Opcode::SyncedSequence,
        &Ok(Response::SyncedSequence),
        "00 00 00 00",
    );
}

#[test]
fn optimize_and_defrag_db() {
    check_request(&Request::OptimizeDb, "25 00 ff b1");
    check_reply(Opcode::OptimizeDb, &Ok(Response::OptimizeDb), "00 00 00 00");
    check_request(&Request::DefragDb, "26 00 ff b1");
    check_reply(
        Opcode::DefragDb,
        &err(ErrorCode::NotSupported, "x"),
        "20 00 00 00 01 00 00 00 78",
    );
}

#[test]
fn delete_prefix() {
    check_request(
        &Request::DeletePrefix { prefix: b("a") },
        "27 00 ff b1 01 00 00 00 61",
    );
    check_reply(
        Opcode::DeletePrefix,
        &Ok(Response::DeletePrefix(2)),
        "00 00 00 00 02 00 00 00",
    );
}

#[test]
fn version() {
    check_request(&Request::Version, "28 00 ff b1");
    check_reply(
        Opcode::Version,
        &Ok(Response::Version(VersionInfo {
            major: 1,
            minor: 9,
            patch: 25,
            info: b("r"),
        })),
        "00 00 00 00 01 00 00 00 09 00 00 00 19 00 00 00 01 00 00 00 72",
    );
}

#[test]
fn assert_exists() {
    check_request(
        &Request::AssertExists {
            consistency: Consistency::Consistent,
            key: b("k"),
        },
        "29 00 ff b1 00 01 00 00 00 6b",
    );
    check_reply(
        Opcode::AssertExists,
        &Ok(Response::AssertExists),
        "00 00 00 00",
    );
}

#[test]
fn drop_master_is_0x30() {
    check_request(&Request::DropMaster, "30 00 ff b1");
    check_reply(Opcode::DropMaster, &Ok(Response::DropMaster), "00 00 00 00");
}

#[test]
fn multi_get_option_same_order() {
    check_request(
        &Request::MultiGetOption {
            consistency: Consistency::Consistent,
            keys: vec![b("a"), b("b")],
        },
        "31 00 ff b1 00 02 00 00 00 01 00 00 00 61 01 00 00 00 62",
    );
    check_reply(
        Opcode::MultiGetOption,
        &Ok(Response::MultiGetOption(vec![Some(b("1")), None])),
        "00 00 00 00 02 00 00 00 01 01 00 00 00 31 00",
    );
}

#[test]
fn current_state() {
    check_request(&Request::CurrentState, "32 00 ff b1");
    check_reply(
        Opcode::CurrentState,
        &Ok(Response::CurrentState(b("x"))),
        "00 00 00 00 01 00 00 00 78",
    );
}

#[test]
fn replace() {
    check_request(
        &Request::Replace {
            key: b("k"),
            wanted: None,
        },
        "33 00 ff b1 01 00 00 00 6b 00",
    );
    check_reply(
        Opcode::Replace,
        &Ok(Response::Replace(Some(b("v")))),
        "00 00 00 00 01 01 00 00 00 76",
    );
}

#[test]
fn last_entries2_and_3() {
    check_request(
        &Request::LastEntries2 { start_i: 1 },
        "40 00 ff b1 01 00 00 00 00 00 00 00",
    );
    check_reply(
        Opcode::LastEntries2,
        &err(ErrorCode::NotSupported, "x"),
        "20 00 00 00 01 00 00 00 78",
    );
    check_request(
        &Request::LastEntries3 { start_i: 7 },
        "46 00 ff b1 07 00 00 00 00 00 00 00",
    );
    check_reply(
        Opcode::LastEntries3,
        &Ok(Response::LastEntries3),
        "00 00 00 00",
    );
}

#[test]
fn nop_and_flush_store() {
    check_request(&Request::Nop, "41 00 ff b1");
    check_reply(Opcode::Nop, &Ok(Response::Nop), "00 00 00 00");
    check_request(&Request::FlushStore, "42 00 ff b1");
    check_reply(Opcode::FlushStore, &Ok(Response::FlushStore), "00 00 00 00");
}

#[test]
fn get_txid() {
    check_request(&Request::GetTxid, "43 00 ff b1");
    check_reply(
        Opcode::GetTxid,
        &Ok(Response::GetTxid(Consistency::AtLeast(5))),
        "00 00 00 00 02 05 00 00 00 00 00 00 00",
    );
}

#[test]
fn copy_db_to_head() {
    check_request(
        &Request::CopyDbToHead { tlogs_to_keep: 2 },
        "44 00 ff b1 02 00 00 00",
    );
    check_reply(
        Opcode::CopyDbToHead,
        &Ok(Response::CopyDbToHead),
        "00 00 00 00",
    );
}

#[test]
fn user_hook_not_found() {
    check_request(
        &Request::UserHook {
            consistency: Consistency::Consistent,
            name: b("h"),
        },
        "45 00 ff b1 00 01 00 00 00 68",
    );
    check_reply(
        Opcode::UserHook,
        &err(ErrorCode::UserHookNotFound, "h"),
        "82 00 00 00 01 00 00 00 68",
    );
}

#[test]
fn every_update_tag() {
    // A sequence holding one update of each tag, hand-encoded member by member.
    let cases: Vec<(Update, &str)> = vec![
        (
            Update::TestAndSet {
                key: b("k"),
                expected: Some(b("v")),
                wanted: None,
            },
            "03 00 00 00 01 00 00 00 6b 01 01 00 00 00 76 00",
        ),
        (
            Update::MasterSet {
                node: b("n"),
                lease: 0,
            },
            "04 00 00 00 01 00 00 00 6e 00 00 00 00 00 00 00 00",
        ),
        (
            Update::Sequence(vec![Update::Delete { key: b("k") }]),
            "05 00 00 00 01 00 00 00 02 00 00 00 01 00 00 00 6b",
        ),
        (Update::Nop, "06 00 00 00"),
        (
            Update::UserFunction {
                name: b("f"),
                arg: None,
            },
            "07 00 00 00 01 00 00 00 66 00",
        ),
        (
            Update::Assert {
                key: b("k"),
                expected: None,
            },
            "08 00 00 00 01 00 00 00 6b 00",
        ),
        (
            Update::AdminSet {
                key: b("k"),
                value: Some(b("v")),
            },
            "09 00 00 00 01 00 00 00 6b 01 01 00 00 00 76",
        ),
        (
            Update::SetInterval(Interval::default()),
            "0a 00 00 00 00 00 00 00",
        ),
        (
            Update::SetRouting(Routing::Cluster(b("c"))),
            "0b 00 00 00 01 01 00 00 00 63",
        ),
        (
            Update::SetRoutingDelta {
                left: b("a"),
                separator: b("m"),
                right: b("b"),
            },
            "0c 00 00 00 01 00 00 00 61 01 00 00 00 6d 01 00 00 00 62",
        ),
        (Update::SyncedSequence(vec![]), "0d 00 00 00 00 00 00 00"),
        (
            Update::DeletePrefix { prefix: b("p") },
            "0e 00 00 00 01 00 00 00 70",
        ),
        (
            Update::AssertExists { key: b("k") },
            "0f 00 00 00 01 00 00 00 6b",
        ),
        (
            Update::Replace {
                key: b("k"),
                wanted: Some(b("v")),
            },
            "10 00 00 00 01 00 00 00 6b 01 01 00 00 00 76",
        ),
        (
            Update::AssertRange {
                prefix: b("p"),
                assertion: RangeAssertion::ContainsExactly(vec![b("pb"), b("pa")]),
            },
            "11 00 00 00 01 00 00 00 70 01 00 00 00 02 00 00 00 02 00 00 00 70 62
             02 00 00 00 70 61",
        ),
    ];
    for (update, wire) in cases {
        let body = hex(wire);
        let mut request = hex("10 00 ff b1");
        let len = (8 + body.len()) as u32;
        request.extend_from_slice(&len.to_le_bytes());
        request.extend_from_slice(&hex("05 00 00 00 01 00 00 00"));
        request.extend_from_slice(&body);
        let text: String = request.iter().map(|b| format!("{b:02x} ")).collect();
        check_request(&Request::Sequence(vec![update]), &text);
    }
}

#[test]
fn sequence_body_must_be_tag_5() {
    // A SEQUENCE whose body is a bare Set (tag 1): the reference's "should have been a sequence".
    let mut codec = ServerCodec::new(Limits::default());
    let mut buf = BytesMut::from(&hex(PROLOGUE)[..]);
    buf.extend_from_slice(&hex(
        "10 00 ff b1 0e 00 00 00 01 00 00 00 01 00 00 00 6b 01 00 00 00 76",
    ));
    codec.decode(&mut buf).unwrap();
    let rarakoon_client::CodecError::Protocol(e) = codec.decode(&mut buf).unwrap_err() else {
        panic!()
    };
    let reply = e.server_reply().unwrap();
    assert_eq!(reply.code, ErrorCode::UnknownFailure);
    assert_eq!(&reply.message[..], b"should have been a sequence");
}

#[test]
fn trailing_bytes_inside_sequence_body_are_ignored() {
    let mut codec = ServerCodec::new(Limits::default());
    let mut buf = BytesMut::from(&hex(PROLOGUE)[..]);
    buf.extend_from_slice(&hex(
        "10 00 ff b1 0a 00 00 00 05 00 00 00 00 00 00 00 ee ee",
    ));
    codec.decode(&mut buf).unwrap();
    assert_eq!(
        codec.decode(&mut buf).unwrap(),
        Some(ServerFrame::Request(Request::Sequence(vec![])))
    );
}

#[test]
fn old_clients_allow_dirty_bool_is_the_consistency_byte() {
    // C/PHP/Python send `bool allow_dirty` where `cons` is: 01 = No_guarantees.
    check_request(
        &Request::Get {
            consistency: Consistency::NoGuarantees,
            key: b("k"),
        },
        "08 00 ff b1 01 01 00 00 00 6b",
    );
}

#[test]
fn too_many_clients_frame() {
    let mut out = BytesMut::new();
    ErrorReply::too_many_clients().encode(&mut out);
    let mut expected = hex("fe 00 00 00 10 00 00 00");
    expected.extend_from_slice(b"too many clients");
    assert_eq!(&out[..], &expected[..]);
}
