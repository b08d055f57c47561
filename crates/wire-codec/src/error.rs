//! Typed errors of encoding and decoding frames; every message names what was wrong.

/// Why a received frame was refused.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The length prefix announces more than the configured maximum (nothing was allocated).
    #[error("frame of {len} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// Announced payload length.
        len: u32,
        /// Configured maximum.
        max: u32,
    },
    /// The payload is not a valid archive of the expected type.
    #[error("invalid {type_name} frame of {len} bytes: {reason}")]
    Invalid {
        /// The expected message type.
        type_name: &'static str,
        /// Payload length.
        len: usize,
        /// What rkyv's validation or deserialization reported.
        reason: String,
    },
    /// The message is well-formed but its semantic check refused it.
    #[error("{type_name} frame refused by semantic check: {reason}")]
    Semantic {
        /// The expected message type.
        type_name: &'static str,
        /// What [`WireMessage::check`](crate::WireMessage::check) reported.
        reason: String,
    },
    /// Reading from the transport failed.
    #[error("i/o error while reading a frame: {0}")]
    Io(#[from] std::io::Error),
}

/// Why a message could not be framed.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The encoded message is larger than the configured maximum frame (the peer would refuse
    /// it, so it is not sent).
    #[error("encoded {type_name} is {len} bytes, over the maximum frame of {max} bytes")]
    FrameTooLarge {
        /// The message type.
        type_name: &'static str,
        /// Encoded length.
        len: usize,
        /// Configured maximum.
        max: u32,
    },
    /// rkyv could not serialize the value.
    #[error("could not serialize {type_name}: {reason}")]
    Serialize {
        /// The message type.
        type_name: &'static str,
        /// rkyv's report.
        reason: String,
    },
    /// Writing to the transport failed.
    #[error("i/o error while writing a frame: {0}")]
    Io(#[from] std::io::Error),
}
