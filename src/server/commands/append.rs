//! APPEND and APPENDMANY: turned into a [`PreparedAppend`] here, run by `server::pipeline`.
//!
//! Replies: APPEND `[version, position]`; APPENDMANY `[first_version, last_version,
//! last_position]`. A version mismatch is `-WRONGVERSION expected <e> actual <a>`.

use crate::protocol::{ExpectedVersionArg, NewEventSpec, Value};
use crate::server::auth::Identity;
use crate::server::pipeline::PreparedAppend;
use crate::{Error, ExpectedVersion, NewEvent};

use super::store_name;

fn expected_version(arg: ExpectedVersionArg) -> ExpectedVersion {
    match arg {
        ExpectedVersionArg::Any => ExpectedVersion::Any,
        ExpectedVersionArg::NoStream => ExpectedVersion::NoStream,
        ExpectedVersionArg::Exists => ExpectedVersion::Exists,
        ExpectedVersionArg::Exact(n) => ExpectedVersion::Exact(n),
    }
}

/// Maps the stream into the caller's namespace and the specs into engine events.
pub(super) fn prepare(
    who: &Identity,
    stream: &str,
    specs: Vec<NewEventSpec>,
    expected: ExpectedVersionArg,
    many: bool,
) -> Result<PreparedAppend, Value> {
    let stream = store_name(who, stream)?;
    let events = specs
        .into_iter()
        .map(|spec| NewEvent { id: spec.id, event_type: spec.event_type, data: spec.data, metadata: spec.meta })
        .collect();
    Ok(PreparedAppend { stream, expected: expected_version(expected), events, many })
}

/// The error reply for an engine error. Messages never name stored streams, so a tenant never
/// sees its namespace prefix (or anyone else's name).
pub(crate) fn store_error(err: &Error) -> Value {
    match err {
        Error::WrongExpectedVersion { expected, actual, .. } => {
            Value::error("WRONGVERSION", &format!("expected {expected} actual {actual}"))
        }
        Error::IdempotencyConflict { id, reason, .. } => {
            Value::error("ERR", &format!("idempotency conflict for event id {id}: {reason}"))
        }
        Error::InvalidInput(msg) => Value::error("ERR", msg),
        Error::StreamDeleted(_) => Value::error("STREAMDELETED", "the stream is deleted"),
        Error::Shutdown => Value::error("ERR", "the server is shutting down"),
        Error::WriterFailed(_) | Error::Io { .. } | Error::Corruption { .. } | Error::Locked(_) | Error::NoStore(_) => {
            tracing::error!(%err, "storage error");
            Value::error("ERR", &format!("storage error: {err}"))
        }
    }
}
