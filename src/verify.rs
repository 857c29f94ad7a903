//! Offline verification of a data directory: every frame of every segment, every index file.
//!
//! Unlike `open`, which stops at the first corruption, `verify` keeps going and lists every
//! damaged place with its file and byte offset. It only reads: it never repairs, never takes
//! the LOCK, and so can run beside a live store (it then sees a snapshot of the files and may
//! report a torn tail that is just an append in flight).

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::index::{self, SegmentIndex};
use crate::log::SEGMENTS_DIR;
use crate::segment::{self, SegmentMap, TailVerdict};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Severity {
    /// Damage `open` refuses to repair: data in the middle of the log is unreadable.
    Corruption,
    /// A torn or garbage tail of the last segment: `open` cuts it back to the last whole batch.
    RepairableTail,
    /// A missing or stale index file: derived data, `open` rebuilds it.
    IndexRebuild,
    /// A file in the archive that its manifest does not list: the leftover of an interrupted
    /// export or compaction. No data depends on it; it may be deleted.
    Orphan,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub file: PathBuf,
    pub offset: u64,
    pub reason: String,
}

/// What `verify` found.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct VerifyReport {
    pub segments: usize,
    pub events: u64,
    pub first_position: u64,
    pub last_position: u64,
    pub findings: Vec<Finding>,
    /// Committed files and rows of the cold tier (`archive/`), 0 when there is none.
    pub archive_files: u64,
    pub archive_events: u64,
}

impl VerifyReport {
    /// True when nothing is corrupt (repairable tails and index rebuilds are fine).
    pub fn is_healthy(&self) -> bool {
        self.findings.iter().all(|f| f.severity != Severity::Corruption)
    }
}

/// Checks every segment and index file under `dir`.
pub fn verify_dir(dir: &Path) -> Result<VerifyReport> {
    let segments_dir = dir.join(SEGMENTS_DIR);
    let mut bases: Vec<u64> = fs::read_dir(&segments_dir)
        .map_err(|e| Error::io(format!("listing {}", segments_dir.display()), e))?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| segment::parse_file_name(&entry.file_name().to_string_lossy()))
        .collect();
    bases.sort_unstable();
    let mut report = VerifyReport { segments: bases.len(), ..Default::default() };
    let mut expected_base: Option<u64> = None;
    for (i, &base) in bases.iter().enumerate() {
        let is_last = i + 1 == bases.len();
        let path = segments_dir.join(segment::file_name(base));
        let map = match SegmentMap::open(&path, base) {
            Ok(map) => map,
            Err(err) => {
                report.findings.push(finding(Severity::Corruption, &path, 0, format!("cannot read: {err}")));
                continue;
            }
        };
        if let Some(expected) = expected_base.filter(|&e| e != base) {
            let reason = format!("segment starts at position {base}, the previous one ends at {}", expected - 1);
            report.findings.push(finding(Severity::Corruption, &path, 16, reason));
        }
        let found_before = report.findings.len();
        let last = verify_segment(&map, is_last, &mut report);
        let complete = report.findings.len() == found_before;
        if !is_last {
            verify_index(&segments_dir, &map, &mut report);
        }
        if report.first_position == 0 {
            report.first_position = base;
        }
        report.last_position = report.last_position.max(last);
        // After damage the segment's true end is unknown: do not report the next one as a gap.
        expected_base = complete.then_some(last + 1);
    }
    Ok(report)
}

fn finding(severity: Severity, file: &Path, offset: u64, reason: String) -> Finding {
    Finding { severity, file: file.to_path_buf(), offset, reason }
}

/// Scans one segment; returns its last good position.
fn verify_segment(map: &SegmentMap, is_last: bool, report: &mut VerifyReport) -> u64 {
    let base = map.base_position();
    if let Err(reason) = segment::decode_header(map.bytes()) {
        let unwritten = map.bytes().iter().all(|&b| b == 0);
        let severity = if is_last && unwritten { Severity::RepairableTail } else { Severity::Corruption };
        report.findings.push(finding(severity, map.path(), 0, reason));
        return base - 1;
    }
    let outcome = segment::scan(map.bytes(), base, |_, _| {});
    report.events += outcome.frames;
    let (severity, offset, reason) = if is_last {
        match segment::judge_tail(map.bytes(), &outcome) {
            TailVerdict::Clean => return outcome.last_position,
            TailVerdict::Repairable { offset, reason } => (Severity::RepairableTail, offset, reason),
            TailVerdict::Corrupt { offset, reason } => (Severity::Corruption, offset, reason),
        }
    } else {
        // A sealed segment holds frames up to its last byte: any stop is corruption.
        let Some(stop) = outcome.stop.clone() else { return outcome.last_position };
        (Severity::Corruption, stop.offset, stop.reason)
    };
    report.findings.push(finding(severity, map.path(), offset, reason));
    outcome.last_position
}

fn verify_index(segments_dir: &Path, map: &SegmentMap, report: &mut VerifyReport) {
    let path = segments_dir.join(index::file_name(map.base_position()));
    match SegmentIndex::open(&path) {
        Ok(index) if index.segment_len == map.len() as u64 && index.base_position == map.base_position() => {}
        Ok(_) => {
            let reason = "index describes another version of its segment".to_string();
            report.findings.push(finding(Severity::IndexRebuild, &path, 0, reason));
        }
        Err(reason) => report.findings.push(finding(Severity::IndexRebuild, &path, 0, reason)),
    }
}
