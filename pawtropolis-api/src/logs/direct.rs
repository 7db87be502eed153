//! Live streams served straight from the socket.
//!
//! hyper keeps a 16 KB read buffer and an 8 KB write buffer for every HTTP/1 connection for as
//! long as it is open, and every event crosses its dispatcher, poem's split IO and its
//! shutdown checks on the way out. For a live stream that idles all day beside 10,000 others,
//! that is most of the server's memory and CPU. [`StreamAcceptor`] wraps a poem TCP acceptor:
//! it reads the first request head of each new connection; a plain `GET` of the stream path is
//! answered right here, by calling the same poem endpoint (authentication, limits, replay: all
//! of it unchanged) and writing its reply to the socket chunk by chunk. Every other connection
//! goes on to poem's server, with the bytes already read put back in front and with writes
//! that time out after a while without progress ([`WRITE_TIMEOUT`] unless the host sets
//! another), as the streams answered here do.

use std::{
    io::Write as _,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Buf as _, Bytes, BytesMut};
use futures_util::{FutureExt as _, StreamExt as _};
use poem::{
    Body, Endpoint, Request, RequestParts, Response,
    http::{self, Method, StatusCode, Version, header},
    listener::Acceptor,
    web::{LocalAddr, RemoteAddr},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf},
    net::TcpStream,
    sync::mpsc,
    task::JoinHandle,
};

use super::write_timeout::{WRITE_TIMEOUT, WriteTimeoutIo, with_write_timeout};

/// Longest request head read before deciding (hyper answers longer ones with 431).
const MAX_HEAD: usize = 8 * 1024;
/// How long a new connection may take to send its request head before it goes to hyper as is.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes a lagging stream sends in one write.
const MAX_BATCH: usize = 64 * 1024;

type Accepted = (
    WriteTimeoutIo<Rewind>,
    LocalAddr,
    RemoteAddr,
    http::uri::Scheme,
);

/// Connections the kernel may hold for the accept loop (capped by `net.core.somaxconn`).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a TCP listener for poem with a listen backlog of [`LISTEN_BACKLOG`].
///
/// Rust's and poem's listeners ask for 128. When thousands of dashboards reconnect at once
/// (after a restart, say), the 129th connection that arrives while the accept loop is busy is
/// dropped and its browser waits a second for the SYN to be sent again; measured with 10,000
/// streams opened one after the other, that was 25 seconds of such waits.
pub async fn bind_tcp(addr: &str) -> std::io::Result<poem::listener::TcpAcceptor> {
    let mut last_error = None;
    // Each address in turn, as std and tokio do: `localhost` may resolve to an IPv6 address
    // first on a host without IPv6.
    for address in tokio::net::lookup_host(addr).await? {
        match listen_on(address) {
            Ok(listener) => return poem::listener::TcpAcceptor::from_tokio(listener),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{addr} resolves to no address"),
        )
    }))
}

fn listen_on(address: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std and mio do on Unix, so that a restart can bind while old connections are in
    // TIME_WAIT (on Windows it would let another process take a port in use).
    #[cfg(not(windows))]
    socket.set_reuseaddr(true)?;
    // Accepted connections inherit it (see `give_up_on_silent_clients`).
    give_up_on_silent_clients(&socket, WRITE_TIMEOUT)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Makes the kernel give up on a connection whose sent data stays unacknowledged for
/// `timeout`. A client that vanished without closing (a laptop gone to sleep, a NAT
/// that forgot the connection) leaves a stream's heartbeats unacknowledged; they are too small
/// to fill the socket's buffer, so no write ever blocks, and TCP would retry for about a
/// quarter of an hour before the stream, its connection and its permit were freed.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn give_up_on_silent_clients(
    socket: &impl std::os::fd::AsFd,
    timeout: Duration,
) -> std::io::Result<()> {
    socket2::SockRef::from(socket).set_tcp_user_timeout(Some(timeout))
}

/// Elsewhere the option does not exist: such a client is freed when TCP gives up.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn give_up_on_silent_clients<S>(_: &S, _: Duration) -> std::io::Result<()> {
    Ok(())
}

/// A poem acceptor that serves live-stream requests itself and hands every other connection
/// to poem's server (see the module documentation). Writes of either kind of connection time
/// out after [`WRITE_TIMEOUT`] without progress, or the timeout given to
/// [`StreamAcceptor::with_write_timeout`].
///
/// ```no_run
/// # async fn run(api: pawtropolis_api::PawtropolisApi) -> std::io::Result<()> {
/// use std::sync::Arc;
/// use poem::{EndpointExt as _, listener::Acceptor as _};
/// let app = Arc::new(pawtropolis_api::register_api_routes(poem::Route::new(), &api).map_to_response());
/// let tcp = pawtropolis_api::bind_tcp("127.0.0.1:3000").await?;
/// let acceptor = pawtropolis_api::StreamAcceptor::new(tcp, app.clone(), pawtropolis_api::STREAM_PATH);
/// poem::Server::new_with_acceptor(acceptor).run(app).await
/// # }
/// ```
pub struct StreamAcceptor {
    local_addr: Vec<LocalAddr>,
    handed_on: mpsc::Receiver<Accepted>,
    accept_loop: JoinHandle<()>,
}

impl StreamAcceptor {
    /// Wraps `inner`; requests for `stream_path` (e.g. `/api/logs/stream`) are answered by
    /// `endpoint`, which should be the same application poem's server runs.
    pub fn new<A, E>(inner: A, endpoint: Arc<E>, stream_path: &'static str) -> Self
    where
        A: Acceptor<Io = TcpStream> + 'static,
        E: Endpoint<Output = Response> + 'static,
    {
        Self::with_write_timeout(inner, endpoint, stream_path, WRITE_TIMEOUT)
    }

    /// As [`StreamAcceptor::new`], with writes that time out after `write_timeout` without
    /// progress instead of [`WRITE_TIMEOUT`]; the kernel also gives up on a stream whose sent
    /// data stays unacknowledged that long (`TCP_USER_TIMEOUT`, on Linux). Shorter frees the
    /// streams of vanished clients sooner; longer keeps clients on slow links.
    pub fn with_write_timeout<A, E>(
        mut inner: A,
        endpoint: Arc<E>,
        stream_path: &'static str,
        write_timeout: Duration,
    ) -> Self
    where
        A: Acceptor<Io = TcpStream> + 'static,
        E: Endpoint<Output = Response> + 'static,
    {
        let local_addr = inner.local_addr();
        let (tx, handed_on) = mpsc::channel(64);
        let shared = Arc::new(Shared {
            endpoint,
            stream_path,
            write_timeout,
            tx,
        });
        let accept_loop = tokio::spawn(async move {
            loop {
                match inner.accept().await {
                    Ok((io, local, remote, scheme)) => {
                        let shared = shared.clone();
                        tokio::spawn(async move {
                            // Boxed: the connection's task should not keep the size of the
                            // head parser for as long as the stream lives.
                            match Box::pin(sniff(io, shared.stream_path)).await {
                                Sniffed::Stream(io, head) => {
                                    let req = Request::from_parts(
                                        RequestParts::from((head, local, remote, scheme)),
                                        Body::empty(),
                                    );
                                    serve_stream(io, &shared, req).await;
                                }
                                Sniffed::Other(io) => {
                                    // The listener's may be another (`bind_tcp`'s default).
                                    let _ = give_up_on_silent_clients(&io.io, shared.write_timeout);
                                    let io = with_write_timeout(io, shared.write_timeout);
                                    // Poem's server stopped accepting: the connection just closes.
                                    let _ = shared.tx.send((io, local, remote, scheme)).await;
                                }
                            }
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                if shared.tx.is_closed() {
                    return;
                }
            }
        });
        Self {
            local_addr,
            handed_on,
            accept_loop,
        }
    }
}

/// What the task of every connection shares: one pointer in each task rather than a copy of
/// each field, as a live stream's task lives as long as the stream.
struct Shared<E> {
    endpoint: Arc<E>,
    stream_path: &'static str,
    write_timeout: Duration,
    /// Connections for poem's server.
    tx: mpsc::Sender<Accepted>,
}

impl Drop for StreamAcceptor {
    fn drop(&mut self) {
        // Stop listening with the server; open streams end with the API's shutdown.
        self.accept_loop.abort();
    }
}

impl Acceptor for StreamAcceptor {
    type Io = WriteTimeoutIo<Rewind>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.local_addr.clone()
    }

    async fn accept(&mut self) -> std::io::Result<Accepted> {
        self.handed_on.recv().await.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the accept loop ended")
        })
    }
}

enum Sniffed {
    Stream(TcpStream, http::request::Parts),
    Other(Rewind),
}

/// Reads the first request head and decides who answers it.
async fn sniff(mut io: TcpStream, stream_path: &str) -> Sniffed {
    let mut buf = BytesMut::with_capacity(1024);
    let deadline = tokio::time::Instant::now() + HEAD_TIMEOUT;
    loop {
        let read = tokio::time::timeout_at(deadline, io.read_buf(&mut buf)).await;
        if !matches!(read, Ok(Ok(n)) if n > 0) {
            break;
        }
        match parse_stream_request(&buf, stream_path) {
            Parse::Partial if buf.len() < MAX_HEAD => continue,
            Parse::Stream(head) => return Sniffed::Stream(io, *head),
            _ => break,
        }
    }
    Sniffed::Other(Rewind {
        prefix: buf.freeze(),
        io,
    })
}

enum Parse {
    Partial,
    Stream(Box<http::request::Parts>),
    Other,
}

/// A complete `GET stream_path` head with nothing after it and no body, upgrade or
/// `Expect`: anything else (and anything malformed) is hyper's to answer.
fn parse_stream_request(buf: &[u8], stream_path: &str) -> Parse {
    let mut headers = [httparse::EMPTY_HEADER; 48];
    let mut parsed = httparse::Request::new(&mut headers);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parse::Partial,
        Err(_) => return Parse::Other,
    };
    let (Some("GET"), Some(target), Some(minor)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Parse::Other;
    };
    let path = target.split('?').next().unwrap_or_default();
    if len != buf.len() || path != stream_path {
        return Parse::Other;
    }
    let mut builder = http::Request::builder()
        .method(Method::GET)
        .uri(target)
        .version(if minor == 0 {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        });
    for h in parsed.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") && h.value != b"0"
            || name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("upgrade")
            || name.eq_ignore_ascii_case("expect")
        {
            return Parse::Other;
        }
        builder = builder.header(name, h.value);
    }
    match builder.body(()) {
        Ok(req) => Parse::Stream(Box::new(req.into_parts().0)),
        Err(_) => Parse::Other,
    }
}

/// Answers one stream request on `io` and closes the connection when the reply ends or the
/// client goes away, or a write makes no progress for the write timeout.
async fn serve_stream<E: Endpoint<Output = Response>>(
    mut io: TcpStream,
    shared: &Shared<E>,
    req: Request,
) {
    let resp = Box::pin(shared.endpoint.get_response(req)).await;
    let (parts, body) = resp.into_parts();
    let streaming = parts.status == StatusCode::OK
        && parts
            .headers
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !streaming {
        // Errors (401, 403, 429, 503 …): small JSON bodies, sent whole.
        let body = body.into_bytes().await.unwrap_or_default();
        let head = response_head(&parts, Some(body.len()));
        let _ = send(&mut io, &mut vec![head, body], shared.write_timeout).await;
        let _ = io.shutdown().await;
        return;
    }
    // Events are small and each should leave at once, not wait for the previous one's ACK.
    let _ = io.set_nodelay(true);
    // Also when the host's listener is not `bind_tcp`'s, or the timeout not its default.
    let _ = give_up_on_silent_clients(&io, shared.write_timeout);
    // No length and no chunking: the stream's body ends when the connection closes, which
    // is how it ends anyway. Each event then goes out as the very bytes the feed prepared.
    if send(
        &mut io,
        &mut vec![response_head(&parts, None)],
        shared.write_timeout,
    )
    .await
    .is_err()
    {
        return;
    }
    let mut chunks = body.into_bytes_stream().fuse();
    let (mut rd, mut wr) = io.split();
    let mut probe = [0u8; 1];
    let mut batch: Vec<Bytes> = Vec::new();
    loop {
        tokio::select! {
            chunk = chunks.next() => {
                let Some(Ok(bytes)) = chunk else { break };
                // A connection that fell behind sends what is waiting in one write, so that a
                // busy server spends fewer syscalls per event rather than more.
                batch.push(bytes);
                let mut size = batch[0].len();
                let mut ended = false;
                while size < MAX_BATCH {
                    match chunks.next().now_or_never() {
                        Some(Some(Ok(more))) => {
                            size += more.len();
                            batch.push(more);
                        }
                        // The body ended (or failed) behind what is batched: send that, stop.
                        Some(_) => {
                            ended = true;
                            break;
                        }
                        None => break,
                    }
                }
                if send(&mut wr, &mut batch, shared.write_timeout).await.is_err() || ended {
                    break;
                }
            },
            // A stream's client sends nothing after its request: a read ending, failing or
            // bringing anything at all closes the stream.
            _ = rd.read(&mut probe) => break,
        }
    }
    drop(chunks);
    let _ = wr.shutdown().await;
}

/// Status line and headers, with `Connection: close` and, for a whole body, its length.
fn response_head(parts: &poem::ResponseParts, content_length: Option<usize>) -> Bytes {
    let mut head = Vec::with_capacity(256);
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\ndate: {}\r\n",
        parts.status.as_u16(),
        parts.status.canonical_reason().unwrap_or(""),
        chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT")
    );
    for (name, value) in &parts.headers {
        if matches!(
            *name,
            header::CONNECTION | header::CONTENT_LENGTH | header::TRANSFER_ENCODING
        ) {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if let Some(n) = content_length {
        let _ = write!(head, "content-length: {n}\r\n");
    }
    head.extend_from_slice(b"connection: close\r\n\r\n");
    head.into()
}

/// Writes every chunk of `batch` (one `writev` when the socket takes them all) and empties
/// it, failing with [`std::io::ErrorKind::TimedOut`] when a write makes no progress for
/// `timeout`: a slow client that still reads is not cut off however long the batch takes.
/// Not [`with_write_timeout`], as the connections handed to hyper have: its two timers would
/// add 272 bytes to every idle stream (312 bytes against a `TcpStream`'s 40) for as long as it
/// lives; this one exists only during a write.
async fn send<W: AsyncWrite + Unpin>(
    wr: &mut W,
    batch: &mut Vec<Bytes>,
    timeout: Duration,
) -> std::io::Result<()> {
    batch.retain(|b| !b.is_empty());
    let mut first = 0;
    while first < batch.len() {
        // A timer per write, not per batch: each write must take some bytes in time.
        let written = if let [one] = &batch[first..] {
            tokio::time::timeout(timeout, wr.write(one)).await
        } else {
            let slices: Vec<std::io::IoSlice<'_>> = batch[first..]
                .iter()
                .map(|b| std::io::IoSlice::new(b))
                .collect();
            tokio::time::timeout(timeout, wr.write_vectored(&slices)).await
        };
        let mut n = match written {
            Ok(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(written) => written?,
            Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
        };
        while first < batch.len() && n >= batch[first].len() {
            n -= batch[first].len();
            first += 1;
        }
        if n > 0 {
            batch[first].advance(n);
        }
    }
    batch.clear();
    Ok(())
}

/// A connection handed on to poem's server: the bytes read while deciding come first.
pub struct Rewind {
    prefix: Bytes,
    io: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn decide(raw: &str) -> &'static str {
        match parse_stream_request(raw.as_bytes(), "/api/logs/stream") {
            Parse::Partial => "partial",
            Parse::Stream(_) => "stream",
            Parse::Other => "other",
        }
    }

    /// Takes at most 3 bytes per write, like a socket with a full buffer.
    struct Trickle(Vec<u8>);

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            let n = buf.len().min(3);
            self.0.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[std::io::IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            // Across slice boundaries, as writev does.
            let mut left = 3;
            for b in bufs {
                let n = b.len().min(left);
                self.0.extend_from_slice(&b[..n]);
                left -= n;
            }
            Poll::Ready(Ok(3 - left))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_batch_goes_out_whole_and_in_order_through_partial_writes() {
        let mut out = Trickle(Vec::new());
        let mut batch = vec![
            Bytes::from_static(b"id: 1\n\n"),
            Bytes::new(),
            Bytes::from_static(b"id: 22\n\n"),
            Bytes::from_static(b"x"),
        ];
        send(&mut out, &mut batch, WRITE_TIMEOUT).await.unwrap();
        assert_eq!(out.0, b"id: 1\n\nid: 22\n\nx");
        assert!(batch.is_empty());
    }

    /// The timeout bounds a write that makes no progress, not the whole batch: a client that
    /// takes a byte every 3 s gets a 10-byte batch in 30 s under a 5 s timeout; one that takes
    /// nothing fails it after 5 s.
    #[tokio::test(start_paused = true)]
    async fn a_write_times_out_without_progress_not_while_slow() {
        let timeout = Duration::from_secs(5);
        let (mut wr, mut rd) = tokio::io::duplex(1);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut byte = [0u8; 1];
            while got.len() < 10 {
                tokio::time::sleep(Duration::from_secs(3)).await;
                rd.read_exact(&mut byte).await.unwrap();
                got.push(byte[0]);
            }
            got
        });
        let started = tokio::time::Instant::now();
        let mut batch = vec![Bytes::from_static(b"01234"), Bytes::from_static(b"56789")];
        send(&mut wr, &mut batch, timeout).await.unwrap();
        assert_eq!(reader.await.unwrap(), b"0123456789");
        assert!(started.elapsed() >= Duration::from_secs(27));

        let (mut wr, _rd) = tokio::io::duplex(1);
        let started = tokio::time::Instant::now();
        let mut batch = vec![Bytes::from_static(b"ab")];
        let e = send(&mut wr, &mut batch, timeout).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), timeout);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn accepted_connections_give_up_on_a_silent_client() {
        let mut acceptor = bind_tcp("127.0.0.1:0").await.unwrap();
        let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let (io, ..) = acceptor.accept().await.unwrap();
        assert_eq!(
            socket2::SockRef::from(&io).tcp_user_timeout().unwrap(),
            Some(WRITE_TIMEOUT)
        );
    }

    #[test]
    fn only_plain_gets_of_the_stream_are_taken() {
        let ok = "GET /api/logs/stream?guild_id=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\n";
        assert_eq!(decide(ok), "stream");
        assert_eq!(decide(&ok[..30]), "partial");
        assert_eq!(
            decide("GET /api/logs?guild_id=1 HTTP/1.1\r\nHost: x\r\n\r\n"),
            "other"
        );
        assert_eq!(decide("GET /api/logs/streamx HTTP/1.1\r\n\r\n"), "other");
        assert_eq!(
            decide("POST /api/logs/stream HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"),
            "other"
        );
        assert_eq!(
            decide("GET /api/logs/stream HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"),
            "other"
        );
        // A pipelined second request: hyper keeps the connection.
        assert_eq!(
            decide("GET /api/logs/stream HTTP/1.1\r\n\r\nGET /health HTTP/1.1\r\n\r\n"),
            "other"
        );
        assert_eq!(decide("\x16\x03\x01 garbage"), "other");
    }
}
