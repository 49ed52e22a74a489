//! Integration tests of brain-server: real HTTP on loopback against a real SQLite file and a
//! real Postgres database. Every test body runs on both backends (see [`both!`]).

#![expect(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod binary;
mod helpers;

use std::io::Write;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use flate2::Compression;
use flate2::write::GzEncoder;
use reqwest::StatusCode;
use serde_json::{Value, json};

use helpers::{
    Backend, Options, assert_error, event, event_at, limits, spawn_app, spawn_app_with, tool_call,
};

/// Runs the async test body `$name(backend)` once on SQLite and once on Postgres.
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name(super::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name(super::Backend::Postgres).await;
            }
        }
    )*};
}

// After `both!`, which their tests use too.
mod admin;
mod dashboard;
mod export;
mod faults;
mod fuzz;
mod instances;
mod memory;
mod metrics;
mod retention;
mod rollups;
mod whoami;

both!(
    ingest_single_and_batch,
    duplicates_are_acknowledged_and_change_nothing,
    exactly_once_under_concurrent_resend,
    request_level_errors,
    rejected_events_are_dead_lettered_and_others_stored,
    single_rejected_event_is_422,
    agent_of_another_customer_is_forbidden,
    gzip_bodies,
    unknown_and_revoked_keys_are_refused,
    rate_limit_answers_429_with_retry_after,
    concurrent_single_event_requests_share_commits,
    dashboard_reads_on_a_known_data_set,
    dashboard_needs_the_admin_token,
    database_down_is_503,
    page_and_health,
    a_failed_group_commits_nothing_and_a_resend_stores_it_once,
    a_forbidden_copy_does_not_shadow_the_owners_event,
    a_forbidden_event_is_dead_lettered_as_sent,
);

async fn ingest_single_and_batch(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let key = app.mint("acme").await;

    let single = tool_call("agent_a", "Bash", true, 12);
    let (status, body) = app.ingest(&key, &single).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 1);
    assert_eq!(body["results"][0]["event_id"], single["event_id"]);
    assert_eq!(body["results"][0]["status"], "accepted");

    let batch: Vec<Value> = (0..3)
        .map(|i| tool_call("agent_b", "Read", true, i))
        .collect();
    let (status, body) = app.ingest(&key, &json!(batch)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["accepted"].as_u64(),
            body["duplicate"].as_u64(),
            body["rejected"].as_u64()
        ),
        (Some(3), Some(0), Some(0))
    );
    for (r, e) in body["results"].as_array().unwrap().iter().zip(&batch) {
        assert_eq!(r["event_id"], e["event_id"]);
    }
    assert_eq!(app.store().count_events().await.unwrap(), 4);

    let agent = app
        .store()
        .agent("agent_b")
        .await
        .unwrap()
        .expect("agent upserted");
    assert_eq!(agent.customer_id, "acme");
    assert!(agent.first_seen_at <= agent.last_seen_at);
    app.stop().await;
}

async fn duplicates_are_acknowledged_and_change_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let key = app.mint("acme").await;
    let ev = tool_call("agent_a", "Bash", true, 5);
    assert_eq!(app.ingest(&key, &ev).await.1["accepted"], 1);

    let (status, body) = app.ingest(&key, &ev).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["duplicate"], 1);
    assert_eq!(body["results"][0]["status"], "duplicate");

    // The same id twice in one batch, plus the stored one: one new row only.
    let fresh = tool_call("agent_a", "Bash", true, 6);
    let (_, body) = app.ingest(&key, &json!([fresh, fresh, ev])).await;
    assert_eq!(body["accepted"], 1, "{body}");
    assert_eq!(body["duplicate"], 2, "{body}");
    let statuses: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["accepted", "duplicate", "duplicate"]);
    assert_eq!(app.store().count_events().await.unwrap(), 2);
    app.stop().await;
}

async fn exactly_once_under_concurrent_resend(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let key = app.mint("acme").await;
    let events: Vec<Value> = (0..40)
        .map(|i| tool_call("agent_a", "Bash", true, i))
        .collect();

    // 8 clients resend the same 40 events at once: half as singles, half as one batch.
    let mut tasks = Vec::new();
    for client in 0..8 {
        let events = events.clone();
        let key = key.clone();
        let url = app.url("/v1/events");
        let http = app.client.clone();
        tasks.push(async move {
            let mut accepted = 0;
            let bodies: Vec<Value> = if client % 2 == 0 {
                events.clone()
            } else {
                vec![json!(events)]
            };
            for body in bodies {
                let resp = http
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
                let v: Value = resp.json().await.unwrap();
                accepted += v["accepted"].as_u64().unwrap();
                assert_eq!(v["rejected"], 0);
            }
            accepted
        });
    }
    let accepted: u64 = futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .sum();
    assert_eq!(
        accepted, 40,
        "each event accepted exactly once across all resends"
    );
    assert_eq!(app.store().count_events().await.unwrap(), 40);
    app.stop().await;
}

async fn request_level_errors(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let key = app.mint("acme").await;
    let ok_body = serde_json::to_vec(&tool_call("agent_a", "Bash", true, 1)).unwrap();

    let check = |resp: reqwest::Response, status: StatusCode, code: &'static str| async move {
        assert_eq!(resp.status(), status);
        let body: Value = resp.json().await.unwrap();
        assert_error(&body, code);
    };
    check(
        app.post_raw(Some(&key), "application/json", None, b"{not json".to_vec())
            .await,
        StatusCode::BAD_REQUEST,
        "malformed_json",
    )
    .await;
    check(
        app.post_raw(Some(&key), "application/json", None, b"42".to_vec())
            .await,
        StatusCode::BAD_REQUEST,
        "not_an_envelope",
    )
    .await;
    check(
        app.post_raw(Some(&key), "text/plain", None, ok_body.clone())
            .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    check(
        app.post_raw(Some(&key), "application/json", Some("br"), ok_body.clone())
            .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    // Over 1 MiB: one big (but otherwise valid) JSON array of strings.
    let big = serde_json::to_vec(&json!(["x".repeat(1024 * 1024)])).unwrap();
    check(
        app.post_raw(Some(&key), "application/json", None, big)
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    )
    .await;
    let many: Vec<Value> = (0..501)
        .map(|i| tool_call("agent_a", "Bash", true, i))
        .collect();
    check(
        app.post_events(&key, &json!(many)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_many_events",
    )
    .await;
    check(
        app.post_raw(None, "application/json", None, ok_body.clone())
            .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    check(
        app.post_raw(Some("not-a-key"), "application/json", None, ok_body.clone())
            .await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    // Exactly 500 is fine.
    let max: Vec<Value> = (0..500)
        .map(|i| tool_call("agent_a", "Bash", true, i))
        .collect();
    let (status, body) = app.ingest(&key, &json!(max)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["accepted"], 500);
    assert_eq!(
        app.store().count_events().await.unwrap(),
        500,
        "nothing from the refused requests was stored"
    );
    app.stop().await;
}

async fn rejected_events_are_dead_lettered_and_others_stored(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let key = app.mint("acme").await;
    let good1 = tool_call("agent_a", "Bash", true, 1);
    let good2 = event(
        "session.start",
        "agent_a",
        Some("run_1"),
        json!({"paperclip_run_id": "pc_1"}),
    );
    let unknown = event("telepathy", "agent_a", None, json!({}));
    let missing = event("tool_call", "agent_a", None, json!({"ok": true}));
    let wrong_type = event(
        "tool_call",
        "agent_a",
        None,
        json!({"tool_name": "Bash", "ok": "yes"}),
    );
    let negative = event(
        "tool_call",
        "agent_a",
        None,
        json!({"tool_name": "Bash", "ok": true, "duration_ms": -5}),
    );
    let future = event_at(
        "tool_call",
        "agent_a",
        None,
        json!({"tool_name": "Bash", "ok": true}),
        TimeDelta::hours(-48),
    );
    let not_object = json!("hello");
    let batch = json!([
        good1, unknown, missing, wrong_type, negative, future, not_object, good2
    ]);

    let (status, body) = app.ingest(&key, &batch).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["rejected"], 6);
    let codes: Vec<Value> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error"]["code"].clone())
        .collect();
    assert_eq!(
        codes,
        [
            json!(null),
            json!("unknown_event_type"),
            json!("missing_field"),
            json!("wrong_type"),
            json!("negative_value"),
            json!("ts_in_future"),
            json!("not_an_envelope"),
            json!(null)
        ]
    );
    assert_eq!(body["results"][1]["event_id"], unknown["event_id"]);
    assert_eq!(body["results"][6]["event_id"], Value::Null);
    assert!(
        body["results"][1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("telepathy")
    );

    assert_eq!(app.store().count_events().await.unwrap(), 2);
    let dead = app.store().dead_letters("acme", 100).await.unwrap();
    assert_eq!(dead.len(), 6);
    let mut reasons: Vec<&str> = dead.iter().map(|d| d.reason.as_str()).collect();
    reasons.sort_unstable();
    assert_eq!(
        reasons,
        [
            "missing_field",
            "negative_value",
            "not_an_envelope",
            "ts_in_future",
            "unknown_event_type",
            "wrong_type"
        ]
    );
    let raw_unknown = dead
        .iter()
        .find(|d| d.reason == "unknown_event_type")
        .unwrap();
    let raw: Value = serde_json::from_str(&raw_unknown.raw).unwrap();
    assert_eq!(raw, unknown, "the raw JSON is kept as sent");
    assert_eq!(
        raw_unknown.event_id.as_deref(),
        unknown["event_id"].as_str()
    );
    app.stop().await;
}

async fn single_rejected_event_is_422(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let key = app.mint("acme").await;
    let bad = event(
        "llm_usage",
        "agent_a",
        None,
        json!({"model": "claude", "input_tokens": 1}),
    );
    let (status, body) = app.ingest(&key, &bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["rejected"], 1);
    assert_eq!(body["results"][0]["status"], "rejected");
    assert_eq!(body["results"][0]["error"]["code"], "missing_field");
    assert_eq!(app.store().dead_letters("acme", 10).await.unwrap().len(), 1);
    // A NUL character cannot be stored on Postgres: refused alike on both backends.
    let nul = event(
        "error",
        "agent_a",
        None,
        json!({"kind": "x", "message_120c": "a\u{0}b"}),
    );
    let (status, body) = app.ingest(&key, &nul).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["results"][0]["error"]["code"], "invalid_value");
    app.stop().await;
}

async fn agent_of_another_customer_is_forbidden(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let acme = app.mint("acme").await;
    let globex = app.mint("globex").await;
    assert_eq!(
        app.ingest(&acme, &tool_call("agent_x", "Bash", true, 1))
            .await
            .1["accepted"],
        1
    );

    let stolen = tool_call("agent_x", "Bash", true, 2);
    let own = tool_call("agent_g", "Bash", true, 3);
    let (status, body) = app.ingest(&globex, &json!([stolen, own])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["results"][0]["status"], "rejected");
    assert_eq!(body["results"][0]["error"]["code"], "agent_forbidden");
    assert_eq!(body["results"][1]["status"], "accepted");
    let dead = app.store().dead_letters("globex", 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, "agent_forbidden");
    assert_eq!(
        app.store()
            .agent("agent_x")
            .await
            .unwrap()
            .unwrap()
            .customer_id,
        "acme"
    );
    assert_eq!(app.store().count_events().await.unwrap(), 2);

    // Two customers claiming a brand-new agent in one concurrent burst: exactly one owns it.
    let (ea, eg) = (
        tool_call("agent_new", "Bash", true, 1),
        tool_call("agent_new", "Bash", true, 1),
    );
    let a = app.ingest(&acme, &ea);
    let g = app.ingest(&globex, &eg);
    let ((_, a), (_, g)) = tokio::join!(a, g);
    let accepted = a["accepted"].as_u64().unwrap() + g["accepted"].as_u64().unwrap();
    assert_eq!(accepted, 1, "acme: {a}, globex: {g}");
    app.stop().await;
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

async fn gzip_bodies(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let key = app.mint("acme").await;
    let batch: Vec<Value> = (0..50)
        .map(|i| tool_call("agent_a", "Bash", true, i))
        .collect();
    let body = gzip(&serde_json::to_vec(&batch).unwrap());
    let resp = app
        .post_raw(Some(&key), "application/json", Some("gzip"), body)
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["accepted"], 50);

    // Small on the wire, over 1 MiB once decompressed.
    let bomb = gzip(&serde_json::to_vec(&json!([" ".repeat(2 * 1024 * 1024)])).unwrap());
    assert!(bomb.len() < 64 * 1024);
    let resp = app
        .post_raw(Some(&key), "application/json", Some("gzip"), bomb)
        .await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(&resp.json().await.unwrap(), "body_too_large");

    let resp = app
        .post_raw(
            Some(&key),
            "application/json",
            Some("gzip"),
            b"not gzip".to_vec(),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_error(&resp.json().await.unwrap(), "invalid_gzip");
    app.stop().await;
}

async fn unknown_and_revoked_keys_are_refused(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let key = app.mint("acme").await;
    let unknown = "m8brain_test_ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let resp = app
        .post_events(unknown, &tool_call("agent_a", "Bash", true, 1))
        .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_error(&resp.json().await.unwrap(), "unauthorized");

    // Use the key (so it is cached), revoke it, and require refusal within 5 s.
    assert_eq!(
        app.post_events(&key, &tool_call("agent_a", "Bash", true, 1))
            .await
            .status(),
        StatusCode::OK
    );
    let keys = app.store().list_keys(Some("acme")).await.unwrap();
    let revoked = app
        .store()
        .revoke_key(&keys[0].key_id, "test")
        .await
        .unwrap();
    assert!(revoked.revoked_at.is_some());
    let start = Instant::now();
    loop {
        let resp = app
            .post_events(&key, &tool_call("agent_a", "Bash", true, 1))
            .await;
        if resp.status() == StatusCode::UNAUTHORIZED {
            assert_error(&resp.json().await.unwrap(), "unauthorized");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "revoked key still accepted after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let audit = app.store().audit_log(10).await.unwrap();
    assert_eq!(audit[0].action, "revoke");
    assert_eq!(audit[1].action, "mint");
    assert!(
        !audit.iter().any(|a| a.params.to_string().contains(&key)),
        "no plaintext in the audit log"
    );
    app.stop().await;
}

async fn rate_limit_answers_429_with_retry_after(backend: Backend) {
    let opts = Options {
        limits: limits(1, 3),
        ..Options::default()
    };
    let Some(app) = spawn_app_with(backend, opts).await else {
        return;
    };
    let key = app.mint("acme").await;
    let other = app.mint("globex").await;
    let mut statuses = Vec::new();
    let mut limited = None;
    for i in 0..6 {
        let resp = app
            .post_events(&key, &tool_call("agent_a", "Bash", true, i))
            .await;
        statuses.push(resp.status());
        if resp.status() == StatusCode::TOO_MANY_REQUESTS && limited.is_none() {
            let retry: u64 = resp.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(retry >= 1);
            limited = Some(resp.json::<Value>().await.unwrap());
        }
    }
    assert_eq!(&statuses[..3], [StatusCode::OK; 3]);
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert_error(&limited.unwrap(), "rate_limited");
    // The limit is per key: another key is unaffected.
    assert_eq!(
        app.post_events(&other, &tool_call("agent_o", "Bash", true, 1))
            .await
            .status(),
        StatusCode::OK
    );
    app.stop().await;
}

/// Group commit's promise: while a commit is in flight, every request that arrives waits in
/// the queue, and the writer then commits ALL of them (up to `group_events`) in one
/// transaction. One request holds the writer on a lock; 127 more queue behind it; releasing
/// the lock must take exactly 2 commits for the 128 requests.
#[expect(
    clippy::disallowed_methods,
    reason = "the test queues requests from tasks while the writer is held"
)]
async fn concurrent_single_event_requests_share_commits(backend: Backend) {
    let opts = Options {
        limits: brain_server::config::Limits {
            pg_writers: 1,
            ..limits(10_000, 10_000)
        },
        ..Options::default()
    };
    let Some(app) = spawn_app_with(backend, opts).await else {
        return;
    };
    let key = app.mint("acme").await;
    let commits = || {
        app.state
            .writer_stats()
            .commits
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = commits();
    let lock = hold_writer(app.store()).await;
    let n = 128;
    let send = |i: u64| {
        let http = app.client.clone();
        let url = app.url("/v1/events");
        let key = key.clone();
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(key)
                .json(&tool_call("agent_a", "Bash", true, i))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    let first = send(0);
    // The writer takes the first request and waits on the lock; the others queue behind it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rest: Vec<_> = (1..n).map(send).collect();
    assert!(
        wait_for(|| app.state.queue_depth() == usize::try_from(n - 1).unwrap()).await,
        "only {} of {} requests queued",
        app.state.queue_depth(),
        n - 1
    );
    lock.release().await;
    assert_eq!(first.await.unwrap(), StatusCode::OK);
    for task in rest {
        assert_eq!(task.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(app.store().count_events().await.unwrap(), 128);
    assert_eq!(
        commits() - before,
        2,
        "{n} requests: the first alone, then all {} queued behind it in one group",
        n - 1
    );
    app.stop().await;
}

/// Polls `f` every 10 ms for up to 10 s.
async fn wait_for(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..1000 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

async fn dashboard_reads_on_a_known_data_set(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let acme = app.mint("acme").await;
    let globex = app.mint("globex").await;
    app.mint("initech").await; // a customer with no events at all
    let hour = TimeDelta::hours(1);
    let acme_events = json!([
        event(
            "session.start",
            "agent_a",
            Some("r1"),
            json!({"paperclip_run_id": "p1"})
        ),
        event(
            "session.start",
            "agent_b",
            Some("r2"),
            json!({"paperclip_run_id": "p2"})
        ),
        event(
            "session.end",
            "agent_a",
            Some("r1"),
            json!({"status": "success", "exit_code": 0, "duration_ms": 1000})
        ),
        tool_call("agent_a", "Bash", true, 100),
        tool_call("agent_a", "Bash", false, 300),
        tool_call("agent_b", "Read", true, 50),
        event(
            "tool_call",
            "agent_b",
            Some("r2"),
            json!({"tool_name": "Read", "ok": true})
        ),
        event(
            "error",
            "agent_a",
            Some("r1"),
            json!({"kind": "hook_failed", "message_120c": "boom"})
        ),
        event(
            "llm_usage",
            "agent_a",
            Some("r1"),
            json!({"model": "claude-opus-4-6", "input_tokens": 10, "output_tokens": 20, "cost_cents": 1.5, "total_turns": 1})
        ),
        event(
            "llm_usage",
            "agent_b",
            Some("r2"),
            json!({"model": "claude-sonnet-4-5", "input_tokens": 1, "output_tokens": 2, "cost_cents": 2.25, "total_turns": 1})
        ),
        event_at(
            "heartbeat",
            "agent_a",
            None,
            json!({"paperclip_uptime_s": 10, "agent_runtime_count": 2, "host_load_1m": 0.5, "agent_versions": {"agent_a": "1.2.3", "agent_b": "1.2.4"}}),
            hour
        ),
        // 3 days old: counted cumulatively, not in the 24 h overview.
        event_at(
            "session.start",
            "agent_a",
            Some("r0"),
            json!({"paperclip_run_id": "p0"}),
            TimeDelta::days(3)
        ),
        event_at(
            "tool_call",
            "agent_a",
            Some("r0"),
            json!({"tool_name": "Bash", "ok": true, "duration_ms": 900}),
            TimeDelta::days(3)
        ),
    ]);
    let (status, body) = app.ingest(&acme, &acme_events).await;
    assert_eq!(
        (status, body["accepted"].as_u64()),
        (StatusCode::OK, Some(13)),
        "{body}"
    );
    let globex_events = json!([
        event_at(
            "session.start",
            "agent_g",
            Some("g1"),
            json!({"paperclip_run_id": "g1"}),
            TimeDelta::days(3)
        ),
        event_at(
            "llm_usage",
            "agent_g",
            Some("g1"),
            json!({"model": "m", "input_tokens": 1, "output_tokens": 1, "cost_cents": 10, "total_turns": 1}),
            TimeDelta::days(3)
        ),
    ]);
    assert_eq!(app.ingest(&globex, &globex_events).await.1["accepted"], 2);
    // One dead letter.
    app.ingest(&acme, &json!([event("nope", "agent_a", None, json!({}))]))
        .await;

    // Shapes: shared_proto::dashboard; every figure is checked in tests/it/dashboard.rs.
    let (status, ov) = app.admin_get("/v1/dashboard/overview").await;
    assert_eq!(status, StatusCode::OK, "{ov}");
    assert!(ov["since"].is_string() && ov["until"].is_string(), "{ov}");
    let c = &ov["customers"];
    assert_eq!(c.as_array().unwrap().len(), 3);
    assert_eq!(c[0]["customer_id"], "acme");
    assert_eq!(c[0]["runs"], 2);
    assert_eq!(c[0]["tool_failures"], 1, "errors are never lumped");
    assert_eq!(c[0]["error_events"], 1);
    assert_eq!(c[0]["runs_failed"], 0);
    assert_eq!(c[0]["cost_cents"], 3.75);
    assert_eq!(c[0]["agents"], 2);
    assert_eq!(c[0]["events"], 11);
    assert!(c[0]["last_seen"].is_string());
    assert_eq!(c[1]["customer_id"], "globex");
    assert_eq!(c[1]["runs"], 0);
    assert_eq!(c[1]["cost_cents"], 0.0);
    assert_eq!(c[2]["customer_id"], "initech");
    assert_eq!(c[2]["last_seen"], Value::Null);

    let (_, ov7) = app.admin_get("/v1/dashboard/overview?window=7d").await;
    assert_eq!(ov7["customers"][0]["runs"], 3);
    assert_eq!(ov7["customers"][1]["cost_cents"], 10.0);

    let (status, cu) = app.admin_get("/v1/dashboard/customers").await;
    assert_eq!(status, StatusCode::OK);
    let c = &cu["customers"];
    assert_eq!(c[0]["events"], 13);
    assert_eq!(c[0]["runs"], 3);
    assert_eq!(c[0]["tool_calls"], 5);
    assert_eq!(c[0]["tool_failures"], 1);
    assert_eq!(c[0]["error_events"], 1);
    assert_eq!(c[0]["cost_cents"], 3.75);
    assert_eq!(c[0]["agents"], 2);
    assert_eq!(c[0]["runs_last_7d"], 3);
    assert_eq!(c[0]["engagement"], "low");
    assert_eq!(c[1]["engagement"], "low");
    assert_eq!(c[1]["cost_cents"], 10.0);
    assert_eq!(c[2]["engagement"], "none");
    assert_eq!(c[2]["events"], 0);

    let (status, ag) = app.admin_get("/v1/dashboard/agents?customer_id=acme").await;
    assert_eq!(status, StatusCode::OK);
    let a = &ag["agents"];
    assert_eq!(a.as_array().unwrap().len(), 2);
    assert_eq!(a[0]["agent_id"], "agent_a");
    assert_eq!(a[0]["agent_version"], "1.2.3");
    assert_eq!(a[0]["runs"], 2);
    assert_eq!(a[0]["tool_calls"], 3);
    assert_eq!(a[0]["tool_failures"], 1);
    assert_eq!(a[0]["error_events"], 1);
    assert_eq!(a[0]["cost_cents"], 1.5);
    assert_eq!(a[1]["agent_id"], "agent_b");
    assert_eq!(a[1]["agent_version"], "1.2.4");
    assert_eq!(a[1]["cost_cents"], 2.25);

    // p95 from the latency histogram: within 1/32 of the exact nearest-rank value.
    let near = |got: &Value, exact: f64| (got.as_f64().unwrap() - exact).abs() <= exact / 32.0;
    let (status, tl) = app
        .admin_get("/v1/dashboard/tools?window=24h&customer_id=acme")
        .await;
    assert_eq!(status, StatusCode::OK, "{tl}");
    let t = &tl["tools"];
    assert_eq!(t.as_array().unwrap().len(), 2);
    assert_eq!(t[0]["tool_name"], "Bash");
    assert_eq!(t[0]["calls"], 2);
    assert_eq!(t[0]["failures"], 1);
    assert_eq!(t[0]["failure_rate"], 0.5);
    assert_eq!(t[0]["mean_duration_ms"], 200.0);
    assert!(near(&t[0]["p95_duration_ms"], 300.0), "{tl}");
    assert_eq!(t[1]["tool_name"], "Read");
    assert_eq!(t[1]["calls"], 2);
    assert_eq!(
        t[1]["mean_duration_ms"], 50.0,
        "calls without a duration are not averaged"
    );
    let (_, tl30) = app.admin_get("/v1/dashboard/tools?window=30d").await;
    assert_eq!(tl30["tools"][0]["calls"], 3);
    assert!(near(&tl30["tools"][0]["p95_duration_ms"], 900.0), "{tl30}");

    let (status, bad) = app.admin_get("/v1/dashboard/tools?window=2d").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_error(&bad, "invalid_query");

    let (status, h) = app.admin_get("/v1/dashboard/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h["events_total"], 15);
    assert_eq!(h["events_stored_last_hour"], 15);
    assert_eq!(h["dead_letters_total"], 1);
    assert_eq!(h["dead_letters_last_24h"], 1);
    assert_eq!(
        h["late_events_last_hour"], 4,
        "the 3-day-old events (2 of acme, 2 of globex) arrived late: {h}"
    );
    assert!(
        h["delay_p50_ms"].as_f64().unwrap() < 3_600_000.0,
        "4 late events in 15 do not make the median late: {h}"
    );
    app.stop().await;
}

async fn dashboard_needs_the_admin_token(backend: Backend) {
    let opts = Options {
        admin_token: None,
        ..Options::default()
    };
    let Some(app) = spawn_app_with(backend, opts).await else {
        return;
    };
    // Generated into the data directory, mode 0600.
    let file = app.token_file();
    let meta = std::fs::metadata(&file).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let token = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert_eq!(token.len(), 64);

    let url = app.url("/v1/dashboard/overview");
    let resp = app.client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_error(&resp.json().await.unwrap(), "unauthorized");
    let resp = app
        .client
        .get(&url)
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = app
        .client
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // A customer key is not an admin token.
    let key = app.mint("acme").await;
    let resp = app.client.get(&url).bearer_auth(&key).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

async fn database_down_is_503(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let key = app.mint("acme").await;
    // Authenticate once so the key is cached, then take the database away.
    assert_eq!(
        app.post_events(&key, &tool_call("agent_a", "Bash", true, 1))
            .await
            .status(),
        StatusCode::OK
    );
    app.store().close().await;
    let resp = app
        .post_events(&key, &tool_call("agent_a", "Bash", true, 2))
        .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.unwrap();
    assert_error(&body, "database_unavailable");
    assert!(
        !body.to_string().contains("pool"),
        "no internal error text in a 5xx: {body}"
    );
    let resp = app.client.get(app.url("/v1/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.json::<Value>().await.unwrap()["ok"], false);
    app.stop().await;
}

async fn page_and_health(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let resp = app.client.get(app.url("/v1/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let h: Value = resp.json().await.unwrap();
    assert_eq!(h["ok"], true);
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    assert!(h["ts"].as_str().unwrap().ends_with('Z'));

    let resp = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = resp.text().await.unwrap();
    assert!(html.contains("app.js") && html.contains("brain"), "{html}");
    for asset in ["/app.js", "/style.css"] {
        let resp = app.client.get(app.url(asset)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(!resp.text().await.unwrap().is_empty());
    }
    let resp = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_error(&resp.json().await.unwrap(), "not_found");
    // A known path with another method: 405 in the error envelope.
    for (method, path) in [
        (reqwest::Method::GET, "/v1/events"),
        (reqwest::Method::DELETE, "/v1/events"),
        (reqwest::Method::POST, "/v1/healthz"),
        (reqwest::Method::PUT, "/v1/dashboard/overview"),
    ] {
        let resp = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert!(resp.headers().contains_key("allow"), "{method} {path}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        assert_error(&resp.json().await.unwrap(), "method_not_allowed");
    }
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("brain_ingest_commits_total"));
    app.stop().await;
}

/// The last statement of a group write (here: the heartbeat's agent versions) fails after the
/// agent, the event and the dead letter were written. The group is one transaction on both
/// backends, so nothing of it is committed: no event, no agent, no dead letter. The client's
/// resend then stores everything once, the event as `accepted` (not a `duplicate` of a
/// half-committed write), and a third send changes nothing.
async fn a_failed_group_commits_nothing_and_a_resend_stores_it_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let key = app.mint("acme").await;
    // Setting an agent's version fails while `fail_versions` has a row.
    match app.store() {
        brain_server::Store::Postgres(pool) => {
            sqlx::raw_sql(
                "CREATE TABLE fail_versions (x int); INSERT INTO fail_versions VALUES (1); \
                 CREATE FUNCTION fail_versions() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                   IF NEW.agent_version IS DISTINCT FROM OLD.agent_version \
                      AND EXISTS (SELECT 1 FROM fail_versions) THEN \
                     RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$; \
                 CREATE TRIGGER fail_versions BEFORE UPDATE ON agents \
                   FOR EACH ROW EXECUTE FUNCTION fail_versions();",
            )
            .execute(pool)
            .await
            .unwrap();
        }
        brain_server::Store::Sqlite(pool) => {
            sqlx::raw_sql(
                "CREATE TABLE fail_versions (x INTEGER); INSERT INTO fail_versions VALUES (1); \
                 CREATE TRIGGER fail_versions BEFORE UPDATE OF agent_version ON agents \
                   WHEN EXISTS (SELECT 1 FROM fail_versions) \
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
            )
            .execute(pool)
            .await
            .unwrap();
        }
    }
    let heartbeat = event(
        "heartbeat",
        "agent_hb",
        None,
        json!({"paperclip_uptime_s": 1, "agent_runtime_count": 1, "host_load_1m": 0.1,
               "agent_versions": {"agent_hb": "2.1.0"}}),
    );
    let bad = event("telepathy", "agent_hb", None, json!({}));
    let body = json!([heartbeat, bad]);

    let resp = app.post_events(&key, &body).await;
    assert!(resp.status().is_server_error(), "{}", resp.status());
    assert_eq!(
        app.store().count_events().await.unwrap(),
        0,
        "an event was committed"
    );
    assert!(
        app.store().agent("agent_hb").await.unwrap().is_none(),
        "the agent was committed"
    );
    let dead = app.store().dead_letters("acme", 10).await.unwrap();
    assert!(dead.is_empty(), "a dead letter was committed: {dead:?}");

    match app.store() {
        brain_server::Store::Postgres(pool) => {
            sqlx::query("DELETE FROM fail_versions")
                .execute(pool)
                .await
                .unwrap();
        }
        brain_server::Store::Sqlite(pool) => {
            sqlx::query("DELETE FROM fail_versions")
                .execute(pool)
                .await
                .unwrap();
        }
    }
    let (status, resp) = app.ingest(&key, &body).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp["results"][0]["status"], "accepted", "{resp}");
    assert_eq!(resp["results"][1]["status"], "rejected", "{resp}");
    let agent = app.store().agent("agent_hb").await.unwrap().unwrap();
    assert_eq!(agent.agent_version.as_deref(), Some("2.1.0"));
    assert_eq!(app.store().count_events().await.unwrap(), 1);
    let dead = app.store().dead_letters("acme", 10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].reason, "unknown_event_type");

    // A third identical send changes nothing.
    let (_, resp) = app.ingest(&key, &body).await;
    assert_eq!(resp["duplicate"], 1, "{resp}");
    assert_eq!(app.store().dead_letters("acme", 10).await.unwrap().len(), 1);
    app.stop().await;
}

/// One group holds, in this order, another customer's copy of an event under an agent it does
/// not own, then the owner's copy of the same `event_id`. The forbidden copy is rejected; the
/// owner's is stored and accepted (not a `duplicate` of something never stored).
#[expect(
    clippy::disallowed_methods,
    reason = "the test queues requests from tasks while the writer is held"
)]
async fn a_forbidden_copy_does_not_shadow_the_owners_event(backend: Backend) {
    let opts = Options {
        limits: brain_server::config::Limits {
            pg_writers: 1,
            ..limits(10_000, 10_000)
        },
        ..Options::default()
    };
    let Some(app) = spawn_app_with(backend, opts).await else {
        return;
    };
    let acme = app.mint("acme").await;
    let globex = app.mint("globex").await;
    let (_, body) = app
        .ingest(&acme, &tool_call("agent_x", "Bash", true, 1))
        .await;
    assert_eq!(body["accepted"], 1);

    // Hold the writer on a lock so that the next requests queue up into one group.
    let lock = hold_writer(app.store()).await;
    let commits_before = app
        .state
        .writer_stats()
        .commits
        .load(std::sync::atomic::Ordering::Relaxed);
    let pause = Duration::from_millis(300);
    let app = std::sync::Arc::new(app);
    let blocker = {
        let (app, acme) = (std::sync::Arc::clone(&app), acme.clone());
        tokio::spawn(async move {
            app.ingest(&acme, &tool_call("agent_x", "Bash", true, 2))
                .await
        })
    };
    tokio::time::sleep(pause).await; // the writer has taken the blocker and waits on the lock
    let mut stolen = tool_call("agent_x", "Bash", true, 3);
    let shared_id = stolen["event_id"].clone();
    stolen["payload"]["tool_name"] = json!("Stolen");
    let forbidden = {
        let (app, globex) = (std::sync::Arc::clone(&app), globex.clone());
        tokio::spawn(async move { app.ingest(&globex, &stolen).await })
    };
    tokio::time::sleep(pause).await;
    let mut own = tool_call("agent_x", "Bash", true, 3);
    own["event_id"] = shared_id.clone();
    let owner = {
        let (app, acme) = (std::sync::Arc::clone(&app), acme.clone());
        tokio::spawn(async move { app.ingest(&acme, &own).await })
    };
    tokio::time::sleep(pause).await;
    lock.release().await;
    assert_eq!(blocker.await.unwrap().1["accepted"], 1);
    let (status, forbidden) = forbidden.await.unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{forbidden}");
    assert_eq!(forbidden["results"][0]["error"]["code"], "agent_forbidden");
    let (status, owner) = owner.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{owner}");
    assert_eq!(owner["results"][0]["status"], "accepted", "{owner}");
    // The two requests were written in one group (else this test proves nothing).
    let commits = app
        .state
        .writer_stats()
        .commits
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(commits - commits_before, 2, "blocker, then one group");
    assert_eq!(app.store().count_events().await.unwrap(), 3);
    let (_, tools) = app.admin_get("/v1/dashboard/tools?window=24h").await;
    assert!(!tools.to_string().contains("Stolen"), "{tools}");
    std::sync::Arc::into_inner(app).unwrap().stop().await;
}

/// A transaction that holds the ingest writer back.
/// A transaction that blocks the ingest writer until released: Postgres by an exclusive lock
/// on `events`, SQLite by holding the one write lock.
enum Lock<'a> {
    Pg(sqlx::Transaction<'a, sqlx::Postgres>),
    Sqlite(sqlx::Transaction<'a, sqlx::Sqlite>),
}

/// Blocks the store's writers until [`Lock::release`].
async fn hold_writer(store: &brain_server::Store) -> Lock<'static> {
    match store {
        brain_server::Store::Postgres(pool) => {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("LOCK TABLE events IN EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await
                .unwrap();
            Lock::Pg(tx)
        }
        brain_server::Store::Sqlite(pool) => {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query(
                "INSERT INTO customers (customer_id, name, created_at) VALUES ('lock', 'lock', 0)",
            )
            .execute(&mut *tx)
            .await
            .unwrap();
            Lock::Sqlite(tx)
        }
    }
}

impl Lock<'_> {
    /// Lets the writers go on (nothing of the lock's transaction is kept).
    async fn release(self) {
        match self {
            Lock::Pg(tx) => tx.rollback().await.unwrap(),
            Lock::Sqlite(tx) => tx.rollback().await.unwrap(),
        }
    }
}

/// An `agent_forbidden` dead letter keeps the element as sent: an envelope field this server
/// does not know, and a `ts` with microseconds, both survive.
async fn a_forbidden_event_is_dead_lettered_as_sent(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let acme = app.mint("acme").await;
    let globex = app.mint("globex").await;
    let (_, body) = app
        .ingest(&acme, &tool_call("agent_x", "Bash", true, 1))
        .await;
    assert_eq!(body["accepted"], 1);

    let mut stolen = tool_call("agent_x", "Bash", true, 2);
    stolen["ts"] = json!(
        (chrono::Utc::now() - TimeDelta::minutes(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    );
    stolen["future_envelope_field"] = json!({"nested": [1, 2.5, "x"]});
    stolen["payload"]["unknown_payload_field"] = json!(7);
    let own = tool_call("agent_g", "Bash", true, 3);
    let (status, body) = app.ingest(&globex, &json!([own, stolen])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["results"][1]["error"]["code"], "agent_forbidden",
        "{body}"
    );
    let dead = app.store().dead_letters("globex", 10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].reason, "agent_forbidden");
    assert_eq!(dead[0].event_id.as_deref(), stolen["event_id"].as_str());
    let raw: Value = serde_json::from_str(&dead[0].raw).unwrap();
    assert_eq!(raw, stolen);
    app.stop().await;
}

/// Postgres aborts one of two deadlocked transactions (SQLSTATE 40P01). The writer runs an
/// aborted group again (it committed nothing), so the client sees a 200 and the event is
/// stored once; a conflict that outlasts the retries is a 503 with `Retry-After`, never a
/// 500. The conflict is injected by a trigger that fails the first `fail_first` inserts
/// (counted by a sequence, which a rollback does not undo).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgres_transaction_conflict_is_written_again() {
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let key = app.mint("acme").await;
    let brain_server::Store::Postgres(pool) = app.store() else {
        panic!("a Postgres app");
    };
    let inject = |fail_first: u32| {
        format!(
            "DROP TRIGGER IF EXISTS conflict ON events; DROP SEQUENCE IF EXISTS conflicts; \
             CREATE SEQUENCE conflicts; \
             CREATE OR REPLACE FUNCTION conflict() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               IF nextval('conflicts') <= {fail_first} THEN \
                 RAISE EXCEPTION 'injected deadlock' USING ERRCODE = '40P01'; END IF; \
               RETURN NEW; END $$; \
             CREATE TRIGGER conflict BEFORE INSERT ON events \
               FOR EACH ROW EXECUTE FUNCTION conflict();"
        )
    };

    // One conflict: written again, stored once.
    sqlx::raw_sql(sqlx::AssertSqlSafe(inject(1)))
        .execute(pool)
        .await
        .unwrap();
    let (status, resp) = app
        .ingest(&key, &tool_call("agent_a", "Bash", true, 1))
        .await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp["accepted"], 1, "{resp}");
    assert_eq!(app.store().count_events().await.unwrap(), 1);

    // Conflicts every time: 503 with Retry-After, nothing stored.
    sqlx::raw_sql(sqlx::AssertSqlSafe(inject(1_000)))
        .execute(pool)
        .await
        .unwrap();
    let resp = app
        .post_events(&key, &tool_call("agent_a", "Bash", true, 2))
        .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key("retry-after"));
    assert_error(&resp.json::<Value>().await.unwrap(), "database_unavailable");
    assert_eq!(app.store().count_events().await.unwrap(), 1);
    app.stop().await;
}
