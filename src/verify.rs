//! Offline verification of a data directory: every frame of every segment (checksums,
//! position order, each stream's versions), every index file against its segment.
//!
//! Unlike `open`, which stops at the first corruption, `verify` keeps going and lists every
//! damaged place with its file and byte offset. It only reads: it never repairs, never takes
//! the LOCK, and so can run beside a live store (it then sees a snapshot of the files and may
//! report a torn tail that is just an append in flight).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::index::{self, SegmentIndex};
use crate::log::SEGMENTS_DIR;
use crate::segment::{self, Positions, SegmentHeader, SegmentMap, TailVerdict};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Severity {
    /// Damage `open` refuses to repair: data in the middle of the log is unreadable.
    Corruption,
    /// A torn or garbage tail of the last segment: `open` cuts it back to the last whole batch.
    RepairableTail,
    /// A missing or stale index file: derived data, `open` rebuilds it.
    IndexRebuild,
    /// A segment a finished compaction replaced but had not yet deleted: `open` deletes it.
    Leftover,
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
    /// Which positions the hot tier holds, to check no archived event is also hot.
    #[serde(skip)]
    pub hot: HotPositions,
}

/// The positions stored in the hot tier: whole ranges for log-written segments (their
/// positions have no gaps), every position for compacted ones.
#[derive(Debug, Default, Clone)]
pub struct HotPositions {
    ranges: Vec<(u64, u64)>,
    sparse: Vec<u64>,
}

impl HotPositions {
    /// True when the hot tier holds `position`.
    pub fn contains(&self, position: u64) -> bool {
        let i = self.ranges.partition_point(|&(first, _)| first <= position);
        if i > 0 && position <= self.ranges[i - 1].1 {
            return true;
        }
        self.sparse.binary_search(&position).is_ok()
    }
}

impl VerifyReport {
    /// True when nothing is corrupt (repairable tails and index rebuilds are fine).
    pub fn is_healthy(&self) -> bool {
        self.findings.iter().all(|f| f.severity != Severity::Corruption)
    }
}

/// Checks every segment and index file under `dir`.
pub fn verify_dir(dir: &Path) -> Result<VerifyReport> {
    verify_dir_with_progress(dir, |_, _| {})
}

/// [`verify_dir`], calling `progress(segments done, segments)` after each segment.
pub fn verify_dir_with_progress(dir: &Path, mut progress: impl FnMut(usize, usize)) -> Result<VerifyReport> {
    let segments_dir = dir.join(SEGMENTS_DIR);
    let mut bases: Vec<u64> = fs::read_dir(&segments_dir)
        .map_err(|e| Error::io(format!("listing {}", segments_dir.display()), e))?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| segment::parse_file_name(&entry.file_name().to_string_lossy()))
        .collect();
    bases.sort_unstable();
    let mut report = VerifyReport { segments: bases.len(), ..Default::default() };
    let mut expected_base: Option<u64> = None;
    let mut streams = StreamVersions::default();
    // Last position covered by a compacted segment seen so far: later files inside it are
    // inputs of a compaction that stopped before deleting them.
    let mut covered_to = 0u64;
    for (i, &base) in bases.iter().enumerate() {
        progress(i, bases.len());
        let is_last = i + 1 == bases.len();
        let path = segments_dir.join(segment::file_name(base));
        if base <= covered_to && !is_last {
            let reason =
                format!("replaced by the compacted segment covering up to position {covered_to}; open removes it");
            report.findings.push(finding(Severity::Leftover, &path, 0, reason));
            report.segments -= 1;
            continue;
        }
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
        let scanned = verify_segment(&map, is_last, &mut streams, &mut report);
        let complete = report.findings.len() == found_before;
        if let Some(header) = &scanned.header {
            if let Some(compacted) = header.compacted {
                covered_to = compacted.end_position;
                report.hot.sparse.extend(scanned.frames.iter().map(|(position, _)| *position));
            } else if scanned.last_position >= base {
                report.hot.ranges.push((base, scanned.last_position));
            }
            if !is_last && complete {
                verify_index(&segments_dir, &map, header, &scanned.frames, &mut report);
            }
        }
        if report.first_position == 0 {
            report.first_position = base;
        }
        report.last_position = report.last_position.max(scanned.last_position);
        // After damage the segment's true end is unknown: do not report the next one as a gap.
        expected_base = complete.then_some(scanned.end_position + 1);
    }
    progress(bases.len(), bases.len());
    Ok(report)
}

fn finding(severity: Severity, file: &Path, offset: u64, reason: String) -> Finding {
    Finding { severity, file: file.to_path_buf(), offset, reason }
}

/// Each stream's last version seen, and whether compaction may have left gaps.
#[derive(Default)]
struct StreamVersions {
    last: HashMap<String, u64>,
    gaps: bool,
}

/// What scanning one segment found.
struct Scanned {
    header: Option<SegmentHeader>,
    /// Last position of a good frame.
    last_position: u64,
    /// Last position the segment covers (past `last_position` in a compacted segment).
    end_position: u64,
    /// (position, offset) of every frame, to check the index against.
    frames: Vec<(u64, u64)>,
}

/// Scans one segment: frames, positions, and each stream's versions.
fn verify_segment(map: &SegmentMap, is_last: bool, streams: &mut StreamVersions, report: &mut VerifyReport) -> Scanned {
    let base = map.base_position();
    let header = match segment::decode_header(map.bytes()) {
        Ok(header) => header,
        Err(reason) => {
            let unwritten = map.bytes().iter().all(|&b| b == 0);
            let severity = if is_last && unwritten { Severity::RepairableTail } else { Severity::Corruption };
            report.findings.push(finding(severity, map.path(), 0, reason));
            return Scanned { header: None, last_position: base - 1, end_position: base - 1, frames: Vec::new() };
        }
    };
    streams.gaps |= header.compacted.is_some();
    let mut frames = Vec::new();
    let mut version_findings = Vec::new();
    let outcome = segment::scan_with(map.bytes(), Positions::of(&header), |frame, offset| {
        frames.push((frame.position, offset));
        let last = streams.last.get(frame.stream).copied().unwrap_or(0);
        let ok = if streams.gaps { frame.version > last } else { frame.version == last + 1 };
        if !ok {
            let reason = format!(
                "stream '{}' has version {} after version {last} (versions must be contiguous{})",
                frame.stream,
                frame.version,
                if streams.gaps { " or, after a compaction, increasing" } else { "" }
            );
            version_findings.push(finding(Severity::Corruption, map.path(), offset, reason));
        }
        streams.last.insert(frame.stream.to_string(), frame.version);
    });
    report.findings.extend(version_findings);
    report.events += outcome.frames;
    let end_position = header.compacted.map_or(outcome.last_position, |c| c.end_position);
    let scanned = Scanned { header: Some(header), last_position: outcome.last_position, end_position, frames };
    let (severity, offset, reason) = if is_last {
        match segment::judge_tail(map.bytes(), &outcome) {
            TailVerdict::Clean => return scanned,
            TailVerdict::Repairable { offset, reason } => (Severity::RepairableTail, offset, reason),
            TailVerdict::Corrupt { offset, reason } => (Severity::Corruption, offset, reason),
        }
    } else {
        // A sealed segment holds frames up to its last byte: any stop is corruption.
        let Some(stop) = outcome.stop.clone() else { return scanned };
        (Severity::Corruption, stop.offset, stop.reason)
    };
    report.findings.push(finding(severity, map.path(), offset, reason));
    scanned
}

/// Checks a sealed segment's index against the frames the scan found.
fn verify_index(
    segments_dir: &Path,
    map: &SegmentMap,
    header: &SegmentHeader,
    frames: &[(u64, u64)],
    report: &mut VerifyReport,
) {
    let path = segments_dir.join(index::file_name(map.base_position()));
    let index = match SegmentIndex::open(&path) {
        Ok(index) => index,
        Err(reason) => {
            report.findings.push(finding(Severity::IndexRebuild, &path, 0, reason));
            return;
        }
    };
    let stale = index.segment_len != map.len() as u64
        || index.base_position != header.base_position
        || index.segment_crc != crate::log::header_crc(map);
    if stale {
        let reason = "index describes another version of its segment".to_string();
        report.findings.push(finding(Severity::IndexRebuild, &path, 0, reason));
        return;
    }
    if index.event_count() != frames.len() {
        let reason = format!("index lists {} events, its segment holds {}", index.event_count(), frames.len());
        report.findings.push(finding(Severity::IndexRebuild, &path, 0, reason));
        return;
    }
    if let Some((position, offset)) =
        frames.iter().find(|(position, offset)| index.offset_of(*position).map(u64::from) != Some(*offset))
    {
        let reason = format!("index does not point at position {position}, which is at byte {offset}");
        report.findings.push(finding(Severity::IndexRebuild, &path, 0, reason));
    }
}
