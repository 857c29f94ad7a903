//! What order data must keep: payments and refunds are financial records, held for 7 years
//! whatever a retention rule says (the legal holds the `logbook` binary and daemon apply when
//! a config names none).

use logbook::{LegalHold, RetentionPolicy, YEAR_US};

/// Years an order's payment and refund events are held.
pub const DEFAULT_HOLD_YEARS: i64 = 7;

/// The order event types held by default.
pub const DEFAULT_HELD_TYPES: [&str; 2] = ["PAYMENT_CONFIRMED", "REFUND_ISSUED"];

/// PAYMENT_CONFIRMED and REFUND_ISSUED, 7 years each.
pub fn default_legal_holds() -> Vec<LegalHold> {
    DEFAULT_HELD_TYPES
        .iter()
        .map(|t| LegalHold { event_type: (*t).to_string(), hold_us: DEFAULT_HOLD_YEARS * YEAR_US })
        .collect()
}

/// No rules (nothing expires), the order holds, archiving on: what `logbook compact` applies
/// without a config.
pub fn default_retention_policy() -> RetentionPolicy {
    RetentionPolicy { legal_holds: default_legal_holds(), ..RetentionPolicy::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payments_and_refunds_are_held_seven_years() {
        let holds = default_legal_holds();
        assert_eq!(holds.iter().map(|h| h.event_type.as_str()).collect::<Vec<_>>(), DEFAULT_HELD_TYPES);
        assert!(holds.iter().all(|h| h.hold_us == 7 * YEAR_US));
        assert_eq!(default_retention_policy().legal_holds, holds);
        assert!(default_retention_policy().rules.is_empty());
    }
}
