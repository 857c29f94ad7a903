//! The shared reader state: sealed and active segments, the stream directory, the published
//! head, and how a located frame is read and decoded.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};

use crate::archived::ArchivedEventsSlot;
use crate::block_cache::BlockCache;
use crate::datadir::{DataDir, Manifest, SyncedEnd};
use crate::error::{Error, Result};
use crate::index::{ActiveIndex, SegmentIndex, StreamDirectory};
use crate::record::{self, FrameRef, BODY_FIXED_BYTES, FRAME_HEADER_BYTES};
use crate::segment::{ReadError, SegmentHeader, SegmentReader};
use crate::storage::FileSystem;
use crate::types::RecordedEvent;

/// A sealed segment: its header, a reader for its bytes, and its index (in memory).
#[derive(Debug)]
pub struct SealedSegment {
    pub header: SegmentHeader,
    pub reader: Arc<SegmentReader>,
    pub index: SegmentIndex,
    /// The file length when it was sealed (or compacted).
    pub len: u64,
    /// The stored checksum of its header: which version of the file this is.
    pub header_crc: u32,
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

/// The active segment as readers see it. Its reader's readable end is the published end.
#[derive(Debug)]
pub struct ActiveSegment {
    pub reader: Arc<SegmentReader>,
    pub index: ActiveIndex,
    pub header_crc: u32,
    /// How far the file is known synced (set by the writer after each fdatasync), which the
    /// manifest records so that a crash cannot pass off the loss of synced events as a torn tail.
    pub synced: Option<SyncedEnd>,
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
    /// The segment reader and byte offset of the frame at `position`, if it is published.
    pub fn locate(&self, position: u64) -> Option<(&Arc<SegmentReader>, u32)> {
        if position >= self.active.index.base_position {
            return self.active.index.offset_of(position).map(|offset| (&self.active.reader, offset));
        }
        let i = self.sealed.partition_point(|s| s.base_position() <= position).checked_sub(1)?;
        let segment = &self.sealed[i];
        segment.index.offset_of(position).map(|offset| (&segment.reader, offset))
    }

    /// For a scan of `$all` from `position`: the first stored frame at or after it, up to
    /// `head`, as (segment, its position, its offset, the last position to scan in that
    /// segment). Skips the gaps compaction left, across segments if need be.
    pub fn locate_from(&self, position: u64, head: u64) -> Option<(&Arc<SegmentReader>, u64, u32, u64)> {
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
                    return Some((&segment.reader, at, offset, segment.index.last_position().min(head)));
                }
                i += 1;
            }
        }
        let from = position.max(active_base);
        self.active.index.offset_of(from).map(|offset| (&self.active.reader, from, offset, head))
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

/// Reads and decodes the frame at `offset` of `reader` as the event at `position`; damage, a
/// short file or a position mismatch is corruption naming the file and offset.
pub fn decode_event(reader: &SegmentReader, offset: u32, position: u64) -> Result<RecordedEvent> {
    let at = u64::from(offset);
    let buf = reader.read_frame(at).map_err(|e| read_error(reader, at, e))?;
    let (frame, _) = record::decode(&buf).map_err(|e| Error::corruption(reader.path(), at, e.to_string()))?;
    if frame.position != position {
        return Err(Error::corruption(
            reader.path(),
            at,
            format!("frame holds position {} where the index says {position}", frame.position),
        ));
    }
    let layout = FrameLayout::of(0, &frame);
    // `buf` moves into the event's handle: one allocation, no copy of the frame.
    Ok(layout.into_event(Arc::new(buf)))
}

/// Reads the frames at `located` (reader, offset, position) into one buffer and decodes them:
/// the events of one stream read share a single allocation.
pub fn read_events(located: &[(Arc<SegmentReader>, u32, u64)]) -> Result<Vec<RecordedEvent>> {
    // All the frames' cache misses first, overlapping (a copy waits for each in turn).
    for (reader, offset, _) in located {
        reader.prefetch_frame(u64::from(*offset));
    }
    let mut buf = Vec::new();
    let mut starts = Vec::with_capacity(located.len());
    for (reader, offset, _) in located {
        let at = u64::from(*offset);
        starts.push(reader.read_frame_into(at, &mut buf).map_err(|e| read_error(reader, at, e))?);
    }
    let buf = Arc::new(Bytes::from(buf));
    let mut events = Vec::with_capacity(located.len());
    for ((reader, offset, position), start) in located.iter().zip(starts) {
        let at = u64::from(*offset);
        let (frame, _) =
            record::decode(&buf[start..]).map_err(|e| Error::corruption(reader.path(), at, e.to_string()))?;
        if frame.position != *position {
            return Err(Error::corruption(
                reader.path(),
                at,
                format!("frame holds position {} where the index says {position}", frame.position),
            ));
        }
        events.push(event_from_frame(&buf, start, &frame));
    }
    Ok(events)
}

/// A failed read as the engine's error: I/O stays I/O (the file may come back), a frame that
/// does not decode or a file shorter than the index says is corruption.
pub fn read_error(reader: &SegmentReader, offset: u64, err: ReadError) -> Error {
    if let ReadError::Io(e) = &err {
        if let Some(c) = crate::segment::corruption_in(e) {
            // A compressed block that fails its checks: its offset in the file.
            return Error::corruption(reader.path(), c.offset, format!("{} (reading logical byte {offset})", c.reason));
        }
    }
    match err {
        ReadError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::corruption(reader.path(), offset, format!("segment file is shorter than its index says: {e}"))
        }
        ReadError::Io(e) => Error::io(format!("reading {} at byte {offset}", reader.path().display()), e),
        ReadError::Frame(e) => Error::corruption(reader.path(), offset, e.to_string()),
    }
}

/// Builds a `RecordedEvent` for a frame decoded at `offset` of `buf`: it shares `buf`.
pub fn event_from_frame(buf: &Arc<Bytes>, offset: usize, frame: &FrameRef<'_>) -> RecordedEvent {
    FrameLayout::of(offset, frame).into_event(Arc::clone(buf))
}

/// Where a decoded frame's fields lie in its buffer.
struct FrameLayout {
    position: u64,
    version: u64,
    timestamp_us: i64,
    id: [u8; 16],
    stream: (u32, u32),
    event_type: (u32, u32),
    metadata: (u32, u32),
    data: (u32, u32),
}

impl FrameLayout {
    fn of(offset: usize, frame: &FrameRef<'_>) -> Self {
        let stream_start = (offset + FRAME_HEADER_BYTES + BODY_FIXED_BYTES) as u32;
        let type_start = stream_start + frame.stream.len() as u32;
        let meta_start = type_start + frame.event_type.len() as u32;
        let data_start = meta_start + frame.metadata.len() as u32;
        FrameLayout {
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

    fn into_event(self, buf: Arc<Bytes>) -> RecordedEvent {
        RecordedEvent {
            buf,
            position: self.position,
            version: self.version,
            timestamp_us: self.timestamp_us,
            id: self.id,
            stream: self.stream,
            event_type: self.event_type,
            metadata: self.metadata,
            data: self.data,
        }
    }
}

/// State shared by the writer, readers and subscriptions.
#[derive(Debug)]
pub struct Shared {
    pub dir: DataDir,
    /// Held while the manifest is rebuilt and written, so the writer's rollover and a
    /// compaction never write it at once (or from a stale view).
    pub manifest_lock: Mutex<u64>,
    pub state: RwLock<LogState>,
    /// Last published position (0 when the log is empty).
    pub head: AtomicU64,
    /// Woken whenever `head` moves or the store closes.
    pub head_lock: Mutex<()>,
    pub head_changed: Condvar,
    pub closed: AtomicBool,
    pub stats: Stats,
    /// Blocks of every segment, for random reads.
    pub cache: Arc<BlockCache>,
    /// The cold tier's event ids, for idempotent appends (none: the hot tier alone is checked).
    pub archived_events: ArchivedEventsSlot,
    /// Why the writer stopped for good, once it has (a failed write, fdatasync or rollover):
    /// every later append is refused until the store is opened again.
    pub writer_failure: std::sync::OnceLock<String>,
}

/// Counters for INFO, metrics and benchmarks.
#[derive(Debug, Default)]
pub struct Stats {
    pub appends: AtomicU64,
    pub events: AtomicU64,
    pub fsyncs: AtomicU64,
    pub groups: AtomicU64,
    /// Groups a lone appender committed on its own thread (`wal::queue`).
    pub groups_on_appender_thread: AtomicU64,
    pub bytes_written: AtomicU64,
    /// How long each fdatasync of the active segment took, µs.
    pub fsync_micros: crate::types::Log2Counts,
    /// How many events each group commit wrote.
    pub group_events: crate::types::Log2Counts,
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

    pub(super) fn publish_head(&self, head: u64) {
        let _guard = self.head_lock.lock();
        self.head.store(head, Ordering::Release);
        self.head_changed.notify_all();
    }

    pub fn mark_closed(&self) {
        let _guard = self.head_lock.lock();
        self.closed.store(true, Ordering::Release);
        self.head_changed.notify_all();
    }
}

impl LogState {
    /// Swaps the sealed segments based at `inputs` (adjacent, in order) for `replacement`, a
    /// compaction of them, and points the stream directory at it.
    pub fn replace_sealed(&mut self, inputs: &[u64], replacement: Arc<SealedSegment>) -> Result<()> {
        let state = self;
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

    /// The manifest that describes this state: every sealed segment, then the active one.
    pub fn manifest(&self, generation: u64) -> Manifest {
        Manifest::of_segments(
            generation,
            self.sealed.iter().map(|s| (s.base_position(), s.end_position(), s.len, s.header_crc)),
            (self.active.index.base_position, self.active.header_crc),
        )
        .with_active_synced(self.active.synced)
    }
}

impl Shared {
    /// Changes the set of segments with `update` (under the state's write lock) and records
    /// the new set in the manifest, all under the manifest lock: the writer's rollover and a
    /// compaction never interleave their updates or write the manifest from a stale view.
    pub fn update_and_record(
        &self,
        fsys: &dyn FileSystem,
        update: impl FnOnce(&mut LogState) -> Result<()>,
    ) -> Result<()> {
        let mut generation = self.manifest_lock.lock();
        update(&mut self.state.write())?;
        let manifest = self.state.read().manifest(*generation + 1);
        self.dir.write_manifest(fsys, &manifest)?;
        *generation += 1;
        Ok(())
    }
}
