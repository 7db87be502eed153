//! The `user_cache` table: identities resolved earlier, per guild.

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, DbErr, QueryResult, Value};

use super::{avatar, source::DiscordIdentity};
use crate::{
    db,
    timefmt::{parse_stored_time, sql_datetime},
};

/// A `user_cache` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedIdentity {
    /// The user.
    pub user_id: String,
    /// Unique username.
    pub username: String,
    /// Global display name.
    pub global_name: Option<String>,
    /// Name to show (nickname, global name or username).
    pub display_name: Option<String>,
    /// Hash of the effective avatar.
    pub avatar_hash: Option<String>,
    /// URL of the effective avatar.
    pub avatar_url: String,
    /// When the row was written, Unix seconds (`i64::MIN` when unreadable: always stale).
    pub updated_at_s: i64,
}

fn from_row(row: &QueryResult) -> Result<CachedIdentity, DbErr> {
    let updated: String = row.try_get("", "updated_at")?;
    Ok(CachedIdentity {
        user_id: row.try_get("", "user_id")?,
        username: row.try_get("", "username")?,
        global_name: row.try_get("", "global_name")?,
        display_name: row.try_get("", "display_name")?,
        avatar_hash: row.try_get("", "avatar_hash")?,
        avatar_url: row.try_get("", "avatar_url")?,
        updated_at_s: parse_stored_time(&updated).unwrap_or(i64::MIN),
    })
}

/// Rows of `user_ids` in `guild_id`, by user id.
pub async fn load(
    db: &impl ConnectionTrait,
    guild_id: &str,
    user_ids: &[&str],
) -> Result<HashMap<String, CachedIdentity>, DbErr> {
    let mut out = HashMap::with_capacity(user_ids.len());
    for chunk in user_ids.chunks(200) {
        let mut sql = String::from(
            "SELECT user_id, username, global_name, display_name, avatar_hash, avatar_url, updated_at \
             FROM user_cache WHERE guild_id = $1 AND user_id IN (",
        );
        let mut values: Vec<Value> = vec![guild_id.into()];
        for (i, id) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", i + 2));
            values.push((*id).into());
        }
        sql.push(')');
        for row in db::query_all(db, sql, values).await? {
            // The bot writes this table too: a row this code cannot read is one cache miss
            // (and is rewritten by the lookup that follows), not a failed page.
            match from_row(&row) {
                Ok(c) => {
                    out.insert(c.user_id.clone(), c);
                }
                Err(e) => {
                    tracing::warn!(guild_id, error = %e, "unreadable user_cache row; asking Discord")
                }
            }
        }
    }
    Ok(out)
}

/// The row a fresh identity is stored as: effective avatar and display name by Discord's rules.
pub fn row_for(guild_id: u64, identity: &DiscordIdentity, now_s: i64) -> CachedIdentity {
    let (avatar_url, avatar_hash) = avatar::effective_avatar(
        guild_id,
        identity.user_id,
        identity.member_avatar.as_deref(),
        identity.user_avatar.as_deref(),
        identity.discriminator,
    );
    CachedIdentity {
        user_id: identity.user_id.to_string(),
        username: identity.username.clone(),
        global_name: identity.global_name.clone(),
        display_name: Some(avatar::display_name(
            identity.nick.as_deref(),
            identity.global_name.as_deref(),
            &identity.username,
        )),
        avatar_hash,
        avatar_url,
        updated_at_s: now_s,
    }
}

/// Writes what Discord said about a user, replacing the guild's earlier row. The profile
/// columns the bot fills (`banner_url`, `accent_color`, `joined_at`) keep their value when this
/// lookup did not see them: a member lookup carries no banner, a user lookup no join date. A
/// user lookup's banner and accent colour replace the stored ones even when they are gone.
pub async fn upsert(
    db: &impl ConnectionTrait,
    guild_id: u64,
    identity: &DiscordIdentity,
    now_s: i64,
) -> Result<CachedIdentity, DbErr> {
    let row = row_for(guild_id, identity, now_s);
    db::execute(
        db,
        "INSERT INTO user_cache (user_id, guild_id, username, global_name, display_name, avatar_hash, avatar_url, \
           updated_at, banner_url, accent_color, joined_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (user_id, guild_id) DO UPDATE SET username = excluded.username, \
           global_name = excluded.global_name, display_name = excluded.display_name, \
           avatar_hash = excluded.avatar_hash, avatar_url = excluded.avatar_url, \
           updated_at = excluded.updated_at, \
           banner_url = CASE WHEN $12 THEN excluded.banner_url \
             ELSE COALESCE(excluded.banner_url, user_cache.banner_url) END, \
           accent_color = CASE WHEN $12 THEN excluded.accent_color \
             ELSE COALESCE(excluded.accent_color, user_cache.accent_color) END, \
           joined_at = COALESCE(excluded.joined_at, user_cache.joined_at)",
        vec![
            row.user_id.clone().into(),
            guild_id.to_string().into(),
            row.username.clone().into(),
            row.global_name.clone().into(),
            row.display_name.clone().into(),
            row.avatar_hash.clone().into(),
            row.avatar_url.clone().into(),
            sql_datetime(now_s).into(),
            identity.banner_url.clone().into(),
            identity.accent_color.into(),
            identity.joined_at.into(),
            identity.full_profile.into(),
        ],
    )
    .await?;
    Ok(row)
}
