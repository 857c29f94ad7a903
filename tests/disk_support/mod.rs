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
