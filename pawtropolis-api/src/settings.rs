//! Settings of the API with the spec's defaults. Hosts set them through the builder; the server
//! reads them from flags and `PAWTROPOLIS_*` environment variables.

use std::time::Duration;

/// Discord OAuth2 login of dashboard users (all of `DISCORD_CLIENT_ID`,
/// `DISCORD_CLIENT_SECRET` and `PAWTROPOLIS_PUBLIC_URL` set).
#[derive(Debug, Clone)]
pub struct LoginSettings {
    /// The Discord application's client id.
    pub client_id: String,
    /// The Discord application's client secret.
    pub client_secret: String,
    /// Origin browsers use (`https://dash.example.org`); the redirect URI is
    /// `{public_url}/auth/callback`.
    pub public_url: String,
    /// Discord's origin; authorize, token and API URLs derive from it.
    pub discord_api_base: String,
    /// Users who may read every guild.
    pub owner_ids: Vec<String>,
    /// Seconds between re-checks of a session's guild roles on Discord (600).
    pub role_recheck_secs: i64,
    /// Seconds a session lives without use (6 hours).
    pub idle_secs: i64,
    /// Seconds a session lives at most (7 days).
    pub absolute_secs: i64,
}

impl LoginSettings {
    /// True when the cookie may go without `Secure`: the server is explicitly run on
    /// plain-HTTP localhost.
    pub fn insecure_localhost(&self) -> bool {
        reqwest::Url::parse(&self.public_url).is_ok_and(|url| {
            url.scheme() == "http"
                && matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
        })
    }
}

/// Tunable behaviour of the API. `Default` gives the values of the specification.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Fixed "now" (Unix seconds) that metrics windows are computed against, to replay a
    /// historical database (`PAWTROPOLIS_NOW`). `None` means the wall clock.
    pub now: Option<i64>,
    /// How long computed metrics are kept (`PAWTROPOLIS_METRICS_CACHE_SECS`, default 300; 0 turns
    /// the cache off).
    pub metrics_cache_secs: u64,
    /// Default page size of `GET /api/logs` (50; raised to 1 and lowered to
    /// `logs_max_limit` if outside them).
    pub logs_default_limit: u32,
    /// Largest page size of `GET /api/logs` (500, which is also the bound the OpenAPI document
    /// gives `limit`: a host may lower it, and a larger value counts as 500).
    pub logs_max_limit: u32,
    /// Origin the dashboard is served from (`PAWTROPOLIS_PUBLIC_URL`); state-changing requests
    /// carrying another `Origin` are refused. `None` accepts requests without a browser origin
    /// check (API tokens from scripts still work either way).
    pub public_url: Option<String>,
    /// How long a `user_cache` row is used as is (`PAWTROPOLIS_USER_CACHE_TTL_SECS`, 1800).
    pub user_cache_ttl_secs: u64,
    /// How long "Discord does not know this user" is remembered
    /// (`PAWTROPOLIS_NEGATIVE_CACHE_TTL_SECS`, 300).
    pub negative_cache_ttl_secs: u64,
    /// Timeout of one Discord lookup (`PAWTROPOLIS_DISCORD_TIMEOUT_MS`, 5000 ms).
    pub discord_timeout: Duration,
    /// Discord lookups in flight at once, across all requests.
    pub discord_concurrency: usize,
    /// How long to stay away from Discord after a 429 whose `retry_after` is unknown
    /// (`PAWTROPOLIS_DISCORD_BACKOFF_SECS`, 5 s).
    pub discord_backoff: Duration,
    /// Requests per minute `GET /api/users/resolve` accepts from this process
    /// (`PAWTROPOLIS_RESOLVE_RATE_PER_MIN`, 50).
    pub resolve_rate_per_min: u32,
    /// Interval of `: heartbeat` comments on live streams (`PAWTROPOLIS_SSE_HEARTBEAT_SECS`, 20 s).
    /// Open sessions are re-checked at the same pace. At least 10 ms.
    pub sse_heartbeat: Duration,
    /// How often the live feed looks for rows written by other processes
    /// (`PAWTROPOLIS_SSE_POLL_MS`, 200 ms).
    pub sse_poll: Duration,
    /// Most rows replayed to a reconnecting stream before it is told to resync
    /// (`PAWTROPOLIS_SSE_REPLAY_MAX`, 10,000).
    pub sse_replay_max: u32,
    /// Streams open at once on this server (`PAWTROPOLIS_SSE_MAX_STREAMS`, 10,000).
    pub sse_max_streams: usize,
    /// Streams open at once for one principal (`PAWTROPOLIS_SSE_MAX_STREAMS_PER_PRINCIPAL`, 20).
    pub sse_max_streams_per_principal: usize,
    /// Reconnection delay suggested to clients (`retry:`), milliseconds.
    pub sse_retry_ms: u64,
    /// Discord login of dashboard users; `None` leaves only API tokens (and the host's own
    /// verifier).
    pub login: Option<LoginSettings>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            now: None,
            metrics_cache_secs: 300,
            logs_default_limit: 50,
            logs_max_limit: 500,
            public_url: None,
            user_cache_ttl_secs: 1800,
            negative_cache_ttl_secs: 300,
            discord_timeout: Duration::from_secs(5),
            discord_concurrency: 8,
            discord_backoff: Duration::from_secs(5),
            resolve_rate_per_min: 50,
            sse_heartbeat: Duration::from_secs(20),
            sse_poll: Duration::from_millis(200),
            sse_replay_max: 10_000,
            sse_max_streams: 10_000,
            sse_max_streams_per_principal: 20,
            sse_retry_ms: 3_000,
            login: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LoginSettings;

    fn with(url: &str) -> LoginSettings {
        LoginSettings {
            client_id: String::new(),
            client_secret: String::new(),
            public_url: url.into(),
            discord_api_base: String::new(),
            owner_ids: Vec::new(),
            role_recheck_secs: 600,
            idle_secs: 1,
            absolute_secs: 1,
        }
    }

    #[test]
    fn only_plain_http_localhost_goes_without_secure() {
        assert!(with("http://localhost:3000").insecure_localhost());
        assert!(with("http://127.0.0.1:3000").insecure_localhost());
        assert!(with("http://[::1]:3000").insecure_localhost());
        assert!(!with("http://localhost.example.com").insecure_localhost());
        assert!(!with("http://127.0.0.1.nip.io").insecure_localhost());
        assert!(!with("https://localhost").insecure_localhost());
        assert!(!with("https://dash.example.org").insecure_localhost());
    }
}
