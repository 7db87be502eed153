//! `pawtropolis-server`: configuration, database, Discord client and the HTTP server around the
//! `pawtropolis-api` library. The binary is a thin `main` over [`run`]; tests drive the same
//! functions.

#![warn(missing_docs)]

pub mod config;
pub mod dashboard;
pub mod demo;
pub mod request_log;

use std::{io::Write, sync::Arc, time::Duration};

use anyhow::Context as _;
use migration::cli::{MigrateCommand, ensure_sqlite_dir};
use pawtropolis_api::{
    Clock as _, PawtropolisApi, StreamAcceptor, SystemClock, auth::tokens,
    identity::DiscordRateLimits, register_api_routes,
};
use poem::{
    Endpoint, EndpointExt, Response, Route, Server,
    listener::{Acceptor, TcpAcceptor},
    middleware::{RequestId, ReuseId},
};
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::config::{Cli, Command, DemoDataArgs, ServeArgs, Settings, TokenCommand};

/// Where commands write what they report (stdout for the binary, a buffer in tests).
pub type Out<'a> = &'a mut (dyn Write + Send);

/// Runs the command line, writing its report to `out`.
pub async fn run(cli: Cli, out: Out<'_>) -> anyhow::Result<()> {
    let settings = cli.settings;
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Openapi => {
            write!(out, "{}", pawtropolis_api::openapi_yaml())?;
            Ok(())
        }
        Command::Migrate { command } => {
            let db = connect(&settings).await?;
            let command = command.unwrap_or(MigrateCommand::Up { steps: None });
            let result = migration::cli::run(&db, &command).await;
            db.close().await.ok();
            writeln!(out, "{}", result?)?;
            Ok(())
        }
        Command::Token { command } => token(&settings, command, out).await,
        Command::DemoData(args) => demo_data(&settings, &args, out).await,
        Command::RebuildMetrics => {
            let db = connect_and_migrate(&settings).await?;
            let postgres = db.get_database_backend() == sea_orm::DbBackend::Postgres;
            let result = pawtropolis_api::metrics::Derived::new().rebuild(&db).await;
            db.close().await.ok();
            result.context("rebuilding the metrics tables")?;
            writeln!(
                out,
                "{}",
                if postgres {
                    "nothing to rebuild: on PostgreSQL the metrics are read from action_log directly"
                } else {
                    "metrics tables rebuilt from action_log"
                }
            )?;
            Ok(())
        }
        Command::Serve(args) => serve(&settings, &args, out).await,
    }
}

/// Opens the database and applies pending migrations.
pub async fn connect_and_migrate(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    let db = connect(settings).await?;
    migration::cli::run(&db, &MigrateCommand::Up { steps: None })
        .await
        .context("applying migrations")?;
    // Statistics only speed queries up: a database too busy for them now still serves.
    if let Err(e) = pawtropolis_api::db::refresh_planner_statistics(&db).await {
        tracing::warn!(error = %e, "could not refresh the query planner's statistics");
    }
    Ok(db)
}

async fn connect(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    ensure_sqlite_dir(&settings.database_url).context("creating the database folder")?;
    pawtropolis_api::db::connect(&settings.database_url, settings.db_max_connections)
        .await
        .with_context(|| format!("connecting to {}", redact(&settings.database_url)))
}

/// The URL without its password (in the user info or a `password=` parameter), for logs.
fn redact(url: &str) -> String {
    let url = match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    };
    match url.split_once('?') {
        Some((base, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{base}?{}", query.join("&"))
        }
        None => url,
    }
}

fn now_s(settings: &Settings) -> i64 {
    settings.now.unwrap_or_else(|| SystemClock.now_s())
}

async fn token(settings: &Settings, command: TokenCommand, out: Out<'_>) -> anyhow::Result<()> {
    let db = connect_and_migrate(settings).await?;
    // One-shot commands close their pool at once rather than when the runtime ends.
    let result = token_with(&db, command, out).await;
    db.close().await.ok();
    result
}

async fn token_with(
    db: &DatabaseConnection,
    command: TokenCommand,
    out: Out<'_>,
) -> anyhow::Result<()> {
    let db = db.clone();
    match command {
        TokenCommand::Create { guilds, name } => {
            let mut ids = Vec::new();
            for g in &guilds {
                ids.push(pawtropolis_api::Snowflake::parse("--guild", g)?.into_string());
            }
            let (tok, secret) = tokens::create(&db, &name, &ids, SystemClock.now_s()).await?;
            writeln!(
                out,
                "created token {} ({}) for guild(s) {}",
                tok.id,
                tok.name,
                ids.join(", ")
            )?;
            writeln!(
                out,
                "the secret is shown only now; send it as `Authorization: Bearer <token>`:"
            )?;
            writeln!(out, "{secret}")?;
        }
        TokenCommand::Revoke { token } => {
            if tokens::revoke(&db, &token, SystemClock.now_s()).await? {
                writeln!(out, "revoked")?;
            } else {
                if token.parse::<i64>().is_ok() {
                    anyhow::bail!("no active token has id {token} (see `token list`)");
                }
                // Not echoed: it may be a live secret typed into the wrong place.
                anyhow::bail!("no active token matches the secret given");
            }
        }
        TokenCommand::List => {
            for t in tokens::list(&db).await? {
                let state = if t.revoked_at_s.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                writeln!(
                    out,
                    "{:>5}  {:8}  {:20}  guilds={}  created={}  last_used={}",
                    t.id,
                    state,
                    t.name,
                    t.guild_ids.join(","),
                    pawtropolis_api::timefmt::rfc3339_utc(t.created_at_s),
                    t.last_used_at_s
                        .map_or("never".to_owned(), pawtropolis_api::timefmt::rfc3339_utc),
                )?;
            }
        }
    }
    Ok(())
}

async fn demo_data(settings: &Settings, args: &DemoDataArgs, out: Out<'_>) -> anyhow::Result<()> {
    let guild = pawtropolis_api::Snowflake::parse("--guild", &args.guild)?;
    let db = connect_and_migrate(settings).await?;
    let started = std::time::Instant::now();
    let n = demo::insert_demo_rows(
        &db,
        args.rows,
        guild.as_str(),
        now_s(settings),
        args.days,
        args.seed,
    )
    .await;
    db.close().await.ok();
    let n = n?;
    writeln!(
        out,
        "inserted {n} rows for guild {guild} over {} days in {:.1} s",
        args.days,
        started.elapsed().as_secs_f64()
    )?;
    Ok(())
}

/// Builds the API over `db` with the server's settings.
pub async fn build_api(
    settings: &Settings,
    db: DatabaseConnection,
) -> anyhow::Result<PawtropolisApi> {
    build_api_with_clock(settings, db, None).await
}

/// Builds the API with a clock of the caller's (tests move time by hand).
pub async fn build_api_with_clock(
    settings: &Settings,
    db: DatabaseConnection,
    clock: Option<std::sync::Arc<dyn pawtropolis_api::Clock>>,
) -> anyhow::Result<PawtropolisApi> {
    let api_settings = settings.api_settings();
    let limits = Arc::new(DiscordRateLimits::new(api_settings.discord_timeout));
    let mut builder = PawtropolisApi::builder(db).settings(api_settings);
    match settings.discord_http(&limits) {
        Some(http) => builder = builder.discord_http(http).discord_rate_limits(limits),
        None => tracing::warn!("DISCORD_TOKEN is not set: Discord lookups are skipped"),
    }
    // `PAWTROPOLIS_NOW` moves only the metrics windows (ApiSettings::now); cache lifetimes and
    // token bookkeeping keep the real clock.
    if let Some(clock) = clock {
        builder = builder.clock(clock);
    }
    Ok(builder.build().await?)
}

/// The whole HTTP application: the API, its docs and health, with request ids and tracing;
/// with `dashboard`, the dashboard page too.
pub fn app(api: &PawtropolisApi, dashboard: bool) -> impl Endpoint<Output = Response> + 'static {
    let route = register_api_routes(Route::new(), api);
    let route = if dashboard {
        dashboard::mount(route)
    } else {
        route
    };
    route
        .with(request_log::RequestLog)
        .with(RequestId::default().reuse_id(ReuseId::Use))
        .before(request_log::drop_unfit_request_id)
        .map_to_response()
}

/// What the server listens with: live streams are answered straight from the socket (a few KB
/// per open stream instead of hyper's buffers), every other connection goes to poem's server.
/// `endpoint` is the application that server runs; writes that make no progress for the
/// settings' write timeout close their connection.
pub fn acceptor(
    settings: &Settings,
    tcp: TcpAcceptor,
    endpoint: Arc<impl Endpoint<Output = Response> + 'static>,
) -> StreamAcceptor {
    StreamAcceptor::with_write_timeout(
        tcp,
        endpoint,
        pawtropolis_api::STREAM_PATH,
        std::time::Duration::from_secs(settings.sse_write_timeout_secs),
    )
}

async fn serve(settings: &Settings, args: &ServeArgs, out: Out<'_>) -> anyhow::Result<()> {
    settings.check()?;
    let db = connect_and_migrate(settings).await?;
    let demo_token = if args.demo {
        Some(prepare_demo(settings, &db, out).await?)
    } else {
        None
    };
    let api = build_api(settings, db).await?;
    let tcp = pawtropolis_api::bind_tcp(&settings.bind)
        .await
        .with_context(|| format!("binding {}", settings.bind))?;
    let endpoint = Arc::new(app(&api, args.dashboard));
    let acceptor = acceptor(settings, tcp, endpoint.clone());
    let addr = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .map_or_else(|| settings.bind.clone(), |a| a.to_string());
    let base = format!("http://{addr}");
    writeln!(
        out,
        "pawtropolis-server {} listening on {base}",
        env!("CARGO_PKG_VERSION")
    )?;
    writeln!(out, "  API docs (Swagger UI): {base}/api/docs")?;
    writeln!(out, "  OpenAPI document:      {base}/api/openapi.json")?;
    writeln!(out, "  health:                {base}/health")?;
    if args.dashboard {
        match &demo_token {
            // The fragment signs the page in; browsers never send it to the server.
            Some(token) => writeln!(
                out,
                "  dashboard:             {base}/dashboard/#guild_id={}&token={token}",
                demo::DEMO_GUILD
            )?,
            None => writeln!(out, "  dashboard:             {base}/dashboard/")?,
        }
    }
    if let Some(token) = demo_token {
        writeln!(
            out,
            "demo guild {} with token:\n  {token}",
            demo::DEMO_GUILD
        )?;
        writeln!(out, "try:")?;
        writeln!(
            out,
            "  curl -H \"Authorization: Bearer {token}\" \"{base}/api/logs?guild_id={}&limit=5\"",
            demo::DEMO_GUILD
        )?;
    }
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(
            endpoint,
            {
                let api = api.clone();
                async move {
                    shutdown_signal().await;
                    // Live streams never end by themselves: end them so shutdown completes.
                    api.shutdown();
                }
            },
            Some(Duration::from_secs(10)),
        )
        .await
        .context("serving")?;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Name of the tokens `serve --demo` creates: one nobody gives a token of their own, since each
/// start revokes every active token of this name for the demo guild.
const DEMO_TOKEN_NAME: &str = "demo (serve --demo)";

/// Fills an empty database with demo data and returns a fresh token for the demo guild. The
/// demo tokens of earlier starts are revoked: only their hashes are stored, so none can be
/// shown again, and each start would otherwise leave one more live token behind.
async fn prepare_demo(
    settings: &Settings,
    db: &DatabaseConnection,
    out: Out<'_>,
) -> anyhow::Result<String> {
    let count = |sql: &str, values: Vec<sea_orm::Value>| {
        let stmt = sea_orm::Statement::from_sql_and_values(db.get_database_backend(), sql, values);
        async move {
            let row = db.query_one_raw(stmt).await?;
            anyhow::Ok(
                row.map(|r| r.try_get::<i64>("", "n"))
                    .transpose()?
                    .unwrap_or(0),
            )
        }
    };
    let existing = count("SELECT COUNT(*) AS n FROM action_log", vec![]).await?;
    let of_demo = count(
        "SELECT COUNT(*) AS n FROM action_log WHERE guild_id = $1",
        vec![demo::DEMO_GUILD.into()],
    )
    .await?;
    if existing > 0 && of_demo == 0 {
        writeln!(
            out,
            "demo: the database has {existing} actions, none of them the demo guild's; the \
             dashboard link shows an empty guild (demo data of an older version used another \
             guild id: delete the database file to start over)"
        )?;
    }
    if existing == 0 {
        let n =
            demo::insert_demo_rows(db, 20_000, demo::DEMO_GUILD, now_s(settings), 90, 7).await?;
        writeln!(
            out,
            "demo: inserted {n} actions over 90 days for guild {}",
            demo::DEMO_GUILD
        )?;
    } else {
        writeln!(
            out,
            "demo: the database already has {existing} actions; adding none"
        )?;
    }
    let now = SystemClock.now_s();
    let mut revoked = 0;
    for t in tokens::list(db).await? {
        if t.name == DEMO_TOKEN_NAME
            && t.guild_ids == [demo::DEMO_GUILD]
            && t.revoked_at_s.is_none()
        {
            revoked += usize::from(tokens::revoke(db, &t.id.to_string(), now).await?);
        }
    }
    if revoked > 0 {
        writeln!(
            out,
            "demo: revoked the demo token of an earlier start ({revoked} in all)"
        )?;
    }
    let (_, secret) =
        tokens::create(db, DEMO_TOKEN_NAME, &[demo::DEMO_GUILD.to_owned()], now).await?;
    Ok(secret)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested; finishing open requests");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser as _;

    /// Each `serve --demo` start hands out a new token and revokes the one before; other
    /// tokens, even of the demo guild, are left alone.
    #[tokio::test]
    async fn a_demo_start_revokes_the_demo_token_of_the_start_before() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/demo.db?mode=rwc", dir.path().display());
        let cli = Cli::try_parse_from(["pawtropolis-server", "--database-url", &url]).unwrap();
        let db = connect_and_migrate(&cli.settings).await.unwrap();
        let mine = tokens::create(&db, "mine", &[demo::DEMO_GUILD.to_owned()], 1)
            .await
            .unwrap()
            .1;
        let mut out = Vec::new();
        let first = prepare_demo(&cli.settings, &db, &mut out).await.unwrap();
        let second = prepare_demo(&cli.settings, &db, &mut out).await.unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("revoked the demo token of an earlier start (1 in all)"),
            "{out}"
        );
        let active = |secret: String| {
            let db = db.clone();
            async move { tokens::find_active(&db, &secret).await.unwrap().is_some() }
        };
        assert!(!active(first).await, "the first start's token");
        assert!(active(second).await, "the latest start's token");
        assert!(active(mine).await, "a token the demo did not make");
        db.close().await.ok();
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("sqlite://data/x.db"), "sqlite://data/x.db");
        assert_eq!(
            super::redact("postgres://h/db?user=u&password=secret&sslmode=require"),
            "postgres://h/db?user=u&password=***&sslmode=require"
        );
    }
}
