//! `GET /health`: liveness and database reachability, without authentication.

use std::sync::Arc;

use poem::{IntoResponse, Response, handler, http::StatusCode, web::Data};
use sea_orm::ConnectionTrait;

use crate::state::ApiState;

#[handler]
pub(crate) async fn health(state: Data<&Arc<ApiState>>) -> Response {
    let db_ok = state.db.execute_unprepared("SELECT 1").await;
    let (status, db) = match &db_ok {
        Ok(_) => (StatusCode::OK, "ok".to_owned()),
        Err(e) => {
            tracing::warn!(error = %e, "health check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "unreachable".to_owned())
        }
    };
    let body = serde_json::json!({
        "status": if db_ok.is_ok() { "ok" } else { "degraded" },
        "database": db,
        "version": env!("CARGO_PKG_VERSION"),
        // The gauge of live streams: back to 0 when every dashboard has gone.
        "open_streams": state.streams.open(),
    });
    poem::web::Json(body).with_status(status).into_response()
}
