//! Atomic multi-stream appends (`Store::append_batch`): all parts or none, applied in order,
//! one batch on disk, idempotent like single appends, refusals naming the part.

use logbook::{AppendPart, Direction, Error, ExpectedVersion, Filter, NewEvent, Options, Store};
use uuid::Uuid;

fn event(kind: &str, data: &str) -> NewEvent {
    NewEvent::new(kind, data.as_bytes().to_vec())
}

fn with_id(kind: &str, data: &str, id: u128) -> NewEvent {
    event(kind, data).with_id(Uuid::from_u128(id))
}

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, Options::default()).unwrap()
}

#[test]
fn parts_of_several_streams_commit_together_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append("stock-p9", ExpectedVersion::NoStream, vec![event("STOCK_RECEIVED", r#"{"qty":5}"#)]).unwrap();
    let results = store
        .append_batch(vec![
            AppendPart::new(
                "order-1",
                ExpectedVersion::NoStream,
                vec![event("CART_CREATED", "{}"), event("ITEM_ADDED", "{}")],
            ),
            AppendPart::new("stock-p9", ExpectedVersion::Exact(1), vec![event("STOCK_RESERVED", r#"{"qty":2}"#)]),
        ])
        .unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!((results[0].first_version, results[0].last_version), (1, 2));
    assert_eq!((results[0].first_position, results[0].last_position), (2, 3));
    assert_eq!((results[1].first_version, results[1].last_version), (2, 2));
    assert_eq!((results[1].first_position, results[1].last_position), (4, 4));
    let all: Vec<(String, u64)> =
        store.read_all(1, 100, &Filter::all()).unwrap().iter().map(|e| (e.stream().to_string(), e.version())).collect();
    assert_eq!(all, [("stock-p9".into(), 1), ("order-1".into(), 1), ("order-1".into(), 2), ("stock-p9".into(), 2)]);
    store.close().unwrap();
    // Reopened (recovery scans the batch as one unit), everything is still there.
    let store = open(dir.path());
    assert_eq!(store.head_position(), 4);
    assert_eq!(store.stream_version("order-1"), 2);
    store.close().unwrap();
}

#[test]
fn two_parts_may_name_the_same_stream_and_the_second_sees_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let results = store
        .append_batch(vec![
            AppendPart::new("order-2", ExpectedVersion::NoStream, vec![event("CART_CREATED", "{}")]),
            AppendPart::new("order-2", ExpectedVersion::Exact(1), vec![event("ITEM_ADDED", "{}")]),
        ])
        .unwrap();
    assert_eq!((results[1].first_version, results[1].first_position), (2, 2));
    let err = store
        .append_batch(vec![
            AppendPart::new("order-3", ExpectedVersion::NoStream, vec![event("CART_CREATED", "{}")]),
            AppendPart::new("order-3", ExpectedVersion::NoStream, vec![event("CART_CREATED", "{}")]),
        ])
        .unwrap_err();
    let Error::BatchPart { part: 1, source } = err else { panic!("{err}") };
    assert!(matches!(*source, Error::WrongExpectedVersion { actual: 1, .. }), "{source}");
    assert_eq!(store.stream_version("order-3"), 0, "nothing of the refused batch was written");
    store.close().unwrap();
}

#[test]
fn a_refused_part_writes_nothing_of_the_batch_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append("order-1", ExpectedVersion::NoStream, vec![event("CART_CREATED", "{}")]).unwrap();
    store.append("order-gone", ExpectedVersion::NoStream, vec![event("CART_CREATED", "{}")]).unwrap();
    store.delete_stream("order-gone", ExpectedVersion::Any).unwrap();
    let head = store.head_position();
    let wrong = store
        .append_batch(vec![
            AppendPart::new("order-4", ExpectedVersion::NoStream, vec![event("CART_CREATED", "{}")]),
            AppendPart::new("order-1", ExpectedVersion::Exact(7), vec![event("ITEM_ADDED", "{}")]),
        ])
        .unwrap_err();
    assert_eq!(
        wrong.to_string(),
        "part 1 of the batch: wrong expected version for stream 'order-1': expected 7, actual 1"
    );
    let deleted = store
        .append_batch(vec![
            AppendPart::new("order-4", ExpectedVersion::Any, vec![event("CART_CREATED", "{}")]),
            AppendPart::new("order-gone", ExpectedVersion::Any, vec![event("ITEM_ADDED", "{}")]),
        ])
        .unwrap_err();
    assert!(matches!(deleted, Error::BatchPart { part: 1, ref source } if matches!(**source, Error::StreamDeleted(_))));
    assert_eq!(store.head_position(), head);
    assert_eq!(store.stream_version("order-4"), 0);
    // Bad input names its part too, and limits count the whole batch.
    let empty = store
        .append_batch(vec![
            AppendPart::new("order-5", ExpectedVersion::Any, vec![event("A", "{}")]),
            AppendPart::new("order-5", ExpectedVersion::Any, vec![]),
        ])
        .unwrap_err();
    assert!(matches!(&empty, Error::InvalidInput(m) if m.starts_with("part 1: ")), "{empty}");
    assert!(matches!(store.append_batch(vec![]), Err(Error::InvalidInput(_))));
    let dup = store
        .append_batch(vec![
            AppendPart::new("a", ExpectedVersion::Any, vec![with_id("A", "{}", 9)]),
            AppendPart::new("b", ExpectedVersion::Any, vec![with_id("B", "{}", 9)]),
        ])
        .unwrap_err();
    assert!(matches!(&dup, Error::InvalidInput(m) if m.contains("appears twice in one batch")), "{dup}");
    store.close().unwrap();
    let small = tempfile::tempdir().unwrap();
    let store = Store::open(small.path(), Options { max_batch_events: 3, ..Options::default() }).unwrap();
    let too_many = store
        .append_batch(vec![
            AppendPart::new("a", ExpectedVersion::Any, vec![event("A", "{}"), event("A", "{}")]),
            AppendPart::new("b", ExpectedVersion::Any, vec![event("B", "{}"), event("B", "{}")]),
        ])
        .unwrap_err();
    assert!(matches!(&too_many, Error::InvalidInput(m) if m.contains("4 events in one batch, limit 3")), "{too_many}");
    store.close().unwrap();
}

#[test]
fn a_resent_batch_returns_the_original_results_and_a_partly_stored_one_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let batch = || {
        vec![
            AppendPart::new("order-1", ExpectedVersion::NoStream, vec![with_id("CART_CREATED", "{}", 1)]),
            AppendPart::new("stock-1", ExpectedVersion::NoStream, vec![with_id("STOCK_RESERVED", "{}", 2)]),
        ]
    };
    let first = store.append_batch(batch()).unwrap();
    let again = store.append_batch(batch()).unwrap();
    assert_eq!(first, again, "a retry gets the original results");
    assert_eq!(store.head_position(), 2, "and writes nothing");
    let mixed = store
        .append_batch(vec![
            AppendPart::new("order-1", ExpectedVersion::NoStream, vec![with_id("CART_CREATED", "{}", 1)]),
            AppendPart::new("stock-1", ExpectedVersion::Any, vec![with_id("STOCK_RESERVED", "{}", 3)]),
        ])
        .unwrap_err();
    let Error::BatchPart { part: 1, source } = mixed else { panic!("{mixed}") };
    assert!(matches!(*source, Error::IdempotencyConflict { .. }), "{source}");
    let changed = store
        .append_batch(vec![AppendPart::new(
            "order-1",
            ExpectedVersion::Any,
            vec![with_id("CART_CREATED", r#"{"other":1}"#, 1)],
        )])
        .unwrap_err();
    assert!(
        matches!(changed, Error::BatchPart { part: 0, ref source } if matches!(**source, Error::IdempotencyConflict { .. }))
    );
    assert_eq!(store.head_position(), 2);
    let events = store.read_stream("order-1", 1, 10, Direction::Forward).unwrap();
    assert_eq!(events.len(), 1);
    store.close().unwrap();
}

#[test]
fn a_batch_cut_by_a_crash_is_dropped_whole_at_open() {
    // The batch's frames carry one countdown of batch markers across both parts: cutting the
    // file anywhere inside it (a torn write) drops every part, never just one.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append("before", ExpectedVersion::Any, vec![event("A", "{}")]).unwrap();
    store.close().unwrap();
    let segment = std::fs::read_dir(dir.path().join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .unwrap();
    let before_len = {
        // The written length: what the clean shutdown recorded (the file is preallocated).
        let store = open(dir.path());
        store
            .append_batch(vec![
                AppendPart::new(
                    "order-1",
                    ExpectedVersion::Any,
                    vec![event("CART_CREATED", "{}"), event("ITEM_ADDED", "{}")],
                ),
                AppendPart::new("stock-1", ExpectedVersion::Any, vec![event("STOCK_RESERVED", "{}")]),
            ])
            .unwrap();
        // Crash: no clean shutdown (the store is leaked, its writer never told to stop).
        std::mem::forget(store);
        std::fs::metadata(&segment).unwrap().len()
    };
    assert!(before_len > 0);
    // Find where the batch's frames lie: the three frames after the first event.
    let bytes = std::fs::read(&segment).unwrap();
    let mut frames = Vec::new();
    let header = logbook::segment::decode_header(&bytes).unwrap();
    logbook::segment::scan_with(&bytes, logbook::segment::Positions::of(&header), |frame, at| {
        frames.push((frame.position, at, frame.batch_remaining));
    });
    assert_eq!(frames.iter().map(|f| f.2).collect::<Vec<_>>(), [0, 2, 1, 0], "one countdown across both parts");
    // Cut inside the last part (the stock frame): the order part goes too.
    let cut_at = frames[3].1 as usize + 10;
    let mut torn = bytes.clone();
    torn[cut_at..].fill(0);
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && path.file_name().is_some_and(|n| n != "LOCK") {
            std::fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::create_dir(copy.path().join("segments")).unwrap();
    for entry in std::fs::read_dir(dir.path().join("segments")).unwrap() {
        let path = entry.unwrap().path();
        let target = copy.path().join("segments").join(path.file_name().unwrap());
        if path == segment {
            std::fs::write(&target, &torn).unwrap();
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
    let store = open(copy.path());
    assert_eq!(store.head_position(), 1, "the torn batch is gone whole");
    assert_eq!(store.stream_version("order-1"), 0);
    assert_eq!(store.stream_version("stock-1"), 0);
    store.close().unwrap();
}

/// `submit_append_batch` queues a batch without waiting: batches and appends submitted before
/// any wait are applied in submission order (a later one sees the earlier ones' versions), and
/// `on_done` delivers a batch's results as `wait` would.
#[test]
fn submitted_batches_and_appends_apply_in_submission_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let first = store.submit_append("order-1", ExpectedVersion::NoStream, vec![event("CART_CREATED", "{}")]).unwrap();
    let batch = store
        .submit_append_batch(vec![
            AppendPart::new("order-1", ExpectedVersion::Exact(1), vec![event("ORDER_PLACED", "{}")]),
            AppendPart::new("stock-p9", ExpectedVersion::NoStream, vec![event("STOCK_RESERVED", "{}")]),
        ])
        .unwrap();
    let refused = store
        .submit_append_batch(vec![AppendPart::new("order-1", ExpectedVersion::Exact(1), vec![event("X", "{}")])])
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    store
        .submit_append_batch(vec![AppendPart::new(
            "order-1",
            ExpectedVersion::Exact(2),
            vec![event("ORDER_SHIPPED", "{}")],
        )])
        .unwrap()
        .on_done(move |result| tx.send(result).unwrap());
    assert_eq!(first.wait().unwrap().last_version, 1);
    let results = batch.wait().unwrap();
    assert_eq!((results[0].last_version, results[1].last_version), (2, 1));
    match refused.wait() {
        Err(Error::BatchPart { part: 0, source }) => {
            assert!(matches!(*source, Error::WrongExpectedVersion { actual: 2, .. }), "{source:?}")
        }
        other => panic!("expected a refused part 0, got {other:?}"),
    }
    let shipped = rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap().unwrap();
    assert_eq!((shipped[0].last_version, shipped[0].last_position), (3, 4));
    assert_eq!(store.stream_version("order-1"), 3);
    assert_eq!(store.appends_in_flight(), 0, "every submitted append and batch was answered");
}
