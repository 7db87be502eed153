//! `--front raw`: the floor that the kernel and the clients set on this machine, with no
//! server code at all.
//!
//! Plain blocking sockets: one thread accepts and answers each request head with the stream's
//! headers; at every tick the event frame (the size of a real one) is written to every socket
//! by one thread per core, each taking its share of the sockets, with nothing in between (no
//! runtime, no channel, no database). The same client process reads them. Whatever latency
//! this shows is the least any server could show here.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{Args, client::ClientReport, now_us};

/// Bytes of a real event frame of the benchmark (`id:`, `event:`, `data:` with every field of a
/// log item).
const FRAME_LEN: usize = 280;

const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n: stream open\nretry: 3000\n\n";

fn answer(mut sock: TcpStream) -> std::io::Result<TcpStream> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = sock.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&buf[..n]);
    }
    sock.set_nodelay(true)?;
    sock.write_all(HEAD)?;
    Ok(sock)
}

fn frame(id: usize) -> Vec<u8> {
    let mut f = format!(
        "id: {id}\nevent: action\ndata: {{\"t_us\":{},\"pad\":\"",
        now_us()
    );
    let pad = FRAME_LEN.saturating_sub(f.len() + 5);
    f.extend(std::iter::repeat_n('x', pad));
    f.push_str("\"}\n\n");
    f.into_bytes()
}

/// The clients' report and the CPU time the writers used, in microseconds.
pub fn run(args: &Args) -> anyhow::Result<(ClientReport, i64)> {
    // The server's backlog (std's 128 overflows while 10,000 connect).
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    socket.listen(pawtropolis_api::LISTEN_BACKLOG as i32)?;
    let listener: TcpListener = socket.into();
    let addr = listener.local_addr()?.to_string();
    let streams = Arc::new(Mutex::new(Vec::with_capacity(args.clients)));
    let accepted = streams.clone();
    std::thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            if let Ok(sock) = answer(sock) {
                accepted
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(sock);
            }
        }
    });
    let child = crate::client_process(&addr, "raw", args)
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let started = Instant::now();
    let open = || streams.lock().unwrap_or_else(|p| p.into_inner()).len();
    while open() < args.clients && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let opened = open();
    eprintln!(
        "{opened} streams open in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(2));
    let socks = std::mem::take(&mut *streams.lock().unwrap_or_else(|p| p.into_inner()));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let share = socks.len().div_ceil(cores).max(1);
    let period = crate::period(args);
    let cpu_before = crate::cpu_us();
    let mut next = Instant::now();
    for id in 1..=args.events {
        next += period;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let bytes = frame(id);
        std::thread::scope(|s| {
            for part in socks.chunks(share) {
                let bytes = &bytes;
                s.spawn(move || {
                    for mut sock in part {
                        let _ = sock.write_all(bytes);
                    }
                });
            }
        });
    }
    let out = child.wait_with_output()?;
    let cpu = crate::cpu_us() - cpu_before;
    Ok((serde_json::from_slice(&out.stdout)?, cpu))
}
