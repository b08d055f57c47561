//! Arakoon's return codes (docs/protocol.md §4.1) and the error frame a server sends
//! (`i32 rc` + `str message`, or `i32 1` alone for E_NO_MAGIC).

use bytes::Bytes;

macro_rules! codes {
    ($($variant:ident = $code:literal, $name:literal, $closes:literal;)*) => {
        /// A non-zero Arakoon return code. Codes this table does not know are kept as
        /// [`ErrorCode::Other`], as clients map unknown codes to a generic error.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $(
                #[doc = concat!("`", $name, "` (", stringify!($code), ")")]
                $variant,
            )*
            /// A code the table does not define.
            Other(i32),
        }

        impl ErrorCode {
            /// All defined codes.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The wire value.
            pub const fn code(self) -> i32 {
                match self { $(ErrorCode::$variant => $code,)* ErrorCode::Other(c) => c }
            }

            /// The code for a wire value (0 is success and has no `ErrorCode`).
            pub const fn from_code(code: i32) -> ErrorCode {
                match code { $($code => ErrorCode::$variant,)* other => ErrorCode::Other(other) }
            }

            /// The reference's name for the code.
            pub const fn name(self) -> &'static str {
                match self { $(ErrorCode::$variant => $name,)* ErrorCode::Other(_) => "E_UNKNOWN" }
            }

            /// Whether the reference closes the connection after sending this code
            /// (its `death` flag, docs/protocol.md §4.1 "closed after").
            pub const fn closes_connection(self) -> bool {
                match self { $(ErrorCode::$variant => $closes,)* ErrorCode::Other(_) => true }
            }
        }
    };
}

codes! {
    NoMagic = 0x01, "E_NO_MAGIC", true;
    TooManyDeadNodes = 0x02, "E_TOO_MANY_DEAD_NODES", true;
    NoHello = 0x03, "E_NO_HELLO", true;
    NotMaster = 0x04, "E_NOT_MASTER", true;
    NotFound = 0x05, "E_NOT_FOUND", false;
    WrongCluster = 0x06, "E_WRONG_CLUSTER", true;
    AssertionFailed = 0x07, "E_ASSERTION_FAILED", false;
    ReadOnly = 0x08, "E_READ_ONLY", true;
    OutsideInterval = 0x09, "E_OUTSIDE_INTERVAL", true;
    GoingDown = 0x10, "E_GOING_DOWN", true;
    NotSupported = 0x20, "E_NOT_SUPPORTED", true;
    NoLongerMaster = 0x21, "E_NO_LONGER_MASTER", false;
    BadInput = 0x26, "E_BAD_INPUT", false;
    InconsistentRead = 0x80, "E_INCONSISTENT_READ", false;
    UserFunctionFailure = 0x81, "E_USERFUNCTION_FAILURE", true;
    UserHookNotFound = 0x82, "E_USERHOOK_NOT_FOUND", true;
    MaxConnections = 0xFE, "E_MAX_CONNECTIONS", true;
    UnknownFailure = 0xFF, "E_UNKNOWN_FAILURE", true;
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({:#04x})", self.name(), self.code())
    }
}

/// An error frame: a return code and the message exactly as it travels (any bytes; for many
/// codes it is a key). E_NO_MAGIC travels without a message; its `message` is then empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    /// The return code.
    pub code: ErrorCode,
    /// The message bytes.
    pub message: Bytes,
}

impl ErrorReply {
    /// An error frame with the given code and message.
    pub fn new(code: ErrorCode, message: impl Into<Bytes>) -> Self {
        ErrorReply {
            code,
            message: message.into(),
        }
    }

    /// `05 "Not_found"`, the reference's answer for a missing key on get.
    pub fn not_found() -> Self {
        ErrorReply::new(ErrorCode::NotFound, Bytes::from_static(b"Not_found"))
    }

    /// `0xFF "unknown failure"`, the reference's catch-all.
    pub fn unknown_failure() -> Self {
        ErrorReply::new(
            ErrorCode::UnknownFailure,
            Bytes::from_static(b"unknown failure"),
        )
    }

    /// `0xFE "too many clients"`, sent when the connection limit is reached.
    pub fn too_many_clients() -> Self {
        ErrorReply::new(
            ErrorCode::MaxConnections,
            Bytes::from_static(b"too many clients"),
        )
    }

    /// `0x10 "closing socket"`, sent at accept time while the node shuts down.
    pub fn going_down() -> Self {
        ErrorReply::new(ErrorCode::GoingDown, Bytes::from_static(b"closing socket"))
    }

    /// The message as text (lossy for non-UTF-8 bytes), for logs and error messages.
    pub fn message_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.message)
    }
}

impl std::fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message_lossy())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_death_flags_follow_the_reference() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(c.code()), *c);
        }
        let kept: Vec<i32> = ErrorCode::ALL
            .iter()
            .filter(|c| !c.closes_connection())
            .map(|c| c.code())
            .collect();
        assert_eq!(kept, vec![0x05, 0x07, 0x21, 0x26, 0x80]);
        assert_eq!(ErrorCode::from_code(0x42), ErrorCode::Other(0x42));
    }
}
