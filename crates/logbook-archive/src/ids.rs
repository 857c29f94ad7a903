//! The cold tier's event ids in memory, so that an idempotent retry of an append whose events
//! compaction archived is recognised ([`logbook::ArchivedEvents`], registered by
//! [`open_store`](crate::open_store)).
//!
//! Every append with client ids asks about each id the hot tier does not hold, on the writer
//! thread, and nearly always about a new id: that answer comes from memory. The index keeps,
//! per archived event, a 64-bit key and its position (16 bytes), sorted. The key hashes the
//! stream name and the whole id with a key chosen at random per process (SipHash), so ids that
//! share half their bits (time-based v1 and v6 UUIDs of one host share the low 64) do not
//! collide, nor can a client craft ids that collide with archived ones to make lookups read
//! files. Only a key that matches leads to Parquet: the one file of the stream's tenant whose
//! position range holds the position is read (crc-checked, bounded like every archive read),
//! once per append however many of its ids it holds, and its row compared on the full id and
//! the stream.
//!
//! Built at open from the id and position columns of every file the manifest lists (nothing
//! else of them is read), and extended by compaction before it writes a job
//! ([`ArchivedEvents::archiving`]), so an event is findable from the moment the hot tier stops
//! holding it. A job rolled back leaves keys whose lookups miss (`None`), which is harmless.

use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::fs;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use arrow_array::{Int64Array, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use logbook::{owner_of, ArchivedEvents, ArchivedMatch, Error, FileSystem, RecordedEvent, Result};

use crate::archive::{check_footer, column, non_negative, Archive, ManifestFile, MAX_FILE_BYTES};

/// The ids of a cold tier's events, as [`ArchivedEvents`] for the store's idempotent appends.
pub struct ArchivedIds {
    root: PathBuf,
    fs: Arc<dyn FileSystem>,
    /// Keys the index by (stream, id): random per process.
    hasher: RandomState,
    /// (key, position) of every archived event, sorted.
    keys: RwLock<Vec<(u64, u64)>>,
    /// Archive files read by lookups (a key that matched), since load.
    files_read: AtomicU64,
    /// Serialises additions (compaction runs one at a time anyway), so a merge built outside
    /// the write lock never loses another's keys.
    adding: Mutex<()>,
}

impl std::fmt::Debug for ArchivedIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.keys.read().map_or(0, |k| k.len());
        f.debug_struct("ArchivedIds").field("root", &self.root).field("events", &count).finish()
    }
}

impl ArchivedIds {
    /// The ids of every event in the files `archive` lists (committed or pending), read from
    /// their id and position columns.
    pub fn load(archive: &Archive) -> Result<ArchivedIds> {
        // Not sized from the manifest's row counts: they are claims until the files back them.
        let hasher = RandomState::new();
        let mut keys = Vec::new();
        for file in &archive.manifest().files {
            read_keys(&archive.root().join(&file.path), file, &hasher, &mut keys)?;
        }
        keys.sort_unstable();
        keys.shrink_to_fit();
        Ok(ArchivedIds {
            root: archive.root().to_path_buf(),
            fs: Arc::clone(archive.file_system()),
            hasher,
            keys: RwLock::new(keys),
            files_read: AtomicU64::new(0),
            adding: Mutex::new(()),
        })
    }

    /// Archive files lookups have read since load (each a key that matched in memory).
    pub fn files_read(&self) -> u64 {
        self.files_read.load(Ordering::Relaxed)
    }

    fn key(&self, stream: &str, id: &[u8; 16]) -> u64 {
        key_of(&self.hasher, stream, id)
    }

    /// Archived events known (with their keys in memory).
    pub fn len(&self) -> usize {
        self.keys.read().map_or(0, |k| k.len())
    }

    /// Whether no archived event is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Positions of the archived events whose (stream, id) has the key of these.
    fn positions_of(&self, stream: &str, id: &[u8; 16]) -> Vec<u64> {
        let key = self.key(stream, id);
        let keys = self.keys.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let start = keys.partition_point(|&(k, _)| k < key);
        keys[start..].iter().take_while(|&&(k, _)| k == key).map(|&(_, position)| position).collect()
    }

    /// Adds keys (any order) to the sorted ones: merged outside the write lock, so lookups
    /// wait only for the swap (memory: the old and the merged vector, for a moment).
    fn add(&self, mut new: Vec<(u64, u64)>) {
        if new.is_empty() {
            return;
        }
        new.sort_unstable();
        let _adding = self.adding.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let merged = {
            let keys = self.keys.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            merge_sorted(&keys, &new)
        };
        *self.keys.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = merged;
    }
}

fn merge_sorted(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] <= b[j] {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

impl ArchivedEvents for ArchivedIds {
    fn find(&self, stream: &str, id: &[u8; 16]) -> Result<Option<ArchivedMatch>> {
        Ok(self.find_all(stream, std::slice::from_ref(id))?.pop().flatten())
    }

    fn find_all(&self, stream: &str, ids: &[[u8; 16]]) -> Result<Vec<Option<ArchivedMatch>>> {
        let mut found: Vec<Option<ArchivedMatch>> = ids.iter().map(|_| None).collect();
        // (position, index into `ids`) of every key that matched in memory.
        let mut wanted: Vec<(u64, usize)> = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            wanted.extend(self.positions_of(stream, id).into_iter().map(|position| (position, i)));
        }
        if wanted.is_empty() {
            return Ok(found);
        }
        // Read the manifest as it is now (compaction's job may have been written, committed or
        // rewritten since open), then each file holding a wanted position once.
        let archive = Archive::open(&self.root, Arc::clone(&self.fs))?;
        let manifest = archive.manifest();
        let tenant = owner_of(stream);
        let mut by_file: BTreeMap<usize, Vec<(u64, usize)>> = BTreeMap::new();
        for &(position, i) in &wanted {
            let holding = manifest
                .files
                .iter()
                .enumerate()
                .filter(|(_, f)| f.tenant == tenant && f.first_position <= position && position <= f.last_position);
            for (index, _) in holding {
                by_file.entry(index).or_default().push((position, i));
            }
        }
        for (index, positions) in by_file {
            let file = &manifest.files[index];
            self.files_read.fetch_add(1, Ordering::Relaxed);
            let wanted: std::collections::HashSet<u64> = positions.iter().map(|&(position, _)| position).collect();
            let rows = match archive.read_rows(file, Arc::new(wanted)) {
                Ok(rows) => rows,
                // A pending job's files may be going (rolled back): its events are hot.
                Err(_) if manifest.is_pending(file.job) => continue,
                Err(err) => return Err(err),
            };
            for event in rows {
                let Some(&(_, i)) = positions
                    .iter()
                    .find(|&&(position, i)| event.position == position && event.id == ids[i] && event.stream == stream)
                else {
                    continue;
                };
                found[i].get_or_insert(ArchivedMatch {
                    version: event.version,
                    position: event.position,
                    event_type: event.event_type,
                    data: event.data,
                    metadata: event.metadata,
                    timestamp_us: event.timestamp_us,
                });
            }
        }
        // Keys of a job rolled back (or, rarely, of another event) stay `None`: not archived.
        Ok(found)
    }

    fn archiving(&self, events: &[RecordedEvent]) {
        self.add(events.iter().map(|e| (self.key(e.stream(), e.id().as_bytes()), e.position())).collect());
    }
}

/// The index key of (stream, id).
fn key_of(hasher: &RandomState, stream: &str, id: &[u8; 16]) -> u64 {
    hasher.hash_one((stream, id))
}

/// Appends (key, position) of every row of the archive file `file` at `path`, reading only
/// its id and position columns. Bounded as every archive read: the file's length must be the
/// manifest's (at most [`MAX_FILE_BYTES`]), its footer's row count the manifest's, and each
/// column chunk at most [`MAX_CHUNK_UNCOMPRESSED`] bytes uncompressed.
fn read_keys(path: &Path, file: &ManifestFile, hasher: &RandomState, keys: &mut Vec<(u64, u64)>) -> Result<()> {
    let corrupt = |reason: String| Error::corruption(path, 0, reason);
    let opened = fs::File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let len = opened.metadata().map_err(|e| Error::io(format!("reading {}", path.display()), e))?.len();
    if len != file.bytes || len > MAX_FILE_BYTES {
        return Err(corrupt(format!("{len} bytes, the manifest says {}", file.bytes)));
    }
    let builder = ParquetRecordBatchReaderBuilder::try_new(opened)
        .map_err(|e| corrupt(format!("not a readable Parquet file: {e}")))?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), ["position", "stream", "id"]);
    let rows = check_footer(builder.metadata(), Some(&mask)).map_err(corrupt)?;
    if rows as u64 != file.rows {
        return Err(corrupt(format!("footer claims {rows} rows, the manifest says {}", file.rows)));
    }
    let reader = builder.with_projection(mask).build().map_err(|e| corrupt(format!("cannot read rows: {e}")))?;
    let before = keys.len();
    for batch in reader {
        let batch = batch.map_err(|e| corrupt(format!("cannot read rows: {e}")))?;
        let positions = column::<Int64Array>(&batch, "position").map_err(corrupt)?;
        let streams = column::<StringArray>(&batch, "stream").map_err(corrupt)?;
        let ids = column::<StringArray>(&batch, "id").map_err(corrupt)?;
        for row in 0..batch.num_rows() {
            let position =
                non_negative(positions.value(row), "position").map_err(|e| corrupt(format!("row {row}: {e}")))?;
            let id = uuid::Uuid::parse_str(ids.value(row))
                .map_err(|e| corrupt(format!("row {row} (position {position}): bad id: {e}")))?;
            keys.push((key_of(hasher, streams.value(row), id.as_bytes()), position));
        }
        if (keys.len() - before) as u64 > file.rows {
            return Err(corrupt(format!("the pages hold more rows than the manifest's {}", file.rows)));
        }
    }
    if (keys.len() - before) as u64 != file.rows {
        return Err(corrupt(format!("the pages hold {} rows, the manifest says {}", keys.len() - before, file.rows)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::ArchivedEvent;

    fn event(position: u64, stream: &str, id: u128) -> ArchivedEvent {
        ArchivedEvent {
            position,
            stream: stream.into(),
            version: position,
            event_type: "T".into(),
            timestamp_us: 1_700_000_000_000_000,
            id: uuid::Uuid::from_u128(id).into_bytes(),
            metadata: Vec::new(),
            data: b"{}".to_vec(),
        }
    }

    fn id(value: u128) -> [u8; 16] {
        uuid::Uuid::from_u128(value).into_bytes()
    }

    #[test]
    fn finds_committed_and_pending_rows_and_misses_everything_else() {
        let dir = tempfile::tempdir().unwrap();
        let mut archive = Archive::open(dir.path(), logbook::std_fs()).unwrap();
        archive.write_job(1, None, vec![event(1, "acme:order-1", 0xA), event(2, "order-2", 0xB)]).unwrap();
        let ids = ArchivedIds::load(&archive).unwrap();
        assert_eq!(ids.len(), 2);
        let found = ids.find("acme:order-1", &id(0xA)).unwrap().unwrap();
        assert_eq!((found.version, found.position, found.data.as_slice()), (1, 1, &b"{}"[..]));
        assert!(ids.find("order-2", &id(0xB)).unwrap().is_some());
        let read = ids.files_read();
        // Another stream, or the same low 64 bits under other high ones, or an unknown id: not
        // archived, answered from memory without reading a file.
        assert!(ids.find("order-9", &id(0xA)).unwrap().is_none());
        assert!(ids.find("acme:order-1", &id((7 << 64) | 0xA)).unwrap().is_none());
        assert!(ids.find("acme:order-1", &id(0xC)).unwrap().is_none(), "an unknown key");
        assert_eq!(ids.files_read(), read, "no file read for ids that are not archived");

        // Compaction tells the ids before it writes the job; found once written (pending).
        let later = event(3, "order-2", 0xD);
        ids.add(vec![(ids.key("order-2", &later.id), later.position)]);
        assert!(ids.find("order-2", &id(0xD)).unwrap().is_none(), "told, not yet written");
        archive.write_job(2, Some(3), vec![later]).unwrap();
        assert!(ids.find("order-2", &id(0xD)).unwrap().is_some(), "a pending job's row is found");
        // Rolled back: the key stays, the lookup misses.
        archive.rollback_job(2).unwrap();
        assert!(ids.find("order-2", &id(0xD)).unwrap().is_none());
        // A reopen reads the ids from the files.
        let reloaded = ArchivedIds::load(&Archive::open(dir.path(), logbook::std_fs()).unwrap()).unwrap();
        assert_eq!(reloaded.len(), 2);
        assert!(reloaded.find("order-2", &id(0xB)).unwrap().is_some());
    }

    #[test]
    fn time_based_ids_of_one_host_and_copied_ids_read_no_file_and_a_retry_reads_each_file_once() {
        // v1/v6 UUIDs of one host share their low 64 bits (clock sequence and node): keyed on
        // those, every new id matched every archived one and read their files, on the writer
        // thread (attacker review of stop 23, findings 2 and 3).
        let v1 = |time: u128| (time << 64) | 0x8123_0242_ac11_0002;
        let dir = tempfile::tempdir().unwrap();
        let mut archive = Archive::open(dir.path(), logbook::std_fs()).unwrap();
        let events: Vec<ArchivedEvent> = (1..=100).map(|p| event(p, "order-1", v1(u128::from(p)))).collect();
        archive.write_job(1, None, events).unwrap();
        let ids = ArchivedIds::load(&archive).unwrap();
        for time in 1000..1100 {
            assert!(ids.find("order-1", &id(v1(time))).unwrap().is_none());
        }
        // An archived event's id sent again in another stream is a new event there.
        assert!(ids.find("order-2", &id(v1(5))).unwrap().is_none());
        assert_eq!(ids.files_read(), 0, "no lookup of a new id read a file");
        // A retry of 50 archived events: every one found, their file read once.
        let retried: Vec<[u8; 16]> = (1..=50).map(|p| id(v1(p))).collect();
        let found = ids.find_all("order-1", &retried).unwrap();
        assert!(found.iter().enumerate().all(|(i, f)| f.as_ref().is_some_and(|m| m.position == i as u64 + 1)));
        assert_eq!(ids.files_read(), 1);
        // Reading a file for a retry decodes only the rows asked for.
        let file = &archive.manifest().files[0];
        let rows = archive.read_rows(file, Arc::new([2, 50, 1000].into_iter().collect())).unwrap();
        assert_eq!(rows.iter().map(|r| r.position).collect::<Vec<_>>(), vec![2, 50]);
        assert_eq!(rows[1].id, id(v1(50)));
    }

    #[test]
    fn merging_keeps_keys_sorted() {
        assert_eq!(
            merge_sorted(&[(1, 1), (5, 2)], &[(0, 9), (5, 1), (7, 3)]),
            [(0, 9), (1, 1), (5, 1), (5, 2), (7, 3)]
        );
    }
}
