//! Per-stream snapshots: an aggregate's state at a version, so loading it replays only the
//! events after that version.
//!
//! Snapshots are **derived data**. A snapshot that fails its checksum, names another stream,
//! has another schema version, or does not line up with the log is ignored (with a warning)
//! and the aggregate is replayed in full; nothing is ever lost by deleting `snapshots/`.
//!
//! One file per stream under `<data>/snapshots/`, written atomically (temp file, fsync,
//! rename, directory fsync: [`logbook::write_file_atomically`]). The file name is the hex
//! of the stream name (names up to [`MAX_HEX_NAME_BYTES`] bytes) or `h` + a 128-bit hash of it
//! (longer names); the stream name is also inside the file and is checked on read, so a hash
//! collision can only cost a replay, never a wrong state.
//!
//! Layout (all integers little-endian; see also docs/format.md, "Snapshots"):
//!
//! ```text
//!  0..8    [u8;8] magic "LGBKSNP\0"
//!  8..12   u32    snapshot format version = 1
//! 12..16   u32    schema version of the state (the aggregate's SCHEMA_VERSION)
//! 16..24   u64    stream version the state includes (>= 1)
//! 24..32   u64    global position of that version's event (>= 1)
//! 32..36   u32    stream name bytes (1..=1024)
//! 36..40   u32    state bytes (0..=MAX_STATE_BYTES)
//! 40..     stream name (UTF-8), then state (serde + bincode 2, standard config)
//! last 4   u32    crc32 of every byte before it, XOR SNAPSHOT_CRC_MASK
//! ```
//!
//! [`encode`] and [`decode`] are pure; every length is checked against the input before
//! anything is allocated.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use logbook::MAX_STREAM_NAME_BYTES as MAX_STREAM_BYTES;
use logbook::{Error, Result};

/// Directory (inside the data directory) holding snapshot files.
pub const SNAPSHOTS_DIR: &str = "snapshots";
/// File extension of a snapshot.
pub const SNAPSHOT_EXTENSION: &str = "snap";
/// First bytes of every snapshot file.
pub const MAGIC: [u8; 8] = *b"LGBKSNP\0";
/// The layout version written by this code.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes before the stream name.
pub const HEADER_BYTES: usize = 40;
/// The trailing checksum.
pub const TRAILER_BYTES: usize = 4;
/// Largest serialized state accepted (written or read).
pub const MAX_STATE_BYTES: usize = 64 * 1024 * 1024;
/// Largest snapshot file read.
pub const MAX_FILE_BYTES: usize = HEADER_BYTES + MAX_STREAM_BYTES + MAX_STATE_BYTES + TRAILER_BYTES;
/// XORed into the CRC so that an all-zero file never validates.
pub const SNAPSHOT_CRC_MASK: u32 = 0x5EED_5A95;
/// Stream names up to this many bytes get a hex file name; longer ones a hash.
pub const MAX_HEX_NAME_BYTES: usize = 120;

/// One snapshot: the serialized state of `stream` as of `version` (whose event is at `position`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub stream: String,
    pub version: u64,
    pub position: u64,
    pub schema_version: u32,
    pub state: Vec<u8>,
}

/// Why a snapshot could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes are not a snapshot of this format (too short, bad magic, bad lengths, ...).
    #[error("malformed snapshot: {0}")]
    Malformed(String),
    /// The checksum does not match the content.
    #[error("snapshot checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    /// Reading the file failed.
    #[error("reading snapshot {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn checksum(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes) ^ SNAPSHOT_CRC_MASK
}

/// Serializes a snapshot. Fails when the stream name or state is outside the limits.
pub fn encode(snapshot: &Snapshot) -> Result<Vec<u8>, SnapshotError> {
    let name = snapshot.stream.as_bytes();
    if name.is_empty() || name.len() > MAX_STREAM_BYTES {
        return Err(SnapshotError::Malformed(format!(
            "stream name of {} bytes, limit 1..={MAX_STREAM_BYTES}",
            name.len()
        )));
    }
    if snapshot.state.len() > MAX_STATE_BYTES {
        return Err(SnapshotError::Malformed(format!(
            "state of {} bytes, limit {MAX_STATE_BYTES}",
            snapshot.state.len()
        )));
    }
    if snapshot.version == 0 || snapshot.position == 0 {
        return Err(SnapshotError::Malformed("version and position start at 1".into()));
    }
    let mut out = Vec::with_capacity(HEADER_BYTES + name.len() + snapshot.state.len() + TRAILER_BYTES);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&snapshot.schema_version.to_le_bytes());
    out.extend_from_slice(&snapshot.version.to_le_bytes());
    out.extend_from_slice(&snapshot.position.to_le_bytes());
    // Both lengths were bounded above (<= 64 MiB), so they fit a u32.
    out.extend_from_slice(&(name.len() as u32).to_le_bytes());
    out.extend_from_slice(&(snapshot.state.len() as u32).to_le_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(&snapshot.state);
    let crc = checksum(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Parses and checks a snapshot. Never panics and never allocates more than the input's size.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
    let malformed = |m: String| Err(SnapshotError::Malformed(m));
    if bytes.len() < HEADER_BYTES + TRAILER_BYTES {
        return malformed(format!(
            "{} bytes, shorter than the {}-byte minimum",
            bytes.len(),
            HEADER_BYTES + TRAILER_BYTES
        ));
    }
    if bytes[..8] != MAGIC {
        return malformed("bad magic".into());
    }
    let name_len = u32_at(bytes, 32) as usize;
    let state_len = u32_at(bytes, 36) as usize;
    if name_len == 0 || name_len > MAX_STREAM_BYTES {
        return malformed(format!("stream name length {name_len} outside 1..={MAX_STREAM_BYTES}"));
    }
    if state_len > MAX_STATE_BYTES {
        return malformed(format!("state length {state_len} over the {MAX_STATE_BYTES} limit"));
    }
    let expected_len = HEADER_BYTES + name_len + state_len + TRAILER_BYTES;
    if bytes.len() != expected_len {
        return malformed(format!("{} bytes where the header promises {expected_len}", bytes.len()));
    }
    let body_end = expected_len - TRAILER_BYTES;
    let stored = u32_at(bytes, body_end);
    let computed = checksum(&bytes[..body_end]);
    if stored != computed {
        return Err(SnapshotError::Checksum { stored, computed });
    }
    let format = u32_at(bytes, 8);
    if format != FORMAT_VERSION {
        return malformed(format!("format version {format}, this code reads {FORMAT_VERSION}"));
    }
    let version = u64_at(bytes, 16);
    let position = u64_at(bytes, 24);
    if version == 0 || position == 0 {
        return malformed("version and position start at 1".into());
    }
    let name = &bytes[HEADER_BYTES..HEADER_BYTES + name_len];
    let Ok(stream) = std::str::from_utf8(name) else {
        return malformed("stream name is not UTF-8".into());
    };
    Ok(Snapshot {
        stream: stream.to_string(),
        version,
        position,
        schema_version: u32_at(bytes, 12),
        state: bytes[HEADER_BYTES + name_len..body_end].to_vec(),
    })
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_STATE_BYTES>()
}

/// Serializes an aggregate state (serde + bincode 2, standard config).
pub fn encode_state<T: Serialize>(state: &T) -> Result<Vec<u8>, String> {
    let bytes = bincode::serde::encode_to_vec(state, bincode_config()).map_err(|e| e.to_string())?;
    if bytes.len() > MAX_STATE_BYTES {
        return Err(format!("state encodes to {} bytes, limit {MAX_STATE_BYTES}", bytes.len()));
    }
    Ok(bytes)
}

/// Deserializes an aggregate state; the whole input must be consumed.
pub fn decode_state<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let (state, used) = bincode::serde::decode_from_slice(bytes, bincode_config()).map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err(format!("{} trailing bytes after the state", bytes.len() - used));
    }
    Ok(state)
}

fn fnv1a(bytes: &[u8], basis: u64) -> u64 {
    bytes.iter().fold(basis, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3))
}

/// The file name of `stream`'s snapshot: safe for any stream name on any file system.
pub fn file_name(stream: &str) -> String {
    let bytes = stream.as_bytes();
    if bytes.len() <= MAX_HEX_NAME_BYTES {
        format!("{}.{SNAPSHOT_EXTENSION}", hex::encode(bytes))
    } else {
        // 'h' is not a hex digit, so hashed names never collide with hex ones.
        let (a, b) = (fnv1a(bytes, 0xCBF2_9CE4_8422_2325), fnv1a(bytes, 0x6C62_272E_07BB_0142));
        format!("h{a:016x}{b:016x}.{SNAPSHOT_EXTENSION}")
    }
}

/// `<data>/snapshots`.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join(SNAPSHOTS_DIR)
}

/// Where `stream`'s snapshot lives.
pub fn path_for(data_dir: &Path, stream: &str) -> PathBuf {
    dir(data_dir).join(file_name(stream))
}

/// Reads and checks one snapshot file. The length is checked before the file is read.
pub fn read_file(path: &Path) -> Result<Snapshot, SnapshotError> {
    use std::io::Read;
    let io = |source| SnapshotError::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len > MAX_FILE_BYTES as u64 {
        return Err(SnapshotError::Malformed(format!("file of {len} bytes, over the {MAX_FILE_BYTES} limit")));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // Read at most one byte more than the length we saw, in case the file grew meanwhile.
    file.take(len + 1).read_to_end(&mut bytes).map_err(io)?;
    decode(&bytes)
}

/// The snapshot of `stream`: `Ok(None)` when there is none, `Err` when there is a file that
/// cannot be used (the caller ignores it and replays).
pub fn read(data_dir: &Path, stream: &str) -> Result<Option<Snapshot>, SnapshotError> {
    let path = path_for(data_dir, stream);
    match read_file(&path) {
        Ok(snapshot) => Ok(Some(snapshot)),
        Err(SnapshotError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// Serializes snapshot writes in this process, so two writers of one stream never share the
/// temp file and an older snapshot never replaces a newer one.
static WRITE_LOCK: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// Writes `snapshot` atomically, unless a valid snapshot of the same stream and schema with
/// a version at least as high is already there. Returns whether it wrote.
pub fn write(fs: &dyn logbook::FileSystem, data_dir: &Path, snapshot: &Snapshot) -> Result<bool> {
    let bytes = encode(snapshot).map_err(|e| Error::InvalidInput(e.to_string()))?;
    let dir = dir(data_dir);
    let _guard = WRITE_LOCK.lock();
    if !dir.exists() {
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Io { context: format!("creating {}", dir.display()), source: e })?;
        fs.sync_dir(data_dir)
            .map_err(|e| Error::Io { context: format!("syncing {}", data_dir.display()), source: e })?;
    }
    if let Ok(Some(existing)) = read(data_dir, &snapshot.stream) {
        if existing.stream == snapshot.stream
            && existing.schema_version == snapshot.schema_version
            && existing.version >= snapshot.version
        {
            return Ok(false);
        }
    }
    logbook::write_atomically(fs, &dir.join(file_name(&snapshot.stream)), &bytes)?;
    Ok(true)
}

/// Deletes `stream`'s snapshot, if any (and syncs the directory).
pub fn remove(fs: &dyn logbook::FileSystem, data_dir: &Path, stream: &str) -> Result<()> {
    let path = path_for(data_dir, stream);
    let _guard = WRITE_LOCK.lock();
    match fs.remove_file(&path) {
        Ok(()) => fs
            .sync_dir(&dir(data_dir))
            .map_err(|e| Error::Io { context: format!("syncing {}", dir(data_dir).display()), source: e }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io { context: format!("removing {}", path.display()), source: e }),
    }
}

/// Every snapshot file under `<data>/snapshots/`, sorted by name (temp files left by a crash
/// are not listed).
pub fn list(data_dir: &Path) -> Result<Vec<PathBuf>> {
    let dir = dir(data_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::Io { context: format!("listing {}", dir.display()), source: e }),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::Io { context: format!("listing {}", dir.display()), source: e })?;
        let path = entry.path();
        if path.extension().is_some_and(|e| e == SNAPSHOT_EXTENSION) {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot { stream: "order-42".into(), version: 100, position: 4711, schema_version: 3, state: vec![1, 2, 3, 4] }
    }

    #[test]
    fn round_trips() {
        let bytes = encode(&sample()).unwrap();
        assert_eq!(bytes.len(), HEADER_BYTES + 8 + 4 + TRAILER_BYTES);
        assert_eq!(decode(&bytes).unwrap(), sample());
    }

    #[test]
    fn every_flipped_byte_and_every_cut_is_rejected() {
        let bytes = encode(&sample()).unwrap();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_err(), "flip at {i} accepted");
            assert!(decode(&bytes[..i]).is_err(), "cut at {i} accepted");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }

    #[test]
    fn zeroes_never_validate() {
        for len in [0, 10, HEADER_BYTES + TRAILER_BYTES, 200] {
            assert!(decode(&vec![0u8; len]).is_err());
        }
        // Even with a plausible header in front of zeroes.
        let mut bytes = encode(&sample()).unwrap();
        let n = bytes.len();
        bytes[HEADER_BYTES..n].fill(0);
        assert!(decode(&bytes).is_err());
    }

    #[test]
    fn huge_declared_lengths_are_rejected_before_allocation() {
        let mut bytes = encode(&sample()).unwrap();
        bytes[36..40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&bytes), Err(SnapshotError::Malformed(_))));
    }

    #[test]
    fn file_names_are_safe_and_distinct() {
        assert_eq!(file_name("ab"), "6162.snap");
        let long_a = "x".repeat(500);
        let long_b = format!("{}y", "x".repeat(499));
        assert_ne!(file_name(&long_a), file_name(&long_b));
        assert!(file_name(&long_a).len() < 64);
        assert!(file_name("../../etc/passwd").chars().all(|c| c.is_ascii_alphanumeric() || c == '.'));
        assert!(file_name(&"é".repeat(60)).len() < 255);
    }

    #[test]
    fn state_round_trips_through_bincode() {
        let state: (u64, String, Vec<u32>) = (7, "x".into(), vec![1, 2]);
        let bytes = encode_state(&state).unwrap();
        assert_eq!(decode_state::<(u64, String, Vec<u32>)>(&bytes).unwrap(), state);
        assert!(decode_state::<(u64, String, Vec<u32>)>(&bytes[..bytes.len() - 1]).is_err());
    }
}
