//! The command line: clap types mirroring the flags (SPEC §5). [`crate::config`] turns them
//! into settings; [`crate::commands`] runs them.

use std::ffi::OsString;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
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

    /// Data directory: embedded database and generated admin token [default: /var/lib/brain
    /// when it exists and is writable, else $XDG_DATA_HOME/brain, else ~/.local/share/brain].
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

    /// Days of raw events to keep: `serve` prunes older ones daily, `prune` uses it when
    /// --older-than-days is not given; 0 keeps forever [default: 0].
    #[arg(long, global = true, env = env_vars::BRAIN_RETENTION_DAYS)]
    pub retention_days: Option<u32>,
}

/// The operator commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Mint an API key for a customer (created if missing); prints only the plaintext key.
    /// For an existing customer the stored name is kept (a different NAME is reported on
    /// stderr, and the key is minted all the same).
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
    /// Mint another key for an existing customer (a rotation: revoke the old key once the new
    /// one is in place); prints only the plaintext key.
    RotateKey {
        /// The customer's id.
        customer_id: String,
        /// A label for the new key, e.g. `box-1`.
        #[arg(long)]
        label: Option<String>,
        /// The key environment [default: that of the customer's newest key].
        #[arg(long = "env")]
        key_env: Option<String>,
    },
    /// Revoke a key by its id; ingest refuses it within 5 seconds.
    RevokeKey {
        /// The key's id (`key_…`, see `keys`).
        key_id: String,
    },
    /// List keys (never plaintext), of one customer or of all.
    Keys {
        /// Only this customer's keys (exit 1 when there is no such customer).
        customer_id: Option<String>,
        /// Print JSON (the `GET /admin/customers/{id}/keys` key objects) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Create or list customers.
    Customers {
        /// What to do.
        #[command(subcommand)]
        action: CustomersCommand,
    },
    /// List or requeue dead letters (elements the server was sent and did not store).
    DeadLetters {
        /// What to do.
        #[command(subcommand)]
        action: DeadLettersCommand,
    },
    /// Print the audit log of admin actions, newest first.
    Audit {
        /// Most entries to print (1–1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print JSON (the `GET /admin/audit` page) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Export stored events as CSV or JSONL (the `GET /admin/export` body), oldest first.
    Export {
        /// `csv` (header line, documented column order) or `jsonl` (one wire-format event
        /// per line).
        #[arg(long)]
        format: String,
        /// Only events with `ts` at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<DateTime<Utc>>,
        /// Only events with `ts` before this time (RFC 3339).
        #[arg(long)]
        until: Option<DateTime<Utc>>,
        /// Only this customer's events.
        #[arg(long)]
        customer: Option<String>,
        /// Only events of this type, e.g. `tool_call`.
        #[arg(long)]
        event_type: Option<String>,
        /// Write to this file (replaced when the export is complete) instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Delete raw events (and dead letters) older than N days, in batches, keeping the rollups
    /// and run summaries; prints what it deleted, or that another prune was running.
    Prune {
        /// Keep this many days (cut at 00:00 UTC) [default: BRAIN_RETENTION_DAYS].
        #[arg(long)]
        older_than_days: Option<u32>,
    },
    /// Check or repair the rollup tables the dashboard reads (docs/rollups.md).
    Rollups {
        /// What to do with them.
        #[command(subcommand)]
        action: RollupsCommand,
    },
}

/// `brain-server customers …`.
#[derive(Debug, Subcommand)]
pub enum CustomersCommand {
    /// Create a customer and its first key; prints only the plaintext key (exit 1 when the
    /// customer exists).
    Create {
        /// The customer's id: 1–64 of [a-z0-9_-], starting with a letter or digit.
        customer_id: String,
        /// The customer's display name.
        name: String,
        /// A label for the key, e.g. `box-1`.
        #[arg(long)]
        label: Option<String>,
        /// The key environment (`dev`, `prod`, …): 1–16 of [a-z0-9].
        #[arg(long = "env", env = env_vars::BRAIN_KEY_ENV, default_value = "dev")]
        key_env: String,
    },
    /// List every customer with its key counts.
    List {
        /// Print JSON (the `GET /admin/customers` body) instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `brain-server dead-letters …`.
#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// List dead letters, newest first (the raw element only with --json).
    List {
        /// Only this customer's.
        #[arg(long)]
        customer: Option<String>,
        /// Only this rejection code, e.g. `unknown_event_type`.
        #[arg(long)]
        reason: Option<String>,
        /// Most dead letters to print (1–1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print JSON (the `GET /admin/dead-letters` page) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Validate a dead letter with today's rules and ingest it (idempotent); prints
    /// `accepted <event_id>` or `duplicate <event_id>`; exit 1 when it is still refused.
    Requeue {
        /// The dead letter's id (see `dead-letters list`).
        id: i64,
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
