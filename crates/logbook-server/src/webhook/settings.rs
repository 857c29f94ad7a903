//! One `[[webhooks]]` entry of the config: where to POST, which events, how to sign, how long
//! to wait and how often to retry. Checked whole at config load (`validate_webhooks`), so a
//! running worker never meets a setting it cannot use.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A webhook's consumer group is this followed by its name.
pub const WEBHOOK_GROUP_PREFIX: &str = "$webhook-";
/// A webhook's dead-letter stream is this followed by its name.
pub const DEAD_LETTER_STREAM_PREFIX: &str = "$dead-letter-";

/// `from = "start"`: a new webhook delivers the log from its first event.
pub const FROM_START: &str = "start";
/// `from = "end"`: a new webhook delivers only events appended after it was created.
pub const FROM_END: &str = "end";

/// Longest webhook name (it becomes part of the `$webhook-<name>` group and the
/// `$dead-letter-<name>` stream).
pub const MAX_WEBHOOK_NAME_BYTES: usize = 64;
/// Longest `timeout_ms` and `backoff_max_ms`: ten minutes.
pub const MAX_WEBHOOK_WAIT_MS: u64 = 600_000;
/// Most attempts at one event before it is dead-lettered.
pub const MAX_WEBHOOK_ATTEMPTS: u32 = 1000;
/// Most event types in one webhook's filter.
pub const MAX_WEBHOOK_TYPES: usize = 64;
/// Most webhooks (each is a thread and a consumer group).
pub const MAX_WEBHOOKS: usize = 32;

/// One outbound webhook (`[[webhooks]]` in the config file).
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Unique, `[A-Za-z0-9_-]`: the group is `$webhook-<name>`, dead letters go to
    /// `$dead-letter-<name>`.
    pub name: String,
    /// `http://host[:port]/path[?query]`. Plain HTTP only (see docs/operations.md for
    /// reaching an https receiver through a local TLS proxy).
    pub url: String,
    /// Only events of streams whose stored name starts with this (a tenant's streams are
    /// `<tenant>:<stream>`); absent: every stream except the `$` system streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Only events of these types; empty: every type.
    #[serde(default)]
    pub types: Vec<String>,
    /// The HMAC-SHA256 key of `X-Logbook-Signature`.
    pub secret: String,
    /// Where a new webhook starts: `start` (the first event of the log, the default) or `end`
    /// (only events appended after its group is created). Read only when the group is created.
    #[serde(default = "default_from")]
    pub from: String,
    /// One attempt (connect, send, response head) may take this long, then it failed.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Failed attempts at one event before it goes to the dead-letter stream.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Wait after the first failure; doubled after each further one ...
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    /// ... up to this.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
}

fn default_from() -> String {
    FROM_START.to_string()
}
fn default_timeout_ms() -> u64 {
    5_000
}
fn default_max_attempts() -> u32 {
    10
}
fn default_backoff_initial_ms() -> u64 {
    500
}
fn default_backoff_max_ms() -> u64 {
    60_000
}

/// The secret stays out of logs and panics.
impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .field("types", &self.types)
            .field("secret", &"<redacted>")
            .field("from", &self.from)
            .field("timeout_ms", &self.timeout_ms)
            .field("max_attempts", &self.max_attempts)
            .field("backoff_initial_ms", &self.backoff_initial_ms)
            .field("backoff_max_ms", &self.backoff_max_ms)
            .finish()
    }
}

/// Where a webhook's URL points, taken apart once at validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// `host:port` to connect to.
    pub authority: String,
    /// The `Host` header.
    pub host_header: String,
    /// Path and query, at least `/`.
    pub path_and_query: String,
}

impl WebhookConfig {
    /// A webhook with the default timeout, attempts and backoff.
    pub fn new(name: impl Into<String>, url: impl Into<String>, secret: impl Into<String>) -> Self {
        WebhookConfig {
            name: name.into(),
            url: url.into(),
            prefix: None,
            types: Vec::new(),
            secret: secret.into(),
            from: default_from(),
            timeout_ms: default_timeout_ms(),
            max_attempts: default_max_attempts(),
            backoff_initial_ms: default_backoff_initial_ms(),
            backoff_max_ms: default_backoff_max_ms(),
        }
    }

    /// The consumer group that holds this webhook's checkpoint.
    pub fn group_name(&self) -> String {
        format!("{WEBHOOK_GROUP_PREFIX}{}", self.name)
    }

    /// The system stream its undeliverable events go to.
    pub fn dead_letter_stream(&self) -> String {
        format!("{DEAD_LETTER_STREAM_PREFIX}{}", self.name)
    }

    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// How long to wait after the `failures`-th failure in a row (1 = the first):
    /// `backoff_initial_ms * 2^(failures-1)`, capped at `backoff_max_ms`.
    pub(crate) fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(63);
        let ms = self.backoff_initial_ms.saturating_mul(1u64 << doublings).min(self.backoff_max_ms);
        Duration::from_millis(ms)
    }

    /// The URL taken apart (validation has checked it parses).
    pub(crate) fn target(&self) -> Result<Target, String> {
        parse_url(&self.url)
    }

    /// Checks one entry; errors name the field (the caller prefixes the entry).
    fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.len() > MAX_WEBHOOK_NAME_BYTES {
            return Err(format!("name must be 1 to {MAX_WEBHOOK_NAME_BYTES} characters"));
        }
        if !self.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(format!("name '{}' may only hold letters, digits, '_' and '-'", self.name));
        }
        parse_url(&self.url).map_err(|e| format!("url {e}"))?;
        if let Some(prefix) = &self.prefix {
            if prefix.is_empty() {
                return Err("prefix is empty (leave it out to take every stream)".into());
            }
            if prefix.starts_with('$') {
                return Err(format!("prefix '{prefix}' names system streams, which webhooks never deliver"));
            }
            logbook::validate_stream_name(prefix).map_err(|e| format!("prefix: {e}"))?;
        }
        if self.types.len() > MAX_WEBHOOK_TYPES {
            return Err(format!("types names {} types, at most {MAX_WEBHOOK_TYPES}", self.types.len()));
        }
        if self.types.iter().any(String::is_empty) {
            return Err("types holds an empty type".into());
        }
        if self.secret.is_empty() {
            return Err("secret is empty: receivers could not tell our requests from anyone's".into());
        }
        if self.from != FROM_START && self.from != FROM_END {
            return Err(format!("from is '{}', must be \"{FROM_START}\" or \"{FROM_END}\"", self.from));
        }
        for (field, value, max) in [
            ("timeout_ms", self.timeout_ms, MAX_WEBHOOK_WAIT_MS),
            ("backoff_initial_ms", self.backoff_initial_ms, MAX_WEBHOOK_WAIT_MS),
            ("backoff_max_ms", self.backoff_max_ms, MAX_WEBHOOK_WAIT_MS),
            ("max_attempts", u64::from(self.max_attempts), u64::from(MAX_WEBHOOK_ATTEMPTS)),
        ] {
            if value == 0 || value > max {
                return Err(format!("{field} is {value}, must be 1 to {max}"));
            }
        }
        if self.backoff_max_ms < self.backoff_initial_ms {
            return Err(format!(
                "backoff_max_ms ({}) is below backoff_initial_ms ({})",
                self.backoff_max_ms, self.backoff_initial_ms
            ));
        }
        Ok(())
    }
}

/// Checks every `[[webhooks]]` entry and that their names are unique; the error names the
/// entry (`webhooks[i]`, and its name when it has one) and the field.
pub fn validate_webhooks(webhooks: &[WebhookConfig]) -> Result<(), String> {
    if webhooks.len() > MAX_WEBHOOKS {
        return Err(format!("{} webhooks configured, at most {MAX_WEBHOOKS}", webhooks.len()));
    }
    for (i, webhook) in webhooks.iter().enumerate() {
        let entry = if webhook.name.is_empty() {
            format!("webhooks[{i}]")
        } else {
            format!("webhooks[{i}] ('{}')", webhook.name)
        };
        webhook.validate().map_err(|e| format!("{entry}: {e}"))?;
        if webhooks[..i].iter().any(|other| other.name == webhook.name) {
            return Err(format!("{entry}: name '{}' is used by an earlier webhook", webhook.name));
        }
    }
    Ok(())
}

/// Takes `http://host[:port][/path][?query]` apart. https and anything but a plain host are
/// refused with a reason.
fn parse_url(url: &str) -> Result<Target, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("'{url}' is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "'{url}': https is not supported (logbook sends plain HTTP); point the webhook at a \
                 TLS-terminating proxy on loopback that forwards to the https receiver (see docs/operations.md)"
            ))
        }
        _ => return Err(format!("'{url}' must start with http://")),
    }
    let authority = uri.authority().ok_or_else(|| format!("'{url}' has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("'{url}': credentials in the URL are not supported (the signature authenticates us)"));
    }
    let host = authority.host();
    if host.is_empty() {
        return Err(format!("'{url}' has no host"));
    }
    // Read the port from the text after the host: the parser's own `port()` is None both when
    // there is none and when it does not fit 16 bits (it takes `:99999`), and only the first
    // may default to 80, or a typo would send signed bodies to whatever listens on port 80.
    let after_host = authority.as_str().strip_prefix(host).unwrap_or("");
    let port = match after_host.strip_prefix(':') {
        None if after_host.is_empty() => 80,
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => return Err(format!("'{url}': the port must be 1 to 65535")),
        },
        None => return Err(format!("'{url}' has no host")),
    };
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let path_and_query = if path_and_query.is_empty() { "/" } else { path_and_query };
    Ok(Target {
        authority: format!("{host}:{port}"),
        host_header: authority.as_str().to_string(),
        path_and_query: path_and_query.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook() -> WebhookConfig {
        WebhookConfig::new("orders", "http://127.0.0.1:9000/hooks/logbook?x=1", "s3cret")
    }

    fn error_of(mut change: impl FnMut(&mut WebhookConfig)) -> String {
        let mut webhook = hook();
        change(&mut webhook);
        validate_webhooks(&[webhook]).unwrap_err()
    }

    #[test]
    fn a_plain_http_webhook_is_valid_and_taken_apart() {
        validate_webhooks(&[hook()]).unwrap();
        let target = hook().target().unwrap();
        assert_eq!(target.authority, "127.0.0.1:9000");
        assert_eq!(target.host_header, "127.0.0.1:9000");
        assert_eq!(target.path_and_query, "/hooks/logbook?x=1");
        let bare = WebhookConfig::new("a", "http://example.invalid", "s").target().unwrap();
        assert_eq!((bare.authority.as_str(), bare.path_and_query.as_str()), ("example.invalid:80", "/"));
        assert_eq!(hook().group_name(), "$webhook-orders");
        assert_eq!(hook().dead_letter_stream(), "$dead-letter-orders");
    }

    #[test]
    fn bad_entries_are_refused_naming_the_entry_and_the_field() {
        let err = error_of(|w| w.url = "https://hooks.example.com/x".into());
        assert!(err.starts_with("webhooks[0] ('orders'): url") && err.contains("https is not supported"), "{err}");
        assert!(error_of(|w| w.url = "ftp://x/".into()).contains("must start with http://"));
        assert!(error_of(|w| w.url = "not a url".into()).contains("is not a URL"));
        assert!(error_of(|w| w.url = "http://u:p@host/".into()).contains("credentials"));
        for port in ["99999", "0", "65536"] {
            let err = error_of(|w| w.url = format!("http://127.0.0.1:{port}/"));
            assert!(err.contains("the port must be 1 to 65535"), "{port}: {err}");
        }
        assert!(error_of(|w| w.secret.clear()).contains("secret is empty"));
        assert!(error_of(|w| w.name = "a b".into()).contains("name 'a b' may only hold"));
        assert!(error_of(|w| w.name.clear()).starts_with("webhooks[0]: name must be"));
        assert!(error_of(|w| w.timeout_ms = 0).contains("timeout_ms is 0, must be 1 to 600000"));
        assert!(error_of(|w| w.max_attempts = 0).contains("max_attempts is 0"));
        assert!(error_of(|w| w.backoff_initial_ms = 0).contains("backoff_initial_ms is 0"));
        let err = error_of(|w| (w.backoff_initial_ms, w.backoff_max_ms) = (100, 50));
        assert!(err.contains("backoff_max_ms (50) is below backoff_initial_ms (100)"), "{err}");
        assert!(error_of(|w| w.prefix = Some("$all".into())).contains("system streams"));
        assert!(error_of(|w| w.prefix = Some(String::new())).contains("prefix is empty"));
        assert!(error_of(|w| w.types = vec![String::new()]).contains("empty type"));
        assert!(error_of(|w| w.from = "now".into()).contains(r#"from is 'now', must be "start" or "end""#));
        let err = validate_webhooks(&[hook(), WebhookConfig::new("x", "http://h/", "s"), hook()]).unwrap_err();
        assert!(err.starts_with("webhooks[2] ('orders'): name 'orders' is used"), "{err}");
    }

    #[test]
    fn backoff_doubles_from_the_initial_wait_up_to_the_cap() {
        let webhook = WebhookConfig { backoff_initial_ms: 100, backoff_max_ms: 1_000, ..hook() };
        let waits: Vec<u64> = (1..=7).map(|n| webhook.backoff(n).as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1_000, 1_000, 1_000]);
        assert_eq!(webhook.backoff(u32::MAX), Duration::from_millis(1_000), "no overflow");
        assert_eq!(webhook.backoff(0), Duration::from_millis(100));
    }

    #[test]
    fn the_secret_is_not_in_debug_output() {
        let text = format!("{:?}", hook());
        assert!(!text.contains("s3cret") && text.contains("<redacted>"), "{text}");
    }
}
