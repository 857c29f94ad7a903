//! Explicit event times (`NewEvent::at`, for imports): stored as given, bounded, never going
//! back within a stream (checked against the stored stream, across reopen and sealed
//! segments, within an append and across a batch's parts), idempotent resends.

use std::collections::HashMap;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use logbook::{
    AppendPart, Clock, Direction, Error, ExpectedVersion, NewEvent, Options, Store, MAX_EVENT_TIME_AHEAD_US,
};
use proptest::prelude::*;
use uuid::Uuid;

const NOW: i64 = 1_790_000_000_000_000; // 2026-09-21
const HOUR: i64 = 3_600_000_000;

fn options(segment_bytes: u64) -> Options {
    Options { clock: Clock::manual(Arc::new(AtomicI64::new(NOW))), segment_bytes, ..Options::default() }
}

fn at(kind: &str, t: i64) -> NewEvent {
    NewEvent::new(kind, b"{}".to_vec()).at(t)
}

fn times(store: &Store, stream: &str) -> Vec<i64> {
    store.read_stream(stream, 1, 1000, Direction::Forward).unwrap().iter().map(|e| e.timestamp_us()).collect()
}

fn invalid(result: logbook::Result<impl std::fmt::Debug>) -> String {
    match result {
        Err(Error::InvalidInput(msg)) => msg,
        Err(Error::BatchPart { source, .. }) => match *source {
            Error::InvalidInput(msg) => msg,
            other => panic!("want InvalidInput, got {other:?}"),
        },
        other => panic!("want InvalidInput, got {other:?}"),
    }
}

#[test]
fn explicit_times_are_stored_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options(64 * 1024)).unwrap();
    let t0 = NOW - 100 * 24 * HOUR;
    store.append("order-1", ExpectedVersion::NoStream, vec![at("CART_CREATED", t0), at("ITEM_ADDED", t0)]).unwrap();
    // Without a time: the store's clock, as before.
    store
        .append("order-1", ExpectedVersion::Exact(2), vec![NewEvent::new("CHECKOUT_STARTED", b"{}".to_vec())])
        .unwrap();
    assert_eq!(times(&store, "order-1"), [t0, t0, NOW]);
    store.close().unwrap();
    let store = Store::open(dir.path(), options(64 * 1024)).unwrap();
    assert_eq!(times(&store, "order-1"), [t0, t0, NOW]);
    // After reopen, the stream's last time (the clock's) still bounds explicit times.
    let msg = invalid(store.append("order-1", ExpectedVersion::Any, vec![at("PAID", NOW - 1)]));
    assert!(msg.contains("event 0") && msg.contains("PAID") && msg.contains("order-1"), "{msg}");
    assert!(msg.contains("times never go back"), "{msg}");
    store.append("order-1", ExpectedVersion::Any, vec![at("PAID", NOW)]).unwrap();
}

#[test]
fn times_out_of_bounds_or_decreasing_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options(64 * 1024)).unwrap();
    let msg = invalid(store.append("s-1", ExpectedVersion::Any, vec![at("A", -1)]));
    assert!(msg.contains("before 1970"), "{msg}");
    let msg = invalid(store.append("s-1", ExpectedVersion::Any, vec![at("A", NOW + MAX_EVENT_TIME_AHEAD_US + 1)]));
    assert!(msg.contains("past the store's clock"), "{msg}");
    store.append("s-1", ExpectedVersion::Any, vec![at("A", NOW + MAX_EVENT_TIME_AHEAD_US)]).unwrap();
    let id = Uuid::from_u128(7);
    let msg =
        invalid(store.append("s-2", ExpectedVersion::Any, vec![at("A", 10 * HOUR), at("B", 5 * HOUR).with_id(id)]));
    assert!(msg.contains("event 1") && msg.contains(&id.to_string()), "{msg}");
    assert_eq!(store.stream_version("s-2"), 0, "nothing written");
    // Across a batch's parts naming the same stream.
    let msg = invalid(store.append_batch(vec![
        AppendPart::new("s-3", ExpectedVersion::Any, vec![at("A", 10 * HOUR)]),
        AppendPart::new("s-3", ExpectedVersion::Any, vec![at("B", 9 * HOUR)]),
    ]));
    assert!(msg.contains("s-3"), "{msg}");
    assert_eq!(store.stream_version("s-3"), 0);
    // A pending append in the same group is seen (submitted, not yet waited for).
    let first = store.submit_append("s-4", ExpectedVersion::Any, vec![at("A", 10 * HOUR)]).unwrap();
    let second = store.submit_append("s-4", ExpectedVersion::Any, vec![at("B", 9 * HOUR)]).unwrap();
    first.wait().unwrap();
    invalid(second.wait());
    assert_eq!(times(&store, "s-4"), [10 * HOUR]);
}

#[test]
fn resending_with_the_same_times_is_idempotent_and_a_different_time_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options(64 * 1024)).unwrap();
    let events = || vec![at("A", HOUR).with_id(Uuid::from_u128(1)), at("B", 2 * HOUR).with_id(Uuid::from_u128(2))];
    let first = store.append("s", ExpectedVersion::NoStream, events()).unwrap();
    assert_eq!(store.append("s", ExpectedVersion::NoStream, events()).unwrap(), first);
    let moved = vec![at("A", HOUR + 1).with_id(Uuid::from_u128(1)), at("B", 2 * HOUR).with_id(Uuid::from_u128(2))];
    match store.append("s", ExpectedVersion::NoStream, moved) {
        Err(Error::IdempotencyConflict { reason, .. }) => assert!(reason.contains("different time"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.stream_version("s"), 2);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Model: per stream, an append of explicit times is accepted iff its times do not go back
    /// from the stream's last time; accepted times are stored exactly, also after reopen (with
    /// small segments, so the last event is often in a sealed segment).
    #[test]
    fn explicit_times_follow_the_model(
        appends in proptest::collection::vec((0usize..3, proptest::collection::vec(0i64..50, 1..4)), 1..30)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), options(512)).unwrap();
        let mut model: HashMap<String, Vec<i64>> = HashMap::new();
        for (i, (stream, ts)) in appends.iter().enumerate() {
            let stream = format!("s-{stream}");
            let ts: Vec<i64> = ts.iter().map(|t| t * HOUR).collect();
            let stored = model.entry(stream.clone()).or_default();
            let ok = ts.windows(2).all(|w| w[0] <= w[1]) && stored.last().is_none_or(|&l| l <= ts[0]);
            let events = ts.iter().map(|&t| at("E", t)).collect();
            let result = store.append(&stream, ExpectedVersion::Any, events);
            prop_assert_eq!(result.is_ok(), ok, "append {} of {:?} to {} after {:?}: {:?}", i, ts, stream, stored, result);
            if ok {
                stored.extend(ts);
            }
            if i % 7 == 6 {
                store.close().unwrap();
                store = Store::open(dir.path(), options(512)).unwrap();
            }
        }
        for (stream, expected) in &model {
            prop_assert_eq!(&times(&store, stream), expected);
        }
    }
}
