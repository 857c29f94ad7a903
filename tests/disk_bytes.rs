//! Bytes on disk (issue 14, item 6): a store allocates what its events need, not whole
//! preallocated segments and a zero-filled spare.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use logbook::{Options, Store, SyncMode};
use logbook_cli::workload::RealisticOrders;

fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.blocks() * 512).unwrap_or(0)
}

fn load(dir: &Path, options: &Options, orders: usize) -> u64 {
    let store = Store::open(dir, options.clone()).unwrap();
    let events = RealisticOrders::default().events(orders, 64);
    logbook_cli::workload::append_in_batches(&store, &events, 64).unwrap();
    store.close().unwrap();
    events.len() as u64
}

/// With 8 MiB segments and ~3.5 segments of events: the sealed segments are their frames,
/// the active one its frames plus at most 1.5 fill steps of zeroes, the spare (prepared only
/// once the active segment is three quarters full) one first step; reopening keeps it so.
#[test]
fn allocated_bytes_follow_the_frames() {
    const MIB: u64 = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let options = Options { segment_bytes: 8 * MIB, sync: SyncMode::Never, ..Options::default() };
    let events = load(dir.path(), &options, 9_000);
    let segments = dir.path().join("segments");
    let mut seg_files: Vec<_> = std::fs::read_dir(&segments)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    seg_files.sort();
    assert!(seg_files.len() >= 3, "{} segments for {events} events", seg_files.len());
    let active = seg_files.last().unwrap();
    for sealed in &seg_files[..seg_files.len() - 1] {
        let len = std::fs::metadata(sealed).unwrap().len();
        assert!(allocated(sealed) <= len.next_multiple_of(4096), "{} allocates past its length", sealed.display());
    }
    // The active segment: its frames and at most 1.5 fill steps of zeroes (4 MiB steps; it
    // started as the 1 MiB spare). Before: all 8 MiB, plus an 8 MiB spare.
    let spare = segments.join("next-segment.tmp");
    let total: u64 = seg_files.iter().map(|p| allocated(p)).sum::<u64>() + allocated(&spare);
    let frames: u64 = seg_files[..seg_files.len() - 1].iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
    assert!(allocated(active) <= 8 * MIB, "active segment allocates {}", allocated(active));
    assert!(allocated(&spare) <= MIB, "spare allocates {}", allocated(&spare));
    assert!(
        total <= frames + allocated(active) + MIB,
        "{total} B allocated for {frames} B of sealed frames and an active segment"
    );
    let per_event = total as f64 / events as f64;
    assert!(per_event < 480.0, "{per_event:.1} B/event allocated in segments");
    // Everything reads back.
    let store = Store::open(dir.path(), options).unwrap();
    assert_eq!(store.head_position(), events);
    let all = store.read_all(1, events as usize, &logbook::Filter::all()).unwrap();
    assert_eq!(all.len() as u64, events);
}
