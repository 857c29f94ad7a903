//! `logbook import --csv`: the PostgreSQL `order_events` table of the e-commerce design (seed
//! 000), as `COPY order_events TO STDOUT WITH CSV HEADER` writes it, into order streams.
//!
//! Two passes. [`read_csv`] reads and checks the whole file first, so a bad row (named by its
//! line) stops the import before anything is written; it groups the rows by order (in memory:
//! about the file's size, plus ~100 bytes per row) and sorts each order's rows by `created_at`
//! (ties keep the file's order). [`import`] then appends each order to `order-<order_id>` as
//! one atomic append with `ExpectedVersion::NoStream`: the row's `id` (a UUID in the design) is
//! the event id, `payload` the data, `created_at` the event's own time ([`NewEvent::at`]) and
//! the other columns the metadata, so a rerun of the same file finds every order already
//! stored (the store's idempotency answers with the original result) and writes nothing. An
//! order whose stream starts with exactly the rows an earlier import stored (by id, in order)
//! gets the file's newer rows appended after them (`ExpectedVersion::Exact`).

use std::cell::Cell;
use std::collections::HashMap;
use std::io::Read;
use std::rc::Rc;

use logbook::{Error, ExpectedVersion, Namespace, NewEvent, Store};
use uuid::Uuid;

/// The table's columns, as the design creates them (a file may have them in any order).
pub const COLUMNS: [&str; 11] = [
    "id",
    "order_id",
    "retailer_id",
    "customer_id",
    "event_type",
    "payload",
    "actor",
    "actor_id",
    "created_at",
    "ip_address",
    "user_agent",
];

/// The longest row read, in bytes: an event's payload and metadata limit plus room for the
/// other columns. A longer row (or a runaway quote) stops the import before it is buffered.
pub const MAX_ROW_BYTES: usize = logbook::MAX_PAYLOAD_BYTES + 64 * 1024;

/// Bytes a frame takes besides its stream name, type, metadata and data (docs/format.md:
/// the 8-byte frame header and the 56 fixed bytes of the body), for the batch-size check.
const FRAME_OVERHEAD_BYTES: usize = 64;

/// One row of the table, checked, as the event it becomes.
#[derive(Debug, Clone)]
pub struct Row {
    /// The CSV line the row starts on (the header is line 1).
    pub line: u64,
    /// The row's `id`: the event id.
    pub id: Uuid,
    /// `created_at`, microseconds since the Unix epoch (UTC).
    pub time_us: i64,
    /// `event_type`.
    pub event_type: String,
    /// `payload` as PostgreSQL wrote it (JSON text).
    pub data: Vec<u8>,
    /// The other columns as a JSON object (NULL columns left out).
    pub metadata: Vec<u8>,
}

/// One order's rows, sorted by `created_at`.
#[derive(Debug)]
pub struct Order {
    /// `order_id`.
    pub order_id: String,
    /// The stream it goes to: `order-<order_id>`, in the tenant's namespace with `--tenant`.
    pub stream: String,
    pub rows: Vec<Row>,
}

/// A checked file, grouped by order (orders in the order of their first row).
#[derive(Debug, Default)]
pub struct Parsed {
    pub rows: u64,
    pub orders: Vec<Order>,
}

/// What [`import`] did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Summary {
    /// Rows in the file.
    pub rows: u64,
    /// Orders (distinct `order_id`s) in the file.
    pub orders: u64,
    /// Orders appended by this run.
    pub orders_imported: u64,
    /// Orders already stored with the same events (an earlier import): nothing written.
    pub orders_already_present: u64,
    /// Orders an earlier import stored part of (the table gained rows since): the new rows
    /// were appended after the stored ones.
    pub orders_extended: u64,
    /// Events appended by this run.
    pub events_appended: u64,
    /// Rows not appended because they were already stored (of the orders already present).
    pub rows_skipped: u64,
}

/// Limits an order must fit in (one order is one atomic append): the store's
/// `max_batch_events` and `max_batch_bytes`, and the latest time the store accepts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_events: usize,
    pub max_bytes: usize,
    pub latest_time_us: i64,
}

impl Limits {
    /// The limits of `store` (its options and its clock).
    pub fn of(store: &Store) -> Limits {
        let options = store.options();
        Limits {
            max_events: options.max_batch_events,
            max_bytes: options.max_batch_bytes,
            latest_time_us: store.now_us().saturating_add(logbook::MAX_EVENT_TIME_AHEAD_US),
        }
    }
}

/// Counts the bytes the CSV reader pulls in since the last row ended, and refuses to hand it
/// more once that passes [`MAX_ROW_BYTES`] plus one read buffer.
struct Bounded<R> {
    inner: R,
    since_row: Rc<Cell<usize>>,
}

/// The CSV reader's buffer: it reads ahead at most this much past a row.
const CSV_BUFFER_BYTES: usize = 64 * 1024;

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.since_row.get() > MAX_ROW_BYTES + CSV_BUFFER_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a row longer than {MAX_ROW_BYTES} bytes (an unterminated quote?)"),
            ));
        }
        let n = self.inner.read(buf)?;
        self.since_row.set(self.since_row.get() + n);
        Ok(n)
    }
}

/// Reads and checks a whole `COPY order_events TO STDOUT WITH CSV HEADER` file; `progress` is
/// called with the bytes read so far after each row. Errors name the line and the column.
pub fn read_csv(
    input: impl Read,
    namespace: Option<&Namespace>,
    limits: Limits,
    mut progress: impl FnMut(u64),
) -> Result<Parsed, String> {
    let since_row = Rc::new(Cell::new(0));
    let bounded = Bounded { inner: input, since_row: Rc::clone(&since_row) };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(CSV_BUFFER_BYTES)
        .from_reader(bounded);
    let mut record = csv::ByteRecord::new();
    let line_of = |record: &csv::ByteRecord| record.position().map_or(0, |p| p.line());
    let read_error = |e: csv::Error| match e.position() {
        Some(p) => format!("line {}: {e}", p.line()),
        None => e.to_string(),
    };
    if !reader.read_byte_record(&mut record).map_err(read_error)? {
        return Err("the file is empty: want the header line of COPY ... WITH CSV HEADER".into());
    }
    let columns = header_columns(&record)?;
    since_row.set(0);

    let mut parsed = Parsed::default();
    let mut by_order: HashMap<String, usize> = HashMap::new();
    let mut ids: HashMap<Uuid, u64> = HashMap::new();
    let mut order_bytes: Vec<usize> = Vec::new();
    while reader.read_byte_record(&mut record).map_err(read_error)? {
        since_row.set(0);
        let line = line_of(&record);
        if record.len() != COLUMNS.len() {
            // A quote that is never closed swallows the rest of the file into one field: the
            // csv reader then ends the record at the end of the file, with too few columns.
            let spans_lines = record.iter().any(|f| f.contains(&b'\n'));
            if spans_lines && !reader.read_byte_record(&mut csv::ByteRecord::new()).map_err(read_error)? {
                return Err(format!(
                    "line {line}: a quoted field opened on this line is not closed before the end of the file"
                ));
            }
            return Err(format!("line {line}: {} columns, want {} (as the header)", record.len(), COLUMNS.len()));
        }
        let field = |name: &str| -> Result<&str, String> {
            let i = columns[COLUMNS.iter().position(|c| *c == name).expect("a known column")];
            std::str::from_utf8(&record[i]).map_err(|_| format!("line {line}: {name} is not UTF-8"))
        };
        let (order_id, row) = parse_row(line, &field, limits)?;
        if let Some(first) = ids.insert(row.id, line) {
            return Err(format!("line {line}: id {} also on line {first} (ids are the table's primary key)", row.id));
        }
        let order = match by_order.get(order_id) {
            Some(&i) => i,
            None => {
                let local = format!("order-{order_id}");
                let stream = namespace.map_or_else(|| local.clone(), |ns| ns.stored_name(&local));
                logbook::validate_stream_name(&stream).map_err(|e| format!("line {line}: order_id: {e}"))?;
                parsed.orders.push(Order { order_id: order_id.to_string(), stream, rows: Vec::new() });
                order_bytes.push(0);
                by_order.insert(order_id.to_string(), parsed.orders.len() - 1);
                parsed.orders.len() - 1
            }
        };
        let o = &mut parsed.orders[order];
        order_bytes[order] +=
            FRAME_OVERHEAD_BYTES + o.stream.len() + row.event_type.len() + row.metadata.len() + row.data.len();
        if o.rows.len() + 1 > limits.max_events || order_bytes[order] > limits.max_bytes {
            return Err(format!(
                "line {line}: order {} has more than {} events or {} bytes, more than one atomic append may \
                 hold (the store's max_batch_events / max_batch_bytes)",
                o.order_id, limits.max_events, limits.max_bytes
            ));
        }
        o.rows.push(row);
        parsed.rows += 1;
        progress(reader.position().byte());
    }
    for order in &mut parsed.orders {
        // Stable: rows with the same created_at keep the file's order.
        order.rows.sort_by_key(|r| r.time_us);
    }
    Ok(parsed)
}

/// Maps each of [`COLUMNS`] to its index in the header; every column must be there, once.
fn header_columns(header: &csv::ByteRecord) -> Result<[usize; 11], String> {
    let mut at = [usize::MAX; 11];
    for (i, name) in header.iter().enumerate() {
        let name = String::from_utf8_lossy(name);
        let name = name.trim_start_matches('\u{feff}');
        let Some(c) = COLUMNS.iter().position(|c| *c == name) else {
            return Err(format!(
                "line 1: unknown column '{name}': want the order_events table's columns ({}), \
                 as COPY order_events TO STDOUT WITH CSV HEADER writes them",
                COLUMNS.join(", ")
            ));
        };
        if at[c] != usize::MAX {
            return Err(format!("line 1: column '{name}' appears twice"));
        }
        at[c] = i;
    }
    if let Some(missing) = COLUMNS.iter().zip(at).find(|(_, i)| *i == usize::MAX) {
        return Err(format!("line 1: no column '{}' (the header must name all of: {})", missing.0, COLUMNS.join(", ")));
    }
    Ok(at)
}

/// Checks one row: returns its order id and the event it becomes.
fn parse_row<'a>(
    line: u64,
    field: &impl Fn(&str) -> Result<&'a str, String>,
    limits: Limits,
) -> Result<(&'a str, Row), String> {
    let required = |name: &str| -> Result<&'a str, String> {
        let value = field(name)?;
        if value.is_empty() {
            return Err(format!("line {line}: {name} is empty (NOT NULL in the table)"));
        }
        Ok(value)
    };
    let id_text = required("id")?;
    let id =
        Uuid::parse_str(id_text).map_err(|_| format!("line {line}: id '{}' is not a UUID", id_text.escape_debug()))?;
    let order_id = required("order_id")?;
    let event_type = required("event_type")?;
    if event_type.len() > logbook::MAX_EVENT_TYPE_BYTES {
        return Err(format!(
            "line {line}: event_type is {} bytes, limit {}",
            event_type.len(),
            logbook::MAX_EVENT_TYPE_BYTES
        ));
    }
    let created_at = required("created_at")?;
    let time_us = parse_timestamptz(created_at).map_err(|e| format!("line {line}: created_at '{created_at}': {e}"))?;
    if time_us < 0 || time_us > limits.latest_time_us {
        return Err(format!(
            "line {line}: created_at '{created_at}' is before 1970 or more than a day past this machine's clock"
        ));
    }
    let payload = required("payload")?;
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(payload) {
        return Err(format!("line {line}: payload is not JSON: {e}"));
    }
    let mut meta = serde_json::Map::new();
    for name in ["actor", "actor_id", "retailer_id", "customer_id", "ip_address", "user_agent"] {
        let value = if matches!(name, "actor" | "retailer_id") { required(name)? } else { field(name)? };
        // CSV writes NULL and '' alike (an empty field) once read back: both are left out.
        if !value.is_empty() {
            meta.insert(name.to_string(), serde_json::Value::String(value.to_string()));
        }
    }
    let metadata = serde_json::to_vec(&meta).map_err(|e| format!("line {line}: {e}"))?;
    if payload.len() + metadata.len() > logbook::MAX_PAYLOAD_BYTES {
        return Err(format!(
            "line {line}: payload and the other columns take {} bytes, limit {}",
            payload.len() + metadata.len(),
            logbook::MAX_PAYLOAD_BYTES
        ));
    }
    let row =
        Row { line, id, time_us, event_type: event_type.to_string(), data: payload.as_bytes().to_vec(), metadata };
    Ok((order_id, row))
}

/// Parses PostgreSQL's text form of a `timestamptz` (its default `DateStyle` ISO output):
/// `YYYY-MM-DD HH:MM:SS[.f…]` (1 to 6 fraction digits) then an optional offset `±HH`,
/// `±HH:MM` or `±HH:MM:SS`; without one the time is UTC. `T` for the space and `Z` for the
/// offset are taken too. Returns microseconds since the Unix epoch.
pub fn parse_timestamptz(text: &str) -> Result<i64, String> {
    let bad = |why: &str| Err(format!("not a PostgreSQL timestamp (YYYY-MM-DD HH:MM:SS[.ffffff][+HH[:MM]]): {why}"));
    let b = text.as_bytes();
    if b.len() < 19 || !b.is_ascii() {
        return bad("too short");
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let s = &text[range];
        (s.bytes().all(|c| c.is_ascii_digit())).then(|| s.parse().ok()).flatten()
    };
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) =
        (num(0..4), num(5..7), num(8..10), num(11..13), num(14..16), num(17..19))
    else {
        return bad("a field is not a number");
    };
    if b[4] != b'-' || b[7] != b'-' || !(b[10] == b' ' || b[10] == b'T') || b[13] != b':' || b[16] != b':' {
        return bad("separators");
    }
    let month_days = [31, if is_leap(year) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month)
        || day == 0
        || day > month_days[month as usize - 1]
        || hour > 23
        || minute > 59
        || second > 59
    {
        return bad("a field is out of range");
    }
    let mut rest = &text[19..];
    let mut micros = 0i64;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 6 {
            return bad("the fraction wants 1 to 6 digits");
        }
        micros = fraction[..digits].parse::<i64>().map_err(|e| e.to_string())? * 10i64.pow(6 - digits as u32);
        rest = &fraction[digits..];
    }
    let offset_s: i64 = match rest {
        "" | "Z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return bad("unexpected text after the time"),
            };
            let parts: Vec<&str> = rest[1..].split(':').collect();
            if parts.len() > 3 || parts.iter().any(|p| p.len() != 2 || !p.bytes().all(|c| c.is_ascii_digit())) {
                return bad("the offset wants ±HH, ±HH:MM or ±HH:MM:SS");
            }
            let v: Vec<i64> = parts.iter().map(|p| p.parse().unwrap_or(0)).collect();
            let (h, m, s) = (v[0], v.get(1).copied().unwrap_or(0), v.get(2).copied().unwrap_or(0));
            if h > 15 || m > 59 || s > 59 {
                return bad("the offset is out of range");
            }
            sign * (h * 3600 + m * 60 + s)
        }
    };
    let days = logbook::time::days_from_civil(i64::from(year), month, day);
    let seconds = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second) - offset_s;
    Ok(seconds * 1_000_000 + micros)
}

fn is_leap(year: u32) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

/// Appends every order of `parsed` to `store`, one atomic append per order; `progress` gets the
/// rows handled so far. Stops at the first order the store refuses, with an error naming the
/// order, its stream and its first line; the orders before it are stored, and a rerun skips
/// them (nothing is half-imported: an order is all or nothing).
pub fn import(store: &Store, parsed: Parsed, mut progress: impl FnMut(u64)) -> Result<Summary, String> {
    let mut summary = Summary { rows: parsed.rows, orders: parsed.orders.len() as u64, ..Summary::default() };
    let mut done = 0u64;
    for order in parsed.orders {
        let count = order.rows.len() as u64;
        let first_line = order.rows.iter().map(|r| r.line).min().unwrap_or(0);
        let before = store.stream_version(&order.stream);
        if before > 0 {
            older_than_stored(store, &order).map_err(|why| {
                format!(
                    "order {} (stream {}): {why}; {} orders imported before it, {} already present",
                    order.order_id, order.stream, summary.orders_imported, summary.orders_already_present
                )
            })?;
        }
        let events: Vec<NewEvent> = order
            .rows
            .into_iter()
            .map(|r| NewEvent::new(r.event_type, r.data).with_metadata(r.metadata).with_id(r.id).at(r.time_us))
            .collect();
        let what = |e: Error| {
            let why = match &e {
                Error::WrongExpectedVersion { actual, .. } => {
                    format!("the stream already holds {actual} events that are not this file's rows for the order")
                }
                Error::IdempotencyConflict { .. } => "some of its rows are stored already, but not as the first \
                     events of the stream in the file's order, or they differ from what is stored"
                    .to_string(),
                Error::StreamDeleted(_) => "the stream was deleted".to_string(),
                _ => "the store refused it".to_string(),
            };
            format!(
                "order {} (first row on line {first_line}, stream {}): {why}: {e}; {} orders imported before it, \
                 {} already present (a rerun skips them)",
                order.order_id, order.stream, summary.orders_imported, summary.orders_already_present
            )
        };
        // Rows an earlier import stored: the stream must start with exactly those (same ids,
        // same order); the rest are appended after them. Anything else is refused below.
        let stored = stored_prefix(store, &order.stream, before, &events).map_err(what)?;
        if stored == 0 || stored == count {
            store.append(&order.stream, ExpectedVersion::NoStream, events).map_err(what)?;
        } else {
            let new = events.into_iter().skip(stored as usize).collect();
            store.append(&order.stream, ExpectedVersion::Exact(before), new).map_err(what)?;
        }
        // What was written, by the stream's version (an idempotent answer writes nothing).
        let appended = store.stream_version(&order.stream) - before;
        summary.events_appended += appended;
        summary.rows_skipped += count - appended;
        if appended == 0 {
            summary.orders_already_present += 1;
        } else if before == 0 {
            summary.orders_imported += 1;
        } else {
            summary.orders_extended += 1;
        }
        done += count;
        progress(done);
    }
    Ok(summary)
}

/// Refuses, naming the row and both times, a row of an order that an earlier import stored
/// whose time is before the last stored event's: appended after them it would make the
/// stream's times go back (the store refuses that), and put before them it would change
/// what is stored. Reads at most `order.rows.len()` events; a stream holding other events than
/// the file's is left to the append's own refusal.
fn older_than_stored(store: &Store, order: &Order) -> Result<(), String> {
    let stored = store.read_stream(&order.stream, 1, order.rows.len() + 1, logbook::Direction::Forward);
    let Ok(stored) = stored else { return Ok(()) };
    let ids: std::collections::HashSet<Uuid> = stored.iter().map(|e| e.id()).collect();
    let Some(last) = stored.iter().map(|e| e.timestamp_us()).max() else { return Ok(()) };
    if stored.len() > order.rows.len() || order.rows.iter().filter(|r| ids.contains(&r.id)).count() != stored.len() {
        return Ok(());
    }
    match order.rows.iter().find(|r| !ids.contains(&r.id) && r.time_us < last) {
        Some(row) => Err(format!(
            "line {}: row {} ({}) is older than the last event stored for the order ({}); rows a later \
             import adds must not be older than what an earlier import stored (per stream, event times never go \
             back)",
            row.line,
            row.id,
            logbook::time::rfc3339(row.time_us),
            logbook::time::rfc3339(last)
        )),
        None => Ok(()),
    }
}

/// How many of `events` the stream already holds as its first events (`before` of them, the
/// stream's version), or 0 when it holds none or other events (the append then fails on its
/// expected version, or on idempotency, with the reason). Reads at most `events.len()` events.
fn stored_prefix(store: &Store, stream: &str, before: u64, events: &[NewEvent]) -> Result<u64, Error> {
    if before == 0 || before > events.len() as u64 {
        return Ok(0);
    }
    let stored = store.read_stream(stream, 1, before as usize, logbook::Direction::Forward)?;
    let same = stored.len() as u64 == before && stored.iter().zip(events).all(|(s, e)| Some(s.id()) == e.id);
    Ok(if same { before } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgresql_timestamps_parse_with_and_without_fraction_and_offset() {
        let base = parse_timestamptz("2026-03-01 10:03:21+00").unwrap();
        assert_eq!(logbook::time::rfc3339(base), "2026-03-01T10:03:21.000000Z");
        assert_eq!(parse_timestamptz("2026-03-01 10:03:21").unwrap(), base, "no offset: UTC");
        assert_eq!(parse_timestamptz("2026-03-01 10:03:21.123456+00").unwrap(), base + 123_456);
        assert_eq!(parse_timestamptz("2026-03-01 10:03:21.5+00").unwrap(), base + 500_000);
        assert_eq!(parse_timestamptz("2026-03-01 12:03:21+02").unwrap(), base);
        assert_eq!(parse_timestamptz("2026-03-01 05:33:21-04:30").unwrap(), base);
        assert_eq!(parse_timestamptz("2026-03-01 10:03:21.123456Z").unwrap(), base + 123_456);
        assert_eq!(parse_timestamptz("1970-01-01 00:00:00+00").unwrap(), 0);
        assert_eq!(parse_timestamptz("2024-02-29 00:00:00").unwrap() % 1_000_000, 0);
        for bad in [
            "",
            "2026-03-01",
            "2026-02-30 00:00:00",
            "2026-13-01 00:00:00",
            "2026-03-01 24:00:00",
            "2026-03-01 10:03:21.1234567",
            "2026-03-01 10:03:21.",
            "2026-03-01 10:03:21 BC",
            "2026-03-01 10:03:21+1",
            "infinity",
            "2026/03/01 10:03:21",
        ] {
            assert!(parse_timestamptz(bad).is_err(), "{bad}");
        }
    }
}
