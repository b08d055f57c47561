//! Named scenarios (Arakoon's lease-bug history) run against the correct protocol.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod sim;

use paxos_core::Sabotage;
use sim::scenarios::*;
use sim::world::SimReport;

fn assert_ok(report: &SimReport) {
    assert!(report.ok(), "violations:\n{}", report.describe());
}

#[test]
fn restart_amnesia_arakoon_483() {
    assert_ok(&restart_amnesia(Sabotage::default()));
}

#[test]
fn master_counts_itself_only_once_durable() {
    assert_ok(&master_counted_before_durable(Sabotage::default()));
}

#[test]
fn drifting_clocks_with_isolated_master() {
    assert_ok(&drifting_isolated_master(Sabotage::default()));
}

#[test]
fn no_new_master_under_a_live_one_arakoon_117() {
    let (report, others_elected, kept) = no_election_under_live_master();
    assert_ok(&report);
    assert_eq!(
        others_elected,
        0,
        "a master was elected under the live one:\n{}",
        report.describe()
    );
    assert_eq!(
        kept,
        1,
        "the live master lost office:\n{}",
        report.describe()
    );
}

#[test]
fn stale_lease_messages_are_ignored_arakoon_224_237_349() {
    let (report, _old, kept) = stale_lease_messages();
    assert_ok(&report);
    assert!(
        kept.is_some(),
        "the new master lost office to stale messages:\n{}",
        report.describe()
    );
}

#[test]
fn no_lease_expiry_storm_on_a_stable_master_arakoon_215() {
    let report = stable_master_under_lossy_links();
    assert_ok(&report);
    assert_eq!(report.masters_elected, 1, "{}", report.describe());
}

#[test]
fn paused_old_master_does_not_serve_reads_on_resume() {
    let (report, other_master, serves) = paused_master_resumes();
    assert_ok(&report);
    assert!(
        other_master,
        "no new master during the pause:\n{}",
        report.describe()
    );
    assert!(
        !serves,
        "the resumed old master would serve a consistent read"
    );
}

/// Issue 9, part 1 (fixed in the core): fails on a core that takes office before its own
/// promise is durable and reuses the ballot after a crash ("agreement broken at index ...").
#[test]
fn slow_master_disk_with_crashes_between_persist_and_durable_keeps_agreement() {
    let rounds = 4;
    let (report, crashed, early) = slow_master_disk_crashes_between_persist_and_durable(rounds);
    eprintln!(
        "{}\ncrashed between promise persist and durable: {crashed} of {rounds} rounds, \
         {early} of them already in office",
        report.describe()
    );
    assert_ok(&report);
    assert_eq!(
        crashed,
        rounds,
        "the scenario did not crash the master inside its persist window every round:\n{}",
        report.describe()
    );
}

/// Issue 9, part 3 (fixed in the core): fails on a core that accepts `LeaseReleased` from a
/// node other than the lease's holder ("lease safety broken").
#[test]
fn lease_released_by_a_non_holder_is_ignored() {
    let (report, usurpers) = lease_released_by_a_non_holder();
    eprintln!("{}", report.describe());
    assert_ok(&report);
    assert_eq!(
        usurpers,
        0,
        "a master was elected under the live one's lease:\n{}",
        report.describe()
    );
}
