//! Arakoon's client protocol for Rarakoon: the byte-exact codec, an async Rust client and the
//! server-side client listener a node mounts on its client port.
//!
//! - [`codec`]: `tokio_util::codec` encoders/decoders for both directions, built on one opcode
//!   table ([`Opcode`]), one request type ([`Request`]) and one response type ([`Response`]),
//!   every length bounded by [`Limits`].
//! - [`client`]: [`Client`], which finds the master, follows NotMaster, reconnects, applies
//!   timeouts and retries only what is safe.
//! - [`listener`]: [`listener::Listener`], which accepts connections, checks the prologue and
//!   dispatches requests to a [`listener::Handler`].
//!
//! The wire format is specified in docs/protocol.md (shared with the project); section numbers in
//! comments (§n) refer to it.

pub mod client;
pub mod codec;
mod error;
mod error_code;
pub mod listener;
mod opcode;
mod request;
mod response;
pub mod stream;
mod types;
mod update;
mod wire;

pub use client::{Client, ClientConfig, ClientTls, Sequence};
pub use codec::{ClientCodec, CodecError, ServerCodec, ServerFrame};
pub use error::Error;
pub use error_code::{ErrorCode, ErrorReply};
pub use opcode::{MAGIC, OpClass, Opcode, VERSION};
pub use request::{Prologue, Request};
pub use response::{Entry, Reply, Response, encode_reply};
pub use stream::ClientStream;
pub use types::{
    ClientCfg, Consistency, Interval, NamedValue, NodeAddress, NurseryCfg, RangeQuery, Routing,
    STATISTICS_SIZE_NAMES, STATISTICS_TIMING_NAMES, Value, VersionInfo,
};
pub use update::{RangeAssertion, Update};
pub use wire::{Limits, ProtocolError};
