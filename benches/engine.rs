//! Engine benchmarks (criterion), each beside this machine's limits measured in the same run.
//!
//! `cargo bench --bench engine` prints the fdatasync rate and sequential write bandwidth of
//! the benchmark's directory first, then:
//! - `append_durable/{1,16,256}`: one writer, N events (471 B order events) per durable append;
//! - `append_concurrent/{16,64}x1`: 16 or 64 threads, one event per durable append (group commit);
//! - `append_batch/64_events_{8,64}_streams`: one writer, one durable `append_batch` of 64 events
//!   spread over 8 streams (8 parts of 8) or 64 streams (64 parts of 1), all or nothing;
//!   `append_batch/64_singles_submitted_together`: the same 64 events over 64 streams as 64
//!   `submit_append`s queued before waiting on any (they share group commits, but are not atomic);
//!   `append_batch/256_events_16_streams`: 16 parts of 16;
//! - `replay_all`: `$all` from position 1, warm page cache;
//! - `read_stream`: one whole order stream (~9 events) among 2,000 orders.
//!
//! `LOGBOOK_BENCH_DIR` chooses the directory (default: the system temp dir).

use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use logbook::{AppendPart, Direction, ExpectedVersion, Filter, NewEvent, Options, Store};
use logbook_cli::bench::{fdatasync_rate, sequential_write_bandwidth, OrderWorkload};

fn bench_dir() -> tempfile::TempDir {
    let base = std::env::var_os("LOGBOOK_BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    tempfile::tempdir_in(base).expect("bench directory")
}

fn order_event(i: usize) -> NewEvent {
    let workload = OrderWorkload::default();
    let events = workload.order_events(i);
    events[i % events.len()].clone()
}

fn print_limits() {
    let dir = bench_dir();
    let syncs = fdatasync_rate(dir.path(), Duration::from_secs(2)).expect("fdatasync probe");
    let bandwidth = sequential_write_bandwidth(dir.path(), 256 << 20).expect("bandwidth probe");
    println!("machine limits in {}:", dir.path().display());
    println!("  fdatasync rate (512 B write + fdatasync): {syncs:.0}/s");
    println!("  sequential write bandwidth (256 MiB + one fsync): {:.0} MB/s", bandwidth / 1e6);
}

/// Probes the fdatasync rate right before a durable bench: on a shared machine it moves
/// minute to minute, so the ratio is only meaningful against a probe taken beside it.
fn print_fsync_rate_beside(bench: &str) {
    let dir = bench_dir();
    let syncs = fdatasync_rate(dir.path(), Duration::from_secs(1)).expect("fdatasync probe");
    println!("[{bench}] fdatasync rate measured just before: {syncs:.0}/s");
}

fn append_durable(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_durable");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    for batch in [1usize, 16, 256] {
        let dir = bench_dir();
        let store = Store::open(dir.path(), Options::default()).unwrap();
        let events: Vec<NewEvent> = (0..batch).map(order_event).collect();
        print_fsync_rate_beside(&format!("append_durable/{batch}"));
        let mut n = 0usize;
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("{batch}"), |b| {
            b.iter_batched(
                || events.iter().cloned().map(|e| e.with_id(uuid::Uuid::new_v4())).collect::<Vec<_>>(),
                |batch_events| {
                    n += 1;
                    store.append(&OrderWorkload::stream(n % 20_000), ExpectedVersion::Any, batch_events).unwrap()
                },
                BatchSize::SmallInput,
            )
        });
        store.close().unwrap();
    }
    group.finish();
}

fn append_concurrent(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_concurrent");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    let dir = bench_dir();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    for writers in [16usize, 64] {
        group.throughput(Throughput::Elements(writers as u64));
        print_fsync_rate_beside(&format!("append_concurrent/{writers}x1"));
        group.bench_function(format!("{writers}x1"), |b| {
            // One iteration = every writer appends one event; timed over many iterations.
            b.iter_custom(|iters| concurrent_round(&store, writers, iters as usize))
        });
    }
    group.finish();
    store.close().unwrap();
}

/// Order events with fresh ids, `per_stream` to each of `streams` streams starting at order
/// `first`: the parts of one multi-stream batch.
fn batch_parts(first: usize, streams: usize, per_stream: usize) -> Vec<AppendPart> {
    (0..streams)
        .map(|s| {
            let events =
                (0..per_stream).map(|i| order_event(s * per_stream + i).with_id(uuid::Uuid::new_v4())).collect();
            AppendPart::new(OrderWorkload::stream((first + s) % 20_000), ExpectedVersion::Any, events)
        })
        .collect()
}

fn append_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_batch");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    let dir = bench_dir();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let mut next = 0usize;
    for (events, streams) in [(64usize, 8usize), (64, 64), (256, 16)] {
        let name = format!("{events}_events_{streams}_streams");
        print_fsync_rate_beside(&format!("append_batch/{name}"));
        group.throughput(Throughput::Elements(events as u64));
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    next += streams;
                    batch_parts(next, streams, events / streams)
                },
                |parts| store.append_batch(parts).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    // The same 64 events over 64 streams without a batch: queued together, then waited on.
    print_fsync_rate_beside("append_batch/64_singles_submitted_together");
    group.throughput(Throughput::Elements(64));
    group.bench_function("64_singles_submitted_together", |b| {
        b.iter_batched(
            || {
                next += 64;
                batch_parts(next, 64, 1)
            },
            |parts| {
                let pending: Vec<_> =
                    parts.into_iter().map(|p| store.submit_append(&p.stream, p.expected, p.events).unwrap()).collect();
                pending.into_iter().map(|p| p.wait().unwrap().last_position).max()
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
    store.close().unwrap();
}

/// `writers` threads each append `iters` single events; returns the wall time.
fn concurrent_round(store: &Store, writers: usize, iters: usize) -> Duration {
    let barrier = Arc::new(Barrier::new(writers + 1));
    let handles: Vec<_> = (0..writers)
        .map(|w| {
            let (store, barrier) = (store.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..iters {
                    let stream = OrderWorkload::stream(w * 1000 + i % 1000);
                    store.append(&stream, ExpectedVersion::Any, vec![order_event(i)]).unwrap();
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for handle in handles {
        handle.join().unwrap();
    }
    start.elapsed()
}

fn filled_store(orders: usize) -> (tempfile::TempDir, Store, usize) {
    let dir = bench_dir();
    let store = Store::open(dir.path(), Options { sync: logbook::SyncMode::Never, ..Options::default() }).unwrap();
    let workload = OrderWorkload { orders, ..OrderWorkload::default() };
    let events = workload.events();
    for chunk in events.chunks(1) {
        let e = &chunk[0];
        store.append(&e.stream, ExpectedVersion::Any, vec![e.event.clone()]).unwrap();
    }
    store.sync().unwrap();
    let n = events.len();
    (dir, store, n)
}

fn replay_all(c: &mut Criterion) {
    let mut group = c.benchmark_group("replay_all");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    let (_dir, store, n) = filled_store(5_000);
    group.throughput(Throughput::Elements(n as u64));
    group.bench_function(format!("{n}_events"), |b| {
        b.iter(|| {
            let mut next = 1;
            let mut total = 0usize;
            loop {
                let page = store.read_all_page(next, 10_000, &Filter::all()).unwrap();
                if page.events.is_empty() {
                    break;
                }
                total += page.events.iter().map(|e| e.data().len()).sum::<usize>();
                next = page.next_position;
            }
            total
        })
    });
    group.finish();
}

fn read_stream(c: &mut Criterion) {
    let mut group = c.benchmark_group("read_stream");
    group.sample_size(20).measurement_time(Duration::from_secs(3));
    let (_dir, store, _) = filled_store(2_000);
    let mut i = 0usize;
    group.throughput(Throughput::Elements(1));
    group.bench_function("one_order", |b| {
        b.iter(|| {
            i = (i + 7) % 2_000;
            let events = store.read_stream(&OrderWorkload::stream(i), 1, 100, Direction::Forward).unwrap();
            assert!(events.len() >= 8);
            events.len()
        })
    });
    group.finish();
}

criterion_group!(benches, append_durable, append_concurrent, append_batch, replay_all, read_stream);

fn main() {
    print_limits();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
