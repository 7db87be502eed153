//! The live feed of `action_log`: [`ActionFeed`] is the one publisher of new rows, whoever
//! wrote them, and [`ActionRecorder`] is how a host writes actions so dashboards see them at
//! once.

pub(crate) mod publisher;
mod recorder;
mod sqlite_endings;
mod wal_watch;

pub use publisher::{ActionFeed, FeedEvent, NOTIFY_CHANNEL};
pub use recorder::{ActionRecorder, NewAction};

/// Held by the unit tests that start a feed: one of them counts the feed's threads.
#[cfg(test)]
pub(crate) static FEED_TESTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
