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
