//! The bucket grid of the time series: aligned to whole buckets in UTC, or to local midnight /
//! local 6-hour / local hour marks in an IANA time zone (so DST days have 23 or 25 hours).

use chrono::{DateTime, Duration, LocalResult, NaiveDate, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use poem_openapi::Enum;
use serde::Serialize;

use crate::error::ApiError;

/// Width of one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Enum, Serialize)]
pub enum Bucket {
    /// One hour.
    #[oai(rename = "1h")]
    #[serde(rename = "1h")]
    Hour1,
    /// Six hours (local 00:00, 06:00, 12:00, 18:00).
    #[oai(rename = "6h")]
    #[serde(rename = "6h")]
    Hours6,
    /// One (local) day.
    #[oai(rename = "1d")]
    #[serde(rename = "1d")]
    Day1,
}

impl Bucket {
    /// Nominal length in seconds (local days across a DST change differ).
    pub fn secs(self) -> i64 {
        match self {
            Self::Hour1 => 3_600,
            Self::Hours6 => 21_600,
            Self::Day1 => 86_400,
        }
    }

    /// The name used in parameters.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour1 => "1h",
            Self::Hours6 => "6h",
            Self::Day1 => "1d",
        }
    }

    fn step_hours(self) -> u32 {
        (self.secs() / 3_600) as u32
    }
}

/// Granularity of the stored counts: every UTC offset in use is a multiple of 15 minutes, so
/// every bucket boundary of every zone falls on a slot boundary.
pub const SLOT_SECS: i64 = 900;

/// The time zone of a request: UTC unless an IANA name was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// UTC; timestamps end in `Z`.
    Utc,
    /// An IANA zone; timestamps carry the local offset.
    Named(Tz),
}

impl Zone {
    /// Parses the `tz` parameter; unknown names are a 400.
    pub fn parse(tz: Option<&str>) -> Result<Self, ApiError> {
        match tz.map(str::trim).filter(|t| !t.is_empty()) {
            None => Ok(Self::Utc),
            Some(name) if name.eq_ignore_ascii_case("utc") => Ok(Self::Utc),
            Some(name) => match name.parse::<Tz>() {
                // The tz database's other names of UTC: one grid, one cache entry, `Z` times.
                Ok(
                    Tz::UTC
                    | Tz::Etc__UTC
                    | Tz::UCT
                    | Tz::Etc__UCT
                    | Tz::Universal
                    | Tz::Etc__Universal
                    | Tz::Zulu
                    | Tz::Etc__Zulu,
                ) => Ok(Self::Utc),
                Ok(tz) => Ok(Self::Named(tz)),
                Err(_) => Err(ApiError::invalid(format!(
                    "tz must be an IANA time zone name such as America/New_York, got {name:?}"
                ))),
            },
        }
    }

    /// The name echoed in replies.
    pub fn name(&self) -> String {
        match self {
            Self::Utc => "UTC".to_owned(),
            Self::Named(tz) => tz.name().to_owned(),
        }
    }

    /// Formats an instant: `…Z` in UTC, with the local offset otherwise.
    pub fn format(&self, secs: i64) -> String {
        let utc = DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or_default();
        match self {
            Self::Utc => utc.to_rfc3339_opts(SecondsFormat::Secs, true),
            Self::Named(tz) => utc
                .with_timezone(tz)
                .to_rfc3339_opts(SecondsFormat::Secs, false),
        }
    }
}

/// Bucket start instants (Unix seconds, ascending) covering the window (`from`, `to`]: from the
/// bucket containing `from` to the bucket containing `to`, each exactly once.
pub fn bucket_starts(from: i64, to: i64, bucket: Bucket, zone: Zone) -> Vec<i64> {
    let boundaries = match zone {
        Zone::Utc => {
            let b = bucket.secs();
            let first = from.div_euclid(b) * b;
            let last = to.div_euclid(b) * b;
            return (0..=(last - first) / b).map(|i| first + i * b).collect();
        }
        Zone::Named(tz) => local_boundaries(from, to, bucket, tz),
    };
    let first = boundaries.iter().rposition(|&b| b <= from).unwrap_or(0);
    let last = boundaries.iter().rposition(|&b| b <= to).unwrap_or(0);
    boundaries[first..=last].to_vec()
}

/// Every local bucket boundary from a day before `from` to a day after `to`.
fn local_boundaries(from: i64, to: i64, bucket: Bucket, tz: Tz) -> Vec<i64> {
    let day = |secs: i64| -> NaiveDate {
        DateTime::<Utc>::from_timestamp(secs, 0)
            .unwrap_or_default()
            .with_timezone(&tz)
            .date_naive()
    };
    let (mut date, end) = (day(from) - Duration::days(1), day(to) + Duration::days(1));
    let step = bucket.step_hours();
    let mut out = Vec::new();
    while date <= end {
        for hour in (0..24).step_by(step as usize) {
            let Some(naive) = date.and_hms_opt(hour, 0, 0) else {
                continue;
            };
            match tz.from_local_datetime(&naive) {
                LocalResult::Single(t) => out.push(t.timestamp()),
                // A repeated local hour (DST ends) starts two hourly buckets; for 6-hour and
                // daily buckets only the first occurrence is a boundary.
                LocalResult::Ambiguous(a, b) => {
                    out.push(a.timestamp());
                    if bucket == Bucket::Hour1 {
                        out.push(b.timestamp());
                    }
                }
                // A skipped local time (DST starts): hourly buckets just lose that hour; a day
                // or 6-hour mark that does not exist starts at the first local time that does.
                LocalResult::None => {
                    if bucket != Bucket::Hour1 {
                        let mut probe = naive;
                        for _ in 0..8 {
                            probe += Duration::minutes(15);
                            if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                                out.push(t.timestamp());
                                break;
                            }
                        }
                    }
                }
            }
        }
        date += Duration::days(1);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Index of the bucket containing `t` (`starts` ascending, `t` ≥ `starts[0]`).
pub fn bucket_index(starts: &[i64], t: i64) -> Option<usize> {
    match starts.binary_search(&t) {
        Ok(i) => Some(i),
        Err(0) => None,
        Err(i) => Some(i - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_761_004_800; // 2025-10-21T00:00:00Z

    #[test]
    fn utc_grid_has_window_over_bucket_plus_one_entries() {
        assert_eq!(
            bucket_starts(NOW - 7 * 86_400, NOW, Bucket::Hour1, Zone::Utc).len(),
            169
        );
        assert_eq!(
            bucket_starts(
                NOW - 7 * 86_400 + 1800,
                NOW + 1800,
                Bucket::Hour1,
                Zone::Utc
            )
            .len(),
            169
        );
        assert_eq!(
            bucket_starts(NOW - 90 * 86_400, NOW, Bucket::Day1, Zone::Utc).len(),
            91
        );
        assert_eq!(
            bucket_starts(NOW - 30 * 86_400, NOW, Bucket::Hours6, Zone::Utc).len(),
            121
        );
    }

    #[test]
    fn new_york_fall_back_day_has_25_hours() {
        let tz = Zone::parse(Some("America/New_York")).expect("zone");
        // 2025-11-02 local day: 04:00Z to 05:00Z next day.
        let day_start = 1_762_056_000; // 2025-11-02T00:00:00-04:00
        let starts = bucket_starts(day_start, day_start + 25 * 3600 - 1, Bucket::Hour1, tz);
        assert_eq!(starts.len(), 25);
        let days = bucket_starts(day_start, day_start + 25 * 3600 - 1, Bucket::Day1, tz);
        assert_eq!(days.len(), 1);
        assert_eq!(tz.format(days[0]), "2025-11-02T00:00:00-04:00");
    }

    #[test]
    fn new_york_spring_forward_day_has_23_hours() {
        let tz = Zone::parse(Some("America/New_York")).expect("zone");
        let day_start = 1_741_496_400; // 2025-03-09T00:00:00-05:00
        let starts = bucket_starts(day_start, day_start + 23 * 3600 - 1, Bucket::Hour1, tz);
        assert_eq!(starts.len(), 23);
        let days = bucket_starts(day_start, day_start + 23 * 3600, Bucket::Day1, tz);
        let shown: Vec<String> = days.iter().map(|d| tz.format(*d)).collect();
        assert_eq!(
            shown,
            ["2025-03-09T00:00:00-05:00", "2025-03-10T00:00:00-04:00"]
        );
    }

    #[test]
    fn kolkata_hours_start_at_half_past_utc() {
        let tz = Zone::parse(Some("Asia/Kolkata")).expect("zone");
        let starts = bucket_starts(NOW, NOW + 3 * 3600, Bucket::Hour1, tz);
        assert!(starts.iter().all(|s| s % 3600 == 1800), "{starts:?}");
        assert_eq!(tz.format(starts[0]), "2025-10-21T05:00:00+05:30");
    }

    #[test]
    fn unknown_zone_is_rejected() {
        assert!(Zone::parse(Some("Mars/Olympus")).is_err());
        assert_eq!(Zone::parse(None).ok(), Some(Zone::Utc));
    }

    #[test]
    fn every_name_of_utc_is_utc() {
        for name in [
            "utc",
            "UTC",
            " Etc/UTC ",
            "UCT",
            "Etc/UCT",
            "Universal",
            "Zulu",
            "Etc/Zulu",
        ] {
            let zone = Zone::parse(Some(name)).expect(name);
            assert_eq!(zone, Zone::Utc, "{name}");
            assert_eq!(zone.format(0), "1970-01-01T00:00:00Z");
            assert_eq!(zone.name(), "UTC");
        }
        // GMT has UTC's offset but is a zone of its own, named and formatted as one.
        let gmt = Zone::parse(Some("GMT")).expect("GMT");
        assert_eq!(
            (gmt.name().as_str(), gmt.format(0).as_str()),
            ("GMT", "1970-01-01T00:00:00+00:00")
        );
    }
}
