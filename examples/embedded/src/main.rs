//! Mounting the Pawtropolis API inside a host application.
//!
//! A host (typically the bot itself) owns the database and its own routes, and decides how
//! sessions are verified. Here the host accepts one shared secret from the environment as an
//! admin credential for every guild, and still honours the API tokens of `api_token`.
//!
//! ```sh
//! HOST_ADMIN_SECRET=s3cret cargo run -p pawtropolis-embedded-example
//! curl -H "Authorization: Bearer s3cret" "http://127.0.0.1:3001/api/logs?guild_id=424242424242424242"
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use pawtropolis_api::{
    ApiError, PawtropolisApi, Principal, SessionVerifier, SystemClock, WRITE_TIMEOUT,
    WriteTimeoutAcceptor,
    auth::{ApiTokenVerifier, Credential, GuildScope, VerifierChain},
    register_api_routes,
};
use poem::{
    Route, Server, get, handler,
    listener::{Listener as _, TcpListener},
};

/// The host's own check: one admin secret that may read every guild and edit its
/// configuration.
struct AdminSecret(String);

#[async_trait]
impl SessionVerifier for AdminSecret {
    async fn verify(&self, credential: Credential<'_>) -> Result<Option<Principal>, ApiError> {
        Ok(match credential {
            Credential::Bearer(t) if !self.0.is_empty() && t == self.0 => Some(Principal {
                subject: "host:admin".into(),
                user_id: None,
                guilds: GuildScope::All,
                edits: GuildScope::All,
            }),
            _ => None,
        })
    }
}

#[handler]
fn hello() -> &'static str {
    "the host's own route, beside the API"
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt::init();
    let url = std::env::var("PAWTROPOLIS_DATABASE_URL")
        .unwrap_or_else(|_| "sqlite://data/embedded.db?mode=rwc".into());
    migration::cli::ensure_sqlite_dir(&url)?;
    let db = pawtropolis_api::db::connect(&url, 4).await?;
    migration::cli::run(&db, &migration::cli::MigrateCommand::Up { steps: None }).await?;

    let verifier = VerifierChain::new()
        .with(Arc::new(AdminSecret(
            std::env::var("HOST_ADMIN_SECRET").unwrap_or_default(),
        )))
        .with(Arc::new(ApiTokenVerifier::new(
            db.clone(),
            Arc::new(SystemClock),
        )));
    let api = PawtropolisApi::builder(db)
        .session_verifier(Arc::new(verifier))
        .build()
        .await?;

    let app = register_api_routes(Route::new().at("/hello", get(hello)), &api);
    // A live stream whose client stops reading would otherwise hold its connection for good.
    let tcp = TcpListener::bind("127.0.0.1:3001").into_acceptor().await?;
    Server::new_with_acceptor(WriteTimeoutAcceptor::new(tcp, WRITE_TIMEOUT))
        .run(app)
        .await?;
    Ok(())
}
