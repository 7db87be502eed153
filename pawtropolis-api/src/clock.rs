//! The API's notion of "now": the wall clock, a fixed instant (`PAWTROPOLIS_NOW`) or a clock
//! tests move by hand.

use std::sync::{
    Arc,
    atomic::{AtomicI64, Ordering},
};

/// A source of the current Unix time in seconds.
pub trait Clock: Send + Sync + 'static {
    /// Current Unix time, seconds.
    fn now_s(&self) -> i64;
}

/// The system wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_s(&self) -> i64 {
        chrono::Utc::now().timestamp()
    }
}

/// A clock that reads a settable instant: `PAWTROPOLIS_NOW`, or a test that advances time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock stopped at `now_s`.
    pub fn new(now_s: i64) -> Self {
        Self(Arc::new(AtomicI64::new(now_s)))
    }

    /// Sets the current instant.
    pub fn set(&self, now_s: i64) {
        self.0.store(now_s, Ordering::SeqCst);
    }

    /// Moves the clock forward by `secs`.
    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_s(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
