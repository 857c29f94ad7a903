//! The support view of an order: one readable line per event, what a support agent answering
//! "where is my order?" reads.
//!
//! ```text
//! 10:04:18 — PAYMENT_CONFIRMED { gateway: "stripe", txn: "pi_xxx", amount: "39.98 EUR" } (system)
//! ```
//!
//! Times are UTC. The text opens with a status line (where the order is now: its state, items,
//! amount paid, tracking number and last change) and puts a date line before the first event
//! of each day. The lines show events exactly as stored (no upcasting: it is an audit trail),
//! so it works on any order stream, including events the state machine would refuse; only the
//! status line replays them through the order's state.
//!
//! An order is named by its id, its stream name (`order-<id>`) or a prefix of its id that only
//! one order has; an order with no events is [`TimelineError::NoSuchOrder`].

use serde::Serialize;

use crate::{event_types as et, order_id_of, stream_name, Catalogue, Money, Order};
use logbook::time;
use logbook::Result;
use logbook::Store;
use logbook::{Direction, RecordedEvent};
use logbook_es::aggregate::{self, Aggregate as _};

/// Orders an ambiguous id prefix names, at most, in its error.
pub const MAX_AMBIGUOUS_SHOWN: usize = 5;

/// Why a timeline could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    /// The order id (or stream name) was empty.
    #[error("the order id must not be empty")]
    EmptyId,
    /// No order has this id, nor an id that starts with it.
    #[error("no such order '{0}'")]
    NoSuchOrder(String),
    /// Several orders have ids that start with this prefix (some of them listed).
    #[error("order id '{prefix}' is ambiguous: it starts {} (give more of the id)", matches.join(", "))]
    Ambiguous { prefix: String, matches: Vec<String> },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] logbook::Error),
}

/// Most events one timeline shows (the rest is reported as truncated).
pub const MAX_TIMELINE_EVENTS: usize = 100_000;
/// Longest rendered detail value; longer ones are cut with `…`.
pub const MAX_DETAIL_CHARS: usize = 120;

/// One event of a timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    pub version: u64,
    pub position: u64,
    pub event_id: String,
    /// Microseconds since the epoch, UTC.
    pub timestamp_us: i64,
    /// RFC 3339, UTC: `2025-11-01T10:04:18.000000Z`.
    pub at: String,
    /// `10:04:18` (UTC).
    pub time: String,
    pub event_type: String,
    /// `{ gateway: "stripe", txn: "pi_xxx" }`, or empty for events without details.
    pub summary: String,
    /// `customer`, `system`, `admin:retailer_123`, `system via courier webhook`.
    pub actor: String,
    /// The event's data (JSON; a string when it is not JSON).
    pub data: serde_json::Value,
    /// The event's metadata (JSON; null when empty, a string when it is not JSON).
    pub metadata: serde_json::Value,
}

/// The separators of the text form: typographic for a terminal, ASCII over the wire (redis-cli
/// prints any non-ASCII byte of a reply escaped, `\xe2\x80\x94`). Only the separators change:
/// the order's own data is shown as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Separators {
    /// Between an event's time and its type.
    pub dash: &'static str,
    /// Between the fields of the status line.
    pub dot: &'static str,
}

impl Separators {
    /// ` — ` and ` · `.
    pub const TEXT: Separators = Separators { dash: " \u{2014} ", dot: " \u{b7} " };
    /// ` - ` and ` | `.
    pub const ASCII: Separators = Separators { dash: " - ", dot: " | " };
}

impl TimelineEntry {
    /// The seed's line: `10:04:18 — PAYMENT_CONFIRMED { gateway: "stripe", txn: "pi_xxx" } (system)`.
    pub fn line(&self) -> String {
        self.line_with(Separators::TEXT)
    }

    /// [`TimelineEntry::line`] with the given separators.
    pub fn line_with(&self, separators: Separators) -> String {
        let mut line = format!("{}{}{}", self.time, separators.dash, self.event_type);
        if !self.summary.is_empty() {
            line.push(' ');
            line.push_str(&self.summary);
        }
        if !self.actor.is_empty() {
            line.push_str(&format!(" ({})", self.actor));
        }
        line
    }
}

/// Where an order is now, from replaying its events through the order's state (events that
/// do not decode are skipped).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderSummary {
    /// `DELIVERED`, `PAID`, ...
    pub state: String,
    /// Units in the active lines.
    pub items: u64,
    /// Amount captured (`39.98 EUR`); `None` before a payment.
    pub paid: Option<String>,
    /// Amount refunded so far; `None` when nothing was.
    pub refunded: Option<String>,
    /// The parcel's tracking number once shipped.
    pub tracking: Option<String>,
    /// When the last event was stored, RFC 3339 UTC.
    pub last_change: String,
    pub last_change_us: i64,
}

impl OrderSummary {
    /// `status: DELIVERED · 3 items · paid 39.98 EUR · tracking BD1234567IN · last change 2025-11-03 15:30:00 UTC`.
    pub fn line(&self) -> String {
        self.line_with(Separators::TEXT)
    }

    /// [`OrderSummary::line`] with the given separators.
    pub fn line_with(&self, separators: Separators) -> String {
        let items = if self.items == 1 { "1 item".to_string() } else { format!("{} items", self.items) };
        let paid = match (&self.paid, &self.refunded) {
            (Some(paid), Some(refunded)) => format!("paid {paid} (refunded {refunded})"),
            (Some(paid), None) => format!("paid {paid}"),
            (None, _) => "not paid".to_string(),
        };
        let tracking = self.tracking.as_ref().map_or_else(|| "not shipped".to_string(), |t| format!("tracking {t}"));
        let last = format!("{} {} UTC", time::date(self.last_change_us), time::hms(self.last_change_us));
        let dot = separators.dot;
        format!("status: {}{dot}{items}{dot}{paid}{dot}{}{dot}last change {last}", self.state, clean(&tracking))
    }
}

/// An order's timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    pub order_id: String,
    pub stream: String,
    /// Where the order is now (`None` when it has no events).
    pub status: Option<OrderSummary>,
    pub entries: Vec<TimelineEntry>,
    /// True when the stream has more than [`MAX_TIMELINE_EVENTS`] events (only the first are shown).
    pub truncated: bool,
    /// Events of the stream's versions that the hot store no longer holds (archived to the cold
    /// tier or removed by retention): the timeline and its status cover only the rest.
    pub not_stored: u64,
}

impl Timeline {
    /// The text form: a heading, the status line, then one line per event, with a date line
    /// (`2025-11-01`) before the first event of each UTC day.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for line in self.lines() {
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    /// The lines of [`Timeline::to_text`].
    pub fn lines(&self) -> Vec<String> {
        self.lines_with(Separators::TEXT)
    }

    /// [`Timeline::lines`] with the given separators (the daemon's TIMELINE replies them with
    /// [`Separators::ASCII`]).
    pub fn lines_with(&self, separators: Separators) -> Vec<String> {
        let mut out = vec![format!("order {} ({} events, times in UTC)", self.order_id, self.entries.len())];
        match &self.status {
            Some(status) => out.push(status.line_with(separators)),
            None => out.push("no events".to_string()),
        }
        if self.not_stored > 0 {
            out.push(format!(
                "{} earlier events are no longer in the hot store (archived or removed by retention): \
                 the status and the lines below cover only the {} still stored",
                self.not_stored,
                self.entries.len()
            ));
        }
        let mut day = String::new();
        for entry in &self.entries {
            let entry_day = time::date(entry.timestamp_us);
            if entry_day != day {
                out.push(entry_day.clone());
                day = entry_day;
            }
            out.push(entry.line_with(separators));
        }
        if self.truncated {
            out.push(format!("… truncated after {MAX_TIMELINE_EVENTS} events"));
        }
        out
    }

    /// The JSON form (pretty-printed).
    pub fn to_json(&self) -> String {
        // A Timeline is strings, integers and serde_json values: serializing it cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// The timeline of an order. `order` is an order id (`6f1c…`), an order stream name
/// (`order-6f1c…`) or a prefix of an id that only one order has.
pub fn timeline(store: &Store, order: &str) -> std::result::Result<Timeline, TimelineError> {
    let id = order_id_of(order).unwrap_or(order);
    let stream = find_order(store, id, &stream_name(id))?;
    let full_id = order_id_of(&stream).unwrap_or(&stream).to_string();
    Ok(timeline_of_stream(store, &full_id, &stream)?)
}

/// The stream of the order whose id is `id` or starts with it: `stored` is the stream name of
/// `order-<id>` as the store holds it (for a tenant, in its namespace). The stream itself when
/// it has events, else the one stream that starts with `stored`; returns the stored name.
pub fn find_order(store: &Store, id: &str, stored: &str) -> std::result::Result<String, TimelineError> {
    if id.is_empty() {
        return Err(TimelineError::EmptyId);
    }
    if store.stream_version(stored) > 0 {
        return Ok(stored.to_string());
    }
    let mut matches = store.streams_with_prefix(stored, MAX_AMBIGUOUS_SHOWN + 1);
    match matches.len() {
        0 => Err(TimelineError::NoSuchOrder(id.to_string())),
        1 => Ok(matches.remove(0)),
        _ => {
            let shown = |m: &String| format!("{id}{}", &m[stored.len()..]);
            let mut shown: Vec<String> = matches.iter().take(MAX_AMBIGUOUS_SHOWN).map(shown).collect();
            if matches.len() > MAX_AMBIGUOUS_SHOWN {
                shown.push("…".into());
            }
            Err(TimelineError::Ambiguous { prefix: id.to_string(), matches: shown })
        }
    }
}

/// The timeline of the order `order_id` stored in `stream` (for callers that store orders
/// under another name, such as a tenant's namespace in the daemon). A stream with no events
/// gives an empty timeline.
pub fn timeline_of_stream(store: &Store, order_id: &str, stream: &str) -> Result<Timeline> {
    Ok(timeline_page(store, order_id, stream, 1, usize::MAX)?.timeline)
}

/// One page of a timeline ([`timeline_page`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TimelinePage {
    /// The status of the whole order, this page's entries.
    pub timeline: Timeline,
    /// The version the next page starts at (`None`: this page reaches the end).
    pub next: Option<u64>,
    /// The time of the first event of each type, over every event (not only this page's), in
    /// the order first seen; at most [`MAX_FIRST_TYPES`] types.
    pub first_at: Vec<(String, i64)>,
    /// The carrier the last SHIPPED event names, over every event.
    pub carrier: Option<String>,
}

/// Event types whose first time a [`TimelinePage`] remembers, at most.
pub const MAX_FIRST_TYPES: usize = 64;

/// Events read from the store at a time while building a bounded timeline page.
const PAGE_READ_EVENTS: usize = 64;

/// One page of the timeline of `order_id` in `stream`, for replies that must stay bounded:
/// the status covers every stored event (up to [`MAX_TIMELINE_EVENTS`]), but `entries` holds
/// only the events from version `from`, and stops once their data and metadata pass
/// `max_entry_bytes` (at least one entry). Returns the version the next page starts at, if
/// any events were left out.
pub fn timeline_page(
    store: &Store,
    order_id: &str,
    stream: &str,
    from: u64,
    max_entry_bytes: usize,
) -> Result<TimelinePage> {
    let (order_id, stream) = (order_id.to_string(), stream.to_string());
    let mut entries = Vec::new();
    let mut truncated = false;
    let upcasters = crate::upcasters(Catalogue::demo());
    let mut state = Order::initial();
    let mut last_change_us = None;
    // Versions compaction removed are skipped by the read, so the next page starts after the
    // last version read, never at the count read so far (that re-read events after a gap).
    let mut next_version = 1;
    let mut last_version = 0;
    let mut folded = 0usize;
    let mut entry_bytes = 0usize;
    let mut next_page = None;
    let mut first_at: Vec<(String, i64)> = Vec::new();
    let mut carrier = None;
    let read_size = if max_entry_bytes == usize::MAX { 1024 } else { PAGE_READ_EVENTS };
    loop {
        let page = store.read_stream(&stream, next_version, read_size, Direction::Forward)?;
        if page.is_empty() {
            break;
        }
        next_version = page[page.len() - 1].version() + 1;
        for event in &page {
            if folded == MAX_TIMELINE_EVENTS {
                truncated = true;
                break;
            }
            if let Ok(decoded) = aggregate::decode_recorded::<Order>(&upcasters, event) {
                state.apply(&decoded);
            }
            folded += 1;
            if event.event_type() == crate::event_types::SHIPPED {
                let data: serde_json::Value = serde_json::from_slice(event.data()).unwrap_or_default();
                if let Some(named) = data.get("carrier").and_then(|c| c.as_str()) {
                    carrier = Some(named.to_string());
                }
            }
            if first_at.len() < MAX_FIRST_TYPES && !first_at.iter().any(|(t, _)| t == event.event_type()) {
                first_at.push((event.event_type().to_string(), event.timestamp_us()));
            }
            last_change_us = Some(event.timestamp_us());
            last_version = event.version();
            if event.version() < from || next_page.is_some() {
                continue;
            }
            entry_bytes = entry_bytes.saturating_add(event.data().len() + event.metadata().len() + 256);
            if !entries.is_empty() && entry_bytes > max_entry_bytes {
                next_page = Some(event.version());
                continue;
            }
            entries.push(entry_of(event));
        }
        if truncated {
            break;
        }
    }
    let status = last_change_us.map(|at| summary_of(&state, at));
    let not_stored = last_version.saturating_sub(folded as u64);
    let timeline = Timeline { order_id, stream, status, entries, truncated, not_stored };
    Ok(TimelinePage { timeline, next: next_page, first_at, carrier })
}

fn summary_of(order: &Order, last_change_us: i64) -> OrderSummary {
    let money = |amount: u64| Money::new(amount, &order.currency).to_string();
    OrderSummary {
        state: order.status.to_string(),
        items: order.items.values().map(|line| u64::from(line.quantity)).sum(),
        paid: (order.paid > 0).then(|| money(order.paid)),
        refunded: (order.refunded > 0).then(|| money(order.refunded)),
        tracking: order.tracking.clone(),
        last_change: time::rfc3339(last_change_us),
        last_change_us,
    }
}

/// The timeline entry of one stored event.
pub fn entry_of(event: &RecordedEvent) -> TimelineEntry {
    entry(
        event.version(),
        event.position(),
        &event.id().to_string(),
        event.timestamp_us(),
        event.event_type(),
        event.data(),
        event.metadata(),
    )
}

/// The timeline entry of an event given by its parts (pure: used by [`entry_of`] and tests).
pub fn entry(
    version: u64,
    position: u64,
    event_id: &str,
    timestamp_us: i64,
    event_type: &str,
    data: &[u8],
    metadata: &[u8],
) -> TimelineEntry {
    let data = json_or_text(data);
    let metadata = json_or_text(metadata);
    TimelineEntry {
        version,
        position,
        event_id: event_id.to_string(),
        timestamp_us,
        at: time::rfc3339(timestamp_us),
        time: time::hms(timestamp_us),
        event_type: clean(event_type),
        summary: summary(event_type, &data),
        actor: actor(&metadata),
        data,
        metadata,
    }
}

fn json_or_text(bytes: &[u8]) -> serde_json::Value {
    if bytes.is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_slice(bytes).unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(bytes).into()))
}

/// Control characters removed and long values cut, so a line stays one readable line.
fn clean(text: &str) -> String {
    let mut out: String = text.chars().filter(|c| !c.is_control()).take(MAX_DETAIL_CHARS).collect();
    if text.chars().filter(|c| !c.is_control()).count() > MAX_DETAIL_CHARS {
        out.push('…');
    }
    out
}

fn quoted(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => serde_json::to_string(&clean(s)).ok(),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Null => None,
        other => serde_json::to_string(&clean(&other.to_string())).ok(),
    }
}

fn money(value: &serde_json::Value) -> Option<String> {
    let money: Money = serde_json::from_value(value.clone()).ok()?;
    serde_json::to_string(&clean(&money.to_string())).ok()
}

/// `{ label: value, ... }` from the data fields each event type shows.
fn summary(event_type: &str, data: &serde_json::Value) -> String {
    // (label, data field, is money)
    let fields: &[(&str, &str, bool)] = match event_type {
        et::ITEM_ADDED => {
            &[("product", "product_id", false), ("qty", "quantity", false), ("unit_price", "unit_price", true)]
        }
        et::ITEM_REMOVED => &[("product", "product_id", false), ("qty", "quantity", false)],
        et::PAYMENT_CONFIRMED => {
            &[("gateway", "gateway", false), ("txn", "transaction_id", false), ("amount", "amount", true)]
        }
        et::PAYMENT_FAILED | et::DELIVERY_FAILED | et::ORDER_CANCELLED => &[("reason", "reason", false)],
        et::ITEM_CANCELLED => &[("product", "product_id", false), ("reason", "reason", false)],
        et::STATUS_UPDATED => &[("to", "to", false)],
        et::SHIPPED => &[("tracking", "tracking", false)],
        et::REFUND_ISSUED => &[("amount", "amount", true)],
        _ => &[],
    };
    let parts: Vec<String> = fields
        .iter()
        .filter_map(|(label, field, is_money)| {
            let value = data.get(field)?;
            let shown = if *is_money { money(value) } else { quoted(value) }?;
            Some(format!("{label}: {shown}"))
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{ {} }}", parts.join(", "))
    }
}

/// `customer`; `admin:<actor_id>` / `agent:<actor_id>`; `system via <user_agent>`.
fn actor(metadata: &serde_json::Value) -> String {
    let text = |key: &str| metadata.get(key).and_then(|v| v.as_str()).map(clean).filter(|s| !s.is_empty());
    let Some(actor) = text("actor") else {
        return String::new();
    };
    let mut shown = actor.clone();
    if actor == "admin" || actor == "agent" {
        if let Some(id) = text("actor_id") {
            shown = format!("{actor}:{id}");
        }
    }
    if actor == "system" {
        if let Some(agent) = text("user_agent") {
            shown = format!("{actor} via {agent}");
        }
    }
    shown
}
