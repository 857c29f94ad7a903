//! APPEND, APPENDMANY and APPENDBATCH: turned into a [`PreparedAppend`] here, run by
//! `server::pipeline`.
//!
//! Replies: APPEND `[version, position]`; APPENDMANY `[first_version, last_version,
//! last_position]`; APPENDBATCH one such triple per part. A version mismatch is
//! `-WRONGVERSION expected <e> actual <a>` (APPENDBATCH: `-WRONGVERSION <part> expected <e>
//! actual <a>`, nothing written).

use logbook::{AppendPart, Error, ExpectedVersion, NewEvent};
use logbook_protocol::{BatchPartSpec, NewEventSpec, Value};

use super::store_name;
use crate::auth::Identity;
use crate::pipeline::PreparedAppend;

fn new_events(specs: Vec<NewEventSpec>) -> Vec<NewEvent> {
    specs
        .into_iter()
        .map(|spec| NewEvent {
            id: spec.id,
            event_type: spec.event_type,
            data: spec.data,
            metadata: spec.meta,
            time_us: None,
        })
        .collect()
}

/// APPENDBATCH: every part's stream mapped into the caller's namespace, to be appended all
/// or none.
pub(super) fn prepare_batch(who: &Identity, specs: Vec<BatchPartSpec>) -> Result<PreparedAppend, Value> {
    let mut parts = Vec::with_capacity(specs.len());
    for (i, spec) in specs.into_iter().enumerate() {
        let stream = store_name(who, &spec.stream).map_err(|reply| of_part(reply, i))?;
        parts.push(AppendPart::new(stream, spec.expected, new_events(spec.events)));
    }
    Ok(PreparedAppend::Batch(parts))
}

/// An error reply about one part of an APPENDBATCH: `-CODE part <i>: message`.
fn of_part(reply: Value, part: usize) -> Value {
    match reply {
        Value::Error(text) => match text.split_once(' ') {
            Some((code, msg)) => Value::error(code, &format!("part {part}: {msg}")),
            None => Value::error(&text, &format!("part {part}")),
        },
        other => other,
    }
}

/// Maps the stream into the caller's namespace and the specs into engine events.
pub(super) fn prepare(
    who: &Identity,
    stream: &str,
    specs: Vec<NewEventSpec>,
    expected: ExpectedVersion,
    many: bool,
) -> Result<PreparedAppend, Value> {
    let stream = store_name(who, stream)?;
    Ok(PreparedAppend::Stream { stream, expected, events: new_events(specs), many })
}

/// The error reply for an engine error. Messages never name stored streams, so a tenant never
/// sees its namespace prefix (or anyone else's name), and never a server path: failures of the
/// disk (I/O, corruption, a stopped writer) are logged with their detail under an error id,
/// and the reply quotes only the id.
pub(crate) fn store_error(err: &Error) -> Value {
    let (reply, failure) = store_error_unlogged(err);
    if let Some(failure) = failure {
        failure.log();
    }
    reply
}

/// A storage failure behind an error reply: the id the reply names, and what happened, for
/// the server log.
pub(crate) struct StorageFailure {
    error_id: String,
    detail: String,
}

impl StorageFailure {
    pub(crate) fn log(&self) {
        // One target for every command's storage failures (`store_error` serves them all).
        tracing::error!(target: "logbook_server::storage", error_id = %self.error_id, detail = %self.detail, "storage error");
    }
}

/// [`store_error`] without the log line: for the writer thread, which must not wait on the
/// log (a full or blocked standard error); the caller logs the failure on its own thread.
pub(crate) fn store_error_unlogged(err: &Error) -> (Value, Option<StorageFailure>) {
    let reply = match err {
        Error::WrongExpectedVersion { expected, actual, .. } => {
            Value::error("WRONGVERSION", &format!("expected {expected} actual {actual}"))
        }
        Error::IdempotencyConflict { id, reason, .. } => {
            Value::error("ERR", &format!("idempotency conflict for event id {id}: {reason}"))
        }
        Error::InvalidInput(msg) => Value::error("ERR", msg),
        Error::StreamDeleted(_) => Value::error("STREAMDELETED", "the stream is deleted"),
        // APPENDBATCH: `-WRONGVERSION <part> expected <e> actual <a>`; other refusals name the
        // part after their code.
        Error::BatchPart { part, source } => match source.as_ref() {
            Error::WrongExpectedVersion { expected, actual, .. } => {
                Value::error("WRONGVERSION", &format!("{part} expected {expected} actual {actual}"))
            }
            inner => {
                let (reply, failure) = store_error_unlogged(inner);
                return (of_part(reply, *part), failure);
            }
        },
        Error::Shutdown => Value::error("ERR", "the server is shutting down"),
        Error::WriterFailed(_) | Error::Io { .. } | Error::Corruption { .. } | Error::Locked(_) | Error::NoStore(_) => {
            let error_id = new_error_id();
            let reply = Value::error("ERR", &format!("storage error (id {error_id}); the server log has the detail"));
            return (reply, Some(StorageFailure { error_id, detail: err.to_string() }));
        }
    };
    (reply, None)
}

/// A short id that ties an error reply to its log line: 12 hex digits, random.
pub(crate) fn new_error_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    id[..12].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(v: &Value) -> &str {
        match v {
            Value::Error(text) => text,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn storage_errors_name_no_path_only_an_id() {
        let path = std::path::PathBuf::from("/var/lib/logbook/segments/00000000000000000001.idx");
        let errors = [
            Error::Io {
                context: format!("writing {}", path.display()),
                source: std::io::Error::from_raw_os_error(libc::ENOSPC),
            },
            Error::Corruption { file: path.clone(), offset: 4096, reason: "checksum mismatch".into() },
            Error::WriterFailed(format!("fdatasync {}: Input/output error", path.display())),
            Error::Locked(path.clone()),
            Error::NoStore(path.clone()),
        ];
        for err in &errors {
            let reply = store_error(err);
            let text = text(&reply);
            assert!(!text.contains('/') && !text.contains(".idx"), "{text}");
            assert!(text.starts_with("ERR storage error (id "), "{text}");
        }
        let a = store_error(&errors[0]);
        let b = store_error(&errors[0]);
        assert_ne!(text(&a), text(&b), "each failure gets its own id");
    }
}
