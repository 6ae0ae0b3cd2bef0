//! `tokenreview-proxy`: parse the command line, set up logging, call into the library.
//! Exit codes: 0 success; 64 bad usage or invalid config; 1 any other failure.

use std::process::ExitCode;

use clap::Parser;
use tokenreview_proxy::cli::{self, Cli, Command, EXIT_USAGE};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // `run` sets up logging from its config's `[log]`; the other commands log as text.
    if !matches!(cli.command, Command::Run(_)) {
        tokenreview_proxy::logging::init(&tokenreview_proxy::config::LogConfig::default());
    }
    match &cli.command {
        Command::Run(a) => cli::run(a),
        Command::CheckConfig(a) => cli::check_config(a),
        Command::Dev(a) => cli::dev(a),
        Command::Mint(a) => cli::mint(a),
        Command::Inspect(a) => cli::inspect(a),
        Command::Keygen(a) => cli::keygen(a),
    }
}
