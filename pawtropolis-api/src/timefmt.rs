//! Time formats of the API: RFC 3339 out, Unix seconds or RFC 3339 in.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::ApiError;

/// Formats Unix seconds as RFC 3339 UTC ending in `Z` (`2025-10-21T00:00:00Z`).
pub fn rfc3339_utc(secs: i64) -> String {
    DateTime::<Utc>::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Unix seconds as the bot's `datetime('now')` text (`2025-10-21 00:00:00`, UTC), the format of
/// the `updated_at` columns it shares with us.
pub fn sql_datetime(secs: i64) -> String {
    DateTime::<Utc>::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Unix seconds of a time stored as text by the bot, by us or by other writers of the shared
/// tables: SQLite's `datetime('now')` (`2025-10-21 00:00:00`, with or without a fraction),
/// JavaScript's `toISOString()`, RFC 3339 with an offset, PostgreSQL's `now()::text` (`…+00`),
/// or epoch seconds or milliseconds. `None` when it is none of these.
pub fn parse_stored_time(text: &str) -> Option<i64> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<i64>().ok()? {
            // Beyond year 5138 in seconds: milliseconds, as `Date.now()` writes them.
            n if n > 100_000_000_000 => Some(n / 1000),
            n => Some(n),
        };
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp());
    }
    for zoned in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(text, zoned) {
            return Some(t.timestamp());
        }
    }
    let naive = text.strip_suffix('Z').unwrap_or(text);
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(naive, f).ok())
        .map(|t| t.and_utc().timestamp())
}

/// A time stored as text (see [`parse_stored_time`]) as the API's RFC 3339 UTC, to the second.
/// Text in no known form is passed on as stored rather than dropped.
pub fn stored_to_rfc3339(stored: &str) -> String {
    parse_stored_time(stored).map_or_else(|| stored.to_owned(), rfc3339_utc)
}

/// A time parameter: whole Unix seconds and the nanoseconds past them (RFC 3339 allows a
/// fraction; the rows it is compared with hold whole seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeParam {
    /// Whole seconds, rounded down.
    pub secs: i64,
    /// Nanoseconds past `secs`.
    pub nanos: u32,
}

impl TimeParam {
    /// The first whole second at or after this time: the bound for "at or after".
    pub fn at_or_after(self) -> i64 {
        self.secs + i64::from(self.nanos > 0)
    }

    /// The last whole second at or before this time: the bound for "at or before".
    pub fn at_or_before(self) -> i64 {
        self.secs
    }
}

/// Parses a time parameter given as Unix seconds or RFC 3339; the 400 names the parameter.
pub fn parse_time_param(field: &str, value: &str) -> Result<TimeParam, ApiError> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<i64>() {
        // Bounded so arithmetic on it never overflows: years 0000–9999.
        if (-62_167_219_200..=253_402_300_799).contains(&secs) {
            return Ok(TimeParam { secs, nanos: 0 });
        }
    } else if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(TimeParam {
            secs: t.timestamp(),
            nanos: t.timestamp_subsec_nanos(),
        });
    }
    Err(ApiError::invalid(format!(
        "{field} must be Unix seconds or an RFC 3339 time (2025-10-21T00:00:00Z), got {value:?}"
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stored_times_come_out_as_rfc3339() {
        assert_eq!(
            stored_to_rfc3339("2025-10-21 00:00:05"),
            "2025-10-21T00:00:05Z"
        );
        assert_eq!(
            stored_to_rfc3339("2025-10-21 00:00:05.250"),
            "2025-10-21T00:00:05Z"
        );
        assert_eq!(
            stored_to_rfc3339("2025-10-21 02:00:05+02"),
            "2025-10-21T00:00:05Z"
        );
        assert_eq!(stored_to_rfc3339("last tuesday"), "last tuesday");
    }

    #[test]
    fn stored_time_round_trip() {
        assert_eq!(
            parse_stored_time(&sql_datetime(1_761_004_800)),
            Some(1_761_004_800)
        );
        assert_eq!(parse_stored_time("garbage"), None);
        assert_eq!(parse_stored_time(""), None);
        assert_eq!(parse_stored_time("99999999999999999999999"), None);
    }

    #[test]
    fn reads_the_times_other_writers_store() {
        let t = 1_761_004_800; // 2025-10-21 00:00:00 UTC
        for text in [
            "2025-10-21 00:00:00",
            " 2025-10-21 00:00:00.5 ",
            "2025-10-21T00:00:00.123Z",
            "2025-10-21T00:00:00Z",
            "2025-10-21T02:00:00+02:00",
            "2025-10-21 00:00:00.123456+00",
            "2025-10-21 02:00:00+02",
            "2025-10-21T00:00:00",
            "1761004800",
            "1761004800123",
        ] {
            assert_eq!(parse_stored_time(text), Some(t), "{text}");
        }
    }

    #[test]
    fn formats_utc_with_z() {
        assert_eq!(rfc3339_utc(1_761_004_800), "2025-10-21T00:00:00Z");
    }

    #[test]
    fn parses_both_forms() {
        let secs = |v: &str| parse_time_param("since", v).ok().map(|t| t.secs);
        assert_eq!(secs("1761004800"), Some(1_761_004_800));
        assert_eq!(secs("2025-10-20T19:00:00-05:00"), Some(1_761_004_800));
        // A fraction of a second: "at or after" starts at the next whole second, "at or
        // before" ends at this one.
        let t = parse_time_param("since", "2025-10-21T00:00:00.5Z").unwrap();
        assert_eq!(
            (t.at_or_after(), t.at_or_before()),
            (1_761_004_801, 1_761_004_800)
        );
        let t = parse_time_param("since", "2025-10-21T00:00:00Z").unwrap();
        assert_eq!(
            (t.at_or_after(), t.at_or_before()),
            (1_761_004_800, 1_761_004_800)
        );
        assert!(parse_time_param("since", "yesterday").is_err());
        assert!(parse_time_param("since", "99999999999999").is_err());
    }
}
