//! The daemon's HTTP side (`--metrics ADDR`): Prometheus text at `/metrics` (and `/`),
//! `/healthz` (the process answers) and `/readyz` (it takes connections: 503 while shutting
//! down). The console will live here too.
//!
//! Built on hyper 1.x (HTTP/1 only) on a small single-threaded tokio runtime of its own, in
//! one thread: scrapes are served concurrently, so a slow or stalled client cannot block
//! them, with
//! - a cap of [`MAX_HTTP_CONNECTIONS`] open connections (one more is closed at once),
//! - a deadline for the request head ([`HEADER_READ_TIMEOUT`]) and for the whole connection
//!   ([`CONNECTION_DEADLINE`]), after which it is dropped,
//! - one request per connection (no keep-alive), answered as HTTP/1.0 like before.
//!
//! tokio is used here and by the webhook workers (`webhook::post`, a runtime each); the store
//! and the RESP connections do not depend on it.

use std::convert::Infallible;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioIo, TokioTimer};

use super::Shared;

/// Most HTTP connections open at once.
pub(crate) const MAX_HTTP_CONNECTIONS: usize = 64;
/// The request head must arrive within this long of connecting.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// A connection is dropped this long after it was accepted, whatever it is doing.
pub(crate) const CONNECTION_DEADLINE: Duration = Duration::from_secs(5);

/// Serves until the server shuts down (the shutdown handle connects once to wake `accept`).
pub(super) fn serve(shared: &Arc<Shared>, listener: TcpListener) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(%err, "cannot start the HTTP runtime; metrics are not served");
            return;
        }
    };
    runtime.block_on(accept_loop(shared, listener));
}

async fn accept_loop(shared: &Arc<Shared>, listener: TcpListener) {
    let listener = match listener.set_nonblocking(true).and_then(|()| tokio::net::TcpListener::from_std(listener)) {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(%err, "cannot serve the metrics listener");
            return;
        }
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HTTP_CONNECTIONS));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let accepted = listener.accept().await;
        if shared.is_shutting_down() {
            break;
        }
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(err) => {
                tracing::warn!(%err, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            drop(stream); // over the cap: closed at once
            continue;
        };
        let shared = Arc::clone(shared);
        tasks.spawn(async move {
            let service = hyper::service::service_fn(move |request| answer(Arc::clone(&shared), request));
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, connection).await;
            drop(permit);
        });
        // Reap finished connections so the set does not grow.
        while tasks.try_join_next().is_some() {}
    }
    tasks.abort_all();
}

async fn answer(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = if request.method() != Method::GET && request.method() != Method::HEAD {
        (StatusCode::METHOD_NOT_ALLOWED, "text/plain", String::new())
    } else {
        match request.uri().path() {
            "/metrics" | "/" => (StatusCode::OK, "text/plain; version=0.0.4", super::metrics::render(&shared)),
            "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
            "/readyz" if shared.is_shutting_down() => {
                (StatusCode::SERVICE_UNAVAILABLE, "text/plain", "shutting down\n".to_string())
            }
            "/readyz" => (StatusCode::OK, "text/plain", "ready\n".to_string()),
            _ => (StatusCode::NOT_FOUND, "text/plain", String::new()),
        }
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    *response.version_mut() = Version::HTTP_10;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
    }
    Ok(response)
}
