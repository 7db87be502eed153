//! A write timeout for the connections poem's server runs.
//!
//! A live stream served by poem's server writes through hyper. When its client stops reading
//! (a frozen tab, a laptop gone to sleep behind a NAT that keeps the connection), the kernel's
//! send buffer fills, hyper's write stays pending and hyper stops polling the stream's body. From
//! then on nothing of the stream runs: not its heartbeat, not the check of its session, not a
//! shutdown. The kernel keeps probing a zero window for as long as the peer answers, so the
//! connection, its stream permit and its buffers are held for good. [`WriteTimeoutAcceptor`]
//! fails such a write after a while without progress; hyper then drops the connection and its
//! response, and the stream frees everything as on any disconnect.

use std::{pin::Pin, time::Duration};

use poem::{
    listener::Acceptor,
    web::{LocalAddr, RemoteAddr},
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_io_timeout::TimeoutStream;

/// How long a write may make no progress before its connection is closed, by default: streams
/// answered by [`StreamAcceptor`](crate::StreamAcceptor) use it unless given another (the
/// server's `PAWTROPOLIS_SSE_WRITE_TIMEOUT_SECS`). A live client takes a heartbeat every 20 s,
/// so only a client that is gone or stuck reaches it; a stream closed this way resumes with
/// `Last-Event-ID` when its client comes back.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection whose writes fail with [`std::io::ErrorKind::TimedOut`] after making no
/// progress for the timeout it was given. Reads have no timeout (poem's server has its own
/// for idle connections).
pub type WriteTimeoutIo<T> = Pin<Box<TimeoutStream<T>>>;

/// Wraps a connection so that its writes time out after `timeout` without progress.
pub fn with_write_timeout<T>(io: T, timeout: Duration) -> WriteTimeoutIo<T>
where
    T: AsyncRead + AsyncWrite,
{
    let mut io = TimeoutStream::new(io);
    io.set_write_timeout(Some(timeout));
    Box::pin(io)
}

/// A poem acceptor whose connections close when a write makes no progress for a while (see the
/// module documentation), for a host that serves the API with poem's own server:
///
/// ```no_run
/// # async fn run(api: pawtropolis_api::PawtropolisApi) -> std::io::Result<()> {
/// use poem::listener::{Listener as _, TcpListener};
/// use pawtropolis_api::{WRITE_TIMEOUT, WriteTimeoutAcceptor};
/// let app = pawtropolis_api::register_api_routes(poem::Route::new(), &api);
/// let tcp = TcpListener::bind("127.0.0.1:3000").into_acceptor().await?;
/// poem::Server::new_with_acceptor(WriteTimeoutAcceptor::new(tcp, WRITE_TIMEOUT)).run(app).await
/// # }
/// ```
///
/// [`StreamAcceptor`](crate::StreamAcceptor) already applies a write timeout to every
/// connection; it needs no wrapping.
pub struct WriteTimeoutAcceptor<A> {
    inner: A,
    timeout: Duration,
}

impl<A: Acceptor> WriteTimeoutAcceptor<A> {
    /// Wraps `inner`; a write of one of its connections that makes no progress for `timeout`
    /// fails, and poem's server closes that connection.
    pub fn new(inner: A, timeout: Duration) -> Self {
        Self { inner, timeout }
    }
}

impl<A: Acceptor> Acceptor for WriteTimeoutAcceptor<A> {
    type Io = WriteTimeoutIo<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(
        &mut self,
    ) -> std::io::Result<(Self::Io, LocalAddr, RemoteAddr, poem::http::uri::Scheme)> {
        let (io, local, remote, scheme) = self.inner.accept().await?;
        Ok((with_write_timeout(io, self.timeout), local, remote, scheme))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    /// A peer that stops reading: the write fails once the timeout passes with no progress,
    /// and not before; a peer that reads again in time keeps the connection.
    #[tokio::test(start_paused = true)]
    async fn a_write_without_progress_times_out() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut io = with_write_timeout(near, Duration::from_secs(60));
        io.write_all(&[0; 64]).await.expect("fits the buffer");

        let stalled = tokio::spawn(async move {
            let r = io.write_all(&[1; 64]).await;
            (r, io)
        });
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!stalled.is_finished(), "timed out before its time");
        // The peer reads: progress resets the clock.
        let mut buf = [0; 64];
        tokio::io::AsyncReadExt::read_exact(&mut far, &mut buf)
            .await
            .expect("read");
        let (r, mut io) = stalled.await.expect("task");
        r.expect("the write completed once the peer read");

        // The peer stops reading for good: the write fails a full timeout after it stalled.
        let stalled_at = tokio::time::Instant::now();
        let err = io.write_all(&[2]).await.expect_err("timed out");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(stalled_at.elapsed() >= Duration::from_secs(60));
        drop(far);
    }
}
