//! Where identities come from when the database cache cannot answer: Discord, through serenity.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use serenity::{
    http::{Http, HttpError},
    model::id::{GuildId, UserId},
};

use super::DiscordRateLimits;

/// A Discord user as seen in one guild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscordIdentity {
    /// The user.
    pub user_id: u64,
    /// Unique username.
    pub username: String,
    /// Global display name.
    pub global_name: Option<String>,
    /// Guild nickname (only while a member).
    pub nick: Option<String>,
    /// Hash of the user's avatar.
    pub user_avatar: Option<String>,
    /// Hash of the guild-specific avatar (only while a member).
    pub member_avatar: Option<String>,
    /// Legacy discriminator (`None` or 0 for new usernames).
    pub discriminator: Option<u16>,
    /// Banner URL, when the user has one.
    pub banner_url: Option<String>,
    /// Profile accent colour.
    pub accent_color: Option<i64>,
    /// When the user joined the guild (Unix seconds), while a member.
    pub joined_at: Option<i64>,
    /// Whether this came from the user's own profile (a user lookup), which is authoritative
    /// for `banner_url` and `accent_color`: `None` there means the user has none. A member
    /// lookup carries neither, so the stored values are kept.
    pub full_profile: bool,
}

/// Why a lookup gave no identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Discord does not know this user (Unknown User).
    NotFound,
    /// Discord asked us to slow down; `retry_after` when it was known.
    RateLimited {
        /// How long Discord asked us to wait.
        retry_after: Option<Duration>,
        /// Which lookups the limit holds, so the resolver holds no more than those.
        scope: RateLimitScope,
    },
    /// Discord failed, timed out or could not be reached.
    Unavailable(String),
}

/// Which lookups a rate limit holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitScope {
    /// This lookup's route only, and the source itself refuses lookups on it while the wait
    /// lasts (without asking Discord): the resolver holds nothing.
    Lookup,
    /// Every lookup in this guild.
    Guild,
    /// Every lookup: a global limit, or a 429 whose bucket is unknown.
    Global,
}

/// A source of Discord identities. The library ships one over serenity's HTTP client and, with
/// the `serenity-cache` feature, one that answers from a bot's gateway cache first.
#[async_trait]
pub trait IdentitySource: Send + Sync + 'static {
    /// Looks `user_id` up as seen in `guild_id`: the guild member when they are one (so their
    /// nickname and member avatar count), else the plain user.
    async fn fetch(&self, guild_id: u64, user_id: u64) -> Result<DiscordIdentity, FetchError>;

    /// The identity when the source has it at hand without a network call (a bot's gateway
    /// cache). The resolver asks this even while it backs off from Discord.
    fn fetch_local(&self, _guild_id: u64, _user_id: u64) -> Option<DiscordIdentity> {
        None
    }
}

/// Identities from Discord's REST API through serenity's [`Http`].
#[derive(Clone)]
pub struct SerenityHttpSource {
    http: Arc<Http>,
    limits: Option<Arc<DiscordRateLimits>>,
}

impl SerenityHttpSource {
    /// A source over the given client (a bot passes its own).
    pub fn new(http: Arc<Http>) -> Self {
        Self { http, limits: None }
    }

    /// Refuses lookups at once (`rate_limited`, with the wait) while serenity's rate limiter
    /// reports a long wait for them, instead of each lookup sitting it out until it times
    /// out. `limits` must be fed by the client's rate-limit callback.
    pub fn with_rate_limits(mut self, limits: Arc<DiscordRateLimits>) -> Self {
        self.limits = Some(limits);
        self
    }
}

enum Failure {
    Status(u16),
    Other(String),
}

fn classify(err: &serenity::Error) -> Failure {
    match err {
        serenity::Error::Http(HttpError::UnsuccessfulRequest(resp)) => {
            Failure::Status(resp.status_code.as_u16())
        }
        other => Failure::Other(other.to_string()),
    }
}

fn to_fetch_error(f: Failure) -> FetchError {
    match f {
        Failure::Status(404) => FetchError::NotFound,
        // serenity's error response drops the body's `retry_after`; the resolver then backs off
        // for its configured time. With serenity's own rate limiter (on in production) a 429
        // never gets here: the limiter waits instead, and reports the wait to
        // `DiscordRateLimits`. Its bucket is unknown (the response's `global` is dropped too):
        // back off everything.
        Failure::Status(429) => FetchError::RateLimited {
            retry_after: None,
            scope: RateLimitScope::Global,
        },
        Failure::Status(s) => FetchError::Unavailable(format!("Discord answered HTTP {s}")),
        Failure::Other(e) => FetchError::Unavailable(e),
    }
}

/// Converts a serenity user (and member data) into an identity.
pub fn identity_from_user(
    user: &serenity::model::user::User,
    nick: Option<String>,
    member_avatar: Option<String>,
    joined_at: Option<i64>,
) -> DiscordIdentity {
    DiscordIdentity {
        user_id: user.id.get(),
        username: user.name.clone(),
        global_name: user.global_name.clone(),
        nick,
        user_avatar: user.avatar.map(|h| h.to_string()),
        member_avatar,
        discriminator: user.discriminator.map(|d| d.get()),
        banner_url: user.banner.map(|h| {
            let ext = if h.is_animated() { "gif" } else { "png" };
            format!(
                "{}/banners/{}/{h}.{ext}?size=600",
                super::avatar::CDN,
                user.id
            )
        }),
        accent_color: user.accent_colour.map(|c| i64::from(c.0)),
        joined_at,
        full_profile: false,
    }
}

#[async_trait]
impl IdentitySource for SerenityHttpSource {
    async fn fetch(&self, guild_id: u64, user_id: u64) -> Result<DiscordIdentity, FetchError> {
        let limits = self.limits.as_deref();
        let held = |wait: Option<Duration>, scope| {
            wait.map(|wait| FetchError::RateLimited {
                retry_after: Some(wait),
                scope,
            })
        };
        if let Some(err) = limits.and_then(|l| {
            held(l.global_wait(), RateLimitScope::Global)
                .or_else(|| held(l.member_wait(guild_id), RateLimitScope::Guild))
        }) {
            return Err(err);
        }
        let (g, u) = (GuildId::new(guild_id.max(1)), UserId::new(user_id.max(1)));
        match self.http.get_member(g, u).await {
            Ok(m) => {
                return Ok(identity_from_user(
                    &m.user,
                    m.nick.clone(),
                    m.avatar.map(|h| h.to_string()),
                    m.joined_at.map(|t| t.unix_timestamp()),
                ));
            }
            Err(e) => match classify(&e) {
                // Not (or no longer) a member, or the bot cannot see the guild: the user may
                // still exist.
                Failure::Status(404 | 403) => {}
                other => return Err(to_fetch_error(other)),
            },
        }
        // Members of every guild still resolve while the user route is held.
        if let Some(err) = limits.and_then(|l| held(l.user_wait(), RateLimitScope::Lookup)) {
            return Err(err);
        }
        match self.http.get_user(u).await {
            Ok(user) => Ok(DiscordIdentity {
                full_profile: true,
                ..identity_from_user(&user, None, None, None)
            }),
            Err(e) => Err(to_fetch_error(classify(&e))),
        }
    }
}

/// Answers from a bot's serenity gateway cache when the member is in it (no HTTP call), and
/// from another source otherwise.
#[cfg(feature = "serenity-cache")]
pub struct SerenityCacheSource<S> {
    cache: Arc<serenity::cache::Cache>,
    fallback: S,
}

#[cfg(feature = "serenity-cache")]
impl<S: IdentitySource> SerenityCacheSource<S> {
    /// Looks in `cache` first, then asks `fallback`.
    pub fn new(cache: Arc<serenity::cache::Cache>, fallback: S) -> Self {
        Self { cache, fallback }
    }
}

#[cfg(feature = "serenity-cache")]
#[async_trait]
impl<S: IdentitySource> IdentitySource for SerenityCacheSource<S> {
    async fn fetch(&self, guild_id: u64, user_id: u64) -> Result<DiscordIdentity, FetchError> {
        match self.fetch_local(guild_id, user_id) {
            Some(identity) => Ok(identity),
            None => self.fallback.fetch(guild_id, user_id).await,
        }
    }

    fn fetch_local(&self, guild_id: u64, user_id: u64) -> Option<DiscordIdentity> {
        let cached = self
            .cache
            .guild(GuildId::new(guild_id.max(1)))
            .and_then(|guild| {
                let m = guild.members.get(&UserId::new(user_id.max(1)))?;
                Some(identity_from_user(
                    &m.user,
                    m.nick.clone(),
                    m.avatar.map(|h| h.to_string()),
                    m.joined_at.map(|t| t.unix_timestamp()),
                ))
            });
        cached.or_else(|| self.fallback.fetch_local(guild_id, user_id))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serenity::http::HttpBuilder;

    use super::*;

    #[tokio::test]
    async fn a_reported_wait_refuses_lookups_without_asking_discord() {
        // Nothing listens on port 9: a lookup that asks Discord fails as unavailable.
        let http = Arc::new(
            HttpBuilder::new("t")
                .proxy("http://127.0.0.1:9")
                .ratelimiter_disabled(true)
                .build(),
        );
        let limits = Arc::new(DiscordRateLimits::new(Duration::from_secs(5)));
        let source = SerenityHttpSource::new(http).with_rate_limits(limits.clone());
        assert!(matches!(
            source
                .fetch(111_111_111_111_111_111, 222_222_222_222_222_222)
                .await,
            Err(FetchError::Unavailable(_))
        ));
        limits.record_wait(
            "https://discord.com/api/v10/guilds/111111111111111111/members/222222222222222222",
            Duration::from_secs(30),
            false,
        );
        match source
            .fetch(111_111_111_111_111_111, 222_222_222_222_222_222)
            .await
        {
            Err(FetchError::RateLimited {
                retry_after: Some(wait),
                scope: RateLimitScope::Guild,
            }) => assert!(wait > Duration::from_secs(29), "{wait:?}"),
            other => panic!("expected rate_limited, got {other:?}"),
        }
    }
}
