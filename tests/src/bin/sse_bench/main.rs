//! Load test of the live stream (not a test): N concurrent stream clients in a child process,
//! K events written at a fixed rate, either through the server's `ActionRecorder` or by
//! another process inserting into the same SQLite file (as the bot does).
//!
//! ```sh
//! cargo build --release -p pawtropolis-tests --bin sse_bench
//! target/release/sse_bench --clients 10000 --events 200 --rate 20 --mode recorder
//! target/release/sse_bench --clients 10000 --events 200 --rate 20 --mode database
//! target/release/sse_bench --clients 10000 --events 200 --rate 20 --front raw
//! target/release/sse_bench --clients 10000 --events 200 --rate 20 --mode database --postgres postgres://postgres@127.0.0.1:5432/test
//! # bursts of 500 rows in one statement: every stream falls behind its channel and catches up
//! target/release/sse_bench --clients 10000 --events 2000 --rate 200 --mode database --burst 500
//! # soak: 10 minutes, a stream dropped and resumed with Last-Event-ID every 50 ms
//! target/release/sse_bench --clients 1000 --events 30000 --rate 50 --reconnect-every-ms 50
//! # ids committed out of order: two writers on PostgreSQL, each transaction held up to 20 ms
//! target/release/sse_bench --clients 100 --events 20000 --rate 100 --reconnect-every-ms 50 \
//!     --mode database --writers 2 --hold-ms 20 --postgres postgres://postgres@127.0.0.1:5432/test
//! ```
//!
//! Reports connections held, events expected vs received per client (loss and duplicates,
//! across reconnects), insert-to-receipt latency p50/p99/max (on arrival at the client's
//! socket and when the client read it, see `client.rs`), the server's memory per idle
//! connection and its resident memory over the run, and the CPU time of server and client per
//! event delivered to one stream. Each process
//! needs a file descriptor per stream: raise `ulimit -n` above the number of clients.

#![allow(clippy::unwrap_used)]

mod client;
mod raw;

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use clap::Parser;
use pawtropolis_api::{
    ApiSettings, PawtropolisApi, STREAM_PATH, StreamAcceptor, feed::NewAction, register_api_routes,
};
use poem::EndpointExt as _;
use poem::listener::Acceptor;

/// Guild `g` of the benchmark.
fn guild(g: usize) -> String {
    (896_070_888_594_759_740_u64 + g as u64).to_string()
}

/// Events of guild `g` when `events` go round-robin to `guilds` guilds.
fn events_of(g: usize, events: usize, guilds: usize) -> usize {
    (events + guilds - 1 - g) / guilds
}

#[derive(Parser, Debug)]
struct Args {
    /// Concurrent stream clients.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Events to write.
    #[arg(long, default_value_t = 100)]
    events: usize,
    /// Events per second.
    #[arg(long, default_value_t = 20)]
    rate: u64,
    /// `recorder` (the host's ActionRecorder) or `database` (rows inserted by another process,
    /// which does not tell the server).
    #[arg(long, default_value = "recorder")]
    mode: String,
    /// How the server takes connections: `direct` (as `pawtropolis-server` does: streams
    /// answered from the socket by `StreamAcceptor`), `hyper` (poem's server for everything,
    /// as a host that only mounts the routes) or `raw` (no server code at all: the event
    /// written to every socket by one thread per core; the floor this machine sets).
    #[arg(long, default_value = "direct")]
    front: String,
    /// Guilds: stream `i` follows guild `i % guilds`, event `k` belongs to guild `k % guilds`
    /// (not with `--front raw`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    guilds: u16,
    /// Every this many milliseconds, one stream that still waits for events is closed and
    /// opened again with `Last-Event-ID` (0: never). Loss and duplicates are counted across
    /// the reconnects, as a browser's EventSource would see them.
    #[arg(long, default_value_t = 0)]
    reconnect_every_ms: u64,
    /// Worker threads of the server (default: one per core, as `pawtropolis-server`).
    #[arg(long)]
    server_threads: Option<usize>,
    /// Internal: run as the client process against this address.
    #[arg(long)]
    client_of: Option<String>,
    /// Run on this PostgreSQL database (in a schema of its own, dropped at the end) instead of
    /// a SQLite file. `--mode database` then stands for another server instance: its writer
    /// sends `NOTIFY` after each row, as the recorder does.
    #[arg(long)]
    postgres: Option<String>,
    /// Writer processes of `--mode database` on PostgreSQL, inserting at once: their ids
    /// commit out of order, which the feed must still deliver exactly once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    writers: u16,
    /// `--mode database` on PostgreSQL: each writer keeps its transaction open a random 0 to this many
    /// milliseconds after its insert (as a bot doing more work in it would), so that a row
    /// with a higher id often commits before one with a lower id.
    #[arg(long, default_value_t = 0)]
    hold_ms: u64,
    /// `--mode database`: rows inserted per statement, all with the same insert time, one
    /// statement every `burst / rate` seconds (a bulk action of the bot). More than a guild
    /// channel holds (128) makes every stream of the guild fall behind at once and catch up.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=5000))]
    burst: u16,
    /// Seconds between the streams' heartbeats (each also re-checks the stream's token), as
    /// `PAWTROPOLIS_SSE_HEARTBEAT_SECS`.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    heartbeat_secs: u64,
    /// Internal: run as the writer process of `--mode database`, on this database URL.
    #[arg(long)]
    write_to: Option<String>,
    /// Internal: which of the `--writers` this writer process is; it writes events `k` with
    /// `k % writers == writer`.
    #[arg(long, default_value_t = 0)]
    writer: u16,
    /// Internal: token for the client process.
    #[arg(long)]
    token: Option<String>,
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// CPU time (user and system, all threads) this process has used, in microseconds.
fn cpu_us() -> i64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let Ok(usage) = getrusage(UsageWho::RUSAGE_SELF) else {
        return 0;
    };
    let us = |t: nix::sys::time::TimeVal| t.tv_sec() * 1_000_000 + t.tv_usec();
    us(usage.user_time()) + us(usage.system_time())
}

/// CPU microseconds per event delivered to one stream.
fn per_delivery(cpu_us: i64, report: &client::ClientReport) -> f64 {
    cpu_us as f64 / report.samples.max(1) as f64
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")
                .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

fn period(args: &Args) -> Duration {
    Duration::from_micros(1_000_000 / args.rate.max(1))
}

/// A writer process: inserts its share of the `events` rows into `action_log` (event `k`
/// with `k % writers == writer`, so that all of them together write the events at `rate` a
/// second) over a connection of its own, without telling the server.
async fn write_rows(url: &str, args: &Args) -> anyhow::Result<()> {
    use rand::Rng as _;
    use sea_orm::{ConnectionTrait as _, TransactionTrait as _};
    let db = pawtropolis_api::db::connect(url, 1).await?;
    let writers = usize::from(args.writers);
    let burst = usize::from(args.burst);
    let mut tick =
        tokio::time::interval(period(args) * u32::from(args.writers) * u32::from(args.burst));
    for first in (usize::from(args.writer) * burst..args.events).step_by(writers * burst) {
        tick.tick().await;
        let now = now_us();
        let meta = serde_json::json!({ "t_us": now }).to_string();
        let mut sql = String::from(
            "INSERT INTO action_log (guild_id, actor_id, action, meta_json, created_at_s) VALUES ",
        );
        let mut values = Vec::new();
        for k in first..(first + burst).min(args.events) {
            let n = values.len();
            if n > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, 'claim', ${}, ${})",
                n + 1,
                n + 2,
                n + 3,
                n + 4
            ));
            values.extend([
                guild(k % usize::from(args.guilds)).into(),
                "700000000000000001".into(),
                meta.clone().into(),
                (now / 1_000_000).into(),
            ]);
        }
        let insert =
            sea_orm::Statement::from_sql_and_values(db.get_database_backend(), sql, values);
        if args.hold_ms > 0 {
            let txn = db.begin().await?;
            txn.execute_raw(insert).await?;
            let hold = rand::rng().random_range(0..=args.hold_ms);
            tokio::time::sleep(Duration::from_millis(hold)).await;
            txn.commit().await?;
        } else {
            db.execute_raw(insert).await?;
        }
        if db.get_database_backend() == sea_orm::DbBackend::Postgres {
            db.execute_unprepared(&format!("NOTIFY {}", pawtropolis_api::feed::NOTIFY_CHANNEL))
                .await?;
        }
    }
    Ok(())
}

/// The client process for `args`, against `addr`.
fn client_process(addr: &str, token: &str, args: &Args) -> std::process::Command {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command.args([
        "--client-of",
        addr,
        "--token",
        token,
        "--clients",
        &args.clients.to_string(),
        "--events",
        &args.events.to_string(),
        "--guilds",
        &args.guilds.to_string(),
        "--rate",
        &args.rate.to_string(),
        "--reconnect-every-ms",
        &args.reconnect_every_ms.to_string(),
    ]);
    command
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(addr) = args.client_of.clone() {
        let report = client::run(&client::Plan {
            addr: &addr,
            token: args.token.as_deref().unwrap_or_default(),
            n: args.clients,
            events: args.events,
            guilds: usize::from(args.guilds),
            rate: args.rate,
            reconnect_every: (args.reconnect_every_ms > 0)
                .then(|| Duration::from_millis(args.reconnect_every_ms)),
        })?;
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    if let Some(url) = args.write_to.clone() {
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(write_rows(&url, &args));
    }
    anyhow::ensure!(
        (args.writers == 1 && args.hold_ms == 0) || args.postgres.is_some(),
        "--writers and --hold-ms are for PostgreSQL: SQLite takes one writer at a time, so its ids commit in order"
    );
    anyhow::ensure!(
        args.burst == 1 || (args.mode == "database" && args.writers == 1),
        "--burst is for --mode database with one writer"
    );
    anyhow::ensure!(
        args.front != "raw" || args.guilds == 1,
        "--front raw sends every event to every stream: one guild only"
    );
    let (report, memory, server_cpu) = if args.front == "raw" {
        let (report, cpu) = raw::run(&args)?;
        (report, None, cpu)
    } else {
        let mut rt = tokio::runtime::Builder::new_multi_thread();
        if let Some(n) = args.server_threads {
            rt.worker_threads(n);
        }
        let (report, memory, cpu) = rt.enable_all().build()?.block_on(serve_and_write(&args))?;
        (report, Some(memory), cpu)
    };
    let ms = |us: i64| us as f64 / 1000.0;
    println!(
        "db={} front={} mode={} guilds={} clients={} events={} rate={}/s held={} complete={} lost={} duplicates={} reconnects={} \
         | arrival p50={:.1} ms p99={:.1} ms max={:.1} ms \
         | read p50={:.1} ms p99={:.1} ms max={:.1} ms \
         | first client per event p50={:.1} ms p99={:.1} ms \
         | server memory per idle stream={} \
         | CPU per event and stream: server {:.2} us, client {:.2} us",
        if args.postgres.is_some() {
            "postgres"
        } else {
            "sqlite"
        },
        args.front,
        if args.front == "raw" { "-" } else { &args.mode },
        args.guilds,
        args.clients,
        args.events,
        args.rate,
        report.held,
        report.complete,
        report.lost,
        report.duplicates,
        report.reconnects,
        ms(report.arrival_us.p50),
        ms(report.arrival_us.p99),
        ms(report.arrival_us.max),
        ms(report.read_us.p50),
        ms(report.read_us.p99),
        ms(report.read_us.max),
        ms(report.first_arrival_us.p50),
        ms(report.first_arrival_us.p99),
        memory
            .as_ref()
            .map_or_else(|| "-".to_owned(), Memory::describe),
        per_delivery(server_cpu, &report),
        per_delivery(report.cpu_us, &report),
    );
    Ok(())
}

/// The server's resident memory.
struct Memory {
    /// Growth from before the streams opened to when they were all open and idle, per stream.
    per_idle_stream_kb: f64,
    /// With every stream open and idle.
    idle_kb: u64,
    /// Taken every second while the events were written, ending with one when the last had
    /// been written.
    during_kb: Vec<u64>,
}

impl Memory {
    fn describe(&self) -> String {
        let mb = |kb: u64| format!("{:.1}", kb as f64 / 1024.0);
        // A soak shows whether memory stays flat: the samples at each quarter of the run.
        let quarters: Vec<String> = (1..=4)
            .filter_map(|q| {
                let at = (self.during_kb.len() * q / 4).checked_sub(1)?;
                self.during_kb.get(at).map(|kb| mb(*kb))
            })
            .collect();
        format!(
            "{:.2} KB (RSS idle {} MB; while the events were written, highest {} MB, at each quarter {} MB)",
            self.per_idle_stream_kb,
            mb(self.idle_kb),
            mb(self.during_kb.iter().copied().max().unwrap_or(self.idle_kb)),
            quarters.join(" / "),
        )
    }
}

/// Serves the API, opens the streams and writes the events; returns the clients' report, the
/// server's resident memory, and the CPU time the server used from the first event until the
/// clients had them all, in microseconds.
async fn serve_and_write(args: &Args) -> anyhow::Result<(client::ClientReport, Memory, i64)> {
    let dir = tempfile::tempdir()?;
    let schema = format!("sse_bench_{}", std::process::id());
    let url = match &args.postgres {
        Some(base) => {
            use sea_orm::ConnectionTrait as _;
            let admin = sea_orm::Database::connect(base.as_str()).await?;
            admin
                .execute_unprepared(&format!("CREATE SCHEMA {schema}"))
                .await?;
            let sep = if base.contains('?') { '&' } else { '?' };
            format!("{base}{sep}options=-c%20search_path%3D{schema}")
        }
        None => format!("sqlite://{}/bench.db?mode=rwc", dir.path().display()),
    };
    let db = pawtropolis_api::db::connect(&url, 8).await?;
    let all_guilds: Vec<String> = (0..usize::from(args.guilds)).map(guild).collect();
    migration::cli::run(&db, &migration::cli::MigrateCommand::Up { steps: None }).await?;
    let (_, token) = pawtropolis_api::auth::tokens::create(&db, "bench", &all_guilds, 0).await?;
    let settings = ApiSettings {
        sse_max_streams: args.clients + 10,
        sse_max_streams_per_principal: args.clients + 10,
        sse_heartbeat: Duration::from_secs(args.heartbeat_secs),
        ..ApiSettings::default()
    };
    let api = PawtropolisApi::builder(db.clone())
        .settings(settings)
        .build()
        .await?;
    let app = Arc::new(register_api_routes(poem::Route::new(), &api).map_to_response());
    let tcp = pawtropolis_api::bind_tcp("127.0.0.1:0").await?;
    let addr = tcp.local_addr()[0].as_socket_addr().unwrap().to_string();
    if args.front == "direct" {
        let acceptor = StreamAcceptor::new(tcp, app.clone(), STREAM_PATH);
        tokio::spawn(async move { poem::Server::new_with_acceptor(acceptor).run(app).await });
    } else {
        tokio::spawn(async move { poem::Server::new_with_acceptor(tcp).run(app).await });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = rss_kb();

    let child = tokio::process::Command::from(client_process(&addr, &token, args))
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    // Wait for every stream to be open and idle.
    let started = std::time::Instant::now();
    while api.open_streams() < args.clients && started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let opened = api.open_streams();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = rss_kb();
    eprintln!(
        "{opened} streams open in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let cpu_before = cpu_us();
    // A soak (`--events` in the tens of thousands) shows whether memory stays flat.
    let during = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sampler = tokio::spawn({
        let during = during.clone();
        async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.tick().await;
            loop {
                every.tick().await;
                during.lock().unwrap().push(rss_kb());
            }
        }
    });
    if args.mode == "recorder" {
        let recorder = api.recorder();
        let mut tick = tokio::time::interval(period(args));
        for k in 0..args.events {
            tick.tick().await;
            recorder
                .record(NewAction {
                    guild_id: guild(k % usize::from(args.guilds)),
                    action: "claim".into(),
                    actor_id: "700000000000000001".into(),
                    meta: Some(serde_json::json!({ "t_us": now_us() })),
                    ..Default::default()
                })
                .await?;
        }
    } else {
        // Other processes, as the bot writing the same SQLite file is.
        let mut writers = Vec::new();
        for w in 0..args.writers {
            let mut writer = std::process::Command::new(std::env::current_exe()?);
            writer.args([
                "--write-to",
                &url,
                "--events",
                &args.events.to_string(),
                "--rate",
                &args.rate.to_string(),
                "--guilds",
                &args.guilds.to_string(),
                "--writers",
                &args.writers.to_string(),
                "--writer",
                &w.to_string(),
                "--hold-ms",
                &args.hold_ms.to_string(),
                "--burst",
                &args.burst.to_string(),
            ]);
            writers.push(tokio::process::Command::from(writer).spawn()?);
        }
        for mut writer in writers {
            let status = writer.wait().await?;
            anyhow::ensure!(status.success(), "a writer process failed: {status}");
        }
    }
    sampler.abort();
    let mut during_kb = std::mem::take(&mut *during.lock().unwrap());
    during_kb.push(rss_kb());
    let out = child.wait_with_output().await?;
    let cpu = cpu_us() - cpu_before;
    let report: client::ClientReport = serde_json::from_slice(&out.stdout)?;
    api.shutdown();
    if let Some(base) = &args.postgres {
        use sea_orm::ConnectionTrait as _;
        let admin = sea_orm::Database::connect(base.as_str()).await?;
        admin
            .execute_unprepared(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .await?;
    }
    let memory = Memory {
        per_idle_stream_kb: (rss_idle.saturating_sub(rss_before)) as f64 / opened.max(1) as f64,
        idle_kb: rss_idle,
        during_kb,
    };
    Ok((report, memory, cpu))
}
