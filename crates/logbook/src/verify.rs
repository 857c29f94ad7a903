//! Offline verification of a data directory: the recovery walker in its verify mode
//! ([`crate::wal::walk`]), which checks the files against the clean-shutdown record and the
//! segment manifest, every frame of every segment (checksums, position order, each stream's
//! versions) and every index file against its segment. This module only formats what the walk
//! found; the rules live once, in the walker, shared with `open`.
//!
//! Unlike `open`, which stops at the first corruption, `verify` keeps going and lists every
//! damaged place with its file and byte offset. It only reads: it never repairs, never takes
//! the LOCK, and so can run beside a live store. Reads use `pread` (no memory maps), so a file a
//! live writer truncates at a seal is an error, never a signal; when the manifest changes during
//! the walk (the writer rolled over, a compaction finished), the walk starts again on the new
//! view, up to [`MAX_ATTEMPTS`] times.

use std::path::Path;

use crate::datadir::{holds_store, DataDir};
use crate::error::{Error, Result};
use crate::wal;

pub use crate::wal::{Finding, HotPositions, Severity};

/// Walks started before giving up on a consistent view of a store that keeps changing.
pub const MAX_ATTEMPTS: usize = 5;

/// What `verify` found.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct VerifyReport {
    /// Segment files holding data (leftovers of a finished compaction excluded).
    pub segments: usize,
    /// Events (frames) read in the segments.
    pub events: u64,
    /// First position the segments cover (the base of the first segment).
    pub first_position: u64,
    /// Last position written (the head; 0 for an empty store).
    pub last_position: u64,
    /// Everything found wrong or left to repair, in the order found.
    pub findings: Vec<Finding>,
    /// Committed files of the cold tier (`archive/`); 0 when there is none, and from this
    /// crate alone (the logbook-archive crate fills it in).
    pub archive_files: u64,
    /// Events (rows) in those files; 0 likewise.
    pub archive_events: u64,
    /// Which positions the hot tier holds, to check no archived event is also hot.
    #[serde(skip)]
    pub hot: HotPositions,
}

impl VerifyReport {
    /// True when nothing is corrupt (repairable tails and index rebuilds are fine).
    pub fn is_healthy(&self) -> bool {
        self.findings.iter().all(|f| f.severity != Severity::Corruption)
    }
}

/// What this crate can say of the cold tier without reading it: that it exists (and was not
/// checked), and that segments which say compaction moved events to it are not left without
/// one (a lost `archive/` is lost data).
fn cold_tier_findings(data: &DataDir, findings: &mut Vec<Finding>) -> Result<()> {
    let manifest = data.archive_manifest_path();
    if manifest.exists() {
        findings.push(Finding {
            severity: Severity::Unchecked,
            file: data.archive_dir(),
            offset: 0,
            reason: "the store has a cold tier, not checked here (logbook verify checks it)".into(),
        });
        return Ok(());
    }
    let listing = data.list().map_err(|e| Error::io(format!("listing {}", data.segments_dir().display()), e))?;
    for base in listing.segments {
        let path = data.segment_path(base);
        if let Some(job) = crate::segment::read_header(&path).and_then(|h| h.compacted).map(|c| c.job).filter(|&j| j != 0)
        {
            let reason = format!("compaction moved events of this segment to the cold tier (job {job}), but there is no archive manifest: those events are lost");
            findings.push(Finding { severity: Severity::Corruption, file: path, offset: 0, reason });
        }
    }
    Ok(())
}

/// Checks every segment and index file under `dir`.
pub fn verify_dir(dir: &Path) -> Result<VerifyReport> {
    verify_dir_with_progress(dir, |_, _| {})
}

/// [`verify_dir`], calling `progress(segments done, segments)` as it walks.
pub fn verify_dir_with_progress(dir: &Path, mut progress: impl FnMut(usize, usize)) -> Result<VerifyReport> {
    if !holds_store(dir) {
        return Err(Error::NoStore(dir.to_path_buf()));
    }
    let data = DataDir::new(dir);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let before = std::fs::read(data.manifest_path()).ok();
        // A record that does not decode is reported, and the other one still checks the files.
        let walk = wal::walk_verify_records(&data, data.read_clean(), data.read_manifest(), &mut progress)?;
        let after = std::fs::read(data.manifest_path()).ok();
        if before != after && attempt < MAX_ATTEMPTS {
            tracing::info!(attempt, "the store changed during verify (a rollover or compaction); walking again");
            continue;
        }
        // Beside a live writer a seal can truncate a file between its listing and its read.
        // Damage stays; a view caught mid-change does not: report only what a second walk sees.
        if !walk.is_healthy() && attempt < MAX_ATTEMPTS && data.in_use() {
            std::thread::sleep(std::time::Duration::from_millis(20));
            continue;
        }
        let mut findings = walk.findings;
        cold_tier_findings(&data, &mut findings)?;
        return Ok(VerifyReport {
            segments: walk.segments,
            events: walk.events,
            first_position: walk.first_position,
            last_position: walk.last_position,
            findings,
            archive_files: 0,
            archive_events: 0,
            hot: walk.hot,
        });
    }
}
