//! Additive schema changes that are safe on a database someone else created.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend, Statement};

/// A column: its name and its type on SQLite and on PostgreSQL. The types of columns that may
/// be added to an existing table must be nullable or carry a default.
pub(crate) struct Column {
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

pub(crate) const fn col(
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
) -> Column {
    Column {
        name,
        sqlite,
        postgres,
    }
}

/// A table: its columns (the first ones form the CREATE), and the table constraint.
pub(crate) struct Table {
    pub name: &'static str,
    /// Columns of a newly created table.
    pub columns: &'static [Column],
    /// Columns added to an existing table when missing (nullable or defaulted types).
    pub addable: &'static [Column],
    /// Extra clause of the CREATE (a composite primary key), if any.
    pub constraint: Option<&'static str>,
}

fn is_pg(manager: &SchemaManager<'_>) -> bool {
    manager.get_database_backend() == DbBackend::Postgres
}

pub(crate) async fn existing_columns(
    manager: &SchemaManager<'_>,
    table: &str,
) -> Result<Vec<String>, DbErr> {
    let db = manager.get_connection();
    let backend = manager.get_database_backend();
    let stmt = if is_pg(manager) {
        Statement::from_sql_and_values(
            backend,
            "SELECT column_name AS name FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1",
            [table.into()],
        )
    } else {
        Statement::from_sql_and_values(
            backend,
            "SELECT name FROM pragma_table_info($1)",
            [table.into()],
        )
    };
    db.query_all_raw(stmt)
        .await?
        .iter()
        .map(|r| r.try_get::<String>("", "name"))
        .collect()
}

/// Creates the table when absent; otherwise adds the missing `addable` columns. Existing
/// columns, extra columns and rows are left alone.
pub(crate) async fn ensure_table(manager: &SchemaManager<'_>, table: &Table) -> Result<(), DbErr> {
    let db = manager.get_connection();
    let pg = is_pg(manager);
    let ty = |c: &Column| if pg { c.postgres } else { c.sqlite };
    let existing = existing_columns(manager, table.name).await?;
    if existing.is_empty() {
        let mut parts: Vec<String> = table
            .columns
            .iter()
            .map(|c| format!("{} {}", c.name, ty(c)))
            .collect();
        if let Some(constraint) = table.constraint {
            parts.push(constraint.to_owned());
        }
        db.execute_unprepared(&format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            table.name,
            parts.join(", ")
        ))
        .await?;
        return Ok(());
    }
    for c in table.addable {
        if !existing.iter().any(|e| e.eq_ignore_ascii_case(c.name)) {
            db.execute_unprepared(&format!(
                "ALTER TABLE {} ADD COLUMN {} {}",
                table.name,
                c.name,
                ty(c)
            ))
            .await?;
        }
    }
    Ok(())
}

/// Creates an index when absent (`columns` may carry `DESC`).
pub(crate) async fn ensure_index(
    manager: &SchemaManager<'_>,
    name: &str,
    table: &str,
    columns: &str,
) -> Result<(), DbErr> {
    manager
        .get_connection()
        .execute_unprepared(&format!(
            "CREATE INDEX IF NOT EXISTS {name} ON {table} ({columns})"
        ))
        .await
        .map(|_| ())
}

/// Drops a table the API owns (never one of the bot's).
pub(crate) async fn drop_own_table(manager: &SchemaManager<'_>, name: &str) -> Result<(), DbErr> {
    manager
        .get_connection()
        .execute_unprepared(&format!("DROP TABLE IF EXISTS {name}"))
        .await
        .map(|_| ())
}
