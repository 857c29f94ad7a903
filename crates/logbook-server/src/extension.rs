//! Commands a crate above the daemon adds to it (the order lifecycle adds `TIMELINE`), so the
//! daemon and its grammar know nothing of any one domain.
//!
//! An extension names its command and runs it: the daemon routes a request whose name matches
//! (any case) to it once the connection is authenticated, never before AUTH, and counts and
//! replies as for its own commands. The handler checks its own arguments (with
//! `logbook_protocol::text_argument`), maps the client's stream names into the caller's
//! namespace with [`stored_stream_name`], and turns engine errors into replies with
//! [`error_reply`], which never reveals a server path.

use std::fmt;
use std::sync::Arc;

use logbook::{Namespace, Store};
use logbook_protocol::{CommandDoc, Value};

use crate::console::{ConsoleExtension, ConsoleExtensions};

/// A command added to the daemon by a crate above it.
pub trait CommandExtension: Send + Sync + 'static {
    /// The command's name, upper-case; it must not be one of the grammar's own commands.
    fn name(&self) -> &'static str;

    /// The command's documentation for `COMMAND DOCS` (its `name` is [`CommandExtension::name`]).
    fn doc(&self) -> CommandDoc;

    /// Runs the command with `args` (the arguments after its name) for a caller confined to
    /// `namespace` (`None`: the admin, or a daemon without auth, sees every stream).
    fn call(&self, store: &Store, namespace: Option<&Namespace>, args: Vec<Vec<u8>>) -> Value;
}

/// The extensions a daemon serves (part of its [`crate::Config`], not of the config file):
/// RESP commands and console pages.
#[derive(Clone, Default)]
pub struct Extensions(Vec<Arc<dyn CommandExtension>>, ConsoleExtensions);

impl Extensions {
    /// No extensions.
    pub fn new() -> Self {
        Extensions::default()
    }

    /// Adds `extension`; refused when its name is the grammar's or another extension's.
    pub fn with(mut self, extension: Arc<dyn CommandExtension>) -> Result<Self, String> {
        let name = extension.name();
        let taken = logbook_protocol::command_names().iter().any(|n| n.eq_ignore_ascii_case(name))
            || self.find(name.as_bytes()).is_some();
        if taken || name.is_empty() || name.bytes().any(|b| !b.is_ascii_uppercase()) {
            return Err(format!("extension command name '{name}' is taken or not upper-case letters"));
        }
        self.0.push(extension);
        Ok(self)
    }

    /// Adds the console pages of `extension`; refused when a page id is not lower-case
    /// letters or is taken (by the console's own pages or another extension's).
    pub fn with_console(mut self, extension: Arc<dyn ConsoleExtension>) -> Result<Self, String> {
        for page in extension.pages() {
            let taken = crate::http_api::BUILT_IN_PAGES.contains(&page.id) || self.1.page(page.id).is_some();
            if taken || page.id.is_empty() || page.id.bytes().any(|b| !b.is_ascii_lowercase()) {
                return Err(format!("console page id '{}' is taken or not lower-case letters", page.id));
            }
        }
        self.1 .0.push(extension);
        Ok(self)
    }

    /// The console extensions.
    pub(crate) fn console(&self) -> &ConsoleExtensions {
        &self.1
    }

    /// The extension named `name` (any case).
    pub fn find(&self, name: &[u8]) -> Option<&Arc<dyn CommandExtension>> {
        self.0.iter().find(|e| name.eq_ignore_ascii_case(e.name().as_bytes()))
    }

    /// The extensions' documentation, in the order they were added.
    pub fn docs(&self) -> Vec<CommandDoc> {
        self.0.iter().map(|e| e.doc()).collect()
    }

    /// The extensions' names, in the order they were added.
    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|e| e.name()).collect()
    }
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions").field("commands", &self.names()).field("console", &self.1).finish()
    }
}

/// Two sets of extensions are equal when they name the same commands and pages in the same
/// order.
impl PartialEq for Extensions {
    fn eq(&self, other: &Self) -> bool {
        let pages = |e: &Extensions| e.1.pages().map(|p| p.id).collect::<Vec<_>>();
        self.names() == other.names() && pages(self) == pages(other)
    }
}

impl Eq for Extensions {}

/// Checks a client's stream name and maps it into `namespace` (see the daemon's own commands):
/// the error reply speaks of the name the client sent.
pub fn stored_stream_name(namespace: Option<&Namespace>, stream: &str) -> Result<String, Value> {
    crate::commands::stored_name(namespace, stream)
}

/// The reply for an engine error, without server paths (see docs/protocol.md, "Errors").
pub fn error_reply(err: &logbook::Error) -> Value {
    crate::commands::append::store_error(err)
}
