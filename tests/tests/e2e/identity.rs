//! `GET /api/users/resolve` against a fake Discord.

use std::time::Duration;

use pawtropolis_api::ManualClock;
use pawtropolis_tests::{
    Backend, GUILD_A, GUILD_B, TestApp, backends,
    fake_discord::{FakeDiscord, FakeMember, FakeUser, Trouble},
};
use serde_json::Value;

const T0: i64 = 1_761_004_800;
// Discord image hashes are 32 hex digits, `a_` first when animated.
const USER_HASH: &str = "0123456789abcdef0123456789abcdef";
const MEMBER_HASH: &str = "fedcba9876543210fedcba9876543210";
const ANIMATED_HASH: &str = "a_00112233445566778899aabbccddeeff";
// Member with a nickname and a guild avatar.
const NICKED: &str = "697169405422862417";
// Member without nickname; animated user avatar.
const ANIMATED: &str = "697169405422862418";
// Legacy user (discriminator 1337), no avatar, not a member of the guild.
const LEGACY: &str = "697169405422862419";
// Unknown to Discord.
const GHOST: &str = "697169405422862420";
// Not a member; their profile has a banner and an accent colour.
const BANNERED: &str = "697169405422862421";

fn fake_users(fake: &FakeDiscord) {
    fake.add_user(
        NICKED,
        FakeUser {
            username: "watchthelight".into(),
            global_name: Some("Bash".into()),
            avatar: Some(USER_HASH.into()),
            discriminator: "0".into(),
            ..Default::default()
        },
    );
    fake.add_member(
        GUILD_A,
        NICKED,
        FakeMember {
            nick: Some("Head Mod".into()),
            avatar: Some(MEMBER_HASH.into()),
            roles: vec![],
        },
    );
    fake.add_user(
        ANIMATED,
        FakeUser {
            username: "sparkle".into(),
            global_name: None,
            avatar: Some(ANIMATED_HASH.into()),
            discriminator: "0".into(),
            ..Default::default()
        },
    );
    fake.add_member(GUILD_A, ANIMATED, FakeMember::default());
    fake.add_user(
        LEGACY,
        FakeUser {
            username: "oldtimer".into(),
            global_name: None,
            avatar: None,
            discriminator: "1337".into(),
            ..Default::default()
        },
    );
}

async fn start(backend: &Backend, extra: &[&str]) -> (TestApp, FakeDiscord, ManualClock, String) {
    let fake = FakeDiscord::start().await;
    fake_users(&fake);
    let clock = ManualClock::new(T0);
    let mut flags = vec![
        "--discord-token",
        "test-token",
        "--discord-api-base",
        fake.base.as_str(),
    ];
    flags.extend_from_slice(extra);
    let app = TestApp::spawn_with_clock(backend, &flags, clock.clone()).await;
    let token = app.token(&[GUILD_A]).await;
    (app, fake, clock, token)
}

async fn resolve(app: &TestApp, token: &str, ids: &str) -> (u16, Value) {
    app.get_json(
        &format!("/api/users/resolve?guild_id={GUILD_A}&ids={ids}"),
        token,
    )
    .await
}

fn user<'a>(body: &'a Value, id: &str) -> &'a Value {
    body["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == id)
        .unwrap()
}

#[tokio::test]
async fn miss_then_hit_then_expiry() {
    for backend in backends() {
        let (app, fake, clock, token) = start(&backend, &["--resolve-rate-per-min", "0"]).await;
        let resp = app
            .get(
                &format!("/api/users/resolve?guild_id={GUILD_A}&ids={NICKED}"),
                &token,
            )
            .await;
        assert!(
            !resp.headers().contains_key("x-ratelimit-limit")
                && !resp.headers().contains_key("x-ratelimit-remaining"),
            "no limit, no limit headers: {:?}",
            resp.headers()
        );
        let (s, body) = (resp.status().as_u16(), resp.json::<Value>().await.unwrap());
        assert_eq!(s, 200, "{body}");
        let u = user(&body, NICKED);
        assert_eq!(u["source"], "discord", "{body} calls={:?}", fake.calls());
        assert_eq!(u["username"], "watchthelight");
        assert_eq!(u["global_name"], "Bash");
        assert_eq!(u["display_name"], "Head Mod");
        assert_eq!(u["avatar_hash"], MEMBER_HASH);
        assert_eq!(
            u["avatar_url"],
            format!(
                "https://cdn.discordapp.com/guilds/{GUILD_A}/users/{NICKED}/avatars/{MEMBER_HASH}.png?size=128"
            )
        );
        assert_eq!(body["warnings"], serde_json::json!([]));
        assert_eq!(fake.calls_for(NICKED), 1);

        let (_, body) = resolve(&app, &token, NICKED).await;
        assert_eq!(user(&body, NICKED)["source"], "cache");
        assert_eq!(user(&body, NICKED)["display_name"], "Head Mod");
        assert_eq!(
            fake.calls_for(NICKED),
            1,
            "a fresh cache row costs no Discord call"
        );

        clock.advance(1799);
        let (_, body) = resolve(&app, &token, NICKED).await;
        assert_eq!(user(&body, NICKED)["source"], "cache");
        clock.advance(2);
        let (_, body) = resolve(&app, &token, NICKED).await;
        assert_eq!(
            user(&body, NICKED)["source"],
            "discord",
            "after 30 minutes the row is refreshed"
        );
        assert_eq!(fake.calls_for(NICKED), 2);
        app.finish().await;
    }
}

#[tokio::test]
async fn avatars_names_and_order() {
    for backend in backends() {
        let (app, _fake, _clock, token) = start(&backend, &["--resolve-rate-per-min", "0"]).await;
        let ids = format!("{LEGACY},{ANIMATED},{LEGACY},{GHOST},{NICKED},{ANIMATED}");
        let (s, body) = resolve(&app, &token, &ids).await;
        assert_eq!(s, 200, "{body}");
        let order: Vec<&str> = body["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap())
            .collect();
        assert_eq!(
            order,
            [LEGACY, ANIMATED, GHOST, NICKED],
            "distinct ids in request order"
        );

        let legacy = user(&body, LEGACY);
        assert_eq!(
            legacy["source"], "discord",
            "a user outside the guild still resolves"
        );
        assert_eq!(legacy["display_name"], "oldtimer");
        assert_eq!(
            legacy["avatar_url"], "https://cdn.discordapp.com/embed/avatars/2.png",
            "1337 % 5"
        );
        assert_eq!(legacy["avatar_hash"], Value::Null);

        let animated = user(&body, ANIMATED);
        assert_eq!(
            animated["avatar_url"],
            format!("https://cdn.discordapp.com/avatars/{ANIMATED}/{ANIMATED_HASH}.gif?size=128")
        );

        let ghost = user(&body, GHOST);
        assert_eq!(ghost["source"], "fallback");
        let ghost_id: u64 = GHOST.parse().unwrap();
        assert_eq!(
            ghost["avatar_url"],
            format!(
                "https://cdn.discordapp.com/embed/avatars/{}.png",
                (ghost_id >> 22) % 6
            )
        );
        assert!(
            ghost["display_name"].as_str().unwrap().contains("2420"),
            "{ghost}"
        );
        let warnings = body["warnings"].as_array().unwrap();
        assert_eq!(warnings.len(), 1, "{body}");
        assert_eq!(warnings[0]["id"], GHOST);
        assert_eq!(warnings[0]["code"], "not_found");
        app.finish().await;
    }
}

#[tokio::test]
async fn negative_cache_and_its_expiry() {
    for backend in backends() {
        let (app, fake, clock, token) = start(&backend, &["--resolve-rate-per-min", "0"]).await;
        let (_, body) = resolve(&app, &token, GHOST).await;
        assert_eq!(body["warnings"][0]["code"], "not_found");
        let first = fake.calls_for(GHOST);
        assert!(first >= 1);
        clock.advance(299);
        let (_, body) = resolve(&app, &token, GHOST).await;
        assert_eq!(body["warnings"][0]["code"], "not_found");
        assert_eq!(fake.calls_for(GHOST), first, "remembered for 5 minutes");
        clock.advance(2);
        resolve(&app, &token, GHOST).await;
        assert!(fake.calls_for(GHOST) > first, "asked again after 5 minutes");
        app.finish().await;
    }
}

#[tokio::test]
async fn concurrent_requests_share_one_discord_call() {
    for backend in backends() {
        let (app, fake, _clock, token) = start(&backend, &["--resolve-rate-per-min", "0"]).await;
        fake.set_trouble(NICKED, Trouble::Slow(Duration::from_millis(300)));
        let requests = (0..20).map(|_| resolve(&app, &token, NICKED));
        let replies = futures_util::future::join_all(requests).await;
        for (s, body) in &replies {
            assert_eq!(*s, 200);
            assert_eq!(user(body, NICKED)["display_name"], "Head Mod");
        }
        assert_eq!(
            fake.calls_for(NICKED),
            1,
            "single flight: {:?}",
            fake.calls()
        );
        app.finish().await;
    }
}

#[tokio::test]
async fn discord_trouble_never_fails_the_request() {
    for backend in backends() {
        let (app, fake, clock, token) = start(
            &backend,
            &["--resolve-rate-per-min", "0", "--discord-timeout-ms", "500"],
        )
        .await;
        // A cached row for NICKED, then let it go stale.
        resolve(&app, &token, NICKED).await;
        clock.advance(3600);

        // Down: 5xx.
        fake.set_default_trouble(Trouble::Status(503));
        let (s, body) = resolve(&app, &token, &format!("{NICKED},{ANIMATED}")).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(user(&body, NICKED)["source"], "stale");
        assert_eq!(user(&body, NICKED)["display_name"], "Head Mod");
        assert_eq!(user(&body, ANIMATED)["source"], "fallback");
        let codes: Vec<&str> = body["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, ["discord_unavailable", "discord_unavailable"]);

        // Slower than the timeout: the fake would answer in the end (no warnings), so
        // `discord_unavailable` for each id shows the timeout cut the lookups off. That they
        // share one wait is the resolver's unit test `batches_of_one_reply_share_one_deadline`.
        fake.set_default_trouble(Trouble::Slow(Duration::from_secs(3600)));
        let (s, body) = resolve(&app, &token, &format!("{NICKED},{ANIMATED},{LEGACY}")).await;
        assert_eq!(s, 200);
        let codes: Vec<&str> = body["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, ["discord_unavailable"; 3], "{body}");

        // 429: a rate_limited warning, and no retry storm while backing off.
        fake.set_default_trouble(Trouble::RateLimited(30.0));
        fake.reset_calls();
        let (s, body) = resolve(&app, &token, LEGACY).await;
        assert_eq!(s, 200);
        assert_eq!(body["warnings"][0]["code"], "rate_limited");
        let after_429 = fake.calls().len();
        assert!(after_429 >= 1);
        for _ in 0..5 {
            let (_, body) = resolve(&app, &token, &format!("{LEGACY},{ANIMATED}")).await;
            assert_eq!(body["warnings"][0]["code"], "rate_limited");
        }
        assert_eq!(
            fake.calls().len(),
            after_429,
            "no Discord call while backing off"
        );
        app.finish().await;
    }
}

#[tokio::test]
async fn rate_limit_etag_and_validation() {
    for backend in backends() {
        // The budget refills on the wall clock, one request per 60/8 s: the test has 7.5 s
        // to spend it before a refill could change the figures (the default of 50 would
        // give it 1.2 s, too little on a loaded machine).
        let (app, _fake, _clock, token) = start(&backend, &["--resolve-rate-per-min", "8"]).await;
        let url = format!("/api/users/resolve?guild_id={GUILD_A}&ids={NICKED}");
        let resp = app.get(&url, &token).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-ratelimit-limit"], "8");
        assert_eq!(resp.headers()["x-ratelimit-remaining"], "7");
        assert_eq!(resp.headers()["cache-control"], "private, max-age=60");
        // The first answer came from Discord; the cached one that follows is the stable body.
        app.assert_revalidates(&url, &token, "private, max-age=60")
            .await;
        let resp = app.get(&url, &token).await;
        assert_eq!(resp.headers()["x-ratelimit-remaining"], "4");

        let (s, body) = app
            .get_json(
                &format!("/api/users/resolve?guild_id={GUILD_A}&ids={NICKED},12x"),
                &token,
            )
            .await;
        assert_eq!(s, 400);
        assert!(
            body["error"]["message"].as_str().unwrap().contains("12x"),
            "{body}"
        );
        let many: Vec<String> = (0..101u64)
            .map(|i| (100_000_000_000_000_000 + i).to_string())
            .collect();
        let (s, _) = app
            .get_json(
                &format!(
                    "/api/users/resolve?guild_id={GUILD_A}&ids={}",
                    many.join(",")
                ),
                &token,
            )
            .await;
        assert_eq!(s, 400);
        let (s, _) = app
            .get_json(&format!("/api/users/resolve?guild_id={GUILD_A}"), &token)
            .await;
        assert_eq!(s, 400);
        // A guild the caller may not read: refused before the request is counted, so that
        // nobody without access spends the server's budget.
        for _ in 0..20 {
            let resp = app
                .get(
                    &format!("/api/users/resolve?guild_id={GUILD_B}&ids={NICKED}"),
                    &token,
                )
                .await;
            assert_eq!(resp.status(), 403);
            assert!(!resp.headers().contains_key("x-ratelimit-remaining"));
        }

        // 7 requests so far; 1 more passes, the 9th is refused.
        for i in 0..1 {
            let resp = app.get(&url, &token).await;
            assert_eq!(resp.status(), 200, "request {}", i + 8);
        }
        let resp = app.get(&url, &token).await;
        assert_eq!(resp.status(), 429);
        let retry: u64 = resp.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=8).contains(&retry), "{retry}");
        assert_eq!(resp.headers()["x-ratelimit-remaining"], "0");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limited");
        app.finish().await;
    }
}

/// The bot writes `user_cache` too, with its own time formats and profile columns.
#[tokio::test]
async fn rows_the_bot_wrote_are_read_and_its_columns_kept() {
    for backend in backends() {
        let (app, fake, _clock, token) = start(&backend, &["--resolve-rate-per-min", "0"]).await;
        let insert = "INSERT INTO user_cache (user_id, guild_id, username, display_name, avatar_url, \
                      updated_at, banner_url, accent_color, joined_at) \
                      VALUES ($1, $2, $3, $3, 'https://cdn.discordapp.com/embed/avatars/0.png', $4, \
                      'https://cdn.discordapp.com/banners/x/b.png', 16711680, 1600000000)";
        // A minute before T0, in the bot's formats: fresh.
        app.tdb
            .exec(
                insert,
                vec![
                    NICKED.into(),
                    GUILD_A.into(),
                    "bot-nicked".into(),
                    "2025-10-20 23:59:00.123".into(),
                ],
            )
            .await;
        // A time this code cannot read: stale, asked again (it used to be served forever, or
        // to panic on an overflowing subtraction).
        app.tdb
            .exec(
                insert,
                vec![
                    ANIMATED.into(),
                    GUILD_A.into(),
                    "bot-animated".into(),
                    "last tuesday".into(),
                ],
            )
            .await;
        // A user who is no member: looked up by their profile, which has no banner now.
        app.tdb
            .exec(
                insert,
                vec![
                    LEGACY.into(),
                    GUILD_A.into(),
                    "bot-legacy".into(),
                    "2025-10-01 00:00:00".into(),
                ],
            )
            .await;
        // A user who is no member and has a new banner since the bot's row.
        fake.add_user(
            BANNERED,
            FakeUser {
                username: "bannered".into(),
                banner: Some(USER_HASH.into()),
                accent_color: Some(255),
                ..Default::default()
            },
        );
        app.tdb
            .exec(
                insert,
                vec![
                    BANNERED.into(),
                    GUILD_A.into(),
                    "bot-bannered".into(),
                    "2025-10-01 00:00:00".into(),
                ],
            )
            .await;
        let (s, body) = resolve(
            &app,
            &token,
            &format!("{NICKED},{ANIMATED},{LEGACY},{BANNERED}"),
        )
        .await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(user(&body, NICKED)["source"], "cache", "{body}");
        assert_eq!(user(&body, NICKED)["username"], "bot-nicked");
        assert_eq!(fake.calls_for(NICKED), 0);
        assert_eq!(user(&body, ANIMATED)["source"], "discord", "{body}");
        assert_eq!(user(&body, ANIMATED)["username"], "sparkle");
        // A member lookup carries no banner or accent colour: the bot's values stay.
        let rows = app
            .tdb
            .rows(
                "SELECT banner_url, accent_color, joined_at, updated_at FROM user_cache \
                 WHERE user_id = $1 AND guild_id = $2",
                vec![ANIMATED.into(), GUILD_A.into()],
            )
            .await;
        let banner: Option<String> = rows[0].try_get("", "banner_url").unwrap();
        let accent: Option<i64> = rows[0].try_get("", "accent_color").unwrap();
        let updated: String = rows[0].try_get("", "updated_at").unwrap();
        assert_eq!(
            banner.as_deref(),
            Some("https://cdn.discordapp.com/banners/x/b.png")
        );
        assert_eq!(accent, Some(16_711_680));
        assert_ne!(
            updated, "last tuesday",
            "the refreshed row has a readable time"
        );
        // The profile is Discord's word on banner and accent colour: gone means gone. The
        // join date is no part of a profile and stays.
        assert_eq!(user(&body, LEGACY)["username"], "oldtimer", "{body}");
        let rows = app
            .tdb
            .rows(
                "SELECT banner_url, accent_color, joined_at FROM user_cache \
                 WHERE user_id = $1 AND guild_id = $2",
                vec![LEGACY.into(), GUILD_A.into()],
            )
            .await;
        let banner: Option<String> = rows[0].try_get("", "banner_url").unwrap();
        let accent: Option<i64> = rows[0].try_get("", "accent_color").unwrap();
        let joined: Option<i64> = rows[0].try_get("", "joined_at").unwrap();
        assert_eq!((banner, accent, joined), (None, None, Some(1_600_000_000)));
        let rows = app
            .tdb
            .rows(
                "SELECT banner_url, accent_color FROM user_cache WHERE user_id = $1 AND guild_id = $2",
                vec![BANNERED.into(), GUILD_A.into()],
            )
            .await;
        let banner: Option<String> = rows[0].try_get("", "banner_url").unwrap();
        let accent: Option<i64> = rows[0].try_get("", "accent_color").unwrap();
        assert_eq!(
            (banner.as_deref(), accent),
            (
                Some(
                    format!(
                        "https://cdn.discordapp.com/banners/{BANNERED}/{USER_HASH}.png?size=600"
                    )
                    .as_str()
                ),
                Some(255)
            ),
            "a new banner replaces the bot's"
        );
        app.finish().await;
    }
}

/// A row of a type this code cannot read (SQLite stores any value in any column) is a cache
/// miss for that one user, not a failed page.
#[tokio::test]
async fn an_unreadable_row_costs_one_lookup_not_the_page() {
    let (app, fake, _clock, token) =
        start(&Backend::Sqlite, &["--resolve-rate-per-min", "0"]).await;
    app.tdb
        .exec(
            "INSERT INTO user_cache (user_id, guild_id, username, global_name, avatar_url, updated_at) \
             VALUES ($1, $2, 'blob', X'00ff', 'https://cdn.discordapp.com/embed/avatars/0.png', '2025-10-20 23:59:00')",
            vec![NICKED.into(), GUILD_A.into()],
        )
        .await;
    let (s, body) = resolve(&app, &token, NICKED).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(user(&body, NICKED)["source"], "discord", "{body}");
    assert_eq!(user(&body, NICKED)["display_name"], "Head Mod");
    assert_eq!(fake.calls_for(NICKED), 1);
    app.finish().await;
}
