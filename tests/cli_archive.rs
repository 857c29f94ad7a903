//! `logbook export`, `read --archive`, and the cold tier in `verify` and `stats`, through the
//! real binary.

use std::path::Path;
use std::process::{Command, Output};

use logbook::{ExpectedVersion, NewEvent, Options, Store};

const BIN: &str = env!("CARGO_BIN_EXE_logbook");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env("RUST_LOG", "warn").output().expect("spawn")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn fill(data: &Path) {
    let store = Store::open(data, Options::default()).unwrap();
    for (stream, body) in [("acme:order-1", &b"{\"a\":1}"[..]), ("order-2", b"\x00\x01"), ("acme:order-1", b"{}")] {
        store.append(stream, ExpectedVersion::Any, vec![NewEvent::new("T", body.to_vec())]).unwrap();
    }
    store.close().unwrap();
}

#[test]
fn export_read_verify_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fill(&data);
    let (data_s, out_s) = (data.to_str().unwrap(), dir.path().join("out"));
    let out_s = out_s.to_str().unwrap();

    let out = run(&["export", "--data", data_s, "--out", out_s, "--since", "2000-01-01", "--until=-1d", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((report["events"].as_u64(), report["files"].as_u64()), (Some(3), Some(2)), "{report}");
    let out = run(&["export", "--data", data_s, "--out", out_s, "--since", "yesterday"]);
    assert!(!out.status.success() && text(&out).contains("--since wants"), "{}", text(&out));
    let out = run(&["export", "--data", data_s, "--out", &format!("{data_s}/archive")]);
    assert!(!out.status.success() && text(&out).contains("own cold tier"), "{}", text(&out));

    // Make the export the store's cold tier to exercise read --archive, verify and stats; the
    // same positions are then both hot and archived, which verify must flag.
    std::fs::rename(dir.path().join("out"), data.join("archive")).unwrap();
    let out = run(&["read", "--archive", "--data", data_s, "acme:order-1"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].contains("acme:order-1@1 T {\"a\":1}") && lines[1].contains("acme:order-1@2"), "{stdout}");
    let out = run(&["read", "--archive", "--data", data_s, "--json", "--rev", "--count", "1", "acme:order-1"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["version"], 2, "{json}");

    let out = run(&["stats", "--data", data_s, "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["archived_events"], 3, "{stats}");

    let out = run(&["verify", "--data", data_s]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("archive: 2 files, 3 rows") && said.contains("also in the hot tier"), "{said}");
}

#[test]
fn delete_stream_compact_backup_and_read_archive_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Small segments with old events (a manual clock), so there is something to compact.
    let clock = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(1_700_000_000_000_000));
    let options = Options {
        segment_bytes: 1024,
        clock: logbook::Clock::manual(std::sync::Arc::clone(&clock)),
        ..Options::default()
    };
    let store = Store::open(&data, options).unwrap();
    for i in 0..40u64 {
        let stream = if i % 2 == 0 { "acme:order-1" } else { "cart-7" };
        store.append(stream, ExpectedVersion::Any, vec![NewEvent::new("T", format!("{{\"i\":{i}}}"))]).unwrap();
    }
    store.close().unwrap();
    let data_s = data.to_str().unwrap();
    let config = dir.path().join("retention.toml");
    std::fs::write(&config, "[retention]\n[[retention.rules]]\nmax_age = \"30d\"\n").unwrap();

    let out = run(&["delete-stream", "--data", data_s, "cart-7", "--expected", "20"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&["compact", "--data", data_s, "--config", config.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Everything but each stream's newest event and the active segment is old enough to go;
    // cart-7 is deleted, so its events are dropped, not archived.
    assert!(report["archived"].as_u64().unwrap() > 5, "{report}");
    assert!(report["purged"].as_u64().unwrap() > 5, "{report}");
    let out = run(&["read", "--archive", "--data", data_s, "acme:order-1", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let rows: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(rows.len() > 5, "{}", text(&out));
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["version"].as_u64(), Some(i as u64 + 1), "archived versions in order from 1");
        assert_eq!(row["data"]["i"].as_u64(), Some(2 * i as u64), "{row}");
    }
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[retention.rules]]\nmax_count = 0\n").unwrap();
    let out = run(&["compact", "--data", data_s, "--config", bad.to_str().unwrap()]);
    assert!(!out.status.success() && text(&out).contains("max_count must be at least 1"), "{}", text(&out));
    let copy = dir.path().join("copy");
    let out = run(&["backup", "--data", data_s, "--out", copy.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&["verify", "--data", copy.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn compact_migrate_archive_rewrites_a_first_layout_cold_tier_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let clock = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(1_700_000_000_000_000));
    let options = Options {
        segment_bytes: 1024,
        clock: logbook::Clock::manual(std::sync::Arc::clone(&clock)),
        ..Options::default()
    };
    let store = Store::open(&data, options).unwrap();
    for i in 0..40u64 {
        let body = if i % 3 == 0 { format!("{{\"i\":{i}}}").into_bytes() } else { vec![0, 1, i as u8] };
        store.append("acme:order-1", ExpectedVersion::Any, vec![NewEvent::new("T", body)]).unwrap();
    }
    store.close().unwrap();
    let data_s = data.to_str().unwrap();
    let config = dir.path().join("retention.toml");
    std::fs::write(&config, "[retention]\n[[retention.rules]]\nmax_age = \"30d\"\n").unwrap();
    let out = run(&["compact", "--data", data_s, "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let root = data.join("archive");
    logbook_archive::downgrade_to_first_layout(&root).unwrap();
    let archive = logbook_archive::Archive::open(&root, logbook::std_fs()).unwrap();
    let (rows, files) = (archive.read_range(0, u64::MAX).unwrap(), archive.file_count());
    assert!(archive.holds_first_layout() && files > 0);
    let segments = std::fs::read_dir(data.join("segments")).unwrap().count();

    let out = run(&["compact", "--data", data_s, "--migrate-archive", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success(), "the hot tier is not compacted by --migrate-archive: {}", text(&out));
    let out = run(&["compact", "--data", data_s, "--migrate-archive", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((report["files"].as_u64(), report["rows"].as_u64()), (Some(files), Some(rows.len() as u64)), "{report}");
    let archive = logbook_archive::Archive::open(&root, logbook::std_fs()).unwrap();
    assert!(!archive.holds_first_layout());
    assert_eq!(archive.read_range(0, u64::MAX).unwrap(), rows);
    assert_eq!(std::fs::read_dir(data.join("segments")).unwrap().count(), segments, "hot tier untouched");
    let out = run(&["compact", "--data", data_s, "--migrate-archive"]);
    assert!(out.status.success() && text(&out).contains("rewrote 0 cold-tier file(s)"), "{}", text(&out));
    let out = run(&["verify", "--data", data_s]);
    assert!(out.status.success(), "{}", text(&out));
}

/// `read --archive` on a store without a cold tier says so (it printed nothing and exited 0,
/// which reads like an unknown stream: review of stop 24), and creates nothing.
#[test]
fn read_archive_without_a_cold_tier_says_so_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fill(&data);
    let out = run(&["read", "--archive", "--data", data.to_str().unwrap(), "acme:order-1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no cold tier"), "{}", text(&out));
    assert!(!data.join(logbook::ARCHIVE_DIR).exists(), "nothing created");
}
