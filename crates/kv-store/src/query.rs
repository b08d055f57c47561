//! Read queries with Arakoon's exact semantics (PROTOCOL.md §8.2), over the ordered map.
//!
//! Every list is returned in its **logical (scan) order**: `range`, `range_entries` and
//! `prefix_keys` ascending, `rev_range_entries` descending, `multi_get*` in the order of the
//! keys asked for. Arakoon puts each of these lists on the wire reversed (§2.1), so the codec
//! reverses every one of them, uniformly. The `max` selection happens in scan order before that
//! reversal: the smallest `max` keys for the ascending scans, the largest for the descending one.
//!
//! Keys compare as unsigned bytes (memcmp, a prefix sorts first), which is `[u8]`'s `Ord`.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::StoreError;

/// Lower and upper bound in the form `BTreeMap::range` takes.
type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// Bounds of a range query, as a client sends them.
///
/// `first = None` is not "unbounded": Arakoon uses the empty key as the lower bound together
/// with `first_inclusive`, so the empty key itself is included only when `first_inclusive`.
/// `last = None` is unbounded (then `last_inclusive` does not matter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRange<'a> {
    /// The lower bound (`None`: the empty key).
    pub first: Option<&'a [u8]>,
    /// Whether `first` itself is included.
    pub first_inclusive: bool,
    /// The upper bound (`None`: none).
    pub last: Option<&'a [u8]>,
    /// Whether `last` itself is included.
    pub last_inclusive: bool,
}

impl<'a> KeyRange<'a> {
    /// Every key, the empty key included.
    #[must_use]
    pub fn all() -> Self {
        Self {
            first: None,
            first_inclusive: true,
            last: None,
            last_inclusive: true,
        }
    }

    /// The map bounds for this range, or `None` when the range is empty. (`BTreeMap::range`
    /// panics on a start after the end, so an inverted range from a client must stop here.)
    fn bounds(&self) -> Option<KeyBounds<'a>> {
        let low_key: &'a [u8] = self.first.unwrap_or(b"");
        let low = if self.first_inclusive {
            Bound::Included(low_key)
        } else {
            Bound::Excluded(low_key)
        };
        let high = match self.last {
            None => Bound::Unbounded,
            Some(high_key) => {
                let both_inclusive = self.first_inclusive && self.last_inclusive;
                if low_key > high_key || (low_key == high_key && !both_inclusive) {
                    return None;
                }
                if self.last_inclusive {
                    Bound::Included(high_key)
                } else {
                    Bound::Excluded(high_key)
                }
            }
        };
        Some((low, high))
    }
}

/// Arakoon's `max`: negative (clients send -1) means no limit, 0 means none at all.
pub(crate) fn limit(max: i32) -> usize {
    usize::try_from(max).unwrap_or(usize::MAX)
}

/// Keys of at most this many bytes are stored inline in the tree's nodes.
pub(crate) const INLINE_KEY_BYTES: usize = 24;

/// A key as the map stores it: inline when short, so that comparing it during a lookup does
/// not chase a pointer (for a million keys that is the difference between a few cache misses
/// per lookup and one per compared key).
pub(crate) type StoredKey = SmallVec<[u8; INLINE_KEY_BYTES]>;

/// The store's ordered map.
pub(crate) type Map = BTreeMap<StoredKey, Bytes>;

/// A key handed out to a caller: its own small buffer.
pub(crate) fn key_bytes(key: &StoredKey) -> Bytes {
    Bytes::copy_from_slice(key)
}

fn scan<'m>(
    map: &'m Map,
    range: &KeyRange<'_>,
) -> impl DoubleEndedIterator<Item = (&'m StoredKey, &'m Bytes)> {
    range
        .bounds()
        .map(|bounds| map.range::<[u8], _>(bounds))
        .into_iter()
        .flatten()
}

pub(crate) fn range(map: &Map, range: &KeyRange<'_>, max: i32) -> Vec<Bytes> {
    scan(map, range)
        .take(limit(max))
        .map(|(key, _)| key_bytes(key))
        .collect()
}

pub(crate) fn range_entries(map: &Map, range: &KeyRange<'_>, max: i32) -> Vec<(Bytes, Bytes)> {
    scan(map, range)
        .take(limit(max))
        .map(|(key, value)| (key_bytes(key), value.clone()))
        .collect()
}

/// `high` is the range's `first`/upper bound and `low` its `last`/lower bound, as on the wire.
pub(crate) fn rev_range_entries(
    map: &Map,
    high_low: &KeyRange<'_>,
    max: i32,
) -> Vec<(Bytes, Bytes)> {
    let ascending = KeyRange {
        first: high_low.last,
        first_inclusive: high_low.last_inclusive,
        last: high_low.first,
        last_inclusive: high_low.first_inclusive,
    };
    scan(map, &ascending)
        .rev()
        .take(limit(max))
        .map(|(key, value)| (key_bytes(key), value.clone()))
        .collect()
}

pub(crate) fn prefix_scan<'m>(
    map: &'m Map,
    prefix: &[u8],
) -> impl Iterator<Item = (&'m StoredKey, &'m Bytes)> {
    map.range::<[u8], _>((Bound::Included(prefix), Bound::Unbounded))
        .take_while(move |(key, _)| key.starts_with(prefix))
}

pub(crate) fn prefix_keys(map: &Map, prefix: &[u8], max: i32) -> Vec<Bytes> {
    prefix_scan(map, prefix)
        .take(limit(max))
        .map(|(key, _)| key_bytes(key))
        .collect()
}

pub(crate) fn multi_get<K: AsRef<[u8]>>(map: &Map, keys: &[K]) -> Result<Vec<Bytes>, StoreError> {
    let mut values = Vec::with_capacity(keys.len());
    let mut last_missing = None;
    for key in keys {
        match map.get(key.as_ref()) {
            Some(value) => values.push(value.clone()),
            None => last_missing = Some(key.as_ref()),
        }
    }
    match last_missing {
        None => Ok(values),
        Some(key) => Err(StoreError::KeyNotFound {
            key: Bytes::copy_from_slice(key),
        }),
    }
}

pub(crate) fn multi_get_option<K: AsRef<[u8]>>(map: &Map, keys: &[K]) -> Vec<Option<Bytes>> {
    keys.iter()
        .map(|key| map.get(key.as_ref()).cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn negative_max_is_unlimited_and_zero_is_nothing() {
        assert_eq!(limit(-1), usize::MAX);
        assert_eq!(limit(i32::MIN), usize::MAX);
        assert_eq!(limit(0), 0);
        assert_eq!(limit(7), 7);
    }

    #[test]
    fn inverted_or_empty_ranges_have_no_bounds() {
        let range = |first: &'static [u8], finc, last: &'static [u8], linc| KeyRange {
            first: Some(first),
            first_inclusive: finc,
            last: Some(last),
            last_inclusive: linc,
        };
        assert!(range(b"b", true, b"a", true).bounds().is_none());
        assert!(range(b"a", false, b"a", false).bounds().is_none());
        assert!(range(b"a", true, b"a", false).bounds().is_none());
        assert!(range(b"a", false, b"a", true).bounds().is_none());
        assert!(range(b"a", true, b"a", true).bounds().is_some());
        assert!(range(b"a", false, b"b", false).bounds().is_some());
    }

    #[test]
    fn missing_first_is_the_empty_key() {
        let no_first = KeyRange {
            first: None,
            first_inclusive: false,
            last: None,
            last_inclusive: true,
        };
        assert_eq!(
            no_first.bounds(),
            Some((Bound::Excluded(&b""[..]), Bound::Unbounded))
        );
        assert_eq!(
            KeyRange::all().bounds(),
            Some((Bound::Included(&b""[..]), Bound::Unbounded))
        );
    }
}
