//! The cold tier: events that leave the hot tier (the segments) live on as Parquet files under
//! an archive root, partitioned hive style as `tenant=<id>/date=<yyyy-mm-dd>/`, with a JSON
//! manifest saying what each file holds.
//!
//! Parquet, because the archive is meant to be read by other tools as it is (DuckDB,
//! pandas/pyarrow, Polars, Spark) with no flags: the schema uses only widely supported types
//! (Int64, Utf8, a UTC microsecond timestamp, Parquet's JSON logical type), Snappy compression,
//! and no column that repeats a partition key. Payloads are bytes in the hot tier; here they
//! are JSON texts: the text itself when the bytes are JSON, else a JSON string literal of
//! their base64, with a sibling `*_encoding` column saying which, so the original bytes always
//! come back exactly. An event without metadata has NULL `meta`. Files of the first layout (a
//! `tenant` column, plain strings, `""` for no metadata) are still read, and
//! [`Archive::rewrite_first_layout`] rewrites them into the current layout (compaction does it
//! before it writes into a cold tier that holds any, so a cold tier never mixes the two, which
//! the readers' schema merge refuses).
//!
//! Durability follows the hot tier's rules: every mutation goes through [`FileSystem`] (so
//! fault-injection tests can fail any step), each Parquet file is written under a `.tmp` name,
//! synced, renamed and its directory synced *before* the manifest names it, and the manifest is
//! replaced the same way. So after a crash the manifest is the old one or the new one, and
//! never names a missing or partial file; a crash may only leave unlisted files behind, which
//! [`Archive::verify`] reports as orphans (harmless).
//!
//! A job is one batch of files written together. A *pending* job (written by compaction before
//! it deletes the hot segment it came from) is in the manifest but invisible to reads until
//! [`Archive::commit_job`]; [`Archive::rollback_job`] forgets it and deletes its files.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::extension::Json;
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use base64::Engine as _;
use parquet::arrow::arrow_reader::{ArrowPredicateFn, ParquetRecordBatchReaderBuilder, RowFilter};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use logbook::{
    is_valid_namespace_name, owner_of, read_bounded, Error, FileSystem, Finding, RecordedEvent, Result, Severity,
    ARCHIVE_DIR, ARCHIVE_MANIFEST_FILE as MANIFEST_FILE, DEFAULT_NAMESPACE,
    MAX_ARCHIVE_MANIFEST_BYTES as MAX_MANIFEST_BYTES,
};

/// The manifest format this code writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;
/// Largest Parquet file we read into memory (we never write one near this).
pub const MAX_FILE_BYTES: u64 = 1 << 30;
/// Longest relative path a manifest may name.
const MAX_PATH_BYTES: usize = 512;
/// Bounds on what a Parquet footer may claim before we decode pages: rows per file and
/// uncompressed bytes per column chunk.
pub(crate) const MAX_ROWS_PER_FILE: i64 = 100_000_000;
pub(crate) const MAX_CHUNK_UNCOMPRESSED: i64 = 1 << 30;
/// Files of the first layout rewritten per manifest update (bounds both the work a crash can
/// waste and the number of manifest rewrites on a large cold tier).
const REWRITE_BATCH_FILES: usize = 64;

/// One archived event, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedEvent {
    pub position: u64,
    pub stream: String,
    pub version: u64,
    pub event_type: String,
    pub timestamp_us: i64,
    pub id: [u8; 16],
    pub metadata: Vec<u8>,
    pub data: Vec<u8>,
}

impl ArchivedEvent {
    /// Copies a hot-tier event out of the buffer it was read into.
    pub fn from_recorded(event: &RecordedEvent) -> Self {
        ArchivedEvent {
            position: event.position(),
            stream: event.stream().to_string(),
            version: event.version(),
            event_type: event.event_type().to_string(),
            timestamp_us: event.timestamp_us(),
            id: *event.id().as_bytes(),
            metadata: event.metadata().to_vec(),
            data: event.data().to_vec(),
        }
    }
}

/// What [`Archive::rewrite_first_layout`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RewriteReport {
    /// Files of the first layout replaced by files of the current one.
    pub files: u64,
    /// Rows those files hold (each rewritten exactly).
    pub rows: u64,
    /// Files of the first layout left as they are because they failed their checks (length,
    /// crc32, rows, positions): `verify` reports them; their rows stay readable as before.
    pub skipped: u64,
    /// Unlisted files of the first layout deleted (leftovers of an interrupted rewrite).
    pub orphans_removed: u64,
}

/// "yyyy-mm-dd" in UTC.
pub fn date_of(timestamp_us: i64) -> String {
    logbook::time::date(timestamp_us)
}

/// A date as [`date_of`] writes it: digits and '-', starting with a digit or '-'.
fn is_valid_date(date: &str) -> bool {
    !date.is_empty()
        && date.len() <= 16
        && date.bytes().all(|b| b.is_ascii_digit() || b == b'-')
        && date.bytes().any(|b| b.is_ascii_digit())
}

// ---------------------------------------------------------------------------------------------
// Payload encoding

/// How a payload is stored in its Utf8 column.
const ENCODING_JSON: &str = "json";
const ENCODING_BASE64: &str = "base64";

/// The payload as a JSON text and its encoding: the bytes as they are when they are UTF-8 that
/// parses as JSON (so query engines can use JSON functions on the column directly), else a JSON
/// string literal holding their standard base64 (still valid JSON, and exact).
pub fn encode_payload(bytes: &[u8]) -> (String, &'static str) {
    if let Ok(text) = std::str::from_utf8(bytes) {
        if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
            return (text.to_string(), ENCODING_JSON);
        }
    }
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    // A base64 string needs no escaping: the literal is just the text in quotes.
    (format!("\"{b64}\""), ENCODING_BASE64)
}

/// The inverse of [`encode_payload`].
pub fn decode_payload(text: &str, encoding: &str) -> std::result::Result<Vec<u8>, String> {
    match encoding {
        ENCODING_JSON => Ok(text.as_bytes().to_vec()),
        ENCODING_BASE64 => {
            let inner: String =
                serde_json::from_str(text).map_err(|e| format!("base64 payload is not a JSON string: {e}"))?;
            base64::engine::general_purpose::STANDARD.decode(inner).map_err(|e| format!("bad base64 payload: {e}"))
        }
        other => Err(format!("unknown payload encoding '{other}'")),
    }
}

// ---------------------------------------------------------------------------------------------
// Parquet

/// Column names, in file order. No column repeats a partition key (`tenant`, `date`: the
/// directories say them), so readers that merge hive partitions into the schema (pyarrow,
/// pandas, Polars, DuckDB) open an archive with no flags.
pub const COLUMNS: [&str; 10] =
    ["position", "stream", "version", "type", "time", "id", "data", "meta", "data_encoding", "meta_encoding"];

/// The column the first layout also wrote (the stream's tenant, which its `tenant=` directory
/// already says); still read and checked when present.
const OLD_TENANT_COLUMN: &str = "tenant";

/// The Arrow schema of every archive file. `data` and `meta` are Utf8 with the canonical
/// `arrow.json` extension type, which the parquet crate writes as Parquet's JSON logical type,
/// in every file whatever the payloads (a type that differed between files would break the
/// readers' schema merge). `meta` and `meta_encoding` are NULL for an event without metadata;
/// every other column is non-null.
pub fn schema() -> Arc<Schema> {
    let utf8 = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let json = |name: &str, nullable: bool| utf8(name, nullable).with_extension_type(Json::default());
    Arc::new(Schema::new(vec![
        Field::new("position", DataType::Int64, false),
        utf8("stream", false),
        Field::new("version", DataType::Int64, false),
        utf8("type", false),
        Field::new("time", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        utf8("id", false),
        json("data", false),
        json("meta", true),
        utf8("data_encoding", false),
        utf8("meta_encoding", true),
    ]))
}

fn to_i64(value: u64, what: &str) -> Result<i64> {
    i64::try_from(value).map_err(|_| Error::InvalidInput(format!("{what} {value} does not fit a Parquet Int64")))
}

/// One Parquet file's bytes holding `events` in the given order (Snappy, one row group).
pub fn encode_parquet(events: &[ArchivedEvent]) -> Result<Vec<u8>> {
    let mut data = Vec::with_capacity(events.len());
    let mut data_encodings = Vec::with_capacity(events.len());
    let mut metas = Vec::with_capacity(events.len());
    let mut meta_encodings = Vec::with_capacity(events.len());
    for event in events {
        let (text, encoding) = encode_payload(&event.data);
        data.push(text);
        data_encodings.push(encoding);
        if event.metadata.is_empty() {
            metas.push(None);
            meta_encodings.push(None);
        } else {
            let (text, encoding) = encode_payload(&event.metadata);
            metas.push(Some(text));
            meta_encodings.push(Some(encoding));
        }
    }
    let mut columns = leading_columns(events)?;
    columns.extend([
        Arc::new(StringArray::from(data)) as ArrayRef,
        Arc::new(StringArray::from(metas)),
        Arc::new(StringArray::from(data_encodings)),
        Arc::new(StringArray::from(meta_encodings)),
    ]);
    write_file(schema(), columns)
}

/// The columns both layouts start with: position, stream, version, type, time, id.
fn leading_columns(events: &[ArchivedEvent]) -> Result<Vec<ArrayRef>> {
    let mut positions = Vec::with_capacity(events.len());
    let mut versions = Vec::with_capacity(events.len());
    for event in events {
        positions.push(to_i64(event.position, "position")?);
        versions.push(to_i64(event.version, "version")?);
    }
    let strings = |f: &dyn Fn(&ArchivedEvent) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(events.iter().map(f)))
    };
    Ok(vec![
        Arc::new(Int64Array::from(positions)),
        strings(&|e| e.stream.clone()),
        Arc::new(Int64Array::from(versions)),
        strings(&|e| e.event_type.clone()),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(events.iter().map(|e| e.timestamp_us)).with_timezone("UTC"),
        ),
        strings(&|e| uuid::Uuid::from_bytes(e.id).hyphenated().to_string()),
    ])
}

/// One Parquet file (Snappy, one row group) of `columns` under `schema`.
fn write_file(schema: SchemaRef, columns: Vec<ArrayRef>) -> Result<Vec<u8>> {
    let internal = |e: &dyn std::fmt::Display| Error::InvalidInput(format!("encoding Parquet: {e}"));
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns).map_err(|e| internal(&e))?;
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut writer = ArrowWriter::try_new(Vec::new(), schema, Some(props)).map_err(|e| internal(&e))?;
    writer.write(&batch).map_err(|e| internal(&e))?;
    writer.into_inner().map_err(|e| internal(&e))
}

/// One Parquet file of the *first* layout holding `events`: a `tenant` column after `meta`,
/// `data`/`meta` plain Utf8 (no JSON logical type), no metadata as `""` with encoding base64.
/// The archive never writes it any more; tests and the interop fixture use it to build a cold
/// tier as the old code left it.
#[doc(hidden)]
pub fn encode_parquet_first_layout(events: &[ArchivedEvent]) -> Result<Vec<u8>> {
    let utf8 = |name: &str| Field::new(name, DataType::Utf8, false);
    let schema = Arc::new(Schema::new(vec![
        Field::new("position", DataType::Int64, false),
        utf8("stream"),
        Field::new("version", DataType::Int64, false),
        utf8("type"),
        Field::new("time", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        utf8("id"),
        utf8("data"),
        utf8("meta"),
        utf8(OLD_TENANT_COLUMN),
        utf8("data_encoding"),
        utf8("meta_encoding"),
    ]));
    let strings = |f: &dyn Fn(&ArchivedEvent) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(events.iter().map(f)))
    };
    let mut columns = leading_columns(events)?;
    columns.extend([
        strings(&|e| encode_payload(&e.data).0),
        strings(&|e| encode_payload(&e.metadata).0),
        strings(&|e| owner_of(&e.stream).to_string()),
        strings(&|e| encode_payload(&e.data).1.to_string()),
        strings(&|e| encode_payload(&e.metadata).1.to_string()),
    ]);
    write_file(schema, columns)
}

/// Replaces every listed file of the archive at `root` with a first-layout file holding the
/// same rows and rewrites the manifest's lengths and crc32s to match (not crash-safe): a cold
/// tier as the old code left it, for tests and the interop fixture.
#[doc(hidden)]
pub fn downgrade_to_first_layout(root: &Path) -> Result<()> {
    let mut archive = Archive::open(root, logbook::std_fs())?;
    let mut next = archive.manifest.clone();
    for entry in &mut next.files {
        let rows = archive.read_file(entry)?;
        let bytes = encode_parquet_first_layout(&rows)?;
        let path = root.join(&entry.path);
        fs::write(&path, &bytes).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        entry.bytes = bytes.len() as u64;
        entry.crc32 = crc32fast::hash(&bytes);
    }
    archive.store_manifest(next)
}

pub(crate) fn column<'a, T: Array + 'static>(batch: &'a RecordBatch, name: &str) -> std::result::Result<&'a T, String> {
    let array = nullable_column::<T>(batch, name)?.ok_or_else(|| format!("no column '{name}'"))?;
    if array.null_count() > 0 {
        return Err(format!("column '{name}' holds nulls"));
    }
    Ok(array)
}

/// A column that may hold nulls, or `None` when the file has no such column.
fn nullable_column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> std::result::Result<Option<&'a T>, String> {
    let Some(array) = batch.column_by_name(name) else { return Ok(None) };
    let typed = array.as_any().downcast_ref::<T>();
    typed.map(Some).ok_or_else(|| format!("column '{name}' has type {}", array.data_type()))
}

pub(crate) fn non_negative(value: i64, what: &str) -> std::result::Result<u64, String> {
    u64::try_from(value).map_err(|_| format!("negative {what} {value}"))
}

/// Bounds what a file's footer claims before any page is decoded: at most
/// [`MAX_ROWS_PER_FILE`] rows, and each column chunk read (those of `read`, or every one) at
/// most [`MAX_CHUNK_UNCOMPRESSED`] bytes uncompressed. Returns the row count.
pub(crate) fn check_footer(
    meta: &parquet::file::metadata::ParquetMetaData,
    read: Option<&ProjectionMask>,
) -> std::result::Result<i64, String> {
    let rows = meta.file_metadata().num_rows();
    if !(0..=MAX_ROWS_PER_FILE).contains(&rows) {
        return Err(format!("footer claims {rows} rows"));
    }
    for group in meta.row_groups() {
        for (i, chunk) in group.columns().iter().enumerate() {
            let counted = read.is_none_or(|mask| mask.leaf_included(i));
            if counted && !(0..=MAX_CHUNK_UNCOMPRESSED).contains(&chunk.uncompressed_size()) {
                return Err(format!("a column chunk claims {} uncompressed bytes", chunk.uncompressed_size()));
            }
        }
    }
    Ok(rows)
}

/// Decodes one archive file; errors are `Corruption` naming `file`. Bounds what the footer
/// claims (rows, uncompressed column-chunk sizes) before decoding pages; `Archive` also checks
/// each file's crc32 first, so damaged bytes never reach the decoder through it.
pub fn decode_parquet(bytes: &[u8], file: &Path) -> Result<Vec<ArchivedEvent>> {
    decode_inner(bytes::Bytes::copy_from_slice(bytes), None).map_err(|reason| Error::corruption(file, 0, reason))
}

/// Decodes the rows of a Parquet file, or with `keep` only those at these positions: the
/// position column is read first, and the other columns only for the rows it keeps (so one
/// row of a large file costs its pages, not the whole file decoded).
fn decode_inner(
    bytes: bytes::Bytes,
    keep: Option<Arc<HashSet<u64>>>,
) -> std::result::Result<Vec<ArchivedEvent>, String> {
    let mut builder =
        ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| format!("not a readable Parquet file: {e}"))?;
    let rows = check_footer(builder.metadata(), None)?;
    let filtered = keep.is_some();
    if let Some(keep) = keep {
        let positions = ProjectionMask::columns(builder.parquet_schema(), ["position"]);
        let predicate = ArrowPredicateFn::new(positions, move |batch: RecordBatch| {
            let column = batch.column(0).as_any().downcast_ref::<Int64Array>();
            let kept = column.map(|positions| {
                positions
                    .iter()
                    .map(|p| Some(p.and_then(|p| u64::try_from(p).ok()).is_some_and(|p| keep.contains(&p))))
                    .collect::<BooleanArray>()
            });
            // A position column of another type keeps nothing; decoding the rest would refuse it.
            Ok(kept.unwrap_or_else(|| BooleanArray::from(vec![false; batch.num_rows()])))
        });
        builder = builder.with_row_filter(RowFilter::new(vec![Box::new(predicate)]));
    }
    let reader = builder.build().map_err(|e| format!("cannot read rows: {e}"))?;
    // Not `with_capacity(rows)`: the footer's claim is not yet backed by any decoded page.
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| format!("cannot read rows: {e}"))?;
        decode_batch(&batch, &mut out)?;
    }
    if !filtered && out.len() as i64 != rows {
        return Err(format!("footer claims {rows} rows, the pages hold {}", out.len()));
    }
    Ok(out)
}

fn decode_batch(batch: &RecordBatch, out: &mut Vec<ArchivedEvent>) -> std::result::Result<(), String> {
    let positions = column::<Int64Array>(batch, "position")?;
    let streams = column::<StringArray>(batch, "stream")?;
    let versions = column::<Int64Array>(batch, "version")?;
    let types = column::<StringArray>(batch, "type")?;
    let times = column::<TimestampMicrosecondArray>(batch, "time")?;
    let ids = column::<StringArray>(batch, "id")?;
    let data = column::<StringArray>(batch, "data")?;
    let metas = nullable_column::<StringArray>(batch, "meta")?.ok_or("no column 'meta'")?;
    // Only files of the first layout have it (the `tenant=` directory says it).
    let tenants = match batch.column_by_name(OLD_TENANT_COLUMN) {
        Some(_) => Some(column::<StringArray>(batch, OLD_TENANT_COLUMN)?),
        None => None,
    };
    let data_encodings = column::<StringArray>(batch, "data_encoding")?;
    let meta_encodings = nullable_column::<StringArray>(batch, "meta_encoding")?.ok_or("no column 'meta_encoding'")?;
    for row in 0..batch.num_rows() {
        let position = non_negative(positions.value(row), "position")?;
        let at = |reason: String| format!("row {row} (position {position}): {reason}");
        let stream = streams.value(row);
        if let Some(tenant) = tenants.map(|t| t.value(row)).filter(|&t| t != owner_of(stream)) {
            return Err(at(format!("tenant '{tenant}' is not the tenant of stream '{stream}'")));
        }
        // NULL is an event without metadata (the first layout wrote `""`, encoding base64).
        let metadata = match (metas.is_null(row), meta_encodings.is_null(row)) {
            (true, true) => Vec::new(),
            (false, false) => {
                decode_payload(metas.value(row), meta_encodings.value(row)).map_err(|e| at(format!("meta: {e}")))?
            }
            _ => return Err(at("meta and meta_encoding must be both NULL or both set".into())),
        };
        let id = uuid::Uuid::parse_str(ids.value(row)).map_err(|e| at(format!("bad id: {e}")))?;
        out.push(ArchivedEvent {
            position,
            stream: stream.to_string(),
            version: non_negative(versions.value(row), "version").map_err(at)?,
            event_type: types.value(row).to_string(),
            timestamp_us: times.value(row),
            id: id.into_bytes(),
            data: decode_payload(data.value(row), data_encodings.value(row)).map_err(|e| at(format!("data: {e}")))?,
            metadata,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Manifest

/// What the archive holds. Stored as `_manifest.json` under the root.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Always 1 for now.
    pub format: u32,
    /// The smallest job id never used in this archive.
    pub next_job: u64,
    /// Every file, committed or of a pending job.
    pub files: Vec<ManifestFile>,
    /// Jobs whose files are written but not yet visible.
    pub pending: Vec<PendingJob>,
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest { format: MANIFEST_FORMAT, next_job: 1, files: Vec::new(), pending: Vec::new() }
    }
}

/// One Parquet file of the archive.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ManifestFile {
    /// Relative to the root, '/' separated: `tenant=<t>/date=<d>/<name>.parquet`.
    pub path: String,
    pub tenant: String,
    pub date: String,
    /// The job that wrote it.
    pub job: u64,
    pub rows: u64,
    pub first_position: u64,
    pub last_position: u64,
    pub min_time_us: i64,
    pub max_time_us: i64,
    /// Length of the file in bytes.
    pub bytes: u64,
    /// crc32 (IEEE, crc32fast) of the whole file.
    pub crc32: u32,
}

/// A job written but not yet committed: its files are invisible to reads.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingJob {
    pub job: u64,
    /// The hot segment the job's events came from (compaction deletes it on commit).
    pub segment_base: u64,
}

impl Manifest {
    pub(crate) fn is_pending(&self, job: u64) -> bool {
        self.pending.iter().any(|p| p.job == job)
    }

    /// Checks everything a hostile or damaged manifest could use against us: paths that leave
    /// the root, ids and counts that do not add up.
    fn validate(&self) -> std::result::Result<(), String> {
        if self.format != MANIFEST_FORMAT {
            return Err(format!("unknown manifest format {}", self.format));
        }
        let mut paths = HashSet::new();
        for file in &self.files {
            validate_relative_path(file)?;
            if !paths.insert(file.path.as_str()) {
                return Err(format!("file {} is listed twice", file.path));
            }
            if file.job >= self.next_job {
                return Err(format!("file {} has job {} but next_job is {}", file.path, file.job, self.next_job));
            }
            if file.rows == 0 || file.first_position > file.last_position || file.min_time_us > file.max_time_us {
                return Err(format!("file {} has inconsistent rows/positions/times", file.path));
            }
            if file.last_position - file.first_position < file.rows - 1 {
                return Err(format!("file {} claims more rows than its position range", file.path));
            }
            if file.bytes > MAX_FILE_BYTES {
                return Err(format!("file {} claims {} bytes", file.path, file.bytes));
            }
        }
        let mut jobs = HashSet::new();
        for pending in &self.pending {
            if !jobs.insert(pending.job) || pending.job >= self.next_job {
                return Err(format!("pending job {} is listed twice or not below next_job", pending.job));
            }
        }
        Ok(())
    }
}

/// The path of a manifest entry must be exactly `tenant=<tenant>/date=<date>/<name>.parquet`
/// with a plain file name: nothing absolute, no `..`, nothing outside the root.
fn validate_relative_path(file: &ManifestFile) -> std::result::Result<(), String> {
    let bad = |why: &str| Err(format!("manifest path '{}' refused: {why}", file.path.escape_debug()));
    if file.path.len() > MAX_PATH_BYTES {
        return bad("too long");
    }
    if !is_valid_namespace_name(&file.tenant) && file.tenant != DEFAULT_NAMESPACE {
        return bad("bad tenant");
    }
    if !is_valid_date(&file.date) {
        return bad("bad date");
    }
    let parts: Vec<&str> = file.path.split('/').collect();
    let [tenant_dir, date_dir, name] = parts.as_slice() else { return bad("not tenant=<t>/date=<d>/<file>") };
    if *tenant_dir != format!("tenant={}", file.tenant) || *date_dir != format!("date={}", file.date) {
        return bad("directories do not match its tenant and date");
    }
    let plain = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !plain || name.starts_with('.') || !name.ends_with(".parquet") {
        return bad("not a plain .parquet file name");
    }
    Ok(())
}

/// Creates `dir` (inside or equal to `root`) with its missing ancestors, then syncs every
/// directory from `dir`'s parent up to `root`'s parent, so the new entries survive a crash.
/// It syncs them even when nothing was missing: a retry after a failed sync must not skip the
/// sync that failed.
fn create_dir_durably(fsys: &dyn FileSystem, dir: &Path, root: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let parent_of = |d: &Path| -> PathBuf {
        match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    };
    let mut current = dir.to_path_buf();
    loop {
        let parent = parent_of(&current);
        fsys.sync_dir(&parent).map_err(|e| Error::io(format!("syncing {}", parent.display()), e))?;
        if current == root || !current.starts_with(root) {
            return Ok(());
        }
        current = parent;
    }
}

// ---------------------------------------------------------------------------------------------
// Archive

/// An archive root and its manifest.
#[derive(Debug)]
pub struct Archive {
    root: PathBuf,
    fs: Arc<dyn FileSystem>,
    manifest: Manifest,
}

impl Archive {
    /// Opens the archive rooted at `root` (e.g. `<data dir>/archive`); an absent root or
    /// manifest is an empty archive. Creates nothing until the first write. The manifest is
    /// bounded (refuse > 256 MiB) and validated, so its paths cannot leave the root.
    pub fn open(root: &Path, fs: Arc<dyn FileSystem>) -> Result<Archive> {
        let path = root.join(MANIFEST_FILE);
        let manifest = match read_bounded(&path, MAX_MANIFEST_BYTES) {
            Ok(bytes) => {
                let manifest: Manifest = serde_json::from_slice(&bytes)
                    .map_err(|e| Error::corruption(&path, 0, format!("manifest is not valid JSON: {e}")))?;
                manifest.validate().map_err(|reason| Error::corruption(&path, 0, reason))?;
                manifest
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Manifest::default(),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Err(Error::corruption(&path, 0, format!("manifest refused: {e}")))
            }
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        Ok(Archive { root: root.to_path_buf(), fs, manifest })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub(crate) fn file_system(&self) -> &Arc<dyn FileSystem> {
        &self.fs
    }

    /// A job id never used before in this archive (stored in the manifest as next_job). It
    /// is taken by the first `write_job` that writes something under it.
    pub fn next_job_id(&self) -> u64 {
        self.manifest.next_job
    }

    pub(crate) fn committed_files(&self) -> impl Iterator<Item = &ManifestFile> {
        self.manifest.files.iter().filter(|f| !self.manifest.is_pending(f.job))
    }

    /// Writes `events` as Parquet files, one per (tenant, date) partition, rows sorted by
    /// position, each durably, then records them in the manifest durably. With
    /// `pending_base = Some(base)` the files belong to a pending job, invisible to reads until
    /// [`Archive::commit_job`]; with `None` they are committed at once. Calling it again for a
    /// job that is still pending (with the same base) adds files to that job. Returns the
    /// manifest entries written; empty `events` writes nothing.
    pub fn write_job(
        &mut self,
        job: u64,
        pending_base: Option<u64>,
        mut events: Vec<ArchivedEvent>,
    ) -> Result<Vec<ManifestFile>> {
        match self.manifest.pending.iter().find(|p| p.job == job) {
            Some(p) if pending_base != Some(p.segment_base) => {
                return Err(Error::InvalidInput(format!(
                    "job {job} is pending for segment {}; it cannot take files for {pending_base:?}",
                    p.segment_base
                )))
            }
            Some(_) => {}
            None if job < self.manifest.next_job => {
                return Err(Error::InvalidInput(format!("job id {job} was already used in this archive")))
            }
            None => {}
        }
        if events.is_empty() {
            return Ok(Vec::new());
        }
        events.sort_by_key(|e| e.position);
        if let Some(pair) = events.windows(2).find(|w| w[0].position == w[1].position) {
            return Err(Error::InvalidInput(format!("position {} appears twice in one job", pair[0].position)));
        }
        let mut partitions: BTreeMap<(String, String), Vec<ArchivedEvent>> = BTreeMap::new();
        for event in events {
            let key = (owner_of(&event.stream).to_string(), date_of(event.timestamp_us));
            partitions.entry(key).or_default().push(event);
        }
        let mut written: Vec<ManifestFile> = Vec::new();
        for ((tenant, date), rows) in &partitions {
            match self.write_partition(job, tenant, date, rows) {
                Ok(entry) => written.push(entry),
                Err(err) => {
                    // Not in the manifest, so harmless; remove them now rather than leave
                    // orphans (best effort: the error that matters is `err`).
                    for entry in &written {
                        let _ = self.fs.remove_file(&self.root.join(&entry.path));
                    }
                    return Err(err);
                }
            }
        }
        let mut next = self.manifest.clone();
        next.files.extend(written.iter().cloned());
        if let Some(base) = pending_base {
            if !next.is_pending(job) {
                next.pending.push(PendingJob { job, segment_base: base });
            }
        }
        next.next_job = next.next_job.max(job.saturating_add(1));
        self.store_manifest(next)?;
        Ok(written)
    }

    fn write_partition(&self, job: u64, tenant: &str, date: &str, rows: &[ArchivedEvent]) -> Result<ManifestFile> {
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return Err(Error::InvalidInput("an empty partition".into()));
        };
        let relative = format!("tenant={tenant}/date={date}/job-{job:06}-{:020}.parquet", first.position);
        let path = self.root.join(&relative);
        if let Some(dir) = path.parent() {
            create_dir_durably(self.fs.as_ref(), dir, &self.root)?;
        }
        let bytes = encode_parquet(rows)?;
        logbook::write_atomically(self.fs.as_ref(), &path, &bytes)?;
        Ok(ManifestFile {
            path: relative,
            tenant: tenant.to_string(),
            date: date.to_string(),
            job,
            rows: rows.len() as u64,
            first_position: first.position,
            last_position: last.position,
            min_time_us: rows.iter().map(|e| e.timestamp_us).min().unwrap_or(first.timestamp_us),
            max_time_us: rows.iter().map(|e| e.timestamp_us).max().unwrap_or(first.timestamp_us),
            bytes: bytes.len() as u64,
            crc32: crc32fast::hash(&bytes),
        })
    }

    /// Replaces the manifest durably; the in-memory copy changes only once that succeeded.
    fn store_manifest(&mut self, next: Manifest) -> Result<()> {
        next.validate().map_err(|reason| Error::InvalidInput(format!("refusing to write a bad manifest: {reason}")))?;
        let bytes = serde_json::to_vec_pretty(&next)
            .map_err(|e| Error::InvalidInput(format!("serializing the manifest: {e}")))?;
        create_dir_durably(self.fs.as_ref(), &self.root, &self.root)?;
        logbook::write_atomically(self.fs.as_ref(), &self.root.join(MANIFEST_FILE), &bytes)?;
        self.manifest = next;
        Ok(())
    }

    /// Pending jobs as (job id, segment base).
    pub fn pending_jobs(&self) -> Vec<(u64, u64)> {
        self.manifest.pending.iter().map(|p| (p.job, p.segment_base)).collect()
    }

    /// Makes a pending job's files visible (a durable manifest update).
    pub fn commit_job(&mut self, job: u64) -> Result<()> {
        if !self.manifest.is_pending(job) {
            return Err(Error::InvalidInput(format!("job {job} is not pending")));
        }
        let mut next = self.manifest.clone();
        next.pending.retain(|p| p.job != job);
        self.store_manifest(next)
    }

    /// Forgets a pending job: the manifest update is made durable first, then the job's files
    /// are deleted (a crash in between leaves only unlisted orphans).
    pub fn rollback_job(&mut self, job: u64) -> Result<()> {
        if !self.manifest.is_pending(job) {
            return Err(Error::InvalidInput(format!("job {job} is not pending")));
        }
        let mut next = self.manifest.clone();
        next.pending.retain(|p| p.job != job);
        let (doomed, kept): (Vec<ManifestFile>, Vec<ManifestFile>) = next.files.drain(..).partition(|f| f.job == job);
        next.files = kept;
        self.store_manifest(next)?;
        self.remove_files_durably(doomed.iter().map(|file| self.root.join(&file.path)))?;
        Ok(())
    }

    /// Reads one listed file, checking its length and crc32 before decoding and its row count
    /// and position range after.
    pub(crate) fn read_file(&self, entry: &ManifestFile) -> Result<Vec<ArchivedEvent>> {
        let (path, bytes) = self.read_checked(entry)?;
        let events = decode_inner(bytes.into(), None).map_err(|reason| Error::corruption(&path, 0, reason))?;
        let (first, last) = (events.first().map(|e| e.position), events.last().map(|e| e.position));
        if events.len() as u64 != entry.rows || first != Some(entry.first_position) || last != Some(entry.last_position)
        {
            let reason = format!(
                "holds {} rows, positions {first:?}..={last:?}; the manifest says {} rows, {}..={}",
                events.len(),
                entry.rows,
                entry.first_position,
                entry.last_position
            );
            return Err(Error::corruption(&path, 0, reason));
        }
        Ok(events)
    }

    /// The rows of `entry` at `positions` (those it holds), checked as [`Archive::read_file`]
    /// checks the file (length, crc32), decoding only those rows.
    pub(crate) fn read_rows(&self, entry: &ManifestFile, positions: Arc<HashSet<u64>>) -> Result<Vec<ArchivedEvent>> {
        let (path, bytes) = self.read_checked(entry)?;
        decode_inner(bytes.into(), Some(positions)).map_err(|reason| Error::corruption(&path, 0, reason))
    }

    /// The bytes of `entry`'s file, checked against the manifest (length, crc32).
    fn read_checked(&self, entry: &ManifestFile) -> Result<(PathBuf, Vec<u8>)> {
        let path = self.root.join(&entry.path);
        let bytes = read_bounded(&path, MAX_FILE_BYTES).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::corruption(&path, 0, "listed in the manifest but missing"),
            io::ErrorKind::InvalidData => Error::corruption(&path, 0, e.to_string()),
            _ => Error::io(format!("reading {}", path.display()), e),
        })?;
        if bytes.len() as u64 != entry.bytes {
            let reason = format!("{} bytes, the manifest says {}", bytes.len(), entry.bytes);
            return Err(Error::corruption(&path, bytes.len().min(entry.bytes as usize) as u64, reason));
        }
        let crc = crc32fast::hash(&bytes);
        if crc != entry.crc32 {
            return Err(Error::corruption(&path, 0, format!("crc32 {crc:08x}, the manifest says {:08x}", entry.crc32)));
        }
        Ok((path, bytes))
    }

    /// True when the first listed file is of the first layout (it has a `tenant` column):
    /// readers that merge partitions refuse such files, and refuse a directory that mixes them
    /// with current ones. False when the archive is empty or the file cannot be read.
    pub fn holds_first_layout(&self) -> bool {
        let Some(entry) = self.manifest.files.first() else { return false };
        is_first_layout(&self.root.join(&entry.path)) == Some(true)
    }

    /// Rewrites every committed file of the first layout into the current layout, in the same
    /// partition under a new name, row for row (position, stream, version, type, time, id, data
    /// and metadata bytes or their absence), as committed files of a new job per batch:
    ///
    /// 1. each old file is read through its manifest checks (length, crc32, rows, positions),
    ///    its rows written to a new file (`.tmp`, synced, renamed, directory synced), and the new
    ///    file read back and compared with the rows;
    /// 2. one manifest update (written, synced, renamed) swaps the batch's old entries for the
    ///    new ones: readers see the old files or the new ones, never both;
    /// 3. the old files are removed and their directories synced.
    ///
    /// A crash before 2 leaves the new files unlisted (orphans, rewritten under the same names
    /// by the next run); after it, the old ones (orphans, which `verify` reports). Refused while
    /// a job is pending (resolve it first). A first-layout file that fails its checks is left
    /// alone and counted in [`RewriteReport::skipped`]. Last, unlisted `.parquet` files of the
    /// first layout are deleted: this code never writes one, so such a file is the leftover of
    /// a rewrite interrupted after its manifest update (its rows are in a listed file) or of an
    /// old compaction's rolled-back job, and plain readers (which do not consult the manifest)
    /// would see it as duplicate rows in the layout they refuse. Decides each file's layout from its
    /// Parquet footer alone, so a cold tier already in the current layout costs one footer read
    /// per file.
    pub fn rewrite_first_layout(&mut self) -> Result<RewriteReport> {
        if !self.manifest.pending.is_empty() {
            return Err(Error::InvalidInput(
                "the archive holds a pending job; resolve it before rewriting files of the first layout".into(),
            ));
        }
        let old: Vec<ManifestFile> = self
            .manifest
            .files
            .iter()
            .filter(|f| is_first_layout(&self.root.join(&f.path)) == Some(true))
            .cloned()
            .collect();
        let mut report = RewriteReport::default();
        for batch in old.chunks(REWRITE_BATCH_FILES) {
            let job = self.manifest.next_job;
            let mut replaced: HashMap<String, ManifestFile> = HashMap::new();
            let mut written: Vec<ManifestFile> = Vec::new();
            for entry in batch {
                let rows = match self.read_file(entry) {
                    Ok(rows) => rows,
                    Err(Error::Corruption { file, offset, reason }) => {
                        tracing::warn!(file = %file.display(), offset, %reason,
                            "leaving a damaged archive file of the first layout as it is");
                        report.skipped += 1;
                        continue;
                    }
                    Err(other) => return Err(other),
                };
                match self.write_partition(job, &entry.tenant, &entry.date, &rows).and_then(|new| {
                    written.push(new.clone());
                    self.check_rewritten(&new, &rows).map(|()| new)
                }) {
                    Ok(new) => {
                        report.rows += new.rows;
                        replaced.insert(entry.path.clone(), new);
                    }
                    Err(err) => {
                        // Unlisted, so harmless; removed now rather than left as orphans (best
                        // effort: the error that matters is `err`).
                        for entry in &written {
                            let _ = self.fs.remove_file(&self.root.join(&entry.path));
                        }
                        return Err(err);
                    }
                }
            }
            if replaced.is_empty() {
                continue;
            }
            let mut next = self.manifest.clone();
            let mut doomed = Vec::new();
            for file in &mut next.files {
                if let Some(new) = replaced.get(&file.path) {
                    doomed.push(self.root.join(&file.path));
                    *file = new.clone();
                }
            }
            next.next_job = next.next_job.max(job.saturating_add(1));
            self.store_manifest(next)?;
            report.files += doomed.len() as u64;
            self.remove_files_durably(doomed)?;
        }
        report.orphans_removed = self.remove_first_layout_orphans()?;
        Ok(report)
    }

    /// Deletes the unlisted `.parquet` files of the first layout under the root (see
    /// [`Archive::rewrite_first_layout`]) and syncs their directories; returns how many.
    fn remove_first_layout_orphans(&self) -> Result<u64> {
        let listed: HashSet<PathBuf> = self.manifest.files.iter().map(|f| self.root.join(&f.path)).collect();
        let mut stray = Vec::new();
        collect_stray(&self.root, &listed, &mut stray, 0);
        stray.retain(|path| path.extension().is_some_and(|e| e == "parquet") && is_first_layout(path) == Some(true));
        self.remove_files_durably(stray)
    }

    /// Removes `paths` (one already gone is no error), then syncs each of their directories
    /// once, so the removals survive a power loss. Returns how many it removed.
    fn remove_files_durably(&self, paths: impl IntoIterator<Item = PathBuf>) -> Result<u64> {
        let mut dirs = BTreeSet::new();
        let mut removed = 0;
        for path in paths {
            match self.fs.remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("removing {}", path.display()), e)),
            }
            if let Some(dir) = path.parent() {
                dirs.insert(dir.to_path_buf());
            }
        }
        for dir in dirs {
            self.fs.sync_dir(&dir).map_err(|e| Error::io(format!("syncing {}", dir.display()), e))?;
        }
        Ok(removed)
    }

    /// Reads a just-written file back and compares it with the rows it must hold.
    fn check_rewritten(&self, entry: &ManifestFile, rows: &[ArchivedEvent]) -> Result<()> {
        let path = self.root.join(&entry.path);
        if self.read_file(entry)? != rows {
            return Err(Error::corruption(&path, 0, "the rewritten file does not read back as the rows written"));
        }
        if is_first_layout(&path) != Some(false) {
            return Err(Error::corruption(&path, 0, "the rewritten file is not of the current layout"));
        }
        Ok(())
    }

    /// Committed events of `stream`, in version order.
    pub fn read_stream(&self, stream: &str) -> Result<Vec<ArchivedEvent>> {
        let tenant = owner_of(stream);
        let mut out = Vec::new();
        for entry in self.committed_files().filter(|f| f.tenant == tenant) {
            out.extend(self.read_file(entry)?.into_iter().filter(|e| e.stream == stream));
        }
        out.sort_by_key(|e| (e.version, e.position));
        Ok(out)
    }

    /// Every committed event with position in `from..=to`, in position order.
    pub fn read_range(&self, from: u64, to: u64) -> Result<Vec<ArchivedEvent>> {
        let mut out = Vec::new();
        for entry in self.committed_files().filter(|f| f.first_position <= to && f.last_position >= from) {
            out.extend(self.read_file(entry)?.into_iter().filter(|e| (from..=to).contains(&e.position)));
        }
        out.sort_by_key(|e| e.position);
        Ok(out)
    }

    /// Committed rows.
    pub fn event_count(&self) -> u64 {
        self.committed_files().map(|f| f.rows).sum()
    }

    /// Committed files.
    pub fn file_count(&self) -> u64 {
        self.committed_files().count() as u64
    }

    /// Checks the manifest against the files (see the module docs): every listed file exists
    /// with its recorded length and crc32, decodes, holds the recorded rows and positions,
    /// each row in its partition's tenant and date, positions strictly increasing in a file
    /// and in no two committed files. Unlisted `.parquet` (and `.tmp`) files are reported as
    /// [`Severity::Orphan`]. Returns the findings and the sorted committed positions, so the
    /// caller can check that none is also in the hot tier.
    pub fn verify(&self) -> (Vec<Finding>, Vec<u64>) {
        let mut findings = Vec::new();
        let corrupt = |file: &Path, offset: u64, reason: String| Finding {
            severity: Severity::Corruption,
            file: file.to_path_buf(),
            offset,
            reason,
        };
        let mut owner: HashMap<u64, &str> = HashMap::new();
        for entry in &self.manifest.files {
            let path = self.root.join(&entry.path);
            let events = match self.read_file(entry) {
                Ok(events) => events,
                Err(Error::Corruption { file, offset, reason }) => {
                    findings.push(corrupt(&file, offset, reason));
                    continue;
                }
                Err(other) => {
                    findings.push(corrupt(&path, 0, other.to_string()));
                    continue;
                }
            };
            if let Some(pair) = events.windows(2).find(|w| w[0].position >= w[1].position) {
                let reason =
                    format!("position {} follows {}: not strictly increasing", pair[1].position, pair[0].position);
                findings.push(corrupt(&path, 0, reason));
            }
            for event in &events {
                let (tenant, date) = (owner_of(&event.stream), date_of(event.timestamp_us));
                if tenant != entry.tenant || date != entry.date {
                    let reason = format!(
                        "position {} (stream '{}', {date}) does not belong in partition tenant={}/date={}",
                        event.position, event.stream, entry.tenant, entry.date
                    );
                    findings.push(corrupt(&path, 0, reason));
                    break;
                }
            }
            let (min_t, max_t) = events
                .iter()
                .fold((i64::MAX, i64::MIN), |(lo, hi), e| (lo.min(e.timestamp_us), hi.max(e.timestamp_us)));
            if (min_t, max_t) != (entry.min_time_us, entry.max_time_us) {
                findings.push(corrupt(&path, 0, "times differ from the manifest's min/max".into()));
            }
            if self.manifest.is_pending(entry.job) {
                continue;
            }
            for event in &events {
                if let Some(other) = owner.insert(event.position, &entry.path) {
                    let reason = format!("position {} is also in {other}", event.position);
                    findings.push(corrupt(&path, 0, reason));
                }
            }
        }
        let listed: HashSet<PathBuf> = self.manifest.files.iter().map(|f| self.root.join(&f.path)).collect();
        let mut stray = Vec::new();
        collect_stray(&self.root, &listed, &mut stray, 0);
        for path in stray {
            findings.push(Finding {
                severity: Severity::Orphan,
                file: path,
                offset: 0,
                reason: "not in the manifest: the leftover of an interrupted export or compaction; \
                         no data depends on it and it may be deleted"
                    .into(),
            });
        }
        let mut positions: Vec<u64> = owner.into_keys().collect();
        positions.sort_unstable();
        (findings, positions)
    }
}

/// Whether the Parquet file at `path` is of the first layout (it has a `tenant` column), read
/// from its footer alone; `None` when it cannot be read as Parquet (a damaged file: `verify`
/// reports it). The parquet crate checks the footer's claimed length against the file's before
/// reading it, so a hostile footer allocates at most the file's own length, bounded here.
fn is_first_layout(path: &Path) -> Option<bool> {
    let file = fs::File::open(path).ok()?;
    if file.metadata().ok()?.len() > MAX_FILE_BYTES {
        return None;
    }
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).ok()?;
    Some(builder.schema().field_with_name(OLD_TENANT_COLUMN).is_ok())
}

/// Adds the cold tier of data directory `data` (`<data>/archive`, when it exists) to `report`:
/// [`Archive::verify`]'s findings, its committed files and rows, and a finding for archived
/// positions that are also in the hot tier (the segments' `first_position..=last_position`).
pub fn verify_data_dir(data: &Path, report: &mut logbook::VerifyReport) {
    // Checked here: the core's "not checked" note no longer applies.
    report.findings.retain(|f| f.severity != Severity::Unchecked);
    let root = data.join(ARCHIVE_DIR);
    if !root.is_dir() {
        return;
    }
    let archive = match Archive::open(&root, logbook::std_fs()) {
        Ok(archive) => archive,
        Err(err) => {
            let (file, offset) = match &err {
                Error::Corruption { file, offset, .. } => (file.clone(), *offset),
                _ => (root.join(MANIFEST_FILE), 0),
            };
            let reason = format!("cannot open the archive: {err}");
            report.findings.push(Finding { severity: Severity::Corruption, file, offset, reason });
            return;
        }
    };
    let (mut findings, positions) = archive.verify();
    // Jobs the hot tier records but the manifest does not know: the manifest is older than the
    // log, and it may have lost more jobs than those (a merged compacted segment records only
    // the newest job of the segments it replaced), so no unlisted file is a leftover then.
    let unknown = crate::store::unknown_jobs(&archive, &data.join(logbook::SEGMENTS_DIR));
    if !unknown.is_empty() {
        for finding in findings.iter_mut().filter(|f| f.severity == Severity::Orphan) {
            finding.severity = Severity::Corruption;
            finding.reason = "not in the manifest, which is older than the log (see the segment below): it may \
                              hold archived events the manifest lost; do not delete it"
                .into();
        }
    }
    for (segment, job) in unknown {
        let reason = crate::store::unknown_job_reason(job, archive.next_job_id());
        findings.push(Finding { severity: Severity::Corruption, file: segment, offset: 0, reason });
    }
    report.findings.extend(findings);
    report.archive_files = archive.file_count();
    report.archive_events = archive.event_count();
    let both: Vec<u64> = positions.into_iter().filter(|&p| report.hot.contains(p)).collect();
    if let Some(first) = both.first() {
        let reason = format!("{} archived positions (the first {first}) are also in the hot tier", both.len());
        report.findings.push(Finding { severity: Severity::Corruption, file: root.clone(), offset: 0, reason });
    }
}

/// Unlisted `.parquet` and `.tmp` files under `dir` (symlinks are not followed; the depth is
/// bounded, since our layout is two directories deep).
fn collect_stray(dir: &Path, listed: &HashSet<PathBuf>, out: &mut Vec<PathBuf>, depth: usize) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() && depth < 4 {
            collect_stray(&path, listed, out, depth + 1);
        } else if kind.is_file() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if (name.ends_with(".parquet") || name.ends_with(".tmp")) && !listed.contains(&path) {
                out.push(path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn event(position: u64, stream: &str, timestamp_us: i64, data: &[u8], metadata: &[u8]) -> ArchivedEvent {
        ArchivedEvent {
            position,
            stream: stream.into(),
            version: position,
            event_type: "T".into(),
            timestamp_us,
            id: [position as u8; 16],
            metadata: metadata.to_vec(),
            data: data.to_vec(),
        }
    }

    #[test]
    fn tenants_and_dates() {
        assert_eq!(owner_of("acme:order-1"), "acme");
        assert_eq!(owner_of("order-1"), "default");
        assert_eq!(owner_of("a-b:order-1"), "default");
        assert_eq!(owner_of(":order-1"), "default");
        assert_eq!(owner_of("acme:x:y"), "acme");
        assert_eq!(owner_of(&format!("{}:x", "a".repeat(65))), "default");
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(-1), "1969-12-31");
    }

    #[test]
    fn payload_encodings() {
        assert_eq!(encode_payload(br#"{"a": 1}"#), (r#"{"a": 1}"#.to_string(), "json"));
        assert_eq!(encode_payload(b""), ("\"\"".to_string(), "base64"));
        assert_eq!(encode_payload(&[0, 1, 2]), ("\"AAEC\"".to_string(), "base64"));
        assert_eq!(encode_payload(b"not json"), ("\"bm90IGpzb24=\"".to_string(), "base64"));
        assert!(decode_payload("\"AAEC\"", "zip").is_err());
        assert!(decode_payload("AAEC", "base64").is_err());
    }

    proptest! {
        #[test]
        fn payloads_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..64), text in ".{0,24}") {
            for payload in [bytes.clone(), text.into_bytes()] {
                let (stored, encoding) = encode_payload(&payload);
                prop_assert!(serde_json::from_str::<serde::de::IgnoredAny>(&stored).is_ok());
                prop_assert_eq!(decode_payload(&stored, encoding).unwrap(), payload);
            }
        }
    }

    #[test]
    fn parquet_round_trip() {
        let events = vec![
            event(1, "acme:order-1", 1_700_000_000_000_000, br#"{"x":1}"#, b""),
            event(2, "order-2", -5, &[0xff, 0], b"[1,2]"),
        ];
        let bytes = encode_parquet(&events).unwrap();
        assert_eq!(decode_parquet(&bytes, Path::new("x.parquet")).unwrap(), events);
        let err = decode_parquet(&bytes[..bytes.len() - 3], Path::new("x.parquet")).unwrap_err();
        assert!(matches!(err, Error::Corruption { ref file, .. } if file == Path::new("x.parquet")), "{err}");
    }

    #[test]
    fn manifest_paths_are_confined() {
        let good = ManifestFile {
            path: "tenant=acme/date=2026-01-02/job-000001-00000000000000000001.parquet".into(),
            tenant: "acme".into(),
            date: "2026-01-02".into(),
            job: 1,
            rows: 1,
            first_position: 1,
            last_position: 1,
            min_time_us: 0,
            max_time_us: 0,
            bytes: 10,
            crc32: 0,
        };
        assert!(validate_relative_path(&good).is_ok());
        for path in [
            "tenant=acme/date=2026-01-02/../x.parquet",
            "/etc/x.parquet",
            "tenant=acme/date=2026-01-02/../../x.parquet",
            "tenant=acme/date=2026-01-02/a/b.parquet",
            "tenant=acme/date=2026-01-02/.parquet",
            "tenant=acme/date=2026-01-02/x.txt",
            "tenant=other/date=2026-01-02/x.parquet",
            "tenant=acme/date=2026-01-02/x\\..parquet",
        ] {
            let bad = ManifestFile { path: path.into(), ..good.clone() };
            assert!(validate_relative_path(&bad).is_err(), "{path}");
        }
        let bad = ManifestFile { tenant: "..".into(), path: "tenant=../date=2026-01-02/x.parquet".into(), ..good };
        assert!(validate_relative_path(&bad).is_err());
    }
}
