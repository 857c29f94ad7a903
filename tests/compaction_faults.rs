//! Compaction and export interrupted at every step (reliability.md: crash during a background
//! job). A store with history is built once; then for every operation a compaction performs
//! (each write, sync, create, rename, remove and directory sync, counted with the simulated file
//! system) a copy of it is compacted with that operation failing, the machine "loses power"
//! (everything not yet durable is dropped, unsynced renames and removals are undone), and the
//! store is reopened on the real file system. Every event must then be in exactly one tier — hot
//! or archived — byte-identical, `verify` must find no damage, and a second compaction must
//! finish the job. Each step's fault is asserted to have fired and failed the job.
//! `LOGBOOK_COMPACTION_FAULT_MODES=all` also runs the cut, garbage and random-pages power-loss modes.
//! `logbook export` is interrupted the same way: its archive shows nothing or everything, and a
//! rerun exports every event exactly once.

#[path = "disk_support/mod.rs"]
mod disk_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use logbook::storage::{Fault, OpKind, PowerLoss, SimFileSystem};
use logbook::time::DAY_US;
use logbook::Severity;
use logbook::ARCHIVE_DIR;
use logbook::{Clock, ExpectedVersion, Filter, NewEvent, Options};
use logbook::{RetentionPolicy, RetentionRule};
use logbook_archive::compact;
use logbook_archive::{Archive, ArchivedEvent};

const T0: i64 = 1_767_225_600_000_000;

fn options(clock: &Arc<AtomicI64>, fs: Option<&SimFileSystem>) -> Options {
    let mut options = Options { segment_bytes: 2048, clock: Clock::manual(Arc::clone(clock)), ..Options::default() };
    if let Some(sim) = fs {
        options.fs = Arc::new(sim.clone());
    }
    options
}

fn policy() -> RetentionPolicy {
    RetentionPolicy {
        rules: vec![RetentionRule { category: None, event_type: None, max_age_us: Some(10 * DAY_US), max_count: None }],
        ..logbook_order::default_retention_policy()
    }
}

/// A store of 20 days of events in 5 streams (two tenants), one deleted stream, small segments.
fn build(dir: &Path, clock: &Arc<AtomicI64>) {
    let store = logbook_archive::open_store(dir, options(clock, None)).unwrap();
    for day in 0..20i64 {
        clock.store(T0 + day * DAY_US, Ordering::Release);
        for s in 0..5 {
            let stream = if s < 2 { format!("acme:order-{s}") } else { format!("order-{s}") };
            let kind = if (day + s) % 7 == 0 { "PAYMENT_CONFIRMED" } else { "ITEM_ADDED" };
            let data = format!(r#"{{"day":{day},"s":{s},"pad":"{}"}}"#, "p".repeat(60));
            store.append(&stream, ExpectedVersion::Any, vec![NewEvent::new(kind, data.into_bytes())]).unwrap();
        }
    }
    store.delete_stream("order-4", ExpectedVersion::Any).unwrap();
    for i in 0..12 {
        store.append("filler-1", ExpectedVersion::Any, vec![NewEvent::new("F", vec![b'f'; 120 + i])]).unwrap();
    }
    store.close().unwrap();
}

/// A scratch directory in memory when the machine has one (thousands of real fsyncs otherwise).
fn scratch() -> tempfile::TempDir {
    match Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap()),
        false => tempfile::tempdir().unwrap(),
    }
}

/// Every event, hot or archived, by position; fails on a position in both tiers.
fn both_tiers(dir: &Path, clock: &Arc<AtomicI64>, context: &str) -> BTreeMap<u64, ArchivedEvent> {
    let store = logbook_archive::open_store(dir, options(clock, None))
        .unwrap_or_else(|e| panic!("{context}: reopen failed: {e}"));
    let mut all: BTreeMap<u64, ArchivedEvent> = store
        .read_all(1, usize::MAX, &Filter::all())
        .unwrap()
        .iter()
        .map(|e| (e.position(), ArchivedEvent::from_recorded(e)))
        .collect();
    store.close().unwrap();
    let archive = Archive::open(&dir.join(ARCHIVE_DIR), logbook::std_fs()).unwrap();
    for event in archive.read_range(1, u64::MAX).unwrap() {
        let position = event.position;
        assert!(all.insert(position, event).is_none(), "{context}: position {position} is both hot and archived");
    }
    let report = logbook::verify_dir(dir).unwrap();
    let damage: Vec<_> = report.findings.iter().filter(|f| f.severity == Severity::Corruption).collect();
    assert!(damage.is_empty(), "{context}: verify found {damage:#?}");
    let (findings, _) = archive.verify();
    let damage: Vec<_> = findings.iter().filter(|f| f.severity == Severity::Corruption).collect();
    assert!(damage.is_empty(), "{context}: archive verify found {damage:#?}");
    all
}

/// Hot and archived events, minus the deleted stream's (which compaction may drop).
fn visible(mut all: BTreeMap<u64, ArchivedEvent>) -> BTreeMap<u64, ArchivedEvent> {
    all.retain(|_, e| e.stream != "order-4");
    all
}

#[test]
fn compaction_interrupted_at_every_operation_loses_and_duplicates_nothing() {
    let base = scratch();
    let clock = Arc::new(AtomicI64::new(T0));
    build(base.path(), &clock);
    let now = T0 + 20 * DAY_US;
    clock.store(now, Ordering::Release);
    // The expected end state, and how many operations a whole compaction performs.
    let reference = scratch();
    disk_support::copy_tree(base.path(), reference.path());
    let before = visible(both_tiers(reference.path(), &clock, "before"));
    let sim = SimFileSystem::new();
    let store = logbook_archive::open_store(reference.path(), options(&clock, Some(&sim))).unwrap();
    let counts_before = [OpKind::Write, OpKind::Sync, OpKind::Metadata].map(|k| sim.count(k));
    let report = compact(&store, &policy(), now, |_, _| {}).unwrap();
    let counts_after = [OpKind::Write, OpKind::Sync, OpKind::Metadata].map(|k| sim.count(k));
    store.close().unwrap();
    assert!(report.archived > 0 && report.purged > 0 && report.rewritten > 1, "{report:?}");
    let done = both_tiers(reference.path(), &clock, "reference");
    assert_eq!(visible(done.clone()), before, "a whole compaction moves events between tiers only");
    let modes: &[PowerLoss] = if std::env::var("LOGBOOK_COMPACTION_FAULT_MODES").is_ok_and(|v| v == "all") {
        &[PowerLoss::DropUnsynced, PowerLoss::CutUnsynced, PowerLoss::GarbageUnsynced, PowerLoss::RandomPages]
    } else {
        &[PowerLoss::DropUnsynced]
    };
    let mut runs = 0;
    for (k, kind) in [OpKind::Write, OpKind::Sync, OpKind::Metadata].into_iter().enumerate() {
        for nth in 1..=(counts_after[k] - counts_before[k]) {
            for &mode in modes {
                let context = format!("{kind:?} #{nth} of the compaction failing, then {mode:?}");
                let dir = scratch();
                disk_support::copy_tree(base.path(), dir.path());
                let sim = SimFileSystem::new();
                let store = logbook_archive::open_store(dir.path(), options(&clock, Some(&sim))).unwrap();
                sim.fail(Fault { kind, nth: sim.count(kind) + nth, torn_at: None });
                let outcome = compact(&store, &policy(), now, |_, _| {});
                // The sweep covers this step only if its fault fired (during the compaction).
                assert_eq!(sim.injected(), 1, "{context}: the fault never fired ({outcome:?})");
                assert!(outcome.is_err(), "{context}: the compaction succeeded despite its failed operation");
                // A failed compaction refuses to run again until the store is reopened.
                assert!(compact(&store, &policy(), now, |_, _| {}).is_err(), "{context}: poisoned");
                sim.power_off();
                drop(store);
                sim.restore_durable(dir.path(), mode, nth).unwrap();
                let after = both_tiers(dir.path(), &clock, &context);
                assert_eq!(visible(after), before, "{context}: an event was lost, changed or duplicated");
                // Compacting again finishes the job: the same end state as without the fault.
                let store = logbook_archive::open_store(dir.path(), options(&clock, None)).unwrap();
                compact(&store, &policy(), now, |_, _| {}).unwrap_or_else(|e| panic!("{context}: second run: {e}"));
                store.close().unwrap();
                assert_eq!(both_tiers(dir.path(), &clock, &context), done, "{context}: second run");
                runs += 1;
            }
        }
    }
    assert!(runs > 30, "every step was interrupted: {runs} runs");
}

#[test]
fn export_interrupted_at_every_operation_then_rerun_exports_each_event_once() {
    let base = scratch();
    let clock = Arc::new(AtomicI64::new(T0));
    build(base.path(), &clock);
    let store = logbook_archive::open_store(base.path(), options(&clock, None)).unwrap();
    let expected: Vec<ArchivedEvent> = store
        .read_all(1, usize::MAX, &Filter::all())
        .unwrap()
        .iter()
        .filter(|e| !e.stream().starts_with('$'))
        .map(ArchivedEvent::from_recorded)
        .collect();
    // How many operations a whole export performs.
    let reference = scratch();
    let sim = SimFileSystem::new();
    let counts = |sim: &SimFileSystem| [OpKind::Write, OpKind::Sync, OpKind::Metadata].map(|k| sim.count(k));
    logbook_archive::export_with_fs(&store, reference.path(), Arc::new(sim.clone()), None, None, |_, _| {}).unwrap();
    let total = counts(&sim);
    let mut runs = 0;
    for (k, kind) in [OpKind::Write, OpKind::Sync, OpKind::Metadata].into_iter().enumerate() {
        for nth in 1..=total[k] {
            let context = format!("export with {kind:?} #{nth} failing, then power loss");
            let out = scratch();
            let sim = SimFileSystem::new();
            sim.fail(Fault { kind, nth, torn_at: None });
            let fs: Arc<dyn logbook::storage::FileSystem> = Arc::new(sim.clone());
            let outcome = logbook_archive::export_with_fs(&store, out.path(), Arc::clone(&fs), None, None, |_, _| {});
            assert_eq!(sim.injected(), 1, "{context}: the fault never fired");
            assert!(outcome.is_err(), "{context}: the export succeeded despite its failed operation");
            sim.power_off();
            sim.restore_durable(out.path(), PowerLoss::DropUnsynced, nth).unwrap();
            // Nothing half-visible: the committed archive is empty or complete.
            let archive = Archive::open(out.path(), logbook::std_fs()).unwrap();
            let visible = archive.read_range(1, u64::MAX).unwrap();
            assert!(visible.is_empty() || visible == expected, "{context}: {} events visible", visible.len());
            // Running the export again finishes it: every event exactly once.
            logbook_archive::export(&store, out.path(), None, None, |_, _| {}).unwrap();
            let archive = Archive::open(out.path(), logbook::std_fs()).unwrap();
            assert_eq!(archive.read_range(1, u64::MAX).unwrap(), expected, "{context}: after a rerun");
            runs += 1;
        }
    }
    assert!(runs > 10, "{runs} runs");
    store.close().unwrap();
}
