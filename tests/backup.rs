//! A backup of a live store: taken while a writer appends, after a compaction moved events to
//! the archive, it opens as a store holding every event acknowledged before the backup began,
//! byte-identical, plus the archive, and `verify` finds no damage.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use logbook::time::DAY_US;
use logbook::{Clock, ExpectedVersion, Filter, NewEvent, Options};
use logbook::{RetentionPolicy, RetentionRule};
use logbook_archive::ArchivedEvent;

const T0: i64 = 1_767_225_600_000_000;

#[test]
fn a_backup_of_a_live_store_opens_with_every_acknowledged_event_and_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicI64::new(T0));
    let options = Options { segment_bytes: 4096, clock: Clock::manual(Arc::clone(&clock)), ..Options::default() };
    let store = logbook_archive::open_store(dir.path(), options.clone()).unwrap();
    for day in 0..30 {
        clock.store(T0 + day * DAY_US, Ordering::Release);
        for s in 0..4 {
            let data = format!(r#"{{"day":{day},"pad":"{}"}}"#, "b".repeat(50)).into_bytes();
            store.append(&format!("order-{s}"), ExpectedVersion::Any, vec![NewEvent::new("ITEM_ADDED", data)]).unwrap();
        }
    }
    let policy = RetentionPolicy {
        rules: vec![RetentionRule { category: None, event_type: None, max_age_us: Some(10 * DAY_US), max_count: None }],
        ..logbook_order::default_retention_policy()
    };
    let report = logbook_archive::compact(&store, &policy, T0 + 30 * DAY_US, |_, _| {}).unwrap();
    assert!(report.archived > 0);
    // A writer keeps appending while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Acquire) {
                store.append("live-1", ExpectedVersion::Any, vec![NewEvent::new("L", vec![b'l'; 200])]).unwrap();
                n += 1;
            }
            n
        })
    };
    while store.stream_version("live-1") < 20 {
        std::thread::yield_now();
    }
    let hot_before: Vec<ArchivedEvent> =
        store.read_all(1, usize::MAX, &Filter::all()).unwrap().iter().map(ArchivedEvent::from_recorded).collect();
    let out = tempfile::tempdir().unwrap();
    let copy = out.path().join("copy");
    let backup = logbook_archive::backup_dir(dir.path(), &copy).unwrap();
    stop.store(true, Ordering::Release);
    let appended = writer.join().unwrap();
    assert!(appended >= 20 && backup.segments > 2, "{backup:?}");
    let verify = logbook::verify_dir(&copy).unwrap();
    assert!(verify.is_healthy(), "{:#?}", verify.findings);
    let restored = logbook_archive::open_store(&copy, options).unwrap();
    let hot_copy: Vec<ArchivedEvent> =
        restored.read_all(1, usize::MAX, &Filter::all()).unwrap().iter().map(ArchivedEvent::from_recorded).collect();
    assert!(hot_copy.len() >= hot_before.len());
    assert_eq!(hot_copy[..hot_before.len()], hot_before[..], "every event acknowledged before the backup");
    assert_eq!(
        logbook_archive::read_archived_stream(&restored, "order-1").unwrap(),
        logbook_archive::read_archived_stream(&store, "order-1").unwrap(),
        "the archive came along"
    );
    assert!(!logbook_archive::read_archived_stream(&restored, "order-1").unwrap().is_empty());
    restored.close().unwrap();
    store.close().unwrap();
    // The target must be new.
    let err = logbook_archive::backup_dir(dir.path(), &copy).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
}

/// Allocated bytes of every file under `dir` (what `du` counts).
fn allocated(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() { allocated(&entry.path()) } else { meta.blocks() * 512 };
    }
    total
}

#[test]
fn a_backup_keeps_the_unwritten_part_of_a_segment_a_hole() {
    let dir = tempfile::tempdir().unwrap();
    let store = logbook::Store::open(dir.path().join("data"), Options::default()).unwrap();
    store.append("order-1", ExpectedVersion::Any, vec![NewEvent::new("CART_CREATED", b"{}".to_vec())]).unwrap();
    let copy = dir.path().join("copy");
    let report = logbook::backup_dir(&dir.path().join("data"), &copy).unwrap();
    // The segment's length is kept (64 MiB by default), its never-written tail is not
    // written out: a backup costs what the store holds, not its preallocation.
    let segment = |root: &std::path::Path| std::fs::read_dir(root.join("segments")).unwrap().count();
    assert_eq!(segment(&copy), segment(&dir.path().join("data")));
    assert!(report.bytes >= 64 << 20, "{report:?}");
    let (source, backup) = (allocated(&dir.path().join("data")), allocated(&copy));
    assert!(backup <= source, "the copy allocates {backup} bytes, the store {source}");
    let reopened = logbook::Store::open(&copy, Options::default()).unwrap();
    assert_eq!(reopened.stream_version("order-1"), 1);
    drop(store);
}
