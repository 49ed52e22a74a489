//! The database: one [`Store`] over the two backends (Postgres, SQLite), how to open and
//! migrate it, and one module per domain.
//!
//! Every SQL statement of the server lives under this folder. Each domain is a folder with
//! a `mod.rs` (the domain's types and its `impl Store` methods, the logic both backends share)
//! and two halves, `postgres.rs` and `sqlite.rs`, holding one function per statement, run with
//! `sqlx::query_as` at runtime (the checked macros would bind the crate to one backend):
//!
//! - `ingest`: the group write of ingest requests (agents, events, dead letters), one
//!   transaction per group on both backends;
//! - `keys`: minting, revoking, listing and looking up API keys;
//! - `admin`: operator reads and the audit log (dead letters, agents, audit entries);
//! - `dashboard`: the `/v1/dashboard/*` reads.
//!
//! A `Store` method picks its backend with the `dispatch!` macro instead of a hand-written
//! `match` per method.

/// Calls `$f` of the calling domain module's `postgres` or `sqlite` half, with the store's
/// pool as the first argument, and awaits it: `dispatch!(self, list_keys(customer_id))`.
macro_rules! dispatch {
    ($store:expr, $f:ident($($arg:expr),* $(,)?)) => {
        match $store {
            $crate::db::Store::Postgres(pool) => postgres::$f(pool, $($arg),*).await,
            $crate::db::Store::Sqlite(pool) => sqlite::$f(pool, $($arg),*).await,
        }
    };
}

pub(crate) mod admin;
pub(crate) mod dashboard;
pub(crate) mod export;
pub(crate) mod ingest;
pub(crate) mod keys;
mod metrics;
pub(crate) mod retention;
pub(crate) mod rollups;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection as _, PgConnection, PgPool, SqlitePool};

pub use admin::{AgentRow, AuditEntry, DeadLetter, DeadLetterFilter};
pub use export::{ExportFilter, ExportRow};
pub use keys::{CustomerInfo, KeyInfo, MintedKey};
pub use retention::PruneReport;

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The `DATABASE_URL` is neither `postgres://…` nor `sqlite://…`, or does not parse.
    #[error("unsupported or malformed database URL (expected postgres://… or sqlite://…)")]
    Url(#[source] Option<sqlx::Error>),
    /// Opening the pool failed.
    #[error("could not connect to the database")]
    Connect(#[source] sqlx::Error),
    /// The database did not answer a connection attempt in time (a firewall dropping
    /// packets, a host that is down).
    #[error("could not connect to the database: no answer within {} s", .0.as_secs())]
    ConnectTimeout(Duration),
    /// Running the embedded migrations failed.
    #[error("could not run the database migrations")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// The SQLite migration lock file (`<database>.migrate.lock`) could not be opened or locked.
    #[error("could not lock {path} to serialize migrations")]
    MigrateLock {
        /// The lock file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A query failed.
    #[error("database query failed")]
    Query(#[from] sqlx::Error),
    /// Generating a key failed.
    #[error("could not generate an API key")]
    Key(#[from] shared_proto::KeyError),
    /// The named row does not exist.
    #[error("{0} not found")]
    NotFound(&'static str),
}

/// Which backend a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Postgres (production).
    Postgres,
    /// SQLite (embedded default, one box).
    Sqlite,
}

/// The database: a connection pool of one of the two backends. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Store {
    /// Postgres.
    Postgres(PgPool),
    /// SQLite.
    Sqlite(SqlitePool),
}

/// How long opening a Postgres store waits for its first connection.
const CONNECT_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request waits for a pooled connection before the database counts as down.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

// A connection whose COMMIT or ROLLBACK failed is never reused. When a COMMIT fails (SQLite:
// SQLITE_FULL or an I/O error writing the WAL), SQLite has often rolled the transaction back
// itself; the ROLLBACK that sqlx then sends (dropping the `Transaction`) fails, and the
// connection keeps counting one open transaction. Reused, its next `begin()` would be a
// SAVEPOINT: work acknowledged but never committed, and a write lock held forever. So every
// pool's `before_acquire` (which runs after the ping that flushes that pending ROLLBACK)
// closes an idle connection that still counts an open transaction, and the pool opens a
// fresh one. One guard for every transaction of the server and of the operator commands.

impl Store {
    /// Connects to `url` (`postgres://…`, `postgresql://…` or `sqlite://path`).
    ///
    /// # Errors
    /// [`DbError::Url`] for any other scheme or a malformed URL, [`DbError::Connect`] when the
    /// database cannot be reached or opened.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url).map_err(|e| DbError::Url(Some(e)))?;
            // The pool retries a failed connect until its acquire timeout and then reports
            // only "pool timed out": one direct connection first reports the real cause
            // (connection refused, authentication failed, unknown database).
            match tokio::time::timeout(CONNECT_PROBE_TIMEOUT, PgConnection::connect_with(&opts))
                .await
            {
                Ok(Ok(conn)) => {
                    let _ = conn.close().await;
                }
                Ok(Err(e)) => return Err(DbError::Connect(e)),
                Err(_) => return Err(DbError::ConnectTimeout(CONNECT_PROBE_TIMEOUT)),
            }
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .before_acquire(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
                .connect_with(opts)
                .await
                .map_err(DbError::Connect)?;
            Ok(Store::Postgres(pool))
        } else if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url).map_err(|e| DbError::Url(Some(e)))?;
            Self::open_sqlite(opts).await
        } else {
            Err(DbError::Url(None))
        }
    }

    /// Opens (creating if missing) the SQLite database file at `path`.
    ///
    /// # Errors
    /// [`DbError::Connect`] when the file cannot be opened or created.
    pub async fn open_sqlite_file(path: &Path) -> Result<Self, DbError> {
        Self::open_sqlite(SqliteConnectOptions::new().filename(path)).await
    }

    /// Opens (creating if missing) the SQLite database that `opts` names, with the server's
    /// own settings (WAL, `synchronous=FULL`, 5 s busy timeout, foreign keys) applied over
    /// `opts`. For settings of the connections beyond those, e.g. a `max_page_count` pragma
    /// that makes a disk-full fault on demand in tests.
    ///
    /// # Errors
    /// [`DbError::Connect`] when the file cannot be opened or created.
    pub async fn open_sqlite_with(opts: SqliteConnectOptions) -> Result<Self, DbError> {
        Self::open_sqlite(opts).await
    }

    async fn open_sqlite(opts: SqliteConnectOptions) -> Result<Self, DbError> {
        let opts = opts
            .create_if_missing(true)
            // WAL: readers (dashboard) never block the one writer, and the writer never blocks them.
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before we answer 200 (NORMAL could lose the last
            // commits on power loss). Group commit amortises the fsync.
            .synchronous(SqliteSynchronous::Full)
            // The CLI (mint-key, …) may write while the server runs: wait instead of failing.
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        // Opening a fresh file switches it to WAL, which needs the file to itself: SQLite can
        // answer BUSY at once (no busy wait) while another process is creating or migrating
        // it. The setup lock serializes that with the other processes' opens and migrations.
        let _lock = sqlite_setup_lock(opts.get_filename()).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .before_acquire(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
            .connect_with(opts)
            .await
            .map_err(DbError::Connect)?;
        Ok(Store::Sqlite(pool))
    }

    /// Which backend this store talks to.
    pub fn backend(&self) -> Backend {
        match self {
            Store::Postgres(_) => Backend::Postgres,
            Store::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Applies the embedded migrations that have not run yet.
    ///
    /// Concurrent callers are serialized: Postgres by sqlx's advisory lock; SQLite (whose sqlx
    /// migrator takes no lock) by an exclusive lock on the file `<database>.migrate.lock`, held
    /// for the whole run, so that two processes starting at once on a fresh file both succeed
    /// (the second finds the migrations applied).
    ///
    /// # Errors
    /// [`DbError::Migrate`] when a migration fails or an applied one was changed,
    /// [`DbError::MigrateLock`] when the SQLite lock file cannot be opened or locked.
    pub async fn migrate(&self) -> Result<(), DbError> {
        match self {
            Store::Postgres(pool) => sqlx::migrate!("../migrations/postgres")
                .run(pool)
                .await
                .map_err(DbError::Migrate),
            Store::Sqlite(pool) => {
                let _lock = sqlite_setup_lock(pool.connect_options().get_filename()).await?;
                sqlx::migrate!("../migrations/sqlite")
                    .run(pool)
                    .await
                    .map_err(DbError::Migrate)
            }
        }
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        match self {
            Store::Postgres(pool) => pool.close().await,
            Store::Sqlite(pool) => pool.close().await,
        }
    }

    /// Checks that the database answers a trivial query.
    ///
    /// # Errors
    /// [`DbError::Query`] when it does not.
    pub async fn ping(&self) -> Result<(), DbError> {
        match self {
            Store::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop)?,
            Store::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop)?,
        }
        Ok(())
    }
}

/// Takes the exclusive setup lock (`<database>.migrate.lock`) of the SQLite database `db`,
/// held while a process opens the file or migrates it, waiting for another process that holds
/// it. `None` for an in-memory database (no other process can see it). The lock is released
/// when the returned file is dropped (or the process exits).
async fn sqlite_setup_lock(db: &Path) -> Result<Option<std::fs::File>, DbError> {
    let db = db.to_owned();
    let name = db.to_string_lossy();
    if name.is_empty() || name == ":memory:" || name.starts_with("file:sqlx-in-memory-") {
        return Ok(None);
    }
    let mut path = db.into_os_string();
    path.push(".migrate.lock");
    let path = std::path::PathBuf::from(path);
    let lock_path = path.clone();
    let locked = tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        file.lock()?;
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|r| r);
    match locked {
        Ok(file) => Ok(Some(file)),
        Err(source) => Err(DbError::MigrateLock { path, source }),
    }
}

/// Unix milliseconds → UTC time (SQLite stores times as integers).
fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// A time as a backend returns it: `TIMESTAMPTZ` from Postgres, integer unix milliseconds
/// from SQLite. Row types generic over it are written once, in the domain's `mod.rs`, for
/// both backends.
trait StoredTime {
    /// The time in UTC.
    fn into_utc(self) -> DateTime<Utc>;
}

impl StoredTime for DateTime<Utc> {
    fn into_utc(self) -> DateTime<Utc> {
        self
    }
}

impl StoredTime for i64 {
    fn into_utc(self) -> DateTime<Utc> {
        from_ms(self)
    }
}
