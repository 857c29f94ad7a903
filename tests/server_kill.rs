//! Kill test: the real `logbook serve` binary under pipelined append load from several client
//! threads is SIGKILLed mid-load, then restarted on the same directory. Every acknowledged
//! (stream, version, position) must be there, versions contiguous per stream, positions
//! strictly increasing, no duplicates, multi-event appends whole. A few rounds by default;
//! `LOGBOOK_TORTURE_ITERS=n` runs n rounds. The final stop uses SIGTERM and expects exit 0.

mod server_support;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use server_support::daemon::KillOnDrop;
use server_support::{events, field_int, field_str};

const CLIENT_THREADS: usize = 4;
const PIPELINE_DEPTH: usize = 16;

fn connect(addr: SocketAddr) -> redis::Connection {
    let client = redis::Client::open(format!("redis://{addr}/")).expect("url");
    let con = client.get_connection_with_timeout(Duration::from_secs(5)).expect("connect");
    con.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    con
}

/// One acknowledged event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Ack {
    stream: String,
    version: i64,
    position: i64,
}

/// Pipelines appends until the connection breaks; records what was acknowledged.
fn load(addr: SocketAddr, thread: usize, round: usize, stop: Arc<AtomicBool>, acks: Arc<Mutex<Vec<Ack>>>) {
    let Ok(client) = redis::Client::open(format!("redis://{addr}/")) else { return };
    let Ok(mut con) = client.get_connection_with_timeout(Duration::from_secs(5)) else { return };
    let _ = con.set_read_timeout(Some(Duration::from_secs(10)));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut batch = 0usize;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let mut pipe = redis::pipe();
        let mut streams = Vec::with_capacity(PIPELINE_DEPTH);
        for i in 0..PIPELINE_DEPTH {
            let stream = format!("k{thread}-{}", (batch + i) % 7);
            if i % 4 == 3 {
                // A three-event atomic append; its events must survive together or not at all.
                let tag = format!("{round}-{thread}-{batch}-{i}");
                let json = format!(
                    r#"[{{"type":"M","data":"{tag}/0"}},{{"type":"M","data":"{tag}/1"}},{{"type":"M","data":"{tag}/2"}}]"#
                );
                pipe.cmd("APPENDMANY").arg(&stream).arg(json);
            } else {
                pipe.cmd("APPEND").arg(&stream).arg("S").arg(format!("\"{round}-{thread}-{batch}-{i}\""));
            }
            streams.push((stream, i % 4 == 3));
        }
        let Ok(replies) = pipe.query::<Vec<Vec<i64>>>(&mut con) else { return };
        let mut acked = acks.lock().expect("acks");
        for ((stream, many), reply) in streams.into_iter().zip(replies) {
            if many {
                let (first, last, last_pos) = (reply[0], reply[1], reply[2]);
                assert_eq!(last - first, 2);
                for k in 0..3 {
                    acked.push(Ack { stream: stream.clone(), version: first + k, position: last_pos - 2 + k });
                }
            } else {
                acked.push(Ack { stream, version: reply[0], position: reply[1] });
            }
        }
        batch += PIPELINE_DEPTH;
    }
}

/// Reads the whole log through the server and checks it against the acknowledgements.
fn verify(addr: SocketAddr, acks: &[Ack]) -> usize {
    let mut con = connect(addr);
    let mut log: Vec<Ack> = Vec::new();
    let mut batches: HashMap<String, usize> = HashMap::new();
    let mut from = 1i64;
    loop {
        let page =
            events(redis::cmd("READALL").arg("FROM").arg(from).arg("COUNT").arg(10_000).query(&mut con).unwrap());
        let Some(last) = page.last() else { break };
        from = field_int(last, "position") + 1;
        for e in &page {
            log.push(Ack {
                stream: field_str(e, "stream"),
                version: field_int(e, "version"),
                position: field_int(e, "position"),
            });
            if field_str(e, "type") == "M" {
                let data = field_str(e, "data");
                let tag = data.trim_matches('"').rsplit_once('/').map(|(t, _)| t.to_string()).unwrap();
                *batches.entry(tag).or_default() += 1;
            }
        }
    }
    // Positions strictly increase and are never repeated.
    for pair in log.windows(2) {
        assert!(pair[0].position < pair[1].position, "positions out of order: {pair:?}");
    }
    // Versions per stream are contiguous from 1, no duplicates.
    let mut next_version: HashMap<&str, i64> = HashMap::new();
    for event in &log {
        let next = next_version.entry(&event.stream).or_insert(1);
        assert_eq!(event.version, *next, "stream {} version gap/duplicate at {event:?}", event.stream);
        *next += 1;
    }
    // Every acknowledged event is present, with the same version and position.
    let present: HashSet<&Ack> = log.iter().collect();
    for ack in acks {
        assert!(present.contains(ack), "acknowledged event lost or moved: {ack:?}");
    }
    // Atomic appends are whole.
    for (tag, n) in &batches {
        assert_eq!(*n, 3, "multi-event append {tag} is partial");
    }
    // READ agrees with READALL for a sample of streams (paged: a READ reply stops at
    // max_reply_bytes, which a stream of many rounds outgrows).
    for stream in next_version.keys().take(5) {
        let mut read = 0i64;
        loop {
            let page = events(
                redis::cmd("READ")
                    .arg(*stream)
                    .arg("FROM")
                    .arg(read + 1)
                    .arg("COUNT")
                    .arg(100_000)
                    .query(&mut con)
                    .unwrap(),
            );
            let Some(last) = page.last() else { break };
            assert_eq!(field_int(last, "version"), read + page.len() as i64, "READ of {stream} is contiguous");
            read += page.len() as i64;
        }
        assert_eq!(read, next_version[stream] - 1);
    }
    log.len()
}

/// `runs_answered_by_writer` from INFO stats.
fn runs_answered_by_writer(addr: SocketAddr) -> u64 {
    let info: String = redis::cmd("INFO").arg("stats").query(&mut connect(addr)).unwrap();
    info.lines().find_map(|l| l.strip_prefix("runs_answered_by_writer:")).unwrap().trim().parse().unwrap()
}

#[test]
fn sigkill_mid_load_loses_no_acknowledged_append() {
    let rounds: usize = std::env::var("LOGBOOK_TORTURE_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let dir = tempfile::tempdir().expect("tempdir");
    let addr: SocketAddr = format!("127.0.0.1:{}", server_support::daemon::free_port()).parse().expect("addr");
    let acks = Arc::new(Mutex::new(Vec::new()));
    let mut answered_by_writer = 0;
    for round in 0..rounds {
        let mut child = KillOnDrop(server_support::daemon::spawn_on(dir.path(), addr));
        if round > 0 {
            let n = verify(addr, &acks.lock().unwrap());
            eprintln!("round {round}: {n} events after restart, all acknowledged ones present");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..CLIENT_THREADS)
            .map(|t| {
                let (stop, acks) = (Arc::clone(&stop), Arc::clone(&acks));
                std::thread::spawn(move || load(addr, t, round, stop, acks))
            })
            .collect();
        // Kill at a different moment each round, while appends are in flight.
        std::thread::sleep(Duration::from_millis(250 + 97 * (round as u64 % 5)));
        // Runs the writer answered itself (the clients' pipelines overlap, so most are): the
        // kill lands among them too.
        answered_by_writer += runs_answered_by_writer(addr);
        child.0.kill().expect("SIGKILL");
        let _ = child.0.wait();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().expect("client thread");
        }
    }
    let mut child = KillOnDrop(server_support::daemon::spawn_on(dir.path(), addr));
    let acked = acks.lock().unwrap().clone();
    let n = verify(addr, &acked);
    eprintln!("final: {n} events, {} acknowledged, {answered_by_writer} runs answered by the writer", acked.len());
    assert!(answered_by_writer > 0, "no run was answered by the writer: the kills missed that path");
    assert!(!acked.is_empty(), "the load acknowledged nothing");
    // SIGTERM: a clean stop with exit status 0.
    // Our own child's pid, not reaped yet; kill(1) keeps `unsafe` out of the tests.
    let sent = std::process::Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    // The clean stop released the lock and left a store that opens.
    let store = logbook::Store::open(dir.path(), logbook::Options::default()).expect("reopen after SIGTERM");
    assert_eq!(store.head_position() as usize, n);
    store.close().unwrap();
}
