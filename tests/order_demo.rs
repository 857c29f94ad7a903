//! The demo generator writes only valid orders (every stream replays through the state
//! machine), covers the unhappy paths, and is deterministic from its seed.

use std::collections::BTreeSet;

use logbook::{Filter, Options, Store, SyncMode};
use logbook_order::demo::DemoClock;
use logbook_order::{self as order, analytics, demo, timeline, Catalogue};

/// 2026-11-26T00:00:00Z: the end of the demo's month of traffic in these tests.
const END_US: i64 = 1_795_651_200_000_000;
const DAY_US: i64 = 86_400_000_000;

fn open(dir: &std::path::Path, clock: &DemoClock) -> Store {
    Store::open(dir, Options { sync: SyncMode::Never, clock: clock.clock(), ..Options::default() }).unwrap()
}

/// (stream, type, data, metadata, timestamp) of one event.
type Row = (String, String, Vec<u8>, Vec<u8>, i64);

/// Every event, in log order.
fn contents(store: &Store) -> Vec<Row> {
    let mut out = Vec::new();
    let mut next = 1;
    loop {
        let page = store.read_all_page(next, 4096, &Filter::all()).unwrap();
        if page.events.is_empty() {
            return out;
        }
        for e in &page.events {
            let (data, meta) = (e.data().to_vec(), e.metadata().to_vec());
            out.push((e.stream().to_string(), e.event_type().to_string(), data, meta, e.timestamp_us()));
        }
        next = page.next_position;
    }
}

#[test]
fn demo_orders_are_valid_and_cover_the_unhappy_paths() {
    let dir = tempfile::tempdir().unwrap();
    let clock = DemoClock::ending_at(END_US);
    let store = open(dir.path(), &clock);
    let summary = demo::generate(&store, 400, 42, &clock).unwrap();
    assert_eq!(summary.orders, 400);
    assert_eq!(summary.by_status.values().sum::<usize>(), 400);
    assert_eq!(summary.by_retailer.len(), demo::RETAILERS.len());
    assert_eq!(store.head_position(), summary.events);
    for status in ["CART_CREATED", "CHECKOUT_STARTED", "PAYMENT_FAILED", "DELIVERED", "DELIVERY_FAILED", "CANCELLED"] {
        assert!(summary.by_status.contains_key(status), "no order ended {status}: {:?}", summary.by_status);
    }

    let events = contents(&store);
    let streams: BTreeSet<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(streams.len(), 400);
    let types: BTreeSet<&str> = events.iter().map(|e| e.1.as_str()).collect();
    for t in order::event_types::ALL {
        assert!(types.contains(t), "the demo never wrote {t}");
    }
    let upcasters = order::upcasters(Catalogue::demo());
    for stream in &streams {
        let id = order::order_id_of(stream).unwrap();
        let state = order::validate_order(&store, &upcasters, id).unwrap().unwrap_or_else(|v| panic!("{v}"));
        assert!(state.refunded <= state.paid);
    }

    // The examples exist and have timelines; the funnel sees every order.
    let happy = summary.happy_example.as_deref().unwrap();
    let troubled = summary.troubled_example.as_deref().unwrap();
    assert!(timeline::timeline(&store, happy).unwrap().entries.last().unwrap().event_type == "DELIVERED");
    assert!(!timeline::timeline(&store, troubled).unwrap().entries.is_empty());
    let report = analytics::report(&store, &analytics::Query::all()).unwrap();
    assert_eq!(report.funnel.stages[0].orders, 400);
    assert_eq!(report.events, summary.events);
}

#[test]
fn demo_is_deterministic_and_refuses_to_run_twice() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (clock_a, clock_b) = (DemoClock::ending_at(END_US), DemoClock::ending_at(END_US));
    let (store_a, store_b) = (open(a.path(), &clock_a), open(b.path(), &clock_b));
    let sa = demo::generate(&store_a, 60, 7, &clock_a).unwrap();
    let sb = demo::generate(&store_b, 60, 7, &clock_b).unwrap();
    assert_eq!(sa, sb);
    assert_eq!(contents(&store_a), contents(&store_b), "the same orders at the same times");
    let c = tempfile::tempdir().unwrap();
    let clock_c = DemoClock::ending_at(END_US);
    let other = demo::generate(&open(c.path(), &clock_c), 60, 8, &clock_c).unwrap();
    assert_ne!(other.happy_example, sa.happy_example);

    let err = demo::generate(&store_a, 60, 7, &clock_a).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");

    // A store on another clock is refused: its events would all carry the wall clock.
    let d = tempfile::tempdir().unwrap();
    let wall = Store::open(d.path(), Options::default()).unwrap();
    let err = demo::generate(&wall, 5, 1, &DemoClock::ending_at(END_US)).unwrap_err();
    assert!(err.to_string().contains("demo's clock"), "{err}");
}

#[test]
fn demo_traffic_is_a_month_in_time_order_with_the_gaps_of_real_orders() {
    let dir = tempfile::tempdir().unwrap();
    let clock = DemoClock::ending_at(END_US);
    let store = open(dir.path(), &clock);
    let summary = demo::generate(&store, 300, 5, &clock).unwrap();
    let events = contents(&store);
    let times: Vec<i64> = events.iter().map(|e| e.4).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "the log's order is the time order");
    assert!(times[0] >= END_US - 30 * DAY_US && *times.last().unwrap() <= END_US);
    let days: BTreeSet<i64> = times.iter().map(|t| t.div_euclid(DAY_US)).collect();
    assert!(days.len() >= 29, "events on {} days", days.len());
    // Every day of the month has new carts (a funnel by day, not one bucket).
    let by_day = analytics::report(&store, &analytics::Query::all()).unwrap().funnel_by_day;
    assert!(by_day.len() >= 29, "{by_day:?}");
    assert_eq!(by_day.iter().map(|d| d.carts).sum::<u64>(), 300);
    assert!(by_day.iter().filter(|d| d.carts > 0).count() >= 28, "{by_day:?}");
    assert!(by_day.iter().filter(|d| d.delivered > 0).count() >= 20, "{by_day:?}");

    // Per order: cart to checkout in minutes, payment to shipping a day or two, delivery days
    // after shipping; and the newest orders are still under way.
    let mut by_stream: std::collections::BTreeMap<&str, Vec<(&str, i64)>> = Default::default();
    for (stream, event_type, _, _, at) in &events {
        by_stream.entry(stream).or_default().push((event_type, *at));
    }
    let at = |events: &[(&str, i64)], t: &str| events.iter().find(|e| e.0 == t).map(|e| e.1);
    let (mut shipped, mut delivered) = (0, 0);
    for events in by_stream.values() {
        if let (Some(cart), Some(checkout)) = (at(events, "CART_CREATED"), at(events, "CHECKOUT_STARTED")) {
            assert!((60_000_000..3_600_000_000).contains(&(checkout - cart)), "{events:?}");
        }
        if let (Some(paid), Some(ship)) = (at(events, "PAYMENT_CONFIRMED"), at(events, "SHIPPED")) {
            assert!((18 * DAY_US / 24..3 * DAY_US).contains(&(ship - paid)), "{events:?}");
            shipped += 1;
        }
        if let (Some(ship), Some(done)) = (at(events, "SHIPPED"), at(events, "DELIVERED")) {
            assert!((DAY_US..7 * DAY_US).contains(&(done - ship)), "{events:?}");
            delivered += 1;
        }
    }
    assert!(shipped > 100 && delivered > 80, "shipped {shipped}, delivered {delivered}");
    let under_way: usize =
        ["ORDER_PLACED", "PROCESSING", "SHIPPED"].iter().filter_map(|s| summary.by_status.get(*s)).sum();
    assert!(under_way > 0, "the newest orders are still under way: {:?}", summary.by_status);
}
