//! The client connection's stream: it records activity for the idle and header read timeouts,
//! sniffs the h2c preface on cleartext connections, holds the first write after a read back by
//! one turn of the runtime's queue, and tells whether the client has gone when the gone-client
//! check asks.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::activity::Activity;

/// The start of the h2c connection preface ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").
pub(super) const H2_PREFACE_START: &[u8] = b"PRI * HTTP/2.0";
/// `IdleIo::sniffed` once the first bytes are known not to be, or to be, the h2c preface.
pub(super) const SNIFFED: usize = usize::MAX;

/// A stream that records activity, for the idle and header read timeouts, and that holds the
/// first write after each read back by one turn of the runtime's queue.
///
/// Why hold a write back: the first write after a read is, nearly always, a response to what
/// was read. Written at once, each response wakes the client on its own. Instead the write
/// returns `Pending` once, with the task woken at once, so it goes out after the tasks already
/// queued have run. The responses of one turn then leave together, and the peers (client,
/// upstream) are woken, and preempt the proxy, less often (measured in BENCHMARKS.md), for one
/// more poll of the task per request. An idle runtime runs the task again at once, so a lone request waits for nothing.
pub(super) struct IdleIo<T> {
    inner: T,
    activity: Arc<Activity>,
    /// How many of the first bytes matched the h2c preface so far, or `SNIFFED` (cleartext
    /// only: under TLS this sees records, and ALPN tells the protocol).
    sniffed: usize,
    /// Bytes were read since the last write: the next write waits one turn.
    hold_write: bool,
}

impl<T> IdleIo<T> {
    pub(super) fn new(inner: T, activity: Arc<Activity>, sniffed: usize) -> IdleIo<T> {
        IdleIo {
            inner,
            activity,
            sniffed,
            hold_write: false,
        }
    }

    /// `Pending` (with the task woken, so it is polled again) for the first write after a
    /// read; `Ready` otherwise.
    fn hold_back(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.hold_write {
            self.hold_write = false;
            cx.waker().wake_by_ref();
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }

    /// Record a write that moved bytes as activity; pass the result through.
    fn wrote(&self, r: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
            self.hold_write = true;
            if self.sniffed != SNIFFED {
                self.sniffed = sniff_h2c(self.sniffed, &buf.filled()[before..], &self.activity);
            }
        }
        r
    }
}

/// Whether the client has closed or reset the connection, told without reading: the socket's
/// readiness, as the runtime keeps it from epoll, says the peer closed its sending side (a FIN)
/// or the connection failed (a reset). The runtime never clears those two once seen, so bytes
/// still waiting (a pipelined request, or a TLS close_notify ahead of the FIN) hide nothing.
pub(super) trait PeerGone {
    fn peer_gone(&self, cx: &mut Context<'_>) -> bool;
}

impl PeerGone for tokio::net::TcpStream {
    fn peer_gone(&self, cx: &mut Context<'_>) -> bool {
        let ready = std::pin::pin!(self.ready(tokio::io::Interest::READABLE));
        match ready.poll(cx) {
            Poll::Ready(Ok(r)) => r.is_read_closed() || r.is_error(),
            Poll::Ready(Err(_)) => true,
            Poll::Pending => false,
        }
    }
}

/// Match the connection's next bytes against the h2c preface, from `matched` bytes on.
fn sniff_h2c(matched: usize, bytes: &[u8], activity: &Activity) -> usize {
    let rest = &H2_PREFACE_START[matched..];
    let n = rest.len().min(bytes.len());
    if rest[..n] != bytes[..n] {
        SNIFFED
    } else if n == rest.len() {
        activity.set_http2();
        SNIFFED
    } else {
        matched + n
    }
}

impl<T: AsyncWrite + PeerGone + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.hold_back(cx));
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.hold_back(cx));
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    /// hyper flushes on every poll of an HTTP/1 connection, the one after the tick included: the
    /// place to answer the gone-client check (`GoneWatch` in `listener.rs`). An error here ends
    /// the connection, and with it the request waiting on the upstream.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.activity.probe.load(Ordering::Relaxed)
            && self.activity.probe.swap(false, Ordering::Acquire)
            && self.inner.peer_gone(cx)
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the client closed the connection while its request was in flight",
            )));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sniff(chunks: &[&[u8]]) -> bool {
        let activity = Activity::new();
        let mut matched = 0;
        for c in chunks {
            if matched != SNIFFED {
                matched = sniff_h2c(matched, c, &activity);
            }
        }
        activity.http2.load(Ordering::Relaxed)
    }

    #[test]
    fn the_h2c_preface_is_recognised_even_when_split() {
        assert!(sniff(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]));
        assert!(sniff(&[b"PR", b"I * HTTP", b"/2.0\r\n"]));
        assert!(sniff(&[b"P", b"R", b"I", b" * HTTP/2.0"]));
        assert!(!sniff(&[b"GET / HTTP/1.1\r\n"]));
        assert!(!sniff(&[b"PR", b"X * HTTP/2.0"]));
        assert!(!sniff(&[b"PRI * HTTP/1.1\r\n"]));
        // HTTP/1 bytes after a non-matching start are never looked at again.
        assert!(!sniff(&[b"G", b"PRI * HTTP/2.0"]));
    }

    impl PeerGone for tokio::io::DuplexStream {
        fn peer_gone(&self, _: &mut Context<'_>) -> bool {
            false
        }
    }

    struct CountWakes(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn the_first_write_after_a_read_waits_one_turn_and_is_woken() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (ours, mut peer) = tokio::io::duplex(1024);
        let mut io = IdleIo::new(ours, Arc::new(Activity::new()), SNIFFED);
        let wakes = Arc::new(CountWakes(Default::default()));
        let waker = std::task::Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let woken = || wakes.0.load(Ordering::SeqCst);

        // Nothing read yet: a write goes out at once.
        let r = Pin::new(&mut io).poll_write(&mut cx, b"hello ");
        assert!(matches!(r, Poll::Ready(Ok(6))), "{r:?}");
        assert_eq!(woken(), 0);

        // After a read, the first write is held back once, with the task woken...
        peer.write_all(b"request").await.unwrap();
        let mut buf = [0u8; 16];
        let mut rb = ReadBuf::new(&mut buf);
        assert!(Pin::new(&mut io).poll_read(&mut cx, &mut rb).is_ready());
        assert_eq!(rb.filled(), b"request");
        let bufs = [io::IoSlice::new(b"wor"), io::IoSlice::new(b"ld")];
        assert!(Pin::new(&mut io)
            .poll_write_vectored(&mut cx, &bufs)
            .is_pending());
        assert_eq!(
            woken(),
            1,
            "a held write must wake its task, or it never goes out"
        );

        // ...and goes out when polled again; the writes after it are not held.
        let r = Pin::new(&mut io).poll_write_vectored(&mut cx, &bufs);
        assert!(matches!(r, Poll::Ready(Ok(5))), "{r:?}");
        let r = Pin::new(&mut io).poll_write(&mut cx, b"!");
        assert!(matches!(r, Poll::Ready(Ok(1))), "{r:?}");
        assert_eq!(woken(), 1);
        drop(io);
        let mut got = Vec::new();
        peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello world!");
    }
}
