//! Saving two aggregates at once (`Repository::execute_two` / `execute_many`): the events of
//! both commands are appended as one atomic batch, each stream with its loaded version as the
//! expected version, so both land or neither does; a change to either stream between load and
//! append makes the whole save conflict, reload both and retry.

use std::sync::{Arc, Barrier};

use logbook::{Error, Filter, Options, Store, SyncMode};
use logbook_es::aggregate::{AggregateError, Repository};
use logbook_order::{self as order, Money, Order, OrderCommand, OrderMetadata};

fn meta() -> OrderMetadata {
    OrderMetadata::customer("retailer_1", "cust_1")
}

fn create_cart() -> OrderCommand {
    OrderCommand::CreateCart { retailer_id: "retailer_1".into(), customer_id: "cust_1".into(), currency: "EUR".into() }
}

fn add(product: &str) -> OrderCommand {
    OrderCommand::AddItem { product_id: product.into(), quantity: 1, unit_price: Money::new(250, "EUR") }
}

fn quantity(repo: &Repository<Order>, stream: &str, product: &str) -> u32 {
    repo.load(stream).unwrap().state.items.get(product).map_or(0, |line| line.quantity)
}

#[test]
fn two_orders_are_saved_together_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let repo = order::repository(&store);
    // Two new streams (expected: no stream) in one batch.
    let (a, b) = repo.execute_two(("order-a", &create_cart()), ("order-b", &create_cart()), &meta()).unwrap();
    assert_eq!((a.version, b.version, a.attempts, b.attempts), (1, 1, 1, 1));
    let (a, b) = repo.execute_two(("order-a", &add("p1")), ("order-b", &add("p2")), &meta()).unwrap();
    let (ra, rb) = (a.append.unwrap(), b.append.unwrap());
    assert_eq!(rb.first_position, ra.last_position + 1, "one batch: adjacent in $all");
    assert_eq!((a.version, b.version), (2, 2));
    assert_eq!(a.state, repo.load("order-a").unwrap().state);
    // The second command is refused by its order: nothing of the first is written either.
    let head = store.head_position();
    let refused = OrderCommand::RemoveItem { product_id: "not-in-cart".into(), quantity: 1 };
    let err = repo.execute_two(("order-a", &add("p3")), ("order-b", &refused), &meta()).unwrap_err();
    assert!(matches!(err, AggregateError::Domain(_)), "{err}");
    assert_eq!(store.head_position(), head, "nothing half-written");
    assert_eq!(quantity(&repo, "order-a", "p3"), 0);
    // One command through execute_many is a one-part batch.
    let one = repo.execute_many(&[("order-a", &add("p4"))], &meta()).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].version, 3);
    // The same stream twice is refused before anything is loaded or written.
    let err = repo.execute_two(("order-a", &add("p5")), ("order-a", &add("p6")), &meta()).unwrap_err();
    assert!(matches!(err, AggregateError::Store(Error::InvalidInput(_))), "{err}");
    store.close().unwrap();
}

#[test]
fn a_change_to_either_order_makes_the_whole_save_conflict_and_retry() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let repo = order::repository(&store);
    repo.execute_two(("order-a", &create_cart()), ("order-b", &create_cart()), &meta()).unwrap();
    let (add_a, add_b) = (add("pa"), add("pb"));
    for changed in ["order-a", "order-b"] {
        // States loaded, then one of the two orders changes under them (another writer).
        let (loaded_a, loaded_b) = (repo.load("order-a").unwrap(), repo.load("order-b").unwrap());
        repo.execute(changed, &add("concurrent"), &meta()).unwrap();
        let head = store.head_position();
        // With one attempt: the whole save conflicts, naming the stream that moved; nothing written.
        let once = repo.clone().with_max_attempts(1);
        let commands = vec![("order-a", loaded_a.clone(), &add_a), ("order-b", loaded_b.clone(), &add_b)];
        match once.execute_many_from(commands, &meta()) {
            Err(AggregateError::Conflict { stream, attempts: 1 }) => assert_eq!(stream, changed),
            other => panic!("expected a conflict on {changed}, got {other:?}"),
        }
        assert_eq!(store.head_position(), head, "a conflicting save writes neither order");
        // With retries: both reloaded, both commands re-run on fresh state, both saved.
        let commands = vec![("order-a", loaded_a, &add_a), ("order-b", loaded_b, &add_b)];
        let saved = repo.execute_many_from(commands, &meta()).unwrap();
        assert!(saved.iter().all(|e| e.attempts == 2), "one conflict, one retry");
        assert_eq!(store.head_position(), head + 2);
        let (ra, rb) = (saved[0].append.unwrap(), saved[1].append.unwrap());
        assert_eq!(rb.first_position, ra.last_position + 1);
        // The retry ran on the fresh state, which has the concurrent change: nothing lost.
        let fresh = &saved[usize::from(changed == "order-b")];
        assert_eq!(fresh.state.items["concurrent"].quantity, 1);
        assert_eq!(fresh.state, repo.load(changed).unwrap().state);
    }
    assert_eq!(quantity(&repo, "order-a", "pa"), 2);
    assert_eq!(quantity(&repo, "order-b", "pb"), 2);
    store.close().unwrap();
}

#[test]
fn concurrent_single_saves_never_see_half_of_a_two_order_save() {
    let dir = tempfile::tempdir().unwrap();
    // Durable appends widen the window between load and append, so saves collide.
    let store =
        Store::open(dir.path(), Options { segment_bytes: 1 << 20, sync: SyncMode::Always, ..Options::default() })
            .unwrap();
    let repo = order::repository(&store).with_snapshot_every(5).with_max_attempts(500);
    repo.execute_two(("order-x", &create_cart()), ("order-y", &create_cart()), &meta()).unwrap();
    const SAVES: u32 = 20;
    let barrier = Arc::new(Barrier::new(3));
    let pairs = {
        let (repo, barrier) = (repo.clone(), Arc::clone(&barrier));
        std::thread::spawn(move || {
            barrier.wait();
            (0..SAVES)
                .map(|_| {
                    repo.execute_two(("order-x", &add("pair")), ("order-y", &add("pair")), &meta()).unwrap().0.attempts
                })
                .sum::<u32>()
        })
    };
    let singles: Vec<_> = ["order-x", "order-y"]
        .into_iter()
        .map(|stream| {
            let (repo, barrier) = (repo.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                (0..SAVES).map(|_| repo.execute(stream, &add("single"), &meta()).unwrap().attempts).sum::<u32>()
            })
        })
        .collect();
    let pair_attempts = pairs.join().unwrap();
    let single_attempts: u32 = singles.into_iter().map(|h| h.join().unwrap()).sum();
    eprintln!("{SAVES} two-order saves took {pair_attempts} attempts; {} single saves {single_attempts}", 2 * SAVES);
    for stream in ["order-x", "order-y"] {
        assert_eq!(quantity(&repo, stream, "pair"), SAVES, "{stream}: every two-order save landed once");
        assert_eq!(quantity(&repo, stream, "single"), SAVES, "{stream}: nothing lost");
        assert_eq!(repo.load(stream).unwrap().state, repo.load_full(stream).unwrap().state);
    }
    // In $all every "pair" event on order-x is followed right away by its partner on order-y.
    let all = store.read_all(1, usize::MAX, &Filter::all()).unwrap();
    let is_pair =
        |e: &logbook::RecordedEvent| e.event_type() == "ITEM_ADDED" && e.data().windows(6).any(|w| w == b"\"pair\"");
    let mut seen = 0;
    for (i, e) in all.iter().enumerate() {
        if is_pair(e) && e.stream() == "order-x" {
            let partner = &all[i + 1];
            assert!(is_pair(partner) && partner.stream() == "order-y", "half a save at position {}", e.position());
            seen += 1;
        }
    }
    assert_eq!(seen, SAVES);
    assert!(order::verify_snapshots(&store).unwrap().is_ok());
    store.close().unwrap();
}
