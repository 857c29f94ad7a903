//! Loud corruption (reliability.md, tests 3 and 4): a flipped byte anywhere in a sealed
//! segment, damage in the middle of the last segment, and a misdirected frame all make `open`
//! fail with an error naming the file and byte offset, and `verify` lists them. Index files
//! are derived data: damaged or missing ones are rebuilt.

#[path = "disk_support/mod.rs"]
mod disk_support;

use std::fs;
use std::path::{Path, PathBuf};

use disk_support::segment_files;
use logbook::segment::{self, SEGMENT_HEADER_BYTES};
use logbook::{self, Severity};
use logbook::{Error, ExpectedVersion, Filter, NewEvent, Options, Store, VerifyOnOpen};

fn options() -> Options {
    Options { segment_bytes: 2048, ..Options::default() }
}

/// A closed store with several sealed segments of equally sized frames.
fn build() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    for i in 0..120u64 {
        let stream = format!("order-{}", i % 10);
        store.append(&stream, ExpectedVersion::Any, vec![NewEvent::new("E", format!("{i:04}").into_bytes())]).unwrap();
    }
    assert!(store.segment_count() >= 4);
    store.close().unwrap();
    dir
}

/// Frame start offsets of a segment file.
fn frame_offsets(path: &Path) -> Vec<u64> {
    let bytes = fs::read(path).unwrap();
    let base = segment::parse_file_name(path.file_name().unwrap().to_str().unwrap()).unwrap();
    let mut offsets = Vec::new();
    segment::scan(&bytes, base, |_, at| offsets.push(at));
    offsets
}

fn flip(path: &Path, at: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at as usize] ^= 0x40;
    fs::write(path, bytes).unwrap();
}

fn strict() -> Options {
    Options { verify_on_open: VerifyOnOpen::Always, ..options() }
}

fn expect_corruption(result: Result<Store, Error>, file: &Path, offset: u64) {
    match result {
        Err(Error::Corruption { file: f, offset: o, reason }) => {
            assert_eq!((f.as_path(), o), (file, offset), "{reason}");
        }
        Err(other) => panic!("expected corruption at {}:{offset}, got {other}", file.display()),
        Ok(_) => panic!("expected corruption at {}:{offset}, open succeeded", file.display()),
    }
}

#[test]
fn flipped_byte_anywhere_in_a_sealed_segment_fails_open_with_file_and_offset() {
    let original = build();
    let victim = segment_files(original.path())[1].clone();
    let offsets = frame_offsets(&victim);
    let len = fs::metadata(&victim).unwrap().len();
    // Every byte of the header, then every 7th byte of the frames.
    let targets = (0..SEGMENT_HEADER_BYTES as u64).chain((SEGMENT_HEADER_BYTES as u64..len).step_by(7));
    for at in targets {
        let work = tempfile::tempdir().unwrap();
        copy_segments(original.path(), work.path());
        let file = work.path().join("segments").join(victim.file_name().unwrap());
        flip(&file, at);
        let frame_start =
            if at < SEGMENT_HEADER_BYTES as u64 { 0 } else { *offsets.iter().rev().find(|&&o| o <= at).unwrap() };
        // Header damage is reported at byte 0 or at the base position field; frame damage at
        // the start of the frame holding the byte.
        match Store::open(work.path(), strict()) {
            Err(Error::Corruption { file: f, offset, .. }) => {
                assert_eq!(f, file);
                if at < SEGMENT_HEADER_BYTES as u64 {
                    assert!(offset == 0 || offset == 16, "header flip at {at} reported at {offset}");
                } else {
                    assert_eq!(offset, frame_start, "flip at {at}");
                }
            }
            other => panic!("flip at {at}: {:?}", other.map(|_| ())),
        }
        let report = logbook::verify_dir(work.path()).unwrap();
        assert!(!report.is_healthy(), "verify missed the flip at {at}");
        assert!(report.findings.iter().any(|f| f.file == file && f.severity == Severity::Corruption));
    }
}

#[test]
fn after_a_crash_open_verifies_sealed_segments_by_default() {
    let dir = build();
    let victim = segment_files(dir.path())[0].clone();
    let at = frame_offsets(&victim)[3];
    flip(&victim, at + 30);
    // Clean shutdown: open trusts sealed segments (no full re-read), but the damaged event
    // is still reported with file and offset when read.
    {
        let store = Store::open(dir.path(), options()).unwrap();
        match store.read_all(1, 1000, &Filter::all()) {
            Err(Error::Corruption { file, offset, .. }) => assert_eq!((file, offset), (victim.clone(), at)),
            other => panic!("read of damaged event: {other:?}"),
        }
        drop(store); // drop closes cleanly too
    }
    // A crash (no clean-shutdown marker): the default open checks every frame.
    fs::remove_file(dir.path().join("CLEAN")).unwrap();
    expect_corruption(Store::open(dir.path(), options()), &victim, at);
}

#[test]
fn damage_in_the_middle_of_the_last_segment_is_corruption_not_a_tail() {
    let dir = build();
    let last = segment_files(dir.path()).pop().unwrap();
    let offsets = frame_offsets(&last);
    assert!(offsets.len() >= 3, "last segment needs several frames");
    flip(&last, offsets[1] + 20);
    let report = logbook::verify_dir(dir.path()).unwrap();
    assert!(!report.is_healthy());
    expect_corruption(Store::open(dir.path(), options()), &last, offsets[1]);
    // Nothing was truncated by the failed open.
    assert_eq!(frame_offsets(&last).len(), 1);
    flip(&last, offsets[1] + 20);
    assert_eq!(frame_offsets(&last).len(), offsets.len());
}

#[test]
fn misdirected_frame_is_detected() {
    let original = build();
    let victim = segment_files(original.path())[1].clone();
    let offsets = frame_offsets(&victim);
    let bytes = fs::read(&victim).unwrap();
    // All frames here have the same size: copy frame 0 over frame 2 (a valid frame, wrong place).
    let size = (offsets[1] - offsets[0]) as usize;
    assert_eq!(offsets[2] - offsets[1], size as u64);
    let mut damaged = bytes.clone();
    damaged.copy_within(offsets[0] as usize..offsets[0] as usize + size, offsets[2] as usize);
    fs::write(&victim, &damaged).unwrap();
    expect_corruption(Store::open(original.path(), strict()), &victim, offsets[2]);
    // A frame from another segment written into this one.
    let other = segment_files(original.path())[0].clone();
    let other_offsets = frame_offsets(&other);
    let other_bytes = fs::read(&other).unwrap();
    let mut damaged = bytes;
    let from = other_offsets[1] as usize;
    damaged[offsets[3] as usize..offsets[3] as usize + size].copy_from_slice(&other_bytes[from..from + size]);
    fs::write(&victim, &damaged).unwrap();
    expect_corruption(Store::open(original.path(), strict()), &victim, offsets[3]);
    assert!(!logbook::verify_dir(original.path()).unwrap().is_healthy());
}

#[test]
fn damaged_or_missing_index_files_are_rebuilt() {
    let dir = build();
    let expected: Vec<(u64, String)> = {
        let store = Store::open(dir.path(), options()).unwrap();
        store.read_all(1, 1000, &Filter::all()).unwrap().iter().map(|e| (e.position(), e.stream().into())).collect()
    };
    let indexes: Vec<PathBuf> =
        segment_files(dir.path()).iter().map(|p| p.with_extension("idx")).filter(|p| p.exists()).collect();
    assert!(indexes.len() >= 3);
    fs::remove_file(&indexes[0]).unwrap();
    flip(&indexes[1], 100);
    fs::write(&indexes[2], b"short").unwrap();
    let report = logbook::verify_dir(dir.path()).unwrap();
    assert!(report.is_healthy());
    assert_eq!(report.findings.iter().filter(|f| f.severity == Severity::IndexRebuild).count(), 3);
    let store = Store::open(dir.path(), options()).unwrap();
    let got: Vec<(u64, String)> =
        store.read_all(1, 1000, &Filter::all()).unwrap().iter().map(|e| (e.position(), e.stream().into())).collect();
    assert_eq!(got, expected);
    for s in 0..10 {
        let stream = format!("order-{s}");
        assert_eq!(store.read_stream(&stream, 1, 100, logbook::Direction::Forward).unwrap().len(), 12);
    }
    drop(store);
    assert!(logbook::verify_dir(dir.path()).unwrap().findings.is_empty());
}

#[test]
fn verify_of_a_healthy_store_finds_nothing() {
    let dir = build();
    let report = logbook::verify_dir(dir.path()).unwrap();
    assert!(report.findings.is_empty(), "{:?}", report.findings);
    assert_eq!((report.events, report.first_position, report.last_position), (120, 1, 120));
}

/// Copies the segments and the manifest, not `CLEAN`: the copy looks like a crashed store.
fn copy_segments(from: &Path, to: &Path) {
    fs::create_dir_all(to.join("segments")).unwrap();
    for entry in fs::read_dir(from.join("segments")).unwrap() {
        let path = entry.unwrap().path();
        fs::copy(&path, to.join("segments").join(path.file_name().unwrap())).unwrap();
    }
    fs::copy(from.join("MANIFEST"), to.join("MANIFEST")).unwrap();
}

/// Rewrites an index file's checksums after its bytes were changed (a writer bug that wrote
/// wrong entries, not bit rot: every checksum holds).
fn reseal_index(path: &Path, mut bytes: Vec<u8>) {
    let mask = logbook::record::CRC_MASK;
    let body_crc = crc32fast::hash(&bytes[80..]) ^ mask;
    bytes[72..76].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&bytes[0..76]) ^ mask;
    bytes[76..80].copy_from_slice(&header_crc.to_le_bytes());
    fs::write(path, bytes).unwrap();
}

#[test]
fn verify_compares_every_index_entry_with_its_segment() {
    // An index whose checksums hold but whose by-stream entries are wrong: a clean open trusts
    // it (reads through it would be wrong), so verify must find it, and say how to fix it.
    let dir = build();
    let index = segment_files(dir.path())[0].with_extension("idx");
    let mut bytes = fs::read(&index).unwrap();
    // The first by-stream entry is (stream hash, version, position): lower its version.
    let version = u64::from_le_bytes(bytes[88..96].try_into().unwrap());
    bytes[88..96].copy_from_slice(&(version + 7).to_le_bytes());
    reseal_index(&index, bytes);
    let report = logbook::verify_dir(dir.path()).unwrap();
    let finding = report
        .findings
        .iter()
        .find(|f| f.file == index)
        .unwrap_or_else(|| panic!("verify missed the index: {:?}", report.findings));
    assert_eq!(finding.severity, Severity::Corruption, "{finding:?}");
    assert!(finding.reason.contains("remove"), "{finding:?}");
    // Removing it, as the finding says, and opening: rebuilt, verify finds nothing.
    fs::remove_file(&index).unwrap();
    Store::open(dir.path(), options()).unwrap().close().unwrap();
    assert!(logbook::verify_dir(dir.path()).unwrap().findings.is_empty());
}
