//! What a serenity bot does to serve the dashboard API from its own process: build the API
//! from the bot's `Http` and gateway `Cache`, serve it beside the gateway connection, and write
//! moderator actions through the API's recorder so dashboards see them at once.
//!
//! The binary (`src/main.rs`) wires this into a real gateway client; the end-to-end tests run
//! [`build_dashboard`] and [`record_action`] without a gateway, against a fake Discord.

#![warn(missing_docs)]

use std::sync::Arc;

use pawtropolis_api::{
    ApiError, ApiSettings, PawtropolisApi,
    feed::NewAction,
    identity::{DiscordRateLimits, SerenityCacheSource, SerenityHttpSource},
};
use sea_orm::DatabaseConnection;
use serenity::{cache::Cache, http::Http};

/// Builds the API the way the bot does: identities come from the bot's gateway cache first,
/// then from Discord through the bot's own HTTP client (sharing its rate limits). `limits` is
/// fed by the bot's `EventHandler::ratelimit`, so a long rate limit makes lookups answer
/// `rate_limited` at once rather than each waiting it out.
pub async fn build_dashboard(
    db: DatabaseConnection,
    http: Arc<Http>,
    cache: Arc<Cache>,
    limits: Arc<DiscordRateLimits>,
    settings: ApiSettings,
) -> Result<PawtropolisApi, ApiError> {
    // The source replaces the default one whole: `discord_http` would add nothing.
    let source = SerenityCacheSource::new(
        cache,
        SerenityHttpSource::new(http).with_rate_limits(limits),
    );
    PawtropolisApi::builder(db)
        .identity_source(Arc::new(source))
        .settings(settings)
        .build()
        .await
}

/// A moderator action as the bot's command handlers produce it.
pub struct ModeratorAction<'a> {
    /// Guild it happened in.
    pub guild_id: u64,
    /// The moderator.
    pub moderator_id: u64,
    /// The applicant or member concerned.
    pub subject_id: u64,
    /// `claim`, `approve`, `reject`, `kick`, …
    pub action: &'a str,
    /// The application, when there is one.
    pub app_id: Option<&'a str>,
    /// Reason given.
    pub reason: Option<&'a str>,
}

/// Writes the action to `action_log`; open dashboard streams receive it at once.
pub async fn record_action(api: &PawtropolisApi, a: ModeratorAction<'_>) -> Result<i64, ApiError> {
    api.recorder()
        .record(NewAction {
            guild_id: a.guild_id.to_string(),
            action: a.action.to_owned(),
            actor_id: a.moderator_id.to_string(),
            subject_id: Some(a.subject_id.to_string()),
            app_id: a.app_id.map(str::to_owned),
            app_code: a
                .app_id
                .map(|id| id.chars().take(6).collect::<String>().to_uppercase()),
            reason: a.reason.map(str::to_owned),
            meta: None,
            created_at_s: None,
        })
        .await
}
