//! Dashboard sessions: server-side rows keyed by the SHA-256 of a random id that only the
//! `paw_session` cookie holds. Logout or revocation is immediate; a restart keeps people
//! logged in.

use std::{collections::BTreeSet, sync::Arc};

use async_trait::async_trait;
use sea_orm::{DatabaseConnection, DbErr, QueryResult};

use super::{
    Credential, GuildScope, Principal, SessionVerifier,
    discord::{DiscordLogin, LoginError},
    tokens::hash_token,
};
use crate::{clock::Clock, db, error::ApiError, settings::LoginSettings};

/// Prefix of session ids, so they never match an API token.
const SESSION_PREFIX: &str = "pws_";

/// Who a session belongs to and what it may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionUser {
    /// Discord user id.
    pub user_id: String,
    /// Username.
    pub username: String,
    /// Name to show.
    pub display_name: String,
    /// Avatar URL.
    pub avatar_url: String,
    /// Guilds the user may read (when not `all_guilds`).
    pub guild_ids: Vec<String>,
    /// Guilds whose configuration the user may edit (when not `all_guilds`).
    pub admin_guild_ids: Vec<String>,
    /// An owner: every guild.
    pub all_guilds: bool,
}

/// A comma-separated list of ids, as the session table stores them.
fn id_list(column: &str) -> Vec<String> {
    column
        .split(',')
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect()
}

struct Row {
    id: i64,
    user: SessionUser,
    access_token: String,
    created_at_s: i64,
    last_seen_at_s: i64,
    roles_checked_at_s: i64,
}

fn from_row(r: &QueryResult) -> Result<Row, DbErr> {
    Ok(Row {
        id: r.try_get("", "id")?,
        user: SessionUser {
            user_id: r.try_get("", "user_id")?,
            username: r.try_get("", "username")?,
            display_name: r.try_get("", "display_name")?,
            avatar_url: r.try_get("", "avatar_url")?,
            guild_ids: id_list(&r.try_get::<String>("", "guild_ids")?),
            admin_guild_ids: id_list(&r.try_get::<String>("", "admin_guild_ids")?),
            all_guilds: r.try_get::<i64>("", "all_guilds")? != 0,
        },
        access_token: r.try_get("", "discord_access_token")?,
        created_at_s: r.try_get("", "created_at_s")?,
        last_seen_at_s: r.try_get("", "last_seen_at_s")?,
        roles_checked_at_s: r.try_get("", "roles_checked_at_s")?,
    })
}

/// Creates a session and returns the secret for the cookie.
pub async fn create_session(
    db: &DatabaseConnection,
    user: &SessionUser,
    access_token: &str,
    now_s: i64,
) -> Result<String, DbErr> {
    let secret = format!("{SESSION_PREFIX}{}", super::tokens::random_secret());
    db::execute(
        db,
        "INSERT INTO dashboard_session (id_hash, user_id, username, display_name, avatar_url, guild_ids, all_guilds, \
           discord_access_token, created_at_s, last_seen_at_s, roles_checked_at_s, admin_guild_ids) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $9, $10)",
        vec![
            hash_token(&secret).into(),
            user.user_id.clone().into(),
            user.username.clone().into(),
            user.display_name.clone().into(),
            user.avatar_url.clone().into(),
            user.guild_ids.join(",").into(),
            i64::from(user.all_guilds).into(),
            access_token.into(),
            now_s.into(),
            user.admin_guild_ids.join(",").into(),
        ],
    )
    .await?;
    Ok(secret)
}

/// Deletes the sessions that can no longer be used (logged out, revoked, idle too long or
/// past their absolute expiry) and the Discord tokens they hold. Run at each login, it keeps
/// the table to the sessions that could still be used, instead of a row per login forever.
/// Returns the number deleted.
pub async fn purge_ended_sessions(
    db: &DatabaseConnection,
    login: &LoginSettings,
    now_s: i64,
) -> Result<u64, DbErr> {
    db::execute(
        db,
        "DELETE FROM dashboard_session \
         WHERE revoked_at_s IS NOT NULL OR created_at_s <= $1 OR last_seen_at_s <= $2",
        vec![
            now_s.saturating_sub(login.absolute_secs).into(),
            now_s.saturating_sub(login.idle_secs).into(),
        ],
    )
    .await
}

/// Ends the session with this secret; false when there was none. The user's Discord token is
/// forgotten with it; the database tells every instance of the ending (see [`super::ended`]),
/// and their streams of the session end.
pub async fn revoke_session(
    db: &DatabaseConnection,
    secret: &str,
    now_s: i64,
) -> Result<bool, DbErr> {
    // A cookie that cannot be a session costs no write (on SQLite, the lock the bot needs).
    if !looks_like_session(secret) {
        return Ok(false);
    }
    Ok(db::execute(
        db,
        "UPDATE dashboard_session SET revoked_at_s = $1, discord_access_token = '' \
         WHERE id_hash = $2 AND revoked_at_s IS NULL",
        vec![now_s.into(), hash_token(secret).into()],
    )
    .await?
        > 0)
}

/// True when `secret` has the shape of a session secret (checked before any hashing or lookup).
fn looks_like_session(secret: &str) -> bool {
    secret.starts_with(SESSION_PREFIX) && secret.len() <= 200
}

/// Seconds between re-check attempts of one session while Discord fails.
const RETRY_SECS: i64 = 30;

/// Verifies `paw_session` cookies against `dashboard_session`, re-checking guild roles on
/// Discord every `role_recheck_secs`.
#[derive(Clone)]
pub struct SessionStore {
    db: DatabaseConnection,
    clock: Arc<dyn Clock>,
    login: LoginSettings,
    discord: DiscordLogin,
    /// Session row id -> time of the last re-check attempt: one attempt at a time and none
    /// more often than every `RETRY_SECS`, so twenty open streams make one Discord call.
    attempts: Arc<std::sync::Mutex<std::collections::HashMap<i64, i64>>>,
}

impl SessionStore {
    /// A store over `db`.
    pub fn new(db: DatabaseConnection, clock: Arc<dyn Clock>, login: LoginSettings) -> Self {
        let discord = DiscordLogin::new(&login);
        Self {
            db,
            clock,
            login,
            discord,
            attempts: Arc::default(),
        }
    }

    fn may_attempt(&self, session: i64, now: i64) -> bool {
        let mut map = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, t| now - *t < RETRY_SECS);
        }
        match map.get(&session) {
            Some(t) if now - *t < RETRY_SECS => false,
            _ => {
                map.insert(session, now);
                true
            }
        }
    }

    /// The user behind a valid session secret.
    pub async fn user(&self, secret: &str) -> Result<Option<SessionUser>, ApiError> {
        if !looks_like_session(secret) {
            return Ok(None);
        }
        let now = self.clock.now_s();
        let Some(row) = db::query_one(
            &self.db,
            "SELECT id, user_id, username, display_name, avatar_url, guild_ids, admin_guild_ids, all_guilds, discord_access_token, \
               created_at_s, last_seen_at_s, roles_checked_at_s \
             FROM dashboard_session WHERE id_hash = $1 AND revoked_at_s IS NULL",
            vec![hash_token(secret).into()],
        )
        .await?
        else {
            return Ok(None);
        };
        let mut row = from_row(&row)?;
        if now >= row.created_at_s + self.login.absolute_secs
            || now >= row.last_seen_at_s + self.login.idle_secs
        {
            return Ok(None);
        }
        let recheck = self.login.role_recheck_secs;
        if now - row.roles_checked_at_s >= recheck && self.may_attempt(row.id, now) {
            match crate::auth::discord::guild_access(
                &self.db,
                &self.discord,
                &self.login,
                &row.access_token,
                &row.user.user_id,
                false,
            )
            .await
            {
                Ok(access) => {
                    row.user.guild_ids = access.guild_ids;
                    row.user.admin_guild_ids = access.admin_guild_ids;
                    row.user.all_guilds = access.all_guilds;
                    row.roles_checked_at_s = now;
                    db::execute(
                        &self.db,
                        "UPDATE dashboard_session SET guild_ids = $1, admin_guild_ids = $2, all_guilds = $3, roles_checked_at_s = $4 WHERE id = $5",
                        vec![
                            row.user.guild_ids.join(",").into(),
                            row.user.admin_guild_ids.join(",").into(),
                            i64::from(row.user.all_guilds).into(),
                            now.into(),
                            row.id.into(),
                        ],
                    )
                    .await?;
                }
                // Discord no longer accepts the user's grant: the session is over.
                Err(e @ LoginError::Unauthorized { .. }) => {
                    tracing::info!(error = %e, user_id = %row.user.user_id, "the role re-check was refused: the dashboard session ends");
                    db::execute(
                        &self.db,
                        "UPDATE dashboard_session SET revoked_at_s = $1, discord_access_token = '' WHERE id = $2",
                        vec![now.into(), row.id.into()],
                    )
                    .await?;
                    // The session's streams, here and elsewhere, end as the database tells of it.
                    return Ok(None);
                }
                // Discord trouble: keep the access checked last time for now, and try again in
                // a little while (not on every request).
                Err(e) => {
                    tracing::warn!(error = %e, user_id = %row.user.user_id, "could not re-check guild roles")
                }
            }
        }
        // Roles unconfirmed for a whole extra interval: fail closed (owners stay owners; that
        // comes from the configuration, not from Discord).
        if now - row.roles_checked_at_s >= 2 * recheck {
            row.user.guild_ids.clear();
            row.user.admin_guild_ids.clear();
            row.user.all_guilds = self.login.owner_ids.contains(&row.user.user_id);
        }
        if now - row.last_seen_at_s >= 60 {
            db::execute(
                &self.db,
                "UPDATE dashboard_session SET last_seen_at_s = $1 WHERE id = $2",
                vec![now.into(), row.id.into()],
            )
            .await?;
        }
        Ok(Some(row.user))
    }
}

#[async_trait]
impl SessionVerifier for SessionStore {
    async fn verify(&self, credential: Credential<'_>) -> Result<Option<Principal>, ApiError> {
        let Credential::SessionCookie(secret) = credential else {
            return Ok(None);
        };
        Ok(self.user(secret).await?.map(|u| {
            let scope = |ids: Vec<String>| {
                if u.all_guilds {
                    GuildScope::All
                } else {
                    GuildScope::Only(ids.into_iter().collect::<BTreeSet<_>>())
                }
            };
            Principal {
                subject: format!("user:{}", u.user_id),
                guilds: scope(u.guild_ids),
                edits: scope(u.admin_guild_ids),
                user_id: Some(u.user_id),
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A logout with a cookie that cannot be a session sends no statement: a disconnected
    /// connection, which panics on any, is never used.
    #[tokio::test]
    async fn a_made_up_cookie_costs_no_write() {
        let db = DatabaseConnection::default();
        for cookie in [
            "",
            "abc",
            "paw_token_not_a_session",
            &format!("pws_{}", "x".repeat(200)),
        ] {
            assert_eq!(
                revoke_session(&db, cookie, 0).await.ok(),
                Some(false),
                "{cookie}"
            );
        }
    }
}
