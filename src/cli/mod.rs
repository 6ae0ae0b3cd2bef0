//! The command line (SPEC section 2). `main.rs` parses; everything here is callable from tests.
//!
//! `args` holds the clap argument structs and `common` what the commands share (exit codes,
//! error reporting, config loading, signal handling); `dev`, `mint` (with `keygen`) and
//! `inspect` hold one command each. Every public item is re-exported here, so
//! `crate::cli::X` names it wherever it lives.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod args;
mod common;
mod dev;
mod inspect;
mod mint;
mod report;

pub use args::{ConfigArg, DevArgs, InspectArgs, KeygenArgs, MintArgs};
pub use common::{load_config, ShutdownSignals, EXIT_USAGE};
pub use dev::{dev, DEV_AUDIENCE};
pub use inspect::inspect;
pub use mint::{keygen, mint};
pub use report::explain;

use common::{failure, usage_error};

#[derive(Parser, Debug)]
#[command(
    name = "tokenreview-proxy",
    version,
    about = "Authenticating reverse proxy and TokenReview server for Kubernetes service-account tokens and OIDC JWTs"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the proxy.
    Run(ConfigArg),
    /// Load and validate a config; print the effective summary. Exit 0 or 64.
    CheckConfig(ConfigArg),
    /// Embedded demo: in-process issuer, echo upstream and proxy on loopback; prints a token
    /// and ready-to-paste curl and oha commands. Runs until Ctrl-C.
    Dev(DevArgs),
    /// Sign test tokens with Kubernetes-shaped (or, with --oidc, OIDC-shaped) claims, one per
    /// line.
    Mint(Box<MintArgs>),
    /// Decode a token without trusting it; with --config, verify it and say why it would be
    /// rejected.
    Inspect(InspectArgs),
    /// Generate a signing key (PKCS#8 PEM) and its public JWKS, for `mint` and load tests.
    Keygen(KeygenArgs),
}

pub fn check_config(args: &ConfigArg) -> ExitCode {
    match load_config(&args.config) {
        Ok(c) => {
            let (missing, pod_only) = c.missing_files_by_place();
            if !missing.is_empty() {
                for e in &missing {
                    eprintln!("invalid config: {e}");
                }
                return ExitCode::from(EXIT_USAGE);
            }
            print!("{}", c.summary());
            for e in pod_only {
                println!("warning: {e} (exists only in the pod; must exist when the proxy runs)");
            }
            for w in c.warnings() {
                println!("warning: {w}");
            }
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

pub fn run(args: &ConfigArg) -> ExitCode {
    let config = match load_config(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(e) = config.missing_files().into_iter().next() {
        return usage_error(format!("invalid config: {e}"));
    }
    let log_level = crate::logging::init(&config.log);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return failure(e),
    };
    let (mut signals, hangup) = {
        let _guard = rt.enter();
        use tokio::signal::unix::{signal, SignalKind};
        match (ShutdownSignals::install(), signal(SignalKind::hangup())) {
            (Ok(s), Ok(h)) => (s, h),
            (Err(e), _) | (_, Err(e)) => {
                return failure(format!("cannot install signal handlers: {e}"))
            }
        }
    };
    let running = match crate::app::start(config) {
        Ok(r) => r,
        Err(e) => return failure(e),
    };
    tracing::info!(listen = %running.addr, admin = %running.admin_addr, "tokenreview-proxy started");
    if let Some(level) = log_level {
        running.reloader().follow_log_level(level);
    }
    let follow = rt.spawn(crate::reload::follow(
        args.config.clone(),
        running.reloader(),
        hangup,
    ));
    rt.block_on(signals.recv());
    follow.abort();
    // Not ready at once, still serving for shutdown_delay (a second signal cuts it short),
    // then the drain.
    running.mark_not_ready();
    let delay = running.runtime().config.server.shutdown_delay;
    tracing::info!(
        ?delay,
        "stopping: /readyz is 503; still accepting for shutdown_delay"
    );
    rt.block_on(async {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = signals.recv() => {}
        }
    });
    tracing::info!("shutting down");
    running.shutdown();
    ExitCode::SUCCESS
}
