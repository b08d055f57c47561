//! Per-operation timings for Arakoon's STATISTICS answer (docs/protocol.md §9).
//!
//! Each operation kind keeps Arakoon's "x" record: count, min, max, and the running mean and
//! M2 of Welford's algorithm (variance = M2 / n), all in seconds. Size averages (value bytes
//! per set/get, results per range, ...) are kept the same way. Updates take one short mutex.

use std::sync::Mutex;

/// The operation kinds Arakoon reports, in its statistics order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// set / confirm
    Set,
    /// get
    Get,
    /// delete
    Delete,
    /// sequence / synced_sequence
    Sequence,
    /// multi_get
    MultiGet,
    /// multi_get_option
    MultiGetOption,
    /// test_and_set
    TestAndSet,
    /// replace
    Replace,
    /// range
    Range,
    /// range_entries
    RangeEntries,
    /// rev_range_entries
    RevRangeEntries,
    /// prefix_keys
    Prefix,
    /// delete_prefix
    DeletePrefix,
}

/// Arakoon's names for the timing records, in order (after `harvest_stats`); the protocol
/// crate owns the statistics layout.
pub use rarakoon_client::STATISTICS_TIMING_NAMES as TIMING_NAMES;

/// Count, min, max, mean and M2 of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Series {
    /// Samples.
    pub n: u64,
    /// Smallest sample (`f64::MAX` when empty, as Arakoon).
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Running mean.
    pub mean: f64,
    /// Sum of squared differences from the mean.
    pub m2: f64,
}

impl Default for Series {
    fn default() -> Self {
        Series {
            n: 0,
            min: f64::MAX,
            max: 0.0,
            mean: 0.0,
            m2: 0.0,
        }
    }
}

impl Series {
    /// Adds one sample (Welford's update).
    pub fn add(&mut self, x: f64) {
        self.n += 1;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (x - self.mean);
    }

    /// Population variance (0 when empty).
    pub fn variance(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.m2 / self.n as f64
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    timings: [Series; 13],
    all: Series,
    sizes: [Series; 7],
}

/// Size averages Arakoon reports, in its order.
pub use rarakoon_client::STATISTICS_SIZE_NAMES as SIZE_NAMES;

/// The node's statistics.
#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<Inner>,
}

/// A copy of the statistics at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsSnapshot {
    /// Per-kind timings, in [`TIMING_NAMES`] order.
    pub timings: [Series; 13],
    /// Every operation (Arakoon's `op_info`).
    pub all: Series,
    /// Size averages, in [`SIZE_NAMES`] order.
    pub sizes: [f64; 7],
}

impl Stats {
    /// Records one operation of `op` that took `seconds` and moved `size` (bytes or results).
    pub fn record(&self, op: Op, seconds: f64, size: Option<u64>) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.timings[op as usize].add(seconds);
        inner.all.add(seconds);
        let size_slot = match op {
            Op::Set => Some(0),
            Op::Get => Some(1),
            Op::Range => Some(2),
            Op::RangeEntries => Some(3),
            Op::RevRangeEntries => Some(4),
            Op::Prefix => Some(5),
            Op::DeletePrefix => Some(6),
            _ => None,
        };
        if let (Some(slot), Some(size)) = (size_slot, size) {
            inner.sizes[slot].add(size as f64);
        }
    }

    /// The current figures.
    pub fn snapshot(&self) -> StatsSnapshot {
        let inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        StatsSnapshot {
            timings: inner.timings,
            all: inner.all,
            sizes: inner.sizes.map(|s| s.mean),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welford_matches_the_direct_formulas() {
        let mut s = Series::default();
        for x in [1.0, 2.0, 4.0, 7.0] {
            s.add(x);
        }
        assert_eq!(s.n, 4);
        assert_eq!((s.min, s.max), (1.0, 7.0));
        assert!((s.mean - 3.5).abs() < 1e-12);
        // population variance of 1,2,4,7: mean 3.5, squares 6.25+2.25+0.25+12.25 = 21 / 4
        assert!((s.variance() - 5.25).abs() < 1e-12);
    }

    #[test]
    fn records_land_in_their_slots() {
        let stats = Stats::default();
        stats.record(Op::Get, 0.001, Some(10));
        stats.record(Op::Get, 0.003, Some(30));
        stats.record(Op::Delete, 0.002, None);
        let s = stats.snapshot();
        assert_eq!(s.timings[Op::Get as usize].n, 2);
        assert_eq!(s.timings[Op::Delete as usize].n, 1);
        assert_eq!(s.all.n, 3);
        assert!((s.sizes[1] - 20.0).abs() < 1e-12);
        assert_eq!(s.timings[Op::Set as usize].min, f64::MAX);
    }
}
