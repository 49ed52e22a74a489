//! Rollups (docs/rollups.md, issue 7): maintained by the ingest write in the same transaction
//! as the events, and proved by the real `brain-server rollups verify` / `rollups rebuild`.
//!
//! The fixture sessions (`fixtures/claude-code/transcripts`, real Claude Code transcripts;
//! provenance and licences in `fixtures/claude-code/SOURCES.md`) are replayed as events over
//! HTTP: one `tool_call` per `tool_use` block (failed when its `tool_result` says `is_error`,
//! timed by the two lines' timestamps), one `llm_usage` per assistant line (the lines of one
//! API response share an `event_id`, so the server keeps the first and the others are
//! duplicates), plus each run's `session.start`/`session.end`, an `error` and a `heartbeat`.
//! The figures expected are counted here from the events sent, independently of the server.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Command, Output};

use brain_server::Store;
use chrono::DateTime;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use crate::helpers::{Backend, Options, TestApp, fresh_postgres_db, limits, spawn_app_on_url};

both!(
    fixture_sessions_roll_up_exactly_and_verify_catches_a_corrupt_row,
    a_server_started_on_events_without_rollups_rebuilds_them,
);

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fixtures/claude-code/transcripts"
);

/// The fixture sessions, in a fixed order: the six top-level transcripts.
fn sessions() -> Vec<(String, Vec<Value>)> {
    let mut files: Vec<_> = std::fs::read_dir(FIXTURES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            let lines = std::fs::read_to_string(&p)
                .unwrap()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect();
            (stem, lines)
        })
        .collect()
}

fn ms_between(a: &str, b: &str) -> Option<u64> {
    let a = DateTime::parse_from_rfc3339(a).ok()?;
    let b = DateTime::parse_from_rfc3339(b).ok()?;
    u64::try_from((b - a).num_milliseconds()).ok()
}

fn envelope(id: Uuid, ts: &str, event_type: &str, agent: &str, run: &str, payload: Value) -> Value {
    json!({"event_id": id.to_string(), "ts": ts, "event_type": event_type,
           "agent_id": agent, "run_id": run, "payload": payload})
}

/// One session's events, in transcript order.
struct Session {
    customer: &'static str,
    agent: String,
    run: String,
    events: Vec<Value>,
}

/// The events of every fixture session; even sessions are `acme`'s, odd ones `globex`'s.
fn fixture_events() -> Vec<Session> {
    sessions()
        .into_iter()
        .enumerate()
        .map(|(i, (stem, lines))| {
            let customer = if i % 2 == 0 { "acme" } else { "globex" };
            let agent = format!("agent_{}", &stem[..stem.len().min(8)]);
            let run = format!("run_{stem}");
            let stamped: Vec<&Value> = lines
                .iter()
                .filter(|l| l["timestamp"].is_string())
                .collect();
            let first_ts = stamped[0]["timestamp"].as_str().unwrap().to_owned();
            let last_ts = stamped[stamped.len() - 1]["timestamp"]
                .as_str()
                .unwrap()
                .to_owned();
            // tool_use_id → (is_error, ts) of its result.
            let mut results: HashMap<&str, (bool, &str)> = HashMap::new();
            for l in &stamped {
                if let Some(blocks) = l["message"]["content"].as_array() {
                    for b in blocks {
                        if b["type"] == "tool_result" {
                            results.insert(
                                b["tool_use_id"].as_str().unwrap_or_default(),
                                (
                                    b["is_error"] == true,
                                    l["timestamp"].as_str().unwrap_or_default(),
                                ),
                            );
                        }
                    }
                }
            }
            let mut events = vec![envelope(
                Uuid::new_v4(),
                &first_ts,
                "session.start",
                &agent,
                &run,
                json!({"paperclip_run_id": stem}),
            )];
            let mut message_ids: HashMap<String, Uuid> = HashMap::new();
            for l in &stamped {
                if l["type"] != "assistant" {
                    continue;
                }
                let ts = l["timestamp"].as_str().unwrap();
                let m = &l["message"];
                for b in m["content"].as_array().into_iter().flatten() {
                    if b["type"] != "tool_use" {
                        continue;
                    }
                    let name = b["name"].as_str().unwrap();
                    let id = b["id"].as_str().unwrap_or_default();
                    let mut payload = json!({"tool_name": name, "ok": true});
                    if let Some((is_error, done)) = results.get(id) {
                        payload["ok"] = json!(!is_error);
                        if let Some(ms) = ms_between(ts, done) {
                            payload["duration_ms"] = json!(ms);
                        }
                    }
                    if let Some(rest) = name.strip_prefix("mcp__") {
                        payload["tool_source"] = json!("mcp");
                        payload["mcp_server"] = json!(rest.split("__").next().unwrap());
                    } else {
                        payload["tool_source"] = json!("builtin");
                    }
                    events.push(envelope(Uuid::new_v4(), ts, "tool_call", &agent, &run, payload));
                }
                let u = &m["usage"];
                if u.is_object() {
                    let id = *message_ids
                        .entry(m["id"].as_str().unwrap_or_default().to_owned())
                        .or_insert_with(Uuid::new_v4);
                    let n = |k: &str| u[k].as_u64().unwrap_or(0);
                    let (input, output) = (n("input_tokens"), n("output_tokens"));
                    let (read, write) = (
                        n("cache_read_input_tokens"),
                        n("cache_creation_input_tokens"),
                    );
                    let cost = (input * 300 + output * 1500 + read * 30 + write * 375) as f64 / 1e6;
                    events.push(envelope(
                        id,
                        ts,
                        "llm_usage",
                        &agent,
                        &run,
                        json!({"model": m["model"], "input_tokens": input, "output_tokens": output,
                               "cache_read_tokens": read, "cache_write_tokens": write,
                               "cost_cents": cost, "total_turns": 1}),
                    ));
                }
            }
            events.push(envelope(
                Uuid::new_v4(),
                &last_ts,
                "error",
                &agent,
                &run,
                json!({"kind": "hook_failed", "message_120c": format!("session {stem} hook failed"),
                       "stack_hash": "abc123"}),
            ));
            events.push(envelope(
                Uuid::new_v4(),
                &last_ts,
                "heartbeat",
                &agent,
                &run,
                json!({"paperclip_uptime_s": 600, "agent_runtime_count": 2, "host_load_1m": 0.75,
                       "agent_versions": {agent.clone(): "2.1.39"}, "spool_depth": 0, "spool_dropped": 0}),
            ));
            let failed = stem == "short";
            events.push(envelope(
                Uuid::new_v4(),
                &last_ts,
                "session.end",
                &agent,
                &run,
                json!({"status": if failed { "failed" } else { "success" },
                       "exit_code": i64::from(failed),
                       "duration_ms": ms_between(&first_ts, &last_ts).unwrap_or(0)}),
            ));
            Session {
                customer,
                agent,
                run,
                events,
            }
        })
        .collect()
}

/// customer, run, agent, events, tool calls, tool failures, status, error events.
type RunRow = (String, String, String, i64, i64, i64, Option<String>, i64);

/// The first event of each `event_id` (what the server stores), per session.
fn stored(session: &Session) -> Vec<&Value> {
    let mut seen = std::collections::HashSet::new();
    session
        .events
        .iter()
        .filter(|e| seen.insert(e["event_id"].as_str().unwrap().to_owned()))
        .collect()
}

/// Rows of `sql` on either backend.
async fn rows<T>(store: &Store, sql: &str) -> Vec<T>
where
    T: for<'r> sqlx::FromRow<'r, PgRow> + for<'r> sqlx::FromRow<'r, SqliteRow> + Send + Unpin,
{
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    match store {
        Store::Postgres(pool) => sqlx::query_as(sql).fetch_all(pool).await.unwrap(),
        Store::Sqlite(pool) => sqlx::query_as(sql).fetch_all(pool).await.unwrap(),
    }
}

/// Runs `sql` on either backend.
async fn exec(store: &Store, sql: &str) {
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    match store {
        Store::Postgres(pool) => drop(sqlx::query(sql).execute(pool).await.unwrap()),
        Store::Sqlite(pool) => drop(sqlx::query(sql).execute(pool).await.unwrap()),
    }
}

/// Runs the real `brain-server` binary on the database (`url`, else the SQLite file of
/// `data_dir`).
fn brain_server(data_dir: &Path, url: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_brain-server"));
    c.env_clear()
        .env("RUST_LOG", "info")
        .env("BRAIN_DATA_DIR", data_dir);
    if let Some(url) = url {
        c.env("DATABASE_URL", url);
    }
    c.args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `rollups verify` exits 0 and says so.
fn assert_verifies(data_dir: &Path, url: Option<&str>) {
    let out = brain_server(data_dir, url, &["rollups", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no difference"),
        "{}",
        text(&out)
    );
}

/// A server on a fresh database of `backend`, and the URL the binary needs (Postgres), with
/// the database kept alive by the returned guard.
async fn app_and_url(
    backend: Backend,
    opts: Options,
) -> Option<(TestApp, Option<test_support::TestDb>)> {
    match backend {
        Backend::Sqlite => Some((crate::helpers::spawn_app_with(backend, opts).await?, None)),
        Backend::Postgres => {
            let db = fresh_postgres_db()?;
            let app = spawn_app_on_url(&db.url, opts).await;
            Some((app, Some(db)))
        }
    }
}

/// Sends every session's events in batches of 200, each customer with its key; every event
/// is accepted or a duplicate (the repeated lines of one API response).
async fn replay(app: &TestApp, keys: &HashMap<&str, String>, sessions: &[Session]) -> u64 {
    let mut accepted = 0;
    for s in sessions {
        for batch in s.events.chunks(200) {
            let (status, body) = app.ingest(&keys[s.customer], &json!(batch)).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["rejected"], 0, "{body}");
            accepted += body["accepted"].as_u64().unwrap();
        }
    }
    accepted
}

/// Totals that any double count or lost contribution would move.
async fn totals(store: &Store) -> Vec<(i64,)> {
    let mut out = Vec::new();
    for sql in [
        "SELECT CAST(COALESCE(SUM(calls + failures + timed_calls + duration_sum_ms), 0) AS BIGINT) FROM rollup_tools",
        "SELECT CAST(COALESCE(SUM(calls), 0) AS BIGINT) FROM rollup_tool_latency",
        "SELECT CAST(COALESCE(SUM(input_tokens + output_tokens + cache_read_tokens + cache_write_tokens + llm_events), 0) AS BIGINT) FROM rollup_usage",
        "SELECT CAST(COALESCE(SUM(events + runs + tool_calls + error_events), 0) AS BIGINT) FROM rollup_agents",
        "SELECT CAST(COALESCE(SUM(events), 0) AS BIGINT) FROM rollup_errors",
        "SELECT CAST(COALESCE(SUM(events), 0) AS BIGINT) FROM rollup_ingest",
        "SELECT CAST(COALESCE(SUM(events + tool_calls + llm_events), 0) AS BIGINT) FROM runs",
        "SELECT CAST(COALESCE(SUM(input_tokens + llm_events), 0) AS BIGINT) FROM run_models",
        "SELECT CAST(COUNT(*) AS BIGINT) FROM agent_heartbeats",
    ] {
        out.extend(rows::<(i64,)>(store, sql).await);
    }
    out
}

async fn fixture_sessions_roll_up_exactly_and_verify_catches_a_corrupt_row(backend: Backend) {
    let Some((app, db)) = app_and_url(backend, Options::default()).await else {
        return;
    };
    let url = db.as_ref().map(|d| d.url.as_str());
    let dir = app.data_dir.path().to_owned();
    let store = app.store().clone();
    let keys: HashMap<&str, String> = HashMap::from([
        ("acme", app.mint("acme").await),
        ("globex", app.mint("globex").await),
    ]);
    let sessions = fixture_events();

    let accepted = replay(&app, &keys, &sessions).await;
    let distinct: usize = sessions.iter().map(|s| stored(s).len()).sum();
    assert_eq!(accepted, distinct as u64);

    // Tool calls and failures per customer and tool, at both grains and the fleet level.
    let mut expected_tools: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    let mut expected_tokens: BTreeMap<(String, String), [i64; 4]> = BTreeMap::new();
    for s in &sessions {
        for e in stored(s) {
            let p = &e["payload"];
            match e["event_type"].as_str().unwrap() {
                "tool_call" => {
                    for level in [s.customer, ""] {
                        let t = expected_tools
                            .entry((
                                level.to_owned(),
                                p["tool_name"].as_str().unwrap().to_owned(),
                            ))
                            .or_default();
                        t.0 += 1;
                        t.1 += i64::from(p["ok"] == false);
                    }
                }
                "llm_usage" => {
                    let t = expected_tokens
                        .entry((
                            s.customer.to_owned(),
                            p["model"].as_str().unwrap().to_owned(),
                        ))
                        .or_default();
                    for (sum, k) in t.iter_mut().zip([
                        "input_tokens",
                        "output_tokens",
                        "cache_read_tokens",
                        "cache_write_tokens",
                    ]) {
                        *sum += p[k].as_i64().unwrap();
                    }
                }
                _ => {}
            }
        }
    }
    assert!(expected_tools.len() > 10, "{expected_tools:?}");
    assert!(
        expected_tools.values().any(|(_, failed)| *failed > 0),
        "the fixtures hold failed tool calls"
    );
    for grain in ["h", "d"] {
        let got: Vec<(String, String, i64, i64)> = rows(
            &store,
            &format!(
                "SELECT customer_id, tool_name, CAST(SUM(calls) AS BIGINT), CAST(SUM(failures) AS BIGINT) \
                 FROM rollup_tools WHERE grain = '{grain}' GROUP BY customer_id, tool_name"
            ),
        )
        .await;
        let got: BTreeMap<(String, String), (i64, i64)> = got
            .into_iter()
            .map(|(c, t, n, f)| ((c, t), (n, f)))
            .collect();
        assert_eq!(got, expected_tools, "rollup_tools, grain {grain}");

        let got: Vec<(String, String, i64, i64, i64, i64)> = rows(
            &store,
            &format!(
                "SELECT customer_id, model, CAST(SUM(input_tokens) AS BIGINT), CAST(SUM(output_tokens) AS BIGINT), \
                   CAST(SUM(cache_read_tokens) AS BIGINT), CAST(SUM(cache_write_tokens) AS BIGINT) \
                 FROM rollup_usage WHERE grain = '{grain}' GROUP BY customer_id, model"
            ),
        )
        .await;
        let got: BTreeMap<(String, String), [i64; 4]> = got
            .into_iter()
            .map(|(c, m, a, b, r, w)| ((c, m), [a, b, r, w]))
            .collect();
        assert_eq!(got, expected_tokens, "rollup_usage, grain {grain}");
    }

    // One run per session: its events, tool calls and failures, and how it ended.
    let runs: Vec<RunRow> = rows(
        &store,
        "SELECT customer_id, run_id, agent_id, events, tool_calls, tool_failures, status, error_events FROM runs",
    )
    .await;
    assert_eq!(runs.len(), sessions.len());
    for s in &sessions {
        let kept = stored(s);
        let tools: Vec<&&Value> = kept
            .iter()
            .filter(|e| e["event_type"] == "tool_call")
            .collect();
        let failed = tools.iter().filter(|e| e["payload"]["ok"] == false).count();
        let run = runs.iter().find(|r| r.1 == s.run).unwrap();
        assert_eq!(
            (run.0.as_str(), run.2.as_str(), run.3, run.4, run.5, run.7),
            (
                s.customer,
                s.agent.as_str(),
                kept.len() as i64,
                tools.len() as i64,
                failed as i64,
                1
            ),
            "run {}",
            s.run
        );
        let status = if s.run == "run_short" {
            "failed"
        } else {
            "success"
        };
        assert_eq!(run.6.as_deref(), Some(status));
    }
    // Per agent, all time: one run each, the failed one counted.
    let agents: Vec<(String, i64, i64)> = rows(
        &store,
        "SELECT agent_id, CAST(SUM(runs) AS BIGINT), CAST(SUM(runs_failed) AS BIGINT) FROM rollup_agents \
         WHERE grain = 'a' GROUP BY agent_id",
    )
    .await;
    assert_eq!(agents.len(), sessions.len());
    assert!(agents.iter().all(|a| a.1 == 1));
    assert_eq!(agents.iter().map(|a| a.2).sum::<i64>(), 1);
    let beats: Vec<(String, String)> = rows(
        &store,
        "SELECT agent_id, agent_versions FROM agent_heartbeats",
    )
    .await;
    assert_eq!(beats.len(), sessions.len());
    assert_verifies(&dir, url);

    // A resend of everything changes nothing.
    let before = totals(&store).await;
    assert_eq!(replay(&app, &keys, &sessions).await, 0);
    assert_eq!(totals(&store).await, before, "a resend moved the rollups");

    // An event under another customer's agent contributes nothing.
    let agent = &sessions[0].agent;
    let mut stolen = sessions[0].events[1].clone();
    stolen["event_id"] = json!(Uuid::new_v4().to_string());
    stolen["event_type"] = json!("tool_call");
    stolen["payload"] = json!({"tool_name": "Stolen", "ok": false, "duration_ms": 5});
    let own = envelope(
        Uuid::new_v4(),
        stolen["ts"].as_str().unwrap(),
        "tool_call",
        "agent_globex_own",
        "run_own",
        json!({"tool_name": "Owned", "ok": true}),
    );
    let (status, body) = app.ingest(&keys["globex"], &json!([stolen, own])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["results"][0]["error"]["code"], "agent_forbidden",
        "{body} ({agent})"
    );
    assert_eq!(body["results"][1]["status"], "accepted", "{body}");
    let stolen_rows: Vec<(i64,)> = rows(
        &store,
        "SELECT CAST(COUNT(*) AS BIGINT) FROM rollup_tools WHERE tool_name = 'Stolen'",
    )
    .await;
    assert_eq!(stolen_rows, [(0,)]);
    let owned: Vec<(String, i64)> = rows(
        &store,
        "SELECT customer_id, CAST(SUM(calls) AS BIGINT) FROM rollup_tools WHERE tool_name = 'Owned' AND grain = 'd' \
         GROUP BY customer_id ORDER BY customer_id",
    )
    .await;
    assert_eq!(owned, [(String::new(), 1), ("globex".to_owned(), 1)]);
    assert_verifies(&dir, url);

    // Corrupt one row: verify names it and exits 1; rebuild repairs it.
    exec(
        &store,
        "UPDATE rollup_tools SET calls = calls + 1 WHERE customer_id = 'acme' AND grain = 'd' AND tool_name = 'Bash'",
    )
    .await;
    let out = brain_server(&dir, url, &["rollups", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().count() >= 1
            && stdout.lines().all(|l| l.starts_with("rollup_tools ["))
            && stdout.contains("customer_id=\"acme\"")
            && stdout.contains("tool_name=\"Bash\"")
            && stdout.contains("calls: stored"),
        "{}",
        text(&out)
    );
    let out = brain_server(&dir, url, &["rollups", "rebuild"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("rollups rebuilt:"),
        "{}",
        text(&out)
    );
    assert_verifies(&dir, url);
    assert_eq!(
        rows::<(i64,)>(
            &store,
            "SELECT CAST(COUNT(DISTINCT shard) AS BIGINT) FROM rollup_tools"
        )
        .await,
        [(1,)],
        "rebuild writes shard 0 only"
    );
    app.stop().await;
}

/// A database whose events predate the rollups (simulated: the rollup tables emptied): a
/// server started on it rebuilds them before it serves, and says so.
async fn a_server_started_on_events_without_rollups_rebuilds_them(backend: Backend) {
    let Some((app, db)) = app_and_url(backend, Options::default()).await else {
        return;
    };
    let url = db.as_ref().map(|d| d.url.clone());
    let key = app.mint("acme").await;
    let session = fixture_events()
        .into_iter()
        .find(|s| s.run == "run_short")
        .unwrap();
    let (status, body) = app.ingest(&key, &json!(session.events)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let store = app.store().clone();
    for table in [
        "rollup_usage",
        "rollup_tools",
        "rollup_tool_latency",
        "rollup_agents",
        "rollup_errors",
        "rollup_ingest",
        "runs",
        "run_models",
        "agent_heartbeats",
    ] {
        exec(&store, &format!("DELETE FROM {table}")).await;
    }
    let dir = app.stop_keeping_data().await;
    let out = brain_server(dir.path(), url.as_deref(), &["rollups", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = Command::new(env!("CARGO_BIN_EXE_brain-server"));
    c.env_clear()
        .env("RUST_LOG", "info")
        .env("BRAIN_DATA_DIR", dir.path())
        .env("BRAIN_ADMIN_TOKEN", "rollup-test-token-0123456789")
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if let Some(url) = &url {
        c.env("DATABASE_URL", url);
    }
    let child = c.spawn().unwrap();
    let client = reqwest::Client::new();
    let start = std::time::Instant::now();
    while client
        .get(format!("http://127.0.0.1:{port}/v1/healthz"))
        .send()
        .await
        .is_err()
    {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "server did not come up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let pid = i32::try_from(child.id()).unwrap();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rebuilt the rollups from events"),
        "{stderr}"
    );
    assert_verifies(dir.path(), url.as_deref());
    drop(db);
}

/// Many concurrent requests on Postgres with several writers (so several shards): mixed
/// events on a few hot keys (one hour, a few tools, shared runs), sent as singles and small
/// batches, a quarter of them twice. The rollups verify exactly, and more than one shard
/// wrote rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_on_postgres_verify_exactly() {
    let Some(db) = fresh_postgres_db() else {
        return;
    };
    let opts = Options {
        limits: brain_server::config::Limits {
            pg_writers: 4,
            ..limits(100_000, 100_000)
        },
        ..Options::default()
    };
    let app = spawn_app_on_url(&db.url, opts).await;
    let keys = [app.mint("acme").await, app.mint("globex").await];
    const CLIENTS: usize = 24;
    const STATUSES: [&str; 3] = ["success", "failed", "timeout"];
    const TOOLS: [&str; 3] = ["Bash", "Read", "mcp__gh__pr"];
    const REQUESTS: usize = 30;
    let ts = crate::helpers::ts_ago(chrono::TimeDelta::minutes(2));
    let bodies: Vec<Vec<(usize, Value)>> = (0..CLIENTS)
        .map(|c| {
            (0..REQUESTS)
                .map(|r| {
                    let customer = c % 2;
                    let agent = format!("agent_{customer}_{}", c % 6);
                    let run = format!("run_{}", (c + r) % 5);
                    let n = 1 + (r % 4);
                    let events: Vec<Value> = (0..n)
                        .map(|i| {
                            let id = Uuid::new_v4();
                            match (c + r + i) % 6 {
                                0 => envelope(id, &ts, "llm_usage", &agent, &run,
                                    json!({"model": "claude-opus-4-6", "input_tokens": 10 + i, "output_tokens": 3,
                                           "cache_read_tokens": 7, "cost_cents": 0.1 + (r as f64) / 7.0, "total_turns": 1})),
                                1 => envelope(id, &ts, "error", &agent, &run,
                                    json!({"kind": "hook_failed", "message_120c": format!("m{}", r % 3)})),
                                2 => envelope(id, &ts, "session.end", &agent, &run,
                                    json!({"status": STATUSES[r % 3], "exit_code": r, "duration_ms": 100})),
                                3 => envelope(id, &ts, "heartbeat", &agent, &run,
                                    json!({"paperclip_uptime_s": r, "agent_runtime_count": 1, "host_load_1m": 0.5,
                                           "agent_versions": {}})),
                                _ => envelope(id, &ts, "tool_call", &agent, &run,
                                    json!({"tool_name": TOOLS[i % 3], "ok": r % 5 != 0,
                                           "duration_ms": 10 * r + i})),
                            }
                        })
                        .collect();
                    let body = if n == 1 { events[0].clone() } else { json!(events) };
                    (customer, body)
                })
                .collect()
        })
        .collect();
    let app = std::sync::Arc::new(app);
    let tasks = bodies.into_iter().map(|work| {
        let app = std::sync::Arc::clone(&app);
        let keys = keys.clone();
        async move {
            for (i, (customer, body)) in work.iter().enumerate() {
                let sends = if i % 4 == 0 { 2 } else { 1 };
                for _ in 0..sends {
                    let (status, resp) = app.ingest(&keys[*customer], body).await;
                    assert_eq!(status, StatusCode::OK, "{resp}");
                    assert_eq!(resp["rejected"], 0, "{resp}");
                }
            }
        }
    });
    futures_util::future::join_all(tasks).await;
    let shards: Vec<(i64,)> = rows(
        app.store(),
        "SELECT CAST(COUNT(DISTINCT shard) AS BIGINT) FROM rollup_agents",
    )
    .await;
    assert!(shards[0].0 > 1, "one shard only: {shards:?}");
    assert_verifies(app.data_dir.path(), Some(&db.url));
    std::sync::Arc::into_inner(app).unwrap().stop().await;
}
