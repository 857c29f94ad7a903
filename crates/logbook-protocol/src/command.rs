//! Turns a request's arguments into a typed [`Command`]. The grammar is
//! listed in the module doc of `protocol`.

use serde_json::Value as Json;
use thiserror::Error;
use uuid::Uuid;

use super::docs::{ArgDoc, ArgKind, CommandDoc};
use super::resp::{ProtocolVersion, Value};

pub use logbook::{ExpectedVersion, MAX_EVENT_TYPE_BYTES, MAX_STREAM_NAME_BYTES};
/// COUNT used by READ and READALL when none is given (capped by `max_count`).
pub const DEFAULT_COUNT: u64 = 1000;
/// COUNT used by GROUP READ when none is given (capped by `max_count`).
pub const DEFAULT_GROUP_COUNT: u64 = 10;
/// A consumer group's ACKWAIT when GROUP CREATE gives none, milliseconds.
pub const DEFAULT_ACK_WAIT_MS: u64 = 30_000;
/// Longest ACKWAIT, milliseconds (one day).
pub const MAX_ACK_WAIT_MS: u64 = 86_400_000;

/// Bounds on what one command may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandLimits {
    /// Most events in one APPENDMANY.
    pub max_events_per_append: usize,
    /// Largest COUNT accepted by READ, READALL and GROUP READ.
    pub max_count: u64,
    /// Most positions in one GROUP ACK.
    pub max_ack_positions: usize,
}

impl Default for CommandLimits {
    fn default() -> Self {
        CommandLimits { max_events_per_append: 10_000, max_count: 100_000, max_ack_positions: 1000 }
    }
}

/// One part of an APPENDBATCH: `{"stream": s, "expected": "any"|"none"|"exists"|n, "events": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPartSpec {
    pub stream: String,
    /// Absent means `any`.
    pub expected: ExpectedVersion,
    pub events: Vec<NewEventSpec>,
}

/// Tenant and token from AUTH or HELLO ... AUTH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub tenant: String,
    pub token: Vec<u8>,
}

/// One event to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEventSpec {
    pub event_type: String,
    /// APPEND: the raw bytes as sent. APPENDMANY: the compact JSON text of
    /// the event's `data` value (object keys come out sorted).
    pub data: Vec<u8>,
    pub id: Option<Uuid>,
    /// JSON text of the meta object, or empty when there is none. APPEND
    /// keeps the client's bytes; APPENDMANY re-serializes compactly.
    pub meta: Vec<u8>,
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ping {
        message: Option<Vec<u8>>,
    },
    Hello {
        protover: Option<ProtocolVersion>,
        auth: Option<Credentials>,
    },
    Auth(Credentials),
    Quit,
    Append {
        stream: String,
        event: NewEventSpec,
        expected: ExpectedVersion,
    },
    AppendMany {
        stream: String,
        events: Vec<NewEventSpec>,
        expected: ExpectedVersion,
    },
    /// `APPENDBATCH <json>`: parts appended atomically, all or none, in order.
    AppendBatch {
        parts: Vec<BatchPartSpec>,
    },
    Read {
        stream: String,
        /// `None`: version 1 forwards, the last version with `reverse`.
        from: Option<u64>,
        count: u64,
        reverse: bool,
    },
    ReadAll {
        from: u64,
        count: u64,
        block_ms: Option<u64>,
        prefix: Option<String>,
        /// Empty means every type.
        types: Vec<String>,
    },
    Version {
        stream: String,
    },
    Head,
    Info {
        /// Lower-cased.
        section: Option<String>,
    },
    /// `STREAMS [PREFIX p] [AFTER name] [COUNT n]`: one page of the stream listing.
    Streams {
        prefix: Option<String>,
        /// Exclusive: the last name of the previous page.
        after: Option<String>,
        count: u64,
    },
    /// `DELETE <stream> [EXPECTED ...]`: deletes a stream (a tombstone).
    Delete {
        stream: String,
        expected: ExpectedVersion,
    },
    /// `COMPACT`: runs the retention policy now (admin).
    Compact,
    /// `BACKUP <name>`: copies the store to `<backup_dir>/<name>` (admin).
    Backup {
        /// One path component: see [`MAX_BACKUP_NAME_BYTES`].
        name: String,
    },
    /// `GROUP CREATE <group> [FROM p] [PREFIX s] [TYPE t]... [ACKWAIT ms]`: a consumer group on `$all`.
    GroupCreate {
        group: String,
        /// `None`: from position 1.
        from: Option<u64>,
        prefix: Option<String>,
        /// Empty means every type.
        types: Vec<String>,
        /// `None`: [`DEFAULT_ACK_WAIT_MS`].
        ack_wait_ms: Option<u64>,
    },
    /// `GROUP READ <group> <consumer> [COUNT n] [BLOCK ms]`.
    GroupRead {
        group: String,
        consumer: String,
        count: u64,
        block_ms: Option<u64>,
    },
    /// `GROUP ACK <group> <position>...`.
    GroupAck {
        group: String,
        positions: Vec<u64>,
    },
    /// `GROUP INFO <group>`.
    GroupInfo {
        group: String,
    },
    /// `GROUP DELETE <group>`.
    GroupDelete {
        group: String,
    },
    /// `COMMAND [LIST|COUNT|DOCS|INFO] ...`: the grammar's command names (allowed before AUTH;
    /// it reveals nothing but the grammar). Lower-cased subcommand; later arguments ignored.
    CommandInfo {
        subcommand: Option<String>,
        /// The command names after the subcommand (DOCS and INFO describe only those).
        names: Vec<String>,
    },
}

/// Why a request was rejected. The connection stays usable except after
/// `Protocol`, which (like Redis) should close it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    #[error("unknown command '{0}'")]
    UnknownCommand(String),
    #[error("wrong number of arguments for '{0}' command")]
    WrongArity(&'static str),
    #[error("{0}")]
    Syntax(String),
    #[error("{0}")]
    TooBig(String),
    /// The request was not an array of strings.
    #[error("Protocol error: {0}")]
    Protocol(String),
}

impl CommandError {
    /// The error code for the reply line: `TOOBIG` or `ERR`.
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::TooBig(_) => "TOOBIG",
            _ => "ERR",
        }
    }

    /// The reply to send: `-CODE message`.
    pub fn to_value(&self) -> Value {
        Value::error(self.code(), &self.to_string())
    }
}

fn syntax(msg: impl Into<String>) -> CommandError {
    CommandError::Syntax(msg.into())
}

/// Quotes a client-supplied argument for an error message: lossy UTF-8,
/// control characters escaped (a raw CR/LF would break the reply line),
/// and truncated so a 4 MiB argument is not echoed back.
fn show(arg: &[u8]) -> String {
    const MAX_CHARS: usize = 64;
    let text = String::from_utf8_lossy(arg);
    let mut shown: String = text.chars().take(MAX_CHARS).flat_map(char::escape_debug).collect();
    if text.chars().nth(MAX_CHARS).is_some() {
        shown.push_str("...");
    }
    shown
}

/// Turns a parsed request into its arguments. Requests are arrays of bulk
/// (or simple) strings; inline commands already parse to that shape. An
/// empty array yields no arguments: skip it without replying.
pub fn args_from_value(value: Value) -> Result<Vec<Vec<u8>>, CommandError> {
    let Value::Array(items) = value else {
        return Err(CommandError::Protocol(format!("expected an array of bulk strings, got {}", kind_name(&value))));
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::BulkString(bytes) => Ok(bytes),
            Value::SimpleString(text) => Ok(text.into_bytes()),
            other => Err(CommandError::Protocol(format!(
                "expected bulk strings in request array, got {}",
                kind_name(&other)
            ))),
        })
        .collect()
}

fn kind_name(value: &Value) -> &'static str {
    match value {
        Value::SimpleString(_) => "simple string",
        Value::Error(_) => "error",
        Value::Integer(_) => "integer",
        Value::BulkString(_) => "bulk string",
        Value::Null => "null",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        Value::Set(_) => "set",
        Value::Push(_) => "push",
        Value::Double(_) => "double",
        Value::Boolean(_) => "boolean",
        Value::BigNumber(_) => "big number",
        Value::Verbatim { .. } => "verbatim string",
    }
}

// ---------------------------------------------------------------------------
// Argument cursor.

/// The arguments after the command name.
struct Args {
    command: &'static str,
    rest: std::vec::IntoIter<Vec<u8>>,
}

impl Args {
    fn next(&mut self) -> Option<Vec<u8>> {
        self.rest.next()
    }

    /// A positional argument; missing means wrong arity.
    fn required(&mut self) -> Result<Vec<u8>, CommandError> {
        self.rest.next().ok_or(CommandError::WrongArity(self.command))
    }

    /// The value after an option keyword.
    fn value_of(&mut self, option: &str) -> Result<Vec<u8>, CommandError> {
        self.rest.next().ok_or_else(|| syntax(format!("{option} needs a value")))
    }

    /// Fixed-arity commands: nothing may follow.
    fn finish(&mut self) -> Result<(), CommandError> {
        match self.rest.next() {
            Some(_) => Err(CommandError::WrongArity(self.command)),
            None => Ok(()),
        }
    }

    fn unknown_option(&self, option: &[u8]) -> CommandError {
        syntax(format!("unknown {} option '{}'", self.command, show(option)))
    }
}

/// Stores an option's value, rejecting a second occurrence.
fn once<T>(slot: &mut Option<T>, option: &str, value: T) -> Result<(), CommandError> {
    if slot.is_some() {
        return Err(syntax(format!("{option} given more than once")));
    }
    *slot = Some(value);
    Ok(())
}

// ---------------------------------------------------------------------------
// Argument value parsers.

/// Non-empty UTF-8 of at most `max` bytes, optionally without control chars.
fn text(arg: Vec<u8>, what: &str, max: usize, allow_control: bool) -> Result<String, CommandError> {
    let text =
        String::from_utf8(arg).map_err(|e| syntax(format!("{what} must be UTF-8, got '{}'", show(e.as_bytes()))))?;
    check_text(text, what, max, allow_control)
}

/// An argument of an extension command (one a crate above the daemon adds): non-empty UTF-8
/// of at most `max` bytes without control characters; the error names `what`.
pub fn text_argument(arg: Vec<u8>, what: &str, max: usize) -> Result<String, CommandError> {
    text(arg, what, max, false)
}

fn check_text(text: String, what: &str, max: usize, allow_control: bool) -> Result<String, CommandError> {
    if text.is_empty() {
        return Err(syntax(format!("{what} must not be empty")));
    }
    if text.len() > max {
        return Err(syntax(format!("{what} is {} bytes, at most {max} allowed", text.len())));
    }
    if !allow_control && text.chars().any(char::is_control) {
        return Err(syntax(format!("{what} must not contain control characters, got '{}'", show(text.as_bytes()))));
    }
    Ok(text)
}

fn stream_name(arg: Vec<u8>) -> Result<String, CommandError> {
    text(arg, "stream name", MAX_STREAM_NAME_BYTES, false)
}

fn event_type(arg: Vec<u8>) -> Result<String, CommandError> {
    text(arg, "event type", MAX_EVENT_TYPE_BYTES, true)
}

/// Strict decimal: digits only (no sign, no spaces), fits in u64.
fn number(arg: &[u8], option: &str) -> Result<u64, CommandError> {
    let parsed = std::str::from_utf8(arg)
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok());
    parsed.ok_or_else(|| syntax(format!("{option} wants a non-negative integer, got '{}'", show(arg))))
}

fn count(arg: &[u8], limits: &CommandLimits) -> Result<u64, CommandError> {
    let n = number(arg, "COUNT")?;
    if n == 0 || n > limits.max_count {
        return Err(syntax(format!("COUNT must be between 1 and {}, got {n}", limits.max_count)));
    }
    Ok(n)
}

fn default_count(limits: &CommandLimits) -> u64 {
    DEFAULT_COUNT.min(limits.max_count)
}

fn expected_version(arg: &[u8]) -> Result<ExpectedVersion, CommandError> {
    let lower = arg.to_ascii_lowercase();
    match lower.as_slice() {
        b"any" => Ok(ExpectedVersion::Any),
        b"none" | b"0" => Ok(ExpectedVersion::NoStream),
        b"exists" => Ok(ExpectedVersion::Exists),
        // "00", "000", ... are 0 as well: map them like "0" so `Exact(0)` never escapes.
        _ => number(arg, "EXPECTED")
            .map(|n| if n == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(n) })
            .map_err(|_| syntax(format!("EXPECTED wants any|none|exists|<n>, got '{}'", show(arg)))),
    }
}

/// Hyphenated UUIDs only (`8-4-4-4-12`), so ids look the same everywhere.
fn uuid(text: &str, what: &str) -> Result<Uuid, CommandError> {
    const HYPHENATED_LEN: usize = 36;
    let parsed = (text.len() == HYPHENATED_LEN).then(|| Uuid::parse_str(text).ok()).flatten();
    parsed.ok_or_else(|| syntax(format!("{what} wants a hyphenated UUID, got '{}'", show(text.as_bytes()))))
}

/// META must be a JSON object; the client's bytes are kept as sent.
fn meta_object(arg: Vec<u8>) -> Result<Vec<u8>, CommandError> {
    match serde_json::from_slice::<Json>(&arg) {
        Ok(Json::Object(_)) => Ok(arg),
        Ok(other) => Err(syntax(format!("META must be a JSON object, got {}", json_kind(&other)))),
        Err(e) => Err(syntax(format!("META must be a JSON object: {e}"))),
    }
}

fn json_kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn is_keyword(arg: &[u8], keyword: &str) -> bool {
    arg.eq_ignore_ascii_case(keyword.as_bytes())
}

// ---------------------------------------------------------------------------
// Commands.

type Parser = fn(&mut Args, &CommandLimits) -> Result<Command, CommandError>;

const STREAM: ArgDoc = ArgDoc::new("stream", ArgKind::Key);
const EXPECTED: ArgDoc = ArgDoc::option(
    "EXPECTED",
    "expected",
    ArgKind::OneOf(&[
        ArgDoc::keyword("any"),
        ArgDoc::keyword("none"),
        ArgDoc::keyword("exists"),
        ArgDoc::new("version", ArgKind::Integer),
    ]),
);
const SINCE: &str = "0.1.0";
const GROUP_NAME: ArgDoc = ArgDoc::new("group", ArgKind::String);
/// Longest BACKUP name.
pub const MAX_BACKUP_NAME_BYTES: usize = 128;

/// The grammar: each command's documentation (`COMMAND DOCS`, see `docs`) and its parser.
const COMMANDS: &[(CommandDoc, Parser)] = &[
    (
        CommandDoc {
            name: "PING",
            summary: "Replies PONG, or the message: checks the connection",
            group: "connection",
            since: SINCE,
            arguments: &[ArgDoc::new("message", ArgKind::String).optional()],
        },
        ping,
    ),
    (
        CommandDoc {
            name: "HELLO",
            summary: "Chooses RESP2 or RESP3 and, optionally, authenticates; replies the server's details",
            group: "connection",
            since: SINCE,
            arguments: &[
                ArgDoc::new("protover", ArgKind::Integer).optional(),
                ArgDoc {
                    name: "auth",
                    kind: ArgKind::Block(&[
                        ArgDoc::new("tenant", ArgKind::String),
                        ArgDoc::new("token", ArgKind::String),
                    ]),
                    token: Some("AUTH"),
                    optional: true,
                    multiple: false,
                },
            ],
        },
        hello,
    ),
    (
        CommandDoc {
            name: "AUTH",
            summary: "Authenticates the connection as a tenant (or the admin)",
            group: "connection",
            since: SINCE,
            arguments: &[ArgDoc::new("tenant", ArgKind::String), ArgDoc::new("token", ArgKind::String)],
        },
        auth,
    ),
    (
        CommandDoc {
            name: "QUIT",
            summary: "Closes the connection after the reply",
            group: "connection",
            since: SINCE,
            arguments: &[],
        },
        quit,
    ),
    (
        CommandDoc {
            name: "APPEND",
            summary: "Appends one event to a stream; replies [version, position] once it is durable",
            group: "stream",
            since: SINCE,
            arguments: &[
                STREAM,
                ArgDoc::new("type", ArgKind::String),
                ArgDoc::new("data", ArgKind::String),
                EXPECTED,
                ArgDoc::option("ID", "uuid", ArgKind::String),
                ArgDoc::option("META", "json-object", ArgKind::String),
            ],
        },
        append,
    ),
    (
        CommandDoc {
            name: "APPENDMANY",
            summary: "Appends a JSON array of events to a stream, all or none; replies [first_version, last_version, last_position]",
            group: "stream",
            since: SINCE,
            arguments: &[STREAM, ArgDoc::new("events-json", ArgKind::String), EXPECTED],
        },
        append_many,
    ),
    (
        CommandDoc {
            name: "APPENDBATCH",
            summary: "Appends to several streams at once, all parts or none; replies [first_version, last_version, last_position] per part",
            group: "stream",
            since: SINCE,
            arguments: &[ArgDoc::new("parts-json", ArgKind::String)],
        },
        append_batch,
    ),
    (
        CommandDoc {
            name: "READ",
            summary: "Reads a stream's events from a version, forwards or backwards (REV)",
            group: "stream",
            since: SINCE,
            arguments: &[
                STREAM,
                ArgDoc::option("FROM", "version", ArgKind::Integer),
                ArgDoc::option("COUNT", "count", ArgKind::Integer),
                ArgDoc::flag("REV"),
            ],
        },
        read,
    ),
    (
        CommandDoc {
            name: "READALL",
            summary: "Reads the global log from a position, optionally filtered and waiting for new events (BLOCK)",
            group: "stream",
            since: SINCE,
            arguments: &[
                ArgDoc::option("FROM", "position", ArgKind::Integer),
                ArgDoc::option("COUNT", "count", ArgKind::Integer),
                ArgDoc::option("BLOCK", "milliseconds", ArgKind::Integer),
                ArgDoc::option("PREFIX", "stream-prefix", ArgKind::String),
                ArgDoc::option("TYPE", "type", ArgKind::String).multiple(),
            ],
        },
        read_all,
    ),
    (
        CommandDoc {
            name: "VERSION",
            summary: "Replies a stream's current version (0: no such stream)",
            group: "stream",
            since: SINCE,
            arguments: &[STREAM],
        },
        version,
    ),
    (
        CommandDoc {
            name: "HEAD",
            summary: "Replies the global log's last position",
            group: "stream",
            since: SINCE,
            arguments: &[],
        },
        head,
    ),
    (
        CommandDoc {
            name: "INFO",
            summary: "Replies the server's and the store's figures, as Redis's INFO does",
            group: "server",
            since: SINCE,
            arguments: &[ArgDoc::new("section", ArgKind::String).optional()],
        },
        info,
    ),
    (
        CommandDoc {
            name: "STREAMS",
            summary: "Lists streams in name order, a page at a time; replies [name, version] pairs (AFTER: the previous page's last name)",
            group: "stream",
            since: SINCE,
            arguments: &[
                ArgDoc::option("PREFIX", "stream-prefix", ArgKind::String),
                ArgDoc::option("AFTER", "stream", ArgKind::String),
                ArgDoc::option("COUNT", "count", ArgKind::Integer),
            ],
        },
        streams,
    ),
    (
        CommandDoc {
            name: "DELETE",
            summary: "Deletes a stream for good (a tombstone); replies the tombstone's position",
            group: "stream",
            since: SINCE,
            arguments: &[STREAM, EXPECTED],
        },
        delete,
    ),
    (
        CommandDoc {
            name: "COMPACT",
            summary: "Runs the retention policy now (admin); replies what it did",
            group: "server",
            since: SINCE,
            arguments: &[],
        },
        compact_command,
    ),
    (
        CommandDoc {
            name: "BACKUP",
            summary: "Copies the live store to <backup_dir>/<name> (admin); replies what it copied",
            group: "server",
            since: SINCE,
            arguments: &[ArgDoc::new("name", ArgKind::String)],
        },
        backup,
    ),
    (
        CommandDoc {
            name: "GROUP",
            summary: "Consumer groups on the global log: CREATE, READ (each event to one consumer), ACK, INFO, DELETE",
            group: "stream",
            since: SINCE,
            arguments: &[ArgDoc::new(
                "subcommand",
                ArgKind::OneOf(&[
                    ArgDoc::new(
                        "create",
                        ArgKind::Block(&[
                            ArgDoc::keyword("CREATE"),
                            GROUP_NAME,
                            ArgDoc::option("FROM", "position", ArgKind::Integer),
                            ArgDoc::option("PREFIX", "stream-prefix", ArgKind::String),
                            ArgDoc::option("TYPE", "type", ArgKind::String).multiple(),
                            ArgDoc::option("ACKWAIT", "milliseconds", ArgKind::Integer),
                        ]),
                    ),
                    ArgDoc::new(
                        "read",
                        ArgKind::Block(&[
                            ArgDoc::keyword("READ"),
                            GROUP_NAME,
                            ArgDoc::new("consumer", ArgKind::String),
                            ArgDoc::option("COUNT", "count", ArgKind::Integer),
                            ArgDoc::option("BLOCK", "milliseconds", ArgKind::Integer),
                        ]),
                    ),
                    ArgDoc::new(
                        "ack",
                        ArgKind::Block(&[
                            ArgDoc::keyword("ACK"),
                            GROUP_NAME,
                            ArgDoc::new("position", ArgKind::Integer).multiple(),
                        ]),
                    ),
                    ArgDoc::new("info", ArgKind::Block(&[ArgDoc::keyword("INFO"), GROUP_NAME])),
                    ArgDoc::new("delete", ArgKind::Block(&[ArgDoc::keyword("DELETE"), GROUP_NAME])),
                ]),
            )],
        },
        group,
    ),
    (
        CommandDoc {
            name: "COMMAND",
            summary: "Replies the command names (LIST), their number (COUNT) or their documentation (DOCS)",
            group: "server",
            since: SINCE,
            arguments: &[
                ArgDoc::new(
                    "subcommand",
                    ArgKind::OneOf(&[
                        ArgDoc::keyword("LIST"),
                        ArgDoc::keyword("COUNT"),
                        ArgDoc::keyword("DOCS"),
                        ArgDoc::keyword("INFO"),
                    ]),
                )
                .optional(),
                ArgDoc::new("command-name", ArgKind::String).optional().multiple(),
            ],
        },
        command_info,
    ),
];

impl Command {
    /// Parses `args` (command name first, any case). Takes ownership so
    /// event payloads move instead of being copied.
    pub fn parse(args: Vec<Vec<u8>>, limits: &CommandLimits) -> Result<Command, CommandError> {
        let mut rest = args.into_iter();
        let Some(name) = rest.next() else {
            return Err(CommandError::Protocol("empty request".to_owned()));
        };
        let Some((doc, parser)) = COMMANDS.iter().find(|(doc, _)| is_keyword(&name, doc.name)) else {
            return Err(CommandError::UnknownCommand(show(&name)));
        };
        parser(&mut Args { command: doc.name, rest }, limits)
    }

    /// The upper-case command name, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Ping { .. } => "PING",
            Command::Hello { .. } => "HELLO",
            Command::Auth(_) => "AUTH",
            Command::Quit => "QUIT",
            Command::Append { .. } => "APPEND",
            Command::AppendMany { .. } => "APPENDMANY",
            Command::AppendBatch { .. } => "APPENDBATCH",
            Command::Read { .. } => "READ",
            Command::ReadAll { .. } => "READALL",
            Command::Version { .. } => "VERSION",
            Command::Head => "HEAD",
            Command::Info { .. } => "INFO",
            Command::Streams { .. } => "STREAMS",
            Command::Delete { .. } => "DELETE",
            Command::Compact => "COMPACT",
            Command::Backup { .. } => "BACKUP",
            Command::GroupCreate { .. }
            | Command::GroupRead { .. }
            | Command::GroupAck { .. }
            | Command::GroupInfo { .. }
            | Command::GroupDelete { .. } => "GROUP",
            Command::CommandInfo { .. } => "COMMAND",
        }
    }
}

fn ping(args: &mut Args, _: &CommandLimits) -> Result<Command, CommandError> {
    let message = args.next();
    args.finish()?;
    Ok(Command::Ping { message })
}

fn credentials(tenant: Vec<u8>, token: Vec<u8>) -> Result<Credentials, CommandError> {
    Ok(Credentials { tenant: text(tenant, "tenant", MAX_STREAM_NAME_BYTES, false)?, token })
}

fn protover(arg: &[u8]) -> Result<ProtocolVersion, CommandError> {
    match arg {
        b"2" => Ok(ProtocolVersion::Resp2),
        b"3" => Ok(ProtocolVersion::Resp3),
        _ => Err(syntax(format!("unsupported protocol version '{}', HELLO wants 2 or 3", show(arg)))),
    }
}

fn hello(args: &mut Args, _: &CommandLimits) -> Result<Command, CommandError> {
    let mut protover_arg = None;
    let mut auth = None;
    while let Some(arg) = args.next() {
        if is_keyword(&arg, "AUTH") {
            let tenant = args.value_of("AUTH")?;
            let token = args.value_of("AUTH")?;
            once(&mut auth, "AUTH", credentials(tenant, token)?)?;
        } else if protover_arg.is_none() && auth.is_none() {
            // Only the first argument may be the version.
            protover_arg = Some(protover(&arg)?);
        } else {
            return Err(args.unknown_option(&arg));
        }
    }
    Ok(Command::Hello { protover: protover_arg, auth })
}

fn auth(args: &mut Args, _: &CommandLimits) -> Result<Command, CommandError> {
    let tenant = args.required()?;
    let token = args.required()?;
    args.finish()?;
    Ok(Command::Auth(credentials(tenant, token)?))
}

fn quit(args: &mut Args, _: &CommandLimits) -> Result<Command, CommandError> {
    args.finish()?;
    Ok(Command::Quit)
}

fn append(args: &mut Args, _: &CommandLimits) -> Result<Command, CommandError> {
    let stream = args.required()?;
    let kind = args.required()?;
    let data = args.required()?;
    let (mut expected, mut id, mut meta) = (None, None, None);
    while let Some(option) = args.next() {
        if is_keyword(&option, "EXPECTED") {
            once(&mut expected, "EXPECTED", expected_version(&args.value_of("EXPECTED")?)?)?;
        } else if is_keyword(&option, "ID") {
            let value = args.value_of("ID")?;
            let value = String::from_utf8_lossy(&value);
            once(&mut id, "ID", uuid(&value, "ID")?)?;
        } else if is_keyword(&option, "META") {
            once(&mut meta, "META", meta_object(args.value_of("META")?)?)?;
        } else {
            return Err(args.unknown_option(&option));
        }
    }
    Ok(Command::Append {
        stream: stream_name(stream)?,
        event: NewEventSpec { event_type: event_type(kind)?, data, id, meta: meta.unwrap_or_default() },
        expected: expected.unwrap_or(ExpectedVersion::Any),
    })
}

fn append_many(args: &mut Args, limits: &CommandLimits) -> Result<Command, CommandError> {
    let stream = args.required()?;
    let events = args.required()?;
    let mut expected = None;
    while let Some(option) = args.next() {
        if is_keyword(&option, "EXPECTED") {
            once(&mut expected, "EXPECTED", expected_version(&args.value_of("EXPECTED")?)?)?;
        } else {
            return Err(args.unknown_option(&option));
        }
    }
    Ok(Command::AppendMany {
        stream: stream_name(stream)?,
        events: event_specs(&events, limits.max_events_per_append)?,
        expected: expected.unwrap_or(ExpectedVersion::Any),
    })
}

fn append_batch(args: &mut Args, limits: &CommandLimits) -> Result<Command, CommandError> {
    let raw = args.required()?;
    args.finish()?;
    Ok(Command::AppendBatch { parts: batch_parts(&raw, limits.max_events_per_append)? })
}

/// Parses the APPENDBATCH parts array; `max_events` counts the events of every part together.
fn batch_parts(raw: &[u8], max_events: usize) -> Result<Vec<BatchPartSpec>, CommandError> {
    let items = json_array(raw, "parts")?;
    let total: usize = items.iter().map(|p| p.get("events").and_then(Json::as_array).map_or(0, Vec::len)).sum();
    if total > max_events {
        return Err(CommandError::TooBig(format!("{total} events exceed the limit of {max_events} per append")));
    }
    let mut parts = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let at = |msg: &str| syntax(format!("parts[{index}]: {msg}"));
        let Json::Object(mut fields) = item else {
            return Err(at("must be a JSON object"));
        };
        let stream = match fields.remove("stream") {
            Some(Json::String(s)) => {
                check_text(s, "stream name", MAX_STREAM_NAME_BYTES, false).map_err(|e| at(&e.to_string()))?
            }
            _ => return Err(at("\"stream\" must be a string")),
        };
        let expected = match fields.remove("expected") {
            None | Some(Json::Null) => ExpectedVersion::Any,
            Some(Json::String(s)) => expected_version(s.as_bytes()).map_err(|e| at(&e.to_string()))?,
            Some(Json::Number(n)) => match n.as_u64() {
                Some(0) => ExpectedVersion::NoStream,
                Some(v) => ExpectedVersion::Exact(v),
                None => return Err(at("\"expected\" must be any, none, exists or a version")),
            },
            Some(_) => return Err(at("\"expected\" must be any, none, exists or a version")),
        };
        let events = match fields.remove("events") {
            Some(Json::Array(events)) if !events.is_empty() => events,
            Some(Json::Array(_)) => return Err(at("\"events\" must not be empty")),
            _ => return Err(at("\"events\" must be a JSON array")),
        };
        if let Some(unknown) = fields.keys().next() {
            return Err(at(&format!(
                "unknown field '{}' (expected stream, expected, events)",
                show(unknown.as_bytes())
            )));
        }
        let events = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| event_spec(i, e).map_err(|err| at(&err.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        parts.push(BatchPartSpec { stream, expected, events });
    }
    Ok(parts)
}

/// Parses the APPENDMANY events array. The whole document is bounded by the
/// RESP bulk limit before it gets here, so parsing it fully and then
/// counting is safe.
fn event_specs(raw: &[u8], max_events: usize) -> Result<Vec<NewEventSpec>, CommandError> {
    let items = json_array(raw, "events")?;
    if items.len() > max_events {
        return Err(CommandError::TooBig(format!(
            "{} events exceed the limit of {max_events} per append",
            items.len()
        )));
    }
    items.into_iter().enumerate().map(|(i, item)| event_spec(i, item)).collect()
}

/// A non-empty JSON array (of `what`: events, parts), its items still to be checked.
fn json_array(raw: &[u8], what: &str) -> Result<Vec<Json>, CommandError> {
    let items = match serde_json::from_slice::<Json>(raw) {
        Ok(Json::Array(items)) => items,
        Ok(other) => return Err(syntax(format!("{what} must be a JSON array of objects, got {}", json_kind(&other)))),
        Err(e) => return Err(syntax(format!("{what} must be a JSON array: {e}"))),
    };
    if items.is_empty() {
        return Err(syntax(format!("{what} array must not be empty")));
    }
    Ok(items)
}

fn compact(value: &Json) -> Result<Vec<u8>, CommandError> {
    serde_json::to_vec(value).map_err(|e| syntax(format!("cannot serialize JSON: {e}")))
}

/// One `{"type", "data", "id"?, "meta"?}` object. `null` for id or meta
/// counts as absent, since many clients serialize missing options that way.
fn event_spec(index: usize, item: Json) -> Result<NewEventSpec, CommandError> {
    let at = |msg: &str| syntax(format!("events[{index}]: {msg}"));
    let Json::Object(mut fields) = item else {
        return Err(at("must be a JSON object"));
    };
    let event_type = match fields.remove("type") {
        Some(Json::String(s)) => {
            check_text(s, "event type", MAX_EVENT_TYPE_BYTES, true).map_err(|e| at(&e.to_string()))?
        }
        _ => return Err(at("\"type\" must be a string")),
    };
    let data = match fields.remove("data") {
        Some(data) => compact(&data)?,
        None => return Err(at("\"data\" is required")),
    };
    let id = match fields.remove("id") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(uuid(&s, "\"id\"").map_err(|e| at(&e.to_string()))?),
        Some(_) => return Err(at("\"id\" must be a UUID string")),
    };
    let meta = match fields.remove("meta") {
        None | Some(Json::Null) => Vec::new(),
        Some(meta @ Json::Object(_)) => compact(&meta)?,
        Some(_) => return Err(at("\"meta\" must be a JSON object")),
    };
    if let Some(unknown) = fields.keys().next() {
        return Err(at(&format!("unknown field '{}' (expected type, data, id, meta)", show(unknown.as_bytes()))));
    }
    Ok(NewEventSpec { event_type, data, id, meta })
}

fn read(args: &mut Args, limits: &CommandLimits) -> Result<Command, CommandError> {
    let stream = stream_name(args.required()?)?;
    let (mut from, mut count_arg, mut reverse) = (None, None, None);
    while let Some(option) = args.next() {
        if is_keyword(&option, "FROM") {
            once(&mut from, "FROM", number(&args.value_of("FROM")?, "FROM")?)?;
        } else if is_keyword(&option, "COUNT") {
            once(&mut count_arg, "COUNT", count(&args.value_of("COUNT")?, limits)?)?;
        } else if is_keyword(&option, "REV") {
            once(&mut reverse, "REV", true)?;
        } else {
            return Err(args.unknown_option(&option));
        }
    }
    Ok(Command::Read {
        stream,
        from,
        count: count_arg.unwrap_or_else(|| default_count(limits)),
        reverse: reverse.unwrap_or(false),
    })
}

fn read_all(args: &mut Args, limits: &CommandLimits) -> Result<Command, CommandError> {
    let (mut from, mut count_arg, mut block_ms, mut prefix) = (None, None, None, None);
    let mut types = Vec::new();
    while let Some(option) = args.next() {
        if is_keyword(&option, "FROM") {
            once(&mut from, "FROM", number(&args.value_of("FROM")?, "FROM")?)?;
        } else if is_keyword(&option, "COUNT") {
            once(&mut count_arg, "COUNT", count(&args.value_of("COUNT")?, limits)?)?;
        } else if is_keyword(&option, "BLOCK") {
            once(&mut block_ms, "BLOCK", number(&args.value_of("BLOCK")?, "BLOCK")?)?;
        } else if is_keyword(&option, "PREFIX") {
            let value = text(args.value_of("PREFIX")?, "PREFIX", MAX_STREAM_NAME_BYTES, false)?;
            once(&mut prefix, "PREFIX", value)?;
        } else if is_keyword(&option, "TYPE") {
            types.push(event_type(args.value_of("TYPE")?)?);
        } else {
            return Err(args.unknown_option(&option));
        }
    }
    Ok(Command::ReadAll {
        from: from.unwrap_or(1),
        count: count_arg.unwrap_or_else(|| default_count(limits)),
        block_ms,
        prefix,
        types,
    })
}

fn version(args: &mut Args, _: &CommandLimits) -> Result<Command, CommandError> {
    let stream = args.required()?;
    args.finish()?;
    Ok(Command::Version { stream: stream_name(stream)? })
}

fn head(args: &mut Args, _: &CommandLimits) -> Result<Command, CommandError> {
    args.finish()?;
    Ok(Command::Head)
}

fn info(args: &mut Args, _: &CommandLimits) -> Result<Command, CommandError> {
    let section = args.next();
    args.finish()?;
    let section = match section {
        Some(s) => Some(text(s, "INFO section", MAX_STREAM_NAME_BYTES, false)?.to_ascii_lowercase()),
        None => None,
    };
    Ok(Command::Info { section })
}

fn streams(args: &mut Args, limits: &CommandLimits) -> Result<Command, CommandError> {
    let (mut prefix, mut after, mut count_arg) = (None, None, None);
    while let Some(option) = args.next() {
        if is_keyword(&option, "PREFIX") {
            let value = text(args.value_of("PREFIX")?, "PREFIX", MAX_STREAM_NAME_BYTES, false)?;
            once(&mut prefix, "PREFIX", value)?;
        } else if is_keyword(&option, "AFTER") {
            let value = text(args.value_of("AFTER")?, "AFTER", MAX_STREAM_NAME_BYTES, false)?;
            once(&mut after, "AFTER", value)?;
        } else if is_keyword(&option, "COUNT") {
            once(&mut count_arg, "COUNT", count(&args.value_of("COUNT")?, limits)?)?;
        } else {
            return Err(args.unknown_option(&option));
        }
    }
    Ok(Command::Streams { prefix, after, count: count_arg.unwrap_or_else(|| default_count(limits)) })
}

fn delete(args: &mut Args, _: &CommandLimits) -> Result<Command, CommandError> {
    let stream = stream_name(args.required()?)?;
    let mut expected = None;
    while let Some(option) = args.next() {
        if is_keyword(&option, "EXPECTED") {
            once(&mut expected, "EXPECTED", expected_version(&args.value_of("EXPECTED")?)?)?;
        } else {
            return Err(args.unknown_option(&option));
        }
    }
    Ok(Command::Delete { stream, expected: expected.unwrap_or(ExpectedVersion::Any) })
}

fn compact_command(args: &mut Args, _: &CommandLimits) -> Result<Command, CommandError> {
    args.finish()?;
    Ok(Command::Compact)
}

fn backup(args: &mut Args, _: &CommandLimits) -> Result<Command, CommandError> {
    let name = args.required()?;
    args.finish()?;
    Ok(Command::Backup { name: backup_name(name)? })
}

/// A BACKUP name: one path component of `[A-Za-z0-9._-]`, not starting with a dot (so never
/// `.` or `..`), at most [`MAX_BACKUP_NAME_BYTES`] bytes.
fn backup_name(arg: Vec<u8>) -> Result<String, CommandError> {
    let name = text(arg, "backup name", MAX_BACKUP_NAME_BYTES, false)?;
    if name.starts_with('.') || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return Err(syntax(format!(
            "backup name must be one directory name of letters, digits, '.', '_' and '-', not starting with '.', got '{}'",
            show(name.as_bytes())
        )));
    }
    Ok(name)
}

/// Longest group or consumer name a client may send, bytes (the store's limit on a group's
/// full name leaves room for a tenant's prefix).
pub const MAX_CLIENT_GROUP_NAME_BYTES: usize = 256;

/// A group or consumer name: non-empty UTF-8 without whitespace or control characters.
fn group_name(arg: Vec<u8>, what: &str) -> Result<String, CommandError> {
    let name = text(arg, what, MAX_CLIENT_GROUP_NAME_BYTES, false)?;
    if name.chars().any(char::is_whitespace) {
        return Err(syntax(format!("{what} must not contain whitespace, got '{}'", show(name.as_bytes()))));
    }
    Ok(name)
}

/// `GROUP <subcommand> ...`.
fn group(args: &mut Args, limits: &CommandLimits) -> Result<Command, CommandError> {
    let subcommand = args.required()?;
    let sub = subcommand.to_ascii_uppercase();
    match sub.as_slice() {
        b"CREATE" => group_create(args),
        b"READ" => group_read(args, limits),
        b"ACK" => group_ack(args, limits),
        b"INFO" | b"DELETE" => {
            let group = group_name(args.required()?, "group name")?;
            args.finish()?;
            Ok(if sub == b"INFO" { Command::GroupInfo { group } } else { Command::GroupDelete { group } })
        }
        _ => {
            Err(syntax(format!("unknown GROUP subcommand '{}' (CREATE, READ, ACK, INFO or DELETE)", show(&subcommand))))
        }
    }
}

fn group_create(args: &mut Args) -> Result<Command, CommandError> {
    let group = group_name(args.required()?, "group name")?;
    let (mut from, mut prefix, mut ack_wait_ms) = (None, None, None);
    let mut types = Vec::new();
    while let Some(option) = args.next() {
        if is_keyword(&option, "FROM") {
            let position = number(&args.value_of("FROM")?, "FROM")?;
            if position == 0 {
                return Err(syntax("FROM must be a position of at least 1"));
            }
            once(&mut from, "FROM", position)?;
        } else if is_keyword(&option, "PREFIX") {
            let value = text(args.value_of("PREFIX")?, "PREFIX", MAX_STREAM_NAME_BYTES, false)?;
            once(&mut prefix, "PREFIX", value)?;
        } else if is_keyword(&option, "TYPE") {
            if types.len() >= logbook::MAX_GROUP_EVENT_TYPES {
                return Err(syntax(format!("at most {} TYPE options", logbook::MAX_GROUP_EVENT_TYPES)));
            }
            types.push(event_type(args.value_of("TYPE")?)?);
        } else if is_keyword(&option, "ACKWAIT") {
            let ms = number(&args.value_of("ACKWAIT")?, "ACKWAIT")?;
            if ms == 0 || ms > MAX_ACK_WAIT_MS {
                return Err(syntax(format!("ACKWAIT must be between 1 and {MAX_ACK_WAIT_MS} ms, got {ms}")));
            }
            once(&mut ack_wait_ms, "ACKWAIT", ms)?;
        } else {
            return Err(syntax(format!("unknown GROUP CREATE option '{}'", show(&option))));
        }
    }
    Ok(Command::GroupCreate { group, from, prefix, types, ack_wait_ms })
}

fn group_read(args: &mut Args, limits: &CommandLimits) -> Result<Command, CommandError> {
    let group = group_name(args.required()?, "group name")?;
    let consumer = group_name(args.required()?, "consumer name")?;
    let (mut count_arg, mut block_ms) = (None, None);
    while let Some(option) = args.next() {
        if is_keyword(&option, "COUNT") {
            once(&mut count_arg, "COUNT", count(&args.value_of("COUNT")?, limits)?)?;
        } else if is_keyword(&option, "BLOCK") {
            once(&mut block_ms, "BLOCK", number(&args.value_of("BLOCK")?, "BLOCK")?)?;
        } else {
            return Err(syntax(format!("unknown GROUP READ option '{}'", show(&option))));
        }
    }
    let count = count_arg.unwrap_or_else(|| DEFAULT_GROUP_COUNT.min(limits.max_count));
    Ok(Command::GroupRead { group, consumer, count, block_ms })
}

fn group_ack(args: &mut Args, limits: &CommandLimits) -> Result<Command, CommandError> {
    let group = group_name(args.required()?, "group name")?;
    let mut positions = Vec::new();
    while let Some(arg) = args.next() {
        if positions.len() >= limits.max_ack_positions {
            return Err(CommandError::TooBig(format!(
                "GROUP ACK takes at most {} positions",
                limits.max_ack_positions
            )));
        }
        let position = number(&arg, "GROUP ACK position")?;
        if position == 0 {
            return Err(syntax("GROUP ACK position must be at least 1"));
        }
        positions.push(position);
    }
    if positions.is_empty() {
        return Err(CommandError::WrongArity(args.command));
    }
    Ok(Command::GroupAck { group, positions })
}

fn command_info(args: &mut Args, _: &CommandLimits) -> Result<Command, CommandError> {
    let subcommand = match args.next() {
        Some(s) => Some(text(s, "COMMAND subcommand", 64, false)?.to_ascii_lowercase()),
        None => None,
    };
    // Command names for DOCS and INFO; how many a request may carry is bounded by the RESP
    // limits on arguments.
    let mut names = Vec::new();
    while let Some(name) = args.next() {
        names.push(text(name, "command name", 64, false)?);
    }
    Ok(Command::CommandInfo { subcommand, names })
}

/// The names of the grammar's commands, upper-case, in the grammar's order.
pub fn command_names() -> Vec<&'static str> {
    COMMANDS.iter().map(|(doc, _)| doc.name).collect()
}

/// The documentation of the grammar's commands, in the grammar's order.
pub fn command_docs() -> impl Iterator<Item = &'static CommandDoc> {
    COMMANDS.iter().map(|(doc, _)| doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_takes_an_optional_subcommand_and_ignores_names() {
        let parse = |args: &[&str]| {
            Command::parse(args.iter().map(|a| a.as_bytes().to_vec()).collect(), &CommandLimits::default())
        };
        assert_eq!(parse(&["command"]).unwrap(), Command::CommandInfo { subcommand: None, names: vec![] });
        assert_eq!(
            parse(&["COMMAND", "Docs", "get", "set"]).unwrap(),
            Command::CommandInfo { subcommand: Some("docs".into()), names: vec!["get".into(), "set".into()] }
        );
        assert!(command_names().contains(&"READALL"));
    }

    const ID: &str = "67e55044-10b1-426f-9247-bb680e5fe0c8";

    fn parse_with(args: &[&str], limits: &CommandLimits) -> Result<Command, CommandError> {
        let args = args.iter().map(|a| a.as_bytes().to_vec()).collect();
        Command::parse(args, limits)
    }

    fn cmd(args: &[&str]) -> Result<Command, CommandError> {
        parse_with(args, &CommandLimits::default())
    }

    fn ok(args: &[&str]) -> Command {
        cmd(args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// Asserts a Syntax error whose message contains `needle`.
    fn syntax_err(args: &[&str], needle: &str) {
        match cmd(args) {
            Err(CommandError::Syntax(msg)) => {
                assert!(msg.contains(needle), "{args:?}: {msg:?} lacks {needle:?}")
            }
            other => panic!("{args:?}: expected syntax error, got {other:?}"),
        }
    }

    fn arity_err(args: &[&str], command: &'static str) {
        assert_eq!(cmd(args), Err(CommandError::WrongArity(command)), "{args:?}");
    }

    fn event(event_type: &str, data: &str) -> NewEventSpec {
        NewEventSpec { event_type: event_type.into(), data: data.as_bytes().to_vec(), id: None, meta: Vec::new() }
    }

    fn uuid_id() -> Uuid {
        Uuid::parse_str(ID).unwrap()
    }

    // --- errors and plumbing ---------------------------------------------

    #[test]
    fn error_display_and_codes() {
        let e = cmd(&["FOO", "x"]).unwrap_err();
        assert_eq!(e, CommandError::UnknownCommand("FOO".into()));
        assert_eq!(e.to_string(), "unknown command 'FOO'");
        assert_eq!(e.code(), "ERR");
        let e = CommandError::WrongArity("APPEND");
        assert_eq!(e.to_string(), "wrong number of arguments for 'APPEND' command");
        assert_eq!(e.to_value(), Value::Error("ERR wrong number of arguments for 'APPEND' command".into()));
        let e = CommandError::TooBig("too many".into());
        assert_eq!(e.code(), "TOOBIG");
        assert_eq!(e.to_value(), Value::Error("TOOBIG too many".into()));
    }

    #[test]
    fn unknown_command_name_is_escaped_and_truncated() {
        let e = cmd(&["FOO\r\nBAR"]).unwrap_err();
        assert_eq!(e.to_string(), "unknown command 'FOO\\r\\nBAR'");
        let long = "X".repeat(1000);
        let shown = cmd(&[&long]).unwrap_err().to_string();
        assert!(shown.len() < 100 && shown.ends_with("...'"), "{shown}");
    }

    #[test]
    fn empty_request_is_a_protocol_error() {
        assert!(matches!(Command::parse(vec![], &CommandLimits::default()), Err(CommandError::Protocol(_))));
    }

    #[test]
    fn args_from_value_accepts_string_arrays_only() {
        let v = Value::Array(vec![Value::bulk("PING"), Value::SimpleString("hi".into())]);
        assert_eq!(args_from_value(v), Ok(vec![b"PING".to_vec(), b"hi".to_vec()]));
        assert_eq!(args_from_value(Value::Array(vec![])), Ok(vec![]));
        for bad in [
            Value::bulk("PING"),
            Value::Null,
            Value::Integer(1),
            Value::Array(vec![Value::bulk("PING"), Value::Integer(1)]),
            Value::Array(vec![Value::Array(vec![])]),
        ] {
            let e = args_from_value(bad.clone()).unwrap_err();
            assert!(matches!(e, CommandError::Protocol(_)), "{bad:?}");
            assert!(e.to_string().starts_with("Protocol error: expected"), "{e}");
        }
    }

    #[test]
    fn from_wire_to_command() {
        let limits = crate::Limits::default();
        let (value, _) = crate::parse(b"append s t \"a b\" expected 3\r\n", &limits).unwrap().unwrap();
        let args = args_from_value(value).unwrap();
        assert_eq!(
            Command::parse(args, &CommandLimits::default()),
            Ok(Command::Append { stream: "s".into(), event: event("t", "a b"), expected: ExpectedVersion::Exact(3) })
        );
    }

    #[test]
    fn names() {
        assert_eq!(ok(&["readall"]).name(), "READALL");
        assert_eq!(ok(&["quit"]).name(), "QUIT");
    }

    // --- connection commands ---------------------------------------------

    #[test]
    fn ping() {
        assert_eq!(ok(&["PING"]), Command::Ping { message: None });
        assert_eq!(ok(&["ping", "hi"]), Command::Ping { message: Some(b"hi".to_vec()) });
        assert_eq!(ok(&["PiNg", ""]), Command::Ping { message: Some(vec![]) });
        arity_err(&["PING", "a", "b"], "PING");
    }

    #[test]
    fn hello() {
        let creds = Some(Credentials { tenant: "acme".into(), token: b"s3cret".to_vec() });
        assert_eq!(ok(&["HELLO"]), Command::Hello { protover: None, auth: None });
        assert_eq!(ok(&["hello", "3"]), Command::Hello { protover: Some(ProtocolVersion::Resp3), auth: None });
        assert_eq!(
            ok(&["HELLO", "2", "auth", "acme", "s3cret"]),
            Command::Hello { protover: Some(ProtocolVersion::Resp2), auth: creds.clone() }
        );
        assert_eq!(ok(&["HELLO", "AUTH", "acme", "s3cret"]), Command::Hello { protover: None, auth: creds });
        syntax_err(&["HELLO", "4"], "unsupported protocol version '4'");
        syntax_err(&["HELLO", "three"], "HELLO wants 2 or 3");
        syntax_err(&["HELLO", "3", "AUTH", "acme"], "AUTH needs a value");
        syntax_err(&["HELLO", "3", "AUTH", "a", "b", "AUTH", "a", "b"], "AUTH given more than once");
        syntax_err(&["HELLO", "AUTH", "a", "b", "3"], "unknown HELLO option '3'");
        syntax_err(&["HELLO", "3", "SETNAME", "x"], "unknown HELLO option 'SETNAME'");
        syntax_err(&["HELLO", "3", "AUTH", "", "tok"], "tenant must not be empty");
    }

    #[test]
    fn auth() {
        assert_eq!(
            ok(&["AUTH", "acme", "tok"]),
            Command::Auth(Credentials { tenant: "acme".into(), token: b"tok".to_vec() })
        );
        arity_err(&["AUTH", "acme"], "AUTH");
        arity_err(&["AUTH"], "AUTH");
        arity_err(&["auth", "a", "b", "c"], "AUTH");
        syntax_err(&["AUTH", "ac\nme", "tok"], "control characters");
    }

    #[test]
    fn quit() {
        assert_eq!(ok(&["QUIT"]), Command::Quit);
        assert_eq!(ok(&["quit"]), Command::Quit);
        arity_err(&["QUIT", "now"], "QUIT");
    }

    // --- APPEND ----------------------------------------------------------

    #[test]
    fn append_minimal() {
        assert_eq!(
            ok(&["APPEND", "orders-1", "OrderPlaced", "{\"total\":5}"]),
            Command::Append {
                stream: "orders-1".into(),
                event: event("OrderPlaced", "{\"total\":5}"),
                expected: ExpectedVersion::Any,
            }
        );
        arity_err(&["APPEND", "s", "t"], "APPEND");
        arity_err(&["APPEND"], "APPEND");
    }

    #[test]
    fn append_data_is_raw_bytes() {
        let args = vec![b"APPEND".to_vec(), b"s".to_vec(), b"t".to_vec(), vec![0, 255, b'\r', b'\n']];
        let Ok(Command::Append { event, .. }) = Command::parse(args, &CommandLimits::default()) else {
            panic!("raw data rejected");
        };
        assert_eq!(event.data, vec![0, 255, b'\r', b'\n']);
    }

    #[test]
    fn append_all_options_any_order() {
        let meta = "{\"user\": \"bob\"}";
        let expected = Command::Append {
            stream: "s".into(),
            event: NewEventSpec {
                event_type: "t".into(),
                data: b"d".to_vec(),
                id: Some(uuid_id()),
                meta: meta.as_bytes().to_vec(),
            },
            expected: ExpectedVersion::Exact(7),
        };
        let orders: [[&str; 6]; 3] = [
            ["EXPECTED", "7", "ID", ID, "META", meta],
            ["META", meta, "EXPECTED", "7", "ID", ID],
            ["id", ID, "meta", meta, "expected", "7"],
        ];
        for options in orders {
            let mut args = vec!["APPEND", "s", "t", "d"];
            args.extend(options);
            assert_eq!(ok(&args), expected, "{options:?}");
        }
    }

    #[test]
    fn expected_version_forms() {
        let cases = [
            ("any", ExpectedVersion::Any),
            ("ANY", ExpectedVersion::Any),
            ("none", ExpectedVersion::NoStream),
            ("0", ExpectedVersion::NoStream),
            ("000", ExpectedVersion::NoStream),
            ("Exists", ExpectedVersion::Exists),
            ("1", ExpectedVersion::Exact(1)),
            ("18446744073709551615", ExpectedVersion::Exact(u64::MAX)),
        ];
        for (arg, want) in cases {
            let Command::Append { expected, .. } = ok(&["APPEND", "s", "t", "d", "EXPECTED", arg]) else {
                panic!("not an append");
            };
            assert_eq!(expected, want, "{arg}");
            let Command::AppendMany { expected, .. } =
                ok(&["APPENDMANY", "s", "[{\"type\":\"t\",\"data\":1}]", "EXPECTED", arg])
            else {
                panic!("not an appendmany");
            };
            assert_eq!(expected, want, "{arg}");
        }
        for bad in ["foo", "-1", "+1", "1.5", "", " 1", "18446744073709551616"] {
            syntax_err(
                &["APPEND", "s", "t", "d", "EXPECTED", bad],
                &format!("EXPECTED wants any|none|exists|<n>, got '{bad}'"),
            );
        }
    }

    #[test]
    fn append_option_errors() {
        let base = ["APPEND", "s", "t", "d"];
        let with = |extra: &[&'static str]| -> Vec<&'static str> { [&base[..], extra].concat() };
        syntax_err(&with(&["EXPECTED", "1", "EXPECTED", "2"]), "EXPECTED given more than once");
        syntax_err(&with(&["ID", ID, "id", ID]), "ID given more than once");
        syntax_err(&with(&["META", "{}", "META", "{}"]), "META given more than once");
        syntax_err(&with(&["EXPECTED"]), "EXPECTED needs a value");
        syntax_err(&with(&["ID"]), "ID needs a value");
        syntax_err(&with(&["META"]), "META needs a value");
        syntax_err(&with(&["TTL", "5"]), "unknown APPEND option 'TTL'");
        syntax_err(&with(&["ID", "not-a-uuid"]), "ID wants a hyphenated UUID, got 'not-a-uuid'");
        syntax_err(&with(&["ID", "67e5504410b1426f9247bb680e5fe0c8"]), "hyphenated UUID");
        syntax_err(&with(&["ID", "67e55044-10b1-426f-9247-bb680e5fe0cX"]), "hyphenated UUID");
        syntax_err(&with(&["META", "{bad json"]), "META must be a JSON object");
        syntax_err(&with(&["META", "[1,2]"]), "META must be a JSON object, got an array");
        syntax_err(&with(&["META", "\"x\""]), "got a string");
    }

    #[test]
    fn stream_name_rules() {
        let max = "s".repeat(MAX_STREAM_NAME_BYTES);
        assert!(cmd(&["APPEND", &max, "t", "d"]).is_ok());
        assert!(cmd(&["VERSION", &max]).is_ok());
        let over = "s".repeat(MAX_STREAM_NAME_BYTES + 1);
        syntax_err(&["APPEND", &over, "t", "d"], "stream name is 1025 bytes, at most 1024 allowed");
        syntax_err(&["VERSION", ""], "stream name must not be empty");
        syntax_err(&["READ", "a\tb"], "stream name must not contain control characters");
        syntax_err(&["VERSION", "a\u{7f}"], "control characters");
        assert!(cmd(&["VERSION", "bestellungen-übersicht"]).is_ok());
        let args = vec![b"VERSION".to_vec(), vec![0xff, 0xfe]];
        assert!(matches!(
            Command::parse(args, &CommandLimits::default()),
            Err(CommandError::Syntax(m)) if m.contains("stream name must be UTF-8")
        ));
    }

    #[test]
    fn event_type_rules() {
        let max = "t".repeat(MAX_EVENT_TYPE_BYTES);
        assert!(cmd(&["APPEND", "s", &max, "d"]).is_ok());
        let over = "t".repeat(MAX_EVENT_TYPE_BYTES + 1);
        syntax_err(&["APPEND", "s", &over, "d"], "event type is 257 bytes, at most 256 allowed");
        syntax_err(&["APPEND", "s", "", "d"], "event type must not be empty");
        syntax_err(&["READALL", "TYPE", ""], "event type must not be empty");
    }

    // --- APPENDMANY ------------------------------------------------------

    fn many(events_json: &str) -> Result<Vec<NewEventSpec>, CommandError> {
        match cmd(&["APPENDMANY", "s", events_json])? {
            Command::AppendMany { events, .. } => Ok(events),
            other => panic!("{other:?}"),
        }
    }

    fn many_err(events_json: &str, needle: &str) {
        match many(events_json) {
            Err(CommandError::Syntax(msg)) => {
                assert!(msg.contains(needle), "{msg:?} lacks {needle:?}")
            }
            other => panic!("{events_json}: {other:?}"),
        }
    }

    #[test]
    fn append_many_minimal() {
        assert_eq!(
            ok(&["APPENDMANY", "s", r#"[{"type":"A","data":{"x": 1}}]"#]),
            Command::AppendMany {
                stream: "s".into(),
                events: vec![event("A", r#"{"x":1}"#)],
                expected: ExpectedVersion::Any,
            }
        );
        arity_err(&["APPENDMANY", "s"], "APPENDMANY");
    }

    #[test]
    fn append_many_all_fields() {
        let json = format!(
            r#"[ {{"type": "A", "data": [1, "two", null], "id": "{ID}", "meta": {{"by": "bob"}} }},
                 {{"type": "B", "data": "plain", "id": null, "meta": null}},
                 {{"data": 3.5, "type": "C"}} ]"#
        );
        let events = many(&json).unwrap();
        assert_eq!(
            events,
            vec![
                NewEventSpec {
                    event_type: "A".into(),
                    data: br#"[1,"two",null]"#.to_vec(),
                    id: Some(uuid_id()),
                    meta: br#"{"by":"bob"}"#.to_vec(),
                },
                event("B", "\"plain\""),
                event("C", "3.5"),
            ]
        );
    }

    #[test]
    fn append_many_data_with_several_keys_round_trips() {
        let events = many(r#"[{"type":"A","data":{"b":[1,{"c":true}],"a":"x"}}]"#).unwrap();
        let data: Json = serde_json::from_slice(&events[0].data).unwrap();
        assert_eq!(data, serde_json::json!({"a": "x", "b": [1, {"c": true}]}));
        assert!(!events[0].data.contains(&b' '), "compact");
    }

    #[test]
    fn append_many_with_expected_and_errors() {
        let json = r#"[{"type":"A","data":1}]"#;
        let Command::AppendMany { expected, .. } = ok(&["appendmany", "s", json, "expected", "exists"]) else {
            panic!("not an appendmany");
        };
        assert_eq!(expected, ExpectedVersion::Exists);
        syntax_err(&["APPENDMANY", "s", json, "EXPECTED", "1", "EXPECTED", "2"], "more than once");
        syntax_err(&["APPENDMANY", "s", json, "ID", ID], "unknown APPENDMANY option 'ID'");
        syntax_err(&["APPENDMANY", "s", json, "EXPECTED"], "EXPECTED needs a value");
        syntax_err(&["APPENDMANY", "", json], "stream name must not be empty");
    }

    #[test]
    fn append_many_bad_json() {
        many_err("not json", "events must be a JSON array");
        many_err(r#"{"type":"A","data":1}"#, "got an object");
        many_err("[]", "must not be empty");
        many_err("[1]", "events[0]: must be a JSON object");
        many_err(r#"[{"type":"A","data":1},{"data":1}]"#, r#"events[1]: "type" must be a string"#);
        many_err(r#"[{"type":5,"data":1}]"#, r#""type" must be a string"#);
        many_err(r#"[{"type":"","data":1}]"#, "event type must not be empty");
        many_err(r#"[{"type":"A"}]"#, r#""data" is required"#);
        many_err(r#"[{"type":"A","data":1,"id":"nope"}]"#, "hyphenated UUID, got 'nope'");
        many_err(r#"[{"type":"A","data":1,"id":7}]"#, r#""id" must be a UUID string"#);
        many_err(r#"[{"type":"A","data":1,"meta":[1]}]"#, r#""meta" must be a JSON object"#);
        many_err(r#"[{"type":"A","data":1,"extra":1}]"#, "unknown field 'extra'");
        let long_type = format!(r#"[{{"type":"{}","data":1}}]"#, "t".repeat(257));
        many_err(&long_type, "at most 256 allowed");
    }

    #[test]
    fn append_many_limit_edge() {
        let limits = CommandLimits { max_events_per_append: 3, ..CommandLimits::default() };
        let events = |n: usize| format!("[{}]", vec![r#"{"type":"A","data":0}"#; n].join(","));
        let run = |n: usize| parse_with(&["APPENDMANY", "s", &events(n)], &limits);
        assert!(matches!(run(3), Ok(Command::AppendMany { events, .. }) if events.len() == 3));
        let e = run(4).unwrap_err();
        assert_eq!(e, CommandError::TooBig("4 events exceed the limit of 3 per append".into()));
        assert_eq!(e.code(), "TOOBIG");
        // The default limit, at its edge.
        assert!(matches!(many(&events(10_000)), Ok(v) if v.len() == 10_000));
        assert!(matches!(many(&events(10_001)), Err(CommandError::TooBig(_))));
    }

    // --- APPENDBATCH -----------------------------------------------------

    #[test]
    fn append_batch_parts() {
        let json = format!(
            r#"[{{"stream": "order-1", "expected": "none", "events": [{{"type": "A", "data": {{"x": 1}}, "id": "{ID}"}}]}},
                {{"stream": "stock-9", "expected": 4, "events": [{{"type": "B", "data": 2}}, {{"type": "C", "data": 3}}]}},
                {{"stream": "log", "events": [{{"type": "D", "data": null}}]}},
                {{"stream": "x", "expected": 0, "events": [{{"type": "E", "data": 1}}]}},
                {{"stream": "y", "expected": "EXISTS", "events": [{{"type": "F", "data": 1}}]}}]"#
        );
        let Command::AppendBatch { parts } = ok(&["appendbatch", &json]) else { panic!("not a batch") };
        let expected: Vec<ExpectedVersion> = parts.iter().map(|p| p.expected).collect();
        assert_eq!(
            expected,
            [
                ExpectedVersion::NoStream,
                ExpectedVersion::Exact(4),
                ExpectedVersion::Any,
                ExpectedVersion::NoStream,
                ExpectedVersion::Exists
            ]
        );
        assert_eq!(parts[0].stream, "order-1");
        assert_eq!(parts[0].events[0].id, Some(uuid_id()));
        assert_eq!(parts[1].events, vec![event("B", "2"), event("C", "3")]);
        assert_eq!(ok(&["APPENDBATCH", &json]).name(), "APPENDBATCH");
        arity_err(&["APPENDBATCH"], "APPENDBATCH");
        arity_err(&["APPENDBATCH", &json, "EXPECTED"], "APPENDBATCH");
    }

    #[test]
    fn append_batch_errors_name_the_part() {
        let bad = |json: &str, needle: &str| syntax_err(&["APPENDBATCH", json], needle);
        bad("[]", "parts array must not be empty");
        bad(r#"{"stream":"s"}"#, "got an object");
        bad("nope", "parts must be a JSON array");
        bad("[1]", "parts[0]: must be a JSON object");
        bad(r#"[{"events":[{"type":"A","data":1}]}]"#, r#"parts[0]: "stream" must be a string"#);
        bad(r#"[{"stream":"","events":[{"type":"A","data":1}]}]"#, "parts[0]: stream name must not be empty");
        bad(r#"[{"stream":"s","events":[]}]"#, r#"parts[0]: "events" must not be empty"#);
        bad(r#"[{"stream":"s"}]"#, r#"parts[0]: "events" must be a JSON array"#);
        bad(r#"[{"stream":"s","expected":"soon","events":[{"type":"A","data":1}]}]"#, "parts[0]: ");
        bad(r#"[{"stream":"s","expected":-1,"events":[{"type":"A","data":1}]}]"#, r#"parts[0]: "expected" must be"#);
        bad(r#"[{"stream":"s","events":[{"type":"A","data":1}],"extra":1}]"#, "parts[0]: unknown field 'extra'");
        bad(
            r#"[{"stream":"s","events":[{"type":"A","data":1}]},{"stream":"t","events":[{"type":"A"}]}]"#,
            r#"parts[1]: events[0]: "data" is required"#,
        );
    }

    #[test]
    fn append_batch_limit_counts_every_part() {
        let limits = CommandLimits { max_events_per_append: 3, ..CommandLimits::default() };
        let part =
            |n: usize| format!(r#"{{"stream":"s","events":[{}]}}"#, vec![r#"{"type":"A","data":0}"#; n].join(","));
        let run = |parts: &[usize]| {
            let json = format!("[{}]", parts.iter().map(|&n| part(n)).collect::<Vec<_>>().join(","));
            parse_with(&["APPENDBATCH", &json], &limits)
        };
        assert!(matches!(run(&[1, 2]), Ok(Command::AppendBatch { parts }) if parts.len() == 2));
        assert_eq!(run(&[2, 2]).unwrap_err(), CommandError::TooBig("4 events exceed the limit of 3 per append".into()));
    }

    // --- READ ------------------------------------------------------------

    #[test]
    fn read() {
        let read = |from, count, reverse| Command::Read { stream: "s".into(), from, count, reverse };
        assert_eq!(ok(&["READ", "s"]), read(None, 1000, false));
        assert_eq!(ok(&["read", "s", "from", "5"]), read(Some(5), 1000, false));
        assert_eq!(ok(&["READ", "s", "COUNT", "10"]), read(None, 10, false));
        assert_eq!(ok(&["READ", "s", "REV"]), read(None, 1000, true));
        assert_eq!(ok(&["READ", "s", "FROM", "9", "COUNT", "2", "REV"]), read(Some(9), 2, true));
        assert_eq!(ok(&["READ", "s", "rev", "count", "2", "From", "9"]), read(Some(9), 2, true));
        arity_err(&["READ"], "READ");
        syntax_err(&["READ", "s", "REV", "REV"], "REV given more than once");
        syntax_err(&["READ", "s", "FROM", "1", "FROM", "2"], "FROM given more than once");
        syntax_err(&["READ", "s", "COUNT", "1", "COUNT", "2"], "COUNT given more than once");
        syntax_err(&["READ", "s", "FROM", "x"], "FROM wants a non-negative integer, got 'x'");
        syntax_err(&["READ", "s", "FROM", "-1"], "FROM wants a non-negative integer");
        syntax_err(&["READ", "s", "FROM"], "FROM needs a value");
        syntax_err(&["READ", "s", "COUNT", "ten"], "COUNT wants a non-negative integer");
        syntax_err(&["READ", "s", "LIMIT", "1"], "unknown READ option 'LIMIT'");
    }

    #[test]
    fn count_limit_edge() {
        assert!(matches!(ok(&["READ", "s", "COUNT", "1"]), Command::Read { count: 1, .. }));
        assert!(matches!(ok(&["READ", "s", "COUNT", "100000"]), Command::Read { count: 100_000, .. }));
        syntax_err(&["READ", "s", "COUNT", "0"], "COUNT must be between 1 and 100000, got 0");
        syntax_err(&["READ", "s", "COUNT", "100001"], "COUNT must be between 1 and 100000, got 100001");
        syntax_err(&["READALL", "COUNT", "100001"], "COUNT must be between 1 and 100000");
        // A max below the default caps the default too.
        let limits = CommandLimits { max_count: 50, ..CommandLimits::default() };
        assert!(matches!(parse_with(&["READ", "s"], &limits), Ok(Command::Read { count: 50, .. })));
        assert!(matches!(parse_with(&["READALL"], &limits), Ok(Command::ReadAll { count: 50, .. })));
    }

    // --- READALL ---------------------------------------------------------

    #[test]
    fn read_all() {
        assert_eq!(
            ok(&["READALL"]),
            Command::ReadAll { from: 1, count: 1000, block_ms: None, prefix: None, types: vec![] }
        );
        let full = Command::ReadAll {
            from: 42,
            count: 10,
            block_ms: Some(5000),
            prefix: Some("orders-".into()),
            types: vec!["A".into(), "B".into()],
        };
        assert_eq!(
            ok(&[
                "READALL", "FROM", "42", "COUNT", "10", "BLOCK", "5000", "PREFIX", "orders-", "TYPE", "A", "TYPE", "B"
            ]),
            full
        );
        assert_eq!(
            ok(&[
                "readall", "type", "A", "prefix", "orders-", "block", "5000", "type", "B", "count", "10", "from", "42"
            ]),
            full
        );
        assert!(matches!(ok(&["READALL", "BLOCK", "0"]), Command::ReadAll { block_ms: Some(0), .. }));
        syntax_err(&["READALL", "FROM", "1", "FROM", "1"], "FROM given more than once");
        syntax_err(&["READALL", "BLOCK", "1", "BLOCK", "1"], "BLOCK given more than once");
        syntax_err(&["READALL", "PREFIX", "a", "PREFIX", "b"], "PREFIX given more than once");
        syntax_err(&["READALL", "BLOCK", "soon"], "BLOCK wants a non-negative integer, got 'soon'");
        syntax_err(&["READALL", "FROM", "1e3"], "FROM wants a non-negative integer");
        syntax_err(&["READALL", "TYPE"], "TYPE needs a value");
        syntax_err(&["READALL", "PREFIX", ""], "PREFIX must not be empty");
        syntax_err(&["READALL", "STREAM", "x"], "unknown READALL option 'STREAM'");
    }

    // --- the rest --------------------------------------------------------

    #[test]
    fn streams_delete_compact_backup() {
        assert_eq!(ok(&["STREAMS"]), Command::Streams { prefix: None, after: None, count: 1000 });
        assert_eq!(
            ok(&["streams", "count", "5", "after", "order-2", "prefix", "order-"]),
            Command::Streams { prefix: Some("order-".into()), after: Some("order-2".into()), count: 5 }
        );
        syntax_err(&["STREAMS", "COUNT", "0"], "COUNT must be between 1 and 100000, got 0");
        syntax_err(&["STREAMS", "AFTER", ""], "AFTER must not be empty");
        syntax_err(&["STREAMS", "PREFIX", "a", "PREFIX", "b"], "PREFIX given more than once");
        syntax_err(&["STREAMS", "FROM", "x"], "unknown STREAMS option 'FROM'");
        assert_eq!(ok(&["DELETE", "s"]), Command::Delete { stream: "s".into(), expected: ExpectedVersion::Any });
        assert_eq!(
            ok(&["delete", "s", "expected", "4"]),
            Command::Delete { stream: "s".into(), expected: ExpectedVersion::Exact(4) }
        );
        arity_err(&["DELETE"], "DELETE");
        syntax_err(&["DELETE", "s", "EXPECTED", "maybe"], "EXPECTED wants any|none|exists|<n>, got 'maybe'");
        assert_eq!(ok(&["compact"]), Command::Compact);
        arity_err(&["COMPACT", "now"], "COMPACT");
        assert_eq!(ok(&["BACKUP", "nightly-2026.11.26_1"]), Command::Backup { name: "nightly-2026.11.26_1".into() });
        arity_err(&["BACKUP"], "BACKUP");
        arity_err(&["BACKUP", "a", "b"], "BACKUP");
        for bad in ["..", ".", ".hidden", "a/b", "../x", "a\\b", "a b", "é"] {
            syntax_err(&["BACKUP", bad], "backup name must be one directory name");
        }
        syntax_err(&["BACKUP", ""], "backup name must not be empty");
        syntax_err(&["BACKUP", &"x".repeat(129)], "backup name is 129 bytes, at most 128 allowed");
    }

    #[test]
    fn version_head_info() {
        assert_eq!(ok(&["VERSION", "s"]), Command::Version { stream: "s".into() });
        arity_err(&["VERSION"], "VERSION");
        arity_err(&["VERSION", "a", "b"], "VERSION");
        assert_eq!(ok(&["head"]), Command::Head);
        arity_err(&["HEAD", "x"], "HEAD");
        assert_eq!(ok(&["INFO"]), Command::Info { section: None });
        assert_eq!(ok(&["info", "Storage"]), Command::Info { section: Some("storage".into()) });
        arity_err(&["INFO", "a", "b"], "INFO");
        let unknown = Command::parse(vec![b"TIMELINE".to_vec(), b"x".to_vec()], &CommandLimits::default());
        assert_eq!(unknown, Err(CommandError::UnknownCommand("TIMELINE".into())), "extensions are not in the grammar");
    }

    #[test]
    fn group_subcommands_parse_with_their_options() {
        assert_eq!(
            ok(&["group", "create", "g", "TYPE", "A", "from", "5", "PREFIX", "order-", "type", "B", "ACKWAIT", "10"]),
            Command::GroupCreate {
                group: "g".into(),
                from: Some(5),
                prefix: Some("order-".into()),
                types: vec!["A".into(), "B".into()],
                ack_wait_ms: Some(10),
            }
        );
        assert_eq!(
            ok(&["GROUP", "CREATE", "g"]),
            Command::GroupCreate { group: "g".into(), from: None, prefix: None, types: vec![], ack_wait_ms: None }
        );
        assert_eq!(
            ok(&["GROUP", "READ", "g", "c"]),
            Command::GroupRead { group: "g".into(), consumer: "c".into(), count: DEFAULT_GROUP_COUNT, block_ms: None }
        );
        assert_eq!(
            ok(&["GROUP", "READ", "g", "c", "BLOCK", "0", "COUNT", "3"]),
            Command::GroupRead { group: "g".into(), consumer: "c".into(), count: 3, block_ms: Some(0) }
        );
        assert_eq!(
            ok(&["GROUP", "ACK", "g", "3", "1"]),
            Command::GroupAck { group: "g".into(), positions: vec![3, 1] }
        );
        assert_eq!(ok(&["GROUP", "INFO", "g"]), Command::GroupInfo { group: "g".into() });
        assert_eq!(ok(&["GROUP", "DELETE", "g"]), Command::GroupDelete { group: "g".into() });
        assert_eq!(ok(&["GROUP", "INFO", "g"]).name(), "GROUP");
    }

    #[test]
    fn group_arguments_are_bounded_and_checked() {
        arity_err(&["GROUP"], "GROUP");
        arity_err(&["GROUP", "CREATE"], "GROUP");
        arity_err(&["GROUP", "READ", "g"], "GROUP");
        arity_err(&["GROUP", "ACK", "g"], "GROUP");
        arity_err(&["GROUP", "DELETE", "g", "x"], "GROUP");
        syntax_err(&["GROUP", "NOPE", "g"], "unknown GROUP subcommand 'NOPE'");
        syntax_err(&["GROUP", "CREATE", "g", "ACKWAIT", "0"], "ACKWAIT must be between 1 and 86400000");
        syntax_err(&["GROUP", "CREATE", "g", "ACKWAIT", "86400001"], "ACKWAIT must be between");
        assert!(cmd(&["GROUP", "CREATE", "g", "ACKWAIT", "86400000"]).is_ok());
        syntax_err(&["GROUP", "CREATE", "g", "FROM", "0"], "FROM must be a position of at least 1");
        syntax_err(&["GROUP", "CREATE", "g", "PREFIX", "a", "PREFIX", "b"], "PREFIX given more than once");
        syntax_err(&["GROUP", "CREATE", "a b"], "group name must not contain whitespace");
        syntax_err(&["GROUP", "READ", "g", "c\td"], "control characters");
        syntax_err(&["GROUP", "READ", "g", ""], "consumer name must not be empty");
        let long = "g".repeat(MAX_CLIENT_GROUP_NAME_BYTES + 1);
        syntax_err(&["GROUP", "INFO", &long], "at most 256 allowed");
        assert!(cmd(&["GROUP", "INFO", &long[1..]]).is_ok());
        syntax_err(&["GROUP", "ACK", "g", "0"], "at least 1");
        syntax_err(&["GROUP", "ACK", "g", "-1"], "non-negative integer");
        // At most 64 TYPEs, at most max_ack_positions positions (TOOBIG past it).
        let mut create = vec!["GROUP", "CREATE", "g"];
        for _ in 0..logbook::MAX_GROUP_EVENT_TYPES {
            create.extend(["TYPE", "t"]);
        }
        assert!(cmd(&create).is_ok());
        create.extend(["TYPE", "t"]);
        syntax_err(&create, "at most 64 TYPE options");
        let limits = CommandLimits { max_ack_positions: 2, ..CommandLimits::default() };
        assert!(parse_with(&["GROUP", "ACK", "g", "1", "2"], &limits).is_ok());
        assert!(matches!(parse_with(&["GROUP", "ACK", "g", "1", "2", "3"], &limits), Err(CommandError::TooBig(_))));
        let limits = CommandLimits { max_count: 5, ..CommandLimits::default() };
        assert!(parse_with(&["GROUP", "READ", "g", "c", "COUNT", "6"], &limits).is_err());
        assert_eq!(
            parse_with(&["GROUP", "READ", "g", "c"], &CommandLimits { max_count: 5, ..CommandLimits::default() }),
            Ok(Command::GroupRead { group: "g".into(), consumer: "c".into(), count: 5, block_ms: None })
        );
    }
}
