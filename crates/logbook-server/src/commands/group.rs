//! `GROUP CREATE | READ | ACK | INFO | DELETE`: consumer groups on `$all` (the engine's
//! `Store::*_group`).
//!
//! A tenant's group `g` is the store's group `<tenant>:g`, its PREFIX the tenant's stored
//! prefix followed by the given one (the tenant's whole namespace without one), so a tenant's
//! group only ever delivers its own events, and two tenants' groups of the same name are two
//! groups. Names and streams come back without the tenant's prefix, as READALL returns them.
//! Names starting with `$` belong to the engine (webhooks) and are refused.

use std::time::{Duration, Instant};

use crate::auth::Identity;
use crate::connection::Session;
use crate::pipeline::as_i64;
use crate::Shared;
use logbook::GroupConfig;
use logbook_protocol::Value;

use super::append::store_error;
use super::read::EventsReply;
use super::Reply;

/// Longest single wait inside BLOCK, so shutdown and a vanished client are noticed quickly
/// (as READALL's).
const BLOCK_SLICE: Duration = Duration::from_millis(100);

/// A group name as the caller sent it and as the store knows it.
struct GroupName {
    local: String,
    full: String,
}

fn group_name(who: &Identity, local: &str) -> Result<GroupName, Value> {
    if local.starts_with('$') {
        return Err(Value::error("ERR", &format!("group name '{local}' starts with '$', reserved for the server")));
    }
    let full = match who.namespace() {
        Some(namespace) => namespace.stored_name(local),
        None => local.to_string(),
    };
    logbook::validate_group_name(&full).map_err(|_| Value::error("ERR", "invalid group name"))?;
    Ok(GroupName { local: local.to_string(), full })
}

/// An engine error as the caller may see it: the store's full group name replaced by the
/// caller's own, server paths hidden.
fn group_error(err: &logbook::Error, name: &GroupName) -> Value {
    match err {
        logbook::Error::InvalidInput(msg) => {
            Value::error("ERR", &msg.replace(&format!("'{}'", name.full), &format!("'{}'", name.local)))
        }
        other => store_error(other),
    }
}

pub(super) struct Create {
    pub group: String,
    pub from: Option<u64>,
    pub prefix: Option<String>,
    pub types: Vec<String>,
    pub ack_wait_ms: Option<u64>,
}

pub(super) fn create(shared: &Shared, who: &Identity, request: Create) -> Value {
    let name = match group_name(who, &request.group) {
        Ok(name) => name,
        Err(reply) => return reply,
    };
    // A group in a tenant's namespace delivers only that tenant's events, whoever created it:
    // the admin naming `acme:g` gets acme's confinement too, or acme's READ of `g` would hand
    // it every tenant's events.
    let owner = match who.namespace() {
        Some(namespace) => Some(namespace.clone()),
        None => name
            .full
            .split_once(logbook::NAMESPACE_SEPARATOR)
            .and_then(|(owner, _)| logbook::Namespace::new(owner).ok()),
    };
    let stream_prefix = match (owner, request.prefix) {
        (Some(namespace), Some(prefix)) if who.namespace().is_none() && prefix.starts_with(namespace.prefix()) => {
            Some(prefix)
        }
        (Some(namespace), Some(prefix)) => Some(namespace.stored_name(&prefix)),
        (Some(namespace), None) => Some(namespace.prefix().to_string()),
        (None, prefix) => prefix,
    };
    let config = GroupConfig {
        from: request.from.unwrap_or(1),
        stream_prefix,
        event_types: request.types,
        ack_wait: Duration::from_millis(request.ack_wait_ms.unwrap_or(logbook_protocol::DEFAULT_ACK_WAIT_MS)),
    };
    // A tenant's own share of `max_groups`, so one tenant cannot take every group the store
    // allows from the others and from the admin (webhooks included).
    if let Some(namespace) = who.namespace() {
        let limit = shared.config.limits.max_groups_per_tenant;
        let have = shared.store.group_names(namespace.prefix()).len();
        if have >= limit {
            return Value::error(
                "ERR",
                &format!("this tenant has {have} groups, limit {limit} (max_groups_per_tenant)"),
            );
        }
    }
    match shared.store.create_group(&name.full, config) {
        Ok(()) => Value::ok(),
        Err(err) => group_error(&err, &name),
    }
}

pub(super) fn read(
    shared: &Shared,
    session: &Session,
    who: &Identity,
    group: &str,
    consumer: &str,
    count: u64,
    block_ms: Option<u64>,
) -> Reply {
    let name = match group_name(who, group) {
        Ok(name) => name,
        Err(reply) => return reply.into(),
    };
    let max = usize::try_from(count).unwrap_or(usize::MAX);
    // BLOCK as READALL's: absent, one look; 0, no limit; else up to that many ms.
    let deadline = match block_ms {
        None => None,
        Some(0) => Some(None),
        Some(ms) => Some(Some(Instant::now() + Duration::from_millis(ms))),
    };
    loop {
        let slice = match deadline {
            None => Duration::ZERO,
            Some(None) => BLOCK_SLICE,
            Some(Some(deadline)) => deadline.saturating_duration_since(Instant::now()).min(BLOCK_SLICE),
        };
        let events = match shared.store.read_group(&name.full, consumer, max, slice) {
            Ok(events) => events,
            Err(err) => return group_error(&err, &name).into(),
        };
        if !events.is_empty() {
            // Events that do not fit the reply's byte allowance are handed back: due again
            // at once, to whichever consumer reads next (not after ACKWAIT: nobody got them).
            let mut reply = EventsReply::new(shared, who, session.proto);
            let sent = events.iter().take_while(|event| reply.push(event)).count();
            let unsent: Vec<u64> = events[sent..].iter().map(|e| e.position()).collect();
            if !unsent.is_empty() {
                if let Err(err) = shared.store.release_group(&name.full, &unsent) {
                    // Only a deletion in between: the events go with the group.
                    tracing::debug!(%err, "handing back unsent group events");
                }
            }
            return reply.finish();
        }
        let out_of_time = match deadline {
            None => true,
            Some(None) => false,
            Some(Some(deadline)) => Instant::now() >= deadline,
        };
        if out_of_time || shared.is_shutting_down() || session.client_gone() {
            return Value::Array(Vec::new()).into();
        }
    }
}

pub(super) fn ack(shared: &Shared, who: &Identity, group: &str, positions: &[u64]) -> Value {
    let name = match group_name(who, group) {
        Ok(name) => name,
        Err(reply) => return reply,
    };
    match shared.store.ack_group(&name.full, positions) {
        Ok(n) => Value::Integer(as_i64(n as u64)),
        Err(err) => group_error(&err, &name),
    }
}

pub(super) fn info(shared: &Shared, who: &Identity, group: &str) -> Value {
    // A webhook's group (`$webhook-<name>`, see `crate::webhook`) is shown to the admin (or to
    // anyone when no auth is configured), for its lag and failures; the other commands still
    // refuse `$` names.
    let webhook_group = who.namespace().is_none() && group.starts_with(crate::WEBHOOK_GROUP_PREFIX);
    let name = match webhook_group.then(|| GroupName { local: group.to_string(), full: group.to_string() }) {
        Some(name) => Ok(name),
        None => group_name(who, group),
    };
    let name = match name {
        Ok(name) => name,
        Err(reply) => return reply,
    };
    let info = match shared.store.group_info(&name.full) {
        Ok(info) => info,
        Err(err) => return group_error(&err, &name),
    };
    let prefix = match (who.namespace(), info.config.stream_prefix.as_deref()) {
        (Some(namespace), Some(stored)) => namespace.local_name(stored).unwrap_or(""),
        (_, prefix) => prefix.unwrap_or(""),
    };
    let consumers = info
        .consumers
        .iter()
        .map(|c| {
            Value::Map(vec![
                (Value::bulk("name"), Value::bulk(c.name.as_str())),
                (Value::bulk("pending"), Value::Integer(as_i64(c.pending as u64))),
                (Value::bulk("idle"), Value::Integer(as_i64(c.idle.as_millis() as u64))),
            ])
        })
        .collect();
    let integer = |n: u64| Value::Integer(as_i64(n));
    Value::Map(vec![
        (Value::bulk("name"), Value::bulk(name.local.as_str())),
        (Value::bulk("from"), integer(info.config.from)),
        (Value::bulk("prefix"), Value::bulk(prefix)),
        (Value::bulk("types"), Value::Array(info.config.event_types.iter().map(|t| Value::bulk(t.as_str())).collect())),
        (Value::bulk("ackwait"), integer(info.config.ack_wait.as_millis() as u64)),
        (Value::bulk("checkpoint"), integer(info.checkpoint)),
        (Value::bulk("pending"), integer(info.pending as u64)),
        (Value::bulk("lag"), integer(info.lag)),
        (Value::bulk("delivered"), integer(info.delivered)),
        (Value::bulk("redelivered"), integer(info.redelivered)),
        (Value::bulk("failures"), integer(info.failures)),
        (Value::bulk("consumers"), Value::Array(consumers)),
    ])
}

pub(super) fn delete(shared: &Shared, who: &Identity, group: &str) -> Value {
    let name = match group_name(who, group) {
        Ok(name) => name,
        Err(reply) => return reply,
    };
    match shared.store.delete_group(&name.full) {
        Ok(()) => Value::ok(),
        Err(err) => group_error(&err, &name),
    }
}
