//! The run's events, prepared once before anything is timed: the order workload of
//! `src/workload.rs` as logbook appends it (stream, type, data, metadata) and as the peers store
//! it (one JSON line per event: id, stream, version, global position, type, time, data and
//! metadata), with the keys the key-value stores index it by.

use std::collections::HashMap;

use logbook::NewEvent;
use rand_core::{Rng as _, SeedableRng};
use rand_xoshiro::SplitMix64;

use crate::workload::RealisticOrders;

/// One event of the run.
pub struct Event {
    /// Index of its order stream in [`Events::streams`].
    pub stream: usize,
    /// Its version in its stream (1 for the first).
    pub version: u32,
    /// For logbook: what `Store::append` takes (the store draws the id and the time).
    pub event: NewEvent,
    /// For the peers: the event as one JSON line.
    pub line: Vec<u8>,
}

impl Event {
    /// Its position in the global order (1 for the first).
    pub fn position(index: usize) -> u64 {
        index as u64 + 1
    }
}

/// The events of a run, in commit order.
pub struct Events {
    pub events: Vec<Event>,
    /// Names of the order streams that have at least one event, by first appearance.
    pub streams: Vec<String>,
}

impl Events {
    /// The first `count` events of `orders` interleaved order lifecycles (64 at a time, as
    /// `logbook bench --workload orders` appends them).
    pub fn generate(count: usize, orders: usize) -> Events {
        let generated = RealisticOrders::default().events(orders, 64);
        let mut ids = SplitMix64::seed_from_u64(0x9E37_2026);
        let mut stream_index: HashMap<String, (usize, u32)> = HashMap::new();
        let mut streams = Vec::new();
        let events = generated
            .into_iter()
            .take(count)
            .enumerate()
            .map(|(i, e)| {
                let next = stream_index.len();
                let entry = stream_index.entry(e.stream.clone()).or_insert((next, 0));
                if entry.0 == streams.len() {
                    streams.push(e.stream.clone());
                }
                entry.1 += 1;
                let (stream, version) = *entry;
                let line = json_line(&mut ids, &e.stream, version, Event::position(i), &e.event);
                Event { stream, version, event: e.event, line }
            })
            .collect();
        Events { events, streams }
    }

    /// Mean length of the peers' JSON lines, in bytes.
    pub fn mean_line_bytes(&self) -> f64 {
        self.events.iter().map(|e| e.line.len()).sum::<usize>() as f64 / self.events.len().max(1) as f64
    }

    /// Mean of the event's own bytes as logbook counts them: a 16-byte id, type, stream, data
    /// and metadata.
    pub fn mean_own_bytes(&self) -> f64 {
        let own = |e: &Event| {
            16 + e.event.event_type.len() + self.streams[e.stream].len() + e.event.data.len() + e.event.metadata.len()
        };
        self.events.iter().map(own).sum::<usize>() as f64 / self.events.len().max(1) as f64
    }
}

/// `{"id":…,"stream":…,"version":…,"position":…,"type":…,"time_us":…,"data":…,"metadata":…}`
/// and a newline; data and metadata are the workload's JSON, embedded as they are.
fn json_line(ids: &mut SplitMix64, stream: &str, version: u32, position: u64, event: &NewEvent) -> Vec<u8> {
    let (hi, lo) = (ids.next_u64(), ids.next_u64());
    let h = format!("{hi:016x}{lo:016x}");
    let id = format!("{}-{}-4{}-{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[16..20], &h[20..32]);
    let time_us = 1_764_547_200_000_000u64 + position * 1_000;
    let mut line = format!(
        r#"{{"id":"{id}","stream":"{stream}","version":{version},"position":{position},"type":"{}","time_us":{time_us},"data":"#,
        event.event_type
    )
    .into_bytes();
    line.extend_from_slice(&event.data);
    line.extend_from_slice(br#","metadata":"#);
    line.extend_from_slice(&event.metadata);
    line.extend_from_slice(b"}\n");
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_and_keys_follow_the_streams() {
        let events = Events::generate(3_000, 400);
        assert_eq!(events.events.len(), 3_000);
        let mut seen: HashMap<usize, u32> = HashMap::new();
        for (i, e) in events.events.iter().enumerate() {
            let value: serde_json::Value = serde_json::from_slice(&e.line).unwrap();
            assert_eq!(value["stream"], events.streams[e.stream].as_str());
            assert_eq!(value["position"], Event::position(i));
            assert_eq!(value["version"], e.version);
            let version = seen.entry(e.stream).or_insert(0);
            *version += 1;
            assert_eq!(*version, e.version);
        }
        let mean = events.mean_line_bytes();
        assert!((380.0..=520.0).contains(&mean), "mean JSON line {mean} B");
    }
}
