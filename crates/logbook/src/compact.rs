//! Compaction: rewrites sealed segments without the events retention and tombstones remove,
//! merges small adjacent sealed segments, and moves expired events to the cold tier first.
//!
//! Every surviving event keeps its position, version, time, id, stream, type, metadata and data:
//! readers see gaps in positions (and in a stream's versions), never reordering. The active
//! segment is never touched, and the newest event of every live stream is kept, so appends and
//! expected versions are unaffected.
//!
//! One *unit* (a run of adjacent sealed segments, rewritten into one file named for the first)
//! at a time, each step durable before the next:
//!
//! 1. Expired events go to the cold tier as a **pending** job tagged with the unit's base,
//!    through an [`ArchiveSink`] (the logbook-archive crate writes Parquet files, then its
//!    manifest: written, synced, renamed, directory synced). The store's registered
//!    [`ArchivedEvents`](crate::ArchivedEvents) is told their ids first, so idempotent appends
//!    find them once step 4 takes them out of the hot tier.
//! 2. The new segment (a compacted header carrying the job id and the range it covers) and its
//!    index are written to `.tmp` files and synced.
//! 3. Both are renamed over the first input's files; the directory is synced. This rename is the
//!    commit point of the hot tier.
//! 4. Readers switch to the new segment under the state lock. Readers holding the old one keep
//!    its open file until they drop it (an unlinked file stays readable while open).
//! 5. The other inputs are deleted; the directory is synced.
//! 6. The archive job is marked committed (through the sink).
//!
//! Resolving pending jobs belongs to the archive crate, which does it when it opens a store and
//! before it compacts. This crate alone ([`compact`], no sink) refuses to run while the cold
//! tier holds a pending job, and refuses a policy that would archive expired events.
//!
//! A crash anywhere leaves either the old or the new unit, never both and never neither:
//! before step 3 recovery deletes the `.tmp` files and the old files are intact; after it,
//! recovery deletes the inputs the new segment's range covers (step 5 redone). A pending archive
//! job is committed by `open` when the segment at its base carries its job id, and rolled back
//! (manifest entry, then files) when it does not, so an event is hot or archived, never both
//! and never neither. A compaction that fails with an I/O error leaves the files in one of those
//! states and refuses to run again until the store is reopened (which resolves them).

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::datadir::{DataDir, SEGMENTS_DIR};
use crate::error::{Error, Result};
use crate::index::{self, IndexBuilder, IndexedEvent, SegmentIndex};
use crate::record::{self, FrameRef};
use crate::retention::{Decision, EventFacts, RetentionPolicy};
use crate::segment::{self, Compacted, Positions, SegmentHeader, SegmentReader};
use crate::storage::FileSystem;
use crate::store::Store;
use crate::types::{category_of, Filter, RecordedEvent};
use crate::wal::{self, SealedSegment};

/// Where compaction sends the events retention expires, when the policy archives them. The
/// logbook-archive crate implements it (Parquet files under `<data>/archive`).
pub trait ArchiveSink {
    /// Commits or rolls back the jobs an interrupted compaction left pending (see
    /// [`committed_job_of`]). Called under the compaction guard, before planning: never while
    /// another compaction runs, nor after one failed (its store must be reopened first). The
    /// sink may also bring its files up to date here (logbook-archive rewrites files of its
    /// first layout), since nothing else writes to it meanwhile.
    fn resolve_pending_jobs(&mut self, segments_dir: &Path) -> Result<()>;
    /// Durably writes `events` (expired from the unit whose first segment starts at
    /// `segment_base`) as a pending job, invisible to readers until committed. Returns the job
    /// id (never 0) and the number of files written.
    fn write_pending_job(&mut self, segment_base: u64, events: Vec<RecordedEvent>) -> Result<(u64, usize)>;
    /// Makes job `job` visible: the rewritten hot segment no longer holds its events.
    fn commit_job(&mut self, job: u64) -> Result<()>;
}

/// What one compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CompactReport {
    /// Sealed segments before the compaction.
    pub segments_before: usize,
    /// Sealed segments after the compaction.
    pub segments_after: usize,
    /// Units (runs of adjacent sealed segments) rewritten.
    pub rewritten: usize,
    /// Input segments the rewritten units replaced.
    pub inputs: usize,
    /// Events removed by a retention rule (archived first when the policy archives).
    pub expired: u64,
    /// Events removed because their stream is deleted.
    pub purged: u64,
    /// Events a rule or tombstone would remove that a legal hold kept.
    pub held: u64,
    /// Events written to the archive (the cold tier).
    pub archived: u64,
    /// Archive (Parquet) files written to hold the archived events.
    pub archive_files: usize,
    /// Bytes of the sealed segments rewritten, before the compaction.
    pub bytes_before: u64,
    /// Bytes of the segments that replaced them.
    pub bytes_after: u64,
}

/// The decisions for one sealed segment.
struct SegmentPlan {
    segment: Arc<SealedSegment>,
    /// One per frame, in position order.
    decisions: Vec<Decision>,
    /// Encoded bytes of the frames that stay.
    survivor_bytes: u64,
    removes: bool,
}

/// Compacts `store` under `policy` as of `now_us` (pass the store's clock for real runs),
/// without a cold tier: refused while the cold tier holds a pending job, and refused before
/// anything is written when an expired event would have to be archived (use
/// `logbook_archive::compact`, or a policy with `archive = false`).
/// `progress(done, total)` is called with segments planned and units written.
pub fn compact(store: &Store, policy: &RetentionPolicy, now_us: i64, progress: impl FnMut(u64, u64)) -> Result<CompactReport> {
    if DataDir::new(store.dir()).archive_has_pending_jobs()? {
        return Err(Error::InvalidInput(
            "the cold tier holds a job an interrupted compaction left pending; open the store through \
             logbook-archive (as the logbook binary does) to resolve it before compacting"
                .into(),
        ));
    }
    guarded(store, policy, now_us, None, progress)
}

/// Compacts `store` under `policy` as of `now_us`, sending expired events to `archive` when the
/// policy archives them (its pending jobs are resolved first, under the compaction guard).
pub fn compact_with_archive(
    store: &Store,
    policy: &RetentionPolicy,
    now_us: i64,
    archive: &mut dyn ArchiveSink,
    progress: impl FnMut(u64, u64),
) -> Result<CompactReport> {
    guarded(store, policy, now_us, Some(archive), progress)
}

/// Runs `work`, a change to the cold tier alone (e.g. logbook-archive rewriting files of its
/// first layout on demand), under the compaction guard: it waits for a running compaction, and
/// is refused after one failed (the store must be reopened first, which resolves its files).
/// The hot tier is not touched, so a failure of `work` does not poison the guard.
pub fn with_compaction_guard<T>(store: &Store, work: impl FnOnce() -> Result<T>) -> Result<T> {
    let _guard = store.compaction_guard()?;
    work()
}

fn guarded(
    store: &Store,
    policy: &RetentionPolicy,
    now_us: i64,
    archive: Option<&mut dyn ArchiveSink>,
    mut progress: impl FnMut(u64, u64),
) -> Result<CompactReport> {
    policy.validate()?;
    let guard = store.compaction_guard()?;
    let mut wrote = false;
    let result = run(store, policy, now_us, archive, &mut progress, &mut wrote);
    if result.is_err() && wrote {
        // Files are in a state recovery resolves; the in-memory view may not match them. (A
        // refusal before the first write leaves nothing to resolve: the store compacts again.)
        guard.poison();
    }
    result
}

fn run(
    store: &Store,
    policy: &RetentionPolicy,
    now_us: i64,
    mut archive: Option<&mut dyn ArchiveSink>,
    progress: &mut impl FnMut(u64, u64),
    wrote: &mut bool,
) -> Result<CompactReport> {
    let fs = Arc::clone(&store.options().fs);
    let segments_dir = store.dir().join(SEGMENTS_DIR);
    if let Some(archive) = archive.as_deref_mut() {
        *wrote = true;
        archive.resolve_pending_jobs(&segments_dir)?;
    }
    let shared = store.shared();
    let (sealed, tombstones, head) = {
        let state = shared.state.read();
        (state.sealed.clone(), Arc::clone(&state.tombstones), shared.head())
    };
    let mut report = CompactReport { segments_before: sealed.len(), ..Default::default() };
    let facts = StreamFacts::gather(store, policy, &sealed, head)?;
    let mut seen: HashMap<(Box<str>, usize), u64> = HashMap::new();
    let mut plans = Vec::with_capacity(sealed.len());
    let total = sealed.len() as u64 * 2;
    for (i, segment) in sealed.iter().enumerate() {
        plans.push(plan_segment(segment, policy, now_us, &tombstones, &facts, &mut seen, &mut report)?);
        progress(i as u64 + 1, total);
    }
    let expiring = plans.iter().flat_map(|p| &p.decisions).filter(|d| matches!(d, Decision::Expire)).count();
    if expiring > 0 && policy.archive && archive.is_none() {
        return Err(Error::InvalidInput(format!(
            "{expiring} events expire and the policy archives them, but no cold tier was given: compact \
             through logbook-archive, or set archive = false to delete them"
        )));
    }
    let target = store.options().segment_bytes;
    let units = group_units(&plans, target);
    let mut done = sealed.len() as u64;
    for unit in units {
        let planned = &plans[unit.clone()];
        done += planned.len() as u64;
        if planned.len() == 1 && !planned[0].removes {
            progress(done, total);
            continue;
        }
        *wrote = true;
        rewrite_unit(store, fs.as_ref(), &segments_dir, &mut archive, policy, planned, &mut report)?;
        progress(done, total);
    }
    report.segments_after = shared.state.read().sealed.len();
    Ok(report)
}

/// What compaction needs to know about every stream before it decides: its newest version,
/// and how many events of it each counting rule matches.
#[derive(Default)]
struct StreamFacts {
    newest: HashMap<Box<str>, u64>,
    matching: HashMap<(Box<str>, usize), u64>,
}

impl StreamFacts {
    fn gather(store: &Store, policy: &RetentionPolicy, sealed: &[Arc<SealedSegment>], head: u64) -> Result<Self> {
        let mut facts = StreamFacts::default();
        let counts = policy.counts();
        let mut note = |stream: &str, event_type: &str, version: u64| {
            match facts.newest.get_mut(stream) {
                Some(newest) => *newest = (*newest).max(version),
                None => {
                    facts.newest.insert(stream.into(), version);
                }
            }
            if counts {
                if let Some(rule) = policy.rule_for(category_of(stream), event_type) {
                    *facts.matching.entry((stream.into(), rule)).or_insert(0) += 1;
                }
            }
        };
        for segment in sealed {
            scan_sealed(segment, |_, frame, _| note(frame.stream, frame.event_type, frame.version))?;
        }
        // The rest of the log up to the head seen at the start: the active segment, and any
        // segment sealed since (only newer events, which can only make ours older).
        let from = sealed.last().map_or(1, |s| s.end_position() + 1);
        for event in store.scan_all(from, Filter::all()) {
            let event = event?;
            if event.position() > head {
                break;
            }
            note(event.stream(), event.event_type(), event.version());
        }
        Ok(facts)
    }
}

fn plan_segment(
    segment: &Arc<SealedSegment>,
    policy: &RetentionPolicy,
    now_us: i64,
    tombstones: &HashSet<Box<str>>,
    facts: &StreamFacts,
    seen: &mut HashMap<(Box<str>, usize), u64>,
    report: &mut CompactReport,
) -> Result<SegmentPlan> {
    let mut plan = SegmentPlan {
        segment: Arc::clone(segment),
        decisions: Vec::with_capacity(segment.index.event_count()),
        survivor_bytes: 0,
        removes: false,
    };
    scan_sealed(segment, |_, frame, _| {
        let rule = policy.rule_for(category_of(frame.stream), frame.event_type);
        let mut newer_matching = 0;
        if let Some(rule) = rule.filter(|&r| policy.rules[r].max_count.is_some()) {
            let key = (Box::<str>::from(frame.stream), rule);
            let total = facts.matching.get(&key).copied().unwrap_or(0);
            let count = seen.entry(key).or_insert(0);
            *count += 1;
            newer_matching = total.saturating_sub(*count);
        }
        let decision = policy.decide(
            &EventFacts {
                stream: frame.stream,
                event_type: frame.event_type,
                timestamp_us: frame.timestamp_us,
                deleted: tombstones.contains(frame.stream),
                newest: facts.newest.get(frame.stream) == Some(&frame.version),
                rule,
                newer_matching,
            },
            now_us,
        );
        match decision {
            Decision::Keep | Decision::Held => {
                plan.survivor_bytes += record::encoded_len(
                    frame.stream.len(),
                    frame.event_type.len(),
                    frame.metadata.len(),
                    frame.data.len(),
                ) as u64;
                if decision == Decision::Held {
                    report.held += 1;
                }
            }
            Decision::Expire | Decision::Purge => plan.removes = true,
        }
        plan.decisions.push(decision);
    })?;
    Ok(plan)
}

/// Groups adjacent segments into units: a segment whose survivors fit beside the unit's within
/// `target` bytes joins it, so small neighbours merge and full segments stay alone.
fn group_units(plans: &[SegmentPlan], target: u64) -> Vec<std::ops::Range<usize>> {
    let mut units = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, plan) in plans.iter().enumerate() {
        if i > start && bytes + plan.survivor_bytes > target {
            units.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += plan.survivor_bytes;
    }
    if start < plans.len() {
        units.push(start..plans.len());
    }
    units
}

#[allow(clippy::too_many_arguments)]
fn rewrite_unit(
    store: &Store,
    fs: &dyn FileSystem,
    segments_dir: &Path,
    archive: &mut Option<&mut dyn ArchiveSink>,
    policy: &RetentionPolicy,
    unit: &[SegmentPlan],
    report: &mut CompactReport,
) -> Result<()> {
    let base = unit[0].segment.base_position();
    let end_position = unit[unit.len() - 1].segment.end_position();
    // 1. Expired events to the cold tier, durably, as a pending job.
    let mut expired = Vec::new();
    for plan in unit {
        let mut i = 0;
        scan_sealed(&plan.segment, |bytes, frame, offset| {
            match plan.decisions[i] {
                Decision::Expire => {
                    report.expired += 1;
                    if policy.archive {
                        expired.push(wal::event_from_frame(bytes, offset as usize, frame));
                    }
                }
                Decision::Purge => report.purged += 1,
                Decision::Keep | Decision::Held => {}
            }
            i += 1;
        })?;
    }
    let job = match archive.as_deref_mut() {
        Some(archive) if !expired.is_empty() => {
            report.archived += expired.len() as u64;
            // Idempotent appends must find these ids from the moment the hot segment stops
            // holding them (step 4): told before the job is written, so in time whatever
            // happens after (ids of a job that fails are then looked up in vain, harmlessly).
            if let Some(source) = store.shared().archived_events.get() {
                source.archiving(&expired);
            }
            let (job, files) = archive.write_pending_job(base, expired)?;
            assert_ne!(job, 0, "job 0 means \"no job\" in a compacted segment header");
            report.archive_files += files;
            job
        }
        _ => {
            // Checked before the first rewrite: nothing to archive, or no archiving.
            assert!(expired.is_empty(), "expired events to archive without a cold tier");
            0
        }
    };
    // 2. The new segment and its index, synced under temporary names.
    let header = SegmentHeader {
        base_position: base,
        created_us: store.options().clock.now_us(),
        compacted: Some(Compacted { end_position, job }),
        manifested: true,
        compressed: None,
        // Sealed: no tail to judge, so no sync marks (its frames are written without them).
        sync_marks: false,
    };
    let (bytes, builder) = encode_survivors(&header, unit)?;
    let header_crc = u32::from_le_bytes([bytes[60], bytes[61], bytes[62], bytes[63]]);
    let index_bytes = builder.encode(base, bytes.len() as u64, header_crc);
    let inputs: Vec<u64> = unit.iter().map(|p| p.segment.base_position()).collect();
    // 2–4. The replacement in place of the first input, recorded in the manifest before the
    // other inputs go, so a crash in between leaves files the manifest explains (recovery
    // removes inputs a compacted segment covers).
    let files = Rewritten { tmp_tag: "compacting", segment: &bytes, index: &index_bytes, header, header_crc };
    let replacement = install_sealed(store, fs, segments_dir, &inputs, files)?;
    // 5. The other inputs go.
    for &input in &inputs[1..] {
        for path in [segments_dir.join(segment::file_name(input)), segments_dir.join(index::file_name(input))] {
            fs.remove_file(&path).map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
        }
    }
    fs.sync_dir(segments_dir).map_err(|e| Error::io("syncing the segments directory", e))?;
    // 6. The archive job is final.
    if let Some(archive) = archive.as_deref_mut().filter(|_| job != 0) {
        archive.commit_job(job)?;
    }
    report.rewritten += 1;
    report.inputs += unit.len();
    report.bytes_before += unit.iter().map(|p| p.segment.len).sum::<u64>();
    report.bytes_after += replacement.len;
    Ok(())
}

/// The compacted segment's bytes and index: the unit's surviving frames, each re-encoded with
/// the same fields, batch markers counting down over the survivors of each original batch.
fn encode_survivors(header: &SegmentHeader, unit: &[SegmentPlan]) -> Result<(Vec<u8>, IndexBuilder)> {
    let mut out = segment::encode_header(header).to_vec();
    let mut builder = IndexBuilder::default();
    for plan in unit {
        let path = plan.segment.reader.path();
        let bytes = read_sealed(&plan.segment)?;
        let mut frames: Vec<(FrameRef<'_>, u64)> = Vec::with_capacity(plan.decisions.len());
        let outcome = segment::scan_with(&bytes, Positions::of(&plan.segment.header), |frame, offset| {
            frames.push((*frame, offset))
        });
        if let Some(stop) = outcome.stop {
            return Err(Error::corruption(path, stop.offset, format!("sealed segment: {}", stop.reason)));
        }
        if frames.len() != plan.decisions.len() {
            return Err(Error::corruption(path, 0, "segment changed while it was being compacted"));
        }
        let mut batch: Vec<FrameRef<'_>> = Vec::new();
        for ((frame, _), decision) in frames.iter().zip(&plan.decisions) {
            if matches!(decision, Decision::Keep | Decision::Held) {
                batch.push(*frame);
            }
            if frame.batch_remaining == 0 {
                let count = batch.len();
                for (i, survivor) in batch.drain(..).enumerate() {
                    let offset = out.len() as u64;
                    let frame = FrameRef { batch_remaining: (count - 1 - i) as u32, after_sync: false, ..survivor };
                    record::encode(&frame, &mut out);
                    builder.add(&IndexedEvent::of(&survivor, offset));
                }
            }
        }
        assert!(batch.is_empty(), "a sealed segment ends with a whole batch");
    }
    Ok((out, builder))
}

/// Reads a sealed segment whole (it must still have its sealed length).
fn read_sealed(segment: &SealedSegment) -> Result<Bytes> {
    let path = segment.reader.path();
    let bytes = segment::read_whole(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    if bytes.len() as u64 != segment.len {
        let reason = format!("the file is {} bytes, it was sealed at {}", bytes.len(), segment.len);
        return Err(Error::corruption(path, segment.len.min(bytes.len() as u64), reason));
    }
    // A compressed segment is compacted as the plain segment it stands for (its output is plain).
    if segment.header.compressed.is_some() {
        let logical = crate::compressed::decode_file(&bytes)
            .map_err(|c| Error::corruption(path, c.offset, format!("compressed segment: {}", c.reason)))?;
        return Ok(Bytes::from(logical));
    }
    Ok(Bytes::from(bytes))
}

/// Scans a sealed segment completely, calling `on_frame(bytes, frame, offset)`; any stop
/// before its last byte is corruption.
fn scan_sealed(segment: &SealedSegment, mut on_frame: impl FnMut(&Arc<Bytes>, &FrameRef<'_>, u64)) -> Result<u64> {
    let bytes = Arc::new(read_sealed(segment)?);
    let path = segment.reader.path();
    let outcome = segment::scan_with(&bytes, Positions::of(&segment.header), |frame, at| on_frame(&bytes, frame, at));
    if let Some(stop) = outcome.stop {
        return Err(Error::corruption(path, stop.offset, format!("sealed segment: {}", stop.reason)));
    }
    // Only a compaction may leave a sealed segment empty (every event in its range removed).
    if outcome.frames == 0 && segment.header.compacted.is_none() {
        return Err(Error::corruption(path, segment::SEGMENT_HEADER_BYTES as u64, "sealed segment holds no frames"));
    }
    Ok(outcome.frames)
}

/// A sealed segment's new bytes and index, ready to replace the segment(s) they were made from.
pub(crate) struct Rewritten<'a> {
    /// Names the temporary files `<file>.<tmp_tag>.tmp` (open removes any `.tmp` left behind).
    pub tmp_tag: &'a str,
    pub segment: &'a [u8],
    pub index: &'a [u8],
    pub header: SegmentHeader,
    pub header_crc: u32,
}

/// Puts `files` in place of the sealed segments `inputs` (adjacent, in order), crash-safely:
/// both files written under temporary names and synced; renamed over the first input's names
/// (the commit point) and the directory synced; readers switched over and the manifest
/// updated. The other inputs' files are the caller's to remove. One copy of this sequence
/// serves compaction and compression.
pub(crate) fn install_sealed(
    store: &Store,
    fs: &dyn FileSystem,
    segments_dir: &Path,
    inputs: &[u64],
    files: Rewritten<'_>,
) -> Result<Arc<SealedSegment>> {
    let base = inputs[0];
    let tmp = |name: String| segments_dir.join(format!("{name}.{}.tmp", files.tmp_tag));
    let (seg_tmp, idx_tmp) = (tmp(segment::file_name(base)), tmp(index::file_name(base)));
    write_synced(fs, &seg_tmp, files.segment)?;
    write_synced(fs, &idx_tmp, files.index)?;
    let seg_path = segments_dir.join(segment::file_name(base));
    let idx_path = segments_dir.join(index::file_name(base));
    fs.rename(&seg_tmp, &seg_path).map_err(|e| Error::io(format!("renaming {}", seg_tmp.display()), e))?;
    fs.rename(&idx_tmp, &idx_path).map_err(|e| Error::io(format!("renaming {}", idx_tmp.display()), e))?;
    fs.sync_dir(segments_dir).map_err(|e| Error::io("syncing the segments directory", e))?;
    let len = files.segment.len() as u64;
    let reader = SegmentReader::open(&seg_path, base, len, &store.shared().cache)
        .map_err(|e| Error::io(format!("opening {}", seg_path.display()), e))?;
    let index = SegmentIndex::open(&idx_path).map_err(|reason| Error::corruption(&idx_path, 0, reason))?;
    let header_crc = files.header_crc;
    let replacement =
        Arc::new(SealedSegment { header: files.header, reader: Arc::new(reader), index, len, header_crc });
    store.shared().update_and_record(fs, |state| state.replace_sealed(inputs, Arc::clone(&replacement)))?;
    Ok(replacement)
}

fn write_synced(fs: &dyn FileSystem, path: &Path, bytes: &[u8]) -> Result<()> {
    let context = |what: &str| format!("{what} {}", path.display());
    let file = fs.create(path).map_err(|e| Error::io(context("creating"), e))?;
    file.write_at(bytes, 0).map_err(|e| Error::io(context("writing"), e))?;
    file.sync_all().map_err(|e| Error::io(context("syncing"), e))
}

/// The segment files in `segments_dir` whose header records an archive job (a compaction
/// that moved events to the cold tier), with that job id, in file-name order. The archive crate
/// checks that its manifest knows each of them.
pub fn archive_jobs_of(segments_dir: &Path) -> Vec<(PathBuf, u64)> {
    let Ok(entries) = std::fs::read_dir(segments_dir) else { return Vec::new() };
    let mut bases: Vec<u64> =
        entries.filter_map(|e| segment::parse_file_name(&e.ok()?.file_name().to_string_lossy())).collect();
    bases.sort_unstable();
    bases
        .into_iter()
        .filter_map(|base| {
            let path = segments_dir.join(segment::file_name(base));
            let job = segment::read_header(&path)?.compacted?.job;
            (job > 0).then_some((path, job))
        })
        .collect()
}

/// The job id a compacted segment at `base` carries (`None`: no such segment, or not compacted
/// by a job). The archive crate commits a pending job when this names it, and rolls it back
/// otherwise.
pub fn committed_job_of(segments_dir: &Path, base: u64) -> Option<u64> {
    segment::read_header(&segments_dir.join(segment::file_name(base))).and_then(|h| h.compacted).map(|c| c.job)
}
