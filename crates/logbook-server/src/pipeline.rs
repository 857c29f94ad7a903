//! Running a connection's pipelined appends so they share group commits.
//!
//! Every append of a pipelined run is submitted to the store's writer queue first, in the
//! order the client sent them, and only then are the results awaited. The writer takes
//! everything queued into one group commit, so a pipeline of N appends costs about one fsync,
//! and appends get positions in send order (a pipelined `EXPECTED n` / `EXPECTED n+1` pair to
//! one stream works, because the writer checks each against the versions pending before it).
//!
//! A run that ends what the client sent ([`AnsweredByWriter`]) is not waited for at all: the
//! connection's thread goes back to its socket, and the thread that completes the run's last
//! append (the writer, right after the group's fsync) writes the run's replies to the socket
//! itself. At many clients that halves the thread wake-ups per append: the connection's thread
//! wakes for the client's next request only, not also for the acknowledgement. A run with
//! no other append in flight in the store ([`answered_by_writer`] says which) is still waited
//! for by its connection's thread: a lone waiter polls for its acknowledgement (see
//! `logbook::PendingAppend::wait`), which keeps a CPU awake through the fsync, and on a
//! virtual machine that is worth more than the wake-up it saves.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use logbook::{ExpectedVersion, NewEvent};
use logbook_protocol::{encode, ProtocolVersion, Value};
use parking_lot::{Condvar, Mutex};

use super::commands::append::{store_error_unlogged, StorageFailure};
use super::Shared;

/// Most appends of one run answered by the writer: their replies (tens of bytes each) fit at
/// once in any socket's send buffer that the client keeps reading. A longer run is waited for
/// by the connection's thread as before.
pub(crate) const MAX_ANSWERED_BY_WRITER: usize = 64;

/// One append, ready for the store (stream name already in the store's namespace).
pub(crate) struct PreparedAppend {
    pub stream: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    /// APPENDMANY replies `[first_version, last_version, last_position]`, APPEND `[version, position]`.
    pub many: bool,
}

impl PreparedAppend {
    /// Appends on its own and waits for the result.
    pub fn run(self, shared: &Shared) -> Value {
        let started = Instant::now();
        let result = shared.store.append(&self.stream, self.expected, self.events);
        record_latency(shared, started);
        Self::reply(self.many, result)
    }

    fn reply(many: bool, result: logbook::Result<logbook::AppendResult>) -> Value {
        let (reply, failure) = Self::reply_unlogged(many, result);
        if let Some(failure) = failure {
            failure.log();
        }
        reply
    }

    /// [`Self::reply`], leaving a storage failure for the caller to log.
    fn reply_unlogged(many: bool, result: logbook::Result<logbook::AppendResult>) -> (Value, Option<StorageFailure>) {
        match result {
            Ok(r) if many => (range_reply(&r), None),
            Ok(r) => (
                Value::Array(vec![Value::Integer(as_i64(r.last_version)), Value::Integer(as_i64(r.last_position))]),
                None,
            ),
            Err(err) => store_error_unlogged(&err),
        }
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

/// True when a run of `appends` appends that ends what its client sent should be answered by
/// the writer: it is short, and other appends are in flight in the store (so no thread would
/// poll alone).
pub(crate) fn answered_by_writer(shared: &Shared, appends: usize) -> bool {
    appends > 0 && appends <= MAX_ANSWERED_BY_WRITER && shared.store.appends_in_flight() > 0
}

/// Runs a run of consecutive appends: submits all in order, then waits for each; returns
/// their replies in input order.
pub(crate) fn run_appends(shared: &Shared, appends: Vec<PreparedAppend>) -> Vec<Value> {
    let started = Instant::now();
    let store = &shared.store;
    let submitted: Vec<(bool, logbook::Result<logbook::PendingAppend>)> =
        appends.into_iter().map(|a| (a.many, store.submit_append(&a.stream, a.expected, a.events))).collect();
    submitted
        .into_iter()
        .map(|(many, pending)| {
            let result = pending.and_then(logbook::PendingAppend::wait);
            record_latency(shared, started);
            PreparedAppend::reply(many, result)
        })
        .collect()
}

/// Counts an append that was handed to the store at `started` and has its result now, in the
/// append-latency histogram of `/metrics`.
pub(crate) fn record_latency(shared: &Shared, started: Instant) {
    shared.stats.append_micros.record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
}

/// A run of appends whose replies go to the socket from whichever thread completes the run's
/// last append: normally the writer, right after the fsync; the connection's thread when
/// every append was refused before reaching the writer. The replies go out in the run's
/// order, all in one write, without blocking: what the socket does not take at once (a client
/// that stopped reading) is left for the connection's thread, which takes it with
/// [`AnsweredByWriter::settle`] before it runs anything else.
pub(crate) struct AnsweredByWriter(Arc<Run>);

struct Run {
    shared: Arc<Shared>,
    socket: Arc<TcpStream>,
    proto: ProtocolVersion,
    started: Instant,
    state: Mutex<RunState>,
    settled: Condvar,
}

struct RunState {
    replies: Vec<Option<Value>>,
    /// What the connection's thread logs when it settles the run: the writer thread, which
    /// completes runs, must not wait on the log.
    failures: Vec<StorageFailure>,
    error_replies: Vec<String>,
    missing: usize,
    /// `Some` once every reply is in: the bytes the socket did not take.
    unsent: Option<Vec<u8>>,
}

impl AnsweredByWriter {
    /// Submits `appends` (at most [`MAX_ANSWERED_BY_WRITER`]) in order; their replies will be
    /// written to `socket` in the connection's protocol `proto`.
    pub fn submit(
        shared: &Arc<Shared>,
        socket: &Arc<TcpStream>,
        proto: ProtocolVersion,
        appends: Vec<PreparedAppend>,
    ) -> AnsweredByWriter {
        assert!(!appends.is_empty() && appends.len() <= MAX_ANSWERED_BY_WRITER, "a run the writer answers is short");
        let run = Arc::new(Run {
            shared: Arc::clone(shared),
            socket: Arc::clone(socket),
            proto,
            started: Instant::now(),
            state: Mutex::new(RunState {
                replies: std::iter::repeat_with(|| None).take(appends.len()).collect(),
                missing: appends.len(),
                failures: Vec::new(),
                error_replies: Vec::new(),
                unsent: None,
            }),
            settled: Condvar::new(),
        });
        for (index, append) in appends.into_iter().enumerate() {
            let many = append.many;
            match shared.store.submit_append(&append.stream, append.expected, append.events) {
                Ok(pending) => {
                    let run = Arc::clone(&run);
                    pending.on_done(move |result| run.complete(index, PreparedAppend::reply_unlogged(many, result)));
                }
                Err(err) => run.complete(index, store_error_unlogged(&err)),
            }
        }
        AnsweredByWriter(run)
    }

    /// True once every reply was written or handed back (`settle` will not wait).
    pub fn is_settled(&self) -> bool {
        self.0.state.lock().unsent.is_some()
    }

    /// Waits until every reply is in, logs what the run's errors left to log, and returns the
    /// bytes the socket did not take (empty when all went out); the caller writes them before
    /// any later reply.
    pub fn settle(self) -> Vec<u8> {
        let mut state = self.0.state.lock();
        let unsent = loop {
            if let Some(unsent) = state.unsent.take() {
                break unsent;
            }
            self.0.settled.wait(&mut state);
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
        unsent
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
        let sent = send_without_blocking(&self.socket, &bytes);
        bytes.drain(..sent);
        self.shared.stats.runs_answered_by_writer.fetch_add(1, Ordering::Relaxed);
        if !bytes.is_empty() {
            self.shared.stats.runs_left_to_connection.fetch_add(1, Ordering::Relaxed);
        }
        state.unsent = Some(bytes);
        drop(state);
        self.settled.notify_one();
    }
}

/// Writes as much of `bytes` as the socket takes without blocking; returns how much. A failed
/// socket takes everything: the connection's own next read or write sees the failure.
fn send_without_blocking(socket: &TcpStream, bytes: &[u8]) -> usize {
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
    /// had room for no more), so the rest is left to the connection's thread.
    pub fn cap_writer_sends(bytes: usize) {
        WRITER_SEND_CAP.store(bytes, Ordering::Relaxed);
    }
}
