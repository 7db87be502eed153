//! Where the time-series and latency metrics read their data.
//!
//! On SQLite (one writer at a time, so ids commit in order) two derived tables are kept:
//! counts per guild and 15-minute slot, and each application's response time. Before every
//! read they are brought up to date with the `action_log` rows written since the last update
//! (a watermark on `action_log.id`), so answers are never stale or approximate, and the bot's
//! inserts are not slowed (no triggers). On PostgreSQL, where concurrent writers can commit ids
//! out of order and a watermark could skip rows, the same figures are computed from
//! `action_log` directly.
//!
//! `action_log` is an append-only audit log: the bot inserts rows and never edits them. An
//! edited or deleted row is not reflected in the derived counts until they are rebuilt
//! ([`Derived::rebuild`], `pawtropolis-server rebuild-metrics`).

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, TransactionTrait,
};
use tokio::sync::Mutex;

use super::grid::SLOT_SECS;
use crate::db;

/// Counts of the four charted actions in one 15-minute slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotCounts {
    /// Slot start, Unix seconds (a multiple of 900).
    pub slot_s: i64,
    /// `app_submitted`.
    pub submitted: i64,
    /// `claim`.
    pub claim: i64,
    /// `approve` and `accept`.
    pub accept: i64,
    /// `reject` and `perm_reject`.
    pub reject: i64,
}

/// Most `action_log` ids one catch-up transaction covers.
const CATCH_UP_CHUNK: i64 = 20_000;

const COUNTED: &str = "('app_submitted', 'claim', 'approve', 'accept', 'reject', 'perm_reject')";
const DECISIONS: &str = "('approve', 'accept', 'reject', 'perm_reject')";
const SLOT_EXPR: &str = "(created_at_s - ((created_at_s % 900) + 900) % 900)";

fn count_columns() -> String {
    "CAST(SUM(CASE WHEN action = 'app_submitted' THEN 1 ELSE 0 END) AS BIGINT) AS submitted, \
     CAST(SUM(CASE WHEN action = 'claim' THEN 1 ELSE 0 END) AS BIGINT) AS claim, \
     CAST(SUM(CASE WHEN action IN ('approve', 'accept') THEN 1 ELSE 0 END) AS BIGINT) AS accept, \
     CAST(SUM(CASE WHEN action IN ('reject', 'perm_reject') THEN 1 ELSE 0 END) AS BIGINT) AS reject"
        .to_owned()
}

fn slot_from_row(row: &sea_orm::QueryResult) -> Result<SlotCounts, DbErr> {
    Ok(SlotCounts {
        slot_s: row.try_get("", "slot_s")?,
        submitted: row.try_get("", "submitted")?,
        claim: row.try_get("", "claim")?,
        accept: row.try_get("", "accept")?,
        reject: row.try_get("", "reject")?,
    })
}

/// The whole slots inside the window (`lo`, `hi`]: [`first`, `end`) (possibly empty), or `None`
/// when the window spans no slot boundary that leaves room for them. The partial slots at the
/// edges, (`lo`, `first` − 1] and [`end`, `hi`], are read row by row so the edges are exact.
fn whole_slots(lo: i64, hi: i64) -> Option<(i64, i64)> {
    let first = lo.div_euclid(SLOT_SECS) * SLOT_SECS + SLOT_SECS;
    let end = hi.div_euclid(SLOT_SECS) * SLOT_SECS;
    (first <= end).then_some((first, end))
}

/// Per-slot counts straight from `action_log` for rows in (`lo`, `hi`].
async fn direct_slots(
    db: &impl ConnectionTrait,
    guild: &str,
    lo: i64,
    hi: i64,
) -> Result<Vec<SlotCounts>, DbErr> {
    if hi <= lo {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {SLOT_EXPR} AS slot_s, {} FROM action_log \
         WHERE guild_id = $1 AND created_at_s > $2 AND created_at_s <= $3 AND action IN {COUNTED} \
         GROUP BY {SLOT_EXPR}",
        count_columns()
    );
    db::query_all(db, sql, vec![guild.into(), lo.into(), hi.into()])
        .await?
        .iter()
        .map(slot_from_row)
        .collect()
}

/// Keeps the derived tables current and reads them.
pub struct Derived {
    /// One catch-up at a time in this process (others in other processes are fenced by the
    /// watermark update).
    lock: Mutex<()>,
}

impl Default for Derived {
    fn default() -> Self {
        Self::new()
    }
}

impl Derived {
    /// A reader of the derived tables.
    pub fn new() -> Self {
        Self {
            lock: Mutex::new(()),
        }
    }

    /// Brings the derived tables up to date with every `action_log` row written since their
    /// last update (SQLite only; a no-op on PostgreSQL).
    pub async fn catch_up(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        if db.get_database_backend() != DbBackend::Sqlite {
            return Ok(());
        }
        self.caught_up(db).await.map(|_| ())
    }

    /// [`catch_up`](Self::catch_up), giving the watermark reached. Another process catching up
    /// (or rebuilding) at the same time moves the watermark under this one: that is progress,
    /// and this one follows it to the end. Only a watermark that stops moving while writes
    /// keep failing is an error.
    async fn caught_up(&self, db: &DatabaseConnection) -> Result<i64, DbErr> {
        let _guard = self.lock.lock().await;
        let mut stalls = 0;
        let mut seen = None;
        loop {
            let max_id = db::max_action_id(db).await?;
            let mark = watermark(db).await?;
            if max_id <= mark {
                return Ok(mark);
            }
            // The watermark moved since the last pass (this call's chunk, or another process's
            // catch-up or rebuild): progress.
            if seen.replace(mark) != Some(mark) {
                stalls = 0;
            }
            // Bounded transactions: a first pass over millions of rows must not hold SQLite's
            // write lock (and so the bot's inserts) for seconds at a time.
            let upto = max_id.min(mark + CATCH_UP_CHUNK);
            match self.apply(db, mark, upto).await {
                Ok(true) if upto == max_id => return Ok(upto),
                Ok(true) => continue,
                // Another process moved the watermark first, or SQLite refused a stale
                // snapshot: read again.
                Ok(false) => {}
                Err(e) if is_busy(&e) => {}
                Err(e) => return Err(e),
            }
            stalls += 1;
            if stalls > 5 {
                return Err(DbErr::Custom(
                    "metrics catch-up made no progress: the database stayed locked".into(),
                ));
            }
        }
    }

    /// A read transaction in which the derived tables hold every row up to a watermark this
    /// call caught up to. A rebuild in another process that empties them between the catch-up
    /// and the first read is seen (the watermark went back) and waited out, so a reply never
    /// shows half-counted tables.
    async fn snapshot(&self, db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
        for _ in 0..5 {
            let reached = self.caught_up(db).await?;
            let snapshot = db.begin().await?;
            if watermark(&snapshot).await? >= reached {
                return Ok(snapshot);
            }
            snapshot.rollback().await?;
        }
        Err(DbErr::Custom(
            "the metrics tables kept being rebuilt under this read".into(),
        ))
    }

    /// Empties the derived tables and computes them again from every `action_log` row, so
    /// that rows edited or deleted since they were counted count as they are now (SQLite
    /// only; a no-op on PostgreSQL). Replies a server cached before still show the old
    /// figures until they expire (`PAWTROPOLIS_METRICS_CACHE_SECS`).
    pub async fn rebuild(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        if db.get_database_backend() != DbBackend::Sqlite {
            return Ok(());
        }
        {
            let _guard = self.lock.lock().await;
            let txn = db.begin().await?;
            // The watermark first: it takes the write lock, so a catch-up in another process
            // either finished before or starts from zero after.
            for sql in [
                "UPDATE metrics_state SET last_action_id = 0 WHERE id = 1",
                "DELETE FROM metrics_action_counts",
                "DELETE FROM metrics_app_latency",
                "DELETE FROM metrics_latency_slots",
                "DELETE FROM metrics_touched_slots",
            ] {
                db::execute(&txn, sql, vec![]).await?;
            }
            txn.commit().await?;
        }
        self.catch_up(db).await
    }

    async fn apply(&self, db: &DatabaseConnection, mark: i64, max_id: i64) -> Result<bool, DbErr> {
        let started = std::time::Instant::now();
        let txn = db.begin().await?;
        // The watermark moves first: it takes SQLite's write lock and fences out any other
        // process doing the same work.
        let moved = db::execute(
            &txn,
            "UPDATE metrics_state SET last_action_id = $1 WHERE id = 1 AND last_action_id = $2",
            vec![max_id.into(), mark.into()],
        )
        .await?;
        if moved == 0 {
            txn.rollback().await?;
            return Ok(false);
        }
        db::execute(
            &txn,
            format!(
                "INSERT INTO metrics_action_counts (guild_id, slot_s, submitted, claim, accept, reject) \
                 SELECT guild_id, {SLOT_EXPR}, {} FROM action_log \
                 WHERE id > $1 AND id <= $2 AND action IN {COUNTED} \
                 GROUP BY guild_id, {SLOT_EXPR} \
                 ON CONFLICT (guild_id, slot_s) DO UPDATE SET \
                   submitted = metrics_action_counts.submitted + excluded.submitted, \
                   claim = metrics_action_counts.claim + excluded.claim, \
                   accept = metrics_action_counts.accept + excluded.accept, \
                   reject = metrics_action_counts.reject + excluded.reject",
                count_columns()
            ),
            vec![mark.into(), max_id.into()],
        )
        .await?;
        // Every application touched by the new rows gets its response time recomputed: its
        // first decision, minus its latest submission at or before that decision. The slots
        // those applications were in before and are in now get their time lists rebuilt.
        let touched_apps = format!(
            "SELECT n.app_id FROM action_log n WHERE n.id > $1 AND n.id <= $2 \
             AND n.app_id IS NOT NULL AND n.action IN {COUNTED}"
        );
        db::execute(&txn, "DELETE FROM metrics_touched_slots", vec![]).await?;
        // Run before and after the recomputation: the slots those applications leave and the
        // slots they land in.
        let remember_slots = format!(
            "INSERT INTO metrics_touched_slots (guild_id, slot_s) \
             SELECT DISTINCT guild_id, decided_slot_s FROM metrics_app_latency \
             WHERE app_id IN ({touched_apps})"
        );
        db::execute(
            &txn,
            remember_slots.clone(),
            vec![mark.into(), max_id.into()],
        )
        .await?;
        db::execute(
            &txn,
            format!(
                "INSERT INTO metrics_app_latency (app_id, guild_id, decided_at_s, decided_slot_s, response_s) \
                 SELECT f.app_id, f.guild_id, f.decided_at, \
                   f.decided_at - ((f.decided_at % 900) + 900) % 900, \
                   f.decided_at - ( \
                     SELECT MAX(s.created_at_s) FROM action_log s \
                     WHERE s.app_id = f.app_id AND s.guild_id = f.guild_id \
                       AND s.action = 'app_submitted' AND s.created_at_s <= f.decided_at) \
                 FROM (SELECT d.app_id AS app_id, d.guild_id AS guild_id, MIN(d.created_at_s) AS decided_at \
                       FROM action_log d \
                       WHERE d.app_id IN ({touched_apps}) AND d.action IN {DECISIONS} \
                       GROUP BY d.app_id, d.guild_id) f \
                 WHERE true \
                 ON CONFLICT (app_id, guild_id) DO UPDATE SET decided_at_s = excluded.decided_at_s, \
                   decided_slot_s = excluded.decided_slot_s, response_s = excluded.response_s"
            ),
            vec![mark.into(), max_id.into()],
        )
        .await?;
        db::execute(&txn, remember_slots, vec![mark.into(), max_id.into()]).await?;
        db::execute(
            &txn,
            "DELETE FROM metrics_latency_slots WHERE (guild_id, slot_s) IN \
               (SELECT guild_id, slot_s FROM metrics_touched_slots)",
            vec![],
        )
        .await?;
        db::execute(
            &txn,
            "INSERT INTO metrics_latency_slots (guild_id, slot_s, times) \
             SELECT l.guild_id, l.decided_slot_s, GROUP_CONCAT(l.response_s) \
             FROM metrics_app_latency l \
             WHERE (l.guild_id, l.decided_slot_s) IN (SELECT guild_id, slot_s FROM metrics_touched_slots) \
               AND l.response_s >= 0 \
             GROUP BY l.guild_id, l.decided_slot_s",
            vec![],
        )
        .await?;
        db::execute(&txn, "DELETE FROM metrics_touched_slots", vec![]).await?;
        txn.commit().await?;
        if max_id - mark >= 10_000 {
            tracing::info!(
                rows = max_id - mark,
                ms = started.elapsed().as_millis() as u64,
                "metrics tables brought up to date"
            );
        }
        Ok(true)
    }

    /// Counts per 15-minute slot of rows in (`lo`, `hi`], exact at both edges.
    pub async fn slot_counts(
        &self,
        db: &DatabaseConnection,
        guild: &str,
        lo: i64,
        hi: i64,
    ) -> Result<Vec<SlotCounts>, DbErr> {
        if db.get_database_backend() != DbBackend::Sqlite {
            return direct_slots(db, guild, lo, hi).await;
        }
        // Whole slots inside the window come from the derived table; the two partial slots at
        // the edges are counted row by row, so a row at exactly `lo` stays out and one at `hi`
        // is in.
        let Some((first_full, last_slot)) = whole_slots(lo, hi) else {
            return direct_slots(db, guild, lo, hi).await;
        };
        // One snapshot for the three reads: a catch-up committing between them cannot make
        // a row count in two parts of the window, or in none.
        let snapshot = self.snapshot(db).await?;
        let mut out = direct_slots(&snapshot, guild, lo, first_full - 1).await?;
        let rows = db::query_all(
            &snapshot,
            "SELECT slot_s, submitted, claim, accept, reject FROM metrics_action_counts \
             WHERE guild_id = $1 AND slot_s >= $2 AND slot_s < $3",
            vec![guild.into(), first_full.into(), last_slot.into()],
        )
        .await?;
        for row in &rows {
            out.push(slot_from_row(row)?);
        }
        out.extend(direct_slots(&snapshot, guild, last_slot - 1, hi).await?);
        snapshot.commit().await?;
        Ok(out)
    }

    /// (decision time, response seconds) of every application whose first decision falls in
    /// (`lo`, `hi`] and that has a submission at or before it. On SQLite the decision time is
    /// given as the start of its 15-minute slot (every bucket boundary is a slot boundary, so
    /// bucketing is unchanged): the times of a slot arrive as one text list, which spares
    /// decoding a hundred thousand rows one by one.
    pub async fn response_times(
        &self,
        db: &DatabaseConnection,
        guild: &str,
        lo: i64,
        hi: i64,
    ) -> Result<Vec<(i64, i64)>, DbErr> {
        if db.get_database_backend() == DbBackend::Sqlite {
            // Whole slots from the per-slot lists; the partial slots at the window's edges
            // from the per-application rows, with exact bounds.
            let Some((first_full, last_slot)) = whole_slots(lo, hi) else {
                return app_rows(db, guild, lo, hi).await;
            };
            // One snapshot for the three reads: a catch-up that moves an application's
            // decision to another slot cannot drop it from (or count it twice in) the reply.
            let snapshot = self.snapshot(db).await?;
            let mut out = app_rows(&snapshot, guild, lo, first_full - 1).await?;
            let rows = db::query_all(
                &snapshot,
                "SELECT slot_s, times FROM metrics_latency_slots \
                 WHERE guild_id = $1 AND slot_s >= $2 AND slot_s < $3",
                vec![guild.into(), first_full.into(), last_slot.into()],
            )
            .await?;
            for row in &rows {
                let slot: i64 = row.try_get("", "slot_s")?;
                let times: String = row.try_get("", "times")?;
                out.extend(
                    times
                        .split(',')
                        .filter_map(|t| t.trim().parse::<i64>().ok())
                        .map(|rt| (slot, rt)),
                );
            }
            out.extend(app_rows(&snapshot, guild, last_slot - 1, hi).await?);
            snapshot.commit().await?;
            return Ok(out);
        }
        // Only applications with a decision in the window can have their first one there:
        // the first decision of those alone is looked up, rather than of every application
        // the guild ever had (7d of a 3-year, 2.1M-row guild: 10 ms instead of 370-400 ms).
        let sql = format!(
            "SELECT f.decided_at AS decided_at_s, f.decided_at - ( \
                 SELECT MAX(s.created_at_s) FROM action_log s \
                 WHERE s.app_id = f.app_id AND s.guild_id = f.guild_id \
                   AND s.action = 'app_submitted' AND s.created_at_s <= f.decided_at) AS response_s \
             FROM (SELECT app_id, guild_id, MIN(created_at_s) AS decided_at FROM action_log \
                   WHERE guild_id = $1 AND action IN {DECISIONS} \
                     AND app_id IN (SELECT app_id FROM action_log WHERE guild_id = $1 \
                       AND action IN {DECISIONS} AND created_at_s > $2 AND created_at_s <= $3) \
                   GROUP BY app_id, guild_id) f \
             WHERE f.decided_at > $2 AND f.decided_at <= $3"
        );
        let rows = db::query_all(db, sql, vec![guild.into(), lo.into(), hi.into()]).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let t: i64 = row.try_get("", "decided_at_s")?;
            let rt: Option<i64> = row.try_get("", "response_s")?;
            if let Some(rt) = rt.filter(|r| *r >= 0) {
                out.push((t, rt));
            }
        }
        Ok(out)
    }
}

/// (decision time, response seconds) from the per-application table, for (`lo`, `hi`].
async fn app_rows(
    db: &impl ConnectionTrait,
    guild: &str,
    lo: i64,
    hi: i64,
) -> Result<Vec<(i64, i64)>, DbErr> {
    if hi <= lo {
        return Ok(Vec::new());
    }
    let rows = db::query_all(
        db,
        "SELECT decided_at_s, response_s FROM metrics_app_latency \
         WHERE guild_id = $1 AND decided_at_s > $2 AND decided_at_s <= $3 AND response_s >= 0",
        vec![guild.into(), lo.into(), hi.into()],
    )
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("", "decided_at_s")?, r.try_get("", "response_s")?)))
        .collect()
}

/// The last `action_log` id the derived tables have counted.
async fn watermark(db: &impl ConnectionTrait) -> Result<i64, DbErr> {
    Ok(db::query_scalar(
        db,
        "SELECT last_action_id FROM metrics_state WHERE id = 1",
        vec![],
    )
    .await?
    .unwrap_or(0))
}

fn is_busy(e: &DbErr) -> bool {
    let text = e.to_string();
    text.contains("database is locked") || text.contains("busy")
}
