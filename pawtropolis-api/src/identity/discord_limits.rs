//! Discord's rate limits on identity lookups, as serenity's rate limiter reports them.
//!
//! serenity's limiter (on in production) sleeps through a rate limit inside the request, so a
//! 429 never reaches the identity source: a lookup would just wait out the resolver's timeout,
//! and so would every lookup after it. serenity reports each wait to a callback
//! ([`Ratelimiter::set_ratelimit_callback`](serenity::http::Ratelimiter::set_ratelimit_callback),
//! or `EventHandler::ratelimit` for a bot's own client); a wait recorded here makes later
//! lookups answer `rate_limited` at once, so the resolver backs off for exactly that long.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use serenity::http::RatelimitInfo;

/// Most guilds whose waits are remembered at once (a wait is forgotten when it ends).
const MAX_GUILDS: usize = 10_000;

/// Waits serenity announced, by guild (member lookups) and for the whole bot (global limits,
/// user lookups).
#[derive(Debug)]
pub struct DiscordRateLimits {
    /// Waits shorter than this are serenity pacing requests, which a lookup sits out within
    /// its timeout: only longer ones are worth refusing lookups for.
    min_wait: Duration,
    state: Mutex<Waits>,
}

#[derive(Debug, Default)]
struct Waits {
    everything: Option<Instant>,
    guilds: HashMap<u64, Instant>,
}

impl DiscordRateLimits {
    /// Remembers waits of at least `min_wait` (the resolver passes its Discord timeout: a
    /// lookup that must wait that long would time out anyway).
    pub fn new(min_wait: Duration) -> Self {
        Self {
            min_wait,
            state: Mutex::new(Waits::default()),
        }
    }

    /// Records a wait serenity announced (its rate-limit callback, or a bot's
    /// `EventHandler::ratelimit`).
    pub fn record(&self, info: &RatelimitInfo) {
        self.record_wait(&info.path, info.timeout, info.global);
    }

    /// Records that requests to `url` (a Discord API URL), or to every route when `global`,
    /// must wait `wait`.
    pub fn record_wait(&self, url: &str, wait: Duration, global: bool) {
        if wait < self.min_wait {
            return;
        }
        let guild = member_route_guild(url);
        // Other routes (a bot's messages, say) have buckets of their own.
        if !global && guild.is_none() && !is_user_route(url) {
            return;
        }
        let until = Instant::now() + wait;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match guild {
            Some(guild) if !global => {
                if state.guilds.len() >= MAX_GUILDS {
                    let now = Instant::now();
                    state.guilds.retain(|_, t| *t > now);
                }
                if state.guilds.len() < MAX_GUILDS {
                    let entry = state.guilds.entry(guild).or_insert(until);
                    *entry = (*entry).max(until);
                }
            }
            // A global limit, or the user route (the fallback of every guild's lookups).
            _ => state.everything = Some(state.everything.map_or(until, |t| t.max(until))),
        }
    }

    /// How long a member lookup in `guild_id` would wait now, if it is worth refusing.
    pub fn wait(&self, guild_id: u64) -> Option<Duration> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        [state.everything, state.guilds.get(&guild_id).copied()]
            .into_iter()
            .flatten()
            .filter(|until| *until > now)
            .max()
            .map(|until| until - now)
    }

    /// A callback for [`Ratelimiter::set_ratelimit_callback`](serenity::http::Ratelimiter::set_ratelimit_callback).
    pub fn callback(
        self: &std::sync::Arc<Self>,
    ) -> Box<dyn Fn(RatelimitInfo) + Send + Sync + 'static> {
        let limits = self.clone();
        Box::new(move |info| limits.record(&info))
    }
}

/// The guild of a `…/guilds/{guild}/members/{user}` request (serenity reports full URLs).
fn member_route_guild(path: &str) -> Option<u64> {
    let rest = &path[path.find("/guilds/")? + "/guilds/".len()..];
    let (guild, rest) = rest.split_once('/')?;
    rest.starts_with("members/")
        .then(|| guild.parse().ok())
        .flatten()
}

/// A `…/users/{user}` request, the lookup of a user who is not a member.
fn is_user_route(path: &str) -> bool {
    path.rfind("/users/").is_some_and(|i| {
        path[i + "/users/".len()..]
            .bytes()
            .all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn member_waits_are_per_guild_and_short_ones_are_ignored() {
        let limits = DiscordRateLimits::new(Duration::from_secs(5));
        limits.record_wait(
            "https://discord.com/api/v10/guilds/111/members/222",
            Duration::from_secs(1),
            false,
        );
        assert_eq!(limits.wait(111), None, "pacing is serenity's to sit out");
        limits.record_wait(
            "https://discord.com/api/v10/guilds/111/members/222",
            Duration::from_secs(30),
            false,
        );
        assert!(limits.wait(111).unwrap() > Duration::from_secs(29));
        assert_eq!(limits.wait(333), None);
        limits.record_wait(
            "https://discord.com/api/v10/users/222",
            Duration::from_secs(60),
            false,
        );
        assert!(limits.wait(333).unwrap() > Duration::from_secs(59));
    }

    #[test]
    fn other_routes_do_not_hold_lookups() {
        let limits = DiscordRateLimits::new(Duration::from_secs(5));
        limits.record_wait(
            "https://discord.com/api/v10/channels/5/messages",
            Duration::from_secs(60),
            false,
        );
        limits.record_wait(
            "https://discord.com/api/v10/users/@me/guilds",
            Duration::from_secs(60),
            false,
        );
        assert_eq!(limits.wait(111), None);
    }

    #[test]
    fn a_global_limit_holds_every_guild() {
        let limits = DiscordRateLimits::new(Duration::from_secs(5));
        limits.record_wait(
            "https://discord.com/api/v10/guilds/111/members/222",
            Duration::from_secs(10),
            true,
        );
        assert!(limits.wait(999).is_some());
    }

    #[test]
    fn routes() {
        assert_eq!(
            member_route_guild("https://discord.com/api/v10/guilds/42/members/7"),
            Some(42)
        );
        assert_eq!(
            member_route_guild("https://discord.com/api/v10/guilds/42/roles"),
            None
        );
        assert_eq!(member_route_guild("/users/7"), None);
    }
}
