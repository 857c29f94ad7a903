//! The web console's HTTP side without a browser: its pages and headers, the JSON API's
//! tenancy, error shapes and bounds, and the live tail's own connection limit and idle timeout
//! (docs/console.md). tests/console_browser.rs loads the pages in headless Chromium.

mod server_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use logbook_server::{Config, Limits};
use server_support::{http_get, http_raw, TestServer, ACME_TOKEN, ADMIN_TOKEN, GLOBEX_TOKEN};

fn with_console(config: Config) -> TestServer {
    TestServer::start_with(Config { http: Some("127.0.0.1:0".into()), ..config })
}

fn tenants(limits: Limits) -> Config {
    Config { limits, ..server_support::tenants_config() }
}

fn order(server: &TestServer, tenant: &str, token: &str, id: &str) {
    let mut con = server_support::connect(&server.url_auth(tenant, token, false));
    let _: redis::Value = redis::cmd("ORDER")
        .arg(id)
        .arg("CREATE_CART")
        .arg(r#"{"customer_id":"c-1","currency":"EUR"}"#)
        .query(&mut con)
        .expect("CREATE_CART");
}

#[test]
fn one_listener_serves_the_console_its_scripts_metrics_and_health() {
    let server = with_console(Config::default());
    let http = server.http();
    let page = http_get(http, "/", None);
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(csp.contains("script-src 'self'") && csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert!(page.body.contains(r#"<script src="/console.js" defer></script>"#));
    assert!(page.body.contains(r#"<script src="/pages/order.js" defer></script>"#), "the order pages are registered");
    assert!(page.body.contains(r#"<script src="/pages/funnel.js" defer></script>"#));
    assert!(!page.body.contains("<script>"), "no inline script");
    for (path, kind) in
        [("/console.js", "text/javascript"), ("/console.css", "text/css"), ("/pages/order.js", "text/javascript")]
    {
        let asset = http_get(http, path, None);
        assert_eq!(asset.status, 200, "{path}");
        assert!(asset.header("content-type").unwrap().starts_with(kind), "{path}");
    }
    assert!(http_get(http, "/pages/order.js", None).body.contains("Console.register"));
    assert_eq!(http_get(http, "/pages/nothing.js", None).status, 404);
    assert_eq!(http_get(http, "/nothing", None).status, 404);
    let metrics = http_get(http, "/metrics", None);
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("logbook_head_position"), "{}", metrics.body);
    assert_eq!(http_get(http, "/healthz", None).body, "ok\n");
    assert_eq!(http_get(http, "/readyz", None).body, "ready\n");
    // Without tenants everyone is the open identity (and the listener must be loopback).
    let who = http_get(http, "/api/whoami", None).json();
    assert_eq!(who["identity"], "open");
    assert_eq!(who["pages"][0]["id"], "order");
    let open = Config { http: Some("0.0.0.0:0".into()), ..Config::default() };
    assert!(open.validate().unwrap_err().contains("refusing to listen on http address"));
}

#[test]
fn a_tenant_sees_only_its_own_orders_and_streams() {
    let server = with_console(tenants(Limits::default()));
    let http = server.http();
    order(&server, "acme", ACME_TOKEN, "a1b2c3");
    order(&server, "globex", GLOBEX_TOKEN, "g7h8i9");

    let none = http_get(http, "/api/whoami", None);
    assert_eq!(none.status, 401);
    assert_eq!(none.json()["error"]["code"], "NOAUTH");
    let wrong = http_get(http, "/api/whoami", Some("not-a-token"));
    assert_eq!((wrong.status, wrong.json()["error"]["code"].as_str()), (401, Some("INVALID_TOKEN")));
    assert_eq!(http_get(http, "/api/order?id=g7", None).status, 401, "no data without a token");
    let who = http_get(http, "/api/whoami", Some(ACME_TOKEN)).json();
    assert_eq!((who["identity"].as_str(), who["name"].as_str()), (Some("tenant"), Some("acme")));

    let own = http_get(http, "/api/order?id=a1", Some(ACME_TOKEN));
    assert_eq!(own.status, 200, "{}", own.body);
    let own = own.json();
    assert_eq!((own["order_id"].as_str(), own["stream"].as_str()), (Some("a1b2c3"), Some("order-a1b2c3")));
    assert_eq!(own["status"]["state"], "CART_CREATED");
    assert!(!own.to_string().contains("acme:"), "the namespace is never shown: {own}");
    for query in ["id=g7h8i9", "id=g7", "id=g", "id=globex:order-g7h8i9", "id=order-g7h8i9"] {
        let other = http_get(http, &format!("/api/order?{query}"), Some(ACME_TOKEN));
        assert_eq!(other.status, 404, "{query}: {}", other.body);
        assert_eq!(other.json()["error"]["code"], "NO_SUCH_ORDER");
    }
    let streams = http_get(http, "/api/streams", Some(ACME_TOKEN)).json();
    let names: Vec<&str> = streams["streams"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["order-a1b2c3"]);
    let foreign = http_get(http, "/api/stream?name=order-g7h8i9", Some(ACME_TOKEN)).json();
    assert_eq!((foreign["version"].as_u64(), foreign["events"].as_array().map(Vec::len)), (Some(0), Some(0)));
    let read = http_get(http, "/api/stream?name=order-a1b2c3", Some(ACME_TOKEN)).json();
    assert_eq!(read["events"][0]["type"], "CART_CREATED");
    assert_eq!(read["events"][0]["stream"], "order-a1b2c3");
    assert_eq!(read["events"][0]["metadata"]["actor_id"], "acme");
    let health = http_get(http, "/api/health", Some(ACME_TOKEN));
    assert_eq!((health.status, health.json()["error"]["code"].as_str()), (403, Some("NOPERM")));

    // The admin sees everything, by stored names.
    let all = http_get(http, "/api/streams", Some(ADMIN_TOKEN)).json();
    let names: Vec<&str> = all["streams"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["acme:order-a1b2c3", "globex:order-g7h8i9"]);
    assert_eq!(http_get(http, "/api/order?id=globex:order-g7", Some(ADMIN_TOKEN)).json()["order_id"], "g7h8i9");
    let health = http_get(http, "/api/health", Some(ADMIN_TOKEN)).json();
    assert_eq!(health["head_position"], 2);
    assert!(health["fsync"]["total"].as_u64().unwrap() >= 1);
    let funnel = http_get(http, "/api/funnel?days=7", Some(ADMIN_TOKEN)).json();
    assert_eq!(funnel["funnel"]["stages"][0]["orders"], 2, "the admin's funnel counts every tenant's carts");
    let funnel = http_get(http, "/api/funnel?days=7", Some(GLOBEX_TOKEN)).json();
    assert_eq!(funnel["funnel"]["stages"][0]["orders"], 1);
    assert_eq!(funnel["conversion"][0]["retailer_id"], "globex");
}

#[test]
fn bad_requests_get_a_clear_json_error_without_server_paths() {
    let server = with_console(Config::default());
    let http = server.http();
    let data_dir = server.dir.path().display().to_string();
    let cases: Vec<(String, u16, &str, &str)> = vec![
        ("/api/streams?count=0".into(), 400, "BAD_REQUEST", "count must be an integer from 1 to 1000"),
        ("/api/streams?count=abc".into(), 400, "BAD_REQUEST", "count must be an integer from 1 to 1000"),
        ("/api/stream".into(), 400, "BAD_REQUEST", "name (the stream) is required"),
        ("/api/stream?name=x&direction=sideways".into(), 400, "BAD_REQUEST", "direction must be forward or backward"),
        ("/api/order".into(), 400, "BAD_REQUEST", "id (an order id"),
        ("/api/order?id=nothing".into(), 404, "NO_SUCH_ORDER", "no such order 'nothing'"),
        ("/api/funnel?days=400".into(), 400, "BAD_REQUEST", "days must be an integer from 1 to 366"),
        ("/api/nothing".into(), 404, "NOT_FOUND", "no such API route"),
        ("/api//api/whoami".into(), 404, "NOT_FOUND", "no such API route"),
        ("/api/streams?a=%zz".into(), 400, "BAD_REQUEST", "bad %-escape"),
        (format!("/api/stream?name={}", "x".repeat(1025)), 400, "BAD_REQUEST", "at most 1024 allowed"),
        (format!("/api/streams?{}", "a=1&".repeat(40)), 400, "BAD_REQUEST", "at most 32 query parameters"),
        (format!("/api/streams?prefix={}", "x".repeat(5000)), 414, "URI_TOO_LONG", "over 4096 bytes"),
    ];
    for (path, status, code, message) in cases {
        let reply = http_get(http, &path, None);
        assert_eq!(reply.status, status, "{path}: {}", reply.body);
        let body = reply.json();
        assert_eq!(body["error"]["code"], code, "{path}");
        assert!(body["error"]["message"].as_str().unwrap().contains(message), "{path}: {body}");
        assert!(!reply.body.contains(&data_dir), "{path}: a server path in {}", reply.body);
    }
    let post = http_raw(
        http,
        format!("POST /api/streams HTTP/1.1\r\nHost: {http}\r\nContent-Length: 2\r\n\r\n{{}}").as_bytes(),
    );
    assert_eq!((post.status, post.json()["error"]["code"].as_str()), (405, Some("METHOD_NOT_ALLOWED")));
    let body = http_raw(
        http,
        format!("GET /api/streams HTTP/1.1\r\nHost: {http}\r\nContent-Length: 5\r\n\r\nhello").as_bytes(),
    );
    assert_eq!((body.status, body.json()["error"]["code"].as_str()), (413, Some("BODY_NOT_ALLOWED")));
    // A request head over 16 KiB is refused by the HTTP layer before any of it is used.
    let huge = format!("GET /api/streams HTTP/1.1\r\nHost: {http}\r\nX-Filler: {}\r\n\r\n", "y".repeat(20 * 1024));
    let reply = http_raw(http, huge.as_bytes());
    assert!(reply.status == 431 || reply.status == 0, "status {}", reply.status);
}

/// Opens a live tail and returns the socket once the response head has arrived.
fn open_tail(http: SocketAddr, query: &str, token: Option<&str>, last_id: Option<u64>) -> (TcpStream, String) {
    let mut s = TcpStream::connect(http).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let resume = last_id.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
    write!(s, "GET /api/tail?{query} HTTP/1.1\r\nHost: {http}\r\n{auth}{resume}\r\n").unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).expect("the response head"), 1, "closed before the head");
        head.push(byte[0]);
    }
    (s, String::from_utf8_lossy(&head).into_owned())
}

/// Reads the tail until `wanted` appears in what it sent.
fn read_until(s: &mut TcpStream, wanted: &str) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(wanted) {
        let n = s
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("waiting for {wanted}: {e}; got {}", String::from_utf8_lossy(&seen)));
        assert!(n > 0, "the tail ended before {wanted}: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[test]
fn live_tails_filter_like_readall_and_have_their_own_limit_and_idle_timeout() {
    let limits = Limits { max_tail_connections: 1, tail_idle_timeout_secs: 1, ..Limits::default() };
    let server = with_console(tenants(limits));
    let http = server.http();
    let (mut tail, head) = open_tail(http, "type=SEEN", Some(ACME_TOKEN), None);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/event-stream"), "{head}");
    // The one tail slot is taken: another tail is refused, while the API still answers.
    let refused = http_get(http, "/api/tail", Some(ADMIN_TOKEN));
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.json()["error"]["code"], "TOO_MANY_TAILS");
    assert_eq!(http_get(http, "/api/whoami", Some(ADMIN_TOKEN)).status, 200);

    let mut globex = server_support::connect(&server.url_auth("globex", GLOBEX_TOKEN, false));
    let mut acme = server_support::connect(&server.url_auth("acme", ACME_TOKEN, false));
    let _: redis::Value =
        redis::cmd("APPEND").arg("s-1").arg("SEEN").arg("{\"who\":\"globex\"}").query(&mut globex).unwrap();
    let _: redis::Value = redis::cmd("APPEND").arg("s-1").arg("OTHER").arg("{}").query(&mut acme).unwrap();
    let _: redis::Value =
        redis::cmd("APPEND").arg("s-1").arg("SEEN").arg("{\"who\":\"acme\"}").query(&mut acme).unwrap();
    let sent = read_until(&mut tail, "\"who\":\"acme\"");
    assert!(sent.contains("id: 3\nevent: event\ndata: {"), "{sent}");
    assert!(sent.contains("\"stream\":\"s-1\""), "the namespace is not shown: {sent}");
    assert!(!sent.contains("globex") && !sent.contains("OTHER"), "another tenant's event, or a filtered type: {sent}");
    // With nothing more to send, the tail ends after its idle timeout and gives its slot back.
    let mut rest = Vec::new();
    tail.read_to_end(&mut rest).expect("the idle tail ends (the read timeout is far longer)");
    let (mut again, head) = open_tail(http, "", Some(ADMIN_TOKEN), Some(1));
    assert!(head.starts_with("HTTP/1.1 200"), "the slot came back: {head}");
    // Last-Event-ID resumes after the last event received: the admin sees stored names.
    let sent = read_until(&mut again, "id: 3\n");
    assert!(sent.contains("id: 2\n") && !sent.contains("\"position\":1,"), "{sent}");
    assert!(sent.contains("\"stream\":\"acme:s-1\""), "{sent}");
}

/// Review 17, 1: an order's timeline is paged like `/api/stream`: entries stop at
/// `limits.max_reply_bytes` (at least one) and `next` is where the page continues.
#[test]
fn an_order_reply_stops_at_max_reply_bytes_and_next_continues_it() {
    let limits = Limits { max_reply_bytes: 100_000, ..Limits::default() };
    let server = with_console(Config { limits, ..Config::default() });
    let http = server.http();
    let mut con = server_support::connect(&server.url());
    let _: redis::Value = redis::cmd("ORDER")
        .arg("big1")
        .arg("CREATE_CART")
        .arg(r#"{"customer_id":"c-1","currency":"EUR","retailer_id":"r-1"}"#)
        .query(&mut con)
        .expect("CREATE_CART");
    let pad = format!("{{\"pad\":\"{}\"}}", "x".repeat(40_000));
    for _ in 0..10 {
        let _: redis::Value = redis::cmd("APPEND").arg("order-big1").arg("NOTE").arg(&pad).query(&mut con).unwrap();
    }
    let mut versions = Vec::new();
    let mut from = 1;
    for _ in 0..20 {
        let reply = http_get(http, &format!("/api/order?id=big1&from={from}"), None);
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(reply.body.len() < 100_000 + 45_000, "one reply of {} bytes", reply.body.len());
        let page = reply.json();
        assert_eq!(page["status"]["state"], "CART_CREATED", "the status covers every event");
        let entries = page["entries"].as_array().unwrap();
        assert!(!entries.is_empty());
        versions.extend(entries.iter().map(|e| e["version"].as_u64().unwrap()));
        match page["next"].as_u64() {
            Some(next) => from = next,
            None => {
                assert!(page["next"].is_null(), "{}", page["next"]);
                break;
            }
        }
    }
    assert_eq!(versions, (1..=11).collect::<Vec<u64>>(), "every event once, in order, over several pages");
    assert!(http_get(http, "/api/order?id=big1", None).json()["entries"].as_array().unwrap().len() < 11);
    let bad = http_get(http, "/api/order?id=big1&from=0", None);
    assert_eq!((bad.status, bad.json()["error"]["code"].as_str()), (400, Some("BAD_REQUEST")));
}

/// A console page whose API blocks until released, to fill the store-work queue.
#[derive(Default)]
struct Blocker {
    state: std::sync::Mutex<(usize, bool)>,
    changed: std::sync::Condvar,
}

impl Blocker {
    fn wait_started(&self, n: usize) {
        let mut state = self.state.lock().unwrap();
        while state.0 < n {
            state = self.changed.wait(state).unwrap();
        }
    }

    fn release(&self) {
        self.state.lock().unwrap().1 = true;
        self.changed.notify_all();
    }

    fn started(&self) -> usize {
        self.state.lock().unwrap().0
    }
}

struct BlockerPage(std::sync::Arc<Blocker>);

impl logbook_server::ConsoleExtension for BlockerPage {
    fn pages(&self) -> &'static [logbook_server::ConsolePage] {
        &[logbook_server::ConsolePage { id: "block", title: "Block", script: "" }]
    }

    fn api(
        &self,
        _store: &logbook::Store,
        _namespace: Option<&logbook::Namespace>,
        _page: &str,
        _query: &logbook_server::ApiQuery,
        _limits: &logbook_server::ApiLimits,
    ) -> Result<serde_json::Value, logbook_server::ApiError> {
        let mut state = self.0.state.lock().unwrap();
        state.0 += 1;
        self.0.changed.notify_all();
        while !state.1 {
            state = self.0.changed.wait(state).unwrap();
        }
        Ok(serde_json::json!({ "done": true }))
    }
}

fn metric(http: SocketAddr, name: &str) -> u64 {
    let text = http_get(http, "/metrics", None).body;
    let line = text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name}: {text}"));
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

fn send_get(http: SocketAddr, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {http}\r\n\r\n").unwrap();
    s
}

/// Review 17, 2: store work waits in a bounded queue (16 per listener: 503 `BUSY` beyond it),
/// and work whose connection was dropped before it started is skipped.
#[test]
fn a_full_work_queue_refuses_at_once_and_dropped_requests_do_no_store_work() {
    let blocker = std::sync::Arc::new(Blocker::default());
    let extensions = logbook_server::Extensions::new()
        .with_console(std::sync::Arc::new(BlockerPage(std::sync::Arc::clone(&blocker))))
        .unwrap();
    let limits = Limits { request_timeout_secs: 2, ..Limits::default() };
    let server = server_support::TestServer::start_with_extensions(
        Config { http: Some("127.0.0.1:0".into()), limits, ..Config::default() },
        extensions,
    );
    let http = server.http();
    // Four run (the blocking threads), twelve wait: the queue of 16 is full.
    let mut held: Vec<TcpStream> = (0..4).map(|_| send_get(http, "/api/block")).collect();
    blocker.wait_started(4);
    held.extend((0..12).map(|_| send_get(http, "/api/block")));
    while metric(http, "logbook_console_api_requests") < 16 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let busy = http_get(http, "/api/streams", None);
    assert_eq!(busy.status, 503, "{}", busy.body);
    assert_eq!(busy.json()["error"]["code"], "BUSY");
    assert_eq!(http_get(http, "/api/whoami", None).status, 200, "requests without store work still answer");
    // The queued requests reach their deadline (2 s): their connections are dropped...
    for s in &mut held[4..] {
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    }
    // ...and once the threads are free, their work is skipped: only the first four ran.
    blocker.release();
    for s in &mut held[..4] {
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    }
    while metric(http, "logbook_console_api_requests") > 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(blocker.started(), 4, "work of dropped requests was done");
    assert_eq!(http_get(http, "/api/block", None).json()["done"], true);
}

/// Review 17, 3: connections that never send a request head cannot lock everyone out: at the
/// cap (64) the oldest of them is closed to make room.
#[test]
fn idle_connections_without_a_request_make_room_for_health_and_the_api() {
    let server = with_console(tenants(Limits::default()));
    let http = server.http();
    let idle: Vec<TcpStream> = (0..64).map(|_| TcpStream::connect(http).unwrap()).collect();
    let health = http_get(http, "/healthz", None);
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    for _ in 0..3 {
        assert_eq!(http_get(http, "/api/whoami", Some(ACME_TOKEN)).status, 200);
    }
    drop(idle);
}

/// Connections whose reply to a wrong token is held make room likewise: failed guesses
/// cannot fill the cap either.
#[test]
fn connections_held_for_a_failed_token_make_room_too() {
    let limits = Limits { auth_failure_delay_ms: 60_000, auth_failure_delay_max_ms: 60_000, ..Limits::default() };
    let server = with_console(tenants(limits));
    let http = server.http();
    let guessing: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut s = TcpStream::connect(http).unwrap();
            write!(s, "GET /api/whoami HTTP/1.1\r\nHost: {http}\r\nAuthorization: Bearer guess\r\n\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500)); // let every guess reach its held reply
    assert_eq!(http_get(http, "/healthz", None).status, 200);
    assert_eq!(http_get(http, "/api/whoami", Some(ACME_TOKEN)).status, 200);
    drop(guessing);
}

/// Review 17, 4: failed tokens slow the failures from that address, not the valid tokens of
/// the other users behind the same address (a proxy).
#[test]
fn a_valid_token_is_not_delayed_by_failures_from_its_address() {
    // A failure's delay (60 s) is far beyond the client's read timeout (20 s).
    let limits = Limits { auth_failure_delay_ms: 60_000, auth_failure_delay_max_ms: 60_000, ..Limits::default() };
    let server = with_console(tenants(limits));
    let http = server.http();
    let mut failing = TcpStream::connect(http).unwrap();
    write!(failing, "GET /api/whoami HTTP/1.1\r\nHost: {http}\r\nAuthorization: Bearer wrong\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(300)); // let the failure be recorded first
    for token in [ACME_TOKEN, ADMIN_TOKEN] {
        let ok = http_get(http, "/api/whoami", Some(token));
        assert_eq!(ok.status, 200, "a valid token was held: {}", ok.body);
    }
    drop(failing);
}

/// Review 17, 5: with tenants, the console listener's /metrics is the admin's (like
/// /api/health); the --metrics listener still serves scrapers without a token.
#[test]
fn console_metrics_need_the_admin_token_when_tenants_are_configured() {
    let config = Config { metrics: Some("127.0.0.1:0".into()), ..tenants(Limits::default()) };
    let server = with_console(config);
    let http = server.http();
    let none = http_get(http, "/metrics", None);
    assert_eq!((none.status, none.json()["error"]["code"].as_str()), (401, Some("NOAUTH")));
    let tenant = http_get(http, "/metrics", Some(ACME_TOKEN));
    assert_eq!((tenant.status, tenant.json()["error"]["code"].as_str()), (403, Some("NOPERM")));
    let admin = http_get(http, "/metrics", Some(ADMIN_TOKEN));
    assert_eq!(admin.status, 200);
    assert!(admin.body.contains("logbook_head_position"));
    assert_eq!(http_get(http, "/healthz", None).status, 200, "health stays open");
    let scrape = server.server.as_ref().unwrap().metrics_addr().unwrap();
    let scraped = http_get(scrape, "/metrics", None);
    assert_eq!(scraped.status, 200);
    assert!(scraped.body.contains("logbook_head_position"));
}

/// Review 17, 6: without tenants the console answers only requests that name it by a
/// loopback name (DNS rebinding), and no absolute-form target naming another host.
#[test]
fn the_open_console_refuses_other_host_names() {
    let server = with_console(Config::default());
    let http = server.http();
    let port = http.port();
    let get = |target: &str, host: &str| {
        http_raw(http, format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
    };
    for host in [format!("rebind.attacker.example:{port}"), "evil.example".into(), format!("127.0.0.1:{}", port ^ 1)] {
        let refused = get("/api/whoami", &host);
        assert_eq!(refused.status, 421, "{host}: {}", refused.body);
        assert_eq!(refused.json()["error"]["code"], "MISDIRECTED_REQUEST");
        assert_eq!(get("/", &host).status, 421, "{host}");
        assert_eq!(get("/healthz", &host).status, 200, "{host}: health answers anyone");
    }
    let absolute = get("http://evil.example/api/whoami", &format!("127.0.0.1:{port}"));
    assert_eq!(absolute.status, 421, "{}", absolute.body);
    let no_host = http_raw(http, b"GET /api/whoami HTTP/1.0\r\n\r\n");
    assert_eq!(no_host.status, 421);
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}"), format!("[::1]:{port}"), "localhost".into()]
    {
        let ok = get("/api/whoami", &host);
        assert_eq!(ok.status, 200, "{host}: {}", ok.body);
    }
}

/// Review 17, 7: a tail that ends idle before any event says where it got to, so the
/// reconnect (with that `Last-Event-ID`) delivers an event appended in between.
#[test]
fn an_idle_tail_says_where_it_got_to_so_the_reconnect_misses_nothing() {
    let limits = Limits { tail_idle_timeout_secs: 1, ..Limits::default() };
    let server = with_console(tenants(limits));
    let http = server.http();
    let mut acme = server_support::connect(&server.url_auth("acme", ACME_TOKEN, false));
    let _: redis::Value = redis::cmd("APPEND").arg("other-1").arg("BEFORE").arg("{}").query(&mut acme).unwrap();
    let (mut tail, _) = open_tail(http, "prefix=gap-", Some(ACME_TOKEN), None);
    let mut sent = Vec::new();
    tail.read_to_end(&mut sent).expect("the idle tail ends");
    let sent = String::from_utf8_lossy(&sent).into_owned();
    let last_id: u64 = sent
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap_or_else(|| panic!("no id before the idle end: {sent:?}"))
        .parse()
        .unwrap();
    assert_eq!(last_id, 1, "{sent}");
    let _: redis::Value = redis::cmd("APPEND").arg("gap-1").arg("IN_THE_GAP").arg("{}").query(&mut acme).unwrap();
    let (mut again, _) = open_tail(http, "prefix=gap-", Some(ACME_TOKEN), Some(last_id));
    let sent = read_until(&mut again, "IN_THE_GAP");
    assert!(sent.contains("id: 2\nevent: event\n"), "{sent}");
}

/// Review 17, 9: the default `count` keeps to `limits.max_count`.
#[test]
fn the_default_count_keeps_to_max_count() {
    let limits = Limits { max_count: 3, ..Limits::default() };
    let server = with_console(Config { limits, ..Config::default() });
    let http = server.http();
    let mut con = server_support::connect(&server.url());
    for i in 0..5 {
        let _: redis::Value = redis::cmd("APPEND").arg(format!("s-{i}")).arg("E").arg("{}").query(&mut con).unwrap();
        let _: redis::Value = redis::cmd("APPEND").arg("s-0").arg("E").arg("{}").query(&mut con).unwrap();
    }
    assert_eq!(http_get(http, "/api/streams", None).json()["streams"].as_array().unwrap().len(), 3);
    assert_eq!(http_get(http, "/api/stream?name=s-0", None).json()["events"].as_array().unwrap().len(), 3);
    let favicon = http_get(http, "/favicon.ico", None);
    assert_eq!(favicon.status, 204);
    let not_allowed = http_raw(http, format!("DELETE /x HTTP/1.1\r\nHost: {http}\r\n\r\n").as_bytes());
    assert_eq!(not_allowed.status, 405);
    assert_eq!(not_allowed.header("x-content-type-options"), Some("nosniff"), "errors carry the headers too");
}

/// Review 17, 2: a queued request whose client hung up is skipped when a thread is free, long
/// before its deadline.
#[test]
fn a_queued_request_whose_client_went_does_no_store_work() {
    let blocker = std::sync::Arc::new(Blocker::default());
    let extensions = logbook_server::Extensions::new()
        .with_console(std::sync::Arc::new(BlockerPage(std::sync::Arc::clone(&blocker))))
        .unwrap();
    let server = server_support::TestServer::start_with_extensions(
        Config { http: Some("127.0.0.1:0".into()), ..Config::default() },
        extensions,
    );
    let http = server.http();
    let mut running: Vec<TcpStream> = (0..4).map(|_| send_get(http, "/api/block")).collect();
    blocker.wait_started(4);
    let gone: Vec<TcpStream> = (0..3).map(|_| send_get(http, "/api/block")).collect();
    while metric(http, "logbook_console_api_requests") < 7 {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(gone);
    std::thread::sleep(Duration::from_millis(300)); // let the server see the hang-ups
    blocker.release();
    for s in &mut running {
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    }
    while metric(http, "logbook_console_api_requests") > 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(blocker.started(), 4, "work of requests whose client went was done");
}

#[test]
fn readyz_says_not_ready_once_the_writer_stopped_after_a_storage_error() {
    // After a failed write or fdatasync the writer stops for good (what reached the disk is
    // not known), so every append is refused until a restart: an orchestrator reading /readyz
    // must see that, not "ready".
    use logbook::storage::{Fault, OpKind, SimFileSystem};
    let dir = tempfile::tempdir().unwrap();
    let sim = SimFileSystem::new();
    let options = logbook::Options { fs: std::sync::Arc::new(sim.clone()), ..logbook::Options::default() };
    let store = logbook::Store::open(dir.path(), options).unwrap();
    let config = Config {
        data: dir.path().to_path_buf(),
        listen: "127.0.0.1:0".into(),
        http: Some("127.0.0.1:0".into()),
        ..Config::default()
    };
    let server = logbook_server::Server::start_with_store(store, config).unwrap();
    let http = server.http_addr().unwrap();
    assert_eq!(http_get(http, "/readyz", None).status, 200);
    let client = redis::Client::open(format!("redis://{}/", server.local_addr())).unwrap();
    let mut con = client.get_connection().unwrap();
    let _: redis::Value = redis::cmd("APPEND").arg("order-1").arg("E").arg("{}").query(&mut con).unwrap();
    sim.fail(Fault { kind: OpKind::Sync, nth: sim.count(OpKind::Sync) + 1, torn_at: None });
    let failed: redis::RedisResult<redis::Value> =
        redis::cmd("APPEND").arg("order-1").arg("E").arg("{}").query(&mut con);
    assert!(failed.is_err(), "the fault fired: the append was refused");
    let reply = http_get(http, "/readyz", None);
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(reply.body.contains("writer stopped"), "{}", reply.body);
    assert!(!reply.body.contains(&dir.path().display().to_string()), "no server path: {}", reply.body);
    assert_eq!(http_get(http, "/healthz", None).status, 200, "the process still answers (reads are served)");
    let info: String = redis::cmd("INFO").arg("store").query(&mut con).unwrap();
    assert!(info.contains("writer:stopped"), "{info}");
    drop(con);
    drop(server);
}
