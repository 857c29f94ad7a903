//! `logbook repair`: the explicit way out when `open` refuses a damaged store and there is no
//! backup to restore. It keeps everything it takes away in `<data>/repair-<time>/` and says
//! what it gave up:
//!
//! * a damaged durable record (`CLEAN`, `MANIFEST`) is moved there;
//! * a segment file the manifest does not list (a stray file) is moved there, giving up nothing;
//! * otherwise the log is cut back to the last whole batch before the first damage in log
//!   order: every later segment is moved there, and a copy of the one it shortens.
//!
//! Then it writes a new manifest for what it kept and opens the store once. Positions it gave
//! up are written again by new appends. It never runs by itself: `open` only repairs what an
//! interrupted write can leave.

use std::fs;
use std::path::{Path, PathBuf};

use crate::datadir::{holds_store, DataDir};
use crate::error::{Error, Result};
use crate::segment::{self, Positions, SEGMENT_HEADER_BYTES};
use crate::store::Store;
use crate::options::Options;
use crate::verify::{Finding, Severity};
use crate::wal::{self, RecoveryMode};

/// Rounds of "move a stray file aside, walk again" before giving up on a store full of them.
const MAX_ROUNDS: usize = 64;

/// What a repair did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RepairReport {
    /// Every damage it acted on (file, byte offset, reason), first found first; empty: the
    /// store was healthy and nothing changed.
    pub damage: Vec<(PathBuf, u64, String)>,
    /// Positions given up, first and last (`None` when no event was lost).
    pub gave_up: Option<(u64, u64)>,
    /// Where what it took away was moved.
    pub kept_in: Option<PathBuf>,
    /// The last position the repaired store holds.
    pub head: u64,
}

/// Repairs the store in `dir` (which no process may have open).
pub fn repair_dir(dir: &Path) -> Result<RepairReport> {
    if !holds_store(dir) {
        return Err(Error::NoStore(dir.to_path_buf()));
    }
    let data = DataDir::new(dir);
    let lock = data.lock()?;
    let kept_in = dir.join(format!("repair-{}", crate::calendar::now_us()));
    let mut report = RepairReport::default();
    let keep =
        |path: &Path, report: &mut RepairReport| -> Result<()> { move_into(path, open_kept_dir(&kept_in, report)?) };
    // The records first: one that does not decode is damage, set aside.
    let clean = set_aside_if_damaged(data.read_clean(), &mut report, &keep)?;
    let manifest = set_aside_if_damaged(data.read_manifest(), &mut report, &keep)?;
    // What the store held by its own records: nothing below this may go unreported.
    let listed_end = manifest.as_ref().and_then(|m| m.entries.iter().rev().find(|e| !e.active)).map_or(0, |e| e.end);
    let mut recorded_head = clean.map_or(0, |c| c.head).max(listed_end);
    let mut use_records = report.damage.is_empty();
    for _ in 0..MAX_ROUNDS {
        let walk = if use_records {
            wal::walk(&data, RecoveryMode::Verify, clean, manifest.as_ref())?
        } else {
            wal::walk_without_records(&data)?
        };
        recorded_head = recorded_head.max(walk.last_position);
        let Some(first) = first_damage(&walk.findings) else { break };
        report.damage.push((first.file.clone(), first.offset, first.reason.clone()));
        let Some(base) = segment_base(&first.file) else {
            // A record that decodes but disagrees with the files (a missing manifest, a clean
            // record naming another end): it goes, and the segments are walked without it.
            if std::mem::replace(&mut use_records, false) {
                continue;
            }
            break;
        };
        if first.reason.starts_with("not listed in the manifest") {
            keep(&first.file, &mut report)?;
            keep(&data.index_path(base), &mut report)?;
            continue;
        }
        // Cut at the damage: every later segment goes, the damaged one is shortened.
        let listing = data.list().map_err(|e| Error::io("listing segments", e))?;
        for &later in listing.segments.iter().filter(|&&b| b > base) {
            keep(&data.segment_path(later), &mut report)?;
            keep(&data.index_path(later), &mut report)?;
        }
        let path = data.segment_path(base);
        if path.exists() {
            keep(&data.index_path(base), &mut report)?;
            shorten(&path, first.offset, open_kept_dir(&kept_in, &mut report)?)?;
        }
        break;
    }
    if report.damage.is_empty() {
        drop(lock);
        let head = Store::open(dir, Options { create_if_missing: false, ..Options::default() })?.head_position();
        return Ok(RepairReport { head, ..report });
    }
    // New records for what was kept.
    for record in [data.clean_path(), data.manifest_path()] {
        if record.exists() {
            keep(&record, &mut report)?;
        }
    }
    write_manifest_of_what_is_there(&data)?;
    sync_dir(data.segments_dir())?;
    sync_dir(data.root())?;
    drop(lock);
    // A store cut back to nothing starts again, empty: that is what "gave up 1..=N" means.
    let store = Store::open(dir, Options::default())?;
    report.head = store.head_position();
    store.close()?;
    report.gave_up = (recorded_head > report.head).then_some((report.head + 1, recorded_head));
    Ok(report)
}

/// Creates the directory that keeps what the repair takes away (once), and notes it.
fn open_kept_dir<'a>(kept_in: &'a Path, report: &mut RepairReport) -> Result<&'a Path> {
    fs::create_dir_all(kept_in).map_err(|e| Error::io(format!("creating {}", kept_in.display()), e))?;
    report.kept_in = Some(kept_in.to_path_buf());
    Ok(kept_in)
}

/// A record that does not decode is damage: reported, moved aside with `keep`, read as absent.
fn set_aside_if_damaged<T>(
    read: Result<Option<T>>,
    report: &mut RepairReport,
    keep: &dyn Fn(&Path, &mut RepairReport) -> Result<()>,
) -> Result<Option<T>> {
    match read {
        Ok(record) => Ok(record),
        Err(Error::Corruption { file, offset, reason }) => {
            report.damage.push((file.clone(), offset, reason));
            keep(&file, report)?;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Writes a manifest listing the segments the walk finds (none: no manifest, a new store).
fn write_manifest_of_what_is_there(data: &DataDir) -> Result<()> {
    match wal::manifest_of_segments(data) {
        Ok(Some(manifest)) => data.write_manifest(&crate::storage::StdFileSystem, &manifest),
        Ok(None) => Ok(()),
        Err(Error::Corruption { file, offset, reason }) => {
            Err(Error::corruption(file, offset, format!("still damaged after the cut: {reason}")))
        }
        Err(e) => Err(e),
    }
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
    if let Some(header) = header.filter(|h| h.compressed.is_some()) {
        return shorten_compressed(path, &bytes, header, kept_in);
    }
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

/// A compressed segment is cut back to the last whole batch of the blocks that decode before
/// the first that does not (and before any bad frame in them), and written back plain: the
/// events it keeps are byte for byte the same, at the same (logical) offsets.
fn shorten_compressed(path: &Path, bytes: &[u8], header: segment::SegmentHeader, kept_in: &Path) -> Result<()> {
    let Ok(table) = crate::compressed::decode_table(bytes, bytes.len() as u64) else {
        return move_into(path, kept_in);
    };
    let mut logical = Vec::new();
    let mut block = Vec::new();
    for (i, b) in table.blocks.iter().enumerate() {
        let raw = &bytes[b.offset as usize..(b.offset + u64::from(b.len)) as usize];
        if crate::compressed::decode_block(&table, i, raw, &mut block).is_err() {
            break;
        }
        logical.extend_from_slice(&block);
    }
    if logical.len() <= SEGMENT_HEADER_BYTES {
        return move_into(path, kept_in);
    }
    let plain = segment::SegmentHeader { compressed: None, ..header };
    logical[..SEGMENT_HEADER_BYTES].copy_from_slice(&segment::encode_header(&plain));
    let valid_len = segment::scan_with(&logical, Positions::of(&plain), |_, _| {}).valid_len as usize;
    let name = path.file_name().unwrap_or_default();
    fs::copy(path, kept_in.join(name)).map_err(|e| Error::io(format!("copying {}", path.display()), e))?;
    let tmp = path.with_extension("seg.repair.tmp");
    fs::write(&tmp, &logical[..valid_len])
        .and_then(|()| fs::File::open(&tmp)?.sync_all())
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(|e| Error::io(format!("cutting {}", path.display()), e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
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
