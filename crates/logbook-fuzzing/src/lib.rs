//! Fuzz target bodies, shared by the cargo-fuzz targets in `fuzz/fuzz_targets/` and by
//! `tests/fuzz_corpus.rs`, which replays the committed corpus on every `cargo test`, so both
//! check exactly the same properties.
//!
//! Every function takes arbitrary bytes. It must return normally on any input; it panics (with a
//! message naming the broken property) only when the code under test misbehaves. Not part of the
//! public API: hidden from the docs and free to change.
//!
//! Checksums stop a byte-level fuzzer at the first CRC, so the decoders of checksummed formats are
//! fed each input twice: as is, and "resealed" (every checksum recomputed over whatever bytes are
//! there), which lets the fuzzer reach the field checks behind the checksum.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use logbook::index::{IndexBytes, SegmentIndex, INDEX_HEADER_BYTES};
use logbook::record::{self, BODY_FIXED_BYTES, CRC_MASK, FRAME_HEADER_BYTES, MAX_BODY_BYTES};
use logbook::segment::{self, SegmentHeader, SEGMENT_HEADER_BYTES};
use logbook::{Direction, Error, ExpectedVersion, Filter, NewEvent, Options, RecordedEvent, Store};
use logbook_protocol::{self as protocol, Command, CommandLimits, Limits, ProtocolVersion, Value};

// ---------------------------------------------------------------------------
// frame_decode

/// `record::decode` on `data` as is and resealed. A frame that decodes re-encodes to exactly
/// the bytes it came from, and no strict prefix of it decodes.
pub fn frame_decode(data: &[u8]) {
    check_frame(data);
    let mut resealed = data.to_vec();
    if reseal_frame_at(&mut resealed, 0).is_some() {
        check_frame(&resealed);
    }
}

fn check_frame(bytes: &[u8]) {
    let Ok((frame, used)) = record::decode(bytes) else {
        return;
    };
    assert!(used >= FRAME_HEADER_BYTES + BODY_FIXED_BYTES && used <= bytes.len(), "decode used {used} bytes");
    assert_eq!(used, frame.encoded_len(), "used bytes disagree with the field lengths");
    assert_eq!(record::peek_body_len(bytes), Ok(used - FRAME_HEADER_BYTES), "peek_body_len disagrees with decode");
    assert_eq!(record::decode(&bytes[..used]), Ok((frame, used)), "trailing bytes changed the frame");
    for cut in [0, FRAME_HEADER_BYTES, used / 2, used - 1] {
        assert!(record::decode(&bytes[..cut.min(used - 1)]).is_err(), "a {cut}-byte prefix decoded");
    }
    // Decoded frames satisfy everything the encoder asserts, so they round-trip exactly.
    assert!(frame.position >= 1 && frame.version >= 1, "decoded a frame with position or version 0");
    let mut encoded = Vec::with_capacity(used);
    record::encode(&frame, &mut encoded);
    assert!(encoded == bytes[..used], "re-encoding a decoded frame changed its bytes");
}

/// Recomputes the checksum of the frame at `at` if its declared body fits; returns its end.
fn reseal_frame_at(bytes: &mut [u8], at: usize) -> Option<usize> {
    let header = bytes.get(at..at.checked_add(FRAME_HEADER_BYTES)?)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if !(BODY_FIXED_BYTES..=MAX_BODY_BYTES).contains(&len) {
        return None;
    }
    let body_start = at + FRAME_HEADER_BYTES;
    let end = body_start.checked_add(len).filter(|&end| end <= bytes.len())?;
    let crc = record::checksum(&bytes[body_start..end]);
    bytes[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
    Some(end)
}

/// Reseals every frame from `at` on, following declared lengths until one does not fit.
fn reseal_frames(bytes: &mut [u8], mut at: usize) {
    while let Some(end) = reseal_frame_at(bytes, at) {
        at = end;
    }
}

/// Recomputes a segment header's checksum, if there is a whole header.
fn reseal_segment_header(bytes: &mut [u8]) {
    if bytes.len() >= SEGMENT_HEADER_BYTES {
        let crc = crc32fast::hash(&bytes[0..60]) ^ CRC_MASK;
        bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    }
}

// ---------------------------------------------------------------------------
// segment_recovery

/// Fixed options for recovery fuzzing: small segments so rollover paths are cheap to reach.
fn fuzz_options() -> Options {
    Options { segment_bytes: 4096, ..Options::default() }
}

/// `Store::open` on a data directory built from `data`. The first byte picks the layout
/// (bits 1-2) and whether frame and header checksums are resealed (bit 0):
///
/// - layout 0: a valid header (base 1) followed by the rest as the only (active) segment;
/// - layout 1: the rest is the whole file, header included, named for base 1;
/// - layout 2: the rest is the whole file, named for the base position its header bytes claim;
/// - layout 3: a valid header (base 1) plus the rest as a sealed segment without an index file
///   (so open rebuilds it), followed by an empty active segment where it ends.
///
/// Open either fails with `Corruption` or `Io`, or yields a store whose events are contiguous
/// from the first base, whose streams count 1..n, that accepts an append at head + 1, and that
/// reopens to the same events.
pub fn segment_recovery(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let reseal = mode & 1 == 1;
    let dir = FuzzDir::new("segment-recovery");
    let segments_dir = dir.path().join(logbook::SEGMENTS_DIR);
    std::fs::create_dir_all(&segments_dir).expect("creating the fuzz segments directory");
    let write = |base: u64, bytes: &[u8]| {
        std::fs::write(segments_dir.join(segment::file_name(base)), bytes).expect("writing a fuzz segment");
    };
    let first_base = match (mode >> 1) & 3 {
        0 | 3 => {
            let mut file = segment::encode_header(&SegmentHeader::new(1, 0)).to_vec();
            file.extend_from_slice(rest);
            if reseal {
                reseal_frames(&mut file, SEGMENT_HEADER_BYTES);
            }
            check_segment_scan(&file);
            write(1, &file);
            if (mode >> 1) & 3 == 3 {
                let outcome = segment::scan(&file, 1, |_, _| {});
                let next = outcome.last_position.max(1) + 1;
                write(next, &segment::encode_header(&SegmentHeader::new(next, 0)));
            }
            1
        }
        layout => {
            let mut file = rest.to_vec();
            if reseal {
                reseal_segment_header(&mut file);
                reseal_frames(&mut file, SEGMENT_HEADER_BYTES);
            }
            check_segment_scan(&file);
            let claimed =
                file.get(16..24).map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]));
            let base = if layout == 2 { claimed.unwrap_or(1) } else { 1 };
            write(base, &file);
            base
        }
    };
    check_store(dir.path(), first_base);
}

/// Direct checks of `decode_header`, `scan` and `find_valid_frame_after` on one segment file.
fn check_segment_scan(file: &[u8]) {
    let Ok(header) = segment::decode_header(file) else {
        return;
    };
    assert!(header.base_position >= 1, "decode_header accepted base position 0");
    let base = header.base_position;
    let mut reported: Vec<(u64, u64)> = Vec::new();
    let outcome = segment::scan(file, base, |frame, offset| reported.push((frame.position, offset)));
    assert!(outcome.valid_len as usize <= file.len().max(SEGMENT_HEADER_BYTES), "valid_len past the end");
    assert_eq!(outcome.frames, reported.len() as u64, "scan counted frames it did not report");
    let mut end = SEGMENT_HEADER_BYTES as u64;
    for (i, &(position, offset)) in reported.iter().enumerate() {
        assert_eq!(Some(position), base.checked_add(i as u64), "scan reported positions out of order");
        assert_eq!(offset, end, "scan skipped bytes between frames");
        let (frame, used) =
            record::decode(&file[offset as usize..]).expect("scan reported a frame that fails to decode");
        assert_eq!(frame.position, position);
        end += used as u64;
    }
    assert_eq!(end, outcome.valid_len, "valid_len is not the end of the last reported frame");
    assert_eq!(outcome.last_position, base - 1 + outcome.frames, "last_position disagrees with the frame count");
    if let Some(stop) = &outcome.stop {
        assert!(stop.offset >= outcome.valid_len, "scan stopped before its valid end");
        if let Some(at) = segment::find_valid_frame_after(file, stop.offset, outcome.last_position) {
            assert!(at > stop.offset && record::decode(&file[at as usize..]).is_ok(), "bad find_valid_frame_after");
        }
    }
}

/// One event as compared across reopen.
fn event_key(event: &RecordedEvent) -> (u64, String, u64, [u8; 16], Vec<u8>) {
    (event.position(), event.stream().to_string(), event.version(), *event.id().as_bytes(), event.data().to_vec())
}

fn check_store(dir: &Path, first_base: u64) {
    let store = match Store::open(dir, fuzz_options()) {
        Ok(store) => store,
        Err(Error::Corruption { .. } | Error::Io { .. }) => return,
        Err(other) => panic!("open failed with neither Corruption nor Io: {other:?}"),
    };
    let head = store.head_position();
    let events = store.read_all(first_base, usize::MAX, &Filter::all()).expect("read_all after a successful open");
    assert!(head.checked_add(1).is_some_and(|next| next >= first_base), "head {head} below base {first_base}");
    assert_eq!(events.len() as u64, head + 1 - first_base, "read_all misses events below the head");
    let mut versions: HashMap<&str, u64> = HashMap::new();
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.position(), first_base + i as u64, "positions are not contiguous from the base");
        let version = versions.entry(event.stream()).or_insert(0);
        *version += 1;
        assert_eq!(event.version(), *version, "stream '{}' does not count 1..n", event.stream());
    }
    for (stream, &version) in &versions {
        assert_eq!(store.stream_version(stream), version, "stream_version of '{stream}'");
        let read = store.read_stream(stream, 1, usize::MAX, Direction::Forward).expect("read_stream after open");
        let from_all: Vec<_> = events.iter().filter(|e| e.stream() == *stream).map(event_key).collect();
        assert_eq!(read.iter().map(event_key).collect::<Vec<_>>(), from_all, "read_stream disagrees with $all");
    }

    let stream = "fuzz-check";
    let before = store.stream_version(stream);
    let placed = store
        .append(stream, ExpectedVersion::Exact(before), vec![NewEvent::new("CHECKED", b"after recovery".to_vec())])
        .expect("append after a successful open");
    assert_eq!((placed.first_position, placed.first_version), (head + 1, before + 1), "append after recovery");
    let appended = store.read_all(head + 1, 10, &Filter::all()).expect("reading the appended event");
    assert_eq!(appended.len(), 1, "the appended event is not readable");
    let mut expected: Vec<_> = events.iter().map(event_key).collect();
    expected.push(event_key(&appended[0]));
    drop((events, appended));
    store.close().expect("closing the store");

    let store = Store::open(dir, fuzz_options()).expect("reopening a store that opened and appended");
    assert_eq!(store.head_position(), head + 1, "reopen moved the head");
    let again = store.read_all(first_base, usize::MAX, &Filter::all()).expect("read_all after reopen");
    assert_eq!(again.iter().map(event_key).collect::<Vec<_>>(), expected, "reopen changed the events");
    drop(again);
    store.close().expect("closing the reopened store");
}

/// A scratch directory under `std::env::temp_dir()`, unique per process and call, removed on drop.
pub struct FuzzDir {
    path: PathBuf,
}

impl FuzzDir {
    pub fn new(tag: &str) -> FuzzDir {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("logbook-fuzz-{tag}-{}-{n}", std::process::id()));
        // Left over by an earlier process with the same pid that crashed: start clean.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("creating a fuzz scratch directory");
        FuzzDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for FuzzDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------
// index_decode

/// `SegmentIndex::from_bytes` on `data` as is and with both checksums resealed; a validated
/// index answers every query without panicking.
pub fn index_decode(data: &[u8]) {
    check_index(data, data.to_vec());
    if data.len() >= INDEX_HEADER_BYTES {
        let mut resealed = data.to_vec();
        let body_crc = crc32fast::hash(&resealed[INDEX_HEADER_BYTES..]) ^ CRC_MASK;
        resealed[72..76].copy_from_slice(&body_crc.to_le_bytes());
        let header_crc = crc32fast::hash(&resealed[0..76]) ^ CRC_MASK;
        resealed[76..80].copy_from_slice(&header_crc.to_le_bytes());
        check_index(data, resealed);
    }
}

fn check_index(data: &[u8], bytes: Vec<u8>) {
    let Ok(index) = SegmentIndex::from_bytes(IndexBytes::Owned(bytes)) else {
        return;
    };
    let (base, events) = (index.base_position, index.event_count() as u64);
    let streams: Vec<(String, u64, u64)> =
        index.streams().map(|s| (s.name.to_string(), s.first_version, s.last_version)).collect();
    assert_eq!(streams.len(), index.stream_count(), "streams() and stream_count() disagree");
    let _ = index.last_position();
    let mut out = Vec::new();
    for (name, first, last) in &streams {
        assert!(1 <= *first && first <= last, "validated index has a stream with versions {first}..={last}");
        index.positions_for(name, 1, u64::MAX, &mut out);
        index.positions_for(name, *first, *last, &mut out);
        index.positions_for(name, *last, *first, &mut out);
    }
    for name in ["", "fuzz", "\u{0}"] {
        index.positions_for(name, 0, u64::MAX, &mut out);
    }
    if index.is_sparse() {
        // Walk the stored positions: each is found again by offset_of, and they increase.
        let mut next = Some(base);
        for _ in 0..64 {
            let Some(from) = next else { break };
            let Some((position, offset)) = index.first_at_or_after(from) else { break };
            assert!(position >= from, "first_at_or_after({from}) went back to {position}");
            assert_eq!(index.offset_of(position), Some(offset), "sparse position {position} not found again");
            next = position.checked_add(1);
        }
        let last = index.last_position();
        assert!(last.checked_add(1).is_none_or(|after| index.first_at_or_after(after).is_none()));
    } else {
        check_dense_offsets(&index, base, events);
    }
    let mut hits = Vec::new();
    index.positions_with_id(&[0; 16], &mut hits);
    index.positions_with_id(&[0xff; 16], &mut hits);
    for chunk in data.chunks(16).take(16) {
        let mut id = [0u8; 16];
        id[..chunk.len()].copy_from_slice(chunk);
        index.positions_with_id(&id, &mut hits);
    }
}

fn check_dense_offsets(index: &SegmentIndex, base: u64, events: u64) {
    for i in (0..events).take(64) {
        if let Some(position) = base.checked_add(i) {
            assert!(index.offset_of(position).is_some(), "position {position} of a {events}-event index has no offset");
        }
    }
    for position in [0, 1, base.wrapping_sub(1), base.wrapping_add(events), u64::MAX] {
        let inside = position.checked_sub(base).is_some_and(|i| i < events);
        assert_eq!(
            index.offset_of(position).is_some(),
            inside,
            "offset_of({position}) with base {base}, {events} events"
        );
    }
}

// ---------------------------------------------------------------------------
// compressed_decode

/// `compressed::decode_file` (what recovery, verify and compaction read) and
/// `decode_table` + `decode_block` (what a `SegmentReader` reads) on `data` as is and with every
/// checksum resealed: they agree, never panic, report damage inside the file, and a file that
/// decodes has exactly its logical length, starting with its own header.
pub fn compressed_decode(data: &[u8]) {
    check_compressed(data);
    let mut resealed = data.to_vec();
    reseal_compressed(&mut resealed);
    check_compressed(&resealed);
}

fn reseal_compressed(bytes: &mut [u8]) {
    use logbook::compressed::{BLOCKS_AT, BLOCK_HEADER_OFFSET, TABLE_CRC_AT, TABLE_ENTRY_BYTES, TABLE_OFFSET};
    if bytes.len() < TABLE_OFFSET {
        return;
    }
    let n = u32::from_le_bytes(bytes[BLOCKS_AT..BLOCKS_AT + 4].try_into().unwrap()) as usize;
    let Some(table_end) = n.checked_mul(TABLE_ENTRY_BYTES).map(|t| TABLE_OFFSET + t).filter(|e| *e <= bytes.len())
    else {
        return;
    };
    let mut at = table_end;
    for i in 0..n {
        let entry = TABLE_OFFSET + i * TABLE_ENTRY_BYTES;
        let len = u32::from_le_bytes(bytes[entry..entry + 4].try_into().unwrap()) as usize;
        let Some(end) = at.checked_add(len).filter(|e| *e <= bytes.len()) else { break };
        let crc = crc32fast::hash(&bytes[at..end]) ^ CRC_MASK;
        bytes[entry + 4..entry + 8].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&bytes[BLOCK_HEADER_OFFSET..TABLE_CRC_AT]);
    hasher.update(&bytes[TABLE_OFFSET..table_end]);
    let crc = hasher.finalize() ^ CRC_MASK;
    bytes[TABLE_CRC_AT..TABLE_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
}

fn check_compressed(bytes: &[u8]) {
    use logbook::compressed;
    let whole = compressed::decode_file(bytes);
    if let Err(c) = &whole {
        assert!(c.offset <= bytes.len() as u64, "damage reported at {} in a {}-byte file", c.offset, bytes.len());
    }
    let Ok(table) = compressed::decode_table(bytes, bytes.len() as u64) else {
        assert!(whole.is_err(), "decode_file accepted a file whose table does not decode");
        return;
    };
    let mut logical = Vec::new();
    let mut block = Vec::new();
    for (i, b) in table.blocks.iter().enumerate() {
        let raw = &bytes[b.offset as usize..(b.offset + u64::from(b.len)) as usize];
        if compressed::decode_block(&table, i, raw, &mut block).is_err() {
            assert!(whole.is_err(), "decode_file accepted a file with a bad block {i}");
            return;
        }
        let range = table.logical_range(i);
        assert_eq!(block.len() as u64, range.end - range.start, "block {i} has the wrong length");
        logical.extend_from_slice(&block);
    }
    match whole {
        Ok(decoded) => {
            assert_eq!(decoded.len() as u64, table.logical_len);
            assert_eq!(decoded, logical, "decode_file and the blocks one by one disagree");
            assert_eq!(decoded[..SEGMENT_HEADER_BYTES], bytes[..SEGMENT_HEADER_BYTES]);
        }
        // Every block decodes: only the logical header may differ from the file's.
        Err(_) => assert!(
            logical.len() < SEGMENT_HEADER_BYTES || logical[..SEGMENT_HEADER_BYTES] != bytes[..SEGMENT_HEADER_BYTES]
        ),
    }
}

// ---------------------------------------------------------------------------
// resp_parse

/// `protocol::parse` with default limits over a pipeline: every frame consumes 1..=len bytes, a
/// strict prefix of it is incomplete, and re-encoding it parses back to the same value.
pub fn resp_parse(data: &[u8]) {
    let limits = Limits::default();
    for_each_frame(data, &limits, |frame, value| check_resp_value(frame, &value, &limits));
}

/// Parses frames from the front of `data` until one is incomplete or malformed, checking how
/// much each consumed, and hands each frame's bytes and value to `on_frame`.
fn for_each_frame(data: &[u8], limits: &Limits, mut on_frame: impl FnMut(&[u8], Value)) {
    let mut rest = data;
    loop {
        match protocol::parse(rest, limits) {
            Ok(Some((value, used))) => {
                assert!(used > 0 && used <= rest.len(), "parse consumed {used} of {} bytes", rest.len());
                on_frame(&rest[..used], value);
                rest = &rest[used..];
            }
            Ok(None) | Err(_) => return,
        }
    }
}

fn check_resp_value(frame: &[u8], value: &Value, limits: &Limits) {
    for cut in [0, frame.len() / 2, frame.len() - 1] {
        // A strict prefix of a whole frame is merely incomplete.
        match protocol::parse(&frame[..cut], limits) {
            Ok(None) => {}
            other => panic!("a {cut}-byte prefix of a {}-byte frame parsed as {other:?}", frame.len()),
        }
    }
    let mut resp3 = Vec::new();
    protocol::encode(value, ProtocolVersion::Resp3, &mut resp3);
    if reencodes_exactly(value, limits) {
        match protocol::parse(&resp3, limits) {
            Ok(Some((again, used))) => {
                assert_eq!(used, resp3.len(), "re-encoded frame not consumed whole");
                assert!(same_value(value, &again), "RESP3 round trip changed {value:?} into {again:?}");
            }
            other => panic!("re-encoded {value:?} as {:?}, which parses as {other:?}", String::from_utf8_lossy(&resp3)),
        }
        let mut resp2 = Vec::new();
        protocol::encode(value, ProtocolVersion::Resp2, &mut resp2);
        assert!(
            matches!(protocol::parse(&resp2, limits), Ok(Some((_, used))) if used == resp2.len()),
            "RESP2 encoding of {value:?} does not parse back whole"
        );
    }
}

/// Whether encoding `value` must give bytes that parse back to it. Error text is written as a
/// single line (CR/LF become spaces), so a blob error holding them, or one longer than a simple
/// line may be, changes; a RESP2 map becomes an array of twice as many items.
fn reencodes_exactly(value: &Value, limits: &Limits) -> bool {
    match value {
        Value::Error(text) => text.len() <= limits.max_inline_bytes && !text.contains(['\r', '\n']),
        Value::Array(items) | Value::Set(items) | Value::Push(items) => {
            items.iter().all(|item| reencodes_exactly(item, limits))
        }
        Value::Map(pairs) => {
            pairs.len().saturating_mul(2) <= limits.max_array_len
                && pairs.iter().all(|(k, v)| reencodes_exactly(k, limits) && reencodes_exactly(v, limits))
        }
        _ => true,
    }
}

/// `==`, except that NaN equals NaN.
fn same_value(a: &Value, b: &Value) -> bool {
    let all_same = |x: &[Value], y: &[Value]| x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_value(x, y));
    match (a, b) {
        (Value::Double(x), Value::Double(y)) => x == y || (x.is_nan() && y.is_nan()),
        (Value::Array(x), Value::Array(y)) | (Value::Set(x), Value::Set(y)) | (Value::Push(x), Value::Push(y)) => {
            all_same(x, y)
        }
        (Value::Map(x), Value::Map(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((k1, v1), (k2, v2))| same_value(k1, k2) && same_value(v1, v2))
        }
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------
// command_parse

/// RESP frames of `data` through `args_from_value` and `Command::parse`; also `data` split on
/// NUL bytes as one argument list, so the fuzzer reaches the grammar without RESP framing.
/// A parsed command keeps the grammar's promises (names, limits, no `Exact(0)`).
pub fn command_parse(data: &[u8]) {
    let limits = CommandLimits::default();
    for_each_frame(data, &Limits::default(), |_, value| {
        if let Ok(args) = protocol::args_from_value(value) {
            if !args.is_empty() {
                check_command(args, &limits);
            }
        }
    });
    check_command(data.split(|&b| b == 0).map(<[u8]>::to_vec).collect(), &limits);
}

fn check_command(args: Vec<Vec<u8>>, limits: &CommandLimits) {
    let name = args.first().cloned().unwrap_or_default();
    let command = match Command::parse(args, limits) {
        Ok(command) => command,
        Err(err) => {
            let mut reply = Vec::new();
            protocol::encode(&err.to_value(), ProtocolVersion::Resp3, &mut reply);
            assert!(
                matches!(protocol::parse(&reply, &Limits::default()), Ok(Some((_, used))) if used == reply.len()),
                "error reply {err:?} is not one well-formed frame"
            );
            return;
        }
    };
    assert!(command.name().as_bytes().eq_ignore_ascii_case(&name), "{} parsed from {name:?}", command.name());
    let valid_name =
        |s: &str| !s.is_empty() && s.len() <= protocol::MAX_STREAM_NAME_BYTES && !s.contains(char::is_control);
    let valid_type = |s: &str| !s.is_empty() && s.len() <= protocol::MAX_EVENT_TYPE_BYTES;
    let valid_expected = |e: &ExpectedVersion| *e != ExpectedVersion::Exact(0);
    let valid_count = |n: u64| (1..=limits.max_count).contains(&n);
    // Group and consumer names: what the engine's `validate_group_name` takes with room for a
    // tenant's prefix.
    let valid_group = |s: &str| {
        !s.is_empty()
            && s.len() <= protocol::MAX_CLIENT_GROUP_NAME_BYTES
            && !s.contains(|c: char| c.is_control() || c.is_whitespace())
            && logbook::validate_group_name(s).is_ok()
    };
    match &command {
        Command::Append { stream, event, expected } => {
            assert!(valid_name(stream) && valid_type(&event.event_type), "APPEND accepted {command:?}");
            assert!(valid_expected(expected), "APPEND yielded Exact(0), documented never to happen");
        }
        Command::AppendMany { stream, events, expected } => {
            assert!(valid_name(stream), "APPENDMANY accepted stream {stream:?}");
            assert!(!events.is_empty() && events.len() <= limits.max_events_per_append, "APPENDMANY event count");
            assert!(events.iter().all(|e| valid_type(&e.event_type)), "APPENDMANY accepted an event type");
            assert!(valid_expected(expected), "APPENDMANY yielded Exact(0), documented never to happen");
        }
        Command::AppendBatch { parts } => {
            assert!(!parts.is_empty(), "APPENDBATCH accepted no parts");
            let events: usize = parts.iter().map(|p| p.events.len()).sum();
            assert!(events <= limits.max_events_per_append, "APPENDBATCH event count {events}");
            for part in parts {
                assert!(valid_name(&part.stream), "APPENDBATCH accepted stream {:?}", part.stream);
                assert!(!part.events.is_empty(), "APPENDBATCH accepted a part without events");
                assert!(part.events.iter().all(|e| valid_type(&e.event_type)), "APPENDBATCH accepted an event type");
                assert!(valid_expected(&part.expected), "APPENDBATCH yielded Exact(0)");
            }
        }
        Command::Read { stream, count, .. } => assert!(valid_name(stream) && valid_count(*count), "{command:?}"),
        Command::ReadAll { count, prefix, types, .. } => {
            assert!(valid_count(*count) && prefix.as_deref().is_none_or(valid_name), "{command:?}");
            assert!(types.iter().all(|t| valid_type(t)), "{command:?}");
        }
        Command::Version { stream } => assert!(valid_name(stream), "{command:?}"),
        Command::Streams { prefix, after, count } => {
            assert!(valid_count(*count), "{command:?}");
            assert!(prefix.as_deref().is_none_or(valid_name) && after.as_deref().is_none_or(valid_name), "{command:?}");
        }
        Command::Delete { stream, expected } => {
            assert!(valid_name(stream) && valid_expected(expected), "{command:?}");
        }
        Command::Backup { name } => {
            // One plain path component: what keeps BACKUP inside backup_dir.
            let plain = !name.is_empty()
                && name.len() <= protocol::MAX_BACKUP_NAME_BYTES
                && !name.starts_with('.')
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            assert!(plain, "BACKUP accepted name {name:?}");
        }
        Command::GroupCreate { group, from, prefix, types, ack_wait_ms } => {
            assert!(valid_group(group) && from.is_none_or(|p| p >= 1), "{command:?}");
            assert!(prefix.as_deref().is_none_or(valid_name), "{command:?}");
            assert!(
                types.len() <= logbook::MAX_GROUP_EVENT_TYPES && types.iter().all(|t| valid_type(t)),
                "{command:?}"
            );
            assert!(ack_wait_ms.is_none_or(|ms| (1..=protocol::MAX_ACK_WAIT_MS).contains(&ms)), "{command:?}");
        }
        Command::GroupRead { group, consumer, count, .. } => {
            assert!(valid_group(group) && valid_group(consumer) && valid_count(*count), "{command:?}");
        }
        Command::GroupAck { group, positions } => {
            assert!(valid_group(group), "{command:?}");
            assert!((1..=limits.max_ack_positions).contains(&positions.len()), "GROUP ACK count {}", positions.len());
            assert!(positions.iter().all(|p| *p >= 1), "{command:?}");
        }
        Command::GroupInfo { group } | Command::GroupDelete { group } => assert!(valid_group(group), "{command:?}"),
        Command::Auth(credentials) | Command::Hello { auth: Some(credentials), .. } => {
            assert!(valid_name(&credentials.tenant), "{command:?}");
        }
        Command::Ping { .. }
        | Command::Hello { .. }
        | Command::Quit
        | Command::Head
        | Command::Compact
        | Command::Info { .. }
        | Command::CommandInfo { .. } => {}
    }
}

/// Fuzz target `snapshot_decode`: `snapshot::decode` on arbitrary bytes, and again with the
/// trailing checksum recomputed so the fuzzer gets past it. A decoded snapshot re-encodes to
/// the same bytes, and its state bytes fed to the order aggregate's state decoder never panic
/// (a snapshot that does not decode is ignored and the order replayed in full).
pub fn snapshot_decode(data: &[u8]) {
    check_snapshot(data);
    if data.len() >= 4 {
        let mut resealed = data.to_vec();
        let body_end = resealed.len() - 4;
        let crc = crc32fast::hash(&resealed[..body_end]) ^ logbook_es::snapshot::SNAPSHOT_CRC_MASK;
        resealed[body_end..].copy_from_slice(&crc.to_le_bytes());
        check_snapshot(&resealed);
    }
}

fn check_snapshot(bytes: &[u8]) {
    let Ok(snapshot) = logbook_es::snapshot::decode(bytes) else {
        return;
    };
    assert!(snapshot.version >= 1 && snapshot.position >= 1, "decoded a snapshot at version or position 0");
    // Every decoded snapshot is one `encode` accepts and writes back byte for byte.
    let encoded = logbook_es::snapshot::encode(&snapshot).expect("a decoded snapshot re-encodes");
    assert!(encoded == bytes, "re-encoding a decoded snapshot changed its bytes");
    let _ = logbook_es::snapshot::decode_state::<logbook_order::Order>(&snapshot.state);
}

// ---------------------------------------------------------------------------
// order_request

/// Fuzz target `order_request`: the arguments of the daemon's `ORDER` command
/// (`logbook_order::request::parse_request`), split at NUL bytes (`o-1\0SHIP\0{"tracking":"x"}`),
/// for an open daemon and for a tenant. On any input: no panic; an error's text is short (it
/// quotes at most a bounded part of the input); an accepted request has a valid order id, its
/// command's event round-trips through the stored JSON, the aggregate's `handle` on a new order
/// returns (accepts or refuses) without panicking, and a tenant's cart is its own retailer's.
pub fn order_request(data: &[u8]) {
    let args: Vec<Vec<u8>> = data.split(|&b| b == 0).map(<[u8]>::to_vec).collect();
    for tenant in [None, Some("acme")] {
        check_order_request(&args, tenant);
    }
}

fn check_order_request(args: &[Vec<u8>], tenant: Option<&str>) {
    use logbook_es::aggregate::Aggregate;
    use logbook_order::request::{parse_request, OrderAction, MAX_ORDER_ID_BYTES, MAX_ORDER_JSON_BYTES};
    use logbook_order::{Order, OrderCommand, OrderEvent};

    let request = match parse_request(args, tenant) {
        Ok(request) => request,
        Err(err) => {
            let text = err.to_string();
            assert!(text.len() <= 2048, "an ORDER error is {} bytes: {text:.200}", text.len());
            return;
        }
    };
    let id = &request.order_id;
    assert!(
        !id.is_empty() && id.len() <= MAX_ORDER_ID_BYTES && !id.contains(char::is_control),
        "ORDER accepted order id {id:?}"
    );
    assert!(args.len() <= 3 && args.get(2).is_none_or(|j| j.len() <= MAX_ORDER_JSON_BYTES), "ORDER arity or JSON size");
    let OrderAction::Run { name, command, .. } = request.action else {
        assert!(args.len() == 2, "STATE with arguments accepted");
        return;
    };
    assert!(args[1].eq_ignore_ascii_case(name.as_bytes()), "{name} parsed from {:?}", args[1]);
    if let (Some(tenant), OrderCommand::CreateCart { retailer_id, .. }) = (tenant, &command) {
        assert!(retailer_id == tenant, "a tenant's cart went to retailer {retailer_id:?}");
    }
    let event = command.to_event();
    let data = event.to_json().expect("an order event serializes");
    assert!(
        OrderEvent::from_json(event.event_type(), &data).as_ref() == Ok(&event),
        "{name}: the event's JSON does not round-trip"
    );
    let _ = Order::initial().handle(&command);
}
