//! Start, run and stop: the runtime built from the config (`runtime::build`), one worker
//! thread per core (each a current-thread tokio runtime with its own `SO_REUSEPORT` listener;
//! HTTP/1 clients get an upstream connection each, HTTP/2 clients share the worker's own pool
//! — no work stealing, no shared pool lock), a control thread for refreshers, the admin
//! listener and housekeeping, and a bounded graceful drain.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use http::HeaderValue;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{watch, Semaphore};

use crate::bound::{self, BoundWatch};
use crate::config::Config;
use crate::listener::{self, ConnSettings, OpenConnections};
use crate::metrics::RequestMetrics;
use crate::pipeline::Worker;
use crate::reload::{Refreshers, Reloader};
use crate::runtime::{self, Runtime, Shared};
use crate::{admin, metrics, tls};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    #[error("upstream.token_file {path}: {message}")]
    TokenFile { path: String, message: String },
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
}

/// A running proxy. Dropping it does not stop it; call [`Running::shutdown`].
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub shared: Arc<Shared>,
    reloader: Arc<Reloader>,
    shutdown_tx: watch::Sender<bool>,
    /// Stops the control thread (admin listener, housekeeping) once the workers are done:
    /// the admin port answers until the end.
    control_stop: watch::Sender<bool>,
    /// Each returns the number of its connections still open when its drain ended.
    workers: Vec<JoinHandle<usize>>,
    control: Option<JoinHandle<()>>,
}

fn read_token_file(path: &PathBuf) -> Result<HeaderValue, StartError> {
    let err = |message: String| StartError::TokenFile {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    HeaderValue::try_from(format!("Bearer {}", text.trim()))
        .map_err(|_| err("content is not a valid header value".into()))
}

fn thread_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Start everything and return once the listeners are bound (keys may not have arrived yet:
/// `/readyz` says when they have).
pub fn start(config: Config) -> Result<Running, StartError> {
    let prometheus = metrics::install();
    let proxy_token = Arc::new(ArcSwapOption::empty());
    let token_file = config.upstream.as_ref().and_then(|u| u.token_file.clone());
    if let Some(path) = &token_file {
        proxy_token.store(Some(Arc::new(read_token_file(path)?)));
    }
    let tls = match &config.server.tls {
        Some(t) => Some(Arc::new(ArcSwap::from_pointee(tls::server_config(
            &t.cert_file,
            &t.key_file,
            t.client_ca_file.as_deref(),
        )?))),
        None => None,
    };
    let cert_files = config.server.tls.clone().zip(tls.clone());

    // Bind everything before spawning anything, so errors surface here.
    let listen = config.server.listen;
    let listen_error = |source| StartError::Bind {
        addr: listen,
        what: "server.listen",
        source,
    };
    if listen.port() != 0 {
        listener::check_unused(listen).map_err(listen_error)?;
    }
    let first = listener::bind_reuseport(listen).map_err(listen_error)?;
    let addr = first.local_addr().map_err(listen_error)?;
    let mut sockets = vec![first];
    for _ in 1..config.server.workers {
        sockets.push(listener::bind_reuseport(addr).map_err(listen_error)?);
    }
    let admin_std =
        std::net::TcpListener::bind(config.admin.listen).map_err(|source| StartError::Bind {
            addr: config.admin.listen,
            what: "admin.listen",
            source,
        })?;
    admin_std
        .set_nonblocking(true)
        .map_err(StartError::Thread)?;
    let admin_addr = admin_std.local_addr().map_err(StartError::Thread)?;

    let max_connections = config.server.max_connections;
    let grace = config.server.shutdown_grace;
    let settings = Arc::new(ConnSettings::new(&config.server, tls));
    // The control thread's runtime runs the refreshers and the bound-object watches; tasks
    // spawned now start when the thread does.
    let control_rt = thread_runtime().map_err(StartError::Thread)?;
    let bound =
        bound::wanted(&config).then(|| BoundWatch::start(&config.kubernetes, control_rt.handle()));
    let objects = bound.as_ref().map(|b| b.objects.clone());
    let first_runtime = runtime::build(config, proxy_token.clone(), objects)?;
    let issuers = first_runtime.key_sources();
    let shared = Arc::new(Shared {
        runtime: ArcSwap::from_pointee(first_runtime),
        shutting_down: Default::default(),
        proxy_token: proxy_token.clone(),
        metrics: RequestMetrics::new(),
    });
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (control_stop, control_rx) = watch::channel(false);
    let conn_limit = Arc::new(Semaphore::new(max_connections));

    // Control thread: refreshers, admin, housekeeping.
    let mut refreshers = Refreshers::new(control_rt.handle().clone());
    refreshers.sync(&issuers);
    // Each worker's slot: its worker is replaced whole when the runtime is.
    let slots: Vec<Arc<ArcSwap<Worker>>> = sockets
        .iter()
        .map(|_| Arc::new(ArcSwap::from_pointee(Worker::new(shared.clone()))))
        .collect();
    let reloader = Arc::new(Reloader::new(
        shared.clone(),
        slots.clone(),
        refreshers,
        bound,
    ));
    let control = {
        let shared = shared.clone();
        let shutdown = control_rx;
        let rt = control_rt;
        std::thread::Builder::new()
            .name("trp-control".into())
            .spawn(move || {
                rt.block_on(async move {
                    match tokio::net::TcpListener::from_std(admin_std) {
                        Ok(l) => {
                            tokio::spawn(admin::serve(
                                l,
                                shared.clone(),
                                prometheus.clone(),
                                shutdown.clone(),
                            ));
                        }
                        Err(e) => tracing::error!(error = %e, "admin listener failed"),
                    }
                    if let Some(path) = token_file {
                        tokio::spawn(watch_token_file(path, proxy_token, shutdown.clone()));
                    }
                    if let Some((files, slot)) = cert_files {
                        tokio::spawn(tls::follow_files(files, slot, shutdown.clone()));
                    }
                    housekeeping(shared, prometheus, shutdown).await;
                });
            })
            .map_err(StartError::Thread)?
    };

    let mut workers = Vec::new();
    for (i, (socket, slot)) in sockets.into_iter().zip(slots).enumerate() {
        let settings = settings.clone();
        let limit = conn_limit.clone();
        let shutdown = shutdown_rx.clone();
        let rt = thread_runtime().map_err(StartError::Thread)?;
        let handle = std::thread::Builder::new()
            .name(format!("trp-worker-{i}"))
            .spawn(move || {
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(socket) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(error = %e, "listener setup failed");
                            return 0;
                        }
                    };
                    let open = OpenConnections::default();
                    listener::serve(slot, listener, settings, limit, open.clone(), shutdown).await;
                    // Keep the runtime alive while connections drain, bounded by the grace.
                    let deadline = Instant::now() + grace;
                    while open.count() > 0 && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    // Counted here: the connections still open end with this runtime.
                    open.count()
                })
            })
            .map_err(StartError::Thread)?;
        workers.push(handle);
    }
    Ok(Running {
        addr,
        admin_addr,
        shared,
        reloader,
        shutdown_tx,
        control_stop,
        workers,
        control: Some(control),
    })
}

impl Running {
    /// The runtime serving now.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.shared.runtime.load_full()
    }

    /// What replaces the runtime on a reload (SIGHUP, a changed config file, tests).
    pub fn reloader(&self) -> Arc<Reloader> {
        self.reloader.clone()
    }

    /// Begin shutdown without waiting (tests; a second caller of `shutdown` still drains).
    /// Turn `/readyz` to 503 and keep serving: load balancers and endpoint controllers stop
    /// sending while the listeners still accept (`server.shutdown_delay`).
    pub fn mark_not_ready(&self) {
        self.shared.shutting_down.store(true, Ordering::Release);
    }

    pub fn signal_shutdown(&self) {
        self.shared.shutting_down.store(true, Ordering::Release);
        let _ = self.shutdown_tx.send(true);
        let _ = self.control_stop.send(true);
    }

    /// Stop accepting, let in-flight requests finish for up to `server.shutdown_grace`, stop
    /// the background tasks. Returns the number of connections still open when the grace
    /// period ended, which were cut (0 = clean drain).
    pub fn shutdown(mut self) -> usize {
        self.shared.shutting_down.store(true, Ordering::Release);
        let grace = self.shared.runtime.load().config.server.shutdown_grace;
        let started = Instant::now();
        let _ = self.shutdown_tx.send(true);
        let cut: usize = self.workers.drain(..).map(|w| w.join().unwrap_or(0)).sum();
        if cut > 0 {
            tracing::warn!(
                cut,
                ?grace,
                "shutdown grace elapsed with connections still open; closed them"
            );
        } else {
            tracing::info!(elapsed = ?started.elapsed(), "drained");
        }
        self.reloader.stop();
        let _ = self.control_stop.send(true);
        if let Some(c) = self.control.take() {
            let _ = c.join();
        }
        cut
    }
}

/// Periodic upkeep on the control thread: the cache's pending work, the cache-size gauge, and
/// the exporter's histogram buffers (every observation is buffered until drained: without
/// this, a proxy nobody scrapes grew by ~20 bytes per request).
async fn housekeeping(
    shared: Arc<Shared>,
    prometheus: PrometheusHandle,
    mut shutdown: watch::Receiver<bool>,
) {
    let gauge = ::metrics::gauge!(crate::metrics::VERIFY_CACHE_ENTRIES);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
        let runtime = shared.runtime.load_full();
        runtime.auth.run_cache_maintenance().await;
        gauge.set(runtime.auth.cache_entries() as f64);
        prometheus.run_upkeep();
    }
}

/// Re-read `upstream.token_file` when it changes (a projected token rotates); keep the last
/// good value when it cannot be read.
async fn watch_token_file(
    path: PathBuf,
    slot: Arc<ArcSwapOption<HeaderValue>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.changed() => return,
        }
        match read_token_file(&path) {
            Ok(v) => {
                let changed = slot.load().as_deref() != Some(&v);
                if changed {
                    slot.store(Some(Arc::new(v)));
                    tracing::info!(path = %path.display(), "upstream token_file reloaded");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "upstream.token_file unreadable; keeping the previous credential")
            }
        }
    }
}
