//! Retention, tombstones and compaction against a model: a manual clock ages events, the
//! expected survivors are computed independently of the engine's decision code, and after
//! compaction (and after a reopen) every surviving event must read back byte-identical at the
//! same position and version, every removed one must be in the archive exactly once (or gone,
//! for deleted streams), and `verify` must find nothing wrong.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use logbook::time::DAY_US;
use logbook::Clock;
use logbook::CompactReport;
use logbook::ARCHIVE_DIR;
use logbook::{Direction, Error, ExpectedVersion, Filter, NewEvent, Options, Store};
use logbook::{RetentionPolicy, RetentionRule};
use logbook_archive::compact;
use logbook_archive::{Archive, ArchivedEvent};

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000_000;

fn options(clock: &Arc<AtomicI64>) -> Options {
    Options { segment_bytes: 4096, clock: Clock::manual(Arc::clone(clock)), ..Options::default() }
}

fn all_hot(store: &Store) -> Vec<ArchivedEvent> {
    store.read_all(1, usize::MAX, &Filter::all()).unwrap().iter().map(ArchivedEvent::from_recorded).collect()
}

fn archived(dir: &Path) -> Vec<ArchivedEvent> {
    Archive::open(&dir.join(ARCHIVE_DIR), logbook::std_fs()).unwrap().read_range(1, u64::MAX).unwrap()
}

/// Orders over 60 days: each day one event for each of 6 order streams, cycling through types
/// (one of them PAYMENT_CONFIRMED, under the default legal hold), plus cart streams.
fn write_history(store: &Store, clock: &AtomicI64) {
    let types = ["ITEM_ADDED", "ITEM_REMOVED", "PAYMENT_CONFIRMED", "ORDER_SHIPPED"];
    for day in 0..60i64 {
        clock.store(T0 + day * DAY_US, Ordering::Release);
        for order in 0..6 {
            let stream = if order % 2 == 0 { format!("acme:order-{order}") } else { format!("order-{order}") };
            let kind = types[(day as usize + order) % types.len()];
            let data = format!(r#"{{"day":{day},"order":{order},"pad":"{}"}}"#, "x".repeat(40)).into_bytes();
            let event = NewEvent::new(kind, data).with_metadata(format!("m{day}").into_bytes());
            store.append(&stream, ExpectedVersion::Any, vec![event]).unwrap();
        }
        // Binary (non-JSON) payloads in a two-event batch.
        let cart = format!("cart-{}", day % 3);
        let events = vec![NewEvent::new("CART_VIEWED", vec![0, 159, day as u8]), NewEvent::new("CART_VIEWED", vec![])];
        store.append(&cart, ExpectedVersion::Any, events).unwrap();
    }
}

/// A fresh store (with its cold tier) holding [`write_history`], and its clock.
fn store_with_history() -> (tempfile::TempDir, Arc<AtomicI64>, Store) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicI64::new(T0));
    let store = logbook_archive::open_store(dir.path(), options(&clock)).unwrap();
    write_history(&store, &clock);
    (dir, clock, store)
}

/// Base position of the active (last) segment: compaction leaves it alone.
fn active_base(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .filter_map(|e| logbook::segment::parse_file_name(&e.unwrap().file_name().to_string_lossy()))
        .max()
        .unwrap()
}

/// The model: which events a policy removes. Written from the rules in the docs, not from the
/// engine's code: the active segment, a system stream or a stream's newest event stays; a
/// deleted stream's events go unless held; otherwise the most specific rule decides, and a
/// hold keeps what it would remove.
fn model_removes(
    events: &[ArchivedEvent],
    policy: &RetentionPolicy,
    deleted: &[&str],
    now: i64,
    active_base: u64,
) -> (Vec<ArchivedEvent>, Vec<ArchivedEvent>) {
    let mut newest: HashMap<&str, u64> = HashMap::new();
    for e in events {
        newest.insert(&e.stream, e.version);
    }
    let held = |e: &ArchivedEvent| {
        policy.legal_holds.iter().any(|h| h.event_type == e.event_type && now < e.timestamp_us + h.hold_us)
    };
    let category = |s: &str| s.split_once('-').map_or(s.to_string(), |(c, _)| c.to_string());
    let rule_of = |e: &ArchivedEvent| {
        policy
            .rules
            .iter()
            .filter(|r| r.category.as_deref().is_none_or(|c| c == category(&e.stream)))
            .filter(|r| r.event_type.as_deref().is_none_or(|t| t == e.event_type))
            .max_by_key(|r| 2 * u8::from(r.event_type.is_some()) + u8::from(r.category.is_some()))
    };
    // Matching events newer than each event, per stream and rule.
    let mut newer: HashMap<u64, u64> = HashMap::new();
    let mut counts: HashMap<(String, *const RetentionRule), u64> = HashMap::new();
    for e in events.iter().rev() {
        if let Some(rule) = rule_of(e) {
            let count = counts.entry((e.stream.clone(), rule as *const _)).or_insert(0);
            newer.insert(e.position, *count);
            *count += 1;
        }
    }
    let (mut expired, mut purged) = (Vec::new(), Vec::new());
    for e in events {
        if e.stream.starts_with('$') || e.position >= active_base {
            continue;
        }
        if deleted.contains(&e.stream.as_str()) {
            if !held(e) {
                purged.push(e.clone());
            }
            continue;
        }
        if newest[e.stream.as_str()] == e.version {
            continue;
        }
        let Some(rule) = rule_of(e) else { continue };
        let too_old = rule.max_age_us.is_some_and(|age| now - e.timestamp_us > age);
        let too_many = rule.max_count.is_some_and(|n| newer[&e.position] >= n);
        if (too_old || too_many) && !held(e) {
            expired.push(e.clone());
        }
    }
    (expired, purged)
}

/// Checks the hot tier and the archive against what was there before and what the model says
/// went where.
fn check_tiers(store: &Store, dir: &Path, before: &[ArchivedEvent], expired: &[ArchivedEvent], gone: &[ArchivedEvent]) {
    let removed: std::collections::HashSet<u64> = expired.iter().chain(gone).map(|e| e.position).collect();
    let expected_hot: Vec<&ArchivedEvent> = before.iter().filter(|e| !removed.contains(&e.position)).collect();
    let hot = all_hot(store);
    assert_eq!(hot.len(), expected_hot.len(), "hot tier size");
    for (got, want) in hot.iter().zip(&expected_hot) {
        assert_eq!(&got, want, "a surviving event changed");
    }
    assert_eq!(archived(dir), expired, "the archive holds exactly the expired events");
    let mut report = logbook::verify_dir(dir).unwrap();
    logbook_archive::verify_data_dir(dir, &mut report);
    assert!(report.findings.is_empty(), "verify: {:#?}", report.findings);
    assert_eq!(report.archive_events, expired.len() as u64);
}

fn age_policy() -> RetentionPolicy {
    RetentionPolicy {
        rules: vec![
            RetentionRule { category: None, event_type: None, max_age_us: Some(30 * DAY_US), max_count: None },
            RetentionRule {
                category: Some("cart".into()),
                event_type: Some("CART_VIEWED".into()),
                max_age_us: None,
                max_count: Some(4),
            },
        ],
        ..logbook_order::default_retention_policy()
    }
}

#[test]
fn retention_by_age_and_count_archives_then_removes_and_survivors_are_byte_identical() {
    let (dir, clock, store) = store_with_history();
    let before = all_hot(&store);
    let segments_before = store.segment_count();
    let policy = age_policy();
    let now = T0 + 60 * DAY_US;
    clock.store(now, Ordering::Release);
    let (expired, purged) = model_removes(&before, &policy, &[], now, active_base(dir.path()));
    assert!(purged.is_empty());
    assert!(expired.len() > 100, "the history is long enough to expire much: {}", expired.len());
    assert!(before.iter().any(|e| e.event_type == "PAYMENT_CONFIRMED" && now - e.timestamp_us > 30 * DAY_US));
    // Events a reader holds keep reading from the old segment after it is replaced.
    let held_by_reader = store.read_all(1, 50, &Filter::all()).unwrap();
    let report = compact(&store, &policy, now, |_, _| {}).unwrap();
    assert_eq!(report.expired, expired.len() as u64, "{report:?}");
    assert_eq!(report.archived, expired.len() as u64);
    assert!(report.held > 0, "PAYMENT_CONFIRMED events were held: {report:?}");
    assert!(report.segments_after < segments_before - 1, "small segments merged: {report:?}");
    for (event, want) in held_by_reader.iter().zip(&before) {
        assert_eq!(&ArchivedEvent::from_recorded(event), want);
    }
    check_tiers(&store, dir.path(), &before, &expired, &[]);
    // Stream reads skip removed versions; `from` still means a version.
    let stream = "acme:order-0";
    let versions: Vec<u64> =
        store.read_stream(stream, 1, 1000, Direction::Forward).unwrap().iter().map(|e| e.version()).collect();
    let want: Vec<u64> = before
        .iter()
        .filter(|e| e.stream == stream && !expired.iter().any(|x| x.position == e.position))
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, want);
    let first_two: Vec<u64> =
        store.read_stream(stream, 1, 2, Direction::Forward).unwrap().iter().map(|e| e.version()).collect();
    assert_eq!(first_two, want[..2]);
    let last_two: Vec<u64> =
        store.read_stream(stream, u64::MAX, 2, Direction::Backward).unwrap().iter().map(|e| e.version()).collect();
    assert_eq!(last_two, vec![want[want.len() - 1], want[want.len() - 2]]);
    // The archive reads a stream back in order.
    let archive = Archive::open(&dir.path().join(ARCHIVE_DIR), logbook::std_fs()).unwrap();
    let old: Vec<ArchivedEvent> = expired.iter().filter(|e| e.stream == stream).cloned().collect();
    assert_eq!(archive.read_stream(stream).unwrap(), old);
    assert_eq!(logbook_archive::read_archived_stream(&store, stream).unwrap(), old);
    // Appends go on with the same versions and positions; a reopen sees the same.
    let head = store.head_position();
    let r = store.append(stream, ExpectedVersion::Exact(60), vec![NewEvent::new("ITEM_ADDED", b"{}".to_vec())]);
    let version_before = before.iter().filter(|e| e.stream == stream).count() as u64;
    assert_eq!(version_before, 60);
    let r = r.unwrap();
    assert_eq!((r.first_version, r.first_position), (61, head + 1));
    let mut before = before;
    before.push(ArchivedEvent::from_recorded(&store.read_all(head + 1, 1, &Filter::all()).unwrap()[0]));
    store.close().unwrap();
    let store = logbook_archive::open_store(dir.path(), options(&clock)).unwrap();
    check_tiers(&store, dir.path(), &before, &expired, &[]);
    // A second compaction at the same time finds nothing more to remove.
    let again = compact(&store, &policy, now, |_, _| {}).unwrap();
    assert_eq!((again.expired, again.purged, again.rewritten), (0, 0, 0), "{again:?}");
    store.close().unwrap();
    // verify catches an event that is both hot and archived.
    let mut archive = Archive::open(&dir.path().join(ARCHIVE_DIR), logbook::std_fs()).unwrap();
    let job = archive.next_job_id();
    let hot_event = before.iter().find(|e| !expired.iter().any(|x| x.position == e.position)).unwrap().clone();
    archive.write_job(job, None, vec![hot_event.clone()]).unwrap();
    let mut report = logbook::verify_dir(dir.path()).unwrap();
    logbook_archive::verify_data_dir(dir.path(), &mut report);
    assert!(
        report.findings.iter().any(|f| f.reason.contains(&format!("the first {}", hot_event.position))),
        "{:#?}",
        report.findings
    );
}

#[test]
fn an_archive_manifest_older_than_the_log_is_corruption_not_an_orphan_to_delete() {
    // The cold tier's manifest replaced by one from before the first archiving compaction
    // (synced back from object storage, restored from an old backup): the only copy of the
    // archived events is then an unlisted file. verify must not call it deletable, the store
    // must not open over it, and a compaction must not reuse its job id (whose files it would
    // write under the same names).
    let (dir, clock, store) = store_with_history();
    let now = T0 + 60 * DAY_US;
    clock.store(now, Ordering::Release);
    let report = compact(&store, &age_policy(), now, |_, _| {}).unwrap();
    assert!(report.archived > 0, "{report:?}");
    // A second job ten days later: merged segments record only the newest job they hold.
    let later = now + 10 * DAY_US;
    clock.store(later, Ordering::Release);
    let second = compact(&store, &age_policy(), later, |_, _| {}).unwrap();
    assert!(second.archived > 0, "{second:?}");
    store.close().unwrap();
    let manifest = dir.path().join(ARCHIVE_DIR).join(logbook::ARCHIVE_MANIFEST_FILE);
    // A file the manifest lists gone (or cut short): open through the archive crate refuses
    // rather than serve and count an archive that lost events.
    {
        let archive = Archive::open(&dir.path().join(ARCHIVE_DIR), logbook::std_fs()).unwrap();
        let listed = dir.path().join(ARCHIVE_DIR).join(&archive.manifest().files[0].path);
        let kept = std::fs::read(&listed).unwrap();
        std::fs::write(&listed, &kept[..kept.len() / 2]).unwrap();
        match logbook_archive::open_store(dir.path(), options(&clock)) {
            Err(Error::Corruption { file, .. }) => assert_eq!(file, listed),
            other => panic!("open with a listed archive file cut short: {:?}", other.map(|_| ())),
        }
        std::fs::remove_file(&listed).unwrap();
        match logbook_archive::open_store(dir.path(), options(&clock)) {
            Err(Error::Corruption { file, .. }) => assert_eq!(file, listed),
            other => panic!("open with a listed archive file missing: {:?}", other.map(|_| ())),
        }
        std::fs::write(&listed, kept).unwrap();
        logbook_archive::open_store(dir.path(), options(&clock)).unwrap().close().unwrap();
    }
    std::fs::write(&manifest, br#"{"format":1,"next_job":1,"files":[],"pending":[]}"#).unwrap();

    let mut report = logbook::verify_dir(dir.path()).unwrap();
    logbook_archive::verify_data_dir(dir.path(), &mut report);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.severity == logbook::Severity::Corruption && f.reason.contains("archive job 1")),
        "{:#?}",
        report.findings
    );
    assert!(
        !report.findings.iter().any(|f| f.severity == logbook::Severity::Orphan),
        "the archived events' file is not an orphan: {:#?}",
        report.findings
    );
    match logbook_archive::open_store(dir.path(), options(&clock)) {
        Err(Error::Corruption { reason, .. }) => assert!(reason.contains("archive job"), "{reason}"),
        other => panic!("open over an archive manifest older than the log: {:?}", other.map(|_| ())),
    }
    // Nor is such a store backed up as if its cold tier were whole.
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("copy");
    match logbook_archive::backup_dir(dir.path(), &target) {
        Err(Error::Corruption { reason, .. }) => assert!(reason.contains("archive job"), "{reason}"),
        other => panic!("backup over an archive manifest older than the log: {other:?}"),
    }
    assert!(!target.join("segments").exists(), "the refused backup's partial copy is removed");
    // The core alone still opens the hot tier; compacting through the archive refuses.
    let store = Store::open(dir.path(), options(&clock)).unwrap();
    let files_before = std::fs::read_dir(dir.path().join(ARCHIVE_DIR)).unwrap().count();
    match compact(&store, &age_policy(), later + DAY_US, |_, _| {}) {
        Err(Error::Corruption { reason, .. }) => assert!(reason.contains("archive job"), "{reason}"),
        other => panic!("compaction over an archive manifest older than the log: {other:?}"),
    }
    assert_eq!(std::fs::read_dir(dir.path().join(ARCHIVE_DIR)).unwrap().count(), files_before);
    store.close().unwrap();
    // The hot tier gone, the cold tier still there: not a new store to start at position 1.
    {
        let lost = tempfile::tempdir().unwrap();
        let copy = lost.path().join("data");
        std::fs::create_dir_all(&copy).unwrap();
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(dir.path().join(ARCHIVE_DIR))
            .arg(copy.join(ARCHIVE_DIR))
            .status()
            .unwrap();
        assert!(status.success());
        match Store::open(&copy, options(&clock)) {
            Err(Error::Corruption { reason, .. }) => assert!(reason.contains("not taken for a new"), "{reason}"),
            other => panic!("open of a cold tier without its hot tier: {:?}", other.map(|_| ())),
        }
        assert!(!copy.join("segments").exists(), "nothing was created");
    }
    // The cold tier gone altogether: the same refusal.
    std::fs::remove_dir_all(dir.path().join(ARCHIVE_DIR)).unwrap();
    match logbook_archive::open_store(dir.path(), options(&clock)) {
        Err(Error::Corruption { reason, .. }) => assert!(reason.contains("has no archive"), "{reason}"),
        other => panic!("open without the archive its segments need: {:?}", other.map(|_| ())),
    }
}

#[test]
fn tombstones_hide_a_stream_at_once_and_compaction_removes_it_from_disk() {
    let (dir, clock, store) = store_with_history();
    let victim = "order-1";
    let version = store.stream_version(victim);
    // Fill the active segment so every event of the victim is in a sealed one.
    for i in 0..40 {
        store.append("filler-1", ExpectedVersion::Any, vec![NewEvent::new("F", vec![b'f'; 100 + i])]).unwrap();
    }
    let before = all_hot(&store);
    let err = store.delete_stream(victim, ExpectedVersion::Exact(version - 1)).unwrap_err();
    assert!(matches!(err, Error::WrongExpectedVersion { .. }), "{err}");
    store.delete_stream(victim, ExpectedVersion::Exact(version)).unwrap();
    // Hidden at once from every read; appends and a second delete are refused.
    assert!(matches!(store.read_stream(victim, 1, 10, Direction::Forward), Err(Error::StreamDeleted(_))));
    assert!(all_hot(&store).iter().all(|e| e.stream != victim));
    let err = store.append(victim, ExpectedVersion::Any, vec![NewEvent::new("X", b"{}".to_vec())]).unwrap_err();
    assert!(matches!(err, Error::StreamDeleted(ref s) if s == victim), "{err}");
    assert!(matches!(store.delete_stream(victim, ExpectedVersion::Any), Err(Error::StreamDeleted(_))));
    store.close().unwrap();
    // The tombstone is durable.
    let store = logbook_archive::open_store(dir.path(), options(&clock)).unwrap();
    assert!(store.is_deleted(victim));
    assert!(matches!(store.read_stream(victim, 1, 10, Direction::Forward), Err(Error::StreamDeleted(_))));
    // Compaction with no rules removes the deleted stream's events, except held ones.
    let policy = logbook_order::default_retention_policy();
    let now = T0 + 61 * DAY_US;
    let (expired, purged) = model_removes(&before, &policy, &[victim], now, active_base(dir.path()));
    assert!(before.iter().filter(|e| e.stream == victim).all(|e| e.position < active_base(dir.path())));
    assert!(expired.is_empty() && !purged.is_empty());
    let report = compact(&store, &policy, now, |_, _| {}).unwrap();
    assert_eq!(report.purged, purged.len() as u64, "{report:?}");
    let held: Vec<u64> = before
        .iter()
        .filter(|e| e.stream == victim && e.event_type == "PAYMENT_CONFIRMED")
        .map(|e| e.position)
        .collect();
    assert!(!held.is_empty());
    let on_disk = frames_on_disk(dir.path());
    let victim_left: Vec<u64> = on_disk.iter().filter(|(_, s)| s == victim).map(|(p, _)| *p).collect();
    assert_eq!(victim_left, held, "only the deleted stream's held events remain on disk");
    assert!(archived(dir.path()).is_empty(), "deleted streams are not archived");
    let visible: Vec<ArchivedEvent> = before.iter().filter(|e| e.stream != victim).cloned().collect();
    assert_eq!(all_hot(&store).into_iter().filter(|e| !e.stream.starts_with('$')).collect::<Vec<_>>(), visible);
    // Eight years on, the hold has ended and the rest goes too.
    let later = T0 + 8 * logbook::YEAR_US;
    compact(&store, &policy, later, |_, _| {}).unwrap();
    assert!(frames_on_disk(dir.path()).iter().all(|(_, s)| s != victim));
    store.close().unwrap();
    let report = logbook::verify_dir(dir.path()).unwrap();
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
}

/// (position, stream) of every frame in every segment file, read from the raw bytes.
fn frames_on_disk(dir: &Path) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    files.sort();
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        let header = logbook::segment::decode_header(&bytes).unwrap();
        logbook::segment::scan_with(&bytes, logbook::segment::Positions::of(&header), |frame, _| {
            out.push((frame.position, frame.stream.to_string()))
        });
    }
    out
}

#[test]
fn compaction_keeps_subscriptions_and_all_reads_in_order_across_gaps() {
    let (dir, _clock, store) = store_with_history();
    let policy = age_policy();
    let now = T0 + 60 * DAY_US;
    let before = all_hot(&store);
    let (expired, _) = model_removes(&before, &policy, &[], now, active_base(dir.path()));
    // A subscriber half-way through when compaction runs.
    let mut subscription = store.subscribe_all(1, Filter::all());
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen.push(subscription.next_timeout(std::time::Duration::from_secs(5)).unwrap().unwrap().position());
    }
    compact(&store, &policy, now, |_, _| {}).unwrap();
    while let Some(event) = subscription.next_timeout(std::time::Duration::from_millis(50)).unwrap() {
        seen.push(event.position());
    }
    // What the subscriber had fetched before the compaction it still delivers (it holds the old
    // segments); the rest it reads from the compacted ones. No reordering, no duplicates, every
    // survivor delivered.
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "positions only increase");
    let survivors: Vec<u64> =
        before.iter().map(|e| e.position).filter(|p| !expired.iter().any(|x| x.position == *p)).collect();
    assert!(seen.iter().all(|p| before.iter().any(|e| e.position == *p)));
    assert!(survivors.iter().all(|p| seen.contains(p)), "every survivor delivered");
    // Paging through $all from every start position gives the survivors from there.
    for from in (1..=store.head_position()).step_by(37) {
        let page = store.read_all_page(from, 5, &Filter::all()).unwrap();
        let want: Vec<u64> = survivors.iter().copied().filter(|&p| p >= from).take(5).collect();
        assert_eq!(page.events.iter().map(|e| e.position()).collect::<Vec<_>>(), want, "from {from}");
    }
    store.close().unwrap();
}

#[test]
fn compact_report_and_policy_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicI64::new(T0));
    let store = logbook_archive::open_store(dir.path(), options(&clock)).unwrap();
    let bad = RetentionPolicy {
        rules: vec![RetentionRule { category: None, event_type: None, max_age_us: None, max_count: Some(0) }],
        ..logbook_order::default_retention_policy()
    };
    let err = compact(&store, &bad, T0, |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("max_count must be at least 1"), "{err}");
    // An empty store compacts to nothing.
    let report = compact(&store, &logbook_order::default_retention_policy(), T0, |_, _| {}).unwrap();
    assert_eq!(report, CompactReport::default());
    store.close().unwrap();
}

/// Every file under `dir` with its bytes: what "nothing was written" is checked against.
fn snapshot_files(dir: &Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n != "LOCK") {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn the_core_alone_refuses_to_archive_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicI64::new(T0));
    let store = Store::open(dir.path(), options(&clock)).unwrap();
    write_history(&store, &clock);
    let now = T0 + 60 * DAY_US;
    clock.store(now, Ordering::Release);
    store.sync().unwrap();
    let files = snapshot_files(dir.path());
    let before = all_hot(&store);
    // Without a cold tier, events the policy would archive cannot go anywhere.
    let err = logbook::compact(&store, &age_policy(), now, |_, _| {}).unwrap_err();
    assert!(matches!(err, Error::InvalidInput(ref m) if m.contains("no cold tier")), "{err}");
    assert_eq!(snapshot_files(dir.path()), files, "a refused compaction wrote something");
    assert_eq!(all_hot(&store), before);
    // With archive = false the core deletes them itself.
    let purge = RetentionPolicy { archive: false, ..age_policy() };
    let report = logbook::compact(&store, &purge, now, |_, _| {}).unwrap();
    assert!(report.expired > 0 && report.archived == 0, "{report:?}");
    assert!(!dir.path().join(ARCHIVE_DIR).exists(), "the core alone never creates the cold tier");
    store.close().unwrap();
}

#[test]
fn the_core_alone_refuses_a_store_whose_cold_tier_has_a_pending_job_or_to_back_it_up() {
    let (dir, clock, store) = store_with_history();
    let now = T0 + 60 * DAY_US;
    clock.store(now, Ordering::Release);
    compact(&store, &age_policy(), now, |_, _| {}).unwrap();
    // A job an interrupted compaction left pending (written, never committed).
    let mut archive = Archive::open(&dir.path().join(ARCHIVE_DIR), logbook::std_fs()).unwrap();
    let job = archive.next_job_id();
    let event = archived(dir.path()).remove(0);
    archive.write_job(job, Some(1), vec![event]).unwrap();
    let purge = RetentionPolicy { archive: false, ..age_policy() };
    let err = logbook::compact(&store, &purge, now, |_, _| {}).unwrap_err();
    assert!(matches!(err, Error::InvalidInput(ref m) if m.contains("pending")), "{err}");
    store.close().unwrap();
    // A backup by the core alone would leave the cold tier behind: refused.
    let out = tempfile::tempdir().unwrap();
    let err = logbook::backup_dir(dir.path(), &out.path().join("copy")).unwrap_err();
    assert!(matches!(err, Error::InvalidInput(ref m) if m.contains("cold tier")), "{err}");
    // Opening through the archive crate resolves the job (its segment never carried it).
    let store = logbook_archive::open_store(dir.path(), options(&clock)).unwrap();
    assert!(Archive::open(&dir.path().join(ARCHIVE_DIR), logbook::std_fs()).unwrap().pending_jobs().is_empty());
    logbook::compact(&store, &purge, now, |_, _| {}).unwrap();
    store.close().unwrap();
    // The core's verify says it did not read the cold tier; the archive crate's check does.
    let mut report = logbook::verify_dir(dir.path()).unwrap();
    assert!(report.is_healthy());
    assert!(report.findings.iter().any(|f| f.severity == logbook::Severity::Unchecked), "{:?}", report.findings);
    logbook_archive::verify_data_dir(dir.path(), &mut report);
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    // A lost cold tier is lost data: segments say events went there.
    std::fs::remove_dir_all(dir.path().join(ARCHIVE_DIR)).unwrap();
    let report = logbook::verify_dir(dir.path()).unwrap();
    assert!(!report.is_healthy(), "{:?}", report.findings);
    assert!(report.findings.iter().any(|f| f.reason.contains("no archive manifest")), "{:?}", report.findings);
    let out = tempfile::tempdir().unwrap();
    let err = logbook::backup_dir(dir.path(), &out.path().join("copy")).unwrap_err();
    assert!(err.to_string().contains("cold tier"), "segments that moved events out refuse a core backup: {err}");
}

#[test]
fn scan_all_reads_every_event_up_to_the_head_it_began_at() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicI64::new(T0));
    let store = Store::open(dir.path(), options(&clock)).unwrap();
    write_history(&store, &clock);
    let head = store.head_position();
    let mut scan = store.scan_all(1, Filter::all());
    let first = scan.next().unwrap().unwrap();
    assert_eq!(first.position(), 1);
    // Appended after the scan began: not part of this pass.
    store.append("late", ExpectedVersion::Any, vec![NewEvent::new("X", b"{}".to_vec())]).unwrap();
    let rest: Vec<u64> = scan.map(|e| e.unwrap().position()).collect();
    assert_eq!(rest, (2..=head).collect::<Vec<_>>());
    let orders: Vec<_> = store.scan_all(1, Filter::category("order")).map(|e| e.unwrap()).collect();
    assert_eq!(orders.len(), 60 * 3, "the order-<n> streams, not acme's");
    assert!(store.scan_all(store.head_position() + 1, Filter::all()).next().is_none());
    store.close().unwrap();
}

#[test]
fn a_core_backup_racing_the_first_archiving_compaction_never_leaves_archived_events_behind() {
    // The core's backup cannot copy the cold tier. A compaction that creates it while the
    // backup runs must make the backup fail, never finish without the archived events.
    for round in 0..4u64 {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(AtomicI64::new(T0));
        let options = Options {
            segment_bytes: 64 * 1024,
            sync: logbook::SyncMode::Never,
            clock: Clock::manual(Arc::clone(&clock)),
            ..Options::default()
        };
        let store = logbook_archive::open_store(dir.path(), options.clone()).unwrap();
        for i in 0..6_000i64 {
            clock.store(T0 + i * 60_000_000, Ordering::Release);
            let data = format!(r#"{{"n":{i},"pad":"{}"}}"#, "x".repeat(80)).into_bytes();
            store.append(&format!("order-{}", i % 50), ExpectedVersion::Any, vec![NewEvent::new("A", data)]).unwrap();
        }
        store.sync().unwrap();
        let total = store.head_position();
        let now = T0 + 6_000 * 60_000_000;
        let policy = RetentionPolicy {
            rules: vec![RetentionRule {
                category: None,
                event_type: None,
                max_age_us: Some(2 * DAY_US),
                max_count: None,
            }],
            ..RetentionPolicy::default()
        };
        let out = tempfile::tempdir().unwrap();
        let copy = out.path().join("copy");
        let backup = {
            let (data, copy) = (dir.path().to_path_buf(), copy.clone());
            std::thread::spawn(move || logbook::backup_dir(&data, &copy))
        };
        std::thread::sleep(std::time::Duration::from_millis(round * 2));
        let report = compact(&store, &policy, now + 5 * DAY_US, |_, _| {}).unwrap();
        assert!(report.archived > 0, "round {round}: the compaction archived: {report:?}");
        store.close().unwrap();
        match backup.join().unwrap() {
            Err(err) => assert!(err.to_string().contains("cold tier"), "round {round}: {err}"),
            Ok(_) => {
                // Finished before the cold tier existed: the copy holds every event, hot.
                let copied = Store::open(&copy, options.clone()).unwrap();
                let hot = copied.scan_all(1, Filter::all()).count() as u64;
                assert_eq!(hot, total, "round {round}: the copy lost events");
                copied.close().unwrap();
            }
        }
    }
}

/// An event with a client id, for the idempotency tests.
fn event_with_id(id: u128, data: &str) -> NewEvent {
    NewEvent::new("ITEM_ADDED", data.as_bytes().to_vec())
        .with_id(uuid::Uuid::from_u128(id))
        .with_metadata(b"m".to_vec())
}

/// Retries of appends whose events compaction moved to the cold tier (attacker finding F12):
/// answered with the original result and nothing written, a changed one is a conflict, after
/// a reopen too, and an append straddling the two tiers (first event archived, last one hot)
/// is recognised as well.
#[test]
fn retrying_an_append_whose_events_were_archived_returns_the_original_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicI64::new(T0));
    let store = logbook_archive::open_store(dir.path(), options(&clock)).unwrap();
    // Day 0: two appends with client ids to one stream, and a two-event append to another
    // whose first event will expire and whose second, the stream's newest, stays hot.
    let pair = || vec![event_with_id(0xA1, r#"{"n":1}"#), event_with_id(0xA2, r#"{"n":2}"#)];
    let single = || vec![event_with_id(0xB1, r#"{"n":3}"#)];
    let straddling = || vec![event_with_id(0xC1, r#"{"n":4}"#), event_with_id(0xC2, r#"{"n":5}"#)];
    let original_pair = store.append("order-77", ExpectedVersion::NoStream, pair()).unwrap();
    let original_single = store.append("order-77", ExpectedVersion::Exact(2), single()).unwrap();
    let original_straddling = store.append("order-78", ExpectedVersion::NoStream, straddling()).unwrap();
    write_history(&store, &clock);
    // order-77's newest event, appended late, stays hot; the day-0 ones expire.
    clock.store(T0 + 60 * DAY_US, Ordering::Release);
    store.append("order-77", ExpectedVersion::Exact(3), vec![NewEvent::new("ITEM_ADDED", b"{}".to_vec())]).unwrap();
    let report = compact(&store, &age_policy(), T0 + 60 * DAY_US, |_, _| {}).unwrap();
    assert!(report.archived > 0, "{report:?}");
    let archived_now = archived(dir.path());
    for id in [0xA1u128, 0xA2, 0xB1, 0xC1] {
        let id = uuid::Uuid::from_u128(id);
        assert!(archived_now.iter().any(|e| e.id == *id.as_bytes()), "{id} went to the cold tier");
    }
    assert!(!archived_now.iter().any(|e| e.id == *uuid::Uuid::from_u128(0xC2).as_bytes()), "C2 stayed hot");

    let check = |store: &Store, when: &str| {
        let head = store.head_position();
        // (a) The same appends again, whatever the expected version says: the original results.
        let again = store.append("order-77", ExpectedVersion::NoStream, pair()).unwrap();
        assert_eq!(again, original_pair, "{when}: the archived pair");
        let again = store.append("order-77", ExpectedVersion::Exact(99), single()).unwrap();
        assert_eq!(again, original_single, "{when}: the archived single event");
        let again = store.append("order-78", ExpectedVersion::Any, straddling()).unwrap();
        assert_eq!(again, original_straddling, "{when}: the append straddling the tiers");
        let parts = vec![
            logbook::AppendPart::new("order-77", ExpectedVersion::NoStream, single()),
            logbook::AppendPart::new("order-78", ExpectedVersion::NoStream, straddling()),
        ];
        let again = store.append_batch(parts).unwrap();
        assert_eq!(again, vec![original_single, original_straddling], "{when}: a multi-stream batch");
        assert_eq!(store.head_position(), head, "{when}: a retry writes nothing");
        // (b) The same id with other content, or beside a new id: a conflict, nothing written.
        let changed = store.append("order-77", ExpectedVersion::Any, vec![event_with_id(0xB1, r#"{"n":33}"#)]);
        assert!(matches!(changed, Err(Error::IdempotencyConflict { .. })), "{when}: {changed:?}");
        let partly =
            store.append("order-77", ExpectedVersion::Any, vec![single().remove(0), event_with_id(0xD9, "{}")]);
        assert!(matches!(partly, Err(Error::IdempotencyConflict { .. })), "{when}: {partly:?}");
        let late = store.append("order-77", ExpectedVersion::Any, vec![event_with_id(0xA2, r#"{"n":2}"#).at(T0 + 5)]);
        assert!(matches!(late, Err(Error::IdempotencyConflict { .. })), "{when}: a different time: {late:?}");
        assert_eq!(store.head_position(), head, "{when}: a conflict writes nothing");
        let versions: Vec<u64> =
            store.read_stream("order-77", 1, 100, Direction::Forward).unwrap().iter().map(|e| e.version()).collect();
        assert_eq!(versions, vec![4], "{when}: no archived id was written again");
    };
    check(&store, "after compaction");
    store.close().unwrap();
    // (c) After a reopen, the cold tier's ids are known again.
    let store = logbook_archive::open_store(dir.path(), options(&clock)).unwrap();
    check(&store, "after a reopen");
    // (d) A new id still appends.
    let head = store.head_position();
    let new = store.append("order-77", ExpectedVersion::Exact(4), vec![event_with_id(0xE1, "{}")]).unwrap();
    assert_eq!((new.first_version, new.first_position), (5, head + 1));
    store.close().unwrap();
    assert_eq!(archived(dir.path()), archived_now, "the retries changed nothing in the cold tier");
}

/// While compaction moves an event to the cold tier, a retry of its append racing it is never
/// missed: the cold tier knows the id before readers switch off the hot segment (a miss would
/// show as a wrong expected version here, or as the event written again).
#[test]
fn retries_racing_the_compaction_that_archives_their_event_always_find_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicI64::new(T0));
    let store = logbook_archive::open_store(dir.path(), options(&clock)).unwrap();
    let retried = || vec![event_with_id(0xF1, r#"{"n":1}"#)];
    let original = store.append("order-90", ExpectedVersion::NoStream, retried()).unwrap();
    write_history(&store, &clock);
    clock.store(T0 + 60 * DAY_US, Ordering::Release);
    store.append("order-90", ExpectedVersion::Exact(1), vec![NewEvent::new("ITEM_ADDED", b"{}".to_vec())]).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let retrier = {
        let (store, stop) = (store.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut tries = 0u64;
            while !stop.load(Ordering::Acquire) || tries == 0 {
                let again = store.append("order-90", ExpectedVersion::NoStream, retried());
                assert_eq!(again.unwrap(), original, "retry {tries}");
                tries += 1;
            }
            tries
        })
    };
    let report = compact(&store, &age_policy(), T0 + 60 * DAY_US, |_, _| {}).unwrap();
    stop.store(true, Ordering::Release);
    let tries = retrier.join().unwrap();
    assert!(report.archived > 0 && tries > 0, "{report:?}, {tries} retries");
    let id = *uuid::Uuid::from_u128(0xF1).as_bytes();
    assert!(archived(dir.path()).iter().any(|e| e.id == id), "the event went to the cold tier");
    assert_eq!(store.append("order-90", ExpectedVersion::NoStream, retried()).unwrap(), original);
    store.close().unwrap();
}
