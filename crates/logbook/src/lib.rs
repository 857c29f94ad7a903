//! logbook: an append-only event log storage engine for event-sourced systems.
//!
//! This is the core crate, the one an embedder takes alone: segments, indexes, recovery, the
//! writer, the [`Store`] and its maintenance (verify, repair, retention, compaction of the
//! hot tier, backup, stats). The cold tier (Parquet), event sourcing, the order lifecycle, the
//! wire protocol and the daemon are crates above this one (`logbook-archive`, `logbook-es`,
//! `logbook-order`, `logbook-protocol`, `logbook-server`).
//!
//! Layers, bottom to top; each module owns one idea and depends only on those below it:
//!
//! | layer | modules |
//! |---|---|
//! | plain values | `types`, `options`, `namespace`, `calendar`, `error`, `archived` (the cold tier's ids, as idempotency needs them) |
//! | bytes on disk | `storage` (files, the fault simulator), `record` (the frame), `segment` (one file), `index` (stream -> version -> position), `block_cache`, `datadir` (the directory and its durable records) |
//! | the log | `wal` (state, the recovery walker, the writer) |
//! | the API | `store`, `groups` (consumer groups on `$all`) |
//! | maintenance | `verify`, `repair`, `retention`, `compact`, `backup`, `stats` |
//!
//! Modules are private: the API is the list of `pub use` below. The `testing` feature makes
//! the internal modules visible (hidden from the docs) for tests and fuzz targets, and adds
//! the fault-injecting file system; it is not part of the API.
#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

/// Declares internal modules: private in a normal build, public (and hidden) with the `testing`
/// feature, so the integration tests and fuzz targets can reach the format and the walker.
macro_rules! internal {
    ($($(#[$attr:meta])* $name:ident),* $(,)?) => {
        $(
            $(#[$attr])*
            #[cfg(feature = "testing")]
            #[doc(hidden)]
            pub mod $name;
            $(#[$attr])*
            #[cfg(not(feature = "testing"))]
            mod $name;
        )*
    };
}

internal! {
    archived,
    backup,
    block_cache,
    calendar,
    compact,
    compress,
    compressed,
    datadir,
    error,
    groups,
    index,
    le,
    namespace,
    options,
    record,
    repair,
    retention,
    segment,
    stats,
    storage,
    store,
    types,
    verify,
    wait,
    wal,
}

pub use archived::{ArchivedEvents, ArchivedMatch};
pub use backup::{
    backup_dir, backup_dir_with, copy_synced, sync_dir, BackupReport, MAX_ATTEMPTS as MAX_BACKUP_ATTEMPTS,
};
/// For the logbook-archive crate (resolving pending jobs); not for embedders.
#[doc(hidden)]
pub use compact::{archive_jobs_of, committed_job_of};
pub use compact::{compact, compact_with_archive, with_compaction_guard, ArchiveSink, CompactReport};
pub use compress::{compress_sealed, CompressReport};
pub use datadir::{
    holds_store, DataDir, DiskUsage, ARCHIVE_DIR, ARCHIVE_MANIFEST_FILE, MAX_ARCHIVE_MANIFEST_BYTES, SEGMENTS_DIR,
};
pub use error::{Error, Result};
pub use groups::{
    group_stream, validate_consumer_name, validate_group_name, ConsumerInfo, GroupConfig, GroupInfo, GroupLimits,
    GROUP_STREAM_PREFIX, MAX_ACKED_AHEAD, MAX_ACK_WAIT, MAX_CONSUMER_NAME_BYTES, MAX_GROUP_EVENT_TYPES,
    MAX_GROUP_NAME_BYTES, SNAPSHOT_EVERY_ACKS,
};
pub use namespace::{
    is_valid_name as is_valid_namespace_name, owner_of, InvalidNamespace, Namespace, DEFAULT_NAMESPACE,
    MAX_NAMESPACE_NAME_BYTES, NAMESPACE_SEPARATOR,
};
pub use options::{Clock, Compression, Options, SyncMode, VerifyOnOpen};
#[cfg(any(test, feature = "testing"))]
pub use repair::repair_dir_with_gap;
pub use repair::{repair_dir, RepairReport};
pub use retention::{
    parse_duration, Decision, EventFacts, HoldConfig, LegalHold, RetentionConfig, RetentionPolicy, RetentionRule,
    RuleConfig, MAX_RULES, YEAR_US,
};
pub use stats::{collect as collect_stats, StatsReport};
pub use storage::{
    create_dir_durably, read_bounded, std_fs, write_atomically, write_file_atomically, FileSystem, StdFileSystem,
    StorageFile,
};
pub use store::{
    validate_stream_name, validate_system_stream_name, AllPage, AppendPart, PendingAppend, PendingBatch, ScanAll,
    Store, StoreStats, Subscription, TrySubmit,
};
pub use types::{
    category_of, AppendResult, Direction, ExpectedVersion, Filter, Log2Counts, Log2Histogram, NewEvent, RecordedEvent,
    LOG2_BUCKETS, MAX_EVENT_TIME_AHEAD_US, MAX_EVENT_TYPE_BYTES, MAX_PAYLOAD_BYTES, MAX_STREAM_NAME_BYTES,
};
pub use verify::{verify_dir, verify_dir_with_progress, Finding, HotPositions, Severity, VerifyReport};
pub use wait::Poller;

/// Dates and times in UTC, as microseconds since the Unix epoch (the unit of event times).
pub mod time {
    pub use crate::calendar::{
        date, day_start, days_from_civil, hms, hour_start, now_us, parse_rfc3339, rfc3339, utc, UtcTime, DAY_US,
        HOUR_US,
    };
}

#[cfg(feature = "testing")]
pub use storage::{Fault, Op, OpKind, PowerLoss, SimFileSystem};
