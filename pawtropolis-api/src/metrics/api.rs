use poem::web::Data;
use poem_openapi::param::{Header, Query};

use super::{MetricsSummary, Window, summarize};
use crate::{
    ApiTags,
    auth::Auth,
    error::ApiError,
    payload::{Cacheable, JsonBytes},
    snowflake::Snowflake,
    state::SharedState,
};

/// Moderator metrics.
pub(crate) struct MetricsApi;

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
        /// How far back to look: `7d`, `30d` or `90d` (default `30d`).
        window: Query<Option<Window>>,
        /// An `ETag` from an earlier reply; answers 304 when unchanged.
        #[oai(name = "If-None-Match")]
        if_none_match: Header<Option<String>>,
    ) -> Result<Cacheable<MetricsSummary>, ApiError> {
        let guild_id = guild_id.0;
        auth.principal().authorize(&guild_id)?;
        let window = window.0.unwrap_or(Window::Days30);
        let cache = &state.metrics_cache;
        let key = format!("summary:{guild_id}:{}", window.as_str());
        let body = match cache.get(&key) {
            Some(bytes) => JsonBytes::from_bytes(bytes),
            None => {
                let summary = summarize(&state.db, &guild_id, window, state.now_s()).await?;
                let body = JsonBytes::encode(&summary)?;
                cache.put(key, body.bytes().clone());
                body
            }
        };
        Ok(Cacheable::new(
            body,
            if_none_match.0.as_deref(),
            cache.ttl_secs(),
        ))
    }
}
