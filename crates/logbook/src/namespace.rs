//! Namespaces: one store shared by several owners (the daemon's tenants), each confined to the
//! streams whose names start with its own prefix.
//!
//! The rule lives here, once, because two layers above the store apply it: the daemon maps a
//! tenant's stream `order-1` to the stored name `acme:order-1`, and the cold tier files an
//! archived event under the owner its stored name carries. The store itself does not look at
//! namespaces: to it `acme:order-1` is a stream name like any other.
//!
//! Owner names are restricted to `[A-Za-z0-9_]`, at most [`MAX_NAMESPACE_NAME_BYTES`] bytes, so
//! no separator can appear in one: one owner's prefix is never a prefix of another's, and a
//! name is safe to use as a directory name.

use std::fmt;

/// Separates an owner's name from its stream names in a stored name.
pub const NAMESPACE_SEPARATOR: char = ':';
/// The longest owner name.
pub const MAX_NAMESPACE_NAME_BYTES: usize = 64;
/// The owner of stored names that carry no valid owner prefix.
pub const DEFAULT_NAMESPACE: &str = "default";

/// One owner's share of a store: the streams whose stored names start with `<name>:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Namespace {
    name: String,
    prefix: String,
}

/// Why a text is not an owner name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{name}' is not a valid namespace name: {MAX_NAMESPACE_NAME_BYTES} bytes at most of [A-Za-z0-9_], not empty")]
pub struct InvalidNamespace {
    /// The rejected text.
    pub name: String,
}

impl Namespace {
    /// The namespace of the owner `name`; an error when the name breaks the rule above.
    pub fn new(name: &str) -> Result<Namespace, InvalidNamespace> {
        if !is_valid_name(name) {
            return Err(InvalidNamespace { name: name.to_string() });
        }
        Ok(Namespace { name: name.to_string(), prefix: format!("{name}{NAMESPACE_SEPARATOR}") })
    }

    /// The owner's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What every stored name of this namespace starts with: `<name>:`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The stored name of the owner's stream `stream`.
    pub fn stored_name(&self, stream: &str) -> String {
        format!("{}{stream}", self.prefix)
    }

    /// The owner's name for a stored name (the prefix removed), or `None` when the stored name
    /// is not in this namespace.
    pub fn local_name<'a>(&self, stored: &'a str) -> Option<&'a str> {
        stored.strip_prefix(self.prefix.as_str())
    }

    /// The longest stream name the owner may use, given the store's limit for stored names.
    pub fn max_stream_bytes(&self, stored_limit: usize) -> usize {
        stored_limit.saturating_sub(self.prefix.len())
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// True when `name` may name a namespace: not empty, at most [`MAX_NAMESPACE_NAME_BYTES`]
/// bytes, only `[A-Za-z0-9_]`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAMESPACE_NAME_BYTES
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The owner a stored name belongs to: the part before the first [`NAMESPACE_SEPARATOR`] when
/// it is a valid owner name, else [`DEFAULT_NAMESPACE`].
pub fn owner_of(stored: &str) -> &str {
    match stored.split_once(NAMESPACE_SEPARATOR) {
        Some((owner, _)) if is_valid_name(owner) => owner,
        _ => DEFAULT_NAMESPACE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_maps_names_both_ways() {
        let acme = Namespace::new("acme").unwrap();
        assert_eq!(acme.prefix(), "acme:");
        assert_eq!(acme.stored_name("order-1"), "acme:order-1");
        assert_eq!(acme.local_name("acme:order-1"), Some("order-1"));
        assert_eq!(acme.local_name("other:order-1"), None);
        assert_eq!(acme.max_stream_bytes(1024), 1019);
    }

    #[test]
    fn names_outside_the_rule_are_refused() {
        for bad in ["", "a:b", "a-b", "tenant/x", &"x".repeat(MAX_NAMESPACE_NAME_BYTES + 1)] {
            assert!(Namespace::new(bad).is_err(), "{bad:?}");
        }
        assert!(Namespace::new(&"x".repeat(MAX_NAMESPACE_NAME_BYTES)).is_ok());
    }

    #[test]
    fn the_owner_of_a_stored_name() {
        assert_eq!(owner_of("acme:order-1"), "acme");
        assert_eq!(owner_of("order-1"), DEFAULT_NAMESPACE);
        assert_eq!(owner_of("../x:order-1"), DEFAULT_NAMESPACE);
        assert_eq!(owner_of(":order-1"), DEFAULT_NAMESPACE);
    }
}
