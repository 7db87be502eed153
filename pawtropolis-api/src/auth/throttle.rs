//! Discord's hold on the login's calls to its OAuth2 token endpoint.
//!
//! Discord asks clients to wait out a 429's `retry_after` before calling again, and bans for
//! a while an address that keeps sending it requests answered 401, 403 or 429; the bot's own
//! calls come from the same address. So after a 429 from the token endpoint no login asks
//! again until the wait is over: the callbacks in between are answered 503 at once.
//!
//! Anyone can call `/auth/callback` with a state of their own in both the query and the
//! cookie and a made-up code, and each such call would have the server send Discord a code it
//! refuses. So refused codes are budgeted too ([`REFUSED_PER_MINUTE`] for the whole process):
//! past the budget every login waits as after a 429, until it refills. A flood of forged
//! callbacks then delays logins for as long as it lasts, but cannot make Discord ban the
//! address the bot shares.

use std::{num::NonZeroU32, sync::Mutex, time::Duration};

use governor::{
    DefaultDirectRateLimiter, Quota, RateLimiter,
    clock::{Clock as _, DefaultClock},
};
use tokio::time::Instant;

/// Code exchanges Discord may refuse per minute, for the whole process, before logins wait.
/// A person mistyping nothing never meets it (a code is refused when it was used or made
/// up); Discord's own threshold for banning an address is far higher.
pub const REFUSED_PER_MINUTE: u32 = 30;

/// Discord's rate limit holds the token exchanges for this many more seconds (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Seconds until the hold is over, rounded up.
    pub retry_after_secs: u64,
}

/// When the token exchanges may go on.
pub struct ExchangeThrottle {
    held_until: Mutex<Option<Instant>>,
    refused: DefaultDirectRateLimiter,
}

impl Default for ExchangeThrottle {
    fn default() -> Self {
        let per_minute = NonZeroU32::new(REFUSED_PER_MINUTE).unwrap_or(NonZeroU32::MIN);
        Self {
            held_until: Mutex::new(None),
            refused: RateLimiter::direct(Quota::per_minute(per_minute)),
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

    /// Counts an exchange Discord refused; past the budget, holds every exchange until it
    /// has room again and returns that hold.
    pub fn refused(&self) -> Option<Held> {
        let not_until = self.refused.check().err()?;
        Some(self.hold(not_until.wait_time_from(DefaultClock::default().now())))
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
    fn refused_codes_past_the_budget_hold_every_exchange() {
        let t = ExchangeThrottle::default();
        for _ in 0..REFUSED_PER_MINUTE {
            assert_eq!(t.refused(), None);
            assert_eq!(t.admit(), Ok(()));
        }
        let held = t.refused().expect("past the budget");
        // The budget refills one refusal every 60 / 30 = 2 s.
        assert!((1..=2).contains(&held.retry_after_secs), "{held:?}");
        assert_eq!(t.admit(), Err(held));
    }
}
