//! The dashboard page (`serve --dashboard`): one static page, compiled into the binary, that
//! reads the API from the same origin.

use poem::{
    IntoResponse, Response, Route, get, handler,
    http::{StatusCode, header},
    web::Redirect,
};

const INDEX_HTML: &str = include_str!("../dashboard/index.html");
const APP_JS: &str = include_str!("../dashboard/app.js");
const STYLE_CSS: &str = include_str!("../dashboard/style.css");

/// Scripts and styles only from this origin; avatars from Discord's CDN.
const CSP: &str = "default-src 'self'; img-src 'self' https://cdn.discordapp.com data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .content_type(content_type)
        // Assets change with the binary: revalidate rather than serve an old build.
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::CONTENT_SECURITY_POLICY, CSP)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::REFERRER_POLICY, "no-referrer")
        .body(body)
}

#[handler]
fn index() -> Response {
    asset(INDEX_HTML, "text/html; charset=utf-8")
}

#[handler]
fn app_js() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

#[handler]
fn style_css() -> Response {
    asset(STYLE_CSS, "text/css; charset=utf-8")
}

#[handler]
fn to_dashboard() -> impl IntoResponse {
    Redirect::see_other("/dashboard/")
}

/// Adds the page to `route`: `/dashboard/` (also without the slash) and its two assets, and
/// `/` (where the Discord login lands) sending the browser there.
pub fn mount(route: Route) -> Route {
    route.at("/", get(to_dashboard)).nest(
        "/dashboard",
        Route::new()
            .at("/", get(index))
            .at("/app.js", get(app_js))
            .at("/style.css", get(style_css)),
    )
}
