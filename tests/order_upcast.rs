//! Upcasting: ITEM_ADDED v1 (the first shape, `{product_id, quantity}`, no price) is read as v2 with
//! the catalogue price, and the stored event is never rewritten.

use logbook::{Direction, ExpectedVersion, NewEvent, Options, Store, SyncMode};
use logbook_es::aggregate::AggregateError;
use logbook_order::{self as order, Catalogue, Money, OrderCommand, OrderMetadata};

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, Options { sync: SyncMode::Never, ..Options::default() }).unwrap()
}

fn legacy_order(store: &Store, stream: &str, product: &str, item_metadata: &[u8]) {
    store
        .append(
            stream,
            ExpectedVersion::NoStream,
            vec![
                NewEvent::new("CART_CREATED", br#"{"retailer_id":"r1","customer_id":"c1","currency":"EUR"}"#.to_vec())
                    .with_metadata(br#"{"actor":"customer","retailer_id":"r1"}"#.to_vec()),
                NewEvent::new("ITEM_ADDED", format!(r#"{{"product_id":"{product}","quantity":2}}"#).into_bytes())
                    .with_metadata(item_metadata.to_vec()),
            ],
        )
        .unwrap();
}

#[test]
fn item_added_v1_gets_the_catalogue_price_without_rewriting_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Absent `schema` means version 1; so does an explicit 1, and empty metadata.
    legacy_order(&store, "order-v1a", "sku-shirt", br#"{"actor":"customer","retailer_id":"r1"}"#);
    legacy_order(&store, "order-v1b", "sku-shirt", br#"{"actor":"customer","retailer_id":"r1","schema":1}"#);
    legacy_order(&store, "order-v1c", "sku-shirt", b"");
    let before = store.read_stream("order-v1a", 1, 10, Direction::Forward).unwrap();
    let before: Vec<Vec<u8>> = before.iter().map(|e| e.data().to_vec()).collect();

    let catalogue = Catalogue::new().with("sku-shirt", Money::new(1999, "EUR"));
    let repo = order::repository_with(&store, catalogue);
    for stream in ["order-v1a", "order-v1b", "order-v1c"] {
        let loaded = repo.load(stream).unwrap();
        let line = &loaded.state.items["sku-shirt"];
        assert_eq!((line.quantity, line.unit_price), (2, 1999), "{stream}");
        assert_eq!(loaded.state.total(), 3998);
    }
    // The stored bytes are what the old code wrote.
    let after = store.read_stream("order-v1a", 1, 10, Direction::Forward).unwrap();
    let after: Vec<Vec<u8>> = after.iter().map(|e| e.data().to_vec()).collect();
    assert_eq!(before, after);

    // New events are written at the current schema, which the metadata records.
    let m = OrderMetadata::customer("r1", "c1");
    let add = OrderCommand::AddItem { product_id: "sku-hat".into(), quantity: 1, unit_price: Money::new(500, "EUR") };
    repo.execute("order-v1a", &add, &m).unwrap();
    let newest = store.read_stream("order-v1a", 3, 1, Direction::Forward).unwrap();
    let metadata: serde_json::Value = serde_json::from_slice(newest[0].metadata()).unwrap();
    assert_eq!(metadata["schema"], 2);
    assert_eq!(metadata["actor"], "customer");
    let data: serde_json::Value = serde_json::from_slice(newest[0].data()).unwrap();
    assert_eq!(data["unit_price"], serde_json::json!({"amount": 500, "currency": "EUR"}));
    assert_eq!(repo.load("order-v1a").unwrap().state.total(), 4498);
    // Timelines and validation read the old events too.
    let upcasters = order::upcasters(Catalogue::new().with("sku-shirt", Money::new(1999, "EUR")));
    assert!(order::validate_order(&store, &upcasters, "v1a").unwrap().is_ok());
}

#[test]
fn missing_upcasters_unknown_products_and_future_schemas_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    legacy_order(&store, "order-old", "sku-unknown", b"{}");
    legacy_order(&store, "order-future", "sku-shirt", br#"{"schema":3}"#);

    let bare = logbook_es::aggregate::Repository::<order::Order>::new(&store);
    let err = bare.load("order-old").unwrap_err();
    assert!(matches!(&err, AggregateError::Decode { version: 2, .. }), "{err}");
    assert!(err.to_string().contains("no upcaster for ITEM_ADDED from schema 1 to 2"), "{err}");

    let repo = order::repository_with(&store, Catalogue::new().with("sku-shirt", Money::new(1999, "EUR")));
    let err = repo.load("order-old").unwrap_err();
    assert!(err.to_string().contains("no catalogue price for sku-unknown"), "{err}");
    let err = repo.load("order-future").unwrap_err();
    assert!(err.to_string().contains("newer"), "{err}");
}
