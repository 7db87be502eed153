//! Ended credentials on SQLite, which has no `NOTIFY`.
//!
//! On PostgreSQL every ending is announced (see [`crate::auth::ended`]). On SQLite a
//! `token revoke` run from the CLI, or a logout through another process on the same file,
//! would otherwise reach this process's streams only at their next heartbeat (20 s by
//! default), and its token check only once the token's few seconds of trust ran out. The
//! feed reads the endings of the last two minutes every second instead, and passes on those
//! it has not heard of, as the `LISTEN` connection does on PostgreSQL. Both tables stay
//! small: ended sessions are purged soon after they end (see
//! [`crate::auth::sessions::purge_ended_sessions`]), and tokens are made by hand.

use std::{collections::HashMap, sync::Arc, time::Duration};

use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::{broadcast, watch};

use crate::db;

/// How often the tables are read.
const EVERY: Duration = Duration::from_secs(1);

/// Longest a reading may take before it is given up (and tried again at the next tick).
const READ_LIMIT: Duration = Duration::from_secs(10);

/// How far below the latest `revoked_at_s` seen endings are still looked for: a writer whose
/// transaction committed a little after its clock was read is still heard. An ending stamped
/// earlier than that (a writer's clock far behind) reaches streams at their heartbeat.
pub(crate) const WINDOW_S: i64 = 120;

/// The endings at or after `$1`, of tokens and of sessions.
const ENDINGS: &str = "SELECT token_hash AS hash, revoked_at_s AS at FROM api_token \
     WHERE revoked_at_s >= $1 \
     UNION ALL SELECT id_hash, revoked_at_s FROM dashboard_session WHERE revoked_at_s >= $1";

/// The latest ending of either table.
const LATEST: &str = "SELECT MAX(at) FROM (\
     SELECT MAX(revoked_at_s) AS at FROM api_token \
     UNION ALL SELECT MAX(revoked_at_s) FROM dashboard_session)";

/// What the readings found so far.
#[derive(Debug, Default)]
struct Seen {
    /// The latest `revoked_at_s` read; `None` before the first reading.
    latest: Option<i64>,
    /// The hashes read, with their `revoked_at_s`, down to [`WINDOW_S`] below `latest`.
    hashes: HashMap<String, i64>,
}

impl Seen {
    /// The oldest `revoked_at_s` the next reading asks for.
    fn since(&self) -> i64 {
        self.latest.unwrap_or(i64::MIN).saturating_sub(WINDOW_S)
    }

    /// Records a reading and returns the hashes it is the first to show.
    fn record(&mut self, rows: Vec<(String, i64)>) -> Vec<String> {
        let mut latest = self.latest.unwrap_or(i64::MIN);
        let mut news = Vec::new();
        for (hash, at) in rows {
            latest = latest.max(at);
            if self.hashes.insert(hash.clone(), at).is_none() {
                news.push(hash);
            }
        }
        self.latest = Some(latest);
        let since = self.since();
        self.hashes.retain(|_, at| *at >= since);
        news
    }
}

/// One reading: the endings since [`Seen::since`]. The first starts from the latest ending in
/// the tables and returns none: those endings came before the feed started, so before any of
/// its streams.
async fn read(db: &DatabaseConnection, seen: &mut Seen) -> Result<Vec<String>, DbErr> {
    let first = seen.latest.is_none();
    if first {
        let latest: Option<i64> = db::query_scalar(db, LATEST, vec![]).await?.flatten();
        seen.latest = Some(latest.unwrap_or(i64::MIN));
    }
    let rows = db::query_all(db, ENDINGS, vec![seen.since().into()])
        .await?
        .iter()
        .map(|row| Ok((row.try_get("", "hash")?, row.try_get("", "at")?)))
        .collect::<Result<Vec<(String, i64)>, DbErr>>()?;
    let news = seen.record(rows);
    Ok(if first { Vec::new() } else { news })
}

/// Reads the endings every [`EVERY`] and sends the new ones on `ended`, until `stop` turns or
/// closes. A failed reading is logged once (and its recovery), not every second.
pub(crate) async fn follow(
    db: DatabaseConnection,
    ended: broadcast::Sender<Arc<str>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut seen = Seen::default();
    let mut failing = false;
    loop {
        match tokio::time::timeout(READ_LIMIT, read(&db, &mut seen)).await {
            Ok(Ok(news)) => {
                if failing {
                    failing = false;
                    tracing::info!("ended credentials are read again");
                }
                for hash in news {
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
mod tests {
    use super::*;

    fn rows(rows: &[(&str, i64)]) -> Vec<(String, i64)> {
        rows.iter().map(|(h, at)| ((*h).to_owned(), *at)).collect()
    }

    #[test]
    fn only_unread_endings_are_news_and_the_window_follows_the_latest() {
        let mut seen = Seen::default();
        assert_eq!(seen.since(), i64::MIN);
        assert_eq!(seen.record(rows(&[("a", 1000), ("b", 1100)])), ["a", "b"]);
        assert_eq!(seen.since(), 1100 - WINDOW_S);
        assert_eq!(seen.hashes.len(), 2);

        // Read again with the next ending: only it is news, even stamped a little earlier.
        assert_eq!(
            seen.record(rows(&[("b", 1100), ("c", 1090)])),
            ["c"],
            "an ending committed late within the window"
        );
        assert!(seen.record(rows(&[("b", 1100), ("c", 1090)])).is_empty());

        // Much later: what fell out of the window is forgotten.
        assert_eq!(seen.record(rows(&[("d", 5000)])), ["d"]);
        assert_eq!(seen.since(), 5000 - WINDOW_S);
        assert_eq!(seen.hashes.keys().collect::<Vec<_>>(), ["d"]);
    }
}
