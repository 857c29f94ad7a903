//! Polling for a moment before parking, and backing off when polling does not pay.
//!
//! On a VM, waking a thread parked on an idle CPU costs tens of µs, comparable to a
//! fdatasync, so the writer (for the next request) and a lone appender (for its
//! acknowledgement) poll a little before they park. Polling must never take the CPU from the
//! thread it waits for, nor from anyone else when the machine is loaded:
//!
//! * after a few polls with only a pause hint, each poll yields the CPU (`sched_yield`), so a
//!   runnable thread queued on the same CPU — typically the one being waited for — runs at
//!   once; on an otherwise idle CPU the yield returns immediately and keeps the CPU awake;
//! * a poll that finds the wall clock jumped means the poller lost its CPU to someone else:
//!   polling stops and the poller parks;
//! * a wait whose polling timed out or lost its CPU makes the next waits of the same
//!   [`Poller`] park at once: 2 after one such wait, doubling with each one in a row up to
//!   `MAX_BACKOFF_WAITS`, and none again once polling pays. A rare long wait (an fdatasync
//!   that also writes a zero-filled step, a segment roll-over) then costs a couple of
//!   wake-ups, not 64; polling that keeps failing (a slow disk, a busy machine) reaches the
//!   old back-off of 64 waits after six failures in a row (before, after one).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Polls with only a pause hint before polls start yielding the CPU.
const PAUSE_POLLS: u32 = 32;
/// A gap this long between two polls means the poller was descheduled.
const DESCHEDULED: Duration = Duration::from_micros(50);
/// Most waits that park at once after waits whose polling did not pay.
const MAX_BACKOFF_WAITS: u32 = 64;
/// Failed polls in a row past which the back-off stops doubling (2^6 = `MAX_BACKOFF_WAITS`).
const MAX_MISSES: u32 = MAX_BACKOFF_WAITS.trailing_zeros();
const _: () = assert!(1 << MAX_MISSES == MAX_BACKOFF_WAITS, "the back-off doubles up to its maximum");

/// One kind of wait's polling state (shared by the threads doing that kind of wait). The
/// store's own waits use it; it is public so that a server built on the store polls by the
/// same rule (the daemon's event loops and helper threads do).
#[derive(Debug, Default)]
pub struct Poller {
    /// Waits left that park at once.
    skip: AtomicU32,
    /// Polls in a row that did not pay (timed out or lost the CPU), at most `MAX_MISSES`.
    misses: AtomicU32,
}

impl Poller {
    /// Polls `ready` for at most `bound` (less when backing off or descheduled); `None` means
    /// the caller should park.
    pub fn poll<T>(&self, bound: Duration, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
        let skip = self.skip.load(Ordering::Relaxed);
        if skip > 0 {
            self.skip.store(skip - 1, Ordering::Relaxed);
            return ready();
        }
        let start = Instant::now();
        let mut last = start;
        let mut polls = 0u32;
        loop {
            if let Some(value) = ready() {
                self.misses.store(0, Ordering::Relaxed);
                return Some(value);
            }
            let now = Instant::now();
            if now.duration_since(last) > DESCHEDULED || now.duration_since(start) >= bound {
                let misses = (self.misses.load(Ordering::Relaxed) + 1).min(MAX_MISSES);
                self.misses.store(misses, Ordering::Relaxed);
                self.skip.store(1 << misses, Ordering::Relaxed);
                return None;
            }
            last = now;
            polls += 1;
            if polls < PAUSE_POLLS {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_what_is_ready() {
        let poller = Poller::default();
        assert_eq!(poller.poll(Duration::from_secs(60), || Some(7)), Some(7));
    }

    /// Polls that find nothing until `bound`; returns how many times `ready` was asked.
    fn failed_wait(poller: &Poller) -> u32 {
        let mut polls = 0;
        assert_eq!(
            poller.poll(Duration::from_micros(20), || {
                polls += 1;
                None::<()>
            }),
            None
        );
        polls
    }

    /// Waits that park at once (each asks `ready` once) until one polls again.
    fn parked_waits(poller: &Poller) -> u32 {
        let mut parked = 0;
        while poller.skip.load(Ordering::Relaxed) > 0 {
            assert_eq!(failed_wait(poller), 1, "a backing-off wait looks once, then parks");
            parked += 1;
        }
        parked
    }

    #[test]
    fn waits_that_do_not_pay_in_a_row_double_the_back_off_up_to_its_maximum() {
        let poller = Poller::default();
        let mut backoffs = Vec::new();
        for _ in 0..8 {
            assert!(failed_wait(&poller) > 1, "this wait polls");
            backoffs.push(parked_waits(&poller));
        }
        assert_eq!(backoffs, [2, 4, 8, 16, 32, 64, 64, 64]);
    }

    #[test]
    fn a_wait_that_pays_ends_the_back_off() {
        let poller = Poller::default();
        for _ in 0..MAX_MISSES {
            failed_wait(&poller);
            parked_waits(&poller);
        }
        // Polling is tried again after the back-off, and pays: the next failure backs off
        // by 2 again, so one long wait among quick ones costs two wake-ups, not 64.
        assert_eq!(poller.poll(Duration::from_secs(60), || Some(1)), Some(1));
        failed_wait(&poller);
        assert_eq!(parked_waits(&poller), 2);
    }
}
