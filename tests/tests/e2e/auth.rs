//! Every `/api` operation (enumerated from the OpenAPI document, so a new route cannot slip
//! through) refuses missing, unknown and revoked tokens with 401 and other guilds with 403.

use pawtropolis_tests::{GUILD_A, GUILD_B, Op, TestApp, backends, operations, run_cli, send_op};
use serde_json::Value;

async fn send(app: &TestApp, op: &Op, token: Option<&str>) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    send_op(app, op, &headers).await
}

#[tokio::test]
async fn every_route_needs_a_valid_token_for_the_guild() {
    for backend in backends() {
        let app = TestApp::spawn(&backend).await;
        let token_a = app.token(&[GUILD_A]).await;
        let revoked = app.token(&[GUILD_A, GUILD_B]).await;
        run_cli(&app.tdb.url, &["token", "revoke", &revoked])
            .await
            .unwrap();
        for op in operations(&app, GUILD_A).await {
            let what = format!("{} {} on {}", op.method, op.url, backend.name());
            let (s, body) = send(&app, &op, None).await;
            assert_eq!(s, 401, "no token: {what}");
            assert_eq!(body["error"]["code"], "unauthorized", "{what}: {body}");
            let (s, _) = send(&app, &op, Some("paw_not-a-real-token")).await;
            assert_eq!(s, 401, "unknown token: {what}");
            let (s, _) = send(&app, &op, Some(&revoked)).await;
            assert_eq!(s, 401, "revoked token: {what}");
            let (s, _) = send(&app, &op, Some(&token_a)).await;
            assert!((200..300).contains(&s), "token for A on A: {what} gave {s}");
        }
        for op in operations(&app, GUILD_B).await {
            let what = format!("{} {} on {}", op.method, op.url, backend.name());
            let (s, body) = send(&app, &op, Some(&token_a)).await;
            assert_eq!(s, 403, "token for A on B: {what}");
            assert_eq!(body["error"]["code"], "forbidden", "{what}: {body}");
        }
        app.finish().await;
    }
}

#[tokio::test]
async fn tokens_are_stored_hashed_and_listed_without_secrets() {
    for backend in backends() {
        let app = TestApp::spawn(&backend).await;
        let secret = app.token(&[GUILD_A]).await;
        assert!(secret.starts_with("paw_") && secret.len() > 40, "{secret}");
        let rows = app
            .tdb
            .rows("SELECT token_hash, guild_ids FROM api_token", vec![])
            .await;
        let hash: String = rows[0].try_get("", "token_hash").unwrap();
        assert_ne!(hash, secret);
        assert!(!hash.contains(&secret[4..]));
        assert_eq!(hash, pawtropolis_api::auth::tokens::hash_token(&secret));
        let list = run_cli(&app.tdb.url, &["token", "list"]).await.unwrap();
        assert!(list.contains("active") && list.contains(GUILD_A), "{list}");
        assert!(!list.contains(&secret), "token list printed the secret");
        let bad = run_cli(&app.tdb.url, &["token", "create", "--guild", "12"]).await;
        assert!(bad.is_err(), "a bad guild id must be refused");
        app.finish().await;
    }
}

/// A token the server could not check (its table is gone: the database is failing) is a
/// server error, not a 401 that would tell a script to throw the token away; an invalid token
/// is refused as such, not as a missing cookie.
#[tokio::test]
async fn a_token_that_cannot_be_checked_is_a_server_error_not_a_401() {
    for backend in backends() {
        let app = TestApp::spawn(&backend).await;
        let token = app.token(&[GUILD_A]).await;
        let url = format!("/api/logs?guild_id={GUILD_A}");
        let (s, body) = app.get_json(&url, "paw_not-a-real-token").await;
        assert_eq!(s, 401, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("token or session is invalid"),
            "the refusal names the token that was given: {body}"
        );
        app.tdb.exec("DROP TABLE api_token", vec![]).await;
        let (s, body) = app.get_json(&url, &token).await;
        assert!(s >= 500, "{s}: {body}");
        app.finish().await;
    }
}
