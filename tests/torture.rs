//! SIGKILL torture (reliability.md, test 5). A child process (this test binary, re-executed)
//! appends from several threads — batches of random size, random streams, random expected
//! versions — and logs every attempt before it is sent and every acknowledgement after it
//! returns. The parent kills it with SIGKILL at a random moment, reopens the store, and checks:
//! every acknowledged event is present, byte-identical, with its version and position; nothing
//! appears that was never attempted; batches are whole; versions are 1..n per stream and
//! positions 1..head; the store accepts new appends. Then it repeats on the same directory.
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

use logbook::{Error, ExpectedVersion, Filter, NewEvent, Options, Store};
use rand_core::{Rng as _, SeedableRng};
use rand_xoshiro::SplitMix64;

const CHILD_ENV: &str = "LOGBOOK_TORTURE_CHILD_DIR";
const THREADS: u64 = 4;
const STREAMS: u64 = 12;

fn options() -> Options {
    Options { segment_bytes: 16 * 1024, ..Options::default() }
}

fn rounds() -> usize {
    std::env::var("LOGBOOK_TORTURE_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(25)
}

/// Uniform enough in `0..n` for picking streams and sizes.
fn below(rng: &mut SplitMix64, n: u64) -> u64 {
    rng.next_u64() % n
}

/// The data of event `j` of `n` in attempt `tag`: self-describing, so the checker can tell
/// which attempt and batch any stored event came from.
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
                    let stream = format!("order-{}", below(&mut rng, STREAMS));
                    let n = 1 + below(&mut rng, 6);
                    let tag = format!("r{round}t{t}s{seq}");
                    let pad = below(&mut rng, 200);
                    let expected = match below(&mut rng, 4) {
                        0 => ExpectedVersion::Exact(store.stream_version(&stream)),
                        1 => ExpectedVersion::Exists,
                        _ => ExpectedVersion::Any,
                    };
                    let events: Vec<NewEvent> = (0..n).map(|j| NewEvent::new("T", payload(&tag, j, n, pad))).collect();
                    // Logged before sending: whatever the store holds must have been attempted.
                    writeln!(attempts, "{tag}").unwrap();
                    match store.append(&stream, expected, events) {
                        Ok(r) => {
                            // Logged after the acknowledgement returned.
                            writeln!(acks, "{tag} {stream} {} {} {n} {pad}", r.first_version, r.first_position)
                                .unwrap();
                        }
                        Err(Error::WrongExpectedVersion { .. }) => {}
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

struct Ack {
    stream: String,
    first_version: u64,
    first_position: u64,
    n: u64,
    pad: u64,
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

fn check_invariants(dir: &Path) -> u64 {
    let attempts: HashSet<String> = read_logs(dir, "attempts-").into_iter().collect();
    let acks: HashMap<String, Ack> = read_logs(dir, "acks-")
        .into_iter()
        .map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let ack = Ack {
                stream: f[1].to_string(),
                first_version: f[2].parse().unwrap(),
                first_position: f[3].parse().unwrap(),
                n: f[4].parse().unwrap(),
                pad: f[5].parse().unwrap(),
            };
            (f[0].to_string(), ack)
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
    let mut i = 0;
    while i < all.len() {
        let event = &all[i];
        assert_eq!(event.position(), i as u64 + 1, "positions strictly increase without gaps");
        let data = String::from_utf8(event.data().to_vec()).unwrap();
        let parts: Vec<&str> = data.split('|').collect();
        let (tag, j, n): (&str, u64, u64) = (parts[0], parts[1].parse().unwrap(), parts[2].parse().unwrap());
        assert!(attempts.contains(tag), "phantom event {tag} was never attempted");
        assert_eq!(j, 0, "a batch starts with its first event");
        for k in 0..n {
            let e = all.get(i + k as usize).unwrap_or_else(|| panic!("batch {tag} cut short"));
            let expected = payload(tag, k, n, parts[3].len() as u64);
            assert_eq!(e.data(), expected.as_slice(), "batch {tag} whole and in order");
            assert_eq!(e.stream(), event.stream());
            let v = versions.entry(e.stream().to_string()).or_insert(0);
            *v += 1;
            assert_eq!(e.version(), *v, "versions contiguous in {}", e.stream());
        }
        if let Some(ack) = acks.get(tag) {
            assert_eq!(
                (event.stream(), event.version(), event.position()),
                (ack.stream.as_str(), ack.first_version, ack.first_position)
            );
            assert_eq!(n, ack.n);
            assert_eq!(parts[3].len() as u64, ack.pad);
        }
        i += n as usize;
    }
    // Every acknowledged append is there (found above by its tag at its position).
    for (tag, ack) in &acks {
        let event = &all[(ack.first_position - 1) as usize];
        assert!(event.data().starts_with(format!("{tag}|0|").as_bytes()), "acknowledged {tag} lost");
    }
    // Liveness: the reopened store takes the next position.
    let r =
        store.append("order-live", ExpectedVersion::Any, vec![NewEvent::new("LIVE", b"live|0|1|".to_vec())]).unwrap();
    assert_eq!(r.first_position, head + 1);
    store.close().unwrap();
    // Account for the liveness event as attempted for the next round.
    fs::write(dir.join("attempts-live.log"), "live\n").unwrap();
    acks.len() as u64
}

#[test]
fn sigkill_torture() {
    let dir = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = SplitMix64::seed_from_u64(0xC0FFEE ^ std::process::id() as u64);
    let (mut acked, mut rounds_with_acks) = (0, 0);
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
        let total = check_invariants(dir.path());
        rounds_with_acks += usize::from(total > acked);
        acked = total;
    }
    assert!(acked > rounds() as u64, "the children must get appends acknowledged ({acked})");
    assert!(
        rounds_with_acks * 2 >= rounds(),
        "most children must get appends acknowledged before the kill: {rounds_with_acks} of {} did",
        rounds()
    );
}
