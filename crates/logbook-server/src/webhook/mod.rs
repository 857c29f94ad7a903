//! Outbound webhooks: each `[[webhooks]]` entry of the config is a consumer group
//! (`$webhook-<name>`) whose one consumer, a worker thread, POSTs every matching event to a
//! URL, signed, one at a time in log order, and acknowledges it on a 2xx. An event that keeps
//! failing goes to `$dead-letter-<name>` after `max_attempts` attempts. See docs/operations.md
//! ("Webhooks").
//!
//! Layout: `settings` (the config entry and its checks, backoff), `body` (the JSON body and
//! its signature), `post` (one HTTP attempt, bounded), `worker` (the group, retries, dead
//! letters).

mod body;
mod post;
mod settings;
mod worker;

use std::sync::atomic::{AtomicU64, Ordering};

pub use body::{signature, EVENT_ID_HEADER, SIGNATURE_HEADER};
pub use settings::{
    validate_webhooks, WebhookConfig, DEAD_LETTER_STREAM_PREFIX, FROM_END, FROM_START, MAX_WEBHOOKS,
    MAX_WEBHOOK_ATTEMPTS, MAX_WEBHOOK_NAME_BYTES, MAX_WEBHOOK_TYPES, MAX_WEBHOOK_WAIT_MS, WEBHOOK_GROUP_PREFIX,
};
pub(crate) use worker::{prepare_groups, start_workers};

/// The type of the events in a dead-letter stream.
pub const DEAD_LETTER_TYPE: &str = "WEBHOOK_DEAD_LETTER";

/// One webhook's counters since the daemon started (the metrics endpoint shows them).
#[derive(Debug, Default)]
pub(crate) struct WebhookCounters {
    pub name: String,
    /// Events the receiver acknowledged with a 2xx.
    pub delivered: AtomicU64,
    /// Attempts that failed (non-2xx, timeout, no connection).
    pub failed: AtomicU64,
    /// Events given up on and appended to the dead-letter stream.
    pub dead_lettered: AtomicU64,
}

impl WebhookCounters {
    pub fn new(name: &str) -> Self {
        WebhookCounters { name: name.to_string(), ..WebhookCounters::default() }
    }

    /// (outcome label, count) for the metrics endpoint.
    pub fn outcomes(&self) -> [(&'static str, u64); 3] {
        [
            ("delivered", self.delivered.load(Ordering::Relaxed)),
            ("failed", self.failed.load(Ordering::Relaxed)),
            ("dead_lettered", self.dead_lettered.load(Ordering::Relaxed)),
        ]
    }
}
