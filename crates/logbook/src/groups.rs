//! Consumer groups on `$all`: at-least-once delivery to competing consumers, with durable
//! progress kept in the log itself.
//!
//! A group is a filter over `$all` (from a position, a stream prefix, event types) and a cursor.
//! [`Store::read_group`] hands each matching event to one consumer of the group; the event is
//! then *pending* until [`Store::ack_group`] acknowledges it. A pending event not acknowledged
//! within the group's `ack_wait` goes again to whichever consumer reads next.
//!
//! ```
//! use std::time::Duration;
//! use logbook::{ExpectedVersion, GroupConfig, NewEvent, Options, Store};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path(), Options::default()).unwrap();
//! store.append("order-1", ExpectedVersion::Any, vec![NewEvent::new("PLACED", b"{}".to_vec())]).unwrap();
//! let config = GroupConfig { stream_prefix: Some("order-".into()), ..GroupConfig::default() };
//! store.create_group("billing", config).unwrap();
//! let events = store.read_group("billing", "worker-1", 10, Duration::from_secs(1)).unwrap();
//! assert_eq!(events.len(), 1);
//! // Durable before it returns: after a crash, this event is not delivered again.
//! assert_eq!(store.ack_group("billing", &[events[0].position()]).unwrap(), 1);
//! assert_eq!(store.group_info("billing").unwrap().pending, 0);
//! ```
//!
//! What must survive a crash lives in the group's system stream `$group-<name>`, written with
//! ordinary durable appends (so backup, replication and compaction carry it):
//!
//! | event type | data (JSON) | meaning |
//! |---|---|---|
//! | `$GroupCreated` | `{"config": ...}` | the group exists from here on, with this config, nothing acknowledged |
//! | `$GroupAcked` | `{"positions": [..]}` | these positions are acknowledged (written before `ack_group` returns) |
//! | `$GroupCheckpoint` | `{"config": ..., "checkpoint": c, "acked": [..]}` | a snapshot: every matching event at or below `c` and the listed ones above it are acknowledged |
//! | `$GroupDeleted` | `{}` | the group is gone (a later `$GroupCreated` starts a new one of the same name) |
//!
//! A snapshot follows every [`SNAPSHOT_EVERY_ACKS`] `$GroupAcked` events, so `Store::open`
//! reads each group stream backward to its last snapshot, creation or deletion and forward
//! from there: at most that many events per group, whatever the group's age.
//!
//! Pending entries, consumers and the counters (delivered, redelivered, failures) live in
//! memory only: after a restart every unacknowledged matching event is delivered again, and the
//! counters start at zero. Events of `$` system streams are never delivered, so a group never
//! delivers its own bookkeeping.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::record::MAX_STREAM_BYTES;
use crate::store::{Store, MAX_SCAN_PER_READ};
use crate::types::{AppendResult, Direction, ExpectedVersion, Filter, NewEvent, RecordedEvent};

/// The system stream of group `name` is this prefix followed by the name.
pub const GROUP_STREAM_PREFIX: &str = "$group-";
/// Longest group name, in bytes (a tenant's prefix included).
pub const MAX_GROUP_NAME_BYTES: usize = 512;
/// Longest consumer name, in bytes.
pub const MAX_CONSUMER_NAME_BYTES: usize = 256;
/// Most event types one group may select.
pub const MAX_GROUP_EVENT_TYPES: usize = 64;
/// Longest `ack_wait` a group may have (one day).
pub const MAX_ACK_WAIT: Duration = Duration::from_secs(24 * 3600);
/// A `$GroupCheckpoint` snapshot is written after this many `$GroupAcked` events.
pub const SNAPSHOT_EVERY_ACKS: u64 = 1000;
/// Most positions acknowledged out of order (above the checkpoint) a group keeps; when it
/// holds this many, reads deliver only redeliveries until the oldest pending event is
/// acknowledged. Bounds the snapshot's size (8 bytes or so per position in JSON ~ 1.2 MB).
pub const MAX_ACKED_AHEAD: usize = 100_000;
/// Positions after a group's scan cursor that [`Store::group_info`] reads to count its lag.
pub const LAG_SCAN_POSITIONS: u64 = 100_000;
/// Events per page of that count.
const LAG_PAGE_EVENTS: usize = 4096;
/// How long a reader of a full group sleeps at most before it looks again (an ack, release or
/// deletion wakes it sooner).
const FULL_WAIT_SLICE: Duration = Duration::from_millis(500);
/// Event types of the group stream.
pub const GROUP_CREATED: &str = "$GroupCreated";
/// An acknowledgement (see the module docs).
pub const GROUP_ACKED: &str = "$GroupAcked";
/// A snapshot of the acknowledged state.
pub const GROUP_CHECKPOINT: &str = "$GroupCheckpoint";
/// The group's deletion.
pub const GROUP_DELETED: &str = "$GroupDeleted";

/// What a consumer group delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// The first position to deliver; 1 (or 0) = from the start of `$all`.
    pub from: u64,
    /// Only events of streams whose stored name starts with this.
    pub stream_prefix: Option<String>,
    /// Only events of these types (empty: every type).
    pub event_types: Vec<String>,
    /// A delivered event not acknowledged within this is delivered again.
    pub ack_wait: Duration,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig { from: 1, stream_prefix: None, event_types: Vec::new(), ack_wait: Duration::from_secs(30) }
    }
}

/// A group's state, as [`Store::group_info`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group's (full) name.
    pub name: String,
    /// What it delivers.
    pub config: GroupConfig,
    /// Every matching event at or below this position is acknowledged.
    pub checkpoint: u64,
    /// Events delivered and not yet acknowledged.
    pub pending: usize,
    /// The consumers that read since the store was opened, by name.
    pub consumers: Vec<ConsumerInfo>,
    /// Matching events not yet delivered to the group (after its scan cursor, `$` system
    /// streams left out), as Redis's `XINFO GROUPS` lag: 0 when the group is caught up. Counted
    /// exactly over the first 100,000 positions after the cursor (`LAG_SCAN_POSITIONS`); positions
    /// beyond those count as if they matched (an upper bound).
    pub lag: u64,
    /// Events delivered (first deliveries and redeliveries) since the store was opened.
    pub delivered: u64,
    /// Of those, redeliveries after `ack_wait`.
    pub redelivered: u64,
    /// Failed deliveries recorded with [`Store::record_group_failure`] since the store was opened.
    pub failures: u64,
}

/// One consumer of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerInfo {
    /// Its name.
    pub name: String,
    /// Events delivered to it and not yet acknowledged (nor expired and given to another).
    pub pending: usize,
    /// Time since it last read.
    pub idle: Duration,
}

/// Limits on consumer groups, store-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLimits {
    /// Most groups in the store.
    pub max_groups: usize,
    /// Most consumers per group; a new consumer takes the place of the longest idle one that
    /// holds no pending events, or is refused.
    pub max_consumers: usize,
    /// Most pending (delivered, unacknowledged) events per group; when full, reads deliver
    /// only redeliveries.
    pub max_pending: usize,
    /// Most pending events of all groups together (each costs ~100 bytes of memory); when
    /// reached, reads of every group deliver only redeliveries.
    pub max_pending_total: usize,
    /// Most positions a group keeps acknowledged above its checkpoint (acked out of order
    /// while an older event is pending). When reached, a group delivers only events below the
    /// highest of them (the older ones its checkpoint waits for), until acks move it on.
    pub max_acked_ahead: usize,
}

impl Default for GroupLimits {
    fn default() -> Self {
        GroupLimits {
            max_groups: 1000,
            max_consumers: 1000,
            max_pending: 100_000,
            max_pending_total: 1_000_000,
            max_acked_ahead: MAX_ACKED_AHEAD,
        }
    }
}

/// The JSON form of a config in the group stream.
#[derive(Serialize, Deserialize)]
struct StoredConfig {
    from: u64,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    types: Vec<String>,
    ack_wait_ms: u64,
}

impl From<&GroupConfig> for StoredConfig {
    fn from(c: &GroupConfig) -> Self {
        StoredConfig {
            from: c.from,
            prefix: c.stream_prefix.clone(),
            types: c.event_types.clone(),
            ack_wait_ms: u64::try_from(c.ack_wait.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

impl From<StoredConfig> for GroupConfig {
    fn from(c: StoredConfig) -> Self {
        GroupConfig {
            from: c.from,
            stream_prefix: c.prefix,
            event_types: c.types,
            ack_wait: Duration::from_millis(c.ack_wait_ms),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct CreatedData {
    config: StoredConfig,
}

#[derive(Serialize, Deserialize)]
struct AckedData {
    positions: Vec<u64>,
}

#[derive(Serialize, Deserialize)]
struct CheckpointData {
    config: StoredConfig,
    checkpoint: u64,
    acked: Vec<u64>,
}

/// The name of group `name`'s system stream.
pub fn group_stream(name: &str) -> String {
    format!("{GROUP_STREAM_PREFIX}{name}")
}

/// Checks a group name: 1..=512 bytes, no control characters or whitespace.
pub fn validate_group_name(name: &str) -> Result<()> {
    validate_name("group", name, MAX_GROUP_NAME_BYTES)
}

/// Checks a consumer name: 1..=256 bytes, no control characters or whitespace.
pub fn validate_consumer_name(name: &str) -> Result<()> {
    validate_name("consumer", name, MAX_CONSUMER_NAME_BYTES)
}

fn validate_name(what: &str, name: &str, max: usize) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidInput(format!("{what} name is empty")));
    }
    if name.len() > max {
        return Err(Error::InvalidInput(format!("{what} name is {} bytes, limit {max}", name.len())));
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Error::InvalidInput(format!("{what} name contains whitespace or a control character")));
    }
    Ok(())
}

fn validate_config(config: &GroupConfig) -> Result<()> {
    if config.ack_wait.is_zero() || config.ack_wait > MAX_ACK_WAIT {
        return Err(Error::InvalidInput(format!(
            "ack wait {} ms outside 1..={} ms",
            config.ack_wait.as_millis(),
            MAX_ACK_WAIT.as_millis()
        )));
    }
    if config.event_types.len() > MAX_GROUP_EVENT_TYPES {
        return Err(Error::InvalidInput(format!(
            "{} event types, limit {MAX_GROUP_EVENT_TYPES}",
            config.event_types.len()
        )));
    }
    if let Some(t) = config.event_types.iter().find(|t| t.is_empty() || t.len() > crate::types::MAX_EVENT_TYPE_BYTES) {
        return Err(Error::InvalidInput(format!("event type '{t}' is empty or too long")));
    }
    if config.stream_prefix.as_ref().is_some_and(|p| p.len() > MAX_STREAM_BYTES) {
        return Err(Error::InvalidInput(format!("stream prefix longer than {MAX_STREAM_BYTES} bytes")));
    }
    Ok(())
}

fn unknown_group(name: &str) -> Error {
    Error::InvalidInput(format!("no group '{name}'"))
}

/// What one pass of a group read found: the events, the head it looked up to, when the next
/// pending event expires, and the group's generation when it is too full for first deliveries.
type Pass = (Vec<RecordedEvent>, u64, Option<Instant>, Option<u64>);

/// One delivered, unacknowledged event.
struct PendingEntry {
    consumer: Arc<str>,
    delivered_at: Instant,
    /// Handed back unsent ([`Store::release_group`]): due again at once.
    released: bool,
}

struct ConsumerState {
    last_read: Instant,
}

/// A group's state in memory.
struct GroupState {
    config: GroupConfig,
    filter: Filter,
    /// Set when the group is deleted, for readers and ackers holding the old handle.
    deleted: bool,
    /// Every matching event at or below is acknowledged.
    checkpoint: u64,
    /// The next position to look at for first deliveries.
    next_scan: u64,
    /// Acknowledged positions above the checkpoint.
    acked: BTreeSet<u64>,
    pending: BTreeMap<u64, PendingEntry>,
    consumers: HashMap<Arc<str>, ConsumerState>,
    failures_by_position: HashMap<u64, u64>,
    failures: u64,
    delivered: u64,
    redelivered: u64,
    acks_since_snapshot: u64,
    /// Bumped by every ack, release and deletion: a reader waiting for room sleeps until it
    /// changes (see [`Group::changed`]).
    generation: u64,
}

impl GroupState {
    fn new(config: GroupConfig, checkpoint: u64, acked: BTreeSet<u64>) -> GroupState {
        let filter = Filter {
            stream_prefix: config.stream_prefix.clone(),
            category: None,
            event_types: config.event_types.clone(),
        };
        let checkpoint = checkpoint.max(config.from.saturating_sub(1));
        let mut state = GroupState {
            config,
            filter,
            deleted: false,
            checkpoint,
            next_scan: checkpoint + 1,
            acked,
            pending: BTreeMap::new(),
            consumers: HashMap::new(),
            failures_by_position: HashMap::new(),
            failures: 0,
            delivered: 0,
            redelivered: 0,
            acks_since_snapshot: 0,
            generation: 0,
        };
        state.advance();
        state
    }

    /// Moves the checkpoint up to just below the oldest pending event (or the scan cursor).
    fn advance(&mut self) {
        let bound = self.pending.keys().next().copied().unwrap_or(self.next_scan);
        self.checkpoint = self.checkpoint.max(bound.saturating_sub(1));
        let above = self.acked.split_off(&(self.checkpoint + 1));
        self.acked = above;
        self.failures_by_position.retain(|p, _| *p > self.checkpoint);
    }

    fn is_acked(&self, position: u64) -> bool {
        position <= self.checkpoint || self.acked.contains(&position)
    }

    fn snapshot(&self) -> CheckpointData {
        CheckpointData {
            config: StoredConfig::from(&self.config),
            checkpoint: self.checkpoint,
            acked: self.acked.iter().copied().collect(),
        }
    }

    /// Registers `consumer` (or refreshes it), making room within `max` if needed.
    fn touch_consumer(&mut self, consumer: &str, max: usize, now: Instant) -> Result<Arc<str>> {
        if let Some(state) = self.consumers.get_mut(consumer) {
            state.last_read = now;
        }
        if let Some((name, _)) = self.consumers.get_key_value(consumer) {
            return Ok(Arc::clone(name));
        }
        if self.consumers.len() >= max {
            let busy: BTreeSet<&str> = self.pending.values().map(|p| &*p.consumer).collect();
            let idlest = self
                .consumers
                .iter()
                .filter(|(n, _)| !busy.contains(&***n))
                .min_by_key(|(_, s)| s.last_read)
                .map(|(n, _)| Arc::clone(n));
            match idlest {
                Some(name) => {
                    self.consumers.remove(&name);
                }
                None => {
                    return Err(Error::InvalidInput(format!(
                        "the group has {} consumers, each with pending events, limit {max}",
                        self.consumers.len()
                    )))
                }
            }
        }
        let name: Arc<str> = Arc::from(consumer);
        self.consumers.insert(Arc::clone(&name), ConsumerState { last_read: now });
        Ok(name)
    }
}

/// One group: its state, and the lock that puts its acknowledgements in order (so a snapshot
/// never claims an acknowledgement that is not yet durable).
struct Group {
    name: String,
    stream: String,
    acking: Mutex<()>,
    state: Mutex<GroupState>,
    /// Signalled when `state.generation` moves: readers of a full group wait on it.
    changed: parking_lot::Condvar,
}

/// Every group of a store.
pub(crate) struct Groups {
    limits: GroupLimits,
    map: Mutex<HashMap<String, Arc<Group>>>,
    /// Pending events of all groups (bounded by `limits.max_pending_total`).
    pending_total: std::sync::atomic::AtomicUsize,
    /// Creations and deletions, one at a time (each appends to the log under it).
    admin: Mutex<()>,
}

impl Groups {
    pub(crate) fn new(limits: GroupLimits) -> Groups {
        Groups {
            limits,
            map: Mutex::new(HashMap::new()),
            pending_total: std::sync::atomic::AtomicUsize::new(0),
            admin: Mutex::new(()),
        }
    }

    fn get(&self, name: &str) -> Result<Arc<Group>> {
        self.map.lock().get(name).cloned().ok_or_else(|| unknown_group(name))
    }
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain structs of numbers and strings: serialising cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn bad_record(stream: &str, event: &RecordedEvent, e: impl std::fmt::Display) -> Error {
    Error::InvalidInput(format!(
        "group stream '{stream}' holds a malformed {} event at position {}: {e}",
        event.event_type(),
        event.position()
    ))
}

/// Rebuilds one group from its stream: backward to the last creation, snapshot or deletion,
/// then forward over the acknowledgements after it. `None` when the group was deleted.
fn rebuild(store: &Store, stream: &str) -> Result<Option<GroupState>> {
    const PAGE: usize = 256;
    let mut after: Vec<RecordedEvent> = Vec::new();
    let mut from = u64::MAX;
    let base = loop {
        let page = store.read_stream(stream, from, PAGE, Direction::Backward)?;
        let Some(last) = page.last() else { return Ok(None) };
        let lowest = last.version();
        let mut found = None;
        for event in page {
            match event.event_type() {
                GROUP_CREATED | GROUP_CHECKPOINT | GROUP_DELETED => {
                    found = Some(event);
                    break;
                }
                _ => after.push(event),
            }
        }
        if let Some(base) = found {
            break base;
        }
        if lowest <= 1 {
            return Ok(None);
        }
        from = lowest - 1;
    };
    let mut state = match base.event_type() {
        GROUP_DELETED => return Ok(None),
        GROUP_CREATED => {
            let data: CreatedData = serde_json::from_slice(base.data()).map_err(|e| bad_record(stream, &base, e))?;
            GroupState::new(data.config.into(), 0, BTreeSet::new())
        }
        _ => {
            let data: CheckpointData =
                serde_json::from_slice(base.data()).map_err(|e| bad_record(stream, &base, e))?;
            GroupState::new(data.config.into(), data.checkpoint, data.acked.into_iter().collect())
        }
    };
    for event in after.iter().rev() {
        if event.event_type() == GROUP_ACKED {
            let data: AckedData = serde_json::from_slice(event.data()).map_err(|e| bad_record(stream, event, e))?;
            let checkpoint = state.checkpoint;
            state.acked.extend(data.positions.into_iter().filter(|p| *p > checkpoint));
            state.acks_since_snapshot += 1;
        }
    }
    Ok(Some(state))
}

impl Store {
    /// Rebuilds every group from its stream (called once by `open`).
    pub(crate) fn load_groups(&self) -> Result<()> {
        let streams = self.streams_with_prefix(GROUP_STREAM_PREFIX, usize::MAX);
        let mut map = HashMap::new();
        for stream in streams {
            if let Some(state) = rebuild(self, &stream)? {
                let name = stream[GROUP_STREAM_PREFIX.len()..].to_string();
                let group = Group {
                    name: name.clone(),
                    stream,
                    acking: Mutex::new(()),
                    state: Mutex::new(state),
                    changed: parking_lot::Condvar::new(),
                };
                map.insert(name, Arc::new(group));
            }
        }
        *self.groups().map.lock() = map;
        Ok(())
    }

    /// Creates consumer group `name` (a full name: the daemon puts a tenant's prefix in
    /// front). Its creation is durable before this returns. An existing name is an error
    /// naming it. Names starting with `$` are allowed here (the daemon refuses them from
    /// clients).
    pub fn create_group(&self, name: &str, config: GroupConfig) -> Result<()> {
        validate_group_name(name)?;
        validate_config(&config)?;
        let groups = self.groups();
        let _admin = groups.admin.lock();
        {
            let map = groups.map.lock();
            if map.contains_key(name) {
                return Err(Error::InvalidInput(format!("group '{name}' already exists")));
            }
            if map.len() >= groups.limits.max_groups {
                return Err(Error::InvalidInput(format!(
                    "{} groups exist, limit {}",
                    map.len(),
                    groups.limits.max_groups
                )));
            }
        }
        let stream = group_stream(name);
        let data = CreatedData { config: StoredConfig::from(&config) };
        self.append_system(&stream, ExpectedVersion::Any, vec![NewEvent::new(GROUP_CREATED, json(&data))])?;
        let state = GroupState::new(config, 0, BTreeSet::new());
        let group = Group {
            name: name.to_string(),
            stream,
            acking: Mutex::new(()),
            state: Mutex::new(state),
            changed: parking_lot::Condvar::new(),
        };
        groups.map.lock().insert(name.to_string(), Arc::new(group));
        Ok(())
    }

    /// Deletes group `name`: its deletion is durable before this returns; its pending events
    /// and progress are forgotten. Its stream stays (a later group of the same name starts
    /// afresh after the deletion).
    pub fn delete_group(&self, name: &str) -> Result<()> {
        let groups = self.groups();
        let _admin = groups.admin.lock();
        let group = groups.get(name)?;
        let _acking = group.acking.lock();
        self.append_system(&group.stream, ExpectedVersion::Any, vec![NewEvent::new(GROUP_DELETED, b"{}".to_vec())])?;
        {
            let mut state = group.state.lock();
            state.deleted = true;
            groups.pending_total.fetch_sub(state.pending.len(), Ordering::Relaxed);
            state.pending.clear();
            state.generation += 1;
        }
        group.changed.notify_all();
        groups.map.lock().remove(name);
        Ok(())
    }

    /// Names of the groups starting with `prefix`, sorted.
    pub fn group_names(&self, prefix: &str) -> Vec<String> {
        let mut names: Vec<String> =
            self.groups().map.lock().keys().filter(|n| n.starts_with(prefix)).cloned().collect();
        names.sort();
        names
    }

    /// Up to `max` events for `consumer` of group `name`: first the pending events whose
    /// `ack_wait` has passed (redeliveries, oldest position first), then matching events not
    /// yet delivered, in position order. Each event goes to one consumer. Events of `$` system
    /// streams and of deleted streams are never delivered. When there is nothing, waits up to
    /// `block` for something (a new event, or a pending one expiring).
    pub fn read_group(&self, name: &str, consumer: &str, max: usize, block: Duration) -> Result<Vec<RecordedEvent>> {
        validate_consumer_name(consumer)?;
        let group = self.groups().get(name)?;
        let deadline = Instant::now() + block;
        loop {
            let (events, seen_head, next_expiry, full) = self.read_group_once(&group, consumer, max)?;
            let now = Instant::now();
            if !events.is_empty() || max == 0 || now >= deadline || self.shared().closed.load(Ordering::Acquire) {
                return Ok(events);
            }
            // Wake for a new event, a pending one expiring, or (when full) an ack making room.
            let mut wait = deadline - now;
            if let Some(expiry) = next_expiry {
                wait = wait.min(expiry.saturating_duration_since(now) + Duration::from_millis(1));
            }
            match full {
                Some(generation) => {
                    // Asleep until an ack, release or deletion moves the generation (taken
                    // under the same lock as the pass, so none is missed), not polling. The
                    // slice bounds how late a shutdown is noticed.
                    let mut state = group.state.lock();
                    if state.generation == generation {
                        group.changed.wait_for(&mut state, wait.min(FULL_WAIT_SLICE));
                    }
                }
                None => {
                    self.wait_for_head(seen_head + 1, wait);
                }
            }
        }
    }

    /// One pass of [`Store::read_group`] ([`Pass`]): the events, the head it looked up to, when the next
    /// pending event expires, and, when the group is too full for first deliveries, its
    /// generation (a waiter sleeps until that moves).
    fn read_group_once(
        &self,
        group: &Group,
        consumer: &str,
        max: usize,
    ) -> Result<Pass> {
        let limits = self.groups().limits;
        let mut state = group.state.lock();
        if state.deleted {
            return Err(unknown_group(&group.name));
        }
        let now = Instant::now();
        let consumer = state.touch_consumer(consumer, limits.max_consumers, now)?;
        let ack_wait = state.config.ack_wait;
        let mut events = Vec::new();
        // Redeliveries first.
        let expired: Vec<u64> = state
            .pending
            .iter()
            .filter(|(_, p)| p.released || p.delivered_at + ack_wait <= now)
            .map(|(position, _)| *position)
            .take(max)
            .collect();
        for position in expired {
            match self.event_at(position)? {
                Some(event) => {
                    let mut released = false;
                    if let Some(entry) = state.pending.get_mut(&position) {
                        entry.consumer = Arc::clone(&consumer);
                        entry.delivered_at = now;
                        released = std::mem::take(&mut entry.released);
                    }
                    state.delivered += 1;
                    // Handed back unsent, it was never received: not a redelivery.
                    if !released {
                        state.redelivered += 1;
                    }
                    events.push(event);
                }
                None => {
                    // Its stream was deleted (or compacted away): nothing left to deliver.
                    if state.pending.remove(&position).is_some() {
                        self.groups().pending_total.fetch_sub(1, Ordering::Relaxed);
                    }
                    state.acked.insert(position);
                }
            }
        }
        // Then first deliveries, while there is room: under the group's and the store's
        // bounds on pending events. When the acknowledged positions above the checkpoint are
        // at their bound, only positions below the highest of them are looked at: those are
        // the events the checkpoint waits for (after a restart, none of them is pending, so
        // they must still be delivered, or the group would stall for good).
        let groups = self.groups();
        let head = self.head_position();
        let room = |s: &GroupState| {
            s.pending.len() < limits.max_pending && groups.pending_total.load(Ordering::Relaxed) < limits.max_pending_total
        };
        let frontier = |s: &GroupState| {
            if s.acked.len() >= limits.max_acked_ahead {
                s.acked.last().copied().unwrap_or(0)
            } else {
                u64::MAX
            }
        };
        // Compaction may have removed the oldest segments (deleted streams' events, expired
        // ones): nothing below the first stored position is left to deliver.
        let first_stored = self.shared().state.read().first_position();
        state.next_scan = state.next_scan.max(first_stored);
        let start = state.next_scan;
        while events.len() < max
            && room(&state)
            && state.next_scan <= head.min(frontier(&state))
            && state.next_scan - start < MAX_SCAN_PER_READ as u64
        {
            let total_room = limits.max_pending_total.saturating_sub(groups.pending_total.load(Ordering::Relaxed));
            let want = (max - events.len()).min(limits.max_pending - state.pending.len()).min(total_room);
            let page = self.read_all_page(state.next_scan, want, &state.filter.clone())?;
            let limit = frontier(&state);
            let mut next = page.next_position.max(state.next_scan);
            for event in page.events {
                let position = event.position();
                if position > limit {
                    next = position;
                    break;
                }
                if event.stream().starts_with('$') || state.is_acked(position) || state.pending.contains_key(&position) {
                    continue;
                }
                state.pending.insert(
                    position,
                    PendingEntry { consumer: Arc::clone(&consumer), delivered_at: now, released: false },
                );
                groups.pending_total.fetch_add(1, Ordering::Relaxed);
                state.delivered += 1;
                events.push(event);
            }
            state.next_scan = next;
        }
        state.advance();
        let next_expiry = state.pending.values().map(|p| p.delivered_at + ack_wait).min();
        let blocked = !room(&state) || state.next_scan > frontier(&state);
        Ok((events, head, next_expiry, blocked.then_some(state.generation)))
    }

    /// The event at `position`, if it is still stored and its stream not deleted.
    fn event_at(&self, position: u64) -> Result<Option<RecordedEvent>> {
        if position < self.shared().state.read().first_position() {
            return Ok(None);
        }
        let page = self.read_all_page(position, 1, &Filter::all())?;
        Ok(page.events.into_iter().next().filter(|e| e.position() == position))
    }

    /// Acknowledges `positions` for group `name`: each pending one stops being pending and is
    /// never delivered again, even after a crash (the acknowledgement is appended to the group
    /// stream and durable before this returns). Positions not pending (never delivered,
    /// already acknowledged, or delivered before a restart) are ignored, as Redis `XACK`
    /// ignores them; a position of 0 or beyond the head is an error. Returns how many
    /// positions were newly acknowledged.
    pub fn ack_group(&self, name: &str, positions: &[u64]) -> Result<usize> {
        if positions.is_empty() {
            return Err(Error::InvalidInput("an ack needs at least one position".into()));
        }
        let head = self.head_position();
        if let Some(bad) = positions.iter().find(|p| **p == 0 || **p > head) {
            return Err(Error::InvalidInput(format!("position {bad} is outside 1..={head} (the head)")));
        }
        let group = self.groups().get(name)?;
        let _acking = group.acking.lock();
        let newly: Vec<u64> = {
            let state = group.state.lock();
            if state.deleted {
                return Err(unknown_group(name));
            }
            let set: BTreeSet<u64> = positions.iter().copied().filter(|p| state.pending.contains_key(p)).collect();
            set.into_iter().collect()
        };
        if newly.is_empty() {
            return Ok(0);
        }
        let data = AckedData { positions: newly.clone() };
        self.append_system(&group.stream, ExpectedVersion::Any, vec![NewEvent::new(GROUP_ACKED, json(&data))])?;
        let snapshot = {
            let mut state = group.state.lock();
            for p in &newly {
                if state.pending.remove(p).is_some() {
                    self.groups().pending_total.fetch_sub(1, Ordering::Relaxed);
                }
                if *p > state.checkpoint {
                    state.acked.insert(*p);
                }
            }
            state.advance();
            state.generation += 1;
            group.changed.notify_all();
            state.acks_since_snapshot += 1;
            (state.acks_since_snapshot >= SNAPSHOT_EVERY_ACKS).then(|| state.snapshot())
        };
        if let Some(snapshot) = snapshot {
            // Every acknowledgement in it is durable (acks are serialised by `acking`). A
            // failure here loses nothing: the acks stay in the stream; the next ack retries.
            let event = NewEvent::new(GROUP_CHECKPOINT, json(&snapshot));
            if self.append_system(&group.stream, ExpectedVersion::Any, vec![event]).is_ok() {
                group.state.lock().acks_since_snapshot = 0;
            }
        }
        Ok(newly.len())
    }

    /// Hands back events [`Store::read_group`] gave out that the caller could not send (a
    /// reply that reached its size bound): they stay pending, but are due again at once, to
    /// whichever consumer reads next, instead of after the group's `ack_wait`. Positions not
    /// pending are ignored. Returns how many were handed back.
    pub fn release_group(&self, name: &str, positions: &[u64]) -> Result<usize> {
        let group = self.groups().get(name)?;
        let mut state = group.state.lock();
        if state.deleted {
            return Err(unknown_group(name));
        }
        let mut released = 0;
        for position in positions {
            if let Some(entry) = state.pending.get_mut(position) {
                if !entry.released {
                    entry.released = true;
                    released += 1;
                }
            }
        }
        state.delivered = state.delivered.saturating_sub(released as u64);
        state.generation += 1;
        group.changed.notify_all();
        Ok(released)
    }

    /// Counts a failed delivery of `position` (a webhook that did not answer 2xx); returns how
    /// many failures that position has had. Kept in memory only (a restart starts from zero),
    /// for at most `max_pending` positions above the checkpoint.
    pub fn record_group_failure(&self, name: &str, position: u64) -> Result<u64> {
        if position == 0 {
            return Err(Error::InvalidInput("position 0 does not exist (positions start at 1)".into()));
        }
        let group = self.groups().get(name)?;
        let mut state = group.state.lock();
        if state.deleted {
            return Err(unknown_group(name));
        }
        state.failures += 1;
        // Bounded like the pending events: past that many positions, the lowest is forgotten.
        let max = self.groups().limits.max_pending.max(1);
        if state.failures_by_position.len() >= max && !state.failures_by_position.contains_key(&position) {
            if let Some(lowest) = state.failures_by_position.keys().min().copied() {
                state.failures_by_position.remove(&lowest);
            }
        }
        let count = state.failures_by_position.entry(position).or_insert(0);
        *count += 1;
        Ok(*count)
    }

    /// Group `name`'s config, checkpoint, pending count, consumers, lag and counters.
    pub fn group_info(&self, name: &str) -> Result<GroupInfo> {
        let group = self.groups().get(name)?;
        let head = self.head_position();
        // The count reads the log: not under the group's lock, which its readers need.
        let (cursor, filter, acked) = {
            let state = group.state.lock();
            (state.next_scan, state.filter.clone(), state.acked.clone())
        };
        let lag = self.undelivered(cursor, head, &filter, &acked)?;
        let state = group.state.lock();
        if state.deleted {
            return Err(unknown_group(name));
        }
        let now = Instant::now();
        let mut pending_by_consumer: HashMap<&str, usize> = HashMap::new();
        for entry in state.pending.values() {
            *pending_by_consumer.entry(&*entry.consumer).or_default() += 1;
        }
        let mut consumers: Vec<ConsumerInfo> = state
            .consumers
            .iter()
            .map(|(name, c)| ConsumerInfo {
                name: name.to_string(),
                pending: pending_by_consumer.get(&**name).copied().unwrap_or(0),
                idle: now.saturating_duration_since(c.last_read),
            })
            .collect();
        consumers.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(GroupInfo {
            name: group.name.clone(),
            config: state.config.clone(),
            checkpoint: state.checkpoint,
            pending: state.pending.len(),
            consumers,
            lag,
            delivered: state.delivered,
            redelivered: state.redelivered,
            failures: state.failures,
        })
    }

    /// Matching events from `cursor` to `head`, `$` system streams left out: counted over at
    /// most [`LAG_SCAN_POSITIONS`] positions, the rest counted as if they matched.
    fn undelivered(&self, cursor: u64, head: u64, filter: &Filter, acked: &BTreeSet<u64>) -> Result<u64> {
        let first_stored = self.shared().state.read().first_position();
        let mut next = cursor.max(first_stored);
        let end = head.min(next.saturating_add(LAG_SCAN_POSITIONS - 1));
        let mut count = 0u64;
        while next <= end {
            let page = self.read_all_page(next, LAG_PAGE_EVENTS, filter)?;
            count += page
                .events
                .iter()
                .filter(|e| e.position() <= end && !e.stream().starts_with('$') && !acked.contains(&e.position()))
                .count() as u64;
            if page.next_position <= next {
                break;
            }
            next = page.next_position;
        }
        Ok(count + head.saturating_sub(end))
    }

    /// Appends to a system stream (a name starting with `$`, other than `$all` and the
    /// tombstones' `$deleted`); other names are refused. Groups keep their state with it,
    /// webhooks their dead letters. Otherwise exactly [`Store::append`].
    pub fn append_system(&self, stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> Result<AppendResult> {
        crate::store::validate_system_stream_name(stream)?;
        self.submit_prepared(stream, expected, events)?.wait()
    }
}

#[cfg(test)]
mod tests;
