//! `?expand=identity` on the logs and the per-moderator metrics, against a fake Discord.

use std::{collections::BTreeSet, time::Duration};

use pawtropolis_tests::{
    Backend, GUILD_A, TestApp, backends,
    fake_discord::{FakeDiscord, FakeMember, FakeUser, Trouble},
};
use serde_json::Value;

const NOW: i64 = 1_761_004_800;
const OK_MOD: &str = "600000000000000001";
const GHOST_MOD: &str = "600000000000000002";
const SLOW_MOD: &str = "600000000000000003";
const USER: &str = "800000000000000001";

fn moderator(i: u64) -> String {
    (610_000_000_000_000_000u64 + i).to_string()
}

async fn start(backend: &Backend, fake: &FakeDiscord) -> (TestApp, String) {
    start_waiting(backend, fake, "2000").await
}

/// [`start`] with Discord lookups cut off after `timeout_ms` (by default 2 s: the fake must
/// answer its known users within it on a loaded machine, and `SLOW_MOD` never answers).
async fn start_waiting(
    backend: &Backend,
    fake: &FakeDiscord,
    timeout_ms: &str,
) -> (TestApp, String) {
    let app = TestApp::spawn_with(
        backend,
        &[
            "--now",
            &NOW.to_string(),
            "--discord-token",
            "t",
            "--discord-api-base",
            &fake.base,
            "--discord-timeout-ms",
            timeout_ms,
        ],
    )
    .await;
    let token = app.token(&[GUILD_A]).await;
    (app, token)
}

/// A fake Discord that knows one member, `OK_MOD` ("okmod"), and the API in front of it.
async fn start_with_okmod(backend: &Backend) -> (FakeDiscord, TestApp, String) {
    let fake = FakeDiscord::start().await;
    fake.add_user(
        OK_MOD,
        FakeUser {
            username: "okmod".into(),
            ..Default::default()
        },
    );
    fake.add_member(GUILD_A, OK_MOD, FakeMember::default());
    let (app, token) = start(backend, &fake).await;
    (fake, app, token)
}

/// One claim by each of `moderators`, a second apart, the last one newest.
async fn claims_by(app: &TestApp, moderators: &[&str]) {
    for (i, m) in moderators.iter().enumerate() {
        app.tdb
            .insert_action(
                GUILD_A,
                "claim",
                m,
                Some(USER),
                None,
                NOW - 100 + i as i64,
                None,
            )
            .await;
    }
}

fn ids_of(warnings: &Value) -> BTreeSet<String> {
    warnings
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn logs_and_metrics_expand_with_partial_failure() {
    for backend in backends() {
        let fake = FakeDiscord::start().await;
        fake.add_user(
            OK_MOD,
            FakeUser {
                username: "okmod".into(),
                global_name: Some("OK Mod".into()),
                ..Default::default()
            },
        );
        fake.add_member(
            GUILD_A,
            OK_MOD,
            FakeMember {
                nick: Some("Captain".into()),
                ..Default::default()
            },
        );
        fake.add_user(
            SLOW_MOD,
            FakeUser {
                username: "slowmod".into(),
                ..Default::default()
            },
        );
        fake.set_trouble(SLOW_MOD, Trouble::Slow(Duration::from_secs(3600)));
        let (app, token) = start(&backend, &fake).await;
        for (i, m) in [OK_MOD, GHOST_MOD, SLOW_MOD, OK_MOD, GHOST_MOD]
            .iter()
            .enumerate()
        {
            app.tdb
                .insert_action(
                    GUILD_A,
                    "approve",
                    m,
                    Some(USER),
                    Some("app"),
                    NOW - 100 + i as i64,
                    None,
                )
                .await;
        }

        // Without expand: the reply is as before and Discord is never asked.
        let (s, plain) = app
            .get_json(&format!("/api/logs?guild_id={GUILD_A}"), &token)
            .await;
        assert_eq!(s, 200);
        assert!(plain.get("warnings").is_none());
        assert!(
            plain["items"][0].get("display_name").is_none()
                && plain["items"][0].get("avatar_url").is_none()
        );
        let (_, plain_metrics) = app
            .get_json(&format!("/api/metrics?guild_id={GUILD_A}"), &token)
            .await;
        assert!(plain_metrics.get("warnings").is_none());
        assert!(
            fake.calls().is_empty(),
            "no expansion, no Discord call: {:?}",
            fake.calls()
        );

        let (s, body) = app
            .get_json(
                &format!("/api/logs?guild_id={GUILD_A}&expand=identity"),
                &token,
            )
            .await;
        assert_eq!(s, 200, "{body}");
        let items = body["items"].as_array().unwrap();
        assert_eq!(items.len(), 5, "every row is present");
        for item in items {
            assert!(
                item["display_name"].is_string() && item["avatar_url"].is_string(),
                "{item}"
            );
            if item["moderator_id"] == OK_MOD {
                assert_eq!(item["display_name"], "Captain");
            } else {
                assert!(
                    item["avatar_url"]
                        .as_str()
                        .unwrap()
                        .contains("/embed/avatars/"),
                    "fallback avatar: {item}"
                );
            }
        }
        assert_eq!(
            ids_of(&body["warnings"]),
            BTreeSet::from([GHOST_MOD.to_owned(), SLOW_MOD.to_owned()])
        );
        let code = |id: &str| {
            body["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .find(|w| w["id"] == id)
                .unwrap()["code"]
                .clone()
        };
        assert_eq!(code(GHOST_MOD), "not_found");
        assert_eq!(code(SLOW_MOD), "discord_unavailable");

        let (s, metrics) = app
            .get_json(
                &format!("/api/metrics?guild_id={GUILD_A}&window=7d&expand=identity"),
                &token,
            )
            .await;
        assert_eq!(s, 200, "{metrics}");
        let mods = metrics["moderators"].as_array().unwrap();
        assert_eq!(mods.len(), 3);
        let ok = mods.iter().find(|m| m["moderator_id"] == OK_MOD).unwrap();
        assert_eq!(ok["display_name"], "Captain");
        assert!(mods.iter().all(|m| m["avatar_url"].is_string()));
        assert_eq!(
            ids_of(&metrics["warnings"]),
            BTreeSet::from([GHOST_MOD.to_owned(), SLOW_MOD.to_owned()])
        );

        // Every page of a filtered listing is expanded.
        let (_, page1) = app
            .get_json(
                &format!("/api/logs?guild_id={GUILD_A}&action=approve&limit=2&expand=identity"),
                &token,
            )
            .await;
        let cursor = page1["next_cursor"].as_str().unwrap().to_owned();
        let (_, page2) = app
            .get_json(&format!("/api/logs?guild_id={GUILD_A}&action=approve&limit=2&expand=identity&cursor={cursor}"), &token)
            .await;
        assert_eq!(page2["items"].as_array().unwrap().len(), 2);
        assert!(
            page2["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i["display_name"].is_string())
        );
        assert!(page2["warnings"].is_array());

        let (s, err) = app
            .get_json(
                &format!("/api/logs?guild_id={GUILD_A}&expand=everything"),
                &token,
            )
            .await;
        assert_eq!(s, 400);
        assert_eq!(err["error"]["message"], "expand must be one of identity");
        app.finish().await;
    }
}

#[tokio::test]
async fn a_page_with_150_moderators_is_resolved_in_batches() {
    for backend in backends() {
        let fake = FakeDiscord::start().await;
        for i in 0..150 {
            let id = moderator(i);
            fake.add_user(
                &id,
                FakeUser {
                    username: format!("mod{i}"),
                    ..Default::default()
                },
            );
            fake.add_member(GUILD_A, &id, FakeMember::default());
        }
        // 150 lookups, 8 at a time, share one wait: give a loaded CI machine room.
        let (app, token) = start_waiting(&backend, &fake, "10000").await;
        for i in 0..150 {
            app.tdb
                .insert_action(
                    GUILD_A,
                    "claim",
                    &moderator(i),
                    Some(USER),
                    None,
                    NOW - 1_000 + i as i64,
                    None,
                )
                .await;
        }
        let (s, body) = app
            .get_json(
                &format!("/api/logs?guild_id={GUILD_A}&limit=150&expand=identity"),
                &token,
            )
            .await;
        assert_eq!(s, 200, "{body}");
        let items = body["items"].as_array().unwrap();
        assert_eq!(items.len(), 150);
        for item in items {
            let i: u64 = item["moderator_id"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                - 610_000_000_000_000_000;
            assert_eq!(item["display_name"], format!("mod{i}"));
        }
        assert_eq!(body["warnings"], serde_json::json!([]));
        let calls = fake.calls();
        let distinct: BTreeSet<&String> = calls.iter().collect();
        assert_eq!(
            (calls.len(), distinct.len()),
            (150, 150),
            "exactly one lookup per moderator"
        );

        // Expansion does not count against the resolve endpoint's rate limit.
        for _ in 0..3 {
            app.get_json(
                &format!("/api/logs?guild_id={GUILD_A}&limit=150&expand=identity"),
                &token,
            )
            .await;
        }
        let resp = app
            .get(
                &format!("/api/users/resolve?guild_id={GUILD_A}&ids={}", moderator(0)),
                &token,
            )
            .await;
        assert_eq!(resp.headers()["x-ratelimit-remaining"], "49");
        app.finish().await;
    }
}

/// When the identities cannot be read at all (here: the cache table is gone), the listing is
/// still served, its moderators unnamed with a warning each.
#[tokio::test]
async fn a_failing_identity_cache_does_not_fail_the_listing() {
    for backend in backends() {
        let fake = FakeDiscord::start().await;
        let (app, token) = start(&backend, &fake).await;
        for m in [OK_MOD, SLOW_MOD] {
            app.tdb
                .insert_action(
                    GUILD_A,
                    "approve",
                    m,
                    Some(USER),
                    Some("app"),
                    NOW - 10,
                    None,
                )
                .await;
        }
        app.tdb.exec("DROP TABLE user_cache", vec![]).await;
        for path in [
            format!("/api/logs?guild_id={GUILD_A}&expand=identity"),
            format!("/api/metrics?guild_id={GUILD_A}&expand=identity"),
        ] {
            let (s, body) = app.get_json(&path, &token).await;
            assert_eq!(s, 200, "{path}: {body}");
            assert_eq!(
                ids_of(&body["warnings"]),
                BTreeSet::from([OK_MOD.to_owned(), SLOW_MOD.to_owned()]),
                "{path}: {body}"
            );
            assert!(
                body["warnings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|w| w["code"] == "lookup_failed"),
                "{body}"
            );
        }
        let (_, body) = app
            .get_json(
                &format!("/api/logs?guild_id={GUILD_A}&expand=identity"),
                &token,
            )
            .await;
        assert_eq!(
            body["items"][0]["display_name"],
            body["items"][0]["moderator_id"]
        );
        // Neither the server nor the browser keeps a reply with warnings.
        let resp = app
            .get(
                &format!("/api/metrics?guild_id={GUILD_A}&expand=identity"),
                &token,
            )
            .await;
        assert_eq!(resp.headers()["cache-control"], "private, max-age=0");
        assert!(fake.calls().is_empty(), "nothing is asked of Discord");
        app.finish().await;
    }
}

/// A summary whose only warnings would come back on every request (an id Discord does not
/// know, an id that is not one) is cached like one without: its queries do not run again, and
/// Discord is not asked again. A slow Discord's warning is not kept (see above).
#[tokio::test]
async fn lasting_warnings_do_not_stop_the_summary_being_cached() {
    for backend in backends() {
        let (fake, app, token) = start_with_okmod(&backend).await;
        claims_by(&app, &[OK_MOD, GHOST_MOD, "legacy-mod"]).await;
        let url = format!("/api/metrics?guild_id={GUILD_A}&window=7d&expand=identity");
        let (s, first) = app.get_json(&url, &token).await;
        assert_eq!(s, 200, "{first}");
        let codes: BTreeSet<String> = first["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                format!(
                    "{} {}",
                    w["id"].as_str().unwrap(),
                    w["code"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            codes,
            BTreeSet::from([
                format!("{GHOST_MOD} not_found"),
                "legacy-mod invalid_id".to_owned()
            ])
        );
        let asked = fake.calls().len();
        assert!(asked > 0);
        // A row written now would change an uncached summary; the cached one stays as it was.
        app.tdb
            .insert_action(GUILD_A, "claim", OK_MOD, Some(USER), None, NOW - 10, None)
            .await;
        let resp = app.get(&url, &token).await;
        assert_ne!(resp.headers()["cache-control"], "private, max-age=0");
        let again: Value = resp.json().await.unwrap();
        assert_eq!(again, first, "served from the cache");
        assert_eq!(fake.calls().len(), asked, "Discord is not asked again");
        app.finish().await;
    }
}

/// A row whose `actor_id` has spaces around the digits (written by hand or by an old tool) is
/// named like the others, or warned about under its own spelling, and the moderator is asked
/// for once.
#[tokio::test]
async fn a_moderator_id_spelled_with_spaces_is_named() {
    for backend in backends() {
        let (fake, app, token) = start_with_okmod(&backend).await;
        let padded = format!(" {OK_MOD}\n");
        let ghost = format!("{GHOST_MOD} ");
        // Another id Discord does not know, only ever written padded.
        let only_padded = " 600000000000000009";
        claims_by(&app, &[only_padded, GHOST_MOD, &ghost, OK_MOD, &padded]).await;
        let (s, page) = app
            .get_json(
                &format!("/api/logs?guild_id={GUILD_A}&expand=identity"),
                &token,
            )
            .await;
        assert_eq!(s, 200, "{page}");
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), 5);
        assert_eq!(items[0]["moderator_id"], padded.as_str(), "kept as written");
        for item in &items[..2] {
            assert_eq!(item["display_name"], "okmod", "{item}");
        }
        // A warning under each spelling the rows use, so that a client finds its rows', and
        // none under a spelling no row has.
        assert_eq!(
            ids_of(&page["warnings"]),
            BTreeSet::from([GHOST_MOD.to_owned(), ghost.clone(), only_padded.to_owned()])
        );
        assert_eq!(page["warnings"].as_array().map(Vec::len), Some(3));
        assert_eq!(fake.calls_for(OK_MOD), 1, "one lookup: {:?}", fake.calls());
        app.finish().await;
    }
}
