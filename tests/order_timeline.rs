//! The timeline reads like a support desk's audit trail, line for line in shape:
//! `10:04:18 — PAYMENT_CONFIRMED { gateway: "stripe", txn: "pi_xxx" } (system)`.

use logbook::time;
use logbook::{ExpectedVersion, NewEvent, Options, Store, SyncMode};
use logbook_order::timeline::{self, entry};
use logbook_order::{self as order, Money, OrderCommand, OrderMetadata};

/// 2025-11-01 at h:m:s UTC, in microseconds.
fn at(h: i64, m: i64, s: i64) -> i64 {
    time::days_from_civil(2025, 11, 1) * time::DAY_US + ((h * 60 + m) * 60 + s) * 1_000_000
}

#[test]
fn entries_render_like_the_seed() {
    let cases: Vec<(i64, &str, &str, &str, &str)> = vec![
        (
            at(10, 3, 21),
            "CART_CREATED",
            r#"{"retailer_id":"r","customer_id":"c","currency":"EUR"}"#,
            r#"{"actor":"customer"}"#,
            "10:03:21 — CART_CREATED (customer)",
        ),
        (
            at(10, 3, 45),
            "ITEM_ADDED",
            r#"{"product_id":"Blue T-Shirt","quantity":2,"unit_price":{"amount":1999,"currency":"EUR"}}"#,
            r#"{"actor":"customer","schema":2}"#,
            r#"10:03:45 — ITEM_ADDED { product: "Blue T-Shirt", qty: 2, unit_price: "19.99 EUR" } (customer)"#,
        ),
        (at(10, 4, 12), "CHECKOUT_STARTED", "{}", r#"{"actor":"customer"}"#, "10:04:12 — CHECKOUT_STARTED (customer)"),
        (
            at(10, 4, 18),
            "PAYMENT_CONFIRMED",
            r#"{"transaction_id":"pi_xxx","gateway":"stripe","amount":{"amount":3998,"currency":"EUR"}}"#,
            r#"{"actor":"system","retailer_id":"retailer_123"}"#,
            r#"10:04:18 — PAYMENT_CONFIRMED { gateway: "stripe", txn: "pi_xxx", amount: "39.98 EUR" } (system)"#,
        ),
        (at(10, 4, 19), "ORDER_PLACED", "{}", r#"{"actor":"system"}"#, "10:04:19 — ORDER_PLACED (system)"),
        (
            at(10, 6, 44),
            "STATUS_UPDATED",
            r#"{"to":"processing"}"#,
            r#"{"actor":"system"}"#,
            r#"10:06:44 — STATUS_UPDATED { to: "processing" } (system)"#,
        ),
        (
            at(10, 42, 0),
            "SHIPPED",
            r#"{"tracking":"BD1234567IN"}"#,
            r#"{"actor":"admin","actor_id":"retailer_123"}"#,
            r#"10:42:00 — SHIPPED { tracking: "BD1234567IN" } (admin:retailer_123)"#,
        ),
        (
            at(15, 30, 0),
            "DELIVERED",
            "{}",
            r#"{"actor":"system","user_agent":"courier webhook"}"#,
            "15:30:00 — DELIVERED (system via courier webhook)",
        ),
        (
            at(16, 0, 0),
            "REFUND_ISSUED",
            r#"{"amount":{"amount":500,"currency":"JPY"}}"#,
            r#"{"actor":"agent","actor_id":"a7"}"#,
            r#"16:00:00 — REFUND_ISSUED { amount: "500 JPY" } (agent:a7)"#,
        ),
        // Not JSON, unknown type, control characters: still one readable line.
        (at(16, 1, 0), "SOMETHING_ELSE", "not json", "", "16:01:00 — SOMETHING_ELSE"),
        (
            at(16, 2, 0),
            "ORDER_CANCELLED",
            "{\"reason\":\"line1\\nline2\"}",
            r#"{"actor":"admin"}"#,
            r#"16:02:00 — ORDER_CANCELLED { reason: "line1line2" } (admin)"#,
        ),
    ];
    for (ts, event_type, data, metadata, expected) in cases {
        let e = entry(1, 1, "id", ts, event_type, data.as_bytes(), metadata.as_bytes());
        assert_eq!(e.line(), expected);
        assert_eq!(e.at[..10], *"2025-11-01");
    }
}

#[test]
fn an_order_timeline_from_the_store_in_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options { sync: SyncMode::Never, ..Options::default() }).unwrap();
    let repo = order::repository(&store);
    let stream = order::stream_name("6f1c");
    let customer = OrderMetadata::customer("retailer_123", "cust_9").with_ip("203.0.113.7").with_correlation("sess-1");
    let system = OrderMetadata::system("retailer_123");
    let steps = [
        (
            OrderCommand::CreateCart {
                retailer_id: "retailer_123".into(),
                customer_id: "cust_9".into(),
                currency: "EUR".into(),
            },
            &customer,
        ),
        (
            OrderCommand::AddItem {
                product_id: "blue-tshirt".into(),
                quantity: 2,
                unit_price: Money::new(1999, "EUR"),
            },
            &customer,
        ),
        (OrderCommand::StartCheckout, &customer),
        (
            OrderCommand::ConfirmPayment {
                transaction_id: "pi_xxx".into(),
                gateway: "stripe".into(),
                amount: Money::new(3998, "EUR"),
            },
            &system,
        ),
        (OrderCommand::PlaceOrder, &system),
    ];
    for (command, meta) in steps {
        repo.execute(&stream, &command, meta).unwrap();
    }
    let admin = OrderMetadata::admin("retailer_123", "retailer_123");
    repo.execute(&stream, &OrderCommand::StartProcessing, &system).unwrap();
    repo.execute(&stream, &OrderCommand::Ship { tracking: "BD1234567IN".into() }, &admin).unwrap();
    let courier = OrderMetadata::system("retailer_123").with_user_agent("courier webhook");
    repo.execute(&stream, &OrderCommand::Deliver, &courier).unwrap();

    // By order id or by stream name.
    let tl = timeline::timeline(&store, "6f1c").unwrap();
    assert_eq!(tl, timeline::timeline(&store, "order-6f1c").unwrap());
    assert_eq!((tl.order_id.as_str(), tl.stream.as_str(), tl.truncated), ("6f1c", "order-6f1c", false));
    let tails: Vec<String> = tl.entries.iter().map(|e| e.line()[8..].to_string()).collect();
    assert_eq!(
        tails,
        [
            " — CART_CREATED (customer)",
            r#" — ITEM_ADDED { product: "blue-tshirt", qty: 2, unit_price: "19.99 EUR" } (customer)"#,
            " — CHECKOUT_STARTED (customer)",
            r#" — PAYMENT_CONFIRMED { gateway: "stripe", txn: "pi_xxx", amount: "39.98 EUR" } (system)"#,
            " — ORDER_PLACED (system)",
            r#" — STATUS_UPDATED { to: "processing" } (system)"#,
            r#" — SHIPPED { tracking: "BD1234567IN" } (admin:retailer_123)"#,
            " — DELIVERED (system via courier webhook)",
        ]
    );
    for e in &tl.entries {
        assert_eq!(e.time, time::hms(e.timestamp_us));
        assert!(e.line().starts_with(&e.time));
    }
    let text = tl.to_text();
    assert!(text.starts_with("order 6f1c (8 events, times in UTC)\n"), "{text}");
    assert_eq!(text.lines().count(), 1 + 1 + 1 + 8, "heading, status, one date line, eight events:\n{text}");
    let last = tl.entries[7].timestamp_us;
    let status = format!(
        "status: DELIVERED · 2 items · paid 39.98 EUR · tracking BD1234567IN · last change {} {} UTC",
        time::date(last),
        time::hms(last)
    );
    assert_eq!(text.lines().nth(1), Some(status.as_str()), "{text}");
    assert_eq!(text.lines().collect::<Vec<_>>(), tl.lines());

    let json: serde_json::Value = serde_json::from_str(&tl.to_json()).unwrap();
    let first = &json["entries"][0];
    assert_eq!(first["event_type"], "CART_CREATED");
    assert_eq!(first["version"], 1);
    assert_eq!(first["metadata"]["ip_address"], "203.0.113.7");
    assert_eq!(first["metadata"]["correlation_id"], "sess-1");
    assert_eq!(json["entries"][3]["data"]["transaction_id"], "pi_xxx");

    // The audit trail shows what is stored, even an event the state machine would refuse.
    store
        .append(&stream, ExpectedVersion::Exact(8), vec![NewEvent::new("SHIPPED", br#"{"tracking":"late"}"#.to_vec())])
        .unwrap();
    let tl = timeline::timeline(&store, "6f1c").unwrap();
    assert_eq!(tl.entries.len(), 9);
    assert!(tl.entries[8].line().ends_with(r#"SHIPPED { tracking: "late" }"#));

    // A unique prefix is enough; an unknown or ambiguous one is an error that says so.
    assert_eq!(timeline::timeline(&store, "6f").unwrap(), tl);
    assert_eq!(timeline::timeline(&store, "order-6f").unwrap(), tl);
    let err = timeline::timeline(&store, "nope").unwrap_err();
    assert!(matches!(err, timeline::TimelineError::NoSuchOrder(ref id) if id == "nope"), "{err}");
    assert_eq!(err.to_string(), "no such order 'nope'");
    assert!(matches!(timeline::timeline(&store, ""), Err(timeline::TimelineError::EmptyId)));
    store
        .append(
            &order::stream_name("6f2a"),
            ExpectedVersion::NoStream,
            vec![NewEvent::new("CART_CREATED", b"{}".to_vec())],
        )
        .unwrap();
    let err = timeline::timeline(&store, "6f").unwrap_err().to_string();
    assert!(err.contains("'6f' is ambiguous") && err.contains("6f1c, 6f2a"), "{err}");
    // A stream with no events read directly is an empty timeline without a status.
    let none = timeline::timeline_of_stream(&store, "nope", "order-nope").unwrap();
    assert!(none.entries.is_empty() && none.status.is_none());
    assert!(none.to_text().contains("no events"));
}

/// After retention removed an order's first events from the hot store, the timeline shows
/// each remaining event once (it paged by count read, so every event after the gap came back
/// again) and says that earlier events are no longer stored.
#[test]
fn a_timeline_after_retention_shows_each_event_once_and_says_what_is_gone() {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicI64::new(at(9, 0, 0)));
    let options = Options {
        sync: SyncMode::Never,
        segment_bytes: 4096,
        clock: logbook::Clock::manual(Arc::clone(&now)),
        ..Options::default()
    };
    let store = Store::open(dir.path(), options).unwrap();
    let event = |ty: &str, data: &str| vec![NewEvent::new(ty, data.as_bytes().to_vec())];
    // 60 old events of the order (they fill sealed segments), then 3 recent ones.
    for i in 0..60 {
        store.append("order-ab12", ExpectedVersion::Any, event("ITEM_ADDED", &format!(r#"{{"n":{i}}}"#))).unwrap();
    }
    now.fetch_add(40 * time::DAY_US, Ordering::AcqRel);
    for ty in ["PAYMENT_CONFIRMED", "ORDER_PLACED", "SHIPPED"] {
        store.append("order-ab12", ExpectedVersion::Any, event(ty, "{}")).unwrap();
    }
    // Something else after them, so the order's recent events sit in a sealed segment too.
    for i in 0..40 {
        store.append(&format!("cart-{i}"), ExpectedVersion::Any, event("CART_VIEWED", "{}")).unwrap();
    }
    let policy = logbook::RetentionPolicy {
        rules: vec![logbook::RetentionRule {
            category: Some("order".into()),
            event_type: None,
            max_age_us: Some(30 * time::DAY_US),
            max_count: None,
        }],
        archive: false,
        ..logbook::RetentionPolicy::default()
    };
    let report = logbook::compact(&store, &policy, now.load(Ordering::Acquire), |_, _| {}).unwrap();
    let remaining = store.read_stream("order-ab12", 1, 1000, logbook::Direction::Forward).unwrap();
    assert!(remaining.len() < 63 && report.rewritten > 0, "the rule removed old events: {report:?}");

    let timeline = timeline::timeline(&store, "ab12").unwrap();
    let versions: Vec<u64> = timeline.entries.iter().map(|e| e.version).collect();
    let stored: Vec<u64> = remaining.iter().map(|e| e.version()).collect();
    assert_eq!(versions, stored, "each stored event once, in order");
    assert_eq!(timeline.not_stored, 63 - stored.len() as u64);
    let text = timeline.to_text();
    assert!(text.contains(&format!("{} earlier events are no longer in the hot store", 63 - stored.len())), "{text}");
}
