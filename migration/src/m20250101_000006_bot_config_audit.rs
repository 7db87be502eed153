//! `config_audit_log` in the bot's layout. The API's first migrations made a table of that name
//! with columns of their own (`actor`, `field`, `changed_at_s`), which broke the bot's
//! migration 060 on a database the API had migrated first. Such a table is converted: its rows
//! move to the bot's layout (`user:<id>` becomes the user id with source `dashboard`, any other
//! principal stays as it was with source `api`), and the old table goes.

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the impl.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::{
    additive::{ensure_table, existing_columns},
    m20250101_000002_api_tables::{CONFIG_AUDIT_LOG, ensure_audit_index},
};

/// Where the rows of the first layout wait while the table is made again.
const OLD: &str = "config_audit_log_api_v1";

/// True when `config_audit_log` has the API's first layout.
pub(crate) async fn is_first_api_layout(manager: &SchemaManager<'_>) -> Result<bool, DbErr> {
    Ok(existing_columns(manager, "config_audit_log")
        .await?
        .iter()
        .any(|c| c.eq_ignore_ascii_case("changed_at_s")))
}

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if is_first_api_layout(manager).await? {
            let db = manager.get_connection();
            let created_at = match manager.get_database_backend() {
                DbBackend::Postgres => {
                    "to_char(to_timestamp(changed_at_s) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')"
                }
                _ => "datetime(changed_at_s, 'unixepoch')",
            };
            // The old index goes with the old table.
            db.execute_unprepared(&format!("ALTER TABLE config_audit_log RENAME TO {OLD}"))
                .await?;
            ensure_table(manager, &CONFIG_AUDIT_LOG).await?;
            db.execute_unprepared(&format!(
                "INSERT INTO config_audit_log (guild_id, user_id, field_key, old_value, new_value, source, created_at) \
                 SELECT guild_id, \
                   CASE WHEN actor LIKE 'user:%' THEN substr(actor, 6) ELSE actor END, \
                   field, old_value, new_value, \
                   CASE WHEN actor LIKE 'user:%' THEN 'dashboard' ELSE 'api' END, \
                   {created_at} \
                 FROM {OLD} ORDER BY id"
            ))
            .await?;
            db.execute_unprepared(&format!("DROP TABLE {OLD}")).await?;
        }
        ensure_audit_index(manager).await
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // The bot's layout is the one to keep: nothing to undo.
        Ok(())
    }
}
