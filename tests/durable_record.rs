//! The durable record of what must exist (reliability.md, test 16): after a clean stop and
//! after a crash, a store whose files were damaged in ways a crash cannot cause — the last
//! frame flipped after a clean stop, the newest segment deleted, every segment deleted, a
//! sealed segment truncated or replaced — must not open (the error names the file and an
//! offset, and says what to do), and `verify` must report corruption and exit non-zero.
//! Each of these opened silently, lost or reused positions, and passed `verify` before the
//! clean-shutdown record and the segment manifest were checked.

#[path = "disk_support/mod.rs"]
mod disk_support;

use std::fs;
use std::path::Path;
use std::process::Command;

use disk_support::{copy_tree, crashed_on_top_of_synced, segment_files, zero_from};
use logbook::{verify_dir, Severity};
use logbook::{Error, ExpectedVersion, Filter, NewEvent, Options, Store};

fn options(segment_bytes: u64) -> Options {
    Options { segment_bytes, ..Options::default() }
}

/// How the store was left before the damage.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// Closed: a clean-shutdown record is written.
    Clean,
    /// A crash: the directory is copied while the store is open (every append acknowledged
    /// with `SyncMode::Always` is durable in it, and there is no clean-shutdown record).
    Crash,
}

/// Builds a store with `appends` events of `payload` bytes each (one per stream) in `dir`,
/// left per `stop`. Returns the head.
fn build(dir: &Path, segment_bytes: u64, appends: usize, payload: usize, stop: Stop) -> u64 {
    let live = tempfile::tempdir().unwrap();
    let store = Store::open(live.path(), options(segment_bytes)).unwrap();
    for i in 0..appends {
        store
            .append(
                &format!("order-{i}"),
                ExpectedVersion::NoStream,
                vec![NewEvent::new("E", vec![b'a' + i as u8; payload])],
            )
            .unwrap();
    }
    let head = store.head_position();
    match stop {
        Stop::Crash => {
            copy_tree(live.path(), dir);
            drop(store);
        }
        Stop::Clean => {
            store.close().unwrap();
            copy_tree(live.path(), dir);
        }
    }
    assert_eq!(dir.join("CLEAN").exists(), matches!(stop, Stop::Clean));
    head
}

/// Open must fail with corruption naming `file` (when given); verify must find corruption,
/// through the library and through the binary (non-zero exit).
fn assert_refused(dir: &Path, file: Option<&Path>, context: &str) {
    match Store::open(dir, Options::default()) {
        Err(Error::Corruption { file: named, reason, .. }) => {
            if let Some(file) = file {
                assert_eq!(named, file, "{context}: the error names the damaged file ({reason})");
            }
            assert!(
                reason.contains("logbook repair") && reason.contains("backup"),
                "{context}: says what to do: {reason}"
            );
        }
        Err(other) => panic!("{context}: open failed, but not as corruption: {other}"),
        Ok(store) => panic!("{context}: open succeeded at head {}", store.head_position()),
    }
    let report = verify_dir(dir).unwrap();
    assert!(!report.is_healthy(), "{context}: verify says healthy: {:?}", report.findings);
    assert!(report.findings.iter().any(|f| f.severity == Severity::Corruption));
    let out = Command::new(env!("CARGO_BIN_EXE_logbook")).args(["verify", "--data"]).arg(dir).output().unwrap();
    assert!(!out.status.success(), "{context}: `logbook verify` exited 0: {}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn a_flipped_bit_in_the_last_frame_after_a_clean_stop_is_corruption() {
    for stop in [Stop::Clean, Stop::Crash] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Options::default()).unwrap();
        assert_eq!(
            store.append("s-1", ExpectedVersion::Any, vec![NewEvent::new("T", b"one".to_vec())]).unwrap().last_position,
            1
        );
        assert_eq!(
            store.append("s-2", ExpectedVersion::Any, vec![NewEvent::new("T", b"two".to_vec())]).unwrap().last_position,
            2
        );
        let live = tempfile::tempdir().unwrap();
        let work = match stop {
            Stop::Clean => {
                store.close().unwrap();
                dir.path().to_path_buf()
            }
            Stop::Crash => {
                copy_tree(dir.path(), live.path());
                drop(store);
                live.path().to_path_buf()
            }
        };
        // Flip the last byte of frame 2 (the last non-zero byte of the active segment).
        let segment = segment_files(&work).pop().unwrap();
        let mut bytes = fs::read(&segment).unwrap();
        let last = bytes.iter().rposition(|&b| b != 0).unwrap();
        bytes[last] ^= 0x01;
        fs::write(&segment, &bytes).unwrap();
        match stop {
            Stop::Clean => assert_refused(&work, Some(&segment), "flip after a clean stop"),
            Stop::Crash => {
                // After a crash the same bytes are a torn tail: the unacknowledged-looking last
                // frame is cut (a crash cannot tell it from a write in flight).
                let store = Store::open(&work, Options::default()).unwrap();
                assert_eq!(store.head_position(), 1, "crash: torn tail cut");
            }
        }
    }
}

#[test]
fn a_deleted_newest_segment_is_corruption() {
    for stop in [Stop::Clean, Stop::Crash] {
        let dir = tempfile::tempdir().unwrap();
        // 1 MiB segments, three 700 KB appends: three segments.
        let head = build(dir.path(), 1 << 20, 3, 700_000, stop);
        assert_eq!(head, 3);
        let files = segment_files(dir.path());
        assert_eq!(files.len(), 3, "{stop:?}");
        fs::remove_file(&files[2]).unwrap();
        assert_refused(dir.path(), Some(&files[2]), &format!("newest segment deleted, {stop:?}"));
    }
}

/// With no segment file left, `logbook repair` refuses (nothing to cut back to), so open's
/// advice does not offer it (it did: review of stop 24).
fn assert_repair_not_offered(dir: &Path) {
    let Err(Error::Corruption { reason, .. }) = Store::open(dir, Options::default()) else { panic!("open succeeded") };
    assert!(reason.contains("nothing to cut back to") && !reason.contains("or run `logbook repair`"), "{reason}");
}

#[test]
fn every_segment_deleted_is_corruption() {
    for stop in [Stop::Clean, Stop::Crash] {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), 4096, 50, 200, stop);
        for file in fs::read_dir(dir.path().join("segments")).unwrap() {
            fs::remove_file(file.unwrap().path()).unwrap();
        }
        assert_refused(dir.path(), None, &format!("every segment deleted, {stop:?}"));
        assert_repair_not_offered(dir.path());
        // Even the whole segments/ directory; the refused open does not bring it back.
        fs::remove_dir_all(dir.path().join("segments")).unwrap();
        assert_refused(dir.path(), None, &format!("segments/ deleted, {stop:?}"));
        assert_repair_not_offered(dir.path());
        assert!(!dir.path().join("segments").exists(), "a refused open changes nothing");
    }
}

#[test]
fn a_deleted_middle_segment_is_corruption() {
    for stop in [Stop::Clean, Stop::Crash] {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), 4096, 60, 200, stop);
        let files = segment_files(dir.path());
        assert!(files.len() >= 4);
        fs::remove_file(&files[1]).unwrap();
        assert_refused(dir.path(), Some(&files[1]), &format!("middle segment deleted, {stop:?}"));
    }
}

#[test]
fn a_truncated_sealed_segment_is_corruption() {
    for stop in [Stop::Clean, Stop::Crash] {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), 4096, 60, 200, stop);
        let files = segment_files(dir.path());
        // Cut the first sealed segment at a frame boundary: every frame left is valid, so only
        // the recorded length can tell.
        let sealed = &files[0];
        let len = fs::metadata(sealed).unwrap().len();
        let frame = 8 + 56 + "order-0".len() as u64 + 1 + 200; // one event of this test
        fs::OpenOptions::new().write(true).open(sealed).unwrap().set_len(len - frame).unwrap();
        assert_refused(dir.path(), Some(sealed), &format!("sealed segment truncated, {stop:?}"));
    }
}

#[test]
fn a_replaced_sealed_segment_is_corruption() {
    for stop in [Stop::Clean, Stop::Crash] {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), 4096, 60, 200, stop);
        // Another store with the same shape: its segment 1 has the same base and length, other
        // events (and, like any segment, its own creation time in the header).
        let other = tempfile::tempdir().unwrap();
        build(other.path(), 4096, 60, 200, Stop::Clean);
        let files = segment_files(dir.path());
        let name = files[0].file_name().unwrap();
        let replacement = other.path().join("segments").join(name);
        assert_eq!(fs::metadata(&replacement).unwrap().len(), fs::metadata(&files[0]).unwrap().len());
        fs::copy(&replacement, &files[0]).unwrap();
        fs::copy(replacement.with_extension("idx"), files[0].with_extension("idx")).unwrap();
        assert_refused(dir.path(), Some(&files[0]), &format!("sealed segment replaced, {stop:?}"));
    }
}

#[test]
fn a_store_left_alone_opens_and_verifies_after_both_stops() {
    for stop in [Stop::Clean, Stop::Crash] {
        let dir = tempfile::tempdir().unwrap();
        let head = build(dir.path(), 4096, 60, 200, stop);
        assert!(verify_dir(dir.path()).unwrap().is_healthy(), "{stop:?}");
        let store = Store::open(dir.path(), Options::default()).unwrap();
        assert_eq!(store.head_position(), head);
        assert_eq!(store.read_all(1, usize::MAX, &Filter::all()).unwrap().len() as u64, head);
        let next = store.append("order-x", ExpectedVersion::NoStream, vec![NewEvent::new("E", b"x".to_vec())]).unwrap();
        assert_eq!(next.first_position, head + 1);
    }
}

#[test]
fn a_store_without_a_manifest_is_verified_then_gets_one() {
    let dir = tempfile::tempdir().unwrap();
    let head = build(dir.path(), 4096, 60, 200, Stop::Clean);
    // What a store written before manifests existed looks like: a bare-number CLEAN, no
    // MANIFEST, segment headers without the flag that says their store keeps a manifest.
    fs::remove_file(dir.path().join("MANIFEST")).unwrap();
    fs::write(dir.path().join("CLEAN"), head.to_string()).unwrap();
    for file in segment_files(dir.path()) {
        let mut bytes = fs::read(&file).unwrap();
        let mut header = logbook::segment::decode_header(&bytes).unwrap();
        header.manifested = false;
        bytes[..64].copy_from_slice(&logbook::segment::encode_header(&header));
        fs::write(&file, bytes).unwrap();
    }
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.head_position(), head);
    store.close().unwrap();
    assert!(dir.path().join("MANIFEST").exists(), "open wrote a manifest");
    // From now on a deleted segment is noticed.
    let files = segment_files(dir.path());
    fs::remove_file(files.last().unwrap()).unwrap();
    assert_refused(dir.path(), files.last().map(|p| p.as_path()), "after the upgrade");
}

#[test]
fn a_deleted_manifest_is_not_taken_for_a_store_older_than_manifests() {
    // With a version-2 clean-shutdown record: the manifest and the first segment deleted (one
    // event per stream, so no stream's versions show the hole).
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 4096, 60, 200, Stop::Clean);
    let files = segment_files(dir.path());
    fs::remove_file(dir.path().join("MANIFEST")).unwrap();
    fs::remove_file(&files[0]).unwrap();
    fs::remove_file(files[0].with_extension("idx")).unwrap();
    assert_refused(dir.path(), Some(&dir.path().join("MANIFEST")), "MANIFEST and the first segment deleted");
    // After a crash: the manifest, and the newest segment, deleted; no CLEAN either.
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 4096, 60, 200, Stop::Crash);
    let files = segment_files(dir.path());
    fs::remove_file(dir.path().join("MANIFEST")).unwrap();
    fs::remove_file(files.last().unwrap()).unwrap();
    assert_refused(dir.path(), Some(&dir.path().join("MANIFEST")), "MANIFEST and the newest segment deleted");
}

/// `logbook verify` on `dir`: (exit status, stdout, stderr).
fn verify_cli(dir: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_logbook")).args(["verify", "--data"]).arg(dir).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_listed_segment_that_cannot_be_read_is_reported_not_a_panic() {
    // A segment path that is a directory, or a symlink to itself (ELOOP): verify panicked
    // ("every listed base has a head or the walk failed before") and exited 101.
    for stop in [Stop::Clean, Stop::Crash] {
        for kind in ["directory", "symlink loop"] {
            let dir = tempfile::tempdir().unwrap();
            build(dir.path(), 4096, 60, 200, stop);
            let files = segment_files(dir.path());
            assert!(files.len() >= 4);
            // A sealed segment in the middle, then the active (last) one.
            for victim in [&files[1], files.last().unwrap()] {
                let context = format!("{kind} at {}, {stop:?}", victim.display());
                let work = tempfile::tempdir().unwrap();
                copy_tree(dir.path(), work.path());
                let path = work.path().join("segments").join(victim.file_name().unwrap());
                fs::remove_file(&path).unwrap();
                match kind {
                    "directory" => fs::create_dir(&path).unwrap(),
                    _ => std::os::unix::fs::symlink(path.file_name().unwrap(), &path).unwrap(),
                }
                let report = verify_dir(work.path()).unwrap();
                assert!(
                    report.findings.iter().any(|f| f.severity == Severity::Corruption && f.file == path),
                    "{context}: verify names the file: {:?}",
                    report.findings
                );
                let (code, stdout, stderr) = verify_cli(work.path());
                assert_eq!(code, Some(1), "{context}: `logbook verify` exits 1: {stdout} {stderr}");
                assert!(stdout.contains(&*path.to_string_lossy()), "{context}: names the file: {stdout}");
                match Store::open(work.path(), Options::default()) {
                    Err(e) => assert!(e.to_string().contains(&*path.to_string_lossy()), "{context}: {e}"),
                    Ok(store) => panic!("{context}: open succeeded at head {}", store.head_position()),
                }
            }
        }
    }
}

/// A store (1 KiB events, 4 KiB segments) as a crash during a rollover could leave it, after
/// the old segment was sealed and the new one created, before the manifest listed the new one;
/// but the new segment file is the one its live self went on to write, with `extra` events in
/// it: the bytes of a clone that went on without it. Returns the head and the unlisted file.
fn crashed_with_the_next_segment_of_a_clone(dir: &Path, extra: usize) -> (u64, std::path::PathBuf) {
    let live = tempfile::tempdir().unwrap();
    let store = Store::open(live.path(), options(4096)).unwrap();
    let append = |i: usize| {
        store
            .append(&format!("order-{i}"), ExpectedVersion::NoStream, vec![NewEvent::new("E", vec![b'a'; 1000])])
            .unwrap()
    };
    for i in 0..10 {
        append(i);
    }
    let mut i = 10;
    let (head, manifest) = loop {
        let (head, manifest, segments) =
            (store.head_position(), fs::read(live.path().join("MANIFEST")).unwrap(), segment_files(live.path()));
        append(i);
        i += 1;
        if segment_files(live.path()).len() > segments.len() {
            break (head, manifest);
        }
    };
    for _ in 1..extra {
        append(i);
        i += 1;
    }
    copy_tree(live.path(), dir);
    drop(store);
    fs::write(dir.join("MANIFEST"), manifest).unwrap();
    let next = segment_files(dir).pop().unwrap();
    assert_eq!(next.file_name().unwrap().to_string_lossy(), logbook::segment::file_name(head + 1));
    (head, next)
}

#[test]
fn an_unlisted_segment_holding_events_is_corruption_not_an_interrupted_rollover() {
    // A rollover records its new segment in the manifest before anything is appended to it,
    // so an unlisted newest file with frames comes from elsewhere (here: a clone's next
    // segment); it was adopted as an "interrupted rollover", its events served as ours.
    let dir = tempfile::tempdir().unwrap();
    let (_, next) = crashed_with_the_next_segment_of_a_clone(dir.path(), 2);
    assert_refused(dir.path(), Some(&next), "an unlisted newest segment with events");
    let report = verify_dir(dir.path()).unwrap();
    assert!(
        report.findings.iter().any(|f| f.severity == Severity::Corruption && f.file == next),
        "verify names the unlisted file: {:?}",
        report.findings
    );
    // What an interrupted rollover does leave, its header and zeroes, still opens.
    let dir = tempfile::tempdir().unwrap();
    let (head, next) = crashed_with_the_next_segment_of_a_clone(dir.path(), 1);
    let mut bytes = fs::read(&next).unwrap();
    bytes[64..].fill(0);
    fs::write(&next, &bytes).unwrap();
    let r = verify_dir(dir.path()).unwrap();
    assert!(r.is_healthy(), "{:?}", r.findings);
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.head_position(), head, "header-only next segment: nothing adopted");
    let next = store.append("order-x", ExpectedVersion::NoStream, vec![NewEvent::new("E", b"x".to_vec())]).unwrap();
    assert_eq!(next.first_position, head + 1);
}

#[test]
fn a_damaged_clean_record_does_not_hide_a_missing_active_segment() {
    // One bit flipped in CLEAN and the active segment deleted, MANIFEST intact: verify said
    // the manifest was lost and never named the missing active segment.
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 4096, 60, 200, Stop::Clean);
    let clean = dir.path().join("CLEAN");
    let mut bytes = fs::read(&clean).unwrap();
    bytes[20] ^= 1;
    fs::write(&clean, &bytes).unwrap();
    let active = segment_files(dir.path()).pop().unwrap();
    fs::remove_file(&active).unwrap();
    let report = verify_dir(dir.path()).unwrap();
    let corrupt: Vec<_> = report.findings.iter().filter(|f| f.severity == Severity::Corruption).collect();
    assert!(corrupt.iter().any(|f| f.file == clean), "reports CLEAN: {corrupt:?}");
    assert!(corrupt.iter().any(|f| f.file == active), "reports the missing active segment: {corrupt:?}");
    let manifest = dir.path().join("MANIFEST");
    assert!(!corrupt.iter().any(|f| f.file == manifest), "the intact MANIFEST is not called lost: {corrupt:?}");
    assert_refused(dir.path(), Some(&clean), "damaged CLEAN, active segment deleted");
    // The other way round: a damaged MANIFEST is reported, and CLEAN still checks the end.
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 4096, 60, 200, Stop::Clean);
    let manifest = dir.path().join("MANIFEST");
    let mut bytes = fs::read(&manifest).unwrap();
    bytes[40] ^= 1;
    fs::write(&manifest, &bytes).unwrap();
    let active = segment_files(dir.path()).pop().unwrap();
    let end = fs::read(&active).unwrap().iter().rposition(|&b| b != 0).unwrap() as u64;
    fs::OpenOptions::new().write(true).open(&active).unwrap().set_len(end - 100).unwrap();
    let report = verify_dir(dir.path()).unwrap();
    let corrupt: Vec<_> = report.findings.iter().filter(|f| f.severity == Severity::Corruption).collect();
    assert!(corrupt.iter().any(|f| f.file == manifest), "reports MANIFEST: {corrupt:?}");
    assert!(corrupt.iter().any(|f| f.file == active), "reports the cut active segment: {corrupt:?}");
    assert_refused(dir.path(), Some(&manifest), "damaged MANIFEST, active segment cut");
}

#[test]
fn a_listed_active_segment_zeroed_after_a_crash_is_corruption() {
    // The manifest lists an active segment only after its header was synced (at rollover and
    // at open), so a listed active segment that is all zeroes, or empty, lost acknowledged
    // events; open took it for a header that never reached the disk and made it again.
    for zeroed in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        build(dir.path(), 4096, 60, 200, Stop::Crash);
        let active = segment_files(dir.path()).pop().unwrap();
        let len = fs::metadata(&active).unwrap().len();
        let file = fs::OpenOptions::new().write(true).open(&active).unwrap();
        file.set_len(0).unwrap();
        if zeroed {
            file.set_len(len).unwrap();
        }
        assert_refused(dir.path(), Some(&active), &format!("listed active segment zeroed={zeroed}"));
    }
}

#[test]
fn an_unwritten_last_segment_a_backup_lists_is_still_created_again() {
    // A rollover interrupted before its new segment's header reached the disk leaves an
    // unlisted file of zeroes. A backup's manifest lists it with header checksum 0 (it found
    // no header): open of the copy creates it again, as open of the original does.
    let dir = tempfile::tempdir().unwrap();
    let (head, next) = crashed_with_the_next_segment_of_a_clone(dir.path(), 1);
    let len = fs::metadata(&next).unwrap().len();
    fs::write(&next, vec![0u8; len as usize]).unwrap();
    let copy = tempfile::tempdir().unwrap();
    let copy = copy.path().join("copy");
    logbook::backup_dir(dir.path(), &copy).unwrap();
    for store_dir in [copy.as_path(), dir.path()] {
        assert!(verify_dir(store_dir).unwrap().is_healthy(), "{}", store_dir.display());
        let store = Store::open(store_dir, Options::default()).unwrap();
        assert_eq!(store.head_position(), head);
        let next = store.append("order-x", ExpectedVersion::NoStream, vec![NewEvent::new("E", b"x".to_vec())]).unwrap();
        assert_eq!(next.first_position, head + 1);
    }
}

#[test]
fn an_active_segment_cut_back_below_what_was_synced_after_a_crash_is_corruption() {
    // After a crash the end of the active segment is judged by what it holds: zeroes where
    // frames were, or a file cut short, looked like a write that never finished, and open cut
    // every event after it, however long ago they had been acknowledged (attacker review,
    // F3's first half). The manifest records how far the active segment is known synced, so
    // losing events below that is corruption.
    for shape in ["every frame zeroed", "cut back to its header", "zeroed from the 20th frame on"] {
        let dir = tempfile::tempdir().unwrap();
        crashed_on_top_of_synced(dir.path(), 40, 5, || options(1 << 20));
        let active = segment_files(dir.path()).pop().unwrap();
        let mut bytes = fs::read(&active).unwrap();
        let header = logbook::segment::SEGMENT_HEADER_BYTES;
        match shape {
            "every frame zeroed" => bytes[header..].fill(0),
            "cut back to its header" => bytes.truncate(header),
            _ => {
                let mut at = header;
                for _ in 0..19 {
                    let (_, used) = logbook::record::decode(&bytes[at..]).unwrap();
                    at += used;
                }
                bytes[at..].fill(0);
            }
        }
        fs::write(&active, &bytes).unwrap();
        assert_refused(dir.path(), Some(&active), shape);
    }
}

#[test]
fn what_was_written_after_the_recorded_sync_is_still_a_torn_tail() {
    // The other side: events written after the last record may be lost to a crash (their
    // write may not have finished), and open still cuts them. The open records the 40 events
    // it found as synced; with records once an hour, the 5 later appends are not recorded.
    let hourly = || Options { synced_record_every: std::time::Duration::from_secs(3600), ..options(1 << 20) };
    for keep in [40usize, 44] {
        let dir = tempfile::tempdir().unwrap();
        crashed_on_top_of_synced(dir.path(), 40, 5, hourly);
        let active = segment_files(dir.path()).pop().unwrap();
        let mut bytes = fs::read(&active).unwrap();
        let mut at = logbook::segment::SEGMENT_HEADER_BYTES;
        for _ in 0..keep {
            at += logbook::record::decode(&bytes[at..]).unwrap().1;
        }
        bytes[at..].fill(0);
        fs::write(&active, &bytes).unwrap();
        let store = Store::open(dir.path(), hourly()).unwrap();
        assert_eq!(store.head_position(), keep as u64, "the unrecorded appends after {keep} are cut as a torn tail");
    }
    // Recorded after every sync, the same loss of the last appends is corruption.
    let every_sync = || Options { synced_record_every: std::time::Duration::ZERO, ..options(1 << 20) };
    let dir = tempfile::tempdir().unwrap();
    crashed_on_top_of_synced(dir.path(), 40, 5, every_sync);
    let active = segment_files(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&active).unwrap();
    let mut at = logbook::segment::SEGMENT_HEADER_BYTES;
    for _ in 0..44 {
        at += logbook::record::decode(&bytes[at..]).unwrap().1;
    }
    bytes[at..].fill(0);
    fs::write(&active, &bytes).unwrap();
    assert_refused(dir.path(), Some(&active), "the last acknowledged append lost, recorded synced");
}

#[test]
fn a_refused_open_leaves_no_lock_file_behind() {
    // Read-only verbs open the store: when that open is refused, the directory must be as it
    // was, without a `LOCK` the refused open created (attacker review, a smaller finding).
    let dir = tempfile::tempdir().unwrap();
    build(dir.path(), 4096, 10, 100, Stop::Clean);
    assert!(!dir.path().join("LOCK").exists(), "the copy holds no LOCK");
    fs::write(dir.path().join("MANIFEST"), b"garbage").unwrap();
    assert!(matches!(Store::open(dir.path(), Options::default()), Err(Error::Corruption { .. })));
    assert!(!dir.path().join("LOCK").exists(), "the refused open created LOCK");
    let out = Command::new(env!("CARGO_BIN_EXE_logbook")).args(["stats", "--data"]).arg(dir.path()).output().unwrap();
    assert!(!out.status.success());
    assert!(!dir.path().join("LOCK").exists(), "`logbook stats` created LOCK");
}

#[test]
fn appends_followed_by_idleness_are_recorded_synced() {
    // The writer recorded only when a later commit came along at least `synced_record_every`
    // after the last record: the last burst before it went idle was never recorded, however
    // old it got, and after a crash losing it was taken for a torn tail (attacker review of
    // stop 23, finding 1). An idle writer records on its own once the interval has passed.
    // Also with appends of 20 KiB, which a lone appender commits on its own thread: the
    // writer thread, asleep with nothing to time, must still be told to record them.
    for (payload, on_appender_thread) in [(200, false), (20 * 1024, true)] {
        let every = std::time::Duration::from_millis(400);
        let live = tempfile::tempdir().unwrap();
        let options = || Options { synced_record_every: every, ..options(4 << 20) };
        let store = Store::open(live.path(), options()).unwrap();
        // One append first, recorded by the writer thread once the interval has passed (at
        // about 1×): the thread then has nothing left to time and sleeps until told otherwise,
        // and the appends below come before the next interval has passed (at about 1.5×), so
        // none of them records itself on the way.
        store.append("first", ExpectedVersion::NoStream, vec![NewEvent::new("E", vec![b'a'; 200])]).unwrap();
        std::thread::sleep(every * 3 / 2);
        let burst = std::time::Instant::now();
        for i in 0..10 {
            let event = NewEvent::new("E", vec![b'a'; payload]);
            store.append(&format!("order-{i}"), ExpectedVersion::NoStream, vec![event]).unwrap();
        }
        // Over half an interval and the last appends could record themselves: the test would
        // then not show whether the writer thread records on its own (20 ms per fdatasync).
        assert!(burst.elapsed() < every / 2, "the disk is too slow for this test: {:?}", burst.elapsed());
        assert_eq!(store.stats().groups_on_appender_thread > 0, on_appender_thread);
        std::thread::sleep(every * 4);
        let dir = tempfile::tempdir().unwrap();
        copy_tree(live.path(), dir.path());
        drop(store);
        let active = segment_files(dir.path()).pop().unwrap();
        // The first append's frame (recorded either way) is kept; the burst's are lost.
        zero_from(&active, logbook::segment::SEGMENT_HEADER_BYTES + 1024);
        assert_refused(dir.path(), Some(&active), &format!("10 appends of {payload} B, then the writer idle"));
    }
}

/// An open that refuses logs no repair it did not make: after a crash, the last recorded-synced
/// frame flipped is a "torn tail" to the tail rule and corruption to the synced record, and the
/// warning "open cuts N bytes" came out just before the refusal (review of stop 24).
#[test]
fn an_open_that_refuses_logs_no_cut_it_did_not_make() {
    let dir = tempfile::tempdir().unwrap();
    crashed_on_top_of_synced(dir.path(), 40, 0, || options(1 << 20));
    let active = segment_files(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&active).unwrap();
    let last = bytes.iter().rposition(|&b| b != 0).unwrap();
    bytes[last] ^= 0x01;
    fs::write(&active, &bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_logbook")).args(["stats", "--data"]).arg(dir.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("synced up to position 40"), "refused for the synced record: {stderr}");
    assert!(!stderr.contains("open cuts"), "no cut is announced by an open that refused: {stderr}");
}

/// A damaged sealed segment (a flipped bit in its middle) is reported: the streams it held are
/// not then reported as "continuing at version N after version M" in later segments, which are
/// whole (`verify` did: review of stop 24).
#[test]
fn a_damaged_sealed_segment_brings_no_follow_on_version_findings() {
    for (stop, victim) in [(Stop::Clean, 0), (Stop::Crash, 0), (Stop::Clean, 1), (Stop::Crash, 1)] {
        let dir = tempfile::tempdir().unwrap();
        let live = tempfile::tempdir().unwrap();
        let store = Store::open(live.path(), options(4096)).unwrap();
        for i in 0..60 {
            let event = NewEvent::new("E", vec![b'a' + (i % 26) as u8; 200]);
            store.append(&format!("order-{}", i % 3), ExpectedVersion::Any, vec![event]).unwrap();
        }
        if matches!(stop, Stop::Clean) {
            store.close().unwrap();
            copy_tree(live.path(), dir.path());
        } else {
            copy_tree(live.path(), dir.path());
            drop(store);
        }
        let files = segment_files(dir.path());
        assert!(files.len() >= 4, "{files:?}");
        let victim = &files[victim];
        let mut bytes = fs::read(victim).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        fs::write(victim, &bytes).unwrap();
        let report = verify_dir(dir.path()).unwrap();
        assert!(report.findings.iter().any(|f| &f.file == victim), "{:?}", report.findings);
        let follow_on: Vec<_> = report.findings.iter().filter(|f| f.reason.contains("continues at version")).collect();
        assert!(follow_on.is_empty(), "{stop:?}, {}: {follow_on:?}", victim.display());
    }
}
