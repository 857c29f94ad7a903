//! logbook's cold tier: events that retention expires leave the hot segments as Parquet files
//! under `<data>/archive`, listed by a manifest (`_manifest.json`), one directory per tenant
//! and day. Also the archive side of compaction ([`compact`]: a pending job per rewritten unit,
//! committed once the hot tier no longer holds its events), opening a store with its pending
//! jobs resolved and its archived event ids registered for idempotent appends ([`open_store`],
//! [`ArchivedIds`]), backup and stats of a store with its cold tier, and `export`
//! of the whole log (hot and archived) to Parquet or JSON lines.

mod archive;
mod export;
mod ids;
mod store;

pub use archive::{
    date_of, decode_parquet, decode_payload, downgrade_to_first_layout, encode_parquet, encode_parquet_first_layout,
    encode_payload, schema, verify_data_dir, Archive, ArchivedEvent, Manifest, ManifestFile, PendingJob, RewriteReport,
    COLUMNS, MANIFEST_FORMAT, MAX_FILE_BYTES,
};
pub use export::{export, export_with_fs, ExportReport};
pub use ids::ArchivedIds;
pub use store::{
    backup_dir, check_jobs_known, collect_stats, compact, migrate_cold_tier, open_store, read_archived_stream,
    resolve_pending_jobs,
};
