//! A serenity bot that serves the Pawtropolis dashboard API on a port beside its gateway
//! connection, in one process.
//!
//! ```sh
//! DISCORD_TOKEN=… PAWTROPOLIS_DATABASE_URL=sqlite://data/bot.db?mode=rwc cargo run -p pawtropolis-bot-example
//! ```
//!
//! Every member who joins a guild is recorded as a `member_join` action through the API's
//! recorder, so dashboards following `/api/logs/stream` see it at once. Member joins need the
//! privileged Server Members Intent: turn it on for the bot in Discord's developer portal, or
//! the gateway closes the connection (close code 4014, disallowed intents).

use std::sync::{Arc, OnceLock};

use pawtropolis_api::{
    ApiSettings, PawtropolisApi, STREAM_PATH, StreamAcceptor, bind_tcp,
    identity::DiscordRateLimits, register_api_routes,
};
use pawtropolis_bot_example::{ModeratorAction, build_dashboard, record_action};
use poem::{EndpointExt as _, Route, Server};
use serenity::{
    all::{Context, EventHandler, GatewayIntents, Member, RatelimitInfo, Ready},
    async_trait,
};

struct Handler {
    db: sea_orm::DatabaseConnection,
    bind: String,
    api: Arc<OnceLock<PawtropolisApi>>,
    limits: Arc<DiscordRateLimits>,
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, ctx: Context, ready: Ready) {
        tracing::info!(user = %ready.user.name, "gateway ready");
        if self.api.get().is_some() {
            return; // a reconnect: the API is already served
        }
        let api = match build_dashboard(
            self.db.clone(),
            ctx.http.clone(),
            ctx.cache.clone(),
            self.limits.clone(),
            ApiSettings::default(),
        )
        .await
        {
            Ok(api) => api,
            Err(e) => {
                tracing::error!(error = %e, "could not build the dashboard API");
                return;
            }
        };
        let _ = self.api.set(api.clone());
        let app = Arc::new(register_api_routes(Route::new(), &api).map_to_response());
        let bind = self.bind.clone();
        tokio::spawn(async move {
            let tcp = match bind_tcp(&bind).await {
                Ok(tcp) => tcp,
                Err(e) => {
                    tracing::error!(%bind, error = %e, "could not listen for the dashboard API");
                    return;
                }
            };
            // Dashboards idle on live streams all day: answered from the socket, a few KB
            // each; a stream whose browser stopped reading is closed after `WRITE_TIMEOUT`.
            let acceptor = StreamAcceptor::new(tcp, app.clone(), STREAM_PATH);
            tracing::info!(%bind, "dashboard API listening");
            if let Err(e) = Server::new_with_acceptor(acceptor).run(app).await {
                tracing::error!(error = %e, "dashboard API stopped");
            }
        });
    }

    async fn ratelimit(&self, data: RatelimitInfo) {
        // The dashboard's identity lookups share the bot's client and its rate limits.
        self.limits.record(&data);
    }

    async fn guild_member_addition(&self, _ctx: Context, member: Member) {
        let Some(api) = self.api.get() else { return };
        let action = ModeratorAction {
            guild_id: member.guild_id.get(),
            moderator_id: member.user.id.get(),
            subject_id: member.user.id.get(),
            action: "member_join",
            app_id: None,
            reason: None,
        };
        if let Err(e) = record_action(api, action).await {
            tracing::warn!(error = %e, "could not record a member join");
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt::init();
    let token = std::env::var("DISCORD_TOKEN")?;
    let url = std::env::var("PAWTROPOLIS_DATABASE_URL")
        .unwrap_or_else(|_| "sqlite://data/bot.db?mode=rwc".into());
    let bind = std::env::var("PAWTROPOLIS_BIND").unwrap_or_else(|_| "127.0.0.1:3000".into());
    migration::cli::ensure_sqlite_dir(&url)?;
    let db = pawtropolis_api::db::connect(&url, 8).await?;
    migration::cli::run(&db, &migration::cli::MigrateCommand::Up { steps: None }).await?;
    let intents = GatewayIntents::GUILDS | GatewayIntents::GUILD_MEMBERS;
    let mut client = serenity::Client::builder(&token, intents)
        .event_handler(Handler {
            db,
            bind,
            api: Arc::default(),
            limits: Arc::new(DiscordRateLimits::new(
                ApiSettings::default().discord_timeout,
            )),
        })
        .await?;
    client.start().await?;
    Ok(())
}
