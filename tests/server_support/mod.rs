//! Shared by the server tests: an in-process server on 127.0.0.1:0 over a temporary store,
//! and small helpers around the `redis` crate (a client nobody here wrote).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub mod daemon;

use logbook_server::{hash_token_hex, AdminConfig, Config, Server, TenantConfig};

pub const ADMIN_TOKEN: &str = "admin-secret";
pub const ACME_TOKEN: &str = "acme-secret";
pub const GLOBEX_TOKEN: &str = "globex-secret";

pub struct TestServer {
    pub server: Option<Server>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::start_with(Config::default())
    }

    /// A server with two tenants (acme, globex) and an admin.
    pub fn with_tenants() -> TestServer {
        TestServer::start_with(tenants_config())
    }

    pub fn start_with(config: Config) -> TestServer {
        // Wired as the logbook binary wires it: the order lifecycle's TIMELINE and legal holds.
        TestServer::start_with_extensions(config, logbook_order::server_extensions())
    }

    /// [`TestServer::start_with`] with these extensions instead of the order lifecycle's.
    pub fn start_with_extensions(mut config: Config, extensions: logbook_server::Extensions) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        config.data = dir.path().to_path_buf();
        config.listen = "127.0.0.1:0".into();
        config.extensions = extensions;
        config.default_legal_holds = logbook_order::default_legal_holds();
        let server = Server::start(config).expect("server starts");
        let addr = server.local_addr();
        TestServer { server: Some(server), addr, dir }
    }

    /// Where the console listens (the config must set `http`).
    pub fn http(&self) -> SocketAddr {
        self.server.as_ref().and_then(|s| s.http_addr()).expect("the config sets http")
    }

    pub fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    pub fn url_resp3(&self) -> String {
        format!("redis://{}/?protocol=resp3", self.addr)
    }

    pub fn url_auth(&self, tenant: &str, token: &str, resp3: bool) -> String {
        let proto = if resp3 { "?protocol=resp3" } else { "" };
        format!("redis://{tenant}:{token}@{}/{proto}", self.addr)
    }

    pub fn redis(&self) -> redis::Connection {
        connect(&self.url())
    }

    pub fn redis3(&self) -> redis::Connection {
        connect(&self.url_resp3())
    }

    pub fn raw(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        s
    }

    pub fn shutdown(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().expect("clean shutdown");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.shutdown();
        }
    }
}

pub fn connect(url: &str) -> redis::Connection {
    let client = redis::Client::open(url).expect("url");
    let con = client.get_connection_with_timeout(Duration::from_secs(10)).expect("connect");
    con.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    con
}

/// The error code of a failed command (e.g. "WRONGVERSION").
/// A counter of `INFO stats`.
pub fn info_stat(con: &mut redis::Connection, name: &str) -> u64 {
    let info: String = redis::cmd("INFO").arg("stats").query(con).unwrap();
    let prefix = format!("{name}:");
    info.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("{name} in INFO stats"))
        .trim()
        .parse()
        .unwrap()
}

pub fn code_of<T: std::fmt::Debug>(result: redis::RedisResult<T>) -> String {
    match result {
        Err(e) => e.code().unwrap_or("?").to_string(),
        Ok(v) => panic!("expected an error reply, got {v:?}"),
    }
}

/// Text of an error (code and detail).
pub fn error_text<T: std::fmt::Debug>(result: redis::RedisResult<T>) -> String {
    match result {
        Err(e) => format!("{} {}", e.code().unwrap_or("?"), e.detail().unwrap_or("")),
        Ok(v) => panic!("expected an error reply, got {v:?}"),
    }
}

/// An event as a (key -> value) list, from a RESP3 map or a RESP2 flat array.
pub fn fields(event: &redis::Value) -> Vec<(String, redis::Value)> {
    let pairs: Vec<(redis::Value, redis::Value)> = match event {
        redis::Value::Map(pairs) => pairs.clone(),
        redis::Value::Array(items) => items.chunks(2).map(|c| (c[0].clone(), c[1].clone())).collect(),
        other => panic!("not an event: {other:?}"),
    };
    pairs
        .into_iter()
        .map(|(k, v)| match k {
            redis::Value::BulkString(k) => (String::from_utf8(k).expect("utf8 key"), v),
            other => panic!("bad key {other:?}"),
        })
        .collect()
}

pub fn field_str(event: &redis::Value, key: &str) -> String {
    match fields(event).into_iter().find(|(k, _)| k == key).map(|(_, v)| v) {
        Some(redis::Value::BulkString(b)) => String::from_utf8(b).expect("utf8"),
        other => panic!("{key}: {other:?}"),
    }
}

pub fn field_int(event: &redis::Value, key: &str) -> i64 {
    match fields(event).into_iter().find(|(k, _)| k == key).map(|(_, v)| v) {
        Some(redis::Value::Int(n)) => n,
        other => panic!("{key}: {other:?}"),
    }
}

pub fn events(value: redis::Value) -> Vec<redis::Value> {
    match value {
        redis::Value::Array(items) => items,
        other => panic!("not an array of events: {other:?}"),
    }
}

/// Writes `bytes` raw and reads until the peer closes or `timeout` passes.
pub fn send_raw(stream: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    stream.write_all(bytes).expect("write");
    read_until_close(stream)
}

pub fn read_until_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => return out,
        }
    }
}

/// A reply of the console's HTTP side: status, headers (lower-case names) and body.
pub struct HttpReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends `request` (a whole HTTP/1.1 request) to `addr` and reads the reply to its end (the
/// console closes each connection after one reply).
pub fn http_raw(addr: SocketAddr, request: &[u8]) -> HttpReply {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect to the console");
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    s.write_all(request).expect("send the request");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_http(&raw)
}

/// `GET path` with an optional bearer token.
pub fn http_get(addr: SocketAddr, path: &str, token: Option<&str>) -> HttpReply {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    http_raw(addr, format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n").as_bytes())
}

pub fn parse_http(raw: &[u8]) -> HttpReply {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(body) } else { body.to_string() };
    HttpReply { status, headers, body }
}

/// The data of a chunked body (chunk sizes and their line ends removed).
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break };
        if size == 0 || rest.len() < size {
            out.push_str(&rest[..size.min(rest.len())]);
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].strip_prefix("\r\n").unwrap_or(&rest[size..]);
    }
    out
}

/// A config with two tenants (acme, globex) and an admin, their tokens the constants above;
/// tests change the rest with `Config { limits, ..tenants_config() }`.
pub fn tenants_config() -> Config {
    Config {
        admin: Some(AdminConfig { token_sha256: hash_token_hex(ADMIN_TOKEN.as_bytes()) }),
        tenants: vec![
            TenantConfig { name: "acme".into(), token_sha256: hash_token_hex(ACME_TOKEN.as_bytes()) },
            TenantConfig { name: "globex".into(), token_sha256: hash_token_hex(GLOBEX_TOKEN.as_bytes()) },
        ],
        ..Config::default()
    }
}
