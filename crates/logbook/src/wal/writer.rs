//! The single writer: group commit, expected versions, idempotency, tombstones, segment
//! rollover.
//!
//! One writer owns the active segment, one group at a time (`super::queue`). Appenders send
//! [`Request`]s over a bounded crossbeam channel to the writer thread, which takes everything
//! queued as a group (a lone appender with nothing queued hands its request to the writer on
//! its own thread instead, as a group of one); the writer checks expected versions
//! and idempotency, encodes every frame into one buffer, writes it with one call, issues one
//! fdatasync for the whole group, then publishes the new events to readers and acknowledges
//! each appender. Readers see only published events: with `SyncMode::Always` that means
//! durable ones. A segment is sealed (and a new one created) only between groups, so a group
//! — and therefore every atomic batch — lives in exactly one segment.
//!
//! After an I/O error on write or fsync the writer stops for good (fsyncgate): every pending
//! and later append gets [`Error::WriterFailed`]; only reopening the store re-reads the truth.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::reply::ReplySender;

use super::idempotency::find_existing;
use super::spare::Spare;
use super::state::{ActiveSegment, SealedSegment, Shared};
use super::tombstones::{Tombstone, TOMBSTONE_STREAM, TOMBSTONE_TYPE};
use crate::datadir::{CleanRecord, LastSegment, SyncedEnd};
use crate::error::{Error, Result};
use crate::index::{self, ActiveIndex, SegmentIndex};
use crate::record::{self, FrameRef};
use crate::segment::{self, SegmentReader, SegmentWriter};
use crate::options::{Options, SyncMode};
use crate::types::{AppendResult, ExpectedVersion, NewEvent};

/// Most appends the writer takes into one group commit.
pub const MAX_GROUP_APPENDS: usize = 1024;
/// Most bytes the writer buffers for one group before committing it.
pub const MAX_GROUP_BYTES: usize = 32 * 1024 * 1024;
/// After a failed record of how far the log is synced, the least wait before the next try.
pub const RECORD_RETRY: Duration = Duration::from_secs(1);

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
    Append(AppendRequest, ReplySender<Result<AppendResult>>),
    /// Several appends (parts) applied all or none, as one batch: one countdown of batch
    /// markers across every part's frames, in one group, in one segment.
    AppendBatch(Vec<AppendRequest>, ReplySender<Result<Vec<AppendResult>>>),
    /// Delete a stream: write a tombstone if its version satisfies the expected version.
    Delete {
        stream: String,
        expected: ExpectedVersion,
        reply: ReplySender<Result<AppendResult>>,
    },
    /// Make everything written so far durable (for `SyncMode::Never`/`Every`).
    Sync(ReplySender<Result<()>>),
    /// Nothing to do: wakes the writer thread to look at its timed work again, after a group
    /// committed on an appender's thread left some (`super::queue`).
    Wake,
    /// Commit, sync, mark the shutdown clean and stop.
    Shutdown(ReplySender<Result<()>>),
}

/// Checks an append's explicit times against the time of the stream's event before it
/// (`before`; `None` when the stream is empty). Events without a time count as `now`.
fn check_stream_times(append: &AppendRequest, before: Option<i64>, now: i64) -> Result<()> {
    let mut previous = before;
    for (i, event) in append.events.iter().enumerate() {
        if let (Some(t), Some(p)) = (event.time_us, previous) {
            if t < p {
                return Err(Error::InvalidInput(format!(
                    "event {i} ({}, {}) of stream '{}': time {} is before the stream's previous event's {} \
                     (times never go back within a stream)",
                    uuid::Uuid::from_bytes(append.ids[i]),
                    event.event_type,
                    append.stream,
                    crate::calendar::rfc3339(t),
                    crate::calendar::rfc3339(p)
                )));
            }
        }
        previous = Some(event.time_us.unwrap_or(now));
    }
    Ok(())
}

/// The writer's state: held by the writer thread for each group, or by a lone appender
/// committing its own append (`super::queue`).
pub struct Writer {
    shared: Arc<Shared>,
    segment: SegmentWriter,
    options: Options,
    next_position: u64,
    buf: Vec<u8>,
    /// Appends encoded into `buf`, waiting for the group commit.
    pending: Vec<PendingAppend>,
    /// Versions of streams changed by the pending group. Like every map keyed by names or ids
    /// that clients choose, hashed with SipHash (see `index::ActiveIndex::streams`).
    pending_versions: HashMap<String, u64>,
    pending_ids: HashSet<[u8; 16]>,
    /// Streams deleted by the pending group.
    pending_tombstones: HashSet<String>,
    /// The pending group's events, already encoded into `buf`: freed after the group's
    /// acknowledgements are sent, so the frees are not on their path (except a lone
    /// appender's own group, which it commits and then frees before its append returns).
    encoded_events: Vec<Vec<NewEvent>>,
    failed: Option<String>,
    unsynced: bool,
    /// Frames written since the last fdatasync (zero-fill is not counted): while false, the
    /// next frame written gets the sync mark ([`record::SYNC_MARK`]).
    frames_unsynced: bool,
    last_sync: Instant,
    /// How far the active segment is synced (after the last fdatasync), and how far the
    /// manifest records it, and when it last did (see [`Options::synced_record_every`]).
    synced_end: Option<SyncedEnd>,
    recorded_end: Option<SyncedEnd>,
    last_record: Instant,
    /// The last record failed: wait at least [`RECORD_RETRY`] before the next try.
    record_failed: bool,
    spare: Spare,
    /// Stored checksum of the last frame written to the active segment (0: none yet), for
    /// the clean-shutdown record.
    last_frame_crc: u32,
    /// The same for the pending group's last frame.
    pending_last_crc: u32,
    /// A shutdown request was handled.
    stopped: bool,
}

struct PendingAppend {
    stream: String,
    result: AppendResult,
    /// (offset in the segment, id) for every event, in order.
    frames: Vec<(u32, [u8; 16])>,
    /// The stream this append's tombstone deletes.
    deletes: Option<String>,
    ack: Ack,
}

/// Who hears about a pending append once its group is committed (or fails).
enum Ack {
    /// A single append's caller.
    One(ReplySender<Result<AppendResult>>),
    /// A part of a batch that is not its last: the last part answers for all.
    Part,
    /// The last part of a batch: the caller, answered with the results of every part.
    Batch(ReplySender<Result<Vec<AppendResult>>>),
}

impl Writer {
    /// A writer continuing after the last frame recovery found (whose stored checksum is
    /// `last_frame_crc`, 0 when the active segment holds none).
    pub fn new(shared: Arc<Shared>, segment: SegmentWriter, options: Options, last_frame_crc: u32) -> Self {
        let next_position = shared.head() + 1;
        let recorded_end = shared.state.read().active.synced;
        let spare = Spare::new(shared.dir.spare_path(), options.segment_bytes, Arc::clone(&options.fs));
        Writer {
            shared,
            segment,
            options,
            next_position,
            buf: Vec::new(),
            pending: Vec::new(),
            pending_versions: HashMap::default(),
            pending_ids: HashSet::default(),
            pending_tombstones: HashSet::default(),
            encoded_events: Vec::new(),
            failed: None,
            unsynced: false,
            frames_unsynced: false,
            last_sync: Instant::now(),
            synced_end: recorded_end,
            recorded_end,
            last_record: Instant::now(),
            record_failed: false,
            spare,
            last_frame_crc,
            pending_last_crc: last_frame_crc,
            stopped: false,
        }
    }

    /// Creates the next segment: from the spare if it is ready, else a sparse new file.
    fn create_next_segment(&mut self) -> std::io::Result<SegmentWriter> {
        let fsys = self.options.fs.as_ref();
        let segments_dir = self.shared.dir.segments_dir();
        if let Some(spare) = self.spare.take_ready() {
            let now = self.options.clock.now_us();
            let capacity = self.options.segment_bytes;
            match SegmentWriter::create_from_spare(fsys, segments_dir, &spare, self.next_position, capacity, now) {
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    tracing::warn!("the prepared next segment disappeared; creating it sparse");
                }
                created => return created,
            }
        }
        let now = self.options.clock.now_us();
        SegmentWriter::create(fsys, segments_dir, self.next_position, self.options.segment_bytes, now)
    }

    /// How long the idle writer may wait for its next request before it has timed work to
    /// do: with `SyncMode::Every`, syncing written data on time; and recording how far the
    /// log is synced once that has waited its interval (the last appends before the writer
    /// goes idle get recorded too, not only when more come). `None`: nothing is due.
    pub(super) fn idle_wait(&self) -> Option<Duration> {
        // A failed writer waits for requests only (each is refused): nothing to sync or record.
        let sync_in = match self.options.sync {
            SyncMode::Every(interval) if self.unsynced && self.failed.is_none() => {
                Some(interval.saturating_sub(self.last_sync.elapsed()))
            }
            _ => None,
        };
        let record_in = (self.failed.is_none() && self.synced_end != self.recorded_end)
            .then(|| self.record_interval().saturating_sub(self.last_record.elapsed()));
        sync_in.into_iter().chain(record_in).min()
    }

    /// The timed work [`Writer::idle_wait`] waited for.
    pub(super) fn on_idle_timeout(&mut self) {
        let sync_due = matches!(self.options.sync, SyncMode::Every(_)) && self.unsynced && self.failed.is_none();
        if !sync_due || self.sync_now().is_ok() {
            self.record_synced();
        }
    }

    /// After a panic while handling a group (the writer already marked failed): refuses every
    /// append staged so far, so nobody waits for an acknowledgement that will not come.
    pub(super) fn refuse_staged(&mut self) {
        debug_assert!(self.failed.is_some(), "only a failed writer refuses what it staged");
        self.commit();
    }

    /// Marks the writer as stopped: nothing more is taken (its thread is gone).
    pub(super) fn stop(&mut self) {
        self.stopped = true;
    }

    /// True with `SyncMode::Every`, whose syncs the writer thread times.
    pub(super) fn times_its_syncs(&self) -> bool {
        matches!(self.options.sync, SyncMode::Every(_))
    }

    /// The store's counters.
    pub(super) fn stats(&self) -> &super::state::Stats {
        &self.shared.stats
    }

    /// True once a shutdown request was handled: nothing more is taken.
    pub(super) fn stopped(&self) -> bool {
        self.stopped
    }

    /// Handles one group; returns true when the writer must stop (shutdown).
    pub(super) fn process_group(&mut self, group: Vec<Request>) -> bool {
        for request in group {
            match request {
                Request::Append(append, reply) => self.stage(append, reply, None),
                Request::AppendBatch(parts, reply) => self.stage_batch(parts, reply),
                Request::Delete { stream, expected, reply } => self.stage_delete(stream, expected, reply),
                Request::Sync(reply) => {
                    self.commit();
                    let synced = self.sync_now();
                    if synced.is_ok() {
                        self.record_synced();
                    }
                    reply.send(synced);
                }
                Request::Shutdown(reply) => {
                    reply.send(self.shutdown());
                    self.stopped = true;
                    return true;
                }
                Request::Wake => {}
            }
        }
        self.commit();
        false
    }

    pub(super) fn shutdown(&mut self) -> Result<()> {
        self.commit();
        self.spare.finish();
        let result = self.sync_now().and_then(|()| {
            if self.failed.is_some() {
                return Ok(()); // never mark a failed writer's data as cleanly shut down
            }
            let record = CleanRecord {
                head: self.shared.head(),
                last: Some(LastSegment {
                    base: self.segment.base_position(),
                    written_len: self.segment.write_offset(),
                    last_frame_crc: self.last_frame_crc,
                }),
            };
            self.shared.dir.write_clean(self.options.fs.as_ref(), &record)
        });
        self.shared.mark_closed();
        result
    }

    fn sync_now(&mut self) -> Result<()> {
        if let Some(reason) = &self.failed {
            return Err(Error::WriterFailed(reason.clone()));
        }
        if self.unsynced {
            let started = Instant::now();
            if let Err(err) = self.segment.sync() {
                return Err(self.fail(format!("fdatasync of {} failed: {err}", self.segment.path().display())));
            }
            let stats = &self.shared.stats;
            stats.fsync_micros.record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
            stats.fsyncs.fetch_add(1, Ordering::Relaxed);
            self.unsynced = false;
            self.frames_unsynced = false;
            self.last_sync = Instant::now();
            // Every frame staged so far is written (a group's buffer is written before it
            // syncs), so everything up to the last assigned position is now durable.
            let last = self.next_position - 1;
            if last >= self.segment.base_position() {
                self.synced_end = Some(SyncedEnd { position: last, len: self.segment.write_offset() });
            }
        }
        Ok(())
    }

    /// How long after the last record the next may be made: the option's interval, and after a
    /// failed record at least [`RECORD_RETRY`] (a full disk is not hammered).
    fn record_interval(&self) -> Duration {
        let every = self.options.synced_record_every;
        if self.record_failed {
            every.max(RECORD_RETRY)
        } else {
            every
        }
    }

    /// Records in the manifest how far the active segment is synced, at most once per
    /// [`Options::synced_record_every`]; called after acknowledgements, off their path (a lone
    /// appender committing its own group waits for it: at most once per interval).
    fn record_synced(&mut self) {
        if self.failed.is_some()
            || self.synced_end == self.recorded_end
            || self.last_record.elapsed() < self.record_interval()
        {
            return;
        }
        let end = self.synced_end;
        let recorded = self.shared.update_and_record(self.options.fs.as_ref(), |state| {
            state.active.synced = end;
            Ok(())
        });
        self.last_record = Instant::now();
        self.record_failed = recorded.is_err();
        match recorded {
            Ok(()) => self.recorded_end = end,
            // The manifest on disk is still the previous one, whose record stays true (a lower
            // bound), and appends into the segment do not depend on it: try again next time.
            Err(err) => tracing::warn!(%err, "recording how far the active segment is synced failed; trying again later"),
        }
    }

    /// Stops the writer for good and returns the error to hand out.
    pub(super) fn fail(&mut self, reason: String) -> Error {
        tracing::error!(%reason, "writer stopped");
        let _ = self.shared.writer_failure.set(reason.clone());
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
    fn stage_delete(&mut self, stream: String, expected: ExpectedVersion, reply: ReplySender<Result<AppendResult>>) {
        if self.is_deleted(&stream) {
            reply.send(Err(Error::StreamDeleted(stream)));
            return;
        }
        let actual = self.current_version(&stream);
        if !expected.accepts(actual) {
            reply.send(Err(Error::WrongExpectedVersion { stream, expected, actual }));
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
    fn stage(&mut self, append: AppendRequest, reply: ReplySender<Result<AppendResult>>, deletes: Option<String>) {
        if let Some(reason) = &self.failed {
            reply.send(Err(Error::WriterFailed(reason.clone())));
            return;
        }
        if deletes.is_none() && self.is_deleted(&append.stream) {
            reply.send(Err(Error::StreamDeleted(append.stream)));
            return;
        }
        // An id already pending in this group: commit the group first so the check below
        // sees it as stored (and can answer idempotently).
        if append.client_ids && append.ids.iter().any(|id| self.pending_ids.contains(id)) {
            self.commit();
        }
        let existing = if append.client_ids {
            find_existing(&self.shared.state.read(), self.shared.archived_events.get(), &append)
        } else {
            Ok(None)
        };
        match existing {
            Ok(Some(original)) => {
                reply.send(Ok(original));
                return;
            }
            Ok(None) => {}
            Err(err) => {
                reply.send(Err(err));
                return;
            }
        }
        let explicit_times = append.events.iter().any(|e| e.time_us.is_some());
        if explicit_times && self.pending_versions.contains_key(&append.stream) {
            // The stream's last time is in the pending group: commit it so it is readable.
            self.commit();
        }
        let actual = self.current_version(&append.stream);
        if !append.expected.accepts(actual) {
            reply.send(Err(Error::WrongExpectedVersion {
                stream: append.stream,
                expected: append.expected,
                actual,
            }));
            return;
        }
        let now = self.options.clock.now_us();
        if explicit_times {
            let stored = match self.stored_last_time(&append.stream) {
                Ok(stored) => stored,
                Err(err) => {
                    reply.send(Err(err));
                    return;
                }
            };
            if let Err(err) = check_stream_times(&append, stored, now) {
                reply.send(Err(err));
                return;
            }
        }
        if let Err(err) = self.make_room(append.encoded_bytes) {
            reply.send(Err(err));
            return;
        }
        if let Some(stream) = &deletes {
            self.pending_tombstones.insert(stream.clone());
        }
        self.encode(append, actual, 0, Ack::One(reply), deletes, now);
    }

    /// The time of `stream`'s last stored event (`None`: no events). Read from the segment
    /// (one frame, usually in the block cache), and only for appends with explicit times, so
    /// no per-stream time is kept in memory. Call it with nothing of the stream pending.
    fn stored_last_time(&self, stream: &str) -> Result<Option<i64>> {
        let state = self.shared.state.read();
        let version = state.streams.version(stream);
        if version == 0 {
            return Ok(None);
        }
        let mut positions = state.stream_positions(stream, version, version);
        if positions.is_empty() {
            // Compaction keeps a stream's newest event, but be safe: the last one stored.
            positions = state.stream_positions(stream, 1, version);
        }
        let Some(&(_, position)) = positions.last() else {
            return Ok(None);
        };
        match state.locate(position) {
            Some((reader, offset)) => Ok(Some(super::state::decode_event(reader, offset, position)?.timestamp_us())),
            None => Ok(None),
        }
    }

    /// Where the active segment ends: its preallocated length, and at most the configured
    /// size (one made at a larger size, by a store opened with other options or by `repair`,
    /// is rolled over at this store's size).
    fn segment_end(&self) -> u64 {
        self.segment.capacity().min(self.options.segment_bytes)
    }

    /// Makes room in the group for `bytes` more encoded bytes that must stay in one segment:
    /// commits and rolls over when the segment cannot hold them (unless nothing is in it yet:
    /// an oversized append goes into an empty segment, which grows past its preallocation), or
    /// commits when the group would grow too big. Fails when the writer has failed.
    fn make_room(&mut self, bytes: usize) -> Result<()> {
        let needed = (self.buf.len() + bytes) as u64;
        let room = self.segment_end().saturating_sub(self.segment.write_offset());
        if needed > room && !(self.buf.is_empty() && self.segment.is_empty()) {
            self.commit();
            self.roll_over()?;
        } else if self.buf.len() + bytes > MAX_GROUP_BYTES {
            self.commit();
        }
        match &self.failed {
            Some(reason) => Err(Error::WriterFailed(reason.clone())),
            None => Ok(()),
        }
    }

    /// Checks a batch as a whole (nothing of it is written unless every part passes) and
    /// encodes its parts, in order, as one batch. Errors name the part (0-based).
    fn stage_batch(&mut self, parts: Vec<AppendRequest>, reply: ReplySender<Result<Vec<AppendResult>>>) {
        let refuse = |part: usize, source: Error| Err(Error::BatchPart { part, source: Box::new(source) });
        if let Some(reason) = &self.failed {
            reply.send(Err(Error::WriterFailed(reason.clone())));
            return;
        }
        if let Some((i, part)) = parts.iter().enumerate().find(|(_, p)| self.is_deleted(&p.stream)) {
            reply.send(refuse(i, Error::StreamDeleted(part.stream.clone())));
            return;
        }
        // Ids pending in this group: commit it first, so the check below sees them as stored.
        if parts.iter().any(|p| p.client_ids && p.ids.iter().any(|id| self.pending_ids.contains(id))) {
            self.commit();
        }
        // Idempotency: every part already stored (the same content) returns the original
        // results; some parts stored and others not is a conflict for the whole batch.
        let mut stored = Vec::new();
        let mut first_new = None;
        {
            let state = self.shared.state.read();
            for (i, part) in parts.iter().enumerate() {
                let archived = self.shared.archived_events.get();
                match if part.client_ids { find_existing(&state, archived, part) } else { Ok(None) } {
                    Ok(Some(original)) => stored.push(original),
                    Ok(None) => {
                        first_new.get_or_insert(i);
                    }
                    Err(err) => {
                        reply.send(refuse(i, err));
                        return;
                    }
                }
            }
        }
        match first_new {
            None => {
                reply.send(Ok(stored));
                return;
            }
            Some(i) if !stored.is_empty() => {
                let part = &parts[i];
                let conflict = Error::IdempotencyConflict {
                    stream: part.stream.clone(),
                    id: uuid::Uuid::from_bytes(part.ids[0]),
                    reason: "other parts of this batch are already stored and this one is not".into(),
                };
                reply.send(refuse(i, conflict));
                return;
            }
            Some(_) => {}
        }
        let explicit_times = |p: &AppendRequest| p.events.iter().any(|e| e.time_us.is_some());
        if parts.iter().any(|p| explicit_times(p) && self.pending_versions.contains_key(&p.stream)) {
            // Those streams' last times are in the pending group: commit it so they are readable.
            self.commit();
        }
        // Explicit times never go back per stream, across the parts too.
        let now = self.options.clock.now_us();
        {
            let mut last_times: HashMap<&str, Option<i64>> = HashMap::with_capacity(parts.len());
            for (i, part) in parts.iter().enumerate() {
                if explicit_times(part) {
                    let before = match last_times.get(part.stream.as_str()) {
                        Some(&t) => t,
                        None => match self.stored_last_time(&part.stream) {
                            Ok(t) => t,
                            Err(err) => {
                                reply.send(refuse(i, err));
                                return;
                            }
                        },
                    };
                    if let Err(err) = check_stream_times(part, before, now) {
                        reply.send(refuse(i, err));
                        return;
                    }
                }
                let last = part.events.last().map(|e| e.time_us.unwrap_or(now));
                last_times.insert(&part.stream, last);
            }
        }
        // Expected versions, in order: a later part naming the same stream sees the earlier
        // part's events.
        let mut actuals = Vec::with_capacity(parts.len());
        {
            let mut versions: HashMap<&str, u64> = HashMap::with_capacity(parts.len());
            for (i, part) in parts.iter().enumerate() {
                let actual = match versions.get(part.stream.as_str()) {
                    Some(&v) => v,
                    None => self.current_version(&part.stream),
                };
                if !part.expected.accepts(actual) {
                    let wrong =
                        Error::WrongExpectedVersion { stream: part.stream.clone(), expected: part.expected, actual };
                    reply.send(refuse(i, wrong));
                    return;
                }
                versions.insert(&part.stream, actual + part.events.len() as u64);
                actuals.push(actual);
            }
        }
        // The whole batch in one segment and one group.
        if let Err(err) = self.make_room(parts.iter().map(|p| p.encoded_bytes).sum()) {
            reply.send(Err(err));
            return;
        }
        let mut after: u64 = parts.iter().map(|p| p.events.len() as u64).sum();
        let last = parts.len() - 1;
        let mut reply = Some(reply);
        for (i, (part, actual)) in parts.into_iter().zip(actuals).enumerate() {
            after -= part.events.len() as u64;
            let ack = if i == last { Ack::Batch(reply.take().expect("only the last part answers")) } else { Ack::Part };
            self.encode(part, actual, after, ack, None, now);
        }
        debug_assert_eq!(after, 0, "every event of the batch counted down");
    }

    /// Encodes one append into the group buffer. `batch_after` is the number of events that
    /// follow it in the same batch (0 for a single append, or a batch's last part): its batch
    /// markers count down to that, so recovery keeps the batch only when its last frame is there.
    /// `now` stamps the events without an explicit time.
    fn encode(
        &mut self,
        append: AppendRequest,
        actual: u64,
        batch_after: u64,
        ack: Ack,
        deletes: Option<String>,
        now: i64,
    ) {
        let count = append.events.len() as u64;
        let result = AppendResult {
            first_version: actual + 1,
            last_version: actual + count,
            first_position: self.next_position,
            last_position: self.next_position + count - 1,
        };
        let mut frames = Vec::with_capacity(append.events.len());
        // The group's first frame, when everything before it is durable, carries the sync mark.
        let marks_sync = self.buf.is_empty() && !self.frames_unsynced && self.segment.sync_marks();
        for (i, (event, id)) in append.events.iter().zip(&append.ids).enumerate() {
            let offset = self.segment.write_offset() + self.buf.len() as u64;
            assert!(offset < index::MAX_SEGMENT_BYTES, "segment offsets fit in u32");
            frames.push((offset as u32, *id));
            let frame_start = self.buf.len();
            record::encode(
                &FrameRef {
                    position: result.first_position + i as u64,
                    version: result.first_version + i as u64,
                    timestamp_us: event.time_us.unwrap_or(now),
                    id: *id,
                    batch_remaining: u32::try_from(count - 1 - i as u64 + batch_after)
                        .ok()
                        .filter(|&n| n < record::SYNC_MARK)
                        .expect("a batch holds fewer than 2^31 events (max_batch_events)"),
                    after_sync: marks_sync && i == 0,
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
            self.pending_last_crc = record::stored_crc(&self.buf[frame_start..]);
        }
        self.next_position += count;
        self.pending_versions.insert(append.stream.clone(), result.last_version);
        self.pending.push(PendingAppend { stream: append.stream, result, frames, deletes, ack });
        self.encoded_events.push(append.events);
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
                self.last_frame_crc = self.pending_last_crc;
                self.publish(&pending);
                // The writer wakes the waiters itself. A thread that delivered the replies
                // instead (measured, 2026-11-26) halved the 16-writer figure when other
                // processes kept the cores busy: the hand-over waited for that thread to be
                // scheduled, while the writer is running anyway.
                let mut batch = Vec::new();
                for append in pending {
                    match append.ack {
                        Ack::One(reply) => reply.send(Ok(append.result)),
                        Ack::Part => batch.push(append.result),
                        Ack::Batch(reply) => {
                            batch.push(append.result);
                            reply.send(Ok(std::mem::take(&mut batch)));
                        }
                    }
                }
                assert!(batch.is_empty(), "a batch's parts are committed with its last part");
                self.encoded_events.clear();
                self.spare.maybe_start(self.segment.write_offset(), self.segment_end());
                // Preallocation by need, after the acknowledgements; the next fdatasync (or the
                // one at close) carries it. A lone appender committing its own group waits for
                // this write, not for its sync.
                match self.segment.grow_preallocation() {
                    Ok(0) => {}
                    Ok(_) => self.unsynced = true,
                    Err(err) => {
                        let _ = self.fail(format!("zero-filling {} failed: {err}", self.segment.path().display()));
                    }
                }
                self.record_synced();
            }
            Err(err) => {
                self.next_position = self.shared.head() + 1;
                self.encoded_events.clear();
                for append in pending {
                    let failed = || Error::WriterFailed(err.to_string());
                    match append.ack {
                        Ack::One(reply) => {
                            reply.send(Err(failed()));
                        }
                        Ack::Batch(reply) => {
                            reply.send(Err(failed()));
                        }
                        Ack::Part => {}
                    }
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
        // Even a failed write may have reached the file in part.
        self.frames_unsynced = true;
        if let Err(err) = written {
            return Err(self.fail(format!("write to {} failed: {err}", self.segment.path().display())));
        }
        self.unsynced = true;
        let stats = &self.shared.stats;
        stats.bytes_written.fetch_add(bytes, Ordering::Relaxed);
        stats.groups.fetch_add(1, Ordering::Relaxed);
        stats.group_events.record(self.pending.iter().map(|p| p.frames.len() as u64).sum());
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
            // Readers may now read up to the end of this group (the file may have grown past
            // its preallocation for an oversized batch: reads are bounded by this, not by it).
            state.active.reader.set_readable(self.segment.write_offset());
            for append in pending {
                state.active.index.add_run(
                    &append.stream,
                    append.result.first_version,
                    append.result.first_position,
                    append.frames.iter().copied(),
                );
                state.streams.set_version(&append.stream, append.result.last_version);
                if let Some(deleted) = &append.deletes {
                    state.streams.unlist(deleted);
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

    /// Seals the active segment (sync, truncate, index file), starts a new one, and records
    /// both in the manifest before anything is appended to the new one.
    fn roll_over(&mut self) -> Result<()> {
        assert!(self.pending.is_empty(), "roll over only between groups");
        let base = self.segment.base_position();
        let (builder, header_crc) = {
            let state = self.shared.state.read();
            (state.active.index.to_builder(), state.active.header_crc)
        };
        // Seal first: once the next segment exists, this one must already end at its last frame.
        let old_path = self.segment.path().to_path_buf();
        let sealed_len = match self.segment.seal() {
            Ok(len) => len,
            Err(err) => return Err(self.fail(format!("sealing {} failed: {err}", old_path.display()))),
        };
        self.unsynced = false;
        self.frames_unsynced = false;
        // The new segment holds nothing yet; the sealed one's length is in the manifest.
        (self.synced_end, self.recorded_end) = (None, None);
        match self.create_next_segment() {
            Ok(writer) => self.segment = writer,
            Err(err) => return Err(self.fail(format!("creating segment {} failed: {err}", self.next_position))),
        }
        self.last_frame_crc = 0;
        let index_path = self.shared.dir.index_path(base);
        let sealed = (|| -> Result<Arc<SealedSegment>> {
            let (header, _, _) = segment::read_header_at(&old_path).map_err(|e| Error::io("reading a header", e))?;
            let header = header.map_err(|reason| Error::corruption(&old_path, 0, reason))?;
            let index_bytes = builder.encode(base, sealed_len, header_crc);
            crate::storage::write_atomically(self.options.fs.as_ref(), &index_path, &index_bytes)?;
            let index = SegmentIndex::open(&index_path).map_err(|reason| Error::corruption(&index_path, 0, reason))?;
            let reader = SegmentReader::open(&old_path, base, sealed_len, &self.shared.cache)
                .map_err(|e| Error::io("opening a reader", e))?;
            Ok(Arc::new(SealedSegment { header, reader: Arc::new(reader), index, len: sealed_len, header_crc }))
        })();
        let sealed = match sealed {
            Ok(sealed) => sealed,
            Err(err) => return Err(self.fail(format!("writing the index of {} failed: {err}", old_path.display()))),
        };
        let new_path = self.segment.path().to_path_buf();
        let opened = segment::read_header_at(&new_path).and_then(|(_, crc, _)| {
            Ok((
                crc,
                SegmentReader::open(&new_path, self.next_position, self.segment.write_offset(), &self.shared.cache)?,
            ))
        });
        let (new_crc, new_reader) = match opened {
            Ok((crc, reader)) => (crc, Arc::new(reader)),
            Err(err) => return Err(self.fail(format!("opening the new segment failed: {err}"))),
        };
        let next_position = self.next_position;
        let recorded = self.shared.update_and_record(self.options.fs.as_ref(), |state| {
            let old_active = std::mem::replace(
                &mut state.active,
                ActiveSegment {
                    reader: new_reader,
                    index: ActiveIndex::new(next_position),
                    header_crc: new_crc,
                    synced: None,
                },
            );
            for (stream, (first, positions)) in &old_active.index.streams {
                state.streams.add_sealed(stream, base, first + positions.len() as u64 - 1);
            }
            state.sealed.push(sealed);
            Ok(())
        });
        if let Err(err) = recorded {
            return Err(self.fail(format!("recording the new segment in the manifest failed: {err}")));
        }
        Ok(())
    }
}
