//! Moderator metrics: the per-moderator summary, with its cache.

pub(crate) mod api;
mod cache;
mod percentile;
mod summary;
mod window;

pub use cache::MetricsCache;
pub use percentile::{mean, nearest_rank};
pub use summary::{MetricsSummary, ModeratorMetrics, Totals, summarize};
pub use window::Window;
