//! One delivery attempt: a POST over a fresh HTTP/1.1 connection (hyper's client), bounded
//! by the webhook's timeout and by the daemon's shutdown.
//!
//! The timeout covers resolving, connecting, sending and the response head. The response
//! body is never read: the status says everything, and a receiver cannot make the daemon
//! hold its reply. The connection is closed after each attempt (no pool to bound or to
//! leave half-broken after a receiver went away).

use std::future::Future;
use std::pin::pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

use super::settings::Target;

/// How often a waiting worker looks at the shutdown flag.
pub(crate) const STOP_CHECK: Duration = Duration::from_millis(50);

/// What came of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// The receiver answered with this status.
    Answered(u16),
    /// No answer: why (no server path in it; it goes to the log and the dead letter).
    Failed(String),
    /// The daemon is shutting down; the attempt was abandoned.
    Stopped,
}

/// A request ready to send, built once per event and reused for each attempt.
pub(crate) struct Delivery<'a> {
    pub target: &'a Target,
    pub body: Bytes,
    /// Extra headers (signature, event id).
    pub headers: Vec<(&'static str, HeaderValue)>,
    pub timeout: Duration,
}

/// Runs one attempt on `runtime`, giving up at the timeout or when `stopping()` turns true.
pub(crate) fn attempt(
    runtime: &tokio::runtime::Runtime,
    delivery: &Delivery<'_>,
    stopping: &dyn Fn() -> bool,
) -> Attempt {
    runtime.block_on(bounded(post(delivery), delivery.timeout, stopping))
}

/// `work`'s result, unless `timeout` passes or `stopping()` turns true first.
async fn bounded(
    work: impl Future<Output = Result<u16, String>>,
    timeout: Duration,
    stopping: &dyn Fn() -> bool,
) -> Attempt {
    let deadline = Instant::now() + timeout;
    let mut work = pin!(work);
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Attempt::Failed(format!("no response within {} ms", timeout.as_millis()));
        }
        let wait = STOP_CHECK.min(deadline - now);
        match tokio::time::timeout(wait, &mut work).await {
            Ok(Ok(status)) => return Attempt::Answered(status),
            Ok(Err(reason)) => return Attempt::Failed(reason),
            Err(_) if stopping() => return Attempt::Stopped,
            Err(_) => {}
        }
    }
}

async fn post(delivery: &Delivery<'_>) -> Result<u16, String> {
    let target = delivery.target;
    let stream = tokio::net::TcpStream::connect(target.authority.as_str())
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", target.authority))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, connection) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {} failed: {e}", target.authority))?;
    // The connection is driven beside the request and dropped (closed) with this function.
    let driver = tokio::spawn(connection);
    let _abort = AbortOnDrop(driver);
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(target.path_and_query.as_str())
        .body(Full::new(delivery.body.clone()))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let headers = request.headers_mut();
    let host = HeaderValue::from_str(&target.host_header).map_err(|e| format!("bad Host header: {e}"))?;
    headers.insert(HOST, host);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(USER_AGENT, HeaderValue::from_static(concat!("logbook/", env!("CARGO_PKG_VERSION"))));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    for (name, value) in &delivery.headers {
        headers.insert(*name, value.clone());
    }
    let response =
        sender.send_request(request).await.map_err(|e| format!("request to {} failed: {e}", target.authority))?;
    Ok(response.status().as_u16())
}

/// Ends the connection task when the attempt ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<Result<(), hyper::Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn an_attempt_that_never_ends_fails_at_its_timeout_or_stops_at_shutdown() {
        let runtime = runtime();
        let never = std::future::pending::<Result<u16, String>>();
        let outcome = runtime.block_on(bounded(never, Duration::from_millis(20), &|| false));
        assert_eq!(outcome, Attempt::Failed("no response within 20 ms".into()));
        let never = std::future::pending::<Result<u16, String>>();
        let outcome = runtime.block_on(bounded(never, Duration::from_secs(600), &|| true));
        assert_eq!(outcome, Attempt::Stopped);
    }

    #[test]
    fn a_refused_connection_is_a_failure_that_names_the_address() {
        // A port nobody listens on: bind one, learn it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let target = Target {
            authority: format!("127.0.0.1:{port}"),
            host_header: format!("127.0.0.1:{port}"),
            path_and_query: "/".into(),
        };
        let delivery = Delivery {
            target: &target,
            body: Bytes::from_static(b"{}"),
            headers: Vec::new(),
            timeout: Duration::from_secs(5),
        };
        match attempt(&runtime(), &delivery, &|| false) {
            Attempt::Failed(reason) => {
                assert!(reason.starts_with(&format!("cannot connect to 127.0.0.1:{port}")), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
}
