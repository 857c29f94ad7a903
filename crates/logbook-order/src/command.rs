//! `TIMELINE <order-id>`: the readable audit trail of one order, one line per event, as a
//! daemon command (an extension of logbook-server).
//!
//! Replies an array of strings: the lines of the timeline's text form (the heading, the status
//! line, then the events oldest first, each like
//! `10:04:18 — PAYMENT_CONFIRMED { gateway: "stripe", txn: "pi_xxx" } (system)`, with a date
//! line before the first event of each UTC day). For a tenant the order is looked up in the
//! tenant's own namespace; a unique prefix of an order id is enough; an unknown order is an
//! error (`-ERR no such order '<id>'`).

use std::sync::Arc;

use logbook::{Namespace, Store, MAX_STREAM_NAME_BYTES};
use logbook_protocol::{text_argument, ArgDoc, ArgKind, CommandDoc, CommandError, Value};
use logbook_server::{error_reply, stored_stream_name, CommandExtension, Extensions};

use crate::timeline::{self, Separators, TimelineError};
use crate::{order_id_of, stream_name};

/// The TIMELINE command.
#[derive(Debug, Default)]
pub struct TimelineCommand;

impl CommandExtension for TimelineCommand {
    fn name(&self) -> &'static str {
        "TIMELINE"
    }

    fn doc(&self) -> CommandDoc {
        const ARGUMENTS: &[ArgDoc] = &[ArgDoc::new("order-id", ArgKind::String)];
        CommandDoc {
            name: "TIMELINE",
            summary: "Replies an order's events as readable lines, oldest first",
            group: "order",
            since: "0.1.0",
            arguments: ARGUMENTS,
        }
    }

    fn call(&self, store: &Store, namespace: Option<&Namespace>, args: Vec<Vec<u8>>) -> Value {
        let order_id = match <[Vec<u8>; 1]>::try_from(args) {
            Ok([arg]) => match text_argument(arg, "order id", MAX_STREAM_NAME_BYTES) {
                Ok(id) => id,
                Err(err) => return err.to_value(),
            },
            Err(_) => return CommandError::WrongArity(self.name()).to_value(),
        };
        let id = order_id_of(&order_id).unwrap_or(&order_id);
        let stored = match stored_stream_name(namespace, &stream_name(id)) {
            Ok(stored) => stored,
            Err(reply) => return reply,
        };
        let stored = match timeline::find_order(store, id, &stored) {
            Ok(found) => found,
            Err(TimelineError::Store(err)) => return error_reply(&err),
            Err(other) => return Value::error("ERR", &other.to_string()),
        };
        // The whole id of the order found, as the caller names it (outside its namespace).
        let local = namespace.map_or(Some(stored.as_str()), |ns| ns.local_name(&stored));
        let full_id = local.and_then(order_id_of).unwrap_or(id);
        match timeline::timeline_of_stream(store, full_id, &stored) {
            Ok(timeline) => Value::Array(timeline.lines_with(Separators::ASCII).into_iter().map(Value::bulk).collect()),
            Err(err) => error_reply(&err),
        }
    }
}

/// The daemon commands of the order lifecycle: TIMELINE.
pub fn server_extensions() -> Extensions {
    Extensions::new().with(Arc::new(TimelineCommand)).expect("TIMELINE is not a grammar command")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(args: &[&str]) -> Value {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), logbook::Options::default()).unwrap();
        TimelineCommand.call(&store, None, args.iter().map(|a| a.as_bytes().to_vec()).collect())
    }

    #[test]
    fn arity_and_argument_errors_name_what_was_wrong() {
        for (args, needle) in [
            (&[][..], "wrong number of arguments for 'TIMELINE'"),
            (&["a", "b"][..], "wrong number of arguments for 'TIMELINE'"),
            (&[""][..], "order id must not be empty"),
        ] {
            let Value::Error(text) = call(args) else { panic!("{args:?}: not an error") };
            assert!(text.contains(needle), "{args:?}: {text}");
        }
        let Value::Error(text) = call(&["order-17"]) else { panic!("an order with no events is an error") };
        assert!(text.contains("no such order '17'"), "{text}");
    }

    #[test]
    fn the_reply_has_the_status_line_and_a_date_line_per_day_and_unknown_orders_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let day = 86_400_000_000;
        let now = Arc::new(std::sync::atomic::AtomicI64::new(1_762_000_000_000_000));
        let options = logbook::Options { clock: logbook::Clock::manual(Arc::clone(&now)), ..Default::default() };
        let store = Store::open(dir.path(), options).unwrap();
        for (event_type, data) in [("CART_CREATED", "{}"), ("CHECKOUT_STARTED", "{}"), ("ORDER_CANCELLED", "{}")] {
            let event = logbook::NewEvent::new(event_type, data.as_bytes().to_vec());
            store.append("order-6f1c", logbook::ExpectedVersion::Any, vec![event]).unwrap();
            now.fetch_add(day, std::sync::atomic::Ordering::AcqRel);
        }
        let reply = |id: &str| TimelineCommand.call(&store, None, vec![id.as_bytes().to_vec()]);
        let Value::Array(lines) = reply("6f1c") else { panic!("not an array") };
        let lines: Vec<String> = lines
            .into_iter()
            .map(|v| match v {
                Value::BulkString(b) => String::from_utf8(b).unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        let dates = ["2025-11-01", "2025-11-02", "2025-11-03"];
        for date in dates {
            assert!(lines.iter().any(|l| l == date), "no date line {date}: {lines:#?}");
        }
        assert!(lines.iter().any(|l| l.starts_with("status: ")), "{lines:#?}");
        // ASCII separators: redis-cli would show `\xe2\x80\x94` for an em dash.
        assert!(lines.iter().all(|l| l.is_ascii()), "{lines:#?}");
        assert!(lines.iter().any(|l| l.ends_with(" - CART_CREATED")), "{lines:#?}");
        // Only the separators: the order's own data is sent as stored.
        let event =
            logbook::NewEvent::new("ITEM_ADDED", r#"{"product_id":"a · b — c","quantity":1}"#.as_bytes().to_vec());
        store.append("order-6f1c", logbook::ExpectedVersion::Any, vec![event]).unwrap();
        let Value::Array(lines) = reply("6f1c") else { panic!("not an array") };
        let last = match lines.last() {
            Some(Value::BulkString(b)) => String::from_utf8(b.clone()).unwrap(),
            other => panic!("{other:?}"),
        };
        assert!(last.contains(" - ITEM_ADDED") && last.contains("a · b — c"), "{last}");
        assert_eq!(reply("6f"), reply("6f1c"), "a unique prefix is enough");
        let Value::Error(text) = reply("77aa") else { panic!("an unknown order is an error") };
        assert!(text.contains("no such order"), "{text}");
    }

    #[test]
    fn the_order_lifecycle_adds_timeline_once() {
        assert_eq!(server_extensions().names(), ["TIMELINE"]);
        assert!(server_extensions().with(Arc::new(TimelineCommand)).is_err(), "a second TIMELINE is refused");
    }
}
