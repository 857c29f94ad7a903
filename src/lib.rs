//! logbook: an append-only event log storage engine for event-sourced systems.
//!
//! Layers, bottom to top (each module owns one idea; dependencies flow downward only):
//! [`record`] (the frame), [`segment`] (one file), [`index`] (stream -> version -> position),
//! [`log`] (segments, recovery, the writer thread), [`store`] (the public API).
#![doc = include_str!("../README.md")]

pub mod aggregate;
pub mod archive;
pub mod backup;
pub mod bench;
pub mod block_cache;
pub mod client;
pub mod compact;
pub mod datadir;
pub mod error;
pub mod export;
#[doc(hidden)]
pub mod fuzzing;
pub mod index;
pub mod order;
pub mod protocol;
pub mod record;
pub mod repair;
pub mod retention;
pub mod segment;
pub mod server;
pub mod snapshot;
pub mod stats;
pub mod storage;
pub mod store;
pub mod time;
pub mod types;
pub mod upcast;
pub mod verify;
pub mod wal;

pub use error::{Error, Result};
pub use store::{AllPage, PendingAppend, Store, StoreStats, Subscription};
pub use types::{
    AppendResult, Clock, Direction, ExpectedVersion, Filter, NewEvent, Options, RecordedEvent, SyncMode, VerifyOnOpen,
};
