//! Server configuration: typed settings, resolved once from the command line (flag > env >
//! default; clap reads the variables named in [`shared_proto::env_vars`]).

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;

use crate::cli::Cli;

/// Default listen address: loopback only (production binds the tailnet address).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The system data directory: the default when it exists and this user can write to it.
pub const SYSTEM_DATA_DIR: &str = "/var/lib/brain";
/// The per-user data directory under `$XDG_DATA_HOME` (else `~/.local/share`).
const USER_DATA_SUBDIR: &str = "brain";
/// File name of the embedded SQLite database inside the data directory.
pub const SQLITE_FILE: &str = "brain.db";
/// File name of the generated admin token inside the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin_token";

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind, e.g. `127.0.0.1:8080`.
    pub listen: String,
    /// Where the database is and where the token file lives.
    pub db: DbConfig,
    /// The admin token given by flag or `BRAIN_ADMIN_TOKEN`; `None` reads or generates
    /// `<data_dir>/admin_token`.
    pub admin_token: Option<SecretString>,
    /// Ingest limits.
    pub limits: Limits,
}

/// Where the data lives.
#[derive(Debug, Clone)]
pub struct DbConfig {
    /// `postgres://…` or `sqlite://path`; `None` means `<data_dir>/brain.db`.
    pub database_url: Option<SecretString>,
    /// The data directory (embedded database, generated admin token): `--data-dir`, else
    /// `BRAIN_DATA_DIR`, else [`default_data_dir`].
    pub data_dir: PathBuf,
}

impl DbConfig {
    /// The embedded SQLite file used when no URL is given.
    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join(SQLITE_FILE)
    }

    /// A config for `data_dir` with no URL (embedded SQLite).
    pub fn embedded(data_dir: &Path) -> Self {
        DbConfig {
            database_url: None,
            data_dir: data_dir.to_owned(),
        }
    }
}

/// Ingest limits and the group-commit queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sustained requests per second per API key (`BRAIN_RATE_LIMIT_PER_SEC`, default 200).
    pub rate_per_sec: NonZeroU32,
    /// Requests allowed in a burst per API key (`BRAIN_RATE_LIMIT_BURST`, default 400).
    pub rate_burst: NonZeroU32,
    /// Requests that may wait for the writer before new ones get 503 (default 4096).
    pub queue_requests: usize,
    /// Most events one group commit takes from the queue (default 2000).
    pub group_events: usize,
    /// Concurrent writer tasks on Postgres (default 4; SQLite always uses 1). Each commits
    /// its own groups, so one group commits while the next is collected.
    pub pg_writers: usize,
    /// Longest a request's headers may take to arrive, counted from when the connection is
    /// ready for them: also how long a kept-alive connection may sit idle before its next
    /// request (default 10 s). Past it, the connection is closed.
    pub header_read_timeout: Duration,
    /// Longest the whole body of `POST /v1/events` may take to arrive (default 30 s: 1 MiB at
    /// 35 KB/s). Past it, 408 `body_timeout` and the connection is closed.
    pub body_read_timeout: Duration,
    /// Most connections served at once (default 4096). The server also keeps it under its
    /// open-files limit (the soft `RLIMIT_NOFILE`, less files kept for the database and logs),
    /// so raise that limit (`LimitNOFILE=` in the unit) to serve more. Further connections
    /// wait in the listen backlog, not in an open file, until one closes.
    pub max_connections: usize,
    /// Longest the shutdown waits for in-flight requests to finish (default 10 s); then the
    /// connections still open are closed, and the writer writes what is queued.
    pub shutdown_drain: Duration,
    /// Most bytes of ingest bodies held at once across all requests, in bytes (default
    /// 256 MiB): bodies read (counted as they arrive, so a trickled body counts too) or
    /// gunzipped and not yet answered. A request that would go over it is answered 503
    /// `overloaded` with `Retry-After`. Keep it well above 1 MiB, the largest body.
    pub in_flight_bytes: usize,
    /// Most bytes of an element's raw JSON one dead letter stores, in bytes (default 64 KiB,
    /// four times the largest valid payload). A longer element is stored cut to this (at a
    /// character boundary), marked truncated, with its full size, `event_id`, code and message.
    pub dead_letter_raw_bytes: usize,
    /// How long dead letters are kept (default 30 days); older ones are deleted.
    pub dead_letter_retention: Duration,
    /// How often dead letters past their retention are deleted (default 1 h; the first run is
    /// at start-up).
    pub dead_letter_prune_every: Duration,
    /// Benchmarks only: `false` turns rollup maintenance off to measure its cost (the rollups
    /// then no longer match `events`; `rollups rebuild` repairs them). Default `true`.
    #[doc(hidden)]
    pub rollups: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            rate_per_sec: NonZeroU32::new(200).unwrap_or(NonZeroU32::MIN),
            rate_burst: NonZeroU32::new(400).unwrap_or(NonZeroU32::MIN),
            queue_requests: 4096,
            group_events: 2000,
            pg_writers: 4,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 4096,
            shutdown_drain: Duration::from_secs(10),
            in_flight_bytes: 256 * 1024 * 1024,
            dead_letter_raw_bytes: 64 * 1024,
            dead_letter_retention: Duration::from_secs(30 * 24 * 3600),
            dead_letter_prune_every: Duration::from_secs(3600),
            rollups: true,
        }
    }
}

impl DbConfig {
    /// Resolves the database settings from the parsed command line.
    pub fn from_cli(cli: &Cli) -> Self {
        DbConfig {
            database_url: cli.database_url.clone().map(SecretString::from),
            data_dir: cli.data_dir.clone().unwrap_or_else(default_data_dir),
        }
    }
}

/// The data directory when neither `--data-dir` nor `BRAIN_DATA_DIR` names one, never
/// relative to the working directory (so that every command run by the same user, from
/// anywhere, finds the same database): [`SYSTEM_DATA_DIR`] when it exists and this user can
/// write to it; else `$XDG_DATA_HOME/brain`; else `$HOME/.local/share/brain`; else (no home)
/// [`SYSTEM_DATA_DIR`], whose creation then fails with a clear error.
pub fn default_data_dir() -> PathBuf {
    let system = Path::new(SYSTEM_DATA_DIR);
    if writable_dir(system) {
        return system.to_owned();
    }
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    absolute("XDG_DATA_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".local").join("share")))
        .map_or_else(|| system.to_owned(), |base| base.join(USER_DATA_SUBDIR))
}

/// Whether `dir` is a directory this process can create files in (tried: permission bits
/// do not tell about ACLs, read-only mounts or root).
fn writable_dir(dir: &Path) -> bool {
    if !dir.is_dir() {
        return false;
    }
    let probe = dir.join(format!(".brain-write-test-{}", std::process::id()));
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .is_ok();
    if created {
        let _ = std::fs::remove_file(&probe);
    }
    created
}

impl ServerConfig {
    /// Resolves the server settings from the parsed command line.
    pub fn from_cli(cli: &Cli) -> Self {
        let defaults = Limits::default();
        ServerConfig {
            listen: cli
                .listen
                .clone()
                .unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
            db: DbConfig::from_cli(cli),
            admin_token: cli.admin_token.clone().map(SecretString::from),
            limits: Limits {
                rate_per_sec: cli.rate_limit_per_sec.unwrap_or(defaults.rate_per_sec),
                rate_burst: cli.rate_limit_burst.unwrap_or(defaults.rate_burst),
                ..defaults
            },
        }
    }
}
