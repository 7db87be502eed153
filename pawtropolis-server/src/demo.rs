//! Realistic demo data: applications submitted, claimed and decided with realistic delays by a
//! team of moderators, plus joins, modmail and kicks.

use rand::{Rng, SeedableRng, rngs::StdRng};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, TransactionTrait, Value,
};

/// Guild id of the demo data: no real guild's, so that demo rows written into a real database
/// by mistake can never pass for a real guild's actions (and are easy to delete).
pub const DEMO_GUILD: &str = "424242424242424242";

/// Discord's epoch (2015-01-01) in Unix milliseconds, for realistic snowflakes.
const DISCORD_EPOCH_MS: i64 = 1_420_070_400_000;

/// Rows per INSERT statement (one JSON parameter).
const ROWS_PER_STATEMENT: usize = 10_000;

/// Rows per transaction.
const ROWS_PER_TXN: usize = 100_000;

struct Row {
    app: Option<u64>,
    actor: u64,
    subject: Option<u64>,
    action: &'static str,
    reason: Option<&'static str>,
    meta: Option<&'static str>,
    at: i64,
}

/// Milliseconds after Discord's epoch of the first 17-digit snowflakes (10^16 >> 22, rounded
/// up): earlier ones are too short for the API's validation, so a `--now` before 2015 still
/// makes valid ids.
const FIRST_17_DIGIT_MS: i64 = 2_384_185_792;

fn snowflake_at(rng: &mut StdRng, unix_s: i64) -> u64 {
    let ms = (unix_s * 1000 - DISCORD_EPOCH_MS).max(FIRST_17_DIGIT_MS) as u64;
    (ms << 22) | rng.random_range(0..(1 << 22))
}

/// Moderator ids of a guild: stable for a guild, so repeated runs share the team.
pub fn moderators(guild: &str) -> Vec<u64> {
    let seed = guild.bytes().fold(1469598103934665603u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(1099511628211)
    });
    let mut rng = StdRng::seed_from_u64(seed);
    (0..12)
        .map(|_| {
            let joined = 1_500_000_000 + rng.random_range(0..100_000_000);
            snowflake_at(&mut rng, joined)
        })
        .collect()
}

/// A delay in seconds, skewed like real response times: mostly minutes, sometimes hours.
fn delay(rng: &mut StdRng, median_s: f64) -> i64 {
    // Log-normal via the sum of uniforms (Irwin–Hall ≈ normal), cheap and deterministic.
    let z: f64 = (0..6).map(|_| rng.random::<f64>()).sum::<f64>() - 3.0;
    (median_s * (z * 0.9).exp()).round().max(5.0) as i64
}

fn app_uuid(n: u64) -> String {
    let h = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5DEE_CE66_D1CE_4E5B;
    let l = h.rotate_left(29).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        l >> 52,
        l & 0xffff_ffff_ffff
    )
}

fn generate(rows: u64, guild: &str, end_s: i64, days: u32, seed: u64) -> Vec<Row> {
    let mut rng = StdRng::seed_from_u64(seed ^ guild.len() as u64);
    let mods = moderators(guild);
    let start_s = end_s - i64::from(days) * 86_400;
    let mut out: Vec<Row> = Vec::with_capacity(rows as usize + 16);
    let mut app_no: u64 = seed.wrapping_mul(1_000_000_007);
    while (out.len() as u64) < rows {
        let t0 = rng.random_range(start_s..end_s);
        let created = t0 - rng.random_range(86_400..86_400 * 900);
        let applicant = snowflake_at(&mut rng, created);
        let roll: f64 = rng.random();
        let push = |out: &mut Vec<Row>, r: Row| {
            if r.at <= end_s {
                out.push(r)
            }
        };
        if roll < 0.08 {
            // Modmail thread.
            let m = mods[rng.random_range(0..mods.len())];
            push(
                &mut out,
                Row {
                    app: None,
                    actor: m,
                    subject: Some(applicant),
                    action: "modmail_open",
                    reason: None,
                    meta: Some(r#"{"source":"dm"}"#),
                    at: t0,
                },
            );
            push(
                &mut out,
                Row {
                    app: None,
                    actor: m,
                    subject: Some(applicant),
                    action: "modmail_close",
                    reason: None,
                    meta: None,
                    at: t0 + delay(&mut rng, 3_600.0),
                },
            );
            continue;
        }
        if roll < 0.10 {
            let m = mods[rng.random_range(0..mods.len())];
            push(
                &mut out,
                Row {
                    app: None,
                    actor: m,
                    subject: Some(applicant),
                    action: "kick",
                    reason: Some("spam"),
                    meta: None,
                    at: t0,
                },
            );
            continue;
        }
        app_no += 1;
        let app = Some(app_no);
        push(
            &mut out,
            Row {
                app: None,
                actor: applicant,
                subject: Some(applicant),
                action: "member_join",
                reason: None,
                meta: None,
                at: t0 - delay(&mut rng, 1_200.0),
            },
        );
        push(
            &mut out,
            Row {
                app,
                actor: applicant,
                subject: Some(applicant),
                action: "app_submitted",
                reason: None,
                meta: None,
                at: t0,
            },
        );
        let m = mods[rng.random_range(0..mods.len())];
        let claim_at = t0 + delay(&mut rng, 1_800.0);
        if rng.random::<f64>() < 0.08 {
            // Claimed, released, picked up again.
            push(
                &mut out,
                Row {
                    app,
                    actor: m,
                    subject: Some(applicant),
                    action: "claim",
                    reason: None,
                    meta: None,
                    at: claim_at,
                },
            );
            push(
                &mut out,
                Row {
                    app,
                    actor: m,
                    subject: Some(applicant),
                    action: "unclaim",
                    reason: None,
                    meta: None,
                    at: claim_at + delay(&mut rng, 600.0),
                },
            );
        }
        let m = mods[rng.random_range(0..mods.len())];
        let claim_at = claim_at + delay(&mut rng, 300.0);
        push(
            &mut out,
            Row {
                app,
                actor: m,
                subject: Some(applicant),
                action: "claim",
                reason: None,
                meta: None,
                at: claim_at,
            },
        );
        let mut decide_at = claim_at + delay(&mut rng, 900.0);
        if rng.random::<f64>() < 0.07 {
            push(
                &mut out,
                Row {
                    app,
                    actor: m,
                    subject: Some(applicant),
                    action: "need_info",
                    reason: Some("please answer question 3"),
                    meta: None,
                    at: decide_at,
                },
            );
            decide_at += delay(&mut rng, 7_200.0);
        }
        let d: f64 = rng.random();
        let (action, reason) = if d < 0.72 {
            ("approve", None)
        } else if d < 0.94 {
            ("reject", Some("incomplete answers"))
        } else {
            ("perm_reject", Some("underage"))
        };
        push(
            &mut out,
            Row {
                app,
                actor: m,
                subject: Some(applicant),
                action,
                reason,
                meta: Some(r#"{"via":"review_card"}"#),
                at: decide_at,
            },
        );
    }
    out.truncate(rows as usize);
    // The bot writes in time order, so ids grow with time.
    out.sort_by_key(|r| r.at);
    out
}

/// Inserts `rows` generated rows for `guild` over the `days` before `end_s`; returns how many.
///
/// Rows travel as one JSON array per statement and the database unpacks them (`json_each` on
/// SQLite, `jsonb_array_elements` on PostgreSQL): binding millions of separate parameters is
/// what would otherwise dominate the time.
pub async fn insert_demo_rows(
    db: &DatabaseConnection,
    rows: u64,
    guild: &str,
    end_s: i64,
    days: u32,
    seed: u64,
) -> Result<u64, DbErr> {
    let data = generate(rows, guild, end_s, days.max(1), seed);
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "INSERT INTO action_log (guild_id, app_id, app_code, actor_id, subject_id, action, reason, meta_json, created_at_s) \
             SELECT $1, r->>0, r->>1, r->>2, r->>3, r->>4, r->>5, r->>6, (r->>7)::bigint \
             FROM jsonb_array_elements($2::jsonb) AS r"
        }
        _ => {
            "INSERT INTO action_log (guild_id, app_id, app_code, actor_id, subject_id, action, reason, meta_json, created_at_s) \
             SELECT $1, json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'), json_extract(j.value, '$[2]'), \
                    json_extract(j.value, '$[3]'), json_extract(j.value, '$[4]'), json_extract(j.value, '$[5]'), \
                    json_extract(j.value, '$[6]'), json_extract(j.value, '$[7]') \
             FROM json_each($2) AS j ORDER BY j.key"
        }
    };
    for txn_chunk in data.chunks(ROWS_PER_TXN) {
        let txn = db.begin().await?;
        for chunk in txn_chunk.chunks(ROWS_PER_STATEMENT) {
            let mut json = String::with_capacity(chunk.len() * 160);
            json.push('[');
            for (i, r) in chunk.iter().enumerate() {
                if i > 0 {
                    json.push(',');
                }
                let uuid = r.app.map(app_uuid);
                let code = uuid.as_ref().map(|u| u[..6].to_uppercase());
                let row = (
                    uuid,
                    code,
                    r.actor.to_string(),
                    r.subject.map(|s| s.to_string()),
                    r.action,
                    r.reason,
                    r.meta,
                    r.at,
                );
                json.push_str(
                    &serde_json::to_string(&row).map_err(|e| DbErr::Custom(e.to_string()))?,
                );
            }
            json.push(']');
            let values: Vec<Value> = vec![guild.into(), json.into()];
            txn.execute_raw(Statement::from_sql_and_values(backend, sql, values))
                .await?;
        }
        txn.commit().await?;
    }
    Ok(data.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_exactly_n_rows_in_time_order_within_the_window() {
        let rows = generate(5_000, DEMO_GUILD, 1_761_000_000, 30, 1);
        assert_eq!(rows.len(), 5_000);
        assert!(rows.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(rows.iter().all(|r| r.at <= 1_761_000_000));
        assert!(rows.iter().any(|r| r.action == "app_submitted"));
        assert!(rows.iter().any(|r| r.action == "approve"));
    }

    #[test]
    fn ids_are_snowflakes_whatever_the_date() {
        let mut rng = StdRng::seed_from_u64(1);
        for at in [0, 1_420_070_400, 1_422_000_000, 1_761_000_000] {
            for _ in 0..100 {
                let id = snowflake_at(&mut rng, at).to_string();
                assert!(
                    pawtropolis_api::Snowflake::parse("id", &id).is_ok(),
                    "{at}: {id}"
                );
            }
        }
        assert_eq!((10u64.pow(16) >> 22) + 1, FIRST_17_DIGIT_MS as u64);
    }

    #[test]
    fn uuids_look_like_uuids() {
        let u = app_uuid(42);
        assert_eq!(u.len(), 36);
        assert_eq!(u.matches('-').count(), 4);
    }
}
