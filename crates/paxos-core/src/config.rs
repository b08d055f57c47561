//! Cluster and timing configuration of one core, validated once at construction.
//!
//! Invariants kept by [`Config::validate`]: at least one voter; every node id fits a `u64`
//! bitset (at most 64 nodes); the quorum (majority of voters, or the override) is reachable;
//! bounds on batches, pipeline and catch-up are non-zero; the lease timing leaves a positive
//! window for the master after the drift margin.

use crate::types::{NodeId, Time};

/// What part a node plays in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Votes, keeps and applies the log, may become master.
    Voter,
    /// Votes and keeps the log, never applies it, never serves reads, never becomes master.
    Witness,
    /// Receives committed values and applies them; never votes, never becomes master.
    Learner,
}

/// How the cluster chooses its master (Arakoon's `master` settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterMode {
    /// Elected through Paxos with a lease.
    Elected,
    /// No master at all: writes are refused with [`crate::Reply::ReadOnly`].
    ReadOnly,
    /// Only this node ever stands (Arakoon's forced master); still goes through Paxos phase 1
    /// so the log stays safe, but no other node competes.
    Forced(NodeId),
}

/// Test-only switches that break the protocol on purpose so the simulator can prove its
/// checkers catch the resulting bugs. Only settable with the `test-support` feature (the
/// `Config::sabotage` field); without it the core reads all of them as `false`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sabotage {
    /// Skip the one-lease wait after start-up (restart amnesia, arakoon#483).
    pub skip_startup_wait: bool,
    /// Count the master toward a quorum before its own persist is durable.
    pub count_self_before_durable: bool,
    /// Let the master believe its lease as long as slaves wait, ignoring clock drift.
    pub ignore_drift_margin: bool,
}

/// Configuration of one core.
#[derive(Debug, Clone)]
pub struct Config {
    /// Which node this core is.
    pub me: NodeId,
    /// Role of every node, indexed by [`NodeId`].
    pub nodes: Vec<Role>,
    /// Quorum override (`quorum = k`). `None`: a majority of voters and witnesses. A value
    /// below a majority risks split brain: two disjoint groups may each commit.
    pub quorum: Option<usize>,
    /// Elected, read-only or forced master.
    pub mode: MasterMode,
    /// Preferred masters, most preferred first: an elected master hands over to a voter listed
    /// before it (any listed voter, if it is not listed) once that voter is within
    /// `preferred_handover_gap` entries, and a node waits longer before standing the later it
    /// comes in the list (unlisted nodes last), so the first listed voter that is up wins.
    pub preferred_masters: Vec<NodeId>,
    /// How close (in entries) a preferred node must be before the master hands over.
    pub preferred_handover_gap: u64,
    /// Master lease period in nanoseconds of local time.
    pub lease_period: Time,
    /// How long a slave honours the lease it saw last, in permille of `lease_period`
    /// (Arakoon: 1100..1200).
    pub slave_wait_permille: u64,
    /// The master renews when this permille of the lease has passed without an accept
    /// (Arakoon: 500).
    pub renew_permille: u64,
    /// Bound on every node's clock-rate error against true time, in parts per million (two
    /// clocks may thus differ by up to twice this).
    pub max_clock_drift_ppm: u64,
    /// Upper bound of the random back-off before standing for election, in nanoseconds.
    pub election_jitter: Time,
    /// A candidate or master resends unanswered prepares/accepts after this long.
    pub retransmit_interval: Time,
    /// At most this many client proposals in one value.
    pub max_batch_count: usize,
    /// At most this many payload bytes in one value (a single larger proposal is refused).
    pub max_batch_bytes: usize,
    /// At most this many values in flight (proposed, not yet committed).
    pub max_in_flight: usize,
    /// At most this many proposals queued on the master before new ones are refused.
    pub max_queued_proposals: usize,
    /// At most this many entries in one catch-up answer (served and accepted). The driver
    /// bounds an answer in bytes too; this bound matters for small entries, where a larger
    /// answer means fewer round trips (ADR 0190). Every node must allow at least what its
    /// peers serve: a longer answer is ignored as invalid.
    pub max_catch_up_entries: u64,
    /// Test-only protocol-breaking switches (feature `test-support`); all off by default.
    #[cfg(feature = "test-support")]
    pub sabotage: Sabotage,
}

/// A configuration that cannot work, with the field to fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A field is out of range.
    #[error("paxos config field `{field}`: {problem}")]
    Invalid {
        /// Field name.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

fn invalid(field: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        problem: problem.into(),
    }
}

impl Config {
    /// A configuration with Arakoon-like defaults for `me` among `nodes`, times in nanoseconds:
    /// slaves wait 1.15 leases, the master renews at half a lease, election jitter a quarter
    /// lease, retransmission after a twentieth of a lease but at most 50 ms.
    #[must_use]
    pub fn new(me: NodeId, nodes: Vec<Role>, lease_period: Time) -> Config {
        Config {
            me,
            nodes,
            quorum: None,
            mode: MasterMode::Elected,
            preferred_masters: Vec::new(),
            preferred_handover_gap: 8,
            lease_period,
            slave_wait_permille: 1150,
            renew_permille: 500,
            max_clock_drift_ppm: 10_000,
            election_jitter: lease_period / 4,
            retransmit_interval: (lease_period / 20).clamp(1, 50_000_000),
            max_batch_count: 256,
            max_batch_bytes: 1 << 20,
            max_in_flight: 8,
            max_queued_proposals: 16_384,
            max_catch_up_entries: 16_384,
            #[cfg(feature = "test-support")]
            sabotage: Sabotage::default(),
        }
    }

    /// The sabotage switches in force: the configured ones with the `test-support` feature,
    /// all off (the correct protocol) without it.
    #[must_use]
    pub(crate) fn sabotage(&self) -> Sabotage {
        #[cfg(feature = "test-support")]
        {
            self.sabotage
        }
        #[cfg(not(feature = "test-support"))]
        {
            Sabotage::default()
        }
    }

    /// Checks every bound; see [`ConfigError`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.nodes.is_empty() || self.nodes.len() > 64 {
            return Err(invalid("nodes", "need between 1 and 64 nodes"));
        }
        if self.me.index() >= self.nodes.len() {
            return Err(invalid(
                "me",
                format!("{} is not in the node list", self.me),
            ));
        }
        let voters = self.voter_count();
        if voters == 0 {
            return Err(invalid("nodes", "need at least one voter or witness"));
        }
        if let Some(q) = self.quorum
            && (q == 0 || q > voters)
        {
            return Err(invalid(
                "quorum",
                format!("{q} is not between 1 and the {voters} voting nodes"),
            ));
        }
        if let MasterMode::Forced(n) = self.mode
            && self.nodes.get(n.index()) != Some(&Role::Voter)
        {
            return Err(invalid("mode", format!("forced master {n} is not a voter")));
        }
        if let Some(p) = self
            .preferred_masters
            .iter()
            .find(|p| self.nodes.get(p.index()) != Some(&Role::Voter))
        {
            return Err(invalid("preferred_masters", format!("{p} is not a voter")));
        }
        if self.lease_period == 0 {
            return Err(invalid("lease_period", "must be positive"));
        }
        if self.slave_wait_permille < 1000 {
            return Err(invalid("slave_wait_permille", "must be at least 1000"));
        }
        if self.renew_permille == 0 || self.renew_permille >= 1000 {
            return Err(invalid("renew_permille", "must be between 1 and 999"));
        }
        if self.max_clock_drift_ppm >= 200_000 {
            return Err(invalid("max_clock_drift_ppm", "must be below 200000"));
        }
        if self.retransmit_interval == 0 {
            return Err(invalid("retransmit_interval", "must be positive"));
        }
        if self.max_batch_count == 0 || self.max_batch_bytes == 0 {
            return Err(invalid("max_batch_count", "batch bounds must be positive"));
        }
        if self.max_in_flight == 0 || self.max_in_flight > 4096 {
            return Err(invalid("max_in_flight", "must be between 1 and 4096"));
        }
        if self.max_catch_up_entries == 0 || self.max_queued_proposals == 0 {
            return Err(invalid("max_catch_up_entries", "must be positive"));
        }
        Ok(())
    }

    /// Number of nodes that vote (voters and witnesses).
    #[must_use]
    pub fn voter_count(&self) -> usize {
        self.nodes.iter().filter(|r| **r != Role::Learner).count()
    }

    /// Promises or accepts needed to decide.
    #[must_use]
    pub fn quorum_size(&self) -> usize {
        self.quorum.unwrap_or(self.voter_count() / 2 + 1)
    }

    /// Role of `node`, if it is configured.
    #[must_use]
    pub fn role(&self, node: NodeId) -> Option<Role> {
        self.nodes.get(node.index()).copied()
    }

    /// How long a slave honours a lease it saw (local time).
    #[must_use]
    pub fn slave_wait(&self) -> Time {
        mul_permille(self.lease_period, self.slave_wait_permille)
    }

    /// How long the master trusts its lease after sending the accept that renewed it: the slave
    /// wait shrunk by the worst clock-rate difference, `wait * (1 - d) / (1 + d)`, and never
    /// more than the lease period.
    #[must_use]
    pub fn master_lease_window(&self) -> Time {
        let wait = u128::from(self.slave_wait());
        if self.sabotage().ignore_drift_margin {
            return self.slave_wait();
        }
        let d = u128::from(self.max_clock_drift_ppm);
        let window = wait * (1_000_000 - d) / (1_000_000 + d);
        u64::try_from(window)
            .unwrap_or(u64::MAX)
            .min(self.lease_period)
    }

    /// Idle time after which the master proposes a renewal.
    #[must_use]
    pub fn renew_after(&self) -> Time {
        mul_permille(self.lease_period, self.renew_permille)
    }
}

fn mul_permille(t: Time, permille: u64) -> Time {
    u64::try_from(u128::from(t) * u128::from(permille) / 1000).unwrap_or(u64::MAX)
}
