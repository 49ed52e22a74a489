//! The export (`GET /admin/export`, `brain-server export`) on both backends: the CSV, parsed
//! with the `csv` crate, equals the stored rows in the documented column order; each filter
//! narrows; the JSONL of each customer, posted into an empty server under that customer's
//! key, stores the same rows; the `export` audit entry records the filters; bad parameters
//! are 400 envelopes; the command writes what the endpoint answers.

use std::process::Command;

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_TOKEN, Backend, EventTuple, TestApp, assert_error, event_at, spawn_app, stored_events,
};

const BIN: &str = env!("CARGO_BIN_EXE_brain-server");

both!(
    csv_export_equals_the_stored_rows_and_filters_narrow,
    jsonl_round_trips_into_an_empty_server,
    export_is_audited_and_bad_parameters_are_400,
    the_command_writes_what_the_endpoint_answers,
);

/// GETs `/admin/export?{query}` with the admin token: (status, headers, body text).
async fn export(app: &TestApp, query: &str) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let resp = app
        .client
        .get(app.url(&format!("/admin/export?{query}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

/// The rows of a CSV export, checked against the documented header.
fn parse_csv(text: &str) -> Vec<EventTuple> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        header,
        [
            "event_id",
            "ts",
            "ingested_at",
            "customer_id",
            "agent_id",
            "run_id",
            "event_type",
            "payload"
        ]
    );
    let ms = |s: &str| {
        DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&Utc)
            .timestamp_millis()
    };
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            assert_eq!(r.len(), 8);
            (
                r[0].to_owned(),
                ms(&r[1]),
                ms(&r[2]),
                r[3].to_owned(),
                r[4].to_owned(),
                (!r[5].is_empty()).then(|| r[5].to_owned()),
                r[6].to_owned(),
                serde_json::from_str(&r[7]).unwrap(),
            )
        })
        .collect()
}

/// Two customers, several types, runs and none, a payload CSV must quote, spread over 5 days.
async fn load(app: &TestApp) -> (String, String) {
    let acme = app.mint("acme").await;
    let globex = app.mint("globex").await;
    let mut acme_events = Vec::new();
    let mut globex_events = Vec::new();
    for h in 0..24 {
        let ago = TimeDelta::hours(h * 5) + TimeDelta::minutes(1);
        acme_events.push(event_at(
            "tool_call",
            "agent_a",
            Some("run_a"),
            json!({"tool_name": "Bash", "ok": h % 3 != 0, "duration_ms": h}),
            ago,
        ));
        acme_events.push(event_at(
            "error",
            "agent_a",
            None,
            json!({"kind": "hook", "message_120c": format!("a,\"quoted\"\nline {h}")}),
            ago,
        ));
        globex_events.push(event_at(
            "llm_usage",
            "agent_g",
            Some("run_g"),
            json!({"model": "claude-x", "input_tokens": h, "output_tokens": 2, "cache_read_tokens": 0, "cache_write_tokens": 0, "cost_cents": 1.5, "total_turns": 1}),
            ago,
        ));
    }
    let (s, b) = app.ingest(&acme, &json!(acme_events)).await;
    assert_eq!(
        (s, b["accepted"].as_u64()),
        (StatusCode::OK, Some(48)),
        "{b}"
    );
    let (s, b) = app.ingest(&globex, &json!(globex_events)).await;
    assert_eq!(
        (s, b["accepted"].as_u64()),
        (StatusCode::OK, Some(24)),
        "{b}"
    );
    (acme, globex)
}

/// Which stored rows a filtered export holds.
type Keep = Box<dyn Fn(&EventTuple) -> bool>;

/// A time as the query takes it.
fn q(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        .replace('+', "%2B")
}

async fn csv_export_equals_the_stored_rows_and_filters_narrow(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load(&app).await;
    let stored = stored_events(app.store()).await;
    assert_eq!(stored.len(), 72);

    let (status, headers, text) = export(&app, "format=csv").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"brain-export.csv\""
    );
    assert_eq!(
        parse_csv(&text),
        stored,
        "the export is the table, in order"
    );

    // Each filter narrows to exactly the matching rows.
    let since = Utc::now() - TimeDelta::hours(50);
    let until = Utc::now() - TimeDelta::hours(20);
    let cases: Vec<(String, Keep)> = vec![
        ("customer_id=acme".into(), Box::new(|e| e.3 == "acme")),
        ("event_type=error".into(), Box::new(|e| e.6 == "error")),
        (
            format!("since={}", q(since)),
            Box::new(move |e| e.1 >= since.timestamp_millis()),
        ),
        (
            format!("until={}", q(until)),
            Box::new(move |e| e.1 < until.timestamp_millis()),
        ),
        (
            format!(
                "customer_id=globex&event_type=llm_usage&since={}&until={}",
                q(since),
                q(until)
            ),
            Box::new(move |e| {
                e.3 == "globex" && e.1 >= since.timestamp_millis() && e.1 < until.timestamp_millis()
            }),
        ),
        ("customer_id=nobody".into(), Box::new(|_| false)),
    ];
    for (query, keep) in cases {
        let (status, _, text) = export(&app, &format!("format=csv&{query}")).await;
        assert_eq!(status, StatusCode::OK, "{query}: {text}");
        let want: Vec<EventTuple> = stored.iter().filter(|e| keep(e)).cloned().collect();
        assert!(want.len() < stored.len(), "{query} narrows");
        assert_eq!(parse_csv(&text), want, "{query}");
    }
    app.stop().await;
}

async fn jsonl_round_trips_into_an_empty_server(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load(&app).await;
    let Some(empty) = spawn_app(backend).await else {
        return;
    };
    for customer in ["acme", "globex"] {
        let (status, headers, text) =
            export(&app, &format!("format=jsonl&customer_id={customer}")).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        assert_eq!(headers["content-type"], "application/x-ndjson");
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(!lines.is_empty());
        for l in &lines {
            let keys: Vec<&String> = l.as_object().unwrap().keys().collect();
            assert!(
                keys.iter().all(|k| [
                    "event_id",
                    "ts",
                    "event_type",
                    "agent_id",
                    "run_id",
                    "payload"
                ]
                .contains(&k.as_str())),
                "{l}"
            );
        }
        let key = empty.mint(customer).await;
        for batch in lines.chunks(500) {
            let (s, b) = empty.ingest(&key, &json!(batch)).await;
            assert_eq!(s, StatusCode::OK, "{b}");
            assert_eq!(b["accepted"].as_u64(), Some(batch.len() as u64), "{b}");
        }
    }
    // The same rows (ingested_at aside: that is the second server's).
    let strip = |rows: Vec<EventTuple>| -> Vec<EventTuple> {
        rows.into_iter()
            .map(|mut r| {
                r.2 = 0;
                r
            })
            .collect()
    };
    assert_eq!(
        strip(stored_events(empty.store()).await),
        strip(stored_events(app.store()).await)
    );
    // And the same rollups: the dashboard reads agree.
    for path in [
        "/v1/dashboard/overview?window=7d",
        "/v1/dashboard/tools?window=7d",
        "/v1/dashboard/cost?window=7d",
    ] {
        let (s1, mut a) = app.admin_get(path).await;
        let (s2, mut b) = empty.admin_get(path).await;
        // `until` is the moment of the read.
        a["until"] = Value::Null;
        b["until"] = Value::Null;
        assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK), "{path}");
        assert_eq!(a, b, "{path}");
    }
    empty.stop().await;
    app.stop().await;
}

async fn export_is_audited_and_bad_parameters_are_400(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load(&app).await;
    let since = Utc::now() - TimeDelta::hours(30);
    let (status, _, text) = export(
        &app,
        &format!(
            "format=jsonl&customer_id=acme&event_type=error&since={}",
            q(since)
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!text.is_empty());
    let audit = app.store().audit_log(10).await.unwrap();
    let entry = audit
        .iter()
        .find(|a| a.action == "export")
        .expect("audit row");
    assert_eq!(entry.actor, "admin-token");
    assert_eq!(entry.params["format"], "jsonl");
    assert_eq!(entry.params["customer_id"], "acme");
    assert_eq!(entry.params["event_type"], "error");
    assert_eq!(entry.params["until"], Value::Null);
    let audited: DateTime<Utc> = serde_json::from_value(entry.params["since"].clone()).unwrap();
    assert_eq!(audited.timestamp_millis(), since.timestamp_millis());
    assert!(
        !entry.params.to_string().contains("quoted"),
        "no data in the audit row"
    );

    let before = app.store().audit_log(100).await.unwrap().len();
    for query in [
        "",
        "format=xml",
        "format=csv&event_type=telepathy",
        "format=csv&customer_id=Not%20An%20Id",
        "format=csv&since=yesterday",
        "format=csv&since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
        "format=csv&colour=blue",
    ] {
        let (status, headers, text) = export(&app, query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {text}");
        assert_eq!(headers["content-type"], "application/json", "{query}");
        assert_error(&serde_json::from_str(&text).unwrap(), "invalid_query");
    }
    let resp = app
        .client
        .get(app.url("/admin/export?format=csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.store().audit_log(100).await.unwrap().len(),
        before,
        "a refused export is not audited"
    );
    app.stop().await;
}

async fn the_command_writes_what_the_endpoint_answers(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load(&app).await;
    let out = app.data_dir.path().join("acme.csv");
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("RUST_LOG", "info")
        .env("BRAIN_DATA_DIR", app.data_dir.path());
    if let Some(url) = app.database_url() {
        cmd.env("DATABASE_URL", url);
    }
    let result = cmd
        .args(["export", "--format", "csv", "--customer", "acme", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let file = std::fs::read_to_string(&out).unwrap();
    let (_, _, http) = export(&app, "format=csv&customer_id=acme").await;
    assert_eq!(file, http);
    assert_eq!(parse_csv(&file).len(), 48);
    let audit = app.store().audit_log(10).await.unwrap();
    let cli = audit
        .iter()
        .find(|a| a.action == "export" && a.actor.starts_with("cli:"))
        .expect("the command's audit row");
    assert_eq!(cli.params["customer_id"], "acme");

    // A bad format is the operator's error: exit 1, nothing written.
    let result = Command::new(BIN)
        .env_clear()
        .env("BRAIN_DATA_DIR", app.data_dir.path())
        .args(["export", "--format", "xml"])
        .output()
        .unwrap();
    assert_eq!(result.status.code(), Some(1));
    assert!(result.stdout.is_empty());
    app.stop().await;
}
