//! Fuzz target `order_request`: the arguments of the daemon's ORDER command. The logic (and the
//! properties it checks) lives in `logbook_fuzzing::order_request`, which `tests/fuzz_corpus.rs`
//! also replays over the corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| logbook_fuzzing::order_request(data));
