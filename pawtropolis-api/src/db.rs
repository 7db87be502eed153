//! Database connection and the few helpers that keep raw SQL portable between SQLite and
//! PostgreSQL (both accept `$1`-style numbered parameters).

use std::time::Duration;

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, QueryResult, Statement,
    TransactionTrait as _, Value,
};

/// Opens the database behind `url` (`sqlite://…` or `postgres://…`).
///
/// SQLite runs in WAL mode with a busy timeout and a pool of several connections, so the bot can
/// keep writing while the API reads.
pub async fn connect(url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(max_connections.max(2))
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false);
    if url.starts_with("sqlite:") {
        opts.map_sqlx_sqlite_opts(|o| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                .create_if_missing(true)
        });
    }
    Database::connect(opts).await
}

/// A statement for the connection's backend with `$n` parameters.
pub(crate) fn stmt(
    db: &impl ConnectionTrait,
    sql: impl Into<String>,
    values: Vec<Value>,
) -> Statement {
    Statement::from_sql_and_values(db.get_database_backend(), sql, values)
}

/// Runs a query and returns every row.
pub(crate) async fn query_all(
    db: &impl ConnectionTrait,
    sql: impl Into<String>,
    values: Vec<Value>,
) -> Result<Vec<QueryResult>, DbErr> {
    db.query_all_raw(stmt(db, sql, values)).await
}

/// Runs a query and returns the first row, if any.
pub(crate) async fn query_one(
    db: &impl ConnectionTrait,
    sql: impl Into<String>,
    values: Vec<Value>,
) -> Result<Option<QueryResult>, DbErr> {
    db.query_one_raw(stmt(db, sql, values)).await
}

/// Runs a statement and returns the number of rows it touched.
pub(crate) async fn execute(
    db: &impl ConnectionTrait,
    sql: impl Into<String>,
    values: Vec<Value>,
) -> Result<u64, DbErr> {
    Ok(db.execute_raw(stmt(db, sql, values)).await?.rows_affected())
}

/// The first column of the first row of `sql`, if there is a row.
pub(crate) async fn query_scalar<T: sea_orm::TryGetable>(
    db: &impl ConnectionTrait,
    sql: impl Into<String>,
    values: Vec<Value>,
) -> Result<Option<T>, DbErr> {
    query_one(db, sql, values)
        .await?
        .map(|row| row.try_get_by_index(0))
        .transpose()
}

/// The highest id in `action_log` (0 when it is empty).
pub(crate) async fn max_action_id(db: &impl ConnectionTrait) -> Result<i64, DbErr> {
    Ok(
        query_scalar(db, "SELECT COALESCE(MAX(id), 0) FROM action_log", vec![])
            .await?
            .unwrap_or(0),
    )
}

/// Keeps SQLite's query planner informed. Without statistics it guesses that an equality on
/// `guild_id` is as selective as one on `app_id`, and picks the guild index where the
/// application index is a hundred times faster. Analyzes `action_log` when one of its indexes
/// has no statistics (migrations analyze only the index they add), and otherwise lets
/// `PRAGMA optimize` decide; both from a sample of each index (`analysis_limit`), since
/// ANALYZE holds the write lock the bot needs and a full pass over the bot's large tables
/// would outlast its busy timeout. No-op on PostgreSQL (autovacuum keeps statistics).
pub async fn refresh_planner_statistics(db: &DatabaseConnection) -> Result<(), DbErr> {
    if db.get_database_backend() != sea_orm::DbBackend::Sqlite {
        return Ok(());
    }
    let has_stats = query_scalar::<i64>(
        db,
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'",
        vec![],
    )
    .await?
    .unwrap_or(0)
        > 0;
    let unanalyzed = if has_stats {
        query_scalar::<i64>(
            db,
            // An empty table gets no statistics rows: it counts as analyzed.
            "SELECT COUNT(*) FROM pragma_index_list('action_log') AS i \
             WHERE EXISTS (SELECT 1 FROM action_log) AND NOT EXISTS (SELECT 1 FROM sqlite_stat1 AS s \
                               WHERE s.tbl = 'action_log' AND s.idx = i.name)",
            vec![],
        )
        .await?
        .unwrap_or(0)
    } else {
        1
    };
    let sql = if unanalyzed > 0 {
        "ANALYZE action_log"
    } else {
        "PRAGMA optimize"
    };
    // One connection for the limit and the statement it bounds.
    let txn = db.begin().await?;
    txn.execute_unprepared("PRAGMA analysis_limit = 1000")
        .await?;
    txn.execute_unprepared(sql).await?;
    txn.execute_unprepared("PRAGMA analysis_limit = 0").await?;
    txn.commit().await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    async fn analyzed_indexes(db: &DatabaseConnection) -> Vec<String> {
        let rows = query_all(
            db,
            "SELECT idx FROM sqlite_stat1 WHERE tbl = 'action_log' ORDER BY idx",
            vec![],
        )
        .await
        .unwrap();
        rows.iter()
            .map(|r| r.try_get_by_index(0).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn indexes_a_migration_left_unanalyzed_are_analyzed() {
        let db = connect("sqlite::memory:", 1).await.unwrap();
        for sql in [
            "CREATE TABLE action_log (id INTEGER PRIMARY KEY, guild_id TEXT, app_id TEXT)",
            "CREATE INDEX idx_guild ON action_log (guild_id)",
            "CREATE INDEX idx_app ON action_log (app_id)",
            "INSERT INTO action_log (guild_id, app_id) VALUES ('1', 'a'), ('1', 'b'), ('2', 'c')",
            // What a migration that adds an index does: statistics for that index alone.
            "ANALYZE idx_app",
        ] {
            db.execute_unprepared(sql).await.unwrap();
        }
        assert_eq!(analyzed_indexes(&db).await, ["idx_app"]);
        refresh_planner_statistics(&db).await.unwrap();
        assert_eq!(analyzed_indexes(&db).await, ["idx_app", "idx_guild"]);
        // A second start finds every index analyzed and changes nothing.
        refresh_planner_statistics(&db).await.unwrap();
        assert_eq!(analyzed_indexes(&db).await, ["idx_app", "idx_guild"]);
    }
}
