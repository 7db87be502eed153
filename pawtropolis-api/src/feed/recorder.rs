use sea_orm::{DbBackend, Value};

use super::{ActionFeed, publisher::NOTIFY_CHANNEL};
use crate::{clock::Clock, db, error::ApiError, snowflake::Snowflake};

/// An action to record.
#[derive(Debug, Clone, Default)]
pub struct NewAction {
    /// Guild it happened in.
    pub guild_id: String,
    /// What happened (`claim`, `approve`, …).
    pub action: String,
    /// Who acted.
    pub actor_id: String,
    /// Who it was about.
    pub subject_id: Option<String>,
    /// Application UUID.
    pub app_id: Option<String>,
    /// Short application code.
    pub app_code: Option<String>,
    /// Reason given.
    pub reason: Option<String>,
    /// Extra data, stored as `meta_json`.
    pub meta: Option<serde_json::Value>,
    /// When it happened (Unix seconds); `None` means now.
    pub created_at_s: Option<i64>,
}

/// Writes actions to `action_log` for a host (the bot) and publishes them at once.
#[derive(Clone)]
pub struct ActionRecorder {
    db: sea_orm::DatabaseConnection,
    feed: ActionFeed,
    clock: std::sync::Arc<dyn Clock>,
}

impl ActionRecorder {
    pub(crate) fn new(
        db: sea_orm::DatabaseConnection,
        feed: ActionFeed,
        clock: std::sync::Arc<dyn Clock>,
    ) -> Self {
        Self { db, feed, clock }
    }

    /// Inserts the action and returns its id; live streams receive it without waiting for the
    /// poll.
    pub async fn record(&self, action: NewAction) -> Result<i64, ApiError> {
        Snowflake::parse("guild_id", &action.guild_id)?;
        if action.action.trim().is_empty() || action.action.len() > 64 {
            return Err(ApiError::invalid("action must be 1 to 64 characters"));
        }
        let meta = action.meta.as_ref().map(|m| m.to_string());
        let values: Vec<Value> = vec![
            action.guild_id.clone().into(),
            action.app_id.clone().into(),
            action.app_code.clone().into(),
            action.actor_id.clone().into(),
            action.subject_id.clone().into(),
            action.action.clone().into(),
            action.reason.clone().into(),
            meta.into(),
            action
                .created_at_s
                .unwrap_or_else(|| self.clock.now_s())
                .into(),
        ];
        let row = db::query_one(
            &self.db,
            "INSERT INTO action_log (guild_id, app_id, app_code, actor_id, subject_id, action, reason, meta_json, created_at_s) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            values,
        )
        .await?
        .ok_or_else(|| ApiError::Internal("insert returned no id".into()))?;
        let id: i64 = row.try_get("", "id").map_err(ApiError::from)?;
        // This server's streams first: the NOTIFY below is a round trip to the database.
        self.feed.wake();
        if self.db.get_database_backend() == DbBackend::Postgres {
            // Other server instances on the same database wake too.
            if let Err(e) = db::execute(&self.db, format!("NOTIFY {NOTIFY_CHANNEL}"), vec![]).await
            {
                tracing::warn!(error = %e, "NOTIFY failed; other instances will see the row at their next poll");
            }
        }
        Ok(id)
    }
}
