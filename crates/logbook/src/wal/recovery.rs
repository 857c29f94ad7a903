//! One recovery walker over a data directory, used by `open` and by `verify` (in the manner of
//! raft-engine's `RecoveryMode`): the rules that decide what is on disk are written once.
//!
//! The walker only reads. It checks the files against the durable records (the clean-shutdown
//! record and the segment manifest), then every segment in order: header, base, continuity
//! with the previous segment, frames (whole batches, positions, each stream's versions), the
//! index of each sealed segment, and the tail of the last segment per the recovery table in
//! docs/format.md. Every finding has a [`Severity`]. In [`RecoveryMode::Open`] the walk stops at
//! the first corruption (the error names the file, the offset and what the operator can do) and
//! returns the repairs an interrupted write may need ([`Repair`]), which `open` applies once the
//! walk has passed; in [`RecoveryMode::Verify`] it goes on and reports everything.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};

use super::state::{ActiveSegment, LogState, SealedSegment, Shared, Stats};
use super::tombstones::load_tombstones;
use crate::block_cache::BlockCache;
use crate::datadir::{holds_store, CleanRecord, DataDir, Manifest, ManifestEntry, SyncedEnd};
use crate::error::{Error, Result};
use crate::index::{ActiveIndex, IndexBuilder, IndexedEvent, SegmentIndex, StreamDirectory};
use crate::record::FrameRef;
use crate::segment::{self, Positions, SegmentHeader, SegmentReader, SegmentWriter, TailVerdict, SEGMENT_HEADER_BYTES};
use crate::options::{Options, VerifyOnOpen};

/// What the walk is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryMode {
    /// `open`: repair only what an interrupted write can leave; fail on anything else.
    /// `check_frames`: also read every frame of every sealed segment (after a crash, for a
    /// store without a manifest, or when `VerifyOnOpen::Always` asks for it).
    Open { check_frames: bool },
    /// `verify`: read everything, repair nothing, report every finding.
    Verify,
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Severity {
    /// Damage `open` refuses to repair: acknowledged data may be lost or replaced.
    Corruption,
    /// A torn or garbage tail of the last segment after a crash: `open` cuts it back to the
    /// last whole batch.
    RepairableTail,
    /// A missing or stale index file: derived data, `open` rebuilds it.
    IndexRebuild,
    /// A segment a finished compaction replaced but had not yet deleted: `open` deletes it.
    Leftover,
    /// A file in the archive that its manifest does not list: the leftover of an interrupted
    /// export or compaction. No data depends on it; it may be deleted.
    Orphan,
    /// The store has a cold tier (`archive/`) this check did not read: the core crate alone
    /// cannot. `logbook verify` (the archive crate's `verify_data_dir`) checks it and drops
    /// this finding.
    Unchecked,
}

/// One finding: what, where, why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// How bad it is, and what `open` does about it.
    pub severity: Severity,
    /// The file concerned.
    pub file: PathBuf,
    /// Byte offset in the file where the problem is (0 when it concerns the whole file).
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

/// What `open` must do before the store is used; planned by the walk, applied by `open`.
#[derive(Debug)]
pub enum Repair {
    /// A temporary file or a segment (and its index) a finished compaction replaced.
    Remove(PathBuf),
    /// Write the index of the sealed segment at `base` from its frames.
    RebuildIndex { base: u64, builder: IndexBuilder, segment_len: u64, header_crc: u32 },
    /// The last segment's header never reached the disk: create it again, empty.
    RecreateActive { base: u64 },
    /// Cut the last segment back to the end of its last whole batch (and zero the rest).
    TruncateTail { base: u64, valid_len: u64 },
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

/// A sealed segment as the walk found it.
#[derive(Debug)]
pub struct WalkedSealed {
    pub base: u64,
    /// The last position it covers.
    pub end: u64,
    pub header: SegmentHeader,
    pub header_crc: u32,
    pub len: u64,
    /// Its index, when the file on disk is current (else a [`Repair::RebuildIndex`] is planned).
    pub index: Option<SegmentIndex>,
}

/// The last segment as the walk found it.
#[derive(Debug)]
pub struct WalkedActive {
    pub base: u64,
    /// End of the last whole batch: where appends continue.
    pub valid_len: u64,
    pub index: ActiveIndex,
    /// Stored checksum of its last frame (0: none).
    pub last_frame_crc: u32,
    pub header_crc: u32,
    /// The file's length (its preallocation included).
    pub file_len: u64,
}

/// What the walk found.
#[derive(Debug, Default)]
pub struct Walk {
    pub findings: Vec<Finding>,
    pub repairs: Vec<Repair>,
    pub sealed: Vec<WalkedSealed>,
    pub active: Option<WalkedActive>,
    pub streams: StreamDirectory,
    /// Segment files that hold data (leftovers excluded).
    pub segments: usize,
    /// Frames read (every frame in verify; in open, those of segments whose frames were read).
    pub events: u64,
    pub first_position: u64,
    pub last_position: u64,
    /// Verify only: which positions the hot tier holds.
    pub hot: HotPositions,
}

impl Walk {
    /// True when nothing is corrupt.
    pub fn is_healthy(&self) -> bool {
        self.findings.iter().all(|f| f.severity != Severity::Corruption)
    }
}

/// What an operator can do when `open` refuses (docs/operations.md, "When open refuses").
pub const OPERATOR_HINT: &str =
    "the store was not opened; restore it from a backup, or run `logbook repair` to cut the log back to the last \
     good event (it lists what it gives up and keeps a copy); see docs/operations.md";

/// [`OPERATOR_HINT`] when no segment file is left: `logbook repair` refuses such a store (it
/// has nothing to cut back to), so it is not offered.
pub const OPERATOR_HINT_NO_SEGMENTS: &str =
    "the store was not opened; no segment file is left, so `logbook repair` has nothing to cut back to: restore \
     the segments (a wrong mount or path?) or a backup; see docs/operations.md";

/// The hint for a refused open of `dir`: [`OPERATOR_HINT`], or [`OPERATOR_HINT_NO_SEGMENTS`]
/// when its `segments/` is missing or holds no segment file.
fn operator_hint(dir: &DataDir) -> &'static str {
    match dir.list() {
        Ok(listing) if !listing.segments.is_empty() => OPERATOR_HINT,
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => OPERATOR_HINT,
        _ => OPERATOR_HINT_NO_SEGMENTS,
    }
}

struct Walker<'a> {
    mode: RecoveryMode,
    /// Told (segments done, segments) as the walk goes.
    progress: &'a mut dyn FnMut(usize, usize),
    dir: &'a DataDir,
    clean: Option<CleanRecord>,
    walk: Walk,
    /// Once a compacted segment has been read, a stream's next version only has to be higher.
    gaps: bool,
    /// A missing manifest is damage unless the store predates manifests (`logbook repair`
    /// turns this off: it writes a new manifest for what it kept; verify, when the manifest
    /// is there but does not decode, which it reports on its own).
    require_manifest: bool,
    /// The newest segment file when the manifest does not list it: a rollover that stopped
    /// before recording its new segment, if the file holds nothing past its header.
    unlisted_newest: Option<u64>,
    /// Segment files the manifest does not list and the log cannot have written (reported).
    foreign: Vec<u64>,
    /// The manifest's entry for each base it lists (base, active, recorded header checksum).
    listed: HashMap<u64, (bool, u32)>,
    /// How far the manifest records the active segment (at this base) synced.
    active_synced: Option<(u64, SyncedEnd)>,
}

/// Walks the data directory. `clean` and `manifest` are the durable records read before.
pub fn walk(
    dir: &DataDir,
    mode: RecoveryMode,
    clean: Option<CleanRecord>,
    manifest: Option<&Manifest>,
) -> Result<Walk> {
    walk_with_progress(dir, mode, clean, manifest, &mut |_, _| {})
}

/// [`walk`], calling `progress(segments done, segments)` as it goes.
pub fn walk_with_progress(
    dir: &DataDir,
    mode: RecoveryMode,
    clean: Option<CleanRecord>,
    manifest: Option<&Manifest>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Walk> {
    let mut walker = Walker::new(mode, progress, dir, clean, true);
    walker.run(manifest)?;
    walker.log_repairs_of_open();
    Ok(walker.walk)
}

/// [`walk_with_progress`] in verify mode, given what reading each durable record gave: a
/// record that does not decode is reported (first), and the walk goes on with the other one,
/// so a damaged `CLEAN` never weakens the manifest's checks, nor a damaged `MANIFEST` the
/// clean-shutdown record's (and a manifest that is there but damaged is not also called lost).
pub fn walk_verify_records(
    dir: &DataDir,
    clean: Result<Option<CleanRecord>>,
    manifest: Result<Option<Manifest>>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Walk> {
    let mut damaged = Vec::new();
    let clean = match clean {
        Ok(clean) => clean,
        Err(Error::Corruption { file, offset, reason }) => {
            damaged.push(Finding { severity: Severity::Corruption, file, offset, reason });
            None
        }
        Err(e) => return Err(e),
    };
    let (manifest, require_manifest) = match manifest {
        Ok(manifest) => (manifest, true),
        Err(Error::Corruption { file, offset, reason }) => {
            damaged.push(Finding { severity: Severity::Corruption, file, offset, reason });
            (None, false)
        }
        Err(e) => return Err(e),
    };
    let mut walker = Walker::new(RecoveryMode::Verify, progress, dir, clean, require_manifest);
    walker.run(manifest.as_ref())?;
    let mut walk = walker.walk;
    walk.findings.splice(0..0, damaged);
    Ok(walk)
}

/// [`walk`] in verify mode of a store whose durable records are set aside (`logbook repair`,
/// which writes new ones for what it keeps).
pub fn walk_without_records(dir: &DataDir) -> Result<Walk> {
    let mut progress = |_, _| {};
    let mut walker = Walker::new(RecoveryMode::Verify, &mut progress, dir, None, false);
    walker.run(None)?;
    Ok(walker.walk)
}

/// A manifest of the segments a walk of `dir` finds, its records set aside (`None`: no segment).
/// For copies and repairs, which write a new manifest for the files they hold; any corruption
/// the walk finds is an error (a torn tail is not: open cuts it).
pub fn manifest_of_segments(dir: &DataDir) -> Result<Option<Manifest>> {
    let walk = walk_without_records(dir)?;
    if let Some(bad) = walk.findings.iter().find(|f| f.severity == Severity::Corruption) {
        return Err(Error::corruption(&bad.file, bad.offset, bad.reason.clone()));
    }
    let Some(active) = &walk.active else { return Ok(None) };
    let sealed = walk.sealed.iter().map(|s| (s.base, s.end, s.len, s.header_crc));
    Ok(Some(Manifest::of_segments(0, sealed, (active.base, active.header_crc))))
}

/// A segment file's header as read from disk.
struct FileHead {
    header: std::result::Result<SegmentHeader, String>,
    crc: u32,
    len: u64,
}

impl<'a> Walker<'a> {
    fn new(
        mode: RecoveryMode,
        progress: &'a mut dyn FnMut(usize, usize),
        dir: &'a DataDir,
        clean: Option<CleanRecord>,
        require_manifest: bool,
    ) -> Self {
        Walker {
            mode,
            progress,
            dir,
            clean,
            walk: Walk::default(),
            gaps: false,
            require_manifest,
            unlisted_newest: None,
            foreign: Vec::new(),
            listed: HashMap::new(),
            active_synced: None,
        }
    }

    fn check_frames(&self) -> bool {
        match self.mode {
            RecoveryMode::Open { check_frames } => check_frames,
            RecoveryMode::Verify => true,
        }
    }

    /// Records a finding. In open mode a corruption ends the walk with an error.
    fn found(&mut self, severity: Severity, file: &Path, offset: u64, reason: String) -> Result<()> {
        if let RecoveryMode::Open { .. } = self.mode {
            if severity == Severity::Corruption {
                return Err(Error::corruption(file, offset, format!("{reason}; {}", operator_hint(self.dir))));
            }
        }
        self.walk.findings.push(Finding { severity, file: file.to_path_buf(), offset, reason });
        Ok(())
    }

    /// Logs what an open will repair, once the walk found nothing it refuses: logged as found,
    /// "open cuts 75 bytes" was followed by a refusal that changed nothing (stop-24 review).
    fn log_repairs_of_open(&self) {
        if let RecoveryMode::Open { .. } = self.mode {
            for f in &self.walk.findings {
                tracing::warn!(file = %f.file.display(), offset = f.offset, severity = ?f.severity, reason = %f.reason, "recovery");
            }
        }
    }

    fn corrupt(&mut self, file: &Path, offset: u64, reason: String) -> Result<()> {
        self.found(Severity::Corruption, file, offset, reason)
    }

    fn run(&mut self, manifest: Option<&Manifest>) -> Result<()> {
        let listing =
            self.dir.list().map_err(|e| Error::io(format!("listing {}", self.dir.segments_dir().display()), e))?;
        for tmp in &listing.temporary {
            // An atomic write or a compaction that never finished its rename: the file it
            // would have replaced is still in place.
            self.walk.repairs.push(Repair::Remove(tmp.clone()));
        }
        let mut heads: HashMap<u64, FileHead> = HashMap::new();
        for &base in &listing.segments {
            let path = self.dir.segment_path(base);
            match segment::read_header_at(&path) {
                Ok((header, crc, len)) => {
                    heads.insert(base, FileHead { header, crc, len });
                }
                Err(e) => {
                    if let RecoveryMode::Open { .. } = self.mode {
                        return Err(Error::io(format!("reading {}", path.display()), e));
                    }
                    self.corrupt(&path, 0, format!("cannot read: {e}"))?;
                }
            }
        }
        let mut bases = self.drop_superseded(&listing.segments, &heads)?;
        match manifest {
            Some(manifest) => self.check_manifest(manifest, &bases, &heads)?,
            None if self.require_manifest => self.check_manifest_absent(&bases, &heads)?,
            None => {}
        }
        // A file from elsewhere is reported once (above) and is not walked as part of the log:
        // walked, it made the store's own active segment look sealed, and named it as damaged.
        bases.retain(|b| !self.foreign.contains(b));
        let Some((&last, mut sealed)) = bases.split_last() else {
            return self.check_empty(manifest);
        };
        // A log starts at position 1, and its first segment file keeps that base for good (a
        // compaction writes its output at its first input's base, even when it removed every
        // event). Without a manifest to list it, a first file starting later means the files
        // from the log's start are gone. (With one, the missing file is reported above.)
        if manifest.is_none() && bases[0] != 1 {
            let reason = format!(
                "missing: a log starts at position 1, but its first segment file starts at {}: the segment files \
                 before it are gone",
                bases[0]
            );
            self.corrupt(&self.dir.segment_path(1), 0, reason)?;
        }
        // The manifest says which segment is active. When the one it lists is missing (reported
        // above), the newest file left is one it lists as sealed, and is walked as sealed: walked
        // as the active one, a compressed segment was called damaged ("marked compressed") and a
        // plain one did not count as kept, so `repair` gave up or deleted whole segments.
        let last_listed_sealed = self.listed.get(&last).is_some_and(|&(active, _)| !active);
        // Without a manifest, a compressed or compacted newest file is sealed by what it is (only
        // sealed segments are compressed or compacted): the active segment after it is missing.
        let last_sealed_kind = heads
            .get(&last)
            .and_then(|h| h.header.as_ref().ok())
            .and_then(|h| match (h.compressed, h.compacted) {
                (Some(_), _) => Some("compressed"),
                (None, Some(_)) => Some("compacted"),
                (None, None) => None,
            })
            .filter(|_| manifest.is_none());
        let last_walked_sealed = last_listed_sealed || last_sealed_kind.is_some();
        if last_walked_sealed {
            sealed = &bases[..];
        }
        if let Some(recorded) = self.clean.and_then(|c| c.last) {
            if recorded.base != last {
                let reason = format!(
                    "the clean-shutdown record names the segment at position {} as the last one, but the newest \
                     segment file starts at {last}",
                    recorded.base
                );
                self.corrupt(&self.dir.segment_path(recorded.base.max(last)), 0, reason)?;
            }
        }
        let mut expected_base = None;
        for (done, &base) in sealed.iter().enumerate() {
            (self.progress)(done, bases.len());
            let Some(head) = heads.get(&base) else {
                // Its header could not be read (reported above; open failed there): its end is
                // unknown, so the next segment is not reported as a gap too.
                expected_base = None;
                self.gaps = true;
                continue;
            };
            expected_base = self.walk_sealed(base, head, expected_base)?;
            // After damage (reported; open failed there) the versions its streams reached are
            // unknown: later segments' streams only have to go higher, or every stream it held
            // would be reported again where it continues, in files that are whole.
            self.gaps |= expected_base.is_none();
            if self.walk.first_position == 0 {
                self.walk.first_position = base;
            }
        }
        (self.progress)(sealed.len(), bases.len());
        if let (Some(kind), Some(next)) = (last_sealed_kind, expected_base) {
            let reason = format!(
                "missing: the newest segment file (position {last} on) is {kind}, which only a sealed segment is, so \
                 the active segment that followed it is gone"
            );
            self.corrupt(&self.dir.segment_path(next), 0, reason)?;
        }
        if !last_walked_sealed {
            self.walk_active(last, heads.get(&last), expected_base)?;
        }
        (self.progress)(bases.len(), bases.len());
        if self.walk.first_position == 0 {
            self.walk.first_position = last;
        }
        Ok(())
    }

    /// Segments whose base lies inside an earlier compacted segment's range were inputs of a
    /// compaction that stopped before deleting them: `open` removes them, `verify` reports them.
    fn drop_superseded(&mut self, bases: &[u64], heads: &HashMap<u64, FileHead>) -> Result<Vec<u64>> {
        let Some(&last) = bases.last() else { return Ok(Vec::new()) };
        let mut covered_to = 0u64;
        let mut kept = Vec::with_capacity(bases.len());
        for &base in bases {
            if base <= covered_to && base != last {
                let path = self.dir.segment_path(base);
                let reason =
                    format!("replaced by the compacted segment covering up to position {covered_to}; open removes it");
                self.found(Severity::Leftover, &path, 0, reason)?;
                self.walk.repairs.push(Repair::Remove(path));
                self.walk.repairs.push(Repair::Remove(self.dir.index_path(base)));
                continue;
            }
            if let Some(compacted) = heads.get(&base).and_then(|h| h.header.as_ref().ok()).and_then(|h| h.compacted) {
                covered_to = compacted.end_position;
            }
            kept.push(base);
        }
        Ok(kept)
    }

    /// No segment file at all: fine for a new store, corruption when a record says otherwise.
    fn check_empty(&mut self, manifest: Option<&Manifest>) -> Result<()> {
        if let Some(first) = manifest.and_then(|m| m.entries.first()) {
            let count = manifest.map_or(0, |m| m.entries.len());
            let reason =
                format!("missing: the manifest lists {count} segment file(s) from this one on, and none exists");
            return self.corrupt(&self.dir.segment_path(first.base), 0, reason);
        }
        if let Some(clean) = self.clean.filter(|c| c.head > 0) {
            let reason = format!(
                "no segment file exists, yet the clean-shutdown record says the log holds {} events",
                clean.head
            );
            return self.corrupt(&self.dir.clean_path(), 0, reason);
        }
        Ok(())
    }

    /// Every segment the manifest lists must exist with the recorded header (and, once sealed,
    /// length); a file it does not list is foreign, except the newest one an interrupted
    /// rollover created (if it holds nothing past its header, which its walk checks), and
    /// except a compacted segment standing where its inputs are listed (a compaction
    /// interrupted between its rename and the manifest update).
    fn check_manifest(&mut self, manifest: &Manifest, bases: &[u64], heads: &HashMap<u64, FileHead>) -> Result<()> {
        self.listed = manifest.entries.iter().map(|e| (e.base, (e.active, e.header_crc))).collect();
        self.active_synced = manifest.active_synced();
        let mut covered_to = 0u64;
        for (i, entry) in manifest.entries.iter().enumerate() {
            if entry.base <= covered_to {
                continue; // an input of a compaction whose output stands at an earlier base
            }
            let path = self.dir.segment_path(entry.base);
            if bases.binary_search(&entry.base).is_ok() && !heads.contains_key(&entry.base) {
                continue; // there, but its header could not be read: reported as such
            }
            let Some(head) = bases.binary_search(&entry.base).ok().and_then(|_| heads.get(&entry.base)) else {
                let reason = if entry.active {
                    "missing: the manifest lists it as the active (last) segment".to_string()
                } else {
                    format!(
                        "missing: the manifest lists this segment (positions {}..={}, {} bytes)",
                        entry.base, entry.end, entry.len
                    )
                };
                self.corrupt(&path, 0, reason)?;
                continue;
            };
            // A header that does not decode is reported by the segment's own walk (its byte).
            if head.crc != entry.header_crc && head.header.is_ok() {
                if let Some(end) = replaced_by_compaction(head, entry, &manifest.entries[i..]) {
                    covered_to = end;
                    continue;
                }
                if replaced_by_compression(head, entry) {
                    continue; // compressed, renamed into place, the manifest not yet updated
                }
                let reason = format!(
                    "replaced: its header checksum is {:#010x}, the manifest records {:#010x}",
                    head.crc, entry.header_crc
                );
                self.corrupt(&path, 60, reason)?;
                continue;
            }
            if !entry.active && head.len != entry.len {
                let what = if head.len < entry.len { "truncated" } else { "extended" };
                let reason = format!("{what}: the file is {} bytes, the manifest records {}", head.len, entry.len);
                self.corrupt(&path, head.len.min(entry.len), reason)?;
            }
            if entry.active && head.len < entry.len {
                // Shorter than what was recorded synced in it, whether still active or sealed
                // by a rollover the manifest did not record yet (a seal only cuts zeroes).
                let reason = format!(
                    "truncated: the file is {} bytes, and the manifest records it synced up to position {} \
                     ending at byte {}: acknowledged events were lost",
                    head.len, entry.end, entry.len
                );
                self.corrupt(&path, head.len, reason)?;
            }
        }
        let listed_last = manifest.entries.last().map_or(0, |e| e.base);
        let unlisted: Vec<u64> = bases.iter().copied().filter(|b| manifest.get(*b).is_none()).collect();
        for (i, &base) in unlisted.iter().enumerate() {
            let newest = base == *bases.last().unwrap_or(&0) && base > listed_last && i + 1 == unlisted.len();
            let path = self.dir.segment_path(base);
            if newest && unlisted.len() == 1 {
                // A rollover that stopped before recording its new segment: nothing can have
                // been appended to it yet. The writer appends to a new segment only once the
                // manifest lists it (rollover: seal, create and sync the new file, write its
                // predecessor's index, then the manifest), so an unlisted file with anything
                // past its header is not ours.
                // Positions the records say the log already holds: a rollover's new segment
                // starts after all of them.
                let known_end = self.clean.map_or(0, |c| c.head).max(self.active_synced.map_or(0, |(_, s)| s.position));
                match self.first_byte_past_header(base) {
                    None if base > known_end => {
                        self.unlisted_newest = Some(base);
                        continue;
                    }
                    None => {
                        let reason = format!(
                            "not listed in the manifest, and it starts at position {base}, which the log already \
                             holds (up to {known_end} by its records): not a rollover's new segment, a segment file \
                             from elsewhere"
                        );
                        self.foreign.push(base);
                        self.corrupt(&path, 0, reason)?;
                        continue;
                    }
                    Some(at) => {
                        let reason = "not listed in the manifest, yet it holds data past its header: a rollover that \
                                      stops before the manifest lists its new segment has appended nothing to it, so \
                                      this is a segment file from elsewhere"
                            .to_string();
                        self.foreign.push(base);
                        self.corrupt(&path, at, reason)?;
                        continue;
                    }
                }
            }
            self.foreign.push(base);
            self.corrupt(&path, 0, "not listed in the manifest: a segment file from elsewhere?".to_string())?;
        }
        Ok(())
    }

    /// No manifest: only a store written before manifests existed may lack one. A version-2
    /// clean-shutdown record, or a segment whose header says its store keeps a manifest, means
    /// the manifest was lost (except a new store whose first open stopped before writing it:
    /// one segment, no frame in it).
    fn check_manifest_absent(&mut self, bases: &[u64], heads: &HashMap<u64, FileHead>) -> Result<()> {
        let path = self.dir.manifest_path();
        if self.clean.is_some_and(|c| c.last.is_some()) {
            let reason = "missing: the clean-shutdown record is one a store with a manifest writes".to_string();
            return self.corrupt(&path, 0, reason);
        }
        let flagged =
            bases.iter().find(|b| heads.get(b).is_some_and(|h| h.header.as_ref().is_ok_and(|h| h.manifested)));
        let Some(&flagged) = flagged else { return Ok(()) };
        if bases.len() == 1 && !self.holds_a_frame(flagged) {
            return Ok(());
        }
        let reason = format!(
            "missing: segment {} was written by a store that keeps a manifest, so the list of segments that must \
             exist is lost",
            segment::file_name(flagged)
        );
        self.corrupt(&path, 0, reason)
    }

    /// Where the segment file first holds a byte other than zero past its header (`None`: only
    /// zeroes there, or it cannot be read, which its walk reports).
    fn first_byte_past_header(&self, base: u64) -> Option<u64> {
        let bytes = segment::read_whole(&self.dir.segment_path(base)).ok()?;
        let header_len = SEGMENT_HEADER_BYTES.min(bytes.len());
        bytes[header_len..].iter().position(|&b| b != 0).map(|at| (header_len + at) as u64)
    }

    /// True unless the segment's first frame slot is zeroes (or unreadable).
    fn holds_a_frame(&self, base: u64) -> bool {
        let Ok(file) = File::open(self.dir.segment_path(base)) else { return false };
        crate::storage::read_exact_at(&file, SEGMENT_HEADER_BYTES as u64, crate::record::FRAME_HEADER_BYTES)
            .is_ok_and(|b| b.iter().any(|&x| x != 0))
    }

    /// Checks one sealed segment; returns where the next one must start (`None` after damage:
    /// its true end is unknown, so the next one is not reported as a gap too).
    fn walk_sealed(&mut self, base: u64, head: &FileHead, expected_base: Option<u64>) -> Result<Option<u64>> {
        let path = self.dir.segment_path(base);
        let header = match &head.header {
            Ok(header) => *header,
            Err(reason) => {
                self.corrupt(&path, 0, reason.clone())?;
                return Ok(None);
            }
        };
        if !self.check_base(&path, base, &header, expected_base)? {
            return Ok(None);
        }
        self.gaps |= header.compacted.is_some();
        if header.compressed.is_some() && !self.check_frames() {
            // Reads go through the block table: check it even where the index stands for the
            // frames (every block is checked when frames are, and by every read).
            let table = std::fs::File::open(&path).and_then(|file| segment::read_compressed_table(&file, head.len));
            if let Err(e) = table {
                let (offset, reason) = match segment::corruption_in(&e) {
                    Some(c) => (c.offset, format!("compressed segment: {}", c.reason)),
                    None => (0, format!("cannot read: {e}")),
                };
                self.corrupt(&path, offset, reason)?;
                return Ok(None);
            }
        }
        let index_path = self.dir.index_path(base);
        let index = SegmentIndex::open(&index_path).ok().filter(|index| {
            index.base_position == base
                && index.segment_len == head.len
                && index.segment_crc == head.crc
                && (index.event_count() > 0 || header.compacted.is_some())
        });
        let end_position = match index {
            // After a clean shutdown with a manifest: the index (checked against the file's
            // length and header checksum) stands for the frames.
            Some(index) if !self.check_frames() => {
                let Some(end) = self.trust_index(&path, base, header, head, index)? else { return Ok(None) };
                end
            }
            index => {
                let Some(end) = self.read_sealed(&path, base, header, head, index)? else { return Ok(None) };
                end
            }
        };
        self.walk.segments += 1;
        Ok(Some(end_position + 1))
    }

    /// Takes a sealed segment's streams from its index; returns the last position it covers.
    fn trust_index(
        &mut self,
        path: &Path,
        base: u64,
        header: SegmentHeader,
        head: &FileHead,
        index: SegmentIndex,
    ) -> Result<Option<u64>> {
        for stream in index.streams() {
            let current = self.walk.streams.version(stream.name);
            let ok = if self.gaps { stream.first_version > current } else { stream.first_version == current + 1 };
            if !ok {
                let reason = format!(
                    "stream '{}' continues at version {} after version {current}",
                    stream.name, stream.first_version
                );
                self.corrupt(path, SEGMENT_HEADER_BYTES as u64, reason)?;
                return Ok(None);
            }
            self.walk.streams.add_sealed(stream.name, base, stream.last_version);
        }
        let end = header.compacted.map_or(index.last_position(), |c| c.end_position);
        self.walk.last_position = self.walk.last_position.max(index.last_position());
        let walked = WalkedSealed { base, end, header, header_crc: head.crc, len: head.len, index: Some(index) };
        self.walk.sealed.push(walked);
        Ok(Some(end))
    }

    /// Reads every frame of a sealed segment and checks its index against them (planning a
    /// rebuild when it disagrees); returns the last position it covers.
    fn read_sealed(
        &mut self,
        path: &Path,
        base: u64,
        header: SegmentHeader,
        head: &FileHead,
        index: Option<SegmentIndex>,
    ) -> Result<Option<u64>> {
        let bytes = match segment::read_whole(path) {
            Ok(bytes) => bytes,
            Err(e) => {
                self.corrupt(path, 0, format!("cannot read: {e}"))?;
                return Ok(None);
            }
        };
        // A compressed segment is walked as the plain segment it stands for (offsets logical,
        // as its index's); damage in its table or blocks is reported at its byte in the file.
        let bytes = match header.compressed {
            None => bytes,
            Some(_) => match crate::compressed::decode_file(&bytes) {
                Ok(logical) => logical,
                Err(c) => {
                    self.corrupt(path, c.offset, format!("compressed segment: {}", c.reason))?;
                    return Ok(None);
                }
            },
        };
        let Some(scanned) = self.scan_sealed(path, &bytes, &header)? else { return Ok(None) };
        let verdict = match &index {
            None => Some(
                "index missing, stale (it describes another version of its segment) or of an older index format"
                    .to_string(),
            ),
            Some(index) => index_disagrees(index, &scanned.frames),
        };
        // verify also compares the whole index with one rebuilt from the frames: an index whose
        // checksums hold but whose entries are wrong (a writer bug) is trusted by a clean open,
        // so its reads would be wrong. (Not on open after a crash: its rebuild costs time, and
        // an open after a clean stop would not look anyway.)
        if verdict.is_none() && index.is_some() && matches!(self.mode, RecoveryMode::Verify) {
            let index_path = self.dir.index_path(base);
            let rebuilt = scanned.builder(&bytes).encode(base, head.len, head.crc);
            let stored = crate::storage::read_bounded(&index_path, crate::index::MAX_INDEX_FILE_BYTES);
            if stored.as_deref().ok() != Some(&rebuilt[..]) {
                let reason = "its entries disagree with its segment (a stream's versions or positions, an event id, \
                              or a name), though its checksums hold: reads through it are wrong; remove the file and \
                              open rebuilds it";
                self.corrupt(&index_path, 0, reason.to_string())?;
            }
        }
        let index = match verdict {
            Some(reason) => {
                self.found(
                    Severity::IndexRebuild,
                    &self.dir.index_path(base),
                    0,
                    format!("{reason}; open rebuilds it"),
                )?;
                if let RecoveryMode::Open { .. } = self.mode {
                    let builder = scanned.builder(&bytes);
                    self.walk.repairs.push(Repair::RebuildIndex {
                        base,
                        builder,
                        segment_len: head.len,
                        header_crc: head.crc,
                    });
                }
                None
            }
            None => index,
        };
        for (stream, &(_, last)) in &scanned.streams {
            self.walk.streams.add_sealed(stream, base, last);
        }
        let end = header.compacted.map_or(scanned.last_position, |c| c.end_position);
        self.walk.sealed.push(WalkedSealed { base, end, header, header_crc: head.crc, len: head.len, index });
        self.note_positions(base, &header, &scanned.frames);
        Ok(Some(end))
    }

    /// The header's base must be the file's name and follow the previous segment.
    fn check_base(&mut self, path: &Path, base: u64, header: &SegmentHeader, expected: Option<u64>) -> Result<bool> {
        if header.base_position != base {
            let reason = format!("header says base position {} but the file is named for {base}", header.base_position);
            self.corrupt(path, 16, reason)?;
            return Ok(false);
        }
        if let Some(expected) = expected.filter(|&e| e != base) {
            let reason = format!("segment starts at position {base} but the previous segment ends at {}", expected - 1);
            self.corrupt(path, 16, reason)?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Scans a sealed segment: every byte must belong to a whole batch, each stream's versions
    /// must continue. `None` when it is damaged (already reported).
    fn scan_sealed(&mut self, path: &Path, bytes: &[u8], header: &SegmentHeader) -> Result<Option<Scanned>> {
        let mut scanned = Scanned { compacted: header.compacted.is_some(), ..Scanned::default() };
        let mut broken: Option<(u64, String)> = None;
        let gaps = self.gaps;
        let streams = &self.walk.streams;
        let outcome = segment::scan_with(bytes, Positions::of(header), |frame, offset| {
            if broken.is_none() {
                if let Err(reason) = scanned.add(streams, gaps, frame, offset) {
                    broken = Some((offset, reason));
                }
            }
        });
        self.walk.events += outcome.frames;
        self.walk.last_position = self.walk.last_position.max(outcome.last_position);
        if let Some((offset, reason)) = broken {
            self.corrupt(path, offset, reason)?;
            return Ok(None);
        }
        if let Some(stop) = outcome.stop {
            self.corrupt(path, stop.offset, format!("sealed segment: {}", stop.reason))?;
            return Ok(None);
        }
        // Only a compaction may leave a sealed segment empty (every event in its range removed).
        if outcome.frames == 0 && header.compacted.is_none() {
            self.corrupt(path, SEGMENT_HEADER_BYTES as u64, "sealed segment holds no frames".to_string())?;
            return Ok(None);
        }
        scanned.last_position = outcome.last_position;
        self.walk.last_position = self.walk.last_position.max(outcome.last_position);
        Ok(Some(scanned))
    }

    fn note_positions(&mut self, base: u64, header: &SegmentHeader, frames: &[(u64, u64)]) {
        if self.mode != RecoveryMode::Verify {
            return;
        }
        if header.compacted.is_some() {
            self.walk.hot.sparse.extend(frames.iter().map(|(position, _)| *position));
        } else if let Some(&(last, _)) = frames.last() {
            self.walk.hot.ranges.push((base, last));
        }
    }

    /// The last segment: header, frames, and the tail per the recovery table; after a clean
    /// shutdown it must end exactly where the clean-shutdown record says.
    fn walk_active(&mut self, base: u64, head: Option<&FileHead>, expected_base: Option<u64>) -> Result<()> {
        let path = self.dir.segment_path(base);
        let Some(head) = head else { return Ok(()) };
        let bytes = match segment::read_whole(&path) {
            Ok(bytes) => bytes,
            Err(e) => {
                if let RecoveryMode::Open { .. } = self.mode {
                    return Err(Error::io(format!("reading {}", path.display()), e));
                }
                return self.corrupt(&path, 0, format!("cannot read: {e}"));
            }
        };
        let header = match &head.header {
            Ok(header) => *header,
            Err(reason) => {
                // A crash while creating the segment can leave a header that never reached the
                // disk. Base 0 is never a real segment (positions start at 1). Not a segment the
                // manifest lists with its header's checksum: the manifest names an active segment
                // only after its header was synced (at rollover, at open), so that one lost
                // acknowledged events. (A checksum of 0 is what a copy or a repair records for a
                // last segment it found unwritten; open then creates it again.)
                let unwritten = bytes.iter().all(|&b| b == 0);
                let listed = self.listed.get(&base).copied();
                if unwritten && listed.is_some_and(|(active, crc)| !active || crc != 0) {
                    let what = match bytes.len() {
                        0 => "empty".to_string(),
                        len => format!("all zeroes ({len} bytes)"),
                    };
                    let reason = format!(
                        "{what}: the manifest lists it, and lists a segment only after its header was synced, so \
                         its header and any events after it were lost"
                    );
                    return self.corrupt(&path, 0, reason);
                }
                if unwritten && base >= 1 && expected_base.is_none_or(|e| e == base) && self.clean.is_none() {
                    let reason = "the last segment's header never reached the disk; open creates it again".to_string();
                    self.found(Severity::RepairableTail, &path, 0, reason)?;
                    self.walk.repairs.push(Repair::RecreateActive { base });
                    self.walk.segments += 1;
                    self.walk.active = Some(WalkedActive {
                        base,
                        valid_len: SEGMENT_HEADER_BYTES as u64,
                        index: ActiveIndex::new(base),
                        last_frame_crc: 0,
                        header_crc: 0,
                        file_len: head.len,
                    });
                    self.walk.last_position = self.walk.last_position.max(base - 1);
                    return Ok(());
                }
                return self.corrupt(&path, 0, reason.clone());
            }
        };
        if header.compacted.is_some() {
            // Compaction only rewrites sealed segments; the newest file is always the log's own.
            return self.corrupt(&path, 32, "the last segment is marked compacted".to_string());
        }
        if header.compressed.is_some() {
            // Only sealed segments are compressed; the newest file is always the log's own.
            return self.corrupt(&path, 32, "the last segment is marked compressed".to_string());
        }
        if !self.check_base(&path, base, &header, expected_base)? {
            return Ok(());
        }
        self.walk.segments += 1;
        let mut index = ActiveIndex::new(base);
        let mut broken: Option<(u64, String)> = None;
        let mut last_frame_at = None;
        let gaps = self.gaps;
        let streams = &mut self.walk.streams;
        let outcome = segment::scan(&bytes, base, |frame, offset| {
            if broken.is_some() {
                return;
            }
            // Only a stream's first event here may follow a gap compaction left before it.
            let gap = gaps && !index.streams.contains_key(frame.stream);
            let current = streams.version(frame.stream);
            let ok = if gap { frame.version > current } else { frame.version == current + 1 };
            if !ok {
                broken = Some((
                    offset,
                    format!("stream '{}' continues at version {} after version {current}", frame.stream, frame.version),
                ));
                return;
            }
            streams.set_version(frame.stream, frame.version);
            index.add(&IndexedEvent::of(frame, offset));
            last_frame_at = Some(offset);
        });
        self.walk.events += outcome.frames;
        self.walk.last_position = self.walk.last_position.max(outcome.last_position);
        if let Some((offset, reason)) = broken {
            return self.corrupt(&path, offset, reason);
        }
        let mut valid_len = outcome.valid_len;
        match segment::judge_tail(&bytes, &outcome) {
            TailVerdict::Clean => {}
            TailVerdict::Corrupt { offset, reason } => {
                self.corrupt(&path, offset, reason)?;
                valid_len = offset;
            }
            TailVerdict::Repairable { offset, reason } if self.clean.is_some() => {
                let reason = format!("after a clean shutdown there is no torn tail, yet the log ends here: {reason}");
                self.corrupt(&path, offset, reason)?;
            }
            TailVerdict::Repairable { offset, reason } => {
                let dropped = bytes[valid_len as usize..].iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                let reason = format!("torn tail ({reason}); open cuts {dropped} bytes back to byte {valid_len}");
                self.found(Severity::RepairableTail, &path, offset, reason)?;
                self.walk.repairs.push(Repair::TruncateTail { base, valid_len });
            }
        }
        let last_frame_crc = last_frame_at.map_or(0, |at| crate::record::stored_crc(&bytes[at as usize..]));
        let head_position = if index.offsets.is_empty() { base - 1 } else { index.last_position() };
        self.walk.last_position = self.walk.last_position.max(head_position);
        if let Some(clean) = self.clean {
            self.check_clean_end(&path, &clean, base, valid_len, last_frame_crc, head_position)?;
        } else if let Some((_, synced)) = self.active_synced.filter(|(at, _)| *at == base) {
            // After a crash, only what was written since the last sync can be missing: the
            // writer recorded that everything up to `synced` had reached the disk.
            if valid_len < synced.len || head_position < synced.position {
                let reason = format!(
                    "the log ends at position {head_position} (byte {valid_len}), but the manifest records this \
                     segment synced up to position {} (byte {}): acknowledged events were lost, which a crash \
                     cannot do",
                    synced.position, synced.len
                );
                return self.corrupt(&path, valid_len, reason);
            }
        }
        if self.mode == RecoveryMode::Verify && !index.offsets.is_empty() {
            self.walk.hot.ranges.push((base, head_position));
        }
        self.walk.active =
            Some(WalkedActive { base, valid_len, index, last_frame_crc, header_crc: head.crc, file_len: head.len });
        Ok(())
    }

    /// After a clean shutdown the log must end exactly as the record says.
    fn check_clean_end(
        &mut self,
        path: &Path,
        clean: &CleanRecord,
        base: u64,
        valid_len: u64,
        last_frame_crc: u32,
        head: u64,
    ) -> Result<()> {
        if let Some(last) = clean.last.filter(|l| l.base == base) {
            if valid_len != last.written_len {
                let reason = format!(
                    "the log ends at byte {valid_len}, the clean-shutdown record says byte {}",
                    last.written_len
                );
                return self.corrupt(path, valid_len.min(last.written_len), reason);
            }
            if last_frame_crc != last.last_frame_crc {
                let reason = format!(
                    "the last frame's checksum is {last_frame_crc:#010x}, the clean-shutdown record says {:#010x}: \
                     it was replaced",
                    last.last_frame_crc
                );
                return self.corrupt(path, valid_len, reason);
            }
        }
        if head != clean.head {
            let reason = format!("the log ends at position {head}, the clean-shutdown record says {}", clean.head);
            return self.corrupt(path, valid_len, reason);
        }
        Ok(())
    }
}

/// A compacted segment standing where the manifest lists the segments it replaced: its range
/// must end exactly where one of the listed entries from `entries[0]` on ends. Returns that end.
fn replaced_by_compaction(head: &FileHead, first: &ManifestEntry, entries: &[ManifestEntry]) -> Option<u64> {
    let compacted = head.header.as_ref().ok()?.compacted?;
    if first.active {
        return None;
    }
    entries.iter().take_while(|e| !e.active).find(|e| e.end == compacted.end_position).map(|e| e.end)
}

/// A compressed segment standing where the manifest lists the plain sealed segment it was
/// made from (its header names that file's checksum and length).
fn replaced_by_compression(head: &FileHead, entry: &ManifestEntry) -> bool {
    let Some(from) = head.header.as_ref().ok().and_then(|h| h.compressed) else { return false };
    !entry.active && from.source_crc == entry.header_crc && u64::from(from.source_len) == entry.len
}

/// Why an index disagrees with the frames of its segment, if it does.
fn index_disagrees(index: &SegmentIndex, frames: &[(u64, u64)]) -> Option<String> {
    if index.event_count() != frames.len() {
        return Some(format!("index lists {} events, its segment holds {}", index.event_count(), frames.len()));
    }
    frames
        .iter()
        .find(|(position, offset)| index.offset_of(*position).map(u64::from) != Some(*offset))
        .map(|(position, offset)| format!("index does not point at position {position}, which is at byte {offset}"))
}

/// What a scan of a sealed segment collected.
#[derive(Default)]
struct Scanned {
    /// (position, offset) of every frame.
    frames: Vec<(u64, u64)>,
    /// Each stream's (first, last) version in this segment.
    streams: HashMap<String, (u64, u64)>,
    last_position: u64,
    /// The segment is compacted: versions inside it may skip.
    compacted: bool,
}

impl Scanned {
    /// Adds a frame, checking its stream's version continues (from the directory for the
    /// stream's first event here, else from the previous one here).
    fn add(
        &mut self,
        directory: &StreamDirectory,
        gaps: bool,
        frame: &FrameRef<'_>,
        offset: u64,
    ) -> Result<(), String> {
        let (last, within) = match self.streams.get(frame.stream) {
            Some(&(_, last)) => (last, true),
            None => (directory.version(frame.stream), false),
        };
        // Inside a compacted segment, and for a stream's first event after one, versions only
        // have to increase (compaction removed the ones between).
        let may_skip = if within { self.compacted } else { gaps };
        let ok = if may_skip { frame.version > last } else { last.checked_add(1) == Some(frame.version) };
        if !ok {
            return Err(format!(
                "stream '{}' has version {} after version {last} (versions must be contiguous{})",
                frame.stream,
                frame.version,
                if gaps { " or, after a compaction, increasing" } else { "" }
            ));
        }
        match self.streams.get_mut(frame.stream) {
            Some(entry) => entry.1 = frame.version,
            None => {
                self.streams.insert(frame.stream.to_string(), (frame.version, frame.version));
            }
        }
        self.frames.push((frame.position, offset));
        Ok(())
    }

    /// The index of these frames, decoded again from `bytes`.
    fn builder(&self, bytes: &[u8]) -> IndexBuilder {
        let mut builder = IndexBuilder::default();
        for &(_, offset) in &self.frames {
            if let Ok((frame, _)) = crate::record::decode(&bytes[offset as usize..]) {
                builder.add(&IndexedEvent::of(&frame, offset));
            }
        }
        builder
    }
}

/// What recovery found and built.
pub struct Recovered {
    pub shared: Arc<Shared>,
    pub writer: SegmentWriter,
    /// Stored checksum of the last frame of the active segment (0: none).
    pub last_frame_crc: u32,
    pub lock: crate::datadir::StoreLock,
}

/// Opens (and, when the options allow, creates) the store in `dir`: takes the LOCK, walks the
/// directory against its durable records, applies the repairs the walk planned, and records
/// the segments it found in a fresh manifest.
pub fn recover(dir: &Path, options: &Options) -> Result<Recovered> {
    let existing = holds_store(dir);
    if !options.create_if_missing && !existing {
        return Err(Error::NoStore(dir.to_path_buf()));
    }
    let data = DataDir::new(dir);
    let fsys = options.fs.as_ref();
    // A cold tier with no hot tier beside it: the store's MANIFEST, CLEAN and segments are
    // gone, not a new store to start at position 1 (its positions would collide with the
    // archived ones).
    let archive_manifest = data.archive_dir().join(crate::datadir::ARCHIVE_MANIFEST_FILE);
    if !existing && archive_manifest.is_file() {
        let reason = "the cold tier (archive/) is here, but the store's MANIFEST, CLEAN and segments are not: \
                      the hot tier was lost or moved, and this is not taken for a new, empty store; restore it \
                      from a backup";
        return Err(Error::corruption(archive_manifest, 0, reason));
    }
    // An existing store is only locked: a refused open must change nothing (not even bring
    // back a `segments/` that was deleted).
    let mut lock = if existing { data.lock()? } else { data.create_and_lock(fsys)? };
    // A record that does not decode refuses the open, saying what the operator can do.
    let with_hint = |e: Error| match e {
        Error::Corruption { file, offset, reason } => {
            Error::corruption(file, offset, format!("{reason}; {}", operator_hint(&data)))
        }
        e => e,
    };
    let clean = data.read_clean().map_err(with_hint)?;
    let manifest = data.read_manifest().map_err(with_hint)?;
    // Sealed segments are trusted (read through their indexes) only after a clean shutdown
    // of a store that has a manifest; a store without one is fully verified, then gets one.
    let check_frames = clean.is_none() || manifest.is_none() || options.verify_on_open == VerifyOnOpen::Always;
    let walk = walk(&data, RecoveryMode::Open { check_frames }, clean, manifest.as_ref())?;
    // The walk passed: the first change to the directory is `LOCK`, if it is missing.
    lock.complete()?;
    // From here on a crash must be seen as a crash.
    if clean.is_some() {
        data.remove_clean(fsys)?;
    }
    let mut rebuilt: HashMap<u64, SegmentIndex> = HashMap::new();
    let (mut recreate, mut truncate) = (None, None);
    for repair in walk.repairs {
        match repair {
            Repair::Remove(path) => match fsys.remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("removing {}", path.display()), e)),
            },
            Repair::RebuildIndex { base, builder, segment_len, header_crc } => {
                let path = data.index_path(base);
                let bytes = builder.encode(base, segment_len, header_crc);
                crate::storage::write_atomically(fsys, &path, &bytes)?;
                let index = SegmentIndex::open(&path).map_err(|reason| Error::corruption(&path, 0, reason))?;
                rebuilt.insert(base, index);
            }
            Repair::RecreateActive { base } => recreate = Some(base),
            Repair::TruncateTail { base, valid_len } => truncate = Some((base, valid_len)),
        }
    }
    // A previous run may have created files and crashed before syncing their directory entry:
    // make every entry durable before anything written to those files is acknowledged.
    fsys.sync_dir(data.segments_dir()).map_err(|e| Error::io("syncing the segments directory", e))?;
    fsys.sync_dir(data.root()).map_err(|e| Error::io("syncing the data directory", e))?;
    let cache = Arc::new(BlockCache::new(options.read_cache_bytes));
    let mut sealed = Vec::with_capacity(walk.sealed.len());
    for segment in walk.sealed {
        let path = data.segment_path(segment.base);
        let index = match segment.index.or_else(|| rebuilt.remove(&segment.base)) {
            Some(index) => index,
            None => return Err(Error::corruption(data.index_path(segment.base), 0, "index was not rebuilt")),
        };
        let reader = SegmentReader::open(&path, segment.base, segment.len, &cache).map_err(|e| match segment::corruption_in(&e) {
            Some(c) => Error::corruption(&path, c.offset, format!("compressed segment: {}", c.reason)),
            None => Error::io(format!("opening {}", path.display()), e),
        })?;
        sealed.push(Arc::new(SealedSegment {
            header: segment.header,
            reader: Arc::new(reader),
            index,
            len: segment.len,
            header_crc: segment.header_crc,
        }));
    }
    let now = options.clock.now_us();
    let mut synced = None;
    let (writer, index, last_frame_crc) = match walk.active {
        Some(active) if recreate == Some(active.base) => {
            let path = data.segment_path(active.base);
            fsys.remove_file(&path).map_err(|e| Error::io("removing an unwritten segment", e))?;
            let writer = SegmentWriter::create(fsys, data.segments_dir(), active.base, options.segment_bytes, now)
                .map_err(|e| Error::io("recreating the last segment", e))?;
            (writer, ActiveIndex::new(active.base), 0)
        }
        Some(active) => {
            let path = data.segment_path(active.base);
            if let Some((base, valid_len)) = truncate {
                assert_eq!((base, valid_len), (active.base, active.valid_len), "only the last segment's tail is cut");
            }
            let capacity = options.segment_bytes.max(active.file_len);
            let writer = SegmentWriter::reopen(fsys, &path, active.base, active.valid_len, capacity)
                .map_err(|e| Error::io(format!("repairing the tail of {}", path.display()), e))?;
            if !active.index.offsets.is_empty() {
                // What a crash left in the page cache is not durable until synced; once it is,
                // the manifest written below records the segment's whole length as synced.
                writer.sync().map_err(|e| Error::io(format!("syncing {}", path.display()), e))?;
                synced = Some(SyncedEnd { position: active.index.last_position(), len: active.valid_len });
            }
            (writer, active.index, active.last_frame_crc)
        }
        None => {
            let writer = SegmentWriter::create(fsys, data.segments_dir(), 1, options.segment_bytes, now)
                .map_err(|e| Error::io("creating the first segment", e))?;
            (writer, ActiveIndex::new(1), 0)
        }
    };
    let path = writer.path().to_path_buf();
    let (_, header_crc, _) =
        segment::read_header_at(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let reader = SegmentReader::open(&path, writer.base_position(), writer.write_offset(), &cache)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let head = if index.offsets.is_empty() { writer.base_position() - 1 } else { index.last_position() };
    let mut state = LogState {
        sealed,
        active: ActiveSegment { reader: Arc::new(reader), index, header_crc, synced },
        streams: walk.streams,
        tombstones: Arc::default(),
    };
    state.tombstones = Arc::new(load_tombstones(&state)?);
    for deleted in state.tombstones.iter() {
        state.streams.unlist(deleted);
    }
    let generation = manifest.map_or(0, |m| m.generation);
    let shared = Arc::new(Shared {
        dir: data,
        manifest_lock: Mutex::new(generation),
        state: RwLock::new(state),
        head: AtomicU64::new(head),
        head_lock: Mutex::new(()),
        head_changed: Condvar::new(),
        closed: AtomicBool::new(false),
        stats: Stats::default(),
        cache,
        archived_events: Default::default(),
        writer_failure: std::sync::OnceLock::new(),
    });
    // Record what was found (and repaired): from now on a missing or replaced file is noticed.
    shared.update_and_record(fsys, |_| Ok(()))?;
    Ok(Recovered { shared, writer, last_frame_crc, lock })
}
