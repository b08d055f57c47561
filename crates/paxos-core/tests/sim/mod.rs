//! The deterministic simulator (see ADR 0040): runs the real core for 3 or 5 voters (plus a
//! learner) in one thread with virtual time, one seeded RNG and one event queue; injects
//! network, disk, clock and pause faults; checks agreement, durability, lease safety, monotonic
//! commit, liveness and linearizability.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod kv;
pub mod scenarios;
pub mod world;
