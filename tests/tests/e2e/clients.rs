//! The API's consumers for real: the generated TypeScript client's smoke program, and the
//! dashboard page in headless Chromium, each against the real server over a real database
//! with a fake Discord behind the identities.

use std::time::Duration;

use pawtropolis_api::{Clock as _, SystemClock, feed::NewAction};
use pawtropolis_server::demo::{DEMO_GUILD, insert_demo_rows, moderators};
use pawtropolis_tests::{
    Backend, TestApp, backends,
    fake_discord::{FakeDiscord, FakeMember, FakeUser},
    free_port, id_in,
    node::{NodeProgram, chromium, npm_ci, npm_run, repo_dir},
};

const CAT_NAMES: [&str; 12] = [
    "Whiskers", "Mittens", "Biscuit", "Pumpkin", "Shadow", "Pepper", "Nova", "Mochi", "Luna",
    "Tofu", "Ziggy", "Maple",
];
/// One Chromium at a time: two beside the rest of the suite starve a 2-core machine.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A moderator who appears only in the action the browser test asks for.
const NEW_MOD: &str = "700000000000000042";
const NEW_MOD_NAME: &str = "Playwright Paws";
/// An actor id of the bot's older rows that is not a Discord user id.
const LEGACY_ACTOR: &str = "system";

/// A server over a month of demo actions whose moderators Discord knows by name.
async fn demo_server(backend: &Backend, dashboard: bool) -> (TestApp, String, FakeDiscord) {
    let fake = FakeDiscord::start().await;
    let app = demo_server_on(backend, dashboard, &fake, &[]).await;
    let token = app.token(&[DEMO_GUILD]).await;
    (app, token, fake)
}

async fn demo_server_on(
    backend: &Backend,
    dashboard: bool,
    fake: &FakeDiscord,
    extra: &[&str],
) -> TestApp {
    for (id, name) in moderators(DEMO_GUILD).iter().zip(CAT_NAMES) {
        fake.add_user(
            &id.to_string(),
            FakeUser {
                username: name.to_lowercase(),
                global_name: Some(name.into()),
                avatar: Some(format!("{:032x}", id)),
                ..Default::default()
            },
        );
    }
    fake.add_user(
        NEW_MOD,
        FakeUser {
            username: "paws".into(),
            global_name: Some(NEW_MOD_NAME.into()),
            ..Default::default()
        },
    );
    let mut flags = vec!["--discord-token", "t", "--discord-api-base", &fake.base];
    flags.extend_from_slice(extra);
    let app = if dashboard {
        TestApp::spawn_dashboard(backend, &flags).await
    } else {
        TestApp::spawn_with(backend, &flags).await
    };
    insert_demo_rows(&app.tdb.db, 3_000, DEMO_GUILD, SystemClock.now_s(), 30, 7)
        .await
        .unwrap();
    app
}

fn action(actor: &str, kind: &str) -> NewAction {
    NewAction {
        guild_id: DEMO_GUILD.into(),
        action: kind.into(),
        actor_id: actor.into(),
        subject_id: Some("900000000000000001".into()),
        reason: Some("recorded during the client test".into()),
        ..Default::default()
    }
}

/// `src/schema.d.ts` is what openapi-typescript makes of the committed `openapi.yaml`.
#[test]
fn typescript_types_match_the_document() {
    let out = npm_run(&repo_dir("examples/typescript-client"), "check-generated");
    assert!(out.contains("matches"), "{out}");
}

/// The smoke program type-checks against the generated types, calls every operation and
/// follows the stream across a reconnect, while actions are being recorded.
#[tokio::test]
async fn typescript_client_calls_every_operation() {
    let dir = repo_dir("examples/typescript-client");
    npm_run(&dir, "build");
    for backend in backends() {
        let (app, token, _fake) = demo_server(&backend, false).await;
        // The bot at work: an action every 100 ms while the program runs.
        let recorder = app.api.recorder();
        let moderator = moderators(DEMO_GUILD)[0].to_string();
        let writer = tokio::spawn(async move {
            loop {
                recorder.record(action(&moderator, "claim")).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let smoke = NodeProgram::spawn(
            &dir,
            "dist/smoke.js",
            &[
                ("PAWTROPOLIS_URL", &app.base),
                ("PAWTROPOLIS_TOKEN", &token),
                ("PAWTROPOLIS_GUILD_ID", DEMO_GUILD),
            ],
        );
        let out = smoke.finish(Duration::from_secs(180)).await;
        writer.abort();
        for step in [
            "logs",
            "resolve",
            "metrics",
            "timeseries",
            "latency",
            "config",
            "stream",
        ] {
            assert!(
                out.iter().any(|l| l.starts_with(&format!("ok {step}:"))),
                "{}: no `ok {step}` in\n{}",
                backend.name(),
                out.join("\n")
            );
        }
        app.finish().await;
    }
}

/// The dashboard in Debian's Chromium: chart, pickers, names in the list, and a recorded
/// action appearing live. Leaves a screenshot (`PAWTROPOLIS_SCREENSHOT`, else the temp folder).
#[tokio::test]
async fn dashboard_in_a_real_browser() {
    let _one = BROWSER.lock().await;
    let dir = repo_dir("tests/browser");
    npm_ci(&dir);
    let chromium = chromium();
    for backend in backends() {
        let (app, token, _fake) = demo_server(&backend, true).await;
        let shot = std::env::var("PAWTROPOLIS_SCREENSHOT").unwrap_or_else(|_| {
            std::env::temp_dir()
                .join(format!("pawtropolis-dashboard-{}.png", backend.name()))
                .display()
                .to_string()
        });
        let _ = std::fs::remove_file(&shot);
        // On PostgreSQL ids can commit out of order: a row whose transaction is still open
        // while a later row commits and the page loads (the later row is the newest of the
        // page). It commits when the test records the live action; the page must show it.
        let mut held = None;
        if matches!(backend, Backend::Postgres(_)) {
            let txn = app.tdb.transaction_elsewhere().await;
            let id = id_in(
                &txn,
                "INSERT INTO action_log (guild_id, actor_id, action, created_at_s) VALUES ($1, $2, 'claim', $3) RETURNING id",
                vec![DEMO_GUILD.into(), NEW_MOD.into(), SystemClock.now_s().into()],
            )
            .await;
            let later = app
                .api
                .recorder()
                .record(action(&moderators(DEMO_GUILD)[0].to_string(), "claim"))
                .await
                .unwrap();
            assert!(later > id);
            held = Some((txn, id));
        }
        let mut browser = NodeProgram::spawn(
            &dir,
            "dashboard.mjs",
            &[
                ("PAWTROPOLIS_URL", &app.base),
                ("PAWTROPOLIS_TOKEN", &token),
                ("PAWTROPOLIS_GUILD_ID", DEMO_GUILD),
                ("PAWTROPOLIS_CHROMIUM", chromium.to_str().unwrap()),
                ("PAWTROPOLIS_SCREENSHOT", &shot),
                ("PAWTROPOLIS_KNOWN_NAMES", &CAT_NAMES.join(",")),
                ("PAWTROPOLIS_LEGACY_ACTOR", LEGACY_ACTOR),
            ],
        );
        loop {
            let line = browser.next_line(Duration::from_secs(180)).await;
            match line.as_deref() {
                Some("insert") => {
                    let mut also = String::new();
                    if let Some((txn, id)) = held.take() {
                        txn.commit().await.unwrap();
                        also = format!(" also {id}");
                    }
                    // Rows the bot wrote long ago: an actor that is not a Discord id, and
                    // one with spaces around the id. Neither may keep the new moderator's
                    // name from being asked for, nor spend the resolve budget in a loop.
                    app.api
                        .recorder()
                        .record(action(LEGACY_ACTOR, "claim"))
                        .await
                        .unwrap();
                    let id = app
                        .api
                        .recorder()
                        .record(action(&format!(" {NEW_MOD} "), "approve"))
                        .await
                        .unwrap();
                    browser.send(&format!("{id} {NEW_MOD_NAME}{also}")).await;
                }
                Some(l) if l.starts_with("ok live") => break,
                Some(_) => {}
                None => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    panic!("the browser test ended early:\n{}", browser.output())
                }
            }
        }
        browser.finish(Duration::from_secs(180)).await;
        let png = std::fs::read(&shot).unwrap();
        assert!(
            png.starts_with(b"\x89PNG") && png.len() > 20_000,
            "{shot}: {} bytes",
            png.len()
        );
        app.finish().await;
    }
}

/// The dashboard's "Sign in with Discord": Discord's consent page (the fake's) sends the
/// browser back through the callback; the page then reads the session's guilds, the charts,
/// the log and the live stream by cookie, and signs out.
#[tokio::test]
async fn dashboard_signs_in_with_discord() {
    const ROLE: &str = "555555555555555555";
    let _one = BROWSER.lock().await;
    let dir = repo_dir("tests/browser");
    npm_ci(&dir);
    let chromium = chromium();
    for backend in backends() {
        let fake = FakeDiscord::start().await;
        let moderator = moderators(DEMO_GUILD)[1].to_string();
        fake.add_member(
            DEMO_GUILD,
            &moderator,
            FakeMember {
                roles: vec![ROLE.into()],
                ..Default::default()
            },
        );
        fake.consent_as(&moderator);
        // The login's redirect URI is the public URL's: the server must listen exactly there.
        let bind = format!("127.0.0.1:{}", free_port());
        let public = format!("http://{bind}");
        let app = demo_server_on(
            &backend,
            true,
            &fake,
            &[
                "--bind",
                &bind,
                "--public-url",
                &public,
                "--discord-client-id",
                "test-client",
                "--discord-client-secret",
                "test-secret",
            ],
        )
        .await;
        app.tdb
            .exec(
                "INSERT INTO guild_config (guild_id, reviewer_role_id) VALUES ($1, $2)",
                vec![DEMO_GUILD.into(), ROLE.into()],
            )
            .await;
        let browser = NodeProgram::spawn(
            &dir,
            "dashboard.mjs",
            &[
                ("PAWTROPOLIS_URL", &public),
                ("PAWTROPOLIS_GUILD_ID", DEMO_GUILD),
                ("PAWTROPOLIS_CHROMIUM", chromium.to_str().unwrap()),
                ("PAWTROPOLIS_LOGIN_AS", CAT_NAMES[1]),
            ],
        );
        let out = browser.finish(Duration::from_secs(180)).await;
        assert!(out.iter().any(|l| l.starts_with("ok login:")), "{out:?}");
        assert!(
            out.iter().any(|l| l.starts_with("ok token link:")),
            "{out:?}"
        );
        assert!(out.iter().any(|l| l.starts_with("ok logout:")), "{out:?}");
        assert!(fake.calls().iter().any(|c| c == "oauth authorize"));
        app.finish().await;
    }
}
