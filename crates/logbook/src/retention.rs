//! Retention policies: which events compaction may remove, and which it must keep.
//!
//! A policy is a list of rules and a list of legal holds:
//!
//! - A **rule** selects events by stream category (the part of the stream name before the first
//!   `-`), by event type, or both, and limits them by age (`max_age`), by count per stream
//!   (`max_count`: only the newest N matching events of each stream stay), or both (an event
//!   goes when either limit says so). When several rules match an event, the most specific one
//!   decides: category and type, then type, then category, then a rule with neither (the
//!   default). Two rules with the same selector are refused.
//! - A **legal hold** names an event type that is never removed before its own hold period has
//!   passed since the event was written, whatever a rule or a tombstone says. Which types are
//!   held when a config names none is the domain's choice, passed to
//!   [`RetentionPolicy::from_config`] (the order lifecycle holds payments and refunds for 7
//!   years: `logbook_order::default_legal_holds`); a configured list replaces it.
//!
//! Two more things are never removed: events of system streams (names starting with `$`, such
//! as the `$deleted` tombstones), and the newest event of every stream that is not deleted, so a
//! stream's version survives compaction (as in KurrentDB, whose scavenge keeps a stream's last
//! event). Events of a deleted stream are removed (without archiving) unless a legal hold keeps
//! them. With `archive = true` (the default) events a rule removes are first written to the cold
//! tier and only then leave the hot tier.
//!
//! In a config file (the daemon's, or `logbook compact --config`):
//!
//! ```toml
//! [retention]
//! archive = true              # move expired events to <data>/archive (Parquet) first
//! compact_interval = "1h"     # logbook serve: run compaction this often (absent: never)
//!
//! [[retention.rules]]
//! category = "order"
//! max_age = "90d"
//!
//! [[retention.rules]]
//! event_type = "CART_VIEWED"
//! max_count = 10
//!
//! [[retention.legal_holds]]
//! event_type = "PAYMENT_CONFIRMED"
//! hold = "7y"
//! ```
//!
//! Durations are a number and a unit: `s`, `m`, `h`, `d`, `w`, or `y`; a year counts as 366 days
//! so a hold never ends early.

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::calendar::DAY_US;

/// Most rules and holds a policy may hold.
pub const MAX_RULES: usize = 1024;

/// One retention rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionRule {
    /// Streams of this category (`order` for `order-42`); `None`: any.
    pub category: Option<String>,
    /// Events of this type; `None`: any.
    pub event_type: Option<String>,
    /// Events older than this go, microseconds.
    pub max_age_us: Option<i64>,
    /// Only the newest this many matching events of each stream stay.
    pub max_count: Option<u64>,
}

/// A legal hold: events of `event_type` stay for at least `hold_us` after they were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegalHold {
    /// The held event type.
    pub event_type: String,
    /// How long after it was written an event of that type stays, microseconds.
    pub hold_us: i64,
}

/// What compaction may remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// The rules, in the order they were configured (the most specific match decides).
    pub rules: Vec<RetentionRule>,
    /// Types no rule or tombstone removes before their hold has passed.
    pub legal_holds: Vec<LegalHold>,
    /// Write events a rule removes to the archive before they leave the hot tier.
    pub archive: bool,
    /// How often `logbook serve` compacts in the background (`None`: only on demand).
    pub compact_interval: Option<Duration>,
}

impl Default for RetentionPolicy {
    /// No rules (nothing expires), no legal holds, archiving on.
    fn default() -> Self {
        RetentionPolicy { rules: Vec::new(), legal_holds: Vec::new(), archive: true, compact_interval: None }
    }
}

/// A year, for holds: 366 days, so a hold never ends before its calendar date.
pub const YEAR_US: i64 = 366 * DAY_US;

/// Parses `90d`, `12h`, `30m`, `45s`, `2w`, `7y` into microseconds.
///
/// Hand-written on purpose, not `humantime::parse_duration`: humantime's year is 365.25 days
/// (ours is [`YEAR_US`], 366, so a legal hold never ends early), it also accepts months, `ms`,
/// spelled-out units and sums like `1h 30m` that retention configs never documented, and its
/// errors are not the messages operators see today. Sharing no semantics, it would be a new
/// dependency of the core crate that replaces nothing.
pub fn parse_duration(text: &str) -> Result<i64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || Error::InvalidInput(format!("duration '{text}': expected a number and a unit s, m, h, d, w or y"));
    let number: i64 = number.parse().map_err(|_| bad())?;
    let unit_us = match unit {
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => DAY_US,
        "w" => 7 * DAY_US,
        "y" => YEAR_US,
        _ => return Err(bad()),
    };
    number.checked_mul(unit_us).ok_or_else(|| Error::InvalidInput(format!("duration '{text}' is too long")))
}

/// The `[retention]` table of a config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Archive expired events first (absent: yes).
    pub archive: Option<bool>,
    /// How often the daemon compacts, a duration (absent: never by itself).
    pub compact_interval: Option<String>,
    /// The rules.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Absent: the caller's default holds. Present (even empty): exactly these.
    pub legal_holds: Option<Vec<HoldConfig>>,
}

/// One `[[retention.rules]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Streams of this category.
    pub category: Option<String>,
    /// Events of this type.
    pub event_type: Option<String>,
    /// The most age, a duration.
    pub max_age: Option<String>,
    /// The most matching events per stream.
    pub max_count: Option<u64>,
}

/// One `[[retention.legal_holds]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoldConfig {
    /// The held event type.
    pub event_type: String,
    /// For how long, a duration.
    pub hold: String,
}

impl RetentionPolicy {
    /// Builds and validates a policy from its config table; `default_holds` apply when the
    /// table names no legal holds.
    pub fn from_config(config: &RetentionConfig, default_holds: &[LegalHold]) -> Result<Self> {
        let mut rules = Vec::with_capacity(config.rules.len());
        for (i, rule) in config.rules.iter().enumerate() {
            let max_age_us = rule
                .max_age
                .as_deref()
                .map(parse_duration)
                .transpose()
                .map_err(|e| Error::InvalidInput(format!("retention rule {}: {e}", i + 1)))?;
            rules.push(RetentionRule {
                category: rule.category.clone(),
                event_type: rule.event_type.clone(),
                max_age_us,
                max_count: rule.max_count,
            });
        }
        let legal_holds = match &config.legal_holds {
            None => default_holds.to_vec(),
            Some(holds) => holds
                .iter()
                .map(|h| {
                    Ok(LegalHold {
                        event_type: h.event_type.clone(),
                        hold_us: parse_duration(&h.hold)
                            .map_err(|e| Error::InvalidInput(format!("legal hold {}: {e}", h.event_type)))?,
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        };
        let compact_interval = config
            .compact_interval
            .as_deref()
            .map(|text| parse_duration(text).map(|us| Duration::from_micros(us.max(0) as u64)))
            .transpose()?;
        let policy = RetentionPolicy { rules, legal_holds, archive: config.archive.unwrap_or(true), compact_interval };
        policy.validate()?;
        Ok(policy)
    }

    /// Refuses rules that limit nothing, zero counts, negative ages, repeated selectors and
    /// repeated holds, naming the offending entry.
    pub fn validate(&self) -> Result<()> {
        if self.rules.len() > MAX_RULES || self.legal_holds.len() > MAX_RULES {
            return Err(Error::InvalidInput(format!("more than {MAX_RULES} retention rules or legal holds")));
        }
        let mut selectors = HashSet::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let name = format!("retention rule {} ({})", i + 1, describe(rule));
            if rule.max_age_us.is_none() && rule.max_count.is_none() {
                return Err(Error::InvalidInput(format!("{name} sets neither max_age nor max_count")));
            }
            if rule.max_count == Some(0) {
                return Err(Error::InvalidInput(format!("{name}: max_count must be at least 1")));
            }
            if rule.max_age_us.is_some_and(|age| age < 0) {
                return Err(Error::InvalidInput(format!("{name}: max_age is negative")));
            }
            if !selectors.insert((rule.category.clone(), rule.event_type.clone())) {
                return Err(Error::InvalidInput(format!("{name} repeats the selector of an earlier rule")));
            }
        }
        let mut held = HashSet::new();
        for hold in &self.legal_holds {
            if hold.hold_us < 0 {
                return Err(Error::InvalidInput(format!("legal hold {}: the period is negative", hold.event_type)));
            }
            if !held.insert(hold.event_type.as_str()) {
                return Err(Error::InvalidInput(format!("legal hold {} is listed twice", hold.event_type)));
            }
        }
        Ok(())
    }

    /// The rule that decides for an event of `category` and `event_type`: the most specific
    /// match.
    pub fn rule_for(&self, category: &str, event_type: &str) -> Option<usize> {
        let mut best: Option<(u8, usize)> = None;
        for (i, rule) in self.rules.iter().enumerate() {
            let category_ok = rule.category.as_deref().is_none_or(|c| c == category);
            let type_ok = rule.event_type.as_deref().is_none_or(|t| t == event_type);
            if !(category_ok && type_ok) {
                continue;
            }
            let score = 2 * u8::from(rule.event_type.is_some()) + u8::from(rule.category.is_some());
            if best.is_none_or(|(s, _)| score > s) {
                best = Some((score, i));
            }
        }
        best.map(|(_, i)| i)
    }

    /// True when any rule limits by count (compaction then counts events per stream first).
    pub fn counts(&self) -> bool {
        self.rules.iter().any(|r| r.max_count.is_some())
    }

    /// True when a legal hold keeps an event of `event_type` written at `timestamp_us` at `now_us`.
    pub fn held(&self, event_type: &str, timestamp_us: i64, now_us: i64) -> bool {
        self.legal_holds.iter().any(|h| h.event_type == event_type && now_us < timestamp_us.saturating_add(h.hold_us))
    }

    /// Decides one event's fate.
    pub fn decide(&self, event: &EventFacts<'_>, now_us: i64) -> Decision {
        if event.stream.starts_with('$') {
            return Decision::Keep;
        }
        let held = self.held(event.event_type, event.timestamp_us, now_us);
        if event.deleted {
            return if held { Decision::Held } else { Decision::Purge };
        }
        if event.newest {
            return Decision::Keep;
        }
        let Some(rule) = event.rule.map(|i| &self.rules[i]) else { return Decision::Keep };
        let too_old = rule.max_age_us.is_some_and(|age| now_us.saturating_sub(event.timestamp_us) > age);
        let too_many = rule.max_count.is_some_and(|count| event.newer_matching >= count);
        match (too_old || too_many, held) {
            (false, _) => Decision::Keep,
            (true, true) => Decision::Held,
            (true, false) => Decision::Expire,
        }
    }
}

fn describe(rule: &RetentionRule) -> String {
    format!(
        "category {}, type {}",
        rule.category.as_deref().unwrap_or("any"),
        rule.event_type.as_deref().unwrap_or("any")
    )
}

/// What compaction knows about one event when it decides.
#[derive(Debug, Clone, Copy)]
pub struct EventFacts<'a> {
    /// The event's stream.
    pub stream: &'a str,
    /// The event's type.
    pub event_type: &'a str,
    /// When the event was stored, in microseconds since the Unix epoch (UTC).
    pub timestamp_us: i64,
    /// The stream is deleted.
    pub deleted: bool,
    /// This is the stream's newest event.
    pub newest: bool,
    /// The rule that decides ([`RetentionPolicy::rule_for`]).
    pub rule: Option<usize>,
    /// Events of the same stream matching the same rule that are newer than this one.
    pub newer_matching: u64,
}

/// An event's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No rule removes it.
    Keep,
    /// A rule or tombstone would remove it, but a legal hold keeps it.
    Held,
    /// A rule removes it: archived first (when the policy archives), then dropped.
    Expire,
    /// Its stream is deleted: dropped without archiving.
    Purge,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(stream: &'a str, event_type: &'a str, timestamp_us: i64) -> EventFacts<'a> {
        EventFacts { stream, event_type, timestamp_us, deleted: false, newest: false, rule: None, newer_matching: 0 }
    }

    #[test]
    fn durations_parse_with_units_and_refuse_garbage() {
        assert_eq!(parse_duration("90d").unwrap(), 90 * DAY_US);
        assert_eq!(parse_duration("12h").unwrap(), 12 * 3_600_000_000);
        assert_eq!(parse_duration("7y").unwrap(), 7 * 366 * DAY_US);
        for bad in ["", "d", "90", "9x", "-1d", "1.5d", "99999999999999999y"] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
    }

    fn payment_hold() -> Vec<LegalHold> {
        ["PAYMENT_CONFIRMED", "REFUND_ISSUED"]
            .into_iter()
            .map(|t| LegalHold { event_type: t.into(), hold_us: 7 * YEAR_US })
            .collect()
    }

    /// A `[retention]` table, written as JSON (the same serde shape a TOML file takes).
    fn from_json(json: &str) -> Result<RetentionPolicy> {
        let config: RetentionConfig =
            serde_json::from_str(json).map_err(|e| Error::InvalidInput(format!("retention config: {e}")))?;
        RetentionPolicy::from_config(&config, &payment_hold())
    }

    #[test]
    fn config_parses_and_the_most_specific_rule_decides() {
        let policy = from_json(
            r#"{"archive": false, "compact_interval": "1h", "rules": [
                {"max_age": "365d"},
                {"category": "order", "max_age": "90d"},
                {"event_type": "CART_VIEWED", "max_count": 3},
                {"category": "order", "event_type": "CART_VIEWED", "max_count": 1}
            ]}"#,
        )
        .unwrap();
        assert!(!policy.archive);
        assert_eq!(policy.compact_interval, Some(Duration::from_secs(3600)));
        assert_eq!(policy.legal_holds, payment_hold(), "no holds configured: the caller's defaults");
        assert_eq!(policy.rule_for("cart", "X"), Some(0));
        assert_eq!(policy.rule_for("order", "X"), Some(1));
        assert_eq!(policy.rule_for("cart", "CART_VIEWED"), Some(2));
        assert_eq!(policy.rule_for("order", "CART_VIEWED"), Some(3));
        let none = from_json(r#"{"legal_holds": []}"#).unwrap();
        assert!(none.legal_holds.is_empty(), "a configured list, even empty, replaces the defaults");
    }

    #[test]
    fn bad_configs_are_refused_with_the_reason() {
        for (json, needle) in [
            (r#"{"rules": [{"category": "order"}]}"#, "neither max_age nor max_count"),
            (r#"{"rules": [{"max_count": 0}]}"#, "at least 1"),
            (r#"{"rules": [{"max_age": "1d"}, {"max_count": 2}]}"#, "repeats the selector"),
            (r#"{"rules": [{"max_age": "soon"}]}"#, "duration 'soon'"),
            (
                r#"{"legal_holds": [{"event_type": "A", "hold": "1y"}, {"event_type": "A", "hold": "2y"}]}"#,
                "listed twice",
            ),
            (r#"{"max_age": "1d"}"#, "unknown field"),
        ] {
            let err = from_json(json).unwrap_err().to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn decisions_follow_rules_holds_tombstones_and_the_newest_event() {
        let now = 1_000 * DAY_US;
        let policy = RetentionPolicy {
            rules: vec![RetentionRule {
                category: Some("order".into()),
                event_type: None,
                max_age_us: Some(90 * DAY_US),
                max_count: Some(5),
            }],
            legal_holds: payment_hold(),
            ..RetentionPolicy::default()
        };
        let old = now - 100 * DAY_US;
        let young = now - 10 * DAY_US;
        let rule = policy.rule_for("order", "ITEM_ADDED");
        let event = |t, ty, newer| EventFacts { rule, newer_matching: newer, ..facts("order-1", ty, t) };
        assert_eq!(policy.decide(&event(young, "ITEM_ADDED", 0), now), Decision::Keep);
        assert_eq!(policy.decide(&event(old, "ITEM_ADDED", 0), now), Decision::Expire, "too old");
        assert_eq!(policy.decide(&event(young, "ITEM_ADDED", 5), now), Decision::Expire, "too many newer");
        assert_eq!(policy.decide(&event(young, "ITEM_ADDED", 4), now), Decision::Keep);
        assert_eq!(policy.decide(&event(old, "PAYMENT_CONFIRMED", 0), now), Decision::Held, "legal hold");
        let seven_years_ago = now - 8 * YEAR_US;
        assert_eq!(policy.decide(&event(seven_years_ago, "PAYMENT_CONFIRMED", 0), now), Decision::Expire);
        assert_eq!(policy.decide(&EventFacts { newest: true, ..event(old, "ITEM_ADDED", 0) }, now), Decision::Keep);
        let deleted = EventFacts { deleted: true, ..event(young, "ITEM_ADDED", 0) };
        assert_eq!(policy.decide(&deleted, now), Decision::Purge);
        let deleted_held = EventFacts { deleted: true, ..event(young, "REFUND_ISSUED", 0) };
        assert_eq!(policy.decide(&deleted_held, now), Decision::Held);
        assert_eq!(policy.decide(&facts("$deleted", "$StreamDeleted", 0), now), Decision::Keep);
        let other = EventFacts { rule: policy.rule_for("cart", "X"), ..facts("cart-1", "X", old) };
        assert_eq!(policy.decide(&other, now), Decision::Keep, "no rule matches");
    }
}
