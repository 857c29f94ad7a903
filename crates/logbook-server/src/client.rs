//! A typed, blocking client for `logbook serve`, over the same RESP protocol any Redis client
//! speaks (it uses RESP3 after `HELLO 3`).
//!
//! ```no_run
//! use logbook_server::client::{Client, AllFilter};
//! use logbook::ExpectedVersion;
//!
//! let mut client = Client::connect("127.0.0.1:7878")?;
//! let (version, position) = client.append("order-1", "CART_CREATED", br#"{"customer":"c-1"}"#, ExpectedVersion::NoStream)?;
//! for event in client.read("order-1", None, None, false)? {
//!     println!("{} v{} {}", event.stream, event.version, event.event_type);
//! }
//! for event in client.tail(1, AllFilter::default()) {
//!     let event = event?;
//!     println!("{} {}", event.position, event.event_type);
//! #   break;
//! }
//! # Ok::<(), logbook_server::client::ClientError>(())
//! ```

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use uuid::Uuid;

use logbook::{ExpectedVersion, NewEvent};
use logbook_protocol::{encode, parse, Limits, ProtocolVersion, Value};

/// What went wrong talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The server's reply did not have the expected shape.
    #[error("protocol: {0}")]
    Protocol(String),
    /// An error reply: `code` is `WRONGVERSION`, `NOAUTH`, `NOPERM`, `TOOBIG` or `ERR`.
    #[error("{code} {message}")]
    Server { code: String, message: String },
    /// The request could not be built (e.g. APPENDMANY data that is not JSON).
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl ClientError {
    /// The server's error code, if this is an error reply.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Server { code, .. } => Some(code),
            _ => None,
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// An event as the server returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: Uuid,
    pub stream: String,
    pub version: u64,
    pub position: u64,
    pub event_type: String,
    /// RFC 3339 UTC with microseconds.
    pub time: String,
    pub data: Vec<u8>,
    pub meta: Vec<u8>,
}

impl Event {
    /// The event as one JSON object (data and meta inlined when they are JSON).
    pub fn to_json(&self) -> serde_json::Value {
        let as_json = |bytes: &[u8]| -> serde_json::Value {
            if bytes.is_empty() {
                return serde_json::Value::Null;
            }
            serde_json::from_slice(bytes)
                .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned()))
        };
        serde_json::json!({
            "id": self.id.hyphenated().to_string(),
            "stream": self.stream,
            "version": self.version,
            "position": self.position,
            "type": self.event_type,
            "time": self.time,
            "data": as_json(&self.data),
            "meta": as_json(&self.meta),
        })
    }
}

/// Which events of the global log READALL and tail return.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllFilter {
    /// Streams whose name starts with this.
    pub prefix: Option<String>,
    /// Any of these types (empty: all).
    pub types: Vec<String>,
}

/// What `GROUP CREATE` sets (all optional: from the start, every stream and type, ACKWAIT
/// 30000 ms).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupSpec {
    /// First position to deliver.
    pub from: Option<u64>,
    /// Streams whose name starts with this.
    pub prefix: Option<String>,
    /// Any of these types (empty: all).
    pub types: Vec<String>,
    /// Redeliver an event not acknowledged within this many milliseconds.
    pub ack_wait_ms: Option<u64>,
}

/// `GROUP INFO`'s reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupStatus {
    pub name: String,
    pub from: u64,
    /// Empty: every stream (of the caller's tenant).
    pub prefix: String,
    pub types: Vec<String>,
    pub ack_wait_ms: u64,
    /// Every matching event at or below is acknowledged.
    pub checkpoint: u64,
    pub pending: u64,
    /// Positions between the checkpoint and the head.
    pub lag: u64,
    pub delivered: u64,
    pub redelivered: u64,
    pub failures: u64,
    pub consumers: Vec<GroupConsumer>,
}

/// One consumer in [`GroupStatus`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupConsumer {
    pub name: String,
    pub pending: u64,
    pub idle_ms: u64,
}

fn group_status(value: Value) -> Result<GroupStatus> {
    let mut status = GroupStatus::default();
    for (key, value) in pairs(value)? {
        match text_of(key)?.as_str() {
            "name" => status.name = text_of(value)?,
            "from" => status.from = as_u64(&value)?,
            "prefix" => status.prefix = text_of(value)?,
            "types" => status.types = list(value)?.into_iter().map(text_of).collect::<Result<_>>()?,
            "ackwait" => status.ack_wait_ms = as_u64(&value)?,
            "checkpoint" => status.checkpoint = as_u64(&value)?,
            "pending" => status.pending = as_u64(&value)?,
            "lag" => status.lag = as_u64(&value)?,
            "delivered" => status.delivered = as_u64(&value)?,
            "redelivered" => status.redelivered = as_u64(&value)?,
            "failures" => status.failures = as_u64(&value)?,
            "consumers" => {
                for item in list(value)? {
                    let mut consumer = GroupConsumer::default();
                    for (key, value) in pairs(item)? {
                        match text_of(key)?.as_str() {
                            "name" => consumer.name = text_of(value)?,
                            "pending" => consumer.pending = as_u64(&value)?,
                            "idle" => consumer.idle_ms = as_u64(&value)?,
                            _ => {}
                        }
                    }
                    status.consumers.push(consumer);
                }
            }
            _ => {} // newer servers may add keys
        }
    }
    Ok(status)
}

fn list(value: Value) -> Result<Vec<Value>> {
    match value {
        Value::Array(items) | Value::Set(items) => Ok(items),
        other => Err(ClientError::Protocol(format!("expected an array, got {other:?}"))),
    }
}

fn expect_ok(value: Value) -> Result<()> {
    match value {
        Value::SimpleString(s) if s == "OK" => Ok(()),
        other => Err(ClientError::Protocol(format!("expected OK, got {other:?}"))),
    }
}

/// Replies may be large (COUNT x event size); the server bounds them, this only guards
/// against a broken peer.
const REPLY_LIMITS: Limits = Limits {
    max_bulk_bytes: 512 * 1024 * 1024,
    max_array_len: 16 * 1024 * 1024,
    max_nesting_depth: 8,
    max_inline_bytes: 64 * 1024,
};

/// A connection to a logbook daemon.
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    proto: ProtocolVersion,
}

fn expected_arg(expected: ExpectedVersion) -> String {
    expected.to_string()
}

fn as_u64(value: &Value) -> Result<u64> {
    match value {
        Value::Integer(n) if *n >= 0 => Ok(*n as u64),
        other => Err(ClientError::Protocol(format!("expected a non-negative integer, got {other:?}"))),
    }
}

fn integers(value: Value, n: usize) -> Result<Vec<u64>> {
    match value {
        Value::Array(items) if items.len() == n => items.iter().map(as_u64).collect(),
        other => Err(ClientError::Protocol(format!("expected an array of {n} integers, got {other:?}"))),
    }
}

fn bytes_of(value: Value) -> Result<Vec<u8>> {
    match value {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        Value::Verbatim { text, .. } => Ok(text),
        Value::Null => Ok(Vec::new()),
        other => Err(ClientError::Protocol(format!("expected a string, got {other:?}"))),
    }
}

fn text_of(value: Value) -> Result<String> {
    String::from_utf8(bytes_of(value)?).map_err(|_| ClientError::Protocol("expected UTF-8 text".into()))
}

/// Key-value pairs of a map (RESP3) or flat array (RESP2).
fn pairs(value: Value) -> Result<Vec<(Value, Value)>> {
    match value {
        Value::Map(pairs) => Ok(pairs),
        Value::Array(items) if items.len() % 2 == 0 => {
            let mut pairs = Vec::with_capacity(items.len() / 2);
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            Ok(pairs)
        }
        other => Err(ClientError::Protocol(format!("expected a map, got {other:?}"))),
    }
}

/// The integer fields of a reply map (COMPACT, BACKUP), in order; text fields are left out.
fn figures(value: Value) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for (key, value) in pairs(value)? {
        if let Value::Integer(_) = value {
            out.push((text_of(key)?, as_u64(&value)?));
        }
    }
    Ok(out)
}

fn event_of(value: Value) -> Result<Event> {
    let mut event = Event {
        id: Uuid::nil(),
        stream: String::new(),
        version: 0,
        position: 0,
        event_type: String::new(),
        time: String::new(),
        data: Vec::new(),
        meta: Vec::new(),
    };
    for (key, value) in pairs(value)? {
        match text_of(key)?.as_str() {
            "id" => {
                event.id = Uuid::parse_str(&text_of(value)?)
                    .map_err(|e| ClientError::Protocol(format!("bad event id: {e}")))?
            }
            "stream" => event.stream = text_of(value)?,
            "version" => event.version = as_u64(&value)?,
            "position" => event.position = as_u64(&value)?,
            "type" => event.event_type = text_of(value)?,
            "time" => event.time = text_of(value)?,
            "data" => event.data = bytes_of(value)?,
            "meta" => event.meta = bytes_of(value)?,
            _ => {} // newer servers may add keys
        }
    }
    Ok(event)
}

fn events_of(value: Value) -> Result<Vec<Event>> {
    match value {
        Value::Array(items) => items.into_iter().map(event_of).collect(),
        other => Err(ClientError::Protocol(format!("expected an array of events, got {other:?}"))),
    }
}

impl Client {
    /// Connects and switches to RESP3 (`HELLO 3`).
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let mut client = Client { stream, buf: Vec::new(), proto: ProtocolVersion::Resp2 };
        client.call(&[b"HELLO", b"3"])?;
        client.proto = ProtocolVersion::Resp3;
        Ok(client)
    }

    /// Bounds how long a reply may take (None: wait forever).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.stream.set_read_timeout(timeout)?;
        self.stream.set_write_timeout(timeout)?;
        Ok(())
    }

    /// Sends one command and reads its reply; an error reply becomes [`ClientError::Server`].
    pub fn call(&mut self, args: &[&[u8]]) -> Result<Value> {
        let request = Value::Array(args.iter().map(|a| Value::BulkString(a.to_vec())).collect());
        let mut out = Vec::new();
        encode(&request, ProtocolVersion::Resp2, &mut out);
        self.stream.write_all(&out)?;
        match self.read_reply()? {
            Value::Error(text) => {
                let (code, message) = text.split_once(' ').unwrap_or((text.as_str(), ""));
                Err(ClientError::Server { code: code.to_string(), message: message.to_string() })
            }
            value => Ok(value),
        }
    }

    /// Sends every command in one write, then reads one reply per command, in order. Error
    /// replies come back as [`ClientError::Server`] in their slot.
    pub fn pipeline(&mut self, commands: &[Vec<Vec<u8>>]) -> Result<Vec<Result<Value>>> {
        let mut out = Vec::new();
        for args in commands {
            let request = Value::Array(args.iter().map(|a| Value::BulkString(a.clone())).collect());
            encode(&request, ProtocolVersion::Resp2, &mut out);
        }
        self.stream.write_all(&out)?;
        let mut replies = Vec::with_capacity(commands.len());
        for _ in commands {
            replies.push(match self.read_reply()? {
                Value::Error(text) => {
                    let (code, message) = text.split_once(' ').unwrap_or((text.as_str(), ""));
                    Err(ClientError::Server { code: code.to_string(), message: message.to_string() })
                }
                value => Ok(value),
            });
        }
        Ok(replies)
    }

    fn read_reply(&mut self) -> Result<Value> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match parse(&self.buf, &REPLY_LIMITS) {
                Ok(Some((value, used))) => {
                    self.buf.drain(..used);
                    return Ok(value);
                }
                Ok(None) => {}
                Err(e) => return Err(ClientError::Protocol(e.to_string())),
            }
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(ClientError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// `AUTH <tenant> <token>`.
    pub fn auth(&mut self, tenant: &str, token: &str) -> Result<()> {
        self.call(&[b"AUTH", tenant.as_bytes(), token.as_bytes()]).map(|_| ())
    }

    /// `PING`.
    pub fn ping(&mut self) -> Result<()> {
        self.call(&[b"PING"]).map(|_| ())
    }

    /// Appends one event; returns `(version, position)`.
    pub fn append(
        &mut self,
        stream: &str,
        event_type: &str,
        data: &[u8],
        expected: ExpectedVersion,
    ) -> Result<(u64, u64)> {
        self.append_event(stream, &NewEvent::new(event_type, data.to_vec()), expected)
    }

    /// Appends one event with its optional id and metadata; returns `(version, position)`.
    pub fn append_event(&mut self, stream: &str, event: &NewEvent, expected: ExpectedVersion) -> Result<(u64, u64)> {
        let expected = expected_arg(expected);
        let id = event.id.map(|id| id.hyphenated().to_string());
        let mut args: Vec<&[u8]> = vec![
            b"APPEND",
            stream.as_bytes(),
            event.event_type.as_bytes(),
            &event.data,
            b"EXPECTED",
            expected.as_bytes(),
        ];
        if let Some(id) = &id {
            args.extend([b"ID".as_slice(), id.as_bytes()]);
        }
        if !event.metadata.is_empty() {
            args.extend([b"META".as_slice(), &event.metadata]);
        }
        let v = integers(self.call(&args)?, 2)?;
        Ok((v[0], v[1]))
    }

    /// Appends events atomically; each event's data (and metadata, if any) must be JSON.
    /// Returns `(first_version, last_version, last_position)`.
    pub fn append_many(
        &mut self,
        stream: &str,
        events: &[NewEvent],
        expected: ExpectedVersion,
    ) -> Result<(u64, u64, u64)> {
        let json = events_json(events)?;
        let expected = expected_arg(expected);
        let args: [&[u8]; 5] = [b"APPENDMANY", stream.as_bytes(), &json, b"EXPECTED", expected.as_bytes()];
        let v = integers(self.call(&args)?, 3)?;
        Ok((v[0], v[1], v[2]))
    }

    /// `APPENDBATCH`: appends to several streams atomically, all parts or none, in order; each
    /// part is `(stream, expected version, events)` (data and metadata must be JSON, as for
    /// [`Client::append_many`]). Returns `(first_version, last_version, last_position)` per part.
    pub fn append_batch(&mut self, parts: &[(&str, ExpectedVersion, &[NewEvent])]) -> Result<Vec<(u64, u64, u64)>> {
        let mut items = Vec::with_capacity(parts.len());
        for (stream, expected, events) in parts {
            let events = event_values(events)?;
            items.push(serde_json::json!({ "stream": stream, "expected": expected_arg(*expected), "events": events }));
        }
        let json = serde_json::to_vec(&items).map_err(|e| ClientError::Invalid(e.to_string()))?;
        match self.call(&[b"APPENDBATCH".as_slice(), &json])? {
            Value::Array(results) if results.len() == parts.len() => {
                results.into_iter().map(|r| integers(r, 3).map(|v| (v[0], v[1], v[2]))).collect()
            }
            other => Err(ClientError::Protocol(format!("expected one result per part, got {other:?}"))),
        }
    }

    /// `READ`: up to `count` events of `stream` from version `from` (default 1, or the last
    /// with `reverse`).
    pub fn read(&mut self, stream: &str, from: Option<u64>, count: Option<u64>, reverse: bool) -> Result<Vec<Event>> {
        let from = from.map(|f| f.to_string());
        let count = count.map(|c| c.to_string());
        let mut args: Vec<&[u8]> = vec![b"READ", stream.as_bytes()];
        if let Some(from) = &from {
            args.extend([b"FROM".as_slice(), from.as_bytes()]);
        }
        if let Some(count) = &count {
            args.extend([b"COUNT".as_slice(), count.as_bytes()]);
        }
        if reverse {
            args.push(b"REV");
        }
        events_of(self.call(&args)?)
    }

    /// `READALL`: up to `count` events of the global log from position `from`.
    pub fn read_all(&mut self, from: u64, count: u64, filter: &AllFilter) -> Result<Vec<Event>> {
        self.read_all_inner(from, count, None, filter)
    }

    /// `READALL ... BLOCK ms`: like [`Client::read_all`], waiting up to `block_ms` for an
    /// event when there is none yet (empty on timeout).
    pub fn read_all_blocking(
        &mut self,
        from: u64,
        count: u64,
        block_ms: u64,
        filter: &AllFilter,
    ) -> Result<Vec<Event>> {
        self.read_all_inner(from, count, Some(block_ms), filter)
    }

    fn read_all_inner(
        &mut self,
        from: u64,
        count: u64,
        block_ms: Option<u64>,
        filter: &AllFilter,
    ) -> Result<Vec<Event>> {
        let from = from.to_string();
        let count = count.to_string();
        let block = block_ms.map(|b| b.to_string());
        let mut args: Vec<&[u8]> = vec![b"READALL", b"FROM", from.as_bytes(), b"COUNT", count.as_bytes()];
        if let Some(block) = &block {
            args.extend([b"BLOCK".as_slice(), block.as_bytes()]);
        }
        if let Some(prefix) = &filter.prefix {
            args.extend([b"PREFIX".as_slice(), prefix.as_bytes()]);
        }
        for t in &filter.types {
            args.extend([b"TYPE".as_slice(), t.as_bytes()]);
        }
        events_of(self.call(&args)?)
    }

    /// `VERSION <stream>`.
    pub fn version(&mut self, stream: &str) -> Result<u64> {
        as_u64(&self.call(&[b"VERSION", stream.as_bytes()])?)
    }

    /// `HEAD`.
    pub fn head(&mut self) -> Result<u64> {
        as_u64(&self.call(&[b"HEAD"])?)
    }

    /// `INFO` text.
    pub fn info(&mut self) -> Result<String> {
        text_of(self.call(&[b"INFO"])?)
    }

    /// `STREAMS [PREFIX p] [AFTER name] [COUNT n]`: one page of `(name, version)` in name order.
    pub fn streams(&mut self, prefix: Option<&str>, after: Option<&str>, count: u64) -> Result<Vec<(String, u64)>> {
        let count = count.to_string();
        let mut args: Vec<&[u8]> = vec![b"STREAMS", b"COUNT", count.as_bytes()];
        if let Some(prefix) = prefix {
            args.extend([b"PREFIX".as_slice(), prefix.as_bytes()]);
        }
        if let Some(after) = after {
            args.extend([b"AFTER".as_slice(), after.as_bytes()]);
        }
        let Value::Array(items) = self.call(&args)? else {
            return Err(ClientError::Protocol("STREAMS: expected an array".into()));
        };
        items
            .into_iter()
            .map(|item| match item {
                Value::Array(pair) if pair.len() == 2 => {
                    let mut pair = pair.into_iter();
                    let name = text_of(pair.next().unwrap_or(Value::Null))?;
                    Ok((name, as_u64(&pair.next().unwrap_or(Value::Null))?))
                }
                other => Err(ClientError::Protocol(format!("STREAMS: expected [name, version], got {other:?}"))),
            })
            .collect()
    }

    /// `DELETE <stream> EXPECTED <e>`: the tombstone's position.
    pub fn delete_stream(&mut self, stream: &str, expected: ExpectedVersion) -> Result<u64> {
        let expected = expected_arg(expected);
        as_u64(&self.call(&[b"DELETE", stream.as_bytes(), b"EXPECTED", expected.as_bytes()])?)
    }

    /// `COMPACT` (admin): what the compaction did, as (figure, value) pairs.
    pub fn compact(&mut self) -> Result<Vec<(String, u64)>> {
        figures(self.call(&[b"COMPACT"])?)
    }

    /// `BACKUP <name>` (admin): what the copy holds, as (figure, value) pairs; the copy is
    /// `<backup_dir>/<name>` on the daemon's host.
    pub fn backup(&mut self, name: &str) -> Result<Vec<(String, u64)>> {
        figures(self.call(&[b"BACKUP", name.as_bytes()])?)
    }

    /// `GROUP CREATE <group> ...`: a consumer group on the global log.
    pub fn group_create(&mut self, group: &str, spec: &GroupSpec) -> Result<()> {
        let from = spec.from.map(|f| f.to_string());
        let ack_wait = spec.ack_wait_ms.map(|ms| ms.to_string());
        let mut args: Vec<&[u8]> = vec![b"GROUP", b"CREATE", group.as_bytes()];
        if let Some(from) = &from {
            args.extend([b"FROM".as_slice(), from.as_bytes()]);
        }
        if let Some(prefix) = &spec.prefix {
            args.extend([b"PREFIX".as_slice(), prefix.as_bytes()]);
        }
        for t in &spec.types {
            args.extend([b"TYPE".as_slice(), t.as_bytes()]);
        }
        if let Some(ack_wait) = &ack_wait {
            args.extend([b"ACKWAIT".as_slice(), ack_wait.as_bytes()]);
        }
        expect_ok(self.call(&args)?)
    }

    /// `GROUP READ <group> <consumer> COUNT n [BLOCK ms]`: events for this consumer
    /// (redeliveries first); empty when there were none within `block_ms`.
    pub fn group_read(&mut self, group: &str, consumer: &str, count: u64, block_ms: Option<u64>) -> Result<Vec<Event>> {
        let count = count.to_string();
        let block = block_ms.map(|b| b.to_string());
        let mut args: Vec<&[u8]> =
            vec![b"GROUP", b"READ", group.as_bytes(), consumer.as_bytes(), b"COUNT", count.as_bytes()];
        if let Some(block) = &block {
            args.extend([b"BLOCK".as_slice(), block.as_bytes()]);
        }
        events_of(self.call(&args)?)
    }

    /// `GROUP ACK <group> <position>...`: how many were newly acknowledged (durably).
    pub fn group_ack(&mut self, group: &str, positions: &[u64]) -> Result<u64> {
        let positions: Vec<String> = positions.iter().map(u64::to_string).collect();
        let mut args: Vec<&[u8]> = vec![b"GROUP", b"ACK", group.as_bytes()];
        args.extend(positions.iter().map(|p| p.as_bytes()));
        as_u64(&self.call(&args)?)
    }

    /// `GROUP INFO <group>`.
    pub fn group_info(&mut self, group: &str) -> Result<GroupStatus> {
        group_status(self.call(&[b"GROUP", b"INFO", group.as_bytes()])?)
    }

    /// `GROUP DELETE <group>`.
    pub fn group_delete(&mut self, group: &str) -> Result<()> {
        expect_ok(self.call(&[b"GROUP", b"DELETE", group.as_bytes()])?)
    }

    /// Follows the global log from position `from` (1: from the beginning): every matching
    /// event, then new ones as they are appended, forever (READALL BLOCK in a loop).
    pub fn tail(self, from: u64, filter: AllFilter) -> Tail {
        Tail { client: self, next: from.max(1), filter, buffer: std::collections::VecDeque::new() }
    }
}

/// The JSON array APPENDMANY takes.
fn events_json(events: &[NewEvent]) -> Result<Vec<u8>> {
    serde_json::to_vec(&event_values(events)?).map_err(|e| ClientError::Invalid(e.to_string()))
}

/// The APPENDMANY / APPENDBATCH objects of `events`.
fn event_values(events: &[NewEvent]) -> Result<Vec<serde_json::Value>> {
    let mut items = Vec::with_capacity(events.len());
    for (i, event) in events.iter().enumerate() {
        let data: serde_json::Value = serde_json::from_slice(&event.data)
            .map_err(|e| ClientError::Invalid(format!("event {i}: data must be JSON for APPENDMANY: {e}")))?;
        let mut item = serde_json::json!({ "type": event.event_type, "data": data });
        if let Some(id) = event.id {
            item["id"] = serde_json::Value::String(id.hyphenated().to_string());
        }
        if !event.metadata.is_empty() {
            item["meta"] = serde_json::from_slice(&event.metadata)
                .map_err(|e| ClientError::Invalid(format!("event {i}: meta must be a JSON object: {e}")))?;
        }
        items.push(item);
    }
    Ok(items)
}

/// Events per READALL while tailing.
const TAIL_PAGE: u64 = 1000;
/// BLOCK per READALL while tailing.
const TAIL_BLOCK_MS: u64 = 1000;

/// An endless iterator over the global log; see [`Client::tail`]. Ends only on an error.
pub struct Tail {
    client: Client,
    next: u64,
    filter: AllFilter,
    buffer: std::collections::VecDeque<Event>,
}

impl Iterator for Tail {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.next = event.position + 1;
                return Some(Ok(event));
            }
            match self.client.read_all_blocking(self.next, TAIL_PAGE, TAIL_BLOCK_MS, &self.filter) {
                Ok(events) => self.buffer.extend(events),
                Err(err) => return Some(Err(err)),
            }
        }
    }
}
