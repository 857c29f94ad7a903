//! SIGKILL torture (reliability.md, test 5). A child process (this test binary, re-executed)
//! appends from several threads — batches of random size, random streams, random expected
//! versions; one attempt in three an atomic multi-stream append (`Store::append_batch`, 2-4
//! parts, sometimes naming one stream twice) — and logs every attempt (with its parts) before
//! it is sent and every acknowledgement (every part's result) after it returns. The parent
//! kills it with SIGKILL at a random moment, reopens the store, and checks: every acknowledged
//! event is present, byte-identical, with its version and position, every part of an
//! acknowledged batch included; nothing appears that was never attempted; batches are whole
//! (all parts of a multi-stream batch, each in its stream, or none of them); versions are 1..n
//! per stream and positions 1..head; the store accepts new appends. Then it repeats on the
//! same directory.
//!
//! The child's stderr is kept: a child that died on its own (a panic, a failed open, an exit)
//! instead of by our SIGKILL fails the test with what it printed, as does a child whose thread
//! panicked while the others ran on until the kill.
//!
//! CI runs 25 rounds; `LOGBOOK_TORTURE_ITERS` sets another number.

use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use logbook::{AppendPart, Error, ExpectedVersion, Filter, NewEvent, Options, Store};
use rand_core::{Rng as _, SeedableRng};
use rand_xoshiro::SplitMix64;

const CHILD_ENV: &str = "LOGBOOK_TORTURE_CHILD_DIR";
const THREADS: u64 = 4;
const STREAMS: u64 = 12;

/// Small segments (many rollovers), and the synced point recorded in the manifest after every
/// fdatasync, so kills also land inside the manifest's atomic rewrite.
fn options() -> Options {
    Options { segment_bytes: 16 * 1024, synced_record_every: std::time::Duration::ZERO, ..Options::default() }
}

fn rounds() -> usize {
    std::env::var("LOGBOOK_TORTURE_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(25)
}

/// Uniform enough in `0..n` for picking streams and sizes.
fn below(rng: &mut SplitMix64, n: u64) -> u64 {
    rng.next_u64() % n
}

/// The data of event `j` of `n` in attempt `tag` (counted across a batch's parts):
/// self-describing, so the checker can tell which attempt and batch any stored event came from.
fn payload(tag: &str, j: u64, n: u64, pad: u64) -> Vec<u8> {
    format!("{tag}|{j}|{n}|{}", "p".repeat(pad as usize)).into_bytes()
}

/// The child: runs until killed.
#[test]
#[ignore = "entry point of the torture child process; run by sigkill_torture"]
fn torture_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else { return };
    let dir = Path::new(&dir);
    let round: u64 = std::env::var("LOGBOOK_TORTURE_ROUND").unwrap().parse().unwrap();
    let store = Store::open(dir, options()).unwrap();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            let attempts = dir.join(format!("attempts-{round}-{t}.log"));
            let acks = dir.join(format!("acks-{round}-{t}.log"));
            std::thread::spawn(move || {
                let mut attempts = OpenOptions::new().create(true).append(true).open(attempts).unwrap();
                let mut acks = OpenOptions::new().create(true).append(true).open(acks).unwrap();
                let mut rng = SplitMix64::seed_from_u64((round << 32) | t);
                for seq in 0.. {
                    let tag = format!("r{round}t{t}s{seq}");
                    // Thread 0 sends a large append (6-9 KB events) now and then: those of
                    // 16 KiB or more are committed on its own thread when it is alone.
                    let pad = if t == 0 && below(&mut rng, 4) == 0 {
                        6000 + below(&mut rng, 3000)
                    } else {
                        below(&mut rng, 200)
                    };
                    // One attempt in three is a batch of 2-4 parts (possibly one stream twice).
                    let parts = if below(&mut rng, 3) == 0 { 2 + below(&mut rng, 3) } else { 1 };
                    let mut plan: Vec<(String, u64, ExpectedVersion)> = Vec::new();
                    for _ in 0..parts {
                        let stream = format!("order-{}", below(&mut rng, STREAMS));
                        let n = 1 + below(&mut rng, 6 / parts);
                        // The version after the earlier parts of this batch on the same stream.
                        let earlier: u64 = plan.iter().filter(|(s, ..)| *s == stream).map(|(_, n, _)| n).sum();
                        let expected = match below(&mut rng, 4) {
                            0 => ExpectedVersion::Exact(store.stream_version(&stream) + earlier),
                            1 => ExpectedVersion::Exists,
                            _ => ExpectedVersion::Any,
                        };
                        plan.push((stream, n, expected));
                    }
                    let total: u64 = plan.iter().map(|(_, n, _)| n).sum();
                    let mut j = 0;
                    let mut request = Vec::with_capacity(plan.len());
                    for (stream, n, expected) in &plan {
                        let events = (j..j + n).map(|k| NewEvent::new("T", payload(&tag, k, total, pad))).collect();
                        j += n;
                        request.push(AppendPart::new(stream.as_str(), *expected, events));
                    }
                    let described: Vec<String> = plan.iter().map(|(s, n, _)| format!("{s}:{n}")).collect();
                    // Logged before sending: whatever the store holds must have been attempted.
                    writeln!(attempts, "{tag} {}", described.join(";")).unwrap();
                    let result = match request.len() {
                        1 => {
                            let part = request.pop().unwrap();
                            store.append(&part.stream, part.expected, part.events).map(|r| vec![r])
                        }
                        _ => store.append_batch(request),
                    };
                    match result {
                        Ok(results) => {
                            let landed: Vec<String> = plan
                                .iter()
                                .zip(&results)
                                .map(|((s, n, _), r)| format!("{s}:{}:{}:{n}", r.first_version, r.first_position))
                                .collect();
                            // Logged after the acknowledgement returned.
                            writeln!(acks, "{tag} {pad} {}", landed.join(";")).unwrap();
                        }
                        Err(Error::WrongExpectedVersion { .. }) => {}
                        Err(Error::BatchPart { source, .. })
                            if matches!(*source, Error::WrongExpectedVersion { .. }) => {}
                        Err(other) => panic!("child append failed: {other}"),
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

/// An acknowledged attempt: its padding and, per part, (stream, first version, first
/// position, events).
struct Ack {
    pad: u64,
    parts: Vec<(String, u64, u64, u64)>,
}

fn read_logs(dir: &Path, prefix: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with(prefix) {
            // A line cut by the kill has no newline: it was never completely logged.
            let text = fs::read_to_string(&path).unwrap();
            let complete = text.rfind('\n').map_or("", |i| &text[..i]);
            lines.extend(complete.lines().map(String::from));
        }
    }
    lines
}

/// Returns the acknowledged attempts logged so far and how many of them were multi-part batches.
fn check_invariants(dir: &Path) -> (u64, u64) {
    // tag -> [(stream, events)] per part.
    let attempts: HashMap<String, Vec<(String, u64)>> = read_logs(dir, "attempts-")
        .into_iter()
        .map(|line| {
            let (tag, plan) = line.split_once(' ').unwrap();
            let parts = plan
                .split(';')
                .map(|p| {
                    let (stream, n) = p.rsplit_once(':').unwrap();
                    (stream.to_string(), n.parse().unwrap())
                })
                .collect();
            (tag.to_string(), parts)
        })
        .collect();
    let acks: HashMap<String, Ack> = read_logs(dir, "acks-")
        .into_iter()
        .map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let parts = f[2]
                .split(';')
                .map(|p| {
                    let g: Vec<&str> = p.split(':').collect();
                    (g[0].to_string(), g[1].parse().unwrap(), g[2].parse().unwrap(), g[3].parse().unwrap())
                })
                .collect();
            (f[0].to_string(), Ack { pad: f[1].parse().unwrap(), parts })
        })
        .collect();
    // The durable records hold: no CLEAN after a kill, and the manifest names every segment
    // that exists; verify (the same walker as open, reporting) finds no corruption.
    assert!(!dir.join("CLEAN").exists(), "a killed store left a clean-shutdown record");
    let report = logbook::verify_dir(dir).unwrap();
    assert!(report.is_healthy(), "verify after SIGKILL: {:?}", report.findings);
    let store = Store::open(dir, options()).unwrap_or_else(|e| panic!("reopen after SIGKILL failed: {e}"));
    assert!(dir.join("MANIFEST").exists(), "open records the segments it found");
    let all = store.read_all(1, usize::MAX, &Filter::all()).unwrap();
    let head = store.head_position();
    assert_eq!(all.len() as u64, head, "positions 1..head all present");
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut found: HashSet<String> = HashSet::new();
    let mut i = 0;
    while i < all.len() {
        let event = &all[i];
        assert_eq!(event.position(), i as u64 + 1, "positions strictly increase without gaps");
        let data = String::from_utf8(event.data().to_vec()).unwrap();
        let fields: Vec<&str> = data.split('|').collect();
        let (tag, j, n): (&str, u64, u64) = (fields[0], fields[1].parse().unwrap(), fields[2].parse().unwrap());
        let pad = fields[3].len() as u64;
        let plan = attempts.get(tag).unwrap_or_else(|| panic!("phantom event {tag} was never attempted"));
        assert_eq!(j, 0, "a batch starts with its first event");
        assert_eq!(plan.iter().map(|(_, n)| n).sum::<u64>(), n, "batch {tag} has the events attempted");
        let mut k = 0;
        let mut landed = Vec::with_capacity(plan.len());
        for (p, (stream, count)) in plan.iter().enumerate() {
            landed.push((stream.clone(), 0, all.get(i + k as usize).map_or(0, |e| e.position()), *count));
            for c in 0..*count {
                let e = all
                    .get(i + k as usize)
                    .unwrap_or_else(|| panic!("batch {tag} cut short in part {p} of {}", plan.len()));
                let expected = payload(tag, k, n, pad);
                assert_eq!(
                    e.data(),
                    expected.as_slice(),
                    "batch {tag} whole and in order (part {p} of {}, event {k} of {n})",
                    plan.len()
                );
                assert_eq!(e.stream(), stream, "part {p} of {tag} in its stream");
                let v = versions.entry(e.stream().to_string()).or_insert(0);
                *v += 1;
                assert_eq!(e.version(), *v, "versions contiguous in {}", e.stream());
                if c == 0 {
                    landed[p].1 = e.version();
                }
                k += 1;
            }
        }
        if let Some(ack) = acks.get(tag) {
            assert_eq!(landed, ack.parts, "acknowledged {tag} where its results said, every part");
            assert_eq!(pad, ack.pad);
        }
        found.insert(tag.to_string());
        i += n as usize;
    }
    // Every acknowledged append is there (found above by its tag, every part at its position).
    let mut batches = 0;
    for (tag, ack) in &acks {
        assert!(found.contains(tag), "acknowledged {tag} lost");
        batches += u64::from(ack.parts.len() > 1);
    }
    // Liveness: the reopened store takes the next position.
    let r =
        store.append("order-live", ExpectedVersion::Any, vec![NewEvent::new("LIVE", b"live|0|1|".to_vec())]).unwrap();
    assert_eq!(r.first_position, head + 1);
    store.close().unwrap();
    // Account for the liveness event as attempted for the next round.
    fs::write(dir.join("attempts-live.log"), "live order-live:1\n").unwrap();
    (acks.len() as u64, batches)
}

#[test]
fn sigkill_torture() {
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = SplitMix64::seed_from_u64(0xC0FFEE ^ std::process::id() as u64);
    let (mut acked, mut rounds_with_acks, mut acked_batches) = (0, 0, 0);
    for round in 0..rounds() {
        let stderr_path = logs.path().join(format!("child-{round}.stderr"));
        let mut child = Command::new(&exe)
            .args(["--exact", "torture_child", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .env("LOGBOOK_TORTURE_ROUND", round.to_string())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(80 + below(&mut rng, 250)));
        let stderr = || fs::read_to_string(&stderr_path).unwrap_or_default();
        if let Some(status) = child.try_wait().unwrap() {
            panic!("round {round}: the child ended on its own before the kill ({status}); its stderr:\n{}", stderr());
        }
        // Child::kill sends SIGKILL on Unix.
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "round {round}: the child must die by our SIGKILL, it ended with {status}; its stderr:\n{}",
            stderr()
        );
        // A thread that panicked while the others ran on until the kill.
        assert!(!stderr().contains("panicked"), "round {round}: the child panicked; its stderr:\n{}", stderr());
        // Acknowledgements logged so far, over all rounds.
        let (total, batches) = check_invariants(dir.path());
        rounds_with_acks += usize::from(total > acked);
        acked = total;
        acked_batches = batches;
    }
    assert!(acked > rounds() as u64, "the children must get appends acknowledged ({acked})");
    assert!(acked_batches > 0, "the children must get multi-stream batches acknowledged");
    assert!(
        rounds_with_acks * 2 >= rounds(),
        "most children must get appends acknowledged before the kill: {rounds_with_acks} of {} did",
        rounds()
    );
}
