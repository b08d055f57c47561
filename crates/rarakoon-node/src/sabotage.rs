//! Broken-on-purpose switches, so the deterministic simulator can prove each of its checkers
//! catches the bug it is for (ADR 0140).
//!
//! The fields exist only with the `test-support` cargo feature (off in every production
//! build); without it [`Sabotage`] is empty and every accessor returns `false`, so the
//! production code paths that consult it are the correct ones.

/// Which parts of the node to break. All off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sabotage {
    /// Report a round's persists durable BEFORE its fsync (a crash then loses acknowledged
    /// accepts).
    #[cfg(feature = "test-support")]
    pub ack_before_fsync: bool,
    /// Replace an uncommitted log tail by cutting and appending without the redo file, the
    /// new entries synced only with the round (a crash in between loses accepted entries).
    #[cfg(feature = "test-support")]
    pub skip_redo: bool,
    /// Serve consistent reads whatever the lease's expiry says.
    #[cfg(feature = "test-support")]
    pub reads_past_lease: bool,
    /// Never write the promise file: after a restart the node promises and accepts ballots it
    /// already refused, so a ballot can be reused.
    #[cfg(feature = "test-support")]
    pub forget_promise: bool,
    /// Answer every catch-up request with nothing: a node that fell behind never catches up
    /// from the log (snapshots still flow).
    #[cfg(feature = "test-support")]
    pub no_catch_up: bool,
    /// Take client writes but never propose them (the client's reply is dropped unanswered):
    /// nothing commits.
    #[cfg(feature = "test-support")]
    pub drop_proposals: bool,
    /// Refuse to start after a crash that tore the log's last write (instead of cutting it):
    /// a crashed node does not come back.
    #[cfg(feature = "test-support")]
    pub refuse_torn_tail: bool,
    /// paxos-core's own switches.
    #[cfg(feature = "test-support")]
    pub paxos: paxos_core::Sabotage,
}

macro_rules! switch {
    ($name:ident) => {
        /// Whether this switch is on (always `false` without `test-support`).
        #[must_use]
        pub fn $name(&self) -> bool {
            #[cfg(feature = "test-support")]
            {
                self.$name
            }
            #[cfg(not(feature = "test-support"))]
            {
                false
            }
        }
    };
}

impl Sabotage {
    switch!(ack_before_fsync);
    switch!(skip_redo);
    switch!(reads_past_lease);
    switch!(forget_promise);
    switch!(no_catch_up);
    switch!(drop_proposals);
    switch!(refuse_torn_tail);

    /// Whether anything at all is broken.
    #[must_use]
    pub fn any(&self) -> bool {
        #[cfg(feature = "test-support")]
        let paxos = self.paxos != paxos_core::Sabotage::default();
        #[cfg(not(feature = "test-support"))]
        let paxos = false;
        paxos
            || self.ack_before_fsync()
            || self.skip_redo()
            || self.reads_past_lease()
            || self.forget_promise()
            || self.no_catch_up()
            || self.drop_proposals()
            || self.refuse_torn_tail()
    }
}
