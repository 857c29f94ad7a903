//! READ, and the wire form of an event shared with READALL.
//!
//! An event is a map (RESP3) / flat key-value array (RESP2) with the keys
//! `id stream version position type time data meta`, in that order.
//!
//! Replies are encoded event by event into bytes as the store is read in pages
//! ([`READ_PAGE_EVENTS`]), so a reply never exists twice (as values and as bytes) and never
//! holds more than its byte allowance, plus one event: `max_reply_bytes`, or less when the
//! server-wide reply budget (`max_reply_bytes_total`) is short. The allowance is reserved
//! from that budget when the reply starts (after a READALL BLOCK has found events), so
//! replies built at the same moment never count on the same free bytes.

use crate::auth::Identity;
use crate::connection::Session;
use crate::connection_core::Reservation;
use crate::pipeline::as_i64;
use crate::Shared;
use logbook::{Direction, RecordedEvent};
use logbook_protocol::{encode, ProtocolVersion, Value};

use super::append::store_error;
use super::{store_name, Reply};

/// Events fetched from the store per page while building a reply.
pub(super) const READ_PAGE_EVENTS: usize = 256;

/// A webhook's dead-letter stream (`$dead-letter-<name>`), which the admin (or anyone when no
/// auth is configured) may READ; every other `$` stream stays the engine's own.
fn readable_dead_letters(who: &Identity, stream: &str) -> Option<String> {
    let readable = who.namespace().is_none()
        && stream.starts_with(crate::DEAD_LETTER_STREAM_PREFIX)
        && logbook::validate_system_stream_name(stream).is_ok();
    readable.then(|| stream.to_string())
}

/// The stored name of a stream `who` may READ: in its namespace, or a readable dead-letter stream.
pub(super) fn readable_stream(who: &Identity, stream: &str) -> Result<String, Value> {
    readable_dead_letters(who, stream).map_or_else(|| store_name(who, stream), Ok)
}

/// `READ <stream> [FROM v] [COUNT n] [REV]`: an array of events.
pub(super) fn read(
    shared: &Shared,
    session: &Session,
    who: &Identity,
    stream: &str,
    from: Option<u64>,
    count: u64,
    reverse: bool,
) -> Reply {
    let stored = match readable_stream(who, stream) {
        Ok(stored) => stored,
        Err(reply) => return reply.into(),
    };
    let (mut next, direction) = match (from, reverse) {
        (Some(from), false) => (from, Direction::Forward),
        (None, false) => (1, Direction::Forward),
        (Some(from), true) => (from, Direction::Backward),
        (None, true) => (u64::MAX, Direction::Backward),
    };
    let max = usize::try_from(count).unwrap_or(usize::MAX);
    let mut reply = EventsReply::new(shared, who, session.proto);
    while reply.len() < max {
        let asked = (max - reply.len()).min(READ_PAGE_EVENTS);
        let page = match shared.store.read_stream(&stored, next, asked, direction) {
            Ok(page) => page,
            Err(err) => return store_error(&err).into(),
        };
        let Some(last) = page.last().map(RecordedEvent::version) else { break };
        let full = page.iter().any(|event| !reply.push(event));
        if full || page.len() < asked {
            break;
        }
        next = match direction {
            Direction::Forward => last + 1,
            Direction::Backward if last <= 1 => break,
            Direction::Backward => last - 1,
        };
    }
    reply.finish()
}

/// An array of events being encoded, cut short (never below one event) at a byte allowance.
pub(super) struct EventsReply<'a> {
    who: &'a Identity,
    proto: ProtocolVersion,
    reservation: Reservation,
    body: Vec<u8>,
    count: usize,
}

impl<'a> EventsReply<'a> {
    pub fn new(shared: &Shared, who: &'a Identity, proto: ProtocolVersion) -> EventsReply<'a> {
        let reservation = shared.reply_budget().reserve(shared.config.limits.max_reply_bytes);
        EventsReply { who, proto, reservation, body: Vec::new(), count: 0 }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    /// Adds the event, or returns false (and adds nothing) when it would pass the allowance.
    pub fn push(&mut self, event: &RecordedEvent) -> bool {
        let before = self.body.len();
        if self.count > 0 && before.saturating_add(event_size(event)) > self.reservation.granted() {
            return false;
        }
        encode(&event_value(self.who, event), self.proto, &mut self.body);
        if self.count > 0 && self.body.len() > self.reservation.granted() {
            self.body.truncate(before);
            return false;
        }
        self.count += 1;
        true
    }

    /// The encoded array: its header, then the events (two parts, so the body is not copied).
    pub fn finish(self) -> Reply {
        Reply::Events(vec![format!("*{}\r\n", self.count).into_bytes(), self.body], self.reservation)
    }
}

/// A lower bound of the encoded size of one event (its variable parts).
fn event_size(event: &RecordedEvent) -> usize {
    event.stream().len() + event.event_type().len() + event.data().len() + event.metadata().len()
}

/// One event on the wire, with the stream name as the caller knows it.
pub(super) fn event_value(who: &Identity, event: &RecordedEvent) -> Value {
    Value::Map(vec![
        (Value::bulk("id"), Value::bulk(event.id().hyphenated().to_string())),
        (Value::bulk("stream"), Value::bulk(who.from_store(event.stream()))),
        (Value::bulk("version"), Value::Integer(as_i64(event.version()))),
        (Value::bulk("position"), Value::Integer(as_i64(event.position()))),
        (Value::bulk("type"), Value::bulk(event.event_type())),
        (Value::bulk("time"), Value::bulk(logbook::time::rfc3339(event.timestamp_us()))),
        (Value::bulk("data"), Value::bulk(event.data())),
        (Value::bulk("meta"), Value::bulk(event.metadata())),
    ])
}
