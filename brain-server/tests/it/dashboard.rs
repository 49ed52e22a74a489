//! The dashboard reads (`/v1/dashboard/*`, SPEC §4) on a known data set sent through the real
//! HTTP ingest: every figure of every endpoint, windows, filters, cursor pagination, and bad
//! parameters answered with a 400 envelope (never a 500). Both backends.

use std::collections::BTreeSet;

use chrono::TimeDelta;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, assert_error, event_at, spawn_app};

both!(
    every_read_on_a_known_data_set,
    tool_quantiles_are_within_the_bucket_bound,
    sessions_paginate_and_filter,
    bad_parameters_are_400,
);

fn time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .to_utc()
}

fn mins(n: i64) -> TimeDelta {
    TimeDelta::minutes(n)
}

fn days(n: i64) -> TimeDelta {
    TimeDelta::days(n)
}

fn start(agent: &str, run: &str, ago: TimeDelta) -> Value {
    event_at(
        "session.start",
        agent,
        Some(run),
        json!({"paperclip_run_id": run}),
        ago,
    )
}

fn end(agent: &str, run: &str, status: &str, exit_code: i64, ago: TimeDelta) -> Value {
    event_at(
        "session.end",
        agent,
        Some(run),
        json!({"status": status, "exit_code": exit_code, "duration_ms": 60_000}),
        ago,
    )
}

fn tool(agent: &str, run: &str, payload: Value, ago: TimeDelta) -> Value {
    event_at("tool_call", agent, Some(run), payload, ago)
}

#[expect(
    clippy::too_many_arguments,
    reason = "one llm_usage event, field by field"
)]
fn usage(
    agent: &str,
    run: &str,
    model: &str,
    input: u64,
    output: u64,
    cache_read: u64,
    cache_write: u64,
    cents: f64,
    ago: TimeDelta,
) -> Value {
    event_at(
        "llm_usage",
        agent,
        Some(run),
        json!({"model": model, "input_tokens": input, "output_tokens": output,
               "cache_read_tokens": cache_read, "cache_write_tokens": cache_write,
               "cost_cents": cents, "total_turns": 1}),
        ago,
    )
}

fn error(agent: &str, run: &str, kind: &str, msg: &str, stack: &str, ago: TimeDelta) -> Value {
    let mut payload = json!({"kind": kind, "message_120c": msg});
    if !stack.is_empty() {
        payload["stack_hash"] = json!(stack);
    }
    event_at("error", agent, Some(run), payload, ago)
}

fn heartbeat(agent: &str, load: f64, ago: TimeDelta) -> Value {
    event_at(
        "heartbeat",
        agent,
        None,
        json!({"paperclip_uptime_s": 3600, "agent_runtime_count": 2, "host_load_1m": load,
               "agent_versions": {agent: "1.2.3"}, "spool_depth": 4, "spool_dropped": 1}),
        ago,
    )
}

async fn ok(app: &TestApp, path: &str) -> Value {
    let (status, body) = app.admin_get(path).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

async fn send(app: &TestApp, key: &str, events: Vec<Value>) {
    let n = events.len();
    let (status, body) = app.ingest(key, &Value::Array(events)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], n, "{body}");
}

/// The data set: acme (two agents, runs in the last hour and 3 days ago), globex (one run 3
/// days ago), initech (no events).
async fn seed(app: &TestApp) {
    let acme = app.mint("acme").await;
    let globex = app.mint("globex").await;
    app.mint("initech").await;
    send(
        app,
        &acme,
        vec![
            // r1, agent_a, ended failed: 3 tool calls (one failed, one MCP), usage, 2 errors.
            start("agent_a", "r1", mins(30)),
            tool(
                "agent_a",
                "r1",
                json!({"tool_name": "Bash", "ok": true, "duration_ms": 100, "tool_source": "builtin"}),
                mins(29),
            ),
            tool(
                "agent_a",
                "r1",
                json!({"tool_name": "Bash", "ok": false, "duration_ms": 300, "tool_source": "builtin"}),
                mins(28),
            ),
            tool(
                "agent_a",
                "r1",
                json!({"tool_name": "mcp__github__create_issue", "ok": true, "duration_ms": 20,
                       "tool_source": "mcp", "mcp_server": "github"}),
                mins(27),
            ),
            usage("agent_a", "r1", "claude-opus-4-6", 100, 200, 300, 400, 1.5, mins(26)),
            error("agent_a", "r1", "hook_failed", "zeta message", "abc", mins(25)),
            error("agent_a", "r1", "hook_failed", "alpha message", "abc", mins(24)),
            end("agent_a", "r1", "failed", 1, mins(20)),
            // r2, agent_b, timed out; a tool call without a duration.
            start("agent_b", "r2", mins(15)),
            tool(
                "agent_b",
                "r2",
                json!({"tool_name": "mcp__github__list_prs", "ok": false,
                       "tool_source": "mcp", "mcp_server": "github"}),
                mins(14),
            ),
            usage("agent_b", "r2", "claude-sonnet-4-5", 10, 20, 0, 0, 2.25, mins(13)),
            end("agent_b", "r2", "timeout", 124, mins(10)),
            // r4, agent_b, still running.
            start("agent_b", "r4", mins(5)),
            // r3, agent_a, 3 days ago, ended well.
            start("agent_a", "r3", days(3)),
            tool(
                "agent_a",
                "r3",
                json!({"tool_name": "Read", "ok": true, "duration_ms": 5}),
                days(3),
            ),
            usage("agent_a", "r3", "claude-opus-4-6", 1, 1, 0, 0, 0.5, days(3)),
            error("agent_a", "r3", "old_kind", "old", "", days(3)),
            end("agent_a", "r3", "success", 0, days(3) - mins(1)),
            heartbeat("agent_a", 0.5, mins(1)),
            heartbeat("agent_b", 2.5, mins(20)),
        ],
    )
    .await;
    send(
        app,
        &globex,
        vec![
            start("agent_g", "g1", days(3)),
            usage(
                "agent_g",
                "g1",
                "claude-opus-4-6",
                5,
                5,
                0,
                0,
                10.0,
                days(3),
            ),
        ],
    )
    .await;
    // One dead letter.
    let (status, _) = app
        .ingest(
            &acme,
            &json!([event_at("nope", "agent_a", None, json!({}), mins(1))]),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

async fn every_read_on_a_known_data_set(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    seed(&app).await;

    // overview: last 24 h by default; errors split, never lumped.
    let ov = ok(&app, "/v1/dashboard/overview").await;
    let c = ov["customers"].as_array().unwrap();
    assert_eq!(c.len(), 3, "{ov}");
    assert!(ov["since"].is_string() && ov["until"].is_string(), "{ov}");
    let acme = &c[0];
    assert_eq!(acme["customer_id"], "acme");
    assert_eq!(acme["name"], "acme Inc");
    assert_eq!(acme["events"], 15, "{acme}");
    assert_eq!(acme["runs"], 3);
    assert_eq!(acme["runs_failed"], 1);
    assert_eq!(acme["runs_timed_out"], 1);
    assert_eq!(acme["tool_calls"], 4);
    assert_eq!(acme["tool_failures"], 2);
    assert_eq!(acme["error_events"], 2);
    assert_eq!(acme["llm_events"], 2);
    assert_eq!(acme["cost_cents"], 3.75);
    assert_eq!(acme["agents"], 2);
    assert!(acme["last_seen"].is_string());
    assert_eq!(c[1]["customer_id"], "globex");
    assert_eq!(c[1]["runs"], 0, "3 days ago is outside 24 h");
    assert_eq!(c[1]["cost_cents"], 0.0);
    assert!(c[1]["last_seen"].is_string(), "last seen is all time");
    assert_eq!(c[2]["customer_id"], "initech");
    assert_eq!(c[2]["last_seen"], Value::Null);
    let ov7 = ok(&app, "/v1/dashboard/overview?window=7d").await;
    assert_eq!(ov7["customers"][0]["runs"], 4);
    assert_eq!(ov7["customers"][0]["cost_cents"], 4.25);
    assert_eq!(ov7["customers"][0]["error_events"], 3);
    assert_eq!(ov7["customers"][1]["cost_cents"], 10.0);

    // customers: all time, engagement from runs in the last 7 days.
    let cu = ok(&app, "/v1/dashboard/customers").await;
    assert_eq!(cu["since"], Value::Null);
    let c = cu["customers"].as_array().unwrap();
    assert_eq!(c[0]["events"], 20);
    assert_eq!(c[0]["runs"], 4);
    assert_eq!(c[0]["runs_failed"], 1);
    assert_eq!(c[0]["runs_timed_out"], 1);
    assert_eq!(c[0]["tool_calls"], 5);
    assert_eq!(c[0]["tool_failures"], 2);
    assert_eq!(c[0]["error_events"], 3);
    assert_eq!(c[0]["cost_cents"], 4.25);
    assert_eq!(c[0]["agents"], 2);
    assert_eq!(c[0]["runs_last_7d"], 4);
    assert_eq!(c[0]["engagement"], "low");
    assert_eq!(c[1]["cost_cents"], 10.0);
    assert_eq!(c[1]["engagement"], "low");
    assert_eq!(c[2]["events"], 0);
    assert_eq!(c[2]["engagement"], "none");
    assert_eq!(c[2]["last_seen"], Value::Null);
    let cu24 = ok(&app, "/v1/dashboard/customers?window=24h").await;
    assert_eq!(cu24["customers"][0]["runs"], 3);
    assert_eq!(cu24["customers"][1]["events"], 0);
    assert_eq!(cu24["customers"][1]["runs_last_7d"], 1);

    // agents: per agent of a customer, all time.
    let ag = ok(&app, "/v1/dashboard/agents?customer_id=acme").await;
    assert_eq!(ag["customer_id"], "acme");
    let a = ag["agents"].as_array().unwrap();
    assert_eq!(a.len(), 2, "{ag}");
    assert_eq!(a[0]["agent_id"], "agent_a");
    assert_eq!(a[0]["agent_version"], "1.2.3");
    assert_eq!(a[0]["runs"], 2);
    assert_eq!(a[0]["runs_failed"], 1);
    assert_eq!(a[0]["runs_timed_out"], 0);
    assert_eq!(a[0]["tool_calls"], 4);
    assert_eq!(a[0]["tool_failures"], 1);
    assert_eq!(a[0]["error_events"], 3);
    assert_eq!(a[0]["cost_cents"], 2.0);
    assert!(a[0]["first_seen"].is_string());
    assert_eq!(a[1]["agent_id"], "agent_b");
    assert_eq!(a[1]["runs"], 2);
    assert_eq!(a[1]["runs_timed_out"], 1);
    assert_eq!(a[1]["tool_failures"], 1);
    assert_eq!(a[1]["cost_cents"], 2.25);
    let all = ok(&app, "/v1/dashboard/agents").await;
    assert_eq!(all["agents"].as_array().unwrap().len(), 3);
    let a24 = ok(&app, "/v1/dashboard/agents?customer_id=acme&window=24h").await;
    assert_eq!(a24["agents"][0]["runs"], 1);
    assert_eq!(a24["agents"][0]["cost_cents"], 1.5);

    // tools: fleet level by default, last 24 h; per MCP server.
    let tl = ok(&app, "/v1/dashboard/tools").await;
    assert_eq!(tl["customer_id"], Value::Null);
    let t = tl["tools"].as_array().unwrap();
    let names: Vec<&str> = t.iter().map(|t| t["tool_name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["Bash", "mcp__github__create_issue", "mcp__github__list_prs"],
        "Read was 3 days ago: {tl}"
    );
    assert_eq!(t[0]["tool_source"], "builtin");
    assert_eq!(t[0]["mcp_server"], Value::Null);
    assert_eq!(t[0]["calls"], 2);
    assert_eq!(t[0]["failures"], 1);
    assert_eq!(t[0]["failure_rate"], 0.5);
    assert_eq!(t[0]["timed_calls"], 2);
    assert_eq!(t[0]["mean_duration_ms"], 200.0);
    assert_eq!(t[1]["p50_duration_ms"], 20.0, "exact below 32 ms");
    assert_eq!(t[2]["timed_calls"], 0);
    assert_eq!(t[2]["p95_duration_ms"], Value::Null);
    assert_eq!(t[2]["mean_duration_ms"], Value::Null);
    let servers = tl["mcp_servers"].as_array().unwrap();
    assert_eq!(servers.len(), 1, "{tl}");
    assert_eq!(servers[0]["mcp_server"], "github");
    assert_eq!(servers[0]["tools"], 2);
    assert_eq!(servers[0]["calls"], 2);
    assert_eq!(servers[0]["failures"], 1);
    assert_eq!(servers[0]["timed_calls"], 1);
    assert_eq!(servers[0]["p99_duration_ms"], 20.0);
    let tl7 = ok(&app, "/v1/dashboard/tools?window=7d&customer_id=acme").await;
    assert_eq!(tl7["tools"].as_array().unwrap().len(), 4, "{tl7}");
    let tg = ok(&app, "/v1/dashboard/tools?window=7d&customer_id=globex").await;
    assert_eq!(tg["tools"], json!([]));

    // cost: default 30 days by day, tokens beside cents, the price table named.
    let co = ok(&app, "/v1/dashboard/cost").await;
    assert_eq!(co["bucket"], "day");
    assert_eq!(co["prices"]["as_of"], shared_proto::dashboard::PRICES_AS_OF);
    assert_eq!(
        co["prices"]["source"],
        shared_proto::dashboard::PRICES_SOURCE
    );
    let points = co["points"].as_array().unwrap();
    let total: f64 = points
        .iter()
        .map(|p| p["cost_cents"].as_f64().unwrap())
        .sum();
    assert!((total - 14.25).abs() < 1e-9, "{co}");
    let by_customer = co["by_customer"].as_array().unwrap();
    assert_eq!(by_customer[0]["customer_id"], "globex");
    assert_eq!(by_customer[0]["cost_cents"], 10.0);
    assert_eq!(by_customer[1]["customer_id"], "acme");
    assert_eq!(by_customer[1]["cost_cents"], 4.25);
    assert_eq!(by_customer[1]["llm_events"], 3);
    assert_eq!(by_customer[1]["input_tokens"], 111);
    assert_eq!(by_customer[1]["output_tokens"], 221);
    assert_eq!(by_customer[1]["cache_read_tokens"], 300);
    assert_eq!(by_customer[1]["cache_write_tokens"], 400);
    let by_model = co["by_model"].as_array().unwrap();
    assert_eq!(by_model[0]["model"], "claude-opus-4-6");
    assert_eq!(by_model[0]["cost_cents"], 12.0);
    assert_eq!(by_model[1]["model"], "claude-sonnet-4-5");
    assert_eq!(by_model[1]["cost_cents"], 2.25);
    for p in points {
        let start = p["bucket_start"].as_str().unwrap();
        assert!(start.ends_with("T00:00:00Z"), "a day bucket: {p}");
    }
    let co24 = ok(&app, "/v1/dashboard/cost?window=24h&bucket=hour").await;
    let by_customer = co24["by_customer"].as_array().unwrap();
    assert_eq!(by_customer.len(), 1, "{co24}");
    assert_eq!(by_customer[0]["cost_cents"], 3.75);
    for p in co24["points"].as_array().unwrap() {
        assert!(
            p["bucket_start"].as_str().unwrap().ends_with(":00:00Z"),
            "{p}"
        );
    }
    let weekly = ok(
        &app,
        "/v1/dashboard/cost?window=90d&bucket=week&customer_id=globex",
    )
    .await;
    let wp = weekly["points"].as_array().unwrap();
    assert_eq!(wp.len(), 1, "{weekly}");
    let monday = time(&wp[0]["bucket_start"]);
    assert_eq!(
        chrono::Datelike::weekday(&monday),
        chrono::Weekday::Mon,
        "{weekly}"
    );
    assert_eq!(wp[0]["cost_cents"], 10.0);
    assert_eq!(wp[0]["input_tokens"], 5);

    // errors: grouped by kind and stack hash, one example; tool failures by tool.
    let er = ok(&app, "/v1/dashboard/errors?customer_id=acme").await;
    let groups = er["errors"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "the 3-day-old error is outside 24 h: {er}");
    assert_eq!(groups[0]["kind"], "hook_failed");
    assert_eq!(groups[0]["stack_hash"], "abc");
    assert_eq!(groups[0]["events"], 2);
    assert_eq!(groups[0]["customers"], 1);
    assert_eq!(groups[0]["example_message"], "alpha message");
    assert!(time(&groups[0]["first_seen"]) < time(&groups[0]["last_seen"]));
    let tf = er["tool_failures"].as_array().unwrap();
    let failing: BTreeSet<&str> = tf
        .iter()
        .map(|t| t["tool_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        failing,
        BTreeSet::from(["Bash", "mcp__github__list_prs"]),
        "{er}"
    );
    let er7 = ok(&app, "/v1/dashboard/errors?window=7d").await;
    let old = er7["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["kind"] == "old_kind")
        .unwrap();
    assert_eq!(old["stack_hash"], Value::Null, "{er7}");

    // fleet: stale first.
    let fl = ok(&app, "/v1/dashboard/fleet?customer_id=acme").await;
    assert_eq!(fl["stale_after_s"], 900);
    let f = fl["agents"].as_array().unwrap();
    assert_eq!(f.len(), 2, "{fl}");
    assert_eq!(f[0]["agent_id"], "agent_b");
    assert_eq!(f[0]["stale"], true);
    assert!(f[0]["age_s"].as_u64().unwrap() >= 20 * 60);
    assert_eq!(f[0]["host_load_1m"], 2.5);
    assert_eq!(f[1]["agent_id"], "agent_a");
    assert_eq!(f[1]["stale"], false);
    assert_eq!(f[1]["agent_runtime_count"], 2);
    assert_eq!(f[1]["paperclip_uptime_s"], 3600);
    assert_eq!(f[1]["spool_depth"], 4);
    assert_eq!(f[1]["spool_dropped"], 1);
    assert_eq!(f[1]["versions"], json!({"agent_a": "1.2.3"}));
    let fg = ok(&app, "/v1/dashboard/fleet?customer_id=globex").await;
    assert_eq!(fg["agents"], json!([]));

    // health: plain figures; the 3-day-old events are late, yet the median delay is not days.
    let h = ok(&app, "/v1/dashboard/health").await;
    assert_eq!(
        h["database"],
        match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    );
    assert_eq!(h["events_stored_last_hour"], 22, "{h}");
    assert_eq!(h["events_total"], 22);
    assert_eq!(h["late_events_last_hour"], 7, "{h}");
    let p50 = h["delay_p50_ms"].as_f64().unwrap();
    assert!(
        p50 < 3_600_000.0,
        "a backfill of 7 in 22 must not read as days: {h}"
    );
    assert_eq!(h["dead_letters_total"], 1);
    assert_eq!(h["dead_letters_last_24h"], 1);
    assert_eq!(h["customers_seen_last_24h"], 1);
    assert_eq!(h["agents_seen_last_24h"], 2);
    let text = h.to_string();
    assert!(
        !text.contains("writer") && !text.contains("event_id"),
        "{h}"
    );
    app.stop().await;
}

async fn tool_quantiles_are_within_the_bucket_bound(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let key = app.mint("acme").await;
    // 400 calls of 7, 14, …, 2800 ms (shuffled by a stride), across two customers' views.
    let durations: Vec<u64> = (0..400u64).map(|i| ((i * 37) % 400 + 1) * 7).collect();
    let events: Vec<Value> = durations
        .iter()
        .map(|&d| {
            tool(
                "agent_a",
                "r1",
                json!({"tool_name": "Grep", "ok": true, "duration_ms": d}),
                mins(5),
            )
        })
        .collect();
    send(&app, &key, events).await;
    let mut sorted = durations.clone();
    sorted.sort_unstable();
    let exact = |p: f64| sorted[((p * 400.0).ceil() as usize).clamp(1, 400) - 1] as f64;
    for path in [
        "/v1/dashboard/tools",
        "/v1/dashboard/tools?customer_id=acme&window=1h",
    ] {
        let tl = ok(&app, path).await;
        let t = &tl["tools"][0];
        assert_eq!(t["calls"], 400, "{tl}");
        assert_eq!(t["mean_duration_ms"], 1403.5);
        for (field, p) in [
            ("p50_duration_ms", 0.5),
            ("p95_duration_ms", 0.95),
            ("p99_duration_ms", 0.99),
        ] {
            let got = t[field].as_f64().unwrap();
            let want = exact(p);
            assert!(
                (got - want).abs() <= want / 32.0,
                "{field}: {got} vs exact {want}"
            );
        }
    }
    app.stop().await;
}

async fn sessions_paginate_and_filter(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let acme = app.mint("acme").await;
    let globex = app.mint("globex").await;
    // 7 acme runs a minute apart (statuses cycling), 2 globex runs at the same instants as
    // two of acme's (the cursor must tell them apart by customer), usage on run 0.
    let statuses = ["success", "failed", "timeout", ""];
    let mut events = Vec::new();
    let mut globex_runs = Vec::new();
    for i in 0..7i64 {
        let run = format!("run_{i}");
        let ago = mins(60 - i);
        let s = start("agent_a", &run, ago);
        if i == 2 || i == 5 {
            // globex's run of the same name starts at the very same instant.
            let mut g = start("agent_g", &run, ago);
            g["ts"] = s["ts"].clone();
            globex_runs.push(g);
        }
        events.push(s);
        let status = statuses[i as usize % 4];
        if !status.is_empty() {
            events.push(end(
                "agent_a",
                &run,
                status,
                i,
                ago - TimeDelta::seconds(30),
            ));
        }
    }
    events.push(usage(
        "agent_a",
        "run_0",
        "claude-opus-4-6",
        1,
        2,
        3,
        4,
        0.5,
        mins(59),
    ));
    events.push(usage(
        "agent_a",
        "run_0",
        "claude-haiku-4-5",
        1,
        1,
        0,
        0,
        0.25,
        mins(59),
    ));
    // A run id carried by hook events only (no wrapper: no session.start, no session.end),
    // the oldest of acme's.
    events.push(tool(
        "agent_a",
        "run_h",
        json!({"tool_name": "Read", "ok": true, "duration_ms": 3}),
        mins(70),
    ));
    send(&app, &acme, events).await;
    send(&app, &globex, globex_runs).await;

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/dashboard/sessions?limit=2&cursor={c}"),
            None => "/v1/dashboard/sessions?limit=2".to_owned(),
        };
        let page = ok(&app, &path).await;
        pages += 1;
        for s in page["sessions"].as_array().unwrap() {
            seen.push((
                time(&s["first_ts"]),
                s["customer_id"].as_str().unwrap().to_owned(),
                s["run_id"].as_str().unwrap().to_owned(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages < 20, "pagination does not end");
    }
    assert_eq!(seen.len(), 10, "{seen:?}");
    let unique: BTreeSet<_> = seen
        .iter()
        .map(|(_, c, r)| (c.clone(), r.clone()))
        .collect();
    assert_eq!(unique.len(), 10, "every run exactly once: {seen:?}");
    let mut newest_first = seen.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, newest_first, "newest first");

    let all = ok(&app, "/v1/dashboard/sessions?customer_id=acme").await;
    let s = all["sessions"].as_array().unwrap();
    assert_eq!(s.len(), 8);
    assert_eq!(all["next_cursor"], Value::Null);
    assert_eq!(s[0]["run_id"], "run_6");
    let run0 = s.iter().find(|r| r["run_id"] == "run_0").unwrap();
    assert_eq!(run0["status"], "success");
    assert_eq!(run0["exit_code"], 0);
    assert_eq!(run0["duration_ms"], 60_000);
    assert_eq!(run0["agent_id"], "agent_a");
    assert_eq!(run0["llm_events"], 2);
    assert_eq!(run0["cost_cents"], 0.75);
    let models = run0["models"].as_array().unwrap();
    assert_eq!(models.len(), 2, "{run0}");
    assert_eq!(models[0]["model"], "claude-opus-4-6", "costliest first");
    assert_eq!(models[0]["cache_write_tokens"], 4);
    assert_eq!(models[1]["cost_cents"], 0.25);
    let run3 = s.iter().find(|r| r["run_id"] == "run_3").unwrap();
    assert_eq!(run3["status"], "running");
    assert_eq!(run3["ended_at"], Value::Null);
    let hooks_only = s.iter().find(|r| r["run_id"] == "run_h").unwrap();
    assert_eq!(
        hooks_only["status"], "unknown",
        "no start, no end: {hooks_only}"
    );
    assert_eq!(hooks_only["started_at"], Value::Null);
    assert_eq!(hooks_only["tool_calls"], 1);

    for (status, runs) in [
        ("success", vec!["run_4", "run_0"]),
        ("failed", vec!["run_5", "run_1"]),
        ("timeout", vec!["run_6", "run_2"]),
        ("running", vec!["run_3"]),
        ("unknown", vec!["run_h"]),
    ] {
        let page = ok(
            &app,
            &format!("/v1/dashboard/sessions?customer_id=acme&status={status}"),
        )
        .await;
        let got: Vec<&str> = page["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["run_id"].as_str().unwrap())
            .collect();
        assert_eq!(got, runs, "{status}");
    }
    let g = ok(
        &app,
        "/v1/dashboard/sessions?customer_id=globex&agent_id=agent_g",
    )
    .await;
    assert_eq!(g["sessions"].as_array().unwrap().len(), 2);
    let none = ok(
        &app,
        "/v1/dashboard/sessions?customer_id=acme&agent_id=agent_g",
    )
    .await;
    assert_eq!(none["sessions"], json!([]));
    // The customer filter with a cursor pages within the customer.
    let p1 = ok(&app, "/v1/dashboard/sessions?customer_id=acme&limit=4").await;
    let c = p1["next_cursor"].as_str().unwrap();
    let p2 = ok(
        &app,
        &format!("/v1/dashboard/sessions?customer_id=acme&limit=4&cursor={c}"),
    )
    .await;
    assert_eq!(p2["sessions"].as_array().unwrap().len(), 4, "{p2}");
    assert_eq!(p2["next_cursor"], Value::Null);
    app.stop().await;
}

async fn bad_parameters_are_400(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.mint("acme").await;
    for path in [
        "/v1/dashboard/tools?window=2d",
        "/v1/dashboard/overview?window=",
        "/v1/dashboard/cost?bucket=month",
        "/v1/dashboard/errors?since=yesterday",
        "/v1/dashboard/customers?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
        "/v1/dashboard/agents?since=1900-01-01T00:00:00Z",
        "/v1/dashboard/sessions?status=crashed",
        "/v1/dashboard/sessions?limit=0",
        "/v1/dashboard/sessions?limit=501",
        "/v1/dashboard/sessions?limit=-1",
        "/v1/dashboard/sessions?cursor=not-a-cursor",
        "/v1/dashboard/sessions?cursor=5b312c322c335d",
        // [-4611686018427387904,"a","b"]: a time no database holds.
        "/v1/dashboard/sessions?cursor=5b2d343631313638363031383432373338373930342c2261222c2262225d",
        "/v1/dashboard/sessions?until=2026-01-01T00:00:00Z&window=90d&since=1969-12-31T23:00:00Z",
        "/v1/dashboard/agents?customer_id=acme%00x",
        "/v1/dashboard/tools?window=24h&customer_id=acme%00x",
        "/v1/dashboard/fleet?customer_id=acme%00x",
        "/v1/dashboard/sessions?agent_id=%00",
    ] {
        let (status, body) = app.admin_get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_error(&body, "invalid_query");
    }
    // Odd but valid: unknown ids read as empty, never as an error.
    for path in [
        "/v1/dashboard/agents?customer_id=nobody%27%3B--",
        "/v1/dashboard/agents?customer_id=%FF%FE",
        "/v1/dashboard/tools?customer_id=%E2%9C%93",
        "/v1/dashboard/cost?customer_id=x&bucket=week&window=90d",
        "/v1/dashboard/errors?customer_id=nobody&since=2020-01-01T00:30:00%2B02:00",
        "/v1/dashboard/sessions?customer_id=nobody&status=running",
        "/v1/dashboard/fleet?customer_id=nobody",
    ] {
        let body = ok(&app, path).await;
        let list = ["agents", "tools", "points", "errors", "sessions"]
            .iter()
            .find_map(|k| body.get(*k))
            .unwrap();
        assert_eq!(list, &json!([]), "{path}: {body}");
    }
    // The far ends of the time range every read accepts.
    for read in [
        "overview",
        "customers",
        "agents",
        "tools",
        "cost",
        "sessions",
        "errors",
    ] {
        for range in [
            "until=9999-12-31T23:30:00Z",
            "since=1970-01-01T00:00:00Z",
            "since=1970-01-01T00:00:00Z&until=9999-12-31T23:30:00Z&bucket=week",
        ] {
            ok(&app, &format!("/v1/dashboard/{read}?{range}")).await;
        }
    }
    app.stop().await;
}
