//! Settings of the API with the spec's defaults. Hosts set them through the builder; the server
//! reads them from flags and `PAWTROPOLIS_*` environment variables.

use std::time::Duration;

/// Tunable behaviour of the API. `Default` gives the values of the specification.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Fixed "now" (Unix seconds) that metrics windows are computed against, to replay a
    /// historical database (`PAWTROPOLIS_NOW`). `None` means the wall clock.
    pub now: Option<i64>,
    /// How long computed metrics are kept (`PAWTROPOLIS_METRICS_CACHE_SECS`, default 300; 0 turns
    /// the cache off).
    pub metrics_cache_secs: u64,
    /// Default page size of `GET /api/logs`.
    pub logs_default_limit: u32,
    /// Largest page size of `GET /api/logs`.
    pub logs_max_limit: u32,
    /// Origin the dashboard is served from (`PAWTROPOLIS_PUBLIC_URL`); state-changing requests
    /// carrying another `Origin` are refused. `None` accepts requests without a browser origin
    /// check (API tokens from scripts still work either way).
    pub public_url: Option<String>,
    /// Timeout of a single database-backed request before it answers 503.
    pub request_timeout: Duration,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            now: None,
            metrics_cache_secs: 300,
            logs_default_limit: 50,
            logs_max_limit: 500,
            public_url: None,
            request_timeout: Duration::from_secs(30),
        }
    }
}
