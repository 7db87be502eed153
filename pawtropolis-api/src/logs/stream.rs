//! `GET /api/logs/stream`: the live action log over Server-Sent Events.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use bytes::Bytes;
use futures_util::{StreamExt as _, stream::BoxStream};
use poem::{Body, IntoResponse, Request, Response, web::Data};
use poem_openapi::{
    ApiResponse,
    param::{Header, Query},
    payload::{Json, Payload},
    registry::{MetaSchema, MetaSchemaRef},
};
use sea_orm::DatabaseConnection;
use tokio::sync::broadcast::error::RecvError;

use crate::{
    ApiTags,
    auth::{Auth, Credential, SESSION_COOKIE},
    db,
    error::{ApiError, ErrorBody, ErrorDetail},
    feed::publisher::frame_of,
    logs::{ITEM_COLUMNS, LogItem},
    snowflake::Snowflake,
    state::SharedState,
};

/// Seconds a refused client should wait before reconnecting.
const RETRY_AFTER_SECS: u64 = 5;

/// Open streams, in all and per principal, so that no one can hold unbounded resources.
pub struct StreamLimits {
    max_total: usize,
    max_per_principal: usize,
    open: AtomicUsize,
    per_principal: Mutex<HashMap<String, usize>>,
}

/// Why a stream was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum LimitError {
    /// The server holds its maximum of streams.
    ServerFull,
    /// This principal holds its maximum of streams.
    PrincipalFull,
}

/// One open stream; dropping it (the client went away) frees its place at once.
pub struct StreamPermit {
    limits: Arc<StreamLimits>,
    principal: String,
}

impl StreamLimits {
    /// Limits of `max_total` streams, `max_per_principal` of them for one principal.
    pub fn new(max_total: usize, max_per_principal: usize) -> Self {
        Self {
            max_total,
            max_per_principal,
            open: AtomicUsize::new(0),
            per_principal: Mutex::new(HashMap::new()),
        }
    }

    /// Streams open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Takes a place for `principal`.
    pub fn acquire(self: &Arc<Self>, principal: &str) -> Result<StreamPermit, LimitError> {
        let mut per = self.per_principal.lock().unwrap_or_else(|p| p.into_inner());
        if self.open.load(Ordering::SeqCst) >= self.max_total {
            return Err(LimitError::ServerFull);
        }
        let mine = per.entry(principal.to_owned()).or_insert(0);
        if *mine >= self.max_per_principal {
            return Err(LimitError::PrincipalFull);
        }
        *mine += 1;
        self.open.fetch_add(1, Ordering::SeqCst);
        Ok(StreamPermit {
            limits: self.clone(),
            principal: principal.to_owned(),
        })
    }
}

impl StreamPermit {
    /// Whose stream this is (a token's or user's subject).
    pub fn principal(&self) -> &str {
        &self.principal
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut per = self
            .limits
            .per_principal
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per.get_mut(&self.principal) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per.remove(&self.principal);
            }
        }
        self.limits.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A `text/event-stream` body.
pub struct EventStream(BoxStream<'static, Result<Bytes, std::io::Error>>);

impl Payload for EventStream {
    const CONTENT_TYPE: &'static str = "text/event-stream";

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema::new("string")))
    }
}

impl IntoResponse for EventStream {
    fn into_response(self) -> Response {
        Response::builder()
            .content_type("text/event-stream")
            .body(Body::from_bytes_stream(self.0))
    }
}

#[derive(ApiResponse)]
enum StreamResponse {
    /// The event stream.
    #[oai(status = 200)]
    Ok(
        EventStream,
        /// `no-cache`.
        #[oai(header = "Cache-Control")]
        String,
        /// `no`: proxies must not buffer the stream.
        #[oai(header = "X-Accel-Buffering")]
        String,
    ),
    /// This API token or Discord user already holds its maximum of open streams.
    #[oai(status = 429)]
    TooManyRequests(
        Json<ErrorBody>,
        /// Seconds to wait before reconnecting.
        #[oai(header = "Retry-After")]
        u64,
    ),
}

/// The live stream.
pub(crate) struct StreamApi;

enum Step {
    Event(Result<Arc<crate::feed::FeedEvent>, RecvError>),
    Heartbeat,
    Stop,
}

/// Rows a replay reads at a time: a stream holds one page, not everything it missed.
const REPLAY_PAGE: i64 = 256;

/// The frames of the rows of `guild` with `after < id <= upto`, in id order, a page at a
/// time; or a [`resync`] alone when there are more than `max`. A row that cannot be read is
/// left out (and logged), as the live feed leaves it out: failing on it would fail every
/// reconnect after it for good.
fn replay(
    db: DatabaseConnection,
    guild: String,
    after: i64,
    upto: i64,
    max: u32,
) -> impl futures_util::Stream<Item = Result<Bytes, ApiError>> {
    async_stream::try_stream! {
        let max = i64::from(max);
        let mut from = after;
        let mut first = true;
        while from < upto {
            let rows = db::query_all(
                &db,
                format!("SELECT {ITEM_COLUMNS} FROM action_log WHERE guild_id = $1 AND id > $2 AND id <= $3 ORDER BY id LIMIT $4"),
                vec![guild.clone().into(), from.into(), upto.into(), REPLAY_PAGE.into()],
            )
            .await?;
            let fetched = rows.len() as i64;
            // The first page tells whether there are too many, unless it is full and the limit
            // lies beyond it: then one probe at the limit does (a reconnect that missed a few
            // rows costs one query).
            if first {
                first = false;
                let too_many = fetched > max
                    || (fetched == REPLAY_PAGE
                        && db::query_scalar::<i64>(
                            &db,
                            "SELECT id FROM action_log WHERE guild_id = $1 AND id > $2 AND id <= $3 ORDER BY id LIMIT 1 OFFSET $4",
                            vec![guild.clone().into(), after.into(), upto.into(), max.into()],
                        )
                        .await?
                        .is_some());
                if too_many {
                    yield resync(TOO_MANY_MISSED, upto);
                    return;
                }
            }
            for row in &rows {
                from = row.try_get("", "id")?;
                match LogItem::from_row(row) {
                    Ok(item) => yield frame_of(&item),
                    Err(e) => tracing::warn!(error = %e, id = from, guild_id = %guild, "replay skips an action_log row it cannot read"),
                }
            }
            if fetched < REPLAY_PAGE {
                break;
            }
        }
    }
}

/// Frames a catch-up takes from the feed's memory at a time.
const CATCH_UP_PAGE: usize = 64;

/// What a stream missed, whether it resumes after a reconnect or fell behind its channel: the
/// rows of `guild` with `after < id <= upto`, as [`replay`] sends them. From the feed's memory
/// while it keeps them (a burst in one guild makes every stream of it fall behind at once, and
/// a network blip makes every dashboard reconnect at once; they should not all query the
/// database at that moment), else from the database. A page at a time, so that a stalled
/// stream holds a page and not the whole burst.
fn catch_up(
    feed: crate::feed::ActionFeed,
    db: DatabaseConnection,
    guild: String,
    after: i64,
    upto: i64,
    max: u32,
) -> impl futures_util::Stream<Item = Result<Bytes, ApiError>> {
    async_stream::try_stream! {
        let mut from = after;
        match feed.recent_count(&guild, after, upto) {
            Some(n) if n > max as usize => {
                yield resync(TOO_MANY_MISSED, upto);
                return;
            }
            Some(_) => {
                while let Some(page) = feed.recent_frames(&guild, from, upto, CATCH_UP_PAGE) {
                    let last_page = page.len() < CATCH_UP_PAGE;
                    for (id, frame) in page {
                        from = id;
                        yield frame;
                    }
                    if last_page {
                        return;
                    }
                }
                // The feed's memory moved past this stream while it sent: the rest comes from
                // the database.
            }
            None => {}
        }
        for await frame in replay(db, guild, from, upto, max) {
            yield frame?;
        }
    }
}

/// Why a client is asked to reload: it missed more than a replay sends.
const TOO_MANY_MISSED: &str = "too many events were missed; reload the log";

/// Why a client is asked to reload: the id it resumed after is newer than any row (the
/// database was restored or replaced), so nothing would ever follow it.
const UNKNOWN_ID: &str = "the last event id is not in this log; reload the log";

/// `event: resync`: asks the client to reload the log. Its `id:` is where the live events go
/// on from, so that a client whose connection drops before the next event resumes from there
/// rather than from the old id, which would only bring another resync.
fn resync(reason: &str, id: i64) -> Bytes {
    Bytes::from(format!(
        "id: {id}\nevent: resync\ndata: {{\"reason\":\"{reason}\"}}\n\n"
    ))
}

/// The credential of the request, kept to re-check it while the stream is open.
enum Held {
    Bearer(String),
    Cookie(String),
}

/// The credential that authenticated the request (the `Auth` variant says which), kept to
/// re-check it while the stream is open.
fn held_credential(req: &Request, auth: &Auth) -> Option<Held> {
    match auth {
        Auth::Bearer(_) => req
            .header("authorization")
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| Held::Bearer(token.trim().to_owned())),
        Auth::Cookie(_) => crate::auth::request_cookie(req, SESSION_COOKIE).map(Held::Cookie),
    }
}

#[poem_openapi::OpenApi(tag = "ApiTags::Logs")]
impl StreamApi {
    /// Follow the action log live
    ///
    /// Server-Sent Events of one guild: `id: <action_log.id>`, `event: action`, and `data:` one
    /// JSON line with the fields of a `/api/logs` item plus `timestamp` (RFC 3339). A comment
    /// opens the stream at once, with a `retry:` hint and an `id:` without data (the id the
    /// stream resumed after, or the latest row's when it starts fresh), so that a client that
    /// drops before its first event resumes from there; `: heartbeat` comes every
    /// `PAWTROPOLIS_SSE_HEARTBEAT_SECS` (20 s). To resume after a disconnect, send the last id
    /// received as the `Last-Event-ID` header (EventSource does this itself) or the
    /// `last_event_id` parameter: every later row is replayed in id order, then the stream goes
    /// on live, with no gap and no duplicate. Resume only from an id a stream sent: on PostgreSQL
    /// ids can commit out of order, so the newest row of a `/api/logs` page may have a row below
    /// it still committing; to show a page and follow on, open the stream, load the page once
    /// its opening `id:` has come, and merge by id. When more than `PAWTROPOLIS_SSE_REPLAY_MAX` rows
    /// were missed, or the id is newer than every row (the database was restored), an
    /// `event: resync` asks the client to reload the log instead, and the stream goes on live
    /// from the latest row (the resync's `id:`). At most
    /// `PAWTROPOLIS_SSE_MAX_STREAMS_PER_PRINCIPAL` (20) open streams per API token or Discord
    /// user (429) and `PAWTROPOLIS_SSE_MAX_STREAMS` (10,000) per server (503), both with
    /// `Retry-After`.
    #[oai(path = "/logs/stream", method = "get", operation_id = "streamLogs")]
    async fn stream(
        &self,
        auth: Auth,
        state: Data<&SharedState>,
        req: &Request,
        /// Guild to follow (a snowflake).
        guild_id: Query<Snowflake>,
        /// Resume after this event id (for clients that cannot set `Last-Event-ID`; the header
        /// wins when both are given).
        #[oai(validator(minimum(value = "0")))]
        last_event_id: Query<Option<i64>>,
        /// Resume after this event id (sent by EventSource when it reconnects).
        #[oai(name = "Last-Event-ID")]
        last_event_id_header: Header<Option<String>>,
    ) -> Result<StreamResponse, ApiError> {
        let guild_id = guild_id.0;
        let principal = auth.principal();
        principal.authorize(&guild_id)?;
        let resume = match last_event_id_header
            .0
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            Some(h) => Some(h.parse::<i64>().ok().filter(|id| *id >= 0).ok_or_else(|| {
                ApiError::invalid("Last-Event-ID must be an event id (an integer, 0 or more)")
            })?),
            None => last_event_id.0,
        };
        let permit = match state.streams.acquire(&principal.subject) {
            Ok(p) => p,
            Err(LimitError::PrincipalFull) => {
                let body = ErrorBody {
                    error: ErrorDetail {
                        code: "rate_limited".into(),
                        message: "this token or user holds its maximum of open streams".into(),
                    },
                };
                return Ok(StreamResponse::TooManyRequests(
                    Json(body),
                    RETRY_AFTER_SECS,
                ));
            }
            Err(LimitError::ServerFull) => {
                return Err(ApiError::Unavailable {
                    retry_after_secs: RETRY_AFTER_SECS,
                    message: "the server holds its maximum of open streams".into(),
                });
            }
        };
        let state = state.0.clone();
        let held = held_credential(req, &auth);
        // A logout or revocation ends the credential's streams at once (see `auth::ended`;
        // by another process on SQLite, within a second). Watched from here, not
        // from the body: an ending while the stream replays must not slip past it.
        let ended = match &held {
            Some(Held::Cookie(c) | Held::Bearer(c)) => Some(state.ended.watch(c)),
            None => None,
        };
        let guild = guild_id.into_string();
        let body = async_stream::stream! {
            // Lives as long as the stream: a disconnect drops it and frees the place. It also
            // names the stream's principal in the log lines below, which run after the
            // request's span has closed.
            let permit = permit;
            let feed = state.feed.clone();
            // Subscribe first, then read the mark: every row is either at or below the mark
            // (in the database) or on the channel.
            let mut rx = feed.subscribe_guild(&guild);
            let mut stopped = feed.stopped();
            let mark = feed.high_water();
            let settings = &state.settings;
            // An id newer than every row (a database restored or replaced since) would hide
            // every event until ids caught up: reload instead, and go on from the mark. An id
            // past this server's mark but in the database is fine (another instance published
            // further).
            let unknown_id = match resume.filter(|after| *after > mark) {
                None => false,
                Some(after) => match db::max_action_id(&state.db).await {
                    Ok(newest) => after > newest,
                    Err(e) => {
                        tracing::warn!(error = %e, guild_id = %guild, principal = permit.principal(), last_event_id = after, "stream could not check its Last-Event-ID; closing so the client retries");
                        return;
                    }
                },
            };
            let resume = resume.filter(|_| !unknown_id);
            // The `id:` sets the browser's last event id before any event comes (a block
            // without data dispatches nothing, but its id is kept): a stream that drops before
            // its first event resumes from here instead of reconnecting as a new stream and
            // missing what was written in between.
            yield Ok::<Bytes, std::io::Error>(Bytes::from(format!(
                ": stream open\nretry: {}\nid: {}\n\n",
                settings.sse_retry_ms,
                resume.unwrap_or(mark)
            )));
            if unknown_id {
                yield Ok(resync(UNKNOWN_ID, mark));
            }
            // Every event with an id up to this has been sent or was not this guild's.
            let mut covered = mark;
            // What the stream missed and must send before it goes on: `(after, upto)`, on
            // resuming, and again whenever it falls behind its channel.
            let mut behind = resume.map(|after| (after, mark));
            // One future for the whole stream, not one per event: its waiters stay registered
            // instead of being added and removed under the channel's lock at every event. It
            // also ends a stream opened after the feed stopped.
            let stop = async move {
                match ended {
                    // Turns `true` on a stop too.
                    Some(mut ended) => {
                        let _ = ended.wait_for(|ended| *ended).await;
                    }
                    // No credential held (not with the built-in extractor): the stop only.
                    None => {
                        let _ = stopped.wait_for(|stopped| *stopped).await;
                    }
                }
            };
            tokio::pin!(stop);
            let period = settings.sse_heartbeat;
            let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            // After a client stalls, one heartbeat (and one session check), not one per period
            // missed.
            heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                if let Some((after, upto)) = behind.take() {
                    // From the feed's memory or the database, a page at a time, rather than
                    // buffered. Boxed: an idle stream should not carry the size of a database
                    // query future.
                    let mut missed = Box::pin(catch_up(feed.clone(), state.db.clone(), guild.clone(), after, upto, settings.sse_replay_max));
                    while let Some(frame) = missed.next().await {
                        match frame {
                            Ok(frame) => yield Ok(frame),
                            Err(e) => {
                                tracing::warn!(error = %e, guild_id = %guild, principal = permit.principal(), after, upto, "stream catch-up failed; closing so the client retries");
                                return;
                            }
                        }
                    }
                    // A resume id past this server's mark was published by another instance.
                    covered = covered.max(after).max(upto);
                }
                // `yield` stays outside `select!`: the macro's branches are not the stream's body.
                // Biased, the stop and the session check first: a client that stopped reading
                // for a while finds the heartbeat overdue when it reads again, and a session found
                // revoked at that check ends the stream before any more events go out.
                let step = tokio::select! {
                    biased;
                    () = &mut stop => Step::Stop,
                    _ = heartbeat.tick() => Step::Heartbeat,
                    event = rx.recv() => Step::Event(event),
                };
                match step {
                    Step::Event(Ok(ev)) => {
                        if ev.id > covered {
                            covered = ev.id;
                            if ev.guild_id == guild {
                                yield Ok(ev.frame.clone());
                            }
                        }
                    }
                    // Fell behind the channel: catch up at the top of the loop.
                    Step::Event(Err(RecvError::Lagged(_))) => {
                        behind = Some((covered, feed.high_water()));
                    }
                    Step::Event(Err(RecvError::Closed)) | Step::Stop => return,
                    Step::Heartbeat => {
                        // A revoked token or expired session ends its streams.
                        let still_valid = match &held {
                            Some(Held::Bearer(t)) => state.verifier.verify(Credential::Bearer(t)).await,
                            Some(Held::Cookie(c)) => state.verifier.verify(Credential::SessionCookie(c)).await,
                            None => Ok(None),
                        };
                        match still_valid {
                            Ok(Some(p)) if p.guilds.allows(&guild) => {}
                            Ok(_) => return,
                            // The verifier itself failed (database hiccup): keep the stream.
                            Err(e) => tracing::warn!(error = %e, guild_id = %guild, principal = permit.principal(), "could not re-check a stream's session; it stays open"),
                        }
                        yield Ok(Bytes::from_static(b": heartbeat\n\n"));
                    }
                }
            }
        };
        Ok(StreamResponse::Ok(
            EventStream(body.boxed()),
            "no-cache".into(),
            "no".into(),
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The ids of event frames.
    fn frame_ids(frames: &[Bytes]) -> Vec<i64> {
        frames
            .iter()
            .map(|f| {
                let text = std::str::from_utf8(f).unwrap();
                text.lines().next().unwrap()["id: ".len()..]
                    .parse()
                    .unwrap()
            })
            .collect()
    }

    /// Waits up to 30 s for the feed to publish up to `id`, and asserts it did.
    async fn published(feed: &crate::feed::ActionFeed, id: i64) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while feed.high_water() < id && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(feed.high_water(), id);
    }

    /// The ids of what `replay` sends, or `None` for a resync.
    async fn replayed(
        db: &DatabaseConnection,
        after: i64,
        upto: i64,
        max: u32,
    ) -> Option<Vec<i64>> {
        let frames: Vec<Bytes> = replay(db.clone(), "1".into(), after, upto, max)
            .map(Result::unwrap)
            .collect()
            .await;
        if frames
            .first()
            .is_some_and(|f| f.as_ref() == resync(TOO_MANY_MISSED, upto))
        {
            assert_eq!(frames.len(), 1, "a resync comes alone");
            return None;
        }
        Some(frame_ids(&frames))
    }

    /// A catch-up within what the feed keeps comes from its memory: the rows are deleted
    /// after they were published, and the catch-up still sends them (in pages), or a resync
    /// carrying `upto` when there are more than the bound.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn catch_up_comes_from_the_feeds_memory() {
        let _alone = crate::feed::FEED_TESTS.lock().await;
        let db = db::connect("sqlite::memory:", 2).await.unwrap();
        migration::cli::run(&db, &migration::cli::MigrateCommand::Up { steps: None })
            .await
            .unwrap();
        let feed = crate::feed::ActionFeed::start(db.clone(), std::time::Duration::from_secs(60))
            .await
            .unwrap();
        // Ids 1..=300, guild 1 but every third row in guild 2.
        db::execute(
            &db,
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300) \
             INSERT INTO action_log (guild_id, actor_id, action, created_at_s) \
             SELECT CASE WHEN i % 3 = 0 THEN '2' ELSE '1' END, '2', 'claim', 0 FROM n",
            vec![],
        )
        .await
        .unwrap();
        feed.wake();
        published(&feed, 300).await;
        db::execute(&db, "DELETE FROM action_log", vec![])
            .await
            .unwrap();
        let caught_up = |after: i64, max: u32| {
            catch_up(feed.clone(), db.clone(), "1".into(), after, 300, max)
                .map(Result::unwrap)
                .collect::<Vec<Bytes>>()
        };
        let ids = frame_ids(&caught_up(10, 1000).await);
        assert_eq!(ids, (11..=300).filter(|i| i % 3 != 0).collect::<Vec<_>>());
        assert_eq!(caught_up(10, 50).await, [resync(TOO_MANY_MISSED, 300)]);

        // The feed's memory moves past a catch-up between two of its pages: the rest comes
        // from the database, with no gap and no repeat.
        let insert = |from: i64, to: i64| {
            db::execute(
                &db,
                format!(
                    "WITH RECURSIVE n(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM n WHERE i < {to}) \
                     INSERT INTO action_log (id, guild_id, actor_id, action, created_at_s) \
                     SELECT i, '1', '2', 'claim', 0 FROM n"
                ),
                vec![],
            )
        };
        insert(1, 300).await.unwrap();
        let mut paged = Box::pin(catch_up(feed.clone(), db.clone(), "1".into(), 0, 300, 1000));
        let mut ids = Vec::new();
        while ids.len() < CATCH_UP_PAGE {
            ids.push(paged.next().await.unwrap().unwrap());
        }
        let newest = 300 + crate::feed::publisher::RECENT_CAPACITY as i64 + 10;
        insert(301, newest).await.unwrap();
        feed.wake();
        published(&feed, newest).await;
        assert_eq!(
            feed.recent_count("1", 0, 300),
            None,
            "the memory moved past"
        );
        while let Some(frame) = paged.next().await {
            ids.push(frame.unwrap());
        }
        let ids = frame_ids(&ids);
        // The first page from memory, where guild 1 had no multiple of 3; the rest from the
        // rows written again since, all of guild 1.
        let from_memory: Vec<i64> = (1..=300)
            .filter(|i| i % 3 != 0)
            .take(CATCH_UP_PAGE)
            .collect();
        let expected: Vec<i64> = from_memory
            .iter()
            .copied()
            .chain(from_memory[CATCH_UP_PAGE - 1] + 1..=300)
            .collect();
        assert_eq!(ids, expected);
    }

    /// Pages, the limit on either side of a page, the bounds, and another guild's rows.
    #[tokio::test]
    async fn replay_pages_and_its_limit() {
        let db = db::connect("sqlite::memory:", 2).await.unwrap();
        migration::cli::run(&db, &migration::cli::MigrateCommand::Up { steps: None })
            .await
            .unwrap();
        // Ids 1..=600 in guild 1, then 601..=610 in guild 2.
        db::execute(
            &db,
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 610) \
             INSERT INTO action_log (guild_id, actor_id, action, created_at_s) \
             SELECT CASE WHEN i <= 600 THEN '1' ELSE '2' END, '2', 'claim', 0 FROM n",
            vec![],
        )
        .await
        .unwrap();
        let ids = |from: i64, to: i64| Some((from..=to).collect::<Vec<_>>());
        // Three pages, exactly at the limit.
        assert_eq!(replayed(&db, 0, 610, 600).await, ids(1, 600));
        // One row over a limit beyond the first page: the probe.
        assert_eq!(replayed(&db, 0, 610, 599).await, None);
        // Over a limit within the first page.
        assert_eq!(replayed(&db, 0, 610, 5).await, None);
        assert_eq!(replayed(&db, 590, 600, 9).await, None);
        assert_eq!(replayed(&db, 590, 598, 9).await, ids(591, 598));
        assert_eq!(replayed(&db, 600, 610, 5).await, Some(Vec::new()));
    }
}
