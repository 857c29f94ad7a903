//! Running a connection's pipelined appends so they share group commits.
//!
//! Every append of a pipelined run is submitted to the store's writer queue first, in the
//! order the client sent them, and only then are the results awaited. The writer takes
//! everything queued into one group commit, so a pipeline of N appends costs about one fsync,
//! and appends get positions in send order (a pipelined `EXPECTED n` / `EXPECTED n+1` pair to
//! one stream works, because the writer checks each against the versions pending before it).

use std::time::Instant;

use logbook::{ExpectedVersion, NewEvent};
use logbook_protocol::Value;

use super::commands::append::store_error;
use super::Shared;

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
        match result {
            Ok(r) if many => range_reply(&r),
            Ok(r) => {
                Value::Array(vec![Value::Integer(as_i64(r.last_version)), Value::Integer(as_i64(r.last_position))])
            }
            Err(err) => store_error(&err),
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
