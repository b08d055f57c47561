//! The Paxos payload of one client update: a `kv_store::Update` in Arakoon's update encoding.
//!
//! paxos-core treats payloads as opaque bytes; the node encodes each client update once when it
//! proposes it and decodes it when the committed value is applied (on every node, and again
//! on replay after a restart). The encoding is Arakoon's own update format (docs/protocol.md §7.1:
//! `i32` tag, `i32`-length-prefixed strings, `u8`-flagged options), so a log entry reads like
//! an Arakoon tlog entry.
//!
//! Decoding never trusts its input (a WAL written by another version, a peer's catch-up): every
//! length and count is checked against the bytes that remain before anything is allocated,
//! nesting is bounded by `kv_store::MAX_SEQUENCE_DEPTH`, and trailing bytes are an error.
//! Keys and values are zero-copy slices of the payload buffer.

use bytes::{BufMut, Bytes, BytesMut};
use kv_store::{MAX_SEQUENCE_DEPTH, RangeAssertion, Update};

/// A payload that is not a valid encoded update.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid update payload at byte {offset}: {problem}")]
pub struct PayloadError {
    /// Offset of the problem inside the payload.
    pub offset: usize,
    /// What is wrong.
    pub problem: String,
}

/// Appends the encoding of `update` to `out`.
pub fn encode_into(update: &Update, out: &mut BytesMut) {
    match update {
        Update::Set { key, value } => {
            out.put_i32_le(1);
            put_str(out, key);
            put_str(out, value);
        }
        Update::Delete { key } => {
            out.put_i32_le(2);
            put_str(out, key);
        }
        Update::TestAndSet {
            key,
            expected,
            wanted,
        } => {
            out.put_i32_le(3);
            put_str(out, key);
            put_opt(out, expected.as_ref());
            put_opt(out, wanted.as_ref());
        }
        Update::Sequence(members) => {
            out.put_i32_le(5);
            put_len(out, members.len());
            for m in members {
                encode_into(m, out);
            }
        }
        Update::Nop => out.put_i32_le(6),
        Update::UserFunction { name, argument } => {
            out.put_i32_le(7);
            put_str(out, name);
            put_opt(out, argument.as_ref());
        }
        Update::Assert { key, expected } => {
            out.put_i32_le(8);
            put_str(out, key);
            put_opt(out, expected.as_ref());
        }
        Update::DeletePrefix { prefix } => {
            out.put_i32_le(14);
            put_str(out, prefix);
        }
        Update::AssertExists { key } => {
            out.put_i32_le(15);
            put_str(out, key);
        }
        Update::Replace { key, wanted } => {
            out.put_i32_le(16);
            put_str(out, key);
            put_opt(out, wanted.as_ref());
        }
        Update::AssertRange { prefix, assertion } => {
            out.put_i32_le(17);
            put_str(out, prefix);
            let RangeAssertion::ContainsExactly(keys) = assertion;
            out.put_i32_le(1);
            put_len(out, keys.len());
            for k in keys {
                put_str(out, k);
            }
        }
    }
}

/// The encoding of `update` as a fresh buffer.
pub fn encode(update: &Update) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(encoded_len_hint(update));
    encode_into(update, &mut out);
    out.to_vec()
}

fn encoded_len_hint(update: &Update) -> usize {
    match update {
        Update::Set { key, value } => 12 + key.len() + value.len(),
        _ => 64,
    }
}

fn put_len(out: &mut BytesMut, len: usize) {
    // Lengths are bounded by the request limits (far below i32::MAX) before updates exist.
    out.put_i32_le(i32::try_from(len).unwrap_or(i32::MAX));
}

fn put_str(out: &mut BytesMut, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.put_slice(bytes);
}

fn put_opt(out: &mut BytesMut, bytes: Option<&Bytes>) {
    match bytes {
        None => out.put_u8(0),
        Some(b) => {
            out.put_u8(1);
            put_str(out, b);
        }
    }
}

/// Decodes one update that must fill `payload` exactly.
pub fn decode(payload: Bytes) -> Result<Update, PayloadError> {
    let mut reader = Reader {
        buf: payload,
        pos: 0,
    };
    let update = reader.update(1)?;
    if reader.pos != reader.buf.len() {
        return Err(reader.error(format!(
            "{} trailing bytes after the update",
            reader.buf.len() - reader.pos
        )));
    }
    Ok(update)
}

struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    fn error(&self, problem: String) -> PayloadError {
        PayloadError {
            offset: self.pos,
            problem,
        }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<Bytes, PayloadError> {
        if n > self.remaining() {
            return Err(self.error(format!(
                "{what} needs {n} bytes, only {} remain",
                self.remaining()
            )));
        }
        let out = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(out)
    }

    fn i32(&mut self, what: &str) -> Result<i32, PayloadError> {
        let b = self.take(4, what)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn len(&mut self, what: &str, min_item: usize) -> Result<usize, PayloadError> {
        let at = self.pos;
        let n = self.i32(what)?;
        let n = usize::try_from(n).map_err(|_| PayloadError {
            offset: at,
            problem: format!("{what} is negative ({n})"),
        })?;
        if n.saturating_mul(min_item) > self.remaining() {
            return Err(PayloadError {
                offset: at,
                problem: format!(
                    "{what} {n} exceeds the {} bytes that remain",
                    self.remaining()
                ),
            });
        }
        Ok(n)
    }

    fn str(&mut self, what: &str) -> Result<Bytes, PayloadError> {
        let n = self.len(what, 1)?;
        self.take(n, what)
    }

    fn opt(&mut self, what: &str) -> Result<Option<Bytes>, PayloadError> {
        let flag = self.take(1, what)?[0];
        match flag {
            0 => Ok(None),
            1 => Ok(Some(self.str(what)?)),
            other => Err(PayloadError {
                offset: self.pos - 1,
                problem: format!("{what}: option flag {other} is neither 0 nor 1"),
            }),
        }
    }

    fn update(&mut self, depth: usize) -> Result<Update, PayloadError> {
        let at = self.pos;
        let tag = self.i32("update tag")?;
        Ok(match tag {
            1 => Update::Set {
                key: self.str("set key")?,
                value: self.str("set value")?,
            },
            2 => Update::Delete {
                key: self.str("delete key")?,
            },
            3 => Update::TestAndSet {
                key: self.str("test_and_set key")?,
                expected: self.opt("test_and_set expected")?,
                wanted: self.opt("test_and_set wanted")?,
            },
            5 => {
                if depth > MAX_SEQUENCE_DEPTH {
                    return Err(PayloadError {
                        offset: at,
                        problem: format!("sequences nested deeper than {MAX_SEQUENCE_DEPTH}"),
                    });
                }
                let n = self.len("sequence count", 4)?;
                let mut members = Vec::with_capacity(n);
                for _ in 0..n {
                    members.push(self.update(depth + 1)?);
                }
                Update::Sequence(members)
            }
            6 => Update::Nop,
            7 => Update::UserFunction {
                name: self.str("user function name")?,
                argument: self.opt("user function argument")?,
            },
            8 => Update::Assert {
                key: self.str("assert key")?,
                expected: self.opt("assert expected")?,
            },
            14 => Update::DeletePrefix {
                prefix: self.str("delete_prefix prefix")?,
            },
            15 => Update::AssertExists {
                key: self.str("assert_exists key")?,
            },
            16 => Update::Replace {
                key: self.str("replace key")?,
                wanted: self.opt("replace wanted")?,
            },
            17 => {
                let prefix = self.str("assert_range prefix")?;
                let kind_at = self.pos;
                let kind = self.i32("assert_range kind")?;
                if kind != 1 {
                    return Err(PayloadError {
                        offset: kind_at,
                        problem: format!("assert_range kind {kind} is unknown (only 1 exists)"),
                    });
                }
                let n = self.len("assert_range key count", 4)?;
                let mut keys = Vec::with_capacity(n);
                for _ in 0..n {
                    keys.push(self.str("assert_range key")?);
                }
                Update::AssertRange {
                    prefix,
                    assertion: RangeAssertion::ContainsExactly(keys),
                }
            }
            other => {
                return Err(PayloadError {
                    offset: at,
                    problem: format!("update tag {other} is not a client update"),
                });
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;

    fn bytes() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(Bytes::from)
    }

    fn update() -> impl Strategy<Value = Update> {
        let leaf = prop_oneof![
            (bytes(), bytes()).prop_map(|(key, value)| Update::Set { key, value }),
            bytes().prop_map(|key| Update::Delete { key }),
            (
                bytes(),
                proptest::option::of(bytes()),
                proptest::option::of(bytes())
            )
                .prop_map(|(key, expected, wanted)| Update::TestAndSet {
                    key,
                    expected,
                    wanted
                }),
            Just(Update::Nop),
            (bytes(), proptest::option::of(bytes()))
                .prop_map(|(name, argument)| Update::UserFunction { name, argument }),
            (bytes(), proptest::option::of(bytes()))
                .prop_map(|(key, expected)| Update::Assert { key, expected }),
            bytes().prop_map(|prefix| Update::DeletePrefix { prefix }),
            bytes().prop_map(|key| Update::AssertExists { key }),
            (bytes(), proptest::option::of(bytes()))
                .prop_map(|(key, wanted)| Update::Replace { key, wanted }),
            (bytes(), proptest::collection::vec(bytes(), 0..4)).prop_map(|(prefix, keys)| {
                Update::AssertRange {
                    prefix,
                    assertion: RangeAssertion::ContainsExactly(keys),
                }
            }),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            proptest::collection::vec(inner, 0..4).prop_map(Update::Sequence)
        })
    }

    proptest! {
        #[test]
        fn round_trips(u in update()) {
            let encoded = encode(&u);
            prop_assert_eq!(decode(Bytes::from(encoded)).unwrap(), u);
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(Bytes::from(data));
        }

        /// Real encoded updates with a length or count field (any 4 aligned-or-not bytes)
        /// replaced by an edge value, or bits flipped: never a panic, never an allocation
        /// beyond the payload (a count is checked against the bytes that remain).
        #[test]
        fn mutated_real_payloads_never_panic(
            u in update(),
            at in any::<prop::sample::Index>(),
            field in prop_oneof![
                Just(0i32), Just(1), Just(-1), Just(i32::MAX), Just(i32::MIN), any::<i32>()
            ],
            flip in proptest::option::of((any::<prop::sample::Index>(), 1u8..=255)),
        ) {
            let mut encoded = encode(&u);
            if encoded.len() >= 4 {
                let i = at.index(encoded.len() - 3);
                encoded[i..i + 4].copy_from_slice(&field.to_le_bytes());
            }
            if let Some((pos, mask)) = flip && !encoded.is_empty() {
                let i = pos.index(encoded.len());
                encoded[i] ^= mask;
            }
            if let Ok(decoded) = decode(Bytes::from(encoded.clone())) {
                // Whatever decodes re-encodes to the same bytes (nothing was invented).
                prop_assert_eq!(encode(&decoded), encoded);
            }
        }

        #[test]
        fn truncation_is_an_error(u in update(), cut in 1usize..8) {
            let encoded = encode(&u);
            let keep = encoded.len().saturating_sub(cut);
            prop_assert!(decode(Bytes::copy_from_slice(&encoded[..keep])).is_err());
        }
    }

    #[test]
    fn set_matches_arakoon_bytes() {
        let u = Update::Set {
            key: Bytes::from_static(b"a"),
            value: Bytes::from_static(b"1"),
        };
        assert_eq!(
            encode(&u),
            [1, 0, 0, 0, 1, 0, 0, 0, b'a', 1, 0, 0, 0, b'1'].to_vec()
        );
    }

    #[test]
    fn huge_counts_are_refused_before_allocating() {
        let mut data = vec![5, 0, 0, 0];
        data.extend_from_slice(&i32::MAX.to_le_bytes());
        let err = decode(Bytes::from(data)).unwrap_err();
        assert!(err.problem.contains("sequence count"), "{err}");
        let err = decode(Bytes::from(vec![9, 0, 0, 0])).unwrap_err();
        assert!(err.problem.contains("tag 9"), "{err}");
    }
}
