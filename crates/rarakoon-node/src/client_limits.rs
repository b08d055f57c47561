//! `[cluster.clients]`: the client listener's timeouts and memory bounds, as config keys.
//!
//! The listener (`rarakoon_client::listener`, ADR 0125) bounds what a client, or a stranger,
//! can make the node hold: the time to send the prologue and each request, how long an idle
//! connection lives, how long unread replies wait, and the request bytes held per connection
//! and across all of them. This section lets an operator set them; every key has the
//! listener's default and a range checked at load time, so a typo cannot switch a bound off.
//!
//! Invariant: [`ClientLimits::apply`] sets every listener field this section names and no
//! other, so the config file is the whole truth about these bounds.

use std::time::Duration;

use rarakoon_client::listener::ListenerConfig;
use serde::{Deserialize, Serialize};

const MIB: u64 = 1024 * 1024;

/// `[cluster.clients]`: bounds on the client listener, the same on every node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientLimits {
    /// A connection must send its prologue (magic, version, cluster id) within this.
    #[serde(default = "default_prologue_timeout")]
    pub prologue_timeout_secs: f64,
    /// Once a request's first byte arrived, the whole request must arrive within this.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: f64,
    /// A connection with nothing in flight and nothing to write is closed after this long.
    /// Arakoon's clients keep idle connections open for minutes: keep it long.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: f64,
    /// Replies the client does not take (no byte written) for this long close the connection.
    #[serde(default = "default_write_timeout")]
    pub write_timeout_secs: f64,
    /// Request bytes all connections together may hold beyond their allowances (partial
    /// requests, requests read ahead or in flight); a connection needing more waits.
    #[serde(default = "default_memory_budget")]
    pub memory_budget_bytes: u64,
    /// Request bytes each connection may hold without drawing on the shared budget.
    #[serde(default = "default_connection_allowance")]
    pub connection_allowance_bytes: u64,
    /// Requests of one connection handled at once (pipelining); later ones wait unread.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: u32,
    /// Request bytes a connection reads ahead while requests of it are in flight.
    #[serde(default = "default_read_ahead")]
    pub max_read_ahead_bytes: u64,
}

fn default_prologue_timeout() -> f64 {
    10.0
}
fn default_request_timeout() -> f64 {
    60.0
}
fn default_idle_timeout() -> f64 {
    3600.0
}
fn default_write_timeout() -> f64 {
    30.0
}
fn default_memory_budget() -> u64 {
    256 * MIB
}
fn default_connection_allowance() -> u64 {
    64 * 1024
}
fn default_max_in_flight() -> u32 {
    64
}
fn default_read_ahead() -> u64 {
    MIB
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            prologue_timeout_secs: default_prologue_timeout(),
            request_timeout_secs: default_request_timeout(),
            idle_timeout_secs: default_idle_timeout(),
            write_timeout_secs: default_write_timeout(),
            memory_budget_bytes: default_memory_budget(),
            connection_allowance_bytes: default_connection_allowance(),
            max_in_flight: default_max_in_flight(),
            max_read_ahead_bytes: default_read_ahead(),
        }
    }
}

fn secs_in(field: &'static str, value: f64, max: f64) -> Result<(), (&'static str, String)> {
    if (0.1..=max).contains(&value) {
        Ok(())
    } else {
        Err((
            field,
            format!("is {value}; it must lie between 0.1 and {max} seconds"),
        ))
    }
}

fn bytes_in(
    field: &'static str,
    value: u64,
    min: u64,
    max: u64,
) -> Result<(), (&'static str, String)> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err((
            field,
            format!("is {value}; it must lie between {min} and {max} bytes"),
        ))
    }
}

impl ClientLimits {
    /// Whether every key has its default (the section is then left out when written).
    pub fn is_default(&self) -> bool {
        *self == ClientLimits::default()
    }

    /// `Err((field, problem))` for a value outside its range.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        secs_in("prologue_timeout_secs", self.prologue_timeout_secs, 3600.0)?;
        secs_in("request_timeout_secs", self.request_timeout_secs, 3600.0)?;
        secs_in("idle_timeout_secs", self.idle_timeout_secs, 7.0 * 86400.0)?;
        secs_in("write_timeout_secs", self.write_timeout_secs, 3600.0)?;
        bytes_in(
            "memory_budget_bytes",
            self.memory_budget_bytes,
            MIB,
            64 * 1024 * MIB,
        )?;
        bytes_in(
            "connection_allowance_bytes",
            self.connection_allowance_bytes,
            4096,
            64 * MIB,
        )?;
        bytes_in(
            "max_read_ahead_bytes",
            self.max_read_ahead_bytes,
            64 * 1024,
            1024 * MIB,
        )?;
        if !(1..=4096).contains(&self.max_in_flight) {
            return Err((
                "max_in_flight",
                format!("is {}; it must lie between 1 and 4096", self.max_in_flight),
            ));
        }
        Ok(())
    }

    /// Sets the listener's fields this section names (see the module invariant).
    pub fn apply(&self, listener: &mut ListenerConfig) {
        let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        listener.prologue_timeout = Duration::from_secs_f64(self.prologue_timeout_secs);
        listener.frame_timeout = Duration::from_secs_f64(self.request_timeout_secs);
        listener.idle_timeout = Duration::from_secs_f64(self.idle_timeout_secs);
        listener.write_timeout = Duration::from_secs_f64(self.write_timeout_secs);
        listener.memory_budget = size(self.memory_budget_bytes);
        listener.connection_allowance = size(self.connection_allowance_bytes);
        listener.max_in_flight = self.max_in_flight as usize;
        listener.max_read_ahead_bytes = size(self.max_read_ahead_bytes);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_defaults_are_the_listeners_own() {
        let mut from_config = ListenerConfig::new("c");
        ClientLimits::default().apply(&mut from_config);
        let listener = ListenerConfig::new("c");
        assert_eq!(from_config.prologue_timeout, listener.prologue_timeout);
        assert_eq!(from_config.frame_timeout, listener.frame_timeout);
        assert_eq!(from_config.idle_timeout, listener.idle_timeout);
        assert_eq!(from_config.write_timeout, listener.write_timeout);
        assert_eq!(from_config.memory_budget, listener.memory_budget);
        assert_eq!(
            from_config.connection_allowance,
            listener.connection_allowance
        );
        assert_eq!(from_config.max_in_flight, listener.max_in_flight);
        assert_eq!(
            from_config.max_read_ahead_bytes,
            listener.max_read_ahead_bytes
        );
        assert!(ClientLimits::default().validate().is_ok());
    }

    #[test]
    fn every_key_reaches_the_listener() {
        let limits = ClientLimits {
            prologue_timeout_secs: 1.5,
            request_timeout_secs: 2.5,
            idle_timeout_secs: 3.5,
            write_timeout_secs: 4.5,
            memory_budget_bytes: 5 * MIB,
            connection_allowance_bytes: 6000,
            max_in_flight: 7,
            max_read_ahead_bytes: 8 * MIB,
        };
        limits.validate().unwrap();
        let mut l = ListenerConfig::new("c");
        limits.apply(&mut l);
        assert_eq!(l.prologue_timeout, Duration::from_millis(1500));
        assert_eq!(l.frame_timeout, Duration::from_millis(2500));
        assert_eq!(l.idle_timeout, Duration::from_millis(3500));
        assert_eq!(l.write_timeout, Duration::from_millis(4500));
        assert_eq!(l.memory_budget, 5 * 1024 * 1024);
        assert_eq!(l.connection_allowance, 6000);
        assert_eq!(l.max_in_flight, 7);
        assert_eq!(l.max_read_ahead_bytes, 8 * 1024 * 1024);
    }

    #[test]
    fn values_outside_their_range_are_refused_by_name() {
        let cases: Vec<(&str, ClientLimits)> = vec![
            (
                "prologue_timeout_secs",
                ClientLimits {
                    prologue_timeout_secs: 0.0,
                    ..ClientLimits::default()
                },
            ),
            (
                "request_timeout_secs",
                ClientLimits {
                    request_timeout_secs: f64::NAN,
                    ..ClientLimits::default()
                },
            ),
            (
                "idle_timeout_secs",
                ClientLimits {
                    idle_timeout_secs: f64::INFINITY,
                    ..ClientLimits::default()
                },
            ),
            (
                "write_timeout_secs",
                ClientLimits {
                    write_timeout_secs: -1.0,
                    ..ClientLimits::default()
                },
            ),
            (
                "memory_budget_bytes",
                ClientLimits {
                    memory_budget_bytes: u64::MAX,
                    ..ClientLimits::default()
                },
            ),
            (
                "connection_allowance_bytes",
                ClientLimits {
                    connection_allowance_bytes: 0,
                    ..ClientLimits::default()
                },
            ),
            (
                "max_in_flight",
                ClientLimits {
                    max_in_flight: 0,
                    ..ClientLimits::default()
                },
            ),
            (
                "max_read_ahead_bytes",
                ClientLimits {
                    max_read_ahead_bytes: 1,
                    ..ClientLimits::default()
                },
            ),
        ];
        for (field, limits) in cases {
            let (got, problem) = limits.validate().unwrap_err();
            assert_eq!(got, field, "{problem}");
        }
    }
}
