//! A backup of a live store: taken while a writer appends, after a compaction moved events to
//! the archive, it opens as a store holding every event acknowledged before the backup began,
//! byte-identical, plus the archive, and `verify` finds no damage.

#[path = "disk_support/mod.rs"]
mod disk_support;

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

/// A stopped store of 60 events in 4 KiB segments (several sealed, one active).
fn stopped_store(root: &std::path::Path) -> std::path::PathBuf {
    let data = root.join("data");
    disk_support::write_closed_store(&data, 4096, 60);
    data
}

fn active_segment(data: &std::path::Path) -> std::path::PathBuf {
    let mut files: Vec<_> = std::fs::read_dir(data.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    files.sort();
    files.pop().unwrap()
}

/// A store `open` refuses is never laundered into a copy that verifies: the backup refuses,
/// naming the damage as open would, and leaves no copy behind.
#[test]
fn a_backup_refuses_a_store_that_open_refuses() {
    type Damage = fn(&std::path::Path);
    let cases: [(&str, Damage, &str); 3] = [
        ("active segment deleted", |data| std::fs::remove_file(active_segment(data)).unwrap(), ".seg"),
        (
            "active segment cut below the clean-shutdown record's length",
            |data| {
                let active = active_segment(data);
                let len = std::fs::read(&active).unwrap().iter().rposition(|&b| b != 0).unwrap() as u64 + 1;
                std::fs::OpenOptions::new().write(true).open(&active).unwrap().set_len(len - 100).unwrap();
            },
            ".seg",
        ),
        (
            "damaged MANIFEST and active segment deleted",
            |data| {
                let manifest = data.join("MANIFEST");
                let mut bytes = std::fs::read(&manifest).unwrap();
                bytes[40] ^= 1;
                std::fs::write(&manifest, bytes).unwrap();
                std::fs::remove_file(active_segment(data)).unwrap();
            },
            "MANIFEST",
        ),
    ];
    for (name, damage, names) in cases {
        let root = tempfile::tempdir().unwrap();
        let data = stopped_store(root.path());
        damage(&data);
        assert!(logbook::Store::open(&data, Options::default()).is_err(), "{name}: open refuses it");
        let copy = root.path().join("copy");
        let err = logbook::backup_dir(&data, &copy).expect_err(name);
        assert!(matches!(err, logbook::Error::Corruption { .. }), "{name}: {err}");
        let text = err.to_string();
        assert!(
            text.contains(names) && text.contains(data.to_str().unwrap()),
            "{name}: names the source's file: {text}"
        );
        assert!(!logbook::holds_store(&copy), "{name}: no copy is left that could pass for a backup");
        // The binary exits non-zero and says why.
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_logbook"))
            .args(["backup", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(root.path().join("copy-cli"))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success() && said.contains("corruption"), "{name}: {said}");
    }
}

/// The copy carries the store's own durable records, so a file missing from the copy later is
/// caught by `verify` on the copy as it would be on the store.
#[test]
fn a_backup_carries_the_manifest_and_clean_record_of_a_stopped_store() {
    let root = tempfile::tempdir().unwrap();
    let data = stopped_store(root.path());
    let copy = root.path().join("copy");
    logbook::backup_dir(&data, &copy).unwrap();
    for record in ["MANIFEST", "CLEAN"] {
        assert_eq!(std::fs::read(copy.join(record)).unwrap(), std::fs::read(data.join(record)).unwrap(), "{record}");
    }
    assert!(logbook::verify_dir(&copy).unwrap().is_healthy());
    let reopened = logbook::Store::open(&copy, Options::default()).unwrap();
    assert_eq!(reopened.head_position(), 60);
    reopened.close().unwrap();
    std::fs::remove_file(active_segment(&copy)).unwrap();
    let verify = logbook::verify_dir(&copy).unwrap();
    assert!(!verify.is_healthy(), "a copy that lost its active segment is damaged: {:?}", verify.findings);
}

/// A store written before manifests existed (a version-1 `CLEAN`: the head as digits, no
/// `MANIFEST`) is copied with its record as it is: the copy opens and verifies like the store.
#[test]
fn a_backup_of_a_store_older_than_manifests_keeps_its_records_as_they_are() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-clean");
    std::fs::create_dir_all(data.join("segments")).unwrap();
    std::fs::copy(fixture.join("CLEAN"), data.join("CLEAN")).unwrap();
    for entry in std::fs::read_dir(fixture.join("segments")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, data.join("segments").join(path.file_name().unwrap())).unwrap();
    }
    let copy = root.path().join("copy");
    logbook::backup_dir(&data, &copy).unwrap();
    assert_eq!(std::fs::read(copy.join("CLEAN")).unwrap(), std::fs::read(data.join("CLEAN")).unwrap());
    assert!(!copy.join("MANIFEST").exists(), "no record of the copy's own making");
    assert!(logbook::verify_dir(&copy).unwrap().is_healthy());
    let reopened = logbook::Store::open(&copy, Options::default()).unwrap();
    let original = logbook::Store::open(&data, Options::default()).unwrap();
    assert_eq!(reopened.head_position(), original.head_position());
}

#[test]
fn a_backup_into_the_store_itself_is_refused_and_changes_nothing() {
    // A target inside the data directory (a slip of the path): the copy would land among the
    // store's own files (inside `segments/`, as a directory open and verify do not expect).
    let root = tempfile::tempdir().unwrap();
    let data = stopped_store(root.path());
    for inside in [data.join("segments").join("bk"), data.join("bk"), data.clone()] {
        let before: Vec<_> = std::fs::read_dir(&data).unwrap().map(|e| e.unwrap().path()).collect();
        match logbook::backup_dir(&data, &inside) {
            Err(logbook::Error::InvalidInput(message)) => assert!(message.contains("inside"), "{message}"),
            other => panic!("backup into {}: {other:?}", inside.display()),
        }
        let after: Vec<_> = std::fs::read_dir(&data).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(before, after, "nothing created in the store");
        assert!(!data.join("segments").join("bk").exists());
    }
}
