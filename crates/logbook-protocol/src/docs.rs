//! The grammar's documentation as data. `COMMAND DOCS` answers with it in the shape Redis
//! uses, so redis-cli's `help <command>` and the hints it shows while a command is typed
//! describe logbook's commands (not Redis's commands of the same name, such as APPEND).
//!
//! Every command of the grammar carries its [`CommandDoc`] in the parser table (`command.rs`):
//! a command cannot be added without its documentation.

use crate::resp::Value;

/// One command's documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandDoc {
    /// Upper-case name.
    pub name: &'static str,
    /// One line: what the command does.
    pub summary: &'static str,
    /// The group redis-cli lists it under (`help @stream`).
    pub group: &'static str,
    /// The logbook version that added it.
    pub since: &'static str,
    /// Its arguments, in order.
    pub arguments: &'static [ArgDoc],
}

/// One argument of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgDoc {
    /// What the argument is (`stream`, `count`); for a bare keyword, the keyword.
    pub name: &'static str,
    /// Its kind.
    pub kind: ArgKind,
    /// The keyword that comes before the value (`COUNT` in `COUNT <n>`), if any.
    pub token: Option<&'static str>,
    /// May be left out.
    pub optional: bool,
    /// May be given several times.
    pub multiple: bool,
}

/// The kinds of argument Redis's documentation knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    /// A stream name.
    Key,
    /// Text or bytes.
    String,
    /// A whole number.
    Integer,
    /// A keyword alone (`REV`).
    PureToken,
    /// One of several alternatives.
    OneOf(&'static [ArgDoc]),
    /// Several arguments that go together.
    Block(&'static [ArgDoc]),
}

impl ArgDoc {
    /// A required argument.
    pub const fn new(name: &'static str, kind: ArgKind) -> Self {
        ArgDoc { name, kind, token: None, optional: false, multiple: false }
    }

    /// An optional `TOKEN <value>` pair.
    pub const fn option(token: &'static str, name: &'static str, kind: ArgKind) -> Self {
        ArgDoc { name, kind, token: Some(token), optional: true, multiple: false }
    }

    /// A keyword alone (one of a `oneof`'s alternatives, say).
    pub const fn keyword(token: &'static str) -> Self {
        ArgDoc { name: token, kind: ArgKind::PureToken, token: Some(token), optional: false, multiple: false }
    }

    /// An optional keyword alone.
    pub const fn flag(token: &'static str) -> Self {
        ArgDoc::keyword(token).optional()
    }

    /// The same argument, optional.
    pub const fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// The same argument, repeatable.
    pub const fn multiple(mut self) -> Self {
        self.multiple = true;
        self
    }

    fn kind_name(&self) -> &'static str {
        match self.kind {
            ArgKind::Key => "key",
            ArgKind::String => "string",
            ArgKind::Integer => "integer",
            ArgKind::PureToken => "pure-token",
            ArgKind::OneOf(_) => "oneof",
            ArgKind::Block(_) => "block",
        }
    }

    /// The argument as `COMMAND DOCS` describes it: a map of name, type, token, flags and,
    /// for `oneof` and `block`, the nested arguments.
    fn to_value(self) -> Value {
        let mut fields =
            vec![(Value::bulk("name"), Value::bulk(self.name)), (Value::bulk("type"), Value::bulk(self.kind_name()))];
        if let Some(token) = self.token {
            fields.push((Value::bulk("token"), Value::bulk(token)));
        }
        let flags: Vec<Value> = [(self.optional, "optional"), (self.multiple, "multiple")]
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, flag)| Value::SimpleString(flag.into()))
            .collect();
        if !flags.is_empty() {
            fields.push((Value::bulk("flags"), Value::Set(flags)));
        }
        if let ArgKind::OneOf(nested) | ArgKind::Block(nested) = self.kind {
            fields.push((Value::bulk("arguments"), Value::Array(nested.iter().map(|a| a.to_value()).collect())));
        }
        Value::Map(fields)
    }

    /// The argument as one line of usage shows it: `<count>`, `[COUNT <n>]`, `[TYPE type ...]`.
    fn usage(&self) -> String {
        let value = match self.kind {
            ArgKind::PureToken => String::new(),
            ArgKind::OneOf(alternatives) => alternatives.iter().map(ArgDoc::usage).collect::<Vec<_>>().join("|"),
            ArgKind::Block(parts) => parts.iter().map(ArgDoc::usage).collect::<Vec<_>>().join(" "),
            _ => self.name.to_string(),
        };
        let mut text = match (self.token, value.is_empty()) {
            (Some(token), true) => token.to_string(),
            (Some(token), false) => format!("{token} {value}"),
            (None, _) => value,
        };
        if self.multiple {
            text = format!("{text} [{text} ...]");
        }
        if self.optional {
            text = format!("[{text}]");
        }
        text
    }
}

impl CommandDoc {
    /// The command's entry in a `COMMAND DOCS` reply (the value; the key is the lower-case name).
    pub fn to_value(&self) -> Value {
        Value::Map(vec![
            (Value::bulk("summary"), Value::bulk(self.summary)),
            (Value::bulk("since"), Value::bulk(self.since)),
            (Value::bulk("group"), Value::bulk(self.group)),
            (Value::bulk("arguments"), Value::Array(self.arguments.iter().map(|a| a.to_value()).collect())),
        ])
    }

    /// One line of usage: `READ stream [FROM version] [COUNT count] [REV]`.
    pub fn usage(&self) -> String {
        let mut line = self.name.to_string();
        for argument in self.arguments {
            line.push(' ');
            line.push_str(&argument.usage());
        }
        line
    }
}

/// The `COMMAND DOCS [name ...]` reply for `docs`: every command, or those named (any case;
/// unknown names are left out, as Redis does).
pub fn docs_reply<'a>(docs: impl IntoIterator<Item = &'a CommandDoc>, names: &[String]) -> Value {
    Value::Map(
        docs.into_iter()
            .filter(|doc| names.is_empty() || names.iter().any(|n| n.eq_ignore_ascii_case(doc.name)))
            .map(|doc| (Value::bulk(doc.name.to_ascii_lowercase()), doc.to_value()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPECTED: ArgDoc = ArgDoc::option(
        "EXPECTED",
        "expected",
        ArgKind::OneOf(&[ArgDoc::keyword("any"), ArgDoc::new("version", ArgKind::Integer)]),
    );
    const SAMPLE: CommandDoc = CommandDoc {
        name: "READALL",
        summary: "Reads the global log",
        group: "stream",
        since: "0.1.0",
        arguments: &[
            ArgDoc::option("FROM", "position", ArgKind::Integer),
            ArgDoc::option("TYPE", "type", ArgKind::String).multiple(),
            ArgDoc::flag("REV"),
            EXPECTED,
        ],
    };

    #[test]
    fn usage_shows_tokens_options_and_repeats() {
        assert_eq!(SAMPLE.usage(), "READALL [FROM position] [TYPE type [TYPE type ...]] [REV] [EXPECTED any|version]");
    }

    #[test]
    fn docs_entries_have_the_fields_redis_cli_reads() {
        let Value::Map(entries) = docs_reply([&SAMPLE], &[]) else { panic!("a map") };
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].0, Value::bulk("readall"));
        let Value::Map(fields) = &entries[0].1 else { panic!("a map") };
        let keys: Vec<&Value> = fields.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [&Value::bulk("summary"), &Value::bulk("since"), &Value::bulk("group"), &Value::bulk("arguments")]
        );
        let Value::Array(arguments) = &fields[3].1 else { panic!("an array") };
        assert_eq!(
            arguments[1],
            Value::Map(vec![
                (Value::bulk("name"), Value::bulk("type")),
                (Value::bulk("type"), Value::bulk("string")),
                (Value::bulk("token"), Value::bulk("TYPE")),
                (
                    Value::bulk("flags"),
                    Value::Set(vec![Value::SimpleString("optional".into()), Value::SimpleString("multiple".into())])
                ),
            ])
        );
    }

    #[test]
    fn docs_reply_filters_by_name_in_any_case() {
        let Value::Map(entries) = docs_reply([&SAMPLE], &["readAll".into()]) else { panic!("a map") };
        assert_eq!(entries.len(), 1);
        let Value::Map(entries) = docs_reply([&SAMPLE], &["GET".into()]) else { panic!("a map") };
        assert!(entries.is_empty());
    }
}
