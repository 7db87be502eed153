//! End-to-end tests: the real server over a real database (SQLite, and PostgreSQL when
//! `PAWTROPOLIS_TEST_POSTGRES_URL` is set). One binary, so the suite links once.

#![allow(clippy::unwrap_used)]

mod e2e {
    pub mod auth;
    pub mod cli;
    pub mod clients;
    pub mod config;
    pub mod embedding;
    pub mod expand;
    pub mod identity;
    pub mod legacy;
    pub mod login;
    pub mod logs;
    pub mod metrics_charts;
    pub mod metrics_summary;
    pub mod openapi_spec;
    pub mod stream;
}
