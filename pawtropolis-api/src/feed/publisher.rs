use std::{
    sync::{
        Arc, Weak,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use std::collections::HashMap;

use bytes::Bytes;
use sea_orm::{
    DatabaseConnection, DbBackend, DbErr, SqlxPostgresConnector, SqlxSqliteConnector,
    sqlx::{
        postgres::{PgConnectOptions, PgPoolOptions},
        sqlite::{SqliteConnectOptions, SqlitePoolOptions},
    },
};
use serde::Serialize;
use tokio::sync::{Notify, broadcast, oneshot, watch};

use crate::{
    auth::ended::ENDED_CHANNEL,
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

/// Holes in the ids seen on PostgreSQL, where concurrent writers commit ids out of order: a
/// row with a lower id can appear after a higher one, and publishing past the hole would lose
/// it for good.
///
/// A writer takes its id from the sequence (`nextval`, which locks the sequence until the
/// transaction ends) before it inserts, and may get a transaction id only later, or never
/// show one before it commits (a trigger, or `SELECT nextval(…)` then `INSERT`). So the feed
/// does not wait on transaction ids: it waits until every transaction that held a writer's
/// lock on the sequence when the hole was seen has ended.
struct Gap {
    /// Every hole below this id is covered by the wait: the highest id of the read that found
    /// the hole. That row had committed, so a transaction holding any lower id had taken it,
    /// and its lock, before the read.
    upto: i64,
    /// Those transactions (`pg_locks.virtualtransaction`, comma-separated).
    writers: String,
    /// The relation whose lock they held (see [`id_source`]).
    source: i64,
    /// When the hole was seen, to say so in the log when a writer keeps it open for long.
    since: std::time::Instant,
    /// Whether the log said so already.
    warned: bool,
    /// Whether they have all ended (then it stays so).
    settled: bool,
}

/// Writers' locks on the relation `$1` (see [`id_source`]), held by transactions other than
/// the feed's (a prepared transaction keeps its locks with no backend). `nextval` takes
/// `RowExclusiveLock` on the sequence; readers of the table, and `UPDATE`s or `DELETE`s of it
/// (a retention purge), do not lock the sequence and are not waited for.
const WRITER_LOCKS: &str = "FROM pg_locks l \
     WHERE l.locktype = 'relation' AND l.granted AND l.mode = 'RowExclusiveLock' \
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
       AND l.relation = $1::bigint::oid \
       AND l.pid IS DISTINCT FROM pg_backend_pid()";

/// The relation whose writers a hole waits for: the sequence `action_log.id` takes its values
/// from (through its default, whether or not the column owns it, or as an identity column),
/// else `action_log` itself. Logged when the guarantee is weaker than the usual one.
async fn id_source(db: &DatabaseConnection) -> Result<i64, DbErr> {
    let sequence = db::query_scalar::<Option<i64>>(
        db,
        "SELECT COALESCE( \
           (SELECT d.refobjid::bigint FROM pg_attrdef ad \
              JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum AND a.attname = 'id' \
              JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid \
                AND d.refclassid = 'pg_class'::regclass \
              JOIN pg_class c ON c.oid = d.refobjid AND c.relkind = 'S' \
             WHERE ad.adrelid = 'action_log'::regclass LIMIT 1), \
           to_regclass(pg_get_serial_sequence('action_log', 'id'))::oid::bigint)",
        vec![],
    )
    .await?
    .flatten();
    let Some(sequence) = sequence else {
        tracing::warn!(
            "action_log.id takes its values from no sequence the live feed can find: at a hole it waits for writers of the table instead, and ids taken before the transaction writes the row may be missed"
        );
        return db::query_scalar(db, "SELECT 'action_log'::regclass::oid::bigint", vec![])
            .await?
            .ok_or_else(|| DbErr::Custom("action_log has no oid".into()));
    };
    let cache = db::query_scalar::<i64>(
        db,
        "SELECT seqcache FROM pg_sequence WHERE seqrelid = $1::bigint::oid",
        vec![sequence.into()],
    )
    .await?
    .unwrap_or(1);
    if cache > 1 {
        tracing::warn!(
            cache,
            "the sequence of action_log.id hands out ids in blocks per session (CACHE above 1): a stream may miss rows whose ids come from an older block"
        );
    }
    Ok(sequence)
}

/// A gap long open is logged after this long: every stream of the server waits on it.
const GAP_WARN_AFTER: Duration = Duration::from_secs(10);

/// How long the feed waits at start for writers busy then (see [`start_mark`]).
const START_WAIT: Duration = Duration::from_secs(2);

/// How far below the newest id the feed looks for a hole when a writer outlasts
/// [`START_WAIT`].
const START_WINDOW: i64 = 10_000;

/// Where publishing starts: the newest id once every id up to it is final. On PostgreSQL a
/// lower id may still be in an open transaction when the feed starts: the feed waits for the
/// writers busy then (they are usually done within milliseconds), so that a stream resuming
/// from below finds that row in the database. A writer that keeps its transaction open longer
/// makes publishing start just below the lowest missing id among the newest [`START_WINDOW`]
/// instead, and wait there as at any hole.
async fn start_mark(db: &DatabaseConnection, source: Option<i64>) -> Result<i64, DbErr> {
    let newest = db::max_action_id(db).await?;
    let Some(source) = source else {
        return Ok(newest);
    };
    let mut busy = Gap::open(db, newest, source).await?;
    let deadline = tokio::time::Instant::now() + START_WAIT;
    while !busy.check(db).await? {
        if tokio::time::Instant::now() >= deadline {
            let lowest_missing = db::query_scalar::<Option<i64>>(
                db,
                "SELECT MIN(s.i) FROM generate_series(GREATEST($1 - $2 + 1, 1), $1) AS s(i) \
                 WHERE NOT EXISTS (SELECT 1 FROM action_log WHERE id = s.i)",
                vec![newest.into(), START_WINDOW.into()],
            )
            .await?
            .flatten();
            let start = lowest_missing.map_or(newest, |id| id - 1);
            tracing::warn!(
                newest,
                start,
                "a transaction that may insert into action_log stayed open past the live feed's start: publishing starts below the lowest missing id, so rows up to the newest may reach fresh streams as live events"
            );
            return Ok(start);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(newest)
}

impl Gap {
    /// A gap seen by a read whose highest id was `upto`.
    async fn open(db: &DatabaseConnection, upto: i64, source: i64) -> Result<Self, DbErr> {
        // The transactions holding the locks now.
        let writers: String = db::query_scalar(
            db,
            format!(
                "SELECT COALESCE(string_agg(DISTINCT l.virtualtransaction, ','), '') {WRITER_LOCKS}"
            ),
            vec![source.into()],
        )
        .await?
        .unwrap_or_default();
        Ok(Self {
            settled: writers.is_empty(),
            upto,
            writers,
            source,
            since: std::time::Instant::now(),
            warned: false,
        })
    }

    /// Whether every transaction that held the locks when the hole was seen has ended (a
    /// prepared transaction, whoever it was, counts as one of them).
    async fn check(&mut self, db: &DatabaseConnection) -> Result<bool, DbErr> {
        if !self.settled {
            let waiting = db::query_scalar::<Option<String>>(
                db,
                format!(
                    "SELECT string_agg(DISTINCT COALESCE(l.pid::text, 'prepared'), ', ') {WRITER_LOCKS} \
                     AND (l.virtualtransaction = ANY(string_to_array($2, ',')) OR l.pid IS NULL)"
                ),
                vec![self.source.into(), self.writers.clone().into()],
            )
            .await?
            .flatten();
            match waiting {
                None => self.settled = true,
                Some(pids) if !self.warned && self.since.elapsed() >= GAP_WARN_AFTER => {
                    self.warned = true;
                    tracing::warn!(
                        pids = %pids,
                        after_id = self.upto,
                        "the live feed has waited {} s for transactions that may still insert into action_log; every stream waits with it",
                        self.since.elapsed().as_secs()
                    );
                }
                Some(_) => {}
            }
        }
        Ok(self.settled)
    }
}

/// Events kept for slow subscribers of every guild ([`ActionFeed::subscribe`]); one that falls
/// further behind re-reads the database.
const CHANNEL_CAPACITY: usize = 4_096;
/// The same for the subscribers of one guild. tokio allocates a channel's slots up front
/// (about 32 bytes each): 4 KB per followed guild keeps even one stream per guild under 10 KB
/// in all. A stream of a guild that wrote more than this in one burst catches up from the
/// feed's memory ([`RECENT_CAPACITY`]).
const GUILD_CHANNEL_CAPACITY: usize = 128;

/// Events kept in memory for streams that fell behind their channel: one that missed no more
/// than these catches up from here, and only one further behind re-reads the database. A
/// burst of rows in one guild (a bulk action of the bot, a backlog after a wait at a hole)
/// overflows the channel of every stream of that guild at once; without this, each of them
/// would query the database at the same moment, and encode every row again for itself:
/// measured with 2,000 streams and a burst of 5,000 rows, the last event arrived 53 s after
/// the insert when the streams fell back to the database. More than the default replay bound
/// (`PAWTROPOLIS_SSE_REPLAY_MAX`, 10,000), so that a stream behind by less than that catches up
/// from here unless other guilds wrote meanwhile; at about 500 bytes an event, 8 MB.
pub(crate) const RECENT_CAPACITY: usize = 16_384;
/// The same bound in bytes of frames, for rows far larger than usual (`reason` and `meta_json`
/// are unbounded text): fewer events are kept rather than more memory.
const RECENT_MAX_BYTES: usize = 16 << 20;

/// The latest events published, in id order, and the id below which they begin.
struct Recent {
    events: std::collections::VecDeque<Arc<FeedEvent>>,
    /// Bytes of the frames in `events`.
    bytes: usize,
    /// Every event published with an id above this is in `events`.
    floor: i64,
}

impl Recent {
    fn new(floor: i64) -> Self {
        Self {
            events: std::collections::VecDeque::new(),
            bytes: 0,
            floor,
        }
    }

    fn push(&mut self, event: Arc<FeedEvent>) {
        self.bytes += event.frame.len();
        self.events.push_back(event);
        while self.events.len() > RECENT_CAPACITY || self.bytes > RECENT_MAX_BYTES {
            let Some(oldest) = self.events.pop_front() else {
                break;
            };
            self.bytes -= oldest.frame.len();
            self.floor = oldest.id;
        }
    }

    /// `guild`'s events with `after < id <= upto`, or `None` when some of them are no longer
    /// kept.
    fn range<'a>(
        &'a self,
        guild: &'a str,
        after: i64,
        upto: i64,
    ) -> Option<impl Iterator<Item = &'a Arc<FeedEvent>>> {
        if after < self.floor {
            return None;
        }
        let start = self.events.partition_point(|e| e.id <= after);
        Some(
            self.events
                .range(start..)
                .take_while(move |e| e.id <= upto)
                .filter(move |e| e.guild_id == guild),
        )
    }
}

/// Channel PostgreSQL writers notify after inserting into `action_log` (`NOTIFY
/// pawtropolis_action_log`): the recorder does, and so can any other writer, so that streams
/// see its rows at once rather than at the next poll.
pub const NOTIFY_CHANNEL: &str = "pawtropolis_action_log";

struct Inner {
    /// Every event.
    tx: broadcast::Sender<Arc<FeedEvent>>,
    /// The events of one guild, for each followed guild (a channel whose last subscriber left
    /// goes at the next publishing pass): an event wakes only the streams of its guild, not
    /// every stream of the server.
    guilds: std::sync::Mutex<HashMap<String, broadcast::Sender<Arc<FeedEvent>>>>,
    /// Every row with an id at or below this has been published (or given up as a hole).
    high_water: AtomicI64,
    /// The latest events, for streams that fell behind.
    recent: std::sync::RwLock<Recent>,
    /// The relation whose writers a hole waits for ([`id_source`]); on PostgreSQL only, where
    /// ids can commit out of order.
    id_source: Option<i64>,
    /// Shared with the feed's thread, which holds the feed itself only weakly.
    wake: Arc<Notify>,
    /// Dropped with the last handle, which also ends the feed's thread.
    stop: watch::Sender<bool>,
    /// Hashes of ended credentials: announced on [`ENDED_CHANNEL`] (PostgreSQL) or read from
    /// `credential_ending` (SQLite).
    ended: broadcast::Sender<Arc<str>>,
}

/// Ended credentials kept for a receiver that has not yet taken them (about 100 bytes each):
/// the one receiver forwards each at once, so only a burst could overflow it. Bursts come from
/// a login's purge of the sessions that expired since the last one (on PostgreSQL each deleted
/// row is announced at its commit; on SQLite they come a page of 256 at a time), and what a
/// receiver loses is caught by the streams' heartbeat checks.
const ENDED_CAPACITY: usize = 4_096;

/// Publishes new `action_log` rows in id order on broadcast channels, one for every guild and
/// one per followed guild: woken by a short poll, at once by [`super::ActionRecorder`], and by
/// PostgreSQL `NOTIFY`.
///
/// The publisher runs on a thread of its own (`pawtropolis-feed`, with a one-thread runtime
/// and its own database connection), not on the host's runtime. With 10,000 streams of a
/// guild open, an event wakes 10,000 tasks there; a publisher queued behind them would wait a
/// whole round of them at every step (woken, then its query answered), so each event would
/// reach browsers a round or two late. On its own thread it reads and sends the next event
/// at once.
#[derive(Clone)]
pub struct ActionFeed {
    inner: Arc<Inner>,
}

/// How the feed reaches the caller's database.
#[derive(Clone)]
enum Target {
    /// A SQLite file, or a named shared-cache in-memory database (`sqlite::memory:`): the
    /// feed opens a connection of its own.
    Sqlite(SqliteConnectOptions),
    /// A PostgreSQL database: the feed opens connections of its own.
    Postgres(PgConnectOptions),
    /// A private in-memory SQLite database, which no other connection can reach: the feed
    /// uses the caller's pool (sqlx runs each SQLite connection on a thread of its own, so any
    /// runtime can use it).
    Shared(DatabaseConnection),
}

impl Target {
    async fn of(db: &DatabaseConnection) -> Result<Self, DbErr> {
        match db.get_database_backend() {
            DbBackend::Sqlite => {
                let opts = db
                    .get_sqlite_connection_pool()
                    .connect_options()
                    .as_ref()
                    .clone();
                let file = opts.get_filename().to_string_lossy();
                Ok(if file.is_empty() || file == ":memory:" {
                    Self::Shared(db.clone())
                } else {
                    Self::Sqlite(opts)
                })
            }
            DbBackend::Postgres => {
                // A pool may set the schema after connecting (sea-orm's
                // `set_schema_search_path`, an `after_connect` hook); the options alone would
                // not, so the feed connects with the caller's current path.
                let path: Option<String> =
                    db::query_scalar(db, "SELECT current_setting('search_path')", vec![]).await?;
                let mut opts = db
                    .get_postgres_connection_pool()
                    .connect_options()
                    .as_ref()
                    .clone();
                if let Some(path) = path {
                    opts = opts.options([("search_path", path)]);
                }
                // A query stuck behind a lock (a migration holding `action_log`) is cancelled by
                // the server before the pass times out, rather than left waiting in the lock
                // queue while the feed opens new connections.
                let limit = PASS_TIMEOUT.saturating_sub(Duration::from_secs(5));
                opts = opts.options([("statement_timeout", format!("{}ms", limit.as_millis()))]);
                Ok(Self::Postgres(opts))
            }
            other => Err(DbErr::Custom(format!(
                "the live feed supports SQLite and PostgreSQL, not {other:?}"
            ))),
        }
    }

    /// The feed's connection, opened on the feed's runtime (a PostgreSQL socket belongs to the
    /// runtime that opened it). Two connections on PostgreSQL: `LISTEN` takes one for itself.
    async fn open(self) -> Result<DatabaseConnection, DbErr> {
        let err = |e: sea_orm::sqlx::Error| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e.into()));
        Ok(match self {
            Self::Sqlite(opts) => SqlxSqliteConnector::from_sqlx_sqlite_pool(
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(opts)
                    .await
                    .map_err(err)?,
            ),
            Self::Postgres(opts) => SqlxPostgresConnector::from_sqlx_postgres_pool(
                PgPoolOptions::new()
                    .max_connections(2)
                    .connect_with(opts)
                    .await
                    .map_err(err)?,
            ),
            Self::Shared(db) => db,
        })
    }
}

impl ActionFeed {
    /// Starts publishing rows written from now on.
    pub async fn start(db: DatabaseConnection, poll: Duration) -> Result<Self, DbErr> {
        let id_source = if db.get_database_backend() == DbBackend::Postgres {
            Some(id_source(&db).await?)
        } else {
            None
        };
        let start = start_mark(&db, id_source).await?;
        let (tx, _) = broadcast::channel(CHANNEL_CAPACITY);
        let (stop, _) = watch::channel(false);
        let (ended, _) = broadcast::channel(ENDED_CAPACITY);
        let feed = Self {
            inner: Arc::new(Inner {
                tx,
                guilds: std::sync::Mutex::new(HashMap::new()),
                high_water: AtomicI64::new(start),
                recent: std::sync::RwLock::new(Recent::new(start)),
                id_source,
                wake: Arc::new(Notify::new()),
                stop,
                ended,
            }),
        };
        let target = Target::of(&db).await?;
        let (ready, started) = oneshot::channel();
        let worker = Worker {
            feed: Arc::downgrade(&feed.inner),
            wake: feed.inner.wake.clone(),
            stop: feed.inner.stop.subscribe(),
            ended: feed.inner.ended.clone(),
            poll: poll.max(Duration::from_millis(10)),
            endings: Arc::default(),
        };
        std::thread::Builder::new()
            .name("pawtropolis-feed".into())
            .spawn(move || worker.run_thread(target, start, ready))
            .map_err(|e| DbErr::Custom(format!("cannot start the live feed's thread: {e}")))?;
        started
            .await
            .map_err(|_| DbErr::Custom("the live feed's thread ended at start".into()))??;
        Ok(feed)
    }

    /// A receiver of every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<FeedEvent>> {
        self.inner.tx.subscribe()
    }

    /// A receiver of the events of `guild` published from now on.
    pub fn subscribe_guild(&self, guild: &str) -> broadcast::Receiver<Arc<FeedEvent>> {
        let mut guilds = self.guilds();
        if let Some(tx) = guilds.get(guild) {
            return tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(GUILD_CHANNEL_CAPACITY);
        // A stopped feed sends nothing more and no longer forgets unfollowed guilds: its
        // channel would only pile up.
        if !*self.inner.stop.borrow() {
            guilds.insert(guild.to_owned(), tx);
        }
        rx
    }

    fn guilds(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, broadcast::Sender<Arc<FeedEvent>>>> {
        self.inner
            .guilds
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends `event` to every subscriber and to those of its guild.
    fn send(&self, event: Arc<FeedEvent>) {
        // Waking the streams takes a while: not under the lock that new streams take.
        let guild = self.guilds().get(&event.guild_id).cloned();
        if let Some(tx) = guild {
            let _ = tx.send(event.clone());
        }
        let _ = self.inner.tx.send(event);
    }

    /// Forgets the channels of guilds nobody follows any more (a subscriber takes the lock
    /// to subscribe, so none can be joining one as it goes).
    fn drop_unfollowed_guilds(&self) {
        self.guilds().retain(|_, tx| tx.receiver_count() > 0);
    }

    /// The highest id such that every row up to it has been published.
    pub fn high_water(&self) -> i64 {
        self.inner.high_water.load(Ordering::SeqCst)
    }

    /// How many events of `guild` with `after < id <= upto` (`upto` at most
    /// [`Self::high_water`]) the feed still keeps in memory, or `None` when some of them are
    /// no longer kept there.
    pub(crate) fn recent_count(&self, guild: &str, after: i64, upto: i64) -> Option<usize> {
        self.recent().range(guild, after, upto).map(Iterator::count)
    }

    /// The first `limit` of those events, as ids and frames, or `None` when some of them are
    /// no longer kept in memory and the caller must read the database.
    pub(crate) fn recent_frames(
        &self,
        guild: &str,
        after: i64,
        upto: i64,
        limit: usize,
    ) -> Option<Vec<(i64, Bytes)>> {
        self.recent().range(guild, after, upto).map(|events| {
            events
                .take(limit)
                .map(|e| (e.id, e.frame.clone()))
                .collect()
        })
    }

    fn recent(&self) -> std::sync::RwLockReadGuard<'_, Recent> {
        self.inner
            .recent
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Hashes of the credentials that end from now on: a logout or a revocation anywhere on
    /// the same database, announced with `NOTIFY` on PostgreSQL (see [`crate::auth::ended`]),
    /// read from `credential_ending` every second on a SQLite file. The mounted API follows
    /// it to end those credentials' streams. On SQLite the credentials that end through this
    /// process come again a second later.
    pub fn ended_credentials(&self) -> broadcast::Receiver<Arc<str>> {
        self.inner.ended.subscribe()
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

    async fn publish_new(
        &self,
        db: &DatabaseConnection,
        gap: &mut Option<Gap>,
    ) -> Result<(), DbErr> {
        'read: loop {
            // Checked before reading the rows: a transaction that ends before this check has
            // its row in the read below.
            let settled = match gap.as_mut() {
                Some(g) => g.check(db).await?,
                None => false,
            };
            let hw = self.high_water();
            let rows = db::query_all(
                db,
                format!("SELECT {ITEM_COLUMNS} FROM action_log WHERE id > $1 ORDER BY id LIMIT $2"),
                vec![hw.into(), BATCH.into()],
            )
            .await?;
            let fetched = rows.len() as i64;
            let mut expected = hw + 1;
            for row in &rows {
                let id: i64 = row.try_get("", "id")?;
                // A hole on PostgreSQL: a lower id may still be in an open transaction. Wait
                // until every writer busy when the hole was seen has ended. On SQLite ids
                // commit in order; a hole there is a deleted row.
                if let Some(source) = self.inner.id_source.filter(|_| id != expected) {
                    match gap.as_ref() {
                        Some(g) if id <= g.upto && settled => {}
                        Some(g) if id <= g.upto || !settled => return Ok(()),
                        _ => {
                            let last = rows
                                .last()
                                .map_or(id, |r| r.try_get("", "id").unwrap_or(id));
                            let opened = Gap::open(db, last, source).await?;
                            let settled = opened.settled;
                            *gap = Some(opened);
                            // No writer was busy: the hole is a rolled-back id. Read again
                            // (a writer may have ended since the read) and go on.
                            if settled {
                                continue 'read;
                            }
                            return Ok(());
                        }
                    }
                }
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
                // Kept before the mark moves: a stream that fell behind and reads the mark
                // finds every event up to it here (or learns that it must read the database).
                self.inner
                    .recent
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(event.clone());
                // The mark moves before the send: a subscriber that reads it after subscribing
                // either finds the row in the database or receives it.
                self.inner.high_water.store(item.id, Ordering::SeqCst);
                self.send(event);
            }
            // Past every hole the wait covered.
            if gap
                .as_ref()
                .is_some_and(|g| g.settled && self.high_water() >= g.upto)
            {
                *gap = None;
            }
            if fetched < BATCH {
                return Ok(());
            }
        }
    }
}

/// What the feed's thread holds: the feed only weakly, so that it ends with the last handle
/// even when the host never calls [`ActionFeed::stop`].
struct Worker {
    feed: Weak<Inner>,
    wake: Arc<Notify>,
    stop: watch::Receiver<bool>,
    ended: broadcast::Sender<Arc<str>>,
    poll: Duration,
    /// How far the ended credentials of a SQLite file have been read, across readers.
    endings: Arc<super::sqlite_endings::Position>,
}

impl Worker {
    /// Opens the feed's connection and checks that it sees the caller's database (an
    /// `action_log` with rows up to `start` at least), then publishes until the feed stops.
    fn run_thread(self, target: Target, start: i64, ready: oneshot::Sender<Result<(), DbErr>>) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready.send(Err(DbErr::Custom(format!(
                    "cannot start the live feed's runtime: {e}"
                ))));
                return;
            }
        };
        rt.block_on(async move {
            let db = match target.clone().open().await {
                Ok(db) => db,
                Err(e) => {
                    let _ = ready.send(Err(e));
                    return;
                }
            };
            match db::max_action_id(&db).await {
                Ok(seen) if seen >= start => {}
                Ok(seen) => {
                    let _ = ready.send(Err(DbErr::Custom(format!(
                        "the live feed's own connection reaches another database: its action_log ends at id {seen}, the caller's at {start}"
                    ))));
                    return;
                }
                Err(e) => {
                    let _ = ready.send(Err(DbErr::Custom(format!(
                        "the live feed's own connection cannot read action_log: {e}"
                    ))));
                    return;
                }
            }
            let listener = match db.get_database_backend() {
                DbBackend::Postgres => {
                    // The feed starts once it listens (or could not): an ending announced
                    // right after start must not be missed while the listener connects.
                    let (listening, started) = oneshot::channel();
                    let handle = self.hear_others(&db, &target, Some(listening));
                    let _ = tokio::time::timeout(LISTEN_START, started).await;
                    handle
                }
                _ => {
                    super::wal_watch::start(&db, self.wake.clone(), self.stop.clone()).await;
                    if matches!(target, Target::Sqlite(_)) {
                        super::sqlite_endings::start(&db, &self.endings).await;
                    }
                    self.hear_others(&db, &target, None)
                }
            };
            if ready.send(Ok(())).is_ok() {
                self.run(db, target, listener).await;
            }
        });
    }

    /// The task that hears of other processes over `db` until the feed stops or the task is
    /// aborted: on PostgreSQL it `LISTEN`s (`listening` is told once the first `LISTEN` is in
    /// place, or dropped if it failed); on a SQLite file it reads the credentials that ended
    /// (see [`super::sqlite_endings`]); a private in-memory database has no other process.
    fn hear_others(
        &self,
        db: &DatabaseConnection,
        target: &Target,
        listening: Option<oneshot::Sender<()>>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        match target {
            Target::Postgres(_) => Some(tokio::spawn(listen(
                db.get_postgres_connection_pool().clone(),
                self.wake.clone(),
                self.ended.clone(),
                self.stop.clone(),
                listening,
            ))),
            Target::Sqlite(_) => Some(tokio::spawn(super::sqlite_endings::follow(
                db.clone(),
                self.ended.clone(),
                self.stop.clone(),
                self.endings.clone(),
            ))),
            Target::Shared(_) => None,
        }
    }

    async fn run(
        mut self,
        mut db: DatabaseConnection,
        target: Target,
        mut listener: Option<tokio::task::JoinHandle<()>>,
    ) {
        let mut gap: Option<Gap> = None;
        loop {
            tokio::select! {
                () = tokio::time::sleep(self.poll) => {}
                () = self.wake.notified() => {}
                changed = self.stop.changed() => if changed.is_err() {
                    return;
                },
            }
            if *self.stop.borrow() {
                return;
            }
            let Some(inner) = self.feed.upgrade() else {
                return;
            };
            let feed = ActionFeed { inner };
            match guarded(feed.publish_new(&db, &mut gap), PASS_TIMEOUT).await {
                PassEnd::Done => {}
                PassEnd::Failed(e) => {
                    tracing::warn!(error = %e, "live feed could not read action_log");
                }
                PassEnd::Panicked => {
                    // What was published stays published (the mark moves row by row); the
                    // holes are looked at afresh.
                    gap = None;
                    tracing::error!(
                        "a publishing pass of the live feed panicked; the feed goes on"
                    );
                }
                PassEnd::TimedOut => {
                    tracing::error!(
                        "a publishing pass of the live feed did not end within {} s (a database that stopped answering?); opening new connections",
                        PASS_TIMEOUT.as_secs()
                    );
                    match tokio::time::timeout(PASS_TIMEOUT, target.clone().open()).await {
                        Ok(Ok(fresh)) => {
                            db = fresh;
                            // The listener's connection went wherever the feed's did.
                            if let Some(old) = listener.take() {
                                old.abort();
                            }
                            listener = self.hear_others(&db, &target, None);
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, "the live feed could not reconnect; it tries again at the next pass")
                        }
                        Err(_) => tracing::warn!(
                            "the live feed could not reconnect in time; it tries again at the next pass"
                        ),
                    }
                }
            }
            feed.drop_unfollowed_guilds();
        }
    }
}

/// Longest the feed's start waits for its `LISTEN` to be in place.
const LISTEN_START: Duration = Duration::from_secs(5);

/// Longest a publishing pass may take. Nothing else publishes while one runs, so a query
/// stuck on a database that stopped answering (a failover, a host gone without closing its
/// sockets) would stop every stream's events for as long as TCP takes to notice: a quarter of
/// an hour. A pass cut short keeps what it published; the next one goes on from there.
const PASS_TIMEOUT: Duration = Duration::from_secs(30);

/// How a publishing pass ended.
#[derive(Debug)]
enum PassEnd {
    Done,
    Failed(DbErr),
    Panicked,
    TimedOut,
}

/// Runs one pass within `limit`, catching a panic: the feed's thread must outlive any one
/// pass, or every stream of the server would go on with heartbeats and no events.
async fn guarded(
    pass: impl std::future::Future<Output = Result<(), DbErr>>,
    limit: Duration,
) -> PassEnd {
    use futures_util::FutureExt as _;
    match tokio::time::timeout(limit, std::panic::AssertUnwindSafe(pass).catch_unwind()).await {
        Ok(Ok(Ok(()))) => PassEnd::Done,
        Ok(Ok(Err(e))) => PassEnd::Failed(e),
        Ok(Err(_)) => PassEnd::Panicked,
        Err(_) => PassEnd::TimedOut,
    }
}

/// Wakes the feed on PostgreSQL `NOTIFY` from other writers (the poll stays the safety net
/// when the listener is down), and passes on ended credentials.
async fn listen(
    pool: sea_orm::sqlx::PgPool,
    wake: Arc<Notify>,
    ended: broadcast::Sender<Arc<str>>,
    mut stop: watch::Receiver<bool>,
    mut listening: Option<oneshot::Sender<()>>,
) {
    loop {
        match sea_orm::sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(mut listener) => {
                if let Err(e) = listener.listen_all([NOTIFY_CHANNEL, ENDED_CHANNEL]).await {
                    tracing::warn!(error = %e, "LISTEN failed; relying on the poll (and on heartbeats for ended credentials)");
                } else {
                    if let Some(listening) = listening.take() {
                        let _ = listening.send(());
                    }
                    loop {
                        tokio::select! {
                            msg = listener.recv() => match msg {
                                Ok(n) if n.channel() == ENDED_CHANNEL => {
                                    // A hash, as stored; anything longer is not one.
                                    if n.payload().len() <= 128 {
                                        let _ = ended.send(Arc::from(n.payload()));
                                    }
                                }
                                Ok(_) => wake.notify_one(),
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
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN; relying on the poll (and on heartbeats for ended credentials)")
            }
        }
        // The feed does not wait for a retry to start.
        listening = None;
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Threads of this process named for the feed (Linux shows 15 bytes of a name). The tests
    /// that start feeds hold [`crate::feed::FEED_TESTS`], so the count is this test's own.
    #[cfg(target_os = "linux")]
    fn feed_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .map(|tasks| {
                tasks
                    .flatten()
                    .filter(|t| {
                        std::fs::read_to_string(t.path().join("comm"))
                            .is_ok_and(|name| name.starts_with("pawtropolis-fe"))
                    })
                    .count()
            })
            .unwrap_or(0)
    }

    type Rx = broadcast::Receiver<Arc<FeedEvent>>;

    /// Inserts a row of `guild` as another writer would (without telling the feed).
    async fn insert(db: &DatabaseConnection, guild: &str) {
        db::execute(
            db,
            "INSERT INTO action_log (guild_id, actor_id, action, created_at_s) VALUES ($1, '2', 'claim', 0)",
            vec![guild.into()],
        )
        .await
        .unwrap();
    }

    async fn migrated(db: DatabaseConnection) -> DatabaseConnection {
        migration::cli::run(&db, &migration::cli::MigrateCommand::Up { steps: None })
            .await
            .unwrap();
        db
    }

    /// The next event on `rx` within 5 s: its id and guild.
    async fn next(rx: &mut Rx) -> (i64, String) {
        let event = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        (event.id, event.guild_id.clone())
    }

    fn empty(rx: &mut Rx) -> bool {
        matches!(rx.try_recv(), Err(broadcast::error::TryRecvError::Empty))
    }

    /// Waits up to 5 s for `done`.
    async fn eventually(done: impl Fn() -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !done() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        done()
    }

    fn pass_that_panics() -> Result<(), DbErr> {
        panic!("a pass that panics")
    }

    #[tokio::test(start_paused = true)]
    async fn a_pass_that_hangs_or_panics_does_not_end_the_feed() {
        let limit = Duration::from_secs(30);
        assert!(matches!(
            guarded(async { Ok(()) }, limit).await,
            PassEnd::Done
        ));
        let failed = guarded(async { Err(DbErr::Custom("x".into())) }, limit).await;
        assert!(matches!(failed, PassEnd::Failed(_)));
        let hung = guarded(std::future::pending(), limit).await;
        assert!(matches!(hung, PassEnd::TimedOut));
        let panicked = guarded(async { pass_that_panics() }, limit).await;
        assert!(matches!(panicked, PassEnd::Panicked));
    }

    fn event(id: i64, guild: &str) -> Arc<FeedEvent> {
        Arc::new(FeedEvent {
            id,
            guild_id: guild.into(),
            frame: Bytes::from(format!("id: {id}\n\n")),
        })
    }

    /// What the feed keeps for streams that fell behind: a guild's events in a range, and
    /// `None` once the oldest of them is gone.
    #[test]
    fn recent_events_by_guild_and_range_until_they_are_gone() {
        let mut recent = Recent::new(10);
        // Ids 11..=20, with a hole at 15; even ids in guild 2.
        for id in (11..=20).filter(|id| *id != 15) {
            recent.push(event(id, if id % 2 == 0 { "2" } else { "1" }));
        }
        let ids = |r: &Recent, guild: &str, after: i64, upto: i64| {
            r.range(guild, after, upto)
                .map(|events| events.map(|e| e.id).collect::<Vec<_>>())
        };
        assert_eq!(ids(&recent, "1", 10, 20), Some(vec![11, 13, 17, 19]));
        assert_eq!(ids(&recent, "2", 12, 18), Some(vec![14, 16, 18]));
        assert_eq!(ids(&recent, "1", 19, 20), Some(vec![]));
        assert_eq!(ids(&recent, "1", 9, 20), None, "below the start");
        // Full: the oldest goes, and a range that needs it is refused.
        for id in 21..(21 + RECENT_CAPACITY as i64) {
            recent.push(event(id, "1"));
        }
        assert_eq!(recent.events.len(), RECENT_CAPACITY);
        let oldest_kept = recent.events[0].id;
        assert_eq!(ids(&recent, "2", oldest_kept - 2, oldest_kept), None);
        assert_eq!(
            ids(&recent, "1", oldest_kept - 1, oldest_kept + 1),
            Some(vec![oldest_kept, oldest_kept + 1])
        );
        // Large rows: the byte bound keeps fewer of them.
        let mut large = Recent::new(0);
        let frame = Bytes::from(vec![b'x'; 1 << 20]);
        for id in 1..=20 {
            large.push(Arc::new(FeedEvent {
                id,
                guild_id: "1".into(),
                frame: frame.clone(),
            }));
        }
        assert_eq!(large.events.len(), RECENT_MAX_BYTES >> 20);
        assert_eq!(large.bytes, RECENT_MAX_BYTES);
        assert_eq!(ids(&large, "1", 3, 20), None);
        assert_eq!(ids(&large, "1", 19, 20), Some(vec![20]));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_feed_thread_publishes_and_ends_with_the_last_handle() {
        let _alone = crate::feed::FEED_TESTS.lock().await;
        // In memory: the feed's own connection must reach the same (shared-cache) database.
        let db = migrated(db::connect("sqlite::memory:", 2).await.unwrap()).await;
        // A poll of a minute: only the wake can publish within the test.
        let feed = ActionFeed::start(db.clone(), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(feed_threads(), 1);
        let mut rx = feed.subscribe();
        insert(&db, "1").await;
        feed.wake();
        assert_eq!(next(&mut rx).await, (1, "1".into()));

        // A guild's subscribers get its events only; the channel of a guild nobody follows
        // any more is forgotten.
        let mut one = feed.subscribe_guild("1");
        let mut nine = feed.subscribe_guild("9");
        insert(&db, "9").await;
        insert(&db, "1").await;
        feed.wake();
        assert_eq!(next(&mut nine).await, (2, "9".into()));
        assert_eq!(next(&mut one).await, (3, "1".into()));
        assert!(empty(&mut one) && empty(&mut nine));
        // The channel of every guild has both.
        assert_eq!((next(&mut rx).await.0, next(&mut rx).await.0), (2, 3));
        drop(nine);
        feed.wake();
        assert!(eventually(|| !feed.guilds().contains_key("9")).await);
        assert!(feed.guilds().contains_key("1"));
        // Following the guild again opens a new channel, which works as the first did.
        let mut nine = feed.subscribe_guild("9");
        insert(&db, "9").await;
        feed.wake();
        assert_eq!(next(&mut nine).await, (4, "9".into()));
        assert!(empty(&mut one));
        assert_eq!(next(&mut rx).await.0, 4);
        drop((one, nine));

        // The host never calls stop(): dropping the last handle ends the feed and its thread.
        drop(feed);
        let closed = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap();
        assert!(matches!(closed, Err(broadcast::error::RecvError::Closed)));
        assert!(eventually(|| feed_threads() == 0).await);

        // A private in-memory database (one connection): no new connection reaches it, so the
        // feed shares the caller's pool.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(SqliteConnectOptions::new())
            .await
            .unwrap();
        let private = migrated(SqlxSqliteConnector::from_sqlx_sqlite_pool(pool)).await;
        let feed = ActionFeed::start(private.clone(), Duration::from_secs(60))
            .await
            .unwrap();
        let mut rx = feed.subscribe();
        insert(&private, "7").await;
        feed.wake();
        assert_eq!(next(&mut rx).await, (1, "7".into()));
    }
}
