//! Property tests of the aggregate layer, run on the order aggregate: for random valid command
//! sequences, state from snapshot + tail equals state from full replay; time travel to version
//! k equals replaying the first k events; commands the state machine refuses are rejected and
//! write nothing.

use logbook::{Direction, Options, Store, SyncMode};
use logbook_es::aggregate::{Aggregate, AggregateError, Repository};
use logbook_order::{self as order, Money, Order, OrderCommand, OrderError, OrderMetadata, OrderStatus};
use proptest::prelude::*;

const PRODUCTS: [(&str, u64); 4] = [("p-socks", 1299), ("p-jacket", 8999), ("p-hat", 1999), ("p-boots", 14999)];

fn open(dir: &std::path::Path) -> Store {
    let options = Options { segment_bytes: 1 << 20, sync: SyncMode::Never, ..Options::default() };
    Store::open(dir, options).unwrap()
}

/// Every command worth trying in any state; the state machine decides which are valid.
fn candidates(order: &Order) -> Vec<OrderCommand> {
    let eur = |amount| Money::new(amount, "EUR");
    let mut all = vec![OrderCommand::CreateCart {
        retailer_id: "retailer_1".into(),
        customer_id: "cust_1".into(),
        currency: "EUR".into(),
    }];
    for (product, price) in PRODUCTS {
        all.push(OrderCommand::AddItem {
            product_id: product.into(),
            quantity: 1 + (price % 3) as u32,
            unit_price: eur(price),
        });
        all.push(OrderCommand::RemoveItem { product_id: product.into(), quantity: 1 });
        all.push(OrderCommand::CancelItem { product_id: product.into(), reason: "out of stock".into() });
    }
    all.extend([
        OrderCommand::StartCheckout,
        OrderCommand::ConfirmPayment {
            transaction_id: "pi_1".into(),
            gateway: "stripe".into(),
            amount: eur(order.total()),
        },
        OrderCommand::FailPayment { reason: "card_declined".into() },
        OrderCommand::PlaceOrder,
        OrderCommand::StartProcessing,
        OrderCommand::Ship { tracking: "BD1234567IN".into() },
        OrderCommand::FailDelivery { reason: "address not found".into() },
        OrderCommand::Deliver,
        OrderCommand::Cancel { reason: "customer request".into() },
        OrderCommand::IssueRefund { amount: eur(1) },
        OrderCommand::IssueRefund { amount: eur(order.balance().max(1)) },
        // Always invalid: wrong currency, zero quantity, overpaying.
        OrderCommand::AddItem { product_id: "p-socks".into(), quantity: 1, unit_price: Money::new(1299, "USD") },
        OrderCommand::AddItem { product_id: "p-socks".into(), quantity: 0, unit_price: eur(1299) },
        OrderCommand::ConfirmPayment {
            transaction_id: "pi_2".into(),
            gateway: "stripe".into(),
            amount: eur(order.total() + 1),
        },
    ]);
    all
}

fn split(order: &Order) -> (Vec<OrderCommand>, Vec<OrderCommand>) {
    candidates(order).into_iter().partition(|c| order.handle(c).is_ok())
}

fn meta() -> OrderMetadata {
    OrderMetadata::customer("retailer_1", "cust_1")
}

/// Runs up to `choices.len()` valid commands chosen by `choices`; returns the state after each
/// version (index = version).
fn run(repo: &Repository<Order>, stream: &str, choices: &[usize]) -> Vec<Order> {
    let mut history = vec![Order::initial()];
    for &choice in choices {
        let current = history.last().unwrap().clone();
        let (valid, _) = split(&current);
        if valid.is_empty() {
            break;
        }
        let command = &valid[choice % valid.len()];
        let executed = repo.execute(stream, command, &meta()).unwrap();
        assert_eq!(executed.events.len(), 1);
        let mut expected = current;
        expected.apply(&executed.events[0].1);
        assert_eq!(executed.state, expected, "the repository's state differs from the in-memory fold");
        assert_eq!(executed.version, history.len() as u64);
        history.push(expected);
    }
    history
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn snapshot_plus_tail_equals_full_replay(
        choices in proptest::collection::vec(0usize..1000, 1..60),
        every in 1u64..9,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let repo = order::repository(&store).with_snapshot_every(every);
        let history = run(&repo, "order-p1", &choices);
        let version = history.len() as u64 - 1;

        let full = repo.load_full("order-p1").unwrap();
        let loaded = repo.load("order-p1").unwrap();
        prop_assert_eq!(&loaded.state, &full.state);
        prop_assert_eq!(&loaded.state, history.last().unwrap());
        prop_assert_eq!((loaded.version, loaded.position), (full.version, full.position));
        prop_assert_eq!(full.version, version);
        prop_assert_eq!(full.snapshot_version, None);
        if version >= every {
            // The newest snapshot is at the last multiple of `every` reached.
            let snapshot = loaded.snapshot_version.expect("a snapshot was written and used");
            prop_assert!(snapshot <= version && version - snapshot < every, "snapshot {} version {}", snapshot, version);
            prop_assert_eq!(loaded.events_replayed, version - snapshot);
        } else {
            prop_assert_eq!(loaded.snapshot_version, None);
        }
        // Reopening changes nothing: snapshots are files, events are durable.
        drop(repo);
        store.close().unwrap();
        let store = open(dir.path());
        let repo = order::repository(&store);
        prop_assert_eq!(&repo.load("order-p1").unwrap().state, history.last().unwrap());
        prop_assert!(order::verify_snapshots(&store).unwrap().is_ok());
    }

    #[test]
    fn time_travel_equals_replaying_a_prefix(
        choices in proptest::collection::vec(0usize..1000, 1..40),
        every in 1u64..6,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let repo = order::repository(&store).with_snapshot_every(every);
        let history = run(&repo, "order-tt", &choices);
        let events = store.read_stream("order-tt", 1, 1000, Direction::Forward).unwrap();
        prop_assert_eq!(events.len() + 1, history.len());
        for (k, expected) in history.iter().enumerate() {
            let at = repo.load_at_version("order-tt", k as u64).unwrap();
            prop_assert_eq!(&at.state, expected, "version {}", k);
            prop_assert_eq!(at.version, k as u64);
        }
        // Beyond the end: the current state.
        prop_assert_eq!(&repo.load_at_version("order-tt", u64::MAX).unwrap().state, history.last().unwrap());
        // As of each event's timestamp: every event stored at or before that instant.
        for event in &events {
            let at = repo.load_at_time("order-tt", event.timestamp_us()).unwrap();
            let last = events.iter().take_while(|e| e.timestamp_us() <= event.timestamp_us()).count();
            prop_assert_eq!(at.version, last as u64);
            prop_assert_eq!(&at.state, &history[last]);
        }
        if let Some(first) = events.first() {
            let before = repo.load_at_time("order-tt", first.timestamp_us() - 1).unwrap();
            prop_assert_eq!(before.version, 0);
            prop_assert_eq!(before.state, Order::initial());
        }
    }

    #[test]
    fn invalid_commands_are_rejected_and_write_nothing(
        choices in proptest::collection::vec(0usize..1000, 0..30),
        pick in 0usize..1000,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let repo = order::repository(&store).with_snapshot_every(4);
        let history = run(&repo, "order-bad", &choices);
        let state = history.last().unwrap();
        let (_, invalid) = split(state);
        prop_assert!(!invalid.is_empty());
        let command = &invalid[pick % invalid.len()];
        let (version, head) = (store.stream_version("order-bad"), store.head_position());
        match repo.execute("order-bad", command, &meta()) {
            Err(AggregateError::Domain(err)) => {
                let text = err.to_string();
                prop_assert!(text.contains(command.name()), "{} does not name the command", text);
                match err {
                    OrderError::InvalidTransition { state: s, .. } | OrderError::Rejected { state: s, .. } => {
                        prop_assert!(text.contains(state.status.as_str()), "{} does not name the state", text);
                        prop_assert_eq!(s, state.status)
                    }
                    // Malformed whatever the state (a quantity out of range, an empty text):
                    // nothing about the order to name.
                    OrderError::InvalidArgument { .. } => {}
                }
            }
            other => prop_assert!(false, "{:?} was accepted: {:?}", command, other.map(|e| e.version)),
        }
        prop_assert_eq!(store.stream_version("order-bad"), version);
        prop_assert_eq!(store.head_position(), head);
        prop_assert_eq!(&repo.load("order-bad").unwrap().state, state);
    }
}

/// The bug the order lifecycle exists to prevent: an order marked DELIVERED before it was SHIPPED.
#[test]
fn delivered_before_shipped_is_impossible() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let repo = order::repository(&store);
    let stream = "order-delivered-early";
    let m = meta();
    for command in [
        OrderCommand::CreateCart {
            retailer_id: "retailer_1".into(),
            customer_id: "cust_1".into(),
            currency: "EUR".into(),
        },
        OrderCommand::AddItem { product_id: "p-socks".into(), quantity: 2, unit_price: Money::new(1299, "EUR") },
        OrderCommand::StartCheckout,
        OrderCommand::ConfirmPayment {
            transaction_id: "pi_1".into(),
            gateway: "stripe".into(),
            amount: Money::new(2598, "EUR"),
        },
        OrderCommand::PlaceOrder,
        OrderCommand::StartProcessing,
    ] {
        repo.execute(stream, &command, &m).unwrap();
    }
    let err = repo.execute(stream, &OrderCommand::Deliver, &m).unwrap_err();
    assert_eq!(err.to_string(), "cannot Deliver: the order is PROCESSING; Deliver is only allowed when it is SHIPPED");
    assert_eq!(store.stream_version(stream), 6);
    repo.execute(stream, &OrderCommand::Ship { tracking: "BD1234567IN".into() }, &m).unwrap();
    let done = repo.execute(stream, &OrderCommand::Deliver, &m).unwrap();
    assert_eq!(done.state.status, OrderStatus::Delivered);
}
