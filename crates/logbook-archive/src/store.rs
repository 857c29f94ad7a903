//! A store together with its cold tier: what the core crate leaves to this one because only
//! this crate knows the archive's files.
//!
//! - [`open_store`]: opens the store, then resolves the archive jobs an interrupted compaction
//!   left pending (commit when the hot segment carries the job, roll back when it does not),
//!   so no event is both hot and archived, and none is neither.
//! - [`compact`]: compaction whose expired events go to the archive (the [`ArchiveSink`] the
//!   core's compaction writes through), after the archive's files of the first layout are
//!   rewritten into the current one; [`migrate_cold_tier`]: that rewrite alone, on demand.
//! - [`backup_dir`], [`collect_stats`], [`read_archived_stream`]: the core's backup and stats
//!   with the cold tier included, and the archived events of one stream.

use std::path::Path;
use std::sync::Arc;

use logbook::{
    archive_jobs_of, backup_dir_with, committed_job_of, compact_with_archive, copy_synced, sync_dir,
    with_compaction_guard, ArchiveSink, BackupReport, CompactReport, DataDir, Error, Options, RecordedEvent, Result,
    RetentionPolicy, StatsReport, Store, ARCHIVE_MANIFEST_FILE,
};

use crate::archive::{Archive, ArchivedEvent, RewriteReport};
use crate::ids::ArchivedIds;

impl ArchiveSink for Archive {
    /// Resolves the pending jobs, then rewrites any file of the first layout into the current
    /// one (see [`Archive::rewrite_first_layout`]): called under the compaction guard before the
    /// compaction writes anything, so after it the cold tier holds one layout.
    fn resolve_pending_jobs(&mut self, segments_dir: &Path) -> Result<()> {
        check_jobs_known(self, segments_dir)?;
        resolve_pending_jobs(self, segments_dir)?;
        let report = self.rewrite_first_layout()?;
        if report.files > 0 || report.skipped > 0 {
            tracing::info!(
                files = report.files,
                rows = report.rows,
                skipped = report.skipped,
                "rewrote cold-tier files of the first layout into the current one"
            );
        }
        Ok(())
    }

    fn write_pending_job(&mut self, segment_base: u64, events: Vec<RecordedEvent>) -> Result<(u64, usize)> {
        let job = self.next_job_id();
        let rows = events.iter().map(ArchivedEvent::from_recorded).collect();
        let files = self.write_job(job, Some(segment_base), rows)?.len();
        Ok((job, files))
    }

    fn commit_job(&mut self, job: u64) -> Result<()> {
        Archive::commit_job(self, job)
    }
}

/// Opens the store in `dir` (see [`Store::open`]), resolves its cold tier's pending jobs, and
/// registers the cold tier's event ids ([`ArchivedIds`], read from the id and position
/// columns of every archive file) so that a retried append whose events compaction archived
/// returns the original result, as one still in the hot tier does. The store's lock is held
/// before anything in the archive changes.
pub fn open_store(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
    let fs = Arc::clone(&options.fs);
    let store = Store::open(dir.as_ref(), options)?;
    let data = DataDir::new(store.dir());
    let archive = match check_cold_tier(&data, Arc::clone(&fs))? {
        Some(mut archive) => {
            resolve_pending_jobs(&mut archive, data.segments_dir())?;
            archive
        }
        // No cold tier yet: the first archiving compaction creates it, and tells the ids.
        None => Archive::open(&data.archive_dir(), fs)?,
    };
    store.set_archived_events(Arc::new(ArchivedIds::load(&archive)?))?;
    Ok(store)
}

/// Opens the cold tier of `data` (`None` when it has none) after checking that it holds every
/// archive job its hot segments record ([`check_jobs_known`]); a segment that records a job
/// when there is no archive at all is corruption too.
fn check_cold_tier(data: &DataDir, fs: Arc<dyn logbook::FileSystem>) -> Result<Option<Archive>> {
    if data.archive_dir().exists() {
        let archive = Archive::open(&data.archive_dir(), fs)?;
        check_jobs_known(&archive, data.segments_dir())?;
        check_files_there(&archive)?;
        return Ok(Some(archive));
    }
    match archive_jobs_of(data.segments_dir()).into_iter().next() {
        Some((segment, job)) => {
            let reason = format!(
                "records archive job {job}, but the data directory has no archive: the events that job moved \
                 to the cold tier are missing; restore {} from a backup",
                data.archive_dir().display()
            );
            Err(Error::corruption(segment, 0, reason))
        }
        None => Ok(None),
    }
}

/// Checks that the archive's manifest knows every archive job the hot segments record. A
/// segment compacted by job J had its expired events moved into files of job J, which the
/// manifest lists only if its `next_job` is past J. A manifest older than the log (restored
/// from an old backup, synced back from object storage) would hide those events, present their
/// file as a leftover, and hand job J's file names to the next compaction: refused instead.
pub fn check_jobs_known(archive: &Archive, segments_dir: &Path) -> Result<()> {
    match unknown_jobs(archive, segments_dir).into_iter().next() {
        Some((segment, job)) => Err(Error::corruption(segment, 0, unknown_job_reason(job, archive.next_job_id()))),
        None => Ok(()),
    }
}

/// Every file the archive's manifest lists is there with its recorded length (a stat each;
/// `verify` reads and checks them whole): an archive that lost a file is not served, nor
/// counted, as if whole.
fn check_files_there(archive: &Archive) -> Result<()> {
    for file in &archive.manifest().files {
        let path = archive.root().join(&file.path);
        let reason = match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() && meta.len() == file.bytes => continue,
            Ok(meta) => format!(
                "the archive's manifest lists this file with {} bytes, it has {}: archived events were lost; \
                 restore it from a backup",
                file.bytes,
                meta.len()
            ),
            Err(e) => format!(
                "the archive's manifest lists this file, but it cannot be read ({e}): the {} archived events \
                 in it are lost; restore it from a backup",
                file.rows
            ),
        };
        return Err(Error::corruption(path, 0, reason));
    }
    Ok(())
}

/// The hot segments that record an archive job the archive's manifest does not know.
pub(crate) fn unknown_jobs(archive: &Archive, segments_dir: &Path) -> Vec<(std::path::PathBuf, u64)> {
    let next = archive.next_job_id();
    archive_jobs_of(segments_dir).into_iter().filter(|&(_, job)| job >= next).collect()
}

pub(crate) fn unknown_job_reason(job: u64, next_job: u64) -> String {
    format!(
        "records archive job {job}, but the archive's manifest ends before it (next job {next_job}): the manifest \
         is older than the log and does not list the events that job archived; restore archive/{ARCHIVE_MANIFEST_FILE} \
         from a backup"
    )
}

/// Commits each pending archive job whose segment carries its job id (the compaction got past
/// its rename) and rolls back the others, so no event is both hot and archived.
pub fn resolve_pending_jobs(archive: &mut Archive, segments_dir: &Path) -> Result<()> {
    for (job, base) in archive.pending_jobs() {
        if committed_job_of(segments_dir, base) == Some(job) {
            tracing::info!(job, base, "committing an archive job whose compaction finished");
            archive.commit_job(job)?;
        } else {
            tracing::warn!(job, base, "rolling back an archive job whose compaction did not finish");
            archive.rollback_job(job)?;
        }
    }
    Ok(())
}

/// Compacts `store` under `policy` as of `now_us`, expired events going to the store's cold
/// tier (`<data>/archive`) first when the policy archives (pending jobs are resolved first,
/// once the compaction holds the store's compaction guard).
/// `progress(done, total)` as in [`logbook::compact`].
pub fn compact(
    store: &Store,
    policy: &RetentionPolicy,
    now_us: i64,
    progress: impl FnMut(u64, u64),
) -> Result<CompactReport> {
    let data = DataDir::new(store.dir());
    let mut archive = Archive::open(&data.archive_dir(), Arc::clone(&store.options().fs))?;
    compact_with_archive(store, policy, now_us, &mut archive, progress)
}

/// Rewrites the files of the first layout in the store's cold tier into the current layout now
/// (compaction does it anyway before it writes there; this is for a store that will not compact
/// soon), under the compaction guard, without touching the hot tier. Pending jobs were resolved
/// when the store was opened through [`open_store`]; a cold tier that holds one is refused.
pub fn migrate_cold_tier(store: &Store) -> Result<RewriteReport> {
    let root = DataDir::new(store.dir()).archive_dir();
    with_compaction_guard(store, || {
        if !root.join(ARCHIVE_MANIFEST_FILE).exists() {
            return Ok(RewriteReport::default());
        }
        Archive::open(&root, Arc::clone(&store.options().fs))?.rewrite_first_layout()
    })
}

/// The events of `stream` that compaction moved to the store's cold tier, in version order;
/// empty when it has none.
pub fn read_archived_stream(store: &Store, stream: &str) -> Result<Vec<ArchivedEvent>> {
    let root = DataDir::new(store.dir()).archive_dir();
    Archive::open(&root, Arc::clone(&store.options().fs))?.read_stream(stream)
}

/// Counts everything in `store` ([`logbook::collect_stats`]) and the events of its cold tier.
pub fn collect_stats(store: &Store) -> Result<StatsReport> {
    let mut report = logbook::collect_stats(store)?;
    let root = DataDir::new(store.dir()).archive_dir();
    if root.is_dir() {
        report.archived_events = Archive::open(&root, logbook::std_fs())?.event_count();
    }
    Ok(report)
}

/// Copies the store in `data`, its cold tier included, to `out` (see [`logbook::backup_dir`]).
/// The archive's manifest is copied first, then every file it lists (files written after the
/// manifest was read are not listed, and a job rolled back meanwhile is resolved at open).
pub fn backup_dir(data: &Path, out: &Path) -> Result<BackupReport> {
    backup_dir_with(data, out, |from, to, report| {
        // A cold tier open would refuse is not copied as if whole (the partial copy goes).
        check_cold_tier(from, logbook::std_fs())?;
        copy_archive(&from.archive_dir(), &to.archive_dir(), report)
    })
}

fn copy_archive(from: &Path, to: &Path, report: &mut BackupReport) -> Result<()> {
    let manifest = from.join(ARCHIVE_MANIFEST_FILE);
    if !manifest.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(to).map_err(|e| Error::io(format!("creating {}", to.display()), e))?;
    let archive = Archive::open(from, logbook::std_fs())?;
    let files: Vec<&str> = archive.manifest().files.iter().map(|f| f.path.as_str()).collect();
    if let Some(bytes) = copy_synced(&manifest, &to.join(ARCHIVE_MANIFEST_FILE))? {
        report.files += 1;
        report.bytes += bytes;
    }
    for relative in files {
        let target = to.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        if let Some(bytes) = copy_synced(&from.join(relative), &target)? {
            report.files += 1;
            report.bytes += bytes;
        }
        if let Some(parent) = target.parent() {
            sync_dir(parent)?;
        }
    }
    sync_dir(to)
}
