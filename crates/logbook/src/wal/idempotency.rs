//! Idempotent appends: an append whose client-supplied event ids are already stored in the
//! stream, with the same content, is answered with the original result and writes nothing.
//! "Stored" means in the hot tier, or in the cold tier when the store has an
//! [`ArchivedEvents`] registered (compaction may have moved the original events there).

use super::state::{decode_event, LogState};
use super::writer::AppendRequest;
use crate::archived::{ArchivedEvents, ArchivedMatch};
use crate::error::{Error, Result};
use crate::types::{AppendResult, RecordedEvent};

/// An event found under one of the request's ids, in either tier.
enum Stored {
    Hot(RecordedEvent),
    Archived(ArchivedMatch),
}

impl Stored {
    fn version(&self) -> u64 {
        match self {
            Stored::Hot(e) => e.version(),
            Stored::Archived(e) => e.version,
        }
    }

    fn position(&self) -> u64 {
        match self {
            Stored::Hot(e) => e.position(),
            Stored::Archived(e) => e.position,
        }
    }

    fn timestamp_us(&self) -> i64 {
        match self {
            Stored::Hot(e) => e.timestamp_us(),
            Stored::Archived(e) => e.timestamp_us,
        }
    }

    /// (type, data, metadata)
    fn content(&self) -> (&str, &[u8], &[u8]) {
        match self {
            Stored::Hot(e) => (e.event_type(), e.data(), e.metadata()),
            Stored::Archived(e) => (&e.event_type, &e.data, &e.metadata),
        }
    }
}

/// Looks for the request's event ids in its stream: the hot tier first, then `archived` (the
/// cold tier, when registered) for the ids the hot tier does not hold. `Ok(Some)` when every
/// event is already stored with the same content, in order (a retried append, possibly
/// straddling the tiers); `Ok(None)` when none is; an error when only some are, or one differs.
pub(super) fn find_existing(
    state: &LogState,
    archived: Option<&dyn ArchivedEvents>,
    append: &AppendRequest,
) -> Result<Option<AppendResult>> {
    let sealed_bases = state.streams.get(&append.stream).map(|e| e.sealed.clone()).unwrap_or_default();
    let hot = !sealed_bases.is_empty() || state.active.index.streams.contains_key(append.stream.as_str());
    if !hot && archived.is_none() {
        return Ok(None);
    }
    let mut found: Vec<Option<Stored>> = Vec::with_capacity(append.ids.len());
    for id in &append.ids {
        let in_hot = if hot { find_in_stream(state, &append.stream, &sealed_bases, id)? } else { None };
        found.push(in_hot.map(Stored::Hot));
    }
    // The ids the hot tier does not hold, asked of the cold tier together (one read per file).
    if let Some(archived) = archived {
        let missing: Vec<usize> = (0..found.len()).filter(|&i| found[i].is_none()).collect();
        if !missing.is_empty() {
            let ids: Vec<[u8; 16]> = missing.iter().map(|&i| append.ids[i]).collect();
            let answers = archived.find_all(&append.stream, &ids)?;
            // One answer per id, in order (an id left unanswered counts as not stored).
            for (i, answer) in missing.into_iter().zip(answers) {
                found[i] = answer.map(Stored::Archived);
            }
        }
    }
    if found.iter().all(Option::is_none) {
        return Ok(None);
    }
    let conflict = |i: usize, reason: &str| Error::IdempotencyConflict {
        stream: append.stream.clone(),
        id: uuid::Uuid::from_bytes(append.ids[i]),
        reason: reason.to_string(),
    };
    let mut stored: Vec<Stored> = Vec::with_capacity(found.len());
    for (i, event) in found.into_iter().enumerate() {
        let Some(event) = event else {
            return Err(conflict(i, "some events of this append are already stored and this one is not"));
        };
        let new = &append.events[i];
        if event.content() != (new.event_type.as_str(), new.data.as_slice(), new.metadata.as_slice()) {
            return Err(conflict(i, "an event with this id is stored with different content"));
        }
        if new.time_us.is_some_and(|t| t != event.timestamp_us()) {
            return Err(conflict(i, "an event with this id is stored with a different time"));
        }
        if let Some(prev) = stored.last() {
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
