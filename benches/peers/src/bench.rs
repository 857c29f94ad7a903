//! The two pieces of the root package's `bench` module that `src/workload.rs` (included as this
//! crate's `workload` module, so the peers get exactly the events of `logbook bench --workload
//! orders`) names: the order streams' names and the interleaving of their lifecycles. Kept
//! equal to `src/bench.rs`, which this package does not depend on.

use logbook::NewEvent;

/// One event of the workload: which order stream it belongs to and the event.
#[derive(Debug, Clone)]
pub struct WorkloadEvent {
    pub stream: String,
    pub event: NewEvent,
}

/// Only the stream names of the root package's filler workload.
pub struct OrderWorkload;

impl OrderWorkload {
    /// Stream name of order `i`.
    pub fn stream(i: usize) -> String {
        format!("order-{i:08x}-{:04x}", (i * 7919) % 65_536)
    }
}

/// The events of orders `0..orders`, `interleave` orders at a time, each order of a group taking
/// one step in turn; `order(i)` gives order `i`'s stream and events.
pub fn interleaved(
    orders: usize,
    interleave: usize,
    order: impl Fn(usize) -> (String, Vec<NewEvent>),
) -> Vec<WorkloadEvent> {
    let mut out = Vec::new();
    for group_start in (0..orders).step_by(interleave.max(1)) {
        let group: Vec<(String, Vec<NewEvent>)> =
            (group_start..(group_start + interleave).min(orders)).map(&order).collect();
        let longest = group.iter().map(|(_, e)| e.len()).max().unwrap_or(0);
        for step in 0..longest {
            for (stream, events) in &group {
                if let Some(event) = events.get(step) {
                    out.push(WorkloadEvent { stream: stream.clone(), event: event.clone() });
                }
            }
        }
    }
    out
}
