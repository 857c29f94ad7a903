//! Compressed sealed segments (issue 14, item 6): reads, replay, open after a clean stop and
//! after a crash, verify and compaction see the same events as before compression; damage in a
//! compressed block is reported with its file and offset; a compression interrupted at any
//! operation, then a power loss, loses nothing and a second run finishes it.

#[path = "disk_support/mod.rs"]
mod disk_support;

use std::path::Path;
use std::sync::Arc;

use logbook::storage::{Fault, OpKind, PowerLoss, SimFileSystem};
use logbook::{compress_sealed, Compression, Error, Filter, Options, RecordedEvent, Severity, Store, VerifyOnOpen};
use logbook_cli::workload::RealisticOrders;

const ORDERS: usize = 300;

fn options() -> Options {
    Options { segment_bytes: 96 * 1024, compression: Compression::Lz4, ..Options::default() }
}

fn scratch() -> tempfile::TempDir {
    match Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap()),
        false => tempfile::tempdir().unwrap(),
    }
}

/// The realistic order workload in small segments, closed.
fn build(dir: &Path) {
    let store = Store::open(dir, options()).unwrap();
    let events = RealisticOrders::default().events(ORDERS, 64);
    logbook_cli::workload::append_in_batches(&store, &events, 16).unwrap();
    store.close().unwrap();
}

/// Everything a reader sees: `$all` and every order stream, as comparable values.
fn snapshot(store: &Store) -> (Vec<String>, Vec<Vec<String>>) {
    let show = |e: &RecordedEvent| {
        format!(
            "{} {} {} {} {} {:?} {:?} {:?}",
            e.position(),
            e.stream(),
            e.version(),
            e.event_type(),
            e.id(),
            e.timestamp_us(),
            e.data(),
            e.metadata()
        )
    };
    let all = store.read_all(1, usize::MAX, &Filter::all()).unwrap().iter().map(show).collect();
    let streams = (0..ORDERS)
        .map(|i| {
            let events = store.read_stream(&RealisticOrders::stream(i), 1, 1000, logbook::Direction::Forward).unwrap();
            events.iter().map(show).collect()
        })
        .collect();
    (all, streams)
}

fn read_back(dir: &Path, options: Options) -> (Vec<String>, Vec<Vec<String>>) {
    let store = Store::open(dir, options).unwrap();
    let seen = snapshot(&store);
    store.close().unwrap();
    seen
}

fn healthy(dir: &Path, context: &str) {
    let report = logbook::verify_dir(dir).unwrap();
    let damage: Vec<_> = report.findings.iter().filter(|f| f.severity == Severity::Corruption).collect();
    assert!(damage.is_empty(), "{context}: verify found {damage:#?}");
}

fn seg_files(dir: &Path) -> Vec<std::path::PathBuf> {
    disk_support::segment_files(dir).into_iter().filter(|p| p.extension().is_some_and(|x| x == "seg")).collect()
}

#[test]
fn compressed_segments_read_replay_reopen_verify_and_compact_like_plain_ones() {
    let dir = scratch();
    build(dir.path());
    let before = read_back(dir.path(), options());
    let plain_bytes: u64 = seg_files(dir.path()).iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();

    // Off by default: refused, nothing written.
    let store = Store::open(dir.path(), Options { compression: Compression::None, ..options() }).unwrap();
    assert!(matches!(compress_sealed(&store), Err(Error::InvalidInput(_))));
    store.close().unwrap();

    let store = Store::open(dir.path(), options()).unwrap();
    let report = compress_sealed(&store).unwrap();
    assert!(report.segments >= 5, "{report:?}");
    assert!(report.compressed_bytes * 2 < report.uncompressed_bytes, "{report:?}");
    // The same events, from the store that compressed them (readers switched over) ...
    assert_eq!(snapshot(&store), before);
    // ... and appends go on; a second run compresses only what was sealed since.
    let again = compress_sealed(&store).unwrap();
    assert_eq!((again.segments, again.already), (0, report.segments));
    store.close().unwrap();
    let compressed_bytes: u64 = seg_files(dir.path()).iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
    assert!(compressed_bytes < plain_bytes, "{compressed_bytes} vs {plain_bytes}");

    // After a clean stop, with every frame checked, and after a crash (no CLEAN record).
    assert_eq!(read_back(dir.path(), options()), before);
    assert_eq!(read_back(dir.path(), Options { verify_on_open: VerifyOnOpen::Always, ..options() }), before);
    std::fs::remove_file(dir.path().join("CLEAN")).unwrap();
    assert_eq!(read_back(dir.path(), options()), before);
    healthy(dir.path(), "after compression");

    // A lost index is rebuilt from the compressed segment (logical offsets).
    let first = &seg_files(dir.path())[0];
    std::fs::remove_file(first.with_extension("idx")).unwrap();
    assert_eq!(read_back(dir.path(), options()), before);

    // Compaction reads compressed inputs (here keeping each order's last 4 events); its output
    // is plain and holds the survivors, byte for byte.
    let store = Store::open(dir.path(), options()).unwrap();
    let policy = logbook::RetentionPolicy {
        rules: vec![logbook::RetentionRule {
            category: Some("order".into()),
            event_type: None,
            max_age_us: None,
            max_count: Some(4),
        }],
        archive: false,
        ..logbook::RetentionPolicy::default()
    };
    let compacted = logbook::compact(&store, &policy, i64::MAX / 2, |_, _| {}).unwrap();
    assert!(compacted.rewritten > 0 && compacted.purged + compacted.expired > 0, "{compacted:?}");
    let survivors = snapshot(&store);
    assert!(survivors.0.len() < before.0.len());
    assert!(survivors.0.iter().all(|e| before.0.contains(e)), "a survivor changed");
    store.close().unwrap();
    assert_eq!(read_back(dir.path(), Options { verify_on_open: VerifyOnOpen::Always, ..options() }), survivors);
    healthy(dir.path(), "after compaction");
}

#[test]
fn a_damaged_compressed_block_is_corruption_with_file_and_offset() {
    let dir = scratch();
    build(dir.path());
    let store = Store::open(dir.path(), options()).unwrap();
    compress_sealed(&store).unwrap();
    store.close().unwrap();
    let victim = seg_files(dir.path())[1].clone();
    let mut bytes = std::fs::read(&victim).unwrap();
    let at = bytes.len() - 100; // inside the last compressed block
    bytes[at] ^= 0x55;
    std::fs::write(&victim, &bytes).unwrap();

    // A plain open trusts the index, so it opens; reading the damaged block is corruption.
    let store = Store::open(dir.path(), options()).unwrap();
    let err = store.read_all(1, usize::MAX, &Filter::all()).unwrap_err();
    match err {
        Error::Corruption { file, offset, .. } => {
            assert_eq!(file, victim);
            assert!(offset <= at as u64 && offset > 96, "offset {offset} for a flip at {at}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    store.close().unwrap();
    // verify names the file and the block; open with every frame checked refuses.
    let report = logbook::verify_dir(dir.path()).unwrap();
    let found = report.findings.iter().find(|f| f.severity == Severity::Corruption).expect("verify finds it");
    assert_eq!(found.file, victim);
    assert!(found.offset <= at as u64 && found.offset > 96, "{found:?}");
    match Store::open(dir.path(), Options { verify_on_open: VerifyOnOpen::Always, ..options() }) {
        Err(Error::Corruption { file, .. }) => assert_eq!(file, victim),
        other => panic!("expected corruption, got {:?}", other.map(|_| ())),
    }
    // A damaged block table is found even by a plain open (reads depend on it).
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[at] ^= 0x55;
    bytes[100] ^= 0x01;
    std::fs::write(&victim, &bytes).unwrap();
    match Store::open(dir.path(), options()) {
        Err(Error::Corruption { file, offset, .. }) => assert_eq!((file, offset), (victim, 92)),
        other => panic!("expected corruption, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn compression_interrupted_at_every_operation_loses_nothing() {
    let base = scratch();
    build(base.path());
    let before = read_back(base.path(), options());
    // How many operations a whole compression performs.
    let reference = scratch();
    disk_support::copy_tree(base.path(), reference.path());
    let sim = SimFileSystem::new();
    let store = Store::open(reference.path(), Options { fs: Arc::new(sim.clone()), ..options() }).unwrap();
    let kinds = [OpKind::Write, OpKind::Sync, OpKind::Metadata];
    let counts_before = kinds.map(|k| sim.count(k));
    let report = compress_sealed(&store).unwrap();
    let counts_after = kinds.map(|k| sim.count(k));
    store.close().unwrap();
    assert!(report.segments >= 5);
    // `LOGBOOK_COMPRESSION_FAULT_MODES=all`: every power-loss mode, not only dropped writes.
    let modes: &[PowerLoss] = if std::env::var("LOGBOOK_COMPRESSION_FAULT_MODES").is_ok_and(|v| v == "all") {
        &[PowerLoss::DropUnsynced, PowerLoss::CutUnsynced, PowerLoss::GarbageUnsynced, PowerLoss::RandomPages]
    } else {
        &[PowerLoss::DropUnsynced]
    };
    let mut runs = 0;
    for (k, kind) in kinds.into_iter().enumerate() {
        // Every operation of the first two segments' compressions, and a sample of the rest.
        let total = counts_after[k] - counts_before[k];
        let steps: Vec<u64> = (1..=total).filter(|n| *n <= 12 || n % 7 == 0 || *n == total).collect();
        for (nth, &mode) in steps.into_iter().flat_map(|n| modes.iter().map(move |m| (n, m))) {
            let context = format!("{kind:?} #{nth} of the compression failing, then {mode:?}");
            let dir = scratch();
            disk_support::copy_tree(base.path(), dir.path());
            let sim = SimFileSystem::new();
            let store = Store::open(dir.path(), Options { fs: Arc::new(sim.clone()), ..options() }).unwrap();
            sim.fail(Fault { kind, nth: sim.count(kind) + nth, torn_at: None });
            let outcome = compress_sealed(&store);
            assert_eq!(sim.injected(), 1, "{context}: the fault never fired ({outcome:?})");
            assert!(outcome.is_err(), "{context}: the compression succeeded despite its failed operation");
            assert!(compress_sealed(&store).is_err(), "{context}: a failed compression runs again before a reopen");
            sim.power_off();
            drop(store);
            sim.restore_durable(dir.path(), mode, nth).unwrap();
            assert_eq!(read_back(dir.path(), options()), before, "{context}: events changed");
            healthy(dir.path(), &context);
            // A second run finishes the job.
            let store = Store::open(dir.path(), options()).unwrap();
            compress_sealed(&store).unwrap_or_else(|e| panic!("{context}: second run: {e}"));
            store.close().unwrap();
            assert_eq!(
                read_back(dir.path(), Options { verify_on_open: VerifyOnOpen::Always, ..options() }),
                before,
                "{context}: second run"
            );
            runs += 1;
        }
    }
    assert!(runs > 20, "{runs} runs");
}

/// `logbook compress` on a stopped store, then `logbook verify`: the same events, smaller.
#[test]
fn the_compress_verb_compresses_and_verify_accepts_it() {
    let dir = scratch();
    build(dir.path());
    let before = read_back(dir.path(), options());
    let data = dir.path().to_str().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_logbook")).args(args).output().unwrap();
        assert!(out.status.success(), "logbook {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let printed = run(&["compress", "--data", data, "--json"]);
    let report: serde_json::Value = serde_json::from_str(printed.trim()).unwrap();
    assert!(report["segments"].as_u64().unwrap() >= 5, "{report}");
    assert!(report["compressed_bytes"].as_u64().unwrap() * 2 < report["uncompressed_bytes"].as_u64().unwrap());
    let printed = run(&["compress", "--data", data]);
    assert!(printed.contains("compressed 0 sealed segment(s)"), "{printed}");
    // `compact --compress`: compaction (which here merges the small compressed segments into
    // one plain segment of the default size), then compression of what it wrote.
    let printed = run(&["compact", "--data", data, "--compress", "--json"]);
    let lines: Vec<serde_json::Value> = printed.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{printed}");
    assert!(lines[0]["rewritten"].as_u64().unwrap() >= 1, "{printed}");
    assert_eq!(lines[1]["segments"], lines[0]["rewritten"], "what compaction wrote is compressed: {printed}");
    let printed = run(&["compress", "--data", data]);
    assert!(printed.contains("compressed 0 sealed segment(s)"), "{printed}");
    run(&["verify", "--data", data]);
    assert_eq!(read_back(dir.path(), options()), before);
}

/// A poor man's fuzzing run in every `cargo test` (cargo-fuzz needs nightly): random byte
/// flips, cuts and splices of a compressed segment through the fuzz target's checks.
#[test]
fn random_damage_to_a_compressed_segment_never_panics() {
    use rand_core::{Rng as _, SeedableRng};
    let dir = scratch();
    build(dir.path());
    let store = Store::open(dir.path(), options()).unwrap();
    compress_sealed(&store).unwrap();
    store.close().unwrap();
    let file = std::fs::read(&seg_files(dir.path())[0]).unwrap();
    let mut rng = rand_xoshiro::SplitMix64::seed_from_u64(14);
    for round in 0..3_000 {
        let mut bytes = file.clone();
        for _ in 0..1 + rng.next_u64() % 4 {
            let at = (rng.next_u64() % bytes.len() as u64) as usize;
            match rng.next_u64() % 3 {
                0 => bytes[at] ^= 1 << (rng.next_u64() % 8),
                1 => bytes.truncate(at.max(1)),
                _ => bytes[at] = rng.next_u64() as u8,
            }
        }
        // Small blocks of the table region are where lengths live: damage them more often.
        if round % 2 == 0 && bytes.len() > 200 {
            let at = 64 + (rng.next_u64() % 136) as usize;
            bytes[at] = rng.next_u64() as u8;
        }
        logbook_fuzzing::compressed_decode(&bytes);
    }
}

/// `logbook repair` on a compressed segment with a damaged block: cut back to the events of
/// the blocks before it (written back plain), later segments set aside, the rest intact.
#[test]
fn repair_cuts_a_compressed_segment_at_its_damaged_block() {
    let dir = scratch();
    build(dir.path());
    let before = read_back(dir.path(), options());
    let store = Store::open(dir.path(), options()).unwrap();
    compress_sealed(&store).unwrap();
    store.close().unwrap();
    let files = seg_files(dir.path());
    let victim = files[2].clone();
    let base: u64 = victim.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    let at = bytes.len() - 100; // in the last block: the blocks before it survive
    bytes[at] ^= 0x08;
    std::fs::write(&victim, &bytes).unwrap();
    std::fs::remove_file(dir.path().join("CLEAN")).unwrap();
    assert!(matches!(Store::open(dir.path(), options()), Err(Error::Corruption { file, .. }) if file == victim));
    let report = logbook::repair_dir(dir.path()).unwrap();
    let (first, _) = report.gave_up.expect("positions given up");
    assert!(first > base, "kept the segment's good blocks: gave up from {first}, segment base {base}");
    let store = Store::open(dir.path(), Options { verify_on_open: VerifyOnOpen::Always, ..options() }).unwrap();
    let head = store.head_position();
    assert_eq!(head, first - 1);
    let kept = store.read_all(1, usize::MAX, &Filter::all()).unwrap();
    assert_eq!(kept.len() as u64, head);
    store.close().unwrap();
    // Every event kept is the one that was there, byte for byte.
    let after = read_back(dir.path(), options());
    assert_eq!(after.0[..], before.0[..head as usize]);
    healthy(dir.path(), "after repair");
}

/// `logbook repair` where the damaged compressed segment goes whole (its first block is bad)
/// and the segment before it, the new last one, is compressed too: the repair completes (the
/// log continues in a new plain segment), says what it gave up, and a second run finds nothing.
#[test]
fn repair_completes_when_the_segment_left_last_is_compressed() {
    let dir = scratch();
    build(dir.path());
    let before = read_back(dir.path(), options());
    let total = before.0.len() as u64;
    let store = Store::open(dir.path(), options()).unwrap();
    compress_sealed(&store).unwrap();
    store.close().unwrap();
    let files = seg_files(dir.path());
    assert!(files.len() >= 3, "{files:?}");
    let victim = files[1].clone();
    let base: u64 = victim.file_stem().unwrap().to_str().unwrap().parse().unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[300] ^= 0x01; // in its first block: nothing of it survives
    std::fs::write(&victim, &bytes).unwrap();
    let report = logbook::repair_dir(dir.path()).unwrap();
    assert_eq!(report.head, base - 1, "{report:?}");
    assert_eq!(report.gave_up, Some((base, total)), "{report:?}");
    healthy(dir.path(), "after repair");
    let after = read_back(dir.path(), Options { verify_on_open: VerifyOnOpen::Always, ..options() });
    assert_eq!(after.0[..], before.0[..(base - 1) as usize]);
    let again = logbook::repair_dir(dir.path()).unwrap();
    assert!(again.damage.is_empty() && again.gave_up.is_none(), "{again:?}");
}

/// Events longer than a cached read (64 KiB) in a compressed segment are read whole by stream
/// reads and by an idempotent retry, before and after a reopen: the rest of such a frame was
/// read from the compressed file at its uncompressed offset, "corruption" on a healthy store
/// (attacker review of stop 24, finding 3).
#[test]
fn long_events_in_compressed_segments_are_read_whole_by_stream_reads() {
    let dir = scratch();
    let big = |i: usize| -> Vec<u8> { (0..300_000 + i * 9_000).map(|b| (b * 31 + i) as u8).collect() };
    let id = uuid::Uuid::from_u128(0x5eed);
    let options = || Options { segment_bytes: 1024 * 1024, compression: Compression::Lz4, ..Options::default() };
    let store = Store::open(dir.path(), options()).unwrap();
    store.append("a", logbook::ExpectedVersion::Any, vec![logbook::NewEvent::new("T", b"x".to_vec())]).unwrap();
    let mut event = logbook::NewEvent::new("T", big(0));
    event.id = Some(id);
    let first = store.append("a", logbook::ExpectedVersion::Any, vec![event.clone()]).unwrap();
    for i in 1..6 {
        store.append("fill", logbook::ExpectedVersion::Any, vec![logbook::NewEvent::new("T", big(i))]).unwrap();
    }
    let report = compress_sealed(&store).unwrap();
    assert!(report.segments >= 1, "{report:?}");
    let check = |store: &Store, when: &str| {
        let got = store.read_stream("a", 1, 10, logbook::Direction::Forward).unwrap_or_else(|e| panic!("{when}: {e}"));
        assert_eq!(got.len(), 2, "{when}");
        assert!(got[1].data() == big(0).as_slice(), "{when}: the long event differs");
        let fill = store
            .read_stream("fill", u64::MAX, 10, logbook::Direction::Backward)
            .unwrap_or_else(|e| panic!("{when}: {e}"));
        assert_eq!(fill.len(), 5, "{when}");
        for (k, e) in fill.iter().enumerate() {
            assert!(e.data() == big(5 - k).as_slice(), "{when}: fill event {} differs", 5 - k);
        }
        let retried = store
            .append("a", logbook::ExpectedVersion::Any, vec![event.clone()])
            .unwrap_or_else(|e| panic!("{when}: retry: {e}"));
        assert_eq!(retried.first_position, first.first_position, "{when}: the retry answers the original");
    };
    check(&store, "compressed");
    store.close().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    check(&store, "reopened");
}
