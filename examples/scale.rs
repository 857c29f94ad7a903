//! Scale probe: fills a store with many events across many streams, then measures resident
//! heap memory (RssAnon: mmapped segment and index pages are page cache, not heap), open time
//! after a clean shutdown and after a simulated crash (CLEAN marker removed: full
//! verification), and `$all` replay.
//!
//! cargo run --release --example scale -- [events] [streams] [payload_bytes] [dir]
//! Defaults: 2,000,000 events, 200,000 streams, 100-byte payloads, a temp dir.

use std::time::Instant;

use logbook::{ExpectedVersion, Filter, NewEvent, Options, Store, SyncMode};

fn rss_anon_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("RssAnon:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Opens the store in a fresh process (so freed fill-phase memory cannot hide the cost) and
/// prints open time and resident heap.
fn measure_open(dir: &str) -> Result<(), Box<dyn std::error::Error>> {
    let baseline = rss_anon_kib();
    let start = Instant::now();
    let store = Store::open(dir, Options::default())?;
    let open = start.elapsed();
    let heap = rss_anon_kib().saturating_sub(baseline);
    let (streams, events) = (store.stream_count() as f64, store.head_position() as f64);
    println!(
        "open after clean shutdown: {open:.2?}; heap {heap} KiB = {:.1} B/stream, {:.2} B/event",
        heap as f64 * 1024.0 / streams,
        heap as f64 * 1024.0 / events
    );
    store.close()?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("open") {
        return measure_open(&args[2]);
    }
    let events: u64 = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(2_000_000);
    let streams: u64 = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let payload: usize = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(100);
    let temp = tempfile::tempdir()?;
    let dir = args.get(4).map(std::path::PathBuf::from).unwrap_or_else(|| temp.path().to_path_buf());
    let fill_options = Options { sync: SyncMode::Never, ..Options::default() };

    let baseline = rss_anon_kib();
    let start = Instant::now();
    let store = Store::open(&dir, fill_options.clone())?;
    let data = vec![b'x'; payload];
    // Each stream gets its events in appends of `batch`; consecutive appends hit different
    // streams, so every segment holds many streams, like the interleaved order workload.
    let batch = (events / streams).clamp(1, 64);
    let mut appended = 0u64;
    let mut append_no = 0u64;
    while appended < events {
        let stream = format!("order-{:08}", append_no % streams);
        let n = batch.min(events - appended);
        let evs = (0..n).map(|_| NewEvent::new("ITEM_ADDED", data.clone())).collect();
        store.append(&stream, ExpectedVersion::Any, evs)?;
        appended += n;
        append_no += 1;
    }
    store.sync()?;
    let fill = start.elapsed();
    let after_fill = rss_anon_kib();
    let segments = store.segment_count();
    let streams = store.stream_count() as u64;
    store.close()?;
    println!("filled {events} events in {streams} streams ({payload} B payloads) in {fill:.2?}, {segments} segments");
    println!("heap after fill: {} KiB above baseline", after_fill.saturating_sub(baseline));

    let status = std::process::Command::new(std::env::current_exe()?).arg("open").arg(&dir).status()?;
    assert!(status.success(), "open probe failed");
    let store = Store::open(&dir, Options::default())?;
    let start = Instant::now();
    let mut replayed = 0usize;
    for event in store.scan_all(1, Filter::all()) {
        event?;
        replayed += 1;
    }
    let replay = start.elapsed();
    println!(
        "replay $all: {replayed} events in {replay:.2?} = {:.2} M events/s",
        replayed as f64 / replay.as_secs_f64() / 1e6
    );
    drop(store);

    std::fs::remove_file(dir.join("CLEAN"))?;
    let start = Instant::now();
    let store = Store::open(&dir, Options::default())?;
    println!("open after a crash (every sealed frame verified): {:.2?}", start.elapsed());
    store.close()?;
    // Allocated blocks, not lengths: the active segment is a sparse preallocation.
    let bytes: u64 = std::fs::read_dir(dir.join("segments"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.metadata().ok())
        .map(|m| std::os::unix::fs::MetadataExt::blocks(&m) * 512)
        .sum();
    let own = (16 + "order-00000000".len() + "ITEM_ADDED".len() + payload) as f64;
    println!(
        "bytes on disk (segments + indexes, allocated): {bytes} = {:.1} B/event = {:.2}x the event's own {own} bytes",
        bytes as f64 / events as f64,
        bytes as f64 / events as f64 / own
    );
    Ok(())
}
