use poem::{
    Request, RequestBody,
    http::{StatusCode, header},
};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions, SecurityScheme,
    auth::{ApiKey, Bearer},
    registry::Registry,
};

use super::{Credential, Principal};
use crate::{error::ApiError, state::SharedState};

/// Name of the session cookie set by the Discord login.
pub const SESSION_COOKIE: &str = "paw_session";

/// An API token: `Authorization: Bearer <token>` (created with `pawtropolis-server token create`).
#[derive(SecurityScheme)]
#[oai(rename = "bearerToken", ty = "bearer", checker = "check_bearer")]
pub struct BearerAuth(pub Principal);

/// A dashboard session: the `paw_session` cookie set by the Discord login.
#[derive(SecurityScheme)]
#[oai(
    rename = "sessionCookie",
    ty = "api_key",
    key_name = "paw_session",
    key_in = "cookie",
    checker = "check_cookie"
)]
pub struct SessionCookieAuth(pub Principal);

/// Either credential; every `/api` operation requires one.
pub enum Auth {
    /// An API token.
    Bearer(BearerAuth),
    /// A session cookie.
    Cookie(SessionCookieAuth),
}

// Written out rather than derived: the derived extractor answers with the error of the last
// scheme it tried, so a bearer token the verifier could not check (its database down) came
// back as the cookie's "no credential" 401, and a script would throw away a good token.
impl<'a> ApiExtractor<'a> for Auth {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        BearerAuth::register(registry);
        SessionCookieAuth::register(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        let mut schemes = BearerAuth::security_schemes();
        schemes.extend(SessionCookieAuth::security_schemes());
        schemes
    }

    async fn from_request(
        req: &'a Request,
        body: &mut RequestBody,
        param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let bearer = match BearerAuth::from_request(req, body, param_opts.clone()).await {
            Ok(b) => return Ok(Self::Bearer(b)),
            Err(e) => e,
        };
        let cookie = match SessionCookieAuth::from_request(req, body, param_opts).await {
            Ok(c) => return Ok(Self::Cookie(c)),
            Err(e) => e,
        };
        Err(pick_error(
            bearer,
            cookie,
            req.headers().contains_key(header::AUTHORIZATION),
        ))
    }
}

/// The error to answer with when neither credential passed: a failure to check one (not a
/// 401) first, else the refusal of the credential the caller gave.
fn pick_error(bearer: poem::Error, cookie: poem::Error, gave_bearer: bool) -> poem::Error {
    let unauthorized = |e: &poem::Error| e.status() == StatusCode::UNAUTHORIZED;
    match (unauthorized(&bearer), unauthorized(&cookie)) {
        (false, _) => bearer,
        (true, false) => cookie,
        (true, true) if gave_bearer => bearer,
        (true, true) => cookie,
    }
}

impl Auth {
    /// The authenticated caller.
    pub fn principal(&self) -> &Principal {
        match self {
            Self::Bearer(b) => &b.0,
            Self::Cookie(c) => &c.0,
        }
    }
}

async fn verify(req: &Request, credential: Credential<'_>) -> poem::Result<Principal> {
    let state = req
        .data::<SharedState>()
        .ok_or_else(|| ApiError::Internal("API state missing from the route".into()))?;
    match state.verifier.verify(credential).await? {
        Some(p) => Ok(p),
        None => Err(ApiError::Unauthorized(
            "the token or session is invalid, expired or revoked".into(),
        )
        .into()),
    }
}

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    verify(req, Credential::Bearer(&bearer.token)).await
}

async fn check_cookie(req: &Request, key: ApiKey) -> poem::Result<Principal> {
    verify(req, Credential::SessionCookie(&key.key)).await
}

/// The value of cookie `name` in the request's `Cookie` headers, read as poem's cookie jar (which
/// authenticated the request) reads it: percent-decoded, and the first one when it is repeated,
/// so a stream is watched, and a logout revokes, under the very secret that signed in. Read
/// here rather than from the jar, which needs a middleware a host may not install.
pub fn request_cookie(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get_all(poem::http::header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| poem::web::cookie::Cookie::parse(pair.trim()).ok())
        .find(|c| c.name() == name)
        .map(|c| c.value_str().to_owned())
}

#[cfg(test)]
mod tests {
    use poem::{
        Endpoint, EndpointExt, handler, middleware::CookieJarManager, web::cookie::CookieJar,
    };

    use super::*;

    /// What poem's jar says and what `request_cookie` says, for the same request.
    #[handler]
    fn both(req: &Request, jar: &CookieJar) -> String {
        format!(
            "{:?} {:?}",
            jar.get("paw_session").map(|c| c.value_str().to_owned()),
            request_cookie(req, "paw_session")
        )
    }

    #[tokio::test]
    async fn a_cookie_is_read_as_poems_jar_reads_it() {
        let ep = both.with(CookieJarManager::new());
        for (headers, expected) in [
            (vec!["paw_session=pws_a"], Some("pws_a")),
            (
                vec!["other=1; paw_session=pws_a; paw_session=pws_b"],
                Some("pws_a"),
            ),
            (
                vec!["paw_session=pws_a", "x=y; paw_session=pws%2Bc "],
                Some("pws_a"),
            ),
            (vec!["paw%5Fsession=pws_d; paw_sessionx=no"], Some("pws_d")),
            (vec!["a=b", "paw_session=pws%2Be"], Some("pws+e")),
            (vec!["nothing=here"], None),
        ] {
            let mut req = Request::builder();
            for h in &headers {
                req = req.header(poem::http::header::COOKIE, *h);
            }
            let resp = ep.get_response(req.finish()).await;
            assert!(resp.status().is_success(), "{headers:?}");
            let text = resp.into_body().into_string().await.expect("a text body");
            let expected = format!("{:?}", expected.map(str::to_owned));
            assert_eq!(text, format!("{expected} {expected}"), "{headers:?}");
        }
    }
}
