//! Arakoon's primitive encodings (docs/protocol.md §2) and the bounded reader every decoder uses.
//!
//! Invariants kept here, so no other module has to:
//! - every length and count is checked against the frame budget ([`Limits::max_frame_bytes`])
//!   *before* anything is allocated: a string may not reach past the budget, and a list count
//!   times the smallest possible element size must fit in it;
//! - a truncated input is [`ReadError::Incomplete`] (wait for more bytes), never an error;
//!   the reader then knows a lower bound of the frame's length ([`Reader::bytes_needed`]), so
//!   a codec does not parse a large frame again for every chunk that arrives (which would make
//!   a frame of many small elements cost time quadratic in its size);
//!   a malformed input is [`ReadError::Invalid`] with a [`ProtocolError`] naming the field and
//!   the offset in the frame;
//! - reading never panics: all indexing goes through checked slicing.

use bytes::{BufMut, Bytes, BytesMut};

use crate::types::Consistency;

/// Bounds the decoders enforce. One budget covers a whole frame (a request or a response),
/// and therefore every string and list inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest frame accepted, in bytes. Arakoon's `max_buffer_size` is 32 MiB.
    pub max_frame_bytes: usize,
    /// The deepest nesting accepted for recursive structures (sequences inside sequences,
    /// routings, statistics lists). Protects the decoder's stack.
    pub max_nesting: usize,
}

impl Limits {
    /// Arakoon's default `max_buffer_size`: 32 MiB.
    pub const DEFAULT_MAX_FRAME_BYTES: usize = 32 * 1024 * 1024;
    /// Default nesting bound.
    pub const DEFAULT_MAX_NESTING: usize = 32;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: Self::DEFAULT_MAX_FRAME_BYTES,
            max_nesting: Self::DEFAULT_MAX_NESTING,
        }
    }
}

/// Why bytes could not be decoded. Every variant names the field and the byte offset within
/// the frame where the problem starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The connection prologue did not start with Arakoon's magic and version 1.
    #[error("bad prologue: magic {magic:#010x} version {version} (expected 0xb1ff0000 version 1)")]
    BadPrologue {
        /// The magic word received.
        magic: u32,
        /// The version received.
        version: i32,
    },
    /// A command word without the `0xB1FF` magic bits.
    #[error("bad command word {word:#010x}: magic bits 0xb1ff0000 missing")]
    BadMagic {
        /// The word received.
        word: u32,
    },
    /// A command word with the magic bits but an opcode Arakoon does not define.
    #[error("unknown opcode {opcode:#x}")]
    UnknownOpcode {
        /// The opcode received.
        opcode: u16,
    },
    /// A length or count that would exceed the frame budget.
    #[error("{field} at offset {offset}: length {len} exceeds the limit of {max} bytes per frame")]
    TooLarge {
        /// The field being read.
        field: &'static str,
        /// Offset of the length within the frame.
        offset: usize,
        /// The announced length (or the bytes a count implies).
        len: u64,
        /// The frame budget.
        max: usize,
    },
    /// A negative length or count.
    #[error("{field} at offset {offset}: negative length {len}")]
    NegativeLength {
        /// The field being read.
        field: &'static str,
        /// Offset of the length within the frame.
        offset: usize,
        /// The value received.
        len: i64,
    },
    /// A boolean byte other than 00 or 01.
    #[error("{field} at offset {offset}: byte {byte:#04x} is not a bool (00 or 01)")]
    BadBool {
        /// The field being read.
        field: &'static str,
        /// Offset of the byte.
        offset: usize,
        /// The byte received.
        byte: u8,
    },
    /// A consistency flag other than 00, 01, 02.
    #[error("consistency at offset {offset}: byte {byte:#04x} is not 00, 01 or 02")]
    BadConsistency {
        /// Offset of the byte.
        offset: usize,
        /// The byte received.
        byte: u8,
    },
    /// An update tag outside 1..=17.
    #[error("update at offset {offset}: unknown tag {tag}")]
    UnknownUpdateTag {
        /// Offset of the tag.
        offset: usize,
        /// The tag received.
        tag: i32,
    },
    /// The body of SEQUENCE / SYNCED_SEQUENCE / MIGRATE_RANGE was not a tag-5 update.
    #[error("should have been a sequence (outer update tag {tag})")]
    NotASequence {
        /// The outer tag received.
        tag: i32,
    },
    /// An assert_range kind other than 1 (ContainsExactly).
    #[error("assert_range at offset {offset}: unknown assertion kind {kind}")]
    UnknownRangeAssertion {
        /// Offset of the kind.
        offset: usize,
        /// The kind received.
        kind: i32,
    },
    /// A statistics named-value type outside 1..=5.
    #[error("statistics at offset {offset}: unknown named value type {kind}")]
    UnknownNamedValue {
        /// Offset of the type.
        offset: usize,
        /// The type received.
        kind: i32,
    },
    /// Recursion deeper than [`Limits::max_nesting`].
    #[error("{field} at offset {offset}: nested deeper than {max} levels")]
    TooDeep {
        /// The structure being read.
        field: &'static str,
        /// Offset where the limit was hit.
        offset: usize,
        /// The nesting limit.
        max: usize,
    },
    /// A value that is structurally valid but not allowed where it appears.
    #[error("{field} at offset {offset}: {reason}")]
    Invalid {
        /// The field being read.
        field: &'static str,
        /// Offset of the field.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Response bytes arrived while no request was waiting for them.
    #[error("{len} bytes received while no request was awaiting a response")]
    UnexpectedResponse {
        /// Number of unexpected bytes buffered.
        len: usize,
    },
}

/// Outcome of a failed read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// The frame is not complete yet; try again once more bytes arrived.
    Incomplete,
    /// The bytes can never form a valid frame.
    Invalid(ProtocolError),
}

impl From<ProtocolError> for ReadError {
    fn from(e: ProtocolError) -> Self {
        ReadError::Invalid(e)
    }
}

pub(crate) type ReadResult<T> = Result<T, ReadError>;

/// A cursor over a (possibly incomplete) frame. `base` is added to offsets in error
/// messages so nested readers (strings holding structures) report frame offsets.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
    limits: Limits,
    depth: usize,
    /// After [`ReadError::Incomplete`]: the frame is at least this many bytes long.
    needed: usize,
    /// Check the structure only: strings are bounds-checked and skipped, not copied (see
    /// [`Reader::skimming`]).
    skim: bool,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], limits: Limits) -> Self {
        Reader {
            buf,
            pos: 0,
            base: 0,
            limits,
            depth: 0,
            needed: 0,
            skim: false,
        }
    }

    /// A reader that walks a frame exactly as [`Reader::new`] would (same checks, same
    /// errors, same [`Reader::bytes_needed`]) but keeps nothing: every string and list it
    /// returns is empty. It finds out cheaply whether a frame is complete; no decoder looks at
    /// a string's contents or a list's length to decide how to go on, so the walk is the same.
    pub(crate) fn skimming(buf: &'a [u8], limits: Limits) -> Self {
        Reader {
            skim: true,
            ..Reader::new(buf, limits)
        }
    }

    /// After a read failed with [`ReadError::Incomplete`]: a length the frame certainly has
    /// (more than the bytes at hand), so parsing again before that many bytes arrived is
    /// wasted work. It counts the bytes the failed read wanted plus the smallest possible size
    /// of the list elements still to come.
    pub(crate) fn bytes_needed(&self) -> usize {
        self.needed
    }

    /// Bytes consumed so far.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    fn offset(&self) -> usize {
        self.base + self.pos
    }

    fn take(&mut self, n: usize) -> ReadResult<&'a [u8]> {
        let end = self.pos.saturating_add(n);
        let Some(slice) = self.buf.get(self.pos..end) else {
            self.needed = self.needed.max(self.base.saturating_add(end));
            return Err(ReadError::Incomplete);
        };
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> ReadResult<[u8; N]> {
        let slice = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> ReadResult<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> ReadResult<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn i32(&mut self) -> ReadResult<i32> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    pub(crate) fn i64(&mut self) -> ReadResult<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    pub(crate) fn f64(&mut self) -> ReadResult<f64> {
        Ok(f64::from_bits(u64::from_le_bytes(self.array()?)))
    }

    pub(crate) fn bool(&mut self, field: &'static str) -> ReadResult<bool> {
        let offset = self.offset();
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            byte => Err(ProtocolError::BadBool {
                field,
                offset,
                byte,
            }
            .into()),
        }
    }

    /// Checks that `len` more bytes would stay within the frame budget.
    fn check_budget(&self, field: &'static str, offset: usize, len: u64) -> ReadResult<()> {
        let used = self.base.saturating_add(self.pos) as u64;
        if used.saturating_add(len) > self.limits.max_frame_bytes as u64 {
            return Err(ProtocolError::TooLarge {
                field,
                offset,
                len,
                max: self.limits.max_frame_bytes,
            }
            .into());
        }
        Ok(())
    }

    /// Reads an `i32` length and checks it is non-negative and within budget.
    fn length(&mut self, field: &'static str, min_elem_size: u64) -> ReadResult<usize> {
        let offset = self.offset();
        let len = self.i32()?;
        if len < 0 {
            return Err(ProtocolError::NegativeLength {
                field,
                offset,
                len: i64::from(len),
            }
            .into());
        }
        let len = len as u64;
        self.check_budget(field, offset, len.saturating_mul(min_elem_size))?;
        Ok(len as usize)
    }

    /// Reads an `i64` length (GET_DB) and checks it like [`Self::length`].
    pub(crate) fn length64(&mut self, field: &'static str) -> ReadResult<usize> {
        let offset = self.offset();
        let len = self.i64()?;
        if len < 0 {
            return Err(ProtocolError::NegativeLength { field, offset, len }.into());
        }
        let len = len as u64;
        self.check_budget(field, offset, len)?;
        usize::try_from(len).map_err(|_| {
            ReadError::Invalid(ProtocolError::TooLarge {
                field,
                offset,
                len,
                max: self.limits.max_frame_bytes,
            })
        })
    }

    /// Raw bytes of a known length (already budget-checked by the caller).
    pub(crate) fn raw(&mut self, len: usize) -> ReadResult<Bytes> {
        let bytes = self.take(len)?;
        if self.skim {
            return Ok(Bytes::new());
        }
        Ok(Bytes::copy_from_slice(bytes))
    }

    /// A `str`: `i32` length then that many bytes.
    pub(crate) fn bytes(&mut self, field: &'static str) -> ReadResult<Bytes> {
        let len = self.length(field, 1)?;
        self.raw(len)
    }

    /// A `str` whose contents are themselves a structure: returns a sub-reader over exactly
    /// those bytes, with offsets reported relative to the outer frame.
    pub(crate) fn nested<T>(
        &mut self,
        field: &'static str,
        read: impl FnOnce(&mut Reader<'a>) -> ReadResult<T>,
    ) -> ReadResult<T> {
        let len = self.length(field, 1)?;
        let base = self.offset();
        let inner = self.take(len)?;
        let mut sub = Reader {
            buf: inner,
            pos: 0,
            base,
            limits: self.limits,
            depth: self.depth,
            needed: 0,
            skim: self.skim,
        };
        // The string is complete, so running short inside it means a malformed structure,
        // not a frame that needs more bytes.
        read(&mut sub).map_err(|e| match e {
            ReadError::Incomplete => ReadError::Invalid(ProtocolError::Invalid {
                field,
                offset: base,
                reason: "structure is truncated inside its string",
            }),
            invalid => invalid,
        })
    }

    pub(crate) fn opt_bytes(&mut self, field: &'static str) -> ReadResult<Option<Bytes>> {
        if self.bool(field)? {
            Ok(Some(self.bytes(field)?))
        } else {
            Ok(None)
        }
    }

    /// A list count whose elements take at least `min_elem_size` bytes each; returns the count
    /// and a safe initial capacity.
    pub(crate) fn count(&mut self, field: &'static str, min_elem_size: u64) -> ReadResult<usize> {
        self.length(field, min_elem_size.max(1))
    }

    pub(crate) fn list<T>(
        &mut self,
        field: &'static str,
        min_elem_size: u64,
        mut read: impl FnMut(&mut Self) -> ReadResult<T>,
    ) -> ReadResult<Vec<T>> {
        let n = self.count(field, min_elem_size)?;
        // The count is budget-checked, but the bytes may not have arrived yet: do not reserve
        // more than the bytes at hand could hold.
        let available = self.buf.len().saturating_sub(self.pos) / (min_elem_size.max(1) as usize);
        // A skim keeps no elements (it only walks them): its lists come back empty.
        let capacity = if self.skim { 0 } else { n.min(available) };
        let mut out = Vec::with_capacity(capacity);
        for i in 0..n {
            match read(self) {
                Ok(element) if !self.skim => out.push(element),
                Ok(_) => {}
                Err(ReadError::Incomplete) => {
                    // Each element still to come takes at least `min_elem_size` bytes.
                    let still_to_come = (n - i - 1) as u64;
                    let at_least = still_to_come.saturating_mul(min_elem_size);
                    let at_least = usize::try_from(at_least).unwrap_or(usize::MAX);
                    self.needed = self.needed.saturating_add(at_least);
                    return Err(ReadError::Incomplete);
                }
                Err(invalid) => return Err(invalid),
            }
        }
        Ok(out)
    }

    pub(crate) fn consistency(&mut self) -> ReadResult<Consistency> {
        let offset = self.offset();
        match self.u8()? {
            0 => Ok(Consistency::Consistent),
            1 => Ok(Consistency::NoGuarantees),
            2 => Ok(Consistency::AtLeast(self.i64()?)),
            byte => Err(ProtocolError::BadConsistency { offset, byte }.into()),
        }
    }

    /// Runs `read` one nesting level deeper, failing beyond [`Limits::max_nesting`].
    pub(crate) fn deeper<T>(
        &mut self,
        field: &'static str,
        read: impl FnOnce(&mut Self) -> ReadResult<T>,
    ) -> ReadResult<T> {
        if self.depth >= self.limits.max_nesting {
            return Err(ProtocolError::TooDeep {
                field,
                offset: self.offset(),
                max: self.limits.max_nesting,
            }
            .into());
        }
        self.depth += 1;
        let result = read(self);
        self.depth -= 1;
        result
    }

    pub(crate) fn current_offset(&self) -> usize {
        self.offset()
    }
}

// ---- writers -------------------------------------------------------------------------------

pub(crate) fn put_bool(out: &mut BytesMut, b: bool) {
    out.put_u8(u8::from(b));
}

/// Writes a length as `i32`. Lengths beyond `i32::MAX` cannot be expressed in Arakoon's
/// protocol; callers bound what they encode (the decoder on the other side would refuse it
/// anyway), so saturating keeps the encoder total.
pub(crate) fn put_len(out: &mut BytesMut, len: usize) {
    out.put_i32_le(i32::try_from(len).unwrap_or(i32::MAX));
}

/// Encoded size of a `str`.
pub(crate) fn str_len(b: &[u8]) -> usize {
    4 + b.len()
}

/// Encoded size of an `opt<str>`.
pub(crate) fn opt_len(b: Option<&Bytes>) -> usize {
    1 + b.map_or(0, |b| str_len(b))
}

pub(crate) fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    out.reserve(4 + b.len());
    put_len(out, b.len());
    out.put_slice(b);
}

pub(crate) fn put_opt_bytes(out: &mut BytesMut, b: Option<&Bytes>) {
    match b {
        Some(b) => {
            out.put_u8(1);
            put_bytes(out, b);
        }
        None => out.put_u8(0),
    }
}

pub(crate) fn put_consistency(out: &mut BytesMut, c: Consistency) {
    match c {
        Consistency::Consistent => out.put_u8(0),
        Consistency::NoGuarantees => out.put_u8(1),
        Consistency::AtLeast(i) => {
            out.put_u8(2);
            out.put_i64_le(i);
        }
    }
}

/// Writes a `str` whose contents are produced by `write` (the length is patched afterwards).
pub(crate) fn put_nested(out: &mut BytesMut, write: impl FnOnce(&mut BytesMut)) {
    let at = out.len();
    out.put_i32_le(0);
    write(out);
    let len = out.len() - at - 4;
    let len = i32::try_from(len).unwrap_or(i32::MAX).to_le_bytes();
    out[at..at + 4].copy_from_slice(&len);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn incomplete_is_not_an_error() {
        let mut r = Reader::new(&[1, 0, 0, 0], Limits::default());
        assert_eq!(r.bytes("key"), Err(ReadError::Incomplete));
    }

    #[test]
    fn length_over_budget_is_refused_before_reading() {
        let limits = Limits {
            max_frame_bytes: 10,
            max_nesting: 4,
        };
        let mut r = Reader::new(&[7, 0, 0, 0], limits);
        assert!(matches!(
            r.bytes("key"),
            Err(ReadError::Invalid(ProtocolError::TooLarge { len: 7, .. }))
        ));
    }

    #[test]
    fn negative_length_is_refused() {
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff], Limits::default());
        assert!(matches!(
            r.bytes("key"),
            Err(ReadError::Invalid(ProtocolError::NegativeLength {
                len: -1,
                ..
            }))
        ));
    }

    #[test]
    fn huge_list_count_is_refused() {
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0x7f], Limits::default());
        let got = r.list("keys", 4, |r| r.bytes("key"));
        assert!(matches!(
            got,
            Err(ReadError::Invalid(ProtocolError::TooLarge { .. }))
        ));
    }

    #[test]
    fn incomplete_reads_know_a_lower_bound_of_the_frame_length() {
        // A string of 7 bytes of which 2 are here: the frame has at least 4 + 7 bytes.
        let mut r = Reader::new(&[7, 0, 0, 0, b'a', b'b'], Limits::default());
        assert_eq!(r.bytes("key"), Err(ReadError::Incomplete));
        assert_eq!(r.bytes_needed(), 11);
        // A list of 5 strings, the second cut short: its end, plus 3 more of at least 4 bytes.
        let wire = [5, 0, 0, 0, 1, 0, 0, 0, b'x', 2, 0, 0, 0, b'y'];
        let mut r = Reader::new(&wire, Limits::default());
        assert_eq!(
            r.list("keys", 4, |r| r.bytes("key")),
            Err(ReadError::Incomplete)
        );
        assert_eq!(r.bytes_needed(), 15 + 3 * 4);
    }

    #[test]
    fn bad_bool_is_refused() {
        let mut r = Reader::new(&[2], Limits::default());
        assert!(matches!(
            r.bool("flag"),
            Err(ReadError::Invalid(ProtocolError::BadBool { byte: 2, .. }))
        ));
    }
}
