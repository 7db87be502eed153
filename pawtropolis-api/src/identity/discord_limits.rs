//! Discord's rate limits on identity lookups, as serenity's rate limiter reports them.
//!
//! serenity's limiter (on in production) sleeps through a rate limit inside the request, so a
//! 429 never reaches the identity source: a lookup would just wait out the resolver's timeout,
//! and so would every lookup after it. serenity reports each wait to a callback
//! ([`Ratelimiter::set_ratelimit_callback`](serenity::http::Ratelimiter::set_ratelimit_callback),
//! or `EventHandler::ratelimit` for a bot's own client); a wait recorded here makes later
//! lookups on the held route answer `rate_limited` at once, for exactly that long: one guild's
//! member lookups, every guild's lookups of non-members (the user route), or everything (a
//! global limit).

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use serenity::http::RatelimitInfo;

use super::holds::{Holds, later, left};

/// Waits serenity announced: for the whole bot (global limits), per guild (member lookups),
/// and for the user route (lookups of non-members, whatever the guild).
#[derive(Debug)]
pub struct DiscordRateLimits {
    /// Waits shorter than this are serenity pacing requests, which a lookup sits out within
    /// its timeout: only longer ones are worth refusing lookups for.
    min_wait: Duration,
    state: Mutex<Waits>,
}

#[derive(Debug, Default)]
struct Waits {
    holds: Holds,
    users: Option<Instant>,
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

    fn state(&self) -> std::sync::MutexGuard<'_, Waits> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a wait serenity announced (its rate-limit callback, or a bot's
    /// `EventHandler::ratelimit`).
    pub fn record(&self, info: &RatelimitInfo) {
        self.record_wait(&info.path, info.timeout, info.global);
    }

    /// Records that requests to `url` (a Discord API URL), or to every route when `global`,
    /// must wait `wait`. Routes other than the two lookups (a bot's messages, say) have
    /// buckets of their own and are ignored unless the limit is global. Past 10,000 guilds
    /// held at once, a guild's wait holds everything.
    pub fn record_wait(&self, url: &str, wait: Duration, global: bool) {
        if wait < self.min_wait {
            return;
        }
        let mut state = self.state();
        if global {
            state.holds.hold_all(wait);
        } else if let Some(guild) = member_route_guild(url) {
            state.holds.hold_guild(guild, wait);
        } else if is_user_route(url) {
            state.users = Some(later(state.users, Instant::now() + wait));
        }
    }

    /// What is left of a global limit, which holds every request.
    pub fn global_wait(&self) -> Option<Duration> {
        self.state().holds.all_left()
    }

    /// What is left of a limit on `guild_id`'s member lookups (global limits aside).
    pub fn member_wait(&self, guild_id: u64) -> Option<Duration> {
        self.state().holds.guild_left(guild_id)
    }

    /// What is left of a limit on user lookups (global limits aside), the route every guild's
    /// non-members are looked up on.
    pub fn user_wait(&self) -> Option<Duration> {
        left(self.state().users)
    }

    /// A callback for [`Ratelimiter::set_ratelimit_callback`](serenity::http::Ratelimiter::set_ratelimit_callback).
    pub fn callback(
        self: &std::sync::Arc<Self>,
    ) -> Box<dyn Fn(RatelimitInfo) + Send + Sync + 'static> {
        let limits = self.clone();
        Box::new(move |info| limits.record(&info))
    }
}

/// The path of a Discord API URL, without its query.
fn route(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

fn is_id(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The guild of a `…/guilds/{guild}/members/{user}` request, the member lookup, and of no
/// other member route (`/members/search`, `/members/@me`, `/members/{user}/roles/{role}` have
/// buckets of their own). serenity reports full URLs.
fn member_route_guild(url: &str) -> Option<u64> {
    let path = route(url);
    let rest = &path[path.find("/guilds/")? + "/guilds/".len()..];
    let mut parts = rest.split('/');
    let (guild, members, user) = (parts.next()?, parts.next()?, parts.next()?);
    (members == "members" && is_id(user) && parts.next().is_none())
        .then(|| guild.parse().ok())
        .flatten()
}

/// A `…/users/{user}` request, the lookup of a user who is not a member.
fn is_user_route(url: &str) -> bool {
    let path = route(url);
    path.rfind("/users/")
        .is_some_and(|i| is_id(&path[i + "/users/".len()..]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MEMBER: &str = "https://discord.com/api/v10/guilds/111/members/222";

    #[test]
    fn member_waits_are_per_guild_and_short_ones_are_ignored() {
        let limits = DiscordRateLimits::new(Duration::from_secs(5));
        limits.record_wait(MEMBER, Duration::from_secs(1), false);
        assert_eq!(
            limits.member_wait(111),
            None,
            "pacing is serenity's to sit out"
        );
        limits.record_wait(MEMBER, Duration::from_secs(30), false);
        assert!(limits.member_wait(111).unwrap() > Duration::from_secs(29));
        assert_eq!(limits.member_wait(333), None, "other guilds are not held");
        assert_eq!(limits.user_wait(), None);
        assert_eq!(limits.global_wait(), None);
    }

    #[test]
    fn a_user_route_wait_holds_user_lookups_only() {
        let limits = DiscordRateLimits::new(Duration::from_secs(5));
        limits.record_wait(
            "https://discord.com/api/v10/users/222",
            Duration::from_secs(60),
            false,
        );
        assert!(limits.user_wait().unwrap() > Duration::from_secs(59));
        assert_eq!(limits.member_wait(111), None);
        assert_eq!(limits.global_wait(), None);
    }

    #[test]
    fn other_routes_do_not_hold_lookups() {
        let limits = DiscordRateLimits::new(Duration::from_secs(5));
        for url in [
            "https://discord.com/api/v10/channels/5/messages",
            "https://discord.com/api/v10/users/@me/guilds",
            "https://discord.com/api/v10/users/@me",
            "https://discord.com/api/v10/guilds/111/members/222/roles/333",
            "https://discord.com/api/v10/guilds/111/members/search?query=a",
            "https://discord.com/api/v10/guilds/111/members/@me",
            "https://discord.com/api/v10/guilds/111/members",
        ] {
            limits.record_wait(url, Duration::from_secs(60), false);
            assert_eq!(limits.member_wait(111), None, "{url}");
            assert_eq!(limits.user_wait(), None, "{url}");
            assert_eq!(limits.global_wait(), None, "{url}");
        }
    }

    #[test]
    fn a_global_limit_is_kept_apart() {
        let limits = DiscordRateLimits::new(Duration::from_secs(5));
        limits.record_wait(MEMBER, Duration::from_secs(10), true);
        assert!(limits.global_wait().is_some());
        assert_eq!(limits.member_wait(111), None);
    }

    #[test]
    fn routes() {
        assert_eq!(member_route_guild(MEMBER), Some(111));
        assert_eq!(
            member_route_guild("https://discord.com/api/v10/guilds/42/members/7?x=1"),
            Some(42)
        );
        assert_eq!(
            member_route_guild("https://discord.com/api/v10/guilds/42/roles"),
            None
        );
        assert_eq!(member_route_guild("/users/7"), None);
        assert!(is_user_route("https://discord.com/api/v10/users/7"));
        assert!(!is_user_route("https://discord.com/api/v10/users/"));
    }
}
