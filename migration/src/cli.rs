//! The `migrate` command, shared by the `migrate` binary and `pawtropolis-server migrate`.

use std::time::{Duration, Instant};

use sea_orm_migration::{
    MigrationStatus, MigratorTrait,
    sea_orm::{
        ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, SqliteTransactionMode,
        TransactionOptions, TransactionTrait,
    },
};

use crate::{DbErr, Migrator};

/// The PostgreSQL advisory lock that migrations hold (any fixed number: it only has to be the
/// same in every process; these are the ASCII bytes of "pawmigr8").
const MIGRATION_LOCK: i64 = 0x7061_776d_6967_7238;

/// How long a SQLite migration waits for another process's to finish (each attempt also waits
/// for the connection's busy timeout).
const SQLITE_WAIT: Duration = Duration::from_secs(600);

/// A transaction that no other process's migrations run beside, so two servers started at
/// once after an upgrade do not both apply the same migration (the second would fail on a
/// table or column the first just made). PostgreSQL holds an advisory lock until it ends;
/// SQLite takes the write lock at once (`BEGIN IMMEDIATE`), waiting while another process
/// holds it. The migrations then run inside it: all of them, or none, apply.
async fn begin_exclusive(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    match db.get_database_backend() {
        DbBackend::Postgres => {
            let txn = db.begin().await?;
            txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
                .await?;
            Ok(txn)
        }
        DbBackend::Sqlite => {
            let options = TransactionOptions {
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                ..Default::default()
            };
            let started = Instant::now();
            loop {
                match db.begin_with_options(options).await {
                    Err(e) if is_busy(&e) && started.elapsed() < SQLITE_WAIT => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    other => return other,
                }
            }
        }
        _ => db.begin().await,
    }
}

/// SQLite's "another connection holds the lock" (`SQLITE_BUSY`).
fn is_busy(e: &DbErr) -> bool {
    e.to_string().contains("database is locked")
}

/// What `migrate` should do.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum MigrateCommand {
    /// Apply pending migrations (all, or the next N).
    Up {
        /// Apply at most this many.
        #[arg(short = 'n', long)]
        steps: Option<u32>,
    },
    /// Roll back the last N applied migrations (default 1). The bot's own tables and rows are
    /// never dropped.
    Down {
        /// How many to roll back.
        #[arg(short = 'n', long, default_value_t = 1)]
        steps: u32,
    },
    /// List migrations and whether each is applied.
    Status,
}

/// Runs `command` against `db` and returns what to print.
pub async fn run(db: &DatabaseConnection, command: &MigrateCommand) -> Result<String, DbErr> {
    match command {
        MigrateCommand::Up { steps } => {
            let txn = begin_exclusive(db).await?;
            let pending = Migrator::get_pending_migrations(&txn).await?.len();
            Migrator::up(&txn, *steps).await?;
            txn.commit().await?;
            let applied = steps.map_or(pending, |n| pending.min(n as usize));
            Ok(format!("applied {applied} migration(s)"))
        }
        MigrateCommand::Down { steps } => {
            let txn = begin_exclusive(db).await?;
            Migrator::down(&txn, Some(*steps)).await?;
            txn.commit().await?;
            Ok(format!("rolled back up to {steps} migration(s)"))
        }
        MigrateCommand::Status => {
            let mut out = String::new();
            for m in Migrator::get_migration_with_status(db).await? {
                let status = match m.status() {
                    MigrationStatus::Applied => "applied",
                    MigrationStatus::Pending => "pending",
                };
                out.push_str(&format!("{status:8} {}\n", m.name()));
            }
            Ok(out.trim_end().to_owned())
        }
    }
}

/// Creates the parent folder of a SQLite database file, so `sqlite://data/x.db?mode=rwc`
/// works on a fresh clone.
pub fn ensure_sqlite_dir(url: &str) -> std::io::Result<()> {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return Ok(());
    };
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    match std::path::Path::new(path).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir),
        _ => Ok(()),
    }
}
