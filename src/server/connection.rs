//! One connection: read bytes (bounded), parse every complete command, run them in order,
//! write the replies together, repeat.
//!
//! - A bad command or argument gets an error reply; the connection stays.
//! - A malformed frame or a frame over a limit gets an error reply, then the connection is
//!   closed (the byte stream can no longer be trusted). Commands before it still run.
//! - At most `max_pipeline_bytes` of unexecuted request bytes are buffered.
//! - A connection idle for `idle_timeout_secs` is closed.
//! - A request not complete `request_timeout_secs` after its first byte closes the connection.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::protocol::{args_from_value, encode, parse, Command, ProtocolVersion, Value};

use super::auth::Identity;
use super::commands::{self, Outcome};
use super::Shared;

/// Bytes read from the socket per read call.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Most commands parsed and run per batch before replies are written.
const MAX_BATCH_COMMANDS: usize = 4096;
/// Replies are flushed to the socket once this many bytes are pending.
const FLUSH_BYTES: usize = 1024 * 1024;

/// What a connection knows about itself.
pub(crate) struct Session {
    pub id: u64,
    pub proto: ProtocolVersion,
    /// `None` until AUTH when auth is required.
    pub identity: Option<Identity>,
    /// The socket, for checking whether the client went away during READALL BLOCK.
    pub socket: TcpStream,
}

impl Session {
    /// True when the client closed its side (only checks; never consumes request bytes).
    pub fn client_gone(&self) -> bool {
        if self.socket.set_nonblocking(true).is_err() {
            return true;
        }
        let mut probe = [0u8; 1];
        let gone = match self.socket.peek(&mut probe) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != ErrorKind::WouldBlock,
        };
        let _ = self.socket.set_nonblocking(false);
        gone
    }
}

/// A parsed request of a batch.
enum Item {
    Command(Command),
    /// A request that failed to parse as a command: reply, keep going.
    Rejected(Value),
}

/// Outgoing replies, flushed in chunks.
struct Output {
    socket: TcpStream,
    buf: Vec<u8>,
    proto: ProtocolVersion,
    broken: bool,
}

impl Output {
    fn push(&mut self, shared: &Shared, reply: &Value) {
        if matches!(reply, Value::Error(_)) {
            shared.stats.error_replies.fetch_add(1, Ordering::Relaxed);
        }
        encode(reply, self.proto, &mut self.buf);
        if self.buf.len() >= FLUSH_BYTES {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if !self.buf.is_empty() && !self.broken {
            self.broken = self.socket.write_all(&self.buf).is_err();
        }
        self.buf.clear();
    }
}

/// Serves one connection until it closes, fails, idles out or the server shuts down.
pub(crate) fn serve(shared: &Shared, socket: TcpStream, id: u64) {
    let idle = shared.config.limits.idle_timeout();
    let configured = socket.set_nodelay(true).is_ok()
        && socket.set_read_timeout(Some(idle)).is_ok()
        && socket.set_write_timeout(Some(idle)).is_ok();
    let (Ok(reader), Ok(writer), Ok(probe)) = (socket.try_clone(), socket.try_clone(), socket.try_clone()) else {
        return;
    };
    if !configured {
        return;
    }
    let mut session =
        Session { id, proto: ProtocolVersion::Resp2, identity: shared.auth.initial_identity(), socket: probe };
    let mut out = Output { socket: writer, buf: Vec::new(), proto: ProtocolVersion::Resp2, broken: false };
    run(shared, &mut session, reader, &mut out);
    out.flush();
    let _ = socket.shutdown(std::net::Shutdown::Both);
}

fn run(shared: &Shared, session: &mut Session, mut reader: TcpStream, out: &mut Output) {
    let max_buffered = shared.config.limits.max_pipeline_bytes;
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    let request_timeout = Duration::from_secs(shared.config.limits.request_timeout_secs);
    // When the first byte of the request now at the front of `buf` arrived.
    let mut partial_since: Option<Instant> = None;
    loop {
        let (items, consumed, fatal) = parse_batch(shared, &buf);
        buf.drain(..consumed);
        if consumed > 0 || buf.is_empty() {
            partial_since = None;
        }
        if !buf.is_empty() && partial_since.is_none() {
            partial_since = Some(Instant::now());
        }
        let batch_full = items.len() >= MAX_BATCH_COMMANDS;
        if run_batch(shared, session, items, out) {
            return; // QUIT
        }
        if let Some(fatal) = fatal {
            shared.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
            out.push(shared, &fatal);
            return;
        }
        out.flush();
        if out.broken {
            return;
        }
        if batch_full {
            continue; // more complete commands may be waiting in the buffer
        }
        if buf.len() >= max_buffered {
            // The first frame is incomplete and already fills the buffer.
            out.push(shared, &Value::error("TOOBIG", &format!("request exceeds {max_buffered} buffered bytes")));
            return;
        }
        if partial_since.is_some_and(|since| since.elapsed() > request_timeout) {
            let message = format!("request not complete within {} s of its first byte", request_timeout.as_secs());
            out.push(shared, &Value::error("ERR", &message));
            out.flush();
            return;
        }
        let room = (max_buffered - buf.len()).min(chunk.len());
        match reader.read(&mut chunk[..room]) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // WouldBlock/TimedOut: the idle timeout passed. Anything else: the socket failed.
            Err(_) => return,
        }
    }
}

/// Parses the complete requests at the front of `buf`. Returns them, the bytes they used,
/// and the reply for a fatal framing error (after which the connection closes).
fn parse_batch(shared: &Shared, buf: &[u8]) -> (Vec<Item>, usize, Option<Value>) {
    let mut items = Vec::new();
    let mut at = 0;
    while items.len() < MAX_BATCH_COMMANDS {
        match parse(&buf[at..], &shared.resp_limits) {
            Ok(None) => break,
            Ok(Some((value, used))) => {
                at += used;
                match args_from_value(value) {
                    Ok(args) if args.is_empty() => {} // blank inline line
                    Ok(args) => items.push(match Command::parse(args, &shared.command_limits) {
                        Ok(command) => Item::Command(command),
                        Err(e) => Item::Rejected(e.to_value()),
                    }),
                    Err(e) => return (items, at, Some(e.to_value())),
                }
            }
            Err(e) => return (items, at, Some(e.to_value())),
        }
    }
    (items, at, None)
}

/// Runs a batch in order; consecutive appends go through the pipeline together.
/// Returns true when the client sent QUIT (replies up to it are written).
fn run_batch(shared: &Shared, session: &mut Session, items: Vec<Item>, out: &mut Output) -> bool {
    let mut appends = Vec::new();
    for item in items {
        shared.stats.commands.fetch_add(1, Ordering::Relaxed);
        let command = match item {
            Item::Rejected(reply) => {
                flush_appends(shared, &mut appends, out);
                out.push(shared, &reply);
                continue;
            }
            Item::Command(command) => command,
        };
        if commands::is_append(&command) {
            match commands::prepare_append(session, command) {
                Ok(prepared) => appends.push(prepared),
                Err(reply) => {
                    flush_appends(shared, &mut appends, out);
                    out.push(shared, &reply);
                }
            }
            continue;
        }
        flush_appends(shared, &mut appends, out);
        let outcome = commands::execute(shared, session, command);
        // HELLO 3 answers in the protocol it switched to.
        out.proto = session.proto;
        match outcome {
            Outcome::Reply(reply) => out.push(shared, &reply),
            Outcome::Quit(reply) => {
                out.push(shared, &reply);
                return true;
            }
        }
    }
    flush_appends(shared, &mut appends, out);
    false
}

fn flush_appends(shared: &Shared, appends: &mut Vec<super::pipeline::PreparedAppend>, out: &mut Output) {
    if appends.is_empty() {
        return;
    }
    for reply in super::pipeline::run_appends(&shared.store, std::mem::take(appends)) {
        out.push(shared, &reply);
    }
}
