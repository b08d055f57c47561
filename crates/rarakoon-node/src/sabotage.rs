//! Broken-on-purpose switches, so the deterministic simulator can prove each of its checkers
//! catches the bug it is for (issue 10).
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
    }
}
