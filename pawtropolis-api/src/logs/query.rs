use poem_openapi::Object;
use sea_orm::{ConnectionTrait, QueryResult, Value};
use serde::Serialize;

use super::Cursor;
use crate::{db, error::ApiError, payload::Warning, snowflake::Snowflake, timefmt::rfc3339_utc};

/// Filters of a log listing; every one is optional and they combine with AND.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// Keep rows whose action is one of these (empty: every action).
    pub actions: Vec<String>,
    /// Keep rows whose actor is this moderator.
    pub moderator_id: Option<Snowflake>,
    /// Keep rows about this subject.
    pub subject_id: Option<Snowflake>,
    /// Keep rows of this application.
    pub app_id: Option<String>,
    /// Keep rows at or after this Unix time.
    pub since: Option<i64>,
    /// Keep rows at or before this Unix time.
    pub until: Option<i64>,
}

/// One row of the action log.
#[derive(Debug, Clone, Object, Serialize)]
pub struct LogItem {
    /// Row id; increases with every insert (also the live stream's event id).
    pub id: i64,
    /// Guild the action happened in.
    pub guild_id: String,
    /// What happened: `app_submitted`, `claim`, `approve`, `reject`, `kick`, … (open set).
    pub action: String,
    /// Who acted: the moderator, or the applicant for `app_submitted` (`actor_id` in the table).
    pub moderator_id: String,
    /// The applicant or target of the action.
    #[oai(nullable)]
    pub subject_id: Option<String>,
    /// Application UUID, when the action concerns an application.
    #[oai(nullable)]
    pub app_id: Option<String>,
    /// Short code of the application.
    #[oai(nullable)]
    pub app_code: Option<String>,
    /// Reason given by the moderator.
    #[oai(nullable)]
    pub reason: Option<String>,
    /// Extra data stored with the action (parsed JSON); null when absent or not valid JSON.
    #[oai(nullable)]
    pub meta: Option<serde_json::Value>,
    /// When it happened, RFC 3339 UTC.
    pub created_at: String,
    /// When it happened, Unix seconds.
    pub created_at_s: i64,
    /// Moderator's display name (only with `expand=identity`).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Moderator's avatar URL (only with `expand=identity`).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
}

/// A page of the action log, newest first.
#[derive(Debug, Clone, Object, Serialize)]
pub struct LogsPage {
    /// The rows, newest first (by `created_at_s`, then `id`).
    pub items: Vec<LogItem>,
    /// Pass as `cursor` to get the next (older) page; null on the last page.
    #[oai(nullable)]
    pub next_cursor: Option<String>,
    /// Identities that could not be resolved (only with `expand=identity`).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warnings: Option<Vec<Warning>>,
}

/// Columns read for a [`LogItem`], in the table's names.
pub(crate) const ITEM_COLUMNS: &str =
    "id, guild_id, action, actor_id, subject_id, app_id, app_code, reason, meta_json, created_at_s";

impl LogItem {
    /// Builds an item from a row selected with [`ITEM_COLUMNS`].
    pub(crate) fn from_row(row: &QueryResult) -> Result<Self, sea_orm::DbErr> {
        let created_at_s: i64 = row.try_get("", "created_at_s")?;
        let meta_json: Option<String> = row.try_get("", "meta_json")?;
        Ok(Self {
            id: row.try_get("", "id")?,
            guild_id: row.try_get("", "guild_id")?,
            action: row.try_get("", "action")?,
            moderator_id: row.try_get("", "actor_id")?,
            subject_id: row.try_get("", "subject_id")?,
            app_id: row.try_get("", "app_id")?,
            app_code: row.try_get("", "app_code")?,
            reason: row.try_get("", "reason")?,
            meta: meta_json.and_then(|m| serde_json::from_str(&m).ok()),
            created_at: rfc3339_utc(created_at_s),
            created_at_s,
            display_name: None,
            avatar_url: None,
        })
    }
}

/// Reads one page of `guild_id`'s log, newest first, starting after `cursor`.
///
/// Keyset pagination on `(created_at_s, id)` walks the `(guild_id, created_at_s)` index from
/// the cursor on: the cost is the page, not the offset, even on a guild with 700,000 rows.
pub async fn list_logs(
    db: &impl ConnectionTrait,
    guild_id: &Snowflake,
    filter: &LogFilter,
    cursor: Option<Cursor>,
    limit: u32,
) -> Result<LogsPage, ApiError> {
    let mut sql = format!("SELECT {ITEM_COLUMNS} FROM action_log WHERE guild_id = $1");
    let mut values: Vec<Value> = vec![guild_id.as_str().into()];
    let mut bind = |sql: &mut String, clause: &str, v: Value| {
        values.push(v);
        sql.push_str(&clause.replace('?', &format!("${}", values.len())));
    };
    if !filter.actions.is_empty() {
        sql.push_str(" AND action IN (");
        for (i, a) in filter.actions.iter().enumerate() {
            bind(
                &mut sql,
                if i == 0 { "?" } else { ", ?" },
                a.as_str().into(),
            );
        }
        sql.push(')');
    }
    if let Some(m) = &filter.moderator_id {
        bind(&mut sql, " AND actor_id = ?", m.as_str().into());
    }
    if let Some(s) = &filter.subject_id {
        bind(&mut sql, " AND subject_id = ?", s.as_str().into());
    }
    if let Some(a) = &filter.app_id {
        bind(&mut sql, " AND app_id = ?", a.as_str().into());
    }
    if let Some(t) = filter.since {
        bind(&mut sql, " AND created_at_s >= ?", t.into());
    }
    if let Some(t) = filter.until {
        bind(&mut sql, " AND created_at_s <= ?", t.into());
    }
    if let Some(c) = cursor {
        // A row-value comparison is one index range on both databases; the equivalent
        // `a < x OR (a = x AND id < y)` is not, and would rescan earlier pages.
        bind(
            &mut sql,
            " AND (created_at_s, id) < (?",
            c.created_at_s.into(),
        );
        bind(&mut sql, ", ?)", c.id.into());
    }
    // One extra row tells whether another page exists without a COUNT.
    bind(
        &mut sql,
        " ORDER BY created_at_s DESC, id DESC LIMIT ?",
        (i64::from(limit) + 1).into(),
    );
    let rows = db::query_all(db, sql, values).await?;
    let mut items = rows
        .iter()
        .map(LogItem::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|last| {
            Cursor {
                created_at_s: last.created_at_s,
                id: last.id,
            }
            .encode()
        })
    } else {
        None
    };
    Ok(LogsPage {
        items,
        next_cursor,
        warnings: None,
    })
}
