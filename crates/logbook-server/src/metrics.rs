//! The metrics in Prometheus text format (served by `http`, at `--metrics ADDR`).

use std::sync::atomic::Ordering;

use super::commands::info::segment_bytes;
use super::Shared;

/// The metrics in Prometheus text format.
pub(crate) fn render(shared: &Shared) -> String {
    let store = &shared.store;
    let stats = store.stats();
    let s = &shared.stats;
    let metrics: [(&str, &str, &str, u64); 25] = [
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
        (
            "logbook_helper_threads",
            "gauge",
            "Threads running (or idle, kept for reuse) the commands an event loop may not wait for.",
            shared.helpers.running() as u64,
        ),
        (
            "logbook_console_api_requests",
            "gauge",
            "Console API requests queued for or running store work.",
            s.console_api_requests.load(Ordering::Relaxed),
        ),
        ("logbook_commands_total", "counter", "Commands received.", s.commands.load(Ordering::Relaxed)),
        ("logbook_error_replies_total", "counter", "Error replies sent.", s.error_replies.load(Ordering::Relaxed)),
        (
            "logbook_protocol_errors_total",
            "counter",
            "Connections closed for a malformed or oversized frame.",
            s.protocol_errors.load(Ordering::Relaxed),
        ),
        (
            "logbook_runs_answered_by_writer_total",
            "counter",
            "Runs of appends whose replies the writer thread wrote to the socket.",
            s.runs_answered_by_writer.load(Ordering::Relaxed),
        ),
        (
            "logbook_runs_left_to_connection_total",
            "counter",
            "Of those, runs whose replies the socket did not take at once (left to the connection).",
            s.runs_left_to_connection.load(Ordering::Relaxed),
        ),
        (
            "logbook_runs_waiting_for_the_queue_total",
            "counter",
            "Runs of appends that found the writer's queue full and waited for room on their connection.",
            s.runs_waiting_for_the_queue.load(Ordering::Relaxed),
        ),
        (
            "logbook_replies_written_by_helpers_total",
            "counter",
            "Replies a helper thread wrote to the socket itself.",
            s.replies_written_by_helpers.load(Ordering::Relaxed),
        ),
    ];
    let mut out = String::new();
    out.push_str(&format!(
        "# HELP logbook_build_info The running build (always 1).\n# TYPE logbook_build_info gauge\n\
         logbook_build_info{{version=\"{}\",profile=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION"),
        if cfg!(debug_assertions) { "debug" } else { "release" }
    ));
    for (name, kind, help, value) in metrics {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"));
    }
    histogram(
        &mut out,
        "logbook_fsync_duration_seconds",
        "How long each fdatasync of the active segment took.",
        &stats.fsync_micros,
        6,
    );
    histogram(
        &mut out,
        "logbook_append_duration_seconds",
        "How long each append took, from being handed to the store to its result.",
        &s.append_micros.snapshot(),
        6,
    );
    webhook_deliveries(&mut out, shared);
    histogram(&mut out, "logbook_group_commit_events", "Events written by each group commit.", &stats.group_events, 0);
    out
}

/// Each webhook's attempts by outcome: `delivered` (2xx), `failed` (any other answer, a
/// timeout, no connection: one per attempt), `dead_lettered` (given up). Absent without webhooks.
fn webhook_deliveries(out: &mut String, shared: &Shared) {
    if shared.webhook_counters.is_empty() {
        return;
    }
    let name = "logbook_webhook_deliveries_total";
    out.push_str(&format!(
        "# HELP {name} Webhook delivery attempts by outcome since start.
# TYPE {name} counter
"
    ));
    for counters in &shared.webhook_counters {
        // Webhook names are [A-Za-z0-9_-] (checked at config load): no escaping needed.
        for (outcome, count) in counters.outcomes() {
            out.push_str(&format!("{name}{{webhook=\"{}\",outcome=\"{outcome}\"}} {count}\n", counters.name));
        }
    }
}

/// Writes `counts` (the core's power-of-two buckets) as a Prometheus histogram, each bucket's
/// bound divided by 10^`unit_decimals` (6 turns µs into seconds). Every bucket is written, empty
/// or not, so the set of series never changes (Prometheus's quantiles need that).
fn histogram(out: &mut String, name: &str, help: &str, counts: &logbook::Log2Histogram, unit_decimals: u32) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} histogram\n"));
    let mut cumulative = 0;
    // The last bucket also holds everything larger: only +Inf may stand for it.
    for (i, count) in counts.counts.iter().enumerate().take(logbook::LOG2_BUCKETS - 1) {
        cumulative += count;
        let bound = scaled(logbook::Log2Histogram::upper_bound(i), unit_decimals);
        out.push_str(&format!("{name}_bucket{{le=\"{bound}\"}} {cumulative}\n"));
    }
    let total = counts.count();
    out.push_str(&format!("{name}_bucket{{le=\"+Inf\"}} {total}\n"));
    out.push_str(&format!("{name}_sum {}\n{name}_count {total}\n", scaled(counts.sum, unit_decimals)));
}

/// `value` divided by 10^`decimals`, written exactly (`14` µs with 6 decimals is `0.000014`;
/// floating point would write `0.000014999999999999999` for 15 × 1e-6).
fn scaled(value: u64, decimals: u32) -> String {
    let divisor = 10u64.pow(decimals);
    let (whole, fraction) = (value / divisor, value % divisor);
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:0width$}", width = decimals as usize);
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::scaled;

    #[test]
    fn bounds_and_sums_are_written_exactly() {
        assert_eq!(scaled(15, 6), "0.000015");
        assert_eq!(scaled(2_500_000, 6), "2.5");
        assert_eq!(scaled(3_000_000, 6), "3");
        assert_eq!(scaled(127, 0), "127");
        assert_eq!(scaled(0, 6), "0");
    }
}
