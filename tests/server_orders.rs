//! `ORDER <order-id> <COMMAND> [<json>]` and `ORDER <order-id> STATE` over the wire, through the
//! `redis` crate: the whole lifecycle, every transition the state machine refuses (rejected,
//! nothing written), argument errors, tenants, the actor in the metadata, resent command ids
//! and concurrent commands on one order.

mod server_support;

use logbook_order::request::{parse_request, OrderAction};
use logbook_order::{allowed_from, OrderStatus};
use redis::Value as R;
use server_support::*;

fn order(con: &mut redis::Connection, id: &str, command: &str, json: Option<&str>) -> redis::RedisResult<Vec<i64>> {
    let mut cmd = redis::cmd("ORDER");
    cmd.arg(id).arg(command);
    if let Some(json) = json {
        cmd.arg(json);
    }
    cmd.query(con)
}

fn ok(con: &mut redis::Connection, id: &str, command: &str, json: Option<&str>) -> (i64, i64) {
    match order(con, id, command, json) {
        Ok(v) if v.len() == 2 => (v[0], v[1]),
        other => panic!("ORDER {id} {command} {json:?}: {other:?}"),
    }
}

fn head(con: &mut redis::Connection) -> i64 {
    redis::cmd("HEAD").query(con).unwrap()
}

fn version(con: &mut redis::Connection, stream: &str) -> i64 {
    redis::cmd("VERSION").arg(stream).query(con).unwrap()
}

fn state(con: &mut redis::Connection, id: &str) -> Vec<(String, R)> {
    fields(&redis::cmd("ORDER").arg(id).arg("STATE").query::<R>(con).unwrap())
}

fn get(map: &[(String, R)], key: &str) -> R {
    map.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_else(|| panic!("no {key} in {map:?}"))
}

fn text(value: &R) -> String {
    match value {
        R::BulkString(b) => String::from_utf8(b.clone()).unwrap(),
        R::SimpleString(s) => s.clone(),
        other => panic!("not a string: {other:?}"),
    }
}

/// The metadata of the stream's events, as JSON.
fn metadata(con: &mut redis::Connection, stream: &str) -> Vec<serde_json::Value> {
    events(redis::cmd("READ").arg(stream).query(con).unwrap())
        .iter()
        .map(|e| serde_json::from_str(&field_str(e, "meta")).unwrap())
        .collect()
}

const CREATE: &str = r#"{"retailer_id":"shop","customer_id":"c-9","currency":"EUR"}"#;
const ADD_P1: &str = r#"{"product_id":"p1","quantity":2,"unit_price":{"amount":1000,"currency":"EUR"}}"#;
const ADD_P2: &str = r#"{"product_id":"p2","quantity":1,"unit_price":{"amount":500,"currency":"EUR"}}"#;
const ADD_P3: &str = r#"{"product_id":"p3","quantity":1,"unit_price":{"amount":250,"currency":"EUR"}}"#;
const PAY: &str = r#"{"transaction_id":"pi_1","gateway":"stripe","amount":{"amount":2750,"currency":"EUR"}}"#;

#[test]
fn the_whole_lifecycle_over_the_wire_ends_delivered() {
    let server = TestServer::start();
    let mut con = server.redis3();
    let steps: [(&str, Option<&str>); 13] = [
        ("CREATE_CART", Some(CREATE)),
        ("ADD_ITEM", Some(ADD_P1)),
        ("add_item", Some(ADD_P2)),
        ("ADD_ITEM", Some(ADD_P3)),
        ("REMOVE_ITEM", Some(r#"{"product_id":"p1","quantity":1}"#)),
        ("ADD_ITEM", Some(r#"{"product_id":"p1","quantity":1,"unit_price":{"amount":1000,"currency":"EUR"}}"#)),
        ("START_CHECKOUT", None),
        ("CONFIRM_PAYMENT", Some(PAY)),
        ("PLACE_ORDER", Some("{}")),
        ("CANCEL_ITEM", Some(r#"{"product_id":"p3","reason":"out of stock"}"#)),
        ("ISSUE_REFUND", Some(r#"{"amount":{"amount":250,"currency":"EUR"}}"#)),
        ("START_PROCESSING", None),
        ("SHIP", Some(r#"{"tracking":"BD1"}"#)),
    ];
    // Another stream's event first, so versions and positions differ.
    redis::cmd("APPEND").arg("other").arg("X").arg("{}").query::<Vec<i64>>(&mut con).unwrap();
    for (i, (command, json)) in steps.iter().enumerate() {
        let version = i as i64 + 1;
        assert_eq!(ok(&mut con, "o-1", command, *json), (version, version + 1), "{command}");
    }
    let mid = state(&mut con, "o-1");
    assert_eq!(text(&get(&mid, "status")), "SHIPPED");
    assert_eq!(text(&get(&mid, "tracking")), "BD1");
    assert_eq!(ok(&mut con, "order-o-1", "DELIVER", None), (14, 15), "the stream's name works as the id");

    let done = state(&mut con, "o-1");
    assert_eq!(text(&get(&done, "status")), "DELIVERED");
    assert_eq!(get(&done, "version"), R::Int(14));
    assert_eq!(text(&get(&done, "retailer_id")), "shop");
    assert_eq!(text(&get(&done, "customer_id")), "c-9");
    assert_eq!(text(&get(&done, "tracking")), "BD1");
    let R::Array(items) = get(&done, "items") else { panic!("items: {done:?}") };
    let items: Vec<(String, R, R)> = items
        .iter()
        .map(|line| {
            let line = fields(line);
            (text(&get(&line, "product")), get(&line, "quantity"), get(&line, "unit_price"))
        })
        .collect();
    assert_eq!(
        items,
        [("p1".to_string(), R::Int(2), R::Int(1000)), ("p2".to_string(), R::Int(1), R::Int(500))],
        "p3 was cancelled"
    );
    let R::Array(cancelled) = get(&done, "cancelled_items") else { panic!() };
    assert_eq!(text(&get(&fields(&cancelled[0]), "product")), "p3");
    let amounts = fields(&get(&done, "amounts"));
    assert_eq!(get(&amounts, "total"), R::Int(2500));
    assert_eq!(get(&amounts, "paid"), R::Int(2750));
    assert_eq!(get(&amounts, "refunded"), R::Int(250));
    assert_eq!(text(&get(&amounts, "currency")), "EUR");

    // The events are the module's own, with the module's data, and TIMELINE reads them.
    let stored = events(redis::cmd("READ").arg("order-o-1").query(&mut con).unwrap());
    assert_eq!(field_str(&stored[12], "type"), "SHIPPED");
    assert_eq!(field_str(&stored[12], "data"), r#"{"tracking":"BD1"}"#);
    assert_eq!(field_str(&stored[10], "data"), r#"{"amount":{"amount":250,"currency":"EUR"}}"#);
    let lines: Vec<String> = redis::cmd("TIMELINE").arg("o-1").query(&mut con).unwrap();
    assert!(lines[1].starts_with("status: DELIVERED"), "{lines:#?}");

    // RESP2: the state is a flat array of keys and values; an unknown order is NEW at version 0.
    let mut con2 = server.redis();
    let fresh = state(&mut con2, "o-2");
    assert_eq!(text(&get(&fresh, "status")), "NEW");
    assert_eq!(get(&fresh, "version"), R::Int(0));
    assert_eq!(get(&fresh, "tracking"), R::Nil);
    assert_eq!(text(&get(&state(&mut con2, "o-1"), "status")), "DELIVERED");
}

/// The wire commands with arguments valid for an order built by [`path_to`] (lines p1 2x10.00,
/// p2 1x5.00, p3 1x2.50 EUR; p3 is the line a PARTIALLY_CANCELLED order lost).
const COMMANDS: [(&str, Option<&str>); 14] = [
    ("CREATE_CART", Some(CREATE)),
    ("ADD_ITEM", Some(r#"{"product_id":"p4","quantity":1,"unit_price":{"amount":100,"currency":"EUR"}}"#)),
    ("REMOVE_ITEM", Some(r#"{"product_id":"p1","quantity":1}"#)),
    ("START_CHECKOUT", None),
    ("CONFIRM_PAYMENT", Some(PAY)),
    ("FAIL_PAYMENT", Some(r#"{"reason":"card_declined"}"#)),
    ("PLACE_ORDER", None),
    ("CANCEL_ITEM", Some(r#"{"product_id":"p2","reason":"out of stock"}"#)),
    ("START_PROCESSING", None),
    ("SHIP", Some(r#"{"tracking":"BD7"}"#)),
    ("FAIL_DELIVERY", Some(r#"{"reason":"address not found"}"#)),
    ("DELIVER", None),
    ("CANCEL", Some(r#"{"reason":"customer request"}"#)),
    ("ISSUE_REFUND", Some(r#"{"amount":{"amount":100,"currency":"EUR"}}"#)),
];

/// Commands that take a new order to `status`.
fn path_to(status: OrderStatus) -> Vec<(&'static str, Option<&'static str>)> {
    use OrderStatus::*;
    let cart = vec![
        ("CREATE_CART", Some(CREATE)),
        ("ADD_ITEM", Some(ADD_P1)),
        ("ADD_ITEM", Some(ADD_P2)),
        ("ADD_ITEM", Some(ADD_P3)),
    ];
    let then = |status, next: &[(&'static str, Option<&'static str>)]| {
        let mut path = path_to(status);
        path.extend_from_slice(next);
        path
    };
    match status {
        New => Vec::new(),
        CartCreated => cart,
        CheckoutStarted => then(CartCreated, &[("START_CHECKOUT", None)]),
        PaymentFailed => then(CheckoutStarted, &[("FAIL_PAYMENT", Some(r#"{"reason":"declined"}"#))]),
        PaymentConfirmed => then(CheckoutStarted, &[("CONFIRM_PAYMENT", Some(PAY))]),
        OrderPlaced => then(PaymentConfirmed, &[("PLACE_ORDER", None)]),
        PartiallyCancelled => then(OrderPlaced, &[("CANCEL_ITEM", Some(r#"{"product_id":"p3","reason":"oos"}"#))]),
        Processing => then(OrderPlaced, &[("START_PROCESSING", None)]),
        Shipped => then(Processing, &[("SHIP", Some(r#"{"tracking":"BD1"}"#))]),
        DeliveryFailed => then(Shipped, &[("FAIL_DELIVERY", Some(r#"{"reason":"not home"}"#))]),
        Delivered => then(Shipped, &[("DELIVER", None)]),
        Cancelled => then(PaymentConfirmed, &[("CANCEL", Some(r#"{"reason":"changed mind"}"#))]),
    }
}

/// The stored event type a wire command decides.
fn event_type_of(command: &str, json: Option<&str>) -> &'static str {
    let mut args = vec![b"o".to_vec(), command.as_bytes().to_vec()];
    args.extend(json.map(|j| j.as_bytes().to_vec()));
    match parse_request(&args, None).unwrap().action {
        OrderAction::Run { command, .. } => command.to_event().event_type(),
        OrderAction::State => unreachable!(),
    }
}

#[test]
fn every_transition_the_state_machine_refuses_is_rejected_and_writes_nothing() {
    let server = TestServer::start();
    let mut con = server.redis();
    let (mut rejected, mut accepted) = (0, 0);
    for (n, status) in OrderStatus::ALL.into_iter().enumerate() {
        let id = format!("s{n}");
        for (command, json) in path_to(status) {
            ok(&mut con, &id, command, json);
        }
        assert_eq!(text(&get(&state(&mut con, &id), "status")), status.as_str(), "the path to {status}");
        for (command, json) in COMMANDS {
            let allowed = allowed_from(event_type_of(command, json));
            if allowed.contains(&status) {
                // Accepted from here: run it on a copy of the order in this state.
                let copy = format!("{id}-{command}");
                for (step, step_json) in path_to(status) {
                    ok(&mut con, &copy, step, step_json);
                }
                ok(&mut con, &copy, command, json);
                accepted += 1;
                continue;
            }
            let (before, at) = (head(&mut con), version(&mut con, &format!("order-{id}")));
            let names: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
            assert_eq!(
                error_text(order(&mut con, &id, command, json)),
                format!(
                    "REJECTED {status} does not accept {command}: only allowed when the order is {}",
                    names.join(" or ")
                ),
            );
            assert_eq!(head(&mut con), before, "{command} in {status} wrote nothing");
            assert_eq!(version(&mut con, &format!("order-{id}")), at);
            rejected += 1;
        }
    }
    assert_eq!(rejected + accepted, 12 * 14);
    assert!(rejected > 100 && accepted > 25, "rejected {rejected}, accepted {accepted}");

    // The domain's rules beyond the arrows are rejections too, with the module's reason.
    for n in 0..2 {
        for (command, json) in path_to(OrderStatus::CheckoutStarted) {
            ok(&mut con, &format!("r{n}"), command, json);
        }
    }
    let before = head(&mut con);
    for (id, command, json, reason) in [
        (
            "r0",
            "CONFIRM_PAYMENT",
            r#"{"transaction_id":"t","gateway":"g","amount":{"amount":2749,"currency":"EUR"}}"#,
            "CHECKOUT_STARTED does not accept CONFIRM_PAYMENT: payment of 27.49 EUR does not match the order total 27.50 EUR",
        ),
        (
            "r1",
            "CONFIRM_PAYMENT",
            r#"{"transaction_id":"t","gateway":"g","amount":{"amount":2750,"currency":"USD"}}"#,
            "CHECKOUT_STARTED does not accept CONFIRM_PAYMENT: amount is in USD, the order is in EUR",
        ),
    ] {
        assert_eq!(error_text(order(&mut con, id, command, Some(json))), format!("REJECTED {reason}"));
    }
    // Malformed arguments are the caller's error whatever the state: -ERR, not REJECTED (a
    // client retrying after a state change would loop).
    for (id, command, json, expected) in [
        ("r1", "FAIL_PAYMENT", r#"{"reason":""}"#, "ERR FAIL_PAYMENT: reason must be 1..=256 bytes"),
        (
            "fresh",
            "CREATE_CART",
            r#"{"retailer_id":"shop","customer_id":"c","currency":"euro"}"#,
            "ERR CREATE_CART: currency 'euro' is not a three-letter ISO 4217 code",
        ),
    ] {
        assert_eq!(error_text(order(&mut con, id, command, Some(json))), expected);
    }
    assert_eq!(head(&mut con), before, "no rejection wrote anything");
}

#[test]
fn bad_arguments_are_errors_naming_what_was_wrong_and_write_nothing() {
    let server = TestServer::start();
    let mut con = server.redis();
    ok(&mut con, "o-1", "CREATE_CART", Some(CREATE));
    let before = head(&mut con);
    for (args, expected) in [
        (vec!["o-1"], "ERR wrong number of arguments for 'ORDER'"),
        (vec!["o-1", "SHIP", "{}", "extra"], "ERR wrong number of arguments for 'ORDER'"),
        (vec!["o-1", "TELEPORT"], "ERR unknown ORDER command 'TELEPORT': expected STATE or one of CREATE_CART, ADD_ITEM, REMOVE_ITEM, START_CHECKOUT, CONFIRM_PAYMENT, FAIL_PAYMENT, PLACE_ORDER, CANCEL_ITEM, START_PROCESSING, SHIP, FAIL_DELIVERY, DELIVER, CANCEL, ISSUE_REFUND"),
        (vec!["o-1", "ADD_ITEM", "{\"product_id\":"], "ERR ADD_ITEM: the JSON arguments are not valid JSON: EOF while parsing a value at line 1 column 14"),
        (vec!["o-1", "ADD_ITEM", "[1]"], "ERR ADD_ITEM: the JSON arguments must be an object, got an array"),
        (vec!["o-1", "ADD_ITEM", r#"{"product_id":"p","quantity":1}"#], "ERR ADD_ITEM: missing field \"unit_price\""),
        (
            vec!["o-1", "ADD_ITEM", r#"{"product_id":"p","quantity":"two","unit_price":{"amount":1,"currency":"EUR"}}"#],
            "ERR ADD_ITEM: field \"quantity\": invalid type: string \"two\", expected u32",
        ),
        (
            vec!["o-1", "ADD_ITEM", r#"{"product_id":"p","quantity":1,"unit_price":19.99}"#],
            "ERR ADD_ITEM: field \"unit_price\": money is {\"amount\": <integer minor units>, \"currency\": \"<ISO 4217 code>\"}, got a number",
        ),
        (
            vec!["o-1", "ADD_ITEM", r#"{"product_id":"p","quantity":1,"unit_price":{"amount":1,"currency":"EUR"},"colour":"red"}"#],
            "ERR ADD_ITEM: unknown field \"colour\" (expected \"product_id\", \"quantity\", \"unit_price\", \"id\")",
        ),
        (vec!["o-1", "STATE", "{}"], "ERR STATE takes no JSON arguments"),
        (vec!["", "STATE"], "ERR order id must not be empty"),
    ] {
        assert_eq!(error_text(redis::cmd("ORDER").arg(&args).query::<R>(&mut con)), expected, "{args:?}");
    }
    let long = "x".repeat(300);
    assert_eq!(
        error_text(redis::cmd("ORDER").arg(&long).arg("STATE").query::<R>(&mut con)),
        "ERR order id is 300 bytes, at most 256 allowed"
    );
    let big = format!(r#"{{"tracking":"{}"}}"#, "x".repeat(70_000));
    assert_eq!(
        error_text(redis::cmd("ORDER").arg("o-1").arg("SHIP").arg(&big).query::<R>(&mut con)),
        format!("ERR SHIP: the JSON arguments are {} bytes, at most 65536 allowed", big.len())
    );
    assert_eq!(head(&mut con), before, "no bad request wrote anything");
    // The connection is still usable, and ORDER is documented for redis-cli's help.
    assert_eq!(text(&get(&state(&mut con, "o-1"), "status")), "CART_CREATED");
    let docs: std::collections::HashMap<String, R> =
        redis::cmd("COMMAND").arg("DOCS").arg("order").query(&mut con).unwrap();
    let summary = text(&get(&fields(&docs["order"]), "summary"));
    assert!(summary.contains("order command"), "{summary}");
    let names: Vec<String> = redis::cmd("COMMAND").arg("LIST").query(&mut con).unwrap();
    assert!(names.contains(&"order".to_string()), "{names:?}");
}

#[test]
fn tenants_act_only_on_their_own_orders_and_are_the_recorded_actor() {
    let server = TestServer::with_tenants();
    let mut anon = server.redis();
    assert_eq!(code_of(order(&mut anon, "o-1", "STATE", None)), "NOAUTH");
    let mut acme = connect(&server.url_auth("acme", ACME_TOKEN, false));
    let mut globex = connect(&server.url_auth("globex", GLOBEX_TOKEN, true));
    let mut admin = connect(&server.url_auth("admin", ADMIN_TOKEN, false));

    // A tenant's cart is its own retailer's: retailer_id defaults to the tenant.
    ok(&mut acme, "o-1", "CREATE_CART", Some(r#"{"customer_id":"c-1","currency":"EUR"}"#));
    ok(&mut acme, "o-1", "ADD_ITEM", Some(ADD_P1));
    assert_eq!(
        error_text(order(&mut acme, "o-2", "CREATE_CART", Some(CREATE))),
        "ERR CREATE_CART: field \"retailer_id\": must be this tenant's own name 'acme' (or left out)"
    );

    // globex does not see acme's o-1: for globex it is a new order, and acting on it is
    // refused as on any new order, writing nothing.
    let before = head(&mut admin);
    assert_eq!(text(&get(&state(&mut globex, "o-1"), "status")), "NEW");
    assert_eq!(
        error_text(order(&mut globex, "o-1", "START_CHECKOUT", None)),
        "REJECTED NEW does not accept START_CHECKOUT: only allowed when the order is CART_CREATED"
    );
    // Spelling out acme's stored name reaches globex's own namespace, not acme's.
    assert_eq!(text(&get(&state(&mut globex, "acme:o-1"), "status")), "NEW");
    assert_eq!(head(&mut admin), before);
    // The same order id in two tenants is two orders.
    assert_eq!(ok(&mut globex, "o-1", "CREATE_CART", Some(r#"{"customer_id":"g-1","currency":"GBP"}"#)).0, 1);
    let acme_state = state(&mut acme, "o-1");
    assert_eq!((get(&acme_state, "version"), text(&get(&acme_state, "customer_id"))), (R::Int(2), "c-1".to_string()));
    assert_eq!(text(&get(&state(&mut globex, "o-1"), "customer_id")), "g-1");

    // The actor is the tenant; the admin is "admin".
    let meta = metadata(&mut acme, "order-o-1");
    for m in &meta {
        assert_eq!((m["actor"].as_str(), m["actor_id"].as_str()), (Some("system"), Some("acme")), "{m}");
        assert_eq!((m["retailer_id"].as_str(), m["customer_id"].as_str()), (Some("acme"), Some("c-1")), "{m}");
    }
    assert_eq!(meta[1]["schema"], 2, "ITEM_ADDED is written at its current schema");
    // The admin works in the stored names' space: its own order-o-1 is neither tenant's.
    assert_eq!(text(&get(&state(&mut admin, "o-1"), "status")), "NEW");
    ok(&mut admin, "o-1", "CREATE_CART", Some(CREATE));
    let meta = metadata(&mut admin, "order-o-1");
    assert_eq!((meta[0]["actor"].as_str(), meta[0]["actor_id"].as_str()), (Some("admin"), Some("admin")));
    assert_eq!(meta[0]["retailer_id"].as_str(), Some("shop"), "the admin's order keeps its retailer");
    assert_eq!(version(&mut admin, "acme:order-o-1"), 2);
    assert_eq!(version(&mut admin, "globex:order-o-1"), 1);
}

#[test]
fn a_resent_command_id_is_answered_without_running_again() {
    let server = TestServer::start();
    let mut con = server.redis();
    ok(&mut con, "o-1", "CREATE_CART", Some(CREATE));
    let id = "6558fb4a-a64d-4452-b1d1-3cf2a5d33103";
    let add =
        format!(r#"{{"product_id":"p1","quantity":1,"unit_price":{{"amount":100,"currency":"EUR"}},"id":"{id}"}}"#);
    let first = ok(&mut con, "o-1", "ADD_ITEM", Some(&add));
    assert_eq!(ok(&mut con, "o-1", "ADD_ITEM", Some(&add)), first, "the reply lost, the command resent");
    assert_eq!(version(&mut con, "order-o-1"), 2);
    assert_eq!(metadata(&mut con, "order-o-1")[1]["causation_id"].as_str(), Some(id));
    // Without an id, or with another, the same command is another command.
    let again = r#"{"product_id":"p1","quantity":1,"unit_price":{"amount":100,"currency":"EUR"}}"#;
    assert_eq!(ok(&mut con, "o-1", "ADD_ITEM", Some(again)).0, 3);
    let quantity = |con: &mut redis::Connection| {
        let R::Array(items) = get(&state(con, "o-1"), "items") else { panic!() };
        get(&fields(&items[0]), "quantity")
    };
    assert_eq!(quantity(&mut con), R::Int(2));
    // Resent after another command landed on top of it: still answered with its own first
    // result (the whole order is searched), and nothing is added again.
    assert_eq!(ok(&mut con, "o-1", "ADD_ITEM", Some(&add)), first);
    assert_eq!(quantity(&mut con), R::Int(2));
    assert_eq!(version(&mut con, "order-o-1"), 3);
}

#[test]
fn concurrent_commands_on_one_order_are_retried_on_fresh_state() {
    let server = TestServer::start();
    let mut con = server.redis();
    ok(&mut con, "o-1", "CREATE_CART", Some(CREATE));
    let writers = 6;
    let results: Vec<redis::RedisResult<Vec<i64>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let mut con = server.redis();
                scope.spawn(move || {
                    let json = format!(
                        r#"{{"product_id":"w{w}","quantity":1,"unit_price":{{"amount":100,"currency":"EUR"}}}}"#
                    );
                    order(&mut con, "o-1", "ADD_ITEM", Some(&json))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Each command either wrote its one event or, having lost every attempt, wrote nothing
    // and said so; the state has exactly the lines of the ones that were written.
    let mut versions = Vec::new();
    for result in &results {
        match result {
            Ok(v) => versions.push(v[0]),
            Err(e) => assert_eq!(e.code(), Some("CONFLICT"), "{e}"),
        }
    }
    versions.sort_unstable();
    assert_eq!(versions, (2..2 + versions.len() as i64).collect::<Vec<_>>());
    let R::Array(items) = get(&state(&mut con, "o-1"), "items") else { panic!() };
    assert_eq!(items.len(), versions.len());
    assert_eq!(version(&mut con, "order-o-1"), 1 + versions.len() as i64);
}

#[test]
fn a_command_id_reused_for_another_command_is_an_error_and_writes_nothing() {
    let server = TestServer::start();
    let mut con = server.redis();
    ok(&mut con, "o-1", "CREATE_CART", Some(CREATE));
    ok(&mut con, "o-1", "ADD_ITEM", Some(ADD_P1));
    let id = "0b6f2a55-1c1e-4c4e-9a55-52a7d0f0c001";
    let checkout = format!(r#"{{"id":"{id}"}}"#);
    let first = ok(&mut con, "o-1", "START_CHECKOUT", Some(&checkout));
    let before = head(&mut con);
    // Another command, or the same command with other arguments, under a used id: the client
    // would otherwise believe its cancel happened.
    let cancel = format!(r#"{{"reason":"changed my mind","id":"{id}"}}"#);
    assert_eq!(
        error_text(order(&mut con, "o-1", "CANCEL", Some(&cancel))),
        format!(
            "ERR command id {id} was already used by version 3 of order 'o-1' (CHECKOUT_STARTED); \
             CANCEL with these arguments is another command: give it a new id"
        )
    );
    let other_add =
        format!(r#"{{"product_id":"p9","quantity":1,"unit_price":{{"amount":5,"currency":"EUR"}},"id":"{id}"}}"#);
    assert!(error_text(order(&mut con, "o-1", "ADD_ITEM", Some(&other_add))).starts_with("ERR command id "));
    assert_eq!(head(&mut con), before, "nothing written");
    assert_eq!(text(&get(&state(&mut con, "o-1"), "status")), "CHECKOUT_STARTED");
    // The same command resent is still answered with its first result.
    assert_eq!(ok(&mut con, "o-1", "START_CHECKOUT", Some(&checkout)), first);
}

#[test]
fn malformed_arguments_are_err_and_state_rules_are_rejected() {
    let server = TestServer::start();
    let mut con = server.redis();
    assert_eq!(
        error_text(order(
            &mut con,
            "o-1",
            "CREATE_CART",
            Some(r#"{"retailer_id":"s","customer_id":"c","currency":"eur"}"#)
        )),
        "ERR CREATE_CART: currency 'eur' is not a three-letter ISO 4217 code"
    );
    assert_eq!(
        error_text(order(
            &mut con,
            "o-1",
            "CREATE_CART",
            Some(r#"{"retailer_id":"","customer_id":"c","currency":"EUR"}"#)
        )),
        "ERR CREATE_CART: retailer_id must be 1..=256 bytes"
    );
    ok(&mut con, "o-1", "CREATE_CART", Some(CREATE));
    let before = head(&mut con);
    for (json, expected) in [
        (
            r#"{"product_id":"p","quantity":0,"unit_price":{"amount":1,"currency":"EUR"}}"#,
            "ERR ADD_ITEM: quantity must be 1..=10000",
        ),
        (
            r#"{"product_id":"","quantity":1,"unit_price":{"amount":1,"currency":"EUR"}}"#,
            "ERR ADD_ITEM: product_id must be 1..=256 bytes",
        ),
        (
            r#"{"product_id":"p","quantity":1,"unit_price":{"amount":0,"currency":"EUR"}}"#,
            "ERR ADD_ITEM: unit_price must be 1..=1000000000000 minor units",
        ),
        // A currency the order is not in depends on the order: the state's rule, REJECTED.
        (
            r#"{"product_id":"p","quantity":1,"unit_price":{"amount":1,"currency":"GBP"}}"#,
            "REJECTED CART_CREATED does not accept ADD_ITEM: unit_price is in GBP, the order is in EUR",
        ),
    ] {
        assert_eq!(error_text(order(&mut con, "o-1", "ADD_ITEM", Some(json))), expected, "{json}");
    }
    assert_eq!(head(&mut con), before, "nothing written");
}

#[test]
fn a_cart_cannot_grow_past_what_one_payment_can_pay() {
    let server = TestServer::start();
    let mut con = server.redis();
    ok(&mut con, "o-1", "CREATE_CART", Some(CREATE));
    // 10,000 × 10^11 = 10^15 per line: the total passes the payment limit (10^12) at once.
    let line = |p: &str, quantity: u32, amount: u64| {
        format!(r#"{{"product_id":"{p}","quantity":{quantity},"unit_price":{{"amount":{amount},"currency":"EUR"}}}}"#)
    };
    ok(&mut con, "o-1", "ADD_ITEM", Some(&line("a", 10, 100_000_000_000)));
    let before = head(&mut con);
    assert_eq!(
        error_text(order(&mut con, "o-1", "ADD_ITEM", Some(&line("b", 1, 1)))),
        "REJECTED CART_CREATED does not accept ADD_ITEM: the order total would be 10000000000.01 EUR, \
         more than one payment can take (10000000000.00 EUR)"
    );
    assert_eq!(
        error_text(order(&mut con, "o-1", "ADD_ITEM", Some(&line("c", 10_000, 1_000_000_000_000)))),
        "REJECTED CART_CREATED does not accept ADD_ITEM: the order total would be 100010000000000.00 EUR, \
         more than one payment can take (10000000000.00 EUR)"
    );
    assert_eq!(head(&mut con), before, "nothing written");
    // At the limit the order can still be paid in one payment.
    ok(&mut con, "o-1", "START_CHECKOUT", None);
    let pay = r#"{"transaction_id":"t","gateway":"g","amount":{"amount":1000000000000,"currency":"EUR"}}"#;
    ok(&mut con, "o-1", "CONFIRM_PAYMENT", Some(pay));
}

#[test]
fn the_admin_names_a_tenants_order_by_its_stored_name() {
    let server = TestServer::with_tenants();
    let mut acme = connect(&server.url_auth("acme", ACME_TOKEN, false));
    let mut admin = connect(&server.url_auth("admin", ADMIN_TOKEN, false));
    ok(&mut acme, "o-7", "CREATE_CART", Some(r#"{"customer_id":"c-1","currency":"EUR"}"#));
    // As READ takes it: acme:order-o-7.
    assert_eq!(text(&get(&state(&mut admin, "acme:order-o-7"), "status")), "CART_CREATED");
    assert_eq!(ok(&mut admin, "acme:order-o-7", "ADD_ITEM", Some(ADD_P1)).0, 2);
    assert_eq!(version(&mut admin, "acme:order-o-7"), 2);
    assert_eq!(version(&mut admin, "order-acme:order-o-7"), 0, "no stray stream");
    let lines: Vec<String> = redis::cmd("TIMELINE").arg("acme:order-o-7").query(&mut admin).unwrap();
    assert!(lines.iter().any(|l| l.contains("ITEM_ADDED")), "{lines:?}");
    let lines: Vec<String> = redis::cmd("TIMELINE").arg("acme:order-o").query(&mut admin).unwrap();
    assert!(lines.iter().any(|l| l.contains("CART_CREATED")), "a unique prefix: {lines:?}");
    // A tenant spelling another's stored name stays in its own namespace, as before.
    assert_eq!(text(&get(&state(&mut acme, "globex:order-o-7"), "status")), "NEW");
}
