//! `brain-heartbeat`: see the library for what a run does.

use std::process::ExitCode;

use clap::Parser;

/// Exit code of bad usage (unknown flag, bad value): an operator error, as a configuration
/// error is (STYLE §8), not clap's own 2, which here means an unexpected failure.
const EXIT_USAGE: u8 = 1;

fn main() -> ExitCode {
    let cli = match brain_heartbeat::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // `--help` and `--version` are "errors" to clap, printed on stdout; the rest on
            // stderr. Printing can only fail on a closed stream, which changes nothing here.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BRAIN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    brain_heartbeat::run(&cli)
}
