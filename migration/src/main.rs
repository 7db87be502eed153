//! `migrate`: apply, roll back or list the migrations of a Pawtropolis database.

use clap::Parser;
use migration::cli::{MigrateCommand, ensure_sqlite_dir, run};
use sea_orm_migration::sea_orm::Database;

#[derive(Parser)]
#[command(
    version,
    about = "Migrations of the Pawtropolis database (SQLite or PostgreSQL)"
)]
struct Args {
    /// Database URL (`sqlite://path?mode=rwc` or `postgres://…`).
    #[arg(
        long,
        env = "PAWTROPOLIS_DATABASE_URL",
        default_value = "sqlite://data/pawtropolis.db?mode=rwc"
    )]
    database_url: String,
    #[command(subcommand)]
    command: Option<MigrateCommand>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ensure_sqlite_dir(&args.database_url)?;
    let db = Database::connect(args.database_url.as_str()).await?;
    let command = args.command.unwrap_or(MigrateCommand::Up { steps: None });
    println!("{}", run(&db, &command).await?);
    Ok(())
}
