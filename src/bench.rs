//! Measuring the machine's limits and generating the order-lifecycle workload of design.md,
//! shared by the criterion benches and `logbook bench`.
//!
//! Figures are only meaningful next to the limits of the same machine in the same run:
//! [`fdatasync_rate`] (small write + fdatasync, repeated) and [`sequential_write_bandwidth`]
//! (one large write + one fsync).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::types::NewEvent;

/// Small writes followed by fdatasync, in a fresh file in `dir`, for about `duration`.
/// Returns syncs per second.
pub fn fdatasync_rate(dir: &Path, duration: Duration) -> std::io::Result<f64> {
    let path = dir.join(".logbook-fdatasync-probe");
    let file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path)?;
    file.set_len(64 * 1024 * 1024)?;
    file.sync_all()?;
    let record = [0x5Au8; 512];
    let start = Instant::now();
    let mut syncs = 0u64;
    while start.elapsed() < duration || syncs < 20 {
        file.write_all_at(&record, syncs * record.len() as u64)?;
        file.sync_data()?;
        syncs += 1;
    }
    let rate = syncs as f64 / start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(rate)
}

/// Writes `bytes` sequentially in 1 MiB chunks and syncs once. Returns bytes per second.
pub fn sequential_write_bandwidth(dir: &Path, bytes: u64) -> std::io::Result<f64> {
    let path = dir.join(".logbook-bandwidth-probe");
    let mut file = File::create(&path)?;
    let chunk = vec![0xA5u8; 1 << 20];
    let start = Instant::now();
    let mut written = 0u64;
    while written < bytes {
        file.write_all(&chunk)?;
        written += chunk.len() as u64;
    }
    file.sync_all()?;
    let rate = written as f64 / start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(rate)
}

/// Event types of one order's life, in the order seed 000 draws them.
const LIFECYCLE: [&str; 8] = [
    "CART_CREATED",
    "ITEM_ADDED",
    "CHECKOUT_STARTED",
    "PAYMENT_CONFIRMED",
    "ORDER_PLACED",
    "STATUS_UPDATED",
    "SHIPPED",
    "DELIVERED",
];

/// One event of the workload: which order stream it belongs to and the event.
#[derive(Debug, Clone)]
pub struct WorkloadEvent {
    pub stream: String,
    pub event: NewEvent,
}

/// The design.md workload: order lifecycles of about 8.6 events each, JSON data padded to
/// `payload_bytes` (471 by default), interleaved `interleave` orders at a time.
#[derive(Debug, Clone, Copy)]
pub struct OrderWorkload {
    pub orders: usize,
    pub payload_bytes: usize,
    pub interleave: usize,
    pub seed: u64,
}

impl Default for OrderWorkload {
    fn default() -> Self {
        OrderWorkload { orders: 20_000, payload_bytes: 471, interleave: 64, seed: 0x0BDE_2026 }
    }
}

impl OrderWorkload {
    /// Stream name of order `i`.
    pub fn stream(i: usize) -> String {
        format!("order-{i:08x}-{:04x}", (i * 7919) % 65_536)
    }

    /// The events of order `i`: the lifecycle with 1..=3 ITEM_ADDED.
    pub fn order_events(&self, i: usize) -> Vec<NewEvent> {
        let mut rng = self.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let items = 1 + (next() % 3) as usize;
        let mut events = Vec::with_capacity(LIFECYCLE.len() + items);
        for (step, kind) in LIFECYCLE.iter().enumerate() {
            let repeats = if *kind == "ITEM_ADDED" { items } else { 1 };
            for r in 0..repeats {
                let data = self.payload(i, step, r, next());
                let meta = format!(r#"{{"actor":"customer","retailer_id":"r-{}","correlation_id":"c-{i}"}}"#, i % 16);
                events.push(NewEvent::new(*kind, data).with_metadata(meta.into_bytes()));
            }
        }
        events
    }

    fn payload(&self, order: usize, step: usize, item: usize, noise: u64) -> Vec<u8> {
        let mut json = format!(
            r#"{{"order":{order},"step":{step},"item":{item},"sku":"p-{:05}","amount":{},"note":""#,
            noise % 100_000,
            noise % 50_000
        );
        let target = self.payload_bytes.saturating_sub(2).max(json.len());
        while json.len() < target {
            json.push(char::from(b'a' + (json.len() % 26) as u8));
        }
        json.push_str("\"}");
        json.into_bytes()
    }

    /// All events in commit order: `interleave` orders progress together, one event each
    /// in turn, then the next group of orders starts.
    pub fn events(&self) -> Vec<WorkloadEvent> {
        let mut out = Vec::new();
        for group_start in (0..self.orders).step_by(self.interleave.max(1)) {
            let group: Vec<(String, Vec<NewEvent>)> = (group_start..(group_start + self.interleave).min(self.orders))
                .map(|i| (Self::stream(i), self.order_events(i)))
                .collect();
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
}

/// Percentile (0.0..=1.0) of sorted latencies.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_has_the_design_shape() {
        let workload = OrderWorkload { orders: 200, ..OrderWorkload::default() };
        let events = workload.events();
        let per_order = events.len() as f64 / 200.0;
        assert!((8.0..=11.0).contains(&per_order), "{per_order} events per order");
        assert!(events.iter().all(|e| e.event.data.len() == 471));
        // Interleaved: the first 64 events belong to 64 different orders.
        let first: std::collections::HashSet<_> = events[..64].iter().map(|e| e.stream.clone()).collect();
        assert_eq!(first.len(), 64);
        // Deterministic.
        assert_eq!(workload.events()[100].event, events[100].event);
    }

    #[test]
    fn percentiles_pick_by_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile(&sorted, 0.5), Duration::from_micros(51));
        assert_eq!(percentile(&sorted, 0.99), Duration::from_micros(99));
        assert_eq!(percentile(&[], 0.99), Duration::ZERO);
    }
}
