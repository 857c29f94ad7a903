//! Event schema versions and upcasters: old event shapes are turned into the current one on
//! read, and stored events are never rewritten.
//!
//! An event's schema version lives in its metadata JSON under the key [`SCHEMA_KEY`]
//! (`{"schema": 2, ...}`). Absent metadata, metadata that is not a JSON object, or an object
//! without the key all mean schema **1**: events written before versioning existed, or by
//! clients that do not know about it, are version 1 by definition. The version of the *data*
//! is kept in the metadata (not in the data) so that the data stays exactly the domain payload
//! the seeds describe, and a reader that ignores versions still sees a plain payload.
//!
//! An [`Upcaster`] lifts one event type from version `n` to `n + 1`; a chain of them lifts any
//! old version to the current one. A missing link is an error, never a silent pass-through.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// The metadata key that holds an event's schema version.
pub const SCHEMA_KEY: &str = "schema";

/// Most upcasting steps applied to one event (a bound on the chain, so a registry mistake
/// can never loop).
pub const MAX_UPCAST_STEPS: u32 = 64;

/// Turns the data of one event type at version `n` into version `n + 1`.
pub type Upcaster = Arc<dyn Fn(serde_json::Value) -> Result<serde_json::Value, String> + Send + Sync>;

/// The schema version recorded in `metadata` (1 when absent). Fails only when the key is
/// present but is not an integer in `1..=u32::MAX`.
pub fn schema_of(metadata: &[u8]) -> Result<u32, String> {
    #[derive(serde::Deserialize)]
    struct SchemaOnly {
        #[serde(default)]
        schema: Option<serde_json::Value>,
    }
    if metadata.is_empty() {
        return Ok(1);
    }
    let Ok(parsed) = serde_json::from_slice::<SchemaOnly>(metadata) else {
        // Not a JSON object: metadata is opaque to the engine, so this is an unversioned event.
        return Ok(1);
    };
    match parsed.schema {
        None => Ok(1),
        Some(value) => value
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .filter(|&v| v >= 1)
            .ok_or_else(|| format!("metadata key '{SCHEMA_KEY}' is {value}, not an integer >= 1")),
    }
}

/// A registry of upcasters, keyed by (event type, version they read).
#[derive(Clone, Default)]
pub struct Upcasters {
    steps: BTreeMap<(String, u32), Upcaster>,
}

impl fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.steps.keys()).finish()
    }
}

impl Upcasters {
    pub fn new() -> Self {
        Upcasters::default()
    }

    /// Registers the step that turns `event_type` data of version `from` into `from + 1`.
    /// A later registration for the same (type, version) replaces the earlier one.
    pub fn register<F>(&mut self, event_type: &str, from: u32, step: F) -> &mut Self
    where
        F: Fn(serde_json::Value) -> Result<serde_json::Value, String> + Send + Sync + 'static,
    {
        self.steps.insert((event_type.to_string(), from), Arc::new(step));
        self
    }

    /// Builder form of [`Upcasters::register`].
    pub fn with<F>(mut self, event_type: &str, from: u32, step: F) -> Self
    where
        F: Fn(serde_json::Value) -> Result<serde_json::Value, String> + Send + Sync + 'static,
    {
        self.register(event_type, from, step);
        self
    }

    /// True when no upcaster is registered.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Lifts `data` of `event_type` from version `from` to `current`. Fails when a step is
    /// missing, when a step fails, or when `from` is newer than `current` (an event written by
    /// newer code than this reader).
    pub fn upcast(
        &self,
        event_type: &str,
        from: u32,
        current: u32,
        mut data: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        if from > current {
            return Err(format!("{event_type} has schema {from}, newer than the {current} this code understands"));
        }
        if current - from > MAX_UPCAST_STEPS {
            return Err(format!("{event_type} needs {} upcasting steps, limit {MAX_UPCAST_STEPS}", current - from));
        }
        for version in from..current {
            let step = self
                .steps
                .get(&(event_type.to_string(), version))
                .ok_or_else(|| format!("no upcaster for {event_type} from schema {version} to {}", version + 1))?;
            data = step(data).map_err(|e| format!("upcasting {event_type} from schema {version}: {e}"))?;
        }
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_defaults_to_one() {
        assert_eq!(schema_of(b""), Ok(1));
        assert_eq!(schema_of(b"{}"), Ok(1));
        assert_eq!(schema_of(b"not json"), Ok(1));
        assert_eq!(schema_of(br#"{"actor":"system"}"#), Ok(1));
        assert_eq!(schema_of(br#"{"schema":3,"actor":"system"}"#), Ok(3));
        assert!(schema_of(br#"{"schema":0}"#).is_err());
        assert!(schema_of(br#"{"schema":"2"}"#).is_err());
        assert!(schema_of(br#"{"schema":5000000000}"#).is_err());
    }

    #[test]
    fn chains_steps_and_reports_gaps() {
        let up = Upcasters::new()
            .with("X", 1, |mut v| {
                v["b"] = serde_json::json!(2);
                Ok(v)
            })
            .with("X", 2, |mut v| {
                v["c"] = serde_json::json!(3);
                Ok(v)
            });
        let out = up.upcast("X", 1, 3, serde_json::json!({"a": 1})).unwrap();
        assert_eq!(out, serde_json::json!({"a": 1, "b": 2, "c": 3}));
        assert_eq!(up.upcast("X", 3, 3, serde_json::json!({})).unwrap(), serde_json::json!({}));
        assert!(up.upcast("X", 1, 4, serde_json::json!({})).unwrap_err().contains("from schema 3"));
        assert!(up.upcast("X", 4, 3, serde_json::json!({})).unwrap_err().contains("newer"));
        assert!(up.upcast("Y", 1, 2, serde_json::json!({})).is_err());
    }
}
