//! One thread per webhook: reads its group one event at a time, POSTs it until a 2xx, backs
//! off between failures, dead-letters it after `max_attempts`, acknowledges, moves on.
//!
//! Order: the worker is the group's only consumer and holds one event at a time, so events
//! leave in log order, and so in order per stream. At-least-once: an event is acknowledged
//! (durably) only after its 2xx or its dead letter, so a restart or a kill -9 resumes at the
//! first unacknowledged event and may deliver the one in flight again.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::header::HeaderValue;

use logbook::{ExpectedVersion, GroupConfig, NewEvent, RecordedEvent, Store};

use super::body::{dead_letter_body, event_body, signature, EVENT_ID_HEADER, SIGNATURE_HEADER};
use super::post::{attempt, Attempt, Delivery, STOP_CHECK};
use super::settings::{Target, WebhookConfig, FROM_END};
use super::{WebhookCounters, DEAD_LETTER_TYPE};
use crate::{io_error, ServerError, Shared};

/// The consumer name of the worker in its group.
const CONSUMER: &str = "webhook";
/// How long one group read waits for a new event (also how soon an idle worker sees a
/// shutdown).
const READ_BLOCK: Duration = Duration::from_millis(200);
/// The group's ack wait. The worker never reads while it holds an event, so an event still
/// pending at a read is one a previous run was delivering when it stopped: it must come
/// first, at once, so the shortest wait is the right one.
const ACK_WAIT: Duration = Duration::from_millis(1);
/// Wait after a store error (a failed read, ack or dead-letter append) before trying again.
const STORE_RETRY: Duration = Duration::from_millis(500);

/// Creates each webhook's group when missing, from the first position or (`from = "end"`) the
/// one after the head. A group whose filter differs from the config's
/// is recreated with the new filter from the position after its checkpoint: nothing already
/// acknowledged is delivered again, and events after it are filtered the new way.
pub(crate) fn prepare_groups(store: &Store, webhooks: &[WebhookConfig]) -> Result<(), ServerError> {
    for webhook in webhooks {
        // Name the webhook: "5 groups exist, limit 5" alone does not say which entry failed.
        prepare_group(store, webhook).map_err(|err| {
            ServerError::Config(format!(
                "webhook '{}': its consumer group '{}': {err}",
                webhook.name,
                webhook.group_name()
            ))
        })?;
    }
    Ok(())
}

fn prepare_group(store: &Store, webhook: &WebhookConfig) -> logbook::Result<()> {
    let group = webhook.group_name();
    let wanted = GroupConfig {
        from: 1,
        stream_prefix: webhook.prefix.clone(),
        event_types: webhook.types.clone(),
        ack_wait: ACK_WAIT,
    };
    if !store.group_names(&group).contains(&group) {
        let from = if webhook.from == FROM_END { store.head_position() + 1 } else { 1 };
        return store.create_group(&group, GroupConfig { from, ..wanted });
    }
    let info = store.group_info(&group)?;
    if info.config.stream_prefix == wanted.stream_prefix && info.config.event_types == wanted.event_types {
        return Ok(());
    }
    tracing::warn!(
        webhook = %webhook.name,
        checkpoint = info.checkpoint,
        "the webhook's filter changed: its group is recreated from the position after its checkpoint"
    );
    store.delete_group(&group)?;
    store.create_group(&group, GroupConfig { from: info.checkpoint + 1, ..wanted })
}

/// Starts one worker thread per webhook; each stops soon after the server starts shutting down.
pub(crate) fn start_workers(shared: &Arc<Shared>) -> Result<Vec<JoinHandle<()>>, ServerError> {
    let mut workers = Vec::new();
    for (webhook, counters) in shared.config.webhooks.iter().zip(&shared.webhook_counters) {
        let target = webhook.target().map_err(ServerError::Config)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(io_error("starting a webhook runtime"))?;
        let worker = Worker {
            shared: Arc::clone(shared),
            webhook: webhook.clone(),
            target,
            counters: Arc::clone(counters),
            runtime,
        };
        let handle = std::thread::Builder::new()
            .name(format!("logbook-webhook-{}", webhook.name))
            .spawn(move || worker.run())
            .map_err(io_error("starting a webhook thread"))?;
        workers.push(handle);
    }
    Ok(workers)
}

/// Why a worker stopped what it was doing.
struct Stopped;

struct Worker {
    shared: Arc<Shared>,
    webhook: WebhookConfig,
    target: Target,
    counters: Arc<WebhookCounters>,
    runtime: tokio::runtime::Runtime,
}

impl Worker {
    fn run(self) {
        let group = self.webhook.group_name();
        tracing::info!(webhook = %self.webhook.name, url = %self.webhook.url, "webhook worker started");
        while !self.stopping() {
            let events = match self.store().read_group(&group, CONSUMER, 1, READ_BLOCK) {
                Ok(events) => events,
                Err(err) => {
                    tracing::warn!(webhook = %self.webhook.name, %err, "webhook cannot read its group");
                    if self.pause(STORE_RETRY).is_err() {
                        break;
                    }
                    continue;
                }
            };
            for event in events {
                if self.deliver(&event).is_err() {
                    return;
                }
            }
        }
    }

    fn store(&self) -> &Store {
        &self.shared.store
    }

    fn stopping(&self) -> bool {
        self.shared.is_shutting_down()
    }

    /// Sleeps `wait`, or less when the daemon starts shutting down.
    fn pause(&self, wait: Duration) -> Result<(), Stopped> {
        let until = Instant::now() + wait;
        loop {
            if self.stopping() {
                return Err(Stopped);
            }
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            std::thread::sleep(STOP_CHECK.min(until - now));
        }
    }

    /// Delivers one event until a 2xx or its dead letter, then acknowledges it.
    fn deliver(&self, event: &RecordedEvent) -> Result<(), Stopped> {
        let body = event_body(event);
        let headers = vec![
            (SIGNATURE_HEADER, header_value(signature(self.webhook.secret.as_bytes(), body.as_bytes()))),
            (EVENT_ID_HEADER, header_value(event.id().to_string())),
        ];
        let delivery =
            Delivery { target: &self.target, body: Bytes::from(body), headers, timeout: self.webhook.timeout() };
        let mut failures: u64 = 0;
        loop {
            let error = match attempt(&self.runtime, &delivery, &|| self.stopping()) {
                Attempt::Stopped => return Err(Stopped),
                Attempt::Answered(status) if (200..300).contains(&status) => {
                    self.acknowledge(event)?;
                    self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Attempt::Answered(status) => format!("HTTP status {status}"),
                Attempt::Failed(reason) => reason,
            };
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
            failures += 1;
            // For GROUP INFO's `failures`. The worker's own count decides the dead letter: the
            // group's per-position counts are in memory too, and bounded.
            if let Err(err) = self.store().record_group_failure(&self.webhook.group_name(), event.position()) {
                tracing::warn!(webhook = %self.webhook.name, %err, "cannot record a delivery failure");
            }
            tracing::warn!(
                webhook = %self.webhook.name,
                position = event.position(),
                stream = event.stream(),
                failures,
                %error,
                "webhook delivery failed"
            );
            if failures >= u64::from(self.webhook.max_attempts) {
                self.dead_letter(event, &delivery.body, failures, &error)?;
                return self.acknowledge(event);
            }
            let wait = self.webhook.backoff(u32::try_from(failures).unwrap_or(u32::MAX));
            self.pause(wait)?;
        }
    }

    /// Acknowledges `event` in the group, retrying a store error until it succeeds or the
    /// daemon stops.
    fn acknowledge(&self, event: &RecordedEvent) -> Result<(), Stopped> {
        loop {
            match self.store().ack_group(&self.webhook.group_name(), &[event.position()]) {
                Ok(_) => return Ok(()),
                Err(err) => {
                    tracing::error!(webhook = %self.webhook.name, position = event.position(), %err, "cannot acknowledge a webhook delivery");
                    self.pause(STORE_RETRY)?;
                }
            }
        }
    }

    /// Appends the undelivered body to `$dead-letter-<name>`, retrying a store error.
    fn dead_letter(&self, event: &RecordedEvent, body: &Bytes, attempts: u64, error: &str) -> Result<(), Stopped> {
        let text = String::from_utf8_lossy(body);
        let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
        let letter = dead_letter_body(&self.webhook.name, attempts, error, &text);
        let stream = self.webhook.dead_letter_stream();
        loop {
            let events = vec![NewEvent::new(DEAD_LETTER_TYPE, letter.clone().into_bytes())];
            match self.store().append_system(&stream, ExpectedVersion::Any, events) {
                Ok(_) => {
                    self.counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        webhook = %self.webhook.name,
                        position = event.position(),
                        stream = event.stream(),
                        attempts,
                        %error,
                        dead_letter_stream = %stream,
                        "webhook gave up on an event; it is in the dead-letter stream"
                    );
                    return Ok(());
                }
                Err(err) => {
                    tracing::error!(webhook = %self.webhook.name, %err, "cannot append a dead letter");
                    self.pause(STORE_RETRY)?;
                }
            }
        }
    }
}

/// A header value from text we made (hex, a UUID): always visible ASCII.
fn header_value(text: String) -> HeaderValue {
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(store: &Store, stream: &str, event_type: &str) -> u64 {
        let result =
            store.append(stream, ExpectedVersion::Any, vec![NewEvent::new(event_type, b"{}".to_vec())]).unwrap();
        result.first_position
    }

    #[test]
    fn groups_are_created_once_and_recreated_after_the_checkpoint_when_the_filter_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), logbook::Options::default()).unwrap();
        let mut webhook = WebhookConfig::new("search", "http://127.0.0.1:9/", "k");
        webhook.prefix = Some("order-".into());
        let first = append(&store, "order-1", "A");
        append(&store, "order-2", "B");
        prepare_groups(&store, std::slice::from_ref(&webhook)).unwrap();
        let group = webhook.group_name();
        let info = store.group_info(&group).unwrap();
        assert_eq!((info.config.from, info.config.stream_prefix.as_deref()), (1, Some("order-")));
        // Deliver and acknowledge the first event; an unchanged config keeps the group as it is.
        let delivered = store.read_group(&group, CONSUMER, 1, Duration::ZERO).unwrap();
        assert_eq!(delivered[0].position(), first);
        store.ack_group(&group, &[first]).unwrap();
        prepare_groups(&store, std::slice::from_ref(&webhook)).unwrap();
        assert_eq!(store.group_info(&group).unwrap().checkpoint, first);
        // A new filter: the group starts again after its checkpoint, filtered the new way.
        webhook.types = vec!["B".into()];
        prepare_groups(&store, std::slice::from_ref(&webhook)).unwrap();
        let info = store.group_info(&group).unwrap();
        assert_eq!((info.config.from, info.config.event_types.as_slice()), (first + 1, &["B".to_string()][..]));
        let next: Vec<(String, String)> = store
            .read_group(&group, CONSUMER, 10, Duration::ZERO)
            .unwrap()
            .iter()
            .map(|e| (e.stream().to_string(), e.event_type().to_string()))
            .collect();
        assert_eq!(next, [("order-2".to_string(), "B".to_string())]);
        // A new webhook from the end sees only what comes after it.
        let mut late = WebhookConfig::new("late", "http://127.0.0.1:9/", "k");
        late.from = "end".into();
        prepare_groups(&store, std::slice::from_ref(&late)).unwrap();
        let after = append(&store, "order-3", "C");
        let delivered = store.read_group(&late.group_name(), CONSUMER, 10, Duration::ZERO).unwrap();
        assert_eq!(delivered.iter().map(RecordedEvent::position).collect::<Vec<_>>(), [after]);
        store.close().unwrap();
    }
}
