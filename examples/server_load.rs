//! Append load against the daemon over loopback, to justify the concurrency model.
//!
//! Starts an in-process server on 127.0.0.1:0 over a temporary store (durable appends,
//! `SyncMode::Always`), then for each connection count runs that many client threads, each
//! appending one 100-byte event per request to its own stream for a fixed time, and prints
//! events/s plus fsyncs and group commits. A last row pipelines 64 appends per round trip on
//! one connection.
//!
//! ```text
//! cargo run --release --example server_load -- [seconds per row, default 3] [connections...]
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use logbook::ExpectedVersion;
use logbook_server::client::Client;
use logbook_server::{Config, Server};

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    let mut counts: Vec<usize> = args.filter_map(|s| s.parse().ok()).collect();
    if counts.is_empty() {
        counts = vec![1, 64, 512];
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config { data: dir.path().to_path_buf(), listen: "127.0.0.1:0".into(), ..Config::default() };
    let server = Server::start(config).expect("server");
    let addr = server.local_addr();
    let data = vec![b'x'; 100];
    println!("| connections | events/s | fsyncs/s | events per fsync |");
    println!("|---:|---:|---:|---:|");
    for &connections in &counts {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let mut monitor = Client::connect(addr).expect("connect");
        let threads: Vec<_> = (0..connections)
            .map(|i| {
                let (stop, done, data) = (Arc::clone(&stop), Arc::clone(&done), data.clone());
                std::thread::spawn(move || {
                    let mut client = Client::connect(addr).expect("connect");
                    let stream = format!("load-{connections}-{i}");
                    while !stop.load(Ordering::Relaxed) {
                        client.append(&stream, "T", &data, ExpectedVersion::Any).expect("append");
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        // Let every connection get going before measuring.
        std::thread::sleep(Duration::from_millis(300));
        let (start_events, start_fsyncs, started) =
            (done.load(Ordering::Relaxed), fsyncs(&mut monitor), Instant::now());
        std::thread::sleep(Duration::from_secs(seconds));
        let (events, synced) = (done.load(Ordering::Relaxed) - start_events, fsyncs(&mut monitor) - start_fsyncs);
        let elapsed = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().expect("thread");
        }
        println!(
            "| {connections} | {:.0} | {:.0} | {:.1} |",
            events as f64 / elapsed,
            synced as f64 / elapsed,
            events as f64 / synced.max(1) as f64
        );
    }
    // One connection, 64 pipelined appends to 64 streams per round trip.
    let mut monitor = Client::connect(addr).expect("connect");
    let mut raw = std::net::TcpStream::connect(addr).expect("connect");
    let mut request = Vec::new();
    for i in 0..64 {
        let stream = format!("pipe-{i}");
        let frame = format!("*4\r\n$6\r\nAPPEND\r\n${}\r\n{stream}\r\n$1\r\nT\r\n$100\r\n", stream.len());
        request.extend_from_slice(frame.as_bytes());
        request.extend_from_slice(&data);
        request.extend_from_slice(b"\r\n");
    }
    let (start_fsyncs, started) = (fsyncs(&mut monitor), Instant::now());
    let mut events = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    while started.elapsed() < Duration::from_secs(seconds) {
        use std::io::{Read, Write};
        raw.write_all(&request).expect("write");
        // Each reply is "*2\r\n:v\r\n:p\r\n"; count 64 of them by their "*2" headers.
        let mut got = 0;
        let mut text = Vec::new();
        while got < 64 {
            let n = raw.read(&mut buf).expect("read");
            text.extend_from_slice(&buf[..n]);
            got = text.windows(2).filter(|w| w == b"*2").count();
        }
        events += 64;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let synced = fsyncs(&mut monitor) - start_fsyncs;
    println!(
        "| 1 (pipeline 64) | {:.0} | {:.0} | {:.1} |",
        events as f64 / elapsed,
        synced as f64 / elapsed,
        events as f64 / synced.max(1) as f64
    );
    server.shutdown().expect("shutdown");
}

fn fsyncs(client: &mut Client) -> u64 {
    let info = client.info().expect("info");
    info.lines().find_map(|l| l.strip_prefix("fsyncs:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}
