//! READ, and the wire form of an event shared with READALL.
//!
//! An event is a map (RESP3) / flat key-value array (RESP2) with the keys
//! `id stream version position type time data meta`, in that order.

use crate::protocol::Value;
use crate::server::auth::Identity;
use crate::server::connection::Session;
use crate::server::pipeline::as_i64;
use crate::server::Shared;
use crate::{Direction, RecordedEvent};

use super::append::store_error;
use super::store_name;

/// Fixed per-event overhead counted against `max_reply_bytes` (keys, id, time, headers).
const EVENT_OVERHEAD_BYTES: usize = 160;

/// `READ <stream> [FROM v] [COUNT n] [REV]`: an array of events.
pub(super) fn read(
    shared: &Shared,
    _session: &Session,
    who: &Identity,
    stream: &str,
    from: Option<u64>,
    count: u64,
    reverse: bool,
) -> Value {
    let stored = match store_name(who, stream) {
        Ok(stored) => stored,
        Err(reply) => return reply,
    };
    let (from, direction) = match (from, reverse) {
        (Some(from), false) => (from, Direction::Forward),
        (None, false) => (1, Direction::Forward),
        (Some(from), true) => (from, Direction::Backward),
        (None, true) => (u64::MAX, Direction::Backward),
    };
    let max = usize::try_from(count).unwrap_or(usize::MAX);
    match shared.store.read_stream(&stored, from, max, direction) {
        Ok(events) => events_reply(who, &events, shared.config.limits.max_reply_bytes),
        Err(err) => store_error(&err),
    }
}

/// The array of events, cut short (never below one event) once it holds `max_reply_bytes`.
pub(super) fn events_reply(who: &Identity, events: &[RecordedEvent], max_reply_bytes: usize) -> Value {
    let mut items = Vec::with_capacity(events.len());
    let mut bytes = 0usize;
    for event in events {
        let size = event_size(event);
        if !items.is_empty() && bytes.saturating_add(size) > max_reply_bytes {
            break;
        }
        bytes = bytes.saturating_add(size);
        items.push(event_value(who, event));
    }
    Value::Array(items)
}

/// Roughly the encoded size of one event.
pub(super) fn event_size(event: &RecordedEvent) -> usize {
    EVENT_OVERHEAD_BYTES + event.stream().len() + event.event_type().len() + event.data().len() + event.metadata().len()
}

/// One event on the wire, with the stream name as the caller knows it.
pub(super) fn event_value(who: &Identity, event: &RecordedEvent) -> Value {
    Value::Map(vec![
        (Value::bulk("id"), Value::bulk(event.id().hyphenated().to_string())),
        (Value::bulk("stream"), Value::bulk(who.from_store(event.stream()))),
        (Value::bulk("version"), Value::Integer(as_i64(event.version()))),
        (Value::bulk("position"), Value::Integer(as_i64(event.position()))),
        (Value::bulk("type"), Value::bulk(event.event_type())),
        (Value::bulk("time"), Value::bulk(crate::time::rfc3339(event.timestamp_us()))),
        (Value::bulk("data"), Value::bulk(event.data())),
        (Value::bulk("meta"), Value::bulk(event.metadata())),
    ])
}
