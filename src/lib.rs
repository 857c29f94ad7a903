//! The `logbook` program's library: what the binary and the tests share (benchmarks). The
//! engine is the `logbook` crate; the other layers are the `logbook-*` crates of this
//! workspace (docs/architecture.md).
#![doc = include_str!("../README.md")]

pub mod bench;
pub mod disk;
pub mod import;
pub mod workload;
