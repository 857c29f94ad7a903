//! The plain values the public API speaks in: events to append, recorded events, expected
//! versions, filters and the limits on names.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use uuid::Uuid;

/// The longest stream name, in bytes (UTF-8).
pub const MAX_STREAM_NAME_BYTES: usize = crate::record::MAX_STREAM_BYTES;
/// The longest event type, in bytes (UTF-8).
pub const MAX_EVENT_TYPE_BYTES: usize = crate::record::MAX_TYPE_BYTES;
/// The most bytes of data plus metadata one event may carry.
pub const MAX_PAYLOAD_BYTES: usize = crate::record::MAX_PAYLOAD_BYTES;

/// What the stream's version must be for an append to go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must have no events (the same as `Exact(0)`).
    NoStream,
    /// The stream must have at least one event.
    Exists,
    /// The stream's last version must be exactly this.
    Exact(u64),
}

impl ExpectedVersion {
    /// True when a stream at `actual` satisfies this expectation.
    pub fn accepts(self, actual: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exists => actual > 0,
            ExpectedVersion::Exact(v) => actual == v,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("none"),
            ExpectedVersion::Exists => f.write_str("exists"),
            ExpectedVersion::Exact(v) => write!(f, "{v}"),
        }
    }
}

impl std::str::FromStr for ExpectedVersion {
    type Err = String;

    /// The inverse of `Display`: `any`, `none` (or `0`), `exists`, or a number.
    fn from_str(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "any" => Ok(ExpectedVersion::Any),
            "none" | "0" => Ok(ExpectedVersion::NoStream),
            "exists" => Ok(ExpectedVersion::Exists),
            n => n.parse().map(ExpectedVersion::Exact).map_err(|_| format!("wants any|none|exists|<n>, got '{text}'")),
        }
    }
}

/// An event to append. The id makes retries idempotent; one is generated when absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The event's id; `None` to have a random one generated when it is appended.
    pub id: Option<Uuid>,
    /// The event's type (e.g. `ITEM_ADDED`): not empty, at most [`MAX_EVENT_TYPE_BYTES`].
    pub event_type: String,
    /// The payload, opaque bytes (often JSON); with the metadata, at most [`MAX_PAYLOAD_BYTES`].
    pub data: Vec<u8>,
    /// Opaque bytes stored beside the payload (e.g. correlation ids); empty when unused.
    pub metadata: Vec<u8>,
    /// The event's own time, microseconds since the Unix epoch (UTC), for events that happened
    /// before they are appended (an import); `None`: the store's clock stamps it, as usual.
    /// See [`NewEvent::at`] for the rules.
    pub time_us: Option<i64>,
}

/// How far past the store's clock an explicit event time ([`NewEvent::at`]) may be: one day
/// (clock skew between the system an import comes from and this one; not a way to schedule).
pub const MAX_EVENT_TIME_AHEAD_US: i64 = 24 * 3600 * 1_000_000;

impl NewEvent {
    /// An event of type `event_type` carrying `data`, with no metadata and no id (one is
    /// generated when it is appended).
    pub fn new(event_type: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        NewEvent { id: None, event_type: event_type.into(), data: data.into(), metadata: Vec::new(), time_us: None }
    }
    /// Sets the event's own time (microseconds since the Unix epoch, UTC) instead of the store's
    /// clock: for importing events that happened elsewhere, earlier. Rules, checked at append
    /// (an [`Error::InvalidInput`](crate::Error::InvalidInput) naming the event otherwise):
    /// the time is not before 1970-01-01 and at most [`MAX_EVENT_TIME_AHEAD_US`] past the
    /// store's clock; and per stream, times never go back: an explicit time is at least the
    /// time of the event before it in the stream (stored, or earlier in the same append),
    /// whatever stamped that one. Events stamped by the clock are not checked (as before).
    /// `$all` stays in append order, so it is not in time order once events were imported.
    pub fn at(mut self, timestamp_us: i64) -> Self {
        self.time_us = Some(timestamp_us);
        self
    }
    /// Sets the event's id, so that resending the same append does not store it twice.
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.id = Some(id);
        self
    }
    /// Sets the event's metadata bytes.
    pub fn with_metadata(mut self, metadata: impl Into<Vec<u8>>) -> Self {
        self.metadata = metadata.into();
        self
    }
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppendResult {
    /// The stream version of the first event written (versions start at 1 in each stream).
    pub first_version: u64,
    /// The stream version of the last event written: the stream's version after the append.
    pub last_version: u64,
    /// The `$all` position of the first event written (positions are global and start at 1).
    pub first_position: u64,
    /// The `$all` position of the last event written.
    pub last_position: u64,
}

/// A stored event. Cheap to clone: it shares the buffer its frame was read into (one copy
/// from the file, then none).
#[derive(Clone)]
pub struct RecordedEvent {
    /// The bytes read from the segment; the ranges below index into it. Behind an `Arc` (one
    /// word, cloned inline) rather than a `Bytes` (four words, cloned through a vtable): a
    /// replay clones it once per event and writes every event into its page.
    pub(crate) buf: std::sync::Arc<bytes::Bytes>,
    pub(crate) position: u64,
    pub(crate) version: u64,
    pub(crate) timestamp_us: i64,
    pub(crate) id: [u8; 16],
    /// Byte ranges within `buf`.
    pub(crate) stream: (u32, u32),
    pub(crate) event_type: (u32, u32),
    pub(crate) metadata: (u32, u32),
    pub(crate) data: (u32, u32),
}

impl RecordedEvent {
    #[inline]
    fn slice(&self, range: (u32, u32)) -> &[u8] {
        &self.buf[range.0 as usize..range.1 as usize]
    }
    /// The event's id (given at append, or generated then).
    pub fn id(&self) -> Uuid {
        Uuid::from_bytes(self.id)
    }
    /// The name of the stream the event belongs to.
    pub fn stream(&self) -> &str {
        // Validated as UTF-8 when the frame was decoded; `buf` never changes.
        std::str::from_utf8(self.slice(self.stream)).unwrap_or("")
    }
    /// The event's type.
    pub fn event_type(&self) -> &str {
        // Validated as UTF-8 when the frame was decoded.
        std::str::from_utf8(self.slice(self.event_type)).unwrap_or("")
    }
    /// The event's version within its stream (from 1).
    pub fn version(&self) -> u64 {
        self.version
    }
    /// The event's position in `$all`, the global log (from 1).
    pub fn position(&self) -> u64 {
        self.position
    }
    /// Microseconds since the Unix epoch, UTC, taken when the writer stored the event.
    pub fn timestamp_us(&self) -> i64 {
        self.timestamp_us
    }
    /// The event's payload.
    #[inline]
    pub fn data(&self) -> &[u8] {
        self.slice(self.data)
    }
    /// The event's metadata (empty when none was given).
    #[inline]
    pub fn metadata(&self) -> &[u8] {
        self.slice(self.metadata)
    }
    /// The category: the part of the stream name before the first `-`.
    pub fn category(&self) -> &str {
        category_of(self.stream())
    }
}

impl fmt::Debug for RecordedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordedEvent")
            .field("position", &self.position)
            .field("stream", &self.stream())
            .field("version", &self.version)
            .field("type", &self.event_type())
            .field("id", &self.id())
            .field("data_len", &self.data().len())
            .finish()
    }
}

impl PartialEq for RecordedEvent {
    fn eq(&self, other: &Self) -> bool {
        self.position == other.position
            && self.version == other.version
            && self.id == other.id
            && self.timestamp_us == other.timestamp_us
            && self.stream() == other.stream()
            && self.event_type() == other.event_type()
            && self.data() == other.data()
            && self.metadata() == other.metadata()
    }
}

/// The category of a stream name: the part before the first `-`.
pub fn category_of(stream: &str) -> &str {
    stream.split_once('-').map_or(stream, |(category, _)| category)
}

/// Selects events of `$all` by stream prefix, category and event type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Stream names starting with this.
    pub stream_prefix: Option<String>,
    /// Streams of this category (the part before the first `-`).
    pub category: Option<String>,
    /// Any of these event types (empty: all types).
    pub event_types: Vec<String>,
}

impl Filter {
    /// Selects every event.
    pub fn all() -> Self {
        Filter::default()
    }
    /// Selects events of streams whose name starts with `prefix`.
    pub fn stream_prefix(prefix: impl Into<String>) -> Self {
        Filter { stream_prefix: Some(prefix.into()), ..Default::default() }
    }
    /// Selects events of streams of `category` (the part of the name before the first `-`).
    pub fn category(category: impl Into<String>) -> Self {
        Filter { category: Some(category.into()), ..Default::default() }
    }
    /// Also requires the event type to be one of `types` (replacing any earlier list; an empty
    /// list allows every type).
    pub fn with_types<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.event_types = types.into_iter().map(Into::into).collect();
        self
    }
    /// True when the filter selects every event.
    pub fn is_all(&self) -> bool {
        self.stream_prefix.is_none() && self.category.is_none() && self.event_types.is_empty()
    }
    /// True when an event of type `event_type` in stream `stream` passes the filter.
    #[inline]
    pub fn matches(&self, stream: &str, event_type: &str) -> bool {
        self.stream_prefix.as_deref().is_none_or(|p| stream.starts_with(p))
            && self.category.as_deref().is_none_or(|c| category_of(stream) == c)
            && (self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type))
    }
}

/// Which way a stream read goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From lower versions to higher ones.
    Forward,
    /// From higher versions to lower ones.
    Backward,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_version_and_sync_mode_parse_what_they_display() {
        for expected in
            [ExpectedVersion::Any, ExpectedVersion::NoStream, ExpectedVersion::Exists, ExpectedVersion::Exact(7)]
        {
            assert_eq!(expected.to_string().parse::<ExpectedVersion>(), Ok(expected));
        }
        assert_eq!("0".parse::<ExpectedVersion>(), Ok(ExpectedVersion::NoStream));
        assert_eq!("EXISTS".parse::<ExpectedVersion>(), Ok(ExpectedVersion::Exists));
        assert!("-1".parse::<ExpectedVersion>().unwrap_err().contains("any|none|exists|<n>"));
    }
}

/// Buckets of a [`Log2Histogram`]: the last one (30) holds everything from 2^29 on (in µs, nine
/// minutes).
pub const LOG2_BUCKETS: usize = 31;

/// Observations counted by their power of two (a histogram's buckets, without its arithmetic):
/// `counts[i]` is how many had `i` bits, that is `0` for `i = 0`, else `2^(i-1) ..= 2^i - 1`;
/// the last bucket also holds everything larger. `sum` is the sum of every observation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Log2Histogram {
    /// Observations per bucket.
    pub counts: [u64; LOG2_BUCKETS],
    /// The sum of every observation.
    pub sum: u64,
}

impl Log2Histogram {
    /// The largest value bucket `i` holds (`2^i - 1`; the last bucket holds more).
    pub fn upper_bound(i: usize) -> u64 {
        1u64.checked_shl(i as u32).map_or(u64::MAX, |b| b - 1)
    }

    /// How many observations there were.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// Observations counted by their power of two: plain counters, one per bucket, that a layer
/// above turns into a histogram (the daemon's `/metrics`). Bucket `i` counts values of `i`
/// bits: 0 in bucket 0, then `2^(i-1) ..= 2^i - 1`; the last bucket everything larger.
#[derive(Debug)]
pub struct Log2Counts {
    // One counter per bucket of `Log2Histogram`.
    counts: [AtomicU64; LOG2_BUCKETS],
    sum: AtomicU64,
}

impl Default for Log2Counts {
    fn default() -> Self {
        Log2Counts { counts: std::array::from_fn(|_| AtomicU64::new(0)), sum: AtomicU64::new(0) }
    }
}

impl Log2Counts {
    /// Counts `value`.
    pub fn record(&self, value: u64) {
        let bucket = ((u64::BITS - value.leading_zeros()) as usize).min(LOG2_BUCKETS - 1);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> Log2Histogram {
        Log2Histogram {
            counts: std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)),
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod log2_tests {
    use super::*;

    #[test]
    fn values_land_in_the_bucket_of_their_bit_length() {
        let counts = Log2Counts::default();
        for value in [0, 1, 2, 3, 4, 127, 128, u64::MAX] {
            counts.record(value);
        }
        let h = counts.snapshot();
        assert_eq!(&h.counts[..9], &[1, 1, 2, 1, 0, 0, 0, 1, 1]);
        assert_eq!(h.counts[LOG2_BUCKETS - 1], 1, "everything larger goes to the last bucket");
        assert_eq!(h.count(), 8);
        assert_eq!(h.sum, 0u64.wrapping_add(1 + 2 + 3 + 4 + 127 + 128).wrapping_add(u64::MAX));
        assert_eq!((Log2Histogram::upper_bound(0), Log2Histogram::upper_bound(7)), (0, 127));
        // Every value counted in bucket i is at most its upper bound.
        for value in [5u64, 64, 1000, 1 << 20] {
            let i = (u64::BITS - value.leading_zeros()) as usize;
            assert!(value <= Log2Histogram::upper_bound(i) && value > Log2Histogram::upper_bound(i - 1));
        }
    }
}
