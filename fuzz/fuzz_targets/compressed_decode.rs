//! Fuzz target `compressed_decode`: the logic (and the properties it checks) lives in
//! `logbook_fuzzing::compressed_decode`, which `tests/fuzz_corpus.rs` also replays over the corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| logbook_fuzzing::compressed_decode(data));
