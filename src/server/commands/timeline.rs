//! TIMELINE: parsed by the grammar, but the order timeline belongs to a later issue.
//! The daemon says so instead of pretending.

use crate::protocol::Value;

pub(super) fn timeline() -> Value {
    Value::error("ERR", "TIMELINE is not available yet")
}
