//! # pawtropolis-api
//!
//! The dashboard API of the Pawtropolis Tech moderation bot, as a library a host mounts on its
//! own [poem](https://docs.rs/poem) router: the bot itself (sharing its serenity `Http`), or the
//! `pawtropolis-server` binary.
//!
//! ```no_run
//! # async fn run(db: sea_orm::DatabaseConnection) -> Result<(), Box<dyn std::error::Error>> {
//! use pawtropolis_api::{PawtropolisApi, WRITE_TIMEOUT, WriteTimeoutAcceptor, register_api_routes};
//! use poem::listener::{Listener as _, TcpListener};
//!
//! let api = PawtropolisApi::builder(db).build().await?;
//! let app = register_api_routes(poem::Route::new(), &api); // /api/…, /api/docs, /health
//! // Without the timeout, a live stream whose browser stopped reading holds its connection
//! // (and its stream permit) for good.
//! let tcp = TcpListener::bind("127.0.0.1:3000").into_acceptor().await?;
//! poem::Server::new_with_acceptor(WriteTimeoutAcceptor::new(tcp, WRITE_TIMEOUT))
//!     .run(app)
//!     .await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod allow;
pub mod auth;
mod blank_params;
pub mod clock;
pub mod db;
pub mod error;
pub mod feed;
pub mod guild_config;
mod health;
pub mod identity;
pub mod logs;
pub mod metrics;
mod openapi_doc;
pub mod payload;
pub mod settings;
pub mod snowflake;
mod state;
pub mod timefmt;

use std::sync::Arc;

use poem::{EndpointExt, IntoEndpoint, Route};
use poem_openapi::{OpenApiService, Tags};
use sea_orm::DatabaseConnection;
use serenity::http::Http;

pub use auth::{Principal, SessionVerifier};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::ApiError;
pub use logs::direct::{LISTEN_BACKLOG, StreamAcceptor, bind_tcp};
pub use logs::write_timeout::{WRITE_TIMEOUT, WriteTimeoutAcceptor};

/// Where [`register_api_routes`] serves the live stream (for [`StreamAcceptor`]).
pub const STREAM_PATH: &str = "/api/logs/stream";
pub use settings::ApiSettings;
pub use snowflake::Snowflake;

use crate::{
    auth::ApiTokenVerifier,
    guild_config::api::ConfigApi,
    identity::{
        DiscordRateLimits, IdentityResolver, IdentitySource, Resolution, ResolveRateLimiter,
        SerenityHttpSource, api::UsersApi,
    },
    logs::{api::LogsApi, stream::StreamApi},
    metrics::{MetricsCache, api::MetricsApi},
    state::{ApiState, SharedState},
};

/// Groups of operations in the OpenAPI document.
#[derive(Tags)]
pub(crate) enum ApiTags {
    /// The action log.
    Logs,
    /// Moderator metrics.
    Metrics,
    /// Guild configuration.
    Config,
    /// Discord identities.
    Users,
}

/// A configured API, ready to mount with [`register_api_routes`]. Cheap to clone.
#[derive(Clone)]
pub struct PawtropolisApi {
    state: SharedState,
}

impl PawtropolisApi {
    /// Starts building an API over `db` (already migrated: see the `migration` crate).
    pub fn builder(db: DatabaseConnection) -> PawtropolisApiBuilder {
        PawtropolisApiBuilder {
            db,
            discord: None,
            discord_limits: None,
            identity_source: None,
            verifier: None,
            extra_verifiers: Vec::new(),
            settings: ApiSettings::default(),
            clock: None,
        }
    }

    /// The database connection.
    pub fn db(&self) -> &DatabaseConnection {
        &self.state.db
    }

    /// The settings in force.
    pub fn settings(&self) -> &ApiSettings {
        &self.state.settings
    }

    /// The clock in use.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.state.clock.clone()
    }

    /// Writes actions to `action_log`; live streams receive them at once.
    pub fn recorder(&self) -> feed::ActionRecorder {
        feed::ActionRecorder::new(
            self.state.db.clone(),
            self.state.feed.clone(),
            self.state.clock.clone(),
        )
    }

    /// The live feed of `action_log` rows.
    pub fn feed(&self) -> &feed::ActionFeed {
        &self.state.feed
    }

    /// Revokes an API token given by its id or its secret, as `token revoke` does, and ends
    /// its live streams here at once: a bot that revokes tokens itself (a slash command, say)
    /// needs no second process, and on SQLite, where revocations are otherwise read from
    /// `credential_ending` every second, the token is refused and its streams end with no
    /// delay at all.
    /// Returns false when no active token matched.
    pub async fn revoke_token(&self, id_or_secret: &str) -> Result<bool, ApiError> {
        let now = self.state.clock.now_s();
        let Some(hash) = auth::tokens::revoke_hash(&self.state.db, id_or_secret, now).await? else {
            return Ok(false);
        };
        self.state.tokens.forget(&hash);
        self.state.ended.ended(&hash);
        Ok(true)
    }

    /// Live streams open now.
    pub fn open_streams(&self) -> usize {
        self.state.streams.open()
    }

    /// Ends every live stream and stops the feed (call it when the host shuts down, so
    /// graceful shutdown does not wait on streams that never end).
    pub fn shutdown(&self) {
        self.state.feed.stop();
        // Streams with a credential wait on its watch, which a stop turns too; not left to
        // the task that follows the feed, which may be gone with its runtime.
        self.state.ended.end_all();
    }

    /// Resolves user ids to identities as `GET /api/users/resolve` does (without its rate
    /// limit): entries in request order, duplicates removed, plus warnings. At most
    /// [`identity::MAX_IDS`] distinct ids (more is an `InvalidParameter` error).
    pub async fn resolve_users(
        &self,
        guild_id: &Snowflake,
        ids: &[Snowflake],
    ) -> Result<Resolution, ApiError> {
        self.state.identity.resolve_users(guild_id, ids).await
    }
}

/// Builder of [`PawtropolisApi`].
pub struct PawtropolisApiBuilder {
    db: DatabaseConnection,
    discord: Option<Arc<Http>>,
    discord_limits: Option<Arc<DiscordRateLimits>>,
    identity_source: Option<Arc<dyn IdentitySource>>,
    verifier: Option<Arc<dyn SessionVerifier>>,
    extra_verifiers: Vec<Arc<dyn SessionVerifier>>,
    settings: ApiSettings,
    clock: Option<Arc<dyn Clock>>,
}

impl PawtropolisApiBuilder {
    /// The serenity HTTP client used to resolve Discord identities (a bot passes its own).
    /// Without one, identities come only from the database cache.
    pub fn discord_http(mut self, http: Arc<Http>) -> Self {
        self.discord = Some(http);
        self
    }

    /// Rate-limit waits of the [`discord_http`](Self::discord_http) client, as its serenity
    /// rate limiter reports them (install [`DiscordRateLimits::callback`] on its `Ratelimiter`,
    /// or call [`DiscordRateLimits::record`] from `EventHandler::ratelimit`). With them, a
    /// long wait makes lookups answer `rate_limited` at once instead of each waiting out the
    /// Discord timeout. They go to the default identity source only: with
    /// [`identity_source`](Self::identity_source), pass them to your source instead
    /// ([`SerenityHttpSource::with_rate_limits`]).
    pub fn discord_rate_limits(mut self, limits: Arc<DiscordRateLimits>) -> Self {
        self.discord_limits = Some(limits);
        self
    }

    /// Where identities come from when the database cache cannot answer. Default: Discord
    /// through the [`discord_http`](Self::discord_http) client, when one is given. A bot passes
    /// `identity::SerenityCacheSource` (feature `serenity-cache`) to answer from its gateway
    /// cache first. This replaces the default source whole, including the
    /// [`discord_rate_limits`](Self::discord_rate_limits) given to it.
    pub fn identity_source(mut self, source: Arc<dyn IdentitySource>) -> Self {
        self.identity_source = Some(source);
        self
    }

    /// How credentials become principals, replacing the built-in verifiers whole. Those are:
    /// API tokens from the `api_token` table ([`auth::ApiTokenVerifier`]), plus the dashboard's
    /// session cookies when the Discord login is configured. To accept your own credentials
    /// beside them, use [`extra_verifier`](Self::extra_verifier) instead: a replacement loses
    /// the session cookies (a Discord sign-in then answers 401 on every `/api` call), and an
    /// `ApiTokenVerifier` of your own keeps trusting a revoked token for up to
    /// [`auth::TOKEN_RECHECK`] unless you call its [`forget`](auth::ApiTokenVerifier::forget).
    pub fn session_verifier(mut self, verifier: Arc<dyn SessionVerifier>) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// A verifier of the host's own, asked after the built-in ones (or the
    /// [`session_verifier`](Self::session_verifier)), which stay in place: API tokens, whose
    /// revocations take effect at once, and dashboard sessions. Yours sees what they do not
    /// recognise: they pass over a credential not shaped like theirs without asking the
    /// database, and look up the rest. The first verifier that recognises a credential
    /// decides, and an `Err` from any (a database failure, say) ends the request (500).
    /// Call it again to add more, asked in order.
    pub fn extra_verifier(mut self, verifier: Arc<dyn SessionVerifier>) -> Self {
        self.extra_verifiers.push(verifier);
        self
    }

    /// Settings (defaults: those of the specification).
    pub fn settings(mut self, settings: ApiSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The clock (default: the system clock; tests pass a [`ManualClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Builds the API.
    pub async fn build(mut self) -> Result<PawtropolisApi, ApiError> {
        // A zero period would make every stream's timer panic.
        self.settings.sse_heartbeat = self.settings.sse_heartbeat.max(MIN_HEARTBEAT);
        // The document bounds `limit` to 1..=500 (its validator refuses more before any
        // setting is read); a default outside the largest page would refuse every request
        // without `limit`.
        let max = self.settings.logs_max_limit.clamp(1, logs::LIMIT_MAX);
        let default = self.settings.logs_default_limit.clamp(1, max);
        if (max, default)
            != (
                self.settings.logs_max_limit,
                self.settings.logs_default_limit,
            )
        {
            tracing::warn!(
                logs_max_limit = self.settings.logs_max_limit,
                logs_default_limit = self.settings.logs_default_limit,
                "page sizes of /api/logs outside 1 to {}: using a largest of {max} and a default of {default}",
                logs::LIMIT_MAX
            );
        }
        self.settings.logs_max_limit = max;
        self.settings.logs_default_limit = default;
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let login = self.settings.login.clone().map(|settings| {
            Arc::new(auth::login::Login {
                discord: auth::discord::DiscordLogin::new(&settings),
                store: auth::SessionStore::new(self.db.clone(), clock.clone(), settings.clone()),
                exchanges: auth::throttle::ExchangeThrottle::default(),
                settings,
            })
        });
        // Default: API tokens, plus dashboard sessions when the Discord login is configured.
        let tokens = ApiTokenVerifier::new(self.db.clone(), clock.clone());
        let verifier = self.verifier.unwrap_or_else(|| {
            let mut chain = auth::VerifierChain::new().with(Arc::new(tokens.clone()));
            if let Some(l) = &login {
                chain = chain.with(Arc::new(l.store.clone()));
            }
            Arc::new(chain)
        });
        let verifier: Arc<dyn SessionVerifier> = if self.extra_verifiers.is_empty() {
            verifier
        } else {
            let chain = auth::VerifierChain::new().with(verifier);
            Arc::new(
                self.extra_verifiers
                    .into_iter()
                    .fold(chain, auth::VerifierChain::with),
            )
        };
        let source = self.identity_source.or_else(|| {
            self.discord.clone().map(|http| {
                let source = SerenityHttpSource::new(http);
                Arc::new(match self.discord_limits.clone() {
                    Some(limits) => source.with_rate_limits(limits),
                    None => source,
                }) as Arc<dyn IdentitySource>
            })
        });
        if source.is_none() {
            tracing::warn!("no Discord client: identities are served from the database cache only");
        }
        let identity =
            IdentityResolver::new(self.db.clone(), source, clock.clone(), &self.settings);
        let feed = feed::ActionFeed::start(self.db.clone(), self.settings.sse_poll).await?;
        let ended = Arc::new(auth::ended::EndedCredentials::default());
        follow_endings(&feed, ended.clone(), tokens.clone());
        let streams = Arc::new(logs::stream::StreamLimits::new(
            self.settings.sse_max_streams,
            self.settings.sse_max_streams_per_principal,
        ));
        let state = Arc::new(ApiState {
            identity,
            resolve_limiter: ResolveRateLimiter::new(self.settings.resolve_rate_per_min),
            resolve_replies: identity::memory::Lru::new(RESOLVE_REPLIES),
            derived: metrics::Derived::new(),
            feed,
            streams,
            login,
            ended,
            metrics_cache: MetricsCache::new(self.settings.metrics_cache_secs),
            db: self.db,
            settings: self.settings,
            clock,
            verifier,
            tokens,
        });
        // Bring the metrics tables up to date now rather than on the first chart request
        // (on a large database that first pass takes seconds).
        let warm = state.clone();
        tokio::spawn(async move {
            if let Err(e) = warm.derived.catch_up(&warm.db).await {
                tracing::warn!(error = %e, "could not bring the metrics tables up to date");
            }
        });
        Ok(PawtropolisApi { state })
    }
}

/// Ends the streams of credentials announced as ended, and stops trusting such tokens without
/// asking the database, until the feed stops, which ends every stream with a credential. The
/// task holds no handle of the feed, so it does not keep the feed alive.
fn follow_endings(
    feed: &feed::ActionFeed,
    ended: Arc<auth::ended::EndedCredentials>,
    tokens: ApiTokenVerifier,
) {
    use tokio::sync::broadcast::error::RecvError;
    let mut notices = feed.ended_credentials();
    let mut stopped = feed.stopped();
    tokio::spawn(async move {
        loop {
            let notice = tokio::select! {
                notice = notices.recv() => notice,
                _ = stopped.wait_for(|stopped| *stopped) => {
                    ended.end_all();
                    return;
                }
            };
            match notice {
                // Forgotten first: a request after the stream ended must find it revoked.
                Ok(hash) => {
                    tokens.forget(&hash);
                    ended.ended(&hash);
                }
                Err(RecvError::Lagged(n)) => tracing::warn!(
                    missed = n,
                    "missed ended credentials; their streams close at their next heartbeat"
                ),
                Err(RecvError::Closed) => {
                    ended.end_all();
                    return;
                }
            }
        }
    });
}

/// Encoded `/api/users/resolve` replies kept: a reply of 100 ids is about 33 KB, and every
/// order of the same ids is an entry of its own, so this bounds them to about 33 MB.
const RESOLVE_REPLIES: usize = 1_000;

/// Shortest heartbeat interval of live streams: shorter settings are raised to it.
const MIN_HEARTBEAT: std::time::Duration = std::time::Duration::from_millis(10);

type Apis = (LogsApi, StreamApi, MetricsApi, ConfigApi, UsersApi);

fn openapi_service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (LogsApi, StreamApi, MetricsApi, ConfigApi, UsersApi),
        "Pawtropolis API",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Dashboard API of the Pawtropolis Tech moderation bot: the action log, moderator \
         metrics, guild configuration and Discord identities. Every operation needs an API token \
         (`Authorization: Bearer …`) or a dashboard session cookie, and answers 403 for a \
         guild the caller may not read. Errors are `{\"error\": {\"code\", \"message\"}}`. \
         Snowflakes are strings of 17–20 digits without a leading zero; times are RFC 3339. \
         A query parameter sent empty or blank (`moderator_id=`, as a form's unfilled field) \
         is the same as one left out.",
    )
    .url_prefix("/api")
}

/// The OpenAPI document of the API as YAML (what `openapi.yaml` holds).
pub fn openapi_yaml() -> String {
    openapi_doc::yaml().to_owned()
}

/// The OpenAPI document of the API as JSON (served at `/api/openapi.json`).
pub fn openapi_json() -> String {
    openapi_doc::json().to_owned()
}

/// Mounts the API on `route`: every operation under `/api`, the OpenAPI document at
/// `/api/openapi.json`, Swagger UI at `/api/docs`, and `GET /health`. The host keeps its own
/// routes beside them.
pub fn register_api_routes(route: Route, api: &PawtropolisApi) -> Route {
    let service = openapi_service();
    // Browsers may call the API only from the dashboard's origin, with credentials.
    let public = api.state.settings.public_url.clone();
    let cors = move || {
        let mut c = poem::middleware::Cors::new()
            .allow_credentials(true)
            .allow_methods([
                poem::http::Method::GET,
                poem::http::Method::PUT,
                poem::http::Method::POST,
            ])
            .allow_headers([
                "authorization",
                "content-type",
                "if-none-match",
                "last-event-id",
            ])
            // Without these a cross-origin script cannot read the rate limit and cache
            // headers the API sends.
            .expose_headers([
                "etag",
                "retry-after",
                "x-ratelimit-limit",
                "x-ratelimit-remaining",
            ]);
        if let Some(url) = &public {
            c = c.allow_origin(state::origin_of(url.trim_end_matches('/')));
        }
        c
    };
    let with_cors = api.state.settings.public_url.is_some();
    // CORS inside the error renderer, so that its refusals get the JSON error body too.
    let api_tree = Route::new()
        .at("/docs", poem::get(openapi_doc::swagger_ui))
        .at("/docs/", poem::get(openapi_doc::swagger_ui))
        .at("/openapi.json", poem::get(openapi_doc::spec_endpoint))
        .nest(
            "/",
            service
                .into_endpoint()
                .around(blank_params::drop_blank_params),
        )
        .with_if(with_cors, cors())
        .catch_all_error(error::render_error)
        .data(api.state.clone())
        .around(|ep, req| allow::add_allow(&allow::API, ep, req));
    let route = route.nest("/api", api_tree).at(
        "/health",
        poem::get(health::health)
            .data(api.state.clone())
            .around(|ep, req| allow::add_allow(&allow::HEALTH, ep, req)),
    );
    if api.state.login.is_some() {
        route.nest(
            "/auth",
            auth::login::routes()
                .data(api.state.clone())
                .with_if(with_cors, cors())
                .around(|ep, req| allow::add_allow(&allow::AUTH, ep, req)),
        )
    } else {
        route
    }
}
