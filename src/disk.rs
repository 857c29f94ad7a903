//! `logbook bench disk`: bytes on disk after loading the realistic order workload, and (with
//! compression) what compressing the sealed segments saves and costs to read.
//!
//! Allocated bytes are `st_blocks × 512` summed over every file under the data directory
//! (what `du` counts: a zero-filled spare counts, a sparse hole does not), after the store is
//! closed. The events' own bytes are id (16) + type + stream + data + metadata.

use std::path::Path;
use std::time::{Duration, Instant};

use rand_core::{Rng as _, SeedableRng};
use rand_xoshiro::SplitMix64;

use crate::bench::WorkloadEvent;
use crate::workload::RealisticOrders;

/// What `bench disk` loads and measures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DiskConfig {
    /// Orders (streams) generated; their events are appended in the peers' interleaved order.
    pub streams: usize,
    /// Stop after this many events (all of the orders' events when larger).
    pub events: u64,
    /// Events per atomic multi-stream append while loading.
    pub batch: usize,
    pub segment_bytes: u64,
    /// Seconds of stream reads per round in each store (with compression).
    pub read_seconds: f64,
    /// Rounds of read and replay, alternating between the two stores (with compression).
    pub rounds: usize,
    /// Compress sealed segments in a second store and compare.
    pub compress: bool,
}

/// One file's share of the allocated bytes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileUsage {
    pub path: String,
    pub len: u64,
    pub allocated: u64,
}

/// Allocated and apparent bytes of a data directory.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DirUsage {
    pub allocated: u64,
    pub apparent: u64,
    pub files: Vec<FileUsage>,
}

/// Sums `st_blocks × 512` (allocated) and lengths over every file under `dir`.
pub fn dir_usage(dir: &Path) -> std::io::Result<DirUsage> {
    use std::os::unix::fs::MetadataExt;
    let mut usage = DirUsage::default();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                let allocated = meta.blocks() * 512;
                usage.allocated += allocated;
                usage.apparent += meta.len();
                let path = entry.path().strip_prefix(dir).unwrap_or(&entry.path()).display().to_string();
                usage.files.push(FileUsage { path, len: meta.len(), allocated });
            }
        }
    }
    usage.files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(usage)
}

/// Read and replay of one store in one round.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReadFigures {
    pub stream_reads_per_sec: f64,
    pub read_p50_us: f64,
    pub read_p99_us: f64,
    pub replay_events_per_sec: f64,
}

/// What `bench disk` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DiskReport {
    pub config: DiskConfig,
    pub events: u64,
    pub streams: usize,
    /// Mean id + type + stream + data + metadata bytes per event.
    pub own_bytes_per_event: f64,
    pub mean_data_bytes: f64,
    pub mean_metadata_bytes: f64,
    /// The store after the load, closed.
    pub plain: DirUsage,
    pub plain_allocated_per_event: f64,
    /// With compression: the second store after its sealed segments were compressed.
    pub compressed: Option<CompressedFigures>,
}

/// The compressed store beside the plain one.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CompressedFigures {
    pub usage: DirUsage,
    pub allocated_per_event: f64,
    /// Events in sealed segments, their own bytes, and the compressed files' bytes.
    pub sealed_events: u64,
    pub sealed_own_bytes: u64,
    pub sealed_compressed_bytes: u64,
    pub sealed_uncompressed_bytes: u64,
    /// Compressed sealed files / the own bytes of the events in them.
    pub sealed_over_own: f64,
    /// Per round: (plain, compressed).
    pub rounds: Vec<(ReadFigures, ReadFigures)>,
    /// Medians of compressed / plain over the rounds.
    pub read_ratio: f64,
    pub replay_ratio: f64,
}

fn own_bytes(e: &WorkloadEvent) -> u64 {
    (16 + e.event.event_type.len() + e.stream.len() + e.event.data.len() + e.event.metadata.len()) as u64
}

fn options(config: &DiskConfig) -> logbook::Options {
    logbook::Options { segment_bytes: config.segment_bytes, ..logbook::Options::default() }
}

/// Appends `events` in multi-stream batches of `batch`, durably, and closes the store.
fn load(dir: &Path, config: &DiskConfig, events: &[WorkloadEvent]) -> logbook::Result<()> {
    let store = logbook::Store::open(dir, options(config))?;
    for chunk in events.chunks(config.batch.max(1)) {
        let mut parts: Vec<logbook::AppendPart> = Vec::new();
        for e in chunk {
            match parts.last_mut() {
                Some(part) if part.stream == e.stream => part.events.push(e.event.clone()),
                _ => parts.push(logbook::AppendPart::new(
                    e.stream.clone(),
                    logbook::ExpectedVersion::Any,
                    vec![e.event.clone()],
                )),
            }
        }
        store.append_batch(parts)?;
    }
    store.close()
}

fn measure_reads(dir: &Path, config: &DiskConfig, seed: u64) -> logbook::Result<ReadFigures> {
    let store = logbook::Store::open(dir, options(config))?;
    let mut rng = SplitMix64::seed_from_u64(seed);
    let mut latencies = Vec::new();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(config.read_seconds);
    // Warm: one pass over a sample of streams first, so both stores are read from the cache.
    for i in 0..config.streams.min(20_000) {
        store.read_stream(&RealisticOrders::stream(i), 1, 1000, logbook::Direction::Forward)?;
    }
    let start = Instant::now();
    while Instant::now() < deadline.max(start + Duration::from_millis(100)) {
        let stream = RealisticOrders::stream((rng.next_u64() % config.streams.max(1) as u64) as usize);
        let t = Instant::now();
        let got = store.read_stream(&stream, 1, 1000, logbook::Direction::Forward)?;
        latencies.push(t.elapsed());
        std::hint::black_box(got);
    }
    let reads_per_sec = latencies.len() as f64 / start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let us = |p| crate::bench::percentile(&latencies, p).as_secs_f64() * 1e6;
    // Replay everything in global order, again and again for half as long as the reads (one
    // pass of the workload lasts a few tens of milliseconds: too short to time alone).
    let mut replayed = 0u64;
    let t = Instant::now();
    let replay_for = Duration::from_secs_f64(config.read_seconds / 2.0).max(Duration::from_millis(200));
    while t.elapsed() < replay_for {
        let mut next = 1;
        loop {
            let page = store.read_all_page(next, 10_000, &logbook::Filter::all())?;
            if page.events.is_empty() {
                break;
            }
            replayed += page.events.len() as u64;
            next = page.next_position;
        }
    }
    let replay = replayed as f64 / t.elapsed().as_secs_f64();
    store.close()?;
    Ok(ReadFigures {
        stream_reads_per_sec: reads_per_sec,
        read_p50_us: us(0.5),
        read_p99_us: us(0.99),
        replay_events_per_sec: replay,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    v[v.len() / 2]
}

/// Loads the workload into `plain` (and, with compression, into `compressed` too, whose sealed
/// segments are then compressed), and measures both.
pub fn run_disk(plain: &Path, compressed: &Path, config: &DiskConfig) -> Result<DiskReport, String> {
    let mut events = RealisticOrders::default().events(config.streams.max(1), 64);
    events.truncate(config.events.min(events.len() as u64) as usize);
    let n = events.len() as f64;
    let own: u64 = events.iter().map(own_bytes).sum();
    let data: usize = events.iter().map(|e| e.event.data.len()).sum();
    let meta: usize = events.iter().map(|e| e.event.metadata.len()).sum();
    load(plain, config, &events).map_err(|e| e.to_string())?;
    let plain_usage = dir_usage(plain).map_err(|e| e.to_string())?;
    let mut report = DiskReport {
        config: config.clone(),
        events: events.len() as u64,
        streams: config.streams,
        own_bytes_per_event: own as f64 / n,
        mean_data_bytes: data as f64 / n,
        mean_metadata_bytes: meta as f64 / n,
        plain_allocated_per_event: plain_usage.allocated as f64 / n,
        plain: plain_usage,
        compressed: None,
    };
    if config.compress {
        load(compressed, config, &events).map_err(|e| e.to_string())?;
        let summary = compress_store(compressed, config)?;
        let usage = dir_usage(compressed).map_err(|e| e.to_string())?;
        let sealed_own: u64 = events[..summary.events as usize].iter().map(own_bytes).sum();
        let mut rounds = Vec::new();
        for round in 0..config.rounds.max(1) {
            let a = measure_reads(plain, config, round as u64).map_err(|e| e.to_string())?;
            let b = measure_reads(compressed, config, round as u64).map_err(|e| e.to_string())?;
            rounds.push((a, b));
        }
        let read_ratio = median(rounds.iter().map(|(a, b)| b.stream_reads_per_sec / a.stream_reads_per_sec).collect());
        let replay_ratio =
            median(rounds.iter().map(|(a, b)| b.replay_events_per_sec / a.replay_events_per_sec).collect());
        report.compressed = Some(CompressedFigures {
            allocated_per_event: usage.allocated as f64 / n,
            usage,
            sealed_events: summary.events,
            sealed_own_bytes: sealed_own,
            sealed_compressed_bytes: summary.compressed_bytes,
            sealed_uncompressed_bytes: summary.uncompressed_bytes,
            sealed_over_own: summary.compressed_bytes as f64 / sealed_own.max(1) as f64,
            rounds,
            read_ratio,
            replay_ratio,
        });
    }
    Ok(report)
}

/// What compressing a store's sealed segments did.
struct CompressSummary {
    /// Events in the compressed segments (they are the first events of the log).
    events: u64,
    compressed_bytes: u64,
    uncompressed_bytes: u64,
}

fn compress_store(dir: &Path, config: &DiskConfig) -> Result<CompressSummary, String> {
    let options = logbook::Options { compression: logbook::Compression::Lz4, ..options(config) };
    let store = logbook::Store::open(dir, options).map_err(|e| e.to_string())?;
    let report = logbook::compress_sealed(&store).map_err(|e| e.to_string())?;
    store.close().map_err(|e| e.to_string())?;
    Ok(CompressSummary {
        events: report.events,
        compressed_bytes: report.compressed_bytes,
        uncompressed_bytes: report.uncompressed_bytes,
    })
}

/// The report as text.
pub fn print_disk(r: &DiskReport) {
    println!(
        "disk: {} events in {} order streams, {} per append, {} MiB segments",
        r.events,
        r.streams,
        r.config.batch,
        r.config.segment_bytes >> 20
    );
    println!(
        "  events' own bytes: {:.1} B/event (data {:.1}, metadata {:.1}; id 16 + type + stream)",
        r.own_bytes_per_event, r.mean_data_bytes, r.mean_metadata_bytes
    );
    let files = |u: &DirUsage| {
        for f in &u.files {
            println!("    {:<40} {:>12} B long {:>12} B allocated", f.path, f.len, f.allocated);
        }
    };
    println!(
        "  plain store: {} B allocated = {:.1} B/event ({:.2}x own bytes); {} B apparent",
        r.plain.allocated,
        r.plain_allocated_per_event,
        r.plain_allocated_per_event / r.own_bytes_per_event,
        r.plain.apparent
    );
    files(&r.plain);
    if let Some(c) = &r.compressed {
        println!(
            "  compressed store: {} B allocated = {:.1} B/event ({:.2}x own bytes)",
            c.usage.allocated,
            c.allocated_per_event,
            c.allocated_per_event / r.own_bytes_per_event
        );
        files(&c.usage);
        println!(
            "  sealed: {} events, own bytes {} B, segments {} B uncompressed -> {} B compressed = {:.3}x own bytes ({:.3}x the segments)",
            c.sealed_events,
            c.sealed_own_bytes,
            c.sealed_uncompressed_bytes,
            c.sealed_compressed_bytes,
            c.sealed_over_own,
            c.sealed_compressed_bytes as f64 / c.sealed_uncompressed_bytes.max(1) as f64
        );
        for (i, (a, b)) in c.rounds.iter().enumerate() {
            println!(
                "  round {i}: read one stream {:.0} -> {:.0} reads/s (p50 {:.1} -> {:.1} µs, p99 {:.1} -> {:.1} µs) = {:.2}x; replay {:.2}M -> {:.2}M ev/s = {:.2}x",
                a.stream_reads_per_sec,
                b.stream_reads_per_sec,
                a.read_p50_us,
                b.read_p50_us,
                a.read_p99_us,
                b.read_p99_us,
                b.stream_reads_per_sec / a.stream_reads_per_sec,
                a.replay_events_per_sec / 1e6,
                b.replay_events_per_sec / 1e6,
                b.replay_events_per_sec / a.replay_events_per_sec
            );
        }
        println!("  compressed / plain, median of rounds: read {:.2}x, replay {:.2}x", c.read_ratio, c.replay_ratio);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bench disk` end to end on a small load: the figures it reports are the files' own.
    #[test]
    fn disk_report_counts_allocated_bytes_and_compares_compression() {
        let dir = tempfile::tempdir().unwrap();
        let config = DiskConfig {
            streams: 300,
            events: 2_000,
            batch: 32,
            segment_bytes: 128 * 1024,
            read_seconds: 0.05,
            rounds: 1,
            compress: true,
        };
        let report = run_disk(&dir.path().join("a"), &dir.path().join("b"), &config).unwrap();
        assert_eq!(report.events, 2_000);
        assert!((250.0..350.0).contains(&report.own_bytes_per_event), "{}", report.own_bytes_per_event);
        assert_eq!(report.plain.allocated, report.plain.files.iter().map(|f| f.allocated).sum::<u64>());
        assert!(report.plain.files.iter().any(|f| f.path.ends_with(".seg")));
        let c = report.compressed.as_ref().unwrap();
        assert!(c.sealed_events > 1_000, "{}", c.sealed_events);
        assert!(c.sealed_over_own < 0.6, "{}", c.sealed_over_own);
        assert!(c.usage.allocated < report.plain.allocated);
        assert!(c.read_ratio > 0.0 && c.replay_ratio > 0.0);
    }
}
