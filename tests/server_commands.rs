//! Every command of the daemon's grammar, driven over TCP by the `redis` crate, in RESP2 and
//! RESP3: reply shapes, each error code, pipelining, READALL BLOCK, limits, metrics, shutdown.

mod server_support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use redis::Value as R;
use server_support::*;

fn append(con: &mut redis::Connection, stream: &str, ty: &str, data: &str) -> (i64, i64) {
    let v: Vec<i64> = redis::cmd("APPEND").arg(stream).arg(ty).arg(data).query(con).expect("append");
    (v[0], v[1])
}

fn is_rfc3339_micros(t: &str) -> bool {
    // 2024-03-01T12:34:56.789012Z
    let b = t.as_bytes();
    b.len() == 27
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[26] == b'Z'
        && b.iter().enumerate().all(|(i, c)| [4, 7, 10, 13, 16, 19, 26].contains(&i) || c.is_ascii_digit())
}

#[test]
fn ping_hello_and_unknown_commands() {
    let server = TestServer::start();
    let mut con = server.redis();
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    let echo: String = redis::cmd("PING").arg("hi there").query(&mut con).unwrap();
    assert_eq!(echo, "hi there");
    // A wrong command or argument is an error reply; the connection stays usable.
    assert_eq!(error_text(redis::cmd("FROBNICATE").query::<R>(&mut con)), "ERR unknown command 'FROBNICATE'");
    assert_eq!(code_of(redis::cmd("APPEND").arg("s").query::<R>(&mut con)), "ERR");
    assert_eq!(code_of(redis::cmd("READ").arg("s").arg("COUNT").arg("0").query::<R>(&mut con)), "ERR");
    assert_eq!(code_of(redis::cmd("HELLO").arg("4").query::<R>(&mut con)), "ERR");
    // TIMELINE of an order with no events, or of a bad id, is an error reply.
    assert_eq!(error_text(redis::cmd("TIMELINE").arg("order-1").query::<R>(&mut con)), "ERR no such order '1'");
    assert_eq!(code_of(redis::cmd("TIMELINE").arg("x".repeat(1100)).query::<R>(&mut con)), "ERR");
    assert_eq!(
        code_of(redis::cmd("AUTH").arg("acme").arg("x").query::<R>(&mut con)),
        "ERR",
        "AUTH on an open daemon is an error"
    );
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");

    // HELLO replies a map of server facts; HELLO 3 switches to RESP3.
    let hello = fields(&redis::cmd("HELLO").arg("2").query::<R>(&mut con).unwrap());
    assert!(hello.contains(&("server".into(), R::BulkString(b"logbook".to_vec()))), "{hello:?}");
    assert!(hello.contains(&("proto".into(), R::Int(2))));
    let mut con3 = server.redis3();
    let hello = redis::cmd("HELLO").query::<R>(&mut con3).unwrap();
    assert!(matches!(hello, R::Map(_)), "RESP3 HELLO is a map: {hello:?}");
    assert!(fields(&hello).contains(&("proto".into(), R::Int(3))));
}

#[test]
fn append_read_version_head_resp2() {
    let server = TestServer::start();
    let mut con = server.redis();
    assert_eq!(append(&mut con, "order-1", "CART_CREATED", r#"{"customer":"c-1"}"#), (1, 1));
    let v: Vec<i64> = redis::cmd("APPEND")
        .arg("order-1")
        .arg("ITEM_ADDED")
        .arg(r#"{"sku":"p-9"}"#)
        .arg("EXPECTED")
        .arg(1)
        .arg("META")
        .arg(r#"{"actor":"bob"}"#)
        .query(&mut con)
        .unwrap();
    assert_eq!(v, vec![2, 2]);
    let version: i64 = redis::cmd("VERSION").arg("order-1").query(&mut con).unwrap();
    assert_eq!(version, 2);
    let version: i64 = redis::cmd("VERSION").arg("order-404").query(&mut con).unwrap();
    assert_eq!(version, 0);
    let head: i64 = redis::cmd("HEAD").query(&mut con).unwrap();
    assert_eq!(head, 2);

    let read = events(redis::cmd("READ").arg("order-1").query(&mut con).unwrap());
    assert_eq!(read.len(), 2);
    // RESP2: a flat key-value array, keys in the documented order.
    let keys: Vec<String> = fields(&read[1]).into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["id", "stream", "version", "position", "type", "time", "data", "meta"]);
    assert!(matches!(read[1], R::Array(_)));
    assert_eq!(field_str(&read[1], "stream"), "order-1");
    assert_eq!(field_int(&read[1], "version"), 2);
    assert_eq!(field_int(&read[1], "position"), 2);
    assert_eq!(field_str(&read[1], "type"), "ITEM_ADDED");
    assert_eq!(field_str(&read[1], "data"), r#"{"sku":"p-9"}"#);
    assert_eq!(field_str(&read[1], "meta"), r#"{"actor":"bob"}"#);
    assert_eq!(field_str(&read[0], "meta"), "");
    assert!(is_rfc3339_micros(&field_str(&read[0], "time")), "{}", field_str(&read[0], "time"));
    assert!(uuid::Uuid::parse_str(&field_str(&read[0], "id")).is_ok());

    // FROM / COUNT / REV.
    let rev = events(redis::cmd("READ").arg("order-1").arg("REV").query(&mut con).unwrap());
    assert_eq!(rev.iter().map(|e| field_int(e, "version")).collect::<Vec<_>>(), [2, 1]);
    let one = events(redis::cmd("READ").arg("order-1").arg("FROM").arg(2).arg("COUNT").arg(5).query(&mut con).unwrap());
    assert_eq!(one.iter().map(|e| field_int(e, "version")).collect::<Vec<_>>(), [2]);
    let none = events(redis::cmd("READ").arg("order-404").query(&mut con).unwrap());
    assert!(none.is_empty());
}

#[test]
fn resp3_events_are_maps() {
    let server = TestServer::start();
    let mut con = server.redis3();
    assert_eq!(append(&mut con, "cart-7", "CREATED", "{}"), (1, 1));
    let read = events(redis::cmd("READ").arg("cart-7").query(&mut con).unwrap());
    assert!(matches!(read[0], R::Map(_)), "{:?}", read[0]);
    assert_eq!(field_str(&read[0], "type"), "CREATED");
    let all = events(redis::cmd("READALL").query(&mut con).unwrap());
    assert!(matches!(all[0], R::Map(_)));
    let info: String = redis::cmd("INFO").query(&mut con).unwrap();
    assert!(info.contains("events:1"), "{info}");
}

#[test]
fn expected_versions_and_wrongversion() {
    let server = TestServer::start();
    let mut con = server.redis();
    let q = |con: &mut redis::Connection, expected: &str| {
        redis::cmd("APPEND").arg("s-1").arg("T").arg("{}").arg("EXPECTED").arg(expected).query::<Vec<i64>>(con)
    };
    assert_eq!(error_text(q(&mut con, "exists")), "WRONGVERSION expected exists actual 0");
    assert_eq!(q(&mut con, "none").unwrap(), vec![1, 1]);
    assert_eq!(error_text(q(&mut con, "none")), "WRONGVERSION expected none actual 1");
    assert_eq!(error_text(q(&mut con, "0")), "WRONGVERSION expected none actual 1");
    assert_eq!(error_text(q(&mut con, "5")), "WRONGVERSION expected 5 actual 1");
    assert_eq!(q(&mut con, "1").unwrap(), vec![2, 2]);
    assert_eq!(q(&mut con, "exists").unwrap(), vec![3, 3]);
    assert_eq!(q(&mut con, "any").unwrap(), vec![4, 4]);
    assert_eq!(code_of(q(&mut con, "soon")), "ERR");
    let version: i64 = redis::cmd("VERSION").arg("s-1").query(&mut con).unwrap();
    assert_eq!(version, 4, "failed appends wrote nothing");
}

#[test]
fn idempotent_append_with_id() {
    let server = TestServer::start();
    let mut con = server.redis();
    let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
    let first: Vec<i64> =
        redis::cmd("APPEND").arg("pay-1").arg("PAID").arg("{}").arg("ID").arg(id).query(&mut con).unwrap();
    let again: Vec<i64> = redis::cmd("APPEND")
        .arg("pay-1")
        .arg("PAID")
        .arg("{}")
        .arg("ID")
        .arg(id)
        .arg("EXPECTED")
        .arg("none")
        .query(&mut con)
        .unwrap();
    assert_eq!(first, again, "a retry returns the original placement");
    let read = events(redis::cmd("READ").arg("pay-1").query(&mut con).unwrap());
    assert_eq!(read.len(), 1);
    assert_eq!(field_str(&read[0], "id"), id);
    // Same id, different content: refused.
    assert_eq!(
        code_of(redis::cmd("APPEND").arg("pay-1").arg("PAID").arg("{\"x\":1}").arg("ID").arg(id).query::<R>(&mut con)),
        "ERR"
    );
}

#[test]
fn append_many_shape_atomicity_and_limits() {
    let mut config = logbook_server::Config::default();
    config.limits.max_events_per_append = 3;
    let server = TestServer::start_with(config);
    let mut con = server.redis();
    let v: Vec<i64> = redis::cmd("APPENDMANY")
        .arg("order-9")
        .arg(r#"[{"type":"A","data":{"n":1}},{"type":"B","data":[1,2],"meta":{"actor":"x"}}]"#)
        .arg("EXPECTED")
        .arg("none")
        .query(&mut con)
        .unwrap();
    assert_eq!(v, vec![1, 2, 2], "[first_version, last_version, last_position]");
    let v: Vec<i64> =
        redis::cmd("APPENDMANY").arg("order-9").arg(r#"[{"type":"C","data":null}]"#).query(&mut con).unwrap();
    assert_eq!(v, vec![3, 3, 3]);
    let read = events(redis::cmd("READ").arg("order-9").query(&mut con).unwrap());
    assert_eq!(field_str(&read[1], "data"), "[1,2]");
    assert_eq!(field_str(&read[1], "meta"), r#"{"actor":"x"}"#);
    // A conflict writes none of the batch.
    assert_eq!(
        error_text(
            redis::cmd("APPENDMANY")
                .arg("order-9")
                .arg(r#"[{"type":"D","data":1}]"#)
                .arg("EXPECTED")
                .arg(1)
                .query::<R>(&mut con)
        ),
        "WRONGVERSION expected 1 actual 3"
    );
    // Over the configured limit: TOOBIG; bad JSON: ERR; the connection stays.
    let four = r#"[{"type":"A","data":1},{"type":"A","data":2},{"type":"A","data":3},{"type":"A","data":4}]"#;
    assert_eq!(code_of(redis::cmd("APPENDMANY").arg("order-9").arg(four).query::<R>(&mut con)), "TOOBIG");
    assert_eq!(code_of(redis::cmd("APPENDMANY").arg("order-9").arg("[{").query::<R>(&mut con)), "ERR");
    let version: i64 = redis::cmd("VERSION").arg("order-9").query(&mut con).unwrap();
    assert_eq!(version, 3);
}

#[test]
fn read_all_filters() {
    let server = TestServer::start();
    let mut con = server.redis();
    append(&mut con, "order-1", "CREATED", "1");
    append(&mut con, "cart-1", "CREATED", "2");
    append(&mut con, "order-2", "PAID", "3");
    append(&mut con, "order-1", "PAID", "4");
    let all = events(redis::cmd("READALL").query(&mut con).unwrap());
    assert_eq!(all.iter().map(|e| field_int(e, "position")).collect::<Vec<_>>(), [1, 2, 3, 4]);
    let from = events(redis::cmd("READALL").arg("FROM").arg(3).arg("COUNT").arg(1).query(&mut con).unwrap());
    assert_eq!(from.iter().map(|e| field_int(e, "position")).collect::<Vec<_>>(), [3]);
    let orders = events(redis::cmd("READALL").arg("PREFIX").arg("order-").query(&mut con).unwrap());
    assert_eq!(orders.iter().map(|e| field_int(e, "position")).collect::<Vec<_>>(), [1, 3, 4]);
    let paid = events(redis::cmd("READALL").arg("TYPE").arg("PAID").query(&mut con).unwrap());
    assert_eq!(paid.iter().map(|e| field_int(e, "position")).collect::<Vec<_>>(), [3, 4]);
    let both = events(
        redis::cmd("READALL")
            .arg("TYPE")
            .arg("PAID")
            .arg("TYPE")
            .arg("CREATED")
            .arg("PREFIX")
            .arg("cart")
            .query(&mut con)
            .unwrap(),
    );
    assert_eq!(both.iter().map(|e| field_int(e, "position")).collect::<Vec<_>>(), [2]);
    let past = events(redis::cmd("READALL").arg("FROM").arg(99).query(&mut con).unwrap());
    assert!(past.is_empty());
    // BLOCK with nothing new: empty after about the timeout.
    let started = Instant::now();
    let none = events(redis::cmd("READALL").arg("FROM").arg(5).arg("BLOCK").arg(150).query(&mut con).unwrap());
    assert!(none.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(140), "{:?}", started.elapsed());
}

#[test]
fn read_all_block_wakes_on_append_from_another_connection() {
    let server = TestServer::start();
    let mut writer = server.redis();
    append(&mut writer, "order-1", "CREATED", "{}");
    let url = server.url_resp3();
    let reader = std::thread::spawn(move || {
        let mut con = connect(&url);
        let started = Instant::now();
        let got = events(
            redis::cmd("READALL")
                .arg("FROM")
                .arg(2)
                .arg("BLOCK")
                .arg(10_000)
                .arg("PREFIX")
                .arg("order-")
                .query(&mut con)
                .unwrap(),
        );
        (got, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(200));
    append(&mut writer, "cart-1", "IGNORED", "{}"); // filtered out: the reader keeps waiting
    std::thread::sleep(Duration::from_millis(100));
    append(&mut writer, "order-2", "CREATED", "{}");
    let (got, waited) = reader.join().unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(field_str(&got[0], "stream"), "order-2");
    assert_eq!(field_int(&got[0], "position"), 3);
    assert!(waited >= Duration::from_millis(100) && waited < Duration::from_secs(5), "{waited:?}");
}

#[test]
fn pipelining_1000_appends_in_one_round_trip_shares_group_commits() {
    let server = TestServer::start();
    let mut con = server.redis();
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        pipe.cmd("APPEND").arg(format!("order-{}", i % 100)).arg("T").arg(format!("{{\"i\":{i}}}"));
    }
    let started = Instant::now();
    let replies: Vec<Vec<i64>> = pipe.query(&mut con).expect("pipeline");
    let elapsed = started.elapsed();
    assert_eq!(replies.len(), 1000);
    // Replies in request order; versions and positions follow the pipeline order exactly.
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply[0], (i / 100 + 1) as i64, "append {i} of order-{}", i % 100);
        assert_eq!(reply[1], i as i64 + 1, "append {i} gets the next position in send order");
    }
    for s in 0..100 {
        let read = events(redis::cmd("READ").arg(format!("order-{s}")).query(&mut con).unwrap());
        let data: Vec<String> = read.iter().map(|e| field_str(e, "data")).collect();
        let want: Vec<String> = (0..10).map(|k| format!("{{\"i\":{}}}", k * 100 + s)).collect();
        assert_eq!(data, want, "stream order-{s} keeps pipeline order");
    }
    let info: String = redis::cmd("INFO").arg("stats").query(&mut con).unwrap();
    let fsyncs: u64 = info.lines().find_map(|l| l.strip_prefix("fsyncs:")).unwrap().trim().parse().unwrap();
    eprintln!("1000 pipelined appends: {elapsed:?}, {fsyncs} fsyncs");
    assert!(fsyncs < 500, "pipelined appends to different streams share fsyncs: {fsyncs}");
}

#[test]
fn a_pipeline_longer_than_one_run_of_appends_gets_every_reply_in_order() {
    // 20,000 appends (several runs of appends handed to the store one after another, each
    // answered by the writer) with a VERSION after every 5,000th: every reply comes, in order.
    let server = TestServer::start();
    let mut con = server.redis();
    con.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut pipe = redis::pipe();
    for i in 0..20_000 {
        pipe.cmd("APPEND").arg("long").arg("T").arg(format!("{{\"i\":{i}}}"));
        if i % 5_000 == 4_999 {
            pipe.cmd("VERSION").arg("long");
        }
    }
    let replies: Vec<redis::Value> = pipe.query(&mut con).expect("pipeline");
    assert_eq!(replies.len(), 20_004);
    let mut appended = 0;
    for reply in replies {
        match reply {
            R::Array(parts) => {
                appended += 1;
                assert_eq!(parts[0], R::Int(appended), "append {appended} in order");
            }
            R::Int(version) => assert_eq!(version, appended, "VERSION after {appended} appends"),
            other => panic!("unexpected reply {other:?}"),
        }
    }
}

#[test]
fn pipelined_appends_to_one_stream_with_exact_versions_share_fsyncs() {
    let server = TestServer::start();
    let mut con = server.redis();
    let mut pipe = redis::pipe();
    for v in 0..200 {
        pipe.cmd("APPEND").arg("order-one").arg("T").arg(format!("{v}")).arg("EXPECTED").arg(v);
    }
    let replies: Vec<Vec<i64>> = pipe.query(&mut con).expect("pipeline");
    for (v, reply) in replies.iter().enumerate() {
        assert_eq!(reply, &vec![v as i64 + 1, v as i64 + 1], "EXPECTED {v} then the next one");
    }
    let info: String = redis::cmd("INFO").arg("stats").query(&mut con).unwrap();
    let fsyncs: u64 = info.lines().find_map(|l| l.strip_prefix("fsyncs:")).unwrap().trim().parse().unwrap();
    assert!(fsyncs < 100, "200 pipelined appends to one stream share fsyncs: {fsyncs}");
}

#[test]
fn max_connections_turns_extra_connections_away() {
    let mut config = logbook_server::Config::default();
    config.limits.max_connections = 2;
    let server = TestServer::start_with(config);
    let mut a = server.redis();
    let mut b = server.redis();
    let mut extra = server.raw();
    let reply = read_until_close(&mut extra);
    assert!(String::from_utf8_lossy(&reply).starts_with("-ERR max connections"), "{reply:?}");
    let _: String = redis::cmd("PING").query(&mut a).unwrap();
    let _: String = redis::cmd("PING").query(&mut b).unwrap();
    drop(a);
    // The slot frees up once the server notices the close.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let client = redis::Client::open(server.url()).unwrap();
        if let Ok(mut c) = client.get_connection() {
            if redis::cmd("PING").query::<String>(&mut c).is_ok() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "slot never freed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn quit_and_idle_timeout_close_the_connection() {
    let mut config = logbook_server::Config::default();
    config.limits.idle_timeout_secs = 1;
    let server = TestServer::start_with(config);
    let mut raw = server.raw();
    let reply = send_raw(&mut raw, b"PING\r\nQUIT\r\nPING\r\n");
    assert_eq!(reply, b"+PONG\r\n+OK\r\n");
    let mut idle = server.raw();
    let started = Instant::now();
    let reply = read_until_close(&mut idle);
    assert!(reply.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(900) && started.elapsed() < Duration::from_secs(5));
}

#[test]
fn metrics_endpoint_serves_prometheus_text() {
    let config = logbook_server::Config { metrics: Some("127.0.0.1:0".into()), ..Default::default() };
    let server = TestServer::start_with(config);
    let mut con = server.redis();
    append(&mut con, "m-1", "T", "{}");
    let metrics_addr = server.server.as_ref().unwrap().metrics_addr().unwrap();
    let mut http = std::net::TcpStream::connect(metrics_addr).unwrap();
    http.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    http.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.0 200 OK"), "{body}");
    assert!(body.contains("logbook_appends_total 1"), "{body}");
    assert!(body.contains("# TYPE logbook_fsyncs_total counter"));
    assert!(body.contains("logbook_connections 1"));
    // Build info, and the fsync and group-commit histograms (one append: one fsync of one event).
    assert!(body.contains(&format!("logbook_build_info{{version=\"{}\"", env!("CARGO_PKG_VERSION"))), "{body}");
    assert!(body.contains("# TYPE logbook_fsync_duration_seconds histogram"), "{body}");
    let fsyncs = metric(&body, "logbook_fsyncs_total");
    assert!(fsyncs >= 1.0);
    assert_eq!(metric(&body, "logbook_fsync_duration_seconds_count"), fsyncs, "every fsync is in the histogram");
    assert_eq!(metric(&body, r#"logbook_fsync_duration_seconds_bucket{le="+Inf"}"#), fsyncs);
    assert!(metric(&body, "logbook_fsync_duration_seconds_sum") > 0.0);
    assert_eq!(metric(&body, r#"logbook_group_commit_events_bucket{le="1"}"#), 1.0, "one group of one event: {body}");
    assert_eq!(metric(&body, "logbook_group_commit_events_sum"), 1.0);
    assert_eq!(metric(&body, "logbook_append_duration_seconds_count"), 1.0, "the one append is timed");
    assert!(metric(&body, "logbook_append_duration_seconds_sum") > 0.0);
    // Buckets are cumulative.
    let buckets: Vec<f64> = body
        .lines()
        .filter(|l| l.starts_with("logbook_fsync_duration_seconds_bucket"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
}

/// The value of the metric line that starts with `name ` (name including labels).
fn metric(body: &str, name: &str) -> f64 {
    let line = body.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '));
    let line = line.unwrap_or_else(|| panic!("no {name} in {body}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn info_lists_the_counters() {
    let server = TestServer::start();
    let mut con = server.redis();
    append(&mut con, "a-1", "T", "{}");
    let info: String = redis::cmd("INFO").query(&mut con).unwrap();
    for key in [
        "version:",
        "uptime_seconds:",
        "events:1",
        "streams:1",
        "segments:1",
        "bytes:",
        "appends:1",
        "fsyncs:",
        "batches:",
        "connections:1",
    ] {
        assert!(info.contains(key), "INFO lacks {key}: {info}");
    }
    assert_eq!(code_of(redis::cmd("INFO").arg("nope").query::<R>(&mut con)), "ERR");
}

#[test]
fn shutdown_finishes_and_closes_the_store_cleanly() {
    let mut server = TestServer::start();
    let mut con = server.redis();
    for i in 0..10 {
        append(&mut con, "s-1", "T", &i.to_string());
    }
    server.shutdown();
    let store = logbook::Store::open(server.dir.path(), logbook::Options::default()).expect("reopen: lock released");
    assert_eq!(store.stream_version("s-1"), 10);
    store.close().unwrap();
}

#[test]
fn rust_client_round_trip_and_tail() {
    use logbook::{ExpectedVersion, NewEvent};
    use logbook_server::client::{AllFilter, Client};
    let server = TestServer::start();
    let mut client = Client::connect(server.addr).unwrap();
    client.ping().unwrap();
    assert_eq!(client.append("order-1", "CREATED", b"{\"a\":1}", ExpectedVersion::NoStream).unwrap(), (1, 1));
    let err = client.append("order-1", "CREATED", b"{}", ExpectedVersion::NoStream).unwrap_err();
    assert_eq!(err.code(), Some("WRONGVERSION"));
    let placed = client
        .append_many(
            "order-1",
            &[
                NewEvent::new("A", b"[1]".to_vec()),
                NewEvent::new("B", b"{}".to_vec()).with_metadata(b"{\"m\":1}".to_vec()),
            ],
            ExpectedVersion::Exact(1),
        )
        .unwrap();
    assert_eq!(placed, (2, 3, 3));
    let read = client.read("order-1", None, None, false).unwrap();
    assert_eq!(read.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(read[2].meta, b"{\"m\":1}");
    assert_eq!(client.version("order-1").unwrap(), 3);
    assert_eq!(client.head().unwrap(), 3);
    assert_eq!(client.read_all(2, 10, &AllFilter::default()).unwrap().len(), 2);

    let addr = server.addr;
    let tailer = std::thread::spawn(move || {
        let tail = Client::connect(addr).unwrap().tail(1, AllFilter { prefix: Some("order-".into()), types: vec![] });
        tail.take(5).map(|e| e.unwrap().position).collect::<Vec<_>>()
    });
    std::thread::sleep(Duration::from_millis(100));
    client.append("cart-1", "X", b"{}", ExpectedVersion::Any).unwrap();
    client.append("order-2", "Y", b"{}", ExpectedVersion::Any).unwrap();
    client.append("order-3", "Z", b"{}", ExpectedVersion::Any).unwrap();
    assert_eq!(tailer.join().unwrap(), [1, 2, 3, 5, 6]);
    let reserve = [NewEvent::new("STOCK_RESERVED", b"{\"qty\":1}".to_vec())];
    let cart = [NewEvent::new("CART_CREATED", b"{}".to_vec())];
    let both = client
        .append_batch(&[("stock-1", ExpectedVersion::NoStream, &reserve), ("order-9", ExpectedVersion::Any, &cart)])
        .unwrap();
    assert_eq!((both[0].0, both[0].1, both[1].0, both[1].1), (1, 1, 1, 1));
    assert_eq!(both[1].2, both[0].2 + 1, "one batch, consecutive positions");
    let stale = client
        .append_batch(&[("order-9", ExpectedVersion::Any, &cart), ("stock-1", ExpectedVersion::NoStream, &reserve)]);
    assert_eq!(stale.unwrap_err().code(), Some("WRONGVERSION"));
}

#[test]
fn appendbatch_commits_every_part_or_none_and_names_the_refused_part() {
    let server = TestServer::start();
    let mut con = server.redis();
    append(&mut con, "stock-p9", "STOCK_RECEIVED", "{}");
    let batch = r#"[{"stream": "order-1", "expected": "none", "events": [{"type": "CART_CREATED", "data": {}}, {"type": "ITEM_ADDED", "data": {"sku": "p9"}}]},
                    {"stream": "stock-p9", "expected": 1, "events": [{"type": "STOCK_RESERVED", "data": {"qty": 1}}]}]"#;
    let reply: Vec<Vec<i64>> = redis::cmd("APPENDBATCH").arg(batch).query(&mut con).unwrap();
    assert_eq!(reply, vec![vec![1, 2, 3], vec![2, 2, 4]], "[first_version, last_version, last_position] per part");
    // A stale part: WRONGVERSION names it (0-based) and nothing of the batch is written.
    let stale = r#"[{"stream": "order-2", "events": [{"type": "CART_CREATED", "data": {}}]},
                    {"stream": "stock-p9", "expected": 1, "events": [{"type": "STOCK_RESERVED", "data": {}}]}]"#;
    assert_eq!(
        error_text(redis::cmd("APPENDBATCH").arg(stale).query::<R>(&mut con)),
        "WRONGVERSION 1 expected 1 actual 2"
    );
    let head: i64 = redis::cmd("HEAD").query(&mut con).unwrap();
    assert_eq!(head, 4, "the refused batch wrote nothing");
    assert_eq!(code_of(redis::cmd("APPENDBATCH").arg("[]").query::<R>(&mut con)), "ERR");
    assert_eq!(
        error_text(redis::cmd("APPENDBATCH").arg(r#"[{"stream":"s","events":[{"type":"A"}]}]"#).query::<R>(&mut con)),
        r#"ERR parts[0]: events[0]: "data" is required"#
    );
    // COMMAND lists it.
    let names: Vec<String> = redis::cmd("COMMAND").arg("LIST").query(&mut con).unwrap();
    assert!(names.contains(&"appendbatch".to_string()) && names.contains(&"timeline".to_string()), "{names:?}");
}

/// redis-cli asks COMMAND DOCS when it connects and builds `help <command>` and its typing
/// hints from the reply: logbook's grammar must come back, not an empty map (which made
/// `help APPEND` print nothing) and not Redis's APPEND.
#[test]
fn command_docs_describe_logbooks_own_grammar() {
    let server = TestServer::start();
    let mut con = server.redis();
    let docs: std::collections::HashMap<String, R> = redis::cmd("COMMAND").arg("DOCS").query(&mut con).unwrap();
    let names: Vec<String> = redis::cmd("COMMAND").arg("LIST").query(&mut con).unwrap();
    for name in &names {
        assert!(docs.contains_key(name), "COMMAND DOCS lacks {name}");
    }
    let append = fields(&docs["append"]);
    let summary = append.iter().find(|(k, _)| k == "summary").map(|(_, v)| v.clone());
    assert_eq!(
        summary,
        Some(R::BulkString(b"Appends one event to a stream; replies [version, position] once it is durable".to_vec()))
    );
    // Asking for some commands (any case) describes only those.
    let some: std::collections::HashMap<String, R> =
        redis::cmd("COMMAND").arg("DOCS").arg("READ").arg("timeline").arg("GET").query(&mut con).unwrap();
    let mut keys: Vec<&String> = some.keys().collect();
    keys.sort();
    assert_eq!(keys, ["read", "timeline"]);

    // And redis-cli itself, when installed, shows logbook's APPEND.
    let Ok(out) = std::process::Command::new("redis-cli")
        .args(["-p", &server.addr.port().to_string(), "--no-raw", "help", "APPEND"])
        .output()
    else {
        eprintln!("redis-cli not installed: its part of this test is skipped");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Appends one event to a stream"), "redis-cli help APPEND printed: {text}");
    assert!(text.contains("[EXPECTED any|none|exists|version]"), "redis-cli help APPEND printed: {text}");
}
