//! Encoding a message into a frame once, and decoding one payload with full validation.
//!
//! Invariants: a [`Frame`] always holds a complete frame (prefix + payload) whose payload length
//! is at most the maximum it was encoded with; [`decode_payload`] returns a message only if it
//! passed rkyv validation and the type's semantic check.

use crate::{DecodeError, EncodeError, WireMessage};
use bytes::{BufMut, Bytes, BytesMut};
use rkyv::rancor;
use rkyv::util::AlignedVec;
use std::any::type_name;
use std::cell::Cell;

/// Bytes of the length prefix in front of every payload.
pub const LENGTH_PREFIX: usize = 4;

/// Largest scratch buffer kept per thread between encodes.
const KEEP_SCRATCH: usize = 1 << 20;

thread_local! {
    /// Serialization scratch for [`Frame::encode`] (taken out while in use, so re-entrant use
    /// just allocates a fresh one).
    static SCRATCH: Cell<AlignedVec> = Cell::new(AlignedVec::new());
}

/// One encoded frame (length prefix + payload), cheap to clone: encode a message once and write
/// the same frame to many peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame(Bytes);

impl Frame {
    /// Encode `msg` into a frame, refusing it if its payload would exceed `max_frame` bytes.
    ///
    /// Serialization goes through a per-thread scratch buffer that keeps its capacity, so the
    /// only allocation per frame is the frame itself.
    pub fn encode<T: WireMessage>(msg: &T, max_frame: u32) -> Result<Frame, EncodeError> {
        let mut scratch = SCRATCH.with(Cell::take);
        scratch.clear();
        let result = serialize(msg, scratch).map(|payload| {
            let frame = check_len::<T>(payload.len(), max_frame).map(|()| {
                let mut buf = BytesMut::with_capacity(LENGTH_PREFIX + payload.len());
                put_frame(&mut buf, &payload);
                Frame(buf.freeze())
            });
            // Keep the buffer for the next frame unless a huge message made it wasteful.
            if payload.capacity() <= KEEP_SCRATCH {
                SCRATCH.with(|cell| cell.set(payload));
            }
            frame
        });
        result?
    }

    /// The whole frame, prefix included: what goes on the wire.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// The whole frame, prefix included.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// The payload (the rkyv archive), without the prefix.
    pub fn payload(&self) -> &[u8] {
        self.0.get(LENGTH_PREFIX..).unwrap_or_default()
    }

    /// Total length on the wire.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true for a frame built by [`Frame::encode`] (the prefix is always there).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Serialize `msg` into `scratch` (cleared first, its capacity reused), append the frame to
/// `dst`, and return the payload length. Used by [`FrameCodec`](crate::FrameCodec)'s encoder.
pub fn encode_payload_into<T: WireMessage>(
    msg: &T,
    scratch: &mut AlignedVec,
    dst: &mut BytesMut,
    max_frame: u32,
) -> Result<usize, EncodeError> {
    let mut writer = std::mem::take(scratch);
    writer.clear();
    let payload = serialize(msg, writer)?;
    let len = payload.len();
    let result = check_len::<T>(len, max_frame).map(|()| put_frame(dst, &payload));
    *scratch = payload;
    result.map(|()| len)
}

/// Validate, deserialize and semantically check one payload. `scratch` is an aligned buffer
/// reused between calls (the payload is copied into it: rkyv needs aligned bytes, and network
/// buffers are not).
pub fn decode_payload<T: WireMessage>(
    payload: &[u8],
    scratch: &mut AlignedVec,
) -> Result<T, DecodeError> {
    scratch.clear();
    scratch.extend_from_slice(payload);
    let invalid = |e: rancor::Error| DecodeError::Invalid {
        type_name: type_name::<T>(),
        len: payload.len(),
        reason: e.to_string(),
    };
    let archived = rkyv::access::<T::Archived, rancor::Error>(scratch).map_err(invalid)?;
    let msg: T = rkyv::deserialize::<T, rancor::Error>(archived).map_err(invalid)?;
    msg.check().map_err(|reason| DecodeError::Semantic {
        type_name: type_name::<T>(),
        reason,
    })?;
    Ok(msg)
}

fn serialize<T: WireMessage>(msg: &T, writer: AlignedVec) -> Result<AlignedVec, EncodeError> {
    rkyv::api::high::to_bytes_in::<_, rancor::Error>(msg, writer).map_err(|e| {
        EncodeError::Serialize {
            type_name: type_name::<T>(),
            reason: e.to_string(),
        }
    })
}

fn check_len<T>(len: usize, max_frame: u32) -> Result<(), EncodeError> {
    if u32::try_from(len).is_ok_and(|l| l <= max_frame) {
        Ok(())
    } else {
        Err(EncodeError::FrameTooLarge {
            type_name: type_name::<T>(),
            len,
            max: max_frame,
        })
    }
}

/// Append prefix and payload; the caller has checked `payload.len() <= max_frame <= u32::MAX`.
fn put_frame(dst: &mut BytesMut, payload: &[u8]) {
    dst.reserve(LENGTH_PREFIX + payload.len());
    dst.put_u32_le(u32::try_from(payload.len()).unwrap_or(u32::MAX));
    dst.put_slice(payload);
}
