//! `TIMELINE <order-id>`: the readable audit trail of one order, one line per event, as a
//! daemon command (an extension of logbook-server).
//!
//! Replies an array of strings, oldest first, each like
//! `10:04:18 — PAYMENT_CONFIRMED { gateway: "stripe", txn: "pi_xxx" } (system)` (times UTC).
//! For a tenant the order is looked up in the tenant's own namespace.

use std::sync::Arc;

use logbook::{Namespace, Store, MAX_STREAM_NAME_BYTES};
use logbook_protocol::{text_argument, ArgDoc, ArgKind, CommandDoc, CommandError, Value};
use logbook_server::{error_reply, stored_stream_name, CommandExtension, Extensions};

use crate::{order_id_of, stream_name, timeline};

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
        match timeline::timeline_of_stream(store, id, &stored) {
            Ok(timeline) => Value::Array(timeline.entries.iter().map(|e| Value::bulk(e.line())).collect()),
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
        assert_eq!(call(&["order-17"]), Value::Array(Vec::new()), "an order with no events");
    }

    #[test]
    fn the_order_lifecycle_adds_timeline_once() {
        assert_eq!(server_extensions().names(), ["TIMELINE"]);
        assert!(server_extensions().with(Arc::new(TimelineCommand)).is_err(), "a second TIMELINE is refused");
    }
}
