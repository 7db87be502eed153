//! `GET /api/metrics/timeseries` and `GET /api/metrics/latency`: the services.

use poem_openapi::Object;
use sea_orm::DatabaseConnection;
use serde::Serialize;

use super::{
    Window,
    derived::Derived,
    grid::{Bucket, Zone, bucket_index, bucket_starts},
    mean, nearest_rank,
};
use crate::{error::ApiError, snowflake::Snowflake};

/// Actions counted in one bucket.
#[derive(Debug, Clone, Copy, Default, Object, Serialize, PartialEq, Eq)]
pub struct ActionCounts {
    /// `app_submitted` actions.
    pub submitted: i64,
    /// `claim` actions.
    pub claim: i64,
    /// `approve` and `accept` actions.
    pub accept: i64,
    /// `reject` and `perm_reject` actions.
    pub reject: i64,
}

/// One bucket of the time series.
#[derive(Debug, Clone, Object, Serialize, PartialEq, Eq)]
pub struct CountsBucket {
    /// Bucket start: RFC 3339, ending in `Z` for UTC or carrying the zone's offset.
    pub timestamp: String,
    /// Actions in the bucket (and in the window).
    pub counts: ActionCounts,
}

/// Action counts per bucket.
#[derive(Debug, Clone, Object, Serialize)]
pub struct Timeseries {
    /// The window asked for.
    pub window: Window,
    /// The bucket width asked for.
    pub bucket: Bucket,
    /// Time zone the buckets are aligned to (`UTC` unless `tz` was given).
    pub tz: String,
    /// Start of the window, exclusive (now − window).
    pub start: String,
    /// End of the window, inclusive (now).
    pub end: String,
    /// Every bucket from the one containing `start` to the one containing `end`, ascending,
    /// zero-filled.
    pub buckets: Vec<CountsBucket>,
}

/// Response times of the applications first decided in one bucket.
#[derive(Debug, Clone, Object, Serialize, PartialEq)]
pub struct LatencyBucket {
    /// Bucket start: RFC 3339, ending in `Z` for UTC or carrying the zone's offset.
    pub timestamp: String,
    /// Applications whose first decision falls in the bucket (and the window) and that have
    /// an `app_submitted` at or before it; the others have no response time.
    pub count: i64,
    /// Mean response time, seconds (rounded); null when `count` is 0.
    #[oai(nullable)]
    pub avg_response_time_s: Option<i64>,
    /// Median response time (nearest rank), seconds; null when `count` is 0.
    #[oai(nullable)]
    pub p50_response_time_s: Option<i64>,
    /// 95th percentile response time (nearest rank), seconds; null when `count` is 0.
    #[oai(nullable)]
    pub p95_response_time_s: Option<i64>,
}

/// Response-time percentiles per bucket.
#[derive(Debug, Clone, Object, Serialize)]
pub struct Latency {
    /// The window asked for.
    pub window: Window,
    /// The bucket width asked for.
    pub bucket: Bucket,
    /// Time zone the buckets are aligned to (`UTC` unless `tz` was given).
    pub tz: String,
    /// Start of the window, exclusive (now − window).
    pub start: String,
    /// End of the window, inclusive (now).
    pub end: String,
    /// Every bucket from the one containing `start` to the one containing `end`, ascending.
    pub buckets: Vec<LatencyBucket>,
}

/// What both charts are asked for: a guild, a window and a bucket grid.
#[derive(Debug, Clone)]
pub struct ChartParams {
    /// The guild.
    pub guild_id: Snowflake,
    /// How far back.
    pub window: Window,
    /// Bucket width.
    pub bucket: Bucket,
    /// Time zone of the grid.
    pub zone: Zone,
}

impl ChartParams {
    /// Cache key of the chart `kind` for these parameters (every parameter is in it).
    pub fn cache_key(&self, kind: &str) -> String {
        format!(
            "{kind}:{}:{}:{}:{}",
            self.guild_id,
            self.window.as_str(),
            self.bucket.as_str(),
            self.zone.name()
        )
    }
}

/// Counts of submissions, claims, accepts and rejects per bucket over (now − window, now].
pub async fn timeseries(
    db: &DatabaseConnection,
    derived: &Derived,
    params: &ChartParams,
    now_s: i64,
) -> Result<Timeseries, ApiError> {
    let ChartParams {
        guild_id,
        window,
        bucket,
        zone,
    } = params.clone();
    let from = now_s - window.secs();
    let starts = bucket_starts(from, now_s, bucket, zone);
    let mut counts = vec![ActionCounts::default(); starts.len()];
    for slot in derived
        .slot_counts(db, guild_id.as_str(), from, now_s)
        .await?
    {
        if let Some(c) = bucket_index(&starts, slot.slot_s).and_then(|i| counts.get_mut(i)) {
            c.submitted += slot.submitted;
            c.claim += slot.claim;
            c.accept += slot.accept;
            c.reject += slot.reject;
        }
    }
    Ok(Timeseries {
        window,
        bucket,
        tz: zone.name(),
        start: zone.format(from),
        end: zone.format(now_s),
        buckets: starts
            .iter()
            .zip(counts)
            .map(|(&s, counts)| CountsBucket {
                timestamp: zone.format(s),
                counts,
            })
            .collect(),
    })
}

/// Response-time statistics per bucket of first decisions over (now − window, now].
pub async fn latency(
    db: &DatabaseConnection,
    derived: &Derived,
    params: &ChartParams,
    now_s: i64,
) -> Result<Latency, ApiError> {
    let ChartParams {
        guild_id,
        window,
        bucket,
        zone,
    } = params.clone();
    let from = now_s - window.secs();
    let starts = bucket_starts(from, now_s, bucket, zone);
    let mut per_bucket: Vec<Vec<i64>> = vec![Vec::new(); starts.len()];
    for (decided_at, rt) in derived
        .response_times(db, guild_id.as_str(), from, now_s)
        .await?
    {
        if let Some(v) = bucket_index(&starts, decided_at).and_then(|i| per_bucket.get_mut(i)) {
            v.push(rt);
        }
    }
    let buckets = starts
        .iter()
        .zip(per_bucket)
        .map(|(&s, mut times)| {
            times.sort_unstable();
            LatencyBucket {
                timestamp: zone.format(s),
                count: times.len() as i64,
                avg_response_time_s: mean(&times),
                p50_response_time_s: nearest_rank(&times, 50),
                p95_response_time_s: nearest_rank(&times, 95),
            }
        })
        .collect();
    Ok(Latency {
        window,
        bucket,
        tz: zone.name(),
        start: zone.format(from),
        end: zone.format(now_s),
        buckets,
    })
}
