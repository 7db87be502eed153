//! The action log: listing with filters and keyset pagination.

pub(crate) mod api;
mod cursor;
pub mod direct;
mod query;
pub(crate) mod stream;
pub mod write_timeout;

pub use cursor::Cursor;
pub(crate) use query::ITEM_COLUMNS;
pub use query::{LogFilter, LogItem, LogsPage, list_logs};

/// Largest page of `GET /api/logs` the OpenAPI document allows (`limit`'s maximum).
pub const LIMIT_MAX: u32 = 500;
