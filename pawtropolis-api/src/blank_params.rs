//! An empty query parameter means the same as leaving it out.
//!
//! A dashboard's filter form sends every field, filled or not (`moderator_id=&limit=`). The
//! typed parameters (snowflakes, numbers, enums) would refuse the empty text with a 400, and
//! each text one (`since`, `cursor`, `tz`, …) would need a check of its own. Dropping blank
//! parameters before poem-openapi reads the query gives every parameter that one rule: an
//! optional one takes its default, a required one is reported missing.

use std::sync::Arc;

use poem::{
    Endpoint, IntoResponse, Request, Response,
    http::{Uri, uri::PathAndQuery},
};

/// Whether one `name=value` pair of a query carries no value: none at all, or only
/// whitespace (spelled as `+`, `%20`, or another escape), as a form's empty field does.
fn is_blank(pair: &str) -> bool {
    let value = pair.split_once('=').map_or("", |(_, v)| v);
    // Most values start with an ASCII character that is not whitespace: no decoding for them.
    // The rest may be whitespace as `str::trim` sees it: an escape, a `+`, or a raw non-ASCII
    // space such as U+00A0 (the http crate lets UTF-8 through in a query). Raw ASCII spaces
    // and tabs cannot reach here: a request line with one does not parse.
    match value.as_bytes().first() {
        None => true,
        Some(&b) if b == b'+' || b == b'%' || !b.is_ascii() => {
            form_urlencoded::parse(format!("v={value}").as_bytes())
                .all(|(_, v)| v.trim().is_empty())
        }
        Some(_) => false,
    }
}

/// `query` without its blank parameters, or `None` when it has none to drop.
pub(crate) fn without_blank_params(query: &str) -> Option<String> {
    let mut pairs = 0;
    let kept: Vec<&str> = query
        .split('&')
        .inspect(|_| pairs += 1)
        .filter(|p| !is_blank(p))
        .collect();
    (kept.len() < pairs).then(|| kept.join("&"))
}

/// Drops the blank parameters of the request's query, then calls `ep`.
pub(crate) async fn drop_blank_params<E: Endpoint>(
    ep: Arc<E>,
    mut req: Request,
) -> poem::Result<Response> {
    if let Some(query) = req.uri().query().and_then(without_blank_params) {
        let path = req.uri().path();
        let target = if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{query}")
        };
        // The kept text is a part of a URI that already parsed, so this cannot fail; if it
        // did, the request would simply go on as it came.
        if let Ok(path_and_query) = PathAndQuery::try_from(target) {
            let mut parts = req.uri().clone().into_parts();
            parts.path_and_query = Some(path_and_query);
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    ep.call(req).await.map(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_parameters_are_dropped_and_the_rest_kept_as_sent() {
        assert_eq!(without_blank_params("guild_id=1&limit=5"), None);
        assert_eq!(
            without_blank_params("a=%41"),
            None,
            "an escape that is not a space"
        );
        assert_eq!(
            without_blank_params("guild_id=1&moderator_id=&limit=+&expand=%20%09&cursor"),
            Some("guild_id=1".to_owned())
        );
        assert_eq!(
            without_blank_params("&since=%2B1&action=a%2Cb&&app_id=x+y"),
            Some("since=%2B1&action=a%2Cb&app_id=x+y".to_owned()),
            "values are kept byte for byte, escapes and all"
        );
        assert_eq!(without_blank_params("limit="), Some(String::new()));
        // Whitespace beyond ASCII, escaped or sent raw, as `str::trim` sees it.
        assert_eq!(
            without_blank_params("since=%C2%A0&cursor=\u{a0}\u{3000}&app_id=\u{e9}"),
            Some("app_id=\u{e9}".to_owned())
        );
        // A broken escape is not a blank: the parameter reaches its parser, which says why.
        assert_eq!(without_blank_params("limit=%zz"), None);
    }
}
