//! State shared by every handler of one mounted API.

use std::sync::Arc;

use poem::Request;
use sea_orm::DatabaseConnection;

use crate::{
    auth::SessionVerifier,
    clock::Clock,
    error::ApiError,
    identity::{IdentityResolver, ResolveRateLimiter},
    metrics::MetricsCache,
    settings::ApiSettings,
};

pub(crate) struct ApiState {
    pub db: DatabaseConnection,
    pub settings: ApiSettings,
    pub clock: Arc<dyn Clock>,
    pub verifier: Arc<dyn SessionVerifier>,
    /// The built-in token check (also in `verifier` unless the host passed its own).
    pub tokens: crate::auth::ApiTokenVerifier,
    pub metrics_cache: MetricsCache,
    pub derived: crate::metrics::Derived,
    pub feed: crate::feed::ActionFeed,
    pub streams: Arc<crate::logs::stream::StreamLimits>,
    pub login: Option<Arc<crate::auth::login::Login>>,
    /// Ended credentials (logouts, revocations), which end their live streams at once.
    pub ended: Arc<crate::auth::ended::EndedCredentials>,
    pub identity: IdentityResolver,
    pub resolve_limiter: ResolveRateLimiter,
    /// Encoded resolve replies whose every entry was a fresh cache row: (body, ETag, expiry).
    pub resolve_replies: crate::identity::memory::Lru<String, (bytes::Bytes, String, i64)>,
}

pub(crate) type SharedState = Arc<ApiState>;

impl ApiState {
    /// "Now" for metrics windows: `PAWTROPOLIS_NOW` or the clock.
    pub fn now_s(&self) -> i64 {
        self.settings.now.unwrap_or_else(|| self.clock.now_s())
    }
}

pub(crate) fn origin_of(url: &str) -> &str {
    // "https://dash.example.org/path" -> "https://dash.example.org"
    match url.find("://") {
        Some(i) => match url[i + 3..].find('/') {
            Some(j) => &url[..i + 3 + j],
            None => url,
        },
        None => url,
    }
}

/// Refuses a state-changing request that a browser sent from another site. Requests without an
/// `Origin` header (scripts, the CLI) pass: they cannot carry a victim's cookie by accident.
pub(crate) fn check_origin(state: &ApiState, req: &Request) -> Result<(), ApiError> {
    let Some(origin) = req.header("origin") else {
        return Ok(());
    };
    let allowed = match &state.settings.public_url {
        Some(public) => origin.eq_ignore_ascii_case(origin_of(public.trim_end_matches('/'))),
        // Without a configured dashboard origin, only same-origin requests pass.
        None => req.header("host").is_some_and(|host| {
            origin
                .split_once("://")
                .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host))
        }),
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::BadOrigin(format!(
            "cross-site request refused: origin {origin} is not the dashboard's"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::origin_of;

    #[test]
    fn origin_of_urls() {
        assert_eq!(
            origin_of("https://dash.example.org/x/y"),
            "https://dash.example.org"
        );
        assert_eq!(origin_of("http://127.0.0.1:3000"), "http://127.0.0.1:3000");
    }
}
