//! The `migrate` command, shared by the `migrate` binary and `pawtropolis-server migrate`.

use std::{
    fs::{File, OpenOptions, TryLockError},
    io::ErrorKind,
    time::{Duration, Instant},
};

use sea_orm_migration::{
    IntoSchemaManagerConnection, MigrationStatus, MigratorTrait,
    sea_orm::{
        ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, Statement,
        TransactionTrait,
    },
};

use crate::{DbErr, Migrator};

/// The PostgreSQL advisory lock that migrations hold (any fixed number: it only has to be the
/// same in every process; these are the ASCII bytes of "pawmigr8").
const MIGRATION_LOCK: i64 = 0x7061_776d_6967_7238;

/// How long migrations wait for another process's to finish.
const LOCK_WAIT: Duration = Duration::from_secs(600);

/// What keeps other processes' migrations out while this one's run, so that two servers
/// started at once after an upgrade do not both apply the same migration (the second would
/// fail on a table, a column or a `seaql_migrations` row the first just made). Released when
/// dropped (or, for PostgreSQL, committed).
enum Exclusive {
    /// PostgreSQL: a transaction holding an advisory lock. The migrations run inside it, so
    /// all of them apply, or none.
    Postgres(DatabaseTransaction),
    /// SQLite: a lock on a file beside the database (`<database>-migrate.lock`), not the
    /// database's own write lock, which would keep the bot from writing for the whole run
    /// rather than for each statement.
    File {
        /// Held, not read: closing it releases the lock.
        _lock: File,
    },
    /// Where no other process can migrate the same database: an in-memory SQLite one, one on
    /// a read-only file system, or another backend.
    Alone,
}

impl Exclusive {
    async fn take(db: &DatabaseConnection) -> Result<Self, DbErr> {
        match db.get_database_backend() {
            DbBackend::Postgres => {
                let txn = db.begin().await?;
                txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
                    .await?;
                Ok(Self::Postgres(txn))
            }
            DbBackend::Sqlite => Ok(match lock_file(db).await? {
                Some(file) => Self::File { _lock: file },
                None => Self::Alone,
            }),
            _ => Ok(Self::Alone),
        }
    }

    async fn release(self) -> Result<(), DbErr> {
        match self {
            Self::Postgres(txn) => txn.commit().await,
            Self::File { .. } | Self::Alone => Ok(()),
        }
    }
}

/// Takes the lock file of the SQLite database `db` has open, waiting while another process
/// holds it (an advisory `flock`, independent of SQLite's own locks on the database file).
async fn lock_file(db: &DatabaseConnection) -> Result<Option<File>, DbErr> {
    let Some(row) = db
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT file FROM pragma_database_list WHERE name = 'main'",
        ))
        .await?
    else {
        return Ok(None);
    };
    let database: String = row.try_get("", "file")?;
    if database.is_empty() {
        return Ok(None);
    }
    let path = format!("{database}-migrate.lock");
    let failed = |e: std::io::Error| DbErr::Custom(format!("migration lock {path}: {e}"));
    let file = match OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
    {
        Ok(file) => file,
        // Another user's lock file: taking the lock needs no write access.
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            File::open(&path).map_err(|_| failed(e))?
        }
        // Nobody can migrate a database on a read-only file system: nothing to keep out.
        Err(e) if e.kind() == ErrorKind::ReadOnlyFilesystem => return Ok(None),
        Err(e) => return Err(failed(e)),
    };
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Some(file)),
            Err(TryLockError::WouldBlock) if started.elapsed() < LOCK_WAIT => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(TryLockError::WouldBlock) => {
                return Err(failed(std::io::Error::other(format!(
                    "another process has held it for {} s",
                    LOCK_WAIT.as_secs()
                ))));
            }
            Err(TryLockError::Error(e)) => return Err(failed(e)),
        }
    }
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

/// Runs `command` against `db` and returns what to print, one process at a time: another
/// process's migrations wait for these (on SQLite, on a lock file beside the database; on
/// PostgreSQL, on an advisory lock, all of them in one transaction).
pub async fn run(db: &DatabaseConnection, command: &MigrateCommand) -> Result<String, DbErr> {
    let exclusive = Exclusive::take(db).await?;
    let out = match &exclusive {
        Exclusive::Postgres(txn) => run_on(txn, command).await?,
        Exclusive::File { .. } | Exclusive::Alone => run_on(db, command).await?,
    };
    exclusive.release().await?;
    Ok(out)
}

async fn run_on<'c, T>(db: &'c T, command: &MigrateCommand) -> Result<String, DbErr>
where
    T: ConnectionTrait,
    &'c T: IntoSchemaManagerConnection<'c>,
{
    match command {
        MigrateCommand::Up { steps } => {
            let pending = Migrator::get_pending_migrations(db).await?.len();
            Migrator::up(db, *steps).await?;
            let applied = steps.map_or(pending, |n| pending.min(n as usize));
            Ok(format!("applied {applied} migration(s)"))
        }
        MigrateCommand::Down { steps } => {
            Migrator::down(db, Some(*steps)).await?;
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
