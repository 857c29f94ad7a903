//! One connection on an event loop (`event_loop`): the socket side of the sans-I/O
//! [`ConnectionCore`](super::connection_core::ConnectionCore), which holds every limit and deadline.
//!
//! Each time the loop drives a connection: take the replies of a settled run of appends, act
//! on passed deadlines, run every request the core hands out, write the pending replies while
//! the socket takes them, and read while the socket has bytes and the core has room. A client
//! that does not read its replies fills the core's pending bytes, and nothing more is read from
//! it (backpressure); it is closed at the idle deadline.
//!
//! Requests run in order, one kind at a time:
//! - consecutive appends (APPEND, APPENDMANY, APPENDBATCH) go to the store together as one run ([`AnsweredByWriter`]; see
//!   `pipeline`): the writer thread writes their replies to the socket itself. Until the run
//!   settles nothing else of the connection runs or is written (bytes are still read); a
//!   request behind the run waits in `stash`.
//! - commands that can wait, write to disk, are an extension's, or may read long (see
//!   `commands::runs_on_a_helper`) run on a helper thread (`helpers`), at most one per
//!   connection (so at most `max_connections`); the connection's session goes with it and
//!   comes back with the reply, and meanwhile nothing is read.
//! - every other command (short reads, session commands) runs on the loop.
//!
//! - A bad command or argument gets an error reply; the connection stays.
//! - A malformed frame or a frame over a limit gets an error reply, then the connection is
//!   closed (the byte stream can no longer be trusted). Commands before it still run.
//! - A connection idle for `idle_timeout_secs` is closed.
//! - A request not complete `request_timeout_secs` after its first byte gets
//!   `-ERR request not complete ...` and the connection is closed.
//! - A closing connection's last replies get [`FINAL_WRITE_GRACE`] to be written.

use std::io::{ErrorKind, Read, Write};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use logbook_protocol::{encode, Command, ProtocolVersion, Value};
use parking_lot::Mutex;

use super::auth::Identity;
use super::commands::{self, Outcome, Reply};
use super::connection_core::{ConnectionCore, Request, Wait};
use super::event_loop::{no_helper_reply, Answer, Finished, Mailbox, LONE_COMMAND_SPIN, LONE_SPIN};
use super::pipeline::{self, AnsweredByWriter, PreparedAppend};
use super::{Registration, Shared};

/// Most consecutive appends submitted together as one run.
const MAX_BATCH_APPENDS: usize = 4096;
/// Most events of one run: preparing and submitting them is the loop's work, so a client that
/// pipelines large APPENDMANYs hands them over in pieces, and the loop's other connections are
/// served between them.
const MAX_RUN_EVENTS: usize = 4096;
/// Requests longer than this are parsed and run on a helper thread (`connection_core`'s
/// [`Request::Heavy`]): parsing an APPENDMANY of thousands of events takes milliseconds, which
/// the loop's other connections would wait through.
pub(crate) const HEAVY_REQUEST_BYTES: usize = 64 * 1024;
/// Most requests other than appends a connection runs per turn of its loop before the loop's
/// other connections get theirs (a pipeline of thousands of READs does not hold them up).
const MAX_REQUESTS_PER_TURN: usize = 32;
/// How long the last replies (an error before a close) may take to be written.
const FINAL_WRITE_GRACE: Duration = Duration::from_secs(1);
/// Most reads (and request runs) per drive: a busy client yields to the loop's others, and
/// is driven again after the next `poll`.
const MAX_STEPS_PER_DRIVE: usize = 16;
/// How often the loop looks for room in the writer's queue while a run's appends wait for it.
/// The queue is full only while the disk is the bottleneck: the writer empties it into its
/// next group at least once per fsync, so a millisecond's wait costs the waiting client little
/// and costs the loop a wake-up per millisecond, not a core.
const QUEUE_RETRY: Duration = Duration::from_millis(1);

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
    /// True when the client closed its side (only peeks, without blocking; never consumes
    /// request bytes).
    pub fn client_gone(&self) -> bool {
        let socket = socket2::SockRef::from(&self.socket);
        let mut probe = [MaybeUninit::<u8>::uninit(); 1];
        match socket.recv_with_flags(&mut probe, libc::MSG_PEEK | libc::MSG_DONTWAIT) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted),
        }
    }
}

/// What the loop does with a connection after driving it.
pub(crate) enum Next {
    /// Keep it; `again`: drive it again after the next `poll` even without news (it yielded).
    Keep { again: bool },
    /// Drop it.
    End,
}

/// One connection of an event loop.
pub(crate) struct Connection {
    id: u64,
    pub socket: mio::net::TcpStream,
    /// A second handle on the socket, for the writer's replies.
    replies: Arc<TcpStream>,
    /// `None` while a helper thread runs a command of the connection.
    session: Option<Session>,
    core: ConnectionCore,
    /// The run of appends out at the store and answered by the writer, if any.
    run: Option<AnsweredByWriter>,
    /// About how many request bytes the run holds (`PreparedAppend::bytes`): they count against
    /// `max_pipeline_bytes` with the bytes read and not yet parsed, until the run settles.
    run_bytes: usize,
    /// How long the loop should poll for this connection's next news before it sleeps
    /// (`event_loop::spin`): set when a run was handed to the store with no other append in
    /// flight, a command to a helper with nothing else going on ([`LONE_SPIN`]), or commands
    /// were answered here with nothing else going on ([`LONE_COMMAND_SPIN`]).
    spin_for: Option<Duration>,
    /// A request taken from the core that waits for the run before it.
    stash: Option<Request>,
    /// The last `run_requests` stopped at [`MAX_REQUESTS_PER_TURN`]: the connection yields to
    /// the loop's others and goes on at the loop's next turn.
    yielded: bool,
    /// The socket may have input (until a read would block).
    readable: bool,
    /// The socket reported its input closed (or an error): reads go on until one says so, even
    /// after a short one.
    read_closed: bool,
    /// The socket may take output (until a write would block).
    writable: bool,
    /// The socket failed: end once nothing is out.
    failed: bool,
    /// When a closing connection stops waiting for its last replies to be written.
    close_by: Option<Instant>,
    /// When the loop looks again for room in the writer's queue for the run's waiting appends
    /// (only while the connection is first in the loop's line: the others are driven when
    /// their turn comes, see `Mailbox::leave_line`).
    queue_retry_at: Option<Instant>,
    _registration: Registration,
}

impl Connection {
    pub fn new(
        shared: &Arc<Shared>,
        stream: TcpStream,
        id: u64,
        registration: Registration,
        now: Instant,
    ) -> std::io::Result<Connection> {
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        let probe = stream.try_clone()?;
        let replies = Arc::new(stream.try_clone()?);
        let session = Session {
            id,
            peer: stream.peer_addr().ok(),
            proto: ProtocolVersion::Resp2,
            identity: shared.auth.initial_identity(),
            socket: probe,
            auth_failures: 0,
        };
        let core = ConnectionCore::new(shared.core_limits(), shared.auth.required(), shared.reply_budget(), now);
        Ok(Connection {
            id,
            socket: mio::net::TcpStream::from_std(stream),
            replies,
            session: Some(session),
            core,
            run: None,
            run_bytes: 0,
            spin_for: None,
            yielded: false,
            stash: None,
            readable: true,
            read_closed: false,
            writable: true,
            failed: false,
            close_by: None,
            queue_retry_at: None,
            _registration: registration,
        })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// The socket reported readiness.
    pub fn on_ready(&mut self, readable: bool, read_closed: bool, writable: bool) {
        self.readable |= readable || read_closed;
        self.read_closed |= read_closed;
        self.writable |= writable;
    }

    /// Something of the connection is out (a run of appends, or a command on a helper).
    fn busy(&self) -> bool {
        self.session.is_none() || self.run.is_some()
    }

    /// How long the loop should poll for this connection's next news (see the field), once.
    pub fn take_spin(&mut self) -> Option<Duration> {
        self.spin_for.take()
    }

    /// Asks the loop to poll for at least `bound` before it sleeps.
    fn ask_spin(&mut self, bound: Duration) {
        self.spin_for = self.spin_for.max(Some(bound));
    }

    /// When the loop must drive the connection even without news (`None` while a helper runs
    /// its command: the helper's answer drives it).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.session.as_ref()?;
        [self.core.next_deadline(), self.close_by, self.queue_retry_at].into_iter().flatten().min()
    }

    /// A helper finished the connection's command.
    pub fn finish(&mut self, shared: &Shared, finished: Finished, now: Instant) {
        let Finished { session, answer } = finished;
        self.core.touch(now);
        self.core.set_proto(session.proto);
        self.session = Some(session);
        match answer {
            Answer::Written(unsent) if unsent.is_empty() => {}
            Answer::Written(unsent) => self.core.push_encoded(unsent),
            Answer::Outcome(Outcome::Reply(reply)) => push(shared, &mut self.core, reply),
            Answer::Outcome(Outcome::Quit(reply)) => {
                push(shared, &mut self.core, reply.into());
                self.core.close();
            }
        }
    }

    /// The connection is done: counts a protocol error, closes the socket.
    pub fn end(self, shared: &Shared) {
        if self.core.protocol_error() {
            shared.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }

    /// Takes the replies of the run of appends when it settled (the writer is then told to
    /// wake the loop when it does).
    fn settle(&mut self, mailbox: &Mailbox) {
        let Some(run) = &mut self.run else { return };
        if run.waits_for_the_queue() {
            // Only the first in the loop's line submits: others wait their turn.
            if !mailbox.first_in_line(self.id) {
                return;
            }
            if !run.submit_waiting() {
                self.queue_retry_at = Some(Instant::now() + QUEUE_RETRY);
                return;
            }
            self.queue_retry_at = None;
            mailbox.leave_line(self.id);
        }
        if let Some(unsent) = run.try_settle() {
            self.run = None;
            self.run_bytes = 0;
            if !unsent.is_empty() {
                self.core.push_encoded(unsent);
            }
        }
    }

    /// Some of the run's appends wait for room in the writer's queue.
    fn waits_for_the_queue(&self) -> bool {
        self.run.as_ref().is_some_and(AnsweredByWriter::waits_for_the_queue)
    }

    /// Does everything the connection can do now without waiting.
    pub fn drive(&mut self, shared: &Arc<Shared>, mailbox: &Arc<Mailbox>, scratch: &mut [u8]) -> Next {
        for _ in 0..MAX_STEPS_PER_DRIVE {
            self.settle(mailbox);
            let now = Instant::now();
            if !self.busy() && !self.failed {
                self.core.on_timeout(now);
                self.run_requests(shared, mailbox);
            }
            // Nothing is written while the writer may be writing a run's replies.
            if self.run.is_none() && !self.failed && self.writable && self.core.pending_output() > 0 {
                self.write();
            }
            if self.failed {
                return if self.busy() { Next::Keep { again: false } } else { Next::End };
            }
            if std::mem::take(&mut self.yielded) {
                return Next::Keep { again: true };
            }
            if !self.busy() && self.core.wait(now) == Wait::Closed {
                if self.core.pending_output() == 0 {
                    return Next::End;
                }
                let by = *self.close_by.get_or_insert(now + FINAL_WRITE_GRACE);
                return if by <= now { Next::End } else { Next::Keep { again: false } };
            }
            // Nothing is read while a helper runs a command (as a thread of its own would not),
            // nor while appends wait for room in the writer's queue: what a waiting connection
            // holds stays within the request bytes it read before.
            if self.session.is_some() && self.readable && !self.waits_for_the_queue() {
                // What the run holds counts too: a connection holds at most `max_pipeline_bytes`
                // of requests, read or parsed, until they are answered.
                let room = self.core.read_capacity().saturating_sub(self.run_bytes).min(scratch.len());
                if room > 0 {
                    match (&self.socket).read(&mut scratch[..room]) {
                        Ok(0) => {
                            self.readable = false;
                            self.core.receive_eof();
                        }
                        Ok(n) => {
                            // A short read emptied the socket; a later byte is a new edge (but
                            // an end of input that came with the bytes is not).
                            self.readable = n == room || self.read_closed;
                            self.core.receive(&scratch[..n], Instant::now());
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => self.readable = false,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => self.failed = true,
                    }
                    continue;
                }
            }
            if !self.busy() && self.core.wait(now) == Wait::Ready {
                continue;
            }
            return Next::Keep { again: false };
        }
        Next::Keep { again: true }
    }

    /// Writes pending replies until done or the socket would block.
    fn write(&mut self) {
        while self.core.pending_output() > 0 {
            match (&self.socket).write(self.core.output()) {
                Ok(0) => {
                    self.failed = true;
                    return;
                }
                Ok(n) => self.core.advance_output(n, Instant::now()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.writable = false;
                    return;
                }
                Err(_) => {
                    self.failed = true;
                    return;
                }
            }
        }
    }

    /// Runs every request the core hands out, in order, until one has to wait (a run of
    /// appends went to the store, a command went to a helper) or the core has none.
    fn run_requests(&mut self, shared: &Arc<Shared>, mailbox: &Arc<Mailbox>) {
        let mut appends = Vec::new();
        let mut events = 0;
        let mut others = 0;
        loop {
            if others >= MAX_REQUESTS_PER_TURN {
                self.yielded = true;
                break;
            }
            let request = match self.stash.take() {
                Some(request) => request,
                None => match self.core.next_request(Instant::now()) {
                    Some(request) => {
                        shared.stats.commands.fetch_add(1, Ordering::Relaxed);
                        request
                    }
                    None => break,
                },
            };
            let Some(session) = self.session.as_mut() else {
                self.stash = Some(request);
                return;
            };
            match request {
                Request::Command(command) if commands::is_append(&command) => {
                    match commands::prepare_append(session, command) {
                        Ok(prepared) => {
                            events += prepared.events();
                            appends.push(prepared);
                        }
                        Err(reply) if appends.is_empty() => push(shared, &mut self.core, reply.into()),
                        Err(reply) => {
                            self.stash = Some(Request::Rejected(reply));
                            self.submit(shared, mailbox, appends, false);
                            return;
                        }
                    }
                    if appends.len() >= MAX_BATCH_APPENDS || events >= MAX_RUN_EVENTS {
                        self.submit(shared, mailbox, appends, false);
                        return;
                    }
                }
                request if !appends.is_empty() => {
                    self.stash = Some(request);
                    self.submit(shared, mailbox, appends, false);
                    return;
                }
                Request::Rejected(reply) | Request::Closing(reply) => {
                    others += 1;
                    push(shared, &mut self.core, reply.into());
                }
                Request::Extension(name, args) => {
                    self.start_helper(shared, mailbox, move |shared, session| {
                        Outcome::Reply(commands::execute_extension(shared, session, name, args).into())
                    });
                    return;
                }
                Request::Heavy(args) => {
                    self.start_helper(shared, mailbox, move |shared, session| {
                        commands::execute_heavy(shared, session, args)
                    });
                    return;
                }
                Request::Command(command) if commands::runs_on_a_helper(shared, session, &command) => {
                    self.start_helper(shared, mailbox, move |shared, session| {
                        commands::execute(shared, session, command)
                    });
                    return;
                }
                Request::Command(command) => {
                    others += 1;
                    if run_command(shared, session, &mut self.core, command) {
                        self.core.close(); // QUIT: its reply is pending
                        return;
                    }
                }
            }
        }
        if !appends.is_empty() {
            self.submit(shared, mailbox, appends, true);
        } else if others > 0 {
            // Commands answered here, on a server otherwise idle: the client's next request
            // is the loop's next news, a round trip away; the loop polls for it for a moment
            // instead of sleeping (as after a lone run of appends).
            if shared.store.appends_in_flight() == 0 && shared.helpers.busy() == 0 {
                self.ask_spin(LONE_COMMAND_SPIN);
            }
        }
    }

    /// Hands a run of appends to the store; `ends`: it ends what the client sent.
    fn submit(&mut self, shared: &Arc<Shared>, mailbox: &Arc<Mailbox>, appends: Vec<PreparedAppend>, ends: bool) {
        if ends && pipeline::lone(shared, appends.len()) {
            self.ask_spin(LONE_SPIN);
        }
        // The writer writes the replies itself when nothing of the connection waits before them.
        let proto = self.session.as_ref().map_or(ProtocolVersion::Resp2, |s| s.proto);
        let direct = self.core.answers_directly();
        // Unless only more input can move the connection on (which wakes the loop anyway), the
        // loop must hear when the run settles, whether or not the socket took every reply:
        // requests wait behind it, input the socket holds waits to be read (the run's bytes
        // may leave no room to read it until the run settles, and its edge has passed), or the
        // client closed its side and the connection must end.
        let wanted = !ends || self.readable || self.core.wait(Instant::now()) != Wait::Input;
        self.run_bytes = appends.iter().map(PreparedAppend::bytes).sum();
        let run = AnsweredByWriter::submit(shared, &self.replies, proto, direct, (mailbox, self.id), wanted, appends);
        if run.waits_for_the_queue() && mailbox.first_in_line(self.id) {
            self.queue_retry_at = Some(Instant::now() + QUEUE_RETRY);
        }
        self.run = Some(run);
    }

    /// Runs `work` on a helper thread (`helpers`); the session goes with it and comes back
    /// with the outcome.
    fn start_helper(
        &mut self,
        shared: &Arc<Shared>,
        mailbox: &Arc<Mailbox>,
        work: impl FnOnce(&Shared, &mut Session) -> Outcome + Send + 'static,
    ) {
        let Some(session) = self.session.take() else { return };
        // Alone on the server, the helper's answer is the loop's next news: the loop polls for
        // it for a moment instead of sleeping (as after a lone run of appends).
        let (appends, helpers) = (shared.store.appends_in_flight(), shared.helpers.busy());
        if appends == 0 && helpers == 0 {
            self.ask_spin(LONE_SPIN);
        }
        // (A helper that just answered this connection may not count as idle yet.)
        let alone = appends == 0 && helpers <= 1;
        let handed = Arc::new(Mutex::new(Some(session)));
        let (theirs, shared_for_helper, mailbox) = (Arc::clone(&handed), Arc::clone(shared), Arc::clone(mailbox));
        let id = self.id;
        // Nothing of the connection is read, run or written while the helper has its session,
        // so when nothing waited before the command its reply may go to the socket from the
        // helper: a lone client has it without waiting for the loop to wake (as a run's
        // replies go from the writer, see `pipeline`). Not when others keep the server busy:
        // at 16 clients of ORDER, helpers writing their replies made 0.90–0.94× the commands
        // per second of the loop writing them all (docs/benchmarks.md).
        if alone && self.writable && !self.failed && self.core.pending_output() > 0 {
            self.write(); // the replies before it, so that its own may go from the helper
        }
        let direct = (alone && self.core.answers_directly()).then(|| Arc::clone(&self.replies));
        let started = shared.helpers.run(move || {
            let Some(mut session) = theirs.lock().take() else { return };
            let outcome = work(&shared_for_helper, &mut session);
            // Idle before the client can have the reply: its next command finds this helper.
            shared_for_helper.helpers.idle_from_now();
            let answer = match (outcome, direct) {
                (Outcome::Reply(Reply::Value(value)), Some(socket)) => {
                    count_error_reply(&shared_for_helper, &value);
                    let mut bytes = Vec::new();
                    encode(&value, session.proto, &mut bytes);
                    pipeline::send_without_blocking(&socket, &mut bytes);
                    shared_for_helper.stats.replies_written_by_helpers.fetch_add(1, Ordering::Relaxed);
                    Answer::Written(bytes)
                }
                (outcome, _) => Answer::Outcome(outcome),
            };
            mailbox.finish(id, Finished { session, answer });
        });
        if let Err(err) = started {
            tracing::warn!(%err, "cannot start a helper thread");
            self.session = handed.lock().take();
            push(shared, &mut self.core, no_helper_reply().into());
        }
    }
}

/// Counts (and logs at debug level) a reply that is an error.
fn count_error_reply(shared: &Shared, value: &Value) {
    if let Value::Error(text) = value {
        shared.stats.error_replies.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(reply = %text, "error reply");
    }
}

fn push(shared: &Shared, core: &mut ConnectionCore, reply: Reply) {
    match reply {
        Reply::Value(value) => {
            count_error_reply(shared, &value);
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
