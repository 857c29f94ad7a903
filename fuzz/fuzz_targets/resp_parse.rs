//! Fuzz target `resp_parse`: the logic (and the properties it checks) lives in
//! `logbook_fuzzing::resp_parse`, which `tests/fuzz_corpus.rs` also replays over the corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| logbook_fuzzing::resp_parse(data));
