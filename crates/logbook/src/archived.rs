//! The cold tier as the idempotency check sees it. An append whose client-supplied ids are
//! already in the stream returns the original result, and compaction may have moved those
//! events to the cold tier. This crate knows nothing of the cold tier's files: whoever does
//! (logbook-archive's `open_store`) registers an [`ArchivedEvents`] with
//! [`Store::set_archived_events`](crate::Store::set_archived_events). A store with none
//! registered (the core crate alone) checks ids against its hot tier only.

use std::fmt;
use std::sync::{Arc, OnceLock};

use crate::error::Result;
use crate::types::RecordedEvent;

/// What the idempotency check compares a retried event with: an archived event's place and
/// content (its stream and id matched the lookup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedMatch {
    /// The event's version in its stream.
    pub version: u64,
    /// The event's `$all` position.
    pub position: u64,
    /// The event's type.
    pub event_type: String,
    /// The event's payload.
    pub data: Vec<u8>,
    /// The event's metadata (empty when it had none).
    pub metadata: Vec<u8>,
    /// The event's time, microseconds since the Unix epoch (UTC).
    pub timestamp_us: i64,
}

/// Looks up events by id in the cold tier, for idempotent appends.
///
/// `find` runs on the writer thread, under the log's state lock, for every event id of an
/// append with client ids that the hot tier does not hold: the common answer (a new id) must
/// come from memory, without I/O.
pub trait ArchivedEvents: Send + Sync {
    /// The archived event of `stream` whose id is `id`, if any. An event of a pending archive
    /// job (written, not yet committed) must be found too: compaction switches readers off the
    /// hot segment before it commits the job.
    fn find(&self, stream: &str, id: &[u8; 16]) -> Result<Option<ArchivedMatch>>;
    /// [`find`](Self::find) for each of `ids` (one answer each, in order): what the check of
    /// one append asks, so that a source reading files reads each at most once per append.
    fn find_all(&self, stream: &str, ids: &[[u8; 16]]) -> Result<Vec<Option<ArchivedMatch>>> {
        ids.iter().map(|id| self.find(stream, id)).collect()
    }
    /// Compaction is about to write `events` to the cold tier as a pending job; the hot
    /// segment stops holding them later (when readers switch to the rewritten one). From this
    /// call on, [`find`](Self::find) must find them once they are written. A job that then
    /// fails or is rolled back leaves ids `find` no longer finds: it must answer `None` then.
    fn archiving(&self, events: &[RecordedEvent]);
}

/// The store's registered [`ArchivedEvents`], set at most once (a `OnceLock`: the writer
/// reads it for every append with client ids, so no lock).
#[derive(Default)]
pub struct ArchivedEventsSlot(OnceLock<Arc<dyn ArchivedEvents>>);

impl ArchivedEventsSlot {
    /// The registered source, if any.
    pub fn get(&self) -> Option<&dyn ArchivedEvents> {
        self.0.get().map(|source| source.as_ref())
    }

    /// Registers `source`; `false` when one was registered already.
    pub fn set(&self, source: Arc<dyn ArchivedEvents>) -> bool {
        self.0.set(source).is_ok()
    }
}

impl fmt::Debug for ArchivedEventsSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.get().is_some() { "ArchivedEvents(registered)" } else { "ArchivedEvents(none)" })
    }
}
