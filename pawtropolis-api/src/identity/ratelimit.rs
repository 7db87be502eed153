//! The per-process request limit of `GET /api/users/resolve` (governor's GCRA).

use std::num::NonZeroU32;

use governor::{
    Quota, RateLimiter,
    clock::{Clock as _, DefaultClock},
    middleware::StateInformationMiddleware,
    state::{InMemoryState, NotKeyed},
};

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Let through; `remaining` more may pass right now.
    Allowed {
        /// Requests still allowed in the current burst.
        remaining: u32,
    },
    /// Refused; retry after this many seconds.
    Limited {
        /// Seconds until a request may pass (at least 1).
        retry_after_secs: u64,
    },
}

/// At most `limit` requests per minute for the whole process, as a burst of `limit` that
/// refills evenly over the minute.
pub struct ResolveRateLimiter {
    limit: u32,
    inner: Option<RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>>,
}

impl ResolveRateLimiter {
    /// A limiter of `per_minute` requests; 0 turns limiting off.
    pub fn new(per_minute: u32) -> Self {
        Self {
            limit: per_minute,
            inner: NonZeroU32::new(per_minute).map(|n| {
                RateLimiter::direct(Quota::per_minute(n))
                    .with_middleware::<StateInformationMiddleware>()
            }),
        }
    }

    /// The configured requests per minute (0: unlimited).
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Takes one request from the budget.
    pub fn check(&self) -> RateDecision {
        let Some(inner) = &self.inner else {
            return RateDecision::Allowed {
                remaining: u32::MAX,
            };
        };
        match inner.check() {
            Ok(snapshot) => RateDecision::Allowed {
                remaining: snapshot.remaining_burst_capacity(),
            },
            Err(not_until) => {
                let wait = not_until.wait_time_from(inner.clock().now());
                RateDecision::Limited {
                    retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_past_the_limit_is_refused() {
        let limiter = ResolveRateLimiter::new(50);
        for i in 0..50u32 {
            assert_eq!(limiter.check(), RateDecision::Allowed { remaining: 49 - i });
        }
        assert!(
            matches!(limiter.check(), RateDecision::Limited { retry_after_secs } if retry_after_secs >= 1)
        );
    }

    #[test]
    fn zero_means_unlimited() {
        let limiter = ResolveRateLimiter::new(0);
        for _ in 0..1000 {
            assert!(matches!(limiter.check(), RateDecision::Allowed { .. }));
        }
    }
}
