//! INFO, VERSION, HEAD.

use std::sync::atomic::Ordering;

use crate::auth::Identity;
use crate::connection::Session;
use crate::pipeline::as_i64;
use crate::Shared;
use logbook_protocol::{ProtocolVersion, Value};

use super::store_name;

/// `VERSION <stream>`: the stream's last version, 0 when it has no events.
pub(super) fn version(shared: &Shared, who: &Identity, stream: &str) -> Value {
    match store_name(who, stream) {
        Ok(stored) => Value::Integer(as_i64(shared.store.stream_version(&stored))),
        Err(reply) => reply,
    }
}

/// `HEAD`: the last published position of the global log (0 when empty).
pub(super) fn head(shared: &Shared) -> Value {
    Value::Integer(as_i64(shared.store.head_position()))
}

/// The sections of INFO, in order.
const SECTIONS: &[&str] = &["server", "clients", "store", "stats"];

/// `INFO [section]`: `key:value` lines grouped under `# Section` headers, like Redis.
/// Global counters would tell one tenant about the others' traffic, so a tenant gets
/// `-NOPERM`; the admin (and an open daemon) see everything.
pub(super) fn info(shared: &Shared, session: &Session, who: &Identity, section: Option<&str>) -> Value {
    if let Identity::Tenant { .. } = who {
        return Value::error("NOPERM", "INFO shows every tenant's counters; AUTH as admin");
    }
    let wanted: Vec<&str> = match section {
        None | Some("all") | Some("default") | Some("everything") => SECTIONS.to_vec(),
        Some(s) if SECTIONS.contains(&s) => vec![s],
        Some(s) => return Value::error("ERR", &format!("unknown INFO section '{s}' (server, clients, store, stats)")),
    };
    let mut text = String::new();
    for name in wanted {
        if !text.is_empty() {
            text.push_str("\r\n");
        }
        text.push_str(&section_text(shared, session, name));
    }
    match session.proto {
        ProtocolVersion::Resp3 => Value::Verbatim { format: *b"txt", text: text.into_bytes() },
        ProtocolVersion::Resp2 => Value::BulkString(text.into_bytes()),
    }
}

fn section_text(shared: &Shared, session: &Session, name: &str) -> String {
    let lines: Vec<(&str, String)> = match name {
        "server" => vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("uptime_seconds", shared.started.elapsed().as_secs().to_string()),
            ("listen", shared.config.listen.clone()),
            ("data", shared.config.data.display().to_string()),
            ("auth", if shared.auth.required() { "tenants" } else { "open" }.to_string()),
            ("connection_id", session.id.to_string()),
        ],
        "clients" => vec![
            ("connections", shared.connection_count().to_string()),
            ("max_connections", shared.config.limits.max_connections.to_string()),
            ("connections_total", shared.stats.connections_total.load(Ordering::Relaxed).to_string()),
            ("connections_rejected", shared.stats.connections_rejected.load(Ordering::Relaxed).to_string()),
            ("unauthenticated_connections", shared.unauthenticated_count().to_string()),
            ("max_unauthenticated_connections", shared.config.limits.max_unauthenticated_connections.to_string()),
            ("unauthenticated_evicted", shared.stats.unauthenticated_evicted.load(Ordering::Relaxed).to_string()),
            ("reply_bytes_pending", shared.reply_budget().used().to_string()),
            ("helper_threads", shared.helpers.running().to_string()),
        ],
        "store" => {
            let store = &shared.store;
            vec![
                ("events", store.head_position().to_string()),
                ("head", store.head_position().to_string()),
                ("streams", store.stream_count().to_string()),
                ("segments", store.segment_count().to_string()),
                ("bytes", segment_bytes(shared).to_string()),
                ("writer", if store.writer_failure().is_some() { "stopped" } else { "ok" }.to_string()),
            ]
        }
        _ => {
            let stats = shared.store.stats();
            vec![
                ("appends", stats.appends.to_string()),
                ("events_appended", stats.events.to_string()),
                ("fsyncs", stats.fsyncs.to_string()),
                ("batches", stats.groups.to_string()),
                ("bytes_written", stats.bytes_written.to_string()),
                ("commands", shared.stats.commands.load(Ordering::Relaxed).to_string()),
                ("error_replies", shared.stats.error_replies.load(Ordering::Relaxed).to_string()),
                ("protocol_errors", shared.stats.protocol_errors.load(Ordering::Relaxed).to_string()),
                ("runs_answered_by_writer", shared.stats.runs_answered_by_writer.load(Ordering::Relaxed).to_string()),
                ("runs_left_to_connection", shared.stats.runs_left_to_connection.load(Ordering::Relaxed).to_string()),
                (
                    "runs_waiting_for_the_queue",
                    shared.stats.runs_waiting_for_the_queue.load(Ordering::Relaxed).to_string(),
                ),
                (
                    "replies_written_by_helpers",
                    shared.stats.replies_written_by_helpers.load(Ordering::Relaxed).to_string(),
                ),
            ]
        }
    };
    let mut title = name.to_string();
    title[..1].make_ascii_uppercase();
    let mut text = format!("# {title}\r\n");
    for (key, value) in lines {
        text.push_str(key);
        text.push(':');
        text.push_str(&value);
        text.push_str("\r\n");
    }
    text
}

/// Bytes the segment files take on disk (allocated blocks, as `logbook stats` counts them).
pub(crate) fn segment_bytes(shared: &Shared) -> u64 {
    logbook::DataDir::new(&shared.config.data).disk_usage().allocated
}
