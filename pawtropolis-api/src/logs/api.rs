use poem::web::Data;
use poem_openapi::{ApiResponse, param::Query};

use super::{Cursor, LogFilter, LogsPage, list_logs};
use crate::{
    ApiTags,
    auth::Auth,
    error::ApiError,
    identity::{Expand, identities_for},
    payload::JsonBytes,
    snowflake::Snowflake,
    state::SharedState,
    timefmt::{TimeParam, parse_time_param},
};

/// Operations on the action log.
pub(crate) struct LogsApi;

#[derive(ApiResponse)]
enum LogsResponse {
    /// A page of the log.
    #[oai(status = 200)]
    Ok(JsonBytes<LogsPage>),
}

/// Largest number of distinct `action` values one listing may filter on.
const MAX_ACTION_FILTERS: usize = 50;

fn parse_actions(raw: Vec<String>) -> Result<Vec<String>, ApiError> {
    let mut actions: Vec<String> = Vec::new();
    for part in raw.iter().flat_map(|v| v.split(',')) {
        let a = part.trim();
        if a.is_empty() {
            continue;
        }
        if a.len() > 64 {
            return Err(ApiError::invalid("action values are at most 64 characters"));
        }
        if !actions.iter().any(|x| x == a) {
            // Refused as soon as it is too many: the duplicate check is quadratic.
            if actions.len() == MAX_ACTION_FILTERS {
                return Err(ApiError::invalid(format!(
                    "action accepts at most {MAX_ACTION_FILTERS} values"
                )));
            }
            actions.push(a.to_owned());
        }
    }
    Ok(actions)
}

#[poem_openapi::OpenApi(tag = "ApiTags::Logs")]
impl LogsApi {
    /// List the action log
    ///
    /// Rows of one guild, newest first (by `created_at_s`, then `id`), with keyset pagination:
    /// pass the reply's `next_cursor` as `cursor` to read the next, older page. Pages never
    /// repeat a row, and new rows, which sort above the first page, never shift the pages
    /// after it. A row that commits late with an older time (the bot back-dating an action,
    /// or concurrent writers on PostgreSQL) lands where its time sorts: on a page already
    /// read, it shows on the next refresh; the live stream sends every row as it commits.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/logs", method = "get", operation_id = "listLogs")]
    async fn list(
        &self,
        auth: Auth,
        state: Data<&SharedState>,
        /// Guild to read (a snowflake).
        guild_id: Query<Snowflake>,
        /// Keep only these actions; repeat the parameter or separate values with commas
        /// (`action=approve&action=reject` or `action=approve,reject`).
        action: Query<Option<Vec<String>>>,
        /// Keep only actions by this moderator (the row's `actor_id`).
        moderator_id: Query<Option<Snowflake>>,
        /// Keep only actions about this user.
        subject_id: Query<Option<Snowflake>>,
        /// Keep only actions of this application.
        app_id: Query<Option<String>>,
        /// Keep rows at or after this time: Unix seconds or RFC 3339 (blank: no bound).
        since: Query<Option<String>>,
        /// Keep rows at or before this time: Unix seconds or RFC 3339 (blank: no bound).
        until: Query<Option<String>>,
        /// Page size, 1 to 500 (default 50; a host that embeds the API may change the default
        /// and lower the largest in its `ApiSettings`).
        // The bound is `LIMIT_MAX`, spelled out as the attribute needs a literal.
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<u32>>,
        /// `next_cursor` of the previous page (blank: the first page).
        cursor: Query<Option<String>>,
        /// `identity` attaches each row's moderator `display_name` and `avatar_url` and adds a
        /// `warnings` array (one entry per moderator that could not be resolved).
        expand: Query<Option<Expand>>,
    ) -> Result<LogsResponse, ApiError> {
        let guild_id = guild_id.0;
        auth.principal().authorize(&guild_id)?;
        let settings = &state.settings;
        let limit = limit.0.unwrap_or(settings.logs_default_limit);
        // The schema refuses 0 and more than `LIMIT_MAX` (and the default is at least 1); a
        // host may have lowered the largest.
        if limit > settings.logs_max_limit {
            return Err(ApiError::invalid(format!(
                "limit must be between 1 and {}",
                settings.logs_max_limit
            )));
        }
        // Blank parameters never get here: they are dropped as if left out.
        let app_id = app_id.0;
        if app_id.as_ref().is_some_and(|a| a.len() > 100) {
            return Err(ApiError::invalid("app_id is at most 100 characters"));
        }
        let parse = |field: &str, value: Option<String>| {
            value
                .as_deref()
                .map(|t| parse_time_param(field, t))
                .transpose()
        };
        let (since, until) = (parse("since", since.0)?, parse("until", until.0)?);
        if let (Some(s), Some(u)) = (since, until)
            && s > u
        {
            return Err(ApiError::invalid("since must not be after until"));
        }
        let filter = LogFilter {
            actions: parse_actions(action.0.unwrap_or_default())?,
            moderator_id: moderator_id.0,
            subject_id: subject_id.0,
            app_id,
            since: since.map(TimeParam::at_or_after),
            until: until.map(TimeParam::at_or_before),
        };
        let cursor = cursor.0.as_deref().map(Cursor::decode).transpose()?;
        let mut page = list_logs(&state.db, &guild_id, &filter, cursor, limit).await?;
        if expand.0 == Some(Expand::Identity) {
            let ids = page.items.iter().map(|i| i.moderator_id.as_str());
            let (shown, warnings) = identities_for(&state.identity, &guild_id, ids).await;
            for item in &mut page.items {
                if let Some(s) = shown.get(&item.moderator_id) {
                    item.display_name = Some(s.display_name.clone());
                    item.avatar_url = Some(s.avatar_url.clone());
                }
            }
            page.warnings = Some(warnings);
        }
        Ok(LogsResponse::Ok(JsonBytes::encode(&page)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize) -> Vec<String> {
        vec![
            (0..n)
                .map(|i| format!("a{i}"))
                .collect::<Vec<_>>()
                .join(","),
        ]
    }

    #[test]
    fn action_filters_are_bounded_and_deduplicated() {
        assert_eq!(
            parse_actions(values(MAX_ACTION_FILTERS))
                .map(|a| a.len())
                .ok(),
            Some(50)
        );
        let e = parse_actions(values(MAX_ACTION_FILTERS + 1)).expect_err("51 values");
        assert!(e.to_string().contains("at most 50"), "{e}");
        // Repeats and blanks are not values of their own.
        let mut repeated = values(MAX_ACTION_FILTERS);
        repeated.push(" a0 ,,a1".into());
        assert_eq!(parse_actions(repeated).map(|a| a.len()).ok(), Some(50));
        assert!(parse_actions(values(16_000)).is_err());
        assert!(parse_actions(vec!["x".repeat(65)]).is_err());
    }
}
