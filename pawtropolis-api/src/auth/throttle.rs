//! Discord's hold on the login's calls to its OAuth2 token endpoint.
//!
//! Discord asks clients to wait out a 429's `retry_after` before calling again, and bans for
//! a while an address that keeps sending it requests answered 401, 403 or 429; the bot's own
//! calls come from the same address. So after a 429 from the token endpoint no login asks
//! again until the wait is over: the callbacks in between are answered 503 at once.

use std::{sync::Mutex, time::Duration};

use tokio::time::Instant;

/// Discord's rate limit holds the token exchanges for this many more seconds (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Seconds until the hold is over, rounded up.
    pub retry_after_secs: u64,
}

/// When the token exchanges may go on.
#[derive(Default)]
pub struct ExchangeThrottle {
    held_until: Mutex<Option<Instant>>,
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
}
