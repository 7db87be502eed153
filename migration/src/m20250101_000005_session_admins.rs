//! The guilds a dashboard session may edit the configuration of (`admin_guild_ids`), apart
//! from those it may read: reviewers read, admins also edit.

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the impl.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;

use crate::{additive::ensure_table, m20250101_000004_sessions::SESSION};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Adds the column to a table made before it existed; sessions made before it may edit
        // nothing until their next role re-check.
        ensure_table(manager, &SESSION).await
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // The column stays (a session without it edits nothing); rolling back the sessions
        // migration drops the whole table.
        Ok(())
    }
}
