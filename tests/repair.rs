//! `logbook repair`: the documented way out when `open` refuses. It cuts the log back to the
//! last whole batch before the first damage, keeps a copy of what it cuts, and says exactly
//! which positions it gave up; the store then opens and appends continue after the cut.

#[path = "disk_support/mod.rs"]
mod disk_support;

use std::fs;
use std::process::Command;

use disk_support::{crashed_on_top_of_synced, segment_files, zero_frames};
use logbook::repair_dir;
use logbook::{Error, ExpectedVersion, Filter, NewEvent, Options, Store};

#[test]
fn repair_cuts_a_flipped_last_frame_after_a_clean_stop_and_keeps_a_copy() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store.append("s-1", ExpectedVersion::Any, vec![NewEvent::new("T", b"one".to_vec())]).unwrap();
    store.append("s-2", ExpectedVersion::Any, vec![NewEvent::new("T", b"two".to_vec())]).unwrap();
    store.close().unwrap();
    let segment = segment_files(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&segment).unwrap();
    let last = bytes.iter().rposition(|&b| b != 0).unwrap();
    bytes[last] ^= 0x01;
    fs::write(&segment, &bytes).unwrap();
    assert!(matches!(Store::open(dir.path(), Options::default()), Err(Error::Corruption { .. })));

    let report = repair_dir(dir.path()).unwrap();
    assert_eq!(report.gave_up, Some((2, 2)), "{report:?}");
    assert_eq!(report.head, 1);
    let kept = report.kept_in.expect("a copy of what was cut");
    assert_eq!(fs::read(kept.join(segment.file_name().unwrap())).unwrap(), bytes, "the whole damaged file is kept");
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let all = store.read_all(1, 10, &Filter::all()).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].data(), b"one");
    let next = store.append("s-3", ExpectedVersion::Any, vec![NewEvent::new("T", b"three".to_vec())]).unwrap();
    assert_eq!(next.first_position, 2, "the given-up position is written again, and the repair said so");
}

#[test]
fn repair_cuts_at_damage_in_a_sealed_segment_and_moves_later_segments_away() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options { segment_bytes: 4096, ..Options::default() }).unwrap();
    for i in 0..60u64 {
        store
            .append(&format!("order-{}", i % 5), ExpectedVersion::Any, vec![NewEvent::new("E", vec![b'a'; 200])])
            .unwrap();
    }
    store.close().unwrap();
    // After a crash (after a clean stop open trusts sealed segments' indexes and the damage
    // would surface on the first read of that event instead).
    fs::remove_file(dir.path().join("CLEAN")).unwrap();
    let files = segment_files(dir.path());
    assert!(files.len() >= 4);
    // Bit rot in the middle of the second segment.
    let mut bytes = fs::read(&files[1]).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    fs::write(&files[1], &bytes).unwrap();
    let refused = Store::open(dir.path(), Options::default()).err().expect("refused");
    assert!(matches!(&refused, Error::Corruption { file, .. } if *file == files[1]), "{refused}");

    let out = Command::new(env!("CARGO_BIN_EXE_logbook")).args(["repair", "--data"]).arg(dir.path()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("gave up positions"), "states what it gave up: {text}");
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let head = store.head_position();
    assert!(head > 0 && head < 60, "cut inside the second segment: head {head}");
    let all = store.read_all(1, usize::MAX, &Filter::all()).unwrap();
    assert_eq!(all.len() as u64, head, "positions 1..=head, nothing after the cut");
    assert!(logbook::verify_dir(dir.path()).unwrap().is_healthy());
    // Every later segment was moved, not deleted.
    let kept: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && p.file_name().unwrap().to_string_lossy().starts_with("repair-"))
        .collect();
    assert_eq!(kept.len(), 1);
    for later in &files[2..] {
        assert!(kept[0].join(later.file_name().unwrap()).exists(), "{later:?} kept");
    }
}

#[test]
fn repair_of_a_healthy_store_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store.append("s-1", ExpectedVersion::Any, vec![NewEvent::new("T", b"one".to_vec())]).unwrap();
    store.close().unwrap();
    let report = repair_dir(dir.path()).unwrap();
    assert_eq!((report.damage.len(), report.gave_up, report.head), (0, None, 1));
}

fn closed_store(segment_bytes: u64, events: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    disk_support::write_closed_store(dir.path(), segment_bytes, events);
    dir
}

fn kept_dir(dir: &std::path::Path) -> std::path::PathBuf {
    let kept: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && p.file_name().unwrap().to_string_lossy().starts_with("repair-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    kept[0].clone()
}

#[test]
fn a_damaged_first_header_gives_up_everything_and_says_so_and_keeps_the_records() {
    let dir = closed_store(4096, 60);
    let first = segment_files(dir.path())[0].clone();
    let mut bytes = fs::read(&first).unwrap();
    bytes[20] ^= 0xff;
    fs::write(&first, &bytes).unwrap();
    let report = repair_dir(dir.path()).unwrap();
    assert_eq!(report.damage[0].0, first, "{report:?}");
    assert_eq!(report.gave_up, Some((1, 60)));
    assert_eq!(report.head, 0);
    let kept = kept_dir(dir.path());
    for name in ["CLEAN", "MANIFEST", "00000000000000000001.seg"] {
        assert!(kept.join(name).exists(), "{name} kept");
    }
    assert!(logbook::verify_dir(dir.path()).unwrap().is_healthy());
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.head_position(), 0);
}

#[test]
fn a_damaged_manifest_is_reported_and_kept_and_nothing_else_is_lost() {
    let dir = closed_store(4096, 60);
    let manifest = dir.path().join("MANIFEST");
    let mut bytes = fs::read(&manifest).unwrap();
    bytes[40] ^= 0xff;
    fs::write(&manifest, &bytes).unwrap();
    assert!(matches!(Store::open(dir.path(), Options::default()), Err(Error::Corruption { .. })));
    let report = repair_dir(dir.path()).unwrap();
    assert_eq!(report.damage[0].0, manifest, "{report:?}");
    assert_eq!((report.gave_up, report.head), (None, 60));
    assert_eq!(fs::read(kept_dir(dir.path()).join("MANIFEST")).unwrap(), bytes, "the damaged record is kept");
    assert!(logbook::verify_dir(dir.path()).unwrap().is_healthy());
    assert_eq!(Store::open(dir.path(), Options::default()).unwrap().head_position(), 60);
}

#[test]
fn a_stray_segment_file_is_moved_aside_alone() {
    let dir = closed_store(4096, 60);
    let other = closed_store(4096, 60);
    let files = segment_files(dir.path());
    // A segment of another store, under a name between two of this one's.
    let stray = dir.path().join("segments").join(logbook::segment::file_name(
        logbook::segment::parse_file_name(files[1].file_name().unwrap().to_str().unwrap()).unwrap() + 1,
    ));
    fs::copy(&segment_files(other.path())[1], &stray).unwrap();
    assert!(matches!(Store::open(dir.path(), Options::default()), Err(Error::Corruption { .. })));
    // verify reports the stray file and counts only this store's segments and events (it
    // counted the stray's too: attacker review of stop 22, a smaller finding).
    let verified = logbook::verify_dir(dir.path()).unwrap();
    assert!(!verified.is_healthy());
    assert_eq!((verified.segments, verified.events), (files.len(), 60), "{:?}", verified.findings);
    let report = repair_dir(dir.path()).unwrap();
    assert_eq!(report.damage[0].0, stray, "{report:?}");
    assert_eq!((report.gave_up, report.head), (None, 60), "nothing of this store is given up");
    assert!(kept_dir(dir.path()).join(stray.file_name().unwrap()).exists());
    assert!(logbook::verify_dir(dir.path()).unwrap().is_healthy());
}

/// verify's report of `dir`, and the files its corruption findings name.
fn corruption_named(dir: &std::path::Path) -> (logbook::VerifyReport, Vec<std::path::PathBuf>) {
    let verified = logbook::verify_dir(dir).unwrap();
    let named = verified
        .findings
        .iter()
        .filter(|f| f.severity == logbook::Severity::Corruption)
        .map(|f| f.file.clone())
        .collect();
    (verified, named)
}

fn base_of(segment: &std::path::Path) -> u64 {
    logbook::segment::parse_file_name(segment.file_name().unwrap().to_str().unwrap()).unwrap()
}

fn run_repair(dir: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_logbook")).args(["repair", "--data"]).arg(dir).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
}

/// After a crash, a bad frame at the start of the active segment with whole frames after it:
/// the cut gives up every position those frames held, and the report says so.
#[test]
fn after_a_crash_repair_counts_the_valid_frames_after_the_damage_as_given_up() {
    let dir = closed_store(4096, 60);
    fs::remove_file(dir.path().join("CLEAN")).unwrap();
    let active = segment_files(dir.path()).pop().unwrap();
    let base = base_of(&active);
    assert!(base < 58, "the active segment holds several events: base {base}");
    let mut bytes = fs::read(&active).unwrap();
    bytes[64 + 30] ^= 0x01;
    fs::write(&active, &bytes).unwrap();
    assert!(matches!(Store::open(dir.path(), Options::default()), Err(Error::Corruption { .. })));
    let report = repair_dir(dir.path()).unwrap();
    assert_eq!(report.head, base - 1, "{report:?}");
    assert_eq!(report.gave_up, Some((base, 60)), "positions {base}..=60 were on disk and are cut: {report:?}");
    assert_eq!(fs::read(kept_dir(dir.path()).join(active.file_name().unwrap())).unwrap(), bytes);
}

/// After a crash, the segment the manifest lists as active is missing: what it held is not
/// known, and the report says every position from its base on is given up.
#[test]
fn after_a_crash_a_missing_active_segment_is_reported_as_given_up_from_its_base() {
    let dir = closed_store(4096, 60);
    fs::remove_file(dir.path().join("CLEAN")).unwrap();
    let active = segment_files(dir.path()).pop().unwrap();
    let base = base_of(&active);
    fs::remove_file(&active).unwrap();
    let report = repair_dir(dir.path()).unwrap();
    assert_eq!(report.head, base - 1, "{report:?}");
    assert_eq!(report.gave_up_from, Some(base), "{report:?}");
    // The binary says it too (a second store damaged the same way).
    let dir = closed_store(4096, 60);
    fs::remove_file(dir.path().join("CLEAN")).unwrap();
    fs::remove_file(segment_files(dir.path()).pop().unwrap()).unwrap();
    let (ok, text) = run_repair(dir.path());
    assert!(ok, "{text}");
    assert!(!text.contains("gave up no event"), "{text}");
    assert!(text.contains(&format!("from {base} on")), "{text}");
    // The same when the file is there but holds only zeroes, or nothing (its header and
    // events lost): nothing records how many events it held either.
    for keep in [None, Some(0u64)] {
        let dir = closed_store(4096, 60);
        fs::remove_file(dir.path().join("CLEAN")).unwrap();
        let active = segment_files(dir.path()).pop().unwrap();
        let len = fs::metadata(&active).unwrap().len();
        fs::write(&active, vec![0u8; keep.map_or(len, |k| k) as usize]).unwrap();
        let report = repair_dir(dir.path()).unwrap();
        assert_eq!(report.head, base - 1, "{keep:?} {report:?}");
        assert_eq!(report.gave_up_from, Some(base), "{keep:?} {report:?}");
    }
}

/// After a crash, a torn last batch: the repair's own open would cut it. It is reported as
/// damage, a copy is kept, and the positions of the cut batch are stated.
#[test]
fn after_a_crash_repair_reports_the_torn_tail_it_cuts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    for i in 0..6u64 {
        store.append("s-1", ExpectedVersion::Any, vec![NewEvent::new("T", format!("{i}").into_bytes())]).unwrap();
    }
    let batch = (0..4).map(|i| NewEvent::new("B", vec![b'b'; 100 + i])).collect();
    store.append("s-2", ExpectedVersion::Any, batch).unwrap();
    store.close().unwrap();
    fs::remove_file(dir.path().join("CLEAN")).unwrap();
    let active = segment_files(dir.path()).pop().unwrap();
    let bytes = fs::read(&active).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap() as u64 + 1;
    // The last frame of the batch loses its end: frames 7..=9 are whole, the batch is not.
    let file = fs::OpenOptions::new().write(true).open(&active).unwrap();
    file.set_len(end - 20).unwrap();
    file.set_len(bytes.len() as u64).unwrap();
    drop(file);
    let torn = fs::read(&active).unwrap();
    let report = repair_dir(dir.path()).unwrap();
    assert_eq!(report.head, 6, "{report:?}");
    assert_eq!(report.gave_up, Some((7, 10)), "the cut batch held positions 7..=10: {report:?}");
    assert!(!report.damage.is_empty(), "the torn tail is reported: {report:?}");
    assert_eq!(fs::read(kept_dir(dir.path()).join(active.file_name().unwrap())).unwrap(), torn, "a copy is kept");
    let (ok, text) = run_repair(dir.path());
    assert!(ok && text.contains("no damage found"), "a second run finds nothing: {text}");
}

/// `segments/` itself is gone: there is nothing to cut back to. Repair refuses before it
/// changes anything, so the directory still holds a store that open and verify refuse (never
/// one a later `serve` would take for a new, empty store).
#[test]
fn repair_refuses_a_store_whose_segments_directory_is_missing_and_changes_nothing() {
    let dir = closed_store(4096, 60);
    fs::remove_dir_all(dir.path().join("segments")).unwrap();
    let records: Vec<_> = ["MANIFEST", "CLEAN"].iter().map(|r| fs::read(dir.path().join(r)).unwrap()).collect();
    let err = repair_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("segments"), "{err}");
    let (ok, text) = run_repair(dir.path());
    assert!(!ok && text.contains("segments"), "{text}");
    for (record, bytes) in ["MANIFEST", "CLEAN"].iter().zip(&records) {
        assert_eq!(&fs::read(dir.path().join(record)).unwrap(), bytes, "{record} left in place");
    }
    let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(names.iter().all(|n| !n.to_string_lossy().starts_with("repair-")), "{names:?}");
    assert!(logbook::holds_store(dir.path()));
    assert!(!logbook::verify_dir(dir.path()).unwrap().is_healthy());
    let refused = Store::open(dir.path(), Options::default()).err().expect("still refused");
    assert!(matches!(refused, Error::Corruption { .. }), "{refused}");
}

/// After a crash, the active segment's frames are all zeroes although the manifest records 40
/// of its events as synced: repair gives up those positions and says so (nothing in the file
/// decodes any more, so only the record knows they were there).
#[test]
fn after_a_crash_repair_counts_the_events_the_manifest_records_synced() {
    let dir = tempfile::tempdir().unwrap();
    crashed_on_top_of_synced(dir.path(), 40, 0, || Options { segment_bytes: 1 << 20, ..Options::default() });
    zero_frames(&segment_files(dir.path()).pop().unwrap());
    assert!(matches!(Store::open(dir.path(), Options::default()), Err(Error::Corruption { .. })));
    let report = repair_dir(dir.path()).unwrap();
    assert_eq!(report.head, 0, "{report:?}");
    assert_eq!(report.gave_up, Some((1, 40)), "{report:?}");
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.head_position(), 0);
}

/// The manifest records 40 events synced in the active segment, and after a crash the file is
/// empty: repair knows those 40 were lost and that any after them are unknown, and says it in
/// one statement (it printed "gave up positions 1..=40" and "gave up every position from 1 on"
/// as two contradicting lines: attacker review of stop 23, finding 5).
#[test]
fn repair_says_once_what_it_knows_and_what_it_cannot_know() {
    let dir = tempfile::tempdir().unwrap();
    crashed_on_top_of_synced(dir.path(), 40, 0, || Options { segment_bytes: 1 << 20, ..Options::default() });
    let active = segment_files(dir.path()).pop().unwrap();
    fs::OpenOptions::new().write(true).open(&active).unwrap().set_len(0).unwrap();
    let (ok, text) = run_repair(dir.path());
    assert!(ok, "{text}");
    assert!(
        text.contains(
            "gave up positions 1..=40 (40 events, counted from the files and the records), and any after them"
        ),
        "{text}"
    );
    assert!(!text.contains("gave up every position"), "one statement, not two: {text}");
}

/// With `MANIFEST` and `CLEAN` both gone, nothing says where the log ended: a repair that finds
/// the newest segment missing too cannot know what it lost, and must say so rather than "gave
/// up no event" (review of stop 24, finding 2: positions 5..=7, acknowledged, were gone).
#[test]
fn with_both_records_gone_repair_says_what_came_after_its_head_is_not_known() {
    let dir = closed_store(4096, 60);
    fs::remove_file(dir.path().join("MANIFEST")).unwrap();
    fs::remove_file(dir.path().join("CLEAN")).unwrap();
    let newest = segment_files(dir.path()).pop().unwrap();
    fs::remove_file(&newest).unwrap();
    let report = repair_dir(dir.path()).unwrap();
    let head = report.head;
    assert!(head < 60, "the newest segment held events: {report:?}");
    assert_eq!(report.gave_up_from, Some(head + 1), "{report:?}");
    assert!(report.gave_up_from_why.as_deref().is_some_and(|why| why.contains("MANIFEST")), "{report:?}");
    assert!(logbook::verify_dir(dir.path()).unwrap().is_healthy());

    // The same words from the command line, on a second copy.
    let dir = closed_store(4096, 60);
    fs::remove_file(dir.path().join("MANIFEST")).unwrap();
    fs::remove_file(dir.path().join("CLEAN")).unwrap();
    fs::remove_file(segment_files(dir.path()).pop().unwrap()).unwrap();
    let (ok, text) = run_repair(dir.path());
    assert!(ok, "{text}");
    assert!(!text.contains("gave up no event"), "{text}");
    assert!(text.contains("is not known"), "{text}");
}

/// A file holding data under a name after the store's newest segment (here a copy of that
/// segment): verify names it, alone, and repair moves it aside alone. Walked as the log's last
/// segment, it made the store's own active segment look sealed, reported as "sealed segment:
/// zero body length" besides (review of stop 24).
#[test]
fn a_stray_newest_segment_file_is_the_only_damage_named() {
    let dir = closed_store(4096, 60);
    let files = segment_files(dir.path());
    let active = files.last().unwrap();
    let stray = dir.path().join("segments").join(logbook::segment::file_name(base_of(active) + 1000));
    fs::copy(active, &stray).unwrap();
    let (verified, named) = corruption_named(dir.path());
    assert_eq!(named, vec![stray.clone()], "{:?}", verified.findings);
    assert_eq!((verified.segments, verified.events), (files.len(), 60), "{:?}", verified.findings);
    let report = repair_dir(dir.path()).unwrap();
    assert_eq!(report.damage.iter().map(|d| d.0.clone()).collect::<Vec<_>>(), vec![stray.clone()], "{report:?}");
    assert_eq!((report.gave_up, report.gave_up_from, report.head), (None, None, 60), "{report:?}");
    assert!(kept_dir(dir.path()).join(stray.file_name().unwrap()).exists());
    assert!(logbook::verify_dir(dir.path()).unwrap().is_healthy());
}

/// The active segment file gone (after a crash: no `CLEAN`): repair keeps every sealed segment
/// whole, the log ends where the last of them ends, and the statement gives up the active
/// segment's positions. Repair deleted the last sealed segment, the whole remaining store, and
/// said "the repair was undone: the store is as it was" (attacker review of stop 24, finding 1).
#[test]
fn with_the_active_segment_file_gone_repair_keeps_every_sealed_segment() {
    for sealed_left in [1usize, 3, usize::MAX] {
        let dir = closed_store(4096, 60);
        fs::remove_file(dir.path().join("CLEAN")).unwrap();
        let files = segment_files(dir.path());
        // usize::MAX: only the active segment is gone.
        let sealed_left = sealed_left.min(files.len() - 1);
        assert!(files.len() > sealed_left, "{files:?}");
        for gone in &files[sealed_left..] {
            fs::remove_file(gone).unwrap();
            let _ = fs::remove_file(gone.with_extension("idx"));
        }
        let kept: Vec<_> = files[..sealed_left].iter().map(|f| (f.clone(), fs::read(f).unwrap())).collect();
        let report = repair_dir(dir.path()).unwrap_or_else(|e| panic!("{sealed_left} sealed left: {e}"));
        for (file, bytes) in &kept {
            // The last one kept is the log's last segment again: it may have grown zeroes.
            let now = fs::read(file).unwrap_or_default();
            assert!(now.starts_with(bytes), "{} kept: {report:?}", file.display());
        }
        let end = base_of(&files[sealed_left]) - 1;
        assert_eq!(report.head, end, "{report:?}");
        assert!(report.gave_up.is_some_and(|(first, _)| first == end + 1) || report.gave_up_from == Some(end + 1));
        assert!(logbook::verify_dir(dir.path()).unwrap().is_healthy());
        let store = Store::open(dir.path(), Options::default()).unwrap();
        assert_eq!(store.head_position(), end);
        store.append("after", ExpectedVersion::Any, vec![NewEvent::new("T", b"1".to_vec())]).unwrap();
    }
}

/// The same with the sealed segments compressed: the compressed one left last is kept whole
/// and the log continues in a new segment after it (repair called it the damage, "the last
/// segment is marked compressed", and gave up its events: attacker review of stop 24, finding 2).
#[test]
fn with_the_active_segment_file_gone_repair_keeps_compressed_sealed_segments() {
    compressed_store_repaired_without(&["CLEAN"]);
}

/// A closed store whose sealed segments are compressed, with `records` and then its active
/// segment file removed, repaired: every compressed segment is kept as it was, the log ends
/// where the last of them ends, and no intact file is named as the damage.
fn compressed_store_repaired_without(records: &[&str]) {
    let dir = closed_store(4096, 60);
    {
        let options = Options { compression: logbook::Compression::Lz4, ..Options::default() };
        let store = Store::open(dir.path(), options).unwrap();
        logbook::compress_sealed(&store).unwrap();
        store.close().unwrap();
    }
    for record in records {
        fs::remove_file(dir.path().join(record)).unwrap();
    }
    let files = segment_files(dir.path());
    let active = files.last().unwrap().clone();
    fs::remove_file(&active).unwrap();
    let before: Vec<_> = files[..files.len() - 1].iter().map(|f| (f.clone(), fs::read(f).unwrap())).collect();
    let report = repair_dir(dir.path()).unwrap();
    for (file, bytes) in &before {
        assert!(fs::read(file).ok().as_ref() == Some(bytes), "{} kept as it was: {report:?}", file.display());
    }
    assert_eq!(report.head, base_of(&active) - 1, "without {records:?}: {report:?}");
    assert!(report.damage.iter().all(|d| !before.iter().any(|(f, _)| *f == d.0)), "no intact file named: {report:?}");
    assert!(logbook::verify_dir(dir.path()).unwrap().is_healthy());
}

/// A stray file that holds a valid header and only zeroes after it, starting at a position
/// the log already holds: not a rollover's new segment. verify names it alone (it named the
/// store's own active segment, "zero body length": attacker review of stop 24, finding 4) and
/// repair moves it aside alone.
#[test]
fn a_stray_header_only_file_inside_the_log_is_the_only_damage_named() {
    let dir = closed_store(4096, 60);
    let files = segment_files(dir.path());
    let active = files.last().unwrap();
    let base = base_of(active) + 2;
    let stray = dir.path().join("segments").join(logbook::segment::file_name(base));
    let mut bytes = vec![0u8; 4096];
    bytes[..logbook::segment::SEGMENT_HEADER_BYTES]
        .copy_from_slice(&logbook::segment::encode_header(&logbook::segment::SegmentHeader::new(base, 1)));
    fs::write(&stray, &bytes).unwrap();
    let (verified, named) = corruption_named(dir.path());
    assert!(!named.is_empty() && named.iter().all(|f| *f == stray), "{:?}", verified.findings);
    let report = repair_dir(dir.path()).unwrap();
    assert!(report.damage.iter().all(|d| d.0 == stray), "{report:?}");
    assert_eq!((report.gave_up, report.gave_up_from, report.head), (None, None, 60), "{report:?}");
    assert!(logbook::verify_dir(dir.path()).unwrap().is_healthy());
}

/// Once repair has released the store's locks, another process may open the repaired store
/// before repair's own open does (a daemon restarting): repair's open then fails, and it must
/// not undo anything under that process. It did, and deleted the active segment a daemon had
/// appended acknowledged events to (second attacker review of stop 24, finding 1).
#[test]
fn a_store_opened_by_another_process_right_after_the_repair_is_not_undone_under_it() {
    let dir = closed_store(4096, 60);
    let active = segment_files(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&active).unwrap();
    let last = bytes.iter().rposition(|&b| b != 0).unwrap();
    bytes[last] ^= 0x01;
    fs::write(&active, &bytes).unwrap();
    let path = dir.path().to_path_buf();
    let daemon = std::sync::Arc::new(std::sync::Mutex::new(None));
    let taken = std::sync::Arc::clone(&daemon);
    let result = logbook::repair_dir_with_gap(dir.path(), move || {
        let store = Store::open(&path, Options::default()).unwrap();
        let appended =
            store.append("after", ExpectedVersion::Any, vec![NewEvent::new("T", b"acked".to_vec())]).unwrap();
        *taken.lock().unwrap() = Some((store, appended.last_position));
    });
    let report = result.expect("the repair is done");
    assert!(report.reopen_error.as_deref().is_some_and(|e| e.contains("the repair is done and stays")), "{report:?}");
    // The statement survives the failed open (it was lost: third attacker review of stop 24).
    assert!(report.damage.iter().any(|d| d.0 == active), "{report:?}");
    assert_eq!((report.gave_up, report.head), (Some((60, 60)), 59), "{report:?}");
    let (store, position) = daemon.lock().unwrap().take().unwrap();
    store.append("after", ExpectedVersion::Any, vec![NewEvent::new("T", b"more".to_vec())]).unwrap();
    store.close().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let events = store.read_stream("after", 1, 10, logbook::Direction::Forward).unwrap();
    assert_eq!(events.len(), 2, "both acknowledged appends are there");
    assert_eq!(events[0].position(), position);
    store.close().unwrap();
    assert!(logbook::verify_dir(dir.path()).unwrap().is_healthy());
}

/// The same with `MANIFEST` gone too: the newest file left is compressed, so it is sealed and
/// the active segment after it is what is missing; repair keeps it whole and names the missing
/// file (it named the compressed one, "marked compressed", and gave up its events: second
/// attacker review of stop 24, finding 4).
#[test]
fn with_the_manifest_and_the_active_segment_gone_a_compressed_last_file_is_kept() {
    compressed_store_repaired_without(&["MANIFEST"]);
    compressed_store_repaired_without(&["MANIFEST", "CLEAN"]);
}

/// An index file whose checksums hold but whose entries disagree with its segment (what a
/// writer bug would leave; only `verify` looks): an index is derived, so repair moves it aside
/// (a copy kept) and open rebuilds it; nothing is given up. Repair failed with "still damaged
/// after the cut" (second attacker review of stop 24, finding 7).
#[test]
fn an_index_that_disagrees_with_its_segment_is_moved_aside_and_rebuilt() {
    let dir = closed_store(4096, 60);
    let index = segment_files(dir.path())[0].with_extension("idx");
    let mut bytes = fs::read(&index).unwrap();
    let events = u64::from_le_bytes(bytes[32..40].try_into().unwrap()) as usize;
    // The first by_id entry's position, pointed at the next event: sorted order and lengths hold.
    let at = 80 + events * 24 + 8;
    let position = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    bytes[at..at + 8].copy_from_slice(&(position % events as u64 + 1).to_le_bytes());
    let body = logbook::record::checksum(&bytes[80..]);
    bytes[72..76].copy_from_slice(&body.to_le_bytes());
    let header = logbook::record::checksum(&bytes[..76]);
    bytes[76..80].copy_from_slice(&header.to_le_bytes());
    fs::write(&index, &bytes).unwrap();
    let (_, named) = corruption_named(dir.path());
    assert_eq!(named, vec![index.clone()]);
    let report = repair_dir(dir.path()).unwrap();
    assert_eq!(report.damage.iter().map(|d| d.0.clone()).collect::<Vec<_>>(), vec![index.clone()], "{report:?}");
    assert_eq!((report.gave_up, report.gave_up_from, report.head), (None, None, 60), "{report:?}");
    assert_eq!(fs::read(kept_dir(dir.path()).join(index.file_name().unwrap())).unwrap(), bytes, "a copy is kept");
    assert!(logbook::verify_dir(dir.path()).unwrap().is_healthy());
}

/// `MANIFEST` and `CLEAN` gone, the active segment deleted, and the newest file left a
/// compacted one whose range ends after its last frame (the last event of its range was a
/// deleted stream's): what came after that range's end is not known, and repair must say so.
/// It said "gave up no event" over 20 lost acknowledged events: the count took the last frame,
/// not the compacted range's end, which was also the new head (third attacker review of stop 24).
#[test]
fn a_compacted_last_file_counts_to_its_range_end_when_the_records_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options { segment_bytes: 4096, ..Options::default() }).unwrap();
    for i in 0..60u64 {
        // The last event of every fourth run of events is the doomed stream's.
        let stream = if i % 4 == 3 { "doomed".to_string() } else { format!("order-{}", i % 3) };
        store.append(&stream, ExpectedVersion::Any, vec![NewEvent::new("T", vec![b'a'; 200])]).unwrap();
    }
    store.delete_stream("doomed", ExpectedVersion::Any).unwrap();
    logbook::compact(&store, &logbook::RetentionPolicy::default(), 0, |_, _| {}).unwrap();
    store.close().unwrap();
    fs::remove_file(dir.path().join("MANIFEST")).unwrap();
    fs::remove_file(dir.path().join("CLEAN")).unwrap();
    let files = segment_files(dir.path());
    // Delete every segment after the last compacted one.
    let compacted: Vec<_> = files
        .iter()
        .filter(|f| logbook::segment::read_header(f).is_some_and(|h| h.compacted.is_some()))
        .cloned()
        .collect();
    let last_compacted = compacted.last().expect("compaction rewrote segments").clone();
    let end = logbook::segment::read_header(&last_compacted).unwrap().compacted.unwrap().end_position;
    for f in files.iter().filter(|f| **f > last_compacted) {
        fs::remove_file(f).unwrap();
        let _ = fs::remove_file(f.with_extension("idx"));
    }
    let report = repair_dir(dir.path()).unwrap();
    assert_eq!(report.head, end, "{report:?}");
    assert_eq!(report.gave_up_from, Some(end + 1), "what came after is not known: {report:?}");
}

/// The oldest segment file gone with `MANIFEST`: a log starts at position 1 and its first file
/// keeps that base, so verify reports the loss, and repair states it (it said "gave up no event;
/// the store ends at position 45" over lost positions 1..=20, and verify then passed: fourth
/// attacker review of stop 24).
#[test]
fn the_oldest_segment_file_gone_with_the_manifest_is_reported_and_given_up() {
    let dir = closed_store(4096, 60);
    fs::remove_file(dir.path().join("MANIFEST")).unwrap();
    let first = segment_files(dir.path())[0].clone();
    fs::remove_file(&first).unwrap();
    let _ = fs::remove_file(first.with_extension("idx"));
    let (_, named) = corruption_named(dir.path());
    assert!(named.contains(&first), "{named:?}");
    let report = repair_dir(dir.path()).unwrap();
    assert_eq!(report.damage[0].0, first, "{report:?}");
    assert!(
        report.gave_up.is_some_and(|(from, to)| from == 1 && to >= 60),
        "positions from 1 are given up: {report:?}"
    );
    assert!(logbook::verify_dir(dir.path()).unwrap().is_healthy());
}
