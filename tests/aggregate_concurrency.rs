//! The repository appends with the version it loaded as the exact expected version; when the
//! stream moved meanwhile it reloads and re-runs the command, a bounded number of times.

use std::sync::{Arc, Barrier};

use logbook::{Options, Store, SyncMode};
use logbook_es::aggregate::{AggregateError, Repository};
use logbook_order::{self as order, Money, Order, OrderCommand, OrderMetadata};

fn meta() -> OrderMetadata {
    OrderMetadata::customer("retailer_1", "cust_1")
}

fn create(repo: &Repository<Order>, stream: &str) {
    let command = OrderCommand::CreateCart {
        retailer_id: "retailer_1".into(),
        customer_id: "cust_1".into(),
        currency: "EUR".into(),
    };
    repo.execute(stream, &command, &meta()).unwrap();
}

fn add(product: &str) -> OrderCommand {
    OrderCommand::AddItem { product_id: product.into(), quantity: 1, unit_price: Money::new(250, "EUR") }
}

#[test]
fn two_threads_on_one_order_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // Durable appends make the window between load and append wide enough to collide.
    let store =
        Store::open(dir.path(), Options { segment_bytes: 1 << 20, sync: SyncMode::Always, ..Options::default() })
            .unwrap();
    let repo = order::repository(&store).with_snapshot_every(7).with_max_attempts(200);
    create(&repo, "order-shared");
    const PER_THREAD: usize = 25;
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = ["p-left", "p-right"]
        .into_iter()
        .map(|product| {
            let (repo, barrier) = (repo.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                let mut attempts = 0;
                for _ in 0..PER_THREAD {
                    attempts += repo.execute("order-shared", &add(product), &meta()).unwrap().attempts;
                }
                attempts
            })
        })
        .collect();
    let attempts: u32 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(attempts >= 2 * PER_THREAD as u32);
    let loaded = repo.load("order-shared").unwrap();
    assert_eq!(loaded.version, 1 + 2 * PER_THREAD as u64, "versions are contiguous, nothing lost");
    assert_eq!(loaded.state.items["p-left"].quantity, PER_THREAD as u32);
    assert_eq!(loaded.state.items["p-right"].quantity, PER_THREAD as u32);
    assert_eq!(loaded.state, repo.load_full("order-shared").unwrap().state);
    assert!(order::verify_snapshots(&store).unwrap().is_ok());
    eprintln!("{} commands took {attempts} attempts", 2 * PER_THREAD);
}

#[test]
fn a_stale_state_is_reloaded_and_the_command_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options { sync: SyncMode::Never, ..Options::default() }).unwrap();
    let repo = order::repository(&store);
    create(&repo, "order-stale");
    let stale = repo.load("order-stale").unwrap();
    // Someone else adds an item after we loaded.
    repo.execute("order-stale", &add("p-other"), &meta()).unwrap();
    let executed = repo.execute_from("order-stale", stale, &add("p-mine"), &meta()).unwrap();
    assert_eq!(executed.attempts, 2);
    assert_eq!(executed.version, 3);
    assert_eq!(executed.state.items.len(), 2, "the rerun saw the other item");
}

#[test]
fn a_rerun_that_the_fresh_state_refuses_is_a_domain_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options { sync: SyncMode::Never, ..Options::default() }).unwrap();
    let repo = order::repository(&store);
    create(&repo, "order-race");
    repo.execute("order-race", &add("p-1"), &meta()).unwrap();
    let stale = repo.load("order-race").unwrap();
    repo.execute("order-race", &OrderCommand::StartCheckout, &meta()).unwrap();
    // Adding was fine on the stale cart; on the fresh state (checkout started) it is not.
    let err = repo.execute_from("order-race", stale, &add("p-2"), &meta()).unwrap_err();
    assert!(matches!(err, AggregateError::Domain(_)), "{err}");
    assert_eq!(store.stream_version("order-race"), 3);
}

#[test]
fn attempts_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options { sync: SyncMode::Never, ..Options::default() }).unwrap();
    let repo = order::repository(&store).with_max_attempts(1);
    create(&repo, "order-bounded");
    let stale = repo.load("order-bounded").unwrap();
    repo.execute("order-bounded", &add("p-1"), &meta()).unwrap();
    let err = repo.execute_from("order-bounded", stale, &add("p-2"), &meta()).unwrap_err();
    assert!(matches!(err, AggregateError::Conflict { attempts: 1, .. }), "{err}");
    assert_eq!(store.stream_version("order-bounded"), 2, "nothing written");
}
