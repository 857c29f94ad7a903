//! The daemon's limits as an attacker meets them (reliability.md items 13 and 18), one test per
//! finding of the "bounded daemon" issue; each failed on the daemon before it:
//! - a half-sent request is answered `-ERR request not complete` and closed at
//!   `request_timeout_secs` (it used to be held, silently, until `idle_timeout_secs`);
//! - unauthenticated sockets have their own pool and an AUTH deadline, so tenants still get in
//!   (they used to fill `max_connections`);
//! - wrong AUTHs are slowed per address, logged at warn, and the connection closed;
//! - no error reply a tenant can provoke names a server path, and a tenant's stream-name
//!   length error counts its own name (it used to say "1029 bytes");
//! - a slow client on the metrics port does not block scrapes; /healthz and /readyz answer.

mod server_support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use logbook_server::{hash_token_hex, Config, Limits};
use server_support::daemon::Daemon;
use server_support::*;

fn tenants(limits: Limits) -> Config {
    Config { limits, ..tenants_config() }
}

#[test]
fn a_half_sent_request_is_answered_and_closed_at_the_request_timeout() {
    let limits = Limits { request_timeout_secs: 1, ..Limits::default() };
    let server = TestServer::start_with(Config { limits, ..Config::default() });
    let mut raw = server.raw();
    let started = Instant::now();
    raw.write_all(b"*2\r\n$4\r\nPING\r\n$100\r\nab").unwrap();
    // Then silence: no more bytes, so the old per-read check never ran before the idle timeout.
    let reply = read_until_close(&mut raw);
    let elapsed = started.elapsed();
    assert_eq!(String::from_utf8_lossy(&reply), "-ERR request not complete within 1 s of its first byte\r\n");
    assert!(elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4), "{elapsed:?}");
}

#[test]
fn tenants_connect_while_unauthenticated_sockets_hold_their_own_limit() {
    let limits =
        Limits { max_connections: 3, max_unauthenticated_connections: 4, auth_timeout_secs: 2, ..Limits::default() };
    let server = TestServer::start_with(tenants(limits));
    // Twenty silent sockets: far more than max_connections.
    let silent: Vec<_> = (0..20).map(|_| server.raw()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut acme = connect(&server.url_auth("acme", ACME_TOKEN, false));
    let mut globex = connect(&server.url_auth("globex", GLOBEX_TOKEN, false));
    let v: Vec<i64> = redis::cmd("APPEND").arg("o-1").arg("T").arg("{}").query(&mut acme).unwrap();
    assert_eq!(v[0], 1);
    let v: Vec<i64> = redis::cmd("APPEND").arg("o-1").arg("T").arg("{}").query(&mut globex).unwrap();
    assert_eq!(v[0], 1);
    let mut admin = connect(&server.url_auth("admin", ADMIN_TOKEN, false));
    let info: String = redis::cmd("INFO").arg("clients").query(&mut admin).unwrap();
    let unauth: usize = info
        .lines()
        .find_map(|l| l.strip_prefix("unauthenticated_connections:"))
        .and_then(|v| v.trim().parse().ok())
        .expect(&info);
    assert!(unauth <= 4, "{info}");
    // Before AUTH: COMMAND answers with the command names only (the grammar's and the
    // extensions'); data commands get -NOAUTH unparsed.
    let mut fresh = server.raw();
    let reply = send_raw(&mut fresh, b"COMMAND COUNT\r\nCOMMAND\r\nREAD o-1\r\nQUIT\r\n");
    let text = String::from_utf8_lossy(&reply);
    // The grammar's commands and the order lifecycle's (TIMELINE, ORDER), counted where they are defined.
    let commands = logbook_protocol::command_names().len() + logbook_order::server_extensions().names().len();
    assert!(
        text.starts_with(&format!(":{commands}\r\n*{commands}\r\n"))
            && text.contains("appendbatch")
            && text.contains("timeline"),
        "{text}"
    );
    assert!(text.contains("-NOAUTH") && text.ends_with("+OK\r\n"), "{text}");
    // A fourth authenticated connection is over max_connections: its AUTH is refused.
    let mut fourth = server.raw();
    let reply = send_raw(&mut fourth, format!("AUTH acme {ACME_TOKEN}\r\n").as_bytes());
    assert!(String::from_utf8_lossy(&reply).starts_with("-ERR max connections"), "{reply:?}");
    // Silent sockets that were not pushed out are closed at the AUTH deadline, with a reply.
    let mut saw_deadline_reply = false;
    for mut s in silent {
        let reply = read_until_close(&mut s);
        saw_deadline_reply |= String::from_utf8_lossy(&reply).starts_with("-ERR AUTH not received within 2 s");
    }
    assert!(saw_deadline_reply);
    let pong: String = redis::cmd("PING").query(&mut acme).unwrap();
    assert_eq!(pong, "PONG");
}

/// One AUTH round trip on `s`: the reply and how long it took.
fn auth_round_trip(s: &mut std::net::TcpStream, token: &str) -> (String, Duration) {
    let started = Instant::now();
    s.write_all(format!("AUTH acme {token}\r\n").as_bytes()).unwrap();
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\r\n") {
        match s.read(&mut byte) {
            Ok(1) => reply.push(byte[0]),
            _ => break,
        }
    }
    (String::from_utf8_lossy(&reply).into_owned(), started.elapsed())
}

#[test]
fn wrong_auth_is_slowed_per_address_logged_and_closed() {
    let toml = format!(
        "[limits]\nauth_failure_delay_ms = 20\nauth_failure_delay_max_ms = 640\nmax_auth_failures_per_connection = 3\n\
         [[tenant]]\nname = \"acme\"\ntoken_sha256 = \"{}\"\n",
        hash_token_hex(ACME_TOKEN.as_bytes())
    );
    let daemon = Daemon::start(&toml, false);
    let wrong = "not-the-token-0123456789";
    let mut times = Vec::new();
    let mut s = daemon.raw();
    let mut closed_after = Vec::new();
    let mut on_this_connection = 0;
    for _ in 0..10 {
        let (reply, took) = auth_round_trip(&mut s, wrong);
        assert_eq!(reply, "-NOPERM invalid tenant or token\r\n");
        times.push(took);
        on_this_connection += 1;
        if on_this_connection == 3 {
            // The third failure closes the connection; a new one does not reset the delay.
            assert!(read_until_close(&mut s).is_empty());
            closed_after.push(on_this_connection);
            s = daemon.raw();
            on_this_connection = 0;
        }
    }
    eprintln!("AUTH failure round trips: {times:?}");
    assert_eq!(closed_after, vec![3, 3, 3]);
    assert!(times[0] < Duration::from_millis(300), "{times:?}");
    assert!(times[9] >= Duration::from_millis(600), "the tenth is slowed to the cap: {times:?}");
    assert!(times[3] > times[0], "a new connection does not reset the delay: {times:?}");
    // The right token still works (after the address's delay).
    let (reply, _) = auth_round_trip(&mut s, ACME_TOKEN);
    assert_eq!(reply, "+OK\r\n");
    let log = daemon.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("AUTH failed")).collect();
    assert_eq!(lines.len(), 10, "{log}");
    assert!(lines.iter().all(|l| l.contains("WARN") && l.contains("127.0.0.1") && l.contains("acme")), "{log}");
    assert!(!log.contains(wrong) && !log.contains(ACME_TOKEN), "a token in the log: {log}");
}

#[test]
fn no_error_reply_a_tenant_can_provoke_names_a_server_path() {
    let server = TestServer::start_with(tenants(Limits::default()));
    let dir = server.dir.path().to_path_buf();
    let mut acme = connect(&server.url_auth("acme", ACME_TOKEN, false));
    let marker = "CORRUPT-ME-PAYLOAD-7f3a";
    let _: Vec<i64> =
        redis::cmd("APPEND").arg("o-1").arg("T").arg(format!("{{\"m\":\"{marker}\"}}")).query(&mut acme).unwrap();
    // Damage the stored event under the running daemon: the read fails its checksum.
    let mut damaged = false;
    for entry in walk(&dir) {
        let mut bytes = std::fs::read(&entry).unwrap();
        if let Some(at) = bytes.windows(marker.len()).position(|w| w == marker.as_bytes()) {
            bytes[at] ^= 0x20;
            let mut f = std::fs::OpenOptions::new().write(true).open(&entry).unwrap();
            std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(at as u64)).unwrap();
            f.write_all(&bytes[at..=at]).unwrap();
            damaged = true;
        }
    }
    assert!(damaged, "the event's bytes were found on disk");
    let replies = vec![
        error_text(redis::cmd("READ").arg("o-1").query::<redis::Value>(&mut acme)),
        error_text(redis::cmd("READALL").query::<redis::Value>(&mut acme)),
        error_text(redis::cmd("APPEND").arg("x".repeat(1024)).arg("T").arg("{}").query::<redis::Value>(&mut acme)),
        error_text(redis::cmd("READ").arg("x".repeat(2000)).query::<redis::Value>(&mut acme)),
    ];
    eprintln!("{replies:#?}");
    let data = dir.display().to_string();
    for reply in &replies {
        assert!(!reply.contains('/') && !reply.contains(&data), "a path in {reply}");
        assert!(!reply.contains("acme") && !reply.contains("1029"), "the namespace shows in {reply}");
    }
    assert!(replies[0].contains("storage error (id "), "{}", replies[0]);
    assert!(replies[2].contains("stream name is 1024 bytes, limit 1019 for this tenant"), "{}", replies[2]);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_slow_client_on_the_metrics_port_does_not_block_scrapes() {
    let config = Config { metrics: Some("127.0.0.1:0".into()), ..Config::default() };
    let server = TestServer::start_with(config);
    let metrics = server.server.as_ref().unwrap().metrics_addr().unwrap();
    // A client that sends one byte every 100 ms and never finishes its request head.
    let slow = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(metrics).unwrap();
        for &b in b"GET /metrics HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
            if s.write_all(&[b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let get = |path: &str| -> (String, Duration) {
        let started = Instant::now();
        let mut s = std::net::TcpStream::connect(metrics).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        (body, started.elapsed())
    };
    for _ in 0..5 {
        let (body, took) = get("/metrics");
        assert!(body.contains("logbook_head_position"), "{body}");
        assert!(took < Duration::from_secs(1), "a scrape took {took:?} beside a slow client");
    }
    let (health, _) = get("/healthz");
    assert!(health.starts_with("HTTP/1.1 200") || health.starts_with("HTTP/1.0 200"), "{health}");
    let (ready, _) = get("/readyz");
    assert!(ready.starts_with("HTTP/1.1 200") || ready.starts_with("HTTP/1.0 200"), "{ready}");
    slow.join().unwrap();
}

#[test]
fn blocked_readers_do_not_hold_the_reply_budget() {
    let limits = Limits { max_reply_bytes: 64 * 1024, max_reply_bytes_total: 64 * 1024, ..Limits::default() };
    let server = TestServer::start_with(Config { limits, ..Config::default() });
    let mut con = server.redis();
    let json = format!(
        "[{}]",
        vec![r#"{"type":"T","data":{"pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}"#; 500].join(",")
    );
    let _: Vec<i64> = redis::cmd("APPENDMANY").arg("s-1").arg(json).query(&mut con).unwrap();
    // Four tailing readers wait for position 501.
    let tails: Vec<_> = (0..4)
        .map(|_| {
            let mut c = server.redis();
            std::thread::spawn(move || {
                let v: redis::Value =
                    redis::cmd("READALL").arg("FROM").arg(501).arg("BLOCK").arg(1500).query(&mut c).unwrap();
                v
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // A reader meanwhile gets a full 64 KiB page, not the one-event minimum.
    let page = events(redis::cmd("READALL").arg("COUNT").arg(1000).query(&mut con).unwrap());
    assert!(page.len() > 100 && page.len() < 500, "{} events in a 64 KiB reply", page.len());
    for tail in tails {
        assert_eq!(events(tail.join().unwrap()).len(), 0);
    }
}

#[test]
fn the_metrics_port_has_a_head_deadline_and_a_connection_cap() {
    let config = Config { metrics: Some("127.0.0.1:0".into()), ..Config::default() };
    let server = TestServer::start_with(config);
    let metrics = server.server.as_ref().unwrap().metrics_addr().unwrap();
    let open = || {
        let s = std::net::TcpStream::connect(metrics).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    };
    // A request head that never ends is dropped at the 2 s head deadline.
    let mut partial = open();
    partial.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
    let started = Instant::now();
    let _ = read_until_close(&mut partial);
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_millis(4500), "{took:?}");
    // 64 silent connections take every slot; one more makes room by closing the oldest of
    // them (it has sent no request head), so a scrape still answers.
    let mut silent: Vec<_> = (0..64).map(|_| open()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = open();
    let _ = extra.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
    let reply = read_until_close(&mut extra);
    assert!(String::from_utf8_lossy(&reply).contains("logbook_head_position"), "over the cap: {reply:?}");
    assert!(read_until_close(&mut silent[0]).is_empty(), "the oldest silent connection is closed");
    drop(silent);
}

#[test]
fn a_backpressured_pipeline_is_answered_whole_and_in_order() {
    let limits = Limits { max_pending_reply_bytes: 4096, max_reply_bytes: 16 * 1024, ..Limits::default() };
    let server = TestServer::start_with(Config { limits, ..Config::default() });
    let mut con = server.redis();
    let json = format!("[{}]", vec![r#"{"type":"T","data":{"n":1}}"#; 300].join(","));
    let _: Vec<i64> = redis::cmd("APPENDMANY").arg("s-1").arg(json).query(&mut con).unwrap();
    // 200 rounds of READALL + PING + APPEND, sent without reading, then read after a pause.
    let mut pipe = redis::pipe();
    for i in 0..200 {
        pipe.cmd("READALL").arg("FROM").arg(1 + i).arg("COUNT").arg(100);
        pipe.cmd("PING").arg(format!("p{i}"));
        pipe.cmd("APPEND").arg("s-2").arg("T").arg("{}");
    }
    let replies: Vec<redis::Value> = pipe.query(&mut con).unwrap();
    assert_eq!(replies.len(), 600);
    for (i, round) in replies.chunks(3).enumerate() {
        let page = events(round[0].clone());
        assert!(!page.is_empty() && field_int(&page[0], "position") == 1 + i as i64, "round {i}");
        assert_eq!(round[1], redis::Value::BulkString(format!("p{i}").into_bytes()));
        match &round[2] {
            redis::Value::Array(v) => assert_eq!(v[0], redis::Value::Int(1 + i as i64), "round {i}"),
            other => panic!("{other:?}"),
        }
    }
}
