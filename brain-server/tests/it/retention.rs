//! Retention (`brain-server prune`, the daily job's `Store::prune_events`) on both backends:
//! exactly the events older than the cutoff are deleted, the rollups and runs are kept (the
//! dashboard reads give the same figures before and after) and `rollups verify` passes after
//! the prune; two prunes at once on one database: exactly one deletes; a prune while ingest
//! runs loses no new event.

use std::process::{Command, Output};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, event_at, spawn_app, stored_events};

const BIN: &str = env!("CARGO_BIN_EXE_brain-server");

both!(
    prune_deletes_exactly_the_old_events_and_keeps_the_rollups,
    two_prunes_at_once_delete_once,
    prune_while_ingest_runs_loses_no_new_event,
);

/// The `brain-server` binary over the app's database.
fn cli(app: &TestApp) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("RUST_LOG", "info")
        .env("BRAIN_DATA_DIR", app.data_dir.path());
    if let Some(url) = app.database_url() {
        c.env("DATABASE_URL", url);
    }
    c
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The cutoff `prune --older-than-days days` uses now: 00:00 UTC, `days` days ago (ms).
fn cutoff_ms(days: i64) -> i64 {
    (Utc::now() - TimeDelta::days(days))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis()
}

/// One run of `agent` starting `start` ago and ending `end` ago: start, two tool calls, one
/// model usage, an error, end.
fn run(agent: &str, run: &str, start: TimeDelta, end: TimeDelta) -> Vec<Value> {
    let mid = (start + end) / 2;
    vec![
        event_at(
            "session.start",
            agent,
            Some(run),
            json!({"paperclip_run_id": format!("pc_{run}")}),
            start,
        ),
        event_at(
            "tool_call",
            agent,
            Some(run),
            json!({"tool_name": "Bash", "ok": true, "duration_ms": 40}),
            mid,
        ),
        event_at(
            "tool_call",
            agent,
            Some(run),
            json!({"tool_name": "Read", "ok": false, "duration_ms": 7}),
            mid,
        ),
        event_at(
            "llm_usage",
            agent,
            Some(run),
            json!({"model": "claude-x", "input_tokens": 100, "output_tokens": 20,
                   "cache_read_tokens": 0, "cache_write_tokens": 0, "cost_cents": 2.5,
                   "total_turns": 1}),
            mid,
        ),
        event_at(
            "error",
            agent,
            Some(run),
            json!({"kind": "hook", "message_120c": "boom"}),
            mid,
        ),
        event_at(
            "session.end",
            agent,
            Some(run),
            json!({"exit_code": 0, "status": "success", "duration_ms": 1000}),
            end,
        ),
    ]
}

/// Every dashboard read that the prune must not change.
async fn dashboard(app: &TestApp) -> Vec<Value> {
    let mut out = Vec::new();
    for path in [
        "/v1/dashboard/overview?window=90d",
        "/v1/dashboard/customers?window=90d",
        "/v1/dashboard/agents?window=90d",
        "/v1/dashboard/tools?window=90d",
        "/v1/dashboard/cost?window=90d",
        "/v1/dashboard/sessions?window=90d",
        "/v1/dashboard/errors?window=90d",
    ] {
        let (status, mut body) = app.admin_get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        body["until"] = Value::Null;
        out.push(body);
    }
    out
}

async fn prune_deletes_exactly_the_old_events_and_keeps_the_rollups(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let key = app.mint("acme").await;
    let d = TimeDelta::days;
    let h = TimeDelta::hours;
    let mut events = Vec::new();
    events.extend(run("agent_a", "run_old", d(20), d(20) - h(1)));
    events.extend(run("agent_a", "run_older", d(15), d(15) - h(2)));
    // Straddles the cutoff: starts before it, ends after it.
    events.extend(run("agent_b", "run_across", d(11), d(9)));
    events.extend(run("agent_b", "run_new", d(3), d(3) - h(1)));
    events.extend(run("agent_a", "run_today", h(2), h(1)));
    let (status, body) = app.ingest(&key, &json!(events)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 30, "{body}");

    let before = stored_events(app.store()).await;
    let reads = dashboard(&app).await;
    let out = cli(&app).args(["rollups", "verify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let out = cli(&app)
        .args(["prune", "--older-than-days", "10"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let cutoff = cutoff_ms(10);
    let kept: Vec<_> = before.iter().filter(|e| e.1 >= cutoff).cloned().collect();
    let deleted = before.len() - kept.len();
    assert!(
        deleted >= 13 && !kept.is_empty(),
        "{deleted} of {}",
        before.len()
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("{deleted} events")),
        "{}",
        text(&out)
    );
    assert_eq!(
        stored_events(app.store()).await,
        kept,
        "exactly the events before the cutoff are gone"
    );
    assert_eq!(dashboard(&app).await, reads, "rollups and runs are kept");

    let out = cli(&app).args(["rollups", "verify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("no difference") && stdout.contains("pruned"),
        "{stdout}"
    );
    // A rebuild would drop the rollups of the pruned range: refused, nothing changed.
    let out = cli(&app).args(["rollups", "rebuild"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(dashboard(&app).await, reads);

    let audit = app.store().audit_log(10).await.unwrap();
    let entry = audit
        .iter()
        .find(|a| a.action == "prune")
        .expect("audit row");
    assert!(entry.actor.starts_with("cli:"), "{entry:?}");
    assert_eq!(entry.params["events_deleted"], deleted);
    assert_eq!(entry.params["dead_letters_deleted"], 0);
    let audited: chrono::DateTime<Utc> =
        serde_json::from_value(entry.params["cutoff"].clone()).unwrap();
    assert_eq!(audited.timestamp_millis(), cutoff);

    // Again: nothing left to delete. Without a retention: exit 1.
    let out = cli(&app)
        .args(["prune", "--older-than-days", "10"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(": 0 events"),
        "{}",
        text(&out)
    );
    let out = cli(&app).arg("prune").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = cli(&app)
        .arg("prune")
        .env("BRAIN_RETENTION_DAYS", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    app.stop().await;
}

/// Sends `n` tool calls of `agent`, `ago` old, in batches of 500.
async fn load_old(app: &TestApp, key: &str, agent: &str, n: usize, ago: TimeDelta) {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            event_at(
                "tool_call",
                agent,
                None,
                json!({"tool_name": "Bash", "ok": true, "duration_ms": i % 100}),
                ago + TimeDelta::seconds(i as i64),
            )
        })
        .collect();
    for batch in events.chunks(500) {
        let (status, body) = app.ingest(key, &json!(batch)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

/// The events a `prune` run's stdout says it deleted (`None`: it skipped).
fn deleted(out: &Output) -> Option<u64> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    if stdout.starts_with("skipped") {
        return None;
    }
    let n = stdout.split(": ").nth(2)?.split(' ').next()?;
    n.parse().ok()
}

async fn two_prunes_at_once_delete_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let key = app.mint("acme").await;
    load_old(&app, &key, "agent_a", 25_000, TimeDelta::days(40)).await;
    let spawn = || {
        cli(&app)
            .args(["prune", "--older-than-days", "30"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert_eq!(a.status.code(), Some(0), "{}", text(&a));
    assert_eq!(b.status.code(), Some(0), "{}", text(&b));
    let outcomes = [deleted(&a), deleted(&b)];
    assert_eq!(
        outcomes.iter().flatten().sum::<u64>(),
        25_000,
        "{}\n{}",
        text(&a),
        text(&b)
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, Some(n) if *n > 0))
            .count(),
        1,
        "exactly one deleted: {}\n{}",
        text(&a),
        text(&b)
    );
    assert_eq!(app.store().count_events().await.unwrap(), 0);
    app.stop().await;
}

async fn prune_while_ingest_runs_loses_no_new_event(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let key = app.mint("acme").await;
    load_old(&app, &key, "agent_a", 25_000, TimeDelta::days(40)).await;
    let app = std::sync::Arc::new(app);
    let ingest = {
        let (app, key) = (std::sync::Arc::clone(&app), key.clone());
        #[expect(clippy::disallowed_methods, reason = "a test's ingest loop")]
        tokio::spawn(async move {
            let mut sent = Vec::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(3);
            while std::time::Instant::now() < deadline || sent.len() < 2_000 {
                let batch: Vec<Value> = (0..100)
                    .map(|i| {
                        event_at(
                            "tool_call",
                            "agent_n",
                            None,
                            json!({"tool_name": "Read", "ok": true, "duration_ms": i}),
                            TimeDelta::minutes(1),
                        )
                    })
                    .collect();
                let (status, body) = app.ingest(&key, &json!(batch)).await;
                assert_eq!(status, StatusCode::OK, "{body}");
                assert_eq!(body["accepted"], 100, "{body}");
                sent.extend(
                    batch
                        .iter()
                        .map(|e| e["event_id"].as_str().unwrap().to_owned()),
                );
            }
            sent
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cutoff = Utc::now() - TimeDelta::days(30);
    let report = app
        .store()
        .prune_events(cutoff, "test", Duration::from_millis(20))
        .await
        .unwrap()
        .expect("not locked");
    assert_eq!(report.events_deleted, 25_000);
    let sent = ingest.await.unwrap();
    let stored = stored_events(app.store()).await;
    let mut ids: Vec<&str> = stored.iter().map(|e| e.0.as_str()).collect();
    ids.sort_unstable();
    let mut sent: Vec<&str> = sent.iter().map(String::as_str).collect();
    sent.sort_unstable();
    assert_eq!(ids, sent, "every new event is stored, every old one gone");
    std::sync::Arc::into_inner(app).unwrap().stop().await;
}
