//! Tenancy: with tenants configured, data commands need AUTH; a tenant sees only its own
//! streams (stored as `<tenant>:<name>`) and its own slice of READALL; the admin sees all.

mod server_support;

use redis::Value as R;
use server_support::*;

fn append(con: &mut redis::Connection, stream: &str, ty: &str) -> redis::RedisResult<Vec<i64>> {
    redis::cmd("APPEND").arg(stream).arg(ty).arg("{}").query(con)
}

#[test]
fn data_commands_need_auth() {
    let server = TestServer::with_tenants();
    let mut raw = server.raw();
    // PING and HELLO work before AUTH; everything else is NOAUTH (the connection stays).
    let reply = send_raw(
        &mut raw,
        b"PING\r\nAPPEND s t d\r\nREAD s\r\nREADALL\r\nVERSION s\r\nHEAD\r\nINFO\r\nTIMELINE x\r\nAUTH acme wrong\r\nAUTH nobody x\r\nAUTH acme acme-secret\r\nVERSION s\r\nQUIT\r\n",
    );
    let text = String::from_utf8(reply).unwrap();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines[0], "+PONG");
    for line in &lines[1..8] {
        assert!(line.starts_with("-NOAUTH"), "{text}");
    }
    assert_eq!(lines[8], "-NOPERM invalid tenant or token");
    assert_eq!(lines[9], "-NOPERM invalid tenant or token");
    assert_eq!(lines[10], "+OK");
    assert_eq!(lines[11], ":0");
    assert_eq!(lines[12], "+OK");

    // The redis crate authenticates with user:password in the URL (AUTH in RESP2, HELLO 3 AUTH in RESP3).
    let mut con = connect(&server.url_auth("acme", ACME_TOKEN, false));
    assert_eq!(append(&mut con, "order-1", "A").unwrap(), vec![1, 1]);
    let mut con3 = connect(&server.url_auth("globex", GLOBEX_TOKEN, true));
    assert_eq!(append(&mut con3, "order-1", "A").unwrap(), vec![1, 2]);
    let bad = redis::Client::open(server.url_auth("acme", "nope", true)).unwrap().get_connection();
    assert!(bad.is_err(), "HELLO 3 AUTH with a wrong token fails the connection");
    let mut anon = server.redis();
    assert_eq!(code_of(append(&mut anon, "order-1", "A")), "NOAUTH");
}

#[test]
fn tenants_are_isolated() {
    let server = TestServer::with_tenants();
    let mut acme = connect(&server.url_auth("acme", ACME_TOKEN, false));
    let mut globex = connect(&server.url_auth("globex", GLOBEX_TOKEN, true));
    let mut admin = connect(&server.url_auth("admin", ADMIN_TOKEN, false));

    assert_eq!(append(&mut acme, "order-1", "ACME_CREATED").unwrap(), vec![1, 1]);
    assert_eq!(append(&mut acme, "order-1", "ACME_PAID").unwrap(), vec![2, 2]);
    // The same name in another tenant is another stream: version 1, not 3.
    assert_eq!(append(&mut globex, "order-1", "GLOBEX_CREATED").unwrap(), vec![1, 3]);
    assert_eq!(append(&mut globex, "order-2", "GLOBEX_CREATED").unwrap(), vec![1, 4]);

    // READ sees only the tenant's own stream, under the tenant's own name.
    let read = events(redis::cmd("READ").arg("order-1").query(&mut acme).unwrap());
    assert_eq!(read.iter().map(|e| field_str(e, "type")).collect::<Vec<_>>(), ["ACME_CREATED", "ACME_PAID"]);
    assert_eq!(field_str(&read[0], "stream"), "order-1");
    // A tenant cannot reach another tenant's streams by spelling out the stored name:
    // it is put in the caller's own namespace.
    let sneaky = events(redis::cmd("READ").arg("globex:order-2").query(&mut acme).unwrap());
    assert!(sneaky.is_empty());
    let version: i64 = redis::cmd("VERSION").arg("globex:order-2").query(&mut acme).unwrap();
    assert_eq!(version, 0);
    let version: i64 = redis::cmd("VERSION").arg("order-2").query(&mut acme).unwrap();
    assert_eq!(version, 0, "acme has no order-2");
    // Appending to "globex:order-2" as acme writes acme's own stream, not globex's.
    assert_eq!(append(&mut acme, "globex:order-2", "ACME_SNEAK").unwrap(), vec![1, 5]);
    let version: i64 = redis::cmd("VERSION").arg("order-2").query(&mut globex).unwrap();
    assert_eq!(version, 1, "globex's stream untouched");
    // Expected versions are checked against the tenant's own stream.
    assert_eq!(
        error_text(redis::cmd("APPEND").arg("order-2").arg("X").arg("{}").arg("EXPECTED").arg(1).query::<R>(&mut acme)),
        "WRONGVERSION expected 1 actual 0"
    );

    // READALL: only the tenant's slice, with its own names; PREFIX applies within it.
    let all = events(redis::cmd("READALL").query(&mut acme).unwrap());
    let seen: Vec<(String, i64)> = all.iter().map(|e| (field_str(e, "stream"), field_int(e, "position"))).collect();
    assert_eq!(seen, [("order-1".to_string(), 1), ("order-1".to_string(), 2), ("globex:order-2".to_string(), 5)]);
    let all = events(redis::cmd("READALL").query(&mut globex).unwrap());
    let seen: Vec<(String, i64)> = all.iter().map(|e| (field_str(e, "stream"), field_int(e, "position"))).collect();
    assert_eq!(seen, [("order-1".to_string(), 3), ("order-2".to_string(), 4)]);
    let filtered = events(redis::cmd("READALL").arg("PREFIX").arg("globex").query(&mut acme).unwrap());
    assert_eq!(filtered.len(), 1, "PREFIX is inside acme's namespace");
    assert_eq!(field_str(&filtered[0], "type"), "ACME_SNEAK");
    let none = events(redis::cmd("READALL").arg("PREFIX").arg("order-2").query(&mut acme).unwrap());
    assert!(none.is_empty());
    let none = events(redis::cmd("READALL").arg("TYPE").arg("GLOBEX_CREATED").query(&mut acme).unwrap());
    assert!(none.is_empty());

    // INFO would reveal every tenant's counters: admin only.
    assert_eq!(code_of(redis::cmd("INFO").query::<R>(&mut acme)), "NOPERM");

    // The admin sees every stream by its stored name.
    let all = events(redis::cmd("READALL").query(&mut admin).unwrap());
    let names: Vec<String> = all.iter().map(|e| field_str(e, "stream")).collect();
    assert_eq!(names, ["acme:order-1", "acme:order-1", "globex:order-1", "globex:order-2", "acme:globex:order-2"]);
    let version: i64 = redis::cmd("VERSION").arg("globex:order-2").query(&mut admin).unwrap();
    assert_eq!(version, 1);
    let info: String = redis::cmd("INFO").query(&mut admin).unwrap();
    assert!(info.contains("events:5"));
}

#[test]
fn read_all_block_for_a_tenant_ignores_other_tenants() {
    let server = TestServer::with_tenants();
    let url = server.url_auth("acme", ACME_TOKEN, true);
    let reader = std::thread::spawn(move || {
        let mut con = connect(&url);
        events(redis::cmd("READALL").arg("FROM").arg(1).arg("BLOCK").arg(10_000).query(&mut con).unwrap())
    });
    let mut globex = connect(&server.url_auth("globex", GLOBEX_TOKEN, false));
    let mut acme = connect(&server.url_auth("acme", ACME_TOKEN, false));
    std::thread::sleep(std::time::Duration::from_millis(150));
    append(&mut globex, "order-1", "NOT_YOURS").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(150));
    append(&mut acme, "order-9", "YOURS").unwrap();
    let got = reader.join().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(field_str(&got[0], "type"), "YOURS");
    assert_eq!(field_str(&got[0], "stream"), "order-9");
}

#[test]
fn non_loopback_listen_needs_tenants() {
    let config = logbook_server::Config { listen: "0.0.0.0:0".into(), ..Default::default() };
    let err = logbook_server::Server::start(config).err().expect("refused");
    assert!(err.to_string().contains("refusing"), "{err}");
}

#[test]
fn timeline_reads_the_tenants_own_order_only() {
    let server = TestServer::with_tenants();
    let mut acme = redis::Client::open(server.url_auth("acme", ACME_TOKEN, false)).unwrap().get_connection().unwrap();
    let mut globex =
        redis::Client::open(server.url_auth("globex", GLOBEX_TOKEN, false)).unwrap().get_connection().unwrap();
    for (ty, data) in [("CART_CREATED", "{}"), ("CHECKOUT_STARTED", "{}")] {
        let meta = r#"{"actor":"customer"}"#;
        let _: Vec<i64> =
            redis::cmd("APPEND").arg("order-abc").arg(ty).arg(data).arg("META").arg(meta).query(&mut acme).unwrap();
    }
    let lines: Vec<String> = redis::cmd("TIMELINE").arg("abc").query(&mut acme).unwrap();
    // Heading, status, the day's date line, the two events.
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(lines[0], "order abc (2 events, times in UTC)");
    assert!(lines[1].starts_with("status: CHECKOUT_STARTED | 0 items | not paid | not shipped"), "{lines:?}");
    assert!(lines[2].len() == 10 && lines[2].as_bytes()[4] == b'-', "a date line: {lines:?}");
    assert!(lines[3].contains(" - CART_CREATED") && lines[3].ends_with("(customer)"), "{lines:?}");
    assert!(lines[4].contains(" - CHECKOUT_STARTED"), "{lines:?}");
    // The stream name form works too, and so does a unique prefix of the id.
    let same: Vec<String> = redis::cmd("TIMELINE").arg("order-abc").query(&mut acme).unwrap();
    assert_eq!(same, lines);
    let prefix: Vec<String> = redis::cmd("TIMELINE").arg("ab").query(&mut acme).unwrap();
    assert_eq!(prefix, lines);
    // Another tenant's namespace has no such order, not even by prefix.
    for id in ["abc", "ab"] {
        let theirs = redis::cmd("TIMELINE").arg(id).query::<Vec<String>>(&mut globex).unwrap_err();
        assert!(theirs.to_string().contains(&format!("no such order '{id}'")), "{theirs}");
    }
}

#[test]
fn appendbatch_stays_in_the_tenants_namespace() {
    let server = TestServer::with_tenants();
    let mut acme = redis::Client::open(server.url_auth("acme", ACME_TOKEN, false)).unwrap().get_connection().unwrap();
    let mut globex =
        redis::Client::open(server.url_auth("globex", GLOBEX_TOKEN, false)).unwrap().get_connection().unwrap();
    let batch = r#"[{"stream":"order-1","events":[{"type":"A","data":1}]},{"stream":"stock-1","events":[{"type":"B","data":2}]}]"#;
    let reply: Vec<Vec<i64>> = redis::cmd("APPENDBATCH").arg(batch).query(&mut acme).unwrap();
    assert_eq!(reply.len(), 2);
    // The other tenant sees none of it, and its own batch to the same names starts at version 1.
    let theirs: Vec<Vec<i64>> = redis::cmd("APPENDBATCH").arg(batch).query(&mut globex).unwrap();
    assert_eq!(theirs[0][..2], [1, 1]);
    let version: i64 = redis::cmd("VERSION").arg("order-1").query(&mut acme).unwrap();
    assert_eq!(version, 1);
    // A part whose name does not fit the tenant's namespace is refused, naming the part.
    let long = format!(
        r#"[{{"stream":"ok","events":[{{"type":"A","data":1}}]}},{{"stream":"{}","events":[{{"type":"A","data":1}}]}}]"#,
        "s".repeat(1024)
    );
    let err = redis::cmd("APPENDBATCH").arg(long).query::<R>(&mut acme).unwrap_err();
    let text = format!("{err:?}");
    assert!(text.contains("part 1") && !text.contains("acme:"), "{text}");
}
