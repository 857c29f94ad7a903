//! One connection, driven by a thread: the socket side of the sans-I/O
//! [`ConnectionCore`](super::connection_core::ConnectionCore), which holds every limit and deadline.
//!
//! The loop: run every request the core hands out (consecutive appends together, see
//! `pipeline`), write the pending replies, then read with a timeout that ends at the core's
//! next deadline. A client that does not read its replies blocks the writes, so nothing more
//! is read from it (backpressure); the write gives up at the idle deadline.
//!
//! A run of appends that ends what the client sent is answered by the writer
//! ([`AnsweredByWriter`]): the thread goes back to reading at once, and settles the run (takes
//! any reply bytes the socket did not take) before it runs the next request, before a
//! deadline is acted on, and when the connection ends. While such a run is out the read
//! wakes every [`ANSWERED_RUN_POLL`] to look whether it settled.
//!
//! - A bad command or argument gets an error reply; the connection stays.
//! - A malformed frame or a frame over a limit gets an error reply, then the connection is
//!   closed (the byte stream can no longer be trusted). Commands before it still run.
//! - A connection idle for `idle_timeout_secs` is closed.
//! - A request not complete `request_timeout_secs` after its first byte gets
//!   `-ERR request not complete ...` and the connection is closed.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use logbook_protocol::{Command, ProtocolVersion, Value};

use super::auth::Identity;
use super::commands::{self, Outcome, Reply};
use super::connection_core::{ConnectionCore, Request, Wait};
use super::pipeline::{self, AnsweredByWriter, PreparedAppend};
use super::Shared;

/// Bytes read from the socket per read call.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Most consecutive appends submitted together before their replies are collected.
const MAX_BATCH_APPENDS: usize = 4096;
/// How long the last replies (an error before a close) may take to be written.
const FINAL_WRITE_GRACE: Duration = Duration::from_secs(1);
/// Shortest socket timeout (a zero timeout means "none" to the OS).
const MIN_TIMEOUT: Duration = Duration::from_millis(1);
/// Longest a read waits, while a run of appends answered by the writer is out, before the
/// thread looks whether the run settled (its replies may be waiting for a socket that was
/// full; a client waiting for them sends nothing that would wake the read).
const ANSWERED_RUN_POLL: Duration = Duration::from_millis(2);

/// What a connection knows about itself.
pub(crate) struct Session {
    pub id: u64,
    pub peer: Option<SocketAddr>,
    pub proto: ProtocolVersion,
    /// `None` until AUTH when auth is required.
    pub identity: Option<Identity>,
    /// The socket, for checking whether the client went away during READALL BLOCK.
    pub socket: TcpStream,
    /// Failed AUTHs on this connection.
    pub auth_failures: u32,
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

/// Serves one connection until it closes, fails, times out or the server shuts down.
pub(crate) fn serve(shared: &Arc<Shared>, socket: TcpStream, id: u64) {
    let Ok(probe) = socket.try_clone() else {
        return;
    };
    let Ok(reply_socket) = socket.try_clone() else {
        return;
    };
    if socket.set_nodelay(true).is_err() {
        return;
    }
    let peer = socket.peer_addr().ok();
    let mut session = Session {
        id,
        peer,
        proto: ProtocolVersion::Resp2,
        identity: shared.auth.initial_identity(),
        socket: probe,
        auth_failures: 0,
    };
    let mut core =
        ConnectionCore::new(shared.core_limits(), shared.auth.required(), shared.reply_budget(), Instant::now());
    let mut link = Link { socket: &socket, replies: Arc::new(reply_socket), answered_run: None };
    let writable = run(shared, &mut session, &mut core, &mut link);
    settle(&mut link, &mut core);
    if writable && core.pending_output() > 0 {
        write_pending(&socket, &mut core, Some(Instant::now() + FINAL_WRITE_GRACE));
    }
    if core.protocol_error() {
        shared.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
    }
    let _ = socket.shutdown(std::net::Shutdown::Both);
}

/// The connection's socket, and the run of appends the writer answers, if one is out.
struct Link<'a> {
    socket: &'a TcpStream,
    /// A second handle on the socket, for the writer's replies.
    replies: Arc<TcpStream>,
    answered_run: Option<AnsweredByWriter>,
}

/// Waits for the run the writer answers, if one is out, and queues the reply bytes its
/// socket did not take, so that they go out before any later reply.
fn settle(link: &mut Link<'_>, core: &mut ConnectionCore) {
    if let Some(run) = link.answered_run.take() {
        let unsent = run.settle();
        if !unsent.is_empty() {
            core.push_encoded(unsent);
        }
    }
}

/// Runs the connection until the core closes it. Returns false when the socket can no
/// longer be written (failed or the client stopped reading).
fn run(shared: &Arc<Shared>, session: &mut Session, core: &mut ConnectionCore, link: &mut Link<'_>) -> bool {
    let socket = link.socket;
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    loop {
        if run_requests(shared, session, core, link) {
            core.close(); // QUIT: its reply is pending
        }
        if core.pending_output() > 0 && !write_pending(socket, core, None) {
            return false;
        }
        let now = Instant::now();
        if link.answered_run.as_ref().is_some_and(AnsweredByWriter::is_settled)
            || core.next_deadline().is_some_and(|deadline| deadline <= now)
        {
            // A deadline's reply (or close) comes after the run's replies.
            settle(link, core);
            if core.pending_output() > 0 {
                continue;
            }
        }
        core.on_timeout(now);
        let until = match core.wait(now) {
            Wait::Closed => return true,
            Wait::Output | Wait::Ready => continue,
            Wait::Until(until) => until,
            Wait::Input => core.next_deadline().unwrap_or(now + Duration::from_secs(1)),
        };
        let mut timeout = until.saturating_duration_since(now).max(MIN_TIMEOUT);
        if link.answered_run.is_some() {
            timeout = timeout.min(ANSWERED_RUN_POLL);
        }
        let room = core.read_capacity().min(chunk.len());
        if room == 0 {
            std::thread::sleep(timeout.min(Duration::from_millis(100)));
            continue;
        }
        if socket.set_read_timeout(Some(timeout)).is_err() {
            return false;
        }
        match (&*socket).read(&mut chunk[..room]) {
            Ok(0) => core.receive_eof(),
            Ok(n) => core.receive(&chunk[..n], Instant::now()),
            Err(e) if matches!(e.kind(), ErrorKind::Interrupted | ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return false,
        }
    }
}

/// Writes the core's pending replies. Without a `deadline`, gives up at the core's write
/// deadline (a client that reads nothing for `idle_timeout_secs`). Returns false when the
/// replies could not all be written.
fn write_pending(socket: &TcpStream, core: &mut ConnectionCore, deadline: Option<Instant>) -> bool {
    while core.pending_output() > 0 {
        let now = Instant::now();
        let until = deadline.unwrap_or_else(|| core.write_deadline());
        if until <= now {
            return false;
        }
        if socket.set_write_timeout(Some(until.duration_since(now).max(MIN_TIMEOUT))).is_err() {
            return false;
        }
        match (&*socket).write(core.output()) {
            Ok(0) => return false,
            Ok(n) => core.advance_output(n, Instant::now()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return false,
        }
    }
    true
}

fn push(shared: &Shared, core: &mut ConnectionCore, reply: Reply) {
    match reply {
        Reply::Value(value) => {
            if let Value::Error(text) = &value {
                shared.stats.error_replies.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(reply = %text, "error reply");
            }
            core.push_reply(&value);
        }
        Reply::Events(parts, reservation) => {
            for part in parts {
                core.push_encoded(part);
            }
            // Counted as pending output now: the reservation goes back.
            drop(reservation);
        }
    }
}

/// Runs every request the core hands out, in order; consecutive appends go through the
/// pipeline together, and a short run that ends what the client sent is answered by the
/// writer. Returns true when the client sent QUIT (its reply is pending).
fn run_requests(shared: &Arc<Shared>, session: &mut Session, core: &mut ConnectionCore, link: &mut Link<'_>) -> bool {
    let mut appends = Vec::new();
    while let Some(request) = core.next_request(Instant::now()) {
        // The replies of the run before come first.
        settle(link, core);
        shared.stats.commands.fetch_add(1, Ordering::Relaxed);
        let command = match request {
            Request::Rejected(reply) | Request::Closing(reply) => {
                flush_appends(shared, &mut appends, core);
                push(shared, core, reply.into());
                continue;
            }
            Request::Command(command) => command,
            Request::Extension(name, args) => {
                flush_appends(shared, &mut appends, core);
                let reply = commands::execute_extension(shared, session, name, args);
                core.touch(Instant::now());
                push(shared, core, reply.into());
                continue;
            }
        };
        if commands::is_append(&command) {
            match commands::prepare_append(session, command) {
                Ok(prepared) => appends.push(prepared),
                Err(reply) => {
                    flush_appends(shared, &mut appends, core);
                    push(shared, core, reply.into());
                }
            }
            if appends.len() >= MAX_BATCH_APPENDS {
                flush_appends(shared, &mut appends, core);
            }
            continue;
        }
        flush_appends(shared, &mut appends, core);
        if run_command(shared, session, core, command) {
            return true;
        }
    }
    if core.answers_directly() && pipeline::answered_by_writer(shared, appends.len()) {
        link.answered_run = Some(AnsweredByWriter::submit(shared, &link.replies, session.proto, appends));
        return false;
    }
    flush_appends(shared, &mut appends, core);
    false
}

/// Runs one command but an append. Returns true for QUIT.
fn run_command(shared: &Shared, session: &mut Session, core: &mut ConnectionCore, command: Command) -> bool {
    let auth_tenant = match &command {
        Command::Auth(credentials) | Command::Hello { auth: Some(credentials), .. } => Some(credentials.tenant.clone()),
        _ => None,
    };
    let mut outcome = commands::execute(shared, session, command);
    core.touch(Instant::now());
    if let (Some(tenant), Outcome::Reply(Reply::Value(reply))) = (auth_tenant, &outcome) {
        if slow_auth(shared, session, core, &tenant, reply) {
            let Outcome::Reply(Reply::Value(reply)) = outcome else { unreachable!() };
            outcome = Outcome::Quit(reply);
        }
    }
    // HELLO 3 answers in the protocol it switched to.
    core.set_proto(session.proto);
    if !core.is_authenticated() && session.identity.is_some() {
        if shared.authenticated(session.id) {
            core.set_authenticated(true);
        } else {
            // Authenticated, but every max_connections slot is taken.
            session.identity = None;
            shared.stats.connections_rejected.fetch_add(1, Ordering::Relaxed);
            outcome = Outcome::Quit(Value::error("ERR", "max connections reached, try again later"));
        }
    }
    match outcome {
        Outcome::Reply(reply) => {
            push(shared, core, reply);
            false
        }
        Outcome::Quit(reply) => {
            push(shared, core, reply.into());
            true
        }
    }
}

/// Holds the reply to an AUTH per the address's failures (see `auth_guard`); logs a failure
/// at warn (peer, tenant, counts; never the token). Returns true when the connection must
/// close after the reply.
fn slow_auth(shared: &Shared, session: &mut Session, core: &mut ConnectionCore, tenant: &str, reply: &Value) -> bool {
    let now = Instant::now();
    let ip = session.peer.map(|peer| peer.ip());
    let failed = matches!(reply, Value::Error(text) if text.starts_with("NOPERM"));
    if !failed {
        let delay = shared.auth_guard.delay_before_success(ip, now);
        if !delay.is_zero() {
            core.hold_until(now + delay);
        }
        return false;
    }
    session.auth_failures += 1;
    let verdict = shared.auth_guard.failure(ip, session.auth_failures, now);
    let shown: String = tenant.chars().take(64).collect();
    tracing::warn!(
        peer = %session.peer.map_or_else(|| "unknown".to_string(), |p| p.to_string()),
        tenant = ?shown,
        connection_failures = session.auth_failures,
        address_failures = verdict.failures,
        delay_ms = verdict.delay.as_millis() as u64,
        closing = verdict.close,
        "AUTH failed"
    );
    core.hold_until(now + verdict.delay);
    verdict.close
}

fn flush_appends(shared: &Shared, appends: &mut Vec<PreparedAppend>, core: &mut ConnectionCore) {
    if appends.is_empty() {
        return;
    }
    for reply in pipeline::run_appends(shared, std::mem::take(appends)) {
        push(shared, core, reply.into());
    }
}
