//! The metrics in Prometheus text format (served by `http`, at `--metrics ADDR`).

use std::sync::atomic::Ordering;

use super::commands::info::segment_bytes;
use super::Shared;

/// The metrics in Prometheus text format.
pub(crate) fn render(shared: &Shared) -> String {
    let store = &shared.store;
    let stats = store.stats();
    let s = &shared.stats;
    let metrics: [(&str, &str, &str, u64); 19] = [
        ("logbook_uptime_seconds", "gauge", "Seconds since the server started.", shared.started.elapsed().as_secs()),
        ("logbook_head_position", "gauge", "Last published position of the global log.", store.head_position()),
        ("logbook_streams", "gauge", "Streams with at least one event.", store.stream_count() as u64),
        ("logbook_segments", "gauge", "Segment files.", store.segment_count() as u64),
        ("logbook_segment_bytes", "gauge", "Bytes of segment files on disk.", segment_bytes(shared)),
        ("logbook_appends_total", "counter", "Appends committed since start.", stats.appends),
        ("logbook_events_appended_total", "counter", "Events appended since start.", stats.events),
        ("logbook_fsyncs_total", "counter", "fdatasync calls since start.", stats.fsyncs),
        ("logbook_batches_total", "counter", "Group commits since start.", stats.groups),
        ("logbook_bytes_written_total", "counter", "Bytes written to segments since start.", stats.bytes_written),
        ("logbook_connections", "gauge", "Open client connections.", shared.connection_count() as u64),
        ("logbook_connections_total", "counter", "Connections accepted.", s.connections_total.load(Ordering::Relaxed)),
        (
            "logbook_connections_rejected_total",
            "counter",
            "Connections refused at max_connections.",
            s.connections_rejected.load(Ordering::Relaxed),
        ),
        (
            "logbook_unauthenticated_connections",
            "gauge",
            "Open connections that have not authenticated.",
            shared.unauthenticated_count() as u64,
        ),
        (
            "logbook_unauthenticated_evicted_total",
            "counter",
            "Unauthenticated connections closed to make room for newer ones.",
            s.unauthenticated_evicted.load(Ordering::Relaxed),
        ),
        (
            "logbook_reply_bytes_pending",
            "gauge",
            "Reply bytes waiting to be written, all connections.",
            shared.reply_budget().used() as u64,
        ),
        ("logbook_commands_total", "counter", "Commands received.", s.commands.load(Ordering::Relaxed)),
        ("logbook_error_replies_total", "counter", "Error replies sent.", s.error_replies.load(Ordering::Relaxed)),
        (
            "logbook_protocol_errors_total",
            "counter",
            "Connections closed for a malformed or oversized frame.",
            s.protocol_errors.load(Ordering::Relaxed),
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in metrics {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"));
    }
    out
}
