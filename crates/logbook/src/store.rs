//! The public API: append with expected version and idempotency, stream and `$all` reads,
//! and subscriptions.
//!
//! ```
//! use logbook::{ExpectedVersion, NewEvent, Store, Options, Direction, Filter};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path(), Options::default()).unwrap();
//! let placed = store
//!     .append("order-42", ExpectedVersion::NoStream, vec![
//!         NewEvent::new("CART_CREATED", br#"{"customer":"c-1"}"#.to_vec()),
//!         NewEvent::new("ITEM_ADDED", br#"{"sku":"p-9","qty":2}"#.to_vec()),
//!     ])
//!     .unwrap();
//! assert_eq!((placed.first_version, placed.last_version), (1, 2));
//!
//! // A wrong expected version writes nothing and says what the stream is at.
//! let err = store.append("order-42", ExpectedVersion::Exact(1), vec![NewEvent::new("X", b"{}".to_vec())]);
//! assert!(matches!(err, Err(logbook::Error::WrongExpectedVersion { actual: 2, .. })));
//!
//! let events = store.read_stream("order-42", 1, 100, Direction::Forward).unwrap();
//! assert_eq!(events[1].event_type(), "ITEM_ADDED");
//! let all = store.read_all(1, 100, &Filter::category("order")).unwrap();
//! assert_eq!(all.len(), 2);
//! store.close().unwrap();
//! ```

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::TrySendError;

use crate::wal::{reply_channel, ReplyReceiver, ReplySender};
use parking_lot::Mutex;

use crate::archived::ArchivedEvents;
use crate::error::{Error, Result};
use crate::record::{self, FRAME_HEADER_BYTES, MAX_STREAM_BYTES};
use crate::segment::{self, ReadError, SegmentReader};
use crate::options::Options;
use crate::types::{AppendResult, Direction, ExpectedVersion, Filter, Log2Histogram, NewEvent, RecordedEvent};
use crate::wal::{self, AppendRequest, Request, Shared, Writer, WriterQueue};

/// Most events one `read_all` call scans past without a match before returning what it has,
/// so a selective filter cannot hold a caller for the whole log at once.
pub const MAX_SCAN_PER_READ: usize = 1_000_000;
/// A `$all` scan reads this many bytes per event it still wants, at once...
const SCAN_BYTES_PER_EVENT: usize = 1024;
/// ...but never more than this in one `pread` (a chunk stays alive while an event from it does).
const MAX_SCAN_CHUNK_BYTES: usize = segment::SCAN_CHUNK_BYTES;
/// Most events [`Store::read_all_page`] makes room for before it reads (≈ 1.3 MiB of
/// `RecordedEvent`s); a larger page grows as it fills.
const MAX_PAGE_RESERVE: usize = 16_384;

/// An open event store. Cheap to clone; every clone is the same store. The store closes
/// (cleanly, with a final sync) when [`Store::close`] is called or the last clone is dropped.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    requests: WriterQueue,
    writer: Mutex<Option<JoinHandle<()>>>,
    options: Options,
    acks: Arc<AckState>,
    /// One compaction at a time; true once one failed (until the store is reopened).
    compaction: Mutex<bool>,
    /// Consumer groups (their durable state is in the `$group-` streams).
    groups: crate::groups::Groups,
    // Held (and its OS lock with it) for as long as the store is open.
    _lock: crate::datadir::StoreLock,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = shutdown(&self.requests, &self.writer);
    }
}

fn shutdown(requests: &WriterQueue, writer: &Mutex<Option<JoinHandle<()>>>) -> Result<()> {
    let Some(handle) = writer.lock().take() else {
        return Ok(());
    };
    let (tx, rx) = reply_channel();
    let result = match requests.send(Request::Shutdown(tx)) {
        Ok(()) => rx.recv().unwrap_or(Err(Error::Shutdown)),
        Err(_) => Err(Error::Shutdown),
    };
    if handle.join().is_err() {
        return Err(Error::WriterFailed("the writer thread panicked".into()));
    }
    result
}

fn validate_options(options: &Options) -> Result<()> {
    if !(256..=(1 << 31)).contains(&options.segment_bytes) {
        return Err(Error::InvalidInput(format!("segment_bytes {} outside 256..=2 GiB", options.segment_bytes)));
    }
    if options.max_batch_bytes == 0 || options.max_batch_bytes > 256 * 1024 * 1024 {
        return Err(Error::InvalidInput(format!("max_batch_bytes {} outside 1..=256 MiB", options.max_batch_bytes)));
    }
    if options.max_batch_events == 0 || options.max_batch_events > 1_000_000 {
        return Err(Error::InvalidInput(format!("max_batch_events {} outside 1..=1000000", options.max_batch_events)));
    }
    if options.max_queued_appends == 0 {
        return Err(Error::InvalidInput("max_queued_appends must be at least 1".into()));
    }
    Ok(())
}

/// Checks a stream name: non-empty UTF-8 without control characters, at most 1024 bytes,
/// not starting with `$` (reserved for system streams such as `$all`).
pub fn validate_stream_name(stream: &str) -> Result<()> {
    if stream.is_empty() {
        return Err(Error::InvalidInput("stream name is empty".into()));
    }
    if stream.len() > MAX_STREAM_BYTES {
        return Err(Error::InvalidInput(format!("stream name is {} bytes, limit {MAX_STREAM_BYTES}", stream.len())));
    }
    if stream.starts_with('$') {
        return Err(Error::InvalidInput(format!(
            "stream name '{stream}' starts with '$', reserved for system streams"
        )));
    }
    if stream.chars().any(char::is_control) {
        return Err(Error::InvalidInput("stream name contains a control character".into()));
    }
    Ok(())
}

/// Checks the name of a system stream: starts with `$`, at most 1024 bytes, no control
/// characters, and not `$all` (not a stream) nor `$deleted` (the tombstones, written only by
/// [`Store::delete_stream`]).
pub fn validate_system_stream_name(stream: &str) -> Result<()> {
    if !stream.starts_with('$') {
        return Err(Error::InvalidInput(format!("system stream name '{stream}' does not start with '$'")));
    }
    if stream.len() > MAX_STREAM_BYTES {
        return Err(Error::InvalidInput(format!("stream name is {} bytes, limit {MAX_STREAM_BYTES}", stream.len())));
    }
    if stream.chars().any(char::is_control) {
        return Err(Error::InvalidInput("stream name contains a control character".into()));
    }
    if stream == "$all" || stream == "$deleted" {
        return Err(Error::InvalidInput(format!("'{stream}' is reserved")));
    }
    Ok(())
}

/// Checks an explicit event time (`NewEvent::at`) on its own and against the explicit time
/// before it in the same append; the writer checks it against the stream's stored events.
fn check_event_time(i: usize, event: &NewEvent, t: i64, previous: Option<i64>, latest: i64) -> Result<()> {
    let name = || match event.id {
        Some(id) => format!("event {i} ({id}, {})", event.event_type),
        None => format!("event {i} ({})", event.event_type),
    };
    if t < 0 {
        return Err(Error::InvalidInput(format!("{}: time {t} µs is before 1970-01-01", name())));
    }
    if t > latest {
        return Err(Error::InvalidInput(format!(
            "{}: time {} is more than a day past the store's clock",
            name(),
            crate::calendar::rfc3339(t)
        )));
    }
    if let Some(p) = previous.filter(|&p| t < p) {
        return Err(Error::InvalidInput(format!(
            "{}: time {} is before the previous event's {} (times never go back within a stream)",
            name(),
            crate::calendar::rfc3339(t),
            crate::calendar::rfc3339(p)
        )));
    }
    Ok(())
}

fn first_duplicate(ids: &[[u8; 16]]) -> Option<[u8; 16]> {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

impl Store {
    /// Opens the store in `dir`, creating it if needed, and recovers it: a torn tail of the
    /// last segment is cut back to the last whole batch; damage anywhere else fails with
    /// [`Error::Corruption`] naming the file and offset. A second open of the same directory
    /// (from any process) fails with [`Error::Locked`].
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        validate_options(&options)?;
        let recovered = wal::recover(dir.as_ref(), &options)?;
        let writer =
            Writer::new(Arc::clone(&recovered.shared), recovered.writer, options.clone(), recovered.last_frame_crc);
        let (requests, handle) = WriterQueue::start(writer, options.max_queued_appends)
            .map_err(|e| Error::io("starting the writer thread", e))?;
        let store = Store {
            inner: Arc::new(Inner {
                shared: recovered.shared,
                requests,
                writer: Mutex::new(Some(handle)),
                options: options.clone(),
                acks: Arc::new(AckState::default()),
                compaction: Mutex::new(false),
                groups: crate::groups::Groups::new(options.groups),
                _lock: recovered.lock,
            }),
        };
        store.load_groups()?;
        Ok(store)
    }

    /// Closes the store: finishes queued appends, syncs, marks the shutdown clean.
    /// Other clones of this handle get [`Error::Shutdown`] afterwards.
    pub fn close(self) -> Result<()> {
        shutdown(&self.inner.requests, &self.inner.writer)
    }

    /// Appends `events` to `stream` atomically, if the stream's version satisfies `expected`.
    /// Returns once the events are durable (per the sync mode). Re-sending events whose ids
    /// are already in the stream with the same content returns the original result and
    /// writes nothing, whatever `expected` says. Ids are looked up in the hot tier, and in the
    /// cold tier when one is registered ([`Store::set_archived_events`]; logbook-archive's
    /// `open_store` does it): without one, a retry of an event compaction archived is written
    /// again.
    pub fn append(&self, stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> Result<AppendResult> {
        validate_stream_name(stream)?;
        let request = self.prepare_named(stream, expected, events)?;
        let (tx, pending) = self.pending();
        let pending = PendingAppend(pending);
        self.handle_or_send(Request::Append(request, tx))?;
        pending.wait()
    }

    /// Appends several parts, each `(stream, expected version, events)`, atomically: all of
    /// them or none, as one batch (one run of batch markers on disk, so a crash keeps all the
    /// parts or none; KurrentDB calls this a multi-stream append). An order and its stock
    /// reservation, or an import, commit together.
    ///
    /// Parts are applied in order: two parts may name the same stream, and the second's
    /// expected version sees the first's events. Limits (`max_batch_events`,
    /// `max_batch_bytes`) count the whole batch. Event ids are idempotent as for single
    /// appends: when every part is already stored with the same ids and content, the original
    /// results come back and nothing is written; some parts stored and others not is an
    /// idempotency conflict for the whole batch.
    ///
    /// Returns one [`AppendResult`] per part, in order, once the batch is durable (per the sync
    /// mode). A refused part fails the whole batch with [`Error::BatchPart`], naming the part
    /// (from 0) and why (for example a [`Error::WrongExpectedVersion`]); nothing is written.
    pub fn append_batch(&self, parts: Vec<AppendPart>) -> Result<Vec<AppendResult>> {
        let requests = self.prepare_batch(parts)?;
        let (tx, pending) = self.pending();
        let pending = PendingBatch(pending);
        self.handle_or_send(Request::AppendBatch(requests, tx))?;
        pending.wait()
    }

    /// Hands over a request its caller is about to wait for: a large one is handled on this
    /// thread when the caller is the store's only appender (its own pending append is the one
    /// in flight) and nothing is queued (`wal::WriterQueue::handle_here`); anything else is
    /// queued for the writer thread. Appenders that overlap keep sharing group commits there.
    fn handle_or_send(&self, mut request: Request) -> Result<()> {
        if self.inner.acks.in_flight.load(Ordering::Acquire) == 1 {
            match self.inner.requests.handle_here(request) {
                None => return Ok(()),
                Some(back) => request = back,
            }
        }
        self.inner.requests.send(request).map_err(|_| Error::Shutdown)
    }

    /// A reply channel for an append and the handle its caller waits on (counted in flight
    /// from now on).
    fn pending<T>(&self) -> (ReplySender<Result<T>>, Pending<T>) {
        let (tx, rx) = reply_channel();
        (tx, Pending::new(rx, &self.inner.acks))
    }

    /// Queues a batch for the writer as [`Store::append_batch`] does and returns at once;
    /// [`PendingBatch::wait`] gives its results. It is applied in submission order with the
    /// appends submitted around it.
    pub fn submit_append_batch(&self, parts: Vec<AppendPart>) -> Result<PendingBatch> {
        let requests = self.prepare_batch(parts)?;
        let (tx, pending) = self.pending();
        let pending = PendingBatch(pending);
        self.inner.requests.send(Request::AppendBatch(requests, tx)).map_err(|_| Error::Shutdown)?;
        Ok(pending)
    }

    /// [`Store::submit_append_batch`] that does not wait for room in the writer's queue
    /// ([`Options::max_queued_appends`]): when the queue is full the parts come back unchanged,
    /// to be submitted again later. An event loop serving many clients submits this way, so one
    /// client's flood of appends cannot stop it serving the others.
    pub fn try_submit_append_batch(&self, parts: Vec<AppendPart>) -> Result<TrySubmit<PendingBatch, Vec<AppendPart>>> {
        let requests = self.prepare_batch(parts)?;
        let (tx, pending) = self.pending();
        let pending = PendingBatch(pending);
        match self.inner.requests.try_send(Request::AppendBatch(requests, tx)) {
            Ok(()) => Ok(TrySubmit::Queued(pending)),
            Err(TrySendError::Full(Request::AppendBatch(requests, _))) => {
                Ok(TrySubmit::QueueFull(requests.into_iter().map(part_of).collect()))
            }
            Err(_) => Err(Error::Shutdown),
        }
    }

    /// Checks a batch's parts and limits and prepares each part's request.
    fn prepare_batch(&self, parts: Vec<AppendPart>) -> Result<Vec<AppendRequest>> {
        if parts.is_empty() {
            return Err(Error::InvalidInput("a batch needs at least one part".into()));
        }
        let limits = &self.inner.options;
        let events: usize = parts.iter().map(|p| p.events.len()).sum();
        if events > limits.max_batch_events {
            return Err(Error::InvalidInput(format!(
                "{events} events in one batch, limit {}",
                limits.max_batch_events
            )));
        }
        let mut requests = Vec::with_capacity(parts.len());
        for (i, part) in parts.into_iter().enumerate() {
            let request = self.prepare(&part.stream, part.expected, part.events).map_err(|e| match e {
                Error::InvalidInput(msg) => Error::InvalidInput(format!("part {i}: {msg}")),
                other => other,
            })?;
            requests.push(request);
        }
        let ids: Vec<[u8; 16]> = requests.iter().flat_map(|r| r.ids.iter().copied()).collect();
        if let Some(id) = first_duplicate(&ids) {
            return Err(Error::InvalidInput(format!(
                "event id {} appears twice in one batch",
                uuid::Uuid::from_bytes(id)
            )));
        }
        let bytes: usize = requests.iter().map(|r| r.encoded_bytes).sum();
        if bytes > limits.max_batch_bytes {
            return Err(Error::InvalidInput(format!(
                "batch encodes to {bytes} bytes, limit {}",
                limits.max_batch_bytes
            )));
        }
        Ok(requests)
    }

    /// Queues an append for the writer and returns at once; [`PendingAppend::wait`] gives its
    /// result. Appends are applied in the order they are submitted (so they get positions in
    /// that order), and appends submitted before waiting share group commits: this is how a
    /// client that pipelines many appends pays for about one fsync.
    pub fn submit_append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<PendingAppend> {
        validate_stream_name(stream)?;
        self.submit_prepared(stream, expected, events)
    }

    /// [`Store::submit_append`] that does not wait for room in the writer's queue: when the
    /// queue is full the part comes back unchanged, as with [`Store::try_submit_append_batch`].
    pub fn try_submit_append(&self, part: AppendPart) -> Result<TrySubmit<PendingAppend, AppendPart>> {
        let request = self.prepare(&part.stream, part.expected, part.events)?;
        let (tx, pending) = self.pending();
        let pending = PendingAppend(pending);
        match self.inner.requests.try_send(Request::Append(request, tx)) {
            Ok(()) => Ok(TrySubmit::Queued(pending)),
            Err(TrySendError::Full(Request::Append(request, _))) => Ok(TrySubmit::QueueFull(part_of(request))),
            Err(_) => Err(Error::Shutdown),
        }
    }

    /// [`Store::submit_append`] after the stream name was checked (a user's or a system one).
    pub(crate) fn submit_prepared(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<PendingAppend> {
        let request = self.prepare_named(stream, expected, events)?;
        let (tx, pending) = self.pending();
        let pending = PendingAppend(pending);
        self.inner.requests.send(Request::Append(request, tx)).map_err(|_| Error::Shutdown)?;
        Ok(pending)
    }

    fn prepare(&self, stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> Result<AppendRequest> {
        validate_stream_name(stream)?;
        self.prepare_named(stream, expected, events)
    }

    fn prepare_named(&self, stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> Result<AppendRequest> {
        let limits = &self.inner.options;
        if events.is_empty() {
            return Err(Error::InvalidInput("an append needs at least one event".into()));
        }
        if events.len() > limits.max_batch_events {
            return Err(Error::InvalidInput(format!(
                "{} events in one append, limit {}",
                events.len(),
                limits.max_batch_events
            )));
        }
        let mut encoded_bytes = 0usize;
        let mut ids = Vec::with_capacity(events.len());
        let mut client_ids = false;
        let mut last_time: Option<i64> = None;
        let latest_time = if events.iter().any(|e| e.time_us.is_some()) {
            limits.clock.now_us().saturating_add(crate::types::MAX_EVENT_TIME_AHEAD_US)
        } else {
            i64::MAX
        };
        for (i, event) in events.iter().enumerate() {
            if event.event_type.is_empty() {
                return Err(Error::InvalidInput(format!("event {i} has an empty type")));
            }
            if let Some(t) = event.time_us {
                check_event_time(i, event, t, last_time, latest_time)?;
                last_time = Some(t);
            }
            record::check_limits(stream, &event.event_type, &event.metadata, &event.data)
                .map_err(|e| Error::InvalidInput(format!("event {i}: {e}")))?;
            encoded_bytes +=
                record::encoded_len(stream.len(), event.event_type.len(), event.metadata.len(), event.data.len());
            client_ids |= event.id.is_some();
            ids.push(*event.id.unwrap_or_else(uuid::Uuid::new_v4).as_bytes());
        }
        if let Some(id) = first_duplicate(&ids) {
            return Err(Error::InvalidInput(format!(
                "event id {} appears twice in one append",
                uuid::Uuid::from_bytes(id)
            )));
        }
        if encoded_bytes > limits.max_batch_bytes {
            return Err(Error::InvalidInput(format!(
                "append encodes to {encoded_bytes} bytes, limit {}",
                limits.max_batch_bytes
            )));
        }
        Ok(AppendRequest { stream: stream.to_string(), expected, events, ids, client_ids, encoded_bytes })
    }

    /// Deletes `stream` if its version satisfies `expected`: a tombstone (an event on the
    /// system stream `$deleted`) is written durably, after which the stream's events are hidden
    /// from every read and further appends to it fail with [`Error::StreamDeleted`]. Deletion
    /// is permanent; compaction later removes the stream's events from disk (except events
    /// under a legal hold, until it ends). Returns where the tombstone was written.
    pub fn delete_stream(&self, stream: &str, expected: ExpectedVersion) -> Result<AppendResult> {
        validate_stream_name(stream)?;
        let (tx, rx) = reply_channel();
        let request = Request::Delete { stream: stream.to_string(), expected, reply: tx };
        self.inner.requests.send(request).map_err(|_| Error::Shutdown)?;
        rx.recv().unwrap_or_else(|| Err(Error::WriterFailed("the writer thread stopped".into())))
    }


    /// True when `stream` was deleted.
    pub fn is_deleted(&self, stream: &str) -> bool {
        self.inner.shared.state.read().is_deleted(stream)
    }

    /// Makes every append acknowledged so far durable (useful with `SyncMode::Never`).
    pub fn sync(&self) -> Result<()> {
        let (tx, rx) = reply_channel();
        self.inner.requests.send(Request::Sync(tx)).map_err(|_| Error::Shutdown)?;
        rx.recv().unwrap_or(Err(Error::Shutdown))
    }

    /// The file system the store writes through (the real one unless a test injected faults);
    /// layers above the store (snapshots) write through it too.
    pub fn file_system(&self) -> &dyn crate::storage::FileSystem {
        self.inner.options.fs.as_ref()
    }

    /// The data directory this store was opened on (layers above the engine keep their own
    /// files beside `segments/`, e.g. `snapshots/`).
    pub fn dir(&self) -> &Path {
        self.inner.shared.dir.root()
    }

    /// The current time by the store's clock (the one that stamps events).
    pub fn now_us(&self) -> i64 {
        self.inner.options.clock.now_us()
    }

    /// The stream's current version (0 when it has no events).
    pub fn stream_version(&self, stream: &str) -> u64 {
        self.inner.shared.state.read().streams.version(stream)
    }

    /// Appends submitted and not yet answered, from every caller: a caller that is about to
    /// append can tell whether it would wait alone (see [`PendingAppend::wait`]).
    pub fn appends_in_flight(&self) -> usize {
        self.inner.acks.in_flight.load(Ordering::Acquire)
    }

    /// The last published position (0 for an empty store).
    pub fn head_position(&self) -> u64 {
        self.inner.shared.head()
    }

    /// Waits until the head reaches `position` (or the store closes, or `timeout` passes) and
    /// returns the head then. Lets a server block a reader cheaply until new events exist.
    pub fn wait_for_head(&self, position: u64, timeout: Duration) -> u64 {
        self.inner.shared.wait_for(position, timeout)
    }

    /// Number of streams with at least one event.
    pub fn stream_count(&self) -> usize {
        self.inner.shared.state.read().streams.len()
    }

    /// Names of the streams that start with `prefix` and have events (deleted streams are left
    /// out), sorted, at most `max` of them: what a tool needs to complete a shortened name
    /// (`logbook order timeline 6f1c` finds `order-6f1c…`). Read from the ordered names beside
    /// the stream directory (see [`Store::list_streams`]): O(log n + max).
    pub fn streams_with_prefix(&self, prefix: &str, max: usize) -> Vec<String> {
        let state = self.inner.shared.state.read();
        state
            .streams
            .range_from(prefix, None)
            .filter(|(name, entry)| entry.version > 0 && !state.is_deleted(name))
            .take(max)
            .map(|(name, _)| name.to_string())
            .collect()
    }

    /// One page of the stream listing: up to `count` streams whose names start with `prefix`
    /// and sort after `after` (exclusive), in byte order of their names, each with its version.
    /// Streams without events, deleted streams and system streams (`$...`) are left out. The
    /// names (deleted streams' taken out) are kept in order beside the stream directory, so a
    /// page costs O(log n + its length), not a sort of every name.
    pub fn list_streams(&self, prefix: &str, after: Option<&str>, count: usize) -> Vec<(String, u64)> {
        let state = self.inner.shared.state.read();
        state
            .streams
            .range_from(prefix, after)
            .filter(|(name, entry)| entry.version > 0 && !name.starts_with('$') && !state.is_deleted(name))
            .take(count)
            .map(|(name, entry)| (name.to_string(), entry.version))
            .collect()
    }

    /// Number of segment files (sealed and active).
    pub fn segment_count(&self) -> usize {
        self.inner.shared.state.read().sealed.len() + 1
    }

    /// Counters: (appends, events, fsyncs, groups, bytes written) since open.
    pub fn stats(&self) -> StoreStats {
        let s = &self.inner.shared.stats;
        StoreStats {
            appends: s.appends.load(Ordering::Relaxed),
            events: s.events.load(Ordering::Relaxed),
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
            groups: s.groups.load(Ordering::Relaxed),
            groups_on_appender_thread: s.groups_on_appender_thread.load(Ordering::Relaxed),
            bytes_written: s.bytes_written.load(Ordering::Relaxed),
            fsync_micros: s.fsync_micros.snapshot(),
            group_events: s.group_events.snapshot(),
        }
    }

    /// Reads up to `max` events of `stream`. Forward: versions `from`, `from+1`, ...
    /// Backward: versions `from`, `from-1`, ... (`u64::MAX` means "from the last").
    /// Versions compaction removed are skipped (the next `max` stored ones are returned).
    /// A deleted stream fails with [`Error::StreamDeleted`].
    pub fn read_stream(&self, stream: &str, from: u64, max: usize, direction: Direction) -> Result<Vec<RecordedEvent>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let located = {
            let state = self.inner.shared.state.read();
            if state.is_deleted(stream) {
                return Err(Error::StreamDeleted(stream.to_string()));
            }
            let version = state.streams.version(stream);
            let (lo, hi) = match direction {
                Direction::Forward => {
                    let lo = from.max(1);
                    (lo, version.min(lo.saturating_add(max as u64 - 1)))
                }
                Direction::Backward => {
                    let hi = from.min(version);
                    (hi.saturating_sub(max as u64 - 1).max(1), hi)
                }
            };
            let mut positions = state.stream_positions(stream, lo, hi);
            let wanted = (hi + 1).saturating_sub(lo) as usize;
            if positions.len() < wanted && state.sealed.iter().any(|s| s.is_compacted()) {
                // Compaction removed some of these versions: widen to the whole remaining
                // range and keep the `max` nearest to `from`.
                positions = match direction {
                    Direction::Forward => {
                        let mut all = state.stream_positions(stream, lo, version);
                        all.truncate(max);
                        all
                    }
                    Direction::Backward => {
                        let all = state.stream_positions(stream, 1, hi);
                        all[all.len().saturating_sub(max)..].to_vec()
                    }
                };
            }
            let mut located = Vec::with_capacity(positions.len());
            for (_, position) in positions {
                if let Some((reader, offset)) = state.locate(position) {
                    located.push((Arc::clone(reader), offset, position));
                }
            }
            located
        };
        let mut events = wal::read_events(&located)?;
        // Hash collisions in sealed indexes can point at another stream's event.
        events.retain(|event| event.stream() == stream);
        if direction == Direction::Backward {
            events.reverse();
        }
        Ok(events)
    }

    /// Reads up to `max` events of `$all` matching `filter`, from position `from` on, in
    /// position order. Stops early after scanning a million events, matching or not; continue
    /// from the returned last position + 1 (or use [`Store::read_all_page`] to learn where it stopped).
    pub fn read_all(&self, from: u64, max: usize, filter: &Filter) -> Result<Vec<RecordedEvent>> {
        Ok(self.read_all_page(from, max, filter)?.events)
    }

    /// Every event of `$all` matching `filter`, in position order, from position `from` up to
    /// the head as it was when the scan began (later appends are left out, so a pass has an
    /// end). Reads a page at a time: memory is bounded by one page, whatever the log's size.
    /// An error is yielded once and ends the scan.
    pub fn scan_all(&self, from: u64, filter: Filter) -> ScanAll<'_> {
        ScanAll {
            store: self,
            filter,
            next: from.max(1),
            end: self.head_position(),
            page: Vec::new().into_iter(),
            failed: false,
        }
    }

    /// Like [`Store::read_all`], also returning the next position to read from.
    ///
    /// Positions compaction removed are skipped: `$all` may have gaps, never reordering.
    /// Events of deleted streams are not returned.
    pub fn read_all_page(&self, from: u64, max: usize, filter: &Filter) -> Result<AllPage> {
        let mut next = from.max(1);
        // Room for the page at once (a replay of 10,000-event pages otherwise grows it five
        // times, copying it each time), bounded by what the log holds from `next`.
        let stored_after = usize::try_from(self.inner.shared.head().saturating_sub(next - 1)).unwrap_or(usize::MAX);
        let mut events = Vec::with_capacity(max.min(stored_after).min(MAX_PAGE_RESERVE));
        let mut scanned = 0usize;
        while events.len() < max && scanned < MAX_SCAN_PER_READ {
            let head = self.inner.shared.head();
            if next > head {
                break;
            }
            let Some(run) = self.locate_run(next, head)? else {
                // Nothing stored from `next` to the head: the rest was compacted away.
                next = head + 1;
                break;
            };
            let (reader, mut offset, first, last, tombstones) = run;
            next = first;
            // Frames are read in chunks with one `pread` each; events share their chunk.
            let (mut chunk, mut chunk_at) = (Arc::new(Bytes::new()), offset);
            while next <= last && events.len() < max && scanned < MAX_SCAN_PER_READ {
                let avail = chunk.len() as u64 - (offset - chunk_at).min(chunk.len() as u64);
                let rest = &chunk[chunk.len() - avail as usize..];
                let frame_len = (avail >= FRAME_HEADER_BYTES as u64)
                    .then(|| record::peek_body_len(rest).ok())
                    .flatten()
                    .map(|body| FRAME_HEADER_BYTES + body);
                if frame_len.is_none_or(|len| len as u64 > avail) {
                    let mut wanted = ((max - events.len()).saturating_mul(SCAN_BYTES_PER_EVENT))
                        .clamp(segment::READ_GUESS_BYTES, MAX_SCAN_CHUNK_BYTES)
                        .max(frame_len.unwrap_or(0));
                    loop {
                        chunk = Arc::new(
                            reader
                                .read_scan_chunk(offset, wanted)
                                .map_err(|e| wal::read_error(&reader, offset, ReadError::Io(e)))?,
                        );
                        chunk_at = offset;
                        // A read sized before the frame's length was known can end inside the
                        // frame: read it again, once, with the length its header declares
                        // (bounded by `peek_body_len`). Shorter than that after the second read,
                        // the segment ends inside the frame, which decoding reports.
                        match record::peek_body_len(&chunk).map(|body| FRAME_HEADER_BYTES + body) {
                            Ok(len) if len > chunk.len() && len > wanted => wanted = len,
                            _ => break,
                        }
                    }
                }
                let at = (offset - chunk_at) as usize;
                let (frame, used) = record::decode(&chunk[at..])
                    .map_err(|e| Error::corruption(reader.path(), offset, e.to_string()))?;
                // Inside a segment positions strictly increase (contiguous unless compacted).
                if frame.position < next || frame.position > last {
                    return Err(Error::corruption(
                        reader.path(),
                        offset,
                        format!("frame holds position {} where {next}..={last} belong", frame.position),
                    ));
                }
                let deleted = !tombstones.is_empty() && tombstones.contains(frame.stream);
                if !deleted && filter.matches(frame.stream, frame.event_type) {
                    events.push(wal::event_from_frame(&chunk, at, &frame));
                }
                offset += used as u64;
                next = frame.position + 1;
                scanned += 1;
            }
            if next <= last && events.len() < max && scanned < MAX_SCAN_PER_READ {
                // Removed events at the end of a compacted segment.
                next = last + 1;
            }
        }
        Ok(AllPage { events, next_position: next })
    }

    /// The first stored frame at or after `position` up to `head`: its segment, offset and
    /// position, the last position to read from that segment, and the tombstones to skip.
    #[allow(clippy::type_complexity)]
    fn locate_run(
        &self,
        position: u64,
        head: u64,
    ) -> Result<Option<(Arc<SegmentReader>, u64, u64, u64, Arc<std::collections::HashSet<Box<str>>>)>> {
        let state = self.inner.shared.state.read();
        if position < state.first_position() {
            return Err(Error::InvalidInput(format!(
                "position {position} is before the first stored position {}",
                state.first_position()
            )));
        }
        Ok(state.locate_from(position, head).map(|(reader, first, offset, last)| {
            (Arc::clone(reader), u64::from(offset), first, last, Arc::clone(&state.tombstones))
        }))
    }

    /// Subscribes to `$all` from `from` (1 = from the beginning): delivers the past, then live
    /// events as they are published, in order, each exactly once.
    pub fn subscribe_all(&self, from: u64, filter: Filter) -> Subscription {
        Subscription { store: self.clone(), target: Target::All { next: from.max(1), filter }, buffer: VecDeque::new() }
    }

    /// Subscribes to one stream from version `from` (1 = from its first event).
    pub fn subscribe_stream(&self, stream: &str, from: u64) -> Subscription {
        Subscription {
            store: self.clone(),
            target: Target::Stream { stream: stream.to_string(), next: from.max(1) },
            buffer: VecDeque::new(),
        }
    }

    /// Why the writer stopped for good, if it has: after a failed write or fdatasync nothing
    /// more is appended (what reached the disk is not known) until the store is opened again.
    /// The reason names files; do not show it to clients.
    pub fn writer_failure(&self) -> Option<&str> {
        self.inner.shared.writer_failure.get().map(String::as_str)
    }

    /// Registers the cold tier's lookup of archived events by id, so that a retried append
    /// whose events compaction moved there returns the original result too (see
    /// [`ArchivedEvents`]). Once per store: a second registration is refused.
    pub fn set_archived_events(&self, source: Arc<dyn ArchivedEvents>) -> Result<()> {
        if self.inner.shared.archived_events.set(source) {
            Ok(())
        } else {
            Err(Error::InvalidInput("this store already has its archived events registered".into()))
        }
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// The options the store was opened with (its file system and clock among them).
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    pub(crate) fn groups(&self) -> &crate::groups::Groups {
        &self.inner.groups
    }

    /// Waits for any running compaction; fails if an earlier one failed (its files are in a
    /// state only recovery resolves).
    pub(crate) fn compaction_guard(&self) -> Result<CompactionGuard<'_>> {
        let guard = self.inner.compaction.lock();
        if *guard {
            return Err(Error::InvalidInput(
                "an earlier compaction failed; reopen the store to recover before compacting again".into(),
            ));
        }
        Ok(CompactionGuard(guard))
    }
}

/// Held while a compaction runs.
pub(crate) struct CompactionGuard<'a>(parking_lot::MutexGuard<'a, bool>);

impl CompactionGuard<'_> {
    /// Refuses further compactions until the store is reopened.
    pub(crate) fn poison(mut self) {
        *self.0 = true;
    }
}

/// Longest the one polling waiter polls for its acknowledgement before parking.
pub const ACK_SPIN: Duration = Duration::from_micros(400);

/// An append queued by [`Store::submit_append`].
#[derive(Debug)]
pub struct PendingAppend(Pending<AppendResult>);

impl PendingAppend {
    /// Waits until the append is durable (per the sync mode) or refused.
    pub fn wait(self) -> Result<AppendResult> {
        self.0.wait()
    }

    /// Instead of waiting: `on_done` gets the result exactly once, when the append is durable
    /// (per the sync mode) or refused. It runs on the writer thread, in submission order
    /// with the other appends' results, after the group's fsync; or on this thread now when
    /// the result is already there. So it must be short and must not block: every
    /// acknowledgement behind it in the group waits for it. A server uses it to answer its
    /// client without a thread waking up for the result.
    /// The append counts as in flight ([`Store::appends_in_flight`]) until `on_done` runs.
    pub fn on_done(self, on_done: impl FnOnce(Result<AppendResult>) + Send + 'static) {
        self.0.on_done(on_done);
    }
}

/// A batch queued by [`Store::submit_append_batch`].
#[derive(Debug)]
pub struct PendingBatch(Pending<Vec<AppendResult>>);

impl PendingBatch {
    /// Waits until the batch is durable (per the sync mode) or refused: one result per part.
    pub fn wait(self) -> Result<Vec<AppendResult>> {
        self.0.wait()
    }

    /// Instead of waiting: `on_done` gets the results exactly once, as
    /// [`PendingAppend::on_done`] does (same thread, same order, same rules).
    pub fn on_done(self, on_done: impl FnOnce(Result<Vec<AppendResult>>) + Send + 'static) {
        self.0.on_done(on_done);
    }
}

/// A reply the caller waits for, counted as in flight until it is dropped.
#[derive(Debug)]
struct Pending<T> {
    reply: ReplyReceiver<Result<T>>,
    acks: Arc<AckState>,
}

/// Per store: how many appends are in flight, and whether a waiter is polling right now.
#[derive(Debug, Default)]
struct AckState {
    /// Appends submitted and not yet awaited (or, left with a callback, not yet answered),
    /// across all handles.
    in_flight: std::sync::atomic::AtomicUsize,
    /// At most one waiter polls for its acknowledgement at a time.
    spinner: std::sync::atomic::AtomicBool,
    /// When that polling pays (see `wait`).
    poller: crate::wait::Poller,
}

impl<T: Send + 'static> Pending<T> {
    /// See [`PendingAppend::on_done`].
    fn on_done(self, on_done: impl FnOnce(Result<T>) + Send + 'static) {
        // Dropping `self` below takes the append out of the count: the callback's own count
        // keeps it in until the result is there.
        let acks = Arc::clone(&self.acks);
        acks.in_flight.fetch_add(1, Ordering::AcqRel);
        self.reply.on_arrival(move |result| {
            acks.in_flight.fetch_sub(1, Ordering::AcqRel);
            on_done(result.unwrap_or_else(|| Err(Error::WriterFailed("the writer thread stopped".into()))));
        });
    }
}

impl<T> Pending<T> {
    fn new(reply: ReplyReceiver<Result<T>>, acks: &Arc<AckState>) -> Self {
        acks.in_flight.fetch_add(1, Ordering::AcqRel);
        Pending { reply, acks: Arc::clone(acks) }
    }

    fn wait(self) -> Result<T> {
        // One waiter at a time may poll instead of parking: a lone appender then needs no
        // wake-up from an idle CPU after the fdatasync (tens of µs on a VM, comparable to the
        // sync itself). Concurrent appenders park at once (no spinning: see `wal::reply`),
        // since they share group commits anyway and spinning threads would take the CPU from
        // the writer. The polling yields the CPU between polls and stops (for a while) once it
        // stops paying: see `crate::wait`.
        let alone = self.acks.in_flight.load(Ordering::Acquire) == 1;
        if alone && self.acks.spinner.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok() {
            let polled = self.acks.poller.poll(ACK_SPIN, || self.reply.try_take());
            self.acks.spinner.store(false, Ordering::Release);
            match polled {
                Some(Some(result)) => return result,
                Some(None) => return Err(Error::WriterFailed("the writer thread stopped".into())),
                None => {}
            }
        }
        self.reply.recv().unwrap_or_else(|| Err(Error::WriterFailed("the writer thread stopped".into())))
    }
}

impl<T> Drop for Pending<T> {
    fn drop(&mut self) {
        self.acks.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The part a request was prepared from (the queue did not take it): nothing of the events
/// changed in preparing it.
fn part_of(request: AppendRequest) -> AppendPart {
    AppendPart { stream: request.stream, expected: request.expected, events: request.events }
}

/// What a `try_submit_*` call did: queued the append (`P`, the handle to wait on), or handed it
/// back unchanged (`A`) because the writer's queue ([`Options::max_queued_appends`]) was full.
#[derive(Debug)]
pub enum TrySubmit<P, A> {
    /// Queued for the writer, in submission order with every other append.
    Queued(P),
    /// Not queued: the queue is full until the writer takes its next group. Submit it again.
    QueueFull(A),
}

/// One part of an atomic multi-stream append ([`Store::append_batch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendPart {
    /// The stream the part appends to.
    pub stream: String,
    /// What the stream's version must be when the part is applied (after earlier parts).
    pub expected: ExpectedVersion,
    /// The part's events, at least one.
    pub events: Vec<NewEvent>,
}

impl AppendPart {
    /// A part appending `events` to `stream` if its version satisfies `expected`.
    pub fn new(stream: impl Into<String>, expected: ExpectedVersion, events: Vec<NewEvent>) -> Self {
        AppendPart { stream: stream.into(), expected, events }
    }
}

/// One page of `$all`.
#[derive(Debug)]
pub struct AllPage {
    /// The matching events read, in position order.
    pub events: Vec<RecordedEvent>,
    /// Where the next read should start.
    pub next_position: u64,
}

/// Events of `$all` read by one pass ([`Store::scan_all`]).
pub struct ScanAll<'a> {
    store: &'a Store,
    filter: Filter,
    /// The position the next page starts at.
    next: u64,
    /// The head when the scan began: the last position it returns.
    end: u64,
    page: std::vec::IntoIter<RecordedEvent>,
    failed: bool,
}

/// Events per page of a [`ScanAll`].
const SCAN_PAGE_EVENTS: usize = 4096;

impl ScanAll<'_> {
    /// The position the scan has read up to, plus one (for progress: it reaches
    /// [`ScanAll::end_position`] + 1 when the scan is done).
    pub fn next_position(&self) -> u64 {
        self.next
    }

    /// The last position the scan covers: the head when it began.
    pub fn end_position(&self) -> u64 {
        self.end
    }
}

impl Iterator for ScanAll<'_> {
    type Item = Result<RecordedEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(event) = self.page.next() {
                if event.position() <= self.end {
                    return Some(Ok(event));
                }
                // Past the head the scan began at: appended since, not part of this pass.
                self.page = Vec::new().into_iter();
                self.next = self.end + 1;
                return None;
            }
            if self.failed || self.next > self.end {
                return None;
            }
            match self.store.read_all_page(self.next, SCAN_PAGE_EVENTS, &self.filter) {
                Ok(page) => {
                    if page.events.is_empty() && page.next_position <= self.next {
                        // Nothing more stored up to the head.
                        self.next = self.end + 1;
                        return None;
                    }
                    self.next = page.next_position.min(self.end + 1);
                    self.page = page.events.into_iter();
                }
                Err(err) => {
                    self.failed = true;
                    return Some(Err(err));
                }
            }
        }
    }
}

/// Counters since the store was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Appends (and stream deletions) committed.
    pub appends: u64,
    /// Events committed (tombstones included).
    pub events: u64,
    /// Syncs (`fdatasync`) of the active segment.
    pub fsyncs: u64,
    /// Group commits: writes to the segment, each holding one or more appends.
    pub groups: u64,
    /// Of the groups, those a lone appender committed on its own thread instead of the writer
    /// thread (an `append` or `append_batch` of at least 16 KiB encoded, with no other append
    /// in flight or queued).
    pub groups_on_appender_thread: u64,
    /// Bytes written to segment files.
    pub bytes_written: u64,
    /// How long each fdatasync of the active segment took, in µs.
    pub fsync_micros: Log2Histogram,
    /// How many events each group commit wrote.
    pub group_events: Log2Histogram,
}

enum Target {
    All { next: u64, filter: Filter },
    Stream { stream: String, next: u64 },
}

/// Catch-up then live delivery of events, in order, without gaps or duplicates. Only
/// published events are delivered: with `SyncMode::Always`, only durable ones.
pub struct Subscription {
    store: Store,
    target: Target,
    buffer: VecDeque<RecordedEvent>,
}

/// Events fetched per catch-up read.
const SUBSCRIPTION_PAGE: usize = 1024;

impl Subscription {
    /// The next event, waiting up to `timeout` for one. `Ok(None)` on timeout;
    /// [`Error::Shutdown`] once the store is closed and everything published was delivered.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<RecordedEvent>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Ok(Some(event));
            }
            if self.fill()? {
                continue;
            }
            let shared = self.store.shared();
            if shared.closed.load(Ordering::Acquire) {
                return Err(Error::Shutdown);
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            shared.wait_for(shared.head() + 1, deadline - now);
        }
    }

    /// Fetches the next page; true if it got any event.
    fn fill(&mut self) -> Result<bool> {
        match &mut self.target {
            Target::All { next, filter } => {
                let page = self.store.read_all_page(*next, SUBSCRIPTION_PAGE, filter)?;
                *next = page.next_position;
                self.buffer.extend(page.events);
            }
            Target::Stream { stream, next } => {
                let events = self.store.read_stream(stream, *next, SUBSCRIPTION_PAGE, Direction::Forward)?;
                if let Some(last) = events.last() {
                    *next = last.version() + 1;
                }
                self.buffer.extend(events);
            }
        }
        Ok(!self.buffer.is_empty())
    }
}

impl Iterator for Subscription {
    type Item = Result<RecordedEvent>;

    /// Blocks until the next event; ends when the store closes.
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.next_timeout(Duration::from_secs(3600)) {
                Ok(Some(event)) => return Some(Ok(event)),
                Ok(None) => continue,
                Err(Error::Shutdown) => return None,
                Err(err) => return Some(Err(err)),
            }
        }
    }
}
