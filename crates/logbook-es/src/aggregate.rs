//! Aggregates over the store: decide new events from a command and the current state, load
//! state from the latest snapshot plus the events after it, and travel back in time.
//!
//! This layer sits above the store (`logbook::Store`); the engine knows nothing about it.
//!
//! * [`Aggregate`]: `initial()`, a pure and deterministic `apply(&mut self, &event)`, and
//!   `handle(&self, &command) -> Result<Vec<Event>, Error>`.
//! * [`Repository`]: loads (snapshot + tail), runs a command, appends its events with the
//!   loaded version as the exact expected version (`NoStream` for a new stream), retries on a
//!   version conflict with fresh state (bounded), and writes a snapshot each time the stream's
//!   version crosses a multiple of [`Aggregate::snapshot_every`].
//!   [`Repository::execute_two`] / [`Repository::execute_many`] run commands on several
//!   streams and save all their events atomically (`Store::append_batch`), each stream with
//!   its loaded version as the expected version, retrying all of them on a conflict.
//! * [`verify_snapshots`]: rebuilds every snapshotted aggregate by full replay and lists every
//!   snapshot that disagrees.

use std::fmt;
use std::marker::PhantomData;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use crate::snapshot::{self, Snapshot, SnapshotError};
use crate::upcast::{self, Upcasters, SCHEMA_KEY};
use logbook::Error;
use logbook::Store;
use logbook::{AppendPart, AppendResult, Direction, ExpectedVersion, NewEvent, RecordedEvent};

/// Events read per stream read while loading.
pub const LOAD_PAGE_EVENTS: usize = 1024;
/// Default number of attempts of one command when the stream changes under it.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Most events one command may produce (the store's batch limit is higher; this keeps a bug in
/// `handle` from writing a flood).
pub const MAX_EVENTS_PER_COMMAND: usize = 1000;

/// An event-sourced aggregate: the state of one stream.
///
/// `apply` must be pure and deterministic (no clock, no randomness, no I/O): state from a
/// snapshot plus the tail must equal state from a full replay, which the property tests check.
/// The state is serialized with serde + bincode for snapshots, so it must not use
/// self-describing serde features (`untagged`, `flatten`, `serde_json::Value`, ...).
pub trait Aggregate: Clone + PartialEq + fmt::Debug + Serialize + DeserializeOwned + Send + Sync + 'static {
    type Command: fmt::Debug;
    type Event: Clone + fmt::Debug;
    /// The domain's rejection of a command.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Version of the state's serialized shape: bump it whenever the state struct changes,
    /// and every older snapshot is ignored (the aggregate is replayed instead).
    const SCHEMA_VERSION: u32;

    /// The state of a stream with no events.
    fn initial() -> Self;
    /// Folds one event into the state. Pure and deterministic.
    fn apply(&mut self, event: &Self::Event);
    /// Decides the events a command produces, or rejects it. Must not change anything.
    fn handle(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// The event's type name and its JSON data.
    fn encode_event(event: &Self::Event) -> Result<(&'static str, Vec<u8>), String>;
    /// Builds an event from its type and JSON data at the current schema version.
    fn decode_event(event_type: &str, data: &[u8]) -> Result<Self::Event, String>;
    /// The current schema version of events of `event_type` (1 unless overridden).
    fn event_schema(_event_type: &str) -> u32 {
        1
    }
    /// Take a snapshot whenever the stream's version crosses a multiple of this (0: never).
    fn snapshot_every() -> u64 {
        100
    }
}

/// What can go wrong loading an aggregate or running a command.
#[derive(Debug, thiserror::Error)]
pub enum AggregateError<E: std::error::Error + 'static> {
    /// The domain rejected the command; nothing was written.
    #[error(transparent)]
    Domain(E),
    /// The store failed (I/O, shutdown, invalid input, ...).
    #[error(transparent)]
    Store(#[from] Error),
    /// A stored event could not be turned into a domain event.
    #[error("cannot decode event {version} ({event_type}) of stream '{stream}': {reason}")]
    Decode { stream: String, version: u64, event_type: String, reason: String },
    /// A domain event could not be serialized, or the metadata is not a JSON object.
    #[error("cannot encode: {0}")]
    Encode(String),
    /// The stream kept changing between load and append; nothing was written.
    #[error("stream '{stream}' changed concurrently on each of {attempts} attempts; nothing was written")]
    Conflict { stream: String, attempts: u32 },
}

/// An aggregate as loaded: its state, the version and position of the last event in it, and
/// whether a snapshot was used.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<A> {
    pub state: A,
    /// The stream version the state includes (0: no events).
    pub version: u64,
    /// The global position of the event at `version` (0: no events).
    pub position: u64,
    /// The snapshot version the load started from, if one was used.
    pub snapshot_version: Option<u64>,
    /// Events applied on top of the snapshot (or from the start).
    pub events_replayed: u64,
}

/// The result of a command that was run.
#[derive(Debug, Clone)]
pub struct Executed<A: Aggregate> {
    /// State after the command's events.
    pub state: A,
    /// The stream's version after the command.
    pub version: u64,
    /// The events written, with their ids (empty when the command decided nothing).
    pub events: Vec<(Uuid, A::Event)>,
    /// Where they landed (`None` when nothing was written).
    pub append: Option<AppendResult>,
    /// Attempts it took (1 when no conflict happened).
    pub attempts: u32,
    /// True when this command's append wrote a snapshot.
    pub snapshot_written: bool,
}

impl<A: Aggregate> Executed<A> {
    /// A command that decided no events: nothing written, the state as loaded.
    fn unchanged(state: A, version: u64, attempts: u32) -> Self {
        Executed { state, version, events: Vec::new(), append: None, attempts, snapshot_written: false }
    }
}

/// Loads and saves aggregates of type `A` in a store.
pub struct Repository<A: Aggregate> {
    store: Store,
    upcasters: Upcasters,
    snapshot_every: u64,
    max_attempts: u32,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate> Clone for Repository<A> {
    fn clone(&self) -> Self {
        Repository {
            store: self.store.clone(),
            upcasters: self.upcasters.clone(),
            snapshot_every: self.snapshot_every,
            max_attempts: self.max_attempts,
            _aggregate: PhantomData,
        }
    }
}

type Res<T, A> = Result<T, AggregateError<<A as Aggregate>::Error>>;
/// One command of an atomic save of several streams: the stream, the state the caller holds
/// (if any), the command.
type ManyCommand<'a, A> = (&'a str, Option<Loaded<A>>, &'a <A as Aggregate>::Command);

impl<A: Aggregate> Repository<A> {
    /// A repository with no upcasters, `A::snapshot_every()` and [`DEFAULT_MAX_ATTEMPTS`].
    pub fn new(store: &Store) -> Self {
        Repository {
            store: store.clone(),
            upcasters: Upcasters::new(),
            snapshot_every: A::snapshot_every(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            _aggregate: PhantomData,
        }
    }

    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = upcasters;
        self
    }

    /// Snapshot every `n` events (0: never).
    pub fn with_snapshot_every(mut self, n: u64) -> Self {
        self.snapshot_every = n;
        self
    }

    /// Attempts per command on version conflicts (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn upcasters(&self) -> &Upcasters {
        &self.upcasters
    }

    /// Turns a stored event into a domain event: reads its schema version from the metadata,
    /// upcasts old versions, decodes.
    pub fn decode(&self, event: &RecordedEvent) -> Res<A::Event, A> {
        decode_recorded::<A>(&self.upcasters, event)
    }

    /// The current state of `stream`: the latest usable snapshot, then the events after it.
    /// An unusable snapshot is logged and ignored.
    pub fn load(&self, stream: &str) -> Res<Loaded<A>, A> {
        self.load_until(stream, u64::MAX, None, true)
    }

    /// The current state of `stream` by replaying every event (no snapshot).
    pub fn load_full(&self, stream: &str) -> Res<Loaded<A>, A> {
        self.load_until(stream, u64::MAX, None, false)
    }

    /// The state as of version `version` (the first `version` events; fewer if the stream is
    /// shorter). Uses a snapshot only when it is at or before `version`.
    pub fn load_at_version(&self, stream: &str, version: u64) -> Res<Loaded<A>, A> {
        self.load_until(stream, version, None, true)
    }

    /// The state as of `timestamp_us` (microseconds since the epoch, UTC): every event up to
    /// the first one stored after that instant. Replays from the start.
    pub fn load_at_time(&self, stream: &str, timestamp_us: i64) -> Res<Loaded<A>, A> {
        self.load_until(stream, u64::MAX, Some(timestamp_us), false)
    }

    /// The stream's snapshot, if it exists and can be used for `A` (checksum, stream name,
    /// schema version). Anything unusable is logged with `tracing::warn!` and skipped.
    fn usable_snapshot(&self, stream: &str) -> Option<(Snapshot, A)> {
        let dir = self.store.dir();
        let snap = match snapshot::read(dir, stream) {
            Ok(Some(snap)) => snap,
            Ok(None) => return None,
            Err(err) => {
                tracing::warn!(stream, error = %err, "ignoring an unreadable snapshot; replaying in full");
                return None;
            }
        };
        if snap.stream != stream {
            tracing::warn!(stream, found = %snap.stream, "ignoring a snapshot of another stream; replaying in full");
            return None;
        }
        if snap.schema_version != A::SCHEMA_VERSION {
            tracing::warn!(
                stream,
                found = snap.schema_version,
                expected = A::SCHEMA_VERSION,
                "ignoring a snapshot of another schema version; replaying in full"
            );
            return None;
        }
        match snapshot::decode_state::<A>(&snap.state) {
            Ok(state) => Some((snap, state)),
            Err(err) => {
                tracing::warn!(stream, error = %err, "ignoring a snapshot whose state does not decode; replaying in full");
                None
            }
        }
    }

    fn load_until(
        &self,
        stream: &str,
        max_version: u64,
        max_time_us: Option<i64>,
        use_snapshot: bool,
    ) -> Res<Loaded<A>, A> {
        let mut loaded =
            Loaded { state: A::initial(), version: 0, position: 0, snapshot_version: None, events_replayed: 0 };
        if use_snapshot && max_time_us.is_none() {
            if let Some((snap, state)) = self.usable_snapshot(stream) {
                if snap.version <= max_version {
                    // The snapshot must line up with the log: its last event must be where it says.
                    let anchor = self.store.read_stream(stream, snap.version, 1, Direction::Forward)?;
                    match anchor.first() {
                        Some(e) if e.version() == snap.version && e.position() == snap.position => {
                            loaded = Loaded {
                                state,
                                version: snap.version,
                                position: snap.position,
                                snapshot_version: Some(snap.version),
                                events_replayed: 0,
                            };
                        }
                        found => tracing::warn!(
                            stream,
                            snapshot_version = snap.version,
                            snapshot_position = snap.position,
                            log_position = found.map(RecordedEvent::position),
                            "ignoring a snapshot that does not match the log; replaying in full"
                        ),
                    }
                }
            }
        }
        while loaded.version < max_version {
            let want = (max_version - loaded.version).min(LOAD_PAGE_EVENTS as u64) as usize;
            let page = self.store.read_stream(stream, loaded.version + 1, want, Direction::Forward)?;
            if page.is_empty() {
                break;
            }
            for event in &page {
                if max_time_us.is_some_and(|t| event.timestamp_us() > t) {
                    return Ok(loaded);
                }
                let decoded = self.decode(event)?;
                loaded.state.apply(&decoded);
                loaded.version = event.version();
                loaded.position = event.position();
                loaded.events_replayed += 1;
            }
        }
        Ok(loaded)
    }

    /// Runs `command` on the current state of `stream` and appends what it decides, with
    /// `metadata` (a JSON object; `schema` is added per event) on every event. Retries on a
    /// version conflict with freshly loaded state, up to the configured attempts.
    pub fn execute<M: Serialize>(&self, stream: &str, command: &A::Command, metadata: &M) -> Res<Executed<A>, A> {
        self.execute_inner(stream, None, command, metadata)
    }

    /// Like [`Repository::execute`], starting from state the caller already holds (e.g. a
    /// cache); if it is stale, the conflict is handled like any other (reload and retry).
    pub fn execute_from<M: Serialize>(
        &self,
        stream: &str,
        loaded: Loaded<A>,
        command: &A::Command,
        metadata: &M,
    ) -> Res<Executed<A>, A> {
        self.execute_inner(stream, Some(loaded), command, metadata)
    }

    fn execute_inner<M: Serialize>(
        &self,
        stream: &str,
        mut given: Option<Loaded<A>>,
        command: &A::Command,
        metadata: &M,
    ) -> Res<Executed<A>, A> {
        let base_metadata = metadata_object::<A, M>(metadata)?;
        for attempt in 1..=self.max_attempts {
            let loaded = match given.take() {
                Some(loaded) => loaded,
                None => self.load(stream)?,
            };
            let events = loaded.state.handle(command).map_err(AggregateError::Domain)?;
            if events.is_empty() {
                return Ok(Executed::unchanged(loaded.state, loaded.version, attempt));
            }
            let (new_events, ids) = encode_decided::<A>(&events, &base_metadata)?;
            let expected = expected_after_load(loaded.version);
            match self.store.append(stream, expected, new_events) {
                Ok(result) => {
                    return Ok(self.committed(stream, loaded.state, loaded.version, events, ids, result, attempt));
                }
                Err(Error::WrongExpectedVersion { actual, .. }) => {
                    tracing::debug!(stream, attempt, loaded = loaded.version, actual, "version conflict; retrying");
                    std::thread::yield_now();
                }
                Err(err) => return Err(err.into()),
            }
        }
        Err(AggregateError::Conflict { stream: stream.to_string(), attempts: self.max_attempts })
    }

    /// Runs two commands, each on its own stream, and saves the events of both atomically:
    /// both or neither (one `Store::append_batch`). See [`Repository::execute_many`].
    pub fn execute_two<M: Serialize>(
        &self,
        first: (&str, &A::Command),
        second: (&str, &A::Command),
        metadata: &M,
    ) -> Res<(Executed<A>, Executed<A>), A> {
        let mut executed = self.execute_many(&[first, second], metadata)?;
        let second = executed.pop().expect("one result per command");
        let first = executed.pop().expect("one result per command");
        Ok((first, second))
    }

    /// Runs each `(stream, command)` on the current state of its stream and saves every
    /// command's events atomically, as one `Store::append_batch`: all of them or none. Each
    /// stream is appended with the version it was loaded at as the exact expected version
    /// (`NoStream` for a new stream), so a change to **any** of the streams between load and
    /// append refuses the whole batch; then every stream is reloaded and every command re-run
    /// on the fresh state, up to the configured attempts, as [`Repository::execute`] does for
    /// one stream ([`AggregateError::Conflict`] names the stream that changed last; nothing
    /// was written). A command refused by its aggregate refuses them all
    /// ([`AggregateError::Domain`]), nothing written. A command that decides no events writes
    /// nothing for its stream (and its stream's version is then not checked). The streams
    /// must differ (a stream named twice is invalid input: run one command that does both).
    /// Snapshots follow each stream's interval as for `execute`. Returns one [`Executed`] per
    /// command, in order, all with the same `attempts`.
    pub fn execute_many<M: Serialize>(
        &self,
        commands: &[(&str, &A::Command)],
        metadata: &M,
    ) -> Res<Vec<Executed<A>>, A> {
        let given = commands.iter().map(|(stream, command)| (*stream, None, *command)).collect();
        self.execute_many_inner(given, metadata)
    }

    /// Like [`Repository::execute_many`], starting from states the caller already holds
    /// (e.g. a cache); if any is stale the whole batch conflicts, and every stream is reloaded
    /// and every command re-run.
    pub fn execute_many_from<M: Serialize>(
        &self,
        commands: Vec<(&str, Loaded<A>, &A::Command)>,
        metadata: &M,
    ) -> Res<Vec<Executed<A>>, A> {
        let given = commands.into_iter().map(|(stream, loaded, command)| (stream, Some(loaded), command)).collect();
        self.execute_many_inner(given, metadata)
    }

    fn execute_many_inner<M: Serialize>(
        &self,
        mut commands: Vec<ManyCommand<'_, A>>,
        metadata: &M,
    ) -> Res<Vec<Executed<A>>, A> {
        for (i, (stream, ..)) in commands.iter().enumerate() {
            if commands[..i].iter().any(|(s, ..)| s == stream) {
                return Err(Error::InvalidInput(format!(
                    "stream '{stream}' is named twice in one atomic save; run one command that does both"
                ))
                .into());
            }
        }
        let base_metadata = metadata_object::<A, M>(metadata)?;
        let mut conflicted = commands.first().map_or_else(String::new, |(stream, ..)| stream.to_string());
        for attempt in 1..=self.max_attempts {
            // Load (or take what the caller gave), decide, encode: nothing is written unless
            // every command is accepted.
            let mut decided = Vec::with_capacity(commands.len());
            for (stream, given, command) in &mut commands {
                let loaded = match given.take() {
                    Some(loaded) => loaded,
                    None => self.load(stream)?,
                };
                let events = loaded.state.handle(command).map_err(AggregateError::Domain)?;
                let (new_events, ids) = encode_decided::<A>(&events, &base_metadata)?;
                decided.push((*stream, loaded, events, ids, new_events));
            }
            let mut parts = Vec::with_capacity(decided.len());
            for (stream, loaded, _, _, new_events) in &mut decided {
                if !new_events.is_empty() {
                    parts.push(AppendPart::new(
                        *stream,
                        expected_after_load(loaded.version),
                        std::mem::take(new_events),
                    ));
                }
            }
            let mut results = if parts.is_empty() {
                Vec::new()
            } else {
                match self.store.append_batch(parts) {
                    Ok(results) => results,
                    Err(Error::BatchPart { part, source }) if matches!(*source, Error::WrongExpectedVersion { .. }) => {
                        // Which stream moved: the `part`-th of those that had events.
                        let (stream, loaded, ..) =
                            decided.iter().filter(|d| !d.2.is_empty()).nth(part).expect("a part per stream with events");
                        tracing::debug!(stream, attempt, loaded = loaded.version, error = %source, "version conflict in an atomic save; retrying all");
                        conflicted = stream.to_string();
                        std::thread::yield_now();
                        continue;
                    }
                    Err(err) => return Err(err.into()),
                }
            }
            .into_iter();
            let executed = decided
                .into_iter()
                .map(|(stream, loaded, events, ids, _)| {
                    if events.is_empty() {
                        return Executed::unchanged(loaded.state, loaded.version, attempt);
                    }
                    let result = results.next().expect("one result per part");
                    self.committed(stream, loaded.state, loaded.version, events, ids, result, attempt)
                })
                .collect();
            return Ok(executed);
        }
        Err(AggregateError::Conflict { stream: conflicted, attempts: self.max_attempts })
    }

    /// The outcome of a command whose events were appended (`result`): the state after them,
    /// and a snapshot if one was due. One copy for single and multi-aggregate execution.
    #[allow(clippy::too_many_arguments)]
    fn committed(
        &self,
        stream: &str,
        mut state: A,
        before: u64,
        events: Vec<A::Event>,
        ids: Vec<Uuid>,
        result: AppendResult,
        attempt: u32,
    ) -> Executed<A> {
        for event in &events {
            state.apply(event);
        }
        let snapshot_written = self.maybe_snapshot(stream, before, &state, &result);
        Executed {
            state,
            version: result.last_version,
            events: ids.into_iter().zip(events).collect(),
            append: Some(result),
            attempts: attempt,
            snapshot_written,
        }
    }

    /// Writes a snapshot if the append took the stream across a multiple of the interval.
    /// A failure is logged, never returned: the events are durable, snapshots are derived.
    fn maybe_snapshot(&self, stream: &str, before: u64, state: &A, result: &AppendResult) -> bool {
        let every = self.snapshot_every;
        if every == 0 || before / every == result.last_version / every {
            return false;
        }
        match self.write_snapshot(stream, state, result.last_version, result.last_position) {
            Ok(written) => written,
            Err(err) => {
                tracing::warn!(stream, error = %err, "could not write a snapshot; the next load replays more");
                false
            }
        }
    }

    fn write_snapshot(&self, stream: &str, state: &A, version: u64, position: u64) -> Result<bool, Error> {
        let bytes = snapshot::encode_state(state).map_err(Error::InvalidInput)?;
        let snap =
            Snapshot { stream: stream.to_string(), version, position, schema_version: A::SCHEMA_VERSION, state: bytes };
        snapshot::write(self.store.file_system(), self.store.dir(), &snap)
    }

    /// Loads `stream` (snapshot + tail) and writes a snapshot of its current state now.
    /// Returns the version snapshotted (0 when the stream has no events: nothing written).
    pub fn snapshot_now(&self, stream: &str) -> Res<u64, A> {
        let loaded = self.load(stream)?;
        if loaded.version == 0 {
            return Ok(0);
        }
        self.write_snapshot(stream, &loaded.state, loaded.version, loaded.position)?;
        Ok(loaded.version)
    }
}

/// Decodes a stored event for aggregate `A`, upcasting old schema versions.
pub fn decode_recorded<A: Aggregate>(upcasters: &Upcasters, event: &RecordedEvent) -> Res<A::Event, A> {
    let event_type = event.event_type();
    let fail = |reason: String| AggregateError::Decode {
        stream: event.stream().to_string(),
        version: event.version(),
        event_type: event_type.to_string(),
        reason,
    };
    let schema = upcast::schema_of(event.metadata()).map_err(fail)?;
    let current = A::event_schema(event_type);
    if schema == current {
        return A::decode_event(event_type, event.data()).map_err(fail);
    }
    let data: serde_json::Value =
        serde_json::from_slice(event.data()).map_err(|e| fail(format!("data is not JSON: {e}")))?;
    let upcasted = upcasters.upcast(event_type, schema, current, data).map_err(fail)?;
    let bytes = serde_json::to_vec(&upcasted).map_err(|e| fail(e.to_string()))?;
    A::decode_event(event_type, &bytes).map_err(fail)
}

fn metadata_object<A: Aggregate, M: Serialize>(metadata: &M) -> Res<serde_json::Map<String, serde_json::Value>, A> {
    match serde_json::to_value(metadata).map_err(|e| AggregateError::Encode(e.to_string()))? {
        serde_json::Value::Object(map) => Ok(map),
        serde_json::Value::Null => Ok(serde_json::Map::new()),
        other => Err(AggregateError::Encode(format!("metadata must be a JSON object, not {other}"))),
    }
}

/// The events a command decided, encoded with fresh ids (bounded by
/// `MAX_EVENTS_PER_COMMAND`), and those ids.
fn encode_decided<A: Aggregate>(
    events: &[A::Event],
    base_metadata: &serde_json::Map<String, serde_json::Value>,
) -> Res<(Vec<NewEvent>, Vec<Uuid>), A> {
    if events.len() > MAX_EVENTS_PER_COMMAND {
        return Err(AggregateError::Encode(format!(
            "a command produced {} events, limit {MAX_EVENTS_PER_COMMAND}",
            events.len()
        )));
    }
    let mut new_events = Vec::with_capacity(events.len());
    let mut ids = Vec::with_capacity(events.len());
    for event in events {
        let id = Uuid::new_v4();
        new_events.push(encode_new_event::<A>(event, id, base_metadata)?);
        ids.push(id);
    }
    Ok((new_events, ids))
}

/// What a stream loaded at `version` must still be when its new events are appended.
fn expected_after_load(version: u64) -> ExpectedVersion {
    if version == 0 {
        ExpectedVersion::NoStream
    } else {
        ExpectedVersion::Exact(version)
    }
}

fn encode_new_event<A: Aggregate>(
    event: &A::Event,
    id: Uuid,
    base_metadata: &serde_json::Map<String, serde_json::Value>,
) -> Res<NewEvent, A> {
    let (event_type, data) = A::encode_event(event).map_err(AggregateError::Encode)?;
    let mut metadata = base_metadata.clone();
    metadata.insert(SCHEMA_KEY.to_string(), serde_json::Value::from(A::event_schema(event_type)));
    let metadata = serde_json::to_vec(&metadata).map_err(|e| AggregateError::Encode(e.to_string()))?;
    Ok(NewEvent::new(event_type, data).with_id(id).with_metadata(metadata))
}

/// What is wrong with one snapshot, found by [`verify_snapshots`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SnapshotProblem {
    /// The file does not decode (checksum, truncation, bad header) or cannot be read.
    Unreadable { reason: String },
    /// The file name is not the one its stream name maps to.
    MisplacedFile { stream: String },
    /// Written for another version of the state's schema (it will be ignored on load).
    WrongSchema { stream: String, found: u32, expected: u32 },
    /// The state bytes do not deserialize as the aggregate.
    BadState { stream: String, reason: String },
    /// The snapshot is at a version the stream does not have.
    BeyondStream { stream: String, snapshot_version: u64, stream_version: u64 },
    /// The event at the snapshot's version is at another global position.
    PositionDiffers { stream: String, version: u64, snapshot_position: u64, log_position: u64 },
    /// Full replay to the snapshot's version gives another state.
    StateDiffers { stream: String, version: u64, snapshot_state: String, replayed_state: String },
    /// The events up to the snapshot's version do not replay.
    ReplayFailed { stream: String, reason: String },
}

/// One snapshot that disagrees with the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotMismatch {
    pub file: PathBuf,
    pub problem: SnapshotProblem,
}

/// The outcome of [`verify_snapshots`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SnapshotReport {
    /// Snapshot files examined.
    pub checked: usize,
    /// Files skipped because their stream does not belong to this aggregate (`select`).
    pub skipped: usize,
    /// Every snapshot that disagrees with the log (empty: all good).
    pub mismatches: Vec<SnapshotMismatch>,
}

impl SnapshotReport {
    pub fn is_ok(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// Rebuilds every snapshotted aggregate of type `A` (streams for which `select` is true) by
/// full replay and compares it with its snapshot. Returns every mismatch; errors only when the
/// snapshot directory cannot be listed or the store fails.
pub fn verify_snapshots<A: Aggregate>(
    repository: &Repository<A>,
    select: impl Fn(&str) -> bool,
) -> Result<SnapshotReport, Error> {
    let mut report = SnapshotReport::default();
    for file in snapshot::list(repository.store.dir())? {
        let snap = match snapshot::read_file(&file) {
            Ok(snap) => snap,
            Err(SnapshotError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => {
                report.checked += 1;
                report
                    .mismatches
                    .push(SnapshotMismatch { file, problem: SnapshotProblem::Unreadable { reason: err.to_string() } });
                continue;
            }
        };
        if !select(&snap.stream) {
            report.skipped += 1;
            continue;
        }
        report.checked += 1;
        if let Some(problem) = check_snapshot(repository, &file, &snap)? {
            report.mismatches.push(SnapshotMismatch { file, problem });
        }
    }
    Ok(report)
}

fn check_snapshot<A: Aggregate>(
    repository: &Repository<A>,
    file: &std::path::Path,
    snap: &Snapshot,
) -> Result<Option<SnapshotProblem>, Error> {
    let stream = snap.stream.clone();
    if file.file_name().and_then(|n| n.to_str()) != Some(snapshot::file_name(&stream).as_str()) {
        return Ok(Some(SnapshotProblem::MisplacedFile { stream }));
    }
    if snap.schema_version != A::SCHEMA_VERSION {
        return Ok(Some(SnapshotProblem::WrongSchema {
            stream,
            found: snap.schema_version,
            expected: A::SCHEMA_VERSION,
        }));
    }
    let state = match snapshot::decode_state::<A>(&snap.state) {
        Ok(state) => state,
        Err(reason) => return Ok(Some(SnapshotProblem::BadState { stream, reason })),
    };
    let stream_version = repository.store.stream_version(&stream);
    if snap.version > stream_version {
        return Ok(Some(SnapshotProblem::BeyondStream { stream, snapshot_version: snap.version, stream_version }));
    }
    let replayed = match repository.load_until(&stream, snap.version, None, false) {
        Ok(replayed) => replayed,
        Err(AggregateError::Store(err)) => return Err(err),
        Err(err) => return Ok(Some(SnapshotProblem::ReplayFailed { stream, reason: err.to_string() })),
    };
    if replayed.position != snap.position {
        return Ok(Some(SnapshotProblem::PositionDiffers {
            stream,
            version: snap.version,
            snapshot_position: snap.position,
            log_position: replayed.position,
        }));
    }
    if replayed.state != state {
        return Ok(Some(SnapshotProblem::StateDiffers {
            stream,
            version: snap.version,
            snapshot_state: format!("{state:?}"),
            replayed_state: format!("{:?}", replayed.state),
        }));
    }
    Ok(None)
}
