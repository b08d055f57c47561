//! Golden bytes: the exact frames of a few messages. If this fails, the wire format changed (an
//! rkyv upgrade, a changed rkyv feature, or a changed message layout) and nodes of the old and
//! new build cannot talk: bump the protocol version in tcp-messenger before updating the bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Msg, samples};
use wire_codec::{DEFAULT_MAX_FRAME, Frame};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const GOLDEN: [&str; 4] = [
    "2800000000000000000000000700000000000000020000000000000000000000000000000000000000000000",
    "2800000002000000000000000000000000000000000000000000000000000000000000000000000000000000",
    "30000000736574206b207600010000000000000008070605040302012a0000006e6f64655f30ffffdcffffff070000000100e803",
    "88000000612d7261746865722d6c6f6e6765722d6e6f64652d6e616d65ffffff0000000001000000000000000100000099000000d4ffffffe5ffffff0000000000000000020000000000000002000000ffffffffffffffffc5ffffff030000000100000003000000bcffffff0200000000000000000000000000000000000000000000000000000000000000",
];

#[test]
fn frames_match_golden_bytes() {
    for (msg, want) in samples().iter().zip(GOLDEN) {
        let frame = Frame::encode(msg, DEFAULT_MAX_FRAME).unwrap();
        let got = hex(frame.as_bytes());
        assert_eq!(got, want, "wire format of {msg:?} changed");
    }
}

#[test]
fn golden_bytes_decode_to_the_messages() {
    let mut scratch = rkyv::util::AlignedVec::new();
    for (msg, golden) in samples().iter().zip(GOLDEN) {
        let bytes: Vec<u8> = (0..golden.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&golden[i..i + 2], 16).unwrap())
            .collect();
        let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        assert_eq!(len + 4, bytes.len());
        let decoded: Msg = wire_codec::decode_payload(&bytes[4..], &mut scratch).unwrap();
        assert_eq!(&decoded, msg);
    }
}
