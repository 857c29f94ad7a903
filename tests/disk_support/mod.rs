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
