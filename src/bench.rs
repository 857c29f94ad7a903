//! Measuring the machine's limits and generating the order-lifecycle workload of design.md,
//! shared by the criterion benches and `logbook bench`.
//!
//! Figures are only meaningful next to the limits of the same machine in the same run:
//! [`fdatasync_rate`] (small write + fdatasync, repeated) and [`sequential_write_bandwidth`]
//! (one large write + one fsync).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use logbook::NewEvent;
use rand_core::{Rng as _, SeedableRng};
use rand_xoshiro::SplitMix64;

/// Small writes followed by fdatasync, in a fresh file in `dir`, for about `duration`.
/// Returns syncs per second.
pub fn fdatasync_rate(dir: &Path, duration: Duration) -> std::io::Result<f64> {
    let path = dir.join(".logbook-fdatasync-probe");
    let file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path)?;
    file.set_len(64 * 1024 * 1024)?;
    file.sync_all()?;
    let record = [0x5Au8; 512];
    let start = Instant::now();
    let mut syncs = 0u64;
    while start.elapsed() < duration || syncs < 20 {
        file.write_all_at(&record, syncs * record.len() as u64)?;
        file.sync_data()?;
        syncs += 1;
    }
    let rate = syncs as f64 / start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(rate)
}

/// Writes `bytes` sequentially in 1 MiB chunks and syncs once. Returns bytes per second.
pub fn sequential_write_bandwidth(dir: &Path, bytes: u64) -> std::io::Result<f64> {
    let path = dir.join(".logbook-bandwidth-probe");
    let mut file = File::create(&path)?;
    let chunk = vec![0xA5u8; 1 << 20];
    let start = Instant::now();
    let mut written = 0u64;
    while written < bytes {
        file.write_all(&chunk)?;
        written += chunk.len() as u64;
    }
    file.sync_all()?;
    let rate = written as f64 / start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(rate)
}

/// Event types of one order's life, in the order they happen (cart, checkout, payment, fulfilment).
const LIFECYCLE: [&str; 8] = [
    "CART_CREATED",
    "ITEM_ADDED",
    "CHECKOUT_STARTED",
    "PAYMENT_CONFIRMED",
    "ORDER_PLACED",
    "STATUS_UPDATED",
    "SHIPPED",
    "DELIVERED",
];

pub use crate::workload::{interleaved, order_stream, WorkloadEvent};

/// The design.md workload: order lifecycles of about 8.6 events each, JSON data padded to
/// `payload_bytes` (471 by default), interleaved `interleave` orders at a time.
#[derive(Debug, Clone, Copy)]
pub struct OrderWorkload {
    pub orders: usize,
    pub payload_bytes: usize,
    pub interleave: usize,
    pub seed: u64,
}

impl Default for OrderWorkload {
    fn default() -> Self {
        OrderWorkload { orders: 20_000, payload_bytes: 471, interleave: 64, seed: 0x0BDE_2026 }
    }
}

impl OrderWorkload {
    /// Stream name of order `i` ([`order_stream`]).
    pub fn stream(i: usize) -> String {
        order_stream(i)
    }

    /// The events of order `i`: the lifecycle with 1..=3 ITEM_ADDED.
    pub fn order_events(&self, i: usize) -> Vec<NewEvent> {
        // One generator per order, so any order's events can be made alone. Adjacent seeds are
        // fine: SplitMix64's output mixes them apart.
        let mut rng = SplitMix64::seed_from_u64(self.seed.wrapping_add(i as u64));
        let mut next = || rng.next_u64();
        let items = 1 + (next() % 3) as usize;
        let mut events = Vec::with_capacity(LIFECYCLE.len() + items);
        for (step, kind) in LIFECYCLE.iter().enumerate() {
            let repeats = if *kind == "ITEM_ADDED" { items } else { 1 };
            for r in 0..repeats {
                let data = self.payload(i, step, r, next());
                let meta = format!(r#"{{"actor":"customer","retailer_id":"r-{}","correlation_id":"c-{i}"}}"#, i % 16);
                events.push(NewEvent::new(*kind, data).with_metadata(meta.into_bytes()));
            }
        }
        events
    }

    fn payload(&self, order: usize, step: usize, item: usize, noise: u64) -> Vec<u8> {
        let mut json = format!(
            r#"{{"order":{order},"step":{step},"item":{item},"sku":"p-{:05}","amount":{},"note":""#,
            noise % 100_000,
            noise % 50_000
        );
        let target = self.payload_bytes.saturating_sub(2).max(json.len());
        while json.len() < target {
            json.push(char::from(b'a' + (json.len() % 26) as u8));
        }
        json.push_str("\"}");
        json.into_bytes()
    }

    /// All events in commit order: `interleave` orders progress together, one event each
    /// in turn, then the next group of orders starts.
    pub fn events(&self) -> Vec<WorkloadEvent> {
        interleaved(self.orders, self.interleave, |i| (Self::stream(i), self.order_events(i)))
    }
}

/// Percentile (0.0..=1.0) of sorted latencies.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// What `logbook bench` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum BenchMode {
    /// Durable appends of `batch` events from `writers` threads.
    Append,
    /// Whole-stream reads of random order streams (after filling the store).
    Read,
    /// `$all` from position 1 (after filling the store).
    Replay,
    /// Writers appending while as many readers read streams.
    Mixed,
}

/// Parameters of one run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchConfig {
    pub mode: BenchMode,
    /// Events to append (append, mixed) or to fill the store with (read, replay).
    pub events: u64,
    pub payload_bytes: usize,
    /// Events per append.
    pub batch: usize,
    /// Each append's events keep their own order streams: one atomic multi-stream append
    /// (`Store::append_batch`, a part per stream) instead of `batch` events on one stream.
    pub multi_stream: bool,
    /// Appending threads (append, mixed) or reading threads (read).
    pub writers: usize,
    /// Streams the events are spread over (orders).
    pub streams: usize,
    /// Stop after this long even if `events` are not done.
    pub duration: Duration,
    /// Threads spinning in a busy loop beside the whole run (its limits included), to measure
    /// how waiting copes with cores taken by someone else. 0: a quiet run.
    pub busy_cores: usize,
    /// Which events: the filler workload or the realistic orders.
    pub workload: Workload,
}

/// The events a run appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Workload {
    /// [`OrderWorkload`]: lifecycle event types, JSON data padded to `payload_bytes` with a
    /// repeated alphabet (what the earlier figures ran; it compresses to nothing).
    Filler,
    /// [`crate::workload::RealisticOrders`]: design.md's order events, varied JSON payloads
    /// (107–173 B) and metadata (~110 B), 64 orders interleaved; `payload_bytes` is ignored.
    Orders,
}

/// `n` threads spinning in a busy loop until dropped (stopped and joined then).
pub struct BusyCores {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<u64>>,
}

impl BusyCores {
    pub fn start(n: usize) -> std::io::Result<Self> {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut busy = BusyCores { stop: std::sync::Arc::clone(&stop), threads: Vec::with_capacity(n) };
        for i in 0..n {
            let stop = std::sync::Arc::clone(&stop);
            let thread = std::thread::Builder::new().name(format!("busy-{i}")).spawn(move || {
                // Pure computation, no syscalls and no pause hint: a CPU-bound neighbour.
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ i as u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for _ in 0..1024 {
                        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    }
                    x = std::hint::black_box(x);
                }
                x
            })?;
            busy.threads.push(thread);
        }
        Ok(busy)
    }
}

impl Drop for BusyCores {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// This machine's limits, measured in the data directory in the same run.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct MachineLimits {
    pub fdatasync_per_sec: f64,
    pub write_bytes_per_sec: f64,
}

/// What a run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    pub config: BenchConfig,
    pub limits: MachineLimits,
    /// Operations: appends, stream reads or replayed events.
    pub operations: u64,
    pub events: u64,
    pub seconds: f64,
    pub events_per_sec: f64,
    pub operations_per_sec: f64,
    pub mb_per_sec: f64,
    pub latency_us_p50: f64,
    pub latency_us_p99: f64,
    pub latency_us_p999: f64,
    /// Operations per second over the fdatasync rate (durable appends: 1.0 = one sync each).
    pub ops_over_fdatasync: f64,
    /// Bytes per second over the sequential write bandwidth.
    pub bytes_over_bandwidth: f64,
    pub fsyncs: u64,
    /// CPU time the measuring thread spent per event, user and system (replay only: it runs on
    /// one thread). Unlike the rates it hardly moves when other processes take the CPU, so it
    /// compares two builds on a busy machine.
    pub cpu_ns_per_event: Option<f64>,
}

/// Raw totals of a run, before rates and ratios.
struct Measured {
    operations: u64,
    events: u64,
    bytes: u64,
    seconds: f64,
    fsyncs: u64,
    cpu_ns: Option<u64>,
}

/// CPU time this thread has run, in ns (Linux: `/proc/thread-self/schedstat`); `None` where
/// that file does not exist.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

impl BenchReport {
    fn new(config: &BenchConfig, limits: MachineLimits, m: Measured, mut latencies: Vec<Duration>) -> Self {
        latencies.sort_unstable();
        let us = |p| percentile(&latencies, p).as_secs_f64() * 1e6;
        BenchReport {
            config: config.clone(),
            limits,
            operations: m.operations,
            events: m.events,
            seconds: m.seconds,
            events_per_sec: m.events as f64 / m.seconds,
            operations_per_sec: m.operations as f64 / m.seconds,
            mb_per_sec: m.bytes as f64 / m.seconds / 1e6,
            latency_us_p50: us(0.50),
            latency_us_p99: us(0.99),
            latency_us_p999: us(0.999),
            ops_over_fdatasync: m.operations as f64 / m.seconds / limits.fdatasync_per_sec,
            bytes_over_bandwidth: m.bytes as f64 / m.seconds / limits.write_bytes_per_sec,
            fsyncs: m.fsyncs,
            cpu_ns_per_event: m.cpu_ns.map(|ns| ns as f64 / m.events.max(1) as f64),
        }
    }
}

/// Measures this machine's limits in `dir`.
pub fn measure_limits(dir: &Path) -> std::io::Result<MachineLimits> {
    Ok(MachineLimits {
        fdatasync_per_sec: fdatasync_rate(dir, Duration::from_secs(1))?,
        write_bytes_per_sec: sequential_write_bandwidth(dir, 128 << 20)?,
    })
}

/// Pre-generated order events, so generating payloads is not part of what is timed.
enum EventPool {
    Filler {
        orders: Vec<Vec<NewEvent>>,
        streams: usize,
    },
    /// The realistic orders of every stream, in the order the peers' load appended them.
    Orders(Vec<WorkloadEvent>),
}

impl EventPool {
    fn new(config: &BenchConfig) -> Self {
        match config.workload {
            Workload::Filler => {
                let workload = OrderWorkload { payload_bytes: config.payload_bytes, ..OrderWorkload::default() };
                let distinct = config.streams.clamp(1, 4096);
                EventPool::Filler {
                    orders: (0..distinct).map(|i| workload.order_events(i)).collect(),
                    streams: config.streams.max(1),
                }
            }
            Workload::Orders => {
                EventPool::Orders(crate::workload::RealisticOrders::default().events(config.streams.max(1), 64))
            }
        }
    }

    /// Event `i` of the run. Filler: orders take turns, each through its lifecycle. Orders:
    /// the interleaved lifecycles, from the start again once all are used.
    fn event(&self, i: u64) -> (String, NewEvent) {
        match self {
            EventPool::Filler { orders, streams } => {
                let order = (i as usize) % streams;
                let events = &orders[order % orders.len()];
                (OrderWorkload::stream(order), events[(i as usize / streams) % events.len()].clone())
            }
            EventPool::Orders(events) => {
                let e = &events[(i as usize) % events.len()];
                (e.stream.clone(), e.event.clone())
            }
        }
    }
}

/// Runs `config` against an embedded store in `dir`; `progress(done, total)` is called as it
/// goes. The store is opened with `options` (the caller chooses the sync mode).
pub fn run_embedded(
    dir: &Path,
    options: logbook::Options,
    config: &BenchConfig,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> logbook::Result<BenchReport> {
    use logbook::Store;
    let _busy = BusyCores::start(config.busy_cores).map_err(|e| logbook::Error::io("starting busy threads", e))?;
    let limits = measure_limits(dir).map_err(|e| logbook::Error::io("measuring the machine's limits", e))?;
    let store = Store::open(dir, options)?;
    let pool = EventPool::new(config);
    if matches!(config.mode, BenchMode::Read | BenchMode::Replay | BenchMode::Mixed) {
        fill(&store, config, &pool, progress)?;
    }
    let fsyncs_before = store.stats().fsyncs;
    let cpu_before = thread_cpu_ns();
    let start = Instant::now();
    let (operations, events, bytes, latencies) = match config.mode {
        BenchMode::Append => append_phase(&store, config, &pool, progress)?,
        BenchMode::Read => read_phase(&store, config, config.writers, start + config.duration)?,
        BenchMode::Replay => replay_phase(&store)?,
        BenchMode::Mixed => {
            let deadline = start + config.duration;
            let readers = {
                let (store, config) = (store.clone(), config.clone());
                std::thread::spawn(move || read_phase(&store, &config, config.writers, deadline))
            };
            let (ops, evs, bytes, mut lat) = append_phase(&store, config, &pool, progress)?;
            let (rops, revs, rbytes, rlat) =
                readers.join().map_err(|_| logbook::Error::InvalidInput("reader thread panicked".into()))??;
            lat.extend(rlat);
            (ops + rops, evs + revs, bytes + rbytes, lat)
        }
    };
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    // Only a replay runs wholly on this thread; the other modes' work is on others.
    let cpu_ns = match (config.mode, cpu_before, thread_cpu_ns()) {
        (BenchMode::Replay, Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    let fsyncs = store.stats().fsyncs - fsyncs_before;
    store.close()?;
    let measured = Measured { operations, events, bytes, seconds, fsyncs, cpu_ns };
    Ok(BenchReport::new(config, limits, measured, latencies))
}

/// (operations, events, bytes, latencies) of one daemon connection, or why it stopped.
type DaemonResult = Result<(u64, u64, u64, Vec<Duration>), String>;

/// How `logbook bench --connect` reaches a daemon.
#[derive(Debug, Clone)]
pub struct DaemonTarget {
    pub addr: String,
    /// (tenant, token) when the daemon requires AUTH.
    pub auth: Option<(String, String)>,
    /// Commands sent per round trip by each connection.
    pipeline: usize,
}

impl DaemonTarget {
    pub fn new(addr: impl Into<String>, auth: Option<(String, String)>, pipeline: usize) -> Self {
        DaemonTarget { addr: addr.into(), auth, pipeline: pipeline.max(1) }
    }

    fn connect(&self) -> Result<logbook_server::client::Client, String> {
        let mut client = logbook_server::client::Client::connect(&self.addr)
            .map_err(|e| format!("connecting to {}: {e}", self.addr))?;
        if let Some((tenant, token)) = &self.auth {
            client.auth(tenant, token).map_err(|e| e.to_string())?;
        }
        Ok(client)
    }
}

/// Runs `config` against a daemon: `writers` connections, each sending `pipeline` commands per
/// round trip (APPEND, or APPENDMANY for batches; READ; READALL for replay). The machine's
/// limits are measured in `limits_dir`, which should be on the daemon's disk.
pub fn run_daemon(
    target: &DaemonTarget,
    limits_dir: &Path,
    config: &BenchConfig,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<BenchReport, String> {
    let _busy = BusyCores::start(config.busy_cores).map_err(|e| format!("starting busy threads: {e}"))?;
    let limits = measure_limits(limits_dir).map_err(|e| format!("measuring the machine's limits: {e}"))?;
    let pool = EventPool::new(config);
    let fsyncs_before = daemon_fsyncs(target)?;
    let start = Instant::now();
    let deadline = start + config.duration;
    let (next, reads) = (std::sync::atomic::AtomicU64::new(0), std::sync::atomic::AtomicU64::new(0));
    let appends_done = std::sync::atomic::AtomicBool::new(false);
    // Mixed: `writers` appending connections and as many reading ones, until the appends end.
    let (main_mode, readers) = match config.mode {
        BenchMode::Mixed => (BenchMode::Append, config.writers.max(1)),
        mode => (mode, 0),
    };
    let results: Vec<DaemonResult> = std::thread::scope(|scope| {
        let join = |h: std::thread::ScopedJoinHandle<'_, DaemonResult>| {
            h.join().unwrap_or(Err("bench thread panicked".into()))
        };
        let reading: Vec<_> = (0..readers)
            .map(|_| {
                let worker = DaemonWorker { mode: BenchMode::Read, next: &reads, stop: Some(&appends_done) };
                scope.spawn(|| daemon_worker(target, config, &pool, worker, deadline, progress))
            })
            .collect();
        let main: Vec<_> = (0..config.writers.max(1))
            .map(|_| {
                let worker = DaemonWorker { mode: main_mode, next: &next, stop: None };
                scope.spawn(|| daemon_worker(target, config, &pool, worker, deadline, progress))
            })
            .collect();
        let mut results: Vec<DaemonResult> = main.into_iter().map(join).collect();
        appends_done.store(true, std::sync::atomic::Ordering::Release);
        results.extend(reading.into_iter().map(join));
        results
    });
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    let (mut operations, mut events, mut bytes, mut latencies) = (0, 0, 0, Vec::new());
    for result in results {
        let (o, e, b, l) = result?;
        operations += o;
        events += e;
        bytes += b;
        latencies.extend(l);
    }
    let fsyncs = daemon_fsyncs(target)?.saturating_sub(fsyncs_before);
    let measured = Measured { operations, events, bytes, seconds, fsyncs, cpu_ns: None };
    Ok(BenchReport::new(config, limits, measured, latencies))
}

fn daemon_fsyncs(target: &DaemonTarget) -> Result<u64, String> {
    let info = target.connect()?.info().map_err(|e| e.to_string())?;
    Ok(info.lines().find_map(|l| l.strip_prefix("fsyncs:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0))
}

/// One connection's share of a daemon run: (operations, events, bytes, round-trip latencies).
/// What one daemon connection does: its mode, the shared counter it draws work from, and
/// (for readers beside appenders) when to stop.
struct DaemonWorker<'a> {
    mode: BenchMode,
    next: &'a std::sync::atomic::AtomicU64,
    stop: Option<&'a std::sync::atomic::AtomicBool>,
}

fn daemon_worker(
    target: &DaemonTarget,
    config: &BenchConfig,
    pool: &EventPool,
    worker: DaemonWorker<'_>,
    deadline: Instant,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> DaemonResult {
    let DaemonWorker { mode, next, stop } = worker;
    let mut client = target.connect()?;
    let (mut ops, mut evs, mut bytes, mut lat) = (0u64, 0u64, 0u64, Vec::new());
    let batch = config.batch.max(1) as u64;
    let mut replay_from = 1u64;
    while Instant::now() < deadline && !stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::Acquire)) {
        let mut commands = Vec::with_capacity(target.pipeline);
        let mut round_events = 0;
        for _ in 0..target.pipeline {
            match mode {
                BenchMode::Append | BenchMode::Mixed => {
                    let i = next.fetch_add(batch, std::sync::atomic::Ordering::Relaxed);
                    if i >= config.events {
                        break;
                    }
                    let n = batch.min(config.events - i);
                    commands.push(append_command(pool, i, n));
                    round_events += n;
                    bytes += commands.last().map_or(0, |c: &Vec<Vec<u8>>| c.iter().map(Vec::len).sum::<usize>()) as u64;
                }
                BenchMode::Read => {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let stream = OrderWorkload::stream((i.wrapping_mul(7919) as usize) % config.streams.max(1));
                    commands.push(vec![b"READ".to_vec(), stream.into_bytes()]);
                }
                BenchMode::Replay => {
                    commands.push(vec![
                        b"READALL".to_vec(),
                        b"FROM".to_vec(),
                        replay_from.to_string().into_bytes(),
                        b"COUNT".to_vec(),
                        b"1000".to_vec(),
                    ]);
                    break;
                }
            }
        }
        if commands.is_empty() {
            break;
        }
        let start = Instant::now();
        let replies = client.pipeline(&commands).map_err(|e| e.to_string())?;
        lat.push(start.elapsed());
        for reply in replies {
            let value = reply.map_err(|e| format!("server refused a bench command: {e}"))?;
            if let logbook_protocol::Value::Array(items) = &value {
                if matches!(mode, BenchMode::Read | BenchMode::Replay) {
                    round_events += items.len() as u64;
                    if mode == BenchMode::Replay {
                        if items.is_empty() {
                            return Ok((ops, evs, bytes, lat));
                        }
                        replay_from += items.len() as u64;
                    }
                }
            }
            ops += 1;
        }
        evs += round_events;
        if stop.is_none() {
            progress(evs, config.events); // readers beside appenders do not drive the bar
        }
    }
    Ok((ops, evs, bytes, lat))
}

fn append_command(pool: &EventPool, i: u64, n: u64) -> Vec<Vec<u8>> {
    let (stream, first) = pool.event(i);
    if n == 1 {
        return vec![
            b"APPEND".to_vec(),
            stream.into_bytes(),
            first.event_type.into_bytes(),
            first.data,
            b"META".to_vec(),
            first.metadata,
        ];
    }
    let events: Vec<serde_json::Value> = (i..i + n)
        .map(|k| {
            let e = pool.event(k).1;
            let data: serde_json::Value = serde_json::from_slice(&e.data).unwrap_or(serde_json::Value::Null);
            let meta: serde_json::Value = serde_json::from_slice(&e.metadata).unwrap_or(serde_json::json!({}));
            serde_json::json!({ "type": e.event_type, "data": data, "meta": meta })
        })
        .collect();
    vec![b"APPENDMANY".to_vec(), stream.into_bytes(), serde_json::Value::Array(events).to_string().into_bytes()]
}

type PhaseResult = logbook::Result<(u64, u64, u64, Vec<Duration>)>;

fn fill(
    store: &logbook::Store,
    config: &BenchConfig,
    pool: &EventPool,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> logbook::Result<()> {
    let mut i = 0;
    while i < config.events {
        let n = (config.batch.max(1) as u64).min(config.events - i);
        let (stream, _) = pool.event(i);
        let events = (i..i + n).map(|k| pool.event(k).1).collect();
        store.append(&stream, logbook::ExpectedVersion::Any, events)?;
        i += n;
        progress(i, config.events);
    }
    Ok(())
}

fn append_phase(
    store: &logbook::Store,
    config: &BenchConfig,
    pool: &EventPool,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> PhaseResult {
    let next = std::sync::atomic::AtomicU64::new(0);
    let deadline = Instant::now() + config.duration;
    let batch = config.batch.max(1) as u64;
    let results: Vec<PhaseResult> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..config.writers.max(1))
            .map(|_| {
                scope.spawn(|| {
                    let (mut ops, mut evs, mut bytes, mut lat) = (0u64, 0u64, 0u64, Vec::new());
                    loop {
                        let i = next.fetch_add(batch, std::sync::atomic::Ordering::Relaxed);
                        if i >= config.events || Instant::now() >= deadline {
                            return Ok((ops, evs, bytes, lat));
                        }
                        let n = batch.min(config.events - i);
                        let (size, start) = if config.multi_stream {
                            let parts = multi_stream_parts(pool, i, n);
                            let size: usize = parts
                                .iter()
                                .flat_map(|p| p.events.iter().map(move |e| (p.stream.len(), e)))
                                .map(|(s, e)| s + e.data.len() + e.metadata.len() + e.event_type.len() + 16)
                                .sum();
                            let start = Instant::now();
                            store.append_batch(parts)?;
                            (size, start)
                        } else {
                            let (stream, _) = pool.event(i);
                            let events: Vec<NewEvent> = (i..i + n).map(|k| pool.event(k).1).collect();
                            let size: usize = events
                                .iter()
                                .map(|e| stream.len() + e.data.len() + e.metadata.len() + e.event_type.len() + 16)
                                .sum();
                            let start = Instant::now();
                            store.append(&stream, logbook::ExpectedVersion::Any, events)?;
                            (size, start)
                        };
                        lat.push(start.elapsed());
                        ops += 1;
                        evs += n;
                        bytes += size as u64;
                        progress(i + n, config.events);
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(Err(logbook::Error::Shutdown))).collect()
    });
    merge(results)
}

/// Events `i..i + n` of the workload as batch parts: consecutive events of one stream share
/// a part, so every event keeps its own order stream (the order workload interleaves them).
fn multi_stream_parts(pool: &EventPool, i: u64, n: u64) -> Vec<logbook::AppendPart> {
    let mut parts: Vec<logbook::AppendPart> = Vec::new();
    for k in i..i + n {
        let (stream, event) = pool.event(k);
        match parts.last_mut() {
            Some(part) if part.stream == stream => part.events.push(event),
            _ => parts.push(logbook::AppendPart::new(stream, logbook::ExpectedVersion::Any, vec![event])),
        }
    }
    parts
}

fn read_phase(store: &logbook::Store, config: &BenchConfig, threads: usize, deadline: Instant) -> PhaseResult {
    let results: Vec<PhaseResult> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|t| {
                scope.spawn(move || {
                    let (mut ops, mut evs, mut bytes, mut lat) = (0u64, 0u64, 0u64, Vec::new());
                    let mut rng = SplitMix64::seed_from_u64(t as u64);
                    while Instant::now() < deadline {
                        let stream = OrderWorkload::stream((rng.next_u64() % config.streams.max(1) as u64) as usize);
                        let start = Instant::now();
                        let events = store.read_stream(&stream, 1, 1000, logbook::Direction::Forward)?;
                        lat.push(start.elapsed());
                        ops += 1;
                        evs += events.len() as u64;
                        bytes += events.iter().map(|e| e.data().len() as u64).sum::<u64>();
                    }
                    Ok((ops, evs, bytes, lat))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(Err(logbook::Error::Shutdown))).collect()
    });
    merge(results)
}

fn replay_phase(store: &logbook::Store) -> PhaseResult {
    let (mut evs, mut bytes, mut lat) = (0u64, 0u64, Vec::new());
    let mut next = 1;
    loop {
        let start = Instant::now();
        let page = store.read_all_page(next, 10_000, &logbook::Filter::all())?;
        if page.events.is_empty() {
            return Ok((evs, evs, bytes, lat));
        }
        lat.push(start.elapsed());
        evs += page.events.len() as u64;
        bytes += page.events.iter().map(|e| e.data().len() as u64).sum::<u64>();
        next = page.next_position;
    }
}

fn merge(results: Vec<PhaseResult>) -> PhaseResult {
    let (mut ops, mut evs, mut bytes, mut lat) = (0, 0, 0, Vec::new());
    for result in results {
        let (o, e, b, l) = result?;
        ops += o;
        evs += e;
        bytes += b;
        lat.extend(l);
    }
    Ok((ops, evs, bytes, lat))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_has_the_design_shape() {
        let workload = OrderWorkload { orders: 200, ..OrderWorkload::default() };
        let events = workload.events();
        let per_order = events.len() as f64 / 200.0;
        assert!((8.0..=11.0).contains(&per_order), "{per_order} events per order");
        assert!(events.iter().all(|e| e.event.data.len() == 471));
        // Interleaved: the first 64 events belong to 64 different orders.
        let first: std::collections::HashSet<_> = events[..64].iter().map(|e| e.stream.clone()).collect();
        assert_eq!(first.len(), 64);
        // Deterministic.
        assert_eq!(workload.events()[100].event, events[100].event);
    }

    #[test]
    fn embedded_append_run_reports_ratios() {
        let dir = tempfile::tempdir().unwrap();
        let config = BenchConfig {
            mode: BenchMode::Append,
            events: 200,
            payload_bytes: 100,
            batch: 4,
            multi_stream: true,
            writers: 2,
            streams: 10,
            duration: Duration::from_secs(30),
            busy_cores: 1,
            workload: Workload::Filler,
        };
        let options = logbook::Options { segment_bytes: 64 * 1024, ..Default::default() };
        let report = run_embedded(dir.path(), options, &config, &|_, _| {}).unwrap();
        assert_eq!((report.events, report.operations), (200, 50));
        assert!(report.fsyncs >= 1 && report.fsyncs <= 50, "{} fsyncs for 50 appends", report.fsyncs);
        assert!(report.limits.fdatasync_per_sec > 0.0 && report.ops_over_fdatasync > 0.0);
        assert!(report.latency_us_p50 <= report.latency_us_p99 && report.latency_us_p99 <= report.latency_us_p999);
        let store = logbook::Store::open(dir.path(), logbook::Options::default()).unwrap();
        assert_eq!(store.head_position(), 200);
    }

    #[test]
    fn percentiles_pick_by_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&sorted, 0.5), Duration::from_micros(51));
        assert_eq!(percentile(&sorted, 0.99), Duration::from_micros(99));
        assert_eq!(percentile(&[], 0.99), Duration::ZERO);
    }
}
