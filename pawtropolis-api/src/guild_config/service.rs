use poem_openapi::Object;
use sea_orm::{ConnectionTrait, DatabaseConnection, QueryResult, TransactionTrait, Value};
use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::{auth::Principal, db, error::ApiError, snowflake::Snowflake, timefmt::sql_datetime};

/// Snowflake settings: channel and role ids, each nullable.
const SNOWFLAKE_FIELDS: [&str; 7] = [
    "review_channel_id",
    "gate_channel_id",
    "unverified_channel_id",
    "general_channel_id",
    "accepted_role_id",
    "reviewer_role_id",
    "admin_role_id",
];

/// Hour settings with their defaults (those of the bot).
const HOUR_FIELDS: [(&str, i64); 3] = [
    ("reapply_cooldown_hours", 24),
    ("min_account_age_hours", 0),
    ("min_join_age_hours", 0),
];

/// Ten years: no hour setting of the bot makes sense beyond it.
/// (Also the bound `GuildConfigUpdate` gives the document, spelled out there as a literal.)
const MAX_HOURS: i64 = 87_600;

/// A guild's configuration.
#[derive(Debug, Clone, Object, Serialize, PartialEq)]
pub struct GuildConfig {
    /// The guild.
    pub guild_id: String,
    /// Channel where applications are reviewed.
    #[oai(nullable)]
    pub review_channel_id: Option<String>,
    /// Channel holding the application gate.
    #[oai(nullable)]
    pub gate_channel_id: Option<String>,
    /// Channel for members not yet verified.
    #[oai(nullable)]
    pub unverified_channel_id: Option<String>,
    /// General chat channel.
    #[oai(nullable)]
    pub general_channel_id: Option<String>,
    /// Role given to accepted applicants.
    #[oai(nullable)]
    pub accepted_role_id: Option<String>,
    /// Role of reviewers (may read the dashboard).
    #[oai(nullable)]
    pub reviewer_role_id: Option<String>,
    /// Role of admins (may read the dashboard and edit this configuration).
    #[oai(nullable)]
    pub admin_role_id: Option<String>,
    /// Hours a rejected applicant waits before applying again.
    pub reapply_cooldown_hours: i64,
    /// Minimum Discord account age to apply, hours.
    pub min_account_age_hours: i64,
    /// Minimum time in the guild before applying, hours.
    pub min_join_age_hours: i64,
    /// Last change, RFC 3339 UTC (`2025-10-21T00:00:00Z`); null while the guild still has the
    /// defaults. (Stored as the bot stores it; a value it wrote in an unknown form is passed on
    /// as it is.)
    #[oai(nullable)]
    pub updated_at: Option<String>,
}

/// Fields to change. Absent fields keep their value; a channel or role id may be set to `null`
/// to clear it. Unknown fields are refused.
#[derive(Debug, Clone, Default, Object)]
pub struct GuildConfigUpdate {
    /// Channel where applications are reviewed (snowflake or null).
    #[oai(nullable)]
    pub review_channel_id: Option<Snowflake>,
    /// Channel holding the application gate (snowflake or null).
    #[oai(nullable)]
    pub gate_channel_id: Option<Snowflake>,
    /// Channel for members not yet verified (snowflake or null).
    #[oai(nullable)]
    pub unverified_channel_id: Option<Snowflake>,
    /// General chat channel (snowflake or null).
    #[oai(nullable)]
    pub general_channel_id: Option<Snowflake>,
    /// Role given to accepted applicants (snowflake or null).
    #[oai(nullable)]
    pub accepted_role_id: Option<Snowflake>,
    /// Role of reviewers (snowflake or null).
    #[oai(nullable)]
    pub reviewer_role_id: Option<Snowflake>,
    /// Role of admins (snowflake or null).
    #[oai(nullable)]
    pub admin_role_id: Option<Snowflake>,
    /// Hours a rejected applicant waits before applying again (0 to 87600).
    #[oai(validator(minimum(value = "0"), maximum(value = "87600")))]
    pub reapply_cooldown_hours: Option<i64>,
    /// Minimum Discord account age to apply, hours (0 to 87600).
    #[oai(validator(minimum(value = "0"), maximum(value = "87600")))]
    pub min_account_age_hours: Option<i64>,
    /// Minimum time in the guild before applying, hours (0 to 87600).
    #[oai(validator(minimum(value = "0"), maximum(value = "87600")))]
    pub min_join_age_hours: Option<i64>,
}

/// One validated field change: the column and its new value (`None` clears it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    /// A channel or role id.
    Snowflake(&'static str, Option<String>),
    /// An hour setting.
    Hours(&'static str, i64),
}

impl ConfigChange {
    fn field(&self) -> &'static str {
        match self {
            Self::Snowflake(f, _) | Self::Hours(f, _) => f,
        }
    }
}

/// Validates an update body; the 400 names the first bad or unknown field.
pub fn parse_update(fields: &Map<String, Json>) -> Result<Vec<ConfigChange>, ApiError> {
    let mut changes = Vec::new();
    for (name, value) in fields {
        if let Some(&field) = SNOWFLAKE_FIELDS.iter().find(|f| **f == name) {
            let v = match value {
                Json::Null => None,
                Json::String(s) => Some(Snowflake::parse(field, s)?.into_string()),
                _ => {
                    return Err(ApiError::invalid(format!(
                        "{field} must be a snowflake string (17 to 20 digits, no leading zero) or null"
                    )));
                }
            };
            changes.push(ConfigChange::Snowflake(field, v));
        } else if let Some(&(field, _)) = HOUR_FIELDS.iter().find(|(f, _)| *f == name) {
            match value.as_i64() {
                Some(h) if (0..=MAX_HOURS).contains(&h) => {
                    changes.push(ConfigChange::Hours(field, h))
                }
                _ => {
                    return Err(ApiError::invalid(format!(
                        "{field} must be a whole number of hours from 0 to {MAX_HOURS}"
                    )));
                }
            }
        } else {
            return Err(ApiError::invalid(format!(
                "{name} is not a configuration field; known fields: {}, {}",
                SNOWFLAKE_FIELDS.join(", "),
                HOUR_FIELDS.map(|(f, _)| f).join(", ")
            )));
        }
    }
    if changes.is_empty() {
        return Err(ApiError::invalid("the body names no field to change"));
    }
    Ok(changes)
}

fn select_sql() -> String {
    format!(
        "SELECT guild_id, {}, {}, updated_at FROM guild_config WHERE guild_id = $1",
        SNOWFLAKE_FIELDS.join(", "),
        HOUR_FIELDS.map(|(f, _)| f).join(", ")
    )
}

fn from_row(row: &QueryResult) -> Result<GuildConfig, sea_orm::DbErr> {
    let s = |c: &str| row.try_get::<Option<String>>("", c);
    // Legacy rows may hold NULL hours; they mean the default.
    let h = |c: &str, d: i64| row.try_get::<Option<i64>>("", c).map(|v| v.unwrap_or(d));
    Ok(GuildConfig {
        guild_id: row.try_get("", "guild_id")?,
        review_channel_id: s("review_channel_id")?,
        gate_channel_id: s("gate_channel_id")?,
        unverified_channel_id: s("unverified_channel_id")?,
        general_channel_id: s("general_channel_id")?,
        accepted_role_id: s("accepted_role_id")?,
        reviewer_role_id: s("reviewer_role_id")?,
        admin_role_id: s("admin_role_id")?,
        reapply_cooldown_hours: h("reapply_cooldown_hours", 24)?,
        min_account_age_hours: h("min_account_age_hours", 0)?,
        min_join_age_hours: h("min_join_age_hours", 0)?,
        updated_at: s("updated_at")?.map(|t| crate::timefmt::stored_to_rfc3339(&t)),
    })
}

fn defaults(guild_id: &Snowflake) -> GuildConfig {
    GuildConfig {
        guild_id: guild_id.to_string(),
        review_channel_id: None,
        gate_channel_id: None,
        unverified_channel_id: None,
        general_channel_id: None,
        accepted_role_id: None,
        reviewer_role_id: None,
        admin_role_id: None,
        reapply_cooldown_hours: 24,
        min_account_age_hours: 0,
        min_join_age_hours: 0,
        updated_at: None,
    }
}

/// The guild's configuration; the defaults when the guild has no row yet.
pub async fn load_config(
    db: &impl ConnectionTrait,
    guild_id: &Snowflake,
) -> Result<GuildConfig, ApiError> {
    Ok(
        match db::query_one(db, select_sql(), vec![guild_id.as_str().into()]).await? {
            Some(row) => from_row(&row)?,
            None => defaults(guild_id),
        },
    )
}

fn current_value(cfg: &GuildConfig, field: &str) -> Option<String> {
    match field {
        "review_channel_id" => cfg.review_channel_id.clone(),
        "gate_channel_id" => cfg.gate_channel_id.clone(),
        "unverified_channel_id" => cfg.unverified_channel_id.clone(),
        "general_channel_id" => cfg.general_channel_id.clone(),
        "accepted_role_id" => cfg.accepted_role_id.clone(),
        "reviewer_role_id" => cfg.reviewer_role_id.clone(),
        "admin_role_id" => cfg.admin_role_id.clone(),
        "reapply_cooldown_hours" => Some(cfg.reapply_cooldown_hours.to_string()),
        "min_account_age_hours" => Some(cfg.min_account_age_hours.to_string()),
        "min_join_age_hours" => Some(cfg.min_join_age_hours.to_string()),
        _ => None,
    }
}

/// Who made a change, as the audit trail (the bot's `config_audit_log`) records it.
#[derive(Debug, Clone, Copy)]
pub struct Editor<'a> {
    /// A Discord user id, or the API principal (`token:12`) when no person is behind it.
    pub user_id: &'a str,
    /// Where the change came from: `dashboard` (a signed-in user) or `api`.
    pub source: &'a str,
}

impl<'a> Editor<'a> {
    /// The editor `principal` is.
    pub fn of(principal: &'a Principal) -> Self {
        match &principal.user_id {
            Some(user) => Self {
                user_id: user,
                source: "dashboard",
            },
            None => Self {
                user_id: &principal.subject,
                source: "api",
            },
        }
    }
}

/// Applies validated changes in one transaction and records each field whose value changed in
/// `config_audit_log` (who, field, old, new, when). Returns the new configuration and the
/// names of the fields that changed.
pub async fn apply_update(
    db: &DatabaseConnection,
    guild_id: &Snowflake,
    changes: &[ConfigChange],
    editor: Editor<'_>,
    now_s: i64,
) -> Result<(GuildConfig, Vec<String>), ApiError> {
    let txn = db.begin().await?;
    let now_text = sql_datetime(now_s);
    let base = defaults(guild_id);
    // The first statement writes: on SQLite that takes the write lock before anything is read,
    // so a concurrent writer cannot invalidate this transaction's snapshot (SQLITE_BUSY_SNAPSHOT)
    // between its read and its writes.
    db::execute(
        &txn,
        format!(
            "INSERT INTO guild_config (guild_id, {}, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5) \
             ON CONFLICT (guild_id) DO NOTHING",
            HOUR_FIELDS.map(|(f, _)| f).join(", ")
        ),
        vec![
            guild_id.as_str().into(),
            base.reapply_cooldown_hours.into(),
            base.min_account_age_hours.into(),
            base.min_join_age_hours.into(),
            now_text.clone().into(),
        ],
    )
    .await?;
    // PostgreSQL's `ON CONFLICT DO NOTHING` does not lock the existing row: without `FOR
    // UPDATE`, two concurrent edits would both read the same old values and record them twice.
    let read_before = match txn.get_database_backend() {
        sea_orm::DbBackend::Postgres => format!("{} FOR UPDATE", select_sql()),
        _ => select_sql(),
    };
    let before = match db::query_one(&txn, read_before, vec![guild_id.as_str().into()]).await? {
        Some(row) => from_row(&row)?,
        None => base,
    };
    let mut changed = Vec::new();
    for change in changes {
        let field = change.field();
        let old = current_value(&before, field);
        let (new_text, value): (Option<String>, Value) = match change {
            ConfigChange::Snowflake(_, v) => (v.clone(), v.clone().into()),
            ConfigChange::Hours(_, h) => (Some(h.to_string()), (*h).into()),
        };
        if old == new_text || changed.iter().any(|c| c == field) {
            continue;
        }
        // `field` comes from the fixed lists above, never from the request.
        db::execute(
            &txn,
            format!("UPDATE guild_config SET {field} = $1, updated_at = $2 WHERE guild_id = $3"),
            vec![value, now_text.clone().into(), guild_id.as_str().into()],
        )
        .await?;
        db::execute(
            &txn,
            "INSERT INTO config_audit_log (guild_id, user_id, field_key, old_value, new_value, source, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            vec![
                guild_id.as_str().into(),
                editor.user_id.into(),
                field.into(),
                old.into(),
                new_text.into(),
                editor.source.into(),
                now_text.clone().into(),
            ],
        )
        .await?;
        changed.push(field.to_owned());
    }
    if changed.is_empty() {
        // Nothing changed: the row inserted above only took the write lock. Undone, a guild
        // that still has the defaults keeps `updated_at: null`.
        txn.rollback().await?;
        return Ok((load_config(db, guild_id).await?, changed));
    }
    let after = db::query_one(&txn, select_sql(), vec![guild_id.as_str().into()])
        .await?
        .as_ref()
        .map(from_row)
        .transpose()?
        .unwrap_or_else(|| defaults(guild_id));
    txn.commit().await?;
    Ok((after, changed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Result<Vec<ConfigChange>, ApiError> {
        parse_update(v.as_object().expect("object"))
    }

    #[test]
    fn names_the_bad_field() {
        let e = parse(serde_json::json!({"reviewer_role_id": "12"})).expect_err("short id");
        assert!(e.to_string().contains("reviewer_role_id"));
        let e = parse(serde_json::json!({"min_join_age_hours": -1})).expect_err("negative");
        assert!(e.to_string().contains("min_join_age_hours"));
        let e = parse(serde_json::json!({"min_join_age_hours": 1.5})).expect_err("fraction");
        assert!(e.to_string().contains("min_join_age_hours"));
        let e = parse(serde_json::json!({"colour": "red"})).expect_err("unknown");
        assert!(e.to_string().contains("colour"));
    }

    #[test]
    fn accepts_null_to_clear_and_valid_values() {
        let c = parse(serde_json::json!({"gate_channel_id": null, "reapply_cooldown_hours": 48}))
            .expect("valid");
        assert!(c.contains(&ConfigChange::Snowflake("gate_channel_id", None)));
        assert!(c.contains(&ConfigChange::Hours("reapply_cooldown_hours", 48)));
    }
}
