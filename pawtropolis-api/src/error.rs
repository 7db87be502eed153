//! The one error type of the API: every failure a handler can meet maps to an HTTP status and the
//! JSON body `{"error": {"code", "message"}}`.

use poem::{IntoResponse, Response, http::StatusCode};
use poem_openapi::{
    ApiResponse, Object,
    payload::Json,
    registry::{MetaResponses, Registry},
};
use serde::Serialize;

/// Body of every error reply.
#[derive(Debug, Clone, Object, Serialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// Machine-readable code and human-readable explanation of an error.
#[derive(Debug, Clone, Object, Serialize)]
pub struct ErrorDetail {
    /// Stable machine-readable code: `invalid_parameter` (400), `unauthorized` (401),
    /// `forbidden` (403), `bad_origin` (403, a request from another site), `not_found` (404),
    /// `method_not_allowed` (405), `payload_too_large` (413), `unsupported_media_type` (415),
    /// `rate_limited` (429), `unavailable` (503, the server cannot take the request now: retry
    /// later, after `Retry-After` when it is given), `internal` (any other 5xx); `error` for
    /// any other status.
    pub code: String,
    /// Explanation for people; names the offending parameter or field where there is one.
    pub message: String,
}

/// Every failure of an API operation.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A parameter or body field is missing or malformed (400).
    #[error("{0}")]
    InvalidParameter(String),
    /// No valid credentials were presented (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The credentials are valid but do not grant access to this resource (403).
    #[error("{0}")]
    Forbidden(String),
    /// The resource does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The request body is larger than the operation accepts (413).
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The request came from another origin than the dashboard's (403, code `bad_origin`).
    #[error("{0}")]
    BadOrigin(String),
    /// Too many requests; retry after the given number of seconds (429).
    #[error("{message}")]
    RateLimited {
        /// Seconds the client should wait before retrying.
        retry_after_secs: u64,
        /// Explanation.
        message: String,
    },
    /// The server cannot take this request now; retry after the given number of seconds (503).
    #[error("{message}")]
    Unavailable {
        /// Seconds the client should wait before retrying.
        retry_after_secs: u64,
        /// Explanation.
        message: String,
    },
    /// The database failed (500). The details go to the log, not to the client.
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// Any other server-side failure (500). The details go to the log, not to the client.
    #[error("internal error: {0}")]
    Internal(String),
    /// Another error, answered with the `X-RateLimit-*` headers of a rate-limited operation.
    #[error("{source}")]
    WithRateLimit {
        /// The error.
        source: Box<ApiError>,
        /// `X-RateLimit-Limit`.
        limit: u32,
        /// `X-RateLimit-Remaining`.
        remaining: u32,
    },
}

impl ApiError {
    /// Shorthand for a 400 naming the offending parameter.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidParameter(message.into())
    }

    /// Adds the `X-RateLimit-*` headers to the reply of `err`.
    pub fn with_rate_limit(err: ApiError, limit: u32, remaining: u32) -> Self {
        Self::WithRateLimit {
            source: Box::new(err),
            limit,
            remaining,
        }
    }

    /// HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::WithRateLimit { source, .. } => source.status(),
            Self::InvalidParameter(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::BadOrigin(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Database(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::WithRateLimit { source, .. } => source.code(),
            Self::InvalidParameter(_) => "invalid_parameter",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::BadOrigin(_) => "bad_origin",
            Self::NotFound(_) => "not_found",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable { .. } => "unavailable",
            Self::Database(_) | Self::Internal(_) => "internal",
        }
    }

    fn public_message(&self) -> String {
        match self {
            Self::WithRateLimit { source, .. } => source.public_message(),
            // Never leak SQL or internals to a client; the log has them.
            Self::Database(_) | Self::Internal(_) => "internal server error".to_owned(),
            other => other.to_string(),
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited {
                retry_after_secs, ..
            }
            | Self::Unavailable {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            Self::WithRateLimit { source, .. } => source.retry_after(),
            _ => None,
        }
    }
}

/// Builds the JSON error reply for a status, code and message.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_owned(),
            message: message.to_owned(),
        },
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(bytes)
}

impl poem::error::ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        ApiError::status(self)
    }

    fn as_response(&self) -> Response {
        if self.status().is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let mut resp = error_response(self.status(), self.code(), &self.public_message());
        if let Some(secs) = self.retry_after() {
            resp.headers_mut()
                .insert("Retry-After", poem::http::HeaderValue::from(secs.max(1)));
        }
        if let Self::WithRateLimit {
            limit, remaining, ..
        } = self
        {
            let h = resp.headers_mut();
            h.insert("X-RateLimit-Limit", poem::http::HeaderValue::from(*limit));
            h.insert(
                "X-RateLimit-Remaining",
                poem::http::HeaderValue::from(*remaining),
            );
        }
        resp
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        poem::error::ResponseError::as_response(&self)
    }
}

/// The error replies every operation may give, as documented in the OpenAPI document.
#[derive(ApiResponse)]
#[allow(dead_code)]
enum ErrorResponses {
    /// A parameter or field is invalid; the message names it.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No valid session cookie or API token.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// The session or token may not read this guild, or the request came from another origin.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// Internal error (details are logged on the server).
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The server cannot take this request now; see `Retry-After`.
    #[oai(status = 503)]
    Unavailable(
        Json<ErrorBody>,
        /// Seconds to wait before retrying.
        #[oai(header = "Retry-After")]
        Option<u64>,
    ),
}

impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        ErrorResponses::meta()
    }

    fn register(registry: &mut Registry) {
        ErrorResponses::register(registry);
    }
}

/// Turns any error that reaches the `/api` tree (ours, or poem's own: bad parameters, unknown
/// routes, missing credentials) into the JSON error body, so clients parse one shape.
pub(crate) async fn render_error(err: poem::Error) -> Response {
    if let Some(api) = err.downcast_ref::<ApiError>() {
        return poem::error::ResponseError::as_response(api);
    }
    let status = err.status();
    if err.is::<poem::error::CorsError>() {
        return error_response(
            StatusCode::FORBIDDEN,
            "bad_origin",
            "cross-site request refused: this origin is not the dashboard's",
        );
    }
    let code = match status {
        StatusCode::BAD_REQUEST => "invalid_parameter",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "error",
    };
    let message = if let Some(param) = err.downcast_ref::<poem_openapi::error::ParseParamError>() {
        describe_param_error(param.name, &param.reason)
    } else if status == StatusCode::UNAUTHORIZED {
        "authentication required: send `Authorization: Bearer <token>` or a session cookie"
            .to_owned()
    } else if status == StatusCode::SERVICE_UNAVAILABLE {
        tracing::warn!(error = %err, "request refused: unavailable");
        "the server cannot take this request now; try again shortly".to_owned()
    } else if status.is_server_error() {
        tracing::error!(error = %err, "request failed");
        "internal server error".to_owned()
    } else {
        err.to_string()
    };
    error_response(status, code, &message)
}

/// Allowed values of the enum parameters, for error messages that list them.
pub(crate) fn enum_values(param: &str) -> Option<&'static [&'static str]> {
    match param {
        "window" => Some(&["7d", "30d", "90d"]),
        "bucket" => Some(&["1h", "6h", "1d"]),
        "expand" => Some(&["identity"]),
        _ => None,
    }
}

/// A clear message for a parameter poem-openapi could not parse.
fn describe_param_error(name: &str, reason: &str) -> String {
    if let Some(values) = enum_values(name) {
        return format!("{name} must be one of {}", values.join(", "));
    }
    // poem-openapi's words for a required parameter that is absent: checked first, since they
    // name the type ("string(snowflake)") and would otherwise read as a bad snowflake.
    if reason.contains("expects an input value") || reason.contains("found null") {
        return format!("{name} is required");
    }
    if reason.contains("snowflake") || reason.contains(crate::snowflake::SNOWFLAKE_PATTERN) {
        return format!("{name} must be a Discord snowflake (17 to 20 digits, no leading zero)");
    }
    // Numbers: poem-openapi names the schema ("integer(uint32)") or the failed validator
    // ("minimum(1, exclusive: false)"); said in words instead.
    for (validator, inclusive, exclusive) in [
        ("minimum(", "at least", "more than"),
        ("maximum(", "at most", "less than"),
    ] {
        if let Some((bound, rest)) = reason
            .split_once(validator)
            .and_then(|(_, rest)| rest.split_once(','))
        {
            let words = if rest.trim_start().starts_with("exclusive: true") {
                exclusive
            } else {
                inclusive
            };
            return format!("{name} must be {words} {}", bound.trim());
        }
    }
    if reason.contains("\"integer(") && reason.contains("too large") {
        return format!("{name} is too large");
    }
    if reason.contains("\"integer(uint") {
        return format!("{name} must be a whole number, not negative");
    }
    if reason.contains("\"integer(") {
        return format!("{name} must be a whole number");
    }
    format!("invalid parameter {name}: {reason}")
}
