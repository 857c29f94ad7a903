//! The event loops: a few threads, each driving many connections with mio (epoll on Linux).
//!
//! The acceptor hands each new connection to a loop ([`loop_count`]), round-robin by
//! connection id. A loop
//! waits in `poll` for socket readiness, for its [`Mailbox`] (new connections; runs of appends
//! that settled with something left for the loop; commands a helper thread finished) or for
//! the earliest connection deadline, then drives every connection that has news (see
//! `connection`). One wake-up serves every ready connection.
//!
//! Nothing on a loop waits for long: sockets are non-blocking; a run of appends is answered
//! by the writer thread, which writes the replies to the socket itself (see `pipeline`) and
//! wakes the loop only when the socket did not take them all or the loop asked; commands that
//! can wait or take long run on a helper thread (`helpers`, `commands::runs_on_a_helper`).
//! Appends are submitted without waiting for room in the store's bounded queue: when it is
//! full (the disk is the bottleneck then) the rest of a run waits on its connection, in a line
//! of such connections ([`Mailbox::join_line`]) whose first the loop drives again every
//! millisecond (`connection`). After a lone run of appends (no other
//! run out), or commands it answered itself on an otherwise idle server, the loop polls its
//! sockets for a moment before it sleeps ([`spin`]).
//!
//! Sockets are registered (edge-triggered) for input and output. Each connection remembers
//! whether its socket may have input or take output until a read or write would block.
//!
//! Deadlines: the loop keeps the earliest deadline of its connections as its `poll` timeout
//! (never longer than [`MAX_POLL_WAIT`]); when it passes, it applies every connection's due
//! deadlines.

use std::collections::{HashMap, VecDeque};
use std::io::ErrorKind;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use logbook_protocol::Value;
use mio::{Events, Interest, Poll, Token, Waker};
use parking_lot::Mutex;

use super::commands::Outcome;
use super::connection::{Connection, Next, Session};
use super::{Registration, Shared};

/// The mailbox's token; connection `id` has `Token(id)` (ids start at 1).
const WAKE: Token = Token(usize::MAX);
/// Bytes read from a socket per read call.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Longest a loop sleeps without looking at the stop flag.
const MAX_POLL_WAIT: Duration = Duration::from_secs(1);
/// Most loop threads, whatever the core count.
const MAX_LOOPS: usize = 16;
/// Longest a loop polls its sockets without sleeping after a lone run of appends or a lone
/// command handed to a helper ([`spin`]): about an fdatasync and a round trip.
pub(crate) const LONE_SPIN: Duration = Duration::from_micros(400);
/// The same after commands the loop answered itself on an otherwise idle server: enough for
/// a client that sends its next request as soon as it has the reply (a loopback round trip
/// is 15–40 µs here). Requests that come further apart let the loop sleep: polls that pay
/// only because some socket of the loop had news 80–200 µs later kept a loop's core busy
/// for no gain in latency (100 µs: 3.1–3.9 s of CPU in 4 s for one client sending a PING
/// every 80 µs, or 50 clients together as often; 0.6 s without the polling, 1.5 s with 40).
pub(crate) const LONE_COMMAND_SPIN: Duration = Duration::from_micros(40);
/// Stack of a loop thread: parsing is iterative, JSON nesting is bounded by serde_json.
const LOOP_STACK_BYTES: usize = 2 * 1024 * 1024;

/// How many loops a server runs: one per two cores the process may use (at least one, at
/// most [`MAX_LOOPS`]). The store's writer thread and the clients need CPU too: on a 2-core VM
/// at 64 appending clients one loop served ~10% more appends per second than two (more
/// connections ready per wake-up, fewer threads competing with the writer).
pub(crate) fn loop_count() -> usize {
    (std::thread::available_parallelism().map_or(1, |n| n.get()) / 2).clamp(1, MAX_LOOPS)
}

/// A command a helper thread finished: the connection's session comes back with its answer.
pub(crate) struct Finished {
    pub session: Session,
    pub answer: Answer,
}

/// How a helper thread answered a command.
pub(crate) enum Answer {
    /// The loop queues the reply (and closes the connection after a QUIT).
    Outcome(Outcome),
    /// The helper wrote the reply to the socket itself (nothing of the connection waited
    /// before it); these are the bytes the socket did not take, for the loop to write first.
    Written(Vec<u8>),
}

/// What other threads hand a loop.
#[derive(Default)]
struct Inbox {
    adopted: Vec<(TcpStream, u64, Registration)>,
    /// Connections whose run of appends settled with something for the loop.
    settled: Vec<u64>,
    finished: Vec<(u64, Finished)>,
}

impl Inbox {
    fn is_empty(&self) -> bool {
        self.adopted.is_empty() && self.settled.is_empty() && self.finished.is_empty()
    }
}

/// A loop's inbox and the waker that interrupts its `poll`.
pub(crate) struct Mailbox {
    inbox: Mutex<Inbox>,
    waker: Waker,
    /// Connections of this loop whose appends wait for room in the store's append queue, first
    /// come first served: only the first submits when room comes, and a new run joins the end
    /// of the line while anyone waits, so a connection that keeps the queue full cannot starve
    /// the others. Only the loop's own thread uses it.
    line: Mutex<VecDeque<u64>>,
}

impl Mailbox {
    /// Hands an accepted (and registered) connection to the loop.
    pub fn adopt(&self, stream: TcpStream, id: u64, registration: Registration) {
        self.deliver(|inbox| inbox.adopted.push((stream, id, registration)));
    }

    /// Connection `id`'s run of appends settled, and the loop has to look at it.
    pub fn settled(&self, id: u64) {
        self.deliver(|inbox| inbox.settled.push(id));
    }

    /// A helper thread finished connection `id`'s command.
    pub fn finish(&self, id: u64, finished: Finished) {
        self.deliver(|inbox| inbox.finished.push((id, finished)));
    }

    /// Interrupts the loop's `poll` (shutdown).
    pub fn wake(&self) {
        let _ = self.waker.wake();
    }

    fn deliver(&self, put: impl FnOnce(&mut Inbox)) {
        let wake = {
            let mut inbox = self.inbox.lock();
            let was_empty = inbox.is_empty();
            put(&mut inbox);
            // Otherwise a wake-up is already on its way (the loop takes everything at once).
            was_empty
        };
        if wake {
            self.wake();
        }
    }

    fn take(&self) -> Inbox {
        std::mem::take(&mut *self.inbox.lock())
    }

    /// True when some connection waits for room in the append queue.
    pub fn anyone_in_line(&self) -> bool {
        !self.line.lock().is_empty()
    }

    /// Connection `id`'s appends wait for room in the append queue (at the end of the line).
    pub fn join_line(&self, id: u64) {
        let mut line = self.line.lock();
        if !line.contains(&id) {
            line.push_back(id);
        }
    }

    /// True when connection `id` is first in line.
    pub fn first_in_line(&self, id: u64) -> bool {
        self.line.lock().front() == Some(&id)
    }

    /// Connection `id` waits no more (its appends are all submitted, or it ended); the next in
    /// line, if `id` was first, is driven at the loop's next turn.
    pub fn leave_line(&self, id: u64) {
        let next = {
            let mut line = self.line.lock();
            let was_first = line.front() == Some(&id);
            line.retain(|&waiting| waiting != id);
            line.front().copied().filter(|_| was_first)
        };
        if let Some(next) = next {
            self.settled(next);
        }
    }
}

/// A loop not yet started: its poller and mailbox.
pub(crate) struct LoopSeed {
    poll: Poll,
    pub mailbox: Arc<Mailbox>,
}

impl LoopSeed {
    pub fn new() -> std::io::Result<LoopSeed> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKE)?;
        let mailbox = Mailbox { inbox: Mutex::new(Inbox::default()), waker, line: Mutex::new(VecDeque::new()) };
        Ok(LoopSeed { poll, mailbox: Arc::new(mailbox) })
    }

    /// Starts the loop's thread.
    pub fn start(self, shared: &Arc<Shared>, index: usize) -> std::io::Result<std::thread::JoinHandle<()>> {
        let shared = Arc::clone(shared);
        std::thread::Builder::new()
            .name(format!("logbook-loop-{index}"))
            .stack_size(LOOP_STACK_BYTES)
            .spawn(move || run(&shared, self))
    }
}

/// Runs a loop until the server stops accepting and its last connection is gone.
fn run(shared: &Arc<Shared>, seed: LoopSeed) {
    let LoopSeed { mut poll, mailbox } = seed;
    let mut connections: HashMap<u64, Connection> = HashMap::new();
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; READ_CHUNK_BYTES];
    let mut touched: Vec<u64> = Vec::new();
    let mut again: Vec<u64> = Vec::new();
    let mut spin_for: Option<Duration> = None;
    let poller = logbook::Poller::default();
    let mut next_scan: Option<Instant> = None;
    loop {
        // Connections that yielded go on after a look at the sockets.
        let wait = if again.is_empty() {
            next_scan.map_or(MAX_POLL_WAIT, |at| at.saturating_duration_since(Instant::now()).min(MAX_POLL_WAIT))
        } else {
            Duration::ZERO
        };
        let spun = match spin_for.take() {
            // Never past the loop's next deadline (idle timeouts, the queue line's retry).
            Some(bound) if !wait.is_zero() => spin(&mut poll, &mut events, &poller, bound.min(wait)),
            _ => false,
        };
        if spun {
            // Events are there.
        } else if let Err(err) = poll.poll(&mut events, Some(wait)) {
            if err.kind() != ErrorKind::Interrupted {
                tracing::error!(%err, "event loop poll failed");
                std::thread::sleep(Duration::from_millis(10));
            }
            continue;
        }
        touched.append(&mut again);
        for event in events.iter() {
            if event.token() == WAKE {
                continue;
            }
            let id = event.token().0 as u64;
            if let Some(connection) = connections.get_mut(&id) {
                let failed = event.is_error();
                connection.on_ready(
                    event.is_readable(),
                    event.is_read_closed() || failed,
                    event.is_writable() || event.is_write_closed() || failed,
                );
                touched.push(id);
            }
        }
        let inbox = mailbox.take();
        let now = Instant::now();
        for (stream, id, registration) in inbox.adopted {
            match Connection::new(shared, stream, id, registration, now) {
                Ok(mut connection) => {
                    let token = Token(id as usize);
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    match poll.registry().register(&mut connection.socket, token, interest) {
                        Ok(()) => {
                            connections.insert(id, connection);
                            touched.push(id);
                        }
                        Err(err) => tracing::warn!(%err, "cannot watch a connection"),
                    }
                }
                Err(err) => tracing::warn!(%err, "cannot set up a connection"),
            }
        }
        touched.extend(inbox.settled);
        for (id, finished) in inbox.finished {
            if let Some(connection) = connections.get_mut(&id) {
                connection.finish(shared, finished, now);
                touched.push(id);
            }
        }
        // Connections whose deadline passed are driven with the others (they act on it).
        let now = Instant::now();
        let scan = next_scan.is_some_and(|at| at <= now);
        if scan {
            touched.extend(
                connections.values().filter(|c| c.next_deadline().is_some_and(|at| at <= now)).map(Connection::id),
            );
        }
        touched.sort_unstable();
        touched.dedup();
        for id in touched.drain(..) {
            drive_noting(
                shared,
                &mailbox,
                &poll,
                &mut connections,
                id,
                &mut scratch,
                &mut again,
                &mut spin_for,
                &mut next_scan,
            );
        }
        if scan {
            next_scan = connections.values().filter_map(Connection::next_deadline).min();
        }
        if shared.loops_may_stop.load(Ordering::Acquire) && connections.is_empty() && mailbox.inbox.lock().is_empty() {
            return;
        }
    }
}

/// Drives connection `id`, dropping it when it is done; else notes what comes of it: whether
/// it wants driving again after the next `poll`, whether it handed a lone run or command
/// away, and its next deadline.
#[allow(clippy::too_many_arguments)]
fn drive_noting(
    shared: &Arc<Shared>,
    mailbox: &Arc<Mailbox>,
    poll: &Poll,
    connections: &mut HashMap<u64, Connection>,
    id: u64,
    scratch: &mut [u8],
    again: &mut Vec<u64>,
    spin_for: &mut Option<Duration>,
    next_scan: &mut Option<Instant>,
) {
    let Some(connection) = connections.get_mut(&id) else { return };
    match connection.drive(shared, mailbox, scratch) {
        Next::Keep { again: more } => {
            if let Some(deadline) = connection.next_deadline() {
                *next_scan = Some(next_scan.map_or(deadline, |at| at.min(deadline)));
            }
            if more {
                again.push(id);
            }
            *spin_for = (*spin_for).max(connection.take_spin());
        }
        Next::End => {
            if let Some(mut connection) = connections.remove(&id) {
                let _ = poll.registry().deregister(&mut connection.socket);
                mailbox.leave_line(id);
                connection.end(shared);
            }
        }
    }
}

/// Polls the sockets without sleeping for up to `bound` ([`LONE_SPIN`] or
/// [`LONE_COMMAND_SPIN`]), after a lone run of appends went to the store, a lone command to a
/// helper, or commands were answered here with the server otherwise idle: keeps the CPU awake
/// until the client's next request or the helper's answer (a round trip or an fsync away),
/// instead of a wake-up from an idle CPU (tens of µs on a VM: a lone client's READ took 57 µs
/// at the median with the wake-up, 21 µs without). The polling follows the store's own rule
/// ([`logbook::Poller`]): it yields the CPU between polls, stops when the loop lost its CPU,
/// and backs off after polling that did not pay. True when events came.
fn spin(poll: &mut Poll, events: &mut Events, poller: &logbook::Poller, bound: Duration) -> bool {
    poller
        .poll(bound, || (poll.poll(events, Some(Duration::ZERO)).is_ok() && !events.is_empty()).then_some(()))
        .is_some()
}

/// The reply to a command that could not be handed to a helper thread.
pub(crate) fn no_helper_reply() -> Value {
    Value::error("ERR", "cannot start this command now, try again later")
}
