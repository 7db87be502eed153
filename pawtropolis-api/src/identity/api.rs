use poem::web::Data;
use poem_openapi::{
    ApiResponse, Object,
    param::{Header, Query},
    payload::Json,
};
use serde::Serialize;

use super::{RateDecision, ResolvedUser, resolver::MAX_IDS};
use crate::{
    ApiTags,
    auth::Auth,
    error::{ApiError, ErrorBody, ErrorDetail},
    payload::{JsonBytes, Warning, if_none_match_matches},
    snowflake::Snowflake,
    state::SharedState,
};

/// Identity resolution.
pub(crate) struct UsersApi;

/// Identities in request order, and warnings about those not fully resolved.
#[derive(Debug, Clone, Object, Serialize)]
pub struct ResolveReply {
    /// One entry per distinct requested id, in request order.
    pub users: Vec<ResolvedUser>,
    /// One entry per id served stale or as a fallback (`not_found`, `discord_unavailable`,
    /// `rate_limited`); empty when every id resolved.
    pub warnings: Vec<Warning>,
}

/// Seconds clients may reuse a resolve reply.
const MAX_AGE_SECS: u64 = 60;

#[derive(ApiResponse)]
enum ResolveResponse {
    /// The identities.
    #[oai(status = 200)]
    Ok(
        JsonBytes<ResolveReply>,
        /// Entity tag of this body; send it back in `If-None-Match`.
        #[oai(header = "ETag")]
        String,
        /// `private, max-age=60`.
        #[oai(header = "Cache-Control")]
        String,
        /// Requests per minute this server accepts on this operation (absent when the limit
        /// is off).
        #[oai(header = "X-RateLimit-Limit")]
        Option<u32>,
        /// Requests still allowed right now (absent when the limit is off).
        #[oai(header = "X-RateLimit-Remaining")]
        Option<u32>,
    ),
    /// The client's copy (named by `If-None-Match`) is current.
    #[oai(status = 304)]
    NotModified(
        /// Entity tag of the current body.
        #[oai(header = "ETag")]
        String,
        /// `private, max-age=60`.
        #[oai(header = "Cache-Control")]
        String,
        /// Requests per minute this server accepts on this operation (absent when the limit
        /// is off).
        #[oai(header = "X-RateLimit-Limit")]
        Option<u32>,
        /// Requests still allowed right now (absent when the limit is off).
        #[oai(header = "X-RateLimit-Remaining")]
        Option<u32>,
    ),
    /// Over the per-minute limit; retry after `Retry-After` seconds.
    #[oai(status = 429)]
    TooManyRequests(
        Json<ErrorBody>,
        /// Seconds to wait before retrying.
        #[oai(header = "Retry-After")]
        u64,
        /// Requests per minute this server accepts on this operation.
        #[oai(header = "X-RateLimit-Limit")]
        u32,
        /// Requests still allowed right now (0).
        #[oai(header = "X-RateLimit-Remaining")]
        u32,
    ),
}

/// Splits and validates `ids` (comma-separated and/or repeated); the 400 names a bad id.
pub(crate) fn parse_ids(raw: &[String]) -> Result<Vec<Snowflake>, ApiError> {
    let mut ids: Vec<Snowflake> = Vec::new();
    for part in raw.iter().flat_map(|v| v.split(',')) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let id = Snowflake::parse("ids", part).map_err(|_| {
            ApiError::invalid(format!(
                "ids: {part:?} is not a Discord snowflake (17 to 20 digits, no leading zero)"
            ))
        })?;
        if !ids.contains(&id) {
            ids.push(id);
        }
        if ids.len() > MAX_IDS {
            return Err(ApiError::invalid(format!(
                "ids accepts at most {MAX_IDS} distinct ids"
            )));
        }
    }
    if ids.is_empty() {
        return Err(ApiError::invalid(
            "ids is required: 1 to 100 user ids, comma-separated",
        ));
    }
    Ok(ids)
}

fn reply_key(guild_id: &Snowflake, ids: &[Snowflake]) -> String {
    let mut key = String::with_capacity(21 * (ids.len() + 1));
    key.push_str(guild_id.as_str());
    for id in ids {
        key.push(',');
        key.push_str(id.as_str());
    }
    key
}

#[poem_openapi::OpenApi(tag = "ApiTags::Users")]
impl UsersApi {
    /// Resolve user ids to identities
    ///
    /// Names and avatars of up to 100 distinct users as seen in the guild (nickname and guild
    /// avatar first). Answers from the database cache (30 minutes), else from Discord; when
    /// Discord is slow, down or rate limiting, ids are served from an older cache row
    /// (`source: stale`) or as a fallback identity (`source: fallback`, Discord's default
    /// avatar) with a warning, never as a failed request. Limited to
    /// `PAWTROPOLIS_RESOLVE_RATE_PER_MIN` requests per minute per server (default 50).
    #[oai(path = "/users/resolve", method = "get", operation_id = "resolveUsers")]
    async fn resolve(
        &self,
        auth: Auth,
        state: Data<&SharedState>,
        /// Guild the users are seen in (a snowflake).
        guild_id: Query<Snowflake>,
        /// User ids: comma-separated (`ids=1,2,3`) or repeated; 1 to 100 after removing
        /// duplicates.
        ids: Query<Vec<String>>,
        /// An `ETag` from an earlier reply; answers 304 when unchanged.
        #[oai(name = "If-None-Match")]
        if_none_match: Header<Option<String>>,
    ) -> Result<ResolveResponse, ApiError> {
        let guild_id = guild_id.0;
        // Checked before the request is counted: the budget is the whole server's, and anyone
        // with a Discord account can sign in, with no guild to read.
        auth.principal().authorize(&guild_id)?;
        let limit = state.resolve_limiter.limit();
        let remaining = match state.resolve_limiter.check() {
            RateDecision::Allowed { remaining } => remaining,
            RateDecision::Limited { retry_after_secs } => {
                let body = ErrorBody {
                    error: ErrorDetail {
                        code: "rate_limited".into(),
                        message: format!(
                            "more than {limit} resolve requests per minute; retry in {retry_after_secs} s"
                        ),
                    },
                };
                return Ok(ResolveResponse::TooManyRequests(
                    Json(body),
                    retry_after_secs,
                    limit,
                    0,
                ));
            }
        };
        let with_headers = |e: ApiError| {
            if limit == 0 {
                e
            } else {
                ApiError::with_rate_limit(e, limit, remaining)
            }
        };
        // No limit, no limit headers (rather than a limit of 0 with 4294967295 remaining).
        let (limit_header, remaining_header) = if limit == 0 {
            (None, None)
        } else {
            (Some(limit), Some(remaining))
        };
        let ids = parse_ids(&ids.0).map_err(with_headers)?;
        let key = reply_key(&guild_id, &ids);
        let now = state.clock.now_s();
        let body = match state.resolve_replies.get(&key) {
            Some((bytes, etag, until)) if now < until => {
                JsonBytes::from_bytes_with_etag(bytes, etag)
            }
            _ => {
                let resolution = state
                    .identity
                    .resolve_users(&guild_id, &ids)
                    .await
                    .map_err(with_headers)?;
                let body = JsonBytes::encode(&ResolveReply {
                    users: resolution.users,
                    warnings: resolution.warnings,
                })?;
                // Served again as bytes while every entry stays fresh: the answer cannot change
                // before then (only this resolver writes the rows).
                if let Some(until) = resolution.fresh_until {
                    state
                        .resolve_replies
                        .put(key, (body.bytes().clone(), body.etag(), until));
                }
                body
            }
        };
        let etag = body.etag();
        let cache_control = format!("private, max-age={MAX_AGE_SECS}");
        Ok(
            if if_none_match_matches(if_none_match.0.as_deref(), &etag) {
                ResolveResponse::NotModified(etag, cache_control, limit_header, remaining_header)
            } else {
                ResolveResponse::Ok(body, etag, cache_control, limit_header, remaining_header)
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_split_deduplicated_and_validated() {
        let ids = parse_ids(&[
            "111111111111111111,222222222222222222".into(),
            "111111111111111111".into(),
        ])
        .expect("valid");
        assert_eq!(ids.len(), 2);
        let e = parse_ids(&["111111111111111111,abc".into()]).expect_err("bad id");
        assert!(e.to_string().contains("abc"));
        assert!(parse_ids(&[]).is_err());
        let many: Vec<String> = (0..101)
            .map(|i| format!("{}", 100_000_000_000_000_000u64 + i))
            .collect();
        assert!(parse_ids(&many).is_err());
        let dup: Vec<String> = (0..150)
            .map(|i| format!("{}", 100_000_000_000_000_000u64 + i % 100))
            .collect();
        assert_eq!(parse_ids(&dup).map(|v| v.len()).ok(), Some(100));
    }
}
