//! Test harness: a real server on 127.0.0.1:0 over a fresh SQLite file or a fresh Postgres
//! database, reached over real HTTP with reqwest.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;

use brain_server::config::{DbConfig, Limits, ServerConfig};
use brain_server::{AppState, Store};
use chrono::{SecondsFormat, TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use shared_proto::KeyEnv;
use tempfile::TempDir;
use test_support::TestDb;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

pub(crate) const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A fresh, empty Postgres database for one test ([`TestDb::create`]): `None` (said loudly)
/// when Postgres is unusable and not required.
pub(crate) fn fresh_postgres_db() -> Option<TestDb> {
    TestDb::create("brain_test")
}

/// A running server and what a test needs to talk to it.
#[derive(Debug)]
pub(crate) struct TestApp {
    pub(crate) addr: SocketAddr,
    pub(crate) state: AppState,
    pub(crate) client: reqwest::Client,
    pub(crate) data_dir: TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    /// The Postgres database, dropped with the app however the test ends.
    pg: Option<TestDb>,
}

/// Options of [`spawn_app_with`].
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) limits: Limits,
    /// `None`: the server generates (or reads) `<data_dir>/admin_token`.
    pub(crate) admin_token: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limits: Limits::default(),
            admin_token: Some(ADMIN_TOKEN.to_owned()),
        }
    }
}

pub(crate) async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, Options::default()).await
}

pub(crate) async fn spawn_app_with(backend: Backend, opts: Options) -> Option<TestApp> {
    let data_dir = TempDir::new().expect("temp dir");
    let (db, pg) = match backend {
        Backend::Sqlite => (DbConfig::embedded(data_dir.path()), None),
        Backend::Postgres => {
            let db = fresh_postgres_db()?;
            (
                DbConfig {
                    database_url: Some(db.url.clone().into()),
                    data_dir: data_dir.path().to_owned(),
                },
                Some(db),
            )
        }
    };
    let store = brain_server::open_store(&db).await.expect("open store");
    Some(serve(store, db, data_dir, pg, opts).await)
}

/// A server over `store`, an embedded SQLite database in `data_dir` opened by the caller
/// (e.g. with connection settings of its own).
pub(crate) async fn spawn_app_on(store: Store, data_dir: TempDir, opts: Options) -> TestApp {
    let db = DbConfig::embedded(data_dir.path());
    serve(store, db, data_dir, None, opts).await
}

/// A server over the existing database at `database_url` (migrated on open), with a data
/// directory of its own: one of several instances sharing one database. The caller owns the
/// database.
pub(crate) async fn spawn_app_on_url(database_url: &str, opts: Options) -> TestApp {
    let data_dir = TempDir::new().expect("temp dir");
    let db = DbConfig {
        database_url: Some(database_url.to_owned().into()),
        data_dir: data_dir.path().to_owned(),
    };
    let store = brain_server::open_store(&db).await.expect("open store");
    serve(store, db, data_dir, None, opts).await
}

#[expect(
    clippy::disallowed_methods,
    reason = "tests spawn the server task directly"
)]
async fn serve(
    store: Store,
    db: DbConfig,
    data_dir: TempDir,
    pg: Option<TestDb>,
    opts: Options,
) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = ServerConfig {
        listen: addr.to_string(),
        db,
        admin_token: opts.admin_token.map(Into::into),
        limits: opts.limits,
    };
    let state = brain_server::build_state(store, &config, data_dir.path()).expect("state");
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(brain_server::run(listener, state.clone(), async move {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        state,
        client: reqwest::Client::new(),
        data_dir,
        shutdown: Some(tx),
        server: Some(server),
        pg,
    }
}

pub(crate) fn limits(per_sec: u32, burst: u32) -> Limits {
    Limits {
        rate_per_sec: NonZeroU32::new(per_sec).expect("non-zero"),
        rate_burst: NonZeroU32::new(burst).expect("non-zero"),
        ..Limits::default()
    }
}

impl TestApp {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn store(&self) -> &Store {
        self.state.store()
    }

    pub(crate) fn token_file(&self) -> PathBuf {
        self.data_dir.path().join("admin_token")
    }

    /// Mints a key for `customer_id` through the store; returns the plaintext.
    pub(crate) async fn mint(&self, customer_id: &str) -> String {
        let env = KeyEnv::parse("test").expect("env");
        self.store()
            .mint_key(
                customer_id,
                &format!("{customer_id} Inc"),
                None,
                &env,
                "test",
            )
            .await
            .expect("mint key")
            .api_key
            .expose()
            .to_owned()
    }

    /// POSTs a JSON body to /v1/events with `key`.
    pub(crate) async fn post_events(&self, key: &str, body: &Value) -> reqwest::Response {
        self.post_raw(
            Some(key),
            "application/json",
            None,
            body.to_string().into_bytes(),
        )
        .await
    }

    /// POSTs JSON and returns (status, body as JSON).
    pub(crate) async fn ingest(&self, key: &str, body: &Value) -> (StatusCode, Value) {
        let resp = self.post_events(key, body).await;
        let status = resp.status();
        (status, resp.json().await.expect("JSON body"))
    }

    pub(crate) async fn post_raw(
        &self,
        key: Option<&str>,
        content_type: &str,
        encoding: Option<&str>,
        body: Vec<u8>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(self.url("/v1/events"))
            .header("content-type", content_type)
            .body(body);
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(enc) = encoding {
            req = req.header("content-encoding", enc);
        }
        req.send().await.expect("request")
    }

    /// GETs a dashboard path with the admin token; returns (status, JSON).
    pub(crate) async fn admin_get(&self, path: &str) -> (StatusCode, Value) {
        let resp = self
            .client
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request");
        let status = resp.status();
        (status, resp.json().await.expect("JSON body"))
    }

    /// Stops the server (graceful) and closes the pool, keeping the data directory (for a
    /// restart on the same SQLite file).
    pub(crate) async fn stop_keeping_data(mut self) -> TempDir {
        self.shut_down().await;
        let dir = TempDir::new().expect("temp dir");
        std::mem::replace(&mut self.data_dir, dir)
    }

    /// Stops the server (graceful), closes the pool, drops the Postgres database.
    pub(crate) async fn stop(mut self) {
        self.shut_down().await;
    }

    async fn shut_down(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server result");
        }
        self.state.store().close().await;
        drop(self.pg.take());
    }
}

/// RFC 3339 ms timestamp `ago` before now.
pub(crate) fn ts_ago(ago: TimeDelta) -> String {
    (Utc::now() - ago).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// An envelope with a fresh id, one minute old.
pub(crate) fn event(
    event_type: &str,
    agent_id: &str,
    run_id: Option<&str>,
    payload: Value,
) -> Value {
    event_at(event_type, agent_id, run_id, payload, TimeDelta::minutes(1))
}

pub(crate) fn event_at(
    event_type: &str,
    agent_id: &str,
    run_id: Option<&str>,
    payload: Value,
    ago: TimeDelta,
) -> Value {
    let mut v = json!({
        "event_id": Uuid::new_v4().to_string(),
        "ts": ts_ago(ago),
        "event_type": event_type,
        "agent_id": agent_id,
        "payload": payload,
    });
    if let Some(run) = run_id {
        v["run_id"] = json!(run);
    }
    v
}

pub(crate) fn tool_call(agent_id: &str, tool: &str, ok: bool, duration_ms: u64) -> Value {
    event(
        "tool_call",
        agent_id,
        Some("run_1"),
        json!({"tool_name": tool, "ok": ok, "duration_ms": duration_ms}),
    )
}

/// Asserts the body is the error envelope with `code`.
pub(crate) fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert!(body["error"]["message"].is_string(), "body: {body}");
}

impl TestApp {
    /// The Postgres URL of the app's own database (`None` on SQLite: the data directory's
    /// `brain.db`).
    pub(crate) fn database_url(&self) -> Option<String> {
        self.pg.as_ref().map(|db| db.url.clone())
    }
}

/// A stored event as the export tests compare it: event_id, ts and ingested_at (unix ms),
/// customer_id, agent_id, run_id, event_type, payload.
pub(crate) type EventTuple = (
    String,
    i64,
    i64,
    String,
    String,
    Option<String>,
    String,
    Value,
);

/// Every row of `events`, in `(ts, customer_id, event_id)` order, read directly.
pub(crate) async fn stored_events(store: &Store) -> Vec<EventTuple> {
    type Raw<T> = (String, T, T, String, String, Option<String>, String, String);
    let mut rows: Vec<EventTuple> = match store {
        Store::Postgres(pool) => sqlx::query_as::<_, Raw<chrono::DateTime<Utc>>>(
            "SELECT event_id::text, ts, ingested_at, customer_id, agent_id, run_id, event_type, payload::text FROM events",
        )
        .fetch_all(pool)
        .await
        .expect("read events")
        .into_iter()
        .map(|(id, ts, ing, c, a, r, t, p)| {
            (id, ts.timestamp_millis(), ing.timestamp_millis(), c, a, r, t, serde_json::from_str(&p).expect("payload"))
        })
        .collect(),
        Store::Sqlite(pool) => sqlx::query_as::<_, Raw<i64>>(
            "SELECT event_id, ts, ingested_at, customer_id, agent_id, run_id, event_type, payload FROM events",
        )
        .fetch_all(pool)
        .await
        .expect("read events")
        .into_iter()
        .map(|(id, ts, ing, c, a, r, t, p)| (id, ts, ing, c, a, r, t, serde_json::from_str(&p).expect("payload")))
        .collect(),
    };
    rows.sort_by(|a, b| (a.1, &a.3, &a.0).cmp(&(b.1, &b.3, &b.0)));
    rows
}
