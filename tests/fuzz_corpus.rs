//! The fuzz corpora as ordinary tests (reliability.md, test 12): every file in
//! `fuzz/corpus/<target>/` (and `fuzz/artifacts/<target>/`, where cargo-fuzz leaves crashes) is
//! fed to the same `logbook_fuzzing::<target>` function the cargo-fuzz target calls, so CI
//! replays every seed and every minimised crash without a nightly toolchain.
//!
//! `cargo test --test fuzz_corpus -- --ignored generate_seed_corpus` rewrites the generated seeds
//! (hand-written seeds and crash inputs in the same directories are left alone).

use std::collections::HashMap;
use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use logbook::index::{IndexBuilder, IndexedEvent};
use logbook::record::{self, FrameRef};
use logbook::segment::{self, SegmentHeader};
use logbook_fuzzing as fuzzing;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Files of one corpus directory, sorted by name.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> =
        entries.map(|e| e.expect("listing a corpus directory").path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

/// Feeds every corpus (and artifact) file of `target` to `check`; fails naming each file that
/// panics, and fails when the corpus is missing or empty.
fn replay(target: &str, check: fn(&[u8])) {
    let corpus = files_in(&fuzz_dir().join("corpus").join(target));
    assert!(!corpus.is_empty(), "fuzz/corpus/{target}/ is missing or empty");
    let artifacts = files_in(&fuzz_dir().join("artifacts").join(target));
    let mut failed = Vec::new();
    for file in corpus.iter().chain(&artifacts) {
        let bytes = fs::read(file).expect("reading a corpus file");
        if panic::catch_unwind(AssertUnwindSafe(|| check(&bytes))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(failed.is_empty(), "{target}: {} input(s) broke a property: {failed:#?}", failed.len());
}

#[test]
fn frame_decode_corpus() {
    replay("frame_decode", fuzzing::frame_decode);
}

#[test]
fn segment_recovery_corpus() {
    replay("segment_recovery", fuzzing::segment_recovery);
}

#[test]
fn index_decode_corpus() {
    replay("index_decode", fuzzing::index_decode);
}

#[test]
fn compressed_decode_corpus() {
    replay("compressed_decode", fuzzing::compressed_decode);
}

#[test]
fn resp_parse_corpus() {
    replay("resp_parse", fuzzing::resp_parse);
}

#[test]
fn command_parse_corpus() {
    replay("command_parse", fuzzing::command_parse);
}

#[test]
fn snapshot_decode_corpus() {
    replay("snapshot_decode", fuzzing::snapshot_decode);
}

/// Its seeds (`fuzz/corpus/order_request/seed_*`: one per ORDER command, and a few errors) are
/// written by hand, not by `generate_seed_corpus`.
#[test]
fn order_request_corpus() {
    replay("order_request", fuzzing::order_request);
}

/// A poor man's fuzzing run on every `cargo test`: each ORDER seed cut at every byte, and
/// with every byte replaced by a few that matter to JSON and to the argument split.
#[test]
fn order_request_seed_mutations() {
    for file in files_in(&fuzz_dir().join("corpus").join("order_request")) {
        let seed = fs::read(&file).unwrap();
        for cut in 0..=seed.len() {
            fuzzing::order_request(&seed[..cut]);
        }
        for at in 0..seed.len() {
            for byte in [0u8, b'"', b'}', b'{', b'1', b'-', b'\n', 0xff] {
                let mut mutated = seed.clone();
                mutated[at] = byte;
                fuzzing::order_request(&mutated);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Seed generation.

struct Ev<'a> {
    stream: &'a str,
    event_type: &'a str,
    data: &'a [u8],
}

const EVENTS: [Ev<'static>; 6] = [
    Ev { stream: "order-1", event_type: "CART_CREATED", data: br#"{"customer":"c-1"}"# },
    Ev { stream: "order-1", event_type: "ITEM_ADDED", data: br#"{"sku":"p-9","qty":2}"# },
    Ev { stream: "order-2", event_type: "CART_CREATED", data: b"{}" },
    Ev { stream: "order-1", event_type: "CHECKED_OUT", data: b"" },
    Ev { stream: "user-7", event_type: "SIGNED_UP", data: b"\x00\xff binary" },
    Ev { stream: "order-2", event_type: "ITEM_ADDED", data: br#"{"sku":"p-1"}"# },
];

/// Frames for `batches` (sizes) of EVENTS from position `base`, with versions per stream.
/// Returns the bytes and the offset (relative to the first frame) where each batch starts.
fn frames(base: u64, batches: &[usize]) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::new();
    let mut starts = Vec::new();
    let mut versions: HashMap<&str, u64> = HashMap::new();
    let mut i = 0;
    for &size in batches {
        starts.push(out.len());
        for k in 0..size {
            let ev = &EVENTS[i % EVENTS.len()];
            let version = versions.entry(ev.stream).or_insert(0);
            *version += 1;
            let frame = FrameRef {
                position: base + i as u64,
                version: *version,
                timestamp_us: 1_700_000_000_000_000 + i as i64,
                id: [i as u8 + 1; 16],
                batch_remaining: (size - 1 - k) as u32,
                after_sync: k == 0,
                stream: ev.stream,
                event_type: ev.event_type,
                metadata: if i % 2 == 0 { b"" } else { br#"{"actor":"fuzz"}"# },
                data: ev.data,
            };
            record::encode(&frame, &mut out);
            i += 1;
        }
    }
    (out, starts)
}

fn header(base: u64) -> Vec<u8> {
    segment::encode_header(&SegmentHeader::new(base, 1_700_000_000_000_000)).to_vec()
}

fn with_mode(mode: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![mode];
    out.extend_from_slice(bytes);
    out
}

fn frame_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let (one, _) = frames(1, &[1]);
    let (batch, _) = frames(1, &[3]);
    let first_of_batch = batch[..record::decode(&batch).unwrap().1].to_vec();
    let mut trailing = one.clone();
    trailing.extend_from_slice(b"trailing bytes after the frame");
    let mut position_zero = one.clone();
    position_zero[8..16].copy_from_slice(&0u64.to_le_bytes());
    let crc = record::checksum(&position_zero[8..]);
    position_zero[4..8].copy_from_slice(&crc.to_le_bytes());
    let mut unicode = Vec::new();
    record::encode(
        &FrameRef {
            position: u64::MAX,
            version: u64::MAX,
            timestamp_us: -1,
            id: [0xab; 16],
            batch_remaining: record::SYNC_MARK - 1,
            after_sync: true,
            stream: "commande-é-日本",
            event_type: "ÉVÉNEMENT",
            metadata: b"\x00",
            data: b"\xff\xfe",
        },
        &mut unicode,
    );
    let mut bad_crc = one.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0x01;
    vec![
        ("one_frame.bin", one.clone()),
        ("first_frame_of_batch.bin", first_of_batch),
        ("frame_with_trailing_bytes.bin", trailing),
        ("position_zero_resealed.bin", position_zero),
        ("unicode_and_extremes.bin", unicode),
        ("torn_frame.bin", one[..one.len() - 5].to_vec()),
        ("stale_checksum.bin", bad_crc),
        ("zeroes.bin", vec![0u8; 72]),
        ("huge_length.bin", [u32::MAX.to_le_bytes(), [0; 4]].concat()),
    ]
}

fn segment_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let (two, _) = frames(1, &[1, 3]);
    let (three, starts3) = frames(1, &[1, 3, 2]);
    let torn = three[..starts3[2] + 30].to_vec();
    let mut zero_tail = two.clone();
    zero_tail.extend_from_slice(&[0u8; 200]);
    let mut garbage_tail = two.clone();
    garbage_tail.extend_from_slice(b"\x13\x37garbage that is not a frame at all");
    let mut damaged_middle = three.clone();
    damaged_middle[starts3[1] + 20] ^= 0xff;
    let mut stale = two.clone();
    let last = stale.len() - 1;
    stale[last] ^= 0x20; // reseal mode (bit 0) fixes the checksum
    let (misdirected, _) = frames(3, &[1]);
    let mut misdirected_tail = two.clone();
    misdirected_tail.extend_from_slice(&misdirected);
    let mut whole_file = header(1);
    whole_file.extend_from_slice(&two);
    let mut bad_header = whole_file.clone();
    bad_header[3] = b'X';
    let (from_five, _) = frames(5, &[2, 1]);
    let mut based_five = header(5);
    based_five.extend_from_slice(&from_five);
    vec![
        ("tail_two_batches.bin", with_mode(0, &two)),
        ("tail_torn_third_batch.bin", with_mode(0, &torn)),
        ("tail_zero_filled.bin", with_mode(0, &zero_tail)),
        ("tail_garbage.bin", with_mode(0, &garbage_tail)),
        ("tail_damage_before_valid_frames.bin", with_mode(0, &damaged_middle)),
        ("tail_misdirected_frame.bin", with_mode(0, &misdirected_tail)),
        ("tail_stale_checksum_resealed.bin", with_mode(1, &stale)),
        ("header_whole_file.bin", with_mode(2, &whole_file)),
        ("header_bad_magic.bin", with_mode(2, &bad_header)),
        ("header_never_written.bin", with_mode(2, &[0u8; 128])),
        ("named_base_five.bin", with_mode(4, &based_five)),
        ("sealed_two_batches.bin", with_mode(6, &two)),
        ("sealed_torn_tail.bin", with_mode(6, &torn)),
        ("empty.bin", with_mode(0, &[])),
    ]
}

/// Compressed segments: a small one in 4 KiB blocks, one whose last block is short, damaged ones.
fn compressed_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let logical = |batches: &[usize]| {
        let (bytes, _) = frames(1, batches);
        let header = SegmentHeader {
            compressed: Some(segment::CompressedFrom { source_crc: 0x5EED, source_len: 64 + bytes.len() as u32 }),
            ..SegmentHeader::new(1, 0)
        };
        let mut out = segment::encode_header(&header).to_vec();
        out.extend_from_slice(&bytes);
        out
    };
    let small = logbook::compressed::encode(&logical(&[1, 3, 2]), 12);
    let long = logbook::compressed::encode(&logical(&[4; 40]), 12);
    let mut flipped = long.clone();
    let at = flipped.len() - 10;
    flipped[at] ^= 0x21;
    vec![
        ("six_events.bin", small.clone()),
        ("many_blocks.bin", long.clone()),
        ("flipped_block_byte.bin", flipped),
        ("cut.bin", long[..long.len() / 2].to_vec()),
        ("header_only.bin", small[..96].to_vec()),
    ]
}

fn index_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let build = |batches: &[usize], base: u64| {
        let (bytes, _) = frames(base, batches);
        let mut builder = IndexBuilder::default();
        let mut offset = segment::SEGMENT_HEADER_BYTES;
        while offset - segment::SEGMENT_HEADER_BYTES < bytes.len() {
            let (frame, used) = record::decode(&bytes[offset - segment::SEGMENT_HEADER_BYTES..]).unwrap();
            builder.add(&IndexedEvent::of(&frame, offset as u64));
            offset += used;
        }
        builder.encode(base, offset as u64, 0x5EED)
    };
    let six = build(&[1, 3, 2], 1);
    let mut flipped = six.clone();
    flipped[100] ^= 0x04;
    vec![
        ("six_events_three_streams.bin", six.clone()),
        ("one_event.bin", build(&[1], 42)),
        ("no_events.bin", IndexBuilder::default().encode(7, 64, 0)),
        ("sparse_positions.bin", {
            let mut builder = IndexBuilder::default();
            for (i, position) in [3u64, 9, 10].into_iter().enumerate() {
                let id = [i as u8; 16];
                builder.add(&IndexedEvent {
                    stream: "order-1",
                    version: 2 + i as u64,
                    position,
                    id,
                    offset: 64 + 90 * i as u32,
                });
            }
            builder.encode(2, 400, 0x5EED)
        }),
        ("flipped_body_byte.bin", flipped),
        ("truncated.bin", six[..six.len() - 9].to_vec()),
    ]
}

fn snapshot_seeds() -> Vec<(&'static str, Vec<u8>)> {
    use logbook_es::aggregate::Aggregate;
    use logbook_es::snapshot::{encode, encode_state, Snapshot};
    let state = encode_state(&logbook_order::Order::initial()).unwrap();
    let snapshot =
        Snapshot { stream: "order-6f1c".into(), version: 100, position: 4711, schema_version: 1, state: state.clone() };
    let good = encode(&snapshot).unwrap();
    let mut flipped = good.clone();
    flipped[20] ^= 0x01;
    let garbage_state = encode(&Snapshot { state: vec![0xFF; 40], ..snapshot.clone() }).unwrap();
    vec![
        ("initial_order.bin", good.clone()),
        ("flipped_version_byte.bin", flipped),
        ("truncated.bin", good[..good.len() - 3].to_vec()),
        ("state_not_an_order.bin", garbage_state),
        ("zeroes.bin", vec![0u8; 64]),
    ]
}

fn bulk_array(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn resp_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut pipeline = bulk_array(&[b"PING"]);
    pipeline.extend(bulk_array(&[b"APPEND", b"order-1", b"ITEM_ADDED", b"{\"qty\":2}"]));
    pipeline.extend_from_slice(b"PING hello\r\nREAD order-1 COUNT 10\n");
    vec![
        ("pipeline.bin", pipeline),
        (
            "resp3_scalars.bin",
            b"+OK\r\n-ERR bad\r\n:-42\r\n,1.5\r\n,inf\r\n,nan\r\n#t\r\n_\r\n(12345678901234567890\r\n".to_vec(),
        ),
        (
            "resp3_blobs.bin",
            b"$-1\r\n*-1\r\n$0\r\n\r\n!21\r\nSYNTAX invalid syntax\r\n=15\r\ntxt:Some string\r\n".to_vec(),
        ),
        ("resp3_aggregates.bin", b"%2\r\n+a\r\n:1\r\n+b\r\n*2\r\n~1\r\n#f\r\n>1\r\n,-0.0\r\n*0\r\n".to_vec()),
        ("nested_depth_8.bin", b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n".to_vec()),
        ("nested_depth_9.bin", b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n".to_vec()),
        ("inline_quotes.bin", b"APPEND \"order 1\" 'T' \"\\x41\\n\" EXPECTED any\r\n\r\n".to_vec()),
        ("half_frame.bin", b"*2\r\n$4\r\nPING\r\n$5\r\nhel".to_vec()),
        ("huge_lengths.bin", b"$99999999999\r\n".to_vec()),
        ("attribute.bin", b"|1\r\n+a\r\n+b\r\n".to_vec()),
        ("bare_newline.bin", b"+OK\n".to_vec()),
    ]
}

fn command_seeds() -> Vec<(&'static str, Vec<u8>)> {
    const ID: &[u8] = b"67e55044-10b1-426f-9247-bb680e5fe0c8";
    let many = br#"[{"type":"A","data":{"x":1},"id":"67e55044-10b1-426f-9247-bb680e5fe0c8","meta":{"m":true}},{"type":"B","data":null}]"#;
    vec![
        ("ping.bin", bulk_array(&[b"PING", b"hello"])),
        ("hello.bin", bulk_array(&[b"HELLO", b"3", b"AUTH", b"tenant-a", b"secret"])),
        ("auth.bin", bulk_array(&[b"AUTH", b"tenant-a", b"secret"])),
        ("quit.bin", bulk_array(&[b"QUIT"])),
        (
            "append.bin",
            bulk_array(&[
                b"APPEND",
                b"order-1",
                b"ITEM_ADDED",
                b"{\"qty\":2}",
                b"EXPECTED",
                b"3",
                b"ID",
                ID,
                b"META",
                b"{}",
            ]),
        ),
        ("append_expected_none.bin", bulk_array(&[b"append", b"order-1", b"T", b"", b"expected", b"none"])),
        ("appendmany.bin", bulk_array(&[b"APPENDMANY", b"order-1", many, b"EXPECTED", b"exists"])),
        ("read.bin", bulk_array(&[b"READ", b"order-1", b"FROM", b"2", b"COUNT", b"10", b"REV"])),
        (
            "readall.bin",
            bulk_array(&[
                b"READALL", b"FROM", b"1", b"COUNT", b"100", b"BLOCK", b"50", b"PREFIX", b"order-", b"TYPE", b"A",
                b"TYPE", b"B",
            ]),
        ),
        ("version.bin", bulk_array(&[b"VERSION", b"order-1"])),
        ("head.bin", bulk_array(&[b"HEAD"])),
        ("info.bin", bulk_array(&[b"INFO", b"Stats"])),
        ("timeline.bin", bulk_array(&[b"TIMELINE", b"o-1"])),
        ("streams.bin", bulk_array(&[b"STREAMS", b"PREFIX", b"order-", b"AFTER", b"order-10", b"COUNT", b"100"])),
        ("delete.bin", bulk_array(&[b"DELETE", b"cart-17", b"EXPECTED", b"4"])),
        ("compact.bin", bulk_array(&[b"COMPACT"])),
        ("backup.bin", bulk_array(&[b"BACKUP", b"nightly-2026.11.26_1"])),
        ("backup_dotdot.bin", bulk_array(&[b"BACKUP", b"../etc"])),
        ("inline_admin.bin", b"STREAMS COUNT 2\r\nDELETE s EXPECTED exists\r\nCOMPACT\r\nBACKUP b1\r\n".to_vec()),
        ("inline_pipeline.bin", b"PING\r\nVERSION order-1\r\nREAD order-1 COUNT 5 REV\nHEAD\r\n".to_vec()),
        ("nul_separated_append.bin", b"APPEND\0order-1\0T\0data\0EXPECTED\0any".to_vec()),
        ("unknown_command.bin", bulk_array(&[b"FLUSHALL"])),
        ("not_strings.bin", b"*2\r\n:1\r\n+PING\r\n".to_vec()),
    ]
}

/// Writes the generated seeds. Run by hand after a format or grammar change.
#[test]
#[ignore = "rewrites fuzz/corpus; run by hand"]
fn generate_seed_corpus() {
    let sets = [
        ("frame_decode", frame_seeds()),
        ("segment_recovery", segment_seeds()),
        ("index_decode", index_seeds()),
        ("compressed_decode", compressed_seeds()),
        ("resp_parse", resp_seeds()),
        ("command_parse", command_seeds()),
        ("snapshot_decode", snapshot_seeds()),
    ];
    for (target, seeds) in sets {
        let dir = fuzz_dir().join("corpus").join(target);
        fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds {
            fs::write(dir.join(format!("seed_{name}")), bytes).unwrap();
        }
    }
}
