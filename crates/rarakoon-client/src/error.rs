//! The client's error type: one variant per Arakoon return code, plus what can go wrong
//! around the protocol (connecting, timeouts, no master, unknown outcome of a write).

use std::time::Duration;

use bytes::Bytes;

use crate::codec::CodecError;
use crate::error_code::{ErrorCode, ErrorReply};
use crate::opcode::Opcode;
use crate::wire::ProtocolError;

/// A server message (any bytes), shown as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message(pub Bytes);

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

/// Everything a [`crate::Client`] call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 0x01: the server did not recognise the command word.
    #[error("server rejected the command word (E_NO_MAGIC)")]
    NoMagic,
    /// 0x02 (Arakoon ≤ 1.6): too many dead nodes.
    #[error("too many dead nodes: {0}")]
    TooManyDeadNodes(Message),
    /// 0x03: never sent by Arakoon.
    #[error("no hello: {0}")]
    NoHello(Message),
    /// 0x04: the node is not the master; the message names the master or is `None`.
    #[error("not master (master: {0})")]
    NotMaster(Message),
    /// 0x05: a missing key; the message is `Not_found` or the key.
    #[error("not found: {0}")]
    NotFound(Message),
    /// 0x06: wrong cluster.
    #[error("wrong cluster: {0}")]
    WrongCluster(Message),
    /// 0x07: an assertion failed; the message is usually the key.
    #[error("assertion failed: {0}")]
    AssertionFailed(Message),
    /// 0x08: the cluster is read-only; the message is the node name.
    #[error("cluster is read-only (node {0})")]
    ReadOnly(Message),
    /// 0x09: the key is outside the node's interval.
    #[error("key outside the node's interval: {0}")]
    OutsideInterval(Message),
    /// 0x10: the node is going down.
    #[error("node is going down: {0}")]
    GoingDown(Message),
    /// 0x20: the operation is not supported here.
    #[error("not supported: {0}")]
    NotSupported(Message),
    /// 0x21: the master lost its role while the request was in flight.
    #[error("no longer master: {0}")]
    NoLongerMaster(Message),
    /// 0x26: bad input (unknown user function, update too large, request too large).
    #[error("bad input: {0}")]
    BadInput(Message),
    /// 0x80: the node's store is older than the requested index.
    #[error("inconsistent read: {0}")]
    InconsistentRead(Message),
    /// 0x81: a user function failed.
    #[error("user function failed: {0}")]
    UserFunctionFailure(Message),
    /// 0x82: no such user hook.
    #[error("user hook not found: {0}")]
    UserHookNotFound(Message),
    /// 0xFE: the node has too many client connections.
    #[error("too many client connections: {0}")]
    MaxConnections(Message),
    /// 0xFF: the server's catch-all.
    #[error("unknown failure: {0}")]
    UnknownFailure(Message),
    /// A return code this client does not know.
    #[error("server error code {code:#x}: {message}")]
    OtherCode {
        /// The code.
        code: i32,
        /// The message.
        message: Message,
    },
    /// A write was sent but its outcome is unknown: the connection failed or timed out after
    /// the request left, or the node answered `E_NO_LONGER_MASTER` (Arakoon's code for "may or
    /// may not have happened": the master lost its role, or the node stopped, while the write
    /// was in flight). It may or may not have been applied; the client never retries it. Match
    /// it, or use [`Error::is_indeterminate`]. (`E_GOING_DOWN`, [`Error::GoingDown`], is
    /// definite: the node refused the write before proposing it.)
    #[error("outcome of {opcode:?} unknown: {cause}")]
    Indeterminate {
        /// The write whose outcome is unknown.
        opcode: Opcode,
        /// What happened.
        cause: String,
    },
    /// No node answered as master within the attempts allowed.
    #[error("no master found among {nodes} configured node(s): {last_error}")]
    NoMaster {
        /// Number of configured nodes.
        nodes: usize,
        /// The last failure seen.
        last_error: String,
    },
    /// Connecting to a node failed.
    #[error("cannot connect to node {node} at {addr}: {source}")]
    Connect {
        /// Node name.
        node: String,
        /// Its address.
        addr: std::net::SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// A request did not complete in time.
    #[error("{opcode:?} timed out after {timeout:?}")]
    Timeout {
        /// The request.
        opcode: Opcode,
        /// The timeout applied.
        timeout: Duration,
    },
    /// The connection failed.
    #[error("i/o error talking to node {node}: {source}")]
    Io {
        /// Node name.
        node: String,
        /// The error.
        source: std::io::Error,
    },
    /// The connection closed before the reply arrived.
    #[error("node {node} closed the connection before replying")]
    Closed {
        /// Node name.
        node: String,
    },
    /// The node's bytes broke the protocol.
    #[error("protocol error from node {node}: {source}")]
    Protocol {
        /// Node name.
        node: String,
        /// The decoding failure.
        source: ProtocolError,
    },
    /// The node answered with a response of another kind than the request.
    #[error("node answered {got:?} to a {expected:?} request")]
    UnexpectedResponse {
        /// The request.
        expected: Opcode,
        /// The response kind received.
        got: Opcode,
    },
    /// The client configuration is unusable.
    #[error("invalid client configuration: {0}")]
    Config(String),
}

impl Error {
    /// Whether the operation may or may not have taken effect: a write whose outcome is
    /// unknown ([`Error::Indeterminate`], or a raw `E_NO_LONGER_MASTER`). A caller that must
    /// know reads the key back before retrying a non-idempotent write. Every other error is
    /// definite: the operation did not take effect.
    pub fn is_indeterminate(&self) -> bool {
        matches!(self, Error::Indeterminate { .. } | Error::NoLongerMaster(_))
    }

    /// The Arakoon return code this error carries, if it came from a server error frame.
    pub fn code(&self) -> Option<ErrorCode> {
        Some(match self {
            Error::NoMagic => ErrorCode::NoMagic,
            Error::TooManyDeadNodes(_) => ErrorCode::TooManyDeadNodes,
            Error::NoHello(_) => ErrorCode::NoHello,
            Error::NotMaster(_) => ErrorCode::NotMaster,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::WrongCluster(_) => ErrorCode::WrongCluster,
            Error::AssertionFailed(_) => ErrorCode::AssertionFailed,
            Error::ReadOnly(_) => ErrorCode::ReadOnly,
            Error::OutsideInterval(_) => ErrorCode::OutsideInterval,
            Error::GoingDown(_) => ErrorCode::GoingDown,
            Error::NotSupported(_) => ErrorCode::NotSupported,
            Error::NoLongerMaster(_) => ErrorCode::NoLongerMaster,
            Error::BadInput(_) => ErrorCode::BadInput,
            Error::InconsistentRead(_) => ErrorCode::InconsistentRead,
            Error::UserFunctionFailure(_) => ErrorCode::UserFunctionFailure,
            Error::UserHookNotFound(_) => ErrorCode::UserHookNotFound,
            Error::MaxConnections(_) => ErrorCode::MaxConnections,
            Error::UnknownFailure(_) => ErrorCode::UnknownFailure,
            Error::OtherCode { code, .. } => ErrorCode::Other(*code),
            _ => return None,
        })
    }

    /// The server's message, if this error came from a server error frame.
    pub fn message(&self) -> Option<&Bytes> {
        match self {
            Error::TooManyDeadNodes(m)
            | Error::NoHello(m)
            | Error::NotMaster(m)
            | Error::NotFound(m)
            | Error::WrongCluster(m)
            | Error::AssertionFailed(m)
            | Error::ReadOnly(m)
            | Error::OutsideInterval(m)
            | Error::GoingDown(m)
            | Error::NotSupported(m)
            | Error::NoLongerMaster(m)
            | Error::BadInput(m)
            | Error::InconsistentRead(m)
            | Error::UserFunctionFailure(m)
            | Error::UserHookNotFound(m)
            | Error::MaxConnections(m)
            | Error::UnknownFailure(m)
            | Error::OtherCode { message: m, .. } => Some(&m.0),
            _ => None,
        }
    }

    pub(crate) fn from_codec(node: &str, e: CodecError) -> Error {
        match e {
            CodecError::Io(source) => Error::Io {
                node: node.to_owned(),
                source,
            },
            CodecError::Protocol(source) => Error::Protocol {
                node: node.to_owned(),
                source,
            },
        }
    }
}

impl From<ErrorReply> for Error {
    fn from(reply: ErrorReply) -> Error {
        let m = Message(reply.message);
        match reply.code {
            ErrorCode::NoMagic => Error::NoMagic,
            ErrorCode::TooManyDeadNodes => Error::TooManyDeadNodes(m),
            ErrorCode::NoHello => Error::NoHello(m),
            ErrorCode::NotMaster => Error::NotMaster(m),
            ErrorCode::NotFound => Error::NotFound(m),
            ErrorCode::WrongCluster => Error::WrongCluster(m),
            ErrorCode::AssertionFailed => Error::AssertionFailed(m),
            ErrorCode::ReadOnly => Error::ReadOnly(m),
            ErrorCode::OutsideInterval => Error::OutsideInterval(m),
            ErrorCode::GoingDown => Error::GoingDown(m),
            ErrorCode::NotSupported => Error::NotSupported(m),
            ErrorCode::NoLongerMaster => Error::NoLongerMaster(m),
            ErrorCode::BadInput => Error::BadInput(m),
            ErrorCode::InconsistentRead => Error::InconsistentRead(m),
            ErrorCode::UserFunctionFailure => Error::UserFunctionFailure(m),
            ErrorCode::UserHookNotFound => Error::UserHookNotFound(m),
            ErrorCode::MaxConnections => Error::MaxConnections(m),
            ErrorCode::UnknownFailure => Error::UnknownFailure(m),
            ErrorCode::Other(code) => Error::OtherCode { code, message: m },
        }
    }
}
