//! Migrations of the Pawtropolis database, for SQLite and PostgreSQL.
//!
//! They must run on the bot's existing database: a table that already exists (with rows, maybe
//! with extra columns the bot added) is kept; missing columns and indexes are added; nothing is
//! dropped or rewritten; running them again changes nothing.

#![warn(missing_docs)]

pub use sea_orm_migration::prelude::*;

mod additive;
pub mod cli;
mod endings;
mod m20250101_000001_bot_tables;
mod m20250101_000002_api_tables;
mod m20250101_000003_metrics_tables;
mod m20250101_000004_sessions;
mod m20250101_000005_session_admins;
mod m20250101_000006_bot_config_audit;
mod m20250101_000007_subject_index;
mod m20250101_000008_credential_endings;
mod m20250101_000009_credential_notify;

/// Every migration, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20250101_000001_bot_tables::Migration),
            Box::new(m20250101_000002_api_tables::Migration),
            Box::new(m20250101_000003_metrics_tables::Migration),
            Box::new(m20250101_000004_sessions::Migration),
            Box::new(m20250101_000005_session_admins::Migration),
            Box::new(m20250101_000006_bot_config_audit::Migration),
            Box::new(m20250101_000007_subject_index::Migration),
            Box::new(m20250101_000008_credential_endings::Migration),
            Box::new(m20250101_000009_credential_notify::Migration),
        ]
    }
}
