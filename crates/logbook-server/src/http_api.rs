//! The console's JSON API (docs/console.md): `GET /api/<route>?<query>` with
//! `Authorization: Bearer <token>` when tenants are configured.
//!
//! - `whoami`: who the token is, and the extensions' pages;
//! - `streams?prefix=&after=&count=`: the caller's streams with their versions;
//! - `stream?name=&from=&count=&direction=`: one stream's events;
//! - `tail?from=&prefix=&type=...`: a live tail of `$all` as server-sent events, filtered like
//!   READALL (`Last-Event-ID` resumes after the last event received);
//! - `health`: head, segments, bytes, archive, fsyncs (the admin's only, like INFO);
//! - `<page>`: an extension's page ([`crate::ConsoleExtension::api`]).
//!
//! A tenant sees only its namespace, and stream names come back without it, exactly as on the
//! RESP port. Errors are `{"error": {"code": ..., "message": ...}}` and never carry a server
//! path. Counts are bounded by `limits.max_count` and [`MAX_LIST_COUNT`], replies by
//! `limits.max_reply_bytes` (at least one event).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use logbook::{Direction, Filter, RecordedEvent, MAX_STREAM_NAME_BYTES};
use serde_json::{json, Value as Json};

use crate::auth::{AuthError, Identity};
use crate::console::{ApiError, ApiLimits, ApiQuery};
use crate::http::{api_error, json, secured, Body, Connection, Site};
use crate::Shared;

/// Routes of the API's own pages; an extension's page may not take these ids.
pub(crate) const BUILT_IN_PAGES: [&str; 6] = ["whoami", "streams", "stream", "tail", "health", "pages"];
/// Most streams, or events of one stream, in one reply (below `limits.max_count`).
pub const MAX_LIST_COUNT: u64 = 1000;
/// Events a live tail reads from the log at a time.
const TAIL_PAGE_EVENTS: usize = 100;
/// How often an idle live tail looks at the head of the log.
const TAIL_POLL: Duration = Duration::from_millis(100);
/// Frames a live tail holds for a client that reads slowly, before it waits.
const TAIL_BUFFER_FRAMES: usize = 16;
/// Most `type` filters of one live tail (READALL's TYPE list is bounded by `max_args`).
const MAX_TAIL_TYPES: usize = 16;

pub(crate) async fn answer(
    site: &Arc<Site>,
    connection: &Arc<Connection>,
    request: Request<Incoming>,
) -> Response<Body> {
    match route(site, connection, &request).await {
        Ok(response) => response,
        Err(error) => api_error(&error),
    }
}

async fn route(
    site: &Arc<Site>,
    connection: &Arc<Connection>,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let shared = &site.shared;
    let route = request.uri().path().strip_prefix("/api/").unwrap_or_default();
    let query = ApiQuery::parse(request.uri().query().unwrap_or(""))?;
    let who = authenticate(shared, connection, request).await?;
    match route {
        "whoami" => {
            let pages: Vec<Json> =
                shared.config.extensions.console().pages().map(|p| json!({ "id": p.id, "title": p.title })).collect();
            let identity = match &who {
                Identity::Open => "open",
                Identity::Admin => "admin",
                Identity::Tenant(_) => "tenant",
            };
            Ok(json(200, &json!({ "identity": identity, "name": who.label(), "pages": pages })))
        }
        "streams" => blocking(site, who, query, streams).await,
        "stream" => blocking(site, who, query, stream).await,
        "health" => blocking(site, who, query, health).await,
        "tail" => tail(site, connection, who, &query, request),
        page => {
            let Some((extension, page)) = shared.config.extensions.console().page(page) else {
                return Err(ApiError::not_found("no such API route (see docs/console.md)"));
            };
            let extension = Arc::clone(extension);
            let id = page.id;
            let limits = ApiLimits { max_reply_bytes: shared.config.limits.max_reply_bytes };
            run_blocking(site, move |shared| extension.api(&shared.store, who.namespace(), id, &query, &limits)).await
        }
    }
}

/// The caller's identity: everyone is [`Identity::Open`] without tenants; otherwise the
/// bearer token's identity. Failures are slowed like failed AUTHs (the same guard, per client
/// address); a valid token is never delayed, so the users behind one proxy do not wait for
/// someone else's mistyped token.
pub(crate) async fn authenticate(
    shared: &Arc<Shared>,
    connection: &Connection,
    request: &Request<Incoming>,
) -> Result<Identity, ApiError> {
    if !shared.auth.required() {
        return Ok(Identity::Open);
    }
    let header = request.headers().get(hyper::header::AUTHORIZATION).map(|v| v.as_bytes());
    let token = header.and_then(|h| {
        let (scheme, token) = (h.get(..7)?, h.get(7..)?);
        scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
    });
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Err(ApiError::new(401, "NOAUTH", "authentication required: send Authorization: Bearer <token>"));
    };
    match shared.auth.identify(token) {
        Ok(who) => Ok(who),
        Err(AuthError::Invalid | AuthError::NotConfigured) => {
            let verdict = shared.auth_guard.failure(connection.peer, 1, Instant::now());
            // A held failure must not keep a connection slot from others at the cap.
            connection.set_evictable(true);
            tokio::time::sleep(verdict.delay).await;
            connection.set_evictable(false);
            Err(ApiError::new(401, "INVALID_TOKEN", "the token is not valid"))
        }
    }
}

/// Runs `handler` on a blocking thread (store reads may touch the disk).
async fn blocking(
    site: &Arc<Site>,
    who: Identity,
    query: ApiQuery,
    handler: fn(&Shared, &Identity, &ApiQuery) -> Result<Json, ApiError>,
) -> Result<Response<Body>, ApiError> {
    run_blocking(site, move |shared| handler(shared, &who, &query)).await
}

/// Runs `work` on one of the blocking threads, after taking a place in the listener's queue
/// ([`crate::http::MAX_QUEUED_API_REQUESTS`]; none free: 503 `BUSY` at once). Work whose
/// request was dropped before a thread took it (the client went, or the connection reached
/// its deadline), or that waited longer than `limits.request_timeout_secs`, is skipped.
async fn run_blocking(
    site: &Arc<Site>,
    work: impl FnOnce(&Shared) -> Result<Json, ApiError> + Send + 'static,
) -> Result<Response<Body>, ApiError> {
    let Ok(permit) = Arc::clone(&site.work_slots).try_acquire_owned() else {
        return Err(ApiError::new(
            503,
            "BUSY",
            format!(
                "{} API requests are already waiting for the store; try again shortly",
                crate::http::MAX_QUEUED_API_REQUESTS
            ),
        ));
    };
    let shared = Arc::clone(&site.shared);
    let place = QueuePlace::new(&shared, permit);
    let wanted = Arc::new(AtomicBool::new(true));
    let _unwanted_when_dropped = Unwanted(Arc::clone(&wanted));
    let deadline = Instant::now() + Duration::from_secs(shared.config.limits.request_timeout_secs);
    let answer = tokio::task::spawn_blocking(move || {
        let _place = place;
        if !wanted.load(AtomicOrdering::Acquire) || Instant::now() >= deadline {
            return Err(ApiError::new(503, "BUSY", "the request waited too long for the store"));
        }
        work(&shared)
    })
    .await;
    match answer {
        Ok(Ok(value)) => Ok(json(200, &value)),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(ApiError::new(500, "INTERNAL", "the request failed; the server log has the detail")),
    }
}

/// A place in the store-work queue, counted in `logbook_console_api_requests` until the work
/// ran or was skipped.
struct QueuePlace {
    _permit: tokio::sync::OwnedSemaphorePermit,
    shared: Arc<Shared>,
}

impl QueuePlace {
    fn new(shared: &Arc<Shared>, permit: tokio::sync::OwnedSemaphorePermit) -> QueuePlace {
        shared.stats.console_api_requests.fetch_add(1, AtomicOrdering::Relaxed);
        QueuePlace { _permit: permit, shared: Arc::clone(shared) }
    }
}

impl Drop for QueuePlace {
    fn drop(&mut self) {
        self.shared.stats.console_api_requests.fetch_sub(1, AtomicOrdering::Relaxed);
    }
}

/// Marks store work as no longer wanted when the request's future is dropped: hyper drops it
/// when the client closes the connection, and the accept loop at the connection's deadline.
struct Unwanted(Arc<AtomicBool>);

impl Drop for Unwanted {
    fn drop(&mut self) {
        self.0.store(false, AtomicOrdering::Release);
    }
}

/// A client's stream name (or prefix) checked and mapped into its namespace.
fn stored(who: &Identity, name: &str, what: &str) -> Result<String, ApiError> {
    if name.len() > MAX_STREAM_NAME_BYTES {
        return Err(ApiError::bad_request(format!("{what} is over {MAX_STREAM_NAME_BYTES} bytes")));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!("{what} must not contain control characters")));
    }
    Ok(who.to_store(name))
}

fn max_count(shared: &Shared) -> u64 {
    shared.config.limits.max_count.min(MAX_LIST_COUNT)
}

/// `GET /api/streams?prefix=&after=&count=`: `{"streams": [{"name", "version"}], "next_after"}`
/// (`next_after`: pass it as `after` for the next page; null at the end).
fn streams(shared: &Shared, who: &Identity, query: &ApiQuery) -> Result<Json, ApiError> {
    let prefix = stored(who, query.get("prefix").unwrap_or(""), "prefix")?;
    let after = query.get("after").map(|a| stored(who, a, "after")).transpose()?;
    let count = query.integer("count", 100.min(max_count(shared)), 1, max_count(shared))? as usize;
    let page = shared.store.list_streams(&prefix, after.as_deref(), count);
    let next_after = (page.len() == count).then(|| page.last().map(|(name, _)| who.from_store(name).to_string()));
    let streams: Vec<Json> =
        page.iter().map(|(name, version)| json!({ "name": who.from_store(name), "version": version })).collect();
    Ok(json!({ "streams": streams, "next_after": next_after.flatten() }))
}

/// `GET /api/stream?name=&from=&count=&direction=forward|backward`: `{"stream", "version",
/// "events": [...], "next": <version to read from next, or null>}`.
fn stream(shared: &Shared, who: &Identity, query: &ApiQuery) -> Result<Json, ApiError> {
    let name = query.get("name").ok_or_else(|| ApiError::bad_request("name (the stream) is required"))?;
    if name.is_empty() {
        return Err(ApiError::bad_request("name (the stream) must not be empty"));
    }
    let stored_name = stored(who, name, "name")?;
    let direction = match query.get("direction").unwrap_or("forward") {
        "forward" => Direction::Forward,
        "backward" => Direction::Backward,
        _ => return Err(ApiError::bad_request("direction must be forward or backward")),
    };
    let version = shared.store.stream_version(&stored_name);
    let default_from = if direction == Direction::Forward { 1 } else { version.max(1) };
    let from = query.integer("from", default_from, 1, u64::MAX)?;
    let count = query.integer("count", 100.min(max_count(shared)), 1, max_count(shared))? as usize;
    let events = shared.store.read_stream(&stored_name, from, count, direction).map_err(|e| ApiError::store(&e))?;
    let mut bytes = 0;
    let mut shown = Vec::with_capacity(events.len());
    for event in &events {
        bytes += event.data().len() + event.metadata().len() + 256;
        if !shown.is_empty() && bytes > shared.config.limits.max_reply_bytes {
            break;
        }
        shown.push(event_json(who, event));
    }
    let next = match (direction, events.get(shown.len().saturating_sub(1))) {
        (_, None) => None,
        (Direction::Forward, Some(last)) => (last.version() < version).then_some(last.version() + 1),
        (Direction::Backward, Some(last)) => (last.version() > 1).then(|| last.version() - 1),
    };
    Ok(json!({ "stream": name, "version": version, "events": shown, "next": next }))
}

/// An event as the API shows it: data and metadata as JSON when they are JSON, else as text.
pub(crate) fn event_json(who: &Identity, event: &RecordedEvent) -> Json {
    json!({
        "position": event.position(),
        "stream": who.from_store(event.stream()),
        "version": event.version(),
        "id": event.id().to_string(),
        "type": event.event_type(),
        "timestamp_us": event.timestamp_us(),
        "at": logbook::time::rfc3339(event.timestamp_us()),
        "data": json_or_text(event.data()),
        "metadata": json_or_text(event.metadata()),
    })
}

fn json_or_text(bytes: &[u8]) -> Json {
    if bytes.is_empty() {
        return Json::Null;
    }
    serde_json::from_slice(bytes).unwrap_or_else(|_| Json::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// `GET /api/health`: what the metrics say about the store, for the admin (a tenant gets 403
/// `NOPERM`, as INFO answers it: the counters are every tenant's).
fn health(shared: &Shared, who: &Identity, _query: &ApiQuery) -> Result<Json, ApiError> {
    if let Identity::Tenant(_) = who {
        return Err(ApiError::new(403, "NOPERM", "health shows every tenant's counters; use the admin token"));
    }
    let store = &shared.store;
    let stats = store.stats();
    let uptime = shared.started.elapsed().as_secs_f64();
    let root = logbook::DataDir::new(store.dir()).archive_dir();
    let archive = if root.is_dir() {
        match logbook_archive::Archive::open(&root, Arc::clone(&store.options().fs)) {
            Ok(archive) => json!({ "files": archive.file_count(), "events": archive.event_count() }),
            Err(err) => return Err(ApiError::store(&err)),
        }
    } else {
        Json::Null
    };
    let fsync = &stats.fsync_micros;
    let count = fsync.count();
    Ok(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": shared.started.elapsed().as_secs(),
        "head_position": store.head_position(),
        "streams": store.stream_count(),
        "segments": store.segment_count(),
        "segment_bytes": super::commands::info::segment_bytes(shared),
        "archive": archive,
        "appends_total": stats.appends,
        "events_appended_total": stats.events,
        "bytes_written_total": stats.bytes_written,
        "connections": shared.connection_count(),
        "fsync": {
            "total": stats.fsyncs,
            "per_sec_since_start": if uptime > 0.0 { stats.fsyncs as f64 / uptime } else { 0.0 },
            "mean_us": fsync.sum.checked_div(count).unwrap_or(0),
            "p50_us_at_most": quantile(fsync, 0.5),
            "p99_us_at_most": quantile(fsync, 0.99),
        },
    }))
}

/// The upper bound of the power-of-two bucket that holds quantile `q` (`None` when empty).
fn quantile(counts: &logbook::Log2Histogram, q: f64) -> Option<u64> {
    let total = counts.count();
    if total == 0 {
        return None;
    }
    let wanted = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, count) in counts.counts.iter().enumerate() {
        seen += count;
        if seen >= wanted {
            return Some(logbook::Log2Histogram::upper_bound(i));
        }
    }
    None
}

/// `GET /api/tail?from=&prefix=&type=...`: `text/event-stream`, one `event: event` per event
/// of `$all` (its `id:` the position, its `data:` the event's JSON), from `from` (default: the
/// next event appended) or after `Last-Event-ID`. At most `limits.max_tail_connections` at
/// once (then 503 `TOO_MANY_TAILS`); ended after `limits.tail_idle_timeout_secs` without an
/// event, or when the client stops reading for that long, or at shutdown.
fn tail(
    site: &Arc<Site>,
    connection: &Connection,
    who: Identity,
    query: &ApiQuery,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let shared = &site.shared;
    let prefix = query.get("prefix").map(|p| stored(&who, p, "prefix")).transpose()?;
    let stream_prefix = match (who.namespace(), prefix) {
        (_, Some(prefix)) => Some(prefix),
        (Some(namespace), None) => Some(namespace.prefix().to_string()),
        (None, None) => None,
    };
    let types: Vec<String> = query.all("type").into_iter().filter(|t| !t.is_empty()).map(str::to_string).collect();
    if types.len() > MAX_TAIL_TYPES {
        return Err(ApiError::bad_request(format!("at most {MAX_TAIL_TYPES} type filters")));
    }
    let resume = request.headers().get("last-event-id").and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    let from = match resume {
        Some(last) => last.saturating_add(1),
        None => query.integer("from", shared.store.head_position() + 1, 1, u64::MAX)?,
    };
    let Ok(permit) = Arc::clone(&site.tail_slots).try_acquire_owned() else {
        return Err(ApiError::new(
            503,
            "TOO_MANY_TAILS",
            format!(
                "{} live tails are open, the most allowed; try again later",
                shared.config.limits.max_tail_connections
            ),
        ));
    };
    connection.become_tail();
    let filter = Filter { stream_prefix, category: None, event_types: types };
    let (sender, receiver) = tokio::sync::mpsc::channel(TAIL_BUFFER_FRAMES);
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        pump(&shared, &who, &filter, from, &sender).await;
        drop(permit);
    });
    let mut response = Response::new(TailBody(receiver).boxed());
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/event-stream"));
    Ok(secured(response))
}

/// Sends the tail's events until it is idle too long, the client goes, or shutdown.
async fn pump(
    shared: &Arc<Shared>,
    who: &Identity,
    filter: &Filter,
    mut next: u64,
    sender: &tokio::sync::mpsc::Sender<Bytes>,
) {
    let idle = Duration::from_secs(shared.config.limits.tail_idle_timeout_secs);
    // Reconnect soon after the idle timeout ends the stream, and resume where this tail
    // started even if no event arrives (an `id:` without data sets the client's last event id).
    let start = format!("retry: 1000\nid: {}\n\n", next.saturating_sub(1));
    if sender.send(Bytes::from(start)).await.is_err() {
        return;
    }
    let mut last_sent = Instant::now();
    while !shared.is_shutting_down() && !sender.is_closed() {
        if shared.store.head_position() >= next {
            let (store, page_filter) = (shared.store.clone(), filter.clone());
            let read = tokio::task::spawn_blocking(move || store.read_all_page(next, TAIL_PAGE_EVENTS, &page_filter));
            let page = match read.await {
                Ok(Ok(page)) => page,
                Ok(Err(err)) => {
                    let error = ApiError::store(&err);
                    let frame = format!("event: error\ndata: {}\n\n", error.body());
                    let _ = sender.send(Bytes::from(frame)).await;
                    return;
                }
                Err(_) => return,
            };
            for event in &page.events {
                let frame = format!("id: {}\nevent: event\ndata: {}\n\n", event.position(), event_json(who, event));
                match tokio::time::timeout(idle, sender.send(Bytes::from(frame))).await {
                    Ok(Ok(())) => last_sent = Instant::now(),
                    _ => return, // gone, or not reading
                }
            }
            let advanced = page.next_position > next;
            next = page.next_position.max(next);
            if advanced && shared.store.head_position() >= next {
                continue; // more to read now
            }
        }
        if last_sent.elapsed() >= idle {
            // The position scanned so far, so the reconnect resumes after it, not at the head
            // of the log then (events appended in between would be missed).
            let reached = format!(": idle\nid: {}\n\n", next.saturating_sub(1));
            let _ = tokio::time::timeout(idle, sender.send(Bytes::from(reached))).await;
            return;
        }
        tokio::time::sleep(TAIL_POLL).await;
    }
}

/// The body of a live tail: the frames [`pump`] sends, until it drops its sender.
struct TailBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for TailBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.get_mut().0.poll_recv(cx).map(|frame| frame.map(|bytes| Ok(Frame::data(bytes))))
    }
}
