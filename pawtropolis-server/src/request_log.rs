//! A span per request and a line per response, as poem's `Tracing` middleware logs them, except
//! that the query of `/auth/` requests is left out: the login callback's carries Discord's OAuth
//! code and the login's state, which have no place in a log that many people may read.

use std::time::Instant;

use poem::{
    Endpoint, IntoResponse as _, Middleware, Request, Response, Result, http::Uri,
    middleware::ReqId,
};
use tracing::Instrument as _;

/// The request log middleware (see the module documentation).
pub struct RequestLog;

impl<E: Endpoint> Middleware<E> for RequestLog {
    type Output = RequestLogEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        RequestLogEndpoint(ep)
    }
}

/// An endpoint wrapped by [`RequestLog`].
pub struct RequestLogEndpoint<E>(E);

impl<E: Endpoint> Endpoint for RequestLogEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Response> {
        // The peer's address, and apart from it what forwarding headers claim (empty without
        // them): any client can send those, so they never stand in for the peer.
        let remote_addr = req.remote_addr().to_string();
        let forwarded_for: String = ["forwarded", "x-forwarded-for", "x-real-ip"]
            .iter()
            .find_map(|name| req.header(name))
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        let request_id = req
            .extensions()
            .get::<ReqId>()
            .map(ToString::to_string)
            .unwrap_or_default();
        let span = tracing::info_span!(
            "request",
            remote_addr = %remote_addr,
            // Quoted: any client writes this one.
            forwarded_for = ?forwarded_for,
            version = ?req.version(),
            method = %req.method(),
            uri = %loggable(req.original_uri()),
            request_id = %request_id,
        );
        async move {
            let started = Instant::now();
            let res = self.0.call(req).await;
            let duration = started.elapsed();
            match res {
                Ok(resp) => {
                    let resp = resp.into_response();
                    tracing::info!(status = %resp.status(), ?duration, "response");
                    Ok(resp)
                }
                Err(err) => {
                    tracing::info!(status = %err.status(), error = %err, ?duration, "error");
                    Err(err)
                }
            }
        }
        .instrument(span)
        .await
    }
}

/// The header a client may send its own request id in (poem's `RequestId` reuses it).
const REQUEST_ID: &str = "x-request-id";

/// Drops a client's `X-Request-Id` unless it is a plain id (1 to 64 letters, digits, `-`, `_`,
/// `.` or `:`), so that `RequestId` makes one instead. The id goes into every log line of the
/// request, where a long value, or one with spaces or `=`, could pass for other fields.
pub async fn drop_unfit_request_id(mut req: Request) -> Result<Request> {
    let plain = |v: &[u8]| {
        (1..=64).contains(&v.len())
            && v.iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
    };
    if req
        .headers()
        .get(REQUEST_ID)
        .is_some_and(|v| !plain(v.as_bytes()))
    {
        req.headers_mut().remove(REQUEST_ID);
    }
    Ok(req)
}

/// The request target as logged: under `/auth/`, the path alone.
fn loggable(uri: &Uri) -> String {
    if uri.path().starts_with("/auth/") {
        uri.path().to_owned()
    } else {
        uri.to_string()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use poem::{
        Body, EndpointExt as _, RequestParts, Route, get, handler,
        http::{StatusCode, uri::Scheme},
        web::{LocalAddr, RemoteAddr},
    };

    use super::*;

    /// Log lines written to memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Log lines of this thread go to the returned buffer while the guard lives.
    fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }

    #[handler]
    fn ok() -> &'static str {
        "ok"
    }

    #[tokio::test]
    async fn the_login_callbacks_code_and_state_stay_out_of_the_log() {
        let (captured, _default) = capture_logs();
        let app = Route::new()
            .at("/auth/callback", get(ok))
            .at("/api/logs", get(ok))
            .with(RequestLog);
        for uri in [
            "/auth/callback?code=secret-code-123&state=secret-state-456",
            "/api/logs?guild_id=111111111111111111",
        ] {
            // As poem's server makes them, with the original target.
            let (parts, ()) = poem::http::Request::get(uri)
                .header("x-forwarded-for", "203.0.113.9")
                .body(())
                .unwrap()
                .into_parts();
            let parts = RequestParts::from((
                parts,
                LocalAddr::default(),
                RemoteAddr::default(),
                Scheme::HTTP,
            ));
            let req = Request::from_parts(parts, Body::empty());
            assert_eq!(app.get_response(req).await.status(), StatusCode::OK);
        }
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(log.contains("uri=/auth/callback"), "{log}");
        assert!(
            !log.contains("secret-code") && !log.contains("secret-state"),
            "{log}"
        );
        assert!(
            log.contains("uri=/api/logs?guild_id=111111111111111111"),
            "{log}"
        );
        assert!(log.contains("status=200"), "{log}");
        assert!(log.contains("forwarded_for=\"203.0.113.9\""), "{log}");
    }

    #[tokio::test]
    async fn a_clients_request_id_is_kept_only_when_it_is_a_plain_id() {
        use poem::middleware::{RequestId, ReuseId};
        let (captured, _default) = capture_logs();
        let app = Route::new()
            .at("/api/logs", get(ok))
            .with(RequestLog)
            .with(RequestId::default().reuse_id(ReuseId::Use))
            .before(drop_unfit_request_id);
        let long = "a".repeat(65);
        for id in ["req-42:x_y.z", "forged status=500", long.as_str()] {
            let req = Request::builder()
                .uri_str("/api/logs")
                .header(REQUEST_ID, id)
                .finish();
            assert_eq!(app.get_response(req).await.status(), StatusCode::OK);
        }
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(log.contains("request_id=req-42:x_y.z"), "{log}");
        assert!(!log.contains("forged") && !log.contains(&long), "{log}");
        // The other two carry an id of the server's making instead.
        let minted: Vec<&str> = log
            .lines()
            .filter(|l| !l.contains("req-42"))
            .filter_map(|l| l.split("request_id=").nth(1)?.split(['}', ' ']).next())
            .collect();
        assert_eq!(minted.len(), 2, "{log}");
        assert!(minted.iter().all(|id| id.len() == 36), "{log}");
    }
}
