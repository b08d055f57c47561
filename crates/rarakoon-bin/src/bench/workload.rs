//! What the bench sends: keys, values and the request of each workload.
//!
//! Keys are `bench/` followed by a zero-padded decimal number, exactly `--key-size` bytes, so
//! every key of the key space has the same length and keys sort in numeric order (the range
//! and prefix workloads rely on it). Each client draws key numbers uniformly from the key space
//! with its own deterministic generator (seeded from `--seed` and the client's number).

use bytes::Bytes;
use rarakoon_client::{Consistency, RangeQuery, Request, Update};

use crate::cli::Workload;

/// The fixed start of every bench key.
pub const KEY_PREFIX: &str = "bench/";

/// One kind of request, as the report names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OpKind {
    /// SET.
    Set,
    /// GET.
    Get,
    /// TEST_AND_SET.
    TestAndSet,
    /// SEQUENCE.
    Sequence,
    /// RANGE.
    Range,
    /// PREFIX_KEYS.
    Prefix,
    /// A PING on a new connection.
    Connect,
}

impl OpKind {
    /// The report's name for it.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Set => "set",
            OpKind::Get => "get",
            OpKind::TestAndSet => "test_and_set",
            OpKind::Sequence => "sequence",
            OpKind::Range => "range",
            OpKind::Prefix => "prefix",
            OpKind::Connect => "connect",
        }
    }
}

/// The key space: `count` keys of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpace {
    count: u64,
    digits: usize,
}

impl KeySpace {
    /// A key space of `count` keys of `size` bytes each; the size must leave room for
    /// `bench/` and the largest number.
    pub fn new(count: u64, size: usize) -> Result<KeySpace, String> {
        if count == 0 {
            return Err("--keys must be at least 1".into());
        }
        let needed = decimal_digits(count - 1);
        let min_size = KEY_PREFIX.len() + needed;
        if size < min_size {
            return Err(format!(
                "--key-size {size} is too small for --keys {count}: keys are `{KEY_PREFIX}` and \
                 a {needed}-digit number, at least {min_size} bytes"
            ));
        }
        if size > 64 * 1024 {
            return Err(format!("--key-size {size} is larger than 65536"));
        }
        Ok(KeySpace {
            count,
            digits: size - KEY_PREFIX.len(),
        })
    }

    /// Number of keys.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Key number `n` (`n < count`).
    pub fn key(&self, n: u64) -> Bytes {
        debug_assert!(n < self.count);
        Bytes::from(format!("{KEY_PREFIX}{n:0width$}", width = self.digits))
    }

    /// The prefix the `prefix` workload asks for with key `n`: the key without its last two
    /// characters (so up to 100 keys share it), but never shorter than `bench/`.
    pub fn prefix_of(&self, n: u64) -> Bytes {
        let key = self.key(n);
        let keep = key.len() - self.digits.min(2);
        key.slice(..keep)
    }
}

fn decimal_digits(mut n: u64) -> usize {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}

/// splitmix64: small, fast and good enough to pick keys; deterministic per seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for client `client` of a run seeded with `seed`.
    pub fn new(seed: u64, client: u64) -> Rng {
        Rng(seed ^ client.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Everything that shapes the requests of a run.
#[derive(Debug, Clone)]
pub struct Shape {
    /// The workload.
    pub workload: Workload,
    /// The key space.
    pub keys: KeySpace,
    /// The value every write stores (the prefilled value, too).
    pub value: Bytes,
    /// Consistency of reads.
    pub consistency: Consistency,
    /// `mixed`: fraction of gets.
    pub read_ratio: f64,
    /// `sequence`: sets per sequence.
    pub sequence_size: u32,
    /// `range`/`prefix`: the most keys per answer.
    pub range_size: u32,
}

impl Shape {
    /// Whether the workload reads keys that must exist first.
    pub fn needs_prefill(&self) -> bool {
        matches!(
            self.workload,
            Workload::Get
                | Workload::Mixed
                | Workload::TestAndSet
                | Workload::Range
                | Workload::Prefix
        )
    }

    /// The next request of a client drawing from `rng`.
    pub fn next(&self, rng: &mut Rng) -> (OpKind, Request) {
        let n = rng.below(self.keys.count());
        match self.workload {
            Workload::Connect => (
                OpKind::Connect,
                Request::Ping {
                    client_id: Bytes::from_static(b"rarakoon-bench"),
                    cluster_id: Bytes::new(),
                },
            ),
            Workload::Set => (OpKind::Set, self.set(n)),
            Workload::Get => (OpKind::Get, self.get(n)),
            Workload::Mixed => {
                if rng.unit() < self.read_ratio {
                    (OpKind::Get, self.get(n))
                } else {
                    (OpKind::Set, self.set(n))
                }
            }
            Workload::TestAndSet => (
                OpKind::TestAndSet,
                Request::TestAndSet {
                    key: self.keys.key(n),
                    expected: Some(self.value.clone()),
                    wanted: Some(self.value.clone()),
                },
            ),
            Workload::Sequence => {
                let mut updates = Vec::with_capacity(self.sequence_size as usize);
                updates.push(Update::Set {
                    key: self.keys.key(n),
                    value: self.value.clone(),
                });
                for _ in 1..self.sequence_size {
                    updates.push(Update::Set {
                        key: self.keys.key(rng.below(self.keys.count())),
                        value: self.value.clone(),
                    });
                }
                (OpKind::Sequence, Request::Sequence(updates))
            }
            Workload::Range => (
                OpKind::Range,
                Request::Range(RangeQuery {
                    consistency: self.consistency,
                    first: Some(self.keys.key(n)),
                    first_inclusive: true,
                    last: None,
                    last_inclusive: false,
                    max: i32::try_from(self.range_size).unwrap_or(i32::MAX),
                }),
            ),
            Workload::Prefix => (
                OpKind::Prefix,
                Request::PrefixKeys {
                    consistency: self.consistency,
                    prefix: self.keys.prefix_of(n),
                    max: i32::try_from(self.range_size).unwrap_or(i32::MAX),
                },
            ),
        }
    }

    fn set(&self, n: u64) -> Request {
        Request::Set {
            key: self.keys.key(n),
            value: self.value.clone(),
        }
    }

    fn get(&self, n: u64) -> Request {
        Request::Get {
            consistency: self.consistency,
            key: self.keys.key(n),
        }
    }
}

/// A value of `size` pseudo-random bytes (so nothing on the way can compress it away).
pub fn value(size: usize, seed: u64) -> Bytes {
    let mut rng = Rng::new(seed, u64::MAX);
    let mut bytes = Vec::with_capacity(size);
    while bytes.len() < size {
        let word = rng.next_u64().to_le_bytes();
        let take = (size - bytes.len()).min(word.len());
        bytes.extend_from_slice(&word[..take]);
    }
    Bytes::from(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn keys_have_the_asked_size_and_sort_numerically() {
        for (count, size) in [(1, 7), (10, 7), (11, 8), (10_000, 16), (u64::MAX, 26)] {
            let space = KeySpace::new(count, size).unwrap();
            for n in [0, count / 2, count - 1] {
                assert_eq!(space.key(n).len(), size, "{count} keys of {size}: {n}");
            }
            if count > 1 {
                assert!(space.key(count - 2) < space.key(count - 1));
            }
        }
        let space = KeySpace::new(10_000, 16).unwrap();
        assert_eq!(&space.key(42)[..], b"bench/0000000042");
        assert_eq!(&space.prefix_of(4242)[..], b"bench/00000042");
    }

    #[test]
    fn a_key_size_too_small_for_the_key_space_is_refused() {
        assert!(KeySpace::new(0, 16).is_err());
        let err = KeySpace::new(100_000, 10).unwrap_err();
        assert!(err.contains("at least 11 bytes"), "{err}");
        assert!(KeySpace::new(u64::MAX, 25).is_err());
        assert!(KeySpace::new(1, 6).is_err());
        assert!(KeySpace::new(1, 64 * 1024 + 1).is_err());
    }

    #[test]
    fn the_prefix_never_drops_into_the_fixed_part() {
        let space = KeySpace::new(10, 7).unwrap();
        assert_eq!(&space.prefix_of(7)[..], b"bench/");
    }

    #[test]
    fn picks_stay_in_range_and_cover_it() {
        let mut rng = Rng::new(1, 0);
        for n in [1, 2, 3, 10, u64::MAX] {
            for _ in 0..1000 {
                assert!(rng.below(n) < n);
            }
        }
        let mut seen = [false; 10];
        for _ in 0..1000 {
            seen[rng.below(10) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
        for _ in 0..1000 {
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[test]
    fn mixed_sends_about_the_read_ratio_and_the_extremes_exactly() {
        let shape = |read_ratio| Shape {
            workload: Workload::Mixed,
            keys: KeySpace::new(100, 16).unwrap(),
            value: value(100, 1),
            consistency: Consistency::Consistent,
            read_ratio,
            sequence_size: 1,
            range_size: 1,
        };
        let gets = |ratio| {
            let mut rng = Rng::new(7, 3);
            let s = shape(ratio);
            (0..10_000)
                .filter(|_| s.next(&mut rng).0 == OpKind::Get)
                .count()
        };
        assert_eq!(gets(0.0), 0);
        assert_eq!(gets(1.0), 10_000);
        let g = gets(0.9);
        assert!((8_500..9_500).contains(&g), "{g}");
    }

    #[test]
    fn a_sequence_holds_the_asked_number_of_sets() {
        let s = Shape {
            workload: Workload::Sequence,
            keys: KeySpace::new(100, 16).unwrap(),
            value: value(3, 1),
            consistency: Consistency::Consistent,
            read_ratio: 0.0,
            sequence_size: 5,
            range_size: 1,
        };
        match s.next(&mut Rng::new(1, 1)) {
            (OpKind::Sequence, Request::Sequence(updates)) => {
                assert_eq!(updates.len(), 5);
                assert!(updates.iter().all(|u| matches!(u, Update::Set { .. })));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn values_have_the_asked_size() {
        for size in [0, 1, 7, 8, 9, 100, 1 << 20] {
            assert_eq!(value(size, 1).len(), size);
        }
    }
}
