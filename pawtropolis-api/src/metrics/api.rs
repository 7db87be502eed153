use std::future::Future;

use poem::web::Data;
use poem_openapi::{
    param::{Header, Query},
    types::Type,
};
use serde::Serialize;

use super::{
    Bucket, ChartParams, Latency, MetricsSummary, Timeseries, Window, Zone, latency, summarize,
    timeseries,
};
use crate::{
    ApiTags,
    auth::Auth,
    error::ApiError,
    identity::{Expand, identities_for, warnings_last},
    payload::{Cacheable, JsonBytes},
    snowflake::Snowflake,
    state::{ApiState, SharedState},
};

/// Moderator metrics.
pub(crate) struct MetricsApi;

// Defaults of the contract, declared on the parameters so the OpenAPI document (and the
// clients generated from it) carry them.
fn window_7d() -> Window {
    Window::Days7
}

fn window_30d() -> Window {
    Window::Days30
}

fn bucket_1h() -> Bucket {
    Bucket::Hour1
}

/// The chart parameters, after the guild check.
fn chart_params(
    auth: &Auth,
    guild_id: Snowflake,
    window: Window,
    bucket: Bucket,
    tz: Option<&str>,
) -> Result<ChartParams, ApiError> {
    auth.principal().authorize(&guild_id)?;
    Ok(ChartParams {
        guild_id,
        window,
        bucket,
        zone: Zone::parse(tz)?,
    })
}

/// The cached reply under `key`, or `compute`'s, encoded once and kept for
/// `PAWTROPOLIS_METRICS_CACHE_SECS` when `compute` says it may be (not a reply whose
/// identities Discord may give on the next request); 304 when `If-None-Match` names it.
async fn cached<T, F, Fut>(
    state: &ApiState,
    key: String,
    if_none_match: Option<&str>,
    compute: F,
) -> Result<Cacheable<T>, ApiError>
where
    T: Type + Serialize + Send,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(T, bool), ApiError>>,
{
    let cache = &state.metrics_cache;
    let (body, max_age) = match cache.get(&key) {
        // Only what is left of the entry's life: data is never older than the TTL.
        Some((bytes, left)) => (JsonBytes::from_bytes(bytes), left),
        None => {
            let (reply, keep) = compute().await?;
            let body = JsonBytes::encode(&reply)?;
            if keep {
                cache.put(key, body.bytes().clone());
                (body, cache.ttl_secs())
            } else {
                // Identities Discord could not give now may come on the next request.
                (body, 0)
            }
        }
    };
    Ok(Cacheable::new(body, if_none_match, max_age))
}

#[poem_openapi::OpenApi(tag = "ApiTags::Metrics")]
impl MetricsApi {
    /// Per-moderator summary
    ///
    /// For each moderator active in the window: claims, accepts (`approve`/`accept`), rejects
    /// (`reject`/`perm_reject`), kicks and modmail opens, and the mean, median and 95th
    /// percentile response time in seconds, from an application's latest `app_submitted` to that
    /// moderator's decision (percentiles by the nearest-rank method). Plus guild totals. The
    /// window is the half-open interval (now − window, now]. Results are cached for
    /// `PAWTROPOLIS_METRICS_CACHE_SECS`.
    #[oai(path = "/metrics", method = "get", operation_id = "getMetrics")]
    async fn summary(
        &self,
        auth: Auth,
        state: Data<&SharedState>,
        /// Guild to read (a snowflake).
        guild_id: Query<Snowflake>,
        /// How far back to look: `7d`, `30d` or `90d`.
        #[oai(default = "window_30d")]
        window: Query<Window>,
        /// `identity` attaches each moderator's `display_name` and `avatar_url` and adds a
        /// `warnings` array (one entry per moderator that could not be resolved).
        expand: Query<Option<Expand>>,
        /// An `ETag` from an earlier reply; answers 304 when unchanged.
        #[oai(name = "If-None-Match")]
        if_none_match: Header<Option<String>>,
    ) -> Result<Cacheable<MetricsSummary>, ApiError> {
        let guild_id = guild_id.0;
        auth.principal().authorize(&guild_id)?;
        let window = window.0;
        let expand = expand.0;
        let key = format!("summary:{guild_id}:{}:{expand:?}", window.as_str());
        cached(&state, key, if_none_match.0.as_deref(), || async {
            let mut summary = summarize(&state.db, &guild_id, window, state.now_s()).await?;
            if expand == Some(Expand::Identity) {
                let ids = summary.moderators.iter().map(|m| m.moderator_id.as_str());
                let (shown, warnings) = identities_for(&state.identity, &guild_id, ids).await;
                for m in &mut summary.moderators {
                    if let Some(s) = shown.get(&m.moderator_id) {
                        m.display_name = Some(s.display_name.clone());
                        m.avatar_url = Some(s.avatar_url.clone());
                    }
                }
                // A warning that would come back on every request must not keep the
                // summary's queries from being cached.
                let keep = warnings_last(&state.identity, &warnings);
                summary.warnings = Some(warnings);
                return Ok((summary, keep));
            }
            Ok((summary, true))
        })
        .await
    }

    /// Action counts per time bucket
    ///
    /// Submissions (`app_submitted`), claims (`claim`), accepts (`approve`/`accept`) and
    /// rejects (`reject`/`perm_reject`) per bucket over the half-open window (now − window,
    /// now]. Every bucket from the one containing now − window to the one containing now
    /// appears once, ascending, zero-filled: a UTC grid has window/bucket + 1 buckets (169 for
    /// 7d/1h). With `tz`, buckets start at local hour marks, local 00/06/12/18 or local
    /// midnight, so a day across a DST change is 23 or 25 hours long, and timestamps carry the
    /// local offset. Other actions are not counted. Cached for `PAWTROPOLIS_METRICS_CACHE_SECS`.
    #[allow(clippy::too_many_arguments)] // one per OpenAPI parameter
    #[oai(
        path = "/metrics/timeseries",
        method = "get",
        operation_id = "getTimeseries"
    )]
    async fn timeseries(
        &self,
        auth: Auth,
        state: Data<&SharedState>,
        /// Guild to read (a snowflake).
        guild_id: Query<Snowflake>,
        /// How far back to look: `7d`, `30d` or `90d`.
        #[oai(default = "window_7d")]
        window: Query<Window>,
        /// Bucket width: `1h`, `6h` or `1d`.
        #[oai(default = "bucket_1h")]
        bucket: Query<Bucket>,
        /// IANA time zone the buckets align to (default UTC), e.g. `America/New_York`.
        tz: Query<Option<String>>,
        /// An `ETag` from an earlier reply; answers 304 when unchanged.
        #[oai(name = "If-None-Match")]
        if_none_match: Header<Option<String>>,
    ) -> Result<Cacheable<Timeseries>, ApiError> {
        let params = chart_params(&auth, guild_id.0, window.0, bucket.0, tz.0.as_deref())?;
        cached(
            &state,
            params.cache_key("ts"),
            if_none_match.0.as_deref(),
            || async {
                Ok((
                    timeseries(&state.db, &state.derived, &params, state.now_s()).await?,
                    true,
                ))
            },
        )
        .await
    }

    /// Response-time percentiles per time bucket
    ///
    /// For each application: the time from its latest `app_submitted` at or before its first
    /// decision (`approve`, `accept`, `reject` or `perm_reject`) to that decision, bucketed by
    /// the decision's time over (now − window, now]. Applications without a submission at or
    /// before the decision are left out. Each bucket gives the count, the mean, and the median and
    /// 95th percentile by the nearest-rank method (the value at rank ⌈p/100 · n⌉ of the sorted
    /// times); an empty bucket has `count: 0` and nulls. Same grid and parameters as
    /// `/metrics/timeseries`. Cached for `PAWTROPOLIS_METRICS_CACHE_SECS`.
    #[allow(clippy::too_many_arguments)] // one per OpenAPI parameter
    #[oai(path = "/metrics/latency", method = "get", operation_id = "getLatency")]
    async fn latency(
        &self,
        auth: Auth,
        state: Data<&SharedState>,
        /// Guild to read (a snowflake).
        guild_id: Query<Snowflake>,
        /// How far back to look: `7d`, `30d` or `90d`.
        #[oai(default = "window_7d")]
        window: Query<Window>,
        /// Bucket width: `1h`, `6h` or `1d`.
        #[oai(default = "bucket_1h")]
        bucket: Query<Bucket>,
        /// IANA time zone the buckets align to (default UTC), e.g. `America/New_York`.
        tz: Query<Option<String>>,
        /// An `ETag` from an earlier reply; answers 304 when unchanged.
        #[oai(name = "If-None-Match")]
        if_none_match: Header<Option<String>>,
    ) -> Result<Cacheable<Latency>, ApiError> {
        let params = chart_params(&auth, guild_id.0, window.0, bucket.0, tz.0.as_deref())?;
        cached(
            &state,
            params.cache_key("lat"),
            if_none_match.0.as_deref(),
            || async {
                Ok((
                    latency(&state.db, &state.derived, &params, state.now_s()).await?,
                    true,
                ))
            },
        )
        .await
    }
}
