//! Ingest benchmark: `cargo bench -p brain-server --bench ingest`.
//!
//! On SQLite (a temp file) and on Postgres (a fresh database, when reachable at
//! `BRAIN_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`), with the
//! same number of concurrent clients, measures events/s for:
//!
//! - `http batched`: `POST /v1/events` with 100 events per request, through the real server;
//! - `raw multi-row`: the same rows inserted directly, 100 per statement and transaction;
//! - `http single`: one event per request (group commit at work);
//! - `raw single`: one row per statement, each its own commit;
//! - `http batched` and `http single` again on a second server over the same database with
//!   rollup maintenance turned off (`Limits::rollups`, benchmarks only), to price the rollups.
//!
//! and prints `batched / raw multi-row` and `single / raw single` ratios (goals on Postgres:
//! ≥ 0.80 and ≥ 1.5), and ingest with rollups / without (goal ≥ 0.85, issue 7). Request bodies and raw rows are prepared before timing, so the
//! figures compare the server with the database, not JSON generation. Settings:
//! `BENCH_CLIENTS` (32), `BENCH_BATCHES` per client (40), `BENCH_SINGLES` per client (1000),
//! `BENCH_ROUNDS` (3; medians are reported, each measurement starting from an empty table).

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![expect(clippy::unwrap_used, reason = "a benchmark aborts on any failure")]
#![expect(
    clippy::disallowed_methods,
    reason = "a benchmark reads its settings and spawns its clients"
)]

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use brain_server::config::{DbConfig, Limits, ServerConfig};
use brain_server::{AppState, Store};
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};
use shared_proto::KeyEnv;
use sqlx::QueryBuilder;
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

/// Runs one task per client over its prepared work items; returns events per second.
async fn measure<T, F, Fut>(work: Vec<Vec<T>>, op: F) -> f64
where
    T: Send + 'static,
    F: Fn(usize, T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = u64> + Send,
{
    let op = Arc::new(op);
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = work
        .into_iter()
        .enumerate()
        .map(|(c, items)| {
            let op = Arc::clone(&op);
            let done = Arc::clone(&done);
            tokio::spawn(async move {
                for item in items {
                    done.fetch_add(op(c, item).await, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Request bodies, prepared before timing: `per_client` bodies of `n` events per client.
fn bodies(clients: usize, per_client: usize, n: usize) -> Vec<Vec<Vec<u8>>> {
    (0..clients)
        .map(|c| {
            let agent = format!("agent_{c}");
            (0..per_client)
                .map(|_| {
                    let body = if n == 1 {
                        event(&agent)
                    } else {
                        Value::Array((0..n).map(|_| event(&agent)).collect())
                    };
                    serde_json::to_vec(&body).unwrap()
                })
                .collect()
        })
        .collect()
}

/// Raw rows, prepared before timing: `per_client` chunks of `n` rows per client.
fn raw_work(clients: usize, per_client: usize, n: usize) -> Vec<Vec<Vec<Row>>> {
    (0..clients)
        .map(|_| (0..per_client).map(|_| rows(n)).collect())
        .collect()
}

/// One event row as the server would store it (distinct ids, agents and payloads).
struct Row {
    id: Uuid,
    ts: chrono::DateTime<Utc>,
    customer_id: String,
    agent_id: String,
    run_id: String,
    event_type: &'static str,
    payload: String,
}

fn rows(n: usize) -> Vec<Row> {
    (0..n)
        .map(|i| {
            let e = event("agent_raw");
            Row {
                id: Uuid::new_v4(),
                ts: Utc::now(),
                customer_id: format!("raw{}", i % 32),
                agent_id: format!("agent_raw_{}", i % 32),
                run_id: "run_bench".to_owned(),
                event_type: "tool_call",
                payload: e["payload"].to_string(),
            }
        })
        .collect()
}

/// The same rows, inserted directly: one multi-row statement and one commit per call.
async fn raw_insert(store: &Store, rows: &[Row]) {
    let now = Utc::now();
    match store {
        Store::Postgres(pool) => {
            let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
            let ts: Vec<chrono::DateTime<Utc>> = rows.iter().map(|r| r.ts).collect();
            let customers: Vec<&str> = rows.iter().map(|r| r.customer_id.as_str()).collect();
            let agents: Vec<&str> = rows.iter().map(|r| r.agent_id.as_str()).collect();
            let runs: Vec<&str> = rows.iter().map(|r| r.run_id.as_str()).collect();
            let types: Vec<&str> = rows.iter().map(|r| r.event_type).collect();
            let payloads: Vec<&str> = rows.iter().map(|r| r.payload.as_str()).collect();
            let mut tx = pool.begin().await.unwrap();
            sqlx::query(
                "INSERT INTO events (event_id, ts, ingested_at, customer_id, agent_id, run_id, event_type, payload) \
                 SELECT e.id, e.ts, $3, e.customer_id, e.agent_id, e.run_id, e.event_type, e.payload::jsonb \
                 FROM UNNEST($1::uuid[], $2::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) \
                   AS e(id, ts, customer_id, agent_id, run_id, event_type, payload)",
            )
            .bind(ids)
            .bind(ts)
            .bind(now)
            .bind(customers)
            .bind(agents)
            .bind(runs)
            .bind(types)
            .bind(payloads)
            .execute(&mut *tx)
            .await
            .unwrap();
            tx.commit().await.unwrap();
        }
        Store::Sqlite(pool) => {
            let now = now.timestamp_millis();
            // Under heavy contention a raw writer can wait past the 5 s busy timeout
            // (SQLITE_BUSY, code 5): it tries again, as the server's clients would.
            loop {
                let mut tx = pool.begin().await.unwrap();
                let mut qb = QueryBuilder::new(
                    "INSERT INTO events (event_id, ts, ingested_at, customer_id, agent_id, run_id, event_type, payload) ",
                );
                qb.push_values(rows, |mut b, r| {
                    b.push_bind(r.id.to_string())
                        .push_bind(r.ts.timestamp_millis())
                        .push_bind(now)
                        .push_bind(r.customer_id.clone())
                        .push_bind(r.agent_id.clone())
                        .push_bind(r.run_id.clone())
                        .push_bind(r.event_type)
                        .push_bind(r.payload.clone());
                });
                match qb.build().execute(&mut *tx).await {
                    Ok(_) => {
                        tx.commit().await.unwrap();
                        break;
                    }
                    Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("5") => {}
                    Err(e) => panic!("raw insert: {e}"),
                }
            }
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

async fn start_server(db: DbConfig, clients: usize, rollups: bool) -> Server {
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
            pg_writers: usize::try_from(setting(
                "BENCH_PG_WRITERS",
                Limits::default().pg_writers as u64,
            ))
            .unwrap(),
            rollups,
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

/// The middle value (upper middle for an even count).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The rollup tables (docs/rollups.md), emptied with `events` between measurements.
const ROLLUP_TABLES: &str = "rollup_usage, rollup_tools, rollup_tool_latency, rollup_agents, \
     rollup_errors, rollup_ingest, runs, run_models, agent_heartbeats";

/// Empties `events` and the rollups and writes dirty pages out, so the next measurement
/// starts clean.
async fn reset(store: &Store) {
    match store {
        Store::Postgres(pool) => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "TRUNCATE events, dead_letters, {ROLLUP_TABLES}"
            )))
            .execute(pool)
            .await
            .unwrap();
            sqlx::query("CHECKPOINT").execute(pool).await.unwrap();
        }
        Store::Sqlite(pool) => {
            for table in ["events"].into_iter().chain(ROLLUP_TABLES.split(", ")) {
                let table = table.trim();
                sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
                    .execute(pool)
                    .await
                    .unwrap();
            }
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(pool)
                .await
                .unwrap();
        }
    }
}

async fn bench_backend(
    name: &str,
    db: DbConfig,
    clients: usize,
    batches: usize,
    singles: usize,
    rounds: usize,
) {
    let server = start_server(db.clone(), clients, true).await;
    // The same database, rollup maintenance off: what ingest cost before the rollups.
    let bare = start_server(db, clients, false).await;
    let store = server.state.store().clone();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    let post_to = |server: &Server| {
        let url = format!("{}/v1/events", server.base);
        let keys = Arc::new(server.keys.clone());
        let http = http.clone();
        move |c: usize, body: Vec<u8>, n: u64| {
            let (http, url, key) = (http.clone(), url.clone(), keys[c].clone());
            async move {
                let resp = http
                    .post(&url)
                    .bearer_auth(key)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    resp.status(),
                    200,
                    "{}",
                    resp.text().await.unwrap_or_default()
                );
                n
            }
        }
    };
    let post = post_to(&server);
    let post_bare = post_to(&bare);
    let commits = |s: &AppState| s.writer_stats().commits.load(Ordering::Relaxed);
    let insert = |store: &Store| {
        let store = store.clone();
        move |_c: usize, rows: Vec<Row>| {
            let store = store.clone();
            async move {
                raw_insert(&store, &rows).await;
                rows.len() as u64
            }
        }
    };

    // Each measurement starts from an empty, checkpointed `events` table, and the four
    // alternate over `rounds` rounds (medians reported), so that neither side pays for the
    // rows or the dirty pages the other left behind.
    let mut figures: [Vec<f64>; 6] = Default::default();
    let (mut batched_commits, mut single_commits) = (0, 0);
    for _ in 0..rounds {
        reset(&store).await;
        let c0 = commits(&server.state);
        let p = post.clone();
        figures[0].push(
            measure(bodies(clients, batches, BATCH), move |c, b| {
                p(c, b, BATCH as u64)
            })
            .await,
        );
        batched_commits = commits(&server.state) - c0;
        reset(&store).await;
        let p = post_bare.clone();
        figures[4].push(
            measure(bodies(clients, batches, BATCH), move |c, b| {
                p(c, b, BATCH as u64)
            })
            .await,
        );
        reset(&store).await;
        figures[1].push(measure(raw_work(clients, batches, BATCH), insert(&store)).await);
        reset(&store).await;
        let c2 = commits(&server.state);
        let p = post.clone();
        figures[2].push(measure(bodies(clients, singles, 1), move |c, b| p(c, b, 1)).await);
        single_commits = commits(&server.state) - c2;
        reset(&store).await;
        let p = post_bare.clone();
        figures[5].push(measure(bodies(clients, singles, 1), move |c, b| p(c, b, 1)).await);
        reset(&store).await;
        figures[3].push(measure(raw_work(clients, singles, 1), insert(&store)).await);
    }
    let [
        http_batched,
        raw_multi,
        http_single,
        raw_single,
        bare_batched,
        bare_single,
    ] = figures.map(median);

    println!(
        "== {name}: {clients} concurrent clients; {batches} batches of {BATCH} and {singles} single events per client; bodies and rows prepared before timing; median of {rounds} rounds, each from an empty table"
    );
    println!(
        "  http batched ({BATCH}/request) {http_batched:>10.0} events/s  ({batched_commits} commits in the last round)"
    );
    println!("  raw multi-row ({BATCH}/commit)  {raw_multi:>10.0} events/s");
    println!(
        "  http single (1/request)      {http_single:>10.0} events/s  ({single_commits} commits in the last round)"
    );
    println!("  raw single-row commits       {raw_single:>10.0} events/s");
    println!("  http batched, no rollups     {bare_batched:>10.0} events/s");
    println!("  http single, no rollups      {bare_single:>10.0} events/s");
    println!(
        "  batched / raw multi-row = {:.2}   (goal on Postgres >= 0.80)",
        http_batched / raw_multi
    );
    println!(
        "  single / raw single     = {:.2}   (goal on Postgres >= 1.50)",
        http_single / raw_single
    );
    println!(
        "  batched with / without rollups = {:.2}   (goal >= 0.85)",
        http_batched / bare_batched
    );
    println!(
        "  single with / without rollups  = {:.2}   (goal >= 0.85)",
        http_single / bare_single
    );

    for s in [server, bare] {
        let _ = s.shutdown.send(());
        s.task.await.unwrap().unwrap();
    }
    store.close().await;
}

#[tokio::main]
async fn main() {
    let clients = usize::try_from(setting("BENCH_CLIENTS", 32)).unwrap();
    let batches = usize::try_from(setting("BENCH_BATCHES", 40)).unwrap();
    let singles = usize::try_from(setting("BENCH_SINGLES", 1000)).unwrap();
    let rounds = usize::try_from(setting("BENCH_ROUNDS", 3)).unwrap().max(1);

    let dir = tempfile::TempDir::new().unwrap();
    bench_backend(
        "SQLite",
        DbConfig::embedded(dir.path()),
        clients,
        batches,
        singles,
        rounds,
    )
    .await;

    // A database of its own, dropped at the end (`SKIPPED` on stderr without Postgres).
    let Some(pg) = test_support::TestDb::create("brain_bench") else {
        println!("== Postgres: SKIPPED (unusable; see stderr)");
        return;
    };
    let db = DbConfig {
        database_url: Some(pg.url.clone().into()),
        data_dir: dir.path().to_owned(),
    };
    bench_backend("Postgres", db, clients, batches, singles, rounds).await;
}
