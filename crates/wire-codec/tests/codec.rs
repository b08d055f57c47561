//! Round trips through the tokio codec, refusal of oversized, invalid and semantically wrong
//! frames, and a proptest feeding random and mutated frames (typed errors, never a panic).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::{BufMut, BytesMut};
use common::{Accept, Msg, samples};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};
use wire_codec::{DecodeError, EncodeError, Frame, FrameCodec};

const MAX: u32 = 4096;

fn accept() -> impl Strategy<Value = Accept> {
    (
        any::<u64>(),
        any::<u32>(),
        "[a-z0-9_]{0,20}",
        proptest::collection::vec(any::<u8>(), 0..64),
        any::<Option<u16>>(),
    )
        .prop_map(|(round, slot, from, value, lease_ms)| Accept {
            round,
            slot,
            from,
            value,
            lease_ms,
        })
}

fn msg() -> impl Strategy<Value = Msg> {
    prop_oneof![
        (any::<u64>(), 0u8..5).prop_map(|(round, node)| Msg::Prepare { round, node }),
        accept().prop_map(Msg::Accept),
        Just(Msg::Nack),
        proptest::collection::vec(accept(), 0..4).prop_map(Msg::Batch),
    ]
}

fn decode_all(codec: &mut FrameCodec<Msg>, buf: &mut BytesMut) -> Result<Vec<Msg>, DecodeError> {
    let mut out = Vec::new();
    while let Some(m) = codec.decode(buf)? {
        out.push(m);
    }
    Ok(out)
}

#[test]
fn stream_of_frames_round_trips_byte_by_byte() {
    let mut codec = FrameCodec::<Msg>::new(MAX);
    let mut wire = BytesMut::new();
    for m in samples() {
        codec.encode(&m, &mut wire).unwrap();
    }
    // Pre-encoded frames mix with messages on the same stream.
    codec
        .encode(Frame::encode(&Msg::Nack, MAX).unwrap(), &mut wire)
        .unwrap();
    let mut fed = BytesMut::new();
    let mut got = Vec::new();
    for b in wire {
        fed.put_u8(b);
        got.extend(decode_all(&mut codec, &mut fed).unwrap());
    }
    let mut want = samples();
    want.push(Msg::Nack);
    assert_eq!(got, want);
    assert!(fed.is_empty());
}

#[test]
fn oversized_prefix_is_refused_before_payload_arrives() {
    let mut codec = FrameCodec::<Msg>::new(MAX);
    let mut buf = BytesMut::new();
    buf.put_u32_le(MAX + 1);
    match codec.decode(&mut buf) {
        Err(DecodeError::FrameTooLarge { len, max }) => {
            assert_eq!((len, max), (MAX + 1, MAX));
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    assert!(
        buf.capacity() < 1024,
        "nothing reserved for an oversized frame"
    );
    let mut huge = BytesMut::new();
    huge.put_u32_le(u32::MAX);
    assert!(matches!(
        codec.decode(&mut huge),
        Err(DecodeError::FrameTooLarge { .. })
    ));
}

#[test]
fn a_declared_length_reserves_nothing_until_its_bytes_arrive() {
    // A sender may claim the largest allowed frame and then send one byte (or nothing): the
    // decoder must not reserve the claimed size on the strength of the 4-byte prefix.
    let mut codec = FrameCodec::<Msg>::new(u32::MAX);
    let mut buf = BytesMut::new();
    buf.put_u32_le(32 * 1024 * 1024);
    buf.put_u8(0);
    assert!(matches!(codec.decode(&mut buf), Ok(None)));
    assert!(
        buf.capacity() < 64 * 1024,
        "capacity {} reserved for a frame of which 1 byte arrived",
        buf.capacity()
    );
    assert_eq!(buf.len(), 5, "the partial frame stays in the buffer");
}

#[test]
fn oversized_message_is_not_encoded() {
    let big = Msg::Accept(Accept {
        round: 1,
        slot: 1,
        from: "x".into(),
        value: vec![0; 200],
        lease_ms: None,
    });
    let err = Frame::encode(&big, 100).unwrap_err();
    assert!(
        matches!(err, EncodeError::FrameTooLarge { max: 100, .. }),
        "{err}"
    );
    let mut codec = FrameCodec::<Msg>::new(100);
    let mut dst = BytesMut::new();
    assert!(codec.encode(&big, &mut dst).is_err());
    assert!(dst.is_empty(), "nothing written for a refused message");
}

#[test]
fn semantic_check_refuses_after_validation() {
    let bad = Msg::Prepare { round: 1, node: 9 };
    let frame = Frame::encode(&bad, MAX).unwrap();
    let mut codec = FrameCodec::<Msg>::new(MAX);
    let mut buf = BytesMut::from(&frame.as_bytes()[..]);
    match codec.decode(&mut buf) {
        Err(DecodeError::Semantic { reason, .. }) => assert!(reason.contains("node index 9")),
        other => panic!("expected Semantic, got {other:?}"),
    }
}

#[test]
fn garbage_is_a_typed_error() {
    let mut codec = FrameCodec::<Msg>::new(MAX);
    let mut buf = BytesMut::new();
    buf.put_u32_le(8);
    buf.put_slice(&[0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef]);
    let err = codec.decode(&mut buf).unwrap_err();
    assert!(matches!(err, DecodeError::Invalid { len: 8, .. }), "{err}");
    let mut empty = BytesMut::new();
    empty.put_u32_le(0);
    assert!(matches!(
        codec.decode(&mut empty),
        Err(DecodeError::Invalid { len: 0, .. })
    ));
}

proptest! {
    #[test]
    fn any_message_round_trips(msgs in proptest::collection::vec(msg(), 1..8)) {
        let mut codec = FrameCodec::<Msg>::new(MAX);
        let mut wire = BytesMut::new();
        for m in &msgs {
            codec.encode(m, &mut wire).unwrap();
        }
        prop_assert_eq!(decode_all(&mut codec, &mut wire).unwrap(), msgs);
    }

    /// Random bytes: a typed error or a message that passed validation, never a panic.
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut codec = FrameCodec::<Msg>::new(MAX);
        let mut buf = BytesMut::from(&bytes[..]);
        let _ = decode_all(&mut codec, &mut buf);
    }

    /// A valid frame with bytes flipped, truncated or extended: typed errors, never a panic,
    /// and whatever decodes passed the semantic check.
    #[test]
    fn mutated_frames_never_panic(
        m in msg(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let frame = Frame::encode(&m, MAX).unwrap();
        let mut bytes = frame.as_bytes().to_vec();
        // Keep the prefix consistent with the payload most of the time so validation is hit.
        for (at, x) in flips {
            let i = 4 + at.index(bytes.len() - 4);
            bytes[i] ^= x | 1;
        }
        if truncate {
            let keep = 4 + cut.index(bytes.len() - 4);
            bytes.truncate(keep);
            let len = u32::try_from(keep - 4).unwrap();
            bytes[..4].copy_from_slice(&len.to_le_bytes());
        }
        let mut codec = FrameCodec::<Msg>::new(MAX);
        let mut buf = BytesMut::from(&bytes[..]);
        match codec.decode(&mut buf) {
            Ok(Some(decoded)) => {
                if let Msg::Prepare { node, .. } = decoded {
                    prop_assert!(node < 5);
                }
            }
            Ok(None) => prop_assert!(false, "complete frame not consumed"),
            Err(DecodeError::Invalid { .. } | DecodeError::Semantic { .. }) => {}
            Err(other) => prop_assert!(false, "unexpected error {}", other),
        }
    }
}
