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

/// Parses a time parameter given as Unix seconds or RFC 3339; the 400 names the parameter.
pub fn parse_time_param(field: &str, value: &str) -> Result<i64, ApiError> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<i64>() {
        // Bounded so arithmetic on it never overflows: years 0000–9999.
        if (-62_167_219_200..=253_402_300_799).contains(&secs) {
            return Ok(secs);
        }
    } else if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.timestamp());
    }
    Err(ApiError::invalid(format!(
        "{field} must be Unix seconds or an RFC 3339 time (2025-10-21T00:00:00Z), got {value:?}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_with_z() {
        assert_eq!(rfc3339_utc(1_761_004_800), "2025-10-21T00:00:00Z");
    }

    #[test]
    fn parses_both_forms() {
        assert_eq!(
            parse_time_param("since", "1761004800").ok(),
            Some(1_761_004_800)
        );
        assert_eq!(
            parse_time_param("since", "2025-10-20T19:00:00-05:00").ok(),
            Some(1_761_004_800)
        );
        assert!(parse_time_param("since", "yesterday").is_err());
        assert!(parse_time_param("since", "99999999999999").is_err());
    }
}
