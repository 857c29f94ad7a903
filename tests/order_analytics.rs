//! Funnel numbers on a small dataset whose answer is known by hand.

use logbook::time;
use logbook::{ExpectedVersion, NewEvent, Options, Store, SyncMode};
use logbook_es::aggregate::Repository;
use logbook_order::analytics::{self, Bucket, Query};
use logbook_order::{self as order, Money, Order, OrderCommand, OrderMetadata};

/// How far an order goes.
#[derive(Clone, Copy)]
enum Path {
    CartOnly,
    CheckoutThenCancel,
    PaymentFailed,
    Placed,
    Shipped,
    Delivered,
}

fn drive(repo: &Repository<Order>, id: &str, retailer: &str, currency: &str, path: Path) {
    let stream = order::stream_name(id);
    let m = OrderMetadata::customer(retailer, "cust");
    let run = |c: OrderCommand| {
        repo.execute(&stream, &c, &m).unwrap();
    };
    run(OrderCommand::CreateCart {
        retailer_id: retailer.into(),
        customer_id: "cust".into(),
        currency: currency.into(),
    });
    run(OrderCommand::AddItem { product_id: "p".into(), quantity: 1, unit_price: Money::new(1000, currency) });
    if matches!(path, Path::CartOnly) {
        return;
    }
    run(OrderCommand::StartCheckout);
    match path {
        Path::CheckoutThenCancel => return run(OrderCommand::Cancel { reason: "changed mind".into() }),
        Path::PaymentFailed => return run(OrderCommand::FailPayment { reason: "card_declined".into() }),
        _ => {}
    }
    run(OrderCommand::ConfirmPayment {
        transaction_id: "pi".into(),
        gateway: "stripe".into(),
        amount: Money::new(1000, currency),
    });
    run(OrderCommand::PlaceOrder);
    if matches!(path, Path::Placed) {
        return;
    }
    run(OrderCommand::StartProcessing);
    run(OrderCommand::Ship { tracking: "T1".into() });
    if matches!(path, Path::Delivered) {
        run(OrderCommand::Deliver);
    }
}

fn dataset() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options { sync: SyncMode::Never, ..Options::default() }).unwrap();
    let repo = order::repository(&store);
    use Path::*;
    for (id, path) in [("a1", Delivered), ("a2", Delivered), ("a3", Shipped), ("a4", PaymentFailed), ("a5", CartOnly)] {
        drive(&repo, id, "r-a", "EUR", path);
    }
    for (id, path) in [("b1", Placed), ("b2", CheckoutThenCancel), ("b3", CartOnly), ("b4", CartOnly)] {
        drive(&repo, id, "r-b", "USD", path);
    }
    // Not an order: never counted.
    store.append("customer-1", ExpectedVersion::Any, vec![NewEvent::new("CART_CREATED", b"{}".to_vec())]).unwrap();
    (dir, store)
}

#[test]
fn conversion_per_retailer_matches_the_seed_query() {
    let (_dir, store) = dataset();
    let rows = analytics::conversion(&store, &Query::all()).unwrap();
    let got: Vec<(&str, u64, u64, Option<f64>)> =
        rows.iter().map(|r| (r.retailer_id.as_str(), r.carts, r.orders, r.conversion_pct)).collect();
    // ORDER BY conversion_pct: lowest first.
    assert_eq!(got, [("r-b", 4, 1, Some(25.0)), ("r-a", 5, 3, Some(60.0))]);
    let text = analytics::conversion_text(&rows);
    assert_eq!(
        text,
        "retailer_id  carts  orders  conversion_pct\n\
         -----------  -----  ------  --------------\n\
         r-b              4       1            25.0\n\
         r-a              5       3            60.0\n"
    );
}

#[test]
fn funnel_stages_and_drop_off() {
    let (_dir, store) = dataset();
    let funnel = analytics::funnel(&store, &Query::all()).unwrap();
    type Row<'a> = (&'a str, u64, Option<f64>, u64, Option<f64>);
    let got: Vec<Row<'_>> = funnel
        .stages
        .iter()
        .map(|s| (s.stage.as_str(), s.orders, s.pct_of_carts, s.drop_off, s.drop_off_pct))
        .collect();
    assert_eq!(
        got,
        [
            ("cart", 9, Some(100.0), 0, None),
            ("checkout", 6, Some(66.7), 3, Some(33.3)),
            ("paid", 4, Some(44.4), 2, Some(33.3)),
            ("placed", 4, Some(44.4), 0, Some(0.0)),
            ("processing", 3, Some(33.3), 1, Some(25.0)),
            ("shipped", 3, Some(33.3), 0, Some(0.0)),
            ("delivered", 2, Some(22.2), 1, Some(33.3)),
        ]
    );
    assert_eq!(funnel.exits["PAYMENT_FAILED"], 1);
    assert_eq!(funnel.exits["ORDER_CANCELLED"], 1);
    assert_eq!(funnel.exits["DELIVERY_FAILED"], 0);
    let text = analytics::funnel_text(&funnel);
    assert!(text.contains("\ncheckout    CHECKOUT_STARTED        6        66.7  3 (33.3%)\n"), "{text}");

    let only_b = analytics::funnel(&store, &Query::all().for_retailer("r-b")).unwrap();
    let counts: Vec<u64> = only_b.stages.iter().map(|s| s.orders).collect();
    assert_eq!(counts, [4, 2, 1, 1, 0, 0, 0]);
    assert_eq!(only_b.retailer_id.as_deref(), Some("r-b"));
}

#[test]
fn event_types_activity_and_windows() {
    let (_dir, store) = dataset();
    let types = analytics::event_types(&store, &Query::all()).unwrap();
    let got: Vec<(&str, u64)> = types.iter().map(|t| (t.event_type.as_str(), t.events)).collect();
    assert_eq!(
        got,
        [
            ("CART_CREATED", 9),
            ("ITEM_ADDED", 9),
            ("CHECKOUT_STARTED", 6),
            ("ORDER_PLACED", 4),
            ("PAYMENT_CONFIRMED", 4),
            ("SHIPPED", 3),
            ("STATUS_UPDATED", 3),
            ("DELIVERED", 2),
            ("ORDER_CANCELLED", 1),
            ("PAYMENT_FAILED", 1),
        ]
    );
    let per_hour = analytics::activity(&store, &Query::all(), Bucket::Hour).unwrap();
    let per_day = analytics::activity(&store, &Query::all(), Bucket::Day).unwrap();
    assert_eq!(per_hour.iter().map(|b| b.events).sum::<u64>(), 42);
    assert_eq!(per_day.iter().map(|b| b.events).sum::<u64>(), 42);
    assert!(per_day.iter().all(|b| b.start.ends_with("T00:00:00.000000Z")));
    assert!(per_hour.iter().all(|b| b.start_us % time::HOUR_US == 0));

    let report = analytics::report(&store, &Query::all()).unwrap();
    assert_eq!(report.events, 42);
    assert_eq!(report.funnels.len(), 2);
    assert_eq!(report.conversion, analytics::conversion(&store, &Query::all()).unwrap());
    let text = report.to_text();
    assert!(text.starts_with("42 order events"), "{text}");
    // The funnel by day: one row per day with events, the stage counts adding up to the funnel's.
    assert_eq!(report.funnel_by_day.len(), per_day.len());
    assert_eq!(report.funnel_by_day.iter().map(|d| d.events).sum::<u64>(), 42);
    assert_eq!(report.funnel_by_day.iter().map(|d| d.carts).sum::<u64>(), 9);
    assert_eq!(report.funnel_by_day.iter().map(|d| d.paid).sum::<u64>(), 4);
    assert_eq!(
        report.funnel_by_day.iter().map(|d| (d.delivered, d.failed, d.cancelled)).fold((0, 0, 0), |a, b| (
            a.0 + b.0,
            a.1 + b.1,
            a.2 + b.2
        )),
        (2, 1, 1)
    );
    assert!(text.contains("funnel by day (UTC)\nday "), "{text}");
    assert!(report.funnel_by_day.iter().all(|d| text.contains(&format!("\n{}  ", d.date))), "{text}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["conversion"][0]["retailer_id"], "r-b");
    assert_eq!(json["funnel"]["stages"][0]["orders"], 9);

    // Windows are on event time.
    let future = Query { since_us: Some(time::now_us() + time::HOUR_US), ..Query::all() };
    assert_eq!(analytics::report(&store, &future).unwrap().events, 0);
    let past = Query { until_us: Some(time::now_us() - time::DAY_US), ..Query::all() };
    assert_eq!(analytics::report(&store, &past).unwrap().events, 0);
    assert_eq!(analytics::report(&store, &Query::last_days(30)).unwrap().events, 42);
    let b = analytics::report(&store, &Query::last_days(30).for_retailer("r-b")).unwrap();
    assert_eq!((b.events, b.conversion.len()), (13, 1));
}
