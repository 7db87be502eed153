//! The `migrate` command, shared by the `migrate` binary and `pawtropolis-server migrate`.

use sea_orm_migration::{MigrationStatus, MigratorTrait, sea_orm::DatabaseConnection};

use crate::{DbErr, Migrator};

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
