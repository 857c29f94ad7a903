//! One-shot replies from the writer thread to the caller waiting for them.
//!
//! A channel's receive spins and yields before it parks (crossbeam's backoff); with sixteen
//! appenders waiting on their acknowledgements that spinning took the CPU from the writer
//! itself on a 2-core machine (`perf`: a quarter of all samples in `sched_yield`). A waiter
//! here parks at once, unless the caller chose to poll ([`ReplyReceiver::try_take`], see
//! `crate::wait`), and the writer's send makes a wake-up call only when someone is parked.
//!
//! A caller that must not block at all (a server thread going back to its socket) leaves a
//! callback instead ([`ReplyReceiver::on_arrival`]): the writer runs it with the value, on its
//! own thread, and nobody is woken.

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

/// What the sender runs with the value (`None`: no value will come).
type Callback<T> = Box<dyn FnOnce(Option<T>) + Send>;

enum State<T> {
    Waiting,
    Ready(T),
    /// The value was taken, or the sender was dropped without sending.
    Closed,
    /// The receiver left a callback for the value instead of waiting.
    Callback(Callback<T>),
}

impl<T> std::fmt::Debug for State<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Waiting => "Waiting",
            State::Ready(_) => "Ready",
            State::Closed => "Closed",
            State::Callback(_) => "Callback",
        })
    }
}

/// A connected pair.
pub fn reply_channel<T>() -> (ReplySender<T>, ReplyReceiver<T>) {
    let slot = Arc::new(Slot { state: Mutex::new(State::Waiting), ready: Condvar::new() });
    (ReplySender { slot: Arc::clone(&slot), sent: false }, ReplyReceiver { slot })
}

impl<T> ReplySender<T> {
    /// Hands `value` to the waiter or its callback (kept for it if it is not waiting yet).
    pub fn send(mut self, value: T) {
        self.sent = true;
        self.finish(State::Ready(value));
    }

    fn finish(&self, state: State<T>) {
        let mut slot = self.slot.state.lock();
        if let State::Callback(_) = &*slot {
            // The receiver left instead of waiting: the value goes to its callback, run
            // outside the lock, and the slot is done.
            let State::Callback(callback) = std::mem::replace(&mut *slot, State::Closed) else { unreachable!() };
            drop(slot);
            callback(match state {
                State::Ready(value) => Some(value),
                _ => None,
            });
            return;
        }
        *slot = state;
        drop(slot);
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
            State::Callback(_) => unreachable!("a receiver that left a callback does not take"),
        }
    }

    /// Instead of waiting: `callback` gets the value (`None` when none will come) exactly
    /// once, on the sender's thread when it sends later, or on this thread now when the value
    /// (or the sender's end) is already there.
    /// Neither `recv` nor `try_take` may follow it.
    pub fn on_arrival(&self, callback: impl FnOnce(Option<T>) + Send + 'static) {
        let mut state = self.slot.state.lock();
        match std::mem::replace(&mut *state, State::Closed) {
            State::Waiting => *state = State::Callback(Box::new(callback)),
            State::Ready(value) => {
                drop(state);
                callback(Some(value));
            }
            State::Closed => {
                drop(state);
                callback(None);
            }
            State::Callback(_) => unreachable!("a receiver leaves one callback"),
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
                State::Callback(_) => unreachable!("a receiver that left a callback does not wait"),
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
    fn a_callback_gets_a_value_sent_later_on_the_senders_thread() {
        let (tx, rx) = reply_channel();
        let (seen_tx, seen_rx) = std::sync::mpsc::channel();
        rx.on_arrival(move |value| seen_tx.send((value, std::thread::current().id())).unwrap());
        assert!(seen_rx.try_recv().is_err(), "nothing is called before the send");
        let sender = std::thread::spawn(move || {
            tx.send(5);
            std::thread::current().id()
        });
        let sender_id = sender.join().unwrap();
        assert_eq!(seen_rx.recv().unwrap(), (Some(5), sender_id));
    }

    #[test]
    fn a_callback_left_after_the_send_or_the_drop_runs_at_once() {
        let (tx, rx) = reply_channel();
        tx.send(3);
        let (seen_tx, seen_rx) = std::sync::mpsc::channel();
        let seen = seen_tx.clone();
        rx.on_arrival(move |value| seen.send(value).unwrap());
        assert_eq!(seen_rx.try_recv().unwrap(), Some(3));
        let (tx, rx) = reply_channel::<u8>();
        drop(tx);
        rx.on_arrival(move |value| seen_tx.send(value).unwrap());
        assert_eq!(seen_rx.try_recv().unwrap(), None);
    }

    #[test]
    fn a_callback_hears_of_a_sender_dropped_unsent() {
        let (tx, rx) = reply_channel::<u8>();
        let (seen_tx, seen_rx) = std::sync::mpsc::channel();
        rx.on_arrival(move |value| seen_tx.send(value).unwrap());
        drop(tx);
        assert_eq!(seen_rx.try_recv().unwrap(), None);
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
