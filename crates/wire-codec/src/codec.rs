//! `tokio_util::codec` adapter: decode validated messages from a byte stream, encode messages
//! or pre-encoded [`Frame`]s into it.
//!
//! Invariants: the decoder never reserves buffer space for a frame whose bytes have not
//! arrived: a declared length is only a claim, so the caller grows its read buffer as bytes
//! come in (a peer declaring 32 MiB and sending one byte costs one read chunk, not 32 MiB);
//! an oversized prefix is an error at once, before its payload arrives.

use crate::frame::{LENGTH_PREFIX, decode_payload, encode_payload_into};
use crate::{DecodeError, EncodeError, Frame, WireMessage};
use bytes::{Buf, BytesMut};
use rkyv::util::AlignedVec;
use std::marker::PhantomData;
use tokio_util::codec::{Decoder, Encoder};

/// Frames of messages of type `T`, each payload at most `max_frame` bytes.
#[derive(Debug)]
pub struct FrameCodec<T> {
    max_frame: u32,
    /// Aligned buffer reused for validation and serialization.
    scratch: AlignedVec,
    _message: PhantomData<fn() -> T>,
}

impl<T> FrameCodec<T> {
    /// A codec refusing payloads over `max_frame` bytes.
    pub fn new(max_frame: u32) -> Self {
        FrameCodec {
            max_frame,
            scratch: AlignedVec::new(),
            _message: PhantomData,
        }
    }

    /// The configured maximum payload length.
    pub fn max_frame(&self) -> u32 {
        self.max_frame
    }
}

impl<T> Clone for FrameCodec<T> {
    fn clone(&self) -> Self {
        FrameCodec::new(self.max_frame)
    }
}

impl<T: WireMessage> Decoder for FrameCodec<T> {
    type Item = T;
    type Error = DecodeError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<T>, DecodeError> {
        let Some(prefix) = src.first_chunk::<LENGTH_PREFIX>() else {
            return Ok(None);
        };
        let len = u32::from_le_bytes(*prefix);
        if len > self.max_frame {
            return Err(DecodeError::FrameTooLarge {
                len,
                max: self.max_frame,
            });
        }
        // Lossless: len <= max_frame <= u32::MAX, and usize is at least 32 bits here.
        let total = LENGTH_PREFIX + len as usize;
        if src.len() < total {
            // Nothing reserved here: the declared length is the sender's claim, not bytes we
            // hold (see the module invariants).
            return Ok(None);
        }
        src.advance(LENGTH_PREFIX);
        let payload = src.split_to(total - LENGTH_PREFIX);
        decode_payload(&payload, &mut self.scratch).map(Some)
    }
}

impl<T: WireMessage> Encoder<&T> for FrameCodec<T> {
    type Error = EncodeError;

    fn encode(&mut self, msg: &T, dst: &mut BytesMut) -> Result<(), EncodeError> {
        encode_payload_into(msg, &mut self.scratch, dst, self.max_frame).map(|_| ())
    }
}

impl<T> Encoder<Frame> for FrameCodec<T> {
    type Error = EncodeError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), EncodeError> {
        if frame.payload().len() > self.max_frame as usize {
            return Err(EncodeError::FrameTooLarge {
                type_name: "pre-encoded frame",
                len: frame.payload().len(),
                max: self.max_frame,
            });
        }
        dst.extend_from_slice(frame.as_bytes());
        Ok(())
    }
}
