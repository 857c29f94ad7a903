//! Read faults (reliability.md, test 17): a read that fails is an error for that read, never a
//! signal. Segments were memory-mapped before: a sealed segment truncated under a running
//! daemon killed it (SIGBUS) on the next read, and on a tmpfs short of space restart and
//! `verify` died with "Bus error" because reading the sparse active segment through a map
//! needs pages the file system cannot supply. Reads now use `pread`.

#[path = "disk_support/mod.rs"]
mod disk_support;

#[path = "server_support/mod.rs"]
mod server_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use disk_support::segment_files;
use logbook::{verify_dir, Severity};
use logbook::{Error, ExpectedVersion, Filter, NewEvent, Options, Store};
use logbook_server::Config;
use server_support::{code_of, events, TestServer};

#[test]
fn a_sealed_segment_truncated_under_the_daemon_gives_an_error_reply_and_the_daemon_keeps_serving() {
    let mut config = Config::default();
    // Segments of several pages: a mapped read past the first page of a truncated file was
    // SIGBUS (within the first page it read zeroes).
    config.store.segment_bytes = 32 * 1024;
    let server = TestServer::start_with(config);
    let mut con = server.redis();
    for i in 0..600 {
        let _: Vec<i64> = redis::cmd("APPEND")
            .arg("order-1")
            .arg("E")
            .arg(format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(150)))
            .query(&mut con)
            .unwrap();
    }
    let all = events(redis::cmd("READ").arg("order-1").arg("COUNT").arg("1000").query(&mut con).unwrap());
    assert_eq!(all.len(), 600);
    let files = segment_files(server.dir.path());
    assert!(files.len() >= 3, "several sealed segments");
    // Someone truncates the first sealed segment while the daemon runs.
    fs::OpenOptions::new().write(true).open(&files[0]).unwrap().set_len(100).unwrap();
    type R = redis::Value;
    // A scan of $all reads the file (stream reads may still be served by the block cache,
    // which holds blocks read and checked before the truncation).
    let reply = redis::cmd("READALL").arg("FROM").arg("1").arg("COUNT").arg("1000").query::<R>(&mut con);
    assert_eq!(code_of(reply), "ERR", "the read of a truncated segment is an error reply");
    // The daemon and this connection keep serving.
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    let _: Vec<i64> = redis::cmd("APPEND").arg("order-2").arg("E").arg("{}").query(&mut con).unwrap();
    let fresh = events(redis::cmd("READ").arg("order-2").query(&mut server.redis()).unwrap());
    assert_eq!(fresh.len(), 1);
}

#[test]
fn a_truncated_sealed_segment_is_an_error_for_the_library_reader_too() {
    let dir = tempfile::tempdir().unwrap();
    // No block cache: every read goes to the file. Segments of several pages: a mapped read
    // past the first page of a truncated file was SIGBUS (within the first page, zeroes).
    let options = Options { segment_bytes: 32 * 1024, read_cache_bytes: 0, ..Options::default() };
    let store = Store::open(dir.path(), options).unwrap();
    for i in 0..600 {
        store
            .append("order-1", ExpectedVersion::Any, vec![NewEvent::new("E", vec![b'a' + (i % 20) as u8; 150])])
            .unwrap();
    }
    let files = segment_files(dir.path());
    fs::OpenOptions::new().write(true).open(&files[0]).unwrap().set_len(64).unwrap();
    let err = store.read_all(1, 100, &Filter::all()).unwrap_err();
    assert!(matches!(&err, Error::Corruption { file, .. } if *file == files[0]), "{err}");
    // Past the first page of the truncated file.
    let err = store.read_stream("order-1", 40, 5, logbook::Direction::Forward).unwrap_err();
    assert!(matches!(&err, Error::Corruption { .. }), "{err}");
    // Events of the other segments still read.
    assert_eq!(store.read_stream("order-1", 600, 1, logbook::Direction::Forward).unwrap().len(), 1);
}

#[test]
fn verify_beside_a_live_writer_sees_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options { segment_bytes: 8192, ..Options::default() }).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                store
                    .append(
                        &format!("order-{}", n % 7),
                        ExpectedVersion::Any,
                        vec![NewEvent::new("E", vec![b'z'; 300])],
                    )
                    .unwrap();
                n += 1;
            }
            n
        })
    };
    let mut walks = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while (walks < 20 || store.segment_count() < 6) && std::time::Instant::now() < deadline {
        let report = verify_dir(dir.path()).unwrap();
        let corrupt: Vec<_> = report.findings.iter().filter(|f| f.severity == Severity::Corruption).collect();
        assert!(corrupt.is_empty(), "verify beside a live writer reported corruption: {corrupt:?}");
        walks += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let appended = writer.join().unwrap();
    assert!(appended > 0 && store.segment_count() > 2, "the writer rolled over meanwhile ({appended} appends)");
}

/// A tmpfs the test mounts itself (never /dev/shm, which other tests use), unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        // SAFETY: geteuid has no preconditions.
        #[allow(unsafe_code)]
        let euid = unsafe { libc::geteuid() };
        if euid != 0 {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("logbook-tmpfs-{}", std::process::id()));
        fs::create_dir_all(&dir).ok()?;
        let mounted =
            Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(&dir).status();
        if !mounted.is_ok_and(|s| s.success()) {
            eprintln!("skipped: cannot mount a tmpfs here");
            let _ = fs::remove_dir(&dir);
            return None;
        }
        Some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = fs::remove_dir(&self.0);
    }
}

/// Fills the file system holding `dir` until fewer than `leave` bytes are free.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = fs::File::create(&path).unwrap();
    let chunk = vec![0xEEu8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
    let len = fs::metadata(&path).unwrap().len();
    file.set_len(len.saturating_sub(leave)).unwrap();
    path
}

#[test]
fn restart_and_verify_on_a_nearly_full_tmpfs() {
    let Some(tmpfs) = Tmpfs::mount("16m") else { return };
    let data = tmpfs.0.join("data");
    // The active segment is 64 MiB, preallocated sparse: four times the file system's size.
    let store = Store::open(&data, Options::default()).unwrap();
    for i in 0..200 {
        store
            .append(&format!("order-{}", i % 10), ExpectedVersion::Any, vec![NewEvent::new("E", vec![b'q'; 400])])
            .unwrap();
    }
    store.close().unwrap();
    fill(&tmpfs.0, 128 * 1024);
    // Verify and restart read the whole active segment; neither may need its holes filled.
    let report = verify_dir(&data).unwrap();
    assert!(report.is_healthy(), "{:?}", report.findings);
    assert_eq!(report.events, 200);
    let store = Store::open(&data, Options::default()).unwrap();
    assert_eq!(store.read_all(1, usize::MAX, &Filter::all()).unwrap().len(), 200);
    store.append("order-x", ExpectedVersion::Any, vec![NewEvent::new("E", b"after".to_vec())]).unwrap();
    store.close().unwrap();
    // And once more, a crash-style restart (no clean-shutdown record): every frame is read.
    fs::remove_file(data.join("CLEAN")).unwrap();
    let store = Store::open(&data, Options::default()).unwrap();
    assert_eq!(store.head_position(), 201);
}
