//! How the login calls Discord's OAuth2 token endpoint without getting the address banned.
//!
//! Discord bans for a while an address that sends it too many requests answered 401, 403 or
//! 429, and the bot's own calls come from the same address. Three guards:
//! - after a 429 no login asks again until its `retry_after` is over: the callbacks in between
//!   are answered 503 at once;
//! - at most [`IN_FLIGHT`] exchanges run at once (a callback waits up to [`SLOT_WAIT`] for a
//!   turn), so that a burst of callbacks (anyone can send one, with a state of their own in
//!   both the query and the cookie and a made-up code) cannot put hundreds of requests before
//!   Discord at the moment it starts answering 429;
//! - exchanges answered 401 (a wrong client secret refuses every login) or 403 are budgeted: a
//!   burst of [`REFUSED_PER_MINUTE`], then one every 2 s (logins wait in between, as after a
//!   429; up to [`IN_FLIGHT`]` - 1` more may already be under way when the budget runs out).
//!   A made-up or used code is answered 400 (`invalid_grant`), which Discord does not count,
//!   and neither does this.

use std::{num::NonZeroU32, sync::Mutex, time::Duration};

use governor::{
    Quota, RateLimiter,
    clock::{Clock as _, DefaultClock},
    middleware::StateInformationMiddleware,
    state::{InMemoryState, NotKeyed},
};
use tokio::{
    sync::{Semaphore, SemaphorePermit},
    time::Instant,
};

/// Exchanges Discord may answer 401 or 403 per minute, for the whole process, before logins
/// wait. Far below Discord's threshold for banning an address.
pub const REFUSED_PER_MINUTE: u32 = 30;

/// Token exchanges running at once, for the whole process.
pub const IN_FLIGHT: usize = 4;

/// Longest a callback waits for its turn to exchange its code before it is answered 503.
pub const SLOT_WAIT: Duration = Duration::from_secs(5);

/// The token exchanges are held (Discord's rate limit, refusals past the budget, or every
/// turn taken) for this many more seconds (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Seconds until the hold is over, rounded up.
    pub retry_after_secs: u64,
}

/// When the token exchanges may go on.
pub struct ExchangeThrottle {
    held_until: Mutex<Option<Instant>>,
    refused: RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>,
    turns: Semaphore,
}

impl Default for ExchangeThrottle {
    fn default() -> Self {
        let per_minute = NonZeroU32::new(REFUSED_PER_MINUTE).unwrap_or(NonZeroU32::MIN);
        Self {
            held_until: Mutex::new(None),
            refused: RateLimiter::direct(Quota::per_minute(per_minute))
                .with_middleware::<StateInformationMiddleware>(),
            turns: Semaphore::new(IN_FLIGHT),
        }
    }
}

/// The hold that lasts until `until`, if it has not ended.
fn held(until: Instant) -> Option<Held> {
    let left = until.saturating_duration_since(Instant::now());
    (!left.is_zero()).then(|| Held {
        retry_after_secs: (left.as_secs() + u64::from(left.subsec_nanos() > 0)).max(1),
    })
}

impl ExchangeThrottle {
    /// `Ok` when an exchange may be tried now.
    pub fn admit(&self) -> Result<(), Held> {
        let until = *self.held_until.lock().unwrap_or_else(|p| p.into_inner());
        until.and_then(held).map_or(Ok(()), Err)
    }

    /// Holds every exchange for `wait` (Discord's `retry_after`; a longer hold already in place
    /// is kept) and returns the hold now in force.
    pub fn hold(&self, wait: Duration) -> Held {
        let mut until = self.held_until.lock().unwrap_or_else(|p| p.into_inner());
        let asked = Instant::now() + wait;
        let later = until.map_or(asked, |t| t.max(asked));
        *until = Some(later);
        held(later).unwrap_or(Held {
            retry_after_secs: 1,
        })
    }

    /// A turn to exchange a code, waited for up to [`SLOT_WAIT`]; held while it is kept.
    pub async fn turn(&self) -> Result<SemaphorePermit<'_>, Held> {
        match tokio::time::timeout(SLOT_WAIT, self.turns.acquire()).await {
            Ok(Ok(turn)) => Ok(turn),
            // Timed out (or closed, which this semaphore never is).
            _ => Err(Held {
                retry_after_secs: SLOT_WAIT.as_secs(),
            }),
        }
    }

    /// Counts an exchange Discord answered 401 or 403; when that leaves the budget empty,
    /// holds every exchange until it has room again and returns that hold.
    pub fn refused(&self) -> Option<Held> {
        match self.refused.check() {
            Ok(left) if left.remaining_burst_capacity() > 0 => None,
            // Emptied now: the next room comes within one refill interval.
            Ok(_) => Some(self.hold(Duration::from_secs(60) / REFUSED_PER_MINUTE.max(1))),
            // Already empty (exchanges that were under way when it emptied).
            Err(not_until) => {
                Some(self.hold(not_until.wait_time_from(DefaultClock::default().now())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_discord_hold_refuses_until_it_ends() {
        let t = ExchangeThrottle::default();
        assert_eq!(t.admit(), Ok(()));
        assert_eq!(
            t.hold(Duration::from_millis(1_500)),
            Held {
                retry_after_secs: 2
            }
        );
        assert_eq!(
            t.hold(Duration::from_millis(10)),
            Held {
                retry_after_secs: 2
            },
            "the longer hold stays"
        );
        tokio::time::advance(Duration::from_millis(1_600)).await;
        assert_eq!(t.admit(), Ok(()));
    }

    #[test]
    fn the_refusal_that_empties_the_budget_holds_every_exchange() {
        let t = ExchangeThrottle::default();
        for _ in 1..REFUSED_PER_MINUTE {
            assert_eq!(t.refused(), None);
            assert_eq!(t.admit(), Ok(()));
        }
        let held = t.refused().expect("the budget is empty");
        // The budget refills one refusal every 60 / 30 = 2 s.
        assert!((1..=2).contains(&held.retry_after_secs), "{held:?}");
        assert_eq!(t.admit(), Err(held));
    }
}
