use std::collections::BTreeMap;

use poem_openapi::Object;
use sea_orm::ConnectionTrait;
use serde::Serialize;

use super::{Window, mean, nearest_rank};
use crate::{db, error::ApiError, payload::Warning, snowflake::Snowflake, timefmt::rfc3339_utc};

/// Counts and response times of one moderator over the window.
#[derive(Debug, Clone, Default, Object, Serialize, PartialEq)]
pub struct ModeratorMetrics {
    /// The moderator (the rows' `actor_id`).
    pub moderator_id: String,
    /// `claim` actions.
    pub claims: i64,
    /// `approve` and `accept` actions.
    pub accepts: i64,
    /// `reject` and `perm_reject` actions.
    pub rejects: i64,
    /// `kick` actions.
    pub kicks: i64,
    /// `modmail_open` actions.
    pub modmail_opens: i64,
    /// Decisions whose response time is known (they have an `app_submitted` at or before
    /// them).
    pub decisions_timed: i64,
    /// Mean seconds from an application's latest `app_submitted` to this moderator's decision,
    /// rounded to the second; null without timed decisions.
    #[oai(nullable)]
    pub avg_response_time_s: Option<i64>,
    /// Median of the same, nearest-rank method; null without timed decisions.
    #[oai(nullable)]
    pub p50_response_time_s: Option<i64>,
    /// 95th percentile of the same, nearest-rank method; null without timed decisions.
    #[oai(nullable)]
    pub p95_response_time_s: Option<i64>,
    /// Moderator's display name (only with `expand=identity`).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Moderator's avatar URL (only with `expand=identity`).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
}

/// Guild-wide totals over the window.
#[derive(Debug, Clone, Default, Object, Serialize, PartialEq)]
pub struct Totals {
    /// `app_submitted` actions.
    pub submitted: i64,
    /// `claim` actions.
    pub claims: i64,
    /// `approve` and `accept` actions.
    pub accepts: i64,
    /// `reject` and `perm_reject` actions.
    pub rejects: i64,
    /// `kick` actions.
    pub kicks: i64,
    /// `modmail_open` actions.
    pub modmail_opens: i64,
    /// Decisions whose response time is known.
    pub decisions_timed: i64,
    /// Mean response time of all timed decisions, seconds (rounded); null without any.
    #[oai(nullable)]
    pub avg_response_time_s: Option<i64>,
    /// Median response time, nearest-rank method; null without any.
    #[oai(nullable)]
    pub p50_response_time_s: Option<i64>,
    /// 95th percentile response time, nearest-rank method; null without any.
    #[oai(nullable)]
    pub p95_response_time_s: Option<i64>,
}

/// Per-moderator summary of a guild over a window.
#[derive(Debug, Clone, Object, Serialize)]
pub struct MetricsSummary {
    /// The window asked for.
    pub window: Window,
    /// Start of the window (exclusive), RFC 3339 UTC.
    pub start: String,
    /// End of the window (inclusive, "now"), RFC 3339 UTC.
    pub end: String,
    /// One row per moderator with at least one counted action or decision, busiest first.
    pub moderators: Vec<ModeratorMetrics>,
    /// Guild-wide totals.
    pub totals: Totals,
    /// Identities that could not be resolved (only with `expand=identity`).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warnings: Option<Vec<Warning>>,
}

// Applicants' own rows (`app_submitted`) are counted apart: grouping them by actor would
// return one row per applicant.
const COUNTS_SQL: &str = "\
SELECT actor_id,
  CAST(SUM(CASE WHEN action = 'claim' THEN 1 ELSE 0 END) AS BIGINT) AS claims,
  CAST(SUM(CASE WHEN action IN ('approve', 'accept') THEN 1 ELSE 0 END) AS BIGINT) AS accepts,
  CAST(SUM(CASE WHEN action IN ('reject', 'perm_reject') THEN 1 ELSE 0 END) AS BIGINT) AS rejects,
  CAST(SUM(CASE WHEN action = 'kick' THEN 1 ELSE 0 END) AS BIGINT) AS kicks,
  CAST(SUM(CASE WHEN action = 'modmail_open' THEN 1 ELSE 0 END) AS BIGINT) AS modmail_opens
FROM action_log
WHERE guild_id = $1 AND created_at_s > $2 AND created_at_s <= $3
  AND action IN ('claim', 'approve', 'accept', 'reject', 'perm_reject', 'kick', 'modmail_open')
GROUP BY actor_id";

const SUBMITTED_SQL: &str = "\
SELECT COUNT(*) AS submitted FROM action_log
WHERE guild_id = $1 AND created_at_s > $2 AND created_at_s <= $3 AND action = 'app_submitted'";

// Response time of a decision: from the latest submission of the same application at or
// before it. Decisions without such a submission give NULL and are left out.
const RESPONSE_SQL: &str = "\
SELECT d.actor_id AS actor_id, d.created_at_s - (
    SELECT MAX(s.created_at_s) FROM action_log s
    WHERE s.app_id = d.app_id AND s.guild_id = d.guild_id
      AND s.action = 'app_submitted' AND s.created_at_s <= d.created_at_s
  ) AS rt
FROM action_log d
WHERE d.guild_id = $1 AND d.created_at_s > $2 AND d.created_at_s <= $3
  AND d.action IN ('approve', 'accept', 'reject', 'perm_reject') AND d.app_id IS NOT NULL";

fn sum(row: &sea_orm::QueryResult, col: &str) -> Result<i64, sea_orm::DbErr> {
    // SUM is NUMERIC on PostgreSQL, hence the CASTs in the SQL.
    Ok(row.try_get::<Option<i64>>("", col)?.unwrap_or(0))
}

/// Computes the per-moderator summary of `guild_id` over the window ending at `now_s`.
pub async fn summarize(
    db: &impl ConnectionTrait,
    guild_id: &Snowflake,
    window: Window,
    now_s: i64,
) -> Result<MetricsSummary, ApiError> {
    let start = now_s - window.secs();
    let args = || vec![guild_id.as_str().into(), start.into(), now_s.into()];
    let mut per_mod: BTreeMap<String, ModeratorMetrics> = BTreeMap::new();
    let mut totals = Totals::default();
    for row in db::query_all(db, COUNTS_SQL, args()).await? {
        let actor: String = row.try_get("", "actor_id")?;
        let m = ModeratorMetrics {
            moderator_id: actor.clone(),
            claims: sum(&row, "claims")?,
            accepts: sum(&row, "accepts")?,
            rejects: sum(&row, "rejects")?,
            kicks: sum(&row, "kicks")?,
            modmail_opens: sum(&row, "modmail_opens")?,
            ..Default::default()
        };
        totals.claims += m.claims;
        totals.accepts += m.accepts;
        totals.rejects += m.rejects;
        totals.kicks += m.kicks;
        totals.modmail_opens += m.modmail_opens;
        per_mod.insert(actor, m);
    }
    if let Some(row) = db::query_one(db, SUBMITTED_SQL, args()).await? {
        totals.submitted = row.try_get("", "submitted")?;
    }
    let mut times: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for row in db::query_all(db, RESPONSE_SQL, args()).await? {
        let rt: Option<i64> = row.try_get("", "rt")?;
        if let Some(rt) = rt.filter(|t| *t >= 0) {
            times
                .entry(row.try_get("", "actor_id")?)
                .or_default()
                .push(rt);
        }
    }
    let mut all: Vec<i64> = Vec::new();
    for (actor, mut ts) in times {
        ts.sort_unstable();
        all.extend_from_slice(&ts);
        let m = per_mod
            .entry(actor.clone())
            .or_insert_with(|| ModeratorMetrics {
                moderator_id: actor,
                ..Default::default()
            });
        m.decisions_timed = ts.len() as i64;
        m.avg_response_time_s = mean(&ts);
        m.p50_response_time_s = nearest_rank(&ts, 50);
        m.p95_response_time_s = nearest_rank(&ts, 95);
    }
    all.sort_unstable();
    totals.decisions_timed = all.len() as i64;
    totals.avg_response_time_s = mean(&all);
    totals.p50_response_time_s = nearest_rank(&all, 50);
    totals.p95_response_time_s = nearest_rank(&all, 95);
    let mut moderators: Vec<ModeratorMetrics> = per_mod.into_values().collect();
    moderators.sort_by(|a, b| {
        let load =
            |m: &ModeratorMetrics| m.claims + m.accepts + m.rejects + m.kicks + m.modmail_opens;
        load(b)
            .cmp(&load(a))
            .then_with(|| a.moderator_id.cmp(&b.moderator_id))
    });
    Ok(MetricsSummary {
        window,
        start: rfc3339_utc(start),
        end: rfc3339_utc(now_s),
        moderators,
        totals,
        warnings: None,
    })
}
