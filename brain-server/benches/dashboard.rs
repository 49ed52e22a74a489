//! Dashboard read benchmark: `cargo bench -p brain-server --bench dashboard`.
//!
//! Builds a realistic data set through the real server (HTTP ingest, 100 events per request,
//! `BENCH_CLIENTS` concurrent clients, so every row and rollup is written by the production
//! path): `BENCH_CUSTOMERS` customers (200) of unequal size (customer `c` gets a share ∝
//! 1/(c+1)^0.7, so `cust0` is the busiest), 10 agents each, agent runs spread over
//! `BENCH_DAYS` (90) days. A run is what the isolate wrapper and the Claude Code hooks send:
//! `session.start`, 5–80 tool calls (12 built-in tools and 6 MCP tools of 5 servers; 5 %
//! fail; durations log-uniform 5 ms–60 s), an `llm_usage` per ~4 calls over 3 models, an
//! `error` in 5 % of runs, `session.end` (90 % success, 7 % failed, 3 % timeout) and the
//! box's heartbeat.
//!
//! The data set is built in stages (`BENCH_STAGES`, events: `1000000,10000000`). After each,
//! every dashboard read is timed (`BENCH_WARMUP` 3 then `BENCH_REQUESTS` 20 sequential
//! requests; p50/p95 in ms) and, at the end, each read's last/first stage ratio is printed.
//! Goal: every p95 ≤ 50 ms at 10 M events and ≤ 2× its 1 M figure.
//!
//! Then batched ingest of fresh events is measured alone and with a loop of dashboard reads
//! running beside it (`BENCH_LOOP_EVENTS`, 200000 each): goal ≥ 0.90 of the rate alone.
//!
//! `BENCH_BACKENDS` (`sqlite,postgres`) picks the databases; Postgres is a fresh database at
//! `BRAIN_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).

#![expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]
#![expect(clippy::unwrap_used, reason = "a benchmark aborts on any failure")]
#![expect(
    clippy::disallowed_methods,
    reason = "a benchmark reads its settings and spawns its clients"
)]

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use brain_server::config::{DbConfig, Limits, ServerConfig};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::{Value, json};
use shared_proto::KeyEnv;
use uuid::Uuid;

const BATCH: usize = 100;
const ADMIN: &str = "bench-admin-token";
const AGENTS_PER_CUSTOMER: usize = 10;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// SplitMix64: a small deterministic generator, so every run builds the same data set.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

const BUILTIN: [&str; 12] = [
    "Bash",
    "Read",
    "Edit",
    "Write",
    "Grep",
    "Glob",
    "WebFetch",
    "WebSearch",
    "TodoWrite",
    "Task",
    "NotebookEdit",
    "LS",
];
const MCP: [(&str, &str); 6] = [
    ("mcp__github__create_issue", "github"),
    ("mcp__github__get_pull_request", "github"),
    ("mcp__linear__list_issues", "linear"),
    ("mcp__slack__post_message", "slack"),
    ("mcp__postgres__query", "postgres"),
    ("mcp__sentry__get_issue", "sentry"),
];
/// (model, cents per input token, cents per output token): rough list prices, for realistic
/// magnitudes only.
const MODELS: [(&str, f64, f64); 3] = [
    ("claude-opus-4-5-20251101", 0.0005, 0.0025),
    ("claude-sonnet-4-5-20250929", 0.0003, 0.0015),
    ("claude-haiku-4-5-20251001", 0.0001, 0.0005),
];

/// One event; `run` is `""` for an event outside any run (the heartbeat).
fn envelope(ts: DateTime<Utc>, event_type: &str, agent: &str, run: &str, payload: Value) -> Value {
    let mut ev = json!({
        "event_id": Uuid::new_v4().to_string(),
        "ts": ts.to_rfc3339_opts(SecondsFormat::Millis, true),
        "event_type": event_type,
        "agent_id": agent,
        "payload": payload,
    });
    if !run.is_empty() {
        ev["run_id"] = Value::from(run);
    }
    ev
}

/// The events of one agent run of `agent`, starting at `start` (all before `now`).
fn run_events(rng: &mut Rng, agent: &str, start: DateTime<Utc>, now: DateTime<Utc>) -> Vec<Value> {
    let run = format!("run_{}", Uuid::new_v4().simple());
    let mut out = vec![envelope(
        start,
        "session.start",
        agent,
        &run,
        json!({"paperclip_run_id": run, "agent_kind": "claude-code"}),
    )];
    let mut t = start;
    let calls = 5 + rng.below(76);
    for i in 0..calls {
        t += TimeDelta::milliseconds(1_000 + rng.below(30_000) as i64);
        let duration = (5.0 * (12_000f64).powf(rng.unit())) as u64; // 5 ms – 60 s
        let ok = !rng.chance(0.05);
        let payload = if rng.chance(0.2) {
            let (name, server) = MCP[rng.below(MCP.len() as u64) as usize];
            json!({"tool_name": name, "ok": ok, "duration_ms": duration, "tool_source": "mcp",
                   "mcp_server": server, "args_size_bytes": 200, "output_size_bytes": 4_000})
        } else {
            let name = BUILTIN[rng.below(BUILTIN.len() as u64) as usize];
            json!({"tool_name": name, "ok": ok, "duration_ms": duration, "tool_source": "builtin",
                   "args_size_bytes": 120, "output_size_bytes": 2_048})
        };
        out.push(envelope(t, "tool_call", agent, &run, payload));
        if i % 4 == 3 {
            let (model, cin, cout) = MODELS[rng.below(MODELS.len() as u64) as usize];
            let (input, output) = (100 + rng.below(5_000), 50 + rng.below(2_000));
            let cache_read = rng.below(50_000);
            out.push(envelope(
                t,
                "llm_usage",
                agent,
                &run,
                json!({"model": model, "input_tokens": input, "output_tokens": output,
                       "cache_read_tokens": cache_read, "cache_write_tokens": rng.below(5_000),
                       "cost_cents": input as f64 * cin + output as f64 * cout + cache_read as f64 * cin / 10.0,
                       "total_turns": 1 + i / 4}),
            ));
        }
    }
    if rng.chance(0.05) {
        let kind = ["hook_failed", "spawn_failed", "api_error"][rng.below(3) as usize];
        out.push(envelope(
            t,
            "error",
            agent,
            &run,
            json!({"kind": kind, "message_120c": format!("{kind}: exit status {}", 1 + rng.below(3)),
                   "stack_hash": format!("h{}", rng.below(8))}),
        ));
    }
    let end = (t + TimeDelta::seconds(2)).min(now);
    let roll = rng.unit();
    let (status, code) = if roll < 0.90 {
        ("success", 0)
    } else if roll < 0.97 {
        ("failed", 1)
    } else {
        ("timeout", 124)
    };
    out.push(envelope(
        end,
        "session.end",
        agent,
        &run,
        json!({"status": status, "exit_code": code, "duration_ms": (end - start).num_milliseconds().max(0)}),
    ));
    out.push(envelope(
        end,
        "heartbeat",
        agent,
        "",
        json!({"paperclip_uptime_s": 86_400, "agent_runtime_count": 1 + rng.below(4),
               "host_load_1m": rng.unit() * 4.0, "agent_versions": {agent: "2.0.30"},
               "spool_depth": rng.below(20), "spool_dropped": 0}),
    ));
    out
}

/// Customer weights ∝ 1/(c+1)^0.7, as cumulative fractions for sampling.
fn customer_cdf(customers: usize) -> Vec<f64> {
    let w: Vec<f64> = (0..customers)
        .map(|c| 1.0 / ((c + 1) as f64).powf(0.7))
        .collect();
    let total: f64 = w.iter().sum();
    let mut acc = 0.0;
    w.iter()
        .map(|x| {
            acc += x / total;
            acc
        })
        .collect()
}

struct Server {
    base: String,
    /// One key per customer (`cust{i}`).
    keys: Vec<String>,
    store: brain_server::Store,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start_server(db: DbConfig, customers: usize) -> Server {
    let store = brain_server::open_store(&db).await.unwrap();
    let env = KeyEnv::parse("bench").unwrap();
    let mut keys = Vec::new();
    for c in 0..customers {
        let k = store
            .mint_key(
                &format!("cust{c}"),
                &format!("Customer {c}"),
                None,
                &env,
                "bench",
            )
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
        admin_token: Some(ADMIN.to_owned().into()),
        limits: Limits {
            rate_per_sec: big,
            rate_burst: big,
            ..Limits::default()
        },
    };
    let state = brain_server::build_state(store.clone(), &config, &db.data_dir).unwrap();
    let (shutdown, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(brain_server::run(listener, state, async move {
        let _ = rx.await;
    }));
    Server {
        base: format!("http://{addr}"),
        keys,
        store,
        shutdown,
        task,
    }
}

async fn post(http: &reqwest::Client, base: &str, key: &str, batch: &[Value]) {
    let resp = http
        .post(format!("{base}/v1/events"))
        .bearer_auth(key)
        .json(batch)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rejected"], 0, "{body}");
}

/// Sends about `events` generated events (whole runs) through `clients` concurrent clients.
async fn load(
    server: &Server,
    http: &reqwest::Client,
    events: u64,
    clients: usize,
    seed: u64,
    days: i64,
) {
    let cdf = Arc::new(customer_cdf(server.keys.len()));
    let keys = Arc::new(server.keys.clone());
    let sent = Arc::new(AtomicU64::new(0));
    let now = Utc::now();
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let (cdf, keys, sent, http, base) = (
                Arc::clone(&cdf),
                Arc::clone(&keys),
                Arc::clone(&sent),
                http.clone(),
                server.base.clone(),
            );
            tokio::spawn(async move {
                let mut rng = Rng(seed.wrapping_mul(1_000_003).wrapping_add(client as u64));
                let quota = events / clients as u64;
                let mut mine = 0u64;
                while mine < quota {
                    let u = rng.unit();
                    let customer = cdf.partition_point(|&x| x < u).min(keys.len() - 1);
                    let agent = format!("a{customer}_{}", rng.below(AGENTS_PER_CUSTOMER as u64));
                    // Runs start anywhere in the last `days` days, ending before now.
                    let back = rng.below((days * 86_400_000) as u64) as i64 + 3_600_000;
                    let start = now - TimeDelta::milliseconds(back);
                    let evs = run_events(&mut rng, &agent, start, now);
                    mine += evs.len() as u64;
                    for chunk in evs.chunks(BATCH) {
                        post(&http, &base, &keys[customer], chunk).await;
                    }
                }
                sent.fetch_add(mine, Ordering::Relaxed);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let n = sent.load(Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  loaded {n} events in {secs:.0} s ({:.0} events/s)",
        n as f64 / secs
    );
}

/// The reads the dashboard makes, as the operator's questions (path and query).
fn reads(busiest: &str) -> Vec<(String, String)> {
    [
        ("overview", "/v1/dashboard/overview".to_owned()),
        ("customers", "/v1/dashboard/customers".to_owned()),
        (
            "agents?customer_id= (busiest)",
            format!("/v1/dashboard/agents?customer_id={busiest}"),
        ),
        ("agents (all)", "/v1/dashboard/agents".to_owned()),
        (
            "tools?window=24h",
            "/v1/dashboard/tools?window=24h".to_owned(),
        ),
        (
            "tools?window=30d",
            "/v1/dashboard/tools?window=30d".to_owned(),
        ),
        (
            "tools?window=30d&customer_id=",
            format!("/v1/dashboard/tools?window=30d&customer_id={busiest}"),
        ),
        (
            "cost?window=30d&bucket=day",
            "/v1/dashboard/cost?window=30d&bucket=day".to_owned(),
        ),
        (
            "cost?window=90d&bucket=week&customer_id=",
            format!("/v1/dashboard/cost?window=90d&bucket=week&customer_id={busiest}"),
        ),
        ("sessions", "/v1/dashboard/sessions".to_owned()),
        (
            "sessions?customer_id=&status=failed",
            format!("/v1/dashboard/sessions?customer_id={busiest}&status=failed"),
        ),
        (
            "errors?window=7d",
            "/v1/dashboard/errors?window=7d".to_owned(),
        ),
        ("fleet", "/v1/dashboard/fleet".to_owned()),
        ("health", "/v1/dashboard/health".to_owned()),
    ]
    .into_iter()
    .map(|(name, path)| (name.to_owned(), path))
    .collect()
}

async fn get(http: &reqwest::Client, base: &str, path: &str) {
    let resp = http
        .get(format!("{base}{path}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.bytes().await.unwrap();
    assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
}

/// The value at quantile `q` of `v` (nearest rank).
fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// A read's name, p50 and p95 in ms.
type ReadTiming = (String, f64, f64);

/// Times each read.
async fn time_reads(
    http: &reqwest::Client,
    base: &str,
    reads: &[(String, String)],
    warmup: usize,
    requests: usize,
) -> Vec<ReadTiming> {
    let mut out = Vec::new();
    for (name, path) in reads {
        for _ in 0..warmup {
            get(http, base, path).await;
        }
        let mut ms = Vec::with_capacity(requests);
        for _ in 0..requests {
            let t = Instant::now();
            get(http, base, path).await;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let (p50, p95) = (quantile(&mut ms, 0.5), quantile(&mut ms, 0.95));
        println!("  {name:<42} p50 {p50:>8.1} ms   p95 {p95:>8.1} ms");
        out.push((name.clone(), p50, p95));
    }
    out
}

/// Batched ingest of `events` fresh events (now-stamped tool calls, prepared before timing)
/// through `clients` clients; events/s.
async fn ingest_rate(
    server: &Server,
    http: &reqwest::Client,
    events: usize,
    clients: usize,
) -> f64 {
    let now = Utc::now();
    let per_client = events / clients / BATCH;
    let work: Vec<Vec<Vec<Value>>> = (0..clients)
        .map(|c| {
            let agent = format!("a{}_0", c % server.keys.len());
            (0..per_client)
                .map(|_| {
                    (0..BATCH)
                        .map(|_| {
                            envelope(
                                now,
                                "tool_call",
                                &agent,
                                "run_loop",
                                json!({"tool_name": "Bash", "ok": true, "duration_ms": 42, "tool_source": "builtin"}),
                            )
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    let tasks: Vec<_> = work
        .into_iter()
        .enumerate()
        .map(|(c, batches)| {
            let (http, base, key) = (
                http.clone(),
                server.base.clone(),
                server.keys[c % server.keys.len()].clone(),
            );
            tokio::spawn(async move {
                for b in batches {
                    post(&http, &base, &key, &b).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (per_client * clients * BATCH) as f64 / started.elapsed().as_secs_f64()
}

async fn bench_backend(name: &str, db: DbConfig) {
    let clients = usize::try_from(setting("BENCH_CLIENTS", 32)).unwrap();
    let customers = usize::try_from(setting("BENCH_CUSTOMERS", 200))
        .unwrap()
        .max(1);
    let days = i64::try_from(setting("BENCH_DAYS", 90)).unwrap().max(1);
    let warmup = usize::try_from(setting("BENCH_WARMUP", 3)).unwrap();
    let requests = usize::try_from(setting("BENCH_REQUESTS", 20))
        .unwrap()
        .max(1);
    let loop_events = usize::try_from(setting("BENCH_LOOP_EVENTS", 200_000)).unwrap();
    let stages: Vec<u64> = std::env::var("BENCH_STAGES")
        .unwrap_or_else(|_| "1000000,10000000".to_owned())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();

    println!(
        "== {name}: {customers} customers × {AGENTS_PER_CUSTOMER} agents, runs over {days} days, loaded through HTTP by {clients} clients"
    );
    let server = start_server(db, customers).await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients + 2)
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap();
    let reads = reads("cust0");
    let mut loaded = 0u64;
    let mut figures: Vec<(u64, Vec<ReadTiming>)> = Vec::new();
    for (i, &target) in stages.iter().enumerate() {
        load(
            &server,
            &http,
            target.saturating_sub(loaded),
            clients,
            i as u64 + 1,
            days,
        )
        .await;
        loaded = target;
        println!(
            "-- {name} at {loaded} events: {warmup} warm-up then {requests} timed requests per read"
        );
        figures.push((
            loaded,
            time_reads(&http, &server.base, &reads, warmup, requests).await,
        ));
    }
    if let (Some((n0, first)), Some((n1, last))) = (figures.first(), figures.last())
        && n1 > n0
    {
        println!("-- {name}: p95 at {n1} events against {n0} (goal: ≤ 50 ms and ≤ 2×)");
        for ((read, _, p95_0), (_, _, p95_1)) in first.iter().zip(last) {
            let verdict = if *p95_1 <= 50.0 && *p95_1 <= 2.0 * p95_0.max(1.0) {
                "met"
            } else {
                "MISSED"
            };
            println!(
                "  {read:<42} {p95_0:>8.1} → {p95_1:>8.1} ms  ({:.2}×)  {verdict}",
                p95_1 / p95_0
            );
        }
    }

    // Batched ingest alone, then with the page's reads looping beside it.
    let alone = ingest_rate(&server, &http, loop_events, clients).await;
    let stop = Arc::new(AtomicBool::new(false));
    let loops = Arc::new(AtomicU64::new(0));
    let reader = {
        let (http, base, reads, stop, loops) = (
            http.clone(),
            server.base.clone(),
            reads.clone(),
            Arc::clone(&stop),
            Arc::clone(&loops),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                for (_, path) in &reads {
                    get(&http, &base, path).await;
                }
                loops.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let beside = ingest_rate(&server, &http, loop_events, clients).await;
    stop.store(true, Ordering::Relaxed);
    reader.await.unwrap();
    println!(
        "-- {name}: batched ingest {alone:.0} events/s alone, {beside:.0} with a dashboard read loop ({} full loops): {:.2} (goal ≥ 0.90)",
        loops.load(Ordering::Relaxed),
        beside / alone
    );

    let _ = server.shutdown.send(());
    server.task.await.unwrap().unwrap();
    server.store.close().await;
}

#[tokio::main]
async fn main() {
    let backends = std::env::var("BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".to_owned());
    let dir = tempfile::TempDir::new().unwrap();
    if backends.contains("sqlite") {
        bench_backend("SQLite", DbConfig::embedded(dir.path())).await;
    }
    if backends.contains("postgres") {
        // A database of its own, dropped at the end (`SKIPPED` on stderr without Postgres).
        let Some(pg) = test_support::TestDb::create("brain_bench") else {
            println!("== Postgres: SKIPPED (unusable; see stderr)");
            return;
        };
        let db = DbConfig {
            database_url: Some(pg.url.clone().into()),
            data_dir: dir.path().to_owned(),
        };
        bench_backend("Postgres", db).await;
    }
}
