//! The write-ahead log: the ordered set of segments, how open and verify decide what is on
//! disk (one recovery walker), the shared reader state, and the single writer thread.
//!
//! * `state` — what readers see: sealed and active segments, the stream directory, the head;
//! * `recovery` — the walker used by `open` and `verify`, and `recover` (open);
//! * `writer` — group commit, expected versions, rollover; with `idempotency`, `tombstones`
//!   and `spare` (the next segment, zero-filled ahead of time).

mod idempotency;
mod recovery;
mod spare;
mod state;
mod tombstones;
mod writer;

pub use recovery::{
    manifest_of_segments, recover, walk, walk_with_progress, walk_without_records, Finding, HotPositions, Recovered,
    RecoveryMode, Repair, Severity, Walk, WalkedActive, WalkedSealed, OPERATOR_HINT,
};
pub use state::{
    decode_event, event_from_frame, read_error, read_events, ActiveSegment, LogState, SealedSegment, Shared, Stats,
};
pub use tombstones::{Tombstone, TOMBSTONE_STREAM, TOMBSTONE_TYPE};
pub use writer::{AppendRequest, Request, Writer, MAX_GROUP_APPENDS, MAX_GROUP_BYTES, WRITER_SPIN};
