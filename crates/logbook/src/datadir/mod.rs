//! The data directory: the one owner of its paths, of the segment listing and the bytes the
//! segments take, of the LOCK, and of the durable records of what must exist (`CLEAN`,
//! `MANIFEST`). Recovery, verify, backup, stats and INFO all ask it; none lists files itself.
//!
//! ```text
//! <data>/
//!   LOCK        held with an OS lock while a store is open
//!   MANIFEST    which segments must exist (rewritten atomically at each rollover, compaction, open)
//!   CLEAN       present only after a clean shutdown: head, last segment, its length, last checksum
//!   segments/   <base:020>.seg and .idx files, next-segment.tmp
//!   archive/    the cold tier (written by the logbook-archive crate): _manifest.json, Parquet files
//! ```
//!
//! The manifest lives beside `segments/`, not in it, so that losing the whole `segments/`
//! directory is still noticed.

mod record;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

pub use record::{
    decode_clean, decode_manifest, encode_clean, encode_manifest, CleanRecord, LastSegment, Manifest, ManifestEntry,
    SyncedEnd, CLEAN_BYTES, MAX_MANIFEST_BYTES,
};

use crate::error::{Error, Result};
use crate::storage::FileSystem;
use crate::{index, segment};

/// Subdirectory holding segment and index files.
pub const SEGMENTS_DIR: &str = "segments";
/// Held with an OS lock while a store is open.
pub const LOCK_FILE: &str = "LOCK";

/// The OS locks an open store holds (released when dropped): on the data directory and on
/// [`LOCK_FILE`].
#[derive(Debug)]
pub struct StoreLock {
    _dir: File,
    /// `LOCK`, once it exists (an open creates it only after its checks passed, so a refused
    /// open leaves the directory as it found it).
    file: Option<File>,
    path: PathBuf,
}

impl StoreLock {
    /// Creates and locks `LOCK` if it did not exist yet (builds before the directory lock lock
    /// only that file, so an open store must hold it too).
    pub(crate) fn complete(&mut self) -> Result<()> {
        if self.file.is_some() {
            return Ok(());
        }
        refuse_symlink(&self.path)?;
        let open = fs::OpenOptions::new().create(true).truncate(false).write(true).open(&self.path);
        let file = open.map_err(|e| Error::io(format!("opening {}", self.path.display()), e))?;
        if !lock_waiting(&file).map_err(|e| Error::io(format!("locking {}", self.path.display()), e))? {
            let root = self.path.parent().map_or_else(PathBuf::new, Path::to_path_buf);
            return Err(Error::Locked(root));
        }
        self.file = Some(file);
        Ok(())
    }
}
/// Written on clean shutdown, removed on open: its absence means the last run crashed.
pub const CLEAN_FILE: &str = "CLEAN";
/// The durable record of which segments must exist.
pub const MANIFEST_FILE: &str = "MANIFEST";
/// Subdirectory of the cold tier (its files belong to the logbook-archive crate).
pub const ARCHIVE_DIR: &str = "archive";
/// The cold tier's manifest, under [`ARCHIVE_DIR`].
pub const ARCHIVE_MANIFEST_FILE: &str = "_manifest.json";
/// The most bytes of a cold-tier manifest anyone reads.
pub const MAX_ARCHIVE_MANIFEST_BYTES: u64 = 256 << 20;

/// How long an open waits for a lock someone else holds before it says the store is locked.
///
/// Why wait at all: a process that spawns a program (another thread's hook, a test harness)
/// copies every open file into the child until the child's exec closes it, and a lock goes
/// with the open file. So the locks of a store this process just closed can stay held for the
/// few milliseconds of a spawn, and an open refused then would be refused for nothing. A store
/// that is really open holds its locks far longer than this.
pub(crate) const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Refuses a `LOCK` that is a symbolic link: opening it would lock, or create, a file
/// somewhere else.
fn refuse_symlink(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(Error::InvalidInput(format!(
            "{} is a symbolic link, not the store's lock file; remove it",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// Takes `file`'s exclusive lock, trying again until [`LOCK_WAIT`] has passed; false when it
/// stayed held.
fn lock_waiting(file: &File) -> io::Result<bool> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(true),
            Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(fs::TryLockError::WouldBlock) => return Ok(false),
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// True when `dir` holds a logbook store: a segment manifest or a clean-shutdown record, or
/// (a store written before manifests existed, after a crash) a segment file.
pub fn holds_store(dir: &Path) -> bool {
    let data = DataDir::new(dir);
    if data.manifest_path().is_file() || data.clean_path().is_file() {
        return true;
    }
    data.list().is_ok_and(|listing| !listing.segments.is_empty())
}

/// The paths of one data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
    segments: PathBuf,
}

/// What `segments/` holds, by kind.
#[derive(Debug, Default, Clone)]
pub struct Listing {
    /// Bases of segment files, ascending.
    pub segments: Vec<u64>,
    /// Temporary files an interrupted atomic write or compaction left (the spare excluded).
    pub temporary: Vec<PathBuf>,
}

/// Bytes the segment and index files take.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    /// Blocks allocated on disk (what `du` says; the active segment's preallocation included).
    pub allocated: u64,
    /// Sum of file lengths.
    pub apparent: u64,
}

impl DataDir {
    /// The data directory at `root` (nothing is read or created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let segments = root.join(SEGMENTS_DIR);
        DataDir { root, segments }
    }
    /// The data directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `<data>/segments`, holding the segment and index files.
    pub fn segments_dir(&self) -> &Path {
        &self.segments
    }
    /// The segment file whose first event is at position `base` (`segments/<base:020>.seg`).
    pub fn segment_path(&self, base: u64) -> PathBuf {
        self.segments.join(segment::file_name(base))
    }
    /// The index file of the segment starting at position `base` (`segments/<base:020>.idx`).
    pub fn index_path(&self, base: u64) -> PathBuf {
        self.segments.join(index::file_name(base))
    }
    /// The spare segment file kept ready for the next rollover (`segments/next-segment.tmp`).
    pub fn spare_path(&self) -> PathBuf {
        self.segments.join(segment::SPARE_FILE)
    }
    /// The clean-shutdown record (`<data>/CLEAN`).
    pub fn clean_path(&self) -> PathBuf {
        self.root.join(CLEAN_FILE)
    }
    /// The segment manifest (`<data>/MANIFEST`).
    pub fn manifest_path(&self) -> PathBuf {
        self.root.join(MANIFEST_FILE)
    }
    /// The cold tier's directory.
    pub fn archive_dir(&self) -> PathBuf {
        self.root.join(ARCHIVE_DIR)
    }
    /// The cold tier's manifest.
    pub fn archive_manifest_path(&self) -> PathBuf {
        self.archive_dir().join(ARCHIVE_MANIFEST_FILE)
    }
    /// True when the cold tier holds a job written but not yet resolved (a compaction that
    /// moved events to the archive stopped before it finished). Only the archive crate knows
    /// how to resolve one, so the core refuses to compact while this holds. Reads one field of
    /// the archive's manifest: `pending`, a list (docs/format.md).
    pub fn archive_has_pending_jobs(&self) -> Result<bool> {
        #[derive(serde::Deserialize)]
        struct PendingOnly {
            pending: Vec<serde::de::IgnoredAny>,
        }
        let path = self.archive_manifest_path();
        let bytes = match crate::storage::read_bounded(&path, MAX_ARCHIVE_MANIFEST_BYTES) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        let manifest: PendingOnly = serde_json::from_slice(&bytes)
            .map_err(|e| Error::corruption(&path, e.column() as u64, format!("the archive manifest does not parse: {e}")))?;
        Ok(!manifest.pending.is_empty())
    }
    /// The file locked while a store is open (`<data>/LOCK`).
    pub fn lock_path(&self) -> PathBuf {
        self.root.join(LOCK_FILE)
    }

    /// Lists `segments/`. A missing directory lists as empty.
    pub(crate) fn list(&self) -> io::Result<Listing> {
        let mut listing = Listing::default();
        let entries = match fs::read_dir(&self.segments) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(listing),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(base) = segment::parse_file_name(&name) {
                listing.segments.push(base);
            } else if name.ends_with(".tmp") && name != segment::SPARE_FILE {
                listing.temporary.push(entry.path());
            }
        }
        listing.segments.sort_unstable();
        Ok(listing)
    }

    /// Bytes of every file in `segments/`.
    pub fn disk_usage(&self) -> DiskUsage {
        let Ok(entries) = fs::read_dir(&self.segments) else { return DiskUsage::default() };
        let mut usage = DiskUsage::default();
        for metadata in entries.filter_map(|e| e.ok()?.metadata().ok()).filter(|m| m.is_file()) {
            usage.allocated += std::os::unix::fs::MetadataExt::blocks(&metadata) * 512;
            usage.apparent += metadata.len();
        }
        usage
    }

    /// Creates the directory and `segments/` (durably) if missing, then takes the locks,
    /// creating `LOCK`.
    pub(crate) fn create_and_lock(&self, fsys: &dyn FileSystem) -> Result<StoreLock> {
        crate::storage::create_dir_durably(fsys, &self.segments)
            .map_err(|e| Error::io(format!("creating {}", self.segments.display()), e))?;
        let mut lock = self.lock()?;
        lock.complete()?;
        Ok(lock)
    }

    /// Takes the OS locks of an open store: on the data directory itself, then on `LOCK`. A
    /// second open, from any process, is refused (after at most [`LOCK_WAIT`]), even after
    /// someone removed `LOCK` by hand (a "stale lock" cleanup): the directory's lock goes with
    /// its inode, which stays while the store is open.
    pub(crate) fn lock(&self) -> Result<StoreLock> {
        let dir = File::open(&self.root).map_err(|e| Error::io(format!("opening {}", self.root.display()), e))?;
        if !lock_waiting(&dir).map_err(|e| Error::io(format!("locking {}", self.root.display()), e))? {
            return Err(Error::Locked(self.root.clone()));
        }
        // `LOCK` is locked if it exists and created later ([`StoreLock::complete`]): a process
        // of an older build holding this store holds `LOCK`, which its open created.
        let path = self.lock_path();
        refuse_symlink(&path)?;
        let file = match fs::OpenOptions::new().write(true).open(&path) {
            Ok(file) => Some(file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
        };
        if let Some(file) = &file {
            if !lock_waiting(file).map_err(|e| Error::io(format!("locking {}", path.display()), e))? {
                return Err(Error::Locked(self.root.clone()));
            }
        }
        Ok(StoreLock { _dir: dir, file, path })
    }

    /// True when a process holds the store's locks (a store is open here, so its files may
    /// change): the directory's, or `LOCK`'s (a store opened by an older build locked only that).
    pub fn in_use(&self) -> bool {
        // Taking a lock and dropping the file releases it at once.
        let held = |file: File| file.try_lock().is_err();
        File::open(&self.root).is_ok_and(held) || fs::OpenOptions::new().write(true).open(self.lock_path()).is_ok_and(held)
    }

    /// The clean-shutdown record, if there is one. A record that does not decode is corruption.
    pub(crate) fn read_clean(&self) -> Result<Option<CleanRecord>> {
        Ok(self.read_clean_with_bytes()?.map(|(record, _)| record))
    }

    /// [`DataDir::read_clean`], with the bytes the record was decoded from (a backup copies them
    /// as they are).
    pub(crate) fn read_clean_with_bytes(&self) -> Result<Option<(CleanRecord, Vec<u8>)>> {
        read_record(&self.clean_path(), CLEAN_BYTES as u64, decode_clean)
    }

    /// Writes the clean-shutdown record atomically (temp file, fsync, rename, directory fsync).
    pub(crate) fn write_clean(&self, fsys: &dyn FileSystem, record: &CleanRecord) -> Result<()> {
        let path = self.clean_path();
        crate::storage::write_atomically(fsys, &path, &encode_clean(record))
    }

    /// Removes `CLEAN` durably, so a crash from now on is seen as a crash.
    pub(crate) fn remove_clean(&self, fsys: &dyn FileSystem) -> Result<()> {
        fsys.remove_file(&self.clean_path()).map_err(|e| Error::io("removing the clean-shutdown record", e))?;
        fsys.sync_dir(&self.root).map_err(|e| Error::io("syncing the data directory", e))
    }

    /// The segment manifest, if there is one. One that does not decode is corruption.
    pub(crate) fn read_manifest(&self) -> Result<Option<Manifest>> {
        Ok(self.read_manifest_with_bytes()?.map(|(record, _)| record))
    }

    /// [`DataDir::read_manifest`], with the bytes it was decoded from.
    pub(crate) fn read_manifest_with_bytes(&self) -> Result<Option<(Manifest, Vec<u8>)>> {
        read_record(&self.manifest_path(), MAX_MANIFEST_BYTES, decode_manifest)
    }

    /// Replaces the manifest atomically (temp file, fsync, rename, directory fsync).
    pub(crate) fn write_manifest(&self, fsys: &dyn FileSystem, manifest: &Manifest) -> Result<()> {
        let path = self.manifest_path();
        crate::storage::write_atomically(fsys, &path, &encode_manifest(manifest))
    }
}

/// Reads and decodes a durable record: `None` when the file does not exist; one that does not
/// decode (or is longer than `limit`) is corruption.
fn read_record<T>(
    path: &Path,
    limit: u64,
    decode: fn(&[u8]) -> std::result::Result<T, String>,
) -> Result<Option<(T, Vec<u8>)>> {
    match crate::storage::read_bounded(path, limit) {
        Ok(bytes) => {
            decode(&bytes).map(|record| Some((record, bytes))).map_err(|reason| Error::corruption(path, 0, reason))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(Error::corruption(path, 0, e.to_string())),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}
