//! Incremental codecs for both ends of a connection, as `tokio_util::codec` Decoder/Encoder.
//!
//! - [`ServerCodec`] decodes the prologue then requests, and encodes replies.
//! - [`ClientCodec`] encodes the prologue and requests, remembering each request's opcode in
//!   order, and decodes each reply with the shape its request calls for.
//!
//! Both are pure (no I/O): a decoder consumes bytes only once a whole frame is present, so a
//! connection cut mid-frame never yields a partial request. Every length is bounded by
//! [`Limits`] before allocation (see `wire`). A frame that is still incomplete is not parsed
//! again until the bytes it is known to need at least have arrived, so receiving a frame in
//! chunks costs about linear time; a codec must therefore be used with one buffer for its
//! whole life (as `Framed` and the listener do).

use std::collections::VecDeque;

use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::error_code::{ErrorCode, ErrorReply};
use crate::opcode::Opcode;
use crate::request::{Prologue, Request};
use crate::response::{Reply, Response, encode_reply};
use crate::wire::{Limits, ProtocolError, ReadError, Reader};

/// A codec failure: broken bytes or a failed read/write.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The bytes violate the protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl ProtocolError {
    /// What an Arakoon server answers to a request that failed this way before the connection
    /// is closed; `None` means close silently (a bad prologue).
    pub fn server_reply(&self) -> Option<ErrorReply> {
        match self {
            ProtocolError::BadPrologue { .. } | ProtocolError::UnexpectedResponse { .. } => None,
            ProtocolError::BadMagic { .. } => Some(ErrorReply::new(ErrorCode::NoMagic, "")),
            ProtocolError::UnknownOpcode { opcode } => Some(ErrorReply::new(
                ErrorCode::NotFound,
                format!("{opcode:x}: command not found"),
            )),
            ProtocolError::TooLarge { .. } => {
                Some(ErrorReply::new(ErrorCode::BadInput, self.to_string()))
            }
            ProtocolError::NotASequence { .. } => Some(ErrorReply::new(
                ErrorCode::UnknownFailure,
                "should have been a sequence",
            )),
            _ => Some(ErrorReply::new(ErrorCode::UnknownFailure, self.to_string())),
        }
    }
}

/// One decoded item on the server side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerFrame {
    /// The connection prologue (always the first item).
    Prologue(Prologue),
    /// A request.
    Request(Request),
}

/// Server side: decodes the prologue and requests, encodes replies.
#[derive(Debug, Clone)]
pub struct ServerCodec {
    limits: Limits,
    prologue_seen: bool,
    /// Bytes the frame being received has at least (see `run_decoder`).
    needed: usize,
}

impl ServerCodec {
    /// A codec for a fresh connection (expects the prologue first).
    pub fn new(limits: Limits) -> Self {
        ServerCodec {
            limits,
            prologue_seen: false,
            needed: 0,
        }
    }
}

/// The largest partial frame a decoder keeps: the frame budget plus a little slack for the
/// fixed-size header fields around it.
fn max_buffered(limits: Limits) -> usize {
    limits.max_frame_bytes.saturating_add(16)
}

/// Decodes one frame from the front of `buf`, consuming it only when it is complete.
///
/// `needed` carries, between calls, the length the frame in hand is known to have at least
/// (from the previous incomplete attempt); until that many bytes are buffered the frame is not
/// looked at again, and once a frame was found incomplete it is first skimmed (walked without
/// copying strings) and only decoded for real when complete. Without this, a large frame made
/// of many small elements (a `multi_get` of a million keys) arriving in small chunks would be
/// decoded from its start once per chunk: quadratic time and allocations. The caller must keep
/// using the same buffer with the same `needed`.
fn run_decoder<T>(
    buf: &mut BytesMut,
    limits: Limits,
    needed: &mut usize,
    read: impl Fn(&mut Reader<'_>) -> Result<T, ReadError>,
) -> Result<Option<T>, ProtocolError> {
    if buf.is_empty() || buf.len() < (*needed).min(max_buffered(limits).saturating_add(1)) {
        return Ok(None);
    }
    if *needed > 0 {
        let mut skim = Reader::skimming(&buf[..], limits);
        match read(&mut skim) {
            Ok(_) => {}
            Err(ReadError::Incomplete) => return incomplete(buf, limits, needed, &skim),
            Err(ReadError::Invalid(e)) => return Err(e),
        }
    }
    let mut reader = Reader::new(&buf[..], limits);
    match read(&mut reader) {
        Ok(item) => {
            let used = reader.position();
            buf.advance(used);
            *needed = 0;
            Ok(Some(item))
        }
        Err(ReadError::Incomplete) => incomplete(buf, limits, needed, &reader),
        Err(ReadError::Invalid(e)) => Err(e),
    }
}

/// The frame at the front of `buf` is not complete: remember what it needs at least.
fn incomplete<T>(
    buf: &BytesMut,
    limits: Limits,
    needed: &mut usize,
    reader: &Reader<'_>,
) -> Result<Option<T>, ProtocolError> {
    // Lengths are budget-checked as they are read, so an incomplete frame never holds more
    // than the budget; this guard keeps that true whatever the parser does.
    if buf.len() > max_buffered(limits) {
        return Err(ProtocolError::TooLarge {
            field: "frame",
            offset: 0,
            len: buf.len() as u64,
            max: limits.max_frame_bytes,
        });
    }
    *needed = reader.bytes_needed();
    Ok(None)
}

impl Decoder for ServerCodec {
    type Item = ServerFrame;
    type Error = CodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<ServerFrame>, CodecError> {
        if self.prologue_seen {
            let request = run_decoder(buf, self.limits, &mut self.needed, Request::decode)?;
            Ok(request.map(ServerFrame::Request))
        } else {
            let prologue = run_decoder(buf, self.limits, &mut self.needed, Prologue::decode)?;
            self.prologue_seen = prologue.is_some();
            Ok(prologue.map(ServerFrame::Prologue))
        }
    }
}

impl Encoder<&Reply> for ServerCodec {
    type Error = CodecError;

    fn encode(&mut self, reply: &Reply, dst: &mut BytesMut) -> Result<(), CodecError> {
        encode_reply(reply, dst);
        Ok(())
    }
}

impl Encoder<&ErrorReply> for ServerCodec {
    type Error = CodecError;

    fn encode(&mut self, reply: &ErrorReply, dst: &mut BytesMut) -> Result<(), CodecError> {
        reply.encode(dst);
        Ok(())
    }
}

/// Client side: encodes the prologue and requests, decodes replies in request order.
#[derive(Debug, Clone)]
pub struct ClientCodec {
    limits: Limits,
    awaiting: VecDeque<Opcode>,
    /// Bytes the reply being received has at least (see `run_decoder`).
    needed: usize,
}

impl ClientCodec {
    /// A codec whose replies are bounded by `limits`.
    pub fn new(limits: Limits) -> Self {
        ClientCodec {
            limits,
            awaiting: VecDeque::new(),
            needed: 0,
        }
    }

    /// Number of requests sent whose reply has not been decoded yet.
    pub fn awaiting(&self) -> usize {
        self.awaiting.len()
    }
}

impl Encoder<&Prologue> for ClientCodec {
    type Error = CodecError;

    fn encode(&mut self, prologue: &Prologue, dst: &mut BytesMut) -> Result<(), CodecError> {
        prologue.encode(dst);
        Ok(())
    }
}

impl Encoder<&Request> for ClientCodec {
    type Error = CodecError;

    fn encode(&mut self, request: &Request, dst: &mut BytesMut) -> Result<(), CodecError> {
        request.encode(dst);
        self.awaiting.push_back(request.opcode());
        Ok(())
    }
}

impl Decoder for ClientCodec {
    /// The opcode answered and its reply.
    type Item = (Opcode, Reply);
    type Error = CodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<(Opcode, Reply)>, CodecError> {
        let Some(&opcode) = self.awaiting.front() else {
            if buf.is_empty() {
                return Ok(None);
            }
            return Err(ProtocolError::UnexpectedResponse { len: buf.len() }.into());
        };
        if opcode == Opcode::UserHook {
            // A hook that exists writes nothing of its own: a zero word is the hook's first
            // bytes, not an rc. Only an error frame is ours to decode.
            if buf.len() < 4 {
                return Ok(None);
            }
            if buf[..4] == [0, 0, 0, 0] {
                self.awaiting.pop_front();
                self.needed = 0;
                return Ok(Some((opcode, Ok(Response::UserHook))));
            }
        }
        let reply = run_decoder(buf, self.limits, &mut self.needed, |r| {
            Response::decode(opcode, r)
        })?;
        if reply.is_some() {
            self.awaiting.pop_front();
        }
        Ok(reply.map(|reply| (opcode, reply)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use bytes::Bytes;

    use super::*;
    use crate::types::Consistency;

    fn multi_get_wire(keys: usize) -> BytesMut {
        let mut wire = BytesMut::new();
        Prologue {
            cluster_id: Bytes::from_static(b"c"),
        }
        .encode(&mut wire);
        Request::MultiGet {
            consistency: Consistency::Consistent,
            keys: (0..keys)
                .map(|i| Bytes::from(format!("key{i:06}")))
                .collect(),
        }
        .encode(&mut wire);
        wire
    }

    #[test]
    fn an_incomplete_list_is_not_parsed_again_before_its_remaining_elements_can_be_there() {
        let wire = multi_get_wire(1000);
        let mut codec = ServerCodec::new(Limits::default());
        let mut buf = BytesMut::from(&wire[..]);
        assert!(matches!(
            codec.decode(&mut buf).unwrap(),
            Some(ServerFrame::Prologue(_))
        ));
        let request = buf.split();
        // 100 bytes of the request: command word, cons, count and a few keys.
        buf.extend_from_slice(&request[..100]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        // Each key is 13 bytes (4 + 9); 991 more keys need at least 4 bytes each.
        let keys_complete = (100 - 9) / 13;
        assert!(
            codec.needed >= 100 + (1000 - keys_complete - 1) * 4,
            "needed {}",
            codec.needed
        );
        assert!(codec.needed <= request.len());
        // Below that bound the frame is not parsed (nothing changes), at the end it decodes.
        let known = codec.needed;
        buf.extend_from_slice(&request[100..known - 1]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert_eq!(codec.needed, known);
        buf.extend_from_slice(&request[known - 1..]);
        let Some(ServerFrame::Request(Request::MultiGet { keys, .. })) =
            codec.decode(&mut buf).unwrap()
        else {
            panic!("the whole request is buffered");
        };
        assert_eq!(keys.len(), 1000);
        assert!(buf.is_empty());
        assert_eq!(codec.needed, 0);
    }

    #[test]
    fn a_frame_fed_in_small_chunks_takes_few_parses() {
        // Counts parse attempts through `needed` changes: feeding 40 000 keys (520 KB) in
        // 1 KiB chunks parses the frame a few dozen times, not once per chunk (~500).
        let wire = multi_get_wire(40_000);
        let mut codec = ServerCodec::new(Limits::default());
        let mut buf = BytesMut::new();
        let mut parses = 0;
        let mut requests = 0;
        for chunk in wire.chunks(1024) {
            buf.extend_from_slice(chunk);
            loop {
                let before = (codec.needed, buf.len());
                match codec.decode(&mut buf).unwrap() {
                    Some(ServerFrame::Request(_)) => requests += 1,
                    Some(ServerFrame::Prologue(_)) => {}
                    None => {
                        if codec.needed != before.0 {
                            parses += 1;
                        }
                        break;
                    }
                }
            }
        }
        assert_eq!(requests, 1);
        assert!(parses < 60, "{parses} parses of one frame");
    }

    #[test]
    fn a_frame_found_incomplete_reports_the_same_error_as_one_that_arrived_whole() {
        // RANGE whose `finc` byte is 07: invalid. Delivered whole, or after a first piece
        // (so the skim walks it first), the error is the same.
        let mut wire = BytesMut::new();
        Prologue {
            cluster_id: Bytes::from_static(b"c"),
        }
        .encode(&mut wire);
        wire.extend_from_slice(&[0x0b, 0x00, 0xff, 0xb1, 0x00, 0x01, 1, 0, 0, 0, b'a', 0x07]);
        wire.extend_from_slice(&[0x00, 0x01, 0xff, 0xff, 0xff, 0xff]);
        let whole = {
            let mut codec = ServerCodec::new(Limits::default());
            let mut buf = BytesMut::from(&wire[..]);
            codec.decode(&mut buf).unwrap();
            codec.decode(&mut buf).unwrap_err().to_string()
        };
        let mut codec = ServerCodec::new(Limits::default());
        let mut buf = BytesMut::from(&wire[..24]);
        codec.decode(&mut buf).unwrap();
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(codec.needed > 0);
        buf.extend_from_slice(&wire[24..]);
        let pieced = codec.decode(&mut buf).unwrap_err().to_string();
        assert_eq!(pieced, whole);
        assert!(whole.contains("range first_inclusive"), "{whole}");
    }
}
