//! STREAMS (the stream listing), DELETE, and the admin's COMPACT and BACKUP.
//!
//! STREAMS pages through the store's ordered stream names ([`logbook::Store::list_streams`]):
//! a tenant sees only its namespace, names shown without the namespace prefix. DELETE writes a
//! tombstone (a tenant only in its namespace). COMPACT and BACKUP act on the whole store, so
//! only the admin (or anyone, on an open loopback daemon without auth) may run them; a tenant
//! gets `-NOPERM`, as for INFO.

use logbook::ExpectedVersion;
use logbook_protocol::{encode, Value};

use super::append::{new_error_id, store_error};
use super::{store_name, Reply};
use crate::auth::Identity;
use crate::connection::Session;
use crate::pipeline::as_i64;
use crate::Shared;

/// Names fetched from the store per step while building a STREAMS page (the store's read lock
/// is held for one step at a time).
const LIST_STEP: usize = 256;

/// `STREAMS [PREFIX p] [AFTER name] [COUNT n]`: an array of `[name, version]` pairs in name
/// order, at most `count` of them and (past the first) at most `max_reply_bytes` of them.
/// The client asks for the next page with `AFTER <last name>`.
pub(super) fn streams(
    shared: &Shared,
    session: &Session,
    who: &Identity,
    prefix: Option<&str>,
    after: Option<&str>,
    count: u64,
) -> Reply {
    // In the caller's namespace: a tenant's prefix and AFTER are its own names, stored under
    // its namespace prefix.
    let namespace = who.namespace().map_or("", |n| n.prefix());
    let prefix = format!("{namespace}{}", prefix.unwrap_or(""));
    let mut after = after.map(|a| format!("{namespace}{a}"));
    let max = usize::try_from(count).unwrap_or(usize::MAX);
    let reservation = shared.reply_budget().reserve(shared.config.limits.max_reply_bytes);
    let mut body = Vec::new();
    let mut listed = 0;
    'pages: while listed < max {
        let asked = (max - listed).min(LIST_STEP);
        let page = shared.store.list_streams(&prefix, after.as_deref(), asked);
        for (name, version) in &page {
            let before = body.len();
            let pair = Value::Array(vec![Value::bulk(who.from_store(name)), Value::Integer(as_i64(*version))]);
            encode(&pair, session.proto, &mut body);
            if listed > 0 && body.len() > reservation.granted() {
                body.truncate(before);
                break 'pages;
            }
            listed += 1;
        }
        if page.len() < asked {
            break;
        }
        after = page.last().map(|(name, _)| name.clone());
    }
    Reply::Events(vec![format!("*{listed}\r\n").into_bytes(), body], reservation)
}

/// `DELETE <stream> [EXPECTED ...]`: the tombstone's position.
pub(super) fn delete(shared: &Shared, who: &Identity, stream: &str, expected: ExpectedVersion) -> Value {
    let stored = match store_name(who, stream) {
        Ok(stored) => stored,
        Err(reply) => return reply,
    };
    match shared.store.delete_stream(&stored, expected) {
        Ok(result) => Value::Integer(as_i64(result.first_position)),
        Err(err) => store_error(&err),
    }
}

/// The `-NOPERM` reply for a tenant asking for a store-wide command.
fn admin_only(who: &Identity, command: &str) -> Result<(), Value> {
    match who {
        Identity::Tenant(_) => {
            Err(Value::error("NOPERM", &format!("{command} acts on every tenant's streams; AUTH as admin")))
        }
        Identity::Admin | Identity::Open => Ok(()),
    }
}

/// `COMPACT`: runs the daemon's retention policy now (the background compactor's, cold tier
/// included); waits for a compaction already running (the store's compaction guard).
pub(super) fn compact(shared: &Shared, who: &Identity) -> Value {
    if let Err(reply) = admin_only(who, "COMPACT") {
        return reply;
    }
    let policy = match shared.config.retention_policy() {
        Ok(policy) => policy,
        Err(err) => return Value::error("ERR", &format!("retention policy: {err}")),
    };
    let now = shared.store.now_us();
    match logbook_archive::compact(&shared.store, &policy, now, |_, _| {}) {
        Ok(report) => {
            tracing::info!(?report, "compaction asked by COMPACT finished");
            let figures: [(&str, u64); 11] = [
                ("segments_before", report.segments_before as u64),
                ("segments_after", report.segments_after as u64),
                ("rewritten", report.rewritten as u64),
                ("inputs", report.inputs as u64),
                ("expired", report.expired),
                ("purged", report.purged),
                ("held", report.held),
                ("archived", report.archived),
                ("archive_files", report.archive_files as u64),
                ("bytes_before", report.bytes_before),
                ("bytes_after", report.bytes_after),
            ];
            map(&figures, None)
        }
        Err(err) => store_error(&err),
    }
}

/// `BACKUP <name>`: copies the live store (cold tier included) to `<backup_dir>/<name>`,
/// which must not exist. Replies the copy's figures and its path relative to `backup_dir`.
pub(super) fn backup(shared: &Shared, who: &Identity, name: &str) -> Value {
    if let Err(reply) = admin_only(who, "BACKUP") {
        return reply;
    }
    let Some(root) = &shared.config.backup_dir else {
        return Value::error("ERR", "BACKUP is off: the daemon's config sets no backup_dir");
    };
    // The parser allows one path component only; checked again here, as this is what keeps
    // the copy inside backup_dir.
    let mut components = std::path::Path::new(name).components();
    if !matches!((components.next(), components.next()), (Some(std::path::Component::Normal(_)), None)) {
        return Value::error("ERR", "backup name must be one directory name");
    }
    let failed = |what: &str, detail: String| {
        let error_id = new_error_id();
        tracing::error!(error_id = %error_id, detail = %detail, "BACKUP {what}");
        Value::error("ERR", &format!("backup {what} (id {error_id}); the server log has the detail"))
    };
    if let Err(err) = std::fs::create_dir_all(root) {
        return failed("cannot create backup_dir", format!("{}: {err}", root.display()));
    }
    let out = root.join(name);
    // create_dir fails when the name exists: two BACKUPs of one name cannot both copy into it.
    match std::fs::create_dir(&out) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            return Value::error("ERR", &format!("backup '{name}' already exists in backup_dir; choose a new name"));
        }
        Err(err) => return failed("cannot create its directory", format!("{}: {err}", out.display())),
    }
    match logbook_archive::backup_dir(&shared.config.data, &out) {
        Ok(report) => {
            tracing::info!(?report, backup = %out.display(), "BACKUP finished");
            let figures = [
                ("segments", report.segments as u64),
                ("files", report.files as u64),
                ("bytes", report.bytes),
                ("retries", report.retries as u64),
            ];
            map(&figures, Some(name))
        }
        Err(err) => {
            // Leave no half copy behind under the name (the directory is the one made above).
            let _ = std::fs::remove_dir_all(&out);
            failed("failed", err.to_string())
        }
    }
}

/// A reply map of figures, and the backup's `path` (relative to backup_dir) when given.
fn map(figures: &[(&str, u64)], path: Option<&str>) -> Value {
    let mut fields: Vec<(Value, Value)> =
        figures.iter().map(|(key, value)| (Value::bulk(*key), Value::Integer(as_i64(*value)))).collect();
    if let Some(path) = path {
        fields.push((Value::bulk("path"), Value::bulk(path)));
    }
    Value::Map(fields)
}
