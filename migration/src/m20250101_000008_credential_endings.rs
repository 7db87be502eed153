//! Endings of API tokens and dashboard sessions, in the order they happened, for SQLite.
//!
//! PostgreSQL announces each ending with `NOTIFY` (migration 9), which every server's live feed
//! hears. SQLite has no such thing, so a `token revoke` run from the CLI, or a logout through
//! another process sharing the file, would reach a server's live streams only at their next
//! heartbeat. Triggers append the hash of every credential whose `revoked_at_s` is set, or whose
//! live row is deleted, whoever did it (the API, the CLI, SQL typed by hand), to
//! `credential_ending`, whose ids grow with each one: the feed reads the rows after the last id
//! it saw every second. No clock is involved, so a writer's clock cannot hide an ending. The
//! table keeps the latest 10,000 endings (under a megabyte), far more than a second's.

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the impl.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::{
    additive::{Table, col, drop_own_table, ensure_table},
    endings::ending_triggers,
};

const ENDINGS: Table = Table {
    name: "credential_ending",
    columns: &[
        col(
            "id",
            "INTEGER PRIMARY KEY AUTOINCREMENT",
            "BIGSERIAL PRIMARY KEY",
        ),
        col("hash", "TEXT NOT NULL", "TEXT NOT NULL"),
    ],
    addable: &[],
    constraint: None,
};

/// The trigger name of each table and event, with its statement.
fn triggers() -> impl Iterator<Item = (String, String)> {
    ending_triggers("credential_ending").map(|t| {
        let sql = format!(
            "CREATE TRIGGER IF NOT EXISTS {name} AFTER {event} ON {table} WHEN {when} \
             BEGIN \
               INSERT INTO credential_ending (hash) VALUES ({row}.{hash}); \
               DELETE FROM credential_ending \
                WHERE id <= (SELECT MAX(id) FROM credential_ending) - 10000; \
             END",
            name = t.name,
            event = t.event,
            table = t.table,
            when = t.when,
            row = t.row,
            hash = t.hash,
        );
        (t.name, sql)
    })
}

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Sqlite {
            return Ok(());
        }
        ensure_table(manager, &ENDINGS).await?;
        let db = manager.get_connection();
        for (_, sql) in triggers() {
            db.execute_unprepared(&sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Sqlite {
            return Ok(());
        }
        let db = manager.get_connection();
        for (name, _) in triggers() {
            db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {name}"))
                .await?;
        }
        drop_own_table(manager, ENDINGS.name).await
    }
}
