//! Accepting connections: `SO_REUSEPORT` sockets (one per worker thread), optional TLS
//! (rustls, ALPN h2 + http/1.1), hyper-util's auto builder (HTTP/1.1 and HTTP/2, h2c by prior
//! knowledge on cleartext) with a timer so `header_read_timeout` applies, a global connection
//! limit, an idle timeout, and graceful shutdown.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::config::ServerConfig;
use crate::forward::Peer;
use crate::proxy::{self, Worker};

/// Bind a listening socket with `SO_REUSEPORT`, so each worker thread can own one.
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// Connection-level settings shared by every worker.
pub struct ConnSettings {
    pub builder: auto::Builder<TokioExecutor>,
    pub tls: Option<TlsAcceptor>,
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
}

impl ConnSettings {
    pub fn new(cfg: &ServerConfig, tls: Option<TlsAcceptor>) -> ConnSettings {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(cfg.header_read_timeout)
            .max_buf_size(cfg.max_header_bytes.max(8192))
            .keep_alive(true)
            .writev(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(cfg.max_header_bytes as u32)
            .max_concurrent_streams(256)
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20));
        ConnSettings {
            builder,
            tls,
            idle_timeout: cfg.idle_timeout,
            handshake_timeout: cfg.header_read_timeout,
        }
    }
}

/// Accept until `shutdown` turns true. Connections then get a graceful shutdown signal; the
/// caller waits for them to drain (each holds a permit of `limit`).
pub async fn serve(
    worker: Arc<Worker>,
    listener: TcpListener,
    settings: Arc<ConnSettings>,
    limit: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            break;
        }
        // Accept first, then wait for a connection slot. (Waiting for a slot first would
        // deadlock with one SO_REUSEPORT listener per worker: the worker that gets the freed
        // slot may have nothing in its backlog while another worker's backlog holds the
        // waiting connection.) So each worker holds at most one accepted, unserved connection.
        let (stream, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let worker = worker.clone();
        let settings = settings.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            serve_connection(worker, stream, remote, settings, shutdown).await;
            drop(permit);
        });
    }
}

async fn serve_connection(
    worker: Arc<Worker>,
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    settings: Arc<ConnSettings>,
    shutdown: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = IdleIo {
        inner: stream,
        activity: activity.clone(),
    };
    let ip = HeaderValue::from_str(&remote.ip().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    match &settings.tls {
        None => {
            let peer = Arc::new(Peer::new(ip, false));
            drive(worker, io, peer, activity, &settings, shutdown).await;
        }
        Some(acceptor) => {
            let tls =
                match tokio::time::timeout(settings.handshake_timeout, acceptor.accept(io)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, %remote, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%remote, "TLS handshake timed out");
                        return;
                    }
                };
            let peer = Arc::new(Peer::new(ip, true));
            drive(worker, tls, peer, activity, &settings, shutdown).await;
        }
    }
}

async fn drive<I>(
    worker: Arc<Worker>,
    io: I,
    peer: Arc<Peer>,
    activity: Arc<Activity>,
    settings: &ConnSettings,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let in_flight = activity.clone();
    let svc = service_fn(move |req| {
        let worker = worker.clone();
        let peer = peer.clone();
        let guard = InFlight::enter(in_flight.clone());
        async move {
            let r = proxy::handle(&worker, &peer, req).await;
            drop(guard);
            r
        }
    });
    let conn = settings.builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let idle = settings.idle_timeout;
    // Quiet time is noticed one tick late at most, so a connection closes between `idle` and
    // `idle` plus two ticks (1.25 x idle).
    let mut tick = tokio::time::interval((idle / 8).max(Duration::from_millis(100)));
    let mut quiet_since = Instant::now();
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing = *shutdown.borrow();
    if closing {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            _ = shutdown.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tick.tick(), if !closing => {
                if activity.idle_for(&mut quiet_since) >= idle
                    && activity.in_flight.load(Ordering::Acquire) == 0
                {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Whether the connection moved a byte since the last idle check, and how many requests are
/// being handled. A flag, not a timestamp: reading the clock on every read and write cost more
/// than the rest of this wrapper; the idle check runs on a tick and keeps the time itself.
struct Activity {
    moved: AtomicBool,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            moved: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        self.moved.store(true, Ordering::Relaxed);
    }

    /// How long the connection has been quiet, as seen from the idle check's ticks
    /// (`quiet_since` is the check's own record; precision: one tick).
    fn idle_for(&self, quiet_since: &mut Instant) -> Duration {
        if self.moved.swap(false, Ordering::Relaxed) {
            *quiet_since = Instant::now();
        }
        quiet_since.elapsed()
    }
}

struct InFlight(Arc<Activity>);

impl InFlight {
    fn enter(a: Arc<Activity>) -> InFlight {
        a.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(a)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.touch();
    }
}

/// A stream that records activity, for the idle timeout.
struct IdleIo<T> {
    inner: T,
    activity: Arc<Activity>,
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
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
