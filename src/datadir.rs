//! The data directory: one owner of its paths and of the question "is there a store here?".

use std::path::{Path, PathBuf};

/// Subdirectory holding segment and index files.
pub const SEGMENTS_DIR: &str = "segments";
/// Held with an OS lock while a store is open.
pub const LOCK_FILE: &str = "LOCK";
/// Written on clean shutdown, removed on open: its absence means the last run crashed.
pub const CLEAN_FILE: &str = "CLEAN";
/// The durable record of which segments must exist (in `segments/`).
pub const MANIFEST_FILE: &str = "MANIFEST";

/// True when `dir` holds a logbook store: a `segments/` directory with a segment manifest, or
/// a `CLEAN` record beside it, or (a store written before manifests existed, after a crash)
/// at least one segment file.
pub fn holds_store(dir: &Path) -> bool {
    let segments = dir.join(SEGMENTS_DIR);
    if !segments.is_dir() {
        return false;
    }
    if segments.join(MANIFEST_FILE).is_file() || dir.join(CLEAN_FILE).is_file() {
        return true;
    }
    std::fs::read_dir(&segments).is_ok_and(|entries| {
        entries
            .filter_map(|e| e.ok())
            .any(|e| crate::segment::parse_file_name(&e.file_name().to_string_lossy()).is_some())
    })
}

/// The segments directory of `dir`.
pub fn segments_dir(dir: &Path) -> PathBuf {
    dir.join(SEGMENTS_DIR)
}
