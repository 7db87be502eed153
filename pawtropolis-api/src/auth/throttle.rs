//! A budget on the login's calls to Discord's OAuth2 token endpoint.
//!
//! Anyone can start a login and come back to `/auth/callback` with a made-up code, and each
//! such callback makes the server post its client secret to Discord, which answers 400.
//! Discord bans an address that sends it too many invalid requests (10,000 in 10 minutes),
//! and the bot's own calls come from the same address. So the exchanges of the whole process
//! share one budget, far below that, and a 429 from the token endpoint stops them all until
//! Discord's `retry_after` has passed.

use std::{num::NonZeroU32, sync::Mutex, time::Duration};

use governor::{
    Quota, RateLimiter,
    clock::{Clock as _, DefaultClock},
    state::{InMemoryState, NotKeyed},
};
use tokio::time::Instant;

/// Token exchanges per minute for the whole process (a burst of this many, refilled evenly).
pub const EXCHANGES_PER_MINUTE: u32 = 60;

/// Why an exchange may not be tried now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// This process's budget is spent (429).
    Budget {
        /// Seconds until one more exchange may be tried (at least 1).
        retry_after_secs: u64,
    },
    /// Discord rate limited the token endpoint (503).
    Discord {
        /// Seconds until Discord's wait is over (at least 1).
        retry_after_secs: u64,
    },
}

/// The budget of token exchanges and Discord's current hold on them.
pub struct ExchangeThrottle {
    budget: RateLimiter<NotKeyed, InMemoryState, DefaultClock>,
    held_until: Mutex<Option<Instant>>,
}

impl Default for ExchangeThrottle {
    fn default() -> Self {
        Self::new(NonZeroU32::new(EXCHANGES_PER_MINUTE).unwrap_or(NonZeroU32::MIN))
    }
}

fn whole_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl ExchangeThrottle {
    /// A throttle of `per_minute` exchanges.
    pub fn new(per_minute: NonZeroU32) -> Self {
        Self {
            budget: RateLimiter::direct(Quota::per_minute(per_minute)),
            held_until: Mutex::new(None),
        }
    }

    /// Takes one exchange from the budget, unless Discord's hold or the budget refuses it.
    pub fn admit(&self) -> Result<(), Refusal> {
        let held = *self.held_until.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(until) = held
            && let Some(left) = until.checked_duration_since(Instant::now())
            && !left.is_zero()
        {
            return Err(Refusal::Discord {
                retry_after_secs: whole_secs(left).max(1),
            });
        }
        self.budget.check().map_err(|not_until| Refusal::Budget {
            retry_after_secs: whole_secs(not_until.wait_time_from(DefaultClock::default().now()))
                .max(1),
        })
    }

    /// Stops every exchange for `wait` (Discord's `retry_after`; a longer hold already in
    /// place is kept).
    pub fn hold(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut held = self.held_until.lock().unwrap_or_else(|p| p.into_inner());
        if held.is_none_or(|h| h < until) {
            *held = Some(until);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refuses_past_its_burst() {
        let t = ExchangeThrottle::new(NonZeroU32::new(3).unwrap());
        for _ in 0..3 {
            assert_eq!(t.admit(), Ok(()));
        }
        match t.admit() {
            // One exchange comes back every 20 s.
            Err(Refusal::Budget { retry_after_secs }) => {
                assert!((1..=20).contains(&retry_after_secs), "{retry_after_secs}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_discord_hold_refuses_until_it_ends() {
        let t = ExchangeThrottle::default();
        t.hold(Duration::from_millis(1_500));
        t.hold(Duration::from_millis(10));
        assert_eq!(
            t.admit(),
            Err(Refusal::Discord {
                retry_after_secs: 2
            }),
            "the longer hold stays"
        );
        tokio::time::advance(Duration::from_millis(1_600)).await;
        assert_eq!(t.admit(), Ok(()));
    }
}
