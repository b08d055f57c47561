//! Length-prefixed, validated rkyv frames for node-to-node messages.
//!
//! A frame is a little-endian `u32` payload length followed by the payload: an rkyv 0.8 archive
//! of one message (little-endian, naturally aligned, 32-bit relative pointers; see this crate's
//! Cargo.toml). The codec is generic over the message type: any type implementing
//! [`WireMessage`] travels, and nothing here knows about Paxos.
//!
//! Receiving never trusts the bytes: the length is checked against the configured maximum
//! *before* any buffer grows, the payload is copied into an aligned buffer and validated with
//! rkyv's checked API (bytecheck), deserialized, and finally run through the message type's
//! semantic [`WireMessage::check`]. Each failure is a typed [`DecodeError`]; nothing panics.
//!
//! Sending offers [`Frame::encode`], which encodes a message once into a cheaply clonable
//! [`Frame`] that can be written to many peers, and [`FrameCodec`], a `tokio_util::codec`
//! `Decoder`/`Encoder`.

mod codec;
mod error;
mod frame;
mod message;

pub use codec::FrameCodec;
pub use error::{DecodeError, EncodeError};
pub use frame::{Frame, LENGTH_PREFIX, decode_payload, encode_payload_into};
pub use message::WireMessage;

/// Re-export of the rkyv version this crate is built against, for deriving message types.
pub use rkyv;

/// A sensible default bound on one frame's payload (16 MiB).
pub const DEFAULT_MAX_FRAME: u32 = 16 * 1024 * 1024;
