//! The errors of the store.
//!
//! [`StoreError`] is what a client sees: every variant maps to one Arakoon return code
//! ([`StoreError::arakoon_code`]) and its message is the one Arakoon sends (docs/protocol.md §4.2).
//! Keys are arbitrary bytes, so the exact wire message is [`StoreError::wire_message`]; `Display`
//! shows the same text with invalid UTF-8 replaced, for logs and humans.
//!
//! [`StaleIndex`] and [`SnapshotError`] are never sent to clients: they are the node's bugs or a
//! corrupt snapshot, and say so with the numbers needed to find out which.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;

/// Arakoon return codes the store can produce (docs/protocol.md §4.1).
pub mod codes {
    /// `E_NOT_FOUND`: a missing key.
    pub const NOT_FOUND: u32 = 0x05;
    /// `E_ASSERTION_FAILED`: assert, assert_exists or assert_range failed.
    pub const ASSERTION_FAILED: u32 = 0x07;
    /// `E_BAD_INPUT`: unknown user function, or input the store refuses.
    pub const BAD_INPUT: u32 = 0x26;
    /// `E_USERFUNCTION_FAILURE`: a user function failed.
    pub const USER_FUNCTION_FAILURE: u32 = 0x81;
}

/// An error of one update or read, as Arakoon reports it to a client.
///
/// An update that fails leaves the store exactly as it was before the update (a sequence is one
/// update, so a failing sequence leaves nothing of its earlier parts behind).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A `get` (or a user function's `get_exn`-style read) of a missing key. Arakoon's raw
    /// `Not_found`: code 0x05, message `Not_found`.
    #[error("Not_found")]
    NotFound,
    /// `delete` of a missing key (standalone or inside a sequence), or a `multi_get` with a
    /// missing key: code 0x05, the message is the key.
    #[error("{}", lossy(.key))]
    KeyNotFound {
        /// The missing key.
        key: Bytes,
    },
    /// `assert` or `assert_exists` failed: code 0x07, the message is the key.
    #[error("{}", lossy(.key))]
    AssertionFailed {
        /// The key whose check failed.
        key: Bytes,
    },
    /// `assert_range` (ContainsExactly) failed: code 0x07, message
    /// `ContainsExactly [ "<expected joined by "; ">" ] actual: <actual joined by ",">`.
    #[error("{}", lossy(&assert_range_message(.expected, .actual)))]
    AssertRangeFailed {
        /// The expected keys as Arakoon shows them: the reverse of the client's wire order.
        expected: Vec<Bytes>,
        /// The keys that do start with the prefix, ascending.
        actual: Vec<Bytes>,
    },
    /// A user function name that is not registered: code 0x26, message
    /// `User function "<name>" could not be found` (the name in OCaml `%S` quoting).
    #[error("User function {} could not be found", ocaml_quoted(.name))]
    UserFunctionNotFound {
        /// The requested name.
        name: Bytes,
    },
    /// A registered user function failed: code 0x81, the message is the function's own.
    #[error("{message}")]
    UserFunctionFailed {
        /// The function's name (for logs; not part of the message).
        name: Bytes,
        /// What the function reported.
        message: String,
    },
    /// Sequences nested deeper than [`crate::MAX_SEQUENCE_DEPTH`]: code 0x26. Arakoon has no such
    /// limit; Rarakoon has one so that a hostile update cannot exhaust the stack.
    #[error("sequence nesting deeper than {limit} levels is not accepted")]
    SequenceTooDeep {
        /// The deepest nesting accepted.
        limit: usize,
    },
}

impl StoreError {
    /// The Arakoon return code this error is sent with (docs/protocol.md §4.1).
    #[must_use]
    pub fn arakoon_code(&self) -> u32 {
        match self {
            Self::NotFound | Self::KeyNotFound { .. } => codes::NOT_FOUND,
            Self::AssertionFailed { .. } | Self::AssertRangeFailed { .. } => {
                codes::ASSERTION_FAILED
            }
            Self::UserFunctionNotFound { .. } | Self::SequenceTooDeep { .. } => codes::BAD_INPUT,
            Self::UserFunctionFailed { .. } => codes::USER_FUNCTION_FAILURE,
        }
    }

    /// The exact message bytes Arakoon sends after the return code. Equal to `Display` when
    /// the keys involved are UTF-8; keys are sent raw, so this is what the codec must write.
    #[must_use]
    pub fn wire_message(&self) -> Cow<'_, [u8]> {
        match self {
            Self::KeyNotFound { key } | Self::AssertionFailed { key } => Cow::Borrowed(key),
            Self::AssertRangeFailed { expected, actual } => {
                Cow::Owned(assert_range_message(expected, actual))
            }
            Self::NotFound
            | Self::UserFunctionNotFound { .. }
            | Self::UserFunctionFailed { .. }
            | Self::SequenceTooDeep { .. } => Cow::Owned(self.to_string().into_bytes()),
        }
    }
}

/// Applying at an index at or below the store's applied index: the node tried to apply a
/// log entry twice (or out of order). The store is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "refusing to apply log index {index}: the store has already applied index {applied}; \
     applying it again would double-apply updates (a bug in the caller)"
)]
pub struct StaleIndex {
    /// The index the caller tried to apply.
    pub index: u64,
    /// The store's applied index.
    pub applied: u64,
}

/// A snapshot that cannot be loaded into a store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Pairs must come in strictly ascending key order (that is how the store writes them); a
    /// snapshot that breaks this is corrupt or was not written by a store.
    #[error(
        "snapshot pair #{position} has key {key} which does not sort after the previous key \
         {previous}: snapshot pairs must be in strictly ascending key order"
    )]
    KeysOutOfOrder {
        /// Zero-based position of the offending pair.
        position: u64,
        /// The offending key, escaped for display.
        key: String,
        /// The key before it, escaped for display.
        previous: String,
    },
}

/// Renders bytes for a log line: printable ASCII as is, the rest escaped.
pub(crate) fn escaped(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

fn lossy(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// Arakoon's `Range_assertion.to_string` followed by the actual keys:
/// `ContainsExactly [ %S ]` of the expected keys joined by `"; "`, then ` actual: ` and the
/// actual keys joined by `,` (raw bytes).
fn assert_range_message(expected: &[Bytes], actual: &[Bytes]) -> Vec<u8> {
    let joined_expected = join(expected, b"; ");
    let mut message = Vec::with_capacity(joined_expected.len() + 32);
    message.extend_from_slice(b"ContainsExactly [ ");
    message.extend_from_slice(ocaml_quoted(&joined_expected).to_string().as_bytes());
    message.extend_from_slice(b" ] actual: ");
    message.extend_from_slice(&join(actual, b","));
    message
}

fn join(parts: &[Bytes], separator: &[u8]) -> Vec<u8> {
    let mut joined = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            joined.extend_from_slice(separator);
        }
        joined.extend_from_slice(part);
    }
    joined
}

/// OCaml's `%S`: a double-quoted string literal with `String.escaped` applied. Printable ASCII
/// stays, `"` and `\` get a backslash, `\n \t \r \b` their escapes, every other byte `\ddd`
/// (three decimal digits).
pub(crate) fn ocaml_quoted(bytes: &[u8]) -> OcamlQuoted<'_> {
    OcamlQuoted(bytes)
}

/// Display adapter for [`ocaml_quoted`].
pub(crate) struct OcamlQuoted<'a>(&'a [u8]);

impl fmt::Display for OcamlQuoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for &byte in self.0 {
            match byte {
                b'"' => f.write_str("\\\"")?,
                b'\\' => f.write_str("\\\\")?,
                b'\n' => f.write_str("\\n")?,
                b'\t' => f.write_str("\\t")?,
                b'\r' => f.write_str("\\r")?,
                0x08 => f.write_str("\\b")?,
                b' '..=b'~' => fmt::Write::write_char(f, char::from(byte))?,
                other => write!(f, "\\{other:03}")?,
            }
        }
        f.write_str("\"")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn ocaml_quoting_matches_string_escaped() {
        assert_eq!(ocaml_quoted(b"plain name").to_string(), "\"plain name\"");
        assert_eq!(ocaml_quoted(b"a\"b\\c").to_string(), "\"a\\\"b\\\\c\"");
        assert_eq!(ocaml_quoted(b"\n\t\r\x08").to_string(), "\"\\n\\t\\r\\b\"");
        assert_eq!(
            ocaml_quoted(b"\x00\x7f\xff").to_string(),
            "\"\\000\\127\\255\""
        );
    }

    #[test]
    fn unknown_user_function_message_and_code() {
        let error = StoreError::UserFunctionNotFound {
            name: Bytes::from_static(b"my_fn"),
        };
        assert_eq!(
            error.to_string(),
            "User function \"my_fn\" could not be found"
        );
        assert_eq!(error.arakoon_code(), 0x26);
        assert_eq!(
            &*error.wire_message(),
            b"User function \"my_fn\" could not be found"
        );
    }

    #[test]
    fn key_messages_are_the_raw_key() {
        let key = Bytes::from_static(b"k\xff\x00");
        let missing = StoreError::KeyNotFound { key: key.clone() };
        assert_eq!(missing.arakoon_code(), 0x05);
        assert_eq!(&*missing.wire_message(), b"k\xff\x00");
        assert_eq!(missing.to_string(), "k\u{fffd}\u{0}");
        let failed = StoreError::AssertionFailed { key };
        assert_eq!(failed.arakoon_code(), 0x07);
        assert_eq!(&*failed.wire_message(), b"k\xff\x00");
        assert_eq!(StoreError::NotFound.to_string(), "Not_found");
        assert_eq!(&*StoreError::NotFound.wire_message(), b"Not_found");
        assert_eq!(StoreError::NotFound.arakoon_code(), 0x05);
    }

    #[test]
    fn assert_range_message_is_arakoons() {
        let error = StoreError::AssertRangeFailed {
            expected: vec![Bytes::from_static(b"p1"), Bytes::from_static(b"p2")],
            actual: vec![Bytes::from_static(b"p1"), Bytes::from_static(b"p3")],
        };
        assert_eq!(error.arakoon_code(), 0x07);
        assert_eq!(
            error.to_string(),
            "ContainsExactly [ \"p1; p2\" ] actual: p1,p3"
        );
        assert_eq!(
            &*error.wire_message(),
            b"ContainsExactly [ \"p1; p2\" ] actual: p1,p3"
        );
        let empty = StoreError::AssertRangeFailed {
            expected: vec![],
            actual: vec![],
        };
        assert_eq!(empty.to_string(), "ContainsExactly [ \"\" ] actual: ");
    }

    #[test]
    fn other_codes() {
        let failed = StoreError::UserFunctionFailed {
            name: Bytes::from_static(b"f"),
            message: "boom".into(),
        };
        assert_eq!(failed.arakoon_code(), 0x81);
        assert_eq!(failed.to_string(), "boom");
        assert_eq!(
            StoreError::SequenceTooDeep { limit: 3 }.arakoon_code(),
            0x26
        );
        let stale = StaleIndex {
            index: 4,
            applied: 7,
        };
        assert!(stale.to_string().contains("log index 4"));
        assert!(stale.to_string().contains("applied index 7"));
    }
}
