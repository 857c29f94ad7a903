use super::*;
use crate::options::Options;

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, Options::default()).unwrap()
}

fn append(store: &Store, stream: &str, event_type: &str, n: usize) -> Vec<u64> {
    (0..n)
        .map(|_| store.append(stream, ExpectedVersion::Any, vec![NewEvent::new(event_type, b"{}".to_vec())]).unwrap())
        .map(|r| r.first_position)
        .collect()
}

fn positions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(RecordedEvent::position).collect()
}

const NO_WAIT: Duration = Duration::ZERO;

#[test]
fn each_event_goes_to_one_consumer_and_acked_ones_never_come_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let all = append(&store, "order-1", "A", 6);
    store.create_group("g", GroupConfig::default()).unwrap();
    let a = store.read_group("g", "c1", 4, NO_WAIT).unwrap();
    let b = store.read_group("g", "c2", 10, NO_WAIT).unwrap();
    assert_eq!(positions(&a), all[..4]);
    assert_eq!(positions(&b), all[4..]);
    assert!(store.read_group("g", "c3", 10, NO_WAIT).unwrap().is_empty());
    assert_eq!(store.ack_group("g", &positions(&a)).unwrap(), 4);
    // Acking again, or a position never delivered to the group, acknowledges nothing.
    assert_eq!(store.ack_group("g", &positions(&a)).unwrap(), 0);
    let info = store.group_info("g").unwrap();
    assert_eq!((info.checkpoint, info.pending, info.delivered), (all[3], 2, 6));
    assert_eq!(info.consumers.iter().map(|c| (c.name.as_str(), c.pending)).collect::<Vec<_>>(), [
        ("c1", 0),
        ("c2", 2),
        ("c3", 0)
    ]);
    // Lag is what the group has not delivered yet: nothing, though its own acks were appended
    // (to a `$` stream) after the last event.
    assert!(store.head_position() > all[5]);
    assert_eq!(info.lag, 0);
    append(&store, "order-2", "B", 3);
    assert_eq!(store.group_info("g").unwrap().lag, 3);
    store.read_group("g", "c1", 1, NO_WAIT).unwrap();
    assert_eq!(store.group_info("g").unwrap().lag, 2);
}

#[test]
fn out_of_order_acks_survive_a_reopen_and_only_unacked_events_come_again() {
    let dir = tempfile::tempdir().unwrap();
    let all = {
        let store = open(dir.path());
        let mut all = append(&store, "order-1", "A", 3);
        store.create_group("g", GroupConfig::default()).unwrap();
        all.extend(append(&store, "order-2", "A", 3));
        let got = store.read_group("g", "c", 100, NO_WAIT).unwrap();
        assert_eq!(positions(&got), all);
        // Acknowledge the 2nd, 5th and 6th only, out of order.
        assert_eq!(store.ack_group("g", &[all[5], all[1]]).unwrap(), 2);
        assert_eq!(store.ack_group("g", &[all[4]]).unwrap(), 1);
        assert_eq!(store.group_info("g").unwrap().checkpoint, all[0] - 1);
        drop(store);
        all
    };
    let store = open(dir.path());
    let again = store.read_group("g", "c", 100, NO_WAIT).unwrap();
    assert_eq!(positions(&again), [all[0], all[2], all[3]]);
    assert_eq!(store.ack_group("g", &positions(&again)).unwrap(), 3);
    let info = store.group_info("g").unwrap();
    assert_eq!(info.pending, 0);
    // Everything matching is acknowledged: the checkpoint is at (or past) the last event.
    assert!(info.checkpoint >= all[5], "{info:?}");
}

#[test]
fn an_expired_pending_event_goes_again_to_the_next_reader() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let all = append(&store, "order-1", "A", 2);
    store.create_group("g", GroupConfig { ack_wait: Duration::from_millis(1), ..GroupConfig::default() }).unwrap();
    assert_eq!(positions(&store.read_group("g", "c1", 1, NO_WAIT).unwrap()), [all[0]]);
    std::thread::sleep(Duration::from_millis(5));
    // The expired one first, then the next new one.
    let got = store.read_group("g", "c2", 10, NO_WAIT).unwrap();
    assert_eq!(positions(&got), all);
    let info = store.group_info("g").unwrap();
    assert_eq!((info.delivered, info.redelivered), (3, 1));
    assert_eq!(store.ack_group("g", &all).unwrap(), 2);
    std::thread::sleep(Duration::from_millis(5));
    assert!(store.read_group("g", "c1", 10, NO_WAIT).unwrap().is_empty());
}

#[test]
fn filters_from_prefix_and_types_and_system_streams_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let early = append(&store, "acme:order-1", "A", 1);
    let a = append(&store, "acme:order-1", "A", 1);
    append(&store, "acme:order-1", "B", 1);
    append(&store, "beta:order-1", "A", 1);
    store.append_system("$other", ExpectedVersion::Any, vec![NewEvent::new("A", b"{}".to_vec())]).unwrap();
    let config = GroupConfig {
        from: early[0] + 1,
        stream_prefix: Some("acme:".into()),
        event_types: vec!["A".into()],
        ..GroupConfig::default()
    };
    store.create_group("acme:g", config.clone()).unwrap();
    assert_eq!(positions(&store.read_group("acme:g", "c", 10, NO_WAIT).unwrap()), a);
    assert_eq!(store.group_info("acme:g").unwrap().config, config);
    // A group of everything never delivers `$` streams (its own bookkeeping included).
    store.create_group("all", GroupConfig::default()).unwrap();
    let got = store.read_group("all", "c", 100, NO_WAIT).unwrap();
    assert!(got.iter().all(|e| !e.stream().starts_with('$')));
    assert_eq!(got.len(), 4);
}

#[test]
fn create_delete_and_errors_name_what_was_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    append(&store, "s", "A", 1);
    store.create_group("g", GroupConfig::default()).unwrap();
    let err = store.create_group("g", GroupConfig::default()).unwrap_err().to_string();
    assert!(err.contains("group 'g' already exists"), "{err}");
    for name in ["", "a b", &"x".repeat(MAX_GROUP_NAME_BYTES + 1)] {
        assert!(matches!(store.create_group(name, GroupConfig::default()), Err(Error::InvalidInput(_))));
    }
    let zero = GroupConfig { ack_wait: Duration::ZERO, ..GroupConfig::default() };
    assert!(store.create_group("h", zero).unwrap_err().to_string().contains("ack wait"));
    let err = store.read_group("nope", "c", 1, NO_WAIT).unwrap_err().to_string();
    assert!(err.contains("no group 'nope'"), "{err}");
    assert!(store.ack_group("g", &[0]).unwrap_err().to_string().contains("position 0"));
    assert!(store.ack_group("g", &[999]).unwrap_err().to_string().contains("position 999"));
    assert!(store.ack_group("g", &[]).is_err());
    assert!(store.group_info("nope").is_err());
    assert!(store.delete_group("nope").is_err());
    assert_eq!(store.group_names(""), ["g"]);
    store.delete_group("g").unwrap();
    assert!(store.group_names("").is_empty());
    assert!(store.read_group("g", "c", 1, NO_WAIT).is_err());
    // A new group of the same name starts afresh, after a reopen too.
    store.create_group("g", GroupConfig::default()).unwrap();
    assert_eq!(store.read_group("g", "c", 10, NO_WAIT).unwrap().len(), 1);
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.group_names(""), ["g"]);
    assert_eq!(store.read_group("g", "c", 10, NO_WAIT).unwrap().len(), 1);
}

#[test]
fn a_deleted_group_stays_deleted_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store.create_group("g", GroupConfig::default()).unwrap();
        store.delete_group("g").unwrap();
    }
    let store = open(dir.path());
    assert!(store.group_names("").is_empty());
    assert!(store.group_info("g").is_err());
}

#[test]
fn append_system_takes_only_system_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let event = || vec![NewEvent::new("X", b"{}".to_vec())];
    for bad in ["order-1", "$all", "$deleted", ""] {
        assert!(matches!(store.append_system(bad, ExpectedVersion::Any, event()), Err(Error::InvalidInput(_))), "{bad}");
    }
    store.append_system("$webhook-x", ExpectedVersion::NoStream, event()).unwrap();
    assert!(store.append("$webhook-x", ExpectedVersion::Any, event()).is_err());
}

#[test]
fn limits_on_groups_consumers_and_pending() {
    let dir = tempfile::tempdir().unwrap();
    let limits = GroupLimits { max_groups: 2, max_consumers: 2, max_pending: 3, ..GroupLimits::default() };
    let store = Store::open(dir.path(), Options { groups: limits, ..Options::default() }).unwrap();
    let all = append(&store, "s", "A", 5);
    store.create_group("g1", GroupConfig { ack_wait: Duration::from_millis(1), ..GroupConfig::default() }).unwrap();
    store.create_group("g2", GroupConfig::default()).unwrap();
    assert!(store.create_group("g3", GroupConfig::default()).unwrap_err().to_string().contains("limit 2"));
    // Pending is full at 3: only those 3 are delivered, again once expired.
    assert_eq!(positions(&store.read_group("g1", "a", 10, NO_WAIT).unwrap()), all[..3]);
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(positions(&store.read_group("g1", "b", 10, NO_WAIT).unwrap()), all[..3]);
    // Two consumers holding pending events: a third is refused.
    store.read_group("g2", "a", 1, NO_WAIT).unwrap();
    store.read_group("g2", "b", 1, NO_WAIT).unwrap();
    assert!(store.read_group("g2", "c", 1, NO_WAIT).unwrap_err().to_string().contains("consumers"));
    // Once "a" holds nothing, "c" takes its place.
    store.ack_group("g2", &[all[0]]).unwrap();
    store.read_group("g2", "c", 1, NO_WAIT).unwrap();
    let names: Vec<String> = store.group_info("g2").unwrap().consumers.into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["b", "c"]);
    // Acking frees room for new deliveries.
    store.ack_group("g1", &all[..3]).unwrap();
    assert_eq!(positions(&store.read_group("g1", "a", 10, NO_WAIT).unwrap()), all[3..]);
}

#[test]
fn snapshots_bound_the_replay_and_keep_out_of_order_acks() {
    let dir = tempfile::tempdir().unwrap();
    let n = SNAPSHOT_EVERY_ACKS as usize + 10;
    let all = {
        let store = Store::open(dir.path(), Options { sync: crate::options::SyncMode::Never, ..Options::default() })
            .unwrap();
        let mut events = Vec::new();
        for i in 0..n {
            events.push(NewEvent::new("A", format!("{i}").into_bytes()));
        }
        let r = store.append("s", ExpectedVersion::Any, events).unwrap();
        let all: Vec<u64> = (r.first_position..=r.last_position).collect();
        store.create_group("g", GroupConfig::default()).unwrap();
        assert_eq!(store.read_group("g", "c", n, NO_WAIT).unwrap().len(), n);
        // Ack everything but the first, one at a time, from the end.
        for p in all[1..].iter().rev() {
            assert_eq!(store.ack_group("g", &[*p]).unwrap(), 1);
        }
        let stream = store.read_stream("$group-g", 1, usize::MAX, Direction::Forward).unwrap();
        assert!(stream.iter().any(|e| e.event_type() == GROUP_CHECKPOINT));
        store.close().unwrap();
        all
    };
    let store = open(dir.path());
    assert_eq!(positions(&store.read_group("g", "c", n, NO_WAIT).unwrap()), [all[0]]);
    store.ack_group("g", &[all[0]]).unwrap();
    assert!(store.group_info("g").unwrap().checkpoint >= all[n - 1]);
}

#[test]
fn read_blocks_until_an_event_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create_group("g", GroupConfig::default()).unwrap();
    let writer = store.clone();
    let handle = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        append(&writer, "s", "A", 1)
    });
    let got = store.read_group("g", "c", 10, Duration::from_secs(30)).unwrap();
    let appended = handle.join().unwrap();
    assert_eq!(positions(&got), appended);
}

#[test]
fn failures_are_counted_per_position() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let all = append(&store, "s", "A", 1);
    store.create_group("$webhook-x", GroupConfig::default()).unwrap();
    assert_eq!(store.record_group_failure("$webhook-x", all[0]).unwrap(), 1);
    assert_eq!(store.record_group_failure("$webhook-x", all[0]).unwrap(), 2);
    assert_eq!(store.group_info("$webhook-x").unwrap().failures, 2);
    assert!(store.record_group_failure("nope", 1).is_err());
}

#[test]
fn compaction_keeps_group_state_and_groups_skip_what_it_removed() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options { segment_bytes: 4096, ..Options::default() };
    let store = Store::open(dir.path(), options()).unwrap();
    // Streams that fill the first segments, then deleted: compaction removes their events.
    let gone: Vec<u64> = (0..40).flat_map(|i| append(&store, &format!("gone-{i}"), "A", 1)).collect();
    store.create_group("g", GroupConfig::default()).unwrap();
    let kept = append(&store, "kept", "A", 3);
    let got = store.read_group("g", "c", 2, NO_WAIT).unwrap();
    assert_eq!(positions(&got), gone[..2]);
    store.ack_group("g", &[gone[1]]).unwrap();
    for i in 0..40 {
        store.delete_stream(&format!("gone-{i}"), ExpectedVersion::Any).unwrap();
    }
    let policy = crate::retention::RetentionPolicy::from_config(&crate::retention::RetentionConfig::default(), &[])
        .unwrap();
    let report = crate::compact::compact(&store, &policy, store.now_us(), |_, _| {}).unwrap();
    assert!(report.purged >= 40, "{report:?}");
    // The group stream is intact: the same group after a reopen, its acknowledgement kept.
    let stream_events = store.read_stream("$group-g", 1, 100, Direction::Forward).unwrap();
    assert_eq!(stream_events.iter().map(|e| e.event_type()).collect::<Vec<_>>(), [GROUP_CREATED, GROUP_ACKED]);
    drop(store);
    let store = Store::open(dir.path(), options()).unwrap();
    // What compaction removed is not delivered (the pending one was forgotten at the restart,
    // and its stream is gone); what is left comes, in order.
    let got = store.read_group("g", "c", 100, NO_WAIT).unwrap();
    assert_eq!(positions(&got), kept);
    store.ack_group("g", &kept).unwrap();
    assert_eq!(store.group_info("g").unwrap().pending, 0);
}

/// A model of one group with a long ACKWAIT (no expiry): what reads, ACKs and reopens must do.
mod model {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[derive(Debug, Clone)]
    enum Op {
        /// Appends one event to a stream the group selects (`true`) or not.
        Append(bool),
        /// A system stream's event: never delivered.
        AppendSystem,
        Read { consumer: u8, max: usize },
        /// Acknowledges the delivered positions picked by these indexes (out of order).
        Ack(Vec<usize>),
        /// A position the group never delivers (another stream's): ignored.
        AckUndelivered,
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => any::<bool>().prop_map(Op::Append),
            1 => Just(Op::AppendSystem),
            3 => (0u8..3, 1usize..5).prop_map(|(consumer, max)| Op::Read { consumer, max }),
            3 => proptest::collection::vec(0usize..64, 1..4).prop_map(Op::Ack),
            1 => Just(Op::AckUndelivered),
            1 => Just(Op::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
        #[test]
        fn a_group_behaves_like_its_model(ops in proptest::collection::vec(op(), 1..40)) {
            let dir = tempfile::tempdir().unwrap();
            let options = || Options { sync: crate::options::SyncMode::Never, ..Options::default() };
            let mut store = Store::open(dir.path(), options()).unwrap();
            let config = GroupConfig { stream_prefix: Some("a-".into()), ..GroupConfig::default() };
            store.create_group("g", config).unwrap();
            // The model: matching positions, acknowledged ones, pending ones (since the open).
            let (mut matching, mut acked, mut pending) = (Vec::new(), BTreeSet::new(), BTreeSet::new());
            let mut delivered_ever: Vec<u64> = Vec::new();
            for op in ops {
                match op {
                    Op::Append(selected) => {
                        let stream = if selected { "a-1" } else { "b-1" };
                        let p = append(&store, stream, "A", 1)[0];
                        if selected {
                            matching.push(p);
                        }
                    }
                    Op::AppendSystem => {
                        store.append_system("$a-sys", ExpectedVersion::Any, vec![NewEvent::new("A", b"{}".to_vec())]).unwrap();
                    }
                    Op::Read { consumer, max } => {
                        let got = positions(&store.read_group("g", &format!("c{consumer}"), max, NO_WAIT).unwrap());
                        let expected: Vec<u64> = matching
                            .iter()
                            .copied()
                            .filter(|p| !acked.contains(p) && !pending.contains(p))
                            .take(max)
                            .collect();
                        prop_assert_eq!(&got, &expected);
                        pending.extend(got.iter().copied());
                        delivered_ever.extend(got);
                    }
                    Op::Ack(picks) => {
                        if delivered_ever.is_empty() {
                            continue;
                        }
                        let chosen: Vec<u64> = picks.iter().map(|i| delivered_ever[i % delivered_ever.len()]).collect();
                        let newly: BTreeSet<u64> = chosen.iter().copied().filter(|p| pending.contains(p)).collect();
                        prop_assert_eq!(store.ack_group("g", &chosen).unwrap(), newly.len());
                        for p in newly {
                            pending.remove(&p);
                            acked.insert(p);
                        }
                    }
                    Op::AckUndelivered => {
                        let never = append(&store, "b-1", "A", 1)[0];
                        prop_assert_eq!(store.ack_group("g", &[never]).unwrap(), 0);
                    }
                    Op::Reopen => {
                        drop(store);
                        store = Store::open(dir.path(), options()).unwrap();
                        pending.clear();
                    }
                }
                let info = store.group_info("g").unwrap();
                prop_assert_eq!(info.pending, pending.len());
                // The checkpoint never claims an unacknowledged event.
                prop_assert!(matching.iter().all(|p| *p > info.checkpoint || acked.contains(p)), "{:?}", info);
            }
        }
    }
}

#[test]
fn a_group_whose_acks_ran_ahead_still_delivers_the_event_its_checkpoint_waits_for_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let limits = GroupLimits { max_acked_ahead: 3, ..GroupLimits::default() };
    let options = || Options { groups: limits, ..Options::default() };
    let all = {
        let store = Store::open(dir.path(), options()).unwrap();
        let all = append(&store, "s", "A", 6);
        store.create_group("g", GroupConfig::default()).unwrap();
        assert_eq!(store.read_group("g", "c", 10, NO_WAIT).unwrap().len(), 6);
        // Everything but the first acknowledged: five above the checkpoint, past the bound.
        assert_eq!(store.ack_group("g", &all[1..]).unwrap(), 5);
        all
    };
    let store = Store::open(dir.path(), options()).unwrap();
    let later = append(&store, "s", "A", 1);
    // The first event (delivered before the reopen, never acknowledged) comes again; the
    // event after the acknowledged ones waits until the checkpoint moves.
    assert_eq!(positions(&store.read_group("g", "c", 10, NO_WAIT).unwrap()), [all[0]]);
    assert!(store.read_group("g", "c", 10, NO_WAIT).unwrap().is_empty());
    store.ack_group("g", &[all[0]]).unwrap();
    assert_eq!(store.group_info("g").unwrap().checkpoint, *all.last().unwrap());
    assert_eq!(positions(&store.read_group("g", "c", 10, NO_WAIT).unwrap()), later);
}

#[test]
fn pending_events_of_all_groups_together_are_bounded_and_released_ones_come_again_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let limits = GroupLimits { max_pending_total: 4, ..GroupLimits::default() };
    let store = Store::open(dir.path(), Options { groups: limits, ..Options::default() }).unwrap();
    let all = append(&store, "s", "A", 6);
    store.create_group("g1", GroupConfig::default()).unwrap();
    store.create_group("g2", GroupConfig::default()).unwrap();
    assert_eq!(store.read_group("g1", "c", 3, NO_WAIT).unwrap().len(), 3);
    // One left of the store's 4, whatever g2's own bound.
    assert_eq!(positions(&store.read_group("g2", "c", 10, NO_WAIT).unwrap()), [all[0]]);
    assert!(store.read_group("g2", "c", 10, NO_WAIT).unwrap().is_empty());
    // Deleting g1 frees its three.
    store.delete_group("g1").unwrap();
    assert_eq!(positions(&store.read_group("g2", "c", 10, NO_WAIT).unwrap()), all[1..4]);
    // Handed back unsent: due again at once (ack_wait is 30 s), and not a redelivery.
    assert_eq!(store.release_group("g2", &all[2..4]).unwrap(), 2);
    assert_eq!(positions(&store.read_group("g2", "d", 10, NO_WAIT).unwrap()), all[2..4]);
    let info = store.group_info("g2").unwrap();
    assert_eq!((info.delivered, info.redelivered, info.pending), (4, 0, 4));
}

#[test]
fn a_reader_blocked_on_a_full_group_wakes_when_an_ack_makes_room() {
    let dir = tempfile::tempdir().unwrap();
    let limits = GroupLimits { max_pending: 1, ..GroupLimits::default() };
    let store = Store::open(dir.path(), Options { groups: limits, ..Options::default() }).unwrap();
    let all = append(&store, "s", "A", 2);
    store.create_group("g", GroupConfig::default()).unwrap();
    assert_eq!(positions(&store.read_group("g", "a", 1, NO_WAIT).unwrap()), [all[0]]);
    let reader = {
        let store = store.clone();
        std::thread::spawn(move || store.read_group("g", "b", 1, Duration::from_secs(60)).unwrap())
    };
    std::thread::sleep(Duration::from_millis(50));
    store.ack_group("g", &[all[0]]).unwrap();
    assert_eq!(positions(&reader.join().unwrap()), [all[1]]);
}
