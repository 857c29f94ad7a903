//! The durable records of what must exist: the clean-shutdown record (`CLEAN`) and the segment
//! manifest (`MANIFEST`). Pure: bytes in, values out, every offset a named constant.
//!
//! All integers little-endian; checksums are CRC-32 (crc32fast) XOR [`CRC_MASK`], as in frames.
//!
//! ```text
//! CLEAN (version 2), 64 bytes
//!   0..8   [u8;8] magic "LGBKCLN\0"
//!   8..12  u32    record version = 2
//!   12..16        reserved, zero
//!   16..24 u64    head: last position written (0: none)
//!   24..32 u64    base position of the last segment
//!   32..40 u64    written length of the last segment: end of its last frame
//!   40..44 u32    stored checksum of the last frame in the log (0 when the last segment has none)
//!   44..60        reserved, zero
//!   60..64 u32    crc32(bytes 0..60) XOR CRC_MASK
//! CLEAN (version 1, before this record existed): the head as ASCII decimal digits.
//!
//! MANIFEST (version 1)
//!   header, 32 bytes
//!   0..8   [u8;8] magic "LGBKMAN\0"
//!   8..12  u32    manifest version = 1
//!   12..16 u32    N: entries
//!   16..24 u64    generation: +1 at every rewrite
//!   24..28 u32    crc32(entries) XOR CRC_MASK
//!   28..32 u32    crc32(bytes 0..28) XOR CRC_MASK
//!   entries, N x 32, by ascending base; the last one is the active segment
//!   0..8   u64    base position
//!   8..16  u64    sealed: last position the segment covers
//!                 active: last position known synced in it (0: none recorded)
//!   16..24 u64    sealed: file length
//!                 active: end of that position's frame (0: none recorded)
//!   24..28 u32    the segment header's stored checksum (which version of the file)
//!   28..32 u32    flags: bit 0 = ACTIVE (the last entry, and only it)
//! ```

use crate::record::CRC_MASK;
use crate::le::{u32_at, u64_at};

pub const CLEAN_MAGIC: [u8; 8] = *b"LGBKCLN\0";
pub const CLEAN_VERSION: u32 = 2;
pub const CLEAN_BYTES: usize = 64;
const CLEAN_VERSION_AT: usize = 8;
const CLEAN_HEAD_AT: usize = 16;
const CLEAN_LAST_BASE_AT: usize = 24;
const CLEAN_LAST_LEN_AT: usize = 32;
const CLEAN_LAST_CRC_AT: usize = 40;
const CLEAN_CRC_AT: usize = 60;
/// A version-1 CLEAN is at most this many digits (u64::MAX has 20).
const LEGACY_CLEAN_MAX_BYTES: usize = 20;

pub const MANIFEST_MAGIC: [u8; 8] = *b"LGBKMAN\0";
pub const MANIFEST_VERSION: u32 = 1;
pub const MANIFEST_HEADER_BYTES: usize = 32;
pub const MANIFEST_ENTRY_BYTES: usize = 32;
const MANIFEST_VERSION_AT: usize = 8;
const MANIFEST_COUNT_AT: usize = 12;
const MANIFEST_GENERATION_AT: usize = 16;
const MANIFEST_ENTRIES_CRC_AT: usize = 24;
const MANIFEST_HEADER_CRC_AT: usize = 28;
const ENTRY_BASE_AT: usize = 0;
const ENTRY_END_AT: usize = 8;
const ENTRY_LEN_AT: usize = 16;
const ENTRY_HEADER_CRC_AT: usize = 24;
const ENTRY_FLAGS_AT: usize = 28;
/// Entry flag: the active (last) segment.
pub const ENTRY_ACTIVE: u32 = 1;
/// Most entries a manifest may list: refused before anything is allocated beyond it
/// (a store of 64 MiB segments reaches it at 64 PiB).
pub const MAX_MANIFEST_ENTRIES: usize = 1 << 30;
/// Largest manifest file read.
pub const MAX_MANIFEST_BYTES: u64 = (MANIFEST_HEADER_BYTES + MAX_MANIFEST_ENTRIES * MANIFEST_ENTRY_BYTES) as u64;

const _: () = assert!(CLEAN_CRC_AT + 4 == CLEAN_BYTES);
const _: () = assert!(CLEAN_LAST_CRC_AT + 4 <= CLEAN_CRC_AT);
const _: () = assert!(MANIFEST_HEADER_CRC_AT + 4 == MANIFEST_HEADER_BYTES);
const _: () = assert!(ENTRY_FLAGS_AT + 4 == MANIFEST_ENTRY_BYTES);

/// What a clean shutdown recorded. A version-1 record knows only the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanRecord {
    pub head: u64,
    /// `None` for a version-1 record (a bare number).
    pub last: Option<LastSegment>,
}

/// The end of the log as a clean shutdown left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastSegment {
    pub base: u64,
    /// End of the last frame.
    pub written_len: u64,
    /// The last frame's stored checksum, 0 if the segment holds none.
    pub last_frame_crc: u32,
}

fn masked_crc(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes) ^ CRC_MASK
}

pub fn encode_clean(record: &CleanRecord) -> Vec<u8> {
    let last = record.last.unwrap_or(LastSegment { base: 0, written_len: 0, last_frame_crc: 0 });
    let mut out = vec![0u8; CLEAN_BYTES];
    out[0..8].copy_from_slice(&CLEAN_MAGIC);
    out[CLEAN_VERSION_AT..CLEAN_VERSION_AT + 4].copy_from_slice(&CLEAN_VERSION.to_le_bytes());
    out[CLEAN_HEAD_AT..CLEAN_HEAD_AT + 8].copy_from_slice(&record.head.to_le_bytes());
    out[CLEAN_LAST_BASE_AT..CLEAN_LAST_BASE_AT + 8].copy_from_slice(&last.base.to_le_bytes());
    out[CLEAN_LAST_LEN_AT..CLEAN_LAST_LEN_AT + 8].copy_from_slice(&last.written_len.to_le_bytes());
    out[CLEAN_LAST_CRC_AT..CLEAN_LAST_CRC_AT + 4].copy_from_slice(&last.last_frame_crc.to_le_bytes());
    let crc = masked_crc(&out[..CLEAN_CRC_AT]);
    out[CLEAN_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a CLEAN file: version 2, or a version-1 bare decimal head.
pub fn decode_clean(bytes: &[u8]) -> Result<CleanRecord, String> {
    if bytes.len() <= LEGACY_CLEAN_MAX_BYTES && !bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit) {
        let head = std::str::from_utf8(bytes).ok().and_then(|s| s.parse().ok());
        return head.map(|head| CleanRecord { head, last: None }).ok_or_else(|| "head out of range".to_string());
    }
    if bytes.len() != CLEAN_BYTES {
        return Err(format!("clean-shutdown record is {} bytes, expected {CLEAN_BYTES}", bytes.len()));
    }
    if bytes[0..8] != CLEAN_MAGIC {
        return Err("bad magic: not a clean-shutdown record".into());
    }
    let (stored, computed) = (u32_at(bytes, CLEAN_CRC_AT), masked_crc(&bytes[..CLEAN_CRC_AT]));
    if stored != computed {
        return Err(format!("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"));
    }
    let version = u32_at(bytes, CLEAN_VERSION_AT);
    if version != CLEAN_VERSION {
        return Err(format!("unsupported clean-shutdown record version {version}"));
    }
    let last = LastSegment {
        base: u64_at(bytes, CLEAN_LAST_BASE_AT),
        written_len: u64_at(bytes, CLEAN_LAST_LEN_AT),
        last_frame_crc: u32_at(bytes, CLEAN_LAST_CRC_AT),
    };
    if last.base == 0 {
        return Err("last segment base 0 (positions start at 1)".into());
    }
    Ok(CleanRecord { head: u64_at(bytes, CLEAN_HEAD_AT), last: Some(last) })
}

/// One segment the manifest says must exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestEntry {
    pub base: u64,
    /// Sealed: the last position it covers. Active: the last position known synced in it, so
    /// after a crash the segment must still hold it (0: none recorded; older builds wrote 0).
    pub end: u64,
    /// Sealed: its file length. Active: the end of the frame at `end` (0 with `end`).
    pub len: u64,
    pub header_crc: u32,
    pub active: bool,
}

/// The end of what is known durable in the active segment: its last synced position and the
/// byte where that position's frame ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncedEnd {
    pub position: u64,
    pub len: u64,
}

/// Which segments must exist, as of the last seal, rollover, compaction or open (and, for the
/// active one, how far it was synced at the last of those or of the writer's periodic records).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub generation: u64,
    pub entries: Vec<ManifestEntry>,
}

impl Manifest {
    /// The manifest of `sealed` segments (base, end, length, header checksum), in order, then
    /// the active one (base, header checksum): the last entry is the active one, and only it.
    pub fn of_segments(
        generation: u64,
        sealed: impl IntoIterator<Item = (u64, u64, u64, u32)>,
        active: (u64, u32),
    ) -> Self {
        let mut entries: Vec<ManifestEntry> = sealed
            .into_iter()
            .map(|(base, end, len, header_crc)| ManifestEntry { base, end, len, header_crc, active: false })
            .collect();
        entries.push(ManifestEntry { base: active.0, end: 0, len: 0, header_crc: active.1, active: true });
        Manifest { generation, entries }
    }

    /// Records that the active segment is synced up to position `end`, whose frame ends at byte
    /// `len`: after a crash it must still hold that much.
    pub fn with_active_synced(mut self, synced: Option<SyncedEnd>) -> Self {
        if let (Some(synced), Some(active)) = (synced, self.entries.last_mut()) {
            assert!(synced.position >= active.base && synced.len > 0, "a synced end lies inside the active segment");
            (active.end, active.len) = (synced.position, synced.len);
        }
        self
    }

    /// How far the active segment was recorded synced, if the manifest says.
    pub fn active_synced(&self) -> Option<(u64, SyncedEnd)> {
        let active = self.entries.last().filter(|e| e.active && e.end != 0)?;
        Some((active.base, SyncedEnd { position: active.end, len: active.len }))
    }

    /// The entry for the segment based at `base`.
    pub fn get(&self, base: u64) -> Option<&ManifestEntry> {
        self.entries.binary_search_by_key(&base, |e| e.base).ok().map(|i| &self.entries[i])
    }
}

pub fn encode_manifest(manifest: &Manifest) -> Vec<u8> {
    assert!(manifest.entries.len() <= MAX_MANIFEST_ENTRIES, "manifest within its limit");
    let mut out = vec![0u8; MANIFEST_HEADER_BYTES + manifest.entries.len() * MANIFEST_ENTRY_BYTES];
    for (i, e) in manifest.entries.iter().enumerate() {
        assert!(i == 0 || manifest.entries[i - 1].base < e.base, "manifest entries ascend by base");
        assert_eq!(e.active, i + 1 == manifest.entries.len(), "only the last entry is active");
        let at = MANIFEST_HEADER_BYTES + i * MANIFEST_ENTRY_BYTES;
        let entry = &mut out[at..at + MANIFEST_ENTRY_BYTES];
        entry[ENTRY_BASE_AT..ENTRY_BASE_AT + 8].copy_from_slice(&e.base.to_le_bytes());
        entry[ENTRY_END_AT..ENTRY_END_AT + 8].copy_from_slice(&e.end.to_le_bytes());
        entry[ENTRY_LEN_AT..ENTRY_LEN_AT + 8].copy_from_slice(&e.len.to_le_bytes());
        entry[ENTRY_HEADER_CRC_AT..ENTRY_HEADER_CRC_AT + 4].copy_from_slice(&e.header_crc.to_le_bytes());
        let flags = if e.active { ENTRY_ACTIVE } else { 0 };
        entry[ENTRY_FLAGS_AT..ENTRY_FLAGS_AT + 4].copy_from_slice(&flags.to_le_bytes());
    }
    out[0..8].copy_from_slice(&MANIFEST_MAGIC);
    out[MANIFEST_VERSION_AT..MANIFEST_VERSION_AT + 4].copy_from_slice(&MANIFEST_VERSION.to_le_bytes());
    out[MANIFEST_COUNT_AT..MANIFEST_COUNT_AT + 4].copy_from_slice(&(manifest.entries.len() as u32).to_le_bytes());
    out[MANIFEST_GENERATION_AT..MANIFEST_GENERATION_AT + 8].copy_from_slice(&manifest.generation.to_le_bytes());
    let entries_crc = masked_crc(&out[MANIFEST_HEADER_BYTES..]);
    out[MANIFEST_ENTRIES_CRC_AT..MANIFEST_ENTRIES_CRC_AT + 4].copy_from_slice(&entries_crc.to_le_bytes());
    let header_crc = masked_crc(&out[..MANIFEST_HEADER_CRC_AT]);
    out[MANIFEST_HEADER_CRC_AT..MANIFEST_HEADER_CRC_AT + 4].copy_from_slice(&header_crc.to_le_bytes());
    out
}

pub fn decode_manifest(bytes: &[u8]) -> Result<Manifest, String> {
    if bytes.len() < MANIFEST_HEADER_BYTES {
        return Err(format!("manifest is {} bytes, shorter than its {MANIFEST_HEADER_BYTES}-byte header", bytes.len()));
    }
    if bytes[0..8] != MANIFEST_MAGIC {
        return Err("bad magic: not a segment manifest".into());
    }
    let (stored, computed) = (u32_at(bytes, MANIFEST_HEADER_CRC_AT), masked_crc(&bytes[..MANIFEST_HEADER_CRC_AT]));
    if stored != computed {
        return Err(format!("header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"));
    }
    let version = u32_at(bytes, MANIFEST_VERSION_AT);
    if version != MANIFEST_VERSION {
        return Err(format!("unsupported manifest version {version}"));
    }
    let count = u32_at(bytes, MANIFEST_COUNT_AT) as usize;
    if count == 0 || count > MAX_MANIFEST_ENTRIES {
        return Err(format!("manifest lists {count} segments (1..={MAX_MANIFEST_ENTRIES} allowed)"));
    }
    let expected = MANIFEST_HEADER_BYTES + count * MANIFEST_ENTRY_BYTES;
    if bytes.len() != expected {
        return Err(format!("manifest is {} bytes, {count} entries need {expected}", bytes.len()));
    }
    let (stored, computed) = (u32_at(bytes, MANIFEST_ENTRIES_CRC_AT), masked_crc(&bytes[MANIFEST_HEADER_BYTES..]));
    if stored != computed {
        return Err(format!("entries checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"));
    }
    let mut entries = Vec::with_capacity(count);
    for i in 0..count {
        let at = MANIFEST_HEADER_BYTES + i * MANIFEST_ENTRY_BYTES;
        let e = &bytes[at..at + MANIFEST_ENTRY_BYTES];
        let flags = u32_at(e, ENTRY_FLAGS_AT);
        if flags & !ENTRY_ACTIVE != 0 {
            return Err(format!("entry {i}: unknown flags {flags:#x}"));
        }
        let entry = ManifestEntry {
            base: u64_at(e, ENTRY_BASE_AT),
            end: u64_at(e, ENTRY_END_AT),
            len: u64_at(e, ENTRY_LEN_AT),
            header_crc: u32_at(e, ENTRY_HEADER_CRC_AT),
            active: flags & ENTRY_ACTIVE != 0,
        };
        let last = i + 1 == count;
        if entry.base == 0 || entry.active != last {
            return Err(format!(
                "entry {i}: base {} active {} (only the last entry is active)",
                entry.base, entry.active
            ));
        }
        if !entry.active && entry.end < entry.base {
            return Err(format!("entry {i}: segment {} ends at {}, before its base", entry.base, entry.end));
        }
        if entry.active && ((entry.end == 0) != (entry.len == 0) || (entry.end != 0 && entry.end < entry.base)) {
            return Err(format!(
                "entry {i}: active segment {} recorded synced up to position {} ending at byte {}",
                entry.base, entry.end, entry.len
            ));
        }
        if let Some(prev) = entries.last() {
            let prev: &ManifestEntry = prev;
            if entry.base != prev.end + 1 {
                return Err(format!(
                    "entry {i}: segment {} does not follow the previous one's end {}",
                    entry.base, prev.end
                ));
            }
        }
        entries.push(entry);
    }
    Ok(Manifest { generation: u64_at(bytes, MANIFEST_GENERATION_AT), entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            generation: 7,
            entries: vec![
                ManifestEntry { base: 1, end: 10, len: 4000, header_crc: 11, active: false },
                ManifestEntry { base: 11, end: 40, len: 9000, header_crc: 22, active: false },
                ManifestEntry { base: 41, end: 0, len: 0, header_crc: 33, active: true },
            ],
        }
    }

    #[test]
    fn clean_roundtrip_legacy_and_damage() {
        let record =
            CleanRecord { head: 42, last: Some(LastSegment { base: 40, written_len: 777, last_frame_crc: 0xdead }) };
        let bytes = encode_clean(&record);
        assert_eq!(decode_clean(&bytes), Ok(record));
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x04;
            assert!(decode_clean(&damaged).is_err(), "flip at {i} accepted");
        }
        assert_eq!(decode_clean(b"42167"), Ok(CleanRecord { head: 42167, last: None }));
        assert!(decode_clean(b"").is_err());
        assert!(decode_clean(b"99999999999999999999").is_err(), "above u64::MAX");
        assert!(decode_clean(&[0u8; CLEAN_BYTES]).is_err(), "zeroes never decode");
    }

    #[test]
    fn manifest_roundtrip_and_damage() {
        let manifest = sample();
        let bytes = encode_manifest(&manifest);
        assert_eq!(bytes.len(), MANIFEST_HEADER_BYTES + 3 * MANIFEST_ENTRY_BYTES);
        assert_eq!(decode_manifest(&bytes), Ok(manifest.clone()));
        assert_eq!(manifest.get(11).map(|e| e.len), Some(9000));
        assert!(manifest.get(12).is_none());
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x01;
            assert!(decode_manifest(&damaged).is_err(), "flip at {i} accepted");
        }
        for cut in 0..bytes.len() {
            assert!(decode_manifest(&bytes[..cut]).is_err(), "cut at {cut} accepted");
        }
        assert!(decode_manifest(&vec![0u8; bytes.len()]).is_err());
    }

    #[test]
    fn manifest_carries_how_far_the_active_segment_was_synced() {
        assert_eq!(sample().active_synced(), None, "0 records nothing (what older builds write)");
        let synced = SyncedEnd { position: 45, len: 3000 };
        let manifest = sample().with_active_synced(Some(synced));
        assert_eq!(manifest.active_synced(), Some((41, synced)));
        let bytes = encode_manifest(&manifest);
        assert_eq!(decode_manifest(&bytes), Ok(manifest.clone()));
        // An end without a length, a length without an end, or an end before the segment's base.
        for (end, len) in [(45, 0), (0, 3000), (40, 3000)] {
            let mut odd = manifest.clone();
            let active = odd.entries.last_mut().unwrap();
            (active.end, active.len) = (end, len);
            let err = decode_manifest(&encode_manifest(&odd)).unwrap_err();
            assert!(err.contains("recorded synced"), "{end} {len}: {err}");
        }
    }

    #[test]
    fn manifest_refuses_gaps_and_a_misplaced_active_entry() {
        let mut gap = sample();
        gap.entries[1].base = 12;
        let bytes = encode_manifest(&gap);
        assert!(decode_manifest(&bytes).unwrap_err().contains("does not follow"));
    }
}
