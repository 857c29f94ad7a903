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
//! * a wait whose polling timed out or lost its CPU makes the next `BACKOFF_WAITS` waits of
//!   the same [`Poller`] park at once; polling is tried again afterwards.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Polls with only a pause hint before polls start yielding the CPU.
const PAUSE_POLLS: u32 = 32;
/// A gap this long between two polls means the poller was descheduled.
const DESCHEDULED: Duration = Duration::from_micros(50);
/// Waits that park at once after a wait whose polling did not pay.
const BACKOFF_WAITS: u32 = 64;

/// One kind of wait's polling state (shared by the threads doing that kind of wait). The
/// store's own waits use it; it is public so that a server built on the store polls by the
/// same rule (the daemon's event loops and helper threads do).
#[derive(Debug, Default)]
pub struct Poller {
    /// Waits left that park at once.
    skip: AtomicU32,
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
                return Some(value);
            }
            let now = Instant::now();
            if now.duration_since(last) > DESCHEDULED || now.duration_since(start) >= bound {
                self.skip.store(BACKOFF_WAITS, Ordering::Relaxed);
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

    #[test]
    fn a_wait_that_did_not_pay_makes_the_next_ones_park_at_once() {
        let poller = Poller::default();
        assert_eq!(poller.poll(Duration::ZERO, || None::<()>), None);
        for _ in 0..BACKOFF_WAITS {
            let mut polls = 0;
            assert_eq!(
                poller.poll(Duration::from_secs(60), || {
                    polls += 1;
                    None::<()>
                }),
                None
            );
            assert_eq!(polls, 1, "a backing-off wait looks once, then parks");
        }
        // Polling is tried again afterwards.
        assert_eq!(poller.skip.load(Ordering::Relaxed), 0);
    }
}
