//! Times appends with client-supplied ids (each one an idempotency lookup), for comparing builds:
//! `client_id_appends <core|archive> <appends> [archived events]`. `core` opens the store with
//! `Store::open` (no cold tier registered); `archive` with `logbook_archive::open_store`, after
//! writing `archived events` (default 0) into its cold tier, so every new id is also looked up
//! among them. One appender, one event per append, `SyncMode::Never`: the lookup's cost is not
//! hidden behind an fdatasync. Prints appends per second of the append phase alone.

use std::time::Instant;

use logbook::{ExpectedVersion, NewEvent, Options, Store, SyncMode};
use logbook_archive::{Archive, ArchivedEvent};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("core");
    let appends: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let archived: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(0);
    let dir = tempfile::tempdir().expect("tempdir");
    let options = Options { sync: SyncMode::Never, ..Options::default() };
    let store = match mode {
        "core" => Store::open(dir.path(), options).expect("open"),
        "archive" => {
            if archived > 0 {
                // The store first: a cold tier alone is not taken for a new store.
                Store::open(dir.path(), options.clone()).expect("create").close().expect("close");
                // Archived events at positions the log will not reach, ids never appended again.
                let root = dir.path().join(logbook::ARCHIVE_DIR);
                let mut archive = Archive::open(&root, logbook::std_fs()).expect("archive");
                let rows = (0..archived)
                    .map(|i| ArchivedEvent {
                        position: (1 << 40) + i,
                        stream: format!("old-{}", i % 1000),
                        version: i / 1000 + 1,
                        event_type: "OLD".into(),
                        timestamp_us: 1_700_000_000_000_000,
                        id: *uuid::Uuid::new_v4().as_bytes(),
                        metadata: Vec::new(),
                        data: b"{}".to_vec(),
                    })
                    .collect();
                archive.write_job(1, None, rows).expect("write the cold tier");
            }
            let opening = Instant::now();
            let store = logbook_archive::open_store(dir.path(), options).expect("open");
            println!("open_store with {archived} archived events: {:.3} s", opening.elapsed().as_secs_f64());
            store
        }
        other => panic!("mode core or archive, not {other}"),
    };
    let started = Instant::now();
    for i in 0..appends {
        let event = NewEvent::new("ITEM_ADDED", br#"{"sku":"p-1","qty":1}"#.to_vec()).with_id(uuid::Uuid::now_v7());
        store.append(&format!("order-{}", i % 1000), ExpectedVersion::Any, vec![event]).expect("append");
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{mode} archived={archived} appends={appends} seconds={seconds:.3} appends_per_s={:.0}",
        appends as f64 / seconds
    );
    store.close().expect("close");
}
