//! The write-ahead log: the ordered set of segments, how open and verify decide what is on
//! disk (one recovery walker), the shared reader state, and the single writer thread.
//!
//! * `state` — what readers see: sealed and active segments, the stream directory, the head;
//! * `recovery` — the walker used by `open` and `verify`, and `recover` (open);
//! * `writer` — group commit, expected versions, rollover; with `idempotency`, `tombstones`
//!   and `spare` (the next segment, zero-filled ahead of time);
//! * `queue` — how requests reach the writer: its queue and thread, or a lone appender's own
//!   thread.

mod idempotency;
mod queue;
mod recovery;
mod reply;
mod spare;
mod state;
mod tombstones;
mod writer;

pub use recovery::{
    manifest_of_segments, recover, walk, walk_verify_records, walk_without_records, Finding,
    HotPositions, RecoveryMode, Repair, Severity, Walk,
};
pub use reply::{reply_channel, ReplyReceiver, ReplySender};
pub use state::{event_from_frame, read_error, read_events, SealedSegment, Shared};
pub use queue::WriterQueue;
pub use writer::{AppendRequest, Request, Writer};
