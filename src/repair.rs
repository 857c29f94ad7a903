//! `logbook repair`: the explicit way out when `open` refuses a damaged store and there is no
//! backup to restore. It cuts the log back to the last whole batch before the first damage
//! (in log order), moves everything it cuts into `<data>/repair-<time>/` (whole files, and a
//! copy of the segment it shortens), and says exactly which positions it gave up. It never
//! runs by itself: `open` only repairs what an interrupted write can leave.

use std::fs;
use std::path::{Path, PathBuf};

use crate::datadir::{holds_store, DataDir};
use crate::error::{Error, Result};
use crate::segment::{self, Positions, SEGMENT_HEADER_BYTES};
use crate::store::Store;
use crate::types::Options;
use crate::verify::{Finding, Severity};
use crate::wal::{self, RecoveryMode};

/// What a repair did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RepairReport {
    /// The damage that decided the cut (file, byte offset, reason); `None`: nothing to repair.
    pub damage: Option<(PathBuf, u64, String)>,
    /// Positions given up, first and last (`None` when no event was lost).
    pub gave_up: Option<(u64, u64)>,
    /// Where the files it cut were moved (and the shortened segment copied).
    pub kept_in: Option<PathBuf>,
    /// The last position the repaired store holds.
    pub head: u64,
}

/// Cuts the store in `dir` back to its last good event before the first damage.
pub fn repair_dir(dir: &Path) -> Result<RepairReport> {
    if !holds_store(dir) {
        return Err(Error::NoStore(dir.to_path_buf()));
    }
    let data = DataDir::new(dir);
    let lock = data.lock()?;
    let clean = data.read_clean().ok().flatten();
    let manifest = data.read_manifest().ok().flatten();
    let walk = wal::walk(&data, RecoveryMode::Verify, clean, manifest.as_ref())?;
    let listed_end = manifest.as_ref().and_then(|m| m.entries.iter().rev().find(|e| !e.active)).map_or(0, |e| e.end);
    let recorded_head = clean.map_or(0, |c| c.head).max(walk.last_position).max(listed_end);
    let records_damaged = data.read_clean().is_err() || data.read_manifest().is_err();
    let Some(first) = first_damage(&walk.findings) else {
        if !records_damaged {
            drop(lock);
            let head = Store::open(dir, Options { create_if_missing: false, ..Options::default() })?.head_position();
            return Ok(RepairReport { head, ..RepairReport::default() });
        }
        return finish(dir, &data, lock, None, recorded_head);
    };
    let kept_in = dir.join(format!("repair-{}", crate::time::now_us()));
    fs::create_dir_all(&kept_in).map_err(|e| Error::io(format!("creating {}", kept_in.display()), e))?;
    let listing = data.list().map_err(|e| Error::io("listing segments", e))?;
    // Damage in a record (CLEAN, MANIFEST) only: the records go, the segments stay.
    if let Some((base, offset)) = segment_base(&first.file).map(|base| (base, first.offset)) {
        for &later in listing.segments.iter().filter(|&&b| b > base) {
            move_into(&data.segment_path(later), &kept_in)?;
            move_into(&data.index_path(later), &kept_in)?;
        }
        let path = data.segment_path(base);
        if path.exists() {
            move_into(&data.index_path(base), &kept_in)?;
            shorten(&path, offset, &kept_in)?;
        }
    }
    finish(dir, &data, lock, Some((first, kept_in)), recorded_head)
}

/// Drops the durable records (the next open verifies every frame and writes new ones), opens
/// the store once, and reports what was given up.
fn finish(
    dir: &Path,
    data: &DataDir,
    lock: fs::File,
    damage: Option<(&Finding, PathBuf)>,
    recorded_head: u64,
) -> Result<RepairReport> {
    for record in [data.clean_path(), data.manifest_path()] {
        match fs::remove_file(&record) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", record.display()), e)),
        }
    }
    sync_dir(data.segments_dir())?;
    sync_dir(data.root())?;
    drop(lock);
    let store = Store::open(dir, Options { create_if_missing: false, ..Options::default() })?;
    let head = store.head_position();
    store.close()?;
    let gave_up = (recorded_head > head).then_some((head + 1, recorded_head));
    let (damage, kept_in) = match damage {
        Some((finding, kept_in)) => {
            (Some((finding.file.clone(), finding.offset, finding.reason.clone())), Some(kept_in))
        }
        None => (None, None),
    };
    Ok(RepairReport { damage, gave_up, kept_in, head })
}

/// The first corruption in log order: by segment, then offset; damage to a record file last.
fn first_damage(findings: &[Finding]) -> Option<&Finding> {
    findings
        .iter()
        .filter(|f| f.severity == Severity::Corruption)
        .min_by_key(|f| (segment_base(&f.file).unwrap_or(u64::MAX), f.offset))
}

fn segment_base(file: &Path) -> Option<u64> {
    segment::parse_file_name(&file.file_name()?.to_string_lossy())
}

/// Cuts the segment at `path` back to the last whole batch before `offset` (a copy of the
/// whole file goes to `kept_in` first); a segment damaged in its header, or one that cannot
/// stay the last segment (a compacted one), is moved away whole.
fn shorten(path: &Path, offset: u64, kept_in: &Path) -> Result<()> {
    let bytes = segment::read_whole(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let header = segment::decode_header(&bytes).ok().filter(|h| h.compacted.is_none());
    let Some(header) = header.filter(|_| offset > SEGMENT_HEADER_BYTES as u64) else {
        return move_into(path, kept_in);
    };
    let keep = offset.min(bytes.len() as u64) as usize;
    let valid_len = segment::scan_with(&bytes[..keep], Positions::of(&header), |_, _| {}).valid_len;
    let name = path.file_name().unwrap_or_default();
    fs::copy(path, kept_in.join(name)).map_err(|e| Error::io(format!("copying {}", path.display()), e))?;
    let file = fs::OpenOptions::new().write(true).open(path).map_err(|e| Error::io("opening a segment", e))?;
    file.set_len(valid_len)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(format!("cutting {}", path.display()), e))
}

fn move_into(path: &Path, dir: &Path) -> Result<()> {
    let Some(name) = path.file_name() else { return Ok(()) };
    match fs::rename(path, dir.join(name)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("moving {} into {}", path.display(), dir.display()), e)),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}
