//! The values the public API speaks in: events to append, recorded events, expected versions,
//! options and filters.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

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
    pub id: Option<Uuid>,
    pub event_type: String,
    pub data: Vec<u8>,
    pub metadata: Vec<u8>,
}

impl NewEvent {
    pub fn new(event_type: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        NewEvent { id: None, event_type: event_type.into(), data: data.into(), metadata: Vec::new() }
    }
    pub fn with_id(mut self, id: Uuid) -> Self {
        self.id = Some(id);
        self
    }
    pub fn with_metadata(mut self, metadata: impl Into<Vec<u8>>) -> Self {
        self.metadata = metadata.into();
        self
    }
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppendResult {
    pub first_version: u64,
    pub last_version: u64,
    pub first_position: u64,
    pub last_position: u64,
}

/// A stored event. Cheap to clone: it shares the buffer its frame was read into (one copy
/// from the file, then none).
#[derive(Clone)]
pub struct RecordedEvent {
    /// The bytes read from the segment; the ranges below index into it.
    pub(crate) buf: bytes::Bytes,
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
    fn slice(&self, range: (u32, u32)) -> &[u8] {
        &self.buf[range.0 as usize..range.1 as usize]
    }
    pub fn id(&self) -> Uuid {
        Uuid::from_bytes(self.id)
    }
    pub fn stream(&self) -> &str {
        // Validated as UTF-8 when the frame was decoded; `buf` never changes.
        std::str::from_utf8(self.slice(self.stream)).unwrap_or("")
    }
    pub fn event_type(&self) -> &str {
        // Validated as UTF-8 when the frame was decoded.
        std::str::from_utf8(self.slice(self.event_type)).unwrap_or("")
    }
    pub fn version(&self) -> u64 {
        self.version
    }
    pub fn position(&self) -> u64 {
        self.position
    }
    /// Microseconds since the Unix epoch, UTC, taken when the writer stored the event.
    pub fn timestamp_us(&self) -> i64 {
        self.timestamp_us
    }
    pub fn data(&self) -> &[u8] {
        self.slice(self.data)
    }
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

/// When appends reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// fdatasync before every acknowledgement (shared by concurrent appends). The default.
    Always,
    /// fdatasync at most this long after a write; an append is acknowledged once written.
    Every(Duration),
    /// Never fdatasync except when sealing a segment and on close.
    Never,
}

impl std::str::FromStr for SyncMode {
    type Err = String;

    /// `always`, `never`, or `every=<ms>`.
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "always" => Ok(SyncMode::Always),
            "never" => Ok(SyncMode::Never),
            other => other
                .strip_prefix("every=")
                .and_then(|ms| ms.parse().ok())
                .map(|ms| SyncMode::Every(Duration::from_millis(ms)))
                .ok_or_else(|| format!("wants always, never or every=<ms>, got '{other}'")),
        }
    }
}

/// How `open` treats sealed segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyOnOpen {
    /// Check every frame's checksum in sealed segments only when the last shutdown was not
    /// clean (the default). Reads always check the frames they return.
    AfterCrash,
    /// Check every frame of every sealed segment on every open.
    Always,
}

/// Store options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Preallocated size of a segment; a segment is sealed when the next append does not fit.
    pub segment_bytes: u64,
    pub sync: SyncMode,
    pub verify_on_open: VerifyOnOpen,
    /// Most events in one append.
    pub max_batch_events: usize,
    /// Most bytes (encoded frames) in one append.
    pub max_batch_bytes: usize,
    /// Most appends queued for the writer before appenders wait.
    pub max_queued_appends: usize,
    /// Where file mutations go: the real file system, or a fault-injecting simulation in tests.
    pub fs: Arc<dyn crate::storage::FileSystem>,
    /// Stamps appended events; a manual clock lets tests age events for retention.
    pub clock: Clock,
    /// Create a new, empty store when the directory holds none (the default). With `false`,
    /// `Store::open` on a directory without a logbook store fails with `Error::NoStore` and
    /// creates nothing: what read-only tools want, so a typo in a path is not a new store.
    pub create_if_missing: bool,
    /// Bytes of segment blocks kept in memory for random reads (stream reads, idempotency
    /// lookups); 0 turns the cache off. Filled only by what is read, so an idle store holds
    /// none of it. `$all` scans do not use it.
    pub read_cache_bytes: usize,
}

/// The clock that stamps events: the system's, or one a test sets by hand.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    /// Microseconds since the Unix epoch, from the system clock.
    pub fn system() -> Self {
        Clock(Arc::new(crate::time::now_us))
    }
    /// A clock that reads `now_us`, which the caller moves.
    pub fn manual(now_us: Arc<std::sync::atomic::AtomicI64>) -> Self {
        Clock(Arc::new(move || now_us.load(std::sync::atomic::Ordering::Acquire)))
    }
    /// The current time, microseconds since the Unix epoch.
    pub fn now_us(&self) -> i64 {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now_us())
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_bytes: 64 * 1024 * 1024,
            sync: SyncMode::Always,
            verify_on_open: VerifyOnOpen::AfterCrash,
            max_batch_events: 10_000,
            max_batch_bytes: 64 * 1024 * 1024,
            max_queued_appends: 4096,
            fs: crate::storage::std_fs(),
            clock: Clock::system(),
            create_if_missing: true,
            read_cache_bytes: 256 * 1024 * 1024,
        }
    }
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
    pub fn all() -> Self {
        Filter::default()
    }
    pub fn stream_prefix(prefix: impl Into<String>) -> Self {
        Filter { stream_prefix: Some(prefix.into()), ..Default::default() }
    }
    pub fn category(category: impl Into<String>) -> Self {
        Filter { category: Some(category.into()), ..Default::default() }
    }
    pub fn with_types<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.event_types = types.into_iter().map(Into::into).collect();
        self
    }
    pub fn is_all(&self) -> bool {
        self.stream_prefix.is_none() && self.category.is_none() && self.event_types.is_empty()
    }
    pub fn matches(&self, stream: &str, event_type: &str) -> bool {
        self.stream_prefix.as_deref().is_none_or(|p| stream.starts_with(p))
            && self.category.as_deref().is_none_or(|c| category_of(stream) == c)
            && (self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type))
    }
}

/// Which way a stream read goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
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
        assert_eq!("always".parse::<SyncMode>(), Ok(SyncMode::Always));
        assert_eq!("never".parse::<SyncMode>(), Ok(SyncMode::Never));
        assert_eq!("every=5".parse::<SyncMode>(), Ok(SyncMode::Every(Duration::from_millis(5))));
        assert!("every=soon".parse::<SyncMode>().unwrap_err().contains("every=<ms>"));
    }
}
