//! What every command shares: the usage exit code, the two ways a command reports an error
//! (exit 64 for bad usage or an invalid config, 1 for anything else), loading a config, and
//! the SIGINT/SIGTERM handlers `run` and `dev` wait on. A leaf module, so the command files
//! import it as a sibling rather than reaching into `cli/mod.rs`.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Config;

pub const EXIT_USAGE: u8 = 64;

pub(super) fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(EXIT_USAGE)
}

pub(super) fn failure(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(1)
}

/// Load a config or print the error (file and key) and give exit code 64.
pub fn load_config(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| usage_error(format!("invalid config: {e}")))
}

/// SIGINT and SIGTERM handlers, registered when created (so a signal that arrives right after
/// start-up is caught, not fatal). Create inside a tokio runtime context.
pub struct ShutdownSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    pub fn install() -> std::io::Result<ShutdownSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(ShutdownSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Wait for SIGINT or SIGTERM.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
