//! Waits that hold Discord lookups: all of them, or one guild's. Shared by the waits serenity
//! reports ([`DiscordRateLimits`](super::DiscordRateLimits)) and the resolver's own backoff.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

/// Most guilds held at once. Past that (after ended waits are swept) a guild's wait holds
/// everything: so many at once is Discord holding the bot, and no wait is forgotten.
const MAX_GUILDS: usize = 10_000;

/// Until when lookups are held: all of them, and per guild.
#[derive(Debug, Default)]
pub(crate) struct Holds {
    all: Option<Instant>,
    guilds: HashMap<u64, Instant>,
}

/// The later of a hold in place and `until`.
pub(super) fn later(current: Option<Instant>, until: Instant) -> Instant {
    current.map_or(until, |t| t.max(until))
}

/// What is left of a hold, if it has not ended.
pub(super) fn left(until: Option<Instant>) -> Option<Duration> {
    let now = Instant::now();
    until.filter(|t| *t > now).map(|t| t - now)
}

impl Holds {
    /// Holds every lookup for `wait`.
    pub(crate) fn hold_all(&mut self, wait: Duration) {
        self.all = Some(later(self.all, Instant::now() + wait));
    }

    /// Holds `guild`'s lookups for `wait`.
    pub(crate) fn hold_guild(&mut self, guild: u64, wait: Duration) {
        let now = Instant::now();
        if self.guilds.len() >= MAX_GUILDS {
            self.guilds.retain(|_, t| *t > now);
        }
        if self.guilds.len() >= MAX_GUILDS && !self.guilds.contains_key(&guild) {
            return self.hold_all(wait);
        }
        let until = later(self.guilds.get(&guild).copied(), now + wait);
        self.guilds.insert(guild, until);
    }

    /// What is left of the hold on every lookup.
    pub(crate) fn all_left(&self) -> Option<Duration> {
        left(self.all)
    }

    /// What is left of the hold on `guild` alone.
    pub(crate) fn guild_left(&self, guild: u64) -> Option<Duration> {
        left(self.guilds.get(&guild).copied())
    }

    /// What is left of whichever hold lasts longer for `guild`'s lookups.
    pub(crate) fn left(&self, guild: u64) -> Option<Duration> {
        self.all_left().max(self.guild_left(guild))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_guild_is_held_alone_and_past_the_bound_everything_is() {
        let mut holds = Holds::default();
        holds.hold_guild(1, Duration::from_secs(60));
        assert!(holds.left(1).unwrap() > Duration::from_secs(59));
        assert_eq!(holds.left(2), None);
        for g in 2..=MAX_GUILDS as u64 {
            holds.hold_guild(g, Duration::from_secs(60));
        }
        assert_eq!(holds.all_left(), None);
        // A guild already held gets a longer wait without holding everything.
        holds.hold_guild(1, Duration::from_secs(120));
        assert!(holds.guild_left(1).unwrap() > Duration::from_secs(119));
        assert_eq!(holds.all_left(), None);
        holds.hold_guild(MAX_GUILDS as u64 + 1, Duration::from_secs(60));
        assert!(holds.all_left().is_some(), "the wait is not forgotten");
        assert!(holds.left(MAX_GUILDS as u64 + 7).is_some());
    }
}
