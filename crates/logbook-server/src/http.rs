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
//! - at most [`MAX_HTTP_CONNECTIONS`] open connections per listener (one more is closed at
//!   once); live tails have their own cap (`limits.max_tail_connections`) and give their slot
//!   back, so tails cannot starve page loads and page loads cannot starve tails,
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
}

/// One accepted connection.
pub(crate) struct Connection {
    /// The client's address (for the AUTH guard).
    pub peer: Option<IpAddr>,
    /// Its place among [`MAX_HTTP_CONNECTIONS`], given back when it becomes a live tail.
    slot: Mutex<Option<OwnedSemaphorePermit>>,
    is_tail: AtomicBool,
}

impl Connection {
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
    let site = Arc::new(Site { shared: Arc::clone(shared), role, tail_slots });
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
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            drop(stream); // over the cap: closed at once
            continue;
        };
        let connection = Arc::new(Connection {
            peer: Some(peer.ip()),
            slot: Mutex::new(Some(permit)),
            is_tail: AtomicBool::new(false),
        });
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
            let timed_out = tokio::time::timeout(deadline, serving.as_mut()).await.is_err();
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

async fn answer(
    site: Arc<Site>,
    connection: Arc<Connection>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path();
    let shared = &site.shared;
    let plain = |status, content_type, body: String| Ok(old_style(full(status, content_type, body)));
    if request.method() != Method::GET && request.method() != Method::HEAD {
        if site.role == Role::Console && path.starts_with("/api/") {
            let error = crate::ApiError::new(405, "METHOD_NOT_ALLOWED", "the API answers GET only");
            return Ok(api_error(&error));
        }
        return plain(StatusCode::METHOD_NOT_ALLOWED, "text/plain", String::new());
    }
    match (site.role, path) {
        (_, "/metrics") | (Role::Metrics, "/") => {
            plain(StatusCode::OK, "text/plain; version=0.0.4", super::metrics::render(shared))
        }
        (_, "/healthz") => plain(StatusCode::OK, "text/plain", "ok\n".to_string()),
        (_, "/readyz") if shared.is_shutting_down() => {
            plain(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "shutting down\n".to_string())
        }
        (_, "/readyz") => plain(StatusCode::OK, "text/plain", "ready\n".to_string()),
        (Role::Console, _) => Ok(console(&site, &connection, request).await),
        (Role::Metrics, _) => plain(StatusCode::NOT_FOUND, "text/plain", String::new()),
    }
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
