//! `READALL [FROM p] [COUNT n] [BLOCK ms] [PREFIX s] [TYPE t]...`: the global log from a
//! position, filtered. With BLOCK it waits up to `ms` (0: without limit, like XREAD BLOCK 0)
//! for at least one matching event and replies an empty array on timeout.
//!
//! Events of `$` system streams (`$deleted` tombstones, `$group-` consumer group state, any
//! `$` stream an embedder writes) are never returned.
//!
//! A tenant's READALL is confined to its namespace (`<tenant>:` is prepended to PREFIX), and
//! stream names come back without it.

use std::time::{Duration, Instant};

use crate::auth::Identity;
use crate::connection::Session;
use crate::Shared;
use logbook::Filter;
use logbook_protocol::Value;

use super::append::store_error;
use super::read::{EventsReply, READ_PAGE_EVENTS};
use super::Reply;

/// Longest single wait inside BLOCK, so shutdown and a vanished client are noticed quickly.
const BLOCK_SLICE: Duration = Duration::from_millis(100);

pub(super) struct Request {
    pub from: u64,
    pub count: u64,
    pub block_ms: Option<u64>,
    pub prefix: Option<String>,
    pub types: Vec<String>,
}

pub(super) fn read_all(shared: &Shared, session: &Session, who: &Identity, request: Request) -> Reply {
    let stream_prefix = match (who.namespace(), request.prefix) {
        (Some(namespace), Some(prefix)) => Some(namespace.stored_name(&prefix)),
        (Some(namespace), None) => Some(namespace.prefix().to_string()),
        (None, prefix) => prefix,
    };
    let filter = Filter { stream_prefix, category: None, event_types: request.types };
    let max = usize::try_from(request.count).unwrap_or(usize::MAX);
    let deadline = match request.block_ms {
        None => None,
        Some(0) => Some(None), // no limit
        Some(ms) => Some(Some(Instant::now() + Duration::from_millis(ms))),
    };
    let mut next = request.from.max(1);
    loop {
        let head = shared.store.head_position();
        // Read pages until COUNT or the byte allowance is reached, the published log is
        // exhausted, or (once something matched) a page finds nothing: a page stops after a
        // bounded number of non-matching events.
        let mut reply = EventsReply::new(shared, who, session.proto);
        loop {
            let asked = (max - reply.len()).min(READ_PAGE_EVENTS);
            let page = match shared.store.read_all_page(next, asked, &filter) {
                Ok(page) => page,
                Err(err) => return store_error(&err).into(),
            };
            let mut full = false;
            for event in &page.events {
                if event.stream().starts_with('$') {
                    // System streams (tombstones, consumer groups' state) are the engine's.
                    next = event.position() + 1;
                    continue;
                }
                if !reply.push(event) {
                    full = true;
                    break;
                }
                next = event.position() + 1;
            }
            if full {
                break;
            }
            next = page.next_position;
            if reply.len() >= max || next > head || (page.events.is_empty() && reply.len() > 0) {
                break;
            }
        }
        if reply.len() > 0 {
            return reply.finish();
        }
        drop(reply); // its share of the reply budget is not held while blocked
        let Some(deadline) = deadline else {
            return Value::Array(Vec::new()).into();
        };
        let slice = match deadline {
            Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left.min(BLOCK_SLICE),
                _ => return Value::Array(Vec::new()).into(),
            },
            None => BLOCK_SLICE,
        };
        if shared.is_shutting_down() {
            return Value::Array(Vec::new()).into();
        }
        if shared.store.wait_for_head(next, slice) < next && session.client_gone() {
            return Value::Array(Vec::new()).into();
        }
    }
}
