//! Idempotent appends: an append whose client-supplied event ids are already stored in the
//! stream, with the same content, is answered with the original result and writes nothing.

use super::state::{decode_event, LogState};
use super::writer::AppendRequest;
use crate::error::{Error, Result};
use crate::types::{AppendResult, RecordedEvent};

/// Looks for the request's event ids in its stream. `Ok(Some)` when every event is already
/// stored with the same content, in order (a retried append); `Ok(None)` when none is;
/// an error when only some are, or one differs.
pub(super) fn find_existing(state: &LogState, append: &AppendRequest) -> Result<Option<AppendResult>> {
    let sealed_bases = state.streams.get(&append.stream).map(|e| e.sealed.clone()).unwrap_or_default();
    if sealed_bases.is_empty() && !state.active.index.streams.contains_key(append.stream.as_str()) {
        return Ok(None);
    }
    let mut found: Vec<Option<RecordedEvent>> = Vec::with_capacity(append.ids.len());
    for id in &append.ids {
        found.push(find_in_stream(state, &append.stream, &sealed_bases, id)?);
    }
    if found.iter().all(Option::is_none) {
        return Ok(None);
    }
    let conflict = |i: usize, reason: &str| Error::IdempotencyConflict {
        stream: append.stream.clone(),
        id: uuid::Uuid::from_bytes(append.ids[i]),
        reason: reason.to_string(),
    };
    let mut stored = Vec::with_capacity(found.len());
    for (i, event) in found.into_iter().enumerate() {
        let Some(event) = event else {
            return Err(conflict(i, "some events of this append are already stored and this one is not"));
        };
        let new = &append.events[i];
        if event.event_type() != new.event_type
            || event.data() != new.data.as_slice()
            || event.metadata() != new.metadata.as_slice()
        {
            return Err(conflict(i, "an event with this id is stored with different content"));
        }
        if new.time_us.is_some_and(|t| t != event.timestamp_us()) {
            return Err(conflict(i, "an event with this id is stored with a different time"));
        }
        if let Some(prev) = stored.last() {
            let prev: &RecordedEvent = prev;
            if event.version() != prev.version() + 1 {
                return Err(conflict(i, "the stored events with these ids are not one contiguous append"));
            }
        }
        stored.push(event);
    }
    let (first, last) = (&stored[0], &stored[stored.len() - 1]);
    Ok(Some(AppendResult {
        first_version: first.version(),
        last_version: last.version(),
        first_position: first.position(),
        last_position: last.position(),
    }))
}

fn find_in_stream(
    state: &LogState,
    stream: &str,
    sealed_bases: &[u64],
    id: &[u8; 16],
) -> Result<Option<RecordedEvent>> {
    let mut candidates = Vec::new();
    for base in sealed_bases {
        if let Ok(i) = state.sealed.binary_search_by_key(base, |s| s.index.base_position) {
            state.sealed[i].index.positions_with_id(id, &mut candidates);
        }
    }
    state.active.index.positions_with_id(id, &mut candidates);
    for position in candidates {
        if let Some((reader, offset)) = state.locate(position) {
            let event = decode_event(reader, offset, position)?;
            if event.id == *id && event.stream() == stream {
                return Ok(Some(event));
            }
        }
    }
    Ok(None)
}
