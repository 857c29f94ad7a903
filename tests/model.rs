//! Model test: random operation sequences run on the store and on a plain in-memory model,
//! compared after every step, with reopens in the middle and segments small enough that
//! rollover happens every few appends. Atomic multi-stream appends (`append_batch`) are among
//! the operations: 1-4 parts, sometimes naming one stream twice, with expected versions that
//! are sometimes wrong (then nothing of the batch may be written), re-sent verbatim (the
//! original results) or with a new part added (an idempotency conflict for the whole batch).
//! `PROPTEST_CASES` scales the number of sequences.

use std::collections::HashMap;

use logbook::{AppendPart, Direction, Error, ExpectedVersion, Filter, NewEvent, Options, Store};
use proptest::prelude::*;
use uuid::Uuid;

const STREAMS: [&str; 4] = ["order-a", "order-b", "cart-c", "orderx-d"];
const TYPES: [&str; 3] = ["CREATED", "ITEM_ADDED", "SHIPPED"];

#[derive(Debug, Clone)]
enum Expect {
    Any,
    NoStream,
    Exists,
    /// Exact(current version + delta), so most exact expectations are right or off by one.
    ExactDelta(i8),
}

/// A generated event: its type (index into `TYPES`) and data.
type GenEvent = (usize, Vec<u8>);

#[derive(Debug, Clone)]
enum Op {
    Append {
        stream: usize,
        expect: Expect,
        events: Vec<(usize, Vec<u8>)>,
    },
    /// Re-send the k-th successful append verbatim (same ids) with some expectation.
    Retry {
        k: usize,
        expect: Expect,
    },
    /// Re-send the k-th successful append's first id with other data.
    RetryChanged {
        k: usize,
    },
    ReadStream {
        stream: usize,
        from: u64,
        max: usize,
        backward: bool,
    },
    ReadAll {
        from: u64,
        max: usize,
        filter: usize,
    },
    /// An atomic multi-stream append: 1-4 parts, each (stream, expectation, events). The
    /// expectation of a part is relative to the stream's version after the earlier parts.
    Batch {
        parts: Vec<(usize, Expect, Vec<GenEvent>)>,
    },
    /// Re-send the k-th successful batch verbatim (same ids): its original results.
    RetryBatch {
        k: usize,
    },
    /// Re-send the k-th successful batch with one new part added (before its parts or after):
    /// some parts stored and one not is an idempotency conflict naming the new part.
    RetryBatchWithNewPart {
        k: usize,
        stream: usize,
        first: bool,
    },
    Reopen,
}

fn expect_strategy() -> impl Strategy<Value = Expect> {
    prop_oneof![
        Just(Expect::Any),
        Just(Expect::NoStream),
        Just(Expect::Exists),
        (-1i8..=1).prop_map(Expect::ExactDelta),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let event = (0..TYPES.len(), proptest::collection::vec(any::<u8>(), 0..120));
    prop_oneof![
        6 => (0..STREAMS.len(), expect_strategy(), proptest::collection::vec(event.clone(), 1..5))
            .prop_map(|(stream, expect, events)| Op::Append { stream, expect, events }),
        1 => (0..64usize, expect_strategy()).prop_map(|(k, expect)| Op::Retry { k, expect }),
        1 => (0..64usize).prop_map(|k| Op::RetryChanged { k }),
        2 => (0..STREAMS.len(), 0..8u64, 1..6usize, any::<bool>())
            .prop_map(|(stream, from, max, backward)| Op::ReadStream { stream, from, max, backward }),
        2 => (0..40u64, 1..50usize, 0..4usize).prop_map(|(from, max, filter)| Op::ReadAll { from, max, filter }),
        4 => proptest::collection::vec(
            (0..STREAMS.len(), expect_strategy(), proptest::collection::vec(event, 1..5)),
            1..5
        )
        .prop_map(|parts| Op::Batch { parts }),
        1 => (0..16usize).prop_map(|k| Op::RetryBatch { k }),
        1 => (0..16usize, 0..STREAMS.len(), any::<bool>())
            .prop_map(|(k, stream, first)| Op::RetryBatchWithNewPart { k, stream, first }),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct ModelEvent {
    stream: String,
    version: u64,
    position: u64,
    event_type: String,
    data: Vec<u8>,
    id: Uuid,
}

#[derive(Default)]
struct Model {
    events: Vec<ModelEvent>,
    versions: HashMap<String, u64>,
    /// Successful appends: (stream, events as sent), including each part of a batch.
    appends: Vec<(String, Vec<NewEvent>)>,
    /// Successful batches: their parts as sent.
    batches: Vec<Vec<AppendPart>>,
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Ok(u64, u64, u64, u64),
    WrongVersion(u64),
    Conflict,
}

/// What `append_batch` gives: every part's result, or the refused part (0-based) and why.
#[derive(Debug, PartialEq)]
enum BatchOutcome {
    Ok(Vec<Outcome>),
    Refused(usize, Outcome),
}

impl Model {
    fn version(&self, stream: &str) -> u64 {
        self.versions.get(stream).copied().unwrap_or(0)
    }

    /// The idempotency check of one append: `Ok(None)` when none of its ids is stored in the
    /// stream, `Ok(Some(original))` when all are, with the same content, as one contiguous run,
    /// and `Err(Conflict)` otherwise.
    fn stored(&self, stream: &str, events: &[NewEvent]) -> Result<Option<Outcome>, Outcome> {
        let stored: Vec<Option<&ModelEvent>> =
            events.iter().map(|e| self.events.iter().find(|m| m.stream == stream && Some(m.id) == e.id)).collect();
        if stored.iter().all(Option::is_none) {
            return Ok(None);
        }
        let all_same =
            stored.iter().zip(events).all(|(m, e)| m.is_some_and(|m| m.event_type == e.event_type && m.data == e.data));
        let contiguous = stored.windows(2).all(|w| match (w[0], w[1]) {
            (Some(a), Some(b)) => b.version == a.version + 1,
            _ => false,
        });
        if all_same && contiguous {
            let (first, last) = (stored[0].unwrap(), stored[stored.len() - 1].unwrap());
            return Ok(Some(Outcome::Ok(first.version, last.version, first.position, last.position)));
        }
        Err(Outcome::Conflict)
    }

    /// Writes `events` at the end of `stream` (checks done) and returns where they landed.
    fn write(&mut self, stream: &str, events: &[NewEvent]) -> Outcome {
        let actual = self.version(stream);
        let first_position = self.events.len() as u64 + 1;
        for (i, e) in events.iter().enumerate() {
            self.events.push(ModelEvent {
                stream: stream.to_string(),
                version: actual + 1 + i as u64,
                position: first_position + i as u64,
                event_type: e.event_type.clone(),
                data: e.data.clone(),
                id: e.id.unwrap(),
            });
        }
        let n = events.len() as u64;
        self.versions.insert(stream.to_string(), actual + n);
        self.appends.push((stream.to_string(), events.to_vec()));
        Outcome::Ok(actual + 1, actual + n, first_position, first_position + n - 1)
    }

    fn append(&mut self, stream: &str, expected: ExpectedVersion, events: &[NewEvent]) -> Outcome {
        match self.stored(stream, events) {
            Ok(Some(original)) => return original,
            Err(conflict) => return conflict,
            Ok(None) => {}
        }
        let actual = self.version(stream);
        if !expected.accepts(actual) {
            return Outcome::WrongVersion(actual);
        }
        self.write(stream, events)
    }

    /// All parts or none, in order; idempotent as a whole (see `Store::append_batch`).
    fn append_batch(&mut self, parts: &[AppendPart]) -> BatchOutcome {
        let mut originals = Vec::new();
        let mut first_new = None;
        for (i, part) in parts.iter().enumerate() {
            match self.stored(&part.stream, &part.events) {
                Ok(Some(original)) => originals.push(original),
                Ok(None) => {
                    first_new.get_or_insert(i);
                }
                Err(conflict) => return BatchOutcome::Refused(i, conflict),
            }
        }
        match first_new {
            None => return BatchOutcome::Ok(originals),
            Some(i) if !originals.is_empty() => return BatchOutcome::Refused(i, Outcome::Conflict),
            Some(_) => {}
        }
        let mut versions: HashMap<&str, u64> = HashMap::new();
        for (i, part) in parts.iter().enumerate() {
            let actual = versions.get(part.stream.as_str()).copied().unwrap_or_else(|| self.version(&part.stream));
            if !part.expected.accepts(actual) {
                return BatchOutcome::Refused(i, Outcome::WrongVersion(actual));
            }
            versions.insert(&part.stream, actual + part.events.len() as u64);
        }
        let results = parts.iter().map(|p| self.write(&p.stream, &p.events)).collect();
        self.batches.push(parts.to_vec());
        BatchOutcome::Ok(results)
    }
}

fn to_expected(expect: &Expect, current: u64) -> ExpectedVersion {
    match expect {
        Expect::Any => ExpectedVersion::Any,
        Expect::NoStream => ExpectedVersion::NoStream,
        Expect::Exists => ExpectedVersion::Exists,
        Expect::ExactDelta(d) => ExpectedVersion::Exact(current.saturating_add_signed(i64::from(*d))),
    }
}

fn filter(kind: usize) -> Filter {
    match kind {
        0 => Filter::all(),
        1 => Filter::category("order"),
        2 => Filter::stream_prefix("order"),
        _ => Filter::all().with_types(["ITEM_ADDED", "SHIPPED"]),
    }
}

fn store_outcome(result: Result<logbook::AppendResult, Error>) -> Outcome {
    match result {
        Ok(r) => Outcome::Ok(r.first_version, r.last_version, r.first_position, r.last_position),
        Err(Error::WrongExpectedVersion { actual, .. }) => Outcome::WrongVersion(actual),
        Err(Error::IdempotencyConflict { .. }) => Outcome::Conflict,
        Err(other) => panic!("unexpected error: {other}"),
    }
}

fn store_batch_outcome(result: Result<Vec<logbook::AppendResult>, Error>) -> BatchOutcome {
    match result {
        Ok(results) => BatchOutcome::Ok(results.into_iter().map(|r| store_outcome(Ok(r))).collect()),
        Err(Error::BatchPart { part, source }) => BatchOutcome::Refused(part, store_outcome(Err(*source))),
        Err(other) => panic!("unexpected batch error: {other}"),
    }
}

fn new_events(events: Vec<GenEvent>) -> Vec<NewEvent> {
    events.into_iter().map(|(t, data)| NewEvent::new(TYPES[t], data).with_id(Uuid::new_v4())).collect()
}

fn as_model(e: &logbook::RecordedEvent) -> ModelEvent {
    ModelEvent {
        stream: e.stream().to_string(),
        version: e.version(),
        position: e.position(),
        event_type: e.event_type().to_string(),
        data: e.data().to_vec(),
        id: e.id(),
    }
}

fn options() -> Options {
    Options { segment_bytes: 600, ..Options::default() }
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path(), options()).unwrap();
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Append { stream, expect, events } => {
                let stream = STREAMS[stream];
                let expected = to_expected(&expect, model.version(stream));
                let events = new_events(events);
                let want = model.append(stream, expected, &events);
                assert_eq!(store_outcome(store.append(stream, expected, events)), want);
            }
            Op::Retry { k, expect } => {
                let Some((stream, events)) = model.appends.get(k).cloned() else { continue };
                let expected = to_expected(&expect, model.version(&stream));
                let want = model.append(&stream, expected, &events);
                assert!(matches!(want, Outcome::Ok(..)), "a verbatim retry is always idempotent");
                assert_eq!(store_outcome(store.append(&stream, expected, events)), want);
            }
            Op::RetryChanged { k } => {
                let Some((stream, events)) = model.appends.get(k).cloned() else { continue };
                let changed = vec![NewEvent::new("CHANGED", b"other".to_vec()).with_id(events[0].id.unwrap())];
                let want = model.append(&stream, ExpectedVersion::Any, &changed);
                assert_eq!(want, Outcome::Conflict);
                assert_eq!(store_outcome(store.append(&stream, ExpectedVersion::Any, changed)), want);
            }
            Op::Batch { parts } => {
                // Each expectation is relative to the version after the earlier parts, so a
                // second part naming the same stream is usually right, sometimes off by one.
                let mut versions: HashMap<&str, u64> = HashMap::new();
                let parts: Vec<AppendPart> = parts
                    .into_iter()
                    .map(|(stream, expect, events)| {
                        let stream = STREAMS[stream];
                        let current = *versions.entry(stream).or_insert_with(|| model.version(stream));
                        versions.insert(stream, current + events.len() as u64);
                        AppendPart::new(stream, to_expected(&expect, current), new_events(events))
                    })
                    .collect();
                let want = model.append_batch(&parts);
                assert_eq!(store_batch_outcome(store.append_batch(parts)), want);
            }
            Op::RetryBatch { k } => {
                let Some(parts) = model.batches.get(k).cloned() else { continue };
                let want = model.append_batch(&parts);
                assert!(matches!(want, BatchOutcome::Ok(..)), "a verbatim retry of a batch is always idempotent");
                assert_eq!(store_batch_outcome(store.append_batch(parts)), want);
            }
            Op::RetryBatchWithNewPart { k, stream, first } => {
                let Some(mut parts) = model.batches.get(k).cloned() else { continue };
                let new =
                    AppendPart::new(STREAMS[stream], ExpectedVersion::Any, new_events(vec![(0, b"new".to_vec())]));
                let at = if first { 0 } else { parts.len() };
                parts.insert(at, new);
                let want = model.append_batch(&parts);
                assert_eq!(want, BatchOutcome::Refused(at, Outcome::Conflict));
                assert_eq!(store_batch_outcome(store.append_batch(parts)), want);
            }
            Op::ReadStream { stream, from, max, backward } => {
                let stream = STREAMS[stream];
                let mine: Vec<&ModelEvent> = model.events.iter().filter(|e| e.stream == stream).collect();
                let (direction, want): (_, Vec<ModelEvent>) = if backward {
                    let from = if from == 0 { u64::MAX } else { from };
                    let picked = mine.iter().rev().filter(|e| e.version <= from).take(max).map(|e| (*e).clone());
                    (Direction::Backward, picked.collect())
                } else {
                    let picked = mine.iter().filter(|e| e.version >= from).take(max).map(|e| (*e).clone());
                    (Direction::Forward, picked.collect())
                };
                let from = if backward && from == 0 { u64::MAX } else { from };
                let got = store.read_stream(stream, from, max, direction).unwrap();
                assert_eq!(got.iter().map(as_model).collect::<Vec<_>>(), want);
            }
            Op::ReadAll { from, max, filter: kind } => {
                let f = filter(kind);
                let want: Vec<ModelEvent> = model
                    .events
                    .iter()
                    .filter(|e| e.position >= from.max(1) && f.matches(&e.stream, &e.event_type))
                    .take(max)
                    .cloned()
                    .collect();
                let got = store.read_all(from, max, &f).unwrap();
                assert_eq!(got.iter().map(as_model).collect::<Vec<_>>(), want);
            }
            Op::Reopen => {
                store.close().unwrap();
                store = Store::open(dir.path(), options()).unwrap();
            }
        }
        assert_eq!(store.head_position(), model.events.len() as u64);
        for stream in STREAMS {
            assert_eq!(store.stream_version(stream), model.version(stream), "{stream}");
        }
    }
    // Finally the whole log, after one more reopen.
    store.close().unwrap();
    let store = Store::open(dir.path(), options()).unwrap();
    let all = store.read_all(1, usize::MAX, &Filter::all()).unwrap();
    assert_eq!(all.iter().map(as_model).collect::<Vec<_>>(), model.events);
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 2000, ..ProptestConfig::default() })]
    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op_strategy(), 1..80)) {
        run(ops);
    }
}
