//! TIMELINE <order-id>: the readable audit trail of one order (seed 000), one line per event.
//!
//! Replies an array of strings, oldest first, each like
//! `10:04:18 — PAYMENT_CONFIRMED { gateway: "stripe", txn: "pi_xxx" } (system)` (times UTC).
//! For a tenant the order is looked up in the tenant's own namespace.

use crate::order;
use crate::protocol::Value;
use crate::server::auth::Identity;
use crate::server::Shared;

use super::append::store_error;
use super::store_name;

pub(super) fn timeline(shared: &Shared, who: &Identity, order_id: &str) -> Value {
    let id = order::order_id_of(order_id).unwrap_or(order_id);
    let stored = match store_name(who, &order::stream_name(id)) {
        Ok(stored) => stored,
        Err(reply) => return reply,
    };
    match order::timeline::timeline_of_stream(&shared.store, id, &stored) {
        Ok(timeline) => Value::Array(timeline.entries.iter().map(|e| Value::bulk(e.line())).collect()),
        Err(err) => store_error(&err),
    }
}
