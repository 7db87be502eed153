//! The library as a bot embeds it: built from the bot's own serenity `Http` and `Cache`, mounted
//! with `register_api_routes` beside the host's routes, with identities answered from the
//! gateway cache first (no HTTP call for a cached member).

use std::{sync::Arc, time::Duration};

use pawtropolis_api::{identity::DiscordRateLimits, register_api_routes};
use pawtropolis_tests::{
    GUILD_A, GUILD_B, TestDb, backends,
    fake_discord::{FakeDiscord, FakeUser},
};
use poem::{
    Route, get, handler,
    listener::{Acceptor, Listener, TcpListener},
};
use serenity::{
    cache::Cache,
    http::HttpBuilder,
    model::{
        event::GuildCreateEvent,
        guild::{Guild, Member},
        id::{GuildId, UserId},
        user::User,
    },
};

const CACHED: &str = "650000000000000001";
const NOT_CACHED: &str = "650000000000000002";
// Neither cached nor known to the fake Discord: asked of Discord unless rate limited.
const OTHER: &str = "650000000000000003";

#[handler]
fn host_route() -> &'static str {
    "host"
}

/// A gateway cache holding guild A with one member, as the bot's `GUILD_CREATE` would fill it.
fn bot_cache() -> Arc<Cache> {
    let cache = Arc::new(Cache::new());
    let mut user = User::default();
    user.id = UserId::new(CACHED.parse().unwrap());
    user.name = "cachedname".into();
    let mut member = Member::default();
    member.user = user;
    member.nick = Some("From The Cache".into());
    member.guild_id = GuildId::new(GUILD_A.parse().unwrap());
    let mut guild = Guild::default();
    guild.id = GuildId::new(GUILD_A.parse().unwrap());
    guild.members.insert(member.user.id, member);
    let mut event: GuildCreateEvent =
        serde_json::from_value(serde_json::to_value(&guild).unwrap()).unwrap();
    cache.update(&mut event);
    cache
}

/// Serves `app` as a host would, on a random port: its base URL and the server's task.
async fn serve(app: Route) -> (String, tokio::task::JoinHandle<Option<()>>) {
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let base = format!(
        "http://{}",
        acceptor.local_addr()[0].as_socket_addr().unwrap()
    );
    let server = tokio::spawn(async move {
        poem::Server::new_with_acceptor(acceptor)
            .run(app)
            .await
            .ok()
    });
    (base, server)
}

#[tokio::test]
async fn a_bot_embeds_the_api_with_its_http_and_cache() {
    for backend in backends() {
        let fake = FakeDiscord::start().await;
        fake.add_user(
            NOT_CACHED,
            FakeUser {
                username: "fromhttp".into(),
                ..Default::default()
            },
        );
        let tdb = TestDb::new(&backend).await;
        migration::cli::run(&tdb.db, &migration::cli::MigrateCommand::Up { steps: None })
            .await
            .unwrap();

        // What the bot has: its own Http (pointed at the fake here) and its gateway cache.
        let http = Arc::new(
            HttpBuilder::new("bot-token")
                .proxy(fake.base.clone())
                .ratelimiter_disabled(true)
                .build(),
        );
        let cache = bot_cache();
        let limits = Arc::new(DiscordRateLimits::new(Duration::from_secs(5)));
        // The bot example's own code path (what its gateway `ready` handler runs).
        let api = pawtropolis_bot_example::build_dashboard(
            tdb.db.clone(),
            http,
            cache,
            limits.clone(),
            Default::default(),
        )
        .await
        .unwrap();
        let (base, server) = serve(register_api_routes(
            Route::new().at("/host", get(host_route)),
            &api,
        ))
        .await;

        let (_, secret) =
            pawtropolis_api::auth::tokens::create(&tdb.db, "bot", &[GUILD_A.to_owned()], 0)
                .await
                .unwrap();
        let client = reqwest::Client::new();
        assert_eq!(
            client
                .get(format!("{base}/host"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
            "host"
        );
        assert_eq!(
            client
                .get(format!("{base}/health"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        let body: serde_json::Value = client
            .get(format!(
                "{base}/api/users/resolve?guild_id={GUILD_A}&ids={CACHED},{NOT_CACHED}"
            ))
            .bearer_auth(&secret)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["users"][0]["display_name"], "From The Cache", "{body}");
        assert_eq!(body["users"][1]["display_name"], "fromhttp", "{body}");
        assert_eq!(
            fake.calls_for(CACHED),
            0,
            "a member in the bot's cache costs no HTTP call"
        );
        assert!(fake.calls_for(NOT_CACHED) >= 1);

        // The bot's client reports a long rate limit on the guild's member lookups (its
        // `EventHandler::ratelimit`): a lookup answers `rate_limited` at once, without asking.
        let calls_before = fake.calls().len();
        limits.record_wait(
            &format!("https://discord.com/api/v10/guilds/{GUILD_A}/members/{NOT_CACHED}"),
            Duration::from_secs(60),
            false,
        );
        let guild = pawtropolis_api::Snowflake::parse("guild", GUILD_A).unwrap();
        let other = [pawtropolis_api::Snowflake::parse("id", OTHER).unwrap()];
        let limited = api.resolve_users(&guild, &other).await.unwrap();
        assert_eq!(limited.warnings.len(), 1, "{limited:?}");
        assert_eq!(limited.warnings[0].code, "rate_limited");
        assert_eq!(fake.calls().len(), calls_before, "Discord is not asked");
        // Guild A's limit holds guild A only: a lookup in guild B (not in its user_cache) asks.
        let guild_b = pawtropolis_api::Snowflake::parse("guild", GUILD_B).unwrap();
        let not_cached = [pawtropolis_api::Snowflake::parse("id", NOT_CACHED).unwrap()];
        let in_b = api.resolve_users(&guild_b, &not_cached).await.unwrap();
        assert!(in_b.warnings.is_empty(), "{in_b:?}");
        assert_eq!(in_b.users[0].display_name, "fromhttp");
        assert!(
            fake.calls().len() > calls_before,
            "guild B's lookup reached Discord"
        );

        // The Rust API other modules call gives the same answer.
        let ids = [pawtropolis_api::Snowflake::parse("id", CACHED).unwrap()];
        let direct = api.resolve_users(&guild, &ids).await.unwrap();
        assert_eq!(direct.users[0].display_name, "From The Cache");

        // A moderator action written the bot's way reaches a dashboard stream at once.
        let mut stream = pawtropolis_tests::sse::SseClient::connect(
            &base,
            &format!("/api/logs/stream?guild_id={GUILD_A}"),
            &secret,
            None,
        )
        .await;
        stream
            .next_block(std::time::Duration::from_secs(5))
            .await
            .expect("open");
        let action = pawtropolis_bot_example::ModeratorAction {
            guild_id: GUILD_A.parse().unwrap(),
            moderator_id: CACHED.parse().unwrap(),
            subject_id: NOT_CACHED.parse().unwrap(),
            action: "approve",
            app_id: Some("6f1c2d3e-0000-4000-8000-000000000001"),
            reason: None,
        };
        let id = pawtropolis_bot_example::record_action(&api, action)
            .await
            .unwrap();
        let ev = stream
            .next_action(std::time::Duration::from_secs(5))
            .await
            .expect("event");
        assert_eq!(ev.id, Some(id));
        assert_eq!(ev.json()["action"], "approve");
        assert_eq!(ev.json()["app_code"], "6F1C2D");
        api.shutdown();
        server.abort();
        tdb.cleanup().await;
    }
}

/// A host with a credential of its own (`examples/embedded`: an admin secret) adds its verifier
/// beside the built-in ones: the secret reads every guild, a wrong one is refused, API tokens
/// keep working, and a token revoked through the API is refused on the very next request
/// rather than served from a verifier's cache of its own for a few more seconds.
#[tokio::test]
async fn a_host_adds_its_own_verifier_beside_the_built_in_ones() {
    const ADMIN: &str = "host-admin-secret-0123456789";
    for backend in backends() {
        let tdb = TestDb::new(&backend).await;
        migration::cli::run(&tdb.db, &migration::cli::MigrateCommand::Up { steps: None })
            .await
            .unwrap();
        let api = pawtropolis_embedded_example::build_api(tdb.db.clone(), ADMIN.into())
            .await
            .unwrap();
        let (base, server) = serve(pawtropolis_embedded_example::app(&api)).await;
        let client = reqwest::Client::new();
        let logs = |guild: &str, bearer: &str| {
            client
                .get(format!("{base}/api/logs?guild_id={guild}"))
                .bearer_auth(bearer)
                .send()
        };
        let status = |r: reqwest::Result<reqwest::Response>| r.unwrap().status().as_u16();

        assert_eq!(status(logs(GUILD_A, ADMIN).await), 200);
        assert_eq!(status(logs(GUILD_B, ADMIN).await), 200, "every guild");
        let wrong = format!("{}X", &ADMIN[..ADMIN.len() - 1]);
        assert_eq!(status(logs(GUILD_A, &wrong).await), 401);
        assert_eq!(
            client
                .get(format!("{base}/hello"))
                .send()
                .await
                .unwrap()
                .status(),
            200,
            "the host's own route"
        );

        let (_, token) =
            pawtropolis_api::auth::tokens::create(&tdb.db, "host", &[GUILD_A.to_owned()], 0)
                .await
                .unwrap();
        assert_eq!(status(logs(GUILD_A, &token).await), 200);
        assert_eq!(status(logs(GUILD_B, &token).await), 403);
        assert!(api.revoke_token(&token).await.unwrap());
        assert_eq!(
            status(logs(GUILD_A, &token).await),
            401,
            "refused at once, not after the verifier's recheck"
        );
        assert_eq!(status(logs(GUILD_A, ADMIN).await), 200);
        api.shutdown();
        server.abort();
        tdb.cleanup().await;
    }
}
