//! Every `/api` operation (enumerated from the OpenAPI document, so a new route cannot slip
//! through) refuses missing, unknown and revoked tokens with 401 and other guilds with 403.

use pawtropolis_tests::{GUILD_A, GUILD_B, TestApp, backends, run_cli};
use reqwest::Method;
use serde_json::Value;

/// A valid value for a required parameter, from its schema.
fn sample(param: &Value, guild: &str) -> String {
    let name = param["name"].as_str().unwrap();
    let schema = &param["schema"];
    if name == "guild_id" {
        return guild.to_owned();
    }
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.as_str().unwrap().to_owned();
    }
    if schema["pattern"]
        .as_str()
        .is_some_and(|p| p.contains("17,20"))
        || name.ends_with("id")
        || name == "ids"
    {
        return "333333333333333333".to_owned();
    }
    match schema["type"].as_str() {
        Some("integer") => "1".to_owned(),
        _ => "x".to_owned(),
    }
}

struct Op {
    method: Method,
    url: String,
}

async fn operations(app: &TestApp, guild: &str) -> Vec<Op> {
    let doc: Value = app
        .client
        .get(format!("{}/api/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let mut query = Vec::new();
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "query" && p["required"] == true {
                    query.push(format!(
                        "{}={}",
                        p["name"].as_str().unwrap(),
                        sample(p, guild)
                    ));
                }
            }
            ops.push(Op {
                method: method.to_uppercase().parse().unwrap(),
                url: format!("{}{path}?{}", app.base, query.join("&")),
            });
        }
    }
    assert!(
        ops.len() >= 4,
        "the document lists too few operations: {}",
        ops.len()
    );
    ops
}

async fn send(app: &TestApp, op: &Op, token: Option<&str>) -> (u16, Value) {
    let mut req = app.client.request(op.method.clone(), &op.url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if op.method == Method::PUT || op.method == Method::POST {
        req = req.json(&serde_json::json!({"min_join_age_hours": 1}));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    // A live stream never ends: its status is the answer.
    if resp
        .headers()
        .get("content-type")
        .is_some_and(|c| c == "text/event-stream")
    {
        return (status, Value::Null);
    }
    (status, resp.json().await.unwrap_or(Value::Null))
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
