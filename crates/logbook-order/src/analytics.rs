//! Analytics over the order events of `$all`: the cart-to-order conversion per
//! retailer, drop-off per funnel stage, the most common event types, events per hour and per
//! day, and the funnel by day (what each day of traffic did at each stage).
//!
//! Each function is one sequential pass over `$all` (category `order`) through
//! [`Store::scan_all`], a page at a time: memory is bounded by the number of retailers,
//! event types, and hours/days in the data, never by the number of events or orders. Each
//! order has at most one event of each funnel stage (the state machine guarantees it), so
//! counting stage events counts orders, like the seed's `COUNT(DISTINCT order_id)`.
//!
//! The retailer of an event is its metadata's `retailer_id` (the tenant). The window is on
//! event time: `since_us <= timestamp < until_us`, like the seed's `created_at > NOW() - 30 days`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;

use crate::event_types as et;
use crate::CATEGORY;
use logbook::time;
use logbook::Result;
use logbook::Store;
use logbook::{Filter, RecordedEvent};

/// The retailer shown for events whose metadata names none.
pub const UNKNOWN_RETAILER: &str = "(unknown)";

/// The funnel stages, in order: (stage name, the event that marks reaching it).
pub const STAGES: [(&str, &str); 7] = [
    ("cart", et::CART_CREATED),
    ("checkout", et::CHECKOUT_STARTED),
    ("paid", et::PAYMENT_CONFIRMED),
    ("placed", et::ORDER_PLACED),
    ("processing", et::STATUS_UPDATED),
    ("shipped", et::SHIPPED),
    ("delivered", et::DELIVERED),
];

/// Ways out of the happy path, counted beside the stages.
pub const EXITS: [&str; 5] =
    [et::PAYMENT_FAILED, et::ITEM_CANCELLED, et::DELIVERY_FAILED, et::ORDER_CANCELLED, et::REFUND_ISSUED];

/// Which events an analysis looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Query {
    /// Only events at or after this instant (microseconds since the epoch, UTC).
    pub since_us: Option<i64>,
    /// Only events before this instant.
    pub until_us: Option<i64>,
    /// Only events of this retailer.
    pub retailer: Option<String>,
    /// Which order streams: the un-namespaced ones (the CLI's, the default), one tenant's
    /// namespace, or every order stream of every namespace (the console's admin).
    pub scope: Scope,
}

/// The order streams an analysis reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub enum Scope {
    /// `order-...`: streams outside any tenant's namespace.
    #[default]
    Unnamespaced,
    /// `<prefix>order-...`: one tenant's orders (`prefix` is its namespace prefix, `acme:`).
    Namespace(String),
    /// `order-...` and `<tenant>:order-...` alike.
    Everywhere,
}

impl Scope {
    fn filter(&self) -> Filter {
        match self {
            Scope::Unnamespaced => Filter::category(CATEGORY),
            Scope::Namespace(prefix) => Filter::stream_prefix(format!("{prefix}{CATEGORY}-")),
            Scope::Everywhere => Filter::all(),
        }
    }

    /// True when `stream` is an order stream of this scope (the filter alone is not enough
    /// for [`Scope::Everywhere`]).
    fn holds(&self, stream: &str) -> bool {
        match self {
            Scope::Everywhere => {
                logbook::category_of(stream) == CATEGORY
                    || stream.split_once(':').is_some_and(|(_, local)| logbook::category_of(local) == CATEGORY)
            }
            _ => true,
        }
    }
}

impl Query {
    pub fn all() -> Self {
        Query::default()
    }
    /// The last `days` days up to now (the seed's "last 30 days").
    pub fn last_days(days: i64) -> Self {
        Query { since_us: Some(time::now_us() - days * time::DAY_US), ..Query::default() }
    }
    pub fn for_retailer(mut self, retailer: &str) -> Self {
        self.retailer = Some(retailer.to_string());
        self
    }
    fn in_window(&self, timestamp_us: i64) -> bool {
        self.since_us.is_none_or(|s| timestamp_us >= s) && self.until_us.is_none_or(|u| timestamp_us < u)
    }
}

/// Counts of one retailer (or of everything): events per funnel stage and per exit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StageCounts {
    /// Indexed like [`STAGES`].
    pub stages: [u64; STAGES.len()],
    /// Indexed like [`EXITS`].
    pub exits: [u64; EXITS.len()],
}

impl StageCounts {
    fn add(&mut self, event_type: &str) {
        if let Some(i) = STAGES.iter().position(|(_, t)| *t == event_type) {
            self.stages[i] += 1;
        } else if let Some(i) = EXITS.iter().position(|t| *t == event_type) {
            self.exits[i] += 1;
        }
    }
}

/// The seed's conversion row: carts, orders, conversion % (one decimal; `None` without carts).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conversion {
    pub retailer_id: String,
    pub carts: u64,
    pub orders: u64,
    pub conversion_pct: Option<f64>,
}

/// One stage of the funnel.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    pub stage: String,
    pub event_type: String,
    pub orders: u64,
    /// Share of carts reaching this stage, one decimal.
    pub pct_of_carts: Option<f64>,
    /// Orders lost since the previous stage (0 for the first stage).
    pub drop_off: u64,
    /// Share of the previous stage lost, one decimal.
    pub drop_off_pct: Option<f64>,
}

/// The funnel of one retailer or of all.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Funnel {
    /// `None`: every retailer together.
    pub retailer_id: Option<String>,
    pub stages: Vec<Stage>,
    /// Exit event type -> count.
    pub exits: BTreeMap<String, u64>,
}

/// How many events of one type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TypeCount {
    pub event_type: String,
    pub events: u64,
}

/// Events in one hour or day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BucketCount {
    /// Start of the bucket, RFC 3339 UTC.
    pub start: String,
    pub start_us: i64,
    pub events: u64,
}

/// One UTC day of the funnel: the events of each stage and exit stored that day (an order's
/// cart and its delivery are counted on their own days).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayFunnel {
    /// `2026-11-03`.
    pub date: String,
    pub start_us: i64,
    /// Order events that day.
    pub events: u64,
    pub carts: u64,
    pub checkouts: u64,
    pub paid: u64,
    pub shipped: u64,
    pub delivered: u64,
    /// PAYMENT_FAILED and DELIVERY_FAILED.
    pub failed: u64,
    pub cancelled: u64,
    pub refunds: u64,
}

/// Everything, from one pass.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub query: Query,
    /// Order events in the window (and of the retailer, if one was asked for).
    pub events: u64,
    /// Sorted like the seed's SQL: by conversion %, lowest first (no carts last).
    pub conversion: Vec<Conversion>,
    /// Every retailer together (or the one asked for).
    pub funnel: Funnel,
    /// Per retailer.
    pub funnels: Vec<Funnel>,
    /// Most common first.
    pub event_types: Vec<TypeCount>,
    pub per_hour: Vec<BucketCount>,
    pub per_day: Vec<BucketCount>,
    /// In time order (only days with events).
    pub funnel_by_day: Vec<DayFunnel>,
}

/// The running totals of one pass: bounded by retailers, types, hours and days.
#[derive(Debug, Default)]
struct Totals {
    events: u64,
    retailers: BTreeMap<String, StageCounts>,
    all: StageCounts,
    types: BTreeMap<String, u64>,
    hours: BTreeMap<i64, u64>,
    days: BTreeMap<i64, u64>,
    day_stages: BTreeMap<i64, StageCounts>,
}

#[derive(serde::Deserialize)]
struct RetailerOnly<'a> {
    #[serde(borrow, default)]
    retailer_id: Option<Cow<'a, str>>,
}

fn retailer_of(metadata: &[u8]) -> Cow<'_, str> {
    serde_json::from_slice::<RetailerOnly<'_>>(metadata)
        .ok()
        .and_then(|m| m.retailer_id)
        .unwrap_or(Cow::Borrowed(UNKNOWN_RETAILER))
}

fn is_counted(event_type: &str) -> bool {
    STAGES.iter().any(|(_, t)| *t == event_type) || EXITS.contains(&event_type)
}

impl Totals {
    fn add(&mut self, query: &Query, event: &RecordedEvent) {
        let ts = event.timestamp_us();
        if !query.in_window(ts) {
            return;
        }
        let event_type = event.event_type();
        let counted = is_counted(event_type);
        // Metadata is parsed only when the retailer matters for this event.
        let retailer = (counted || query.retailer.is_some()).then(|| retailer_of(event.metadata()));
        if let (Some(wanted), Some(retailer)) = (&query.retailer, &retailer) {
            if wanted != retailer {
                return;
            }
        }
        self.events += 1;
        if let Some(count) = self.types.get_mut(event_type) {
            *count += 1;
        } else {
            self.types.insert(event_type.to_string(), 1);
        }
        *self.hours.entry(time::hour_start(ts)).or_insert(0) += 1;
        *self.days.entry(time::day_start(ts)).or_insert(0) += 1;
        if let (true, Some(retailer)) = (counted, retailer) {
            self.all.add(event_type);
            self.day_stages.entry(time::day_start(ts)).or_default().add(event_type);
            if let Some(counts) = self.retailers.get_mut(retailer.as_ref()) {
                counts.add(event_type);
            } else {
                let mut counts = StageCounts::default();
                counts.add(event_type);
                self.retailers.insert(retailer.into_owned(), counts);
            }
        }
    }
}

/// One pass over the order events of `$all`.
fn scan(store: &Store, query: &Query) -> Result<Totals> {
    let mut totals = Totals::default();
    // The pass covers the log as it was when it started; later appends are left out.
    for event in store.scan_all(1, query.scope.filter()) {
        let event = event?;
        if query.scope.holds(event.stream()) {
            totals.add(query, &event);
        }
    }
    Ok(totals)
}

fn pct(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| (part as f64 * 1000.0 / whole as f64).round() / 10.0)
}

fn conversion_of(retailer: &str, counts: &StageCounts) -> Conversion {
    let (carts, orders) = (counts.stages[0], counts.stages[3]);
    Conversion { retailer_id: retailer.to_string(), carts, orders, conversion_pct: pct(orders, carts) }
}

fn funnel_of(retailer: Option<&str>, counts: &StageCounts) -> Funnel {
    let carts = counts.stages[0];
    let stages = STAGES
        .iter()
        .enumerate()
        .map(|(i, (stage, event_type))| {
            let orders = counts.stages[i];
            let previous = if i == 0 { orders } else { counts.stages[i - 1] };
            let drop_off = previous.saturating_sub(orders);
            Stage {
                stage: (*stage).to_string(),
                event_type: (*event_type).to_string(),
                orders,
                pct_of_carts: pct(orders, carts),
                drop_off,
                drop_off_pct: if i == 0 { None } else { pct(drop_off, previous) },
            }
        })
        .collect();
    let exits = EXITS.iter().zip(counts.exits).map(|(t, n)| ((*t).to_string(), n)).collect();
    Funnel { retailer_id: retailer.map(str::to_string), stages, exits }
}

fn buckets(map: &BTreeMap<i64, u64>) -> Vec<BucketCount> {
    map.iter().map(|(&start_us, &events)| BucketCount { start: time::rfc3339(start_us), start_us, events }).collect()
}

impl Totals {
    fn conversion(&self) -> Vec<Conversion> {
        let mut rows: Vec<Conversion> = self.retailers.iter().map(|(r, c)| conversion_of(r, c)).collect();
        // ORDER BY conversion_pct (NULLs last, as PostgreSQL sorts ascending), then retailer.
        rows.sort_by(|a, b| match (a.conversion_pct, b.conversion_pct) {
            (Some(x), Some(y)) => x.total_cmp(&y).then_with(|| a.retailer_id.cmp(&b.retailer_id)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.retailer_id.cmp(&b.retailer_id),
        });
        rows
    }

    fn event_types(&self) -> Vec<TypeCount> {
        let mut rows: Vec<TypeCount> =
            self.types.iter().map(|(t, &n)| TypeCount { event_type: t.clone(), events: n }).collect();
        rows.sort_by(|a, b| b.events.cmp(&a.events).then_with(|| a.event_type.cmp(&b.event_type)));
        rows
    }

    fn funnel_by_day(&self) -> Vec<DayFunnel> {
        let stage = |name: &str| STAGES.iter().position(|(s, _)| *s == name).unwrap_or(0);
        let exit = |event_type: &str| EXITS.iter().position(|t| *t == event_type).unwrap_or(0);
        let none = StageCounts::default();
        self.days
            .iter()
            .map(|(&start_us, &events)| {
                let c = self.day_stages.get(&start_us).unwrap_or(&none);
                DayFunnel {
                    date: time::date(start_us),
                    start_us,
                    events,
                    carts: c.stages[stage("cart")],
                    checkouts: c.stages[stage("checkout")],
                    paid: c.stages[stage("paid")],
                    shipped: c.stages[stage("shipped")],
                    delivered: c.stages[stage("delivered")],
                    failed: c.exits[exit(et::PAYMENT_FAILED)] + c.exits[exit(et::DELIVERY_FAILED)],
                    cancelled: c.exits[exit(et::ORDER_CANCELLED)],
                    refunds: c.exits[exit(et::REFUND_ISSUED)],
                }
            })
            .collect()
    }

    fn report(self, query: &Query) -> Report {
        Report {
            query: query.clone(),
            events: self.events,
            conversion: self.conversion(),
            funnel: funnel_of(query.retailer.as_deref(), &self.all),
            funnels: self.retailers.iter().map(|(r, c)| funnel_of(Some(r), c)).collect(),
            event_types: self.event_types(),
            per_hour: buckets(&self.hours),
            per_day: buckets(&self.days),
            funnel_by_day: self.funnel_by_day(),
        }
    }
}

/// Cart-to-order conversion per retailer, lowest conversion first.
pub fn conversion(store: &Store, query: &Query) -> Result<Vec<Conversion>> {
    Ok(scan(store, query)?.conversion())
}

/// The funnel with drop-off per stage, for `query.retailer` or for every retailer together.
pub fn funnel(store: &Store, query: &Query) -> Result<Funnel> {
    Ok(funnel_of(query.retailer.as_deref(), &scan(store, query)?.all))
}

/// Event types by count, most common first.
pub fn event_types(store: &Store, query: &Query) -> Result<Vec<TypeCount>> {
    Ok(scan(store, query)?.event_types())
}

/// Size of the buckets of [`activity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Bucket {
    Hour,
    Day,
}

/// Events per UTC hour or day, in time order (only buckets with events).
pub fn activity(store: &Store, query: &Query, bucket: Bucket) -> Result<Vec<BucketCount>> {
    let totals = scan(store, query)?;
    Ok(buckets(match bucket {
        Bucket::Hour => &totals.hours,
        Bucket::Day => &totals.days,
    }))
}

/// Every analysis at once, from a single pass.
pub fn report(store: &Store, query: &Query) -> Result<Report> {
    Ok(scan(store, query)?.report(query))
}

fn pct_text(p: Option<f64>) -> String {
    p.map_or_else(|| "-".to_string(), |p| format!("{p:.1}"))
}

/// Renders rows as a text table: header, rule, rows; the first `left_columns` columns
/// left-aligned (text), the rest right-aligned (numbers).
pub fn table(header: &[&str], rows: &[Vec<String>], left_columns: usize) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(widths.len()) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let render = |cells: Vec<&str>| {
        let parts: Vec<String> =
            cells
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i < left_columns {
                        format!("{c:<w$}", w = widths[i])
                    } else {
                        format!("{c:>w$}", w = widths[i])
                    }
                })
                .collect();
        format!("{}\n", parts.join("  ").trim_end())
    };
    let mut out = render(header.to_vec());
    out.push_str(&render(
        widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().iter().map(String::as_str).collect(),
    ));
    for row in rows {
        out.push_str(&render(row.iter().map(String::as_str).collect()));
    }
    out
}

/// The seed's conversion table.
pub fn conversion_text(rows: &[Conversion]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| vec![r.retailer_id.clone(), r.carts.to_string(), r.orders.to_string(), pct_text(r.conversion_pct)])
        .collect();
    table(&["retailer_id", "carts", "orders", "conversion_pct"], &rows, 1)
}

/// The funnel table with drop-off, then the exits.
pub fn funnel_text(funnel: &Funnel) -> String {
    let rows: Vec<Vec<String>> = funnel
        .stages
        .iter()
        .map(|s| {
            let drop = match s.drop_off_pct {
                Some(p) => format!("{} ({p:.1}%)", s.drop_off),
                None => "-".to_string(),
            };
            vec![s.stage.clone(), s.event_type.clone(), s.orders.to_string(), pct_text(s.pct_of_carts), drop]
        })
        .collect();
    let title = match &funnel.retailer_id {
        Some(r) => format!("funnel of {r}\n"),
        None => "funnel, all retailers\n".to_string(),
    };
    let exits: Vec<String> = funnel.exits.iter().map(|(t, n)| format!("{t} {n}")).collect();
    format!(
        "{title}{}exits: {}\n",
        table(&["stage", "event", "orders", "% of carts", "drop-off"], &rows, 2),
        exits.join(", ")
    )
}

/// Event types table.
pub fn event_types_text(rows: &[TypeCount]) -> String {
    let rows: Vec<Vec<String>> = rows.iter().map(|r| vec![r.event_type.clone(), r.events.to_string()]).collect();
    table(&["event_type", "events"], &rows, 1)
}

/// The funnel-by-day table.
pub fn funnel_by_day_text(rows: &[DayFunnel]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|d| {
            let counts =
                [d.events, d.carts, d.checkouts, d.paid, d.shipped, d.delivered, d.failed, d.cancelled, d.refunds];
            std::iter::once(d.date.clone()).chain(counts.iter().map(u64::to_string)).collect()
        })
        .collect();
    let header =
        ["day", "events", "carts", "checkouts", "paid", "shipped", "delivered", "failed", "cancelled", "refunds"];
    table(&header, &rows, 1)
}

/// Buckets table.
pub fn activity_text(rows: &[BucketCount]) -> String {
    let rows: Vec<Vec<String>> = rows.iter().map(|r| vec![r.start.clone(), r.events.to_string()]).collect();
    table(&["bucket_start_utc", "events"], &rows, 1)
}

impl Report {
    /// All sections as text tables.
    pub fn to_text(&self) -> String {
        format!(
            "{} order events\n\ncart-to-order conversion by retailer\n{}\n{}\nmost common event types\n{}\nfunnel by day (UTC)\n{}",
            self.events,
            conversion_text(&self.conversion),
            funnel_text(&self.funnel),
            event_types_text(&self.event_types),
            funnel_by_day_text(&self.funnel_by_day),
        )
    }
}
