//! Settings of the server: flags, each with a `PAWTROPOLIS_*` (or `DISCORD_*`) environment
//! variable.

use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use migration::cli::MigrateCommand;
use pawtropolis_api::{ApiSettings, identity::DiscordRateLimits};
use serenity::http::{Http, HttpBuilder};

/// Default Discord origin; tests point `PAWTROPOLIS_DISCORD_API_BASE` at a fake.
pub const DISCORD_BASE: &str = "https://discord.com";

/// Command line of `pawtropolis-server`.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Dashboard API server of the Pawtropolis Tech moderation bot"
)]
pub struct Cli {
    /// Settings shared by every subcommand.
    #[command(flatten)]
    pub settings: Settings,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default).
    Serve(ServeArgs),
    /// Apply, roll back or list database migrations (default: up).
    Migrate {
        /// What to do.
        #[command(subcommand)]
        command: Option<MigrateCommand>,
    },
    /// Print the OpenAPI document (YAML) to stdout.
    Openapi,
    /// Manage API tokens.
    Token {
        /// What to do.
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Generate realistic demo rows in `action_log` (for trying things out and benchmarks).
    DemoData(DemoDataArgs),
    /// Recompute the metrics tables from every `action_log` row (SQLite), after rows were
    /// edited or deleted by hand; the charts count new rows on their own.
    RebuildMetrics,
}

/// `serve` options.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Fill an empty database with demo data, create a token for the demo guild and print a
    /// ready-to-paste curl line.
    #[arg(long)]
    pub demo: bool,
    /// Serve the dashboard page at `/dashboard/` (and send `/` there).
    #[arg(long)]
    pub dashboard: bool,
}

/// `token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token; the secret is printed once, as the last line.
    Create {
        /// Guild the token may read (repeat for several).
        #[arg(long = "guild", required = true)]
        guilds: Vec<String>,
        /// A label to recognise the token by.
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// Revoke a token by its id (from `token list`) or its secret.
    Revoke {
        /// Token id or secret.
        token: String,
    },
    /// List tokens (never their secrets).
    List,
}

/// `demo-data` options.
#[derive(Debug, Clone, Args)]
pub struct DemoDataArgs {
    /// Number of rows to generate (at most 5,000,000: they are built in memory first).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=5_000_000))]
    pub rows: u64,
    /// Guild the rows belong to.
    #[arg(long, default_value = crate::demo::DEMO_GUILD)]
    pub guild: String,
    /// Days of history, ending now (or at `PAWTROPOLIS_NOW`), 1 to 3,650.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=3_650))]
    pub days: u32,
    /// Random seed (the same seed gives the same rows).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// Upper bounds of durations in settings: past them a value is a mistake, and the arithmetic
/// of timestamps would overflow.
const DAY: u64 = 86_400;
const YEAR: u64 = 365 * DAY;
/// 9999-12-31T23:59:59Z, the last time the API formats.
const LAST_SECOND_OF_9999: i64 = 253_402_300_799;

/// Settings shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Database URL: `sqlite://path?mode=rwc` or `postgres://user@host/db`.
    #[arg(
        long,
        env = "PAWTROPOLIS_DATABASE_URL",
        // `--help` would print the password of a URL taken from the environment.
        hide_env_values = true,
        default_value = "sqlite://data/pawtropolis.db?mode=rwc",
        global = true
    )]
    pub database_url: String,
    /// Largest number of pooled database connections (a pool is never smaller than 2).
    #[arg(
        long,
        env = "PAWTROPOLIS_DB_MAX_CONNECTIONS",
        value_parser = clap::value_parser!(u32).range(1..=1_000),
        default_value_t = 8,
        global = true
    )]
    pub db_max_connections: u32,
    /// Address to listen on.
    #[arg(
        long,
        env = "PAWTROPOLIS_BIND",
        default_value = "127.0.0.1:3000",
        global = true
    )]
    pub bind: String,
    /// Discord bot token; without it Discord lookups are skipped (with a warning).
    #[arg(long, env = "DISCORD_TOKEN", hide_env_values = true, global = true)]
    pub discord_token: Option<String>,
    /// Origin of Discord's API (tests use a fake on 127.0.0.1).
    #[arg(long, env = "PAWTROPOLIS_DISCORD_API_BASE", default_value = DISCORD_BASE, global = true)]
    pub discord_api_base: String,
    /// Unix time metrics windows are computed against (to replay a historical database).
    #[arg(long, env = "PAWTROPOLIS_NOW", value_parser = clap::value_parser!(i64).range(0..=LAST_SECOND_OF_9999), global = true)]
    pub now: Option<i64>,
    /// Seconds metrics results are cached; 0 turns the cache off.
    #[arg(
        long,
        env = "PAWTROPOLIS_METRICS_CACHE_SECS",
        value_parser = clap::value_parser!(u64).range(0..=DAY),
        default_value_t = 300,
        global = true
    )]
    pub metrics_cache_secs: u64,
    /// Origin browsers use to reach the dashboard (e.g. `https://dash.example.org`).
    #[arg(long, env = "PAWTROPOLIS_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// Seconds a `user_cache` row is used without asking Discord.
    #[arg(
        long,
        env = "PAWTROPOLIS_USER_CACHE_TTL_SECS",
        value_parser = clap::value_parser!(u64).range(0..=YEAR),
        default_value_t = 1800,
        global = true
    )]
    pub user_cache_ttl_secs: u64,
    /// Seconds "Discord does not know this user" is remembered.
    #[arg(
        long,
        env = "PAWTROPOLIS_NEGATIVE_CACHE_TTL_SECS",
        value_parser = clap::value_parser!(u64).range(0..=YEAR),
        default_value_t = 300,
        global = true
    )]
    pub negative_cache_ttl_secs: u64,
    /// Timeout of one Discord lookup, milliseconds.
    #[arg(
        long,
        env = "PAWTROPOLIS_DISCORD_TIMEOUT_MS",
        value_parser = clap::value_parser!(u64).range(1..=600_000),
        default_value_t = 5000,
        global = true
    )]
    pub discord_timeout_ms: u64,
    /// Seconds to stay away from Discord after a 429 whose `retry_after` is unknown.
    #[arg(
        long,
        env = "PAWTROPOLIS_DISCORD_BACKOFF_SECS",
        value_parser = clap::value_parser!(u64).range(0..=DAY),
        default_value_t = 5,
        global = true
    )]
    pub discord_backoff_secs: u64,
    /// Requests per minute `GET /api/users/resolve` accepts (per server process; 0: unlimited).
    #[arg(
        long,
        env = "PAWTROPOLIS_RESOLVE_RATE_PER_MIN",
        default_value_t = 50,
        global = true
    )]
    pub resolve_rate_per_min: u32,
    /// Seconds between `: heartbeat` comments on live streams.
    #[arg(
        long,
        env = "PAWTROPOLIS_SSE_HEARTBEAT_SECS",
        value_parser = clap::value_parser!(u64).range(1..=DAY),
        default_value_t = 20,
        global = true
    )]
    pub sse_heartbeat_secs: u64,
    /// Milliseconds between looks for rows written by other processes.
    #[arg(
        long,
        env = "PAWTROPOLIS_SSE_POLL_MS",
        value_parser = clap::value_parser!(u64).range(10..=3_600_000),
        default_value_t = 200,
        global = true
    )]
    pub sse_poll_ms: u64,
    /// Most rows replayed to a reconnecting stream before it is told to resync.
    #[arg(
        long,
        env = "PAWTROPOLIS_SSE_REPLAY_MAX",
        default_value_t = 10_000,
        global = true
    )]
    pub sse_replay_max: u32,
    /// Live streams open at once on this server.
    #[arg(
        long,
        env = "PAWTROPOLIS_SSE_MAX_STREAMS",
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000),
        default_value_t = 10_000,
        global = true
    )]
    pub sse_max_streams: usize,
    /// Seconds a write to a live stream (or any connection) may make no progress, and its
    /// sent data stay unacknowledged, before the connection is closed: it frees the streams of
    /// clients gone without closing (a laptop asleep, a dropped NAT), which resume with
    /// `Last-Event-ID` when they come back.
    #[arg(
        long,
        env = "PAWTROPOLIS_SSE_WRITE_TIMEOUT_SECS",
        value_parser = clap::value_parser!(u64).range(5..=3_600),
        default_value_t = 60,
        global = true
    )]
    pub sse_write_timeout_secs: u64,
    /// Discord application client id (enables the dashboard login with the secret and
    /// `PAWTROPOLIS_PUBLIC_URL`).
    #[arg(long, env = "DISCORD_CLIENT_ID", global = true)]
    pub discord_client_id: Option<String>,
    /// Discord application client secret.
    #[arg(
        long,
        env = "DISCORD_CLIENT_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub discord_client_secret: Option<String>,
    /// Discord user ids that may read every guild (comma-separated).
    #[arg(
        long,
        env = "PAWTROPOLIS_OWNER_IDS",
        value_delimiter = ',',
        global = true
    )]
    pub owner_ids: Vec<String>,
    /// Seconds between re-checks of a session's guild roles on Discord.
    #[arg(
        long,
        env = "PAWTROPOLIS_ROLE_RECHECK_SECS",
        value_parser = clap::value_parser!(i64).range(1..=DAY as i64),
        default_value_t = 600,
        global = true
    )]
    pub role_recheck_secs: i64,
    /// Seconds a dashboard session lives without use.
    #[arg(
        long,
        env = "PAWTROPOLIS_SESSION_IDLE_SECS",
        value_parser = clap::value_parser!(i64).range(60..=YEAR as i64),
        default_value_t = 21_600,
        global = true
    )]
    pub session_idle_secs: i64,
    /// Seconds a dashboard session lives at most.
    #[arg(
        long,
        env = "PAWTROPOLIS_SESSION_MAX_SECS",
        value_parser = clap::value_parser!(i64).range(60..=YEAR as i64),
        default_value_t = 604_800,
        global = true
    )]
    pub session_max_secs: i64,
    /// Live streams open at once for one API token or Discord user.
    #[arg(
        long,
        env = "PAWTROPOLIS_SSE_MAX_STREAMS_PER_PRINCIPAL",
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000),
        default_value_t = 20,
        global = true
    )]
    pub sse_max_streams_per_principal: usize,
}

impl Settings {
    /// Refuses settings the server cannot run with, naming what to fix: a public URL that is
    /// not an origin, and a Discord login with only some of its three settings.
    pub fn check(&self) -> anyhow::Result<()> {
        if let Some(url) = self.public_url_written()
            && origin_of(url).is_none()
        {
            return Err(bad_origin(url));
        }
        let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        let login = [
            ("DISCORD_CLIENT_ID", set(&self.discord_client_id)),
            ("DISCORD_CLIENT_SECRET", set(&self.discord_client_secret)),
            ("PAWTROPOLIS_PUBLIC_URL", self.public_origin().is_some()),
        ];
        if login[..2].iter().any(|(_, on)| *on) && login.iter().any(|(_, on)| !on) {
            let missing: Vec<&str> = login
                .iter()
                .filter(|(_, on)| !on)
                .map(|(name, _)| *name)
                .collect();
            anyhow::bail!(
                "the Discord login needs DISCORD_CLIENT_ID, DISCORD_CLIENT_SECRET and PAWTROPOLIS_PUBLIC_URL; missing: {}",
                missing.join(", ")
            );
        }
        Ok(())
    }

    /// `PAWTROPOLIS_PUBLIC_URL` without surrounding whitespace (an env file with CRLF line
    /// ends leaves a `\r`) or a trailing `/`; `None` when unset or blank.
    fn public_url_written(&self) -> Option<&str> {
        self.public_url
            .as_deref()
            .map(|u| u.trim().trim_end_matches('/'))
            .filter(|u| !u.is_empty())
    }

    /// The public URL as an origin (see [`origin_of`]); as written when it is not one, which
    /// `check` refuses.
    fn public_origin(&self) -> Option<String> {
        let url = self.public_url_written()?;
        Some(origin_of(url).unwrap_or_else(|| url.to_owned()))
    }

    /// The library settings these flags describe.
    pub fn api_settings(&self) -> ApiSettings {
        ApiSettings {
            now: self.now,
            metrics_cache_secs: self.metrics_cache_secs,
            public_url: self.public_origin(),
            user_cache_ttl_secs: self.user_cache_ttl_secs,
            negative_cache_ttl_secs: self.negative_cache_ttl_secs,
            discord_timeout: std::time::Duration::from_millis(self.discord_timeout_ms),
            discord_backoff: std::time::Duration::from_secs(self.discord_backoff_secs),
            resolve_rate_per_min: self.resolve_rate_per_min,
            sse_heartbeat: std::time::Duration::from_secs(self.sse_heartbeat_secs),
            sse_poll: std::time::Duration::from_millis(self.sse_poll_ms),
            sse_replay_max: self.sse_replay_max,
            sse_max_streams: self.sse_max_streams,
            sse_max_streams_per_principal: self.sse_max_streams_per_principal,
            login: self.login_settings(),
            ..ApiSettings::default()
        }
    }

    /// The Discord login, when its client id, secret and public URL are all set.
    pub fn login_settings(&self) -> Option<pawtropolis_api::settings::LoginSettings> {
        let id = self
            .discord_client_id
            .as_deref()
            .filter(|s| !s.trim().is_empty())?;
        let secret = self
            .discord_client_secret
            .as_deref()
            .filter(|s| !s.trim().is_empty())?;
        let public = self.public_origin()?;
        Some(pawtropolis_api::settings::LoginSettings {
            client_id: id.trim().to_owned(),
            client_secret: secret.trim().to_owned(),
            public_url: public,
            discord_api_base: self.discord_api_base.trim_end_matches('/').to_owned(),
            owner_ids: self
                .owner_ids
                .iter()
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
            role_recheck_secs: self.role_recheck_secs,
            idle_secs: self.session_idle_secs,
            absolute_secs: self.session_max_secs,
        })
    }

    /// The serenity HTTP client, when a bot token is configured. Its rate limiter reports
    /// the waits it sits out to `limits`.
    pub fn discord_http(&self, limits: &Arc<DiscordRateLimits>) -> Option<Arc<Http>> {
        let token = self
            .discord_token
            .as_deref()
            .filter(|t| !t.trim().is_empty())?;
        let base = self.discord_api_base.trim_end_matches('/');
        let mut builder = HttpBuilder::new(token);
        if base != DISCORD_BASE {
            // serenity's rate limiter talks to discord.com directly; a proxied base (a fake
            // Discord in tests) only works with it off.
            builder = builder.proxy(base).ratelimiter_disabled(true);
        }
        let mut http = builder.build();
        if let Some(ratelimiter) = http.ratelimiter.as_mut() {
            ratelimiter.set_ratelimit_callback(limits.callback());
        }
        Some(Arc::new(http))
    }
}

/// `url` written as browsers send it in `Origin`, which CORS compares byte for byte: scheme
/// and host in lower case, no default port (`HTTPS://Dash.Example.org:443` becomes
/// `https://dash.example.org`). `None` unless `url` is an http(s) origin alone: no user info,
/// path or query.
fn origin_of(url: &str) -> Option<String> {
    let parsed: poem::http::Uri = url.parse().ok()?;
    let scheme = parsed.scheme_str()?.to_ascii_lowercase();
    let bare = matches!(scheme.as_str(), "http" | "https")
        && parsed
            .authority()
            .is_some_and(|a| !a.as_str().contains('@'))
        && matches!(parsed.path(), "" | "/")
        && parsed.query().is_none();
    let host = parsed.host().filter(|_| bare)?.to_ascii_lowercase();
    let port = match (scheme.as_str(), parsed.port_u16()) {
        ("https", Some(443)) | ("http", Some(80)) | (_, None) => String::new(),
        (_, Some(p)) => format!(":{p}"),
    };
    Some(format!("{scheme}://{host}{port}"))
}

fn bad_origin(url: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "PAWTROPOLIS_PUBLIC_URL must be the origin browsers use, such as https://dash.example.org (scheme and host, no path), got {url:?}"
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("pawtropolis-server").chain(args.iter().copied()))
    }

    #[test]
    fn settings_out_of_range_are_refused_with_their_name() {
        for (flag, value) in [
            ("--sse-heartbeat-secs", "0"),
            ("--sse-heartbeat-secs", "18446744073709551615"),
            ("--session-max-secs", "9223372036854775807"),
            ("--session-idle-secs", "0"),
            ("--now=-5", ""),
            ("--now", "999999999999999"),
            ("--sse-max-streams", "0"),
            ("--sse-write-timeout-secs", "4"),
            ("--sse-write-timeout-secs", "3601"),
            ("--sse-max-streams-per-principal", "0"),
            ("--discord-backoff-secs", "18446744073709551615"),
            ("--db-max-connections", "0"),
            ("demo-data", "--rows=100000000000000000"),
            ("demo-data", "--days=0"),
        ] {
            let args: Vec<&str> = [flag, value]
                .into_iter()
                .filter(|a| !a.is_empty())
                .collect();
            let e = parse(&args).expect_err(flag).to_string();
            let option = args.iter().rfind(|a| a.starts_with("--")).unwrap();
            let name = option.split('=').next().unwrap();
            assert!(e.contains(name), "{flag} {value}: {e}");
        }
        assert!(parse(&["--sse-heartbeat-secs", "1", "--now", "0"]).is_ok());
    }

    #[test]
    fn the_public_url_is_an_origin() {
        let cli = parse(&["--public-url", " https://dash.example.org/\r"]).unwrap();
        cli.settings.check().unwrap();
        assert_eq!(
            cli.settings.api_settings().public_url.as_deref(),
            Some("https://dash.example.org")
        );
        for (written, origin) in [
            ("HTTPS://Dash.Example.org", "https://dash.example.org"),
            ("https://dash.example.org:443/", "https://dash.example.org"),
            ("http://LOCALHOST:80", "http://localhost"),
            ("http://localhost:3000", "http://localhost:3000"),
            (
                "https://dash.example.org:8443",
                "https://dash.example.org:8443",
            ),
        ] {
            let cli = parse(&["--public-url", written]).unwrap();
            cli.settings.check().unwrap();
            assert_eq!(
                cli.settings.api_settings().public_url.as_deref(),
                Some(origin),
                "{written}"
            );
        }
        for bad in [
            "dash.example.org",
            "ftp://dash.example.org",
            "https://dash.example.org/app",
            "https://dash.example.org?x=1",
            "https://user@dash.example.org",
        ] {
            let cli = parse(&["--public-url", bad]).unwrap();
            let e = cli.settings.check().expect_err(bad).to_string();
            assert!(e.contains("PAWTROPOLIS_PUBLIC_URL"), "{e}");
        }
    }

    #[test]
    fn a_login_needs_all_three_settings() {
        let cli = parse(&["--discord-client-id", "123"]).unwrap();
        let e = cli.settings.check().unwrap_err().to_string();
        assert!(
            e.contains("missing: DISCORD_CLIENT_SECRET, PAWTROPOLIS_PUBLIC_URL"),
            "{e}"
        );
        let with_url = |url: &str| {
            parse(&[
                "--discord-client-id",
                "123",
                "--discord-client-secret",
                "s",
                "--public-url",
                url,
            ])
            .unwrap()
            .settings
        };
        let e = with_url("/").check().unwrap_err().to_string();
        assert!(e.contains("missing: PAWTROPOLIS_PUBLIC_URL"), "{e}");
        let settings = with_url("http://127.0.0.1:3000");
        settings.check().unwrap();
        assert!(settings.login_settings().is_some());
        // A public URL alone (the dashboard with token sign-in) is fine.
        parse(&["--public-url", "https://dash.example.org"])
            .unwrap()
            .settings
            .check()
            .unwrap();
    }
}
