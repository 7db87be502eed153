//! `GET /api/logs/stream`: headers, heartbeat, live events from every kind of writer,
//! resumption, isolation, resync, limits and cleanup.

use std::{collections::BTreeSet, time::Duration};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use pawtropolis_api::feed::NewAction;
use pawtropolis_tests::{
    Backend, GUILD_A, GUILD_B, TestApp, TestDb, backends, id_in, postgres, run_cli, sse::SseClient,
    unique_name,
};

const M: &str = "700000000000000001";
const SECS: Duration = Duration::from_secs(5);

fn path(extra: &str) -> String {
    format!("/api/logs/stream?guild_id={GUILD_A}{extra}")
}

fn action(guild: &str, what: &str) -> NewAction {
    NewAction {
        guild_id: guild.into(),
        action: what.into(),
        actor_id: M.into(),
        subject_id: Some("800000000000000001".into()),
        ..Default::default()
    }
}

/// The server answers a stream on a new connection straight from the socket (`StreamAcceptor`:
/// `Connection: close`, no chunking) and on a kept-alive connection through poem and hyper
/// (chunked), as a host that only mounts the routes does; both deliver the same events. On
/// SQLite a row written by another connection arrives at once, long before the poll.
#[tokio::test]
async fn both_connection_paths_and_the_database_file_watch() {
    for backend in backends() {
        let app = TestApp::spawn_with(&backend, &["--sse-poll-ms", "60000"]).await;
        let token = app.token(&[GUILD_A]).await;
        let auth = format!("Bearer {token}");
        let mut direct = SseClient::connect(&app.base, &path(""), &token, None).await;
        assert_eq!(direct.status, 200);
        assert_eq!(direct.headers["connection"], "close");
        assert!(direct.headers.get("transfer-encoding").is_none());

        let warm = reqwest::Client::new();
        let health = warm
            .get(format!("{}/health", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
        health.bytes().await.unwrap();
        let mut hyper =
            SseClient::connect_on(&warm, &app.base, &path(""), &[("authorization", &auth)]).await;
        assert_eq!(hyper.status, 200);
        assert_eq!(hyper.headers["transfer-encoding"], "chunked");
        assert_eq!(app.api.open_streams(), 2);

        let id = app
            .api
            .recorder()
            .record(action(GUILD_A, "claim"))
            .await
            .unwrap();
        for s in [&mut direct, &mut hyper] {
            assert_eq!(s.next_action(SECS).await.expect("event").id, Some(id));
        }
        // A request head that arrives in pieces is still taken by the direct path.
        let mut raw = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://"))
            .await
            .unwrap();
        let head = format!(
            "GET {} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n",
            path("")
        );
        let (a, b) = head.split_at(20);
        raw.write_all(a.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        raw.write_all(b.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&got).contains(": stream open") {
            let n = tokio::time::timeout(SECS, raw.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got).to_lowercase();
        assert!(text.starts_with("http/1.1 200 ok\r\n"), "{text}");
        assert!(text.contains("connection: close\r\n"), "{text}");
        assert!(text.contains("content-type: text/event-stream"), "{text}");
        drop(raw);

        // Refusals on the direct path are whole JSON replies.
        let refused = reqwest::Client::new()
            .get(format!("{}{}", app.base, path("")))
            .header("authorization", "Bearer nope")
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401);
        assert_eq!(refused.headers()["connection"], "close");
        let body: serde_json::Value = refused.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");

        // With a 60 s poll, only the file watch can deliver this row within `SECS`.
        if backend == Backend::Sqlite {
            let other = app
                .tdb
                .insert_action(GUILD_A, "approve", M, None, None, 1_761_004_800, None)
                .await;
            let ev = direct.next_action(SECS).await.expect("watched event");
            assert_eq!(ev.id, Some(other));
        }
        // The direct path notices a client leaving at once (hyper only at its next write, a
        // heartbeat away).
        drop(direct);
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while app.api.open_streams() > 1 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(app.api.open_streams(), 1);
        drop(hyper);
        app.finish().await;
    }
}

#[tokio::test]
async fn headers_first_comment_heartbeat_and_live_events() {
    for backend in backends() {
        let app = TestApp::spawn_with(&backend, &["--sse-heartbeat-secs", "1"]).await;
        let token = app.token(&[GUILD_A]).await;
        let mut s = SseClient::connect(&app.base, &path(""), &token, None).await;
        assert_eq!(s.status, 200);
        assert_eq!(s.headers["content-type"], "text/event-stream");
        assert_eq!(s.headers["cache-control"], "no-cache");
        assert_eq!(s.headers["x-accel-buffering"], "no");
        let first = s.next_block(SECS).await.expect("first block");
        assert_eq!(first.comments, ["stream open"]);
        assert_eq!(first.retry, Some(3000));
        assert!(
            first.id.is_some(),
            "the opening block carries the id to resume from"
        );
        assert!(first.event.is_none() && first.data.is_none());
        let hb = s
            .next_block(Duration::from_secs(3))
            .await
            .expect("heartbeat");
        assert_eq!(hb.comments, ["heartbeat"]);

        // From the host's recorder (that it goes out without waiting for a poll is checked
        // by `both_connection_paths_and_the_database_file_watch`, whose poll is 60 s).
        let id = app
            .api
            .recorder()
            .record(action(GUILD_A, "claim"))
            .await
            .unwrap();
        let ev = s.next_action(SECS).await.expect("recorded event");
        assert_eq!(ev.id, Some(id));
        assert_eq!(ev.event.as_deref(), Some("action"));
        let data = ev.json();
        assert_eq!(data["id"], id);
        assert_eq!(data["action"], "claim");
        assert_eq!(data["moderator_id"], M);
        assert_eq!(data["guild_id"], GUILD_A);
        assert!(data["timestamp"].as_str().unwrap().ends_with('Z'));
        for field in [
            "subject_id",
            "app_id",
            "app_code",
            "reason",
            "meta",
            "created_at",
            "created_at_s",
        ] {
            assert!(data.get(field).is_some(), "missing {field}: {data}");
        }

        // From another connection, as the bot writing the same database.
        let other = app
            .tdb
            .insert_action(
                GUILD_A,
                "approve",
                M,
                None,
                None,
                1_761_004_800,
                Some(r#"{"x":1}"#),
            )
            .await;
        let ev = s.next_action(SECS).await.expect("polled event");
        assert_eq!(ev.id, Some(other));
        assert_eq!(ev.json()["meta"], serde_json::json!({"x": 1}));
        app.finish().await;
    }
}

#[tokio::test]
async fn resume_isolation_and_resync() {
    for backend in backends() {
        let app = TestApp::spawn_with(&backend, &["--sse-replay-max", "5"]).await;
        let token = app.token(&[GUILD_A]).await;
        let rec = app.api.recorder();
        let mut s = SseClient::connect(&app.base, &path(""), &token, None).await;
        s.next_block(SECS).await.expect("open");
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(rec.record(action(GUILD_A, "claim")).await.unwrap());
            rec.record(action(GUILD_B, "claim")).await.unwrap();
        }
        for want in &ids {
            assert_eq!(
                s.next_action(SECS).await.unwrap().id,
                Some(*want),
                "guild B never shows up"
            );
        }
        drop(s);

        // Missed while away: two of guild A, one of guild B.
        let missed = [
            rec.record(action(GUILD_A, "approve")).await.unwrap(),
            rec.record(action(GUILD_B, "approve")).await.unwrap(),
            rec.record(action(GUILD_A, "reject")).await.unwrap(),
        ];
        let last = ids[2].to_string();
        // Guild A's rows after `last`, which every resumption must replay in order.
        let mut after_last = vec![missed[0], missed[2]];
        for how in ["header", "query", "both"] {
            let (p, header) = match how {
                "header" => (path(""), Some(last.as_str())),
                "query" => (path(&format!("&last_event_id={last}")), None),
                // The header wins over the parameter.
                _ => (path("&last_event_id=1"), Some(last.as_str())),
            };
            let mut s = SseClient::connect(&app.base, &p, &token, header).await;
            for want in &after_last {
                assert_eq!(s.next_action(SECS).await.unwrap().id, Some(*want), "{how}");
            }
            // Then live, without a gap or a duplicate.
            let live = rec.record(action(GUILD_A, "kick")).await.unwrap();
            assert_eq!(s.next_action(SECS).await.unwrap().id, Some(live), "{how}");
            assert!(
                s.next_action(Duration::from_millis(400)).await.is_none(),
                "{how}: nothing else"
            );
            after_last.push(live);
        }

        // More than the replay bound was missed: resync, then live. The resync's id is where
        // the live events go on from: a client that drops before the next event and resumes
        // from it is not told to reload again.
        let mut s = SseClient::connect(&app.base, &path("&last_event_id=0"), &token, None).await;
        let first = s.next_action(SECS).await.unwrap();
        assert_eq!(first.event.as_deref(), Some("resync"));
        assert_eq!(first.id, after_last.last().copied(), "resync id");
        drop(s);
        let from = first.id.unwrap().to_string();
        let mut s = SseClient::connect(&app.base, &path(""), &token, Some(from.as_str())).await;
        let live = rec.record(action(GUILD_A, "claim")).await.unwrap();
        let next = s.next_action(SECS).await.unwrap();
        assert_eq!(
            (next.event.as_deref(), next.id),
            (Some("action"), Some(live))
        );
        drop(s);

        // Dropped before its first event: the opening block's id (the latest row's) is what
        // EventSource sends back, so what was written in between is not lost.
        let mut s = SseClient::connect(&app.base, &path(""), &token, None).await;
        let open = s.next_block(SECS).await.expect("open");
        assert_eq!(open.comments, ["stream open"]);
        assert_eq!(
            open.id,
            Some(live),
            "a new stream starts after the latest row"
        );
        drop(s);
        let in_between = rec.record(action(GUILD_A, "claim")).await.unwrap();
        let from = live.to_string();
        let mut s = SseClient::connect(&app.base, &path(""), &token, Some(from.as_str())).await;
        let open = s.next_block(SECS).await.expect("open");
        assert_eq!(
            open.id,
            Some(live),
            "a resumed stream opens with the id it resumed after"
        );
        assert_eq!(s.next_action(SECS).await.unwrap().id, Some(in_between));
        drop(s);

        // An id newer than every row (the database was restored since): resync, then live
        // from the latest row, rather than a stream that drops every event for good.
        let mut s = SseClient::connect(&app.base, &path(""), &token, Some("900000000000")).await;
        let open = s.next_block(SECS).await.expect("open");
        assert_eq!(open.id, Some(in_between), "it goes on from the latest row");
        let first = s.next_action(SECS).await.unwrap();
        assert_eq!(first.event.as_deref(), Some("resync"));
        assert_eq!(first.id, Some(in_between));
        let live = rec.record(action(GUILD_A, "claim")).await.unwrap();
        assert_eq!(s.next_action(SECS).await.unwrap().id, Some(live));
        drop(s);

        if matches!(backend, Backend::Sqlite) {
            // A row that cannot be read (SQLite keeps a blob that is not UTF-8 in a TEXT
            // column): a replay leaves it out, as the live feed does, rather than failing every
            // reconnect after it.
            app.tdb
                .exec(
                    "INSERT INTO action_log (guild_id, actor_id, action, meta_json, created_at_s) VALUES ($1, $2, 'claim', X'FFFE', 0)",
                    vec![GUILD_A.into(), M.into()],
                )
                .await;
            let after_bad = rec.record(action(GUILD_A, "approve")).await.unwrap();
            // Published before the stream opens, so that it comes by replay, not live.
            let mut waited = 0;
            while app.api.feed().high_water() < after_bad && waited < 50 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                waited += 1;
            }
            assert!(app.api.feed().high_water() >= after_bad);
            let from = live.to_string();
            let mut s = SseClient::connect(&app.base, &path(""), &token, Some(from.as_str())).await;
            assert_eq!(s.next_action(SECS).await.unwrap().id, Some(after_bad));
        }

        let bad = SseClient::connect(&app.base, &path(""), &token, Some("abc")).await;
        assert_eq!(bad.status, 400);
        let negative = SseClient::connect(&app.base, &path(""), &token, Some("-5")).await;
        assert_eq!(negative.status, 400);
        let negative =
            SseClient::connect(&app.base, &path("&last_event_id=-5"), &token, None).await;
        assert_eq!(negative.status, 400);
        let other = SseClient::connect(
            &app.base,
            &format!("/api/logs/stream?guild_id={GUILD_B}"),
            &token,
            None,
        )
        .await;
        assert_eq!(other.status, 403);
        app.finish().await;
    }
}

#[tokio::test]
async fn limits_cleanup_revocation_and_shutdown() {
    let app = TestApp::spawn_with(
        &Backend::Sqlite,
        &[
            "--sse-max-streams",
            "3",
            "--sse-max-streams-per-principal",
            "2",
            "--sse-heartbeat-secs",
            "1",
        ],
    )
    .await;
    let t1 = app.token(&[GUILD_A]).await;
    let t2 = app.token(&[GUILD_A]).await;
    let a = SseClient::connect(&app.base, &path(""), &t1, None).await;
    let b = SseClient::connect(&app.base, &path(""), &t1, None).await;
    assert_eq!(app.api.open_streams(), 2);
    let refused = SseClient::connect(&app.base, &path(""), &t1, None).await;
    assert_eq!(refused.status, 429);
    assert!(refused.headers.contains_key("retry-after"));
    let mut c = SseClient::connect(&app.base, &path(""), &t2, None).await;
    assert_eq!(c.status, 200);
    let full = SseClient::connect(&app.base, &path(""), &t2, None).await;
    assert_eq!(full.status, 503);
    assert!(full.headers.contains_key("retry-after"));
    // Operators read the gauge on `/health`.
    assert_eq!(health_open_streams(&app).await, 3);

    // A disconnect frees its place at once.
    drop(a);
    drop(b);
    let mut waited = 0;
    while app.api.open_streams() != 1 && waited < 50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    assert_eq!(app.api.open_streams(), 1);

    // A revoked token closes its stream (at the next re-check after the token cache expires).
    c.next_block(SECS).await.expect("open");
    run_cli(&app.tdb.url, &["token", "revoke", &t2])
        .await
        .unwrap();
    assert!(
        c.ended_within(Duration::from_secs(10)).await,
        "revoked stream still open"
    );

    // Shutdown ends the remaining streams cleanly.
    let mut d = SseClient::connect(&app.base, &path(""), &t1, None).await;
    d.next_block(SECS).await.expect("open");
    app.api.shutdown();
    assert!(d.ended_within(SECS).await);
    let mut waited = 0;
    while app.api.open_streams() != 0 && waited < 50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    assert_eq!(app.api.open_streams(), 0, "the gauge goes back to zero");
    assert_eq!(health_open_streams(&app).await, 0);
    app.finish().await;
}

/// `open_streams` of `GET /health`.
async fn health_open_streams(app: &TestApp) -> u64 {
    let health: serde_json::Value = reqwest::get(format!("{}/health", app.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    health["open_streams"]
        .as_u64()
        .expect("open_streams in /health")
}

#[tokio::test]
async fn concurrent_writers_every_id_exactly_once_in_order() {
    for backend in backends() {
        let app = TestApp::spawn_with(&backend, &["--sse-poll-ms", "50"]).await;
        let token = app.token(&[GUILD_A]).await;
        let mut s = SseClient::connect(&app.base, &path(""), &token, None).await;
        s.next_block(SECS).await.expect("open");
        // Two writers on their own connections, as two bot processes would be.
        let w1 = pawtropolis_api::db::connect(&app.tdb.url, 1).await.unwrap();
        let w2 = pawtropolis_api::db::connect(&app.tdb.url, 1).await.unwrap();
        // Some inserts sit in a transaction for a while before committing, so that on
        // PostgreSQL a higher id of the other writer commits first.
        let long_hold = matches!(backend, Backend::Postgres(_));
        let write = |db: sea_orm::DatabaseConnection, offset: usize| async move {
            use sea_orm::{ConnectionTrait as _, TransactionTrait as _};
            let insert = |i: usize| {
                sea_orm::Statement::from_sql_and_values(
                    db.get_database_backend(),
                    "INSERT INTO action_log (guild_id, actor_id, action, created_at_s) VALUES ($1, $2, 'claim', $3) RETURNING id",
                    vec![
                        GUILD_A.into(),
                        M.into(),
                        (1_761_000_000i64 + i as i64).into(),
                    ],
                )
            };
            let mut ids = Vec::new();
            for i in 0..500 {
                let row = if (i + offset).is_multiple_of(50) {
                    let txn = db.begin().await.unwrap();
                    let row = txn.query_one_raw(insert(i)).await.unwrap().unwrap();
                    // One transaction on PostgreSQL stays open for seconds: the feed must wait
                    // for it however long it takes, not give up on its id.
                    let hold = if long_hold && i == 100 { 4_000 } else { 150 };
                    tokio::time::sleep(Duration::from_millis(hold)).await;
                    txn.commit().await.unwrap();
                    row
                } else {
                    db.query_one_raw(insert(i)).await.unwrap().unwrap()
                };
                ids.push(row.try_get::<i64>("", "id").unwrap());
            }
            ids
        };
        let (a, b) = tokio::join!(write(w1, 0), write(w2, 25));
        let expected: BTreeSet<i64> = a.into_iter().chain(b).collect();
        assert_eq!(expected.len(), 1000);
        let mut got = Vec::new();
        while got.len() < 1000 {
            match s.next_action(Duration::from_secs(10)).await {
                Some(ev) => got.push(ev.id.unwrap()),
                None => break,
            }
        }
        assert_eq!(got.len(), 1000, "on {}", backend.name());
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "in id order, no duplicate"
        );
        assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), expected);
        app.finish().await;
    }
}

type Events = tokio::sync::broadcast::Receiver<std::sync::Arc<pawtropolis_api::feed::FeedEvent>>;

async fn migrated(backend: &Backend) -> TestDb {
    let tdb = TestDb::new(backend).await;
    migration::cli::run(&tdb.db, &migration::cli::MigrateCommand::Up { steps: None })
        .await
        .unwrap();
    tdb
}

/// A feed polling every 50 ms, and a receiver of every event.
async fn start_feed(tdb: &TestDb) -> (pawtropolis_api::feed::ActionFeed, Events) {
    let feed = pawtropolis_api::feed::ActionFeed::start(tdb.db.clone(), Duration::from_millis(50))
        .await
        .unwrap();
    let rx = feed.subscribe();
    (feed, rx)
}

/// The ids of the next `n` events (5 s at most each).
async fn next_ids(rx: &mut Events, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for _ in 0..n {
        match tokio::time::timeout(SECS, rx.recv()).await {
            Ok(Ok(event)) => ids.push(event.id),
            _ => break,
        }
    }
    ids
}

fn nothing_yet(rx: &mut Events) -> bool {
    matches!(
        rx.try_recv(),
        Err(tokio::sync::broadcast::error::TryRecvError::Empty)
    )
}

/// Inserts a row of guild A in `txn` and returns its id.
async fn insert_in(txn: &sea_orm::DatabaseTransaction) -> i64 {
    id_in(
        txn,
        "INSERT INTO action_log (guild_id, actor_id, action, created_at_s) VALUES ($1, $2, 'claim', 0) RETURNING id",
        vec![GUILD_A.into(), M.into()],
    )
    .await
}

/// On PostgreSQL a writer may take its id (`nextval`) long before it writes the row, and get
/// a transaction id only then. The feed must not publish past that id while its transaction is
/// open, however many polls go by, and must publish it once it commits: with the table the
/// migration creates, and with a bot's table whose ids come from a sequence the column does
/// not own (which `pg_get_serial_sequence` does not find).
#[tokio::test]
async fn an_id_taken_before_its_row_is_written_is_not_lost() {
    let Some(backend) = postgres() else {
        return;
    };
    for sequence in ["pg_get_serial_sequence('action_log', 'id')", "'bot_ids'"] {
        let tdb = TestDb::new(&backend).await;
        if sequence == "'bot_ids'" {
            tdb.exec("CREATE SEQUENCE bot_ids", vec![]).await;
            tdb.exec(
            "CREATE TABLE action_log (id BIGINT PRIMARY KEY DEFAULT nextval('bot_ids'), guild_id TEXT NOT NULL, \
             actor_id TEXT NOT NULL, action TEXT NOT NULL, created_at_s BIGINT NOT NULL)",
            vec![],
        )
        .await;
        }
        migration::cli::run(&tdb.db, &migration::cli::MigrateCommand::Up { steps: None })
            .await
            .unwrap();
        let (feed, mut rx) = start_feed(&tdb).await;
        // The sequence's first value is written to the WAL with the next 32, which gives the
        // transaction taking it a transaction id at once; the ones after it do not.
        let first = tdb
            .insert_action(GUILD_A, "claim", M, None, None, 0, None)
            .await;
        assert_eq!(next_ids(&mut rx, 1).await, [first]);
        let txn = tdb.transaction_elsewhere().await;
        let taken = id_in(&txn, &format!("SELECT nextval({sequence}) AS id"), vec![]).await;
        let later = tdb
            .insert_action(GUILD_A, "claim", M, None, None, 0, None)
            .await;
        assert_eq!(later, taken + 1);
        tokio::time::sleep(Duration::from_millis(300)).await;
        id_in(
        &txn,
        "INSERT INTO action_log (id, guild_id, actor_id, action, created_at_s) VALUES ($1, $2, $3, 'claim', 0) RETURNING id",
        vec![taken.into(), GUILD_A.into(), M.into()],
    )
    .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            nothing_yet(&mut rx),
            "{sequence}: nothing goes out past an id whose transaction is still open"
        );
        txn.commit().await.unwrap();
        assert_eq!(next_ids(&mut rx, 2).await, [taken, later], "{sequence}");
        feed.stop();
        tdb.cleanup().await;
    }
}

/// A hole left by a rolled-back insert holds nothing up, even while a long read of
/// `action_log` and a purge of old rows are open: the feed waits only for transactions that
/// took an id.
#[tokio::test]
async fn a_rolled_back_id_waits_for_no_reader() {
    let Some(backend) = postgres() else {
        return;
    };
    let tdb = migrated(&backend).await;
    let (feed, mut rx) = start_feed(&tdb).await;
    let reader = tdb.transaction_elsewhere().await;
    id_in(&reader, "SELECT COUNT(*) AS id FROM action_log", vec![]).await;
    let purge = tdb.transaction_elsewhere().await;
    id_in(
        &purge,
        "WITH gone AS (DELETE FROM action_log WHERE created_at_s < 0 RETURNING id) SELECT COUNT(*) AS id FROM gone",
        vec![],
    )
    .await;
    let undone = tdb.transaction_elsewhere().await;
    let rolled_back = insert_in(&undone).await;
    undone.rollback().await.unwrap();
    let after = tdb
        .insert_action(GUILD_A, "claim", M, None, None, 0, None)
        .await;
    assert_eq!(after, rolled_back + 1);
    assert_eq!(
        next_ids(&mut rx, 1).await,
        [after],
        "the reader is still open"
    );
    reader.commit().await.unwrap();
    purge.commit().await.unwrap();
    feed.stop();
    tdb.cleanup().await;
}

/// A row whose transaction stays open while the feed starts (longer than the feed waits for
/// it), below a row already committed, is published when it commits: publishing starts below
/// it, not at the newest id.
#[tokio::test]
async fn a_row_in_flight_when_the_feed_starts_is_not_lost() {
    let Some(backend) = postgres() else {
        return;
    };
    let tdb = migrated(&backend).await;
    let before = tdb
        .insert_action(GUILD_A, "claim", M, None, None, 0, None)
        .await;
    let txn = tdb.transaction_elsewhere().await;
    let held = insert_in(&txn).await;
    let later = tdb
        .insert_action(GUILD_A, "claim", M, None, None, 0, None)
        .await;
    assert_eq!((held, later), (before + 1, before + 2));
    let (feed, mut rx) = start_feed(&tdb).await;
    assert_eq!(
        feed.high_water(),
        before,
        "publishing starts below the open row"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(nothing_yet(&mut rx));
    txn.commit().await.unwrap();
    assert_eq!(next_ids(&mut rx, 2).await, [held, later]);
    feed.stop();
    tdb.cleanup().await;
}

/// The live feed reads with connections of its own. A host whose pool picks its schema after
/// connecting (sea-orm's `set_schema_search_path`, an `after_connect` hook), rather than in the
/// URL, still gets every event: the feed connects with the host's search path.
#[tokio::test]
async fn the_feed_follows_a_schema_chosen_after_connecting() {
    use sea_orm::{ConnectionTrait as _, sqlx::Executor as _};
    let Some(backend) = postgres() else {
        return;
    };
    let Backend::Postgres(base) = &backend else {
        unreachable!("postgres() gives PostgreSQL")
    };
    let schema = unique_name();
    let admin = sea_orm::Database::connect(base.as_str()).await.unwrap();
    admin
        .execute_unprepared(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    // sqlx's executor wants the statement for as long as the connection: one small leak
    // per test run.
    let set: &'static str = Box::leak(format!("SET search_path TO {schema}").into_boxed_str());
    let pool = sea_orm::sqlx::postgres::PgPoolOptions::new()
        .max_connections(3)
        .after_connect(move |conn, _| Box::pin(async move { conn.execute(set).await.map(|_| ()) }))
        .connect(base)
        .await
        .unwrap();
    let db = sea_orm::SqlxPostgresConnector::from_sqlx_postgres_pool(pool);
    migration::cli::run(&db, &migration::cli::MigrateCommand::Up { steps: None })
        .await
        .unwrap();
    let api = pawtropolis_api::PawtropolisApi::builder(db.clone())
        .build()
        .await
        .unwrap();
    let mut rx = api.feed().subscribe();
    let id = api
        .recorder()
        .record(action(GUILD_A, "claim"))
        .await
        .unwrap();
    let event = tokio::time::timeout(SECS, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((event.id, event.guild_id.as_str()), (id, GUILD_A));
    api.shutdown();
    db.close().await.ok();
    admin
        .execute_unprepared(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .ok();
    admin.close().await.ok();
}

/// Reads event ids from a raw stream socket until `n` have come (a minute at most), failing on
/// a `resync`.
async fn read_ids(sock: &mut tokio::net::TcpStream, n: usize) -> Vec<i64> {
    let mut ids = Vec::with_capacity(n);
    let mut text = String::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while ids.len() < n {
        let got = tokio::time::timeout_at(deadline, sock.read(&mut buf))
            .await
            .expect("every row within a minute")
            .unwrap();
        assert!(got > 0, "the stream ended after {} rows", ids.len());
        text.push_str(&String::from_utf8_lossy(&buf[..got]));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            assert!(
                !block.contains("event: resync"),
                "a resync instead of a catch-up"
            );
            // Events only: the opening block has an id too.
            if block.contains("event: action") {
                ids.extend(
                    block
                        .lines()
                        .filter_map(|l| l.strip_prefix("id: "))
                        .map(|v| v.parse::<i64>().unwrap()),
                );
            }
        }
    }
    ids
}

/// 20,000 rows (6 MB of events): more than hyper and both ends of a socket buffer.
const FLOOD: i64 = 20_000;

/// The test server, with room to replay a [`FLOOD`] and no poll to publish it early.
async fn flood_app(backend: &Backend) -> TestApp {
    TestApp::spawn_with(
        backend,
        &["--sse-poll-ms", "60000", "--sse-replay-max", "50000"],
    )
    .await
}

/// Opens a stream of guild A on `addr` from a client with a small receive window, so that
/// the server's writes stall soon after the client stops reading.
async fn open_small_window_stream(
    addr: std::net::SocketAddr,
    token: &str,
) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut sock = socket.connect(addr).await.unwrap();
    sock.write_all(stream_request(addr, token).as_bytes())
        .await
        .unwrap();
    sock
}

fn stream_request(addr: std::net::SocketAddr, token: &str) -> String {
    format!(
        "GET {} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n",
        path("")
    )
}

/// Waits (up to `within`) until the server counts `n` open streams, and asserts it does.
async fn wait_for_open_streams(app: &TestApp, n: usize, within: Duration, what: &str) {
    let deadline = tokio::time::Instant::now() + within;
    while app.api.open_streams() != n && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(app.api.open_streams(), n, "{what}");
}

/// Inserts a [`FLOOD`] of guild A's rows in one statement and wakes the feed; returns their ids.
async fn flood(app: &TestApp) -> Vec<i64> {
    burst(app, FLOOD, None).await
}

/// Inserts `n` rows of guild A (with `reason`) in one statement and wakes the feed; returns
/// their ids.
async fn burst(app: &TestApp, n: i64, reason: Option<&str>) -> Vec<i64> {
    let before: i64 = app
        .tdb
        .rows("SELECT COALESCE(MAX(id), 0) AS m FROM action_log", vec![])
        .await[0]
        .try_get("", "m")
        .unwrap();
    let reason = reason.map_or_else(|| "NULL".to_owned(), |r| format!("'{r}'"));
    app.tdb
        .exec(
            &format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
                 INSERT INTO action_log (guild_id, actor_id, action, reason, created_at_s) \
                 SELECT '{GUILD_A}', '{M}', 'claim', {reason}, 1700000000 FROM n"
            ),
            vec![],
        )
        .await;
    app.api.feed().wake();
    ((before + 1)..=(before + n)).collect()
}

/// The client, reading again, gets what the buffers held and then the end of the connection
/// (within a second).
async fn assert_closed_after_reading(sock: &mut tokio::net::TcpStream) {
    let mut buf = vec![0; 64 * 1024];
    let end = tokio::time::timeout(SECS, async {
        while matches!(sock.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await;
    assert!(end.is_ok(), "the connection was not closed");
}

/// Two streams of guild A on the test server, both open: one from a client that does not read
/// (a small window, so that the server's writes stall soon) and one from a client that reads.
async fn stalled_and_reading_streams(
    app: &TestApp,
    token: &str,
) -> (tokio::net::TcpStream, tokio::net::TcpStream) {
    let addr: std::net::SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let stalled = open_small_window_stream(addr, token).await;
    let mut reader = tokio::net::TcpStream::connect(addr).await.unwrap();
    reader
        .write_all(stream_request(addr, token).as_bytes())
        .await
        .unwrap();
    wait_for_open_streams(app, 2, SECS, "both streams open").await;
    (stalled, reader)
}

/// A stream whose client stops reading falls behind the channel (a guild's holds 128 events):
/// with a [`FLOOD`] published in one pass, its writes stall, it misses events on the channel
/// and catches up from the database instead of holding them. Every row arrives once, in
/// order. Meanwhile a second stream of the same guild, whose client reads, gets every row
/// while the first is still stalled: a slow client holds back no one else.
#[tokio::test]
async fn a_stream_that_falls_behind_catches_up_from_the_database() {
    for backend in backends() {
        let app = flood_app(&backend).await;
        let token = app.token(&[GUILD_A]).await;
        let (mut sock, mut reader) = stalled_and_reading_streams(&app, &token).await;
        let all = flood(&app).await;
        // The reading client gets everything while the other has not read a byte.
        assert_eq!(read_ids(&mut reader, all.len()).await, all);
        // Not reading for a while longer: the feed has published everything meanwhile.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(read_ids(&mut sock, all.len()).await, all);
        drop(sock);
        drop(reader);
        app.finish().await;
    }
}

/// A burst smaller than what the feed keeps in memory: a stream that falls behind it catches
/// up from memory, not from the database. The rows are deleted after they were published and
/// before the stalled stream reads again, so only the feed's memory still has them; every
/// one arrives once, in order.
#[tokio::test]
async fn a_stream_that_falls_behind_a_burst_catches_up_from_memory() {
    for backend in backends() {
        let app = flood_app(&backend).await;
        let token = app.token(&[GUILD_A]).await;
        let (mut sock, mut reader) = stalled_and_reading_streams(&app, &token).await;
        // 2,000 events of 2 KB: 129 would overflow the guild's channel, but the socket
        // buffers take about a megabyte before the writes stall.
        let all = burst(&app, 2000, Some(&"r".repeat(2048))).await;
        assert_eq!(read_ids(&mut reader, all.len()).await, all);
        app.tdb
            .exec("DELETE FROM action_log WHERE id >= $1", vec![all[0].into()])
            .await;
        assert_eq!(read_ids(&mut sock, all.len()).await, all);
        let mut more = [0u8; 1024];
        let after = tokio::time::timeout(Duration::from_millis(500), sock.read(&mut more)).await;
        assert!(after.is_err(), "nothing after the burst: {after:?}");
        // A reconnect resuming before the burst replays it from memory too.
        let addr: std::net::SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
        let mut resumed = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = stream_request(addr, &token).replace(
            "\r\n\r\n",
            &format!("\r\nLast-Event-ID: {}\r\n\r\n", all[0] - 1),
        );
        resumed.write_all(request.as_bytes()).await.unwrap();
        assert_eq!(read_ids(&mut resumed, all.len()).await, all);
        drop(sock);
        drop(reader);
        app.finish().await;
    }
}

/// A stream that falls behind by more than the replay bound gets a `resync` carrying the id
/// it goes on from, then the events after it: however often that happens during a burst,
/// each event follows the one or the resync before it, with no gap and no repeat, up to the
/// burst's last row.
#[tokio::test]
async fn a_stream_that_falls_behind_further_than_the_replay_bound_resyncs_and_goes_on() {
    let app = TestApp::spawn_with(
        &Backend::Sqlite,
        &["--sse-poll-ms", "60000", "--sse-replay-max", "100"],
    )
    .await;
    let token = app.token(&[GUILD_A]).await;
    let addr: std::net::SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let mut sock = open_small_window_stream(addr, &token).await;
    wait_for_open_streams(&app, 1, SECS, "the stream opened").await;
    let all = burst(&app, 2000, Some(&"r".repeat(2048))).await;
    let last = all[all.len() - 1];
    // (A reading client would fall behind too: 500 events a pass, 100 at most replayed.)
    let deadline = tokio::time::Instant::now() + SECS;
    while app.api.feed().high_water() < last && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(app.api.feed().high_water(), last, "the burst was published");
    // Reads blocks until the stream is level with the burst: each event follows the one
    // before it or the resync before it, with no gap and no repeat.
    let (mut text, mut buf) = (String::new(), vec![0u8; 64 * 1024]);
    let (mut at, mut resyncs) = (all[0] - 1, 0);
    while at < last {
        let got = tokio::time::timeout(Duration::from_secs(30), sock.read(&mut buf))
            .await
            .expect("the end of the burst within 30 s")
            .unwrap();
        assert!(got > 0, "the stream ended at {at}");
        text.push_str(&String::from_utf8_lossy(&buf[..got]));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let id: Option<i64> = block
                .lines()
                .find_map(|l| l.strip_prefix("id: "))
                .map(|v| v.parse().unwrap());
            if block.contains("event: resync") {
                resyncs += 1;
                at = id.expect("a resync carries an id");
            } else if block.contains("event: action") {
                assert_eq!(id, Some(at + 1), "after {at}");
                at += 1;
            }
        }
    }
    assert!(resyncs > 0, "more than 100 missed and no resync");
    assert_eq!(at, last);
    let after = tokio::time::timeout(Duration::from_millis(500), sock.read(&mut buf)).await;
    assert!(after.is_err(), "nothing after the burst: {after:?}");
    drop(sock);
    app.finish().await;
}

/// Served by poem's own server (a host that mounts only `register_api_routes`), a stream whose
/// client stops reading stalls in hyper, which then stops running the stream's body: without
/// a write timeout it would hold its connection and its stream permit for as long as the
/// client's kernel acknowledges the zero window. Behind `WriteTimeoutAcceptor` the stalled
/// write fails, the connection closes and the stream frees everything as on a disconnect.
#[tokio::test]
async fn poem_server_closes_a_stream_whose_client_stopped_reading() {
    use poem::listener::{Acceptor as _, Listener as _};
    for backend in backends() {
        let app = flood_app(&backend).await;
        let token = app.token(&[GUILD_A]).await;
        // The host's server, beside the test server, over the same API.
        let tcp = poem::listener::TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let addr = *tcp.local_addr()[0].as_socket_addr().unwrap();
        let routes = pawtropolis_api::register_api_routes(poem::Route::new(), &app.api);
        let acceptor = pawtropolis_api::WriteTimeoutAcceptor::new(tcp, Duration::from_secs(1));
        let host = tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(routes));

        let mut sock = open_small_window_stream(addr, &token).await;
        wait_for_open_streams(&app, 1, SECS, "the stream opened").await;
        flood(&app).await;
        wait_for_open_streams(&app, 0, 4 * SECS, "the stalled stream is still open").await;
        assert_closed_after_reading(&mut sock).await;
        host.abort();
        app.finish().await;
    }
}

/// `PAWTROPOLIS_SSE_WRITE_TIMEOUT_SECS` reaches the streams the server answers from the
/// socket: at 5 s, a stream whose client stopped reading is closed soon after its writes stall,
/// and its place is freed, while a stream whose client reads goes on. (At the default 60 s,
/// `a_stream_that_falls_behind_catches_up_from_the_database` shows such a stream waiting for
/// its client.)
#[tokio::test]
async fn the_write_timeout_setting_closes_a_stalled_stream() {
    let app = TestApp::spawn_with(
        &Backend::Sqlite,
        &[
            "--sse-poll-ms",
            "60000",
            "--sse-replay-max",
            "50000",
            "--sse-write-timeout-secs",
            "5",
        ],
    )
    .await;
    let token = app.token(&[GUILD_A]).await;
    let (mut sock, mut reader) = stalled_and_reading_streams(&app, &token).await;
    let all = flood(&app).await;
    assert_eq!(read_ids(&mut reader, all.len()).await, all);
    wait_for_open_streams(&app, 1, 15 * SECS, "the stalled stream is closed").await;
    assert_closed_after_reading(&mut sock).await;
    assert_eq!(
        app.api.open_streams(),
        1,
        "the reading client's stream goes on"
    );
    drop(reader);
    app.finish().await;
}

/// A bot that revokes a token itself (`PawtropolisApi::revoke_token`) ends the token's streams
/// and refuses the token at once, on SQLite as on PostgreSQL: long before the next heartbeat,
/// and within the 5 s the token check would otherwise trust it. Other tokens' streams go on.
#[tokio::test]
async fn a_token_revoked_through_the_api_ends_its_streams_at_once() {
    for backend in backends() {
        let app = TestApp::spawn_with(&backend, &["--sse-heartbeat-secs", "600"]).await;
        let token = app.token(&[GUILD_A]).await;
        let other = app.token(&[GUILD_A]).await;
        let mut revoked = SseClient::connect(&app.base, &path(""), &token, None).await;
        revoked.next_block(SECS).await.expect("open");
        let mut kept = SseClient::connect(&app.base, &path(""), &other, None).await;
        kept.next_block(SECS).await.expect("open");
        let logs = format!("/api/logs?guild_id={GUILD_A}");
        assert_eq!(
            app.get(&logs, &token).await.status(),
            200,
            "trusted from now"
        );
        assert!(app.api.revoke_token(&token).await.unwrap());
        assert_eq!(
            app.get(&logs, &token).await.status(),
            401,
            "{}",
            backend.name()
        );
        assert!(revoked.ended_within(Duration::from_secs(3)).await);
        assert!(!kept.ended_within(Duration::from_secs(1)).await);
        assert!(
            !app.api.revoke_token(&token).await.unwrap(),
            "already revoked"
        );
        app.finish().await;
    }
}
