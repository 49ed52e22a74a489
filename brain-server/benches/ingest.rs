//! Ingest benchmark: `cargo bench -p brain-server --bench ingest`.
//!
//! On SQLite (a temp file) and on Postgres (a fresh database, when reachable at
//! `BRAIN_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`), with the
//! same number of concurrent clients, measures events/s for:
//!
//! - `http batched`: `POST /v1/events` with 100 events per request, through the real server;
//! - `raw multi-row`: the same rows inserted directly, 100 per statement and transaction;
//! - `http single`: one event per request (group commit at work);
//! - `raw single`: one row per statement, each its own commit.
//!
//! and prints `batched / raw multi-row` and `single / raw single` ratios. Goals on Postgres:
//! ≥ 0.80 and ≥ 1.5. Settings: `BENCH_CLIENTS` (32), `BENCH_SECONDS` per phase (3).

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![expect(clippy::unwrap_used, reason = "a benchmark aborts on any failure")]
#![expect(
    clippy::disallowed_methods,
    reason = "a benchmark reads its settings and spawns its clients"
)]

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use brain_server::config::{DbConfig, Limits, ServerConfig};
use brain_server::{AppState, Store};
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};
use shared_proto::KeyEnv;
use sqlx::{Connection, QueryBuilder};
use uuid::Uuid;

const BATCH: usize = 100;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn event(agent: &str) -> Value {
    json!({
        "event_id": Uuid::new_v4().to_string(),
        "ts": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        "event_type": "tool_call",
        "agent_id": agent,
        "run_id": "run_bench",
        "payload": {"tool_name": "Bash", "ok": true, "duration_ms": 42, "args_size_bytes": 120, "output_size_bytes": 2048},
    })
}

/// Runs `clients` loops of `op` for `secs` seconds; returns events per second.
async fn measure<F, Fut>(clients: usize, secs: u64, op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = u64> + Send,
{
    let op = Arc::new(op);
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let op = Arc::clone(&op);
            let done = Arc::clone(&done);
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    done.fetch_add(op(c).await, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

struct Row {
    id: Uuid,
    payload: String,
}

fn rows(n: usize) -> Vec<Row> {
    (0..n)
        .map(|_| {
            let e = event("agent_raw");
            Row {
                id: Uuid::new_v4(),
                payload: e["payload"].to_string(),
            }
        })
        .collect()
}

async fn raw_insert(store: &Store, rows: &[Row]) {
    let now = Utc::now();
    match store {
        Store::Postgres(pool) => {
            let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
            let payloads: Vec<&str> = rows.iter().map(|r| r.payload.as_str()).collect();
            let mut tx = pool.begin().await.unwrap();
            sqlx::query(
                "INSERT INTO events (event_id, ts, ingested_at, customer_id, agent_id, run_id, event_type, payload) \
                 SELECT e.id, $2, $2, 'raw', 'agent_raw', 'run_bench', 'tool_call', e.payload::jsonb \
                 FROM UNNEST($1::uuid[], $3::text[]) AS e(id, payload)",
            )
            .bind(ids)
            .bind(now)
            .bind(payloads)
            .execute(&mut *tx)
            .await
            .unwrap();
            tx.commit().await.unwrap();
        }
        Store::Sqlite(pool) => {
            let now = now.timestamp_millis();
            let mut tx = pool.begin().await.unwrap();
            let mut qb = QueryBuilder::new(
                "INSERT INTO events (event_id, ts, ingested_at, customer_id, agent_id, run_id, event_type, payload) ",
            );
            qb.push_values(rows, |mut b, r| {
                b.push_bind(r.id.to_string())
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind("raw")
                    .push_bind("agent_raw")
                    .push_bind("run_bench")
                    .push_bind("tool_call")
                    .push_bind(r.payload.clone());
            });
            qb.build().execute(&mut *tx).await.unwrap();
            tx.commit().await.unwrap();
        }
    }
}

struct Server {
    base: String,
    keys: Vec<String>,
    state: AppState,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start_server(db: DbConfig, clients: usize) -> Server {
    let store = brain_server::open_store(&db).await.unwrap();
    let env = KeyEnv::parse("bench").unwrap();
    let mut keys = Vec::new();
    for c in 0..clients {
        let k = store
            .mint_key(&format!("cust{c}"), "bench", None, &env, "bench")
            .await
            .unwrap();
        keys.push(k.api_key.expose().to_owned());
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let big = NonZeroU32::new(1_000_000).unwrap();
    let config = ServerConfig {
        listen: addr.to_string(),
        db: db.clone(),
        admin_token: Some("bench".to_owned().into()),
        limits: Limits {
            rate_per_sec: big,
            rate_burst: big,
            ..Limits::default()
        },
    };
    let state = brain_server::build_state(store, &config, &db.data_dir).unwrap();
    let (shutdown, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(brain_server::run(listener, state.clone(), async move {
        let _ = rx.await;
    }));
    Server {
        base: format!("http://{addr}"),
        keys,
        state,
        shutdown,
        task,
    }
}

async fn bench_backend(name: &str, db: DbConfig, clients: usize, secs: u64) {
    let server = start_server(db, clients).await;
    let store = server.state.store().clone();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    let url = format!("{}/v1/events", server.base);
    let keys = Arc::new(server.keys.clone());

    let post = {
        let (http, url, keys) = (http.clone(), url.clone(), Arc::clone(&keys));
        move |c: usize, n: usize| {
            let (http, url, key) = (http.clone(), url.clone(), keys[c].clone());
            async move {
                let agent = format!("agent_{c}");
                let body = if n == 1 {
                    event(&agent)
                } else {
                    Value::Array((0..n).map(|_| event(&agent)).collect())
                };
                let resp = http
                    .post(&url)
                    .bearer_auth(key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    resp.status(),
                    200,
                    "{}",
                    resp.text().await.unwrap_or_default()
                );
                n as u64
            }
        }
    };
    let commits = |s: &AppState| s.writer_stats().commits.load(Ordering::Relaxed);

    let c0 = commits(&server.state);
    let p = post.clone();
    let http_batched = measure(clients, secs, move |c| p(c, BATCH)).await;
    let c1 = commits(&server.state);
    let s = store.clone();
    let raw_multi = measure(clients, secs, move |_| {
        let s = s.clone();
        async move {
            raw_insert(&s, &rows(BATCH)).await;
            BATCH as u64
        }
    })
    .await;
    let c2 = commits(&server.state);
    let p = post.clone();
    let http_single = measure(clients, secs, move |c| p(c, 1)).await;
    let c3 = commits(&server.state);
    let s = store.clone();
    let raw_single = measure(clients, secs, move |_| {
        let s = s.clone();
        async move {
            raw_insert(&s, &rows(1)).await;
            1
        }
    })
    .await;

    println!("== {name}: {clients} concurrent clients, {secs} s per phase");
    println!(
        "  http batched ({BATCH}/request) {http_batched:>10.0} events/s  ({} commits)",
        c1 - c0
    );
    println!("  raw multi-row ({BATCH}/commit)  {raw_multi:>10.0} events/s");
    println!(
        "  http single (1/request)      {http_single:>10.0} events/s  ({} commits)",
        c3 - c2
    );
    println!("  raw single-row commits       {raw_single:>10.0} events/s");
    println!(
        "  batched / raw multi-row = {:.2}   (goal on Postgres >= 0.80)",
        http_batched / raw_multi
    );
    println!(
        "  single / raw single     = {:.2}   (goal on Postgres >= 1.50)",
        http_single / raw_single
    );

    let _ = server.shutdown.send(());
    server.task.await.unwrap().unwrap();
    store.close().await;
}

#[tokio::main]
async fn main() {
    let clients = usize::try_from(setting("BENCH_CLIENTS", 32)).unwrap();
    let secs = setting("BENCH_SECONDS", 3);

    let dir = tempfile::TempDir::new().unwrap();
    bench_backend("SQLite", DbConfig::embedded(dir.path()), clients, secs).await;

    let base = std::env::var("BRAIN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let Ok(mut conn) = sqlx::PgConnection::connect(&base).await else {
        println!("== Postgres: SKIPPED (unreachable at {base})");
        return;
    };
    let name = format!("brain_bench_{}", Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let (prefix, _) = base.rsplit_once('/').unwrap();
    let db = DbConfig {
        database_url: Some(format!("{prefix}/{name}").into()),
        data_dir: dir.path().to_owned(),
    };
    bench_backend("Postgres", db, clients, secs).await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
}
