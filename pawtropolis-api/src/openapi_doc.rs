//! The OpenAPI document as committed and served: poem-openapi's output with two corrections
//! that generated clients depend on (header names as HTTP spells them, and nullable reply
//! fields marked as always present), and the bounds of the config update body that
//! poem-openapi cannot state (at least one field, and no other).

use std::{collections::BTreeSet, sync::LazyLock};

use poem::{
    IntoResponse, Response, handler,
    http::header,
    web::{Html, WithContentType},
};
use serde_json::Value;

/// The three renderings of the corrected document, built once.
struct Documents {
    json: String,
    yaml: String,
    swagger_html: String,
}

static DOCUMENTS: LazyLock<Documents> = LazyLock::new(|| {
    let service = crate::openapi_service();
    let raw = service.spec();
    let mut doc: Value = serde_json::from_str(&raw).expect("poem-openapi writes valid JSON");
    polish(&mut doc);
    let json = serde_json::to_string_pretty(&doc).expect("a JSON value serializes");
    let yaml = serde_yaml::to_string(&doc).expect("a JSON value serializes as YAML");
    // Swagger UI embeds the document; give it the corrected one.
    let swagger_html = service.swagger_ui_html().replacen(&raw, &json, 1);
    Documents {
        json,
        yaml,
        swagger_html,
    }
});

/// The corrected document as YAML.
pub(crate) fn yaml() -> &'static str {
    &DOCUMENTS.yaml
}

/// The corrected document as JSON.
pub(crate) fn json() -> &'static str {
    &DOCUMENTS.json
}

/// `GET /api/openapi.json`.
#[handler]
pub(crate) fn spec_endpoint() -> WithContentType<&'static str> {
    DOCUMENTS
        .json
        .as_str()
        .with_content_type("application/json")
}

/// `GET /api/docs`: Swagger UI over the corrected document.
#[handler]
pub(crate) fn swagger_ui() -> Response {
    Html(DOCUMENTS.swagger_html.as_str())
        .with_header(header::CACHE_CONTROL, "no-cache")
        .into_response()
}

/// Response headers as HTTP and their RFCs spell them. poem-openapi upper-cases header names,
/// and generators copy them verbatim into types; names not listed here come out lower-case,
/// which HTTP treats the same.
const HEADER_NAMES: &[&str] = &[
    "Cache-Control",
    "ETag",
    "Retry-After",
    "X-Accel-Buffering",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
];

fn canonical_header(name: &str) -> String {
    HEADER_NAMES
        .iter()
        .find(|h| h.eq_ignore_ascii_case(name))
        .map_or_else(|| name.to_ascii_lowercase(), |h| (*h).to_owned())
}

/// Applies the corrections to a poem-openapi document.
fn polish(doc: &mut Value) {
    rename_headers(doc);
    rate_limit_headers_on_errors(doc);
    // `PUT /api/config` refuses a body that changes nothing, or names an unknown field.
    if let Some(update) = doc
        .pointer_mut("/components/schemas/GuildConfigUpdate")
        .and_then(Value::as_object_mut)
    {
        update.insert("minProperties".into(), 1.into());
        update.insert("additionalProperties".into(), false.into());
    }
    let request_schemas = request_body_schemas(doc);
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for (name, schema) in schemas.iter_mut() {
            if !request_schemas.contains(name) {
                require_nullable_properties(schema);
            }
        }
    }
}

/// `resolveUsers` counts a request once its caller may read the guild, before it reads `ids`,
/// so its 400 and 500 replies carry the limit headers too, when the request was counted.
/// poem-openapi describes the error replies once for every operation; this adds the headers to
/// that operation's, saying when they come.
fn rate_limit_headers_on_errors(doc: &mut Value) {
    let Some(op) = doc.pointer_mut("/paths/~1api~1users~1resolve/get") else {
        return;
    };
    let Some(headers) = op
        .pointer("/responses/200/headers")
        .and_then(Value::as_object)
    else {
        return;
    };
    let limit: serde_json::Map<String, Value> = headers
        .iter()
        .filter(|(name, _)| name.starts_with("X-RateLimit-"))
        .map(|(name, header)| {
            let mut header = header.clone();
            header["description"] = format!(
                "{} Sent when the limit is on and counted the request: not for a missing or \
                 malformed `guild_id`, nor before the guild check.",
                header["description"].as_str().unwrap_or_default()
            )
            .into();
            (name.clone(), header)
        })
        .collect();
    for code in ["400", "500"] {
        if let Some(response) = op
            .pointer_mut(&format!("/responses/{code}"))
            .and_then(Value::as_object_mut)
        {
            let headers = response
                .entry("headers")
                .or_insert_with(|| Value::Object(Default::default()));
            if let Some(headers) = headers.as_object_mut() {
                headers.extend(limit.clone());
            }
        }
    }
}

fn rename_headers(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for op in paths.values_mut().filter_map(Value::as_object_mut) {
        for operation in op.values_mut() {
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            for response in responses.values_mut() {
                if let Some(headers) = response.get_mut("headers").and_then(Value::as_object_mut) {
                    let renamed = std::mem::take(headers)
                        .into_iter()
                        .map(|(k, v)| (canonical_header(&k), v))
                        .collect();
                    *headers = renamed;
                }
            }
        }
    }
}

/// Names of the component schemas a request body refers to, directly or through others.
/// Their optional fields may really be left out, so they stay optional.
fn request_body_schemas(doc: &Value) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut pending: Vec<String> = Vec::new();
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        for op in paths.values().filter_map(Value::as_object) {
            for operation in op.values() {
                if let Some(body) = operation.get("requestBody") {
                    collect_refs(body, &mut pending);
                }
            }
        }
    }
    while let Some(name) = pending.pop() {
        if found.insert(name.clone())
            && let Some(schema) = doc.pointer(&format!("/components/schemas/{name}"))
        {
            collect_refs(schema, &mut pending);
        }
    }
    found
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        if let Some(name) = r.strip_prefix("#/components/schemas/") {
                            out.push(name.to_owned());
                        }
                    }
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// In a reply schema a nullable field is always sent (as `null` when empty): list it as
/// required, so that clients get `T | null` rather than an optional `T`. Fields that are left
/// out when empty are not nullable and stay optional.
fn require_nullable_properties(schema: &mut Value) {
    let nullable: Vec<String> = schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, p)| p.get("nullable") == Some(&Value::Bool(true)))
        .map(|(k, _)| k.clone())
        .collect();
    if nullable.is_empty() {
        return;
    }
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    let required = obj
        .entry("required")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(list) = required {
        for name in nullable {
            if !list.iter().any(|v| v.as_str() == Some(name.as_str())) {
                list.push(Value::String(name));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_spelled_as_http_does() {
        let doc: Value = serde_json::from_str(json()).unwrap();
        let mut seen = BTreeSet::new();
        for op in doc["paths"].as_object().unwrap().values() {
            for operation in op.as_object().unwrap().values() {
                for response in operation["responses"].as_object().unwrap().values() {
                    for name in response["headers"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|h| h.0)
                    {
                        seen.insert(name.clone());
                    }
                }
            }
        }
        assert!(
            seen.contains("ETag") && seen.contains("Retry-After"),
            "{seen:?}"
        );
        // Every header the API sends is in the table (a new one must be added there).
        for name in &seen {
            assert!(
                HEADER_NAMES.contains(&name.as_str()),
                "{name} is not in HEADER_NAMES"
            );
        }
    }

    #[test]
    fn nullable_reply_fields_are_required_and_request_fields_stay_optional() {
        let doc: Value = serde_json::from_str(json()).unwrap();
        let item = &doc["components"]["schemas"]["LogItem"];
        let required: Vec<&str> = item["required"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(required.contains(&"reason"), "{required:?}");
        assert_eq!(item["properties"]["reason"]["nullable"], true);
        // Left out when empty: optional, not nullable.
        assert!(!required.contains(&"display_name"));
        assert!(item["properties"]["display_name"].get("nullable").is_none());
        // The update body may leave any field out, and may null an id to clear it.
        let update = &doc["components"]["schemas"]["GuildConfigUpdate"];
        assert!(update.get("required").is_none(), "{update}");
        assert_eq!(update["minProperties"], 1, "{update}");
        assert_eq!(update["additionalProperties"], false, "{update}");
        assert_eq!(update["properties"]["review_channel_id"]["nullable"], true);
        assert!(
            update["properties"]["reapply_cooldown_hours"]
                .get("nullable")
                .is_none()
        );
    }

    #[test]
    fn resolve_errors_after_the_count_carry_the_limit_headers() {
        let doc: Value = serde_json::from_str(json()).unwrap();
        let header = |path: &str, code: &str| {
            doc.pointer(&format!(
                "/paths/~1api~1{path}/get/responses/{code}/headers/X-RateLimit-Remaining"
            ))
            .is_some()
        };
        for code in ["400", "500"] {
            assert!(header("users~1resolve", code), "{code}");
            assert!(!header("logs", code), "{code}");
        }
        for code in ["401", "403"] {
            assert!(!header("users~1resolve", code), "{code}: not counted");
        }
    }

    #[test]
    fn swagger_ui_shows_the_corrected_document() {
        assert!(DOCUMENTS.swagger_html.contains("\"ETag\""));
        assert!(!DOCUMENTS.swagger_html.contains("\"ETAG\""));
    }
}
