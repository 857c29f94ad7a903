//! The order lifecycle's pages of the daemon's web console (an extension of logbook-server):
//! `Order` (an order's timeline, found by id or a unique prefix) and `Funnel` (cart-to-order
//! conversion per retailer and drop-off per stage over the last 7, 30 or 90 days).
//!
//! - `GET /api/order?id=<id or prefix>&from=<version>`: the
//!   [`Timeline`] as JSON (the stream named as the caller names it),
//!   its status with the carrier when the SHIPPED event names one, and `steps`: the time
//!   between the lifecycle's milestones (`shipped 2 d 4 h after payment`). `entries` starts at
//!   version `from` (default 1) and stops at `limits.max_reply_bytes` of event data (at least
//!   one); `next` is the version to ask for next, null at the end. 404 `NO_SUCH_ORDER`, 409
//!   `AMBIGUOUS_ORDER`.
//! - `GET /api/funnel?days=<1..=366>` (default 30): the conversion rows, the funnel of every
//!   retailer together and per retailer, for the caller's orders (a tenant's namespace; the
//!   admin's: every order stream).
//!
//! The pages' scripts (`console/order.js`, `console/funnel.js`) render with `textContent` only.

use logbook::{Namespace, Store, MAX_STREAM_NAME_BYTES};
use logbook_server::{stored_stream_name, ApiError, ApiLimits, ApiQuery, ConsoleExtension, ConsolePage};
use serde_json::{json, Value as Json};

use crate::analytics::{self, Query, Scope};
use crate::event_types as et;
use crate::timeline::{self, Timeline, TimelineError};
use crate::{order_id_of, stream_name};

/// Most days a funnel looks back.
pub const MAX_FUNNEL_DAYS: u64 = 366;

const PAGES: &[ConsolePage] = &[
    ConsolePage { id: "order", title: "Order", script: include_str!("../console/order.js") },
    ConsolePage { id: "funnel", title: "Funnel", script: include_str!("../console/funnel.js") },
];

/// The order pages of the console.
#[derive(Debug, Default)]
pub struct OrderConsole;

impl ConsoleExtension for OrderConsole {
    fn pages(&self) -> &'static [ConsolePage] {
        PAGES
    }

    fn api(
        &self,
        store: &Store,
        namespace: Option<&Namespace>,
        page: &str,
        query: &ApiQuery,
        limits: &ApiLimits,
    ) -> Result<Json, ApiError> {
        match page {
            "order" => order(store, namespace, query, limits),
            "funnel" => funnel(store, namespace, query),
            _ => Err(ApiError::not_found("no such page")),
        }
    }
}

fn order(store: &Store, namespace: Option<&Namespace>, query: &ApiQuery, limits: &ApiLimits) -> Result<Json, ApiError> {
    let given = query.get("id").unwrap_or("").trim();
    let from = query.integer("from", 1, 1, u64::MAX)?;
    // The admin names a tenant's order by its stored name: `acme:order-7f3a` (or `acme:7f3a`).
    let (tenant, given) = match (namespace, given.split_once(':')) {
        (None, Some((tenant, rest))) => (Some(tenant), rest),
        _ => (None, given),
    };
    let id = order_id_of(given).unwrap_or(given);
    if id.is_empty() {
        return Err(ApiError::bad_request("id (an order id, or a prefix only one order has) is required"));
    }
    if id.len() > MAX_STREAM_NAME_BYTES {
        return Err(ApiError::bad_request(format!("id is over {MAX_STREAM_NAME_BYTES} bytes")));
    }
    let wanted = match tenant {
        Some(tenant) => format!("{tenant}:{}", stream_name(id)),
        None => stream_name(id),
    };
    let stored = stored_stream_name(namespace, &wanted).map_err(|reply| {
        let text = match reply {
            logbook_protocol::Value::Error(text) => text,
            _ => "bad order id".to_string(),
        };
        ApiError::bad_request(text.split_once(' ').map_or(text.as_str(), |(_, m)| m).to_string())
    })?;
    let stored = match timeline::find_order(store, id, &stored) {
        Ok(found) => found,
        Err(TimelineError::Store(err)) => return Err(ApiError::store(&err)),
        Err(err @ TimelineError::NoSuchOrder(_)) => return Err(ApiError::new(404, "NO_SUCH_ORDER", err.to_string())),
        Err(err @ TimelineError::Ambiguous { .. }) => {
            return Err(ApiError::new(409, "AMBIGUOUS_ORDER", err.to_string()))
        }
        Err(err) => return Err(ApiError::bad_request(err.to_string())),
    };
    // The stream as the caller names it; the order id is what follows `order-` in it.
    let local = namespace.map_or(Some(stored.as_str()), |ns| ns.local_name(&stored)).unwrap_or(&stored).to_string();
    let unprefixed = if tenant.is_some() { local.split_once(':').map_or(local.as_str(), |(_, l)| l) } else { &local };
    let full_id = order_id_of(unprefixed).unwrap_or(id).to_string();
    let page = timeline::timeline_page(store, &full_id, &stored, from, limits.max_reply_bytes)
        .map_err(|e| ApiError::store(&e))?;
    let mut reply = order_json(page.timeline, &page.first_at, page.carrier, &local);
    if let Some(object) = reply.as_object_mut() {
        object.insert("next".into(), json!(page.next));
    }
    Ok(reply)
}

/// The timeline as the API shows it: the stream as the caller names it, the carrier and the
/// milestones' steps (from `first_at`: every event's, not only this page's) added.
fn order_json(timeline: Timeline, first_at: &[(String, i64)], carrier: Option<String>, local_stream: &str) -> Json {
    let steps = steps(first_at);
    let mut value = serde_json::to_value(&timeline).unwrap_or(Json::Null);
    if let Some(object) = value.as_object_mut() {
        object.insert("stream".into(), json!(local_stream));
        if let Some(status) = object.get_mut("status").and_then(Json::as_object_mut) {
            status.insert("carrier".into(), json!(carrier));
        }
        object.insert("steps".into(), json!(steps));
    }
    value
}

/// The lifecycle's milestones: (event, what it is called, the event it is timed from, what
/// that one is called).
const MILESTONES: [(&str, &str, &str, &str); 7] = [
    (et::CHECKOUT_STARTED, "checked out", et::CART_CREATED, "the cart was created"),
    (et::PAYMENT_CONFIRMED, "paid", et::CHECKOUT_STARTED, "checkout"),
    (et::ORDER_PLACED, "placed", et::PAYMENT_CONFIRMED, "payment"),
    (et::SHIPPED, "shipped", et::PAYMENT_CONFIRMED, "payment"),
    (et::DELIVERED, "delivered", et::SHIPPED, "shipping"),
    (et::ORDER_CANCELLED, "cancelled", et::CART_CREATED, "the cart was created"),
    (et::REFUND_ISSUED, "refunded", et::PAYMENT_CONFIRMED, "payment"),
];

/// `{"event_type", "after_us", "text": "shipped 2 d 4 h after payment"}` for each milestone the
/// order reached after the one it is timed from (the first of each kind).
fn steps(first_at: &[(String, i64)]) -> Vec<Json> {
    let first = |event_type: &str| first_at.iter().find(|(t, _)| t == event_type).map(|(_, at)| *at);
    let mut steps: Vec<(i64, Json)> = MILESTONES
        .iter()
        .filter_map(|(event, name, from, from_name)| {
            let (at, since) = (first(event)?, first(from)?);
            let after = at.checked_sub(since).filter(|d| *d >= 0)?;
            let text = format!("{name} {} after {from_name}", duration(after));
            Some((at, json!({ "event_type": event, "after_us": after, "text": text })))
        })
        .collect();
    steps.sort_by_key(|(at, _)| *at);
    steps.into_iter().map(|(_, step)| step).collect()
}

/// `2 d 4 h`, `3 h 12 min`, `5 min 3 s`, `42 s` (the console's script writes the same).
pub fn duration(micros: i64) -> String {
    let mut s = (micros.max(0) + 500_000) / 1_000_000;
    let d = s / 86_400;
    s -= d * 86_400;
    let h = s / 3600;
    s -= h * 3600;
    let m = s / 60;
    s -= m * 60;
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, _) if s > 0 => format!("{m} min {s} s"),
        (0, 0, _) => format!("{m} min"),
        (0, _, 0) => format!("{h} h"),
        (0, _, _) => format!("{h} h {m} min"),
        (_, 0, _) => format!("{d} d"),
        _ => format!("{d} d {h} h"),
    }
}

fn funnel(store: &Store, namespace: Option<&Namespace>, query: &ApiQuery) -> Result<Json, ApiError> {
    let days = query.integer("days", 30, 1, MAX_FUNNEL_DAYS)?;
    let scope = match namespace {
        Some(ns) => Scope::Namespace(ns.prefix().to_string()),
        None => Scope::Everywhere,
    };
    let since_us = store.now_us() - days as i64 * logbook::time::DAY_US;
    let query = Query { since_us: Some(since_us), scope, ..Query::all() };
    let report = analytics::report(store, &query).map_err(|e| ApiError::store(&e))?;
    Ok(json!({
        "days": days,
        "since": logbook::time::rfc3339(since_us),
        "events": report.events,
        "conversion": report.conversion,
        "funnel": report.funnel,
        "funnels": report.funnels,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_the_page() {
        let s = 1_000_000;
        assert_eq!(duration(42 * s), "42 s");
        assert_eq!(duration((5 * 60 + 3) * s), "5 min 3 s");
        assert_eq!(duration(5 * 60 * s), "5 min");
        assert_eq!(duration((3 * 3600 + 12 * 60) * s), "3 h 12 min");
        assert_eq!(duration(3 * 3600 * s), "3 h");
        assert_eq!(duration((2 * 86_400 + 4 * 3600 + 59) * s), "2 d 4 h");
        assert_eq!(duration(86_400 * s), "1 d");
        assert_eq!(duration(-5), "0 s");
    }

    fn store_with(events: &[(&str, &str, &str, i64)]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), logbook::Options::default()).unwrap();
        for (stream, event_type, data, at) in events {
            let event = logbook::NewEvent::new(*event_type, data.as_bytes().to_vec()).at(*at);
            store.append(stream, logbook::ExpectedVersion::Any, vec![event]).unwrap();
        }
        (dir, store)
    }

    fn ask(store: &Store, namespace: Option<&Namespace>, page: &str, query: &str) -> Result<Json, ApiError> {
        let limits = ApiLimits { max_reply_bytes: 4 << 20 };
        OrderConsole.api(store, namespace, page, &ApiQuery::parse(query).unwrap(), &limits)
    }

    #[test]
    fn an_order_by_prefix_with_its_steps_and_a_tenant_confined_to_its_namespace() {
        let t0 = logbook::time::now_us() - 10 * logbook::time::DAY_US;
        let hour = logbook::time::HOUR_US;
        let (_dir, store) = store_with(&[
            ("acme:order-7f3a", et::CART_CREATED, r#"{"retailer_id":"acme","customer_id":"c","currency":"EUR"}"#, t0),
            ("acme:order-7f3a", et::CHECKOUT_STARTED, "{}", t0 + hour),
            ("acme:order-7f3a", et::PAYMENT_CONFIRMED, r#"{"transaction_id":"t","gateway":"g"}"#, t0 + 2 * hour),
            ("acme:order-7f3a", et::SHIPPED, r#"{"tracking":"TR1","carrier":"DHL"}"#, t0 + 54 * hour),
            ("globex:order-9b", et::CART_CREATED, "{}", t0),
        ]);
        let acme = Namespace::new("acme").unwrap();
        let reply = ask(&store, Some(&acme), "order", "id=7f").unwrap();
        assert_eq!(reply["order_id"], "7f3a");
        assert_eq!(reply["stream"], "order-7f3a", "the namespace is not shown");
        assert_eq!(reply["status"]["tracking"], "TR1");
        assert_eq!(reply["status"]["carrier"], "DHL");
        let steps: Vec<&str> = reply["steps"].as_array().unwrap().iter().map(|s| s["text"].as_str().unwrap()).collect();
        assert_eq!(
            steps,
            ["checked out 1 h after the cart was created", "paid 1 h after checkout", "shipped 2 d 4 h after payment"]
        );
        assert_eq!(reply["entries"].as_array().unwrap().len(), 4);
        // Another tenant's order is not found, by id or by prefix.
        for id in ["9b", "9", "globex:order-9b"] {
            let err = ask(&store, Some(&acme), "order", &format!("id={id}")).unwrap_err();
            assert_eq!((err.status, err.code), (404, "NO_SUCH_ORDER"), "{id}");
        }
        // The admin sees every order by its stored name.
        assert_eq!(ask(&store, None, "order", "id=globex:order-9b").unwrap()["order_id"], "9b");
        let err = ask(&store, Some(&acme), "order", "id=").unwrap_err();
        assert_eq!(err.status, 400);
    }

    #[test]
    fn every_page_of_an_order_has_the_whole_orders_status_steps_and_carrier() {
        let t0 = logbook::time::now_us() - 10 * logbook::time::DAY_US;
        let hour = logbook::time::HOUR_US;
        let (_dir, store) = store_with(&[
            ("order-7f3a", et::CART_CREATED, r#"{"retailer_id":"r","customer_id":"c","currency":"EUR"}"#, t0),
            ("order-7f3a", et::CHECKOUT_STARTED, "{}", t0 + hour),
            ("order-7f3a", et::PAYMENT_CONFIRMED, r#"{"transaction_id":"t","gateway":"g"}"#, t0 + 2 * hour),
            ("order-7f3a", et::SHIPPED, r#"{"tracking":"TR1","carrier":"DHL"}"#, t0 + 54 * hour),
        ]);
        // A reply bound of one byte: one entry per page.
        let limits = ApiLimits { max_reply_bytes: 1 };
        let mut seen = Vec::new();
        let mut from = 1;
        loop {
            let query = ApiQuery::parse(&format!("id=7f3a&from={from}")).unwrap();
            let page = OrderConsole.api(&store, None, "order", &query, &limits).unwrap();
            assert_eq!(page["entries"].as_array().unwrap().len(), 1);
            seen.push(page["entries"][0]["event_type"].as_str().unwrap().to_string());
            assert_eq!(page["status"]["carrier"], "DHL", "page from {from}");
            assert_eq!(page["steps"].as_array().unwrap().len(), 3, "page from {from}");
            match page["next"].as_u64() {
                Some(next) => from = next,
                None => break,
            }
        }
        assert_eq!(seen, [et::CART_CREATED, et::CHECKOUT_STARTED, et::PAYMENT_CONFIRMED, et::SHIPPED]);
    }

    #[test]
    fn the_funnel_counts_the_callers_orders_in_the_period() {
        let now = logbook::time::now_us();
        let day = logbook::time::DAY_US;
        let meta = |r: &str| format!(r#"{{"retailer_id":"{r}"}}"#);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), logbook::Options::default()).unwrap();
        for (stream, event_type, retailer, at) in [
            ("acme:order-1", et::CART_CREATED, "acme", now - 2 * day),
            ("acme:order-1", et::ORDER_PLACED, "acme", now - 2 * day),
            ("acme:order-2", et::CART_CREATED, "acme", now - 20 * day),
            ("globex:order-3", et::CART_CREATED, "globex", now - 2 * day),
            ("order-4", et::CART_CREATED, "demo", now - 2 * day),
        ] {
            let event = logbook::NewEvent::new(event_type, b"{}".to_vec()).with_metadata(meta(retailer)).at(at);
            store.append(stream, logbook::ExpectedVersion::Any, vec![event]).unwrap();
        }
        let acme = Namespace::new("acme").unwrap();
        let week = ask(&store, Some(&acme), "funnel", "days=7").unwrap();
        assert_eq!(week["funnel"]["stages"][0]["orders"], 1);
        assert_eq!(week["conversion"][0]["retailer_id"], "acme");
        assert_eq!(week["conversion"].as_array().unwrap().len(), 1, "only the tenant's own retailer");
        let month = ask(&store, Some(&acme), "funnel", "days=30").unwrap();
        assert_eq!(month["funnel"]["stages"][0]["orders"], 2);
        let admin = ask(&store, None, "funnel", "days=7").unwrap();
        assert_eq!(admin["funnel"]["stages"][0]["orders"], 3, "every namespace and none");
        assert_eq!(ask(&store, None, "funnel", "days=0").unwrap_err().status, 400);
    }
}
