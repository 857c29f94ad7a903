//! Fuzz target `snapshot_decode`: the logic (and the properties it checks) lives in
//! `logbook::fuzzing::snapshot_decode`, which `tests/fuzz_corpus.rs` also replays over the corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| logbook::fuzzing::snapshot_decode(data));
