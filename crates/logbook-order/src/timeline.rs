//! The support view of an order: one readable line per event, what a support agent answering
//! "where is my order?" reads.
//!
//! ```text
//! 10:04:18 — PAYMENT_CONFIRMED { gateway: "stripe", txn: "pi_xxx", amount: "39.98 EUR" } (system)
//! ```
//!
//! Times are UTC. The timeline shows events exactly as stored (no upcasting: it is an audit
//! trail), so it works on any order stream, including events the state machine would refuse.

use serde::Serialize;

use crate::{event_types as et, order_id_of, stream_name, Money};
use logbook::time;
use logbook::Result;
use logbook::Store;
use logbook::{Direction, RecordedEvent};

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

impl TimelineEntry {
    /// The seed's line: `10:04:18 — PAYMENT_CONFIRMED { gateway: "stripe", txn: "pi_xxx" } (system)`.
    pub fn line(&self) -> String {
        let mut line = format!("{} — {}", self.time, self.event_type);
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

/// An order's timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timeline {
    pub order_id: String,
    pub stream: String,
    pub entries: Vec<TimelineEntry>,
    /// True when the stream has more than [`MAX_TIMELINE_EVENTS`] events (only the first are shown).
    pub truncated: bool,
}

impl Timeline {
    /// The text form: a heading, then one line per event, with a date line whenever the UTC
    /// day changes.
    pub fn to_text(&self) -> String {
        let mut out = format!("order {} ({} events, times in UTC)\n", self.order_id, self.entries.len());
        if self.entries.is_empty() {
            out.push_str("no events\n");
        }
        let mut day = String::new();
        for entry in &self.entries {
            let entry_day = time::date(entry.timestamp_us);
            if entry_day != day {
                out.push_str(&format!("{entry_day}\n"));
                day = entry_day;
            }
            out.push_str(&entry.line());
            out.push('\n');
        }
        if self.truncated {
            out.push_str(&format!("… truncated after {MAX_TIMELINE_EVENTS} events\n"));
        }
        out
    }

    /// The JSON form (pretty-printed).
    pub fn to_json(&self) -> String {
        // A Timeline is strings, integers and serde_json values: serializing it cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// The timeline of an order. `order` is an order id (`6f1c…`) or an order stream name
/// (`order-6f1c…`). An order with no events gives an empty timeline.
pub fn timeline(store: &Store, order: &str) -> Result<Timeline> {
    let (order_id, stream) = match order_id_of(order) {
        Some(id) => (id.to_string(), order.to_string()),
        None => (order.to_string(), stream_name(order)),
    };
    timeline_of_stream(store, &order_id, &stream)
}

/// The timeline of the order `order_id` stored in `stream` (for callers that store orders
/// under another name, such as a tenant's namespace in the daemon).
pub fn timeline_of_stream(store: &Store, order_id: &str, stream: &str) -> Result<Timeline> {
    let (order_id, stream) = (order_id.to_string(), stream.to_string());
    let mut entries = Vec::new();
    let mut truncated = false;
    loop {
        let page = store.read_stream(&stream, entries.len() as u64 + 1, 1024, Direction::Forward)?;
        if page.is_empty() {
            break;
        }
        for event in &page {
            if entries.len() == MAX_TIMELINE_EVENTS {
                truncated = true;
                break;
            }
            entries.push(entry_of(event));
        }
        if truncated {
            break;
        }
    }
    Ok(Timeline { order_id, stream, entries, truncated })
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
