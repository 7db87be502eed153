//! `config_audit_log` in the bot's layout. The API's first migrations made a table of that name
//! with columns of their own (`actor`, `field`, `changed_at_s`), which broke the bot's
//! migration 060 on a database the API had migrated first. Such a table is converted, rows and
//! ids kept: `user:<id>` becomes the user id with source `dashboard`, any other principal stays
//! as it was with source `api`, and `changed_at_s` becomes `created_at`.

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
        if manager.get_database_backend() == DbBackend::Sqlite {
            // Write first, read after: this (no-op) write takes SQLite's write lock, waiting
            // out the bot's writes. Had the transaction read first, a bot commit between the
            // read and the first ALTER would fail it at once (SQLITE_BUSY_SNAPSHOT: a read
            // snapshot cannot become a writer after another one wrote).
            manager
                .get_connection()
                .execute_unprepared("UPDATE config_audit_log SET id = id WHERE 0")
                .await?;
        }
        if is_first_api_layout(manager).await? {
            match manager.get_database_backend() {
                DbBackend::Postgres => convert_in_place(manager).await?,
                _ => rebuild(manager).await?,
            }
        }
        ensure_audit_index(manager).await
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // The bot's layout is the one to keep: nothing to undo.
        Ok(())
    }

    /// All of it or nothing, on SQLite too: a conversion cut short would leave the rows in a
    /// table nothing reads, or no audit table at all.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }
}

/// The bot's type of `column` on PostgreSQL.
fn postgres_type(column: &str) -> &'static str {
    CONFIG_AUDIT_LOG
        .columns
        .iter()
        .find(|c| c.name == column)
        .map_or("TEXT", |c| c.postgres)
}

/// PostgreSQL: columns renamed, added and filled in place, so the ids, the sequence and the
/// primary key keep their names (a new table would get `config_audit_log_id_seq1`).
async fn convert_in_place(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    for sql in [
        "ALTER TABLE config_audit_log RENAME COLUMN actor TO user_id".to_owned(),
        "ALTER TABLE config_audit_log RENAME COLUMN field TO field_key".to_owned(),
        format!(
            "ALTER TABLE config_audit_log ADD COLUMN source {}",
            postgres_type("source")
        ),
        format!(
            "ALTER TABLE config_audit_log ADD COLUMN created_at {}",
            postgres_type("created_at")
        ),
        // Every expression reads the row as it was.
        "UPDATE config_audit_log SET \
           source = CASE WHEN user_id LIKE 'user:%' THEN 'dashboard' ELSE 'api' END, \
           user_id = CASE WHEN user_id LIKE 'user:%' THEN substr(user_id, 6) ELSE user_id END, \
           created_at = to_char(to_timestamp(changed_at_s) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')"
            .to_owned(),
        // Its index goes with it.
        "ALTER TABLE config_audit_log DROP COLUMN changed_at_s".to_owned(),
    ] {
        db.execute_unprepared(&sql).await?;
    }
    Ok(())
}

/// SQLite: a column cannot be added with the bot's `datetime('now')` default, so the table is
/// made again in the bot's layout and the rows, with their ids, move over.
async fn rebuild(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    // The old index goes with the old table.
    db.execute_unprepared(&format!("ALTER TABLE config_audit_log RENAME TO {OLD}"))
        .await?;
    ensure_table(manager, &CONFIG_AUDIT_LOG).await?;
    db.execute_unprepared(&format!(
        "INSERT INTO config_audit_log (id, guild_id, user_id, field_key, old_value, new_value, source, created_at) \
         SELECT id, guild_id, \
           CASE WHEN actor LIKE 'user:%' THEN substr(actor, 6) ELSE actor END, \
           field, old_value, new_value, \
           CASE WHEN actor LIKE 'user:%' THEN 'dashboard' ELSE 'api' END, \
           datetime(changed_at_s, 'unixepoch') \
         FROM {OLD} ORDER BY id"
    ))
    .await?;
    // AUTOINCREMENT's promise (an id is never handed out twice) lives in `sqlite_sequence`,
    // under the old table's name now: carry its counter over before it goes with the table.
    for sql in [
        format!(
            "UPDATE sqlite_sequence SET seq = (SELECT seq FROM sqlite_sequence WHERE name = '{OLD}')              WHERE name = 'config_audit_log' AND seq < (SELECT seq FROM sqlite_sequence WHERE name = '{OLD}')"
        ),
        format!(
            "INSERT INTO sqlite_sequence (name, seq) SELECT 'config_audit_log', seq FROM sqlite_sequence              WHERE name = '{OLD}' AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'config_audit_log')"
        ),
        format!("DROP TABLE {OLD}"),
    ] {
        db.execute_unprepared(&sql).await?;
    }
    Ok(())
}
