//! How a store is opened: durability, limits, the file system and the clock.

use std::sync::Arc;
use std::time::Duration;

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
    /// When appends are synced to disk (default [`SyncMode::Always`]).
    pub sync: SyncMode,
    /// How much of the sealed segments `open` checks (default [`VerifyOnOpen::AfterCrash`]).
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
    /// How [`crate::compress_sealed`] stores sealed segments (default [`Compression::None`]:
    /// compression is off and that call refuses). Reads of compressed segments need no option.
    pub compression: Compression,
    /// Limits on consumer groups (how many, consumers and pending events per group).
    pub groups: crate::groups::GroupLimits,
    /// How often, at most, the writer records in the manifest how far the active segment is
    /// synced (default 1 s; `Duration::ZERO`: after every fdatasync that moved it). It records
    /// at the latest this long after an fdatasync moved that point, whether or not more appends
    /// come. After a crash the active segment must still hold what was recorded, so only the
    /// events synced in the last interval before the crash can be lost unseen to a disk that
    /// drops synced writes. Each record is one atomic rewrite of the manifest (two fsyncs and a
    /// rename) on the writer thread, off the acknowledgements' path; one that fails (a full
    /// disk) is logged and tried again a second later, and appends go on.
    pub synced_record_every: Duration,
}

/// The codec of compressed sealed segments (docs/format.md, "Compressed segments").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Sealed segments stay plain.
    #[default]
    None,
    /// LZ4 block format in 64 KiB blocks.
    Lz4,
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Compression::None),
            "lz4" => Ok(Compression::Lz4),
            other => Err(format!("unknown compression {other:?}: none or lz4")),
        }
    }
}

/// The clock that stamps events: the system's, or one a test sets by hand.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    /// Microseconds since the Unix epoch, from the system clock.
    pub fn system() -> Self {
        Clock(Arc::new(crate::calendar::now_us))
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
            compression: Compression::None,
            groups: crate::groups::GroupLimits::default(),
            synced_record_every: Duration::from_secs(1),
        }
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_mode_parses_what_it_displays() {
        assert_eq!("always".parse::<SyncMode>(), Ok(SyncMode::Always));
        assert_eq!("never".parse::<SyncMode>(), Ok(SyncMode::Never));
        assert_eq!("every=5".parse::<SyncMode>(), Ok(SyncMode::Every(Duration::from_millis(5))));
        assert!("every=soon".parse::<SyncMode>().unwrap_err().contains("every=<ms>"));
    }
}
