//! [`SimFileSystem`]: the real file system plus, beside the live files, the **durable image**
//! of each one — its contents as of the last completed sync — and which directory entries are
//! durable (created or renamed, then the directory synced). It can fail the N-th write, sync or
//! metadata operation (EIO, or ENOSPC after a partial "torn" write), and
//! [`SimFileSystem::power_off`] (or [`SimFileSystem::power_off_after`] /
//! [`SimFileSystem::power_off_before`], at a chosen operation) makes every later operation
//! fail, as a machine that lost power.
//! [`SimFileSystem::restore_durable`] then rewrites the directory to what a disk would hold
//! after the power loss: unsynced bytes dropped, cut at a random byte, replaced by garbage, or
//! lost page by page out of order; files whose directory entry was never synced gone; a renamed
//! file holds what was durable for its source (nothing, if the source was never synced), even
//! when the rename itself was made durable. Every choice comes from a seed, so a failure is
//! reproduced by its seed.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand_core::{Rng as _, SeedableRng};
use rand_xoshiro::SplitMix64;

use super::{FileSystem, StorageFile};

/// Which operation a fault targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    Write,
    Sync,
    /// create, rename, remove, set_len, directory sync.
    Metadata,
}

/// One recorded operation (for tests that check the order of syncs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Create(PathBuf),
    Write(PathBuf, u64, usize),
    SetLen(PathBuf, u64),
    SyncData(PathBuf),
    SyncAll(PathBuf),
    Rename(PathBuf, PathBuf),
    Remove(PathBuf),
    SyncDir(PathBuf),
}

/// How the unsynced part of a file looks after a power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerLoss {
    /// Only what was synced survives.
    DropUnsynced,
    /// A random prefix of what was written after the last sync survives.
    CutUnsynced,
    /// A random prefix survives, followed by random garbage of random length.
    GarbageUnsynced,
    /// Each unsynced 4 KiB page (at a 4096-aligned file offset) independently keeps its new
    /// contents or reverts to its durable contents (zeroes where the durable image is
    /// shorter), as a page cache writing back out of order; the live file length is kept.
    RandomPages,
}

/// A planned fault: fail the `nth` operation of `kind` (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub kind: OpKind,
    pub nth: u64,
    /// For writes: ENOSPC after writing this many bytes of the buffer (a torn write);
    /// `None` fails with EIO before writing anything.
    pub torn_at: Option<usize>,
}

#[derive(Debug, Default)]
struct SimState {
    counts: HashMap<OpKind, u64>,
    faults: Vec<Fault>,
    powered_off: bool,
    /// Contents as of the last completed sync of each file (None: never synced).
    durable: HashMap<PathBuf, Vec<u8>>,
    /// Files whose directory entry is not yet durable (created or renamed since the last
    /// sync of their directory), and entries removed but not yet durably gone.
    unsynced_names: HashSet<PathBuf>,
    renamed_from: HashMap<PathBuf, PathBuf>,
    /// Durable contents of a file a rename replaced, until the rename is durable: a power loss
    /// before that brings the old file back (compaction renames over live segments).
    replaced: HashMap<PathBuf, Vec<u8>>,
    /// Durable contents of removed files (None: never durable), until the removal is durable.
    removed: HashMap<PathBuf, Option<Vec<u8>>>,
    ops: Vec<Op>,
    injected: u64,
    /// Files whose contents came from the simulation (created, or renamed from such a file):
    /// without a durable image they hold nothing after a power loss. Any other file was there
    /// before the simulation began and is durable as it is.
    known: HashSet<PathBuf>,
    /// Operations of every kind performed while the power was on.
    total_ops: u64,
    /// Power goes off when this many operations have been performed.
    power_off_after: Option<u64>,
    /// Power goes off when the n-th operation of this kind is attempted.
    power_off_before: Option<(OpKind, u64)>,
    /// Power goes off when the n-th sync of a file with this extension is attempted.
    power_off_before_sync_of: Option<(String, u64)>,
    /// Syncs performed, by the synced file's extension.
    syncs_by_extension: HashMap<String, u64>,
    /// How long each sync_data / sync_all takes (on top of the real one).
    sync_delay: Duration,
    /// Unsynced pages [`PowerLoss::RandomPages`] reverted, and those it kept, over all restores.
    pages_lost: u64,
    pages_kept: u64,
}

/// A fault-injecting, power-loss-simulating wrapper around the real file system.
#[derive(Debug, Clone, Default)]
pub struct SimFileSystem {
    state: Arc<Mutex<SimState>>,
}

#[derive(Debug)]
struct SimFile {
    path: PathBuf,
    file: File,
    sim: SimFileSystem,
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("simulated I/O error: {what}"))
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

impl SimFileSystem {
    /// The page size [`PowerLoss::RandomPages`] loses pages in.
    pub const PAGE_BYTES: usize = 4096;

    pub fn new() -> Self {
        Self::default()
    }

    /// Fails the `nth` operation of `kind` from now on (counting from the start).
    pub fn fail(&self, fault: Fault) {
        self.state.lock().faults.push(fault);
    }

    /// Every later operation fails with EIO, like a machine that lost power.
    pub fn power_off(&self) {
        self.state.lock().powered_off = true;
    }

    /// Power goes off once `n` operations of any kind (counted from the start, see
    /// [`SimFileSystem::total_ops`]) have been performed: the `n+1`-th and every later one
    /// fails, so nothing done after that point (a clean shutdown included) reaches the disk.
    pub fn power_off_after(&self, n: u64) {
        let mut state = self.state.lock();
        state.power_off_after = Some(n);
        if state.total_ops >= n {
            state.powered_off = true;
        }
    }

    /// Power goes off as the `nth` operation of `kind` (counted from the start, as
    /// [`SimFileSystem::count`] does) is attempted: it fails, and so does every later one.
    /// Before the `nth` sync, for instance, the data written since the last sync is unsynced.
    pub fn power_off_before(&self, kind: OpKind, nth: u64) {
        let mut state = self.state.lock();
        state.power_off_before = Some((kind, nth));
        if state.counts.get(&kind).copied().unwrap_or(0) >= nth {
            state.powered_off = true;
        }
    }

    /// Power goes off as the `nth` sync of a file whose extension is `extension` (counted from
    /// the start, as [`SimFileSystem::syncs_of`] does) is attempted: `"seg"` makes it a sync of a
    /// segment, usually a group commit's, with the group's write unsynced before it (other
    /// syncs, of `MANIFEST` or of a spare, leave no unsynced segment page behind).
    pub fn power_off_before_sync_of(&self, extension: &str, nth: u64) {
        let mut state = self.state.lock();
        state.power_off_before_sync_of = Some((extension.to_string(), nth));
        if state.syncs_by_extension.get(extension).copied().unwrap_or(0) >= nth {
            state.powered_off = true;
        }
    }

    /// Syncs performed so far of files whose extension is `extension`.
    pub fn syncs_of(&self, extension: &str) -> u64 {
        self.state.lock().syncs_by_extension.get(extension).copied().unwrap_or(0)
    }

    /// [`SimFileSystem::check`] for a sync of `path`, which also counts it by extension.
    fn check_sync(&self, path: &Path) -> io::Result<()> {
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_string();
        {
            let mut state = self.state.lock();
            let next = state.syncs_by_extension.get(&extension).copied().unwrap_or(0) + 1;
            if !state.powered_off
                && state.power_off_before_sync_of.as_ref().is_some_and(|(e, n)| *e == extension && next >= *n)
            {
                state.powered_off = true;
            }
        }
        self.check(OpKind::Sync)?;
        *self.state.lock().syncs_by_extension.entry(extension).or_insert(0) += 1;
        Ok(())
    }

    /// True once the power is off (by [`SimFileSystem::power_off`], or when an operation found
    /// the [`SimFileSystem::power_off_after`] or [`SimFileSystem::power_off_before`] limit).
    pub fn is_powered_off(&self) -> bool {
        self.state.lock().powered_off
    }

    /// Operations of every kind performed while the power was on (failed ones included).
    pub fn total_ops(&self) -> u64 {
        self.state.lock().total_ops
    }

    /// Every sync_data and sync_all sleeps this long before syncing, as a slow disk: appends
    /// arriving meanwhile queue up, which is what group commit is for.
    pub fn set_sync_delay(&self, delay: Duration) {
        self.state.lock().sync_delay = delay;
    }

    /// Unsynced pages that [`PowerLoss::RandomPages`] restores reverted to their durable
    /// contents, and those they kept, so far: a test can tell that pages were lost at all.
    pub fn pages_lost_and_kept(&self) -> (u64, u64) {
        let state = self.state.lock();
        (state.pages_lost, state.pages_kept)
    }

    /// Operations of `kind` performed (or attempted) so far.
    pub fn count(&self, kind: OpKind) -> u64 {
        self.state.lock().counts.get(&kind).copied().unwrap_or(0)
    }

    /// Number of faults injected so far.
    pub fn injected(&self) -> u64 {
        self.state.lock().injected
    }

    /// Operations performed so far, in order.
    pub fn ops(&self) -> Vec<Op> {
        self.state.lock().ops.clone()
    }

    /// Counts the operation and decides whether it fails.
    fn check(&self, kind: OpKind) -> io::Result<Option<usize>> {
        let mut state = self.state.lock();
        if state.powered_off {
            return Err(eio("power is off"));
        }
        let next_of_kind = state.counts.get(&kind).copied().unwrap_or(0) + 1;
        if state.power_off_after.is_some_and(|n| state.total_ops >= n)
            || state.power_off_before.is_some_and(|(k, n)| k == kind && next_of_kind >= n)
        {
            state.powered_off = true;
            return Err(eio("power is off"));
        }
        state.total_ops += 1;
        let count = state.counts.entry(kind).or_insert(0);
        *count += 1;
        let n = *count;
        if let Some(fault) = state.faults.iter().find(|f| f.kind == kind && f.nth == n).copied() {
            state.injected += 1;
            return match fault.torn_at {
                Some(cut) => Ok(Some(cut)),
                None => Err(eio(&format!("{kind:?} #{n}"))),
            };
        }
        Ok(None)
    }

    fn record(&self, op: Op) {
        self.state.lock().ops.push(op);
    }

    fn sync_delay(&self) {
        let delay = self.state.lock().sync_delay;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
    }

    fn mark_synced(&self, path: &Path) -> io::Result<()> {
        let contents = fs::read(path)?;
        self.state.lock().durable.insert(path.to_path_buf(), contents);
        Ok(())
    }

    /// Rewrites every file under `dir` to what the disk holds after a power loss, with the
    /// unsynced parts treated per `mode` and random choices drawn from `seed`. Files created
    /// or renamed without a directory sync disappear (or get their old name back, with their
    /// durable contents); files never synced (a renamed file whose source was never synced
    /// among them) are empty or gone. Call it after the power is off and the store dropped.
    pub fn restore_durable(&self, dir: &Path, mode: PowerLoss, seed: u64) -> io::Result<()> {
        let mut state = self.state.lock();
        let (mut lost, mut kept) = (0, 0);
        let mut rng = SplitMix64::seed_from_u64(seed);
        let mut next = move || rng.next_u64();
        let mut durable = state.durable.clone();
        // Renames never made durable: the file is back under its old name with its durable
        // contents (tmp files are derived data); an old target, if any, keeps its own.
        let mut restored = HashSet::new();
        let mut undone: Vec<(&PathBuf, &PathBuf)> = state.renamed_from.iter().collect();
        undone.sort();
        for (to, from) in undone {
            if state.unsynced_names.contains(to) && to.exists() {
                fs::rename(to, from)?;
                match durable.remove(to) {
                    Some(image) => durable.insert(from.clone(), image),
                    None => durable.remove(from),
                };
                if let Some(old) = state.replaced.get(to) {
                    fs::write(to, old)?;
                    restored.insert(to.clone());
                }
            }
        }
        // Removals never made durable: the file is still there, as it was durable.
        for (path, contents) in &state.removed {
            if state.unsynced_names.contains(path) {
                if let Some(contents) = contents {
                    fs::write(path, contents)?;
                    restored.insert(path.clone());
                }
            }
        }
        let mut paths = walk(dir)?;
        paths.sort();
        for path in paths {
            if restored.contains(&path) {
                continue; // already its durable self
            }
            let live = fs::read(&path)?;
            let created_unsynced = state.unsynced_names.contains(&path) && !state.removed.contains_key(&path);
            let Some(durable) = durable.get(&path) else {
                // Never synced: a file the simulation never saw is durable as it is (it was
                // there before); one it created, or renamed from a file never synced, is
                // gone or empty.
                if state.known.contains(&path) {
                    if created_unsynced || next() % 2 == 0 {
                        fs::remove_file(&path)?;
                    } else {
                        fs::write(&path, b"")?;
                    }
                }
                continue;
            };
            if created_unsynced {
                fs::remove_file(&path)?;
                continue;
            }
            let mut after = durable.clone();
            let unsynced_start = common_prefix(durable, &live);
            let unsynced = &live[unsynced_start.min(live.len())..];
            match mode {
                PowerLoss::DropUnsynced => {}
                PowerLoss::CutUnsynced | PowerLoss::GarbageUnsynced if !unsynced.is_empty() => {
                    let keep = (next() % (unsynced.len() as u64 + 1)) as usize;
                    after.truncate(unsynced_start);
                    after.extend_from_slice(&unsynced[..keep]);
                    if mode == PowerLoss::GarbageUnsynced {
                        let garbage = (next() % 4096) as usize;
                        after.extend((0..garbage).map(|_| next() as u8));
                    }
                    if after.len() < durable.len() {
                        after.extend_from_slice(&durable[after.len()..]);
                    }
                }
                PowerLoss::RandomPages => {
                    let (pages, l, k) = lose_pages(durable, &live, &mut next);
                    (after, lost, kept) = (pages, lost + l, kept + k);
                }
                _ => {}
            }
            fs::write(&path, &after)?;
        }
        state.pages_lost += lost;
        state.pages_kept += kept;
        Ok(())
    }
}

/// [`PowerLoss::RandomPages`]: the live file, each page of it that differs from the durable
/// image (zero-padded to the live length) reverted to that image when a coin says so; also
/// how many such pages were reverted and kept.
fn lose_pages(durable: &[u8], live: &[u8], mut coin: impl FnMut() -> u64) -> (Vec<u8>, u64, u64) {
    let mut after = live.to_vec();
    let (mut lost, mut kept) = (0, 0);
    for start in (0..live.len()).step_by(SimFileSystem::PAGE_BYTES) {
        let end = (start + SimFileSystem::PAGE_BYTES).min(live.len());
        let old: Vec<u8> = (start..end).map(|i| durable.get(i).copied().unwrap_or(0)).collect();
        if live[start..end] != old[..] {
            if coin().is_multiple_of(2) {
                after[start..end].copy_from_slice(&old);
                lost += 1;
            } else {
                kept += 1;
            }
        }
    }
    (after, lost, kept)
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn walk(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(walk(&path)?);
        } else if path.file_name().is_some_and(|n| n != "LOCK") {
            out.push(path);
        }
    }
    Ok(out)
}

impl StorageFile for SimFile {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let torn = self.sim.check(OpKind::Write)?;
        self.sim.record(Op::Write(self.path.clone(), offset, buf.len()));
        if let Some(cut) = torn {
            self.file.write_all_at(&buf[..cut.min(buf.len())], offset)?;
            return Err(enospc());
        }
        self.file.write_all_at(buf, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.sim.check(OpKind::Metadata)?;
        self.sim.record(Op::SetLen(self.path.clone(), len));
        self.file.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        // A slow disk: the power can go off before the sync completes.
        self.sim.sync_delay();
        self.sim.check_sync(&self.path)?;
        self.sim.record(Op::SyncData(self.path.clone()));
        self.file.sync_data()?;
        self.sim.mark_synced(&self.path)
    }
    fn sync_all(&self) -> io::Result<()> {
        // A slow disk: the power can go off before the sync completes.
        self.sim.sync_delay();
        self.sim.check_sync(&self.path)?;
        self.sim.record(Op::SyncAll(self.path.clone()));
        self.file.sync_all()?;
        self.sim.mark_synced(&self.path)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}

impl SimFileSystem {
    fn wrap(&self, path: &Path, file: File) -> Box<dyn StorageFile> {
        Box::new(SimFile { path: path.to_path_buf(), file, sim: self.clone() })
    }

    /// A new file of the simulation at `path`: no durable contents yet, name not durable.
    fn created(&self, path: &Path) {
        self.record(Op::Create(path.to_path_buf()));
        let mut state = self.state.lock();
        state.unsynced_names.insert(path.to_path_buf());
        state.durable.remove(path);
        state.known.insert(path.to_path_buf());
    }
}

impl FileSystem for SimFileSystem {
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        self.check(OpKind::Metadata)?;
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
        self.created(path);
        Ok(self.wrap(path, file))
    }
    fn open_rw(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        self.check(OpKind::Metadata)?;
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let mut state = self.state.lock();
        if !state.durable.contains_key(path) && !state.known.contains(path) {
            // A file from before the simulation began: what is there is durable. A file the
            // simulation created but never synced stays non-durable until its next sync.
            state.durable.insert(path.to_path_buf(), fs::read(path)?);
        }
        drop(state);
        Ok(self.wrap(path, file))
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        self.check(OpKind::Metadata)?;
        let file = File::create(path)?;
        self.created(path);
        Ok(self.wrap(path, file))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check(OpKind::Metadata)?;
        // What is durable of each file before the rename; a file from before the simulation
        // began is durable as it is.
        let (old_target, source) = {
            let state = self.state.lock();
            let durable_of = |path: &Path| -> io::Result<Option<Vec<u8>>> {
                match state.durable.get(path) {
                    Some(contents) => Ok(Some(contents.clone())),
                    None if path.exists() && !state.known.contains(path) => Ok(Some(fs::read(path)?)),
                    None => Ok(None),
                }
            };
            (durable_of(to)?, durable_of(from)?)
        };
        fs::rename(from, to)?;
        self.record(Op::Rename(from.to_path_buf(), to.to_path_buf()));
        let mut state = self.state.lock();
        // Only the first replacement since the last directory sync is what the disk holds.
        if let Some(old) = old_target {
            state.replaced.entry(to.to_path_buf()).or_insert(old);
        }
        // The durable contents follow the file: a rename of a file never synced names a file
        // with nothing durable in it, even once the rename itself is durable.
        state.durable.remove(from);
        match source {
            Some(contents) => state.durable.insert(to.to_path_buf(), contents),
            None => state.durable.remove(to),
        };
        state.known.insert(to.to_path_buf());
        state.unsynced_names.insert(to.to_path_buf());
        state.renamed_from.insert(to.to_path_buf(), from.to_path_buf());
        Ok(())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check(OpKind::Metadata)?;
        let contents = {
            let state = self.state.lock();
            match state.durable.get(path) {
                Some(contents) => Some(contents.clone()),
                None if !state.known.contains(path) => fs::read(path).ok(),
                None => None,
            }
        };
        fs::remove_file(path)?;
        self.record(Op::Remove(path.to_path_buf()));
        let mut state = self.state.lock();
        state.durable.remove(path);
        // Only the first removal since the last directory sync is what the disk holds.
        state.removed.entry(path.to_path_buf()).or_insert(contents);
        state.unsynced_names.insert(path.to_path_buf());
        Ok(())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.check(OpKind::Metadata)?;
        File::open(dir)?.sync_all()?;
        self.record(Op::SyncDir(dir.to_path_buf()));
        let mut state = self.state.lock();
        let durable_now: Vec<PathBuf> =
            state.unsynced_names.iter().filter(|p| p.parent() == Some(dir)).cloned().collect();
        for path in durable_now {
            state.unsynced_names.remove(&path);
            state.renamed_from.remove(&path);
            state.replaced.remove(&path);
            state.removed.remove(&path);
        }
        Ok(())
    }
}
