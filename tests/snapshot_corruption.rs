//! Snapshots are derived data: a damaged, stale, misplaced or foreign snapshot is ignored and
//! the aggregate replayed in full, so the state is always right; `verify_snapshots` reports
//! every snapshot that disagrees with the log.

use std::path::{Path, PathBuf};

use logbook::{Options, Store, SyncMode};
use logbook_es::aggregate::{Aggregate, Repository, SnapshotProblem};
use logbook_es::snapshot::{self, Snapshot};
use logbook_order::{self as order, Money, Order, OrderCommand, OrderMetadata};

fn open(dir: &Path) -> Store {
    Store::open(dir, Options { segment_bytes: 1 << 20, sync: SyncMode::Never, ..Options::default() }).unwrap()
}

/// An order with `adds` items added one by one (1 + adds events), snapshotted every 10.
fn build(repo: &Repository<Order>, stream: &str, adds: u32) {
    let m = OrderMetadata::customer("retailer_1", "cust_1");
    let create = OrderCommand::CreateCart {
        retailer_id: "retailer_1".into(),
        customer_id: "cust_1".into(),
        currency: "EUR".into(),
    };
    repo.execute(stream, &create, &m).unwrap();
    for i in 0..adds {
        let add = OrderCommand::AddItem {
            product_id: format!("p-{}", i % 7),
            quantity: 1,
            unit_price: Money::new(100 + u64::from(i % 7), "EUR"),
        };
        repo.execute(stream, &add, &m).unwrap();
    }
}

fn setup(dir: &Path) -> (Store, Repository<Order>, PathBuf, Order) {
    let store = open(dir);
    let repo = order::repository(&store).with_snapshot_every(10);
    build(&repo, "order-a", 24);
    let path = snapshot::path_for(store.dir(), "order-a");
    assert!(path.exists());
    let loaded = repo.load("order-a").unwrap();
    assert_eq!(loaded.snapshot_version, Some(20));
    assert_eq!(loaded.events_replayed, 5);
    let full = repo.load_full("order-a").unwrap();
    assert_eq!(loaded.state, full.state);
    (store, repo, path, full.state)
}

fn assert_replayed_in_full(repo: &Repository<Order>, expected: &Order) {
    let loaded = repo.load("order-a").unwrap();
    assert_eq!(loaded.snapshot_version, None, "a bad snapshot was used");
    assert_eq!(loaded.events_replayed, 25);
    assert_eq!(&loaded.state, expected);
}

#[test]
fn every_flipped_byte_is_ignored_and_the_state_is_still_right() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, repo, path, expected) = setup(dir.path());
    let good = std::fs::read(&path).unwrap();
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        std::fs::write(&path, &bad).unwrap();
        assert_replayed_in_full(&repo, &expected);
    }
    std::fs::write(&path, &good).unwrap();
    assert_eq!(repo.load("order-a").unwrap().snapshot_version, Some(20));
}

#[test]
fn truncated_zeroed_and_empty_snapshots_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, repo, path, expected) = setup(dir.path());
    let good = std::fs::read(&path).unwrap();
    for cut in [0, 1, 8, 39, 40, 44, good.len() / 2, good.len() - 4, good.len() - 1] {
        std::fs::write(&path, &good[..cut]).unwrap();
        assert_replayed_in_full(&repo, &expected);
    }
    std::fs::write(&path, vec![0u8; good.len()]).unwrap();
    assert_replayed_in_full(&repo, &expected);
    let mut longer = good.clone();
    longer.extend_from_slice(b"garbage");
    std::fs::write(&path, &longer).unwrap();
    assert_replayed_in_full(&repo, &expected);
}

#[test]
fn wrong_schema_wrong_stream_and_misaligned_snapshots_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let (store, repo, path, expected) = setup(dir.path());
    let good = snapshot::read_file(&path).unwrap();

    // Another schema version, with a valid checksum.
    let other_schema = Snapshot { schema_version: Order::SCHEMA_VERSION + 1, ..good.clone() };
    std::fs::write(&path, snapshot::encode(&other_schema).unwrap()).unwrap();
    assert_replayed_in_full(&repo, &expected);

    // Another stream's snapshot under this stream's file name.
    let foreign = Snapshot { stream: "order-b".into(), ..good.clone() };
    std::fs::write(&path, snapshot::encode(&foreign).unwrap()).unwrap();
    assert_replayed_in_full(&repo, &expected);

    // A position that is not where the log has that version (e.g. from another store).
    let misaligned = Snapshot { position: good.position + 1, ..good.clone() };
    std::fs::write(&path, snapshot::encode(&misaligned).unwrap()).unwrap();
    assert_replayed_in_full(&repo, &expected);

    // A version the stream does not have.
    let ahead = Snapshot { version: 1000, ..good.clone() };
    std::fs::write(&path, snapshot::encode(&ahead).unwrap()).unwrap();
    assert_replayed_in_full(&repo, &expected);

    // State bytes that are not an Order.
    let garbage_state = Snapshot { state: vec![0xFF; 7], ..good.clone() };
    std::fs::write(&path, snapshot::encode(&garbage_state).unwrap()).unwrap();
    assert_replayed_in_full(&repo, &expected);

    // A bad snapshot is replaced at the next crossing of the interval.
    build_more(&repo, 5);
    let loaded = repo.load("order-a").unwrap();
    assert_eq!(loaded.snapshot_version, Some(30));
    assert_eq!(loaded.state, repo.load_full("order-a").unwrap().state);
    assert!(order::verify_snapshots(&store).unwrap().is_ok());
}

fn build_more(repo: &Repository<Order>, adds: u64) {
    let m = OrderMetadata::customer("retailer_1", "cust_1");
    for _ in 0..adds {
        let add = OrderCommand::AddItem { product_id: "p-0".into(), quantity: 1, unit_price: Money::new(100, "EUR") };
        repo.execute("order-a", &add, &m).unwrap();
    }
}

#[test]
fn verify_reports_every_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let (store, repo, path_a, _) = setup(dir.path());
    build(&repo, "order-b", 12);
    build(&repo, "order-c", 12);
    build(&repo, "order-d", 12);
    let report = order::verify_snapshots(&store).unwrap();
    assert_eq!((report.checked, report.mismatches.len()), (4, 0), "{report:?}");

    // a: flipped byte. b: a forged state with a valid checksum (load would trust it: only a
    // full replay can tell). c: a version the stream does not have. d: fine.
    let mut bytes = std::fs::read(&path_a).unwrap();
    bytes[50] ^= 0x80;
    std::fs::write(&path_a, bytes).unwrap();
    let path_b = snapshot::path_for(store.dir(), "order-b");
    let mut b = snapshot::read_file(&path_b).unwrap();
    let mut forged: Order = snapshot::decode_state(&b.state).unwrap();
    forged.items.clear();
    b.state = snapshot::encode_state(&forged).unwrap();
    std::fs::write(&path_b, snapshot::encode(&b).unwrap()).unwrap();
    let path_c = snapshot::path_for(store.dir(), "order-c");
    let c = Snapshot { version: 99, ..snapshot::read_file(&path_c).unwrap() };
    std::fs::write(&path_c, snapshot::encode(&c).unwrap()).unwrap();

    let report = order::verify_snapshots(&store).unwrap();
    assert_eq!(report.checked, 4);
    assert_eq!(report.mismatches.len(), 3, "{report:#?}");
    let problems: Vec<&SnapshotProblem> = report.mismatches.iter().map(|m| &m.problem).collect();
    assert!(problems.iter().any(|p| matches!(p, SnapshotProblem::Unreadable { .. })));
    assert!(problems
        .iter()
        .any(|p| matches!(p, SnapshotProblem::StateDiffers { stream, version: 10, .. } if stream == "order-b")));
    assert!(problems.iter().any(|p| matches!(
        p,
        SnapshotProblem::BeyondStream { stream, snapshot_version: 99, stream_version: 13 } if stream == "order-c"
    )));
    // The report serializes for `logbook verify --snapshots --json`.
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains("state_differs") && json.contains("beyond_stream"));
}

#[test]
fn a_snapshot_write_never_replaces_a_newer_one() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _repo, path, _) = setup(dir.path());
    let current = snapshot::read_file(&path).unwrap();
    let older = Snapshot { version: 10, ..current.clone() };
    assert!(!snapshot::write(store.file_system(), store.dir(), &older).unwrap());
    assert_eq!(snapshot::read_file(&path).unwrap(), current);
    // No temp file is left behind, and the listing shows only real snapshots.
    let listed = snapshot::list(store.dir()).unwrap();
    assert_eq!(listed, vec![path]);
}
