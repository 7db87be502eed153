//! The client process: N streams read by one thread from one epoll set.
//!
//! The clients stand for 10,000 browsers on other machines, yet here they share the server's
//! two cores, so every microsecond they spend is taken from the server. They are written to
//! cost as little as a client can: edge-triggered readiness (mio), `recvmsg` on a readable
//! socket until a read comes back short (so one call per event, not two), events found with `memchr` in the bytes as they came, and no
//! timer per read.
//!
//! Two latencies are taken for every event, both against the insert time the event carries:
//! - **arrival**: the kernel's receive timestamp (`SO_TIMESTAMPNS`) of the segment, stamped when
//!   it reached the client's network stack, before this process got round to reading it;
//! - **read**: the clock when this process read it, which also counts the time the event
//!   waited for this one thread to come to its socket among 10,000.

use std::{
    io::{IoSliceMut, Write as _},
    net::SocketAddr,
    os::fd::AsRawFd as _,
    time::{Duration, Instant},
};

use memchr::memmem;
use mio::{Events, Interest, Poll, Token, net::TcpStream};
use nix::{
    errno::Errno,
    sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt},
};

/// What the client process prints (one JSON line) for the server process to report.
#[derive(serde::Serialize, serde::Deserialize, Default)]
pub struct ClientReport {
    pub held: usize,
    pub complete: usize,
    pub lost: usize,
    pub duplicates: usize,
    pub samples: usize,
    pub arrival_us: Percentiles,
    pub read_us: Percentiles,
    /// Per event, the arrival at the first client to get it.
    pub first_arrival_us: Percentiles,
    /// CPU time this process used from the first event to the last, in microseconds.
    pub cpu_us: i64,
    /// Streams closed and opened again with `Last-Event-ID` (`--reconnect-every-ms`).
    pub reconnects: usize,
}

/// p50, p99 and max of a set of latencies, in microseconds.
#[derive(serde::Serialize, serde::Deserialize, Default)]
pub struct Percentiles {
    pub p50: i64,
    pub p99: i64,
    pub max: i64,
}

impl Percentiles {
    fn of(mut samples: Vec<i64>) -> Self {
        samples.sort_unstable();
        let at = |p: f64| {
            if samples.is_empty() {
                return 0;
            }
            let rank = ((p / 100.0) * samples.len() as f64).ceil().max(1.0) as usize;
            samples[rank.min(samples.len()) - 1]
        };
        Self {
            p50: at(50.0),
            p99: at(99.0),
            max: samples.last().copied().unwrap_or(0),
        }
    }
}

struct Conn {
    sock: TcpStream,
    /// Events of its guild to come.
    expected: usize,
    /// Bytes of an event not yet complete.
    partial: Vec<u8>,
    received: usize,
    duplicates: usize,
    /// What EventSource keeps as `lastEventId` and sends as `Last-Event-ID` when it
    /// reconnects: the id of the last event, or of the first opening block before any event.
    last_id: Option<i64>,
    opened: bool,
    /// The current connection's opening block is still to come.
    fresh: bool,
    closed: bool,
    /// When the current connection was opened, and events it brought since (to say where a
    /// gap came).
    connected_at: Instant,
    since_connect: usize,
}

struct Finders {
    end: memmem::Finder<'static>,
    id: memmem::Finder<'static>,
    t_us: memmem::Finder<'static>,
    open: memmem::Finder<'static>,
}

fn number_at(hay: &[u8], at: usize) -> Option<i64> {
    let digits = hay.get(at..)?;
    let len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&digits[..len]).ok()?.parse().ok()
}

/// Latencies of the events read so far, both ways.
#[derive(Default)]
struct Samples {
    arrival: Vec<i64>,
    read: Vec<i64>,
    first: std::collections::HashMap<i64, i64>,
    /// Every id is expected in turn (one guild), so a jump is a gap.
    consecutive: bool,
    /// Gaps printed so far (the first 20 are).
    gaps: usize,
}

impl Conn {
    /// Takes the whole events in `bytes` (the partial one is kept for the next read).
    fn take(&mut self, f: &Finders, bytes: &[u8], arrived_us: i64, read_us: i64, s: &mut Samples) {
        let owned;
        let hay: &[u8] = if self.partial.is_empty() {
            bytes
        } else {
            self.partial.extend_from_slice(bytes);
            owned = std::mem::take(&mut self.partial);
            &owned
        };
        let mut at = 0;
        while let Some(len) = f.end.find(&hay[at..]) {
            let block = &hay[at..at + len];
            at += len + 2;
            // Only the first block of a connection is searched for the opening: not a cost
            // every event pays.
            if let Some(p) = self.fresh.then(|| f.open.find(block)).flatten() {
                // The opening block (after the response head): no event, but its id is where
                // a reconnect resumes.
                self.fresh = false;
                self.opened = true;
                if self.last_id.is_none() {
                    self.last_id =
                        f.id.find(&block[p..])
                            .and_then(|q| number_at(block, p + q + 4));
                }
                continue;
            }
            let Some(id) = f.id.find(block).and_then(|p| number_at(block, p + 4)) else {
                continue;
            };
            let last = self.last_id.unwrap_or(0);
            if id <= last {
                self.duplicates += 1;
                continue;
            }
            if s.consecutive && id != last + 1 && s.gaps < 20 {
                // Printed at once: a run with a gap waits out its deadline before it reports.
                s.gaps += 1;
                eprintln!(
                    "client: gap: after {last} came {id} ({} ms and {} events after this connection opened)",
                    self.connected_at.elapsed().as_millis(),
                    self.since_connect
                );
            }
            self.since_connect += 1;
            self.last_id = Some(id);
            self.received += 1;
            if let Some(t) = f.t_us.find(block).and_then(|p| number_at(block, p + 7)) {
                s.arrival.push(arrived_us - t);
                let first = s.first.entry(id).or_insert(i64::MAX);
                *first = (*first).min(arrived_us - t);
                s.read.push(read_us - t);
            }
        }
        self.partial.extend_from_slice(&hay[at..]);
    }
}

/// Opens a stream of guild `g`, resuming after `resume` when there is one (as EventSource
/// does, with `Last-Event-ID`).
fn open(
    addr: SocketAddr,
    token: &str,
    g: usize,
    resume: Option<i64>,
) -> std::io::Result<TcpStream> {
    let resume = resume.map_or_else(String::new, |id| format!("Last-Event-ID: {id}\r\n"));
    let request = format!(
        "GET /api/logs/stream?guild_id={} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n{resume}\r\n",
        super::guild(g)
    );
    let mut std_sock = std::net::TcpStream::connect(addr)?;
    std_sock.write_all(request.as_bytes())?;
    std_sock.set_nonblocking(true)?;
    setsockopt(&std_sock, sockopt::ReceiveTimestampns, &true)?;
    Ok(TcpStream::from_std(std_sock))
}

/// What the client process is asked to do.
pub struct Plan<'a> {
    pub addr: &'a str,
    pub token: &'a str,
    /// Streams.
    pub n: usize,
    /// Events written, round-robin over the guilds.
    pub events: usize,
    pub guilds: usize,
    /// Events per second (for the deadline).
    pub rate: u64,
    /// Every this often, the next stream that is still waiting for events is closed and opened
    /// again with `Last-Event-ID`, as a browser that lost its connection does.
    pub reconnect_every: Option<Duration>,
}

/// Opens `n` streams to `addr`, stream `i` following guild `i % guilds`, and reads them until
/// each has every event of its guild out of `events`, or 10 minutes after the last event is due.
pub fn run(plan: &Plan<'_>) -> anyhow::Result<ClientReport> {
    let &Plan {
        token,
        n,
        events,
        guilds,
        ..
    } = plan;
    let addr: SocketAddr = plan.addr.parse()?;
    let mut poll = Poll::new()?;
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let g = i % guilds;
        let mut sock = open(addr, token, g, None)?;
        poll.registry()
            .register(&mut sock, Token(i), Interest::READABLE)?;
        conns.push(Conn {
            sock,
            expected: super::events_of(g, events, guilds),
            partial: Vec::new(),
            received: 0,
            duplicates: 0,
            last_id: None,
            opened: false,
            fresh: true,
            closed: false,
            connected_at: Instant::now(),
            since_connect: 0,
        });
    }
    let finders = Finders {
        end: memmem::Finder::new(b"\n\n"),
        id: memmem::Finder::new(b"id: "),
        t_us: memmem::Finder::new(b"\"t_us\":"),
        open: memmem::Finder::new(b": stream open"),
    };
    let mut samples = Samples {
        arrival: Vec::with_capacity(n * events / guilds),
        read: Vec::with_capacity(n * events / guilds),
        first: std::collections::HashMap::new(),
        consecutive: guilds == 1,
        gaps: 0,
    };
    let deadline = Instant::now() + Duration::from_secs(600 + events as u64 / plan.rate.max(1));
    let mut next_reconnect = plan.reconnect_every.map(|every| Instant::now() + every);
    let mut victim = 0;
    let mut reconnects = 0;
    // With more guilds than events, some streams have nothing to wait for.
    let mut finished = conns.iter().filter(|c| c.expected == 0).count();
    // Counted from the first event: opening 10,000 connections is not what is measured.
    let mut cpu_start = None;
    let mut events = Events::with_capacity(1024);
    let mut chunk = vec![0u8; 16 * 1024];
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    while finished < n && Instant::now() < deadline {
        if let Some(at) = next_reconnect.filter(|at| *at <= Instant::now()) {
            let every = plan.reconnect_every.unwrap_or_default();
            next_reconnect = Some(at + every);
            // Only streams with events still to come: one that is done may already be closed.
            let waiting = (0..n)
                .map(|k| (victim + k) % n)
                .find(|&i| !conns[i].closed && conns[i].received < conns[i].expected);
            if let Some(i) = waiting {
                victim = i + 1;
                let conn = &mut conns[i];
                poll.registry().deregister(&mut conn.sock)?;
                let mut sock = open(addr, token, i % guilds, conn.last_id)?;
                poll.registry()
                    .register(&mut sock, Token(i), Interest::READABLE)?;
                // The old connection closes here; an event it held in part comes again whole.
                conn.sock = sock;
                conn.partial.clear();
                conn.fresh = true;
                conn.connected_at = Instant::now();
                conn.since_connect = 0;
                reconnects += 1;
            }
        }
        let wait = next_reconnect.map_or(Duration::from_millis(500), |at| {
            at.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(500))
        });
        if let Err(e) = poll.poll(&mut events, Some(wait)) {
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        for event in &events {
            let conn = &mut conns[event.token().0];
            if conn.closed {
                continue;
            }
            loop {
                let fd = conn.sock.as_raw_fd();
                let mut iov = [IoSliceMut::new(&mut chunk)];
                let (len, arrived) =
                    match recvmsg::<()>(fd, &mut iov, Some(&mut cmsg), MsgFlags::empty()) {
                        Ok(msg) => {
                            let arrived = msg.cmsgs().ok().and_then(|mut c| {
                                c.find_map(|m| match m {
                                    ControlMessageOwned::ScmTimestampns(ts) => {
                                        Some(ts.tv_sec() * 1_000_000 + ts.tv_nsec() / 1_000)
                                    }
                                    _ => None,
                                })
                            });
                            (msg.bytes, arrived)
                        }
                        Err(Errno::EAGAIN) => break,
                        Err(Errno::EINTR) => continue,
                        Err(_) => (0, None),
                    };
                if len == 0 {
                    conn.closed = true;
                    break;
                }
                // Short of the buffer: the socket is drained. Data that comes after this read
                // raises a new edge, so asking again would only cost a failing `recvmsg`.
                let drained = len < chunk.len();
                let read = super::now_us();
                let done_before = conn.received >= conn.expected;
                conn.take(
                    &finders,
                    &chunk[..len],
                    arrived.unwrap_or(read),
                    read,
                    &mut samples,
                );
                if cpu_start.is_none() && !samples.read.is_empty() {
                    cpu_start = Some(super::cpu_us());
                }
                if !done_before && conn.received >= conn.expected {
                    finished += 1;
                }
                if drained {
                    break;
                }
            }
            if conn.closed && conn.received < conn.expected {
                finished += 1;
            }
        }
    }
    let mut report = ClientReport {
        samples: samples.read.len(),
        arrival_us: Percentiles::of(samples.arrival),
        read_us: Percentiles::of(samples.read),
        first_arrival_us: Percentiles::of(samples.first.into_values().collect()),
        cpu_us: cpu_start.map_or(0, |start| super::cpu_us() - start),
        reconnects,
        ..ClientReport::default()
    };
    for c in &conns {
        report.held += usize::from(c.opened);
        report.complete += usize::from(c.received == c.expected);
        report.lost += c.expected.saturating_sub(c.received);
        report.duplicates += c.duplicates;
    }
    Ok(report)
}
