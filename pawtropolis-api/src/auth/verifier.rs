use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use sea_orm::DatabaseConnection;

use super::{Principal, tokens};
use crate::{clock::Clock, error::ApiError, identity::memory::Lru};

/// A credential presented with a request.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    /// The value of `Authorization: Bearer <token>`.
    Bearer(&'a str),
    /// The value of the `paw_session` cookie.
    SessionCookie(&'a str),
}

/// Turns a credential into a [`Principal`]. A host bot implements this to plug in its own
/// session check; the built-in [`ApiTokenVerifier`] checks the `api_token` table.
#[async_trait]
pub trait SessionVerifier: Send + Sync + 'static {
    /// `Ok(None)` when the credential is not one this verifier knows or it is invalid (the
    /// request answers 401); `Err` only for failures of the verifier itself.
    async fn verify(&self, credential: Credential<'_>) -> Result<Option<Principal>, ApiError>;
}

/// How long a verified token is trusted without asking the database again. A revocation made
/// through another process (the CLI) is heard sooner (see [`super::ended`]): at once on
/// PostgreSQL, within a second on SQLite; this bounds it when it is not heard.
pub const TOKEN_RECHECK: Duration = Duration::from_secs(5);

/// Verifies API tokens against the `api_token` table (tokens are stored as SHA-256 hashes).
#[derive(Clone)]
pub struct ApiTokenVerifier {
    db: DatabaseConnection,
    clock: Arc<dyn Clock>,
    /// Token hash → principal and when it was checked; keeps the database off the hot path.
    recent: Arc<Lru<String, (Principal, Instant)>>,
    /// Token hash → when it was announced as revoked: a check that asked the database before
    /// then may have read the token as active, and must not be trusted for the next 5 s.
    forgotten: Arc<Lru<String, Instant>>,
}

impl ApiTokenVerifier {
    /// A verifier reading `db`.
    pub fn new(db: DatabaseConnection, clock: Arc<dyn Clock>) -> Self {
        Self {
            db,
            clock,
            recent: Arc::new(Lru::new(10_000)),
            forgotten: Arc::new(Lru::new(1_000)),
        }
    }

    /// Stops trusting the token whose secret hashes to `hash` without asking the database:
    /// it was announced as revoked. (The API follows the announcements for the verifier it
    /// builds itself; a host that passes its own chain calls this for its own verifier.)
    pub fn forget(&self, hash: &str) {
        self.forgotten.put(hash.to_owned(), Instant::now());
        self.recent.remove(&hash.to_owned());
    }
}

#[async_trait]
impl SessionVerifier for ApiTokenVerifier {
    async fn verify(&self, credential: Credential<'_>) -> Result<Option<Principal>, ApiError> {
        let Credential::Bearer(token) = credential else {
            return Ok(None);
        };
        if !tokens::looks_like_token(token) {
            return Ok(None);
        }
        let hash = tokens::hash_token(token);
        if let Some((principal, checked)) = self.recent.get(&hash)
            && checked.elapsed() < TOKEN_RECHECK
        {
            return Ok(Some(principal));
        }
        let now = self.clock.now_s();
        let asked = Instant::now();
        let Some(found) = tokens::find_active_by_hash(&self.db, &hash).await? else {
            return Ok(None);
        };
        // Recording use costs a write; once a minute per token is enough for `token list`.
        if found.last_used_at_s.is_none_or(|t| now - t >= 60) {
            let db = self.db.clone();
            let id = found.id;
            tokio::spawn(async move {
                if let Err(e) = tokens::touch(&db, id, now).await {
                    tracing::warn!(error = %e, token_id = id, "could not record token use");
                }
            });
        }
        let principal = Principal::token(found.id, found.guild_ids);
        // Revoked while the database was asked: the row read may predate the revocation.
        if self.forgotten.get(&hash).is_none_or(|at| at < asked) {
            self.recent.put(hash, (principal.clone(), Instant::now()));
        }
        Ok(Some(principal))
    }
}

/// Tries several verifiers in order; the first that recognises the credential wins.
#[derive(Clone, Default)]
pub struct VerifierChain(Vec<Arc<dyn SessionVerifier>>);

impl VerifierChain {
    /// An empty chain (which verifies nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a verifier.
    pub fn with(mut self, verifier: Arc<dyn SessionVerifier>) -> Self {
        self.0.push(verifier);
        self
    }
}

#[async_trait]
impl SessionVerifier for VerifierChain {
    async fn verify(&self, credential: Credential<'_>) -> Result<Option<Principal>, ApiError> {
        for v in &self.0 {
            if let Some(p) = v.verify(credential).await? {
                return Ok(Some(p));
            }
        }
        Ok(None)
    }
}
