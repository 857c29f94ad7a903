//! The ordered set of segments, recovery on open, and the single writer thread.
//!
//! One writer thread owns the active segment. Appenders send [`Request`]s over a bounded
//! crossbeam channel; the writer takes everything queued (a group), checks expected versions
//! and idempotency, encodes every frame into one buffer, writes it with one call, issues one
//! fdatasync for the whole group, then publishes the new events to readers and acknowledges
//! each appender. Readers see only published events: with `SyncMode::Always` that means
//! durable ones. A segment is sealed (and a new one created) only between groups, so a group
//! — and therefore every atomic batch — lives in exactly one segment.
//!
//! After an I/O error on write or fsync the writer stops for good (fsyncgate): every pending
//! and later append gets [`Error::WriterFailed`]; only reopening the store re-reads the truth.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::{Condvar, Mutex, RwLock};

use crate::error::{Error, Result};
use crate::index::{self, ActiveIndex, IndexedEvent, SegmentIndex, StreamDirectory};
use crate::record::{self, FrameRef, BODY_FIXED_BYTES, FRAME_HEADER_BYTES};
use crate::segment::{self, Positions, SegmentHeader, SegmentMap, SegmentWriter, TailVerdict, SEGMENT_HEADER_BYTES};
use crate::storage::FileSystem;
use crate::types::{AppendResult, ExpectedVersion, NewEvent, Options, RecordedEvent, SyncMode, VerifyOnOpen};

/// Subdirectory holding segment and index files.
pub const SEGMENTS_DIR: &str = "segments";
/// Held with an OS lock while a store is open.
pub const LOCK_FILE: &str = "LOCK";
/// Written on clean shutdown, removed on open: its absence means the last run crashed.
pub const CLEAN_FILE: &str = "CLEAN";
/// Most appends the writer takes into one group commit.
pub const MAX_GROUP_APPENDS: usize = 1024;
/// How long the writer polls for the next request before it parks.
pub const WRITER_SPIN: Duration = Duration::from_micros(50);
/// Most bytes the writer buffers for one group before committing it.
pub const MAX_GROUP_BYTES: usize = 32 * 1024 * 1024;

/// A sealed segment: its header, its bytes and its index, both mmapped.
#[derive(Debug)]
pub struct SealedSegment {
    pub header: SegmentHeader,
    pub map: Arc<SegmentMap>,
    pub index: SegmentIndex,
}

impl SealedSegment {
    pub fn base_position(&self) -> u64 {
        self.header.base_position
    }
    /// Last position the segment covers: its last frame's, or for a compacted segment the end
    /// of the range it replaced (events at the end may have been removed).
    pub fn end_position(&self) -> u64 {
        match self.header.compacted {
            Some(c) => c.end_position,
            None => self.index.last_position(),
        }
    }
    pub fn is_compacted(&self) -> bool {
        self.header.compacted.is_some()
    }
}

/// Name of the system stream that records stream deletions (tombstones).
pub const TOMBSTONE_STREAM: &str = "$deleted";
/// Event type of a tombstone.
pub const TOMBSTONE_TYPE: &str = "$StreamDeleted";

/// A tombstone's data: which stream was deleted, at which version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tombstone {
    pub stream: String,
    pub version: u64,
}

/// The active segment as readers see it.
#[derive(Debug)]
pub struct ActiveSegment {
    pub map: Arc<SegmentMap>,
    pub index: ActiveIndex,
}

/// Everything readers need, behind one RwLock the writer takes only to publish or seal.
#[derive(Debug)]
pub struct LogState {
    pub sealed: Vec<Arc<SealedSegment>>,
    pub active: ActiveSegment,
    pub streams: StreamDirectory,
    /// Deleted streams: hidden from reads at once, refused for appends, removed by compaction.
    /// Replaced (copy on write) so readers can hold it without the lock.
    pub tombstones: Arc<HashSet<Box<str>>>,
}

impl LogState {
    /// The segment map and byte offset of the frame at `position`, if it is published.
    pub fn locate(&self, position: u64) -> Option<(&Arc<SegmentMap>, u32)> {
        if position >= self.active.index.base_position {
            return self.active.index.offset_of(position).map(|offset| (&self.active.map, offset));
        }
        let i = self.sealed.partition_point(|s| s.base_position() <= position).checked_sub(1)?;
        let segment = &self.sealed[i];
        segment.index.offset_of(position).map(|offset| (&segment.map, offset))
    }

    /// For a scan of `$all` from `position`: the first stored frame at or after it, up to
    /// `head`, as (segment, its position, its offset, the last position to scan in that
    /// segment). Skips the gaps compaction left, across segments if need be.
    pub fn locate_from(&self, position: u64, head: u64) -> Option<(&Arc<SegmentMap>, u64, u32, u64)> {
        if position > head {
            return None;
        }
        let active_base = self.active.index.base_position;
        let mut i = self.sealed.partition_point(|s| s.base_position() <= position);
        if position < active_base {
            // `position` is in sealed segment i-1 (or before the first, then start there).
            i = i.saturating_sub(1);
            while let Some(segment) = self.sealed.get(i) {
                if let Some((at, offset)) = segment.index.first_at_or_after(position) {
                    return Some((&segment.map, at, offset, segment.index.last_position().min(head)));
                }
                i += 1;
            }
        }
        let from = position.max(active_base);
        self.active.index.offset_of(from).map(|offset| (&self.active.map, from, offset, head))
    }

    /// True when `stream` was deleted.
    pub fn is_deleted(&self, stream: &str) -> bool {
        !self.tombstones.is_empty() && self.tombstones.contains(stream)
    }

    /// Positions of `stream`'s events with versions in `from..=to`, in version order.
    pub fn stream_positions(&self, stream: &str, from: u64, to: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        if from > to {
            return out;
        }
        if let Some(entry) = self.streams.get(stream) {
            for base in &entry.sealed {
                if let Ok(i) = self.sealed.binary_search_by_key(base, |s| s.base_position()) {
                    self.sealed[i].index.positions_for(stream, from, to, &mut out);
                }
            }
        }
        self.active.index.positions_for(stream, from, to, &mut out);
        out
    }

    /// First position still stored (1 unless retention removed older segments).
    pub fn first_position(&self) -> u64 {
        self.sealed.first().map_or(self.active.index.base_position, |s| s.base_position())
    }
}

/// Decodes the frame at `offset` of `map` as the event at `position`; any mismatch is corruption.
pub fn decode_event(map: &Arc<SegmentMap>, offset: u32, position: u64) -> Result<RecordedEvent> {
    let (frame, _) =
        map.frame_at(u64::from(offset)).map_err(|e| Error::corruption(map.path(), u64::from(offset), e.to_string()))?;
    if frame.position != position {
        return Err(Error::corruption(
            map.path(),
            u64::from(offset),
            format!("frame holds position {} where the index says {position}", frame.position),
        ));
    }
    Ok(event_from_frame(map, offset, &frame))
}

/// Builds a `RecordedEvent` pointing into `map` for a frame decoded at `offset`.
pub fn event_from_frame(map: &Arc<SegmentMap>, offset: u32, frame: &FrameRef<'_>) -> RecordedEvent {
    let stream_start = offset + (FRAME_HEADER_BYTES + BODY_FIXED_BYTES) as u32;
    let type_start = stream_start + frame.stream.len() as u32;
    let meta_start = type_start + frame.event_type.len() as u32;
    let data_start = meta_start + frame.metadata.len() as u32;
    RecordedEvent {
        segment: Arc::clone(map),
        position: frame.position,
        version: frame.version,
        timestamp_us: frame.timestamp_us,
        id: frame.id,
        stream: (stream_start, type_start),
        event_type: (type_start, meta_start),
        metadata: (meta_start, data_start),
        data: (data_start, data_start + frame.data.len() as u32),
    }
}

/// State shared by the writer, readers and subscriptions.
#[derive(Debug)]
pub struct Shared {
    pub dir: PathBuf,
    pub state: RwLock<LogState>,
    /// Last published position (0 when the log is empty).
    pub head: AtomicU64,
    /// Woken whenever `head` moves or the store closes.
    pub head_lock: Mutex<()>,
    pub head_changed: Condvar,
    pub closed: AtomicBool,
    pub stats: Stats,
}

/// Counters for INFO and benchmarks.
#[derive(Debug, Default)]
pub struct Stats {
    pub appends: AtomicU64,
    pub events: AtomicU64,
    pub fsyncs: AtomicU64,
    pub groups: AtomicU64,
    pub bytes_written: AtomicU64,
}

impl Shared {
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    /// Waits until the head passes `position - 1` (so `position` is readable), the store
    /// closes, or `timeout` passes. Returns the head.
    pub fn wait_for(&self, position: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut guard = self.head_lock.lock();
        loop {
            let head = self.head();
            if head >= position || self.closed.load(Ordering::Acquire) {
                return head;
            }
            if self.head_changed.wait_until(&mut guard, deadline).timed_out() {
                return self.head();
            }
        }
    }

    fn publish_head(&self, head: u64) {
        let _guard = self.head_lock.lock();
        self.head.store(head, Ordering::Release);
        self.head_changed.notify_all();
    }

    /// Swaps the sealed segments based at `inputs` (adjacent, in order) for `replacement`, a
    /// compaction of them, and points the stream directory at it.
    pub fn replace_sealed(&self, inputs: &[u64], replacement: Arc<SealedSegment>) -> Result<()> {
        let mut state = self.state.write();
        let start = state.sealed.binary_search_by_key(&inputs[0], |s| s.base_position()).ok();
        let range = start.map(|s| s..s + inputs.len());
        let matches = range.clone().is_some_and(|r| {
            state.sealed.get(r).is_some_and(|found| found.iter().map(|s| s.base_position()).eq(inputs.iter().copied()))
        });
        let Some(range) = range.filter(|_| matches) else {
            return Err(Error::InvalidInput(format!("segments {inputs:?} are no longer the sealed segments")));
        };
        let kept: HashSet<&str> = replacement.index.streams().map(|s| s.name).collect();
        let removed: Vec<Arc<SealedSegment>> = state.sealed.splice(range, [Arc::clone(&replacement)]).collect();
        let base = replacement.base_position();
        for old in &removed {
            for stream in old.index.streams() {
                let new = kept.contains(stream.name).then_some(base);
                state.streams.replace_sealed(stream.name, inputs, new);
            }
        }
        Ok(())
    }

    pub fn mark_closed(&self) {
        let _guard = self.head_lock.lock();
        self.closed.store(true, Ordering::Release);
        self.head_changed.notify_all();
    }
}

/// A validated append on its way to the writer. Every event has its id.
#[derive(Debug)]
pub struct AppendRequest {
    pub stream: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    pub ids: Vec<[u8; 16]>,
    /// Whether any id came from the client. Ids the store generated (random v4 UUIDs) cannot
    /// already be stored, so an append of only those skips the idempotency lookups.
    pub client_ids: bool,
    pub encoded_bytes: usize,
}

pub enum Request {
    Append(AppendRequest, Sender<Result<AppendResult>>),
    /// Delete a stream: write a tombstone if its version satisfies the expected version.
    Delete {
        stream: String,
        expected: ExpectedVersion,
        reply: Sender<Result<AppendResult>>,
    },
    /// Make everything written so far durable (for `SyncMode::Never`/`Every`).
    Sync(Sender<Result<()>>),
    /// Commit, sync, mark the shutdown clean and stop.
    Shutdown(Sender<Result<()>>),
}

/// What recovery found and built.
pub struct Recovered {
    pub shared: Arc<Shared>,
    pub writer: SegmentWriter,
    pub lock: File,
}

/// Opens (and if needed creates) the data directory, takes the lock, and recovers the log.
pub fn recover(dir: &Path, options: &Options) -> Result<Recovered> {
    if !options.create_if_missing && !crate::datadir::holds_store(dir) {
        return Err(Error::NoStore(dir.to_path_buf()));
    }
    let segments_dir = dir.join(SEGMENTS_DIR);
    fs::create_dir_all(&segments_dir).map_err(|e| Error::io(format!("creating {}", segments_dir.display()), e))?;
    let lock = take_lock(dir)?;
    let fsys = options.fs.as_ref();
    let clean_path = dir.join(CLEAN_FILE);
    let clean = clean_path.exists();
    if clean {
        fsys.remove_file(&clean_path).map_err(|e| Error::io("removing the clean-shutdown marker", e))?;
        fsys.sync_dir(dir).map_err(|e| Error::io("syncing the data directory", e))?;
    }
    let verify = !clean || options.verify_on_open == VerifyOnOpen::Always;
    let mut bases = list_segments(fsys, &segments_dir)?;
    remove_superseded(fsys, &segments_dir, &mut bases)?;
    // A previous run may have created files and crashed before syncing their directory entry:
    // make every entry durable before anything written to those files is acknowledged.
    fsys.sync_dir(&segments_dir).map_err(|e| Error::io("syncing the segments directory", e))?;
    fsys.sync_dir(dir).map_err(|e| Error::io("syncing the data directory", e))?;
    let mut streams = StreamDirectory::default();
    let mut sealed: Vec<Arc<SealedSegment>> = Vec::new();
    let mut expected_base = None;
    if let Some((last_base, sealed_bases)) = bases.split_last() {
        for &base in sealed_bases {
            // Once a compacted segment has been seen, a stream's versions may skip what
            // compaction removed; before that they must count up by one.
            let gaps = sealed.iter().any(|s| s.is_compacted());
            let segment = open_sealed(fsys, &segments_dir, base, expected_base, verify, gaps, &mut streams)?;
            expected_base = Some(segment.end_position() + 1);
            sealed.push(Arc::new(segment));
        }
        let gaps = sealed.iter().any(|s| s.is_compacted());
        let (active, writer) = open_active(&segments_dir, *last_base, expected_base, options, gaps, &mut streams)?;
        let head = if active.index.offsets.is_empty() { last_base - 1 } else { active.index.last_position() };
        return finish(dir, sealed, active, streams, writer, head, lock);
    }
    let writer = SegmentWriter::create(fsys, &segments_dir, 1, options.segment_bytes, options.clock.now_us())
        .map_err(|e| Error::io("creating the first segment", e))?;
    let map = Arc::new(map_segment(writer.path(), 1)?);
    let active = ActiveSegment { map, index: ActiveIndex::new(1) };
    finish(dir, sealed, active, streams, writer, 0, lock)
}

fn finish(
    dir: &Path,
    sealed: Vec<Arc<SealedSegment>>,
    active: ActiveSegment,
    streams: StreamDirectory,
    writer: SegmentWriter,
    head: u64,
    lock: File,
) -> Result<Recovered> {
    let mut state = LogState { sealed, active, streams, tombstones: Arc::default() };
    state.tombstones = Arc::new(load_tombstones(&state)?);
    let shared = Arc::new(Shared {
        dir: dir.to_path_buf(),
        state: RwLock::new(state),
        head: AtomicU64::new(head),
        head_lock: Mutex::new(()),
        head_changed: Condvar::new(),
        closed: AtomicBool::new(false),
        stats: Stats::default(),
    });
    Ok(Recovered { shared, writer, lock })
}

/// Reads every tombstone from the `$deleted` stream.
fn load_tombstones(state: &LogState) -> Result<HashSet<Box<str>>> {
    let mut deleted = HashSet::new();
    for (_, position) in state.stream_positions(TOMBSTONE_STREAM, 1, u64::MAX) {
        let Some((map, offset)) = state.locate(position) else { continue };
        let event = decode_event(map, offset, position)?;
        if event.stream() != TOMBSTONE_STREAM {
            continue; // a hash collision in a sealed index
        }
        let tombstone: Tombstone = serde_json::from_slice(event.data()).map_err(|e| {
            Error::corruption(map.path(), u64::from(offset), format!("tombstone event does not decode: {e}"))
        })?;
        deleted.insert(tombstone.stream.into_boxed_str());
    }
    Ok(deleted)
}

fn take_lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Locked(dir.to_path_buf())),
        Err(fs::TryLockError::Error(e)) => Err(Error::io(format!("locking {}", path.display()), e)),
    }
}

fn list_segments(fsys: &dyn FileSystem, segments_dir: &Path) -> Result<Vec<u64>> {
    let mut bases = Vec::new();
    let entries = fs::read_dir(segments_dir).map_err(|e| Error::io("listing segments", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing segments", e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(base) = segment::parse_file_name(&name) {
            bases.push(base);
        } else if name.ends_with(".tmp") && name != segment::SPARE_FILE {
            // An index write or a compaction that never finished its rename: the file it
            // would have replaced is still in place, so the temporary is safe to drop.
            let _ = fsys.remove_file(&entry.path());
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Reads a segment file's header, if it has a valid one.
pub fn read_header(path: &Path) -> Option<SegmentHeader> {
    use std::io::Read;
    let mut bytes = [0u8; SEGMENT_HEADER_BYTES];
    File::open(path).and_then(|mut f| f.read_exact(&mut bytes)).ok()?;
    segment::decode_header(&bytes).ok()
}

/// Finishes a compaction that stopped after renaming its output into place: segments whose
/// base lies inside an earlier compacted segment's range were its inputs, and go.
fn remove_superseded(fsys: &dyn FileSystem, segments_dir: &Path, bases: &mut Vec<u64>) -> Result<()> {
    let Some(&last) = bases.last() else { return Ok(()) };
    let mut covered_to = 0u64;
    let mut kept = Vec::with_capacity(bases.len());
    let mut removed = false;
    for &base in bases.iter() {
        if base <= covered_to && base != last {
            for name in [segment::file_name(base), index::file_name(base)] {
                let path = segments_dir.join(name);
                tracing::warn!(file = %path.display(), "removing a segment a finished compaction replaced");
                match fsys.remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(format!("removing {}", path.display()), e)),
                }
            }
            removed = true;
            continue;
        }
        if let Some(compacted) = read_header(&segments_dir.join(segment::file_name(base))).and_then(|h| h.compacted) {
            covered_to = compacted.end_position;
        }
        kept.push(base);
    }
    if removed {
        fsys.sync_dir(segments_dir).map_err(|e| Error::io("syncing the segments directory", e))?;
    }
    *bases = kept;
    Ok(())
}

fn map_segment(path: &Path, base: u64) -> Result<SegmentMap> {
    SegmentMap::open(path, base).map_err(|e| Error::io(format!("mapping {}", path.display()), e))
}

fn check_header(map: &SegmentMap, base: u64, expected_base: Option<u64>) -> Result<SegmentHeader> {
    let header = segment::decode_header(map.bytes()).map_err(|reason| Error::corruption(map.path(), 0, reason))?;
    if header.base_position != base {
        return Err(Error::corruption(
            map.path(),
            16,
            format!("header says base position {} but the file is named for {base}", header.base_position),
        ));
    }
    if let Some(expected) = expected_base {
        if base != expected {
            return Err(Error::corruption(
                map.path(),
                16,
                format!("segment starts at position {base} but the previous segment ends at {}", expected - 1),
            ));
        }
    }
    Ok(header)
}

/// The checksum stored in a segment header: an index built for another version of the
/// segment (before a compaction) carries a different one.
pub fn header_crc(map: &SegmentMap) -> u32 {
    let b = map.bytes();
    if b.len() < SEGMENT_HEADER_BYTES {
        return 0;
    }
    u32::from_le_bytes([b[60], b[61], b[62], b[63]])
}

/// Checks that `stream` continues at `first_version` after what the directory holds: the next
/// version, or with `gaps` (compaction removed events) any later one.
fn check_continuity(
    streams: &StreamDirectory,
    stream: &str,
    first_version: u64,
    gaps: bool,
    file: &Path,
    offset: u64,
) -> Result<()> {
    let current = streams.version(stream);
    let ok = if gaps { first_version > current } else { first_version == current + 1 };
    if !ok {
        return Err(Error::corruption(
            file,
            offset,
            format!("stream '{stream}' continues at version {first_version} after version {current}"),
        ));
    }
    Ok(())
}

fn open_sealed(
    fsys: &dyn FileSystem,
    segments_dir: &Path,
    base: u64,
    expected_base: Option<u64>,
    verify: bool,
    gaps: bool,
    streams: &mut StreamDirectory,
) -> Result<SealedSegment> {
    let path = segments_dir.join(segment::file_name(base));
    let map = map_segment(&path, base)?;
    let header = check_header(&map, base, expected_base)?;
    let index_path = segments_dir.join(index::file_name(base));
    let current = |index: &SegmentIndex| {
        index.base_position == base
            && index.segment_len == map.len() as u64
            && index.segment_crc == header_crc(&map)
            && (index.event_count() > 0 || header.compacted.is_some())
    };
    let index = match SegmentIndex::open(&index_path) {
        Ok(index) if current(&index) => match verify.then(|| verify_sealed(&map, &header, &index)) {
            Some(Err(IndexCheck::Segment(err))) => return Err(err),
            Some(Err(IndexCheck::Index(reason))) => {
                tracing::warn!(index = %index_path.display(), %reason, "index disagrees with its segment; rebuilding");
                rebuild_index(fsys, &map, &header, &index_path)?
            }
            Some(Ok(())) | None => index,
        },
        Ok(_) | Err(_) => {
            tracing::warn!(index = %index_path.display(), "index missing or stale; rebuilding from its segment");
            rebuild_index(fsys, &map, &header, &index_path)?
        }
    };
    let gaps = gaps || header.compacted.is_some();
    for stream in index.streams() {
        check_continuity(streams, stream.name, stream.first_version, gaps, &path, SEGMENT_HEADER_BYTES as u64)?;
        streams.add_sealed(stream.name, base, stream.last_version);
    }
    Ok(SealedSegment { header, map: Arc::new(map), index })
}

/// Scans a sealed segment completely; any stop before its last byte is corruption.
pub fn scan_sealed(
    map: &SegmentMap,
    header: &SegmentHeader,
    mut on_frame: impl FnMut(&FrameRef<'_>, u64),
) -> Result<u64> {
    let outcome = segment::scan_with(map.bytes(), Positions::of(header), |f, at| on_frame(f, at));
    if let Some(stop) = outcome.stop {
        return Err(Error::corruption(map.path(), stop.offset, format!("sealed segment: {}", stop.reason)));
    }
    // Only a compaction may leave a sealed segment empty (every event in its range removed).
    if outcome.frames == 0 && header.compacted.is_none() {
        return Err(Error::corruption(map.path(), SEGMENT_HEADER_BYTES as u64, "sealed segment holds no frames"));
    }
    Ok(outcome.frames)
}

/// Why a sealed segment and its index disagree: the segment is damaged (corruption), or
/// only the index is wrong (derived data: rebuilt).
enum IndexCheck {
    Segment(Error),
    Index(String),
}

fn verify_sealed(map: &SegmentMap, header: &SegmentHeader, index: &SegmentIndex) -> Result<(), IndexCheck> {
    // The index must point at every frame where the scan finds it.
    let mut misplaced: Option<(u64, u64)> = None;
    let frames = scan_sealed(map, header, |frame, offset| {
        if misplaced.is_none() && index.offset_of(frame.position).map(u64::from) != Some(offset) {
            misplaced = Some((frame.position, offset));
        }
    })
    .map_err(IndexCheck::Segment)?;
    if let Some((position, offset)) = misplaced {
        return Err(IndexCheck::Index(format!("position {position} is at byte {offset}, not where the index says")));
    }
    if frames != index.event_count() as u64 {
        return Err(IndexCheck::Index(format!("segment holds {frames} frames, its index {}", index.event_count())));
    }
    Ok(())
}

fn rebuild_index(
    fsys: &dyn FileSystem,
    map: &SegmentMap,
    header: &SegmentHeader,
    index_path: &Path,
) -> Result<SegmentIndex> {
    let builder = build_index(map, header)?;
    let bytes = builder.encode(map.base_position(), map.len() as u64, header_crc(map));
    write_file_atomically(fsys, index_path, &bytes)?;
    SegmentIndex::open(index_path).map_err(|reason| Error::corruption(index_path, 0, reason))
}

/// Scans a sealed segment into an index builder, checking each stream's versions.
pub fn build_index(map: &SegmentMap, header: &SegmentHeader) -> Result<index::IndexBuilder> {
    let mut builder = index::IndexBuilder::default();
    // Within the segment each stream's versions must count up by one (by at least one in a
    // compacted segment; the caller checks where each stream starts). Without this, a repeated
    // version was accepted and a backward one panicked in `IndexBuilder::add` (found with the
    // segment_recovery fuzz harness).
    let gaps = header.compacted.is_some();
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut broken: Option<Error> = None;
    scan_sealed(map, header, |frame, offset| {
        if broken.is_some() {
            return;
        }
        if let Some(&last) = versions.get(frame.stream) {
            let ok = if gaps { frame.version > last } else { last.checked_add(1) == Some(frame.version) };
            if !ok {
                let reason = format!("stream '{}' has version {} after version {last}", frame.stream, frame.version);
                broken = Some(Error::corruption(map.path(), offset, reason));
                return;
            }
        }
        versions.insert(frame.stream.to_string(), frame.version);
        builder.add(&IndexedEvent {
            stream: frame.stream,
            version: frame.version,
            position: frame.position,
            id: frame.id,
            offset: offset as u32,
        })
    })?;
    match broken {
        Some(err) => Err(err),
        None => Ok(builder),
    }
}

/// [`storage::write_file_atomically`] with an error that names the file.
pub fn write_file_atomically(fsys: &dyn FileSystem, path: &Path, bytes: &[u8]) -> Result<()> {
    crate::storage::write_file_atomically(fsys, path, bytes)
        .map_err(|e| Error::io(format!("writing {} atomically", path.display()), e))
}

fn open_active(
    segments_dir: &Path,
    base: u64,
    expected_base: Option<u64>,
    options: &Options,
    gaps: bool,
    streams: &mut StreamDirectory,
) -> Result<(ActiveSegment, SegmentWriter)> {
    let path = segments_dir.join(segment::file_name(base));
    let map = map_segment(&path, base)?;
    let checked = check_header(&map, base, expected_base).and_then(|header| match header.compacted {
        // Compaction only rewrites sealed segments; the newest file is always the log's own.
        Some(_) => Err(Error::corruption(map.path(), 32, "the last segment is marked compacted")),
        None => Ok(header),
    });
    if let Err(err) = checked {
        // A crash while creating the segment can leave a header that never reached the disk.
        let unwritten = map.bytes().iter().all(|&b| b == 0);
        // Base 0 is never a real segment (positions start at 1); recreating one made the head
        // underflow (found by fuzzing: an empty `00000000000000000000.seg`).
        if !(unwritten && base >= 1 && expected_base.is_none_or(|e| e == base)) {
            return Err(err);
        }
        tracing::warn!(file = %path.display(), "last segment was never written; recreating it");
        drop(map);
        let fsys = options.fs.as_ref();
        fsys.remove_file(&path).map_err(|e| Error::io("removing an unwritten segment", e))?;
        let writer = SegmentWriter::create(fsys, segments_dir, base, options.segment_bytes, options.clock.now_us())
            .map_err(|e| Error::io("recreating the last segment", e))?;
        let map = Arc::new(map_segment(&path, base)?);
        return Ok((ActiveSegment { map, index: ActiveIndex::new(base) }, writer));
    }
    let (index, valid_len) = scan_active(&map, gaps, streams)?;
    let capacity = options.segment_bytes.max(map.len() as u64);
    drop(map);
    let writer = SegmentWriter::reopen(options.fs.as_ref(), &path, base, valid_len, capacity)
        .map_err(|e| Error::io(format!("repairing the tail of {}", path.display()), e))?;
    let map = Arc::new(map_segment(&path, base)?);
    Ok((ActiveSegment { map, index }, writer))
}

/// Scans the last segment, applying the recovery decision table: a torn or zeroed tail is
/// cut at the end of the last whole batch; damage followed by valid frames is corruption.
fn scan_active(map: &SegmentMap, gaps: bool, streams: &mut StreamDirectory) -> Result<(ActiveIndex, u64)> {
    let base = map.base_position();
    let mut active = ActiveIndex::new(base);
    let mut broken: Option<Error> = None;
    let outcome = segment::scan(map.bytes(), base, |frame, offset| {
        if broken.is_some() {
            return;
        }
        // Only a stream's first event here may follow a gap compaction left before it.
        let gap = gaps && !active.streams.contains_key(frame.stream);
        if let Err(err) = check_continuity(streams, frame.stream, frame.version, gap, map.path(), offset) {
            broken = Some(err);
            return;
        }
        streams.set_version(frame.stream, frame.version);
        active.add(&IndexedEvent {
            stream: frame.stream,
            version: frame.version,
            position: frame.position,
            id: frame.id,
            offset: offset as u32,
        });
    });
    if let Some(err) = broken {
        return Err(err);
    }
    match segment::judge_tail(map.bytes(), &outcome) {
        TailVerdict::Clean => {}
        TailVerdict::Corrupt { offset, reason } => return Err(Error::corruption(map.path(), offset, reason)),
        TailVerdict::Repairable { reason, .. } => {
            let dropped = map.bytes()[outcome.valid_len as usize..].iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            tracing::warn!(
                file = %map.path().display(),
                offset = outcome.valid_len,
                bytes = dropped,
                reason = %reason,
                "truncating a torn tail"
            );
        }
    }
    Ok((active, outcome.valid_len))
}

/// The writer thread's state.
pub struct Writer {
    shared: Arc<Shared>,
    segment: SegmentWriter,
    options: Options,
    next_position: u64,
    buf: Vec<u8>,
    /// Appends encoded into `buf`, waiting for the group commit.
    pending: Vec<PendingAppend>,
    /// Versions of streams changed by the pending group.
    pending_versions: HashMap<String, u64>,
    pending_ids: HashSet<[u8; 16]>,
    /// Streams deleted by the pending group.
    pending_tombstones: HashSet<String>,
    failed: Option<String>,
    unsynced: bool,
    last_sync: Instant,
    spare: Spare,
}

/// The next segment, zero-filled ahead of time so appends to it need no block allocation.
enum Spare {
    /// None prepared; one is started once the active segment is half full.
    Absent,
    Preparing(std::thread::JoinHandle<std::io::Result<()>>),
    /// `segments/next-segment.tmp` exists with the configured size.
    Ready,
}

struct PendingAppend {
    stream: String,
    result: AppendResult,
    /// (offset in the segment, id) for every event, in order.
    frames: Vec<(u32, [u8; 16])>,
    /// The stream this append's tombstone deletes.
    deletes: Option<String>,
    reply: Sender<Result<AppendResult>>,
}

impl Writer {
    pub fn new(shared: Arc<Shared>, segment: SegmentWriter, options: Options) -> Self {
        let next_position = shared.head() + 1;
        Writer {
            shared,
            segment,
            options,
            next_position,
            buf: Vec::new(),
            pending: Vec::new(),
            pending_versions: HashMap::new(),
            pending_ids: HashSet::new(),
            pending_tombstones: HashSet::new(),
            failed: None,
            unsynced: false,
            last_sync: Instant::now(),
            spare: Spare::Absent,
        }
        .with_leftover_spare()
    }

    /// A spare left by an earlier run is reused: it only ever holds zeroes (and perhaps a
    /// header that was being stamped when the process stopped, which is overwritten).
    fn with_leftover_spare(mut self) -> Self {
        if std::fs::metadata(self.spare_path()).is_ok_and(|m| m.len() == self.options.segment_bytes) {
            self.spare = Spare::Ready;
        }
        self
    }

    fn spare_path(&self) -> PathBuf {
        self.shared.dir.join(SEGMENTS_DIR).join(segment::SPARE_FILE)
    }

    /// Starts preparing the next segment in the background once the active one is half full
    /// (so short-lived stores never pay for it); the writer never waits for it.
    fn maybe_start_spare(&mut self) {
        if !matches!(self.spare, Spare::Absent) || self.segment.write_offset() * 2 < self.segment.capacity() {
            return;
        }
        let (fs, path, capacity) = (Arc::clone(&self.options.fs), self.spare_path(), self.options.segment_bytes);
        let spawned = std::thread::Builder::new()
            .name("logbook-spare".into())
            .spawn(move || segment::prepare_spare(fs.as_ref(), &path, capacity));
        match spawned {
            Ok(handle) => self.spare = Spare::Preparing(handle),
            Err(err) => tracing::warn!(%err, "cannot start preparing the next segment; segments start sparse"),
        }
    }

    /// Creates the next segment: from the spare if it is ready, else a sparse new file.
    fn create_next_segment(&mut self, segments_dir: &Path) -> std::io::Result<SegmentWriter> {
        if matches!(&self.spare, Spare::Preparing(h) if h.is_finished()) {
            if let Spare::Preparing(handle) = std::mem::replace(&mut self.spare, Spare::Absent) {
                match handle.join() {
                    Ok(Ok(())) => self.spare = Spare::Ready,
                    Ok(Err(err)) => tracing::warn!(%err, "preparing the next segment failed; creating it sparse"),
                    Err(_) => tracing::warn!("the segment preparation thread panicked; creating it sparse"),
                }
            }
        }
        let fsys = self.options.fs.as_ref();
        if matches!(self.spare, Spare::Ready) {
            self.spare = Spare::Absent;
            let spare = self.spare_path();
            let now = self.options.clock.now_us();
            match SegmentWriter::create_from_spare(fsys, segments_dir, &spare, self.next_position, now) {
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    tracing::warn!("the prepared next segment disappeared; creating it sparse");
                }
                created => return created,
            }
        }
        let now = self.options.clock.now_us();
        SegmentWriter::create(fsys, segments_dir, self.next_position, self.options.segment_bytes, now)
    }

    /// Waits for a running spare preparation, so no thread touches the directory after close.
    fn finish_spare(&mut self) {
        if let Spare::Preparing(handle) = std::mem::replace(&mut self.spare, Spare::Absent) {
            if let Ok(Ok(())) = handle.join() {
                self.spare = Spare::Ready;
            }
        }
    }

    /// The writer thread's loop: runs until a shutdown request or until every sender is gone.
    pub fn run(mut self, requests: Receiver<Request>) {
        loop {
            let first = match self.next_request(&requests) {
                Some(request) => request,
                None => {
                    // Every `Store` handle is gone without a shutdown: still close cleanly.
                    let _ = self.shutdown();
                    return;
                }
            };
            let mut group = vec![first];
            while group.len() < MAX_GROUP_APPENDS {
                match requests.try_recv() {
                    Ok(request) => group.push(request),
                    Err(_) => break,
                }
            }
            if self.process_group(group) {
                return;
            }
        }
    }

    /// Waits for a request; with `SyncMode::Every` also wakes to sync written data on time.
    fn next_request(&mut self, requests: &Receiver<Request>) -> Option<Request> {
        // A lone appender sends its next append right after its acknowledgement; catching it
        // while still awake saves a thread wake-up, a real share of a 100 µs fdatasync.
        let spin_until = Instant::now() + WRITER_SPIN;
        while Instant::now() < spin_until {
            if let Ok(request) = requests.try_recv() {
                return Some(request);
            }
            std::hint::spin_loop();
        }
        loop {
            let wait = match self.options.sync {
                SyncMode::Every(interval) if self.unsynced => interval.saturating_sub(self.last_sync.elapsed()),
                _ => return requests.recv().ok(),
            };
            match requests.recv_timeout(wait) {
                Ok(request) => return Some(request),
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.sync_now();
                }
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Handles one group; returns true when the writer must stop (shutdown).
    fn process_group(&mut self, group: Vec<Request>) -> bool {
        for request in group {
            match request {
                Request::Append(append, reply) => self.stage(append, reply, None),
                Request::Delete { stream, expected, reply } => self.stage_delete(stream, expected, reply),
                Request::Sync(reply) => {
                    self.commit();
                    let _ = reply.send(self.sync_now());
                }
                Request::Shutdown(reply) => {
                    let _ = reply.send(self.shutdown());
                    return true;
                }
            }
        }
        self.commit();
        false
    }

    fn shutdown(&mut self) -> Result<()> {
        self.commit();
        self.finish_spare();
        let result = self.sync_now().and_then(|()| {
            if self.failed.is_some() {
                return Ok(()); // never mark a failed writer's data as cleanly shut down
            }
            let clean = self.shared.dir.join(CLEAN_FILE);
            write_file_atomically(self.options.fs.as_ref(), &clean, self.shared.head().to_string().as_bytes())
        });
        self.shared.mark_closed();
        result
    }

    fn sync_now(&mut self) -> Result<()> {
        if let Some(reason) = &self.failed {
            return Err(Error::WriterFailed(reason.clone()));
        }
        if self.unsynced {
            if let Err(err) = self.segment.sync() {
                return Err(self.fail(format!("fdatasync of {} failed: {err}", self.segment.path().display())));
            }
            self.shared.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
            self.unsynced = false;
            self.last_sync = Instant::now();
        }
        Ok(())
    }

    /// Stops the writer for good and returns the error to hand out.
    fn fail(&mut self, reason: String) -> Error {
        tracing::error!(%reason, "writer stopped");
        self.failed = Some(reason.clone());
        Error::WriterFailed(reason)
    }

    /// The stream's version including appends pending in this group.
    fn current_version(&self, stream: &str) -> u64 {
        match self.pending_versions.get(stream) {
            Some(version) => *version,
            None => self.shared.state.read().streams.version(stream),
        }
    }

    /// True when `stream` is deleted, or deleted by the pending group.
    fn is_deleted(&self, stream: &str) -> bool {
        self.pending_tombstones.contains(stream) || self.shared.state.read().is_deleted(stream)
    }

    /// Checks a deletion and stages its tombstone: one event on the `$deleted` stream.
    fn stage_delete(&mut self, stream: String, expected: ExpectedVersion, reply: Sender<Result<AppendResult>>) {
        if self.is_deleted(&stream) {
            let _ = reply.send(Err(Error::StreamDeleted(stream)));
            return;
        }
        let actual = self.current_version(&stream);
        if !expected.accepts(actual) {
            let _ = reply.send(Err(Error::WrongExpectedVersion { stream, expected, actual }));
            return;
        }
        let tombstone = Tombstone { stream: stream.clone(), version: actual };
        // A struct of a string and an integer always serializes.
        let data = serde_json::to_vec(&tombstone).unwrap_or_default();
        let event = NewEvent::new(TOMBSTONE_TYPE, data);
        let encoded_bytes = record::encoded_len(TOMBSTONE_STREAM.len(), TOMBSTONE_TYPE.len(), 0, event.data.len());
        let append = AppendRequest {
            stream: TOMBSTONE_STREAM.to_string(),
            expected: ExpectedVersion::Any,
            events: vec![event],
            ids: vec![*uuid::Uuid::new_v4().as_bytes()],
            client_ids: false,
            encoded_bytes,
        };
        self.stage(append, reply, Some(stream));
    }

    /// Checks and encodes one append into the group buffer (or answers it at once).
    fn stage(&mut self, append: AppendRequest, reply: Sender<Result<AppendResult>>, deletes: Option<String>) {
        if let Some(reason) = &self.failed {
            let _ = reply.send(Err(Error::WriterFailed(reason.clone())));
            return;
        }
        if deletes.is_none() && self.is_deleted(&append.stream) {
            let _ = reply.send(Err(Error::StreamDeleted(append.stream)));
            return;
        }
        // An id already pending in this group: commit the group first so the check below
        // sees it as stored (and can answer idempotently).
        if append.client_ids && append.ids.iter().any(|id| self.pending_ids.contains(id)) {
            self.commit();
        }
        let existing = if append.client_ids { find_existing(&self.shared.state.read(), &append) } else { Ok(None) };
        match existing {
            Ok(Some(original)) => {
                let _ = reply.send(Ok(original));
                return;
            }
            Ok(None) => {}
            Err(err) => {
                let _ = reply.send(Err(err));
                return;
            }
        }
        let actual = self.current_version(&append.stream);
        if !append.expected.accepts(actual) {
            let _ = reply.send(Err(Error::WrongExpectedVersion {
                stream: append.stream,
                expected: append.expected,
                actual,
            }));
            return;
        }
        let needed = (self.buf.len() + append.encoded_bytes) as u64;
        if needed > self.segment.remaining() && !(self.buf.is_empty() && self.segment.is_empty()) {
            self.commit();
            if let Err(err) = self.roll_over() {
                let _ = reply.send(Err(err));
                return;
            }
        } else if self.buf.len() + append.encoded_bytes > MAX_GROUP_BYTES {
            self.commit();
        }
        if let Some(reason) = &self.failed {
            let _ = reply.send(Err(Error::WriterFailed(reason.clone())));
            return;
        }
        if let Some(stream) = &deletes {
            self.pending_tombstones.insert(stream.clone());
        }
        self.encode(append, actual, reply, deletes);
    }

    fn encode(
        &mut self,
        append: AppendRequest,
        actual: u64,
        reply: Sender<Result<AppendResult>>,
        deletes: Option<String>,
    ) {
        let count = append.events.len() as u64;
        let timestamp_us = self.options.clock.now_us();
        let result = AppendResult {
            first_version: actual + 1,
            last_version: actual + count,
            first_position: self.next_position,
            last_position: self.next_position + count - 1,
        };
        let mut frames = Vec::with_capacity(append.events.len());
        for (i, (event, id)) in append.events.iter().zip(&append.ids).enumerate() {
            let offset = self.segment.write_offset() + self.buf.len() as u64;
            assert!(offset < index::MAX_SEGMENT_BYTES, "segment offsets fit in u32");
            frames.push((offset as u32, *id));
            record::encode(
                &FrameRef {
                    position: result.first_position + i as u64,
                    version: result.first_version + i as u64,
                    timestamp_us,
                    id: *id,
                    batch_remaining: (count - 1 - i as u64) as u32,
                    stream: &append.stream,
                    event_type: &event.event_type,
                    metadata: &event.metadata,
                    data: &event.data,
                },
                &mut self.buf,
            );
            if append.client_ids {
                self.pending_ids.insert(*id);
            }
        }
        self.next_position += count;
        self.pending_versions.insert(append.stream.clone(), result.last_version);
        self.pending.push(PendingAppend { stream: append.stream, result, frames, deletes, reply });
    }

    /// Writes the group, syncs it (per the sync mode), publishes it and acknowledges it.
    fn commit(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let outcome = self.write_group();
        let pending = std::mem::take(&mut self.pending);
        self.pending_versions.clear();
        self.pending_ids.clear();
        self.pending_tombstones.clear();
        match outcome {
            Ok(()) => {
                self.publish(&pending);
                for append in pending {
                    let _ = append.reply.send(Ok(append.result));
                }
                self.maybe_start_spare();
            }
            Err(err) => {
                self.next_position = self.shared.head() + 1;
                for append in pending {
                    let _ = append.reply.send(Err(Error::WriterFailed(err.to_string())));
                }
            }
        }
    }

    fn write_group(&mut self) -> Result<()> {
        if let Some(reason) = &self.failed {
            return Err(Error::WriterFailed(reason.clone()));
        }
        let written = self.segment.append(&self.buf);
        let bytes = self.buf.len() as u64;
        self.buf.clear();
        if let Err(err) = written {
            return Err(self.fail(format!("write to {} failed: {err}", self.segment.path().display())));
        }
        self.unsynced = true;
        let stats = &self.shared.stats;
        stats.bytes_written.fetch_add(bytes, Ordering::Relaxed);
        stats.groups.fetch_add(1, Ordering::Relaxed);
        match self.options.sync {
            SyncMode::Always => self.sync_now(),
            SyncMode::Every(interval) if self.last_sync.elapsed() >= interval => self.sync_now(),
            _ => Ok(()),
        }
    }

    /// Makes the committed group visible to readers and wakes subscribers.
    fn publish(&mut self, pending: &[PendingAppend]) {
        let mut last = self.shared.head();
        let mut events = 0;
        {
            let mut state = self.shared.state.write();
            if (state.active.map.len() as u64) < self.segment.write_offset() {
                // An oversized batch grew the file past its mapping: map it again.
                match map_segment(self.segment.path(), self.segment.base_position()) {
                    Ok(map) => state.active.map = Arc::new(map),
                    Err(err) => {
                        drop(state);
                        let err = self.fail(format!("remapping the active segment failed: {err}"));
                        tracing::error!(%err, "cannot publish");
                        return;
                    }
                }
            }
            for append in pending {
                for (i, (offset, id)) in append.frames.iter().enumerate() {
                    state.active.index.add(&IndexedEvent {
                        stream: &append.stream,
                        version: append.result.first_version + i as u64,
                        position: append.result.first_position + i as u64,
                        id: *id,
                        offset: *offset,
                    });
                }
                state.streams.set_version(&append.stream, append.result.last_version);
                if let Some(deleted) = &append.deletes {
                    let mut tombstones = (*state.tombstones).clone();
                    tombstones.insert(deleted.as_str().into());
                    state.tombstones = Arc::new(tombstones);
                }
                assert_eq!(append.result.first_position, last + 1, "positions are contiguous across appends");
                last = append.result.last_position;
                events += append.frames.len() as u64;
            }
        }
        let stats = &self.shared.stats;
        stats.appends.fetch_add(pending.len() as u64, Ordering::Relaxed);
        stats.events.fetch_add(events, Ordering::Relaxed);
        self.shared.publish_head(last);
    }

    /// Seals the active segment (sync, truncate, index file) and starts a new one.
    fn roll_over(&mut self) -> Result<()> {
        assert!(self.pending.is_empty(), "roll over only between groups");
        let segments_dir = self.shared.dir.join(SEGMENTS_DIR);
        let base = self.segment.base_position();
        let builder = self.shared.state.read().active.index.to_builder();
        // Seal first: once the next segment exists, this one must already end at its last frame.
        let old_path = self.segment.path().to_path_buf();
        if let Err(err) = self.segment.seal() {
            return Err(self.fail(format!("sealing {} failed: {err}", old_path.display())));
        }
        self.unsynced = false;
        match self.create_next_segment(&segments_dir) {
            Ok(writer) => self.segment = writer,
            Err(err) => return Err(self.fail(format!("creating segment {} failed: {err}", self.next_position))),
        }
        let index_path = segments_dir.join(index::file_name(base));
        let sealed = map_segment(&old_path, base).and_then(|map| {
            let header =
                segment::decode_header(map.bytes()).map_err(|reason| Error::corruption(&old_path, 0, reason))?;
            let index_bytes = builder.encode(base, map.len() as u64, header_crc(&map));
            write_file_atomically(self.options.fs.as_ref(), &index_path, &index_bytes)?;
            let index = SegmentIndex::open(&index_path).map_err(|reason| Error::corruption(&index_path, 0, reason))?;
            Ok(Arc::new(SealedSegment { header, map: Arc::new(map), index }))
        });
        let sealed = match sealed {
            Ok(sealed) => sealed,
            Err(err) => return Err(self.fail(format!("writing the index of {} failed: {err}", old_path.display()))),
        };
        let new_map = match map_segment(self.segment.path(), self.next_position) {
            Ok(map) => Arc::new(map),
            Err(err) => return Err(self.fail(format!("mapping the new segment failed: {err}"))),
        };
        let mut state = self.shared.state.write();
        let old_active = std::mem::replace(
            &mut state.active,
            ActiveSegment { map: new_map, index: ActiveIndex::new(self.next_position) },
        );
        for (stream, (first, positions)) in &old_active.index.streams {
            state.streams.add_sealed(stream, base, first + positions.len() as u64 - 1);
        }
        state.sealed.push(sealed);
        Ok(())
    }
}

/// Looks for the request's event ids in its stream. `Ok(Some)` when every event is already
/// stored with the same content, in order (a retried append); `Ok(None)` when none is;
/// an error when only some are, or one differs.
fn find_existing(state: &LogState, append: &AppendRequest) -> Result<Option<AppendResult>> {
    let sealed_bases = state.streams.get(&append.stream).map(|e| e.sealed.clone()).unwrap_or_default();
    if sealed_bases.is_empty() && !state.active.index.streams.contains_key(append.stream.as_str()) {
        return Ok(None);
    }
    let mut found: Vec<Option<RecordedEvent>> = Vec::with_capacity(append.ids.len());
    for id in &append.ids {
        found.push(find_in_stream(state, &append.stream, &sealed_bases, id)?);
    }
    if found.iter().all(Option::is_none) {
        return Ok(None);
    }
    let conflict = |i: usize, reason: &str| Error::IdempotencyConflict {
        stream: append.stream.clone(),
        id: uuid::Uuid::from_bytes(append.ids[i]),
        reason: reason.to_string(),
    };
    let mut stored = Vec::with_capacity(found.len());
    for (i, event) in found.into_iter().enumerate() {
        let Some(event) = event else {
            return Err(conflict(i, "some events of this append are already stored and this one is not"));
        };
        let new = &append.events[i];
        if event.event_type() != new.event_type
            || event.data() != new.data.as_slice()
            || event.metadata() != new.metadata.as_slice()
        {
            return Err(conflict(i, "an event with this id is stored with different content"));
        }
        if let Some(prev) = stored.last() {
            let prev: &RecordedEvent = prev;
            if event.version() != prev.version() + 1 {
                return Err(conflict(i, "the stored events with these ids are not one contiguous append"));
            }
        }
        stored.push(event);
    }
    let (first, last) = (&stored[0], &stored[stored.len() - 1]);
    Ok(Some(AppendResult {
        first_version: first.version(),
        last_version: last.version(),
        first_position: first.position(),
        last_position: last.position(),
    }))
}

fn find_in_stream(
    state: &LogState,
    stream: &str,
    sealed_bases: &[u64],
    id: &[u8; 16],
) -> Result<Option<RecordedEvent>> {
    let mut candidates = Vec::new();
    for base in sealed_bases {
        if let Ok(i) = state.sealed.binary_search_by_key(base, |s| s.index.base_position) {
            state.sealed[i].index.positions_with_id(id, &mut candidates);
        }
    }
    state.active.index.positions_with_id(id, &mut candidates);
    for position in candidates {
        if let Some((map, offset)) = state.locate(position) {
            let event = decode_event(map, offset, position)?;
            if event.id == *id && event.stream() == stream {
                return Ok(Some(event));
            }
        }
    }
    Ok(None)
}
