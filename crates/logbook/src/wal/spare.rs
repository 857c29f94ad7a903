//! The spare segment: the start of the next segment file ([`segment::spare_bytes`], at most
//! [`segment::FIRST_FILL_BYTES`]), zero-filled and synced by a background thread once the
//! active segment is three quarters full, so the first appends after a rollover do not pay for
//! block allocation in fdatasync. The segment's zero-filled range then grows by need on the
//! writer ([`crate::segment::SegmentWriter::grow_preallocation`]): a small store allocates
//! little more than its frames.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::segment;
use crate::storage::FileSystem;

/// The next segment, zero-filled ahead of time.
pub(super) struct Spare {
    state: SpareState,
    path: PathBuf,
    capacity: u64,
    fs: Arc<dyn FileSystem>,
}

enum SpareState {
    /// None prepared; one is started once the active segment is half full.
    Absent,
    Preparing(JoinHandle<std::io::Result<()>>),
    /// The spare file exists with the configured size.
    Ready,
}

impl Spare {
    /// A spare left by an earlier run is reused: it only ever holds zeroes (and perhaps a
    /// header that was being stamped when the process stopped, which is overwritten).
    /// One holding anything but zeroes past the header (another program's file, a damaged
    /// disk) is not used: its bytes would read as a damaged tail after the new segment's frames.
    /// It is prepared again (overwritten) when the next one is needed.
    pub(super) fn new(path: PathBuf, segment_bytes: u64, fs: Arc<dyn FileSystem>) -> Self {
        let capacity = segment::spare_bytes(segment_bytes);
        let ready = std::fs::metadata(&path).is_ok_and(|m| m.len() == capacity) && holds_only_zeroes(&path, capacity);
        let state = if ready { SpareState::Ready } else { SpareState::Absent };
        Spare { state, path, capacity, fs }
    }

    /// Starts preparing the spare in the background once the active segment is three quarters
    /// full (so small stores never pay for it); the writer never waits for it.
    pub(super) fn maybe_start(&mut self, write_offset: u64, active_capacity: u64) {
        if !matches!(self.state, SpareState::Absent) || write_offset * 4 < active_capacity * 3 {
            return;
        }
        let (fs, path, capacity) = (Arc::clone(&self.fs), self.path.clone(), self.capacity);
        let spawned = std::thread::Builder::new()
            .name("logbook-spare".into())
            .spawn(move || segment::prepare_spare(fs.as_ref(), &path, capacity));
        match spawned {
            Ok(handle) => self.state = SpareState::Preparing(handle),
            Err(err) => tracing::warn!(%err, "cannot start preparing the next segment; segments start sparse"),
        }
    }

    /// The spare's path if it is ready (it is then handed over: the next call says no).
    pub(super) fn take_ready(&mut self) -> Option<PathBuf> {
        if matches!(&self.state, SpareState::Preparing(h) if h.is_finished()) {
            if let SpareState::Preparing(handle) = std::mem::replace(&mut self.state, SpareState::Absent) {
                match handle.join() {
                    Ok(Ok(())) => self.state = SpareState::Ready,
                    Ok(Err(err)) => tracing::warn!(%err, "preparing the next segment failed; creating it sparse"),
                    Err(_) => tracing::warn!("the segment preparation thread panicked; creating it sparse"),
                }
            }
        }
        match std::mem::replace(&mut self.state, SpareState::Absent) {
            SpareState::Ready => Some(self.path.clone()),
            other => {
                self.state = other;
                None
            }
        }
    }

    /// Waits for a running preparation, so no thread touches the directory after close.
    pub(super) fn finish(&mut self) {
        if let SpareState::Preparing(handle) = std::mem::replace(&mut self.state, SpareState::Absent) {
            if let Ok(Ok(())) = handle.join() {
                self.state = SpareState::Ready;
            }
        }
    }
}

/// True when the spare at `path` (`len` bytes, at most [`segment::FIRST_FILL_BYTES`]) holds
/// only zeroes past the segment header's room.
fn holds_only_zeroes(path: &std::path::Path, len: u64) -> bool {
    debug_assert!(len <= segment::FIRST_FILL_BYTES, "a spare is at most one fill step");
    match crate::storage::read_bounded(path, len) {
        Ok(bytes) => bytes.get(segment::SEGMENT_HEADER_BYTES..).is_some_and(|rest| rest.iter().all(|&b| b == 0)),
        Err(_) => false,
    }
}
