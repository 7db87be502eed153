use pawtropolis_tests::{GUILD_A, GUILD_B, TestApp, backends};
use serde_json::json;

const M1: &str = "700000000000000001";
const M2: &str = "700000000000000002";
const M3: &str = "700000000000000003";
const U: &str = "800000000000000001";
const NOW: i64 = 1_000_000;

#[tokio::test]
async fn summary_matches_hand_computed_figures() {
    for backend in backends() {
        let app = TestApp::spawn_with(&backend, &["--now", &NOW.to_string()]).await;
        let token = app.token(&[GUILD_A]).await;
        let db = &app.tdb;
        let ins = |action: &'static str,
                   actor: &'static str,
                   app_id: Option<&'static str>,
                   t: i64| async move {
            db.insert_action(GUILD_A, action, actor, Some(U), app_id, t, None)
                .await;
        };
        ins("app_submitted", U, Some("A"), 400_000).await;
        ins("claim", M1, Some("A"), 400_100).await;
        ins("approve", M1, Some("A"), 401_000).await; // 1000 s
        ins("app_submitted", U, Some("B"), 500_000).await;
        ins("app_submitted", U, Some("B"), 600_000).await; // resubmitted: the latest counts
        ins("reject", M2, Some("B"), 600_500).await; // 500 s
        ins("app_submitted", U, Some("C"), 700_000).await;
        ins("accept", M1, Some("C"), 702_000).await; // 2000 s
        ins("perm_reject", M2, Some("D"), 800_000).await; // no submission: counted, not timed
        ins("app_submitted", U, Some("E"), 390_000).await; // before the window
        ins("approve", M1, Some("E"), 400_000).await; // 10000 s, decided inside
        ins("kick", M2, None, 900_000).await;
        ins("modmail_open", M2, None, 950_000).await;
        ins("something_new", M3, None, 960_000).await; // unknown actions are ignored
        ins("claim", M1, None, NOW - 7 * 86_400).await; // exactly at now - window: out
        ins("claim", M2, None, NOW).await; // exactly now: in
        db.insert_action(GUILD_B, "claim", M1, None, None, 500_000, None)
            .await;

        let (s, body) = app
            .get_json(
                &format!("/api/metrics?guild_id={GUILD_A}&window=7d"),
                &token,
            )
            .await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["window"], "7d");
        assert_eq!(body["end"], "1970-01-12T13:46:40Z");
        let mods = body["moderators"].as_array().unwrap();
        assert_eq!(mods.len(), 2, "{body}");
        assert_eq!(
            mods[0],
            json!({"moderator_id": M2, "claims": 1, "accepts": 0, "rejects": 2, "kicks": 1, "modmail_opens": 1,
                   "decisions_timed": 1, "avg_response_time_s": 500, "p50_response_time_s": 500, "p95_response_time_s": 500}),
            "on {}",
            backend.name()
        );
        assert_eq!(mods[1]["moderator_id"], M1);
        assert_eq!(mods[1]["claims"], 1);
        assert_eq!(mods[1]["accepts"], 3);
        assert_eq!(mods[1]["decisions_timed"], 3);
        // 13,000 / 3 = 4,333.3 s: whole seconds, as the contract shows the mean.
        assert_eq!(mods[1]["avg_response_time_s"], 4_333);
        assert_eq!(mods[1]["p50_response_time_s"], 2000);
        assert_eq!(mods[1]["p95_response_time_s"], 10000);
        assert_eq!(
            body["totals"],
            json!({"submitted": 4, "claims": 2, "accepts": 3, "rejects": 2, "kicks": 1, "modmail_opens": 1,
                   "decisions_timed": 4, "avg_response_time_s": 3375, "p50_response_time_s": 1000, "p95_response_time_s": 10000})
        );

        // Default window is 30d; an empty guild has empty figures with nulls, not zeros.
        let (_, body) = app
            .get_json(&format!("/api/metrics?guild_id={GUILD_A}"), &token)
            .await;
        assert_eq!(body["window"], "30d");
        let token_b = app.token(&[GUILD_B]).await;
        let (_, empty) = app
            .get_json(
                &format!("/api/metrics?guild_id={GUILD_B}&window=7d"),
                &token_b,
            )
            .await;
        assert_eq!(
            empty["totals"]["p50_response_time_s"],
            serde_json::Value::Null
        );
        app.finish().await;
    }
}

#[tokio::test]
async fn etag_and_bad_window() {
    let app = TestApp::spawn_with(&pawtropolis_tests::Backend::Sqlite, &["--now", "1000000"]).await;
    let token = app.token(&[GUILD_A]).await;
    let url = format!("/api/metrics?guild_id={GUILD_A}&window=7d");
    app.assert_revalidates(&url, &token, "private, max-age=300")
        .await;
    // A copy served later from the server's cache may be kept only for what is left of its
    // life, so a browser never shows figures older than the cache's five minutes.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let resp = app.get(&url, &token).await;
    let max_age: u64 = resp.headers()["cache-control"]
        .to_str()
        .unwrap()
        .strip_prefix("private, max-age=")
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..300).contains(&max_age), "{max_age}");
    let (s, body) = app
        .get_json(
            &format!("/api/metrics?guild_id={GUILD_A}&window=8d"),
            &token,
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(
        body["error"]["message"],
        "window must be one of 7d, 30d, 90d"
    );
    app.finish().await;
}
