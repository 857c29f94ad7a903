//! Issue 16, items 3 and 4 through the real `redis` crate: STREAMS (the paged, ordered stream
//! listing), DELETE, and the admin's COMPACT and BACKUP on a live daemon.

mod server_support;

use redis::Value as R;
use server_support::*;

use logbook_server::Config;

fn append(con: &mut redis::Connection, stream: &str) -> Vec<i64> {
    redis::cmd("APPEND").arg(stream).arg("T").arg("{}").query(con).unwrap()
}

/// A STREAMS reply as (name, version) pairs.
fn streams(con: &mut redis::Connection, args: &[&str]) -> Vec<(String, i64)> {
    let reply: R = redis::cmd("STREAMS").arg(args).query(con).unwrap();
    let R::Array(items) = reply else { panic!("STREAMS replies an array: {reply:?}") };
    items
        .into_iter()
        .map(|item| match item {
            R::Array(pair) => match pair.as_slice() {
                [R::BulkString(name), R::Int(version)] => (String::from_utf8(name.clone()).unwrap(), *version),
                other => panic!("a pair is [name, version]: {other:?}"),
            },
            other => panic!("a pair is an array: {other:?}"),
        })
        .collect()
}

fn names(pairs: &[(String, i64)]) -> Vec<&str> {
    pairs.iter().map(|(name, _)| name.as_str()).collect()
}

/// A reply map (RESP3) or flat array (RESP2) as (key, value) pairs.
fn reply_map(value: R) -> Vec<(String, R)> {
    fields(&value)
}

fn int_of(map: &[(String, R)], key: &str) -> i64 {
    match map.iter().find(|(k, _)| k == key) {
        Some((_, R::Int(n))) => *n,
        other => panic!("{key}: {other:?} in {map:?}"),
    }
}

fn tenants_with_backups(backup_dir: Option<std::path::PathBuf>) -> Config {
    Config { backup_dir, ..server_support::tenants_config() }
}

#[test]
fn streams_pages_in_name_order_and_leaves_deleted_streams_out() {
    let server = TestServer::start();
    let mut con = server.redis();
    assert!(streams(&mut con, &[]).is_empty(), "an empty store lists nothing");
    for stream in ["order-3", "b", "order-1", "a", "order-2", "order-1", "gone", "order-10"] {
        append(&mut con, stream);
    }
    let _: i64 = redis::cmd("DELETE").arg("gone").query(&mut con).unwrap();
    let all = streams(&mut con, &[]);
    assert_eq!(
        all,
        [
            ("a".to_string(), 1),
            ("b".to_string(), 1),
            ("order-1".to_string(), 2),
            ("order-10".to_string(), 1),
            ("order-2".to_string(), 1),
            ("order-3".to_string(), 1)
        ],
        "byte order of the names; deleted and system ($deleted) streams left out"
    );
    // Paging: COUNT per page, AFTER the previous page's last name.
    let first = streams(&mut con, &["PREFIX", "order-", "COUNT", "2"]);
    assert_eq!(names(&first), ["order-1", "order-10"]);
    let second = streams(&mut con, &["prefix", "order-", "count", "2", "after", "order-10"]);
    assert_eq!(names(&second), ["order-2", "order-3"]);
    assert!(streams(&mut con, &["PREFIX", "order-", "AFTER", "order-3"]).is_empty());
    // AFTER need not be a listed name; before the prefix it starts at the prefix.
    assert_eq!(names(&streams(&mut con, &["AFTER", "order-15"])), ["order-2", "order-3"]);
    assert_eq!(names(&streams(&mut con, &["PREFIX", "order-", "AFTER", "b"])).len(), 4);
    assert!(streams(&mut con, &["PREFIX", "zzz"]).is_empty());
    // RESP3 gives the same pairs.
    let mut con3 = server.redis3();
    assert_eq!(streams(&mut con3, &["COUNT", "3"]), all[..3]);
    // Bad arguments name what was wrong.
    let err = error_text(redis::cmd("STREAMS").arg("COUNT").arg("0").query::<R>(&mut con));
    assert!(err.contains("COUNT must be between 1 and 100000, got 0"), "{err}");
    let err = error_text(redis::cmd("STREAMS").arg("LIMIT").arg("1").query::<R>(&mut con));
    assert!(err.contains("unknown STREAMS option 'LIMIT'"), "{err}");
}

#[test]
fn a_page_walk_returns_every_stream_once() {
    let server = TestServer::start();
    let mut con = server.redis();
    let mut expected: Vec<String> = (0..700).map(|i| format!("s-{i:04}")).collect();
    let mut pipe = redis::pipe();
    for name in expected.iter().rev() {
        pipe.cmd("APPEND").arg(name).arg("T").arg("{}").ignore();
    }
    let () = pipe.query(&mut con).unwrap();
    expected.sort();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut args = vec!["COUNT", "300"];
        if let Some(after) = &after {
            args.extend(["AFTER", after.as_str()]);
        }
        let page = streams(&mut con, &args);
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 300);
        after = page.last().map(|(name, _)| name.clone());
        seen.extend(page.into_iter().map(|(name, _)| name));
    }
    assert_eq!(seen, expected);
}

#[test]
fn tenants_list_only_their_own_streams_by_their_own_names() {
    let server = TestServer::with_tenants();
    let mut acme = connect(&server.url_auth("acme", ACME_TOKEN, false));
    let mut globex = connect(&server.url_auth("globex", GLOBEX_TOKEN, true));
    let mut admin = connect(&server.url_auth("admin", ADMIN_TOKEN, false));
    append(&mut acme, "order-2");
    append(&mut acme, "order-1");
    append(&mut acme, "order-1");
    append(&mut globex, "order-1");
    append(&mut globex, "cart-9");
    assert_eq!(streams(&mut acme, &[]), [("order-1".to_string(), 2), ("order-2".to_string(), 1)]);
    assert_eq!(names(&streams(&mut acme, &["AFTER", "order-1"])), ["order-2"]);
    assert_eq!(names(&streams(&mut acme, &["PREFIX", "cart"])), Vec::<&str>::new(), "globex's cart is not acme's");
    assert_eq!(names(&streams(&mut globex, &["PREFIX", "order"])), ["order-1"]);
    // AFTER a name beyond the tenant's namespace does not leak the next tenant's streams.
    assert!(streams(&mut acme, &["AFTER", "zzz"]).is_empty());
    assert_eq!(
        names(&streams(&mut admin, &[])),
        ["acme:order-1", "acme:order-2", "globex:cart-9", "globex:order-1"],
        "the admin sees full names"
    );
    let anon = error_text(redis::cmd("STREAMS").query::<R>(&mut server.redis()));
    assert!(anon.starts_with("NOAUTH"), "{anon}");
}

#[test]
fn delete_checks_expected_versions_and_stays_in_the_tenants_namespace() {
    let server = TestServer::with_tenants();
    let mut acme = connect(&server.url_auth("acme", ACME_TOKEN, false));
    let mut globex = connect(&server.url_auth("globex", GLOBEX_TOKEN, true));
    append(&mut acme, "cart-1");
    append(&mut acme, "cart-1");
    append(&mut globex, "cart-1");
    let err = error_text(redis::cmd("DELETE").arg("cart-1").arg("EXPECTED").arg(1).query::<i64>(&mut acme));
    assert_eq!(err, "WRONGVERSION expected 1 actual 2");
    let err = error_text(redis::cmd("DELETE").arg("cart-1").arg("EXPECTED").arg("none").query::<i64>(&mut acme));
    assert!(err.starts_with("WRONGVERSION"), "{err}");
    let position: i64 = redis::cmd("DELETE").arg("cart-1").arg("EXPECTED").arg(2).query(&mut acme).unwrap();
    let head: i64 = redis::cmd("HEAD").query(&mut acme).unwrap();
    assert_eq!(position, head, "the reply is the tombstone's position");
    // Gone for acme: reads, appends and a second delete refused.
    assert_eq!(code_of(redis::cmd("READ").arg("cart-1").query::<R>(&mut acme)), "STREAMDELETED");
    let err = code_of(redis::cmd("APPEND").arg("cart-1").arg("T").arg("{}").query::<R>(&mut acme));
    assert_eq!(err, "STREAMDELETED");
    assert_eq!(code_of(redis::cmd("DELETE").arg("cart-1").query::<R>(&mut acme)), "STREAMDELETED");
    assert!(streams(&mut acme, &[]).is_empty());
    // globex's cart-1 is another stream: untouched.
    assert_eq!(events(redis::cmd("READ").arg("cart-1").query(&mut globex).unwrap()).len(), 1);
    assert_eq!(append(&mut globex, "cart-1")[0], 2);
    // EXPECTED exists refuses a stream that never existed (and writes nothing).
    let err = code_of(redis::cmd("DELETE").arg("never").arg("EXPECTED").arg("exists").query::<R>(&mut globex));
    assert_eq!(err, "WRONGVERSION");
    let err = error_text(redis::cmd("DELETE").arg("$deleted").query::<R>(&mut globex));
    assert!(err.contains("reserved for system streams"), "{err}");
}

#[test]
fn compact_and_backup_are_for_the_admin() {
    let backups = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(tenants_with_backups(Some(backups.path().to_path_buf())));
    let mut acme = connect(&server.url_auth("acme", ACME_TOKEN, false));
    let mut admin = connect(&server.url_auth("admin", ADMIN_TOKEN, false));
    let mut admin3 = connect(&server.url_auth("admin", ADMIN_TOKEN, true));
    for i in 0..20 {
        append(&mut acme, &format!("order-{i}"));
    }
    let _: i64 = redis::cmd("DELETE").arg("order-3").query(&mut acme).unwrap();

    // A tenant may not: the store is everyone's.
    let err = error_text(redis::cmd("COMPACT").query::<R>(&mut acme));
    assert_eq!(err, "NOPERM COMPACT acts on every tenant's streams; AUTH as admin");
    let err = error_text(redis::cmd("BACKUP").arg("mine").query::<R>(&mut acme));
    assert!(err.starts_with("NOPERM BACKUP"), "{err}");
    assert!(!backups.path().join("mine").exists());

    let report = reply_map(redis::cmd("COMPACT").query(&mut admin).unwrap());
    for key in ["segments_before", "segments_after", "rewritten", "expired", "purged", "held", "archived"] {
        int_of(&report, key);
    }
    let report3 = reply_map(redis::cmd("COMPACT").query(&mut admin3).unwrap());
    assert_eq!(report3.len(), report.len(), "RESP3 gives the same map");

    let copy = reply_map(redis::cmd("BACKUP").arg("nightly-1").query(&mut admin).unwrap());
    assert!(int_of(&copy, "segments") >= 1 && int_of(&copy, "files") >= 1 && int_of(&copy, "bytes") > 0);
    let path = copy.iter().find(|(k, _)| k == "path").map(|(_, v)| v.clone());
    assert_eq!(path, Some(R::BulkString(b"nightly-1".to_vec())), "relative to backup_dir, never absolute");
    let verified = logbook::verify_dir(&backups.path().join("nightly-1")).unwrap();
    assert!(verified.is_healthy(), "{verified:?}");
    let restored = logbook::Store::open(backups.path().join("nightly-1"), logbook::Options::default()).unwrap();
    assert_eq!(restored.stream_count(), 21, "20 orders and $deleted");
    assert!(restored.is_deleted("acme:order-3"));
    restored.close().unwrap();

    // The same name again, and names that are not one plain directory name, are refused.
    let err = error_text(redis::cmd("BACKUP").arg("nightly-1").query::<R>(&mut admin));
    assert_eq!(err, "ERR backup 'nightly-1' already exists in backup_dir; choose a new name");
    for bad in ["..", ".", "../escape", "a/b", "/abs", ".hidden", "a b"] {
        let err = error_text(redis::cmd("BACKUP").arg(bad).query::<R>(&mut admin));
        assert!(err.starts_with("ERR backup name must be one directory name"), "{bad}: {err}");
    }
    let err = error_text(redis::cmd("BACKUP").arg("x".repeat(200)).query::<R>(&mut admin));
    assert!(err.contains("at most 128"), "{err}");
    let listed: Vec<_> = std::fs::read_dir(backups.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(listed, ["nightly-1"], "nothing else was written");
    assert!(!backups.path().parent().unwrap().join("escape").exists());
}

#[test]
fn backup_is_refused_without_backup_dir_and_an_open_daemon_allows_both() {
    let server = TestServer::with_tenants();
    let mut admin = connect(&server.url_auth("admin", ADMIN_TOKEN, false));
    let err = error_text(redis::cmd("BACKUP").arg("b1").query::<R>(&mut admin));
    assert_eq!(err, "ERR BACKUP is off: the daemon's config sets no backup_dir");

    // An open (loopback, no auth) daemon: whoever connects is the admin.
    let backups = tempfile::tempdir().unwrap();
    let open = TestServer::start_with(Config { backup_dir: Some(backups.path().join("made")), ..Config::default() });
    let mut con = open.redis3();
    append(&mut con, "a");
    let report = reply_map(redis::cmd("COMPACT").query(&mut con).unwrap());
    assert_eq!(int_of(&report, "expired"), 0);
    let copy = reply_map(redis::cmd("BACKUP").arg("b1").query(&mut con).unwrap());
    assert!(int_of(&copy, "bytes") > 0);
    assert!(backups.path().join("made/b1").is_dir(), "backup_dir is created when missing");
    let text = format!("{copy:?}{report:?}");
    assert!(!text.contains(&backups.path().display().to_string()), "no server path in replies: {text}");
}

#[test]
fn command_docs_list_the_new_commands() {
    let server = TestServer::start();
    let mut con = server.redis();
    let docs: std::collections::HashMap<String, R> = redis::cmd("COMMAND").arg("DOCS").query(&mut con).unwrap();
    for name in ["streams", "delete", "compact", "backup"] {
        assert!(docs.contains_key(name), "COMMAND DOCS lacks {name}");
    }
    let names: Vec<String> = redis::cmd("COMMAND").arg("LIST").query(&mut con).unwrap();
    assert!(names.contains(&"streams".to_string()) && names.contains(&"backup".to_string()), "{names:?}");
}

/// Attacker finding F12 through the daemon: an APPEND with an ID, retried after COMPACT moved
/// its event to the cold tier, answers the original version and position and writes nothing;
/// the same ID with other data is an idempotency conflict.
#[test]
fn an_append_retried_after_compact_archived_it_answers_the_original() {
    let retention = logbook::RetentionConfig {
        archive: None,
        compact_interval: None,
        rules: vec![logbook::RuleConfig {
            category: Some("order".into()),
            event_type: None,
            max_age: None,
            max_count: Some(1),
        }],
        legal_holds: Some(vec![]),
    };
    let store = logbook_server::StoreConfig { segment_bytes: 4096, ..Default::default() };
    let server = TestServer::start_with(Config { store, retention: Some(retention), ..Config::default() });
    let mut con = server.redis();
    let id = uuid::Uuid::new_v4().to_string();
    let append_with_id = |con: &mut redis::Connection, data: &str| {
        redis::cmd("APPEND").arg("order-1").arg("ITEM_ADDED").arg(data).arg("ID").arg(&id).query::<Vec<i64>>(con)
    };
    let original = append_with_id(&mut con, r#"{"sku":"p-1"}"#).unwrap();
    // Enough other events to seal the segment holding it, then the stream's newest (kept hot).
    for i in 0..100 {
        let data = format!(r#"{{"n":{i},"pad":"{}"}}"#, "x".repeat(60));
        let _: Vec<i64> = redis::cmd("APPEND").arg("cart-1").arg("VIEWED").arg(data).query(&mut con).unwrap();
    }
    let _: Vec<i64> = redis::cmd("APPEND").arg("order-1").arg("ITEM_ADDED").arg("{}").query(&mut con).unwrap();
    let report = reply_map(redis::cmd("COMPACT").query(&mut con).unwrap());
    assert_eq!(int_of(&report, "archived"), 1, "{report:?}");
    let head: i64 = redis::cmd("HEAD").query(&mut con).unwrap();
    assert_eq!(append_with_id(&mut con, r#"{"sku":"p-1"}"#).unwrap(), original, "the retry answers the original");
    let changed = error_text(append_with_id(&mut con, r#"{"sku":"p-2"}"#));
    assert!(changed.contains("idempotency conflict"), "{changed}");
    assert_eq!(redis::cmd("HEAD").query::<i64>(&mut con).unwrap(), head, "nothing was written");
}
