//! Resolving user ids to identities: the database cache first, Discord for the rest, and
//! never a failed request because of Discord.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::{StreamExt as _, stream};
use poem_openapi::{Enum, Object};
use sea_orm::DatabaseConnection;
use serde::Serialize;
use tokio::{
    sync::{OnceCell, Semaphore},
    time::Instant,
};

use super::{
    avatar,
    cache::{self, CachedIdentity},
    holds::Holds,
    memory::Lru,
    source::{DiscordIdentity, FetchError, IdentitySource, RateLimitScope},
};
use crate::{
    clock::Clock, error::ApiError, payload::Warning, settings::ApiSettings, snowflake::Snowflake,
};

/// Most ids one resolution accepts after removing duplicates.
pub const MAX_IDS: usize = 100;

/// Where an identity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum IdentityOrigin {
    /// A `user_cache` row younger than the cache TTL.
    Cache,
    /// Fetched from Discord for this request.
    Discord,
    /// An older `user_cache` row, served because Discord could not answer.
    Stale,
    /// A placeholder (default avatar, readable name): Discord does not know the user or could
    /// not answer and nothing was cached.
    Fallback,
}

/// A resolved identity.
#[derive(Debug, Clone, Object, Serialize, PartialEq, Eq)]
pub struct ResolvedUser {
    /// The user id (snowflake).
    pub id: String,
    /// Unique username.
    pub username: String,
    /// Global display name.
    #[oai(nullable)]
    pub global_name: Option<String>,
    /// Name to show: guild nickname, else global name, else username.
    pub display_name: String,
    /// Avatar URL: the guild member avatar, else the user avatar, else Discord's default.
    pub avatar_url: String,
    /// Hash of the avatar in `avatar_url`; null for a default avatar.
    #[oai(nullable)]
    pub avatar_hash: Option<String>,
    /// Where this identity came from.
    pub source: IdentityOrigin,
}

/// Identities in request order plus warnings about those that could not be fully resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    /// One entry per distinct id, in request order.
    pub users: Vec<ResolvedUser>,
    /// One entry per id that is stale or a fallback.
    pub warnings: Vec<Warning>,
    /// When every entry came from a fresh cache row: the Unix time the first of them expires,
    /// until which the same ids resolve to the same answer.
    pub fresh_until: Option<i64>,
}

type Key = (u64, u64);
/// What a lookup gave: the row now in `user_cache` and where it came from.
type Outcome = Result<(CachedIdentity, IdentityOrigin), FetchError>;

/// Resolves ids through the `user_cache` table, a negative cache and an [`IdentitySource`].
pub struct IdentityResolver {
    db: DatabaseConnection,
    source: Option<Arc<dyn IdentitySource>>,
    clock: Arc<dyn Clock>,
    ttl_secs: i64,
    negative_ttl_secs: i64,
    timeout: Duration,
    backoff_for: Duration,
    concurrency: usize,
    permits: Semaphore,
    negative: Mutex<HashMap<Key, i64>>,
    inflight: Mutex<HashMap<Key, Arc<OnceCell<Outcome>>>>,
    /// Lookups held after a rate limit the source could not hold itself.
    backoff: Mutex<Holds>,
    /// Copies of `user_cache` rows this process read or wrote: fresh ones answer without a
    /// database round trip.
    hot: Lru<Key, CachedIdentity>,
}

/// Identities kept in memory (a few hundred bytes each).
const HOT_CAPACITY: usize = 50_000;

/// Bound on the negative cache; expired entries are swept when it is reached.
const MAX_NEGATIVE: usize = 100_000;

fn fallback(id: &Snowflake) -> ResolvedUser {
    let s = id.as_str();
    let tail = &s[s.len().saturating_sub(4)..];
    ResolvedUser {
        id: s.to_owned(),
        username: format!("unknown-user-{tail}"),
        global_name: None,
        display_name: format!("Unknown user {tail}"),
        avatar_url: avatar::default_avatar_url(id.as_u64(), None),
        avatar_hash: None,
        source: IdentityOrigin::Fallback,
    }
}

fn from_cached(c: &CachedIdentity, origin: IdentityOrigin) -> ResolvedUser {
    ResolvedUser {
        id: c.user_id.clone(),
        username: c.username.clone(),
        global_name: c.global_name.clone(),
        display_name: c
            .display_name
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| avatar::display_name(None, c.global_name.as_deref(), &c.username)),
        avatar_url: c.avatar_url.clone(),
        avatar_hash: c.avatar_hash.clone(),
        source: origin,
    }
}

fn warning(id: &Snowflake, code: &str, message: impl Into<String>) -> Warning {
    Warning {
        id: id.to_string(),
        code: code.to_owned(),
        message: message.into(),
    }
}

impl IdentityResolver {
    /// A resolver over `db`, asking `source` (when there is one) for what the cache lacks.
    pub fn new(
        db: DatabaseConnection,
        source: Option<Arc<dyn IdentitySource>>,
        clock: Arc<dyn Clock>,
        settings: &ApiSettings,
    ) -> Self {
        let concurrency = settings.discord_concurrency.max(1);
        Self {
            db,
            source,
            clock,
            ttl_secs: i64::try_from(settings.user_cache_ttl_secs).unwrap_or(i64::MAX),
            negative_ttl_secs: i64::try_from(settings.negative_cache_ttl_secs).unwrap_or(i64::MAX),
            timeout: settings.discord_timeout,
            backoff_for: settings.discord_backoff,
            concurrency,
            permits: Semaphore::new(concurrency),
            negative: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            backoff: Mutex::new(Holds::default()),
            hot: Lru::new(HOT_CAPACITY),
        }
    }

    /// Resolves `ids` (duplicates are dropped, order kept; at most [`MAX_IDS`] distinct) as seen
    /// in `guild_id`. Discord trouble never fails this: unresolved ids get their stale row or a
    /// fallback identity and a warning. The errors are a database failure and more than
    /// [`MAX_IDS`] distinct ids (a 400).
    pub async fn resolve_users(
        &self,
        guild_id: &Snowflake,
        ids: &[Snowflake],
    ) -> Result<Resolution, ApiError> {
        self.resolve_users_by(guild_id, ids, self.lookup_deadline())
            .await
    }

    /// Whether a Discord client is configured to ask (without one, only cached identities
    /// are known, and a missing one stays missing).
    pub fn asks_discord(&self) -> bool {
        self.source.is_some()
    }

    /// When Discord lookups that start now must be done: the Discord timeout from now.
    pub fn lookup_deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    /// [`resolve_users`](Self::resolve_users) with Discord lookups cut off at `deadline`, so
    /// that several batches of one reply share one wait.
    pub async fn resolve_users_by(
        &self,
        guild_id: &Snowflake,
        ids: &[Snowflake],
        deadline: Instant,
    ) -> Result<Resolution, ApiError> {
        let mut distinct: Vec<&Snowflake> = Vec::with_capacity(ids.len());
        for id in ids {
            if !distinct.contains(&id) {
                distinct.push(id);
            }
        }
        if distinct.len() > MAX_IDS {
            return Err(ApiError::invalid(format!(
                "ids accepts at most {MAX_IDS} distinct ids, got {}",
                distinct.len()
            )));
        }
        let now = self.clock.now_s();
        let g = guild_id.as_u64();
        let mut rows: HashMap<String, CachedIdentity> = HashMap::with_capacity(distinct.len());
        let mut cold: Vec<&str> = Vec::new();
        for id in &distinct {
            match self.hot.get(&(g, id.as_u64())) {
                Some(row) if self.is_fresh(&row, now) => {
                    rows.insert(row.user_id.clone(), row);
                }
                _ => cold.push(id.as_str()),
            }
        }
        if !cold.is_empty() {
            for (user_id, row) in cache::load(&self.db, guild_id.as_str(), &cold).await? {
                if let Ok(u) = user_id.parse::<u64>() {
                    self.hot.put((g, u), row.clone());
                }
                rows.insert(user_id, row);
            }
        }

        let mut slots: Vec<Option<(ResolvedUser, Option<Warning>)>> = vec![None; distinct.len()];
        let mut misses: Vec<usize> = Vec::new();
        for (i, id) in distinct.iter().enumerate() {
            match rows.get(id.as_str()) {
                Some(row) if self.is_fresh(row, now) => {
                    slots[i] = Some((from_cached(row, IdentityOrigin::Cache), None));
                }
                _ if self.negatively_cached((g, id.as_u64()), now) => {
                    slots[i] = Some((
                        fallback(id),
                        Some(warning(id, "not_found", "Discord does not know this user")),
                    ));
                }
                _ => misses.push(i),
            }
        }

        let fetched: Vec<(usize, Option<Outcome>)> = stream::iter(misses)
            .map(|i| {
                let id = distinct[i];
                async move {
                    let outcome = match &self.source {
                        None => None,
                        // A lookup queued behind others until the reply's deadline passed
                        // would be dropped unanswered: Discord is not asked at all.
                        Some(_) if Instant::now() >= deadline => {
                            Some(Err(FetchError::Unavailable(format!(
                                "not asked: the reply's {} ms wait for Discord was over",
                                self.timeout.as_millis()
                            ))))
                        }
                        Some(source) => Some(
                            tokio::time::timeout_at(
                                deadline,
                                self.fetch_shared(source, g, id.as_u64()),
                            )
                            .await
                            .unwrap_or_else(|_| Err(self.timed_out())),
                        ),
                    };
                    (i, outcome)
                }
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;

        for (i, outcome) in fetched {
            let id = distinct[i];
            let stale = rows.get(id.as_str());
            let stale_or_fallback = || match stale {
                Some(row) => from_cached(row, IdentityOrigin::Stale),
                None => fallback(id),
            };
            slots[i] = Some(match outcome {
                Some(Ok((row, origin))) => (from_cached(&row, origin), None),
                Some(Err(FetchError::NotFound)) => (
                    fallback(id),
                    Some(warning(id, "not_found", "Discord does not know this user")),
                ),
                Some(Err(FetchError::RateLimited { .. })) => (
                    stale_or_fallback(),
                    Some(warning(
                        id,
                        "rate_limited",
                        "Discord is rate limiting lookups; try again shortly",
                    )),
                ),
                Some(Err(FetchError::Unavailable(reason))) => (
                    stale_or_fallback(),
                    Some(warning(
                        id,
                        "discord_unavailable",
                        format!("Discord could not be asked: {reason}"),
                    )),
                ),
                None => (
                    stale_or_fallback(),
                    Some(warning(
                        id,
                        "discord_unavailable",
                        "no Discord client is configured (DISCORD_TOKEN)",
                    )),
                ),
            });
        }

        let mut out = Resolution::default();
        let mut fresh_until = Some(i64::MAX);
        for (user, warn) in slots.iter().flatten() {
            fresh_until = match (fresh_until, user.source, rows.get(&user.id)) {
                (Some(f), IdentityOrigin::Cache, Some(row)) => {
                    Some(f.min(row.updated_at_s.saturating_add(self.ttl_secs)))
                }
                _ => None,
            };
            if warn.is_some() {
                fresh_until = None;
            }
        }
        out.fresh_until = fresh_until;
        for (user, warn) in slots.into_iter().flatten() {
            out.users.push(user);
            out.warnings.extend(warn);
        }
        Ok(out)
    }

    /// Whether `row` is younger than the TTL. Saturating: a row whose time could not be read
    /// (`i64::MIN`) is stale, never "fresh forever" by a wrapped subtraction.
    fn is_fresh(&self, row: &CachedIdentity, now: i64) -> bool {
        now.saturating_sub(row.updated_at_s) < self.ttl_secs
    }

    fn negatively_cached(&self, key: Key, now: i64) -> bool {
        let map = self.negative.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&key).is_some_and(|&until| now < until)
    }

    fn remember_not_found(&self, key: Key) {
        let now = self.clock.now_s();
        let mut map = self.negative.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_NEGATIVE {
            map.retain(|_, until| *until > now);
            if map.len() >= MAX_NEGATIVE {
                map.clear();
            }
        }
        map.insert(key, now.saturating_add(self.negative_ttl_secs));
    }

    /// The error of a lookup Discord did not answer in time.
    fn timed_out(&self) -> FetchError {
        FetchError::Unavailable(format!(
            "Discord did not answer within {} ms",
            self.timeout.as_millis()
        ))
    }

    /// One Discord lookup per (guild, user) at a time: concurrent callers share its outcome.
    async fn fetch_shared(&self, source: &Arc<dyn IdentitySource>, g: u64, u: u64) -> Outcome {
        let key = (g, u);
        let cell = {
            let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key)
                .or_insert_with(|| Arc::new(OnceCell::new()))
                .clone()
        };
        // Removes the entry however this call ends (a timed-out caller drops the future). The
        // guard holds this caller's only reference, so the count of references tells whether
        // other callers still wait on the lookup.
        let guard = InflightGuard {
            map: &self.inflight,
            key,
            cell,
        };
        guard
            .cell
            .get_or_init(|| self.fetch_fresh(source, g, u))
            .await
            .clone()
    }

    async fn fetch_fresh(&self, source: &Arc<dyn IdentitySource>, g: u64, u: u64) -> Outcome {
        // A caller that missed the cache just before another one's lookup finished finds the
        // fresh row here instead of asking Discord again.
        let now = self.clock.now_s();
        let id = u.to_string();
        if let Ok(rows) = cache::load(&self.db, &g.to_string(), &[id.as_str()]).await
            && let Some(row) = rows.get(&id)
            && self.is_fresh(row, now)
        {
            return Ok((row.clone(), IdentityOrigin::Cache));
        }
        if self.negatively_cached((g, u), now) {
            return Err(FetchError::NotFound);
        }
        // A member in the bot's gateway cache needs no request, rate limited or not.
        if let Some(identity) = source.fetch_local(g, u) {
            return Ok((self.store(g, u, &identity).await, IdentityOrigin::Discord));
        }
        let held = self
            .backoff
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .left(g);
        if let Some(wait) = held {
            return Err(FetchError::RateLimited {
                retry_after: Some(wait),
                scope: RateLimitScope::Lookup,
            });
        }
        let Ok(_permit) = self.permits.acquire().await else {
            return Err(FetchError::Unavailable("resolver is shutting down".into()));
        };
        let fetched = tokio::time::timeout(self.timeout, source.fetch(g, u))
            .await
            .unwrap_or_else(|_| Err(self.timed_out()));
        match &fetched {
            Err(FetchError::NotFound) => self.remember_not_found((g, u)),
            // The source holds that route itself: nothing backs off here.
            Err(FetchError::RateLimited {
                scope: RateLimitScope::Lookup,
                ..
            }) => tracing::debug!(guild_id = g, user_id = u, "Discord lookup route held"),
            Err(FetchError::RateLimited { retry_after, scope }) => {
                let wait = retry_after.unwrap_or(self.backoff_for);
                tracing::warn!(
                    wait_ms = wait.as_millis() as u64,
                    ?scope,
                    guild_id = g,
                    "Discord rate limited identity lookups; backing off"
                );
                let mut backoff = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
                match scope {
                    RateLimitScope::Guild => backoff.hold_guild(g, wait),
                    _ => backoff.hold_all(wait),
                }
            }
            Err(FetchError::Unavailable(reason)) => {
                tracing::warn!(%reason, guild_id = g, user_id = u, "Discord lookup failed");
            }
            Ok(_) => {}
        }
        let identity = fetched?;
        Ok((self.store(g, u, &identity).await, IdentityOrigin::Discord))
    }

    /// Writes a looked-up identity to `user_cache` (and memory) and gives the row.
    async fn store(&self, g: u64, u: u64, identity: &DiscordIdentity) -> CachedIdentity {
        let now = self.clock.now_s();
        match cache::upsert(&self.db, g, identity, now).await {
            Ok(row) => {
                self.hot.put((g, u), row.clone());
                row
            }
            Err(e) => {
                // The answer is still good; only the next request pays for the failed write.
                tracing::warn!(error = %e, user_id = u, "could not write user_cache");
                cache::row_for(g, identity, now)
            }
        }
    }
}

struct InflightGuard<'a> {
    map: &'a Mutex<HashMap<Key, Arc<OnceCell<Outcome>>>>,
    key: Key,
    cell: Arc<OnceCell<Outcome>>,
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        // A finished lookup is forgotten; an unfinished one stays while others still wait on it
        // (references: the map's and this guard's, plus one per other waiting caller).
        let abandoned = Arc::strong_count(&self.cell) <= 2;
        if (self.cell.initialized() || abandoned)
            && map
                .get(&self.key)
                .is_some_and(|c| Arc::ptr_eq(c, &self.cell))
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use async_trait::async_trait;

    use super::*;
    use crate::{clock::ManualClock, db};

    /// Discord that never answers, counting the lookups it was asked.
    #[derive(Default)]
    struct Silent {
        asked: std::sync::atomic::AtomicUsize,
    }

    #[async_trait]
    impl IdentitySource for Silent {
        async fn fetch(
            &self,
            _: u64,
            _: u64,
        ) -> Result<crate::identity::DiscordIdentity, FetchError> {
            self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::future::pending().await
        }
    }

    async fn user_cache_db() -> DatabaseConnection {
        let db = db::connect("sqlite::memory:", 1).await.unwrap();
        db::execute(
            &db,
            "CREATE TABLE user_cache (user_id TEXT NOT NULL, guild_id TEXT NOT NULL, \
             username TEXT NOT NULL, global_name TEXT, display_name TEXT, avatar_hash TEXT, \
             avatar_url TEXT NOT NULL, updated_at TEXT NOT NULL, banner_url TEXT, \
             accent_color INTEGER, joined_at INTEGER, PRIMARY KEY (user_id, guild_id))",
            vec![],
        )
        .await
        .unwrap();
        db
    }

    fn identity(user_id: u64) -> DiscordIdentity {
        DiscordIdentity {
            user_id,
            username: format!("user{user_id}"),
            global_name: None,
            nick: None,
            user_avatar: None,
            member_avatar: None,
            discriminator: None,
            banner_url: None,
            accent_color: None,
            joined_at: None,
            full_profile: false,
        }
    }

    /// Discord rate limiting one guild's lookups (with the given scope); a gateway cache holding
    /// `local`; counts the lookups that reach it.
    struct Limited {
        guild: u64,
        scope: RateLimitScope,
        local: Option<u64>,
        calls: Mutex<Vec<(u64, u64)>>,
    }

    #[async_trait]
    impl IdentitySource for Limited {
        async fn fetch(&self, g: u64, u: u64) -> Result<DiscordIdentity, FetchError> {
            self.calls.lock().unwrap().push((g, u));
            if g == self.guild {
                return Err(FetchError::RateLimited {
                    retry_after: Some(Duration::from_secs(60)),
                    scope: self.scope,
                });
            }
            Ok(identity(u))
        }

        fn fetch_local(&self, _: u64, u: u64) -> Option<DiscordIdentity> {
            (Some(u) == self.local).then(|| identity(u))
        }
    }

    const A: &str = "111111111111111111";
    const B: &str = "222222222222222222";

    fn ids(from: u64, n: u64) -> Vec<Snowflake> {
        (from..from + n)
            .map(|i| Snowflake::parse("ids", &i.to_string()).unwrap())
            .collect()
    }

    async fn limited_resolver(
        scope: RateLimitScope,
        local: Option<u64>,
    ) -> (IdentityResolver, Arc<Limited>) {
        let source = Arc::new(Limited {
            guild: A.parse().unwrap(),
            scope,
            local,
            calls: Mutex::new(Vec::new()),
        });
        let resolver = IdentityResolver::new(
            user_cache_db().await,
            Some(source.clone()),
            Arc::new(ManualClock::new(1_761_004_800)),
            &ApiSettings::default(),
        );
        (resolver, source)
    }

    #[tokio::test]
    async fn a_guild_rate_limit_holds_that_guild_only() {
        let (resolver, source) = limited_resolver(RateLimitScope::Guild, None).await;
        let (a, b) = (
            Snowflake::parse("guild_id", A).unwrap(),
            Snowflake::parse("guild_id", B).unwrap(),
        );
        let first = resolver
            .resolve_users(&a, &ids(697_169_405_422_862_417, 1))
            .await
            .unwrap();
        assert_eq!(first.warnings[0].code, "rate_limited");
        let held = resolver
            .resolve_users(&a, &ids(697_169_405_422_862_418, 3))
            .await
            .unwrap();
        assert!(held.warnings.iter().all(|w| w.code == "rate_limited"));
        assert_eq!(source.calls.lock().unwrap().len(), 1, "guild A is held");
        let other = resolver
            .resolve_users(&b, &ids(697_169_405_422_862_417, 3))
            .await
            .unwrap();
        assert!(other.warnings.is_empty(), "{other:?}");
        assert!(
            other
                .users
                .iter()
                .all(|u| u.source == IdentityOrigin::Discord)
        );
        assert_eq!(source.calls.lock().unwrap().len(), 4, "guild B is asked");
    }

    #[tokio::test]
    async fn a_lookup_scoped_limit_holds_nothing_and_a_global_one_everything() {
        let (a, b) = (
            Snowflake::parse("guild_id", A).unwrap(),
            Snowflake::parse("guild_id", B).unwrap(),
        );
        let (resolver, source) = limited_resolver(RateLimitScope::Lookup, None).await;
        for _ in 0..2 {
            resolver
                .resolve_users(&a, &ids(697_169_405_422_862_417, 1))
                .await
                .unwrap();
        }
        assert_eq!(source.calls.lock().unwrap().len(), 2, "the source decides");

        let (resolver, source) = limited_resolver(RateLimitScope::Global, None).await;
        resolver
            .resolve_users(&a, &ids(697_169_405_422_862_417, 1))
            .await
            .unwrap();
        let other = resolver
            .resolve_users(&b, &ids(697_169_405_422_862_417, 1))
            .await
            .unwrap();
        assert_eq!(other.warnings[0].code, "rate_limited");
        assert_eq!(source.calls.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn the_gateway_cache_answers_while_backing_off() {
        let cached = 697_169_405_422_862_499;
        let (resolver, source) = limited_resolver(RateLimitScope::Global, Some(cached)).await;
        let a = Snowflake::parse("guild_id", A).unwrap();
        resolver
            .resolve_users(&a, &ids(697_169_405_422_862_417, 1))
            .await
            .unwrap();
        let answered = resolver.resolve_users(&a, &ids(cached, 1)).await.unwrap();
        assert!(answered.warnings.is_empty(), "{answered:?}");
        assert_eq!(answered.users[0].username, format!("user{cached}"));
        assert_eq!(source.calls.lock().unwrap().len(), 1, "no request for it");
    }

    #[tokio::test]
    async fn a_lookup_that_times_out_leaves_nothing_in_flight() {
        let db = user_cache_db().await;
        let settings = ApiSettings {
            discord_timeout: Duration::from_millis(50),
            ..ApiSettings::default()
        };
        let resolver = IdentityResolver::new(
            db,
            Some(Arc::new(Silent::default())),
            Arc::new(ManualClock::new(1_761_004_800)),
            &settings,
        );
        let guild = Snowflake::parse("guild_id", "111111111111111111").unwrap();
        let ids: Vec<Snowflake> = (0..20)
            .map(|i| {
                Snowflake::parse("ids", &(697_169_405_422_862_417u64 + i).to_string()).unwrap()
            })
            .collect();
        let resolution = resolver.resolve_users(&guild, &ids).await.unwrap();
        assert_eq!(resolution.warnings.len(), 20);
        assert!(
            resolver.inflight.lock().unwrap().is_empty(),
            "timed-out lookups (running and queued) must not stay in the in-flight map"
        );
    }

    /// One `?expand=identity` reply of 150 moderators takes two resolver batches; they share
    /// one wait for Discord, so when it never answers, only the lookups started before that
    /// deadline (one round of `discord_concurrency`) ever reach it, not a round per batch.
    #[tokio::test]
    async fn batches_of_one_reply_share_one_deadline() {
        let settings = ApiSettings {
            // Long enough for the first round to start on a loaded machine.
            discord_timeout: Duration::from_millis(1_000),
            ..ApiSettings::default()
        };
        let source = Arc::new(Silent::default());
        let resolver = IdentityResolver::new(
            user_cache_db().await,
            Some(source.clone()),
            Arc::new(ManualClock::new(1_761_004_800)),
            &settings,
        );
        let guild = Snowflake::parse("guild_id", "111111111111111111").unwrap();
        let ids: Vec<String> = (0..150)
            .map(|i| (697_169_405_422_862_417u64 + i).to_string())
            .collect();
        let (shown, warnings) = crate::identity::expand::identities_for(
            &resolver,
            &guild,
            ids.iter().map(String::as_str),
        )
        .await;
        assert_eq!((shown.len(), warnings.len()), (150, 150));
        assert!(
            warnings.iter().all(|w| w.code == "discord_unavailable"),
            "{warnings:?}"
        );
        let asked = source.asked.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            (1..=settings.discord_concurrency).contains(&asked),
            "{asked} lookups reached Discord; at most one round of {} may start before the deadline",
            settings.discord_concurrency
        );
    }

    /// A reply may be cached with the warnings that would come back on every request, and
    /// only with those.
    #[tokio::test]
    async fn only_lasting_warnings_let_a_reply_be_cached() {
        let settings = ApiSettings::default();
        let clock = Arc::new(ManualClock::new(1_761_004_800));
        let without = IdentityResolver::new(user_cache_db().await, None, clock.clone(), &settings);
        let with = IdentityResolver::new(
            user_cache_db().await,
            Some(Arc::new(Silent::default())),
            clock,
            &settings,
        );
        let id = Snowflake::parse("ids", "697169405422862417").unwrap();
        let of = |code: &str| vec![warning(&id, code, "")];
        let last = crate::identity::expand::warnings_last;
        for (code, without_client, with_client) in [
            ("not_found", true, true),
            ("invalid_id", true, true),
            ("discord_unavailable", true, false),
            ("rate_limited", false, false),
            ("lookup_failed", false, false),
        ] {
            assert_eq!(
                last(&without, &of(code)),
                without_client,
                "{code}, no client"
            );
            assert_eq!(last(&with, &of(code)), with_client, "{code}, a client");
        }
        assert!(last(&with, &[]));
    }
}
