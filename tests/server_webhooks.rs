//! Outbound webhooks through the real `logbook serve` binary, against an HTTP receiver this
//! test runs on loopback. The receiver checks every signature (with the `hmac` crate, not the
//! daemon's code), answers 500 to some first attempts, stalls past the timeout on others, is
//! down for a while, and always refuses one poisoned event. The daemon is SIGKILLed while a
//! delivery is in flight and restarted on the same directory.
//!
//! What must hold: every matching event is answered 2xx at least once; per stream the first
//! deliveries come in version order with no gap; nothing outside the filter is sent; the
//! poisoned event is tried exactly `max_attempts` times and then lies in `$dead-letter-hooks`;
//! after the kill, nothing acknowledged before it comes again (only the event in flight
//! does); `GROUP INFO $webhook-hooks` counts the failures since the restart.

mod server_support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use server_support::{events, field_int, field_str, fields};

const SECRET: &str = "whsec-test-secret";
const TIMEOUT_MS: u64 = 300;
/// A stalled answer comes this long after the request: well past the timeout.
const STALL: Duration = Duration::from_millis(3 * TIMEOUT_MS);
const MAX_ATTEMPTS: u32 = 6;
/// Backoff 100, 200, 400, 800, 1600 ms: the sixth attempt comes 3.1 s after the first, so the
/// receiver's 300 ms outage costs an event a few attempts and never its dead letter.
const BACKOFF_INITIAL_MS: u64 = 100;
const BACKOFF_MAX_MS: u64 = 1600;
const OUTAGE: Duration = Duration::from_millis(300);
/// Every wait of this test gives up after this long (a hang guard, not a timing assertion).
const PATIENCE: Duration = Duration::from_secs(90);

const STREAMS: [&str; 3] = ["order-a", "order-b", "order-c"];
/// The event the receiver always refuses.
const POISON: (&str, u64) = ("order-b", 3);
/// The event whose first request the receiver holds unanswered until the daemon is killed.
const HELD: (&str, u64) = ("order-a", 10);
/// Events whose first attempt stalls past the timeout.
const STALLED: [(&str, u64); 3] = [("order-a", 3), ("order-c", 8), ("order-a", 13)];

// ---------------------------------------------------------------------------------------------
// The receiver

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Seen {
    stream: String,
    version: u64,
    position: u64,
    id: String,
    event_type: String,
    body: serde_json::Value,
    /// The status answered in time; 0 when the answer was held or stalled past the timeout.
    status: u16,
    /// 0 before the kill, 1 after the restart.
    epoch: u32,
}

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    /// Requests that were malformed or badly signed, with the reason.
    bad: Vec<String>,
    attempts: HashMap<String, u32>,
    epoch: u32,
    held_arrived: bool,
    release_held: bool,
}

type Shared = Arc<(Mutex<State>, Condvar)>;

/// What to do with one request.
enum Answer {
    Status(u16),
    Stall,
    Hold,
}

struct Receiver {
    port: u16,
    shared: Shared,
    accept: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Receiver {
    fn new() -> Receiver {
        let mut receiver =
            Receiver { port: server_support::daemon::free_port(), shared: Shared::default(), accept: None };
        receiver.open();
        receiver
    }

    /// Listens on the receiver's port (again).
    fn open(&mut self) {
        assert!(self.accept.is_none());
        let deadline = Instant::now() + PATIENCE;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(listener) => break listener,
                Err(err) => {
                    assert!(Instant::now() < deadline, "cannot listen on {} again: {err}", self.port);
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, shared) = (Arc::clone(&stop), Arc::clone(&self.shared));
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((connection, _)) => {
                        let shared = Arc::clone(&shared);
                        std::thread::spawn(move || serve(connection, &shared));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            // The listener closes here: connections are refused until `open`.
        });
        self.accept = Some((stop, thread));
    }

    /// Stops listening (requests already accepted are still answered).
    fn close(&mut self) {
        if let Some((stop, thread)) = self.accept.take() {
            stop.store(true, Ordering::Release);
            thread.join().expect("accept thread");
        }
    }

    /// Waits (at most PATIENCE) until `done` holds for the receiver's state.
    fn wait_until(&self, what: &str, done: impl Fn(&State) -> bool) {
        let (lock, changed) = &*self.shared;
        let deadline = Instant::now() + PATIENCE;
        let mut state = lock.lock().unwrap();
        while !done(&state) {
            let now = Instant::now();
            assert!(now < deadline, "gave up waiting for {what}; seen: {:#?}", summary(&state.seen));
            state = changed.wait_timeout(state, (deadline - now).min(Duration::from_millis(100))).unwrap().0;
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.0.lock().unwrap()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        {
            // After a failed assertion the lock may be poisoned: release the held thread anyway.
            let mut state = self.shared.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            state.release_held = true;
        }
        self.shared.1.notify_all();
        self.close();
    }
}

fn summary(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .map(|s| format!("{}@{} p{} -> {} (epoch {})", s.stream, s.version, s.position, s.status, s.epoch))
        .collect()
}

/// Reads one request, checks it, records it and answers it.
fn serve(mut connection: TcpStream, shared: &Shared) {
    let _ = connection.set_nonblocking(false);
    let _ = connection.set_read_timeout(Some(Duration::from_secs(10)));
    let request = match read_request(&mut connection) {
        Ok(request) => request,
        Err(reason) => {
            shared.0.lock().unwrap().bad.push(reason);
            shared.1.notify_all();
            return;
        }
    };
    let answer = {
        let mut state = shared.0.lock().unwrap();
        let answer = match check(&request) {
            Err(reason) => {
                state.bad.push(reason);
                Answer::Status(400)
            }
            Ok(body) => {
                let id = body["id"].as_str().unwrap_or_default().to_string();
                let attempt = {
                    let n = state.attempts.entry(id.clone()).or_insert(0);
                    *n += 1;
                    *n
                };
                let stream = body["stream"].as_str().unwrap_or_default().to_string();
                let version = body["version"].as_u64().unwrap_or(0);
                let key = (stream.as_str(), version);
                let answer = if key == POISON {
                    Answer::Status(500)
                } else if key == HELD && state.epoch == 0 {
                    state.held_arrived = true;
                    Answer::Hold
                } else if attempt == 1 && STALLED.contains(&key) {
                    Answer::Stall
                } else if attempt == 1 && version % 4 == 2 {
                    Answer::Status(500)
                } else {
                    Answer::Status(204)
                };
                let status = match answer {
                    Answer::Status(status) => status,
                    Answer::Stall | Answer::Hold => 0,
                };
                let epoch = state.epoch;
                state.seen.push(Seen {
                    position: body["position"].as_u64().unwrap_or(0),
                    event_type: body["type"].as_str().unwrap_or_default().to_string(),
                    stream,
                    version,
                    id,
                    body,
                    status,
                    epoch,
                });
                answer
            }
        };
        shared.1.notify_all();
        answer
    };
    let status = match answer {
        Answer::Status(status) => status,
        Answer::Stall => {
            std::thread::sleep(STALL);
            204
        }
        Answer::Hold => {
            let (lock, changed) = &**shared;
            let mut state = lock.lock().unwrap();
            while !state.release_held {
                state = changed.wait_timeout(state, Duration::from_millis(100)).unwrap().0;
            }
            return; // the daemon is gone; nothing to answer
        }
    };
    let _ = connection
        .write_all(format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").as_bytes());
}

struct Request {
    request_line: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// A test's minimal HTTP/1.1 request reader (Content-Length bodies only, bounded).
fn read_request(connection: &mut TcpStream) -> Result<Request, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if buf.len() > 64 * 1024 {
            return Err("request head over 64 KiB".into());
        }
        let n = connection.read(&mut chunk).map_err(|e| format!("reading the head: {e}"))?;
        if n == 0 {
            return Err("connection closed before the head ended".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).map_err(|_| "head not UTF-8".to_string())?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .ok_or("no content-length")?
        .parse()
        .map_err(|_| "bad content-length".to_string())?;
    if length > 1024 * 1024 {
        return Err(format!("body of {length} bytes"));
    }
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = connection.read(&mut chunk).map_err(|e| format!("reading the body: {e}"))?;
        if n == 0 {
            return Err("connection closed inside the body".into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(Request { request_line, headers, body })
}

/// The request's JSON body, once its method, path, headers and signature are right.
fn check(request: &Request) -> Result<serde_json::Value, String> {
    if request.request_line != "POST /hook?source=logbook HTTP/1.1" {
        return Err(format!("request line '{}'", request.request_line));
    }
    if request.headers.get("content-type").map(String::as_str) != Some("application/json") {
        return Err(format!("content-type {:?}", request.headers.get("content-type")));
    }
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&request.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let signature = request.headers.get("x-logbook-signature").cloned().unwrap_or_default();
    if signature != expected {
        return Err(format!("signature '{signature}', expected '{expected}'"));
    }
    let body: serde_json::Value = serde_json::from_slice(&request.body).map_err(|e| format!("body not JSON: {e}"))?;
    if request.headers.get("x-logbook-event-id").map(String::as_str) != body["id"].as_str() {
        return Err(format!("event id header {:?} vs body {}", request.headers.get("x-logbook-event-id"), body["id"]));
    }
    Ok(body)
}

// ---------------------------------------------------------------------------------------------
// The daemon

fn spawn_daemon(config: &Path, addr: SocketAddr) -> Child {
    let log =
        std::fs::OpenOptions::new().create(true).append(true).open(config.with_extension("log")).expect("log file");
    server_support::daemon::spawn_serve([std::ffi::OsStr::new("--config"), config.as_os_str()], addr, Stdio::from(log))
}

/// One HTTP/1.0 GET: the whole response.
fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to metrics");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// What the test appended that the webhook must deliver: (stream, version) -> position.
type Expected = HashMap<(String, u64), u64>;

/// Appends versions `versions` to each stream (interleaved), and a cart event (outside the
/// filter) after each round.
fn append_round(con: &mut redis::Connection, versions: std::ops::RangeInclusive<u64>, expected: &mut Expected) {
    for version in versions {
        for stream in STREAMS {
            let key = (stream, version);
            let event_type = if key == POISON { "POISON" } else { "ITEM_ADDED" };
            let data: Vec<u8> = if key == ("order-c", 2) {
                vec![0xff, 0x00, b'b', b'i', b'n'] // not JSON: goes out base64
            } else {
                format!("{{\"stream\":\"{stream}\",\"version\":{version}}}").into_bytes()
            };
            let (v, position): (u64, u64) = redis::cmd("APPEND")
                .arg(stream)
                .arg(event_type)
                .arg(data)
                .arg("EXPECTED")
                .arg(version - 1)
                .query(con)
                .unwrap();
            assert_eq!(v, version);
            expected.insert((stream.to_string(), version), position);
        }
        let _: (u64, u64) = redis::cmd("APPEND").arg("cart-x").arg("ITEM_ADDED").arg("{}").query(con).unwrap();
    }
}

/// Every expected event but the poisoned one was answered 2xx at least once.
fn all_delivered(state: &State, expected: &Expected) -> bool {
    expected.keys().filter(|(s, v)| (s.as_str(), *v) != POISON).all(|(stream, version)| {
        state.seen.iter().any(|s| &s.stream == stream && s.version == *version && (200..300).contains(&s.status))
    })
}

#[test]
fn webhooks_deliver_every_event_signed_in_order_through_failures_outages_and_a_kill() {
    let mut receiver = Receiver::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let addr: SocketAddr = format!("127.0.0.1:{}", server_support::daemon::free_port()).parse().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", server_support::daemon::free_port()).parse().unwrap();
    let config = dir.path().join("logbook.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{addr}\"\nmetrics = \"{metrics}\"\ndata = \"{}\"\n\n[[webhooks]]\nname = \"hooks\"\n\
             url = \"http://127.0.0.1:{}/hook?source=logbook\"\nprefix = \"order-\"\nsecret = \"{SECRET}\"\n\
             timeout_ms = {TIMEOUT_MS}\nmax_attempts = {MAX_ATTEMPTS}\nbackoff_initial_ms = {BACKOFF_INITIAL_MS}\n\
             backoff_max_ms = {BACKOFF_MAX_MS}\n",
            dir.path().join("data").display(),
            receiver.port
        ),
    )
    .unwrap();
    let mut daemon = spawn_daemon(&config, addr);
    let mut con = server_support::connect(&format!("redis://{addr}/"));
    let mut expected = Expected::new();

    // 1. Failing and stalling first attempts, and the poisoned event.
    append_round(&mut con, 1..=6, &mut expected);
    receiver.wait_until("the first round", |state| all_delivered(state, &expected));

    // 2. The receiver goes away while events arrive, and comes back.
    receiver.close();
    append_round(&mut con, 7..=12, &mut expected);
    std::thread::sleep(OUTAGE);
    receiver.open();

    // 3. kill -9 while the HELD event's request waits for its answer.
    receiver.wait_until("the held request", |state| state.held_arrived);
    daemon.kill().expect("SIGKILL");
    daemon.wait().expect("reap");
    let held_position = expected[&(HELD.0.to_string(), HELD.1)];
    {
        let mut state = receiver.state();
        state.release_held = true;
        state.epoch = 1;
    }
    receiver.shared.1.notify_all();

    // 4. Restart on the same directory; more events.
    let mut daemon = spawn_daemon(&config, addr);
    let mut con = server_support::connect(&format!("redis://{addr}/"));
    append_round(&mut con, 13..=15, &mut expected);
    receiver.wait_until("every event", |state| all_delivered(state, &expected));

    let state = receiver.state();
    assert!(state.bad.is_empty(), "bad requests: {:?}", state.bad);
    // Nothing outside the filter.
    assert!(state.seen.iter().all(|s| s.stream.starts_with("order-")), "{:?}", summary(&state.seen));
    // Each request is the event as stored.
    for seen in &state.seen {
        assert_eq!(expected.get(&(seen.stream.clone(), seen.version)), Some(&seen.position), "{seen:?}");
        assert!(seen.body["time"].as_str().unwrap().ends_with('Z'), "{seen:?}");
    }
    let binary = state.seen.iter().find(|s| (s.stream.as_str(), s.version) == ("order-c", 2)).unwrap();
    assert_eq!(
        (binary.body["data"].as_str(), binary.body["data_encoding"].as_str()),
        (Some("/wBiaW4="), Some("base64"))
    );
    let json = state.seen.iter().find(|s| (s.stream.as_str(), s.version) == ("order-a", 1)).unwrap();
    assert_eq!(json.body["data"]["version"], 1);
    assert!(json.body["meta"].is_null());

    // Per stream, first deliveries in version order, none missing.
    for stream in STREAMS {
        let mut first_seen: Vec<u64> = Vec::new();
        for seen in state.seen.iter().filter(|s| s.stream == stream) {
            if !first_seen.contains(&seen.version) {
                first_seen.push(seen.version);
            }
        }
        assert_eq!(first_seen, (1..=15).collect::<Vec<u64>>(), "{stream}: {:?}", summary(&state.seen));
    }

    // The poisoned event: exactly max_attempts attempts, all refused.
    let poison: Vec<&Seen> = state.seen.iter().filter(|s| (s.stream.as_str(), s.version) == POISON).collect();
    assert_eq!(poison.len(), MAX_ATTEMPTS as usize, "{:?}", summary(&state.seen));
    assert!(poison.iter().all(|s| s.status == 500 && s.event_type == "POISON"));

    // After the restart nothing acknowledged before the kill came again: every request of
    // epoch 1 is for the held event (never answered, so never acknowledged) or a later one.
    let after: Vec<&Seen> = state.seen.iter().filter(|s| s.epoch == 1).collect();
    assert!(after.iter().all(|s| s.position >= held_position), "{:?}", summary(&state.seen));
    assert!(
        after.iter().any(|s| s.position == held_position && (200..300).contains(&s.status)),
        "the held event came again"
    );
    let failures_after_restart = after.iter().filter(|s| !(200..300).contains(&s.status)).count() as i64;
    assert!(failures_after_restart > 0, "round 3 has failing first attempts");
    let poison_id = poison[0].id.clone();
    drop(state);

    // The dead letter, read back by the admin (no auth configured: everyone is).
    let letters = events(redis::cmd("READ").arg("$dead-letter-hooks").query(&mut con).unwrap());
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(field_str(&letters[0], "type"), "WEBHOOK_DEAD_LETTER");
    let letter: serde_json::Value = serde_json::from_str(&field_str(&letters[0], "data")).unwrap();
    assert_eq!(letter["webhook"], "hooks");
    assert_eq!(letter["attempts"], MAX_ATTEMPTS);
    assert_eq!(letter["last_error"], "HTTP status 500");
    assert_eq!(
        (letter["event"]["id"].as_str(), letter["event"]["stream"].as_str()),
        (Some(poison_id.as_str()), Some("order-b"))
    );
    assert_eq!(letter["event"]["version"], 3);

    // GROUP INFO shows the webhook's group: its failures since the restart, its checkpoint.
    // The last 2xx is acknowledged just after the receiver answered it: wait for that.
    let last = expected.values().max().copied().unwrap();
    let deadline = Instant::now() + PATIENCE;
    let info = loop {
        let info = redis::cmd("GROUP").arg("INFO").arg("$webhook-hooks").query::<redis::Value>(&mut con).unwrap();
        if field_int(&info, "checkpoint") as u64 >= last {
            break info;
        }
        assert!(Instant::now() < deadline, "the last delivery was never acknowledged: {info:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let keys: Vec<String> = fields(&info).into_iter().map(|(k, _)| k).collect();
    assert!(keys.contains(&"lag".to_string()), "{keys:?}");
    assert_eq!(field_int(&info, "failures"), failures_after_restart);
    // /metrics counts the same since the restart (the dead letter was before it).
    let text = http_get(metrics, "/metrics");
    let series =
        |outcome: &str| format!("logbook_webhook_deliveries_total{{webhook=\"hooks\",outcome=\"{outcome}\"}} ");
    let value = |outcome: &str| -> i64 {
        let line = text.lines().find(|l| l.starts_with(&series(outcome))).unwrap_or_else(|| panic!("{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value("failed"), failures_after_restart);
    assert_eq!(value("dead_lettered"), 0);
    assert!(value("delivered") > 0);
    // A tenant or anyone else cannot use `$` group names for anything else.
    let refused = redis::cmd("GROUP").arg("DELETE").arg("$webhook-hooks").query::<redis::Value>(&mut con);
    assert!(refused.is_err(), "{refused:?}");

    // 5. A worker in backoff does not hold up SIGTERM: the receiver is gone for good.
    receiver.close();
    let _: (u64, u64) = redis::cmd("APPEND").arg("order-a").arg("ITEM_ADDED").arg("{}").query(&mut con).unwrap();
    drop(con);
    std::thread::sleep(Duration::from_millis(BACKOFF_INITIAL_MS));
    let sent = Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = daemon.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the daemon did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
}

/// A tenant's events leave by their stored name (`acme:order-1`), filtered by prefix and type;
/// a webhook's group and dead letters are the admin's to see, not a tenant's.
#[test]
fn tenant_events_go_out_by_stored_name_and_webhook_state_is_the_admins() {
    use logbook_server::{hash_token_hex, AdminConfig, Config, TenantConfig, WebhookConfig};
    use server_support::{error_text, TestServer, ACME_TOKEN, ADMIN_TOKEN, GLOBEX_TOKEN};

    let receiver = Receiver::new();
    let mut hook =
        WebhookConfig::new("acme-shipping", format!("http://127.0.0.1:{}/hook?source=logbook", receiver.port), SECRET);
    hook.prefix = Some("acme:order-".into());
    hook.types = vec!["ORDER_SHIPPED".into()];
    hook.backoff_initial_ms = 20;
    let server = TestServer::start_with(Config {
        admin: Some(AdminConfig { token_sha256: hash_token_hex(ADMIN_TOKEN.as_bytes()) }),
        tenants: vec![
            TenantConfig { name: "acme".into(), token_sha256: hash_token_hex(ACME_TOKEN.as_bytes()) },
            TenantConfig { name: "globex".into(), token_sha256: hash_token_hex(GLOBEX_TOKEN.as_bytes()) },
        ],
        webhooks: vec![hook],
        ..Config::default()
    });
    let mut acme = server_support::connect(&server.url_auth("acme", ACME_TOKEN, false));
    let mut globex = server_support::connect(&server.url_auth("globex", GLOBEX_TOKEN, false));
    let mut admin = server_support::connect(&server.url_auth("admin", ADMIN_TOKEN, false));
    let append = |con: &mut redis::Connection, stream: &str, event_type: &str| {
        let _: (u64, u64) = redis::cmd("APPEND").arg(stream).arg(event_type).arg("{}").query(con).unwrap();
    };
    append(&mut acme, "order-1", "ORDER_PLACED");
    append(&mut acme, "order-1", "ORDER_SHIPPED");
    append(&mut globex, "order-1", "ORDER_SHIPPED");
    append(&mut acme, "cart-1", "ORDER_SHIPPED");
    // The last one the filter takes: once it is delivered, everything before it was considered.
    append(&mut acme, "order-2", "ORDER_SHIPPED");
    receiver.wait_until("acme:order-2", |state| {
        state.seen.iter().any(|s| s.stream == "acme:order-2" && (200..300).contains(&s.status))
    });
    let state = receiver.state();
    assert!(state.bad.is_empty(), "{:?}", state.bad);
    let mut delivered: Vec<(String, u64)> = state.seen.iter().map(|s| (s.stream.clone(), s.version)).collect();
    delivered.dedup();
    assert_eq!(
        delivered,
        [("acme:order-1".to_string(), 2), ("acme:order-2".to_string(), 1)],
        "{:?}",
        summary(&state.seen)
    );
    drop(state);

    let info = redis::cmd("GROUP").arg("INFO").arg("$webhook-acme-shipping").query::<redis::Value>(&mut admin).unwrap();
    assert_eq!(field_str(&info, "name"), "$webhook-acme-shipping");
    assert_eq!(field_str(&info, "prefix"), "acme:order-");
    let letters = events(redis::cmd("READ").arg("$dead-letter-acme-shipping").query(&mut admin).unwrap());
    assert!(letters.is_empty());
    let err =
        error_text(redis::cmd("GROUP").arg("INFO").arg("$webhook-acme-shipping").query::<redis::Value>(&mut acme));
    assert!(err.contains("starts with '$'"), "{err}");
    let err = error_text(redis::cmd("READ").arg("$dead-letter-acme-shipping").query::<redis::Value>(&mut acme));
    assert!(err.contains("'$'"), "{err}");
    let err = error_text(redis::cmd("READ").arg("$group-$webhook-acme-shipping").query::<redis::Value>(&mut admin));
    assert!(err.contains("'$'"), "other system streams stay unreadable: {err}");
}
