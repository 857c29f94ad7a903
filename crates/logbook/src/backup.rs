//! A consistent copy of a store's data directory, taken while the store is live (or not).
//!
//! Sealed segments never change except by compaction, which replaces them whole; the active
//! segment only grows. So a copy is consistent
//! when no compaction replaced a sealed segment while it was being taken: the copy lists the
//! sealed segments (name, length, header checksum) before and after copying and starts again
//! (up to [`MAX_ATTEMPTS`] times) if that list changed. Segments sealed or created meanwhile are
//! newer than the copy and simply not in it. The active segment is copied as far as it was
//! written, so the copy holds every event acknowledged before the backup started; an append in
//! flight may be cut, which the copy's first open repairs like after a crash. Restore = stop
//! the store, move the copy into place, open it.
//!
//! The copy carries the store's own durable records: the `MANIFEST` read before the segments
//! were listed (everything acknowledged by then is in a segment it lists: a rollover records its
//! new segment before appending to it) and, of a stopped store, its `CLEAN`. Of a live store,
//! segments newer than that manifest's active one are left out. The copy is then walked with
//! those records by the recovery walker (`wal::walk`, the rules `open` and `verify` use): a store
//! `open` would refuse (a listed segment missing, a log that ends before `CLEAN` says, a record
//! that does not decode, a bad frame) is refused, naming the store's file, and no copy is left.
//! A copy never gets records of its own making: that would launder a loss into a store that
//! verifies.
//!
//! Every copied file is synced, then each directory, so a finished backup survives a power loss.

use std::fs;
use std::path::Path;

use crate::datadir::{CleanRecord, DataDir, Manifest, SEGMENTS_DIR};
use crate::error::{Error, Result};
use crate::segment;

/// Copies attempted before giving up because compactions keep replacing segments.
pub const MAX_ATTEMPTS: usize = 5;

/// What a backup copied.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BackupReport {
    /// Segments copied (sealed and active).
    pub segments: usize,
    /// Files copied (segments, indexes, cold-tier files).
    pub files: usize,
    /// Bytes copied.
    pub bytes: u64,
    /// Copies started over because a compaction replaced a sealed segment meanwhile.
    pub retries: usize,
}

/// (base, length, header) of each sealed segment: what a compaction would change.
type SealedList = Vec<(u64, u64, Option<segment::SegmentHeader>)>;

fn sealed_list(data: &DataDir) -> Result<(SealedList, Option<u64>)> {
    let listing = data.list().map_err(|e| Error::io(format!("listing {}", data.segments_dir().display()), e))?;
    let mut bases = listing.segments;
    let active = bases.pop();
    let mut list = Vec::with_capacity(bases.len());
    for base in bases {
        let path = data.segment_path(base);
        let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        list.push((base, len, segment::read_header(&path)));
    }
    Ok((list, active))
}

/// Copies the store in `data` to `out`, which must not exist or be empty. Refuses a store with
/// a cold tier (`archive/`), whose files only the archive crate knows: back such a store up
/// with `logbook_archive::backup_dir` (as `logbook backup` does), or the copy would lack them.
pub fn backup_dir(data: &Path, out: &Path) -> Result<BackupReport> {
    let refuse = || {
        Error::InvalidInput(format!(
            "{} has a cold tier (archive/); back it up through logbook-archive so the copy holds it",
            data.display()
        ))
    };
    if DataDir::new(data).archive_dir().exists() {
        return Err(refuse());
    }
    // Checked again inside every attempt, after the segments are copied: a compaction of a live
    // store may create the cold tier meanwhile (it then also replaces a segment, so an attempt
    // that passed this check before the archive appeared is taken again, and refused).
    backup_dir_with(data, out, |from, to, _| {
        let archived_into = |dir: &DataDir| -> Result<bool> {
            let listing = dir.list().map_err(|e| Error::io(format!("listing {}", dir.segments_dir().display()), e))?;
            Ok(listing.segments.iter().any(|&base| {
                segment::read_header(&dir.segment_path(base)).and_then(|h| h.compacted).is_some_and(|c| c.job != 0)
            }))
        };
        if from.archive_dir().exists() || archived_into(to)? {
            return Err(refuse());
        }
        Ok(())
    })
}

/// Copies the store in `data` to `out` like [`backup_dir`], and calls `extra(from, to, report)`
/// inside each attempt, after the segments and before the check that no compaction replaced
/// one meanwhile: the archive crate copies the cold tier there.
///
/// Refuses (`Error::Corruption`, naming the store's file) a store whose files fail the checks
/// `open` makes against its durable records: the copy carries the store's `MANIFEST` (and its
/// `CLEAN`, when the store is stopped) and is walked with them by the recovery walker before the
/// backup counts as taken; a copy that fails is removed.
pub fn backup_dir_with(
    data: &Path,
    out: &Path,
    mut extra: impl FnMut(&DataDir, &DataDir, &mut BackupReport) -> Result<()>,
) -> Result<BackupReport> {
    if !crate::datadir::holds_store(data) {
        return Err(Error::NoStore(data.to_path_buf()));
    }
    let data_dir = DataDir::new(data);
    if is_inside(out, data) {
        return Err(Error::InvalidInput(format!(
            "backup target {} is inside the data directory {}: choose a directory outside the store",
            out.display(),
            data.display()
        )));
    }
    if out.exists()
        && fs::read_dir(out).map_err(|e| Error::io(format!("reading {}", out.display()), e))?.next().is_some()
    {
        return Err(Error::InvalidInput(format!("backup target {} is not empty", out.display())));
    }
    let mut damage = None;
    for attempt in 0..MAX_ATTEMPTS {
        if out.exists() {
            fs::remove_dir_all(out).map_err(|e| Error::io(format!("clearing {}", out.display()), e))?;
        }
        match attempt_copy(&data_dir, out, attempt, &mut extra) {
            Ok(Attempt::Done(report)) => return Ok(report),
            Ok(Attempt::Changed) => {
                tracing::info!(attempt, "a compaction replaced segments during the backup; copying again");
            }
            Ok(Attempt::Damaged { error, records_changed }) => {
                damage = Some(error);
                if !records_changed {
                    break;
                }
                tracing::info!(attempt, "the store's records changed during the backup; copying again");
            }
            Err(e) => {
                let _ = fs::remove_dir_all(out);
                return Err(refused(e));
            }
        }
    }
    let _ = fs::remove_dir_all(out);
    Err(damage.unwrap_or_else(|| {
        Error::InvalidInput(format!(
            "compactions replaced segments during {MAX_ATTEMPTS} backup attempts; try again when it is quieter"
        ))
    }))
}

/// How one attempt at a copy ended.
enum Attempt {
    Done(BackupReport),
    /// A compaction replaced a sealed segment meanwhile: copy again.
    Changed,
    /// The copy, walked with the store's records, fails the checks `open` makes.
    Damaged {
        error: Error,
        records_changed: bool,
    },
}

/// A corruption error of the store, said to have refused the backup.
fn refused(e: Error) -> Error {
    match e {
        Error::Corruption { file, offset, reason } => Error::corruption(
            file,
            offset,
            format!(
                "{reason}; the backup was refused: the store fails the checks open makes (logbook verify lists \
                 every damaged place; see docs/operations.md)"
            ),
        ),
        e => e,
    }
}

fn attempt_copy(
    data: &DataDir,
    out: &Path,
    attempt: usize,
    extra: &mut impl FnMut(&DataDir, &DataDir, &mut BackupReport) -> Result<()>,
) -> Result<Attempt> {
    // The durable records first, read (and checked) as open reads them: every segment the
    // manifest lists existed when it was written, and everything acknowledged before this
    // point is in a segment it lists (a rollover records its new segment before appending).
    let live = data.in_use();
    let records = read_records(data)?;
    let clean = records.0.as_ref().map(|(record, _)| *record);
    let manifest = records.1.as_ref().map(|(record, _)| record.clone());
    let (before, active) = sealed_list(data)?;
    let mut report = BackupReport { retries: attempt, ..BackupReport::default() };
    let out_segments = out.join(SEGMENTS_DIR);
    fs::create_dir_all(&out_segments).map_err(|e| Error::io(format!("creating {}", out_segments.display()), e))?;
    // Of a live store, segments newer than the manifest's active one were created after it was
    // read (rollovers meanwhile): newer than the copy, left out. Of a stopped store every file
    // is copied, so the walk below judges it as open would.
    let listed_last = manifest.as_ref().and_then(|m| m.entries.last()).map(|e| e.base);
    let wanted = |base: u64| !live || listed_last.is_none_or(|last| base <= last);
    let mut bases: Vec<u64> = before.iter().map(|(base, _, _)| *base).chain(active).filter(|&b| wanted(b)).collect();
    let last = bases.pop();
    let mut names: Vec<String> = Vec::new();
    for base in &bases {
        names.push(segment::file_name(*base));
        names.push(crate::index::file_name(*base));
    }
    if let Some(last) = last {
        names.push(segment::file_name(last));
    }
    let segments = data.segments_dir();
    for name in &names {
        let copied = copy_synced(&segments.join(name), &out_segments.join(name))?;
        if let Some(bytes) = copied {
            report.files += 1;
            report.bytes += bytes;
        }
    }
    report.segments = bases.len() + usize::from(last.is_some());
    let copy = DataDir::new(out);
    extra(data, &copy, &mut report)?;
    let (after, _) = sealed_list(data)?;
    // Sealed segments that existed before must be unchanged; new ones may have appeared
    // after the old active one (the log moved on), which the copy does not need.
    if after.len() < before.len() || after[..before.len()] != before[..] {
        return Ok(Attempt::Changed);
    }
    // The copy carries the store's records (a stopped store's CLEAN too: the copy must end
    // where it says), so `verify` on the copy catches a file missing from it.
    // Byte for byte as read (a version-1 CLEAN stays one).
    let fsys = crate::storage::StdFileSystem;
    let manifest_bytes = records.1.as_ref().map(|(_, bytes)| bytes);
    let clean_bytes = records.0.as_ref().map(|(_, bytes)| bytes);
    for (bytes, path) in [(manifest_bytes, copy.manifest_path()), (clean_bytes, copy.clean_path())] {
        if let Some(bytes) = bytes {
            crate::storage::write_atomically(&fsys, &path, bytes)?;
        }
    }
    sync_dir(&out_segments)?;
    sync_dir(out)?;
    // Walk the copy as open would walk the store: a copy open or verify would refuse is no backup.
    let walk = crate::wal::walk(&copy, crate::wal::RecoveryMode::Verify, clean, manifest.as_ref())?;
    if let Some(bad) = walk.findings.iter().find(|f| f.severity == crate::wal::Severity::Corruption) {
        let file = bad.file.strip_prefix(out).map_or_else(|_| bad.file.clone(), |rel| data.root().join(rel));
        let error = refused(Error::corruption(file, bad.offset, bad.reason.clone()));
        // A record that changed meanwhile (a rollover or compaction of a live store, an open
        // or a clean stop of a stopped one) may explain it: the caller copies again.
        let records_changed = read_records(data).ok().is_none_or(|now| now != records);
        return Ok(Attempt::Damaged { error, records_changed });
    }
    Ok(Attempt::Done(report))
}

/// The clean-shutdown record and the manifest, read as open reads them (one that does not
/// decode is corruption), each with the bytes it was decoded from.
type Records = (Option<(CleanRecord, Vec<u8>)>, Option<(Manifest, Vec<u8>)>);

fn read_records(data: &DataDir) -> Result<Records> {
    Ok((data.read_clean_with_bytes()?, data.read_manifest_with_bytes()?))
}

/// Copies and syncs one file; `None` if it vanished (a compaction removed it: the caller's
/// before/after comparison notices). Returns the file's length.
///
/// Runs of zeros of 64 KiB (`HOLE_BYTES`) or more are left as holes in the copy (it reads back the
/// same): a segment is zero-filled ahead of its writes and preallocated to its full size, so
/// a plain copy of a nearly empty store would write out every unused megabyte of it.
pub fn copy_synced(from: &Path, to: &Path) -> Result<Option<u64>> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut source = match fs::File::open(from) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("opening {}", from.display()), e)),
    };
    let copying = |e| Error::io(format!("copying {} to {}", from.display(), to.display()), e);
    let mut target = fs::OpenOptions::new().write(true).create(true).truncate(true).open(to).map_err(copying)?;
    let mut chunk = vec![0u8; HOLE_BYTES];
    let mut length = 0u64;
    loop {
        let mut filled = 0;
        while filled < chunk.len() {
            match source.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(copying(e)),
            }
        }
        if filled == 0 {
            break;
        }
        let data = &chunk[..filled];
        if filled == HOLE_BYTES && data.iter().all(|&b| b == 0) {
            target.seek(SeekFrom::Current(HOLE_BYTES as i64)).map_err(copying)?;
        } else {
            target.write_all(data).map_err(copying)?;
        }
        length += filled as u64;
        if filled < chunk.len() {
            break;
        }
    }
    // A trailing hole has no bytes written after it: the length says where the file ends.
    target.set_len(length).map_err(copying)?;
    target.sync_all().map_err(|e| Error::io(format!("syncing {}", to.display()), e))?;
    Ok(Some(length))
}

/// The smallest run of zeros [`copy_synced`] leaves as a hole, and the size it copies in.
pub const HOLE_BYTES: usize = 64 * 1024;

/// Syncs a directory, so the names in it survive a power loss.
pub fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}

/// True when `path` is `dir` or lies under it, symlinks resolved: the nearest existing
/// ancestor of `path` is resolved, and the rest of `path` appended to it.
fn is_inside(path: &Path, dir: &Path) -> bool {
    let Ok(dir) = fs::canonicalize(dir) else { return false };
    let path = if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir().unwrap_or_default().join(path) };
    let mut existing = path.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        let (Some(parent), Some(name)) = (existing.parent(), existing.file_name()) else { return false };
        rest.push(name.to_os_string());
        existing = parent;
    }
    let Ok(mut resolved) = fs::canonicalize(existing) else { return false };
    for name in rest.iter().rev() {
        resolved.push(name);
    }
    resolved.starts_with(&dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_reads_back_byte_for_byte_with_zero_runs_as_holes() {
        let dir = tempfile::tempdir().unwrap();
        // Data, a whole zero chunk, data ending mid-chunk, then a zero tail shorter than a chunk.
        let mut bytes = vec![7u8; 1000];
        bytes.resize(1000 + 3 * HOLE_BYTES, 0);
        bytes.extend_from_slice(&[9u8; 10]);
        bytes.resize(bytes.len() + HOLE_BYTES + 5, 0);
        for (name, content) in [("mixed", bytes), ("empty", Vec::new()), ("zeros", vec![0u8; 2 * HOLE_BYTES])] {
            let (from, to) = (dir.path().join(name), dir.path().join(format!("{name}.copy")));
            fs::write(&from, &content).unwrap();
            fs::write(&to, b"an older copy, longer than nothing").unwrap();
            assert_eq!(copy_synced(&from, &to).unwrap(), Some(content.len() as u64));
            assert_eq!(fs::read(&to).unwrap(), content, "{name}");
        }
        assert_eq!(copy_synced(&dir.path().join("gone"), &dir.path().join("gone.copy")).unwrap(), None);
    }
}
