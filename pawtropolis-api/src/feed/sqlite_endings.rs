//! Ended credentials on SQLite, which has no `NOTIFY`.
//!
//! On PostgreSQL every ending is announced (see [`crate::auth::ended`]). On SQLite a
//! `token revoke` run from the CLI, or a logout through another process on the same file,
//! would otherwise reach this process's streams only at their next heartbeat (20 s by
//! default), and its token check only once the token's few seconds of trust ran out. Triggers
//! (migration 8) append the hash of every credential whose `revoked_at_s` is set, or whose
//! live row is deleted, to `credential_ending`, in the order of the endings; the feed reads the
//! rows after the last id it saw every second and passes them on, as the `LISTEN` connection
//! does on PostgreSQL.

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
#[derive(Debug)]
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

/// One reading from `position`, which it moves on; returns the hashes read. The first sets
/// the position at the end of the table and returns none: the endings before the feed
/// started came before any of its streams.
async fn step(db: &DatabaseConnection, position: &Position) -> Result<Vec<String>, DbErr> {
    let after = position.0.load(Ordering::Relaxed);
    let (last, hashes) = if after == UNKNOWN {
        (last_id(db).await?, Vec::new())
    } else {
        match read(db, after).await? {
            Reading::Endings { last, hashes } => (last, hashes),
            Reading::Restarted => {
                tracing::info!("credential_ending was made again; reading it from its start");
                (0, Vec::new())
            }
        }
    };
    position.0.store(last, Ordering::Relaxed);
    Ok(hashes)
}

/// [`step`] within [`READ_LIMIT`].
async fn timed_step(db: &DatabaseConnection, position: &Position) -> Result<Vec<String>, String> {
    match tokio::time::timeout(READ_LIMIT, step(db, position)).await {
        Ok(Ok(hashes)) => Ok(hashes),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", READ_LIMIT.as_secs())),
    }
}

/// Sets the position at the end of the table, before the feed reports ready, so that an
/// ending right after the start is not taken for an old one. (On a failure, the first
/// reading of [`follow`] tries again.)
pub(crate) async fn start(db: &DatabaseConnection, position: &Position) {
    if position.0.load(Ordering::Relaxed) == UNKNOWN
        && let Err(error) = timed_step(db, position).await
    {
        tracing::warn!(%error, "cannot read credential_ending at start; trying again every second");
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
        match timed_step(&db, &position).await {
            Ok(hashes) => {
                if failing {
                    failing = false;
                    tracing::info!("ended credentials are read again");
                }
                for hash in hashes {
                    let _ = ended.send(Arc::from(hash));
                }
            }
            Err(error) if !failing => {
                failing = true;
                tracing::warn!(%error, "cannot read ended credentials; streams of credentials ended by other processes close at their next heartbeat");
            }
            Err(_) => {}
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
    /// in order, from where the table ended at the start; revoking again adds nothing, deleting
    /// a revoked row adds nothing, a bulk revocation comes a page at a time, and a table made
    /// again is read from its start.
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
             roles_checked_at_s) VALUES ('s0', 'u', 'u', 'u', '', '1', 'x', 0, 0, 0), \
             ('s1', 'u', 'u', 'u', '', '1', 'x', 0, 0, 0)",
        )
        .await;
        revoke(&db, "api_token", "token_hash", "t0").await;

        let position = Position::default();
        start(&db, &position).await;
        assert_eq!(position.0.load(Ordering::Relaxed), 1);
        let read = || async { step(&db, &position).await.unwrap() };
        assert!(
            read().await.is_empty(),
            "what ended before the start is not news"
        );

        revoke(&db, "dashboard_session", "id_hash", "s0").await;
        revoke(&db, "api_token", "token_hash", "t1").await;
        revoke(&db, "api_token", "token_hash", "t0").await;
        assert_eq!(read().await, ["s0", "t1"]);
        assert!(read().await.is_empty());

        exec(
            &db,
            "UPDATE api_token SET revoked_at_s = 2 WHERE revoked_at_s IS NULL",
        )
        .await;
        let page = read().await;
        assert_eq!(page.len() as i64, PAGE);
        assert_eq!(page[0], "t2");
        assert_eq!(read().await.len(), 1);

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
        assert_eq!(read().await, ["live"]);

        // The table made again: its ids start over, below the position, and are read from
        // the start. (Down 2: migrations 9, PostgreSQL's, and 8, this table's.)
        migration::cli::run(&db, &migration::cli::MigrateCommand::Down { steps: 2 })
            .await
            .unwrap();
        migration::cli::run(&db, &migration::cli::MigrateCommand::Up { steps: None })
            .await
            .unwrap();
        assert!(read().await.is_empty());
        assert_eq!(position.0.load(Ordering::Relaxed), 0);
        exec(&db, "DELETE FROM dashboard_session").await;
        assert_eq!(read().await, ["s1"]);
    }
}
