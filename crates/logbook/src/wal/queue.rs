//! How requests reach the [`Writer`]: through its bounded queue to the writer thread, which
//! takes everything queued as one group; or, for a lone appender of a large append with
//! nothing queued, handled by the appending thread itself ([`WriterQueue::handle_here`]).
//!
//! Why a large lone append is committed on its own thread: handed to the writer thread, it
//! crosses threads twice (the request, the acknowledgement), and the thread asleep in
//! fdatasync is woken by the disk's interrupt on whatever CPU the scheduler left it. For one
//! appender of 64-event batches (41 KB) the two-thread figure moved between runs by up to
//! 1.5× with that placement, and one thread that writes, syncs and returns (what fjall and
//! okaywal do) was 1.05–1.7× faster, in alternation. Small appends are not: with the writer
//! thread polling for the next request and the appender polling for its acknowledgement,
//! single events and 4-event appends were as fast or faster through the queue, and held up
//! better beside a busy core (docs/benchmarks.md, "A lone appender's large appends on its
//! own thread").
//!
//! **Order.** Requests are applied in the order they were submitted. `queued` counts requests
//! sent to the queue and not yet handled: the writer thread takes it down only once it has
//! handled (and acknowledged) a group. So a thread that finds `queued` at 0 knows that every
//! request submitted before that moment is handled, and its own may go at once; a request
//! queued after that moment is concurrent with it, in either order. The writer is a mutex:
//! whoever handles a group holds it until the group is acknowledged, so groups never
//! interleave. `tests/concurrency.rs` (`an_append_waited_for_never_overtakes_…`) fails
//! without the count.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use parking_lot::Mutex;

use super::writer::{Request, Writer, MAX_GROUP_APPENDS};

/// Longest the writer thread polls for the next request before it parks: long enough for an
/// appender to take its acknowledgement and build its next append of 64 events (50 µs was
/// not: the writer then parked before most of column b's commits).
pub const WRITER_SPIN: Duration = Duration::from_micros(120);

/// Least encoded size of an append (or batch) that a lone appender commits on its own
/// thread; smaller ones go through the queue (see the module's comment).
pub const HANDLE_HERE_MIN_BYTES: usize = 16 * 1024;

/// The writer, its queue and its thread's count of unhandled requests.
pub struct WriterQueue {
    requests: Sender<Request>,
    shared: Arc<QueueShared>,
}

struct QueueShared {
    writer: Mutex<Writer>,
    /// Requests sent and not yet handled (see the module's "Order").
    queued: AtomicUsize,
    /// Whether the writer thread, when it last looked (holding the writer), had timed work
    /// to wait for; false: it waits for requests only. A group committed on an appender's
    /// thread that leaves timed work (recording how far the log is synced) wakes a thread
    /// that has none, so the last appends before the store goes idle get recorded too.
    thread_has_timer: AtomicBool,
}

impl WriterQueue {
    /// Starts the writer thread with a queue of `capacity` requests.
    pub fn start(writer: Writer, capacity: usize) -> std::io::Result<(WriterQueue, JoinHandle<()>)> {
        let (requests, queue) = bounded(capacity);
        let shared = Arc::new(QueueShared {
            writer: Mutex::new(writer),
            queued: AtomicUsize::new(0),
            thread_has_timer: AtomicBool::new(false),
        });
        let for_thread = Arc::clone(&shared);
        let handle =
            std::thread::Builder::new().name("logbook-writer".into()).spawn(move || run(&for_thread, &queue))?;
        Ok((WriterQueue { requests, shared }, handle))
    }

    /// Queues `request`, waiting for room; hands it back when the writer thread is gone.
    pub fn send(&self, request: Request) -> Result<(), Request> {
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
        self.requests.send(request).map_err(|e| {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            e.into_inner()
        })
    }

    /// Queues `request` if there is room now. (The error is large because it carries the
    /// request back, whole, to be submitted again: boxing it would allocate per refusal.)
    #[allow(clippy::result_large_err)]
    pub fn try_send(&self, request: Request) -> Result<(), TrySendError<Request>> {
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
        self.requests.try_send(request).inspect_err(|_| {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
        })
    }

    /// Handles `request` on this thread, as a group of its own, when it is an append of at
    /// least [`HANDLE_HERE_MIN_BYTES`], nothing is queued, nobody holds the writer and the
    /// writer thread does not time the syncs (`SyncMode::Every`: it would not know of this
    /// write); otherwise hands it back, to be sent. The request's reply is there when this
    /// returns `None`. For a caller that is the store's only appender (one overlapping
    /// others would take a group commit away from them).
    pub fn handle_here(&self, request: Request) -> Option<Request> {
        let bytes = match &request {
            Request::Append(append, _) => append.encoded_bytes,
            Request::AppendBatch(parts, _) => parts.iter().map(|p| p.encoded_bytes).sum(),
            _ => 0,
        };
        if bytes < HANDLE_HERE_MIN_BYTES || self.shared.queued.load(Ordering::Acquire) != 0 {
            return Some(request);
        }
        let Some(mut writer) = self.shared.writer.try_lock() else {
            return Some(request);
        };
        if writer.stopped() || writer.times_its_syncs() {
            return Some(request); // a stopped writer's closed queue refuses it
        }
        let groups = writer.stats().groups.load(Ordering::Relaxed);
        // A panic stops the writer and refuses the request (see `handle`): the caller gets
        // the writer's failure from its reply, as it would from the writer thread.
        let _ = handle(&mut writer, vec![request]);
        if writer.stats().groups.load(Ordering::Relaxed) > groups {
            writer.stats().groups_on_appender_thread.fetch_add(1, Ordering::Relaxed);
        }
        // Read while holding the writer, under which the thread sets it.
        if writer.idle_wait().is_some() && !self.shared.thread_has_timer.load(Ordering::Acquire) {
            // A full queue means the thread is busy and looks again after its group.
            let _ = self.try_send(Request::Wake);
        }
        None
    }
}

/// Handles a group; returns whether the writer stops (a shutdown). A panic on the way (a bug,
/// or a panicking `ArchivedEvents` lookup) stops the writer for good, since the group may be
/// half staged: it is marked failed (every later request is refused) and every append staged
/// so far is refused (the rest of the group is dropped, which tells their callers the writer
/// stopped), so nobody is left waiting. The panic is handed back.
fn handle(writer: &mut Writer, group: Vec<Request>) -> std::thread::Result<bool> {
    catch_unwind(AssertUnwindSafe(|| writer.process_group(group))).inspect_err(|_| {
        let _ = writer.fail("the writer panicked while handling a group".into());
        let _ = catch_unwind(AssertUnwindSafe(|| writer.refuse_staged()));
    })
}

/// The writer thread: runs until a shutdown request or until every sender is gone. If it
/// panics, the writer is marked failed and stopped first, so that no appender commits on its
/// own thread past it (every request is refused, with the thread's timed work gone too).
fn run(shared: &QueueShared, requests: &Receiver<Request>) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| run_loop(shared, requests))) {
        let mut writer = shared.writer.lock();
        let _ = writer.fail("the writer thread panicked".into());
        writer.stop();
        drop(writer);
        resume_unwind(panic);
    }
}

fn run_loop(shared: &QueueShared, requests: &Receiver<Request>) {
    loop {
        let Some(first) = next_request(shared, requests) else {
            // Every sender is gone without a shutdown: still close cleanly.
            let _ = shared.writer.lock().shutdown();
            return;
        };
        let mut writer = shared.writer.lock();
        let mut group = vec![first];
        while group.len() < MAX_GROUP_APPENDS {
            match requests.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        let taken = group.len();
        let handled = handle(&mut writer, group);
        shared.queued.fetch_sub(taken, Ordering::AcqRel);
        match handled {
            Ok(false) => {}
            Ok(true) => return,
            Err(panic) => resume_unwind(panic),
        }
    }
}

/// Waits for a request without holding the writer, waking for the writer's timed work
/// ([`Writer::idle_wait`]) when some is due.
fn next_request(shared: &QueueShared, requests: &Receiver<Request>) -> Option<Request> {
    // An appender sends its next request right after its acknowledgement; catching it while
    // still awake saves a thread wake-up, a real share of a 100 µs fdatasync. The polling
    // yields the CPU and backs off when it does not pay (`crate::wait`).
    thread_local!(static POLLER: crate::wait::Poller = crate::wait::Poller::default());
    if let Some(request) = POLLER.with(|poller| poller.poll(WRITER_SPIN, || requests.try_recv().ok())) {
        return Some(request);
    }
    loop {
        let wait = {
            let writer = shared.writer.lock();
            let wait = writer.idle_wait();
            shared.thread_has_timer.store(wait.is_some(), Ordering::Release);
            wait
        };
        let Some(wait) = wait else { return requests.recv().ok() };
        match requests.recv_timeout(wait) {
            Ok(request) => return Some(request),
            Err(RecvTimeoutError::Timeout) => shared.writer.lock().on_idle_timeout(),
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
}
