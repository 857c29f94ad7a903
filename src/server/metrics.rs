//! `--metrics ADDR`: Prometheus text exposition over plain HTTP/1.0, hand-written on a std
//! listener. One request per connection, answered inline; requests are bounded in size and time.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::commands::info::segment_bytes;
use super::Shared;

/// Largest HTTP request head read.
const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// How long one scrape may take to send its request and read the answer.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) fn serve(shared: &Shared, listener: &TcpListener) {
    for conn in listener.incoming() {
        if shared.is_shutting_down() {
            break;
        }
        if let Ok(stream) = conn {
            answer(shared, stream);
        }
    }
}

fn answer(shared: &Shared, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(SCRAPE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(SCRAPE_TIMEOUT));
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let room = MAX_REQUEST_BYTES.saturating_sub(head.len()).min(chunk.len());
        if room == 0 {
            return;
        }
        match stream.read(&mut chunk[..room]) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    let path = head.split(|&b| b == b' ').nth(1).unwrap_or(b"");
    let response = if head.starts_with(b"GET ") && (path == b"/metrics" || path == b"/") {
        let body = render(shared);
        format!(
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
    };
    let _ = stream.write_all(response.as_bytes());
}

/// The metrics in Prometheus text format.
pub(crate) fn render(shared: &Shared) -> String {
    let store = &shared.store;
    let stats = store.stats();
    let s = &shared.stats;
    let metrics: [(&str, &str, &str, u64); 16] = [
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
