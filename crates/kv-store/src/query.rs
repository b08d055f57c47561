//! Read queries with Arakoon's exact semantics (docs/protocol.md §8.2), over the ordered map.
//!
//! Every list is returned in its **logical (scan) order**: `range`, `range_entries` and
//! `prefix_keys` ascending, `rev_range_entries` descending, `multi_get*` in the order of the
//! keys asked for. Arakoon puts each of these lists on the wire reversed (§2.1), so the codec
//! reverses every one of them, uniformly. The `max` selection happens in scan order before that
//! reversal: the smallest `max` keys for the ascending scans, the largest for the descending one.
//!
//! Keys compare as unsigned bytes (memcmp, a prefix sorts first), which is `[u8]`'s `Ord`.

use std::ops::Bound;

use bytes::Bytes;

use crate::StoreError;
use crate::tree::Entry;

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

/// The store's ordered map.
pub(crate) type Map = crate::tree::Tree;

/// A key handed out to a caller: its own small buffer.
pub(crate) fn key_bytes(key: &[u8]) -> Bytes {
    Bytes::copy_from_slice(key)
}

fn within_high(key: &[u8], high: Bound<&[u8]>) -> bool {
    match high {
        Bound::Unbounded => true,
        Bound::Included(h) => key <= h,
        Bound::Excluded(h) => key < h,
    }
}

fn within_low(key: &[u8], low: Bound<&[u8]>) -> bool {
    match low {
        Bound::Unbounded => true,
        Bound::Included(l) => key >= l,
        Bound::Excluded(l) => key > l,
    }
}

/// The pairs in `range`, ascending.
fn scan<'m>(map: &'m Map, range: &KeyRange<'_>) -> impl Iterator<Item = (&'m [u8], &'m [u8])> {
    range
        .bounds()
        .map(|(low, high)| {
            map.iter_from(low)
                .map(|e| (e.key(), e.value()))
                .take_while(move |(k, _)| within_high(k, high))
        })
        .into_iter()
        .flatten()
}

/// The pairs in `range` (bounds as for [`scan`]), descending.
fn scan_rev<'m>(map: &'m Map, range: &KeyRange<'_>) -> impl Iterator<Item = (&'m [u8], &'m [u8])> {
    range
        .bounds()
        .map(|(low, high)| {
            map.iter_rev_from(high)
                .map(|e| (e.key(), e.value()))
                .take_while(move |(k, _)| within_low(k, low))
        })
        .into_iter()
        .flatten()
}

fn pair_bytes((key, value): (&[u8], &[u8])) -> (Bytes, Bytes) {
    (key_bytes(key), Bytes::copy_from_slice(value))
}

/// What one read may make the store scan and hand out: at most `max_results` results and
/// `max_bytes` bytes of keys and values. A scan stops as soon as it would go past either, so
/// the time a caller holds the store's lock for one read is bounded too.
///
/// Arakoon clients send `max = -1` ("all"); with these limits that still works for every answer
/// within them, and a larger one is refused with [`ReadTooLarge`] instead of being built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Most results (keys or pairs) in one answer.
    pub max_results: usize,
    /// Most key and value bytes in one answer.
    pub max_bytes: usize,
}

impl ReadLimits {
    /// The default: 100 000 results and 16 MiB (see the node README).
    pub const DEFAULT: ReadLimits = ReadLimits {
        max_results: 100_000,
        max_bytes: 16 * 1024 * 1024,
    };

    /// No limit (only for callers that own the whole store, like tools and tests).
    pub const UNLIMITED: ReadLimits = ReadLimits {
        max_results: usize::MAX,
        max_bytes: usize::MAX,
    };
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits::DEFAULT
    }
}

/// Which limit of [`ReadLimits`] an answer would have exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadLimit {
    /// `max_results`.
    Results(usize),
    /// `max_bytes`.
    Bytes(usize),
}

/// A read whose answer would exceed the read limits; nothing was returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}; ask for fewer (a smaller max, a narrower range) or in pages", match .limit {
    ReadLimit::Results(n) => format!("the answer has more than max_results = {n} results"),
    ReadLimit::Bytes(n) => format!("the answer has more than max_bytes = {n} bytes of keys and values"),
})]
pub struct ReadTooLarge {
    /// The limit that was hit.
    pub limit: ReadLimit,
}

/// Takes at most `max` items of `items` within `limits`, `size` giving each item's bytes.
fn bounded<T>(
    items: impl Iterator<Item = T>,
    max: i32,
    limits: ReadLimits,
    size: impl Fn(&T) -> usize,
) -> Result<Vec<T>, ReadTooLarge> {
    let mut out = Vec::new();
    let mut bytes = 0usize;
    for item in items.take(limit(max)) {
        if out.len() >= limits.max_results {
            return Err(ReadTooLarge {
                limit: ReadLimit::Results(limits.max_results),
            });
        }
        bytes = bytes.saturating_add(size(&item));
        if bytes > limits.max_bytes {
            return Err(ReadTooLarge {
                limit: ReadLimit::Bytes(limits.max_bytes),
            });
        }
        out.push(item);
    }
    Ok(out)
}

pub(crate) fn range_bounded(
    map: &Map,
    range: &KeyRange<'_>,
    max: i32,
    limits: ReadLimits,
) -> Result<Vec<Bytes>, ReadTooLarge> {
    let keys = bounded(scan(map, range).map(|(k, _)| k), max, limits, |k| k.len())?;
    Ok(keys.into_iter().map(key_bytes).collect())
}

pub(crate) fn range_entries_bounded(
    map: &Map,
    range: &KeyRange<'_>,
    max: i32,
    limits: ReadLimits,
) -> Result<Vec<(Bytes, Bytes)>, ReadTooLarge> {
    let pairs = bounded(scan(map, range), max, limits, |(k, v)| k.len() + v.len())?;
    Ok(pairs.into_iter().map(pair_bytes).collect())
}

pub(crate) fn rev_range_entries_bounded(
    map: &Map,
    high_low: &KeyRange<'_>,
    max: i32,
    limits: ReadLimits,
) -> Result<Vec<(Bytes, Bytes)>, ReadTooLarge> {
    let ascending = KeyRange {
        first: high_low.last,
        first_inclusive: high_low.last_inclusive,
        last: high_low.first,
        last_inclusive: high_low.first_inclusive,
    };
    let pairs = bounded(scan_rev(map, &ascending), max, limits, |(k, v)| {
        k.len() + v.len()
    })?;
    Ok(pairs.into_iter().map(pair_bytes).collect())
}

pub(crate) fn prefix_keys_bounded(
    map: &Map,
    prefix: &[u8],
    max: i32,
    limits: ReadLimits,
) -> Result<Vec<Bytes>, ReadTooLarge> {
    let keys = bounded(prefix_scan(map, prefix).map(|(k, _)| k), max, limits, |k| {
        k.len()
    })?;
    Ok(keys.into_iter().map(key_bytes).collect())
}

pub(crate) fn range(map: &Map, range: &KeyRange<'_>, max: i32) -> Vec<Bytes> {
    scan(map, range)
        .take(limit(max))
        .map(|(key, _)| key_bytes(key))
        .collect()
}

pub(crate) fn range_entries(map: &Map, range: &KeyRange<'_>, max: i32) -> Vec<(Bytes, Bytes)> {
    scan(map, range).take(limit(max)).map(pair_bytes).collect()
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
    scan_rev(map, &ascending)
        .take(limit(max))
        .map(pair_bytes)
        .collect()
}

pub(crate) fn prefix_scan<'m>(
    map: &'m Map,
    prefix: &[u8],
) -> impl Iterator<Item = (&'m [u8], &'m [u8])> {
    map.iter_from(Bound::Included(prefix))
        .map(|e| (e.key(), e.value()))
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
            Some(entry) => values.push(entry.value_bytes()),
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
        .map(|key| map.get(key.as_ref()).map(Entry::value_bytes))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn map_of(n: usize, value_len: usize) -> Map {
        (0..n)
            .map(|i| (format!("k{i:06}").into_bytes(), vec![b'v'; value_len]))
            .collect()
    }

    const SMALL: ReadLimits = ReadLimits {
        max_results: 10,
        max_bytes: 1000,
    };

    #[test]
    fn an_answer_within_the_limits_is_the_unlimited_answer() {
        let map = map_of(10, 3);
        let all = KeyRange::all();
        // max = -1 ("all", what Arakoon clients send) keeps working on small stores.
        assert_eq!(
            range_bounded(&map, &all, -1, SMALL).unwrap(),
            range(&map, &all, -1)
        );
        assert_eq!(
            range_entries_bounded(&map, &all, -1, SMALL).unwrap(),
            range_entries(&map, &all, -1)
        );
        assert_eq!(
            rev_range_entries_bounded(&map, &all, -1, SMALL).unwrap(),
            rev_range_entries(&map, &all, -1)
        );
        assert_eq!(
            prefix_keys_bounded(&map, b"k", -1, SMALL).unwrap(),
            prefix_keys(&map, b"k", -1)
        );
        assert_eq!(
            range_bounded(&map, &all, 0, SMALL).unwrap(),
            Vec::<Bytes>::new()
        );
    }

    #[test]
    fn a_store_larger_than_the_limits_still_answers_a_bounded_max() {
        let map = map_of(1000, 3);
        let all = KeyRange::all();
        assert_eq!(range_bounded(&map, &all, 10, SMALL).unwrap().len(), 10);
        assert_eq!(
            rev_range_entries_bounded(&map, &all, 5, SMALL).unwrap(),
            rev_range_entries(&map, &all, 5)
        );
    }

    #[test]
    fn too_many_results_are_refused_naming_the_limit() {
        let map = map_of(11, 0);
        let all = KeyRange::all();
        let e = range_bounded(&map, &all, -1, SMALL).unwrap_err();
        assert_eq!(e.limit, ReadLimit::Results(10));
        assert!(e.to_string().contains("max_results = 10"), "{e}");
        assert!(range_entries_bounded(&map, &all, -1, SMALL).is_err());
        assert!(rev_range_entries_bounded(&map, &all, i32::MIN, SMALL).is_err());
        assert!(prefix_keys_bounded(&map, b"", -1, SMALL).is_err());
        assert!(range_bounded(&map, &all, 11, SMALL).is_err());
        assert!(range_bounded(&map, &all, 10, SMALL).is_ok());
    }

    #[test]
    fn too_many_bytes_are_refused_naming_the_limit() {
        // 5 pairs of 7-byte keys and 300-byte values: 1535 bytes > 1000.
        let map = map_of(5, 300);
        let all = KeyRange::all();
        let e = range_entries_bounded(&map, &all, -1, SMALL).unwrap_err();
        assert_eq!(e.limit, ReadLimit::Bytes(1000));
        assert!(e.to_string().contains("max_bytes = 1000"), "{e}");
        assert!(rev_range_entries_bounded(&map, &all, -1, SMALL).is_err());
        // Keys alone (35 bytes) fit.
        assert_eq!(range_bounded(&map, &all, -1, SMALL).unwrap().len(), 5);
        let one_byte = ReadLimits {
            max_results: 10,
            max_bytes: 6,
        };
        assert!(prefix_keys_bounded(&map, b"k", -1, one_byte).is_err());
        let exact = ReadLimits {
            max_results: usize::MAX,
            max_bytes: 5 * 307,
        };
        assert_eq!(
            range_entries_bounded(&map, &all, -1, exact).unwrap().len(),
            5
        );
    }

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
