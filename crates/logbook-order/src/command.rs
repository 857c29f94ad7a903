//! The order lifecycle's daemon commands (extensions of logbook-server): `TIMELINE` and `ORDER`.
//!
//! `ORDER <order-id> <COMMAND> [<json>]` runs one command of the order aggregate through the
//! repository (snapshot + tail, the loaded version as the exact expected version, retried on a
//! conflict) and replies `[version, position]` of the event it wrote; `ORDER <order-id> STATE`
//! replies the order's state as a map. See [`OrderServerCommand`] and docs/order.md.
//!
//! `TIMELINE <order-id>`: the readable audit trail of one order, one line per event.
//!
//! Replies an array of strings: the lines of the timeline's text form (the heading, the status
//! line, then the events oldest first, each like
//! `10:04:18 — PAYMENT_CONFIRMED { gateway: "stripe", txn: "pi_xxx" } (system)`, with a date
//! line before the first event of each UTC day). For a tenant the order is looked up in the
//! tenant's own namespace; a unique prefix of an order id is enough; an unknown order is an
//! error (`-ERR no such order '<id>'`).

use std::sync::Arc;

use logbook::{is_valid_namespace_name, Direction, Namespace, Store, MAX_STREAM_NAME_BYTES, NAMESPACE_SEPARATOR};
use logbook_es::aggregate::{AggregateError, Loaded};
use logbook_protocol::{text_argument, ArgDoc, ArgKind, CommandDoc, CommandError, Value};
use logbook_server::{error_reply, stored_stream_name, CommandExtension, Extensions};
use uuid::Uuid;

use crate::request::{parse_request, OrderAction};
use crate::timeline::{self, Separators, TimelineError};
use crate::{order_id_of, repository, stream_name, Actor, Order, OrderCommand, OrderError, OrderEvent, OrderMetadata};

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
        let stored = match order_stream(namespace, id) {
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

/// Attempts of one ORDER command when the order changes between its load and its append
/// (the repository's default).
pub const ORDER_ATTEMPTS: u32 = 5;

/// The actor id recorded for the admin, and for every connection of a daemon without auth
/// (which has the admin's access; the extension cannot tell the two apart).
pub const ADMIN_ACTOR_ID: &str = "admin";

/// The ORDER command: `ORDER <order-id> <COMMAND> [<json>]` and `ORDER <order-id> STATE`.
///
/// - The order's stream is `order-<order-id>` in the caller's namespace.
/// - The events' metadata ([`OrderMetadata`]) says who ran it: a tenant is `actor: "system"`,
///   `actor_id: <tenant>`, `retailer_id: <tenant>`; the admin (and an open daemon's
///   connections) `actor: "admin"`, `actor_id: "admin"`, `retailer_id` the order's own.
///   `customer_id` is the order's; `causation_id` the command's `"id"` when given.
/// - A command with an `"id"` that an event of the order already carries as its
///   `causation_id` is not run again: the reply is that event's `[version, position]`, so a
///   client may resend a command whose reply it lost.
/// - Refused by the state machine: `-REJECTED <state> does not accept <COMMAND>: <reason>`,
///   nothing written. Conflicts are retried on fresh state up to [`ORDER_ATTEMPTS`] times,
///   then `-CONFLICT ...`, nothing written.
#[derive(Debug, Default)]
pub struct OrderServerCommand;

impl CommandExtension for OrderServerCommand {
    fn name(&self) -> &'static str {
        "ORDER"
    }

    fn doc(&self) -> CommandDoc {
        const COMMANDS: &[ArgDoc] = &[
            ArgDoc::keyword("STATE"),
            ArgDoc::keyword("CREATE_CART"),
            ArgDoc::keyword("ADD_ITEM"),
            ArgDoc::keyword("REMOVE_ITEM"),
            ArgDoc::keyword("START_CHECKOUT"),
            ArgDoc::keyword("CONFIRM_PAYMENT"),
            ArgDoc::keyword("FAIL_PAYMENT"),
            ArgDoc::keyword("PLACE_ORDER"),
            ArgDoc::keyword("CANCEL_ITEM"),
            ArgDoc::keyword("START_PROCESSING"),
            ArgDoc::keyword("SHIP"),
            ArgDoc::keyword("FAIL_DELIVERY"),
            ArgDoc::keyword("DELIVER"),
            ArgDoc::keyword("CANCEL"),
            ArgDoc::keyword("ISSUE_REFUND"),
        ];
        const ARGUMENTS: &[ArgDoc] = &[
            ArgDoc::new("order-id", ArgKind::String),
            ArgDoc::new("command", ArgKind::OneOf(COMMANDS)),
            ArgDoc::new("json-arguments", ArgKind::String).optional(),
        ];
        CommandDoc {
            name: "ORDER",
            summary: "Runs an order command (replies [version, position]) or replies the order's STATE",
            group: "order",
            since: "0.1.0",
            arguments: ARGUMENTS,
        }
    }

    fn call(&self, store: &Store, namespace: Option<&Namespace>, args: Vec<Vec<u8>>) -> Value {
        let request = match parse_request(&args, namespace.map(Namespace::name)) {
            Ok(request) => request,
            Err(err) => return Value::error("ERR", &err.to_string()),
        };
        let stored = match order_stream(namespace, &request.order_id) {
            Ok(stored) => stored,
            Err(reply) => return reply,
        };
        let id = request.order_id.as_str();
        match request.action {
            OrderAction::State => match repository(store).load(&stored) {
                Ok(loaded) => state_reply(&loaded),
                Err(err) => aggregate_error_reply(id, err),
            },
            OrderAction::Run { name, command, command_id } => {
                let step = Step { id, stored: &stored, name, command: &command, command_id };
                run(store, namespace, &step, &mut || {})
            }
        }
    }
}

/// The stored stream of the order `id` as the caller names it: `order-<id>` in the caller's
/// namespace. The admin (no namespace) may also name a tenant's order by its stored stream
/// name, `<tenant>:order-<id>`, as READ takes it; a tenant's own namespace always applies to
/// a tenant, so it cannot reach another's orders this way.
fn order_stream(namespace: Option<&Namespace>, id: &str) -> Result<String, Value> {
    if namespace.is_none() {
        if let Some((owner, local)) = id.split_once(NAMESPACE_SEPARATOR) {
            if is_valid_namespace_name(owner) && order_id_of(local).is_some_and(|order| !order.is_empty()) {
                return Ok(id.to_string());
            }
        }
    }
    stored_stream_name(namespace, &stream_name(id))
}

/// The metadata of the events a caller's command writes (see [`OrderServerCommand`]).
fn metadata_for(
    namespace: Option<&Namespace>,
    state: &Order,
    command: &OrderCommand,
    command_id: Option<Uuid>,
) -> OrderMetadata {
    let (order_retailer, order_customer) = match command {
        OrderCommand::CreateCart { retailer_id, customer_id, .. } => (retailer_id.as_str(), customer_id.as_str()),
        _ => (state.retailer_id.as_str(), state.customer_id.as_str()),
    };
    let mut metadata = match namespace {
        Some(ns) => {
            OrderMetadata { actor_id: Some(ns.name().to_string()), ..OrderMetadata::new(Actor::System, ns.name()) }
        }
        None => OrderMetadata::admin(order_retailer, ADMIN_ACTOR_ID),
    };
    if !order_customer.is_empty() {
        metadata.customer_id = Some(order_customer.to_string());
    }
    metadata.causation_id = command_id.map(|id| id.to_string());
    metadata
}

/// The `[version, position]` of the last event of the order that `command_id` caused, if any:
/// the whole stream is searched (orders are short), not just its last event, so a command resent
/// after another one landed is still answered with its own result instead of running again.
/// An id that caused an event other than the one `step`'s command decides is an error: the
/// caller reused an id for another command, and answering with the old result would tell it
/// that its new command happened.
fn already_done(
    store: &Store,
    step: &Step<'_>,
    loaded: &Loaded<Order>,
    command_id: Uuid,
) -> Result<Option<Value>, Value> {
    let stored = step.stored;
    let wanted = command_id.to_string();
    let asked = step.command.to_event();
    let mut found = None;
    let mut next = 1;
    while next <= loaded.version {
        let page = store.read_stream(stored, next, 1024, Direction::Forward).map_err(|e| error_reply(&e))?;
        let Some(last) = page.last() else { break };
        next = last.version() + 1;
        for event in &page {
            let caused_by = serde_json::from_slice::<serde_json::Value>(event.metadata())
                .ok()
                .and_then(|m| m.get("causation_id").and_then(|c| c.as_str()).map(str::to_string));
            if caused_by.as_deref() == Some(wanted.as_str()) {
                let same = OrderEvent::from_json(event.event_type(), event.data()).is_ok_and(|done| done == asked);
                if !same {
                    return Err(Value::error(
                        "ERR",
                        &format!(
                            "command id {wanted} was already used by version {} of order '{}' ({}); {} with \
                             these arguments is another command: give it a new id",
                            event.version(),
                            step.id,
                            event.event_type(),
                            step.name
                        ),
                    ));
                }
                found = Some(version_position(event.version(), event.position()));
            }
        }
    }
    Ok(found)
}

fn version_position(version: u64, position: u64) -> Value {
    Value::Array(vec![Value::Integer(int(version)), Value::Integer(int(position))])
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One ORDER command to run: the order as the caller names it, its stored stream, the wire
/// name of the command, the command and its id.
struct Step<'a> {
    id: &'a str,
    stored: &'a str,
    name: &'static str,
    command: &'a OrderCommand,
    command_id: Option<Uuid>,
}

/// Runs `step`; `between` runs after each load, before the append (the tests change the order
/// there to force conflicts).
fn run(store: &Store, namespace: Option<&Namespace>, step: &Step<'_>, between: &mut dyn FnMut()) -> Value {
    let &Step { id, stored, name, command, command_id } = step;
    // One attempt per execute: the loop reloads, so a resent command id is checked again on
    // the fresh state, and the metadata follows the order as loaded.
    let repo = repository(store).with_max_attempts(1);
    for _ in 0..ORDER_ATTEMPTS {
        let loaded = match repo.load(stored) {
            Ok(loaded) => loaded,
            Err(err) => return aggregate_error_reply(id, err),
        };
        if let Some(command_id) = command_id {
            match already_done(store, step, &loaded, command_id) {
                Ok(Some(reply)) => return reply,
                Ok(None) => {}
                Err(reply) => return reply,
            }
        }
        let metadata = metadata_for(namespace, &loaded.state, command, command_id);
        between();
        match repo.execute_from(stored, loaded, command, &metadata) {
            Ok(executed) => {
                return match executed.append {
                    Some(append) => version_position(append.last_version, append.last_position),
                    // Every order command decides one event; kept total all the same.
                    None => Value::error("ERR", &format!("{name} wrote nothing")),
                };
            }
            Err(AggregateError::Conflict { .. }) => std::thread::yield_now(),
            Err(AggregateError::Domain(err)) => return rejected(name, &err),
            Err(err) => return aggregate_error_reply(id, err),
        }
    }
    Value::error(
        "CONFLICT",
        &format!("order '{id}' changed concurrently on each of {ORDER_ATTEMPTS} attempts; nothing was written"),
    )
}

/// `-REJECTED <state> does not accept <COMMAND>: <reason>` when the order's state refuses the
/// command; `-ERR <COMMAND>: <reason>` when an argument is malformed whatever the state (a
/// client that retried after a state change would loop on it).
fn rejected(name: &str, err: &OrderError) -> Value {
    let (state, reason) = match err {
        OrderError::InvalidArgument { reason, .. } => return Value::error("ERR", &format!("{name}: {reason}")),
        OrderError::InvalidTransition { state, allowed, .. } => {
            let names: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
            let reason = if names.is_empty() {
                "never allowed".to_string()
            } else {
                format!("only allowed when the order is {}", names.join(" or "))
            };
            (*state, reason)
        }
        OrderError::Rejected { state, reason, .. } => (*state, reason.clone()),
    };
    Value::error("REJECTED", &format!("{state} does not accept {name}: {reason}"))
}

/// Errors other than a rejection, in the caller's terms (no stored stream name, no path).
fn aggregate_error_reply(id: &str, err: AggregateError<OrderError>) -> Value {
    match err {
        AggregateError::Store(err) => error_reply(&err),
        AggregateError::Decode { version, event_type, reason, .. } => {
            Value::error("ERR", &format!("order '{id}': event {version} ({event_type}) cannot be decoded: {reason}"))
        }
        AggregateError::Encode(reason) => Value::error("ERR", &format!("order '{id}': cannot encode: {reason}")),
        AggregateError::Conflict { attempts, .. } => Value::error(
            "CONFLICT",
            &format!("order '{id}' changed concurrently on each of {attempts} attempts; nothing was written"),
        ),
        AggregateError::Domain(err) => Value::error("ERR", &err.to_string()),
    }
}

/// `ORDER <id> STATE`: status, retailer_id, customer_id, items, cancelled_items, amounts,
/// tracking, version.
fn state_reply(loaded: &Loaded<Order>) -> Value {
    let order = &loaded.state;
    let text = |s: &str| if s.is_empty() { Value::Null } else { Value::bulk(s) };
    let line = |product: &str, quantity: u32, unit_price: u64| {
        Value::Map(vec![
            (Value::bulk("product"), Value::bulk(product)),
            (Value::bulk("quantity"), Value::Integer(i64::from(quantity))),
            (Value::bulk("unit_price"), Value::Integer(int(unit_price))),
        ])
    };
    let items = order.items.iter().map(|(product, l)| line(product, l.quantity, l.unit_price)).collect();
    let cancelled =
        order.cancelled_items.iter().map(|(product, (l, _))| line(product, l.quantity, l.unit_price)).collect();
    let amounts = Value::Map(vec![
        (Value::bulk("total"), Value::Integer(int(order.total()))),
        (Value::bulk("paid"), Value::Integer(int(order.paid))),
        (Value::bulk("refunded"), Value::Integer(int(order.refunded))),
        (Value::bulk("currency"), text(&order.currency)),
    ]);
    Value::Map(vec![
        (Value::bulk("status"), Value::bulk(order.status.as_str())),
        (Value::bulk("retailer_id"), text(&order.retailer_id)),
        (Value::bulk("customer_id"), text(&order.customer_id)),
        (Value::bulk("items"), Value::Array(items)),
        (Value::bulk("cancelled_items"), Value::Array(cancelled)),
        (Value::bulk("amounts"), amounts),
        (Value::bulk("tracking"), order.tracking.as_deref().map_or(Value::Null, Value::bulk)),
        (Value::bulk("version"), Value::Integer(int(loaded.version))),
    ])
}

/// The daemon extensions of the order lifecycle: the TIMELINE and ORDER commands, and the
/// console's Order and Funnel pages.
pub fn server_extensions() -> Extensions {
    Extensions::new()
        .with(Arc::new(TimelineCommand))
        .and_then(|e| e.with(Arc::new(OrderServerCommand)))
        .and_then(|e| e.with_console(Arc::new(crate::console::OrderConsole)))
        .expect("TIMELINE and ORDER are not grammar commands, order and funnel not console pages")
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

    /// A raw ITEM_ADDED appended around the repository, as another client's command would be.
    fn interfere(store: &Store, product: &str, causation: Option<&str>) {
        let data =
            format!(r#"{{"product_id":"{product}","quantity":1,"unit_price":{{"amount":100,"currency":"EUR"}}}}"#);
        let meta = match causation {
            Some(id) => format!(r#"{{"actor":"system","retailer_id":"r","schema":2,"causation_id":"{id}"}}"#),
            None => r#"{"actor":"system","retailer_id":"r","schema":2}"#.to_string(),
        };
        let event = logbook::NewEvent::new("ITEM_ADDED", data.into_bytes()).with_metadata(meta.into_bytes());
        store.append("order-o-1", logbook::ExpectedVersion::Any, vec![event]).unwrap();
    }

    #[test]
    fn conflicts_are_retried_on_fresh_state_then_refused_with_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), logbook::Options::default()).unwrap();
        let args = |a: &[&str]| a.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        let created = OrderServerCommand.call(
            &store,
            None,
            args(&["o-1", "CREATE_CART", r#"{"retailer_id":"r","customer_id":"c","currency":"EUR"}"#]),
        );
        assert_eq!(created, version_position(1, 1));
        let add =
            OrderCommand::AddItem { product_id: "p".into(), quantity: 1, unit_price: crate::Money::new(100, "EUR") };
        let step = Step { id: "o-1", stored: "order-o-1", name: "ADD_ITEM", command: &add, command_id: None };

        // Another client's event lands between the first load and its append: the command is
        // decided again on the fresh state and written after it.
        let mut calls = 0;
        let reply = run(&store, None, &step, &mut || {
            calls += 1;
            if calls == 1 {
                interfere(&store, "x1", None);
            }
        });
        assert_eq!((reply, calls), (version_position(3, 3), 2));

        // The order changes before every append: CONFLICT after ORDER_ATTEMPTS, nothing written.
        let mut calls = 0;
        let reply = run(&store, None, &step, &mut || {
            calls += 1;
            interfere(&store, &format!("y{calls}"), None);
        });
        let Value::Error(text) = reply else { panic!("{reply:?}") };
        assert_eq!(text, "CONFLICT order 'o-1' changed concurrently on each of 5 attempts; nothing was written");
        assert_eq!(calls, ORDER_ATTEMPTS);
        assert_eq!(store.read_stream("order-o-1", 1, 100, Direction::Forward).unwrap().len(), 3 + 5, "none of ours");

        // The same command (same id) landed first from another connection: the retry sees it
        // as the order's last event and answers with it instead of adding the item again.
        let command_id = Uuid::new_v4();
        let step = Step { command_id: Some(command_id), ..step };
        let mut calls = 0;
        let reply = run(&store, None, &step, &mut || {
            calls += 1;
            interfere(&store, "p", Some(&command_id.to_string()));
        });
        assert_eq!((reply, calls), (version_position(9, 9), 1));
        assert_eq!(store.read_stream("order-o-1", 1, 100, Direction::Forward).unwrap().len(), 9);
        // Resent after another command landed on top of it: still its own result, not a second
        // run (the id is looked for in the whole order, not only its last event).
        interfere(&store, "q", None);
        let reply = run(&store, None, &step, &mut || {});
        assert_eq!(reply, version_position(9, 9), "answered with the first run's result");
        assert_eq!(store.read_stream("order-o-1", 1, 100, Direction::Forward).unwrap().len(), 10, "nothing ran again");
    }

    #[test]
    fn the_order_lifecycle_adds_timeline_once() {
        assert_eq!(server_extensions().names(), ["TIMELINE", "ORDER"]);
        assert!(server_extensions().with(Arc::new(TimelineCommand)).is_err(), "a second TIMELINE is refused");
    }
}
