use std::collections::HashSet;

use pawtropolis_tests::{GUILD_A, GUILD_B, TestApp, backends};

const MOD1: &str = "700000000000000001";
const MOD2: &str = "700000000000000002";
const USER: &str = "800000000000000001";

#[tokio::test]
async fn pages_walk_every_row_exactly_once_newest_first() {
    for backend in backends() {
        let app = TestApp::spawn(&backend).await;
        let token = app.token(&[GUILD_A]).await;
        // Many rows share a timestamp: the cursor must break ties by id.
        let mut expected = Vec::new();
        for i in 0..53i64 {
            let id = app
                .tdb
                .insert_action(
                    GUILD_A,
                    "claim",
                    MOD1,
                    Some(USER),
                    None,
                    1_700_000_000 + (i / 5) * 10,
                    None,
                )
                .await;
            expected.push((1_700_000_000 + (i / 5) * 10, id));
        }
        app.tdb
            .insert_action(GUILD_B, "claim", MOD1, None, None, 1_700_000_000, None)
            .await;
        expected.sort_by(|a, b| b.cmp(a));
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut path = format!("/api/logs?guild_id={GUILD_A}&limit=7");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let (s, body) = app.get_json(&path, &token).await;
            assert_eq!(s, 200, "{body}");
            for item in body["items"].as_array().unwrap() {
                assert_eq!(item["guild_id"], GUILD_A);
                seen.push((
                    item["created_at_s"].as_i64().unwrap(),
                    item["id"].as_i64().unwrap(),
                ));
            }
            pages += 1;
            // A row arriving mid-walk is newer than the cursor and must not shift later pages.
            if pages == 2 {
                app.tdb
                    .insert_action(GUILD_A, "claim", MOD1, None, None, 1_800_000_000, None)
                    .await;
            }
            match body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        assert_eq!(pages, 8);
        assert_eq!(seen, expected, "on {}", backend.name());
        let unique: HashSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), 53);
        app.finish().await;
    }
}

#[tokio::test]
async fn filters_combine() {
    for backend in backends() {
        let app = TestApp::spawn(&backend).await;
        let token = app.token(&[GUILD_A]).await;
        let db = &app.tdb;
        db.insert_action(
            GUILD_A,
            "app_submitted",
            USER,
            Some(USER),
            Some("app-1"),
            1_000,
            None,
        )
        .await;
        db.insert_action(
            GUILD_A,
            "claim",
            MOD1,
            Some(USER),
            Some("app-1"),
            2_000,
            None,
        )
        .await;
        db.insert_action(
            GUILD_A,
            "approve",
            MOD1,
            Some(USER),
            Some("app-1"),
            3_000,
            None,
        )
        .await;
        db.insert_action(
            GUILD_A,
            "reject",
            MOD2,
            Some("800000000000000002"),
            Some("app-2"),
            4_000,
            None,
        )
        .await;
        db.insert_action(GUILD_A, "kick", MOD2, Some(USER), None, 5_000, None)
            .await;
        let ids = |body: &serde_json::Value| -> Vec<String> {
            body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["action"].as_str().unwrap().to_owned())
                .collect()
        };
        let q = |extra: &str| format!("/api/logs?guild_id={GUILD_A}{extra}");
        let (_, b) = app
            .get_json(&q("&action=approve&action=reject"), &token)
            .await;
        assert_eq!(ids(&b), ["reject", "approve"]);
        let (_, b) = app.get_json(&q("&action=approve,kick"), &token).await;
        assert_eq!(ids(&b), ["kick", "approve"]);
        let (_, b) = app
            .get_json(&q(&format!("&moderator_id={MOD2}")), &token)
            .await;
        assert_eq!(ids(&b), ["kick", "reject"]);
        let (_, b) = app
            .get_json(&q(&format!("&subject_id={USER}&app_id=app-1")), &token)
            .await;
        assert_eq!(ids(&b), ["approve", "claim", "app_submitted"]);
        let (_, b) = app
            .get_json(&q("&since=2000&until=1970-01-01T01:06:40Z"), &token)
            .await;
        assert_eq!(ids(&b), ["reject", "approve", "claim"]);
        // A fraction of a second: "at or after" 2000.5 starts at 2001, "at or before" 4000.5
        // ends at 4000.
        let (_, b) = app
            .get_json(
                &q("&since=1970-01-01T00:33:20.5Z&until=1970-01-01T01:06:40.5Z"),
                &token,
            )
            .await;
        assert_eq!(ids(&b), ["reject", "approve"]);
        let (s, b) = app
            .get_json(
                &q("&since=1970-01-01T00:33:20.5Z&until=1970-01-01T00:33:20.7Z"),
                &token,
            )
            .await;
        assert_eq!(
            (s, ids(&b).len()),
            (200, 0),
            "a range within one second is empty"
        );
        // A blank filter field means "any", as a filter form sends it.
        let (_, b) = app.get_json(&q("&app_id=&action="), &token).await;
        assert_eq!(ids(&b).len(), 5);
        let (_, b) = app
            .get_json(
                &q(&format!(
                    "&moderator_id={MOD1}&action=claim&since=1970-01-01T00:16:40Z"
                )),
                &token,
            )
            .await;
        assert_eq!(ids(&b), ["claim"]);
        let item = &b["items"][0];
        for field in [
            "id",
            "guild_id",
            "action",
            "moderator_id",
            "subject_id",
            "app_id",
            "app_code",
            "reason",
            "meta",
            "created_at",
            "created_at_s",
        ] {
            assert!(item.get(field).is_some(), "item lacks {field}: {item}");
        }
        assert!(
            item.get("display_name").is_none(),
            "no expansion fields without expand"
        );
        app.finish().await;
    }
}

#[tokio::test]
async fn bad_parameters_are_400_naming_the_parameter() {
    let app = TestApp::spawn(&pawtropolis_tests::Backend::Sqlite).await;
    let token = app.token(&[GUILD_A]).await;
    for (query, message) in [
        ("limit=0", "limit must be at least 1"),
        ("limit=501", "limit must be at most 500"),
        ("limit=abc", "limit must be a whole number, not negative"),
        ("limit=-1", "limit must be a whole number, not negative"),
        ("limit=5000000000", "limit is too large"),
        ("since=yesterday", "since"),
        ("until=12:00", "until"),
        (
            "moderator_id=123",
            "moderator_id must be a Discord snowflake",
        ),
        ("subject_id=abc", "subject_id must be a Discord snowflake"),
        ("cursor=garbage", "cursor"),
        ("since=200&until=100", "since must not be after until"),
    ] {
        let (s, body) = app
            .get_json(&format!("/api/logs?guild_id={GUILD_A}&{query}"), &token)
            .await;
        assert_eq!(s, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "invalid_parameter");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(message),
            "{query}: {body}"
        );
    }
    // Every field of a filter form sent blank, as a form sends them: the same as left out,
    // typed ones (snowflakes, numbers, enums) included.
    app.tdb
        .insert_action(GUILD_A, "claim", MOD1, Some(USER), Some("app"), 1_000, None)
        .await;
    let (_, plain) = app
        .get_json(&format!("/api/logs?guild_id={GUILD_A}"), &token)
        .await;
    let (s, body) = app
        .get_json(
            &format!(
                "/api/logs?guild_id={GUILD_A}&since=&until=%20&action=&app_id=+&cursor=\
                 &moderator_id=&subject_id=%09&limit=&expand="
            ),
            &token,
        )
        .await;
    assert_eq!((s, &body), (200, &plain));
    assert_eq!(plain["items"].as_array().map(Vec::len), Some(1));
    let (s, body) = app.get_json("/api/logs?guild_id=", &token).await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["error"]["message"], "guild_id is required", "{body}");
    let (_, plain) = app
        .get_json(
            &format!("/api/metrics/timeseries?guild_id={GUILD_A}"),
            &token,
        )
        .await;
    let (s, body) = app
        .get_json(
            &format!("/api/metrics/timeseries?guild_id={GUILD_A}&window=&bucket=&tz="),
            &token,
        )
        .await;
    assert_eq!((s, &body), (200, &plain));
    assert_eq!(plain["buckets"].as_array().map(Vec::len), Some(169));
    // The stream's resume id, refused by its schema's minimum, in the same words.
    let (s, body) = app
        .get_json(
            &format!("/api/logs/stream?guild_id={GUILD_A}&last_event_id=-1"),
            &token,
        )
        .await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["error"]["message"], "last_event_id must be at least 0");
    let (s, body) = app.get_json("/api/logs?guild_id=12", &token).await;
    assert_eq!(s, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("guild_id"),
        "{body}"
    );
    let (s, body) = app.get_json("/api/logs", &token).await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["error"]["message"], "guild_id is required", "{body}");
    // Two spellings of one id would slip past de-duplication and cache keys.
    let (s, body) = app
        .get_json(&format!("/api/logs?guild_id=0{GUILD_A}"), &token)
        .await;
    assert_eq!(s, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no leading zero"),
        "{body}"
    );
    let (s, _) = app
        .get_json(&format!("/api/logs?guild_id={GUILD_A}&limit=500"), &token)
        .await;
    assert_eq!(s, 200);
    app.finish().await;
}
