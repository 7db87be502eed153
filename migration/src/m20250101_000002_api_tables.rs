//! Tables the API owns: `config_audit_log` and `api_token`.

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the impl.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

use crate::additive::{Table, col, drop_own_table, ensure_index, ensure_table};

const CONFIG_AUDIT_LOG: Table = Table {
    name: "config_audit_log",
    columns: &[
        col(
            "id",
            "INTEGER PRIMARY KEY AUTOINCREMENT",
            "BIGSERIAL PRIMARY KEY",
        ),
        col("guild_id", "TEXT NOT NULL", "TEXT NOT NULL"),
        col("actor", "TEXT NOT NULL", "TEXT NOT NULL"),
        col("field", "TEXT NOT NULL", "TEXT NOT NULL"),
        col("old_value", "TEXT", "TEXT"),
        col("new_value", "TEXT", "TEXT"),
        col("changed_at_s", "INTEGER NOT NULL", "BIGINT NOT NULL"),
    ],
    addable: &[],
    constraint: None,
};

const API_TOKEN: Table = Table {
    name: "api_token",
    columns: &[
        col(
            "id",
            "INTEGER PRIMARY KEY AUTOINCREMENT",
            "BIGSERIAL PRIMARY KEY",
        ),
        col("name", "TEXT NOT NULL", "TEXT NOT NULL"),
        col("token_hash", "TEXT NOT NULL UNIQUE", "TEXT NOT NULL UNIQUE"),
        col("guild_ids", "TEXT NOT NULL", "TEXT NOT NULL"),
        col("created_at_s", "INTEGER NOT NULL", "BIGINT NOT NULL"),
        col("last_used_at_s", "INTEGER", "BIGINT"),
        col("revoked_at_s", "INTEGER", "BIGINT"),
    ],
    addable: &[],
    constraint: None,
};

const IDX_KEYSET: &str = "idx_action_log_guild_time_id";

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        ensure_table(manager, &CONFIG_AUDIT_LOG).await?;
        ensure_index(
            manager,
            "idx_config_audit_guild_time",
            "config_audit_log",
            "guild_id, changed_at_s",
        )
        .await?;
        ensure_table(manager, &API_TOKEN).await?;
        // Keyset pagination of the log orders by (created_at_s, id). SQLite's index already
        // ends in the rowid (= id); PostgreSQL needs the id spelled out to avoid a sort.
        if manager.get_database_backend() == sea_orm_migration::sea_orm::DbBackend::Postgres {
            ensure_index(
                manager,
                IDX_KEYSET,
                "action_log",
                "guild_id, created_at_s DESC, id DESC",
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use sea_orm_migration::sea_orm::ConnectionTrait as _;
        manager
            .get_connection()
            .execute_unprepared(&format!("DROP INDEX IF EXISTS {IDX_KEYSET}"))
            .await?;
        drop_own_table(manager, "api_token").await?;
        drop_own_table(manager, "config_audit_log").await
    }
}
