//! Torn tails: the last segment is cut at every byte offset of its last two batches, or
//! zero-filled, or garbage-filled from there on (reliability.md, test 2). Reopen must keep
//! exactly the whole batches before the cut, repair the tail, and accept new appends at the
//! next position; reopening again must give the same answer.

#[path = "disk_support/mod.rs"]
mod disk_support;

use std::fs;
use std::path::{Path, PathBuf};

use logbook::segment;
use logbook::{ExpectedVersion, Filter, NewEvent, Options, Store};
use rand_core::{Rng as _, SeedableRng};
use rand_xoshiro::SplitMix64;

fn options() -> Options {
    // fsync is not what these tests check (the files are damaged by hand), and thousands of
    // reopens each paying for several fsyncs would make them slow.
    Options { segment_bytes: 4096, sync: logbook::SyncMode::Never, ..Options::default() }
}

#[derive(Clone, Copy, Debug)]
enum Damage {
    /// The file ends at the cut (as after a crash before the size was extended).
    Truncate,
    /// Zeroes from the cut to the preallocated end.
    Zeroes,
    /// Pseudo-random garbage from the cut to the preallocated end.
    Garbage,
}

fn last_segment(dir: &Path) -> PathBuf {
    disk_support::segment_files(dir).pop().unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to.join("segments")).unwrap();
    for entry in fs::read_dir(from.join("segments")).unwrap() {
        let path = entry.unwrap().path();
        fs::copy(&path, to.join("segments").join(path.file_name().unwrap())).unwrap();
    }
    // The manifest, no CLEAN marker: the copy looks like a crashed store.
    fs::copy(from.join("MANIFEST"), to.join("MANIFEST")).unwrap();
}

/// Builds a store whose last segment holds several batches; returns the batches as
/// (first position, last position) and the byte offset where each batch ends.
fn build(dir: &Path) -> Vec<(u64, u64, u64)> {
    let store = Store::open(dir, options()).unwrap();
    // Fill a few segments first so the cut segment is not the first.
    for i in 0..30 {
        store
            .append(&format!("order-{}", i % 3), ExpectedVersion::Any, vec![NewEvent::new("E", vec![b'x'; 90])])
            .unwrap();
    }
    let mut batches = Vec::new();
    for (i, size) in [1usize, 3, 2, 4].iter().enumerate() {
        let events = (0..*size).map(|j| NewEvent::new("BATCH", format!("{i}:{j}").into_bytes())).collect();
        let r = store.append(&format!("cart-{i}"), ExpectedVersion::NoStream, events).unwrap();
        batches.push((r.first_position, r.last_position));
    }
    store.close().unwrap();
    // Find where each batch ends in the last segment.
    let bytes = fs::read(last_segment(dir)).unwrap();
    let base = segment::parse_file_name(last_segment(dir).file_name().unwrap().to_str().unwrap()).unwrap();
    let mut ends = std::collections::HashMap::new();
    let outcome = segment::scan(&bytes, base, |frame, offset| {
        ends.insert(frame.position, offset + frame.encoded_len() as u64);
    });
    assert!(outcome.stop.is_none_or(|s| s.kind == segment::StopKind::Zeroes));
    assert!(base <= batches[2].0, "the last two batches must be in the last segment");
    batches.iter().map(|&(first, last)| (first, last, ends[&last])).collect()
}

fn damage(path: &Path, cut: u64, kind: Damage, seed: u64) {
    let mut bytes = fs::read(path).unwrap();
    let len = bytes.len();
    bytes.truncate(cut as usize);
    match kind {
        Damage::Truncate => {}
        Damage::Zeroes => bytes.resize(len, 0),
        Damage::Garbage => {
            let mut garbage = vec![0; len - bytes.len()];
            SplitMix64::seed_from_u64(seed).fill_bytes(&mut garbage);
            bytes.extend_from_slice(&garbage);
        }
    }
    fs::write(path, bytes).unwrap();
}

fn check_reopen(dir: &Path, expected_head: u64, rounds: u64) {
    for round in 0..rounds {
        let store = Store::open(dir, options()).unwrap_or_else(|e| panic!("reopen {round}: {e}"));
        assert_eq!(store.head_position(), expected_head + round, "round {round}");
        let all = store.read_all(1, usize::MAX, &Filter::all()).unwrap();
        assert_eq!(all.len() as u64, expected_head + round);
        for (i, event) in all.iter().enumerate() {
            assert_eq!(event.position(), i as u64 + 1);
        }
        let r = store.append("after-crash", ExpectedVersion::Any, vec![NewEvent::new("NEW", b"n".to_vec())]).unwrap();
        assert_eq!(r.first_position, expected_head + round + 1);
        drop(store);
    }
}

#[test]
fn cut_at_every_byte_of_the_last_two_batches_keeps_whole_batches_only() {
    let original = tempfile::tempdir().unwrap();
    let batches = build(original.path());
    let (before_last_two, last) = (batches[batches.len() - 3].2, batches[batches.len() - 1].2);
    let mut cases = 0;
    for cut in before_last_two..=last {
        for kind in [Damage::Truncate, Damage::Zeroes, Damage::Garbage] {
            let work = tempfile::tempdir().unwrap();
            copy_dir(original.path(), work.path());
            damage(&last_segment(work.path()), cut, kind, cut);
            // Whole batches that end at or before the cut survive; nothing after.
            let expected_head = batches.iter().filter(|b| b.2 <= cut).map(|b| b.1).max().unwrap();
            check_reopen(work.path(), expected_head, 1);
            cases += 1;
        }
    }
    assert!(cases > 300, "only {cases} cases");
}

#[test]
fn unwritten_header_of_a_new_last_segment_is_repaired() {
    let original = tempfile::tempdir().unwrap();
    let batches = build(original.path());
    let (head, sealed_end) = (batches[batches.len() - 1].1, batches[batches.len() - 1].2);
    // Rollover seals the old segment (truncated to its last frame) before creating the next;
    // a crash then can leave a new last segment whose header never reached the disk.
    let work = tempfile::tempdir().unwrap();
    copy_dir(original.path(), work.path());
    fs::OpenOptions::new().write(true).open(last_segment(work.path())).unwrap().set_len(sealed_end).unwrap();
    let next = work.path().join("segments").join(segment::file_name(head + 1));
    fs::write(&next, vec![0u8; 4096]).unwrap();
    check_reopen(work.path(), head, 2);
}

#[test]
fn garbage_tail_reopened_ten_times_gives_the_same_data() {
    let original = tempfile::tempdir().unwrap();
    let batches = build(original.path());
    let last = batches[batches.len() - 1].2;
    // As after a crash: no clean-shutdown record (after a clean stop a bad tail is corruption).
    fs::remove_file(original.path().join("CLEAN")).unwrap();
    damage(&last_segment(original.path()), last, Damage::Garbage, 99);
    let mut first: Option<Vec<(u64, String, Vec<u8>)>> = None;
    for _ in 0..10 {
        let store = Store::open(original.path(), options()).unwrap();
        let all: Vec<_> = store
            .read_all(1, usize::MAX, &Filter::all())
            .unwrap()
            .iter()
            .map(|e| (e.position(), e.stream().to_string(), e.data().to_vec()))
            .collect();
        assert_eq!(all.len() as u64, batches[batches.len() - 1].1);
        if let Some(first) = &first {
            assert_eq!(first, &all);
        }
        first = Some(all);
        drop(store);
    }
}

/// Copies the whole data directory, `CLEAN` too when `clean`.
fn copy_store(from: &Path, to: &Path, clean: bool) {
    copy_dir(from, to);
    if clean {
        fs::copy(from.join("CLEAN"), to.join("CLEAN")).unwrap();
    }
}

#[test]
fn a_cut_tail_is_repaired_after_a_crash_and_refused_after_a_clean_stop() {
    let original = tempfile::tempdir().unwrap();
    let batches = build(original.path());
    let (before_last, last) = (batches[batches.len() - 2].2, batches[batches.len() - 1].2);
    let mut cases = 0;
    // Every 7th byte of the last batch, and its last byte: each cut loses acknowledged data.
    for cut in (before_last..last).step_by(7).chain([last - 1]) {
        for kind in [Damage::Truncate, Damage::Zeroes, Damage::Garbage] {
            // After a crash, with the manifest: a torn tail, cut back to the whole batches.
            let work = tempfile::tempdir().unwrap();
            copy_store(original.path(), work.path(), false);
            damage(&last_segment(work.path()), cut, kind, cut);
            check_reopen(work.path(), batches[batches.len() - 2].1, 1);
            // After a clean stop the same bytes are damage: open refuses and changes nothing.
            let work = tempfile::tempdir().unwrap();
            copy_store(original.path(), work.path(), true);
            damage(&last_segment(work.path()), cut, kind, cut);
            let before = fs::read(last_segment(work.path())).unwrap();
            match Store::open(work.path(), options()) {
                Err(logbook::Error::Corruption { file, .. }) => assert_eq!(file, last_segment(work.path())),
                Err(other) => panic!("cut {cut} {kind:?}: {other}"),
                Ok(store) => panic!("cut {cut} {kind:?}: opened at head {}", store.head_position()),
            }
            assert_eq!(fs::read(last_segment(work.path())).unwrap(), before, "a refused open changes nothing");
            assert!(work.path().join("CLEAN").exists(), "and keeps the clean-shutdown record, so it refuses again");
            cases += 1;
        }
    }
    assert!(cases > 30, "only {cases} cases");
}

/// Frames of `dir`'s last segment: (position, offset, encoded length).
fn frames_of_last_segment(dir: &Path) -> Vec<(u64, u64, u64)> {
    let bytes = fs::read(last_segment(dir)).unwrap();
    let base = segment::parse_file_name(last_segment(dir).file_name().unwrap().to_str().unwrap()).unwrap();
    let mut frames = Vec::new();
    segment::scan(&bytes, base, |frame, offset| frames.push((frame.position, offset, frame.encoded_len() as u64)));
    frames
}

/// Zeroes the 4 KiB page at `page_start` of `path` (a page that "never reached the disk").
fn zero_page(path: &Path, page_start: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[page_start as usize..(page_start + 4096) as usize].fill(0);
    fs::write(path, bytes).unwrap();
}

#[test]
fn a_lost_page_followed_by_later_synced_appends_is_corruption_not_a_torn_tail() {
    // Each append is acknowledged after its own fdatasync. After a crash, a page lost in the
    // middle of the active segment, with acknowledged appends after it, cannot be a torn
    // write (only the last write can be torn): cutting there would drop those appends.
    let options = || Options { segment_bytes: 1 << 20, sync: logbook::SyncMode::Always, ..Options::default() };
    let original = tempfile::tempdir().unwrap();
    let store = Store::open(original.path(), options()).unwrap();
    for i in 0..150 {
        let event = NewEvent::new("E", format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(60)).into_bytes());
        store.append(&format!("order-{}", i % 5), ExpectedVersion::Any, vec![event]).unwrap();
    }
    // The last append: one atomic batch of 100 events over several pages.
    let events =
        (0..100).map(|j| NewEvent::new("BATCH", format!("{{\"j\":{j},\"pad\":\"{}\"}}", "y".repeat(120)).into_bytes()));
    let last = store.append("cart-1", ExpectedVersion::NoStream, events.collect()).unwrap();
    store.close().unwrap();
    let frames = frames_of_last_segment(original.path());
    let end_of = |position: u64| frames.iter().find(|f| f.0 == position).map(|f| f.1 + f.2).unwrap();
    assert!(end_of(150) > 3 * 4096, "the single appends span pages 1 and 2");

    // Page 1 lost: 150 single appends end past page 2, every one acknowledged after its sync.
    let work = tempfile::tempdir().unwrap();
    copy_store(original.path(), work.path(), false);
    zero_page(&last_segment(work.path()), 4096);
    let report = logbook::verify_dir(work.path()).unwrap();
    assert!(
        report.findings.iter().any(|f| f.severity == logbook::Severity::Corruption),
        "verify: {:#?}",
        report.findings
    );
    let before = fs::read(last_segment(work.path())).unwrap();
    match Store::open(work.path(), options()) {
        Err(logbook::Error::Corruption { file, .. }) => assert_eq!(file, last_segment(work.path())),
        Err(other) => panic!("open: {other}"),
        Ok(store) => panic!("opened at head {}, acknowledged appends cut", store.head_position()),
    }
    assert_eq!(fs::read(last_segment(work.path())).unwrap(), before, "a refused open changes nothing");

    // A page lost inside the last write (the 60-event batch, frames after it in the same
    // write): a torn tail, cut back to the appends before that write.
    let work = tempfile::tempdir().unwrap();
    copy_store(original.path(), work.path(), false);
    let first_of_batch = frames.iter().find(|f| f.0 == last.first_position).unwrap().1;
    let lost = first_of_batch.next_multiple_of(4096);
    assert!(lost + 4096 < end_of(last.last_position), "frames of the batch follow the lost page");
    zero_page(&last_segment(work.path()), lost);
    let store = Store::open(work.path(), options()).unwrap();
    assert_eq!(store.head_position(), last.first_position - 1);
    store.close().unwrap();
}
