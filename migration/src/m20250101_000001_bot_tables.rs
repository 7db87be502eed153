//! The tables the bot writes: `action_log`, `user_cache`, `guild_config`.
//!
//! On the bot's database they already exist; this adds only what is missing.

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the impl.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

use crate::additive::{Table, col, ensure_index, ensure_table};

pub(crate) const ACTION_LOG: Table = Table {
    name: "action_log",
    columns: &[
        col(
            "id",
            "INTEGER PRIMARY KEY AUTOINCREMENT",
            "BIGSERIAL PRIMARY KEY",
        ),
        col("guild_id", "TEXT NOT NULL", "TEXT NOT NULL"),
        col("app_id", "TEXT", "TEXT"),
        col("app_code", "TEXT", "TEXT"),
        col("actor_id", "TEXT NOT NULL", "TEXT NOT NULL"),
        col("subject_id", "TEXT", "TEXT"),
        col("action", "TEXT NOT NULL", "TEXT NOT NULL"),
        col("reason", "TEXT", "TEXT"),
        col("meta_json", "TEXT", "TEXT"),
        col("created_at_s", "INTEGER NOT NULL", "BIGINT NOT NULL"),
    ],
    addable: &[
        col("app_id", "TEXT", "TEXT"),
        col("app_code", "TEXT", "TEXT"),
        col("subject_id", "TEXT", "TEXT"),
        col("reason", "TEXT", "TEXT"),
        col("meta_json", "TEXT", "TEXT"),
    ],
    constraint: None,
};

pub(crate) const USER_CACHE: Table = Table {
    name: "user_cache",
    columns: &[
        col("user_id", "TEXT NOT NULL", "TEXT NOT NULL"),
        col("guild_id", "TEXT NOT NULL", "TEXT NOT NULL"),
        col("username", "TEXT NOT NULL", "TEXT NOT NULL"),
        col("global_name", "TEXT", "TEXT"),
        col("display_name", "TEXT", "TEXT"),
        col("avatar_hash", "TEXT", "TEXT"),
        col("avatar_url", "TEXT NOT NULL", "TEXT NOT NULL"),
        col("updated_at", "TEXT NOT NULL", "TEXT NOT NULL"),
        col("banner_url", "TEXT", "TEXT"),
        col("accent_color", "INTEGER", "BIGINT"),
        col("joined_at", "INTEGER", "BIGINT"),
        col("created_at", "INTEGER", "BIGINT"),
    ],
    addable: &[
        col("global_name", "TEXT", "TEXT"),
        col("display_name", "TEXT", "TEXT"),
        col("avatar_hash", "TEXT", "TEXT"),
        col("banner_url", "TEXT", "TEXT"),
        col("accent_color", "INTEGER", "BIGINT"),
        col("joined_at", "INTEGER", "BIGINT"),
        col("created_at", "INTEGER", "BIGINT"),
    ],
    constraint: Some("PRIMARY KEY (user_id, guild_id)"),
};

pub(crate) const GUILD_CONFIG: Table = Table {
    name: "guild_config",
    columns: &[
        col("guild_id", "TEXT PRIMARY KEY", "TEXT PRIMARY KEY"),
        col("review_channel_id", "TEXT", "TEXT"),
        col("gate_channel_id", "TEXT", "TEXT"),
        col("unverified_channel_id", "TEXT", "TEXT"),
        col("general_channel_id", "TEXT", "TEXT"),
        col("accepted_role_id", "TEXT", "TEXT"),
        col("reviewer_role_id", "TEXT", "TEXT"),
        col("admin_role_id", "TEXT", "TEXT"),
        col(
            "reapply_cooldown_hours",
            "INTEGER NOT NULL DEFAULT 24",
            "BIGINT NOT NULL DEFAULT 24",
        ),
        col(
            "min_account_age_hours",
            "INTEGER NOT NULL DEFAULT 0",
            "BIGINT NOT NULL DEFAULT 0",
        ),
        col(
            "min_join_age_hours",
            "INTEGER NOT NULL DEFAULT 0",
            "BIGINT NOT NULL DEFAULT 0",
        ),
        col("created_at", "TEXT", "TEXT"),
        col("updated_at", "TEXT", "TEXT"),
    ],
    addable: &[
        col("review_channel_id", "TEXT", "TEXT"),
        col("gate_channel_id", "TEXT", "TEXT"),
        col("unverified_channel_id", "TEXT", "TEXT"),
        col("general_channel_id", "TEXT", "TEXT"),
        col("accepted_role_id", "TEXT", "TEXT"),
        col("reviewer_role_id", "TEXT", "TEXT"),
        col("admin_role_id", "TEXT", "TEXT"),
        col(
            "reapply_cooldown_hours",
            "INTEGER NOT NULL DEFAULT 24",
            "BIGINT NOT NULL DEFAULT 24",
        ),
        col(
            "min_account_age_hours",
            "INTEGER NOT NULL DEFAULT 0",
            "BIGINT NOT NULL DEFAULT 0",
        ),
        col(
            "min_join_age_hours",
            "INTEGER NOT NULL DEFAULT 0",
            "BIGINT NOT NULL DEFAULT 0",
        ),
        col("created_at", "TEXT", "TEXT"),
        col("updated_at", "TEXT", "TEXT"),
    ],
    constraint: None,
};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        ensure_table(manager, &ACTION_LOG).await?;
        ensure_index(
            manager,
            "idx_action_log_guild_time",
            "action_log",
            "guild_id, created_at_s DESC",
        )
        .await?;
        ensure_index(
            manager,
            "idx_action_log_actor_time",
            "action_log",
            "actor_id, created_at_s DESC",
        )
        .await?;
        ensure_index(manager, "idx_action_log_app", "action_log", "app_id").await?;
        ensure_table(manager, &USER_CACHE).await?;
        ensure_index(
            manager,
            "idx_user_cache_updated",
            "user_cache",
            "updated_at",
        )
        .await?;
        ensure_index(manager, "idx_user_cache_guild", "user_cache", "guild_id").await?;
        ensure_table(manager, &GUILD_CONFIG).await?;
        Ok(())
    }

    /// The bot owns these tables and their rows: rolling back the API never drops them.
    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}
