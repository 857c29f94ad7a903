//! `logbook export`: copies a store's events into a Parquet archive (the cold tier's format,
//! see [`crate::archive`]) for other tools, without deleting anything from the store.
//!
//! The export is one job, written in chunks as a pending job and committed at the end, so an
//! interrupted export leaves no visible half: the next export into the same directory rolls
//! the leftover pending job back. Exporting again into the same directory is incremental: it
//! takes only positions after the archive's highest one, so no position is archived twice.

use std::path::Path;

use logbook::{DataDir, Error, FileSystem, Filter, Result, Store};

use crate::archive::{Archive, ArchivedEvent};

/// Events held in memory before they are written out as one chunk of the job.
const CHUNK_EVENTS: usize = 100_000;
/// The segment base recorded for an export's pending job (an export belongs to no segment).
const EXPORT_PENDING_BASE: u64 = 0;

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExportReport {
    /// Events exported.
    pub events: u64,
    /// Parquet files written.
    pub files: u64,
    /// Bytes of those files.
    pub bytes: u64,
}

/// Exports the events of `store` whose timestamp is in `[since, until)` (each bound optional),
/// skipping system streams (names starting with '$'), to the archive at `out`, as one
/// committed job. `progress(done, total)` counts positions scanned.
pub fn export(
    store: &Store,
    out: &Path,
    since_us: Option<i64>,
    until_us: Option<i64>,
    progress: impl FnMut(u64, u64),
) -> Result<ExportReport> {
    export_with_fs(store, out, logbook::std_fs(), since_us, until_us, progress)
}

/// [`export`] with the file system the archive writes through (tests inject faults here).
pub fn export_with_fs(
    store: &Store,
    out: &Path,
    fs: std::sync::Arc<dyn FileSystem>,
    since_us: Option<i64>,
    until_us: Option<i64>,
    mut progress: impl FnMut(u64, u64),
) -> Result<ExportReport> {
    // Rolling back pending jobs below is right for an export directory but would destroy a
    // compaction in flight in the store's own archive.
    let own = DataDir::new(store.dir()).archive_dir();
    if resolved(out) == resolved(&own) {
        return Err(Error::InvalidInput(format!("{} is the store's own cold tier; export elsewhere", out.display())));
    }
    let mut archive = Archive::open(out, fs)?;
    check_same_store(store, &archive, out)?;
    for (job, _) in archive.pending_jobs() {
        tracing::warn!(job, dir = %out.display(), "rolling back an interrupted export");
        archive.rollback_job(job)?;
    }
    if archive.holds_first_layout() {
        tracing::warn!(
            dir = %out.display(),
            "this export directory holds files of the first layout (a tenant column); pandas, pyarrow and \
             Polars refuse the mix with new files: export into a new directory"
        );
    }
    let start = archive.manifest().files.iter().map(|f| f.last_position).max().map_or(1, |last| last + 1);
    let total = store.head_position();
    let job = archive.next_job_id();
    let mut report = ExportReport::default();
    let mut chunk: Vec<ArchivedEvent> = Vec::new();
    let mut wrote = false;
    progress(start.saturating_sub(1).min(total), total);
    let mut scan = store.scan_all(start, Filter::all());
    while let Some(event) = scan.next() {
        let event = event?;
        let t = event.timestamp_us();
        let in_window = since_us.is_none_or(|s| t >= s) && until_us.is_none_or(|u| t < u);
        if in_window && !event.stream().starts_with('$') {
            chunk.push(ArchivedEvent::from_recorded(&event));
        }
        if chunk.len() >= CHUNK_EVENTS {
            wrote |= write_chunk(&mut archive, job, &mut chunk, &mut report)?;
            progress(scan.next_position().saturating_sub(1).min(total), total);
        }
    }
    progress(total, total);
    wrote |= write_chunk(&mut archive, job, &mut chunk, &mut report)?;
    if wrote {
        archive.commit_job(job)?;
    }
    Ok(report)
}

/// Refuses an export directory that holds another store's export. Export is incremental (it
/// takes the positions after the directory's highest one), so into another store's export it
/// would skip this store's events as already there and report an empty success. The last
/// exported position must be one this store holds, with the same event id (when this store
/// no longer holds it in its hot tier, retention took it, and nothing is told).
fn check_same_store(store: &Store, archive: &Archive, out: &Path) -> Result<()> {
    let Some(last) = archive.committed_files().map(|f| f.last_position).max() else { return Ok(()) };
    let refuse = |why: String| {
        Err(Error::InvalidInput(format!(
            "{} holds another store's export ({why}); export into a new directory",
            out.display()
        )))
    };
    let head = store.head_position();
    if last > head {
        return refuse(format!("it holds position {last}, and this store's last position is {head}"));
    }
    let ours = store.read_all(last, 1, &Filter::all())?.into_iter().find(|e| e.position() == last);
    // One row, decoded alone (files of other tenants and days may span the position too).
    let mut theirs = None;
    for file in archive.committed_files().filter(|f| f.first_position <= last && last <= f.last_position) {
        theirs = archive.read_rows(file, std::sync::Arc::new([last].into()))?.into_iter().next();
        if theirs.is_some() {
            break;
        }
    }
    match (ours, theirs) {
        (Some(ours), Some(theirs)) if ours.id().as_bytes() != &theirs.id => {
            refuse(format!("its event at position {last} has another id than this store's"))
        }
        _ => Ok(()),
    }
}

/// `path` made absolute with symlinks resolved, also when it (or its parent) does not exist yet.
fn resolved(path: &Path) -> std::path::PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
            resolved(parent).join(name)
        }
        _ => path.to_path_buf(),
    }
}

fn write_chunk(
    archive: &mut Archive,
    job: u64,
    chunk: &mut Vec<ArchivedEvent>,
    report: &mut ExportReport,
) -> Result<bool> {
    if chunk.is_empty() {
        return Ok(false);
    }
    report.events += chunk.len() as u64;
    let files = archive.write_job(job, Some(EXPORT_PENDING_BASE), std::mem::take(chunk))?;
    report.files += files.len() as u64;
    report.bytes += files.iter().map(|f| f.bytes).sum::<u64>();
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use logbook::{ExpectedVersion, NewEvent, Options};

    #[test]
    fn exports_user_streams_in_window_incrementally() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("export");
        let store = Store::open(dir.path().join("data"), Options::default()).unwrap();
        // ('$' streams cannot be appended through the API; the filter guards raw segments.)
        for stream in ["acme:order-1", "acme:order-1", "order-2"] {
            store.append(stream, ExpectedVersion::Any, vec![NewEvent::new("A", b"{}".to_vec())]).unwrap();
        }
        let mut calls = 0;
        let report = export(&store, &out, None, None, |done, total| {
            calls += 1;
            assert!(done <= total);
        })
        .unwrap();
        assert!(calls >= 2);
        assert_eq!((report.events, report.files), (3, 2));
        let archive = Archive::open(&out, logbook::std_fs()).unwrap();
        assert_eq!(archive.event_count(), 3);
        assert!(archive.pending_jobs().is_empty());
        assert_eq!(archive.read_stream("order-2").unwrap()[0].position, 3);
        assert_eq!(archive.read_stream("acme:order-1").unwrap().len(), 2);

        // Again: nothing new. Then one more event: only that one.
        assert_eq!(export(&store, &out, None, None, |_, _| {}).unwrap().events, 0);
        store.append("order-2", ExpectedVersion::Any, vec![NewEvent::new("B", b"x".to_vec())]).unwrap();
        assert_eq!(export(&store, &out, None, None, |_, _| {}).unwrap().events, 1);
        let archive = Archive::open(&out, logbook::std_fs()).unwrap();
        let (findings, positions) = archive.verify();
        assert!(findings.is_empty(), "{findings:?}");
        assert_eq!(positions, vec![1, 2, 3, 4]);

        // The store's own cold tier is refused, however it is spelled.
        let own = dir.path().join("data/../data/archive");
        assert!(matches!(export(&store, &own, None, None, |_, _| {}), Err(Error::InvalidInput(_))));
        assert!(!dir.path().join("data/archive").exists());

        // A window that holds nothing exports nothing.
        let other = dir.path().join("empty");
        assert_eq!(export(&store, &other, Some(0), Some(1), |_, _| {}).unwrap(), ExportReport::default());
        assert!(!other.exists(), "nothing created");
        store.close().unwrap();
    }
}
