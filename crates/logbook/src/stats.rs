//! `logbook stats`: what a store holds, in one pass over `$all`.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::store::Store;
use crate::types::Filter;


/// What a store holds. Serialized as `logbook stats --json` (integer keys `events`, `streams`,
/// `segments`, `bytes` among others).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsReport {
    /// Events stored in the hot tier (the segments).
    pub events: u64,
    /// Streams with at least one event.
    pub streams: u64,
    /// Segment files, sealed and active.
    pub segments: u64,
    /// Bytes allocated on disk by segment and index files (the active segment's unwritten
    /// preallocation does not count).
    pub bytes: u64,
    /// Position of the first stored event (0 when there is none).
    pub first_position: u64,
    /// The head: the last position written (0 for an empty store).
    pub last_position: u64,
    /// Time of the oldest stored event, in microseconds since the Unix epoch (UTC).
    pub oldest_us: Option<i64>,
    /// Time of the newest stored event, in microseconds since the Unix epoch (UTC).
    pub newest_us: Option<i64>,
    /// Events per stream category (the part of the stream name before the first `-`).
    pub events_per_category: BTreeMap<String, u64>,
    /// Events per event type.
    pub events_per_type: BTreeMap<String, u64>,
    /// Events moved to the cold tier (Parquet under `archive/`): filled in by the archive crate
    /// (`logbook_archive::collect_stats`); 0 from this crate alone.
    pub archived_events: u64,
}

impl StatsReport {
    /// A readable table.
    pub fn to_text(&self) -> String {
        let when = |t: Option<i64>| t.map_or("-".to_string(), crate::calendar::rfc3339);
        let mut out = format!(
            "events      {}\nstreams     {}\nsegments    {}\nbytes       {}\npositions   {}..={}\noldest      {}\nnewest      {}\nhot/archived {}/{}\n",
            self.events,
            self.streams,
            self.segments,
            self.bytes,
            self.first_position,
            self.last_position,
            when(self.oldest_us),
            when(self.newest_us),
            self.events,
            self.archived_events,
        );
        for (title, counts) in [("category", &self.events_per_category), ("type", &self.events_per_type)] {
            out.push_str(&format!("\nevents per {title}\n"));
            let width = counts.keys().map(String::len).max().unwrap_or(0);
            let mut rows: Vec<_> = counts.iter().collect();
            rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (name, count) in rows {
                out.push_str(&format!("  {name:<width$}  {count}\n"));
            }
        }
        out
    }
}

/// Counts everything in `store` in one pass over `$all`.
pub fn collect(store: &Store) -> Result<StatsReport> {
    let mut report = StatsReport {
        streams: store.stream_count() as u64,
        segments: store.segment_count() as u64,
        bytes: crate::datadir::DataDir::new(store.dir()).disk_usage().allocated,
        last_position: store.head_position(),
        ..StatsReport::default()
    };
    for event in store.scan_all(1, Filter::all()) {
        let event = event?;
        if report.first_position == 0 {
            report.first_position = event.position();
        }
        report.events += 1;
        let t = event.timestamp_us();
        report.oldest_us = Some(report.oldest_us.map_or(t, |o| o.min(t)));
        report.newest_us = Some(report.newest_us.map_or(t, |n| n.max(t)));
        *report.events_per_category.entry(event.category().to_string()).or_insert(0) += 1;
        *report.events_per_type.entry(event.event_type().to_string()).or_insert(0) += 1;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Options;
    use crate::types::{ExpectedVersion, NewEvent};

    #[test]
    fn counts_events_streams_categories_and_types() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Options { segment_bytes: 1024, ..Options::default() }).unwrap();
        for (stream, kind) in [("order-1", "A"), ("order-1", "B"), ("order-2", "A"), ("cart-9", "A")] {
            store.append(stream, ExpectedVersion::Any, vec![NewEvent::new(kind, vec![b'x'; 300])]).unwrap();
        }
        let report = collect(&store).unwrap();
        assert_eq!((report.events, report.streams, report.first_position, report.last_position), (4, 3, 1, 4));
        assert!(report.segments >= 2 && report.bytes > 1200, "{report:?}");
        assert_eq!(report.events_per_category, BTreeMap::from([("cart".into(), 1), ("order".into(), 3)]));
        assert_eq!(report.events_per_type, BTreeMap::from([("A".into(), 3), ("B".into(), 1)]));
        assert!(report.oldest_us <= report.newest_us && report.oldest_us.is_some());
        let json = serde_json::to_value(&report).unwrap();
        for key in ["events", "streams", "segments", "bytes"] {
            assert!(json[key].is_u64(), "{key} is an integer");
        }
        assert!(report.to_text().contains("events per category"));
    }
}
