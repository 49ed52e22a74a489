//! The database: one [`Store`] over the two backends (Postgres, SQLite), and the domain types
//! its queries return.
//!
//! All SQL lives in `db/postgres.rs` and `db/sqlite.rs`, one function per statement, run with
//! `sqlx::query_as` at runtime (the checked macros would bind the crate to one backend).
//! This module picks the backend, holds the logic that is the same on both (the ingest write
//! of a group of requests, key minting) and converts rows to domain types.

mod postgres;
mod sqlite;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use shared_proto::{ApiKey, ErrorDetail, EventResult, EventStatus, KeyEnv, KeyHash, Payload};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use uuid::Uuid;

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The `DATABASE_URL` is neither `postgres://…` nor `sqlite://…`, or does not parse.
    #[error("unsupported or malformed database URL (expected postgres://… or sqlite://…)")]
    Url(#[source] Option<sqlx::Error>),
    /// Opening the pool failed.
    #[error("could not connect to the database")]
    Connect(#[source] sqlx::Error),
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

/// How long a request waits for a pooled connection before the database counts as down.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

impl Store {
    /// Connects to `url` (`postgres://…`, `postgresql://…` or `sqlite://path`).
    ///
    /// # Errors
    /// [`DbError::Url`] for any other scheme or a malformed URL, [`DbError::Connect`] when the
    /// database cannot be reached or opened.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url).map_err(|e| DbError::Url(Some(e)))?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(ACQUIRE_TIMEOUT)
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
            Store::Postgres(pool) => postgres::ping(pool).await,
            Store::Sqlite(pool) => sqlite::ping(pool).await,
        }
    }

    /// Mints a new key for `customer_id`, creating the customer (named `name`) if missing.
    ///
    /// A customer that already has a live key gets a second one (a rotation); the audit log
    /// records `mint` or `rotate` with the key id, never the plaintext.
    ///
    /// # Errors
    /// [`DbError::Key`] when the OS random source fails, [`DbError::Query`] on a database error.
    pub async fn mint_key(
        &self,
        customer_id: &str,
        name: &str,
        label: Option<&str>,
        env: &KeyEnv,
        actor: &str,
    ) -> Result<MintedKey, DbError> {
        let api_key = ApiKey::generate(env)?;
        let new = NewKey {
            key_id: format!("key_{}", Uuid::new_v4().simple()),
            customer_id: customer_id.to_owned(),
            key_hash: api_key.hash(),
            env: env.as_str().to_owned(),
            label: label.map(str::to_owned),
            last4: api_key.last4().to_owned(),
            created_at: Utc::now(),
        };
        let (customer_created, rotated) = match self {
            Store::Postgres(pool) => postgres::mint_key(pool, name, &new, actor).await?,
            Store::Sqlite(pool) => sqlite::mint_key(pool, name, &new, actor).await?,
        };
        Ok(MintedKey {
            key_id: new.key_id,
            customer_id: new.customer_id,
            api_key,
            customer_created,
            rotated,
        })
    }

    /// Revokes the key `key_id` (idempotent: revoking a revoked key keeps the first time).
    ///
    /// # Errors
    /// [`DbError::NotFound`] when there is no such key, [`DbError::Query`] otherwise.
    pub async fn revoke_key(&self, key_id: &str, actor: &str) -> Result<KeyInfo, DbError> {
        let now = Utc::now();
        match self {
            Store::Postgres(pool) => postgres::revoke_key(pool, key_id, now, actor).await,
            Store::Sqlite(pool) => sqlite::revoke_key(pool, key_id, now, actor).await,
        }?
        .ok_or(DbError::NotFound("key"))
    }

    /// Lists keys (without plaintext), of one customer or of all, oldest first.
    ///
    /// # Errors
    /// [`DbError::Query`] on a database error.
    pub async fn list_keys(&self, customer_id: Option<&str>) -> Result<Vec<KeyInfo>, DbError> {
        match self {
            Store::Postgres(pool) => postgres::list_keys(pool, customer_id).await,
            Store::Sqlite(pool) => sqlite::list_keys(pool, customer_id).await,
        }
    }

    /// Finds the live (not revoked) key with this hash.
    pub(crate) async fn find_live_key(&self, hash: &KeyHash) -> Result<Option<AuthKey>, DbError> {
        match self {
            Store::Postgres(pool) => postgres::find_live_key(pool, hash.as_str()).await,
            Store::Sqlite(pool) => sqlite::find_live_key(pool, hash.as_str()).await,
        }
    }

    /// Number of rows in `events` (for tests and the health read).
    ///
    /// # Errors
    /// [`DbError::Query`] on a database error.
    pub async fn count_events(&self) -> Result<i64, DbError> {
        match self {
            Store::Postgres(pool) => postgres::count(pool, "SELECT COUNT(*) FROM events").await,
            Store::Sqlite(pool) => sqlite::count(pool, "SELECT COUNT(*) FROM events").await,
        }
    }

    /// The dead letters of a customer, newest first, at most `limit`.
    ///
    /// # Errors
    /// [`DbError::Query`] on a database error.
    pub async fn dead_letters(
        &self,
        customer_id: &str,
        limit: i64,
    ) -> Result<Vec<DeadLetter>, DbError> {
        match self {
            Store::Postgres(pool) => postgres::dead_letters(pool, customer_id, limit).await,
            Store::Sqlite(pool) => sqlite::dead_letters(pool, customer_id, limit).await,
        }
    }

    /// The stored agent row, if any.
    ///
    /// # Errors
    /// [`DbError::Query`] on a database error.
    pub async fn agent(&self, agent_id: &str) -> Result<Option<AgentRow>, DbError> {
        match self {
            Store::Postgres(pool) => postgres::agent(pool, agent_id).await,
            Store::Sqlite(pool) => sqlite::agent(pool, agent_id).await,
        }
    }

    /// The audit log, newest first, at most `limit` entries.
    ///
    /// # Errors
    /// [`DbError::Query`] on a database error.
    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>, DbError> {
        match self {
            Store::Postgres(pool) => postgres::audit_log(pool, limit).await,
            Store::Sqlite(pool) => sqlite::audit_log(pool, limit).await,
        }
    }

    /// Writes one group of ingest requests in a single transaction and returns, per request,
    /// the per-event results in request order. Nothing is visible before the commit.
    pub(crate) async fn write_group(
        &self,
        jobs: &[WriteJob],
    ) -> Result<Vec<Vec<EventResult>>, DbError> {
        let now = Utc::now();
        match self {
            Store::Postgres(pool) => {
                // No explicit transaction: the common case is ONE statement (agents and
                // events together), which commits on its own. The rare follow-ups (late
                // inserts, dead letters, agent spans, heartbeat versions) are idempotent, so
                // when one fails after the main statement committed, writing the request
                // again (the writer's one-by-one retry, or the client's resend after the
                // 5xx) completes it: events are then duplicates but still widen their
                // agent's span and apply their heartbeat's versions, and dead letters
                // already stored are skipped by their dedupe key.
                let mut conn = pool.acquire().await?;
                Ok(write_group_in(&mut postgres::PgWriter(&mut conn), jobs, now).await?)
            }
            Store::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                let out = write_group_in(&mut sqlite::SqliteWriter(&mut tx), jobs, now).await?;
                tx.commit().await?;
                Ok(out)
            }
        }
    }

    /// Per customer over `since..`: sessions, errors, cost, agents, events, last seen.
    pub(crate) async fn overview(&self, since: DateTime<Utc>) -> Result<Vec<OverviewRow>, DbError> {
        match self {
            Store::Postgres(pool) => postgres::overview(pool, since).await,
            Store::Sqlite(pool) => sqlite::overview(pool, since).await,
        }
    }

    /// Every customer with cumulative counts.
    pub(crate) async fn customers(&self) -> Result<Vec<CustomerRow>, DbError> {
        match self {
            Store::Postgres(pool) => postgres::customers(pool).await,
            Store::Sqlite(pool) => sqlite::customers(pool).await,
        }
    }

    /// Per agent (of one customer, or all) cumulative counts.
    pub(crate) async fn agents(
        &self,
        customer_id: Option<&str>,
    ) -> Result<Vec<AgentSummary>, DbError> {
        match self {
            Store::Postgres(pool) => postgres::agents(pool, customer_id).await,
            Store::Sqlite(pool) => sqlite::agents(pool, customer_id).await,
        }
    }

    /// Every `tool_call` since `since` (of one customer, or all): tool name, ok, duration.
    pub(crate) async fn tool_calls(
        &self,
        since: DateTime<Utc>,
        customer_id: Option<&str>,
    ) -> Result<Vec<ToolCallRow>, DbError> {
        match self {
            Store::Postgres(pool) => postgres::tool_calls(pool, since, customer_id).await,
            Store::Sqlite(pool) => sqlite::tool_calls(pool, since, customer_id).await,
        }
    }

    /// Ingestion health figures at `now`.
    pub(crate) async fn health(&self, now: DateTime<Utc>) -> Result<HealthRow, DbError> {
        match self {
            Store::Postgres(pool) => postgres::health(pool, now).await,
            Store::Sqlite(pool) => sqlite::health(pool, now).await,
        }
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

/// A freshly minted key: the plaintext is here and nowhere else.
#[derive(Debug)]
pub struct MintedKey {
    /// The key's id (`key_<32 hex>`), safe to show and to revoke by.
    pub key_id: String,
    /// The customer it authenticates.
    pub customer_id: String,
    /// The plaintext key (its `Debug` hides the secret).
    pub api_key: ApiKey,
    /// Whether the customer was created by this call.
    pub customer_created: bool,
    /// Whether the customer already had a live key (this one is a rotation).
    pub rotated: bool,
}

/// A key as listed: no plaintext, no hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// The key's id.
    pub key_id: String,
    /// Its customer.
    pub customer_id: String,
    /// The `<env>` part (`dev`, `prod`, …).
    pub env: String,
    /// Free-form label given at minting.
    pub label: Option<String>,
    /// Last four characters of the plaintext.
    pub last4: String,
    /// When it was minted.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A dead-lettered element of an ingest request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// Row id.
    pub id: i64,
    /// The customer whose key sent it.
    pub customer_id: String,
    /// When it was received.
    pub received_at: DateTime<Utc>,
    /// Its `event_id` when it had a readable one.
    pub event_id: Option<String>,
    /// The element's JSON as received.
    pub raw: String,
    /// The rejection code (e.g. `unknown_event_type`).
    pub reason: String,
    /// The rejection message.
    pub message: String,
}

/// An agent as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentRow {
    /// The agent's id.
    pub agent_id: String,
    /// The customer that owns it (the first that sent it).
    pub customer_id: String,
    /// `ts` of its earliest stored event.
    pub first_seen_at: DateTime<Utc>,
    /// `ts` of its latest stored event.
    pub last_seen_at: DateTime<Utc>,
    /// Its version from the latest heartbeat naming it.
    pub agent_version: Option<String>,
}

/// One audit-log entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// Row id.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who (`cli`, `admin_api`).
    pub actor: String,
    /// What (`mint`, `rotate`, `revoke`).
    pub action: String,
    /// Parameters (never a plaintext key).
    pub params: Value,
}

/// The live key a bearer token resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthKey {
    pub(crate) key_id: String,
    pub(crate) customer_id: String,
}

/// A key about to be inserted.
#[derive(Debug)]
struct NewKey {
    key_id: String,
    customer_id: String,
    key_hash: KeyHash,
    env: String,
    label: Option<String>,
    last4: String,
    created_at: DateTime<Utc>,
}

/// One element of an ingest request, after validation.
#[derive(Debug)]
pub(crate) enum Item {
    /// A valid event, ready to store.
    Valid(ValidEvent),
    /// A rejected element, to dead-letter.
    Rejected {
        event_id: Option<String>,
        raw: String,
        code: String,
        message: String,
    },
}

/// A validated event in the form the database stores it, prepared by the request handler so
/// that the writer (the serial part) only moves data.
#[derive(Debug)]
pub(crate) struct ValidEvent {
    event_id: Uuid,
    ts: DateTime<Utc>,
    agent_id: String,
    run_id: Option<String>,
    event_type: &'static str,
    /// The validated payload, serialized.
    payload: String,
    /// A heartbeat's `agent_versions`; empty for other types.
    agent_versions: BTreeMap<String, String>,
}

impl From<shared_proto::Event> for ValidEvent {
    fn from(ev: shared_proto::Event) -> Self {
        ValidEvent {
            event_id: ev.event_id(),
            ts: ev.ts(),
            agent_id: ev.agent_id().as_str().to_owned(),
            run_id: ev.run_id().map(|r| r.as_str().to_owned()),
            event_type: ev.event_type().as_str(),
            payload: ev.payload_json(),
            agent_versions: match ev.payload() {
                Payload::Heartbeat(hb) => hb.agent_versions.clone(),
                _ => BTreeMap::new(),
            },
        }
    }
}

impl ValidEvent {
    /// The envelope rebuilt in wire form (for a dead letter whose original is unavailable).
    fn to_raw(&self) -> String {
        let mut v = serde_json::json!({
            "event_id": self.event_id.to_string(),
            "ts": self.ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "event_type": self.event_type,
            "agent_id": self.agent_id,
            "payload": serde_json::from_str::<Value>(&self.payload).unwrap_or(Value::Null),
        });
        if let Some(run_id) = &self.run_id {
            v["run_id"] = Value::String(run_id.clone());
        }
        v.to_string()
    }
}

/// One ingest request's elements, for the writer.
#[derive(Debug)]
pub(crate) struct WriteJob {
    pub(crate) customer_id: String,
    /// The elements, in request order.
    pub(crate) items: Vec<Item>,
    /// The body they came from, for the raw JSON of an element the writer rejects.
    pub(crate) body: RequestBody,
}

/// A request body as received (after gunzip): a JSON envelope or an array of them. Moved
/// along with the request, never copied; parsed again only for a rare rejection.
pub(crate) struct RequestBody(pub(crate) Vec<u8>);

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RequestBody({} bytes)", self.0.len())
    }
}

impl RequestBody {
    /// The body's elements as sent (an object body is one element); empty if it does not
    /// parse (it did once, so it does).
    pub(crate) fn elements(&self) -> Vec<Value> {
        match serde_json::from_slice(&self.0) {
            Ok(Value::Array(items)) => items,
            Ok(other) => vec![other],
            Err(_) => Vec::new(),
        }
    }
}

/// An event row to insert (borrowing from the request).
#[derive(Debug, Clone, Copy)]
struct EventRow<'a> {
    event_id: Uuid,
    ts: DateTime<Utc>,
    customer_id: &'a str,
    agent_id: &'a str,
    run_id: Option<&'a str>,
    event_type: &'static str,
    payload: &'a str,
}

/// A dead letter to insert.
#[derive(Debug)]
struct NewDeadLetter {
    customer_id: String,
    event_id: Option<String>,
    raw: String,
    reason: String,
    message: String,
}

impl NewDeadLetter {
    /// The idempotency key: hex SHA-256 of (customer, reason, raw). The insert skips a key
    /// already stored, so a request written again after a partial write adds no second row.
    fn dedupe_key(&self) -> String {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        for part in [&self.customer_id, &self.reason, &self.raw] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(h.finalize())
    }
}

/// An agent first seen in this group: who claims it and the span of its events.
#[derive(Debug)]
struct AgentClaim {
    agent_id: String,
    customer_id: String,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
}

/// The statements one ingest transaction needs, implemented per backend over its transaction.
trait GroupWriter {
    /// Upserts the group's agents (a new agent is claimed by its claim's customer; the
    /// claimer's own agents have their span widened) and inserts the `rows` whose agent the
    /// row's customer owns (of those, the first row of each `event_id`; `rows` are sorted by
    /// id, stably), skipping stored `event_id`s. Returns the owner of each claimed
    /// agent it could see (a missing one needs [`Self::agent_owners`]) and the inserted ids.
    async fn upsert_agents_insert_events(
        &mut self,
        claims: &[AgentClaim],
        rows: &[EventRow<'_>],
        now: DateTime<Utc>,
    ) -> Result<(HashMap<String, String>, HashSet<Uuid>), sqlx::Error>;
    /// The owner of each of these agents.
    async fn agent_owners(
        &mut self,
        agent_ids: &[String],
    ) -> Result<HashMap<String, String>, sqlx::Error>;
    /// Inserts events (one row per `event_id`), skipping stored `event_id`s; returns the ids
    /// actually inserted.
    async fn insert_events(
        &mut self,
        rows: &[EventRow<'_>],
        now: DateTime<Utc>,
    ) -> Result<HashSet<Uuid>, sqlx::Error>;
    /// Widens `first_seen_at`/`last_seen_at` of agents to include these spans.
    async fn touch_agents(&mut self, spans: &[AgentClaim]) -> Result<(), sqlx::Error>;
    /// Inserts dead letters.
    async fn insert_dead_letters(
        &mut self,
        rows: &[NewDeadLetter],
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error>;
    /// Sets `agent_version` of the customer's agents named in a heartbeat at `ts`, unless a
    /// later heartbeat already did.
    async fn set_agent_versions(
        &mut self,
        customer_id: &str,
        ts: DateTime<Utc>,
        versions: &BTreeMap<String, String>,
    ) -> Result<(), sqlx::Error>;
}

/// The first row of each `event_id` in `rows` (sorted by id, stably: the first in group order).
fn first_per_id(mut rows: Vec<EventRow<'_>>) -> Vec<EventRow<'_>> {
    rows.dedup_by_key(|r| r.event_id);
    rows
}

/// Rows per multi-row statement (8 columns × 1000 stays under both backends' bind limits).
const CHUNK_ROWS: usize = 1000;

/// The backend-independent ingest write: ownership, dedupe, inserts, agent upserts.
async fn write_group_in<W: GroupWriter>(
    w: &mut W,
    jobs: &[WriteJob],
    now: DateTime<Utc>,
) -> Result<Vec<Vec<EventResult>>, DbError> {
    // 1. Claims: the first request of the group that names an agent claims it for its
    //    customer (an existing owner is never replaced); the span covers that customer's
    //    events of the agent. Candidate rows: every valid event. An id repeated in the group
    //    is deduped only among the rows whose sender owns the agent (by the backend's insert),
    //    so that a copy under a forbidden agent cannot shadow the owner's copy.
    let mut claims: BTreeMap<&str, AgentClaim> = BTreeMap::new();
    let mut rows = Vec::new();
    for job in jobs {
        for item in &job.items {
            let Item::Valid(ev) = item else { continue };
            let claim = claims
                .entry(ev.agent_id.as_str())
                .or_insert_with(|| AgentClaim {
                    agent_id: ev.agent_id.clone(),
                    customer_id: job.customer_id.clone(),
                    first: ev.ts,
                    last: ev.ts,
                });
            if claim.customer_id == job.customer_id {
                claim.first = claim.first.min(ev.ts);
                claim.last = claim.last.max(ev.ts);
            }
            rows.push(EventRow {
                event_id: ev.event_id,
                ts: ev.ts,
                customer_id: &job.customer_id,
                agent_id: &ev.agent_id,
                run_id: ev.run_id.as_deref(),
                event_type: ev.event_type,
                payload: &ev.payload,
            });
        }
    }
    // Sorted by event_id, so that concurrent writers lock the unique index in one order. The
    // sort is stable: rows with one id stay in group order, the first is the one stored.
    rows.sort_by_key(|r| r.event_id);
    let claims: Vec<AgentClaim> = claims.into_values().collect();

    // 2. Agents and events, in one statement where the backend allows.
    let (mut owners, mut inserted) = if rows.is_empty() {
        (HashMap::new(), HashSet::new())
    } else {
        w.upsert_agents_insert_events(&claims, &rows, now).await?
    };
    // Claimed concurrently by another transaction after that statement's snapshot: look
    // again, and insert the events of those agents that turn out to be their customer's.
    let missing: Vec<String> = claims
        .iter()
        .filter(|c| !owners.contains_key(&c.agent_id))
        .map(|c| c.agent_id.clone())
        .collect();
    if !missing.is_empty() {
        owners.extend(w.agent_owners(&missing).await?);
        let late: Vec<EventRow<'_>> = rows
            .iter()
            .filter(|r| missing.iter().any(|m| m == r.agent_id))
            .filter(|r| owners.get(r.agent_id).map(String::as_str) == Some(r.customer_id))
            .copied()
            .collect();
        let late = first_per_id(late);
        if !late.is_empty() {
            inserted.extend(w.insert_events(&late, now).await?);
        }
    }

    // 3. Classify every element, in request order.
    enum Slot {
        Accepted(Uuid),
        Duplicate(Uuid),
        Rejected(Option<String>, ErrorDetail),
    }
    let mut first_seen: HashSet<Uuid> = HashSet::new();
    let mut dead = Vec::new();
    let mut spans: BTreeMap<&str, AgentClaim> = BTreeMap::new();
    let mut heartbeats = Vec::new();
    let mut slots: Vec<Vec<Slot>> = Vec::with_capacity(jobs.len());
    for job in jobs {
        let mut job_slots = Vec::with_capacity(job.items.len());
        let mut originals: Option<Vec<Value>> = None;
        for (i, item) in job.items.iter().enumerate() {
            match item {
                Item::Rejected {
                    event_id,
                    raw,
                    code,
                    message,
                } => {
                    dead.push(NewDeadLetter {
                        customer_id: job.customer_id.clone(),
                        event_id: event_id.clone(),
                        raw: raw.clone(),
                        reason: code.clone(),
                        message: message.clone(),
                    });
                    let error = ErrorDetail {
                        code: code.clone(),
                        message: message.clone(),
                    };
                    job_slots.push(Slot::Rejected(event_id.clone(), error));
                }
                Item::Valid(ev) => {
                    let id = ev.event_id;
                    let agent = ev.agent_id.as_str();
                    if owners.get(agent).map(String::as_str) != Some(job.customer_id.as_str()) {
                        let message = format!("agent_id `{agent}` belongs to another customer");
                        dead.push(NewDeadLetter {
                            customer_id: job.customer_id.clone(),
                            event_id: Some(id.to_string()),
                            // The element as sent (unknown fields, `ts` precision),
                            // from the body parsed again: forbidden events are rare.
                            raw: originals
                                .get_or_insert_with(|| job.body.elements())
                                .get(i)
                                .map_or_else(|| ev.to_raw(), Value::to_string),
                            reason: "agent_forbidden".to_owned(),
                            message: message.clone(),
                        });
                        let error = ErrorDetail {
                            code: "agent_forbidden".to_owned(),
                            message,
                        };
                        job_slots.push(Slot::Rejected(Some(id.to_string()), error));
                        continue;
                    }
                    // A duplicate still widens its agent's span and applies its heartbeat's
                    // versions (both idempotent): it may be the retry of a write whose
                    // follow-ups failed after its events were stored.
                    let slot = if !first_seen.insert(id) || !inserted.contains(&id) {
                        Slot::Duplicate(id)
                    } else {
                        Slot::Accepted(id)
                    };
                    let span = spans.entry(agent).or_insert_with(|| AgentClaim {
                        agent_id: agent.to_owned(),
                        customer_id: job.customer_id.clone(),
                        first: ev.ts,
                        last: ev.ts,
                    });
                    span.first = span.first.min(ev.ts);
                    span.last = span.last.max(ev.ts);
                    if !ev.agent_versions.is_empty() {
                        heartbeats.push((job.customer_id.as_str(), ev.ts, &ev.agent_versions));
                    }
                    job_slots.push(slot);
                }
            }
        }
        slots.push(job_slots);
    }

    // 4. Rare follow-ups: dead letters; an agent named first in this group by a customer
    //    that does not own it (the owner's events still widen its span); heartbeat versions.
    if !dead.is_empty() {
        w.insert_dead_letters(&dead, now).await?;
    }
    let claimers: HashMap<&str, &str> = claims
        .iter()
        .map(|c| (c.agent_id.as_str(), c.customer_id.as_str()))
        .collect();
    let spans: Vec<AgentClaim> = spans
        .into_values()
        .filter(|s| claimers.get(s.agent_id.as_str()) != Some(&s.customer_id.as_str()))
        .collect();
    if !spans.is_empty() {
        w.touch_agents(&spans).await?;
    }
    for (customer_id, ts, versions) in heartbeats {
        w.set_agent_versions(customer_id, ts, versions).await?;
    }

    // 5. Results, in request order.
    Ok(slots
        .into_iter()
        .map(|job_slots| {
            job_slots
                .into_iter()
                .map(|slot| match slot {
                    Slot::Accepted(id) => EventResult {
                        event_id: Some(id.to_string()),
                        status: EventStatus::Accepted,
                        error: None,
                    },
                    Slot::Duplicate(id) => EventResult {
                        event_id: Some(id.to_string()),
                        status: EventStatus::Duplicate,
                        error: None,
                    },
                    Slot::Rejected(event_id, error) => EventResult {
                        event_id,
                        status: EventStatus::Rejected,
                        error: Some(error),
                    },
                })
                .collect()
        })
        .collect())
}

/// Per-customer figures over a window (overview read).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct OverviewRow {
    pub(crate) customer_id: String,
    pub(crate) name: String,
    pub(crate) events: i64,
    pub(crate) sessions: i64,
    pub(crate) errors: i64,
    pub(crate) cost_cents: f64,
    pub(crate) agents: i64,
    pub(crate) last_seen: Option<DateTime<Utc>>,
}

/// Per-customer cumulative figures (customers read).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CustomerRow {
    pub(crate) customer_id: String,
    pub(crate) name: String,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) events: i64,
    pub(crate) sessions: i64,
    pub(crate) tool_calls: i64,
    pub(crate) errors: i64,
    pub(crate) cost_cents: f64,
    pub(crate) agents: i64,
    pub(crate) last_seen: Option<DateTime<Utc>>,
}

/// Per-agent cumulative figures (agents read).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AgentSummary {
    pub(crate) agent_id: String,
    pub(crate) customer_id: String,
    pub(crate) agent_version: Option<String>,
    pub(crate) first_seen: DateTime<Utc>,
    pub(crate) last_seen: DateTime<Utc>,
    pub(crate) events: i64,
    pub(crate) sessions: i64,
    pub(crate) tool_calls: i64,
    pub(crate) errors: i64,
    pub(crate) cost_cents: f64,
}

/// One tool call (tools read).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ToolCallRow {
    pub(crate) tool_name: String,
    pub(crate) ok: bool,
    pub(crate) duration_ms: Option<i64>,
}

/// Ingestion health figures (health read).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HealthRow {
    pub(crate) events_total: i64,
    pub(crate) events_last_hour: i64,
    pub(crate) lag_avg_ms: Option<f64>,
    pub(crate) lag_max_ms: Option<i64>,
    pub(crate) dead_letters_total: i64,
    pub(crate) dead_letters_last_24h: i64,
    /// The event ingested in the last hour with the largest lag: (event_id, ts, ingested_at).
    pub(crate) most_late: Option<(String, DateTime<Utc>, DateTime<Utc>)>,
}

/// Unix milliseconds → UTC time (SQLite stores times as integers).
fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
