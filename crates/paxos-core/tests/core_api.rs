//! The core driven by hand, message by message: start-up validation, persistence before
//! answers, the lease refusal, input validation. (Hostile input: `tests/hostile.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use paxos_core::{
    Ballot, Config, ConfigError, Core, Effect, Event, LogEntry, MasterMode, Message, NodeId,
    Persist, PrepareRefusal, Proposal, ProposalId, RecoveredState, Reply, Role, StartError, Value,
};

const LEASE: u64 = 1_000_000_000;

fn config(me: u8, voters: usize) -> Config {
    Config::new(NodeId(me), vec![Role::Voter; voters], LEASE)
}

fn started(me: u8, voters: usize) -> Core {
    let mut core = Core::new(config(me, voters)).unwrap();
    let mut out = Vec::new();
    core.step(0, 0, Event::Start(RecoveredState::default()), &mut out)
        .unwrap();
    core
}

fn step(core: &mut Core, now: u64, event: Event) -> Vec<Effect> {
    let mut out = Vec::new();
    core.step(now, 7, event, &mut out).unwrap();
    out
}

fn persists(out: &[Effect]) -> Vec<Persist> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Persist(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

fn sends(out: &[Effect]) -> Vec<Message> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Send { msg, .. } | Effect::Broadcast(msg) => Some(msg.clone()),
            _ => None,
        })
        .collect()
}

fn batch(id: u64) -> Value {
    Value::Batch(vec![Proposal {
        id: ProposalId(id),
        payload: vec![1, 2, 3],
    }])
}

#[test]
fn config_errors_name_the_field() {
    let mut c = config(0, 3);
    c.quorum = Some(4);
    assert!(matches!(
        c.validate(),
        Err(ConfigError::Invalid {
            field: "quorum",
            ..
        })
    ));
    let mut c = config(0, 3);
    c.nodes[1] = Role::Learner;
    c.mode = MasterMode::Forced(NodeId(1));
    assert!(matches!(
        c.validate(),
        Err(ConfigError::Invalid { field: "mode", .. })
    ));
    let c = config(5, 3);
    assert!(matches!(
        c.validate(),
        Err(ConfigError::Invalid { field: "me", .. })
    ));
    let mut c = config(0, 3);
    c.max_in_flight = 0;
    assert!(c.validate().is_err());
    assert!(config(0, 3).validate().is_ok());
}

#[test]
fn lease_window_shrinks_with_drift() {
    let mut c = config(0, 3);
    c.max_clock_drift_ppm = 0;
    assert_eq!(c.master_lease_window(), LEASE);
    c.max_clock_drift_ppm = 100_000;
    // 1.15 * 0.9 / 1.1 = 0.9409...
    let w = c.master_lease_window();
    assert!(w < LEASE && w > LEASE * 94 / 100, "{w}");
    assert_eq!(c.slave_wait(), LEASE * 115 / 100);
}

#[test]
fn events_before_start_are_refused_and_start_is_validated() {
    let mut core = Core::new(config(0, 3)).unwrap();
    let mut out = Vec::new();
    assert_eq!(
        core.step(0, 0, Event::Tick, &mut out),
        Err(StartError::NotStarted)
    );
    core.step(
        0,
        0,
        Event::Propose {
            id: ProposalId(1),
            payload: vec![1],
        },
        &mut out,
    )
    .unwrap();
    assert_eq!(
        out,
        vec![Effect::Reply {
            id: ProposalId(1),
            reply: Reply::NotMaster { master: None }
        }]
    );

    let gap = RecoveredState {
        promised: Ballot::ZERO,
        committed: 5,
        entries: vec![LogEntry {
            index: 7,
            ballot: Ballot::ZERO,
            value: batch(1),
        }],
    };
    let err = core.step(0, 0, Event::Start(gap), &mut out).unwrap_err();
    assert_eq!(
        err,
        StartError::Gap {
            position: 0,
            found: 7,
            expected: 6
        }
    );
    assert!(err.to_string().contains("index 7"));

    let empty_batch = RecoveredState {
        promised: Ballot::ZERO,
        committed: 0,
        entries: vec![LogEntry {
            index: 1,
            ballot: Ballot::ZERO,
            value: Value::Batch(Vec::new()),
        }],
    };
    assert_eq!(
        core.step(0, 0, Event::Start(empty_batch), &mut out),
        Err(StartError::OversizedValue { index: 1 })
    );

    core.step(0, 0, Event::Start(RecoveredState::default()), &mut out)
        .unwrap();
    assert_eq!(
        core.step(0, 0, Event::Start(RecoveredState::default()), &mut out),
        Err(StartError::AlreadyStarted)
    );
}

#[test]
fn acceptor_refuses_promises_during_its_start_up_wait() {
    let mut core = started(1, 3);
    let ballot = Ballot {
        round: 1,
        node: NodeId(0),
    };
    let out = step(
        &mut core,
        10,
        Event::Message {
            from: NodeId(0),
            msg: Message::Prepare {
                ballot,
                committed: 0,
            },
        },
    );
    assert_eq!(
        sends(&out),
        vec![Message::PrepareRefused {
            ballot,
            reason: PrepareRefusal::LeaseActive { holder: None }
        }]
    );
}

#[test]
fn promise_and_accepted_leave_only_after_the_persist_is_durable() {
    let mut core = started(1, 3);
    let after_wait = 2 * LEASE;
    let ballot = Ballot {
        round: 2,
        node: NodeId(0),
    };
    let out = step(
        &mut core,
        after_wait,
        Event::Message {
            from: NodeId(0),
            msg: Message::Prepare {
                ballot,
                committed: 0,
            },
        },
    );
    let p = persists(&out);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].promise, Some(ballot));
    assert!(
        sends(&out).is_empty(),
        "promise sent before it was durable: {out:?}"
    );
    let out = step(
        &mut core,
        after_wait + 1,
        Event::Durable {
            ticket: p[0].ticket,
        },
    );
    assert_eq!(
        sends(&out),
        vec![Message::Promise {
            ballot,
            entries: Vec::new()
        }]
    );

    let accept = Message::Accept {
        ballot,
        index: 1,
        value: batch(9),
        committed: 0,
    };
    let out = step(
        &mut core,
        after_wait + 2,
        Event::Message {
            from: NodeId(0),
            msg: accept,
        },
    );
    let p = persists(&out);
    assert_eq!(p.len(), 1);
    assert_eq!(
        p[0].entries,
        vec![LogEntry {
            index: 1,
            ballot,
            value: batch(9)
        }]
    );
    assert!(sends(&out).is_empty());
    let out = step(
        &mut core,
        after_wait + 3,
        Event::Durable {
            ticket: p[0].ticket,
        },
    );
    assert_eq!(sends(&out), vec![Message::Accepted { ballot, index: 1 }]);

    // Commit arrives: the value is applied.
    let out = step(
        &mut core,
        after_wait + 4,
        Event::Message {
            from: NodeId(0),
            msg: Message::Commit {
                ballot,
                committed: 1,
            },
        },
    );
    assert_eq!(
        out,
        vec![Effect::Apply {
            index: 1,
            value: batch(9)
        }]
    );
    assert_eq!(core.committed(), 1);

    // The lease of node 0 is now honoured: node 2 is refused.
    let other = Ballot {
        round: 5,
        node: NodeId(2),
    };
    let out = step(
        &mut core,
        after_wait + 5,
        Event::Message {
            from: NodeId(2),
            msg: Message::Prepare {
                ballot: other,
                committed: 1,
            },
        },
    );
    assert_eq!(
        sends(&out),
        vec![Message::PrepareRefused {
            ballot: other,
            reason: PrepareRefusal::LeaseActive {
                holder: Some(NodeId(0))
            }
        }]
    );
    // A lower ballot is refused once a higher one is promised.
    let low = Ballot {
        round: 1,
        node: NodeId(2),
    };
    let out = step(
        &mut core,
        after_wait + 6,
        Event::Message {
            from: NodeId(2),
            msg: Message::Accept {
                ballot: low,
                index: 2,
                value: batch(1),
                committed: 0,
            },
        },
    );
    assert_eq!(
        sends(&out),
        vec![Message::AcceptRefused {
            ballot: low,
            promised: ballot
        }]
    );
}

#[test]
fn malformed_messages_are_ignored() {
    let mut core = started(1, 3);
    let t = 2 * LEASE;
    let ballot = Ballot {
        round: 1,
        node: NodeId(0),
    };
    // Unknown sender.
    assert!(
        step(
            &mut core,
            t,
            Event::Message {
                from: NodeId(9),
                msg: Message::Prepare {
                    ballot,
                    committed: 0
                }
            }
        )
        .is_empty()
    );
    // Ballot not owned by the sender.
    assert!(
        step(
            &mut core,
            t,
            Event::Message {
                from: NodeId(2),
                msg: Message::Prepare {
                    ballot,
                    committed: 0
                }
            }
        )
        .is_empty()
    );
    // Index 0, empty batch, oversized batch.
    assert!(
        step(
            &mut core,
            t,
            Event::Message {
                from: NodeId(0),
                msg: Message::Accept {
                    ballot,
                    index: 0,
                    value: batch(1),
                    committed: 0
                }
            }
        )
        .is_empty()
    );
    assert!(
        step(
            &mut core,
            t,
            Event::Message {
                from: NodeId(0),
                msg: Message::Accept {
                    ballot,
                    index: 1,
                    value: Value::Batch(Vec::new()),
                    committed: 0
                }
            }
        )
        .is_empty()
    );
    let huge = Value::Batch(vec![Proposal {
        id: ProposalId(1),
        payload: vec![0; (1 << 20) + 1],
    }]);
    assert!(
        step(
            &mut core,
            t,
            Event::Message {
                from: NodeId(0),
                msg: Message::Accept {
                    ballot,
                    index: 1,
                    value: huge,
                    committed: 0
                }
            }
        )
        .is_empty()
    );
    // Master value naming a non-voter.
    assert!(
        step(
            &mut core,
            t,
            Event::Message {
                from: NodeId(0),
                msg: Message::Accept {
                    ballot,
                    index: 1,
                    value: Value::Master { node: NodeId(7) },
                    committed: 0
                }
            }
        )
        .is_empty()
    );
    // Durable for a ticket never issued.
    assert!(step(&mut core, t, Event::Durable { ticket: 99 }).is_empty());
    // Catch-up answer claiming more than its sender committed.
    assert!(
        step(
            &mut core,
            t,
            Event::Message {
                from: NodeId(0),
                msg: Message::CatchUpEntries {
                    first: 1,
                    values: vec![batch(1), batch(2)],
                    committed: 1
                }
            }
        )
        .is_empty()
    );
    assert_eq!(core.committed(), 0);
}

/// Drives a single-voter cluster: it elects itself after the start-up wait and commits.
#[test]
fn single_voter_elects_itself_and_commits() {
    let mut cfg = config(0, 1);
    cfg.max_in_flight = 1;
    let mut core = Core::new(cfg).unwrap();
    let mut now = 0;
    let mut out = Vec::new();
    core.step(now, 0, Event::Start(RecoveredState::default()), &mut out)
        .unwrap();
    let mut applied = Vec::new();
    let mut replies = Vec::new();
    let mut became = false;
    // Durability is immediate in this loop: every persist is reported durable at once.
    let drive = |core: &mut Core,
                 now: u64,
                 event: Event,
                 applied: &mut Vec<Value>,
                 replies: &mut Vec<(ProposalId, Reply)>,
                 became: &mut bool| {
        let mut queue = vec![event];
        while let Some(ev) = queue.pop() {
            let mut out = Vec::new();
            core.step(now, 3, ev, &mut out).unwrap();
            for e in out {
                match e {
                    Effect::Persist(p) => queue.push(Event::Durable { ticket: p.ticket }),
                    Effect::Apply { value, .. } => applied.push(value),
                    Effect::Reply { id, reply } => replies.push((id, reply)),
                    Effect::BecameMaster => *became = true,
                    _ => {}
                }
            }
        }
    };
    while !became {
        now += LEASE / 10;
        assert!(now < 3 * LEASE, "never elected");
        drive(
            &mut core,
            now,
            Event::Tick,
            &mut applied,
            &mut replies,
            &mut became,
        );
    }
    assert!(core.can_serve_consistent_read(now));
    assert!(!core.can_serve_consistent_read(now + 2 * LEASE));
    // Every proposal commits (durability is immediate here, so each is its own value).
    for id in 1..=3 {
        drive(
            &mut core,
            now,
            Event::Propose {
                id: ProposalId(id),
                payload: vec![id as u8],
            },
            &mut applied,
            &mut replies,
            &mut became,
        );
    }
    assert_eq!(replies.len(), 3, "{replies:?}");
    assert!(
        replies
            .iter()
            .all(|(_, r)| matches!(r, Reply::Committed { .. }))
    );
    let status = core.status();
    assert_eq!(status.master, Some(NodeId(0)));
    assert_eq!(status.committed, applied.len() as u64);
    // Oversized proposals are refused before anything is proposed.
    drive(
        &mut core,
        now,
        Event::Propose {
            id: ProposalId(9),
            payload: vec![0; (1 << 20) + 1],
        },
        &mut applied,
        &mut replies,
        &mut became,
    );
    assert_eq!(replies.last(), Some(&(ProposalId(9), Reply::Overloaded)));
}

#[test]
fn messages_survive_an_rkyv_round_trip() {
    let msgs = vec![
        Message::Prepare {
            ballot: Ballot {
                round: 3,
                node: NodeId(1),
            },
            committed: 9,
        },
        Message::Promise {
            ballot: Ballot {
                round: 3,
                node: NodeId(1),
            },
            entries: vec![LogEntry {
                index: 10,
                ballot: Ballot {
                    round: 2,
                    node: NodeId(0),
                },
                value: batch(4),
            }],
        },
        Message::PrepareRefused {
            ballot: Ballot::ZERO,
            reason: PrepareRefusal::Behind { committed: 4 },
        },
        Message::Accept {
            ballot: Ballot::ZERO,
            index: 1,
            value: Value::Master { node: NodeId(2) },
            committed: 0,
        },
        Message::CatchUpEntries {
            first: 1,
            values: vec![batch(1)],
            committed: 1,
        },
        Message::CatchUpPruned { snapshot_index: 77 },
    ];
    for m in msgs {
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&m).unwrap();
        let back = rkyv::from_bytes::<Message, rkyv::rancor::Error>(&bytes).unwrap();
        assert_eq!(back, m);
    }
}

// The hostile-input property test (the whole numeric domain, mutated real traffic, every role)
// lives in `tests/hostile.rs`.

/// A follower whose catch-up source stopped answering asks the node that keeps showing it is
/// ahead instead (found by the black-box fault suite: with the followers' links to the old
/// master cut one way, a lagging follower kept asking the old master, which could not hear it,
/// while the new master's accepts said where the entries were; the new master never got a
/// quorum and nothing committed until the heal).
#[test]
fn catch_up_moves_on_from_a_peer_that_does_not_answer() {
    let mut core = started(1, 3);
    let interval = config(1, 3).retransmit_interval;
    let old_master = Ballot {
        round: 1,
        node: NodeId(0),
    };
    let new_master = Ballot {
        round: 2,
        node: NodeId(2),
    };
    // The old master says 10 entries are committed: the follower asks it for them.
    let out = step(
        &mut core,
        1,
        Event::Message {
            from: NodeId(0),
            msg: Message::Commit {
                ballot: old_master,
                committed: 10,
            },
        },
    );
    assert!(out.iter().any(|e| matches!(
        e,
        Effect::Send {
            to: NodeId(0),
            msg: Message::CatchUpRequest { from: 1 }
        }
    )));
    // The old master never answers; the new master keeps sending accepts past the gap.
    let mut asked_new_master = false;
    let mut now = 1;
    for _ in 0..10 {
        now += interval;
        let mut out = step(&mut core, now, Event::Tick);
        out.extend(step(
            &mut core,
            now + 1,
            Event::Message {
                from: NodeId(2),
                msg: Message::Accept {
                    ballot: new_master,
                    index: 11,
                    value: batch(1),
                    committed: 10,
                },
            },
        ));
        if out.iter().any(|e| {
            matches!(
                e,
                Effect::Send {
                    to: NodeId(2),
                    msg: Message::CatchUpRequest { from: 1 }
                }
            )
        }) {
            asked_new_master = true;
            break;
        }
    }
    assert!(
        asked_new_master,
        "the follower kept asking the silent old master for the entries the new master has"
    );
}

#[test]
fn a_catch_up_answer_slower_than_the_retransmit_interval_is_still_taken() {
    // Found by the whole-node simulator (its seed 365 at the time): behind a master whose disk took longer
    // than the retransmit interval to serve catch-up reads, a follower timed out every request
    // and ignored every answer, and never caught up.
    let mut core = started(1, 3);
    let ballot = Ballot {
        round: 1,
        node: NodeId(0),
    };
    let t0 = 2 * LEASE;
    let out = step(
        &mut core,
        t0,
        Event::Message {
            from: NodeId(0),
            msg: Message::Commit {
                ballot,
                committed: 3,
            },
        },
    );
    assert!(
        sends(&out).contains(&Message::CatchUpRequest { from: 1 }),
        "{out:?}"
    );
    let late = t0 + config(1, 3).retransmit_interval + 1;
    step(&mut core, late, Event::Tick);
    let out = step(
        &mut core,
        late + 1,
        Event::Message {
            from: NodeId(0),
            msg: Message::CatchUpEntries {
                first: 1,
                values: vec![batch(1), batch(2), batch(3)],
                committed: 3,
            },
        },
    );
    assert!(
        out.iter()
            .any(|e| matches!(e, Effect::Apply { index: 3, .. })),
        "the late answer was ignored: {out:?}"
    );
    // An answer nobody asked for (another peer, or another index) is still refused.
    let mut other = started(1, 3);
    let out = step(
        &mut other,
        t0,
        Event::Message {
            from: NodeId(2),
            msg: Message::CatchUpEntries {
                first: 1,
                values: vec![batch(1)],
                committed: 1,
            },
        },
    );
    assert!(
        !out.iter().any(|e| matches!(e, Effect::Apply { .. })),
        "{out:?}"
    );
}

/// A catch-up answer larger than the old 256-entry bound is taken, and the request for the
/// next range goes out before the answer's applies, so the peer reads and sends it while the
/// driver applies this one (ADR 0190).
#[test]
fn a_large_catch_up_answer_is_taken_and_the_next_request_precedes_its_applies() {
    let mut core = started(1, 3);
    let ballot = Ballot {
        round: 1,
        node: NodeId(0),
    };
    let t0 = 2 * LEASE;
    let out = step(
        &mut core,
        t0,
        Event::Message {
            from: NodeId(0),
            msg: Message::Commit {
                ballot,
                committed: 5000,
            },
        },
    );
    assert!(sends(&out).contains(&Message::CatchUpRequest { from: 1 }));
    let values: Vec<Value> = (1..=1000).map(batch).collect();
    let out = step(
        &mut core,
        t0 + 1,
        Event::Message {
            from: NodeId(0),
            msg: Message::CatchUpEntries {
                first: 1,
                values,
                committed: 5000,
            },
        },
    );
    let applied: Vec<u64> = out
        .iter()
        .filter_map(|e| match e {
            Effect::Apply { index, .. } => Some(*index),
            _ => None,
        })
        .collect();
    assert_eq!(applied, (1..=1000).collect::<Vec<_>>(), "{out:?}");
    let request = out.iter().position(|e| {
        matches!(
            e,
            Effect::Send {
                to: NodeId(0),
                msg: Message::CatchUpRequest { from: 1001 }
            }
        )
    });
    let first_apply = out.iter().position(|e| matches!(e, Effect::Apply { .. }));
    assert!(
        request.is_some() && request < first_apply,
        "the next request must precede the applies: request at {request:?}, first apply at \
         {first_apply:?}"
    );
    let persisted = persists(&out);
    assert_eq!(persisted.len(), 1);
    assert_eq!(persisted[0].entries.len(), 1000);
    assert_eq!(persisted[0].committed, 1000);
}

/// `witnessed` (Arakoon's `node_is`) records what a checked message showed of its sender's
/// log, and nothing from a message that failed its checks.
#[test]
fn witnessed_records_only_checked_messages() {
    let mut core = started(1, 3);
    let t = 2 * LEASE;
    assert_eq!(core.witnessed().count(), 0, "nothing heard yet");
    let ballot = Ballot {
        round: 1,
        node: NodeId(0),
    };
    // Malformed: the index is beyond any real log, and the ballot is not the sender's.
    for (from, index) in [(NodeId(0), u64::MAX), (NodeId(2), 1)] {
        step(
            &mut core,
            t,
            Event::Message {
                from,
                msg: Message::Accept {
                    ballot,
                    index,
                    value: batch(1),
                    committed: 0,
                },
            },
        );
    }
    assert_eq!(core.witnessed().count(), 0, "malformed accepts recorded");
    step(
        &mut core,
        t,
        Event::Message {
            from: NodeId(0),
            msg: Message::Accept {
                ballot,
                index: 1,
                value: batch(1),
                committed: 0,
            },
        },
    );
    assert_eq!(core.witnessed().collect::<Vec<_>>(), vec![(NodeId(0), 1)]);
}
