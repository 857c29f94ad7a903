//! Replays `fuzz/corpus/connection_core/` (and `fuzz/artifacts/connection_core/`, where
//! cargo-fuzz leaves crashes) through the connection core's fuzz property
//! (`logbook_server::fuzz_connection_core`), plus seeded random streams built from RESP
//! pieces. `LOGBOOK_CORE_FUZZ_CASES` scales the random part (default 300).

use std::path::PathBuf;

use rand_core::{Rng as _, SeedableRng};
use rand_xoshiro::SplitMix64;

fn dir(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(kind).join("connection_core")
}

#[test]
fn connection_core_corpus() {
    let mut files: Vec<PathBuf> = Vec::new();
    for kind in ["corpus", "artifacts"] {
        if let Ok(entries) = std::fs::read_dir(dir(kind)) {
            files.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
        }
    }
    assert!(files.len() >= 5, "fuzz/corpus/connection_core/ is missing its seeds");
    files.sort();
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        if std::panic::catch_unwind(|| logbook_server::fuzz_connection_core(&bytes)).is_err() {
            panic!("{} fails the connection core's properties", file.display());
        }
    }
}

#[test]
fn connection_core_random_streams() {
    let cases: u64 = std::env::var("LOGBOOK_CORE_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let pieces: [&[u8]; 12] = [
        b"PING\r\n",
        b"*1\r\n$4\r\nQUIT\r\n",
        b"*3\r\n$4\r\nAUTH\r\n$4\r\nacme\r\n$1\r\nx\r\n",
        b"*3\r\n$7\r\nREADALL\r\n$5\r\nCOUNT\r\n$1\r\n5\r\n",
        b"*2\r\n$4\r\nPING\r\n$5000\r\n",
        b"*3\r\n$10\r\nAPPENDMANY\r\n$1\r\ns\r\n$2\r\n[]\r\n",
        b"$3\r\nabc\r\n",
        b"*1\r\n:5\r\n",
        b"\r\n",
        b"HELLO 3\r\n",
        b"*99999999\r\n",
        b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    ];
    let mut rng = SplitMix64::seed_from_u64(0x2545_f491_4f6c_dd1d);
    for case in 0..cases {
        let mut data = vec![(case % 256) as u8];
        let n = 1 + case % 60;
        for _ in 0..n {
            let x = rng.next_u64();
            data.extend_from_slice(pieces[(x % pieces.len() as u64) as usize]);
            if x.is_multiple_of(17) {
                data.truncate(data.len() - 1); // a cut piece
            }
        }
        logbook_server::fuzz_connection_core(&data);
    }
}
