//! API tokens for scripts and the CLI: random secrets handed out once, stored only as SHA-256
//! hashes in `api_token` with the guilds they may read.

use base64::Engine as _;
use rand::RngCore as _;
use sea_orm::{ConnectionTrait, DbErr, Value};
use sha2::{Digest, Sha256};

use crate::db;

/// Every token starts with this, so leaked tokens are easy to recognise and scan for.
pub const TOKEN_PREFIX: &str = "paw_";

/// A stored token (without its secret).
#[derive(Debug, Clone)]
pub struct ApiToken {
    /// Row id; `token revoke <id>` takes it.
    pub id: i64,
    /// Free-form label.
    pub name: String,
    /// Guild ids the token may read.
    pub guild_ids: Vec<String>,
    /// Creation time, Unix seconds.
    pub created_at_s: i64,
    /// Last use (to the minute), Unix seconds.
    pub last_used_at_s: Option<i64>,
    /// Revocation time, Unix seconds.
    pub revoked_at_s: Option<i64>,
}

/// SHA-256 of the token, hex. Tokens carry 256 random bits, so a fast hash is the right tool.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// 256 random bits, URL-safe base64: the body of API tokens, session ids and login states.
pub(crate) fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn from_row(row: &sea_orm::QueryResult) -> Result<ApiToken, DbErr> {
    let guilds: String = row.try_get("", "guild_ids")?;
    Ok(ApiToken {
        id: row.try_get("", "id")?,
        name: row.try_get("", "name")?,
        guild_ids: guilds
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        created_at_s: row.try_get("", "created_at_s")?,
        last_used_at_s: row.try_get("", "last_used_at_s")?,
        revoked_at_s: row.try_get("", "revoked_at_s")?,
    })
}

const COLUMNS: &str = "id, name, guild_ids, created_at_s, last_used_at_s, revoked_at_s";

/// Creates a token for `guild_ids` and returns it with its secret, which is shown only now.
pub async fn create(
    db: &impl ConnectionTrait,
    name: &str,
    guild_ids: &[String],
    now_s: i64,
) -> Result<(ApiToken, String), DbErr> {
    let secret = format!("{TOKEN_PREFIX}{}", random_secret());
    let row = db::query_one(
        db,
        format!(
            "INSERT INTO api_token (name, token_hash, guild_ids, created_at_s) \
             VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}"
        ),
        vec![
            name.into(),
            hash_token(&secret).into(),
            guild_ids.join(",").into(),
            now_s.into(),
        ],
    )
    .await?
    .ok_or_else(|| DbErr::RecordNotInserted)?;
    Ok((from_row(&row)?, secret))
}

/// True when `token` has the shape of an API token (checked before any hashing or lookup).
pub fn looks_like_token(token: &str) -> bool {
    token.starts_with(TOKEN_PREFIX) && token.len() <= 200
}

/// The active (not revoked) token whose secret is `token`.
pub async fn find_active(
    db: &impl ConnectionTrait,
    token: &str,
) -> Result<Option<ApiToken>, DbErr> {
    if !looks_like_token(token) {
        return Ok(None);
    }
    find_active_by_hash(db, &hash_token(token)).await
}

/// The active (not revoked) token whose secret hashes to `hash`.
pub async fn find_active_by_hash(
    db: &impl ConnectionTrait,
    hash: &str,
) -> Result<Option<ApiToken>, DbErr> {
    let row = db::query_one(
        db,
        format!("SELECT {COLUMNS} FROM api_token WHERE token_hash = $1 AND revoked_at_s IS NULL"),
        vec![hash.into()],
    )
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Records that token `id` was used at `now_s`.
pub async fn touch(db: &impl ConnectionTrait, id: i64, now_s: i64) -> Result<(), DbErr> {
    db::execute(
        db,
        "UPDATE api_token SET last_used_at_s = $1 WHERE id = $2",
        vec![now_s.into(), id.into()],
    )
    .await
    .map(|_| ())
}

/// Revokes a token given by its id or by its secret; returns false when no active token
/// matched. The database tells every instance of the ending (see [`super::ended`]), whose
/// streams opened with the token end.
pub async fn revoke(
    db: &impl ConnectionTrait,
    id_or_secret: &str,
    now_s: i64,
) -> Result<bool, DbErr> {
    Ok(revoke_hash(db, id_or_secret, now_s).await?.is_some())
}

/// [`revoke`], returning the revoked token's hash.
pub(crate) async fn revoke_hash(
    db: &impl ConnectionTrait,
    id_or_secret: &str,
    now_s: i64,
) -> Result<Option<String>, DbErr> {
    let (cond, value): (&str, Value) = match id_or_secret.parse::<i64>() {
        Ok(id) => ("id = $2", id.into()),
        Err(_) => ("token_hash = $2", hash_token(id_or_secret).into()),
    };
    let rows = db::query_all(
        db,
        format!(
            "UPDATE api_token SET revoked_at_s = $1 WHERE {cond} AND revoked_at_s IS NULL \
             RETURNING token_hash"
        ),
        vec![now_s.into(), value],
    )
    .await?;
    // One row at most: ids and hashes are unique.
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    Ok(Some(row.try_get("", "token_hash")?))
}

/// Every token, newest first.
pub async fn list(db: &impl ConnectionTrait) -> Result<Vec<ApiToken>, DbErr> {
    db::query_all(
        db,
        format!("SELECT {COLUMNS} FROM api_token ORDER BY id DESC"),
        vec![],
    )
    .await?
    .iter()
    .map(from_row)
    .collect()
}
