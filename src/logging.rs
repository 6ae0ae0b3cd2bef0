//! Logs (SPEC section 15): text or JSON lines on stderr, ANSI colours only when stderr is a
//! terminal, the level from `[log] level` unless `RUST_LOG` is set, and changeable by a reload.
//! No token ever reaches a log line: the request path logs fingerprints at most.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

use crate::config::{LogConfig, LogFormat};

/// Changes the level of the installed logger.
pub struct LogLevel {
    handle: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` was set: it wins over the config, now and on reloads.
    from_env: bool,
}

impl LogLevel {
    /// Apply `[log] level` from a reloaded config (unless `RUST_LOG` decides).
    pub fn set(&self, level: &str) {
        if self.from_env {
            return;
        }
        match EnvFilter::try_new(level) {
            Ok(f) => {
                if let Err(e) = self.handle.reload(f) {
                    tracing::warn!(error = %e, "log level unchanged");
                }
            }
            Err(e) => tracing::warn!(error = %e, "log level unchanged"),
        }
    }
}

/// Install the process's logger. `None` when one is installed already (tests).
pub fn init(cfg: &LogConfig) -> Option<LogLevel> {
    let env = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let filter = env
        .as_deref()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(&cfg.level));
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::stderr().is_terminal();
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match cfg.format {
        LogFormat::Text => registry
            .with(fmt::layer().with_writer(std::io::stderr).with_ansi(ansi))
            .try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    installed.ok().map(|()| LogLevel {
        handle,
        from_env: env.is_some(),
    })
}
