//! RESP2/RESP3 wire codec: an incremental, allocation-bounded parser and an
//! encoder.
//!
//! Parsing is two-pass. The first pass walks the frame with borrowed tokens
//! only, checking syntax and limits; it allocates nothing but a tiny stack of
//! open-aggregate counters, so an incomplete frame costs one cheap scan. Only
//! once the whole frame is known to be present and valid does the second pass
//! build the `Value`. Nesting is tracked with an explicit stack, never with
//! recursion, so hostile nesting cannot overflow the thread stack.

use thiserror::Error;

/// A RESP value, as clients send it or as we reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `+OK\r\n`.
    SimpleString(String),
    /// `-CODE message\r\n` (also RESP3 blob errors `!`). Holds "CODE message".
    Error(String),
    /// `:42\r\n`.
    Integer(i64),
    /// `$3\r\nfoo\r\n`.
    BulkString(Vec<u8>),
    /// RESP3 `_\r\n`; RESP2 `$-1\r\n` / `*-1\r\n`.
    Null,
    /// `*N\r\n...`.
    Array(Vec<Value>),
    /// RESP3 `%N\r\n` (N pairs); a flat array of key, value in RESP2.
    Map(Vec<(Value, Value)>),
    /// RESP3 `~N\r\n`; an array in RESP2.
    Set(Vec<Value>),
    /// RESP3 `>N\r\n` out-of-band push; an array in RESP2.
    Push(Vec<Value>),
    /// RESP3 `,1.5\r\n`; a bulk string in RESP2.
    Double(f64),
    /// RESP3 `#t\r\n`; integer 1/0 in RESP2.
    Boolean(bool),
    /// RESP3 `(123...\r\n` (decimal digits, optional leading '-'); a bulk
    /// string in RESP2.
    BigNumber(String),
    /// RESP3 `=N\r\ntxt:...\r\n`; a bulk string of `text` in RESP2.
    Verbatim { format: [u8; 3], text: Vec<u8> },
}

impl Value {
    /// `+OK`.
    pub fn ok() -> Value {
        Value::SimpleString("OK".to_owned())
    }

    /// An error reply encoded as `-CODE message`.
    pub fn error(code: &str, message: &str) -> Value {
        Value::Error(format!("{code} {message}"))
    }

    /// A bulk string from anything byte-like.
    pub fn bulk(bytes: impl Into<Vec<u8>>) -> Value {
        Value::BulkString(bytes.into())
    }
}

/// Bounds applied while parsing, all checked before any allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string / blob error / verbatim string payload.
    pub max_bulk_bytes: usize,
    /// Most elements in one array, set or push, and most pairs in one map.
    pub max_array_len: usize,
    /// Most nested aggregates; a flat command array has depth 1.
    pub max_nesting_depth: usize,
    /// Longest inline command line and longest simple line (`+ - , (`),
    /// excluding the line terminator.
    pub max_inline_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_bytes: 4 * 1024 * 1024,
            max_array_len: 1_048_576,
            max_nesting_depth: 8,
            max_inline_bytes: 64 * 1024,
        }
    }
}

/// Why a buffer could not be parsed. Both are fatal for the connection: the
/// stream position is lost, so the server replies and closes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RespError {
    /// A declared or observed size is over a [`Limits`] bound.
    #[error("{what} {len} exceeds limit {max}")]
    TooBig { what: &'static str, len: u64, max: u64 },
    /// Malformed input; the message names what was wrong.
    #[error("Protocol error: {0}")]
    Protocol(String),
}

impl RespError {
    /// The error code for the reply line: `TOOBIG` or `ERR`.
    pub fn code(&self) -> &'static str {
        match self {
            RespError::TooBig { .. } => "TOOBIG",
            RespError::Protocol(_) => "ERR",
        }
    }

    /// The reply to send before closing the connection.
    pub fn to_value(&self) -> Value {
        Value::error(self.code(), &self.to_string())
    }
}

/// Which reply dialect a connection speaks (switched by `HELLO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProtocolVersion {
    #[default]
    Resp2,
    Resp3,
}

fn protocol(msg: impl Into<String>) -> RespError {
    RespError::Protocol(msg.into())
}

fn too_big(what: &'static str, len: usize, max: usize) -> RespError {
    RespError::TooBig { what, len: len as u64, max: max as u64 }
}

/// Parses one frame from the front of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a frame (call again with
/// more bytes), `Ok(Some((value, consumed)))` for a complete frame, and
/// `Err` for malformed input or a limit breach.
///
/// A frame starting with a letter, digit, quote or whitespace is an inline
/// command (`PING hello\r\n`, as telnet and redis-cli send); like Redis, a
/// bare `\n` also ends an inline line. It parses to an array of bulk
/// strings; a blank line parses to an empty array, which the server should
/// skip silently.
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<(Value, usize)>, RespError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if is_inline_start(first) {
        return parse_inline(buf, limits);
    }
    let Some(end) = walk(buf, limits, &mut Scan)? else {
        return Ok(None);
    };
    let mut builder = Builder::default();
    walk(&buf[..end], limits, &mut builder)?;
    match builder.done {
        Some(value) => Ok(Some((value, end))),
        // Unreachable: the scan pass proved the frame complete.
        None => Err(protocol("frame ended early on second pass")),
    }
}

// ---------------------------------------------------------------------------
// Tokens: one header or scalar at a time, borrowed from the buffer.

/// Content bound for length and integer lines; 20 digits fit any u64.
const NUMBER_LINE_MAX: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AggKind {
    Array,
    Map,
    Set,
    Push,
}

enum Scalar<'a> {
    Simple(&'a str),
    Error(&'a [u8]),
    Integer(i64),
    Bulk(&'a [u8]),
    Null,
    Double(f64),
    Boolean(bool),
    BigNumber(&'a str),
    Verbatim([u8; 3], &'a [u8]),
}

enum Token<'a> {
    Scalar(Scalar<'a>),
    /// An aggregate header; `items` counts elements (2 per map pair).
    Open {
        kind: AggKind,
        items: usize,
    },
}

/// `Ok(None)` = need more bytes; otherwise the item and the next offset.
type Step<T> = Result<Option<(T, usize)>, RespError>;

fn read_token<'a>(buf: &'a [u8], pos: usize, limits: &Limits) -> Step<Token<'a>> {
    let Some(&tag) = buf.get(pos) else {
        return Ok(None);
    };
    let at = pos + 1;
    match tag {
        b'$' | b'!' | b'=' => read_blob(buf, at, tag, limits),
        b'*' | b'%' | b'~' | b'>' => read_aggregate(buf, at, tag, limits),
        b'+' | b'-' | b':' | b',' | b'(' | b'#' | b'_' => read_simple(buf, at, tag, limits),
        b'|' => Err(protocol("attribute frames ('|') are not supported")),
        other => Err(protocol(format!("unknown type byte {}", show_byte(other)))),
    }
}

fn show_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", b as char)
    } else {
        format!("0x{b:02x}")
    }
}

/// Checks the terminator at `i`, which holds the first `\r` or `\n` found.
fn expect_crlf(buf: &[u8], i: usize) -> Result<Option<usize>, RespError> {
    if buf.get(i) == Some(&b'\n') {
        return Err(protocol("line must end with '\\r\\n', found bare '\\n'"));
    }
    match buf.get(i + 1) {
        None => Ok(None),
        Some(b'\n') => Ok(Some(i + 2)),
        Some(&other) => Err(protocol(format!("expected '\\n' after '\\r', got {}", show_byte(other)))),
    }
}

/// Reads a line of at most `max` content bytes starting at `at`.
fn read_line<'a>(buf: &'a [u8], at: usize, max: usize, what: &'static str) -> Step<&'a [u8]> {
    // Scan one byte past the bound so a line of exactly `max` still fits.
    let scan_end = buf.len().min(at.saturating_add(max).saturating_add(1));
    let window = buf.get(at..scan_end).unwrap_or(&[]);
    match window.iter().position(|&b| b == b'\r' || b == b'\n') {
        Some(i) => Ok(expect_crlf(buf, at + i)?.map(|next| (&window[..i], next))),
        None if window.len() > max => Err(too_big(what, buf.len() - at, max)),
        None => Ok(None),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Length {
    Null,
    Count(usize),
}

/// Interprets length digits. Works on partial text too (returning `None`
/// while it could still become valid), so an oversized or malformed length
/// is rejected before its line is even complete.
fn parse_length(text: &[u8], what: &'static str, max: usize) -> Result<Option<Length>, RespError> {
    if let Some(rest) = text.strip_prefix(b"-") {
        return match rest {
            b"" => Ok(None),
            b"1" => Ok(Some(Length::Null)),
            _ => Err(protocol(format!(
                "invalid {what} length '-{}': only -1 (null) may be negative",
                String::from_utf8_lossy(rest)
            ))),
        };
    }
    let mut n: usize = 0;
    for &b in text {
        if !b.is_ascii_digit() {
            return Err(protocol(format!("invalid {what} length: unexpected {}", show_byte(b))));
        }
        n = match n.checked_mul(10).and_then(|n| n.checked_add(usize::from(b - b'0'))) {
            Some(n) => n,
            None => return Err(too_big(what, usize::MAX, max)),
        };
    }
    // On partial text `n` only grows with more digits, so this is final.
    if n > max {
        return Err(too_big(what, n, max));
    }
    Ok((!text.is_empty()).then_some(Length::Count(n)))
}

/// Reads a length header line (`3\r\n`, `-1\r\n`) starting at `at`.
fn read_length(buf: &[u8], at: usize, what: &'static str, max: usize) -> Step<Length> {
    let scan_end = buf.len().min(at + NUMBER_LINE_MAX);
    let window = buf.get(at..scan_end).unwrap_or(&[]);
    let end = window.iter().position(|&b| b == b'\r' || b == b'\n');
    let length = parse_length(&window[..end.unwrap_or(window.len())], what, max)?;
    let Some(i) = end else {
        if window.len() >= NUMBER_LINE_MAX {
            return Err(protocol(format!("{what} length line longer than {NUMBER_LINE_MAX} bytes")));
        }
        return Ok(None);
    };
    let Some(next) = expect_crlf(buf, at + i)? else {
        return Ok(None);
    };
    match length {
        Some(length) => Ok(Some((length, next))),
        None => Err(protocol(format!("missing {what} length"))),
    }
}

/// `$` bulk string, `!` blob error, `=` verbatim string.
fn read_blob<'a>(buf: &'a [u8], at: usize, tag: u8, limits: &Limits) -> Step<Token<'a>> {
    let what = match tag {
        b'$' => "bulk string",
        b'!' => "blob error",
        _ => "verbatim string",
    };
    let Some((length, start)) = read_length(buf, at, what, limits.max_bulk_bytes)? else {
        return Ok(None);
    };
    let n = match length {
        Length::Count(n) => n,
        Length::Null if tag == b'$' => return Ok(Some((Token::Scalar(Scalar::Null), start))),
        Length::Null => return Err(protocol(format!("{what} cannot have length -1"))),
    };
    let end = start.saturating_add(n);
    // Fail early on a wrong terminator rather than waiting for more bytes.
    let terminator = buf.get(end..).unwrap_or(&[]);
    if !b"\r\n".starts_with(&terminator[..terminator.len().min(2)]) {
        return Err(protocol(format!("expected '\\r\\n' after {what} of {n} bytes")));
    }
    if terminator.len() < 2 {
        return Ok(None);
    }
    let data = &buf[start..end];
    let scalar = match tag {
        b'$' => Scalar::Bulk(data),
        b'!' => Scalar::Error(data),
        _ => verbatim(data)?,
    };
    Ok(Some((Token::Scalar(scalar), end + 2)))
}

fn verbatim(data: &[u8]) -> Result<Scalar<'_>, RespError> {
    match data {
        [a, b, c, b':', text @ ..] => Ok(Scalar::Verbatim([*a, *b, *c], text)),
        _ => Err(protocol("verbatim string must start with a 3-byte format and ':'")),
    }
}

/// `*` array, `%` map, `~` set, `>` push headers.
fn read_aggregate<'a>(buf: &'a [u8], at: usize, tag: u8, limits: &Limits) -> Step<Token<'a>> {
    let (kind, what) = match tag {
        b'*' => (AggKind::Array, "array"),
        b'%' => (AggKind::Map, "map"),
        b'~' => (AggKind::Set, "set"),
        _ => (AggKind::Push, "push"),
    };
    let Some((length, next)) = read_length(buf, at, what, limits.max_array_len)? else {
        return Ok(None);
    };
    let n = match length {
        Length::Count(n) => n,
        Length::Null if kind == AggKind::Array => return Ok(Some((Token::Scalar(Scalar::Null), next))),
        Length::Null => return Err(protocol(format!("{what} cannot have length -1"))),
    };
    let items =
        if kind == AggKind::Map { n.checked_mul(2).ok_or_else(|| too_big(what, n, limits.max_array_len))? } else { n };
    Ok(Some((Token::Open { kind, items }, next)))
}

/// One-line types: `+ - : , ( # _`.
fn read_simple<'a>(buf: &'a [u8], at: usize, tag: u8, limits: &Limits) -> Step<Token<'a>> {
    let max = match tag {
        b':' | b'#' | b'_' => NUMBER_LINE_MAX,
        _ => limits.max_inline_bytes,
    };
    let Some((line, next)) = read_line(buf, at, max, "line length")? else {
        return Ok(None);
    };
    Ok(Some((Token::Scalar(simple_scalar(tag, line)?), next)))
}

fn simple_scalar(tag: u8, line: &[u8]) -> Result<Scalar<'_>, RespError> {
    let text =
        || std::str::from_utf8(line).map_err(|_| protocol(format!("{} line is not valid UTF-8", show_byte(tag))));
    match tag {
        b'+' => Ok(Scalar::Simple(text()?)),
        b'-' => Ok(Scalar::Error(line)),
        b':' => text()?
            .parse()
            .map(Scalar::Integer)
            .map_err(|_| protocol(format!("invalid integer '{}'", String::from_utf8_lossy(line)))),
        b',' => text()?
            .parse()
            .map(Scalar::Double)
            .map_err(|_| protocol(format!("invalid double '{}'", String::from_utf8_lossy(line)))),
        b'#' => match line {
            b"t" => Ok(Scalar::Boolean(true)),
            b"f" => Ok(Scalar::Boolean(false)),
            _ => Err(protocol("boolean must be 't' or 'f'")),
        },
        b'_' if line.is_empty() => Ok(Scalar::Null),
        b'_' => Err(protocol("null ('_') must be followed directly by '\\r\\n'")),
        _ => big_number(text()?),
    }
}

fn big_number(text: &str) -> Result<Scalar<'_>, RespError> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(protocol(format!("invalid big number '{text}'")));
    }
    Ok(Scalar::BigNumber(text))
}

// ---------------------------------------------------------------------------
// The walk: drives tokens through a sink with an explicit aggregate stack.

trait Sink<'a> {
    fn scalar(&mut self, scalar: Scalar<'a>);
    fn open(&mut self, kind: AggKind, capacity: usize);
    fn close(&mut self);
}

/// First pass: validation only.
struct Scan;

impl<'a> Sink<'a> for Scan {
    fn scalar(&mut self, _: Scalar<'a>) {}
    fn open(&mut self, _: AggKind, _: usize) {}
    fn close(&mut self) {}
}

/// Second pass: builds the value.
#[derive(Default)]
struct Builder {
    stack: Vec<(AggKind, Vec<Value>)>,
    done: Option<Value>,
}

impl Builder {
    fn push(&mut self, value: Value) {
        match self.stack.last_mut() {
            Some((_, items)) => items.push(value),
            None => self.done = Some(value),
        }
    }
}

impl<'a> Sink<'a> for Builder {
    fn scalar(&mut self, scalar: Scalar<'a>) {
        self.push(scalar_value(scalar));
    }

    fn open(&mut self, kind: AggKind, capacity: usize) {
        self.stack.push((kind, Vec::with_capacity(capacity)));
    }

    fn close(&mut self) {
        if let Some((kind, items)) = self.stack.pop() {
            self.push(aggregate_value(kind, items));
        }
    }
}

fn scalar_value(scalar: Scalar<'_>) -> Value {
    match scalar {
        Scalar::Simple(s) => Value::SimpleString(s.to_owned()),
        Scalar::Error(e) => Value::Error(String::from_utf8_lossy(e).into_owned()),
        Scalar::Integer(n) => Value::Integer(n),
        Scalar::Bulk(b) => Value::BulkString(b.to_vec()),
        Scalar::Null => Value::Null,
        Scalar::Double(d) => Value::Double(d),
        Scalar::Boolean(b) => Value::Boolean(b),
        Scalar::BigNumber(s) => Value::BigNumber(s.to_owned()),
        Scalar::Verbatim(format, text) => Value::Verbatim { format, text: text.to_vec() },
    }
}

fn aggregate_value(kind: AggKind, items: Vec<Value>) -> Value {
    match kind {
        AggKind::Array => Value::Array(items),
        AggKind::Set => Value::Set(items),
        AggKind::Push => Value::Push(items),
        AggKind::Map => {
            let mut pairs = Vec::with_capacity(items.len() / 2);
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            Value::Map(pairs)
        }
    }
}

/// Smallest encoded element (`_\r\n`); bounds up-front capacity by the bytes
/// actually present, so a header claiming a million items allocates little.
const MIN_ELEMENT_BYTES: usize = 3;

/// Walks one frame; returns its end offset, or `None` if it is incomplete.
fn walk<'a, S: Sink<'a>>(buf: &'a [u8], limits: &Limits, sink: &mut S) -> Result<Option<usize>, RespError> {
    let mut pos = 0;
    // Items still expected by each open aggregate, innermost last.
    let mut open: Vec<usize> = Vec::new();
    loop {
        let Some((token, next)) = read_token(buf, pos, limits)? else {
            return Ok(None);
        };
        pos = next;
        match token {
            Token::Scalar(scalar) => sink.scalar(scalar),
            Token::Open { kind, items } => {
                if open.len() >= limits.max_nesting_depth {
                    let depth = open.len() + 1;
                    return Err(too_big("nesting depth", depth, limits.max_nesting_depth));
                }
                sink.open(kind, items.min((buf.len() - pos) / MIN_ELEMENT_BYTES));
                if items > 0 {
                    open.push(items);
                    continue;
                }
                sink.close();
            }
        }
        // A value just completed: count it against its parents, closing
        // every aggregate it fills.
        loop {
            let Some(left) = open.last_mut() else {
                return Ok(Some(pos));
            };
            *left -= 1;
            if *left > 0 {
                break;
            }
            open.pop();
            sink.close();
        }
    }
}

// ---------------------------------------------------------------------------
// Inline commands.

fn is_inline_start(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'"' | b'\'')
}

fn parse_inline(buf: &[u8], limits: &Limits) -> Result<Option<(Value, usize)>, RespError> {
    let max = limits.max_inline_bytes;
    // Content of exactly `max` bytes plus "\r\n" must still be found.
    let window = &buf[..buf.len().min(max.saturating_add(2))];
    let Some(nl) = window.iter().position(|&b| b == b'\n') else {
        if window.len() > max.saturating_add(1) {
            return Err(too_big("inline command length", buf.len(), max));
        }
        return Ok(None);
    };
    let line = &buf[..nl];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > max {
        return Err(too_big("inline command length", line.len(), max));
    }
    let args = split_inline(line)?;
    if args.len() > limits.max_array_len {
        return Err(too_big("array", args.len(), limits.max_array_len));
    }
    let value = Value::Array(args.into_iter().map(Value::BulkString).collect());
    Ok(Some((value, nl + 1)))
}

/// Splits an inline line on whitespace, honouring `"..."` (with `\n \r \t
/// \\ \" \xHH` escapes) and `'...'` (with `\'`), like redis-cli.
fn split_inline(line: &[u8]) -> Result<Vec<Vec<u8>>, RespError> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while line.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
            i += 1;
        }
        let Some(&b) = line.get(i) else {
            return Ok(args);
        };
        let (arg, next) = match b {
            b'"' | b'\'' => quoted_arg(line, i + 1, b)?,
            _ => bare_arg(line, i),
        };
        args.push(arg);
        i = next;
    }
}

fn bare_arg(line: &[u8], start: usize) -> (Vec<u8>, usize) {
    let len = line[start..].iter().position(|b| b.is_ascii_whitespace()).unwrap_or(line.len() - start);
    (line[start..start + len].to_vec(), start + len)
}

fn quoted_arg(line: &[u8], mut i: usize, quote: u8) -> Result<(Vec<u8>, usize), RespError> {
    let mut arg = Vec::new();
    loop {
        match (line.get(i), line.get(i + 1)) {
            (None, _) => return Err(protocol("unbalanced quotes in inline command")),
            (Some(&b), _) if b == quote => {
                // Like Redis: a closing quote must end the argument.
                if line.get(i + 1).is_some_and(|b| !b.is_ascii_whitespace()) {
                    return Err(protocol("closing quote must be followed by a space"));
                }
                return Ok((arg, i + 1));
            }
            (Some(b'\\'), Some(&esc)) if quote == b'"' => {
                let (byte, used) = unescape(esc, line.get(i + 2..i + 4));
                arg.push(byte);
                i += 1 + used;
            }
            (Some(b'\\'), Some(&b'\'')) => {
                arg.push(b'\'');
                i += 2;
            }
            (Some(&b), _) => {
                arg.push(b);
                i += 1;
            }
        }
    }
}

/// Decodes the escape after a backslash; returns the byte and bytes used.
fn unescape(esc: u8, hex: Option<&[u8]>) -> (u8, usize) {
    let hex_byte = hex.and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
    match (esc, hex_byte) {
        (b'x', Some(byte)) => (byte, 3),
        (b'n', _) => (b'\n', 1),
        (b'r', _) => (b'\r', 1),
        (b't', _) => (b'\t', 1),
        (b'b', _) => (0x08, 1),
        (b'a', _) => (0x07, 1),
        (other, _) => (other, 1),
    }
}

// ---------------------------------------------------------------------------
// Encoding.

/// Appends `value` to `out` in the given dialect. RESP2 has no map, set,
/// push, double, boolean, big number, verbatim or `_` null, so those are
/// mapped to their closest RESP2 form (see [`Value`]).
pub fn encode(value: &Value, proto: ProtocolVersion, out: &mut Vec<u8>) {
    let resp3 = proto == ProtocolVersion::Resp3;
    match value {
        Value::SimpleString(s) => line(out, b'+', s),
        Value::Error(e) => line(out, b'-', e),
        Value::Integer(n) => header(out, b':', *n),
        Value::BulkString(b) => bulk(out, b),
        Value::Null if resp3 => out.extend_from_slice(b"_\r\n"),
        Value::Null => out.extend_from_slice(b"$-1\r\n"),
        Value::Array(items) => aggregate(out, b'*', items, proto),
        Value::Set(items) => aggregate(out, if resp3 { b'~' } else { b'*' }, items, proto),
        Value::Push(items) => aggregate(out, if resp3 { b'>' } else { b'*' }, items, proto),
        Value::Map(pairs) => map(out, pairs, proto),
        Value::Double(d) if resp3 => line(out, b',', &format_double(*d)),
        Value::Double(d) => bulk(out, format_double(*d).as_bytes()),
        Value::Boolean(b) if resp3 => out.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
        Value::Boolean(b) => header(out, b':', i64::from(*b)),
        Value::BigNumber(n) if resp3 => line(out, b'(', n),
        Value::BigNumber(n) => bulk(out, n.as_bytes()),
        Value::Verbatim { format, text } if resp3 => {
            header(out, b'=', len_i64(text.len() + 4));
            out.extend_from_slice(format);
            out.push(b':');
            out.extend_from_slice(text);
            out.extend_from_slice(b"\r\n");
        }
        Value::Verbatim { text, .. } => bulk(out, text),
    }
}

/// A single-line element. CR and LF would end the line early and desync the
/// client, so they are replaced by spaces.
fn line(out: &mut Vec<u8>, tag: u8, text: &str) {
    out.push(tag);
    out.extend(text.bytes().map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
    out.extend_from_slice(b"\r\n");
}

fn header(out: &mut Vec<u8>, tag: u8, n: i64) {
    out.push(tag);
    push_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

fn bulk(out: &mut Vec<u8>, data: &[u8]) {
    header(out, b'$', len_i64(data.len()));
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

fn aggregate(out: &mut Vec<u8>, tag: u8, items: &[Value], proto: ProtocolVersion) {
    header(out, tag, len_i64(items.len()));
    for item in items {
        encode(item, proto, out);
    }
}

fn map(out: &mut Vec<u8>, pairs: &[(Value, Value)], proto: ProtocolVersion) {
    match proto {
        ProtocolVersion::Resp3 => header(out, b'%', len_i64(pairs.len())),
        ProtocolVersion::Resp2 => header(out, b'*', len_i64(pairs.len().saturating_mul(2))),
    }
    for (k, v) in pairs {
        encode(k, proto, out);
        encode(v, proto, out);
    }
}

fn len_i64(len: usize) -> i64 {
    i64::try_from(len).unwrap_or(i64::MAX)
}

/// Writes a decimal without allocating (replies are full of lengths).
fn push_decimal(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    let mut digits = [0u8; 20];
    let mut rest = n.unsigned_abs();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// RESP3 spells the specials `inf`, `-inf`, `nan`; `{:?}` round-trips
/// finite values exactly and uses exponents for extremes.
fn format_double(d: f64) -> String {
    if d.is_nan() {
        "nan".to_owned()
    } else if d.is_infinite() {
        if d > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        format!("{d:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(buf: &[u8]) -> Result<Option<(Value, usize)>, RespError> {
        parse(buf, &Limits::default())
    }

    /// Parses a buffer that must hold exactly one complete frame.
    fn one(buf: &[u8]) -> Value {
        match p(buf) {
            Ok(Some((v, used))) => {
                assert_eq!(used, buf.len(), "consumed for {:?}", String::from_utf8_lossy(buf));
                v
            }
            other => panic!("{:?} -> {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn err(buf: &[u8]) -> RespError {
        match p(buf) {
            Err(e) => e,
            other => panic!("{:?} -> expected error, got {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn is_too_big(e: &RespError, expected: &str) -> bool {
        matches!(e, RespError::TooBig { what, .. } if *what == expected)
    }

    fn bulks(items: &[&str]) -> Value {
        Value::Array(items.iter().map(|s| Value::bulk(s.as_bytes())).collect())
    }

    fn enc(v: &Value, proto: ProtocolVersion) -> Vec<u8> {
        let mut out = Vec::new();
        encode(v, proto, &mut out);
        out
    }

    // --- each type -------------------------------------------------------

    #[test]
    fn scalars() {
        assert_eq!(one(b"+OK\r\n"), Value::SimpleString("OK".into()));
        assert_eq!(one(b"+\r\n"), Value::SimpleString(String::new()));
        assert_eq!(one(b"-ERR bad\r\n"), Value::Error("ERR bad".into()));
        assert_eq!(one(b":42\r\n"), Value::Integer(42));
        assert_eq!(one(b":-7\r\n"), Value::Integer(-7));
        assert_eq!(one(b":9223372036854775807\r\n"), Value::Integer(i64::MAX));
        assert_eq!(one(b"$3\r\nfoo\r\n"), Value::bulk("foo"));
        assert_eq!(one(b"$0\r\n\r\n"), Value::bulk(""));
        assert_eq!(one(b"$4\r\na\r\nb\r\n"), Value::bulk("a\r\nb"));
        assert_eq!(one(b"$-1\r\n"), Value::Null);
        assert_eq!(one(b"_\r\n"), Value::Null);
        assert_eq!(one(b"*-1\r\n"), Value::Null);
        assert_eq!(one(b",1.5\r\n"), Value::Double(1.5));
        assert_eq!(one(b",-2\r\n"), Value::Double(-2.0));
        assert_eq!(one(b",inf\r\n"), Value::Double(f64::INFINITY));
        assert_eq!(one(b",-inf\r\n"), Value::Double(f64::NEG_INFINITY));
        assert!(matches!(one(b",nan\r\n"), Value::Double(d) if d.is_nan()));
        assert_eq!(one(b"#t\r\n"), Value::Boolean(true));
        assert_eq!(one(b"#f\r\n"), Value::Boolean(false));
        assert_eq!(one(b"(-12345678901234567890\r\n"), Value::BigNumber("-12345678901234567890".into()));
        assert_eq!(one(b"!9\r\nERR oops!\r\n"), Value::Error("ERR oops!".into()));
        assert_eq!(one(b"=9\r\ntxt:hello\r\n"), Value::Verbatim { format: *b"txt", text: b"hello".to_vec() });
    }

    #[test]
    fn aggregates() {
        assert_eq!(one(b"*0\r\n"), Value::Array(vec![]));
        assert_eq!(one(b"*2\r\n$4\r\nPING\r\n$2\r\nhi\r\n"), bulks(&["PING", "hi"]));
        assert_eq!(
            one(b"*2\r\n*1\r\n:1\r\n*0\r\n"),
            Value::Array(vec![Value::Array(vec![Value::Integer(1)]), Value::Array(vec![])])
        );
        assert_eq!(
            one(b"%2\r\n+a\r\n:1\r\n+b\r\n_\r\n"),
            Value::Map(vec![
                (Value::SimpleString("a".into()), Value::Integer(1)),
                (Value::SimpleString("b".into()), Value::Null),
            ])
        );
        assert_eq!(one(b"%0\r\n"), Value::Map(vec![]));
        assert_eq!(one(b"~2\r\n:1\r\n#f\r\n"), Value::Set(vec![Value::Integer(1), Value::Boolean(false)]));
        assert_eq!(one(b">1\r\n+x\r\n"), Value::Push(vec![Value::SimpleString("x".into())]));
    }

    #[test]
    fn malformed_input_is_named() {
        let cases: &[(&[u8], &str)] = &[
            (b"$3\r\nfooX\r\n", "expected '\\r\\n' after bulk string of 3 bytes"),
            (b"$3\r\nfoo\rX", "expected '\\r\\n' after bulk string of 3 bytes"),
            (b"+OK\n", "bare '\\n'"),
            (b"+OK\rX", "expected '\\n' after '\\r'"),
            (b"$-2\r\n", "only -1 (null) may be negative"),
            (b"*-5\r\n", "only -1 (null) may be negative"),
            (b"%-1\r\n", "map cannot have length -1"),
            (b"!-1\r\n", "blob error cannot have length -1"),
            (b"$x\r\n", "invalid bulk string length"),
            (b"$\r\n", "missing bulk string length"),
            (b"$+3\r\n", "invalid bulk string length"),
            (b":12a\r\n", "invalid integer"),
            (b":\r\n", "invalid integer"),
            (b":99999999999999999999\r\n", "invalid integer"),
            (b",abc\r\n", "invalid double"),
            (b"#x\r\n", "boolean"),
            (b"_x\r\n", "null"),
            (b"(12a\r\n", "invalid big number"),
            (b"(\r\n", "invalid big number"),
            (b"=3\r\ntxt\r\n", "verbatim"),
            (b"+\xff\r\n", "not valid UTF-8"),
            (b"|1\r\n", "attribute"),
            (b"\x00", "unknown type byte 0x00"),
            (b"*1\r\n@\r\n", "unknown type byte '@'"),
            (b"$00000000000000000000000000000000001\r\n", "longer than 32 bytes"),
        ];
        for (input, needle) in cases {
            match p(input) {
                Err(RespError::Protocol(msg)) => {
                    assert!(msg.contains(needle), "{:?}: {msg:?} lacks {needle:?}", String::from_utf8_lossy(input))
                }
                other => panic!("{:?} -> {other:?}", String::from_utf8_lossy(input)),
            }
        }
    }

    #[test]
    fn incomplete_frames_need_more() {
        let partials: &[&[u8]] = &[
            b"",
            b"*",
            b"*2",
            b"*2\r",
            b"*2\r\n",
            b"*2\r\n$4\r\nPI",
            b"$3\r\nfoo",
            b"$3\r\nfoo\r",
            b"$-",
            b"$-1\r",
            b"+OK",
            b"+OK\r",
            b":1",
            b"%1\r\n+a\r\n",
            b"_",
            b"PING",
            b"PING\r",
        ];
        for buf in partials {
            assert_eq!(p(buf), Ok(None), "{:?}", String::from_utf8_lossy(buf));
        }
    }

    #[test]
    fn consumes_only_the_first_frame() {
        assert_eq!(p(b"+A\r\n+B\r\n"), Ok(Some((Value::SimpleString("A".into()), 4))));
        assert_eq!(p(b"*1\r\n:1\r\n:2\r\n"), Ok(Some((Value::Array(vec![Value::Integer(1)]), 8))));
    }

    // --- limits at their edges -------------------------------------------

    fn small_limits() -> Limits {
        Limits { max_bulk_bytes: 10, max_array_len: 3, max_nesting_depth: 3, max_inline_bytes: 16 }
    }

    #[test]
    fn bulk_limit_edge() {
        let l = small_limits();
        let ok = b"$10\r\n0123456789\r\n";
        assert_eq!(parse(ok, &l), Ok(Some((Value::bulk("0123456789"), ok.len()))));
        let e = parse(b"$11\r\n", &l).unwrap_err();
        assert_eq!(e, RespError::TooBig { what: "bulk string", len: 11, max: 10 });
        assert_eq!(e.code(), "TOOBIG");
        assert!(is_too_big(&parse(b"=11\r\n", &l).unwrap_err(), "verbatim string"));
        assert!(is_too_big(&parse(b"!11\r\n", &l).unwrap_err(), "blob error"));
    }

    #[test]
    fn bulk_length_two_pow_40_fails_before_line_end() {
        let len = 1u64 << 40;
        // Even before the CRLF arrives, the digits already exceed the limit.
        for buf in [format!("${len}"), format!("${len}\r\n")] {
            assert!(is_too_big(&err(buf.as_bytes()), "bulk string"), "{buf}");
        }
        assert_eq!(
            err(format!("${len}\r\n").as_bytes()),
            RespError::TooBig { what: "bulk string", len, max: 4 * 1024 * 1024 }
        );
        // Beyond u64 range too.
        assert!(is_too_big(&err(b"$99999999999999999999999\r\n"), "bulk string"));
    }

    #[test]
    fn array_limit_edge() {
        let l = small_limits();
        let ok = b"*3\r\n:1\r\n:2\r\n:3\r\n";
        assert!(matches!(parse(ok, &l), Ok(Some((Value::Array(v), n))) if v.len() == 3 && n == ok.len()));
        assert_eq!(parse(b"*4\r\n", &l), Err(RespError::TooBig { what: "array", len: 4, max: 3 }));
        assert!(parse(b"%3\r\n", &l).is_ok());
        assert!(is_too_big(&parse(b"%4\r\n", &l).unwrap_err(), "map"));
        assert!(is_too_big(&parse(b"~4\r\n", &l).unwrap_err(), "set"));
        assert!(is_too_big(&parse(b">4\r\n", &l).unwrap_err(), "push"));
    }

    #[test]
    fn huge_array_header_with_few_bytes_is_just_incomplete() {
        // Claims a million elements; only three arrive. Must not error or
        // reserve a million slots, just wait.
        assert_eq!(p(b"*1000000\r\n:1\r\n:2\r\n:3\r\n"), Ok(None));
        assert!(is_too_big(&err(b"*1048577\r\n"), "array"));
    }

    fn nested(depth: usize) -> Vec<u8> {
        let mut buf = b"*1\r\n".repeat(depth);
        buf.extend_from_slice(b":1\r\n");
        buf
    }

    #[test]
    fn nesting_limit_edge() {
        let l = Limits::default();
        let (v, used) = parse(&nested(8), &l).unwrap().unwrap();
        assert_eq!(used, nested(8).len());
        let mut depth = 0;
        let mut cur = &v;
        while let Value::Array(items) = cur {
            depth += 1;
            cur = &items[0];
        }
        assert_eq!(depth, 8);
        assert_eq!(parse(&nested(9), &l), Err(RespError::TooBig { what: "nesting depth", len: 9, max: 8 }));
        // Empty aggregates count as a level too.
        assert!(parse(b"*1\r\n*1\r\n*1\r\n*0\r\n", &small_limits()).is_err());
        assert!(parse(b"*1\r\n*1\r\n*0\r\n", &small_limits()).is_ok());
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        let buf = nested(10_000);
        assert!(is_too_big(&err(&buf), "nesting depth"));
        // Even with a permissive limit, the parser itself never recurses.
        let l = Limits { max_nesting_depth: usize::MAX, ..Limits::default() };
        assert!(matches!(parse(&b"*1\r\n".repeat(100_000), &l), Ok(None)));
    }

    #[test]
    fn simple_line_limit_edge() {
        let l = small_limits();
        let ok = format!("+{}\r\n", "a".repeat(16));
        assert!(matches!(parse(ok.as_bytes(), &l), Ok(Some(_))));
        let too_long = format!("+{}", "a".repeat(17));
        assert!(is_too_big(&parse(too_long.as_bytes(), &l).unwrap_err(), "line length"));
        // A partial line still under the bound waits.
        assert_eq!(parse(format!("+{}", "a".repeat(16)).as_bytes(), &l), Ok(None));
    }

    #[test]
    fn inline_limit_edge() {
        let l = small_limits();
        let line16 = "PING 0123456789a";
        assert_eq!(line16.len(), 16);
        for term in ["\r\n", "\n"] {
            let buf = format!("{line16}{term}");
            let (v, used) = parse(buf.as_bytes(), &l).unwrap().unwrap();
            assert_eq!((v, used), (bulks(&["PING", "0123456789a"]), buf.len()));
            let buf = format!("{line16}x{term}");
            assert!(is_too_big(&parse(buf.as_bytes(), &l).unwrap_err(), "inline command length"));
        }
        // 17 bytes without newline could still be 16 + '\r'; 18 cannot.
        assert_eq!(parse(format!("{line16}\r").as_bytes(), &l), Ok(None));
        assert!(parse(format!("{line16}xy").as_bytes(), &l).is_err());
    }

    // --- inline commands -------------------------------------------------

    #[test]
    fn inline_commands() {
        assert_eq!(one(b"PING\r\n"), bulks(&["PING"]));
        assert_eq!(one(b"PING\n"), bulks(&["PING"]));
        assert_eq!(one(b"ping hello\r\n"), bulks(&["ping", "hello"]));
        assert_eq!(one(b"  APPEND \t s  t   d \r\n"), bulks(&["APPEND", "s", "t", "d"]));
        assert_eq!(one(b"APPEND s t \"hello world\" ''\r\n"), bulks(&["APPEND", "s", "t", "hello world", ""]));
        assert_eq!(one(b"X \"a\\\"b\\n\\x41\\\\\"\r\n"), bulks(&["X", "a\"b\nA\\"]));
        assert_eq!(one(b"X 'it\\'s'\r\n"), bulks(&["X", "it's"]));
        assert_eq!(one(b"X \"{\\\"a\\\":1}\"\r\n"), bulks(&["X", "{\"a\":1}"]));
        assert_eq!(one(b"\r\n"), Value::Array(vec![]));
        assert_eq!(one(b"   \n"), Value::Array(vec![]));
        assert_eq!(p(b"PING\r\nPING\r\n"), Ok(Some((bulks(&["PING"]), 6))));
        assert!(err(b"X \"open\r\n").to_string().contains("unbalanced quotes"));
        assert!(err(b"X \"a\"b\r\n").to_string().contains("closing quote"));
    }

    // --- pipelines split at every byte -----------------------------------

    #[test]
    fn pipeline_split_at_every_byte() {
        let frames: [&[u8]; 3] = [
            b"*2\r\n$4\r\nPING\r\n$5\r\nhello\r\n",
            b"*4\r\n$6\r\nAPPEND\r\n$1\r\ns\r\n$1\r\nt\r\n$7\r\n{\"a\":1}\r\n",
            b"VERSION orders-1\r\n",
        ];
        let expected =
            [bulks(&["PING", "hello"]), bulks(&["APPEND", "s", "t", "{\"a\":1}"]), bulks(&["VERSION", "orders-1"])];
        let pipeline = frames.concat();
        let ends: Vec<usize> = frames
            .iter()
            .scan(0, |acc, f| {
                *acc += f.len();
                Some(*acc)
            })
            .collect();
        for k in 0..=pipeline.len() {
            let prefix = &pipeline[..k];
            let mut got = Vec::new();
            let mut at = 0;
            while let Some((v, used)) = p(&prefix[at..]).unwrap() {
                assert!(used > 0 && at + used <= k);
                at += used;
                got.push(v);
            }
            let complete = ends.iter().filter(|&&e| e <= k).count();
            assert_eq!(got, expected[..complete], "split at {k}");
        }
    }

    // --- encoding --------------------------------------------------------

    #[test]
    fn encode_resp2() {
        use ProtocolVersion::Resp2;
        let cases: Vec<(Value, &[u8])> = vec![
            (Value::ok(), b"+OK\r\n"),
            (Value::error("ERR", "bad thing"), b"-ERR bad thing\r\n"),
            (Value::error("ERR", "line\r\nbreak"), b"-ERR line  break\r\n"),
            (Value::Integer(-12), b":-12\r\n"),
            (Value::Integer(i64::MIN), b":-9223372036854775808\r\n"),
            (Value::bulk("hi"), b"$2\r\nhi\r\n"),
            (Value::Null, b"$-1\r\n"),
            (bulks(&["a"]), b"*1\r\n$1\r\na\r\n"),
            (Value::Map(vec![(Value::bulk("k"), Value::Integer(1))]), b"*2\r\n$1\r\nk\r\n:1\r\n"),
            (Value::Set(vec![Value::Integer(1)]), b"*1\r\n:1\r\n"),
            (Value::Push(vec![]), b"*0\r\n"),
            (Value::Double(1.5), b"$3\r\n1.5\r\n"),
            (Value::Boolean(true), b":1\r\n"),
            (Value::Boolean(false), b":0\r\n"),
            (Value::BigNumber("123".into()), b"$3\r\n123\r\n"),
            (Value::Verbatim { format: *b"txt", text: b"hi".to_vec() }, b"$2\r\nhi\r\n"),
        ];
        for (v, want) in cases {
            assert_eq!(enc(&v, Resp2), want, "{v:?}");
        }
    }

    #[test]
    fn encode_resp3() {
        use ProtocolVersion::Resp3;
        let cases: Vec<(Value, &[u8])> = vec![
            (Value::Null, b"_\r\n"),
            (Value::Map(vec![(Value::bulk("k"), Value::Integer(1))]), b"%1\r\n$1\r\nk\r\n:1\r\n"),
            (Value::Set(vec![Value::Integer(1)]), b"~1\r\n:1\r\n"),
            (Value::Push(vec![Value::ok()]), b">1\r\n+OK\r\n"),
            (Value::Double(1.5), b",1.5\r\n"),
            (Value::Double(f64::NEG_INFINITY), b",-inf\r\n"),
            (Value::Double(f64::NAN), b",nan\r\n"),
            (Value::Double(1e300), b",1e300\r\n"),
            (Value::Boolean(true), b"#t\r\n"),
            (Value::BigNumber("-123".into()), b"(-123\r\n"),
            (Value::Verbatim { format: *b"txt", text: b"hi".to_vec() }, b"=6\r\ntxt:hi\r\n"),
            (Value::error("TOOBIG", "x"), b"-TOOBIG x\r\n"),
        ];
        for (v, want) in cases {
            assert_eq!(enc(&v, Resp3), want, "{v:?}");
        }
    }

    #[test]
    fn error_replies() {
        let e = RespError::TooBig { what: "bulk string", len: 11, max: 10 };
        assert_eq!(e.to_value(), Value::Error("TOOBIG bulk string 11 exceeds limit 10".into()));
        let e = RespError::Protocol("x".into());
        assert_eq!(e.to_value(), Value::Error("ERR Protocol error: x".into()));
    }

    // --- properties ------------------------------------------------------

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            "[a-zA-Z0-9 ]{0,12}".prop_map(Value::SimpleString),
            "[A-Z]{1,6} [a-z ]{0,12}".prop_map(Value::Error),
            any::<i64>().prop_map(Value::Integer),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::BulkString),
            Just(Value::Null),
            any::<f64>().prop_filter("nan != nan", |d| !d.is_nan()).prop_map(Value::Double),
            any::<bool>().prop_map(Value::Boolean),
            "-?[0-9]{1,30}".prop_map(Value::BigNumber),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(|text| Value::Verbatim { format: *b"mkd", text }),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Set),
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Push),
                proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(Value::Map),
            ]
        })
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(Some((_, used))) = p(&buf) {
                prop_assert!(used > 0 && used <= buf.len());
            }
        }

        #[test]
        fn random_resp_like_bytes_never_panic(
            body in proptest::collection::vec(
                prop_oneof![
                    Just(b'\r'), Just(b'\n'), Just(b'*'), Just(b'$'), Just(b'%'), Just(b':'),
                    Just(b'-'), Just(b'1'), Just(b'2'), Just(b'0'), Just(b'"'), any::<u8>()
                ],
                0..128,
            )
        ) {
            let l = small_limits();
            if let Ok(Some((_, used))) = parse(&body, &l) {
                prop_assert!(used > 0 && used <= body.len());
            }
        }

        #[test]
        fn resp3_round_trip(v in arb_value()) {
            let buf = enc(&v, ProtocolVersion::Resp3);
            prop_assert_eq!(p(&buf), Ok(Some((v, buf.len()))));
            // Any strict prefix is merely incomplete.
            for k in [0, buf.len() / 2, buf.len() - 1] {
                prop_assert_eq!(p(&buf[..k]), Ok(None));
            }
        }

        #[test]
        fn resp2_encoding_parses(v in arb_value()) {
            let buf = enc(&v, ProtocolVersion::Resp2);
            prop_assert!(matches!(p(&buf), Ok(Some((_, n))) if n == buf.len()));
        }
    }
}
