//! One-shot replies from the writer thread to the caller waiting for them.
//!
//! A channel's receive spins and yields before it parks (crossbeam's backoff); with sixteen
//! appenders waiting on their acknowledgements that spinning took the CPU from the writer
//! itself on a 2-core machine (`perf`: a quarter of all samples in `sched_yield`). A waiter
//! here parks at once, unless the caller chose to poll ([`ReplyReceiver::try_take`], see
//! `crate::wait`), and the writer's send makes a wake-up call only when someone is parked.

use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

/// The writer's end: sends one value, or (when dropped unsent) tells the waiter that no value
/// will come.
#[derive(Debug)]
pub struct ReplySender<T> {
    slot: Arc<Slot<T>>,
    sent: bool,
}

/// The caller's end.
#[derive(Debug)]
pub struct ReplyReceiver<T> {
    slot: Arc<Slot<T>>,
}

#[derive(Debug)]
struct Slot<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

#[derive(Debug)]
enum State<T> {
    Waiting,
    Ready(T),
    /// The value was taken, or the sender was dropped without sending.
    Closed,
}

/// A connected pair.
pub fn reply_channel<T>() -> (ReplySender<T>, ReplyReceiver<T>) {
    let slot = Arc::new(Slot { state: Mutex::new(State::Waiting), ready: Condvar::new() });
    (ReplySender { slot: Arc::clone(&slot), sent: false }, ReplyReceiver { slot })
}

impl<T> ReplySender<T> {
    /// Hands `value` to the waiter (kept for it if it is not waiting yet).
    pub fn send(mut self, value: T) {
        self.sent = true;
        self.finish(State::Ready(value));
    }

    fn finish(&self, state: State<T>) {
        *self.slot.state.lock() = state;
        // Wakes the waiter if it parked; no system call when nobody waits.
        self.slot.ready.notify_one();
    }
}

impl<T> Drop for ReplySender<T> {
    fn drop(&mut self) {
        if !self.sent {
            self.finish(State::Closed);
        }
    }
}

impl<T> ReplyReceiver<T> {
    /// The value if it has arrived: `Some(Some(v))`; `Some(None)` when it never will (the
    /// sender is gone); `None` while it may still come.
    pub fn try_take(&self) -> Option<Option<T>> {
        let mut state = self.slot.state.lock();
        match std::mem::replace(&mut *state, State::Closed) {
            State::Waiting => {
                *state = State::Waiting;
                None
            }
            State::Ready(value) => Some(Some(value)),
            State::Closed => Some(None),
        }
    }

    /// Parks until the value arrives; `None` when the sender was dropped without one.
    pub fn recv(&self) -> Option<T> {
        let mut state = self.slot.state.lock();
        loop {
            match std::mem::replace(&mut *state, State::Closed) {
                State::Waiting => {
                    *state = State::Waiting;
                    self.slot.ready.wait(&mut state);
                }
                State::Ready(value) => return Some(value),
                State::Closed => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_sent_before_the_wait_is_received() {
        let (tx, rx) = reply_channel();
        tx.send(7);
        assert_eq!(rx.recv(), Some(7));
    }

    #[test]
    fn a_parked_waiter_is_woken_by_the_send() {
        let (tx, rx) = reply_channel();
        let waiter = std::thread::spawn(move || rx.recv());
        std::thread::sleep(std::time::Duration::from_millis(20));
        tx.send("done");
        assert_eq!(waiter.join().unwrap(), Some("done"));
    }

    #[test]
    fn a_sender_dropped_unsent_ends_the_wait() {
        let (tx, rx) = reply_channel::<u8>();
        let waiter = std::thread::spawn(move || rx.recv());
        std::thread::sleep(std::time::Duration::from_millis(20));
        drop(tx);
        assert_eq!(waiter.join().unwrap(), None);
    }

    #[test]
    fn try_take_reports_pending_arrived_and_gone() {
        let (tx, rx) = reply_channel();
        assert_eq!(rx.try_take(), None);
        tx.send(1);
        assert_eq!(rx.try_take(), Some(Some(1)));
        let (tx, rx) = reply_channel::<u8>();
        drop(tx);
        assert_eq!(rx.try_take(), Some(None));
    }
}
