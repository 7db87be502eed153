//! The bot's existing database: the legacy schema of DESIGN.md §2 with rows and a column the
//! bot added survives the migrations, run twice, untouched, and is served.

use pawtropolis_tests::{Backend, GUILD_A, TestApp, TestDb, backends, run_cli};

/// An autoincrementing `id` column and the 64-bit integer type, as the bot's tables have them.
fn column_types(backend: &Backend) -> (&'static str, &'static str) {
    match backend {
        Backend::Sqlite => ("id INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER"),
        Backend::Postgres(_) => ("id BIGSERIAL PRIMARY KEY", "BIGINT"),
    }
}

fn legacy_schema(backend: &Backend) -> Vec<String> {
    let (id, big) = column_types(backend);
    vec![
        format!(
            "CREATE TABLE action_log ({id}, guild_id TEXT NOT NULL, app_id TEXT, app_code TEXT, \
             actor_id TEXT NOT NULL, subject_id TEXT, action TEXT NOT NULL, reason TEXT, meta_json TEXT, \
             created_at_s {big} NOT NULL, bot_flag TEXT DEFAULT 'kept')"
        ),
        "CREATE INDEX idx_action_log_guild_time ON action_log (guild_id, created_at_s DESC)".into(),
        "CREATE INDEX idx_action_log_actor_time ON action_log (actor_id, created_at_s DESC)".into(),
        "CREATE INDEX idx_action_log_app ON action_log (app_id)".into(),
        format!(
            "CREATE TABLE user_cache (user_id TEXT NOT NULL, guild_id TEXT NOT NULL, username TEXT NOT NULL, \
             global_name TEXT, display_name TEXT, avatar_hash TEXT, avatar_url TEXT NOT NULL, updated_at TEXT NOT NULL, \
             banner_url TEXT, accent_color {big}, joined_at {big}, created_at {big}, PRIMARY KEY (user_id, guild_id))"
        ),
        "CREATE INDEX idx_user_cache_updated ON user_cache (updated_at)".into(),
        "CREATE INDEX idx_user_cache_guild ON user_cache (guild_id)".into(),
        format!(
            "CREATE TABLE guild_config (guild_id TEXT PRIMARY KEY, review_channel_id TEXT, gate_channel_id TEXT, \
             unverified_channel_id TEXT, general_channel_id TEXT, accepted_role_id TEXT, reviewer_role_id TEXT, \
             image_search_url_template TEXT NOT NULL DEFAULT 'https://lens.google.com/uploadbyurl?url={{avatarUrl}}', \
             reapply_cooldown_hours {big} NOT NULL DEFAULT 24, min_account_age_hours {big} NOT NULL DEFAULT 0, \
             min_join_age_hours {big} NOT NULL DEFAULT 0, created_at TEXT, updated_at TEXT)"
        ),
        // The bot's audit trail of dashboard config edits (its migration 060).
        format!(
            "CREATE TABLE config_audit_log ({id}, guild_id TEXT NOT NULL, user_id TEXT NOT NULL, \
             field_key TEXT NOT NULL, old_value TEXT, new_value TEXT, source TEXT NOT NULL DEFAULT 'dashboard', \
             created_at TEXT NOT NULL DEFAULT {now})",
            now = match backend {
                Backend::Sqlite => "(datetime('now'))",
                Backend::Postgres(_) => "'2025-01-01 00:00:00'",
            }
        ),
        "CREATE INDEX idx_config_audit_guild ON config_audit_log (guild_id, created_at DESC)"
            .into(),
    ]
}

async fn dump(tdb: &TestDb) -> Vec<String> {
    let mut out = Vec::new();
    for row in tdb
        .rows(
            "SELECT id, guild_id, app_id, app_code, actor_id, subject_id, action, reason, meta_json, created_at_s, bot_flag \
             FROM action_log ORDER BY id",
            vec![],
        )
        .await
    {
        let s = |c: &str| row.try_get::<Option<String>>("", c).unwrap().unwrap_or_default();
        let id: i64 = row.try_get("", "id").unwrap();
        let t: i64 = row.try_get("", "created_at_s").unwrap();
        out.push(format!(
            "{id}|{}|{}|{}|{}|{}|{}|{}|{}|{t}|{}",
            s("guild_id"), s("app_id"), s("app_code"), s("actor_id"), s("subject_id"),
            s("action"), s("reason"), s("meta_json"), s("bot_flag")
        ));
    }
    for row in tdb
        .rows(
            "SELECT user_id, username, avatar_url FROM user_cache ORDER BY user_id",
            vec![],
        )
        .await
    {
        let s = |c: &str| row.try_get::<String>("", c).unwrap();
        out.push(format!(
            "uc|{}|{}|{}",
            s("user_id"),
            s("username"),
            s("avatar_url")
        ));
    }
    for row in tdb
        .rows("SELECT guild_id, reviewer_role_id, image_search_url_template, reapply_cooldown_hours FROM guild_config", vec![])
        .await
    {
        let h: i64 = row.try_get("", "reapply_cooldown_hours").unwrap();
        out.push(format!(
            "gc|{}|{}|{}|{h}",
            row.try_get::<String>("", "guild_id").unwrap(),
            row.try_get::<Option<String>>("", "reviewer_role_id").unwrap().unwrap_or_default(),
            row.try_get::<String>("", "image_search_url_template").unwrap()
        ));
    }
    out.extend(audit_trail(tdb).await);
    out
}

/// The rows of `config_audit_log`, oldest first.
async fn audit_trail(tdb: &TestDb) -> Vec<String> {
    tdb.rows(
        "SELECT guild_id, user_id, field_key, old_value, new_value, source, created_at FROM config_audit_log ORDER BY id",
        vec![],
    )
    .await
    .iter()
    .map(|row| {
        let s = |c: &str| row.try_get::<Option<String>>("", c).unwrap().unwrap_or_default();
        format!(
            "audit|{}|{}|{}|{}|{}|{}|{}",
            s("guild_id"),
            s("user_id"),
            s("field_key"),
            s("old_value"),
            s("new_value"),
            s("source"),
            s("created_at")
        )
    })
    .collect()
}

async fn schema_snapshot(tdb: &TestDb) -> Vec<String> {
    let sql = match tdb.backend {
        Backend::Sqlite => "SELECT type || ':' || name || ':' || COALESCE(sql, '') AS s FROM sqlite_master \
                            WHERE name NOT LIKE 'seaql%' ORDER BY name"
            .to_owned(),
        Backend::Postgres(_) => "SELECT table_name || ':' || column_name || ':' || data_type AS s FROM information_schema.columns \
                                 WHERE table_schema = current_schema() AND table_name NOT LIKE 'seaql%' \
                                 UNION ALL SELECT 'index:' || indexname FROM pg_indexes WHERE schemaname = current_schema() \
                                 UNION ALL SELECT 'trigger:' || t.tgname || ':' FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
                                   JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND NOT t.tgisinternal \
                                 UNION ALL SELECT 'function:' || p.proname || ':' FROM pg_proc p \
                                   JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = current_schema() ORDER BY 1"
            .to_owned(),
    };
    tdb.rows(&sql, vec![])
        .await
        .iter()
        .map(|r| r.try_get::<String>("", "s").unwrap())
        .collect()
}

#[tokio::test]
async fn migrations_keep_the_bots_database_intact_and_serve_it() {
    for backend in backends() {
        let tdb = TestDb::new(&backend).await;
        for sql in legacy_schema(&backend) {
            tdb.exec(&sql, vec![]).await;
        }
        for i in 0..30i64 {
            let meta = if i % 3 == 0 {
                Some(r#"{"n":1}"#)
            } else if i % 3 == 1 {
                Some("not json")
            } else {
                None
            };
            tdb.insert_action(
                GUILD_A,
                if i % 2 == 0 {
                    "claim"
                } else {
                    "some_future_action"
                },
                "444444444444444444",
                Some("555555555555555555"),
                Some("app-1"),
                1_700_000_000 + i * 60,
                meta,
            )
            .await;
        }
        tdb.exec(
            "UPDATE action_log SET bot_flag = 'custom' WHERE id = 5",
            vec![],
        )
        .await;
        tdb.exec(
            "INSERT INTO user_cache (user_id, guild_id, username, avatar_url, updated_at) VALUES ($1, $2, 'old', 'https://cdn/x.png', '2025-01-01 00:00:00')",
            vec!["444444444444444444".into(), GUILD_A.into()],
        )
        .await;
        tdb.exec(
            "INSERT INTO guild_config (guild_id, reviewer_role_id, reapply_cooldown_hours) VALUES ($1, '666666666666666666', 48)",
            vec![GUILD_A.into()],
        )
        .await;
        tdb.exec(
            "INSERT INTO config_audit_log (guild_id, user_id, field_key, old_value, new_value, created_at) \
             VALUES ($1, '555555555555555555', 'reapply_cooldown_hours', '24', '48', '2025-01-02 03:04:05')",
            vec![GUILD_A.into()],
        )
        .await;
        let before = dump(&tdb).await;

        let first = run_cli(&tdb.url, &["migrate", "up"]).await.unwrap();
        assert!(first.contains("applied 9"), "{first}");
        let after_first = schema_snapshot(&tdb).await;
        let second = run_cli(&tdb.url, &["migrate"]).await.unwrap();
        assert!(second.contains("applied 0"), "{second}");
        assert_eq!(
            schema_snapshot(&tdb).await,
            after_first,
            "a second run changed the schema"
        );
        let status = run_cli(&tdb.url, &["migrate", "status"]).await.unwrap();
        assert!(
            !status.contains("pending") && status.contains("applied"),
            "{status}"
        );
        assert_eq!(
            dump(&tdb).await,
            before,
            "rows changed on {}",
            backend.name()
        );

        // The missing column was added; the bot's extra column is still there.
        let cols = schema_snapshot(&tdb).await.join("\n");
        assert!(cols.contains("admin_role_id"), "{cols}");
        assert!(cols.contains("bot_flag"), "{cols}");
        assert!(cols.contains("image_search_url_template"), "{cols}");
        assert!(cols.contains("idx_action_log_guild_subject_time"), "{cols}");
        // What tells every server of an ending made by any means.
        let endings = match backend {
            Backend::Sqlite => [
                "table:credential_ending:",
                "trigger:credential_ending_token:",
                "trigger:credential_ending_session:",
                "trigger:credential_ending_token_deleted:",
                "trigger:credential_ending_session_deleted:",
            ],
            Backend::Postgres(_) => [
                "function:pawtropolis_credential_ended:",
                "trigger:credential_ended_token:",
                "trigger:credential_ended_session:",
                "trigger:credential_ended_token_deleted:",
                "trigger:credential_ended_session_deleted:",
            ],
        };
        for object in endings {
            assert!(cols.contains(object), "{object} in {cols}");
        }

        // Rolling the API back never touches the bot's tables.
        run_cli(&tdb.url, &["migrate", "down", "-n", "9"])
            .await
            .unwrap();
        assert_eq!(
            dump(&tdb).await,
            before,
            "down dropped bot data on {}",
            backend.name()
        );
        let cols = schema_snapshot(&tdb).await.join("\n");
        for object in endings {
            assert!(!cols.contains(object), "{object} after down");
        }

        let app = TestApp::spawn_on(tdb, &[]).await;
        let token = app.token(&[GUILD_A]).await;
        let (s, body) = app
            .get_json(&format!("/api/logs?guild_id={GUILD_A}&limit=500"), &token)
            .await;
        assert_eq!(s, 200, "{body}");
        let items = body["items"].as_array().unwrap();
        assert_eq!(items.len(), 30);
        assert_eq!(items[0]["action"], "some_future_action");
        let by_id = |id: i64| items.iter().find(|i| i["id"] == id).unwrap().clone();
        assert_eq!(by_id(1)["meta"], serde_json::json!({"n": 1}));
        assert_eq!(
            by_id(2)["meta"],
            serde_json::Value::Null,
            "invalid JSON meta must be null"
        );
        assert_eq!(by_id(1)["created_at"], "2023-11-14T22:13:20Z");
        let (s, cfg) = app
            .get_json(&format!("/api/config?guild_id={GUILD_A}"), &token)
            .await;
        assert_eq!(s, 200);
        assert_eq!(cfg["reviewer_role_id"], "666666666666666666");
        assert_eq!(cfg["reapply_cooldown_hours"], 48);

        // An edit through the API lands in the bot's audit trail, after the bot's own row.
        let resp = app
            .client
            .put(format!("{}/api/config?guild_id={GUILD_A}", app.base))
            .bearer_auth(&token)
            .json(&serde_json::json!({"reapply_cooldown_hours": 72}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let trail = audit_trail(&app.tdb).await;
        assert_eq!(trail.len(), 2, "{trail:?}");
        assert_eq!(
            trail[0],
            format!(
                "audit|{GUILD_A}|555555555555555555|reapply_cooldown_hours|24|48|dashboard|2025-01-02 03:04:05"
            )
        );
        assert!(
            trail[1].starts_with(&format!(
                "audit|{GUILD_A}|token:1|reapply_cooldown_hours|48|72|api|"
            )),
            "{trail:?}"
        );
        app.finish().await;
    }
}

/// A `config_audit_log` of the API's first layout (`actor`, `field`, `changed_at_s`), which
/// kept the bot's migration 060 from running, is converted to the bot's layout with its rows.
#[tokio::test]
async fn the_apis_first_audit_table_becomes_the_bots() {
    for backend in backends() {
        let tdb = TestDb::new(&backend).await;
        // A database the API's first four migrations made, with its own audit table.
        run_cli(&tdb.url, &["migrate", "up", "-n", "4"])
            .await
            .unwrap();
        tdb.exec("DROP TABLE config_audit_log", vec![]).await;
        let (id, big) = column_types(&backend);
        tdb.exec(
            &format!(
                "CREATE TABLE config_audit_log ({id}, guild_id TEXT NOT NULL, actor TEXT NOT NULL, \
                 field TEXT NOT NULL, old_value TEXT, new_value TEXT, changed_at_s {big} NOT NULL)"
            ),
            vec![],
        )
        .await;
        tdb.exec(
            "CREATE INDEX idx_config_audit_guild_time ON config_audit_log (guild_id, changed_at_s)",
            vec![],
        )
        .await;
        for (actor, old, new, at) in [
            (
                "user:555555555555555555",
                Some("24"),
                "48",
                1_761_004_800i64,
            ),
            ("token:3", None, "900000000000000001", 1_761_004_861),
            ("token:3", None, "deleted later", 1_761_004_862),
        ] {
            tdb.exec(
                "INSERT INTO config_audit_log (guild_id, actor, field, old_value, new_value, changed_at_s) \
                 VALUES ($1, $2, 'reapply_cooldown_hours', $3, $4, $5)",
                vec![
                    GUILD_A.into(),
                    actor.into(),
                    old.map(str::to_owned).into(),
                    new.into(),
                    at.into(),
                ],
            )
            .await;
        }
        // The newest row is gone, its id used: no later row may take it again.
        tdb.exec("DELETE FROM config_audit_log WHERE id = 3", vec![])
            .await;
        let out = run_cli(&tdb.url, &["migrate", "up"]).await.unwrap();
        assert!(out.contains("applied 5"), "{out}");
        assert_eq!(
            audit_trail(&tdb).await,
            [
                format!(
                    "audit|{GUILD_A}|555555555555555555|reapply_cooldown_hours|24|48|dashboard|2025-10-21 00:00:00"
                ),
                format!(
                    "audit|{GUILD_A}|token:3|reapply_cooldown_hours||900000000000000001|api|2025-10-21 00:01:01"
                ),
            ]
        );
        // New rows follow the converted ones (ids kept, and the used id 3 not handed out
        // again), with the bot's defaults.
        tdb.exec(
            "INSERT INTO config_audit_log (guild_id, user_id, field_key) VALUES ($1, '1', 'x')",
            vec![GUILD_A.into()],
        )
        .await;
        let trail = audit_trail(&tdb).await;
        assert_eq!(trail.len(), 3);
        assert!(trail[2].contains("|1|x|||dashboard|"), "{trail:?}");
        let ids: Vec<i64> = tdb
            .rows("SELECT id FROM config_audit_log ORDER BY id", vec![])
            .await
            .iter()
            .map(|r| r.try_get("", "id").unwrap())
            .collect();
        assert_eq!(ids, [1, 2, 4]);
        // Nothing is left behind, and on PostgreSQL the sequence keeps its name.
        let tables = schema_snapshot(&tdb).await.join("\n");
        assert!(!tables.contains("config_audit_log_api_v1"), "{tables}");
        assert!(!tables.contains("changed_at_s"), "{tables}");
        if let Backend::Postgres(_) = backend {
            let seq: String = tdb
                .rows(
                    "SELECT pg_get_serial_sequence('config_audit_log', 'id') AS s",
                    vec![],
                )
                .await[0]
                .try_get("", "s")
                .unwrap();
            assert!(seq.ends_with(".config_audit_log_id_seq"), "{seq}");
        }
        tdb.cleanup().await;
    }
}

/// A session table made before `admin_guild_ids` existed gets the column, empty (such a
/// session edits no configuration until its next role re-check), and keeps its rows.
#[tokio::test]
async fn an_older_session_table_gets_the_admin_column() {
    for backend in backends() {
        let tdb = TestDb::new(&backend).await;
        run_cli(&tdb.url, &["migrate", "up", "-n", "4"])
            .await
            .unwrap();
        tdb.exec(
            "ALTER TABLE dashboard_session DROP COLUMN admin_guild_ids",
            vec![],
        )
        .await;
        tdb.exec(
            "INSERT INTO dashboard_session (id_hash, user_id, username, display_name, avatar_url, guild_ids, \
               discord_access_token, created_at_s, last_seen_at_s, roles_checked_at_s) \
             VALUES ('h', '1', 'u', 'u', 'a', $1, 't', 0, 0, 0)",
            vec![GUILD_A.into()],
        )
        .await;
        let out = run_cli(&tdb.url, &["migrate", "up"]).await.unwrap();
        assert!(out.contains("applied 5"), "{out}");
        let rows = tdb
            .rows(
                "SELECT guild_ids, admin_guild_ids FROM dashboard_session",
                vec![],
            )
            .await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].try_get::<String>("", "guild_ids").unwrap(), GUILD_A);
        assert_eq!(
            rows[0].try_get::<String>("", "admin_guild_ids").unwrap(),
            ""
        );
        tdb.cleanup().await;
    }
}

/// Instances started at once after an upgrade (a bot and its dashboard, or two replicas on one
/// PostgreSQL) each run the pending migrations: one applies them, the others wait for it and
/// find nothing left to do, rather than failing on a table or column the first just made.
#[tokio::test]
async fn instances_migrating_at_once_apply_each_migration_once() {
    for backend in backends() {
        let tdb = TestDb::new(&backend).await;
        for sql in legacy_schema(&backend) {
            tdb.exec(&sql, vec![]).await;
        }
        // Each run opens a pool of its own, as another process would.
        let runs =
            futures_util::future::join_all((0..3).map(|_| run_cli(&tdb.url, &["migrate", "up"])))
                .await;
        let mut outputs: Vec<String> = runs
            .into_iter()
            .map(|r| r.unwrap_or_else(|e| panic!("{}: {e:#}", backend.name())))
            .collect();
        outputs.sort();
        assert_eq!(
            outputs,
            [
                "applied 0 migration(s)\n",
                "applied 0 migration(s)\n",
                "applied 9 migration(s)\n"
            ],
            "{}",
            backend.name()
        );
        let status = run_cli(&tdb.url, &["migrate", "status"]).await.unwrap();
        assert_eq!(status.matches("applied ").count(), 9, "{status}");
        tdb.cleanup().await;
    }
}
