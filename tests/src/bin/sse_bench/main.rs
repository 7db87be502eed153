//! Load test of the live stream (not a test): N concurrent stream clients in a child process,
//! K events written at a fixed rate, either through the server's `ActionRecorder` or by a
//! separate database connection (as another process writing the SQLite file would).
//!
//! ```sh
//! ulimit -n 65536
//! cargo run --release -p pawtropolis-tests --bin sse_bench -- --clients 10000 --events 200 --rate 20 --mode recorder
//! cargo run --release -p pawtropolis-tests --bin sse_bench -- --clients 10000 --events 200 --rate 20 --mode database
//! ```
//!
//! Reports connections held, events expected vs received per client (loss and duplicates),
//! insert-to-receipt latency p50/p99/max, and the server's memory per idle connection.

#![allow(clippy::unwrap_used)]

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use clap::Parser;
use pawtropolis_api::{
    ApiSettings, PawtropolisApi, STREAM_PATH, StreamAcceptor, feed::NewAction, register_api_routes,
};
use poem::EndpointExt as _;
use poem::listener::{Acceptor, Listener, TcpListener};
use tokio::{io::AsyncWriteExt, net::TcpStream};

const GUILD: &str = "896070888594759740";

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
    /// `recorder` (the host's ActionRecorder) or `database` (a separate connection).
    #[arg(long, default_value = "recorder")]
    mode: String,
    /// How the server takes connections: `direct` (as `pawtropolis-server` does: streams
    /// answered from the socket by `StreamAcceptor`) or `hyper` (poem's server for everything,
    /// as a host that only mounts the routes).
    #[arg(long, default_value = "direct")]
    front: String,
    /// Worker threads of the server (default: one per core, as `pawtropolis-server`).
    #[arg(long)]
    server_threads: Option<usize>,
    /// Threads of the client process.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Internal: run as the client process against this address.
    #[arg(long)]
    client_of: Option<String>,
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

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// Finds `needle` in `hay` from `from`.
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn number_at(hay: &[u8], at: usize) -> Option<(i64, usize)> {
    let digits = hay
        .get(at..)?
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let end = at + digits;
    std::str::from_utf8(&hay[at..end])
        .ok()?
        .parse()
        .ok()
        .map(|n| (n, end))
}

/// One client: opens the stream, then reads events until `expected` arrived or the deadline.
/// It scans raw bytes (no per-line allocation) so that 10,000 of them stay cheap beside the
/// server on the same two cores.
async fn client(
    addr: String,
    token: String,
    expected: usize,
    deadline: tokio::time::Instant,
) -> (usize, usize, Vec<i64>, bool) {
    use tokio::io::AsyncReadExt as _;
    let Ok(mut sock) = TcpStream::connect(&addr).await else {
        return (0, 0, Vec::new(), false);
    };
    let req = format!(
        "GET /api/logs/stream?guild_id={GUILD} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
    );
    if sock.write_all(req.as_bytes()).await.is_err() {
        return (0, 0, Vec::new(), false);
    }
    let (mut received, mut dups, mut last, mut lat) =
        (0usize, 0usize, 0i64, Vec::with_capacity(expected));
    let mut opened = false;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    while received < expected {
        let n = match tokio::time::timeout_at(deadline, sock.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => break,
        };
        let now = now_us();
        buf.extend_from_slice(&chunk[..n]);
        if !opened && find(&buf, b": stream open", 0).is_some() {
            opened = true;
        }
        // Consume whole events only.
        let mut consumed = 0;
        while let Some(end) = find(&buf, b"\n\n", consumed) {
            let block = &buf[consumed..end];
            if let Some(p) = find(block, b"id: ", 0)
                && let Some((id, _)) = number_at(block, p + 4)
            {
                if id <= last {
                    dups += 1;
                } else {
                    last = id;
                    received += 1;
                    if let Some(p) = find(block, b"\"t_us\":", 0)
                        && let Some((t, _)) = number_at(block, p + 7)
                    {
                        lat.push(now - t);
                    }
                }
            }
            consumed = end + 2;
        }
        buf.drain(..consumed);
    }
    (received, dups, lat, opened)
}

async fn run_clients(addr: String, token: String, n: usize, expected: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        tasks.push(tokio::spawn(client(
            addr.clone(),
            token.clone(),
            expected,
            deadline,
        )));
    }
    let (mut held, mut complete, mut lost, mut dups, mut lat) = (0, 0, 0usize, 0usize, Vec::new());
    for t in tasks {
        let (received, d, l, opened) = t.await.unwrap();
        held += usize::from(opened);
        complete += usize::from(received == expected);
        lost += expected.saturating_sub(received);
        dups += d;
        lat.extend(l);
    }
    lat.sort_unstable();
    println!(
        "{{\"held\":{held},\"complete\":{complete},\"lost\":{lost},\"duplicates\":{dups},\"samples\":{},\"p50_us\":{},\"p99_us\":{},\"max_us\":{}}}",
        lat.len(),
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        lat.last().copied().unwrap_or(0)
    );
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(addr) = args.client_of.clone() {
        // The clients stand for 10,000 browsers elsewhere; by default one thread, so that they
        // leave the server a core of its own.
        let rt = if args.client_threads > 1 {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(args.client_threads)
                .enable_all()
                .build()?
        } else {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
        };
        rt.block_on(run_clients(
            addr,
            args.token.unwrap_or_default(),
            args.clients,
            args.events,
        ));
        return Ok(());
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.server_threads {
        rt.worker_threads(n);
    }
    rt.enable_all().build()?.block_on(serve_and_write(args))
}

async fn serve_and_write(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}/bench.db?mode=rwc", dir.path().display());
    let db = pawtropolis_api::db::connect(&url, 8).await?;
    migration::cli::run(&db, &migration::cli::MigrateCommand::Up { steps: None }).await?;
    let (_, token) =
        pawtropolis_api::auth::tokens::create(&db, "bench", &[GUILD.to_owned()], 0).await?;
    let settings = ApiSettings {
        sse_max_streams: args.clients + 10,
        sse_max_streams_per_principal: args.clients + 10,
        ..ApiSettings::default()
    };
    let api = PawtropolisApi::builder(db.clone())
        .settings(settings)
        .build()
        .await?;
    let app = Arc::new(register_api_routes(poem::Route::new(), &api).map_to_response());
    let tcp = TcpListener::bind("127.0.0.1:0").into_acceptor().await?;
    let addr = tcp.local_addr()[0].as_socket_addr().unwrap().to_string();
    if args.front == "direct" {
        let acceptor = StreamAcceptor::new(tcp, app.clone(), STREAM_PATH);
        tokio::spawn(async move { poem::Server::new_with_acceptor(acceptor).run(app).await });
    } else {
        tokio::spawn(async move { poem::Server::new_with_acceptor(tcp).run(app).await });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = rss_kb();

    let exe = std::env::current_exe()?;
    let child = tokio::process::Command::new(exe)
        .args([
            "--client-of",
            &addr,
            "--token",
            &token,
            "--clients",
            &args.clients.to_string(),
            "--events",
            &args.events.to_string(),
            "--client-threads",
            &args.client_threads.to_string(),
        ])
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

    let writer = pawtropolis_api::db::connect(&url, 1).await?;
    let recorder = api.recorder();
    let period = Duration::from_micros(1_000_000 / args.rate.max(1));
    let mut tick = tokio::time::interval(period);
    for _ in 0..args.events {
        tick.tick().await;
        let meta = serde_json::json!({ "t_us": now_us() });
        if args.mode == "recorder" {
            recorder
                .record(NewAction {
                    guild_id: GUILD.into(),
                    action: "claim".into(),
                    actor_id: "700000000000000001".into(),
                    meta: Some(meta),
                    ..Default::default()
                })
                .await?;
        } else {
            use sea_orm::ConnectionTrait as _;
            writer
                .execute_raw(sea_orm::Statement::from_sql_and_values(
                    writer.get_database_backend(),
                    "INSERT INTO action_log (guild_id, actor_id, action, meta_json, created_at_s) VALUES ($1, $2, 'claim', $3, $4)",
                    vec![GUILD.into(), "700000000000000001".into(), meta.to_string().into(), (now_us() / 1_000_000).into()],
                ))
                .await?;
        }
    }
    let out = child.wait_with_output().await?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let per_conn_kb = (rss_idle.saturating_sub(rss_before)) as f64 / opened.max(1) as f64;
    println!(
        "front={} mode={} clients={} events={} rate={}/s held={} complete={} lost={} duplicates={} latency p50={:.1} ms p99={:.1} ms max={:.1} ms server_rss_per_idle_connection={:.2} KB",
        args.front,
        args.mode,
        args.clients,
        args.events,
        args.rate,
        report["held"],
        report["complete"],
        report["lost"],
        report["duplicates"],
        report["p50_us"].as_f64().unwrap_or(0.0) / 1000.0,
        report["p99_us"].as_f64().unwrap_or(0.0) / 1000.0,
        report["max_us"].as_f64().unwrap_or(0.0) / 1000.0,
        per_conn_kb
    );
    api.shutdown();
    Ok(())
}
