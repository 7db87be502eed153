//! Discord login against a fake Discord OAuth2 + API: sessions, guild-scoped access, role
//! re-checks, cookie handling and cross-site protection.

use pawtropolis_api::{
    ManualClock,
    auth::{
        discord::{DiscordLogin, LoginError},
        sessions::revoke_session,
        tokens::hash_token,
    },
    settings::LoginSettings,
};
use pawtropolis_tests::{
    Backend, GUILD_A, GUILD_B, TestApp, backends,
    fake_discord::{FakeDiscord, FakeMember, FakeUser, OAUTH_TOKEN, Trouble},
    operations, run_cli, send_op,
    sse::SseClient,
};
use std::time::Duration;

const MOD_A: &str = "660000000000000001";
const NOBODY: &str = "660000000000000002";
const OWNER: &str = "660000000000000003";
const ROLE_A: &str = "670000000000000001";
const ROLE_B: &str = "670000000000000002";
const ADMIN_A: &str = "660000000000000004";
const ADMIN_ROLE_A: &str = "670000000000000003";
const T0: i64 = 1_761_004_800;

struct Login {
    app: TestApp,
    fake: FakeDiscord,
    clock: ManualClock,
    origin: String,
}

async fn start(backend: &Backend) -> Login {
    start_with_heartbeat(backend, "1").await
}

async fn start_with_heartbeat(backend: &Backend, heartbeat_secs: &str) -> Login {
    start_with(backend, heartbeat_secs, "test-secret").await
}

/// A server whose Discord application has `client_secret` (the fake knows `test-secret`).
async fn start_with(backend: &Backend, heartbeat_secs: &str, client_secret: &str) -> Login {
    let fake = FakeDiscord::start().await;
    for id in [MOD_A, NOBODY, OWNER, ADMIN_A] {
        fake.add_user(
            id,
            FakeUser {
                username: format!("user{}", &id[15..]),
                ..Default::default()
            },
        );
    }
    fake.add_member(
        GUILD_A,
        MOD_A,
        FakeMember {
            roles: vec![ROLE_A.into()],
            ..Default::default()
        },
    );
    fake.add_member(
        GUILD_A,
        ADMIN_A,
        FakeMember {
            roles: vec![ADMIN_ROLE_A.into(), ROLE_A.into()],
            ..Default::default()
        },
    );
    fake.add_member(
        GUILD_A,
        NOBODY,
        FakeMember {
            roles: vec!["999999999999999999".into()],
            ..Default::default()
        },
    );
    let clock = ManualClock::new(T0);
    // The public URL is only known once the server listens; the tests use a fixed one and
    // send requests to the real address.
    let origin = "http://127.0.0.1:9".to_owned();
    let app = TestApp::spawn_with_clock(
        backend,
        &[
            "--discord-api-base",
            &fake.base,
            "--discord-client-id",
            "test-client",
            "--discord-client-secret",
            client_secret,
            "--public-url",
            &origin,
            "--owner-ids",
            OWNER,
            "--role-recheck-secs",
            "600",
            "--sse-heartbeat-secs",
            heartbeat_secs,
        ],
        clock.clone(),
    )
    .await;
    for (guild, role) in [(GUILD_A, ROLE_A), (GUILD_B, ROLE_B)] {
        app.tdb
            .exec(
                "INSERT INTO guild_config (guild_id, reviewer_role_id) VALUES ($1, $2)",
                vec![guild.into(), role.into()],
            )
            .await;
    }
    app.tdb
        .exec(
            "UPDATE guild_config SET admin_role_id = $1 WHERE guild_id = $2",
            vec![ADMIN_ROLE_A.into(), GUILD_A.into()],
        )
        .await;
    Login {
        app,
        fake,
        clock,
        origin,
    }
}

/// Calls the fake Discord's token endpoint has had.
fn token_exchanges(l: &Login) -> usize {
    l.fake
        .calls()
        .iter()
        .filter(|c| *c == "oauth token")
        .count()
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn cookie_value(resp: &reqwest::Response, name: &str) -> Option<(String, String)> {
    resp.headers().get_all("set-cookie").iter().find_map(|h| {
        let h = h.to_str().ok()?;
        let v = h.strip_prefix(&format!("{name}="))?;
        Some((v.split(';').next()?.to_owned(), h.to_owned()))
    })
}

/// Runs the whole flow for `user` and returns the session cookie's value.
async fn log_in(l: &Login, user: &str, code: &str) -> String {
    let resp = callback(l, user, code).await;
    assert_eq!(resp.status(), 302, "{:?}", resp.text().await);
    let (session, raw) = cookie_value(&resp, "paw_session").expect("session cookie");
    assert!(
        raw.contains("HttpOnly") && raw.contains("SameSite=Lax") && raw.contains("Path=/"),
        "{raw}"
    );
    assert!(
        !raw.contains("Secure"),
        "plain-HTTP localhost runs without Secure: {raw}"
    );
    assert!(
        !raw.contains("user-token"),
        "Discord's token never reaches the browser"
    );
    session
}

/// Starts a login and comes back through the callback as Discord would for `user`; returns
/// the callback's response.
async fn callback(l: &Login, user: &str, code: &str) -> reqwest::Response {
    callback_with_cookies(l, user, code, "").await
}

/// [`callback`] from a browser that also holds `cookies` (`name=value; …`).
async fn callback_with_cookies(
    l: &Login,
    user: &str,
    code: &str,
    cookies: &str,
) -> reqwest::Response {
    let client = no_redirects();
    let resp = client
        .get(format!("{}/auth/login", l.app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{}/oauth2/authorize?", l.fake.base)),
        "{location}"
    );
    assert!(location.contains("client_id=test-client"));
    assert!(
        location.contains("scope=identify+guilds.members.read"),
        "{location}"
    );
    assert!(
        location.contains("redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fauth%2Fcallback"),
        "{location}"
    );
    let state = location
        .split("state=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let (state_cookie, raw) = cookie_value(&resp, "paw_oauth_state").expect("state cookie");
    assert_eq!(state_cookie, state);
    assert!(raw.contains("HttpOnly") && raw.contains("SameSite=Lax"));

    l.fake.add_oauth_code(code, user);
    client
        .get(format!(
            "{}/auth/callback?code={code}&state={state}",
            l.app.base
        ))
        .header("cookie", format!("paw_oauth_state={state}; {cookies}"))
        .send()
        .await
        .unwrap()
}

async fn me(l: &Login, session: &str) -> (u16, serde_json::Value) {
    let resp = l
        .app
        .client
        .get(format!("{}/auth/me", l.app.base))
        .header("cookie", format!("paw_session={session}"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

/// `POST /auth/logout` with `session`, from `origin`; the status.
async fn log_out(l: &Login, session: &str, origin: &str) -> u16 {
    l.app
        .client
        .post(format!("{}/auth/logout", l.app.base))
        .header("cookie", format!("paw_session={session}"))
        .header("origin", origin)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn every_route(l: &Login, guild: &str, session: &str) -> Vec<(String, u16)> {
    let cookie = format!("paw_session={session}");
    let mut out = Vec::new();
    for op in operations(&l.app, guild).await {
        let (s, _) = send_op(&l.app, &op, &[("cookie", &cookie), ("origin", &l.origin)]).await;
        out.push((format!("{} {}", op.method, op.url), s));
    }
    out
}

fn is_config_update(what: &str) -> bool {
    what.starts_with("PUT ") && what.contains("/api/config")
}

/// `PUT /api/config` of guild A with `session`, from the dashboard's origin.
async fn config_update(l: &Login, session: &str) -> u16 {
    l.app
        .client
        .put(format!("{}/api/config?guild_id={GUILD_A}", l.app.base))
        .header("cookie", format!("paw_session={session}"))
        .header("origin", &l.origin)
        .json(&serde_json::json!({"reapply_cooldown_hours": 12}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn login_flow_access_and_role_recheck() {
    for backend in backends() {
        let l = start(&backend).await;
        let session = log_in(&l, MOD_A, "code-1").await;
        let (s, body) = me(&l, &session).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["user_id"], MOD_A);
        assert_eq!(body["guild_ids"], serde_json::json!([GUILD_A]));
        assert_eq!(body["admin_guild_ids"], serde_json::json!([]));
        assert!(
            body["avatar_url"]
                .as_str()
                .unwrap()
                .starts_with("https://cdn.discordapp.com/")
        );

        // A reviewer reads everything of A and may not edit its configuration; an admin may.
        for (what, s) in every_route(&l, GUILD_A, &session).await {
            if is_config_update(&what) {
                assert_eq!(s, 403, "reviewer of A: {what}");
            } else {
                assert!((200..300).contains(&s), "reviewer of A: {what} gave {s}");
            }
        }
        let admin = log_in(&l, ADMIN_A, "code-admin").await;
        let body = me(&l, &admin).await.1;
        assert_eq!(body["guild_ids"], serde_json::json!([GUILD_A]));
        assert_eq!(body["admin_guild_ids"], serde_json::json!([GUILD_A]));
        let routes = every_route(&l, GUILD_A, &admin).await;
        assert!(routes.iter().any(|(what, _)| is_config_update(what)));
        for (what, s) in routes {
            assert!((200..300).contains(&s), "admin of A: {what} gave {s}");
        }
        for (what, s) in every_route(&l, GUILD_B, &admin).await {
            assert_eq!(s, 403, "admin of A on B: {what}");
        }
        // The admin role removed, the reviewer role kept: after the re-check, reading only.
        l.fake.set_roles(GUILD_A, ADMIN_A, &[ROLE_A]);
        for (what, s) in every_route(&l, GUILD_B, &session).await {
            assert_eq!(s, 403, "session for A on B: {what}");
        }

        // A user without a configured role gets no guild; an owner gets all.
        let nobody = log_in(&l, NOBODY, "code-2").await;
        assert_eq!(me(&l, &nobody).await.1["guild_ids"], serde_json::json!([]));
        let (s, _) = l
            .app
            .client
            .get(format!("{}/api/logs?guild_id={GUILD_A}", l.app.base))
            .header("cookie", format!("paw_session={nobody}"))
            .send()
            .await
            .map(|r| (r.status().as_u16(), ()))
            .unwrap();
        assert_eq!(s, 403);
        let owner = log_in(&l, OWNER, "code-3").await;
        assert_eq!(me(&l, &owner).await.1["all_guilds"], true);

        // The role is removed on Discord: access ends at the next re-check (10 minutes).
        l.fake.set_roles(GUILD_A, MOD_A, &[]);
        l.clock.advance(599);
        assert_eq!(
            me(&l, &session).await.1["guild_ids"],
            serde_json::json!([GUILD_A])
        );
        assert_eq!(
            config_update(&l, &admin).await,
            200,
            "admin until the re-check"
        );
        l.clock.advance(2);
        assert_eq!(me(&l, &session).await.1["guild_ids"], serde_json::json!([]));
        let body = me(&l, &admin).await.1;
        assert_eq!(body["guild_ids"], serde_json::json!([GUILD_A]));
        assert_eq!(body["admin_guild_ids"], serde_json::json!([]));
        assert_eq!(config_update(&l, &admin).await, 403, "a reviewer now");
        let resp = l
            .app
            .client
            .get(format!("{}/api/logs?guild_id={GUILD_A}", l.app.base))
            .header("cookie", format!("paw_session={session}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403);

        // Discord failing during a re-check: the last confirmed access holds for one more
        // interval, then the session fails closed.
        let other = log_in(&l, MOD_A, "code-4").await;
        l.fake.set_roles(GUILD_A, MOD_A, &[ROLE_A]);
        let other2 = log_in(&l, MOD_A, "code-5").await;
        assert_eq!(
            me(&l, &other2).await.1["guild_ids"],
            serde_json::json!([GUILD_A])
        );
        drop(other);
        l.fake
            .set_trouble(MOD_A, pawtropolis_tests::fake_discord::Trouble::Status(503));
        l.clock.advance(601);
        assert_eq!(
            me(&l, &other2).await.1["guild_ids"],
            serde_json::json!([GUILD_A]),
            "kept while Discord fails"
        );
        l.clock.advance(600);
        assert_eq!(
            me(&l, &other2).await.1["guild_ids"],
            serde_json::json!([]),
            "closed after a second interval"
        );

        // Discord rate limits the role check once, asking for a short wait: the login waits
        // it out instead of failing; a limit that comes back fails it (503).
        l.fake.set_trouble(
            MOD_A,
            pawtropolis_tests::fake_discord::Trouble::RateLimitedTimes(0.2, 1),
        );
        let limited = log_in(&l, MOD_A, "code-7").await;
        assert_eq!(
            me(&l, &limited).await.1["guild_ids"],
            serde_json::json!([GUILD_A])
        );
        l.fake.set_trouble(
            MOD_A,
            pawtropolis_tests::fake_discord::Trouble::RateLimitedTimes(0.2, 2),
        );
        assert_eq!(callback(&l, MOD_A, "code-8").await.status(), 503);
        // A limit asking for longer than a login should sit out fails it at once.
        l.fake.set_trouble(
            MOD_A,
            pawtropolis_tests::fake_discord::Trouble::RateLimitedTimes(30.0, 1),
        );
        // (Waited out, the retry would have been answered: the fake limits once.)
        assert_eq!(callback(&l, MOD_A, "code-9").await.status(), 503);
        l.fake
            .set_trouble(MOD_A, pawtropolis_tests::fake_discord::Trouble::Status(503));

        // A login while Discord fails: 503, and the browser learns nothing of the failure's
        // details (addresses, errors); the log has them.
        let resp = callback(&l, MOD_A, "code-6").await;
        assert_eq!(resp.status(), 503);
        assert!(resp.headers().contains_key("retry-after"));
        let body = resp.text().await.unwrap();
        assert!(body.contains("the login could not be completed"), "{body}");
        assert!(
            !body.contains("127.0.0.1") && !body.contains("503"),
            "{body}"
        );
        l.app.finish().await;
    }
}

#[tokio::test]
async fn bad_cookies_state_mismatch_and_cross_site_requests() {
    for backend in backends() {
        let l = start(&backend).await;
        let client = no_redirects();

        // A state that does not match the browser's cookie is refused, and no session is made.
        l.fake.add_oauth_code("code-x", MOD_A);
        let resp = client
            .get(format!(
                "{}/auth/callback?code=code-x&state=forged",
                l.app.base
            ))
            .header("cookie", "paw_oauth_state=the-real-one")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        assert!(cookie_value(&resp, "paw_session").is_none());
        let resp = client
            .get(format!(
                "{}/auth/callback?code=code-x&state=forged",
                l.app.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "no state cookie at all");

        let session = log_in(&l, MOD_A, "code-1").await;
        let mut tampered = session.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        for (label, cookie) in [
            ("tampered", tampered.as_str()),
            ("unknown", "pws_nothing-like-a-session"),
            ("garbage", "x"),
        ] {
            for (what, s) in every_route(&l, GUILD_A, cookie).await {
                assert_eq!(s, 401, "{label} cookie: {what}");
            }
        }

        // Cross-site requests are refused: a config update (by an admin, who may make it from
        // the dashboard) and a logout from another origin.
        let admin = log_in(&l, ADMIN_A, "code-admin").await;
        let put = l
            .app
            .client
            .put(format!("{}/api/config?guild_id={GUILD_A}", l.app.base))
            .header("cookie", format!("paw_session={admin}"))
            .header("origin", "https://evil.example.com")
            .json(&serde_json::json!({"min_join_age_hours": 5}))
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 403);
        let body: serde_json::Value = put.json().await.unwrap();
        assert_eq!(body["error"]["code"], "bad_origin", "{body}");
        assert_eq!(config_update(&l, &admin).await, 200, "from the dashboard");
        assert_eq!(log_out(&l, &session, "https://evil.example.com").await, 403);
        assert_eq!(
            me(&l, &session).await.0,
            200,
            "the refused logout left the session alone"
        );
        // CORS answers only the dashboard's origin.
        let pre = l
            .app
            .client
            .request(reqwest::Method::OPTIONS, format!("{}/api/logs", l.app.base))
            .header("origin", "https://evil.example.com")
            .header("access-control-request-method", "GET")
            .send()
            .await
            .unwrap();
        assert!(
            pre.headers()
                .get("access-control-allow-origin")
                .is_none_or(|v| v != "https://evil.example.com")
        );
        let pre = l
            .app
            .client
            .request(reqwest::Method::OPTIONS, format!("{}/api/logs", l.app.base))
            .header("origin", &l.origin)
            .header("access-control-request-method", "GET")
            .send()
            .await
            .unwrap();
        assert_eq!(
            pre.headers()["access-control-allow-origin"],
            l.origin.as_str()
        );
        assert_eq!(pre.headers()["access-control-allow-credentials"], "true");
        // The dashboard's scripts may read the headers the API's contract gives them.
        let resp = l
            .app
            .client
            .get(format!(
                "{}/api/users/resolve?guild_id={GUILD_A}&ids={MOD_A}",
                l.app.base
            ))
            .header("cookie", format!("paw_session={session}"))
            .header("origin", &l.origin)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let exposed = resp.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase();
        for header in [
            "etag",
            "retry-after",
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
        ] {
            assert!(exposed.contains(header), "{header} not exposed: {exposed}");
        }

        // Logged out: 401 everywhere.
        assert_eq!(log_out(&l, &session, &l.origin).await, 204);
        for (what, s) in every_route(&l, GUILD_A, &session).await {
            assert_eq!(s, 401, "logged-out cookie: {what}");
        }

        // Expired: 7 days after login however often it is used.
        let busy = log_in(&l, MOD_A, "code-3").await;
        for _ in 0..33 {
            l.clock.advance(5 * 3600);
            assert_eq!(
                me(&l, &busy).await.0,
                200,
                "used every 5 hours, within 7 days"
            );
        }
        l.clock.advance(3 * 3600 + 1);
        assert_eq!(me(&l, &busy).await.0, 401, "past the 7-day limit");

        // Expired: 6 hours without use.
        let idle = log_in(&l, MOD_A, "code-2").await;
        assert_eq!(me(&l, &idle).await.0, 200);
        l.clock.advance(6 * 3600 + 1);
        for (what, s) in every_route(&l, GUILD_A, &idle).await {
            assert_eq!(s, 401, "expired cookie: {what}");
        }
        l.app.finish().await;
    }
}

#[tokio::test]
async fn a_session_cookie_opens_a_stream_that_closes_when_access_ends() {
    for backend in backends() {
        let l = start(&backend).await;
        let session = log_in(&l, MOD_A, "code-1").await;
        let cookie = format!("paw_session={session}");
        let path = format!("/api/logs/stream?guild_id={GUILD_A}");
        let mut stream = SseClient::connect_with(&l.app.base, &path, &[("cookie", &cookie)]).await;
        assert_eq!(stream.status, 200);
        stream
            .next_block(Duration::from_secs(5))
            .await
            .expect("open");
        assert!(
            !stream.ended_within(Duration::from_millis(1500)).await,
            "heartbeats keep it open"
        );
        // The role goes away on Discord; at the next re-check the stream closes.
        l.fake.set_roles(GUILD_A, MOD_A, &[]);
        l.clock.advance(601);
        assert!(
            stream.ended_within(Duration::from_secs(5)).await,
            "stream of a user without access"
        );
        l.app.finish().await;
    }
}

/// A logout ends the session's live streams at once, long before the next heartbeat would
/// find the session gone; another session's stream stays open.
#[tokio::test]
async fn a_logout_ends_its_sessions_streams_at_once() {
    for backend in backends() {
        let l = start_with_heartbeat(&backend, "60").await;
        let path = format!("/api/logs/stream?guild_id={GUILD_A}");
        let mut streams = Vec::new();
        for code in ["code-1", "code-2"] {
            let session = log_in(&l, MOD_A, code).await;
            let cookie = format!("paw_session={session}");
            let mut stream =
                SseClient::connect_with(&l.app.base, &path, &[("cookie", &cookie)]).await;
            assert_eq!(stream.status, 200);
            stream
                .next_block(Duration::from_secs(5))
                .await
                .expect("open");
            streams.push((session, stream));
        }
        assert_eq!(log_out(&l, &streams[0].0, &l.origin).await, 204);
        assert!(
            streams[0].1.ended_within(Duration::from_secs(3)).await,
            "the logged-out session's stream"
        );
        assert!(
            !streams[1].1.ended_within(Duration::from_secs(1)).await,
            "another session's stream stays open"
        );
        l.app.finish().await;
    }
}

/// Logouts and revocations made anywhere else end this server's streams of that session or
/// token at once, long before their next heartbeat (here 600 s) would find them ended: another
/// instance's logout, a `token revoke` run from the CLI, and SQL typed by hand (a session
/// revoked, a token deleted). The database tells every server of them (`NOTIFY` from triggers
/// on PostgreSQL, `credential_ending` read every second on SQLite). A token is refused at once
/// rather than trusted for its 5 s, and streams of other credentials stay open.
#[tokio::test]
async fn endings_made_elsewhere_end_streams_at_once() {
    for backend in backends() {
        let l = start_with_heartbeat(&backend, "600").await;
        let path = format!("/api/logs/stream?guild_id={GUILD_A}");
        let mut credentials = Vec::new();
        for code in ["code-1", "code-2", "code-3"] {
            let session = log_in(&l, MOD_A, code).await;
            credentials.push((session.clone(), format!("paw_session={session}"), "cookie"));
        }
        for _ in 0..3 {
            let token = l.app.token(&[GUILD_A]).await;
            credentials.push((token.clone(), format!("Bearer {token}"), "authorization"));
        }
        let mut streams = Vec::new();
        for (_, value, header) in &credentials {
            let mut stream = SseClient::connect_with(&l.app.base, &path, &[(header, value)]).await;
            assert_eq!(stream.status, 200);
            stream
                .next_block(Duration::from_secs(5))
                .await
                .expect("open");
            streams.push(stream);
        }
        // Another instance's logout: a connection of its own, none of this server's memory.
        let ended = revoke_session(&l.app.tdb.db, &credentials[0].0, T0 + 1).await;
        assert!(ended.unwrap(), "the session was live");
        assert!(
            streams[0].ended_within(Duration::from_secs(3)).await,
            "the stream of the session logged out elsewhere"
        );
        let logs = format!("/api/logs?guild_id={GUILD_A}");
        let token = &credentials[3].0;
        assert_eq!(
            l.app.get(&logs, token).await.status(),
            200,
            "trusted from now"
        );
        run_cli(&l.app.tdb.url, &["token", "revoke", token])
            .await
            .unwrap();
        assert!(
            streams[3].ended_within(Duration::from_secs(3)).await,
            "the stream of the token revoked from the CLI"
        );
        assert_eq!(
            l.app.get(&logs, token).await.status(),
            401,
            "the revoked token, checked again at once"
        );
        // By hand: no code of ours runs beside the statements.
        l.app
            .tdb
            .exec(
                "UPDATE dashboard_session SET revoked_at_s = $1 WHERE id_hash = $2",
                vec![(T0 + 2).into(), hash_token(&credentials[1].0).into()],
            )
            .await;
        assert!(
            streams[1].ended_within(Duration::from_secs(3)).await,
            "the stream of the session revoked by hand"
        );
        let token = &credentials[4].0;
        assert_eq!(l.app.get(&logs, token).await.status(), 200);
        l.app
            .tdb
            .exec(
                "DELETE FROM api_token WHERE token_hash = $1",
                vec![hash_token(token).into()],
            )
            .await;
        assert!(
            streams[4].ended_within(Duration::from_secs(3)).await,
            "the stream of the token deleted by hand"
        );
        assert_eq!(
            l.app.get(&logs, token).await.status(),
            401,
            "the deleted token, checked again at once"
        );
        for i in [2, 5] {
            assert!(
                !streams[i].ended_within(Duration::from_secs(1)).await,
                "the stream of another {} stays open",
                credentials[i].2
            );
        }
        l.app.finish().await;
    }
}

/// Sessions that can no longer be used do not pile up with the Discord tokens in them: a
/// logout forgets the token at once, and each login deletes the logged-out, idle and expired
/// sessions, leaving the live ones alone.
#[tokio::test]
async fn ended_sessions_are_deleted_with_their_discord_tokens() {
    for backend in backends() {
        let l = start(&backend).await;
        let sessions = || async {
            l.app
                .tdb
                .rows(
                    "SELECT user_id, discord_access_token, revoked_at_s FROM dashboard_session ORDER BY id",
                    vec![],
                )
                .await
                .iter()
                .map(|r| {
                    (
                        r.try_get::<String>("", "user_id").unwrap(),
                        r.try_get::<String>("", "discord_access_token").unwrap(),
                        r.try_get::<Option<i64>>("", "revoked_at_s").unwrap().is_some(),
                    )
                })
                .collect::<Vec<_>>()
        };
        let gone = log_in(&l, MOD_A, "code-1").await;
        let live = log_in(&l, ADMIN_A, "code-2").await;
        assert_eq!(log_out(&l, &gone, &l.origin).await, 204);
        let rows = sessions().await;
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].1.as_str(), rows[0].2),
            ("", true),
            "the logged-out session keeps no Discord token"
        );
        assert!(!rows[1].1.is_empty() && !rows[1].2);

        // Seven hours later one session has been idle past 6 hours; the other was used three
        // hours ago.
        let idle = log_in(&l, MOD_A, "code-3").await;
        l.clock.advance(4 * 3600);
        assert_eq!(me(&l, &live).await.0, 200);
        l.clock.advance(3 * 3600);
        let _new = log_in(&l, OWNER, "code-4").await;
        let users: Vec<String> = sessions().await.into_iter().map(|r| r.0).collect();
        assert_eq!(
            users,
            [ADMIN_A, OWNER],
            "the logged-out and the idle sessions are deleted"
        );
        assert_eq!(me(&l, &live).await.0, 200, "a live session is kept");
        assert_eq!(me(&l, &idle).await.0, 401);
        l.app.finish().await;
    }
}

/// A 429 from Discord's token endpoint holds every login until its `retry_after`: the
/// callbacks in between are answered 503 with `Retry-After` and do not ask Discord again.
#[tokio::test]
async fn a_rate_limited_token_exchange_holds_every_login() {
    for backend in backends() {
        let l = start(&backend).await;
        l.fake
            .set_trouble(OAUTH_TOKEN, Trouble::RateLimitedTimes(30.0, 1));
        let resp = callback(&l, MOD_A, "code-1").await;
        assert_eq!(resp.status(), 503);
        let wait: u64 = resp.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((29..=30).contains(&wait), "{wait}");
        let resp = callback(&l, ADMIN_A, "code-2").await;
        assert_eq!(resp.status(), 503);
        assert!(resp.headers().contains_key("retry-after"));
        assert_eq!(token_exchanges(&l), 1, "held: Discord is not asked again");
        l.app.finish().await;
    }
}

/// Anyone can call the callback with a state of their own in both the query and the cookie
/// and a made-up code. Discord answers such a code 400 (`invalid_grant`), which it does not
/// hold against the address, and neither does the login: a real login goes through after
/// many. A burst of them reaches Discord a few at a time, never all at once.
#[tokio::test]
async fn forged_callbacks_reach_discord_a_few_at_a_time() {
    for backend in backends() {
        let l = start(&backend).await;
        let client = no_redirects();
        let forged = |n: usize| {
            client
                .get(format!(
                    "{}/auth/callback?code=made-up-{n}&state=mine",
                    l.app.base
                ))
                .header("cookie", "paw_oauth_state=mine")
                .send()
        };
        // Each exchange takes a while, as a real one does.
        l.fake
            .set_trouble(OAUTH_TOKEN, Trouble::Slow(Duration::from_millis(300)));
        let burst = futures_util::future::join_all((0..12).map(forged)).await;
        for resp in burst {
            assert_eq!(resp.unwrap().status(), 403);
        }
        let most = l.fake.most_exchanges_at_once();
        assert!((1..=4).contains(&most), "{most} exchanges at once");
        l.fake.set_trouble(OAUTH_TOKEN, Trouble::None);
        for n in 12..60 {
            assert_eq!(forged(n).await.unwrap().status(), 403, "forged code {n}");
        }
        log_in(&l, MOD_A, "code-real").await;
        l.app.finish().await;
    }
}

/// A wrong client secret makes Discord answer every exchange 401, which it counts against
/// the address the bot shares: after a burst of 30 such answers, logins wait (503,
/// `Retry-After`) without asking Discord, and go on at one every 2 s.
#[tokio::test]
async fn refusals_discord_counts_stop_the_exchanges() {
    for backend in backends() {
        let l = start_with(&backend, "1", "a-wrong-secret").await;
        let started = std::time::Instant::now();
        let mut first_held = None;
        for n in 0..60 {
            let resp = callback(&l, MOD_A, &format!("code-{n}")).await;
            match resp.status().as_u16() {
                403 => {}
                503 => {
                    let wait = resp.headers()["retry-after"].to_str().unwrap().to_owned();
                    first_held = Some((token_exchanges(&l), wait));
                    break;
                }
                s => panic!("callback {n}: {s}"),
            }
        }
        let (asked, wait) = first_held.expect("logins were held");
        let wait: u64 = wait.parse().unwrap();
        assert!((1..=2).contains(&wait), "{wait}");
        // 30, and one more for each refill of the budget (one every 2 s) while the test ran.
        let refills = started.elapsed().as_secs() as usize / 2 + 1;
        assert!(
            (30..=30 + refills).contains(&asked),
            "{asked} exchanges before the first hold"
        );
        l.app.finish().await;
    }
}

/// Signing in again from the same browser ends its earlier session (and that session's
/// streams) rather than leaving it valid until it expires; another browser's session stays.
#[tokio::test]
async fn signing_in_again_ends_the_browsers_earlier_session() {
    for backend in backends() {
        let l = start_with_heartbeat(&backend, "60").await;
        let first = log_in(&l, MOD_A, "code-1").await;
        let elsewhere = log_in(&l, MOD_A, "code-2").await;
        let mut stream = SseClient::connect_with(
            &l.app.base,
            &format!("/api/logs/stream?guild_id={GUILD_A}"),
            &[("cookie", &format!("paw_session={first}"))],
        )
        .await;
        assert_eq!(stream.status, 200);
        stream
            .next_block(Duration::from_secs(5))
            .await
            .expect("open");
        let resp =
            callback_with_cookies(&l, MOD_A, "code-3", &format!("paw_session={first}")).await;
        assert_eq!(resp.status(), 302);
        let (second, _) = cookie_value(&resp, "paw_session").expect("session cookie");
        assert_ne!(second, first);
        assert_eq!(me(&l, &first).await.0, 401, "the earlier session ended");
        assert!(
            stream.ended_within(Duration::from_secs(3)).await,
            "its stream ended"
        );
        assert_eq!(me(&l, &second).await.0, 200);
        assert_eq!(
            me(&l, &elsewhere).await.0,
            200,
            "another browser's session stays"
        );
        l.app.finish().await;
    }
}

/// A refusal keeps Discord's status and reason, for the log line that tells an operator a
/// used code (`invalid_grant`) from a wrong client secret (`invalid_client`).
#[tokio::test]
async fn a_refused_exchange_says_why() {
    let fake = FakeDiscord::start().await;
    let settings = LoginSettings {
        client_id: "test-client".into(),
        client_secret: "test-secret".into(),
        public_url: "http://127.0.0.1:9".into(),
        discord_api_base: fake.base.clone(),
        owner_ids: vec![],
        role_recheck_secs: 600,
        idle_secs: 3_600,
        absolute_secs: 86_400,
    };
    let err = DiscordLogin::new(&settings)
        .exchange("made-up")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LoginError::Unauthorized { status: 400, reason } if reason.contains("invalid_grant")),
        "{err}"
    );
}

/// The login routes answer a method they do not have with 405 and the `Allow` header.
#[tokio::test]
async fn login_routes_refuse_other_methods_with_allow() {
    let l = start(&Backend::Sqlite).await;
    for (method, path, allow) in [
        (reqwest::Method::GET, "/auth/logout", "POST"),
        (reqwest::Method::POST, "/auth/me", "GET, HEAD"),
        (reqwest::Method::DELETE, "/auth/login", "GET, HEAD"),
        (reqwest::Method::PUT, "/auth/callback", "GET, HEAD"),
    ] {
        let resp = no_redirects()
            .request(method.clone(), format!("{}{path}", l.app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405, "{method} {path}");
        assert_eq!(resp.headers()["allow"], allow, "{method} {path}");
    }
    l.app.finish().await;
}
