use pawtropolis_tests::{Backend, TestApp};

/// The committed `openapi.yaml` is exactly what the code generates.
#[test]
fn committed_openapi_yaml_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.yaml");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let generated = pawtropolis_api::openapi_yaml();
    assert!(
        committed == generated,
        "openapi.yaml is stale: run `cargo run -p pawtropolis-server -- openapi > openapi.yaml`"
    );
}

/// The served document is the generated one, every operation has a description, and every
/// parameter and schema property is described.
#[tokio::test]
async fn served_document_is_complete() {
    let app = TestApp::spawn(&Backend::Sqlite).await;
    let resp = app
        .client
        .get(format!("{}/api/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let doc: serde_json::Value = resp.json().await.unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.contains_key("/api/logs"), "{:?}", paths.keys());
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let where_ = format!("{method} {path}");
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{where_}: no summary"
            );
            assert!(
                op["description"].as_str().is_some_and(|s| !s.is_empty()),
                "{where_}: no description"
            );
            assert!(
                !op["security"].as_array().unwrap().is_empty(),
                "{where_}: no security"
            );
            for p in op["parameters"].as_array().into_iter().flatten() {
                assert!(
                    p["description"].as_str().is_some_and(|s| !s.is_empty()),
                    "{where_}: parameter {} has no description",
                    p["name"]
                );
            }
        }
    }
    // The contract's defaults are in the document, where generated clients see them.
    let default_of = |path: &str, name: &str| {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["schema"]["default"].clone())
    };
    for (path, name, default) in [
        ("/api/metrics", "window", "30d"),
        ("/api/metrics/timeseries", "window", "7d"),
        ("/api/metrics/timeseries", "bucket", "1h"),
        ("/api/metrics/latency", "window", "7d"),
        ("/api/metrics/latency", "bucket", "1h"),
    ] {
        assert_eq!(
            default_of(path, name),
            Some(serde_json::json!(default)),
            "{path} {name}"
        );
    }
    for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
        for (prop, v) in schema["properties"].as_object().into_iter().flatten() {
            let described = v["description"].as_str().is_some_and(|s| !s.is_empty())
                || v.get("$ref").is_some()
                || v["allOf"].is_array();
            assert!(described, "schema {name}.{prop} has no description");
        }
    }
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert!(schemes.contains_key("bearerToken") && schemes.contains_key("sessionCookie"));
    let ui = app
        .client
        .get(format!("{}/api/docs", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ui.status(), 200);
    assert!(ui.text().await.unwrap().contains("swagger"));
    app.finish().await;
}

/// A method a path does not answer gets 405 with the `Allow` header RFC 9110 requires,
/// listing what the path answers: for every path of the served document (its documented
/// methods, and HEAD beside GET), the document and its viewer, and `/health`.
#[tokio::test]
async fn undeclared_methods_are_405_with_allow() {
    let app = TestApp::spawn(&Backend::Sqlite).await;
    let token = app.token(&[pawtropolis_tests::GUILD_A]).await;
    let ops = pawtropolis_tests::operations(&app, pawtropolis_tests::GUILD_A).await;
    let mut expected: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for op in &ops {
        let path = op.url.split('?').next().unwrap().to_owned();
        expected
            .entry(path)
            .or_default()
            .push(op.method.as_str().to_owned());
    }
    for path in ["/api/docs", "/api/openapi.json", "/health"] {
        expected.insert(format!("{}{path}", app.base), vec!["GET".to_owned()]);
    }
    for (url, mut methods) in expected {
        if methods.iter().any(|m| m == "GET") {
            methods.push("HEAD".to_owned());
        }
        methods.sort();
        let resp = app
            .client
            .delete(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405, "DELETE {url}");
        let mut allow: Vec<String> = resp.headers()["allow"]
            .to_str()
            .unwrap()
            .split(", ")
            .map(str::to_owned)
            .collect();
        allow.sort();
        assert_eq!(allow, methods, "Allow of {url}");
    }
    app.finish().await;
}
