//! Fuzz target `connection_core`: the sans-I/O connection core under arbitrary bytes, read
//! sizes, time and reply draining. The logic (and the properties it checks) lives in
//! `logbook_server::fuzz_connection_core`, which `tests/server_core_fuzz.rs` also replays
//! over the corpus.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| logbook_server::fuzz_connection_core(data));
