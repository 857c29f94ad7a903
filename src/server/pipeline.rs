//! Running a connection's pipelined appends so they share group commits.
//!
//! The store's append blocks until the events are durable, and the writer commits everything
//! queued at that moment with one fsync. So appends share a commit only if they are waiting
//! at the same time. A connection that pipelines N appends therefore hands them to a small
//! shared pool of worker threads: appends to *different* streams run concurrently (one chain
//! per stream), while appends to the *same* stream run one after the other in pipeline order,
//! so a stream's events are stored in the order the client sent them.
//!
//! Consequence, documented in docs/protocol.md: within one pipelined run, appends to different
//! streams may receive positions in a different order than they were sent.

use std::collections::HashMap;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use parking_lot::Mutex;

use crate::protocol::Value;
use crate::{ExpectedVersion, NewEvent, Store};

use super::commands::append::store_error;

/// Most jobs queued for the workers per worker before callers run chains themselves.
const QUEUED_JOBS_PER_WORKER: usize = 4;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed set of threads running append chains.
pub(crate) struct AppendPool {
    jobs: Mutex<Option<Sender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl AppendPool {
    pub fn new(workers: usize) -> std::io::Result<AppendPool> {
        let (tx, rx) = bounded::<Job>(workers.saturating_mul(QUEUED_JOBS_PER_WORKER));
        let mut threads = Vec::with_capacity(workers);
        for i in 0..workers {
            let rx: Receiver<Job> = rx.clone();
            let thread = std::thread::Builder::new().name(format!("logbook-append-{i}")).spawn(move || {
                while let Ok(job) = rx.recv() {
                    job();
                }
            })?;
            threads.push(thread);
        }
        Ok(AppendPool { jobs: Mutex::new(Some(tx)), threads: Mutex::new(threads) })
    }

    /// Queues `job`, or gives it back when the queue is full or the pool stopped.
    fn try_submit(&self, job: Job) -> Result<(), Job> {
        match self.jobs.lock().as_ref() {
            Some(tx) => tx.try_send(job).map_err(|e| match e {
                TrySendError::Full(job) | TrySendError::Disconnected(job) => job,
            }),
            None => Err(job),
        }
    }

    /// Lets the workers finish queued jobs, then joins them.
    pub fn shutdown(&self) {
        self.jobs.lock().take();
        for thread in self.threads.lock().drain(..) {
            let _ = thread.join();
        }
    }
}

/// One append, ready for the store (stream name already in the store's namespace).
pub(crate) struct PreparedAppend {
    pub stream: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    /// APPENDMANY replies `[first_version, last_version, last_position]`, APPEND `[version, position]`.
    pub many: bool,
}

impl PreparedAppend {
    pub fn run(self, store: &Store) -> Value {
        match store.append(&self.stream, self.expected, self.events) {
            Ok(r) if self.many => Value::Array(vec![
                Value::Integer(as_i64(r.first_version)),
                Value::Integer(as_i64(r.last_version)),
                Value::Integer(as_i64(r.last_position)),
            ]),
            Ok(r) => {
                Value::Array(vec![Value::Integer(as_i64(r.last_version)), Value::Integer(as_i64(r.last_position))])
            }
            Err(err) => store_error(&err),
        }
    }
}

/// Versions and positions are far below i64::MAX in practice; saturate rather than wrap.
pub(crate) fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

type Chain = Vec<(usize, PreparedAppend)>;

fn run_chain(store: &Store, chain: Chain, results: &Sender<(usize, Value)>) {
    for (index, append) in chain {
        let _ = results.send((index, append.run(store)));
    }
}

/// Runs a run of consecutive appends; returns their replies in input order.
pub(crate) fn run_appends(store: &Store, pool: &AppendPool, appends: Vec<PreparedAppend>) -> Vec<Value> {
    let count = appends.len();
    if count == 1 {
        return appends.into_iter().map(|a| a.run(store)).collect();
    }
    // Group into per-stream chains, keeping each stream's order.
    let mut chain_of: HashMap<String, usize> = HashMap::new();
    let mut chains: Vec<Chain> = Vec::new();
    for (index, append) in appends.into_iter().enumerate() {
        let next = chains.len();
        let slot = *chain_of.entry(append.stream.clone()).or_insert(next);
        if slot == next {
            chains.push(Vec::new());
        }
        chains[slot].push((index, append));
    }
    let (tx, rx) = bounded::<(usize, Value)>(count);
    let mut chains = chains.into_iter();
    // This thread runs the first chain itself; the others go to the pool while it has room,
    // and whatever the pool cannot take runs here afterwards.
    let first = chains.next();
    let mut overflow: Vec<Job> = Vec::new();
    for chain in chains {
        let store = store.clone();
        let results = tx.clone();
        let job: Job = Box::new(move || run_chain(&store, chain, &results));
        if let Err(job) = pool.try_submit(job) {
            overflow.push(job);
        }
    }
    if let Some(chain) = first {
        run_chain(store, chain, &tx);
    }
    for job in overflow {
        job();
    }
    drop(tx);
    let mut replies: Vec<Option<Value>> = (0..count).map(|_| None).collect();
    for (index, reply) in rx.iter() {
        replies[index] = Some(reply);
    }
    replies.into_iter().map(|r| r.unwrap_or_else(|| Value::error("ERR", "internal error: append lost"))).collect()
}
