//! The simulator's one source of randomness: splitmix64, seeded per run.

/// A small, seeded generator; every random choice of a run comes from one of these.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x6A09_E667_F3BC_C908)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// A value in `0..n` (`0` when `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// A float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A value in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo).saturating_add(1))
    }

    /// An independent generator for a sub-component.
    pub fn fork(&mut self) -> Rng {
        Rng(self.next_u64())
    }
}

/// splitmix64's finaliser.
pub fn mix(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// An order-sensitive running hash of a run's events (the determinism proof).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Trace(pub u64);

impl Trace {
    pub fn add(&mut self, x: u64) {
        self.0 = mix(self.0 ^ x).wrapping_add(0x9E37_79B9_7F4A_7C15);
    }

    pub fn add_bytes(&mut self, bytes: &[u8]) {
        let mut h = 0xCBF2_9CE4_8422_2325u64;
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01B3);
        }
        self.add(h);
    }
}
