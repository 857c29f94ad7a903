//! The engine's error type: one variant per thing a caller can act on differently.

use std::path::PathBuf;

use crate::types::ExpectedVersion;

/// Errors from the storage engine (segments, log, index, store).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Damage recovery may not repair: names the file and the byte offset.
    #[error("corruption in {file} at byte {offset}: {reason}")]
    Corruption {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the damage in the file.
        offset: u64,
        /// What is wrong there.
        reason: String,
    },

    /// The stream's version was not what the append expected; nothing was written.
    #[error("wrong expected version for stream '{stream}': expected {expected}, actual {actual}")]
    WrongExpectedVersion {
        /// The stream appended to.
        stream: String,
        /// The version the append expected.
        expected: ExpectedVersion,
        /// The stream's current version (0 when it has no events).
        actual: u64,
    },

    /// An event id already in the stream was re-sent with different content, or a batch mixed
    /// already-stored and new ids; nothing was written.
    #[error("event id {id} conflicts with stream '{stream}': {reason}")]
    IdempotencyConflict {
        /// The stream appended to.
        stream: String,
        /// The conflicting event id.
        id: uuid::Uuid,
        /// What conflicts.
        reason: String,
    },

    /// One part of an atomic multi-stream append ([`crate::Store::append_batch`]) was refused,
    /// so nothing of the batch was written: `part` is its index (from 0), `source` why.
    #[error("part {part} of the batch: {source}")]
    BatchPart {
        /// The refused part, counted from 0.
        part: usize,
        /// Why it was refused (a wrong expected version, a deleted stream, an idempotency
        /// conflict, invalid input).
        source: Box<Error>,
    },

    /// The stream was deleted (a tombstone): reads and appends are refused.
    #[error("stream '{0}' is deleted")]
    StreamDeleted(String),

    /// The request itself is invalid (names what was wrong); nothing was written.
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// An I/O operation failed.
    #[error("I/O error {context}: {source}")]
    Io {
        /// What was being done (e.g. `writing <path> atomically`).
        context: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// The writer stopped after an earlier I/O error (e.g. a failed fsync) and refuses every
    /// further append: the page cache may have dropped data, so only a reopen is safe.
    #[error("the writer stopped after an earlier I/O error ({0}); reopen the store")]
    WriterFailed(String),

    /// Another process (or another `Store` in this process) holds the data directory.
    #[error("data directory {0} is locked by another process")]
    Locked(PathBuf),

    /// The directory holds no logbook store, and the caller asked not to create one.
    #[error("no logbook store at {0}")]
    NoStore(PathBuf),

    /// The store is shutting down or closed.
    #[error("the store is shut down")]
    Shutdown,
}

impl Error {
    /// An I/O error, with what was being done (no server path should reach a network client:
    /// the daemon maps this variant to a path-free reply).
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
    /// Damage at `offset` of `file`, with what is wrong there.
    pub fn corruption(file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corruption { file: file.into(), offset, reason: reason.into() }
    }
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
