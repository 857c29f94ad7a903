//! UTC calendar arithmetic for event times, timelines and analytics (no time-zone database:
//! everything is UTC).

/// Microseconds in an hour.
pub const HOUR_US: i64 = 3_600_000_000;
/// Microseconds in a day.
pub const DAY_US: i64 = 24 * HOUR_US;

/// A UTC date and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    /// The year (proleptic Gregorian; `0` is 1 BC, negative years are earlier).
    pub year: i64,
    /// The month of the year, 1 to 12.
    pub month: u32,
    /// The day of the month, 1 to 31.
    pub day: u32,
    /// The hour of the day, 0 to 23.
    pub hour: u32,
    /// The minute of the hour, 0 to 59.
    pub minute: u32,
    /// The second of the minute, 0 to 59.
    pub second: u32,
    /// The microseconds within the second, 0 to 999 999.
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

/// Days since the Unix epoch (1970-01-01 is day 0) of a UTC date; multiply by [`DAY_US`] for the
/// microseconds at its midnight (inverse of [`utc`] for dates).
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

/// The start of the UTC hour holding `timestamp_us`, in microseconds since the epoch.
pub fn hour_start(timestamp_us: i64) -> i64 {
    timestamp_us.div_euclid(HOUR_US) * HOUR_US
}
/// The start (midnight) of the UTC day holding `timestamp_us`, in microseconds since the epoch.
pub fn day_start(timestamp_us: i64) -> i64 {
    timestamp_us.div_euclid(DAY_US) * DAY_US
}

/// Now, in microseconds since the epoch (for windows such as "the last 30 days").
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Parses an RFC 3339 date (`2026-01-02`, midnight UTC) or date-time
/// (`2026-01-02T10:04:18Z`, `2026-01-02 10:04:18.5+02:00`) into microseconds since the epoch.
/// `None` when the text is neither.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let text = text.trim();
    if !text.is_ascii() {
        return None; // (and every slice below is on a character boundary)
    }
    let num = |s: &str| -> Option<i64> { s.bytes().all(|b| b.is_ascii_digit()).then(|| s.parse().ok()).flatten() };
    let (date, rest) = if text.len() > 10 { text.split_at(10) } else { (text, "") };
    let mut parts = date.split('-');
    let (year, month, day) = (num(parts.next()?)?, num(parts.next()?)?, num(parts.next()?)?);
    if date.len() != 10 || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let days = days_from_civil(year, month as u32, day as u32);
    if utc(days * DAY_US).day != day as u32 {
        return None; // 2026-02-30
    }
    let mut us = days.checked_mul(DAY_US)?;
    if rest.is_empty() {
        return Some(us);
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    if rest.len() < 8 || &rest[2..3] != ":" || &rest[5..6] != ":" {
        return None;
    }
    let (h, m, sec) = (num(&rest[0..2])?, num(&rest[3..5])?, num(&rest[6..8])?);
    if h > 23 || m > 59 || sec > 60 {
        return None;
    }
    us += (h * 3600 + m * 60 + sec) * 1_000_000;
    let mut rest = &rest[8..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let micros: String = frac[..digits].chars().chain(std::iter::repeat('0')).take(6).collect();
        us += num(&micros)?;
        rest = &frac[digits..];
    }
    let offset_us = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && &rest[3..4] == ":" => {
            let sign = match &rest[0..1] {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            sign * (num(&rest[1..3])? * 60 + num(&rest[4..6])?) * 60_000_000
        }
        _ => return None,
    };
    us.checked_sub(offset_us)
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
    fn parses_rfc3339() {
        assert_eq!(parse_rfc3339("2023-11-14"), Some(1_699_920_000_000_000));
        assert_eq!(parse_rfc3339("2023-11-14T22:13:20Z"), Some(1_700_000_000_000_000));
        assert_eq!(parse_rfc3339("2023-11-14 22:13:20.5Z"), Some(1_700_000_000_500_000));
        assert_eq!(parse_rfc3339("2023-11-15T00:13:20+02:00"), Some(1_700_000_000_000_000));
        assert_eq!(parse_rfc3339(&rfc3339(951_827_696_789_012)), Some(951_827_696_789_012));
        for bad in [
            "",
            "30d",
            "2023-13-01",
            "2023-02-30",
            "2023-11-14T22:13",
            "2023-11-14T22:13:20",
            "2023-11-14x",
            "2023-11-1é",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn civil_round_trip() {
        for days in (-800_000i64..800_000).step_by(997) {
            let t = utc(days * DAY_US);
            assert_eq!(days_from_civil(t.year, t.month, t.day), days);
        }
    }
}
