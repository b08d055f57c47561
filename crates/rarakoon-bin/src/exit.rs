//! Exit codes, so scripts can tell "not found" from "something failed".
//!
//! - 0: success;
//! - 1: the answer is negative (key absent, `exists` false, corrupt WAL found by `verify`);
//! - 2: failure (bad arguments, bad config, unreachable cluster, a refused request).

use std::process::ExitCode;

/// Success.
pub const OK: u8 = 0;
/// A well-formed negative answer.
pub const NOT_FOUND: u8 = 1;
/// Any failure.
pub const FAILURE: u8 = 2;

/// Converts one of the constants above into an `ExitCode`.
pub fn code(value: u8) -> ExitCode {
    ExitCode::from(value)
}
