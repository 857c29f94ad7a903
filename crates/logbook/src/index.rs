//! Stream name -> version -> log position, for sealed segments (a sorted index file per
//! segment, read into memory at open) and for the active segment (in memory), plus the
//! per-stream directory.
//!
//! Index file `<base:020>.idx`, written once when its segment is sealed, all integers
//! little-endian; N = events in the segment, S = distinct streams in it:
//!
//! ```text
//! header (80 bytes)
//! +--------+---------+---------------------------------------------------+
//! | 0..8   | [u8; 8] | magic "LGBKIDX\0"                                 |
//! | 8..12  | u32     | format version (3)                                |
//! | 12..16 | u32     | flags: bit 0 = SPARSE (positions section present) |
//! | 16..24 | u64     | base position of the segment                      |
//! | 24..32 | u64     | sealed length of the segment file, bytes          |
//! | 32..40 | u64     | N: events                                         |
//! | 40..48 | u64     | S: streams                                        |
//! | 48..56 | u64     | bytes of the names section                        |
//! | 56..60 | u32     | the segment header's checksum (bytes 60..64)      |
//! | 60..72 | zero    | reserved                                          |
//! | 72..76 | u32     | crc32(everything after the header) XOR CRC_MASK   |
//! | 76..80 | u32     | crc32(bytes 0..76) XOR CRC_MASK                   |
//! +--------+---------+---------------------------------------------------+
//! sections, back to back
//!   by_stream  N x 24: (stream hash u64, version u64, position u64), sorted
//!   by_id      N x 16: (id key u64, position u64), sorted; the key is SipHash-2-4 of
//!                       the 16 id bytes under the fixed key ID_KEY_SIPHASH_KEY
//!   streams    S x 32: (hash u64, first version u64, last version u64,
//!                       name offset u32, name length u32), sorted by hash
//!   offsets    N x 4 : byte offset of the i-th frame
//!   positions  N x 8 : SPARSE only: position of the i-th frame, strictly increasing
//!                      (without it the i-th frame is at position base + i)
//!   names      UTF-8 stream names, referenced from the streams section
//! ```
//!
//! Index files are derived data: a missing, damaged or stale one (its segment's header
//! checksum or length differs, as after a compaction that stopped between its two renames)
//! is rebuilt from its segment. Files of earlier versions are rebuilt too: version 1 had no
//! flags and no identity, version 2 keyed ids on their low 64 bits (which time-based UUIDs of
//! one host share, so every new id matched every stored one).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use crate::record::{stream_hash, CRC_MASK};
use crate::le::{u32_at, u64_at};

pub const INDEX_MAGIC: [u8; 8] = *b"LGBKIDX\0";
pub const INDEX_FORMAT_VERSION: u32 = 3;
pub const INDEX_HEADER_BYTES: usize = 80;
/// Header flag: the positions section is present (a compacted segment's gaps).
pub const FLAG_SPARSE: u32 = 1;
pub const POSITION_ENTRY_BYTES: usize = 8;
pub const BY_STREAM_ENTRY_BYTES: usize = 24;
pub const BY_ID_ENTRY_BYTES: usize = 16;
pub const STREAM_ENTRY_BYTES: usize = 32;
pub const OFFSET_ENTRY_BYTES: usize = 4;
/// Largest segment an index can describe: frame offsets are u32.
pub const MAX_SEGMENT_BYTES: u64 = u32::MAX as u64;

/// Extension of an index file.
pub const INDEX_EXTENSION: &str = "idx";

/// File name of the index of the segment based at `base`.
pub fn file_name(base: u64) -> String {
    format!("{base:020}.{INDEX_EXTENSION}")
}

/// The SipHash key of [`id_key`]: fixed, since the keys are stored in index files. SipHash
/// keeps keys apart whatever bits ids share, and finding an id with a given key, even knowing
/// this key, takes about 2^64 tries: nobody can craft ids that pile up on one key.
pub const ID_KEY_SIPHASH_KEY: [u8; 16] = *b"logbook-id-key-1";
/// [`id_key`] of the all-zero id, pinned by a test: the key function is part of the format.
#[cfg(test)]
const ID_KEY_OF_ZEROES: u64 = 13_719_829_962_381_346_347;

/// The key of an event id in the by_id section (and the active index): SipHash-2-4 of its 16
/// bytes. A match is only a candidate; the frame's full id is compared.
pub fn id_key(id: &[u8; 16]) -> u64 {
    use std::hash::Hasher;
    let mut hasher = siphasher::sip::SipHasher24::new_with_key(&ID_KEY_SIPHASH_KEY);
    hasher.write(id);
    hasher.finish()
}

/// One event as the index builder sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexedEvent<'a> {
    pub stream: &'a str,
    pub version: u64,
    pub position: u64,
    pub id: [u8; 16],
    pub offset: u32,
}

impl<'a> IndexedEvent<'a> {
    /// The index entry of a decoded frame found at `offset` of its segment.
    pub fn of(frame: &crate::record::FrameRef<'a>, offset: u64) -> Self {
        assert!(offset < MAX_SEGMENT_BYTES, "segment offsets fit in u32");
        IndexedEvent {
            stream: frame.stream,
            version: frame.version,
            position: frame.position,
            id: frame.id,
            offset: offset as u32,
        }
    }
}

/// Events of one segment, in position order, ready to become an index file.
#[derive(Debug, Default)]
pub struct IndexBuilder {
    by_stream: Vec<(u64, u64, u64)>,
    by_id: Vec<(u64, u64)>,
    offsets: Vec<u32>,
    positions: Vec<u64>,
    streams: HashMap<String, (u64, u64)>,
}

impl IndexBuilder {
    pub fn add(&mut self, event: &IndexedEvent<'_>) {
        self.add_with_id_key(event, id_key(&event.id));
    }

    /// [`IndexBuilder::add`] with the event's id key already known (`event.id` is not read):
    /// the active index keeps keys, not ids.
    fn add_with_id_key(&mut self, event: &IndexedEvent<'_>, key: u64) {
        self.by_stream.push((stream_hash(event.stream), event.version, event.position));
        self.by_id.push((key, event.position));
        assert!(self.positions.last().is_none_or(|&p| p < event.position), "positions increase");
        self.offsets.push(event.offset);
        self.positions.push(event.position);
        let range = self.streams.entry(event.stream.to_string()).or_insert((event.version, event.version));
        assert!(event.version > range.1 || range.0 == event.version, "versions within a segment increase");
        range.1 = event.version;
    }

    #[cfg(any(test, feature = "testing"))]
    pub fn len(&self) -> usize {
        self.offsets.len()
    }
    #[cfg(any(test, feature = "testing"))]
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Encodes the index file for a segment based at `base` whose sealed length is
    /// `segment_len` and whose header checksum is `segment_crc`. The positions section is
    /// written only when the positions have gaps.
    pub fn encode(mut self, base: u64, segment_len: u64, segment_crc: u32) -> Vec<u8> {
        let sparse = self.positions.iter().enumerate().any(|(i, &p)| p != base + i as u64);
        self.by_stream.sort_unstable();
        self.by_id.sort_unstable();
        let mut streams: Vec<(u64, &String, (u64, u64))> =
            self.streams.iter().map(|(name, range)| (stream_hash(name), name, *range)).collect();
        streams.sort_unstable();
        let names_len: usize = streams.iter().map(|(_, name, _)| name.len()).sum();
        let n = self.offsets.len();
        let mut out = Vec::with_capacity(
            INDEX_HEADER_BYTES
                + n * (BY_STREAM_ENTRY_BYTES + BY_ID_ENTRY_BYTES + OFFSET_ENTRY_BYTES + POSITION_ENTRY_BYTES)
                + streams.len() * STREAM_ENTRY_BYTES
                + names_len,
        );
        out.extend_from_slice(&[0u8; INDEX_HEADER_BYTES]);
        for (hash, version, position) in &self.by_stream {
            put_u64s(&mut out, &[*hash, *version, *position]);
        }
        for (key, position) in &self.by_id {
            put_u64s(&mut out, &[*key, *position]);
        }
        let mut name_offset = 0u32;
        for (hash, name, (first, last)) in &streams {
            put_u64s(&mut out, &[*hash, *first, *last]);
            out.extend_from_slice(&name_offset.to_le_bytes());
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            name_offset += name.len() as u32;
        }
        for offset in &self.offsets {
            out.extend_from_slice(&offset.to_le_bytes());
        }
        if sparse {
            put_u64s(&mut out, &self.positions);
        }
        for (_, name, _) in &streams {
            out.extend_from_slice(name.as_bytes());
        }
        let body_crc = crc32fast::hash(&out[INDEX_HEADER_BYTES..]) ^ CRC_MASK;
        let header = &mut out[..INDEX_HEADER_BYTES];
        header[0..8].copy_from_slice(&INDEX_MAGIC);
        header[8..12].copy_from_slice(&INDEX_FORMAT_VERSION.to_le_bytes());
        header[12..16].copy_from_slice(&(if sparse { FLAG_SPARSE } else { 0 }).to_le_bytes());
        for (at, value) in
            [(16, base), (24, segment_len), (32, n as u64), (40, streams.len() as u64), (48, names_len as u64)]
        {
            header[at..at + 8].copy_from_slice(&value.to_le_bytes());
        }
        header[56..60].copy_from_slice(&segment_crc.to_le_bytes());
        header[72..76].copy_from_slice(&body_crc.to_le_bytes());
        let header_crc = crc32fast::hash(&header[0..76]) ^ CRC_MASK;
        header[76..80].copy_from_slice(&header_crc.to_le_bytes());
        out
    }
}

fn put_u64s(out: &mut Vec<u8>, values: &[u64]) {
    for value in values {
        out.extend_from_slice(&value.to_le_bytes());
    }
}


/// Largest index file read: beyond it the file is refused before anything is allocated.
pub const MAX_INDEX_FILE_BYTES: u64 = 8 << 30;

/// The bytes behind an index, read into memory with `pread` (never mapped: a file that
/// shrinks under a map raises SIGBUS). Costs 44 bytes per event of each sealed segment
/// (52 for a compacted one) plus the stream names.
pub enum IndexBytes {
    Owned(Vec<u8>),
}

impl AsRef<[u8]> for IndexBytes {
    fn as_ref(&self) -> &[u8] {
        match self {
            IndexBytes::Owned(bytes) => bytes,
        }
    }
}

impl std::fmt::Debug for IndexBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IndexBytes({} bytes)", self.as_ref().len())
    }
}

/// A validated, read-only index of one sealed segment.
#[derive(Debug)]
pub struct SegmentIndex {
    bytes: IndexBytes,
    pub base_position: u64,
    pub segment_len: u64,
    /// The checksum of the segment header this index was built for.
    pub segment_crc: u32,
    events: usize,
    streams: usize,
    by_id_at: usize,
    streams_at: usize,
    offsets_at: usize,
    /// Where the positions section starts, when the index is sparse.
    positions_at: Option<usize>,
    names_at: usize,
}

/// One stream's range within a segment, from the streams section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentStream<'a> {
    pub name: &'a str,
    pub first_version: u64,
    pub last_version: u64,
}

impl SegmentIndex {
    /// Validates every length and checksum before anything is trusted; never panics on
    /// arbitrary input.
    pub fn from_bytes(bytes: IndexBytes) -> Result<Self, String> {
        let b = bytes.as_ref();
        if b.len() < INDEX_HEADER_BYTES {
            return Err(format!("index needs a {INDEX_HEADER_BYTES}-byte header, file has {} bytes", b.len()));
        }
        if b[0..8] != INDEX_MAGIC {
            return Err("bad magic: not a logbook index".into());
        }
        if u32_at(b, 8) != INDEX_FORMAT_VERSION {
            return Err(format!("unsupported index format version {}", u32_at(b, 8)));
        }
        if u32_at(b, 76) != crc32fast::hash(&b[0..76]) ^ CRC_MASK {
            return Err("index header checksum mismatch".into());
        }
        let sparse = match u32_at(b, 12) {
            0 => false,
            FLAG_SPARSE => true,
            other => return Err(format!("unsupported index flags {other:#x}")),
        };
        let (events, streams, names) = (u64_at(b, 32), u64_at(b, 40), u64_at(b, 48));
        let per_event = (BY_STREAM_ENTRY_BYTES
            + BY_ID_ENTRY_BYTES
            + OFFSET_ENTRY_BYTES
            + if sparse { POSITION_ENTRY_BYTES } else { 0 }) as u64;
        let expected = events
            .checked_mul(per_event)
            .and_then(|e| streams.checked_mul(STREAM_ENTRY_BYTES as u64).and_then(|s| e.checked_add(s)))
            .and_then(|v| v.checked_add(names))
            .and_then(|v| v.checked_add(INDEX_HEADER_BYTES as u64));
        if expected != Some(b.len() as u64) {
            return Err(format!(
                "index declares {events} events, {streams} streams, {names} name bytes; file has {} bytes",
                b.len()
            ));
        }
        if u32_at(b, 72) != crc32fast::hash(&b[INDEX_HEADER_BYTES..]) ^ CRC_MASK {
            return Err("index body checksum mismatch".into());
        }
        // Positions start at 1 and the last one must fit in a u64 (found by fuzzing: base 0 with
        // no events made `last_position` underflow).
        let base_position = u64_at(b, 16);
        if base_position == 0 || base_position.checked_add(events.saturating_sub(1)).is_none() {
            return Err(format!("index base position {base_position} with {events} events is out of range"));
        }
        let (events, streams) = (events as usize, streams as usize);
        let by_id_at = INDEX_HEADER_BYTES + events * BY_STREAM_ENTRY_BYTES;
        let streams_at = by_id_at + events * BY_ID_ENTRY_BYTES;
        let offsets_at = streams_at + streams * STREAM_ENTRY_BYTES;
        let positions_at = offsets_at + events * OFFSET_ENTRY_BYTES;
        let names_at = positions_at + if sparse { events * POSITION_ENTRY_BYTES } else { 0 };
        let index = SegmentIndex {
            base_position,
            segment_len: u64_at(b, 24),
            segment_crc: u32_at(b, 56),
            events,
            streams,
            by_id_at,
            streams_at,
            offsets_at,
            positions_at: sparse.then_some(positions_at),
            names_at,
            bytes,
        };
        index.check_streams_section()?;
        index.check_positions_section()?;
        Ok(index)
    }

    /// A sparse index's positions must strictly increase from the base on: lookups binary
    /// search them.
    fn check_positions_section(&self) -> Result<(), String> {
        let mut previous = self.base_position - 1;
        for i in 0..self.events {
            let position = self.position_at(i);
            if position <= previous {
                return Err(format!("positions section entry {i} ({position}) does not increase"));
            }
            previous = position;
        }
        Ok(())
    }

    /// Position of the i-th frame (`i < events`).
    fn position_at(&self, i: usize) -> u64 {
        match self.positions_at {
            None => self.base_position + i as u64,
            Some(at) => u64_at(self.bytes.as_ref(), at + i * POSITION_ENTRY_BYTES),
        }
    }

    fn offset_at(&self, i: usize) -> u32 {
        u32_at(self.bytes.as_ref(), self.offsets_at + i * OFFSET_ENTRY_BYTES)
    }

    /// True when positions have gaps (a compacted segment).
    #[cfg(any(test, feature = "testing"))]
    pub fn is_sparse(&self) -> bool {
        self.positions_at.is_some()
    }

    fn check_streams_section(&self) -> Result<(), String> {
        let names_len = self.bytes.as_ref().len() - self.names_at;
        for i in 0..self.streams {
            let at = self.streams_at + i * STREAM_ENTRY_BYTES;
            let b = self.bytes.as_ref();
            let (offset, len) = (u32_at(b, at + 24) as usize, u32_at(b, at + 28) as usize);
            if offset.checked_add(len).is_none_or(|end| end > names_len) {
                return Err(format!("stream entry {i} names bytes outside the names section"));
            }
            if std::str::from_utf8(&b[self.names_at + offset..self.names_at + offset + len]).is_err() {
                return Err(format!("stream entry {i} has a name that is not UTF-8"));
            }
            if u64_at(b, at + 8) > u64_at(b, at + 16) || u64_at(b, at + 8) == 0 {
                return Err(format!("stream entry {i} has an empty or reversed version range"));
            }
        }
        Ok(())
    }

    /// Opens and validates the index file at `path`.
    pub fn open(path: &Path) -> Result<Self, String> {
        // An index is at most 52 bytes per event plus 1,056 per stream of a segment of at most
        // 4 GiB; `from_bytes` then checks the length against the header's counts exactly.
        let bytes = crate::storage::read_bounded(path, MAX_INDEX_FILE_BYTES).map_err(|e| e.to_string())?;
        Self::from_bytes(IndexBytes::Owned(bytes))
    }

    pub fn event_count(&self) -> usize {
        self.events
    }
    #[cfg(any(test, feature = "testing"))]
    pub fn stream_count(&self) -> usize {
        self.streams
    }
    /// Last position of a frame in the segment (`base - 1` when it holds none). `from_bytes`
    /// checked that base >= 1 and that this fits; subtracting first keeps base u64::MAX from
    /// overflowing.
    pub fn last_position(&self) -> u64 {
        match self.events {
            0 => self.base_position - 1,
            n => self.position_at(n - 1),
        }
    }

    /// Index of the first frame whose position is at least `position`.
    fn lower_bound(&self, position: u64) -> usize {
        match self.positions_at {
            None => position.saturating_sub(self.base_position).min(self.events as u64) as usize,
            Some(_) => {
                let (mut lo, mut hi) = (0, self.events);
                while lo < hi {
                    let mid = (lo + hi) / 2;
                    if self.position_at(mid) < position {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                lo
            }
        }
    }

    /// Byte offset of the frame at `position`, if this segment holds it.
    pub fn offset_of(&self, position: u64) -> Option<u32> {
        let i = self.lower_bound(position);
        (i < self.events && self.position_at(i) == position).then(|| self.offset_at(i))
    }

    /// The first frame at or after `position`: its position and byte offset.
    pub fn first_at_or_after(&self, position: u64) -> Option<(u64, u32)> {
        let i = self.lower_bound(position);
        (i < self.events).then(|| (self.position_at(i), self.offset_at(i)))
    }

    fn by_stream(&self, i: usize) -> (u64, u64, u64) {
        let at = INDEX_HEADER_BYTES + i * BY_STREAM_ENTRY_BYTES;
        let b = self.bytes.as_ref();
        (u64_at(b, at), u64_at(b, at + 8), u64_at(b, at + 16))
    }

    /// Positions of events whose stream hashes like `stream` with versions in `from..=to`,
    /// in version order. Hash collisions are possible: callers check the frame's stream name.
    pub fn positions_for(&self, stream: &str, from: u64, to: u64, out: &mut Vec<(u64, u64)>) {
        let hash = stream_hash(stream);
        let (mut lo, mut hi) = (0, self.events);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.by_stream(mid) < (hash, from, 0) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        while lo < self.events {
            let (h, version, position) = self.by_stream(lo);
            if h != hash || version > to {
                break;
            }
            out.push((version, position));
            lo += 1;
        }
    }

    /// Positions whose event id has the same key as `id` ([`id_key`]): candidates, whose frames
    /// hold the full id to compare.
    pub fn positions_with_id(&self, id: &[u8; 16], out: &mut Vec<u64>) {
        let key = id_key(id);
        let b = self.bytes.as_ref();
        let entry = |i: usize| {
            let at = self.by_id_at + i * BY_ID_ENTRY_BYTES;
            (u64_at(b, at), u64_at(b, at + 8))
        };
        let (mut lo, mut hi) = (0, self.events);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if entry(mid).0 < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        while lo < self.events && entry(lo).0 == key {
            out.push(entry(lo).1);
            lo += 1;
        }
    }

    /// Every stream in the segment with its version range.
    pub fn streams(&self) -> impl Iterator<Item = SegmentStream<'_>> {
        (0..self.streams).map(move |i| {
            let b = self.bytes.as_ref();
            let at = self.streams_at + i * STREAM_ENTRY_BYTES;
            let (offset, len) = (u32_at(b, at + 24) as usize, u32_at(b, at + 28) as usize);
            let start = self.names_at + offset;
            SegmentStream {
                // Checked as UTF-8 in bounds by from_bytes.
                name: std::str::from_utf8(&b[start..start + len]).unwrap_or(""),
                first_version: u64_at(b, at + 8),
                last_version: u64_at(b, at + 16),
            }
        })
    }
}

/// In-memory index of the active segment, owned by the writer and read under the store's lock.
#[derive(Debug, Default)]
pub struct ActiveIndex {
    pub base_position: u64,
    /// Frame offsets; position `base + i` is at `offsets[i]`.
    pub offsets: Vec<u32>,
    /// Stream -> (first version in this segment, positions in version order).
    ///
    /// This map, `ids`, the stream directory and the writer's maps of a pending group are
    /// keyed by names and ids that clients choose, in a long-running process: they keep std's
    /// SipHash, whose keyed design stops a client from forcing collisions that would slow
    /// every append. foldhash measured 6–11 % faster on 64-event multi-stream batches
    /// (docs/benchmarks.md), but its own documentation rules it out where someone may study a
    /// long-running program to craft colliding keys.
    pub streams: HashMap<Box<str>, (u64, Vec<u64>)>,
    /// Low 64 bits of the event id -> position of the first event with that key.
    ids: HashMap<u64, u64>,
    /// Further positions for keys already in `ids` (rare: a reused id or a 64-bit collision).
    more_ids: HashMap<u64, Vec<u64>>,
}

impl ActiveIndex {
    pub fn new(base_position: u64) -> Self {
        ActiveIndex { base_position, ..Default::default() }
    }

    /// Records one event. Positions must arrive in order, versions contiguous per stream.
    pub fn add(&mut self, event: &IndexedEvent<'_>) {
        self.add_run(event.stream, event.version, event.position, std::iter::once((event.offset, event.id)));
    }

    /// Records consecutive events of one stream (one append): versions from `first_version`
    /// and positions from `first_position`, each `(offset, id)`. The stream is looked up once
    /// per run, not once per event: the writer publishes whole appends under the state lock.
    pub fn add_run(
        &mut self,
        stream: &str,
        first_version: u64,
        first_position: u64,
        frames: impl ExactSizeIterator<Item = (u32, [u8; 16])>,
    ) {
        assert_eq!(
            first_position,
            self.base_position + self.offsets.len() as u64,
            "active index positions are contiguous"
        );
        let count = frames.len() as u64;
        let positions = match self.streams.get_mut(stream) {
            Some((first, positions)) => {
                assert_eq!(*first + positions.len() as u64, first_version, "versions are contiguous");
                positions
            }
            None => &mut self.streams.entry(stream.into()).or_insert((first_version, Vec::new())).1,
        };
        positions.extend(first_position..first_position + count);
        self.offsets.reserve(frames.len());
        self.ids.reserve(frames.len());
        for (i, (offset, id)) in frames.enumerate() {
            self.offsets.push(offset);
            let position = first_position + i as u64;
            let key = id_key(&id);
            match self.ids.entry(key) {
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(position);
                }
                std::collections::hash_map::Entry::Occupied(_) => self.more_ids.entry(key).or_default().push(position),
            }
        }
    }

    /// Positions whose event id has the same key as `id` ([`id_key`]): candidates, whose frames
    /// hold the full id to compare.
    pub fn positions_with_id(&self, id: &[u8; 16], out: &mut Vec<u64>) {
        let key = id_key(id);
        if let Some(position) = self.ids.get(&key) {
            out.push(*position);
            out.extend(self.more_ids.get(&key).into_iter().flatten());
        }
    }

    pub fn offset_of(&self, position: u64) -> Option<u32> {
        let i = position.checked_sub(self.base_position)? as usize;
        self.offsets.get(i).copied()
    }

    pub fn last_position(&self) -> u64 {
        self.base_position + self.offsets.len() as u64 - 1
    }

    /// Positions of `stream`'s events with versions in `from..=to`.
    pub fn positions_for(&self, stream: &str, from: u64, to: u64, out: &mut Vec<(u64, u64)>) {
        if let Some((first, positions)) = self.streams.get(stream) {
            for (i, position) in positions.iter().enumerate() {
                let version = first + i as u64;
                if (from..=to).contains(&version) {
                    out.push((version, *position));
                }
            }
        }
    }

    /// The index builder for this segment's events, once it is sealed.
    pub fn to_builder(&self) -> IndexBuilder {
        let mut stream_of = vec![None; self.offsets.len()];
        for (name, (first, positions)) in &self.streams {
            for (i, position) in positions.iter().enumerate() {
                stream_of[(position - self.base_position) as usize] = Some((name.as_ref(), first + i as u64));
            }
        }
        let mut id_of = vec![0u64; self.offsets.len()];
        for (key, position) in &self.ids {
            id_of[(position - self.base_position) as usize] = *key;
        }
        for (key, positions) in &self.more_ids {
            for position in positions {
                id_of[(position - self.base_position) as usize] = *key;
            }
        }
        let mut builder = IndexBuilder::default();
        for (i, offset) in self.offsets.iter().enumerate() {
            // Every position was added with its stream, so the slot is filled.
            let (stream, version) = stream_of[i].expect("active index covers every position");
            let event = IndexedEvent { stream, version, position: self.base_position + i as u64, id: [0; 16], offset: *offset };
            builder.add_with_id_key(&event, id_of[i]);
        }
        builder
    }
}

/// Per-stream directory: current version and the sealed segments holding the stream.
///
/// The names are also kept in order (`ordered`, sharing each name's allocation with the map):
/// a listing pages through them without sorting. Only a stream's first event inserts there, so
/// appends to existing streams pay nothing for it; a deleted stream is taken out
/// ([`StreamDirectory::unlist`]).
#[derive(Debug, Default)]
pub struct StreamDirectory {
    streams: HashMap<std::sync::Arc<str>, StreamEntry>,
    ordered: BTreeSet<std::sync::Arc<str>>,
}

#[derive(Debug, Default, Clone)]
pub struct StreamEntry {
    pub version: u64,
    /// Base positions of sealed segments that hold events of this stream, ascending.
    pub sealed: Vec<u64>,
}

impl StreamDirectory {
    pub fn get(&self, stream: &str) -> Option<&StreamEntry> {
        self.streams.get(stream)
    }
    pub fn version(&self, stream: &str) -> u64 {
        self.streams.get(stream).map_or(0, |e| e.version)
    }
    pub fn len(&self) -> usize {
        self.streams.len()
    }
    #[cfg(any(test, feature = "testing"))]
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
    /// Raises the stream's version (appends only move it forward).
    pub fn set_version(&mut self, stream: &str, version: u64) {
        match self.streams.get_mut(stream) {
            Some(entry) => {
                assert!(version >= entry.version, "stream versions never go back");
                entry.version = version;
            }
            None => {
                let name: std::sync::Arc<str> = stream.into();
                self.ordered.insert(std::sync::Arc::clone(&name));
                self.streams.insert(name, StreamEntry { version, sealed: Vec::new() });
            }
        }
    }
    /// Notes that the sealed segment based at `base` holds events of `stream` up to `last_version`.
    pub fn add_sealed(&mut self, stream: &str, base: u64, last_version: u64) {
        if !self.streams.contains_key(stream) {
            let name: std::sync::Arc<str> = stream.into();
            self.ordered.insert(std::sync::Arc::clone(&name));
            self.streams.insert(name, StreamEntry::default());
        }
        let entry = self.streams.get_mut(stream).expect("inserted above");
        assert!(entry.sealed.last().is_none_or(|&b| b < base), "sealed segments are added in order");
        entry.sealed.push(base);
        entry.version = entry.version.max(last_version);
    }
    /// After a compaction replaced the sealed segments based at `old` with one based at `new`
    /// (`None` when none of the stream's events survived there).
    pub fn replace_sealed(&mut self, stream: &str, old: &[u64], new: Option<u64>) {
        if let Some(entry) = self.streams.get_mut(stream) {
            entry.sealed.retain(|base| !old.contains(base));
            if let Some(base) = new {
                let at = entry.sealed.partition_point(|&b| b < base);
                if entry.sealed.get(at) != Some(&base) {
                    entry.sealed.insert(at, base);
                }
            }
        }
    }
    /// Leaves a deleted stream out of the ordered names (its entry stays), so listings never
    /// step over deleted streams.
    pub fn unlist(&mut self, stream: &str) {
        self.ordered.remove(stream);
    }
    /// The streams whose names start with `prefix`, after `after` (exclusive; `None`: from the
    /// first), in name order, with their entries.
    pub fn range_from<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<&str>,
    ) -> impl Iterator<Item = (&'a str, &'a StreamEntry)> + 'a {
        use std::ops::Bound;
        let start: Bound<&str> = match after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        self.ordered
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(move |name| name.starts_with(prefix))
            .filter_map(move |name| self.streams.get(name.as_ref()).map(|entry| (name.as_ref(), entry)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Vec<u8>, ActiveIndex) {
        let mut active = ActiveIndex::new(10);
        let streams = ["a-1", "b-2", "a-1", "c-3", "a-1"];
        let mut versions: HashMap<&str, u64> = HashMap::new();
        for (i, stream) in streams.iter().enumerate() {
            let version = versions.entry(stream).or_insert(0);
            *version += 1;
            let mut id = [0u8; 16];
            id[15] = i as u8;
            active.add(&IndexedEvent {
                stream,
                version: *version,
                position: 10 + i as u64,
                id,
                offset: 64 + 100 * i as u32,
            });
        }
        (active.to_builder().encode(10, 564, 0xABCD), active)
    }

    #[test]
    fn index_file_roundtrip_answers_like_the_active_index() {
        let (bytes, active) = sample();
        let index = SegmentIndex::from_bytes(IndexBytes::Owned(bytes)).unwrap();
        assert_eq!((index.base_position, index.segment_len, index.event_count()), (10, 564, 5));
        assert_eq!((index.segment_crc, index.is_sparse(), index.last_position()), (0xABCD, false, 14));
        for stream in ["a-1", "b-2", "c-3", "zzz"] {
            let (mut from_file, mut from_memory) = (Vec::new(), Vec::new());
            index.positions_for(stream, 1, u64::MAX, &mut from_file);
            active.positions_for(stream, 1, u64::MAX, &mut from_memory);
            assert_eq!(from_file, from_memory, "{stream}");
        }
        let mut part = Vec::new();
        index.positions_for("a-1", 2, 2, &mut part);
        assert_eq!(part, vec![(2, 12)]);
        assert_eq!(index.offset_of(12), Some(264));
        assert_eq!(index.offset_of(15), None);
        let mut id = [0u8; 16];
        id[15] = 3;
        let mut hits = Vec::new();
        index.positions_with_id(&id, &mut hits);
        assert_eq!(hits, vec![13]);
        let mut streams: Vec<_> =
            index.streams().map(|s| (s.name.to_string(), s.first_version, s.last_version)).collect();
        streams.sort();
        assert_eq!(streams, vec![("a-1".into(), 1, 3), ("b-2".into(), 1, 1), ("c-3".into(), 1, 1)]);
    }

    #[test]
    fn sparse_index_finds_frames_across_gaps() {
        let mut builder = IndexBuilder::default();
        for (i, position) in [12u64, 13, 17, 30].into_iter().enumerate() {
            let mut id = [0u8; 16];
            id[15] = i as u8;
            builder.add(&IndexedEvent { stream: "s", version: 5 + i as u64, position, id, offset: 80 + 10 * i as u32 });
        }
        let bytes = builder.encode(10, 200, 7);
        let index = SegmentIndex::from_bytes(IndexBytes::Owned(bytes.clone())).unwrap();
        assert!(index.is_sparse());
        assert_eq!(index.last_position(), 30);
        assert_eq!(index.offset_of(17), Some(100));
        assert_eq!(index.offset_of(16), None);
        assert_eq!(index.offset_of(10), None);
        assert_eq!(index.first_at_or_after(10), Some((12, 80)));
        assert_eq!(index.first_at_or_after(14), Some((17, 100)));
        assert_eq!(index.first_at_or_after(31), None);
        let mut found = Vec::new();
        index.positions_for("s", 6, 7, &mut found);
        assert_eq!(found, vec![(6, 13), (7, 17)]);
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x01;
            assert!(SegmentIndex::from_bytes(IndexBytes::Owned(damaged)).is_err(), "flip at {i} accepted");
        }
        // An empty compacted segment has an empty (dense) index.
        let empty = SegmentIndex::from_bytes(IndexBytes::Owned(IndexBuilder::default().encode(10, 64, 7))).unwrap();
        assert_eq!((empty.event_count(), empty.last_position(), empty.first_at_or_after(1)), (0, 9, None));
    }

    #[test]
    fn ids_that_share_half_their_bits_get_their_own_keys() {
        // Time-based UUIDs (v1, v6) of one host share their low 64 bits (clock sequence and
        // node), v7 ids of one millisecond their high ones: keyed on one half, every new id
        // matched every stored one and each match decoded a frame on the writer thread.
        let v1 = |time: u64| uuid::Uuid::from_u64_pair(time, 0x8123_0242_ac11_0002).into_bytes();
        let v7 = |random: u64| uuid::Uuid::from_u64_pair(0x0194_0000_0000_7000, random).into_bytes();
        let keys: std::collections::HashSet<u64> =
            (0..1000).flat_map(|i| [id_key(&v1(i)), id_key(&v7(i))]).collect();
        assert_eq!(keys.len(), 2000);
        // The key is part of the index format: it never changes.
        assert_eq!(id_key(&[0; 16]), ID_KEY_OF_ZEROES);
    }

    #[test]
    fn damaged_index_is_rejected() {
        let (bytes, _) = sample();
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x01;
            assert!(SegmentIndex::from_bytes(IndexBytes::Owned(damaged)).is_err(), "flip at {i} accepted");
        }
        for cut in 0..bytes.len() {
            assert!(SegmentIndex::from_bytes(IndexBytes::Owned(bytes[..cut].to_vec())).is_err());
        }
    }
}
