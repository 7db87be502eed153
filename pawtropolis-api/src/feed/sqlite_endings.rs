//! Ended credentials on SQLite, which has no `NOTIFY`.
//!
//! On PostgreSQL every ending is announced (see [`crate::auth::ended`]). On SQLite a
//! `token revoke` run from the CLI, or a logout through another process on the same file,
//! would otherwise reach this process's streams only at their next heartbeat (20 s by
//! default), and its token check only once the token's few seconds of trust ran out. Triggers
//! (migration 8) append the hash of every credential whose `revoked_at_s` is set, or whose
//! live row is deleted, to `credential_ending`, in the order of the endings; the feed reads the
//! rows after the
//! last id it saw every second and passes them on, as the `LISTEN` connection does on
//! PostgreSQL.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

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

/// Where the reading stands: the id of the last ending read, [`UNKNOWN`] before the first
/// reading. Kept by the feed across readers, so that a reader started again after the feed
/// reconnected goes on where the last one stopped.
#[derive(Debug)]
pub(crate) struct Position(AtomicI64);

/// The position before the table was first read.
const UNKNOWN: i64 = -1;

impl Default for Position {
    fn default() -> Self {
        Self(AtomicI64::new(UNKNOWN))
    }
}

/// What one reading found.
#[derive(Debug, PartialEq, Eq)]
enum Reading {
    /// The hashes after the position, up to the new position.
    Endings { last: i64, hashes: Vec<String> },
    /// The table ends below the position: it was made again (`migrate down`, then up) and
    /// its ids start over. Read from its start.
    Restarted,
}

/// The id of the last ending in the table (0 when it is empty).
async fn last_id(db: &DatabaseConnection) -> Result<i64, DbErr> {
    Ok(db::query_scalar(
        db,
        "SELECT COALESCE(MAX(id), 0) FROM credential_ending",
        vec![],
    )
    .await?
    .unwrap_or(0))
}

/// Reads the endings after `after` (at most [`PAGE`]).
async fn read(db: &DatabaseConnection, after: i64) -> Result<Reading, DbErr> {
    let rows = db::query_all(
        db,
        "SELECT id, hash FROM credential_ending WHERE id > $1 ORDER BY id LIMIT $2",
        vec![after.into(), PAGE.into()],
    )
    .await?;
    if rows.is_empty() {
        return Ok(if last_id(db).await? < after {
            Reading::Restarted
        } else {
            Reading::Endings {
                last: after,
                hashes: Vec::new(),
            }
        });
    }
    let mut last = after;
    let mut hashes = Vec::with_capacity(rows.len());
    for row in rows {
        let id: i64 = row.try_get("", "id")?;
        if id > last + 1 {
            // Ids follow one another (one writer at a time, rolled-back ids given back), so
            // a gap is what the table's trimming dropped before it was read.
            tracing::warn!(
                missed = id - last - 1,
                "ended credentials were dropped from credential_ending before they were read; their streams close at their next heartbeat"
            );
        }
        last = id;
        hashes.push(row.try_get("", "hash")?);
    }
    Ok(Reading::Endings { last, hashes })
}

/// Sets the position at the end of the table, if it is not set: the endings before the feed
/// started came before any of its streams. Done before the feed reports ready, so that an
/// ending right after the start is not taken for an old one.
pub(crate) async fn start(db: &DatabaseConnection, position: &Position) {
    if position.0.load(Ordering::Relaxed) != UNKNOWN {
        return;
    }
    match tokio::time::timeout(READ_LIMIT, last_id(db)).await {
        Ok(Ok(last)) => position.0.store(last, Ordering::Relaxed),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot read credential_ending; ended credentials are looked for again every second")
        }
        Err(_) => tracing::warn!(
            "credential_ending did not answer at start; ended credentials are looked for again every second"
        ),
    }
}

/// Reads the endings every [`EVERY`] from `position` on and sends them on `ended`, until
/// `stop` turns or closes. A failed reading is logged once (and its recovery), not every
/// second.
pub(crate) async fn follow(
    db: DatabaseConnection,
    ended: broadcast::Sender<Arc<str>>,
    mut stop: watch::Receiver<bool>,
    position: Arc<Position>,
) {
    let mut failing = false;
    loop {
        start(&db, &position).await;
        let after = position.0.load(Ordering::Relaxed);
        let outcome = if after == UNKNOWN {
            None
        } else {
            tokio::time::timeout(READ_LIMIT, read(&db, after))
                .await
                .ok()
        };
        match outcome {
            Some(Ok(reading)) => {
                if failing {
                    failing = false;
                    tracing::info!("ended credentials are read again");
                }
                match reading {
                    Reading::Endings { last, hashes } => {
                        position.0.store(last, Ordering::Relaxed);
                        for hash in hashes {
                            let _ = ended.send(Arc::from(hash));
                        }
                    }
                    Reading::Restarted => {
                        tracing::info!(
                            "credential_ending was made again; reading it from its start"
                        );
                        position.0.store(0, Ordering::Relaxed);
                    }
                }
            }
            outcome => {
                if !failing {
                    failing = true;
                    let error = match outcome {
                        Some(Err(e)) => e.to_string(),
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

    async fn exec(db: &DatabaseConnection, sql: &str) {
        db::execute(db, sql, vec![]).await.unwrap();
    }

    /// The endings after `after`, and the new position.
    async fn endings(db: &DatabaseConnection, after: i64) -> (i64, Vec<String>) {
        match read(db, after).await.unwrap() {
            Reading::Endings { last, hashes } => (last, hashes),
            Reading::Restarted => panic!("read as made again"),
        }
    }

    async fn revoke(db: &DatabaseConnection, table: &str, hash_column: &str, hash: &str) {
        db::execute(
            db,
            format!("UPDATE {table} SET revoked_at_s = 1 WHERE {hash_column} = $1"),
            vec![hash.into()],
        )
        .await
        .unwrap();
    }

    /// Every revocation, however it is made, and every deletion of a live row, is read once,
    /// in order, from where the table ended at the start; revoking again adds nothing, a bulk
    /// revocation comes a page at a time, and a table made again is read from its start.
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
        exec(
            &db,
            "INSERT INTO dashboard_session (id_hash, user_id, username, display_name, \
             avatar_url, guild_ids, discord_access_token, created_at_s, last_seen_at_s, \
             roles_checked_at_s) VALUES ('s0', 'u', 'u', 'u', '', '1', 'x', 0, 0, 0)",
        )
        .await;
        revoke(&db, "api_token", "token_hash", "t0").await;

        let position = Position::default();
        start(&db, &position).await;
        let at_start = position.0.load(Ordering::Relaxed);
        assert_eq!(at_start, 1, "what ended before the start is not news");
        let none = read(&db, at_start).await.unwrap();
        assert_eq!(
            none,
            Reading::Endings {
                last: at_start,
                hashes: vec![]
            }
        );

        revoke(&db, "dashboard_session", "id_hash", "s0").await;
        revoke(&db, "api_token", "token_hash", "t1").await;
        revoke(&db, "api_token", "token_hash", "t0").await;
        let (last, hashes) = endings(&db, at_start).await;
        assert_eq!(hashes, ["s0", "t1"]);

        exec(
            &db,
            "UPDATE api_token SET revoked_at_s = 2 WHERE revoked_at_s IS NULL",
        )
        .await;
        let (last, hashes) = endings(&db, last).await;
        assert_eq!(hashes.len() as i64, PAGE);
        assert_eq!(hashes[0], "t2");
        let (last, hashes) = endings(&db, last).await;
        assert_eq!(hashes.len(), 1);

        // A live row deleted by hand ends its credential; a revoked one has ended already.
        exec(
            &db,
            "INSERT INTO api_token (name, token_hash, guild_ids, created_at_s) \
             VALUES ('t', 'live', '1', 0)",
        )
        .await;
        exec(
            &db,
            "DELETE FROM api_token WHERE token_hash IN ('live', 't0')",
        )
        .await;
        let (last, hashes) = endings(&db, last).await;
        assert_eq!(hashes, ["live"]);

        // The table made again: its ids start over, below the position.
        migration::cli::run(&db, &migration::cli::MigrateCommand::Down { steps: 1 })
            .await
            .unwrap();
        migration::cli::run(&db, &migration::cli::MigrateCommand::Up { steps: None })
            .await
            .unwrap();
        assert_eq!(read(&db, last).await.unwrap(), Reading::Restarted);
    }
}
