use pawtropolis_tests::{GUILD_A, GUILD_B, TestApp, backends};
use serde_json::json;

#[tokio::test]
async fn read_update_and_audit() {
    for backend in backends() {
        let app = TestApp::spawn(&backend).await;
        let token = app.token(&[GUILD_A]).await;
        let (s, cfg) = app
            .get_json(&format!("/api/config?guild_id={GUILD_A}"), &token)
            .await;
        assert_eq!(s, 200);
        assert_eq!(cfg["reapply_cooldown_hours"], 24);
        assert_eq!(cfg["reviewer_role_id"], serde_json::Value::Null);

        let url = format!("{}/api/config?guild_id={GUILD_A}", app.base);
        let put =
            |body: serde_json::Value| app.client.put(&url).bearer_auth(&token).json(&body).send();
        // Setting a default to itself changes nothing: the guild still has the defaults.
        let body: serde_json::Value = put(json!({"reapply_cooldown_hours": 24}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["changed"], json!([]));
        assert_eq!(
            body["config"]["updated_at"],
            serde_json::Value::Null,
            "{body}"
        );
        let (_, cfg) = app
            .get_json(&format!("/api/config?guild_id={GUILD_A}"), &token)
            .await;
        assert_eq!(cfg["updated_at"], serde_json::Value::Null, "{cfg}");
        let resp =
            put(json!({"reviewer_role_id": "900000000000000001", "reapply_cooldown_hours": 48}))
                .await
                .unwrap();
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["config"]["reviewer_role_id"], "900000000000000001");
        assert_eq!(body["config"]["reapply_cooldown_hours"], 48);
        // Stored in the bot's `datetime('now')` form, answered in RFC 3339 like every time.
        let at = body["config"]["updated_at"].as_str().unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_rfc3339(at).is_ok() && at.ends_with('Z'),
            "{body}"
        );
        let stored: String = app
            .tdb
            .rows(
                "SELECT updated_at FROM guild_config WHERE guild_id = $1",
                vec![GUILD_A.into()],
            )
            .await[0]
            .try_get("", "updated_at")
            .unwrap();
        assert!(
            chrono::NaiveDateTime::parse_from_str(&stored, "%Y-%m-%d %H:%M:%S").is_ok(),
            "{stored}"
        );
        // A row the bot wrote.
        app.tdb
            .exec(
                "INSERT INTO guild_config (guild_id, updated_at) VALUES ($1, '2025-01-02 03:04:05')",
                vec![GUILD_B.into()],
            )
            .await;
        let token_b = app.token(&[GUILD_B]).await;
        let (_, cfg_b) = app
            .get_json(&format!("/api/config?guild_id={GUILD_B}"), &token_b)
            .await;
        assert_eq!(cfg_b["updated_at"], "2025-01-02T03:04:05Z", "{cfg_b}");
        let mut changed: Vec<String> = serde_json::from_value(body["changed"].clone()).unwrap();
        changed.sort();
        assert_eq!(changed, ["reapply_cooldown_hours", "reviewer_role_id"]);

        // Same values again: nothing changes, nothing is recorded.
        let body: serde_json::Value = put(json!({"reapply_cooldown_hours": 48}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["changed"], json!([]));
        // Clearing a role.
        let body: serde_json::Value = put(json!({"reviewer_role_id": null}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["config"]["reviewer_role_id"], serde_json::Value::Null);

        let rows = app
            .tdb
            .rows("SELECT user_id, field_key, old_value, new_value, source, created_at FROM config_audit_log ORDER BY id", vec![])
            .await;
        let audit: Vec<(String, String, Option<String>, Option<String>)> = rows
            .iter()
            .map(|r| {
                (
                    r.try_get("", "user_id").unwrap(),
                    r.try_get("", "field_key").unwrap(),
                    r.try_get("", "old_value").unwrap(),
                    r.try_get("", "new_value").unwrap(),
                )
            })
            .collect();
        assert_eq!(audit.len(), 3, "{audit:?}");
        // The bot's layout: an API token's changes come from the `api`, at a time in SQLite's
        // `datetime('now')` format.
        for r in &rows {
            assert_eq!(r.try_get::<String>("", "source").unwrap(), "api");
            let at: String = r.try_get("", "created_at").unwrap();
            assert!(
                chrono::NaiveDateTime::parse_from_str(&at, "%Y-%m-%d %H:%M:%S").is_ok(),
                "{at}"
            );
        }
        assert!(audit.iter().all(|a| a.0.starts_with("token:")));
        assert!(audit.contains(&(
            "token:1".into(),
            "reapply_cooldown_hours".into(),
            Some("24".into()),
            Some("48".into())
        )));
        assert!(audit.contains(&(
            "token:1".into(),
            "reviewer_role_id".into(),
            None,
            Some("900000000000000001".into())
        )));
        assert!(audit.contains(&(
            "token:1".into(),
            "reviewer_role_id".into(),
            Some("900000000000000001".into()),
            None
        )));

        for (body, field) in [
            (json!({"reviewer_role_id": "123"}), "reviewer_role_id"),
            (
                json!({"gate_channel_id": 900000000000000001u64}),
                "gate_channel_id",
            ),
            (json!({"min_join_age_hours": -1}), "min_join_age_hours"),
            (
                json!({"min_account_age_hours": "5"}),
                "min_account_age_hours",
            ),
            (
                json!({"reapply_cooldown_hours": 1.5}),
                "reapply_cooldown_hours",
            ),
            (json!({"favourite_colour": "red"}), "favourite_colour"),
        ] {
            let resp = put(body.clone()).await.unwrap();
            assert_eq!(resp.status(), 400, "{body}");
            let err: serde_json::Value = resp.json().await.unwrap();
            assert!(
                err["error"]["message"].as_str().unwrap().contains(field),
                "{body}: {err}"
            );
        }
        let resp = app
            .client
            .put(&url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body("[1]")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        let resp = app
            .client
            .put(&url)
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body("{")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        app.finish().await;
    }
}

#[tokio::test]
async fn cross_origin_updates_are_refused() {
    let app = TestApp::spawn_with(
        &pawtropolis_tests::Backend::Sqlite,
        &["--public-url", "https://dash.example.org"],
    )
    .await;
    let token = app.token(&[GUILD_A]).await;
    let url = format!("{}/api/config?guild_id={GUILD_A}", app.base);
    let send = |origin: Option<&'static str>| {
        let mut req = app
            .client
            .put(&url)
            .bearer_auth(&token)
            .json(&json!({"min_join_age_hours": 2}));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send()
    };
    let resp = send(Some("https://evil.example.com")).await.unwrap();
    assert_eq!(resp.status(), 403);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_origin");
    assert_eq!(
        send(Some("https://dash.example.org"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(send(None).await.unwrap().status(), 200);
    let rows = app
        .tdb
        .rows("SELECT COUNT(*) AS n FROM config_audit_log", vec![])
        .await;
    assert_eq!(
        rows[0].try_get::<i64>("", "n").unwrap(),
        1,
        "the refused update must not be recorded"
    );
    app.finish().await;
}

/// Concurrent edits of one field are recorded as one chain of changes: each audit row's old
/// value is the previous row's new value, from the default to what the guild holds now. (On
/// PostgreSQL this needs the existing row locked; on SQLite the write lock does it.)
#[tokio::test]
async fn concurrent_edits_record_one_chain_of_changes() {
    for backend in backends() {
        let app = TestApp::spawn(&backend).await;
        let token = app.token(&[GUILD_A]).await;
        let url = format!("{}/api/config?guild_id={GUILD_A}", app.base);
        let edits = (0..12u64).map(|i| {
            let body = json!({ "admin_role_id": (900_000_000_000_000_100u64 + i).to_string() });
            app.client.put(&url).bearer_auth(&token).json(&body).send()
        });
        for resp in futures_util::future::join_all(edits).await {
            assert_eq!(resp.unwrap().status(), 200);
        }
        let rows = app
            .tdb
            .rows(
                "SELECT old_value, new_value FROM config_audit_log WHERE field_key = 'admin_role_id' ORDER BY id",
                vec![],
            )
            .await;
        let chain: Vec<(Option<String>, Option<String>)> = rows
            .iter()
            .map(|r| {
                (
                    r.try_get("", "old_value").unwrap(),
                    r.try_get("", "new_value").unwrap(),
                )
            })
            .collect();
        assert_eq!(chain.len(), 12, "every edit changed the field: {chain:?}");
        let mut held: Option<String> = None;
        for (old, new) in &chain {
            assert_eq!(
                old, &held,
                "an edit recorded a value the field no longer held: {chain:?}"
            );
            held = new.clone();
        }
        let (_, cfg) = app
            .get_json(&format!("/api/config?guild_id={GUILD_A}"), &token)
            .await;
        assert_eq!(cfg["admin_role_id"].as_str(), held.as_deref());
        app.finish().await;
    }
}

/// A body too large is 413; a caller who may not edit the guild gets 403 whatever the body
/// holds (it is parsed only after the access check).
#[tokio::test]
async fn oversized_bodies_are_413_and_access_is_checked_before_the_body() {
    for backend in backends() {
        let app = TestApp::spawn(&backend).await;
        let token = app.token(&[GUILD_A]).await;
        let put = |guild: &str, body: String| {
            app.client
                .put(format!("{}/api/config?guild_id={guild}", app.base))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(body)
                .send()
        };
        let big = format!("{{\"reviewer_role_id\": \"{}\"}}", "9".repeat(70_000));
        let resp = put(GUILD_A, big).await.unwrap();
        assert_eq!(resp.status(), 413);
        let err: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["code"], "payload_too_large", "{err}");
        let resp = put(pawtropolis_tests::GUILD_B, "{".into()).await.unwrap();
        assert_eq!(
            resp.status(),
            403,
            "another guild: refused before the body is read"
        );
        let resp = put(GUILD_A, "{".into()).await.unwrap();
        assert_eq!(resp.status(), 400);
        app.finish().await;
    }
}
