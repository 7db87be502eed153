use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use sea_orm::{DatabaseConnection, DbBackend, DbErr};
use serde::Serialize;
use tokio::sync::{Notify, broadcast, watch};

use crate::{
    db,
    logs::{ITEM_COLUMNS, LogItem},
};

/// One published row, with its SSE frame encoded once for every subscriber.
#[derive(Debug)]
pub struct FeedEvent {
    /// `action_log.id`.
    pub id: i64,
    /// Guild of the row.
    pub guild_id: String,
    /// `id: …\nevent: action\ndata: {…}\n\n`.
    pub frame: Bytes,
}

/// The JSON of an event: the fields of a `/api/logs` item plus `timestamp` (RFC 3339).
#[derive(Serialize)]
struct EventData<'a> {
    #[serde(flatten)]
    item: &'a LogItem,
    timestamp: &'a str,
}

/// Encodes a row as one SSE event.
pub(crate) fn frame_of(item: &LogItem) -> Bytes {
    let data = serde_json::to_string(&EventData {
        item,
        timestamp: &item.created_at,
    })
    .unwrap_or_else(|_| "{}".to_owned());
    Bytes::from(format!("id: {}\nevent: action\ndata: {data}\n\n", item.id))
}

/// Rows fetched per poll.
const BATCH: i64 = 500;

/// A hole in the ids seen on PostgreSQL, where concurrent writers commit ids out of order: a
/// row with a lower id can appear after a higher one, and publishing past the hole would lose
/// it for good.
struct Gap {
    /// The missing id.
    id: i64,
    /// `xmax` of a snapshot taken one poll after the hole was seen: by then the transaction
    /// holding the missing id has written its row, so it has a lower transaction id.
    xmax: i64,
    /// Whether `xmax` was taken one poll later (the first one may precede the id's
    /// transaction getting a transaction id).
    refreshed: bool,
}

/// Events kept for slow subscribers; one that falls further behind re-reads the database.
const CHANNEL_CAPACITY: usize = 4_096;

/// Channel PostgreSQL writers notify after inserting into `action_log`.
pub const NOTIFY_CHANNEL: &str = "pawtropolis_action_log";

struct Inner {
    db: DatabaseConnection,
    tx: broadcast::Sender<Arc<FeedEvent>>,
    /// Every row with an id at or below this has been published (or given up as a hole).
    high_water: AtomicI64,
    wake: Notify,
    poll: Duration,
    stop: watch::Sender<bool>,
}

/// Publishes new `action_log` rows in id order on a broadcast channel: woken by a short poll,
/// at once by [`super::ActionRecorder`], and by PostgreSQL `NOTIFY`.
#[derive(Clone)]
pub struct ActionFeed {
    inner: Arc<Inner>,
}

impl ActionFeed {
    /// Starts publishing rows written from now on.
    pub async fn start(db: DatabaseConnection, poll: Duration) -> Result<Self, DbErr> {
        let start = db::query_one(
            &db,
            "SELECT COALESCE(MAX(id), 0) AS m FROM action_log",
            vec![],
        )
        .await?
        .map(|r| r.try_get::<i64>("", "m"))
        .transpose()?
        .unwrap_or(0);
        let (tx, _) = broadcast::channel(CHANNEL_CAPACITY);
        let (stop, _) = watch::channel(false);
        let feed = Self {
            inner: Arc::new(Inner {
                db,
                tx,
                high_water: AtomicI64::new(start),
                wake: Notify::new(),
                poll: poll.max(Duration::from_millis(10)),
                stop,
            }),
        };
        tokio::spawn(feed.clone().run());
        match feed.inner.db.get_database_backend() {
            DbBackend::Postgres => {
                tokio::spawn(feed.clone().listen());
            }
            DbBackend::Sqlite => super::wal_watch::start(&feed.inner.db, &feed).await,
            _ => {}
        }
        Ok(feed)
    }

    /// A receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<FeedEvent>> {
        self.inner.tx.subscribe()
    }

    /// The highest id such that every row up to it has been published.
    pub fn high_water(&self) -> i64 {
        self.inner.high_water.load(Ordering::SeqCst)
    }

    /// Looks for new rows now instead of at the next poll.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Stops publishing and tells subscribers to end.
    pub fn stop(&self) {
        self.inner.stop.send_replace(true);
    }

    /// Resolves when the feed stops.
    pub fn stopped(&self) -> watch::Receiver<bool> {
        self.inner.stop.subscribe()
    }

    async fn run(self) {
        let mut stop = self.inner.stop.subscribe();
        let mut gap: Option<Gap> = None;
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.inner.poll) => {}
                () = self.inner.wake.notified() => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
            if let Err(e) = self.publish_new(&mut gap).await {
                tracing::warn!(error = %e, "live feed could not read action_log");
            }
        }
    }

    /// True when every transaction that was running when the hole was seen has ended, so a
    /// row still missing was rolled back (PostgreSQL transaction ids: the current snapshot's
    /// xmin has passed the xmax recorded then).
    async fn hole_settled(&self, gap: &Gap) -> Result<bool, DbErr> {
        let xmin = db::query_one(
            &self.inner.db,
            "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS x",
            vec![],
        )
        .await?
        .map(|r| r.try_get::<i64>("", "x"))
        .transpose()?
        .unwrap_or(0);
        Ok(xmin >= gap.xmax)
    }

    async fn current_xmax(&self) -> Result<i64, DbErr> {
        Ok(db::query_one(
            &self.inner.db,
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS x",
            vec![],
        )
        .await?
        .map(|r| r.try_get::<i64>("", "x"))
        .transpose()?
        .unwrap_or(i64::MAX))
    }

    async fn publish_new(&self, gap: &mut Option<Gap>) -> Result<(), DbErr> {
        let postgres = self.inner.db.get_database_backend() == DbBackend::Postgres;
        loop {
            // Checked before reading the rows: a transaction that commits after this check has
            // its row in the read below.
            let settled = match gap.as_ref() {
                Some(g) if postgres && g.refreshed => self.hole_settled(g).await?,
                _ => false,
            };
            let hw = self.high_water();
            let rows = db::query_all(
                &self.inner.db,
                format!("SELECT {ITEM_COLUMNS} FROM action_log WHERE id > $1 ORDER BY id LIMIT $2"),
                vec![hw.into(), BATCH.into()],
            )
            .await?;
            let fetched = rows.len() as i64;
            let mut expected = hw + 1;
            for row in &rows {
                let id: i64 = row.try_get("", "id")?;
                // A hole on PostgreSQL: a lower id may still be in an open transaction. Wait
                // until every transaction running when the hole was seen has ended. On SQLite
                // ids commit in order; a hole there is a deleted row.
                if id != expected && postgres {
                    match gap.as_mut() {
                        Some(g) if g.id == expected && settled => {}
                        Some(g) if g.id == expected && !g.refreshed => {
                            g.xmax = self.current_xmax().await?;
                            g.refreshed = true;
                            return Ok(());
                        }
                        Some(g) if g.id == expected => return Ok(()),
                        _ => {
                            *gap = Some(Gap {
                                id: expected,
                                xmax: i64::MAX,
                                refreshed: false,
                            });
                            return Ok(());
                        }
                    }
                }
                *gap = None;
                expected = id + 1;
                let item = match LogItem::from_row(row) {
                    Ok(item) => item,
                    Err(e) => {
                        // One undecodable row must not stop the feed for everyone.
                        tracing::warn!(error = %e, id, "skipping an action_log row the feed cannot read");
                        self.inner.high_water.store(id, Ordering::SeqCst);
                        continue;
                    }
                };
                let event = Arc::new(FeedEvent {
                    id: item.id,
                    guild_id: item.guild_id.clone(),
                    frame: frame_of(&item),
                });
                // The mark moves before the send: a subscriber that reads it after subscribing
                // either finds the row in the database or receives it.
                self.inner.high_water.store(item.id, Ordering::SeqCst);
                let _ = self.inner.tx.send(event);
            }
            if fetched < BATCH {
                return Ok(());
            }
        }
    }

    /// Wakes the feed on PostgreSQL `NOTIFY` from other writers (the poll stays the safety
    /// net when the listener is down).
    async fn listen(self) {
        let Some(pool) = pool_of(&self.inner.db) else {
            return;
        };
        let mut stop = self.inner.stop.subscribe();
        loop {
            match sea_orm::sqlx::postgres::PgListener::connect_with(&pool).await {
                Ok(mut listener) => {
                    if let Err(e) = listener.listen(NOTIFY_CHANNEL).await {
                        tracing::warn!(error = %e, "LISTEN failed; relying on the poll");
                    } else {
                        loop {
                            tokio::select! {
                                msg = listener.recv() => match msg {
                                    Ok(_) => self.wake(),
                                    Err(e) => {
                                        tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                                        break;
                                    }
                                },
                                _ = stop.changed() => return,
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot LISTEN; relying on the poll"),
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

fn pool_of(db: &DatabaseConnection) -> Option<sea_orm::sqlx::PgPool> {
    (db.get_database_backend() == DbBackend::Postgres)
        .then(|| db.get_postgres_connection_pool().clone())
}
