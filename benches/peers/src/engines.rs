//! The four systems behind one interface, each configured for durable commits the way its
//! documentation describes:
//!
//! * logbook: `Store::open` with `SyncMode::Always` (acknowledged after fdatasync; concurrent
//!   appends share one); a commit of several events is `Store::append_batch` with one part per
//!   run of events of one stream.
//! * fjall: a `Database` with two keyspaces, `events` (global position, big-endian, to the
//!   JSON line) and `streams` (stream name, 0, version big-endian, to the position); every
//!   commit is one write batch across both, then `Database::persist(PersistMode::SyncData)`
//!   (the journal fdatasync'ed before the commit returns; concurrent commits may share a sync:
//!   2–3× the commits of 16 writers that a batch with `durability(Some(SyncData))` gets).
//! * okaywal: a `WriteAheadLog` that keeps every entry (`checkpoint_after_bytes` = u64::MAX:
//!   checkpointing would hand the entries to the embedder and recycle the segment, and an event
//!   log keeps its events); a commit is one entry, one chunk per event, `EntryWriter::commit`
//!   (returns after the segment is fdatasync'ed; concurrent commits share one). It has no
//!   index, so reading one stream is not applicable; replaying is recovery: reopening the log
//!   and reading every entry's chunks through `LogManager::recover`.
//! * redb: a `Database` with tables `events` (u64 position to the JSON line) and `streams`
//!   ((stream, version) to the position); a commit is one write transaction with
//!   `Durability::Immediate`.

use std::fmt::Debug;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::events::{Event, Events};

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// The systems, in the order the first round runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    Logbook,
    Fjall,
    Okaywal,
    Redb,
}

impl System {
    pub const ALL: [System; 4] = [System::Logbook, System::Fjall, System::Okaywal, System::Redb];

    pub fn name(self) -> &'static str {
        match self {
            System::Logbook => "logbook",
            System::Fjall => "fjall",
            System::Okaywal => "okaywal",
            System::Redb => "redb",
        }
    }

    /// Opens (creating) this system's store in `dir`.
    pub fn open(self, dir: &Path) -> Result<Box<dyn Engine>> {
        Ok(match self {
            System::Logbook => Box::new(Logbook::open(dir)?),
            System::Fjall => Box::new(Fjall::open(dir)?),
            System::Okaywal => Box::new(Okaywal::open(dir)?),
            System::Redb => Box::new(Redb::open(dir)?),
        })
    }
}

/// What every column asks of a system.
pub trait Engine: Send + Sync {
    /// Commits `events.events[range]` atomically and durably: returns once they would survive a
    /// power cut.
    fn commit(&self, events: &Events, range: Range<usize>) -> Result<()>;

    /// Reads every event of stream `stream` (an index into `events.streams`), in version order.
    /// Returns how many events and bytes it read, or `None` where the system cannot do it
    /// without an index of the harness's own.
    fn read_stream(&self, events: &Events, stream: usize) -> Result<Option<(usize, usize)>>;

    /// Reads every event in global order once; returns how many events and bytes it read.
    fn replay(&mut self) -> Result<(usize, usize)>;

    /// Closes the store, waiting for whatever it writes at close.
    fn close(self: Box<Self>) -> Result<()>;
}

struct Logbook {
    store: logbook::Store,
}

impl Logbook {
    fn open(dir: &Path) -> Result<Self> {
        let options = logbook::Options { sync: logbook::SyncMode::Always, ..logbook::Options::default() };
        Ok(Logbook { store: logbook::Store::open(dir, options)? })
    }
}

impl Engine for Logbook {
    fn commit(&self, events: &Events, range: Range<usize>) -> Result<()> {
        let batch = &events.events[range];
        if let [one] = batch {
            self.store.append(&events.streams[one.stream], logbook::ExpectedVersion::Any, vec![one.event.clone()])?;
            return Ok(());
        }
        // One part per run of consecutive events of one stream (`bench append --multi-stream`).
        let mut parts: Vec<logbook::AppendPart> = Vec::new();
        let mut last_stream = usize::MAX;
        for e in batch {
            match parts.last_mut() {
                Some(part) if last_stream == e.stream => part.events.push(e.event.clone()),
                _ => parts.push(logbook::AppendPart::new(
                    events.streams[e.stream].clone(),
                    logbook::ExpectedVersion::Any,
                    vec![e.event.clone()],
                )),
            }
            last_stream = e.stream;
        }
        self.store.append_batch(parts)?;
        Ok(())
    }

    fn read_stream(&self, events: &Events, stream: usize) -> Result<Option<(usize, usize)>> {
        let read = self.store.read_stream(&events.streams[stream], 1, 1000, logbook::Direction::Forward)?;
        Ok(Some((read.len(), read.iter().map(|e| e.data().len() + e.metadata().len()).sum())))
    }

    fn replay(&mut self) -> Result<(usize, usize)> {
        let (mut count, mut bytes, mut next) = (0, 0, 1);
        loop {
            let page = self.store.read_all_page(next, 10_000, &logbook::Filter::all())?;
            if page.events.is_empty() {
                return Ok((count, bytes));
            }
            count += page.events.len();
            bytes += page.events.iter().map(|e| e.data().len() + e.metadata().len()).sum::<usize>();
            next = page.next_position;
        }
    }

    fn close(self: Box<Self>) -> Result<()> {
        Ok(self.store.close()?)
    }
}

/// The key of a stream's event in a key-value store: the stream's name, a 0 byte (no stream
/// name holds one), the version big-endian (so a stream's events sort by version).
fn stream_key(stream: &str, version: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(stream.len() + 5);
    key.extend_from_slice(stream.as_bytes());
    key.push(0);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

struct Fjall {
    db: fjall::Database,
    events: fjall::Keyspace,
    streams: fjall::Keyspace,
}

impl Fjall {
    fn open(dir: &Path) -> Result<Self> {
        let db = fjall::Database::builder(dir).open()?;
        let events = db.keyspace("events", fjall::KeyspaceCreateOptions::default)?;
        let streams = db.keyspace("streams", fjall::KeyspaceCreateOptions::default)?;
        Ok(Fjall { db, events, streams })
    }
}

impl Engine for Fjall {
    fn commit(&self, events: &Events, range: Range<usize>) -> Result<()> {
        // The batch is written to the journal under its lock, then `persist` fdatasyncs it
        // (covering every batch written so far): concurrent writers' batches can share a sync,
        // which a batch with `durability(Some(SyncData))` (synced while holding the journal's
        // lock) cannot. Both return only once the batch is on disk.
        let mut batch = self.db.batch();
        for i in range {
            let e = &events.events[i];
            let position = Event::position(i).to_be_bytes();
            batch.insert(&self.events, position, e.line.as_slice());
            batch.insert(&self.streams, stream_key(&events.streams[e.stream], e.version), position);
        }
        batch.commit()?;
        self.db.persist(fjall::PersistMode::SyncData)?;
        Ok(())
    }

    fn read_stream(&self, events: &Events, stream: usize) -> Result<Option<(usize, usize)>> {
        let mut prefix = events.streams[stream].as_bytes().to_vec();
        prefix.push(0);
        let mut read = Vec::new();
        for entry in self.streams.prefix(&prefix) {
            let (_, position) = entry.into_inner()?;
            let line = self.events.get(&position)?.ok_or("a stream's event is missing from fjall")?;
            read.push(line);
        }
        Ok(Some((read.len(), read.iter().map(|l| l.len()).sum())))
    }

    fn replay(&mut self) -> Result<(usize, usize)> {
        let (mut count, mut bytes) = (0, 0);
        for entry in self.events.iter() {
            let (_, line) = entry.into_inner()?;
            count += 1;
            bytes += line.len();
        }
        Ok((count, bytes))
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.db.persist(fjall::PersistMode::SyncAll)?;
        Ok(())
    }
}

/// okaywal's log manager: counts what recovery reads; never asked to checkpoint (the log keeps
/// every entry).
#[derive(Debug, Default, Clone)]
struct Counter {
    events: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
}

impl okaywal::LogManager for Counter {
    fn recover(&mut self, entry: &mut okaywal::Entry<'_>) -> io::Result<()> {
        if let Some(chunks) = entry.read_all_chunks()? {
            self.events.fetch_add(chunks.len() as u64, Ordering::Relaxed);
            self.bytes.fetch_add(chunks.iter().map(|c| c.len() as u64).sum(), Ordering::Relaxed);
        }
        Ok(())
    }

    fn checkpoint_to(
        &mut self,
        _last_checkpointed_id: okaywal::EntryId,
        _checkpointed_entries: &mut okaywal::SegmentReader,
        _wal: &okaywal::WriteAheadLog,
    ) -> io::Result<()> {
        Err(io::Error::other("the benchmark's okaywal log keeps every entry: it never checkpoints"))
    }
}

struct Okaywal {
    dir: PathBuf,
    wal: Option<okaywal::WriteAheadLog>,
}

impl Okaywal {
    fn open(dir: &Path) -> Result<Self> {
        let wal = Self::configuration(dir).open(Counter::default())?;
        Ok(Okaywal { dir: dir.to_path_buf(), wal: Some(wal) })
    }

    fn configuration(dir: &Path) -> okaywal::Configuration {
        okaywal::Configuration::default_for(dir).checkpoint_after_bytes(u64::MAX)
    }

    fn wal(&self) -> Result<&okaywal::WriteAheadLog> {
        Ok(self.wal.as_ref().ok_or("okaywal's log is closed")?)
    }
}

impl Engine for Okaywal {
    fn commit(&self, events: &Events, range: Range<usize>) -> Result<()> {
        let mut entry = self.wal()?.begin_entry()?;
        for e in &events.events[range] {
            entry.write_chunk(&e.line)?;
        }
        entry.commit()?;
        Ok(())
    }

    fn read_stream(&self, _events: &Events, _stream: usize) -> Result<Option<(usize, usize)>> {
        Ok(None)
    }

    /// Recovery is okaywal's replay: the log is closed and opened again, and every entry's
    /// chunks are read by the log manager.
    fn replay(&mut self) -> Result<(usize, usize)> {
        if let Some(wal) = self.wal.take() {
            wal.shutdown()?;
        }
        let counter = Counter::default();
        self.wal = Some(Self::configuration(&self.dir).open(counter.clone())?);
        Ok((counter.events.load(Ordering::Relaxed) as usize, counter.bytes.load(Ordering::Relaxed) as usize))
    }

    fn close(mut self: Box<Self>) -> Result<()> {
        if let Some(wal) = self.wal.take() {
            wal.shutdown()?;
        }
        Ok(())
    }
}

const REDB_EVENTS: redb::TableDefinition<'_, u64, &[u8]> = redb::TableDefinition::new("events");
const REDB_STREAMS: redb::TableDefinition<'_, (&str, u32), u64> = redb::TableDefinition::new("streams");

struct Redb {
    db: redb::Database,
}

impl Redb {
    fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let db = redb::Database::create(dir.join("events.redb"))?;
        // Both tables exist before the first read.
        let txn = db.begin_write()?;
        txn.open_table(REDB_EVENTS)?;
        txn.open_table(REDB_STREAMS)?;
        txn.commit()?;
        Ok(Redb { db })
    }
}

impl Engine for Redb {
    fn commit(&self, events: &Events, range: Range<usize>) -> Result<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::Immediate)?;
        {
            let mut by_position = txn.open_table(REDB_EVENTS)?;
            let mut by_stream = txn.open_table(REDB_STREAMS)?;
            for i in range {
                let e = &events.events[i];
                by_position.insert(Event::position(i), e.line.as_slice())?;
                by_stream.insert((events.streams[e.stream].as_str(), e.version), Event::position(i))?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn read_stream(&self, events: &Events, stream: usize) -> Result<Option<(usize, usize)>> {
        use redb::ReadableDatabase as _;
        let txn = self.db.begin_read()?;
        let (by_position, by_stream) = (txn.open_table(REDB_EVENTS)?, txn.open_table(REDB_STREAMS)?);
        let name = events.streams[stream].as_str();
        let mut read = Vec::new();
        for entry in by_stream.range((name, 0)..=(name, u32::MAX))? {
            let (_, position) = entry?;
            let line = by_position.get(position.value())?.ok_or("a stream's event is missing from redb")?;
            read.push(line.value().to_vec());
        }
        Ok(Some((read.len(), read.iter().map(Vec::len).sum())))
    }

    fn replay(&mut self) -> Result<(usize, usize)> {
        use redb::{ReadableDatabase as _, ReadableTable as _};
        let txn = self.db.begin_read()?;
        let table = txn.open_table(REDB_EVENTS)?;
        let (mut count, mut bytes) = (0, 0);
        for entry in table.iter()? {
            let (_, line) = entry?;
            count += 1;
            bytes += line.value().len();
        }
        Ok((count, bytes))
    }

    fn close(self: Box<Self>) -> Result<()> {
        Ok(())
    }
}

/// The ceiling of one durable commit at a time: fdatasync of a 4 KiB write into a preallocated
/// (zero-written, synced) file, run in turns beside the systems. The file is removed on drop.
pub struct Probe {
    path: PathBuf,
    file: std::fs::File,
    syncs: u64,
    seconds: f64,
}

impl Probe {
    const FILE_BYTES: u64 = 4 << 20;

    pub fn new(dir: &Path) -> io::Result<Probe> {
        use std::io::Write as _;
        let path = dir.join("fdatasync-probe");
        let mut file = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path)?;
        file.write_all(&vec![0u8; Self::FILE_BYTES as usize])?;
        file.sync_all()?;
        Ok(Probe { path, file, syncs: 0, seconds: 0.0 })
    }

    /// Writes and syncs for `duration` (at least 20 times).
    pub fn run(&mut self, duration: Duration) -> io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        let block = [0x5Au8; 4096];
        let start = Instant::now();
        let mut syncs = 0u64;
        while start.elapsed() < duration || syncs < 20 {
            self.file.write_all_at(&block, ((self.syncs + syncs) * 4096) % Self::FILE_BYTES)?;
            self.file.sync_data()?;
            syncs += 1;
        }
        self.syncs += syncs;
        self.seconds += start.elapsed().as_secs_f64();
        Ok(())
    }

    /// Syncs per second over every turn.
    pub fn rate(&self) -> f64 {
        self.syncs as f64 / self.seconds.max(1e-9)
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Allocated bytes (`st_blocks` × 512) of every file under `dir`.
pub fn allocated_bytes(dir: &Path) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() { allocated_bytes(&entry.path())? } else { meta.blocks() * 512 };
    }
    Ok(total)
}
