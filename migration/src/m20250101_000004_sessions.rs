//! Dashboard sessions of the Discord login: a random id (stored hashed), the user, the guilds
//! they may read and edit, and their expiry.

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the impl.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

use crate::additive::{Table, col, drop_own_table, ensure_table};

pub(crate) const SESSION: Table = Table {
    name: "dashboard_session",
    columns: &[
        col(
            "id",
            "INTEGER PRIMARY KEY AUTOINCREMENT",
            "BIGSERIAL PRIMARY KEY",
        ),
        col("id_hash", "TEXT NOT NULL UNIQUE", "TEXT NOT NULL UNIQUE"),
        col("user_id", "TEXT NOT NULL", "TEXT NOT NULL"),
        col("username", "TEXT NOT NULL", "TEXT NOT NULL"),
        col("display_name", "TEXT NOT NULL", "TEXT NOT NULL"),
        col("avatar_url", "TEXT NOT NULL", "TEXT NOT NULL"),
        col("guild_ids", "TEXT NOT NULL", "TEXT NOT NULL"),
        col(
            "all_guilds",
            "INTEGER NOT NULL DEFAULT 0",
            "BIGINT NOT NULL DEFAULT 0",
        ),
        col("discord_access_token", "TEXT NOT NULL", "TEXT NOT NULL"),
        col("created_at_s", "INTEGER NOT NULL", "BIGINT NOT NULL"),
        col("last_seen_at_s", "INTEGER NOT NULL", "BIGINT NOT NULL"),
        col("roles_checked_at_s", "INTEGER NOT NULL", "BIGINT NOT NULL"),
        col("revoked_at_s", "INTEGER", "BIGINT"),
        col(
            "admin_guild_ids",
            "TEXT NOT NULL DEFAULT ''",
            "TEXT NOT NULL DEFAULT ''",
        ),
    ],
    // Added by `m20250101_000005_session_admins` where this migration ran before it existed.
    addable: &[col(
        "admin_guild_ids",
        "TEXT NOT NULL DEFAULT ''",
        "TEXT NOT NULL DEFAULT ''",
    )],
    constraint: None,
};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        ensure_table(manager, &SESSION).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_own_table(manager, "dashboard_session").await
    }
}
