//! Accepting connections: `SO_REUSEPORT` sockets (one per worker thread), optional TLS
//! (rustls, ALPN h2 + http/1.1), hyper's HTTP/1 server for cleartext connections whose first
//! bytes rule out the h2c preface and hyper-util's auto builder for the others (HTTP/1.1 and
//! HTTP/2, h2c by prior knowledge on cleartext), a global connection limit, the header read and
//! idle timeouts and the gone-client check (all on one per-connection tick), and graceful
//! shutdown. The connection's stream wrapper is in `listener/stream.rs`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

mod activity;
mod stream;

use crate::config::ServerConfig;
use crate::pipeline::{self, Peer, Worker};
use crate::upstream::{DeadlineWatch, Downstream};
use activity::{Activity, GoneWatch, HeadWatch, InFlight};
use stream::{IdleIo, H2_PREFACE_START, SNIFFED};

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

/// Fail with "address in use" if anything listens on `addr` already. `SO_REUSEPORT` lets
/// every socket of the same user bind a port that is in use by another `SO_REUSEPORT` socket:
/// without this check, a second proxy started on the same port (a stale process, a second
/// `run` by mistake) would quietly take a share of the connections instead of failing.
pub fn check_unused(addr: SocketAddr) -> io::Result<()> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())
}

/// Connection-level settings shared by every worker.
pub struct ConnSettings {
    pub builder: auto::Builder<TokioExecutor>,
    /// For cleartext connections whose first bytes rule out the h2c preface: hyper's HTTP/1
    /// server directly, with the same settings as `builder`'s, without the auto builder's
    /// replay of the bytes it read to choose (a wrapper on every read) and its dispatch.
    pub http1: http1::Builder,
    /// The server's TLS configuration, replaced when its certificate files change.
    pub tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
    pub idle_timeout: Duration,
    /// Bounds the TLS handshake, and each HTTP/1 request head from its first byte (the
    /// first request's from the connection's start).
    pub header_read_timeout: Duration,
}

impl ConnSettings {
    pub fn new(
        cfg: &ServerConfig,
        tls: Option<Arc<ArcSwap<rustls::ServerConfig>>>,
    ) -> ConnSettings {
        // One set of HTTP/1 settings for both servers (their builder types differ).
        macro_rules! http1_settings {
            ($b:expr) => {
                $b.timer(TokioTimer::new())
                    // Enforced by `supervise`'s tick instead. hyper's own timer runs from the
                    // end of one response to the next head, so it also closed idle keep-alive
                    // connections after `header_read_timeout` (not `idle_timeout`), and it arms
                    // and drops a timer on every request (its cost: BENCHMARKS.md).
                    .header_read_timeout(None::<Duration>)
                    .max_buf_size(cfg.max_header_bytes.max(8192))
                    .keep_alive(true)
                    .writev(true)
                    // hyper's default reads while a request waits on the upstream, to see the
                    // client close. That read reserves room in the connection's read buffer,
                    // which the request in flight still shares (its headers point into it): a
                    // fresh 8 KiB allocation and a free on every request (BENCHMARKS.md).
                    // The tick's gone-client check (`GoneWatch`)
                    // takes its place, and a client that only shuts down its sending side now
                    // gets its answer.
                    .half_close(true)
            };
        }
        let mut builder = auto::Builder::new(TokioExecutor::new());
        http1_settings!(builder.http1());
        let mut http1 = http1::Builder::new();
        http1_settings!(http1);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(cfg.max_header_bytes as u32)
            .max_concurrent_streams(256)
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20));
        ConnSettings {
            builder,
            http1,
            tls,
            idle_timeout: cfg.idle_timeout,
            header_read_timeout: cfg.header_read_timeout,
        }
    }
}

/// The connections one worker is serving, so that its drain can tell how many it had to cut.
#[derive(Clone, Default)]
pub struct OpenConnections(Arc<AtomicUsize>);

impl OpenConnections {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    fn hold(&self) -> OpenConnection {
        self.0.fetch_add(1, Ordering::AcqRel);
        OpenConnection(self.0.clone())
    }
}

/// One connection counted in [`OpenConnections`] until it is dropped.
struct OpenConnection(Arc<AtomicUsize>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Accept until `shutdown` turns true. Connections then get a graceful shutdown signal; the
/// caller waits for them to drain (each holds a permit of `limit`, and is counted in `open`).
pub async fn serve(
    worker: Arc<ArcSwap<Worker>>,
    listener: TcpListener,
    settings: Arc<ConnSettings>,
    limit: Arc<Semaphore>,
    open: OpenConnections,
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
        let counted = open.hold();
        tokio::spawn(async move {
            serve_connection(worker, stream, remote, settings, shutdown).await;
            drop(counted);
            drop(permit);
        });
    }
}

async fn serve_connection(
    worker: Arc<ArcSwap<Worker>>,
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    settings: Arc<ConnSettings>,
    shutdown: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let ip = HeaderValue::from_str(&remote.ip().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    // As of this connection's start: a reload applies to the next connections.
    let trusted = worker
        .load()
        .runtime
        .config
        .server
        .trusted_proxies
        .iter()
        .any(|c| c.contains(remote.ip()));
    // Cleartext: HTTP/1 unless the first bytes may be the h2c preface.
    let http1_only = if settings.tls.is_none() {
        match speaks_http1(&stream, settings.header_read_timeout).await {
            Some(h1) => h1,
            // Closed, or silent for header_read_timeout: what the head watch would do.
            None => return,
        }
    } else {
        false
    };
    let io = IdleIo::new(
        stream,
        activity.clone(),
        if http1_only { SNIFFED } else { 0 },
    );
    match &settings.tls {
        None => {
            let peer = Arc::new(Peer::new(Downstream::new(ip, false, trusted)));
            drive(worker, io, peer, activity, &settings, shutdown, http1_only).await;
        }
        Some(current) => {
            // The certificate as of this connection: a rotation applies to the next ones.
            let acceptor = TlsAcceptor::from(current.load_full());
            let tls = match tokio::time::timeout(settings.header_read_timeout, acceptor.accept(io))
                .await
            {
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
            if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                activity.set_http2();
            }
            let peer = Arc::new(Peer::new(Downstream::new(ip, true, trusted)));
            drive(worker, tls, peer, activity, &settings, shutdown, false).await;
        }
    }
}

async fn drive<I>(
    worker: Arc<ArcSwap<Worker>>,
    io: I,
    peer: Arc<Peer>,
    activity: Arc<Activity>,
    settings: &ConnSettings,
    shutdown: watch::Receiver<bool>,
    http1_only: bool,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let in_flight = activity.clone();
    let conn_peer = peer.clone();
    let upstream_timeout = worker.load().upstream.as_ref().map(|u| u.timeout());
    let svc = service_fn(move |req| {
        // The worker as of this request: a new runtime applies from the next request on,
        // and this one finishes on the worker it started with.
        let worker = worker.load_full();
        let peer = peer.clone();
        let guard = InFlight::enter(in_flight.clone());
        async move {
            let r = pipeline::handle(&worker, &peer, req).await;
            drop(guard);
            r
        }
    });
    // The same supervision for either server; only the connection's type differs. Both
    // hand a connection over on a protocol upgrade (`upstream/upgrade.rs`).
    macro_rules! serve_with {
        ($conn:expr) => {
            supervise(
                $conn,
                |c| c.graceful_shutdown(),
                settings,
                activity,
                &conn_peer,
                upstream_timeout,
                shutdown,
            )
            .await
        };
    }
    if http1_only {
        serve_with!(settings
            .http1
            .serve_connection(TokioIo::new(io), svc)
            .with_upgrades());
    } else {
        serve_with!(settings
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), svc));
    }
}

/// Serve `conn` until it ends, enforcing the header read, idle and (HTTP/1) upstream timeouts
/// on one tick, and starting a graceful shutdown (`graceful`) on shutdown or idleness.
async fn supervise<C, E>(
    conn: C,
    graceful: fn(Pin<&mut C>),
    settings: &ConnSettings,
    activity: Arc<Activity>,
    conn_peer: &Peer,
    upstream_timeout: Option<Duration>,
    mut shutdown: watch::Receiver<bool>,
) where
    C: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(conn);
    let idle = settings.idle_timeout;
    let head_timeout = settings.header_read_timeout;
    // The timeouts are noticed one tick late at most, and a started head or upstream wait one
    // tick late: a connection closes within `idle` plus two ticks (1.25 x idle) of quiet, a
    // head that has not arrived whole within `header_read_timeout` plus two ticks (1.5 x), and
    // an HTTP/1 request's upstream wait ends (504) within its timeout plus two ticks (1.5 x).
    let mut period = (idle / 8).min(head_timeout / 4);
    if let Some(t) = upstream_timeout {
        period = period.min(t / 4);
    }
    let mut tick = tokio::time::interval(period.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut quiet_since = Instant::now();
    let mut heads = HeadWatch::new(quiet_since);
    let mut gone = GoneWatch::default();
    let mut upstream_wait = DeadlineWatch::default();
    let mut closing = *shutdown.borrow();
    if closing {
        graceful(conn.as_mut());
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
                graceful(conn.as_mut());
            }
            _ = tick.tick() => {
                if let Some(t) = upstream_timeout {
                    conn_peer.downstream.deadline.check(&mut upstream_wait, t);
                }
                gone.check(&activity);
                if heads.overdue(&activity, head_timeout) {
                    // What hyper's own header timeout did: close without a response.
                    tracing::debug!("request head not received within header_read_timeout");
                    break;
                }
                if !closing
                    && activity.idle_for(&mut quiet_since) >= idle
                    && activity.in_flight.load(Ordering::Acquire) == 0
                {
                    closing = true;
                    graceful(conn.as_mut());
                }
            }
        }
    }
}

/// Wait for the connection's first bytes and tell whether they rule out the h2c preface
/// (`Some(true)`: HTTP/1), or may be it (`Some(false)`: the auto builder reads on and
/// decides). `None`: closed, or nothing within `timeout` (closed as the head watch would).
/// The bytes are peeked, not read: the server reads them as usual.
async fn speaks_http1(stream: &tokio::net::TcpStream, timeout: Duration) -> Option<bool> {
    let mut first = [0u8; H2_PREFACE_START.len()];
    let n = match tokio::time::timeout(timeout, stream.peek(&mut first)).await {
        Ok(Ok(n)) if n > 0 => n,
        _ => return None,
    };
    Some(first[..n] != H2_PREFACE_START[..n])
}
