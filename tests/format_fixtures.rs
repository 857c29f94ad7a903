//! Format compatibility (reliability.md item 20): data directories written by earlier versions
//! of the format are committed under `tests/fixtures/<name>/`, each with the `expected.json` its
//! generator wrote. Every one must still open, read back exactly those events, verify as
//! healthy, and take the next append at the next position and version.
//!
//! Adding a fixture after a format change: run the generator with the new format's name
//! (`LOGBOOK_FIXTURE=v2 cargo test --test format_fixtures -- --ignored --exact generate_fixtures`),
//! commit the two new directories and add their line to `fixtures!` below. Never regenerate or
//! edit a committed fixture: it stands for data already on someone's disk. See
//! tests/fixtures/README.md.

#[path = "disk_support/mod.rs"]
mod disk_support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use logbook::Severity;
use logbook::{Clock, Direction, Error, ExpectedVersion, Filter, NewEvent, Options, RecordedEvent, Store, SyncMode};
use serde_json::{json, Value};
use uuid::Uuid;

/// One test per committed fixture; `ALL` lists them, and `every_fixture_directory_is_tested`
/// fails when a directory under tests/fixtures/ has no line here.
macro_rules! fixtures {
    ($($test:ident: $dir:literal,)*) => {
        const ALL: &[&str] = &[$($dir),*];
        $(#[test] fn $test() { check_fixture($dir); })*
    };
}

fixtures! {
    v1_clean: "v1-clean",
    v1_crashed: "v1-crashed",
    v2_clean: "v2-clean",
    v2_crashed: "v2-crashed",
    v3_clean: "v3-clean",
    v3_crashed: "v3-crashed",
    v4_clean: "v4-clean",
    v4_crashed: "v4-crashed",
}

/// v4's crashed copy records how far its active segment was synced: the same copy with that
/// segment's frames zeroed is refused (in v3's it was cut back as a torn tail).
#[test]
fn v4_crashed_records_how_far_its_active_segment_was_synced() {
    let temp = tempfile::tempdir().unwrap();
    copy_store(&fixtures_dir().join("v4-crashed"), temp.path());
    let active = disk_support::segment_files(temp.path()).pop().unwrap();
    disk_support::zero_frames(&active);
    match Store::open(temp.path(), Options::default()) {
        Err(Error::Corruption { file, reason, .. }) => {
            assert_eq!(file, active);
            assert!(reason.contains("synced up to position"), "{reason}");
        }
        other => panic!("opened or failed otherwise: {:?}", other.map(|s| s.head_position())),
    }
}

const EXPECTED_FILE: &str = "expected.json";
/// `segment_bytes` the generator uses: small, so a few events fill several sealed segments and
/// the preallocated active segment stays small.
const SEGMENT_BYTES: u64 = 1024;
/// 2026-01-01T00:00:00Z: where the generator's manual clock starts.
const START_US: i64 = 1_767_225_600_000_000;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures")
}

// ---------------------------------------------------------------------------------------------
// The events, as JSON

/// Payload bytes as JSON: a string when they are UTF-8, else `{"hex": "..."}`.
fn bytes_json(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::String(text.to_string()),
        Err(_) => json!({ "hex": hex::encode(bytes) }),
    }
}

fn event_json(e: &RecordedEvent) -> Value {
    json!({
        "position": e.position(),
        "stream": e.stream(),
        "version": e.version(),
        "type": e.event_type(),
        "timestamp_us": e.timestamp_us(),
        "id": e.id().to_string(),
        "data": bytes_json(e.data()),
        "metadata": bytes_json(e.metadata()),
    })
}

/// Every event of `$all`, following `read_all_page` to the end.
fn read_all(store: &Store) -> Vec<Value> {
    let mut events = Vec::new();
    let mut from = 1;
    loop {
        let page = store.read_all_page(from, 1000, &Filter::all()).expect("read $all");
        events.extend(page.events.iter().map(event_json));
        if page.next_position <= from || page.next_position > store.head_position() {
            return events;
        }
        from = page.next_position;
    }
}

fn read_stream(store: &Store, stream: &str, direction: Direction) -> Vec<Value> {
    let from = match direction {
        Direction::Forward => 1,
        Direction::Backward => u64::MAX,
    };
    let events = store.read_stream(stream, from, 100_000, direction).expect("read stream");
    events.iter().map(event_json).collect()
}

/// Compares event lists, naming the first difference instead of printing both lists.
fn assert_events(actual: &[Value], expected: &[Value], what: &str) {
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert_eq!(a, e, "{what}: event {i} differs");
    }
    assert_eq!(actual.len(), expected.len(), "{what}: {} events, expected {}", actual.len(), expected.len());
}

fn array<'a>(value: &'a Value, key: &str) -> &'a Vec<Value> {
    value[key].as_array().unwrap_or_else(|| panic!("expected.json: '{key}' is not an array"))
}

// ---------------------------------------------------------------------------------------------
// Checking a fixture

/// Copies `from` to `to`, leaving out the top-level `expected.json` (not part of the store).
fn copy_store(from: &Path, to: &Path) {
    fn copy(from: &Path, to: &Path, top: bool) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            if top && name == EXPECTED_FILE {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &to.join(&name), false);
            } else {
                std::fs::copy(entry.path(), to.join(&name)).unwrap();
            }
        }
    }
    copy(from, to, true);
}

fn open(dir: &Path, now: &Arc<AtomicI64>) -> Store {
    let options = Options {
        segment_bytes: SEGMENT_BYTES,
        clock: Clock::manual(Arc::clone(now)),
        create_if_missing: false,
        ..Options::default()
    };
    Store::open(dir, options).unwrap_or_else(|e| panic!("opening a copy of the fixture: {e}"))
}

/// Reads `$all` and every stream and compares them with `expected`.
fn check_reads(store: &Store, expected: &Value, what: &str) {
    assert_events(&read_all(store), array(expected, "all"), &format!("{what}: $all"));
    let streams = expected["streams"].as_object().expect("expected.json: 'streams'");
    for (stream, events) in streams {
        let events = events.as_array().expect("stream events");
        assert_events(&read_stream(store, stream, Direction::Forward), events, &format!("{what}: stream {stream}"));
        let mut backward = events.clone();
        backward.reverse();
        let what_backward = format!("{what}: stream {stream} backward");
        assert_events(&read_stream(store, stream, Direction::Backward), &backward, &what_backward);
        let last = events.last().map_or(0, |e| e["version"].as_u64().unwrap());
        assert_eq!(store.stream_version(stream), last, "{what}: version of {stream}");
    }
    for stream in array(expected, "deleted") {
        let stream = stream.as_str().unwrap();
        assert!(store.is_deleted(stream), "{what}: {stream} is deleted");
        match store.read_stream(stream, 1, 10, Direction::Forward) {
            Err(Error::StreamDeleted(s)) => assert_eq!(s, stream),
            other => panic!("{what}: reading deleted {stream}: {other:?}"),
        }
    }
    assert_eq!(store.head_position(), expected["head_position"].as_u64().unwrap(), "{what}: head position");
}

fn check_fixture(name: &str) {
    let fixture = fixtures_dir().join(name);
    let expected: Value = serde_json::from_slice(
        &std::fs::read(fixture.join(EXPECTED_FILE)).unwrap_or_else(|e| panic!("{name}/{EXPECTED_FILE}: {e}")),
    )
    .expect("expected.json is JSON");
    assert!(!fixture.join("LOCK").exists(), "{name}: a committed fixture holds no LOCK");
    let clean = expected["clean"].as_bool().expect("expected.json: 'clean'");
    assert_eq!(fixture.join("CLEAN").exists(), clean, "{name}: CLEAN present iff expected.json says clean");
    assert!(logbook::holds_store(&fixture), "{name}: holds a store");

    // verify reads a fresh copy (it never writes, but nothing here opens the committed files).
    let temp = tempfile::tempdir().unwrap();
    let verify_copy = temp.path().join("verify");
    copy_store(&fixture, &verify_copy);
    let report = logbook::verify_dir(&verify_copy).expect("verify_dir");
    // An index of an older index version is derived data that open rebuilds: the only finding
    // an old fixture may have. (None of today's have any.)
    let unexpected: Vec<_> = report.findings.iter().filter(|f| f.severity != Severity::IndexRebuild).collect();
    assert!(unexpected.is_empty(), "{name}: verify: {unexpected:?}");
    let head = expected["head_position"].as_u64().unwrap();
    assert_eq!((report.first_position, report.last_position), (1, head), "{name}: verify's positions");
    assert!(report.segments >= 3, "{name}: sealed segments and an active one, got {}", report.segments);

    // Open a copy (open writes: CLEAN is removed, a torn tail would be cut), read everything.
    let data = temp.path().join("data");
    copy_store(&fixture, &data);
    let last_us = array(&expected, "all").iter().map(|e| e["timestamp_us"].as_i64().unwrap()).max().unwrap();
    let now = Arc::new(AtomicI64::new(last_us + 1_000_000));
    let store = open(&data, &now);
    check_reads(&store, &expected, &format!("{name}, first open"));

    // One more event: the next position, the stream's next version.
    let stream = "order-1";
    let events = expected["streams"][stream].as_array().expect("the fixture has order-1");
    let version = events.last().unwrap()["version"].as_u64().unwrap();
    let id = Uuid::from_u128(0xf1f1_0000_0000_7000_8000_0000_0000_0001);
    let new = NewEvent::new("FIXTURE_REOPENED", &b"{\"ok\":true}"[..]).with_id(id).with_metadata(&b"{}"[..]);
    let result = store.append(stream, ExpectedVersion::Exact(version), vec![new]).expect("append after open");
    assert_eq!((result.first_position, result.first_version), (head + 1, version + 1), "{name}: next append");
    store.close().expect("close");

    // Reopen: the old events and the new one.
    let mut expected = expected.clone();
    let appended = json!({
        "position": head + 1,
        "stream": stream,
        "version": version + 1,
        "type": "FIXTURE_REOPENED",
        "timestamp_us": now.load(Ordering::Acquire),
        "id": id.to_string(),
        "data": "{\"ok\":true}",
        "metadata": "{}",
    });
    expected["all"].as_array_mut().unwrap().push(appended.clone());
    expected["streams"][stream].as_array_mut().unwrap().push(appended);
    expected["head_position"] = json!(head + 1);
    let store = open(&data, &now);
    check_reads(&store, &expected, &format!("{name}, after an append and a reopen"));
    store.close().expect("close");
    let report = logbook::verify_dir(&data).expect("verify_dir");
    assert!(report.findings.is_empty(), "{name}: verify after a reopen: {:?}", report.findings);
}

#[test]
fn every_fixture_directory_is_tested() {
    let mut dirs: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("tests/fixtures")
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut listed: Vec<String> = ALL.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(dirs, listed, "each directory under tests/fixtures/ needs its line in fixtures! (and vice versa)");
}

#[test]
fn fixtures_stay_small() {
    fn size(path: &Path) -> u64 {
        let meta = std::fs::metadata(path).unwrap();
        if meta.is_dir() {
            std::fs::read_dir(path).unwrap().map(|e| size(&e.unwrap().path())).sum()
        } else {
            meta.len()
        }
    }
    for name in ALL {
        let bytes = size(&fixtures_dir().join(name));
        assert!(bytes < 100_000, "{name} is {bytes} bytes; keep fixtures well under 100 KB");
    }
}

// ---------------------------------------------------------------------------------------------
// The generator

/// What the generator appends, in order: the same script for every format version, so every
/// fixture holds the same events (only the bytes on disk differ).
enum Step {
    Append { stream: &'static str, expected: ExpectedVersion, events: Vec<(&'static str, Vec<u8>, Vec<u8>)> },
    Delete { stream: &'static str, expected: ExpectedVersion },
}

fn script() -> Vec<Step> {
    use ExpectedVersion::{Any, Exact, NoStream};
    let one = |stream, expected, event_type, data: &str, metadata: &str| Step::Append {
        stream,
        expected,
        events: vec![(event_type, data.as_bytes().to_vec(), metadata.as_bytes().to_vec())],
    };
    let mut steps = vec![
        one("order-1", NoStream, "CART_CREATED", r#"{"customer":"c-1","retailer":"r-1"}"#, r#"{"correlation":"k-1"}"#),
        one("cart-7", NoStream, "CART_CREATED", r#"{"customer":"c-7"}"#, ""),
        // A batch: three events, one append, one fsync.
        Step::Append {
            stream: "order-1",
            expected: Exact(1),
            events: vec![
                ("ITEM_ADDED", br#"{"sku":"sku-1","qty":2,"price_cents":1299}"#.to_vec(), br#"{"by":"web"}"#.to_vec()),
                ("ITEM_ADDED", br#"{"sku":"sku-2","qty":1,"price_cents":2001}"#.to_vec(), br#"{"by":"web"}"#.to_vec()),
                ("CHECKOUT_STARTED", br#"{"total_cents":4599}"#.to_vec(), Vec::new()),
            ],
        },
        // Binary data, a tenant prefix, empty metadata.
        Step::Append {
            stream: "acme:order-2",
            expected: NoStream,
            events: vec![("BLOB", vec![0, 1, 2, 0xfe, 0xff, b'\n'], Vec::new())],
        },
        one("cart-7", Exact(1), "CART_VIEWED", "{}", ""),
        one("order-1", Exact(4), "PAYMENT_CONFIRMED", r#"{"amount_cents":4599,"currency":"EUR"}"#, ""),
        one("café-3", Any, "NOTE", r#"{"text":"naïve ☕ — ünïcödé"}"#, r#"{"lang":"fr"}"#),
    ];
    // Filler, so the log spans several sealed segments.
    for i in 1..=12u64 {
        let stream = ["order-2", "order-3", "cart-7"][i as usize % 3];
        let data = format!(r#"{{"seq":{i},"padding":"{}"}}"#, "x".repeat(40 + i as usize));
        let step = Step::Append { stream, expected: Any, events: vec![("TICK", data.into_bytes(), Vec::new())] };
        steps.push(step);
    }
    steps.push(Step::Delete { stream: "cart-7", expected: Exact(6) });
    steps.extend([
        one("order-1", Exact(5), "SHIPPED", r#"{"carrier":"dhl"}"#, r#"{"correlation":"k-1"}"#),
        one("acme:order-2", Exact(1), "BLOB", "", ""),
        one("order-3", Any, "TICK", r#"{"seq":13}"#, ""),
    ]);
    steps
}

/// Runs the script into `dir` and returns the expected events (from what was appended, checked
/// against what the store reads back).
fn run_script(store: &Store, now: &AtomicI64) -> Value {
    let mut all = Vec::new();
    let mut streams = serde_json::Map::new();
    let mut deleted = Vec::new();
    let mut tombstones = Vec::new();
    let mut next_id = 1u128;
    for step in script() {
        // Each append one second (and a few microseconds) after the previous one.
        now.fetch_add(1_000_017, Ordering::AcqRel);
        let timestamp_us = now.load(Ordering::Acquire);
        match step {
            Step::Append { stream, expected, events } => {
                let batch: Vec<NewEvent> = events
                    .iter()
                    .map(|(event_type, data, metadata)| {
                        let id = Uuid::from_u128(0x0194_0000_0000_7000_8000_0000_0000_0000 + next_id);
                        next_id += 1;
                        NewEvent::new(*event_type, data.clone()).with_id(id).with_metadata(metadata.clone())
                    })
                    .collect();
                let result = store.append(stream, expected, batch.clone()).expect("append");
                for (i, event) in batch.iter().enumerate() {
                    let value = json!({
                        "position": result.first_position + i as u64,
                        "stream": stream,
                        "version": result.first_version + i as u64,
                        "type": event.event_type,
                        "timestamp_us": timestamp_us,
                        "id": event.id.unwrap().to_string(),
                        "data": bytes_json(&event.data),
                        "metadata": bytes_json(&event.metadata),
                    });
                    all.push(value.clone());
                    streams.entry(stream).or_insert_with(|| json!([])).as_array_mut().unwrap().push(value);
                }
            }
            Step::Delete { stream, expected } => {
                let result = store.delete_stream(stream, expected).expect("delete_stream");
                deleted.push(stream);
                tombstones.push(result.first_position);
            }
        }
    }
    let head = store.head_position();
    // What $all shows: deleted streams' events are hidden; the tombstones themselves (events
    // of the system stream `$deleted`) are taken from the store, and checked to be just that.
    let mut expected_all: Vec<Value> =
        all.into_iter().filter(|e| !deleted.contains(&e["stream"].as_str().unwrap())).collect();
    for event in read_all(store) {
        let position = event["position"].as_u64().unwrap();
        if tombstones.contains(&position) {
            assert!(event["stream"].as_str().unwrap().starts_with('$'), "a tombstone: {event}");
            expected_all.push(event);
        }
    }
    expected_all.sort_by_key(|e| e["position"].as_u64().unwrap());
    for stream in &deleted {
        streams.remove(*stream);
    }
    // The tombstones' own stream reads like any other.
    let tombstone_stream: Vec<Value> = expected_all.iter().filter(|e| e["stream"] == "$deleted").cloned().collect();
    assert_eq!(read_stream(store, "$deleted", Direction::Forward), tombstone_stream);
    streams.insert("$deleted".to_string(), Value::Array(tombstone_stream));
    json!({
        "generator": "LOGBOOK_FIXTURE=<name> cargo test --test format_fixtures -- --ignored --exact generate_fixtures",
        "segment_bytes": SEGMENT_BYTES,
        "head_position": head,
        "deleted": deleted,
        "streams": streams,
        "all": expected_all,
    })
}

fn write_fixture(from: &Path, to: &Path, mut expected: Value, clean: bool) {
    assert!(!to.exists(), "{} exists: a committed fixture is never regenerated", to.display());
    std::fs::create_dir_all(to).unwrap();
    copy_store(from, to);
    std::fs::remove_file(to.join("LOCK")).ok();
    if !clean {
        // The spare next segment is prepared by a background thread while the store is open;
        // a crash may come before it exists, and leaving it out keeps the copy deterministic.
        std::fs::remove_file(to.join("segments").join("next-segment.tmp")).ok();
    }
    assert_eq!(to.join("CLEAN").exists(), clean);
    expected["clean"] = json!(clean);
    let text = serde_json::to_string_pretty(&expected).unwrap() + "\n";
    std::fs::write(to.join(EXPECTED_FILE), text).unwrap();
}

/// Writes `tests/fixtures/<name>-clean` (closed cleanly) and `<name>-crashed` (a copy taken
/// while the store was open: no CLEAN, as after a crash) with today's code. Run by hand after a
/// format change, with `LOGBOOK_FIXTURE=<name>`; then add both to `fixtures!`.
#[test]
#[ignore = "writes tests/fixtures/<LOGBOOK_FIXTURE>-{clean,crashed}; run by hand after a format change"]
fn generate_fixtures() {
    let Ok(name) = std::env::var("LOGBOOK_FIXTURE") else {
        eprintln!("set LOGBOOK_FIXTURE=<name> (e.g. v2) to write tests/fixtures/<name>-clean and -crashed");
        return;
    };
    let clean_dir = fixtures_dir().join(format!("{name}-clean"));
    let crashed_dir = fixtures_dir().join(format!("{name}-crashed"));
    for dir in [&clean_dir, &crashed_dir] {
        assert!(!dir.exists(), "{} exists: a committed fixture is never regenerated", dir.display());
    }
    let temp = tempfile::tempdir().unwrap();
    let live = temp.path().join("data");
    let now = Arc::new(AtomicI64::new(START_US));
    let options = Options {
        segment_bytes: SEGMENT_BYTES,
        sync: SyncMode::Always,
        clock: Clock::manual(Arc::clone(&now)),
        // Every fdatasync is recorded in the manifest (from v4 on, the crashed copy carries
        // how far its active segment was synced).
        synced_record_every: std::time::Duration::ZERO,
        ..Options::default()
    };
    let store = Store::open(&live, options).expect("open");
    let expected = run_script(&store, &now);
    check_reads(&store, &expected, "the generator's own store");
    store.sync().expect("sync");
    write_fixture(&live, &crashed_dir, expected.clone(), false);
    store.close().expect("close");
    write_fixture(&live, &clean_dir, expected, true);
    for dir in [&clean_dir, &crashed_dir] {
        eprintln!("wrote {}", dir.display());
    }
}
