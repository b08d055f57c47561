//! `paxos-core`: Rarakoon's consensus core, a pure Multi-Paxos state machine with Arakoon's
//! master lease.
//!
//! The core is a plain struct driven by [`Core::step`]: the driver passes the current monotonic
//! time, a random word and one [`Event`]; the core appends [`Effect`]s (persist, send, apply,
//! reply, mastership changes, catch-up) that the driver executes in order. There is no I/O,
//! clock, RNG, thread or `HashMap` iteration inside, so the same inputs give the same outputs —
//! the deterministic simulator in `tests/` relies on that.
//!
//! Node identities are [`NodeId`]s: indexes into the configured node list; names live only in the
//! driver. Client updates are opaque byte payloads; a [`Value`] is either "node X is master" or a
//! batch of `(ProposalId, payload)`.
//!
//! Test scaffolding sits behind the `test-support` cargo feature (off by default): the
//! `Sabotage` switches of [`Config`], which break the protocol on purpose so the simulator can
//! prove its checkers, and the `linearizability` checker of key-value histories. Without the
//! feature neither exists and the core always runs the correct protocol.
//!
//! Safety rules the core keeps, whatever its peers send (module docs of `core` list them all,
//! and the local ones are asserted, in release builds too): at most one value per (ballot,
//! index), across crashes (a candidate sends its `Prepare` only once its own promise is durable);
//! nothing leaves before the persist it depends on is durable; `promised` and `committed` never
//! go back; values are applied in index order; every field of every peer message is
//! range-checked before use, so one message cannot abort the node; a lease is released only by
//! its holder, and a master leaves office before it says so.
//!
//! See `README.md` for the protocol and `docs/adr/0040-*.md`..`0042-*.md` and
//! `docs/adr/0100-*.md` for the decisions.

mod config;
mod core;
mod io;
mod message;
mod types;

#[cfg(feature = "test-support")]
pub mod linearizability;

#[cfg(feature = "test-support")]
pub use crate::config::Sabotage;
pub use crate::config::{Config, ConfigError, MasterMode, Role};
pub use crate::core::{Core, StartError};
pub use crate::io::{CatchUpRead, Effect, Event, NodeRole, Persist, RecoveredState, Reply, Status};
pub use crate::message::{Message, PrepareRefusal};
pub use crate::types::{Ballot, Index, LogEntry, NodeId, Proposal, ProposalId, Time, Value};
