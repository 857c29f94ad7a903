//! The connection core: one connection's protocol state, without a socket (sans-I/O, the
//! pattern of quinn-proto and rustls).
//!
//! Bytes go in ([`ConnectionCore::receive`]), requests come out ([`ConnectionCore::next_request`]),
//! replies go in ([`ConnectionCore::push_reply`]) and reply bytes come out
//! ([`ConnectionCore::output`], [`ConnectionCore::advance_output`]). Time is an input too:
//! every call that can expire a deadline takes `now`, and [`ConnectionCore::next_deadline`]
//! tells the driver when to call [`ConnectionCore::on_timeout`] even if nothing arrives.
//! An event loop drives it (`event_loop.rs`, `connection.rs`); every limit below (and its
//! unit test) is the core's.
//!
//! Limits the core enforces:
//! - **request bytes**: at most `max_request_bytes` unexecuted bytes are buffered; a first
//!   request that does not fit gets `-TOOBIG` and the connection closes. Before AUTH (when
//!   auth is required) the bound is `preauth_max_request_bytes` (4 KiB), and only
//!   [`PREAUTH_COMMANDS`] are parsed: anything else gets `-NOAUTH` from its name alone.
//! - **pending reply bytes** (backpressure): once `max_pending_reply_bytes` of replies wait to
//!   be written, no further request is handed out and [`ConnectionCore::read_capacity`] is 0:
//!   a client that does not read stops being read from. The bytes are also counted in a
//!   server-wide [`ReplyBudget`], which READ/READALL consult before building a reply.
//! - **deadlines**: a request must be complete `request_timeout` after its first byte
//!   (`-ERR request not complete ...`, then close); a connection with no traffic for
//!   `idle_timeout` is closed; before AUTH, a connection must authenticate within
//!   `auth_timeout` (`-ERR AUTH not received ...`, then close).
//! - **holds**: [`ConnectionCore::hold_until`] delays everything after it (the reply to a
//!   failed AUTH and every later request) until a time: how AUTH failures are slowed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use logbook_protocol::{
    args_from_value, encode, parse, Command, CommandError, CommandLimits, Limits as RespLimits, ProtocolVersion, Value,
};

/// The commands parsed before AUTH (when auth is required). COMMAND's reply reveals only the
/// grammar; everything else gets `-NOAUTH` without its arguments being looked at.
pub(crate) const PREAUTH_COMMANDS: [&str; 5] = ["HELLO", "AUTH", "PING", "QUIT", "COMMAND"];
/// The largest request accepted before AUTH; a larger one closes the connection.
pub(crate) const PREAUTH_MAX_REQUEST_BYTES: usize = 4 * 1024;
/// Output buffers larger than this are shrunk once written, so an idle connection that once
/// sent a large reply does not keep its capacity.
const OUTPUT_KEEP_CAPACITY: usize = 64 * 1024;

/// Bytes of replies held by every connection of a server, against one ceiling.
#[derive(Debug)]
pub(crate) struct ReplyBudget {
    limit_bytes: usize,
    used_bytes: AtomicUsize,
}

impl ReplyBudget {
    pub fn new(limit_bytes: usize) -> ReplyBudget {
        ReplyBudget { limit_bytes, used_bytes: AtomicUsize::new(0) }
    }

    pub fn used(&self) -> usize {
        self.used_bytes.load(Ordering::Relaxed)
    }

    /// Takes up to `want` bytes of what is left (possibly 0) for a reply about to be built,
    /// so connections building replies at the same moment cannot each count on the same
    /// free bytes. The grant goes back when the [`Reservation`] is dropped: after the reply
    /// was pushed to its connection (where it counts as pending output).
    pub fn reserve(self: &Arc<Self>, want: usize) -> Reservation {
        let mut used = self.used_bytes.load(Ordering::Relaxed);
        loop {
            let granted = want.min(self.limit_bytes.saturating_sub(used));
            match self.used_bytes.compare_exchange_weak(used, used + granted, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Reservation { budget: Arc::clone(self), granted },
                Err(now) => used = now,
            }
        }
    }

    fn add(&self, n: usize) {
        self.used_bytes.fetch_add(n, Ordering::Relaxed);
    }

    fn sub(&self, n: usize) {
        self.used_bytes.fetch_sub(n, Ordering::Relaxed);
    }
}

/// Bytes of a [`ReplyBudget`] held for a reply being built; given back on drop.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<ReplyBudget>,
    granted: usize,
}

impl Reservation {
    /// The bytes the reply may hold (0 when the budget is used up: one event, then).
    pub fn granted(&self) -> usize {
        self.granted
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.sub(self.granted);
    }
}

/// The limits and deadlines one connection runs under.
#[derive(Debug, Clone)]
pub(crate) struct CoreLimits {
    pub resp: RespLimits,
    pub commands: CommandLimits,
    /// Names of the extension commands (upper-case), routed as [`Request::Extension`].
    pub extensions: Vec<&'static str>,
    /// Unexecuted request bytes buffered (after AUTH, or without auth).
    pub max_request_bytes: usize,
    /// Replies waiting to be written beyond which no further request is taken.
    pub max_pending_reply_bytes: usize,
    /// A request frame longer than this (after AUTH) is handed out unparsed as
    /// [`Request::Heavy`], for the driver to parse and run where a long parse holds up nobody
    /// else; `usize::MAX`: never.
    pub heavy_request_bytes: usize,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    pub auth_timeout: Duration,
}

/// What [`ConnectionCore::next_request`] hands out.
#[derive(Debug)]
pub(crate) enum Request {
    Command(Command),
    /// A command an extension adds: its name and the arguments after it.
    Extension(&'static str, Vec<Vec<u8>>),
    /// A request over [`CoreLimits::heavy_request_bytes`], not parsed as a command yet: its
    /// arguments (name first), for [`Command::parse`] with the core's command limits.
    Heavy(Vec<Vec<u8>>),
    /// A request that could not be parsed as a command: reply, the connection stays.
    Rejected(Value),
    /// A malformed or oversized request: reply (after the replies of every request before
    /// it), then the connection closes; the core is closed already and hands out nothing more.
    Closing(Value),
}

/// Why [`ConnectionCore::next_request`] returned `None`: what the driver waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// The front request is incomplete: read more bytes.
    Input,
    /// Requests may be buffered (stopped by backpressure, or bytes just arrived): call
    /// [`ConnectionCore::next_request`] again before reading.
    Ready,
    /// Too many reply bytes are pending: write before anything else (backpressure).
    Output,
    /// A hold (slowed AUTH) lasts until then.
    Until(Instant),
    /// The connection is closing: write what is pending, then close.
    Closed,
}

pub(crate) struct ConnectionCore {
    limits: CoreLimits,
    budget: Arc<ReplyBudget>,
    proto: ProtocolVersion,
    /// True once authenticated, or from the start when auth is not required.
    authenticated: bool,
    /// Request bytes; `input[input_start..]` is not yet handed out (consumed bytes are
    /// dropped in bulk, not per request, so a long pipeline costs no quadratic copying).
    input: Vec<u8>,
    input_start: usize,
    /// Reply bytes; `output[written..]` still has to be written.
    output: Vec<u8>,
    written: usize,
    /// Replies pushed during a hold, released when it ends.
    held: Vec<u8>,
    hold_until: Option<Instant>,
    /// When the first byte of the (incomplete) request at the front of `input` arrived.
    request_started: Option<Instant>,
    last_activity: Instant,
    /// When an unauthenticated connection must have authenticated.
    auth_deadline: Option<Instant>,
    input_closed: bool,
    closing: bool,
    /// The front of `input` is known to be incomplete (until more bytes come).
    need_input: bool,
    /// Closed for a malformed or oversized request.
    protocol_error: bool,
}

impl ConnectionCore {
    pub fn new(limits: CoreLimits, auth_required: bool, budget: Arc<ReplyBudget>, now: Instant) -> ConnectionCore {
        let auth_deadline = auth_required.then(|| now + limits.auth_timeout);
        ConnectionCore {
            limits,
            budget,
            proto: ProtocolVersion::Resp2,
            authenticated: !auth_required,
            input: Vec::new(),
            input_start: 0,
            output: Vec::new(),
            written: 0,
            held: Vec::new(),
            hold_until: None,
            request_started: None,
            last_activity: now,
            auth_deadline,
            input_closed: false,
            closing: false,
            need_input: true,
            protocol_error: false,
        }
    }

    /// The request bytes that may be buffered now.
    fn request_limit(&self) -> usize {
        if self.authenticated {
            self.limits.max_request_bytes
        } else {
            self.limits.max_request_bytes.min(PREAUTH_MAX_REQUEST_BYTES)
        }
    }

    fn resp_limits(&self) -> RespLimits {
        let mut limits = self.limits.resp;
        if !self.authenticated {
            limits.max_bulk_bytes = limits.max_bulk_bytes.min(PREAUTH_MAX_REQUEST_BYTES);
            limits.max_inline_bytes = limits.max_inline_bytes.min(PREAUTH_MAX_REQUEST_BYTES);
        }
        limits
    }

    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// AUTH succeeded (or the identity was dropped): switches the request limits.
    pub fn set_authenticated(&mut self, authenticated: bool) {
        self.authenticated = authenticated;
        if authenticated {
            self.auth_deadline = None;
        }
        self.need_input = false; // the front request may now parse under the new limits
    }

    pub fn set_proto(&mut self, proto: ProtocolVersion) {
        self.proto = proto;
    }

    /// How many bytes the driver may read now (0: do not read; see [`Self::wait`]).
    pub fn read_capacity(&self) -> usize {
        if self.closing || self.input_closed || self.pending_output() >= self.limits.max_pending_reply_bytes {
            return 0;
        }
        self.request_limit().saturating_sub(self.buffered())
    }

    /// Request bytes received and not yet handed out as requests.
    pub fn buffered(&self) -> usize {
        self.input.len() - self.input_start
    }

    /// Bytes from the client. More than [`Self::read_capacity`] is accepted but counts
    /// against the request limit.
    pub fn receive(&mut self, bytes: &[u8], now: Instant) {
        if self.closing || bytes.is_empty() {
            return;
        }
        if self.buffered() == 0 {
            self.request_started = Some(now);
        }
        if self.input_start > 0 {
            self.input.drain(..self.input_start);
            self.input_start = 0;
        }
        self.input.extend_from_slice(bytes);
        self.last_activity = now;
        self.need_input = false;
    }

    /// The client closed its sending side: complete requests still run, then the
    /// connection closes.
    pub fn receive_eof(&mut self) {
        self.input_closed = true;
        self.need_input = false;
    }

    /// What the core waits for (when [`Self::next_request`] gives nothing).
    pub fn wait(&self, now: Instant) -> Wait {
        if let Some(until) = self.hold_until {
            if until > now {
                return Wait::Until(until);
            }
        }
        if self.closing {
            return Wait::Closed;
        }
        if self.pending_output() >= self.limits.max_pending_reply_bytes {
            return Wait::Output;
        }
        if self.need_input {
            return if self.input_closed { Wait::Closed } else { Wait::Input };
        }
        if self.buffered() > 0 || self.input_closed {
            return Wait::Ready;
        }
        Wait::Input
    }

    /// When the incomplete request at the front must be complete (only while one is known to
    /// be incomplete: complete requests waiting behind unwritten replies are not late).
    fn request_deadline(&self) -> Option<Instant> {
        match self.request_started {
            Some(started) if self.need_input => Some(started + self.limits.request_timeout),
            _ => None,
        }
    }

    /// The next request, in order, or `None` (see [`Self::wait`] for why).
    pub fn next_request(&mut self, now: Instant) -> Option<Request> {
        self.release_hold(now);
        if self.closing || self.hold_until.is_some() || self.need_input {
            return None;
        }
        if self.pending_output() >= self.limits.max_pending_reply_bytes {
            return None;
        }
        loop {
            let limits = self.resp_limits();
            let parsed = match parse(&self.input[self.input_start..], &limits) {
                Ok(None) => {
                    if self.buffered() >= self.request_limit() {
                        let limit = self.request_limit();
                        let reply = if self.authenticated {
                            format!("request exceeds {limit} buffered bytes")
                        } else {
                            format!("request exceeds {limit} bytes before AUTH")
                        };
                        return Some(self.fail_protocol(Value::error("TOOBIG", &reply)));
                    } else if self.input_closed {
                        self.closing = true;
                    }
                    self.need_input = true;
                    return None;
                }
                Ok(Some(parsed)) => parsed,
                Err(err) => {
                    let err = err.to_value();
                    // Before AUTH the only size a client may exceed is the 4 KiB bound.
                    let reply = match (&err, self.authenticated) {
                        (Value::Error(text), false) if text.starts_with("TOOBIG") => Value::error(
                            "TOOBIG",
                            &format!("request exceeds {PREAUTH_MAX_REQUEST_BYTES} bytes before AUTH"),
                        ),
                        _ => err,
                    };
                    return Some(self.fail_protocol(reply));
                }
            };
            let (value, used) = parsed;
            self.input_start += used;
            if self.input_start == self.input.len() {
                self.input.clear();
                self.input_start = 0;
                if self.input.capacity() > OUTPUT_KEEP_CAPACITY * 16 {
                    self.input.shrink_to(OUTPUT_KEEP_CAPACITY);
                }
            }
            self.request_started = if self.buffered() == 0 { None } else { Some(now) };
            self.last_activity = now;
            let args = match args_from_value(value) {
                Ok(args) => args,
                Err(err) => return Some(self.fail_protocol(err.to_value())),
            };
            if args.is_empty() {
                continue; // a blank inline line
            }
            if !self.authenticated && !PREAUTH_COMMANDS.iter().any(|name| args[0].eq_ignore_ascii_case(name.as_bytes()))
            {
                return Some(Request::Rejected(Value::error(
                    "NOAUTH",
                    "Authentication required: AUTH <tenant> <token>",
                )));
            }
            if let Some(&name) =
                self.limits.extensions.iter().find(|name| args[0].eq_ignore_ascii_case(name.as_bytes()))
            {
                return Some(Request::Extension(name, args.into_iter().skip(1).collect()));
            }
            if used > self.limits.heavy_request_bytes && self.authenticated {
                return Some(Request::Heavy(args));
            }
            return Some(match Command::parse(args, &self.limits.commands) {
                Ok(command) => Request::Command(command),
                Err(CommandError::Protocol(msg)) => self.fail_protocol(CommandError::Protocol(msg).to_value()),
                Err(err) => Request::Rejected(err.to_value()),
            });
        }
    }

    /// A malformed or oversized request: stop taking requests, and hand the reply out as the
    /// last request, so the driver puts it after the replies of the requests before it (a
    /// run of appends it is still completing among them).
    fn fail_protocol(&mut self, reply: Value) -> Request {
        self.protocol_error = true;
        self.close();
        Request::Closing(reply)
    }

    /// True when the connection was closed for a malformed or oversized request.
    pub fn protocol_error(&self) -> bool {
        self.protocol_error
    }

    /// Queues an error reply and closes (the byte stream can no longer be trusted).
    fn fail(&mut self, reply: Value) {
        self.push_reply(&reply);
        self.close();
    }

    /// Stops taking requests; pending replies are still to be written.
    pub fn close(&mut self) {
        self.closing = true;
        self.input = Vec::new();
        self.input_start = 0;
        self.request_started = None;
    }

    pub fn is_closing(&self) -> bool {
        self.closing
    }

    /// Drops the written part of the output before more is added, once it is at least half of
    /// it: a driver that takes requests while replies are still partly written (an event loop)
    /// would otherwise keep every byte written since the output was last empty.
    fn drop_written(&mut self) {
        if self.written > 0 && self.written >= self.output.len() / 2 {
            self.output.drain(..self.written);
            self.written = 0;
            if self.output.capacity() > OUTPUT_KEEP_CAPACITY {
                self.output.shrink_to(self.output.len().max(OUTPUT_KEEP_CAPACITY));
            }
        }
    }

    /// Encodes a reply (in order after every earlier one).
    pub fn push_reply(&mut self, reply: &Value) {
        self.drop_written();
        let target = if self.hold_until.is_some() { &mut self.held } else { &mut self.output };
        let before = target.len();
        encode(reply, self.proto, target);
        self.budget.add(target.len() - before);
    }

    /// Appends reply bytes already encoded in this connection's protocol. When nothing else
    /// is pending the buffer is taken as it is, without a copy.
    pub fn push_encoded(&mut self, bytes: Vec<u8>) {
        self.budget.add(bytes.len());
        self.drop_written();
        if self.hold_until.is_some() {
            self.held.extend_from_slice(&bytes);
        } else if self.output.is_empty() {
            self.output = bytes;
            self.written = 0;
        } else {
            self.output.extend_from_slice(&bytes);
        }
    }

    /// Delays every later reply and request until `until` (a slowed AUTH failure). A
    /// connection closed meanwhile still waits, then writes the held replies.
    pub fn hold_until(&mut self, until: Instant) {
        self.hold_until = Some(self.hold_until.map_or(until, |t| t.max(until)));
    }

    fn release_hold(&mut self, now: Instant) {
        if self.hold_until.is_some_and(|until| until <= now) {
            self.release_hold_now();
        }
    }

    fn release_hold_now(&mut self) {
        self.hold_until = None;
        if !self.held.is_empty() {
            let held = std::mem::take(&mut self.held);
            self.output.extend_from_slice(&held);
        }
    }

    /// True when a reply written to the socket by someone else now would come in order:
    /// nothing is pending or held, and the connection is not closing.
    pub fn answers_directly(&self) -> bool {
        self.pending_output() == 0 && self.hold_until.is_none() && !self.closing
    }

    /// Reply bytes not yet written.
    pub fn pending_output(&self) -> usize {
        self.output.len() - self.written
    }

    /// Reply bytes to write next.
    pub fn output(&self) -> &[u8] {
        &self.output[self.written..]
    }

    /// `n` bytes of [`Self::output`] were written.
    pub fn advance_output(&mut self, n: usize, now: Instant) {
        let n = n.min(self.pending_output());
        self.written += n;
        self.budget.sub(n);
        if n > 0 {
            self.last_activity = now;
        }
        if self.written == self.output.len() {
            self.output.clear();
            self.written = 0;
            if self.output.capacity() > OUTPUT_KEEP_CAPACITY {
                self.output.shrink_to(OUTPUT_KEEP_CAPACITY);
            }
        }
    }

    /// A command ran (a blocking READALL counts as activity, not idleness). The time it took
    /// is not charged to a request that was arriving behind it.
    pub fn touch(&mut self, now: Instant) {
        self.last_activity = now;
        if self.request_started.is_some() {
            self.request_started = Some(now);
        }
    }

    /// The earliest time [`Self::on_timeout`] must be called, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        let mut deadline = self.last_activity + self.limits.idle_timeout;
        if let Some(request) = self.request_deadline() {
            deadline = deadline.min(request);
        }
        if let Some(auth) = self.auth_deadline {
            deadline = deadline.min(auth);
        }
        if let Some(hold) = self.hold_until {
            deadline = deadline.min(hold);
        }
        Some(deadline)
    }

    /// Applies every deadline that has passed: a request not complete in time or AUTH not
    /// received in time get an error reply and close; an idle connection closes.
    pub fn on_timeout(&mut self, now: Instant) {
        self.release_hold(now);
        if self.closing {
            return;
        }
        if self.request_deadline().is_some_and(|deadline| now >= deadline) {
            let secs = self.limits.request_timeout.as_secs();
            self.fail(Value::error("ERR", &format!("request not complete within {secs} s of its first byte")));
        } else if self.auth_deadline.is_some_and(|deadline| now >= deadline) {
            let secs = self.limits.auth_timeout.as_secs();
            self.fail(Value::error("ERR", &format!("AUTH not received within {secs} s of connecting")));
        } else if now >= self.last_activity + self.limits.idle_timeout {
            self.close();
        }
    }
}

impl Drop for ConnectionCore {
    fn drop(&mut self) {
        self.budget.sub(self.pending_output() + self.held.len());
    }
}

/// The fuzz target `connection_core` (and `tests/server_core_fuzz.rs`): drives a core with
/// arbitrary bytes, split into reads of arbitrary sizes, with time advancing and a client that
/// reads its replies only sometimes, and checks the core's invariants after every step:
/// buffered request bytes stay within the limit (4 KiB before AUTH), reply bytes counted in the
/// budget equal what the core holds, nothing is handed out after a close, and a connection
/// that was handed nothing after a close never hands anything out again.
///
/// Byte 0 picks auth (bit 0) and the read sizes' seed; the rest is the client's byte stream.
#[doc(hidden)]
pub fn fuzz_connection_core(data: &[u8]) {
    use rand_core::{Rng as _, SeedableRng};
    use rand_xoshiro::SplitMix64;

    let Some((&mode, stream)) = data.split_first() else { return };
    let limits = CoreLimits {
        resp: RespLimits {
            max_bulk_bytes: 8 * 1024,
            max_array_len: 64,
            max_nesting_depth: 2,
            max_inline_bytes: 8 * 1024,
        },
        commands: CommandLimits { max_events_per_append: 16, max_count: 100, max_ack_positions: 8 },
        extensions: vec!["TIMELINE"],
        max_request_bytes: 16 * 1024,
        max_pending_reply_bytes: 512,
        heavy_request_bytes: 1024,
        request_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(300),
        auth_timeout: Duration::from_secs(10),
    };
    let auth_required = mode & 1 == 1;
    let budget = Arc::new(ReplyBudget::new(1 << 20));
    let start = Instant::now();
    let mut now = start;
    let mut core = ConnectionCore::new(limits.clone(), auth_required, Arc::clone(&budget), now);
    let mut rng = SplitMix64::seed_from_u64(u64::from(mode));
    let mut next = || rng.next_u64();
    let mut at = 0;
    while at < stream.len() && !core.is_closing() {
        let size = (1 + next() % 300) as usize;
        let room = core.read_capacity();
        let take = size.min(room).min(stream.len() - at);
        if take > 0 {
            core.receive(&stream[at..at + take], now);
            at += take;
        }
        while let Some(request) = core.next_request(now) {
            match request {
                Request::Command(Command::Auth(_)) => {
                    if next() % 2 == 0 {
                        core.set_authenticated(true);
                        core.push_reply(&Value::ok());
                    } else {
                        core.hold_until(now + Duration::from_millis(next() % 1000));
                        core.push_reply(&Value::error("NOPERM", "invalid tenant or token"));
                    }
                }
                Request::Command(Command::Quit) => {
                    core.push_reply(&Value::ok());
                    core.close();
                }
                Request::Command(command) => {
                    assert!(
                        core.is_authenticated()
                            || PREAUTH_COMMANDS.contains(&command.name())
                            || command.name() == "HELLO"
                    );
                    core.push_reply(&Value::bulk(vec![b'r'; (next() % 200) as usize]));
                }
                Request::Extension(name, _) => {
                    assert!(core.is_authenticated(), "extension {name} routed before AUTH");
                    core.push_reply(&Value::bulk(vec![b'x'; (next() % 200) as usize]));
                }
                Request::Heavy(args) => {
                    assert!(core.is_authenticated(), "a heavy request before AUTH");
                    assert!(!args.is_empty() && args.iter().map(Vec::len).sum::<usize>() > 0);
                    core.push_reply(&Value::bulk(vec![b'h'; (next() % 200) as usize]));
                }
                Request::Rejected(reply) | Request::Closing(reply) => core.push_reply(&reply),
            }
            assert!(budget.used() == core.pending_output() + core.held.len());
        }
        let limit = if core.is_authenticated() { limits.max_request_bytes } else { PREAUTH_MAX_REQUEST_BYTES };
        assert!(core.buffered() <= limit.max(1), "{} buffered, limit {limit}", core.buffered());
        // The client reads some of its replies, sometimes.
        if next() % 3 != 0 {
            let n = (next() % 700) as usize;
            core.advance_output(n, now);
        }
        if take == 0 && core.read_capacity() == 0 {
            // Stalled on output or a hold: time passes, the client reads everything.
            now += Duration::from_millis(500);
            core.on_timeout(now);
            let pending = core.pending_output();
            core.advance_output(pending, now);
        }
        now += Duration::from_millis(next() % 50);
        core.on_timeout(now);
    }
    if core.is_closing() {
        assert!(core.next_request(now + Duration::from_secs(3600)).is_none(), "nothing after a close");
    }
    drop(core);
    assert_eq!(budget.used(), 0, "the budget is returned");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> CoreLimits {
        CoreLimits {
            resp: RespLimits { max_bulk_bytes: 1024, max_array_len: 64, max_nesting_depth: 2, max_inline_bytes: 1024 },
            commands: CommandLimits::default(),
            extensions: Vec::new(),
            max_request_bytes: 2048,
            max_pending_reply_bytes: 100,
            heavy_request_bytes: usize::MAX,
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            auth_timeout: Duration::from_secs(10),
        }
    }

    fn new_core(auth: bool) -> (ConnectionCore, Arc<ReplyBudget>, Instant) {
        let budget = Arc::new(ReplyBudget::new(1 << 20));
        let now = Instant::now();
        (ConnectionCore::new(limits(), auth, Arc::clone(&budget), now), budget, now)
    }

    fn command(core: &mut ConnectionCore, now: Instant) -> Option<Command> {
        match core.next_request(now) {
            Some(Request::Command(c)) => Some(c),
            Some(Request::Rejected(v)) => panic!("rejected: {v:?}"),
            Some(Request::Closing(v)) => panic!("closing: {v:?}"),
            Some(Request::Extension(name, _)) => panic!("extension {name}"),
            Some(Request::Heavy(args)) => panic!("heavy {} args", args.len()),
            None => None,
        }
    }

    /// The reply that closes the connection (a malformed or oversized request), as the driver
    /// writes it.
    fn closing(core: &mut ConnectionCore, now: Instant) -> String {
        match core.next_request(now) {
            Some(Request::Closing(reply)) => core.push_reply(&reply),
            other => panic!("expected a closing reply, got {other:?}"),
        }
        assert!(core.is_closing());
        assert!(core.next_request(now).is_none(), "nothing after the closing reply");
        drain(core, now)
    }

    fn drain(core: &mut ConnectionCore, now: Instant) -> String {
        let out = String::from_utf8_lossy(core.output()).into_owned();
        core.advance_output(out.len(), now);
        out
    }

    #[test]
    fn pipelined_requests_come_out_in_order_across_split_reads() {
        let (mut core, _, now) = new_core(false);
        let bytes = b"PING\r\n*2\r\n$4\r\nPING\r\n$1\r\na\r\n*1\r\n$4\r\nQUIT\r\n";
        // Byte by byte: each request comes out exactly when its last byte arrives.
        let mut seen = Vec::new();
        for &b in bytes.iter() {
            core.receive(&[b], now);
            while let Some(c) = command(&mut core, now) {
                seen.push(c);
            }
            assert_eq!(core.wait(now), Wait::Input);
        }
        assert_eq!(
            seen,
            vec![Command::Ping { message: None }, Command::Ping { message: Some(b"a".to_vec()) }, Command::Quit]
        );
    }

    #[test]
    fn replies_stop_requests_at_the_pending_bytes_limit_until_written() {
        let (mut core, budget, now) = new_core(false);
        core.receive(&b"PING\r\n".repeat(50), now);
        let mut served = 0;
        while let Some(Request::Command(_)) = core.next_request(now) {
            core.push_reply(&Value::bulk(vec![b'x'; 30]));
            served += 1;
        }
        // 30 bytes of data + 7 of framing = 37 per reply: the third crosses 100.
        assert_eq!(served, 3);
        assert_eq!(core.wait(now), Wait::Output);
        assert_eq!(core.read_capacity(), 0, "a client that does not read is not read from");
        assert_eq!(budget.used(), core.pending_output());
        core.advance_output(core.pending_output(), now);
        assert_eq!(budget.used(), 0);
        assert!(core.read_capacity() > 0);
        assert_eq!(core.wait(now), Wait::Ready, "buffered requests run before anything is read");
        // Requests that waited behind unwritten replies are complete: no request deadline.
        core.on_timeout(now + Duration::from_secs(31));
        assert!(!core.is_closing());
        assert!(core.next_request(now).is_some(), "requests resume once replies are written");
    }

    #[test]
    fn written_bytes_are_dropped_when_more_replies_come_while_some_are_unwritten() {
        let (mut core, budget, now) = new_core(false);
        core.push_reply(&Value::bulk(vec![b'x'; 1000]));
        core.advance_output(900, now);
        core.push_encoded(b"+OK\r\n".to_vec());
        core.push_reply(&Value::ok());
        let pending = core.pending_output();
        assert_eq!(core.output.len(), pending, "the written 900 bytes are not kept");
        assert_eq!(budget.used(), pending);
        assert!(core.output().ends_with(b"x\r\n+OK\r\n+OK\r\n"));
    }

    #[test]
    fn reservations_share_the_budget_without_overlap() {
        let budget = Arc::new(ReplyBudget::new(10));
        let a = budget.reserve(4);
        let b = budget.reserve(4);
        let c = budget.reserve(4);
        assert_eq!((a.granted(), b.granted(), c.granted()), (4, 4, 2), "only what is left");
        assert_eq!(budget.reserve(4).granted(), 0);
        drop(a);
        assert_eq!(budget.used(), 6);
        assert_eq!(budget.reserve(100).granted(), 4);
        drop((b, c));
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn budget_is_returned_when_a_connection_ends_with_replies_unwritten() {
        let (mut core, budget, _) = new_core(false);
        core.push_reply(&Value::bulk(vec![b'x'; 500]));
        assert!(budget.used() > 500);
        drop(core);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn an_oversized_request_closes_with_toobig() {
        let (mut core, _, now) = new_core(false);
        core.receive(b"*2\r\n$4\r\nPING\r\n$2000\r\n", now);
        assert!(closing(&mut core, now).starts_with("-TOOBIG"));
        assert_eq!(core.wait(now), Wait::Closed);
        // An incomplete request filling the buffer also closes.
        let (mut core, _, now) = new_core(false);
        core.receive(b"*4\r\n$4\r\nPING\r\n$1000\r\n", now);
        core.receive(&[b'y'; 1000], now);
        core.receive(b"\r\n$1000\r\n", now);
        core.receive(&[b'y'; 1000], now);
        core.receive(b"\r\n$1000\r\n", now);
        core.receive(&[b'y'; 100], now);
        assert!(core.read_capacity() == 0);
        assert!(closing(&mut core, now).starts_with("-TOOBIG"));
    }

    #[test]
    fn before_auth_only_session_commands_are_parsed_and_4_kib_is_the_bound() {
        let (mut core, _, now) = new_core(true);
        core.receive(b"*3\r\n$10\r\nAPPENDMANY\r\n$1\r\ns\r\n$2\r\n[{\r\nPING\r\n", now);
        match core.next_request(now) {
            Some(Request::Rejected(Value::Error(e))) => assert!(e.starts_with("NOAUTH"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(command(&mut core, now), Some(Command::Ping { message: None }));
        core.receive(b"COMMAND DOCS\r\nREAD s\r\n", now);
        assert_eq!(
            command(&mut core, now),
            Some(Command::CommandInfo { subcommand: Some("docs".into()), names: vec![] })
        );
        assert!(matches!(core.next_request(now), Some(Request::Rejected(_))), "READ before AUTH");
        // A bulk of more than 4 KiB is refused from its header.
        let mut limits = limits();
        limits.resp.max_bulk_bytes = 1 << 20;
        limits.max_request_bytes = 2 << 20;
        let budget = Arc::new(ReplyBudget::new(1 << 20));
        let mut core = ConnectionCore::new(limits.clone(), true, Arc::clone(&budget), now);
        core.receive(b"*3\r\n$10\r\nAPPENDMANY\r\n$1\r\ns\r\n$4194304\r\n[", now);
        let reply = closing(&mut core, now);
        assert!(reply.starts_with("-TOOBIG request exceeds 4096 bytes before AUTH"), "{reply}");
        assert!(core.is_closing());
        // Before AUTH the reader may take at most 4 KiB; after AUTH the full limit.
        let mut core = ConnectionCore::new(limits, true, budget, now);
        assert_eq!(core.read_capacity(), PREAUTH_MAX_REQUEST_BYTES);
        core.set_authenticated(true);
        assert_eq!(core.read_capacity(), 2 << 20);
    }

    #[test]
    fn a_half_sent_request_is_answered_and_closed_at_the_request_deadline() {
        let (mut core, _, start) = new_core(false);
        core.receive(b"*2\r\n$4\r\nPING\r\n$100\r\nab", start);
        assert!(core.next_request(start).is_none());
        assert_eq!(core.next_deadline(), Some(start + Duration::from_secs(30)));
        core.on_timeout(start + Duration::from_secs(29));
        assert!(!core.is_closing());
        core.on_timeout(start + Duration::from_secs(30));
        assert!(core.is_closing());
        assert_eq!(drain(&mut core, start), "-ERR request not complete within 30 s of its first byte\r\n");
        // The deadline runs from the first byte, however the rest trickles in.
        let (mut core, _, start) = new_core(false);
        for i in 0..40u64 {
            core.receive(b"x", start + Duration::from_secs(i));
            assert!(core.next_request(start + Duration::from_secs(i)).is_none());
        }
        assert_eq!(core.next_deadline(), Some(start + Duration::from_secs(30)));
        // Time a command of the same connection spent running (READALL BLOCK) is not charged.
        core.touch(start + Duration::from_secs(20));
        assert_eq!(core.next_deadline(), Some(start + Duration::from_secs(50)));
    }

    #[test]
    fn idle_and_auth_deadlines() {
        let (mut core, _, start) = new_core(false);
        assert_eq!(core.next_deadline(), Some(start + Duration::from_secs(300)));
        core.on_timeout(start + Duration::from_secs(300));
        assert!(core.is_closing());
        assert_eq!(core.pending_output(), 0, "idle close is silent");
        let (mut core, _, start) = new_core(true);
        assert_eq!(core.next_deadline(), Some(start + Duration::from_secs(10)));
        core.on_timeout(start + Duration::from_secs(10));
        assert!(drain(&mut core, start).starts_with("-ERR AUTH not received within 10 s"));
        let (mut core, _, start) = new_core(true);
        core.set_authenticated(true);
        assert_eq!(core.next_deadline(), Some(start + Duration::from_secs(300)));
    }

    #[test]
    fn a_hold_delays_the_reply_and_later_requests() {
        let (mut core, _, start) = new_core(true);
        core.receive(b"PING\r\nPING\r\n", start);
        assert!(command(&mut core, start).is_some());
        core.hold_until(start + Duration::from_millis(500));
        core.push_reply(&Value::error("NOPERM", "invalid tenant or token"));
        assert_eq!(core.pending_output(), 0, "the reply is held");
        assert!(core.next_request(start).is_none());
        assert_eq!(core.wait(start), Wait::Until(start + Duration::from_millis(500)));
        assert_eq!(core.next_deadline(), Some(start + Duration::from_millis(500)));
        let later = start + Duration::from_millis(500);
        assert!(command(&mut core, later).is_some());
        assert_eq!(drain(&mut core, later), "-NOPERM invalid tenant or token\r\n");
    }

    #[test]
    fn protocol_errors_close_after_earlier_replies() {
        let (mut core, _, now) = new_core(false);
        core.receive(b"PING\r\n:1\r\nPING\r\n", now);
        assert!(command(&mut core, now).is_some());
        core.push_reply(&Value::SimpleString("PONG".into()));
        let out = closing(&mut core, now);
        assert!(out.starts_with("+PONG\r\n-ERR Protocol error"), "{out}");
        assert_eq!(core.wait(now), Wait::Closed);
    }

    #[test]
    fn eof_runs_complete_requests_then_closes() {
        let (mut core, _, now) = new_core(false);
        core.receive(b"PING\r\nPI", now);
        core.receive_eof();
        assert!(command(&mut core, now).is_some());
        assert!(core.next_request(now).is_none());
        assert_eq!(core.wait(now), Wait::Closed);
    }
}
