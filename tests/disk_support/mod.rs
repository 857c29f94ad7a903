//! Shared by the tests that damage a data directory by hand: where its files are.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

/// The segment files of the store in `dir`, oldest first.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    files.sort();
    files
}

/// Copies a data directory (its subdirectories too), leaving out `LOCK`: what a copy of a
/// store's files looks like to the next open.
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &target);
        } else if path.file_name().is_some_and(|n| n != "LOCK") {
            fs::copy(&path, &target).unwrap();
        }
    }
}

/// Writes a store at `data` (`segment_bytes` segments) holding `events` events of 200 bytes
/// over five order streams, and closes it cleanly.
pub fn write_closed_store(data: &Path, segment_bytes: u64, events: u64) {
    let options = logbook::Options { segment_bytes, ..logbook::Options::default() };
    let store = logbook::Store::open(data, options).unwrap();
    for i in 0..events {
        let event = logbook::NewEvent::new("E", vec![b'a'; 200]);
        store.append(&format!("order-{}", i % 5), logbook::ExpectedVersion::Any, vec![event]).unwrap();
    }
    store.close().unwrap();
}

/// The active segment of a store that crashed after `later` appends on top of `synced` events
/// that a clean stop and the next open made durable (the open records them as synced).
pub fn crashed_on_top_of_synced(
    dir: &Path,
    synced: usize,
    later: usize,
    options: impl Fn() -> logbook::Options,
) -> u64 {
    let live = tempfile::tempdir().unwrap();
    let append = |store: &logbook::Store, i: usize| {
        let event = logbook::NewEvent::new("E", vec![b'a' + (i % 26) as u8; 200]);
        store.append(&format!("order-{i}"), logbook::ExpectedVersion::NoStream, vec![event]).unwrap();
    };
    let store = logbook::Store::open(live.path(), options()).unwrap();
    (0..synced).for_each(|i| append(&store, i));
    store.close().unwrap();
    let store = logbook::Store::open(live.path(), options()).unwrap();
    (synced..synced + later).for_each(|i| append(&store, i));
    // The writer records after the acknowledgements; a sync request returns after it did.
    store.sync().unwrap();
    let head = store.head_position();
    copy_tree(live.path(), dir);
    drop(store);
    assert_eq!(segment_files(dir).len(), 1, "every event is in the active segment");
    head
}

/// Zeroes everything after the header of the segment file `path` (its frames lost).
pub fn zero_frames(path: &Path) {
    zero_from(path, logbook::segment::SEGMENT_HEADER_BYTES);
}

/// Zeroes the segment file `path` from byte `offset` to its end.
pub fn zero_from(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset..].fill(0);
    fs::write(path, &bytes).unwrap();
}
