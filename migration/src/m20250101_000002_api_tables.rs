//! `api_token`, which the API owns, and `config_audit_log`, the audit trail of config edits it
//! shares with the bot.

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the impl.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

use crate::additive::{Table, col, drop_own_table, ensure_index, ensure_table};

/// The bot's own audit trail of dashboard config edits (its migration 060), with the same
/// columns, so that both write one trail: `user_id` is who (a Discord user id, or the API
/// principal such as `token:12`), `source` where from (`dashboard`, `api`), `created_at` when
/// (`YYYY-MM-DD HH:MM:SS` UTC, as SQLite's `datetime('now')` writes it).
pub(crate) const CONFIG_AUDIT_LOG: Table = Table {
    name: "config_audit_log",
    columns: &[
        col(
            "id",
            "INTEGER PRIMARY KEY AUTOINCREMENT",
            "BIGSERIAL PRIMARY KEY",
        ),
        col("guild_id", "TEXT NOT NULL", "TEXT NOT NULL"),
        col("user_id", "TEXT NOT NULL", "TEXT NOT NULL"),
        col("field_key", "TEXT NOT NULL", "TEXT NOT NULL"),
        col("old_value", "TEXT", "TEXT"),
        col("new_value", "TEXT", "TEXT"),
        col(
            "source",
            "TEXT NOT NULL DEFAULT 'dashboard'",
            "TEXT NOT NULL DEFAULT 'dashboard'",
        ),
        col(
            "created_at",
            "TEXT NOT NULL DEFAULT (datetime('now'))",
            "TEXT NOT NULL DEFAULT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')",
        ),
    ],
    addable: &[],
    constraint: None,
};

/// The bot's index of it (the same name, so neither creates a second one).
pub(crate) async fn ensure_audit_index(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    ensure_index(
        manager,
        "idx_config_audit_guild",
        "config_audit_log",
        "guild_id, created_at DESC",
    )
    .await
}

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
        // A table of the API's first layout is converted by migration 6 first.
        if !crate::m20250101_000006_bot_config_audit::is_first_api_layout(manager).await? {
            ensure_audit_index(manager).await?;
        }
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
        // `config_audit_log` is the bot's table as well: it stays.
        drop_own_table(manager, "api_token").await
    }
}
