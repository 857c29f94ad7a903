//! Wire protocol of logbook: the RESP codec (`resp`), the command grammar (`command`) and its
//! documentation (`docs`, for `COMMAND DOCS`).
//! Pure code over plain values: no sockets, no storage. The value types the grammar shares
//! with the engine (`ExpectedVersion`, the limits on names) are the engine's own.
//!
//! Commands a crate above the daemon adds (the order lifecycle's `TIMELINE`) are not part of
//! this grammar: the daemon routes them to their handler before parsing, and the handler
//! checks its arguments with [`text_argument`].
//!
//! # Grammar
//!
//! Command names and keywords are case-insensitive; options may come in any
//! order and each at most once (except `TYPE`).
//!
//! ```text
//! PING [message]
//! HELLO [protover] [AUTH <tenant> <token>]          protover: 2 | 3
//! AUTH <tenant> <token>
//! QUIT
//! APPEND <stream> <type> <data> [EXPECTED any|none|exists|<n>] [ID <uuid>] [META <json>]
//! APPENDMANY <stream> <events-json> [EXPECTED any|none|exists|<n>]
//! APPENDBATCH <parts-json>
//! READ <stream> [FROM <version>] [COUNT <n>] [REV]
//! READALL [FROM <position>] [COUNT <n>] [BLOCK <ms>] [PREFIX <stream-prefix>] [TYPE <type>]...
//! VERSION <stream>
//! HEAD
//! INFO [section]
//! STREAMS [PREFIX <stream-prefix>] [AFTER <stream>] [COUNT <n>]
//! DELETE <stream> [EXPECTED any|none|exists|<n>]
//! COMPACT
//! BACKUP <name>                                     name: [A-Za-z0-9._-]{1,128}, no leading '.'
//! COMMAND [LIST|COUNT|DOCS|INFO] [<command-name> ...]    DOCS: each command's documentation (`docs`)
//! ```
//!
//! - `<data>` (APPEND) is raw bytes. `META` must be a JSON object; its bytes
//!   are kept as sent.
//! - `<events-json>` is a JSON array of objects
//!   `{"type": str, "data": any JSON, "id"?: uuid string, "meta"?: object}`,
//!   at most `CommandLimits::max_events_per_append` of them (more is a
//!   `TOOBIG` error). Each becomes a `NewEventSpec` whose `data` and `meta`
//!   are the compact JSON text of those values (`meta` empty if absent).
//! - `<parts-json>` (APPENDBATCH) is a JSON array of parts
//!   `{"stream": str, "expected"?: "any"|"none"|"exists"|n, "events": [events as above]}`,
//!   appended atomically in order; `max_events_per_append` counts every part's events.
//! - `EXPECTED` defaults to `any`; `none` and `0` both mean "no stream".
//! - `READ`: `FROM` defaults to version 1 forwards, or the last version with
//!   `REV`. `COUNT` defaults to 1000 and must be in `1..=max_count`.
//! - `READALL`: `FROM` defaults to position 1, `COUNT` to 1000; `BLOCK` is
//!   milliseconds; `TYPE` may repeat and filters by any of the given types.
//! - Stream names (and `PREFIX`): non-empty UTF-8, at most 1024 bytes, no
//!   control characters. Event types: non-empty UTF-8, at most 256 bytes.
//!   Event ids: UUIDs in hyphenated form.
//!
//! # Wiring
//!
//! ```text
//! loop {
//!     match resp::parse(&buf, &limits) {
//!         Ok(None) => read more bytes (cap the buffer size!),
//!         Ok(Some((value, used))) => {
//!             buf.drain(..used);
//!             let args = command::args_from_value(value)?;   // Protocol error: reply, close
//!             if args.is_empty() { continue }                // blank inline line
//!             match Command::parse(args, &command_limits) {
//!                 Ok(cmd) => execute,
//!                 Err(e) => reply e.to_value(),              // connection stays open
//!             }
//!         }
//!         Err(e) => { reply e.to_value(); close }            // -TOOBIG / -ERR Protocol error
//!     }
//! }
//! ```

mod command;
mod docs;
mod resp;

pub use command::{
    args_from_value, command_docs, command_names, text_argument, BatchPartSpec, Command, CommandError, CommandLimits,
    Credentials, ExpectedVersion, NewEventSpec, DEFAULT_ACK_WAIT_MS, DEFAULT_COUNT, DEFAULT_GROUP_COUNT,
    MAX_ACK_WAIT_MS, MAX_BACKUP_NAME_BYTES, MAX_CLIENT_GROUP_NAME_BYTES, MAX_EVENT_TYPE_BYTES, MAX_STREAM_NAME_BYTES,
};
pub use docs::{docs_reply, ArgDoc, ArgKind, CommandDoc};
pub use resp::{encode, parse, Limits, ProtocolVersion, RespError, Value};
