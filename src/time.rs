//! UTC calendar arithmetic for event times, timelines and analytics (no time-zone database:
//! everything is UTC).

/// Microseconds in an hour and a day.
pub const HOUR_US: i64 = 3_600_000_000;
pub const DAY_US: i64 = 24 * HOUR_US;

/// A UTC date and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub micros: u32,
}

/// Splits microseconds since the Unix epoch into a UTC date and time (proleptic Gregorian).
pub fn utc(timestamp_us: i64) -> UtcTime {
    let days = timestamp_us.div_euclid(DAY_US);
    let in_day = timestamp_us.rem_euclid(DAY_US);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let secs = in_day / 1_000_000;
    UtcTime {
        year,
        month,
        day,
        hour: (secs / 3600) as u32,
        minute: (secs / 60 % 60) as u32,
        second: (secs % 60) as u32,
        micros: (in_day % 1_000_000) as u32,
    }
}

/// Microseconds since the epoch of a UTC date at midnight (inverse of [`utc`] for dates).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `10:04:18`
pub fn hms(timestamp_us: i64) -> String {
    let t = utc(timestamp_us);
    format!("{:02}:{:02}:{:02}", t.hour, t.minute, t.second)
}

/// `2025-11-01`
pub fn date(timestamp_us: i64) -> String {
    let t = utc(timestamp_us);
    format!("{:04}-{:02}-{:02}", t.year, t.month, t.day)
}

/// `2025-11-01T10:04:18.123456Z`
pub fn rfc3339(timestamp_us: i64) -> String {
    let t = utc(timestamp_us);
    format!("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", t.year, t.month, t.day, t.hour, t.minute, t.second, t.micros)
}

/// The start of the UTC hour / day holding `timestamp_us`.
pub fn hour_start(timestamp_us: i64) -> i64 {
    timestamp_us.div_euclid(HOUR_US) * HOUR_US
}
pub fn day_start(timestamp_us: i64) -> i64 {
    timestamp_us.div_euclid(DAY_US) * DAY_US
}

/// Now, in microseconds since the epoch (for windows such as "the last 30 days").
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(1_700_000_000_000_000), "2023-11-14T22:13:20.000000Z");
        assert_eq!(rfc3339(951_782_400_000_000 + 1), "2000-02-29T00:00:00.000001Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(rfc3339(1), "1970-01-01T00:00:00.000001Z");
        assert_eq!(rfc3339(951_827_696_789_012), "2000-02-29T12:34:56.789012Z");
        assert_eq!(rfc3339(1_735_689_599_000_000), "2024-12-31T23:59:59.000000Z");
        assert_eq!(rfc3339(4_107_542_400_000_000), "2100-03-01T00:00:00.000000Z");
        assert_eq!(hms(1_700_000_000_000_000), "22:13:20");
        assert_eq!(date(1_700_000_000_000_000), "2023-11-14");
    }

    #[test]
    fn civil_round_trip() {
        for days in (-800_000i64..800_000).step_by(997) {
            let t = utc(days * DAY_US);
            assert_eq!(days_from_civil(t.year, t.month, t.day), days);
        }
    }
}
