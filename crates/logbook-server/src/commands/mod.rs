//! The dispatcher: one match arm per command, one file per command family.
//!
//! | file | commands |
//! |---|---|
//! | `session.rs` | PING, HELLO, AUTH, QUIT, COMMAND |
//! | `append.rs` | APPEND, APPENDMANY, APPENDBATCH (run through the pipeline, see `server::pipeline`) |
//! | `read.rs` | READ, and how an event is put on the wire |
//! | `read_all.rs` | READALL (with BLOCK) |
//! | `info.rs` | INFO, VERSION, HEAD |
//! | `admin.rs` | STREAMS, DELETE, COMPACT, BACKUP |
//! | `group.rs` | GROUP CREATE, READ, ACK, INFO, DELETE (consumer groups) |

mod admin;
pub(crate) mod append;
mod group;
pub(crate) mod info;
mod read;
mod read_all;
mod session;

use logbook_protocol::{Command, Value};

use super::auth::Identity;
use super::connection::Session;
use super::pipeline::PreparedAppend;
use super::Shared;

/// A reply: a value, or events already encoded in the session's protocol (in parts), with
/// the share of the server-wide reply budget they were built under (given back once they are
/// pushed to the connection, where they count as pending output).
pub(crate) enum Reply {
    Value(Value),
    Events(Vec<Vec<u8>>, crate::connection_core::Reservation),
}

impl From<Value> for Reply {
    fn from(value: Value) -> Reply {
        Reply::Value(value)
    }
}

/// What running a command produced.
pub(crate) enum Outcome {
    Reply(Reply),
    /// Reply, then close the connection.
    Quit(Value),
}

/// The identity a data command runs as, or the `-NOAUTH` reply.
fn identity(session: &Session) -> Result<&Identity, Value> {
    session.identity.as_ref().ok_or_else(|| Value::error("NOAUTH", "Authentication required: AUTH <tenant> <token>"))
}

/// True for the commands that go through [`prepare_append`] and the pipeline.
pub(crate) fn is_append(command: &Command) -> bool {
    matches!(command, Command::Append { .. } | Command::AppendMany { .. } | Command::AppendBatch { .. })
}

/// Appends are collected and run together (see `server::pipeline`): this turns an APPEND,
/// APPENDMANY or APPENDBATCH into a prepared append, or its error reply.
pub(crate) fn prepare_append(session: &Session, command: Command) -> Result<PreparedAppend, Value> {
    let who = identity(session)?;
    match command {
        Command::Append { stream, event, expected } => append::prepare(who, &stream, vec![event], expected, false),
        Command::AppendMany { stream, events, expected } => append::prepare(who, &stream, events, expected, true),
        Command::AppendBatch { parts } => append::prepare_batch(who, parts),
        _ => Err(Value::error("ERR", "internal error: not an append")),
    }
}

/// Parses and runs a request the connection core handed out unparsed for its size
/// (`connection_core::Request::Heavy`), appends included (waited for here, in order: nothing
/// else of the connection runs meanwhile). A request that breaks the protocol closes the
/// connection after its reply, as it would have on the loop.
pub(crate) fn execute_heavy(shared: &Shared, session: &mut Session, args: Vec<Vec<u8>>) -> Outcome {
    match Command::parse(args, &shared.core_limits().commands) {
        Ok(command) => execute(shared, session, command),
        Err(err @ logbook_protocol::CommandError::Protocol(_)) => {
            shared.stats.protocol_errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Outcome::Quit(err.to_value())
        }
        Err(err) => Outcome::Reply(err.to_value().into()),
    }
}

/// Runs any command; an append on its own, waited for here (the event loops hand appends to
/// the pipeline's runs instead, see `server::pipeline`).
pub(crate) fn execute(shared: &Shared, session: &mut Session, command: Command) -> Outcome {
    let reply = match command {
        Command::Ping { message } => session::ping(message).into(),
        Command::Hello { protover, auth } => session::hello(shared, session, protover, auth).into(),
        Command::Auth(credentials) => session::auth(shared, session, &credentials).into(),
        Command::Quit => return Outcome::Quit(Value::ok()),
        Command::CommandInfo { subcommand, names } => {
            session::command_info(shared, subcommand.as_deref(), &names).into()
        }
        command => match identity(session) {
            Err(reply) => reply.into(),
            Ok(who) => run_data_command(shared, session, who, command),
        },
    };
    Outcome::Reply(reply)
}

fn run_data_command(shared: &Shared, session: &Session, who: &Identity, command: Command) -> Reply {
    let value = match command {
        Command::Read { stream, from, count, reverse } => {
            return read::read(shared, session, who, &stream, from, count, reverse);
        }
        Command::ReadAll { from, count, block_ms, prefix, types } => {
            return read_all::read_all(
                shared,
                session,
                who,
                read_all::Request { from, count, block_ms, prefix, types },
            );
        }
        Command::Version { stream } => info::version(shared, who, &stream),
        Command::Head => info::head(shared),
        Command::Streams { prefix, after, count } => {
            return admin::streams(shared, session, who, prefix.as_deref(), after.as_deref(), count);
        }
        Command::Delete { stream, expected } => admin::delete(shared, who, &stream, expected),
        Command::Compact => admin::compact(shared, who),
        Command::Backup { name } => admin::backup(shared, who, &name),
        Command::Info { section } => info::info(shared, session, who, section.as_deref()),
        Command::GroupCreate { group, from, prefix, types, ack_wait_ms } => {
            group::create(shared, who, group::Create { group, from, prefix, types, ack_wait_ms })
        }
        Command::GroupRead { group, consumer, count, block_ms } => {
            return group::read(shared, session, who, &group, &consumer, count, block_ms);
        }
        Command::GroupAck { group, positions } => group::ack(shared, who, &group, &positions),
        Command::GroupInfo { group } => group::info(shared, who, &group),
        Command::GroupDelete { group } => group::delete(shared, who, &group),
        Command::Append { .. } | Command::AppendMany { .. } | Command::AppendBatch { .. } => {
            match prepare_append(session, command) {
                Ok(prepared) => prepared.run(shared),
                Err(reply) => reply,
            }
        }
        Command::Ping { .. }
        | Command::Hello { .. }
        | Command::Auth(_)
        | Command::Quit
        | Command::CommandInfo { .. } => Value::error("ERR", "internal error: session command in data dispatch"),
    };
    value.into()
}

/// Most events (or, for a filtered READALL, positions scanned) a command may cover and still run
/// on an event loop: its reply is built in tens of µs, mostly from the block cache. Anything
/// larger (a long stream, a replay page, a filtered scan that may walk far for few matches, a
/// long STREAMS listing) runs on a helper thread, as do commands that can wait (BLOCK, an
/// fsync), that count over many positions (GROUP INFO's lag) or that are not the server's own
/// (extensions).
pub(crate) const LOOP_READ_EVENTS: u64 = 128;

/// True when `command` must not run on an event loop (see [`LOOP_READ_EVENTS`]). Sizes are
/// estimated from the store's counts: a READ covers at most the stream's version; a READALL
/// scans at most the positions from `from` to the head, and returns at most COUNT of them
/// only when nothing filters it (a PREFIX, a TYPE, or a tenant's namespace).
pub(crate) fn runs_on_a_helper(shared: &Shared, session: &Session, command: &Command) -> bool {
    match command {
        Command::Read { stream, count, .. } => {
            let Ok(who) = identity(session) else { return false };
            let Ok(stored) = read::readable_stream(who, stream) else { return false };
            (*count).min(shared.store.stream_version(&stored)) > LOOP_READ_EVENTS
        }
        Command::ReadAll { block_ms: Some(_), .. } => true,
        Command::ReadAll { from, count, prefix, types, .. } => {
            let scanned = (shared.store.head_position() + 1).saturating_sub((*from).max(1));
            let filtered = prefix.is_some()
                || !types.is_empty()
                || session.identity.as_ref().is_some_and(|who| who.namespace().is_some());
            let covered = if filtered { scanned } else { (*count).min(scanned) };
            covered > LOOP_READ_EVENTS
        }
        Command::Streams { count, .. } => *count > LOOP_READ_EVENTS,
        Command::Delete { .. }
        | Command::Compact
        | Command::Backup { .. }
        | Command::GroupCreate { .. }
        | Command::GroupRead { .. }
        | Command::GroupAck { .. }
        | Command::GroupInfo { .. }
        | Command::GroupDelete { .. } => true,
        Command::Ping { .. }
        | Command::Hello { .. }
        | Command::Auth(_)
        | Command::Quit
        | Command::CommandInfo { .. }
        | Command::Append { .. }
        | Command::AppendMany { .. }
        | Command::AppendBatch { .. }
        | Command::Version { .. }
        | Command::Head
        | Command::Info { .. } => false,
    }
}

/// Checks a client's stream name and maps it into the caller's namespace. Errors speak of
/// the name the client sent: a tenant's length limit is the store's less its namespace
/// prefix, stated without revealing the prefix.
pub(crate) fn store_name(who: &Identity, stream: &str) -> Result<String, Value> {
    stored_name(who.namespace(), stream)
}

/// [`store_name`] for a caller confined to `namespace` (`None`: full names).
pub(crate) fn stored_name(namespace: Option<&logbook::Namespace>, stream: &str) -> Result<String, Value> {
    logbook::validate_stream_name(stream).map_err(|e| Value::error("ERR", &plain(&e)))?;
    let stored = match namespace {
        Some(namespace) => {
            let limit = namespace.max_stream_bytes(logbook::MAX_STREAM_NAME_BYTES);
            if stream.len() > limit {
                return Err(Value::error(
                    "ERR",
                    &format!("stream name is {} bytes, limit {limit} for this tenant", stream.len()),
                ));
            }
            namespace.stored_name(stream)
        }
        None => stream.to_string(),
    };
    logbook::validate_stream_name(&stored).map_err(|_| Value::error("ERR", "invalid stream name"))?;
    Ok(stored)
}

/// Runs an extension command (authenticated callers only: the connection core routes none
/// before AUTH).
pub(crate) fn execute_extension(shared: &Shared, session: &Session, name: &'static str, args: Vec<Vec<u8>>) -> Value {
    let who = match identity(session) {
        Ok(who) => who,
        Err(reply) => return reply,
    };
    match shared.config.extensions.find(name.as_bytes()) {
        Some(extension) => extension.call(&shared.store, who.namespace(), args),
        None => Value::error("ERR", &format!("unknown command '{name}'")),
    }
}

/// An engine error's message without the "invalid input: " prefix (input errors only; any
/// other error goes through `append::store_error`, which hides server paths).
fn plain(err: &logbook::Error) -> String {
    match err {
        logbook::Error::InvalidInput(msg) => msg.clone(),
        other => match append::store_error(other) {
            Value::Error(text) => text,
            _ => "error".to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenants_name_length_error_counts_its_own_name() {
        let acme = Identity::Tenant(logbook::Namespace::new("acme").unwrap());
        let limit = logbook::MAX_STREAM_NAME_BYTES - "acme:".len();
        assert!(store_name(&acme, &"s".repeat(limit)).is_ok());
        let Err(Value::Error(text)) = store_name(&acme, &"s".repeat(1024)) else { panic!() };
        assert_eq!(text, format!("ERR stream name is 1024 bytes, limit {limit} for this tenant"));
        assert!(!text.contains("1029") && !text.contains("acme"), "{text}");
        let Err(Value::Error(text)) = store_name(&acme, &"s".repeat(1025)) else { panic!() };
        assert!(text.contains("1025 bytes"), "{text}");
        assert!(store_name(&Identity::Open, &"s".repeat(1024)).is_ok());
    }
}
