//! The narrow trait every file mutation of the engine goes through, so tests can inject
//! faults and simulate power loss, and the file helpers built on it (atomic file writes,
//! directory creation with its fsync, bounded reads).
//!
//! [`StdFileSystem`] is the real thing. [`SimFileSystem`] (in `sim`) wraps it and keeps, beside
//! the live files, the **durable image** of each one, so a test can fail any operation and then
//! see what a disk would hold after a power loss.

use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A file opened for writing.
pub trait StorageFile: Send + Sync + Debug {
    /// Writes all of `buf` at byte `offset` of the file.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Truncates or extends the file to `len` bytes (the extension reads as zeroes).
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// fdatasync.
    fn sync_data(&self) -> io::Result<()>;
    /// fsync (data and metadata).
    fn sync_all(&self) -> io::Result<()>;
    /// The file's length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// True when the file's length is 0.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// File-system mutations the engine performs.
pub trait FileSystem: Send + Sync + Debug {
    /// Creates a new file (fails if it exists), open for reading and writing.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Opens an existing file for reading and writing.
    fn open_rw(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Creates or truncates a file, open for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>>;
    /// Renames `from` to `to`, replacing `to` if it exists (durable after [`FileSystem::sync_dir`]).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file at `path` (durable after [`FileSystem::sync_dir`]).
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// fsync of a directory: makes created, renamed and removed entries durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFileSystem;

#[derive(Debug)]
struct StdFile(File);

impl StorageFile for StdFile {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        self.0.sync_all()
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

impl FileSystem for StdFileSystem {
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        Ok(Box::new(StdFile(OpenOptions::new().read(true).write(true).create_new(true).open(path)?)))
    }
    fn open_rw(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        Ok(Box::new(StdFile(OpenOptions::new().read(true).write(true).open(path)?)))
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn StorageFile>> {
        Ok(Box::new(StdFile(File::create(path)?)))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// The default file system handle used by `Options`.
pub fn std_fs() -> Arc<dyn FileSystem> {
    Arc::new(StdFileSystem)
}

#[cfg(feature = "testing")]
mod sim;
#[cfg(feature = "testing")]
pub use sim::{Fault, Op, OpKind, PowerLoss, SimFileSystem};

/// Writes `bytes` to `<path>.tmp`, syncs it, renames it over `path`, syncs the directory: a
/// crash leaves the old file (or none) or the whole new one. Used for index files, the
/// clean-shutdown record, the segment manifest, snapshots and the archive's files.
pub fn write_file_atomically(fsys: &dyn FileSystem, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let file = fsys.create(&tmp)?;
    file.write_at(bytes, 0)?;
    file.sync_all()?;
    drop(file);
    fsys.rename(&tmp, path)?;
    fsys.sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Creates `dir` (and missing parents) and fsyncs each parent whose entry was created, so the
/// new directories survive a power loss.
pub fn create_dir_durably(fsys: &dyn FileSystem, dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at {
        if d.as_os_str().is_empty() || d.is_dir() {
            break;
        }
        missing.push(d);
        at = d.parent();
    }
    for d in missing.iter().rev() {
        match fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
            fsys.sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Reads a whole file that must not be longer than `limit` bytes: the length is checked
/// before anything is allocated, and a longer file is an `InvalidData` error.
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    if len > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is {len} bytes, more than the {limit} allowed", path.display()),
        ));
    }
    read_exact_at(&file, 0, len as usize)
}

/// Reads exactly `len` bytes at `offset` with `pread`. A file shorter than that (truncated
/// under us) is an `UnexpectedEof` error naming the offset, never a signal.
pub fn read_exact_at(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("file ends at byte {}, {len} bytes were expected from byte {offset}", offset + done as u64),
                ))
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(buf)
}

/// [`write_file_atomically`] with the engine's error, naming the file.
pub fn write_atomically(fsys: &dyn FileSystem, path: &Path, bytes: &[u8]) -> crate::Result<()> {
    write_file_atomically(fsys, path, bytes)
        .map_err(|e| crate::Error::io(format!("writing {} atomically", path.display()), e))
}
