//! Mounting the Pawtropolis API inside a host application.
//!
//! A host (typically the bot itself) owns the database and its own routes, and may accept
//! credentials of its own. Here the host accepts one shared secret from the environment as an
//! admin credential for every guild, beside the API's built-in API tokens (and dashboard
//! sessions, when the Discord login is configured). `src/main.rs` serves it.

use std::sync::Arc;

use async_trait::async_trait;
use pawtropolis_api::{
    ApiError, PawtropolisApi, Principal, SessionVerifier,
    auth::{Credential, GuildScope},
    register_api_routes,
};
use poem::{Route, get, handler};
use sea_orm::DatabaseConnection;
use subtle::ConstantTimeEq as _;

/// The host's own check: one admin secret that may read every guild and edit its
/// configuration. An empty secret admits no one.
pub struct AdminSecret(pub String);

#[async_trait]
impl SessionVerifier for AdminSecret {
    async fn verify(&self, credential: Credential<'_>) -> Result<Option<Principal>, ApiError> {
        let Credential::Bearer(given) = credential else {
            return Ok(None);
        };
        // Constant time: how long a wrong guess takes must not tell how much of it was right.
        let matches = !self.0.is_empty() && bool::from(given.as_bytes().ct_eq(self.0.as_bytes()));
        Ok(matches.then(|| Principal {
            subject: "host:admin".into(),
            user_id: None,
            guilds: GuildScope::All,
            edits: GuildScope::All,
        }))
    }
}

#[handler]
fn hello() -> &'static str {
    "the host's own route, beside the API"
}

/// The API over the host's database, accepting the host's admin secret as well as the
/// built-in credentials. Added with `extra_verifier` rather than replacing the built-in
/// verifiers, so that a revoked API token is refused at once and sessions keep working.
pub async fn build_api(
    db: DatabaseConnection,
    admin_secret: String,
) -> Result<PawtropolisApi, ApiError> {
    PawtropolisApi::builder(db)
        .extra_verifier(Arc::new(AdminSecret(admin_secret)))
        .build()
        .await
}

/// The host's routes with the API mounted beside them (`/api/…`, `/api/docs`, `/health`).
pub fn app(api: &PawtropolisApi) -> Route {
    register_api_routes(Route::new().at("/hello", get(hello)), api)
}
