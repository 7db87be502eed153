//! The `Allow` header of 405 replies, which RFC 9110 (§15.5.6) requires: the methods the path
//! answers. poem's router refuses a method without saying which ones it has, so each mount of
//! the API looks its paths up here: the documented operations from the OpenAPI document, the
//! rest from the routes it registers.

use std::{collections::HashMap, sync::Arc, sync::LazyLock};

use poem::{
    Endpoint, IntoResponse, Request, Response,
    http::{HeaderValue, StatusCode, header},
};
use serde_json::Value;

/// The routes of one mount, by path within it.
pub(crate) struct Allowed(HashMap<String, HeaderValue>);

impl Allowed {
    fn new(routes: impl IntoIterator<Item = (String, Vec<String>)>) -> Self {
        Self(
            routes
                .into_iter()
                .filter_map(|(path, mut methods)| {
                    // poem answers HEAD wherever it answers GET.
                    if methods.iter().any(|m| m == "GET") {
                        methods.push("HEAD".into());
                    }
                    HeaderValue::from_str(&methods.join(", "))
                        .ok()
                        .map(|v| (path, v))
                })
                .collect(),
        )
    }
}

/// `/api`: the operations of the document (its paths start with `/api`), and the document and
/// its viewer.
pub(crate) static API: LazyLock<Allowed> = LazyLock::new(|| {
    let doc: Value = serde_json::from_str(crate::openapi_doc::json()).unwrap_or_default();
    let mut routes: Vec<(String, Vec<String>)> = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, ops) in paths {
            let (Some(inner), Some(ops)) = (path.strip_prefix("/api"), ops.as_object()) else {
                continue;
            };
            // An operation's keys are its methods (a path item holds nothing else here).
            let methods = ops.keys().map(|m| m.to_ascii_uppercase()).collect();
            routes.push((inner.to_owned(), methods));
        }
    }
    routes.extend(get_only(&["/docs", "/docs/", "/openapi.json"]));
    Allowed::new(routes)
});

/// `(path, ["GET"])` for each path.
fn get_only(paths: &[&str]) -> Vec<(String, Vec<String>)> {
    paths
        .iter()
        .map(|p| ((*p).to_owned(), vec!["GET".to_owned()]))
        .collect()
}

/// `/auth`: the login routes (`auth::login::routes`).
pub(crate) static AUTH: LazyLock<Allowed> = LazyLock::new(|| {
    let mut routes = get_only(&["/login", "/callback", "/me"]);
    routes.push(("/logout".to_owned(), vec!["POST".to_owned()]));
    Allowed::new(routes)
});

/// `/health` (a route of its own, not a mount: its path is kept).
pub(crate) static HEALTH: LazyLock<Allowed> =
    LazyLock::new(|| Allowed::new(get_only(&["/health"])));

/// Calls `ep`; a 405 gets the `Allow` of its path in `allowed` (the path within the mount,
/// so that a host that nests the API under a prefix of its own still gets it). Other errors
/// pass through as errors, for the host's own error handling to see.
pub(crate) async fn add_allow<E: Endpoint>(
    allowed: &'static LazyLock<Allowed>,
    ep: Arc<E>,
    req: Request,
) -> poem::Result<Response> {
    let path = req.uri().path().to_owned();
    let with_allow = |mut resp: Response| {
        if resp.status() == StatusCode::METHOD_NOT_ALLOWED
            && let Some(v) = allowed.0.get(&path)
        {
            resp.headers_mut().insert(header::ALLOW, v.clone());
        }
        resp
    };
    match ep.call(req).await {
        Ok(r) => Ok(with_allow(r.into_response())),
        Err(e) if e.status() == StatusCode::METHOD_NOT_ALLOWED => {
            Err(poem::Error::from_response(with_allow(e.into_response())))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_of_the_document_has_its_methods() {
        let get = |path: &str| API.0.get(path).and_then(|v| v.to_str().ok());
        assert_eq!(get("/config"), Some("GET, PUT, HEAD"));
        assert_eq!(get("/logs"), Some("GET, HEAD"));
        assert_eq!(get("/logs/stream"), Some("GET, HEAD"));
        assert_eq!(get("/docs/"), Some("GET, HEAD"));
        assert_eq!(API.0.len(), 10, "{:?}", API.0.keys().collect::<Vec<_>>());
    }
}
