//! The real `logbook serve` binary as a child process, for tests that measure the daemon's
//! own memory (`/proc/<pid>/status`) or read its log lines.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub metrics: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
    pub log_path: PathBuf,
}

/// A daemon child that is SIGKILLed and reaped when dropped, so a failed assertion does not
/// leave it running.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port free a moment ago.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A loopback address on a port free a moment ago.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Starts `logbook serve <args>` (log level warn, the log to `stderr`) and waits until `addr`
/// takes connections.
pub fn spawn_serve<I, S>(args: I, addr: SocketAddr, stderr: Stdio) -> Child
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let child = Command::new(env!("CARGO_BIN_EXE_logbook"))
        .arg("serve")
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn logbook serve");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "server did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// `logbook serve --data <dir> --listen <addr>`, its log discarded.
pub fn spawn_on(dir: &std::path::Path, addr: SocketAddr) -> Child {
    spawn_serve(
        [std::ffi::OsStr::new("--data"), dir.as_os_str(), "--listen".as_ref(), addr.to_string().as_ref()],
        addr,
        Stdio::null(),
    )
}

impl Daemon {
    /// Starts `logbook serve` with `config_toml` (listen/data are filled in); stderr (the log)
    /// goes to a file in the data directory's parent.
    pub fn start(config_toml: &str, with_metrics: bool) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let metrics: Option<SocketAddr> = with_metrics.then(|| format!("127.0.0.1:{}", free_port()).parse().unwrap());
        let data = dir.path().join("data");
        let mut text = format!("listen = \"{addr}\"\ndata = \"{}\"\n", data.display());
        if let Some(m) = metrics {
            text.push_str(&format!("metrics = \"{m}\"\n"));
        }
        text.push_str(config_toml);
        let config = dir.path().join("logbook.toml");
        std::fs::write(&config, text).expect("config");
        let log_path = dir.path().join("daemon.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = spawn_serve([std::ffi::OsStr::new("--config"), config.as_os_str()], addr, Stdio::from(log));
        Daemon { child, addr, metrics, dir, log_path }
    }

    /// The daemon's anonymous resident memory (heap, stacks), KiB.
    pub fn rss_anon_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("RssAnon:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn raw(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        s
    }

    pub fn redis(&self, tenant: Option<(&str, &str)>) -> redis::Connection {
        let url = match tenant {
            Some((name, token)) => format!("redis://{name}:{token}@{}/", self.addr),
            None => format!("redis://{}/", self.addr),
        };
        super::connect(&url)
    }

    /// One HTTP/1.0 GET on the metrics port: the whole response.
    pub fn http_get(&self, path: &str) -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&self.metrics.expect("metrics"), Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
