//! Running a connection's pipelined appends so they share group commits.
//!
//! Every append of a pipelined run is submitted to the store's writer queue first, in the
//! order the client sent them, and only then are the results awaited. The writer takes
//! everything queued into one group commit, so a pipeline of N appends costs about one fsync,
//! and appends get positions in send order (a pipelined `EXPECTED n` / `EXPECTED n+1` pair to
//! one stream works, because the writer checks each against the versions pending before it).
//!
//! A run is not waited for by the event loop ([`AnsweredByWriter`]): the loop goes on with its
//! other connections, and the thread that completes the run's last append (the writer, right
//! after the group's fsync) writes the run's replies to the socket itself when nothing of the
//! connection is waiting before them. The loop wakes for the client's next request only, not
//! also for the acknowledgement.

use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use logbook::{AppendPart, ExpectedVersion, NewEvent, TrySubmit};
use logbook_protocol::{encode, ProtocolVersion, Value};
use parking_lot::Mutex;

use super::commands::append::{store_error_unlogged, StorageFailure};
use super::event_loop::Mailbox;
use super::Shared;

/// Most appends of a run that counts as lone ([`lone`]).
pub(crate) const MAX_LONE_APPENDS: usize = 64;

/// One append, ready for the store (stream names already in the store's namespace).
pub(crate) enum PreparedAppend {
    /// APPEND or APPENDMANY: events to one stream.
    Stream {
        stream: String,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        /// APPENDMANY replies `[first_version, last_version, last_position]`, APPEND `[version, position]`.
        many: bool,
    },
    /// APPENDBATCH: parts applied all or none; replies one `[first_version, last_version,
    /// last_position]` per part.
    Batch(Vec<AppendPart>),
}

impl PreparedAppend {
    /// Appends on its own and waits for the result.
    pub fn run(self, shared: &Shared) -> Value {
        let started = Instant::now();
        let (reply, failure) = match self {
            PreparedAppend::Stream { stream, expected, events, many } => {
                stream_reply(many, shared.store.append(&stream, expected, events))
            }
            PreparedAppend::Batch(parts) => batch_reply(shared.store.append_batch(parts)),
        };
        record_latency(shared, started);
        if let Some(failure) = failure {
            failure.log();
        }
        reply
    }

    /// About how many bytes it holds: its events' types, payloads and metadata, and the
    /// stream names (what it was parsed from, less the protocol's framing).
    pub fn bytes(&self) -> usize {
        let of = |stream: &str, events: &[NewEvent]| {
            stream.len() + events.iter().map(|e| e.event_type.len() + e.data.len() + e.metadata.len()).sum::<usize>()
        };
        match self {
            PreparedAppend::Stream { stream, events, .. } => of(stream, events),
            PreparedAppend::Batch(parts) => parts.iter().map(|p| of(&p.stream, &p.events)).sum(),
        }
    }

    /// How many events it appends.
    pub fn events(&self) -> usize {
        match self {
            PreparedAppend::Stream { events, .. } => events.len(),
            PreparedAppend::Batch(parts) => parts.iter().map(|p| p.events.len()).sum(),
        }
    }

    /// Hands it to the store without waiting for room in the writer's queue; `run` gets its
    /// reply as answer `index` of the run. Comes back when the queue is full.
    fn submit(self, store: &logbook::Store, run: &Arc<Run>, index: usize) -> Option<PreparedAppend> {
        let run_of = || Arc::clone(run);
        match self {
            PreparedAppend::Stream { stream, expected, events, many } => {
                match store.try_submit_append(AppendPart { stream, expected, events }) {
                    Ok(TrySubmit::Queued(pending)) => {
                        let run = run_of();
                        pending.on_done(move |result| run.complete(index, stream_reply(many, result)));
                    }
                    Ok(TrySubmit::QueueFull(AppendPart { stream, expected, events })) => {
                        return Some(PreparedAppend::Stream { stream, expected, events, many });
                    }
                    Err(err) => run.complete(index, store_error_unlogged(&err)),
                }
            }
            PreparedAppend::Batch(parts) => match store.try_submit_append_batch(parts) {
                Ok(TrySubmit::Queued(pending)) => {
                    let run = run_of();
                    pending.on_done(move |result| run.complete(index, batch_reply(result)));
                }
                Ok(TrySubmit::QueueFull(parts)) => return Some(PreparedAppend::Batch(parts)),
                Err(err) => run.complete(index, store_error_unlogged(&err)),
            },
        }
        None
    }
}

/// The reply to an APPEND (`many: false`) or APPENDMANY, and the storage failure behind it, if
/// any, for the caller to log.
fn stream_reply(many: bool, result: logbook::Result<logbook::AppendResult>) -> (Value, Option<StorageFailure>) {
    match result {
        Ok(r) if many => (range_reply(&r), None),
        Ok(r) => {
            (Value::Array(vec![Value::Integer(as_i64(r.last_version)), Value::Integer(as_i64(r.last_position))]), None)
        }
        Err(err) => store_error_unlogged(&err),
    }
}

/// The reply to an APPENDBATCH, as [`stream_reply`].
fn batch_reply(result: logbook::Result<Vec<logbook::AppendResult>>) -> (Value, Option<StorageFailure>) {
    match result {
        Ok(results) => (Value::Array(results.iter().map(range_reply).collect()), None),
        Err(err) => store_error_unlogged(&err),
    }
}

/// `[first_version, last_version, last_position]`: the reply of APPENDMANY, and of each part
/// of an APPENDBATCH.
pub(crate) fn range_reply(r: &logbook::AppendResult) -> Value {
    Value::Array(vec![
        Value::Integer(as_i64(r.first_version)),
        Value::Integer(as_i64(r.last_version)),
        Value::Integer(as_i64(r.last_position)),
    ])
}

/// Versions and positions are far below i64::MAX in practice; saturate rather than wrap.
pub(crate) fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// True when a run of `appends` appends that ends what its client sent is lone: it is short,
/// and no other append is in flight in the store. Its loop then polls its sockets for a moment
/// instead of sleeping at once (see `event_loop`): a lone client's next request comes about
/// one fsync later, and on a virtual machine a CPU kept awake is worth more than the polls
/// (as a lone waiter polls for its acknowledgement, see `logbook::PendingAppend::wait`).
pub(crate) fn lone(shared: &Shared, appends: usize) -> bool {
    appends > 0 && appends <= MAX_LONE_APPENDS && shared.store.appends_in_flight() == 0
}

/// Counts an append that was handed to the store at `started` and has its result now, in the
/// append-latency histogram of `/metrics`.
pub(crate) fn record_latency(shared: &Shared, started: Instant) {
    shared.stats.append_micros.record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
}

/// A run of appends whose replies go to the socket from whichever thread completes the run's
/// last append: normally the writer, right after the fsync; the event loop when every append
/// was refused before reaching the writer. When the run answers `direct`ly the replies go
/// out in the run's order, all in one write, without blocking: what the socket does not take
/// at once (a client that stopped reading) is left for the event loop, which takes it with
/// [`AnsweredByWriter::try_settle`] before it runs anything else. A run that does not answer
/// directly (replies of the connection are already waiting) only encodes its replies.
///
/// The loop is woken (its [`Mailbox`]) only when it has something to do: reply bytes were
/// left over, or it asked (`try_settle` found the run still out).
pub(crate) struct AnsweredByWriter {
    run: Arc<Run>,
    /// Appends of the run the writer's queue had no room for yet, in order; the first is
    /// answer `next` of the run. The loop submits them when their connection's turn in its
    /// line comes ([`AnsweredByWriter::submit_waiting`]), instead of waiting for room and
    /// leaving its other connections waiting too.
    waiting: VecDeque<PreparedAppend>,
    next: usize,
}

struct Run {
    shared: Arc<Shared>,
    socket: Arc<TcpStream>,
    proto: ProtocolVersion,
    direct: bool,
    mailbox: Arc<Mailbox>,
    connection: u64,
    started: Instant,
    state: Mutex<RunState>,
}

struct RunState {
    replies: Vec<Option<Value>>,
    /// What the loop logs when it settles the run: the writer thread, which
    /// completes runs, must not wait on the log.
    failures: Vec<StorageFailure>,
    error_replies: Vec<String>,
    missing: usize,
    /// `Some` once every reply is in: the bytes the socket did not take.
    unsent: Option<Vec<u8>>,
    /// The loop looked and found the run out: wake it when the run settles.
    wanted: bool,
}

impl AnsweredByWriter {
    /// Submits `appends` to the store in order (each counted in the store's appends in flight
    /// until it is answered), as many as the writer's queue has room for, or none when other
    /// connections of the loop wait for room already: then the run joins the end of the
    /// loop's line ([`Mailbox::join_line`]) and the rest wait
    /// ([`AnsweredByWriter::waits_for_the_queue`]) for [`AnsweredByWriter::submit_waiting`].
    /// Their replies will be written to `socket` in the connection's protocol `proto` when
    /// `direct`, else only encoded. `mailbox` and `connection` say whom
    /// to wake; `wanted`: wake the loop when the run settles even if every reply went out (the
    /// connection has more requests to run after it, and no new input will wake the loop).
    pub fn submit(
        shared: &Arc<Shared>,
        socket: &Arc<TcpStream>,
        proto: ProtocolVersion,
        direct: bool,
        (mailbox, connection): (&Arc<Mailbox>, u64),
        wanted: bool,
        appends: Vec<PreparedAppend>,
    ) -> AnsweredByWriter {
        let started = Instant::now();
        let run = Arc::new(Run {
            shared: Arc::clone(shared),
            socket: Arc::clone(socket),
            proto,
            direct,
            mailbox: Arc::clone(mailbox),
            connection,
            started,
            state: Mutex::new(RunState {
                replies: std::iter::repeat_with(|| None).take(appends.len()).collect(),
                missing: appends.len(),
                failures: Vec::new(),
                error_replies: Vec::new(),
                unsent: None,
                wanted,
            }),
        });
        let mut answered = AnsweredByWriter { run, waiting: appends.into(), next: 0 };
        if mailbox.anyone_in_line() || !answered.submit_waiting() {
            answered.run.shared.stats.runs_waiting_for_the_queue.fetch_add(1, Ordering::Relaxed);
            mailbox.join_line(connection);
        }
        answered
    }

    /// Submits the appends still waiting for room in the writer's queue, in order, until the
    /// queue is full again; true when none is left.
    pub fn submit_waiting(&mut self) -> bool {
        while let Some(append) = self.waiting.pop_front() {
            if let Some(append) = append.submit(&self.run.shared.store, &self.run, self.next) {
                self.waiting.push_front(append);
                return false;
            }
            self.next += 1;
        }
        true
    }

    /// True while some of the run's appends wait for room in the writer's queue: the loop
    /// must submit them ([`AnsweredByWriter::submit_waiting`]) without news from the writer.
    pub fn waits_for_the_queue(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// The bytes the socket did not take (empty when all went out; the caller writes them
    /// before any later reply) once every reply is in, after logging what the run's errors
    /// left to log (the writer thread does not log); `None` while the run is out, and then the
    /// loop is woken when it settles.
    pub fn try_settle(&mut self) -> Option<Vec<u8>> {
        let mut state = self.run.state.lock();
        let Some(unsent) = state.unsent.take() else {
            state.wanted = true;
            return None;
        };
        let failures = std::mem::take(&mut state.failures);
        let error_replies = std::mem::take(&mut state.error_replies);
        drop(state);
        for text in error_replies {
            tracing::debug!(reply = %text, "error reply");
        }
        for failure in failures {
            failure.log();
        }
        Some(unsent)
    }
}

impl Run {
    /// Takes one append's reply; the last one in writes them all. Runs on the writer thread:
    /// nothing here blocks or logs.
    fn complete(&self, index: usize, (reply, failure): (Value, Option<StorageFailure>)) {
        record_latency(&self.shared, self.started);
        let mut state = self.state.lock();
        if let Value::Error(text) = &reply {
            self.shared.stats.error_replies.fetch_add(1, Ordering::Relaxed);
            state.error_replies.push(text.clone());
        }
        state.failures.extend(failure);
        debug_assert!(state.replies[index].is_none(), "each append of a run completes once");
        state.replies[index] = Some(reply);
        state.missing -= 1;
        if state.missing > 0 {
            return;
        }
        let mut bytes = Vec::with_capacity(32 * state.replies.len());
        for reply in state.replies.drain(..).flatten() {
            encode(&reply, self.proto, &mut bytes);
        }
        if self.direct {
            send_without_blocking(&self.socket, &mut bytes);
            self.shared.stats.runs_answered_by_writer.fetch_add(1, Ordering::Relaxed);
            if !bytes.is_empty() {
                self.shared.stats.runs_left_to_connection.fetch_add(1, Ordering::Relaxed);
            }
        }
        let wake = state.wanted || !bytes.is_empty();
        state.unsent = Some(bytes);
        drop(state);
        if wake {
            self.mailbox.settled(self.connection);
        }
    }
}

/// Writes as much of `bytes` as the socket takes without blocking and keeps the rest in
/// `bytes`. A failed socket takes everything: the connection's own next read or write sees the
/// failure.
pub(crate) fn send_without_blocking(socket: &TcpStream, bytes: &mut Vec<u8>) {
    let sent = sent_without_blocking(socket, bytes);
    bytes.drain(..sent);
}

/// [`send_without_blocking`]'s sending: how many bytes went.
fn sent_without_blocking(socket: &TcpStream, bytes: &[u8]) -> usize {
    #[cfg(feature = "testing")]
    let bytes = &bytes[..bytes.len().min(testing::WRITER_SEND_CAP.load(Ordering::Relaxed))];
    let socket = socket2::SockRef::from(socket);
    let mut sent = 0;
    while sent < bytes.len() {
        match socket.send_with_flags(&bytes[sent..], libc::MSG_DONTWAIT) {
            Ok(0) => return bytes.len(),
            Ok(n) => sent += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(_) => return bytes.len(),
        }
    }
    sent
}

/// Test hooks: the repository's tests reach the rare paths through them.
#[cfg(feature = "testing")]
pub mod testing {
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Most bytes one writer-side send may write (process-wide), as if the socket were full.
    pub(super) static WRITER_SEND_CAP: AtomicUsize = AtomicUsize::new(usize::MAX);

    /// Lets the writer's sends of replies write at most `bytes` bytes each (as if the socket
    /// had room for no more), so the rest is left to the event loop.
    pub fn cap_writer_sends(bytes: usize) {
        WRITER_SEND_CAP.store(bytes, Ordering::Relaxed);
    }
}
