//! The demo generator writes only valid orders (every stream replays through the state
//! machine), covers the unhappy paths, and is deterministic from its seed.

use std::collections::BTreeSet;

use logbook::{Filter, Options, Store, SyncMode};
use logbook_order::{self as order, analytics, demo, timeline, Catalogue};

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, Options { sync: SyncMode::Never, ..Options::default() }).unwrap()
}

/// (stream, type, data, metadata) of every event, in log order.
fn contents(store: &Store) -> Vec<(String, String, Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut next = 1;
    loop {
        let page = store.read_all_page(next, 4096, &Filter::all()).unwrap();
        if page.events.is_empty() {
            return out;
        }
        for e in &page.events {
            out.push((e.stream().to_string(), e.event_type().to_string(), e.data().to_vec(), e.metadata().to_vec()));
        }
        next = page.next_position;
    }
}

#[test]
fn demo_orders_are_valid_and_cover_the_unhappy_paths() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let summary = demo::generate(&store, 400, 42).unwrap();
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
    let (store_a, store_b) = (open(a.path()), open(b.path()));
    let sa = demo::generate(&store_a, 60, 7).unwrap();
    let sb = demo::generate(&store_b, 60, 7).unwrap();
    assert_eq!(sa, sb);
    assert_eq!(contents(&store_a), contents(&store_b));
    let c = tempfile::tempdir().unwrap();
    let other = demo::generate(&open(c.path()), 60, 8).unwrap();
    assert_ne!(other.happy_example, sa.happy_example);

    let err = demo::generate(&store_a, 60, 7).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
}
