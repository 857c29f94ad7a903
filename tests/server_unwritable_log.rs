//! A daemon whose log cannot be written (standard error on a full disk) keeps serving: a log
//! line it cannot write is lost, never a reason to stop. `/dev/full` fails every write with
//! ENOSPC, as a log file on a full volume does.

mod server_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use server_support::daemon::{free_addr, KillOnDrop};

#[test]
fn a_daemon_whose_log_is_on_a_full_disk_keeps_serving_and_stops_cleanly() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        eprintln!("skipped: no /dev/full here");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    // At info level the daemon logs as it starts, and at shutdown.
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_logbook"))
            .args(["serve", "--data"])
            .arg(dir.path())
            .args(["--listen", &addr.to_string()])
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(full))
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut con = loop {
        if let Ok(client) = redis::Client::open(format!("redis://{addr}/")) {
            if let Ok(con) = client.get_connection_with_timeout(Duration::from_millis(200)) {
                break con;
            }
        }
        if let Some(status) = child.0.try_wait().unwrap() {
            panic!("the daemon stopped before it served anything: {status}");
        }
        assert!(Instant::now() < deadline, "the daemon did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    };
    // Commands that log (at debug: each connection, each error reply) still answer.
    for i in 0..20 {
        let reply: Vec<i64> = redis::cmd("APPEND").arg("order-1").arg("T").arg(i.to_string()).query(&mut con).unwrap();
        assert_eq!(reply[0], i + 1);
        let refused: redis::RedisResult<Vec<i64>> =
            redis::cmd("APPEND").arg("order-1").arg("T").arg("x").arg("EXPECTED").arg(0).query(&mut con);
        assert!(refused.is_err());
    }
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    assert!(child.0.try_wait().unwrap().is_none(), "the daemon is still running");
    // SIGTERM: the shutdown it logs must not stop it from exiting 0.
    let pid = i32::try_from(child.0.id()).unwrap();
    // SAFETY: kill(2) with a live child's pid and a valid signal number.
    #[allow(unsafe_code)]
    let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(sent, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.0.kill();
            panic!("the daemon did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}
