//! The helper threads: where a connection's commands that may wait (BLOCK, an fsync, an
//! extension's own appends) or take long (large or filtered reads) run, so that no event loop
//! waits for them (see `connection`).
//!
//! A helper runs one command at a time. Idle helpers are kept for reuse, since starting a
//! thread per command put tens of µs on every such command; one idle for [`HELPER_IDLE`] ends.
//! A command finds an idle helper or starts a new one, never a queue: a slow command (a READALL
//! BLOCK of minutes) cannot hold up another connection's. A connection has at most one command
//! on a helper, so at most `max_connections` helpers are busy; the idle ones (of connections
//! that just closed) end within [`HELPER_IDLE`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, Sender};

/// Stack of a helper thread, as a connection thread's was: parsing is done before, a READALL
/// reply is built iteratively, JSON nesting is bounded by serde_json.
const HELPER_STACK_BYTES: usize = 512 * 1024;
/// How long an idle helper waits for the next command before it ends.
pub(crate) const HELPER_IDLE: Duration = Duration::from_secs(10);
/// How long a helper that just finished a command polls for the next before it parks: a lone
/// client's next command comes one round trip later, and waking a parked thread on an idle
/// CPU costs tens of µs on a VM. The polling follows the store's rule ([`logbook::Poller`]).
const HELPER_SPIN: Duration = Duration::from_micros(200);

type Job = Box<dyn FnOnce() + Send>;

thread_local! {
    /// This helper's job counted it idle already ([`Helpers::idle_from_now`]).
    static IDLE_EARLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The server's helper threads.
pub(crate) struct Helpers {
    jobs: Sender<Job>,
    queue: Receiver<Job>,
    /// Helpers waiting for a command that no command has claimed yet.
    idle: AtomicUsize,
    /// Helpers running (idle or not), for INFO and the tests.
    running: AtomicUsize,
    poller: logbook::Poller,
}

impl Helpers {
    pub fn new() -> Arc<Helpers> {
        let (jobs, queue) = unbounded();
        Arc::new(Helpers {
            jobs,
            queue,
            idle: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            poller: logbook::Poller::default(),
        })
    }

    /// Runs `job` on an idle helper, or on a new one. Fails only when no thread can be started.
    pub fn run(self: &Arc<Self>, job: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        let job: Job = Box::new(job);
        if claim(&self.idle) {
            // An idle helper is claimed: it takes the job off the queue. (The pool holds the
            // queue's receiver itself, so the send cannot fail.)
            let _ = self.jobs.send(job);
            return Ok(());
        }
        let pool = Arc::clone(self);
        self.running.fetch_add(1, Ordering::AcqRel);
        let started =
            std::thread::Builder::new().name("logbook-helper".into()).stack_size(HELPER_STACK_BYTES).spawn(move || {
                job();
                pool.serve();
                pool.running.fetch_sub(1, Ordering::AcqRel);
            });
        if started.is_err() {
            self.running.fetch_sub(1, Ordering::AcqRel);
        }
        started.map(|_| ())
    }

    /// Helpers running now (idle or busy).
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Helpers running a command now (a moment's count: it may change at once).
    pub fn busy(&self) -> usize {
        self.running().saturating_sub(self.idle.load(Ordering::Acquire))
    }

    /// Counts the calling helper as idle now, before its job has quite ended (called from the
    /// job, at most once): a job that lets its client see the reply itself and then still has
    /// a little to do would otherwise leave the client's next command finding no idle helper
    /// and starting another. A command claiming it meanwhile waits in the queue the moment
    /// that is left.
    pub fn idle_from_now(&self) {
        if IDLE_EARLY.with(|early| !early.replace(true)) {
            self.idle.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// A helper's life after its first job: wait idle for the next, end after [`HELPER_IDLE`].
    fn serve(&self) {
        loop {
            if !IDLE_EARLY.with(|early| early.replace(false)) {
                self.idle.fetch_add(1, Ordering::AcqRel);
            }
            let polled = self.poller.poll(HELPER_SPIN, || self.queue.try_recv().ok());
            let job = match polled.map_or_else(|| self.queue.recv_timeout(HELPER_IDLE), Ok) {
                Ok(job) => job,
                Err(_) => {
                    if claim(&self.idle) {
                        return; // nobody counted on this helper: it ends
                    }
                    // A command claimed an idle helper and its job is on its way: take it.
                    match self.queue.recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    }
                }
            };
            job();
        }
    }
}

/// Takes one from `idle` if it is above 0.
fn claim(idle: &AtomicUsize) -> bool {
    idle.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn an_idle_helper_is_reused_and_a_busy_one_is_not_waited_for() {
        let helpers = Helpers::new();
        let (done, finished) = mpsc::channel();
        let first = done.clone();
        helpers.run(move || first.send(std::thread::current().id()).unwrap()).unwrap();
        let first_thread = finished.recv().unwrap();
        // Let it go idle, then the next job lands on the same thread.
        while helpers.idle.load(Ordering::Acquire) == 0 {
            std::thread::yield_now();
        }
        let second = done.clone();
        helpers.run(move || second.send(std::thread::current().id()).unwrap()).unwrap();
        assert_eq!(finished.recv().unwrap(), first_thread, "the idle helper ran the second job");
        assert_eq!(helpers.running(), 1);

        // A job that blocks does not hold up the next one: a second helper starts.
        while helpers.idle.load(Ordering::Acquire) == 0 {
            std::thread::yield_now();
        }
        let (release, blocked) = mpsc::channel::<()>();
        helpers.run(move || blocked.recv().unwrap()).unwrap();
        let third = done.clone();
        helpers.run(move || third.send(std::thread::current().id()).unwrap()).unwrap();
        let third_thread = finished.recv_timeout(Duration::from_secs(10)).expect("not held up by the blocked job");
        assert_eq!(helpers.running(), 2, "a second helper was started for it");
        assert_ne!(third_thread, first_thread);
        release.send(()).unwrap();
    }
}
