//! Slowing AUTH guesses (sans-I/O: the caller passes the time and applies the delay).
//!
//! - Every failed AUTH is counted per connection and per client address.
//! - The reply to an AUTH from an address with failures on record (success or failure alike,
//!   so an early hang-up learns nothing) is held for `base x 2^(failures - 1)`, at most `max`.
//! - A connection is closed after `max_failures_per_connection` failures; the per-address
//!   count survives it, so reconnecting does not reset the delay. An address's count is
//!   forgotten `window` after its last failure. At most [`MAX_ADDRESSES`] addresses are
//!   remembered (the stalest is dropped first).
//!
//! With the defaults (100 ms, 5 s, 3 failures) and at most `max_unauthenticated_connections`
//! (64) connections guessing in parallel, one address gets about 13 guesses a second instead
//! of millions.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Addresses remembered at most.
pub(crate) const MAX_ADDRESSES: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AuthGuardLimits {
    pub delay_base: Duration,
    pub delay_max: Duration,
    pub max_failures_per_connection: u32,
    pub window: Duration,
}

/// What to do after a failed AUTH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Hold the reply (and the connection's later requests) this long.
    pub delay: Duration,
    /// Close the connection after the reply.
    pub close: bool,
    /// Failures on record for the address (or the connection, without one).
    pub failures: u32,
}

#[derive(Debug)]
pub(crate) struct AuthGuard {
    limits: AuthGuardLimits,
    /// Failures and the time of the last one, per client address.
    by_address: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl AuthGuard {
    pub fn new(limits: AuthGuardLimits) -> AuthGuard {
        AuthGuard { limits, by_address: Mutex::new(HashMap::new()) }
    }

    fn delay_for(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32 << (failures - 1).min(20);
        self.limits.delay_base.saturating_mul(factor).min(self.limits.delay_max)
    }

    fn failures_of(&self, map: &HashMap<IpAddr, (u32, Instant)>, ip: IpAddr, now: Instant) -> u32 {
        match map.get(&ip) {
            Some(&(failures, last)) if now.saturating_duration_since(last) < self.limits.window => failures,
            _ => 0,
        }
    }

    /// How long to hold the reply to an AUTH from `ip` that succeeded.
    pub fn delay_before_success(&self, ip: Option<IpAddr>, now: Instant) -> Duration {
        let Some(ip) = ip else { return Duration::ZERO };
        let map = self.by_address.lock();
        self.delay_for(self.failures_of(&map, ip, now))
    }

    /// Records a failed AUTH (the connection's `connection_failures`-th).
    pub fn failure(&self, ip: Option<IpAddr>, connection_failures: u32, now: Instant) -> Verdict {
        let failures = match ip {
            None => connection_failures,
            Some(ip) => {
                let mut map = self.by_address.lock();
                let failures = self.failures_of(&map, ip, now).saturating_add(1).max(connection_failures);
                if map.len() >= MAX_ADDRESSES && !map.contains_key(&ip) {
                    if let Some(stalest) = map.iter().min_by_key(|(_, &(_, last))| last).map(|(ip, _)| *ip) {
                        map.remove(&stalest);
                    }
                }
                map.insert(ip, (failures, now));
                failures
            }
        };
        Verdict {
            delay: self.delay_for(failures),
            close: connection_failures >= self.limits.max_failures_per_connection,
            failures,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> AuthGuard {
        AuthGuard::new(AuthGuardLimits {
            delay_base: Duration::from_millis(100),
            delay_max: Duration::from_secs(5),
            max_failures_per_connection: 3,
            window: Duration::from_secs(600),
        })
    }

    #[test]
    fn the_delay_grows_per_failure_and_survives_reconnecting() {
        let guard = guard();
        let ip: Option<IpAddr> = Some("10.0.0.1".parse().unwrap());
        let now = Instant::now();
        assert_eq!(guard.delay_before_success(ip, now), Duration::ZERO);
        let delays: Vec<(u64, bool)> = (1..=10u32)
            .map(|n| {
                // Three failures per connection, then a new connection (count restarts).
                let verdict = guard.failure(ip, (n - 1) % 3 + 1, now);
                (verdict.delay.as_millis() as u64, verdict.close)
            })
            .collect();
        assert_eq!(
            delays,
            vec![
                (100, false),
                (200, false),
                (400, true),
                (800, false),
                (1600, false),
                (3200, true),
                (5000, false),
                (5000, false),
                (5000, true),
                (5000, false)
            ]
        );
        assert_eq!(guard.delay_before_success(ip, now), Duration::from_secs(5));
        // Another address is not slowed; the window forgets.
        assert_eq!(guard.delay_before_success(Some("10.0.0.2".parse().unwrap()), now), Duration::ZERO);
        assert_eq!(guard.delay_before_success(ip, now + Duration::from_secs(601)), Duration::ZERO);
    }

    #[test]
    fn the_address_table_is_bounded() {
        let guard = guard();
        let now = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 100) {
            let ip = IpAddr::from(i.to_be_bytes());
            guard.failure(Some(ip), 1, now + Duration::from_millis(u64::from(i)));
        }
        assert_eq!(guard.by_address.lock().len(), MAX_ADDRESSES);
    }
}
