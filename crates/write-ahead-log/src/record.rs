//! Framing of one log record.
//!
//! ```text
//! u32 payload_len | u32 crc32c(payload) | u32 crc32c(first 8 header bytes) | payload
//! payload = u64 index | entry bytes                       (all integers little-endian)
//! ```
//!
//! The header carries its own CRC so that a damaged length field is recognised as damage
//! instead of being mistaken for a record torn off at the end of the file: a record whose
//! header checks out but whose payload runs past the end of the file can only be a torn
//! write. A length is checked against the configured maximum before anything is allocated.

/// Bytes before the payload.
pub const HEADER_LEN: usize = 12;
/// Bytes of the index at the start of every payload.
pub const INDEX_LEN: usize = 8;

/// Appends the record for `(index, bytes)` to `buf`. The caller has checked the size limit.
pub fn encode_into(buf: &mut Vec<u8>, index: u64, bytes: &[u8]) {
    let index_bytes = index.to_le_bytes();
    // The caller bounds `bytes.len()` by `max_entry_bytes`, itself far below u32::MAX.
    let payload_len = u32::try_from(INDEX_LEN + bytes.len()).unwrap_or(u32::MAX);
    let payload_crc = crc32c::crc32c_append(crc32c::crc32c(&index_bytes), bytes);
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&payload_len.to_le_bytes());
    header[4..8].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = crc32c::crc32c(&header[..8]);
    header[8..].copy_from_slice(&header_crc.to_le_bytes());
    buf.reserve(HEADER_LEN + INDEX_LEN + bytes.len());
    buf.extend_from_slice(&header);
    buf.extend_from_slice(&index_bytes);
    buf.extend_from_slice(bytes);
}

/// Size of the record for an entry of `entry_len` bytes.
pub const fn record_len(entry_len: usize) -> usize {
    HEADER_LEN + INDEX_LEN + entry_len
}

/// A record decoded in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// The entry's index.
    pub index: u64,
    /// Where the entry bytes lie in the buffer.
    pub entry_start: usize,
    /// One past the entry bytes: where the next record starts.
    pub end: usize,
}

/// Why a record at some offset could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer than a header's worth of bytes remain.
    ShortHeader,
    /// The header's own CRC does not match.
    BadHeader,
    /// The header is intact but declares an impossible length.
    BadLength {
        /// Declared payload length.
        len: u32,
        /// Largest allowed payload length.
        max: u64,
    },
    /// The header is intact but the payload runs past the end of the data.
    ShortPayload,
    /// The payload's CRC does not match.
    BadPayload,
}

impl DecodeError {
    /// A person-readable reason.
    pub fn reason(&self) -> String {
        match self {
            DecodeError::ShortHeader => "record header cut short".to_owned(),
            DecodeError::BadHeader => "record header CRC mismatch".to_owned(),
            DecodeError::BadLength { len, max } => format!(
                "record declares a {len} B payload, outside 8..={max} (is max_entry_bytes smaller than when it was written?)"
            ),
            DecodeError::ShortPayload => {
                "record payload cut short by the end of the file".to_owned()
            }
            DecodeError::BadPayload => "record payload CRC mismatch".to_owned(),
        }
    }
}

fn read_u32(data: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&data[at..at + 4]);
    u32::from_le_bytes(word)
}

/// Decodes the record starting at `offset`, checking every length before use.
pub fn decode_at(data: &[u8], offset: usize, max_entry_bytes: u32) -> Result<Decoded, DecodeError> {
    let rest = &data[offset.min(data.len())..];
    if rest.len() < HEADER_LEN {
        return Err(DecodeError::ShortHeader);
    }
    let payload_len = read_u32(rest, 0);
    let payload_crc = read_u32(rest, 4);
    if crc32c::crc32c(&rest[..8]) != read_u32(rest, 8) {
        return Err(DecodeError::BadHeader);
    }
    let max = INDEX_LEN as u64 + u64::from(max_entry_bytes);
    if (payload_len as usize) < INDEX_LEN || u64::from(payload_len) > max {
        return Err(DecodeError::BadLength {
            len: payload_len,
            max,
        });
    }
    let payload_len = payload_len as usize;
    if rest.len() - HEADER_LEN < payload_len {
        return Err(DecodeError::ShortPayload);
    }
    let payload = &rest[HEADER_LEN..HEADER_LEN + payload_len];
    if crc32c::crc32c(payload) != payload_crc {
        return Err(DecodeError::BadPayload);
    }
    let mut index = [0u8; INDEX_LEN];
    index.copy_from_slice(&payload[..INDEX_LEN]);
    Ok(Decoded {
        index: u64::from_le_bytes(index),
        entry_start: offset + HEADER_LEN + INDEX_LEN,
        end: offset + HEADER_LEN + payload_len,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_lengths() {
        let mut buf = Vec::new();
        encode_into(&mut buf, 7, b"hello");
        encode_into(&mut buf, 8, b"");
        assert_eq!(buf.len(), record_len(5) + record_len(0));
        let first = decode_at(&buf, 0, 16).unwrap();
        assert_eq!(first.index, 7);
        assert_eq!(&buf[first.entry_start..first.end], b"hello");
        let second = decode_at(&buf, first.end, 16).unwrap();
        assert_eq!(second.index, 8);
        assert_eq!(second.end, buf.len());
    }

    #[test]
    fn oversized_length_is_refused_before_reading_payload() {
        let mut buf = Vec::new();
        encode_into(&mut buf, 1, &[0u8; 100]);
        assert!(matches!(
            decode_at(&buf, 0, 50),
            Err(DecodeError::BadLength { .. })
        ));
    }

    #[test]
    fn zeroes_are_a_bad_header() {
        assert_eq!(decode_at(&[0u8; 40], 0, 16), Err(DecodeError::BadHeader));
        assert_eq!(decode_at(&[0u8; 4], 0, 16), Err(DecodeError::ShortHeader));
    }

    proptest! {
        #[test]
        fn any_single_bit_flip_is_detected(
            entry in proptest::collection::vec(any::<u8>(), 0..64),
            index in any::<u64>(),
            position in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let mut buf = Vec::new();
            encode_into(&mut buf, index, &entry);
            let at = position.index(buf.len());
            buf[at] ^= 1 << bit;
            prop_assert!(decode_at(&buf, 0, 64).is_err());
        }

        #[test]
        fn every_cut_is_short(entry in proptest::collection::vec(any::<u8>(), 0..64), cut in any::<prop::sample::Index>()) {
            let mut buf = Vec::new();
            encode_into(&mut buf, 3, &entry);
            let len = cut.index(buf.len());
            let result = decode_at(&buf[..len], 0, 64);
            prop_assert!(matches!(result, Err(DecodeError::ShortHeader | DecodeError::ShortPayload)));
        }
    }
}
