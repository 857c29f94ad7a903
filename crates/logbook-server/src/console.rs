//! Pages a crate above the daemon adds to its web console (the order lifecycle adds the order
//! timeline and the funnel), so the daemon's HTTP side knows nothing of any one domain; the
//! console's own pages (streams, live tail, health) are in `http_api`.
//!
//! A [`ConsoleExtension`] names its pages, gives each one's script (served at
//! `/pages/<id>.js`, loaded by the console's page after its own script, from the binary) and
//! answers `GET /api/<id>` for each: the daemon authenticates the request, checks its size and
//! parses its query first, then calls [`ConsoleExtension::api`] on a blocking thread with the
//! caller's namespace. Replies are JSON values; errors are [`ApiError`]s, which the daemon
//! writes in the one error shape of the API (docs/console.md) and which never carry a server
//! path ([`ApiError::store`] turns engine errors into one).

use std::fmt;
use std::sync::Arc;

use logbook::{Namespace, Store};

/// One page of the console added by an extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsolePage {
    /// Lower-case letters: the page's route (`#/<id>`), its script (`/pages/<id>.js`) and its
    /// API (`/api/<id>`).
    pub id: &'static str,
    /// Its name in the navigation bar.
    pub title: &'static str,
    /// Its JavaScript, which calls `Console.register(...)` (see `console/console.js`). Rendered
    /// event data must go through `textContent`, never `innerHTML`: the pages' CSP allows no
    /// inline script, and event data is the client's.
    pub script: &'static str,
}

/// The query of an API request, decoded: at most [`MAX_QUERY_PARAMS`] pairs, each value at
/// most [`MAX_QUERY_VALUE_BYTES`] bytes (checked before the extension sees it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiQuery(pub(crate) Vec<(String, String)>);

/// Most `name=value` pairs of one API query.
pub const MAX_QUERY_PARAMS: usize = 32;
/// Longest value of one query parameter, bytes (decoded).
pub const MAX_QUERY_VALUE_BYTES: usize = 1024;

impl ApiQuery {
    /// The first value of `name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }

    /// `name` as an integer in `min..=max`, `default` when absent; an error naming the
    /// parameter otherwise.
    pub fn integer(&self, name: &str, default: u64, min: u64, max: u64) -> Result<u64, ApiError> {
        let Some(text) = self.get(name) else { return Ok(default) };
        match text.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(format!("{name} must be an integer from {min} to {max}"))),
        }
    }

    /// Parses the query part of a URI (`a=1&b=x%20y`); refuses more than
    /// [`MAX_QUERY_PARAMS`] pairs, a value over [`MAX_QUERY_VALUE_BYTES`] or bad escapes.
    pub fn parse(query: &str) -> Result<ApiQuery, ApiError> {
        let mut pairs = Vec::new();
        for part in query.split('&').filter(|p| !p.is_empty()) {
            if pairs.len() == MAX_QUERY_PARAMS {
                return Err(ApiError::bad_request(format!("at most {MAX_QUERY_PARAMS} query parameters")));
            }
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            let name = decode(name)?;
            let value = decode(value)?;
            if value.len() > MAX_QUERY_VALUE_BYTES {
                return Err(ApiError::bad_request(format!(
                    "query parameter {name} is {} bytes, at most {MAX_QUERY_VALUE_BYTES} allowed",
                    value.len()
                )));
            }
            pairs.push((name, value));
        }
        Ok(ApiQuery(pairs))
    }
}

/// `%XX` escapes and `+` (a space) decoded; the result must be UTF-8.
fn decode(text: &str) -> Result<String, ApiError> {
    let bad = || ApiError::bad_request("the query has a bad %-escape or is not UTF-8");
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// An error reply of the API: an HTTP status, a stable upper-case code and a message for a
/// person, written as `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }

    /// 400 `BAD_REQUEST`: the request's parameters are wrong (the message says which).
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BAD_REQUEST", message)
    }

    /// 404 `NOT_FOUND`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(404, "NOT_FOUND", message)
    }

    /// The error of an engine failure, without server paths: the reply the RESP side would
    /// give (`storage error (id ...)` for I/O and corruption, logged with its detail).
    pub fn store(err: &logbook::Error) -> ApiError {
        let (code, message) = match crate::commands::append::store_error(err) {
            logbook_protocol::Value::Error(text) => match text.split_once(' ') {
                Some((code, message)) => (code.to_string(), message.to_string()),
                None => ("ERR".to_string(), text),
            },
            _ => ("ERR".to_string(), "storage error".to_string()),
        };
        match code.as_str() {
            "STREAMDELETED" => ApiError::new(410, "STREAM_DELETED", message),
            "ERR" if message.starts_with("storage error") => ApiError::new(500, "STORAGE_ERROR", message),
            _ => ApiError::bad_request(message),
        }
    }

    /// The JSON body of this error.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": { "code": self.code, "message": self.message } })
    }
}

/// The bounds an extension's reply must keep (the daemon's configured limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    /// Stop adding events to a reply once their data and metadata pass this many bytes
    /// (`limits.max_reply_bytes`; at least one event), and say where the next page starts.
    pub max_reply_bytes: usize,
}

/// Pages and their API added to the console by a crate above the daemon.
pub trait ConsoleExtension: Send + Sync + 'static {
    /// The pages, in the order the navigation shows them.
    fn pages(&self) -> &'static [ConsolePage];

    /// Answers `GET /api/<page>?<query>` for a caller confined to `namespace` (`None`: the
    /// admin, or a daemon without auth). Runs on a blocking thread; the reply must keep to
    /// `limits`.
    fn api(
        &self,
        store: &Store,
        namespace: Option<&Namespace>,
        page: &str,
        query: &ApiQuery,
        limits: &ApiLimits,
    ) -> Result<serde_json::Value, ApiError>;
}

/// The console extensions of a daemon (part of [`crate::Extensions`]).
#[derive(Clone, Default)]
pub(crate) struct ConsoleExtensions(pub(crate) Vec<Arc<dyn ConsoleExtension>>);

impl ConsoleExtensions {
    /// The extension serving page `id`, with the page.
    pub(crate) fn page(&self, id: &str) -> Option<(&Arc<dyn ConsoleExtension>, &'static ConsolePage)> {
        self.0.iter().find_map(|e| e.pages().iter().find(|p| p.id == id).map(|p| (e, p)))
    }

    pub(crate) fn pages(&self) -> impl Iterator<Item = &'static ConsolePage> + '_ {
        self.0.iter().flat_map(|e| e.pages().iter())
    }
}

impl fmt::Debug for ConsoleExtensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.pages().map(|p| p.id)).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_and_are_bounded() {
        let q = ApiQuery::parse("id=6f1c&prefix=order%2D1+x&type=A&type=B&empty").unwrap();
        assert_eq!(q.get("id"), Some("6f1c"));
        assert_eq!(q.get("prefix"), Some("order-1 x"));
        assert_eq!(q.all("type"), ["A", "B"]);
        assert_eq!(q.get("empty"), Some(""));
        assert_eq!(q.get("missing"), None);
        assert_eq!(q.integer("days", 7, 1, 90), Ok(7));
        let q = ApiQuery::parse("days=91").unwrap();
        assert_eq!(q.integer("days", 7, 1, 90).unwrap_err().message, "days must be an integer from 1 to 90");
        assert!(ApiQuery::parse("a=%zz").is_err());
        assert!(ApiQuery::parse("a=%4").is_err());
        assert!(ApiQuery::parse("a=%ff").is_err(), "not UTF-8");
        let many = vec!["a=1"; MAX_QUERY_PARAMS + 1].join("&");
        assert!(ApiQuery::parse(&many).unwrap_err().message.contains("at most 32"));
        let long = format!("a={}", "x".repeat(MAX_QUERY_VALUE_BYTES + 1));
        assert!(ApiQuery::parse(&long).unwrap_err().message.contains("at most 1024 allowed"));
    }

    #[test]
    fn store_errors_carry_no_paths() {
        let err = logbook::Error::io("opening /secret/data/x", std::io::Error::other("boom"));
        let api = ApiError::store(&err);
        assert_eq!((api.status, api.code), (500, "STORAGE_ERROR"));
        assert!(!api.message.contains("/secret"), "{}", api.message);
        let body = api.body().to_string();
        assert!(body.starts_with("{\"error\":{\"code\":\"STORAGE_ERROR\""), "{body}");
    }
}
