//! Ended credentials on SQLite, which has no `NOTIFY`.
//!
//! On PostgreSQL every ending is announced (see [`crate::auth::ended`]). On SQLite a
//! `token revoke` run from the CLI, or a logout through another process on the same file,
//! would otherwise reach this process's streams only at their next heartbeat (20 s by
//! default), and its token check only once the token's few seconds of trust ran out. Triggers
//! (migration 8) append every revoked credential's hash to `credential_ending`, in the order of
//! the revocations; the feed reads the rows after the last id it saw every second and passes
//! them on, as the `LISTEN` connection does on PostgreSQL.

use std::{sync::Arc, time::Duration};

use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::{broadcast, watch};

use crate::db;

/// How often the table is read.
const EVERY: Duration = Duration::from_secs(1);

/// Longest a reading may take before it is given up (and tried again at the next tick).
const READ_LIMIT: Duration = Duration::from_secs(10);

/// Most endings read at once: a bulk revocation is passed on over several readings, so that
/// the channel (see `ENDED_CAPACITY`) is not overrun.
const PAGE: i64 = 256;

/// Reads the endings after `after` (at most [`PAGE`]); the first reading (`after` = `None`)
/// only finds where the table ends: those endings came before the feed started, so before any
/// of its streams. Returns the new mark and the hashes.
async fn read(db: &DatabaseConnection, after: Option<i64>) -> Result<(i64, Vec<String>), DbErr> {
    let Some(after) = after else {
        let last: Option<i64> =
            db::query_scalar(db, "SELECT MAX(id) FROM credential_ending", vec![])
                .await?
                .flatten();
        return Ok((last.unwrap_or(0), Vec::new()));
    };
    let rows = db::query_all(
        db,
        "SELECT id, hash FROM credential_ending WHERE id > $1 ORDER BY id LIMIT $2",
        vec![after.into(), PAGE.into()],
    )
    .await?;
    let mut mark = after;
    let mut hashes = Vec::with_capacity(rows.len());
    for row in rows {
        mark = row.try_get("", "id")?;
        hashes.push(row.try_get("", "hash")?);
    }
    Ok((mark, hashes))
}

/// Reads the endings every [`EVERY`] and sends them on `ended`, until `stop` turns or closes.
/// A failed reading is logged once (and its recovery), not every second.
pub(crate) async fn follow(
    db: DatabaseConnection,
    ended: broadcast::Sender<Arc<str>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut after = None;
    let mut failing = false;
    loop {
        match tokio::time::timeout(READ_LIMIT, read(&db, after)).await {
            Ok(Ok((mark, hashes))) => {
                if failing {
                    failing = false;
                    tracing::info!("ended credentials are read again");
                }
                after = Some(mark);
                for hash in hashes {
                    let _ = ended.send(Arc::from(hash));
                }
            }
            outcome => {
                if !failing {
                    failing = true;
                    let error = match outcome {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("no answer within {} s", READ_LIMIT.as_secs()),
                    };
                    tracing::warn!(%error, "cannot read ended credentials; streams of credentials ended by other processes close at their next heartbeat");
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            changed = stop.changed() => if changed.is_err() || *stop.borrow() {
                return;
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    async fn revoke(db: &DatabaseConnection, table: &str, hash_column: &str, hash: &str) {
        db::execute(
            db,
            format!("UPDATE {table} SET revoked_at_s = 1 WHERE {hash_column} = $1"),
            vec![hash.into()],
        )
        .await
        .unwrap();
    }

    /// Every revocation, however it is made, is read once, in order, from where the first
    /// reading found the table; revoking again adds nothing, and a bulk revocation comes a
    /// page at a time.
    #[tokio::test]
    async fn revocations_are_read_once_in_order_after_the_start() {
        let db = crate::db::connect("sqlite::memory:", 2).await.unwrap();
        migration::cli::run(&db, &migration::cli::MigrateCommand::Up { steps: None })
            .await
            .unwrap();
        for i in 0..(PAGE + 3) {
            db::execute(
                &db,
                "INSERT INTO api_token (name, token_hash, guild_ids, created_at_s) \
                 VALUES ('t', $1, '1', 0)",
                vec![format!("t{i}").into()],
            )
            .await
            .unwrap();
        }
        db::execute(
            &db,
            "INSERT INTO dashboard_session (id_hash, user_id, username, display_name, \
             avatar_url, guild_ids, discord_access_token, created_at_s, last_seen_at_s, \
             roles_checked_at_s) VALUES ('s0', 'u', 'u', 'u', '', '1', 'x', 0, 0, 0)",
            vec![],
        )
        .await
        .unwrap();
        revoke(&db, "api_token", "token_hash", "t0").await;

        let (start, none) = read(&db, None).await.unwrap();
        assert!(none.is_empty(), "what ended before the start is not news");
        let (mark, none) = read(&db, Some(start)).await.unwrap();
        assert_eq!((mark, none.len()), (start, 0));

        revoke(&db, "dashboard_session", "id_hash", "s0").await;
        revoke(&db, "api_token", "token_hash", "t1").await;
        revoke(&db, "api_token", "token_hash", "t0").await;
        let (mark, hashes) = read(&db, Some(start)).await.unwrap();
        assert_eq!(hashes, ["s0", "t1"]);

        db::execute(
            &db,
            "UPDATE api_token SET revoked_at_s = 2 WHERE revoked_at_s IS NULL",
            vec![],
        )
        .await
        .unwrap();
        let (mark, page) = read(&db, Some(mark)).await.unwrap();
        assert_eq!(page.len() as i64, PAGE);
        assert_eq!(page[0], "t2");
        let (_, rest) = read(&db, Some(mark)).await.unwrap();
        assert_eq!(rest.len(), 1);
    }
}
