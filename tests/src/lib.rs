//! Harness of the end-to-end tests: a fresh database per test (SQLite file, or a fresh
//! PostgreSQL schema when `PAWTROPOLIS_TEST_POSTGRES_URL` is set), the real server on a random
//! port of 127.0.0.1, and helpers to talk to it.

#![allow(clippy::unwrap_used)]

pub mod fake_discord;
pub mod node;
pub mod sse;

use std::{
    io::Write as _,
    sync::atomic::{AtomicU64, Ordering},
};

use clap::{CommandFactory as _, FromArgMatches as _};
use pawtropolis_server::config::{Cli, Settings};
use poem::listener::Acceptor;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

/// Guild every test token can read.
pub const GUILD_A: &str = "111111111111111111";
/// Guild test tokens for A may not read.
pub const GUILD_B: &str = "222222222222222222";

/// A database the tests can run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary folder.
    Sqlite,
    /// A fresh schema on the PostgreSQL server at this URL.
    Postgres(String),
}

impl Backend {
    /// Short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}

/// SQLite always; PostgreSQL too when `PAWTROPOLIS_TEST_POSTGRES_URL` is set.
pub fn backends() -> Vec<Backend> {
    let mut v = vec![Backend::Sqlite];
    if let Ok(url) = std::env::var("PAWTROPOLIS_TEST_POSTGRES_URL")
        && !url.trim().is_empty()
    {
        v.push(Backend::Postgres(url));
    }
    v
}

/// PostgreSQL, for tests of what only it does. Without `PAWTROPOLIS_TEST_POSTGRES_URL` such a
/// test is skipped, with a line on stderr, except under CI (`CI` set), which must run it.
pub fn postgres() -> Option<Backend> {
    let pg = backends()
        .into_iter()
        .find(|b| matches!(b, Backend::Postgres(_)));
    if pg.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the PostgreSQL tests: set PAWTROPOLIS_TEST_POSTGRES_URL"
        );
        eprintln!("skipped: this test needs PAWTROPOLIS_TEST_POSTGRES_URL");
    }
    pg
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name no other test of any run uses (for a PostgreSQL schema).
pub fn unique_name() -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!(
        "pwt_{}_{}_{n}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    )
}

/// The `id` column of the row `sql` returns, run in `txn` (on PostgreSQL).
pub async fn id_in(
    txn: &sea_orm::DatabaseTransaction,
    sql: &str,
    values: Vec<sea_orm::Value>,
) -> i64 {
    txn.query_one_raw(Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        sql,
        values,
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get("", "id")
    .unwrap()
}

/// An empty database of its own (nothing migrated yet).
pub struct TestDb {
    /// URL that reaches it (for PostgreSQL, with the schema as search path).
    pub url: String,
    /// A connection to it.
    pub db: DatabaseConnection,
    /// Which backend.
    pub backend: Backend,
    schema: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// Creates a fresh database on `backend`.
    pub async fn new(backend: &Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/test.db?mode=rwc", dir.path().display());
                let db = pawtropolis_api::db::connect(&url, 2).await.unwrap();
                Self {
                    url,
                    db,
                    backend: backend.clone(),
                    schema: None,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres(base) => {
                let schema = unique_name();
                let admin = Database::connect(base.as_str()).await.unwrap();
                admin
                    .execute_unprepared(&format!("CREATE SCHEMA {schema}"))
                    .await
                    .unwrap();
                admin.close().await.ok();
                let sep = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
                let db = pawtropolis_api::db::connect(&url, 2).await.unwrap();
                Self {
                    url,
                    db,
                    backend: backend.clone(),
                    schema: Some((base.clone(), schema)),
                    _dir: None,
                }
            }
        }
    }

    /// Runs a statement (SQL with `$n` parameters).
    pub async fn exec(&self, sql: &str, values: Vec<sea_orm::Value>) {
        self.db
            .execute_raw(Statement::from_sql_and_values(
                self.db.get_database_backend(),
                sql,
                values,
            ))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Runs a query and returns its rows.
    pub async fn rows(&self, sql: &str, values: Vec<sea_orm::Value>) -> Vec<sea_orm::QueryResult> {
        self.db
            .query_all_raw(Statement::from_sql_and_values(
                self.db.get_database_backend(),
                sql,
                values,
            ))
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// A transaction on a connection of its own, as another process's.
    pub async fn transaction_elsewhere(&self) -> sea_orm::DatabaseTransaction {
        use sea_orm::TransactionTrait as _;
        let db = pawtropolis_api::db::connect(&self.url, 1).await.unwrap();
        db.begin().await.unwrap()
    }

    /// Inserts an `action_log` row and returns its id.
    #[allow(clippy::too_many_arguments)]
    pub async fn insert_action(
        &self,
        guild: &str,
        action: &str,
        actor: &str,
        subject: Option<&str>,
        app_id: Option<&str>,
        created_at_s: i64,
        meta_json: Option<&str>,
    ) -> i64 {
        let rows = self
            .rows(
                "INSERT INTO action_log (guild_id, app_id, app_code, actor_id, subject_id, action, reason, meta_json, created_at_s) \
                 VALUES ($1, $2, $3, $4, $5, $6, NULL, $7, $8) RETURNING id",
                vec![
                    guild.into(),
                    app_id.map(str::to_owned).into(),
                    app_id.map(|a| a.chars().take(6).collect::<String>()).into(),
                    actor.into(),
                    subject.map(str::to_owned).into(),
                    action.into(),
                    meta_json.map(str::to_owned).into(),
                    created_at_s.into(),
                ],
            )
            .await;
        rows[0].try_get("", "id").unwrap()
    }

    /// Drops the PostgreSQL schema (SQLite files go with their temporary folder).
    pub async fn cleanup(self) {
        self.db.close().await.ok();
        if let Some((base, schema)) = &self.schema
            && let Ok(admin) = Database::connect(base.as_str()).await
        {
            admin
                .execute_unprepared(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .await
                .ok();
            admin.close().await.ok();
        }
    }
}

/// A port of 127.0.0.1 that was free a moment ago (for a server whose public URL must be known
/// before it starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Parses server settings as the binary would, from `args` (flags) on top of defaults.
pub fn settings(database_url: &str, extra: &[&str]) -> Settings {
    // Small pools (3, and the live feed's own 2): tests run in parallel and PostgreSQL allows
    // 100 connections in all.
    let mut argv = vec![
        "pawtropolis-server",
        "--database-url",
        database_url,
        "--db-max-connections",
        "3",
    ];
    argv.extend_from_slice(extra);
    parse_cli(&argv).unwrap().settings
}

/// Parses a command line as the binary would, blind to the environment: a developer's
/// `DISCORD_TOKEN` (which the README asks for to run the bot example) or a `PAWTROPOLIS_*`
/// setting must not change what a test checks, nor send its requests to the real Discord.
pub fn parse_cli(argv: &[&str]) -> Result<Cli, clap::Error> {
    fn blind(command: clap::Command) -> clap::Command {
        command
            .mut_args(|arg| arg.env(None::<&'static str>))
            .mut_subcommands(blind)
    }
    let matches = blind(Cli::command()).try_get_matches_from(argv)?;
    Cli::from_arg_matches(&matches)
}

/// Runs a `pawtropolis-server` command line against `database_url` and returns its output.
pub async fn run_cli(database_url: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut argv = vec![
        "pawtropolis-server",
        "--database-url",
        database_url,
        "--db-max-connections",
        "2",
    ];
    argv.extend_from_slice(args);
    let cli = parse_cli(&argv)?;
    let mut out: Vec<u8> = Vec::new();
    pawtropolis_server::run(cli, &mut out).await?;
    out.flush()?;
    Ok(String::from_utf8(out)?)
}

/// The real server on a random port of 127.0.0.1 over a fresh, migrated database.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The database.
    pub tdb: TestDb,
    /// HTTP client.
    pub client: reqwest::Client,
    /// The API behind the server (its recorder, feed and stream gauge).
    pub api: pawtropolis_api::PawtropolisApi,
    server: tokio::task::JoinHandle<()>,
}

impl TestApp {
    /// Starts the server on `backend` with default settings.
    pub async fn spawn(backend: &Backend) -> Self {
        Self::spawn_with(backend, &[]).await
    }

    /// Starts the server on `backend` with extra server flags (`--now`, `--metrics-cache-secs` …).
    pub async fn spawn_with(backend: &Backend, flags: &[&str]) -> Self {
        let tdb = TestDb::new(backend).await;
        Self::spawn_on(tdb, flags).await
    }

    /// Starts the server on an existing database (migrating it as `serve` does).
    pub async fn spawn_on(tdb: TestDb, flags: &[&str]) -> Self {
        Self::spawn_full(tdb, flags, None, false).await
    }

    /// Starts the server as `serve --dashboard` does: the API and the dashboard page.
    pub async fn spawn_dashboard(backend: &Backend, flags: &[&str]) -> Self {
        let tdb = TestDb::new(backend).await;
        Self::spawn_full(tdb, flags, None, true).await
    }

    /// Starts the server on `backend`, its time read from `clock`.
    pub async fn spawn_with_clock(
        backend: &Backend,
        flags: &[&str],
        clock: pawtropolis_api::ManualClock,
    ) -> Self {
        let tdb = TestDb::new(backend).await;
        Self::spawn_full(tdb, flags, Some(std::sync::Arc::new(clock)), false).await
    }

    async fn spawn_full(
        tdb: TestDb,
        flags: &[&str],
        clock: Option<std::sync::Arc<dyn pawtropolis_api::Clock>>,
        dashboard: bool,
    ) -> Self {
        // Server-side errors show up in the failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("warn,sqlx=error")
            .try_init();
        let settings = settings(&tdb.url, flags);
        let db = pawtropolis_server::connect_and_migrate(&settings)
            .await
            .unwrap();
        let api = pawtropolis_server::build_api_with_clock(&settings, db, clock)
            .await
            .unwrap();
        // A random port, unless the test chose one (`--bind`, e.g. to match `--public-url`).
        let bind = if flags.contains(&"--bind") {
            settings.bind.clone()
        } else {
            "127.0.0.1:0".to_owned()
        };
        let acceptor = pawtropolis_api::bind_tcp(&bind).await.unwrap();
        let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
        // Served as the binary serves: live streams straight from the socket.
        let app = std::sync::Arc::new(pawtropolis_server::app(&api, dashboard));
        let acceptor = pawtropolis_server::acceptor(&settings, acceptor, app.clone());
        let handle = api.clone();
        let server = tokio::spawn(async move {
            poem::Server::new_with_acceptor(acceptor)
                .run(app)
                .await
                .ok();
        });
        Self {
            base: format!("http://{addr}"),
            tdb,
            client: reqwest::Client::new(),
            api: handle,
            server,
        }
    }

    /// Creates an API token for `guilds` through the CLI and returns its secret.
    pub async fn token(&self, guilds: &[&str]) -> String {
        let mut args = vec!["token", "create", "--name", "test"];
        for g in guilds {
            args.push("--guild");
            args.push(g);
        }
        let out = run_cli(&self.tdb.url, &args).await.unwrap();
        out.lines().last().unwrap().trim().to_owned()
    }

    /// GET `path` (with query) with a bearer token.
    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Checks HTTP revalidation of `path`: a 200 with `Cache-Control: {cache_control}` and an
    /// `ETag`, then a 304 for `If-None-Match` with that tag, carrying the same `ETag` and
    /// `Cache-Control`. Returns the tag.
    pub async fn assert_revalidates(&self, path: &str, token: &str, cache_control: &str) -> String {
        let resp = self.get(path, token).await;
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.headers()["cache-control"], cache_control, "{path}");
        let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 304, "{path}");
        assert_eq!(resp.headers()["etag"].to_str().unwrap(), etag, "{path}");
        assert_eq!(resp.headers()["cache-control"], cache_control, "{path}");
        etag
    }

    /// GET `path` with a token and return status and JSON body.
    pub async fn get_json(&self, path: &str, token: &str) -> (u16, serde_json::Value) {
        let resp = self.get(path, token).await;
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    /// Stops the server and drops the database.
    pub async fn finish(self) {
        self.api.shutdown();
        self.server.abort();
        self.tdb.cleanup().await;
    }
}

/// A valid value for a required parameter, from its schema.
fn sample(param: &serde_json::Value, guild: &str) -> String {
    let name = param["name"].as_str().unwrap();
    let schema = &param["schema"];
    if name == "guild_id" {
        return guild.to_owned();
    }
    if let Some(first) = schema["enum"].as_array().and_then(|e| e.first()) {
        return first.as_str().unwrap().to_owned();
    }
    if schema["pattern"]
        .as_str()
        .is_some_and(|p| p.contains("17,20"))
        || name.ends_with("id")
        || name == "ids"
    {
        return "333333333333333333".to_owned();
    }
    match schema["type"].as_str() {
        Some("integer") => "1".to_owned(),
        _ => "x".to_owned(),
    }
}

/// One operation of the served OpenAPI document, with its required query parameters filled.
pub struct Op {
    /// HTTP method.
    pub method: reqwest::Method,
    /// Full URL.
    pub url: String,
}

/// Every operation of the served OpenAPI document, aimed at `guild`.
pub async fn operations(app: &TestApp, guild: &str) -> Vec<Op> {
    let doc: serde_json::Value = app
        .client
        .get(format!("{}/api/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let mut query = Vec::new();
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "query" && p["required"] == true {
                    query.push(format!(
                        "{}={}",
                        p["name"].as_str().unwrap(),
                        sample(p, guild)
                    ));
                }
            }
            ops.push(Op {
                method: method.to_uppercase().parse().unwrap(),
                url: format!("{}{path}?{}", app.base, query.join("&")),
            });
        }
    }
    assert!(
        ops.len() >= 4,
        "the document lists too few operations: {}",
        ops.len()
    );
    ops
}

/// Sends `op` with the given headers (a JSON body for PUT/POST) and returns the status; a live
/// stream's body is not read.
pub async fn send_op(app: &TestApp, op: &Op, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let mut req = app.client.request(op.method.clone(), &op.url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if op.method == reqwest::Method::PUT || op.method == reqwest::Method::POST {
        req = req.json(&serde_json::json!({"min_join_age_hours": 1}));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    if resp
        .headers()
        .get("content-type")
        .is_some_and(|c| c == "text/event-stream")
    {
        return (status, serde_json::Value::Null);
    }
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}
