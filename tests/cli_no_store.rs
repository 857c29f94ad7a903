//! Only `serve`, `demo` and `bench` create a store. Every other verb given a directory that holds
//! no logbook store (a typo in `--data`) says "no logbook store at <path>", exits with
//! `NO_STORE_EXIT` and creates nothing: not the directory, not LOCK, not a segment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_logbook");

/// The exit status for "no logbook store at <path>" (docs/operations.md, "The data directory").
const NO_STORE_EXIT: i32 = 3;

fn run_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(BIN).args(args).current_dir(cwd).env("RUST_LOG", "warn").output().expect("spawn")
}

fn text(out: &Output) -> String {
    format!("stdout: {}\nstderr: {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Everything under `root`: each directory, and each file with its bytes.
fn tree(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, into: &mut BTreeMap<PathBuf, Option<Vec<u8>>>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let relative = path.strip_prefix(root).expect("prefix").to_path_buf();
            let kind = std::fs::symlink_metadata(&path).expect("metadata").file_type();
            if kind.is_dir() {
                into.insert(relative, None);
                walk(root, &path, into);
            } else {
                into.insert(relative, Some(std::fs::read(&path).expect("read")));
            }
        }
    }
    let mut into = BTreeMap::new();
    walk(root, root, &mut into);
    into
}

/// The verbs that must not create a store, with `DATA` standing for the data directory and
/// `OUT` for a fresh output path next to it (which must not be created either).
const NON_CREATING: &[&[&str]] = &[
    &["stats", "--data", "DATA"],
    &["stats", "--data", "DATA", "--json"],
    &["verify", "--data", "DATA"],
    &["verify", "--data", "DATA", "--json"],
    &["verify", "--data", "DATA", "--snapshots"],
    &["export", "--data", "DATA", "--out", "OUT"],
    &["compact", "--data", "DATA"],
    &["backup", "--data", "DATA", "--out", "OUT"],
    &["delete-stream", "--data", "DATA", "order-1"],
    &["order", "funnel", "--data", "DATA"],
    &["order", "timeline", "1", "--data", "DATA"],
    &["read", "--archive", "--data", "DATA", "order-1"],
];

/// The same verbs relying on the default data directory, `./data` (run in a scratch cwd).
const NON_CREATING_DEFAULT: &[&[&str]] = &[
    &["stats"],
    &["verify"],
    &["export", "--out", "OUT"],
    &["compact"],
    &["backup", "--out", "OUT"],
    &["delete-stream", "order-1"],
    &["order", "funnel"],
    &["order", "timeline", "1"],
    &["read", "--archive", "order-1"],
];

/// What the data directory looks like before the verb runs.
#[derive(Debug, Clone, Copy)]
enum Layout {
    Missing,
    Empty,
    Unrelated,
    /// Unrelated files, including a `segments/` directory that holds no segment.
    UnrelatedWithSegmentsDir,
}

const LAYOUTS: [Layout; 4] = [Layout::Missing, Layout::Empty, Layout::Unrelated, Layout::UnrelatedWithSegmentsDir];

fn prepare(data: &Path, layout: Layout) {
    match layout {
        Layout::Missing => {}
        Layout::Empty => std::fs::create_dir(data).unwrap(),
        Layout::Unrelated | Layout::UnrelatedWithSegmentsDir => {
            std::fs::create_dir_all(data.join("photos")).unwrap();
            std::fs::write(data.join("notes.txt"), b"not a store\n").unwrap();
            std::fs::write(data.join("photos/cat.jpg"), [0xff, 0xd8, 0xff, 0xe0, 0, 0x10]).unwrap();
            if let Layout::UnrelatedWithSegmentsDir = layout {
                std::fs::create_dir(data.join("segments")).unwrap();
                std::fs::write(data.join("segments/README"), b"my own segments\n").unwrap();
            }
        }
    }
}

/// Runs the verb in `root`; on any deviation, says what went wrong (so one run lists every
/// verb that misbehaves, not just the first).
fn check_refused(root: &Path, args: &[String], data_shown: &str, layout: Layout) -> Result<(), String> {
    let before = tree(root);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_in(root, &argv);
    let mut wrong = Vec::new();
    if out.status.code() != Some(NO_STORE_EXIT) {
        wrong.push(format!("exit status {:?}, not {NO_STORE_EXIT}", out.status.code()));
    }
    if !String::from_utf8_lossy(&out.stderr).contains(&format!("no logbook store at {data_shown}")) {
        wrong.push(format!("stderr does not say 'no logbook store at {data_shown}'"));
    }
    let after = tree(root);
    if after != before {
        let created: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
        wrong.push(format!("the directory tree changed (new: {created:?})"));
    }
    if wrong.is_empty() {
        return Ok(());
    }
    Err(format!("logbook {argv:?} on a {layout:?} directory: {}\n{}", wrong.join("; "), text(&out)))
}

#[test]
fn non_creating_verbs_refuse_a_directory_without_a_store() {
    let mut failures = Vec::new();
    for layout in LAYOUTS {
        for verb in NON_CREATING {
            let root = tempfile::tempdir().unwrap();
            let data = root.path().join("data");
            prepare(&data, layout);
            let out = root.path().join("out");
            let args: Vec<String> = verb
                .iter()
                .map(|a| match *a {
                    "DATA" => data.to_str().unwrap().to_string(),
                    "OUT" => out.to_str().unwrap().to_string(),
                    other => other.to_string(),
                })
                .collect();
            failures.extend(check_refused(root.path(), &args, data.to_str().unwrap(), layout).err());
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn the_default_data_directory_is_not_created_either() {
    let mut failures = Vec::new();
    for layout in LAYOUTS {
        for verb in NON_CREATING_DEFAULT {
            let root = tempfile::tempdir().unwrap();
            prepare(&root.path().join("data"), layout);
            let args: Vec<String> = verb.iter().map(|a| if *a == "OUT" { "out" } else { a }.to_string()).collect();
            failures.extend(check_refused(root.path(), &args, "./data", layout).err());
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn verbs_that_talk_to_a_daemon_do_not_touch_the_data_directory() {
    // append/read/tail take no --data; with nothing listening they fail to connect, and leave
    // ./data alone.
    let root = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let before = tree(root.path());
    for args in [
        vec!["append", "--connect", &port, "order-1", "T", "{}"],
        vec!["read", "--connect", &port, "order-1"],
        vec!["tail", "--connect", &port, "--limit", "1"],
        vec!["order", "timeline", "1", "--connect", &port],
    ] {
        let out = run_in(root.path(), &args);
        assert!(!out.status.success(), "{args:?}: {}", text(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"), "{args:?}: {}", text(&out));
    }
    assert_eq!(tree(root.path()), before);
}

#[test]
fn demo_and_bench_create_a_store_that_the_other_verbs_then_accept() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("fresh/data");
    let data_s = data.to_str().unwrap();
    let out = run_in(root.path(), &["demo", "--orders", "5", "--data", data_s]);
    assert!(out.status.success(), "demo: {}", text(&out));
    assert!(logbook::holds_store(&data));

    let out_dir = root.path().join("export");
    let backup_dir = root.path().join("backup");
    let stream = {
        let store = logbook::Store::open(&data, logbook::Options::default()).unwrap();
        let stream = store.read_all(1, 1, &logbook::Filter::default()).unwrap()[0].stream().to_string();
        store.close().unwrap();
        stream
    };
    let order_id = stream.trim_start_matches("order-").to_string();
    for args in [
        vec!["stats", "--data", data_s],
        vec!["verify", "--data", data_s, "--snapshots"],
        vec!["order", "funnel", "--data", data_s],
        vec!["order", "timeline", &order_id, "--data", data_s],
        vec!["read", "--archive", "--data", data_s, &stream],
        vec!["export", "--data", data_s, "--out", out_dir.to_str().unwrap()],
        vec!["backup", "--data", data_s, "--out", backup_dir.to_str().unwrap()],
        vec!["delete-stream", "--data", data_s, &stream],
        vec!["compact", "--data", data_s],
    ] {
        let out = run_in(root.path(), &args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    }
    // The backup is a store too (with the stopped store's MANIFEST and CLEAN).
    let out = run_in(root.path(), &["stats", "--data", backup_dir.to_str().unwrap()]);
    assert!(out.status.success(), "stats on the backup: {}", text(&out));

    let bench = root.path().join("bench/data");
    let out = run_in(
        root.path(),
        &["bench", "append", "--data", bench.to_str().unwrap(), "--events", "20", "--sync", "never", "--json"],
    );
    assert!(out.status.success(), "bench: {}", text(&out));
    assert!(logbook::holds_store(&bench));
    // A second bench into that store is refused: bench would add its events to whatever store
    // --data names (review of stop 24: a real store went from 7 to 207 events without a word).
    let head = || logbook::Store::open(&bench, logbook::Options::default()).unwrap().head_position();
    let before = head();
    let out = run_in(
        root.path(),
        &["bench", "append", "--data", bench.to_str().unwrap(), "--events", "20", "--sync", "never", "--json"],
    );
    assert!(!out.status.success(), "bench into an existing store: {}", text(&out));
    assert!(text(&out).contains("already holds a logbook store"), "{}", text(&out));
    assert_eq!(head(), before, "nothing appended");
}
