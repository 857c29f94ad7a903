//! Loading an order aggregate of 10,000 events: from a snapshot versus a full replay
//! (seed 004 claims snapshots make it 100x faster; design.md asks for >= 100x).
//!
//! `cargo bench --bench aggregate` runs three criterion benches on one store (page cache warm):
//! - `load_aggregate/full_replay`: 10,000 events read, decoded (JSON) and applied;
//! - `load_aggregate/snapshot`: the snapshot at version 10,000, nothing to replay;
//! - `load_aggregate/snapshot_plus_99`: a snapshot at 9,901 plus 99 events, the worst case
//!   with the default policy (a snapshot every 100 events);
//!
//! then measures each once more with a plain timer and prints the ratios.
//! `LOGBOOK_BENCH_DIR` chooses the directory (default: the system temp dir).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use logbook::{ExpectedVersion, NewEvent, Options, Store, SyncMode};
use logbook_es::aggregate::{Aggregate, Repository};
use logbook_es::snapshot::{self, Snapshot};
use logbook_order::{self as order, Money, Order, OrderCommand};

const EVENTS: u64 = 10_000;

fn bench_dir() -> tempfile::TempDir {
    let base = std::env::var_os("LOGBOOK_BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    tempfile::tempdir_in(base).expect("bench directory")
}

/// One order of `EVENTS` events (a cart where items come and go), appended in batches, with
/// the metadata the repository writes.
fn write_order(store: &Store, stream: &str) {
    let metadata = br#"{"actor":"customer","actor_id":"cust_1","retailer_id":"retailer_1","customer_id":"cust_1","ip_address":"203.0.113.7","correlation_id":"0b6e1c52-8d4f-4f7e-9d55-3c1f0a1e2b3c""#;
    let mut state = Order::initial();
    let mut batch = Vec::new();
    for i in 0..EVENTS {
        let product = format!("p-{}", i % 17);
        let command = match i {
            0 => OrderCommand::CreateCart {
                retailer_id: "retailer_1".into(),
                customer_id: "cust_1".into(),
                currency: "EUR".into(),
            },
            _ if state.items.contains_key(&product) && i % 3 == 0 => {
                OrderCommand::RemoveItem { product_id: product, quantity: 1 }
            }
            _ => {
                OrderCommand::AddItem { product_id: product, quantity: 1, unit_price: Money::new(1000 + i % 17, "EUR") }
            }
        };
        let events = state.handle(&command).expect("a valid command");
        for event in events {
            state.apply(&event);
            let (event_type, data) = Order::encode_event(&event).expect("encodes");
            let mut meta = metadata.to_vec();
            meta.extend_from_slice(format!(",\"schema\":{}}}", Order::event_schema(event_type)).as_bytes());
            batch.push(NewEvent::new(event_type, data).with_metadata(meta));
        }
        if batch.len() == 1000 {
            store.append(stream, ExpectedVersion::Any, std::mem::take(&mut batch)).expect("append");
        }
    }
    if !batch.is_empty() {
        store.append(stream, ExpectedVersion::Any, batch).expect("append");
    }
    assert_eq!(store.stream_version(stream), EVENTS);
}

fn snapshot_at(repo: &Repository<Order>, stream: &str, version: u64) {
    let loaded = repo.load_at_version(stream, version).expect("load");
    let snap = Snapshot {
        stream: stream.to_string(),
        version: loaded.version,
        position: loaded.position,
        schema_version: Order::SCHEMA_VERSION,
        state: snapshot::encode_state(&loaded.state).expect("encode"),
    };
    snapshot::write(repo.store().file_system(), repo.store().dir(), &snap).expect("snapshot");
}

fn time_per_load(repo: &Repository<Order>, stream: &str, full: bool, min: Duration) -> Duration {
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < min || n < 5 {
        let loaded = if full { repo.load_full(stream) } else { repo.load(stream) }.expect("load");
        assert_eq!(loaded.version, EVENTS);
        n += 1;
    }
    start.elapsed() / n
}

fn load_aggregate(c: &mut Criterion) {
    let dir = bench_dir();
    let store = Store::open(dir.path(), Options { sync: SyncMode::Never, ..Options::default() }).expect("open");
    write_order(&store, "order-bench-snap");
    write_order(&store, "order-bench-tail");
    store.sync().expect("sync");
    let repo = order::repository(&store).with_snapshot_every(0);
    snapshot_at(&repo, "order-bench-snap", EVENTS);
    snapshot_at(&repo, "order-bench-tail", EVENTS - 99);
    let full = repo.load_full("order-bench-snap").expect("full");
    let snap = repo.load("order-bench-snap").expect("snap");
    let tail = repo.load("order-bench-tail").expect("tail");
    assert_eq!((snap.snapshot_version, tail.snapshot_version), (Some(EVENTS), Some(EVENTS - 99)));
    assert_eq!(full.state, snap.state);
    assert_eq!(full.state, tail.state);

    let mut group = c.benchmark_group("load_aggregate");
    group.sample_size(20).measurement_time(Duration::from_secs(5));
    group.bench_function("full_replay", |b| b.iter(|| repo.load_full("order-bench-snap").expect("load")));
    group.bench_function("snapshot", |b| b.iter(|| repo.load("order-bench-snap").expect("load")));
    group.bench_function("snapshot_plus_99", |b| b.iter(|| repo.load("order-bench-tail").expect("load")));
    group.finish();

    let t_full = time_per_load(&repo, "order-bench-snap", true, Duration::from_secs(3));
    let t_snap = time_per_load(&repo, "order-bench-snap", false, Duration::from_secs(3));
    let t_tail = time_per_load(&repo, "order-bench-tail", false, Duration::from_secs(3));
    println!(
        "order aggregate of {EVENTS} events (state {} bytes in bincode):",
        snapshot::encode_state(&full.state).map_or(0, |s| s.len())
    );
    println!("  full replay:            {:>10.1} us", t_full.as_secs_f64() * 1e6);
    println!(
        "  snapshot:               {:>10.1} us  ({:.0}x faster)",
        t_snap.as_secs_f64() * 1e6,
        t_full.as_secs_f64() / t_snap.as_secs_f64()
    );
    println!(
        "  snapshot + 99 events:   {:>10.1} us  ({:.0}x faster)",
        t_tail.as_secs_f64() * 1e6,
        t_full.as_secs_f64() / t_tail.as_secs_f64()
    );
}

criterion_group!(benches, load_aggregate);

fn main() {
    benches();
    criterion::Criterion::default().configure_from_args().final_summary();
}
