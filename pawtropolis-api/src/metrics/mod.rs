//! Moderator metrics: the per-moderator summary, the time series and the latency percentiles,
//! with their cache.

pub(crate) mod api;
mod cache;
mod derived;
mod grid;
mod percentile;
mod summary;
mod timeseries;
mod window;

pub use cache::MetricsCache;
pub use derived::{Derived, SlotCounts};
pub use grid::{Bucket, SLOT_SECS, Zone, bucket_starts};
pub use percentile::{mean, nearest_rank};
pub use summary::{MetricsSummary, ModeratorMetrics, Totals, summarize};
pub use timeseries::{
    ActionCounts, ChartParams, CountsBucket, Latency, LatencyBucket, Timeseries, latency,
    timeseries,
};
pub use window::Window;
