//! PING, HELLO, AUTH, COMMAND (QUIT is answered by the dispatcher): the commands allowed
//! before AUTH.

use crate::auth::AuthError;
use crate::connection::Session;
use crate::Shared;
use logbook_protocol::{Credentials, ProtocolVersion, Value};

/// `PING` -> `+PONG`; `PING msg` -> the message as a bulk string.
pub(super) fn ping(message: Option<Vec<u8>>) -> Value {
    match message {
        Some(message) => Value::BulkString(message),
        None => Value::SimpleString("PONG".into()),
    }
}

/// `AUTH <tenant> <token>`: `+OK`, or `-NOPERM` for a wrong tenant/token pair.
pub(super) fn auth(shared: &Shared, session: &mut Session, credentials: &Credentials) -> Value {
    match shared.auth.authenticate(&credentials.tenant, &credentials.token) {
        Ok(identity) => {
            session.identity = Some(identity);
            Value::ok()
        }
        Err(AuthError::NotConfigured) => {
            Value::error("ERR", "AUTH called but no tenants are configured; this daemon is open")
        }
        Err(AuthError::Invalid) => Value::error("NOPERM", "invalid tenant or token"),
    }
}

/// `HELLO [2|3] [AUTH <tenant> <token>]`: authenticates (if asked), switches the protocol,
/// and replies a map of server facts, like Redis.
pub(super) fn hello(
    shared: &Shared,
    session: &mut Session,
    protover: Option<ProtocolVersion>,
    credentials: Option<Credentials>,
) -> Value {
    if let Some(credentials) = credentials {
        let reply = auth(shared, session, &credentials);
        if matches!(reply, Value::Error(_)) {
            return reply;
        }
    }
    if let Some(proto) = protover {
        session.proto = proto;
    }
    let proto_number = match session.proto {
        ProtocolVersion::Resp2 => 2,
        ProtocolVersion::Resp3 => 3,
    };
    let tenant = match &session.identity {
        Some(identity) => Value::bulk(identity.label()),
        None => Value::Null,
    };
    Value::Map(vec![
        (Value::bulk("server"), Value::bulk("logbook")),
        (Value::bulk("version"), Value::bulk(env!("CARGO_PKG_VERSION"))),
        (Value::bulk("proto"), Value::Integer(proto_number)),
        (Value::bulk("id"), Value::Integer(crate::pipeline::as_i64(session.id))),
        (Value::bulk("mode"), Value::bulk("standalone")),
        (Value::bulk("role"), Value::bulk("master")),
        (Value::bulk("modules"), Value::Array(Vec::new())),
        (Value::bulk("tenant"), tenant),
    ])
}

/// `COMMAND [LIST|COUNT|DOCS|INFO]`: the grammar's and the extensions' command names (LIST, or
/// no subcommand), their number (COUNT), their documentation (DOCS, in Redis's shape, so
/// redis-cli's `help` and typing hints show logbook's commands), or no command details (INFO:
/// an empty array, which clients such as redis-cli accept). Nothing but the grammar.
pub(super) fn command_info(shared: &Shared, subcommand: Option<&str>, names: &[String]) -> Value {
    let mut all = logbook_protocol::command_names();
    all.extend(shared.config.extensions.names());
    match subcommand {
        None | Some("list") => Value::Array(all.iter().map(|name| Value::bulk(name.to_ascii_lowercase())).collect()),
        Some("count") => Value::Integer(all.len() as i64),
        Some("docs") => {
            let extension_docs = shared.config.extensions.docs();
            let mut docs: Vec<&logbook_protocol::CommandDoc> = logbook_protocol::command_docs().collect();
            docs.extend(&extension_docs);
            logbook_protocol::docs_reply(docs, names)
        }
        Some("info") => Value::Array(Vec::new()),
        Some(_) => Value::error("ERR", "unknown COMMAND subcommand; try LIST, COUNT, DOCS or INFO"),
    }
}
