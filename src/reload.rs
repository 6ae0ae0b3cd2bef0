//! Reload (SPEC section 15): a new config replaces the running one without a restart. It is
//! validated, turned into the next runtime (`runtime::next`: unchanged issuers keep their keys,
//! refreshers and cached results), and swapped in: the shared runtime first, then each
//! worker's, so requests in flight finish on the runtime they started with and no connection
//! is touched. What only a restart can change is refused; an invalid config is logged and the
//! running one kept.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use metrics::{counter, gauge, Counter, Gauge};
use tokio::runtime::Handle;
use tokio::signal::unix::Signal;
use tokio::sync::watch;

use crate::bound::BoundWatch;
use crate::config::{Config, ConfigError};
use crate::jwks::{self, Issuer};
use crate::logging::LogLevel;
use crate::metrics as m;
use crate::pipeline::Worker;
use crate::runtime::{self, Shared};
use crate::tls::TlsError;

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("invalid config: {0}")]
    Invalid(#[from] ConfigError),
    #[error("{0} cannot change without a restart; the running config is kept")]
    NeedsRestart(&'static str),
    #[error("{0}")]
    Tls(#[from] TlsError),
}

/// The key refreshers, one per key source of the current runtime, on the control thread.
/// Dropping a refresher's sender stops it.
pub struct Refreshers {
    handle: Handle,
    running: Vec<(Arc<Issuer>, watch::Sender<bool>)>,
}

impl Refreshers {
    pub fn new(handle: Handle) -> Refreshers {
        Refreshers {
            handle,
            running: Vec::new(),
        }
    }

    /// Run a refresher for each of `wanted` and for nothing else.
    pub fn sync(&mut self, wanted: &[Arc<Issuer>]) {
        self.running
            .retain(|(i, _)| wanted.iter().any(|w| Arc::ptr_eq(w, i)));
        for w in wanted {
            if !self.running.iter().any(|(i, _)| Arc::ptr_eq(w, i)) {
                let (tx, rx) = watch::channel(false);
                self.handle.spawn(jwks::run_refresher(w.clone(), rx));
                self.running.push((w.clone(), tx));
            }
        }
    }

    /// The control thread's runtime.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Stop every refresher.
    pub fn stop(&mut self) {
        for (_, tx) in self.running.drain(..) {
            let _ = tx.send(true);
        }
    }
}

/// Swaps runtimes: holds every worker's slot and the refreshers.
pub struct Reloader {
    shared: Arc<Shared>,
    workers: Vec<Arc<ArcSwap<Worker>>>,
    refreshers: Mutex<Refreshers>,
    /// The bound-object watches, while some issuer has `bound_objects`: kept across reloads
    /// that keep the `[kubernetes]` connection.
    bound: Mutex<Option<BoundWatch>>,
    /// The logger's level, when this process installed the logger.
    log_level: Mutex<Option<LogLevel>>,
    ok: Counter,
    error: Counter,
    last_success: Gauge,
}

impl Reloader {
    pub fn new(
        shared: Arc<Shared>,
        workers: Vec<Arc<ArcSwap<Worker>>>,
        refreshers: Refreshers,
        bound: Option<BoundWatch>,
    ) -> Reloader {
        Reloader {
            shared,
            workers,
            refreshers: Mutex::new(refreshers),
            bound: Mutex::new(bound),
            log_level: Mutex::new(None),
            ok: counter!(m::CONFIG_RELOADS_TOTAL, "result" => "ok"),
            error: counter!(m::CONFIG_RELOADS_TOTAL, "result" => "error"),
            last_success: gauge!(m::CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS),
        }
    }

    /// Let reloads change the level of the logger this process installed.
    pub fn follow_log_level(&self, level: LogLevel) {
        *self.log_level.lock().unwrap_or_else(|e| e.into_inner()) = Some(level);
    }

    /// Read `path` and reload from it; log and count the result.
    pub fn reload_file(&self, path: &Path) -> Result<(), ReloadError> {
        let loaded = Config::load(path).and_then(|c| match c.missing_files().into_iter().next() {
            Some(e) => Err(e),
            None => Ok(c),
        });
        let result = match loaded {
            Ok(c) => self.apply(c),
            Err(e) => {
                self.error.increment(1);
                Err(e.into())
            }
        };
        match &result {
            Ok(()) => tracing::info!(config = %path.display(), "config reloaded"),
            Err(e) => tracing::error!(error = %e, "config reload refused"),
        }
        result
    }

    /// Swap in the runtime of `config`, or leave the running one as it is.
    pub fn apply(&self, config: Config) -> Result<(), ReloadError> {
        let result = self.swap(config);
        match &result {
            Ok(()) => {
                self.ok.increment(1);
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                self.last_success.set(now);
            }
            Err(_) => self.error.increment(1),
        }
        result
    }

    fn swap(&self, config: Config) -> Result<(), ReloadError> {
        // One reload at a time: the refreshers follow the runtime that was stored last.
        let mut refreshers = self.refreshers.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.shared.runtime.load_full();
        if let Some(key) = needs_restart(&current.config, &config) {
            return Err(ReloadError::NeedsRestart(key));
        }
        for key in applies_at_restart(&current.config, &config) {
            tracing::warn!(key, "this setting takes effect at the next restart");
        }
        // Bound-object watches: kept while wanted with the same connection, started when
        // turned on (or reconnected elsewhere), stopped when turned off.
        let mut bound = self.bound.lock().unwrap_or_else(|e| e.into_inner());
        let wanted = crate::bound::wanted(&config);
        let kept = bound
            .as_ref()
            .filter(|b| wanted && b.serves(&config.kubernetes))
            .map(|b| b.objects.clone());
        let fresh = (wanted && kept.is_none())
            .then(|| BoundWatch::start(&config.kubernetes, refreshers.handle()));
        let objects = kept.or_else(|| fresh.as_ref().map(|f| f.objects.clone()));
        let next = Arc::new(runtime::next(
            config,
            self.shared.proxy_token.clone(),
            &current,
            objects,
        )?);
        self.shared.runtime.store(next.clone());
        for slot in &self.workers {
            slot.store(Arc::new(Worker::with_runtime(
                self.shared.clone(),
                next.clone(),
            )));
        }
        for gone in current.auth.issuers.dropped_by(&next.auth.issuers) {
            gone.retire();
        }
        refreshers.sync(&next.key_sources());
        if !wanted {
            *bound = None;
        } else if let Some(f) = fresh {
            *bound = Some(f);
        }
        if let Some(level) = &*self.log_level.lock().unwrap_or_else(|e| e.into_inner()) {
            level.set(&next.config.log.level);
        }
        Ok(())
    }

    /// Stop the refreshers and the watches (shutdown).
    pub fn stop(&self) {
        self.refreshers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stop();
        *self.bound.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// How often the config file is read to see whether it changed.
pub const FILE_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// The content that decides whether to reload: the config file, then the running config's
/// `authentication_config` file, if any. `None` while the config file cannot be read.
fn watched(path: &Path, reloader: &Reloader) -> Option<Vec<u8>> {
    let mut content = std::fs::read(path).ok()?;
    if let Some(authn) = &reloader.shared.runtime.load().config.authentication_config {
        content.push(0);
        content.extend(std::fs::read(authn).unwrap_or_default());
    }
    Some(content)
}

/// Reload on every SIGHUP, and whenever the content of `path` or of the running config's
/// `authentication_config` changes (a ConfigMap update swaps the file through a symlink; its
/// content is what is compared). Runs until dropped.
pub async fn follow(path: PathBuf, reloader: Arc<Reloader>, mut hangup: Signal) {
    let mut seen = watched(&path, &reloader);
    let mut tick = tokio::time::interval(FILE_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                tracing::info!(config = %path.display(), "SIGHUP: reloading");
                seen = watched(&path, &reloader);
            }
            _ = tick.tick() => {
                let now = watched(&path, &reloader);
                if now.is_none() || now == seen {
                    continue;
                }
                tracing::info!(config = %path.display(), "config file changed: reloading");
                // What was read, not what is there after the reload: a write that lands
                // meanwhile is seen at the next tick. A new config naming another
                // authentication_config differs at the next tick too: one more reload.
                seen = now;
            }
        }
        // Errors are logged and counted by the reloader; the running config stays.
        let _ = reloader.reload_file(&path);
    }
}

/// The first setting that differs and that a running proxy cannot change: its sockets and
/// threads are made at start.
fn needs_restart(old: &Config, new: &Config) -> Option<&'static str> {
    if old.server.listen != new.server.listen {
        return Some("server.listen");
    }
    if old.server.workers != new.server.workers {
        return Some("server.workers");
    }
    if old.admin.listen != new.admin.listen {
        return Some("admin.listen");
    }
    None
}

/// Settings of the listener, read when it starts: a changed value is taken, but applies from
/// the next restart.
fn applies_at_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let (o, n) = (&old.server, &new.server);
    let mut keys = Vec::new();
    if o.tls != n.tls {
        keys.push("server.tls_cert_file / tls_key_file / client_ca_file");
    }
    if o.header_read_timeout != n.header_read_timeout {
        keys.push("server.header_read_timeout");
    }
    if o.idle_timeout != n.idle_timeout {
        keys.push("server.idle_timeout");
    }
    if o.max_connections != n.max_connections {
        keys.push("server.max_connections");
    }
    keys
}
