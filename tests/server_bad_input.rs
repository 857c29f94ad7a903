//! Hostile and broken input: random bytes, truncated frames, a 2^40-byte bulk length,
//! 10,000 nested arrays, oversized lines, a slow client. Each bad connection gets an error
//! (and is closed when its byte stream cannot be trusted); meanwhile another client keeps
//! getting answers, nothing bad is stored, and the server's memory stays bounded.

mod server_support;

use std::io::Write;
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::{Rng as _, SeedableRng};
use rand_xoshiro::SplitMix64;
use server_support::*;

/// Resident memory of this process (the server runs in it), in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Deterministic pseudo-random bytes (seeded SplitMix64), so a failure replays exactly.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    SplitMix64::seed_from_u64(seed).fill_bytes(&mut bytes);
    bytes
}

/// A client that appends and pings in a loop until told to stop; counts answers.
struct Healthy {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<Duration>,
}

impl Healthy {
    fn start(server: &TestServer) -> Healthy {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let mut con = server.redis();
        let (s, a) = (Arc::clone(&stop), Arc::clone(&answered));
        let thread = std::thread::spawn(move || {
            let mut worst = Duration::ZERO;
            let deadline = Instant::now() + Duration::from_secs(60);
            while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                let started = Instant::now();
                let v: Vec<i64> = redis::cmd("APPEND").arg("healthy-1").arg("T").arg("{}").query(&mut con).unwrap();
                let pong: String = redis::cmd("PING").query(&mut con).unwrap();
                assert_eq!(pong, "PONG");
                worst = worst.max(started.elapsed());
                let n = a.fetch_add(1, Ordering::Relaxed) + 1;
                assert_eq!(v[0] as u64, n, "healthy client's versions are contiguous");
                std::thread::sleep(Duration::from_millis(5));
            }
            worst
        });
        Healthy { stop, answered, thread }
    }

    /// Waits until the healthy client got `more` further answers (proves the server answers).
    fn wait_for_more(&self, more: u64) {
        let target = self.answered.load(Ordering::Relaxed) + more;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.answered.load(Ordering::Relaxed) < target {
            assert!(Instant::now() < deadline, "healthy client starved");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn stop(self) -> (u64, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let worst = self.thread.join().expect("healthy client");
        (self.answered.load(Ordering::Relaxed), worst)
    }
}

/// Sends `bytes`, closes our write side, and returns everything the server sent before closing.
fn send_and_finish(server: &TestServer, bytes: &[u8]) -> String {
    let mut raw = server.raw();
    let _ = raw.write_all(bytes); // the server may close before taking it all
    let _ = raw.shutdown(Shutdown::Write);
    String::from_utf8_lossy(&read_until_close(&mut raw)).into_owned()
}

#[test]
fn bad_input_closes_only_the_bad_connection() {
    let server = TestServer::start();
    let rss_before = rss_kib();
    let healthy = Healthy::start(&server);
    healthy.wait_for_more(3);

    // A bulk length of 2^40: refused from the header alone, nothing allocated.
    let reply = send_and_finish(&server, b"*2\r\n$4\r\nPING\r\n$1099511627776\r\n");
    assert!(reply.starts_with("-TOOBIG"), "{reply}");
    // An array of 2^40 elements, likewise.
    let reply = send_and_finish(&server, b"*1099511627776\r\n");
    assert!(reply.starts_with("-TOOBIG"), "{reply}");
    // 10,000 nested arrays: refused at the nesting limit, without recursion.
    let reply = send_and_finish(&server, &b"*1\r\n".repeat(10_000));
    assert!(reply.starts_with("-TOOBIG"), "{reply}");
    // An inline line with no end.
    let reply = send_and_finish(&server, &vec![b'A'; 200 * 1024]);
    assert!(reply.starts_with("-TOOBIG"), "{reply}");
    // Not an array of strings, bad type bytes, bad lengths: a protocol error, then close.
    for bad in [&b":1\r\n"[..], b"*1\r\n:5\r\n", b"@\r\n", b"*1\r\n$-5\r\n", b"*1\r\n$3\r\nabcd\r\n", b"|1\r\n"] {
        let reply = send_and_finish(&server, bad);
        assert!(reply.starts_with("-ERR Protocol error"), "{bad:?} -> {reply}");
    }
    healthy.wait_for_more(3);

    // Truncated frames: nothing runs, nothing is stored, the connection just ends.
    let append = b"*4\r\n$6\r\nAPPEND\r\n$5\r\nbad-1\r\n$1\r\nT\r\n$2\r\n{}\r\n";
    for cut in 1..append.len() {
        let reply = send_and_finish(&server, &append[..cut]);
        assert!(reply.is_empty() || reply.starts_with('-'), "cut {cut}: {reply}");
    }
    // Commands before a bad frame still run and are answered, then the connection closes.
    let mut mixed = b"PING\r\n".to_vec();
    mixed.extend_from_slice(b"*1\r\n$999999999999\r\n");
    mixed.extend_from_slice(b"PING\r\n");
    let reply = send_and_finish(&server, &mixed);
    assert!(reply.starts_with("+PONG\r\n-TOOBIG"), "{reply}");
    assert!(!reply.contains("PONG\r\n+PONG"), "nothing after the bad frame runs: {reply}");

    // Random bytes, many seeds and sizes.
    for seed in 1..=40u64 {
        let len = 1 + (seed as usize * 977) % 16_384;
        let _ = send_and_finish(&server, &random_bytes(seed, len));
    }
    healthy.wait_for_more(3);

    // A slow client: one byte per 50 ms. It is answered when its command completes, and the
    // healthy client is answered all along.
    let mut slow = server.raw();
    let started = Instant::now();
    let answered_before = healthy.answered.load(Ordering::Relaxed);
    for &b in b"*2\r\n$4\r\nPING\r\n$4\r\nslow\r\n" {
        slow.write_all(&[b]).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut reply = [0u8; 10];
    std::io::Read::read_exact(&mut slow, &mut reply).unwrap();
    assert_eq!(&reply, b"$4\r\nslow\r\n");
    assert!(started.elapsed() >= Duration::from_millis(1000));
    assert!(
        healthy.answered.load(Ordering::Relaxed) > answered_before + 10,
        "the healthy client kept getting answers while the slow one dribbled"
    );

    // Many connections each holding a partial 4 MiB bulk: bounded by the per-connection buffer.
    let mut partial = Vec::new();
    for _ in 0..8 {
        let mut raw = server.raw();
        raw.write_all(b"*4\r\n$6\r\nAPPEND\r\n$5\r\nbig-1\r\n$1\r\nT\r\n$4194304\r\n").unwrap();
        raw.write_all(&vec![b'x'; 1024 * 1024]).unwrap();
        partial.push(raw);
    }
    healthy.wait_for_more(3);
    drop(partial);

    let (answered, worst) = healthy.stop();
    eprintln!("healthy client: {answered} answered, worst round trip {worst:?}");
    assert!(worst < Duration::from_secs(2), "worst healthy round trip {worst:?}");

    // Nothing from the bad connections was stored.
    let mut con = server.redis();
    let head: u64 = redis::cmd("HEAD").query(&mut con).unwrap();
    assert_eq!(head, answered, "only the healthy client's appends are stored");
    let version: u64 = redis::cmd("VERSION").arg("bad-1").query(&mut con).unwrap();
    assert_eq!(version, 0);
    let rss_growth_mib = rss_kib().saturating_sub(rss_before) / 1024;
    eprintln!("RSS growth: {rss_growth_mib} MiB");
    assert!(rss_growth_mib < 256, "RSS grew {rss_growth_mib} MiB");
}

#[test]
fn pipeline_buffer_limit_is_enforced() {
    let mut config = logbook_server::Config::default();
    config.limits.max_bulk_bytes = 1024;
    config.limits.max_pipeline_bytes = 1024 + 64 * 1024;
    let server = TestServer::start_with(config);
    // A bulk one byte over the limit.
    let reply = send_and_finish(&server, b"*4\r\n$6\r\nAPPEND\r\n$1\r\ns\r\n$1\r\nT\r\n$1025\r\n");
    assert!(reply.starts_with("-TOOBIG"), "{reply}");
    // Exactly at the limit is fine.
    let mut ok = b"*4\r\n$6\r\nAPPEND\r\n$1\r\ns\r\n$1\r\nT\r\n$1024\r\n".to_vec();
    ok.extend_from_slice(&[b'x'; 1024]);
    ok.extend_from_slice(b"\r\n");
    let reply = send_and_finish(&server, &ok);
    assert_eq!(reply, "*2\r\n:1\r\n:1\r\n");
    // Many complete pipelined commands larger in total than the buffer still all run:
    // the buffer bounds unexecuted bytes, not the pipeline's total.
    let many = b"PING\r\n".repeat(40_000);
    let reply = send_and_finish(&server, &many);
    assert_eq!(reply.matches("+PONG").count(), 40_000);
}

#[test]
fn a_request_trickled_past_its_deadline_closes_the_connection() {
    let limits = logbook_server::Limits { request_timeout_secs: 1, ..Default::default() };
    let server = TestServer::start_with(logbook_server::Config { limits, ..logbook_server::Config::default() });
    let mut slow = server.raw();
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    // One byte every 100 ms: never idle, but the request takes far longer than 1 s.
    let request = b"*2\r\n$4\r\nPING\r\n$20\r\naaaaaaaaaaaaaaaaaaaa\r\n";
    let mut closed = false;
    for &b in request.iter() {
        if slow.write_all(&[b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() > Duration::from_millis(2500) {
            break;
        }
    }
    let mut reply = Vec::new();
    let _ = std::io::Read::read_to_end(&mut slow, &mut reply);
    let text = String::from_utf8_lossy(&reply);
    assert!(closed || text.contains("request not complete within 1 s"), "reply: {text:?}");
    assert!(started.elapsed() < Duration::from_secs(8));
    // Other clients are unaffected.
    let mut con = server.redis();
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
}

#[test]
fn replies_to_appends_before_a_malformed_or_oversized_request_come_before_its_error() {
    let server = TestServer::start();
    let append =
        |stream: &str| format!("*4\r\n$6\r\nAPPEND\r\n${}\r\n{stream}\r\n$1\r\nT\r\n$1\r\nx\r\n", stream.len());
    // Two appends, then a frame that cannot be parsed, in one write: the appends run, and their
    // replies come first, then the error, then the close.
    let malformed = format!("{}{}*1\r\n$x\r\n", append("order-1"), append("order-2"));
    let reply = send_and_finish(&server, malformed.as_bytes());
    assert!(reply.starts_with("*2\r\n:1\r\n:1\r\n*2\r\n:1\r\n:2\r\n-ERR"), "{reply:?}");
    // The same with a bulk string over max_bulk_bytes (4 MiB) announced after the appends.
    let oversized = format!("{}*2\r\n$4\r\nPING\r\n$5242880\r\n", append("order-3"));
    let reply = send_and_finish(&server, oversized.as_bytes());
    assert!(reply.starts_with("*2\r\n:1\r\n:3\r\n-TOOBIG"), "{reply:?}");
}
