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
        (Value::bulk("time"), Value::bulk(rfc3339_micros(event.timestamp_us()))),
        (Value::bulk("data"), Value::bulk(event.data())),
        (Value::bulk("meta"), Value::bulk(event.metadata())),
    ])
}

/// Formats microseconds since the Unix epoch as RFC 3339 UTC with microseconds,
/// e.g. `2024-03-01T12:34:56.789012Z`.
pub fn rfc3339_micros(timestamp_us: i64) -> String {
    const MICROS_PER_DAY: i64 = 86_400_000_000;
    let days = timestamp_us.div_euclid(MICROS_PER_DAY);
    let micros_of_day = timestamp_us.rem_euclid(MICROS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let secs = micros_of_day / 1_000_000;
    let micros = micros_of_day % 1_000_000;
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{micros:06}Z", secs / 3600, (secs / 60) % 60, secs % 60)
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::rfc3339_micros;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339_micros(1), "1970-01-01T00:00:00.000001Z");
        assert_eq!(rfc3339_micros(-1), "1969-12-31T23:59:59.999999Z");
        // 2000-02-29T12:34:56.789012Z (a leap day in a century leap year).
        assert_eq!(rfc3339_micros(951_827_696_789_012), "2000-02-29T12:34:56.789012Z");
        // 2024-12-31T23:59:59Z
        assert_eq!(rfc3339_micros(1_735_689_599_000_000), "2024-12-31T23:59:59.000000Z");
        // 2100-03-01T00:00:00Z (2100 is not a leap year)
        assert_eq!(rfc3339_micros(4_107_542_400_000_000), "2100-03-01T00:00:00.000000Z");
    }
}
