//! `brain-server`: Brain's HTTP server (ingest, dashboard reads, dashboard page) and its
//! operator commands.
//!
//! # Life of a request
//!
//! 1. [`run`] accepts the connection; [`router`] (`routes/mod.rs`, one nested router per
//!    resource) picks the handler in `routes/<resource>.rs`.
//! 2. Extractors in [`auth`] authenticate: a customer bearer key (`POST /v1/events`,
//!    `GET /v1/whoami`; looked up by its SHA-256, cached ≤ 2 s so revocation bites within
//!    5 s, then the per-key rate limit: `auth/keys.rs`) or the admin token
//!    (`/v1/dashboard/*`, constant-time comparison).
//! 3. `POST /v1/events` (`routes/events.rs`) reads at most 1 MiB (after gunzip), counting
//!    every byte into the server-wide in-flight budget as it arrives (`ingest/budget.rs`: over
//!    it → 503; the request's share travels with its body and is given back when it is
//!    dropped), and splits the JSON into raw elements (`ingest/body.rs`), validates each with
//!    [`shared_proto::Event::parse`] (`ingest/validate.rs`), and hands the request to the
//!    ingest writer (`ingest/writer.rs`) over a bounded queue (full → 503).
//! 4. The writer takes every queued request into ONE transaction (`Store::write_group` in
//!    `db/ingest/`): claims new agents, refuses agents owned by another customer, inserts
//!    events with `ON CONFLICT DO NOTHING` (duplicates), dead-letters rejections (each cut to
//!    a size cap, saying so; deleted after their retention by `ingest/retention.rs`), updates
//!    agents, commits. A failed group commits nothing.
//! 5. Only then does each handler answer, 200 with per-event results (422 for a single
//!    rejected event). Any error is an [`error::ApiError`] rendered as one JSON envelope.
//!
//! The operator commands (`brain-server mint-key`, …) are in [`commands`], one module per
//! command family, over the same [`Store`].
//!
//! [`run`] serves at most `max_connections` at once, and closes a connection whose headers
//! (or next request, when kept alive) do not arrive within `header_read_timeout`
//! (`http.rs`). On shutdown it stops accepting, lets in-flight requests finish for at most
//! `shutdown_drain`, then the writer writes what is queued and stops.

pub mod auth;
pub mod cli;
pub mod commands;
pub mod config;
pub mod db;
pub mod error;
mod export;
mod extract;
mod http;
mod ingest;
mod metrics;
mod requeue;
mod routes;
mod state;
mod task;

use std::future::Future;
use std::path::Path;

use anyhow::Context as _;
use secrecy::ExposeSecret;

pub use crate::db::{Backend, Store};
pub use crate::ingest::writer::WriterStats;
pub use crate::routes::router;
pub use crate::routes::whoami::WhoAmI;
pub use crate::state::AppState;

use crate::auth::admin_token;
use crate::config::DbConfig;

/// Serves [`router`] on `listener` until `shutdown` resolves, then drains in-flight requests
/// (for at most [`config::Limits::shutdown_drain`]) and stops the ingest writer after it has
/// written everything queued. Connections are bounded in number and in header read and idle
/// time ([`config::Limits`]; `http.rs`).
///
/// # Errors
/// None today (a failed `accept` is logged and retried); kept for callers' sake.
pub async fn run(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state.clone());
    let limits = *state.limits();
    http::serve(listener, app, &limits, state.connections(), shutdown).await;
    state.shutdown().await;
    Ok(())
}

/// Opens the configured database (the embedded SQLite file when no URL is given) and applies
/// the migrations. Says first, on one log line (stderr), which database it opens: the
/// Postgres user, host, port and database (never the password), or the SQLite file's absolute
/// path. An unreachable Postgres is reported with its cause (connection refused,
/// authentication failed, unknown database, no answer).
///
/// # Errors
/// When the data directory cannot be created, the database cannot be opened, or a
/// migration fails.
pub async fn open_store(db: &DbConfig) -> anyhow::Result<Store> {
    let store = match &db.database_url {
        Some(url) => {
            let shown = describe_url(url.expose_secret());
            tracing::info!("database: {shown} (DATABASE_URL)");
            Store::connect(url.expose_secret())
                .await
                .with_context(|| format!("connecting to DATABASE_URL ({shown})"))?
        }
        None => {
            let path = db.sqlite_path();
            let shown = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
            tracing::info!(
                "database: SQLite {} (the embedded file of the data directory)",
                shown.display()
            );
            std::fs::create_dir_all(&db.data_dir).with_context(|| {
                format!(
                    "creating the data directory {} (set BRAIN_DATA_DIR or --data-dir to use another)",
                    db.data_dir.display()
                )
            })?;
            Store::open_sqlite_file(&path)
                .await
                .with_context(|| format!("opening the SQLite database {}", shown.display()))?
        }
    };
    store
        .migrate()
        .await
        .context("running the database migrations")?;
    Ok(store)
}

/// A `DATABASE_URL` as it may be shown: `Postgres user@host:port/database` or `SQLite path`,
/// never a password.
fn describe_url(url: &str) -> String {
    use std::str::FromStr as _;
    if url.starts_with("postgres")
        && let Ok(pg) = sqlx::postgres::PgConnectOptions::from_str(url)
    {
        return format!(
            "Postgres {}@{}:{}/{}",
            pg.get_username(),
            pg.get_host(),
            pg.get_port(),
            pg.get_database().unwrap_or(pg.get_username())
        );
    }
    match url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        Some(path) => format!("SQLite {path}"),
        None => "an unsupported URL (expected postgres://… or sqlite://…)".to_owned(),
    }
}

/// Resolves the admin token for `data_dir` and builds the state (starting the writer).
/// When the token is generated, logs once the dashboard URL for `listen`.
///
/// # Errors
/// When the admin token file cannot be read or written.
pub fn build_state(
    store: Store,
    config: &config::ServerConfig,
    data_dir: &Path,
) -> anyhow::Result<AppState> {
    let (token, source) =
        admin_token::resolve(config.admin_token.clone(), data_dir).with_context(|| {
            format!(
                "reading or creating the admin token in {}",
                data_dir.display()
            )
        })?;
    if source == admin_token::TokenSource::Generated {
        tracing::info!(
            file = %data_dir.join(config::ADMIN_TOKEN_FILE).display(),
            "generated an admin token; open the dashboard at http://{}/#token={}",
            config.listen,
            token.expose_secret()
        );
    }
    Ok(AppState::new(store, &token, config.limits))
}
