//! The command line: clap types mirroring the flags (SPEC §5). [`crate::config`] turns them
//! into settings; [`crate::commands`] runs them.

use std::ffi::OsString;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use shared_proto::env_vars;
use tracing_subscriber::EnvFilter;

use crate::commands::{self, UserError};

/// Exit code of an operator error: bad flags or input, bad configuration (STYLE §8).
const EXIT_USER: u8 = 1;
/// Exit code of an unexpected failure.
const EXIT_FAILURE: u8 = 2;

/// The whole program: parses `args` (program name first), installs logging on stderr, runs
/// the command. Returns 0 when it succeeded, 1 for an operator error (bad usage included:
/// clap's own code 2 is reserved for failures here), 2 for an unexpected failure. `--help`
/// and `--version` print on stdout and return 0.
pub fn main(args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version are "errors" to clap; printing can only fail on a closed
            // stream, which changes nothing here.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USER)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(commands::execute(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            if e.downcast_ref::<UserError>().is_some() {
                ExitCode::from(EXIT_USER)
            } else {
                ExitCode::from(EXIT_FAILURE)
            }
        }
    }
}

/// Brain's server: ingest, dashboard and operator commands.
#[derive(Debug, Parser)]
#[command(name = "brain-server", version, about)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Database: `postgres://…` or `sqlite://path`; unset means `<data-dir>/brain.db`.
    #[arg(long, global = true, env = env_vars::DATABASE_URL, hide_env_values = true)]
    pub database_url: Option<String>,

    /// Data directory: embedded database and generated admin token [default: ./brain-data].
    #[arg(long, global = true, env = env_vars::BRAIN_DATA_DIR)]
    pub data_dir: Option<PathBuf>,

    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, global = true, env = env_vars::BRAIN_LISTEN)]
    pub listen: Option<String>,

    /// Admin bearer token for /v1/dashboard/*; unset reads or generates `<data-dir>/admin_token`.
    #[arg(long, global = true, env = env_vars::BRAIN_ADMIN_TOKEN, hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Sustained ingest requests per second per API key [default: 200].
    #[arg(long, global = true, env = env_vars::BRAIN_RATE_LIMIT_PER_SEC)]
    pub rate_limit_per_sec: Option<NonZeroU32>,

    /// Ingest requests per API key allowed in a burst [default: 400].
    #[arg(long, global = true, env = env_vars::BRAIN_RATE_LIMIT_BURST)]
    pub rate_limit_burst: Option<NonZeroU32>,
}

/// The operator commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Mint an API key for a customer (created if missing); prints only the plaintext key.
    MintKey {
        /// The customer's id, e.g. `acme`.
        customer_id: String,
        /// The customer's display name (used when the customer is created).
        name: String,
        /// A label for the key, e.g. `box-1`.
        #[arg(long)]
        label: Option<String>,
        /// The key environment (`dev`, `prod`, …): 1–16 of [a-z0-9].
        #[arg(long = "env", env = env_vars::BRAIN_KEY_ENV, default_value = "dev")]
        key_env: String,
    },
    /// Revoke a key by its id; ingest refuses it within 5 seconds.
    RevokeKey {
        /// The key's id (`key_…`, see `keys`).
        key_id: String,
    },
    /// List keys (never plaintext), of one customer or of all.
    Keys {
        /// Only this customer's keys.
        customer_id: Option<String>,
    },
    /// Check or repair the rollup tables the dashboard reads (docs/rollups.md).
    Rollups {
        /// What to do with them.
        #[command(subcommand)]
        action: RollupsCommand,
    },
}

/// `brain-server rollups …`.
#[derive(Debug, Subcommand)]
pub enum RollupsCommand {
    /// Recompute every rollup from `events` and print each difference (exit 1 on any).
    Verify,
    /// Replace every rollup with the recomputation from `events`, in one transaction.
    Rebuild,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}
