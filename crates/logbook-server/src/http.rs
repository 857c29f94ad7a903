//! The daemon's HTTP side. Two listeners share this code:
//! - `--metrics ADDR` (role [`Role::Metrics`]): Prometheus text at `/metrics` (and `/`),
//!   `/healthz` (the process answers) and `/readyz` (it takes connections: 503 while shutting
//!   down);
//! - `--http ADDR` (role [`Role::Console`]): the same three endpoints, plus the web console
//!   (`/`, its script and style, the extensions' page scripts under `/pages/`) and its JSON API
//!   under `/api/` (`http_api`), behind the same tenants as the RESP port.
//!
//! Built on hyper 1.x (HTTP/1 only) on a small single-threaded tokio runtime of its own, in
//! one thread per listener; store work (reads, scans) runs on at most
//! [`MAX_BLOCKING_THREADS`] blocking threads so a slow one cannot stall the others. Bounds:
//! - at most [`MAX_HTTP_CONNECTIONS`] open connections per listener: at the cap the oldest
//!   connection that has not sent a whole request head (or whose reply to a failed token is
//!   being held) is closed to make room, else the new one is closed at once; live tails have
//!   their own cap (`limits.max_tail_connections`) and give their slot back, so tails cannot
//!   starve page loads and page loads cannot starve tails,
//! - at most [`MAX_QUEUED_API_REQUESTS`] API requests wait for or run store work (503 `BUSY`
//!   beyond it); work whose request was dropped before it started is skipped,
//! - without tenants, the console answers only a loopback `Host` (DNS rebinding); with
//!   tenants, its `/metrics` needs the admin's token,
//! - the request head must arrive within [`HEADER_READ_TIMEOUT`] and fit in
//!   [`MAX_HEAD_BYTES`]; the console refuses a URI over [`MAX_URI_BYTES`] and any body,
//! - a connection is dropped [`CONNECTION_DEADLINE`] after it was accepted (the metrics
//!   listener) or `limits.request_timeout_secs` after (the console: a funnel over a large log
//!   may take longer than a scrape), whatever it is doing, except a live tail, which ends when
//!   it has sent nothing for `limits.tail_idle_timeout_secs`,
//! - one request per connection (no keep-alive); metrics and health answer as HTTP/1.0 like
//!   before.
//!
//! tokio is used here and by the webhook workers (`webhook::post`, a runtime each); the store
//! and the RESP connections do not depend on it.

use std::convert::Infallible;
use std::net::{IpAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Shared;

/// Most HTTP connections open at once, per listener (live tails not counted).
pub(crate) const MAX_HTTP_CONNECTIONS: usize = 64;
/// The request head must arrive within this long of connecting.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// A metrics connection is dropped this long after it was accepted, whatever it is doing.
pub(crate) const CONNECTION_DEADLINE: Duration = Duration::from_secs(5);
/// Largest request head (request line and headers) read; a larger one is refused by hyper.
pub(crate) const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Longest request URI (path and query) the console serves; a longer one gets 414.
pub(crate) const MAX_URI_BYTES: usize = 4096;
/// Threads that run store work for the console's API, at most.
pub(crate) const MAX_BLOCKING_THREADS: usize = 4;
/// Console API requests that may wait for or run store work at once, per listener; one more
/// gets 503 `BUSY` at once instead of queuing.
pub(crate) const MAX_QUEUED_API_REQUESTS: usize = 16;

/// The body of every response: a whole buffer, or the stream of a live tail.
pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// `--metrics`: metrics and health only.
    Metrics,
    /// `--http`: metrics, health, the console and its API.
    Console,
}

/// One listener's state.
pub(crate) struct Site {
    pub shared: Arc<Shared>,
    pub role: Role,
    /// Live tails open (`limits.max_tail_connections`).
    pub tail_slots: Arc<Semaphore>,
    /// API requests queued for or running store work ([`MAX_QUEUED_API_REQUESTS`]).
    pub work_slots: Arc<Semaphore>,
    /// The port the listener is bound to (the open console's Host check).
    pub port: u16,
}

/// One accepted connection.
pub(crate) struct Connection {
    /// The client's address (for the AUTH guard).
    pub peer: Option<IpAddr>,
    /// Its place among [`MAX_HTTP_CONNECTIONS`], given back when it becomes a live tail.
    slot: Mutex<Option<OwnedSemaphorePermit>>,
    is_tail: AtomicBool,
    /// The request head arrived and the request is being served: the connection is no longer
    /// evicted for a newer one (false again while a failed token's reply is held).
    has_head: AtomicBool,
    /// Wakes the connection's task to close it (evicted to make room).
    evict: tokio::sync::Notify,
}

impl Connection {
    /// Whether the connection may be closed to make room for a newer one at the cap: true
    /// while its reply to a failed token is held (it holds nothing anyone needs).
    pub(crate) fn set_evictable(&self, evictable: bool) {
        self.has_head.store(!evictable, Ordering::Release);
    }

    /// The connection now serves a live tail: it leaves the connection cap (the tail holds a
    /// tail slot instead) and the connection deadline (the tail's idle timeout ends it).
    pub(crate) fn become_tail(&self) {
        self.is_tail.store(true, Ordering::Release);
        drop(self.slot.lock().take());
    }
}

/// Serves until the server shuts down (the shutdown handle connects once to wake `accept`).
pub(super) fn serve(shared: &Arc<Shared>, listener: TcpListener, role: Role) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(%err, ?role, "cannot start the HTTP runtime; the listener is not served");
            return;
        }
    };
    let tail_slots = Arc::new(Semaphore::new(shared.config.limits.max_tail_connections));
    let work_slots = Arc::new(Semaphore::new(MAX_QUEUED_API_REQUESTS));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let site = Arc::new(Site { shared: Arc::clone(shared), role, tail_slots, work_slots, port });
    runtime.block_on(accept_loop(site, listener));
    // A store scan still running for a request that was dropped (a funnel over a large log)
    // must not hold up the daemon's shutdown.
    runtime.shutdown_timeout(SHUTDOWN_WAIT);
}

/// How long shutdown waits for the console's store work still running.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

async fn accept_loop(site: Arc<Site>, listener: TcpListener) {
    let listener = match listener.set_nonblocking(true).and_then(|()| tokio::net::TcpListener::from_std(listener)) {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(%err, role = ?site.role, "cannot serve the HTTP listener");
            return;
        }
    };
    let deadline = match site.role {
        Role::Metrics => CONNECTION_DEADLINE,
        Role::Console => Duration::from_secs(site.shared.config.limits.request_timeout_secs),
    };
    let slots = Arc::new(Semaphore::new(MAX_HTTP_CONNECTIONS));
    // Open connections, oldest first (pruned as they end), to evict one still waiting for its
    // request head when the cap is reached.
    let mut open: std::collections::VecDeque<std::sync::Weak<Connection>> = std::collections::VecDeque::new();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let accepted = listener.accept().await;
        if site.shared.is_shutting_down() {
            break;
        }
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(%err, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        open.retain(|c| c.strong_count() > 0);
        let permit = match Arc::clone(&slots).try_acquire_owned() {
            Ok(permit) => permit,
            // At the cap: the oldest connection that has not sent a whole request head yet
            // (idle or drip-feeding) makes room, as on the RESP port; with none, this one is
            // closed at once.
            Err(_) => match evict_oldest_headless(&open) {
                Some(permit) => permit,
                None => {
                    drop(stream);
                    continue;
                }
            },
        };
        let connection = Arc::new(Connection {
            peer: Some(peer.ip()),
            slot: Mutex::new(Some(permit)),
            is_tail: AtomicBool::new(false),
            has_head: AtomicBool::new(false),
            evict: tokio::sync::Notify::new(),
        });
        open.push_back(Arc::downgrade(&connection));
        let site = Arc::clone(&site);
        tasks.spawn(async move {
            let service = {
                let connection = Arc::clone(&connection);
                hyper::service::service_fn(move |request| answer(Arc::clone(&site), Arc::clone(&connection), request))
            };
            let serving = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let mut serving = std::pin::pin!(serving);
            let timed_out = {
                // Served to the end, past the deadline, or evicted to make room (closed).
                let mut timed = std::pin::pin!(tokio::time::timeout(deadline, serving.as_mut()));
                let mut evicted = std::pin::pin!(connection.evict.notified());
                std::future::poll_fn(|cx| {
                    use std::future::Future;
                    if let std::task::Poll::Ready(finished) = timed.as_mut().poll(cx) {
                        return std::task::Poll::Ready(finished.is_err());
                    }
                    evicted.as_mut().poll(cx).map(|()| false)
                })
                .await
            };
            if timed_out && connection.is_tail.load(Ordering::Acquire) {
                // A live tail ends itself: idle timeout, a client that stopped reading, shutdown.
                let _ = serving.await;
            }
            drop(connection.slot.lock().take());
        });
        // Reap finished connections so the set does not grow.
        while tasks.try_join_next().is_some() {}
    }
    tasks.abort_all();
}

/// Takes the connection slot of the oldest open connection that has not sent a whole request
/// head, and tells it to close.
fn evict_oldest_headless(
    open: &std::collections::VecDeque<std::sync::Weak<Connection>>,
) -> Option<OwnedSemaphorePermit> {
    for connection in open.iter().filter_map(std::sync::Weak::upgrade) {
        if connection.has_head.load(Ordering::Acquire) {
            continue;
        }
        if let Some(permit) = connection.slot.lock().take() {
            connection.evict.notify_one();
            tracing::debug!(peer = ?connection.peer, "HTTP connection without a request head closed to make room");
            return Some(permit);
        }
    }
    None
}

async fn answer(
    site: Arc<Site>,
    connection: Arc<Connection>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    connection.has_head.store(true, Ordering::Release);
    let path = request.uri().path();
    let shared = &site.shared;
    let is_console = site.role == Role::Console;
    // The console's listener adds its security headers to every reply, errors included.
    let plain = |status, content_type, body: String| {
        let response = old_style(full(status, content_type, body));
        Ok(if is_console { secured(response) } else { response })
    };
    if request.method() != Method::GET && request.method() != Method::HEAD {
        if is_console && path.starts_with("/api/") {
            let error = crate::ApiError::new(405, "METHOD_NOT_ALLOWED", "the API answers GET only");
            return Ok(api_error(&error));
        }
        return plain(StatusCode::METHOD_NOT_ALLOWED, "text/plain", String::new());
    }
    // Health answers anyone; everything else of the open console only a loopback Host (a web
    // page that rebinds its own name to 127.0.0.1 must not read the API).
    let is_health = path == "/healthz" || path == "/readyz";
    if is_console && !is_health && !shared.auth.required() {
        if let Err(error) = loopback_host(&request, site.port) {
            return Ok(if path.starts_with("/api/") {
                api_error(&error)
            } else {
                secured(full(StatusCode::MISDIRECTED_REQUEST, "text/plain", format!("{}\n", error.message)))
            });
        }
    }
    match (site.role, path) {
        (Role::Console, "/metrics") if shared.auth.required() => {
            // With tenants, the console's address may be public: its metrics (every tenant's
            // counters, like /api/health) are the admin's. `--metrics` serves scrapers.
            match super::http_api::authenticate(shared, &connection, &request).await {
                Ok(crate::auth::Identity::Admin) => {
                    plain(StatusCode::OK, "text/plain; version=0.0.4", super::metrics::render(shared))
                }
                Ok(_) => Ok(api_error(&crate::ApiError::new(
                    403,
                    "NOPERM",
                    "metrics show every tenant's counters; use the admin token (or the --metrics listener)",
                ))),
                Err(error) => Ok(api_error(&error)),
            }
        }
        (_, "/metrics") | (Role::Metrics, "/") => {
            plain(StatusCode::OK, "text/plain; version=0.0.4", super::metrics::render(shared))
        }
        (_, "/healthz") => plain(StatusCode::OK, "text/plain", "ok\n".to_string()),
        (_, "/readyz") if shared.is_shutting_down() => {
            plain(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "shutting down\n".to_string())
        }
        (_, "/readyz") if shared.store.writer_failure().is_some() => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "writer stopped after a storage error: appends are refused until a restart (the server log has the \
             detail)\n"
                .to_string(),
        ),
        (_, "/readyz") => plain(StatusCode::OK, "text/plain", "ready\n".to_string()),
        (Role::Console, _) => Ok(console(&site, &connection, request).await),
        (Role::Metrics, _) => plain(StatusCode::NOT_FOUND, "text/plain", String::new()),
    }
}

/// Ok when the request names this listener by a loopback name: its `Host` (and an
/// absolute-form target's authority) is `localhost`, an IPv4 loopback address or `[::1]`, with
/// the listener's port or none. 421 `MISDIRECTED_REQUEST` otherwise.
fn loopback_host<B>(request: &Request<B>, port: u16) -> Result<(), crate::ApiError> {
    let refused = || {
        crate::ApiError::new(
            421,
            "MISDIRECTED_REQUEST",
            "without tenants the console answers only requests to localhost, 127.0.0.1 or [::1]",
        )
    };
    let host = request.headers().get(hyper::header::HOST).and_then(|h| h.to_str().ok()).ok_or_else(refused)?;
    let mut names = vec![host];
    if let Some(authority) = request.uri().authority() {
        names.push(authority.as_str());
    }
    for name in names {
        if !is_loopback_authority(name, port) {
            return Err(refused());
        }
    }
    Ok(())
}

fn is_loopback_authority(authority: &str, port: u16) -> bool {
    let (host, given_port) = match authority.rsplit_once(':') {
        Some((host, p)) if !p.contains(']') => (host, Some(p)),
        _ => (authority, None),
    };
    if given_port.is_some_and(|p| p.parse::<u16>().ok() != Some(port)) {
        return false;
    }
    if host.eq_ignore_ascii_case("localhost") || host.eq_ignore_ascii_case("localhost.") {
        return true;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    }
    host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// The console's page and assets.
const INDEX_HTML: &str = include_str!("../console/index.html");
const CONSOLE_JS: &str = include_str!("../console/console.js");
const CONSOLE_CSS: &str = include_str!("../console/console.css");
/// Where `index.html` loads the extensions' page scripts.
const PAGE_SCRIPTS_MARK: &str = "<!-- page scripts -->";

/// What the console's documents may load: scripts, styles and API calls of this origin only;
/// no inline script, no frames, no forms posting elsewhere.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

async fn console(site: &Arc<Site>, connection: &Arc<Connection>, request: Request<Incoming>) -> Response<Body> {
    let is_api = request.uri().path().starts_with("/api/");
    let refuse = |status: u16, code: &'static str, message: &str| {
        let error = crate::ApiError::new(status, code, message);
        if is_api {
            api_error(&error)
        } else {
            secured(full(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                "text/plain",
                message.to_string(),
            ))
        }
    };
    let has_body = request.headers().contains_key(TRANSFER_ENCODING)
        || request.headers().get(CONTENT_LENGTH).is_some_and(|len| len.as_bytes() != b"0");
    if has_body {
        return refuse(413, "BODY_NOT_ALLOWED", "requests to the console have no body");
    }
    let uri_len = request.uri().path().len() + request.uri().query().map_or(0, |q| q.len() + 1);
    if uri_len > MAX_URI_BYTES {
        return refuse(414, "URI_TOO_LONG", &format!("the request URI is over {MAX_URI_BYTES} bytes"));
    }
    let extensions = site.shared.config.extensions.console();
    let path = request.uri().path();
    match path {
        "/" | "/index.html" => {
            let scripts: String =
                extensions.pages().map(|p| format!("<script src=\"/pages/{}.js\" defer></script>\n", p.id)).collect();
            secured(full(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML.replace(PAGE_SCRIPTS_MARK, &scripts)))
        }
        "/console.js" => secured(full(StatusCode::OK, "text/javascript; charset=utf-8", CONSOLE_JS)),
        "/console.css" => secured(full(StatusCode::OK, "text/css; charset=utf-8", CONSOLE_CSS)),
        // Browsers ask for it on every page load: nothing, rather than a 404 in their console.
        "/favicon.ico" => secured(full(StatusCode::NO_CONTENT, "image/x-icon", Bytes::new())),
        _ if is_api => super::http_api::answer(site, connection, request).await,
        _ => {
            let page =
                path.strip_prefix("/pages/").and_then(|p| p.strip_suffix(".js")).and_then(|id| extensions.page(id));
            match page {
                Some((_, page)) => secured(full(StatusCode::OK, "text/javascript; charset=utf-8", page.script)),
                None => secured(full(StatusCode::NOT_FOUND, "text/plain", "not found\n")),
            }
        }
    }
}

/// A response with a whole body.
pub(crate) fn full(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = status;
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}

/// Metrics and health answer as HTTP/1.0, as they always have.
fn old_style(mut response: Response<Body>) -> Response<Body> {
    *response.version_mut() = Version::HTTP_10;
    response
}

/// The console's headers: the content security policy, no sniffing, no framing, no caching
/// (replies carry a tenant's data), no referrer.
pub(crate) fn secured(mut response: Response<Body>) -> Response<Body> {
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// A JSON reply of the API.
pub(crate) fn json(status: u16, value: &serde_json::Value) -> Response<Body> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    secured(full(status, "application/json", value.to_string()))
}

/// An error reply of the API (`{"error": {"code", "message"}}`).
pub(crate) fn api_error(error: &crate::ApiError) -> Response<Body> {
    json(error.status, &error.body())
}
