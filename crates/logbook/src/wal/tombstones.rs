//! Tombstones: deleting a stream appends one event to the system stream `$deleted`; open
//! reads that stream back to know which streams are deleted.

use std::collections::HashSet;

use super::state::{decode_event, LogState};
use crate::error::{Error, Result};

/// Name of the system stream that records stream deletions (tombstones).
pub const TOMBSTONE_STREAM: &str = "$deleted";
/// Event type of a tombstone.
pub const TOMBSTONE_TYPE: &str = "$StreamDeleted";

/// A tombstone's data: which stream was deleted, at which version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tombstone {
    pub stream: String,
    pub version: u64,
}

/// Reads every tombstone from the `$deleted` stream.
pub fn load_tombstones(state: &LogState) -> Result<HashSet<Box<str>>> {
    let mut deleted = HashSet::new();
    for (_, position) in state.stream_positions(TOMBSTONE_STREAM, 1, u64::MAX) {
        let Some((reader, offset)) = state.locate(position) else { continue };
        let event = decode_event(reader, offset, position)?;
        if event.stream() != TOMBSTONE_STREAM {
            continue; // a hash collision in a sealed index
        }
        let tombstone: Tombstone = serde_json::from_slice(event.data()).map_err(|e| {
            Error::corruption(reader.path(), u64::from(offset), format!("tombstone event does not decode: {e}"))
        })?;
        deleted.insert(tombstone.stream.into_boxed_str());
    }
    Ok(deleted)
}
