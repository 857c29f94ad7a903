//! The e-commerce order lifecycle as an event-sourced aggregate (a cart becomes an order, is
//! paid, shipped, delivered, or cancelled and refunded), with its read side: timelines (the
//! support view), analytics over `$all` (funnels), a demo generator, the retention defaults
//! of order data (payments and refunds held 7 years) and, with the `server` feature, the
//! daemon's `TIMELINE` and `ORDER` commands and its web console's Order and Funnel pages.
//!
//! ```text
//! NEW -> CART_CREATED -> CHECKOUT_STARTED -> PAYMENT_CONFIRMED -> ORDER_PLACED -> PROCESSING -> SHIPPED -> DELIVERED
//!                           |                                     |                ^            |
//!                           +-> PAYMENT_FAILED                    +-> PARTIALLY_ --+            +-> DELIVERY_FAILED
//!                                                                     CANCELLED (out of stock)
//! ```
//!
//! plus `ORDER_CANCELLED` from every state before SHIPPED (and from PAYMENT_FAILED and
//! DELIVERY_FAILED), and `REFUND_ISSUED` from every state after a payment. See docs/order.md.
//!
//! Order streams are named `order-<order id>` ([`stream_name`]).

pub mod analytics;
#[cfg(feature = "server")]
mod command;
#[cfg(feature = "server")]
pub mod console;
pub mod demo;
mod model;
pub mod request;
mod retention;
pub mod timeline;

use std::collections::BTreeMap;

#[cfg(feature = "server")]
pub use command::{server_extensions, OrderServerCommand, TimelineCommand};
pub use model::*;
pub use retention::{default_legal_holds, default_retention_policy, DEFAULT_HELD_TYPES, DEFAULT_HOLD_YEARS};

use logbook::{Direction, Error, RecordedEvent, Store};
use logbook_es::aggregate::{self, AggregateError, Repository, SnapshotReport};
use logbook_es::upcast::Upcasters;

/// The category of order streams.
pub const CATEGORY: &str = "order";

/// Errors of order commands and loads.
pub type OrderResult<T> = Result<T, AggregateError<OrderError>>;

/// The stream of an order: `order-<order id>`.
pub fn stream_name(order_id: &str) -> String {
    format!("{CATEGORY}-{order_id}")
}

/// The order id of an order stream (`None` for other streams).
pub fn order_id_of(stream: &str) -> Option<&str> {
    stream.strip_prefix(CATEGORY)?.strip_prefix('-')
}

/// Catalogue prices by product id, used to upcast ITEM_ADDED v1 events (written without a
/// `unit_price`) to v2.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalogue {
    pub prices: BTreeMap<String, Money>,
}

impl Catalogue {
    pub fn new() -> Self {
        Catalogue::default()
    }
    pub fn with(mut self, product_id: &str, price: Money) -> Self {
        self.prices.insert(product_id.to_string(), price);
        self
    }
    /// The products of the demo retailers.
    pub fn demo() -> Self {
        let mut catalogue = Catalogue::new();
        for retailer in demo::RETAILERS {
            for (product, price) in retailer.products {
                catalogue.prices.insert((*product).to_string(), Money::new(*price, retailer.currency));
            }
        }
        catalogue
    }
}

/// The order upcasters: ITEM_ADDED v1 `{product_id, quantity}` becomes v2 with the
/// catalogue's `unit_price` (an unknown product is an error, not a guess).
pub fn upcasters(catalogue: Catalogue) -> Upcasters {
    Upcasters::new().with(event_types::ITEM_ADDED, 1, move |mut data| {
        let Some(object) = data.as_object_mut() else {
            return Err("ITEM_ADDED data is not a JSON object".into());
        };
        if !object.contains_key("unit_price") {
            let product = object.get("product_id").and_then(|p| p.as_str()).ok_or("ITEM_ADDED without product_id")?;
            let price = catalogue.prices.get(product).ok_or_else(|| format!("no catalogue price for {product}"))?;
            let price = serde_json::to_value(price).map_err(|e| e.to_string())?;
            object.insert("unit_price".into(), price);
        }
        Ok(data)
    })
}

/// A repository of orders with the upcasters of `catalogue`.
pub fn repository_with(store: &Store, catalogue: Catalogue) -> Repository<Order> {
    Repository::new(store).with_upcasters(upcasters(catalogue))
}

/// A repository of orders with the demo catalogue's upcasters (what the CLI and daemon use).
pub fn repository(store: &Store) -> Repository<Order> {
    repository_with(store, Catalogue::demo())
}

/// Checks every snapshot of an order stream against a full replay (`logbook verify --snapshots`).
pub fn verify_snapshots(store: &Store) -> Result<SnapshotReport, Error> {
    aggregate::verify_snapshots(&repository(store), |stream| order_id_of(stream).is_some())
}

/// A stored event that the state machine would not have accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{stream} v{version}: {event_type} after {state}: {reason}")]
pub struct HistoryViolation {
    pub stream: String,
    pub version: u64,
    pub event_type: String,
    pub state: OrderStatus,
    pub reason: String,
}

/// Replays `events` (one order's stream, in order) through the aggregate, checking each
/// against the state machine and the domain's rules. Returns the final state, or the first
/// event that breaks a rule or does not decode.
pub fn validate_history(upcasters: &Upcasters, events: &[RecordedEvent]) -> Result<Order, HistoryViolation> {
    let mut order = <Order as aggregate::Aggregate>::initial();
    for recorded in events {
        let violation = |state, reason| HistoryViolation {
            stream: recorded.stream().to_string(),
            version: recorded.version(),
            event_type: recorded.event_type().to_string(),
            state,
            reason,
        };
        let event = aggregate::decode_recorded::<Order>(upcasters, recorded)
            .map_err(|e| violation(order.status, e.to_string()))?;
        if let Err(v) = order.check(&event) {
            let reason = match v {
                Violation::State { allowed } => {
                    let names: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
                    format!("only allowed after {}", names.join(" or "))
                }
                Violation::Rule(reason) | Violation::Argument(reason) => reason,
            };
            return Err(violation(order.status, reason));
        }
        aggregate::Aggregate::apply(&mut order, &event);
    }
    Ok(order)
}

/// Reads the whole stream of `order_id` and validates it ([`validate_history`]).
pub fn validate_order(
    store: &Store,
    upcasters: &Upcasters,
    order_id: &str,
) -> Result<Result<Order, HistoryViolation>, Error> {
    let stream = stream_name(order_id);
    let mut events: Vec<logbook::RecordedEvent> = Vec::new();
    loop {
        // After the last version read: compaction may have removed versions before it.
        let next = events.last().map_or(1, |e| e.version() + 1);
        let page = store.read_stream(&stream, next, 1024, Direction::Forward)?;
        if page.is_empty() {
            break;
        }
        events.extend(page);
    }
    Ok(validate_history(upcasters, &events))
}
