//! Incremental codecs for both ends of a connection, as `tokio_util::codec` Decoder/Encoder.
//!
//! - [`ServerCodec`] decodes the prologue then requests, and encodes replies.
//! - [`ClientCodec`] encodes the prologue and requests, remembering each request's opcode in
//!   order, and decodes each reply with the shape its request calls for.
//!
//! Both are pure (no I/O): a decoder consumes bytes only once a whole frame is present, so a
//! connection cut mid-frame never yields a partial request. Every length is bounded by
//! [`Limits`] before allocation (see `wire`).

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
}

impl ServerCodec {
    /// A codec for a fresh connection (expects the prologue first).
    pub fn new(limits: Limits) -> Self {
        ServerCodec {
            limits,
            prologue_seen: false,
        }
    }
}

fn run_decoder<T>(
    buf: &mut BytesMut,
    limits: Limits,
    read: impl FnOnce(&mut Reader<'_>) -> Result<T, ReadError>,
) -> Result<Option<T>, ProtocolError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut reader = Reader::new(&buf[..], limits);
    match read(&mut reader) {
        Ok(item) => {
            let used = reader.position();
            buf.advance(used);
            Ok(Some(item))
        }
        Err(ReadError::Incomplete) => {
            // Lengths are budget-checked as they are read, so an incomplete frame never holds
            // more than the budget; this guard keeps that true whatever the parser does.
            if buf.len() > limits.max_frame_bytes.saturating_add(16) {
                return Err(ProtocolError::TooLarge {
                    field: "frame",
                    offset: 0,
                    len: buf.len() as u64,
                    max: limits.max_frame_bytes,
                });
            }
            Ok(None)
        }
        Err(ReadError::Invalid(e)) => Err(e),
    }
}

impl Decoder for ServerCodec {
    type Item = ServerFrame;
    type Error = CodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<ServerFrame>, CodecError> {
        if self.prologue_seen {
            Ok(run_decoder(buf, self.limits, Request::decode)?.map(ServerFrame::Request))
        } else {
            let prologue = run_decoder(buf, self.limits, Prologue::decode)?;
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
}

impl ClientCodec {
    /// A codec whose replies are bounded by `limits`.
    pub fn new(limits: Limits) -> Self {
        ClientCodec {
            limits,
            awaiting: VecDeque::new(),
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
                return Ok(Some((opcode, Ok(Response::UserHook))));
            }
        }
        let reply = run_decoder(buf, self.limits, |r| Response::decode(opcode, r))?;
        if reply.is_some() {
            self.awaiting.pop_front();
        }
        Ok(reply.map(|reply| (opcode, reply)))
    }
}
