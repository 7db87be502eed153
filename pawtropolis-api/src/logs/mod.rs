//! The action log: listing with filters and keyset pagination.

pub(crate) mod api;
mod cursor;
mod query;

pub use cursor::Cursor;
pub use query::{LogFilter, LogItem, LogsPage, list_logs};
