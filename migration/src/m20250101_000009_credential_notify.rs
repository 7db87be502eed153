//! Endings of API tokens and dashboard sessions, announced by PostgreSQL itself.
//!
//! Every server's live feed `LISTEN`s on `pawtropolis_credential_ended` and ends the streams of
//! the credential whose hash arrives. Triggers send it whenever a credential's `revoked_at_s` is
//! set, or its live row is deleted, whoever did it (the API, the CLI, SQL typed by hand), as
//! migration 8's triggers record it on SQLite. `NOTIFY` from a trigger is part of the writing
//! transaction: sent at its commit, never for a rollback.

// The trait is declared with an elided `SchemaManager` lifetime; naming it breaks the impl.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::endings::ending_triggers;

/// The trigger function: its one argument names the column holding the secret's hash.
const FUNCTION: &str = "pawtropolis_credential_ended";

/// The channel: `ENDED_CHANNEL` of pawtropolis-api's `auth::ended`, spelled like [`FUNCTION`]
/// on purpose (the function exists to send on it).
const CHANNEL: &str = "pawtropolis_credential_ended";

/// Each trigger's name and table, with its statement.
fn triggers() -> impl Iterator<Item = (String, &'static str, String)> {
    ending_triggers("credential_ended").map(|t| {
        let sql = format!(
            "CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW WHEN ({when}) \
             EXECUTE FUNCTION {FUNCTION}('{hash}')",
            name = t.name,
            event = t.event,
            table = t.table,
            when = t.when,
            hash = t.hash,
        );
        (t.name, t.table, sql)
    })
}

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(&format!(
            "CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN \
               IF TG_OP = 'DELETE' THEN \
                 PERFORM pg_notify('{CHANNEL}', to_jsonb(OLD) ->> TG_ARGV[0]); \
               ELSE \
                 PERFORM pg_notify('{CHANNEL}', to_jsonb(NEW) ->> TG_ARGV[0]); \
               END IF; \
               RETURN NULL; \
             END $$"
        ))
        .await?;
        for (name, table, sql) in triggers() {
            // PostgreSQL has no CREATE TRIGGER IF NOT EXISTS; this keeps `up` safe to repeat.
            db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {name} ON {table}"))
                .await?;
            db.execute_unprepared(&sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        for (name, table, _) in triggers() {
            db.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {name} ON {table}"))
                .await?;
        }
        db.execute_unprepared(&format!("DROP FUNCTION IF EXISTS {FUNCTION}()"))
            .await?;
        Ok(())
    }
}
