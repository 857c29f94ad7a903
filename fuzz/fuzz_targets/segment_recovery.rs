//! Fuzz target `segment_recovery`: the logic (and the properties it checks) lives in
//! `logbook_fuzzing::segment_recovery`, which `tests/fuzz_corpus.rs` also replays over the corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| logbook_fuzzing::segment_recovery(data));
